//! Telemetry stage: per-shard counters.
//!
//! Each shard owns one [`ShardStats`] and is its only writer. Counters are
//! `AtomicU64`s updated with a relaxed load and store (no read-modify-write,
//! no lock prefix, no cache line shared with another writer), so the control
//! thread can read them at any time without stopping or slowing the shard.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwapOption;
pub use hdrhistogram::Histogram;

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
    /// Generation of the snapshot this shard last loaded.
    pub generation: Counter,
    /// Request latency (head received → response written), µs.
    pub latency: PublishedLatency,
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
}
