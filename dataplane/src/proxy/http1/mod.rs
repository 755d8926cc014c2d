//! The HTTP/1.1 request loop of one downstream connection.
//!
//! Per request: read the head (`read`: header timeout; idle timeout
//! between requests) and decide it (`crate::proxy::decide`: route,
//! redirect, rate limit, fault injection, split, the cluster's
//! `max_requests` breaker) → (a small body read whole when the route
//! retries) → the tries (`crate::proxy::tries` with `upstream::H1Try`:
//! pick an endpoint, a pooled or new upstream connection within the
//! breakers, send the upstream head and the body, read the response head
//! under per-try and total timeouts, retry what the policy and the budget
//! allow) → write the client's response head from the answer's facts
//! (`respond`) → stream the response body back (`crate::proxy::forward`)
//! → return the upstream connection to the pool when both messages ended
//! cleanly.
//!
//! Bodies are never buffered whole except a `Content-Length` request body
//! up to the route's `retry.buffer_bytes`, kept to be sent again: otherwise
//! bytes flow through the two connection buffers chunk by chunk, verbatim
//! (chunked framing included). When the route retries, a copy of a
//! streamed request is kept while it stays within `retry.buffer_bytes`, so
//! a body of unknown length (chunked, or an HTTP/2 request without
//! `content-length`, as gRPC sends) that fit can still go to another try;
//! nothing is retried once response bytes went downstream.
//!
//! A pooled connection may have been closed by the upstream just as it was
//! reused; when that shows before any response byte and the request is
//! idempotent without a body, it is sent once more on a fresh connection
//! (not counted as a retry, not held against the endpoint).

mod read;
mod respond;
mod upstream;

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use self::read::{Incoming, read_request};
use self::respond::{Counted, local_response, redirect, response_head, send_continue};
use self::upstream::{Answered, H1Try};
use super::conn::ConnInfo;
use super::context::ShardContext;
use super::decide::Action;
pub use super::downstream::Downstream;
use super::error::ProxyError;
use super::forward::{Forward, MinRate, ReadPace, forward};
use super::tries::{TryRules, run_tries};
use crate::http::{BodyDecoder, BodyKind};
use crate::net::ByteStream;
use crate::route::{HttpLimits, Snapshot};
use crate::runtime::{self, BufPool, timeout};

/// What a request head said, detached from the input buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestFacts {
    pub(crate) head_len: usize,
    pub(crate) body: BodyKind,
    /// The client wants the connection kept (RFC 9112 §9.3).
    pub(crate) keep_alive: bool,
    /// An HTTP/1.0 client: keep-alive must be announced, chunked bodies
    /// cannot be kept alive.
    pub(crate) http10: bool,
    pub(crate) expect_continue: bool,
    pub(crate) is_head: bool,
    /// RFC 9110 §9.2.2: safe to send twice.
    pub(crate) idempotent: bool,
}

/// What the downstream side needs of an upstream response head, whose
/// bytes stay at the front of the upstream connection's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ResponseFacts {
    pub(crate) status: u16,
    /// Bytes of the head at the front of the buffer.
    pub(crate) head_len: usize,
    pub(crate) body: BodyKind,
    /// The upstream keeps the connection open after this response.
    pub(crate) keep_alive: bool,
    /// A gRPC request's answer carried `grpc-status` in its head (a
    /// trailers-only answer: an error before any message).
    pub(crate) grpc_status: Option<u32>,
}

/// What the connection does after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Wait for the next request.
    KeepAlive,
    /// Close cleanly (TLS close_notify, FIN).
    Close,
    /// A response was cut off: reset, no close_notify, so the client cannot
    /// take it for complete (a close-delimited body ends with a clean close).
    Abort,
}

impl Next {
    fn keep_if(keep_alive: bool) -> Next {
        if keep_alive {
            Next::KeepAlive
        } else {
            Next::Close
        }
    }
}

/// Serves requests on `down` until either side closes or an error ends it.
pub async fn serve<S: Downstream>(
    ctx: Rc<ShardContext>,
    mut snapshot: Arc<Snapshot>,
    mut down: S,
    mut conn: ConnInfo,
) {
    let mut inbuf = Vec::new();
    let mut first = true;
    loop {
        ctx.refresh(&mut snapshot);
        let Some(listener) = snapshot.listener(&conn.listener) else {
            break;
        };
        let limits = listener.limits;
        let next = match request(
            &ctx,
            &mut snapshot,
            &mut down,
            &mut inbuf,
            &mut conn,
            &limits,
            first,
        )
        .await
        {
            Ok(next) => next,
            Err(e) => {
                let at = Counted::unread(&snapshot, &conn, runtime::precise_now());
                // Answered (when there is anyone to answer), then closed.
                let _ = local_response(&ctx, &mut down, &e, false, &limits, at).await;
                Next::Close
            }
        };
        first = false;
        // An idle connection holds no buffer.
        BufPool::release_if_empty(&mut inbuf);
        match next {
            Next::KeepAlive => {}
            Next::Close => break,
            Next::Abort => {
                down.abort();
                return;
            }
        }
    }
    let _ = timeout(Duration::from_secs(1), down.close_write()).await;
}

/// Reads until `inbuf` holds `n` bytes (a whole `Content-Length` body),
/// at `pace`.
async fn read_body<S: ByteStream>(
    down: &mut S,
    inbuf: &mut Vec<u8>,
    n: usize,
    pace: ReadPace,
) -> Result<(), ProxyError> {
    while inbuf.len() < n {
        let (deadline, by_rate) = pace.deadline(inbuf.len() as u64);
        match crate::runtime::timeout_at(deadline, down.read_into(inbuf)).await {
            Ok(Ok(0)) => return Err(ProxyError::DownstreamClosed),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(ProxyError::DownstreamIo(e)),
            Err(_) if by_rate => return Err(ProxyError::SlowRequestBody),
            Err(_) => return Err(ProxyError::DownstreamTimeout),
        }
    }
    Ok(())
}

/// How a request body must arrive on this listener, from now.
fn body_pace(limits: &HttpLimits) -> ReadPace {
    ReadPace {
        idle: limits.idle_timeout,
        min_rate: (limits.min_body_rate > 0).then(|| MinRate {
            started: runtime::now(),
            grace: limits.min_body_rate_grace,
            bytes_per_s: limits.min_body_rate,
        }),
    }
}

/// Handles one request; `Err` means "answer with this error, then close".
async fn request<S: Downstream>(
    ctx: &ShardContext,
    snapshot: &mut Arc<Snapshot>,
    down: &mut S,
    inbuf: &mut Vec<u8>,
    conn: &mut ConnInfo,
    limits: &HttpLimits,
    first: bool,
) -> Result<Next, ProxyError> {
    let mut out = BufPool::take();
    let read = read_request(ctx, snapshot, down, inbuf, conn, limits, first, &mut out).await;
    let conn: &ConnInfo = conn;
    let Some(Incoming {
        facts,
        decision,
        log,
        trace,
    }) = read?
    else {
        BufPool::give(out);
        return Ok(Next::Close); // closed cleanly between requests
    };
    let started = runtime::precise_now();
    inbuf.drain(..facts.head_len);
    let snapshot: &Snapshot = snapshot;
    let mut at = Counted::unread(snapshot, conn, started);
    at.done.route = decision.route;
    at.done.bytes_in = facts.head_len as u64;
    at.done.request = log;
    let span_slots = trace.as_ref().filter(|t| t.records).map(|t| t.slots);
    at.done.trace = trace;
    ctx.stats.requests.incr();
    // Answer locally; keep the connection only if no body follows.
    let local_keep = facts.keep_alive && !facts.http10 && facts.body == BodyKind::None;
    let target = match decision.action {
        Action::Proxy(t) => t,
        Action::Redirect { status, location } => {
            BufPool::give(out);
            return redirect(ctx, down, (status, &location), local_keep, limits, at).await;
        }
        Action::Refuse(e) => {
            BufPool::give(out);
            // A caller the listener refuses may not use the connection for
            // anything: answered, then closed.
            let keep = local_keep
                && !matches!(
                    e,
                    ProxyError::Forbidden {
                        stage: crate::route::authz::Stage::Listener,
                        ..
                    }
                );
            return local_response(ctx, down, &e, keep, limits, at).await;
        }
    };
    if let Some(delay) = target.delay {
        runtime::sleep(delay).await;
    }
    let mut continue_sent = false;
    // A small body is read whole (after `100 Continue`, if asked for) and
    // sent with the head, so a retry can send it again.
    let buffered = match (target.retry, facts.body) {
        (Some(r), BodyKind::Length(n)) if r.attempts > 0 && n <= r.buffer_bytes as u64 => {
            if facts.expect_continue && inbuf.len() < n as usize {
                send_continue(down, limits).await?;
                continue_sent = true;
            }
            read_body(down, inbuf, n as usize, body_pace(limits)).await?;
            out.extend_from_slice(&inbuf[..n as usize]);
            inbuf.drain(..n as usize);
            at.done.bytes_in += n;
            true
        }
        _ => false,
    };
    let body_follows = facts.body != BodyKind::None && !buffered;
    let error_keep = facts.keep_alive && !facts.http10 && !body_follows;
    let rules = TryRules {
        cluster: target.cluster,
        hash: target.hash,
        deadline: Some(runtime::now() + target.timeout),
        retry: target.retry,
        traced: span_slots.is_some(),
    };
    let mut tries = H1Try {
        ctx,
        snapshot,
        target: &target,
        request: &facts,
        limits,
        down: &mut *down,
        inbuf: &mut *inbuf,
        out: &mut out,
        continue_sent,
        replayable: facts.body == BodyKind::None || buffered,
        body_follows,
        body_pace: body_pace(limits),
        body_streamed: 0,
        span_slots,
    };
    let answered = run_tries(ctx, snapshot, rules, &mut tries, &mut at.done.tries).await;
    at.done.bytes_in += tries.body_streamed;
    BufPool::give(out);
    let Answered {
        mut up,
        guard: conn_guard,
        mut upbuf,
        response,
        addr,
    } = match answered {
        Ok(a) => a,
        Err(e) => {
            // A gRPC caller gets (and is counted with) the mapped status.
            if target.grpc {
                at.done.grpc_status = Some(super::error::grpc_status(
                    e.label(),
                    e.status().unwrap_or(502),
                ));
            }
            return local_response(ctx, down, &e, error_keep, limits, at).await;
        }
    };
    let edits = snapshot
        .listeners
        .get(target.listener)
        .and_then(|l| l.routes.get(target.route))
        .map(|r| &r.response_headers)
        .filter(|e| !e.is_empty());
    let mut head = BufPool::take();
    let client = (facts.is_head, facts.keep_alive, facts.http10);
    let down_keep_alive = match response_head(
        &response,
        &mut upbuf,
        client,
        ctx.is_draining(),
        edits,
        &mut head,
    ) {
        Ok(keep) => keep,
        Err(e) => {
            BufPool::give(head);
            BufPool::give(upbuf);
            return local_response(ctx, down, &e, false, limits, at).await;
        }
    };
    // The head goes out with the first body bytes.
    let mut decoder = BodyDecoder::new(response.body);
    let (r, head_buf, written) = forward(
        &mut up,
        &mut upbuf,
        &mut decoder,
        down,
        head,
        ReadPace::idle(target.timeout),
        limits.idle_timeout,
        None,
    )
    .await;
    BufPool::give(head_buf);
    match r {
        Ok(()) => {
            if target.grpc {
                // In the head (trailers-only), else in the trailers.
                at.done.grpc_status = response.grpc_status.or_else(|| up.grpc_status());
            }
            at.count(ctx, Some(response.status), written);
            let micros = started.elapsed().as_micros().min(u64::MAX as u128) as u64;
            let _ = ctx.latency.borrow_mut().record(micros.max(1));
            // An HTTP/1.1 connection goes back to the pool; an HTTP/2
            // stream just ends (its connection stays with its driver).
            if response.keep_alive
                && upbuf.is_empty()
                && let (Some(mut conn), Some(conn_guard)) = (up.into_conn(), conn_guard)
            {
                let now = runtime::now();
                conn.release_buffers();
                ctx.upstreams
                    .borrow_mut()
                    .put(addr, (conn, conn_guard), now, target.pool_max_idle);
            }
            BufPool::give(upbuf);
            Ok(Next::keep_if(down_keep_alive))
        }
        // Broken upstream framing seen before anything went downstream:
        // still a clean 502.
        Err(Forward::Invalid(e)) if written == 0 => {
            BufPool::give(upbuf);
            let e = ProxyError::BadResponse(e);
            local_response(ctx, down, &e, false, limits, at)
                .await
                .map(|_| Next::Close)
        }
        // The upstream died mid-body or sent broken framing after bytes went
        // downstream: close the downstream connection so the client sees a
        // truncated message, never a complete-looking one.
        Err(e) => {
            BufPool::give(upbuf);
            if written > 0 {
                at.count(ctx, Some(response.status), written);
            }
            log::debug!("shard {}: response body from {addr} aborted: {e:?}", ctx.id);
            Ok(Next::Abort)
        }
    }
}
