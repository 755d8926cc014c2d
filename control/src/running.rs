//! The running gateway as the control thread sees it: the published
//! snapshot, the configuration it came from, the shards' counters, and the
//! one way to change it ([`Gateway::apply`]), shared by SIGHUP, `config
//! apply` and `certs reload` on the control socket.
//!
//! Changes are serialised by a mutex on the control side only; shards never
//! touch it. A change is compiled completely (certificates loaded) before
//! one atomic swap publishes it; on any error nothing changes.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::{ArcSwap, ArcSwapOption};
use dataplane::proxy::ShardCommand;
use dataplane::route::Snapshot;
use dataplane::telemetry::ShardStats;
use serde_json::{Value, json};

use crate::config::{Config, ConfigError, Issue};
use crate::error::DaemonError;
use crate::listeners::BoundListener;

mod expiry;
mod explain;
#[cfg(test)]
mod tests;
mod views;

pub use expiry::{Expiry, WARN_DAYS, unix_now, warn_soon_expiring};
pub use explain::ExplainQuery;
pub use views::{EndpointRow, Latency};

use views::target_text;

/// What `apply` changed, by name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Diff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

impl Diff {
    fn between<'a, T: PartialEq + 'a>(
        old: impl Iterator<Item = (&'a str, T)>,
        new: impl Iterator<Item = (&'a str, T)>,
    ) -> Diff {
        let old: Vec<(&str, T)> = old.collect();
        let new: Vec<(&str, T)> = new.collect();
        let mut d = Diff::default();
        for (name, value) in &new {
            match old.iter().find(|(n, _)| n == name) {
                None => d.added.push((*name).to_owned()),
                Some((_, v)) if v != value => d.changed.push((*name).to_owned()),
                Some(_) => {}
            }
        }
        for (name, _) in &old {
            if !new.iter().any(|(n, _)| n == name) {
                d.removed.push((*name).to_owned());
            }
        }
        d
    }

    fn to_json(&self) -> Value {
        json!({ "added": self.added, "removed": self.removed, "changed": self.changed })
    }
}

/// The outcome of a successful apply.
#[derive(Debug, Clone)]
pub struct Applied {
    pub generation: u64,
    pub listeners: Diff,
    /// Every listener and the address it listens on after the apply.
    pub bound: Vec<BoundListener>,
    pub routes: Diff,
    pub clusters: Diff,
}

impl Applied {
    /// The reply of `config apply` / `certs reload`.
    pub fn to_json(&self) -> Value {
        json!({
            "generation": self.generation,
            "listeners": self.listeners.to_json(),
            "bound": self.bound.iter().map(|l| json!({ "name": l.name, "address": l.address.to_string() })).collect::<Vec<_>>(),
            "routes": self.routes.to_json(),
            "clusters": self.clusters.to_json(),
        })
    }
}

/// One endpoint the health checker probes.
#[derive(Debug, Clone)]
pub struct HealthTarget {
    pub cluster: String,
    pub addr: SocketAddr,
    pub settings: crate::config::HealthConfig,
    /// The cluster's `[clusters.tls]` as compiled: HTTP checks go over TLS
    /// with the same verification and identity as requests.
    pub tls: Option<dataplane::tls::ClientTls>,
    /// The cluster speaks HTTP/2 (`h2`, `h2c`): HTTP checks do too.
    pub http2: bool,
    /// Marked unhealthy now (a restarted checker starts from this).
    pub unhealthy: bool,
}

struct Current {
    generation: u64,
    config: Config,
    /// The TOML text the current configuration was read from.
    text: String,
    /// Endpoints an operator took out of rotation, by (cluster, address);
    /// cleared by the next apply.
    drained: BTreeSet<(String, SocketAddr)>,
    /// Endpoints the active health checks found unhealthy, by (cluster,
    /// address); kept across applies while the cluster keeps its checks.
    unhealthy: BTreeSet<(String, SocketAddr)>,
}

impl Current {
    /// Marks the endpoints health checks found down in a freshly compiled
    /// snapshot, forgetting clusters that no longer have checks.
    fn overlay_health(&mut self, config: &Config, snapshot: &mut Snapshot) {
        self.unhealthy.retain(|(cluster, addr)| {
            config
                .clusters
                .iter()
                .any(|c| &c.name == cluster && c.health.is_some() && c.endpoints.contains(addr))
        });
        for c in &mut snapshot.clusters {
            for (i, a) in c.endpoints.iter().enumerate() {
                c.healthy[i] = !self.unhealthy.contains(&(c.name.clone(), *a));
            }
            c.update_rotation();
        }
    }
}

/// The running gateway, shared by the signal loop and the control socket.
pub struct Gateway {
    pub config_path: PathBuf,
    pub started: Instant,
    pub snapshots: Arc<ArcSwap<Snapshot>>,
    pub shard_stats: Vec<Arc<ShardStats>>,
    /// Each shard's canary slot: a snapshot only that shard uses while set.
    pub canaries: Vec<Arc<ArcSwapOption<Snapshot>>>,
    /// Each shard's command channel (listener changes).
    shard_commands: Vec<crossbeam_channel::Sender<ShardCommand>>,
    /// A canary apply is watching; other applies wait their turn.
    canary_busy: AtomicBool,
    listeners: Mutex<Vec<BoundListener>>,
    pub stop: Arc<AtomicBool>,
    /// Set once a drain starts (shards stop accepting and finish).
    pub drain: Arc<AtomicBool>,
    drain_deadline: Mutex<Option<Instant>>,
    current: Mutex<Current>,
    /// Opens the access-log files a configuration names before it goes
    /// live, reopens them on request.
    pub access_log: Option<Arc<crate::access_log::AccessLogWriter>>,
    /// Sends sampled requests' spans where `[tracing]` says.
    pub spans: Option<Arc<crate::trace_export::SpanExporter>>,
    /// A change of the admin listener an apply made, for the daemon's
    /// loop to carry out.
    admin_change: Mutex<Option<AdminChange>>,
}

/// A change of the `[admin]` listener.
#[derive(Debug)]
pub enum AdminChange {
    /// Serve this socket, already bound to the new `admin.address`.
    Start(std::net::TcpListener),
    /// The new configuration has no `[admin]`.
    Stop,
}

/// What moving from `old`'s admin listener to `new`'s takes: the new
/// address is bound now, so a busy one refuses the apply (naming
/// `admin.address`) and nothing changes.
fn admin_change(old: &Config, new: &Config) -> Result<Option<AdminChange>, DaemonError> {
    let address = |c: &Config| c.admin.as_ref().map(|a| a.address);
    match (address(old), address(new)) {
        (old, new) if old == new => Ok(None),
        (_, None) => Ok(Some(AdminChange::Stop)),
        (_, Some(address)) => std::net::TcpListener::bind(address)
            .map(|l| Some(AdminChange::Start(l)))
            .map_err(|source| DaemonError::Admin { address, source }),
    }
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("config_path", &self.config_path)
            .finish_non_exhaustive()
    }
}

fn listeners_changed(origin: &str) -> DaemonError {
    DaemonError::Config(ConfigError::Invalid(vec![Issue {
        origin: origin.to_owned(),
        location: None,
        path: "listeners".into(),
        message: "adding, removing or moving listeners needs a restart for now; \
                  routes, clusters and TLS settings apply live"
            .into(),
    }]))
}

impl Gateway {
    /// The state right after start: generation 1 is published.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config_path: PathBuf,
        config: Config,
        text: String,
        snapshots: Arc<ArcSwap<Snapshot>>,
        shard_stats: Vec<Arc<ShardStats>>,
        canaries: Vec<Arc<ArcSwapOption<Snapshot>>>,
        shard_commands: Vec<crossbeam_channel::Sender<ShardCommand>>,
        listeners: Vec<BoundListener>,
        stop: Arc<AtomicBool>,
        drain: Arc<AtomicBool>,
    ) -> Gateway {
        Gateway {
            config_path,
            started: Instant::now(),
            snapshots,
            shard_stats,
            canaries,
            shard_commands,
            canary_busy: AtomicBool::new(false),
            listeners: Mutex::new(listeners),
            stop,
            drain,
            drain_deadline: Mutex::new(None),
            current: Mutex::new(Current {
                generation: 1,
                config,
                text,
                drained: BTreeSet::new(),
                unhealthy: BTreeSet::new(),
            }),
            access_log: None,
            spans: None,
            admin_change: Mutex::new(None),
        }
    }

    /// The admin listener change the last applies asked for, if any (the
    /// daemon's loop takes it).
    pub fn take_admin_change(&self) -> Option<AdminChange> {
        self.admin_change
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    fn ask_admin_change(&self, change: Option<AdminChange>) {
        if let Some(change) = change {
            *self.admin_change.lock().unwrap_or_else(|e| e.into_inner()) = Some(change);
        }
    }

    /// Hands the access-log writer to the gateway (files of applied
    /// configurations are opened through it).
    pub fn with_access_log(mut self, writer: Arc<crate::access_log::AccessLogWriter>) -> Gateway {
        self.access_log = Some(writer);
        self
    }

    /// Hands the span exporter to the gateway (each applied configuration
    /// points it at its collectors).
    pub fn with_spans(mut self, exporter: Arc<crate::trace_export::SpanExporter>) -> Gateway {
        self.spans = Some(exporter);
        self
    }

    /// Points the span exporter at `config`'s collectors.
    fn configure_spans(&self, config: &Config) {
        if let Some(exporter) = &self.spans {
            exporter.configure(config.export_settings());
        }
    }

    /// Opens the access-log files `snapshot` names; `Err` (naming the
    /// listener and the file) refuses the change.
    fn open_access_logs(&self, snapshot: &Snapshot) -> Result<(), DaemonError> {
        match &self.access_log {
            Some(writer) => writer.prepare(snapshot).map_err(DaemonError::Rejected),
            None => Ok(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Current> {
        // A panic while holding the lock leaves consistent data (every
        // update is one assignment): keep going.
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts draining (once): shards stop accepting, finish in-flight
    /// requests and close idle connections; after `timeout` (default: the
    /// configured `control.drain_timeout_ms`) the gateway stops anyway.
    pub fn start_drain(&self, timeout: Option<std::time::Duration>) -> Value {
        let timeout = timeout.unwrap_or_else(|| {
            std::time::Duration::from_millis(self.lock().config.control.drain_timeout_ms)
        });
        let mut deadline = self
            .drain_deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if deadline.is_none() {
            *deadline = Some(Instant::now() + timeout);
            self.drain.store(true, Ordering::Relaxed);
            log::info!(
                "draining: up to {} ms for in-flight requests",
                timeout.as_millis()
            );
        }
        let active: u64 = self
            .shard_stats
            .iter()
            .map(|s| s.connections_active.get())
            .sum();
        json!({ "draining": true, "timeout_ms": timeout.as_millis() as u64, "active_connections": active })
    }

    /// When a started drain gives up waiting.
    pub fn drain_deadline(&self) -> Option<Instant> {
        *self
            .drain_deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Every listener and the address it listens on.
    pub fn listeners(&self) -> Vec<BoundListener> {
        self.listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The generation currently published.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// The configuration text currently applied.
    pub fn config_text(&self) -> String {
        self.lock().text.clone()
    }

    /// Validates and compiles `text` (read from `path`, whose folder anchors
    /// relative paths) without changing anything.
    pub fn check(&self, text: &str, path: &Path) -> Result<Snapshot, DaemonError> {
        let config = parse(text, path)?;
        let snapshot = config.compile(0)?;
        Ok(snapshot)
    }

    /// Validates, compiles and publishes `text` with one atomic swap. On any
    /// error nothing changes.
    pub fn apply(&self, text: &str, path: &Path) -> Result<Applied, DaemonError> {
        if self.canary_busy.load(Ordering::Acquire) {
            return Err(DaemonError::Rejected(
                "a canary apply is being watched; try again after it".into(),
            ));
        }
        let config = parse(text, path)?;
        let mut current = self.lock();
        let generation = current.generation + 1;
        let mut snapshot = config.compile(generation)?;
        current.overlay_health(&config, &mut snapshot);
        self.open_access_logs(&snapshot)?;
        let old = self.snapshots.load_full();
        // New sockets are bound before anything is published: a bad or busy
        // address refuses the whole apply and nothing changes.
        let admin = admin_change(&current.config, &config)?;
        let (bind, unlisten) = listener_changes(&old, &snapshot);
        let mut fresh = Vec::new();
        for l in &bind {
            fresh.push(crate::listeners::bind_listener(
                &l.name,
                l.address,
                l.tls.is_some(),
                self.shard_commands.len(),
            )?);
        }
        let listeners = Diff::between(
            old.listeners
                .iter()
                .map(|l| (l.name.as_str(), (l.address, l.tls.is_some()))),
            snapshot
                .listeners
                .iter()
                .map(|l| (l.name.as_str(), (l.address, l.tls.is_some()))),
        );
        let routes = Diff::between(
            route_keys(&old).into_iter(),
            route_keys(&snapshot).into_iter(),
        );
        let clusters = Diff::between(
            old.clusters
                .iter()
                .map(|c| (c.name.as_str(), format!("{:?}", c))),
            snapshot
                .clusters
                .iter()
                .map(|c| (c.name.as_str(), format!("{:?}", c))),
        );
        self.snapshots.store(Arc::new(snapshot));
        // Then the shards switch sockets on their next tick: the new ones
        // start accepting (replacing a moved listener's old socket), removed
        // ones stop; connections on a removed listener finish their request.
        let mut bound_now = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        for name in &unlisten {
            for tx in &self.shard_commands {
                let _ = tx.send(ShardCommand::Unlisten { name: name.clone() });
            }
            bound_now.retain(|l| &l.name != name);
        }
        for (sockets, listener) in fresh {
            for (tx, socket) in self.shard_commands.iter().zip(sockets) {
                let _ = tx.send(ShardCommand::Listen {
                    name: listener.name.clone(),
                    socket: socket.into(),
                });
            }
            log::info!(
                "listener {:?} listening on {}",
                listener.name,
                listener.address
            );
            bound_now.retain(|l| l.name != listener.name);
            bound_now.push(listener);
        }
        let bound = bound_now.clone();
        drop(bound_now);
        self.configure_spans(&config);
        self.ask_admin_change(admin);
        let unhealthy = std::mem::take(&mut current.unhealthy);
        *current = Current {
            generation,
            config,
            text: text.to_owned(),
            drained: BTreeSet::new(),
            unhealthy,
        };
        Ok(Applied {
            generation,
            listeners,
            bound,
            routes,
            clusters,
        })
    }

    /// Canary apply: validates and compiles `text`, publishes it to shard
    /// `shard` only, watches that shard against the others for `watch`,
    /// then promotes it to every shard (one atomic swap) or rolls it back.
    /// Blocks the caller (a control connection) for the watch window.
    pub fn apply_canary(
        &self,
        text: &str,
        path: &Path,
        shard: usize,
        watch: std::time::Duration,
    ) -> Result<Value, DaemonError> {
        if shard >= self.canaries.len() {
            return Err(DaemonError::Rejected(format!(
                "canary: no shard {shard} (shards 0..{})",
                self.canaries.len().saturating_sub(1)
            )));
        }
        if self.shard_stats.len() < 2 {
            return Err(DaemonError::Rejected(
                "canary: needs at least 2 shards to compare".into(),
            ));
        }
        if self.canary_busy.swap(true, Ordering::AcqRel) {
            return Err(DaemonError::Rejected(
                "canary: another canary apply is being watched".into(),
            ));
        }
        let result = self.run_canary(text, path, shard, watch);
        self.canaries[shard].store(None);
        self.canary_busy.store(false, Ordering::Release);
        result
    }

    fn run_canary(
        &self,
        text: &str,
        path: &Path,
        shard: usize,
        watch: std::time::Duration,
    ) -> Result<Value, DaemonError> {
        let config = parse(text, path)?;
        let mut snapshot = config.compile(0)?;
        let (generation, limits, admin) = {
            let mut current = self.lock();
            current.overlay_health(&config, &mut snapshot);
            let admin = admin_change(&current.config, &config)?;
            (
                current.generation + 1,
                current.config.control.clone(),
                admin,
            )
        };
        snapshot.generation = generation;
        let snapshot = Arc::new(snapshot);
        self.same_listeners(&snapshot, path)?;
        self.open_access_logs(&snapshot)?;
        let before: Vec<Window> = self.shard_stats.iter().map(|s| Window::read(s)).collect();
        self.canaries[shard].store(Some(snapshot.clone()));
        log::info!(
            "canary: generation {generation} on shard {shard}, watching {} s",
            watch.as_secs()
        );
        std::thread::sleep(watch);
        // Let the shards publish their latest latency histograms.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let after: Vec<Window> = self.shard_stats.iter().map(|s| Window::read(s)).collect();
        let mut canary = Window::empty();
        let mut others = Window::empty();
        for (i, (a, b)) in after.iter().zip(&before).enumerate() {
            let delta = a.minus(b);
            if i == shard {
                canary.add(&delta)
            } else {
                others.add(&delta)
            }
        }
        let verdict = judge(&canary, &others, &limits);
        let promoted = verdict.is_ok();
        if promoted {
            let mut current = self.lock();
            if current.generation + 1 != generation {
                return Err(DaemonError::Rejected(
                    "canary: the configuration changed during the watch".into(),
                ));
            }
            self.snapshots.store(snapshot);
            self.configure_spans(&config);
            self.ask_admin_change(admin);
            let unhealthy = std::mem::take(&mut current.unhealthy);
            *current = Current {
                generation,
                config,
                text: text.to_owned(),
                drained: BTreeSet::new(),
                unhealthy,
            };
        }
        let reason = match &verdict {
            Ok(()) => "within thresholds".to_owned(),
            Err(why) => why.clone(),
        };
        log::info!(
            "canary: generation {generation} {} ({reason})",
            if promoted {
                "promoted to all shards"
            } else {
                "rolled back"
            }
        );
        Ok(json!({
            "outcome": if promoted { "promoted" } else { "rolled_back" },
            "generation": if promoted { generation } else { self.snapshots.load().generation },
            "canary_shard": shard,
            "watch_s": watch.as_secs(),
            "reason": reason,
            "canary": canary.to_json(),
            "others": others.to_json(),
        }))
    }

    /// Takes an endpoint out of rotation (or puts it back) by publishing a
    /// copy of the current snapshot with that cluster's rotation changed.
    /// Lasts until the next apply.
    pub fn set_endpoint_drained(
        &self,
        cluster: &str,
        address: &str,
        drained: bool,
    ) -> Result<Value, DaemonError> {
        let addr: SocketAddr = address.parse().map_err(|_| {
            DaemonError::Rejected(format!("address: {address:?} is not an IP:port"))
        })?;
        let mut current = self.lock();
        let old = self.snapshots.load_full();
        let Some(c) = old.clusters.iter().find(|c| c.name == cluster) else {
            let known: Vec<&str> = old.clusters.iter().map(|c| c.name.as_str()).collect();
            return Err(DaemonError::Rejected(format!(
                "cluster: no cluster {cluster:?} (known: {})",
                known.join(", ")
            )));
        };
        if !c.endpoints.contains(&addr) {
            return Err(DaemonError::Rejected(format!(
                "address: {addr} is not an endpoint of cluster {cluster:?}"
            )));
        }
        let key = (cluster.to_owned(), addr);
        if drained {
            current.drained.insert(key);
        } else {
            current.drained.remove(&key);
        }
        let generation = current.generation + 1;
        let mut snapshot = (*old).clone();
        snapshot.generation = generation;
        for c in &mut snapshot.clusters {
            for (i, a) in c.endpoints.iter().enumerate() {
                c.drained[i] = current.drained.contains(&(c.name.clone(), *a));
            }
            c.update_rotation();
        }
        let in_rotation = snapshot
            .clusters
            .iter()
            .find(|c| c.name == cluster)
            .map_or(0, |c| c.rotation.len());
        self.snapshots.store(Arc::new(snapshot));
        current.generation = generation;
        log::info!(
            "endpoint {addr} of cluster {cluster:?} {} (generation {generation})",
            if drained {
                "drained"
            } else {
                "back in rotation"
            }
        );
        Ok(json!({
            "generation": generation,
            "cluster": cluster,
            "endpoint": addr.to_string(),
            "state": if drained { "drained" } else { "active" },
            "in_rotation": in_rotation,
        }))
    }

    /// Publishes an active health-check verdict: a copy of the current
    /// snapshot with the endpoint's health (and so the rotation) changed.
    /// Ignored when the endpoint is no longer checked.
    pub fn set_endpoint_health(&self, cluster: &str, addr: SocketAddr, healthy: bool, why: &str) {
        let mut current = self.lock();
        let checked = current
            .config
            .clusters
            .iter()
            .any(|c| c.name == cluster && c.health.is_some() && c.endpoints.contains(&addr));
        if !checked {
            return;
        }
        let key = (cluster.to_owned(), addr);
        let changed = if healthy {
            current.unhealthy.remove(&key)
        } else {
            current.unhealthy.insert(key)
        };
        if !changed {
            return;
        }
        let generation = current.generation + 1;
        let mut snapshot = (*self.snapshots.load_full()).clone();
        snapshot.generation = generation;
        for c in snapshot.clusters.iter_mut().filter(|c| c.name == cluster) {
            if let Some(i) = c.endpoints.iter().position(|a| *a == addr) {
                c.healthy[i] = healthy;
                c.update_rotation();
            }
        }
        self.snapshots.store(Arc::new(snapshot));
        current.generation = generation;
        if healthy {
            log::info!(
                "health: endpoint {addr} of cluster {cluster:?} is healthy again ({why}); generation {generation}"
            );
        } else {
            log::warn!(
                "health: endpoint {addr} of cluster {cluster:?} is unhealthy ({why}); generation {generation}"
            );
        }
    }

    /// Every endpoint with active health checks, with its settings and
    /// whether it is currently marked unhealthy.
    pub fn health_targets(&self) -> Vec<HealthTarget> {
        let current = self.lock();
        let snapshot = self.snapshots.load();
        current
            .config
            .clusters
            .iter()
            .filter_map(|c| Some((c, c.health.as_ref()?)))
            .flat_map(|(c, h)| {
                let current = &current;
                let compiled = snapshot.clusters.iter().find(|k| k.name == c.name);
                let tls = compiled.and_then(|k| k.tls.clone());
                let http2 = compiled.is_some_and(|k| k.protocol.is_http2());
                c.endpoints.iter().map(move |addr| HealthTarget {
                    cluster: c.name.clone(),
                    addr: *addr,
                    settings: h.clone(),
                    tls: tls.clone(),
                    http2,
                    unhealthy: current.unhealthy.contains(&(c.name.clone(), *addr)),
                })
            })
            .collect()
    }

    /// Names of the clusters with active health checks.
    fn health_checked(&self) -> BTreeSet<String> {
        self.lock()
            .config
            .clusters
            .iter()
            .filter(|c| c.health.is_some())
            .map(|c| c.name.clone())
            .collect()
    }

    /// Re-reads the configuration file (and so every certificate, key and
    /// CA it names) and applies it.
    pub fn reload_file(&self) -> Result<Applied, DaemonError> {
        let path = self.config_path.clone();
        let text = std::fs::read_to_string(&path).map_err(|source| {
            DaemonError::Config(ConfigError::Read {
                path: path.clone(),
                source,
            })
        })?;
        self.apply(&text, &path)
    }

    /// Re-reads certificates by recompiling the configuration in force.
    pub fn reload_certs(&self) -> Result<Applied, DaemonError> {
        let (text, path) = {
            let current = self.lock();
            (
                current.text.clone(),
                current
                    .config
                    .source
                    .clone()
                    .unwrap_or_else(|| self.config_path.clone()),
            )
        };
        self.apply(&text, &path)
    }

    fn same_listeners(&self, snapshot: &Snapshot, path: &Path) -> Result<(), DaemonError> {
        let current = self.snapshots.load();
        let same = current.listeners.len() == snapshot.listeners.len()
            && current
                .listeners
                .iter()
                .zip(&snapshot.listeners)
                .all(|(a, b)| {
                    let listeners = self.listeners();
                    let bound = listeners.iter().find(|l| l.name == a.name);
                    a.name == b.name
                        && a.protocol == b.protocol
                        && a.tls.is_some() == b.tls.is_some()
                        && (b.address == a.address || bound.is_some_and(|l| l.address == b.address))
                });
        if same {
            Ok(())
        } else {
            Err(listeners_changed(&path.display().to_string()))
        }
    }
}

/// Listeners to bind (new, or moved to another configured address) and
/// listener names to stop.
fn listener_changes(
    old: &Snapshot,
    new: &Snapshot,
) -> (Vec<dataplane::route::Listener>, Vec<String>) {
    let bind = new
        .listeners
        .iter()
        .filter(|n| {
            !old.listeners
                .iter()
                .any(|o| o.name == n.name && o.address == n.address)
        })
        .cloned()
        .collect();
    let unlisten = old
        .listeners
        .iter()
        .filter(|o| !new.listeners.iter().any(|n| n.name == o.name))
        .map(|o| o.name.clone())
        .collect();
    (bind, unlisten)
}

/// Every route by name, with what it does (to tell changed from unchanged).
fn route_keys(s: &Snapshot) -> Vec<(&str, String)> {
    s.listeners
        .iter()
        .flat_map(|l| l.routes.iter())
        .map(|r| {
            (
                r.name.as_str(),
                format!(
                    "{:?}|{}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
                    r.matcher,
                    target_text(s, &r.target),
                    r.timeout,
                    r.retry,
                    r.rate_limit,
                    r.request_headers,
                    r.response_headers,
                    r.prefix_rewrite,
                    r.fault,
                ),
            )
        })
        .collect()
}

/// What a set of shards did over a canary's watch window.
struct Window {
    requests: u64,
    errors_5xx: u64,
    latency: Option<dataplane::telemetry::Histogram<u64>>,
}

impl Window {
    fn empty() -> Window {
        Window {
            requests: 0,
            errors_5xx: 0,
            latency: None,
        }
    }

    fn read(s: &ShardStats) -> Window {
        Window {
            requests: s.requests.get(),
            errors_5xx: s.responses_by_class[5].get(),
            latency: s.latency.get().map(|h| (*h).clone()),
        }
    }

    fn minus(&self, earlier: &Window) -> Window {
        let latency = match (&self.latency, &earlier.latency) {
            (Some(a), Some(b)) => {
                let mut d = a.clone();
                d.subtract(b).ok().map(|_| d)
            }
            (Some(a), None) => Some(a.clone()),
            _ => None,
        };
        Window {
            requests: self.requests.saturating_sub(earlier.requests),
            errors_5xx: self.errors_5xx.saturating_sub(earlier.errors_5xx),
            latency,
        }
    }

    fn add(&mut self, other: &Window) {
        self.requests += other.requests;
        self.errors_5xx += other.errors_5xx;
        if let Some(h) = &other.latency {
            match &mut self.latency {
                Some(mine) => {
                    let _ = mine.add(h);
                }
                None => self.latency = Some(h.clone()),
            }
        }
    }

    fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors_5xx as f64 / self.requests as f64
        }
    }

    fn p99_us(&self) -> Option<u64> {
        self.latency
            .as_ref()
            .filter(|h| !h.is_empty())
            .map(|h| h.value_at_quantile(0.99))
    }

    fn to_json(&self) -> Value {
        json!({
            "requests": self.requests,
            "errors_5xx": self.errors_5xx,
            "error_rate": self.error_rate(),
            "p99_us": self.p99_us(),
        })
    }
}

/// Canary verdict: `Ok` to promote, `Err(reason)` to roll back.
fn judge(
    canary: &Window,
    others: &Window,
    limits: &crate::config::ControlConfig,
) -> Result<(), String> {
    const MIN_REQUESTS: u64 = 10;
    if canary.requests < MIN_REQUESTS {
        return Err(format!(
            "the canary shard served {} requests in the window (fewer than {MIN_REQUESTS}): not enough to judge",
            canary.requests
        ));
    }
    let allowed = others.error_rate() + f64::from(limits.canary_max_error_increase_pct) / 100.0;
    if canary.error_rate() > allowed {
        return Err(format!(
            "5xx rate {:.2}% on the canary vs {:.2}% elsewhere (allowed +{} points)",
            canary.error_rate() * 100.0,
            others.error_rate() * 100.0,
            limits.canary_max_error_increase_pct
        ));
    }
    if let (Some(c), Some(o)) = (canary.p99_us(), others.p99_us()) {
        let allowed = o + o * u64::from(limits.canary_max_p99_increase_pct) / 100 + 1000;
        if c > allowed {
            return Err(format!(
                "p99 {c} µs on the canary vs {o} µs elsewhere (allowed {allowed} µs)"
            ));
        }
    }
    Ok(())
}

fn parse(text: &str, path: &Path) -> Result<Config, DaemonError> {
    let base = path.parent().unwrap_or(Path::new("."));
    let origin = path.display().to_string();
    let mut config = Config::from_toml_str(text, &origin, base)?;
    config.source = Some(path.to_owned());
    Ok(config)
}
