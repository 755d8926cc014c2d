//! End-to-end honesty checks: `meshbench` against `meshbench upstream`, both
//! the real binary, on loopback. The upstream counts what it served; the
//! load generator must report exactly that, count every failure, and show
//! server delay (and the backlog it causes) in its latency.
//!
//! Latency assertions here are lower bounds that follow from the upstream's
//! injected delays, never from the speed of this machine.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_meshbench");

/// A running `meshbench upstream`.
struct Upstream {
    child: Child,
    stdout: BufReader<std::process::ChildStdout>,
    port: u16,
}

/// What the upstream said it did, at exit.
#[derive(Debug, PartialEq)]
struct Served {
    served: u64,
    failed_503: u64,
    resets: u64,
    echoed_bytes: u64,
}

impl Upstream {
    fn start(extra: &[&str]) -> Upstream {
        let mut child = Command::new(BIN)
            .args(["upstream", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start upstream");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("listening line");
        let port = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        Upstream {
            child,
            stdout,
            port,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// SIGTERM, then the totals it prints.
    fn stop(mut self) -> Served {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).expect("read stdout");
        let _ = self.child.wait();
        let last = rest.lines().last().unwrap_or_default().to_string();
        let f: Vec<&str> = last.split_whitespace().collect();
        assert_eq!(f.len(), 8, "unexpected last line {last:?}");
        Served {
            served: f[1].parse().unwrap(),
            failed_503: f[3].parse().unwrap(),
            resets: f[5].parse().unwrap(),
            echoed_bytes: f[7].parse().unwrap(),
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        // Our own child, by PID; a no-op when it already exited.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `meshbench` with `args` plus `--json`; returns (exit code, report).
fn bench(name: &str, args: &[&str]) -> (i32, serde_json::Value) {
    let json = tmp(&format!("{name}.json"));
    let out = Command::new(BIN)
        .args(args)
        .args(["-q", "--json", json.to_str().unwrap()])
        .output()
        .expect("run meshbench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = std::fs::read_to_string(&json).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}); stdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let value = serde_json::from_str(&report).expect("valid JSON");
    let _ = std::fs::remove_file(&json);
    (out.status.code().unwrap_or(-1), value)
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("meshbench-test-{}-{name}", std::process::id()))
}

fn u(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

fn error_count(report: &serde_json::Value, kind: &str) -> u64 {
    report["error_kinds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e[0] == kind)
        .map_or(0, |e| u(&e[1]))
}

#[test]
fn reported_requests_equal_served_requests() {
    let up = Upstream::start(&["--threads", "2", "--body-size", "100"]);
    let url = up.url("/");
    let (code, fixed) = bench(
        "count-n",
        &[&url, "-c", "16", "--threads", "2", "-n", "3000"],
    );
    assert_eq!(code, 0);
    assert_eq!(u(&fixed["requests"]), 3000);
    let (code, timed) = bench("count-d", &[&url, "-c", "8", "-d", "500ms"]);
    assert_eq!(code, 0);
    assert_eq!(u(&timed["errors"]), 0);
    let served = up.stop();
    assert_eq!(served.served, 3000 + u(&timed["requests"]));
    assert_eq!(u(&fixed["status"]["2xx"]), 3000);
}

#[test]
fn new_connection_per_request() {
    let up = Upstream::start(&[]);
    let (code, r) = bench(
        "newconn",
        &[&up.url("/"), "-c", "4", "-n", "400", "--new-conn"],
    );
    assert_eq!(code, 0);
    assert_eq!(u(&r["requests"]), 400);
    assert_eq!(u(&r["connections_opened"]), 400);
    assert_eq!(r["mode"], "new-conn");
    assert_eq!(up.stop().served, 400);
}

#[test]
fn open_loop_latency_includes_the_server_delay() {
    let up = Upstream::start(&["--delay-ms", "50"]);
    // 40 req/s over 4 connections: each has 100 ms per request, more than
    // the delay, so nothing queues; every latency is at least the delay.
    let (code, r) = bench(
        "delay",
        &[&up.url("/"), "-c", "4", "--rate", "40", "-d", "1s"],
    );
    assert_eq!(code, 0);
    assert_eq!(r["model"], "open");
    assert_eq!(u(&r["requests"]), 40);
    assert!(r["latency_ms"]["p50"].as_f64().unwrap() >= 50.0, "{r}");
    assert!(r["latency_ms"]["min"].as_f64().unwrap() >= 50.0, "{r}");
    assert_eq!(up.stop().served, 40);
}

#[test]
fn open_loop_counts_the_backlog_of_a_stalled_upstream() {
    let up = Upstream::start(&["--delay-ms", "100"]);
    // One connection asked for a request every 50 ms while each takes at
    // least 100 ms: request k (intended at 50k ms) completes no earlier
    // than 100(k+1) ms, so the last of 20 waited at least 1050 ms. A tool
    // with coordinated omission would report ~100 ms throughout.
    let (code, r) = bench(
        "stall",
        &[&up.url("/"), "-c", "1", "--rate", "20", "-d", "1s"],
    );
    assert_eq!(code, 0);
    assert_eq!(u(&r["requests"]), 20);
    assert!(r["latency_ms"]["max"].as_f64().unwrap() >= 1050.0, "{r}");
    assert!(r["latency_ms"]["p50"].as_f64().unwrap() >= 500.0, "{r}");
    up.stop();
}

#[test]
fn every_request_fails_with_fail_rate_1() {
    let up = Upstream::start(&["--fail-rate", "1"]);
    let url = up.url("/");
    let (code, r) = bench(
        "fail",
        &[&url, "-c", "4", "-n", "200", "--max-error-rate", "0.1"],
    );
    assert_eq!(code, 1, "error rate above the maximum must fail the run");
    assert_eq!(u(&r["status"]["5xx"]), 200);
    assert_eq!(u(&r["status"]["2xx"]), 0);
    assert_eq!(r["error_rate"].as_f64(), Some(1.0));
    // The default maximum (1.0) never fails a run.
    let (code, _) = bench("fail-default", &[&url, "-c", "2", "-n", "10"]);
    assert_eq!(code, 0);
    let served = up.stop();
    assert_eq!((served.served, served.failed_503), (210, 210));
}

#[test]
fn resets_and_refusals_are_counted_never_dropped() {
    let up = Upstream::start(&["--reset-rate", "0.3", "--seed", "42"]);
    let (_, r) = bench("reset", &[&up.url("/"), "-c", "4", "-n", "1000"]);
    let served = up.stop();
    assert_eq!(u(&r["requests"]) + u(&r["errors"]), 1000);
    assert_eq!(u(&r["requests"]), served.served);
    assert_eq!(error_count(&r, "reset"), served.resets);
    assert!(served.resets > 200 && served.resets < 400, "{served:?}");

    // Nobody listens on port 1 of loopback.
    let url = "http://127.0.0.1:1/";
    let (code, r) = bench(
        "refused",
        &[url, "-c", "2", "-n", "10", "--max-error-rate", "0.5"],
    );
    assert_eq!(code, 1);
    assert_eq!(error_count(&r, "connect"), 10);
}

#[test]
fn upstream_echoes_tags_and_keeps_alive() {
    let up = Upstream::start(&["--tag", "blue", "--body-size", "7"]);
    let mut s = TcpStream::connect(("127.0.0.1", up.port)).unwrap();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        .unwrap();
    s.write_all(b"GET /other HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut all = String::new();
    s.read_to_string(&mut all).unwrap();
    let first_end = all.find("hello").expect("echoed body") + 5;
    let (first, second) = all.split_at(first_end);
    assert!(first.starts_with("HTTP/1.1 200 OK\r\n"), "{all}");
    assert!(first.contains("content-length: 5\r\n") && first.contains("x-upstream: blue\r\n"));
    assert!(
        second.starts_with("HTTP/1.1 200 OK\r\n") && second.ends_with("\r\n\r\nxxxxxxx"),
        "{second}"
    );
    assert!(second.contains("connection: close\r\n"));
    assert_eq!(up.stop().served, 2);
}

#[test]
fn plot_draws_the_percentile_curves_of_reports() {
    let up = Upstream::start(&["--delay-ms", "5"]);
    let url = up.url("/");
    let mut files = Vec::new();
    for (name, rate) in [("slow-rate", "100"), ("fast-rate", "200")] {
        let json = tmp(&format!("{name}.json"));
        let out = Command::new(BIN)
            .args([&url, "-q", "-c", "4", "--rate", rate, "-n", "200", "--json"])
            .arg(&json)
            .output()
            .expect("run meshbench");
        assert!(out.status.success(), "{out:?}");
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        // The distribution ends at the 100th percentile, at the max.
        let last = report["percentiles"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        assert_eq!(last[0].as_f64(), Some(100.0), "{last}");
        assert!(
            last[1].as_f64().unwrap() >= 5.0,
            "delay is a lower bound: {last}"
        );
        files.push(json);
    }
    let svg = tmp("plot.svg");
    let labelled = format!("200/s & more={}", files[1].display());
    let out = Command::new(BIN)
        .args(["plot", files[0].to_str().unwrap(), &labelled, "-o"])
        .arg(&svg)
        .output()
        .expect("run meshbench plot");
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"));
    assert_eq!(text.matches("<polyline").count(), 2, "{text}");
    assert!(text.contains("200/s &amp; more"), "label escaped");
    assert!(text.contains(&format!("meshbench-test-{}-slow-rate", std::process::id())));
    // A file that is not a report is refused by name.
    let bad = tmp("not-a-report.json");
    std::fs::write(&bad, "{}").unwrap();
    let out = Command::new(BIN)
        .args(["plot", bad.to_str().unwrap(), "-o"])
        .arg(&svg)
        .output()
        .expect("run meshbench plot");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not-a-report.json"));
    for f in files.iter().chain([&svg, &bad]) {
        let _ = std::fs::remove_file(f);
    }
    drop(up);
}

#[test]
fn paths_rotate_and_a_body_file_is_sent() {
    let up = Upstream::start(&[]);
    let body = tmp("body.bin");
    std::fs::write(&body, b"0123456789abcdef").unwrap();
    // /echo returns the body: 16 bytes per response on each of 100 requests.
    let (code, r) = bench(
        "body-file",
        &[
            &up.url("/echo"),
            "-c",
            "2",
            "-n",
            "100",
            "--method",
            "POST",
            "--body-file",
            body.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0);
    assert_eq!(u(&r["status"]["2xx"]), 100);
    // Two paths in turn: /echo (16 bytes back) and / (empty body).
    let (code, r2) = bench(
        "paths",
        &[
            &up.url("/"),
            "-c",
            "2",
            "-n",
            "100",
            "--method",
            "POST",
            "--body-file",
            body.to_str().unwrap(),
            "--path",
            "/echo",
            "--path",
            "/",
        ],
    );
    assert_eq!(code, 0);
    assert_eq!(u(&r2["status"]["2xx"]), 100);
    let per_response = |r: &serde_json::Value| {
        r["throughput_mib_s"].as_f64().unwrap() * r["duration_s"].as_f64().unwrap() * 1048576.0
            / 100.0
    };
    let (code, r3) = bench(
        "path-root",
        &[
            &up.url("/echo"),
            "-c",
            "2",
            "-n",
            "100",
            "--method",
            "POST",
            "--body-file",
            body.to_str().unwrap(),
            "--path",
            "/",
        ],
    );
    assert_eq!(code, 0);
    // Alternating paths: the average response lies halfway between all
    // /echo (16 bytes back) and all / (empty).
    let (all_echo, mixed, none) = (per_response(&r), per_response(&r2), per_response(&r3));
    assert!(all_echo > none + 15.0, "{all_echo} vs {none}");
    assert!(
        (mixed - (all_echo + none) / 2.0).abs() < 0.5,
        "{all_echo} {mixed} {none}"
    );
    let out = Command::new(BIN)
        .args([&up.url("/"), "-q", "-n", "1", "--path", "no-slash"])
        .output()
        .expect("run meshbench");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--path"));
    let _ = std::fs::remove_file(&body);
}

#[test]
fn tcp_exchanges_are_echoed_blocks_and_every_byte_is_counted() {
    let up = Upstream::start(&["--tcp-echo", "--threads", "2"]);
    let url = format!("tcp://127.0.0.1:{}", up.port);
    let (code, r) = bench(
        "tcp-n",
        &[
            &url,
            "-c",
            "8",
            "--threads",
            "2",
            "-n",
            "500",
            "--body-size",
            "10000",
        ],
    );
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["protocol"], "tcp");
    assert_eq!(u(&r["requests"]), 500);
    assert_eq!(u(&r["errors"]), 0);
    assert_eq!(u(&r["bytes"]), 500 * 10_000);
    // Default block (16 KiB), open loop.
    let (code, timed) = bench(
        "tcp-rate",
        &[&url, "-c", "4", "--rate", "200", "-d", "500ms"],
    );
    assert_eq!(code, 0, "{timed}");
    let served = up.stop();
    assert_eq!(
        served.echoed_bytes,
        500 * 10_000 + u(&timed["requests"]) * 16 * 1024,
        "{served:?}"
    );
    assert_eq!(served.served, 0);
}

#[test]
fn tcp_mode_against_something_that_does_not_echo_counts_errors() {
    // An HTTP server answers a raw block with a 400, not the block.
    let up = Upstream::start(&[]);
    let url = format!("tcp://127.0.0.1:{}", up.port);
    let (code, r) = bench(
        "tcp-bad",
        &[&url, "-c", "2", "-n", "20", "--max-error-rate", "0"],
    );
    assert_eq!(code, 1, "{r}");
    assert_eq!(u(&r["requests"]), 0);
    assert_eq!(u(&r["errors"]), 20);
    assert_eq!(error_count(&r, "bad_response"), 20, "{r}");
}

#[test]
fn tcp_targets_refuse_http_options() {
    for (args, want) in [
        (vec!["tcp://127.0.0.1:1", "--method", "POST"], "--method"),
        (vec!["tcp://127.0.0.1:1", "-H", "a: b"], "-H/--header"),
        (vec!["tcp://127.0.0.1:1", "--path", "/x"], "--path"),
        (vec!["tcp://127.0.0.1"], "needs a port"),
        (vec!["tls://127.0.0.1:1/x"], "has no path"),
        (vec!["tcp://127.0.0.1:1", "--cacert", "ca.pem"], "tls://"),
    ] {
        let out = Command::new(BIN).args(&args).output().expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

/// A closed-loop run against a target that refuses connections backs off
/// (1 ms doubling to 100 ms) instead of spinning: within half a second one
/// connection makes at most 1 + 8 + 3 attempts (1+2+…+64 ms is 127 ms,
/// then one per 100 ms), however fast the machine is; without the backoff
/// it made tens of thousands.
#[test]
fn a_refused_target_is_retried_with_backoff_not_in_a_spin() {
    let (_, r) = bench(
        "backoff",
        &[
            "http://127.0.0.1:1/",
            "-c",
            "1",
            "-d",
            "500ms",
            "--max-error-rate",
            "1",
        ],
    );
    let attempts = error_count(&r, "connect");
    assert!(attempts >= 2, "it kept trying: {r}");
    assert!(attempts <= 13, "{attempts} connects in 500 ms: {r}");
}
