//! TLS stage, origination: compiles a cluster's [`ClientTlsSettings`] into
//! a shareable rustls `ClientConfig` ([`ClientTls`]), with the verifier of
//! the upstream's certificate.
//!
//! Runs on the control thread (file reads, key parsing); shards clone the
//! `Arc`. The verifier checks the chain with webpki against the cluster's
//! CA bundle, then the upstream's name: its SPIFFE ID (the URI SAN) when
//! `verify_spiffe_id` lists any — a certificate with only a URI SAN is the
//! normal case in a mesh, and the stock verifier would reject it on a name
//! mismatch — otherwise the SNI name (or the endpoint's IP address) as
//! webpki checks it for any TLS client.
//!
//! Session resumption: one in-memory session cache per cluster, shared by
//! every shard (rustls' `ClientSessionMemoryCache`, keyed by server name),
//! so a ticket one shard got resumes on another.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientSessionMemoryCache, Resumption};
use rustls::crypto::aws_lc_rs::{self, kx_group};
use rustls::crypto::{
    CryptoProvider, WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature,
};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, Error, OtherError, RootCertStore,
    SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::config::{CIPHER_SUITES, TlsConfigError, load_certified_key, load_roots};
use super::{PeerIdentity, TlsVersion};

const FIELD_CA: &str = "clusters.tls.ca";
const FIELD_CERT: &str = "clusters.tls.cert";
const FIELD_KEY: &str = "clusters.tls.key";
const FIELD_TLS: &str = "clusters.tls";

/// Sessions remembered per cluster for resumption.
const SESSION_CACHE_ENTRIES: usize = 256;

/// Everything needed to open TLS to a cluster's endpoints. Paths are
/// absolute (the config loader resolves them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTlsSettings {
    /// PEM bundle of the CAs the upstream's certificate must chain to.
    pub ca: PathBuf,
    /// Our client certificate chain and key (mutual TLS), when the
    /// upstream asks for one.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// The server name sent (SNI) and, without `verify_spiffe_id`, checked
    /// against the certificate; `None`: no SNI, the endpoint's IP address
    /// is checked.
    pub sni: Option<String>,
    /// ALPN protocols offered, in preference order (`h2`, `http/1.1`).
    pub alpn: Vec<String>,
    /// When not empty, the upstream's SPIFFE ID must be one of these (and
    /// its DNS names are not checked).
    pub verify_spiffe_id: Vec<String>,
    pub min_version: TlsVersion,
    /// Resume sessions (tickets) with the upstream.
    pub session_resumption: bool,
}

/// A compiled, shareable client TLS configuration (one per cluster).
#[derive(Clone)]
pub struct ClientTls {
    pub(crate) config: Arc<ClientConfig>,
    sni: Option<ServerName<'static>>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("sni", &self.sni)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Builds the rustls `ClientConfig` for one cluster: aws-lc-rs, the
    /// AEAD-only suites of the listeners, x25519 / secp256r1 / secp384r1,
    /// `min_version` up to TLS 1.3, our certificate when given.
    pub fn from_settings(s: &ClientTlsSettings) -> Result<ClientTls, TlsConfigError> {
        let provider = Arc::new(CryptoProvider {
            cipher_suites: CIPHER_SUITES.to_vec(),
            kx_groups: vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1],
            ..aws_lc_rs::default_provider()
        });
        let sni = match &s.sni {
            None => None,
            Some(name) => Some(ServerName::try_from(name.clone()).map_err(|_| {
                TlsConfigError::Incompatible {
                    detail: format!("sni: {name:?} is not a DNS name or IP address"),
                }
            })?),
        };
        let verifier = Arc::new(UpstreamVerifier {
            roots: Arc::new(load_roots(FIELD_CA, &s.ca)?),
            spiffe_ids: s.verify_spiffe_id.clone(),
            algorithms: provider.signature_verification_algorithms,
        });
        let versions: &[&'static rustls::SupportedProtocolVersion] = match s.min_version {
            TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| TlsConfigError::Incompatible {
                detail: format!("{FIELD_TLS}: no usable cipher suite for the versions: {e}"),
            })?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match &s.client_cert {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let certified =
                    load_certified_key((FIELD_CERT, cert), (FIELD_KEY, key), &provider)?;
                builder.with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(
                    certified,
                )))
            }
        };
        config.alpn_protocols = s.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        config.resumption = if s.session_resumption {
            Resumption::store(Arc::new(ClientSessionMemoryCache::new(
                SESSION_CACHE_ENTRIES,
            )))
        } else {
            Resumption::disabled()
        };
        Ok(ClientTls {
            config: Arc::new(config),
            sni,
        })
    }

    /// The name a connection to `endpoint` presents and verifies: the
    /// configured SNI, or the endpoint's IP address (no SNI is sent then).
    pub(crate) fn server_name(&self, endpoint: SocketAddr) -> ServerName<'static> {
        self.sni
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(endpoint.ip().into()))
    }

    /// Whether `other` is this same configuration (not a rebuild of it).
    pub fn same_as(&self, other: &ClientTls) -> bool {
        Arc::ptr_eq(&self.config, &other.config)
    }
}

/// Whether `name` can be sent as SNI and verified: a DNS name or an IP
/// address.
pub fn is_server_name(name: &str) -> bool {
    ServerName::try_from(name).is_ok()
}

/// Verifies an upstream's certificate: webpki chain to the cluster's CAs,
/// then its SPIFFE ID (when the cluster lists some) or its DNS/IP name.
#[derive(Debug)]
struct UpstreamVerifier {
    roots: Arc<RootCertStore>,
    spiffe_ids: Vec<String>,
    algorithms: WebPkiSupportedAlgorithms,
}

/// The upstream's SPIFFE ID is not one the cluster accepts.
#[derive(Debug)]
struct SpiffeMismatch {
    presented: Option<String>,
}

impl std::fmt::Display for SpiffeMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.presented {
            Some(id) => write!(f, "SPIFFE ID {id} is not in verify_spiffe_id"),
            None => {
                f.write_str("certificate has no (single) SPIFFE ID; verify_spiffe_id needs one")
            }
        }
    }
}

impl std::error::Error for SpiffeMismatch {}

/// The operator's message when `e` is our SPIFFE ID refusal.
pub(super) fn spiffe_mismatch(e: &Error) -> Option<String> {
    match e {
        Error::InvalidCertificate(CertificateError::Other(other)) => other
            .0
            .downcast_ref::<SpiffeMismatch>()
            .map(|m| m.to_string()),
        _ => None,
    }
}

impl ServerCertVerifier for UpstreamVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        if self.spiffe_ids.is_empty() {
            rustls::client::verify_server_name(&cert, server_name)?;
            return Ok(ServerCertVerified::assertion());
        }
        let presented = PeerIdentity::from_der(end_entity.as_ref())
            .ok()
            .and_then(|id| id.spiffe_id);
        match &presented {
            Some(id) if self.spiffe_ids.iter().any(|want| want == id) => {
                Ok(ServerCertVerified::assertion())
            }
            _ => Err(Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(SpiffeMismatch { presented })),
            ))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests;
