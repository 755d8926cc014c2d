//! mTLS at the edge, seen by real clients (curl, openssl s_client): who
//! gets in, which protocol versions are accepted, and what the upstream
//! learns about the caller (XFCC, x-forwarded-*, x-request-id).

use harness::gateway::LISTENER;
use harness::{GatewayConfig, SPIFFE_ID, Setup, curl, describe, fields_in_head, openssl_s_client};

fn world(configure: impl FnOnce(GatewayConfig) -> GatewayConfig) -> Setup {
    Setup::mtls(configure)
}

/// `curl <tls> <extra> --fail URL`, returning the body; asserts exit 0.
fn get(w: &Setup, tls: Vec<String>, extra: &[&str], path: &str) -> String {
    let mut args = tls;
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args.push("--fail".into());
    args.push(w.url(path));
    let out = curl(&args);
    assert!(
        out.status.success(),
        "curl {path} failed: {}\n--- gateway stderr:\n{}",
        describe(&out),
        w.gw.stderr()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts that curl with `tls` gets no HTTP response at all.
fn assert_refused(w: &Setup, tls: Vec<String>, what: &str) {
    let mut args = tls;
    args.extend(["-o", "/dev/null", "-w", "%{http_code}"].map(String::from));
    args.push(w.url("/headers"));
    let out = curl(&args);
    assert!(
        !out.status.success(),
        "{what}: curl succeeded but the handshake should fail: {}",
        describe(&out)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "000",
        "{what}: an HTTP response came back: {}",
        describe(&out)
    );
    assert_eq!(w.up.served(), 0, "{what}: the upstream was reached");
}

fn one(head: &str, name: &str) -> String {
    let values = fields_in_head(head.as_bytes(), name);
    assert_eq!(values.len(), 1, "expected one {name} line in:\n{head}");
    values.into_iter().next().unwrap_or_default()
}

#[test]
fn forwards_client_identity_and_forwarding_headers() {
    let w = world(|c| c);
    let head = get(&w, w.pki.curl_mtls_args(), &[], "/headers");

    let xfcc = one(&head, "x-forwarded-client-cert");
    assert!(
        xfcc.contains(&format!("URI={SPIFFE_ID}")),
        "XFCC without the SPIFFE ID: {xfcc}"
    );
    let hash = xfcc
        .split(';')
        .find_map(|e| e.strip_prefix("Hash="))
        .unwrap_or_else(|| panic!("XFCC without Hash=: {xfcc}"));
    assert!(
        hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
        "Hash= is not 64 hex digits: {hash}"
    );
    assert_eq!(
        hash.to_ascii_lowercase(),
        w.pki.client_cert_sha256,
        "Hash= is not the SHA-256 of the client certificate"
    );
    assert!(
        !xfcc.contains("DNS="),
        "XFCC names a DNS SAN the cert lacks: {xfcc}"
    );

    assert_eq!(one(&head, "x-forwarded-for"), "127.0.0.1");
    assert_eq!(one(&head, "x-forwarded-proto"), "https");
    assert!(
        !one(&head, "x-request-id").is_empty(),
        "empty x-request-id:\n{head}"
    );
    assert_eq!(w.up.served(), 1);
}

#[test]
fn request_ids_differ_between_requests() {
    let w = world(|c| c);
    let a = one(
        &get(&w, w.pki.curl_mtls_args(), &[], "/headers"),
        "x-request-id",
    );
    let b = one(
        &get(&w, w.pki.curl_mtls_args(), &[], "/headers"),
        "x-request-id",
    );
    assert_ne!(a, b, "two requests got the same generated x-request-id");
}

#[test]
fn client_sent_xfcc_is_replaced_and_request_id_kept() {
    let w = world(|c| c);
    let head = get(
        &w,
        w.pki.curl_mtls_args(),
        &[
            "-H",
            "x-forwarded-client-cert: forged",
            "-H",
            "x-request-id: e2e-request-42",
            "-H",
            "x-forwarded-proto: gopher",
        ],
        "/headers",
    );
    let xfcc = one(&head, "x-forwarded-client-cert");
    assert!(!xfcc.contains("forged"), "forged XFCC forwarded: {xfcc}");
    assert!(xfcc.contains(&format!("URI={SPIFFE_ID}")), "{xfcc}");
    assert_eq!(one(&head, "x-request-id"), "e2e-request-42");
    assert_eq!(one(&head, "x-forwarded-proto"), "https");
}

#[test]
fn client_sent_x_forwarded_for_is_appended_to() {
    let w = world(|c| c);
    let head = get(
        &w,
        w.pki.curl_mtls_args(),
        &["-H", "x-forwarded-for: 203.0.113.7"],
        "/headers",
    );
    assert_eq!(one(&head, "x-forwarded-for"), "203.0.113.7, 127.0.0.1");
}

#[test]
fn refuses_client_without_certificate() {
    let w = world(|c| c);
    assert_refused(&w, w.pki.curl_no_cert_args(), "no client certificate");
}

#[test]
fn refuses_certificate_from_untrusted_ca() {
    let w = world(|c| c);
    let args = w
        .pki
        .curl_args_with(&w.pki.other_client_cert, &w.pki.other_client_key);
    assert_refused(&w, args, "certificate from another CA");
}

#[test]
fn refuses_expired_certificate() {
    let w = world(|c| c);
    let args = w
        .pki
        .curl_args_with(&w.pki.expired_client_cert, &w.pki.expired_client_key);
    assert_refused(&w, args, "expired certificate");
}

/// What `openssl s_client` reports for a refused handshake: a non-zero
/// exit after an alert from the server (so the client did offer).
fn assert_handshake_refused(out: &std::process::Output, what: &str) {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "{what}: handshake succeeded:\n{text}"
    );
    assert!(
        !text.contains("CONNECTION ESTABLISHED"),
        "{what}: handshake succeeded:\n{text}"
    );
    assert!(
        text.contains("alert"),
        "{what}: expected the server to answer with an alert:\n{text}"
    );
}

fn assert_handshake_ok(out: &std::process::Output, version: &str) {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "handshake failed:\n{text}");
    assert!(
        text.contains(&format!("Protocol version: {version}")),
        "expected {version}:\n{text}"
    );
}

#[test]
fn refuses_tls_1_1() {
    let w = world(|c| c);
    // SECLEVEL=0 lets OpenSSL 3 offer TLS 1.1 at all, so the refusal is the server's.
    let out = openssl_s_client(
        w.gw.addr(LISTENER),
        &w.pki,
        &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"],
    );
    assert_handshake_refused(&out, "TLS 1.1");
}

#[test]
fn accepts_tls_1_2_with_min_version_1_2() {
    let w = world(|c| c.min_version("1.2"));
    let out = openssl_s_client(w.gw.addr(LISTENER), &w.pki, &["-tls1_2"]);
    assert_handshake_ok(&out, "TLSv1.2");
    // And a request over TLS 1.2 works end to end.
    get(
        &w,
        w.pki.curl_mtls_args(),
        &["--tls-max", "1.2"],
        "/status/200",
    );
}

#[test]
fn refuses_tls_1_2_with_min_version_1_3() {
    let w = world(|c| c.min_version("1.3"));
    let out = openssl_s_client(w.gw.addr(LISTENER), &w.pki, &["-tls1_2"]);
    assert_handshake_refused(&out, "TLS 1.2 with min_version 1.3");
    let out = openssl_s_client(w.gw.addr(LISTENER), &w.pki, &["-tls1_3"]);
    assert_handshake_ok(&out, "TLSv1.3");
}

#[test]
fn optional_client_auth_without_certificate_forwards_no_xfcc() {
    let w = world(|c| c.client_auth("optional"));
    let head = get(
        &w,
        w.pki.curl_no_cert_args(),
        &["-H", "x-forwarded-client-cert: forged"],
        "/headers",
    );
    assert!(
        fields_in_head(head.as_bytes(), "x-forwarded-client-cert").is_empty(),
        "XFCC forwarded for a caller without a certificate:\n{head}"
    );
    assert_eq!(one(&head, "x-forwarded-proto"), "https");
}

#[test]
fn optional_client_auth_with_certificate_forwards_xfcc() {
    let w = world(|c| c.client_auth("optional"));
    let head = get(&w, w.pki.curl_mtls_args(), &[], "/headers");
    let xfcc = one(&head, "x-forwarded-client-cert");
    assert!(xfcc.contains(&format!("URI={SPIFFE_ID}")), "{xfcc}");
}

#[test]
fn optional_client_auth_still_refuses_untrusted_certificate() {
    let w = world(|c| c.client_auth("optional"));
    let args = w
        .pki
        .curl_args_with(&w.pki.other_client_cert, &w.pki.other_client_key);
    assert_refused(&w, args, "untrusted certificate with client_auth optional");
}

/// `GET /headers` over `conn`; returns the head the upstream received.
fn headers_over(conn: &mut harness::TlsConn) -> String {
    conn.send(b"GET /headers HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("send");
    let resp = conn.read_response().expect("response");
    assert_eq!(resp.status, 200, "{resp:?}");
    resp.body_str()
}

#[test]
fn identity_survives_tls_session_resumption() {
    // The same rustls config keeps the session ticket of the first
    // connection, so the second one resumes without sending its
    // certificate: the gateway must still know who the caller is.
    let w = world(|c| c);
    let config = harness::tls_client(&w.pki);
    let addr = w.gw.addr(LISTENER);

    let mut first = harness::tls_connect(addr, &config).expect("connect");
    let xfcc_first = one(&headers_over(&mut first), "x-forwarded-client-cert");
    drop(first);

    let mut second = harness::tls_connect(addr, &config).expect("connect");
    let head = headers_over(&mut second);
    assert_eq!(
        second.stream.conn.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed),
        "the second connection did not resume; the test proves nothing"
    );
    let xfcc_second = one(&head, "x-forwarded-client-cert");
    assert_eq!(xfcc_second, xfcc_first, "identity changed on resumption");
}

#[test]
fn stalled_tls_handshake_is_closed() {
    let w = world(|c| c.header_timeout_ms(500));
    let mut c = harness::RawConn::connect(w.gw.addr(LISTENER));
    // A TCP connection that never sends a ClientHello.
    let got = c.read_to_close(std::time::Duration::from_secs(10));
    assert!(
        got.closed,
        "a connection without a handshake was kept 10 s (header_timeout_ms = 500)"
    );
    assert!(got.bytes.is_empty(), "{}", got.text());
}

/// A TLS 1.3 client asks for a key update mid-connection (`openssl
/// s_client`'s `K` command: KeyUpdate with update_requested): the gateway
/// answers with its own and the connection goes on serving under the new
/// keys.
#[test]
fn key_update_mid_connection_keeps_serving() {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    let w = world(|c| c);
    let mut child = Command::new("openssl")
        .arg("s_client")
        .arg("-connect")
        .arg(w.gw.addr(LISTENER).to_string())
        .args([
            "-servername",
            "localhost",
            "-verify_return_error",
            "-tls1_3",
        ])
        .args(["-crlf", "-CAfile"])
        .arg(&w.pki.ca)
        .arg("-cert")
        .arg(&w.pki.client_cert)
        .arg("-key")
        .arg(&w.pki.client_key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_client");
    let mut stdin = child.stdin.take().expect("stdin");
    // Both output streams, line by line, as they come.
    let (tx, lines) = std::sync::mpsc::channel::<String>();
    let readers: Vec<_> = [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().expect("stderr")),
    ]
    .into_iter()
    .map(|out| {
        let tx = tx.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        })
    })
    .collect();
    drop(tx);
    let mut output = String::new();
    let mut wait_for = |what: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !output.contains(what) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    output.push_str(&line);
                    output.push('\n');
                }
                Err(_) => panic!("s_client never printed {what:?}:\n{output}"),
            }
        }
    };
    // s_client takes `K` only as a line of its own, read on its own: once
    // the handshake is done (it prints the verify result), and the request
    // only once it has said it sent the update.
    wait_for("Verify return code");
    stdin.write_all(b"K\n").unwrap();
    stdin.flush().unwrap();
    wait_for("KEYUPDATE");
    stdin
        .write_all(b"GET /status/200 HTTP/1.1\nHost: localhost\nConnection: close\n\n")
        .unwrap();
    stdin.flush().unwrap();
    // The gateway closes after the response (`Connection: close`).
    for line in lines.iter() {
        output.push_str(&line);
        output.push('\n');
    }
    for r in readers {
        let _ = r.join();
    }
    drop(stdin);
    let (stdout, stderr) = (output.clone(), String::new());
    let _ = child.wait();
    assert!(
        stdout.contains("KEYUPDATE") || stderr.contains("KEYUPDATE"),
        "s_client did not send the key update:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("HTTP/1.1 200"),
        "no response after the key update:\n{stdout}\n{stderr}\n--- gateway stderr:\n{}",
        w.gw.stderr()
    );
    assert_eq!(w.up.served(), 1);
}

/// `[[listeners.tls.trust_domains]]`: each SPIFFE trust domain has its own
/// CA bundle, and a CA may vouch only for its own domain's identities.
#[test]
fn each_trust_domain_is_vouched_for_by_its_own_ca_only() {
    use harness::gateway::toml_str;
    let dir = harness::TempDir::new();
    let pki = harness::Pki::new(dir.path());
    let up = harness::Upstream::start("origin");
    let q = |p: &std::path::Path| toml_str(&p.display().to_string());
    let text = format!(
        "[[listeners]]\nname = \"{LISTENER}\"\naddress = \"127.0.0.1:0\"\n[listeners.tls]\n\
         cert = {}\nkey = {}\n\
         [[listeners.tls.trust_domains]]\nname = \"meshgate.local\"\nca = {}\n\
         [[listeners.tls.trust_domains]]\nname = \"partner.example\"\nca = {}\n\
         [[routes]]\nlistener = \"{LISTENER}\"\ncluster = \"c\"\n\
         [[clusters]]\nname = \"c\"\nendpoints = [\"{}\"]\n",
        q(&pki.server_cert),
        q(&pki.server_key),
        q(&pki.ca),
        q(&pki.other_ca),
        up.addr()
    );
    let gw = harness::Gateway::start(&text, dir.path());
    let status = |cert: &std::path::Path, key: &std::path::Path| -> String {
        // The server certificate is from ca.pem; trust it, present `cert`.
        let mut args = pki.curl_args_with(cert, key);
        args.extend(["-o", "/dev/null", "-w", "%{http_code}"].map(String::from));
        args.push(format!(
            "https://127.0.0.1:{}/headers",
            gw.addr(LISTENER).port()
        ));
        String::from_utf8_lossy(&curl(&args).stdout).into_owned()
    };
    let partner = pki.issue_other_client("partner", "spiffe://partner.example/ns/x/sa/y");
    let forged = pki.issue_client("forged-partner", Some("spiffe://partner.example/ns/x/sa/y"));
    let no_id = pki.issue_client("no-id", None);
    // Each domain's own CA: in.
    assert_eq!(status(&pki.client_cert, &pki.client_key), "200");
    assert_eq!(status(&partner.0, &partner.1), "200");
    // The partner CA vouching for a mesh identity, the mesh CA for a
    // partner one, and a certificate without a SPIFFE ID: refused.
    assert_eq!(status(&pki.other_client_cert, &pki.other_client_key), "000");
    assert_eq!(status(&forged.0, &forged.1), "000");
    assert_eq!(status(&no_id.0, &no_id.1), "000");
    assert_eq!(up.served(), 2);
    // client_ca and trust_domains together: a config error naming it.
    let both = text.replacen(
        "[[listeners.tls.trust_domains]]",
        &format!(
            "client_ca = {}\n[[listeners.tls.trust_domains]]",
            q(&pki.ca)
        ),
        1,
    );
    let (out, _) = harness::gateway::check(&both, dir.path());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("listeners[0].tls.trust_domains: client_ca and trust_domains are exclusive"),
        "{}",
        describe(&out)
    );
}
