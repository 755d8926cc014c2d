//! The operator's side of the binary: `meshgate check` exit codes and
//! messages (file:line, field, path), `meshgate run` start-up failures,
//! and the signals (SIGTERM stops cleanly, SIGHUP reloads or keeps the
//! running configuration).

use std::net::TcpListener;
use std::time::{Duration, Instant};

use harness::gateway::{self, LISTENER, run_to_exit};
use harness::{Gateway, GatewayConfig, Pki, Setup, TempDir, Upstream, describe, raw_plain};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn check_accepts_a_good_config() {
    let dir = TempDir::new();
    let pki = Pki::new(dir.path());
    let up = Upstream::start("check");
    let (out, path) = gateway::check(
        &GatewayConfig::mtls(&pki, &[up.addr()]).to_toml(),
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{}: ok", path.display())
    );
}

#[test]
fn check_names_file_line_and_unknown_field() {
    let dir = TempDir::new();
    let pki = Pki::new(dir.path());
    let good = GatewayConfig::mtls(&pki, &["127.0.0.1:9".parse().expect("addr")]).to_toml();
    // Insert the unknown field right after the listener's name.
    let mut lines: Vec<&str> = good.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("name = \"main\""))
        .expect("listener name line")
        + 1;
    lines.insert(at, "bogus_knob = 1");
    let line_number = at + 1;
    let (out, path) = gateway::check(&(lines.join("\n") + "\n"), dir.path());
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        err.contains(&format!("{}:{line_number}", path.display())),
        "stderr should name {}:{line_number}:\n{err}",
        path.display()
    );
    assert!(
        err.contains("bogus_knob"),
        "stderr should name the field:\n{err}"
    );
}

#[test]
fn check_names_missing_certificate_field_and_path() {
    let dir = TempDir::new();
    let pki = Pki::new(dir.path());
    let mut config = GatewayConfig::mtls(&pki, &["127.0.0.1:9".parse().expect("addr")]);
    let missing = dir.join("no-such-cert.pem");
    if let Some(tls) = config.tls.as_mut() {
        tls.cert = missing.clone();
    }
    let (out, _) = gateway::check(&config.to_toml(), dir.path());
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        err.contains("listeners[0].tls.cert"),
        "stderr should name the field:\n{err}"
    );
    assert!(
        err.contains(&missing.display().to_string()),
        "stderr should name the path:\n{err}"
    );
}

#[test]
fn check_rejects_invalid_value_with_its_line() {
    let dir = TempDir::new();
    let text = GatewayConfig::plain(&["127.0.0.1:9".parse().expect("addr")])
        .max_header_bytes(10)
        .to_toml();
    let line_number = text
        .lines()
        .position(|l| l.starts_with("max_header_bytes"))
        .expect("line")
        + 1;
    let (out, path) = gateway::check(&text, dir.path());
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        err.contains(&format!("{}:{line_number}", path.display())),
        "{err}"
    );
    assert!(err.contains("max_header_bytes"), "{err}");
}

#[test]
fn run_fails_when_the_address_is_in_use() {
    let dir = TempDir::new();
    // Held for the whole test; no SO_REUSEPORT, so the daemon cannot share it.
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let text = GatewayConfig::plain(&["127.0.0.1:9".parse().expect("addr")])
        .address(addr)
        .to_toml();
    let (out, _) = run_to_exit(&["run"], Some(&text), dir.path(), Duration::from_secs(20));
    let err = stderr(&out);
    assert!(
        !out.status.success(),
        "run succeeded on a busy address: {}",
        describe(&out)
    );
    assert!(
        err.contains(&format!("listener \"{LISTENER}\"")),
        "stderr should name the listener:\n{err}"
    );
    assert!(
        err.contains(&addr.to_string()),
        "stderr should name the address:\n{err}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("listening"),
        "announced a listener it could not bind"
    );
    drop(taken);
}

#[test]
fn run_refuses_a_bad_config() {
    let dir = TempDir::new();
    let (out, path) = run_to_exit(
        &["run"],
        Some("[[listeners]]\nname = \"main\"\naddress = \"127.0.0.1:0\"\nwhat = 1\n"),
        dir.path(),
        Duration::from_secs(20),
    );
    let err = stderr(&out);
    assert!(!out.status.success(), "{}", describe(&out));
    let path = path.expect("config path");
    assert!(err.contains(&format!("{}:4", path.display())), "{err}");
    assert!(err.contains("what"), "{err}");
}

#[test]
fn sigterm_stops_the_daemon_cleanly() {
    let s = Setup::plain(|c| c);
    let Setup { gw, .. } = s;
    let status = gw
        .stop()
        .expect("meshgate did not exit within 5 s of SIGTERM");
    assert!(status.success(), "exit after SIGTERM: {status}");
}

/// Polls `GET path` on a plaintext listener until `want` status or 10 s.
fn wait_for_status(gw: &Gateway, path: &str, want: u16) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = String::new();
    while Instant::now() < deadline {
        let req = format!("GET {path} HTTP/1.1\r\nHost: e2e\r\nConnection: close\r\n\r\n");
        let resp = raw_plain(gw.addr(LISTENER), req.as_bytes());
        last = String::from_utf8_lossy(&resp).into_owned();
        if last.starts_with(&format!("HTTP/1.1 {want} ")) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(last)
}

#[test]
fn sighup_reloads_routes() {
    let mut s = Setup::plain(|c| c.path_prefix("/api"));
    wait_for_status(&s.gw, "/headers", 404).expect("404 before the reload");
    let text = GatewayConfig::plain(&[s.up.addr()]).to_toml();
    std::fs::write(s.gw.config_path(), text).expect("rewrite config");
    s.gw.signal(libc::SIGHUP);
    if let Err(last) = wait_for_status(&s.gw, "/headers", 200) {
        panic!(
            "route change not applied 10 s after SIGHUP; last answer:\n{last}\n--- stderr:\n{}",
            s.gw.stderr()
        );
    }
}

#[test]
fn sighup_with_a_broken_config_keeps_the_running_one() {
    let mut s = Setup::plain(|c| c);
    std::fs::write(s.gw.config_path(), "this is [not toml\n").expect("rewrite config");
    s.gw.signal(libc::SIGHUP);
    // The failure is logged; wait for it, then check the daemon still serves.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s.gw.stderr().contains("reload failed") {
        assert!(
            Instant::now() < deadline,
            "no 'reload failed' log 10 s after SIGHUP:\n{}",
            s.gw.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(s.gw.is_running(), "a bad reload stopped the daemon");
    wait_for_status(&s.gw, "/status/200", 200).expect("still serving after a failed reload");
}

#[test]
fn sigterm_drains_in_flight_requests_then_exits() {
    // SIGTERM: stop accepting, let the in-flight request finish (200), close
    // idle keep-alive connections, exit 0.
    let s = Setup::plain(|c| c);
    let Setup { mut gw, up, .. } = s;
    let addr = gw.addr(LISTENER);
    // An idle keep-alive connection, which the drain must close.
    let mut idle = harness::RawConn::connect(addr);
    idle.send(b"GET /bytes/3 HTTP/1.1\r\nHost: e2e\r\n\r\n")
        .expect("send");
    assert_eq!(idle.read_response().expect("first response").status, 200);
    // A slow request in flight while the drain starts.
    let slow = std::thread::spawn(move || {
        raw_plain(addr, b"GET /sleep/1500 HTTP/1.1\r\nHost: e2e\r\n\r\n")
    });
    // The drain starts while the slow request is at the origin.
    harness::wait_until(
        Duration::from_secs(10),
        "the slow request reached the origin",
        || up.heads() >= 2,
    );
    gw.signal(libc::SIGTERM);
    let reply = String::from_utf8_lossy(&slow.join().unwrap()).into_owned();
    assert!(
        reply.starts_with("HTTP/1.1 200 "),
        "in-flight request during drain: {reply:?}"
    );
    assert!(
        reply.to_ascii_lowercase().contains("connection: close"),
        "draining keeps no connection: {reply}"
    );
    let got = idle.read_to_close(Duration::from_secs(5));
    assert!(
        got.closed,
        "idle keep-alive connection left open by the drain"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while gw.is_running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !gw.is_running(),
        "meshgate still running after draining\n{}",
        gw.stderr()
    );
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still accepting after the drain"
    );
    assert!(up.served() >= 2);
}
