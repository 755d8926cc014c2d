//! `meshgate quickstart`: the embedded default. Generates a development CA,
//! a server certificate and a SPIFFE client certificate, starts the demo
//! upstream, writes the `meshgate.toml` it runs, and prints the `curl`
//! command that works with those files.

use std::fs;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};

/// The SPIFFE ID of the quickstart's client certificate.
pub const DEMO_SPIFFE_ID: &str = "spiffe://meshgate.local/ns/default/sa/demo";

/// Why the quickstart could not prepare its files.
#[derive(Debug, thiserror::Error)]
pub enum QuickstartError {
    #[error("quickstart: cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("quickstart: certificate generation failed: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("quickstart: cannot start the demo upstream: {0}")]
    Upstream(io::Error),
}

fn write(dir: &Path, name: &str, contents: &str) -> Result<PathBuf, QuickstartError> {
    let path = dir.join(name);
    fs::write(&path, contents).map_err(|source| QuickstartError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// Generates `ca.pem`, `server.pem`, `server.key`, `client.pem` and
/// `client.key` in `dir`; the server certificate is valid for `localhost`,
/// 127.0.0.1, ::1 and `listen_ip`.
pub fn generate_certs(dir: &Path, listen_ip: IpAddr) -> Result<(), QuickstartError> {
    fs::create_dir_all(dir).map_err(|source| QuickstartError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name
        .push(DnType::CommonName, "meshgate quickstart development CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
    write(dir, "ca.pem", &ca.pem())?;

    let mut names = vec![SanType::DnsName("localhost".try_into()?)];
    for ip in [
        "127.0.0.1".parse().expect("ip"),
        "::1".parse().expect("ip"),
        listen_ip,
    ] {
        if !ip.is_unspecified() && !names.contains(&SanType::IpAddress(ip)) {
            names.push(SanType::IpAddress(ip));
        }
    }
    let mut server = CertificateParams::default();
    server.distinguished_name = DistinguishedName::new();
    server
        .distinguished_name
        .push(DnType::CommonName, "meshgate quickstart gateway");
    server.subject_alt_names = names;
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate()?;
    let cert = server.signed_by(&key, &ca)?;
    write(dir, "server.pem", &cert.pem())?;
    write(dir, "server.key", &key.serialize_pem())?;

    let mut client = CertificateParams::default();
    client.distinguished_name = DistinguishedName::new();
    client.subject_alt_names = vec![SanType::URI(DEMO_SPIFFE_ID.try_into()?)];
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate()?;
    let cert = client.signed_by(&key, &ca)?;
    write(dir, "client.pem", &cert.pem())?;
    write(dir, "client.key", &key.serialize_pem())?;
    Ok(())
}

/// The quickstart configuration: one mTLS listener on `listen` routing
/// everything to the demo upstream at `upstream`.
pub fn config_text(listen: SocketAddr, upstream: SocketAddr) -> String {
    format!(
        r#"# Written by `meshgate quickstart`. Certificates are in this folder.
[dataplane]
shards = "auto"

[control]
socket = "control.sock"   # meshctl --socket <this folder>/control.sock status

[admin]
address = "127.0.0.1:0"   # /metrics, /ready, /live; port 0: the kernel picks one (printed at start)

[[listeners]]
name = "public"
address = "{listen}"
protocol = "http"
access_log = {{ path = "access.log", format = "json" }}
[listeners.tls]
cert = "server.pem"
key = "server.key"
client_ca = "ca.pem"
client_auth = "require"

[[routes]]
listener = "public"
cluster = "demo"
[routes.match]
path_prefix = "/"

[[clusters]]
name = "demo"
endpoints = ["{upstream}"]
"#
    )
}

/// Prepares `dir` (certificates, demo upstream, config) and returns the
/// config path.
pub fn prepare(dir: &Path, listen: SocketAddr) -> Result<PathBuf, QuickstartError> {
    generate_certs(dir, listen.ip())?;
    let upstream = crate::demo::start("127.0.0.1:0".parse().expect("addr"))
        .map_err(QuickstartError::Upstream)?;
    write(dir, "meshgate.toml", &config_text(listen, upstream))
}

/// The `curl` command that reaches the quickstart listener at `address`.
pub fn curl_command(dir: &Path, address: SocketAddr) -> String {
    let host = if address.ip().is_loopback() || address.ip().is_unspecified() {
        "localhost".to_owned()
    } else if address.is_ipv6() {
        format!("[{}]", address.ip())
    } else {
        address.ip().to_string()
    };
    let d = dir.display();
    format!(
        "curl --cacert {d}/ca.pem --cert {d}/client.pem --key {d}/client.key https://{host}:{}/hello",
        address.port()
    )
}
