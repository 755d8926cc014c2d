//! The config loader's door to the TLS stage: building a listener's server
//! TLS configuration, a cluster's client TLS configuration, and the names
//! (key-exchange groups, server names) it accepts.

use dataplane::tls::{ClientTls, ClientTlsSettings, ServerTls, ServerTlsSettings};

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

/// Loads the CA bundle (and our certificate and key) of a cluster.
pub(super) fn build_client_tls(settings: &ClientTlsSettings) -> Result<ClientTls, BoxError> {
    ClientTls::from_settings(settings).map_err(|e| Box::new(e) as BoxError)
}

/// Whether `name` can be sent as SNI (a DNS name or an IP address).
pub(super) fn is_server_name(name: &str) -> bool {
    dataplane::tls::is_server_name(name)
}
