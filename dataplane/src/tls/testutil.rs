//! Test PKI and an in-memory client for the TLS stage's tests: certificates
//! from rcgen, PEM files in a per-test temp dir, a rustls client pumped
//! against [`TlsSession`] on byte buffers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

use super::{ClientAuth, ServerTlsSettings, TlsSession, TlsVersion};

pub const SPIFFE_ID: &str = "spiffe://meshgate.local/ns/default/sa/demo";

/// A certificate with its key, in DER and PEM.
pub struct Leaf {
    pub der: CertificateDer<'static>,
    pub cert_pem: String,
    pub key_pem: String,
    pub key_der: Vec<u8>,
}

impl Leaf {
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        Ca {
            issuer: CertifiedIssuer::self_signed(params, key).expect("CA cert"),
        }
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    pub fn sign(&self, params: CertificateParams) -> Leaf {
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf cert");
        Leaf {
            der: cert.der().clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
        }
    }

    /// Server certificate for `localhost`.
    pub fn server(&self) -> Leaf {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    /// Client certificate with only a SPIFFE URI SAN: no DNS SAN, empty
    /// subject.
    pub fn spiffe_client(&self) -> Leaf {
        self.sign(spiffe_params())
    }

    /// Like [`spiffe_client`](Self::spiffe_client) but expired in 2001.
    pub fn expired_client(&self) -> Leaf {
        let mut params = spiffe_params();
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        self.sign(params)
    }
}

fn spiffe_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![SanType::URI(SPIFFE_ID.try_into().expect("ia5"))];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params
}

/// A fresh directory under the system temp dir, unique per call.
pub fn temp_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "meshgate-tls-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

pub fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write test file");
    path
}

/// A CA, a server leaf and the settings file layout for one test.
pub struct Fixture {
    pub ca: Ca,
    pub server: Leaf,
    pub dir: PathBuf,
    pub settings: ServerTlsSettings,
}

impl Fixture {
    /// Require client certs from `ca`, TLS 1.2+, tickets on, x25519 then
    /// secp256r1, ALPN h2 + http/1.1.
    pub fn new() -> Fixture {
        let ca = Ca::new("meshgate test CA");
        let server = ca.server();
        let dir = temp_dir();
        let settings = ServerTlsSettings {
            cert: write(&dir, "server.pem", &server.cert_pem),
            key: write(&dir, "server.key", &server.key_pem),
            client_ca: Some(write(&dir, "ca.pem", &ca.pem())),
            client_auth: ClientAuth::Require,
            min_version: TlsVersion::Tls12,
            session_tickets: true,
            groups: vec!["x25519".into(), "secp256r1".into()],
            alpn: vec!["h2".into(), "http/1.1".into()],
            crls: Vec::new(),
            trust_domains: Vec::new(),
        };
        Fixture {
            ca,
            server,
            dir,
            settings,
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// How the test client is built.
pub struct ClientSpec<'a> {
    pub trust: &'a Ca,
    pub cert: Option<&'a Leaf>,
    pub versions: &'a [&'static rustls::SupportedProtocolVersion],
    pub groups: Option<Vec<&'static dyn rustls::crypto::SupportedKxGroup>>,
    pub alpn: Vec<Vec<u8>>,
    /// Offer only these cipher suites (default: the provider's).
    pub suites: Option<Vec<rustls::SupportedCipherSuite>>,
}

impl<'a> ClientSpec<'a> {
    pub fn new(trust: &'a Ca, cert: Option<&'a Leaf>) -> Self {
        ClientSpec {
            trust,
            cert,
            versions: rustls::ALL_VERSIONS,
            groups: None,
            alpn: vec![b"http/1.1".to_vec()],
            suites: None,
        }
    }

    pub fn config(&self) -> Arc<rustls::ClientConfig> {
        let mut provider = rustls::crypto::aws_lc_rs::default_provider();
        if let Some(groups) = &self.groups {
            provider.kx_groups = groups.clone();
        }
        if let Some(suites) = &self.suites {
            provider.cipher_suites = suites.clone();
        }
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.trust.der()).expect("trust CA");
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(self.versions)
            .expect("client versions")
            .with_root_certificates(roots);
        let mut config = match self.cert {
            Some(leaf) => builder
                .with_client_auth_cert(vec![leaf.der.clone()], leaf.key())
                .expect("client cert"),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn.clone();
        Arc::new(config)
    }

    pub fn connect(&self) -> rustls::ClientConnection {
        client_for(self.config())
    }
}

pub fn client_for(config: Arc<rustls::ClientConfig>) -> rustls::ClientConnection {
    rustls::ClientConnection::new(config, ServerName::try_from("localhost").expect("name"))
        .expect("client connection")
}

/// The client's pending records as wire bytes.
pub fn client_wire(client: &mut rustls::ClientConnection) -> Vec<u8> {
    let mut wire = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut wire).unwrap();
    }
    wire
}

/// What went wrong while pumping, and on which side.
#[derive(Debug)]
pub enum PumpError {
    Server(super::TlsError),
    Client(rustls::Error),
}

/// Moves bytes both ways until neither side has anything to send. Server
/// plaintext is appended to `server_rx`, client plaintext to `client_rx`.
pub fn pump(
    client: &mut rustls::ClientConnection,
    server: &mut TlsSession,
    client_rx: &mut Vec<u8>,
    server_rx: &mut Vec<u8>,
) -> Result<(), PumpError> {
    use std::io::Read;
    for _ in 0..100_000 {
        let mut progressed = false;

        // client → server
        let mut wire = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut wire).expect("client write_tls");
        }
        let mut rest = &wire[..];
        while !rest.is_empty() {
            progressed = true;
            let n = server.feed(rest).map_err(PumpError::Server)?;
            server
                .read_plaintext(server_rx)
                .map_err(PumpError::Server)?;
            rest = &rest[n..];
        }
        server
            .read_plaintext(server_rx)
            .map_err(PumpError::Server)?;

        // server → client
        let mut wire = Vec::new();
        server.take_ciphertext(&mut wire);
        let mut rest = &wire[..];
        while !rest.is_empty() {
            progressed = true;
            let n = client.read_tls(&mut rest).expect("client read_tls");
            assert!(n > 0, "client stopped reading");
            client.process_new_packets().map_err(PumpError::Client)?;
            let mut buf = [0u8; 16 * 1024];
            loop {
                match client.reader().read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => client_rx.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("client read: {e}"),
                }
            }
        }
        if !progressed {
            return Ok(());
        }
    }
    panic!("pump did not settle");
}

/// Pumps a fresh client against a fresh session; returns both after the
/// exchange settles, or the first error.
pub fn handshake(
    tls: &super::ServerTls,
    spec: &ClientSpec<'_>,
) -> Result<(rustls::ClientConnection, TlsSession), PumpError> {
    let mut client = spec.connect();
    let mut server = TlsSession::new(tls).expect("session");
    pump(&mut client, &mut server, &mut Vec::new(), &mut Vec::new())?;
    Ok((client, server))
}
