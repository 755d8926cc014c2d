//! Upstream connections for a try: a pooled idle one to the endpoint when
//! it is still usable, or a new one through the shard's stack within the
//! cluster's `max_connections` and `max_pending` breakers (each open
//! connection counted by a gauge guard that travels with it), with TLS
//! opened on it when the cluster has `[clusters.tls]` — TCP connect and
//! handshake together within `connect_timeout_ms`.
//!
//! Uses `net` (the stack, streams), [`super::context`] (pool, traffic
//! state, counters) and the runtime's clock and timers.

use std::net::SocketAddr;
use std::time::Duration;

use super::context::{PooledConn, ShardContext};
use super::error::ProxyError;
use super::http2::client::{self as h2_client, Acquire};
use super::http2::upstream::UpstreamStream;
use super::traffic::GaugeGuard;
use super::upstream_conn::{UpstreamConn, UpstreamIo};
use crate::net::{Plain, Stream};
use crate::route::{ClusterId, Snapshot};
use crate::runtime::{self, timeout_at};
use crate::tls::{ClientTls, HandshakeError, TlsStream};

/// An upstream for one HTTP try.
pub(crate) struct Upstream {
    pub(crate) io: UpstreamIo,
    /// The connection's place in its cluster's `connections` gauge, which
    /// goes back to the pool with it (`None` for an HTTP/2 stream: its
    /// connection's driver holds it).
    pub(crate) guard: Option<GaugeGuard>,
    /// It came from the pool (a silent failure on it may be the upstream
    /// having just closed it).
    pub(crate) reused: bool,
}

/// A pooled connection to `addr` (unless `fresh`) younger than
/// `pool_idle`, or a new one within the breakers; for an HTTP/2 cluster,
/// a stream on a live connection to `addr` (unless `fresh`), or on a new
/// one.
pub(crate) async fn upstream(
    ctx: &ShardContext,
    snapshot: &Snapshot,
    cluster: ClusterId,
    addr: SocketAddr,
    fresh: bool,
    pool_idle: Duration,
) -> Result<Upstream, ProxyError> {
    let protocol = snapshot.cluster(cluster).protocol;
    if protocol.is_http2() {
        return Box::pin(h2_stream(ctx, snapshot, cluster, addr, fresh)).await;
    }
    if !fresh {
        let pooled = ctx
            .upstreams
            .borrow_mut()
            .take(addr, runtime::now(), pool_idle, |(c, _)| c.is_reusable());
        if let Some((conn, guard)) = pooled {
            ctx.stats.upstream_reused.incr();
            return Ok(Upstream {
                io: conn.into(),
                guard: Some(guard),
                reused: true,
            });
        }
    }
    let connect_timeout = snapshot.cluster(cluster).connect_timeout;
    let (conn, guard) =
        connect_within_breakers(ctx, snapshot, cluster, addr, connect_timeout).await?;
    Ok(Upstream {
        io: conn.into(),
        guard: Some(guard),
        reused: false,
    })
}

/// A new stream to `addr` of HTTP/2 cluster `id`: on a live connection
/// with room for it (unless `fresh`), else on a new connection — within
/// the breakers, with ALPN `h2` over TLS — whose driver task starts now.
async fn h2_stream(
    ctx: &ShardContext,
    snapshot: &Snapshot,
    id: ClusterId,
    addr: SocketAddr,
    fresh: bool,
) -> Result<Upstream, ProxyError> {
    let cluster = snapshot.cluster(id);
    let scheme = if cluster.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let mut reused = true;
    let conn = loop {
        // The guard (if any) tells requests waiting for this opening when
        // it ended, however it ended.
        let _opening = match (!fresh).then(|| ctx.h2_upstreams.borrow_mut().acquire(addr)) {
            Some(Acquire::Ready(conn)) => {
                ctx.stats.upstream_reused.incr();
                break conn;
            }
            // Bounded by the opener's connect timeout.
            Some(Acquire::Wait(opening)) => {
                opening.wait().await;
                continue;
            }
            Some(Acquire::Open(guard)) => Some(guard),
            None => None,
        };
        reused = false;
        let (conn, guard) =
            connect_within_breakers(ctx, snapshot, id, addr, cluster.connect_timeout).await?;
        if let UpstreamConn::Tls(tls) = &conn
            && tls.alpn() != Some(b"h2")
        {
            ctx.stats.upstream_connect_failures.incr();
            return Err(ProxyError::ConnectFailed {
                addr,
                source: std::io::Error::other(format!(
                    "cluster {:?}: the endpoint did not select h2 by ALPN",
                    cluster.name
                )),
            });
        }
        let opened = h2_client::open(conn, guard, cluster.pool.idle_timeout, ctx.stats.clone())
            .await
            .map_err(|e| ProxyError::ConnectFailed {
                addr,
                source: std::io::Error::other(e),
            })?;
        ctx.h2_upstreams.borrow_mut().add(addr, opened.clone());
        break opened;
    };
    ctx.stats.h2_upstream_streams.incr();
    Ok(Upstream {
        io: UpstreamIo::H2(Box::new(UpstreamStream::new(&conn, scheme))),
        guard: None,
        reused,
    })
}

/// A new connection to endpoint `addr` of cluster `id`, within the
/// cluster's `max_connections` and `max_pending` breakers; the guard counts
/// it as open until dropped.
pub(crate) async fn connect_within_breakers(
    ctx: &ShardContext,
    snapshot: &Snapshot,
    id: ClusterId,
    addr: SocketAddr,
    connect_timeout: Duration,
) -> Result<PooledConn, ProxyError> {
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
    let deadline = runtime::now() + connect_timeout;
    let connected: Result<std::io::Result<Stream>, _> =
        timeout_at(deadline, ctx.stack.connect(addr)).await;
    let stream = match connected {
        Ok(Ok(stream)) => stream,
        Ok(Err(source)) => {
            ctx.stats.upstream_connect_failures.incr();
            return Err(ProxyError::ConnectFailed { addr, source });
        }
        Err(_) => {
            ctx.stats.upstream_connect_failures.incr();
            return Err(ProxyError::ConnectTimeout(addr));
        }
    };
    let conn = match &cluster.tls {
        None => UpstreamConn::Plain(Plain(stream)),
        // Boxed: the handshake's future is large and is needed once per
        // connection; inline, it would grow every request's future.
        Some(tls) => Box::pin(originate_tls(ctx, &cluster.name, tls, stream, deadline)).await?,
    };
    Ok((conn, connections.enter()))
}

/// Opens TLS on a new connection to an endpoint of a `[clusters.tls]`
/// cluster, by `deadline`; counts the handshake and its failures.
async fn originate_tls(
    ctx: &ShardContext,
    cluster: &str,
    tls: &ClientTls,
    stream: Stream,
    deadline: std::time::Instant,
) -> Result<UpstreamConn, ProxyError> {
    let addr = stream.peer_addr();
    let left = deadline.saturating_duration_since(runtime::now());
    match TlsStream::connect(stream, tls, addr, left).await {
        Ok(conn) => {
            ctx.stats.upstream_tls_handshakes.incr();
            if conn.resumed() {
                ctx.stats.upstream_tls_resumed.incr();
            }
            Ok(UpstreamConn::Tls(Box::new(conn)))
        }
        Err(source) => {
            ctx.stats.upstream_connect_failures.incr();
            ctx.stats.upstream_tls_failures.incr();
            // Logged at the 1st, 2nd, 4th, 8th… failure of the shard: a
            // broken upstream certificate is seen at once, not per request.
            if ctx.stats.upstream_tls_failures.get().is_power_of_two() {
                log::warn!(
                    "shard {}: TLS to upstream {addr} of cluster {cluster:?}: {source}",
                    ctx.id,
                );
            }
            if matches!(source, HandshakeError::Timeout) {
                return Err(ProxyError::ConnectTimeout(addr));
            }
            Err(ProxyError::UpstreamTls {
                cluster: cluster.to_owned(),
                addr,
                source: Box::new(source),
            })
        }
    }
}
