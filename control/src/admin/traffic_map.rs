//! The traffic map on the admin `/` page: the graph it draws and the rates
//! on it.
//!
//! - [`Topology`]: the published snapshot as a graph — listeners → routes
//!   → clusters → endpoints, each endpoint with its state.
//! - [`Sample`]: the cumulative counts of every node, by node id
//!   (`l:` listener, `r:` route, `c:` cluster, `e:` cluster`/`endpoint),
//!   and of every split's edge (`s:` route`/`cluster).
//! - [`History`]: a few samples, taken when the page asks (at most one a
//!   second, none older than [`WINDOW`]), so each answer carries rates over
//!   the last seconds without a timer running while nobody looks.
//! - [`graph_json`]: what `/map.json` answers.
//!
//! The page (`traffic_map.html`, one file with inline style and script,
//! no external assets: a gateway host may have no internet) fetches
//! `/map.json` every two seconds and draws it.
//!
//! The edges carry the traffic that flows along them: listener → route
//! the route's requests; route → cluster the route's requests too, when
//! the route has that one cluster (all of them go there, however many
//! routes share the cluster); a split's edges carry their weights and
//! the requests the split sent each way; cluster → endpoint the
//! endpoint's tries.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use dataplane::route::{Protocol, RouteTarget, Snapshot};
use dataplane::telemetry::{Counts, NamedCounts};
use serde_json::{Value, json};

use crate::listeners::BoundListener;
use crate::running::EndpointRow;
use crate::top::{Rate, Totals};

/// Rates are over at most this much of the past.
pub const WINDOW: Duration = Duration::from_secs(5);

/// Samples are kept at least this far apart.
const SPACING: Duration = Duration::from_secs(1);

/// What the map draws.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    pub generation: u64,
    pub listeners: Vec<ListenerNode>,
    pub routes: Vec<RouteNode>,
    pub clusters: Vec<ClusterNode>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListenerNode {
    pub name: String,
    pub address: String,
    /// `http`, `https`, `tcp` or `tls`.
    pub protocol: &'static str,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RouteNode {
    pub name: String,
    pub listener: String,
    /// `(cluster, weight)`; one entry of weight 1 for a plain route, none
    /// for a redirect.
    pub targets: Vec<(String, u32)>,
    /// The status of a redirect route.
    pub redirect: Option<u16>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClusterNode {
    pub name: String,
    pub lb: &'static str,
    pub endpoints: Vec<EndpointNode>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EndpointNode {
    pub address: String,
    /// As `meshctl clusters` says it: `active`, `ejected`, `drained`,
    /// `unhealthy`, …
    pub state: &'static str,
    pub health: &'static str,
    pub in_flight: u64,
}

impl Topology {
    /// The graph of `snapshot`, with the endpoint states of `rows` and
    /// the addresses the listeners are bound to (`bound`: a port 0 in the
    /// configuration is the kernel's choice there).
    pub fn of(snapshot: &Snapshot, rows: &[EndpointRow], bound: &[BoundListener]) -> Topology {
        let listeners = snapshot
            .listeners
            .iter()
            .map(|l| ListenerNode {
                name: l.name.clone(),
                address: bound
                    .iter()
                    .find(|b| b.name == l.name)
                    .map_or(l.address, |b| b.address)
                    .to_string(),
                protocol: match (l.protocol, l.tls.is_some()) {
                    (Protocol::Http, false) => "http",
                    (Protocol::Http, true) => "https",
                    (Protocol::Tcp, false) => "tcp",
                    (Protocol::Tcp, true) => "tls",
                },
            })
            .collect();
        let routes = snapshot
            .listeners
            .iter()
            .flat_map(|l| l.routes.iter().map(move |r| (l, r)))
            .map(|(l, r)| {
                let (targets, redirect) = match &r.target {
                    RouteTarget::Cluster(c) => (vec![(snapshot.cluster(*c).name.clone(), 1)], None),
                    RouteTarget::Split(split) => (
                        split
                            .iter()
                            .map(|e| (snapshot.cluster(e.cluster).name.clone(), e.weight))
                            .collect(),
                        None,
                    ),
                    RouteTarget::Redirect(to) => (Vec::new(), Some(to.status)),
                };
                RouteNode {
                    name: r.name.clone(),
                    listener: l.name.clone(),
                    targets,
                    redirect,
                }
            })
            .collect();
        let clusters = snapshot
            .clusters
            .iter()
            .map(|c| ClusterNode {
                name: c.name.clone(),
                lb: c.lb.name(),
                endpoints: rows
                    .iter()
                    .filter(|r| r.cluster == c.name)
                    .map(|r| EndpointNode {
                        address: r.endpoint.to_string(),
                        state: r.state,
                        health: r.health,
                        in_flight: r.in_flight,
                    })
                    .collect(),
            })
            .collect();
        Topology {
            generation: snapshot.generation,
            listeners,
            routes,
            clusters,
        }
    }
}

/// Cumulative counts of every node, by node id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub totals: BTreeMap<String, Totals>,
}

fn totals(id: String, c: &Counts) -> Totals {
    Totals {
        name: id,
        requests: c.requests,
        responses: c.responses,
        failed: c.failed,
        duration: c.duration,
        in_flight: None,
        endpoints: None,
    }
}

impl Sample {
    /// The counts the shards last published (`named`) and the endpoints'
    /// tries (`rows`, read with [`Latency::Buckets`](crate::running::Latency):
    /// a failed try counts as an error, latency is the time to the
    /// response head).
    pub fn of(named: &NamedCounts, rows: &[EndpointRow]) -> Sample {
        let mut out = BTreeMap::new();
        for (prefix, map) in [
            ("l:", &named.listeners),
            ("r:", &named.routes),
            ("c:", &named.clusters),
        ] {
            for (name, c) in map {
                let id = format!("{prefix}{name}");
                out.insert(id.clone(), totals(id, c));
            }
        }
        for (route, by_cluster) in &named.splits {
            for (cluster, c) in by_cluster {
                let id = split_id(route, cluster);
                out.insert(id.clone(), totals(id, c));
            }
        }
        for r in rows {
            let id = format!("e:{}/{}", r.cluster, r.endpoint);
            out.insert(
                id.clone(),
                Totals {
                    name: id,
                    requests: r.requests,
                    responses: [0; 6],
                    failed: r.failures,
                    duration: r.buckets,
                    in_flight: Some(r.in_flight),
                    endpoints: None,
                },
            );
        }
        Sample { totals: out }
    }
}

/// Rates over the last seconds, by node id.
#[derive(Debug, Clone, PartialEq)]
pub struct Rates {
    pub window_s: f64,
    pub by_id: BTreeMap<String, Rate>,
}

/// The samples the rates are taken against.
#[derive(Debug, Default)]
pub struct History {
    samples: VecDeque<(Instant, Sample)>,
}

impl History {
    /// The rates from the oldest sample of the last [`WINDOW`] to
    /// `current`, taken at `now` (`None` on the first look, or when the
    /// page was not looked at for a while); keeps `current` when the last
    /// kept sample is at least a second old.
    pub fn rates(&mut self, now: Instant, current: Sample) -> Option<Rates> {
        while self
            .samples
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > WINDOW)
        {
            self.samples.pop_front();
        }
        let rates = self.samples.front().and_then(|(at, base)| {
            let seconds = now.saturating_duration_since(*at).as_secs_f64();
            (seconds > 0.0).then(|| Rates {
                window_s: seconds,
                by_id: current
                    .totals
                    .iter()
                    .map(|(id, after)| {
                        let before = base.totals.get(id).filter(|b| b.requests <= after.requests);
                        (id.clone(), Rate::between(before, after, seconds))
                    })
                    .collect(),
            })
        });
        if self
            .samples
            .back()
            .is_none_or(|(at, _)| now.saturating_duration_since(*at) >= SPACING)
        {
            self.samples.push_back((now, current));
        }
        rates
    }
}

/// The sample id of the requests split route `route` sent to `cluster`
/// (an edge's, not a node's).
fn split_id(route: &str, cluster: &str) -> String {
    format!("s:{route}/{cluster}")
}

/// One edge's or node's figures: requests per second, error percent, p99
/// in µs (`null` when there is nothing to say).
fn figures(rates: Option<&Rates>, id: &str) -> Value {
    match rates.and_then(|r| r.by_id.get(id)) {
        Some(r) => json!({
            "rps": (r.rps * 10.0).round() / 10.0,
            "error_pct": r.error_pct.map(|e| (e * 10.0).round() / 10.0),
            "p99_us": r.p99_us,
        }),
        None => json!({"rps": rates.map(|_| 0.0), "error_pct": null, "p99_us": null}),
    }
}

fn with(mut base: Value, extra: Value) -> Value {
    if let (Value::Object(b), Value::Object(e)) = (&mut base, extra) {
        b.extend(e);
    }
    base
}

/// `/map.json`: the nodes (each with its own figures) and the edges (with
/// the figures of the traffic along them, as the module docs say).
pub fn graph_json(t: &Topology, rates: Option<&Rates>) -> Value {
    let mut nodes = Vec::new();
    let mut edges = Vec::new();
    for l in &t.listeners {
        let id = format!("l:{}", l.name);
        nodes.push(with(
            json!({"id": id, "kind": "listener", "label": l.name, "detail": format!("{} {}", l.protocol, l.address)}),
            figures(rates, &id),
        ));
    }
    for r in &t.routes {
        let id = format!("r:{}", r.name);
        let detail = match r.redirect {
            Some(status) => format!("redirect {status}"),
            None => String::new(),
        };
        nodes.push(with(
            json!({"id": id, "kind": "route", "label": r.name, "detail": detail}),
            figures(rates, &id),
        ));
        edges.push(with(
            json!({"from": format!("l:{}", r.listener), "to": id}),
            figures(rates, &id),
        ));
        let split = r.targets.len() > 1;
        for (cluster, weight) in &r.targets {
            let to = format!("c:{cluster}");
            let edge = json!({"from": id, "to": to, "weight": split.then_some(*weight)});
            // Every request of a route with one cluster goes there; a
            // split's share is counted apart.
            let along = if split {
                split_id(&r.name, cluster)
            } else {
                id.clone()
            };
            edges.push(with(edge, figures(rates, &along)));
        }
    }
    for c in &t.clusters {
        let id = format!("c:{}", c.name);
        let active = c.endpoints.iter().filter(|e| e.state == "active").count();
        nodes.push(with(
            json!({"id": id, "kind": "cluster", "label": c.name,
                   "detail": format!("{} · {active}/{} active", c.lb, c.endpoints.len())}),
            figures(rates, &id),
        ));
        for e in &c.endpoints {
            let to = format!("e:{}/{}", c.name, e.address);
            nodes.push(with(
                json!({"id": to, "kind": "endpoint", "label": e.address, "cluster": c.name,
                       "state": e.state, "health": e.health, "in_flight": e.in_flight,
                       "detail": format!("{} · {} in flight", e.state, e.in_flight)}),
                figures(rates, &to),
            ));
            edges.push(with(json!({"from": id, "to": to}), figures(rates, &to)));
        }
    }
    json!({
        "generation": t.generation,
        "window_s": rates.map(|r| (r.window_s * 10.0).round() / 10.0),
        "nodes": nodes,
        "edges": edges,
    })
}

#[cfg(test)]
mod tests;
