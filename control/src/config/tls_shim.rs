//! Stand-in for the TLS stage's build functions until `dataplane/src/tls`
//! is merged. Replace the two bodies with:
//!
//! ```ignore
//! pub(super) fn build_tls(settings: &ServerTlsSettings) -> Result<ServerTls, BoxError> {
//!     ServerTls::from_settings(settings).map_err(|e| Box::new(e) as BoxError)
//! }
//! pub(super) fn known_group_names() -> &'static [&'static str] {
//!     dataplane::tls::known_group_names()
//! }
//! ```

use dataplane::tls::{ServerTls, ServerTlsSettings};

/// What a TLS build failure is carried as; its `Display` names the file and
/// field at fault.
pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Loads the certificate, key and client CAs and builds the server config.
pub(super) fn build_tls(_settings: &ServerTlsSettings) -> Result<ServerTls, BoxError> {
    Err("tls not merged yet".into())
}

/// Key-exchange group names the TLS stage understands.
pub(super) fn known_group_names() -> &'static [&'static str] {
    &["x25519mlkem768", "x25519", "secp256r1", "secp384r1"]
}
