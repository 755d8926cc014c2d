//! What the gateway shows, seen by tools made by others: curl scraping the
//! admin listener, `promtool check metrics` on a live scrape, a real
//! Prometheus server scraping the gateway while meshbench drives it and
//! answering a PromQL rate, and the access log read back line by line
//! (JSON and a template; logrotate's rename and SIGUSR1).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harness::bench::LoadRun;
use harness::gateway::{run_to_exit, toml_str};
use harness::pki::SPIFFE_ID;
use harness::{GatewayConfig, Setup, curl, describe, find_on_path, free_port, wait_until};

/// `curl -s URL` (with extra args); the body.
fn fetch(url: &str, extra: &[&str]) -> String {
    let mut args: Vec<&str> = vec!["-s", "--max-time", "10"];
    args.extend_from_slice(extra);
    args.push(url);
    let out = curl(&args);
    assert!(out.status.success(), "curl {url}: {}", describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of the sample `series` (name with labels, exactly as
/// exposed) in a scrape.
fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

fn path_toml(p: &Path) -> String {
    toml_str(&p.display().to_string())
}

#[test]
fn metrics_and_json_access_log_follow_real_requests() {
    let dir = harness::TempDir::new();
    let log = dir.join("access.log");
    let table = format!("{{ path = {}, format = \"json\" }}", path_toml(&log));
    let s = Setup::mtls(|c| c.admin().path_prefix("/bytes").access_log(&table));
    for _ in 0..5 {
        s.curl_ok(&["-o", "/dev/null"], "/bytes/10");
    }
    // No route: a local 404, counted on the listener only.
    let out = s.curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &s.url("/other"),
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "404");
    // A client with a request id of its own (the listener's default
    // policy keeps a verified caller's).
    s.curl_ok(
        &["-o", "/dev/null", "-H", "x-request-id: client-id-42"],
        "/bytes/20",
    );

    // Shards publish their named counts about once a second.
    let metrics = s.gw.admin_url("/metrics");
    let listener = harness::LISTENER;
    let requests = format!("meshgate_requests_total{{listener=\"{listener}\"}}");
    wait_until(Duration::from_secs(10), "7 requests in /metrics", || {
        sample(&fetch(&metrics, &[]), &requests) == Some(7.0)
    });
    let scrape = fetch(&metrics, &[]);
    let ok =
        format!("meshgate_responses_total{{listener=\"{listener}\",code=\"200\",class=\"2xx\"}}");
    let missing =
        format!("meshgate_responses_total{{listener=\"{listener}\",code=\"404\",class=\"4xx\"}}");
    assert_eq!(sample(&scrape, &ok), Some(6.0), "{scrape}");
    assert_eq!(sample(&scrape, &missing), Some(1.0), "{scrape}");
    let route_hist =
        format!("meshgate_route_request_duration_seconds_count{{route=\"{listener}#0\"}}");
    assert_eq!(sample(&scrape, &route_hist), Some(6.0), "{scrape}");
    let ttfb = "meshgate_cluster_upstream_ttfb_seconds_count{cluster=\"backend\"}";
    assert_eq!(sample(&scrape, ttfb), Some(6.0), "{scrape}");
    assert!(
        scrape.contains("meshgate_tls_handshakes_total{version=\"TLSv1.3\",group=\""),
        "{scrape}"
    );
    assert!(sample(&scrape, "meshgate_connections_accepted_total").is_some_and(|n| n >= 7.0));
    assert!(
        scrape.contains("meshgate_build_info{version=\""),
        "{scrape}"
    );
    assert!(
        scrape.contains("meshgate_certificate_expiry_seconds{listener=\"")
            && scrape.contains("kind=\"cert\""),
        "{scrape}"
    );
    let endpoint = format!(
        "meshgate_endpoint_requests_total{{cluster=\"backend\",endpoint=\"{}\"}}",
        s.up.addr()
    );
    assert_eq!(sample(&scrape, &endpoint), Some(6.0), "{scrape}");
    // The series count README gives: (L + R + C) × (57 + codes) + 6 × E
    // + 6 × S + certificates + 45 + TLS version × group; here listener
    // codes 200 and 404, route and cluster 200, one endpoint, two shards,
    // a cert and a client CA, one handshake kind.
    let series = scrape.lines().filter(|l| !l.starts_with('#')).count();
    assert_eq!(series, 3 * 57 + 4 + 6 + 2 * 6 + 2 + 45 + 1, "{scrape}");
    // Every metric the Grafana dashboard uses is exported.
    for name in dashboard_metrics() {
        let family = name.strip_suffix("_bucket").unwrap_or(&name);
        assert!(
            scrape.contains(&format!("# TYPE {family} ")),
            "the dashboard uses {name}, which /metrics does not export"
        );
    }
    // Every family has HELP and TYPE.
    let families = scrape.lines().filter(|l| l.starts_with("# TYPE ")).count();
    let helps = scrape.lines().filter(|l| l.starts_with("# HELP ")).count();
    assert!(families > 40 && families == helps, "{families} vs {helps}");

    // OpenMetrics when asked for.
    let om = fetch(
        &metrics,
        &["-H", "Accept: application/openmetrics-text; version=1.0.0"],
    );
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(om.contains("# TYPE meshgate_requests counter\n"), "{om}");

    // Health endpoints.
    assert_eq!(fetch(&s.gw.admin_url("/ready"), &[]), "ready\n");
    assert_eq!(fetch(&s.gw.admin_url("/live"), &[]), "live\n");
    let code = |url: &str, extra: &[&str]| {
        let mut a = vec!["-s", "-o", "/dev/null", "-w", "%{http_code}"];
        a.extend_from_slice(extra);
        a.push(url);
        String::from_utf8_lossy(&curl(&a).stdout).into_owned()
    };
    assert_eq!(code(&s.gw.admin_url("/nope"), &[]), "404");
    assert_eq!(code(&metrics, &["-X", "POST"]), "405");

    // The access log: one JSON object per request, written off the shard.
    wait_until(Duration::from_secs(10), "7 access log lines", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.lines().count() == 7)
    });
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    // Lines come in per-shard batches: found by path, not by place.
    let first = lines
        .iter()
        .find(|l| l["path"] == "/bytes/10")
        .expect("a /bytes/10 line");
    assert_eq!(first["status"], 200, "{first}");
    assert_eq!(first["method"], "GET");
    assert_eq!(first["path"], "/bytes/10");
    assert_eq!(first["protocol"], "HTTP/1.1");
    assert_eq!(first["spiffe_id"], SPIFFE_ID);
    assert_eq!(first["listener"], listener);
    assert_eq!(first["route"], format!("{listener}#0"));
    assert_eq!(first["cluster"], "backend");
    assert_eq!(first["endpoint"], s.up.addr().to_string());
    assert_eq!(first["attempts"], 1);
    assert_eq!(first["tls_version"], "TLSv1.3");
    assert!(
        first["tls_cipher"].as_str().unwrap().starts_with("TLS13_"),
        "{first}"
    );
    assert!(
        first["request_id"]
            .as_str()
            .is_some_and(|id| id.len() >= 16),
        "{first}"
    );
    assert!(first["duration_us"].as_u64().unwrap() >= first["upstream_ttfb_us"].as_u64().unwrap());
    assert!(first["bytes_in"].as_u64().unwrap() > 0 && first["bytes_out"].as_u64().unwrap() > 0);
    assert!(
        first["start_time"].as_str().unwrap().ends_with('Z'),
        "{first}"
    );
    let not_found = lines
        .iter()
        .find(|l| l["status"] == 404)
        .expect("the 404 is logged");
    assert_eq!(not_found["error"], "no_route", "{not_found}");
    assert_eq!(not_found["route"], serde_json::Value::Null);
    let with_id = lines.iter().find(|l| l["path"] == "/bytes/20").unwrap();
    assert_eq!(with_id["request_id"], "client-id-42", "{with_id}");
    // curl sent no server name to 127.0.0.1; by name it sends one.
    assert_eq!(first["sni"], serde_json::Value::Null, "{first}");
    let port = s.gw.addr(listener).port();
    let out = s.curl(&[
        "-s",
        "-k",
        "-o",
        "/dev/null",
        "--resolve",
        &format!("gw.Mesh.Local:{port}:127.0.0.1"),
        &format!("https://gw.Mesh.Local:{port}/bytes/30"),
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    wait_until(Duration::from_secs(10), "the 8th access log line", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.lines().count() == 8)
    });
    let text = std::fs::read_to_string(&log).unwrap();
    let by_name: serde_json::Value = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|l| l["path"] == "/bytes/30")
        .expect("the /bytes/30 line");
    assert_eq!(by_name["sni"], "gw.mesh.local", "{by_name}");
    let scrape = fetch(&metrics, &[]);
    assert_eq!(
        sample(&scrape, "meshgate_access_log_records_total"),
        Some(8.0)
    );
    assert_eq!(
        sample(&scrape, "meshgate_access_log_dropped_total"),
        Some(0.0)
    );
}

/// The dashboard in configs/, parsed.
fn dashboard() -> serde_json::Value {
    let path = harness::workspace_root().join("configs/grafana-meshgate.json");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every PromQL expression of the dashboard, with Grafana's
/// `$__rate_interval` filled in.
fn dashboard_queries() -> Vec<String> {
    dashboard()["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().clone())
        .map(|t| {
            t["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "30s")
        })
        .collect()
}

/// The `meshgate_*` names the dashboard's queries use.
fn dashboard_metrics() -> Vec<String> {
    let mut names = Vec::new();
    for q in dashboard_queries() {
        let mut rest = q.as_str();
        while let Some(at) = rest.find("meshgate_") {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            names.push(tail[..end].to_owned());
            rest = &tail[end..];
        }
    }
    assert!(names.len() > 10, "{names:?}");
    names
}

#[test]
fn template_access_log_is_reopened_after_logrotate_moves_it() {
    let dir = harness::TempDir::new();
    let log = dir.join("plain.log");
    let table = format!(
        "{{ path = {}, format = \"text\", template = \"%METHOD% %PATH% %STATUS% %ROUTE% %TRACE_ID%\" }}",
        path_toml(&log)
    );
    let mut s = Setup::plain(|c| c.access_log(&table));
    s.curl_ok(
        &[
            "-o",
            "/dev/null",
            "-H",
            "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ],
        "/bytes/1",
    );
    wait_until(Duration::from_secs(10), "the first line", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.lines().count() == 1)
    });
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        format!(
            "GET /bytes/1 200 {}#0 4bf92f3577b34da6a3ce929d0e0e4736\n",
            harness::LISTENER
        )
    );
    // logrotate: rename, then SIGUSR1; the next line goes to a new file.
    let rotated = dir.join("plain.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    s.gw.signal(libc::SIGUSR1);
    wait_until(Duration::from_secs(10), "the reopen", || log.exists());
    s.curl_ok(&["-o", "/dev/null"], "/bytes/2");
    wait_until(Duration::from_secs(10), "the line in the new file", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.lines().count() == 1)
    });
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .starts_with("GET /bytes/2 200 ")
    );
    assert_eq!(
        std::fs::read_to_string(&rotated).unwrap().lines().count(),
        1
    );
}

#[test]
fn bad_observability_config_is_refused_naming_the_field() {
    let dir = harness::TempDir::new();
    let up = harness::Upstream::start("origin");
    let base = GatewayConfig::plain(&[up.addr()]);
    for (table, field, says) in [
        (
            "{ path = \"x.log\", format = \"text\", template = \"%NOPE%\" }",
            "listeners[0].access_log.template",
            "unknown field %NOPE%",
        ),
        (
            "{ path = \"x.log\", template = \"%PATH%\" }",
            "listeners[0].access_log.template",
            "needs format = \"text\"",
        ),
        (
            "{ path = \"x.log\", sample_percent = 150 }",
            "listeners[0].access_log.sample_percent",
            "out of range",
        ),
        (
            "{ path = \"/nonexistent-dir/x.log\" }",
            "listener",
            "/nonexistent-dir/x.log",
        ),
    ] {
        let text = base.clone().access_log(table).to_toml();
        let (out, _) = run_to_exit(&["run"], Some(&text), dir.path(), Duration::from_secs(20));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{table} was accepted");
        assert!(err.contains(field) && err.contains(says), "{table}: {err}");
    }
    // The admin address is validated and bound before anything serves.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let text = format!(
        "{}\n[admin]\naddress = \"{}\"\n",
        base.to_toml(),
        busy.local_addr().unwrap()
    );
    let (out, _) = run_to_exit(&["run"], Some(&text), dir.path(), Duration::from_secs(20));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("admin.address"),
        "{err}"
    );
}

#[test]
fn promtool_accepts_a_live_scrape() {
    let Some(promtool) = find_on_path("promtool") else {
        println!("SKIPPED: promtool not installed (scripts/test.sh installs Debian's prometheus)");
        return;
    };
    let s = Setup::mtls(|c| c.admin());
    s.curl_ok(&["-o", "/dev/null"], "/bytes/10");
    let metrics = s.gw.admin_url("/metrics");
    wait_until(Duration::from_secs(10), "the request in /metrics", || {
        fetch(&metrics, &[]).contains("meshgate_requests_total{")
    });
    for accept in ["text/plain", "application/openmetrics-text; version=1.0.0"] {
        let scrape = fetch(&metrics, &["-H", &format!("Accept: {accept}")]);
        let mut child = Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(scrape.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        // promtool reads the classic text format; an OpenMetrics scrape
        // only differs in counter family names and `# EOF`, which it
        // must not choke on either.
        if accept == "text/plain" {
            assert!(
                out.status.success(),
                "promtool check metrics: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                out.stdout.is_empty() && out.stderr.is_empty(),
                "promtool has lint findings: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// A Prometheus server on a free loopback port, scraping `target` every
/// second, its data in `dir`.
struct Prometheus {
    child: Child,
    port: u16,
}

impl Prometheus {
    fn start(prometheus: &Path, dir: &Path, target: &str) -> Prometheus {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: meshgate\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new(prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        Prometheus { child, port }
    }

    /// The single value of an instant query, when there is one.
    fn query(&self, promql: &str) -> Option<f64> {
        let v = self.answer(promql)?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }

    /// Prometheus' whole answer to an instant query.
    fn answer(&self, promql: &str) -> Option<serde_json::Value> {
        let out = curl(&[
            "-s",
            "--max-time",
            "5",
            "-G",
            &format!("http://127.0.0.1:{}/api/v1/query", self.port),
            "--data-urlencode",
            &format!("query={promql}"),
        ]);
        serde_json::from_slice(&out.stdout).ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn prometheus_scrapes_the_rate_meshbench_drives() {
    let Some(prometheus) = find_on_path("prometheus") else {
        println!(
            "SKIPPED: prometheus not installed (scripts/test.sh installs Debian's prometheus)"
        );
        return;
    };
    let s = Setup::plain(|c| c.admin());
    let target = s.gw.admin_url("").trim_start_matches("http://").to_owned();
    let prom = Prometheus::start(&prometheus, s.dir.path(), &target);
    let wait_for_prometheus = Instant::now() + Duration::from_secs(60);
    while prom.query("up").is_none() {
        assert!(
            Instant::now() < wait_for_prometheus,
            "prometheus did not come up: {}",
            std::fs::read_to_string(s.dir.join("prometheus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // 200 requests a second, open loop, for longer than the query's window.
    let url = s.url("/bytes/100");
    let load = LoadRun::start(&[&url, "-c", "4", "--rate", "200", "-d", "45s"]);
    let promql = "sum(rate(meshgate_requests_total[30s]))";
    // Once the 30 s window is full of load (a scrape a second), the rate
    // is the driven one.
    wait_until(
        Duration::from_secs(60),
        "30 s of scrapes under load",
        || {
            prom.query("sum(count_over_time(meshgate_requests_total[30s]))")
                .is_some_and(|n| n >= 30.0)
        },
    );
    let rate = prom.query(promql);
    let report = load.report();
    let achieved = report["requests"].as_f64().unwrap() / 45.0;
    let rate = rate.unwrap_or_else(|| panic!("no answer to {promql}"));
    assert!(
        (rate - achieved).abs() <= achieved * 0.2,
        "{promql} = {rate}, meshbench drove {achieved}/s: {report}"
    );
    assert_eq!(prom.query("up"), Some(1.0));
    // The dashboard's queries parse and find data.
    for q in dashboard_queries() {
        let answer = prom
            .answer(&q)
            .unwrap_or_else(|| panic!("no answer to {q}"));
        assert_eq!(answer["status"], "success", "{q}: {answer}");
    }
    let by_route = "histogram_quantile(0.99, sum by (route, le) (rate(meshgate_route_request_duration_seconds_bucket[30s])))";
    let p99 = prom
        .query(by_route)
        .unwrap_or_else(|| panic!("no p99 from {by_route}"));
    assert!(p99 > 0.0 && p99 < 1.0, "{by_route} = {p99}");
}

/// Whether something answers `/live` at `addr` (a refused connection:
/// no).
fn admin_live(addr: std::net::SocketAddr) -> bool {
    let out = curl(&["-s", "--max-time", "5", &format!("http://{addr}/live")]);
    out.status.success() && String::from_utf8_lossy(&out.stdout) == "live\n"
}

#[test]
fn the_admin_listener_moves_on_reload_and_a_busy_address_keeps_the_old_one() {
    let mut s = Setup::plain(|c| c.admin());
    let first: std::net::SocketAddr =
        s.gw.admin_url("")
            .trim_start_matches("http://")
            .parse()
            .unwrap();
    assert!(admin_live(first));
    let path = s.gw.config_path().to_owned();
    let text = std::fs::read_to_string(&path).unwrap();
    let with_admin = |address: &str| {
        let (head, tail) = text.split_once("[admin]\n").expect("an [admin] table");
        let rest = tail.split_once('\n').map_or("", |(_, r)| r);
        format!("{head}[admin]\naddress = \"{address}\"\n{rest}")
    };

    // Moved: the new address answers, the old one is closed.
    let second: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    std::fs::write(&path, with_admin(&second.to_string())).unwrap();
    s.gw.signal(libc::SIGHUP);
    wait_until(Duration::from_secs(10), "the moved admin listener", || {
        admin_live(second)
    });
    wait_until(
        Duration::from_secs(10),
        "the old admin listener closed",
        || !admin_live(first),
    );

    // A busy address: the reload is refused naming the field, and the
    // admin listener stays where it was.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap();
    std::fs::write(&path, with_admin(&busy_addr.to_string())).unwrap();
    s.gw.signal(libc::SIGHUP);
    wait_until(Duration::from_secs(10), "the refused reload", || {
        s.gw.stderr()
            .contains(&format!("admin.address: cannot listen on {busy_addr}"))
    });
    assert!(admin_live(second), "{}", s.gw.stderr());
    drop(busy);

    // No [admin] table: the listener stops.
    let (head, tail) = text.split_once("[admin]\n").unwrap();
    let rest = tail.split_once('\n').map_or("", |(_, r)| r);
    std::fs::write(&path, format!("{head}{rest}")).unwrap();
    s.gw.signal(libc::SIGHUP);
    wait_until(
        Duration::from_secs(10),
        "the admin listener stopped",
        || !admin_live(second),
    );
    s.curl_ok(&["-o", "/dev/null"], "/bytes/1");
}
