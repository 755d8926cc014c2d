//! What the proxy knows about one downstream connection once it is
//! accepted (and its TLS handshake done): the facts every request on it
//! is decided with. Uses no other stage.

use std::net::SocketAddr;
use std::rc::Rc;

/// The facts of one downstream connection (each HTTP/2 stream gets its
/// own copy).
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// `https` or `http`, for `x-forwarded-proto`.
    pub proto: &'static str,
    /// The caller's `x-forwarded-client-cert` element (mTLS only).
    pub xfcc: Option<String>,
    /// The caller's SPIFFE ID (mTLS only), for authorization and keyed
    /// rate limits.
    pub spiffe_id: Option<String>,
    /// The caller presented a verified client certificate.
    pub authenticated: bool,
    /// That certificate's chain, and the listener TLS configuration that
    /// last verified it (checked again when a reload replaces it).
    pub peer_chain: Option<crate::tls::PeerChain>,
    pub verified_by: Option<crate::tls::ServerTls>,
    /// The TLS protocol version and cipher suite (TLS listeners), for the
    /// access log.
    pub tls: Option<(&'static str, &'static str)>,
    /// The server name (SNI) the client's ClientHello asked for.
    pub sni: Option<std::sync::Arc<str>>,
    /// The listener it arrived on.
    pub listener: Rc<str>,
    /// The request came on an HTTP/2 stream (served by the HTTP/1.1
    /// request path), for the access log's `protocol`.
    pub http2: bool,
}

impl ConnInfo {
    /// The caller as authorization sees it.
    pub fn caller(&self) -> crate::route::authz::Caller<'_> {
        crate::route::authz::Caller {
            spiffe_id: self.spiffe_id.as_deref(),
            authenticated: self.authenticated,
            source: self.peer.ip(),
        }
    }
}
