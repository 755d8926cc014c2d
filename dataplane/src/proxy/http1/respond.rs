//! HTTP/1.1 to the client: the response head written from an upstream
//! response's facts ([`response_head`]), the gateway's own answers (errors
//! through [`ProxyError::write_response`], redirects, `100 Continue`), and
//! where a finished request is counted ([`Counted`]).
//!
//! Uses `http` (head writers), [`crate::proxy::observe`] (counts and the
//! access log) and the runtime's timers and buffer pool.

use std::time::Instant;

use super::{Next, ResponseFacts};
use crate::http::{self, BodyKind, HeaderEdits, Limits, Parse};
use crate::net::ByteStream;
use crate::proxy::conn::ConnInfo;
use crate::proxy::context::ShardContext;
use crate::proxy::error::ProxyError;
use crate::proxy::observe::{Finished, request_finished};
use crate::proxy::tries::TriesReport;
use crate::route::{HttpLimits, Snapshot};
use crate::runtime::{BufPool, timeout};

/// The downstream head for an upstream response whose head is at the
/// front of `upbuf` (it is drained from there), and whether it keeps the
/// client's connection open: not when the client or a drain closes it, a
/// body is close-delimited, or an HTTP/1.0 client would get a chunked one.
pub(super) fn response_head(
    response: &ResponseFacts,
    upbuf: &mut Vec<u8>,
    (is_head, client_keep_alive, http10): (bool, bool, bool),
    draining: bool,
    edits: Option<&HeaderEdits>,
    out: &mut Vec<u8>,
) -> Result<bool, ProxyError> {
    let keep = client_keep_alive
        && !draining
        && response.body != BodyKind::CloseDelimited
        && !(http10 && response.body == BodyKind::Chunked);
    // The request went upstream as HTTP/1.0: a chunked answer is the
    // upstream's mistake, and the client could not read it.
    if http10 && response.body == BodyKind::Chunked {
        return Err(ProxyError::BadResponse(http::HttpError::ChunkedToHttp10));
    }
    let method = if is_head { "HEAD" } else { "GET" };
    // The head was parsed when it arrived; parsing it again here keeps the
    // try protocol-neutral (it returns facts, not borrowed head lines).
    let head = match http::parse_response(&upbuf[..response.head_len], method, &Limits::default()) {
        Ok(Parse::Complete(head)) => head,
        Ok(Parse::Partial) => return Err(ProxyError::BadResponse(http::HttpError::HeadTooLarge)),
        Err(e) => return Err(ProxyError::BadResponse(e)),
    };
    out.clear();
    http::write_downstream_response_edited(&head, keep, http10, edits, out);
    upbuf.drain(..response.head_len);
    Ok(keep)
}

/// Sends `100 Continue`.
pub(super) async fn send_continue<S: ByteStream>(
    down: &mut S,
    limits: &HttpLimits,
) -> Result<(), ProxyError> {
    let mut b = BufPool::take();
    b.extend_from_slice(http::CONTINUE_RESPONSE);
    let (r, back) = timeout(limits.idle_timeout, down.write_owned(b))
        .await
        .map_err(|_| ProxyError::DownstreamTimeout)?;
    BufPool::give(back);
    r.map_err(ProxyError::DownstreamIo)
}

/// Answers with a redirect.
pub(super) async fn redirect<S: ByteStream>(
    ctx: &ShardContext,
    down: &mut S,
    (status, location): (u16, &str),
    keep_alive: bool,
    limits: &HttpLimits,
    at: Counted<'_>,
) -> Result<Next, ProxyError> {
    let mut out = BufPool::take();
    http::write_local_response(status, &[("location", location)], b"", keep_alive, &mut out);
    send_local(ctx, down, out, status, keep_alive, limits, at).await
}

/// Writes a local response for `e`; returns whether to keep the connection.
pub(super) async fn local_response<S: ByteStream>(
    ctx: &ShardContext,
    down: &mut S,
    e: &ProxyError,
    keep_alive: bool,
    limits: &HttpLimits,
    mut at: Counted<'_>,
) -> Result<Next, ProxyError> {
    log::debug!("shard {}: {e}", ctx.id);
    at.done.error = Some(e.label());
    if let ProxyError::Forbidden { rule, .. } = e {
        at.done.rule = Some(rule.clone());
    }
    if matches!(e, ProxyError::SlowRequestBody) {
        ctx.stats.slow_request_bodies.incr();
    }
    let mut out = BufPool::take();
    let Some(status) = e.write_response(keep_alive, &mut out) else {
        BufPool::give(out);
        // Nothing to write; a client that closed before sending a whole
        // request made no request to count.
        if !matches!(e, ProxyError::DownstreamClosed) {
            at.count(ctx, None, 0);
        }
        return Ok(Next::Close);
    };
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

/// A request being answered: its snapshot and what its count and access
/// log line need (status and bytes sent are filled in by [`Counted::count`]).
pub(super) struct Counted<'a> {
    pub(super) snapshot: &'a Snapshot,
    pub(super) done: Finished<'a>,
}

impl<'a> Counted<'a> {
    /// A request that ended before it was read whole (or decided).
    pub(super) fn unread(snapshot: &'a Snapshot, conn: &'a ConnInfo, started: Instant) -> Self {
        Counted {
            snapshot,
            done: Finished {
                conn,
                route: None,
                started,
                status: None,
                grpc_status: None,
                bytes_in: 0,
                bytes_out: 0,
                tries: TriesReport::default(),
                error: None,
                rule: None,
                request: None,
                trace: None,
            },
        }
    }

    /// Counts it as answered with `status` (`None`: unanswered) after
    /// `bytes_out` bytes, and logs it.
    pub(super) fn count(mut self, ctx: &ShardContext, status: Option<u16>, bytes_out: u64) {
        self.done.status = status;
        self.done.bytes_out = bytes_out;
        request_finished(ctx, self.snapshot, self.done);
    }
}
