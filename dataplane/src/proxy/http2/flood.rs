//! Frame floods `h2` itself lets through, sans-IO: a client's frames are
//! scanned (headers only, as the bytes arrive) before `h2` reads them.
//!
//! `h2` bounds what a flood can make it *hold* — one pending PING answer,
//! one SETTINGS acknowledgement, resets by its own counters — but not what
//! it makes the gateway *do*: a client sending PINGs or SETTINGS as fast as
//! it can gets every one answered, and empty DATA frames (CVE-2019-9518)
//! cost a wake-up each while carrying nothing. Like Envoy's
//! `max_consecutive_inbound_frames_with_empty_payload` and its control
//! frame limits, [`FloodGuard`] counts:
//!
//! * control frames that demand an answer (PING and SETTINGS without ACK)
//!   per second of the connection;
//! * consecutive frames with an empty payload that end nothing (DATA,
//!   HEADERS, CONTINUATION of length 0 without END_STREAM); any frame with
//!   a payload resets the run.
//!
//! Over either limit the connection is ended with GOAWAY(ENHANCE_YOUR_CALM)
//! by the driver.

use std::time::{Duration, Instant};

/// The client's connection preface (RFC 9113 §3.4), skipped.
const PREFACE_LEN: usize = 24;
const FRAME_HEADER: usize = 9;

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;

/// Which limit a client broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flood {
    /// More PING/SETTINGS frames in a second than allowed.
    ControlFrames,
    /// Too many empty frames in a row.
    EmptyFrames,
}

impl Flood {
    /// A label for logs.
    pub(super) fn label(self) -> &'static str {
        match self {
            Flood::ControlFrames => "control frame flood (PING/SETTINGS)",
            Flood::EmptyFrames => "empty frame flood",
        }
    }
}

/// One connection's scanner and counters.
#[derive(Debug)]
pub(super) struct FloodGuard {
    max_control_per_second: u32,
    max_consecutive_empty: u32,
    /// Preface bytes still to skip.
    preface_left: usize,
    /// The frame header being assembled.
    header: [u8; FRAME_HEADER],
    have: usize,
    /// Payload bytes of the current frame still to skip.
    skip: usize,
    window_start: Option<Instant>,
    control_in_window: u32,
    empty_run: u32,
}

impl FloodGuard {
    /// A guard for a connection whose bytes start with the preface
    /// (`with_preface`) or with the first frame.
    pub(super) fn new(
        max_control_per_second: u32,
        max_consecutive_empty: u32,
        with_preface: bool,
    ) -> FloodGuard {
        FloodGuard {
            max_control_per_second,
            max_consecutive_empty,
            preface_left: if with_preface { PREFACE_LEN } else { 0 },
            header: [0; FRAME_HEADER],
            have: 0,
            skip: 0,
            window_start: None,
            control_in_window: 0,
            empty_run: 0,
        }
    }

    /// Scans received bytes (in order, any split); `Err` at the first
    /// limit broken.
    pub(super) fn scan(&mut self, mut bytes: &[u8], now: Instant) -> Result<(), Flood> {
        while !bytes.is_empty() {
            if self.preface_left > 0 {
                let n = self.preface_left.min(bytes.len());
                self.preface_left -= n;
                bytes = &bytes[n..];
                continue;
            }
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (FRAME_HEADER - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == FRAME_HEADER {
                self.have = 0;
                self.frame(now)?;
            }
        }
        Ok(())
    }

    /// Judges one frame by its header.
    fn frame(&mut self, now: Instant) -> Result<(), Flood> {
        let h = self.header;
        let len = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
        let (kind, flags) = (h[3], h[4]);
        self.skip = len;
        let wants_answer = matches!(kind, PING | SETTINGS) && flags & ACK == 0;
        if wants_answer {
            let start = *self.window_start.get_or_insert(now);
            if now.saturating_duration_since(start) >= Duration::from_secs(1) {
                self.window_start = Some(now);
                self.control_in_window = 0;
            }
            self.control_in_window += 1;
            if self.control_in_window > self.max_control_per_second {
                return Err(Flood::ControlFrames);
            }
        }
        let carries = matches!(kind, DATA | HEADERS | CONTINUATION);
        if carries && len == 0 && flags & END_STREAM == 0 {
            self.empty_run += 1;
            if self.empty_run > self.max_consecutive_empty {
                return Err(Flood::EmptyFrames);
            }
        } else if len > 0 {
            self.empty_run = 0;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = len.to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[kind, flags, 0, 0, 0, 1]);
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn pings_over_the_rate_break_the_limit_and_a_new_second_resets_it() {
        let t0 = Instant::now();
        let mut g = FloodGuard::new(3, 10, true);
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        for _ in 0..3 {
            bytes.extend(frame(PING, 0, &[0; 8]));
        }
        // Acknowledgements do not count.
        bytes.extend(frame(PING, ACK, &[0; 8]));
        bytes.extend(frame(SETTINGS, ACK, &[]));
        assert_eq!(g.scan(&bytes, t0), Ok(()));
        assert_eq!(
            g.scan(&frame(SETTINGS, 0, &[]), t0),
            Err(Flood::ControlFrames)
        );
        let mut g = FloodGuard::new(3, 10, false);
        for _ in 0..3 {
            assert_eq!(g.scan(&frame(PING, 0, &[0; 8]), t0), Ok(()));
        }
        let later = t0 + Duration::from_secs(1);
        assert_eq!(g.scan(&frame(PING, 0, &[0; 8]), later), Ok(()));
    }

    #[test]
    fn empty_frames_in_a_row_break_the_limit_and_data_resets_the_run() {
        let t0 = Instant::now();
        let mut g = FloodGuard::new(100, 2, false);
        let empty = frame(DATA, 0, &[]);
        assert_eq!(g.scan(&empty, t0), Ok(()));
        assert_eq!(g.scan(&empty, t0), Ok(()));
        assert_eq!(g.scan(&frame(DATA, 0, b"x"), t0), Ok(()));
        assert_eq!(g.scan(&empty, t0), Ok(()));
        // An empty frame that ends the stream is a normal end.
        assert_eq!(g.scan(&frame(DATA, END_STREAM, &[]), t0), Ok(()));
        assert_eq!(g.scan(&empty, t0), Ok(()));
        assert_eq!(g.scan(&empty, t0), Err(Flood::EmptyFrames));
    }

    proptest::proptest! {
        /// However the bytes are split, the verdict is the same.
        #[test]
        fn splits_do_not_change_the_verdict(
            kinds in proptest::collection::vec((0u8..10, 0u8..2, 0usize..20), 1..40),
            cut in proptest::num::usize::ANY,
        ) {
            let t0 = Instant::now();
            let mut bytes = Vec::new();
            for (kind, flags, len) in &kinds {
                bytes.extend(frame(*kind, *flags, &vec![7; *len]));
            }
            let whole = FloodGuard::new(5, 3, false).scan(&bytes, t0);
            let at = cut % (bytes.len() + 1);
            let mut g = FloodGuard::new(5, 3, false);
            let split = g.scan(&bytes[..at], t0).and_then(|()| g.scan(&bytes[at..], t0));
            proptest::prop_assert_eq!(whole, split);
        }
    }
}
