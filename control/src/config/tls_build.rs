//! The config loader's door to the TLS stage: building a listener's server
//! TLS configuration and the list of key-exchange group names it knows.

use dataplane::tls::{ServerTls, ServerTlsSettings};

/// What a TLS build failure is carried as; its `Display` names the file and
/// field at fault.
pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Loads the certificate, key and client CAs and builds the server config.
pub(super) fn build_tls(settings: &ServerTlsSettings) -> Result<ServerTls, BoxError> {
    ServerTls::from_settings(settings).map_err(|e| Box::new(e) as BoxError)
}

/// Key-exchange group names the TLS stage understands.
pub(super) fn known_group_names() -> &'static [&'static str] {
    dataplane::tls::known_group_names()
}
