//! Distributed tracing through the real binary, checked by decoders made
//! by others: a collector (tests/python/trace_collector.py) decodes what
//! meshgate posts with the official `opentelemetry-proto` package (OTLP
//! protobuf, and OTLP JSON parsed into the same message) and checks Zipkin
//! v2 JSON against the published span shape; the upstream echoes the head
//! it received, so the trace context meshgate injected is read back; two
//! gateways in a row make one trace with the right parent links.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use harness::gateway::run_to_exit;
use harness::{GatewayConfig, curl, describe, free_port, wait_until, workspace_root};
use serde_json::Value;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// The Python with `opentelemetry-proto`, made by scripts/test.sh.
fn python() -> PathBuf {
    let venv = workspace_root().join("target/venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: scripts/test.sh creates it (python3 -m venv target/venv; pip install opentelemetry-proto)",
        venv.display()
    );
    venv
}

/// A running trace collector.
struct Collector {
    child: Child,
    port: u16,
    out: PathBuf,
}

impl Collector {
    fn start(dir: &Path, fail_first: u32) -> Collector {
        let out = dir.join(format!("spans-{}.jsonl", free_port()));
        let script = workspace_root().join("tests/python/trace_collector.py");
        let mut child = Command::new(python())
            .arg(&script)
            .arg("--out")
            .arg(&out)
            .args(["--fail-first", &fail_first.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the trace collector");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("the collector's port");
        let port = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("collector said {line:?}"));
        Collector { child, port, out }
    }

    fn otlp(&self) -> String {
        format!("http://127.0.0.1:{}/v1/traces", self.port)
    }

    fn zipkin(&self) -> String {
        format!("http://127.0.0.1:{}/api/v2/spans", self.port)
    }

    /// Every line written so far (decoded spans, or decode errors).
    fn lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("collector lines are JSON"))
            .collect()
    }

    /// Waits for `n` spans of `format`; panics on a decode error.
    fn spans(&self, format: &str, n: usize) -> Vec<Value> {
        let mut found = Vec::new();
        wait_until(
            Duration::from_secs(20),
            &format!("{n} {format} spans"),
            || {
                let lines = self.lines();
                if let Some(e) = lines.iter().find(|l| l.get("error").is_some()) {
                    panic!("the collector could not decode a post: {e}");
                }
                found = lines
                    .into_iter()
                    .filter(|l| l["format"] == format)
                    .collect();
                found.len() >= n
            },
        );
        found
    }

    /// Posts received (path and content type), including refused ones.
    fn posts(&self) -> Vec<String> {
        let path = format!("{}.posts", self.out.display());
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `curl URL` with headers; the body (the head the upstream received, for
/// `/headers`).
fn get(url: &str, headers: &[&str]) -> String {
    let mut args = vec!["--fail".to_owned()];
    for h in headers {
        args.push("-H".into());
        args.push((*h).into());
    }
    args.push(url.into());
    let out = curl(&args);
    assert!(out.status.success(), "curl {url}: {}", describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of field `name` in a raw request head.
fn field<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn tracing_table(extra: &str) -> String {
    format!("\n[tracing]\nsample_percent = 100.0\n{extra}\n")
}

fn by_kind<'a>(spans: &'a [Value], kind: &Value) -> &'a Value {
    spans
        .iter()
        .find(|s| &s["kind"] == kind)
        .unwrap_or_else(|| panic!("no span of kind {kind}: {spans:?}"))
}

#[test]
fn spans_decode_with_opentelemetry_proto_and_match_zipkin_v2() {
    let dir = harness::TempDir::new();
    let collector = Collector::start(dir.path(), 0);
    let up = harness::Upstream::start("origin");
    let table = tracing_table(&format!(
        "propagation = [\"w3c\", \"b3\"]\nservice_name = \"edge-gateway\"\n\
         otlp = {{ endpoint = \"{}\", encoding = \"protobuf\" }}\n\
         zipkin = {{ endpoint = \"{}\" }}",
        collector.otlp(),
        collector.zipkin()
    ));
    let text = GatewayConfig::plain(&[up.addr()]).to_toml() + &table;
    let gw = harness::Gateway::start(&text, dir.path());
    let traceparent = format!("traceparent: 00-{TRACE}-{CLIENT_SPAN}-01");
    let head = get(&gw.url("/headers"), &[&traceparent, "tracestate: vendor=7"]);

    let otlp = collector.spans("otlp-protobuf", 2);
    assert_eq!(otlp.len(), 2, "{otlp:?}");
    let server = by_kind(&otlp, &Value::from(2));
    let client = by_kind(&otlp, &Value::from(3));
    for s in [server, client] {
        assert_eq!(s["trace_id"], TRACE);
        assert_eq!(s["service"], "edge-gateway");
        assert_eq!(s["scope"], "meshgate");
        assert!(s["start"].as_u64().unwrap() <= s["end"].as_u64().unwrap());
    }
    assert_eq!(server["parent_span_id"], CLIENT_SPAN);
    assert_eq!(server["name"], "GET main#0");
    assert_eq!(server["attributes"]["http.response.status_code"], 200);
    assert_eq!(server["attributes"]["meshgate.cluster"], "backend");
    assert_eq!(server["attributes"]["url.path"], "/headers");
    assert_eq!(client["parent_span_id"], server["span_id"]);
    assert_eq!(
        client["attributes"]["server.port"],
        i64::from(up.addr().port())
    );
    // The upstream got the client span as its parent, in both formats.
    let client_span = client["span_id"].as_str().unwrap();
    assert_eq!(
        field(&head, "traceparent"),
        Some(format!("00-{TRACE}-{client_span}-01").as_str()),
        "{head}"
    );
    assert_eq!(field(&head, "tracestate"), Some("vendor=7"));
    assert_eq!(field(&head, "x-b3-traceid"), Some(TRACE));
    assert_eq!(field(&head, "x-b3-spanid"), Some(client_span));
    assert_eq!(
        field(&head, "x-b3-parentspanid"),
        server["span_id"].as_str()
    );

    // The same spans in Zipkin v2.
    let zipkin = collector.spans("zipkin", 2);
    let z_server = by_kind(&zipkin, &Value::from("SERVER"));
    let z_client = by_kind(&zipkin, &Value::from("CLIENT"));
    assert_eq!(z_server["span_id"], server["span_id"]);
    assert_eq!(z_server["parent_span_id"], CLIENT_SPAN);
    assert_eq!(z_client["parent_span_id"], server["span_id"]);
    assert_eq!(z_server["service"], "edge-gateway");
    assert_eq!(z_server["attributes"]["http.response.status_code"], "200");
}

#[test]
fn a_tcp_session_is_a_session_span_and_a_connect_span() {
    use std::io::{Read, Write};
    let dir = harness::TempDir::new();
    let collector = Collector::start(dir.path(), 0);
    let echo = harness::bench::BenchUpstream::start(&["--tcp-echo"]);
    let table = tracing_table(&format!(
        "otlp = {{ endpoint = \"{}\", encoding = \"protobuf\" }}",
        collector.otlp()
    ));
    let text = GatewayConfig::plain(&[echo.addr()])
        .protocol("tcp")
        .to_toml()
        + &table;
    let gw = harness::Gateway::start(&text, dir.path());
    let mut conn = std::net::TcpStream::connect(gw.addr(harness::gateway::LISTENER)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.write_all(b"ping").unwrap();
    let mut echoed = [0u8; 4];
    conn.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"ping");
    drop(conn);

    let spans = collector.spans("otlp-protobuf", 2);
    let server = by_kind(&spans, &Value::from(2));
    let client = by_kind(&spans, &Value::from(3));
    assert_eq!(server["name"], "TCP main#0", "{spans:?}");
    assert_eq!(server["attributes"]["network.transport"], "tcp");
    assert!(
        server["attributes"].get("http.request.method").is_none(),
        "{server}"
    );
    assert_eq!(
        server["parent_span_id"], "",
        "a session starts its own trace"
    );
    assert_eq!(client["name"], "connect backend");
    assert_eq!(client["parent_span_id"], server["span_id"]);
    assert_eq!(client["trace_id"], server["trace_id"]);
    assert_eq!(
        client["attributes"]["server.port"],
        i64::from(echo.addr().port())
    );
}

#[test]
fn a_trace_through_two_gateways_in_a_row_is_one_trace() {
    let dir = harness::TempDir::new();
    let collector = Collector::start(dir.path(), 0);
    let up = harness::Upstream::start("origin");
    let inner_text = GatewayConfig::plain(&[up.addr()]).to_toml()
        + &tracing_table(&format!(
            "sample_percent = 0.0\nservice_name = \"inner\"\notlp = {{ endpoint = \"{}\", encoding = \"json\" }}",
            collector.otlp()
        ));
    // `sample_percent` twice is a TOML error: the inner table sets its own.
    let inner_text = inner_text.replacen("sample_percent = 100.0\n", "", 1);
    let inner = harness::Gateway::start(&inner_text, dir.path());
    let inner_addr: SocketAddr = inner.addr(harness::gateway::LISTENER);
    let edge_text = GatewayConfig::plain(&[inner_addr]).to_toml()
        + &tracing_table(&format!(
            "service_name = \"edge\"\notlp = {{ endpoint = \"{}\" }}",
            collector.otlp()
        ));
    let edge = harness::Gateway::start(&edge_text, dir.path());
    let traceparent = format!("traceparent: 00-{TRACE}-{CLIENT_SPAN}-01");
    get(&edge.url("/headers"), &[&traceparent]);

    let edge_spans = collector.spans("otlp-protobuf", 2);
    // The inner gateway samples nothing by itself (0 %): it follows the
    // edge's sampled context.
    let inner_spans = collector.spans("otlp-json", 2);
    let all: Vec<&Value> = edge_spans.iter().chain(&inner_spans).collect();
    assert!(all.iter().all(|s| s["trace_id"] == TRACE), "{all:?}");
    let edge_server = by_kind(&edge_spans, &Value::from(2));
    let edge_client = by_kind(&edge_spans, &Value::from(3));
    let inner_server = by_kind(&inner_spans, &Value::from(2));
    let inner_client = by_kind(&inner_spans, &Value::from(3));
    assert_eq!(edge_server["service"], "edge");
    assert_eq!(inner_server["service"], "inner");
    // client → edge server → edge try → inner server → inner try.
    assert_eq!(edge_server["parent_span_id"], CLIENT_SPAN);
    assert_eq!(edge_client["parent_span_id"], edge_server["span_id"]);
    assert_eq!(inner_server["parent_span_id"], edge_client["span_id"]);
    assert_eq!(inner_client["parent_span_id"], inner_server["span_id"]);
    let ids: std::collections::HashSet<_> = all.iter().map(|s| &s["span_id"]).collect();
    assert_eq!(ids.len(), 4, "four distinct spans");
}

#[test]
fn a_collector_that_is_down_costs_only_dropped_spans_and_retries_recover() {
    let dir = harness::TempDir::new();
    let up = harness::Upstream::start("origin");
    // Nothing listens there.
    let dead = format!("http://127.0.0.1:{}/v1/traces", free_port());
    let text = GatewayConfig::plain(&[up.addr()]).admin().to_toml()
        + &tracing_table(&format!(
            "otlp = {{ endpoint = \"{dead}\", timeout_ms = 200 }}"
        ));
    let gw = harness::Gateway::start(&text, dir.path());
    for _ in 0..20 {
        get(&gw.url("/headers"), &[]);
    }
    let dropped = "meshgate_trace_spans_dropped_total{reason=\"export_failed\"}";
    wait_until(Duration::from_secs(20), "40 spans counted dropped", || {
        let out = curl(&["-s", &gw.admin_url("/metrics")]);
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| l.strip_prefix(dropped))
            .and_then(|v| v.trim().parse::<u64>().ok())
            == Some(40)
    });
    assert_eq!(up.served(), 20, "every request was answered");
    drop(gw);

    // A collector that fails twice, then takes the batch: the retries get
    // it there.
    let collector = Collector::start(dir.path(), 2);
    let text = GatewayConfig::plain(&[up.addr()]).to_toml()
        + &tracing_table(&format!(
            "otlp = {{ endpoint = \"{}\", encoding = \"json\" }}",
            collector.otlp()
        ));
    let gw = harness::Gateway::start(&text, dir.path());
    get(&gw.url("/headers"), &[]);
    let spans = collector.spans("otlp-json", 2);
    assert_eq!(spans.len(), 2);
    assert_eq!(collector.posts().len(), 3, "two refused, one taken");
}

#[test]
fn bad_tracing_configs_are_refused_naming_the_field() {
    let dir = harness::TempDir::new();
    let up = harness::Upstream::start("origin");
    let base = GatewayConfig::plain(&[up.addr()]).to_toml();
    for (table, field, says) in [
        (
            "sample_percent = 101",
            "tracing.sample_percent",
            "out of range",
        ),
        ("propagation = []", "tracing.propagation", "at least one"),
        (
            "propagation = [\"w3c\", \"w3c\"]",
            "tracing.propagation[1]",
            "twice",
        ),
        (
            "propagation = [\"jaeger\"]",
            "tracing.propagation",
            "unknown variant",
        ),
        (
            "otlp = { endpoint = \"https://collector:4318/v1/traces\" }",
            "tracing.otlp.endpoint",
            "https collectors are not supported",
        ),
        (
            "zipkin = { endpoint = \"http://127.0.0.1:99999/\" }",
            "tracing.zipkin.endpoint",
            "port",
        ),
        (
            "otlp = { endpoint = \"http://127.0.0.1:1/\", encoding = \"thrift\" }",
            "tracing.otlp.encoding",
            "unknown variant",
        ),
        (
            "otlp = { endpoint = \"http://127.0.0.1:1/\", timeout_ms = 0 }",
            "tracing.otlp.timeout_ms",
            "out of range",
        ),
        ("service_name = \"\"", "tracing.service_name", "1..=255"),
        (
            "force_header = \"bad header\"",
            "tracing.force_header",
            "not a header name",
        ),
        ("sampling = 1", "tracing", "unknown field"),
    ] {
        let text = format!("{base}\n[tracing]\n{table}\n");
        let (out, _) = run_to_exit(&["run"], Some(&text), dir.path(), Duration::from_secs(20));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{table} was accepted");
        assert!(err.contains(field) && err.contains(says), "{table}: {err}");
    }
}
