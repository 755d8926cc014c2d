//! Telemetry stage: per-shard counters.
//!
//! Each shard owns its [`ShardStats`] and is its only writer: plain `Cell`s,
//! no atomics on the request path. The control thread will read snapshots
//! of them through the shard's command channel (control-socket work).

use std::cell::Cell;

/// Counters of one shard.
#[derive(Debug, Default)]
pub struct ShardStats {
    pub connections_accepted: Cell<u64>,
    pub connections_active: Cell<u64>,
    /// Closed at accept because the listener's `max_connections` was reached.
    pub connections_refused: Cell<u64>,
    pub tls_handshakes: Cell<u64>,
    pub tls_failures: Cell<u64>,
    pub requests: Cell<u64>,
    /// Responses by status class: index 1..=5 for 1xx..5xx.
    pub responses_by_class: [Cell<u64>; 6],
    pub upstream_connects: Cell<u64>,
    pub upstream_connect_failures: Cell<u64>,
    pub upstream_reused: Cell<u64>,
}

impl ShardStats {
    /// Adds one to `counter`.
    pub fn incr(counter: &Cell<u64>) {
        counter.set(counter.get() + 1);
    }

    /// Counts a response with `status`.
    pub fn response(&self, status: u16) {
        let class = (status / 100) as usize;
        if let Some(c) = self.responses_by_class.get(class) {
            Self::incr(c);
        }
    }
}
