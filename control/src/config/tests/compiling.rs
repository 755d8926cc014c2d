//! Compiling configurations into snapshots: route and cluster mapping,
//! re-validation, TLS files (real PEM files generated with rcgen).

use std::path::Path;
use std::time::Duration;

use dataplane::route::{ClusterId, HostMatch, PathMatch, Protocol};

use super::*;

#[test]
fn compile_maps_routes_to_clusters_in_file_order() {
    let text = r#"
[[listeners]]
name = "a"
address = "127.0.0.1:8080"
header_timeout_ms = 5000
max_connections = 100

[[listeners]]
name = "b"
address = "[::1]:8081"
protocol = "tcp"

[[routes]]
listener = "a"
cluster = "canary"
[routes.match]
host = "*.Example.com"
methods = ["get"]

[[routes]]
listener = "b"
cluster = "stable"

[[routes]]
name = "fallback"
listener = "a"
cluster = "stable"
timeout_ms = 2000
[routes.match]
path_exact = "/x"

[[routes]]
listener = "a"
cluster = "canary"

[[clusters]]
name = "stable"
endpoints = ["127.0.0.1:9000", "[::1]:9001"]
connect_timeout_ms = 250
[clusters.pool]
max_idle_per_endpoint = 0

[[clusters]]
name = "canary"
endpoints = ["127.0.0.1:9002"]
"#;
    let c = load(text).unwrap();
    let snap = c.compile(42).unwrap();
    assert_eq!(snap.generation, 42);
    assert_eq!(snap.clusters.len(), 2);
    assert_eq!(snap.clusters[0].name, "stable");
    assert_eq!(snap.clusters[0].connect_timeout, Duration::from_millis(250));
    assert_eq!(snap.clusters[0].pool.max_idle_per_endpoint, 0);
    assert_eq!(snap.clusters[0].pool.idle_timeout, Duration::from_secs(30));
    assert_eq!(snap.clusters[1].connect_timeout, Duration::from_secs(1));

    let a = snap.listener("a").unwrap();
    assert_eq!(a.protocol, Protocol::Http);
    assert!(a.tls.is_none());
    assert_eq!(a.limits.header_timeout, Duration::from_secs(5));
    assert_eq!(a.limits.idle_timeout, Duration::from_secs(60));
    assert_eq!(a.limits.max_header_bytes, 65536);
    assert_eq!(a.limits.max_connections, 100);
    let names: Vec<&str> = a.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["a#0", "fallback", "a#2"]);
    let ids: Vec<ClusterId> = a.routes.iter().flat_map(|r| r.target.clusters()).collect();
    assert_eq!(ids, [ClusterId(1), ClusterId(0), ClusterId(1)]);
    assert_eq!(
        a.routes[0].matcher.host,
        Some(HostMatch::Suffix(".example.com".to_owned()))
    );
    assert_eq!(a.routes[0].matcher.methods, ["GET"]);
    assert_eq!(a.routes[0].timeout, Duration::from_secs(15));
    assert_eq!(
        a.routes[1].matcher.path,
        Some(PathMatch::Exact("/x".to_owned()))
    );
    assert_eq!(a.routes[1].timeout, Duration::from_secs(2));
    assert_eq!(
        snap.cluster(a.routes[1].target.clusters().next().unwrap())
            .name,
        "stable"
    );

    // The compiled matchers behave as configured.
    assert_eq!(
        a.find_route(Some("www.example.com:8080"), "/y", "GET")
            .unwrap()
            .name,
        "a#0"
    );
    assert_eq!(
        a.find_route(Some("www.example.com"), "/x", "POST")
            .unwrap()
            .name,
        "fallback"
    );
    assert_eq!(a.find_route(None, "/z", "GET").unwrap().name, "a#2");

    let b = snap.listener("b").unwrap();
    assert_eq!(b.protocol, Protocol::Tcp);
    assert_eq!(b.address, "[::1]:8081".parse().unwrap());
    assert_eq!(b.routes.len(), 1);
    assert_eq!(b.routes[0].name, "b#0");
    assert_eq!(b.routes[0].target.clusters().next(), Some(ClusterId(0)));
}

#[test]
fn compile_host_trailing_dot_and_exact() {
    let c = load(&with_match(
        "host = \"Api.Example.com.\"\npath_prefix = \"/v1/\"",
    ))
    .unwrap();
    let snap = c.compile(1).unwrap();
    let m = &snap.listeners[0].routes[0].matcher;
    assert_eq!(m.host, Some(HostMatch::Exact("api.example.com".to_owned())));
    assert_eq!(m.path, Some(PathMatch::Prefix("/v1/".to_owned())));
}

#[test]
fn compile_revalidates_configs_built_in_code() {
    let mut c = load(MINIMAL).unwrap();
    c.routes[0].cluster = Some("gone".to_owned());
    let e = c.compile(1).unwrap_err().to_string();
    assert_eq!(
        e,
        "meshgate.toml: routes[0].cluster: unknown cluster \"gone\" (known: backend)"
    );
}

#[test]
fn compile_reports_missing_tls_files_by_field() {
    let dir = TempDir::new();
    let c =
        Config::from_toml_str(&with_tls("client_ca = \"ca.pem\""), "gw.toml", dir.path()).unwrap();
    let e = c.compile(1).unwrap_err();
    let text = e.to_string();
    let cert = dir.path().join("s.pem");
    assert_contains(
        &text,
        &format!(
            "gw.toml: listeners[0].tls.cert: cannot read \"{}\"",
            cert.display()
        ),
    );
    assert_contains(&text, "listeners[0].tls.key: cannot read");
    assert_contains(&text, "listeners[0].tls.client_ca: cannot read");
    assert_eq!(e.issues().len(), 3);
}

#[test]
fn from_file_reads_and_resolves_against_its_folder() {
    let dir = TempDir::new();
    let path = dir.path().join("meshgate.toml");
    std::fs::write(&path, FULL).unwrap();
    let c = Config::from_file(&path).unwrap();
    assert_eq!(c.source.as_deref(), Some(path.as_path()));
    assert_eq!(
        c.listeners[0].tls.as_ref().unwrap().cert,
        dir.path().join("server.pem")
    );

    std::fs::write(&path, MINIMAL.replace("127.0.0.1:8080", "nope")).unwrap();
    let e = Config::from_file(&path).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("{}:4:11: listeners[0].address", path.display())),
        "{e}"
    );

    let missing = dir.path().join("absent.toml");
    let e = Config::from_file(&missing).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }));
    assert_contains(&e.to_string(), "absent.toml: cannot read config");
}

#[test]
fn location_counts_characters() {
    let text = "a\nbé = 1\n";
    assert_eq!(span::location(text, 0), Location { line: 1, column: 1 });
    assert_eq!(span::location(text, 2), Location { line: 2, column: 1 });
    assert_eq!(span::location(text, 5), Location { line: 2, column: 3 });
    // Inside a character and past the end: clamped, no panic.
    assert_eq!(span::location(text, 4), Location { line: 2, column: 2 });
    assert_eq!(span::location(text, 999), Location { line: 3, column: 1 });
}

// --- TLS compile paths: need the real `ServerTls::from_settings` -----------

/// A CA, a server certificate it signed, and their PEM files in a temp dir.
struct Pki {
    dir: TempDir,
}

impl Pki {
    fn new() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let dir = TempDir::new();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&server_key, &ca)
            .unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.path().join("server.pem"), server.pem()).unwrap();
        std::fs::write(dir.path().join("server.key"), server_key.serialize_pem()).unwrap();
        Pki { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

#[test]
fn compile_builds_mtls_listener_from_pem_files() {
    let pki = Pki::new();
    let c = Config::from_toml_str(FULL, "meshgate.toml", pki.path()).unwrap();
    let snap = c.compile(1).unwrap_or_else(|e| panic!("{e}"));
    assert!(snap.listeners[0].tls.is_some());
    assert_eq!(snap.listeners[0].routes[0].name, "r0");
}

#[test]
fn compile_builds_server_only_tls_listener() {
    let pki = Pki::new();
    let text = FULL
        .replace("client_ca = \"ca.pem\"\n", "")
        .replace("client_auth = \"require\"", "client_auth = \"none\"")
        .replace("min_version = \"1.2\"", "min_version = \"1.3\"")
        .replace("session_tickets = true", "session_tickets = false");
    let c = Config::from_toml_str(&text, "meshgate.toml", pki.path()).unwrap();
    let snap = c.compile(1).unwrap_or_else(|e| panic!("{e}"));
    assert!(snap.listeners[0].tls.is_some());
}

#[test]
fn compile_reports_tls_error_naming_listener_and_file() {
    let pki = Pki::new();
    // The key file holds a certificate, not a key.
    std::fs::copy(pki.path().join("server.pem"), pki.path().join("server.key")).unwrap();
    let c = Config::from_toml_str(FULL, "meshgate.toml", pki.path()).unwrap();
    let e = c.compile(1).unwrap_err().to_string();
    assert_contains(&e, "meshgate.toml: listeners[0].tls: ");
    assert_contains(&e, "server.key");
}
