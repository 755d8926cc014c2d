use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

mod compiling;
mod traffic;

/// The config from the issue, with every key spelled out.
const FULL: &str = r#"
[dataplane]
shards = "auto"
stack = "kernel"

[control]
socket = "/run/meshgate/control.sock"

[[listeners]]
name = "public"
address = "127.0.0.1:8443"
protocol = "http"
max_header_bytes = 65536
header_timeout_ms = 10000
idle_timeout_ms = 60000
max_connections = 0
[listeners.tls]
cert = "server.pem"
key = "server.key"
client_ca = "ca.pem"
client_auth = "require"
min_version = "1.2"
session_tickets = true
groups = ["x25519mlkem768", "x25519", "secp256r1"]
alpn = ["http/1.1"]

[[routes]]
name = "r0"
listener = "public"
cluster = "backend"
timeout_ms = 15000
[routes.match]
host = "api.example.com"
path_prefix = "/"
methods = ["GET", "POST"]

[[clusters]]
name = "backend"
endpoints = ["127.0.0.1:9000"]
connect_timeout_ms = 1000
[clusters.pool]
max_idle_per_endpoint = 64
idle_timeout_ms = 30000
"#;

/// Smallest useful config: everything else defaulted, no TLS.
const MINIMAL: &str = r#"
[[listeners]]
name = "public"
address = "127.0.0.1:8080"

[[routes]]
listener = "public"
cluster = "backend"

[[clusters]]
name = "backend"
endpoints = ["127.0.0.1:9000"]
"#;

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, "meshgate.toml", Path::new("/etc/meshgate"))
}

/// The error text of a config that must fail.
fn err(text: &str) -> String {
    match load(text) {
        Ok(c) => panic!("expected an error, got {c:#?}"),
        Err(e) => e.to_string(),
    }
}

fn assert_contains(haystack: &str, needle: &str) {
    assert!(
        haystack.contains(needle),
        "expected {needle:?} in:\n{haystack}"
    );
}

/// 1-based line of the first occurrence of `needle` in `text`.
fn line_of(text: &str, needle: &str) -> usize {
    let at = text.find(needle).expect("needle in text");
    text[..at].matches('\n').count() + 1
}

#[test]
fn full_config_parses() {
    let c = load(FULL).unwrap();
    assert_eq!(c.dataplane.shards, Shards::Auto);
    assert_eq!(c.dataplane.stack, Stack::Kernel);
    assert_eq!(
        c.control.socket.as_deref(),
        Some(Path::new("/run/meshgate/control.sock"))
    );
    let l = &c.listeners[0];
    assert_eq!(l.name, "public");
    assert_eq!(l.address, "127.0.0.1:8443".parse().unwrap());
    let tls = l.tls.as_ref().unwrap();
    assert_eq!(tls.client_auth, Some(ClientAuthConfig::Require));
    assert_eq!(tls.min_version, MinVersion::Tls12);
    assert_eq!(tls.alpn.as_deref(), Some(&["http/1.1".to_owned()][..]));
    let r = &c.routes[0];
    assert_eq!(r.name.as_deref(), Some("r0"));
    assert_eq!(r.matcher.methods, ["GET", "POST"]);
    assert_eq!(c.clusters[0].endpoints, ["127.0.0.1:9000".parse().unwrap()]);
    assert_eq!(c.source.as_deref(), Some(Path::new("meshgate.toml")));
}

#[test]
fn defaults() {
    let c = load(MINIMAL).unwrap();
    assert_eq!(c.dataplane, DataplaneConfig::default());
    assert_eq!(c.dataplane.shards, Shards::Auto);
    assert_eq!(c.dataplane.stack, Stack::Kernel);
    assert_eq!(c.control.socket, None);
    let l = &c.listeners[0];
    assert_eq!(l.protocol, ListenerProtocol::Http);
    assert_eq!(l.max_header_bytes, 65536);
    assert_eq!(l.header_timeout_ms, 10_000);
    assert_eq!(l.idle_timeout_ms, 60_000);
    assert_eq!(l.max_connections, 0);
    assert!(l.tls.is_none());
    let r = &c.routes[0];
    assert_eq!(r.name.as_deref(), Some("public#0"));
    assert_eq!(r.timeout_ms, 15_000);
    assert_eq!(r.matcher, MatchConfig::default());
    let cl = &c.clusters[0];
    assert_eq!(cl.connect_timeout_ms, 1000);
    assert_eq!(cl.pool.max_idle_per_endpoint, 64);
    assert_eq!(cl.pool.idle_timeout_ms, 30_000);
}

#[test]
fn tls_defaults() {
    let with_ca = MINIMAL.replace(
        "address = \"127.0.0.1:8080\"",
        "address = \"127.0.0.1:8080\"\ntls = { cert = \"s.pem\", key = \"s.key\", client_ca = \"ca.pem\" }",
    );
    let c = load(&with_ca).unwrap();
    let tls = c.listeners[0].tls.as_ref().unwrap();
    assert_eq!(tls.client_auth, None);
    assert_eq!(tls.effective_client_auth(), ClientAuthConfig::Require);
    assert_eq!(tls.min_version, MinVersion::Tls12);
    assert!(tls.session_tickets);
    assert_eq!(tls.groups, DEFAULT_GROUPS);
    assert_eq!(tls.effective_alpn(ListenerProtocol::Http), ["http/1.1"]);
    assert!(tls.effective_alpn(ListenerProtocol::Tcp).is_empty());

    let without_ca = MINIMAL.replace(
        "address = \"127.0.0.1:8080\"",
        "address = \"127.0.0.1:8080\"\ntls = { cert = \"s.pem\", key = \"s.key\" }",
    );
    let c = load(&without_ca).unwrap();
    let tls = c.listeners[0].tls.as_ref().unwrap();
    assert_eq!(tls.effective_client_auth(), ClientAuthConfig::None);
    let s = compile::tls_settings(&c.listeners[0], tls);
    assert_eq!(s.client_auth, dataplane::tls::ClientAuth::None);
    assert_eq!(s.cert, Path::new("/etc/meshgate/s.pem"));
}

#[test]
fn relative_paths_resolve_against_base_dir() {
    let text = FULL.replace("/run/meshgate/control.sock", "run/control.sock");
    let c = Config::from_toml_str(&text, "meshgate.toml", Path::new("/srv/gw")).unwrap();
    assert_eq!(
        c.control.socket.as_deref(),
        Some(Path::new("/srv/gw/run/control.sock"))
    );
    let tls = c.listeners[0].tls.as_ref().unwrap();
    assert_eq!(tls.cert, Path::new("/srv/gw/server.pem"));
    assert_eq!(tls.key, Path::new("/srv/gw/server.key"));
    assert_eq!(tls.client_ca.as_deref(), Some(Path::new("/srv/gw/ca.pem")));

    // Absolute paths are kept.
    let abs = FULL.replace("\"server.pem\"", "\"/pki/server.pem\"");
    let c = Config::from_toml_str(&abs, "meshgate.toml", Path::new("/srv/gw")).unwrap();
    assert_eq!(
        c.listeners[0].tls.as_ref().unwrap().cert,
        Path::new("/pki/server.pem")
    );

    // A relative base_dir is made absolute against the working directory.
    let c = Config::from_toml_str(FULL, "meshgate.toml", Path::new("conf")).unwrap();
    let cert = &c.listeners[0].tls.as_ref().unwrap().cert;
    assert!(cert.is_absolute(), "{cert:?}");
    assert!(cert.ends_with("conf/server.pem"), "{cert:?}");
}

#[test]
fn shards_forms() {
    let with = |v: &str| MINIMAL.to_owned() + &format!("\n[dataplane]\nshards = {v}\n");
    assert_eq!(load(&with("4")).unwrap().dataplane.shards, Shards::Count(4));
    assert_eq!(
        load(&with("1024")).unwrap().dataplane.shards,
        Shards::Count(1024)
    );
    assert_eq!(
        load(&with("\"auto\"")).unwrap().dataplane.shards,
        Shards::Auto
    );
    for bad in ["0", "-1", "1025", "\"many\"", "2.5", "true"] {
        let e = err(&with(bad));
        assert_contains(&e, "dataplane.shards");
        assert_contains(&e, "meshgate.toml:");
    }
    assert_eq!(Shards::Count(3).resolve(), 3);
    assert!((1..=MAX_SHARDS).contains(&Shards::Auto.resolve()));
}

#[test]
fn userspace_stack_not_supported_yet() {
    let text = MINIMAL.to_owned() + "\n[dataplane]\nstack = \"userspace\"\n";
    let e = err(&text);
    let line = line_of(&text, "stack =");
    assert_contains(&e, &format!("meshgate.toml:{line}:9: dataplane.stack: "));
    assert_contains(&e, "not supported yet");
    let e = err(&(MINIMAL.to_owned() + "\n[dataplane]\nstack = \"dpdk\"\n"));
    assert_contains(&e, "dataplane.stack");
    assert_contains(&e, "unknown variant `dpdk`");
}

#[test]
fn unknown_fields_are_rejected_by_name() {
    let text = MINIMAL.replace("[[listeners]]", "[[listners]]");
    let e = err(&text);
    let line = line_of(&text, "[[listners]]");
    assert_contains(
        &e,
        &format!("meshgate.toml:{line}:3: unknown field `listners`, expected one of"),
    );

    let text = MINIMAL.replace("endpoints =", "endpoint =");
    let e = err(&text);
    let line = line_of(&text, "endpoint =");
    assert_contains(
        &e,
        &format!("meshgate.toml:{line}:1: clusters[0]: unknown field `endpoint`"),
    );

    let text = FULL.replace("session_tickets", "session_ticket");
    let e = err(&text);
    assert_contains(&e, "listeners[0].tls: unknown field `session_ticket`");

    let text = FULL.replace("path_prefix", "prefix");
    assert_contains(&err(&text), "routes[0].match: unknown field `prefix`");
}

#[test]
fn syntax_errors_have_line_and_column() {
    let text = "[[listeners]]\nname = \"a\"\naddress = 1.2.3\n";
    let e = err(text);
    assert!(e.starts_with("meshgate.toml:3:"), "{e}");
    let e = err("a = = 1");
    assert!(e.starts_with("meshgate.toml:1:"), "{e}");
}

#[test]
fn invalid_address_names_field_and_position() {
    let text = MINIMAL.replace("127.0.0.1:8080", "127.0.0.1:99999");
    let line = line_of(&text, "127.0.0.1:99999");
    let e = err(&text);
    assert_contains(
        &e,
        &format!(
            "meshgate.toml:{line}:11: listeners[0].address: invalid socket address \"127.0.0.1:99999\""
        ),
    );
    let e = err(&MINIMAL.replace("127.0.0.1:8080", "localhost:8080"));
    assert_contains(&e, "listeners[0].address");
    assert_contains(&e, "host names are not supported");
    let e = err(&MINIMAL.replace("127.0.0.1:8080", "::1:8080"));
    assert_contains(&e, "need brackets");
    let e = err(&MINIMAL.replace("127.0.0.1:8080", "127.0.0.1"));
    assert_contains(&e, "expected IP:port");
    let e = err(&MINIMAL.replace("127.0.0.1:8080", "127.0.0.1.5:80"));
    assert_contains(&e, "invalid IPv4 address");
    let e = err(&MINIMAL.replace("127.0.0.1:8080", "[::g]:80"));
    assert_contains(&e, "invalid IPv6 address");
    let e = err(&MINIMAL.replace("127.0.0.1:8080", "[::1]:99999"));
    assert_contains(&e, "the port must be an integer in 0..=65535");
    let e = err(&MINIMAL.replace("\"127.0.0.1:8080\"", "8080"));
    assert_contains(&e, "listeners[0].address");
}

#[test]
fn port_zero_rejected() {
    assert!(
        Config::from_toml_str(
            &MINIMAL.replace("127.0.0.1:8080", "127.0.0.1:0"),
            "m.toml",
            Path::new("/")
        )
        .is_ok()
    );
    let e = err(&MINIMAL.replace("127.0.0.1:9000", "127.0.0.1:0"));
    assert_contains(&e, "clusters[0].endpoints[0]: port 0");
}

const TWO_LISTENERS: &str = r#"
[[listeners]]
name = "a"
address = "127.0.0.1:8080"

[[listeners]]
name = "b"
address = "127.0.0.1:8081"

[[routes]]
listener = "a"
cluster = "backend"

[[routes]]
listener = "b"
cluster = "backend"

[[clusters]]
name = "backend"
endpoints = ["127.0.0.1:9000"]
"#;

#[test]
fn duplicate_listener_address() {
    let text = TWO_LISTENERS.replace("127.0.0.1:8081", "127.0.0.1:8080");
    let e = err(&text);
    let line = text
        .match_indices("address =")
        .nth(1)
        .map(|(at, _)| text[..at].matches('\n').count() + 1)
        .unwrap();
    assert_contains(
        &e,
        &format!(
            "meshgate.toml:{line}:11: listeners[1].address: duplicate address \"127.0.0.1:8080\" (also listeners[0].address)"
        ),
    );
}

#[test]
fn duplicate_and_empty_names() {
    let text = TWO_LISTENERS.replace("name = \"b\"", "name = \"a\"");
    let e = err(&text);
    assert_contains(
        &e,
        "listeners[1].name: duplicate listener name \"a\" (first used at listeners[0].name)",
    );

    let e = err(&MINIMAL.replace("name = \"public\"", "name = \"\""));
    assert_contains(&e, "listeners[0].name: listener name must not be empty");

    let text = MINIMAL.to_owned()
        + "\n[[clusters]]\nname = \"backend\"\nendpoints = [\"127.0.0.1:9001\"]\n";
    let line = text
        .rfind("name = \"backend\"")
        .map(|at| text[..at].matches('\n').count() + 1)
        .unwrap();
    let e = err(&text);
    assert_contains(
        &e,
        &format!("meshgate.toml:{line}:8: clusters[1].name: duplicate cluster name \"backend\""),
    );

    let text = TWO_LISTENERS.replace("listener = \"b\"", "name = \"a#0\"\nlistener = \"b\"");
    assert_contains(&err(&text), "routes[1].name: duplicate route name \"a#0\"");
}

#[test]
fn unknown_references_list_known_names() {
    let text = MINIMAL.replace("cluster = \"backend\"", "cluster = \"orders\"")
        + "\n[[clusters]]\nname = \"canary\"\nendpoints = [\"127.0.0.1:9001\"]\n";
    let line = line_of(&text, "cluster = \"orders\"");
    let e = err(&text);
    assert_contains(
        &e,
        &format!(
            "meshgate.toml:{line}:11: routes[0].cluster: unknown cluster \"orders\" (known: backend, canary)"
        ),
    );

    let text = MINIMAL.replace("listener = \"public\"", "listener = \"private\"");
    let line = line_of(&text, "listener = \"private\"");
    let e = err(&text);
    assert_contains(
        &e,
        &format!(
            "meshgate.toml:{line}:12: routes[0].listener: unknown listener \"private\" (known: public)"
        ),
    );
}

#[test]
fn all_problems_are_reported() {
    let text = MINIMAL
        .replace(
            "cluster = \"backend\"",
            "cluster = \"nope\"\ntimeout_ms = 0",
        )
        .replace("127.0.0.1:9000\"]", "127.0.0.1:9000\", \"127.0.0.1:9000\"]");
    let e = load(&text).unwrap_err();
    let ConfigError::Invalid(issues) = &e else {
        panic!("{e}")
    };
    let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
    assert!(paths.contains(&"routes[0].cluster"), "{e}");
    assert!(paths.contains(&"routes[0].timeout_ms"), "{e}");
    assert!(paths.contains(&"clusters[0].endpoints[1]"), "{e}");
    assert!(issues.iter().all(|i| i.location.is_some()), "{e}");
    assert_eq!(e.to_string().lines().count(), issues.len());
}

#[test]
fn listener_ranges() {
    for (field, bad) in [
        ("max_header_bytes", "1023"),
        ("max_header_bytes", "1048577"),
        ("header_timeout_ms", "0"),
        ("idle_timeout_ms", "86400001"),
    ] {
        let text = MINIMAL.replace(
            "address = \"127.0.0.1:8080\"",
            &format!("address = \"127.0.0.1:8080\"\n{field} = {bad}"),
        );
        let e = err(&text);
        assert_contains(&e, &format!("listeners[0].{field}: {bad} is out of range"));
        assert_contains(&e, &format!("meshgate.toml:{}:", line_of(&text, field)));
    }
    let e = err(&MINIMAL.replace(
        "address = \"127.0.0.1:8080\"",
        "address = \"127.0.0.1:8080\"\nmax_connections = -1",
    ));
    assert_contains(&e, "listeners[0].max_connections");
}

#[test]
fn protocol_rules() {
    let e = err(&MINIMAL.replace(
        "address = \"127.0.0.1:8080\"",
        "address = \"127.0.0.1:8080\"\nprotocol = \"udp\"",
    ));
    assert_contains(&e, "listeners[0].protocol: unknown variant `udp`");

    let tcp = MINIMAL.replace(
        "address = \"127.0.0.1:8080\"",
        "address = \"127.0.0.1:8080\"\nprotocol = \"tcp\"",
    );
    let c = load(&tcp).unwrap();
    assert_eq!(c.listeners[0].protocol, ListenerProtocol::Tcp);

    let e = err(&(tcp.clone() + "\n[routes.match]\npath_prefix = \"/\"\n"));
    assert_contains(&e, "routes[0].match: listener \"public\" is a tcp listener");

    let e = err(&(tcp.clone() + "\n[[routes]]\nlistener = \"public\"\ncluster = \"backend\"\n"));
    assert_contains(
        &e,
        "listeners[0]: tcp listener \"public\" needs exactly one route, found 2",
    );

    // What only HTTP can do is refused on a tcp route, by name.
    let tcp_route = |extra: &str| {
        tcp.replace(
            "cluster = \"backend\"\n\n[[clusters]]",
            &format!("cluster = \"backend\"\n{extra}\n[[clusters]]"),
        )
    };
    for (extra, want) in [
        (
            "prefix_rewrite = \"/x\"\n",
            "routes[0].prefix_rewrite: route of tcp listener \"public\": prefix_rewrite needs HTTP",
        ),
        (
            "host_rewrite = \"x\"\n",
            "routes[0].host_rewrite: route of tcp listener \"public\": host_rewrite needs HTTP",
        ),
        (
            "[routes.request_headers]\nset = { x-a = \"1\" }\n",
            "routes[0].request_headers: route of tcp listener \"public\"",
        ),
        (
            "[routes.fault]\nabort_percent = 10\n",
            "routes[0].fault: route of tcp listener \"public\": fault needs HTTP",
        ),
        (
            "[routes.rate_limit]\nrps = 10\nkey = \"header:x-user\"\n",
            "routes[0].rate_limit.key: a tcp connection has no headers",
        ),
        (
            "[routes.retry]\nper_try_timeout_ms = 100\n",
            "routes[0].retry.per_try_timeout_ms: a tcp route has no per-try timeout",
        ),
    ] {
        assert_contains(&err(&tcp_route(extra)), want);
    }
    // A retry of connect failures and a per-connection rate limit are fine.
    load(&tcp_route(
        "[routes.retry]\nattempts = 2\n[routes.rate_limit]\nrps = 100\nkey = \"spiffe_id\"\n",
    ))
    .unwrap();

    let e = err(&MINIMAL.replace(
        "[[routes]]\nlistener = \"public\"\ncluster = \"backend\"\n",
        "",
    ));
    assert_contains(&e, "listeners[0]: no route uses listener \"public\"");

    let e = err("");
    assert_contains(
        &e,
        "listeners: at least one [[listeners]] entry is required",
    );
}

fn with_match(m: &str) -> String {
    MINIMAL.to_owned() + "[routes.match]\n" + m + "\n"
}

#[test]
fn match_rules() {
    let c = load(&with_match(
        "host = \"API.Example.com\"\nmethods = [\"get\", \"Post\"]",
    ))
    .unwrap();
    assert_eq!(c.routes[0].matcher.host.as_deref(), Some("api.example.com"));
    assert_eq!(c.routes[0].matcher.methods, ["GET", "POST"]);

    for ok in [
        "*.example.com",
        "[::1]",
        "10.0.0.1",
        "svc_a.mesh.local",
        "example.com.",
    ] {
        load(&with_match(&format!("host = \"{ok}\""))).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for (bad, why) in [
        ("", "must not be empty"),
        ("*", "leave host out"),
        ("a.*.com", "wildcard"),
        ("*example.com", "wildcard"),
        ("api.example.com:8443", "must not include a port"),
        ("::1", "need brackets"),
        ("[::1", "IPv6 address in brackets"),
        ("a..b", "1..=63"),
        ("a b", "only letters"),
    ] {
        let text = with_match(&format!("host = \"{bad}\""));
        let e = err(&text);
        assert_contains(
            &e,
            &format!(
                "meshgate.toml:{}:8: routes[0].match.host: invalid host",
                line_of(&text, "host =")
            ),
        );
        assert_contains(&e, why);
    }

    let e = err(&with_match("path_prefix = \"/a\"\npath_exact = \"/a\""));
    assert_contains(
        &e,
        "routes[0].match.path_exact: path_prefix and path_exact are exclusive",
    );
    let e = err(&with_match("path_prefix = \"api\""));
    assert_contains(
        &e,
        "routes[0].match.path_prefix: path \"api\" must start with \"/\"",
    );
    let e = err(&with_match("path_exact = \"x\""));
    assert_contains(
        &e,
        "routes[0].match.path_exact: path \"x\" must start with \"/\"",
    );
    let e = err(&with_match("path_exact = \"/a?b\""));
    assert_contains(&e, "must not contain a query");

    let text = with_match("methods = [\"GET\", \"BAD METHOD\", \"get\"]");
    let e = err(&text);
    assert_contains(
        &e,
        "routes[0].match.methods[1]: invalid method \"BAD METHOD\"",
    );
    assert_contains(&e, "routes[0].match.methods[2]: duplicate method \"GET\"");
    assert_contains(
        &e,
        &format!(
            "meshgate.toml:{}:19: routes[0].match.methods[1]",
            line_of(&text, "methods")
        ),
    );
    let e = err(&with_match("methods = [\"\"]"));
    assert_contains(&e, "routes[0].match.methods[0]: invalid method");
}

#[test]
fn cluster_rules() {
    let e = err(&MINIMAL.replace("[\"127.0.0.1:9000\"]", "[]"));
    assert_contains(
        &e,
        "clusters[0].endpoints: at least one endpoint is required",
    );

    let text = MINIMAL.replace(
        "[\"127.0.0.1:9000\"]",
        "[\"127.0.0.1:9000\", \"backend.local:9000\"]",
    );
    let e = err(&text);
    let line = line_of(&text, "endpoints");
    assert_contains(
        &e,
        &format!(
            "meshgate.toml:{line}:32: clusters[0].endpoints[1]: invalid socket address \"backend.local:9000\": host names are not supported yet"
        ),
    );

    let e = err(&MINIMAL.replace(
        "[\"127.0.0.1:9000\"]",
        "[\"127.0.0.1:9000\", \"127.0.0.1:9000\"]",
    ));
    assert_contains(
        &e,
        "clusters[0].endpoints[1]: duplicate endpoint \"127.0.0.1:9000\" (also endpoints[0])",
    );

    let text =
        MINIMAL.to_owned() + "connect_timeout_ms = 0\n[clusters.pool]\nidle_timeout_ms = 0\n";
    let e = err(&text);
    assert_contains(&e, "clusters[0].connect_timeout_ms: 0 is out of range");
    assert_contains(&e, "clusters[0].pool.idle_timeout_ms: 0 is out of range");

    let e = err(&MINIMAL.replace("name = \"backend\"\n", ""));
    assert_contains(&e, "clusters[0]: missing field `name`");
}

fn with_tls(tls: &str) -> String {
    MINIMAL.replace(
        "address = \"127.0.0.1:8080\"",
        &format!("address = \"127.0.0.1:8080\"\n[listeners.tls]\ncert = \"s.pem\"\nkey = \"s.key\"\n{tls}\n"),
    )
}

#[test]
fn tls_rules() {
    let text = with_tls("client_auth = \"require\"");
    let e = err(&text);
    assert_contains(
        &e,
        "listeners[0].tls.client_ca: required when client_auth is \"require\"",
    );
    // The missing field points at its table.
    assert_contains(
        &e,
        &format!("meshgate.toml:{}:", line_of(&text, "[listeners.tls]")),
    );
    let e = err(&with_tls("client_auth = \"optional\""));
    assert_contains(
        &e,
        "listeners[0].tls.client_ca: required when client_auth is \"optional\"",
    );
    let e = err(&with_tls("client_ca = \"ca.pem\"\nclient_auth = \"none\""));
    assert_contains(
        &e,
        "listeners[0].tls.client_auth: client_auth is \"none\" but client_ca is set",
    );
    let e = err(&with_tls("client_auth = \"sometimes\""));
    assert_contains(
        &e,
        "listeners[0].tls.client_auth: unknown variant `sometimes`",
    );

    let e = err(&with_tls("min_version = \"1.1\""));
    assert_contains(&e, "listeners[0].tls.min_version: unknown variant `1.1`");
    let c = load(&with_tls("min_version = \"1.3\"")).unwrap();
    assert_eq!(
        c.listeners[0].tls.as_ref().unwrap().min_version,
        MinVersion::Tls13
    );

    let text = with_tls("groups = [\"x25519\", \"ffdhe2048\", \"x25519\"]");
    let e = err(&text);
    assert_contains(
        &e,
        &format!(
            "meshgate.toml:{}:21: listeners[0].tls.groups[1]: unknown group \"ffdhe2048\" (known: x25519mlkem768, x25519, secp256r1, secp384r1)",
            line_of(&text, "groups")
        ),
    );
    assert_contains(&e, "listeners[0].tls.groups[2]: duplicate group \"x25519\"");
    let e = err(&with_tls("groups = []"));
    assert_contains(
        &e,
        "listeners[0].tls.groups: at least one key-exchange group is required",
    );

    let e = err(&with_tls("alpn = [\"\", \"h2\", \"h2\"]"));
    assert_contains(
        &e,
        "listeners[0].tls.alpn[0]: an ALPN protocol name must be 1..=255 bytes",
    );
    assert_contains(
        &e,
        "listeners[0].tls.alpn[2]: duplicate ALPN protocol \"h2\"",
    );

    let e = err(&MINIMAL.replace(
        "address = \"127.0.0.1:8080\"",
        "address = \"127.0.0.1:8080\"\n[listeners.tls]\ncert = \"s.pem\"\n",
    ));
    assert_contains(&e, "listeners[0].tls: missing field `key`");
}

// --- helpers ----------------------------------------------------------------

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "meshgate-config-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// --- robustness -------------------------------------------------------------

mod never_panics {
    use proptest::prelude::*;

    use super::*;

    /// One edit to a valid config: delete, insert or replace a stretch.
    #[derive(Debug, Clone)]
    enum Edit {
        Delete(usize, usize),
        Insert(usize, String),
        Replace(usize, String),
    }

    fn edit() -> impl Strategy<Value = Edit> {
        let snippet = prop_oneof![
            "[ -~]{0,12}",
            Just("\n[[routes]]\n".to_owned()),
            Just("\n[listeners.tls]\n".to_owned()),
            Just("\"".to_owned()),
            Just("]".to_owned()),
            Just("= ".to_owned()),
            Just("0".to_owned()),
            Just("-1".to_owned()),
            Just("99999999999999999999".to_owned()),
            Just("é".to_owned()),
            Just("\u{0}".to_owned()),
        ];
        prop_oneof![
            (any::<usize>(), 0usize..20).prop_map(|(at, n)| Edit::Delete(at, n)),
            (any::<usize>(), snippet.clone()).prop_map(|(at, s)| Edit::Insert(at, s)),
            (any::<usize>(), snippet).prop_map(|(at, s)| Edit::Replace(at, s)),
        ]
    }

    fn apply(text: &str, edits: &[Edit]) -> String {
        let mut chars: Vec<char> = text.chars().collect();
        for e in edits {
            let len = chars.len().max(1);
            match e {
                Edit::Delete(at, n) => {
                    let at = at % len;
                    let end = (at + n).min(chars.len());
                    chars.drain(at.min(end)..end);
                }
                Edit::Insert(at, s) => {
                    let at = at % (chars.len() + 1);
                    chars.splice(at..at, s.chars());
                }
                Edit::Replace(at, s) => {
                    let at = at % len;
                    let end = (at + s.chars().count()).min(chars.len());
                    chars.splice(at.min(end)..end, s.chars());
                }
            }
        }
        chars.into_iter().collect()
    }

    fn exercise(text: &str) {
        match Config::from_toml_str(text, "fuzz.toml", Path::new("/etc/meshgate")) {
            // A config that loads must also compile or fail cleanly.
            Ok(c) => {
                let _ = c.compile(1);
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.starts_with("fuzz.toml"), "{msg}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn on_arbitrary_strings(text in "\\PC{0,200}") {
            exercise(&text);
        }

        #[test]
        fn on_arbitrary_toml_like_strings(text in "[\\[\\]a-z_=\"{},.0-9 \n#:*/-]{0,200}") {
            exercise(&text);
        }

        #[test]
        fn on_mutations_of_a_valid_config(
            base in prop_oneof![Just(FULL), Just(MINIMAL), Just(TWO_LISTENERS)],
            edits in proptest::collection::vec(edit(), 1..6),
        ) {
            exercise(&apply(base, &edits));
        }
    }
}

#[test]
fn table_level_issues_point_at_the_table_header() {
    let text = MINIMAL.replace(
        "[[routes]]\nlistener = \"public\"\ncluster = \"backend\"\n",
        "",
    );
    let e = err(&text);
    assert_contains(
        &e,
        &format!("meshgate.toml:{}:", line_of(&text, "[[listeners]]")),
    );
    // Issues come out in file order.
    let text = MINIMAL
        .replace("cluster = \"backend\"", "cluster = \"nope\"")
        .replace("name = \"public\"", "name = \"\"");
    let e = load(&text).unwrap_err();
    let lines: Vec<usize> = e
        .issues()
        .iter()
        .map(|i| i.location.unwrap().line)
        .collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted, "{e}");
}

#[test]
fn example_configs_in_the_repository_validate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("configs/ exists") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.display().to_string();
        if let Err(e) = Config::from_toml_str(&text, &name, &dir) {
            panic!("{name} does not validate:\n{e}");
        }
        seen += 1;
    }
    assert!(seen >= 2, "expected the example configs, found {seen}");
}
