//! Per-shard pool of idle keep-alive upstream connections.
//!
//! Connections are kept per endpoint, most recently used first (warm
//! connections are reused, old ones age out). A connection is handed out
//! only if nothing arrived on it while idle: bytes or EOF on an idle HTTP/1
//! connection mean the upstream closed it or broke framing.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The pool is keyed by endpoint address.
pub type PoolKey = SocketAddr;

struct Idle<C> {
    conn: C,
    since: Instant,
}

/// Idle connections of one shard, generic over the connection type so the
/// policy is testable without sockets.
pub struct UpstreamPool<C> {
    idle: HashMap<PoolKey, Vec<Idle<C>>>,
    total: usize,
}

impl<C> std::fmt::Debug for UpstreamPool<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamPool")
            .field("idle", &self.total)
            .finish()
    }
}

impl<C> Default for UpstreamPool<C> {
    fn default() -> Self {
        UpstreamPool {
            idle: HashMap::new(),
            total: 0,
        }
    }
}

impl<C> UpstreamPool<C> {
    /// Takes the most recently parked connection to `key` that is younger
    /// than `max_idle` and passes `usable`; stale ones are dropped.
    pub fn take(
        &mut self,
        key: PoolKey,
        now: Instant,
        max_idle: Duration,
        usable: impl Fn(&C) -> bool,
    ) -> Option<C> {
        let list = self.idle.get_mut(&key)?;
        while let Some(entry) = list.pop() {
            self.total -= 1;
            if now.saturating_duration_since(entry.since) < max_idle && usable(&entry.conn) {
                return Some(entry.conn);
            }
        }
        None
    }

    /// Parks `conn`; beyond `max_idle_per_endpoint` the oldest is dropped.
    pub fn put(&mut self, key: PoolKey, conn: C, now: Instant, max_idle_per_endpoint: usize) {
        if max_idle_per_endpoint == 0 {
            return;
        }
        let list = self.idle.entry(key).or_default();
        if list.len() >= max_idle_per_endpoint {
            list.remove(0);
            self.total -= 1;
        }
        list.push(Idle { conn, since: now });
        self.total += 1;
    }

    /// Drops connections idle for `max_idle` or longer.
    pub fn prune(&mut self, now: Instant, max_idle: impl Fn(PoolKey) -> Duration) {
        let mut total = 0;
        self.idle.retain(|key, list| {
            let limit = max_idle(*key);
            list.retain(|e| now.saturating_duration_since(e.since) < limit);
            total += list.len();
            !list.is_empty()
        });
        self.total = total;
    }

    /// Idle connections held.
    pub fn len(&self) -> usize {
        self.total
    }

    /// Whether no connection is idle.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16) -> PoolKey {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn reuses_most_recent_and_skips_stale_or_unusable() {
        let t0 = Instant::now();
        let mut pool = UpstreamPool::default();
        pool.put(key(1), "old", t0, 8);
        pool.put(key(1), "broken", t0 + Duration::from_secs(9), 8);
        pool.put(key(1), "fresh", t0 + Duration::from_secs(10), 8);
        let now = t0 + Duration::from_secs(11);
        assert_eq!(
            pool.take(key(1), now, Duration::from_secs(5), |_| true),
            Some("fresh")
        );
        assert_eq!(
            pool.take(key(1), now, Duration::from_secs(5), |c| *c != "broken"),
            None,
            "old is stale"
        );
        assert!(pool.is_empty());
        assert_eq!(
            pool.take(key(2), now, Duration::from_secs(5), |_| true),
            None
        );
    }

    #[test]
    fn caps_idle_per_endpoint_and_prunes() {
        let t0 = Instant::now();
        let mut pool = UpstreamPool::default();
        for i in 0..5 {
            pool.put(key(1), i, t0 + Duration::from_secs(i), 3);
        }
        assert_eq!(pool.len(), 3);
        pool.prune(t0 + Duration::from_secs(6), |_| Duration::from_secs(3));
        assert_eq!(pool.len(), 1);
        assert_eq!(
            pool.take(
                key(1),
                t0 + Duration::from_secs(6),
                Duration::from_secs(3),
                |_| true
            ),
            Some(4)
        );
        pool.put(key(1), 9, t0, 0);
        assert!(
            pool.is_empty(),
            "max_idle_per_endpoint = 0 disables pooling"
        );
    }
}
