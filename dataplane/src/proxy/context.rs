//! One shard's context: the state its tasks share on their thread — the
//! snapshot cache (with the canary slot), the upstream connection pool,
//! the traffic state (balancers, outlier ejection, breakers, rate limits),
//! counters, request ids, and the connections waiting idle (woken by a
//! drain or a removed listener).
//!
//! Uses `route` (snapshots), `upstream` (the pool), `telemetry`, `net`
//! (the stack connections are opened on) and the runtime's clock.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::{ArcSwap, ArcSwapOption, Cache};

use super::request_id::RequestIds;
use super::traffic::{GaugeGuard, Traffic};
use super::upstream_conn::UpstreamConn;
use crate::net::Stack;
use crate::route::Snapshot;
use crate::runtime;
use crate::telemetry::ShardStats;
use crate::upstream::UpstreamPool;
use crate::upstream::balancer::XorShift;

/// An idle upstream connection and its place in its cluster's
/// `connections` gauge.
pub type PooledConn = (UpstreamConn, GaugeGuard);

/// The bounded queue to the access-log writer thread: batches of
/// rendered lines.
pub type AccessLogQueue = std::sync::mpsc::SyncSender<crate::telemetry::access_batch::LogBatch>;

/// The bounded queue to the span exporter thread.
pub type SpanQueue = std::sync::mpsc::SyncSender<Box<crate::telemetry::trace::FinishedTrace>>;

/// A connection waiting idle on a listener.
type IdleWaiter = (Rc<str>, Waker);

/// A shard's cached view of its canary slot.
type CanaryCache = Cache<Arc<ArcSwapOption<Snapshot>>, Option<Arc<Snapshot>>>;

/// A shard's shared-nothing state, shared by its tasks (single thread).
pub struct ShardContext {
    pub id: usize,
    /// The TCP/IP stack upstream connections are opened on.
    pub stack: Stack,
    snapshots: RefCell<Cache<Arc<ArcSwap<Snapshot>>, Arc<Snapshot>>>,
    /// A snapshot published to this shard only (canary apply); wins over
    /// `snapshots` while set.
    canary: RefCell<CanaryCache>,
    pub upstreams: RefCell<UpstreamPool<PooledConn>>,
    /// Multiplexed connections to HTTP/2 clusters' endpoints.
    pub(crate) h2_upstreams: RefCell<super::http2::client::H2Pool>,
    /// Balancers, outlier ejection, circuit breakers, rate limits.
    pub traffic: RefCell<Traffic>,
    pub stats: Arc<ShardStats>,
    pub request_ids: RequestIds,
    /// Request latencies recorded by this shard (published by the loop).
    pub latency: RefCell<hdrhistogram::Histogram<u64>>,
    /// Counters by name (published by the loop).
    pub named: RefCell<crate::telemetry::NamedCounts>,
    /// The access-log writer's queue (`None`: no listener logs).
    pub access_log: Option<AccessLogQueue>,
    /// Lines rendered and not handed to the writer yet.
    pub access_batches: RefCell<crate::telemetry::access_batch::Batches>,
    /// The span exporter's queue (`None`: spans are never recorded).
    pub spans: Option<SpanQueue>,
    /// Trace and span ids and sampling draws: seeded apart from the other
    /// draws, so gateways sharing a `[dataplane] seed` still make distinct
    /// trace ids.
    pub trace_rng: RefCell<XorShift>,
    /// The wall clock's reading against the shard's clock, taken on each
    /// housekeeping tick: a finished request's time of day without a clock
    /// read per request.
    wall_anchor: Cell<(Instant, SystemTime)>,
    draining: Cell<bool>,
    /// Connections idle between requests, woken when draining starts or a
    /// listener is removed. A slot per waiting connection, freed when it
    /// stops waiting.
    drain_waiters: RefCell<Vec<Option<IdleWaiter>>>,
    free_waiters: RefCell<Vec<usize>>,
}

impl std::fmt::Debug for ShardContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardContext")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Lines still batched when the shard ends are not lost.
impl Drop for ShardContext {
    fn drop(&mut self) {
        self.flush_access_log();
    }
}

impl ShardContext {
    /// A context reading `snapshots`, connecting through `stack`, with
    /// its randomness (balancer draws, splits, faults, backoff jitter,
    /// request ids) all drawn from `seed`.
    pub fn new(
        id: usize,
        shard_count: usize,
        snapshots: Arc<ArcSwap<Snapshot>>,
        canary: Arc<ArcSwapOption<Snapshot>>,
        stats: Arc<ShardStats>,
        stack: Stack,
        seed: u64,
    ) -> ShardContext {
        ShardContext {
            id,
            stack,
            snapshots: RefCell::new(Cache::new(snapshots)),
            canary: RefCell::new(Cache::new(canary)),
            upstreams: RefCell::new(UpstreamPool::default()),
            h2_upstreams: RefCell::new(Default::default()),
            traffic: RefCell::new(Traffic::new(shard_count, seed ^ 0x5DEE_CE66_D1CE_4E5B)),
            stats,
            request_ids: RequestIds::new(seed),
            latency: RefCell::new(crate::telemetry::new_latency_histogram()),
            named: RefCell::new(crate::telemetry::NamedCounts::default()),
            access_log: None,
            access_batches: RefCell::default(),
            spans: None,
            trace_rng: RefCell::new(XorShift::new(seed ^ 0x7AC3_11D5_0B0E_2C49)),
            wall_anchor: Cell::new((runtime::precise_now(), runtime::wall_clock())),
            draining: Cell::new(false),
            drain_waiters: RefCell::new(Vec::new()),
            free_waiters: RefCell::new(Vec::new()),
        }
    }

    /// Hands finished requests' records to `queue`.
    pub fn with_access_log(mut self, queue: Option<AccessLogQueue>) -> ShardContext {
        self.access_log = queue;
        self
    }

    /// Hands sampled requests' spans to `queue`, with trace ids drawn
    /// from `seed`.
    pub fn with_spans(mut self, queue: Option<SpanQueue>, seed: u64) -> ShardContext {
        self.spans = queue;
        self.trace_rng = RefCell::new(XorShift::new(seed));
        self
    }

    /// The time of day at `at` (an instant of the shard's clock), from the
    /// last tick's reading.
    pub fn wall_time(&self, at: Instant) -> SystemTime {
        let (instant, wall) = self.wall_anchor.get();
        match at.checked_duration_since(instant) {
            Some(after) => wall + after,
            None => wall.checked_sub(instant - at).unwrap_or(wall),
        }
    }

    /// Reads the wall clock again (the housekeeping tick).
    pub fn read_wall_clock(&self) {
        self.wall_anchor
            .set((runtime::precise_now(), runtime::wall_clock()));
    }

    /// Hands a batch of access-log lines to the writer; a full queue (or a
    /// writer gone) drops them, counted.
    pub fn send_access_batch(&self, batch: crate::telemetry::access_batch::LogBatch) {
        let Some(queue) = &self.access_log else {
            return;
        };
        let records = batch.records;
        if queue.try_send(batch).is_err() {
            self.stats.access_log_dropped.add(records);
        }
    }

    /// Hands every access-log line rendered so far to the writer (the
    /// housekeeping tick, and the shard's end).
    pub fn flush_access_log(&self) {
        let batches = self.access_batches.borrow_mut().take();
        for batch in batches {
            self.send_access_batch(batch);
        }
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.with_current(|s| s.clone())
    }

    /// Runs `f` on this shard's current snapshot: its canary if one is set,
    /// else the published one. Two cached pointer checks, no shared writes.
    fn with_current<R>(&self, f: impl FnOnce(&Arc<Snapshot>) -> R) -> R {
        let mut canary = self.canary.borrow_mut();
        if let Some(c) = canary.load() {
            return f(c);
        }
        drop(canary);
        f(self.snapshots.borrow_mut().load())
    }

    /// Adds what a request's decision counts as (rate limited, fault
    /// injected, overloaded, forbidden by a rule of `listener`).
    pub fn count_decision(
        &self,
        decision: &super::decide::Decision,
        snapshot: &Snapshot,
        listener: &str,
    ) {
        if let super::decide::Action::Refuse(e) = &decision.action {
            self.count_forbidden(e, snapshot, listener);
        }
        let c = decision.counters();
        if c.rate_limited {
            self.stats.rate_limited.incr();
        }
        if c.fault_injected {
            self.stats.faults_injected.incr();
        }
        if c.overloaded {
            self.stats.overloaded.incr();
        }
    }

    /// Counts `e` if it is an authorization refusal: in total, per rule,
    /// per listener and per route.
    pub fn count_forbidden(&self, e: &super::ProxyError, snapshot: &Snapshot, listener: &str) {
        let super::ProxyError::Forbidden { rule, route, .. } = e else {
            return;
        };
        self.stats.forbidden.incr();
        let route = route.and_then(|i| {
            snapshot
                .listener(listener)
                .and_then(|l| l.routes.get(i))
                .map(|r| r.name.as_str())
        });
        self.named.borrow_mut().forbidden(listener, route, rule);
    }

    /// Whether the shard is draining: no new requests on kept connections.
    pub fn is_draining(&self) -> bool {
        self.draining.get()
    }

    /// Starts draining and wakes every connection waiting idle.
    pub(super) fn start_drain(&self) {
        self.draining.set(true);
        self.wake_idle(None);
    }

    /// Wakes the connections waiting idle between requests on `listener`
    /// (all of them for `None`) so they look at the shard again.
    pub(super) fn wake_idle(&self, listener: Option<&str>) {
        let wakers: Vec<Waker> = self
            .drain_waiters
            .borrow_mut()
            .iter_mut()
            .filter(|w| match (listener, w) {
                (None, _) => true,
                (Some(name), Some((l, _))) => &**l == name,
                (Some(_), None) => false,
            })
            .filter_map(|w| w.take().map(|(_, waker)| waker))
            .collect();
        for w in wakers {
            w.wake();
        }
    }

    /// Resolves once the shard starts draining or `listener` is no longer
    /// in the current snapshot: an idle connection on it should close.
    pub fn idle_wakeup(&self, listener: Rc<str>) -> IdleWakeup<'_> {
        IdleWakeup {
            ctx: self,
            listener,
            since: None,
            slot: None,
        }
    }

    /// Resolves once a snapshot other than generation `seen` is current (a
    /// long-lived connection then checks itself again) — not on a drain or
    /// a removed listener, which [`idle_wakeup`](Self::idle_wakeup) is for.
    pub fn config_change(&self, listener: Rc<str>, seen: u64) -> IdleWakeup<'_> {
        IdleWakeup {
            ctx: self,
            listener,
            since: Some(seen),
            slot: None,
        }
    }

    /// The generation of the current snapshot.
    pub fn generation(&self) -> u64 {
        self.with_current(|s| s.generation)
    }

    /// Wakes every connection waiting on the shard (after a new snapshot:
    /// those waiting for a configuration change look again).
    pub(super) fn wake_all(&self) {
        self.wake_idle(None);
    }

    /// Runs `f` on the current snapshot without cloning the `Arc` (no
    /// reference-count traffic shared with other shards).
    pub fn with_snapshot<R>(&self, f: impl FnOnce(&Snapshot) -> R) -> R {
        self.with_current(|s| f(s))
    }

    /// Replaces `snapshot` with the current one if a newer one was
    /// published. Costs one cached pointer check when nothing changed (no
    /// reference-count traffic shared with other shards).
    pub fn refresh(&self, snapshot: &mut Arc<Snapshot>) {
        self.with_current(|current| {
            if !Arc::ptr_eq(current, snapshot) {
                *snapshot = current.clone();
                self.stats.generation.set(snapshot.generation);
            }
        })
    }

    /// Publishes per-endpoint state and the outlier counters.
    pub(super) fn publish_endpoints(&self, snapshot: &Snapshot) {
        let traffic = self.traffic.borrow();
        self.stats.outlier_ejections.set(traffic.ejections);
        self.stats.outlier_returns.set(traffic.returns);
        let mut reports = Vec::new();
        for (state, c) in traffic.clusters.iter().zip(&snapshot.clusters) {
            for (i, addr) in c.endpoints.iter().enumerate() {
                let e = state.endpoint.get(i);
                let o = state.outlier.state(i);
                reports.push(crate::telemetry::EndpointReport {
                    cluster: c.name.clone(),
                    endpoint: *addr,
                    in_flight: e.map_or(0, |e| e.in_flight.get()),
                    requests: e.map_or(0, |e| e.requests),
                    failures: e.map_or(0, |e| e.failures),
                    ejected_until: o.ejected_until,
                    times_ejected: o.times_ejected,
                    latency: e
                        .filter(|e| !e.histogram.is_empty())
                        .map(|e| e.histogram.clone()),
                });
            }
        }
        self.stats.endpoints.publish(reports);
    }

    /// Drops idle upstream connections past their cluster's idle timeout.
    pub(super) fn prune_idle(&self, snapshot: &Snapshot) {
        let default = Duration::from_secs(30);
        self.upstreams.borrow_mut().prune(runtime::now(), |addr| {
            snapshot
                .clusters
                .iter()
                .find(|c| c.endpoints.contains(&addr))
                .map_or(default, |c| c.pool.idle_timeout)
        });
        self.h2_upstreams.borrow_mut().prune();
    }
}

/// Waits for a drain or the removal of a listener; its waker slot is freed
/// on drop.
pub struct IdleWakeup<'a> {
    ctx: &'a ShardContext,
    listener: Rc<str>,
    /// `Some`: resolve when the current generation is no longer this one
    /// (only); `None`: on a drain or the listener's removal.
    since: Option<u64>,
    slot: Option<usize>,
}

impl Future for IdleWakeup<'_> {
    type Output = ();
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let removed = || {
            self.ctx
                .with_snapshot(|s| s.listener(&self.listener).is_none())
        };
        let ready = match self.since {
            Some(seen) => self.ctx.generation() != seen,
            None => self.ctx.draining.get() || removed(),
        };
        if ready {
            return Poll::Ready(());
        }
        let entry = Some((self.listener.clone(), cx.waker().clone()));
        let mut waiters = self.ctx.drain_waiters.borrow_mut();
        match self.slot {
            Some(i) => waiters[i] = entry,
            None => {
                let i = match self.ctx.free_waiters.borrow_mut().pop() {
                    Some(i) => {
                        waiters[i] = entry;
                        i
                    }
                    None => {
                        waiters.push(entry);
                        waiters.len() - 1
                    }
                };
                drop(waiters);
                self.slot = Some(i);
            }
        }
        Poll::Pending
    }
}

impl Drop for IdleWakeup<'_> {
    fn drop(&mut self) {
        if let Some(i) = self.slot.take() {
            self.ctx.drain_waiters.borrow_mut()[i] = None;
            self.ctx.free_waiters.borrow_mut().push(i);
        }
    }
}
