//! Telemetry stage: per-shard counters.
//!
//! Each shard owns one [`ShardStats`] and is its only writer. Counters are
//! `AtomicU64`s updated with a relaxed load and store (no read-modify-write,
//! no lock prefix, no cache line shared with another writer), so the control
//! thread can read them at any time without stopping or slowing the shard.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwapOption;
pub use hdrhistogram::Histogram;

pub mod access_batch;
pub mod access_log;
mod buckets;
pub mod trace;

pub use buckets::{BOUNDS_US, Buckets};

/// Latency histograms record microseconds from 1 µs to 60 s, 3 significant
/// figures.
pub fn new_latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// A shard's latency histogram as last published (about once a second):
/// the shard records into its own copy and swaps a clone in here, so the
/// control thread reads without touching the shard's data.
#[derive(Debug, Default)]
pub struct PublishedLatency(ArcSwapOption<Histogram<u64>>);

impl PublishedLatency {
    /// Publishes `h` (shard side).
    pub fn publish(&self, h: &Histogram<u64>) {
        self.0.store(Some(Arc::new(h.clone())));
    }

    /// The last published histogram (any thread).
    pub fn get(&self) -> Option<Arc<Histogram<u64>>> {
        self.0.load_full()
    }
}

/// A counter with one writer (its shard) and any number of readers.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one. Only the owning shard calls this.
    pub fn incr(&self) {
        self.add(1);
    }

    /// Adds `n`. Only the owning shard calls this.
    pub fn add(&self, n: u64) {
        // Single writer: a plain load and store is exact and cheaper than
        // `fetch_add`.
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    /// Subtracts one (gauges). Only the owning shard calls this.
    pub fn decr(&self) {
        self.0.store(
            self.0.load(Ordering::Relaxed).saturating_sub(1),
            Ordering::Relaxed,
        );
    }

    /// The current value (any thread).
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Stores `v`. Only the owning shard calls this.
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
}

/// How one finished request went, as its listener, route and cluster
/// count it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The status answered (`None`: the client got no response).
    pub status: Option<u16>,
    /// A gRPC request's `grpc-status` as the caller got it.
    pub grpc_status: Option<u32>,
    /// Request bytes read from the client (head and body).
    pub bytes_in: u64,
    /// Response bytes written to the client (head and body).
    pub bytes_out: u64,
    /// Head received → response written, µs.
    pub duration_us: Option<u64>,
    /// Start of the try that answered → its response head, µs.
    pub upstream_ttfb_us: Option<u64>,
    /// It failed without a response: an HTTP request the client got no
    /// answer to, or a TCP session that ended on an error.
    pub failed: bool,
}

/// Counters of one listener, route or cluster.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    pub requests: u64,
    /// Responses by status class: index 1..=5 for 1xx..5xx.
    pub responses: [u64; 6],
    /// Responses by status code (at most 500 entries: 100..=599).
    pub codes: BTreeMap<u16, u64>,
    /// gRPC answers by `grpc-status` (0..=16; other values as 2, UNKNOWN).
    pub grpc: BTreeMap<u32, u64>,
    /// Request bytes read from clients (head and body).
    pub bytes_in: u64,
    /// Response bytes written downstream (head and body).
    pub bytes_out: u64,
    /// Requests (or TCP connections) refused by authorization.
    pub forbidden: u64,
    /// Requests that got no response and TCP sessions that ended on an
    /// error ([`Outcome::failed`]).
    pub failed: u64,
    /// Request durations (head received → response written).
    pub duration: Buckets,
    /// Upstream time to the response head, of the try that answered.
    pub upstream_ttfb: Buckets,
}

impl Counts {
    fn record(&mut self, o: &Outcome) {
        self.requests += 1;
        self.failed += u64::from(o.failed);
        if let Some(s) = o.status {
            if let Some(c) = self.responses.get_mut((s / 100) as usize) {
                *c += 1;
            }
            if (100..=599).contains(&s) {
                match self.codes.get_mut(&s) {
                    Some(n) => *n += 1,
                    None => {
                        self.codes.insert(s, 1);
                    }
                }
            }
        }
        if let Some(code) = o.grpc_status {
            let code = if code <= 16 { code } else { 2 };
            *self.grpc.entry(code).or_default() += 1;
        }
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        if let Some(us) = o.duration_us {
            self.duration.record(us);
        }
        if let Some(us) = o.upstream_ttfb_us {
            self.upstream_ttfb.record(us);
        }
    }

    fn add(&mut self, other: &Counts) {
        self.requests += other.requests;
        for (a, b) in self.responses.iter_mut().zip(other.responses) {
            *a += b;
        }
        for (code, n) in &other.codes {
            *self.codes.entry(*code).or_default() += n;
        }
        for (code, n) in &other.grpc {
            *self.grpc.entry(*code).or_default() += n;
        }
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.forbidden += other.forbidden;
        self.failed += other.failed;
        self.duration.add(&other.duration);
        self.upstream_ttfb.add(&other.upstream_ttfb);
    }
}

/// Counters by name: what `meshctl stats` shows per listener, route and
/// cluster, and TLS handshake failures by reason. A shard keeps its own and
/// publishes a copy about once a second (like its latency histogram).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NamedCounts {
    pub listeners: BTreeMap<String, Counts>,
    pub routes: BTreeMap<String, Counts>,
    pub clusters: BTreeMap<String, Counts>,
    /// Requests of split routes by the cluster they went to: route →
    /// cluster → counts. (A route with one cluster sends it everything:
    /// its own counts say so.)
    pub splits: BTreeMap<String, BTreeMap<String, Counts>>,
    pub tls_failures: BTreeMap<String, u64>,
    /// Refusals by the authorization rule that decided.
    pub authz_denied: BTreeMap<String, u64>,
    /// Completed handshakes by (protocol version, key exchange group).
    pub tls_handshakes: BTreeMap<(&'static str, &'static str), u64>,
}

fn bump(map: &mut BTreeMap<String, Counts>, name: &str, outcome: &Outcome) {
    match map.get_mut(name) {
        Some(c) => c.record(outcome),
        None => map.entry(name.to_owned()).or_default().record(outcome),
    }
}

fn bump_count(map: &mut BTreeMap<String, u64>, name: &str) {
    match map.get_mut(name) {
        Some(n) => *n += 1,
        None => {
            map.insert(name.to_owned(), 1);
        }
    }
}

impl NamedCounts {
    /// Counts one request of `listener` (and its route and cluster, when it
    /// was routed). No allocation once a name has been seen.
    pub fn record(&mut self, listener: &str, route: Option<(&str, &str)>, outcome: &Outcome) {
        bump(&mut self.listeners, listener, outcome);
        if let Some((route, cluster)) = route {
            bump(&mut self.routes, route, outcome);
            bump(&mut self.clusters, cluster, outcome);
        }
    }

    /// Counts one request of split route `route` that went to `cluster`
    /// (besides [`NamedCounts::record`]). No allocation once the names
    /// have been seen.
    pub fn record_split(&mut self, route: &str, cluster: &str, outcome: &Outcome) {
        match self.splits.get_mut(route) {
            Some(by_cluster) => bump(by_cluster, cluster, outcome),
            None => bump(
                self.splits.entry(route.to_owned()).or_default(),
                cluster,
                outcome,
            ),
        }
    }

    /// Counts a completed TLS handshake by protocol version and key
    /// exchange group.
    pub fn tls_handshake(&mut self, version: &'static str, group: &'static str) {
        *self.tls_handshakes.entry((version, group)).or_default() += 1;
    }

    /// Counts a failed TLS handshake.
    pub fn tls_failure(&mut self, reason: &str) {
        bump_count(&mut self.tls_failures, reason);
    }

    /// Counts a refusal by authorization rule `rule`, on `listener` (and
    /// `route`, when the refusal came after routing). No allocation once
    /// the names have been seen.
    pub fn forbidden(&mut self, listener: &str, route: Option<&str>, rule: &str) {
        bump_count(&mut self.authz_denied, rule);
        for (map, name) in [
            (&mut self.listeners, Some(listener)),
            (&mut self.routes, route),
        ] {
            let Some(name) = name else { continue };
            match map.get_mut(name) {
                Some(c) => c.forbidden += 1,
                None => map.entry(name.to_owned()).or_default().forbidden += 1,
            }
        }
    }

    /// Adds `other` (merging shards).
    pub fn add(&mut self, other: &NamedCounts) {
        for (mine, theirs) in [
            (&mut self.listeners, &other.listeners),
            (&mut self.routes, &other.routes),
            (&mut self.clusters, &other.clusters),
        ] {
            for (name, c) in theirs {
                mine.entry(name.clone()).or_default().add(c);
            }
        }
        for (route, theirs) in &other.splits {
            let mine = self.splits.entry(route.clone()).or_default();
            for (cluster, c) in theirs {
                mine.entry(cluster.clone()).or_default().add(c);
            }
        }
        for (mine, theirs) in [
            (&mut self.tls_failures, &other.tls_failures),
            (&mut self.authz_denied, &other.authz_denied),
        ] {
            for (name, n) in theirs {
                *mine.entry(name.clone()).or_default() += n;
            }
        }
        for (key, n) in &other.tls_handshakes {
            *self.tls_handshakes.entry(*key).or_default() += n;
        }
    }
}

/// A shard's [`NamedCounts`] as last published.
#[derive(Debug, Default)]
pub struct PublishedCounts(ArcSwapOption<NamedCounts>);

impl PublishedCounts {
    /// Publishes a copy of `c` (shard side).
    pub fn publish(&self, c: &NamedCounts) {
        self.0.store(Some(Arc::new(c.clone())));
    }

    /// The last published counts (any thread).
    pub fn get(&self) -> Option<Arc<NamedCounts>> {
        self.0.load_full()
    }
}

/// Per-endpoint latency histograms: 1 µs to 60 s, 2 significant figures
/// (about 20 KiB each, one per endpoint per shard).
pub fn new_endpoint_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 2).expect("valid histogram bounds")
}

/// One endpoint as one shard sees it (for `meshctl clusters`).
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointReport {
    pub cluster: String,
    pub endpoint: std::net::SocketAddr,
    /// Tries in flight now.
    pub in_flight: u32,
    /// Tries sent / failed (5xx, gateway error, connect failure, reset,
    /// timeout) since start.
    pub requests: u64,
    pub failures: u64,
    /// Ejected by this shard's outlier detection until then.
    pub ejected_until: Option<std::time::Instant>,
    pub times_ejected: u32,
    /// Time to the response head of successful tries, µs (`None` before
    /// the first: an empty histogram is not worth its 20 KiB copy).
    pub latency: Option<Histogram<u64>>,
}

/// A shard's endpoint reports as last published (about once a second).
#[derive(Debug, Default)]
pub struct PublishedEndpoints(ArcSwapOption<Vec<EndpointReport>>);

impl PublishedEndpoints {
    /// Publishes `r` (shard side).
    pub fn publish(&self, r: Vec<EndpointReport>) {
        self.0.store(Some(Arc::new(r)));
    }

    /// The last published reports (any thread).
    pub fn get(&self) -> Option<Arc<Vec<EndpointReport>>> {
        self.0.load_full()
    }
}

/// Counters of one shard.
#[derive(Debug, Default)]
pub struct ShardStats {
    pub connections_accepted: Counter,
    pub connections_active: Counter,
    /// Closed at accept because the listener's `max_connections` was reached.
    pub connections_refused: Counter,
    pub tls_handshakes: Counter,
    pub tls_failures: Counter,
    pub requests: Counter,
    /// Responses by status class: index 1..=5 for 1xx..5xx.
    pub responses_by_class: [Counter; 6],
    pub upstream_connects: Counter,
    pub upstream_connect_failures: Counter,
    pub upstream_reused: Counter,
    /// TLS we opened to `[clusters.tls]` endpoints: handshakes completed,
    /// of which resumed, and handshakes failed (reasons per cluster in
    /// `named`).
    pub upstream_tls_handshakes: Counter,
    pub upstream_tls_resumed: Counter,
    pub upstream_tls_failures: Counter,
    /// Tries after the first (route retry policies).
    pub retries: Counter,
    /// Retries refused by the retry budget or the `max_retries` breaker.
    pub retry_overflows: Counter,
    /// Requests refused by a cluster circuit breaker (503).
    pub overloaded: Counter,
    /// Requests refused by a route rate limit (429).
    pub rate_limited: Counter,
    /// Requests (403) and TCP connections refused by authorization.
    pub forbidden: Counter,
    /// Live connections closed because, after a configuration change,
    /// their certificate no longer verified or the rules refused them.
    pub connections_rechecked_closed: Counter,
    /// Local answers and delays from route fault injection.
    pub faults_injected: Counter,
    /// Timeouts by kind.
    pub connect_timeouts: Counter,
    pub per_try_timeouts: Counter,
    /// The route's total timeout expired (504).
    pub request_timeouts: Counter,
    /// A request head not received in time (408).
    pub header_timeouts: Counter,
    /// A request body below the listener's minimum rate (408).
    pub slow_request_bodies: Counter,
    /// Connections closed at accept (or after the handshake) over a
    /// per-source or per-identity connection limit.
    pub connections_limited: Counter,
    /// Keep-alive connections closed for idling past `idle_timeout_ms`.
    pub idle_timeouts: Counter,
    /// TCP listeners: connections relayed to an upstream, and the bytes
    /// relayed each way (client → upstream, upstream → client).
    pub tcp_sessions: Counter,
    pub tcp_bytes_up: Counter,
    pub tcp_bytes_down: Counter,
    /// HTTP/2 downstream connections (ALPN `h2`), the streams (requests)
    /// they opened, and the connections `h2` closed with
    /// GOAWAY(ENHANCE_YOUR_CALM) for a breached limit (reset floods,
    /// too many protocol errors).
    pub h2_connections: Counter,
    pub h2_streams: Counter,
    pub h2_calm_goaways: Counter,
    /// HTTP/2 upstream connections opened (`protocol = "h2" | "h2c"`
    /// clusters), the streams (requests) sent on them, and requests sent
    /// again on a new connection because the upstream refused their
    /// stream unprocessed (REFUSED_STREAM, or above its GOAWAY's last
    /// stream id).
    pub h2_upstream_connections: Counter,
    pub h2_upstream_streams: Counter,
    pub h2_upstream_unprocessed: Counter,
    /// Passive outlier detection.
    pub outlier_ejections: Counter,
    pub outlier_returns: Counter,
    /// Generation of the snapshot this shard last loaded.
    pub generation: Counter,
    /// The shard's loop since start: turns, task polls, io_uring
    /// completions, and the tasks alive now (set every 100 ms).
    pub loop_turns: Counter,
    pub loop_polls: Counter,
    pub loop_completions: Counter,
    pub tasks: Counter,
    /// Access log records dropped because the writer's queue was full.
    pub access_log_dropped: Counter,
    /// Spans (of sampled requests) dropped because the exporter's queue
    /// was full.
    pub spans_dropped: Counter,
    /// Request latency (head received → response written), µs.
    pub latency: PublishedLatency,
    /// Per listener / route / cluster counters and TLS failure reasons.
    pub named: PublishedCounts,
    /// Per endpoint state for `meshctl clusters`.
    pub endpoints: PublishedEndpoints,
}

impl ShardStats {
    /// Counts a response with `status`.
    pub fn response(&self, status: u16) {
        if let Some(c) = self.responses_by_class.get((status / 100) as usize) {
            c.incr();
        }
    }

    /// The counters as `(name, value)` pairs, for reports.
    pub fn values(&self) -> Vec<(&'static str, u64)> {
        let r = &self.responses_by_class;
        vec![
            ("connections_accepted", self.connections_accepted.get()),
            ("connections_active", self.connections_active.get()),
            ("connections_refused", self.connections_refused.get()),
            ("tls_handshakes", self.tls_handshakes.get()),
            ("tls_failures", self.tls_failures.get()),
            ("requests", self.requests.get()),
            ("responses_1xx", r[1].get()),
            ("responses_2xx", r[2].get()),
            ("responses_3xx", r[3].get()),
            ("responses_4xx", r[4].get()),
            ("responses_5xx", r[5].get()),
            ("upstream_connects", self.upstream_connects.get()),
            (
                "upstream_connect_failures",
                self.upstream_connect_failures.get(),
            ),
            ("upstream_reused", self.upstream_reused.get()),
            (
                "upstream_tls_handshakes",
                self.upstream_tls_handshakes.get(),
            ),
            ("upstream_tls_resumed", self.upstream_tls_resumed.get()),
            ("upstream_tls_failures", self.upstream_tls_failures.get()),
            ("retries", self.retries.get()),
            ("retry_overflows", self.retry_overflows.get()),
            ("overloaded", self.overloaded.get()),
            ("rate_limited", self.rate_limited.get()),
            ("forbidden", self.forbidden.get()),
            (
                "connections_rechecked_closed",
                self.connections_rechecked_closed.get(),
            ),
            ("faults_injected", self.faults_injected.get()),
            ("connect_timeouts", self.connect_timeouts.get()),
            ("per_try_timeouts", self.per_try_timeouts.get()),
            ("request_timeouts", self.request_timeouts.get()),
            ("header_timeouts", self.header_timeouts.get()),
            ("slow_request_bodies", self.slow_request_bodies.get()),
            ("connections_limited", self.connections_limited.get()),
            ("idle_timeouts", self.idle_timeouts.get()),
            ("tcp_sessions", self.tcp_sessions.get()),
            ("tcp_bytes_up", self.tcp_bytes_up.get()),
            ("tcp_bytes_down", self.tcp_bytes_down.get()),
            ("h2_connections", self.h2_connections.get()),
            ("h2_streams", self.h2_streams.get()),
            ("h2_calm_goaways", self.h2_calm_goaways.get()),
            (
                "h2_upstream_connections",
                self.h2_upstream_connections.get(),
            ),
            ("h2_upstream_streams", self.h2_upstream_streams.get()),
            (
                "h2_upstream_unprocessed",
                self.h2_upstream_unprocessed.get(),
            ),
            ("outlier_ejections", self.outlier_ejections.get()),
            ("outlier_returns", self.outlier_returns.get()),
            ("loop_turns", self.loop_turns.get()),
            ("loop_polls", self.loop_polls.get()),
            ("loop_completions", self.loop_completions.get()),
            ("tasks", self.tasks.get()),
            ("access_log_dropped", self.access_log_dropped.get()),
            ("spans_dropped", self.spans_dropped.get()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_count_and_classify() {
        let s = ShardStats::default();
        s.requests.incr();
        s.requests.add(2);
        s.response(204);
        s.response(503);
        s.response(999);
        s.connections_active.incr();
        s.connections_active.decr();
        s.connections_active.decr();
        assert_eq!(s.requests.get(), 3);
        assert_eq!(s.responses_by_class[2].get(), 1);
        assert_eq!(s.responses_by_class[5].get(), 1);
        assert_eq!(s.connections_active.get(), 0, "gauges never go below zero");
        assert!(s.values().contains(&("responses_5xx", 1)));
    }

    #[test]
    fn split_counts_merge_by_route_and_cluster() {
        let ok = Outcome {
            status: Some(200),
            grpc_status: Some(14),
            bytes_in: 1,
            bytes_out: 2,
            duration_us: Some(100),
            upstream_ttfb_us: Some(50),
            failed: false,
        };
        let (mut a, mut b) = (NamedCounts::default(), NamedCounts::default());
        a.record_split("web", "v1", &ok);
        a.record_split("web", "v1", &ok);
        assert_eq!(a.splits["web"]["v1"].grpc.get(&14), Some(&2));
        b.record_split("web", "v2", &ok);
        b.record_split("web", "v1", &ok);
        a.add(&b);
        let web = &a.splits["web"];
        assert_eq!((web["v1"].requests, web["v2"].requests), (3, 1));
        assert_eq!(web["v1"].responses[2], 3);
    }
}
