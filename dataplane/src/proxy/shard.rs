//! One shard's main loop: start its listeners, then every 100 ms carry out
//! the control thread's orders (listen, unlisten, drain, stop), notice new
//! snapshots, tick the traffic state, and once a second publish counters
//! and prune idle upstream connections.
//!
//! Uses [`super::context`] (the shard's state) and [`super::accept`] (one
//! accept loop per listener); `net` for the listening sockets.

use std::collections::HashMap;
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};

use super::accept;
use super::context::{AccessLogQueue, ShardContext, SpanQueue};
use crate::net::{ListenSocket, Listener, Stack};
use crate::route::Snapshot;
use crate::runtime::{self, JoinHandle, RuntimeConfig};
use crate::telemetry::ShardStats;

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
    pub listeners: Vec<(String, ListenSocket)>,
    /// The TCP/IP stack the shard's upstream connections use.
    pub stack: Stack,
    /// Seeds every random draw of the shard (a test or `[dataplane] seed`
    /// makes a run replayable).
    pub seed: u64,
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
    /// The access-log writer's queue, shared by all shards.
    pub access_log: Option<AccessLogQueue>,
    /// The span exporter's queue, shared by all shards, and the seed of
    /// this shard's trace ids (fresh per process, whatever `seed` is).
    pub spans: Option<(SpanQueue, u64)>,
}

/// Orders from the control thread to one shard, carried out on the shard's
/// housekeeping tick (every 100 ms).
#[derive(Debug)]
pub enum ShardCommand {
    /// Accept on this (already bound) socket as listener `name`.
    Listen { name: String, socket: ListenSocket },
    /// Stop accepting for listener `name`.
    Unlisten { name: String },
}

/// Runs a shard on the calling thread, with a runtime of its own, until
/// `init.stop` is set (or a drain finishes).
pub fn run_shard(init: ShardInit) -> io::Result<()> {
    let config = init.runtime;
    runtime::block_on(&config, shard_loop(init))
}

/// The shard's main loop, on an already running runtime (the in-process
/// test harness runs it on virtual time).
pub async fn shard_loop(init: ShardInit) {
    let ShardInit {
        id,
        shard_count,
        snapshots,
        canary,
        listeners,
        stack,
        seed,
        stop,
        drain,
        stats,
        commands,
        runtime: _,
        access_log,
        spans,
    } = init;
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
    let ctx = Rc::new(
        ShardContext::new(id, shard_count, snapshots, canary, stats, stack, seed)
            .with_access_log(access_log)
            .with_spans(
                spans.as_ref().map(|(q, _)| q.clone()),
                spans.map_or(seed, |(_, s)| s),
            ),
    );
    let mut accepting: HashMap<String, JoinHandle<()>> = HashMap::new();
    for (name, socket) in listeners {
        listen(&ctx, &mut accepting, name, socket);
    }
    let mut snapshot = ctx.snapshot();
    ctx.stats.generation.set(snapshot.generation);
    let mut last_publish = runtime::now();
    while !stop.load(Ordering::Relaxed) {
        runtime::sleep(Duration::from_millis(100)).await;
        if drain.load(Ordering::Relaxed) {
            if !ctx.is_draining() {
                log::info!("shard {id}: draining: stopped accepting");
                // Dropping the accept tasks cancels their accepts and closes
                // this shard's listening sockets.
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
                        // Closes this shard's socket; open connections finish
                        // their request (the snapshot no longer has the
                        // listener) and close; idle ones close now.
                        task.abort();
                        ctx.wake_idle(Some(&name));
                        log::info!("shard {id}: listener {name:?} stopped accepting");
                    }
                }
            }
        }
        // Notice new snapshots even when idle (`status` shows each shard's
        // generation); long-lived connections waiting for a change look
        // again (a TCP session checks its caller against the new rules).
        let before = snapshot.generation;
        ctx.refresh(&mut snapshot);
        if snapshot.generation != before {
            ctx.wake_all();
        }
        ctx.read_wall_clock();
        ctx.flush_access_log();
        let figures = runtime::loop_figures();
        ctx.stats.loop_turns.set(figures.turns);
        ctx.stats.loop_polls.set(figures.polls);
        ctx.stats.loop_completions.set(figures.completions);
        ctx.stats.tasks.set(runtime::live_tasks() as u64);
        {
            let mut traffic = ctx.traffic.borrow_mut();
            traffic.sync(&snapshot, runtime::now());
            traffic.tick(&snapshot, runtime::now());
        }
        if runtime::now().duration_since(last_publish) >= Duration::from_secs(1) {
            ctx.stats.latency.publish(&ctx.latency.borrow());
            ctx.stats.named.publish(&ctx.named.borrow());
            ctx.publish_endpoints(&snapshot);
            ctx.prune_idle(&snapshot);
            last_publish = runtime::now();
        }
    }
    ctx.flush_access_log();
    log::info!("shard {id}: stopping");
}

/// Starts accepting on `socket` as listener `name`, replacing (after the
/// new socket is live) any accept task of the same name.
fn listen(
    ctx: &Rc<ShardContext>,
    accepting: &mut HashMap<String, JoinHandle<()>>,
    name: String,
    socket: ListenSocket,
) {
    let listener = match Listener::open(socket) {
        Ok(l) => l,
        Err(e) => {
            log::error!("shard {}: listener {name:?} cannot listen: {e}", ctx.id);
            return;
        }
    };
    log::info!(
        "shard {}: listener {name:?} accepting on {}",
        ctx.id,
        listener.local_addr()
    );
    let task = runtime::spawn(accept::accept_loop(
        ctx.clone(),
        Rc::from(name.as_str()),
        listener,
    ));
    if let Some(old) = accepting.insert(name, task) {
        old.abort();
    }
}
