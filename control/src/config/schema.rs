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

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub dataplane: DataplaneConfig,
    #[serde(default)]
    pub control: ControlConfig,
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
    #[serde(default)]
    pub allowed_uids: Vec<u32>,
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
            canary_max_error_increase_pct: default_canary_error_pct(),
            canary_max_p99_increase_pct: default_canary_p99_pct(),
        }
    }
}

fn default_drain_timeout_ms() -> u64 {
    30_000
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
    /// Absent: plaintext.
    pub tls: Option<TlsConfig>,
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
}

impl TlsConfig {
    /// `client_auth` with its default applied.
    pub fn effective_client_auth(&self) -> ClientAuthConfig {
        self.client_auth.unwrap_or(if self.client_ca.is_some() {
            ClientAuthConfig::Require
        } else {
            ClientAuthConfig::None
        })
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

/// `listeners.tls.min_version`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum MinVersion {
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
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
    /// Name of an existing cluster.
    pub cluster: String,
    /// Total time for the upstream response head; default 15 000.
    #[serde(default = "default_route_timeout_ms")]
    pub timeout_ms: u64,
    /// `[routes.match]`; absent: matches every request.
    #[serde(rename = "match", default)]
    pub matcher: MatchConfig,
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

/// `[[clusters]]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Unique, non-empty.
    pub name: String,
    /// At least one `IP:port`, no duplicates (host names are not resolved).
    #[serde(deserialize_with = "de_endpoints")]
    pub endpoints: Vec<SocketAddr>,
    /// Default 1000.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Load balancing policy; default `least_request`.
    #[serde(default)]
    pub lb: LbPolicyConfig,
    #[serde(default)]
    pub pool: PoolConfig,
}

/// `clusters.lb`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LbPolicyConfig {
    RoundRobin,
    #[default]
    LeastRequest,
}

/// `[clusters.pool]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// Default 64; 0 disables pooling.
    #[serde(default = "default_max_idle_per_endpoint")]
    pub max_idle_per_endpoint: usize,
    /// Default 30 000.
    #[serde(default = "default_pool_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_idle_per_endpoint: default_max_idle_per_endpoint(),
            idle_timeout_ms: default_pool_idle_timeout_ms(),
        }
    }
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
fn default_connect_timeout_ms() -> u64 {
    1_000
}
fn default_max_idle_per_endpoint() -> usize {
    64
}
fn default_pool_idle_timeout_ms() -> u64 {
    30_000
}

/// Parses `IP:port`, saying what is wrong in operator terms.
pub(super) fn parse_socket_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let is_ip = |h: &str| {
        h.trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok()
    };
    let hint = match s.rsplit_once(':') {
        None => "expected IP:port",
        Some((host, _)) if host.contains(':') && !host.starts_with('[') => {
            "IPv6 addresses need brackets, e.g. [::1]:8443"
        }
        Some((host, port)) if port.parse::<u16>().is_err() && is_ip(host) => {
            "the port must be an integer in 0..=65535"
        }
        Some((host, _)) if is_ip(host) || host.is_empty() => "expected IP:port",
        Some((host, _)) if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') => {
            "invalid IPv4 address"
        }
        Some((host, _)) if host.starts_with('[') => "invalid IPv6 address",
        Some(_) => "host names are not supported yet; use an IP address",
    };
    Err(format!("invalid socket address \"{s}\": {hint}"))
}

fn de_socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let s = String::deserialize(d)?;
    parse_socket_addr(&s).map_err(de::Error::custom)
}

/// Element errors inside arrays start with this marker and the element's
/// index (`"[3] message"`): the TOML deserializer positions them at the
/// array, and the loader moves them to the element (`mod.rs`).
pub(super) const ELEMENT_MARKER: char = '[';

fn de_endpoints<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<SocketAddr>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an array of \"IP:port\" strings")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
            while let Some(s) = seq.next_element::<String>()? {
                let addr = parse_socket_addr(&s).map_err(|msg| {
                    de::Error::custom(format!("{ELEMENT_MARKER}{}] {msg}", out.len()))
                })?;
                out.push(addr);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(V)
}
