//! HTTP/1.1 to an upstream: the request head the gateway sends
//! ([`write_request_head`]), and one try ([`H1Try`], an [`Attempt`]): a
//! pooled or new connection, the head and body, the response head.
//!
//! A try returns the response's facts ([`ResponseFacts`]) with the head's
//! bytes still at the front of the connection's buffer; the downstream
//! protocol writes its own response head from them.
//!
//! Uses [`crate::proxy::connect`], [`crate::proxy::forward`], `http` (heads,
//! framing) and the runtime's timers.

use std::net::SocketAddr;
use std::time::Instant;

use super::respond::send_continue;
use super::{RequestFacts, ResponseFacts};
use crate::http::{
    self, BodyDecoder, BodyKind, ForwardInfo, HttpError, Limits, Parse, RequestEdits, TraceFields,
};
use crate::net::ByteStream;
use crate::proxy::conn::ConnInfo;
use crate::proxy::connect;
use crate::proxy::context::ShardContext;
use crate::proxy::decide::Target;
use crate::proxy::error::ProxyError;
use crate::proxy::forward::{ReadPace, Replay, forward};
use crate::proxy::tracing::RequestTrace;
use crate::proxy::traffic::GaugeGuard;
use crate::proxy::tries::{Attempt, TryFailed};
use crate::proxy::upstream_conn::UpstreamIo;
use crate::route::{HttpLimits, Snapshot};
use crate::runtime::{BufPool, timeout_at};
use crate::telemetry::trace::{self, SpanId, SpanSlots};

/// Writes the head sent upstream for `head` (with its normalised `path`,
/// when normalising changed it): forwarding headers, the route's header
/// edits and prefix rewrite. Returns whether the listener's policy keeps a
/// client's `x-request-id` (instead of sending `request_id`). With a
/// `trace`, its fields replace the client's and its span slots are set to
/// where they landed in `out`.
#[allow(clippy::too_many_arguments)]
pub(super) fn write_request_head(
    snapshot: &Snapshot,
    head: &http::RequestHead<'_>,
    path: Option<&str>,
    target: &Target,
    conn: &ConnInfo,
    request_id: &str,
    mut trace: Option<&mut RequestTrace>,
    out: &mut Vec<u8>,
) -> bool {
    let route = &snapshot.listeners[target.listener].routes[target.route];
    let keep_request_id = match snapshot.listeners[target.listener].limits.request_id {
        crate::route::RequestIdPolicy::Keep => true,
        crate::route::RequestIdPolicy::Fresh => false,
        crate::route::RequestIdPolicy::Mesh => conn.spiffe_id.is_some(),
    };
    let fwd = ForwardInfo {
        keep_request_id,
        client_ip: conn.peer.ip(),
        proto: conn.proto,
        new_request_id: request_id,
        xfcc: conn.xfcc.as_deref(),
    };
    let spec = snapshot.tracing.as_deref();
    // Room for `traceparent` and the multi-header B3 fields in one go.
    let mut trace_lines = Vec::with_capacity(if spec.is_some() { 320 } else { 0 });
    let replaces = |name: &str| spec.is_some_and(|s| trace::is_propagation_header(s, name));
    let trace_fields = match (trace.as_deref_mut(), spec) {
        (Some(t), Some(spec)) => {
            t.upstream_fields(spec, &mut trace_lines);
            Some(TraceFields {
                lines: &trace_lines,
                replaces: &replaces,
            })
        }
        _ => None,
    };
    let edits = RequestEdits {
        headers: Some(&route.request_headers).filter(|e| !e.is_empty()),
        prefix_rewrite: route
            .prefix_rewrite
            .as_ref()
            .map(|(p, with)| (p.as_str(), with.as_str())),
        drop_underscores: snapshot.listeners[target.listener].limits.underscores
            == crate::route::Underscores::Drop,
        path,
        trace: trace_fields,
    };
    let at = http::write_upstream_request_edited(head, &fwd, &edits, out);
    if let Some(t) = trace {
        t.slots = t.slots.shifted(at);
    }
    keep_request_id
}

/// A try that got a response head.
pub(crate) struct Answered {
    pub(crate) up: UpstreamIo,
    /// Goes back to the pool with an HTTP/1.1 connection.
    pub(crate) guard: Option<GaugeGuard>,
    /// The response head, then whatever of the body already arrived.
    pub(crate) upbuf: Vec<u8>,
    pub(crate) response: ResponseFacts,
    pub(crate) addr: SocketAddr,
}

/// The tries of one HTTP/1 request.
pub(crate) struct H1Try<'a, S> {
    pub(crate) ctx: &'a ShardContext,
    pub(crate) snapshot: &'a Snapshot,
    pub(crate) target: &'a Target,
    pub(crate) request: &'a RequestFacts,
    pub(crate) limits: &'a HttpLimits,
    pub(crate) down: &'a mut S,
    pub(crate) inbuf: &'a mut Vec<u8>,
    /// The upstream request head (and a buffered body); handed back after
    /// each send so a retry can send it again; emptied once a streamed
    /// body went (partly) upstream.
    pub(crate) out: &'a mut Vec<u8>,
    /// `100 Continue` went to the client.
    pub(crate) continue_sent: bool,
    /// The request can be sent again (no body, or a buffered one in `out`).
    pub(crate) replayable: bool,
    /// The body streams from the client after `out`.
    pub(crate) body_follows: bool,
    /// How the body must arrive from the client.
    pub(crate) body_pace: ReadPace,
    /// Body bytes streamed from the client to the upstream.
    pub(crate) body_streamed: u64,
    /// Where each try's span id goes in `out` (a recorded trace only).
    pub(crate) span_slots: Option<SpanSlots>,
}

impl<S: crate::proxy::downstream::Downstream> Attempt for H1Try<'_, S> {
    type Ok = Answered;

    async fn attempt(
        &mut self,
        addr: SocketAddr,
        fresh: bool,
        deadline: Option<Instant>,
    ) -> Result<Answered, TryFailed> {
        // HTTP tries always run under the route's timeout.
        let deadline = deadline.unwrap_or_else(|| crate::runtime::now() + self.target.timeout);
        let t = self.target;
        let upstream =
            connect::upstream(self.ctx, self.snapshot, t.cluster, addr, fresh, t.pool_idle)
                .await
                .map_err(TryFailed::new)?;
        let (mut up, guard, reused) = (upstream.io, upstream.guard, upstream.reused);
        let silent = |e: ProxyError, upbuf: &[u8]| {
            TryFailed::on_silent_reused(e, reused && upbuf.is_empty())
        };
        // `100 Continue` once the upstream is there (a client waiting for it
        // must not be kept waiting on a body we cannot deliver).
        if self.body_follows
            && self.request.expect_continue
            && !self.continue_sent
            && self.inbuf.is_empty()
        {
            send_continue(self.down, self.limits)
                .await
                .map_err(TryFailed::new)?;
            self.continue_sent = true;
        }
        let buf = std::mem::take(self.out);
        // HTTP/2 on both sides and no retry to keep the body for: the
        // caller's stream is handed to the upstream's whole, so the
        // response can come back while the request still flows.
        let retries = t.retry.is_some_and(|r| r.attempts > 0);
        // (Body bytes already read would be lost: then it goes as bytes.)
        let duplex = if self.body_follows
            && !retries
            && self.inbuf.is_empty()
            && matches!(up, UpstreamIo::H2(_))
        {
            self.down.take_h2_body()
        } else {
            None
        };
        if let Some(body) = duplex {
            match timeout_at(deadline, up.write_owned(buf)).await {
                Ok((r, back)) => {
                    *self.out = back;
                    r.map_err(|e| {
                        silent(ProxyError::UpstreamIo(e), &[]).unprocessed(up.unprocessed())
                    })?;
                }
                Err(_) => return Err(TryFailed::new(ProxyError::UpstreamTimeout)),
            }
            // The body goes once: never replayed.
            self.out.clear();
            if up.relay_body(body).is_err() {
                up.abort();
                return Err(TryFailed::new(ProxyError::UpstreamClosed));
            }
        } else if !self.body_follows {
            match timeout_at(deadline, up.write_owned(buf)).await {
                Ok((r, back)) => {
                    *self.out = back;
                    r.map_err(|e| {
                        silent(ProxyError::UpstreamIo(e), &[]).unprocessed(up.unprocessed())
                    })?;
                }
                // The buffer went with the cancelled write: no resend.
                Err(_) => return Err(TryFailed::new(ProxyError::UpstreamTimeout)),
            }
        } else {
            let mut decoder = BodyDecoder::for_request(self.request.body);
            let head_len = buf.len() as u64;
            // With a retry policy, a copy of what goes upstream is kept
            // (within `retry.buffer_bytes`): a body that fit whole, even
            // one of unknown length (chunked, or HTTP/2 without a
            // `content-length`, as gRPC sends), can go to another try.
            let mut replay = t.retry.filter(|r| r.attempts > 0).map(|r| {
                Box::new(Replay::new(
                    r.buffer_bytes.saturating_add(head_len as usize),
                ))
            });
            let (r, back, reached) = forward(
                self.down,
                self.inbuf,
                &mut decoder,
                &mut up,
                buf,
                self.body_pace,
                t.timeout,
                replay.as_deref_mut(),
            )
            .await;
            *self.out = back;
            self.body_streamed += reached.saturating_sub(head_len);
            self.out.clear();
            if let Err(e) = r {
                // The upstream must not take the cut-off request for a
                // whole one: reset, no FIN.
                up.abort();
                return Err(TryFailed::new(e.request_error()));
            }
            // The whole request was kept: later tries send it as it is.
            // Otherwise the body went upstream once and is never sent
            // twice.
            if let Some(whole) = replay.and_then(|r| r.into_whole()) {
                *self.out = whole;
                self.body_follows = false;
                self.replayable = true;
            }
        }
        let mut upbuf = BufPool::take();
        let grpc = t.grpc;
        match read_response_head(&mut up, &mut upbuf, self.request.is_head, grpc, deadline).await {
            Ok(response) => Ok(Answered {
                up,
                guard,
                upbuf,
                response,
                addr,
            }),
            Err(e) => {
                let failed = silent(e, &upbuf).unprocessed(up.unprocessed());
                BufPool::give(upbuf);
                Err(failed)
            }
        }
    }

    fn set_span(&mut self, span: SpanId) {
        if let Some(slots) = self.span_slots {
            slots.set(self.out, span);
        }
    }

    fn status(ok: &Answered) -> Option<u16> {
        Some(ok.response.status)
    }

    fn grpc_status(ok: &Answered) -> Option<u32> {
        ok.response.grpc_status
    }

    fn replayable(&self) -> bool {
        self.replayable && !self.out.is_empty()
    }

    fn resend_on_fresh_connection(&self) -> bool {
        self.request.body == BodyKind::None && self.request.idempotent
    }
}

/// Reads the upstream response head, skipping interim 1xx responses; the
/// final head stays at the front of `upbuf`.
async fn read_response_head(
    up: &mut UpstreamIo,
    upbuf: &mut Vec<u8>,
    is_head: bool,
    grpc: bool,
    deadline: Instant,
) -> Result<ResponseFacts, ProxyError> {
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
                    let grpc_status = if grpc {
                        head.header("grpc-status")
                            .and_then(crate::proxy::grpc::status)
                    } else {
                        None
                    };
                    return Ok(ResponseFacts {
                        status: head.status,
                        head_len,
                        body: head.body,
                        keep_alive: head.keep_alive,
                        grpc_status,
                    });
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
