//! Where a request joins a distributed trace: its context started from
//! the request head (continued from the caller's headers or new, sampled
//! parent-based; a TCP session always starts a new one), the trace fields written into the upstream head, a span
//! id per try written into those fields in place, and — for a sampled
//! request — its server span and one client span per try handed to the
//! exporter through a bounded queue (a full queue drops and counts; the
//! shard never waits).
//!
//! Uses `telemetry::trace` (context, headers, span records) and the
//! runtime's clocks.

use std::net::SocketAddr;
use std::time::{Instant, UNIX_EPOCH};

use super::context::ShardContext;
use crate::http::RequestHead;
use crate::runtime;
use crate::telemetry::trace::{
    self, Draws, FinishedTrace, ServerSpan, SpanId, SpanSlots, TraceContext, TraceSpec, TrySpan,
};

/// One request's tracing state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestTrace {
    pub(crate) context: TraceContext,
    /// Where each try's span id goes in the upstream head.
    pub(crate) slots: SpanSlots,
    /// Its spans are recorded and exported (sampled, and an exporter is
    /// configured).
    pub(crate) records: bool,
}

/// The trace context of the request `head`, under `spec`.
pub(crate) fn start(ctx: &ShardContext, spec: &TraceSpec, head: &RequestHead<'_>) -> RequestTrace {
    let header = |name: &str| head.header(name);
    let extracted = trace::extract(spec, header);
    let forced = trace::forced(spec, header);
    begin(
        ctx,
        spec,
        TraceContext::start(spec, extracted, forced, draws(ctx)),
    )
}

/// The trace context of a TCP session: a new trace (there are no headers
/// to continue one from), sampled at the configured rate.
pub(crate) fn start_session(ctx: &ShardContext, spec: &TraceSpec) -> RequestTrace {
    begin(
        ctx,
        spec,
        TraceContext::start(spec, None, false, draws(ctx)),
    )
}

fn draws(ctx: &ShardContext) -> Draws {
    let mut rng = ctx.trace_rng.borrow_mut();
    Draws {
        sample: rng.next_u64(),
        ids: [rng.next_u64(), rng.next_u64(), rng.next_u64()],
    }
}

fn begin(ctx: &ShardContext, spec: &TraceSpec, context: TraceContext) -> RequestTrace {
    let records = context.sampled && spec.records && ctx.spans.is_some();
    RequestTrace {
        context,
        slots: SpanSlots::default(),
        records,
    }
}

impl RequestTrace {
    /// Writes the trace fields of the upstream head into `fields` (their
    /// slots relative to its start: see [`SpanSlots::shifted`]). A request
    /// whose spans are recorded names each try's span as the upstream's
    /// parent; one that is not passes the caller's span on, so the trace
    /// tree has no hole where the gateway is.
    pub(crate) fn upstream_fields(&mut self, spec: &TraceSpec, fields: &mut Vec<u8>) {
        let parent = if self.records {
            self.context.span_id
        } else {
            self.context.parent.unwrap_or(self.context.span_id)
        };
        self.slots = trace::write_headers(spec, &self.context, parent, fields);
    }
}

/// A fresh span id for a try.
pub(crate) fn try_span_id(ctx: &ShardContext) -> SpanId {
    SpanId::random(ctx.trace_rng.borrow_mut().next_u64())
}

/// Nanoseconds since the Unix epoch at `at` (a [`runtime::precise_now`]
/// instant in the past).
pub(crate) fn unix_ns(at: Instant) -> u64 {
    let ago = runtime::precise_now().saturating_duration_since(at);
    runtime::wall_clock()
        .checked_sub(ago)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos().min(u128::from(u64::MAX)) as u64)
}

/// A try's client span, from `sent` to now.
pub(crate) fn try_span(
    span_id: SpanId,
    sent: Instant,
    endpoint: SocketAddr,
    status: Option<u16>,
    error: Option<&'static str>,
) -> TrySpan {
    TrySpan {
        span_id,
        start_unix_ns: unix_ns(sent),
        end_unix_ns: unix_ns(runtime::precise_now()),
        endpoint,
        status,
        error,
    }
}

/// Hands a recorded request's spans to the exporter.
pub(crate) fn finish(
    ctx: &ShardContext,
    t: &RequestTrace,
    server: ServerSpan,
    tries: Vec<TrySpan>,
) {
    let Some(queue) = &ctx.spans else {
        return;
    };
    let spans = 1 + tries.len() as u64;
    let record = Box::new(FinishedTrace {
        trace_id: t.context.trace_id,
        server,
        tries,
    });
    if let Err(std::sync::mpsc::TrySendError::Full(_)) = queue.try_send(record) {
        ctx.stats.spans_dropped.add(spans);
    }
}
