//! HTTP/2 downstream: one connection's driver ([`serve`]), and each of its
//! streams served by the HTTP/1.1 request path. A TLS listener speaks it
//! when ALPN selects `h2`; a plaintext one with `h2c` on when the
//! connection starts with the HTTP/2 preface ([`prior_knowledge`]).
//!
//! ```text
//! stream ◄─► driver ◄─► io::Pipe ◄─► h2 (frames, HPACK, flow control, limits)
//!                                      │ each request
//!                                      ▼
//!                     exchange::Exchange ─► http1::serve (one request)
//! ```
//!
//! The `h2` crate is the protocol state machine. The driver owns the
//! connection's stream and moves bytes between it and the [`io::Pipe`]
//! `h2` reads and writes; it polls `h2` for new requests and spawns one
//! task per request on the shard. That task runs the very request path an
//! HTTP/1.1 connection runs (`super::http1::serve`) over an
//! [`exchange::Exchange`], which reads as the translated HTTP/1.1 request
//! and turns the response written to it into HTTP/2 frames — so routing,
//! authorization, rate limits, faults, retries, breakers, header edits,
//! redirects, local errors, metrics, access logs and traces are the same
//! code for both protocols, per stream. The cost is one HTTP/1.1 head
//! written and parsed per request inside the gateway.
//!
//! Limits are `h2`'s, set from the listener's `[listeners.http2]`:
//! concurrent streams, header list size, streams reset by the client
//! before we accept them (Rapid Reset, CVE-2023-44487) and resets we are
//! made to send (MadeYouReset, CVE-2025-8671), each breach answered with
//! GOAWAY(ENHANCE_YOUR_CALM) by `h2`. The connection is closed when it
//! has had no stream and no byte for the listener's idle timeout, and
//! shut down gracefully (GOAWAY, in-flight streams finish) when the shard
//! drains or the listener is removed.

pub mod client;
mod exchange;
mod flood;
mod io;
pub(crate) mod prior_knowledge;
pub(crate) mod upstream;

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::RecvStream;
use h2::server::{Connection, Handshake, SendResponse};

use self::exchange::Exchange;
use self::flood::FloodGuard;
use self::io::{H2Io, IoEvent, Moved, Pump};
use super::conn::ConnInfo;
use super::context::ShardContext;
use super::http1;
use super::recheck;
use crate::http::translate::TranslateError;
use crate::net::{ByteStream, Duplex};
use crate::route::{Http2Limits, HttpLimits, Snapshot};
use crate::runtime;

/// How long a connection shutting down gets to finish its streams.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Where the connection stands.
enum Phase {
    /// Waiting for the client's preface and SETTINGS.
    Handshake(Pin<Box<Handshake<H2Io, Bytes>>>),
    /// Boxed: the connection is a large value, and moves once.
    Running(Box<Connection<H2Io, Bytes>>),
}

impl Phase {
    /// Polls `h2`: the handshake's end, a new request, or the end of the
    /// connection.
    fn poll(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Event> {
        match self {
            Phase::Handshake(h) => h.as_mut().poll(cx).map(|r| match r {
                Ok(c) => Event::Established(Box::new(c)),
                Err(e) => Event::Ended(Err(e)),
            }),
            Phase::Running(c) => c.poll_accept(cx).map(|accepted| match accepted {
                Some(Ok((req, respond))) => Event::Accepted(req, respond),
                Some(Err(e)) => Event::Ended(Err(e)),
                None => Event::Ended(Ok(())),
            }),
        }
    }
}

/// What woke the driver.
enum Event {
    Established(Box<Connection<H2Io, Bytes>>),
    Accepted(::http::Request<RecvStream>, SendResponse<Bytes>),
    /// `h2` ended the connection (`Err`: a protocol error or a limit).
    Ended(Result<(), h2::Error>),
    Io(IoEvent),
    /// The shard drains or the listener went away.
    Drain,
    /// Another configuration is in force: the caller is checked again.
    ConfigChanged,
    Timer,
}

/// The `h2` server settings for a listener's limits.
fn builder(limits: &Http2Limits) -> h2::server::Builder {
    let mut b = h2::server::Builder::new();
    b.max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(limits.max_header_list_bytes)
        .max_pending_accept_reset_streams(limits.max_pending_accept_resets)
        .max_local_error_reset_streams(Some(limits.max_local_error_resets))
        .initial_window_size(limits.initial_stream_window)
        .initial_connection_window_size(limits.initial_connection_window);
    b
}

/// Serves HTTP/2 on `down` until the client or a limit ends the
/// connection, or a drain finishes it.
pub async fn serve<S: ByteStream + Duplex>(
    ctx: Rc<ShardContext>,
    mut snapshot: Arc<Snapshot>,
    down: S,
    mut conn: ConnInfo,
) {
    let Some(listener) = snapshot.listener(&conn.listener) else {
        return;
    };
    let limits = listener.limits;
    let (mut pump, io) = Pump::new(down);
    let mut phase = Phase::Handshake(Box::pin(builder(&limits.http2).handshake(io)));
    let mut flood = FloodGuard::new(
        limits.http2.max_control_frames_per_second,
        limits.http2.max_consecutive_empty_frames,
        true,
    );
    // Ended by the flood guard (counted once).
    let mut calmed = false;
    // The preface must arrive within the header timeout.
    let mut deadline: Instant = runtime::now() + limits.header_timeout;
    let mut shutting_down = false;
    ctx.stats.h2_connections.incr();
    let ended: Result<(), String> = loop {
        let event = {
            let mut io = pin!(pump.next());
            let mut drain = pin!(ctx.idle_wakeup(conn.listener.clone()));
            let mut changed = pin!(ctx.config_change(conn.listener.clone(), snapshot.generation));
            let mut timer = pin!(runtime::sleep_until(deadline));
            poll_fn(|cx| {
                // `h2` first: the frames it queues are seen by the pump.
                if let Poll::Ready(e) = phase.poll(cx) {
                    return Poll::Ready(e);
                }
                if let Poll::Ready(e) = io.as_mut().poll(cx) {
                    return Poll::Ready(Event::Io(e));
                }
                if !shutting_down && drain.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Event::Drain);
                }
                if !shutting_down && changed.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Event::ConfigChanged);
                }
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Event::Timer);
                }
                Poll::Pending
            })
            .await
        };
        // The read that did not finish is dropped here (cancel-safe).
        match event {
            Event::Established(c) => {
                phase = Phase::Running(c);
                deadline = runtime::now() + limits.idle_timeout;
            }
            Event::Accepted(request, respond) => {
                ctx.stats.h2_streams.incr();
                ctx.refresh(&mut snapshot);
                // A certificate revoked (or a CA replaced) by a reload: the
                // stream is refused (reset) and the connection goes away.
                if recheck::recheck(&ctx, &snapshot, &mut conn, false).is_err() {
                    drop((request, respond));
                    if let Phase::Running(c) = &mut phase {
                        c.graceful_shutdown();
                    }
                    shutting_down = true;
                    deadline = runtime::now() + SHUTDOWN_GRACE;
                    continue;
                }
                start_stream(&ctx, &snapshot, &conn, &limits, request, respond);
            }
            // Checked at once, not at the next stream: an HTTP/2
            // connection lives long and may sit idle between bursts.
            Event::ConfigChanged => {
                ctx.refresh(&mut snapshot);
                if recheck::recheck(&ctx, &snapshot, &mut conn, false).is_err() {
                    if let Phase::Running(c) = &mut phase {
                        c.graceful_shutdown();
                    }
                    shutting_down = true;
                    deadline = runtime::now() + SHUTDOWN_GRACE;
                }
            }
            Event::Ended(r) => {
                break r.map_err(|e| {
                    // `h2`'s own calm (Rapid Reset…); ours is counted below.
                    if !calmed
                        && e.is_go_away()
                        && e.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM)
                    {
                        ctx.stats.h2_calm_goaways.incr();
                    }
                    format!("HTTP/2: {e}")
                });
            }
            Event::Io(e) => match pump.handle(e) {
                Ok(Moved::Received) => {
                    let flooded = if calmed {
                        Ok(())
                    } else {
                        flood.scan(&pump.received(), runtime::now())
                    };
                    if let Err(f) = flooded {
                        calmed = true;
                        ctx.stats.h2_calm_goaways.incr();
                        log::info!(
                            "shard {}: HTTP/2 connection from {}: {}; GOAWAY(ENHANCE_YOUR_CALM)",
                            ctx.id,
                            conn.peer,
                            f.label()
                        );
                        match &mut phase {
                            // GOAWAY, then the driver ends as `h2` does.
                            Phase::Running(c) if !shutting_down => {
                                c.abrupt_shutdown(h2::Reason::ENHANCE_YOUR_CALM);
                                shutting_down = true;
                                deadline = runtime::now() + Duration::from_secs(1);
                            }
                            _ => break Err(f.label().into()),
                        }
                    } else if !shutting_down && matches!(phase, Phase::Running(_)) {
                        deadline = runtime::now() + limits.idle_timeout;
                    }
                }
                Ok(Moved::Other) => {}
                Err(why) => break Err(why),
            },
            Event::Drain => {
                shutting_down = true;
                deadline = runtime::now() + SHUTDOWN_GRACE;
                match &mut phase {
                    Phase::Running(c) => c.graceful_shutdown(),
                    Phase::Handshake(_) => break Ok(()),
                }
            }
            Event::Timer => match &mut phase {
                Phase::Handshake(_) => {
                    ctx.stats.header_timeouts.incr();
                    break Err("no HTTP/2 preface within the header timeout".into());
                }
                Phase::Running(_) if shutting_down => {
                    break Err("streams still open after the shutdown grace".into());
                }
                // A stream in flight keeps the connection.
                Phase::Running(c) if c.has_streams() => {
                    deadline = runtime::now() + limits.idle_timeout;
                }
                Phase::Running(c) => {
                    ctx.stats.idle_timeouts.incr();
                    c.graceful_shutdown();
                    shutting_down = true;
                    deadline = runtime::now() + SHUTDOWN_GRACE;
                }
            },
        }
    };
    if let Err(why) = ended {
        log::debug!(
            "shard {}: HTTP/2 connection from {} ended: {why}",
            ctx.id,
            conn.peer
        );
    }
    // What `h2` queued last (its GOAWAY) goes out before the close.
    pump.finish().await;
}

/// Starts a task serving one request, or answers a request HTTP/1.1
/// cannot carry.
fn start_stream(
    ctx: &Rc<ShardContext>,
    snapshot: &Arc<Snapshot>,
    conn: &ConnInfo,
    limits: &HttpLimits,
    request: ::http::Request<RecvStream>,
    respond: SendResponse<Bytes>,
) {
    // Every field counts against the listener's limit, each cookie crumb
    // included (they are joined into one line for the HTTP/1.1 path,
    // whose own count would see one).
    if request.headers().len() > limits.max_header_count {
        refuse(respond, 431, "bad_request");
        return;
    }
    match Exchange::new(request, respond) {
        Ok(exchange) => {
            let mut conn = conn.clone();
            conn.http2 = true;
            let (ctx, snapshot) = (ctx.clone(), snapshot.clone());
            // The request path's future (5 KiB) is built on the task's
            // first poll and boxed there: moved once, not on every hop of
            // the spawn (a measured 5-7 % of a gRPC call's CPU).
            runtime::spawn(async move {
                Box::pin(http1::serve(ctx, snapshot, exchange, conn)).await;
            });
        }
        Err((e, respond)) => {
            let (status, label) = match e {
                TranslateError::Connect => (501, "connect_unsupported"),
                TranslateError::FieldValue | TranslateError::NoPath => (400, "bad_request"),
            };
            refuse(respond, status, label);
        }
    }
}

/// Answers a request the gateway will not serve: `status`, no body,
/// `x-meshgate-error: label`.
fn refuse(mut respond: SendResponse<Bytes>, status: u16, label: &'static str) {
    let mut response = ::http::Response::new(());
    *response.status_mut() =
        ::http::StatusCode::from_u16(status).unwrap_or(::http::StatusCode::BAD_REQUEST);
    response
        .headers_mut()
        .insert("x-meshgate-error", ::http::HeaderValue::from_static(label));
    let _ = respond.send_response(response, true);
}

/// Serves HTTP/2 on `stream` (its preface first: prior knowledge, or after
/// ALPN `h2`) with no routing, no limits beyond `h2`'s defaults and no
/// timers: `handle` gets each request on a task of its own. For tools
/// built on the data plane (meshbench's test origin), not for the
/// gateway's listeners, which [`serve`].
pub async fn serve_with<S, F, Fut>(stream: S, handle: F)
where
    S: ByteStream + Duplex,
    F: Fn(::http::Request<RecvStream>, SendResponse<Bytes>) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    let (mut pump, io) = Pump::new(stream);
    let mut phase = Phase::Handshake(Box::pin(h2::server::Builder::new().handshake(io)));
    loop {
        let event = {
            let mut io = pin!(pump.next());
            poll_fn(|cx| {
                if let Poll::Ready(e) = phase.poll(cx) {
                    return Poll::Ready(e);
                }
                io.as_mut().poll(cx).map(Event::Io)
            })
            .await
        };
        match event {
            Event::Established(c) => phase = Phase::Running(c),
            Event::Accepted(request, respond) => {
                runtime::spawn(handle(request, respond));
            }
            Event::Ended(_) => break,
            Event::Io(e) => {
                if pump.handle(e).is_err() {
                    break;
                }
            }
            Event::Drain | Event::Timer | Event::ConfigChanged => {}
        }
    }
    pump.finish().await;
}
