//! [`Upstream`]: a small HTTP/1.1 origin on `127.0.0.1:0`, one std thread
//! per connection, written by hand for these tests.
//!
//! It deliberately shares no code with the dataplane's codec: if the
//! gateway mangles a message, this independent parser is what notices.
//! It is strict where that helps the tests (a malformed chunked body ends
//! the connection without a response, so it is never counted as served)
//! and simple everywhere else.
//!
//! Endpoints (the query string is ignored; every response carries
//! `x-upstream: <tag>`):
//!
//! | path | response |
//! | --- | --- |
//! | `/echo` | 200, the request body, `content-length` |
//! | `/bytes/N` | 200, [`crate::pattern`]`(N)`, `content-length` |
//! | `/chunked/N` | 200, the same bytes, chunked (chunk sizes vary) |
//! | `/headers` | 200, the raw request head as received |
//! | `/status/CODE` | CODE, a short body (none for 1xx, 204, 304) |
//! | `/sleep/MS` | sleeps MS milliseconds, then 200 |
//! | `/truncate` | declares `content-length: 100000`, sends 1000 bytes, closes |
//! | `/close-delimited/N` | 200 with neither length nor chunking, N bytes, closes |
//! | anything else | 404 |
//!
//! Connections are persistent unless the request says `connection: close`
//! (or is HTTP/1.0 without keep-alive). `HEAD` gets the head a `GET` would.
//! [`Upstream::served`] counts requests whose body was read completely and
//! that were answered (the counter is bumped before the response is written,
//! so a client that has seen the response sees the count).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Largest request head or chunk-size line accepted.
const MAX_HEAD: usize = 1 << 20;
/// Largest `N` in `/bytes/N` and friends.
const MAX_GENERATED: usize = 1 << 30;

#[derive(Debug, Default)]
struct State {
    served: AtomicUsize,
    heads: AtomicUsize,
    connections: AtomicUsize,
    /// Connections being served now.
    open: AtomicUsize,
    log: Mutex<Vec<String>>,
}

/// A running origin; stops accepting when dropped.
#[derive(Debug)]
pub struct Upstream {
    addr: SocketAddr,
    tag: String,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Upstream {
    /// Binds 127.0.0.1:0 and starts serving; `tag` goes into `x-upstream`.
    pub fn start(tag: &str) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("upstream: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("upstream: local_addr");
        let state = Arc::new(State::default());
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (state, stop, tag) = (state.clone(), stop.clone(), tag.to_owned());
            std::thread::Builder::new()
                .name(format!("upstream-{tag}"))
                .spawn(move || accept_loop(listener, &tag, &state, &stop))
                .expect("spawn upstream thread")
        };
        Upstream {
            addr,
            tag: tag.to_owned(),
            state,
            stop,
            accept: Some(accept),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// Requests received completely (head and body) and answered.
    pub fn served(&self) -> usize {
        self.state.served.load(Ordering::SeqCst)
    }

    /// Request heads received, whether or not their body arrived.
    pub fn heads(&self) -> usize {
        self.state.heads.load(Ordering::SeqCst)
    }

    /// TCP connections accepted.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Connections open now (accepted and not yet finished): 0 means every
    /// byte sent to this origin has been read and acted on.
    pub fn open_connections(&self) -> usize {
        self.state.open.load(Ordering::SeqCst)
    }

    /// `"METHOD target"` of every served request, in order.
    pub fn requests(&self) -> Vec<String> {
        self.state.log.lock().expect("log lock").clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, tag: &str, state: &Arc<State>, stop: &AtomicBool) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(conn) = conn else { continue };
        state.connections.fetch_add(1, Ordering::SeqCst);
        state.open.fetch_add(1, Ordering::SeqCst);
        let (thread_state, tag) = (state.clone(), tag.to_owned());
        let spawned = std::thread::Builder::new()
            .name(format!("upstream-{tag}-conn"))
            .stack_size(256 * 1024)
            .spawn(move || {
                let _ = serve(conn, &tag, &thread_state);
                thread_state.open.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            // Out of threads: the connection is dropped, which the test sees.
            state.open.fetch_sub(1, Ordering::SeqCst);
            continue;
        }
    }
}

/// A request head, parsed.
#[derive(Debug)]
struct Request {
    raw_head: Vec<u8>,
    method: String,
    target: String,
    version: String,
    /// Names lowercased, values trimmed.
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> impl Iterator<Item = &str> {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The comma-separated tokens of every `name` line, lowercased.
    fn tokens(&self, name: &str) -> Vec<String> {
        self.header(name)
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .collect()
    }

    fn wants_close(&self) -> bool {
        let conn = self.tokens("connection");
        if self.version == "HTTP/1.0" {
            !conn.iter().any(|t| t == "keep-alive")
        } else {
            conn.iter().any(|t| t == "close")
        }
    }
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

/// Serves one connection until it closes or breaks.
fn serve(conn: TcpStream, tag: &str, state: &State) -> io::Result<()> {
    let mut reader = BufReader::with_capacity(64 * 1024, conn.try_clone()?);
    let mut writer = conn;
    loop {
        let Some(raw_head) = read_head(&mut reader)? else {
            return Ok(());
        };
        state.heads.fetch_add(1, Ordering::SeqCst);
        let req = parse_head(raw_head)?;
        if req.version == "HTTP/1.1" && req.tokens("expect").iter().any(|t| t == "100-continue") {
            writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let body = read_body(&mut reader, &req)?;
        state.served.fetch_add(1, Ordering::SeqCst);
        state
            .log
            .lock()
            .expect("log lock")
            .push(format!("{} {}", req.method, req.target));
        let keep = respond(&mut writer, &req, body, tag)?;
        if !keep || req.wants_close() {
            let _ = writer.shutdown(Shutdown::Write);
            // Drain until the peer closes so our close is not a reset.
            let _ = writer.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = io::copy(&mut reader, &mut io::sink());
            return Ok(());
        }
    }
}

/// Reads one line ending in LF (kept), at most [`MAX_HEAD`] bytes.
fn read_line(r: &mut impl BufRead, out: &mut Vec<u8>) -> io::Result<usize> {
    let n = r.take(MAX_HEAD as u64).read_until(b'\n', out)?;
    if n > 0 && out.last() != Some(&b'\n') {
        return Err(bad("line too long or truncated"));
    }
    Ok(n)
}

/// The head up to and including the empty line; `None` on a clean EOF
/// before the first byte.
fn read_head(r: &mut impl BufRead) -> io::Result<Option<Vec<u8>>> {
    let mut head = Vec::new();
    loop {
        let start = head.len();
        let n = read_line(r, &mut head)?;
        if n == 0 {
            return if head.is_empty() {
                Ok(None)
            } else {
                Err(bad("EOF inside the head"))
            };
        }
        if &head[start..] == b"\r\n" && start > 0 {
            return Ok(Some(head));
        }
        if head.len() > MAX_HEAD {
            return Err(bad("head too large"));
        }
    }
}

fn parse_head(raw_head: Vec<u8>) -> io::Result<Request> {
    let text = String::from_utf8(raw_head.clone()).map_err(|_| bad("head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("malformed request line"));
    };
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(bad("bad version"));
    }
    let mut headers = Vec::new();
    for line in lines.take_while(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad("header without colon"))?;
        if name.is_empty() || name.bytes().any(|b| b <= b' ' || b >= 0x7f) {
            return Err(bad("bad header name"));
        }
        if value.bytes().any(|b| (b < b' ' && b != b'\t') || b == 0x7f) {
            return Err(bad("control byte in header value"));
        }
        headers.push((
            name.to_ascii_lowercase(),
            value.trim_matches([' ', '\t']).to_owned(),
        ));
    }
    Ok(Request {
        raw_head,
        method: method.to_owned(),
        target: target.to_owned(),
        version: version.to_owned(),
        headers,
    })
}

fn read_body(r: &mut impl BufRead, req: &Request) -> io::Result<Vec<u8>> {
    let te = req.tokens("transfer-encoding");
    if !te.is_empty() {
        if te.last().map(String::as_str) != Some("chunked") || te.len() != 1 {
            return Err(bad("unsupported transfer-encoding"));
        }
        if req.header("content-length").next().is_some() {
            return Err(bad("both transfer-encoding and content-length"));
        }
        return read_chunked(r);
    }
    let lengths: Vec<&str> = req.header("content-length").collect();
    match lengths.as_slice() {
        [] => Ok(Vec::new()),
        [one] => {
            let n: usize = one.parse().map_err(|_| bad("bad content-length"))?;
            let mut body = vec![0u8; n];
            r.read_exact(&mut body)?;
            Ok(body)
        }
        _ => Err(bad("several content-length lines")),
    }
}

fn read_chunked(r: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut line = Vec::new();
        read_line(r, &mut line)?;
        let line = line
            .strip_suffix(b"\r\n")
            .ok_or_else(|| bad("chunk-size line not ended by CRLF"))?;
        let size_end = line.iter().position(|&b| b == b';').unwrap_or(line.len());
        let size = std::str::from_utf8(&line[..size_end])
            .ok()
            .filter(|s| !s.is_empty() && s.len() <= 16)
            .and_then(|s| usize::from_str_radix(s, 16).ok())
            .ok_or_else(|| bad("bad chunk size"))?;
        if size == 0 {
            // Trailer section, then the final CRLF.
            loop {
                let mut t = Vec::new();
                read_line(r, &mut t)?;
                if t == b"\r\n" {
                    return Ok(body);
                }
                if t.is_empty() || !t.ends_with(b"\r\n") {
                    return Err(bad("bad trailer"));
                }
            }
        }
        if body.len() + size > MAX_GENERATED {
            return Err(bad("body too large"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        r.read_exact(&mut crlf)?;
        if &crlf != b"\r\n" {
            return Err(bad("chunk data not followed by CRLF"));
        }
    }
}

/// What an endpoint answers.
enum Reply {
    Full(u16, Vec<u8>),
    /// No body and no content-length (1xx, 204, 304).
    Bodiless(u16),
    Chunked(Vec<u8>),
    Truncate,
    CloseDelimited(Vec<u8>),
}

fn number(s: &str) -> Option<usize> {
    s.parse().ok().filter(|&n| n <= MAX_GENERATED)
}

fn route(req: &Request, body: Vec<u8>) -> Reply {
    let path = req.target.split('?').next().unwrap_or_default();
    let mut segments = path.trim_start_matches('/').splitn(2, '/');
    match (segments.next().unwrap_or_default(), segments.next()) {
        ("echo", None) => Reply::Full(200, body),
        ("headers", None) => Reply::Full(200, req.raw_head.clone()),
        ("bytes", Some(n)) => match number(n) {
            Some(n) => Reply::Full(200, crate::pattern(n)),
            None => Reply::Full(400, b"bad length\n".to_vec()),
        },
        ("chunked", Some(n)) => match number(n) {
            Some(n) => Reply::Chunked(crate::pattern(n)),
            None => Reply::Full(400, b"bad length\n".to_vec()),
        },
        ("close-delimited", Some(n)) => match number(n) {
            Some(n) => Reply::CloseDelimited(crate::pattern(n)),
            None => Reply::Full(400, b"bad length\n".to_vec()),
        },
        ("status", Some(code)) => match code.parse::<u16>() {
            Ok(c @ (100..=199 | 204 | 304)) => Reply::Bodiless(c),
            Ok(c @ 200..=599) => Reply::Full(c, format!("status {c}\n").into_bytes()),
            _ => Reply::Full(400, b"bad status\n".to_vec()),
        },
        ("sleep", Some(ms)) => match ms.parse::<u64>() {
            Ok(ms) => {
                std::thread::sleep(Duration::from_millis(ms));
                Reply::Full(200, format!("slept {ms}\n").into_bytes())
            }
            Err(_) => Reply::Full(400, b"bad duration\n".to_vec()),
        },
        ("truncate", None) => Reply::Truncate,
        _ => Reply::Full(404, b"no such endpoint\n".to_vec()),
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}

/// Chunk sizes of `/chunked/N`, cycled.
const CHUNK_SIZES: [usize; 7] = [1, 10, 100, 1000, 10_000, 65_536, 3];

/// Writes the response; returns whether the connection may stay open.
fn respond(w: &mut TcpStream, req: &Request, body: Vec<u8>, tag: &str) -> io::Result<bool> {
    let head_only = req.method == "HEAD";
    let reply = route(req, body);
    let status_line =
        |code: u16| format!("HTTP/1.1 {code} {}\r\nx-upstream: {tag}\r\n", reason(code));
    let mut out = Vec::new();
    match reply {
        Reply::Full(code, body) => {
            out.extend_from_slice(status_line(code).as_bytes());
            out.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
            if !head_only {
                out.extend_from_slice(&body);
            }
            w.write_all(&out)?;
            Ok(true)
        }
        Reply::Bodiless(code) => {
            out.extend_from_slice(status_line(code).as_bytes());
            out.extend_from_slice(b"\r\n");
            w.write_all(&out)?;
            Ok(true)
        }
        Reply::Chunked(body) => {
            out.extend_from_slice(status_line(200).as_bytes());
            out.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
            if head_only {
                w.write_all(&out)?;
                return Ok(true);
            }
            let mut rest = &body[..];
            let mut sizes = CHUNK_SIZES.iter().cycle();
            while !rest.is_empty() {
                let n = (*sizes.next().unwrap_or(&1)).min(rest.len());
                out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
                out.extend_from_slice(&rest[..n]);
                out.extend_from_slice(b"\r\n");
                rest = &rest[n..];
                if out.len() > 256 * 1024 {
                    w.write_all(&out)?;
                    out.clear();
                }
            }
            out.extend_from_slice(b"0\r\n\r\n");
            w.write_all(&out)?;
            Ok(true)
        }
        Reply::Truncate => {
            out.extend_from_slice(status_line(200).as_bytes());
            out.extend_from_slice(b"content-length: 100000\r\n\r\n");
            if !head_only {
                out.extend_from_slice(&crate::pattern(1000));
            }
            w.write_all(&out)?;
            Ok(false)
        }
        Reply::CloseDelimited(body) => {
            out.extend_from_slice(status_line(200).as_bytes());
            out.extend_from_slice(b"connection: close\r\n\r\n");
            if !head_only {
                out.extend_from_slice(&body);
            }
            w.write_all(&out)?;
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(up: &Upstream, bytes: &[u8]) -> Vec<u8> {
        let mut s = TcpStream::connect(up.addr()).expect("connect");
        s.write_all(bytes).expect("write");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        out
    }

    #[test]
    fn echoes_a_chunked_body_and_counts_it() {
        let up = Upstream::start("t");
        let out = exchange(
            &up,
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n",
        );
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("x-upstream: t\r\n"), "{text}");
        assert!(text.ends_with("content-length: 5\r\n\r\nabcde"), "{text}");
        assert_eq!(up.served(), 1);
    }

    #[test]
    fn broken_chunked_body_is_not_served() {
        let up = Upstream::start("t");
        let out = exchange(
            &up,
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        );
        assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
        assert_eq!(up.served(), 0);
        assert_eq!(up.heads(), 1);
    }

    #[test]
    fn keep_alive_and_chunked_response() {
        let up = Upstream::start("t");
        let out = exchange(
            &up,
            b"GET /chunked/20 HTTP/1.1\r\nHost: x\r\n\r\nGET /status/204 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("transfer-encoding: chunked"), "{text}");
        assert!(text.contains("HTTP/1.1 204 No Content"), "{text}");
        assert_eq!(up.served(), 2);
        assert_eq!(up.connections(), 1);
    }
}
