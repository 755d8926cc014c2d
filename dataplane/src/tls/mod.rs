//! TLS stage: rustls server configs, mutual TLS and the caller's SPIFFE identity.
//!
//! rustls stays behind this module: the rest of the data plane sees
//! [`ServerTls`], [`ServerTlsSettings`] and the session wrapper, never rustls
//! types, so a rustls upgrade (0.24 changes the unbuffered API) touches only
//! this folder.
//!
//! | file | owns |
//! |---|---|
//! | `config.rs` | [`ServerTls::from_settings`]: files → rustls `ServerConfig` (control thread) |
//! | `session.rs` | [`TlsSession`]: one connection, sans-IO, bytes in / bytes out (shards) |
//! | `stream.rs` | [`TlsStream`]: a session driven over a [`crate::net::Transport`], a [`crate::net::ByteStream`] for the proxy |
//! | `identity.rs` | [`PeerIdentity`]: SPIFFE ID, SANs, subject, XFCC from the verified leaf |
//!
//! ## Copies on the data path
//!
//! [`TlsSession`] wraps rustls' *buffered* API (`ServerConnection`). Per
//! direction that costs:
//!
//! * inbound: [`TlsSession::feed`] copies ciphertext once from the caller's
//!   receive buffer into rustls' deframer buffer; records are decrypted in
//!   place there; rustls then copies each record's plaintext into its
//!   received-plaintext queue (`Payload::into_vec`), and
//!   [`TlsSession::read_plaintext`] copies it out once more into the
//!   caller's buffer;
//! * outbound: [`TlsSession::write_plaintext`] copies plaintext into a
//!   record buffer and seals it in place (the copy is part of encryption);
//!   [`TlsSession::take_ciphertext`] copies the records out into the
//!   caller's send buffer.
//!
//! Why not the unbuffered API (`UnbufferedServerConnection`) that the
//! architecture's "decrypt in place" points at: in rustls 0.23 it does
//! decrypt in the caller's buffer, but `ReadTraffic::next_record` still hands
//! out plaintext popped from rustls' own `received_plaintext` queue (a copy;
//! upstream marks in-place delivery as a TODO), so it would save the deframer
//! copy and one plaintext copy at the price of driving its state machine
//! (`EncodeTlsData`, `TransmitTlsData`, `BlockedHandshake`, discard
//! bookkeeping) by hand; and 0.24 reworks that API again. The buffered API is
//! simpler, well trodden, and keeps the sans-IO contract. Moving to the
//! unbuffered API is future work behind this same [`TlsSession`] interface,
//! once rustls delivers plaintext in place and measurements show the copies
//! matter next to the AEAD itself.

mod config;
mod identity;
mod session;
mod stream;

#[cfg(test)]
mod testutil;

pub use config::{TlsConfigError, known_group_names};
pub use identity::{IdentityError, PeerIdentity};
pub use session::{Cause, TlsError, TlsSession};
pub use stream::{HandshakeError, TlsStream};

use std::path::PathBuf;
use std::sync::Arc;

/// Whether and how a listener asks for a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Handshake fails without a certificate that chains to `client_ca`.
    Require,
    /// A certificate is verified when offered; anonymous callers are allowed.
    Optional,
    /// No certificate is requested.
    None,
}

/// Lowest protocol version a listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// Everything needed to build a listener's server-side TLS configuration.
/// Paths are absolute (the config loader resolves them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsSettings {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM bundle of CAs that client certificates must chain to.
    pub client_ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
    pub min_version: TlsVersion,
    /// Stateless tickets (keys shared by all shards, rotated). `false`: no
    /// tickets and no session cache, every connection a full handshake.
    pub session_tickets: bool,
    /// Key-exchange groups in preference order, by their config names
    /// (`x25519mlkem768`, `x25519`, `secp256r1`, `secp384r1`).
    pub groups: Vec<String>,
    /// ALPN protocols offered, in preference order (e.g. `http/1.1`).
    pub alpn: Vec<String>,
}

/// A compiled, shareable server TLS configuration (one per listener, shared
/// by every shard).
#[derive(Clone)]
pub struct ServerTls {
    pub(crate) config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}
