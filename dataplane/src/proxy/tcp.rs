//! Proxy stage, TCP: the connections of a `protocol = "tcp"` listener,
//! forwarded as raw bytes (after TLS, when the listener has it) to the
//! cluster of the listener's one route.
//!
//! Per connection: decide (`decide_connection`: the route's cluster and
//! its rate limit, connections per second, keyed like HTTP requests), then
//! the tries (`run_tries` with `ConnectTry`: an endpoint picked by the
//! cluster's balancer — consistent hashing on the client address —, a
//! connection within the cluster's breakers, connect failures retried on
//! another endpoint as the route's `retry` and the retry budget allow: once
//! bytes moved a stream cannot be replayed), then the relay both ways
//! (`relay`). The endpoint's outcome (connect time, or the failure) feeds
//! outlier detection and the latency-aware balancer like an HTTP try.
//!
//! Uses `super::decide`, `super::tries`, `super::connect`,
//! `super::relay` and `net`.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::conn::ConnInfo;
use super::connect::connect_within_breakers;
use super::context::{PooledConn, ShardContext};
use super::decide::{RouteRef, decide_connection};
use super::error::ProxyError;
use super::observe::{Finished, session_finished};
use super::relay::{Relayed, relay};
use super::tracing::{self, RequestTrace};
use super::traffic::GaugeGuard;
use super::tries::{Attempt, TriesReport, TryFailed, TryRules, run_tries};
use crate::net::{ByteStream, Duplex};
use crate::route::{ClusterId, Snapshot};
use crate::runtime;

/// Serves one connection of a TCP listener.
pub async fn serve<S: ByteStream + Duplex>(
    ctx: Rc<ShardContext>,
    snapshot: Arc<Snapshot>,
    mut down: S,
    mut conn: ConnInfo,
) {
    let started = runtime::precise_now();
    let mut opened = Opened {
        trace: snapshot
            .tracing
            .as_deref()
            .map(|spec| tracing::start_session(&ctx, spec)),
        ..Opened::default()
    };
    let (up, guard, _admitted) = match open_upstream(&ctx, &snapshot, &conn, &mut opened).await {
        Ok(((up, guard), admitted)) => (up, guard, admitted),
        Err(refused) => {
            match refused {
                // Refused by authorization: closed cleanly before any byte
                // went anywhere (TLS close_notify, FIN).
                Refused::Forbidden(_) => {
                    let _ = runtime::timeout(Duration::from_secs(1), down.close_write()).await;
                }
                Refused::Other(_) => down.abort(),
            }
            let (error, rule) = match refused {
                Refused::Forbidden(rule) => ("forbidden", Some(rule)),
                Refused::Other(label) => (label, None),
            };
            let finished = opened.finished(&conn, started, Relayed::default(), Some(error), rule);
            session_finished(&ctx, &snapshot, finished);
            return;
        }
    };
    let idle = snapshot
        .listener(&conn.listener)
        .map_or(Duration::from_secs(60), |l| l.limits.idle_timeout);
    ctx.stats.tcp_sessions.incr();
    let mut up = up;
    let relayed = relay(&ctx, &mut conn, &mut down, &mut up, idle).await;
    drop(up);
    drop(guard);
    let finished = opened.finished(&conn, started, relayed, relayed.aborted, None);
    session_finished(&ctx, &snapshot, finished);
}

/// Why a connection gets no upstream.
enum Refused {
    /// An authorization rule (named) refused the caller.
    Forbidden(Arc<str>),
    /// Rate limit, no endpoint, breakers, connect failures (the error's
    /// label).
    Other(&'static str),
}

/// What deciding and connecting found, for the session's log and trace.
#[derive(Default)]
struct Opened {
    route: Option<RouteRef>,
    tries: TriesReport,
    /// The session's trace, when `[tracing]` is on: a server span for the
    /// session and a client span per connect try, when sampled.
    trace: Option<RequestTrace>,
}

impl Opened {
    fn finished<'a>(
        self,
        conn: &'a ConnInfo,
        started: Instant,
        relayed: Relayed,
        error: Option<&'static str>,
        rule: Option<Arc<str>>,
    ) -> Finished<'a> {
        Finished {
            conn,
            route: self.route,
            started,
            status: None,
            grpc_status: None,
            bytes_in: relayed.up,
            bytes_out: relayed.down,
            tries: self.tries,
            error,
            rule,
            request: None,
            trace: self.trace,
        }
    }
}

/// Decides the connection and connects upstream; the guard counts the
/// connection as a request in flight of its cluster while it lasts (the
/// retry budget is a share of those). `Err` (logged and counted) when no
/// upstream is to be had.
async fn open_upstream(
    ctx: &ShardContext,
    snapshot: &Snapshot,
    conn: &ConnInfo,
    opened: &mut Opened,
) -> Result<(PooledConn, GaugeGuard), Refused> {
    let decided = {
        let mut traffic = ctx.traffic.borrow_mut();
        decide_connection(snapshot, &mut traffic, conn, runtime::now())
    };
    let target = match decided {
        Ok(t) => t,
        Err(e) => {
            if matches!(e, ProxyError::RateLimited { .. }) {
                ctx.stats.rate_limited.incr();
            }
            ctx.count_forbidden(&e, snapshot, &conn.listener);
            if let ProxyError::Forbidden { rule, .. } = &e {
                log::info!(
                    "listener {:?}: connection from {} ({}) refused: {e}",
                    conn.listener,
                    conn.peer,
                    conn.spiffe_id.as_deref().unwrap_or("no identity"),
                );
                return Err(Refused::Forbidden(rule.clone()));
            }
            log::debug!(
                "listener {:?}: connection from {} refused: {e}",
                conn.listener,
                conn.peer
            );
            return Err(Refused::Other(e.label()));
        }
    };
    let route = snapshot.listeners[target.listener]
        .routes
        .first()
        .ok_or(Refused::Other("no_route"))?;
    opened.route = Some((0, target.cluster));
    let rules = TryRules {
        cluster: target.cluster,
        hash: target.hash,
        deadline: None,
        retry: route.retry,
        traced: opened.trace.as_ref().is_some_and(|t| t.records),
    };
    let mut connect = ConnectTry {
        ctx,
        snapshot,
        cluster: target.cluster,
    };
    match run_tries(ctx, snapshot, rules, &mut connect, &mut opened.tries).await {
        Ok(up) => Ok((up, target.admitted)),
        Err(e) => {
            log::debug!(
                "listener {:?}: {} for {}: {e}",
                conn.listener,
                snapshot.cluster(target.cluster).name,
                conn.peer
            );
            Err(Refused::Other(e.label()))
        }
    }
}

/// A TCP connection's try: a new connection to the endpoint.
struct ConnectTry<'a> {
    ctx: &'a ShardContext,
    snapshot: &'a Snapshot,
    cluster: ClusterId,
}

impl Attempt for ConnectTry<'_> {
    type Ok = PooledConn;

    async fn attempt(
        &mut self,
        addr: SocketAddr,
        _fresh: bool,
        _deadline: Option<Instant>,
    ) -> Result<PooledConn, TryFailed> {
        let timeout = self.snapshot.cluster(self.cluster).connect_timeout;
        connect_within_breakers(self.ctx, self.snapshot, self.cluster, addr, timeout)
            .await
            .map_err(TryFailed::new)
    }

    fn status(_: &PooledConn) -> Option<u16> {
        None
    }

    /// Nothing was sent before the connection: a connect failure can
    /// always be tried elsewhere.
    fn replayable(&self) -> bool {
        true
    }

    fn resend_on_fresh_connection(&self) -> bool {
        false
    }
}
