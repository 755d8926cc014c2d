//! HTTP/2 by prior knowledge ("h2c", RFC 9113 §3.3) on a plaintext
//! listener that allows it: the first bytes of the connection tell an
//! HTTP/2 client (its connection preface) from an HTTP/1.1 one, and
//! [`Prefixed`] gives the bytes read to tell them apart back to whichever
//! protocol serves the connection.

use std::io;
use std::time::Instant;

use crate::net::{ByteStream, Duplex, Sender};
use crate::runtime::{BufPool, timeout_at};

/// The client connection preface (RFC 9113 §3.4).
pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the first bytes of a connection say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sniffed {
    /// The HTTP/2 connection preface.
    Http2,
    /// Anything else (HTTP/1.1), or the client closed or idled out
    /// first: the HTTP/1.1 path answers or closes as it always does.
    Http1,
}

/// Whether `bytes` (the start of a connection) decide the protocol:
/// `None` while they are a proper prefix of the preface.
pub(crate) fn sniff(bytes: &[u8]) -> Option<Sniffed> {
    let n = bytes.len().min(PREFACE.len());
    if bytes[..n] != PREFACE[..n] {
        Some(Sniffed::Http1)
    } else if n == PREFACE.len() {
        Some(Sniffed::Http2)
    } else {
        None
    }
}

/// Reads until the first bytes decide the protocol (or `deadline`, or
/// the end of the stream); returns the verdict and every byte read.
pub(crate) async fn read_preface<S: ByteStream>(
    down: &mut S,
    deadline: Instant,
) -> (Sniffed, Vec<u8>) {
    let mut seen = BufPool::take();
    loop {
        if let Some(verdict) = sniff(&seen) {
            return (verdict, seen);
        }
        match timeout_at(deadline, down.read_into(&mut seen)).await {
            Ok(Ok(n)) if n > 0 => {}
            // Closed, failed or timed out: HTTP/1.1 sees the same and
            // ends the connection its own way.
            _ => return (Sniffed::Http1, seen),
        }
    }
}

/// A stream whose first reads give back bytes already read from it.
pub(crate) struct Prefixed<S> {
    prefix: Vec<u8>,
    inner: S,
}

impl<S> Prefixed<S> {
    pub(crate) fn new(prefix: Vec<u8>, inner: S) -> Prefixed<S> {
        Prefixed { prefix, inner }
    }
}

impl<S: ByteStream> ByteStream for Prefixed<S> {
    async fn read_into(&mut self, dst: &mut Vec<u8>) -> io::Result<usize> {
        if self.prefix.is_empty() {
            return self.inner.read_into(dst).await;
        }
        BufPool::ensure(dst);
        let n = self.prefix.len();
        dst.extend_from_slice(&self.prefix);
        self.prefix.clear();
        BufPool::release_if_empty(&mut self.prefix);
        Ok(n)
    }

    async fn write_owned(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        self.inner.write_owned(buf).await
    }

    async fn close_write(&mut self) -> io::Result<()> {
        self.inner.close_write().await
    }

    fn abort(&mut self) {
        self.inner.abort();
    }
}

impl<S: ByteStream> crate::proxy::downstream::Downstream for Prefixed<S> {}

impl<S: Duplex> Duplex for Prefixed<S> {
    fn sender(&self) -> Sender {
        self.inner.sender()
    }
    fn wire_bytes(&mut self, plaintext: Vec<u8>) -> io::Result<Vec<u8>> {
        self.inner.wire_bytes(plaintext)
    }
    fn closing_bytes(&mut self) -> Vec<u8> {
        self.inner.closing_bytes()
    }
    fn closed_cleanly(&self) -> bool {
        self.inner.closed_cleanly()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preface_decides_at_its_first_differing_byte() {
        assert_eq!(sniff(b""), None);
        assert_eq!(sniff(b"PRI * HTTP/2"), None);
        assert_eq!(sniff(PREFACE), Some(Sniffed::Http2));
        assert_eq!(
            sniff(&[PREFACE, b"\x00\x00"].concat()),
            Some(Sniffed::Http2)
        );
        assert_eq!(sniff(b"GET / HTTP/1.1\r\n"), Some(Sniffed::Http1));
        assert_eq!(sniff(b"P"), None);
        assert_eq!(sniff(b"POST"), Some(Sniffed::Http1));
        assert_eq!(sniff(b"PRI * HTTP/1.1"), Some(Sniffed::Http1));
    }
}
