//! `meshctl top`, the sans-IO part: samples of the daemon's `top` result
//! ([`Sample::from_json`]), the rates between two of them ([`Frame`]:
//! requests per second, error share, p50/p99 from the duration buckets,
//! requests in flight), sorting, and the screen text ([`Frame::render`]).
//! Reading keys, the terminal and the socket are `meshctl`'s.

use std::cmp::Ordering;
use std::fmt::Write as _;

use dataplane::telemetry::{BOUNDS_US, Buckets};
use serde_json::Value;

/// One route's or cluster's cumulative figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Totals {
    pub name: String,
    pub requests: u64,
    /// Responses by status class (index 1..=5).
    pub responses: [u64; 6],
    /// Requests without a response and TCP sessions ended on an error.
    pub failed: u64,
    pub duration: Buckets,
    /// Clusters: requests in flight now, endpoints, endpoints in rotation.
    pub in_flight: Option<u64>,
    pub endpoints: Option<(u64, u64)>,
}

/// One `top` result.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sample {
    pub generation: u64,
    pub uptime_s: u64,
    pub connections_active: u64,
    pub routes: Vec<Totals>,
    pub clusters: Vec<Totals>,
}

impl Sample {
    /// Reads the daemon's `top` result; `Err` says what was missing (a
    /// daemon of another version).
    pub fn from_json(v: &Value) -> Result<Sample, String> {
        let bounds = v["bounds_us"]
            .as_array()
            .ok_or("no bounds_us in the top result")?;
        if bounds.len() != BOUNDS_US.len()
            || bounds
                .iter()
                .zip(BOUNDS_US)
                .any(|(a, b)| a.as_u64() != Some(b))
        {
            return Err("the daemon's latency buckets differ from this meshctl's".into());
        }
        let rows = |key: &str| -> Result<Vec<Totals>, String> {
            v[key]
                .as_array()
                .ok_or(format!("no {key} in the top result"))?
                .iter()
                .map(totals)
                .collect()
        };
        Ok(Sample {
            generation: v["generation"].as_u64().unwrap_or(0),
            uptime_s: v["uptime_s"].as_u64().unwrap_or(0),
            connections_active: v["connections_active"].as_u64().unwrap_or(0),
            routes: rows("routes")?,
            clusters: rows("clusters")?,
        })
    }
}

fn totals(v: &Value) -> Result<Totals, String> {
    let name = v["name"].as_str().ok_or("a row without a name")?.to_owned();
    let mut responses = [0u64; 6];
    for (slot, n) in responses
        .iter_mut()
        .zip(v["responses"].as_array().into_iter().flatten())
    {
        *slot = n.as_u64().unwrap_or(0);
    }
    let mut duration = Buckets::default();
    for (slot, n) in duration
        .counts
        .iter_mut()
        .zip(v["duration"].as_array().into_iter().flatten())
    {
        *slot = n.as_u64().unwrap_or(0);
    }
    let endpoints = match (v["endpoints"].as_u64(), v["active_endpoints"].as_u64()) {
        (Some(all), Some(active)) => Some((all, active)),
        _ => None,
    };
    Ok(Totals {
        name,
        requests: v["requests"].as_u64().unwrap_or(0),
        responses,
        failed: v["failed"].as_u64().unwrap_or(0),
        duration,
        in_flight: v["in_flight"].as_u64(),
        endpoints,
    })
}

/// One row of the screen.
#[derive(Debug, Clone, PartialEq)]
pub struct Rate {
    pub name: String,
    pub rps: f64,
    /// 5xx and unanswered requests, percent of requests (`None`: none).
    pub error_pct: Option<f64>,
    pub p50_us: Option<u64>,
    pub p99_us: Option<u64>,
    pub in_flight: Option<u64>,
    pub endpoints: Option<(u64, u64)>,
}

/// What the rows are sorted by (keys `r`, `e`, `p`, `n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortBy {
    #[default]
    Rps,
    Errors,
    P99,
    Name,
}

impl SortBy {
    /// The sort a key asks for.
    pub fn from_key(key: u8) -> Option<SortBy> {
        match key {
            b'r' => Some(SortBy::Rps),
            b'e' => Some(SortBy::Errors),
            b'p' => Some(SortBy::P99),
            b'n' => Some(SortBy::Name),
            _ => None,
        }
    }

    fn label(self) -> &'static str {
        match self {
            SortBy::Rps => "rps",
            SortBy::Errors => "errors",
            SortBy::P99 => "p99",
            SortBy::Name => "name",
        }
    }
}

/// The rates between two samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub generation: u64,
    pub uptime_s: u64,
    pub connections_active: u64,
    pub routes: Vec<Rate>,
    pub clusters: Vec<Rate>,
    /// Seconds the rates are over.
    pub window_s: f64,
}

impl Frame {
    /// Rates from `earlier` to `now`, `seconds` apart. A name new in `now`
    /// counts from zero; counters that went down (a restart) count as new.
    pub fn between(earlier: &Sample, now: &Sample, seconds: f64) -> Frame {
        let seconds = seconds.max(0.001);
        let rates = |before: &[Totals], after: &[Totals]| {
            after
                .iter()
                .map(|a| {
                    let b = before
                        .iter()
                        .find(|b| b.name == a.name && b.requests <= a.requests);
                    Rate::between(b, a, seconds)
                })
                .collect()
        };
        Frame {
            generation: now.generation,
            uptime_s: now.uptime_s,
            connections_active: now.connections_active,
            routes: rates(&earlier.routes, &now.routes),
            clusters: rates(&earlier.clusters, &now.clusters),
            window_s: seconds,
        }
    }

    /// Sorts both tables.
    pub fn sort(&mut self, by: SortBy) {
        let key = |a: &Rate, b: &Rate| -> Ordering {
            let desc = |x: f64, y: f64| y.partial_cmp(&x).unwrap_or(Ordering::Equal);
            match by {
                SortBy::Rps => desc(a.rps, b.rps),
                SortBy::Errors => desc(a.error_pct.unwrap_or(-1.0), b.error_pct.unwrap_or(-1.0)),
                SortBy::P99 => b.p99_us.cmp(&a.p99_us),
                SortBy::Name => Ordering::Equal,
            }
            .then_with(|| a.name.cmp(&b.name))
        };
        self.routes.sort_by(key);
        self.clusters.sort_by(key);
    }

    /// The screen: a status line, the routes, then the clusters, each
    /// table cut to fit `height` lines and names to fit `width` columns.
    pub fn render(&self, by: SortBy, width: usize, height: usize) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "meshgate top — generation {}, up {}, {} connections, rates over {:.1} s",
            self.generation,
            uptime(self.uptime_s),
            self.connections_active,
            self.window_s
        );
        let _ = writeln!(
            out,
            "sorted by {} (r rps, e errors, p p99, n name; q quits)",
            by.label()
        );
        // Two tables with a header and a blank line each share the rest;
        // the clusters keep up to half of it.
        let room = height.saturating_sub(6).max(2);
        let clusters = self.clusters.len().max(1).min(room / 2);
        let for_routes = self.routes.len().max(1).min(room - clusters).max(1);
        let for_clusters = room.saturating_sub(for_routes).max(1);
        table(&mut out, "ROUTE", &self.routes, for_routes, width, false);
        table(
            &mut out,
            "CLUSTER",
            &self.clusters,
            for_clusters,
            width,
            true,
        );
        out
    }
}

impl Rate {
    /// The rates of one row from `before` (`None`: it is new, count from
    /// zero) to `after`, `seconds` apart.
    pub fn between(before: Option<&Totals>, after: &Totals, seconds: f64) -> Rate {
        let zero = Totals {
            name: String::new(),
            requests: 0,
            responses: [0; 6],
            failed: 0,
            duration: Buckets::default(),
            in_flight: None,
            endpoints: None,
        };
        let b = before.unwrap_or(&zero);
        let requests = after.requests.saturating_sub(b.requests);
        let errors = after.responses[5].saturating_sub(b.responses[5])
            + after.failed.saturating_sub(b.failed);
        let duration = after.duration.since(&b.duration);
        Rate {
            name: after.name.clone(),
            rps: requests as f64 / seconds,
            error_pct: (requests > 0).then(|| errors as f64 * 100.0 / requests as f64),
            p50_us: duration.quantile(0.50),
            p99_us: duration.quantile(0.99),
            in_flight: after.in_flight,
            endpoints: after.endpoints,
        }
    }
}

fn uptime(s: u64) -> String {
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// Column widths after the name.
const NUMBERS: [(&str, usize); 5] = [
    ("RPS", 9),
    ("ERR%", 7),
    ("P50µs", 9),
    ("P99µs", 9),
    ("ACTIVE", 7),
];

fn table(
    out: &mut String,
    title: &str,
    rows: &[Rate],
    max_rows: usize,
    width: usize,
    endpoints: bool,
) {
    out.push('\n');
    // Both tables keep room for ENDPOINTS, so their columns line up.
    let extra = 10;
    let numbers: usize = NUMBERS.iter().map(|(_, w)| w + 1).sum::<usize>() + extra;
    let name_width = width.saturating_sub(numbers).clamp(8, 48);
    let _ = write!(out, "{title:<name_width$}");
    for (h, w) in NUMBERS {
        let _ = write!(out, " {h:>w$}");
    }
    if endpoints {
        let _ = write!(out, " {:>9}", "ENDPOINTS");
    }
    out.push('\n');
    if rows.is_empty() {
        out.push_str("(no traffic yet)\n");
        return;
    }
    for r in rows.iter().take(max_rows) {
        let name: String = if r.name.chars().count() > name_width {
            let cut: String = r.name.chars().take(name_width - 1).collect();
            format!("{cut}…")
        } else {
            r.name.clone()
        };
        let dash = || "-".to_owned();
        let _ = write!(
            out,
            "{name:<name_width$} {:>9} {:>7} {:>9} {:>9} {:>7}",
            format!("{:.1}", r.rps),
            r.error_pct.map_or_else(dash, |e| format!("{e:.1}")),
            r.p50_us.map_or_else(dash, |v| v.to_string()),
            r.p99_us.map_or_else(dash, |v| v.to_string()),
            r.in_flight.map_or_else(dash, |v| v.to_string()),
        );
        if endpoints {
            let text = r
                .endpoints
                .map_or_else(dash, |(all, active)| format!("{active}/{all}"));
            let _ = write!(out, " {text:>9}");
        }
        out.push('\n');
    }
    if rows.len() > max_rows {
        let _ = writeln!(out, "… {} more", rows.len() - max_rows);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn result(requests: u64, ok: u64, errors: u64, fast: u64) -> Value {
        let mut duration = vec![0u64; BOUNDS_US.len() + 1];
        duration[1] = fast; // (50, 100] µs
        duration[12] = requests - fast; // (7.5, 10] ms
        json!({
            "generation": 3,
            "uptime_s": 75,
            "connections_active": 4,
            "bounds_us": BOUNDS_US,
            "routes": [
                { "name": "orders", "requests": requests, "responses": [0, 0, ok, 0, 0, errors], "duration": duration },
                { "name": "idle", "requests": 0, "responses": [0, 0, 0, 0, 0, 0], "duration": vec![0; 25] },
            ],
            "clusters": [
                { "name": "backend", "requests": requests, "responses": [0, 0, ok, 0, 0, errors],
                  "duration": duration, "in_flight": 2, "endpoints": 3, "active_endpoints": 2 },
            ],
        })
    }

    #[test]
    fn rates_errors_and_percentiles_between_two_samples() {
        let a = Sample::from_json(&result(100, 100, 0, 100)).unwrap();
        // 200 more requests in 2 s: 190 ok, 10 5xx; 100 fast, 100 slow.
        let b = Sample::from_json(&result(300, 290, 10, 200)).unwrap();
        let mut f = Frame::between(&a, &b, 2.0);
        f.sort(SortBy::Rps);
        let orders = &f.routes[0];
        assert_eq!(orders.name, "orders");
        assert_eq!(orders.rps, 100.0);
        assert_eq!(orders.error_pct, Some(5.0));
        let p50 = orders.p50_us.unwrap();
        assert!((50..=100).contains(&p50), "{p50}");
        let p99 = orders.p99_us.unwrap();
        assert!((7_500..=10_000).contains(&p99), "{p99}");
        assert_eq!(f.routes[1].error_pct, None, "no requests, no error rate");
        assert_eq!(f.clusters[0].in_flight, Some(2));
        let screen = f.render(SortBy::Rps, 100, 30);
        assert!(screen.lines().all(|l| l.chars().count() <= 100), "{screen}");
        assert!(
            screen.contains("generation 3, up 1m15s, 4 connections"),
            "{screen}"
        );
        let row = screen.lines().find(|l| l.starts_with("orders")).unwrap();
        assert!(row.contains("100.0") && row.contains("5.0"), "{row}");
        let cluster = screen.lines().find(|l| l.starts_with("backend")).unwrap();
        assert!(cluster.ends_with("2/3"), "{cluster}");
    }

    #[test]
    fn sorting_and_a_small_screen() {
        let a = Sample::from_json(&result(0, 0, 0, 0)).unwrap();
        let b = Sample::from_json(&result(10, 0, 10, 0)).unwrap();
        let mut f = Frame::between(&a, &b, 1.0);
        f.sort(SortBy::Name);
        assert_eq!(f.routes[0].name, "idle");
        f.sort(SortBy::Errors);
        assert_eq!(f.routes[0].name, "orders");
        let screen = f.render(SortBy::Errors, 60, 8);
        assert!(
            screen.contains("more"),
            "rows beyond the screen are counted: {screen}"
        );
        assert_eq!(SortBy::from_key(b'p'), Some(SortBy::P99));
        assert_eq!(SortBy::from_key(b'x'), None);
    }

    #[test]
    fn a_result_of_another_shape_is_refused() {
        assert!(Sample::from_json(&json!({})).is_err());
        let mut v = result(1, 1, 0, 1);
        v["bounds_us"] = json!([1, 2, 3]);
        assert!(Sample::from_json(&v).unwrap_err().contains("buckets"));
    }
}
