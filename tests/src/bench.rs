//! [`BenchUpstream`] (`meshbench upstream` as a child process) and
//! [`meshbench`] (a load run whose `--json` report is returned): the tools
//! the resilience tests use to put load and faults on a gateway.
//!
//! Both run the `meshbench` binary next to `meshgate` in the target folder
//! (`$MESHBENCH_BIN` overrides); `cargo build --workspace --bins` builds it.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};

use crate::gateway::meshgate_bin;

/// The `meshbench` binary.
pub fn meshbench_bin() -> PathBuf {
    let path = match std::env::var_os("MESHBENCH_BIN") {
        Some(p) => PathBuf::from(p),
        None => meshgate_bin().with_file_name("meshbench"),
    };
    assert!(
        path.is_file(),
        "meshbench binary not found at {}: build it with cargo build --workspace --bins",
        path.display()
    );
    path
}

/// A running `meshbench upstream`; killed (by PID) when dropped.
#[derive(Debug)]
pub struct BenchUpstream {
    child: Option<Child>,
    stdout: Option<BufReader<ChildStdout>>,
    addr: SocketAddr,
    args: Vec<String>,
    /// Rewritten by the upstream every 100 ms with its served counts.
    report: PathBuf,
}

static UPSTREAMS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// What an upstream said it served, at exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    pub served: u64,
    pub failed_503: u64,
    pub resets: u64,
    /// Bytes sent back by `--tcp-echo`.
    pub echoed_bytes: u64,
}

impl BenchUpstream {
    /// Starts `meshbench upstream --listen 127.0.0.1:0 ARGS`.
    pub fn start(args: &[&str]) -> BenchUpstream {
        Self::start_at("127.0.0.1:0".parse().unwrap(), args)
    }

    /// Starts on a given address (to restart a killed upstream in place).
    pub fn start_at(addr: SocketAddr, args: &[&str]) -> BenchUpstream {
        let n = UPSTREAMS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let report = std::env::temp_dir().join(format!(
            "meshbench-upstream-{}-{n}.json",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&report);
        let mut child = Command::new(meshbench_bin())
            .args(["upstream", "--threads", "1", "--listen", &addr.to_string()])
            .arg("--report-file")
            .arg(&report)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start meshbench upstream");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("listening line");
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from meshbench upstream: {line:?}"));
        BenchUpstream {
            child: Some(child),
            stdout: Some(stdout),
            addr,
            args: args.iter().map(|s| s.to_string()).collect(),
            report,
        }
    }

    /// Requests served by the current process so far (its report file,
    /// rewritten every 100 ms; 0 before the first write).
    pub fn served_now(&self) -> u64 {
        std::fs::read_to_string(&self.report)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["served"].as_u64())
            .unwrap_or(0)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Kills it at once (SIGKILL): its connections die with it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.stdout = None;
    }

    /// Starts it again on the same address with the same arguments
    /// (retrying while the port is still held by the dying process).
    pub fn restart(&mut self) {
        self.kill();
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let addr = self.addr;
        for attempt in 0.. {
            let started = std::panic::catch_unwind(|| BenchUpstream::start_at(addr, &args));
            match started {
                Ok(mut fresh) => {
                    self.child = fresh.child.take();
                    self.stdout = fresh.stdout.take();
                    self.report = std::mem::take(&mut fresh.report);
                    return;
                }
                Err(_) if attempt < 50 => std::thread::sleep(std::time::Duration::from_millis(100)),
                Err(e) => std::panic::resume_unwind(e),
            }
        }
    }

    /// SIGTERM, then what it printed it served.
    pub fn stop(mut self) -> Served {
        let mut child = self.child.take().expect("upstream running");
        terminate(child.id());
        let mut rest = String::new();
        if let Some(mut out) = self.stdout.take() {
            let _ = out.read_to_string(&mut rest);
        }
        let _ = child.wait();
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

/// SIGTERM to a child we started.
fn terminate(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

impl Drop for BenchUpstream {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.report);
    }
}

/// A `meshbench` load run started in the background.
#[derive(Debug)]
pub struct LoadRun {
    child: Child,
    report: PathBuf,
}

static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl LoadRun {
    /// Starts `meshbench -q ARGS --json FILE` (the URL among `args`).
    pub fn start(args: &[&str]) -> LoadRun {
        let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let report =
            std::env::temp_dir().join(format!("meshbench-{}-{n}.json", std::process::id()));
        let child = Command::new(meshbench_bin())
            .arg("-q")
            .args(args)
            .arg("--json")
            .arg(&report)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start meshbench");
        LoadRun { child, report }
    }

    /// Waits for the run and returns its JSON report.
    pub fn report(self) -> serde_json::Value {
        let out = self.child.wait_with_output().expect("meshbench output");
        let text = std::fs::read_to_string(&self.report).unwrap_or_default();
        let _ = std::fs::remove_file(&self.report);
        serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "meshbench wrote no JSON report ({e}); stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }
}

/// Runs `meshbench ARGS` to the end and returns its JSON report.
pub fn meshbench(args: &[&str]) -> serde_json::Value {
    LoadRun::start(args).report()
}
