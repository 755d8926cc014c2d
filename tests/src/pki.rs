//! [`Pki`]: the certificates of one test, generated with rcgen and written
//! as PEM files into the test's folder.
//!
//! | file | what |
//! | --- | --- |
//! | `ca.pem` | the CA the gateway trusts for clients, and clients trust for the gateway |
//! | `server.pem`, `server.key` | the gateway: SAN `localhost` and `127.0.0.1` |
//! | `client.pem`, `client.key` | a workload: only the URI SAN [`SPIFFE_ID`] (no CN, no DNS) |
//! | `second-client.pem`, `second-client.key` | another workload: URI SAN [`SECOND_SPIFFE_ID`] |
//! | `other-ca.pem`, `other-client.pem`, `other-client.key` | same identity, signed by a CA the gateway does not trust |
//! | `expired-client.pem`, `expired-client.key` | signed by `ca.pem`, but `not_after` is in 2001 |
//!
//! Keys are ECDSA P-256 (rcgen's default), fresh for every [`Pki::new`].

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};

/// The SPIFFE ID in the client certificates.
pub const SPIFFE_ID: &str = "spiffe://meshgate.local/ns/default/sa/demo";

/// The SPIFFE ID of the second workload.
pub const SECOND_SPIFFE_ID: &str = "spiffe://meshgate.local/ns/default/sa/other";

/// Paths of the generated files, and facts tests compare against.
#[derive(Debug, Clone)]
pub struct Pki {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub second_client_cert: PathBuf,
    pub second_client_key: PathBuf,
    pub other_ca: PathBuf,
    pub other_client_cert: PathBuf,
    pub other_client_key: PathBuf,
    pub expired_client_cert: PathBuf,
    pub expired_client_key: PathBuf,
    /// Lowercase hex SHA-256 of `client.pem`'s DER: the XFCC `Hash=` value.
    pub client_cert_sha256: String,
    /// `ca.pem`'s key (PEM), to issue more certificates.
    ca_key_pem: String,
    /// `other-ca.pem`'s key.
    other_ca_key_pem: String,
}

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    path
}

fn new_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    CertifiedIssuer::self_signed(ca_params(name), KeyPair::generate().expect("key"))
        .expect("self-signed CA")
}

/// The gateway's client CA.
const CA_NAME: &str = "meshgate e2e CA";
/// The CA the gateway does not trust by default.
const OTHER_CA_NAME: &str = "meshgate e2e untrusted CA";

fn ca_params(name: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p
}

fn client_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    // No subject at all: the identity is the URI SAN only.
    p.distinguished_name = DistinguishedName::new();
    p.subject_alt_names = vec![SanType::URI(SPIFFE_ID.try_into().expect("uri"))];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p
}

impl Pki {
    /// Generates every certificate and writes the files into `dir`.
    pub fn new(dir: &Path) -> Pki {
        let ca = new_ca(CA_NAME);
        let ca_path = write(dir, "ca.pem", &ca.pem());

        let mut server = CertificateParams::default();
        server.distinguished_name = DistinguishedName::new();
        server
            .distinguished_name
            .push(DnType::CommonName, "meshgate e2e gateway");
        server.subject_alt_names = vec![
            SanType::DnsName("localhost".try_into().expect("dns")),
            SanType::IpAddress("127.0.0.1".parse().expect("ip")),
        ];
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("key");
        let cert = server.signed_by(&key, &ca).expect("server cert");
        let server_cert = write(dir, "server.pem", &cert.pem());
        let server_key = write(dir, "server.key", &key.serialize_pem());

        let key = KeyPair::generate().expect("key");
        let cert = client_params().signed_by(&key, &ca).expect("client cert");
        let client_cert_sha256 = crate::sha256_hex(cert.der());
        let client_cert = write(dir, "client.pem", &cert.pem());
        let client_key = write(dir, "client.key", &key.serialize_pem());

        let key = KeyPair::generate().expect("key");
        let mut second = client_params();
        second.subject_alt_names = vec![SanType::URI(SECOND_SPIFFE_ID.try_into().expect("uri"))];
        let cert = second.signed_by(&key, &ca).expect("second client cert");
        let second_client_cert = write(dir, "second-client.pem", &cert.pem());
        let second_client_key = write(dir, "second-client.key", &key.serialize_pem());

        let other = new_ca(OTHER_CA_NAME);
        let other_ca = write(dir, "other-ca.pem", &other.pem());
        let key = KeyPair::generate().expect("key");
        let cert = client_params()
            .signed_by(&key, &other)
            .expect("other client cert");
        let other_client_cert = write(dir, "other-client.pem", &cert.pem());
        let other_client_key = write(dir, "other-client.key", &key.serialize_pem());

        let mut expired = client_params();
        expired.not_before = rcgen::date_time_ymd(2000, 1, 1);
        expired.not_after = rcgen::date_time_ymd(2001, 1, 1);
        let key = KeyPair::generate().expect("key");
        let cert = expired.signed_by(&key, &ca).expect("expired client cert");
        let expired_client_cert = write(dir, "expired-client.pem", &cert.pem());
        let expired_client_key = write(dir, "expired-client.key", &key.serialize_pem());

        Pki {
            dir: dir.to_owned(),
            ca: ca_path,
            server_cert,
            server_key,
            client_cert,
            client_key,
            second_client_cert,
            second_client_key,
            other_ca,
            other_client_cert,
            other_client_key,
            expired_client_cert,
            expired_client_key,
            client_cert_sha256,
            ca_key_pem: ca.key().serialize_pem(),
            other_ca_key_pem: other.key().serialize_pem(),
        }
    }

    /// Issues a client certificate signed by `ca.pem` with `spiffe_id` as
    /// its only SAN (`None`: a certificate without a SPIFFE ID, CN only),
    /// written as `NAME.pem` / `NAME.key`; returns their paths.
    pub fn issue_client(&self, name: &str, spiffe_id: Option<&str>) -> (PathBuf, PathBuf) {
        self.issue_client_serial(name, spiffe_id, None)
    }

    /// [`Pki::issue_client`] with a chosen serial number (to revoke it).
    pub fn issue_client_serial(
        &self,
        name: &str,
        spiffe_id: Option<&str>,
        serial: Option<u64>,
    ) -> (PathBuf, PathBuf) {
        let ca_key = KeyPair::from_pem(&self.ca_key_pem).expect("CA key");
        let issuer = rcgen::Issuer::new(ca_params(CA_NAME), ca_key);
        let mut params = client_params();
        match spiffe_id {
            Some(id) => params.subject_alt_names = vec![SanType::URI(id.try_into().expect("uri"))],
            None => {
                params.subject_alt_names = Vec::new();
                params.distinguished_name.push(DnType::CommonName, name);
            }
        }
        params.serial_number = serial.map(rcgen::SerialNumber::from);
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &issuer).expect("client cert");
        (
            write(&self.dir, &format!("{name}.pem"), &cert.pem()),
            write(&self.dir, &format!("{name}.key"), &key.serialize_pem()),
        )
    }

    /// Issues a server certificate (an X.509-SVID: `spiffe_id` is its only
    /// name, no DNS or IP SAN, no subject) signed by `ca.pem`, written as
    /// `NAME.pem` / `NAME.key`: what an upstream workload in a mesh holds.
    pub fn issue_svid_server(&self, name: &str, spiffe_id: &str) -> (PathBuf, PathBuf) {
        let ca_key = KeyPair::from_pem(&self.ca_key_pem).expect("CA key");
        let issuer = rcgen::Issuer::new(ca_params(CA_NAME), ca_key);
        let mut params = client_params();
        params.subject_alt_names = vec![SanType::URI(spiffe_id.try_into().expect("uri"))];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &issuer).expect("server cert");
        (
            write(&self.dir, &format!("{name}.pem"), &cert.pem()),
            write(&self.dir, &format!("{name}.key"), &key.serialize_pem()),
        )
    }

    /// Issues a client certificate signed by `other-ca.pem` with
    /// `spiffe_id` as its only SAN, written as `NAME.pem` / `NAME.key`.
    pub fn issue_other_client(&self, name: &str, spiffe_id: &str) -> (PathBuf, PathBuf) {
        let ca_key = KeyPair::from_pem(&self.other_ca_key_pem).expect("CA key");
        let issuer = rcgen::Issuer::new(ca_params(OTHER_CA_NAME), ca_key);
        let mut params = client_params();
        params.subject_alt_names = vec![SanType::URI(spiffe_id.try_into().expect("uri"))];
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &issuer).expect("client cert");
        (
            write(&self.dir, &format!("{name}.pem"), &cert.pem()),
            write(&self.dir, &format!("{name}.key"), &key.serialize_pem()),
        )
    }

    /// Writes `NAME` (PEM): a revocation list of `ca.pem` revoking these
    /// serial numbers (none: an empty list).
    pub fn write_crl(&self, name: &str, revoked: &[u64]) -> PathBuf {
        let ca_key = KeyPair::from_pem(&self.ca_key_pem).expect("CA key");
        let issuer = rcgen::Issuer::new(ca_params(CA_NAME), ca_key);
        static NUMBER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let params = rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2020, 1, 1),
            next_update: rcgen::date_time_ymd(2099, 1, 1),
            crl_number: rcgen::SerialNumber::from(
                NUMBER.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            ),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|s| rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from(*s),
                    revocation_time: rcgen::date_time_ymd(2021, 1, 1),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&issuer).expect("CRL");
        write(&self.dir, name, &crl.pem().expect("CRL PEM"))
    }

    /// curl arguments that trust the CA and present the client certificate.
    pub fn curl_mtls_args(&self) -> Vec<String> {
        self.curl_args_with(&self.client_cert, &self.client_key)
    }

    /// curl arguments that trust the CA and present `cert`/`key`.
    pub fn curl_args_with(&self, cert: &Path, key: &Path) -> Vec<String> {
        vec![
            "--cacert".into(),
            path_str(&self.ca),
            "--cert".into(),
            path_str(cert),
            "--key".into(),
            path_str(key),
        ]
    }

    /// curl arguments that trust the CA and present no certificate.
    pub fn curl_no_cert_args(&self) -> Vec<String> {
        vec!["--cacert".into(), path_str(&self.ca)]
    }
}

/// A path as a `String` (test paths are ASCII).
pub fn path_str(p: &Path) -> String {
    p.to_str()
        .unwrap_or_else(|| panic!("non-UTF-8 path {}", p.display()))
        .to_owned()
}
