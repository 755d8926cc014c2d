//! What a run counts: latency histograms, responses by status class, and
//! failed requests by kind. One [`Stats`] per worker thread (no sharing on
//! the hot path), merged at the end.
//!
//! Every request that was started ends in exactly one place: a response
//! (counted by status class, its latency recorded) or an error (counted by
//! [`ErrorKind`]). Nothing is dropped, so `responses + errors` is the number
//! of attempts. [`classify_io`] decides the kind of an I/O error.

use std::io;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Largest latency the histograms track: 60 s (larger values saturate).
pub const MAX_LATENCY_US: u64 = 60_000_000;

/// Why a request failed without a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// The TCP connection could not be made.
    Connect,
    /// The TLS handshake or a TLS record failed; the reason is rustls's.
    Tls(&'static str),
    /// No complete response within `--timeout-ms`.
    Timeout,
    /// The connection was reset (RST, broken pipe).
    Reset,
    /// The server closed the connection before the response was complete.
    Closed,
    /// The response was not valid HTTP/1.1.
    BadResponse,
    /// Any other I/O error (its kind is in the name).
    Io(io::ErrorKind),
}

impl ErrorKind {
    /// The name in reports: `connect`, `tls:<reason>`, `timeout`, ...
    pub fn name(&self) -> String {
        match self {
            ErrorKind::Connect => "connect".into(),
            ErrorKind::Tls(reason) => format!("tls:{reason}"),
            ErrorKind::Timeout => "timeout".into(),
            ErrorKind::Reset => "reset".into(),
            ErrorKind::Closed => "closed".into(),
            ErrorKind::BadResponse => "bad_response".into(),
            ErrorKind::Io(k) => format!("io:{k:?}").to_lowercase(),
        }
    }
}

/// Kind of an I/O error on an established connection.
pub fn classify_io(e: &io::Error) -> ErrorKind {
    use io::ErrorKind as K;
    match e.kind() {
        K::ConnectionReset | K::BrokenPipe | K::ConnectionAborted => ErrorKind::Reset,
        K::UnexpectedEof | K::WriteZero | K::NotConnected => ErrorKind::Closed,
        K::TimedOut => ErrorKind::Timeout,
        other => ErrorKind::Io(other),
    }
}

/// Counters and the latency histogram of one thread (or of a whole run,
/// after merging).
#[derive(Debug, Clone)]
pub struct Stats {
    /// Latency of every response, in microseconds.
    pub latency: Histogram<u64>,
    /// Responses by status class: index 0 = 1xx (never final), 1 = 2xx, ...
    pub status: [u64; 5],
    /// Errors by kind, in first-seen order (a handful of kinds at most).
    pub errors: Vec<(ErrorKind, u64)>,
    /// Response bytes received (head and body, after TLS).
    pub bytes: u64,
    /// TCP connections opened (TLS: handshakes begun).
    pub connections: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new()
    }
}

impl Stats {
    /// Empty statistics.
    pub fn new() -> Stats {
        Stats {
            latency: new_histogram(),
            status: [0; 5],
            errors: Vec::new(),
            bytes: 0,
            connections: 0,
        }
    }

    /// Records a response.
    pub fn response(&mut self, status: u16, latency: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.status[class] += 1;
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency.saturating_record(us.clamp(1, MAX_LATENCY_US));
    }

    /// Records a failed request.
    pub fn error(&mut self, kind: ErrorKind) {
        match self.errors.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => self.errors.push((kind, 1)),
        }
    }

    /// Responses of any status.
    pub fn responses(&self) -> u64 {
        self.status.iter().sum()
    }

    /// Failed requests (no response).
    pub fn error_count(&self) -> u64 {
        self.errors.iter().map(|(_, n)| n).sum()
    }

    /// Requests that failed: errors plus 4xx and 5xx responses.
    pub fn failed(&self) -> u64 {
        self.error_count() + self.status[3] + self.status[4]
    }

    /// Requests started: responses plus errors.
    pub fn attempts(&self) -> u64 {
        self.responses() + self.error_count()
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Stats) {
        // Same bounds on both sides: `add` cannot fail.
        let _ = self.latency.add(&other.latency);
        for (a, b) in self.status.iter_mut().zip(other.status) {
            *a += b;
        }
        for &(kind, n) in &other.errors {
            match self.errors.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, m)) => *m += n,
                None => self.errors.push((kind, n)),
            }
        }
        self.bytes += other.bytes;
        self.connections += other.connections;
    }

    /// Takes the counts so far, leaving `self` empty (for progress ticks).
    pub fn take(&mut self) -> Stats {
        let mut fresh = Stats::new();
        std::mem::swap(self, &mut fresh);
        fresh
    }
}

/// A histogram of 1 µs .. 60 s at 3 significant figures.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_classified() {
        let kind = |k| classify_io(&io::Error::from(k));
        assert_eq!(kind(io::ErrorKind::ConnectionReset), ErrorKind::Reset);
        assert_eq!(kind(io::ErrorKind::BrokenPipe), ErrorKind::Reset);
        assert_eq!(kind(io::ErrorKind::UnexpectedEof), ErrorKind::Closed);
        assert_eq!(
            classify_io(&io::Error::from_raw_os_error(libc::ECONNRESET)),
            ErrorKind::Reset
        );
        assert_eq!(
            kind(io::ErrorKind::PermissionDenied).name(),
            "io:permissiondenied"
        );
    }

    #[test]
    fn names() {
        assert_eq!(
            ErrorKind::Tls("unknown_issuer").name(),
            "tls:unknown_issuer"
        );
        assert_eq!(ErrorKind::BadResponse.name(), "bad_response");
        assert_eq!(ErrorKind::Connect.name(), "connect");
    }

    #[test]
    fn every_attempt_lands_somewhere_and_merges() {
        let mut a = Stats::new();
        a.response(200, Duration::from_micros(150));
        a.response(503, Duration::from_millis(2));
        a.response(404, Duration::ZERO);
        a.error(ErrorKind::Timeout);
        a.error(ErrorKind::Timeout);
        let mut b = Stats::new();
        b.response(302, Duration::from_secs(3600)); // saturates, still counted
        b.error(ErrorKind::Reset);
        b.error(ErrorKind::Timeout);
        a.merge(&b);
        assert_eq!(a.responses(), 4);
        assert_eq!(a.error_count(), 4);
        assert_eq!(a.attempts(), 8);
        assert_eq!(a.failed(), 6);
        assert_eq!(a.status, [0, 1, 1, 1, 1]);
        assert_eq!(
            a.errors,
            vec![(ErrorKind::Timeout, 3), (ErrorKind::Reset, 1)]
        );
        assert_eq!(a.latency.len(), 4);
        assert!(a.latency.max() >= MAX_LATENCY_US - MAX_LATENCY_US / 500);
        let taken = a.take();
        assert_eq!(taken.attempts(), 8);
        assert_eq!(a.attempts(), 0);
    }
}
