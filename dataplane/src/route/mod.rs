//! Route stage: the immutable [`Snapshot`] a shard reads, and route matching.
//!
//! The control thread compiles the configuration into one [`Snapshot`]
//! (listeners, their routes, clusters, TLS configs) and publishes it with a
//! single `ArcSwap` store; a shard loads it once per loop turn and never
//! mutates it. Everything here is plain data plus pure functions: no I/O, no
//! clock, no allocation on the request path.
//!
//! # Matching contract
//!
//! [`Listener::find_route`] walks the listener's routes in configuration order
//! and returns the first whose [`RouteMatch`] accepts the request. Every
//! condition of a matcher must hold; an absent condition accepts anything.
//!
//! * **Host** — compared ASCII-case-insensitively against the request's host
//!   (the `Host` header, or the authority of an absolute-form target) with any
//!   `:port` removed (`[::1]:8443` → `[::1]`) and one trailing dot removed
//!   (`example.com.` → `example.com`). [`HostMatch::Suffix`] (`*.example.com`
//!   in config) needs at least one more character before the suffix, so it
//!   does not match the bare `example.com`. A route with a host condition
//!   never matches a request without a host.
//! * **Path** — `path` is the origin-form request target; anything from the
//!   first `?` on (the query) is ignored. [`PathMatch::Prefix`] is a plain
//!   byte-prefix test (`/api` matches `/api`, `/api/x` and `/apix`; write
//!   `/api/` to match on a segment boundary). Paths are case-sensitive.
//! * **Methods** — the request method must equal one of the listed methods
//!   exactly (methods are case-sensitive, RFC 9110 §9.1; the config loader
//!   uppercases what the operator wrote). An empty list accepts any method.
//!
//! Nothing here panics on any input.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::tls::{ClientTls, ServerTls};
use crate::upstream::hash::{Maglev, RingHash};
use crate::upstream::outlier::OutlierSettings;

pub mod authz;
pub mod policy;
pub mod rate_limit;
#[cfg(test)]
mod tests;

pub use policy::{
    ClusterLimits, Fault, HashOn, HeaderEdits, RateKey, RateLimit, Redirect, RetryPolicy,
    RouteTarget, SplitTarget,
};

/// Everything a shard needs to serve traffic, compiled by the control thread
/// and shared read-only by all shards.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Increases by one with every published snapshot; shards compare it to
    /// notice a new snapshot cheaply.
    pub generation: u64,
    /// In configuration order.
    pub listeners: Vec<Listener>,
    /// In configuration order; [`ClusterId`] `n` is `clusters[n]`.
    pub clusters: Vec<Cluster>,
    /// `[tracing]`: trace context propagation and sampling (`None`: trace
    /// headers pass through untouched, nothing is sampled).
    pub tracing: Option<std::sync::Arc<crate::telemetry::trace::TraceSpec>>,
}

impl Snapshot {
    /// The cluster a route points at.
    ///
    /// # Panics
    ///
    /// If `id` did not come from this snapshot (the compiler only hands out
    /// ids of clusters it put in the same snapshot, so this is a bug, never
    /// an input error).
    pub fn cluster(&self, id: ClusterId) -> &Cluster {
        &self.clusters[id.0 as usize]
    }

    /// The listener with this name, if any.
    pub fn listener(&self, name: &str) -> Option<&Listener> {
        self.listeners.iter().find(|l| l.name == name)
    }

    /// The index of the listener with this name, if any.
    pub fn listener_index(&self, name: &str) -> Option<usize> {
        self.listeners.iter().position(|l| l.name == name)
    }
}

/// One listening address and what to do with its connections.
#[derive(Debug, Clone)]
pub struct Listener {
    /// Unique among the snapshot's listeners.
    pub name: String,
    /// Every shard binds its own `SO_REUSEPORT` socket to this address.
    pub address: SocketAddr,
    pub protocol: Protocol,
    /// `None`: plaintext.
    pub tls: Option<ServerTls>,
    /// In configuration order; the first match wins. A [`Protocol::Tcp`]
    /// listener has exactly one route, with an empty matcher.
    pub routes: Vec<Route>,
    pub limits: HttpLimits,
    /// Who may use the listener at all (checked before its routes').
    pub authz: authz::Policy,
    /// Where and how its requests are logged; `None`: not logged.
    pub access_log: Option<std::sync::Arc<crate::telemetry::access_log::AccessLogSpec>>,
}

impl Listener {
    /// The first route (in configuration order) that accepts the request, or
    /// `None` when none does. `host` is the request's host as sent (a `:port`
    /// is ignored), `path` its origin-form target (a query is ignored). See
    /// the module docs for the exact rules. Does not allocate.
    pub fn find_route(&self, host: Option<&str>, path: &str, method: &str) -> Option<&Route> {
        self.find_route_index(host, path, method)
            .map(|i| &self.routes[i])
    }

    /// The index of the route [`find_route`](Self::find_route) finds.
    pub fn find_route_index(&self, host: Option<&str>, path: &str, method: &str) -> Option<usize> {
        let host = host.map(normalize_host);
        let path = match path.find('?') {
            Some(q) => &path[..q],
            None => path,
        };
        self.routes
            .iter()
            .position(|r| r.matcher.matches_normalized(host, path, method))
    }
}

/// What a listener speaks once TLS (if any) is terminated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1: requests are routed one by one.
    Http,
    /// Raw bytes, forwarded to the listener's one route's cluster.
    Tcp,
}

/// Per-listener limits on downstream connections.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Largest request head (request line plus headers) accepted; larger
    /// heads get `431`. Default 64 KiB.
    pub max_header_bytes: usize,
    /// Time allowed from the first byte of a request head (or from accept)
    /// to its end; expiry gets `408` and closes. Default 10 s.
    pub header_timeout: Duration,
    /// A connection with no request in flight and no bytes moving for this
    /// long is closed. Default 60 s.
    pub idle_timeout: Duration,
    /// Most open downstream connections **per shard** for this listener
    /// (shards share nothing, so a global count would need a contended
    /// atomic on every accept; the process-wide bound is this times the shard
    /// count). `0` means unlimited. Default 0.
    pub max_connections: usize,
    /// What to do with request header names containing `_`.
    pub underscores: Underscores,
    /// How request paths are normalised before routing.
    pub paths: crate::http::PathRules,
    /// Whose `x-request-id` goes upstream.
    pub request_id: RequestIdPolicy,
    /// Most open connections per shard from one source address (0: no
    /// limit).
    pub max_connections_per_source: u32,
    /// Most open connections per shard of one client identity (SPIFFE ID,
    /// else certificate subject; 0: no limit).
    pub max_connections_per_identity: u32,
    /// Most header fields in a request head (at most 128).
    pub max_header_count: usize,
    /// A request body must arrive at this average rate (bytes per second)
    /// once `min_body_rate_grace` has passed; 0: no minimum.
    pub min_body_rate: u32,
    pub min_body_rate_grace: Duration,
    /// HTTP/2 connections (ALPN `h2`).
    pub http2: Http2Limits,
}

/// Per-listener HTTP/2 limits (`[listeners.http2]`); `h2` enforces them,
/// a breach of a flood limit ends the connection with
/// GOAWAY(ENHANCE_YOUR_CALM).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2Limits {
    /// Streams a client may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
    pub max_concurrent_streams: u32,
    /// Largest header list, counted as RFC 9113 does (name + value + 32
    /// per field); larger is refused (SETTINGS_MAX_HEADER_LIST_SIZE).
    pub max_header_list_bytes: u32,
    /// Streams the client reset before the gateway took them up (Rapid
    /// Reset, CVE-2023-44487).
    pub max_pending_accept_resets: usize,
    /// Streams the gateway had to reset for the client's protocol errors
    /// (MadeYouReset, CVE-2025-8671).
    pub max_local_error_resets: usize,
    /// Flow-control windows the gateway grants: per stream, and for the
    /// whole connection.
    pub initial_stream_window: u32,
    pub initial_connection_window: u32,
    /// PING and SETTINGS frames (each demanding an answer) a client may
    /// send per second; more ends the connection (ENHANCE_YOUR_CALM).
    pub max_control_frames_per_second: u32,
    /// Empty DATA/HEADERS/CONTINUATION frames (ending nothing) a client
    /// may send in a row; more ends the connection (CVE-2019-9518).
    pub max_consecutive_empty_frames: u32,
    /// A plaintext listener serves HTTP/2 to clients that start with its
    /// connection preface (prior knowledge, "h2c"), HTTP/1.1 to the rest.
    pub h2c: bool,
}

impl Default for Http2Limits {
    fn default() -> Self {
        Http2Limits {
            max_concurrent_streams: 100,
            max_header_list_bytes: 64 * 1024,
            max_pending_accept_resets: 50,
            max_local_error_resets: 500,
            initial_stream_window: 256 * 1024,
            initial_connection_window: 1024 * 1024,
            max_control_frames_per_second: 100,
            max_consecutive_empty_frames: 10,
            h2c: false,
        }
    }
}

/// `listeners.request_id`: whose `x-request-id` goes upstream (only ever
/// one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RequestIdPolicy {
    /// The caller's, if it sent one (its first).
    Keep,
    /// Always a fresh one of the gateway's.
    Fresh,
    /// The caller's when it presented a verified SPIFFE identity (a mesh
    /// workload tracing its own call), else a fresh one (default).
    #[default]
    Mesh,
}

/// Request header names with `_` (`listeners.headers_with_underscores`,
/// Envoy's option): CGI-style upstreams read `_` and `-` alike, so
/// `x_forwarded_for` could pass for the `x-forwarded-for` the gateway
/// writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Underscores {
    /// Forwarded as they are.
    Allow,
    /// Left out of the request sent upstream (default).
    #[default]
    Drop,
    /// The request is refused with 400.
    Reject,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_header_bytes: 64 * 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 0,
            underscores: Underscores::Drop,
            paths: crate::http::PathRules::default(),
            request_id: RequestIdPolicy::Mesh,
            max_connections_per_source: 0,
            max_connections_per_identity: 0,
            max_header_count: crate::http::MAX_HEADERS,
            min_body_rate: 256,
            min_body_rate_grace: Duration::from_secs(10),
            http2: Http2Limits::default(),
        }
    }
}

/// A matcher and where matching requests go.
#[derive(Debug, Clone)]
pub struct Route {
    /// Unique in the snapshot; used in logs and metrics.
    pub name: String,
    pub matcher: RouteMatch,
    pub target: RouteTarget,
    /// Total time allowed for the upstream's response head once the request
    /// was sent, retries and backoff included (also bounds each upstream
    /// write and each read of the response body); expiry gets `504`.
    /// Connecting is bounded separately by the cluster's `connect_timeout`.
    /// Default 15 s.
    pub timeout: Duration,
    pub retry: Option<RetryPolicy>,
    pub rate_limit: Option<RateLimit>,
    /// Edits of the request head sent upstream (host rewrite included).
    pub request_headers: HeaderEdits,
    /// Edits of the response head sent downstream.
    pub response_headers: HeaderEdits,
    /// `(matched prefix, replacement)`: the target's leading prefix is
    /// replaced before forwarding.
    pub prefix_rewrite: Option<(String, String)>,
    pub fault: Option<Fault>,
    /// Who may use the route (after the listener's policy allowed).
    pub authz: authz::Policy,
}

impl Route {
    /// A route to one cluster with every policy at its default.
    pub fn to_cluster(name: &str, matcher: RouteMatch, cluster: ClusterId) -> Route {
        Route {
            name: name.to_owned(),
            matcher,
            target: RouteTarget::Cluster(cluster),
            timeout: Duration::from_secs(15),
            retry: None,
            rate_limit: None,
            request_headers: HeaderEdits::default(),
            response_headers: HeaderEdits::default(),
            prefix_rewrite: None,
            fault: None,
            authz: authz::Policy {
                default_name: Arc::from(format!("route {name}: no allow rule")),
                ..authz::Policy::default()
            },
        }
    }
}

/// Conditions a request must all meet; an absent condition accepts anything.
#[derive(Debug, Clone, Default)]
pub struct RouteMatch {
    pub host: Option<HostMatch>,
    pub path: Option<PathMatch>,
    /// Empty: any method. Otherwise uppercase method tokens.
    pub methods: Vec<String>,
}

impl RouteMatch {
    /// Whether the request meets every condition. Same rules as
    /// [`Listener::find_route`]; does not allocate.
    pub fn matches(&self, host: Option<&str>, path: &str, method: &str) -> bool {
        let path = match path.find('?') {
            Some(q) => &path[..q],
            None => path,
        };
        self.matches_normalized(host.map(normalize_host), path, method)
    }

    fn matches_normalized(&self, host: Option<&str>, path: &str, method: &str) -> bool {
        if let Some(want) = &self.host {
            match host {
                Some(h) if want.matches(h) => {}
                _ => return false,
            }
        }
        if let Some(want) = &self.path
            && !want.matches(path)
        {
            return false;
        }
        self.methods.is_empty() || self.methods.iter().any(|m| m == method)
    }
}

/// A host condition; the stored name is ASCII-lowercase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// The whole host, e.g. `api.example.com` (or `[::1]` for an IPv6 literal).
    Exact(String),
    /// A dot-led suffix, e.g. `.example.com` (config `*.example.com`); the
    /// host must be longer than the suffix.
    Suffix(String),
}

impl HostMatch {
    /// `host` must already have its port and trailing dot removed.
    fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Exact(want) => host.eq_ignore_ascii_case(want),
            HostMatch::Suffix(suffix) => {
                host.len() > suffix.len()
                    && host.is_char_boundary(host.len() - suffix.len())
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
        }
    }
}

/// A path condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// The path starts with these bytes.
    Prefix(String),
    /// The path is exactly this.
    Exact(String),
}

impl PathMatch {
    fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
            PathMatch::Exact(p) => path == p,
        }
    }
}

/// Index of a cluster in [`Snapshot::clusters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClusterId(pub u32);

/// A named set of upstream endpoints.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// Unique in the snapshot.
    pub name: String,
    /// At least one, no duplicates. Per-shard state (outlier ejection,
    /// balancer cursors) is indexed like this list.
    pub endpoints: Vec<SocketAddr>,
    /// Per endpoint, same order; 0 takes no traffic from weighted policies.
    pub weights: Vec<u32>,
    /// Per endpoint: taken out of rotation by an operator
    /// (`meshctl endpoint drain`).
    pub drained: Vec<bool>,
    /// Per endpoint: the control thread's active health checks pass (always
    /// true without checks).
    pub healthy: Vec<bool>,
    /// When no endpoint is healthy: use them all (`true`, Envoy's panic
    /// mode) or answer 503.
    pub panic_when_all_unhealthy: bool,
    /// Indexes into `endpoints` the balancer picks from: not drained and
    /// healthy (or, in panic mode with none healthy, every one not drained).
    /// Kept in step by [`Cluster::update_rotation`].
    pub rotation: Vec<usize>,
    /// Time allowed for one TCP connect to an endpoint. Default 1 s.
    pub connect_timeout: Duration,
    /// How a shard picks among `rotation`.
    pub lb: LbPolicy,
    pub pool: PoolSettings,
    /// Passive outlier ejection; `None`: off.
    pub outlier: Option<OutlierSettings>,
    /// Circuit breakers and the retry budget.
    pub limits: ClusterLimits,
    /// `[clusters.tls]`: TLS (mutual, when it has a certificate) opened to
    /// every endpoint; `None`: plaintext.
    pub tls: Option<ClientTls>,
    /// What the gateway speaks to the endpoints.
    pub protocol: UpstreamProtocol,
}

/// `clusters.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpstreamProtocol {
    #[default]
    Http1,
    /// HTTP/2 over TLS (ALPN `h2`): the cluster has `tls`.
    H2,
    /// HTTP/2 over plaintext, by prior knowledge.
    H2c,
}

impl UpstreamProtocol {
    /// HTTP/2, either way.
    pub fn is_http2(self) -> bool {
        self != UpstreamProtocol::Http1
    }
}

impl Cluster {
    /// A cluster of equally weighted, healthy endpoints with default
    /// settings.
    pub fn new(name: &str, endpoints: Vec<SocketAddr>) -> Cluster {
        let n = endpoints.len();
        let mut c = Cluster {
            name: name.to_owned(),
            endpoints,
            weights: vec![1; n],
            drained: vec![false; n],
            healthy: vec![true; n],
            panic_when_all_unhealthy: true,
            rotation: Vec::new(),
            connect_timeout: Duration::from_secs(1),
            lb: LbPolicy::default(),
            pool: PoolSettings::default(),
            outlier: None,
            limits: ClusterLimits::default(),
            tls: None,
            protocol: UpstreamProtocol::Http1,
        };
        c.update_rotation();
        c
    }

    /// Recomputes `rotation` from `drained` and `healthy`.
    pub fn update_rotation(&mut self) {
        let in_service = |i: &usize| !self.drained.get(*i).copied().unwrap_or(false);
        let healthy = |i: &usize| self.healthy.get(*i).copied().unwrap_or(true);
        let mut rotation: Vec<usize> = (0..self.endpoints.len())
            .filter(in_service)
            .filter(healthy)
            .collect();
        if rotation.is_empty() && self.panic_when_all_unhealthy {
            rotation = (0..self.endpoints.len()).filter(in_service).collect();
        }
        self.rotation = rotation;
    }

    /// Whether endpoint `i` is in rotation.
    pub fn in_rotation(&self, i: usize) -> bool {
        self.rotation.contains(&i)
    }
}

/// Load-balancing policy of a cluster (state is per shard).
#[derive(Clone, Default)]
pub enum LbPolicy {
    /// Each endpoint in turn.
    RoundRobin,
    /// Smooth weighted round robin over `Cluster::weights`.
    WeightedRoundRobin,
    /// Power of two choices: two random endpoints, the one with fewer
    /// requests in flight on this shard.
    #[default]
    LeastRequest,
    /// Consistent hashing on a ring (bounded remapping when endpoints come
    /// and go).
    RingHash { on: HashOn, ring: Arc<RingHash> },
    /// Maglev lookup table.
    Maglev { on: HashOn, table: Arc<Maglev> },
}

/// The policy and its hash key, not the (large) lookup tables.
impl std::fmt::Debug for LbPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LbPolicy::RingHash { on, ring } => {
                write!(f, "RingHash({on:?}, {} points)", ring.len())
            }
            LbPolicy::Maglev { on, .. } => write!(f, "Maglev({on:?})"),
            other => f.write_str(other.name()),
        }
    }
}

impl LbPolicy {
    /// The config spelling.
    pub fn name(&self) -> &'static str {
        match self {
            LbPolicy::RoundRobin => "round_robin",
            LbPolicy::WeightedRoundRobin => "weighted_round_robin",
            LbPolicy::LeastRequest => "least_request",
            LbPolicy::RingHash { .. } => "ring_hash",
            LbPolicy::Maglev { .. } => "maglev",
        }
    }
}

/// Per-shard upstream connection pool settings of a cluster.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Idle keep-alive connections kept per endpoint (per shard). Default 64;
    /// 0 disables pooling.
    pub max_idle_per_endpoint: usize,
    /// An idle pooled connection older than this is closed. Default 30 s.
    pub idle_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_idle_per_endpoint: 64,
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// Strips a `:port` (also from `[v6]:port`) and one trailing dot. Borrows,
/// never allocates; a malformed host comes back as-is and simply fails to
/// match.
pub fn normalize_host(host: &str) -> &str {
    let host = if host.starts_with('[') {
        // IPv6 literal: keep the brackets, drop what follows `]`.
        match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        }
    } else {
        match host.rfind(':') {
            Some(colon) => &host[..colon],
            None => host,
        }
    };
    host.strip_suffix('.').unwrap_or(host)
}
