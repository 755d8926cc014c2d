//! Per-route and per-cluster traffic policies as the snapshot carries them:
//! retries, rate limits, header edits, faults, redirects, splits, circuit
//! breakers and hashing keys. Plain data, compiled and validated by the
//! control thread; the shard keeps the mutable state (buckets, counters).

use std::time::Duration;

use super::ClusterId;
pub use crate::http::HeaderEdits;
use crate::upstream::retry::{RetryBudget, RetryOn};

/// Where a route sends its requests.
#[derive(Debug, Clone)]
pub enum RouteTarget {
    /// One cluster.
    Cluster(ClusterId),
    /// Weighted choice per request (weights > 0, at least one entry).
    Split(Vec<SplitTarget>),
    /// Answered by the gateway with a redirect.
    Redirect(Redirect),
}

impl RouteTarget {
    /// Every cluster the target may send to, in configuration order.
    pub fn clusters(&self) -> impl Iterator<Item = ClusterId> + '_ {
        let (one, many): (Option<ClusterId>, &[SplitTarget]) = match self {
            RouteTarget::Cluster(c) => (Some(*c), &[]),
            RouteTarget::Split(s) => (None, s),
            RouteTarget::Redirect(_) => (None, &[]),
        };
        one.into_iter().chain(many.iter().map(|s| s.cluster))
    }

    /// The cluster for a request, given a uniform `random` value: the split
    /// entry whose cumulative weight range holds `random % total`. `None`
    /// for a redirect.
    pub fn pick(&self, random: u64) -> Option<ClusterId> {
        match self {
            RouteTarget::Cluster(c) => Some(*c),
            RouteTarget::Split(split) => {
                let total: u64 = split.iter().map(|s| u64::from(s.weight)).sum();
                if total == 0 {
                    return split.first().map(|s| s.cluster);
                }
                let mut point = random % total;
                for s in split {
                    let w = u64::from(s.weight);
                    if point < w {
                        return Some(s.cluster);
                    }
                    point -= w;
                }
                split.last().map(|s| s.cluster)
            }
            RouteTarget::Redirect(_) => None,
        }
    }
}

/// One weighted entry of a split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitTarget {
    pub cluster: ClusterId,
    pub weight: u32,
}

/// A redirect answer; absent parts keep the request's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// 301, 302, 303, 307 or 308.
    pub status: u16,
    pub scheme: Option<String>,
    pub host: Option<String>,
    /// Replaces the path; the request's query is kept.
    pub path: Option<String>,
}

impl Redirect {
    /// The `Location` for a request to `host` + `target` arriving over
    /// `scheme`.
    pub fn location(&self, scheme: &str, host: Option<&str>, target: &str) -> String {
        let scheme = self.scheme.as_deref().unwrap_or(scheme);
        let host = self.host.as_deref().or(host).unwrap_or("");
        let (path, query) = match target.find('?') {
            Some(q) => (&target[..q], &target[q..]),
            None => (target, ""),
        };
        let path = self.path.as_deref().unwrap_or(path);
        format!("{scheme}://{host}{path}{query}")
    }
}

/// When and how a route retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first try.
    pub attempts: u32,
    pub on: RetryOn,
    /// `None`: only the route's total timeout bounds a try.
    pub per_try_timeout: Option<Duration>,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// A request body up to this many bytes is kept for a resend.
    pub buffer_bytes: usize,
}

/// A route's local rate limit for the whole gateway; each shard admits
/// `rps / shards` per second with a burst of `burst / shards` (at least 1),
/// per key.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimit {
    pub rps: f64,
    pub burst: f64,
    pub key: RateKey,
}

/// What a rate limit counts separately.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RateKey {
    /// One budget for the whole route.
    #[default]
    Route,
    /// One budget per client SPIFFE ID (clients without one share one).
    SpiffeId,
    /// One budget per value of this request header (lowercase name;
    /// requests without it share one).
    Header(String),
}

/// Injected faults (chaos testing): percentages of requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fault {
    pub abort_percent: u32,
    pub abort_status: u16,
    pub delay_percent: u32,
    pub delay: Duration,
}

/// Circuit breakers of a cluster for the whole gateway; each shard
/// enforces `ceil(limit / shards)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterLimits {
    pub max_connections: u32,
    pub max_pending: u32,
    pub max_requests: u32,
    pub max_retries: u32,
    pub retry_budget: RetryBudget,
}

impl Default for ClusterLimits {
    fn default() -> Self {
        ClusterLimits {
            max_connections: 1024,
            max_pending: 1024,
            max_requests: 1024,
            max_retries: 3,
            retry_budget: RetryBudget {
                percent: 20,
                min_concurrent: 3,
            },
        }
    }
}

impl ClusterLimits {
    /// One shard's share of a gateway-wide limit (at least 1).
    pub fn share(limit: u32, shards: usize) -> u32 {
        let shards = shards.max(1) as u64;
        (u64::from(limit).div_ceil(shards)).clamp(1, u64::from(u32::MAX)) as u32
    }
}

/// What `ring_hash` and `maglev` hash to pick an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HashOn {
    /// The downstream peer's IP address.
    #[default]
    ClientIp,
    /// A request header's value (name lowercase); requests without it hash
    /// the client IP.
    Header(String),
    /// A cookie's value; requests without it hash the client IP.
    Cookie(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_picks_by_cumulative_weight() {
        let t = RouteTarget::Split(vec![
            SplitTarget {
                cluster: ClusterId(0),
                weight: 95,
            },
            SplitTarget {
                cluster: ClusterId(1),
                weight: 5,
            },
        ]);
        assert_eq!(t.pick(0), Some(ClusterId(0)));
        assert_eq!(t.pick(94), Some(ClusterId(0)));
        assert_eq!(t.pick(95), Some(ClusterId(1)));
        assert_eq!(t.pick(99), Some(ClusterId(1)));
        assert_eq!(t.pick(100), Some(ClusterId(0)));
        let picked: Vec<_> = t.clusters().collect();
        assert_eq!(picked, [ClusterId(0), ClusterId(1)]);
    }

    #[test]
    fn redirect_location_keeps_what_is_not_replaced() {
        let r = Redirect {
            status: 301,
            scheme: Some("https".into()),
            host: None,
            path: None,
        };
        assert_eq!(
            r.location("http", Some("a.example:8080"), "/x?y=1"),
            "https://a.example:8080/x?y=1"
        );
        let r = Redirect {
            status: 308,
            scheme: None,
            host: Some("b.example".into()),
            path: Some("/new".into()),
        };
        assert_eq!(
            r.location("http", Some("a"), "/old?q"),
            "http://b.example/new?q"
        );
    }

    #[test]
    fn limit_share_rounds_up_and_is_never_zero() {
        assert_eq!(ClusterLimits::share(1024, 2), 512);
        assert_eq!(ClusterLimits::share(3, 2), 2);
        assert_eq!(ClusterLimits::share(0, 4), 1);
        assert_eq!(ClusterLimits::share(5, 0), 5);
    }
}
