//! A shard's traffic-management state: per cluster, the balancer cursors,
//! outlier detector, circuit-breaker gauges and per-endpoint counters; per
//! route, the rate-limit token bucket. Shared-nothing: every shard keeps its
//! own, rebuilt from the snapshot when a new one arrives and carried over by
//! name (and endpoint address) so a config apply does not forget who is
//! ejected or reset the gauges of requests still in flight.
//!
//! Time and randomness come in as arguments; nothing here does I/O.

use std::cell::Cell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::route::rate_limit::TokenBucket;
use crate::route::{Cluster, ClusterId, ClusterLimits, LbPolicy, RateKey, RateLimit, Snapshot};
use crate::telemetry::{Histogram, new_endpoint_histogram};
use crate::upstream::balancer::PeakEwma;
use crate::upstream::outlier::{Event, Outcome, OutlierDetector};
use crate::upstream::weighted::SmoothWeighted;
use crate::upstream::{XorShift, least_request};

/// A count of things in progress, decremented when its guard drops.
#[derive(Debug, Clone, Default)]
pub struct Gauge(Rc<Cell<u32>>);

impl Gauge {
    pub fn get(&self) -> u32 {
        self.0.get()
    }

    /// Counts one until the guard drops.
    pub fn enter(&self) -> GaugeGuard {
        self.0.set(self.0.get().saturating_add(1));
        GaugeGuard(self.0.clone())
    }
}

/// One unit of a [`Gauge`].
#[derive(Debug)]
pub struct GaugeGuard(Rc<Cell<u32>>);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

/// Per-endpoint state of one cluster on one shard.
#[derive(Debug)]
pub struct EndpointState {
    /// Tries in flight (least-request balancing).
    pub in_flight: Gauge,
    /// Tries sent.
    pub requests: u64,
    /// Tries that failed (5xx, gateway error, connect failure, reset,
    /// timeout).
    pub failures: u64,
    /// Time to the response head (or the failure), for least request.
    pub latency: PeakEwma,
    /// Time to the response head of tries that did not fail, µs.
    pub histogram: Histogram<u64>,
}

impl Default for EndpointState {
    fn default() -> Self {
        EndpointState {
            in_flight: Gauge::default(),
            requests: 0,
            failures: 0,
            latency: PeakEwma::default(),
            histogram: new_endpoint_histogram(),
        }
    }
}

/// One cluster's state on one shard.
#[derive(Debug)]
pub struct ClusterState {
    pub name: String,
    pub endpoints: Vec<SocketAddr>,
    pub endpoint: Vec<EndpointState>,
    pub outlier: OutlierDetector,
    wrr: SmoothWeighted,
    rr: usize,
    /// Requests admitted and not finished.
    pub active_requests: Gauge,
    /// Retries in flight.
    pub active_retries: Gauge,
    /// Requests waiting for an upstream connection (connecting).
    pub pending: Gauge,
    /// Open upstream connections, pooled ones included.
    pub connections: Gauge,
}

impl ClusterState {
    fn new(c: &Cluster) -> ClusterState {
        let mut outlier = OutlierDetector::default();
        outlier.reset(c.endpoints.len());
        ClusterState {
            name: c.name.clone(),
            endpoints: c.endpoints.clone(),
            endpoint: c
                .endpoints
                .iter()
                .map(|_| EndpointState::default())
                .collect(),
            outlier,
            wrr: SmoothWeighted::default(),
            rr: 0,
            active_requests: Gauge::default(),
            active_retries: Gauge::default(),
            pending: Gauge::default(),
            connections: Gauge::default(),
        }
    }

    /// State for `c`, keeping what `old` knew of the same endpoints.
    fn carry_over(mut old: ClusterState, c: &Cluster) -> ClusterState {
        if old.endpoints == c.endpoints {
            return old;
        }
        let mut new = ClusterState::new(c);
        for (i, addr) in c.endpoints.iter().enumerate() {
            if let Some(j) = old.endpoints.iter().position(|a| a == addr) {
                new.endpoint[i] = std::mem::take(&mut old.endpoint[j]);
            }
        }
        // Ejections follow their endpoint's address to its new index.
        let old_endpoints = old.endpoints.clone();
        new.outlier = old.outlier;
        new.outlier.remap(c.endpoints.len(), |i| {
            old_endpoints.iter().position(|a| *a == c.endpoints[i])
        });
        new.active_requests = old.active_requests;
        new.active_retries = old.active_retries;
        new.pending = old.pending;
        new.connections = old.connections;
        new
    }
}

/// Most keys a keyed rate limit tracks per route per shard; beyond it,
/// keys idle long enough to have refilled are forgotten, and new keys share
/// one overflow bucket until room frees up.
pub const MAX_RATE_KEYS: usize = 10_000;

/// The token buckets of one rate-limited route on one shard.
#[derive(Debug, Clone)]
struct Buckets {
    rate: f64,
    burst: f64,
    /// The route-wide bucket (or the overflow bucket of a keyed limit).
    shared: TokenBucket,
    /// Per key: its bucket and when it was last used.
    keyed: HashMap<Box<[u8]>, (TokenBucket, Instant)>,
}

impl Buckets {
    fn new(rate: f64, burst: f64, now: Instant) -> Buckets {
        Buckets {
            rate,
            burst,
            shared: TokenBucket::new(rate, burst, now),
            keyed: HashMap::new(),
        }
    }

    fn take(&mut self, key: &[u8], now: Instant) -> Result<(), Duration> {
        if let Some((bucket, used)) = self.keyed.get_mut(key) {
            *used = now;
            return bucket.try_take(now);
        }
        if self.keyed.len() >= MAX_RATE_KEYS {
            // A bucket unused for burst / rate seconds is full again:
            // forgetting it changes nothing.
            let refill = Duration::from_secs_f64((self.burst / self.rate).min(86_400.0));
            self.keyed
                .retain(|_, (_, used)| now.saturating_duration_since(*used) < refill);
            if self.keyed.len() >= MAX_RATE_KEYS {
                return self.shared.try_take(now);
            }
        }
        let mut bucket = TokenBucket::new(self.rate, self.burst, now);
        let taken = bucket.try_take(now);
        self.keyed.insert(key.into(), (bucket, now));
        taken
    }
}

/// The latency a failed try counts as for least-request balancing.
pub const FAILURE_LATENCY: Duration = Duration::from_secs(1);

/// What a balancer pick needs from the request.
#[derive(Debug, Clone, Copy, Default)]
pub struct PickInput {
    /// The request's hash key (ring hash, maglev).
    pub hash: u64,
    /// An endpoint to avoid (the one a retry failed on), if another is
    /// usable.
    pub avoid: Option<usize>,
}

/// A shard's traffic state for the current snapshot.
#[derive(Debug)]
pub struct Traffic {
    generation: u64,
    shards: usize,
    /// Indexed by [`ClusterId`].
    pub clusters: Vec<ClusterState>,
    /// Per listener, per route (snapshot order): the rate-limit bucket and
    /// the limit it was built for.
    buckets: Vec<Vec<Option<(RateLimit, Buckets)>>>,
    rng: XorShift,
    /// Ejections and returns since start (published as counters).
    pub ejections: u64,
    pub returns: u64,
}

impl Traffic {
    /// Empty state for a shard of a gateway with `shards` shards.
    pub fn new(shards: usize, seed: u64) -> Traffic {
        Traffic {
            generation: u64::MAX,
            shards: shards.max(1),
            clusters: Vec::new(),
            buckets: Vec::new(),
            rng: XorShift::new(seed),
            ejections: 0,
            returns: 0,
        }
    }

    /// A uniform random value.
    pub fn random(&mut self) -> u64 {
        self.rng.next_u64()
    }

    /// Brings the state in line with `snapshot` (cheap when it is the one
    /// already seen).
    pub fn sync(&mut self, snapshot: &Snapshot, now: Instant) {
        if self.generation == snapshot.generation {
            return;
        }
        self.generation = snapshot.generation;
        let mut old: Vec<ClusterState> = std::mem::take(&mut self.clusters);
        self.clusters = snapshot
            .clusters
            .iter()
            .map(|c| match old.iter().position(|o| o.name == c.name) {
                Some(i) => ClusterState::carry_over(old.swap_remove(i), c),
                None => ClusterState::new(c),
            })
            .collect();
        let mut old_buckets = std::mem::take(&mut self.buckets);
        let shards = self.shards as f64;
        self.buckets = snapshot
            .listeners
            .iter()
            .enumerate()
            .map(|(li, l)| {
                l.routes
                    .iter()
                    .enumerate()
                    .map(|(ri, r)| {
                        let limit = r.rate_limit.clone()?;
                        // Keep buckets whose limit did not change.
                        if let Some(Some((was, buckets))) = old_buckets
                            .get_mut(li)
                            .and_then(|v| v.get_mut(ri))
                            .map(Option::take)
                            && was == limit
                        {
                            return Some((limit, buckets));
                        }
                        let buckets =
                            Buckets::new(limit.rps / shards, (limit.burst / shards).max(1.0), now);
                        Some((limit, buckets))
                    })
                    .collect()
            })
            .collect();
    }

    /// Takes a token of route `route` of listener `listener`; `Err` carries
    /// the wait until one is available. Routes without a limit always pass.
    pub fn admit(
        &mut self,
        listener: usize,
        route: usize,
        key: &[u8],
        now: Instant,
    ) -> Result<(), Duration> {
        match self
            .buckets
            .get_mut(listener)
            .and_then(|l| l.get_mut(route))
        {
            Some(Some((limit, buckets))) => match limit.key {
                RateKey::Route => buckets.shared.try_take(now),
                _ => buckets.take(key, now),
            },
            _ => Ok(()),
        }
    }

    /// The rate limit of a route, if any (what its key is).
    pub fn rate_key(&self, listener: usize, route: usize) -> Option<&RateKey> {
        match self.buckets.get(listener)?.get(route)? {
            Some((limit, _)) => Some(&limit.key),
            None => None,
        }
    }

    /// This shard's share of a gateway-wide limit.
    pub fn share(&self, limit: u32) -> u32 {
        ClusterLimits::share(limit, self.shards)
    }

    /// Re-admits endpoints whose ejection ended (called on the shard's
    /// housekeeping tick and before a pick).
    pub fn tick(&mut self, snapshot: &Snapshot, now: Instant) {
        for (state, c) in self.clusters.iter_mut().zip(&snapshot.clusters) {
            if let Some(settings) = &c.outlier {
                let returned = state.outlier.tick(now, settings);
                self.returns += u64::from(returned);
                if returned > 0 {
                    log::info!(
                        "cluster {:?}: {returned} endpoint(s) back from ejection",
                        c.name
                    );
                }
            }
        }
    }

    /// Picks an endpoint index of cluster `id`: from its rotation, skipping
    /// ejected endpoints (and `input.avoid`) while another is usable.
    /// `None` when the rotation is empty.
    pub fn pick(
        &mut self,
        snapshot: &Snapshot,
        id: ClusterId,
        input: PickInput,
        now: Instant,
    ) -> Option<usize> {
        let c = snapshot.cluster(id);
        let state = self.clusters.get_mut(id.0 as usize)?;
        if c.rotation.is_empty() {
            return None;
        }
        let outlier = &state.outlier;
        let ejected = |i: usize| c.outlier.is_some() && outlier.is_ejected(i, now);
        // Strictest first: not ejected and not the failed one; then not
        // ejected; then anything in rotation (panic: all ejected).
        let tiers: [&dyn Fn(usize) -> bool; 3] = [
            &|i| !ejected(i) && Some(i) != input.avoid,
            &|i| !ejected(i),
            &|_| true,
        ];
        let tier = tiers
            .iter()
            .position(|ok| c.rotation.iter().any(|&i| ok(i)))
            .unwrap_or(2);
        let usable = |i: usize| c.in_rotation(i) && tiers[tier](i);
        let rng = &mut self.rng;
        match &c.lb {
            LbPolicy::RoundRobin => {
                let n = c.rotation.len();
                let start = state.rr;
                (0..n)
                    .map(|k| c.rotation[(start + k) % n])
                    .find(|&i| usable(i))
                    .inspect(|_| state.rr = state.rr.wrapping_add(1))
            }
            LbPolicy::WeightedRoundRobin => state.wrr.pick(&c.weights, usable),
            LbPolicy::LeastRequest => {
                let load = |i: usize| {
                    let e = &state.endpoint[i];
                    e.latency.cost(e.in_flight.get(), now)
                };
                // Power of two choices over the rotation; a draw that lands
                // on an unusable endpoint is redrawn a few times, then the
                // least loaded usable endpoint is taken.
                for _ in 0..4 {
                    let k = least_request(c.rotation.len(), rng, |k| load(c.rotation[k]))?;
                    if usable(c.rotation[k]) {
                        return Some(c.rotation[k]);
                    }
                }
                c.rotation
                    .iter()
                    .copied()
                    .filter(|&i| usable(i))
                    .min_by(|&a, &b| load(a).total_cmp(&load(b)))
            }
            LbPolicy::RingHash { ring, .. } => ring.pick(input.hash, usable),
            LbPolicy::Maglev { table, .. } => table.pick(input.hash, usable),
        }
    }

    /// Records how a try to endpoint `i` of cluster `id` went, and how
    /// long it took (outlier detection, latency-aware balancing and
    /// per-endpoint counters).
    pub fn record(
        &mut self,
        snapshot: &Snapshot,
        id: ClusterId,
        i: usize,
        failed: bool,
        took: Duration,
        now: Instant,
    ) {
        let c = snapshot.cluster(id);
        let Some(state) = self.clusters.get_mut(id.0 as usize) else {
            return;
        };
        if let Some(e) = state.endpoint.get_mut(i) {
            e.requests += 1;
            e.failures += u64::from(failed);
            // A failure counts as slow, so fast failures do not attract
            // traffic.
            let sample = if failed {
                took.max(FAILURE_LATENCY)
            } else {
                took
            };
            e.latency.observe(sample, now);
            if !failed {
                let micros = took.as_micros().clamp(1, 60_000_000) as u64;
                let _ = e.histogram.record(micros);
            }
        }
        let Some(settings) = &c.outlier else { return };
        let outcome = if failed {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        if let Some(Event::Ejected { until, times }) =
            state.outlier.record(i, outcome, now, settings)
        {
            self.ejections += 1;
            log::warn!(
                "cluster {:?}: endpoint {} ejected for {} ms (ejection #{times})",
                c.name,
                c.endpoints
                    .get(i)
                    .map_or_else(String::new, |a| a.to_string()),
                until.saturating_duration_since(now).as_millis()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::{Listener, Protocol, Route, RouteMatch};
    use crate::upstream::outlier::OutlierSettings;

    fn snapshot(generation: u64, lb: LbPolicy, n: u16) -> Snapshot {
        let endpoints = (0..n)
            .map(|p| SocketAddr::from(([127, 0, 0, 1], 9000 + p)))
            .collect();
        let mut c = Cluster::new("c", endpoints);
        c.lb = lb;
        c.outlier = Some(OutlierSettings {
            consecutive_failures: 2,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(300),
            max_ejection_percent: 50,
        });
        let mut route = Route::to_cluster("r", RouteMatch::default(), ClusterId(0));
        route.rate_limit = Some(RateLimit {
            rps: 10.0,
            burst: 2.0,
            key: RateKey::Route,
        });
        Snapshot {
            generation,
            listeners: vec![Listener {
                name: "l".into(),
                address: "127.0.0.1:1".parse().unwrap(),
                protocol: Protocol::Http,
                tls: None,
                routes: vec![route],
                limits: Default::default(),
                authz: Default::default(),
                access_log: None,
            }],
            clusters: vec![c],
            tracing: None,
        }
    }

    #[test]
    fn ejected_endpoint_is_skipped_until_it_returns() {
        let t0 = Instant::now();
        let snap = snapshot(1, LbPolicy::RoundRobin, 4);
        let mut t = Traffic::new(1, 1);
        t.sync(&snap, t0);
        t.record(&snap, ClusterId(0), 1, true, Duration::ZERO, t0);
        t.record(&snap, ClusterId(0), 1, true, Duration::ZERO, t0);
        assert_eq!(t.ejections, 1);
        let picks: Vec<_> = (0..8)
            .map(|_| {
                t.pick(&snap, ClusterId(0), PickInput::default(), t0)
                    .unwrap()
            })
            .collect();
        assert!(!picks.contains(&1), "{picks:?}");
        let later = t0 + Duration::from_secs(11);
        t.tick(&snap, later);
        assert_eq!(t.returns, 1);
        let picks: Vec<_> = (0..8)
            .map(|_| {
                t.pick(&snap, ClusterId(0), PickInput::default(), later)
                    .unwrap()
            })
            .collect();
        assert!(picks.contains(&1), "{picks:?}");
    }

    #[test]
    fn a_retry_avoids_the_endpoint_that_failed_when_it_can() {
        let t0 = Instant::now();
        let snap = snapshot(1, LbPolicy::LeastRequest, 2);
        let mut t = Traffic::new(1, 7);
        t.sync(&snap, t0);
        for _ in 0..100 {
            let input = PickInput {
                hash: 0,
                avoid: Some(0),
            };
            assert_eq!(t.pick(&snap, ClusterId(0), input, t0), Some(1));
        }
        // A one-endpoint cluster still gets its retry.
        let snap1 = snapshot(2, LbPolicy::LeastRequest, 1);
        t.sync(&snap1, t0);
        let input = PickInput {
            hash: 0,
            avoid: Some(0),
        };
        assert_eq!(t.pick(&snap1, ClusterId(0), input, t0), Some(0));
    }

    #[test]
    fn state_survives_an_apply_of_the_same_cluster() {
        let t0 = Instant::now();
        let snap = snapshot(1, LbPolicy::RoundRobin, 4);
        let mut t = Traffic::new(2, 1);
        t.sync(&snap, t0);
        let guard = t.clusters[0].active_requests.enter();
        t.record(&snap, ClusterId(0), 2, true, Duration::ZERO, t0);
        t.record(&snap, ClusterId(0), 2, true, Duration::ZERO, t0);
        t.record(&snap, ClusterId(0), 3, false, Duration::from_millis(3), t0);
        assert_eq!(
            t.clusters[0].endpoint[3].histogram.len(),
            1,
            "successes are timed"
        );
        assert_eq!(
            t.clusters[0].endpoint[2].histogram.len(),
            0,
            "failures are not"
        );
        let snap2 = snapshot(2, LbPolicy::RoundRobin, 4);
        t.sync(&snap2, t0);
        assert_eq!(t.clusters[0].active_requests.get(), 1);
        assert!(t.clusters[0].outlier.is_ejected(2, t0));
        drop(guard);
        assert_eq!(t.clusters[0].active_requests.get(), 0);
        assert_eq!(t.share(1024), 512);
    }

    #[test]
    fn rate_limit_admits_the_shard_share_of_the_burst() {
        let t0 = Instant::now();
        let snap = snapshot(1, LbPolicy::RoundRobin, 1);
        // One shard: burst 2, 10/s.
        let mut t = Traffic::new(1, 1);
        t.sync(&snap, t0);
        assert!(t.admit(0, 0, b"a", t0).is_ok());
        assert!(t.admit(0, 0, b"b", t0).is_ok());
        let wait = t.admit(0, 0, b"c", t0).unwrap_err();
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        assert!(t.admit(0, 0, b"a", t0 + Duration::from_millis(100)).is_ok());
        // A route without a limit (or an unknown index) always passes.
        assert!(t.admit(5, 5, b"", t0).is_ok());
    }

    #[test]
    fn keyed_rate_limit_gives_each_key_its_own_budget_and_stays_bounded() {
        let t0 = Instant::now();
        let mut snap = snapshot(1, LbPolicy::RoundRobin, 1);
        snap.listeners[0].routes[0].rate_limit = Some(RateLimit {
            rps: 10.0,
            burst: 2.0,
            key: RateKey::SpiffeId,
        });
        let mut t = Traffic::new(1, 1);
        t.sync(&snap, t0);
        for key in [&b"spiffe://a"[..], b"spiffe://b"] {
            assert!(t.admit(0, 0, key, t0).is_ok());
            assert!(t.admit(0, 0, key, t0).is_ok());
            assert!(t.admit(0, 0, key, t0).is_err(), "{key:?}");
        }
        // Many keys: the table stops growing; idle full buckets are
        // forgotten; while all are busy new keys share the overflow bucket.
        for i in 0..MAX_RATE_KEYS + 10 {
            let _ = t.admit(0, 0, format!("k{i}").as_bytes(), t0);
        }
        let keys = |t: &Traffic| match &t.buckets[0][0] {
            Some((_, b)) => b.keyed.len(),
            None => 0,
        };
        assert_eq!(keys(&t), MAX_RATE_KEYS);
        let later = t0 + Duration::from_secs(1);
        assert!(t.admit(0, 0, b"fresh", later).is_ok());
        assert_eq!(keys(&t), 1, "idle buckets forgotten once full again");
    }
}
