//! [`UpstreamConn`]: a connection to an upstream endpoint as the proxy
//! reads, writes, relays and pools it — plaintext, or TLS we originated
//! for a `[clusters.tls]` cluster. Everything above (HTTP/1 tries, the TCP
//! relay, the pool) is the same for both.
//!
//! [`UpstreamIo`]: what one HTTP try writes its request to and reads its
//! response from — a whole connection of its own (HTTP/1.1), or one stream
//! of a multiplexed HTTP/2 connection.

use std::io;
use std::net::SocketAddr;

use super::http2::upstream::UpstreamStream;
use crate::net::{ByteStream, Duplex, Plain, Sender};
use crate::tls::TlsClientStream;

/// One upstream connection.
#[derive(Debug)]
pub enum UpstreamConn {
    Plain(Plain),
    /// Boxed: the rustls client state is large, and a pooled connection
    /// moves around.
    Tls(Box<TlsClientStream>),
}

impl UpstreamConn {
    /// Whether an idle pooled connection can carry another request:
    /// nothing arrived on it while idle (TLS: no close_notify either).
    pub fn is_reusable(&self) -> bool {
        match self {
            UpstreamConn::Plain(p) => p.0.is_reusable(),
            UpstreamConn::Tls(t) => t.is_reusable(),
        }
    }

    /// The endpoint's address.
    pub fn peer_addr(&self) -> SocketAddr {
        match self {
            UpstreamConn::Plain(p) => p.0.peer_addr(),
            UpstreamConn::Tls(t) => t.peer_addr(),
        }
    }

    /// Gives idle buffers back to the shard's pool (before pooling).
    pub fn release_buffers(&mut self) {
        if let UpstreamConn::Tls(t) = self {
            t.release_buffers();
        }
    }
}

// The TLS arms' futures are boxed: inline, the TLS read and write state
// would grow every request's future (plaintext upstreams included) by
// ~400 bytes for the life of each connection (`accept.rs` bounds those
// sizes); a box per TLS read is small next to the record's decryption.
impl ByteStream for UpstreamConn {
    async fn read_into(&mut self, dst: &mut Vec<u8>) -> io::Result<usize> {
        match self {
            UpstreamConn::Plain(p) => p.read_into(dst).await,
            UpstreamConn::Tls(t) => Box::pin(t.read_into(dst)).await,
        }
    }

    async fn write_owned(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        match self {
            UpstreamConn::Plain(p) => p.write_owned(buf).await,
            UpstreamConn::Tls(t) => Box::pin(t.write_owned(buf)).await,
        }
    }

    async fn close_write(&mut self) -> io::Result<()> {
        match self {
            UpstreamConn::Plain(p) => p.close_write().await,
            UpstreamConn::Tls(t) => Box::pin(t.close_write()).await,
        }
    }

    fn abort(&mut self) {
        match self {
            UpstreamConn::Plain(p) => p.abort(),
            UpstreamConn::Tls(t) => t.abort(),
        }
    }
}

impl Duplex for UpstreamConn {
    fn sender(&self) -> Sender {
        match self {
            UpstreamConn::Plain(p) => p.sender(),
            UpstreamConn::Tls(t) => t.sender(),
        }
    }

    fn wire_bytes(&mut self, plaintext: Vec<u8>) -> io::Result<Vec<u8>> {
        match self {
            UpstreamConn::Plain(p) => p.wire_bytes(plaintext),
            UpstreamConn::Tls(t) => t.wire_bytes(plaintext),
        }
    }

    fn closing_bytes(&mut self) -> Vec<u8> {
        match self {
            UpstreamConn::Plain(p) => p.closing_bytes(),
            UpstreamConn::Tls(t) => t.closing_bytes(),
        }
    }

    fn closed_cleanly(&self) -> bool {
        match self {
            UpstreamConn::Plain(p) => p.closed_cleanly(),
            UpstreamConn::Tls(t) => t.closed_cleanly(),
        }
    }
}

/// One HTTP try's way to its upstream: a connection of its own
/// (HTTP/1.1; the arms of [`UpstreamConn`], flattened so a read is one
/// future deep), pooled after a clean exchange, or a stream of an HTTP/2
/// connection.
pub(crate) enum UpstreamIo {
    Plain(Plain),
    Tls(Box<TlsClientStream>),
    /// Boxed: its state is large.
    H2(Box<UpstreamStream>),
}

impl From<UpstreamConn> for UpstreamIo {
    fn from(conn: UpstreamConn) -> UpstreamIo {
        match conn {
            UpstreamConn::Plain(p) => UpstreamIo::Plain(p),
            UpstreamConn::Tls(t) => UpstreamIo::Tls(t),
        }
    }
}

impl UpstreamIo {
    /// The connection, to pool (`None` for an HTTP/2 stream).
    pub(crate) fn into_conn(self) -> Option<UpstreamConn> {
        match self {
            UpstreamIo::Plain(p) => Some(UpstreamConn::Plain(p)),
            UpstreamIo::Tls(t) => Some(UpstreamConn::Tls(t)),
            UpstreamIo::H2(_) => None,
        }
    }

    /// The `grpc-status` an HTTP/2 stream's response carried (in its head
    /// or trailers), once read.
    pub(crate) fn grpc_status(&self) -> Option<u32> {
        match self {
            UpstreamIo::H2(s) => s.grpc_status(),
            _ => None,
        }
    }

    /// Hands the caller's HTTP/2 request body over to an HTTP/2 stream
    /// (full duplex, see `http2::upstream`); given back when this is not
    /// one, or its head was not written.
    pub(crate) fn relay_body(&mut self, body: h2::RecvStream) -> Result<(), h2::RecvStream> {
        match self {
            UpstreamIo::H2(s) => s.relay_body(body),
            _ => Err(body),
        }
    }

    /// The upstream refused the request without processing it (an HTTP/2
    /// stream refused, or above a GOAWAY): it may go again anywhere.
    pub(crate) fn unprocessed(&self) -> bool {
        match self {
            UpstreamIo::H2(s) => s.unprocessed(),
            _ => false,
        }
    }
}

// The TLS and HTTP/2 arms' futures are boxed, as above.
impl ByteStream for UpstreamIo {
    async fn read_into(&mut self, dst: &mut Vec<u8>) -> io::Result<usize> {
        match self {
            UpstreamIo::Plain(p) => p.read_into(dst).await,
            UpstreamIo::Tls(t) => Box::pin(t.read_into(dst)).await,
            UpstreamIo::H2(s) => Box::pin(s.read_into(dst)).await,
        }
    }

    async fn write_owned(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        match self {
            UpstreamIo::Plain(p) => p.write_owned(buf).await,
            UpstreamIo::Tls(t) => Box::pin(t.write_owned(buf)).await,
            UpstreamIo::H2(s) => Box::pin(s.write_owned(buf)).await,
        }
    }

    async fn close_write(&mut self) -> io::Result<()> {
        match self {
            UpstreamIo::Plain(p) => p.close_write().await,
            UpstreamIo::Tls(t) => Box::pin(t.close_write()).await,
            UpstreamIo::H2(s) => s.close_write().await,
        }
    }

    fn abort(&mut self) {
        match self {
            UpstreamIo::Plain(p) => p.abort(),
            UpstreamIo::Tls(t) => t.abort(),
            UpstreamIo::H2(s) => s.abort(),
        }
    }
}
