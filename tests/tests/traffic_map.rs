//! The admin `/` page as an operator sees it: headless Chromium (Debian's
//! `chromium`) loads the traffic map of a gateway with two listeners, a
//! split, a redirect and an ejected endpoint while meshbench drives it,
//! the page's script draws `/map.json`, and the test reads the drawn DOM
//! back (edges with live rates, endpoint states) and keeps a screenshot
//! (`target/e2e/traffic-map.png`, the one README shows).
//!
//! Chromium is kept off every network but loopback: a resolver that
//! answers nothing, a dead proxy for anything not on loopback, and its
//! background fetches (updates, sync, safe browsing) off.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use harness::bench::{BenchUpstream, LoadRun};
use harness::gateway::Gateway;
use harness::{TempDir, curl, describe, find_on_path, wait_until, workspace_root};

/// `curl -s URL`; the body.
fn fetch(url: &str) -> String {
    let out = curl(&["-s", "--max-time", "10", url]);
    assert!(out.status.success(), "curl {url}: {}", describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A port nothing listens on.
fn dead_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn config(api: &[SocketAddr], web: SocketAddr, canary: SocketAddr, echo: SocketAddr) -> String {
    let list = |a: &[SocketAddr]| {
        a.iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        r#"
[dataplane]
shards = 2

[admin]
address = "127.0.0.1:0"

[[listeners]]
name = "public"
address = "127.0.0.1:0"
protocol = "http"

[[listeners]]
name = "db"
address = "127.0.0.1:0"
protocol = "tcp"

[[routes]]
name = "api"
listener = "public"
cluster = "api"
[routes.match]
path_prefix = "/api/"

[[routes]]
name = "v1-moved"
listener = "public"
[routes.match]
path_prefix = "/v1/"
[routes.redirect]
status = 308
path = "/api/"

[[routes]]
name = "web"
listener = "public"
split = [{{ cluster = "web", weight = 90 }}, {{ cluster = "web-canary", weight = 10 }}]
[routes.match]
path_prefix = "/"

[[routes]]
name = "db"
listener = "db"
cluster = "db"

[[clusters]]
name = "api"
endpoints = [{api}]
[clusters.outlier]
consecutive_failures = 2
base_ejection_ms = 60000
max_ejection_percent = 50

[[clusters]]
name = "web"
endpoints = ["{web}"]

[[clusters]]
name = "web-canary"
endpoints = ["{canary}"]

[[clusters]]
name = "db"
endpoints = ["{echo}"]
"#,
        api = list(api)
    )
}

/// Headless Chromium on `url` with the network locked to loopback;
/// `extra` says what to produce (`--dump-dom`, `--screenshot=…`).
fn chromium(bin: &Path, profile: &Path, url: &str, extra: &[&str]) -> Output {
    Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox", // CI runs as root
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-default-apps",
            "--disable-domain-reliability",
            "--disable-client-side-phishing-detection",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--proxy-server=127.0.0.1:9",
            "--hide-scrollbars",
            "--window-size=1400,760",
            // Page timers run on virtual time: three refreshes of the map.
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("run chromium")
}

/// The value of attribute `name` in the first element of `dom` whose
/// start tag begins with `tag` and contains every one of `having`.
fn attribute(dom: &str, tag: &str, having: &[&str], name: &str) -> Option<String> {
    dom.split('<')
        .filter(|t| t.starts_with(tag))
        .find(|t| having.iter().all(|h| t.contains(h)))
        .and_then(|tag| {
            let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
            let len = tag[start..].find('"')?;
            Some(tag[start..start + len].to_owned())
        })
}

fn screenshot_path() -> PathBuf {
    let dir = workspace_root().join("target/e2e");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("traffic-map.png")
}

#[test]
fn chromium_draws_the_live_traffic_map() {
    let Some(chromium_bin) = find_on_path("chromium") else {
        println!("SKIPPED: chromium not installed (scripts/test.sh installs Debian's chromium)");
        return;
    };
    let dir = TempDir::new();
    let api = [
        BenchUpstream::start(&["--tag", "api-1"]),
        BenchUpstream::start(&["--tag", "api-2", "--fail-rate", "0.05"]),
    ];
    let web = BenchUpstream::start(&["--delay-ms", "2"]);
    let canary = BenchUpstream::start(&["--delay-ms", "8"]);
    let echo = BenchUpstream::start(&["--tcp-echo"]);
    let dead = dead_port();
    let text = config(
        &[api[0].addr(), api[1].addr(), dead],
        web.addr(),
        canary.addr(),
        echo.addr(),
    );
    let gw = Gateway::start(&text, dir.path());
    let public = format!("http://{}", gw.addr("public"));

    let api_load = LoadRun::start(&[
        &format!("{public}/api/items"),
        "-c",
        "2",
        "--rate",
        "150",
        "-d",
        "25s",
    ]);
    let web_load = LoadRun::start(&[
        &format!("{public}/"),
        "-c",
        "2",
        "--rate",
        "100",
        "-d",
        "25s",
    ]);

    // Short TCP sessions through the db listener, echoed back.
    let stop = Arc::new(AtomicBool::new(false));
    let tcp = {
        let (stop, db) = (stop.clone(), gw.addr("db"));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let mut s = TcpStream::connect(db).expect("connect to db");
                s.write_all(b"ping").unwrap();
                let mut back = [0u8; 4];
                s.read_exact(&mut back).unwrap();
                assert_eq!(&back, b"ping");
                drop(s);
                std::thread::sleep(Duration::from_millis(40));
            }
        })
    };

    // The map's own JSON, read by curl first: rates once two looks are a
    // second apart, the dead endpoint ejected after its failures.
    let map = gw.admin_url("/map.json");
    let dead_id = format!("e:api/{dead}");
    wait_until(
        Duration::from_secs(20),
        "live rates and an ejected endpoint in /map.json",
        || {
            let g: serde_json::Value = serde_json::from_str(&fetch(&map)).unwrap();
            let edge_rps = |from: &str, to: &str| {
                g["edges"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|e| e["from"] == from && e["to"] == to)
                    .and_then(|e| e["rps"].as_f64())
            };
            let dead_state = g["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["id"] == dead_id.as_str())
                .map(|n| n["state"].clone());
            edge_rps("l:public", "r:api").is_some_and(|r| r > 0.0)
                && edge_rps("l:public", "r:web").is_some_and(|r| r > 0.0)
                && edge_rps("l:db", "r:db").is_some_and(|r| r > 0.0)
                && dead_state.as_ref().and_then(|s| s.as_str()) == Some("ejected")
        },
    );

    let page = fetch(&gw.admin_url("/"));
    assert!(
        page.contains("<title>meshgate traffic map</title>"),
        "{page}"
    );

    let profile = dir.join("chromium-profile");
    let url = gw.admin_url("/");
    let out = chromium(&chromium_bin, &profile, &url, &["--dump-dom"]);
    assert!(out.status.success(), "chromium: {}", describe(&out));
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        attribute(&dom, "body ", &[], "data-state").as_deref(),
        Some("live"),
        "{}",
        describe(&out)
    );
    // Every node the configuration has is drawn.
    for id in [
        "l:public",
        "l:db",
        "r:api",
        "r:web",
        "r:v1-moved",
        "r:db",
        "c:api",
        "c:web",
        "c:web-canary",
        "c:db",
    ] {
        assert!(
            dom.contains(&format!("data-id=\"{id}\"")),
            "no node {id}: {dom}"
        );
    }
    let rps = |from: &str, to: &str| -> f64 {
        attribute(
            &dom,
            "g class=\"edge\"",
            &[
                &format!("data-from=\"{from}\""),
                &format!("data-to=\"{to}\""),
            ],
            "data-rps",
        )
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no rps on the edge {from} → {to}: {dom}"))
    };
    assert!(rps("l:public", "r:api") > 10.0, "{dom}");
    assert!(rps("l:public", "r:web") > 10.0, "{dom}");
    let api1 = format!("e:api/{}", api[0].addr());
    assert!(rps("c:api", &api1) > 0.0, "{dom}");
    // The split's edges carry its weights and what it sent each way.
    assert!(
        dom.contains(">weight 90<") && dom.contains(">weight 10<"),
        "{dom}"
    );
    assert!(rps("r:web", "c:web") > 0.0, "{dom}");
    assert!(rps("r:web", "c:web-canary") > 0.0, "{dom}");
    assert_eq!(
        attribute(
            &dom,
            "g class=\"node endpoint\"",
            &[&format!("data-id=\"{dead_id}\"")],
            "data-state"
        )
        .as_deref(),
        Some("ejected"),
        "{dom}"
    );
    // The figures are written on the edges.
    assert!(
        dom.contains("% err</text>") && dom.contains(">p99 "),
        "{dom}"
    );

    let png = screenshot_path();
    let _ = std::fs::remove_file(&png);
    let out = chromium(
        &chromium_bin,
        &profile,
        &url,
        &[&format!("--screenshot={}", png.display())],
    );
    assert!(out.status.success(), "chromium: {}", describe(&out));
    let bytes = std::fs::read(&png).expect("the screenshot");
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000,
        "{} bytes",
        bytes.len()
    );
    println!("screenshot: {}", png.display());

    stop.store(true, Ordering::Relaxed);
    tcp.join().expect("the TCP sessions all echoed");
    for run in [api_load, web_load] {
        let report = run.report();
        assert!(report["requests"].as_u64().unwrap() > 0, "{report}");
    }
}
