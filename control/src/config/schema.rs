//! The serde model of `meshgate.toml`: one struct per table, every table
//! `deny_unknown_fields`, defaults written next to the fields.
//!
//! Values that have one obvious typed form (socket addresses, enums, shard
//! counts) are parsed here, so a malformed value is reported with its exact
//! line and column by the TOML deserializer. Cross-field rules (references,
//! uniqueness, ranges) live in `validate.rs`, which reports all problems at
//! once.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use dataplane::route::authz::{IdPattern, IpNet};
use dataplane::upstream::retry::RetryOn;
use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

pub use super::schema_cluster::{
    AllUnhealthyConfig, ClusterConfig, ClusterLimitsConfig, ClusterTlsConfig, HashOnConfig,
    HealthConfig, HealthProtocol, LbPolicyConfig, OutlierConfig, PoolConfig, RetryBudgetConfig,
    UpstreamProtocolConfig,
};
pub use super::schema_observability::{
    AccessLogConfig, AccessLogFormatConfig, OtlpEncoding, PropagationConfig, TracingConfig,
};
pub use super::schema_values::MinVersion;
pub(super) use super::schema_values::{
    ELEMENT_MARKER, de_each, de_socket_addr, is_tchar, is_token,
};

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub dataplane: DataplaneConfig,
    #[serde(default)]
    pub control: ControlConfig,
    /// `[admin]`: the admin HTTP listener. Absent: none.
    pub admin: Option<AdminConfig>,
    /// `[tracing]`: trace propagation, sampling and export. Absent: trace
    /// headers pass through untouched.
    pub tracing: Option<TracingConfig>,
    #[serde(default)]
    pub listeners: Vec<ListenerConfig>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    #[serde(default)]
    pub clusters: Vec<ClusterConfig>,
    /// Where this configuration came from (the path given to
    /// [`Config::from_file`], or the `origin` given to
    /// [`Config::from_toml_str`]); names the file in error messages.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// `[dataplane]`
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataplaneConfig {
    /// `"auto"` (default: one per available core) or a count in `1..=1024`.
    #[serde(default)]
    pub shards: Shards,
    /// Only `"kernel"` is supported for now.
    #[serde(default)]
    pub stack: Stack,
    /// Seeds every random draw of the shards (balancer picks, splits,
    /// fault injection, backoff jitter, request ids) so a run can be
    /// replayed; unset (the default), each start draws fresh seeds.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Once listeners and the control socket are bound, run as this user
    /// (a name or uid; its primary group, no supplementary groups). Needs a
    /// start as root. The certificate files must be readable by the user
    /// for reloads; listeners added later by an apply cannot bind ports
    /// below 1024.
    pub user: Option<String>,
}

/// Largest accepted shard count.
pub const MAX_SHARDS: usize = 1024;

/// How many shards (pinned data-plane threads) to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Shards {
    /// One per core the process may run on.
    #[default]
    Auto,
    /// Exactly this many (`1..=1024`).
    Count(usize),
}

impl Shards {
    /// The shard count to start: [`Shards::Auto`] asks
    /// [`std::thread::available_parallelism`] (1 if that fails). Always in
    /// `1..=1024`.
    pub fn resolve(&self) -> usize {
        let n = match self {
            Shards::Auto => std::thread::available_parallelism().map_or(1, |n| n.get()),
            Shards::Count(n) => *n,
        };
        n.clamp(1, MAX_SHARDS)
    }
}

impl<'de> Deserialize<'de> for Shards {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Shards;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "\"auto\" or a shard count in 1..={MAX_SHARDS}")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Shards, E> {
                if s == "auto" {
                    Ok(Shards::Auto)
                } else {
                    Err(E::custom(format!(
                        "invalid shard count \"{s}\": expected \"auto\" or an integer in 1..={MAX_SHARDS}"
                    )))
                }
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Shards, E> {
                match usize::try_from(n) {
                    Ok(n) if (1..=MAX_SHARDS).contains(&n) => Ok(Shards::Count(n)),
                    _ => Err(E::custom(format!(
                        "invalid shard count {n}: expected \"auto\" or an integer in 1..={MAX_SHARDS}"
                    ))),
                }
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Shards, E> {
                self.visit_i64(i64::try_from(n).unwrap_or(i64::MAX))
            }
        }
        d.deserialize_any(V)
    }
}

/// `dataplane.stack`: which network stack the shards use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stack {
    /// Kernel sockets through io_uring.
    #[default]
    Kernel,
    /// smoltcp on a TAP queue per shard: accepted by the parser so the error
    /// can say "not supported yet" instead of "unknown variant".
    Userspace,
}

/// `[control]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// Unix socket of the control protocol; relative paths are resolved
    /// against the config file's folder.
    pub socket: Option<PathBuf>,
    /// How long a drain (SIGTERM, `meshctl drain`) waits for in-flight
    /// requests before stopping anyway. Default 30 000.
    #[serde(default = "default_drain_timeout_ms")]
    pub drain_timeout_ms: u64,
    /// Users besides the daemon's own and root allowed on the socket.
    /// They also need to reach the file: see `socket_group`.
    #[serde(default)]
    pub allowed_uids: Vec<u32>,
    /// The control socket's group (a name or a gid): the file gets mode
    /// 0660 and this group, so members can connect; each connecting user
    /// must still be the daemon's, root, or in `allowed_uids`. Absent:
    /// mode 0600.
    pub socket_group: Option<String>,
    /// Canary apply: roll back when the canary shard's 5xx rate exceeds the
    /// other shards' by more than this many percentage points. Default 1.
    #[serde(default = "default_canary_error_pct")]
    pub canary_max_error_increase_pct: u32,
    /// Canary apply: roll back when the canary's p99 exceeds the others' by
    /// more than this percentage (plus 1 ms of slack). Default 100 (2×).
    #[serde(default = "default_canary_p99_pct")]
    pub canary_max_p99_increase_pct: u32,
}

fn default_canary_error_pct() -> u32 {
    1
}

fn default_canary_p99_pct() -> u32 {
    100
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            socket: None,
            drain_timeout_ms: default_drain_timeout_ms(),
            allowed_uids: Vec::new(),
            socket_group: None,
            canary_max_error_increase_pct: default_canary_error_pct(),
            canary_max_p99_increase_pct: default_canary_p99_pct(),
        }
    }
}

fn default_max_header_count() -> usize {
    128
}

fn default_min_body_rate() -> u32 {
    256
}

fn default_min_body_rate_grace_ms() -> u64 {
    10_000
}

fn default_drain_timeout_ms() -> u64 {
    30_000
}

/// `[admin]`: plain HTTP on the control side (never a shard) serving
/// `/metrics`, `/ready`, `/live` and `/`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// `IP:port`; keep it on loopback or a management network: it is not
    /// authenticated.
    #[serde(deserialize_with = "de_socket_addr")]
    pub address: SocketAddr,
}

/// `[[listeners]]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Unique, non-empty.
    pub name: String,
    /// `IP:port` (IPv6 in brackets); unique among listeners; port ≠ 0.
    #[serde(deserialize_with = "de_socket_addr")]
    pub address: SocketAddr,
    #[serde(default)]
    pub protocol: ListenerProtocol,
    /// `1024..=1048576`, default 65536.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Default 10 000.
    #[serde(default = "default_header_timeout_ms")]
    pub header_timeout_ms: u64,
    /// Default 60 000.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// Per shard; 0 (default) = unlimited.
    #[serde(default)]
    pub max_connections: usize,
    /// Open connections per shard from one source address; 0 (default) =
    /// unlimited.
    #[serde(default)]
    pub max_connections_per_source: u32,
    /// Open connections per shard of one client identity (SPIFFE ID, else
    /// DNS name or CN of its certificate); 0 (default) = unlimited.
    #[serde(default)]
    pub max_connections_per_identity: u32,
    /// Most header fields in a request head, `1..=128` (more: 431);
    /// default 128.
    #[serde(default = "default_max_header_count")]
    pub max_header_count: usize,
    /// A request body must arrive at this average rate, bytes per second,
    /// once `min_body_rate_grace_ms` has passed (slower: 408, closed);
    /// 0 = no minimum. Default 256.
    #[serde(default = "default_min_body_rate")]
    pub min_body_rate: u32,
    /// Default 10 000.
    #[serde(default = "default_min_body_rate_grace_ms")]
    pub min_body_rate_grace_ms: u64,
    /// Request header names with `_`: `"drop"` (default: left out of the
    /// request sent upstream), `"allow"` or `"reject"` (400). CGI-style
    /// upstreams read `_` as `-`, so `x_forwarded_for` could pass for the
    /// gateway's own header.
    #[serde(default)]
    pub headers_with_underscores: UnderscoresConfig,
    /// Normalise request paths before routing (dot segments, escapes of
    /// unreserved characters); default true. The normalised path is the
    /// one routes, authorization rules and the upstream see.
    #[serde(default = "default_true")]
    pub normalize_path: bool,
    /// Merge repeated slashes when normalising; default true.
    #[serde(default = "default_true")]
    pub merge_slashes: bool,
    /// `%2F` / `%5C` in a path: `"keep"` (default, left encoded) or
    /// `"reject"` (400).
    #[serde(default)]
    pub encoded_slashes: EncodedSlashesConfig,
    /// Whose `x-request-id` goes upstream (only ever one): `"mesh"`
    /// (default: the caller's when it has a verified SPIFFE ID, else a
    /// fresh one), `"keep"` (the caller's when it sent one) or `"fresh"`.
    #[serde(default)]
    pub request_id: RequestIdConfig,
    /// Absent: plaintext.
    pub tls: Option<TlsConfig>,
    /// `[[listeners.authz.allow]]` / `[[listeners.authz.deny]]`: who may
    /// use this listener at all (before any route). Absent: everyone.
    #[serde(default)]
    pub authz: AuthzConfig,
    /// Absent: requests on this listener are not logged.
    pub access_log: Option<AccessLogConfig>,
    /// `[listeners.http2]`: limits of HTTP/2 connections (offered with
    /// `tls.alpn = ["h2", "http/1.1"]`); absent: the defaults.
    #[serde(default)]
    pub http2: Http2Config,
}

/// `[listeners.http2]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http2Config {
    /// Streams a client may have open at once, `1..=1000`; default 100.
    pub max_concurrent_streams: u32,
    /// Largest request header list (name + value + 32 bytes per field, as
    /// RFC 9113 counts), `1024..=1048576`; default 65536.
    pub max_header_list_bytes: u32,
    /// Streams a client may reset before the gateway takes them up (Rapid
    /// Reset), `1..=1000`; more: GOAWAY(ENHANCE_YOUR_CALM). Default 50.
    pub max_pending_accept_resets: usize,
    /// Streams the gateway may have to reset for a client's protocol
    /// errors (MadeYouReset), `1..=100000`; more: GOAWAY. Default 500.
    pub max_local_error_resets: usize,
    /// Flow-control window granted per stream, `65535..=2147483647`;
    /// default 262144.
    pub initial_stream_window: u32,
    /// Flow-control window granted per connection, `65535..=2147483647`;
    /// default 1048576.
    pub initial_connection_window: u32,
    /// PING and SETTINGS frames a client may send per second (each
    /// demands an answer), `1..=100000`; more: GOAWAY(ENHANCE_YOUR_CALM).
    /// Default 100.
    pub max_control_frames_per_second: u32,
    /// Empty DATA/HEADERS/CONTINUATION frames (ending nothing) a client
    /// may send in a row, `1..=10000`; more: GOAWAY(ENHANCE_YOUR_CALM).
    /// Default 10.
    pub max_consecutive_empty_frames: u32,
    /// Plaintext listeners: serve HTTP/2 by prior knowledge ("h2c") to
    /// clients that start with its preface, HTTP/1.1 to the rest; default
    /// false. (TLS listeners offer `h2` with `tls.alpn`.)
    pub h2c: bool,
}

impl Default for Http2Config {
    /// The data plane's defaults (one place for the numbers).
    fn default() -> Self {
        let d = dataplane::route::Http2Limits::default();
        Http2Config {
            max_concurrent_streams: d.max_concurrent_streams,
            max_header_list_bytes: d.max_header_list_bytes,
            max_pending_accept_resets: d.max_pending_accept_resets,
            max_local_error_resets: d.max_local_error_resets,
            initial_stream_window: d.initial_stream_window,
            initial_connection_window: d.initial_connection_window,
            max_control_frames_per_second: d.max_control_frames_per_second,
            max_consecutive_empty_frames: d.max_consecutive_empty_frames,
            h2c: d.h2c,
        }
    }
}

/// `authz` of a listener or route: allow and deny rules. Deny wins; with
/// allow rules, what none matches is refused; without rules, everything
/// is allowed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthzConfig {
    #[serde(default)]
    pub allow: Vec<AuthzRuleConfig>,
    #[serde(default)]
    pub deny: Vec<AuthzRuleConfig>,
}

impl AuthzConfig {
    /// Whether there is no rule.
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }
}

/// One rule: every condition it states must hold; within a list, any
/// element will do.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthzRuleConfig {
    /// Named in logs, counters and `meshctl authz explain`; default
    /// `"<listener or route> allow[N]"` / `deny[N]`.
    pub name: Option<String>,
    /// SPIFFE ID patterns: exact, `*` for one path segment, a last `**`
    /// for one or more (`spiffe://mesh.local/ns/shop/sa/*`).
    #[serde(default, deserialize_with = "de_id_patterns")]
    pub spiffe_id: Vec<IdPattern>,
    /// Trust domains the caller's ID must be in (`mesh.local`).
    #[serde(default)]
    pub trust_domain: Vec<String>,
    /// Whether a verified client certificate was presented.
    pub authenticated: Option<bool>,
    /// Source address ranges (`10.0.0.0/8`, `::1/128`, or an address).
    #[serde(default, deserialize_with = "de_ip_nets")]
    pub source: Vec<IpNet>,
    /// HTTP only: request methods (exact, uppercased by the loader).
    #[serde(default)]
    pub methods: Vec<String>,
    /// HTTP only: path prefixes.
    #[serde(default)]
    pub path_prefix: Vec<String>,
    /// HTTP only: exact paths.
    #[serde(default)]
    pub path_exact: Vec<String>,
    /// HTTP only: header name → value the header must equal (`"*"`: any
    /// value, present).
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
}

/// `listeners.request_id`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestIdConfig {
    Keep,
    Fresh,
    #[default]
    Mesh,
}

/// `listeners.encoded_slashes`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncodedSlashesConfig {
    #[default]
    Keep,
    Reject,
}

/// `listeners.headers_with_underscores`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnderscoresConfig {
    Allow,
    #[default]
    Drop,
    Reject,
}

/// `listeners.protocol`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerProtocol {
    #[default]
    Http,
    Tcp,
}

/// `[listeners.tls]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first (resolved to an absolute path).
    pub cert: PathBuf,
    /// PEM private key (resolved to an absolute path).
    pub key: PathBuf,
    /// PEM CA bundle for client certificates (resolved to an absolute path).
    pub client_ca: Option<PathBuf>,
    /// Default: `require` when `client_ca` is set, else `none`
    /// (see [`TlsConfig::effective_client_auth`]).
    pub client_auth: Option<ClientAuthConfig>,
    #[serde(default)]
    pub min_version: MinVersion,
    /// Default true.
    #[serde(default = "default_true")]
    pub session_tickets: bool,
    /// Key-exchange groups in preference order; default
    /// `["x25519mlkem768", "x25519", "secp256r1"]`.
    #[serde(default = "default_groups")]
    pub groups: Vec<String>,
    /// ALPN protocols offered; default `["http/1.1"]` on an http listener
    /// and none on a tcp listener (see [`TlsConfig::effective_alpn`]).
    pub alpn: Option<Vec<String>>,
    /// Certificate revocation lists (PEM or DER files) for client
    /// certificates; re-read with the certificates (`meshctl certs reload`,
    /// SIGHUP). Needs `client_ca`.
    #[serde(default)]
    pub crl: Vec<PathBuf>,
    /// Instead of `client_ca`: one CA bundle per SPIFFE trust domain; a
    /// caller's certificate must chain to its own ID's domain's bundle.
    #[serde(default)]
    pub trust_domains: Vec<TrustDomainConfig>,
}

/// One `[[listeners.tls.trust_domains]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustDomainConfig {
    /// The trust domain, e.g. `mesh.local`.
    pub name: String,
    /// PEM bundle of the CAs that issue that domain's identities.
    pub ca: PathBuf,
}

impl TlsConfig {
    /// `client_auth` with its default applied.
    pub fn effective_client_auth(&self) -> ClientAuthConfig {
        self.client_auth.unwrap_or(
            if self.client_ca.is_some() || !self.trust_domains.is_empty() {
                ClientAuthConfig::Require
            } else {
                ClientAuthConfig::None
            },
        )
    }

    /// `alpn` with its per-protocol default applied.
    pub fn effective_alpn(&self, protocol: ListenerProtocol) -> Vec<String> {
        match (&self.alpn, protocol) {
            (Some(alpn), _) => alpn.clone(),
            (None, ListenerProtocol::Http) => vec!["http/1.1".to_owned()],
            (None, ListenerProtocol::Tcp) => Vec::new(),
        }
    }
}

/// `listeners.tls.client_auth`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuthConfig {
    Require,
    Optional,
    None,
}

/// `[[routes]]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Default `"<listener>#<n>"`, `n` counting this listener's routes from 0
    /// in file order (filled in by the loader). Unique.
    pub name: Option<String>,
    /// Name of an existing listener.
    pub listener: String,
    /// Name of an existing cluster; exactly one of `cluster`, `split` and
    /// `redirect` is required.
    pub cluster: Option<String>,
    /// Weighted split across clusters, e.g.
    /// `[{ cluster = "stable", weight = 95 }, { cluster = "canary", weight = 5 }]`.
    pub split: Option<Vec<SplitConfig>>,
    /// Answer with a redirect instead of proxying.
    pub redirect: Option<RedirectConfig>,
    /// Total time for the upstream response head, retries included; default
    /// 15 000.
    #[serde(default = "default_route_timeout_ms")]
    pub timeout_ms: u64,
    /// `[routes.match]`; absent: matches every request.
    #[serde(rename = "match", default)]
    pub matcher: MatchConfig,
    /// `[routes.retry]`; absent: no retries (beyond the one resend of an
    /// idempotent bodiless request on a dead pooled connection).
    pub retry: Option<RetryConfig>,
    /// `[routes.rate_limit]`; absent: unlimited.
    pub rate_limit: Option<RateLimitConfig>,
    /// `[routes.request_headers]`: edits of the request sent upstream.
    #[serde(default)]
    pub request_headers: HeaderEditsConfig,
    /// `[routes.response_headers]`: edits of the response sent downstream.
    #[serde(default)]
    pub response_headers: HeaderEditsConfig,
    /// Replaces the matched `path_prefix` with this before forwarding (needs
    /// `match.path_prefix`).
    pub prefix_rewrite: Option<String>,
    /// Replaces the `Host` header sent upstream.
    pub host_rewrite: Option<String>,
    /// `[routes.fault]`: injected aborts and delays for chaos testing.
    pub fault: Option<FaultConfig>,
    /// `[[routes.authz.allow]]` / `[[routes.authz.deny]]`: who may use this
    /// route (after the listener's rules). Absent: everyone.
    #[serde(default)]
    pub authz: AuthzConfig,
}

/// One element of `routes.split`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitConfig {
    pub cluster: String,
    /// Relative weight `0..=10000`; the weights of a split must not all be 0.
    pub weight: u32,
}

/// `[routes.redirect]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectConfig {
    /// 301, 302, 303, 307 or 308; default 301.
    #[serde(default = "default_redirect_status")]
    pub status: u16,
    /// `"https"` or `"http"`; default: the request's.
    pub scheme: Option<String>,
    /// Default: the request's host.
    pub host: Option<String>,
    /// Replaces the whole path (the query is kept); default: the request's.
    pub path: Option<String>,
}

/// `[routes.retry]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Retries after the first try (so at most `attempts + 1` tries),
    /// `0..=10`; default 2.
    #[serde(default = "default_retry_attempts")]
    pub attempts: u32,
    /// Which failures are retried: `connect-failure`, `reset`, `timeout`,
    /// `5xx`, `gateway-error`, `503`, `retriable-4xx`. Default
    /// `["connect-failure", "reset"]`.
    #[serde(default = "default_retry_on", deserialize_with = "de_retry_on")]
    pub on: Vec<RetryCondition>,
    /// Time allowed for one try's response head; absent: only the route's
    /// total `timeout_ms` applies.
    pub per_try_timeout_ms: Option<u64>,
    /// Backoff before a retry: uniform in `[0, min(max, base × 2^n)]`.
    /// Default 25.
    #[serde(default = "default_backoff_base_ms")]
    pub backoff_base_ms: u64,
    /// Default 250.
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// A request body up to this size is buffered so it can be resent;
    /// larger bodies are not retried. `0..=16 MiB`, default 64 KiB.
    #[serde(default = "default_retry_buffer_bytes")]
    pub buffer_bytes: usize,
}

/// `[routes.rate_limit]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Requests per second admitted for the whole gateway (split evenly
    /// across shards), `1..=10_000_000`.
    pub rps: u32,
    /// Extra requests admitted at once after a quiet period; default = rps.
    pub burst: Option<u32>,
    /// What gets its own budget: `"route"` (default: one for the route),
    /// `"spiffe_id"` (per client identity) or `"header:NAME"`.
    #[serde(default)]
    pub key: RateKeyConfig,
}

/// A route's name: its `name`, or `LISTENER#N` for the listener's `N`th
/// route (from 0, in file order). The one place names are derived.
pub fn route_name(r: &RouteConfig, n: usize) -> String {
    r.name
        .clone()
        .unwrap_or_else(|| format!("{}#{n}", r.listener))
}

/// One `retry.on` condition (a single flag of [`RetryOn`]), by its
/// Envoy-style name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryCondition(pub RetryOn);

impl RetryCondition {
    fn parse(s: &str) -> Result<RetryCondition, String> {
        RetryOn::parse(s).map(RetryCondition).ok_or_else(|| {
            format!(
                "unknown retry condition \"{s}\" (known: {})",
                RetryOn::NAMES.join(", ")
            )
        })
    }
}

/// `retry.on`: an error names the element (`retry.on[3]`).
fn de_retry_on<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<RetryCondition>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<RetryCondition>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an array of retry condition names")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(s) = seq.next_element::<String>()? {
                let c = RetryCondition::parse(&s).map_err(|msg| {
                    de::Error::custom(format!("{ELEMENT_MARKER}{}] {msg}", out.len()))
                })?;
                out.push(c);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(V)
}

/// `routes.rate_limit.key`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RateKeyConfig {
    /// `"route"`: one budget for the route.
    #[default]
    Route,
    /// `"spiffe_id"`: one per client identity.
    SpiffeId,
    /// `"header:NAME"`: one per value of that header (name lowercased).
    Header(String),
}

impl<'de> Deserialize<'de> for RateKeyConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.split_once(':') {
            None if s == "route" => Ok(RateKeyConfig::Route),
            None if s == "spiffe_id" => Ok(RateKeyConfig::SpiffeId),
            Some(("header", name)) if is_token(name) => {
                Ok(RateKeyConfig::Header(name.to_ascii_lowercase()))
            }
            _ => Err(de::Error::custom(format!(
                "invalid key \"{s}\": expected \"route\", \"spiffe_id\" or \"header:NAME\""
            ))),
        }
    }
}

/// `[routes.request_headers]` / `[routes.response_headers]`
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderEditsConfig {
    /// Appended (an existing field of the same name is kept).
    #[serde(default)]
    pub add: std::collections::BTreeMap<String, String>,
    /// Replace every field of that name.
    #[serde(default)]
    pub set: std::collections::BTreeMap<String, String>,
    /// Field names removed.
    #[serde(default)]
    pub remove: Vec<String>,
}

impl HeaderEditsConfig {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.set.is_empty() && self.remove.is_empty()
    }
}

/// `[routes.fault]`
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultConfig {
    /// Share of requests answered locally with `abort_status`, `0..=100`.
    #[serde(default)]
    pub abort_percent: u32,
    /// Default 503.
    #[serde(default = "default_fault_status")]
    pub abort_status: u16,
    /// Share of requests delayed by `delay_ms` before proxying, `0..=100`.
    #[serde(default)]
    pub delay_percent: u32,
    #[serde(default)]
    pub delay_ms: u64,
}

/// `[routes.match]`
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// `"api.example.com"` or `"*.example.com"`; lowercased by the loader.
    pub host: Option<String>,
    /// Must start with `/`; not together with `path_exact`.
    pub path_prefix: Option<String>,
    /// Must start with `/`; not together with `path_prefix`.
    pub path_exact: Option<String>,
    /// Method tokens; uppercased by the loader. Empty: any method.
    #[serde(default)]
    pub methods: Vec<String>,
}

/// The default `listeners.tls.groups`.
pub const DEFAULT_GROUPS: [&str; 3] = ["x25519mlkem768", "x25519", "secp256r1"];

fn default_true() -> bool {
    true
}

fn default_groups() -> Vec<String> {
    DEFAULT_GROUPS.iter().map(|g| (*g).to_owned()).collect()
}

fn default_max_header_bytes() -> usize {
    64 * 1024
}

fn default_header_timeout_ms() -> u64 {
    10_000
}

fn default_idle_timeout_ms() -> u64 {
    60_000
}

fn default_route_timeout_ms() -> u64 {
    15_000
}

fn default_redirect_status() -> u16 {
    301
}

fn default_retry_attempts() -> u32 {
    2
}

fn default_retry_on() -> Vec<RetryCondition> {
    vec![
        RetryCondition(RetryOn::CONNECT_FAILURE),
        RetryCondition(RetryOn::RESET),
    ]
}

fn default_backoff_base_ms() -> u64 {
    25
}

fn default_backoff_max_ms() -> u64 {
    250
}

fn default_retry_buffer_bytes() -> usize {
    64 * 1024
}

fn default_fault_status() -> u16 {
    503
}

fn de_id_patterns<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IdPattern>, D::Error> {
    de_each(d, "SPIFFE ID patterns", IdPattern::parse)
}

fn de_ip_nets<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    de_each(d, "address ranges", IpNet::parse)
}
