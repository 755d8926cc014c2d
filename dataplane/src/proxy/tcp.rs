//! Proxy stage, TCP: the connections of a `protocol = "tcp"` listener,
//! forwarded as raw bytes (after TLS, when the listener has it) to the
//! cluster of the listener's one route.
//!
//! Per connection: the route's rate limit (connections per second, keyed
//! like HTTP requests), an endpoint picked by the cluster's balancer
//! (consistent hashing on the client address), a connection within the
//! cluster's breakers, connect failures retried on another endpoint as
//! the route's `retry` allows (only connect failures: once bytes moved, a
//! stream cannot be replayed), then a relay both ways until both sides have
//! closed. A half-close is passed on (FIN to the other side, TLS
//! close_notify to the client); an error or the listener's idle timeout
//! without a byte either way aborts both sides (reset). The endpoint's
//! outcome (connect time, or the failure) feeds outlier detection and the
//! latency-aware balancer like an HTTP try.

use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::exchange::connect_within_breakers;
use super::http1::ConnInfo;
use super::shard::ShardContext;
use super::traffic::{GaugeGuard, PickInput};
use crate::net::{ByteStream, Plain};
use crate::route::{ClusterId, RateKey, Snapshot};
use crate::runtime::{self, BufPool, TcpStream, timeout};
use crate::upstream::hash::hash_key;
use crate::upstream::retry::{Failure, backoff};

/// Serves one connection of a TCP listener.
pub async fn serve<S: ByteStream>(
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
    relay(&ctx, &mut down, Plain(up), idle).await;
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
    for attempt in 0..=attempts {
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

/// Which side a relay step came from.
enum Step {
    Down(std::io::Result<usize>),
    Up(std::io::Result<usize>),
}

/// Copies both ways until both sides closed; aborts both on an error or
/// when nothing moved for `idle`.
async fn relay<D: ByteStream, U: ByteStream>(
    ctx: &ShardContext,
    down: &mut D,
    mut up: U,
    idle: Duration,
) {
    let mut from_down = BufPool::take();
    let mut from_up = BufPool::take();
    let (mut down_open, mut up_open) = (true, true);
    // Which side is polled first alternates, so a side that always has
    // bytes cannot starve the other.
    let mut down_first = true;
    let outcome = loop {
        down_first = !down_first;
        if !down_open && !up_open {
            break Ok(());
        }
        from_down.clear();
        from_up.clear();
        // Both reads are cancel-safe: the one that loses the race keeps
        // its bytes for the next turn.
        let step = timeout(idle, async {
            match (down_open, up_open) {
                (true, true) => {
                    first(
                        down_first,
                        down.read_into(&mut from_down),
                        up.read_into(&mut from_up),
                    )
                    .await
                }
                (true, false) => Step::Down(down.read_into(&mut from_down).await),
                _ => Step::Up(up.read_into(&mut from_up).await),
            }
        })
        .await;
        let step = match step {
            Ok(step) => step,
            Err(_) => {
                ctx.stats.idle_timeouts.incr();
                break Err("idle timeout");
            }
        };
        match step {
            Step::Down(Ok(0)) => {
                down_open = false;
                if up.close_write().await.is_err() {
                    break Err("upstream half-close");
                }
            }
            Step::Up(Ok(0)) => {
                up_open = false;
                if down.close_write().await.is_err() {
                    break Err("downstream half-close");
                }
            }
            Step::Down(Ok(n)) => {
                ctx.stats.tcp_bytes_up.add(n as u64);
                let buf = std::mem::take(&mut from_down);
                let (r, back) = match timeout(idle, up.write_owned(buf)).await {
                    Ok(done) => done,
                    Err(_) => break Err("upstream write timeout"),
                };
                from_down = back;
                if r.is_err() {
                    break Err("upstream write");
                }
            }
            Step::Up(Ok(n)) => {
                ctx.stats.tcp_bytes_down.add(n as u64);
                let buf = std::mem::take(&mut from_up);
                let (r, back) = match timeout(idle, down.write_owned(buf)).await {
                    Ok(done) => done,
                    Err(_) => break Err("downstream write timeout"),
                };
                from_up = back;
                if r.is_err() {
                    break Err("downstream write");
                }
            }
            Step::Down(Err(_)) => break Err("downstream read"),
            Step::Up(Err(_)) => break Err("upstream read"),
        }
    };
    if let Err(why) = outcome {
        log::debug!("shard {}: tcp relay ended: {why}", ctx.id);
        down.abort();
        up.abort();
    }
    BufPool::give(from_down);
    BufPool::give(from_up);
}

/// The first of the two reads to finish (the other is dropped, which the
/// reads allow); `down_first` says which is polled first.
async fn first<A, B>(down_first: bool, down: A, up: B) -> Step
where
    A: std::future::Future<Output = std::io::Result<usize>>,
    B: std::future::Future<Output = std::io::Result<usize>>,
{
    use std::task::Poll;
    let mut down = std::pin::pin!(down);
    let mut up = std::pin::pin!(up);
    std::future::poll_fn(|cx| {
        for turn in 0..2 {
            if (turn == 0) == down_first {
                if let Poll::Ready(v) = down.as_mut().poll(cx) {
                    return Poll::Ready(Step::Down(v));
                }
            } else if let Poll::Ready(v) = up.as_mut().poll(cx) {
                return Poll::Ready(Step::Up(v));
            }
        }
        Poll::Pending
    })
    .await
}
