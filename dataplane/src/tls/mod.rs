//! TLS stage: rustls server configs, mutual TLS and the caller's SPIFFE
//! identity; and the TLS we open to upstreams (origination).
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
//! | `record.rs` | record protection after the handshake: seal into our send buffer, open in place |
//! | `stream.rs` | [`TlsStream`]: a session driven over a [`crate::net::Stream`], a [`crate::net::ByteStream`] for the proxy |
//! | `client.rs` | [`ClientTls::from_settings`]: a cluster's `[clusters.tls]` → rustls `ClientConfig`, the SPIFFE-aware upstream verifier |
//! | `client_session.rs` | [`TlsClientSession`]: one connection to an upstream, sans-IO (rustls' buffered client) |
//! | `identity.rs` | [`PeerIdentity`]: SPIFFE ID, SANs, subject, XFCC from the verified leaf |
//!
//! ## Who does what, and the copies on the data path
//!
//! rustls (unbuffered API) runs the handshake: certificates, the client
//! verifier, tickets, ALPN. When it completes, rustls hands the traffic keys
//! over (`dangerous_into_kernel_connection`, the entry point kTLS users take)
//! and keeps only the key schedule, which TLS 1.3 key updates go through.
//! Application records are then protected by `record.rs` with aws-lc-rs'
//! AEADs (the same primitives rustls would call). Per direction:
//!
//! * inbound: [`TlsSession::feed`] copies ciphertext once from the
//!   transport's ring buffer into the session's receive buffer, where
//!   records are decrypted in place; the plaintext is moved to the caller
//!   (copied only when the caller's buffer already holds bytes);
//! * outbound: [`TlsSession::write_plaintext`] copies plaintext once into the
//!   send buffer behind the record header and seals it in place there;
//!   [`TlsSession::take_ciphertext`] hands that buffer to the transport.
//!
//! With rustls' buffered API the outbound path had two copies and an
//! allocation per 16 KiB record, and the first copy ran into a slow
//! `rep movsb` case on this CPU (`record.rs`, `bench/RESULTS.md`); inbound
//! had three copies.

mod client;
mod client_session;
mod config;
mod identity;
pub mod record;
mod session;
pub mod sni;
mod stream;
mod trust_domains;

#[cfg(test)]
mod testutil;

pub use client::{ClientTls, ClientTlsSettings, is_server_name};
pub use client_session::TlsClientSession;
pub use config::{TlsConfigError, certificate_expiry, known_group_names};
pub use identity::{IdentityError, PeerIdentity, not_after as certificate_not_after};
pub use session::{Cause, TlsError, TlsSession};
pub use stream::{HandshakeError, SessionIo, TlsClientStream, TlsStream};

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
    /// Certificate revocation lists (PEM or DER) for client certificates;
    /// a revoked certificate fails the handshake (`certificate_revoked`).
    pub crls: Vec<PathBuf>,
    /// Instead of `client_ca`: one CA bundle per SPIFFE trust domain
    /// (`(domain, bundle)`); a caller's certificate must chain to the
    /// bundle of its own ID's trust domain.
    pub trust_domains: Vec<(String, PathBuf)>,
}

/// A compiled, shareable server TLS configuration (one per listener, shared
/// by every shard).
#[derive(Clone)]
pub struct ServerTls {
    pub(crate) config: Arc<rustls::ServerConfig>,
    /// The client certificate verifier (also inside `config`), kept to
    /// check a live connection's certificate again after a reload.
    pub(crate) client_verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
}

impl ServerTls {
    /// Whether `other` is this same configuration (not a reload of it).
    pub fn same_as(&self, other: &ServerTls) -> bool {
        Arc::ptr_eq(&self.config, &other.config)
    }

    /// Checks a connection's client certificate chain again, with this
    /// configuration's CA bundle and revocation lists at wall-clock time
    /// `now`: a certificate revoked (or expired) since the handshake fails.
    /// A configuration that asks for no client certificate accepts any.
    pub fn recheck(&self, chain: &PeerChain, now: std::time::SystemTime) -> Result<(), TlsError> {
        if !self.client_verifier.offer_client_auth() {
            return Ok(());
        }
        let Some((leaf, intermediates)) = chain.0.split_first() else {
            return Ok(());
        };
        let now = rustls_pki_types::UnixTime::since_unix_epoch(
            now.duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default(),
        );
        self.client_verifier
            .verify_client_cert(leaf, intermediates, now)
            .map(|_| ())
            .map_err(TlsError::from_handshake_error)
    }
}

/// The certificate chain a client presented and the handshake verified
/// (leaf first), shared, for [`ServerTls::recheck`].
#[derive(Clone)]
pub struct PeerChain(pub(crate) Arc<[rustls_pki_types::CertificateDer<'static>]>);

impl std::fmt::Debug for PeerChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PeerChain({} certificates)", self.0.len())
    }
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}
