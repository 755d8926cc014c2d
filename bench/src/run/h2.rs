//! HTTP/2 connections of a run (`--h2`): one task per connection keeps up
//! to `--streams` requests in flight on it.
//!
//! Closed loop: a stream that finishes starts the next request at once.
//! Open loop: requests start at their intended times (the connection's
//! share of `--rate`) as long as a stream is free, and latency counts from
//! the intended time, so a server that holds streams shows its backlog.
//! The task waits for input and, at the same time, for the next thing it
//! must do (a start that falls due, the earliest stream deadline); the
//! receive it races is cancel-safe (see [`crate::tls::TlsConn::recv_plain`]).
//!
//! Counting is the same as HTTP/1.1: every claimed request ends as one
//! response or one error. Streams the server did not process (REFUSED_STREAM,
//! or above a GOAWAY, then on a new connection) are sent again within their
//! original deadline, their clock still running (past it: a timeout); a
//! connection lost with streams in flight fails each of them.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::Instant;

use dataplane::runtime;

use super::Plan;
use crate::backoff::ConnectBackoff;
use crate::conn::Conn;
use crate::h2::{Event, H2Client};
use crate::schedule::Schedule;
use crate::stats::{ErrorKind, Stats};

/// One request's HPACK head and body, encoded once per run.
#[derive(Clone, Debug)]
pub(crate) struct H2Request {
    pub head: Vec<u8>,
    pub body: Vec<u8>,
}

/// The run's requests for HTTP/2: one per path, like HTTP/1.1.
pub(super) fn build_requests(args: &crate::args::RunArgs) -> Result<Vec<H2Request>, String> {
    let body = crate::conn::request_body(args)?;
    let scheme = if args.url.tls { "https" } else { "http" };
    Ok(crate::conn::request_paths(args)
        .into_iter()
        .map(|path| H2Request {
            head: crate::h2::encode_head(
                args.method(),
                scheme,
                &args.url.authority,
                path,
                &args.headers,
                body.len(),
            ),
            body: body.clone(),
        })
        .collect())
}

/// A started request.
#[derive(Clone, Copy)]
struct InFlight {
    /// Which of the run's requests.
    which: usize,
    /// Latency counts from here (intended time in open loop).
    began: Instant,
    deadline: Instant,
}

/// When the next request may start.
enum Due {
    Now(Option<Instant>),
    At(Instant),
    Done,
}

/// An open connection and its HTTP/2 state.
struct Link {
    conn: Conn,
    client: H2Client,
}

pub(super) async fn connection(plan: Rc<Plan>, stats: Rc<RefCell<Stats>>, index: usize) {
    let requests = plan.h2.as_ref().expect("an HTTP/2 plan");
    let schedule = plan
        .rate
        .map(|r| Schedule::new(r, plan.total_connections, index));
    let mut k = 0u64;
    let mut exhausted = false;
    // Refused requests to send again, with their original clocks.
    let mut again: VecDeque<InFlight> = VecDeque::new();
    let mut inflight: HashMap<u32, InFlight> = HashMap::new();
    let mut out = Vec::new();
    let mut input = Vec::new();
    let mut events = Vec::new();
    let mut link: Option<Link> = None;
    let mut backoff = ConnectBackoff::default();
    if let Ok(Ok(l)) = runtime::timeout_at(plan.start, open(&plan, &mut out)).await {
        link = Some(l);
        stats.borrow_mut().connections += 1;
    }
    runtime::sleep_until(plan.start).await;

    loop {
        // A connection that took a GOAWAY is replaced once it is drained.
        if link
            .as_ref()
            .is_some_and(|l| !l.client.usable() && l.client.open_streams() == 0)
        {
            link = None;
            out.clear();
        }
        // Start what is due while streams are free.
        let mut next_at = None;
        while link
            .as_ref()
            .is_none_or(|l| l.client.can_start() && l.client.open_streams() < plan.streams)
        {
            let start = if let Some(r) = again.pop_front() {
                if r.deadline <= Instant::now() {
                    stats.borrow_mut().error(ErrorKind::Timeout);
                    continue;
                }
                r
            } else {
                if exhausted {
                    break;
                }
                match due(&plan, schedule.as_ref(), k) {
                    Due::Done => {
                        exhausted = true;
                        break;
                    }
                    Due::At(at) => {
                        next_at = Some(at);
                        break;
                    }
                    Due::Now(intended) => {
                        if !plan.claim() {
                            exhausted = true;
                            break;
                        }
                        k += 1;
                        let now = Instant::now();
                        InFlight {
                            which: (index + k as usize - 1) % requests.len(),
                            began: intended.unwrap_or(now),
                            deadline: now + plan.timeout,
                        }
                    }
                }
            };
            if link.is_none() {
                out.clear();
                match runtime::timeout_at(start.deadline, open(&plan, &mut out)).await {
                    Ok(Ok(l)) => {
                        link = Some(l);
                        backoff.succeeded();
                        stats.borrow_mut().connections += 1;
                    }
                    Ok(Err(kind)) => {
                        stats.borrow_mut().error(kind);
                        // Closed loop: a target that refuses connections is
                        // not hammered (open loop keeps its schedule).
                        if kind == ErrorKind::Connect && schedule.is_none() {
                            let until = Instant::now() + backoff.failed();
                            runtime::sleep_until(plan.end.map_or(until, |e| until.min(e))).await;
                        }
                        continue;
                    }
                    Err(_) => {
                        stats.borrow_mut().error(ErrorKind::Timeout);
                        continue;
                    }
                }
            }
            let l = link.as_mut().expect("opened above");
            let r = &requests[start.which];
            let id = l.client.start_request(&r.head, &r.body, &mut out);
            inflight.insert(id, start);
        }
        let Some(l) = link.as_mut() else {
            match next_at {
                Some(at) => {
                    runtime::sleep_until(at).await;
                    continue;
                }
                None if exhausted && again.is_empty() => return,
                None => continue,
            }
        };
        // Nothing in flight and no stream may start (a server allowing
        // none): the run's end still ends this connection.
        if inflight.is_empty()
            && !exhausted
            && !l.client.can_start()
            && matches!(due(&plan, schedule.as_ref(), k), Due::Done)
        {
            exhausted = true;
        }
        if inflight.is_empty() && exhausted && again.is_empty() {
            return;
        }
        if !out.is_empty() {
            let deadline = inflight
                .values()
                .map(|f| f.deadline)
                .min()
                .unwrap_or_else(|| Instant::now() + plan.timeout);
            let sent = runtime::timeout_at(deadline, send(&mut l.conn, &mut out)).await;
            let failed = match sent {
                Ok(Ok(())) => None,
                Ok(Err(kind)) => Some(kind),
                Err(_) => Some(ErrorKind::Timeout),
            };
            if let Some(kind) = failed {
                fail_all(&mut inflight, &stats, kind);
                l.conn.abort();
                link = None;
                continue;
            }
        }
        // Wait for input, or until a stream times out or a start falls due.
        let mut wake = inflight.values().map(|f| f.deadline).min();
        if let Some(at) = next_at {
            wake = Some(wake.map_or(at, |w| w.min(at)));
        }
        let wake = wake.unwrap_or_else(|| Instant::now() + plan.timeout);
        input.clear();
        match runtime::timeout_at(wake, recv(&mut l.conn, &mut input)).await {
            Err(_) => {
                let now = Instant::now();
                let late: Vec<u32> = inflight
                    .iter()
                    .filter(|(_, f)| f.deadline <= now)
                    .map(|(id, _)| *id)
                    .collect();
                for id in late {
                    inflight.remove(&id);
                    l.client.cancel(id, &mut out);
                    stats.borrow_mut().error(ErrorKind::Timeout);
                }
            }
            Ok(Ok(0)) => {
                fail_all(&mut inflight, &stats, ErrorKind::Closed);
                link = None;
            }
            Ok(Ok(_)) => {
                events.clear();
                if l.client.feed(&input, &mut out, &mut events).is_err() {
                    fail_all(&mut inflight, &stats, ErrorKind::BadResponse);
                    l.conn.abort();
                    link = None;
                    continue;
                }
                let now = Instant::now();
                let mut s = stats.borrow_mut();
                s.bytes += input.len() as u64;
                for e in events.drain(..) {
                    match e {
                        Event::Response { stream, status, .. } => {
                            if let Some(f) = inflight.remove(&stream) {
                                s.response(status, now.saturating_duration_since(f.began));
                            }
                        }
                        Event::Reset { stream } => {
                            if inflight.remove(&stream).is_some() {
                                s.error(ErrorKind::Reset);
                            }
                        }
                        // Sent again, within its original deadline.
                        Event::Refused { stream } => {
                            if let Some(f) = inflight.remove(&stream) {
                                again.push_back(f);
                            }
                        }
                    }
                }
            }
            Ok(Err(kind)) => {
                fail_all(&mut inflight, &stats, kind);
                link = None;
            }
        }
    }
}

/// When request `k` of this connection may start.
fn due(plan: &Plan, schedule: Option<&Schedule>, k: u64) -> Due {
    let now = Instant::now();
    match schedule {
        Some(s) => {
            let at = plan.start + s.intended(k);
            if plan.end.is_some_and(|end| at >= end) {
                Due::Done
            } else if at > now {
                Due::At(at)
            } else {
                Due::Now(Some(at))
            }
        }
        None if plan.end.is_some_and(|end| now >= end) => Due::Done,
        None => Due::Now(None),
    }
}

/// Opens a connection (TCP, TLS with ALPN h2) and queues the preface.
async fn open(plan: &Plan, out: &mut Vec<u8>) -> Result<Link, ErrorKind> {
    let conn = Conn::open(&plan.endpoint).await?;
    if let Conn::Tls(t) = &conn
        && t.alpn() != Some(b"h2")
    {
        return Err(ErrorKind::Tls("alpn_not_h2"));
    }
    let client = H2Client::new(out);
    Ok(Link { conn, client })
}

/// Sends `out` and empties it.
async fn send(conn: &mut Conn, out: &mut Vec<u8>) -> Result<(), ErrorKind> {
    match conn {
        Conn::Plain(tcp) => {
            let (res, mut back) = tcp.send_owned(std::mem::take(out)).await;
            back.clear();
            *out = back;
            res.map_err(|e| crate::stats::classify_io(&e))
        }
        Conn::Tls(t) => {
            let r = t.send(out).await;
            out.clear();
            r
        }
    }
}

/// Receives bytes into `input` (cancel-safe); 0 at the end of the stream.
async fn recv(conn: &mut Conn, input: &mut Vec<u8>) -> Result<usize, ErrorKind> {
    match conn {
        Conn::Plain(tcp) => {
            let chunk = tcp
                .recv()
                .await
                .map_err(|e| crate::stats::classify_io(&e))?;
            input.extend_from_slice(&chunk);
            Ok(chunk.len())
        }
        Conn::Tls(t) => t.recv_plain(input).await,
    }
}

fn fail_all(inflight: &mut HashMap<u32, InFlight>, stats: &RefCell<Stats>, kind: ErrorKind) {
    let mut s = stats.borrow_mut();
    for _ in inflight.drain() {
        s.error(kind);
    }
}
