//! The daemon: loads and compiles the configuration, binds every shard's
//! listening sockets, starts the pinned shards, then serves signals on the
//! control thread (SIGHUP reloads, SIGUSR1 reopens the access logs,
//! SIGINT/SIGTERM stop).
//!
//! Sockets are bound ([`crate::listeners`]) before any shard starts, so a
//! bad or busy address fails the start with a message naming the listener.
//!
//! Uses `config`, `listeners`, `running` (the gateway it builds), `commands`
//! and `socket` (the control socket it serves) and `health`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use dataplane::net::Stack;
use dataplane::proxy::{ShardInit, run_shard};
use dataplane::route::Snapshot;
use dataplane::runtime::shard::spawn_shards;
use dataplane::runtime::signals::{self, Signal};
use dataplane::runtime::{RuntimeConfig, privileges};
use dataplane::telemetry::ShardStats;

use crate::access_log::AccessLogWriter;
use crate::admin::AdminServer;
use crate::commands::Commands;
use crate::config::{Config, ConfigError};
use crate::error::DaemonError;
use crate::health::HealthChecker;
use crate::listeners::{BoundListener, bind_all};
use crate::running::{AdminChange, Gateway, unix_now, warn_soon_expiring};
use crate::socket::protocol::DEFAULT_MAX_REQUEST_BYTES;
use crate::socket::server::{ControlServer, resolve_group};
use crate::trace_export::SpanExporter;

/// Checks a configuration file the way `run` would load it (including
/// certificates), without binding anything.
pub fn check(path: &Path) -> Result<Config, DaemonError> {
    let config = Config::from_file(path)?;
    // Compiling loads the certificates.
    config.compile(1)?;
    Ok(config)
}

/// Runs the gateway with the configuration at `path` until SIGINT/SIGTERM.
/// `on_ready` is called once every listener is bound and the shards run,
/// with the listeners and the admin listener's address.
pub fn run(
    path: &Path,
    on_ready: impl FnOnce(&[BoundListener], Option<std::net::SocketAddr>),
) -> Result<(), DaemonError> {
    signals::block().map_err(DaemonError::Signals)?;
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let config = Config::from_file(path)?;
    let control = config.control.clone();
    let config_admin = config.admin.as_ref().map(|a| a.address);
    let user = config.dataplane.user.clone();
    let snapshot = config.compile(1)?;
    let shards = config.dataplane.shards.resolve();
    let access_log = Arc::new(AccessLogWriter::start().map_err(DaemonError::Spawn)?);
    access_log
        .prepare(&snapshot)
        .map_err(DaemonError::Rejected)?;
    let spans = Arc::new(SpanExporter::start().map_err(DaemonError::Spawn)?);
    spans.configure(config.export_settings());
    let (per_shard, bound) = bind_all(&snapshot, shards)?;
    for l in &bound {
        let scheme = if l.tls { "https" } else { "http" };
        log::info!(
            "listener {:?} listening on {} ({scheme}, {shards} shards)",
            l.name,
            l.address
        );
    }
    let snapshots = Arc::new(ArcSwap::from_pointee(snapshot));
    let stop = Arc::new(AtomicBool::new(false));
    let drain = Arc::new(AtomicBool::new(false));
    let shard_stats: Vec<Arc<ShardStats>> = (0..shards).map(|_| Arc::default()).collect();
    let canaries: Vec<Arc<ArcSwapOption<Snapshot>>> = (0..shards).map(|_| Arc::default()).collect();
    let (command_tx, command_rx): (Vec<_>, Vec<_>) =
        (0..shards).map(|_| crossbeam_channel::unbounded()).unzip();
    let mut command_rx = command_rx.into_iter();
    let inits: Vec<ShardInit> = per_shard
        .into_iter()
        .enumerate()
        .map(|(id, listeners)| ShardInit {
            id,
            shard_count: shards,
            snapshots: snapshots.clone(),
            canary: canaries[id].clone(),
            listeners: listeners
                .into_iter()
                .map(|(name, socket)| (name, socket.into()))
                .collect(),
            stack: Stack::Kernel,
            seed: shard_seed(config.dataplane.seed, id),
            stop: stop.clone(),
            drain: drain.clone(),
            stats: shard_stats[id].clone(),
            commands: command_rx.next().expect("one receiver per shard"),
            runtime: RuntimeConfig::default(),
            access_log: Some(access_log.queue()),
            // Trace ids are unique per process, whatever `[dataplane] seed`
            // says.
            spans: Some((spans.queue(), shard_seed(None, id))),
        })
        .collect();
    let threads = spawn_shards(inits, true, |id, init| {
        if let Err(e) = run_shard(init) {
            log::error!("shard {id}: {e}");
        }
    })
    .map_err(DaemonError::Spawn)?;
    log::info!(
        "meshgate {} running: {} shards, config {}",
        env!("CARGO_PKG_VERSION"),
        shards,
        path.display()
    );
    let gateway = Arc::new(
        Gateway::new(
            path.to_owned(),
            config,
            text,
            snapshots,
            shard_stats,
            canaries,
            command_tx,
            bound,
            stop.clone(),
            drain,
        )
        .with_access_log(access_log.clone())
        .with_spans(spans.clone()),
    );
    // The control socket is served by its own threads (never a shard).
    let control_server = match &control.socket {
        Some(socket) => {
            let handler = Arc::new(Commands::new(gateway.clone()));
            let group = control
                .socket_group
                .as_deref()
                .map(resolve_group)
                .transpose()
                .map_err(|e| std::io::Error::new(e.kind(), format!("control.socket_group: {e}")));
            let server = group
                .and_then(|group| {
                    ControlServer::start(
                        socket,
                        &control.allowed_uids,
                        group,
                        DEFAULT_MAX_REQUEST_BYTES,
                        handler,
                    )
                })
                .map_err(|source| DaemonError::ControlSocket {
                    path: socket.clone(),
                    source,
                });
            match server {
                Ok(s) => Some(s),
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    for t in threads {
                        let _ = t.handle.join();
                    }
                    return Err(e);
                }
            }
        }
        None => None,
    };
    let mut admin = match config_admin {
        Some(address) => {
            match AdminServer::start(address, gateway.clone(), Some(access_log.stats.clone())) {
                Ok(a) => {
                    log::info!("admin listening on http://{}", a.address());
                    Some(a)
                }
                Err(source) => {
                    stop.store(true, Ordering::Relaxed);
                    for t in threads {
                        let _ = t.handle.join();
                    }
                    if let Some(server) = control_server {
                        server.shutdown();
                    }
                    return Err(DaemonError::Admin { address, source });
                }
            }
        }
        None => None,
    };
    let health = match HealthChecker::start(gateway.clone()) {
        Ok(h) => Some(h),
        Err(e) => {
            log::error!("health checks could not start: {e}");
            None
        }
    };
    // Everything privileged is done: sockets bound, rings set up.
    if let Some(user) = &user {
        let dropped = privileges::lookup_user(user).and_then(|to| {
            if !privileges::is_root() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    "the daemon was not started as root",
                ));
            }
            privileges::drop_to(to).map(|()| to)
        });
        match dropped {
            Ok(to) => log::info!("running as user {user:?} (uid {}, gid {})", to.uid, to.gid),
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                for t in threads {
                    let _ = t.handle.join();
                }
                return Err(DaemonError::Privileges {
                    user: user.clone(),
                    source: e,
                });
            }
        }
    }
    on_ready(
        &gateway.listeners(),
        admin.as_ref().map(AdminServer::address),
    );
    // Expiring certificates are warned about at start, then hourly.
    warn_soon_expiring(&gateway.expiries(), unix_now());
    let mut expiry_checked = std::time::Instant::now();

    let result = loop {
        if let Some(deadline) = gateway.drain_deadline() {
            if threads.iter().all(|t| t.handle.is_finished()) {
                log::info!("drained; stopping");
                break Ok(());
            }
            if std::time::Instant::now() >= deadline {
                log::warn!("drain timed out; stopping with connections still open");
                break Ok(());
            }
        } else if let Some(dead) = threads.iter().find(|t| t.handle.is_finished()) {
            break Err(DaemonError::ShardDied(dead.id));
        }
        if let Some(change) = gateway.take_admin_change() {
            move_admin(&mut admin, change, &gateway, &access_log);
        }
        if expiry_checked.elapsed() >= Duration::from_secs(3600) {
            warn_soon_expiring(&gateway.expiries(), unix_now());
            expiry_checked = std::time::Instant::now();
        }
        match signals::wait(Duration::from_millis(100)) {
            Some(Signal::Interrupt) => {
                log::info!("stopping");
                break Ok(());
            }
            Some(Signal::Terminate) => {
                gateway.start_drain(None);
            }
            Some(Signal::User1) => access_log.reopen(),
            Some(Signal::Hangup) => match gateway.reload_file() {
                Ok(applied) => log::info!(
                    "configuration reloaded from {} (generation {})",
                    path.display(),
                    applied.generation
                ),
                Err(e) => log::error!("reload failed, keeping the running configuration: {e}"),
            },
            None => {}
        }
    };
    if let Some(server) = control_server {
        server.shutdown();
    }
    if let Some(health) = health {
        health.shutdown();
    }
    if let Some(admin) = admin {
        admin.shutdown();
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.handle.join();
    }
    access_log.shutdown();
    spans.shutdown();
    result
}

/// Carries out an apply's change of the `[admin]` listener: the old one
/// stops, the new one (bound by the apply) starts.
fn move_admin(
    admin: &mut Option<AdminServer>,
    change: AdminChange,
    gateway: &Arc<Gateway>,
    access_log: &Arc<AccessLogWriter>,
) {
    if let Some(old) = admin.take() {
        let address = old.address();
        old.shutdown();
        log::info!("admin listener on http://{address} stopped");
    }
    if let AdminChange::Start(listener) = change {
        match AdminServer::serve(listener, gateway.clone(), Some(access_log.stats.clone())) {
            Ok(a) => {
                log::info!("admin listening on http://{}", a.address());
                *admin = Some(a);
            }
            Err(e) => log::error!("admin listener cannot start: {e}"),
        }
    }
}

/// The seed of shard `id`'s random draws: from `[dataplane] seed` when set
/// (a replayable run), else fresh from the OS (std's hasher keys).
fn shard_seed(configured: Option<u64>, id: usize) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = match configured {
        Some(seed) => {
            let mut h = std::hash::DefaultHasher::new();
            h.write_u64(seed);
            h
        }
        None => std::collections::hash_map::RandomState::new().build_hasher(),
    };
    h.write_usize(id);
    h.finish()
}

/// Where `quickstart` writes its files by default.
pub fn default_quickstart_dir() -> PathBuf {
    PathBuf::from("meshgate-quickstart")
}
