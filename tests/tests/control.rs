//! The control socket and `meshctl` against the real daemon: status, live
//! config apply (and refusal of a bad one), drain, permissions, and a swap
//! storm under load with zero failed requests.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::gateway::{LISTENER, meshgate_bin, toml_str};
use harness::{Gateway, RawConn, TempDir, Upstream};

/// A plaintext listener routing everything to `cluster`, with clusters `a`
/// and `b`, and a control socket in `dir`.
fn config(dir: &Path, cluster: &str, a: SocketAddr, b: SocketAddr) -> String {
    format!(
        r#"
[control]
socket = {socket}
drain_timeout_ms = 5000

[[listeners]]
name = "{LISTENER}"
address = "127.0.0.1:0"

[[routes]]
name = "all"
listener = "{LISTENER}"
cluster = "{cluster}"

[[clusters]]
name = "a"
endpoints = ["{a}"]

[[clusters]]
name = "b"
endpoints = ["{b}"]
"#,
        socket = toml_str(&dir.join("control.sock").display().to_string()),
    )
}

fn meshctl(socket: &Path, args: &[&str]) -> Output {
    let bin = meshgate_bin().with_file_name("meshctl");
    Command::new(bin)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run meshctl")
}

/// One JSON request line, one JSON response line.
struct Control(BufReader<UnixStream>);

impl Control {
    fn connect(path: &Path) -> Control {
        Control(BufReader::new(
            UnixStream::connect(path).expect("connect control socket"),
        ))
    }

    fn call(&mut self, request: &serde_json::Value) -> serde_json::Value {
        let mut line = serde_json::to_vec(request).unwrap();
        line.push(b'\n');
        self.0.get_mut().write_all(&line).expect("send");
        let mut reply = String::new();
        self.0.read_line(&mut reply).expect("reply");
        serde_json::from_str(&reply).unwrap_or_else(|e| panic!("bad reply {reply:?}: {e}"))
    }
}

fn socket_of(dir: &TempDir) -> PathBuf {
    dir.path().join("control.sock")
}

#[test]
fn meshctl_status_routes_and_socket_mode() {
    let dir = TempDir::new();
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let gw = Gateway::start(&config(dir.path(), "a", a.addr(), b.addr()), dir.path());
    let socket = socket_of(&dir);
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "control socket mode");
    let out = meshctl(&socket, &["--json", "status"]);
    assert!(out.status.success(), "{out:?}");
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["generation"], 1);
    assert!(status["shard_count"].as_u64().unwrap() >= 1);
    let out = meshctl(&socket, &["routes"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("all") && text.contains(" a "), "{text}");
    // Counters and latency percentiles (published by shards about once a second).
    let mut c = RawConn::connect(gw.addr(LISTENER));
    for _ in 0..20 {
        c.send(b"GET /bytes/3 HTTP/1.1\r\nHost: e2e\r\n\r\n")
            .unwrap();
        assert_eq!(c.read_response().unwrap().status, 200);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let stats = loop {
        let out = meshctl(&socket, &["--json", "stats"]);
        let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if stats["latency_us"]["count"].as_u64() >= Some(20) || Instant::now() > deadline {
            break stats;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(stats["total"]["responses_2xx"], 20, "{stats}");
    assert_eq!(stats["latency_us"]["count"], 20, "{stats}");
    assert_eq!(stats["routes"][0]["route"], "all", "{stats}");
    assert_eq!(stats["routes"][0]["2xx"], 20, "{stats}");
    assert_eq!(stats["clusters"][0]["cluster"], "a", "{stats}");
    assert_eq!(stats["listeners"][0]["requests"], 20, "{stats}");
    assert!(
        stats["latency_us"]["p99_us"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    drop(gw);
    // No daemon: a clear message and exit 2.
    let out = meshctl(&socket, &["status"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not running"),
        "{out:?}"
    );
}

#[test]
fn config_apply_switches_routing_and_a_bad_config_changes_nothing() {
    let dir = TempDir::new();
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let gw = Gateway::start(&config(dir.path(), "a", a.addr(), b.addr()), dir.path());
    let socket = socket_of(&dir);
    let tag = || {
        let mut c = RawConn::connect(gw.addr(LISTENER));
        c.send(b"GET /bytes/3 HTTP/1.1\r\nHost: e2e\r\n\r\n")
            .unwrap();
        c.read_response()
            .unwrap()
            .header("x-upstream")
            .unwrap_or("")
            .to_owned()
    };
    assert_eq!(tag(), "a");
    let new = dir.path().join("to-b.toml");
    std::fs::write(&new, config(dir.path(), "b", a.addr(), b.addr())).unwrap();
    let out = meshctl(&socket, &["config", "apply", new.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("generation: 2"),
        "{out:?}"
    );
    assert_eq!(tag(), "b");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, config(dir.path(), "zz", a.addr(), b.addr())).unwrap();
    let out = meshctl(&socket, &["config", "apply", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("routes[0].cluster") && err.contains("zz"),
        "{err}"
    );
    assert_eq!(tag(), "b", "a refused config changed routing");
    let out = meshctl(&socket, &["--json", "status"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["generation"], 2);
}

#[test]
fn bad_control_requests_get_errors_and_the_gateway_keeps_serving() {
    let dir = TempDir::new();
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let gw = Gateway::start(&config(dir.path(), "a", a.addr(), b.addr()), dir.path());
    let mut c = Control::connect(&socket_of(&dir));
    let r = c.call(&serde_json::json!({"id": 1, "command": "frobnicate"}));
    assert_eq!(r["error"]["kind"], "unknown_command", "{r}");
    let r =
        c.call(&serde_json::json!({"id": 2, "command": "drain", "args": {"timeout_s": "soon"}}));
    assert_eq!(r["error"]["kind"], "invalid_request", "{r}");
    let r = c.call(&serde_json::json!({"id": 3, "version": 2, "command": "status"}));
    assert_eq!(r["error"]["kind"], "version_mismatch", "{r}");
    let r = c.call(&serde_json::json!({"id": 4, "command": "config_apply", "args": {"toml": "[[listeners]]\nname = 1"}}));
    assert_eq!(r["error"]["kind"], "invalid", "{r}");
    let r = c.call(&serde_json::json!({"id": 5, "command": "status"}));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["id"], 5);
    let mut conn = RawConn::connect(gw.addr(LISTENER));
    conn.send(b"GET /bytes/3 HTTP/1.1\r\nHost: e2e\r\n\r\n")
        .unwrap();
    let resp = conn.read_response().unwrap();
    assert_eq!(resp.status, 200, "{resp:?}\n{}", gw.stderr());
}

#[test]
fn meshctl_drain_finishes_the_daemon() {
    let dir = TempDir::new();
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let mut gw = Gateway::start(&config(dir.path(), "a", a.addr(), b.addr()), dir.path());
    let out = meshctl(&socket_of(&dir), &["drain", "--timeout", "5"]);
    assert!(out.status.success(), "{out:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while gw.is_running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !gw.is_running(),
        "daemon still running after drain\n{}",
        gw.stderr()
    );
    assert!(!socket_of(&dir).exists(), "control socket left behind");
}

/// When an apply was acknowledged, when it was sent, and the cluster it set.
type Apply = (Duration, Duration, &'static str);

/// 50 keep-alive clients send requests continuously while 200 applies
/// alternate the route between clusters `a` and `b`. No request may fail,
/// and each response must come from the cluster in force when the request
/// was sent (the last apply acknowledged before it) or from one applied
/// while it was in flight.
#[test]
fn two_hundred_swaps_under_load_lose_no_request() {
    let dir = TempDir::new();
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let gw = Gateway::start(&config(dir.path(), "a", a.addr(), b.addr()), dir.path());
    let addr = gw.addr(LISTENER);
    let start = Instant::now();
    // (acknowledged at, started at, cluster) per apply; index 0 = initial.
    let applies: Mutex<Vec<Apply>> = Mutex::new(vec![(Duration::ZERO, Duration::ZERO, "a")]);
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..50)
        .map(|_| {
            let (stop, failures) = (stop.clone(), failures.clone());
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                let mut c = RawConn::connect(addr);
                while !stop.load(Ordering::Relaxed) {
                    let sent = start.elapsed();
                    let ok = c
                        .send(b"GET /bytes/3 HTTP/1.1\r\nHost: e2e\r\n\r\n")
                        .is_ok();
                    match c.read_response() {
                        Ok(r) if ok && r.status == 200 => {
                            let tag = r.header("x-upstream").unwrap_or("?").to_owned();
                            seen.push((sent, start.elapsed(), tag));
                        }
                        other => {
                            failures.fetch_add(1, Ordering::Relaxed);
                            eprintln!("failed request: {other:?}");
                            c = RawConn::connect(addr);
                        }
                    }
                }
                seen
            })
        })
        .collect();
    let mut control = Control::connect(&socket_of(&dir));
    for i in 0..200 {
        let cluster = if i % 2 == 0 { "b" } else { "a" };
        let text = config(dir.path(), cluster, a.addr(), b.addr());
        let started = start.elapsed();
        let r = control
            .call(&serde_json::json!({"id": i, "command": "config_apply", "args": {"toml": text}}));
        assert_eq!(r["ok"], true, "apply {i}: {r}");
        applies
            .lock()
            .unwrap()
            .push((start.elapsed(), started, cluster));
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    let responses: Vec<_> = clients
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "requests failed during the swaps"
    );
    assert!(
        responses.len() > 1000,
        "too little load: {}",
        responses.len()
    );
    let applies = applies.lock().unwrap();
    let mut violations = 0;
    for (sent, received, tag) in &responses {
        // The cluster in force when the request was sent...
        let current = applies
            .iter()
            .rev()
            .find(|(acked, _, _)| acked <= sent)
            .map(|a| a.2)
            .unwrap();
        // ...or one whose apply began before the response arrived.
        let later = applies
            .iter()
            .any(|(acked, started, c)| started <= received && acked >= sent && c == tag);
        if tag != current && !later {
            violations += 1;
        }
    }
    assert_eq!(
        violations, 0,
        "responses from a cluster that was not current"
    );
    let tags: std::collections::HashSet<_> = responses.iter().map(|r| r.2.as_str()).collect();
    assert!(tags.contains("a") && tags.contains("b"), "{tags:?}");
}

#[test]
fn endpoint_drain_and_enable_change_rotation_until_the_next_apply() {
    let dir = TempDir::new();
    let (a1, a2) = (Upstream::start("a1"), Upstream::start("a2"));
    // Round robin: 8 requests on one connection (one shard) see both
    // endpoints for certain (least request's random draws would miss one
    // now and then).
    let text = config(dir.path(), "a", a1.addr(), a2.addr()).replace(
        &format!("endpoints = [\"{}\"]", a1.addr()),
        &format!(
            "endpoints = [\"{}\", \"{}\"]\nlb = \"round_robin\"",
            a1.addr(),
            a2.addr()
        ),
    );
    let gw = Gateway::start(&text, dir.path());
    let socket = socket_of(&dir);
    let tags = |n: usize| {
        let mut c = RawConn::connect(gw.addr(LISTENER));
        (0..n)
            .map(|_| {
                c.send(b"GET /bytes/3 HTTP/1.1\r\nHost: e2e\r\n\r\n")
                    .unwrap();
                let r = c.read_response().unwrap();
                format!(
                    "{} {}",
                    r.status,
                    r.header("x-upstream")
                        .or(r.header("x-meshgate-error"))
                        .unwrap_or("?")
                )
            })
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(
        tags(8),
        ["200 a1", "200 a2"].map(String::from).into(),
        "both endpoints in rotation"
    );
    let a1s = a1.addr().to_string();
    let out = meshctl(&socket, &["endpoint", "drain", "a", &a1s]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(tags(8), ["200 a2"].map(String::from).into(), "a1 drained");
    let out = meshctl(&socket, &["clusters"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("drained"),
        "{out:?}"
    );
    let out = meshctl(&socket, &["endpoint", "drain", "a", &a2.addr().to_string()]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        tags(2),
        ["503 no_endpoint"].map(String::from).into(),
        "nothing in rotation"
    );
    let out = meshctl(&socket, &["endpoint", "enable", "a", &a1s]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(tags(4), ["200 a1"].map(String::from).into());
    let out = meshctl(&socket, &["endpoint", "drain", "nope", &a1s]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no cluster \"nope\""),
        "{out:?}"
    );
    let out = meshctl(&socket, &["endpoint", "drain", "a", "127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    // An apply starts from the file: every endpoint is back.
    let file = dir.path().join("same.toml");
    std::fs::write(&file, &text).unwrap();
    assert!(
        meshctl(&socket, &["config", "apply", file.to_str().unwrap()])
            .status
            .success()
    );
    assert_eq!(tags(8), ["200 a1", "200 a2"].map(String::from).into());
}

/// Runs `threads` keep-alive clients against `addr` until `stop`; returns
/// the count of responses per `status tag`.
fn load(
    addr: SocketAddr,
    threads: usize,
    stop: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<std::collections::BTreeMap<String, usize>>> {
    (0..threads)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut seen = std::collections::BTreeMap::new();
                let mut c = RawConn::connect(addr);
                while !stop.load(Ordering::Relaxed) {
                    c.send(b"GET /bytes/3 HTTP/1.1\r\nHost: e2e\r\n\r\n")
                        .unwrap();
                    let r = c.read_response().unwrap();
                    let tag = r
                        .header("x-upstream")
                        .or(r.header("x-meshgate-error"))
                        .unwrap_or("?");
                    *seen.entry(format!("{} {tag}", r.status)).or_insert(0) += 1;
                }
                seen
            })
        })
        .collect()
}

fn two_shard_config(dir: &Path, cluster: &str, a: SocketAddr, b: SocketAddr) -> String {
    format!("[dataplane]\nshards = 2\n{}", config(dir, cluster, a, b))
}

#[test]
fn canary_apply_rolls_back_a_failing_config_that_other_shards_never_see() {
    let dir = TempDir::new();
    let a = Upstream::start("a");
    // Cluster `b` points at a port nobody listens on: every request 503s.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let gw = Gateway::start(
        &two_shard_config(dir.path(), "a", a.addr(), dead),
        dir.path(),
    );
    let socket = socket_of(&dir);
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(gw.addr(LISTENER), 16, stop.clone());
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, two_shard_config(dir.path(), "b", a.addr(), dead)).unwrap();
    let apply = {
        let socket = socket.clone();
        std::thread::spawn(move || {
            meshctl(
                &socket,
                &[
                    "--json",
                    "config",
                    "apply",
                    bad.to_str().unwrap(),
                    "--canary",
                    "0",
                    "--watch",
                    "2s",
                ],
            )
        })
    };
    // While it is watched, only shard 0 runs the new generation.
    let status_now = || -> serde_json::Value {
        serde_json::from_slice(&meshctl(&socket, &["--json", "status"]).stdout).unwrap()
    };
    harness::wait_until(Duration::from_secs(2), "shard 0 runs the canary", || {
        status_now()["shards"][0]["generation"] == 2
    });
    let status = status_now();
    assert_eq!(status["shards"][1]["generation"], 1, "{status}");
    let out = apply.join().unwrap();
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["outcome"], "rolled_back", "{report}");
    assert!(
        report["canary"]["errors_5xx"].as_u64().unwrap() > 0,
        "{report}"
    );
    assert_eq!(report["others"]["errors_5xx"], 0, "{report}");
    // Back on the old config everywhere.
    harness::wait_until(
        Duration::from_secs(5),
        "shard 0 back on generation 1",
        || status_now()["shards"][0]["generation"] == 1,
    );
    let status = status_now();
    assert_eq!(status["generation"], 1, "{status}");
    stop.store(true, Ordering::Relaxed);
    let mut total = std::collections::BTreeMap::new();
    for t in clients {
        for (k, v) in t.join().unwrap() {
            *total.entry(k).or_insert(0) += v;
        }
    }
    assert!(
        total
            .keys()
            .all(|k| k == "200 a" || k == "503 connect_failed"),
        "{total:?}"
    );
}

#[test]
fn canary_apply_promotes_a_good_config_to_every_shard() {
    let dir = TempDir::new();
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let gw = Gateway::start(
        &two_shard_config(dir.path(), "a", a.addr(), b.addr()),
        dir.path(),
    );
    let socket = socket_of(&dir);
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(gw.addr(LISTENER), 16, stop.clone());
    let good = dir.path().join("good.toml");
    std::fs::write(&good, two_shard_config(dir.path(), "b", a.addr(), b.addr())).unwrap();
    let out = meshctl(
        &socket,
        &[
            "--json",
            "config",
            "apply",
            good.to_str().unwrap(),
            "--canary",
            "1",
            "--watch",
            "2",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["outcome"], "promoted", "{report}");
    assert_eq!(report["generation"], 2, "{report}");
    let before = b.served();
    harness::wait_until(
        Duration::from_secs(5),
        "cluster b serves after the promotion",
        || b.served() > before,
    );
    stop.store(true, Ordering::Relaxed);
    for t in clients {
        let seen = t.join().unwrap();
        assert!(
            seen.keys().all(|k| k == "200 a" || k == "200 b"),
            "{seen:?}"
        );
    }
    let out = meshctl(&socket, &["--json", "status"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["shards"][0]["generation"], 2, "{status}");
    assert_eq!(status["shards"][1]["generation"], 2, "{status}");
}

#[test]
fn config_apply_adds_moves_and_removes_listeners_live() {
    let dir = TempDir::new();
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let base = config(dir.path(), "a", a.addr(), b.addr());
    let gw = Gateway::start(&base, dir.path());
    let socket = socket_of(&dir);
    let main_addr = gw.addr(LISTENER);
    let get = |addr: SocketAddr| {
        let mut c = RawConn::connect(addr);
        c.send(b"GET /bytes/3 HTTP/1.1\r\nHost: e2e\r\n\r\n")
            .unwrap();
        c.read_response().unwrap().status
    };
    // Add a second listener (port 0: the reply says which port it got).
    let with_second = format!(
        "{base}\n[[listeners]]\nname = \"second\"\naddress = \"127.0.0.1:0\"\n\n[[routes]]\nname = \"second-all\"\nlistener = \"second\"\ncluster = \"b\"\n"
    );
    let file = dir.path().join("two.toml");
    std::fs::write(&file, &with_second).unwrap();
    let out = meshctl(
        &socket,
        &["--json", "config", "apply", file.to_str().unwrap()],
    );
    assert!(out.status.success(), "{out:?}");
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        reply["listeners"]["added"],
        serde_json::json!(["second"]),
        "{reply}"
    );
    let second: SocketAddr = reply["bound"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "second")
        .and_then(|l| l["address"].as_str())
        .unwrap()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    while std::net::TcpStream::connect(second).is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(get(second), 200);
    assert_eq!(get(main_addr), 200);
    // A busy address refuses the apply and changes nothing.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let moved = with_second.replace(
        "address = \"127.0.0.1:0\"\n\n[[routes]]\nname = \"second-all\"",
        &format!(
            "address = \"{}\"\n\n[[routes]]\nname = \"second-all\"",
            busy.local_addr().unwrap()
        ),
    );
    std::fs::write(&file, &moved).unwrap();
    let out = meshctl(&socket, &["config", "apply", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("listener \"second\""),
        "{out:?}"
    );
    assert_eq!(get(second), 200);
    // Remove the first listener: it stops accepting, the second goes on.
    let only_second = with_second
        .replacen(
            &format!("[[listeners]]\nname = \"{LISTENER}\"\naddress = \"127.0.0.1:0\"\n"),
            "",
            1,
        )
        .replacen(
            &format!("[[routes]]\nname = \"all\"\nlistener = \"{LISTENER}\"\ncluster = \"a\"\n"),
            "",
            1,
        );
    // A keep-alive connection idle on the listener about to go, and one on
    // the listener that stays.
    let mut idle_main = RawConn::connect(main_addr);
    idle_main
        .send(b"GET /bytes/3 HTTP/1.1\r\nHost: e2e\r\n\r\n")
        .unwrap();
    assert_eq!(idle_main.read_response().unwrap().status, 200);
    let mut idle_second = RawConn::connect(second);
    idle_second
        .send(b"GET /bytes/3 HTTP/1.1\r\nHost: e2e\r\n\r\n")
        .unwrap();
    assert_eq!(idle_second.read_response().unwrap().status, 200);
    std::fs::write(&file, &only_second).unwrap();
    let out = meshctl(
        &socket,
        &["--json", "config", "apply", file.to_str().unwrap()],
    );
    assert!(out.status.success(), "{out:?}\n{only_second}");
    // The idle connection on the removed listener is closed without waiting
    // for its idle timeout (60 s) or a next request.
    let closed = idle_main.read_to_close(Duration::from_secs(5));
    assert!(closed.closed && closed.bytes.is_empty(), "{closed:?}");
    // The other listener's idle connection is untouched.
    idle_second
        .send(b"GET /bytes/3 HTTP/1.1\r\nHost: e2e\r\n\r\n")
        .unwrap();
    assert_eq!(idle_second.read_response().unwrap().status, 200);
    let deadline = Instant::now() + Duration::from_secs(3);
    while std::net::TcpStream::connect(main_addr).is_ok() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        std::net::TcpStream::connect(main_addr).is_err(),
        "removed listener still accepts"
    );
    assert_eq!(get(second), 200);
}

#[test]
fn stats_count_tls_failures_by_reason() {
    let dir = TempDir::new();
    let pki = harness::Pki::new(dir.path());
    let a = Upstream::start("a");
    let text = format!(
        r#"
[control]
socket = {socket}

[[listeners]]
name = "{LISTENER}"
address = "127.0.0.1:0"
[listeners.tls]
cert = {cert}
key = {key}
client_ca = {ca}

[[routes]]
listener = "{LISTENER}"
cluster = "a"

[[clusters]]
name = "a"
endpoints = ["{a}"]
"#,
        socket = toml_str(&socket_of(&dir).display().to_string()),
        cert = toml_str(&pki.server_cert.display().to_string()),
        key = toml_str(&pki.server_key.display().to_string()),
        ca = toml_str(&pki.ca.display().to_string()),
        a = a.addr(),
    );
    let gw = Gateway::start(&text, dir.path());
    let url = format!("https://localhost:{}/bytes/3", gw.addr(LISTENER).port());
    let mut args = pki.curl_no_cert_args();
    args.push(url.clone());
    assert!(
        !harness::curl(&args).status.success(),
        "no client certificate must be refused"
    );
    let mut args = pki.curl_args_with(&pki.client_cert, &pki.client_key);
    args.extend(["--fail".to_owned(), url]);
    assert!(harness::curl(&args).status.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = meshctl(&socket_of(&dir), &["--json", "stats"]);
        let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let failures = &stats["tls_failures"];
        if failures.as_object().is_some_and(|m| !m.is_empty()) {
            assert!(failures.get("no_client_cert").is_some(), "{stats}");
            assert_eq!(stats["total"]["tls_handshakes"], 1, "{stats}");
            break;
        }
        assert!(Instant::now() < deadline, "no TLS failure counted: {stats}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn config_can_be_given_inline_as_json() {
    let dir = TempDir::new();
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let gw = Gateway::start(&config(dir.path(), "a", a.addr(), b.addr()), dir.path());
    let mut control = Control::connect(&socket_of(&dir));
    // The running config, routed to b instead, as a JSON object.
    let config = serde_json::json!({
        "control": { "socket": socket_of(&dir).display().to_string() },
        "listeners": [{ "name": LISTENER, "address": gw.addr(LISTENER).to_string() }],
        "routes": [{ "name": "all", "listener": LISTENER, "cluster": "b" }],
        "clusters": [
            { "name": "a", "endpoints": [a.addr().to_string()] },
            { "name": "b", "endpoints": [b.addr().to_string()] }
        ]
    });
    let reply = control.call(&serde_json::json!({
        "id": 1, "command": "config_apply", "args": { "config": config }
    }));
    assert_eq!(reply["ok"], true, "{reply}");
    let mut c = RawConn::connect(gw.addr(LISTENER));
    c.send(b"GET /bytes/3 HTTP/1.1\r\nHost: e2e\r\n\r\n")
        .unwrap();
    assert_eq!(c.read_response().unwrap().header("x-upstream"), Some("b"));
    // Validation names the field, as for a file.
    let mut bad = config.clone();
    bad["clusters"][1]["endpoints"] = serde_json::json!([]);
    let reply = control.call(&serde_json::json!({
        "id": 2, "command": "config_check", "args": { "config": bad }
    }));
    assert_eq!(reply["ok"], false, "{reply}");
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("clusters[1].endpoints: at least one endpoint is required"),
        "{reply}"
    );
    // JSON null has no TOML form; text and object together are ambiguous.
    let mut with_null = config.clone();
    with_null["routes"][0]["cluster"] = serde_json::Value::Null;
    let reply = control.call(&serde_json::json!({
        "id": 3, "command": "config_check", "args": { "config": with_null }
    }));
    assert_eq!(reply["error"]["kind"], "invalid", "{reply}");
    let reply = control.call(&serde_json::json!({
        "id": 4, "command": "config_check", "args": { "config": config, "toml": "" }
    }));
    assert_eq!(reply["error"]["kind"], "invalid_request", "{reply}");
}

/// `meshctl status` as user `uid` (group `gid`). The binary is copied next
/// to the socket first: the build tree may sit under a directory only its
/// owner can enter (a `mktemp -d` clone), which the other user could not
/// execute from.
fn meshctl_as(socket: &Path, uid: u32, gid: u32) -> Output {
    use std::os::unix::process::CommandExt;
    let copy = socket.with_file_name("meshctl");
    if !copy.exists() {
        std::fs::copy(meshgate_bin().with_file_name("meshctl"), &copy).expect("copy meshctl");
    }
    Command::new(&copy)
        .arg("--socket")
        .arg(socket)
        .arg("status")
        .uid(uid)
        .gid(gid)
        .stdin(Stdio::null())
        .output()
        .expect("run meshctl as another user")
}

/// Root (CI) can run meshctl as other users; elsewhere this is skipped,
/// saying so.
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

#[test]
fn a_second_user_reaches_the_socket_through_its_group_and_allowed_uids() {
    if !running_as_root() {
        eprintln!("SKIPPED: running meshctl as a second uid needs root");
        return;
    }
    const NOBODY: u32 = 65534;
    const OTHER: u32 = 65533;
    let dir = TempDir::new();
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let base = config(dir.path(), "a", a.addr(), b.addr());
    let grouped = base.replace(
        "drain_timeout_ms = 5000",
        "drain_timeout_ms = 5000\nallowed_uids = [65534]\nsocket_group = \"nogroup\"",
    );
    let _gw = Gateway::start(&grouped, dir.path());
    let socket = dir.path().join("control.sock");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o660);
    // Allowed and in the group: served.
    let out = meshctl_as(&socket, NOBODY, NOBODY);
    assert!(out.status.success(), "{}", harness::describe(&out));
    // In the group but not allowed: refused by the uid check.
    let out = meshctl_as(&socket, OTHER, NOBODY);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("permission"),
        "{}",
        harness::describe(&out)
    );
    // Allowed but without the group: the file itself keeps it out.
    let dir = TempDir::new();
    let ungrouped = config(dir.path(), "a", a.addr(), b.addr()).replace(
        "drain_timeout_ms = 5000",
        "drain_timeout_ms = 5000\nallowed_uids = [65534]",
    );
    let _gw = Gateway::start(&ungrouped, dir.path());
    let out = meshctl_as(&dir.path().join("control.sock"), NOBODY, NOBODY);
    assert!(!out.status.success(), "{}", harness::describe(&out));
    // A group that does not exist: the daemon does not start, naming it.
    let dir = TempDir::new();
    let bad = config(dir.path(), "a", a.addr(), b.addr()).replace(
        "drain_timeout_ms = 5000",
        "socket_group = \"no-such-group-here\"",
    );
    let path = harness::gateway::write_config(dir.path(), &bad);
    let out = harness::gateway::meshgate_command()
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("control.socket_group"),
        "{}",
        harness::describe(&out)
    );
}

/// The uid and gid lines of `/proc/PID/status` (real, effective, saved, fs).
fn ids_of(pid: u32) -> (String, String) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .map(|l| {
                l[key.len()..]
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default()
    };
    (line("Uid:"), line("Gid:"))
}

#[test]
fn the_daemon_drops_to_an_unprivileged_user_and_keeps_working() {
    if !running_as_root() {
        eprintln!("SKIPPED: dropping privileges needs a start as root");
        return;
    }
    let dir = TempDir::new();
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let text = config(dir.path(), "a", a.addr(), b.addr());
    let text = format!("[dataplane]\nuser = \"nobody\"\n{text}");
    let mut gw = Gateway::start(&text, dir.path());
    assert_eq!(
        ids_of(gw.pid()),
        (
            "65534 65534 65534 65534".into(),
            "65534 65534 65534 65534".into()
        )
    );
    let mut c = RawConn::connect(gw.addr(LISTENER));
    c.send(b"GET /bytes/3 HTTP/1.1\r\nHost: e2e\r\n\r\n")
        .unwrap();
    assert_eq!(c.read_response().unwrap().status, 200);
    // The control socket (root may always use it) and a reload still work.
    let socket = dir.path().join("control.sock");
    let out = meshctl(&socket, &["--json", "status"]);
    assert!(out.status.success(), "{}", harness::describe(&out));
    let out = meshctl(&socket, &["certs", "reload"]);
    assert!(out.status.success(), "{}", harness::describe(&out));
    gw.signal(libc::SIGHUP);
    harness::wait_until(Duration::from_secs(10), "the reload is logged", || {
        gw.stderr().contains("configuration reloaded")
    });
    // An unknown user stops the start, naming the field.
    let dir = TempDir::new();
    let bad = config(dir.path(), "a", a.addr(), b.addr());
    let bad = format!("[dataplane]\nuser = \"no-such-user-here\"\n{bad}");
    let path = harness::gateway::write_config(dir.path(), &bad);
    let out = harness::gateway::meshgate_command()
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("dataplane.user"),
        "{}",
        harness::describe(&out)
    );
}
