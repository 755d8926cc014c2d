//! The admin listener (`[admin] address`): plain HTTP/1.1 served by one
//! thread of the control side, never a shard. One request per connection
//! (`Connection: close`), heads up to 8 KiB, read and write timeouts of a
//! few seconds so one stuck client cannot hold it long.
//!
//! | path | answer |
//! |---|---|
//! | `/metrics` | Prometheus text 0.0.4, or OpenMetrics when `Accept` asks ([`metrics`]) |
//! | `/ready` | 200 once every shard loaded the configuration and accepts; 503 while draining |
//! | `/live` | 200 while the control thread runs |
//! | `/` | the traffic map, an HTML page drawing `/map.json` ([`traffic_map`]) |
//! | `/map.json` | listeners → routes → clusters → endpoints with their rates |
//!
//! Uses `running` (the gateway it reports on), `access_log` (the writer's
//! figures) and the data plane's HTTP head parser.

pub mod exposition;
pub mod metrics;
pub mod traffic_map;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dataplane::http::{self, Limits, Parse};

use self::exposition::Format;
use crate::access_log::WriterStats;
use crate::running::{Expiry, Gateway};

/// Longest request head read.
const MAX_HEAD: usize = 8 * 1024;

/// How long one client may take to send its head or read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Certificate files are read again at most this often for the metrics.
const EXPIRY_REFRESH: Duration = Duration::from_secs(60);

/// The running admin listener.
#[derive(Debug)]
pub struct AdminServer {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AdminServer {
    /// Binds `address` and serves it on a new thread. `Err`: the bind
    /// failed (the caller names the field).
    pub fn start(
        address: SocketAddr,
        gateway: Arc<Gateway>,
        writer: Option<Arc<WriterStats>>,
    ) -> io::Result<AdminServer> {
        AdminServer::serve(TcpListener::bind(address)?, gateway, writer)
    }

    /// Serves an already bound `listener` on a new thread (an apply that
    /// moved the admin listener bound it).
    pub fn serve(
        listener: TcpListener,
        gateway: Arc<Gateway>,
        writer: Option<Arc<WriterStats>>,
    ) -> io::Result<AdminServer> {
        let address = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("meshgate-admin".into())
                .spawn(move || {
                    let mut state = State {
                        gateway,
                        writer,
                        expiries: Vec::new(),
                        expiries_read: None,
                        map: traffic_map::History::default(),
                        metrics_len: 0,
                    };
                    for conn in listener.incoming() {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        match conn {
                            Ok(c) => {
                                if let Err(e) = state.serve(c) {
                                    log::debug!("admin: {e}");
                                }
                            }
                            Err(e) => log::debug!("admin: accept: {e}"),
                        }
                    }
                })?
        };
        Ok(AdminServer {
            address,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on (the port the kernel chose for port 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops the thread.
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.address, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The admin thread's state.
struct State {
    gateway: Arc<Gateway>,
    writer: Option<Arc<WriterStats>>,
    expiries: Vec<Expiry>,
    expiries_read: Option<Instant>,
    /// The traffic map's samples.
    map: traffic_map::History,
    /// The length of the last `/metrics` answer.
    metrics_len: usize,
}

/// The traffic map page.
const MAP_PAGE: &str = include_str!("traffic_map.html");

/// One answer.
struct Answer {
    status: u16,
    content_type: &'static str,
    body: String,
}

impl Answer {
    fn text(status: u16, body: &str) -> Answer {
        Answer {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.to_owned(),
        }
    }
}

impl State {
    fn serve(&mut self, mut conn: TcpStream) -> io::Result<()> {
        conn.set_read_timeout(Some(CLIENT_TIMEOUT))?;
        conn.set_write_timeout(Some(CLIENT_TIMEOUT))?;
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 1024];
        let limits = Limits {
            max_head_bytes: MAX_HEAD,
        };
        let (answer, is_head) = loop {
            let n = conn.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
            match http::parse_request(&buf, &limits) {
                Ok(Parse::Complete(head)) => {
                    let is_head = head.method == "HEAD";
                    let accept = head
                        .header("accept")
                        .and_then(|v| std::str::from_utf8(v).ok());
                    break (self.answer(head.method, head.path, accept), is_head);
                }
                Ok(Parse::Partial) if buf.len() < MAX_HEAD => {}
                Ok(Parse::Partial) => break (Answer::text(431, "request head too large\n"), false),
                Err(e) => break (Answer::text(400, &format!("bad request: {e}\n")), false),
            }
        };
        let reason = match answer.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            431 => "Request Header Fields Too Large",
            _ => "Service Unavailable",
        };
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\ncontent-type: {}\r\ncontent-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n",
            answer.status,
            answer.content_type,
            answer.body.len()
        );
        if answer.status == 405 {
            out.push_str("allow: GET, HEAD\r\n");
        }
        out.push_str("\r\n");
        conn.write_all(out.as_bytes())?;
        if !is_head {
            conn.write_all(answer.body.as_bytes())?;
        }
        let _ = conn.shutdown(std::net::Shutdown::Write);
        Ok(())
    }

    fn answer(&mut self, method: &str, path: &str, accept: Option<&str>) -> Answer {
        if method != "GET" && method != "HEAD" {
            return Answer::text(405, "only GET and HEAD\n");
        }
        match path {
            "/metrics" => {
                let format = Format::from_accept(accept);
                self.refresh_expiries();
                let extra = metrics::Extra {
                    expiries: &self.expiries,
                    writer: self.writer.as_deref(),
                };
                let body = metrics::render(&self.gateway, &extra, format, self.metrics_len);
                self.metrics_len = body.len();
                Answer {
                    status: 200,
                    content_type: format.content_type(),
                    body,
                }
            }
            "/ready" => match readiness(&self.gateway) {
                Ok(()) => Answer::text(200, "ready\n"),
                Err(why) => Answer::text(503, &format!("not ready: {why}\n")),
            },
            "/live" => Answer::text(200, "live\n"),
            "/" => Answer {
                status: 200,
                content_type: "text/html; charset=utf-8",
                body: MAP_PAGE.to_owned(),
            },
            "/map.json" => {
                let rows = self.gateway.endpoint_rows(crate::running::Latency::Buckets);
                let sample = traffic_map::Sample::of(&self.gateway.named_counts(), &rows);
                let rates = self.map.rates(Instant::now(), sample);
                let topology = traffic_map::Topology::of(
                    &self.gateway.snapshots.load(),
                    &rows,
                    &self.gateway.listeners(),
                );
                Answer {
                    status: 200,
                    content_type: "application/json",
                    body: traffic_map::graph_json(&topology, rates.as_ref()).to_string(),
                }
            }
            _ => Answer::text(404, "not found; see /\n"),
        }
    }

    fn refresh_expiries(&mut self) {
        if self
            .expiries_read
            .is_some_and(|t| t.elapsed() < EXPIRY_REFRESH)
        {
            return;
        }
        self.expiries = self.gateway.expiries();
        self.expiries_read = Some(Instant::now());
    }
}

/// Whether the gateway takes traffic: not draining, and every shard has
/// loaded a configuration (a shard sets its generation once its
/// listeners accept).
fn readiness(gateway: &Gateway) -> Result<(), String> {
    if gateway.drain.load(Ordering::Relaxed) {
        return Err("draining".into());
    }
    let starting: Vec<String> = gateway
        .shard_stats
        .iter()
        .enumerate()
        .filter(|(_, s)| s.generation.get() == 0)
        .map(|(i, _)| i.to_string())
        .collect();
    if !starting.is_empty() {
        return Err(format!("shards {} still starting", starting.join(", ")));
    }
    Ok(())
}
