//! What `meshctl status`, `routes`, `clusters` and `stats` show: JSON
//! views of the running gateway, built on the control thread from the
//! published snapshot and what the shards last published.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

use dataplane::route::Snapshot;
use dataplane::telemetry::Buckets;
use serde_json::{Value, json};

use super::Gateway;

/// One endpoint of a cluster as the gateway sees it now.
#[derive(Debug, Clone)]
pub struct EndpointRow {
    pub cluster: String,
    pub endpoint: std::net::SocketAddr,
    pub lb: &'static str,
    pub weight: u32,
    /// `active`, `ejected`, `drained`, `unhealthy`, or
    /// `unhealthy (panic: in use)`.
    pub state: &'static str,
    /// `healthy`, `unhealthy` or `unchecked` (no health check).
    pub health: &'static str,
    /// Shards ejecting it now, and the longest remaining ejection.
    pub ejected_shards: u64,
    pub ejected_for_ms: u64,
    pub times_ejected: u64,
    pub in_flight: u64,
    pub requests: u64,
    pub failures: u64,
    /// Time to the response head of successful tries, µs (`None`: not
    /// asked for, or no shard has one).
    pub latency: Option<dataplane::telemetry::Histogram<u64>>,
    /// The same times in the exposition's buckets (with
    /// [`Latency::Buckets`] only).
    pub buckets: Buckets,
}

/// Whether [`Gateway::endpoint_rows`] merges the shards' latency
/// histograms (a copy per endpoint: the metrics do not need them), or
/// only counts them into [`Buckets`] (the traffic map: no copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Latency {
    Merge,
    Buckets,
    Skip,
}

impl Gateway {
    /// `status`.
    pub fn status_json(&self) -> Value {
        let generation = self.snapshots.load().generation;
        let shards: Vec<Value> = self
            .shard_stats
            .iter()
            .enumerate()
            .map(|(id, s)| {
                json!({
                    "shard": id,
                    "generation": s.generation.get(),
                    "active_connections": s.connections_active.get(),
                    "requests": s.requests.get(),
                })
            })
            .collect();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": self.started.elapsed().as_secs(),
            "config": self.config_path.display().to_string(),
            "generation": generation,
            "shard_count": self.shard_stats.len(),
            "listeners": self.listeners().iter().map(|l| json!({
                "name": l.name, "address": l.address.to_string(), "tls": l.tls,
            })).collect::<Vec<_>>(),
            "shards": shards,
            "draining": self.drain.load(Ordering::Relaxed),
            "certificates": self.certificates_json(),
        })
    }

    /// `routes`: one row per route, in match order per listener.
    pub fn routes_json(&self) -> Value {
        let s = self.snapshots.load();
        let rows: Vec<Value> = s
            .listeners
            .iter()
            .flat_map(|l| {
                let s = &s;
                l.routes.iter().map(move |r| {
                    json!({
                        "listener": l.name,
                        "route": r.name,
                        "host": match &r.matcher.host {
                            None => "*".to_owned(),
                            Some(dataplane::route::HostMatch::Exact(h)) => h.clone(),
                            Some(dataplane::route::HostMatch::Suffix(h)) => format!("*{h}"),
                        },
                        "path": match &r.matcher.path {
                            None => "/*".to_owned(),
                            Some(dataplane::route::PathMatch::Prefix(p)) => format!("{p}*"),
                            Some(dataplane::route::PathMatch::Exact(p)) => p.clone(),
                        },
                        "methods": if r.matcher.methods.is_empty() { "*".to_owned() } else { r.matcher.methods.join(",") },
                        "cluster": target_text(s, &r.target),
                        "timeout_ms": r.timeout.as_millis() as u64,
                        "retry": r.retry.map(|p| format!("{}×{}", p.attempts, p.on.names().collect::<Vec<_>>().join("|"))),
                        "rate_limit_rps": r.rate_limit.as_ref().map(|l| l.rps),
                    })
                })
            })
            .collect();
        Value::Array(rows)
    }

    /// Every endpoint of every cluster, with what the shards last
    /// published about it (for `clusters`, the metrics and the traffic
    /// map). Linear in endpoints × shards: the shards' reports are indexed
    /// by (cluster, endpoint) first.
    pub fn endpoint_rows(&self, latency: Latency) -> Vec<EndpointRow> {
        let s = self.snapshots.load();
        let now = Instant::now();
        let checked = self.health_checked();
        let reports: Vec<_> = self
            .shard_stats
            .iter()
            .filter_map(|st| st.endpoints.get())
            .collect();
        let mut by_endpoint: HashMap<
            (&str, SocketAddr),
            Vec<&dataplane::telemetry::EndpointReport>,
        > = HashMap::new();
        for r in reports.iter().flat_map(|r| r.iter()) {
            by_endpoint
                .entry((r.cluster.as_str(), r.endpoint))
                .or_default()
                .push(r);
        }
        let mut rows = Vec::new();
        for c in &s.clusters {
            for (i, e) in c.endpoints.iter().enumerate() {
                let mut row = EndpointRow {
                    cluster: c.name.clone(),
                    endpoint: *e,
                    lb: c.lb.name(),
                    weight: c.weights.get(i).copied().unwrap_or(1),
                    state: "active",
                    health: if !checked.contains(&c.name) {
                        "unchecked"
                    } else if c.healthy[i] {
                        "healthy"
                    } else {
                        "unhealthy"
                    },
                    ejected_shards: 0,
                    ejected_for_ms: 0,
                    times_ejected: 0,
                    in_flight: 0,
                    requests: 0,
                    failures: 0,
                    latency: None,
                    buckets: Buckets::default(),
                };
                let mine = by_endpoint
                    .get(&(c.name.as_str(), *e))
                    .map_or(&[][..], Vec::as_slice);
                for r in mine {
                    match (&r.latency, latency) {
                        (Some(h), Latency::Merge) => match &mut row.latency {
                            Some(sum) => {
                                let _ = sum.add(h);
                            }
                            None => row.latency = Some(h.clone()),
                        },
                        (Some(h), Latency::Buckets) => {
                            for v in h.iter_recorded() {
                                row.buckets
                                    .record_n(v.value_iterated_to(), v.count_at_value());
                            }
                        }
                        _ => {}
                    }
                    row.in_flight += u64::from(r.in_flight);
                    row.requests += r.requests;
                    row.failures += r.failures;
                    row.times_ejected += u64::from(r.times_ejected);
                    if let Some(until) = r.ejected_until.filter(|u| *u > now) {
                        row.ejected_shards += 1;
                        row.ejected_for_ms = row
                            .ejected_for_ms
                            .max(until.duration_since(now).as_millis() as u64);
                    }
                }
                row.state = if c.drained[i] {
                    "drained"
                } else if !c.healthy[i] {
                    if c.in_rotation(i) {
                        "unhealthy (panic: in use)"
                    } else {
                        "unhealthy"
                    }
                } else if row.ejected_shards > 0 {
                    "ejected"
                } else {
                    "active"
                };
                rows.push(row);
            }
        }
        rows
    }

    /// `clusters`: one row per endpoint.
    pub fn clusters_json(&self) -> Value {
        let rows = self.endpoint_rows(Latency::Merge).into_iter().map(|r| {
            json!({
                "cluster": r.cluster,
                "endpoint": r.endpoint.to_string(),
                "lb": r.lb,
                "weight": r.weight,
                "state": r.state,
                "health": r.health,
                "ejected_shards": r.ejected_shards,
                "ejected_for_ms": r.ejected_for_ms,
                "times_ejected": r.times_ejected,
                "in_flight": r.in_flight,
                "requests": r.requests,
                "failures": r.failures,
                "p99_ms": match r.latency.as_ref().filter(|h| !h.is_empty()) {
                    Some(h) => json!(h.value_at_quantile(0.99) as f64 / 1000.0),
                    None => Value::Null,
                },
            })
        });
        Value::Array(rows.collect())
    }

    /// Per listener / route / cluster counts, merged from what the shards
    /// last published.
    pub fn named_counts(&self) -> dataplane::telemetry::NamedCounts {
        let mut named = dataplane::telemetry::NamedCounts::default();
        for s in &self.shard_stats {
            if let Some(n) = s.named.get() {
                named.add(&n);
            }
        }
        named
    }

    /// `top`: what `meshctl top` turns into rates each second — per route
    /// and per cluster, cumulative requests, responses by class and the
    /// request-duration buckets (bounds in `bounds_us`); clusters also
    /// with their requests in flight and endpoints in rotation.
    pub fn top_json(&self) -> Value {
        let named = self.named_counts();
        let row = |name: &str, c: &dataplane::telemetry::Counts| {
            json!({
                "name": name,
                "requests": c.requests,
                "responses": c.responses,
                "failed": c.failed,
                "duration": c.duration.counts,
            })
        };
        let endpoints = self.endpoint_rows(Latency::Skip);
        let clusters: Vec<Value> = self
            .snapshots
            .load()
            .clusters
            .iter()
            .map(|cluster| {
                let mut r = named.clusters.get(&cluster.name).map_or_else(
                    || row(&cluster.name, &Default::default()),
                    |c| row(&cluster.name, c),
                );
                let mine = endpoints.iter().filter(|e| e.cluster == cluster.name);
                r["in_flight"] = json!(mine.clone().map(|e| e.in_flight).sum::<u64>());
                r["endpoints"] = json!(mine.clone().count());
                r["active_endpoints"] = json!(mine.filter(|e| e.state == "active").count());
                r
            })
            .collect();
        json!({
            "generation": self.snapshots.load().generation,
            "uptime_s": self.started.elapsed().as_secs(),
            "connections_active": self.shard_stats.iter().map(|s| s.connections_active.get()).sum::<u64>(),
            "bounds_us": dataplane::telemetry::BOUNDS_US,
            "routes": named.routes.iter().map(|(n, c)| row(n, c)).collect::<Vec<_>>(),
            "clusters": clusters,
        })
    }

    /// `stats`: counters summed over shards, and per shard.
    pub fn stats_json(&self) -> Value {
        let mut total: Vec<(&'static str, u64)> = Vec::new();
        let mut per_shard = Vec::new();
        for (id, s) in self.shard_stats.iter().enumerate() {
            let values = s.values();
            for (i, (name, v)) in values.iter().enumerate() {
                match total.get_mut(i) {
                    Some(t) => t.1 += v,
                    None => total.push((name, *v)),
                }
            }
            let mut m = serde_json::Map::new();
            m.insert("shard".into(), json!(id));
            for (name, v) in values {
                m.insert(name.into(), json!(v));
            }
            per_shard.push(Value::Object(m));
        }
        let mut totals = serde_json::Map::new();
        for (name, v) in total {
            totals.insert(name.into(), json!(v));
        }
        // Latency percentiles merged across shards from the histograms each
        // shard publishes about once a second.
        let mut merged = dataplane::telemetry::new_latency_histogram();
        for s in &self.shard_stats {
            if let Some(h) = s.latency.get() {
                let _ = merged.add(&*h);
            }
        }
        let latency = if merged.is_empty() {
            json!({ "count": 0 })
        } else {
            json!({
                "count": merged.len(),
                "p50_us": merged.value_at_quantile(0.50),
                "p90_us": merged.value_at_quantile(0.90),
                "p99_us": merged.value_at_quantile(0.99),
                "p99_9_us": merged.value_at_quantile(0.999),
                "max_us": merged.max(),
            })
        };
        let named = self.named_counts();
        let rows = |map: &std::collections::BTreeMap<String, dataplane::telemetry::Counts>,
                    key: &str| {
            map.iter()
                .map(|(name, c)| {
                    json!({
                        key: name,
                        "requests": c.requests,
                        "2xx": c.responses[2],
                        "3xx": c.responses[3],
                        "4xx": c.responses[4],
                        "5xx": c.responses[5],
                        "bytes_out": c.bytes_out,
                        "forbidden": c.forbidden,
                        // gRPC answers by status name (absent: none).
                        "grpc": c.grpc.iter().map(|(code, n)| {
                            (dataplane::proxy::grpc::status_name(*code).to_owned(), json!(n))
                        }).collect::<serde_json::Map<_, _>>(),
                    })
                })
                .collect::<Vec<_>>()
        };
        json!({
            "total": totals,
            "latency_us": latency,
            "listeners": rows(&named.listeners, "listener"),
            "routes": rows(&named.routes, "route"),
            "clusters": rows(&named.clusters, "cluster"),
            "tls_failures": named.tls_failures,
            "authz_denied": named.authz_denied,
            "shards": per_shard,
        })
    }
}

/// Where a route sends requests, for tables: `backend`,
/// `stable:95,canary:5` or `redirect 301`.
pub(super) fn target_text(s: &Snapshot, t: &dataplane::route::RouteTarget) -> String {
    use dataplane::route::RouteTarget;
    match t {
        RouteTarget::Cluster(c) => s.cluster(*c).name.clone(),
        RouteTarget::Split(split) => split
            .iter()
            .map(|e| format!("{}:{}", s.cluster(e.cluster).name, e.weight))
            .collect::<Vec<_>>()
            .join(","),
        RouteTarget::Redirect(r) => format!("redirect {}", r.status),
    }
}
