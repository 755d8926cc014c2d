//! Where a finished request or TCP session is counted and logged: the
//! per-name counters and histograms the admin endpoint exports and, on a
//! listener with an `access_log`, one [`AccessRecord`] rendered into the
//! shard's batch for the writer thread, which takes the batches through a
//! bounded queue (a full queue drops a batch and counts its records; the
//! shard never waits on a disk).
//!
//! Uses `telemetry` (counters, records), [`super::tries`] (what the tries
//! did) and the runtime's clocks.

use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use super::conn::ConnInfo;
use super::context::ShardContext;
use super::decide::RouteRef;
use super::tracing::{self, RequestTrace};
use super::tries::TriesReport;
use crate::http::RequestHead;
use crate::route::Snapshot;
use crate::runtime;
use crate::telemetry::Outcome;
use crate::telemetry::access_log::{AccessRecord, traceparent_trace_id};
use crate::telemetry::trace::{ServerSpan, TraceId};

/// What the access log (and a span) needs of a request head, copied
/// before the head's bytes leave the buffer (only on listeners that log,
/// or for a recorded trace): one buffer holding the method, authority,
/// path, request id and trace id back to back.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct RequestLog {
    text: String,
    /// Where each part ends in `text` (`None`: absent), in the order of
    /// [`RequestLog::METHOD`] and the others.
    ends: [Option<u32>; 5],
    pub(crate) protocol: &'static str,
}

impl RequestLog {
    const METHOD: usize = 0;
    const AUTHORITY: usize = 1;
    const PATH: usize = 2;
    const REQUEST_ID: usize = 3;
    const TRACE_ID: usize = 4;

    /// The log's view of `head`, routed on `path`; `request_id` is the id
    /// sent upstream (`None`: the client's own, if it sent one), `trace_id`
    /// the request's trace (`None`: the client's `traceparent`'s, if any).
    pub(crate) fn of(
        head: &RequestHead<'_>,
        path: &str,
        request_id: Option<&str>,
        trace_id: Option<TraceId>,
    ) -> RequestLog {
        let text = |name: &str| {
            head.header(name)
                .and_then(|v| std::str::from_utf8(v).ok())
                .filter(|v| !v.is_empty())
        };
        let request_id = request_id.or_else(|| text("x-request-id"));
        let digits = trace_id.map(|t| t.hex_digits());
        let trace_id = match &digits {
            // Hex digits are ASCII.
            Some(d) => std::str::from_utf8(d).ok(),
            None => text("traceparent").and_then(traceparent_trace_id),
        };
        let parts = [
            Some(head.method),
            head.host,
            Some(path),
            request_id,
            trace_id,
        ];
        let mut log = RequestLog {
            text: String::with_capacity(parts.iter().flatten().map(|p| p.len()).sum()),
            ends: [None; 5],
            protocol: if head.minor_version == 0 {
                "HTTP/1.0"
            } else {
                "HTTP/1.1"
            },
        };
        for (end, part) in log.ends.iter_mut().zip(parts) {
            if let Some(part) = part {
                log.text.push_str(part);
                *end = u32::try_from(log.text.len()).ok();
            }
        }
        log
    }

    fn part(&self, which: usize) -> Option<&str> {
        let end = self.ends[which]? as usize;
        let start = self.ends[..which]
            .iter()
            .rev()
            .find_map(|e| *e)
            .unwrap_or(0) as usize;
        self.text.get(start..end)
    }

    pub(crate) fn method(&self) -> &str {
        self.part(Self::METHOD).unwrap_or_default()
    }

    pub(crate) fn authority(&self) -> Option<&str> {
        self.part(Self::AUTHORITY)
    }

    pub(crate) fn path(&self) -> &str {
        self.part(Self::PATH).unwrap_or_default()
    }

    pub(crate) fn request_id(&self) -> Option<&str> {
        self.part(Self::REQUEST_ID)
    }

    pub(crate) fn trace_id(&self) -> Option<&str> {
        self.part(Self::TRACE_ID)
    }
}

/// One finished request (or TCP session).
#[derive(Debug)]
pub(crate) struct Finished<'a> {
    pub(crate) conn: &'a ConnInfo,
    /// The route and cluster, once it was routed.
    pub(crate) route: Option<RouteRef>,
    /// When the head (or the connection) arrived, by
    /// [`runtime::precise_now`].
    pub(crate) started: Instant,
    /// `None`: nothing was answered.
    pub(crate) status: Option<u16>,
    /// A gRPC request's answer: the `grpc-status` the caller got.
    pub(crate) grpc_status: Option<u32>,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    pub(crate) tries: TriesReport,
    /// The gateway's error label, when the gateway ended it.
    pub(crate) error: Option<&'static str>,
    /// The authorization rule that refused it.
    pub(crate) rule: Option<Arc<str>>,
    /// `None` for a TCP session, or a request refused before its head was
    /// read whole.
    pub(crate) request: Option<Box<RequestLog>>,
    /// Its trace, when `[tracing]` is on.
    pub(crate) trace: Option<RequestTrace>,
}

fn micros(d: Duration) -> u64 {
    d.as_micros().min(u64::MAX as u128) as u64
}

/// Counts a finished HTTP request (totals, and by listener, route and
/// cluster), then logs it.
pub(crate) fn request_finished(ctx: &ShardContext, snapshot: &Snapshot, f: Finished<'_>) {
    if let Some(s) = f.status {
        ctx.stats.response(s);
    }
    let duration = count(ctx, snapshot, &f, f.tries.ttfb, f.status.is_none());
    let mut f = f;
    if let Some(t) = f.trace.take().filter(|t| t.records) {
        export_spans(ctx, snapshot, &mut f, &t);
    }
    log(ctx, snapshot, f, duration);
}

/// Hands a recorded request's server span and try spans to the exporter.
fn export_spans(ctx: &ShardContext, snapshot: &Snapshot, f: &mut Finished<'_>, t: &RequestTrace) {
    let (route, cluster) = match names(snapshot, &f.conn.listener, f.route) {
        Some((r, c)) => (Some(r.to_owned()), Some(c.to_owned())),
        None => (None, None),
    };
    let request = f.request.as_deref();
    let server = ServerSpan {
        span_id: t.context.span_id,
        parent: t.context.parent,
        start_unix_ns: tracing::unix_ns(f.started),
        end_unix_ns: tracing::unix_ns(runtime::precise_now()),
        method: request.map(|r| r.method().to_owned()).unwrap_or_default(),
        path: request.map(|r| r.path().to_owned()).unwrap_or_default(),
        authority: request.and_then(|r| r.authority().map(str::to_owned)),
        // No request facts: a TCP session (an HTTP request has them
        // whenever it has a trace).
        protocol: request.map_or("TCP", |r| r.protocol),
        listener: f.conn.listener.to_string(),
        route,
        cluster,
        status: f.status,
        error: f.error,
        spiffe_id: f.conn.spiffe_id.as_deref().map(str::to_owned),
        client: f.conn.peer,
    };
    tracing::finish(ctx, t, server, std::mem::take(&mut f.tries.spans));
}

/// Counts a finished TCP session by listener, route and cluster (as a
/// request without a status: its duration is the session's, an error
/// label makes it failed), hands its spans to the exporter when it was
/// sampled, then logs it. Its bytes are also counted by the
/// relay.
pub(crate) fn session_finished(ctx: &ShardContext, snapshot: &Snapshot, f: Finished<'_>) {
    let duration = count(ctx, snapshot, &f, None, f.error.is_some());
    let mut f = f;
    if let Some(t) = f.trace.take().filter(|t| t.records) {
        export_spans(ctx, snapshot, &mut f, &t);
    }
    log(ctx, snapshot, f, duration);
}

/// Counts `f` by listener, route and cluster, with the upstream's time to
/// first byte `ttfb` (`failed`: as an error without a status); returns
/// how long it took.
fn count(
    ctx: &ShardContext,
    snapshot: &Snapshot,
    f: &Finished<'_>,
    ttfb: Option<Duration>,
    failed: bool,
) -> Duration {
    let duration = runtime::precise_now().saturating_duration_since(f.started);
    let outcome = Outcome {
        status: f.status,
        grpc_status: f.grpc_status,
        bytes_in: f.bytes_in,
        bytes_out: f.bytes_out,
        duration_us: Some(micros(duration).max(1)),
        upstream_ttfb_us: ttfb.map(|d| micros(d).max(1)),
        failed,
    };
    let routed = routed(snapshot, &f.conn.listener, f.route);
    let mut named = ctx.named.borrow_mut();
    named.record(&f.conn.listener, routed.map(|(r, c, _)| (r, c)), &outcome);
    if let Some((route, cluster, true)) = routed {
        named.record_split(route, cluster, &outcome);
    }
    duration
}

/// The route's and the cluster's names.
fn names<'s>(
    snapshot: &'s Snapshot,
    listener: &str,
    route: Option<RouteRef>,
) -> Option<(&'s str, &'s str)> {
    routed(snapshot, listener, route).map(|(r, c, _)| (r, c))
}

/// The route's and the cluster's names, and whether the route splits its
/// traffic over clusters.
fn routed<'s>(
    snapshot: &'s Snapshot,
    listener: &str,
    route: Option<RouteRef>,
) -> Option<(&'s str, &'s str, bool)> {
    let (index, cluster) = route?;
    let r = snapshot.listener(listener)?.routes.get(index)?;
    Some((
        r.name.as_str(),
        snapshot.cluster(cluster).name.as_str(),
        matches!(r.target, crate::route::RouteTarget::Split(_)),
    ))
}

/// Renders `f` into the shard's batch for its listener's access log, if
/// it logs and the sampling keeps it (a full batch goes to the writer).
fn log(ctx: &ShardContext, snapshot: &Snapshot, f: Finished<'_>, duration: Duration) {
    if ctx.access_log.is_none() {
        return;
    }
    let Some(spec) = snapshot
        .listener(&f.conn.listener)
        .and_then(|l| l.access_log.as_deref())
    else {
        return;
    };
    let draw = ctx.traffic.borrow_mut().random();
    if !spec.logs(f.status, draw) {
        return;
    }
    let started_wall = ctx
        .wall_time(f.started)
        .duration_since(UNIX_EPOCH)
        .map_or(0, micros);
    let (route, cluster) = names(snapshot, &f.conn.listener, f.route).unzip();
    let request = f.request.as_deref();
    let record = AccessRecord {
        format: &spec.format,
        start_unix_us: started_wall,
        duration_us: micros(duration),
        request_id: request.and_then(RequestLog::request_id),
        trace_id: request.and_then(RequestLog::trace_id),
        spiffe_id: f.conn.spiffe_id.as_deref(),
        client: f.conn.peer,
        listener: &f.conn.listener,
        route,
        cluster,
        endpoint: f.tries.endpoint,
        method: request.map_or("", RequestLog::method),
        authority: request.and_then(RequestLog::authority),
        path: request.map_or("", RequestLog::path),
        protocol: request.map_or("TCP", |r| r.protocol),
        status: f.status,
        error: f.error,
        authz_rule: f.rule.as_deref(),
        bytes_in: f.bytes_in,
        bytes_out: f.bytes_out,
        upstream_ttfb_us: f.tries.ttfb.map(micros),
        attempts: f.tries.attempts,
        tls_version: f.conn.tls.map(|t| t.0),
        tls_cipher: f.conn.tls.map(|t| t.1),
        sni: f.conn.sni.as_deref(),
    };
    let full = ctx.access_batches.borrow_mut().push(&spec.path, &record);
    if let Some(batch) = full {
        ctx.send_access_batch(batch);
    }
}
