//! `meshbench upstream --h2c`: the origin speaking HTTP/2 by prior
//! knowledge (what an `h2c` cluster of the gateway connects to), on the
//! data plane's HTTP/2 connection driver with the `h2` crate.
//!
//! Every request's body is read whole (released from flow control as it
//! arrives). `/echo` answers with the body; other paths with `--body-size`
//! bytes. A gRPC request (`content-type: application/grpc…`) gets a
//! gRPC-shaped answer: one length-prefixed message of `--body-size` bytes
//! and the trailers `grpc-status: 0`; its injected failures are gRPC ones
//! (trailers-only, `grpc-status: 14`) rather than a 503. Other answers
//! carry trailers too when the request said `te: trailers` (`x-upstream`
//! in them), so trailers are exercised end to end. `--reset-rate` resets
//! the stream (RST_STREAM INTERNAL_ERROR); `--delay-ms` waits first.

use std::future::poll_fn;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ::h2::RecvStream;
use ::h2::server::SendResponse;
use bytes::Bytes;
use dataplane::net::{Plain, Stream};
use dataplane::runtime::{self, TcpStream};

use super::{Ctx, Fault, fault};

/// Serves one HTTP/2 connection.
pub(crate) async fn serve_conn(stream: TcpStream, ctx: Rc<Ctx>) {
    let handler = move |request: http::Request<RecvStream>, respond: SendResponse<Bytes>| {
        answer(request, respond, ctx.clone())
    };
    dataplane::proxy::http2::serve_with(Plain(Stream::from(stream)), handler).await;
}

/// Reads the request body whole; its length, or `None` if the stream broke.
async fn read_body(body: &mut RecvStream, keep: bool, kept: &mut Vec<u8>) -> Option<usize> {
    let mut len = 0;
    while let Some(data) = poll_fn(|cx| body.poll_data(cx)).await {
        let data = data.ok()?;
        let _ = body.flow_control().release_capacity(data.len());
        len += data.len();
        if keep {
            kept.extend_from_slice(&data);
        }
    }
    Some(len)
}

async fn answer(
    request: http::Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    ctx: Rc<Ctx>,
) {
    let grpc = request
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let trailers_asked = request
        .headers()
        .get("te")
        .is_some_and(|v| v.as_bytes() == b"trailers");
    let echo = request.uri().path() == "/echo";
    let (_, mut body) = request.into_parts();
    let mut kept = Vec::new();
    if read_body(&mut body, echo, &mut kept).await.is_none() {
        return;
    }
    if ctx.args.delay_ms > 0 {
        runtime::sleep(Duration::from_millis(ctx.args.delay_ms)).await;
    }
    let mut rng = ctx.rng.take();
    let draw = rng.next_f64();
    ctx.rng.set(rng);
    let c = &ctx.counters;
    let tag = http::HeaderValue::from_str(&ctx.args.tag)
        .unwrap_or_else(|_| http::HeaderValue::from_static("meshbench"));
    match fault(draw, ctx.args.reset_rate, ctx.args.fail_rate) {
        Fault::Reset => {
            c.resets.fetch_add(1, Ordering::Relaxed);
            respond.send_reset(::h2::Reason::INTERNAL_ERROR);
            return;
        }
        Fault::Fail503 => {
            c.failed.fetch_add(1, Ordering::Relaxed);
            c.served.fetch_add(1, Ordering::Relaxed);
            let mut response = http::Response::new(());
            if grpc {
                let h = response.headers_mut();
                h.insert(
                    "content-type",
                    http::HeaderValue::from_static("application/grpc"),
                );
                h.insert("grpc-status", http::HeaderValue::from_static("14"));
                h.insert(
                    "grpc-message",
                    http::HeaderValue::from_static("injected failure"),
                );
            } else {
                *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
            }
            response.headers_mut().insert("x-upstream", tag);
            let _ = respond.send_response(response, true);
            return;
        }
        Fault::None => {}
    }
    let payload: Bytes = if echo {
        Bytes::from(kept)
    } else if grpc {
        // One gRPC message: not compressed, big-endian length, bytes.
        let mut m = Vec::with_capacity(5 + ctx.args.body_size);
        m.push(0);
        m.extend_from_slice(&(ctx.args.body_size as u32).to_be_bytes());
        m.resize(5 + ctx.args.body_size, b'x');
        Bytes::from(m)
    } else {
        ctx.h2_body.clone()
    };
    let mut response = http::Response::new(());
    let h = response.headers_mut();
    h.insert("x-upstream", tag.clone());
    if grpc {
        h.insert(
            "content-type",
            http::HeaderValue::from_static("application/grpc"),
        );
    } else {
        h.insert("content-length", http::HeaderValue::from(payload.len()));
    }
    let with_trailers = grpc || trailers_asked;
    c.served.fetch_add(1, Ordering::Relaxed);
    let Ok(mut send) = respond.send_response(response, false) else {
        return;
    };
    if send_all(&mut send, payload, !with_trailers).await.is_err() || !with_trailers {
        return;
    }
    let mut trailers = http::HeaderMap::new();
    if grpc {
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    } else {
        trailers.insert("x-upstream", tag);
    }
    let _ = send.send_trailers(trailers);
}

/// Sends `data` within the client's flow-control windows.
async fn send_all(
    send: &mut ::h2::SendStream<Bytes>,
    mut data: Bytes,
    end: bool,
) -> Result<(), ::h2::Error> {
    if data.is_empty() {
        return send.send_data(data, end);
    }
    while !data.is_empty() {
        send.reserve_capacity(data.len());
        let granted = match poll_fn(|cx| send.poll_capacity(cx)).await {
            Some(r) => r?,
            None => return Ok(()),
        };
        let n = granted.min(data.len());
        if n == 0 {
            continue;
        }
        let chunk = data.split_to(n);
        send.send_data(chunk, end && data.is_empty())?;
    }
    Ok(())
}
