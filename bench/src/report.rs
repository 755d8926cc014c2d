//! The results of a run, as people and programs read them: the final text
//! report, the `--json` document, the `--hdr-out` percentile distribution,
//! the live progress line, and the pass/fail verdict of `--max-error-rate`.
//!
//! Pure functions of a merged [`Stats`] and the run's wall time, so the
//! formats are unit-tested on fixed numbers.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::stats::Stats;

/// A finished run, ready to print or serialise.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Target URL.
    pub url: String,
    /// Connections and threads.
    pub connections: usize,
    pub threads: usize,
    /// `closed` or `open` (with `rate`).
    pub model: &'static str,
    pub rate: Option<f64>,
    /// `keep-alive` or `new-conn`.
    pub mode: &'static str,
    /// `http/1.1`, `h2`, or `tcp` (echoed blocks: `requests` counts
    /// exchanges, all in the 2xx class).
    pub protocol: &'static str,
    /// HTTP/2 streams in flight per connection.
    pub streams: Option<usize>,
    /// Wall time from the first request to the last response, seconds.
    pub duration_s: f64,
    /// Responses of any status.
    pub requests: u64,
    /// Requests without a response.
    pub errors: u64,
    /// Errors plus 4xx and 5xx responses, over attempts.
    pub error_rate: f64,
    /// Responses per second.
    pub rps: f64,
    /// Response bytes received (tcp: echoed bytes).
    pub bytes: u64,
    /// Response bytes per second, MiB.
    pub throughput_mib_s: f64,
    /// TCP connections opened.
    pub connections_opened: u64,
    /// Latency in milliseconds.
    pub latency_ms: Latency,
    /// Responses by status class.
    pub status: StatusClasses,
    /// Errors by kind name.
    pub error_kinds: Vec<(String, u64)>,
    /// The latency distribution: `[percentile 0..=100, ms]` pairs (HDR
    /// quantile iteration, 5 steps per halving), what `meshbench plot`
    /// draws.
    pub percentiles: Vec<(f64, f64)>,
}

/// Latency summary, milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub p99_99: f64,
    pub max: f64,
}

/// Responses by status class.
#[derive(Debug, Clone, Serialize)]
pub struct StatusClasses {
    #[serde(rename = "2xx")]
    pub s2xx: u64,
    #[serde(rename = "3xx")]
    pub s3xx: u64,
    #[serde(rename = "4xx")]
    pub s4xx: u64,
    #[serde(rename = "5xx")]
    pub s5xx: u64,
}

/// What the run was, for the report header.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub url: String,
    pub connections: usize,
    pub threads: usize,
    pub rate: Option<f64>,
    pub new_conn: bool,
    /// `http/1.1`, `h2` or `tcp` (raw echo exchanges).
    pub protocol: &'static str,
    /// HTTP/2 streams per connection.
    pub streams: Option<usize>,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl Report {
    /// Builds the report of `stats` gathered over `elapsed`.
    pub fn new(info: &RunInfo, stats: &Stats, elapsed: Duration) -> Report {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let h = &stats.latency;
        let q = |p: f64| {
            if h.is_empty() {
                0.0
            } else {
                ms(h.value_at_percentile(p))
            }
        };
        let attempts = stats.attempts();
        Report {
            url: info.url.clone(),
            connections: info.connections,
            threads: info.threads,
            model: if info.rate.is_some() {
                "open"
            } else {
                "closed"
            },
            rate: info.rate,
            mode: if info.new_conn {
                "new-conn"
            } else {
                "keep-alive"
            },
            protocol: info.protocol,
            streams: info.streams,
            duration_s: elapsed.as_secs_f64(),
            requests: stats.responses(),
            errors: stats.error_count(),
            error_rate: if attempts == 0 {
                0.0
            } else {
                stats.failed() as f64 / attempts as f64
            },
            rps: stats.responses() as f64 / secs,
            bytes: stats.bytes,
            throughput_mib_s: stats.bytes as f64 / secs / (1024.0 * 1024.0),
            connections_opened: stats.connections,
            latency_ms: Latency {
                min: if h.is_empty() { 0.0 } else { ms(h.min()) },
                mean: if h.is_empty() { 0.0 } else { h.mean() / 1000.0 },
                p50: q(50.0),
                p90: q(90.0),
                p99: q(99.0),
                p99_9: q(99.9),
                p99_99: q(99.99),
                max: if h.is_empty() { 0.0 } else { ms(h.max()) },
            },
            status: StatusClasses {
                s2xx: stats.status[1],
                s3xx: stats.status[2],
                s4xx: stats.status[3],
                s5xx: stats.status[4],
            },
            error_kinds: stats.errors.iter().map(|(k, n)| (k.name(), *n)).collect(),
            percentiles: h
                .iter_quantiles(5)
                .map(|v| (v.quantile_iterated_to() * 100.0, ms(v.value_iterated_to())))
                .collect(),
        }
    }

    /// Whether the run passes `--max-error-rate`.
    pub fn passes(&self, max_error_rate: f64) -> bool {
        self.error_rate <= max_error_rate
    }

    /// The human-readable report.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let rate = match self.rate {
            Some(r) => format!("open loop at {r} req/s"),
            None => "closed loop".into(),
        };
        let _ = writeln!(
            s,
            "meshbench {}: {} connections{}, {} threads, {rate}, {}",
            self.url,
            self.connections,
            match self.streams {
                Some(n) => format!(" (h2, {n} streams each)"),
                None => String::new(),
            },
            self.threads,
            self.mode
        );
        let tcp = self.protocol == "tcp";
        let _ = writeln!(
            s,
            "  {}   {} in {:.2}s, {:.1} {}/s, {:.2} MiB/s{}, {} connections opened",
            if tcp { "exchanges" } else { "requests " },
            self.requests,
            self.duration_s,
            self.rps,
            if tcp { "exch" } else { "req" },
            self.throughput_mib_s,
            if tcp { " echoed" } else { "" },
            self.connections_opened
        );
        let l = &self.latency_ms;
        let _ = writeln!(
            s,
            "  latency ms  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  p99.99 {:.3}  max {:.3}  (mean {:.3})",
            l.p50, l.p90, l.p99, l.p99_9, l.p99_99, l.max, l.mean
        );
        let st = &self.status;
        if !tcp {
            let _ = writeln!(
                s,
                "  status      2xx {}  3xx {}  4xx {}  5xx {}",
                st.s2xx, st.s3xx, st.s4xx, st.s5xx
            );
        }
        let kinds: Vec<String> = self
            .error_kinds
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let _ = writeln!(
            s,
            "  errors      {}{}  (error rate {:.4}{})",
            self.errors,
            if kinds.is_empty() {
                String::new()
            } else {
                format!(": {}", kinds.join(", "))
            },
            self.error_rate,
            if tcp { "" } else { ", counting 4xx/5xx" }
        );
        s
    }

    /// The `--json` document.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("report serialises")
    }
}

/// The full percentile distribution in HdrHistogram's text format (value in
/// ms, percentile as a fraction, total count, 1/(1-percentile)), as plotted
/// by HdrHistogram's plotter and wrk2.
pub fn hdr_distribution(stats: &Stats) -> String {
    let h = &stats.latency;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    for v in h.iter_quantiles(5) {
        total += v.count_since_last_iteration();
        let p = v.quantile_iterated_to();
        let inv = if p < 1.0 {
            format!("{:>14.2}", 1.0 / (1.0 - p))
        } else {
            format!("{:>14}", "")
        };
        let _ = writeln!(
            s,
            "{:>12.3} {:>14.12} {:>10} {inv}",
            ms(v.value_iterated_to()),
            p,
            total
        );
    }
    let mean = if h.is_empty() { 0.0 } else { h.mean() / 1000.0 };
    let _ = writeln!(
        s,
        "#[Mean    = {mean:>12.3}, StdDeviation   = {:>12.3}]",
        h.stdev() / 1000.0
    );
    let _ = writeln!(
        s,
        "#[Max     = {:>12.3}, Total count    = {:>12}]",
        ms(h.max()),
        h.len()
    );
    s
}

/// One live progress line: the last second's rate, the run's errors and
/// its p99 so far.
pub fn progress_line(
    elapsed: Duration,
    interval: &Stats,
    so_far: &Stats,
    tick: Duration,
) -> String {
    let rps = interval.responses() as f64 / tick.as_secs_f64().max(1e-9);
    let p99 = if so_far.latency.is_empty() {
        0.0
    } else {
        ms(so_far.latency.value_at_percentile(99.0))
    };
    format!(
        "[{:>6.1}s] {:>10.0} req/s  {:>12} requests  {:>6} errors  p99 {:.3} ms",
        elapsed.as_secs_f64(),
        rps,
        so_far.responses(),
        so_far.failed(),
        p99
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::ErrorKind;

    fn sample() -> (RunInfo, Stats) {
        let mut s = Stats::new();
        for i in 1..=1000u64 {
            s.response(200, Duration::from_micros(i * 10));
        }
        s.response(503, Duration::from_millis(1));
        s.error(ErrorKind::Timeout);
        s.error(ErrorKind::Tls("unknown_issuer"));
        s.bytes = 10 * 1024 * 1024;
        s.connections = 8;
        let info = RunInfo {
            url: "http://127.0.0.1:1/".into(),
            connections: 8,
            threads: 2,
            rate: None,
            new_conn: false,
            protocol: "http/1.1",
            streams: None,
        };
        (info, s)
    }

    #[test]
    fn numbers() {
        let (info, s) = sample();
        let r = Report::new(&info, &s, Duration::from_secs(2));
        assert_eq!(r.requests, 1001);
        assert_eq!(r.errors, 2);
        assert!((r.rps - 500.5).abs() < 1e-9);
        assert!((r.throughput_mib_s - 5.0).abs() < 1e-9);
        assert!((r.error_rate - 3.0 / 1003.0).abs() < 1e-12);
        assert!(
            (r.latency_ms.p50 - 5.0).abs() < 0.01,
            "{}",
            r.latency_ms.p50
        );
        assert!((r.latency_ms.max - 10.0).abs() < 0.01);
        assert_eq!(r.status.s5xx, 1);
        assert!(r.passes(0.01));
        assert!(!r.passes(0.001));
    }

    #[test]
    fn text_and_json_name_everything() {
        let (info, s) = sample();
        let r = Report::new(&info, &s, Duration::from_secs(2));
        let text = r.text();
        for needle in [
            "1001 in 2.00s",
            "500.5 req/s",
            "p99.99",
            "5xx 1",
            "timeout 1",
            "tls:unknown_issuer 1",
        ] {
            assert!(text.contains(needle), "{needle} missing in\n{text}");
        }
        let v: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        assert_eq!(v["requests"], 1001);
        assert_eq!(v["status"]["5xx"], 1);
        assert_eq!(v["model"], "closed");
        assert_eq!(v["error_kinds"][1][0], "tls:unknown_issuer");
        assert!(v["latency_ms"]["p99_9"].as_f64().unwrap() > 9.9);
    }

    #[test]
    fn empty_run_reports_zeroes() {
        let info = RunInfo {
            url: "http://h/".into(),
            connections: 1,
            threads: 1,
            rate: Some(10.0),
            new_conn: true,
            protocol: "http/1.1",
            streams: None,
        };
        let r = Report::new(&info, &Stats::new(), Duration::ZERO);
        assert_eq!(r.requests, 0);
        assert_eq!(r.error_rate, 0.0);
        assert!(r.text().contains("open loop at 10 req/s, new-conn"));
        assert!(hdr_distribution(&Stats::new()).contains("Total count    =            0"));
    }

    #[test]
    fn distribution_is_monotonic_and_complete() {
        let (_, s) = sample();
        let text = hdr_distribution(&s);
        let rows: Vec<(f64, f64, u64)> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty() && !l.contains("Value"))
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (
                    f[0].parse().unwrap(),
                    f[1].parse().unwrap(),
                    f[2].parse().unwrap(),
                )
            })
            .collect();
        assert!(rows.len() > 20);
        assert!(
            rows.windows(2)
                .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1 && w[0].2 <= w[1].2)
        );
        assert_eq!(rows.last().unwrap().2, s.latency.len());
    }

    #[test]
    fn progress() {
        let (_, s) = sample();
        let line = progress_line(Duration::from_secs(3), &s, &s, Duration::from_secs(1));
        assert!(
            line.contains("1001 req/s") && line.contains("3 errors"),
            "{line}"
        );
    }
}
