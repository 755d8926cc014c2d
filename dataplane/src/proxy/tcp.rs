//! Proxy stage, TCP: the connections of a `protocol = "tcp"` listener,
//! forwarded as raw bytes (after TLS, when the listener has it) to the
//! cluster of the listener's one route.
//!
//! Per connection: the route's rate limit (connections per second, keyed
//! like HTTP requests), an endpoint picked by the cluster's balancer
//! (consistent hashing on the client address), a connection within the
//! cluster's breakers, connect failures retried on another endpoint as
//! the route's `retry` allows (only connect failures: once bytes moved, a
//! stream cannot be replayed), then a relay both ways at once until both
//! directions have closed: a side that stops reading stalls only the
//! direction towards it (see [`relay`]). A half-close is passed on (FIN to
//! the other side, TLS close_notify to the client); an error, a TLS end
//! without close_notify (a possible truncation), or the listener's idle
//! timeout without a byte either way aborts both sides (reset). The endpoint's
//! outcome (connect time, or the failure) feeds outlier detection and the
//! latency-aware balancer like an HTTP try.

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::exchange::connect_within_breakers;
use super::http1::ConnInfo;
use super::shard::ShardContext;
use super::traffic::{GaugeGuard, PickInput};
use crate::net::{ByteStream, Duplex, Plain};
use crate::route::{ClusterId, RateKey, Snapshot};
use crate::runtime::{self, BufPool, TcpSender, TcpStream, timeout};
use crate::upstream::hash::hash_key;
use crate::upstream::retry::{Failure, backoff};

/// Serves one connection of a TCP listener.
pub async fn serve<S: ByteStream + Duplex>(
    ctx: Rc<ShardContext>,
    snapshot: Arc<Snapshot>,
    mut down: S,
    info: ConnInfo,
) {
    let Some((up, guard)) = open_upstream(&ctx, &snapshot, &info).await else {
        down.abort();
        return;
    };
    let idle = snapshot
        .listener(&info.listener)
        .map_or(Duration::from_secs(60), |l| l.limits.idle_timeout);
    ctx.stats.tcp_sessions.incr();
    let mut up = Plain(up);
    relay(&ctx, &mut down, &mut up, idle).await;
    drop(up);
    drop(guard);
}

/// Picks an endpoint and connects, retrying connect failures as the route
/// allows. `None` (logged and counted) when no upstream could be had.
async fn open_upstream(
    ctx: &ShardContext,
    snapshot: &Snapshot,
    info: &ConnInfo,
) -> Option<(TcpStream, GaugeGuard)> {
    let listener_index = snapshot.listener_index(&info.listener)?;
    let listener = &snapshot.listeners[listener_index];
    // Validation gives a TCP listener exactly one route.
    let route = listener.routes.first()?;
    let now = runtime::now();
    let cluster_id: ClusterId = {
        let mut traffic = ctx.traffic.borrow_mut();
        traffic.sync(snapshot, now);
        let random = traffic.random();
        let id = route.target.pick(random)?;
        let key: &[u8] = match traffic.rate_key(listener_index, 0) {
            Some(RateKey::SpiffeId) => info.spiffe_id.as_deref().unwrap_or("").as_bytes(),
            _ => b"",
        };
        if traffic.admit(listener_index, 0, key, now).is_err() {
            ctx.stats.rate_limited.incr();
            log::debug!(
                "listener {:?}: connection from {} over route {:?}'s rate limit",
                info.listener,
                info.peer,
                route.name
            );
            return None;
        }
        id
    };
    let cluster = snapshot.cluster(cluster_id);
    let hash = match info.peer.ip() {
        IpAddr::V4(ip) => hash_key(&ip.octets()),
        IpAddr::V6(ip) => hash_key(&ip.octets()),
    };
    let retry = route
        .retry
        .filter(|r| r.on.retries(Failure::ConnectFailure));
    let attempts = retry.map_or(0, |r| r.attempts);
    let mut avoid = None;
    // Held while this connection is retrying: the cluster's `max_retries`
    // breaker and retry budget bound retries across connections, as for
    // HTTP (open connections stand for requests in the budget).
    let mut retrying: Option<GaugeGuard> = None;
    for attempt in 0..=attempts {
        if attempt > 0 && retrying.is_none() {
            let traffic = ctx.traffic.borrow();
            let state = &traffic.clusters[cluster_id.0 as usize];
            let limits = cluster.limits;
            let (active, in_retry) = (state.connections.get(), state.active_retries.get());
            if in_retry < traffic.share(limits.max_retries)
                && limits.retry_budget.allows(active, in_retry)
            {
                retrying = Some(state.active_retries.enter());
            } else {
                ctx.stats.retry_overflows.incr();
                return None;
            }
        }
        if attempt > 0 {
            ctx.stats.retries.incr();
            if let Some(r) = retry {
                let random = ctx.traffic.borrow_mut().random();
                runtime::sleep(backoff(attempt - 1, r.backoff_base, r.backoff_max, random)).await;
            }
        }
        let start = runtime::now();
        let picked =
            ctx.traffic
                .borrow_mut()
                .pick(snapshot, cluster_id, PickInput { hash, avoid }, start);
        let Some(endpoint) = picked else {
            log::debug!("cluster {:?} has no endpoint", cluster.name);
            return None;
        };
        let addr = cluster.endpoints[endpoint];
        let result =
            connect_within_breakers(ctx, snapshot, cluster_id, addr, cluster.connect_timeout).await;
        let end = runtime::now();
        let took = end.saturating_duration_since(start);
        match result {
            Ok(conn) => {
                ctx.traffic
                    .borrow_mut()
                    .record(snapshot, cluster_id, endpoint, false, took, end);
                return Some(conn);
            }
            Err(e) => {
                if matches!(e, super::ProxyError::ConnectTimeout(_)) {
                    ctx.stats.connect_timeouts.incr();
                }
                let endpoint_fault = matches!(
                    e,
                    super::ProxyError::ConnectFailed { .. } | super::ProxyError::ConnectTimeout(_)
                );
                if endpoint_fault {
                    ctx.traffic
                        .borrow_mut()
                        .record(snapshot, cluster_id, endpoint, true, took, end);
                }
                log::debug!(
                    "listener {:?}: {} for {}: {e}",
                    info.listener,
                    cluster.name,
                    info.peer
                );
                if !endpoint_fault {
                    // A breaker: another try would meet it too.
                    return None;
                }
                avoid = Some(endpoint);
            }
        }
    }
    None
}

/// A send in flight to one side: the future owns its buffer and holds the
/// descriptor open; `bytes` is the plaintext it carries (for the counters).
/// A send's future: it owns the buffer and gives it back with the result.
type SendFuture = Pin<Box<dyn Future<Output = (io::Result<()>, Vec<u8>)>>>;

struct Sending {
    future: SendFuture,
    bytes: usize,
    /// A FIN follows once this (close_notify or nothing) is sent.
    then_shutdown: bool,
}

/// One direction of the relay: bytes read from one side, sent to the other.
#[derive(Default)]
struct Way {
    /// The source side read 0 (closed its sending side).
    source_done: bool,
    /// The FIN went to the destination.
    shut: bool,
    sending: Option<Sending>,
}

/// What woke the relay.
enum Event {
    ReadDown(io::Result<usize>),
    ReadUp(io::Result<usize>),
    SentUp(io::Result<()>, Vec<u8>),
    SentDown(io::Result<()>, Vec<u8>),
}

/// Copies both ways at once until both directions are closed: a side that
/// stops reading stalls only the direction towards it (its source is not
/// read while a send to it is pending), never the other one. Aborts both
/// sides on an error, on a TLS end without close_notify (a possible
/// truncation), or when nothing moved either way for `idle`.
async fn relay<D, U>(ctx: &ShardContext, down: &mut D, up: &mut U, idle: Duration)
where
    D: ByteStream + Duplex,
    U: ByteStream + Duplex,
{
    let (down_tx, up_tx) = (down.sender(), up.sender());
    let mut to_up = Way::default();
    let mut to_down = Way::default();
    let mut from_down = BufPool::take();
    let mut from_up = BufPool::take();
    let outcome: Result<(), &str> = loop {
        // A direction whose source closed ends with our close (TLS
        // close_notify) and a FIN once its last bytes went out.
        for (way, dst, tx) in [
            (&mut to_up, &mut *up as &mut dyn Duplex, &up_tx),
            (&mut to_down, &mut *down as &mut dyn Duplex, &down_tx),
        ] {
            if way.source_done && !way.shut && way.sending.is_none() {
                let closing = dst.closing_bytes();
                if closing.is_empty() {
                    let _ = tx.shutdown_write();
                    way.shut = true;
                } else {
                    way.sending = Some(Sending {
                        future: Box::pin(tx.send_owned(closing)),
                        bytes: 0,
                        then_shutdown: true,
                    });
                }
            }
        }
        if to_up.shut && to_down.shut {
            break Ok(());
        }
        let read_down = !to_up.source_done && to_up.sending.is_none();
        let read_up = !to_down.source_done && to_down.sending.is_none();
        let event = {
            let mut down_read = std::pin::pin!(async {
                if read_down {
                    down.read_into(&mut from_down).await
                } else {
                    std::future::pending::<io::Result<usize>>().await
                }
            });
            let mut up_read = std::pin::pin!(async {
                if read_up {
                    up.read_into(&mut from_up).await
                } else {
                    std::future::pending::<io::Result<usize>>().await
                }
            });
            let (to_up_send, to_down_send) = (&mut to_up.sending, &mut to_down.sending);
            timeout(
                idle,
                std::future::poll_fn(|cx| {
                    use std::task::Poll;
                    if let Some(s) = to_up_send.as_mut()
                        && let Poll::Ready((r, buf)) = s.future.as_mut().poll(cx)
                    {
                        return Poll::Ready(Event::SentUp(r, buf));
                    }
                    if let Some(s) = to_down_send.as_mut()
                        && let Poll::Ready((r, buf)) = s.future.as_mut().poll(cx)
                    {
                        return Poll::Ready(Event::SentDown(r, buf));
                    }
                    if let Poll::Ready(r) = down_read.as_mut().poll(cx) {
                        return Poll::Ready(Event::ReadDown(r));
                    }
                    if let Poll::Ready(r) = up_read.as_mut().poll(cx) {
                        return Poll::Ready(Event::ReadUp(r));
                    }
                    Poll::Pending
                }),
            )
            .await
        };
        // The reads that did not finish are dropped here (cancel-safe).
        let event = match event {
            Ok(event) => event,
            Err(_) => {
                ctx.stats.idle_timeouts.incr();
                break Err("no byte either way within the idle timeout");
            }
        };
        match event {
            Event::ReadDown(Ok(0)) => {
                if !down.closed_cleanly() {
                    break Err("downstream ended without TLS close_notify");
                }
                to_up.source_done = true;
            }
            Event::ReadUp(Ok(0)) => {
                if !up.closed_cleanly() {
                    break Err("upstream ended uncleanly");
                }
                to_down.source_done = true;
            }
            Event::ReadDown(Ok(n)) => match up.wire_bytes(std::mem::take(&mut from_down)) {
                Ok(wire) => {
                    to_up.sending = Some(Sending {
                        future: Box::pin(up_tx.send_owned(wire)),
                        bytes: n,
                        then_shutdown: false,
                    })
                }
                Err(_) => break Err("upstream seal"),
            },
            Event::ReadUp(Ok(n)) => match down.wire_bytes(std::mem::take(&mut from_up)) {
                Ok(wire) => {
                    to_down.sending = Some(Sending {
                        future: Box::pin(down_tx.send_owned(wire)),
                        bytes: n,
                        then_shutdown: false,
                    })
                }
                Err(_) => break Err("downstream seal"),
            },
            Event::ReadDown(Err(_)) => break Err("downstream read"),
            Event::ReadUp(Err(_)) => break Err("upstream read"),
            Event::SentUp(r, buf) => {
                if let Err(why) = sent(&mut to_up, r, buf, &up_tx, &ctx.stats.tcp_bytes_up) {
                    break Err(why);
                }
            }
            Event::SentDown(r, buf) => {
                if let Err(why) = sent(&mut to_down, r, buf, &down_tx, &ctx.stats.tcp_bytes_down) {
                    break Err(why);
                }
            }
        }
    };
    if let Err(why) = outcome {
        log::debug!("shard {}: tcp relay ended: {why}", ctx.id);
        down.abort();
        up.abort();
    }
    // Sends still in flight are cancelled before the streams close.
    drop(to_up);
    drop(to_down);
    BufPool::give(from_down);
    BufPool::give(from_up);
}

/// A send of `way` completed: count its bytes, send the FIN it was waiting
/// for, recycle the buffer.
fn sent(
    way: &mut Way,
    result: io::Result<()>,
    mut buf: Vec<u8>,
    tx: &TcpSender,
    counter: &crate::telemetry::Counter,
) -> Result<(), &'static str> {
    let done = way.sending.take();
    buf.clear();
    BufPool::give(buf);
    result.map_err(|_| "send failed")?;
    if let Some(s) = done {
        counter.add(s.bytes as u64);
        if s.then_shutdown {
            let _ = tx.shutdown_write();
            way.shut = true;
        }
    }
    Ok(())
}
