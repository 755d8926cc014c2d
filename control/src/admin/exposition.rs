//! The Prometheus text exposition format (0.0.4) and OpenMetrics 1.0,
//! written by one builder: families with HELP and TYPE, samples with
//! escaped labels, histograms from [`Buckets`] in seconds.
//!
//! Sans-IO: it only appends to a `String`. The two formats differ in
//! three places: a counter family is named without its `_total` in
//! OpenMetrics' HELP/TYPE lines, OpenMetrics ends with `# EOF`, and the
//! content types.

use std::fmt::Write as _;

use dataplane::telemetry::access_log::push_u64;
use dataplane::telemetry::{BOUNDS_US, Buckets};

/// Which format the scraper asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`
    Prometheus,
    /// `application/openmetrics-text; version=1.0.0`
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for (OpenMetrics only when it is
    /// named; everything else gets the classic text format).
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// A family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Builds one exposition.
#[derive(Debug)]
pub struct Exposition {
    format: Format,
    out: String,
    /// The `le` label of each histogram bound, then `+Inf`.
    le: Vec<String>,
}

impl Exposition {
    /// An empty exposition with room for about `bytes` of text.
    pub fn new(format: Format, bytes: usize) -> Exposition {
        let le = BOUNDS_US
            .iter()
            .map(|&us| {
                let mut s = String::new();
                seconds(us, &mut s);
                s
            })
            .chain(["+Inf".to_owned()])
            .collect();
        Exposition {
            format,
            out: String::with_capacity(bytes.max(4096)),
            le,
        }
    }

    /// Starts family `name` (a counter's name ends in `_total`).
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        debug_assert!(kind != Kind::Counter || name.ends_with("_total"), "{name}");
        let shown = match (self.format, kind) {
            (Format::OpenMetrics, Kind::Counter) => name.trim_end_matches("_total"),
            _ => name,
        };
        let _ = writeln!(self.out, "# HELP {shown} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {shown} {}", kind.name());
    }

    /// One sample of an integer value.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.out.push_str(name);
        self.labels(labels, None);
        self.out.push(' ');
        push_u64(value, &mut self.out);
        self.out.push('\n');
    }

    /// One sample of a float value.
    pub fn sample_f64(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        self.labels(labels, None);
        self.out.push(' ');
        float(value, &mut self.out);
        self.out.push('\n');
    }

    /// A histogram's samples (`_bucket`, `_sum`, `_count`) from µs
    /// buckets, in seconds.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], b: &Buckets) {
        let le = std::mem::take(&mut self.le);
        for ((_, cumulative), le) in b.cumulative().zip(&le) {
            self.out.push_str(name);
            self.out.push_str("_bucket");
            self.labels(labels, Some(le));
            self.out.push(' ');
            push_u64(cumulative, &mut self.out);
            self.out.push('\n');
        }
        self.le = le;
        self.out.push_str(name);
        self.out.push_str("_sum");
        self.labels(labels, None);
        self.out.push(' ');
        float(b.sum_us as f64 / 1e6, &mut self.out);
        self.out.push('\n');
        self.out.push_str(name);
        self.out.push_str("_count");
        self.labels(labels, None);
        self.out.push(' ');
        push_u64(b.count(), &mut self.out);
        self.out.push('\n');
    }

    fn labels(&mut self, labels: &[(&str, &str)], le: Option<&str>) {
        if labels.is_empty() && le.is_none() {
            return;
        }
        self.out.push('{');
        let all = labels.iter().copied().chain(le.map(|v| ("le", v)));
        for (i, (k, v)) in all.enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.out.push_str(k);
            self.out.push_str("=\"");
            if !v.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
                self.out.push_str(v);
                self.out.push('"');
                continue;
            }
            for c in v.chars() {
                match c {
                    '\\' => self.out.push_str("\\\\"),
                    '"' => self.out.push_str("\\\""),
                    '\n' => self.out.push_str("\\n"),
                    c => self.out.push(c),
                }
            }
            self.out.push('"');
        }
        self.out.push('}');
    }

    /// The finished text.
    pub fn finish(mut self) -> String {
        if self.format == Format::OpenMetrics {
            self.out.push_str("# EOF\n");
        }
        self.out
    }
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// `us` microseconds as seconds, exactly: `0.00005`, `1.0`, `60.0`.
fn seconds(us: u64, out: &mut String) {
    let (whole, frac) = (us / 1_000_000, us % 1_000_000);
    if frac == 0 {
        let _ = write!(out, "{whole}.0");
    } else {
        let digits = format!("{frac:06}");
        let _ = write!(out, "{whole}.{}", digits.trim_end_matches('0'));
    }
}

/// A float as both formats accept it (`NaN`, `+Inf`, `-Inf` spelled out).
fn float(v: f64, out: &mut String) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{v}");
    }
}

/// How many series one histogram adds: a bucket per bound, `+Inf`,
/// `_sum` and `_count`.
pub const HISTOGRAM_SERIES: usize = BOUNDS_US.len() + 3;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_gauges_and_labels_in_the_text_format() {
        let mut e = Exposition::new(Format::Prometheus, 0);
        e.family("meshgate_requests_total", Kind::Counter, "Requests.\nAll.");
        e.sample("meshgate_requests_total", &[("listener", "a\"b\\c\nd")], 7);
        e.family("meshgate_up", Kind::Gauge, "Up.");
        e.sample_f64("meshgate_up", &[], 1.5);
        let text = e.finish();
        assert_eq!(
            text,
            "# HELP meshgate_requests_total Requests.\\nAll.\n\
             # TYPE meshgate_requests_total counter\n\
             meshgate_requests_total{listener=\"a\\\"b\\\\c\\nd\"} 7\n\
             # HELP meshgate_up Up.\n\
             # TYPE meshgate_up gauge\n\
             meshgate_up 1.5\n"
        );
    }

    #[test]
    fn openmetrics_names_counter_families_without_total_and_ends_with_eof() {
        let mut e = Exposition::new(Format::OpenMetrics, 0);
        e.family("meshgate_requests_total", Kind::Counter, "Requests.");
        e.sample("meshgate_requests_total", &[], 1);
        let text = e.finish();
        assert!(
            text.starts_with(
                "# HELP meshgate_requests Requests.\n# TYPE meshgate_requests counter\n"
            ),
            "{text}"
        );
        assert!(
            text.ends_with("meshgate_requests_total 1\n# EOF\n"),
            "{text}"
        );
    }

    #[test]
    fn histograms_are_cumulative_in_seconds() {
        let mut b = Buckets::default();
        b.record(40);
        b.record(120);
        b.record(90_000_000);
        let mut e = Exposition::new(Format::Prometheus, 0);
        e.family("x_seconds", Kind::Histogram, "X.");
        e.histogram("x_seconds", &[("route", "r")], &b);
        let text = e.finish();
        assert!(
            text.contains("x_seconds_bucket{route=\"r\",le=\"0.00005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_bucket{route=\"r\",le=\"0.0002\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_bucket{route=\"r\",le=\"60.0\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_bucket{route=\"r\",le=\"+Inf\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_sum{route=\"r\"} 90.00016\n"),
            "{text}"
        );
        assert!(text.contains("x_seconds_count{route=\"r\"} 3\n"), "{text}");
        assert_eq!(
            text.lines().filter(|l| !l.starts_with('#')).count(),
            HISTOGRAM_SERIES
        );
    }

    #[test]
    fn accept_headers_pick_the_format() {
        assert_eq!(Format::from_accept(None), Format::Prometheus);
        assert_eq!(
            Format::from_accept(Some(
                "application/openmetrics-text; version=1.0.0,text/plain;q=0.5"
            )),
            Format::OpenMetrics
        );
        assert_eq!(Format::from_accept(Some("text/plain")), Format::Prometheus);
    }

    #[test]
    fn seconds_are_exact() {
        let mut s = String::new();
        for (us, want) in [
            (50, "0.00005"),
            (1_500, "0.0015"),
            (1_000_000, "1.0"),
            (2_500_000, "2.5"),
        ] {
            s.clear();
            seconds(us, &mut s);
            assert_eq!(s, want);
        }
    }
}
