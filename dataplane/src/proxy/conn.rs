//! What the proxy knows about one downstream connection once it is
//! accepted (and its TLS handshake done): the facts every request on it
//! is decided with. Uses no other stage.

use std::net::SocketAddr;
use std::rc::Rc;

/// The facts of one downstream connection.
#[derive(Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// `https` or `http`, for `x-forwarded-proto`.
    pub proto: &'static str,
    /// The caller's `x-forwarded-client-cert` element (mTLS only).
    pub xfcc: Option<String>,
    /// The caller's SPIFFE ID (mTLS only), for keyed rate limits.
    pub spiffe_id: Option<String>,
    /// The listener it arrived on.
    pub listener: Rc<str>,
}
