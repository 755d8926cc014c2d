//! Revocation: certificate revocation lists per listener, reloaded with the
//! certificates (`meshctl certs reload`); a revoked client certificate fails
//! new handshakes, and its live connections are closed — an HTTP one at its
//! next request, a TCP one at once. Real clients: curl and rustls.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::bench::BenchUpstream;
use harness::gateway::toml_str;
use harness::{
    Gateway, Pki, TempDir, Upstream, curl, describe, meshgate_bin, tls_client_with, tls_connect,
};

fn p(path: &Path) -> String {
    toml_str(&path.display().to_string())
}

fn meshctl(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(meshgate_bin().with_file_name("meshctl"))
        .arg("--socket")
        .arg(dir.join("control.sock"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run meshctl")
}

fn config(
    pki: &Pki,
    crl: &Path,
    http_up: std::net::SocketAddr,
    echo: std::net::SocketAddr,
    dir: &Path,
) -> String {
    let tls = format!(
        "cert = {}\nkey = {}\nclient_ca = {}\ncrl = [{}]\n",
        p(&pki.server_cert),
        p(&pki.server_key),
        p(&pki.ca),
        p(crl)
    );
    format!(
        r#"
[control]
socket = {socket}

[[listeners]]
name = "public"
address = "127.0.0.1:0"
[listeners.tls]
{tls}
[[listeners]]
name = "relay"
address = "127.0.0.1:0"
protocol = "tcp"
[listeners.tls]
{tls}
[[routes]]
listener = "public"
cluster = "web"
[[routes]]
listener = "relay"
cluster = "echo"

[[clusters]]
name = "web"
endpoints = ["{http_up}"]
[[clusters]]
name = "echo"
endpoints = ["{echo}"]
"#,
        socket = p(&dir.join("control.sock")),
    )
}

/// curl /headers with the certificate: the status, or 0 when no HTTP
/// response came (the handshake failed).
fn status_with(gw: &Gateway, pki: &Pki, cert: &(PathBuf, PathBuf)) -> u16 {
    let mut args = pki.curl_args_with(&cert.0, &cert.1);
    args.extend(["-o", "/dev/null", "-w", "%{http_code}"].map(String::from));
    args.push(format!(
        "https://localhost:{}/headers",
        gw.addr("public").port()
    ));
    args.extend([
        "--resolve".into(),
        format!("localhost:{}:127.0.0.1", gw.addr("public").port()),
    ]);
    let out = curl(&args);
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

#[test]
fn a_revoked_certificate_loses_new_handshakes_and_its_live_connections() {
    let dir = TempDir::new();
    let pki = Pki::new(dir.path());
    let alice = pki.issue_client_serial(
        "alice",
        Some("spiffe://meshgate.local/ns/a/sa/alice"),
        Some(7001),
    );
    let bob = pki.issue_client_serial(
        "bob",
        Some("spiffe://meshgate.local/ns/a/sa/bob"),
        Some(7002),
    );
    let crl = pki.write_crl("crl.pem", &[]);
    let up = Upstream::start("origin");
    let echo = BenchUpstream::start(&["--tcp-echo"]);
    let gw = Gateway::start(
        &config(&pki, &crl, up.addr(), echo.addr(), dir.path()),
        dir.path(),
    );
    assert_eq!(status_with(&gw, &pki, &alice), 200);
    // The listeners' certificate files and their days left.
    let status: serde_json::Value =
        serde_json::from_slice(&meshctl(dir.path(), &["--json", "status"]).stdout).unwrap();
    let certs = status["certificates"].as_array().expect("certificates");
    assert_eq!(certs.len(), 4, "{status}");
    assert!(
        certs.iter().all(|c| c["days_left"].as_i64() > Some(365)),
        "{status}"
    );

    // Alice's live connections: a kept HTTP connection and a TCP session.
    let alice_tls = tls_client_with(&pki.ca, Some((&alice.0, &alice.1)));
    let mut http = tls_connect(gw.addr("public"), &alice_tls).expect("connect");
    http.send(b"GET /headers HTTP/1.1\r\nHost: e2e\r\n\r\n")
        .unwrap();
    assert_eq!(http.read_response().unwrap().status, 200);
    let mut tcp = tls_connect(gw.addr("relay"), &alice_tls).expect("connect");
    tcp.stream.write_all(b"ping").unwrap();
    let mut got = [0u8; 4];
    tcp.stream.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping");

    // A reload with a broken list is refused; nothing changes.
    std::fs::write(
        &crl,
        "-----BEGIN X509 CRL-----\nbm90IGEgQ1JM\n-----END X509 CRL-----\n",
    )
    .unwrap();
    let out = meshctl(dir.path(), &["certs", "reload"]);
    assert!(
        !out.status.success(),
        "a broken CRL was accepted: {}",
        describe(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("tls.crl"),
        "{}",
        describe(&out)
    );
    assert_eq!(
        status_with(&gw, &pki, &alice),
        200,
        "the old lists still apply"
    );

    // Revoke alice.
    pki.write_crl("crl.pem", &[7001]);
    let out = meshctl(dir.path(), &["certs", "reload"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        status_with(&gw, &pki, &alice),
        0,
        "a revoked certificate was let in"
    );
    assert_eq!(status_with(&gw, &pki, &bob), 200);
    // The kept HTTP connection is closed at its next request.
    let _ = http.send(b"GET /headers HTTP/1.1\r\nHost: e2e\r\n\r\n");
    assert!(
        http.read_response().is_err(),
        "a revoked caller's request was answered"
    );
    // The TCP session is cut without another byte from alice.
    tcp.stream
        .sock
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = tcp.stream.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{rest:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the TCP session was not cut"
    );

    // Counted: handshakes refused as revoked, connections closed.
    harness::wait_until(Duration::from_secs(10), "counters published", || {
        let s: serde_json::Value =
            serde_json::from_slice(&meshctl(dir.path(), &["--json", "stats"]).stdout).unwrap();
        s["tls_failures"]["revoked"].as_u64() >= Some(1)
            && s["total"]["connections_rechecked_closed"].as_u64() == Some(2)
    });
}

#[test]
fn a_revocation_list_needs_client_certificates() {
    let dir = TempDir::new();
    let pki = Pki::new(dir.path());
    let crl = pki.write_crl("crl.pem", &[]);
    let text = format!(
        "[[listeners]]\nname = \"l\"\naddress = \"127.0.0.1:0\"\n[listeners.tls]\ncert = {}\nkey = {}\ncrl = [{}]\n\
         [[routes]]\nlistener = \"l\"\ncluster = \"c\"\n[[clusters]]\nname = \"c\"\nendpoints = [\"127.0.0.1:9\"]\n",
        p(&pki.server_cert),
        p(&pki.server_key),
        p(&crl)
    );
    let (out, _) = harness::gateway::check(&text, dir.path());
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("revocation lists need"), "{e}");
    let text = text.replace(&p(&crl), &p(&dir.path().join("missing.pem")));
    let (out, _) = harness::gateway::check(&text, dir.path());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("listeners[0].tls.crl[0]"),
        "{}",
        describe(&out)
    );
}

/// An HTTP/2 connection of a caller whose certificate a reload revokes is
/// sent GOAWAY and closed at once, even while idle (an HTTP/2 connection
/// lives long and multiplexes every request of its caller).
#[test]
fn a_revoked_callers_http2_connection_gets_goaway() {
    let dir = TempDir::new();
    let pki = Pki::new(dir.path());
    let alice = pki.issue_client_serial(
        "alice",
        Some("spiffe://meshgate.local/ns/a/sa/alice"),
        Some(7101),
    );
    let crl = pki.write_crl("crl.pem", &[]);
    let up = Upstream::start("origin");
    let text = format!(
        r#"
[control]
socket = {socket}

[[listeners]]
name = "public"
address = "127.0.0.1:0"
[listeners.tls]
cert = {cert}
key = {key}
client_ca = {ca}
crl = [{crl}]
alpn = ["h2", "http/1.1"]
[[routes]]
listener = "public"
cluster = "web"
[[clusters]]
name = "web"
endpoints = ["{up}"]
"#,
        socket = p(&dir.join("control.sock")),
        cert = p(&pki.server_cert),
        key = p(&pki.server_key),
        ca = p(&pki.ca),
        crl = p(&crl),
        up = up.addr(),
    );
    let gw = Gateway::start(&text, dir.path());
    let python = harness::workspace_root().join("target/venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: scripts/test.sh creates it (pip install h2)",
        python.display()
    );
    let mut held = Command::new(&python)
        .arg(harness::workspace_root().join("tests/python/h2_flood.py"))
        .args(["hold", "127.0.0.1", &gw.addr("public").port().to_string()])
        .arg(&pki.ca)
        .arg(&alice.0)
        .arg(&alice.1)
        .arg("20")
        .stdout(Stdio::piped())
        .spawn()
        .expect("run h2_flood.py hold");
    let mut out = std::io::BufReader::new(held.stdout.take().expect("stdout"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).expect("ready line");
    assert_eq!(line.trim(), "ready", "the first request was not answered");

    pki.write_crl("crl.pem", &[7101]);
    let reload = meshctl(dir.path(), &["certs", "reload"]);
    assert!(reload.status.success(), "{}", describe(&reload));
    let mut rest = String::new();
    out.read_to_string(&mut rest).expect("report");
    let _ = held.wait();
    let report: serde_json::Value =
        serde_json::from_str(rest.trim()).unwrap_or_else(|e| panic!("{e}: {rest:?}"));
    // GOAWAY(NO_ERROR) and the close (without them the client would
    // have timed out with no GOAWAY to report).
    assert_eq!(report["goaway_error"], 0, "{report}\n{}", gw.stderr());
    assert_eq!(report["closed"], true, "{report}");
    assert!(gw.stderr().contains("no longer valid"), "{}", gw.stderr());
}
