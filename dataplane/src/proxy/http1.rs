//! The HTTP/1.1 request loop of one downstream connection.
//!
//! Per request: read the head (header timeout; idle timeout between
//! requests) → parse → `plan`: route, redirect, rate limit, fault
//! injection, split, the cluster's `max_requests` breaker → (a small body
//! read whole when the route retries) → `send_with_retries`: pick an
//! endpoint, take a pooled upstream connection or connect (within the
//! connection breakers), send the rewritten head and the body, read the
//! response head (per-try and total timeouts), and retry what the route's
//! policy and the cluster's budget allow on another endpoint → stream the
//! response body back → return the upstream connection to the pool when
//! both messages ended cleanly.
//!
//! Bodies are never buffered whole except a `Content-Length` request body
//! up to the route's `retry.buffer_bytes`, kept to be sent again: otherwise
//! bytes flow through the two connection buffers chunk by chunk, verbatim
//! (chunked framing included), and nothing is retried once body bytes went
//! upstream or response bytes went downstream.
//!
//! A pooled connection may have been closed by the upstream just as it was
//! reused; when that shows before any response byte and the request is
//! idempotent without a body, it is sent once more on a fresh connection
//! (not counted as a retry, not held against the endpoint).

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::ProxyError;
use super::exchange::{Tries, TryOk, send_with_retries};
use super::shard::ShardContext;
use super::traffic::GaugeGuard;
use crate::http::{
    self, BodyDecoder, BodyKind, ForwardInfo, HttpError, Limits, Parse, RequestEdits,
};
use crate::net::ByteStream;
use crate::route::{
    Cluster, ClusterId, HashOn, HttpLimits, LbPolicy, RateKey, RetryPolicy, RouteTarget, Snapshot,
};
use crate::runtime::{self, BufPool, timeout, timeout_at};
use crate::upstream::hash::hash_key;

/// What the request loop knows about its connection.
#[derive(Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// `https` or `http`, for `x-forwarded-proto`.
    pub proto: &'static str,
    /// The caller's `x-forwarded-client-cert` element (mTLS only).
    pub xfcc: Option<String>,
    /// The caller's SPIFFE ID (mTLS only), for keyed rate limits.
    pub spiffe_id: Option<String>,
    pub listener: Rc<str>,
}

/// Serves requests on `down` until either side closes or an error ends it.
pub async fn serve<S: ByteStream>(
    ctx: Rc<ShardContext>,
    mut snapshot: Arc<Snapshot>,
    mut down: S,
    info: ConnInfo,
) {
    let mut inbuf = Vec::new();
    let mut first = true;
    loop {
        ctx.refresh(&mut snapshot);
        let Some(listener) = snapshot.listener(&info.listener) else {
            break;
        };
        let limits = listener.limits;
        let next = match request(
            &ctx,
            &mut snapshot,
            &mut down,
            &mut inbuf,
            &info,
            &limits,
            first,
        )
        .await
        {
            Ok(next) => next,
            Err(e) => {
                let at = Counted {
                    snapshot: &snapshot,
                    listener: &info.listener,
                    route: None,
                };
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

/// What the head told us, detached from the input buffer.
pub(super) struct Plan {
    pub(super) head_len: usize,
    pub(super) body: BodyKind,
    /// The client wants the connection kept (RFC 9112 §9.3).
    pub(super) keep_alive: bool,
    /// An HTTP/1.0 client: keep-alive must be announced, chunked bodies
    /// cannot be kept alive.
    pub(super) http10: bool,
    pub(super) expect_continue: bool,
    pub(super) is_head: bool,
    /// RFC 9110 §9.2.2: safe to send twice.
    pub(super) idempotent: bool,
    /// The matched route (index in its listener) and the cluster chosen.
    pub(super) route: Option<(usize, ClusterId)>,
    action: Result<Action, ProxyError>,
}

/// What the gateway does with a routed request.
enum Action {
    Proxy(Target),
    Redirect { status: u16, location: String },
}

/// Where the request goes and the rules for getting it there.
pub(super) struct Target {
    pub(super) listener: usize,
    pub(super) route: usize,
    pub(super) cluster: ClusterId,
    /// Ring hash / maglev key.
    pub(super) hash: u64,
    /// Total time for the response head, retries included.
    pub(super) timeout: Duration,
    pub(super) retry: Option<RetryPolicy>,
    /// Fault injection: wait this long first.
    pub(super) delay: Option<Duration>,
    pub(super) connect_timeout: Duration,
    pub(super) pool_idle: Duration,
    pub(super) pool_max_idle: usize,
    /// Counted in the cluster's `active_requests` until the request ends.
    pub(super) _admitted: GaugeGuard,
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

/// Sends `100 Continue`.
pub(super) async fn send_continue<S: ByteStream>(
    down: &mut S,
    limits: &HttpLimits,
) -> Result<(), ProxyError> {
    let (r, back) = timeout(limits.idle_timeout, down.write_owned(continue_response()))
        .await
        .map_err(|_| ProxyError::DownstreamTimeout)?;
    BufPool::give(back);
    r.map_err(ProxyError::DownstreamIo)
}

/// Reads until `inbuf` holds `n` bytes (a whole `Content-Length` body).
async fn read_body<S: ByteStream>(
    down: &mut S,
    inbuf: &mut Vec<u8>,
    n: usize,
    idle: Duration,
) -> Result<(), ProxyError> {
    while inbuf.len() < n {
        match timeout(idle, down.read_into(inbuf)).await {
            Ok(Ok(0)) => return Err(ProxyError::DownstreamClosed),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(ProxyError::DownstreamIo(e)),
            Err(_) => return Err(ProxyError::DownstreamTimeout),
        }
    }
    Ok(())
}

/// Answers with a redirect.
async fn redirect<S: ByteStream>(
    ctx: &ShardContext,
    down: &mut S,
    status: u16,
    location: &str,
    keep_alive: bool,
    limits: &HttpLimits,
    at: Counted<'_>,
) -> Result<Next, ProxyError> {
    let mut out = BufPool::take();
    http::write_local_response(status, &[("location", location)], b"", keep_alive, &mut out);
    send_local(ctx, down, out, status, keep_alive, limits, at).await
}

/// Counts and sends a response the gateway wrote itself.
async fn send_local<S: ByteStream>(
    ctx: &ShardContext,
    down: &mut S,
    out: Vec<u8>,
    status: u16,
    keep_alive: bool,
    limits: &HttpLimits,
    at: Counted<'_>,
) -> Result<Next, ProxyError> {
    at.count(ctx, Some(status), out.len() as u64);
    let (r, back) = timeout(limits.idle_timeout, down.write_owned(out))
        .await
        .map_err(|_| ProxyError::DownstreamTimeout)?;
    BufPool::give(back);
    r.map_err(ProxyError::DownstreamIo)?;
    Ok(Next::keep_if(keep_alive))
}

/// Handles one request; `Err` means "answer with this error, then close".
async fn request<S: ByteStream>(
    ctx: &ShardContext,
    snapshot: &mut Arc<Snapshot>,
    down: &mut S,
    inbuf: &mut Vec<u8>,
    info: &ConnInfo,
    limits: &HttpLimits,
    first: bool,
) -> Result<Next, ProxyError> {
    let mut upstream_head = BufPool::take();
    let mut plan = match read_head(
        ctx,
        snapshot,
        down,
        inbuf,
        info,
        limits,
        first,
        &mut upstream_head,
    )
    .await?
    {
        Some(plan) => plan,
        None => return Ok(Next::Close), // closed cleanly between requests
    };
    let started = runtime::precise_now();
    inbuf.drain(..plan.head_len);
    let snapshot: &Snapshot = snapshot;
    let at = Counted {
        snapshot,
        listener: &info.listener,
        route: plan.route,
    };
    ctx.stats.requests.incr();
    // Answer locally; keep the connection only if no body follows.
    let local_keep = plan.keep_alive && !plan.http10 && plan.body == BodyKind::None;
    let action = std::mem::replace(&mut plan.action, Err(ProxyError::NoRoute));
    let target = match action {
        Ok(Action::Proxy(t)) => t,
        Ok(Action::Redirect { status, location }) => {
            BufPool::give(upstream_head);
            return redirect(ctx, down, status, &location, local_keep, limits, at).await;
        }
        Err(e) => {
            BufPool::give(upstream_head);
            return local_response(ctx, down, &e, local_keep, limits, at).await;
        }
    };
    if let Some(delay) = target.delay {
        runtime::sleep(delay).await;
    }
    let mut out = upstream_head;
    let mut continue_sent = false;
    // A small body is read whole (after `100 Continue`, if asked for) and
    // sent with the head, so a retry can send it again.
    let buffered = match (target.retry, plan.body) {
        (Some(r), BodyKind::Length(n)) if r.attempts > 0 && n <= r.buffer_bytes as u64 => {
            if plan.expect_continue && inbuf.len() < n as usize {
                send_continue(down, limits).await?;
                continue_sent = true;
            }
            read_body(down, inbuf, n as usize, limits.idle_timeout).await?;
            out.extend_from_slice(&inbuf[..n as usize]);
            inbuf.drain(..n as usize);
            true
        }
        _ => false,
    };
    let replayable = plan.body == BodyKind::None || buffered;
    let body_follows = plan.body != BodyKind::None && !buffered;
    let error_keep = plan.keep_alive && !plan.http10 && !body_follows;
    let tries = Tries {
        target: &target,
        plan: &plan,
        limits,
        replayable,
        body_follows,
    };
    let ok =
        match send_with_retries(ctx, snapshot, tries, down, inbuf, &mut out, continue_sent).await {
            Ok(ok) => ok,
            Err(e) => {
                BufPool::give(out);
                return local_response(ctx, down, &e, error_keep, limits, at).await;
            }
        };
    let TryOk {
        mut up,
        guard: conn_guard,
        mut upbuf,
        response,
        addr,
    } = ok;
    BufPool::give(out);
    // `response.head` holds the downstream response head; it goes out with
    // the first body bytes.
    let down_keep_alive = response.downstream_keep_alive;
    let mut decoder = BodyDecoder::new(response.body);
    let (r, head_buf, written) = forward(
        &mut up,
        &mut upbuf,
        &mut decoder,
        down,
        response.head,
        target.timeout,
        limits.idle_timeout,
    )
    .await;
    BufPool::give(head_buf);
    match r {
        Ok(()) => {
            at.count(ctx, Some(response.status), written);
            let micros = started.elapsed().as_micros().min(u64::MAX as u128) as u64;
            let _ = ctx.latency.borrow_mut().record(micros.max(1));
            if response.upstream_keep_alive && upbuf.is_empty() {
                let now = runtime::now();
                ctx.upstreams
                    .borrow_mut()
                    .put(addr, (up.0, conn_guard), now, target.pool_max_idle);
            }
            BufPool::give(upbuf);
            Ok(Next::keep_if(down_keep_alive))
        }
        // Broken upstream framing seen before anything went downstream:
        // still a clean 502.
        Err(Forward::Invalid(e)) if written == 0 => {
            let e = ProxyError::BadResponse(e);
            local_response(ctx, down, &e, false, limits, at)
                .await
                .map(|_| Next::Close)
        }
        // The upstream died mid-body or sent broken framing after bytes went
        // downstream: close the downstream connection so the client sees a
        // truncated message, never a complete-looking one.
        Err(e) => {
            if written > 0 {
                at.count(ctx, Some(response.status), written);
            }
            log::debug!("shard {}: response body from {addr} aborted: {e:?}", ctx.id,);
            Ok(Next::Abort)
        }
    }
}
/// Writes a local response for `e`; returns whether to keep the connection.
async fn local_response<S: ByteStream>(
    ctx: &ShardContext,
    down: &mut S,
    e: &ProxyError,
    keep_alive: bool,
    limits: &HttpLimits,
    at: Counted<'_>,
) -> Result<Next, ProxyError> {
    log::debug!("shard {}: {e}", ctx.id);
    let mut out = BufPool::take();
    let Some(status) = e.write_response(keep_alive, &mut out) else {
        // Nothing to write; a client that closed before sending a whole
        // request made no request to count.
        if !matches!(e, ProxyError::DownstreamClosed) {
            at.count(ctx, None, 0);
        }
        return Ok(Next::Close);
    };
    send_local(ctx, down, out, status, keep_alive, limits, at).await
}

/// Where a finished request is counted: its listener, and its route and
/// cluster once it was routed.
#[derive(Clone, Copy)]
struct Counted<'a> {
    snapshot: &'a Snapshot,
    listener: &'a str,
    route: Option<(usize, ClusterId)>,
}

impl Counted<'_> {
    fn count(&self, ctx: &ShardContext, status: Option<u16>, bytes_out: u64) {
        if let Some(s) = status {
            ctx.stats.response(s);
        }
        let names = self.route.and_then(|(index, cluster)| {
            let l = self.snapshot.listener(self.listener)?;
            Some((
                l.routes.get(index)?.name.as_str(),
                self.snapshot.cluster(cluster).name.as_str(),
            ))
        });
        ctx.named
            .borrow_mut()
            .record(self.listener, names, status, bytes_out);
    }
}

/// Reads until a full request head is buffered, then plans the request and
/// writes the upstream head into `upstream_head`. `Ok(None)`: the client
/// closed (or idled out) between requests.
#[allow(clippy::too_many_arguments)]
async fn read_head<S: ByteStream>(
    ctx: &ShardContext,
    snapshot: &mut Arc<Snapshot>,
    down: &mut S,
    inbuf: &mut Vec<u8>,
    info: &ConnInfo,
    limits: &HttpLimits,
    first: bool,
    upstream_head: &mut Vec<u8>,
) -> Result<Option<Plan>, ProxyError> {
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
                    // Route with the snapshot current now that the request
                    // is here (the connection may have idled across swaps).
                    ctx.refresh(snapshot);
                    return Ok(Some(plan(ctx, snapshot, &head, info, upstream_head)));
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
                match first_of(idle, ctx.idle_wakeup(info.listener.clone())).await {
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

/// Routes a parsed head and writes its upstream form: the route's
/// redirect, rate limit, fault injection, split and the cluster's
/// `max_requests` breaker are decided here, before anything is sent.
fn plan(
    ctx: &ShardContext,
    snapshot: &Snapshot,
    head: &http::RequestHead<'_>,
    info: &ConnInfo,
    upstream_head: &mut Vec<u8>,
) -> Plan {
    let mut plan = Plan {
        head_len: head.head_len,
        body: head.body,
        // A draining shard answers what it has, then closes.
        keep_alive: head.keep_alive && !ctx.is_draining(),
        http10: head.minor_version == 0,
        expect_continue: head.expect_continue,
        is_head: head.method == "HEAD",
        route: None,
        idempotent: matches!(
            head.method,
            "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
        ),
        action: Err(ProxyError::NoRoute),
    };
    // CONNECT tunnels are not an HTTP/1 proxy feature of this gateway (TCP
    // listeners are the way to carry raw streams).
    if head.method == "CONNECT" {
        plan.action = Err(ProxyError::UnsupportedMethod("CONNECT"));
        return plan;
    }
    let Some(listener_index) = snapshot.listener_index(&info.listener) else {
        return plan;
    };
    let listener = &snapshot.listeners[listener_index];
    let Some(route) = listener.find_route(head.host, head.path, head.method) else {
        return plan;
    };
    let route_index = listener
        .routes
        .iter()
        .position(|r| std::ptr::eq(r, route))
        .unwrap_or(0);
    let now = runtime::now();
    let mut traffic = ctx.traffic.borrow_mut();
    traffic.sync(snapshot, now);
    if let RouteTarget::Redirect(r) = &route.target {
        plan.action = Ok(Action::Redirect {
            status: r.status,
            location: r.location(info.proto, head.host, head.target),
        });
        return plan;
    }
    let random = traffic.random();
    let Some(cluster_id) = route.target.pick(random) else {
        return plan;
    };
    plan.route = Some((route_index, cluster_id));
    let key: &[u8] = match traffic.rate_key(listener_index, route_index) {
        Some(RateKey::SpiffeId) => info.spiffe_id.as_deref().unwrap_or("").as_bytes(),
        Some(RateKey::Header(name)) => head.header(name).unwrap_or(b""),
        _ => b"",
    };
    if let Err(wait) = traffic.admit(listener_index, route_index, key, now) {
        ctx.stats.rate_limited.incr();
        plan.action = Err(ProxyError::RateLimited {
            route: route.name.clone(),
            retry_after_s: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
        });
        return plan;
    }
    let mut delay = None;
    if let Some(f) = &route.fault {
        let roll = |r: u64| (r % 10_000) < u64::from(f.abort_percent) * 100;
        if f.abort_percent > 0 && roll(traffic.random()) {
            ctx.stats.faults_injected.incr();
            plan.action = Err(ProxyError::FaultAbort {
                route: route.name.clone(),
                status: f.abort_status,
            });
            return plan;
        }
        let r = traffic.random();
        if f.delay_percent > 0 && (r % 10_000) < u64::from(f.delay_percent) * 100 {
            ctx.stats.faults_injected.incr();
            delay = Some(f.delay);
        }
    }
    let cluster = snapshot.cluster(cluster_id);
    let Some(state) = traffic.clusters.get(cluster_id.0 as usize) else {
        return plan;
    };
    if state.active_requests.get() >= traffic.share(cluster.limits.max_requests) {
        ctx.stats.overloaded.incr();
        plan.action = Err(ProxyError::Overloaded {
            cluster: cluster.name.clone(),
            limit: "max_requests",
        });
        return plan;
    }
    let admitted = state.active_requests.enter();
    drop(traffic);
    let request_id = ctx.request_ids.next();
    let fwd = ForwardInfo {
        client_ip: info.peer.ip(),
        proto: info.proto,
        new_request_id: request_id.as_str(),
        xfcc: info.xfcc.as_deref(),
    };
    let edits = RequestEdits {
        headers: Some(&route.request_headers).filter(|e| !e.is_empty()),
        prefix_rewrite: route
            .prefix_rewrite
            .as_ref()
            .map(|(p, with)| (p.as_str(), with.as_str())),
    };
    http::write_upstream_request_edited(head, &fwd, &edits, upstream_head);
    plan.action = Ok(Action::Proxy(Target {
        listener: listener_index,
        route: route_index,
        cluster: cluster_id,
        hash: request_hash(cluster, head, info),
        timeout: route.timeout,
        retry: route.retry,
        delay,
        connect_timeout: cluster.connect_timeout,
        pool_idle: cluster.pool.idle_timeout,
        pool_max_idle: cluster.pool.max_idle_per_endpoint,
        _admitted: admitted,
    }));
    plan
}

/// The consistent-hashing key of a request (0 for other policies).
fn request_hash(cluster: &Cluster, head: &http::RequestHead<'_>, info: &ConnInfo) -> u64 {
    let on = match &cluster.lb {
        LbPolicy::RingHash { on, .. } | LbPolicy::Maglev { on, .. } => on,
        _ => return 0,
    };
    let value = match on {
        HashOn::ClientIp => None,
        HashOn::Header(name) => head.header(name),
        HashOn::Cookie(name) => head.header("cookie").and_then(|c| cookie_value(c, name)),
    };
    match value {
        Some(v) => hash_key(v),
        None => match info.peer.ip() {
            std::net::IpAddr::V4(ip) => hash_key(&ip.octets()),
            std::net::IpAddr::V6(ip) => hash_key(&ip.octets()),
        },
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

/// `100 Continue` in a pooled buffer.
pub(super) fn continue_response() -> Vec<u8> {
    let mut b = BufPool::take();
    b.extend_from_slice(http::CONTINUE_RESPONSE);
    b
}

/// Which of two futures finished first.
enum Either<A, B> {
    First(A),
    Second(B),
}

/// Polls `a` then `b`; the first ready wins (the other is dropped).
async fn first_of<A: std::future::Future, B: std::future::Future>(
    a: A,
    b: B,
) -> Either<A::Output, B::Output> {
    let mut a = std::pin::pin!(a);
    let mut b = std::pin::pin!(b);
    std::future::poll_fn(|cx| {
        if let std::task::Poll::Ready(v) = a.as_mut().poll(cx) {
            return std::task::Poll::Ready(Either::First(v));
        }
        if let std::task::Poll::Ready(v) = b.as_mut().poll(cx) {
            return std::task::Poll::Ready(Either::Second(v));
        }
        std::task::Poll::Pending
    })
    .await
}

/// Why streaming a body stopped early.
#[derive(Debug)]
pub(super) enum Forward {
    Invalid(HttpError),
    ReadIo(io::Error),
    ReadEof,
    ReadTimeout,
    WriteIo(io::Error),
    WriteTimeout,
}

/// Streams one message body from `src` to `dst`: first whatever `out`
/// already holds (a head), then body bytes as they arrive, verbatim, until
/// the decoder says the body ended. Bytes after the body stay in `srcbuf`.
/// Returns `out`'s buffer for reuse and how many bytes reached `dst`.
pub(super) async fn forward<R: ByteStream, W: ByteStream>(
    src: &mut R,
    srcbuf: &mut Vec<u8>,
    decoder: &mut BodyDecoder,
    dst: &mut W,
    mut out: Vec<u8>,
    read_timeout: Duration,
    write_timeout: Duration,
) -> (Result<(), Forward>, Vec<u8>, u64) {
    let mut written = 0u64;
    loop {
        if !srcbuf.is_empty() && !decoder.is_done() {
            let n = match decoder.advance(srcbuf) {
                Ok(n) => n,
                Err(e) => return (Err(Forward::Invalid(e)), out, written),
            };
            if n == srcbuf.len() && out.is_empty() {
                // The whole buffer is body: send it as is, no copy.
                std::mem::swap(&mut out, srcbuf);
            } else if n > 0 {
                out.extend_from_slice(&srcbuf[..n]);
                srcbuf.drain(..n);
            }
        }
        if !out.is_empty() {
            let len = out.len() as u64;
            match timeout(write_timeout, dst.write_owned(out)).await {
                Ok((Ok(()), mut back)) => {
                    written += len;
                    back.clear();
                    out = back;
                }
                Ok((Err(e), back)) => return (Err(Forward::WriteIo(e)), back, written),
                Err(_) => return (Err(Forward::WriteTimeout), Vec::new(), written),
            }
        }
        if decoder.is_done() {
            return (Ok(()), out, written);
        }
        match timeout(read_timeout, src.read_into(srcbuf)).await {
            Ok(Ok(0)) => {
                return match decoder.finish_eof() {
                    Ok(()) => (Ok(()), out, written),
                    Err(_) => (Err(Forward::ReadEof), out, written),
                };
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return (Err(Forward::ReadIo(e)), out, written),
            Err(_) => return (Err(Forward::ReadTimeout), out, written),
        }
    }
}
