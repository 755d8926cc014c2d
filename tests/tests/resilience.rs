//! Traffic management through the real binary: retries, outlier ejection,
//! active health checks, circuit breakers, rate limits, splits, consistent
//! hashing, header edits, redirects and fault injection — driven by
//! `meshbench` and `curl`, with `meshbench upstream` processes killed,
//! restarted and told to fail.
//!
//! No assertion depends on this machine's speed: waits are polls with
//! generous deadlines, and rates are compared with what the same run
//! measured (its own duration).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::bench::{BenchUpstream, LoadRun, meshbench};
use harness::gateway::{LISTENER, meshgate_bin, toml_str};
use harness::{Gateway, RawConn, TempDir, Upstream, curl, describe};

/// A config with a control socket, `shards` shards, one plaintext listener
/// and `rest` (routes and clusters).
fn config(dir: &Path, shards: usize, rest: &str) -> String {
    format!(
        r#"
[dataplane]
shards = {shards}

[control]
socket = {socket}

[[listeners]]
name = "{LISTENER}"
address = "127.0.0.1:0"
{rest}
"#,
        socket = toml_str(&dir.join("control.sock").display().to_string()),
    )
}

/// `meshctl --json ARGS` against the gateway in `dir`.
fn meshctl(dir: &Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new(meshgate_bin().with_file_name("meshctl"))
        .arg("--socket")
        .arg(dir.join("control.sock"))
        .arg("--json")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run meshctl");
    assert!(out.status.success(), "meshctl {args:?}: {}", describe(&out));
    serde_json::from_slice(&out.stdout).expect("meshctl JSON")
}

/// The `clusters` row of endpoint `addr`.
fn endpoint_row(dir: &Path, addr: SocketAddr) -> serde_json::Value {
    let rows = meshctl(dir, &["clusters"]);
    rows.as_array()
        .and_then(|r| {
            r.iter()
                .find(|row| row["endpoint"] == addr.to_string())
                .cloned()
        })
        .unwrap_or_else(|| panic!("no row for {addr} in {rows}"))
}

/// A total counter from `meshctl stats`.
fn stat(dir: &Path, name: &str) -> u64 {
    let stats = meshctl(dir, &["stats"]);
    stats["total"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name} in {stats}"))
}

/// Polls `f` every 100 ms until it holds or `limit` passes.
fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn n(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// One GET with curl: (status, x-upstream).
fn get(url: &str, extra: &[&str]) -> (u16, String) {
    let mut args = vec!["-o", "/dev/null", "-D", "-", url];
    args.extend_from_slice(extra);
    let out = curl(&args);
    let head = String::from_utf8_lossy(&out.stdout).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status: {}", describe(&out)));
    let tag = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("x-upstream")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_default();
    (status, tag)
}

#[test]
fn a_killed_upstream_costs_under_a_tenth_of_a_percent_and_comes_back() {
    let dir = TempDir::new();
    let mut ups: Vec<BenchUpstream> = (0..3)
        .map(|i| BenchUpstream::start(&["--tag", &format!("u{i}")]))
        .collect();
    let endpoints: Vec<String> = ups.iter().map(|u| format!("\"{}\"", u.addr())).collect();
    let rest = format!(
        r#"
[[routes]]
listener = "{LISTENER}"
cluster = "backend"
[routes.retry]
attempts = 2
on = ["connect-failure", "reset", "503"]
per_try_timeout_ms = 2000

[[clusters]]
name = "backend"
endpoints = [{}]
[clusters.health]
path = "/healthz"
interval_ms = 300
timeout_ms = 200
healthy = 1
unhealthy = 2
[clusters.outlier]
consecutive_failures = 3
base_ejection_ms = 1000
max_ejection_percent = 50
"#,
        endpoints.join(", ")
    );
    let gw = Gateway::start(&config(dir.path(), 2, &rest), dir.path());
    let url = gw.url("/");
    let run = LoadRun::start(&["-c", "8", "-d", "8s", &url]);
    // Killed while it carries its share of the load, restarted once the
    // gateway has met it dead (a retry went elsewhere).
    let carrying = eventually(Duration::from_secs(5), || ups[1].served_now() > 200);
    assert!(
        carrying,
        "the load never reached upstream 1: {}",
        gw.stderr()
    );
    ups[1].kill();
    let met_dead = eventually(Duration::from_secs(5), || stat(dir.path(), "retries") > 0);
    assert!(met_dead, "no retry after the kill: {}", gw.stderr());
    ups[1].restart();
    let report = run.report();
    let (ok, errors, s5xx) = (
        n(&report["status"]["2xx"]),
        n(&report["errors"]),
        n(&report["status"]["5xx"]),
    );
    let attempts = n(&report["requests"]) + errors;
    assert!(attempts > 1000, "too little load to judge: {report}");
    assert!(
        (errors + s5xx) * 1000 < attempts,
        "{errors} errors and {s5xx} 5xx of {attempts} (2xx {ok}): {report}\n{}",
        gw.stderr()
    );
    assert!(stat(dir.path(), "retries") > 0, "no retry was needed?");
    // Back in rotation: it serves again while traffic flows.
    let back = eventually(Duration::from_secs(15), || {
        for _ in 0..20 {
            get(&url, &[]);
        }
        ups[1].served_now() > 0
    });
    assert!(back, "restarted upstream got no traffic: {}", gw.stderr());
}

#[test]
fn an_upstream_failing_half_its_requests_is_ejected_and_retries_hide_it() {
    let dir = TempDir::new();
    let good: Vec<BenchUpstream> = (0..2)
        .map(|i| BenchUpstream::start(&["--tag", &format!("good{i}")]))
        .collect();
    let bad = BenchUpstream::start(&["--tag", "bad", "--fail-rate", "0.5", "--seed", "7"]);
    let rest = format!(
        r#"
[[routes]]
listener = "{LISTENER}"
cluster = "backend"
[routes.retry]
attempts = 2
on = ["503"]

[[clusters]]
name = "backend"
endpoints = ["{}", "{}", "{}"]
lb = "round_robin"
[clusters.outlier]
consecutive_failures = 2
base_ejection_ms = 30000
max_ejection_percent = 50
[clusters.retry_budget]
percent = 100
[clusters.limits]
max_retries = 100
"#,
        good[0].addr(),
        good[1].addr(),
        bad.addr()
    );
    let gw = Gateway::start(&config(dir.path(), 2, &rest), dir.path());
    let report = meshbench(&["-c", "4", "-n", "3000", &gw.url("/")]);
    assert_eq!(n(&report["status"]["2xx"]), 3000, "{report}");
    // Published about once a second.
    let ejected = eventually(Duration::from_secs(5), || {
        n(&endpoint_row(dir.path(), bad.addr())["times_ejected"]) > 0
    });
    assert!(ejected, "{}", meshctl(dir.path(), &["clusters"]));
    let row = endpoint_row(dir.path(), bad.addr());
    assert_eq!(row["state"], "ejected", "{row}");
    let good_row = endpoint_row(dir.path(), good[0].addr());
    assert!(
        good_row["p99_ms"].as_f64().is_some_and(|ms| ms > 0.0),
        "{good_row}"
    );
    assert!(n(&good_row["requests"]) > 500, "{good_row}");
    assert!(stat(dir.path(), "outlier_ejections") >= 1);
    assert!(stat(dir.path(), "retries") >= 1);
    assert_eq!(stat(dir.path(), "retry_overflows"), 0);
    // Ejected on both shards: it got a small share of the 3000.
    let bad_served = bad.stop();
    assert!(
        bad_served.served + bad_served.failed_503 < 300,
        "ejected endpoint still got {bad_served:?}"
    );
}

#[test]
fn a_rate_limit_admits_its_rate_under_three_times_the_load() {
    let dir = TempDir::new();
    let up = BenchUpstream::start(&[]);
    let rest = format!(
        r#"
[[routes]]
listener = "{LISTENER}"
cluster = "backend"
[routes.match]
path_prefix = "/tight"
[routes.rate_limit]
rps = 1
burst = 1

[[routes]]
listener = "{LISTENER}"
cluster = "backend"
[routes.rate_limit]
rps = 200
burst = 20

[[clusters]]
name = "backend"
endpoints = ["{}"]
"#,
        up.addr()
    );
    let gw = Gateway::start(&config(dir.path(), 2, &rest), dir.path());
    // 24 connections: each shard gets enough of them to see more than its
    // share of the offered 600/s.
    let report = meshbench(&["-c", "24", "--rate", "600", "-d", "5s", &gw.url("/")]);
    let admitted = n(&report["status"]["2xx"]) as f64;
    let limited = n(&report["status"]["4xx"]);
    let duration = report["duration_s"].as_f64().unwrap();
    let expected = 200.0 * duration + 20.0;
    assert!(
        (admitted - expected).abs() <= expected * 0.05,
        "admitted {admitted}, expected {expected:.0} ± 5% over {duration:.2} s: {report}"
    );
    assert!(limited > 1000, "{report}");
    assert_eq!(stat(dir.path(), "rate_limited"), limited);
    // The answer says when to come back: a tight limit, three requests on
    // one connection (one shard).
    let mut c = RawConn::connect(gw.addr(LISTENER));
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..3 {
        c.send(b"GET /tight HTTP/1.1\r\nHost: e2e\r\n\r\n").unwrap();
        let r = c.read_response().unwrap();
        if r.status == 429 {
            retry_after = r.header("retry-after").map(str::to_owned);
        }
        statuses.push(r.status);
    }
    assert_eq!(statuses, [200, 429, 429]);
    let after: u64 = retry_after.unwrap().parse().unwrap();
    assert!((1..=2).contains(&after), "retry-after {after}");
}

#[test]
fn a_circuit_breaker_answers_503_overloaded_without_queueing() {
    let dir = TempDir::new();
    let up = Upstream::start("slow");
    let rest = format!(
        r#"
[[routes]]
listener = "{LISTENER}"
cluster = "backend"

[[clusters]]
name = "backend"
endpoints = ["{}"]
[clusters.limits]
max_requests = 1
"#,
        up.addr()
    );
    let gw = Gateway::start(&config(dir.path(), 1, &rest), dir.path());
    // One request holds the only slot...
    let mut slow = RawConn::connect(gw.addr(LISTENER));
    slow.send(b"GET /sleep/3000 HTTP/1.1\r\nHost: e2e\r\n\r\n")
        .unwrap();
    assert!(eventually(Duration::from_secs(5), || up.heads() == 1));
    // ...so the next is refused at once, marked as overload.
    let out = curl(&["-s", "-D", "-", "-o", "/dev/null", &gw.url("/bytes/1")]);
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 503"), "{head}");
    assert!(head.contains("x-meshgate-overloaded: true"), "{head}");
    assert_eq!(
        up.heads(),
        1,
        "the refused request must not reach the upstream"
    );
    assert_eq!(slow.read_response().unwrap().status, 200);
    // The slot is free again.
    assert_eq!(get(&gw.url("/bytes/1"), &[]).0, 200);
    assert!(stat(dir.path(), "overloaded") >= 1);
}

#[test]
fn a_95_5_split_sends_five_percent_to_the_canary() {
    let dir = TempDir::new();
    let (stable, canary) = (Upstream::start("stable"), Upstream::start("canary"));
    let rest = format!(
        r#"
[[routes]]
listener = "{LISTENER}"
split = [{{ cluster = "stable", weight = 95 }}, {{ cluster = "canary", weight = 5 }}]

[[clusters]]
name = "stable"
endpoints = ["{}"]

[[clusters]]
name = "canary"
endpoints = ["{}"]
"#,
        stable.addr(),
        canary.addr()
    );
    let gw = Gateway::start(&config(dir.path(), 2, &rest), dir.path());
    let report = meshbench(&["-c", "4", "-n", "10000", &gw.url("/bytes/1")]);
    assert_eq!(n(&report["status"]["2xx"]), 10000, "{report}");
    let (s, c) = (stable.served(), canary.served());
    assert_eq!(s + c, 10000);
    let share = c as f64 / 10000.0;
    assert!(
        (0.03..=0.07).contains(&share),
        "canary share {share} (stable {s}, canary {c})"
    );
}

#[test]
fn retries_move_a_503_to_another_endpoint_and_a_slow_try_to_a_fast_one() {
    let dir = TempDir::new();
    let failing = BenchUpstream::start(&["--tag", "failing", "--fail-rate", "1.0"]);
    let slow = BenchUpstream::start(&["--tag", "slow", "--delay-ms", "3000"]);
    let fine = BenchUpstream::start(&["--tag", "fine"]);
    let rest = format!(
        r#"
[[routes]]
listener = "{LISTENER}"
cluster = "flaky"
[routes.match]
path_prefix = "/flaky"
[routes.retry]
attempts = 1
on = ["503"]

[[routes]]
listener = "{LISTENER}"
cluster = "sluggish"
[routes.match]
path_prefix = "/sluggish"
[routes.retry]
attempts = 1
on = ["timeout"]
per_try_timeout_ms = 300

[[routes]]
listener = "{LISTENER}"
cluster = "flaky"
[routes.match]
path_prefix = "/no-retry"

[[routes]]
listener = "{LISTENER}"
cluster = "flaky"
prefix_rewrite = "/echo"
[routes.match]
path_prefix = "/post"
[routes.retry]
attempts = 1
on = ["503"]

[[clusters]]
name = "flaky"
endpoints = ["{failing}", "{fine}"]
lb = "round_robin"

[[clusters]]
name = "sluggish"
endpoints = ["{slow}", "{fine}"]
lb = "round_robin"
"#,
        failing = failing.addr(),
        slow = slow.addr(),
        fine = fine.addr(),
    );
    let gw = Gateway::start(&config(dir.path(), 1, &rest), dir.path());
    for _ in 0..10 {
        assert_eq!(get(&gw.url("/flaky"), &[]), (200, "fine".into()));
    }
    for _ in 0..4 {
        assert_eq!(get(&gw.url("/sluggish"), &[]), (200, "fine".into()));
    }
    assert!(stat(dir.path(), "per_try_timeouts") >= 1);
    assert!(stat(dir.path(), "retries") >= 7);
    let retries_before_post = stat(dir.path(), "retries");
    // A body is buffered and sent again: the echo comes from `fine`, whole,
    // also when the client waits for `100 Continue` first.
    for expect in [&[][..], &["-H", "Expect: 100-continue"][..]] {
        for i in 0..4 {
            let body = format!("payload {i} {}", "x".repeat(1000 * i));
            let mut args = vec!["-s", "-D", "-", "--data-binary", body.as_str()];
            args.extend_from_slice(expect);
            let url = gw.url("/post");
            args.push(&url);
            let out = curl(&args);
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            let (head, echoed) = text.rsplit_once("\r\n\r\n").unwrap_or_default();
            assert!(
                head.contains(" 200 ") && head.to_ascii_lowercase().contains("x-upstream: fine"),
                "{text}"
            );
            assert_eq!(echoed, body);
        }
    }
    assert!(stat(dir.path(), "retries") > retries_before_post);
    // Without a retry policy the 503 goes to the client.
    let statuses: Vec<u16> = (0..4).map(|_| get(&gw.url("/no-retry"), &[]).0).collect();
    assert!(statuses.contains(&503), "{statuses:?}");
}

#[test]
fn health_checks_take_a_dead_endpoint_out_and_bring_it_back() {
    health_round_trip("http");
}

#[test]
fn tcp_health_checks_take_a_dead_endpoint_out_and_bring_it_back() {
    health_round_trip("tcp");
}

/// Kills one of two upstreams, sees it marked unhealthy and skipped, kills
/// the other (fail mode: 503, nothing to send to), restarts the first and
/// sees it healthy and used again.
fn health_round_trip(protocol: &str) {
    let dir = TempDir::new();
    let mut a = BenchUpstream::start(&["--tag", "a"]);
    let b = BenchUpstream::start(&["--tag", "b"]);
    let rest = format!(
        r#"
[[routes]]
listener = "{LISTENER}"
cluster = "backend"

[[clusters]]
name = "backend"
endpoints = ["{}", "{}"]
lb = "round_robin"
all_unhealthy = "fail"
[clusters.health]
protocol = "{protocol}"
path = "/healthz"
interval_ms = 200
timeout_ms = 100
unhealthy = 2
healthy = 1
"#,
        a.addr(),
        b.addr()
    );
    let gw = Gateway::start(&config(dir.path(), 2, &rest), dir.path());
    assert_eq!(endpoint_row(dir.path(), a.addr())["health"], "healthy");
    a.kill();
    let out = eventually(Duration::from_secs(10), || {
        endpoint_row(dir.path(), a.addr())["health"] == "unhealthy"
    });
    assert!(out, "{}", gw.stderr());
    // Every request now goes to b, with no failure.
    for _ in 0..10 {
        assert_eq!(get(&gw.url("/"), &[]), (200, "b".into()));
    }
    // Nobody healthy, `all_unhealthy = "fail"`: 503 at once.
    let mut b = b;
    b.kill();
    let none = eventually(Duration::from_secs(10), || {
        endpoint_row(dir.path(), b.addr())["health"] == "unhealthy"
    });
    assert!(none, "{}", gw.stderr());
    assert_eq!(get(&gw.url("/"), &[]).0, 503);
    b.restart();
    a.restart();
    let back = eventually(Duration::from_secs(10), || {
        endpoint_row(dir.path(), a.addr())["health"] == "healthy"
    });
    assert!(back, "{}", gw.stderr());
    let tags: Vec<String> = (0..6).map(|_| get(&gw.url("/"), &[]).1).collect();
    assert!(tags.iter().any(|t| t == "a"), "{tags:?}");
    assert!(gw.stderr().contains("is unhealthy"), "{}", gw.stderr());
}

#[test]
fn ring_hash_keeps_each_key_on_one_endpoint() {
    let dir = TempDir::new();
    let ups: Vec<Upstream> = (0..3).map(|i| Upstream::start(&format!("u{i}"))).collect();
    let endpoints: Vec<String> = ups.iter().map(|u| format!("\"{}\"", u.addr())).collect();
    let rest = format!(
        r#"
[[routes]]
listener = "{LISTENER}"
cluster = "backend"

[[clusters]]
name = "backend"
endpoints = [{}]
lb = "ring_hash"
hash_on = "header:x-user"
"#,
        endpoints.join(", ")
    );
    let gw = Gateway::start(&config(dir.path(), 2, &rest), dir.path());
    let mut used = std::collections::BTreeSet::new();
    for user in 0..20 {
        let header = format!("x-user: user-{user}");
        let first = get(&gw.url("/bytes/1"), &["-H", &header]).1;
        for _ in 0..4 {
            assert_eq!(get(&gw.url("/bytes/1"), &["-H", &header]).1, first);
        }
        used.insert(first);
    }
    assert!(used.len() >= 2, "20 keys all on {used:?}");
}

#[test]
fn route_edits_redirects_and_injected_faults() {
    let dir = TempDir::new();
    let up = Upstream::start("origin");
    let rest = format!(
        r#"
[[routes]]
listener = "{LISTENER}"
cluster = "backend"
prefix_rewrite = "/headers"
host_rewrite = "internal.example"
[routes.match]
path_prefix = "/edit"
[routes.request_headers]
add = {{ x-added = "1" }}
set = {{ user-agent = "meshgate-test" }}
remove = ["x-secret"]
[routes.response_headers]
set = {{ x-served-by = "gateway" }}
remove = ["x-upstream"]

[[routes]]
listener = "{LISTENER}"
[routes.match]
path_prefix = "/old"
[routes.redirect]
status = 308
path = "/new"

[[routes]]
listener = "{LISTENER}"
cluster = "backend"
[routes.match]
path_prefix = "/chaos"
[routes.fault]
abort_percent = 100
abort_status = 418

[[routes]]
listener = "{LISTENER}"
cluster = "backend"
[routes.fault]
delay_percent = 100
delay_ms = 50

[[clusters]]
name = "backend"
endpoints = ["{}"]
"#,
        up.addr()
    );
    let gw = Gateway::start(&config(dir.path(), 1, &rest), dir.path());
    let out = curl(&[
        "-s",
        "-D",
        "-",
        "-H",
        "x-secret: s3cret",
        "-H",
        "x-added: 0",
        &gw.url("/edit?q=1"),
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{text}");
    assert!(head.contains("x-served-by: gateway"), "{head}");
    assert!(!head.contains("x-upstream"), "{head}");
    // What the upstream received.
    let body_lower = body.to_ascii_lowercase();
    assert!(body.starts_with("GET /headers?q=1 HTTP/1.1"), "{body}");
    assert!(body_lower.contains("host: internal.example\r\n"), "{body}");
    assert!(
        body_lower.contains("x-added: 0\r\n") && body_lower.contains("x-added: 1\r\n"),
        "{body}"
    );
    assert!(
        body_lower.contains("user-agent: meshgate-test\r\n"),
        "{body}"
    );
    assert!(!body_lower.contains("curl/"), "{body}");
    assert!(!body_lower.contains("x-secret"), "{body}");

    let out = curl(&["-s", "-D", "-", "-o", "/dev/null", &gw.url("/old/page?x=2")]);
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 308"), "{head}");
    let location = format!("location: http://{}/new?x=2", gw.addr(LISTENER));
    assert!(head.contains(&location), "{head}");

    let (status, _) = get(&gw.url("/chaos"), &[]);
    assert_eq!(status, 418);
    assert_eq!(
        up.heads(),
        1,
        "an aborted request never reaches the upstream"
    );
    assert_eq!(get(&gw.url("/bytes/3"), &[]).0, 200);
    assert!(stat(dir.path(), "faults_injected") >= 2);
}

#[test]
fn each_timeout_gives_its_status_and_counter() {
    let dir = TempDir::new();
    let up = Upstream::start("slow");
    let rest = format!(
        r#"
header_timeout_ms = 300
idle_timeout_ms = 500

[[routes]]
listener = "{LISTENER}"
cluster = "backend"
timeout_ms = 200

[[clusters]]
name = "backend"
endpoints = ["{}"]
"#,
        up.addr()
    );
    let gw = Gateway::start(&config(dir.path(), 1, &rest), dir.path());
    // The whole request timeout: 504.
    assert_eq!(get(&gw.url("/sleep/2000"), &[]).0, 504);
    assert_eq!(stat(dir.path(), "request_timeouts"), 1);
    // A head that never ends: 408.
    let mut c = RawConn::connect(gw.addr(LISTENER));
    c.send(b"GET / HTTP/1.1\r\nHost: e2e\r\n").unwrap();
    assert_eq!(c.read_response().unwrap().status, 408);
    assert_eq!(stat(dir.path(), "header_timeouts"), 1);
    // A keep-alive connection left idle: closed quietly, counted.
    let mut idle = RawConn::connect(gw.addr(LISTENER));
    idle.send(b"GET /bytes/1 HTTP/1.1\r\nHost: e2e\r\n\r\n")
        .unwrap();
    assert_eq!(idle.read_response().unwrap().status, 200);
    let closed = idle.read_to_close(Duration::from_secs(10));
    assert!(closed.closed && closed.bytes.is_empty(), "{closed:?}");
    assert_eq!(stat(dir.path(), "idle_timeouts"), 1);
    // A connect that fails: 503 and a connect failure, no timeout counted.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let text = std::fs::read_to_string(gw.config_path())
        .unwrap()
        .replace(&up.addr().to_string(), &dead_addr.to_string());
    let path = dir.path().join("dead.toml");
    std::fs::write(&path, text).unwrap();
    meshctl(dir.path(), &["config", "apply", path.to_str().unwrap()]);
    assert_eq!(get(&gw.url("/"), &[]).0, 503);
    assert_eq!(stat(dir.path(), "upstream_connect_failures"), 1);
    assert_eq!(stat(dir.path(), "connect_timeouts"), 0);
}

#[test]
fn keyed_rate_limits_give_each_caller_its_own_budget() {
    let dir = TempDir::new();
    let pki = harness::Pki::new(dir.path());
    let up = Upstream::start("origin");
    let path = |p: &Path| toml_str(&p.display().to_string());
    let rest = format!(
        r#"
[listeners.tls]
cert = {cert}
key = {key}
client_ca = {ca}

[[routes]]
listener = "{LISTENER}"
cluster = "backend"
[routes.match]
path_prefix = "/bytes/2"
[routes.rate_limit]
rps = 1
burst = 1
key = "header:x-tenant"

[[routes]]
listener = "{LISTENER}"
cluster = "backend"
[routes.rate_limit]
rps = 1
burst = 1
key = "spiffe_id"

[[clusters]]
name = "backend"
endpoints = ["{up}"]
"#,
        cert = path(&pki.server_cert),
        key = path(&pki.server_key),
        ca = path(&pki.ca),
        up = up.addr(),
    );
    let gw = Gateway::start(&config(dir.path(), 1, &rest), dir.path());
    let url = |p: &str| format!("https://localhost:{}{p}", gw.addr(LISTENER).port());
    let resolve = format!("localhost:{}:127.0.0.1", gw.addr(LISTENER).port());
    let status = |cert: &Path, key: &Path, p: &str, extra: &[&str]| {
        let mut args: Vec<String> = pki.curl_args_with(cert, key);
        args.extend([
            "--resolve".into(),
            resolve.clone(),
            "-o".into(),
            "/dev/null".into(),
        ]);
        args.extend(["-w".into(), "%{http_code}".into(), url(p)]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let out = curl(&args);
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let (c1, k1) = (&pki.client_cert, &pki.client_key);
    let (c2, k2) = (&pki.second_client_cert, &pki.second_client_key);
    // Per SPIFFE ID: the first workload spends its budget, the second
    // still has its own.
    assert_eq!(status(c1, k1, "/bytes/1", &[]), "200");
    assert_eq!(status(c1, k1, "/bytes/1", &[]), "429");
    assert_eq!(status(c2, k2, "/bytes/1", &[]), "200");
    assert_eq!(status(c2, k2, "/bytes/1", &[]), "429");
    // Per header value, whoever sends it.
    assert_eq!(status(c1, k1, "/bytes/2", &["-H", "x-tenant: a"]), "200");
    assert_eq!(status(c2, k2, "/bytes/2", &["-H", "x-tenant: a"]), "429");
    assert_eq!(status(c1, k1, "/bytes/2", &["-H", "x-tenant: b"]), "200");
}
