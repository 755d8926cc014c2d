//! Proxying behaviour through the mTLS listener: bodies arrive byte for
//! byte in both directions (length-delimited, chunked, close-delimited,
//! 100-continue), HEAD has no body, connections are reused on both sides,
//! and many concurrent keep-alive connections all get correct answers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use harness::{
    RawConn, Setup, describe, fields_in_head, pattern, sha256_file, sha256_hex, tls_client,
    tls_connect,
};

const MIB: usize = 1024 * 1024;

fn mtls() -> Setup {
    Setup::mtls(|c| c)
}

fn path_arg(p: &std::path::Path) -> String {
    p.to_str().expect("UTF-8 temp path").to_owned()
}

#[test]
fn upload_10_mib_round_trips_through_echo() {
    let s = mtls();
    let input = s.dir.join("upload.bin");
    // Not the /bytes pattern: a body that differs from anything the origin generates.
    let mut data = pattern(10 * MIB + 1);
    data.reverse();
    data.truncate(10 * MIB);
    std::fs::write(&input, &data).expect("write upload");
    let output = s.dir.join("echoed.bin");
    let data_arg = format!("@{}", path_arg(&input));
    s.curl_ok(
        &["--data-binary", &data_arg, "-o", &path_arg(&output)],
        "/echo",
    );
    assert_eq!(
        std::fs::metadata(&output).expect("output").len(),
        data.len() as u64,
        "echoed length differs"
    );
    assert_eq!(
        sha256_file(&output),
        sha256_hex(&data),
        "echoed bytes differ"
    );
    assert_eq!(s.up.served(), 1);
}

#[test]
fn download_10_mib_keeps_sha256() {
    let s = mtls();
    let n = 10 * MIB;
    let output = s.dir.join("download.bin");
    s.curl_ok(&["-o", &path_arg(&output)], &format!("/bytes/{n}"));
    assert_eq!(std::fs::metadata(&output).expect("output").len(), n as u64);
    assert_eq!(sha256_file(&output), sha256_hex(&pattern(n)));
}

#[test]
fn chunked_upload_is_forwarded_intact() {
    let s = mtls();
    let data = pattern(MIB + 17);
    let input = s.dir.join("chunked-upload.bin");
    std::fs::write(&input, &data).expect("write upload");
    let data_arg = format!("@{}", path_arg(&input));
    let output = s.dir.join("chunked-echoed.bin");
    s.curl_ok(
        &[
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            &data_arg,
            "-o",
            &path_arg(&output),
        ],
        "/echo",
    );
    assert_eq!(
        sha256_file(&output),
        sha256_hex(&data),
        "echoed bytes differ"
    );

    // The upstream saw a chunked request, not one re-framed with a length.
    let head = s.curl_ok(
        &["-H", "Transfer-Encoding: chunked", "--data-binary", "hello"],
        "/headers",
    );
    assert_eq!(
        fields_in_head(&head, "transfer-encoding"),
        ["chunked"],
        "{}",
        String::from_utf8_lossy(&head)
    );
    assert!(fields_in_head(&head, "content-length").is_empty());
}

#[test]
fn chunked_response_passes_through_intact() {
    let s = mtls();
    let n = 3 * MIB + 7;
    let output = s.dir.join("chunked.bin");
    let headers = s.dir.join("chunked.headers");
    s.curl_ok(
        &["-D", &path_arg(&headers), "-o", &path_arg(&output)],
        &format!("/chunked/{n}"),
    );
    let head = std::fs::read_to_string(&headers).expect("headers");
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    assert_eq!(sha256_file(&output), sha256_hex(&pattern(n)));
}

#[test]
fn close_delimited_response_is_delivered_whole() {
    let s = mtls();
    let n = 300_001;
    let output = s.dir.join("close-delimited.bin");
    s.curl_ok(
        &["-o", &path_arg(&output)],
        &format!("/close-delimited/{n}"),
    );
    assert_eq!(sha256_file(&output), sha256_hex(&pattern(n)));
}

#[test]
fn head_request_gets_the_head_only() {
    let s = mtls();
    let out = s.curl(&["-sS", "-I", "--fail", &s.url("/bytes/1000")]);
    assert!(out.status.success(), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(text.contains("content-length: 1000\r\n"), "{text}");
    assert_eq!(s.up.requests(), ["HEAD /bytes/1000"]);
}

#[test]
fn head_then_get_on_one_connection() {
    // Plaintext, so the test controls the exact bytes: after a HEAD answer
    // the gateway must not wait for (or forward) a body.
    let s = Setup::plain(|c| c);
    let mut c = RawConn::connect(s.gw.addr(harness::LISTENER));
    c.send(b"HEAD /bytes/1000 HTTP/1.1\r\nHost: e2e\r\n\r\nGET /bytes/10 HTTP/1.1\r\nHost: e2e\r\n\r\n")
        .expect("send");
    let head = c.read_response_to(true).expect("HEAD response");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("1000"));
    let get = c.read_response().expect("GET response");
    assert_eq!(get.status, 200);
    assert_eq!(get.body, pattern(10));
}

#[test]
fn expect_100_continue_gets_an_interim_response() {
    let s = mtls();
    let out = s.curl(&[
        "-v",
        "--fail",
        "-H",
        "Expect: 100-continue",
        "--expect100-timeout",
        "30",
        "--data-binary",
        "expected body",
        &s.url("/echo"),
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "expected body");
    let verbose = String::from_utf8_lossy(&out.stderr);
    assert!(
        verbose.contains("< HTTP/1.1 100 Continue"),
        "no 100 Continue from the gateway:\n{verbose}"
    );
}

#[test]
fn keep_alive_reuses_the_client_connection() {
    let s = mtls();
    let out = s.curl(&[
        "--fail",
        "-o",
        "/dev/null",
        "-o",
        "/dev/null",
        "-w",
        "%{num_connects}\n",
        &s.url("/bytes/100"),
        &s.url("/headers"),
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    let connects: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        connects,
        ["1", "0"],
        "the second request did not reuse the connection"
    );
    assert_eq!(s.up.served(), 2);
}

#[test]
fn upstream_connections_are_pooled() {
    let s = Setup::mtls(|c| c.shards(1));
    for _ in 0..5 {
        s.curl_ok(&["-o", "/dev/null"], "/bytes/10");
    }
    assert_eq!(s.up.served(), 5);
    assert_eq!(
        s.up.connections(),
        1,
        "five sequential requests through one shard should share one pooled upstream connection"
    );
}

#[test]
fn many_concurrent_keep_alive_connections() {
    const CONNECTIONS: usize = 200;
    const REQUESTS: usize = 50;
    let s = Setup::mtls(|c| c.idle_timeout_ms(60_000));
    let addr = s.gw.addr(harness::LISTENER);
    let config = tls_client(&s.pki);
    let ok = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let threads: Vec<_> = (0..CONNECTIONS)
        .map(|t| {
            let (config, ok, errors) = (config.clone(), ok.clone(), errors.clone());
            std::thread::Builder::new()
                .stack_size(512 * 1024)
                .spawn(move || {
                    let result = (|| -> Result<(), String> {
                        let mut conn = tls_connect(addr, &config).map_err(|e| e.to_string())?;
                        for i in 0..REQUESTS {
                            let n = (t * REQUESTS + i) % 1500 + 1;
                            let req = format!("GET /bytes/{n} HTTP/1.1\r\nHost: localhost\r\n\r\n");
                            conn.send(req.as_bytes())
                                .map_err(|e| format!("conn {t} req {i}: send: {e}"))?;
                            let resp = conn
                                .read_response()
                                .map_err(|e| format!("conn {t} req {i}: read: {e}"))?;
                            if resp.status != 200 || resp.body != pattern(n) {
                                return Err(format!(
                                    "conn {t} req {i}: status {} with {} body bytes (wanted {n})",
                                    resp.status,
                                    resp.body.len()
                                ));
                            }
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(())
                    })();
                    if let Err(e) = result {
                        errors.lock().expect("errors").push(e);
                    }
                })
                .expect("spawn client thread")
        })
        .collect();
    for t in threads {
        t.join().expect("client thread panicked");
    }
    let errors = errors.lock().expect("errors");
    assert_eq!(
        ok.load(Ordering::Relaxed),
        CONNECTIONS * REQUESTS,
        "{} connections failed; first errors: {:?}\n--- gateway stderr:\n{}",
        errors.len(),
        &errors[..errors.len().min(5)],
        s.gw.stderr()
    );
    // The gateway must still serve after the burst.
    s.curl_ok(&["-o", "/dev/null"], "/status/200");
}

#[test]
fn status_codes_and_bodiless_responses_pass_through_on_one_connection() {
    let s = mtls();
    let codes = [201u16, 204, 304, 404, 500, 503];
    let mut args: Vec<String> = vec!["-w".into(), "%{http_code} %{num_connects}\n".into()];
    for code in codes {
        args.extend([
            "-o".into(),
            "/dev/null".into(),
            s.url(&format!("/status/{code}")),
        ]);
    }
    args.extend(["-o".into(), "/dev/null".into(), s.url("/bytes/10")]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = s.curl(&args);
    assert!(out.status.success(), "{}", describe(&out));
    let mut expected: Vec<String> = codes.iter().map(|c| format!("{c} 0")).collect();
    expected[0] = "201 1".into();
    expected.push("200 0".into());
    let got: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(got, expected, "status, new connections per request");
}

#[test]
fn pipelined_requests_with_bodies_are_answered_in_order() {
    let s = Setup::plain(|c| c);
    let mut c = RawConn::connect(s.gw.addr(harness::LISTENER));
    c.send(
        b"POST /echo HTTP/1.1\r\nHost: e2e\r\nContent-Length: 5\r\n\r\nfirst\
POST /echo HTTP/1.1\r\nHost: e2e\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nsec\r\n3\r\nond\r\n0\r\n\r\n\
GET /bytes/7 HTTP/1.1\r\nHost: e2e\r\n\r\n\
POST /echo HTTP/1.1\r\nHost: e2e\r\nContent-Length: 0\r\n\r\n\
GET /headers HTTP/1.1\r\nHost: e2e\r\nConnection: close\r\n\r\n",
    )
    .expect("send");
    let bodies: Vec<Vec<u8>> = (0..5)
        .map(|i| {
            let r = c
                .read_response()
                .unwrap_or_else(|e| panic!("response {i}: {e}"));
            assert_eq!(r.status, 200, "response {i}: {r:?}");
            r.body
        })
        .collect();
    assert_eq!(bodies[0], b"first");
    assert_eq!(bodies[1], b"second");
    assert_eq!(bodies[2], pattern(7));
    assert_eq!(bodies[3], b"");
    assert!(
        bodies[4].starts_with(b"GET /headers HTTP/1.1\r\n"),
        "{}",
        String::from_utf8_lossy(&bodies[4])
    );
    assert_eq!(
        s.up.requests(),
        [
            "POST /echo",
            "POST /echo",
            "GET /bytes/7",
            "POST /echo",
            "GET /headers"
        ]
    );
    let rest = c.read_to_close(harness::client::READ_TIMEOUT);
    assert!(rest.closed, "Connection: close not honoured");
    assert!(rest.bytes.is_empty(), "extra bytes: {}", rest.text());
}

#[test]
fn http_1_0_request_is_answered_then_closed() {
    let s = Setup::plain(|c| c);
    let mut c = RawConn::connect(s.gw.addr(harness::LISTENER));
    c.send(b"GET /bytes/9 HTTP/1.0\r\n\r\n").expect("send");
    let got = c.read_to_close(harness::client::READ_TIMEOUT);
    assert!(got.closed, "HTTP/1.0 without keep-alive left open");
    let responses = harness::split_responses(&got.bytes);
    assert_eq!(responses.len(), 1, "{}", got.text());
    assert_eq!(responses[0].status, 200);
    assert_eq!(responses[0].body, pattern(9));
}

#[test]
fn http_1_0_keep_alive_is_announced_and_honoured() {
    // ApacheBench's `-k` speaks this: HTTP/1.0 with `Connection: keep-alive`.
    let s = Setup::plain(|c| c);
    let mut c = RawConn::connect(s.gw.addr(harness::LISTENER));
    for n in [5usize, 6] {
        c.send(format!("GET /bytes/{n} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").as_bytes())
            .expect("send");
        let resp = c.read_response().expect("response on the kept connection");
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body, pattern(n));
        assert_eq!(resp.header("connection"), Some("keep-alive"), "{resp:?}");
    }
    // A chunked upstream body cannot be framed for HTTP/1.0: delivered, then closed.
    c.send(b"GET /chunked/7 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .expect("send");
    let got = c.read_to_close(harness::client::READ_TIMEOUT);
    assert!(
        got.closed,
        "chunked response to HTTP/1.0 left the connection open"
    );
}

#[test]
fn client_connection_close_is_honoured() {
    let s = Setup::plain(|c| c);
    let mut c = RawConn::connect(s.gw.addr(harness::LISTENER));
    c.send(b"GET /bytes/3 HTTP/1.1\r\nHost: e2e\r\nConnection: close\r\n\r\nGET /bytes/4 HTTP/1.1\r\nHost: e2e\r\n\r\n")
        .expect("send");
    let got = c.read_to_close(harness::client::READ_TIMEOUT);
    assert!(got.closed, "Connection: close left the connection open");
    let responses = harness::split_responses(&got.bytes);
    assert_eq!(
        responses.len(),
        1,
        "answered past Connection: close:\n{}",
        got.text()
    );
    assert!(responses[0].says_close(), "{:?}", responses[0]);
    assert_eq!(s.up.requests(), ["GET /bytes/3"]);
}

#[test]
fn hop_by_hop_headers_are_dropped_and_the_target_is_kept() {
    let s = Setup::plain(|c| c);
    let mut c = RawConn::connect(s.gw.addr(harness::LISTENER));
    c.send(
        b"GET /headers?x=1&y=%2F%20 HTTP/1.1\r\nHost: e2e\r\n\
Connection: keep-alive, X-Hop\r\nX-Hop: secret\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n\
Upgrade: websocket\r\nProxy-Connection: keep-alive\r\nX-Custom: Value  With\tSpaces\r\n\r\n",
    )
    .expect("send");
    let resp = c.read_response().expect("response");
    let head = resp.body_str();
    assert_eq!(resp.status, 200, "{resp:?}");
    assert!(
        head.starts_with("GET /headers?x=1&y=%2F%20 HTTP/1.1\r\n"),
        "target rewritten:\n{head}"
    );
    for gone in [
        "x-hop",
        "keep-alive",
        "te",
        "upgrade",
        "proxy-connection",
        "connection",
    ] {
        assert!(
            fields_in_head(&resp.body, gone).is_empty(),
            "hop-by-hop {gone} forwarded:\n{head}"
        );
    }
    assert_eq!(
        fields_in_head(&resp.body, "x-custom"),
        ["Value  With\tSpaces"],
        "{head}"
    );
    assert_eq!(fields_in_head(&resp.body, "host"), ["e2e"], "{head}");
}

#[test]
fn round_robin_across_endpoints() {
    let second = harness::Upstream::start("second");
    let s = Setup::mtls(|mut c| {
        c.shards = 1;
        c.lb = Some("round_robin".into());
        c.endpoints.push(second.addr());
        c
    });
    let mut tags = Vec::new();
    for _ in 0..4 {
        let out = s.curl(&[
            "-sS",
            "--fail",
            "-D",
            "-",
            "-o",
            "/dev/null",
            &s.url("/status/200"),
        ]);
        assert!(out.status.success(), "{}", describe(&out));
        let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
        let tag = head
            .lines()
            .find_map(|l| l.strip_prefix("x-upstream: "))
            .map(|t| t.trim().to_owned())
            .unwrap_or_else(|| panic!("no x-upstream: {head}"));
        tags.push(tag);
    }
    assert_eq!(s.up.served(), 2, "{tags:?}");
    assert_eq!(second.served(), 2, "{tags:?}");
    assert!(
        tags.windows(2).all(|w| w[0] != w[1]),
        "not alternating: {tags:?}"
    );
}

#[test]
fn ipv6_loopback_listener() {
    let s = Setup::plain(|c| c.address("[::1]:0"));
    let addr = s.gw.addr(harness::LISTENER);
    assert!(addr.is_ipv6(), "announced {addr}");
    let mut c = RawConn::connect(addr);
    c.send(b"GET /headers HTTP/1.1\r\nHost: e2e\r\n\r\n")
        .expect("send");
    let resp = c.read_response().expect("response");
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(fields_in_head(&resp.body, "x-forwarded-for"), ["::1"]);
    assert_eq!(fields_in_head(&resp.body, "x-forwarded-proto"), ["http"]);
}
