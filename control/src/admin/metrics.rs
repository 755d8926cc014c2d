//! `/metrics`: every family the gateway exports, read from what the
//! shards publish (their counters, and the per-name counts and
//! histograms they copy out about once a second) and from the control
//! side's own state. README lists the families with their labels.
//!
//! Cardinality is bounded by the configuration: labels are listener,
//! route, cluster and endpoint names, status codes, TLS versions and
//! groups, failure reasons and rule names — never request content.

use std::time::{SystemTime, UNIX_EPOCH};

use dataplane::telemetry::{Counts, NamedCounts, ShardStats};

use super::exposition::{Exposition, Format, Kind};
use crate::access_log::WriterStats;
use crate::running::Gateway;
use crate::running::{EndpointRow, Expiry};
use crate::trace_export::ExportStats;

/// A counter or gauge summed over shards: name, type, help, and how to
/// read it from one shard.
type ShardFamily = (&'static str, Kind, &'static str, ReadShard);

const SHARD_FAMILIES: &[ShardFamily] = &[
    (
        "meshgate_connections_accepted_total",
        Kind::Counter,
        "Downstream connections accepted.",
        |s| s.connections_accepted.get(),
    ),
    (
        "meshgate_connections_active",
        Kind::Gauge,
        "Downstream connections open now.",
        |s| s.connections_active.get(),
    ),
    (
        "meshgate_connections_refused_total",
        Kind::Counter,
        "Connections closed at accept because the listener's max_connections was reached.",
        |s| s.connections_refused.get(),
    ),
    (
        "meshgate_connections_limited_total",
        Kind::Counter,
        "Connections closed over a per-source or per-identity connection limit.",
        |s| s.connections_limited.get(),
    ),
    (
        "meshgate_connections_rechecked_closed_total",
        Kind::Counter,
        "Live connections closed after a configuration change revoked their certificate or rules.",
        |s| s.connections_rechecked_closed.get(),
    ),
    (
        "meshgate_upstream_connections_opened_total",
        Kind::Counter,
        "Upstream connections opened.",
        |s| s.upstream_connects.get(),
    ),
    (
        "meshgate_upstream_connect_failures_total",
        Kind::Counter,
        "Upstream connection attempts that failed.",
        |s| s.upstream_connect_failures.get(),
    ),
    (
        "meshgate_upstream_connections_reused_total",
        Kind::Counter,
        "Requests sent on a pooled upstream connection.",
        |s| s.upstream_reused.get(),
    ),
    (
        "meshgate_upstream_tls_handshakes_total",
        Kind::Counter,
        "TLS handshakes completed with [clusters.tls] endpoints.",
        |s| s.upstream_tls_handshakes.get(),
    ),
    (
        "meshgate_upstream_tls_resumed_total",
        Kind::Counter,
        "TLS handshakes with [clusters.tls] endpoints that resumed an earlier session.",
        |s| s.upstream_tls_resumed.get(),
    ),
    (
        "meshgate_upstream_tls_failures_total",
        Kind::Counter,
        "TLS handshakes with [clusters.tls] endpoints that failed (certificate, SPIFFE ID, protocol, timeout).",
        |s| s.upstream_tls_failures.get(),
    ),
    (
        "meshgate_retries_total",
        Kind::Counter,
        "Tries after the first, by route retry policies.",
        |s| s.retries.get(),
    ),
    (
        "meshgate_retry_overflows_total",
        Kind::Counter,
        "Retries refused by the retry budget or the max_retries breaker.",
        |s| s.retry_overflows.get(),
    ),
    (
        "meshgate_breaker_rejections_total",
        Kind::Counter,
        "Requests refused by a cluster circuit breaker (503).",
        |s| s.overloaded.get(),
    ),
    (
        "meshgate_rate_limited_total",
        Kind::Counter,
        "Requests (429) and TCP connections refused by a route rate limit.",
        |s| s.rate_limited.get(),
    ),
    (
        "meshgate_forbidden_total",
        Kind::Counter,
        "Requests (403) and TCP connections refused by authorization.",
        |s| s.forbidden.get(),
    ),
    (
        "meshgate_faults_injected_total",
        Kind::Counter,
        "Aborts and delays injected by route fault injection.",
        |s| s.faults_injected.get(),
    ),
    (
        "meshgate_tcp_sessions_total",
        Kind::Counter,
        "TCP listener connections relayed to an upstream.",
        |s| s.tcp_sessions.get(),
    ),
    (
        "meshgate_h2_connections_total",
        Kind::Counter,
        "HTTP/2 downstream connections (ALPN h2).",
        |s| s.h2_connections.get(),
    ),
    (
        "meshgate_h2_streams_total",
        Kind::Counter,
        "HTTP/2 streams (requests) opened by downstream clients.",
        |s| s.h2_streams.get(),
    ),
    (
        "meshgate_h2_calm_goaways_total",
        Kind::Counter,
        "HTTP/2 connections closed with GOAWAY(ENHANCE_YOUR_CALM) for a breached limit.",
        |s| s.h2_calm_goaways.get(),
    ),
    (
        "meshgate_h2_upstream_connections_total",
        Kind::Counter,
        "HTTP/2 connections opened to h2 and h2c clusters' endpoints.",
        |s| s.h2_upstream_connections.get(),
    ),
    (
        "meshgate_h2_upstream_streams_total",
        Kind::Counter,
        "Requests sent as streams on HTTP/2 upstream connections.",
        |s| s.h2_upstream_streams.get(),
    ),
    (
        "meshgate_h2_upstream_unprocessed_total",
        Kind::Counter,
        "Requests sent again on a new connection because the upstream refused their stream unprocessed (REFUSED_STREAM, or above its GOAWAY).",
        |s| s.h2_upstream_unprocessed.get(),
    ),
    (
        "meshgate_outlier_ejections_total",
        Kind::Counter,
        "Endpoints ejected by passive outlier detection (per shard).",
        |s| s.outlier_ejections.get(),
    ),
    (
        "meshgate_outlier_returns_total",
        Kind::Counter,
        "Ejected endpoints returned to rotation.",
        |s| s.outlier_returns.get(),
    ),
    (
        "meshgate_access_log_dropped_total",
        Kind::Counter,
        "Access log records dropped because the writer's queue was full.",
        |s| s.access_log_dropped.get(),
    ),
];

/// How to read one figure of a shard.
type ReadShard = fn(&ShardStats) -> u64;

/// Timeouts by kind: label value and how to read it.
const TIMEOUTS: &[(&str, ReadShard)] = &[
    ("connect", |s| s.connect_timeouts.get()),
    ("per_try", |s| s.per_try_timeouts.get()),
    ("request", |s| s.request_timeouts.get()),
    ("header", |s| s.header_timeouts.get()),
    ("request_body_rate", |s| s.slow_request_bodies.get()),
    ("idle", |s| s.idle_timeouts.get()),
];

/// Per-shard loop figures.
const LOOP: &[ShardFamily] = &[
    (
        "meshgate_shard_loop_turns_total",
        Kind::Counter,
        "Turns of the shard's event loop.",
        |s| s.loop_turns.get(),
    ),
    (
        "meshgate_shard_loop_completions_total",
        Kind::Counter,
        "io_uring completions the shard's loop reaped.",
        |s| s.loop_completions.get(),
    ),
    (
        "meshgate_shard_task_polls_total",
        Kind::Counter,
        "Task polls run by the shard's loop.",
        |s| s.loop_polls.get(),
    ),
    (
        "meshgate_shard_tasks",
        Kind::Gauge,
        "Tasks alive on the shard now.",
        |s| s.tasks.get(),
    ),
    (
        "meshgate_shard_connections_active",
        Kind::Gauge,
        "Downstream connections open on the shard now.",
        |s| s.connections_active.get(),
    ),
    (
        "meshgate_shard_config_generation",
        Kind::Gauge,
        "Generation of the configuration the shard last loaded.",
        |s| s.generation.get(),
    ),
];

/// What a scrape reads besides the gateway's live state (cached by the
/// caller: certificate files are not re-read every scrape).
pub struct Extra<'a> {
    pub expiries: &'a [Expiry],
    pub writer: Option<&'a WriterStats>,
}

/// The whole exposition of `gateway`.
///
/// `size_hint`: the length of the last one (the text is built in one
/// allocation of about that size).
pub fn render(gateway: &Gateway, extra: &Extra<'_>, format: Format, size_hint: usize) -> String {
    let mut e = Exposition::new(format, size_hint + size_hint / 8);
    e.family(
        "meshgate_build_info",
        Kind::Gauge,
        "Always 1; the labels say which meshgate runs.",
    );
    e.sample(
        "meshgate_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    e.family(
        "meshgate_config_generation",
        Kind::Gauge,
        "Generation of the published configuration (1 at start, +1 per apply).",
    );
    e.sample(
        "meshgate_config_generation",
        &[],
        gateway.snapshots.load().generation,
    );
    e.family(
        "meshgate_draining",
        Kind::Gauge,
        "1 while the gateway drains (not ready), else 0.",
    );
    e.sample(
        "meshgate_draining",
        &[],
        u64::from(gateway.drain.load(std::sync::atomic::Ordering::Relaxed)),
    );
    let shards = &gateway.shard_stats;
    for (name, kind, help, read) in SHARD_FAMILIES {
        e.family(name, *kind, help);
        e.sample(name, &[], shards.iter().map(|s| read(s)).sum());
    }
    e.family(
        "meshgate_timeouts_total",
        Kind::Counter,
        "Timeouts by kind: connect, per_try, request (the route's total), header, request_body_rate, idle (keep-alive).",
    );
    for (kind, read) in TIMEOUTS {
        let n = shards.iter().map(|s| read(s)).sum();
        e.sample("meshgate_timeouts_total", &[("kind", kind)], n);
    }
    e.family(
        "meshgate_tcp_bytes_total",
        Kind::Counter,
        "Bytes relayed by TCP listeners, by direction (upstream: client to upstream).",
    );
    let up = shards.iter().map(|s| s.tcp_bytes_up.get()).sum();
    let down = shards.iter().map(|s| s.tcp_bytes_down.get()).sum();
    e.sample("meshgate_tcp_bytes_total", &[("direction", "upstream")], up);
    e.sample(
        "meshgate_tcp_bytes_total",
        &[("direction", "downstream")],
        down,
    );
    for (name, kind, help, read) in LOOP {
        e.family(name, *kind, help);
        for (i, s) in shards.iter().enumerate() {
            let shard = i.to_string();
            e.sample(name, &[("shard", &shard)], read(s));
        }
    }
    named_families(&mut e, &gateway.named_counts());
    endpoint_families(&mut e, gateway);
    certificate_families(&mut e, extra.expiries);
    if let Some(exporter) = &gateway.spans {
        trace_families(&mut e, shards, &exporter.stats);
    }
    if let Some(w) = extra.writer {
        use std::sync::atomic::Ordering::Relaxed;
        for (name, help, v) in [
            (
                "meshgate_access_log_records_total",
                "Access log records written.",
                w.written.load(Relaxed),
            ),
            (
                "meshgate_access_log_write_errors_total",
                "Access log records lost to a failed open or write.",
                w.write_errors.load(Relaxed),
            ),
            (
                "meshgate_access_log_reopens_total",
                "Times the access log files were reopened (SIGUSR1, meshctl log reopen).",
                w.reopens.load(Relaxed),
            ),
        ] {
            e.family(name, Kind::Counter, help);
            e.sample(name, &[], v);
        }
    }
    e.finish()
}

/// The span exporter's figures: spans accepted by each collector, spans
/// dropped by reason.
fn trace_families(e: &mut Exposition, shards: &[std::sync::Arc<ShardStats>], stats: &ExportStats) {
    use std::sync::atomic::Ordering::Relaxed;
    let exported = "meshgate_trace_spans_exported_total";
    e.family(
        exported,
        Kind::Counter,
        "Spans a collector accepted, by exporter (otlp, zipkin).",
    );
    e.sample(
        exported,
        &[("exporter", "otlp")],
        stats.otlp.exported.load(Relaxed),
    );
    e.sample(
        exported,
        &[("exporter", "zipkin")],
        stats.zipkin.exported.load(Relaxed),
    );
    let dropped = "meshgate_trace_spans_dropped_total";
    e.family(
        dropped,
        Kind::Counter,
        "Spans lost, by reason: queue_full (the shard found the exporter's queue full), export_failed (every try to post their batch failed).",
    );
    let queue_full = shards.iter().map(|s| s.spans_dropped.get()).sum();
    let failed = stats.otlp.failed.load(Relaxed) + stats.zipkin.failed.load(Relaxed);
    e.sample(dropped, &[("reason", "queue_full")], queue_full);
    e.sample(dropped, &[("reason", "export_failed")], failed);
}

/// The per-listener, per-route and per-cluster families, and TLS and
/// authorization by name.
fn named_families(e: &mut Exposition, named: &NamedCounts) {
    let scopes: [(&str, &str, &std::collections::BTreeMap<String, Counts>); 3] = [
        // Listener families carry no scope word: each request is in
        // exactly one of them, so `sum(rate(meshgate_requests_total[1m]))`
        // is the gateway's request rate.
        ("meshgate", "listener", &named.listeners),
        ("meshgate_route", "route", &named.routes),
        ("meshgate_cluster", "cluster", &named.clusters),
    ];
    for (prefix, label, map) in scopes {
        let name = |suffix: &str| format!("{prefix}_{suffix}");
        let f = name("requests_total");
        e.family(
            &f,
            Kind::Counter,
            &format!("HTTP requests finished, by {label}."),
        );
        for (n, c) in map {
            e.sample(&f, &[(label, n)], c.requests);
        }
        let f = name("responses_total");
        e.family(
            &f,
            Kind::Counter,
            &format!("HTTP responses by {label}, status code and class."),
        );
        for (n, c) in map {
            for (code, count) in &c.codes {
                let code_text = code.to_string();
                let class = format!("{}xx", code / 100);
                e.sample(
                    &f,
                    &[(label, n), ("code", &code_text), ("class", &class)],
                    *count,
                );
            }
        }
        let f = name("grpc_responses_total");
        e.family(
            &f,
            Kind::Counter,
            &format!(
                "gRPC answers by {label} and grpc-status (the upstream's, or the gateway's own)."
            ),
        );
        for (n, c) in map {
            for (code, count) in &c.grpc {
                let status = dataplane::proxy::grpc::status_name(*code);
                e.sample(&f, &[(label, n), ("grpc_status", status)], *count);
            }
        }
        let f = name("received_bytes_total");
        e.family(
            &f,
            Kind::Counter,
            &format!("Request bytes read from clients (head and body), by {label}."),
        );
        for (n, c) in map {
            e.sample(&f, &[(label, n)], c.bytes_in);
        }
        let f = name("sent_bytes_total");
        e.family(
            &f,
            Kind::Counter,
            &format!("Response bytes written to clients (head and body), by {label}."),
        );
        for (n, c) in map {
            e.sample(&f, &[(label, n)], c.bytes_out);
        }
        let f = name("request_duration_seconds");
        e.family(
            &f,
            Kind::Histogram,
            &format!("Request head received to response written, by {label}."),
        );
        for (n, c) in map {
            e.histogram(&f, &[(label, n)], &c.duration);
        }
        let f = name("upstream_ttfb_seconds");
        e.family(
            &f,
            Kind::Histogram,
            &format!("Upstream time to the response head, of the try that answered, by {label}."),
        );
        for (n, c) in map {
            e.histogram(&f, &[(label, n)], &c.upstream_ttfb);
        }
    }
    e.family(
        "meshgate_tls_handshakes_total",
        Kind::Counter,
        "Completed downstream TLS handshakes by protocol version and key exchange group.",
    );
    for ((version, group), n) in &named.tls_handshakes {
        e.sample(
            "meshgate_tls_handshakes_total",
            &[("version", version), ("group", group)],
            *n,
        );
    }
    e.family(
        "meshgate_tls_handshake_failures_total",
        Kind::Counter,
        "Failed downstream TLS handshakes by reason.",
    );
    for (reason, n) in &named.tls_failures {
        e.sample(
            "meshgate_tls_handshake_failures_total",
            &[("reason", reason)],
            *n,
        );
    }
    e.family(
        "meshgate_authz_denied_total",
        Kind::Counter,
        "Requests and TCP connections refused, by the authorization rule that decided.",
    );
    for (rule, n) in &named.authz_denied {
        e.sample("meshgate_authz_denied_total", &[("rule", rule)], *n);
    }
}

/// Endpoint health, ejection and traffic.
fn endpoint_families(e: &mut Exposition, gateway: &Gateway) {
    let rows = gateway.endpoint_rows(crate::running::Latency::Skip);
    let labels = |r: &EndpointRow| (r.cluster.clone(), r.endpoint.to_string());
    type ReadEndpoint = fn(&EndpointRow) -> u64;
    let families: [(&str, Kind, &str, ReadEndpoint); 6] = [
        (
            "meshgate_endpoint_healthy",
            Kind::Gauge,
            "1 unless active health checks mark the endpoint unhealthy.",
            |r| u64::from(r.health != "unhealthy"),
        ),
        (
            "meshgate_endpoint_ejected_shards",
            Kind::Gauge,
            "Shards whose outlier detection ejects the endpoint now.",
            |r| r.ejected_shards,
        ),
        (
            "meshgate_endpoint_ejections_total",
            Kind::Counter,
            "Times shards ejected the endpoint.",
            |r| r.times_ejected,
        ),
        (
            "meshgate_endpoint_in_flight",
            Kind::Gauge,
            "Tries in flight to the endpoint now.",
            |r| r.in_flight,
        ),
        (
            "meshgate_endpoint_requests_total",
            Kind::Counter,
            "Tries sent to the endpoint.",
            |r| r.requests,
        ),
        (
            "meshgate_endpoint_failures_total",
            Kind::Counter,
            "Tries to the endpoint that failed (5xx, connect failure, reset, timeout).",
            |r| r.failures,
        ),
    ];
    for (name, kind, help, read) in families {
        e.family(name, kind, help);
        for r in &rows {
            let (cluster, endpoint) = labels(r);
            e.sample(
                name,
                &[("cluster", &cluster), ("endpoint", &endpoint)],
                read(r),
            );
        }
    }
}

/// Seconds until each certificate file expires.
fn certificate_families(e: &mut Exposition, expiries: &[Expiry]) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    e.family(
        "meshgate_certificate_expiry_seconds",
        Kind::Gauge,
        "Seconds until the certificate file expires (negative: expired); kind is cert, client_ca or trust_domain_ca.",
    );
    for x in expiries {
        let Some(not_after) = x.not_after else {
            continue;
        };
        e.sample_f64(
            "meshgate_certificate_expiry_seconds",
            &[
                ("listener", &x.listener),
                ("kind", x.kind),
                ("path", &x.path),
            ],
            (not_after - now) as f64,
        );
    }
}
