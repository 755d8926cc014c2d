//! Reading one HTTP/1.1 request head from the client, under the header
//! timeout (and, between requests, the idle timeout, a drain or the
//! listener's removal), then deciding it while the head is at hand: the
//! decision, the request's facts, and — when it is proxied — the upstream
//! head, written before the head's bytes leave the buffer.
//!
//! Uses `http` (parsing), [`crate::proxy::decide`], [`super::upstream`]
//! (the upstream head) and the runtime's clock and timers.

use std::sync::Arc;
use std::time::Instant;

use super::RequestFacts;
use super::upstream::write_request_head;
use crate::http::{self, HttpError, Limits, Parse};
use crate::net::ByteStream;
use crate::proxy::conn::ConnInfo;
use crate::proxy::context::ShardContext;
use crate::proxy::decide::{Action, Decision, RequestView, decide};
use crate::proxy::error::ProxyError;
use crate::proxy::observe::RequestLog;
use crate::proxy::tracing::{self, RequestTrace};
use crate::route::{HttpLimits, Snapshot, Underscores};
use crate::runtime::{self, Either, first_of, timeout, timeout_at};

/// A request read and decided.
pub(super) struct Incoming {
    pub(super) facts: RequestFacts,
    pub(super) decision: Decision,
    /// The head's facts for the access log, on a listener that logs.
    pub(super) log: Option<Box<RequestLog>>,
    /// Its trace, when `[tracing]` is on.
    pub(super) trace: Option<RequestTrace>,
}

/// Reads until a full request head is buffered, then decides it and (when
/// proxied) writes its upstream head into `upstream_head`. `Ok(None)`: the
/// client closed (or idled out) between requests.
#[allow(clippy::too_many_arguments)]
pub(super) async fn read_request<S: ByteStream>(
    ctx: &ShardContext,
    snapshot: &mut Arc<Snapshot>,
    down: &mut S,
    inbuf: &mut Vec<u8>,
    conn: &mut ConnInfo,
    limits: &HttpLimits,
    first: bool,
    upstream_head: &mut Vec<u8>,
) -> Result<Option<Incoming>, ProxyError> {
    let parse_limits = Limits {
        max_head_bytes: limits.max_header_bytes,
    };
    // The header timeout runs from the connection's start (first request)
    // or from the first byte of the head (later requests).
    let mut head_deadline: Option<Instant> = if first || !inbuf.is_empty() {
        Some(runtime::now() + limits.header_timeout)
    } else {
        None
    };
    let mut scanner = http::HeadScanner::default();
    loop {
        if !inbuf.is_empty() && scanner.should_parse(inbuf, &parse_limits) {
            match http::parse_request(inbuf, &parse_limits) {
                Ok(Parse::Complete(head)) => {
                    if head.headers().count() > limits.max_header_count {
                        return Err(ProxyError::BadRequest(HttpError::TooManyHeaders));
                    }
                    if limits.underscores == Underscores::Reject
                        && head.headers().any(|(name, _)| name.contains('_'))
                    {
                        return Err(ProxyError::BadRequest(HttpError::UnderscoreInHeaderName));
                    }
                    // Routing, authorization and the upstream all see the
                    // normalised path.
                    let normal = http::path::normalize(head.path, limits.paths)
                        .map_err(|e| ProxyError::BadRequest(HttpError::InvalidPath(e)))?;
                    // Route with the snapshot current now that the request
                    // is here (the connection may have idled across swaps).
                    ctx.refresh(snapshot);
                    // At this request boundary: a certificate revoked by a
                    // reload ends the connection, unanswered (the rules are
                    // looked at for every request anyway).
                    if crate::proxy::recheck::recheck(ctx, snapshot, conn, false).is_err() {
                        return Ok(None);
                    }
                    let path = normal.as_deref();
                    return Ok(Some(decide_head(
                        ctx,
                        snapshot,
                        &head,
                        path,
                        conn,
                        upstream_head,
                    )));
                }
                Ok(Parse::Partial) => {}
                Err(e) => return Err(ProxyError::BadRequest(e)),
            }
        }
        let read = match head_deadline {
            Some(deadline) => match timeout_at(deadline, down.read_into(inbuf)).await {
                Ok(r) => r,
                Err(_) => {
                    ctx.stats.header_timeouts.incr();
                    return Err(ProxyError::HeaderTimeout);
                }
            },
            // Idle between requests: close quietly on the idle timeout, or
            // at once when the shard starts draining or the listener is
            // removed.
            None => {
                let idle = timeout(limits.idle_timeout, down.read_into(inbuf));
                match first_of(idle, ctx.idle_wakeup(conn.listener.clone())).await {
                    Either::First(Ok(r)) => r,
                    Either::First(Err(_)) => {
                        ctx.stats.idle_timeouts.incr();
                        return Ok(None);
                    }
                    Either::Second(()) => return Ok(None),
                }
            }
        };
        match read {
            Ok(0) if inbuf.is_empty() => return Ok(None),
            Ok(0) => return Err(ProxyError::DownstreamClosed),
            Ok(_) => {
                if head_deadline.is_none() {
                    head_deadline = Some(runtime::now() + limits.header_timeout);
                }
            }
            Err(e) => return Err(ProxyError::DownstreamIo(e)),
        }
    }
}

/// Decides a parsed head (its path normalised to `path`, when that
/// changed it) and writes its upstream form.
fn decide_head(
    ctx: &ShardContext,
    snapshot: &Snapshot,
    head: &http::RequestHead<'_>,
    path: Option<&str>,
    conn: &ConnInfo,
    upstream_head: &mut Vec<u8>,
) -> Incoming {
    let facts = RequestFacts {
        head_len: head.head_len,
        body: head.body,
        // A draining shard answers what it has, then closes.
        keep_alive: head.keep_alive && !ctx.is_draining(),
        http10: head.minor_version == 0,
        expect_continue: head.expect_continue,
        is_head: head.method == "HEAD",
        idempotent: matches!(
            head.method,
            "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
        ),
    };
    let view = RequestView {
        method: head.method,
        host: head.host,
        path: path.unwrap_or(head.path),
        target: head.target,
        headers: head,
    };
    let decision = {
        let mut traffic = ctx.traffic.borrow_mut();
        decide(snapshot, &mut traffic, &view, conn, runtime::now())
    };
    ctx.count_decision(&decision, snapshot, &conn.listener);
    let mut trace = snapshot
        .tracing
        .as_deref()
        .map(|spec| tracing::start(ctx, spec, head));
    // The head's facts are kept for an access log line or a span.
    let logs = snapshot
        .listener(&conn.listener)
        .is_some_and(|l| l.access_log.is_some())
        || trace.as_ref().is_some_and(|t| t.records);
    let mut sent_id = None;
    match &decision.action {
        Action::Proxy(target) => {
            let request_id = ctx.request_ids.next();
            let id = request_id.as_str();
            let (t, out) = (trace.as_mut(), &mut *upstream_head);
            let kept = write_request_head(snapshot, head, path, target, conn, id, t, out);
            if logs && !(kept && head.header("x-request-id").is_some()) {
                sent_id = Some(request_id);
            }
        }
        // The rule is named in the log, never in the response.
        Action::Refuse(e @ ProxyError::Forbidden { .. }) => log::info!(
            "listener {:?}: {} {} from {} ({}) refused: {e}",
            conn.listener,
            head.method,
            path.unwrap_or(head.path),
            conn.peer,
            conn.spiffe_id.as_deref().unwrap_or("no identity"),
        ),
        _ => {}
    }
    let log = logs.then(|| {
        let path = path.unwrap_or(head.path);
        let trace_id = trace.as_ref().map(|t| t.context.trace_id);
        let mut log = RequestLog::of(head, path, sent_id.as_ref().map(|id| id.as_str()), trace_id);
        if conn.http2 {
            log.protocol = "HTTP/2";
        }
        Box::new(log)
    });
    Incoming {
        facts,
        decision,
        log,
        trace,
    }
}
