//! Forward: one HTTP/1 message body streamed from one stream to another,
//! chunk by chunk and verbatim (chunked framing included), after whatever
//! head is already waiting to go out; and what each way it can stop early
//! means for the request ([`Forward::request_error`]).
//!
//! Uses `net` (the stream traits), `http` (body framing) and the runtime's
//! timers and buffer pool.

use std::io;
use std::time::Duration;

use super::error::ProxyError;
use crate::http::{BodyDecoder, HttpError};
use crate::net::ByteStream;
use crate::runtime::{timeout, timeout_at};

/// How long reading the body may take: at most `idle` between reads, and
/// with a minimum average rate, the whole so far within `grace` plus one
/// second per `bytes_per_s` bytes received (a slow-POST client that
/// dribbles bytes just inside the idle timeout is cut off all the same).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadPace {
    pub(crate) idle: Duration,
    pub(crate) min_rate: Option<MinRate>,
}

/// A minimum average receive rate, from `started`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MinRate {
    pub(crate) started: std::time::Instant,
    pub(crate) grace: Duration,
    pub(crate) bytes_per_s: u32,
}

impl ReadPace {
    /// Only an idle timeout between reads.
    pub(crate) fn idle(idle: Duration) -> ReadPace {
        ReadPace {
            idle,
            min_rate: None,
        }
    }

    /// The deadline of the next read after `received` bytes, and whether
    /// it is the rate's (not the idle timeout's).
    pub(crate) fn deadline(&self, received: u64) -> (std::time::Instant, bool) {
        let idle = crate::runtime::now() + self.idle;
        match self.min_rate {
            Some(r) if r.bytes_per_s > 0 => {
                let earned = Duration::from_secs_f64(received as f64 / f64::from(r.bytes_per_s));
                let by_rate = r.started + r.grace + earned;
                if by_rate < idle {
                    (by_rate, true)
                } else {
                    (idle, false)
                }
            }
            _ => (idle, false),
        }
    }
}

/// Why streaming a body stopped early.
#[derive(Debug)]
pub(crate) enum Forward {
    Invalid(HttpError),
    ReadIo(io::Error),
    ReadEof,
    ReadTimeout,
    /// Below the minimum average rate ([`ReadPace`]).
    ReadTooSlow,
    WriteIo(io::Error),
    WriteTimeout,
}

impl Forward {
    /// The request's error when its body, client → upstream, stopped here.
    pub(crate) fn request_error(self) -> ProxyError {
        match self {
            Forward::Invalid(e) => ProxyError::BadRequest(e),
            Forward::ReadIo(e) => ProxyError::DownstreamIo(e),
            Forward::ReadEof => ProxyError::DownstreamClosed,
            Forward::ReadTimeout => ProxyError::DownstreamTimeout,
            Forward::ReadTooSlow => ProxyError::SlowRequestBody,
            Forward::WriteIo(e) => ProxyError::UpstreamIo(e),
            Forward::WriteTimeout => ProxyError::UpstreamTimeout,
        }
    }
}

/// A copy of what [`forward`] sent, kept while it stays within `limit`
/// bytes, so a request streamed to one try can be sent whole to the next.
#[derive(Debug)]
pub(crate) struct Replay {
    pub(crate) bytes: Vec<u8>,
    limit: usize,
    overflowed: bool,
}

impl Replay {
    pub(crate) fn new(limit: usize) -> Replay {
        Replay {
            bytes: Vec::new(),
            limit,
            overflowed: false,
        }
    }

    fn record(&mut self, sent: &[u8]) {
        if self.overflowed || self.bytes.len() + sent.len() > self.limit {
            self.overflowed = true;
            self.bytes = Vec::new();
        } else {
            self.bytes.extend_from_slice(sent);
        }
    }

    /// Everything sent, when it all fit.
    pub(crate) fn into_whole(self) -> Option<Vec<u8>> {
        (!self.overflowed).then_some(self.bytes)
    }
}

/// Streams one message body from `src` to `dst`: first whatever `out`
/// already holds (a head), then body bytes as they arrive, verbatim, until
/// the decoder says the body ended. Bytes after the body stay in `srcbuf`.
/// Returns `out`'s buffer for reuse and how many bytes reached `dst`.
/// `replay`: keeps a copy of every byte sent, within its limit.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn forward<R: ByteStream, W: ByteStream>(
    src: &mut R,
    srcbuf: &mut Vec<u8>,
    decoder: &mut BodyDecoder,
    dst: &mut W,
    mut out: Vec<u8>,
    pace: ReadPace,
    write_timeout: Duration,
    mut replay: Option<&mut Replay>,
) -> (Result<(), Forward>, Vec<u8>, u64) {
    let mut written = 0u64;
    let mut received = srcbuf.len() as u64;
    loop {
        if !srcbuf.is_empty() && !decoder.is_done() {
            let n = match decoder.advance(srcbuf) {
                Ok(n) => n,
                Err(e) => return (Err(Forward::Invalid(e)), out, written),
            };
            if n == srcbuf.len() && out.is_empty() {
                // The whole buffer is body: send it as is, no copy.
                std::mem::swap(&mut out, srcbuf);
            } else if n > 0 {
                out.extend_from_slice(&srcbuf[..n]);
                srcbuf.drain(..n);
            }
        }
        if !out.is_empty() {
            if let Some(r) = replay.as_deref_mut() {
                r.record(&out);
            }
            let len = out.len() as u64;
            match timeout(write_timeout, dst.write_owned(out)).await {
                Ok((Ok(()), mut back)) => {
                    written += len;
                    back.clear();
                    out = back;
                }
                Ok((Err(e), back)) => return (Err(Forward::WriteIo(e)), back, written),
                Err(_) => return (Err(Forward::WriteTimeout), Vec::new(), written),
            }
        }
        if decoder.is_done() {
            return (Ok(()), out, written);
        }
        let (deadline, by_rate) = pace.deadline(received);
        match timeout_at(deadline, src.read_into(srcbuf)).await {
            Ok(Ok(0)) => {
                return match decoder.finish_eof() {
                    Ok(()) => (Ok(()), out, written),
                    Err(_) => (Err(Forward::ReadEof), out, written),
                };
            }
            Ok(Ok(n)) => received += n as u64,
            Ok(Err(e)) => return (Err(Forward::ReadIo(e)), out, written),
            Err(_) if by_rate => return (Err(Forward::ReadTooSlow), out, written),
            Err(_) => return (Err(Forward::ReadTimeout), out, written),
        }
    }
}
