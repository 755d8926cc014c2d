//! `meshctl top` and `meshctl stats` as an operator sees them: `top` runs
//! in a real terminal (a tmux pane), is read back with `capture-pane`
//! while traffic flows, re-sorts on a key and quits on `q`; `stats` fits
//! 100 columns.

use std::net::TcpStream;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use harness::client::Conn;
use harness::{GatewayConfig, find_on_path, wait_until, workspace_root};

fn meshctl() -> std::path::PathBuf {
    workspace_root().join("target/debug/meshctl")
}

/// tmux on a server of this test's own (`-L`), never the user's.
struct Tmux {
    server: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.server])
            .args(args)
            .output()
            .expect("run tmux")
    }

    fn pane(&self) -> String {
        let out = self.run(&["capture-pane", "-p", "-t", "top"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn alive(&self) -> bool {
        self.run(&["has-session", "-t", "top"]).status.success()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// Keep-alive GETs until `stop`; every answer must be a 200.
fn traffic(addr: std::net::SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut conn = Conn::new(TcpStream::connect(addr).expect("connect"));
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            conn.send(b"GET /headers HTTP/1.1\r\nhost: svc\r\n\r\n")
                .unwrap();
            assert_eq!(conn.read_response().unwrap().status, 200);
            n += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
        n
    })
}

#[test]
fn top_shows_live_rates_in_a_terminal_and_quits_on_q() {
    if find_on_path("tmux").is_none() {
        println!("SKIPPED: tmux not installed (scripts/test.sh installs it)");
        return;
    }
    let dir = harness::TempDir::new();
    let up = harness::Upstream::start("origin");
    let gw = harness::Gateway::start(&GatewayConfig::plain(&[up.addr()]).to_toml(), dir.path());
    let socket = gw.control_socket().expect("a control socket").to_owned();
    let stop = Arc::new(AtomicBool::new(false));
    let load = traffic(gw.addr(harness::LISTENER), stop.clone());

    let tmux = Tmux {
        server: format!("meshgate-top-{}", std::process::id()),
    };
    let command = format!("{} --socket {} top", meshctl().display(), socket.display());
    let started = tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "100",
        "-y",
        "30",
        &command,
    ]);
    assert!(started.status.success(), "{started:?}");
    // The route and the cluster show a non-zero rate.
    let rate_of = |screen: &str, name: &str| -> Option<f64> {
        let row = screen.lines().find(|l| l.starts_with(name))?;
        row.split_whitespace().nth(1)?.parse().ok()
    };
    wait_until(Duration::from_secs(20), "a live rate on the route", || {
        let screen = tmux.pane();
        rate_of(&screen, "main#0").is_some_and(|r| r > 0.0)
            && rate_of(&screen, "backend").is_some_and(|r| r > 0.0)
    });
    let screen = tmux.pane();
    assert!(
        screen.contains("ROUTE") && screen.contains("P99µs"),
        "{screen}"
    );
    assert!(screen.contains("sorted by rps"), "{screen}");
    let cluster = screen.lines().find(|l| l.starts_with("backend")).unwrap();
    assert!(
        cluster.trim_end().ends_with("1/1"),
        "one endpoint, in rotation: {cluster}"
    );
    assert!(screen.lines().all(|l| l.chars().count() <= 100), "{screen}");
    // A key re-sorts.
    tmux.run(&["send-keys", "-t", "top", "n"]);
    wait_until(Duration::from_secs(10), "sorted by name", || {
        tmux.pane().contains("sorted by name")
    });
    // q quits, and the terminal is given back (the pane's command ended).
    tmux.run(&["send-keys", "-t", "top", "q"]);
    wait_until(Duration::from_secs(10), "meshctl top to quit", || {
        !tmux.alive()
    });
    stop.store(true, Ordering::Relaxed);
    assert!(load.join().unwrap() > 0);
}

#[test]
fn top_without_a_terminal_prints_frames_and_stats_fits_100_columns() {
    let dir = harness::TempDir::new();
    let up = harness::Upstream::start("origin");
    let gw = harness::Gateway::start(
        &GatewayConfig::plain(&[up.addr()]).shards(2).to_toml(),
        dir.path(),
    );
    let socket = gw.control_socket().unwrap().to_owned();
    // Without a terminal and without --iterations, a clear refusal.
    let out = Command::new(meshctl())
        .args(["--socket"])
        .arg(&socket)
        .arg("top")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a terminal"));
    let out = Command::new(meshctl())
        .args(["--socket"])
        .arg(&socket)
        .args(["top", "--iterations", "1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("CLUSTER"), "{text}");
    harness::curl(&["-s", &gw.url("/headers")]);
    wait_until(Duration::from_secs(5), "the request counted", || {
        gw.counter("requests") >= 1
    });
    let out = Command::new(meshctl())
        .args(["--socket"])
        .arg(&socket)
        .arg("stats")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.lines().all(|l| l.chars().count() <= 100), "{text}");
    let requests = text
        .lines()
        .find(|l| l.trim_start().starts_with("requests "))
        .unwrap_or_else(|| panic!("a requests row: {text}"));
    assert!(text.contains("SHARD 1"), "one column per shard: {text}");
    assert_eq!(requests.split_whitespace().nth(1), Some("1"), "{requests}");
}
