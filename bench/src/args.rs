//! Command line of both tools: `meshbench [run] URL ...` (the load
//! generator) and `meshbench upstream ...` (the demo origin), plus the small
//! value parsers they need (durations like `5s`, target URLs).
//!
//! Parsing is pure (no I/O, no name resolution) so every rule is unit-tested
//! below; the target's host is resolved later, by [`crate::run`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// What `main` should do with the command line.
#[derive(Debug)]
pub enum Command {
    /// Generate load.
    Run(Box<RunArgs>),
    /// Serve as the demo upstream.
    Upstream(UpstreamArgs),
    /// Draw the percentile curves of `--json` reports.
    Plot(PlotArgs),
}

/// `meshbench plot A.json B.json ... -o latency.svg`: the latency
/// percentile curves of several runs in one SVG (log-scaled tail axis, as
/// HdrHistogram plots are read).
#[derive(Debug, Clone, Parser)]
#[command(name = "meshbench plot", version)]
pub struct PlotArgs {
    /// `--json` reports of `meshbench` runs; a curve each. `LABEL=FILE`
    /// names a curve (default: the file name without `.json`).
    #[arg(required = true)]
    pub reports: Vec<String>,
    /// The SVG file to write.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// Title above the plot.
    #[arg(long, default_value = "Latency by percentile")]
    pub title: String,
}

/// Splits off the subcommand: `upstream`, `run`, or a bare URL (= `run`).
pub fn parse_command<I, S>(args: I) -> Result<Command, clap::Error>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut args: Vec<String> = args.into_iter().map(Into::into).collect();
    let sub = args.get(1).cloned();
    match sub.as_deref() {
        Some("upstream") => {
            args.remove(1);
            args[0] = "meshbench upstream".into();
            UpstreamArgs::try_parse_from(args).map(Command::Upstream)
        }
        Some("plot") => {
            args.remove(1);
            args[0] = "meshbench plot".into();
            PlotArgs::try_parse_from(args).map(Command::Plot)
        }
        Some("run") => {
            args.remove(1);
            args[0] = "meshbench run".into();
            RunArgs::try_parse_from(args).map(|a| Command::Run(Box::new(a)))
        }
        _ => RunArgs::try_parse_from(args).map(|a| Command::Run(Box::new(a))),
    }
}

/// `meshbench [run] URL`: HTTP/1.1 and raw TCP load generator (see also `meshbench upstream --help`).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "meshbench",
    version,
    about = "HTTP/1.1 and raw TCP load generator (http, https, mTLS; tcp, tls); see `meshbench upstream --help` for the demo origin"
)]
pub struct RunArgs {
    /// Target: `http://host:port/path`, `https://...`; or `tcp://host:port`,
    /// `tls://host:port` for raw streams: each exchange writes one block of
    /// `--body-size` bytes (default 16 KiB) and reads it back from an echo
    /// server (`meshbench upstream --tcp-echo`), checking every byte.
    #[arg(value_parser = parse_target)]
    pub url: Target,
    /// Connections, in total over all threads.
    #[arg(short = 'c', long = "connections", default_value_t = 10)]
    pub connections: usize,
    /// How long to send requests (`500ms`, `5s`, `2m`); default 10s.
    #[arg(short = 'd', long, value_parser = parse_duration, conflicts_with = "requests")]
    pub duration: Option<Duration>,
    /// Send exactly this many requests, then stop.
    #[arg(short = 'n', long)]
    pub requests: Option<u64>,
    /// Worker threads (each with its own io_uring runtime).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Pin worker N to core N.
    #[arg(long)]
    pub pin: bool,
    /// Open loop: total requests per second, spread evenly over the
    /// connections; latency counts from the intended send time.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Request method (default GET; http and https only).
    #[arg(long)]
    pub method: Option<String>,
    /// Extra request header `Name: value` (repeatable).
    #[arg(short = 'H', long = "header", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// Request body of this many bytes (sent with Content-Length); tcp:
    /// the block size (0: 16 KiB).
    #[arg(long, default_value_t = 0)]
    pub body_size: usize,
    /// Request body read from this file (sent with Content-Length); tcp:
    /// the block.
    #[arg(long, conflicts_with = "body_size")]
    pub body_file: Option<PathBuf>,
    /// Request path instead of the URL's (repeatable: each connection goes
    /// through the paths in turn, starting at a different one).
    #[arg(long = "path")]
    pub paths: Vec<String>,
    /// A new TCP (and TLS) connection for every request.
    #[arg(long)]
    pub new_conn: bool,
    /// HTTP/2: over TLS negotiated with ALPN `h2` (https://), by prior
    /// knowledge on plain TCP (http://, "h2c").
    #[arg(long, conflicts_with = "new_conn")]
    pub h2: bool,
    /// HTTP/2 streams in flight per connection (each a closed loop, or
    /// sharing the connection's open-loop schedule).
    #[arg(long, default_value_t = 1, requires = "h2")]
    pub streams: usize,
    /// PEM file of CA certificates to verify the server with.
    #[arg(long)]
    pub cacert: Option<PathBuf>,
    /// PEM client certificate chain (mTLS); needs --key.
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,
    /// PEM private key of --cert.
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,
    /// Do not verify the server certificate.
    #[arg(long)]
    pub insecure: bool,
    /// Server name to send and verify (default: the URL's host).
    #[arg(long)]
    pub sni: Option<String>,
    /// Offer only TLS 1.3.
    #[arg(long, conflicts_with = "tls12")]
    pub tls13: bool,
    /// Offer only TLS 1.2.
    #[arg(long)]
    pub tls12: bool,
    /// Disable TLS session resumption (every handshake is a full one).
    #[arg(long)]
    pub no_resume: bool,
    /// Write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the latency percentile distribution to this file.
    #[arg(long)]
    pub hdr_out: Option<PathBuf>,
    /// Exit with status 1 when failed/attempted exceeds this (transport
    /// errors and 4xx/5xx responses fail). Default 1.0: never.
    #[arg(long, default_value_t = 1.0)]
    pub max_error_rate: f64,
    /// Per-request timeout (connect, handshake, request and response).
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u64,
    /// No live progress line.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

impl RunArgs {
    /// How long to send requests when neither -d nor -n is given.
    pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);
    /// The block of a tcp exchange when `--body-size` is 0.
    pub const DEFAULT_TCP_BLOCK: usize = 16 * 1024;

    /// The request method (GET unless `--method`).
    pub fn method(&self) -> &str {
        self.method.as_deref().unwrap_or("GET")
    }

    /// The stop condition.
    pub fn limit(&self) -> Limit {
        match (self.requests, self.duration) {
            (Some(n), _) => Limit::Requests(n),
            (None, Some(d)) => Limit::Duration(d),
            (None, None) => Limit::Duration(Self::DEFAULT_DURATION),
        }
    }

    /// Checks what clap cannot express.
    pub fn validate(&self) -> Result<(), String> {
        if self.connections == 0 || self.threads == 0 {
            return Err("-c and --threads must be at least 1".into());
        }
        if let Some(r) = self.rate
            && !(r.is_finite() && r > 0.0)
        {
            return Err("--rate must be a positive number".into());
        }
        if !self.url.tls
            && (self.cacert.is_some() || self.cert.is_some() || self.insecure || self.sni.is_some())
        {
            return Err("TLS options need an https:// or tls:// URL".into());
        }
        if self.streams == 0 {
            return Err("--streams must be at least 1".into());
        }
        if self.url.proto == Proto::Tcp {
            let http_only = [
                ("--h2", self.h2),
                ("--method", self.method.is_some()),
                ("-H/--header", !self.headers.is_empty()),
                ("--path", !self.paths.is_empty()),
            ];
            if let Some((name, _)) = http_only.iter().find(|(_, given)| *given) {
                return Err(format!(
                    "{name} is for http:// and https:// targets; a tcp:// or tls:// target sends raw blocks"
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.max_error_rate) {
            return Err("--max-error-rate is a fraction between 0 and 1".into());
        }
        if let Some(p) = self
            .paths
            .iter()
            .find(|p| !p.starts_with('/') || p.bytes().any(|b| b <= b' ' || b == 0x7f))
        {
            return Err(format!(
                "--path {p:?}: a path starts with / and has no spaces or control characters"
            ));
        }
        Ok(())
    }
}

/// When a run stops sending.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    /// After this long (requests in flight then still complete).
    Duration(Duration),
    /// After this many requests in total.
    Requests(u64),
}

/// `meshbench upstream`: a fast HTTP/1.1 origin with fault injection.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "meshbench upstream",
    version,
    about = "Fast HTTP/1.1 origin with fault injection; prints `listening ADDR`, and its counts on SIGINT/SIGTERM"
)]
pub struct UpstreamArgs {
    /// Address to listen on (port 0: pick one; the real one is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Threads, each with its own SO_REUSEPORT listener.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Pin thread N to core N.
    #[arg(long)]
    pub pin: bool,
    /// Body size of responses on paths other than /echo.
    #[arg(long, default_value_t = 0)]
    pub body_size: usize,
    /// Sent back in the `x-upstream` response header.
    #[arg(long, default_value = "meshbench")]
    pub tag: String,
    /// Wait this long before answering each request.
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
    /// Fraction of requests answered with 503.
    #[arg(long, default_value_t = 0.0)]
    pub fail_rate: f64,
    /// Fraction of requests answered by resetting the connection.
    #[arg(long, default_value_t = 0.0)]
    pub reset_rate: f64,
    /// Seed of the fault-injection random sequence.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Rewrite this file every 100 ms with the served counts.
    #[arg(long)]
    pub report_file: Option<PathBuf>,
    /// Raw TCP echo instead of HTTP: every byte received is sent back
    /// (counted as `echoed_bytes`); the HTTP and fault options do not apply.
    #[arg(long, conflicts_with_all = ["body_size", "delay_ms", "fail_rate", "reset_rate"])]
    pub tcp_echo: bool,
    /// HTTP/2 by prior knowledge instead of HTTP/1.1: trailers when asked
    /// (`te: trailers`), gRPC-shaped answers to gRPC requests (one message
    /// of `--body-size` bytes, `grpc-status` in the trailers; injected
    /// failures as UNAVAILABLE), resets as RST_STREAM.
    #[arg(long, conflicts_with = "tcp_echo")]
    pub h2c: bool,
}

/// What a target speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// HTTP/1.1 requests (`http://`, `https://`).
    Http,
    /// Raw byte blocks echoed back (`tcp://`, `tls://`).
    Tcp,
}

/// A parsed target URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `https` or `tls`.
    pub tls: bool,
    pub proto: Proto,
    /// Host name or IP literal (without brackets).
    pub host: String,
    /// Port (default 80 / 443).
    pub port: u16,
    /// `Host` header value: host, with `:port` when not the default.
    pub authority: String,
    /// Path and query, at least `/`.
    pub path: String,
}

/// Parses `http[s]://host[:port][/path]` and `tcp://host:port`,
/// `tls://host:port`.
pub fn parse_target(s: &str) -> Result<Target, String> {
    let schemes = [
        ("http://", false, Proto::Http),
        ("https://", true, Proto::Http),
        ("tcp://", false, Proto::Tcp),
        ("tls://", true, Proto::Tcp),
    ];
    let Some((tls, proto, rest)) = schemes
        .iter()
        .find_map(|&(scheme, tls, proto)| s.strip_prefix(scheme).map(|r| (tls, proto, r)))
    else {
        return Err(format!(
            "{s:?}: the URL must start with http://, https://, tcp:// or tls://"
        ));
    };
    if proto == Proto::Tcp {
        let bare = rest.strip_suffix('/').unwrap_or(rest);
        if bare.contains(['/', '?']) {
            return Err(format!("{s:?}: a tcp:// or tls:// target has no path"));
        }
        let has_port = match bare.strip_prefix('[') {
            Some(v6) => v6.contains("]:"),
            None => bare.contains(':'),
        };
        if !has_port {
            return Err(format!("{s:?}: a tcp:// or tls:// target needs a port"));
        }
    }
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("{s:?}: missing or unsupported host"));
    }
    let default_port = if tls { 443 } else { 80 };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let end = v6.find(']').ok_or_else(|| format!("{s:?}: unclosed ["))?;
        let host = &v6[..end];
        match &v6[end + 1..] {
            "" => (host, default_port),
            p => (host, parse_port(p.strip_prefix(':').unwrap_or("x"), s)?),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, parse_port(p, s)?),
            None => (authority, default_port),
        }
    };
    if host.is_empty() {
        return Err(format!("{s:?}: missing host"));
    }
    Ok(Target {
        tls,
        proto,
        host: host.to_string(),
        port,
        authority: authority.to_string(),
        path,
    })
}

fn parse_port(p: &str, url: &str) -> Result<u16, String> {
    p.parse().map_err(|_| format!("{url:?}: bad port {p:?}"))
}

/// Parses `250ms`, `5s`, `2m`, `1h`, or bare seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("bad duration unit in {s:?} (ms, s, m, h)")),
    };
    if !secs.is_finite() || secs <= 0.0 {
        return Err(format!("duration {s:?} must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses `Name: value`.
pub fn parse_header(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("header {s:?} is not `Name: value`"))?;
    let name = name.trim();
    if name.is_empty() || name.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!("bad header name in {s:?}"));
    }
    if value.bytes().any(|b| b == b'\r' || b == b'\n') {
        return Err(format!("header value in {s:?} has a line break"));
    }
    Ok((name.to_string(), value.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> RunArgs {
        match parse_command(args.iter().copied()).expect("parses") {
            Command::Run(r) => *r,
            _ => panic!("expected run"),
        }
    }

    #[test]
    fn plot_takes_reports_and_an_output() {
        let c = parse_command(["meshbench", "plot", "a.json", "nginx=b.json", "-o", "x.svg"]);
        match c.expect("parses") {
            Command::Plot(p) => {
                assert_eq!(p.reports, ["a.json", "nginx=b.json"]);
                assert_eq!(p.output, PathBuf::from("x.svg"));
            }
            other => panic!("expected plot, got {other:?}"),
        }
        assert!(parse_command(["meshbench", "plot", "-o", "x.svg"]).is_err());
        assert!(parse_command(["meshbench", "plot", "a.json"]).is_err());
    }

    #[test]
    fn bare_url_and_run_subcommand_are_the_same() {
        let a = run(&[
            "meshbench",
            "http://127.0.0.1:8080/x",
            "-c",
            "64",
            "-d",
            "5s",
        ]);
        let b = run(&[
            "meshbench",
            "run",
            "http://127.0.0.1:8080/x",
            "-c64",
            "-d5s",
        ]);
        assert_eq!(a.connections, 64);
        assert_eq!(a.limit(), Limit::Duration(Duration::from_secs(5)));
        assert_eq!(a.url, b.url);
        assert_eq!(b.connections, 64);
        assert_eq!(a.url.path, "/x");
        assert_eq!(a.max_error_rate, 1.0);
    }

    #[test]
    fn defaults_and_limits() {
        let a = run(&["meshbench", "http://h/"]);
        assert_eq!(a.limit(), Limit::Duration(RunArgs::DEFAULT_DURATION));
        let a = run(&["meshbench", "http://h/", "-n", "1000"]);
        assert_eq!(a.limit(), Limit::Requests(1000));
        assert!(parse_command(["meshbench", "http://h/", "-n", "5", "-d", "1s"]).is_err());
    }

    #[test]
    fn tls_options() {
        let a = run(&[
            "meshbench",
            "https://gw:8443/",
            "--cert",
            "c.pem",
            "--key",
            "k.pem",
            "--tls13",
            "--sni",
            "orders",
            "--no-resume",
        ]);
        assert!(a.url.tls && a.tls13 && a.no_resume);
        assert_eq!(a.sni.as_deref(), Some("orders"));
        a.validate().unwrap();
        assert!(parse_command(["meshbench", "https://h/", "--cert", "c.pem"]).is_err());
        assert!(parse_command(["meshbench", "https://h/", "--tls12", "--tls13"]).is_err());
        let plain = run(&["meshbench", "http://h/", "--insecure"]);
        assert!(plain.validate().is_err());
    }

    #[test]
    fn tcp_and_tls_targets() {
        let t = parse_target("tcp://127.0.0.1:9000").unwrap();
        assert_eq!((t.proto, t.tls, t.port), (Proto::Tcp, false, 9000));
        let t = parse_target("tls://[::1]:443/").unwrap();
        assert_eq!((t.proto, t.tls, t.host.as_str()), (Proto::Tcp, true, "::1"));
        for bad in [
            "tcp://h",
            "tls://[::1]",
            "tcp://h:1/p",
            "tcp://h:1?q",
            "udp://h:1",
        ] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
        let a = run(&["meshbench", "tls://h:1", "--insecure", "--body-size", "100"]);
        a.validate().unwrap();
        assert_eq!(a.method(), "GET");
        assert!(
            run(&["meshbench", "tcp://h:1", "--method", "GET"])
                .validate()
                .is_err()
        );
    }

    #[test]
    fn headers_repeat() {
        let a = run(&[
            "meshbench",
            "http://h/",
            "-H",
            "x-a: 1",
            "--header",
            "X-B:two ",
        ]);
        assert_eq!(
            a.headers,
            vec![("x-a".into(), "1".into()), ("X-B".into(), "two".into())]
        );
        assert!(parse_header("nocolon").is_err());
        assert!(parse_header("bad name: v").is_err());
    }

    #[test]
    fn upstream_subcommand() {
        let cmd = parse_command([
            "meshbench",
            "upstream",
            "--listen",
            "127.0.0.1:0",
            "--fail-rate",
            "0.5",
            "--tag",
            "b",
        ])
        .unwrap();
        let Command::Upstream(u) = cmd else {
            panic!("expected upstream")
        };
        assert_eq!(u.listen.port(), 0);
        assert_eq!(u.fail_rate, 0.5);
        assert_eq!(u.tag, "b");
        assert_eq!(u.threads, 1);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn targets() {
        let t = parse_target("http://127.0.0.1:9000/a/b?q=1").unwrap();
        assert_eq!((t.tls, t.host.as_str(), t.port), (false, "127.0.0.1", 9000));
        assert_eq!(t.path, "/a/b?q=1");
        assert_eq!(t.authority, "127.0.0.1:9000");
        let t = parse_target("https://gw.mesh").unwrap();
        assert_eq!((t.tls, t.port, t.path.as_str()), (true, 443, "/"));
        let t = parse_target("http://[::1]:81?x").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("::1", 81, "/?x")
        );
        assert_eq!(parse_target("http://[::1]/").unwrap().port, 80);
        for bad in [
            "ftp://h/",
            "http://",
            "http://h:port/",
            "http://u@h/",
            "http://:80/",
        ] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }
}
