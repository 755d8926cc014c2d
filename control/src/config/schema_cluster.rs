//! The serde model of `[[clusters]]`: endpoints, the protocol and TLS
//! spoken to them, balancing, health checks, outlier ejection, breakers,
//! the retry budget and the upstream pool (see `schema.rs` for the conventions: `deny_unknown_fields`,
//! defaults next to the fields, cross-field rules in validation).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use super::schema_values::{MinVersion, de_endpoints, is_token};

/// `[[clusters]]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Unique, non-empty.
    pub name: String,
    /// At least one `IP:port`, no duplicates (host names are not resolved).
    #[serde(deserialize_with = "de_endpoints")]
    pub endpoints: Vec<SocketAddr>,
    /// What the gateway speaks to the endpoints: `"http1"` (default),
    /// `"h2"` (HTTP/2 over TLS, needs `[clusters.tls]`) or `"h2c"`
    /// (HTTP/2 over plaintext, prior knowledge).
    #[serde(default)]
    pub protocol: UpstreamProtocolConfig,
    /// `[clusters.tls]`: open TLS (mutual, with `cert` and `key`) to every
    /// endpoint; absent: plaintext.
    pub tls: Option<ClusterTlsConfig>,
    /// Default 1000: the TCP connect and, with `[clusters.tls]`, the
    /// handshake.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Per-endpoint weights in `endpoints` order, `0..=1000` (0: no
    /// traffic); default all 1. Used by `weighted_round_robin`, `ring_hash`
    /// and `maglev`.
    #[serde(default)]
    pub weights: Vec<u32>,
    /// Load balancing policy; default `least_request`.
    #[serde(default)]
    pub lb: LbPolicyConfig,
    /// What `ring_hash` and `maglev` hash: `"client_ip"` (default),
    /// `"header:NAME"` or `"cookie:NAME"`.
    #[serde(default)]
    pub hash_on: HashOnConfig,
    /// When no endpoint is healthy: `"panic"` (default; send to all
    /// endpoints anyway, like Envoy's panic threshold) or `"fail"` (503).
    #[serde(default)]
    pub all_unhealthy: AllUnhealthyConfig,
    #[serde(default)]
    pub pool: PoolConfig,
    /// `[clusters.health]`: active health checks; absent: none.
    pub health: Option<HealthConfig>,
    /// `[clusters.outlier]`: passive outlier ejection; absent: none.
    pub outlier: Option<OutlierConfig>,
    /// `[clusters.limits]`: circuit breakers.
    #[serde(default)]
    pub limits: ClusterLimitsConfig,
    /// `[clusters.retry_budget]`: retries in flight ≤ max(min_concurrent,
    /// percent % of requests in flight).
    #[serde(default)]
    pub retry_budget: RetryBudgetConfig,
}

/// `clusters.protocol`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocolConfig {
    #[default]
    Http1,
    H2,
    H2c,
}

impl UpstreamProtocolConfig {
    /// The name as written in the config.
    pub fn name(self) -> &'static str {
        match self {
            UpstreamProtocolConfig::Http1 => "http1",
            UpstreamProtocolConfig::H2 => "h2",
            UpstreamProtocolConfig::H2c => "h2c",
        }
    }
}

/// `[clusters.tls]`: TLS origination to the cluster's endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterTlsConfig {
    /// PEM bundle of the CAs the endpoints' certificates must chain to
    /// (resolved to an absolute path).
    pub ca: PathBuf,
    /// Our client certificate chain (mutual TLS); needs `key`.
    pub cert: Option<PathBuf>,
    /// Our private key; needs `cert`.
    pub key: Option<PathBuf>,
    /// Server name sent and (without `verify_spiffe_id`) verified; absent:
    /// no SNI, the endpoint's IP address must be in the certificate.
    pub sni: Option<String>,
    /// ALPN protocols offered; default `["h2"]` for `protocol = "h2"`,
    /// `["http/1.1"]` otherwise.
    pub alpn: Option<Vec<String>>,
    /// When set, the endpoint's certificate must carry one of these SPIFFE
    /// IDs (URI SAN); its DNS names are then not checked.
    #[serde(default)]
    pub verify_spiffe_id: Vec<String>,
    /// `"1.2"` (default) or `"1.3"`.
    #[serde(default)]
    pub min_version: MinVersion,
    /// Resume TLS sessions with the endpoints (tickets); default true.
    #[serde(default = "default_true")]
    pub session_resumption: bool,
}

impl ClusterTlsConfig {
    /// `alpn` with its default for `protocol` applied.
    pub fn effective_alpn(&self, protocol: UpstreamProtocolConfig) -> Vec<String> {
        match &self.alpn {
            Some(alpn) => alpn.clone(),
            None if protocol == UpstreamProtocolConfig::H2 => vec!["h2".to_owned()],
            None => vec!["http/1.1".to_owned()],
        }
    }
}

/// `clusters.lb`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LbPolicyConfig {
    RoundRobin,
    WeightedRoundRobin,
    #[default]
    LeastRequest,
    RingHash,
    Maglev,
}

/// `clusters.all_unhealthy`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AllUnhealthyConfig {
    #[default]
    Panic,
    Fail,
}

/// `[clusters.health]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// `"http"` (default) or `"tcp"` (connect only).
    #[serde(default)]
    pub protocol: HealthProtocol,
    /// HTTP only; default `/healthz`.
    #[serde(default = "default_health_path")]
    pub path: String,
    /// HTTP only: passing statuses, inclusive; default `[200, 399]`.
    #[serde(default = "default_health_statuses")]
    pub statuses: [u16; 2],
    /// Default 5000.
    #[serde(default = "default_health_interval_ms")]
    pub interval_ms: u64,
    /// Random extra delay up to this share of the interval, `0..=100`;
    /// default 10.
    #[serde(default = "default_health_jitter")]
    pub jitter_percent: u32,
    /// Default 1000; must be below `interval_ms`.
    #[serde(default = "default_health_timeout_ms")]
    pub timeout_ms: u64,
    /// Consecutive passes to come back; default 1.
    #[serde(default = "default_one")]
    pub healthy: u32,
    /// Consecutive failures to go out; default 2.
    #[serde(default = "default_two")]
    pub unhealthy: u32,
}

/// `clusters.health.protocol`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthProtocol {
    #[default]
    Http,
    Tcp,
}

/// `[clusters.outlier]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutlierConfig {
    /// Consecutive 5xx responses, gateway errors or connect failures that
    /// eject an endpoint (on the shard that saw them); default 5.
    #[serde(default = "default_outlier_failures")]
    pub consecutive_failures: u32,
    /// The n-th ejection lasts n × this (capped by `max_ejection_ms`);
    /// default 30 000.
    #[serde(default = "default_base_ejection_ms")]
    pub base_ejection_ms: u64,
    /// Default 300 000.
    #[serde(default = "default_max_ejection_ms")]
    pub max_ejection_ms: u64,
    /// At most this share of the cluster's endpoints ejected at once,
    /// `0..=100`; default 50.
    #[serde(default = "default_max_ejection_percent")]
    pub max_ejection_percent: u32,
}

/// `[clusters.limits]` — circuit breakers, for the whole gateway (each shard
/// enforces its even share, rounded up).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterLimitsConfig {
    /// Open upstream connections (idle pooled ones included); default 1024.
    #[serde(default = "default_cb_1024")]
    pub max_connections: u32,
    /// Requests waiting for a connection; default 1024.
    #[serde(default = "default_cb_1024")]
    pub max_pending: u32,
    /// Requests in flight; default 1024.
    #[serde(default = "default_cb_1024")]
    pub max_requests: u32,
    /// Retries in flight; default 3.
    #[serde(default = "default_cb_retries")]
    pub max_retries: u32,
}

impl Default for ClusterLimitsConfig {
    fn default() -> Self {
        ClusterLimitsConfig {
            max_connections: 1024,
            max_pending: 1024,
            max_requests: 1024,
            max_retries: 3,
        }
    }
}

/// `[clusters.retry_budget]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryBudgetConfig {
    /// `0..=100`; default 20.
    #[serde(default = "default_budget_percent")]
    pub percent: u32,
    /// Default 3.
    #[serde(default = "default_cb_retries")]
    pub min_concurrent: u32,
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        RetryBudgetConfig {
            percent: 20,
            min_concurrent: 3,
        }
    }
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

fn default_true() -> bool {
    true
}

fn default_connect_timeout_ms() -> u64 {
    1_000
}

fn default_health_path() -> String {
    "/healthz".to_owned()
}

fn default_health_interval_ms() -> u64 {
    5_000
}

fn default_health_timeout_ms() -> u64 {
    1_000
}

fn default_two() -> u32 {
    2
}

fn default_base_ejection_ms() -> u64 {
    30_000
}

fn default_max_ejection_percent() -> u32 {
    50
}

fn default_cb_retries() -> u32 {
    3
}

fn default_max_idle_per_endpoint() -> usize {
    64
}

fn default_health_statuses() -> [u16; 2] {
    [200, 399]
}

fn default_health_jitter() -> u32 {
    10
}

fn default_one() -> u32 {
    1
}

fn default_outlier_failures() -> u32 {
    5
}

fn default_max_ejection_ms() -> u64 {
    300_000
}

fn default_cb_1024() -> u32 {
    1024
}

fn default_budget_percent() -> u32 {
    20
}

fn default_pool_idle_timeout_ms() -> u64 {
    30_000
}

/// `clusters.hash_on`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HashOnConfig {
    /// `"client_ip"`.
    #[default]
    ClientIp,
    /// `"header:NAME"` (name lowercased).
    Header(String),
    /// `"cookie:NAME"` (case kept: cookie names are case-sensitive).
    Cookie(String),
}

impl<'de> Deserialize<'de> for HashOnConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.split_once(':') {
            None if s == "client_ip" => Ok(HashOnConfig::ClientIp),
            Some(("header", name)) if is_token(name) => {
                Ok(HashOnConfig::Header(name.to_ascii_lowercase()))
            }
            Some(("cookie", name)) if is_token(name) => Ok(HashOnConfig::Cookie(name.to_owned())),
            _ => Err(de::Error::custom(format!(
                "invalid hash key \"{s}\": expected \"client_ip\", \"header:NAME\" or \"cookie:NAME\""
            ))),
        }
    }
}
