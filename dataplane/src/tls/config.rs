//! TLS stage, configuration: compiles [`ServerTlsSettings`] into a shareable
//! rustls `ServerConfig` ([`ServerTls`]).
//!
//! Runs on the control thread (file reads, key parsing); shards only clone
//! the resulting `Arc`. Every error names the config field and the file it
//! came from, so an operator can fix the config without reading code.
//!
//! Policy fixed here rather than in config:
//! * crypto provider: aws-lc-rs;
//! * cipher suites: AEAD only — all three TLS 1.3 suites, and for TLS 1.2
//!   only ECDHE with AES-GCM or ChaCha20-Poly1305 (no CBC, no static RSA);
//! * client certificates are verified by webpki against `client_ca` only;
//!   name checks (SPIFFE ID, DNS) are authorization, done later on
//!   [`PeerIdentity`](super::PeerIdentity).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::crypto::aws_lc_rs::{self, cipher_suite, kx_group};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{NoServerSessionStorage, VerifierBuilderError, WebPkiClientVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{RootCertStore, ServerConfig, SupportedCipherSuite};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use super::{ClientAuth, ServerTls, ServerTlsSettings, TlsVersion};

/// Config field names used in error messages.
const FIELD_CERT: &str = "listeners.tls.cert";
const FIELD_KEY: &str = "listeners.tls.key";
const FIELD_CLIENT_CA: &str = "listeners.tls.client_ca";
const FIELD_CLIENT_AUTH: &str = "listeners.tls.client_auth";
const FIELD_GROUPS: &str = "listeners.tls.groups";
const FIELD_ALPN: &str = "listeners.tls.alpn";
const FIELD_TLS: &str = "listeners.tls";
const FIELD_CRL: &str = "listeners.tls.crl";

/// Key-exchange groups by config name, in the order we document them.
static GROUPS: &[(&str, &dyn rustls::crypto::SupportedKxGroup)] = &[
    ("x25519mlkem768", kx_group::X25519MLKEM768),
    ("x25519", kx_group::X25519),
    ("secp256r1", kx_group::SECP256R1),
    ("secp384r1", kx_group::SECP384R1),
];

/// Config names of the key-exchange groups `groups` may list.
pub fn known_group_names() -> &'static [&'static str] {
    &["x25519mlkem768", "x25519", "secp256r1", "secp384r1"]
}

/// The config name of a negotiated group (`None` for groups we never enable).
pub(crate) fn group_config_name(group: rustls::NamedGroup) -> Option<&'static str> {
    GROUPS
        .iter()
        .find(|(_, g)| g.name() == group)
        .map(|&(name, _)| name)
}

/// AEAD-only suites: TLS 1.3 all, TLS 1.2 ECDHE + AES-GCM / ChaCha20.
pub(super) static CIPHER_SUITES: &[SupportedCipherSuite] = &[
    cipher_suite::TLS13_AES_128_GCM_SHA256,
    cipher_suite::TLS13_AES_256_GCM_SHA384,
    cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
];

/// Why a listener's TLS settings could not be compiled. Every message starts
/// with the config field, then the file involved (if any).
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("{field}: {}: file not found", .path.display())]
    FileNotFound { field: &'static str, path: PathBuf },
    #[error("{field}: {}: cannot read: {source}", .path.display())]
    Unreadable {
        field: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{field}: {}: bad PEM: {detail}", .path.display())]
    BadPem {
        field: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error("{field}: {}: no certificate found", .path.display())]
    NoCertificate { field: &'static str, path: PathBuf },
    #[error("{field}: {}: certificate is not valid X.509: {detail}", .path.display())]
    BadCertificate {
        field: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error("{field}: {}: no private key found (expected PKCS#8, PKCS#1 or SEC1 PEM)", .path.display())]
    NoPrivateKey { field: &'static str, path: PathBuf },
    #[error("{field}: {}: unusable private key: {detail}", .path.display())]
    BadPrivateKey {
        field: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error(
        "{key_field}: {}: private key does not match the certificate in {cert_field} {}",
        .key.display(),
        .cert.display()
    )]
    KeyMismatch {
        key_field: &'static str,
        key: PathBuf,
        cert_field: &'static str,
        cert: PathBuf,
    },
    #[error("{FIELD_CRL}: {}: no certificate revocation list found (PEM or DER)", .path.display())]
    NoCrl { path: PathBuf },
    #[error("{FIELD_CRL}: {}: unusable revocation list: {detail}", .path.display())]
    BadCrl { path: PathBuf, detail: String },
    #[error(
        "{FIELD_CRL}: revocation lists need {FIELD_CLIENT_CA} and client_auth = require or optional"
    )]
    CrlWithoutClientAuth,
    #[error("{field}: {}: no CA certificates found", .path.display())]
    EmptyCaBundle { field: &'static str, path: PathBuf },
    #[error("{field}: {}: CA certificate #{index} rejected: {detail}", .path.display())]
    BadCaCertificate {
        field: &'static str,
        path: PathBuf,
        /// 1-based position in the bundle.
        index: usize,
        detail: String,
    },
    #[error(
        "{FIELD_CLIENT_AUTH}: client_auth = {mode} needs {FIELD_CLIENT_CA} (a CA bundle to verify client certificates)"
    )]
    ClientCaRequired { mode: &'static str },
    #[error("{FIELD_GROUPS}: unknown group {name:?} (known: {})", KnownGroups)]
    UnknownGroup { name: String },
    #[error("{FIELD_GROUPS}: group {name:?} listed twice")]
    DuplicateGroup { name: String },
    #[error("{FIELD_ALPN}: protocol #{index} must be 1 to 255 bytes long")]
    BadAlpn { index: usize },
    #[error("{FIELD_TLS}: {detail}")]
    Incompatible { detail: String },
}

/// Display helper for the list of known group names.
struct KnownGroups;

impl fmt::Display for KnownGroups {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&known_group_names().join(", "))
    }
}

impl ServerTls {
    /// Builds the rustls `ServerConfig` for one listener.
    ///
    /// * aws-lc-rs provider, AEAD-only suites (see the module docs);
    /// * protocol versions from `min_version` up to TLS 1.3;
    /// * key-exchange groups in the given order (empty: x25519, secp256r1,
    ///   secp384r1, x25519mlkem768 — rustls' default order). Note: a rustls
    ///   0.23 server picks the *client's* most preferred group among these,
    ///   so the list restricts which groups are allowed but its order is not
    ///   a server preference; a client whose key share is for a group not
    ///   listed pays a HelloRetryRequest round trip;
    /// * client verifier per `client_auth` against `client_ca`
    ///   (`Require`/`Optional` need `client_ca`; `None` requests no
    ///   certificate and ignores `client_ca`);
    /// * ALPN protocols in preference order;
    /// * `session_tickets = true`: stateless tickets from one rotating
    ///   ticketer (6-hour key rotation, 12-hour lifetime). Its keys live in this
    ///   config, which every shard shares through the `Arc`, so a ticket issued
    ///   by one shard resumes on any other; TLS 1.2 clients without ticket
    ///   support use the default in-memory session cache.
    ///   `false`: no session storage, no tickets, `send_tls13_tickets = 0`:
    ///   every connection is a full handshake.
    pub fn from_settings(s: &ServerTlsSettings) -> Result<ServerTls, TlsConfigError> {
        let kx_groups = resolve_groups(&s.groups)?;
        let alpn = resolve_alpn(&s.alpn)?;

        let provider = Arc::new(CryptoProvider {
            cipher_suites: CIPHER_SUITES.to_vec(),
            kx_groups,
            ..aws_lc_rs::default_provider()
        });

        let certified_key =
            load_certified_key((FIELD_CERT, &s.cert), (FIELD_KEY, &s.key), &provider)?;

        let verifier = match s.client_auth {
            ClientAuth::None if !s.crls.is_empty() => {
                return Err(TlsConfigError::CrlWithoutClientAuth);
            }
            ClientAuth::None => WebPkiClientVerifier::no_client_auth(),
            mode @ (ClientAuth::Require | ClientAuth::Optional) => {
                let (mode_name, optional) = match mode {
                    ClientAuth::Optional => ("optional", true),
                    _ => ("require", false),
                };
                if !s.trust_domains.is_empty() {
                    // One CA bundle per trust domain: a caller's ID must be
                    // in the domain of the bundle that verifies it.
                    let mut domains = Vec::new();
                    for (name, ca) in &s.trust_domains {
                        let v = webpki_verifier(ca, &s.crls, optional, &provider)?;
                        domains.push((name.clone(), v));
                    }
                    Arc::new(super::trust_domains::TrustDomainVerifier::new(
                        domains, !optional,
                    ))
                } else {
                    let ca_path = s
                        .client_ca
                        .as_deref()
                        .ok_or(TlsConfigError::ClientCaRequired { mode: mode_name })?;
                    webpki_verifier(ca_path, &s.crls, optional, &provider)?
                }
            }
        };

        let versions: &[&'static rustls::SupportedProtocolVersion] = match s.min_version {
            TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersion::Tls13 => &[&rustls::version::TLS13],
        };

        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .map_err(|e| TlsConfigError::Incompatible {
                detail: format!(
                    "no usable cipher suite / key-exchange group for the configured versions and groups: {e}"
                ),
            })?
            .with_client_cert_verifier(verifier.clone())
            .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified_key)));

        config.alpn_protocols = alpn;
        // After the handshake, records are protected by `record.rs` with the
        // traffic keys rustls hands over (`TlsSession`); rustls keeps the key
        // schedule for key updates.
        config.enable_secret_extraction = true;
        if s.session_tickets {
            config.ticketer =
                aws_lc_rs::Ticketer::new().map_err(|e| TlsConfigError::Incompatible {
                    detail: format!("session ticket key generation failed: {e}"),
                })?;
        } else {
            config.session_storage = Arc::new(NoServerSessionStorage {});
            config.send_tls13_tickets = 0;
        }

        Ok(ServerTls {
            config: Arc::new(config),
            client_verifier: verifier,
        })
    }
}

fn resolve_groups(
    names: &[String],
) -> Result<Vec<&'static dyn rustls::crypto::SupportedKxGroup>, TlsConfigError> {
    if names.is_empty() {
        return Ok(aws_lc_rs::DEFAULT_KX_GROUPS.to_vec());
    }
    let mut out: Vec<&'static dyn rustls::crypto::SupportedKxGroup> =
        Vec::with_capacity(names.len());
    for name in names {
        let group = GROUPS
            .iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(name))
            .map(|&(_, g)| g)
            .ok_or_else(|| TlsConfigError::UnknownGroup { name: name.clone() })?;
        if out.iter().any(|g| g.name() == group.name()) {
            return Err(TlsConfigError::DuplicateGroup { name: name.clone() });
        }
        out.push(group);
    }
    Ok(out)
}

pub(super) fn resolve_alpn(protocols: &[String]) -> Result<Vec<Vec<u8>>, TlsConfigError> {
    protocols
        .iter()
        .enumerate()
        .map(|(i, p)| {
            if p.is_empty() || p.len() > 255 {
                Err(TlsConfigError::BadAlpn { index: i + 1 })
            } else {
                Ok(p.as_bytes().to_vec())
            }
        })
        .collect()
}

fn read_file(field: &'static str, path: &Path) -> Result<Vec<u8>, TlsConfigError> {
    std::fs::read(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => TlsConfigError::FileNotFound {
            field,
            path: path.to_path_buf(),
        },
        _ => TlsConfigError::Unreadable {
            field,
            path: path.to_path_buf(),
            source,
        },
    })
}

fn bad_pem(field: &'static str, path: &Path, e: &pem::Error) -> TlsConfigError {
    TlsConfigError::BadPem {
        field,
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

/// All certificates in a PEM file, in order. Other PEM sections are skipped.
fn load_certs(
    field: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let bytes = read_file(field, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_pem(field, path, &e))?;
    if certs.is_empty() {
        return Err(TlsConfigError::NoCertificate {
            field,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// When each certificate in the PEM file at `path` expires (Unix seconds,
/// in file order), for `meshctl status` and the expiry warning.
pub fn certificate_expiry(path: &Path) -> Result<Vec<i64>, TlsConfigError> {
    let certs = load_certs(FIELD_CERT, path)?;
    certs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            super::identity::not_after(c.as_ref()).map_err(|e| TlsConfigError::BadCertificate {
                field: FIELD_CERT,
                path: path.to_path_buf(),
                detail: format!("certificate #{}: {e}", i + 1),
            })
        })
        .collect()
}

/// A verifier of client certificates chaining to the CAs in `ca_path`,
/// checked against the revocation lists `crls`; `optional`: anonymous
/// callers are let through.
fn webpki_verifier(
    ca_path: &Path,
    crls: &[PathBuf],
    optional: bool,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsConfigError> {
    let roots = Arc::new(load_roots(FIELD_CLIENT_CA, ca_path)?);
    let mut builder = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone());
    if !crls.is_empty() {
        let mut all = Vec::new();
        for path in crls {
            let these = load_crls(path)?;
            // Parsed now, so a broken list fails the load naming its file
            // rather than every handshake.
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                .with_crls(these.clone())
                .build()
                .map_err(|e| TlsConfigError::BadCrl {
                    path: path.clone(),
                    detail: e.to_string(),
                })?;
            all.extend(these);
        }
        // Every certificate of the chain is checked against the lists; a
        // certificate whose issuer has no list here is allowed (only some
        // CAs may publish one).
        builder = builder.with_crls(all).allow_unknown_revocation_status();
    }
    if optional {
        builder = builder.allow_unauthenticated();
    }
    builder.build().map_err(|e| match e {
        VerifierBuilderError::NoRootAnchors => TlsConfigError::EmptyCaBundle {
            field: FIELD_CLIENT_CA,
            path: ca_path.to_path_buf(),
        },
        e => TlsConfigError::Incompatible {
            detail: format!("client certificate verifier: {e}"),
        },
    })
}

/// The revocation lists in `path`: PEM (`X509 CRL` blocks) or one DER list.
fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsConfigError> {
    let bytes = read_file(FIELD_CRL, path)?;
    let crls: Vec<CertificateRevocationListDer<'static>> = if bytes.starts_with(b"-----") {
        CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<_, _>>()
            .map_err(|e| bad_pem(FIELD_CRL, path, &e))?
    } else {
        vec![CertificateRevocationListDer::from(bytes)]
    };
    if crls.is_empty() {
        return Err(TlsConfigError::NoCrl {
            path: path.to_path_buf(),
        });
    }
    Ok(crls)
}

fn load_key(field: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    let bytes = read_file(field, path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsConfigError::NoPrivateKey {
            path: path.to_path_buf(),
            field,
        },
        e => bad_pem(field, path, &e),
    })
}

/// Loads the chain and key (each with the config field it came from) and
/// checks that the key belongs to the leaf.
pub(super) fn load_certified_key(
    (cert_field, cert_path): (&'static str, &Path),
    (key_field, key_path): (&'static str, &Path),
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsConfigError> {
    let chain = load_certs(cert_field, cert_path)?;
    let key = load_key(key_field, key_path)?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsConfigError::KeyMismatch {
            key_field,
            key: key_path.to_path_buf(),
            cert_field,
            cert: cert_path.to_path_buf(),
        },
        rustls::Error::InvalidCertificate(e) => TlsConfigError::BadCertificate {
            field: cert_field,
            path: cert_path.to_path_buf(),
            detail: e.to_string(),
        },
        e => TlsConfigError::BadPrivateKey {
            field: key_field,
            path: key_path.to_path_buf(),
            detail: e.to_string(),
        },
    })
}

/// The CA certificates of the bundle at `path` (config field `field`).
pub(super) fn load_roots(
    field: &'static str,
    path: &Path,
) -> Result<RootCertStore, TlsConfigError> {
    let certs = load_certs(field, path).map_err(|e| match e {
        TlsConfigError::NoCertificate { field, path } => {
            TlsConfigError::EmptyCaBundle { field, path }
        }
        e => e,
    })?;
    let mut roots = RootCertStore::empty();
    for (i, cert) in certs.into_iter().enumerate() {
        roots
            .add(cert)
            .map_err(|e| TlsConfigError::BadCaCertificate {
                field,
                path: path.to_path_buf(),
                index: i + 1,
                detail: e.to_string(),
            })?;
    }
    Ok(roots)
}

#[cfg(test)]
mod tests;
