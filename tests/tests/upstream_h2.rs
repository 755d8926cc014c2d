//! HTTP/2 to upstreams (`clusters.protocol = "h2" | "h2c"`): HTTP/1.1 and
//! HTTP/2 callers (curl) through the gateway to nginx speaking HTTP/2 —
//! by prior knowledge in plaintext, and over mutual TLS (ALPN `h2`) with
//! the upstream's SPIFFE ID verified; requests multiplexed on one
//! connection per endpoint per shard.

use std::time::Duration;

use harness::gateway::toml_str;
use harness::pki::path_str;
use harness::{Gateway, GatewayConfig, Listen, Nginx, Pki, TempDir, describe, pattern};

const UPSTREAM_ID: &str = "spiffe://meshgate.local/ns/web/sa/static";

struct World {
    nginx: Nginx,
    pki: Pki,
    dir: TempDir,
    data: Vec<u8>,
}

/// nginx speaking HTTP/2 (`tls`: over mutual TLS with an SVID; else h2c),
/// serving a 300 KiB file (larger than a stream's initial window).
fn world(tls: bool) -> World {
    let dir = TempDir::new();
    let pki = Pki::new(dir.path());
    let www = dir.join("www");
    std::fs::create_dir_all(&www).expect("www");
    let data = pattern(300 * 1024);
    std::fs::write(www.join("big.bin"), &data).expect("file");
    std::fs::write(www.join("hello.txt"), "hello over h2\n").expect("file");
    let (cert, key) = pki.issue_svid_server("static", UPSTREAM_ID);
    let listen = if tls {
        Listen::Tls {
            cert: &cert,
            key: &key,
            h2: true,
            client_ca: Some(&pki.ca),
        }
    } else {
        Listen::H2c
    };
    let nginx = Nginx::start_with(dir.path(), &www, listen);
    World {
        nginx,
        pki,
        dir,
        data,
    }
}

impl World {
    fn cluster_tls(&self) -> String {
        let (cert, key) = self.pki.issue_client(
            "gateway-client",
            Some("spiffe://meshgate.local/ns/edge/sa/gateway"),
        );
        format!(
            "[clusters.tls]\nca = {}\ncert = {}\nkey = {}\nverify_spiffe_id = [{}]",
            toml_str(&path_str(&self.pki.ca)),
            toml_str(&path_str(&cert)),
            toml_str(&path_str(&key)),
            toml_str(UPSTREAM_ID),
        )
    }

    /// An mTLS gateway offering h2 and HTTP/1.1 to callers, one shard.
    fn gateway(&self, cluster_extra: &str) -> Gateway {
        let config = GatewayConfig::mtls(&self.pki, &[self.nginx.addr()])
            .shards(1)
            .alpn(&["h2", "http/1.1"])
            .cluster_extra(cluster_extra);
        Gateway::start(&config.to_toml(), self.dir.path())
    }

    fn curl(&self, gw: &Gateway, extra: &[&str], path: &str) -> std::process::Output {
        let mut args = self.pki.curl_mtls_args();
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args.extend(["-sS".into(), "--fail".into(), gw.url(path)]);
        harness::curl(&args)
    }

    fn context(&self, gw: &Gateway) -> String {
        format!(
            "--- gateway stderr:\n{}\n--- nginx error log:\n{}",
            gw.stderr(),
            self.nginx.error_log()
        )
    }
}

#[test]
fn http1_and_http2_callers_reach_an_h2c_upstream_on_one_connection() {
    let w = world(false);
    let gw = w.gateway("protocol = \"h2c\"");
    let out = w.curl(&gw, &["--http1.1"], "/whoami");
    assert!(
        out.status.success(),
        "{}\n{}",
        describe(&out),
        w.context(&gw)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "http=HTTP/2.0\n");

    // A body larger than the stream's initial window arrives whole.
    let file = w.dir.join("big.out");
    let out = w.curl(&gw, &["--http2", "-o", &path_str(&file)], "/big.bin");
    assert!(
        out.status.success(),
        "{}\n{}",
        describe(&out),
        w.context(&gw)
    );
    assert_eq!(std::fs::read(&file).expect("downloaded"), w.data);

    // Ten more requests, HTTP/1.1 and HTTP/2: still one upstream connection.
    for i in 0..10 {
        let version = if i % 2 == 0 { "--http1.1" } else { "--http2" };
        let out = w.curl(&gw, &[version], "/hello.txt");
        assert!(
            out.status.success(),
            "{}\n{}",
            describe(&out),
            w.context(&gw)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hello over h2\n");
    }
    assert_eq!(gw.counter("h2_upstream_connections"), 1, "{}", gw.stats());
    assert_eq!(gw.counter("h2_upstream_streams"), 12, "{}", gw.stats());
    // A missing file: nginx's 404 comes through.
    let mut args = w.pki.curl_mtls_args();
    args.extend([
        "-s".into(),
        "-o".into(),
        "/dev/null".into(),
        "-w".into(),
        "%{http_code}".into(),
        gw.url("/nope"),
    ]);
    let out = harness::curl(&args);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "404");
}

#[test]
fn h2_over_mutual_tls_verifies_the_upstream_spiffe_id() {
    let w = world(true);
    let gw = w.gateway(&format!("protocol = \"h2\"\n{}", w.cluster_tls()));
    let out = w.curl(&gw, &["--http2"], "/whoami");
    assert!(
        out.status.success(),
        "{}\n{}",
        describe(&out),
        w.context(&gw)
    );
    let seen = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(seen.starts_with("verify=SUCCESS"), "{seen}");
    assert!(seen.contains("http=HTTP/2.0"), "{seen}");
    let file = w.dir.join("big.out");
    let out = w.curl(&gw, &["--http1.1", "-o", &path_str(&file)], "/big.bin");
    assert!(
        out.status.success(),
        "{}\n{}",
        describe(&out),
        w.context(&gw)
    );
    assert_eq!(std::fs::read(&file).expect("downloaded"), w.data);
    assert_eq!(gw.counter("h2_upstream_connections"), 1);
    assert_eq!(gw.counter("upstream_tls_handshakes"), 1);
}

#[test]
fn an_idle_upstream_connection_is_closed_after_the_pool_timeout_and_reopened() {
    let w = world(false);
    let gw = w.gateway("protocol = \"h2c\"\n[clusters.pool]\nidle_timeout_ms = 200");
    assert!(w.curl(&gw, &[], "/hello.txt").status.success());
    assert_eq!(established_to(w.nginx.addr().port()), 1);
    // The driver closes the idle connection (seen in the kernel's table);
    // the next request opens another.
    harness::wait_until(
        Duration::from_secs(10),
        "the idle connection closed",
        || established_to(w.nginx.addr().port()) == 0,
    );
    assert!(w.curl(&gw, &[], "/hello.txt").status.success());
    assert_eq!(gw.counter("h2_upstream_connections"), 2);
}

/// Established TCP connections (IPv4) whose remote port is `port`: the
/// gateway's connections to the upstream, from the kernel's table.
fn established_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let want = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            cols.len() > 3 && cols[2].ends_with(&want) && cols[3] == "01"
        })
        .count()
}

/// tests/python/h2_refusing_origin.py, killed on drop.
struct RefusingOrigin {
    child: std::process::Child,
    addr: std::net::SocketAddr,
}

impl RefusingOrigin {
    fn start(mode: &str) -> RefusingOrigin {
        use std::io::BufRead;
        let python = harness::workspace_root().join("target/venv/bin/python");
        assert!(
            python.exists(),
            "{} is missing: scripts/test.sh creates it (pip install h2)",
            python.display()
        );
        let mut child = std::process::Command::new(python)
            .arg(harness::workspace_root().join("tests/python/h2_refusing_origin.py"))
            .arg(mode)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start h2_refusing_origin.py");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("port line");
        let port: u16 = line.trim().parse().expect("a port");
        RefusingOrigin {
            child,
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }
}

impl Drop for RefusingOrigin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn plain_gateway(dir: &TempDir, origin: std::net::SocketAddr, route_extra: &str) -> Gateway {
    let config = GatewayConfig::plain(&[origin])
        .shards(1)
        .route_extra(route_extra)
        .cluster_extra("protocol = \"h2c\"");
    Gateway::start(&config.to_toml(), dir.path())
}

#[test]
fn a_stream_the_upstream_refused_unprocessed_is_sent_again_even_a_post() {
    let dir = TempDir::new();
    let origin = RefusingOrigin::start("refuse-first");
    // A retry policy makes the gateway keep the (small) body to resend.
    let gw = plain_gateway(
        &dir,
        origin.addr,
        "[routes.retry]\nattempts = 1\non = [\"5xx\"]",
    );
    let out = harness::curl(&["-sS", "--fail", "-d", "pay=1", &gw.url("/charge")]);
    assert!(out.status.success(), "{}\n{}", describe(&out), gw.stderr());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "served 1 refused 1\n");
    assert_eq!(gw.counter("h2_upstream_unprocessed"), 1, "{}", gw.stats());
    // Not a retry: the endpoint did nothing wrong.
    assert_eq!(gw.counter("retries"), 0, "{}", gw.stats());
}

#[test]
fn requests_above_a_graceful_goaway_go_again_on_a_new_connection() {
    let dir = TempDir::new();
    let origin = RefusingOrigin::start("goaway-first");
    let gw = plain_gateway(&dir, origin.addr, "");
    let out = harness::curl(&["-sS", "--fail", &gw.url("/a")]);
    assert!(out.status.success(), "{}\n{}", describe(&out), gw.stderr());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "served 1 refused 1\n");
    assert_eq!(gw.counter("h2_upstream_unprocessed"), 1, "{}", gw.stats());
    assert_eq!(gw.counter("h2_upstream_connections"), 2, "{}", gw.stats());
}

/// nginx's h2c listener speaks only HTTP/2: a health check in HTTP/1.1
/// would fail it. Checks of an h2c cluster speak HTTP/2; a failing path
/// marks the endpoint unhealthy.
#[test]
fn health_checks_of_an_h2c_cluster_speak_http2() {
    let w = world(false);
    let health = |path: &str| {
        format!(
            "protocol = \"h2c\"\nall_unhealthy = \"fail\"\n[clusters.health]\npath = \"{path}\"\ninterval_ms = 100\ntimeout_ms = 80\nunhealthy = 1\nhealthy = 1"
        )
    };
    let gw = w.gateway(&health("/nope"));
    harness::wait_until(
        Duration::from_secs(10),
        "the endpoint marked unhealthy",
        || {
            gw.stderr()
                .contains("is unhealthy (status 404 outside 200..=399)")
        },
    );
    let gw = w.gateway(&health("/whoami"));
    // nginx answered HTTP/2 probes (three of them), and the endpoint
    // stayed healthy: requests pass.
    harness::wait_until(
        Duration::from_secs(10),
        "three HTTP/2 probes served",
        || {
            let log = w.nginx.access_log();
            log.lines()
                .filter(|l| {
                    l.contains("\"GET /whoami HTTP/2.0\" 200") && l.contains("meshgate-health")
                })
                .count()
                >= 3
        },
    );
    assert!(w.curl(&gw, &[], "/hello.txt").status.success());
    assert!(
        !gw.stderr().contains("is unhealthy (status"),
        "{}",
        gw.stderr()
    );
}
