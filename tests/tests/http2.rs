//! HTTP/2 downstream through the real binary, driven by curl (libcurl with
//! nghttp2) over mTLS: ALPN `h2`, every stream routed and forwarded to an
//! HTTP/1.1 origin like an HTTP/1.1 request, bodies both ways with and
//! without a length, many streams on one connection, per-stream
//! authorization, and HTTP/1.1 still served where `h2` is not offered.

use std::io::Write;

use harness::{SPIFFE_ID, Setup, describe, fields_in_head, pattern};

/// An mTLS listener offering `h2` then `http/1.1`.
fn world() -> Setup {
    Setup::mtls(|c| c.alpn(&["h2", "http/1.1"]))
}

/// `curl --http2 <args> URL`, with `-w` printing the protocol version
/// after the body on its own line; returns (version, body).
fn h2_get(w: &Setup, args: &[&str], path: &str) -> (String, Vec<u8>) {
    let mut all = vec!["--http2", "-s", "-w", "\n%{http_version} %{http_code}"];
    all.extend_from_slice(args);
    let out = w.curl(&[all.as_slice(), &[&w.url(path)]].concat());
    assert!(
        out.status.success(),
        "curl --http2 {path}: {}\n--- gateway stderr:\n{}",
        describe(&out),
        w.gw.stderr()
    );
    let text = out.stdout;
    let nl = text.iter().rposition(|&b| b == b'\n').unwrap_or(0);
    let version = String::from_utf8_lossy(&text[nl + 1..]).into_owned();
    (version, text[..nl].to_vec())
}

#[test]
fn a_request_over_h2_reaches_the_origin_as_http1_with_the_callers_identity() {
    let w = world();
    let (version, body) = h2_get(&w, &["-H", "x-custom: yes"], "/headers?q=1");
    assert_eq!(version, "2 200", "not served over HTTP/2");
    let head = String::from_utf8_lossy(&body);
    assert!(head.starts_with("GET /headers?q=1 HTTP/1.1\r\n"), "{head}");
    let hosts = fields_in_head(head.as_bytes(), "host");
    assert_eq!(hosts.len(), 1, "{head}");
    assert!(hosts[0].starts_with("127.0.0.1:"), "{head}");
    assert_eq!(fields_in_head(head.as_bytes(), "x-custom"), ["yes"]);
    let xfcc = fields_in_head(head.as_bytes(), "x-forwarded-client-cert");
    assert!(
        xfcc.len() == 1 && xfcc[0].contains(&format!("URI={SPIFFE_ID}")),
        "{head}"
    );
    assert_eq!(
        fields_in_head(head.as_bytes(), "x-forwarded-proto"),
        ["https"]
    );
    assert_eq!(w.gw.counter("h2_connections"), 1);
    assert_eq!(w.gw.counter("h2_streams"), 1);
}

#[test]
fn response_bodies_arrive_whole_with_or_without_a_length() {
    let w = world();
    for path in [
        "/bytes/300000",
        "/chunked/300000",
        "/close-delimited/300000",
    ] {
        let (version, body) = h2_get(&w, &[], path);
        assert_eq!(version, "2 200", "{path}");
        assert!(
            body == pattern(300_000),
            "{path}: body differs ({} bytes)",
            body.len()
        );
    }
    // HEAD: the head a GET would get, no body.
    let (version, body) = h2_get(&w, &["-I"], "/bytes/10");
    assert_eq!(version, "2 200");
    let head = String::from_utf8_lossy(&body).to_ascii_lowercase();
    assert!(head.contains("content-length: 10"), "{head}");
    assert!(!head.contains("connection:"), "{head}");
}

#[test]
fn request_bodies_arrive_whole_with_or_without_a_length() {
    let w = world();
    let data = pattern(200_000);
    let file = w.dir.path().join("body.bin");
    std::fs::write(&file, &data).unwrap();
    let at_file = format!("@{}", file.display());
    // With content-length.
    let (version, body) = h2_get(&w, &["--data-binary", &at_file], "/echo");
    assert_eq!(version, "2 200", "{}", w.gw.stderr());
    assert!(body == data, "echoed body differs ({} bytes)", body.len());
    // Without: curl uploads from stdin of unknown length.
    let mut child = std::process::Command::new("curl")
        .args(w.pki.curl_mtls_args())
        .args(["--http2", "-s", "--fail", "-X", "POST", "-T", "-"])
        .arg(w.url("/echo"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("curl");
    child.stdin.take().unwrap().write_all(&data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        out.stdout == data,
        "streamed body differs ({} bytes)",
        out.stdout.len()
    );
    let log = w.up.requests();
    assert_eq!(log.len(), 2, "{log:?}");
}

#[test]
fn many_streams_share_one_connection() {
    let w = world();
    let urls: Vec<String> = (0..20)
        .map(|i| w.url(&format!("/bytes/{}", 1000 + i)))
        .collect();
    let mut args = vec![
        "--http2",
        "-s",
        "--fail",
        "--parallel",
        "--parallel-max",
        "20",
    ];
    for u in &urls {
        args.extend(["-o", "/dev/null", u.as_str()]);
    }
    let out = w.curl(&args);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(w.up.served(), 20);
    assert_eq!(w.gw.counter("h2_streams"), 20);
    assert_eq!(
        w.gw.counter("h2_connections"),
        1,
        "curl multiplexes parallel transfers on one connection"
    );
}

#[test]
fn authorization_and_local_answers_apply_per_stream() {
    let w = Setup::mtls(|c| {
        c.alpn(&["h2", "http/1.1"]).route_extra(&format!(
            "[[routes.authz.deny]]\nname = \"no-secrets\"\nspiffe_id = [\"{SPIFFE_ID}\"]\npath_exact = [\"/secret\"]\n"
        ))
    });
    let (version, _) = h2_get(&w, &["-D", "-"], "/secret");
    assert_eq!(version, "2 403");
    let (_, head) = h2_get(&w, &["-D", "-", "-o", "/dev/null"], "/secret");
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.contains("x-meshgate-error: forbidden"), "{head}");
    assert_eq!(w.up.served(), 0, "a refused stream reached the origin");
    // The same connection's other streams are served.
    let (version, _) = h2_get(&w, &[], "/bytes/5");
    assert_eq!(version, "2 200");
}

#[test]
fn http1_is_served_where_h2_is_not_offered() {
    let w = Setup::mtls(|c| c);
    let (version, body) = h2_get(&w, &[], "/bytes/100");
    assert_eq!(version, "1.1 200");
    assert_eq!(body, pattern(100));
    // And on an h2 listener a client that offers only HTTP/1.1 gets it.
    let w = world();
    let out = w.curl(&[
        "--http1.1",
        "-s",
        "-w",
        "%{http_version}",
        "-o",
        "/dev/null",
        &w.url("/bytes/1"),
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "1.1",
        "{}",
        describe(&out)
    );
    assert_eq!(w.gw.counter("h2_connections"), 0);
}

#[test]
fn h2_on_a_tcp_listener_and_bad_limits_are_refused_naming_the_field() {
    let dir = harness::TempDir::new();
    let pki = harness::Pki::new(dir.path());
    let base = harness::GatewayConfig::mtls(&pki, &["127.0.0.1:9".parse().unwrap()]);
    let bad = base.clone().protocol("tcp").alpn(&["h2"]).to_toml();
    let (out, _) = harness::gateway::check(&bad, dir.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("listeners[0].tls.alpn"), "{err}");
    let bad = base
        .listener_extra(
            "[listeners.http2]\nmax_concurrent_streams = 0\ninitial_stream_window = 10\n",
        )
        .to_toml();
    let (out, _) = harness::gateway::check(&bad, dir.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("listeners[0].http2.max_concurrent_streams"),
        "{err}"
    );
    assert!(
        err.contains("listeners[0].http2.initial_stream_window"),
        "{err}"
    );
}

/// Rapid Reset (CVE-2023-44487): a client opening streams and cancelling
/// them at once, hundreds in one write, gets GOAWAY(ENHANCE_YOUR_CALM)
/// and the connection closed; the origin sees at most a few of those
/// requests, and a well-behaved client on another connection is served.
#[test]
fn a_rapid_reset_flood_ends_with_enhance_your_calm_and_others_are_served() {
    let w = world();
    let report = h2_flood(&w, "rapid-reset", 500);
    // ENHANCE_YOUR_CALM is 0xb (RFC 9113 §7).
    assert_eq!(report["goaway_error"], 11, "{report}");
    assert_eq!(report["closed"], true, "{report}");
    assert_eq!(w.gw.counter("h2_calm_goaways"), 1);
    let (version, body) = h2_get(&w, &[], "/bytes/7");
    assert_eq!((version.as_str(), body), ("2 200", pattern(7)));
    assert!(
        w.up.served() <= 60,
        "{} flood requests reached the origin",
        w.up.served()
    );
}

/// h2c by prior knowledge on a plaintext listener with `h2c = true`: a
/// client starting with the HTTP/2 preface is served HTTP/2, an HTTP/1.1
/// client on the same listener HTTP/1.1; without `h2c`, the preface is a
/// bad HTTP/1.1 request.
#[test]
fn h2c_by_prior_knowledge_beside_http1_on_a_plaintext_listener() {
    let w = Setup::plain(|c| c.listener_extra("[listeners.http2]\nh2c = true\n"));
    let (version, body) = h2_get(&w, &["--http2-prior-knowledge"], "/bytes/300");
    assert_eq!(version, "2 200");
    assert_eq!(body, pattern(300));
    let out = w.curl(&[
        "--http1.1",
        "-s",
        "-w",
        "%{http_version} %{http_code}",
        "-o",
        "/dev/null",
        &w.url("/bytes/3"),
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "1.1 200",
        "{}",
        describe(&out)
    );
    assert_eq!(w.gw.counter("h2_connections"), 1);

    let w = Setup::plain(|c| c);
    let out = w.curl(&[
        "--http2-prior-knowledge",
        "-s",
        "-w",
        "%{http_version}",
        "-o",
        "/dev/null",
        &w.url("/bytes/3"),
    ]);
    assert_ne!(
        String::from_utf8_lossy(&out.stdout),
        "2",
        "{}",
        describe(&out)
    );
    assert_eq!(w.gw.counter("h2_connections"), 0);
    assert_eq!(w.up.served(), 0);
}

/// gRPC through the gateway with Python's grpcio over mTLS: the gateway's
/// own answers arrive as the gRPC statuses clients act on (trailers-only,
/// `x-meshgate-error` in the trailing metadata), and a gRPC call routed
/// to an HTTP/1.1 cluster is refused as UNIMPLEMENTED without reaching
/// the origin, never sent as a mangled exchange.
#[test]
fn grpc_callers_get_grpc_statuses_for_the_gateways_answers() {
    let w = Setup::mtls(|c| {
        c.alpn(&["h2", "http/1.1"])
            .path_prefix("/pay.")
            .route_extra(&format!(
                "[routes.rate_limit]\nrps = 1\nburst = 1\n\
                 [[routes.authz.deny]]\nname = \"no-refunds\"\nspiffe_id = [\"{SPIFFE_ID}\"]\npath_exact = [\"/pay.Payments/Refund\"]\n"
            ))
    });
    let python = harness::workspace_root().join("target/venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: scripts/test.sh creates it (pip install grpcio)",
        python.display()
    );
    let out = std::process::Command::new(&python)
        .arg(harness::workspace_root().join("tests/python/grpc_call.py"))
        .arg(w.gw.addr(harness::LISTENER).to_string())
        .arg(&w.pki.ca)
        .arg(&w.pki.client_cert)
        .arg(&w.pki.client_key)
        .args([
            "/other.Svc/Call",
            "/pay.Payments/Refund",
            "/pay.Payments/Charge",
            "/pay.Payments/Charge",
        ])
        .output()
        .expect("run grpc_call.py");
    assert!(out.status.success(), "{}", describe(&out));
    let calls: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(&out)));
    let got: Vec<(String, String)> = calls
        .as_array()
        .expect("a list")
        .iter()
        .map(|c| {
            (
                c["code"].as_str().unwrap_or("?").to_owned(),
                c["meshgate_error"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect();
    let want = [
        ("UNIMPLEMENTED", "no_route"),
        ("PERMISSION_DENIED", "forbidden"),
        ("UNIMPLEMENTED", "grpc_http1_cluster"),
        ("RESOURCE_EXHAUSTED", "rate_limited"),
    ]
    .map(|(a, b)| (a.to_owned(), b.to_owned()));
    assert_eq!(got, want, "{calls}");
    assert_eq!(
        calls[2]["details"], "meshgate: grpc_http1_cluster",
        "{calls}"
    );
    assert_eq!(w.up.heads(), 0, "a gRPC call reached the HTTP/1.1 origin");
}

/// A client that never opens its flow-control window (a zero-window
/// stream) holds its stream only until the listener's idle timeout: the
/// gateway then resets it, and serves other connections meanwhile.
#[test]
fn a_zero_window_stream_is_reset_at_the_idle_timeout() {
    let w = Setup::mtls(|c| c.alpn(&["h2", "http/1.1"]).idle_timeout_ms(1000));
    let python = harness::workspace_root().join("target/venv/bin/python");
    let addr = w.gw.addr(harness::LISTENER);
    let child = std::process::Command::new(&python)
        .arg(harness::workspace_root().join("tests/python/h2_flood.py"))
        .args(["zero-window", "127.0.0.1", &addr.port().to_string()])
        .arg(&w.pki.ca)
        .arg(&w.pki.client_cert)
        .arg(&w.pki.client_key)
        .arg("1000000")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run h2_flood.py");
    // Another client is served while that stream is stuck.
    let (version, body) = h2_get(&w, &[], "/bytes/9");
    assert_eq!((version.as_str(), body), ("2 200", pattern(9)));
    let out = child.wait_with_output().expect("h2_flood.py");
    assert!(out.status.success(), "{}", describe(&out));
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(&out)));
    assert_eq!(report["status"], 200, "{report}");
    assert_eq!(report["data"], 0, "{report}");
    // INTERNAL_ERROR (2): the response was cut off, never complete-looking.
    assert_eq!(report["reset_error"], 2, "{report}\n{}", w.gw.stderr());
}

/// Runs tests/python/h2_flood.py MODE against the world's gateway.
fn h2_flood(w: &Setup, mode: &str, count: usize) -> serde_json::Value {
    let python = harness::workspace_root().join("target/venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: scripts/test.sh creates it (pip install h2)",
        python.display()
    );
    let addr = w.gw.addr(harness::LISTENER);
    let out = std::process::Command::new(&python)
        .arg(harness::workspace_root().join("tests/python/h2_flood.py"))
        .args([mode, "127.0.0.1", &addr.port().to_string()])
        .arg(&w.pki.ca)
        .arg(&w.pki.client_cert)
        .arg(&w.pki.client_key)
        .arg(count.to_string())
        .output()
        .expect("run h2_flood.py");
    assert!(out.status.success(), "{}", describe(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(&out)))
}

/// PING and SETTINGS floods (each frame demands an answer) and runs of
/// empty DATA frames (CVE-2019-9518) end the connection with
/// GOAWAY(ENHANCE_YOUR_CALM), counted; a client on another connection is
/// served. Below the limits nothing happens.
#[test]
fn control_and_empty_frame_floods_end_with_enhance_your_calm() {
    let w = world();
    for (mode, count) in [
        ("ping-flood", 500),
        ("settings-flood", 500),
        ("empty-data", 100),
    ] {
        let before = w.gw.counter("h2_calm_goaways");
        let report = h2_flood(&w, mode, count);
        assert_eq!(
            report["goaway_error"],
            11,
            "{mode}: {report}\n{}",
            w.gw.stderr()
        );
        assert_eq!(w.gw.counter("h2_calm_goaways"), before + 1, "{mode}");
        let (version, body) = h2_get(&w, &[], "/bytes/5");
        assert_eq!((version.as_str(), body), ("2 200", pattern(5)), "{mode}");
    }
    // 50 PINGs (the default limit is 100 a second) are just answered.
    let calm = w.gw.counter("h2_calm_goaways");
    let report = h2_flood(&w, "ping-flood", 50);
    // Every PING answered (and the connection's own SETTINGS).
    assert!(report["answered"].as_u64() >= Some(50), "{report}");
    assert!(report["goaway_error"].is_null(), "{report}");
    assert_eq!(w.gw.counter("h2_calm_goaways"), calm);
}

/// Cookie crumbs count against the listener's header limit one by one
/// (they are joined into one field for the HTTP/1.1 path).
#[test]
fn cookie_crumbs_count_against_the_header_limit() {
    let w = world();
    let report = h2_flood(&w, "cookie-crumbs", 20);
    assert_eq!(report["status"], 200, "{report}");
    let report = h2_flood(&w, "cookie-crumbs", 200);
    assert_eq!(report["status"], 431, "{report}");
    assert_eq!(report["error"], "bad_request", "{report}");
}
