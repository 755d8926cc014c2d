//! `meshbench upstream`: a fast, multi-threaded HTTP/1.1 origin for tests,
//! demos and benchmarks, with fault injection.
//!
//! One thread per `--threads`, each with its own io_uring runtime and its
//! own `SO_REUSEPORT` listener (bound up front on the main thread, so port
//! 0 resolves once and a bad address fails before any thread starts).
//! Keep-alive connections; `/echo` answers with the request body (same
//! framing), other paths with `--body-size` bytes; every response carries
//! `x-upstream: TAG`. Faults are drawn from a seeded xorshift, so a run is
//! reproducible: `--fail-rate` answers 503, `--reset-rate` resets the
//! connection instead of answering, `--delay-ms` waits before either.
//!
//! With `--tcp-echo` it is a raw TCP echo server instead (for `meshbench
//! tcp://` runs, through a gateway's TCP listener or straight): every byte
//! received is sent back. With `--h2c` it speaks HTTP/2 by prior knowledge
//! (`upstream/h2c.rs`: trailers, gRPC-shaped answers).
//!
//! Honesty: each thread counts the responses it wrote (incremented before
//! the send, so a client that saw a response is always counted), the
//! resets it made and the bytes it echoed. The main thread prints the totals on SIGINT/SIGTERM and
//! rewrites `--report-file` every 100 ms.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dataplane::http::{BodyDecoder, BodyKind, Limits, Parse, parse_request};
use dataplane::runtime::{self, BoundSocket, RuntimeConfig, TcpListener, TcpStream, signals};

use crate::args::UpstreamArgs;

mod h2c;

/// What one thread counts.
#[derive(Debug, Default)]
pub struct Counters {
    /// Responses written (any status).
    pub served: AtomicU64,
    /// Of those, 503s injected by `--fail-rate`.
    pub failed: AtomicU64,
    /// Connections reset by `--reset-rate` instead of answering.
    pub resets: AtomicU64,
    /// Bytes sent back by `--tcp-echo` (counted before the send).
    pub echoed: AtomicU64,
}

/// A small, seeded xorshift64* generator: reproducible fault sequences.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator for `seed` (any value, 0 included).
    pub fn new(seed: u64) -> XorShift {
        // Mix so nearby seeds differ and the state is never 0.
        XorShift((seed ^ 0x9E37_79B9_7F4A_7C15).wrapping_mul(0xBF58_476D_1CE4_E5B9) | 1)
    }

    /// The next value in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What to do with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    None,
    Fail503,
    Reset,
}

/// Picks the fault for a draw `r` in [0, 1): resets first, then 503s.
pub(crate) fn fault(r: f64, reset_rate: f64, fail_rate: f64) -> Fault {
    if r < reset_rate {
        Fault::Reset
    } else if r < reset_rate + fail_rate {
        Fault::Fail503
    } else {
        Fault::None
    }
}

/// Settings and prebuilt bytes shared by one thread's connections.
pub(crate) struct Ctx {
    pub(crate) args: UpstreamArgs,
    /// `200` head + body for keep-alive GETs.
    ok: Vec<u8>,
    ok_head_len: usize,
    /// The `--body-size` body, for HTTP/2 answers (shared, not copied).
    pub(crate) h2_body: bytes::Bytes,
    pub(crate) rng: Cell<XorShift>,
    pub(crate) counters: Arc<Counters>,
}

/// Serves until SIGINT or SIGTERM; returns the exit code.
pub fn serve(args: &UpstreamArgs) -> Result<u8, String> {
    signals::block().map_err(|e| format!("blocking signals: {e}"))?;
    let threads = args.threads.max(1);
    let first =
        BoundSocket::bind(args.listen, true).map_err(|e| format!("{}: {e}", args.listen))?;
    let addr = first.local_addr();
    let mut sockets = vec![first];
    for _ in 1..threads {
        sockets.push(BoundSocket::bind(addr, true).map_err(|e| format!("{addr}: {e}"))?);
    }
    let counters: Vec<Arc<Counters>> = (0..threads).map(|_| Arc::default()).collect();
    let inits: Vec<_> = sockets
        .into_iter()
        .zip(&counters)
        .map(|(s, c)| (s, c.clone(), args.clone()))
        .collect();
    spawn_shards_or_err(inits, args.pin)?;
    println!("listening {addr}");
    use std::io::Write as _;
    let _ = std::io::stdout().flush();

    let totals = || {
        let sum = |f: fn(&Counters) -> &AtomicU64| {
            counters
                .iter()
                .map(|c| f(c).load(Ordering::Relaxed))
                .sum::<u64>()
        };
        (
            sum(|c| &c.served),
            sum(|c| &c.failed),
            sum(|c| &c.resets),
            sum(|c| &c.echoed),
        )
    };
    loop {
        let signal = signals::wait(Duration::from_millis(100));
        let (served, failed, resets, echoed) = totals();
        if let Some(path) = &args.report_file {
            let tmp = path.with_extension("tmp");
            let body = format!(
                "{{\"served\":{served},\"failed_503\":{failed},\"resets\":{resets},\"echoed_bytes\":{echoed}}}\n"
            );
            if std::fs::write(&tmp, body)
                .and_then(|_| std::fs::rename(&tmp, path))
                .is_err()
            {
                eprintln!("meshbench upstream: cannot write {}", path.display());
            }
        }
        if matches!(
            signal,
            Some(signals::Signal::Interrupt | signals::Signal::Terminate)
        ) {
            println!("served {served} failed_503 {failed} resets {resets} echoed_bytes {echoed}");
            let _ = std::io::stdout().flush();
            return Ok(0);
        }
    }
}

fn spawn_shards_or_err(
    inits: Vec<(BoundSocket, Arc<Counters>, UpstreamArgs)>,
    pin: bool,
) -> Result<(), String> {
    runtime::shard::spawn_shards(inits, pin, |id, (socket, counters, args)| {
        let config = RuntimeConfig::default();
        if let Err(e) = runtime::block_on(&config, accept_loop(id, socket, counters, args)) {
            eprintln!("meshbench upstream: thread {id}: runtime failed: {e}");
            std::process::exit(2);
        }
    })
    .map(drop)
    .map_err(|e| format!("starting threads: {e}"))
}

async fn accept_loop(id: usize, socket: BoundSocket, counters: Arc<Counters>, args: UpstreamArgs) {
    let mut ok = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nx-upstream: {}\r\n\r\n",
        args.body_size, args.tag
    )
    .into_bytes();
    let ok_head_len = ok.len();
    ok.resize(ok_head_len + args.body_size, b'x');
    let seed = args.seed ^ (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let h2_body = bytes::Bytes::from(vec![b'x'; args.body_size]);
    let ctx = Rc::new(Ctx {
        args,
        ok,
        ok_head_len,
        h2_body,
        rng: Cell::new(XorShift::new(seed)),
        counters,
    });
    let mut listener = TcpListener::from_bound(socket);
    loop {
        match listener.accept().await {
            Ok(stream) if ctx.args.tcp_echo => drop(runtime::spawn(echo_conn(stream, ctx.clone()))),
            Ok(stream) if ctx.args.h2c => {
                drop(runtime::spawn(h2c::serve_conn(stream, ctx.clone())))
            }
            Ok(stream) => drop(runtime::spawn(serve_conn(stream, ctx.clone()))),
            Err(e) => {
                eprintln!("meshbench upstream: accept: {e}");
                runtime::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Receives more bytes into `buf`; false at end of stream or on error.
async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    match stream.recv().await {
        Ok(chunk) if !chunk.is_empty() => {
            buf.extend_from_slice(&chunk);
            true
        }
        _ => false,
    }
}

/// Sends back every byte received until the peer closes (then closes too).
async fn echo_conn(mut stream: TcpStream, ctx: Rc<Ctx>) {
    let mut out: Vec<u8> = Vec::new();
    loop {
        let chunk = match stream.recv().await {
            Ok(chunk) if !chunk.is_empty() => chunk,
            _ => return,
        };
        out.clear();
        out.extend_from_slice(&chunk);
        drop(chunk);
        let c = &ctx.counters;
        c.echoed.fetch_add(out.len() as u64, Ordering::Relaxed);
        let (res, back) = stream.send_owned(std::mem::take(&mut out)).await;
        out = back;
        if res.is_err() {
            return;
        }
    }
}

/// Serves one connection's requests, in order.
async fn serve_conn(mut stream: TcpStream, ctx: Rc<Ctx>) {
    let limits = Limits::default();
    let mut buf: Vec<u8> = Vec::new();
    let mut out: Vec<u8> = Vec::new();
    loop {
        // Head.
        let (head_len, body, keep_alive, echo, head_only) = loop {
            match parse_request(&buf, &limits) {
                Ok(Parse::Complete(h)) => {
                    break (
                        h.head_len,
                        h.body,
                        h.keep_alive,
                        h.path == "/echo",
                        h.method == "HEAD",
                    );
                }
                Ok(Parse::Partial) => {
                    if !fill(&mut stream, &mut buf).await {
                        return;
                    }
                }
                Err(e) => {
                    let status = e.response_status();
                    let msg = format!(
                        "HTTP/1.1 {status} Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = stream.send_owned(msg.into_bytes()).await;
                    return;
                }
            }
        };
        // Body (raw bytes, chunk framing included).
        let mut decoder = BodyDecoder::new(body);
        let mut body_len = 0;
        while !decoder.is_done() {
            match decoder.advance(&buf[head_len + body_len..]) {
                Ok(n) => body_len += n,
                Err(_) => return,
            }
            if !decoder.is_done() && !fill(&mut stream, &mut buf).await {
                return;
            }
        }

        if ctx.args.delay_ms > 0 {
            runtime::sleep(Duration::from_millis(ctx.args.delay_ms)).await;
        }
        let mut rng = ctx.rng.take();
        let draw = rng.next_f64();
        ctx.rng.set(rng);
        let c = &ctx.counters;
        out.clear();
        match fault(draw, ctx.args.reset_rate, ctx.args.fail_rate) {
            Fault::Reset => {
                c.resets.fetch_add(1, Ordering::Relaxed);
                stream.set_reset_on_close();
                return;
            }
            Fault::Fail503 => {
                c.failed.fetch_add(1, Ordering::Relaxed);
                out.extend_from_slice(
                    format!(
                        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nx-upstream: {}\r\n{}\r\n",
                        ctx.args.tag,
                        if keep_alive { "" } else { "connection: close\r\n" }
                    )
                    .as_bytes(),
                );
            }
            Fault::None if echo => {
                let framing = match body {
                    BodyKind::Chunked => "transfer-encoding: chunked".to_string(),
                    _ => format!("content-length: {body_len}"),
                };
                out.extend_from_slice(
                    format!(
                        "HTTP/1.1 200 OK\r\n{framing}\r\nx-upstream: {}\r\n{}\r\n",
                        ctx.args.tag,
                        if keep_alive {
                            ""
                        } else {
                            "connection: close\r\n"
                        }
                    )
                    .as_bytes(),
                );
                if !head_only {
                    out.extend_from_slice(&buf[head_len..head_len + body_len]);
                }
            }
            Fault::None => {
                let head = &ctx.ok[..ctx.ok_head_len];
                if keep_alive {
                    out.extend_from_slice(if head_only { head } else { &ctx.ok });
                } else {
                    out.extend_from_slice(&head[..head.len() - 2]);
                    out.extend_from_slice(b"connection: close\r\n\r\n");
                    if !head_only {
                        out.extend_from_slice(&ctx.ok[ctx.ok_head_len..]);
                    }
                }
            }
        }
        c.served.fetch_add(1, Ordering::Relaxed);
        let (res, back) = stream.send_owned(std::mem::take(&mut out)).await;
        out = back;
        if res.is_err() || !keep_alive {
            return;
        }
        buf.drain(..head_len + body_len);
    }
}

impl Default for XorShift {
    fn default() -> Self {
        XorShift::new(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xorshift_is_reproducible_and_uniform_enough() {
        let mut a = XorShift::new(7);
        let mut b = XorShift::new(7);
        let xs: Vec<f64> = (0..10_000).map(|_| a.next_f64()).collect();
        let ys: Vec<f64> = (0..10_000).map(|_| b.next_f64()).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let below_half = xs.iter().filter(|&&x| x < 0.5).count();
        assert!((4_500..5_500).contains(&below_half), "{below_half}");
        let mut z = XorShift::new(0);
        assert_ne!(z.next_f64(), XorShift::new(1).next_f64());
    }

    #[test]
    fn faults_partition_the_draw() {
        assert_eq!(fault(0.05, 0.1, 0.2), Fault::Reset);
        assert_eq!(fault(0.15, 0.1, 0.2), Fault::Fail503);
        assert_eq!(fault(0.35, 0.1, 0.2), Fault::None);
        // Rate 1 always fires, rate 0 never.
        assert_eq!(fault(0.999_999, 0.0, 1.0), Fault::Fail503);
        assert_eq!(fault(0.0, 0.0, 0.0), Fault::None);
        let mut rng = XorShift::new(3);
        let n = (0..10_000)
            .filter(|_| fault(rng.next_f64(), 0.0, 0.25) == Fault::Fail503)
            .count();
        assert!((2_200..2_800).contains(&n), "{n}");
    }
}
