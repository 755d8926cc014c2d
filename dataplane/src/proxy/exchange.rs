//! One request's exchange with its cluster: the retry loop
//! ([`send_with_retries`]), one try ([`try_once`]: a pooled or new upstream
//! connection within the cluster's breakers, the request, the response
//! head), and how a failed try is classified for the retry policy and
//! outlier detection ([`TryFailed`]).

use std::net::SocketAddr;
use std::time::Instant;

use super::error::ProxyError;
use super::http1::{Forward, Plan, Target, forward, send_continue};
use super::shard::ShardContext;
use super::traffic::{GaugeGuard, PickInput};
use crate::http::{self, BodyDecoder, BodyKind, HeaderEdits, HttpError, Limits, Parse};
use crate::net::{ByteStream, Plain};
use crate::route::{ClusterId, HttpLimits, Snapshot};
use crate::runtime::{self, BufPool, TcpStream, timeout, timeout_at};
use crate::upstream::retry::{Failure, backoff};

/// How one try to an endpoint ended without a usable response.
pub(super) struct TryFailed {
    error: ProxyError,
    /// The retry class, `None` for failures that are never retried.
    failure: Option<Failure>,
    /// The endpoint is to blame (outlier detection).
    endpoint_fault: bool,
    /// The try used a pooled connection and got no response byte on it.
    silent_reused: bool,
}

impl TryFailed {
    fn new(error: ProxyError, silent_reused: bool) -> TryFailed {
        let (failure, endpoint_fault) = match &error {
            ProxyError::ConnectFailed { .. } | ProxyError::ConnectTimeout(_) => {
                (Some(Failure::ConnectFailure), true)
            }
            ProxyError::UpstreamClosed | ProxyError::UpstreamIo(_) => (Some(Failure::Reset), true),
            ProxyError::UpstreamTimeout => (Some(Failure::Timeout), true),
            ProxyError::BadResponse(_) => (None, true),
            _ => (None, false),
        };
        TryFailed {
            error,
            failure,
            endpoint_fault,
            silent_reused,
        }
    }
}

/// A try that got a response head.
pub(super) struct TryOk {
    pub(super) up: Plain<TcpStream>,
    pub(super) guard: GaugeGuard,
    pub(super) upbuf: Vec<u8>,
    pub(super) response: Response,
    pub(super) addr: SocketAddr,
}

/// What one try needs from the request.
struct TrySend<'a, S> {
    down: &'a mut S,
    inbuf: &'a mut Vec<u8>,
    plan: &'a Plan,
    limits: &'a HttpLimits,
    /// The upstream request head (and the buffered body); handed back
    /// after the send so a retry can send it again.
    out: &'a mut Vec<u8>,
    continue_sent: &'a mut bool,
    /// The body streams from the client after `out`.
    body_follows: bool,
    try_deadline: Instant,
    response_edits: Option<&'a HeaderEdits>,
}

/// One try: a connection to `addr`, the request, the response head.
async fn try_once<S: ByteStream>(
    ctx: &ShardContext,
    snapshot: &Snapshot,
    target: &Target,
    addr: SocketAddr,
    fresh: bool,
    t: TrySend<'_, S>,
) -> Result<TryOk, TryFailed> {
    let (conn, guard, reused) = upstream(ctx, snapshot, target, addr, fresh)
        .await
        .map_err(|e| TryFailed::new(e, false))?;
    let mut up = Plain(conn);
    let fail = |e: ProxyError, upbuf: &[u8]| TryFailed::new(e, reused && upbuf.is_empty());
    // `100 Continue` once the upstream is there (a client waiting for it
    // must not be kept waiting on a body we cannot deliver).
    if t.body_follows && t.plan.expect_continue && !*t.continue_sent && t.inbuf.is_empty() {
        send_continue(t.down, t.limits)
            .await
            .map_err(|e| TryFailed::new(e, false))?;
        *t.continue_sent = true;
    }
    let buf = std::mem::take(t.out);
    if !t.body_follows {
        match timeout_at(t.try_deadline, up.write_owned(buf)).await {
            Ok((r, back)) => {
                *t.out = back;
                r.map_err(|e| fail(ProxyError::UpstreamIo(e), &[]))?;
            }
            // The buffer went with the cancelled write: no resend.
            Err(_) => return Err(TryFailed::new(ProxyError::UpstreamTimeout, false)),
        }
    } else {
        let mut decoder = BodyDecoder::new(t.plan.body);
        let (r, back, _) = forward(
            t.down,
            t.inbuf,
            &mut decoder,
            &mut up,
            buf,
            t.limits.idle_timeout,
            target.timeout,
        )
        .await;
        *t.out = back;
        // The body went (partly) upstream: never sent twice.
        t.out.clear();
        let error = match r {
            Ok(()) => None,
            Err(Forward::Invalid(e)) => Some(ProxyError::BadRequest(e)),
            Err(Forward::ReadIo(e)) => Some(ProxyError::DownstreamIo(e)),
            Err(Forward::ReadEof) => Some(ProxyError::DownstreamClosed),
            Err(Forward::ReadTimeout) => Some(ProxyError::DownstreamTimeout),
            Err(Forward::WriteIo(e)) => Some(ProxyError::UpstreamIo(e)),
            Err(Forward::WriteTimeout) => Some(ProxyError::UpstreamTimeout),
        };
        if let Some(e) = error {
            return Err(TryFailed::new(e, false));
        }
    }
    let mut upbuf = BufPool::take();
    let mut head = BufPool::take();
    match read_response_head(
        ctx,
        &mut up,
        &mut upbuf,
        (t.plan.is_head, t.plan.keep_alive, t.plan.http10),
        t.try_deadline,
        t.response_edits,
        &mut head,
    )
    .await
    {
        Ok(mut response) => {
            response.head = head;
            Ok(TryOk {
                up,
                guard,
                upbuf,
                response,
                addr,
            })
        }
        Err(e) => {
            let failed = fail(e, &upbuf);
            BufPool::give(upbuf);
            BufPool::give(head);
            Err(failed)
        }
    }
}

/// What the tries of one request share.
pub(super) struct Tries<'a> {
    pub(super) target: &'a Target,
    pub(super) plan: &'a Plan,
    pub(super) limits: &'a HttpLimits,
    /// The request can be sent again (no body, or a buffered one in `out`).
    pub(super) replayable: bool,
    /// The body streams from the client after `out`.
    pub(super) body_follows: bool,
}

/// Sends the request to endpoints of its cluster until one answers or the
/// route's retry policy gives up: picks an endpoint (avoiding the one that
/// just failed), tries it, records the outcome (outlier detection, latency),
/// and retries what the policy, the time left and the cluster's retry
/// budget allow, after a backoff. `Ok`: a response head to forward (which
/// may be a retriable status whose retries ran out); `Err`: the last try's
/// error, to answer locally.
pub(super) async fn send_with_retries<S: ByteStream>(
    ctx: &ShardContext,
    snapshot: &Snapshot,
    tries: Tries<'_>,
    down: &mut S,
    inbuf: &mut Vec<u8>,
    out: &mut Vec<u8>,
    mut continue_sent: bool,
) -> Result<TryOk, ProxyError> {
    let Tries {
        target,
        plan,
        limits,
        replayable,
        body_follows,
    } = tries;
    let deadline = runtime::now() + target.timeout;
    let cluster_index = target.cluster.0 as usize;
    let response_edits = snapshot
        .listeners
        .get(target.listener)
        .and_then(|l| l.routes.get(target.route))
        .map(|r| &r.response_headers)
        .filter(|e| !e.is_empty());

    let mut retries = 0u32;
    let mut avoid = None;
    let mut fresh = false;
    let mut resent_dead = false;
    let mut retrying: Option<GaugeGuard> = None;
    loop {
        let now = runtime::now();
        let picked = ctx.traffic.borrow_mut().pick(
            snapshot,
            target.cluster,
            PickInput {
                hash: target.hash,
                avoid,
            },
            now,
        );
        let Some(endpoint) = picked else {
            let e = ProxyError::NoEndpoint(snapshot.cluster(target.cluster).name.clone());
            return Err(e);
        };
        let addr = snapshot.cluster(target.cluster).endpoints[endpoint];
        let _try = ctx.traffic.borrow().clusters[cluster_index].endpoint[endpoint]
            .in_flight
            .enter();
        let try_deadline = match target.retry.and_then(|r| r.per_try_timeout) {
            Some(per_try) => deadline.min(now + per_try),
            None => deadline,
        };
        let send = TrySend {
            down: &mut *down,
            inbuf: &mut *inbuf,
            plan,
            limits,
            out: &mut *out,
            continue_sent: &mut continue_sent,
            body_follows,
            try_deadline,
            response_edits,
        };
        let outcome = try_once(ctx, snapshot, target, addr, fresh, send).await;
        fresh = false;
        // What went wrong, as the retry policy sees it.
        let failure = match &outcome {
            Ok(ok) => {
                let status = ok.response.status;
                let end = runtime::now();
                ctx.traffic.borrow_mut().record(
                    snapshot,
                    target.cluster,
                    endpoint,
                    status >= 500,
                    end.saturating_duration_since(now),
                    end,
                );
                Some(Failure::Status(status))
            }
            Err(TryFailed {
                error,
                failure,
                endpoint_fault,
                silent_reused,
            }) => {
                // A pooled connection the upstream had just closed: resend
                // once on a new one (not a retry; the endpoint is fine).
                if *silent_reused
                    && !resent_dead
                    && plan.body == BodyKind::None
                    && plan.idempotent
                    && *failure == Some(Failure::Reset)
                {
                    resent_dead = true;
                    fresh = true;
                    continue;
                }
                match error {
                    ProxyError::UpstreamTimeout if try_deadline < deadline => {
                        ctx.stats.per_try_timeouts.incr()
                    }
                    ProxyError::UpstreamTimeout => ctx.stats.request_timeouts.incr(),
                    ProxyError::ConnectTimeout(_) => ctx.stats.connect_timeouts.incr(),
                    _ => {}
                }
                if *endpoint_fault {
                    let end = runtime::now();
                    ctx.traffic.borrow_mut().record(
                        snapshot,
                        target.cluster,
                        endpoint,
                        true,
                        end.saturating_duration_since(now),
                        end,
                    );
                }
                *failure
            }
        };
        // Retry when the route asks for it, the request can be sent again,
        // tries and time remain, and the cluster's retry budget allows.
        let policy = target.retry.filter(|p| {
            failure.is_some_and(|f| p.on.retries(f))
                && replayable
                && !out.is_empty()
                && retries < p.attempts
                && runtime::now() < deadline
        });
        let admitted = policy.is_some()
            && (retrying.is_some() || {
                let traffic = ctx.traffic.borrow();
                let state = &traffic.clusters[cluster_index];
                let cluster_limits = snapshot.cluster(target.cluster).limits;
                let active = state.active_requests.get();
                let in_retry = state.active_retries.get();
                let allowed = in_retry < traffic.share(cluster_limits.max_retries)
                    && cluster_limits.retry_budget.allows(active, in_retry);
                if allowed {
                    retrying = Some(state.active_retries.enter());
                } else {
                    ctx.stats.retry_overflows.incr();
                }
                allowed
            });
        let (Some(policy), true) = (policy, admitted) else {
            // The last answer stands: a response (even a retriable status)
            // or the error of the last try.
            return outcome.map_err(|failed| failed.error);
        };
        // The failed try's connection (and any response) is dropped here.
        drop(outcome);
        let random = ctx.traffic.borrow_mut().random();
        let wait = backoff(retries, policy.backoff_base, policy.backoff_max, random);
        runtime::sleep_until((runtime::now() + wait).min(deadline)).await;
        retries += 1;
        ctx.stats.retries.incr();
        avoid = Some(endpoint);
    }
}

/// A pooled connection to `addr` (unless `fresh`), or a new one within the
/// cluster's `max_connections` and `max_pending` breakers.
async fn upstream(
    ctx: &ShardContext,
    snapshot: &Snapshot,
    target: &Target,
    addr: SocketAddr,
    fresh: bool,
) -> Result<(TcpStream, GaugeGuard, bool), ProxyError> {
    if !fresh {
        let pooled = ctx
            .upstreams
            .borrow_mut()
            .take(addr, runtime::now(), target.pool_idle, |c| {
                !c.0.has_unread_input()
            });
        if let Some((conn, guard)) = pooled {
            ctx.stats.upstream_reused.incr();
            return Ok((conn, guard, true));
        }
    }
    connect_within_breakers(ctx, snapshot, target.cluster, addr, target.connect_timeout)
        .await
        .map(|(conn, guard)| (conn, guard, false))
}

/// A new connection to endpoint `addr` of cluster `id`, within the
/// cluster's `max_connections` and `max_pending` breakers; the guard counts
/// it as open until dropped.
pub(super) async fn connect_within_breakers(
    ctx: &ShardContext,
    snapshot: &Snapshot,
    id: ClusterId,
    addr: SocketAddr,
    connect_timeout: std::time::Duration,
) -> Result<(TcpStream, GaugeGuard), ProxyError> {
    let cluster = snapshot.cluster(id);
    let (connections, pending) = {
        let traffic = ctx.traffic.borrow();
        let state = &traffic.clusters[id.0 as usize];
        let overloaded = |limit: &'static str| {
            ctx.stats.overloaded.incr();
            Err(ProxyError::Overloaded {
                cluster: cluster.name.clone(),
                limit,
            })
        };
        if state.connections.get() >= traffic.share(cluster.limits.max_connections) {
            return overloaded("max_connections");
        }
        if state.pending.get() >= traffic.share(cluster.limits.max_pending) {
            return overloaded("max_pending");
        }
        (state.connections.clone(), state.pending.clone())
    };
    let _pending = pending.enter();
    ctx.stats.upstream_connects.incr();
    match timeout(connect_timeout, TcpStream::connect(addr)).await {
        Ok(Ok(conn)) => Ok((conn, connections.enter())),
        Ok(Err(source)) => {
            ctx.stats.upstream_connect_failures.incr();
            Err(ProxyError::ConnectFailed { addr, source })
        }
        Err(_) => {
            ctx.stats.upstream_connect_failures.incr();
            Err(ProxyError::ConnectTimeout(addr))
        }
    }
}

/// The parts of the response head the loop needs after it is written.
pub(super) struct Response {
    /// The downstream response head, written.
    pub(super) head: Vec<u8>,
    pub(super) status: u16,
    pub(super) body: BodyKind,
    pub(super) upstream_keep_alive: bool,
    /// Whether the head written downstream keeps the connection open.
    pub(super) downstream_keep_alive: bool,
}

/// Reads the upstream response head (skipping interim 1xx responses) and
/// writes the downstream head into `out` (cleared first).
async fn read_response_head(
    ctx: &ShardContext,
    up: &mut Plain<TcpStream>,
    upbuf: &mut Vec<u8>,
    (is_head, client_keep_alive, http10): (bool, bool, bool),
    deadline: Instant,
    edits: Option<&HeaderEdits>,
    out: &mut Vec<u8>,
) -> Result<Response, ProxyError> {
    let limits = Limits::default();
    let method = if is_head { "HEAD" } else { "GET" };
    let mut scanner = http::HeadScanner::default();
    loop {
        if !upbuf.is_empty() && scanner.should_parse(upbuf, &limits) {
            match http::parse_response(upbuf, method, &limits) {
                Ok(Parse::Complete(head)) => {
                    let head_len = head.head_len;
                    if (100..200).contains(&head.status) {
                        if head.status == 101 {
                            return Err(ProxyError::BadResponse(HttpError::UnexpectedUpgrade));
                        }
                        upbuf.drain(..head_len);
                        scanner = http::HeadScanner::default();
                        continue;
                    }
                    out.clear();
                    // A close-delimited body ends only when the connection
                    // does; an HTTP/1.0 client cannot frame a chunked one.
                    // Decided now, not when the request went out: a drain
                    // may have begun meanwhile.
                    let keep = client_keep_alive
                        && !ctx.is_draining()
                        && head.body != BodyKind::CloseDelimited
                        && !(http10 && head.body == BodyKind::Chunked);
                    http::write_downstream_response_edited(&head, keep, http10, edits, out);
                    let response = Response {
                        head: Vec::new(),
                        status: head.status,
                        body: head.body,
                        upstream_keep_alive: head.keep_alive,
                        downstream_keep_alive: keep,
                    };
                    upbuf.drain(..head_len);
                    return Ok(response);
                }
                Ok(Parse::Partial) => {}
                Err(e) => return Err(ProxyError::BadResponse(e)),
            }
        }
        match timeout_at(deadline, up.read_into(upbuf)).await {
            Ok(Ok(0)) => return Err(ProxyError::UpstreamClosed),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(ProxyError::UpstreamIo(e)),
            Err(_) => return Err(ProxyError::UpstreamTimeout),
        }
    }
}
