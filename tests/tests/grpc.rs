//! gRPC end to end through the gateway with a real gRPC stack on both
//! sides: Python `grpcio` as the caller (over mTLS, HTTP/2 by ALPN) and
//! as the origin (tests/python/grpc_server.py) behind a cluster speaking
//! HTTP/2 — plaintext (`h2c`) or mutual TLS (`h2`, the origin's SPIFFE ID
//! verified). Unary, server and client streaming, bidirectional (all
//! messages first, and ping-pong: full duplex), status codes and messages,
//! metadata both ways, deadlines and large messages.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use harness::gateway::toml_str;
use harness::pki::path_str;
use harness::{Gateway, GatewayConfig, Pki, TempDir, describe};

const ORIGIN_ID: &str = "spiffe://meshgate.local/ns/rpc/sa/echo";
const GATEWAY_ID: &str = "spiffe://meshgate.local/ns/edge/sa/gateway";

fn python() -> PathBuf {
    let python = harness::workspace_root().join("target/venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: scripts/test.sh creates it (pip install grpcio)",
        python.display()
    );
    python
}

/// tests/python/grpc_server.py, killed on drop.
struct GrpcOrigin {
    child: Child,
    addr: SocketAddr,
}

impl GrpcOrigin {
    fn start(tls: Option<(&PathBuf, &PathBuf, &PathBuf)>) -> GrpcOrigin {
        let mut cmd = Command::new(python());
        cmd.arg(harness::workspace_root().join("tests/python/grpc_server.py"));
        if let Some((cert, key, ca)) = tls {
            cmd.arg("--tls").arg(cert).arg(key).arg(ca);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start grpc_server.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the port");
        let port: u16 = line.trim().parse().unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("grpc_server.py printed {line:?}, not a port")
        });
        GrpcOrigin {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }
}

impl Drop for GrpcOrigin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs tests/python/grpc_e2e.py against the gateway; its JSON report.
fn calls(gw: &Gateway, pki: &Pki) -> serde_json::Value {
    calls_with(gw, pki, &[])
}

fn calls_with(gw: &Gateway, pki: &Pki, extra: &[&str]) -> serde_json::Value {
    let out = Command::new(python())
        .arg(harness::workspace_root().join("tests/python/grpc_e2e.py"))
        .arg(gw.addr(harness::LISTENER).to_string())
        .arg(&pki.ca)
        .arg(&pki.client_cert)
        .arg(&pki.client_key)
        .args(extra)
        .output()
        .expect("run grpc_e2e.py");
    assert!(out.status.success(), "{}\n{}", describe(&out), gw.stderr());
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", describe(&out), gw.stderr()))
}

fn gateway(pki: &Pki, dir: &TempDir, origin: SocketAddr, cluster_extra: &str) -> Gateway {
    let config = GatewayConfig::mtls(pki, &[origin])
        .shards(1)
        .admin()
        .alpn(&["h2", "http/1.1"])
        .cluster_extra(cluster_extra);
    Gateway::start(&config.to_toml(), dir.path())
}

/// What every call kind must show, whichever way the gateway reached the
/// origin.
fn check_calls(r: &serde_json::Value, gw: &Gateway) {
    let ctx = || format!("{r:#}\n{}", gw.stderr());
    let unary = &r["unary"];
    assert_eq!(unary["code"], "OK", "{}", ctx());
    assert_eq!(unary["reply"], "030201", "{}", ctx());
    assert_eq!(unary["initial"]["x-echo-caller"], "py-client", "{}", ctx());
    assert_eq!(unary["trailing"]["x-served-by"], "grpcio", "{}", ctx());

    // The origin's status and message reach the caller untouched.
    assert_eq!(r["fail"]["code"], "INVALID_ARGUMENT", "{}", ctx());
    assert_eq!(r["fail"]["details"], "no such thing", "{}", ctx());
    assert!(
        r["fail"]["trailing"].get("x-meshgate-error").is_none(),
        "{}",
        ctx()
    );

    assert_eq!(
        r["server_stream"]["replies"],
        serde_json::json!(["00", "01", "02", "03", "04"]),
        "{}",
        ctx()
    );
    assert_eq!(r["client_stream"]["reply"], "616263646566", "{}", ctx());
    assert_eq!(
        r["bidi"]["replies"],
        serde_json::json!(["0201", "0403"]),
        "{}",
        ctx()
    );
    // A reply per message before the next is sent: full duplex.
    assert_eq!(
        r["pingpong"]["replies"],
        serde_json::json!(["00", "01", "02"]),
        "{}",
        ctx()
    );
    // The caller's deadline ends the slow call.
    assert_eq!(r["deadline"]["code"], "DEADLINE_EXCEEDED", "{}", ctx());
    assert_eq!(r["large"]["same"], true, "{}", ctx());
}

#[test]
fn grpc_calls_of_every_kind_pass_through_to_an_h2c_origin() {
    let dir = TempDir::new();
    let pki = Pki::new(dir.path());
    let origin = GrpcOrigin::start(None);
    let gw = gateway(&pki, &dir, origin.addr, "protocol = \"h2c\"");
    let r = calls(&gw, &pki);
    check_calls(&r, &gw);
    assert_eq!(r["unary"]["trailing"]["x-peer-identity"], "none");
    assert_eq!(gw.counter("h2_upstream_connections"), 1, "{}", gw.stats());

    // Every answer is counted by its gRPC status, per route and cluster
    // (shards publish their counts about once a second).
    harness::wait_until(
        std::time::Duration::from_secs(10),
        "the gRPC answers counted",
        || gw.stats_report()["clusters"][0]["grpc"]["OK"] == 6,
    );
    let stats = gw.stats_report();
    let cluster = &stats["clusters"][0]["grpc"];
    assert_eq!(cluster["OK"], 6, "{stats:#}");
    assert_eq!(cluster["INVALID_ARGUMENT"], 1, "{stats:#}");
    // The caller's 0.5 s deadline (grpc-timeout) shortened the route's
    // 30 s timeout: the gateway answered DEADLINE_EXCEEDED itself.
    assert_eq!(cluster["DEADLINE_EXCEEDED"], 1, "{stats:#}");
    assert_eq!(stats["routes"][0]["grpc"], *cluster, "{stats:#}");
    // And on /metrics.
    let scrape = harness::curl(&["-sS", &gw.admin_url("/metrics")]);
    let scrape = String::from_utf8_lossy(&scrape.stdout);
    for line in [
        "meshgate_cluster_grpc_responses_total{cluster=\"backend\",grpc_status=\"OK\"} 6",
        "meshgate_route_grpc_responses_total{route=\"main#0\",grpc_status=\"INVALID_ARGUMENT\"} 1",
        "meshgate_grpc_responses_total{listener=\"main\",grpc_status=\"DEADLINE_EXCEEDED\"} 1",
    ] {
        assert!(scrape.contains(line), "{line} missing:\n{scrape}");
    }
}

#[test]
fn grpc_unavailable_answers_are_retried_when_the_route_says_so() {
    let dir = TempDir::new();
    let pki = Pki::new(dir.path());
    let origin = GrpcOrigin::start(None);
    let config = GatewayConfig::mtls(&pki, &[origin.addr])
        .shards(1)
        .alpn(&["h2", "http/1.1"])
        .route_extra("[routes.retry]\nattempts = 1\non = [\"unavailable\"]")
        .cluster_extra("protocol = \"h2c\"");
    let gw = Gateway::start(&config.to_toml(), dir.path());
    let r = calls_with(&gw, &pki, &["flaky", "3"]);
    // Calls 1, 3, 5 of the origin fail; each is retried once: the caller
    // sees three successes.
    let replies: Vec<&str> = r["flaky"]
        .as_array()
        .expect("list")
        .iter()
        .map(|c| c["reply"].as_str().unwrap_or("failed"))
        .collect();
    assert_eq!(replies, ["ok 2", "ok 4", "ok 6"], "{r:#}\n{}", gw.stderr());
    assert_eq!(gw.counter("retries"), 3, "{}", gw.stats());
}

#[test]
fn grpc_calls_pass_through_over_mutual_tls_to_an_origin_with_an_svid() {
    let dir = TempDir::new();
    let pki = Pki::new(dir.path());
    let (cert, key) = pki.issue_svid_server("echo", ORIGIN_ID);
    let origin = GrpcOrigin::start(Some((&cert, &key, &pki.ca)));
    let (gw_cert, gw_key) = pki.issue_client("gateway-client", Some(GATEWAY_ID));
    let tls = format!(
        "protocol = \"h2\"\n[clusters.tls]\nca = {}\ncert = {}\nkey = {}\nverify_spiffe_id = [{}]",
        toml_str(&path_str(&pki.ca)),
        toml_str(&path_str(&gw_cert)),
        toml_str(&path_str(&gw_key)),
        toml_str(ORIGIN_ID),
    );
    let gw = gateway(&pki, &dir, origin.addr, &tls);
    let r = calls(&gw, &pki);
    check_calls(&r, &gw);
    // The origin saw the gateway's own identity.
    assert_eq!(r["unary"]["trailing"]["x-peer-identity"], GATEWAY_ID);
    assert_eq!(gw.counter("upstream_tls_handshakes"), 1, "{}", gw.stats());
}
