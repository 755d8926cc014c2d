//! One shard: its context (snapshot cache, upstream pool, balancer state,
//! counters, request ids) and its main loop.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Poll, Waker};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption, Cache};

use super::listener;
use super::request_id::RequestIds;
use super::traffic::{GaugeGuard, Traffic};
use crate::route::Snapshot;
use crate::runtime::{self, BoundSocket, JoinHandle, RuntimeConfig, TcpListener, TcpStream};
use crate::telemetry::ShardStats;
use crate::upstream::UpstreamPool;

/// An idle upstream connection and its place in its cluster's
/// `connections` gauge.
pub type PooledConn = (TcpStream, GaugeGuard);

/// A connection waiting idle on a listener.
type IdleWaiter = (Rc<str>, Waker);

/// A shard's cached view of its canary slot.
type CanaryCache = Cache<Arc<ArcSwapOption<Snapshot>>, Option<Arc<Snapshot>>>;

/// Everything a shard thread needs to start (sent from the control thread).
#[derive(Debug)]
pub struct ShardInit {
    pub id: usize,
    /// How many shards the gateway runs (each enforces its share of
    /// gateway-wide limits).
    pub shard_count: usize,
    /// The published snapshot; the shard reads it through a cache.
    pub snapshots: Arc<ArcSwap<Snapshot>>,
    /// This shard's canary slot (see [`ShardContext::snapshot`]).
    pub canary: Arc<ArcSwapOption<Snapshot>>,
    /// This shard's listening sockets, by listener name.
    pub listeners: Vec<(String, BoundSocket)>,
    /// Set by the control thread to stop the shard at once.
    pub stop: Arc<AtomicBool>,
    /// Set by the control thread to drain: stop accepting, finish in-flight
    /// requests, close idle connections, then stop.
    pub drain: Arc<AtomicBool>,
    /// This shard's counters (written by the shard, read by the control thread).
    pub stats: Arc<ShardStats>,
    /// Listener changes from the control thread.
    pub commands: crossbeam_channel::Receiver<ShardCommand>,
    pub runtime: RuntimeConfig,
}

/// A shard's shared-nothing state, shared by its tasks (single thread).
pub struct ShardContext {
    pub id: usize,
    snapshots: RefCell<Cache<Arc<ArcSwap<Snapshot>>, Arc<Snapshot>>>,
    /// A snapshot published to this shard only (canary apply); wins over
    /// `snapshots` while set.
    canary: RefCell<CanaryCache>,
    pub upstreams: RefCell<UpstreamPool<PooledConn>>,
    /// Balancers, outlier ejection, circuit breakers, rate limits.
    pub traffic: RefCell<Traffic>,
    pub stats: Arc<ShardStats>,
    pub request_ids: RequestIds,
    /// Request latencies recorded by this shard (published by the loop).
    pub latency: RefCell<hdrhistogram::Histogram<u64>>,
    /// Counters by name (published by the loop).
    pub named: RefCell<crate::telemetry::NamedCounts>,
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

impl ShardContext {
    /// A context reading `snapshots`.
    pub fn new(
        id: usize,
        shard_count: usize,
        snapshots: Arc<ArcSwap<Snapshot>>,
        canary: Arc<ArcSwapOption<Snapshot>>,
        stats: Arc<ShardStats>,
    ) -> ShardContext {
        // A per-process random prefix for request ids (std's hasher keys
        // are seeded from the OS), mixed with the shard id.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(id);
        let seed = h.finish();
        ShardContext {
            id,
            snapshots: RefCell::new(Cache::new(snapshots)),
            canary: RefCell::new(Cache::new(canary)),
            upstreams: RefCell::new(UpstreamPool::default()),
            traffic: RefCell::new(Traffic::new(shard_count, seed ^ 0x5DEE_CE66_D1CE_4E5B)),
            stats,
            request_ids: RequestIds::new(seed),
            latency: RefCell::new(crate::telemetry::new_latency_histogram()),
            named: RefCell::new(crate::telemetry::NamedCounts::default()),
            draining: Cell::new(false),
            drain_waiters: RefCell::new(Vec::new()),
            free_waiters: RefCell::new(Vec::new()),
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

    /// Whether the shard is draining: no new requests on kept connections.
    pub fn is_draining(&self) -> bool {
        self.draining.get()
    }

    /// Starts draining and wakes every connection waiting idle.
    fn start_drain(&self) {
        self.draining.set(true);
        self.wake_idle(None);
    }

    /// Wakes the connections waiting idle between requests on `listener`
    /// (all of them for `None`) so they look at the shard again.
    fn wake_idle(&self, listener: Option<&str>) {
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
            slot: None,
        }
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
    fn publish_endpoints(&self, snapshot: &Snapshot) {
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
    fn prune_idle(&self, snapshot: &Snapshot) {
        let default = Duration::from_secs(30);
        self.upstreams.borrow_mut().prune(runtime::now(), |addr| {
            snapshot
                .clusters
                .iter()
                .find(|c| c.endpoints.contains(&addr))
                .map_or(default, |c| c.pool.idle_timeout)
        });
    }
}

/// Waits for a drain or the removal of a listener; its waker slot is freed
/// on drop.
pub struct IdleWakeup<'a> {
    ctx: &'a ShardContext,
    listener: Rc<str>,
    slot: Option<usize>,
}

impl Future for IdleWakeup<'_> {
    type Output = ();
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let removed = || {
            self.ctx
                .with_snapshot(|s| s.listener(&self.listener).is_none())
        };
        if self.ctx.draining.get() || removed() {
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

/// Starts accepting on `socket` as listener `name`, replacing (after the
/// new socket is live) any accept task of the same name.
fn listen(
    ctx: &Rc<ShardContext>,
    accepting: &mut HashMap<String, JoinHandle<()>>,
    name: String,
    socket: BoundSocket,
) {
    let listener = TcpListener::from_bound(socket);
    log::info!(
        "shard {}: listener {name:?} accepting on {}",
        ctx.id,
        listener.local_addr()
    );
    let task = runtime::spawn(listener::accept_loop(
        ctx.clone(),
        Rc::from(name.as_str()),
        listener,
    ));
    if let Some(old) = accepting.insert(name, task) {
        old.abort();
    }
}

/// Orders from the control thread to one shard, carried out on the shard's
/// housekeeping tick (every 100 ms).
#[derive(Debug)]
pub enum ShardCommand {
    /// Accept on this (already bound) socket as listener `name`.
    Listen { name: String, socket: BoundSocket },
    /// Stop accepting for listener `name`.
    Unlisten { name: String },
}

/// Runs a shard on the calling thread until `init.stop` is set.
pub fn run_shard(init: ShardInit) -> io::Result<()> {
    let ShardInit {
        id,
        shard_count,
        snapshots,
        canary,
        listeners,
        stop,
        drain,
        stats,
        commands,
        runtime: config,
    } = init;
    runtime::block_on(&config, async move {
        let features = runtime::features();
        if features.multishot_recv {
            log::info!(
                "shard {id}: io_uring ready (defer_taskrun={}, multishot recv with provided buffers)",
                features.defer_taskrun
            );
        } else {
            log::warn!(
                "shard {id}: kernel lacks provided buffer rings; using single-shot recv into pooled buffers"
            );
        }
        let ctx = Rc::new(ShardContext::new(id, shard_count, snapshots, canary, stats));
        let mut accepting: HashMap<String, JoinHandle<()>> = HashMap::new();
        for (name, socket) in listeners {
            listen(&ctx, &mut accepting, name, socket);
        }
        let mut snapshot = ctx.snapshot();
        ctx.stats.generation.set(snapshot.generation);
        let mut last_prune = runtime::now();
        while !stop.load(Ordering::Relaxed) {
            runtime::sleep(Duration::from_millis(100)).await;
            if drain.load(Ordering::Relaxed) {
                if !ctx.is_draining() {
                    log::info!("shard {id}: draining: stopped accepting");
                    // Dropping the accept tasks cancels their multishot
                    // accepts and closes this shard's listening sockets.
                    for (_, task) in accepting.drain() {
                        task.abort();
                    }
                    ctx.start_drain();
                }
                if ctx.stats.connections_active.get() == 0 {
                    log::info!("shard {id}: drained");
                    break;
                }
            }
            // Listener changes from the control thread (not while draining).
            while let Ok(command) = commands.try_recv() {
                match command {
                    ShardCommand::Listen { name, socket } if !ctx.is_draining() => {
                        listen(&ctx, &mut accepting, name, socket);
                    }
                    ShardCommand::Listen { .. } => {}
                    ShardCommand::Unlisten { name } => {
                        if let Some(task) = accepting.remove(&name) {
                            // Closes this shard's socket; open connections
                            // finish their request (the snapshot no longer
                            // has the listener) and close; idle ones close
                            // now.
                            task.abort();
                            ctx.wake_idle(Some(&name));
                            log::info!("shard {id}: listener {name:?} stopped accepting");
                        }
                    }
                }
            }
            // Notice new snapshots even when idle (`status` shows each
            // shard's generation).
            ctx.refresh(&mut snapshot);
            {
                let mut traffic = ctx.traffic.borrow_mut();
                traffic.sync(&snapshot, runtime::now());
                traffic.tick(&snapshot, runtime::now());
            }
            if runtime::now().duration_since(last_prune) >= Duration::from_secs(1) {
                ctx.stats.latency.publish(&ctx.latency.borrow());
                ctx.stats.named.publish(&ctx.named.borrow());
                ctx.publish_endpoints(&snapshot);
                ctx.prune_idle(&snapshot);
                last_prune = runtime::now();
            }
        }
        log::info!("shard {id}: stopping");
    })
}
