//! [`Gateway`]: the real `meshgate run` as a child process, and
//! [`GatewayConfig`], which writes the TOML the tests need.
//!
//! Readiness is what the daemon prints on stdout, one line per listener:
//! `listening <name> <http|https> <address>`, with the port the kernel chose
//! for `127.0.0.1:0`. stderr goes to a file in the test's folder and is
//! quoted in every panic about the gateway. Dropping the handle sends
//! SIGTERM to that child's PID, waits up to 5 s, then kills it.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::pki::{Pki, path_str};

/// How long `meshgate run` may take to print its `listening` lines.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a stopped gateway may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The listener name [`GatewayConfig`] writes.
pub const LISTENER: &str = "main";

static CONFIG_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The `meshgate` binary: `$MESHGATE_BIN`, else `<workspace>/target/debug/meshgate`.
/// Panics, saying how to build it, when the file is missing.
pub fn meshgate_bin() -> PathBuf {
    let path = match std::env::var_os("MESHGATE_BIN") {
        Some(p) => PathBuf::from(p),
        None => crate::workspace_root().join("target/debug/meshgate"),
    };
    assert!(
        path.is_file(),
        "meshgate binary not found at {}: build it with cargo build -p meshgate-control --bins \
         (or point MESHGATE_BIN at it)",
        path.display()
    );
    path
}

/// A `Command` for the binary, stdin closed.
pub fn meshgate_command() -> Command {
    let mut cmd = Command::new(meshgate_bin());
    cmd.stdin(Stdio::null());
    cmd
}

/// Quotes `s` as a TOML basic string.
pub fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `[listeners.tls]` settings.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    /// `"require"`, `"optional"`, `"none"`; `None`: not written.
    pub client_auth: Option<String>,
    /// `"1.2"` or `"1.3"`; `None`: not written.
    pub min_version: Option<String>,
    /// `alpn`; `None`: not written (the gateway offers `http/1.1`).
    pub alpn: Option<Vec<String>>,
}

/// One listener named [`LISTENER`] with one route to one cluster, as TOML.
/// Every optional setting is written only when set, so the daemon's
/// defaults apply otherwise.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub shards: usize,
    pub address: String,
    pub tls: Option<TlsSettings>,
    pub max_header_bytes: Option<usize>,
    pub header_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub path_prefix: Option<String>,
    pub route_timeout_ms: Option<u64>,
    pub endpoints: Vec<SocketAddr>,
    pub connect_timeout_ms: Option<u64>,
    /// `clusters.lb` (default: the gateway's, `least_request`).
    pub lb: Option<String>,
    /// `listeners.protocol` (default `http`).
    pub protocol: Option<String>,
    /// Raw TOML appended to the route's table (`[routes.retry]`, ...).
    pub route_extra: String,
    /// `listeners.access_log`, as an inline table.
    pub access_log: Option<String>,
    /// An `[admin]` listener on 127.0.0.1:0 ([`Gateway::admin_url`]).
    pub admin: bool,
    /// Raw TOML appended to the listener (sub-tables such as
    /// `[listeners.http2]`).
    pub listener_extra: String,
    /// Raw TOML appended to the cluster (keys, then sub-tables such as
    /// `[clusters.tls]`).
    pub cluster_extra: String,
}

impl GatewayConfig {
    /// A plaintext HTTP listener on 127.0.0.1:0 routing everything to `endpoints`.
    pub fn plain(endpoints: &[SocketAddr]) -> GatewayConfig {
        GatewayConfig {
            shards: 2,
            address: "127.0.0.1:0".into(),
            tls: None,
            max_header_bytes: None,
            header_timeout_ms: None,
            idle_timeout_ms: None,
            path_prefix: None,
            route_timeout_ms: None,
            endpoints: endpoints.to_vec(),
            connect_timeout_ms: None,
            lb: None,
            protocol: None,
            route_extra: String::new(),
            access_log: None,
            admin: false,
            listener_extra: String::new(),
            cluster_extra: String::new(),
        }
    }

    /// `listeners.access_log = <inline table>`.
    pub fn access_log(mut self, table: &str) -> Self {
        self.access_log = Some(table.to_owned());
        self
    }

    /// Turns the admin listener on (127.0.0.1, a port the kernel picks).
    pub fn admin(mut self) -> Self {
        self.admin = true;
        self
    }

    /// `listeners.protocol`, e.g. `tcp`.
    pub fn protocol(mut self, protocol: &str) -> Self {
        self.protocol = Some(protocol.into());
        self
    }

    /// Appends raw TOML to the route (sub-tables such as `[routes.retry]`).
    pub fn route_extra(mut self, toml: &str) -> Self {
        self.route_extra.push_str(toml);
        self
    }

    /// An mTLS listener (`client_auth = "require"`, the test CA) on
    /// 127.0.0.1:0 routing everything to `endpoints`.
    pub fn mtls(pki: &Pki, endpoints: &[SocketAddr]) -> GatewayConfig {
        GatewayConfig {
            tls: Some(TlsSettings {
                cert: pki.server_cert.clone(),
                key: pki.server_key.clone(),
                client_ca: Some(pki.ca.clone()),
                client_auth: Some("require".into()),
                min_version: None,
                alpn: None,
            }),
            ..GatewayConfig::plain(endpoints)
        }
    }

    fn tls_mut(&mut self) -> &mut TlsSettings {
        self.tls
            .as_mut()
            .expect("TLS setting on a plaintext GatewayConfig")
    }

    pub fn client_auth(mut self, auth: &str) -> Self {
        self.tls_mut().client_auth = Some(auth.into());
        self
    }

    /// `listeners.tls.alpn`, e.g. `["h2", "http/1.1"]`.
    pub fn alpn(mut self, protocols: &[&str]) -> Self {
        self.tls_mut().alpn = Some(protocols.iter().map(|p| (*p).to_owned()).collect());
        self
    }

    /// Appends raw TOML to the listener (sub-tables such as
    /// `[listeners.http2]`).
    /// Appends TOML to the cluster's table.
    pub fn cluster_extra(mut self, toml: &str) -> Self {
        self.cluster_extra.push_str(toml);
        self.cluster_extra.push('\n');
        self
    }

    pub fn listener_extra(mut self, toml: &str) -> Self {
        self.listener_extra.push_str(toml);
        self
    }

    pub fn min_version(mut self, version: &str) -> Self {
        self.tls_mut().min_version = Some(version.into());
        self
    }

    pub fn address(mut self, address: impl ToString) -> Self {
        self.address = address.to_string();
        self
    }

    pub fn shards(mut self, n: usize) -> Self {
        self.shards = n;
        self
    }

    pub fn max_header_bytes(mut self, n: usize) -> Self {
        self.max_header_bytes = Some(n);
        self
    }

    pub fn header_timeout_ms(mut self, ms: u64) -> Self {
        self.header_timeout_ms = Some(ms);
        self
    }

    pub fn idle_timeout_ms(mut self, ms: u64) -> Self {
        self.idle_timeout_ms = Some(ms);
        self
    }

    pub fn path_prefix(mut self, prefix: &str) -> Self {
        self.path_prefix = Some(prefix.into());
        self
    }

    pub fn route_timeout_ms(mut self, ms: u64) -> Self {
        self.route_timeout_ms = Some(ms);
        self
    }

    pub fn connect_timeout_ms(mut self, ms: u64) -> Self {
        self.connect_timeout_ms = Some(ms);
        self
    }

    /// The configuration file's text.
    pub fn to_toml(&self) -> String {
        let mut t = String::new();
        let mut line = |s: String| {
            t.push_str(&s);
            t.push('\n');
        };
        line("[dataplane]".into());
        line(format!("shards = {}", self.shards));
        line(String::new());
        line("[[listeners]]".into());
        line(format!("name = {}", toml_str(LISTENER)));
        line(format!("address = {}", toml_str(&self.address)));
        if let Some(p) = &self.protocol {
            line(format!("protocol = {}", toml_str(p)));
        }
        if let Some(n) = self.max_header_bytes {
            line(format!("max_header_bytes = {n}"));
        }
        if let Some(ms) = self.header_timeout_ms {
            line(format!("header_timeout_ms = {ms}"));
        }
        if let Some(ms) = self.idle_timeout_ms {
            line(format!("idle_timeout_ms = {ms}"));
        }
        if let Some(table) = &self.access_log {
            line(format!("access_log = {table}"));
        }
        if let Some(tls) = &self.tls {
            line("[listeners.tls]".into());
            line(format!("cert = {}", toml_str(&path_str(&tls.cert))));
            line(format!("key = {}", toml_str(&path_str(&tls.key))));
            if let Some(ca) = &tls.client_ca {
                line(format!("client_ca = {}", toml_str(&path_str(ca))));
            }
            if let Some(auth) = &tls.client_auth {
                line(format!("client_auth = {}", toml_str(auth)));
            }
            if let Some(v) = &tls.min_version {
                line(format!("min_version = {}", toml_str(v)));
            }
            if let Some(alpn) = &tls.alpn {
                let names: Vec<String> = alpn.iter().map(|a| toml_str(a)).collect();
                line(format!("alpn = [{}]", names.join(", ")));
            }
        }
        if !self.listener_extra.is_empty() {
            line(self.listener_extra.clone());
        }
        line(String::new());
        line("[[routes]]".into());
        line(format!("listener = {}", toml_str(LISTENER)));
        line("cluster = \"backend\"".into());
        if let Some(ms) = self.route_timeout_ms {
            line(format!("timeout_ms = {ms}"));
        }
        if let Some(prefix) = &self.path_prefix {
            line("[routes.match]".into());
            line(format!("path_prefix = {}", toml_str(prefix)));
        }
        if !self.route_extra.is_empty() {
            line(self.route_extra.clone());
        }
        line(String::new());
        line("[[clusters]]".into());
        line("name = \"backend\"".into());
        let endpoints: Vec<String> = self
            .endpoints
            .iter()
            .map(|e| toml_str(&e.to_string()))
            .collect();
        line(format!("endpoints = [{}]", endpoints.join(", ")));
        if let Some(ms) = self.connect_timeout_ms {
            line(format!("connect_timeout_ms = {ms}"));
        }
        if let Some(lb) = &self.lb {
            line(format!("lb = {}", toml_str(lb)));
        }
        if !self.cluster_extra.is_empty() {
            line(self.cluster_extra.clone());
        }
        if self.admin {
            line(String::new());
            line("[admin]".into());
            line("address = \"127.0.0.1:0\"".into());
        }
        t
    }
}

/// Writes `text` to a fresh `meshgate-<n>.toml` in `dir`.
pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let n = CONFIG_COUNTER.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!("meshgate-{n}.toml"));
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

/// `text` with a `[control]` socket in `dir` when it has none, and the
/// control socket's path (the one it names, when it has one).
fn with_control_socket(text: &str, dir: &Path) -> (String, Option<PathBuf>) {
    let mut in_control = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_control = line == "[control]";
        } else if in_control && let Some(v) = line.strip_prefix("socket") {
            let v = v.trim_start().trim_start_matches('=').trim();
            return (text.to_owned(), Some(PathBuf::from(v.trim_matches('"'))));
        }
    }
    if text.lines().any(|l| l.trim() == "[control]") {
        return (text.to_owned(), None);
    }
    let n = CONFIG_COUNTER.fetch_add(1, Ordering::Relaxed);
    let socket = dir.join(format!("control-{n}.sock"));
    let text = format!(
        "{text}\n[control]\nsocket = {}\n",
        toml_str(&path_str(&socket))
    );
    (text, Some(socket))
}

/// A listener as announced on stdout.
#[derive(Debug, Clone)]
pub struct Announced {
    pub name: String,
    pub scheme: String,
    pub address: SocketAddr,
}

/// A running `meshgate run`.
#[derive(Debug)]
pub struct Gateway {
    child: Child,
    config_path: PathBuf,
    stderr_path: PathBuf,
    listeners: Vec<Announced>,
    /// The control socket (added to the config when it has none).
    control: Option<PathBuf>,
    /// The admin listener, as announced.
    admin: Option<SocketAddr>,
}

impl Gateway {
    /// Writes `config_toml` into `dir`, starts `meshgate run --config FILE`
    /// and waits until every `[[listeners]]` entry is announced. A config
    /// without a `[control]` table gets a control socket in `dir`, so the
    /// test can read the gateway's counters ([`Gateway::stats`]).
    pub fn start(config_toml: &str, dir: &Path) -> Gateway {
        let (text, control) = with_control_socket(config_toml, dir);
        let config_path = write_config(dir, &text);
        let stderr_path = config_path.with_extension("stderr");
        let expected = config_toml
            .lines()
            .filter(|l| l.trim() == "[[listeners]]")
            .count();
        let stderr = File::create(&stderr_path)
            .unwrap_or_else(|e| panic!("create {}: {e}", stderr_path.display()));
        let mut child = meshgate_command()
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", meshgate_bin().display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel::<String>();
        // Reads stdout to the end so the daemon never blocks on a full pipe.
        std::thread::Builder::new()
            .name("meshgate-stdout".into())
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let _ = tx.send(line);
                }
            })
            .expect("spawn stdout reader");

        let mut gw = Gateway {
            child,
            config_path,
            stderr_path,
            listeners: Vec::new(),
            control,
            admin: None,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut stdout_seen = Vec::new();
        while gw.listeners.len() < expected {
            if let Ok(Some(status)) = gw.child.try_wait() {
                // Collect what is left on stdout before reporting.
                while let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
                    stdout_seen.push(l);
                }
                panic!(
                    "meshgate exited ({status}) before it was ready\n--- stdout:\n{}\n--- stderr:\n{}",
                    stdout_seen.join("\n"),
                    gw.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "meshgate did not announce {expected} listener(s) within {READY_TIMEOUT:?}\n\
                 --- stdout:\n{}\n--- stderr:\n{}",
                stdout_seen.join("\n"),
                gw.stderr()
            );
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => {
                    if let Some(l) = parse_announcement(&line) {
                        gw.listeners.push(l);
                    }
                    if let Some(a) = line.strip_prefix("admin http ") {
                        gw.admin = a.trim().parse().ok();
                    }
                    stdout_seen.push(line);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                // stdout closed: the next try_wait reports the exit.
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        gw
    }

    /// `http://<admin address><path>`; panics when the config has no
    /// `[admin]` table.
    pub fn admin_url(&self, path: &str) -> String {
        let a = self.admin.expect("the gateway announced no admin listener");
        format!("http://{a}{path}")
    }

    /// Where listener `name` listens.
    pub fn addr(&self, name: &str) -> SocketAddr {
        self.listener(name).address
    }

    /// `http` or `https`, as announced.
    pub fn scheme(&self, name: &str) -> &str {
        &self.listener(name).scheme
    }

    /// `<scheme>://127.0.0.1:<port><path>` for listener [`LISTENER`].
    pub fn url(&self, path: &str) -> String {
        let l = self.listener(LISTENER);
        format!("{}://{}{path}", l.scheme, l.address)
    }

    fn listener(&self, name: &str) -> &Announced {
        self.listeners
            .iter()
            .find(|l| l.name == name)
            .unwrap_or_else(|| panic!("no listener {name:?} announced: {:?}", self.listeners))
    }

    /// The control socket's path (every gateway [`Gateway::start`]s with one
    /// unless its config names none).
    pub fn control_socket(&self) -> Option<&Path> {
        self.control.as_deref()
    }

    /// The gateway's counters summed over shards (`meshctl stats`'s
    /// `total`), read over the control socket.
    pub fn stats(&self) -> serde_json::Value {
        self.stats_report()["total"].clone()
    }

    /// The whole `stats` reply: totals, latency, and per listener, route
    /// and cluster.
    pub fn stats_report(&self) -> serde_json::Value {
        use std::io::Write;
        let path = self
            .control
            .as_ref()
            .expect("this gateway's config has no control socket");
        let mut conn = std::os::unix::net::UnixStream::connect(path)
            .unwrap_or_else(|e| panic!("control socket {}: {e}", path.display()));
        conn.write_all(b"{\"id\":1,\"command\":\"stats\"}\n")
            .expect("write to the control socket");
        let mut line = String::new();
        BufReader::new(conn)
            .read_line(&mut line)
            .expect("read the control socket");
        let reply: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("control socket reply {line:?}: {e}"));
        reply["result"].clone()
    }

    /// One counter of [`Gateway::stats`].
    pub fn counter(&self, name: &str) -> u64 {
        self.stats()[name]
            .as_u64()
            .unwrap_or_else(|| panic!("no counter {name:?}"))
    }

    /// Waits until no downstream connection is open: every connection the
    /// test made has been served to its end and closed by the gateway.
    pub fn wait_idle(&self) {
        crate::wait_until(
            Duration::from_secs(10),
            "the gateway has no open connection",
            || self.counter("connections_active") == 0,
        );
    }

    pub fn listeners(&self) -> &[Announced] {
        &self.listeners
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Everything the daemon wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `signal` (e.g. `libc::SIGHUP`) to the daemon; panics if it
    /// already exited.
    pub fn signal(&mut self, signal: libc::c_int) {
        assert!(
            self.is_running(),
            "meshgate is not running\n--- stderr:\n{}",
            self.stderr()
        );
        signal_child(&self.child, signal);
    }

    /// SIGTERM, then waits up to 5 s; `None` if it had to be killed.
    pub fn stop(mut self) -> Option<ExitStatus> {
        self.terminate()
    }

    fn terminate(&mut self) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        signal_child(&self.child, libc::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.terminate();
    }
}

fn parse_announcement(line: &str) -> Option<Announced> {
    let mut parts = line.split_whitespace();
    let (Some("listening"), Some(name), Some(scheme), Some(addr), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    if scheme != "http" && scheme != "https" {
        return None;
    }
    Some(Announced {
        name: name.to_owned(),
        scheme: scheme.to_owned(),
        address: addr.parse().ok()?,
    })
}

/// Sends `signal` to `child`, which must not have been reaped yet.
#[allow(unsafe_code)]
pub fn signal_child(child: &Child, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        return;
    };
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    // The PID is our own child's; callers hold its `Child` and only signal
    // after `try_wait` returned `None`, so it has not been reaped and the
    // PID cannot belong to another process.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Runs `meshgate` with `args` (and the config written to `dir` when
/// `config` is given, appended as `--config FILE`) until it exits, killing
/// it after `limit`. Returns its output and the config path.
pub fn run_to_exit(
    args: &[&str],
    config: Option<&str>,
    dir: &Path,
    limit: Duration,
) -> (Output, Option<PathBuf>) {
    let path = config.map(|text| write_config(dir, text));
    let mut cmd = meshgate_command();
    cmd.args(args);
    if let Some(p) = &path {
        cmd.arg("--config").arg(p);
    }
    let out_path = dir.join(format!(
        "run-{}.out",
        CONFIG_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let err_path = out_path.with_extension("err");
    let mut child = cmd
        .stdout(File::create(&out_path).expect("create stdout file"))
        .stderr(File::create(&err_path).expect("create stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn meshgate: {e}"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "meshgate {} did not exit within {limit:?}\n--- stderr:\n{}",
                args.join(" "),
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = Output {
        status,
        stdout: std::fs::read(&out_path).unwrap_or_default(),
        stderr: std::fs::read(&err_path).unwrap_or_default(),
    };
    (output, path)
}

/// Runs `meshgate check --config <file with text>` (10 s limit).
pub fn check(text: &str, dir: &Path) -> (Output, PathBuf) {
    let (out, path) = run_to_exit(&["check"], Some(text), dir, Duration::from_secs(10));
    (out, path.expect("config path"))
}
