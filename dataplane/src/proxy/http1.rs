//! The HTTP/1.1 request loop of one downstream connection.
//!
//! Per request: read the head (header timeout; idle timeout between
//! requests) → parse → route → pick an endpoint → take a pooled upstream
//! connection or connect → send the rewritten head and stream the body →
//! read the response head (route timeout) → stream the response body back →
//! return the upstream connection to the pool when both messages ended
//! cleanly. Bodies are never buffered whole: bytes flow through the two
//! connection buffers chunk by chunk, verbatim (chunked framing included).
//!
//! A pooled connection may have been closed by the upstream just as it was
//! reused; when that shows before any response byte and the request had no
//! body, the request is sent once more on a fresh connection.

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::ProxyError;
use super::shard::ShardContext;
use crate::http::{self, BodyDecoder, BodyKind, ForwardInfo, HttpError, Limits, Parse};
use crate::net::{ByteStream, Plain};
use crate::route::{ClusterId, HttpLimits, Snapshot};
use crate::runtime::{self, BufPool, TcpStream, timeout, timeout_at};

/// What the request loop knows about its connection.
#[derive(Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// `https` or `http`, for `x-forwarded-proto`.
    pub proto: &'static str,
    /// The caller's `x-forwarded-client-cert` element (mTLS only).
    pub xfcc: Option<String>,
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
struct Plan {
    head_len: usize,
    body: BodyKind,
    /// The client wants the connection kept (RFC 9112 §9.3).
    keep_alive: bool,
    /// An HTTP/1.0 client: keep-alive must be announced, chunked bodies
    /// cannot be kept alive.
    http10: bool,
    expect_continue: bool,
    is_head: bool,
    /// RFC 9110 §9.2.2: safe to send twice.
    idempotent: bool,
    /// The matched route (index in its listener) and its cluster.
    route: Option<(usize, ClusterId)>,
    target: Result<Target, ProxyError>,
}

/// Where the request goes.
struct Target {
    endpoint: SocketAddr,
    timeout: Duration,
    connect_timeout: Duration,
    pool_idle: Duration,
    pool_max_idle: usize,
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
    let plan = match read_head(
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
    let at = Counted {
        snapshot,
        listener: &info.listener,
        route: plan.route,
    };
    // Counted for least-request balancing until this request ends.
    let _in_flight = plan.target.as_ref().ok().map(|t| ctx.track(t.endpoint));
    ctx.stats.requests.incr();
    let target = match plan.target {
        Ok(t) => t,
        Err(e) => {
            // Answer locally; keep the connection only if no body follows.
            let keep = plan.keep_alive && !plan.http10 && plan.body == BodyKind::None;
            return local_response(ctx, down, &e, keep, limits, at).await;
        }
    };
    let mut out = std::mem::take(&mut upstream_head);

    // Attempt 0 may use a pooled connection; attempt 1 (only for requests
    // without a body, when the pooled connection turned out dead) a new one.
    let mut attempt = 0;
    let (mut up, mut upbuf, response) = loop {
        let (conn, reused) = match upstream(ctx, &target, attempt > 0).await {
            Ok(c) => c,
            Err(e) => {
                let keep = plan.keep_alive && !plan.http10 && plan.body == BodyKind::None;
                return local_response(ctx, down, &e, keep, limits, at).await;
            }
        };
        let mut up = Plain(conn);
        // Only a request that cannot have done anything twice: no body, an
        // idempotent method (RFC 9110 §9.2.2), first try on a reused conn.
        let retryable = reused && plan.body == BodyKind::None && plan.idempotent && attempt == 0;
        if plan.expect_continue && plan.body != BodyKind::None && inbuf.is_empty() {
            let (r, back) = timeout(limits.idle_timeout, down.write_owned(continue_response()))
                .await
                .map_err(|_| ProxyError::DownstreamTimeout)?;
            BufPool::give(back);
            r.map_err(ProxyError::DownstreamIo)?;
        }
        // Send the head and the request body.
        if plan.body == BodyKind::None {
            let (r, back) = match timeout(target.timeout, up.write_owned(out)).await {
                Ok(r) => r,
                Err(_) => return Err(ProxyError::UpstreamTimeout),
            };
            out = back;
            if let Err(e) = r {
                if retryable {
                    attempt += 1;
                    continue;
                }
                return Err(ProxyError::UpstreamIo(e));
            }
        } else {
            let mut decoder = BodyDecoder::new(plan.body);
            let (r, back, _) = forward(
                down,
                inbuf,
                &mut decoder,
                &mut up,
                out,
                limits.idle_timeout,
                target.timeout,
            )
            .await;
            out = back;
            match r {
                Ok(()) => {}
                Err(Forward::Invalid(e)) => return Err(ProxyError::BadRequest(e)),
                Err(Forward::ReadIo(e)) => return Err(ProxyError::DownstreamIo(e)),
                Err(Forward::ReadEof) => return Err(ProxyError::DownstreamClosed),
                Err(Forward::ReadTimeout) => return Err(ProxyError::DownstreamTimeout),
                Err(Forward::WriteIo(e)) => return Err(ProxyError::UpstreamIo(e)),
                Err(Forward::WriteTimeout) => return Err(ProxyError::UpstreamTimeout),
            }
        }
        // The response head; `out` still holds the request head for a retry.
        let deadline = runtime::now() + target.timeout;
        let mut upbuf = BufPool::take();
        let mut response_head = BufPool::take();
        match read_response_head(
            ctx,
            &mut up,
            &mut upbuf,
            plan.is_head,
            (plan.keep_alive, plan.http10),
            deadline,
            &mut response_head,
        )
        .await
        {
            Ok(resp) => {
                BufPool::give(std::mem::replace(&mut out, response_head));
                break (up, upbuf, resp);
            }
            Err(ProxyError::UpstreamClosed) | Err(ProxyError::UpstreamIo(_))
                if retryable && upbuf.is_empty() =>
            {
                attempt += 1;
                continue;
            }
            Err(e) => {
                let keep = plan.keep_alive && !plan.http10;
                return local_response(ctx, down, &e, keep, limits, at).await;
            }
        }
    };
    // `out` now holds the downstream response head; it goes out with the
    // first body bytes.
    let down_keep_alive = response.downstream_keep_alive;
    let mut decoder = BodyDecoder::new(response.body);
    let (r, out, written) = forward(
        &mut up,
        &mut upbuf,
        &mut decoder,
        down,
        out,
        target.timeout,
        limits.idle_timeout,
    )
    .await;
    BufPool::give(out);
    match r {
        Ok(()) => {
            at.count(ctx, Some(response.status), written);
            let micros = started.elapsed().as_micros().min(u64::MAX as u128) as u64;
            let _ = ctx.latency.borrow_mut().record(micros.max(1));
            if response.upstream_keep_alive && upbuf.is_empty() {
                let now = runtime::now();
                ctx.upstreams
                    .borrow_mut()
                    .put(target.endpoint, up.0, now, target.pool_max_idle);
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
            log::debug!(
                "shard {}: response body from {} aborted: {e:?}",
                ctx.id,
                target.endpoint
            );
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
    let bytes = out.len() as u64;
    at.count(ctx, Some(status), bytes);
    let (r, back) = timeout(limits.idle_timeout, down.write_owned(out))
        .await
        .map_err(|_| ProxyError::DownstreamTimeout)?;
    BufPool::give(back);
    r.map_err(ProxyError::DownstreamIo)?;
    Ok(Next::keep_if(keep_alive))
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
                Err(_) => return Err(ProxyError::HeaderTimeout),
            },
            // Idle between requests: close quietly on the idle timeout, or
            // at once when the shard starts draining.
            None => {
                let idle = timeout(limits.idle_timeout, down.read_into(inbuf));
                match first_of(idle, ctx.drain_started()).await {
                    Either::First(Ok(r)) => r,
                    Either::First(Err(_)) | Either::Second(()) => return Ok(None),
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

/// Routes a parsed head and writes its upstream form.
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
        target: Err(ProxyError::NoRoute),
    };
    // CONNECT tunnels are not an HTTP/1 proxy feature of this gateway (TCP
    // listeners are the way to carry raw streams).
    if head.method == "CONNECT" {
        plan.target = Err(ProxyError::UnsupportedMethod("CONNECT"));
        return plan;
    }
    let Some(listener) = snapshot.listener(&info.listener) else {
        return plan;
    };
    let Some(route) = listener.find_route(head.host, head.path, head.method) else {
        return plan;
    };
    plan.route = listener
        .routes
        .iter()
        .position(|r| std::ptr::eq(r, route))
        .map(|i| (i, route.cluster));
    let cluster = snapshot.cluster(route.cluster);
    let Some(endpoint) = ctx.pick_endpoint(snapshot, route.cluster) else {
        // Every endpoint drained by the operator.
        plan.target = Err(ProxyError::NoEndpoint(cluster.name.clone()));
        return plan;
    };
    let request_id = ctx.request_ids.next();
    let fwd = ForwardInfo {
        client_ip: info.peer.ip(),
        proto: info.proto,
        new_request_id: request_id.as_str(),
        xfcc: info.xfcc.as_deref(),
    };
    http::write_upstream_request(head, &fwd, upstream_head);
    plan.target = Ok(Target {
        endpoint,
        timeout: route.timeout,
        connect_timeout: cluster.connect_timeout,
        pool_idle: cluster.pool.idle_timeout,
        pool_max_idle: cluster.pool.max_idle_per_endpoint,
    });
    plan
}

/// A pooled connection to the target (unless `fresh`), or a new one.
async fn upstream(
    ctx: &ShardContext,
    target: &Target,
    fresh: bool,
) -> Result<(TcpStream, bool), ProxyError> {
    if !fresh {
        let pooled = ctx.upstreams.borrow_mut().take(
            target.endpoint,
            runtime::now(),
            target.pool_idle,
            |c| !c.has_unread_input(),
        );
        if let Some(conn) = pooled {
            ctx.stats.upstream_reused.incr();
            return Ok((conn, true));
        }
    }
    ctx.stats.upstream_connects.incr();
    match timeout(target.connect_timeout, TcpStream::connect(target.endpoint)).await {
        Ok(Ok(conn)) => Ok((conn, false)),
        Ok(Err(source)) => {
            ctx.stats.upstream_connect_failures.incr();
            Err(ProxyError::ConnectFailed {
                addr: target.endpoint,
                source,
            })
        }
        Err(_) => {
            ctx.stats.upstream_connect_failures.incr();
            Err(ProxyError::ConnectTimeout(target.endpoint))
        }
    }
}

/// The parts of the response head the loop needs after it is written.
struct Response {
    status: u16,
    body: BodyKind,
    upstream_keep_alive: bool,
    /// Whether the head written downstream keeps the connection open.
    downstream_keep_alive: bool,
}

/// Reads the upstream response head (skipping interim 1xx responses) and
/// writes the downstream head into `out` (cleared first).
async fn read_response_head(
    ctx: &ShardContext,
    up: &mut Plain<TcpStream>,
    upbuf: &mut Vec<u8>,
    is_head: bool,
    (client_keep_alive, http10): (bool, bool),
    deadline: Instant,
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
                    http::write_downstream_response_for(&head, keep, http10, out);
                    let response = Response {
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

/// `100 Continue` in a pooled buffer.
fn continue_response() -> Vec<u8> {
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
enum Forward {
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
async fn forward<R: ByteStream, W: ByteStream>(
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
