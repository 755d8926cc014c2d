//! The load generator's run: worker threads (one io_uring runtime each,
//! like the gateway's shards), the connection tasks on them, the live
//! progress line and the final report.
//!
//! Each worker owns its [`Stats`] and hands them to the main thread once a
//! second (for the progress line) and at the end; nothing is shared on the
//! request path except the `-n` ticket counter. When the run's time is up
//! no new request starts, but requests in flight complete (or time out) and
//! are counted, so the count matches what the server served.

use std::cell::RefCell;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dataplane::runtime::{self, RuntimeConfig, shard::spawn_shards};

mod h2;

use crate::args::{Limit, Proto, RunArgs};
use crate::backoff::ConnectBackoff;
use crate::conn::{Conn, Endpoint, Exchange, build_requests};
use crate::report::{self, Report, RunInfo};
use crate::schedule::{Schedule, share};
use crate::stats::{ErrorKind, Stats};

/// Time given to worker threads to start before the first request.
const STARTUP: Duration = Duration::from_millis(20);
/// Extra time before the clock starts in keep-alive runs, in which every
/// connection is opened (TCP and TLS handshakes), so an open-loop run
/// measures requests, not the opening burst.
const WARMUP: Duration = Duration::from_millis(500);
/// Progress tick.
const TICK: Duration = Duration::from_secs(1);

/// A message from a worker to the main thread.
enum Msg {
    Tick(Stats),
    Done(Stats),
}

/// What every connection of a run shares.
struct Plan {
    endpoint: Endpoint,
    /// The requests a connection goes through in turn.
    requests: Vec<Vec<u8>>,
    method: String,
    proto: Proto,
    start: Instant,
    /// No request starts at or after this (duration runs).
    end: Option<Instant>,
    /// Open loop: total requests per second.
    rate: Option<f64>,
    total_connections: usize,
    new_conn: bool,
    timeout: Duration,
    /// `--h2`: the requests as HTTP/2 heads and bodies (instead of
    /// `requests`), and the streams per connection.
    h2: Option<Vec<h2::H2Request>>,
    streams: usize,
    /// `-n`: requests claimed so far, and the limit.
    tickets: Arc<AtomicU64>,
    max_requests: Option<u64>,
}

impl Plan {
    /// Claims the right to send one more request.
    fn claim(&self) -> bool {
        match self.max_requests {
            None => true,
            Some(max) => self.tickets.fetch_add(1, Ordering::Relaxed) < max,
        }
    }
}

/// Runs the load described by `args`; returns the process exit code.
pub fn run(args: &RunArgs) -> Result<u8, String> {
    args.validate()?;
    let addr = resolve(&args.url.host, args.url.port)?;
    let tls = if args.url.tls {
        Some(crate::tls::client_config(args)?)
    } else {
        None
    };
    let requests = build_requests(args)?;
    let h2_requests = args.h2.then(|| h2::build_requests(args)).transpose()?;
    let threads = args.threads.min(args.connections);
    let start = Instant::now()
        + STARTUP
        + if args.new_conn {
            Duration::ZERO
        } else {
            WARMUP
        };
    let (end, max_requests) = match args.limit() {
        Limit::Duration(d) => (Some(start + d), None),
        Limit::Requests(n) => (None, Some(n)),
    };
    let tickets = Arc::new(AtomicU64::new(0));
    let (tx, rx) = mpsc::channel();
    let mut inits = Vec::with_capacity(threads);
    let mut first = 0;
    for t in 0..threads {
        let count = share(args.connections, threads, t);
        let plan = Plan {
            endpoint: Endpoint {
                addr,
                tls: tls.clone(),
            },
            requests: requests.clone(),
            method: args.method().to_owned(),
            proto: args.url.proto,
            start,
            end,
            rate: args.rate,
            total_connections: args.connections,
            new_conn: args.new_conn,
            timeout: Duration::from_millis(args.timeout_ms),
            h2: h2_requests.clone(),
            streams: args.streams,
            tickets: tickets.clone(),
            max_requests,
        };
        inits.push((plan, first..first + count, tx.clone()));
        first += count;
    }
    drop(tx);
    let workers = spawn_shards(inits, args.pin, |_, (plan, range, tx)| {
        let config = RuntimeConfig::default();
        let tx2: mpsc::Sender<Msg> = tx.clone();
        match runtime::block_on(&config, worker(plan, range, tx)) {
            Ok(()) => {}
            Err(e) => {
                eprintln!("meshbench: worker runtime failed: {e}");
                let mut s = Stats::new();
                s.error(ErrorKind::Io(e.kind()));
                let _ = tx2.send(Msg::Done(s));
            }
        }
    })
    .map_err(|e| format!("starting worker threads: {e}"))?;

    let mut total = Stats::new();
    let mut window = Stats::new();
    let mut done = 0;
    let mut next_print = start + TICK + Duration::from_millis(50);
    while done < workers.len() {
        let wait = next_print.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(Msg::Tick(s)) => {
                window.merge(&s);
                total.merge(&s);
            }
            Ok(Msg::Done(s)) => {
                window.merge(&s);
                total.merge(&s);
                done += 1;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if Instant::now() >= next_print {
            if !args.quiet {
                let line = report::progress_line(start.elapsed(), &window, &total, TICK);
                eprintln!("{line}");
            }
            window = Stats::new();
            next_print += TICK;
        }
    }
    let elapsed = start.elapsed();
    for w in workers {
        let _ = w.handle.join();
    }

    let info = RunInfo {
        url: match (args.url.proto, args.url.tls) {
            (Proto::Http, tls) => format!(
                "{}://{}{}",
                if tls { "https" } else { "http" },
                args.url.authority,
                args.url.path
            ),
            (Proto::Tcp, tls) => {
                format!(
                    "{}://{}",
                    if tls { "tls" } else { "tcp" },
                    args.url.authority
                )
            }
        },
        connections: args.connections,
        threads,
        rate: args.rate,
        new_conn: args.new_conn,
        protocol: match (args.url.proto, args.h2) {
            (Proto::Tcp, _) => "tcp",
            (Proto::Http, true) => "h2",
            (Proto::Http, false) => "http/1.1",
        },
        streams: args.h2.then_some(args.streams),
    };
    let report = Report::new(&info, &total, elapsed);
    print!("{}", report.text());
    if let Some(path) = &args.json {
        std::fs::write(path, report.json()).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(path) = &args.hdr_out {
        std::fs::write(path, report::hdr_distribution(&total))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if report.passes(args.max_error_rate) {
        Ok(0)
    } else {
        eprintln!(
            "meshbench: error rate {:.4} is above --max-error-rate {}",
            report.error_rate, args.max_error_rate
        );
        Ok(1)
    }
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("resolving {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))
}

/// One worker thread: its connections, and a ticker reporting its counts.
async fn worker(plan: Plan, range: std::ops::Range<usize>, tx: mpsc::Sender<Msg>) {
    let plan = Rc::new(plan);
    let stats = Rc::new(RefCell::new(Stats::new()));
    let ticker = {
        let (stats, tx, start) = (stats.clone(), tx.clone(), plan.start);
        runtime::spawn(async move {
            let mut next = start + TICK;
            loop {
                runtime::sleep_until(next).await;
                let taken = stats.borrow_mut().take();
                if tx.send(Msg::Tick(taken)).is_err() {
                    return;
                }
                next += TICK;
            }
        })
    };
    let tasks: Vec<_> = range
        .map(|index| {
            if plan.h2.is_some() {
                runtime::spawn(h2::connection(plan.clone(), stats.clone(), index))
            } else {
                runtime::spawn(connection(plan.clone(), stats.clone(), index))
            }
        })
        .collect();
    for t in tasks {
        t.await;
    }
    drop(ticker);
    let rest = stats.borrow_mut().take();
    let _ = tx.send(Msg::Done(rest));
}

/// One connection's loop of requests.
async fn connection(plan: Rc<Plan>, stats: Rc<RefCell<Stats>>, index: usize) {
    let schedule = plan
        .rate
        .map(|r| Schedule::new(r, plan.total_connections, index));
    let mut exchanges: Vec<Exchange> = plan
        .requests
        .iter()
        .map(|r| Exchange::new(r.clone(), &plan.method, plan.proto))
        .collect();
    let mut conn: Option<Conn> = None;
    let mut backoff = ConnectBackoff::default();
    let mut k = 0u64;
    if !plan.new_conn {
        // Open before the clock starts; a failure here is retried (and
        // counted) by the first request.
        if let Ok(Ok(c)) = runtime::timeout_at(plan.start, Conn::open(&plan.endpoint)).await {
            conn = Some(c);
            stats.borrow_mut().connections += 1;
        }
    }
    runtime::sleep_until(plan.start).await;
    loop {
        let intended = match &schedule {
            Some(s) => {
                let at = plan.start + s.intended(k);
                if plan.end.is_some_and(|end| at >= end) {
                    break;
                }
                if at > Instant::now() {
                    runtime::sleep_until(at).await;
                }
                Some(at)
            }
            None => {
                if plan.end.is_some_and(|end| Instant::now() >= end) {
                    break;
                }
                None
            }
        };
        if !plan.claim() {
            break;
        }
        k += 1;
        let mut began = intended.unwrap_or_else(Instant::now);
        let deadline = Instant::now() + plan.timeout;
        let mut bytes = 0u64;
        let result = runtime::timeout_at(deadline, async {
            if conn.is_none() {
                conn = Some(Conn::open(&plan.endpoint).await?);
                stats.borrow_mut().connections += 1;
                // Closed-loop keep-alive latency is the exchange's alone;
                // new-conn latency includes the handshake, open-loop
                // latency counts from the intended time.
                if intended.is_none() && !plan.new_conn {
                    began = Instant::now();
                }
            }
            let c = conn.as_mut().expect("opened above");
            // Connection `index` starts at path `index`, then takes each
            // in turn.
            let n = exchanges.len();
            let exchange = &mut exchanges[(index + k as usize - 1) % n];
            exchange.run(c, &mut bytes).await
        })
        .await;
        let finished = Instant::now();
        let mut wait = None;
        {
            let mut s = stats.borrow_mut();
            s.bytes += bytes;
            match result {
                Ok(Ok(outcome)) => {
                    backoff.succeeded();
                    s.response(outcome.status, finished.saturating_duration_since(began));
                    if !outcome.reusable || plan.new_conn {
                        conn = None;
                    }
                }
                Ok(Err(kind)) => {
                    s.error(kind);
                    if let Some(c) = conn.as_mut() {
                        c.abort();
                    }
                    conn = None;
                    // Closed loop: a target that refuses connections is not
                    // hammered (open loop keeps its schedule).
                    if kind == ErrorKind::Connect && schedule.is_none() {
                        wait = Some(backoff.failed());
                    }
                }
                Err(_elapsed) => {
                    s.error(ErrorKind::Timeout);
                    if let Some(c) = conn.as_mut() {
                        c.abort();
                    }
                    conn = None;
                }
            }
        }
        if let Some(wait) = wait {
            let until = Instant::now() + wait;
            runtime::sleep_until(plan.end.map_or(until, |end| until.min(end))).await;
        }
    }
}
