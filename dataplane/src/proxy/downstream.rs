//! [`Downstream`]: the stream a request comes in on, as the request path
//! sees it — bytes, and, for one HTTP/2 stream, its body as `h2` receives
//! it, so the body can flow to an HTTP/2 upstream on its own while the
//! response comes back (full duplex, as gRPC bidirectional streams need).

use crate::net::{ByteStream, Plain};
use crate::tls::{SessionIo, TlsStream};

/// What `http1::serve` serves requests from.
pub trait Downstream: ByteStream {
    /// The request body as an HTTP/2 receive stream, handed over once
    /// (`None`: it comes as bytes only).
    fn take_h2_body(&mut self) -> Option<h2::RecvStream> {
        None
    }
}

impl Downstream for Plain {}

impl<T: SessionIo> Downstream for TlsStream<T> {}
