//! meshbench's HTTP/2 mode against a server nobody here wrote: nginx with
//! HTTP/2 by prior knowledge (h2c) and over TLS (ALPN `h2`). Counts are
//! checked against what was asked; nginx's own limits (a GOAWAY after 1000
//! requests per connection) exercise the resend of unprocessed streams.

use harness::bench::meshbench;
use harness::{Listen, Nginx, Pki, TempDir, pattern};

fn u(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// nginx serving `hello.txt` (and nothing else) in a fresh folder with a
/// fresh PKI: plain h2c, or TLS (offering h2 by ALPN when `h2`).
struct World {
    ngx: Nginx,
    pki: Pki,
    _dir: TempDir,
}

fn world(tls: Option<bool>) -> World {
    let dir = TempDir::new();
    let pki = Pki::new(dir.path());
    let www = dir.join("www");
    std::fs::create_dir_all(&www).expect("www");
    std::fs::write(www.join("hello.txt"), pattern(1000)).expect("file");
    let listen = match tls {
        None => Listen::H2c,
        Some(h2) => Listen::Tls {
            cert: &pki.server_cert,
            key: &pki.server_key,
            h2,
            client_ca: None,
        },
    };
    let ngx = Nginx::start_with(dir.path(), &www, listen);
    World {
        ngx,
        pki,
        _dir: dir,
    }
}

impl World {
    fn https(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.ngx.addr().port())
    }

    fn ca(&self) -> &str {
        self.pki.ca.to_str().unwrap()
    }
}

#[test]
fn h2c_streams_are_counted_and_goaway_is_survived() {
    let w = world(None);
    let ngx = &w.ngx;
    let url = format!("http://{}/hello.txt", ngx.addr());
    let r = meshbench(&[&url, "--h2", "--streams", "8", "-c", "2", "-n", "3000"]);
    assert_eq!(r["protocol"], "h2", "{r}");
    assert_eq!(u(&r["requests"]), 3000, "{r}");
    assert_eq!(u(&r["errors"]), 0, "{r}\n{}", ngx.error_log());
    assert_eq!(u(&r["status"]["2xx"]), 3000);
    // 1000 requests per connection, then nginx says GOAWAY.
    assert!(u(&r["connections_opened"]) >= 3, "{r}");
    assert!(u(&r["bytes"]) >= 3000 * 1000, "{r}");
}

#[test]
fn h2_over_tls_negotiates_by_alpn_and_runs_open_loop() {
    let w = world(Some(true));
    let (ngx, url, ca) = (&w.ngx, w.https("/hello.txt"), w.ca());
    let r = meshbench(&[
        &url,
        "--h2",
        "--streams",
        "4",
        "-c",
        "2",
        "--cacert",
        ca,
        "--rate",
        "400",
        "-d",
        "1s",
    ]);
    assert_eq!(u(&r["errors"]), 0, "{r}\n{}", ngx.error_log());
    // Open loop: the schedule, not the server, sets the count (±1 per connection).
    let n = u(&r["requests"]);
    assert!(
        (398..=402).contains(&n),
        "{n} requests at 400/s for 1 s: {r}"
    );
    // A missing file is a 404, counted as a failure.
    let missing = w.https("/nope");
    let r = meshbench(&[&missing, "--h2", "-c", "1", "-n", "10", "--cacert", ca]);
    assert_eq!(u(&r["status"]["4xx"]), 10, "{r}");
    assert_eq!(r["error_rate"], 1.0);
}

#[test]
fn a_tls_server_without_h2_is_a_clear_error() {
    let w = world(Some(false));
    let (url, ca) = (w.https("/hello.txt"), w.ca());
    let r = meshbench(&[&url, "--h2", "-c", "1", "-n", "5", "--cacert", ca]);
    assert_eq!(u(&r["requests"]), 0, "{r}");
    assert_eq!(u(&r["errors"]), 5, "{r}");
    let kinds = r["error_kinds"].as_array().unwrap();
    assert!(
        kinds
            .iter()
            .all(|k| k[0].as_str().unwrap().starts_with("tls:")),
        "{r}"
    );
    // The same server speaks HTTP/1.1 to the same client without --h2.
    let r = meshbench(&[&url, "-c", "1", "-n", "5", "--cacert", ca]);
    assert_eq!(u(&r["status"]["2xx"]), 5, "{r}");
}

/// `meshbench upstream --h2c`: curl by prior knowledge sees its answers,
/// trailers and gRPC shape; meshbench's own HTTP/2 client loads it through
/// a gateway whose cluster speaks h2c, every request counted on both ends.
#[test]
fn the_h2c_origin_answers_curl_and_carries_load_through_a_gateway() {
    use harness::bench::BenchUpstream;
    use harness::{Gateway, GatewayConfig};
    let up = BenchUpstream::start(&["--h2c", "--body-size", "64"]);
    let url = |path: &str| format!("http://{}{path}", up.addr());
    let out = harness::curl(&["-sS", "--http2-prior-knowledge", &url("/x")]);
    assert_eq!(out.stdout.len(), 64, "{}", harness::describe(&out));
    let out = harness::curl(&[
        "-sS",
        "--http2-prior-knowledge",
        "-d",
        "ping",
        &url("/echo"),
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ping");
    // A gRPC request: one length-prefixed message, grpc-status 0 in the
    // trailers (curl -i prints them after the body).
    let out = harness::curl(&[
        "-sS",
        "-i",
        "--http2-prior-knowledge",
        "-H",
        "content-type: application/grpc",
        "--data-binary",
        "",
        &url("/bench.Svc/Call"),
    ]);
    let text = out.stdout;
    let at = text
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("head")
        + 4;
    assert_eq!(&text[at..at + 5], &[0, 0, 0, 0, 64], "message prefix");
    assert!(
        String::from_utf8_lossy(&text[at + 5 + 64..]).contains("grpc-status: 0"),
        "{}",
        String::from_utf8_lossy(&text)
    );

    let dir = TempDir::new();
    let config = GatewayConfig::plain(&[up.addr()])
        .shards(1)
        .listener_extra("[listeners.http2]\nh2c = true")
        .cluster_extra("protocol = \"h2c\"");
    let gw = Gateway::start(&config.to_toml(), dir.path());
    let r = meshbench(&[
        &gw.url("/load"),
        "--h2",
        "--streams",
        "8",
        "-c",
        "4",
        "-n",
        "2000",
    ]);
    assert_eq!(u(&r["errors"]), 0, "{r}\n{}", gw.stderr());
    assert_eq!(u(&r["status"]["2xx"]), 2000, "{r}");
    assert_eq!(gw.counter("h2_upstream_streams"), 2000, "{}", gw.stats());
    // One shard multiplexes everything on one upstream connection.
    assert_eq!(gw.counter("h2_upstream_connections"), 1, "{}", gw.stats());
    // The origin answered curl's three requests and every one of them.
    assert_eq!(up.stop().served, 3 + 2000);
}
