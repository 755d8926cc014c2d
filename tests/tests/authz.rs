//! Authorization by the caller's certificate identity, seen by real
//! clients: curl with several client certificates (and none), a TLS
//! client keeping a connection the listener refuses, a TCP listener, the
//! counters in `meshctl stats`, `meshctl authz explain`, and config errors
//! naming the field.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use harness::bench::BenchUpstream;
use harness::gateway::toml_str;
use harness::{
    Gateway, LISTENER, Pki, TempDir, Upstream, curl, describe, meshgate_bin, tls_client_with,
    tls_connect,
};

/// The callers of these tests, by their certificate files.
struct Callers {
    web: (PathBuf, PathBuf),
    legacy: (PathBuf, PathBuf),
    banned: (PathBuf, PathBuf),
    /// A verified certificate without a SPIFFE ID.
    cn_only: (PathBuf, PathBuf),
}

fn callers(pki: &Pki) -> Callers {
    Callers {
        web: pki.issue_client("web", Some("spiffe://meshgate.local/ns/shop/sa/web")),
        legacy: pki.issue_client("legacy", Some("spiffe://meshgate.local/ns/shop/sa/legacy")),
        banned: pki.issue_client("banned", Some("spiffe://meshgate.local/ns/banned/sa/x")),
        cn_only: pki.issue_client("cn-only", None),
    }
}

fn p(path: &Path) -> String {
    toml_str(&path.display().to_string())
}

/// An mTLS listener with optional client certificates and three routes.
fn config(pki: &Pki, upstream: std::net::SocketAddr, dir: &Path) -> String {
    format!(
        r#"
[dataplane]
shards = 2

[control]
socket = {socket}

[[listeners]]
name = "{LISTENER}"
address = "127.0.0.1:0"
[listeners.tls]
cert = {cert}
key = {key}
client_ca = {ca}
client_auth = "optional"
[[listeners.authz.deny]]
name = "banned-namespace"
spiffe_id = ["spiffe://meshgate.local/ns/banned/**"]

[[routes]]
name = "orders"
listener = "{LISTENER}"
cluster = "backend"
[routes.match]
path_prefix = "/orders/"
[[routes.authz.allow]]
name = "shop-reads-and-writes"
spiffe_id = ["spiffe://meshgate.local/ns/shop/sa/*"]
methods = ["get", "POST"]
[[routes.authz.deny]]
name = "no-legacy"
spiffe_id = ["spiffe://meshgate.local/ns/shop/sa/legacy"]

[[routes]]
name = "admin"
listener = "{LISTENER}"
cluster = "backend"
[routes.match]
path_prefix = "/admin/"
[[routes.authz.allow]]
authenticated = true
source = ["127.0.0.0/8"]
headers = {{ "x-admin" = "*" }}

[[routes]]
name = "public"
listener = "{LISTENER}"
cluster = "backend"

[[clusters]]
name = "backend"
endpoints = ["{upstream}"]
"#,
        socket = p(&dir.join("control.sock")),
        cert = p(&pki.server_cert),
        key = p(&pki.server_key),
        ca = p(&pki.ca),
    )
}

/// curl with `cert` (or none) → (status, x-meshgate-error).
fn status(
    gw: &Gateway,
    pki: &Pki,
    cert: Option<&(PathBuf, PathBuf)>,
    args: &[&str],
    path: &str,
) -> (u16, String) {
    let mut all: Vec<String> = match cert {
        Some((c, k)) => pki.curl_args_with(c, k),
        None => pki.curl_no_cert_args(),
    };
    all.extend(args.iter().map(|s| (*s).to_owned()));
    all.extend(["-o", "/dev/null", "-D", "-"].map(String::from));
    all.push(gw.url(path));
    let out = curl(&all);
    assert!(out.status.success(), "curl {path}: {}", describe(&out));
    let head = String::from_utf8_lossy(&out.stdout);
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head}"));
    let error = head
        .lines()
        .find_map(|l| l.strip_prefix("x-meshgate-error: "))
        .unwrap_or("")
        .trim()
        .to_owned();
    (code, error)
}

fn meshctl(dir: &Path, args: &[&str]) -> Output {
    Command::new(meshgate_bin().with_file_name("meshctl"))
        .arg("--socket")
        .arg(dir.join("control.sock"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run meshctl")
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "meshctl: {}", describe(out));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[test]
fn rules_allow_and_refuse_by_identity_method_source_and_header() {
    let dir = TempDir::new();
    let pki = Pki::new(dir.path());
    let who = callers(&pki);
    let up = Upstream::start("origin");
    let gw = Gateway::start(&config(&pki, up.addr(), dir.path()), dir.path());

    let forbidden = (403, "forbidden".to_owned());
    // Allowed: the origin answered (404: it has no such path; no gateway
    // error).
    let ok = (404, String::new());
    // orders: shop workloads may GET and POST; legacy is denied; others
    // (and callers without a certificate) are not allowed.
    assert_eq!(status(&gw, &pki, Some(&who.web), &[], "/orders/1"), ok);
    assert_eq!(
        status(
            &gw,
            &pki,
            Some(&who.web),
            &["-X", "POST", "-d", "x"],
            "/orders/1"
        ),
        ok
    );
    assert_eq!(
        status(&gw, &pki, Some(&who.web), &["-X", "DELETE"], "/orders/1"),
        forbidden
    );
    assert_eq!(
        status(&gw, &pki, Some(&who.legacy), &[], "/orders/1"),
        forbidden
    );
    assert_eq!(status(&gw, &pki, None, &[], "/orders/1"), forbidden);
    assert_eq!(
        status(&gw, &pki, Some(&who.cn_only), &[], "/orders/1"),
        forbidden
    );
    // admin: any verified certificate from loopback with the header.
    assert_eq!(
        status(
            &gw,
            &pki,
            Some(&who.cn_only),
            &["-H", "x-admin: 1"],
            "/admin/x"
        ),
        ok
    );
    assert_eq!(
        status(&gw, &pki, Some(&who.cn_only), &[], "/admin/x"),
        forbidden
    );
    assert_eq!(
        status(&gw, &pki, None, &["-H", "x-admin: 1"], "/admin/x"),
        forbidden
    );
    // public: anyone the listener lets in; the banned namespace is refused
    // on the whole listener.
    assert_eq!(status(&gw, &pki, None, &[], "/public/x"), ok);
    assert_eq!(
        status(&gw, &pki, Some(&who.banned), &[], "/public/x"),
        forbidden
    );
    assert_eq!(up.served(), 4, "only allowed requests reached the origin");

    // The counters, per rule and per route (the named ones are published
    // by the shards about once a second).
    let stats_now = || json(&meshctl(dir.path(), &["--json", "stats"]));
    harness::wait_until(
        std::time::Duration::from_secs(10),
        "rule counters published",
        || {
            let s = stats_now();
            let sum: u64 = s["authz_denied"]
                .as_object()
                .map_or(0, |m| m.values().filter_map(|v| v.as_u64()).sum());
            sum == 7
        },
    );
    let stats = stats_now();
    assert_eq!(stats["total"]["forbidden"], 7, "{stats}");
    let denied = &stats["authz_denied"];
    assert_eq!(denied["no-legacy"], 1, "{stats}");
    assert_eq!(denied["banned-namespace"], 1, "{stats}");
    assert_eq!(denied["route orders: no allow rule"], 3, "{stats}");
    assert_eq!(denied["route admin: no allow rule"], 2, "{stats}");
    let orders = stats["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == "orders")
        .cloned()
        .unwrap_or_default();
    assert_eq!(orders["forbidden"], 4, "{stats}");
}

#[test]
fn a_caller_the_listener_refuses_loses_its_connection() {
    let dir = TempDir::new();
    let pki = Pki::new(dir.path());
    let who = callers(&pki);
    let up = Upstream::start("origin");
    let gw = Gateway::start(&config(&pki, up.addr(), dir.path()), dir.path());
    let config = tls_client_with(&pki.ca, Some((&who.banned.0, &who.banned.1)));
    let mut c = tls_connect(gw.addr(LISTENER), &config).expect("connect");
    c.send(
        b"GET /public/a HTTP/1.1\r\nHost: e2e\r\n\r\nGET /public/b HTTP/1.1\r\nHost: e2e\r\n\r\n",
    )
    .expect("send");
    let r = c.read_response().expect("a response");
    assert_eq!(r.status, 403);
    assert!(r.says_close(), "{r:?}");
    assert!(
        c.read_response().is_err(),
        "the second request was answered"
    );
    // A route's refusal keeps the connection.
    let config = tls_client_with(&pki.ca, Some((&who.legacy.0, &who.legacy.1)));
    let mut c = tls_connect(gw.addr(LISTENER), &config).expect("connect");
    c.send(
        b"GET /orders/a HTTP/1.1\r\nHost: e2e\r\n\r\nGET /public/b HTTP/1.1\r\nHost: e2e\r\n\r\n",
    )
    .expect("send");
    assert_eq!(c.read_response().expect("first").status, 403);
    let second = c.read_response().expect("second");
    assert_eq!(second.status, 404, "the origin's answer: {second:?}");
    assert_eq!(up.served(), 1);
}

#[test]
fn meshctl_authz_explain_names_the_route_and_the_rule() {
    let dir = TempDir::new();
    let pki = Pki::new(dir.path());
    let up = Upstream::start("origin");
    let _gw = Gateway::start(&config(&pki, up.addr(), dir.path()), dir.path());
    let explain = |args: &[&str]| {
        let mut all = vec!["--json", "authz", "explain", "--listener", LISTENER];
        all.extend_from_slice(args);
        json(&meshctl(dir.path(), &all))
    };
    let e = explain(&[
        "--spiffe-id",
        "spiffe://meshgate.local/ns/shop/sa/web",
        "--method",
        "POST",
        "--path",
        "/orders/7?x=1",
    ]);
    assert_eq!(e["decision"], "allow", "{e}");
    assert_eq!(e["rule"], "shop-reads-and-writes", "{e}");
    assert_eq!(e["route"]["name"], "orders", "{e}");
    assert_eq!(e["outcome"], "proxied", "{e}");
    let e = explain(&[
        "--spiffe-id",
        "spiffe://meshgate.local/ns/shop/sa/legacy",
        "--path",
        "/orders/7",
    ]);
    assert_eq!(
        (&e["decision"], &e["rule"], &e["stage"]),
        (&"deny".into(), &"no-legacy".into(), &"route".into()),
        "{e}"
    );
    let e = explain(&[
        "--spiffe-id",
        "spiffe://meshgate.local/ns/banned/sa/q",
        "--path",
        "/public/",
    ]);
    assert_eq!(e["rule"], "banned-namespace", "{e}");
    assert_eq!(e["stage"], "listener", "{e}");
    assert!(
        e["route"].is_null(),
        "a refused caller learns no route: {e}"
    );
    let e = explain(&[
        "--authenticated",
        "-H",
        "x-admin: yes",
        "--path",
        "/admin/users",
    ]);
    assert_eq!(e["decision"], "allow", "{e}");
    assert_eq!(e["rule"], "route admin allow[0]", "{e}");
    let e = explain(&[
        "--authenticated",
        "--source",
        "192.0.2.1",
        "-H",
        "x-admin: yes",
        "--path",
        "/admin/users",
    ]);
    assert_eq!(e["decision"], "deny", "{e}");
    // Unknown listener: a clear error.
    let out = meshctl(dir.path(), &["authz", "explain", "--listener", "nope"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no listener \"nope\""),
        "{}",
        describe(&out)
    );
    // No traffic was sent.
    assert_eq!(up.served(), 0);
}

#[test]
fn a_tcp_listener_closes_a_refused_caller_before_any_byte_goes_upstream() {
    let dir = TempDir::new();
    let pki = Pki::new(dir.path());
    let who = callers(&pki);
    let up = BenchUpstream::start(&["--tcp-echo"]);
    let text = format!(
        r#"
[[listeners]]
name = "{LISTENER}"
address = "127.0.0.1:0"
protocol = "tcp"
[listeners.tls]
cert = {cert}
key = {key}
client_ca = {ca}
[[routes]]
listener = "{LISTENER}"
cluster = "echo"
[[routes.authz.allow]]
name = "shop-only"
trust_domain = ["meshgate.local"]
spiffe_id = ["spiffe://meshgate.local/ns/shop/**"]
[[clusters]]
name = "echo"
endpoints = ["{upstream}"]
"#,
        cert = p(&pki.server_cert),
        key = p(&pki.server_key),
        ca = p(&pki.ca),
        upstream = up.addr(),
    );
    let gw = Gateway::start(&text, dir.path());
    // Allowed: bytes echoed back.
    let config = tls_client_with(&pki.ca, Some((&who.web.0, &who.web.1)));
    let mut c = tls_connect(gw.addr(LISTENER), &config).expect("connect");
    c.send(b"ping").expect("send");
    let mut got = [0u8; 4];
    c.stream.read_exact(&mut got).expect("echo");
    assert_eq!(&got, b"ping");
    drop(c);
    // Refused: closed (close_notify), nothing echoed, no upstream connection.
    let before = gw.counter("tcp_sessions");
    let config = tls_client_with(&pki.ca, Some((&who.banned.0, &who.banned.1)));
    let mut c = tls_connect(gw.addr(LISTENER), &config).expect("connect");
    let _ = c.stream.write_all(b"ping");
    let mut rest = Vec::new();
    let _ = c.stream.read_to_end(&mut rest);
    assert!(rest.is_empty(), "bytes came back: {rest:?}");
    gw.wait_idle();
    assert_eq!(
        gw.counter("tcp_sessions"),
        before,
        "no session to the upstream"
    );
    assert_eq!(gw.counter("forbidden"), 1);
}

#[test]
fn bad_rules_are_refused_naming_the_field() {
    let dir = TempDir::new();
    let pki = Pki::new(dir.path());
    let base = config(&pki, "127.0.0.1:9".parse().unwrap(), dir.path());
    for (from, to, want) in [
        (
            r#"spiffe_id = ["spiffe://meshgate.local/ns/shop/sa/*"]"#,
            r#"spiffe_id = ["spiffe://meshgate.local/ns/shop/sa/*", "spiffe://meshgate.local/ns/**/x"]"#,
            "routes[0].authz.allow[0].spiffe_id[1]: \"spiffe://meshgate.local/ns/**/x\": \"**\" may only be the last segment",
        ),
        (
            r#"source = ["127.0.0.0/8"]"#,
            r#"source = ["127.0.0.1/8"]"#,
            "routes[1].authz.allow[0].source[0]",
        ),
        (
            r#"methods = ["get", "POST"]"#,
            r#"methods = ["get", "PO ST"]"#,
            "routes[0].authz.allow[0].methods[1]: \"PO ST\" is not a method name",
        ),
        (
            r#"name = "no-legacy""#,
            r#"name = "shop-reads-and-writes""#,
            "routes[0].authz.deny[0].name: duplicate rule name",
        ),
        (
            r#"spiffe_id = ["spiffe://meshgate.local/ns/banned/**"]"#,
            r#"spiffe_id = ["spiffe://meshgate.local/ns/banned/**"]
unknown = 1"#,
            "unknown field `unknown`",
        ),
    ] {
        assert!(base.contains(from), "{from}");
        let (out, _) = harness::gateway::check(&base.replacen(from, to, 1), dir.path());
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{to}: accepted");
        assert!(text.contains(want), "{to}: wanted {want:?} in:\n{text}");
    }
}
