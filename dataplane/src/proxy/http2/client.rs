//! HTTP/2 upstream connections: a cluster with `protocol = "h2"` (over
//! TLS, ALPN `h2`) or `"h2c"` (plaintext, prior knowledge) gets
//! multiplexed connections per endpoint per shard, opened on demand.
//!
//! [`H2Pool`] holds the shard's connections by endpoint; a request takes a
//! live one with room for another stream (the peer's
//! `SETTINGS_MAX_CONCURRENT_STREAMS`), waits for the one being opened to
//! that endpoint, or opens one more — so a burst of requests to a new
//! endpoint shares one connection instead of racing to open one each. Each connection
//! is driven by a task of its own ([`drive`]): the same byte [`Pump`] as
//! downstream connections, polling `h2`'s client `Connection`. The task
//! holds the connection's place in the cluster's `max_connections` gauge,
//! ends the connection after the pool's idle timeout without a stream,
//! and marks it closed for the pool when `h2` ends it (an error, or the
//! upstream's GOAWAY once its last stream finished).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use h2::client::{Connection, SendRequest};

use super::io::{H2Io, IoEvent, Pump};
use crate::net::{ByteStream, Duplex};
use crate::proxy::traffic::GaugeGuard;
use crate::runtime;
use crate::telemetry::ShardStats;

/// Our receive windows on upstream connections: room for a few large
/// responses in flight without waiting on WINDOW_UPDATEs.
const STREAM_WINDOW: u32 = 1024 * 1024;
const CONNECTION_WINDOW: u32 = 4 * 1024 * 1024;

/// What a connection's driver, the pool and the streams on it share.
#[derive(Default)]
struct Shared {
    /// The connection ended: the pool drops it.
    closed: Cell<bool>,
    /// Requests on it now (each [`StreamSlot`] alive).
    streams: Cell<usize>,
}

/// One multiplexed connection to an endpoint, as the pool hands it out.
#[derive(Clone)]
pub(crate) struct H2Conn {
    pub(crate) send: SendRequest<Bytes>,
    shared: Rc<Shared>,
}

impl H2Conn {
    fn usable(&self) -> bool {
        !self.shared.closed.get()
            && self.shared.streams.get() < self.send.current_max_send_streams()
    }

    /// Counts a request on this connection until the slot is dropped.
    pub(crate) fn stream_slot(&self) -> StreamSlot {
        self.shared.streams.set(self.shared.streams.get() + 1);
        StreamSlot(self.shared.clone())
    }
}

/// A request's place on its connection (the pool's concurrency count and
/// the driver's idle timer read it).
pub(crate) struct StreamSlot(Rc<Shared>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.streams.set(self.0.streams.get().saturating_sub(1));
    }
}

/// A connection being opened to an endpoint; requests that find no live
/// connection wait for it.
#[derive(Default)]
pub(crate) struct Opening {
    done: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

impl Opening {
    /// Waits until the opening ended (either way).
    pub(crate) async fn wait(&self) {
        poll_fn(|cx| {
            if self.done.get() {
                Poll::Ready(())
            } else {
                self.waiters.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

/// Held by the request opening a connection; dropping it (success,
/// failure or cancellation) wakes the requests waiting for it.
pub(crate) struct OpeningGuard(Rc<Opening>);

impl Drop for OpeningGuard {
    fn drop(&mut self) {
        self.0.done.set(true);
        for waker in self.0.waiters.borrow_mut().drain(..) {
            waker.wake();
        }
    }
}

/// What a request does for a connection.
pub(crate) enum Acquire {
    /// Use this live connection.
    Ready(H2Conn),
    /// Wait for the connection being opened, then ask again.
    Wait(Rc<Opening>),
    /// Open one (and add it to the pool); the guard tells the waiters.
    Open(OpeningGuard),
}

/// The shard's HTTP/2 upstream connections by endpoint.
#[derive(Default)]
pub(crate) struct H2Pool {
    by_endpoint: HashMap<SocketAddr, Vec<H2Conn>>,
    opening: HashMap<SocketAddr, Rc<Opening>>,
}

impl H2Pool {
    /// A live connection to `addr` with room for one more stream.
    pub(crate) fn take(&mut self, addr: SocketAddr) -> Option<H2Conn> {
        let conns = self.by_endpoint.get_mut(&addr)?;
        conns.retain(|c| !c.shared.closed.get());
        conns.iter().find(|c| c.usable()).cloned()
    }

    /// A live connection to `addr`, the one being opened to wait for, or
    /// the task of opening one.
    pub(crate) fn acquire(&mut self, addr: SocketAddr) -> Acquire {
        if let Some(conn) = self.take(addr) {
            return Acquire::Ready(conn);
        }
        match self.opening.get(&addr) {
            Some(o) if !o.done.get() => Acquire::Wait(o.clone()),
            _ => {
                let opening = Rc::new(Opening::default());
                self.opening.insert(addr, opening.clone());
                Acquire::Open(OpeningGuard(opening))
            }
        }
    }

    /// Offers `conn` to later requests.
    pub(crate) fn add(&mut self, addr: SocketAddr, conn: H2Conn) {
        self.by_endpoint.entry(addr).or_default().push(conn);
    }

    /// Forgets connections that ended (the housekeeping tick).
    pub(crate) fn prune(&mut self) {
        self.by_endpoint.retain(|_, conns| {
            conns.retain(|c| !c.shared.closed.get());
            !conns.is_empty()
        });
        self.opening.retain(|_, o| !o.done.get());
    }
}

/// Starts HTTP/2 on a new upstream connection and the task that drives
/// it; the task holds `guard` (the connection's place in its cluster's
/// gauge) until the connection ends.
pub(crate) async fn open<S: ByteStream + Duplex + 'static>(
    conn: S,
    guard: GaugeGuard,
    idle_timeout: Duration,
    stats: Arc<ShardStats>,
) -> Result<H2Conn, h2::Error> {
    stats.h2_upstream_connections.incr();
    start(conn, Some(guard), idle_timeout).await
}

/// One `GET` over HTTP/2 on `conn` (the health checker's probe): the
/// response's status. The connection ends with the request.
pub async fn get_status<S: ByteStream + Duplex + 'static>(
    conn: S,
    scheme: &'static str,
    authority: &str,
    path: &str,
) -> Result<u16, String> {
    let h2 = start(conn, None, Duration::from_secs(60))
        .await
        .map_err(|e| format!("HTTP/2: {e}"))?;
    let uri = ::http::Uri::builder()
        .scheme(scheme)
        .authority(authority)
        .path_and_query(path)
        .build()
        .map_err(|e| format!("request: {e}"))?;
    let mut request = ::http::Request::new(());
    *request.uri_mut() = uri;
    request.headers_mut().insert(
        ::http::header::USER_AGENT,
        ::http::HeaderValue::from_static(concat!("meshgate-health/", env!("CARGO_PKG_VERSION"))),
    );
    let mut send = h2.send;
    poll_fn(|cx| send.poll_ready(cx))
        .await
        .map_err(|e| format!("HTTP/2: {e}"))?;
    let (response, _) = send
        .send_request(request, true)
        .map_err(|e| format!("HTTP/2: {e}"))?;
    let response = response.await.map_err(|e| format!("HTTP/2: {e}"))?;
    Ok(response.status().as_u16())
}

/// Starts HTTP/2 on `conn` and its driver task (`guard`: its place in a
/// cluster's gauge, if it counts there).
pub(crate) async fn start<S: ByteStream + Duplex + 'static>(
    conn: S,
    guard: Option<GaugeGuard>,
    idle_timeout: Duration,
) -> Result<H2Conn, h2::Error> {
    let (pump, io) = Pump::new(conn);
    let mut builder = h2::client::Builder::new();
    builder
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .enable_push(false);
    // Writes the preface and our SETTINGS into the pipe: no round trip.
    let (send, connection) = builder.handshake::<H2Io, Bytes>(io).await?;
    let shared = Rc::new(Shared::default());
    runtime::spawn(drive(pump, connection, shared.clone(), guard, idle_timeout));
    Ok(H2Conn { send, shared })
}

/// What woke the driver.
enum Event {
    Ended(Result<(), h2::Error>),
    Io(IoEvent),
    Timer,
}

/// Drives one upstream connection until `h2` ends it, the stream fails,
/// or it has been without a stream for `idle_timeout`.
async fn drive<S: ByteStream + Duplex>(
    mut pump: Pump<S>,
    mut connection: Connection<H2Io, Bytes>,
    shared: Rc<Shared>,
    _guard: Option<GaugeGuard>,
    idle_timeout: Duration,
) {
    let mut deadline = runtime::now() + idle_timeout;
    let ended: Result<(), String> = loop {
        let event = {
            let mut io = pin!(pump.next());
            let mut timer = pin!(runtime::sleep_until(deadline));
            poll_fn(|cx| {
                // `h2` first: the frames it queues are seen by the pump.
                if let Poll::Ready(r) = pin!(&mut connection).poll(cx) {
                    return Poll::Ready(Event::Ended(r));
                }
                if let Poll::Ready(e) = io.as_mut().poll(cx) {
                    return Poll::Ready(Event::Io(e));
                }
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Event::Timer);
                }
                Poll::Pending
            })
            .await
        };
        match event {
            Event::Ended(r) => break r.map_err(|e| format!("HTTP/2: {e}")),
            Event::Io(e) => {
                if let Err(why) = pump.handle(e) {
                    break Err(why);
                }
            }
            Event::Timer if shared.streams.get() == 0 => break Ok(()),
            Event::Timer => {}
        }
        // Any stream (new or finishing) pushes the idle deadline.
        if shared.streams.get() > 0 {
            deadline = runtime::now() + idle_timeout;
        }
    };
    shared.closed.set(true);
    if let Err(why) = ended {
        log::debug!("HTTP/2 upstream connection ended: {why}");
    }
    pump.finish().await;
}
