//! The in-process harness: one real shard ([`shard_loop`]) on virtual time
//! over the in-memory transport, with scripted upstreams and clients that
//! speak raw HTTP/1.1 bytes. No socket, no sleep: a test of a 30 s timeout
//! runs in microseconds, and a run with the same seed replays exactly.
//!
//! ```ignore
//! let world = World::http().cluster("c", &[A]).route_to("c");
//! world.run(|gw| async move {
//!     let up = Upstream::start(A, |_req| Reply::ok("hello"));
//!     let mut client = gw.client().await;
//!     client.send(GET).await;
//!     assert_eq!(client.response().await.status, 200);
//! });
//! ```

use std::cell::RefCell;
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::http::{self, BodyDecoder, BodyKind, Limits, Parse};
use crate::net::Stack;
use crate::net::memory::{self, MemStream};
use crate::proxy::{ShardInit, shard_loop};
use crate::route::{
    Cluster, ClusterId, HttpLimits, LbPolicy, Listener, Protocol, Route, RouteMatch, Snapshot,
};
use crate::runtime::{self, Clock, RuntimeConfig};
use crate::telemetry::ShardStats;

/// Where the gateway's one listener listens.
pub const LISTENER: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)),
    80,
);

/// Endpoint addresses for scripted upstreams.
pub const A: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 1, 1)),
    8080,
);
pub const B: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 1, 2)),
    8080,
);
pub const C: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 1, 3)),
    8080,
);

/// A gateway configuration being built: one listener (`l`), its routes
/// and the clusters they use.
pub struct World {
    pub snapshot: Snapshot,
    pub seed: u64,
    /// The span exporter's queue, when the test reads spans.
    pub spans: Option<crate::proxy::context::SpanQueue>,
    /// The access-log writer's queue, when the test reads log lines.
    pub access_log: Option<crate::proxy::context::AccessLogQueue>,
}

impl World {
    /// A plaintext HTTP listener with no route yet.
    pub fn http() -> World {
        World::with_protocol(Protocol::Http)
    }

    /// A plaintext TCP listener.
    pub fn tcp() -> World {
        World::with_protocol(Protocol::Tcp)
    }

    fn with_protocol(protocol: Protocol) -> World {
        World {
            snapshot: Snapshot {
                generation: 1,
                listeners: vec![Listener {
                    name: "l".into(),
                    address: LISTENER,
                    protocol,
                    tls: None,
                    routes: Vec::new(),
                    limits: HttpLimits::default(),
                    authz: Default::default(),
                    access_log: None,
                }],
                clusters: Vec::new(),
                tracing: None,
            },
            seed: 1,
            spans: None,
            access_log: None,
        }
    }

    /// Adds cluster `name` (round robin) with these endpoints.
    pub fn cluster(mut self, name: &str, endpoints: &[SocketAddr]) -> World {
        let mut c = Cluster::new(name, endpoints.to_vec());
        c.lb = LbPolicy::RoundRobin;
        self.snapshot.clusters.push(c);
        self
    }

    /// Adds a catch-all route to cluster `name`.
    pub fn route_to(mut self, name: &str) -> World {
        let id = self
            .snapshot
            .clusters
            .iter()
            .position(|c| c.name == name)
            .expect("route_to names a cluster added before");
        let route = Route::to_cluster("r", RouteMatch::default(), ClusterId(id as u32));
        self.snapshot.listeners[0].routes.push(route);
        self
    }

    /// Changes the last route.
    pub fn with_route(mut self, f: impl FnOnce(&mut Route)) -> World {
        f(self.snapshot.listeners[0]
            .routes
            .last_mut()
            .expect("a route"));
        self
    }

    /// Changes the last cluster.
    pub fn with_cluster(mut self, f: impl FnOnce(&mut Cluster)) -> World {
        f(self.snapshot.clusters.last_mut().expect("a cluster"));
        self
    }

    /// Changes the listener's limits.
    pub fn with_limits(mut self, f: impl FnOnce(&mut HttpLimits)) -> World {
        f(&mut self.snapshot.listeners[0].limits);
        self
    }

    /// Turns `[tracing]` on with `spec`; finished spans arrive on the
    /// returned receiver (a queue of `capacity`).
    pub fn tracing(
        mut self,
        spec: crate::telemetry::trace::TraceSpec,
        capacity: usize,
    ) -> (
        World,
        std::sync::mpsc::Receiver<Box<crate::telemetry::trace::FinishedTrace>>,
    ) {
        let (tx, rx) = std::sync::mpsc::sync_channel(capacity);
        self.snapshot.tracing = Some(Arc::new(spec));
        self.spans = Some(tx);
        (self, rx)
    }

    /// Logs every request of the listener as JSON to `path`; the batches
    /// arrive on the returned queue, which holds `capacity` of them.
    pub fn access_log(
        mut self,
        path: &str,
        capacity: usize,
    ) -> (
        World,
        std::sync::mpsc::Receiver<crate::telemetry::access_batch::LogBatch>,
    ) {
        let (tx, rx) = std::sync::mpsc::sync_channel(capacity);
        self.snapshot.listeners[0].access_log =
            Some(Arc::new(crate::telemetry::access_log::AccessLogSpec {
                path: path.into(),
                format: crate::telemetry::access_log::LogFormat::Json,
                sample_percent: 100.0,
            }));
        self.access_log = Some(tx);
        (self, rx)
    }

    /// Seeds the shard's random draws.
    pub fn seed(mut self, seed: u64) -> World {
        self.seed = seed;
        self
    }

    /// Runs `test` against a shard serving this world, on virtual time, and
    /// stops the shard after it. Returns what `test` returned.
    pub fn run<T, F, Fut>(self, test: F) -> T
    where
        F: FnOnce(Gateway) -> Fut,
        Fut: Future<Output = T>,
    {
        memory::reset();
        let config = RuntimeConfig {
            clock: Clock::Virtual,
            ..RuntimeConfig::default()
        };
        let listeners = self
            .snapshot
            .listeners
            .iter()
            .map(|l| (l.name.clone(), crate::net::ListenSocket::memory(l.address)))
            .collect();
        let snapshots = Arc::new(ArcSwap::from_pointee(self.snapshot));
        let stats = Arc::new(ShardStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let drain = Arc::new(AtomicBool::new(false));
        let (_commands_tx, commands) = crossbeam_channel::unbounded();
        let init = ShardInit {
            id: 0,
            shard_count: 1,
            snapshots: snapshots.clone(),
            canary: Arc::new(ArcSwapOption::empty()),
            listeners,
            stack: Stack::Memory,
            seed: self.seed,
            stop: stop.clone(),
            drain: drain.clone(),
            stats: stats.clone(),
            commands,
            runtime: config,
            access_log: self.access_log,
            spans: self.spans.map(|q| (q, 7)),
        };
        let gateway = Gateway {
            stats,
            drain,
            snapshots,
        };
        let out = runtime::block_on(&config, async move {
            let shard = runtime::spawn(shard_loop(init));
            // The shard's listeners open on its first poll.
            runtime::yield_now().await;
            let out = test(gateway).await;
            stop.store(true, Ordering::Relaxed);
            shard.await;
            out
        })
        .expect("a runtime");
        memory::reset();
        out
    }
}

/// The test's handle on the running gateway.
#[derive(Clone)]
pub struct Gateway {
    pub stats: Arc<ShardStats>,
    drain: Arc<AtomicBool>,
    snapshots: Arc<ArcSwap<Snapshot>>,
}

impl Gateway {
    /// A client connected to the listener.
    pub async fn client(&self) -> Client {
        Client::connect(LISTENER).await
    }

    /// Starts draining (as SIGTERM would).
    pub fn drain(&self) {
        self.drain.store(true, Ordering::Relaxed);
    }

    /// Publishes a changed copy of the current snapshot.
    pub fn publish(&self, f: impl FnOnce(&mut Snapshot)) {
        let mut next = (*self.snapshots.load_full()).clone();
        next.generation += 1;
        f(&mut next);
        self.snapshots.store(Arc::new(next));
    }

    /// Waits (in virtual time) until `cond` holds, checking every
    /// millisecond; panics after `limit`.
    pub async fn until(&self, limit: Duration, what: &str, cond: impl Fn(&Gateway) -> bool) {
        let deadline = runtime::now() + limit;
        while !cond(self) {
            assert!(runtime::now() < deadline, "not within {limit:?}: {what}");
            runtime::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// A response as a client read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// As sent (chunked framing included).
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A client speaking raw bytes to the gateway.
pub struct Client {
    conn: MemStream,
    buf: Vec<u8>,
    eof: bool,
    reset: bool,
}

impl Client {
    /// Connects to `addr` (panics when refused).
    pub async fn connect(addr: SocketAddr) -> Client {
        Client::connect_from(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), addr).await
    }

    /// Connects to `addr` from source address `ip`.
    pub async fn connect_from(ip: std::net::IpAddr, addr: SocketAddr) -> Client {
        let conn = memory::connect_from(ip, addr)
            .await
            .expect("connect to the gateway");
        Client {
            conn,
            buf: Vec::new(),
            eof: false,
            reset: false,
        }
    }

    /// Sends `bytes`.
    pub async fn send(&mut self, bytes: &[u8]) {
        let (r, _) = self.conn.send_owned(bytes.to_vec()).await;
        r.expect("send to the gateway");
    }

    /// Half-closes the client's sending side.
    pub fn shutdown(&self) {
        self.conn.shutdown_write().expect("shutdown");
    }

    /// Reads more; false at the end of the stream (or a reset).
    async fn fill(&mut self) -> bool {
        if self.eof {
            return false;
        }
        match self.conn.recv().await {
            Ok(chunk) if !chunk.is_empty() => {
                self.buf.extend_from_slice(&chunk);
                true
            }
            Ok(_) => {
                self.eof = true;
                false
            }
            Err(_) => {
                self.eof = true;
                self.reset = true;
                false
            }
        }
    }

    /// Reads the next response (1xx ones included) to a `GET`.
    pub async fn response(&mut self) -> Response {
        self.try_response("GET")
            .await
            .expect("a response before the connection closed")
    }

    /// The next response, or `None` when the connection ended first.
    pub async fn try_response(&mut self, method: &str) -> Option<Response> {
        loop {
            if let Ok(Parse::Complete(head)) =
                http::parse_response(&self.buf, method, &Limits::default())
            {
                let headers = head
                    .headers()
                    .map(|(n, v)| (n.to_owned(), String::from_utf8_lossy(v).into_owned()))
                    .collect();
                let (status, kind, head_len) = (head.status, head.body, head.head_len);
                self.buf.drain(..head_len);
                let body = if (100..200).contains(&status) {
                    Vec::new()
                } else {
                    self.body(kind).await
                };
                return Some(Response {
                    status,
                    headers,
                    body,
                });
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    async fn body(&mut self, kind: BodyKind) -> Vec<u8> {
        let mut decoder = BodyDecoder::new(kind);
        let mut body = Vec::new();
        loop {
            if !self.buf.is_empty() && !decoder.is_done() {
                let n = decoder.advance(&self.buf).expect("valid response framing");
                body.extend_from_slice(&self.buf[..n]);
                self.buf.drain(..n);
            }
            if decoder.is_done() || (!self.fill().await && kind == BodyKind::CloseDelimited) {
                return body;
            }
            assert!(!self.eof, "the body was cut off after {} bytes", body.len());
        }
    }

    /// Whether the gateway closed the connection (waits for it, within
    /// `limit` of virtual time): true on a clean close or a reset.
    pub async fn closed_within(&mut self, limit: Duration) -> bool {
        let wait = async { while self.fill().await {} };
        runtime::timeout(limit, wait).await.is_ok() && self.buf.is_empty()
    }

    /// Whether the connection ended with a reset (not a clean close).
    pub fn was_reset(&self) -> bool {
        self.reset
    }

    /// Everything until the end of the stream (raw).
    pub async fn read_to_end(&mut self) -> Vec<u8> {
        while self.fill().await {}
        std::mem::take(&mut self.buf)
    }
}

/// A request as a scripted upstream saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The upstream that got it.
    pub upstream: SocketAddr,
    /// Its connection, numbered from 0 per upstream.
    pub conn: usize,
    /// Its place on that connection, from 0.
    pub nth: usize,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What a scripted upstream does with a request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Answers after `delay` (keep-alive unless `close`).
    Respond {
        status: u16,
        body: Vec<u8>,
        delay: Duration,
        close: bool,
    },
    /// Closes the connection without answering.
    Close,
    /// Sends the head and part of the body, then resets.
    CutOff { body_len: usize, sent: usize },
}

impl Reply {
    pub fn ok(body: &str) -> Reply {
        Reply::status(200, body)
    }

    pub fn status(status: u16, body: &str) -> Reply {
        Reply::Respond {
            status,
            body: body.as_bytes().to_vec(),
            delay: Duration::ZERO,
            close: false,
        }
    }

    /// This reply, after `delay`.
    pub fn after(self, d: Duration) -> Reply {
        match self {
            Reply::Respond {
                status,
                body,
                close,
                ..
            } => Reply::Respond {
                status,
                body,
                delay: d,
                close,
            },
            other => other,
        }
    }
}

type Script = Rc<dyn Fn(&Seen) -> Reply>;

/// A scripted HTTP/1.1 upstream on the in-memory network.
pub struct Upstream {
    seen: Rc<RefCell<Vec<Seen>>>,
    connections: Rc<RefCell<usize>>,
    task: runtime::JoinHandle<()>,
}

impl Upstream {
    /// Listens on `addr`, answering each request as `script` says.
    pub fn start(addr: SocketAddr, script: impl Fn(&Seen) -> Reply + 'static) -> Upstream {
        let mut listener = memory::listen(addr).expect("upstream address free");
        let seen = Rc::new(RefCell::new(Vec::new()));
        let connections = Rc::new(RefCell::new(0));
        let script: Script = Rc::new(script);
        let (log, count) = (seen.clone(), connections.clone());
        let task = runtime::spawn(async move {
            while let Ok(conn) = listener.accept().await {
                let n = {
                    let mut c = count.borrow_mut();
                    *c += 1;
                    *c - 1
                };
                runtime::spawn(serve_upstream(addr, n, conn, script.clone(), log.clone()));
            }
        });
        Upstream {
            seen,
            connections,
            task,
        }
    }

    /// Requests seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.borrow().clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        *self.connections.borrow()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_upstream(
    addr: SocketAddr,
    conn_index: usize,
    mut conn: MemStream,
    script: Script,
    seen: Rc<RefCell<Vec<Seen>>>,
) {
    let mut buf = Vec::new();
    for nth in 0.. {
        let (mut request, kind) = loop {
            if let Ok(Parse::Complete(head)) = http::parse_request(&buf, &Limits::default()) {
                let request = Seen {
                    upstream: addr,
                    conn: conn_index,
                    nth,
                    method: head.method.to_owned(),
                    path: head.target.to_owned(),
                    headers: head
                        .headers()
                        .map(|(n, v)| (n.to_owned(), String::from_utf8_lossy(v).into_owned()))
                        .collect(),
                    body: Vec::new(),
                };
                let (kind, len) = (head.body, head.head_len);
                buf.drain(..len);
                break (request, kind);
            }
            match conn.recv().await {
                Ok(chunk) if !chunk.is_empty() => buf.extend_from_slice(&chunk),
                _ => return,
            }
        };
        let mut decoder = BodyDecoder::new(kind);
        while !decoder.is_done() {
            if !buf.is_empty() {
                let Ok(n) = decoder.advance(&buf) else { return };
                request.body.extend_from_slice(&buf[..n]);
                buf.drain(..n);
                continue;
            }
            match conn.recv().await {
                Ok(chunk) if !chunk.is_empty() => buf.extend_from_slice(&chunk),
                _ => return,
            }
        }
        let reply = script(&request);
        seen.borrow_mut().push(request);
        match reply {
            Reply::Respond {
                status,
                body,
                delay,
                close,
            } => {
                if !delay.is_zero() {
                    runtime::sleep(delay).await;
                }
                let mut out = format!(
                    "HTTP/1.1 {status} {}\r\ncontent-length: {}\r\n{}\r\n",
                    http::reason_phrase(status),
                    body.len(),
                    if close { "connection: close\r\n" } else { "" }
                )
                .into_bytes();
                out.extend_from_slice(&body);
                if conn.send_owned(out).await.0.is_err() || close {
                    return;
                }
            }
            Reply::Close => return,
            Reply::CutOff { body_len, sent } => {
                let mut out =
                    format!("HTTP/1.1 200 OK\r\ncontent-length: {body_len}\r\n\r\n").into_bytes();
                out.extend(std::iter::repeat_n(b'x', sent));
                let _ = conn.send_owned(out).await;
                conn.reset();
                return;
            }
        }
    }
}

/// `GET path` with a host, keep-alive.
pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nhost: svc\r\n\r\n").into_bytes()
}
