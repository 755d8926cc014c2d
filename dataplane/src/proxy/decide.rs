//! Decide: what the gateway does with a request, before anything is sent
//! upstream — route match, redirect, weighted split, rate limit, fault
//! injection, and the cluster's `max_requests` breaker — as a
//! [`Decision`] value; and for a TCP connection, its route's cluster and
//! rate limit ([`decide_connection`]).
//!
//! A function of the snapshot, the shard's traffic state (buckets, gauges,
//! its seeded random draws), the request's protocol-neutral view
//! ([`RequestView`]), the connection's facts and `now`; it does no I/O and
//! reads no clock, and counts nothing: the caller counts the decision
//! ([`Decision::counters`]). Each downstream protocol builds a view from
//! its own request form (an HTTP/1 head today, HTTP/2 headers next).
//!
//! Uses `route` (the snapshot, matchers, policies), `upstream` (hashing)
//! and [`super::traffic`].

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::conn::ConnInfo;
use super::error::ProxyError;
use super::grpc;
use super::traffic::{GaugeGuard, Traffic};
use crate::route::authz::{self, Asked, Verdict};
use crate::route::{
    Cluster, ClusterId, HashOn, LbPolicy, RateKey, RetryPolicy, RouteTarget, Snapshot,
};
use crate::upstream::hash::hash_key;

pub use crate::route::authz::Headers;

impl Headers for crate::http::RequestHead<'_> {
    fn header(&self, name: &str) -> Option<&[u8]> {
        crate::http::RequestHead::header(self, name)
    }
}

impl Headers for ::http::HeaderMap {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.get(name).map(|v| v.as_bytes())
    }
}

/// What decide needs of a request, whatever protocol carried it.
pub struct RequestView<'a> {
    pub method: &'a str,
    /// The authority (`Host`, or the target's / `:authority`).
    pub host: Option<&'a str>,
    /// The path without query.
    pub path: &'a str,
    /// The request-target as sent (path and query), for redirects.
    pub target: &'a str,
    pub headers: &'a dyn Headers,
}

/// A route by its place in the snapshot: index in its listener, and the
/// cluster the split chose.
pub type RouteRef = (usize, ClusterId);

/// The outcome of [`decide`].
pub struct Decision {
    /// The matched route and chosen cluster, once known (for counting).
    pub route: Option<RouteRef>,
    pub action: Action,
}

/// What to do with the request.
pub enum Action {
    /// Send it to the target's cluster.
    Proxy(Target),
    /// Answer with a redirect.
    Redirect { status: u16, location: String },
    /// Answer locally with this error.
    Refuse(ProxyError),
}

/// Where the request goes and the rules for getting it there.
pub struct Target {
    pub listener: usize,
    pub route: usize,
    pub cluster: ClusterId,
    /// Ring hash / maglev key.
    pub hash: u64,
    /// Total time for the response head, retries included (the smaller
    /// of the route's and a gRPC caller's `grpc-timeout`).
    pub timeout: Duration,
    /// A gRPC request (HTTP/2, `application/grpc`): its answers' statuses
    /// are read, counted and judged by gRPC retry conditions.
    pub grpc: bool,
    pub retry: Option<RetryPolicy>,
    /// Fault injection: wait this long first.
    pub delay: Option<Duration>,
    pub connect_timeout: Duration,
    pub pool_idle: Duration,
    pub pool_max_idle: usize,
    /// Counted in the cluster's `active_requests` until the request ends.
    pub admitted: GaugeGuard,
}

/// The counters a decision moves (the caller adds them).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DecisionCounters {
    pub rate_limited: bool,
    pub fault_injected: bool,
    pub overloaded: bool,
    pub forbidden: bool,
}

impl Decision {
    fn refuse(route: Option<RouteRef>, e: ProxyError) -> Decision {
        Decision {
            route,
            action: Action::Refuse(e),
        }
    }

    /// What this decision counts as.
    pub fn counters(&self) -> DecisionCounters {
        match &self.action {
            Action::Refuse(ProxyError::RateLimited { .. }) => DecisionCounters {
                rate_limited: true,
                ..Default::default()
            },
            Action::Refuse(ProxyError::FaultAbort { .. }) => DecisionCounters {
                fault_injected: true,
                ..Default::default()
            },
            Action::Refuse(ProxyError::Overloaded { .. }) => DecisionCounters {
                overloaded: true,
                ..Default::default()
            },
            Action::Refuse(ProxyError::Forbidden { .. }) => DecisionCounters {
                forbidden: true,
                ..Default::default()
            },
            Action::Proxy(t) => DecisionCounters {
                fault_injected: t.delay.is_some(),
                ..Default::default()
            },
            _ => DecisionCounters::default(),
        }
    }
}

/// Decides an HTTP request arriving on `conn`'s listener.
pub fn decide(
    snapshot: &Snapshot,
    traffic: &mut Traffic,
    req: &RequestView<'_>,
    conn: &ConnInfo,
    now: Instant,
) -> Decision {
    // CONNECT tunnels are not an HTTP proxy feature of this gateway (TCP
    // listeners are the way to carry raw streams).
    if req.method == "CONNECT" {
        return Decision::refuse(None, ProxyError::UnsupportedMethod("CONNECT"));
    }
    let no_route = || Decision::refuse(None, ProxyError::NoRoute);
    let Some(listener_index) = snapshot.listener_index(&conn.listener) else {
        return no_route();
    };
    let listener = &snapshot.listeners[listener_index];
    let asked = Asked {
        method: req.method,
        path: req.path,
        headers: req.headers,
    };
    let authorized = authz::authorize_request(listener, req.host, &conn.caller(), &asked);
    if let Verdict::Deny(rule) = authorized.verdict {
        let e = ProxyError::Forbidden {
            rule: rule.clone(),
            stage: authorized.stage,
            route: authorized.route,
        };
        return Decision::refuse(None, e);
    }
    let Some(route_index) = authorized.route else {
        return no_route();
    };
    let route = &listener.routes[route_index];
    traffic.sync(snapshot, now);
    if let RouteTarget::Redirect(r) = &route.target {
        return Decision {
            route: None,
            action: Action::Redirect {
                status: r.status,
                // The origin-form, whichever form the request came in.
                location: r.location(
                    conn.proto,
                    req.host,
                    &crate::http::origin_form(req.target).to_string(),
                ),
            },
        };
    }
    let random = traffic.random();
    let Some(cluster_id) = route.target.pick(random) else {
        return no_route();
    };
    let routed = Some((route_index, cluster_id));
    let key: &[u8] = match traffic.rate_key(listener_index, route_index) {
        Some(RateKey::SpiffeId) => conn.spiffe_id.as_deref().unwrap_or("").as_bytes(),
        Some(RateKey::Header(name)) => req.headers.header(name).unwrap_or(b""),
        _ => b"",
    };
    if let Err(wait) = traffic.admit(listener_index, route_index, key, now) {
        let e = ProxyError::RateLimited {
            route: route.name.clone(),
            retry_after_s: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
        };
        return Decision::refuse(routed, e);
    }
    let mut delay = None;
    if let Some(f) = &route.fault {
        let hit = |r: u64, percent: u32| percent > 0 && (r % 10_000) < u64::from(percent) * 100;
        if hit(traffic.random(), f.abort_percent) {
            let e = ProxyError::FaultAbort {
                route: route.name.clone(),
                status: f.abort_status,
            };
            return Decision::refuse(routed, e);
        }
        if hit(traffic.random(), f.delay_percent) {
            delay = Some(f.delay);
        }
    }
    let cluster = snapshot.cluster(cluster_id);
    // gRPC needs HTTP/2 end to end: a cluster speaking HTTP/1.1 cannot
    // carry it (only HTTP/2 requests are looked at: gRPC has no HTTP/1.1
    // form, so HTTP/1.1 requests pay nothing for this).
    let grpc = conn.http2 && grpc::is_grpc(req.headers);
    if grpc && !cluster.protocol.is_http2() {
        let e = ProxyError::GrpcToHttp1Cluster(cluster.name.clone());
        return Decision::refuse(routed, e);
    }
    let Some(admitted) = admit_request(traffic, cluster, cluster_id) else {
        let e = ProxyError::Overloaded {
            cluster: cluster.name.clone(),
            limit: "max_requests",
        };
        return Decision::refuse(routed, e);
    };
    Decision {
        route: routed,
        action: Action::Proxy(Target {
            listener: listener_index,
            route: route_index,
            cluster: cluster_id,
            hash: request_hash(cluster, req.headers, conn),
            // The caller's gRPC deadline, when it is the sooner.
            timeout: match grpc.then(|| grpc::timeout(req.headers)).flatten() {
                Some(t) => t.min(route.timeout),
                None => route.timeout,
            },
            grpc,
            retry: route.retry,
            delay,
            connect_timeout: cluster.connect_timeout,
            pool_idle: cluster.pool.idle_timeout,
            pool_max_idle: cluster.pool.max_idle_per_endpoint,
            admitted,
        }),
    }
}

/// The cluster's `max_requests` breaker: a gauge unit while under this
/// shard's share, `None` when it is reached.
fn admit_request(traffic: &Traffic, cluster: &Cluster, id: ClusterId) -> Option<GaugeGuard> {
    let state = traffic.clusters.get(id.0 as usize)?;
    (state.active_requests.get() < traffic.share(cluster.limits.max_requests))
        .then(|| state.active_requests.enter())
}

/// Where a TCP connection goes.
pub struct ConnectionTarget {
    pub listener: usize,
    pub cluster: ClusterId,
    pub hash: u64,
    /// The connection counts as a request in flight of its cluster for as
    /// long as it lasts (the retry budget is a share of these).
    pub admitted: GaugeGuard,
}

/// Decides a connection of a TCP listener: its one route's cluster (split
/// included) and rate limit (connections per second). `None` (with the
/// reason) when it is to be closed.
pub fn decide_connection(
    snapshot: &Snapshot,
    traffic: &mut Traffic,
    conn: &ConnInfo,
    now: Instant,
) -> Result<ConnectionTarget, ProxyError> {
    let listener_index = snapshot
        .listener_index(&conn.listener)
        .ok_or(ProxyError::NoRoute)?;
    let listener = &snapshot.listeners[listener_index];
    if let (Verdict::Deny(rule), stage) = authz::authorize_connection(listener, &conn.caller()) {
        let route = (stage == authz::Stage::Route).then_some(0);
        return Err(ProxyError::Forbidden {
            rule: rule.clone(),
            stage,
            route,
        });
    }
    // Validation gives a TCP listener exactly one route.
    let route = listener.routes.first().ok_or(ProxyError::NoRoute)?;
    traffic.sync(snapshot, now);
    let random = traffic.random();
    let cluster_id = route.target.pick(random).ok_or(ProxyError::NoRoute)?;
    let key: &[u8] = match traffic.rate_key(listener_index, 0) {
        Some(RateKey::SpiffeId) => conn.spiffe_id.as_deref().unwrap_or("").as_bytes(),
        _ => b"",
    };
    if let Err(wait) = traffic.admit(listener_index, 0, key, now) {
        return Err(ProxyError::RateLimited {
            route: route.name.clone(),
            retry_after_s: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
        });
    }
    let state = traffic
        .clusters
        .get(cluster_id.0 as usize)
        .ok_or(ProxyError::NoRoute)?;
    Ok(ConnectionTarget {
        listener: listener_index,
        cluster: cluster_id,
        hash: ip_hash(conn.peer.ip()),
        admitted: state.active_requests.enter(),
    })
}

/// The consistent-hashing key of a request (0 for other policies).
fn request_hash(cluster: &Cluster, headers: &dyn Headers, conn: &ConnInfo) -> u64 {
    let on = match &cluster.lb {
        LbPolicy::RingHash { on, .. } | LbPolicy::Maglev { on, .. } => on,
        _ => return 0,
    };
    let value = match on {
        HashOn::ClientIp => None,
        HashOn::Header(name) => headers.header(name),
        HashOn::Cookie(name) => headers.header("cookie").and_then(|c| cookie_value(c, name)),
    };
    match value {
        Some(v) => hash_key(v),
        None => ip_hash(conn.peer.ip()),
    }
}

fn ip_hash(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(ip) => hash_key(&ip.octets()),
        IpAddr::V6(ip) => hash_key(&ip.octets()),
    }
}

/// The value of cookie `name` in a `Cookie` header (RFC 6265 §4.2.1:
/// `name=value` pairs separated by `; `).
fn cookie_value<'a>(header: &'a [u8], name: &str) -> Option<&'a [u8]> {
    header.split(|&b| b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        (&pair[..eq] == name.as_bytes()).then(|| &pair[eq + 1..])
    })
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::rc::Rc;

    use super::*;
    use crate::proxy::tests::harness::{A, B, World};
    use crate::route::{Fault, RateLimit, Redirect, SplitTarget};

    struct NoHeaders;
    impl Headers for NoHeaders {
        fn header(&self, _: &str) -> Option<&[u8]> {
            None
        }
    }

    fn conn() -> ConnInfo {
        ConnInfo {
            peer: SocketAddr::from(([10, 9, 8, 7], 5555)),
            proto: "https",
            xfcc: None,
            spiffe_id: Some("spiffe://mesh.local/ns/a/sa/b".into()),
            authenticated: true,
            peer_chain: None,
            verified_by: None,
            tls: None,
            sni: None,
            listener: Rc::from("l"),
            http2: false,
        }
    }

    fn get<'a>(path: &'a str, headers: &'a dyn Headers) -> RequestView<'a> {
        RequestView {
            method: "GET",
            host: Some("svc"),
            path,
            target: path,
            headers,
        }
    }

    fn decide_once(world: &World, traffic: &mut Traffic, req: &RequestView<'_>) -> Decision {
        decide(&world.snapshot, traffic, req, &conn(), Instant::now())
    }

    #[test]
    fn a_routed_request_gets_its_target_and_is_admitted() {
        let w = World::http().cluster("c", &[A]).route_to("c");
        let mut t = Traffic::new(1, 1);
        let d = decide_once(&w, &mut t, &get("/x", &NoHeaders));
        assert_eq!(d.route, Some((0, ClusterId(0))));
        let Action::Proxy(target) = &d.action else {
            panic!("proxied")
        };
        assert_eq!(target.cluster, ClusterId(0));
        assert_eq!(t.clusters[0].active_requests.get(), 1, "admitted");
        assert_eq!(d.counters(), DecisionCounters::default());
        drop(d);
        assert_eq!(t.clusters[0].active_requests.get(), 0);
    }

    #[test]
    fn no_route_connect_and_redirect_are_answered_locally() {
        let w = World::http()
            .cluster("c", &[A])
            .route_to("c")
            .with_route(|r| r.matcher.path = Some(crate::route::PathMatch::Prefix("/api".into())));
        let mut t = Traffic::new(1, 1);
        let d = decide_once(&w, &mut t, &get("/other", &NoHeaders));
        assert!(matches!(d.action, Action::Refuse(ProxyError::NoRoute)));
        let mut connect = get("/api", &NoHeaders);
        connect.method = "CONNECT";
        let d = decide_once(&w, &mut t, &connect);
        assert!(matches!(
            d.action,
            Action::Refuse(ProxyError::UnsupportedMethod(_))
        ));
        let w = w.with_route(|r| {
            r.target = RouteTarget::Redirect(Redirect {
                status: 308,
                scheme: None,
                host: Some("new.example".into()),
                path: None,
            })
        });
        let d = decide_once(&w, &mut t, &get("/api/x?q=1", &NoHeaders));
        let Action::Redirect { status, location } = d.action else {
            panic!("a redirect")
        };
        assert_eq!(
            (status, location.as_str()),
            (308, "https://new.example/api/x?q=1")
        );
    }

    #[test]
    fn a_rate_limit_refuses_beyond_its_burst_with_retry_after() {
        let w = World::http()
            .cluster("c", &[A])
            .route_to("c")
            .with_route(|r| {
                r.rate_limit = Some(RateLimit {
                    rps: 1.0,
                    burst: 2.0,
                    key: RateKey::SpiffeId,
                })
            });
        let mut t = Traffic::new(1, 1);
        let now = Instant::now();
        for _ in 0..2 {
            let d = decide(&w.snapshot, &mut t, &get("/", &NoHeaders), &conn(), now);
            assert!(matches!(d.action, Action::Proxy(_)));
        }
        let d = decide(&w.snapshot, &mut t, &get("/", &NoHeaders), &conn(), now);
        assert!(d.counters().rate_limited);
        let Action::Refuse(ProxyError::RateLimited { retry_after_s, .. }) = d.action else {
            panic!("rate limited")
        };
        assert_eq!(retry_after_s, 1);
    }

    #[test]
    fn the_max_requests_breaker_counts_requests_in_flight() {
        let w = World::http()
            .cluster("c", &[A])
            .route_to("c")
            .with_cluster(|c| c.limits.max_requests = 2);
        let mut t = Traffic::new(1, 1);
        let first = decide_once(&w, &mut t, &get("/", &NoHeaders));
        let _second = decide_once(&w, &mut t, &get("/", &NoHeaders));
        let third = decide_once(&w, &mut t, &get("/", &NoHeaders));
        assert!(third.counters().overloaded);
        drop(first);
        let fourth = decide_once(&w, &mut t, &get("/", &NoHeaders));
        assert!(matches!(fourth.action, Action::Proxy(_)), "room again");
    }

    #[test]
    fn splits_and_faults_follow_the_seeded_draws() {
        let w = World::http()
            .cluster("one", &[A])
            .cluster("two", &[B])
            .route_to("one")
            .with_route(|r| {
                r.target = RouteTarget::Split(vec![
                    SplitTarget {
                        cluster: ClusterId(0),
                        weight: 3,
                    },
                    SplitTarget {
                        cluster: ClusterId(1),
                        weight: 1,
                    },
                ]);
                r.fault = Some(Fault {
                    abort_percent: 50,
                    abort_status: 503,
                    delay_percent: 0,
                    delay: std::time::Duration::ZERO,
                });
            });
        let draws = |seed| {
            let mut t = Traffic::new(1, seed);
            (0..400)
                .map(|_| {
                    let d = decide_once(&w, &mut t, &get("/", &NoHeaders));
                    (d.route.map(|r| r.1), d.counters().fault_injected)
                })
                .collect::<Vec<_>>()
        };
        let run = draws(9);
        assert_eq!(run, draws(9), "the same seed draws the same");
        let to_two = run.iter().filter(|(c, _)| *c == Some(ClusterId(1))).count();
        let aborted = run.iter().filter(|(_, f)| *f).count();
        assert!(
            (60..140).contains(&to_two),
            "{to_two} of 400 to the 1-in-4 side"
        );
        assert!(
            (150..250).contains(&aborted),
            "{aborted} of 400 aborted at 50 %"
        );
    }

    #[test]
    fn a_tcp_connection_gets_its_cluster_and_counts_while_it_lasts() {
        let w = World::tcp().cluster("c", &[A]).route_to("c");
        let mut t = Traffic::new(1, 1);
        let target = decide_connection(&w.snapshot, &mut t, &conn(), Instant::now()).unwrap();
        assert_eq!(target.cluster, ClusterId(0));
        assert_eq!(t.clusters[0].active_requests.get(), 1);
        drop(target);
        assert_eq!(t.clusters[0].active_requests.get(), 0);
    }
}
