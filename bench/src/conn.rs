//! One load-generating connection: opening it (TCP, then TLS when the URL
//! is https or tls), the request bytes it repeats, and one exchange, with
//! every failure mapped to an [`ErrorKind`]. An HTTP exchange is a request
//! and its response; a raw TCP exchange is one block written and the same
//! block read back from an echo server, byte for byte.
//!
//! The request is built once per run ([`build_requests`]). Over plain TCP
//! the same vector is lent to the kernel for every send (no copy), and
//! response bytes are checked straight from the runtime's receive buffers
//! (by the sans-IO [`ResponseReader`], or against the block sent).

use std::net::SocketAddr;
use std::sync::Arc;

use dataplane::runtime::TcpStream;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;

use crate::args::{Proto, RunArgs, Target};
use crate::response::{Done, Feed, ResponseReader};
use crate::stats::{ErrorKind, classify_io};
use crate::tls::TlsConn;

/// Where and how to connect; shared by every connection of a thread.
#[derive(Clone)]
pub struct Endpoint {
    /// Resolved address.
    pub addr: SocketAddr,
    /// TLS settings for https targets.
    pub tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
}

/// The requests the connections repeat: one per `--path` (or the URL's
/// path), each with the body of `--body-size` or `--body-file`.
/// A tcp target gets one block: the file, or `--body-size` bytes of a
/// pattern (so a corrupted echo shows).
pub fn build_requests(args: &RunArgs) -> Result<Vec<Vec<u8>>, String> {
    let body = request_body(args)?;
    if args.url.proto == Proto::Tcp {
        if body.is_empty() {
            return Err("a tcp:// or tls:// block cannot be empty (--body-file is)".into());
        }
        return Ok(vec![body]);
    }
    Ok(request_paths(args)
        .into_iter()
        .map(|path| {
            build_request_with(
                args.method(),
                &args.url,
                path,
                &args.headers,
                &body,
                args.new_conn,
            )
        })
        .collect())
}

/// The paths the connections go through: `--path`s, or the URL's.
pub fn request_paths(args: &RunArgs) -> Vec<&str> {
    if args.paths.is_empty() {
        vec![args.url.path.as_str()]
    } else {
        args.paths.iter().map(String::as_str).collect()
    }
}

/// The request body (tcp: the block).
pub fn request_body(args: &RunArgs) -> Result<Vec<u8>, String> {
    Ok(match &args.body_file {
        Some(file) => {
            std::fs::read(file).map_err(|e| format!("--body-file {}: {e}", file.display()))?
        }
        None if args.url.proto == Proto::Tcp => {
            let size = match args.body_size {
                0 => RunArgs::DEFAULT_TCP_BLOCK,
                n => n,
            };
            (0..size).map(|i| (i % 251) as u8).collect()
        }
        None => vec![b'x'; args.body_size],
    })
}

/// One request from its parts.
pub fn build_request_with(
    method: &str,
    target: &Target,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
    close: bool,
) -> Vec<u8> {
    let body_size = body.len();
    let mut req = Vec::with_capacity(128 + body_size);
    req.extend_from_slice(format!("{method} {path} HTTP/1.1\r\n").as_bytes());
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    if !has("host") {
        req.extend_from_slice(format!("Host: {}\r\n", target.authority).as_bytes());
    }
    for (name, value) in headers {
        req.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    if body_size > 0 || method == "POST" || method == "PUT" {
        req.extend_from_slice(format!("Content-Length: {body_size}\r\n").as_bytes());
    }
    if close && !has("connection") {
        req.extend_from_slice(b"Connection: close\r\n");
    }
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(body);
    req
}

/// An open connection.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsConn>),
}

impl Conn {
    /// Opens a connection (TCP connect, then the TLS handshake).
    pub async fn open(ep: &Endpoint) -> Result<Conn, ErrorKind> {
        let tcp = TcpStream::connect(ep.addr)
            .await
            .map_err(|_| ErrorKind::Connect)?;
        match &ep.tls {
            None => Ok(Conn::Plain(tcp)),
            Some((config, name)) => TlsConn::handshake(tcp, config.clone(), name.clone())
                .await
                .map(|t| Conn::Tls(Box::new(t))),
        }
    }

    /// Makes the coming close a reset (after a timeout or a bad response:
    /// the stream is in an unknown state).
    pub fn abort(&mut self) {
        match self {
            Conn::Plain(tcp) => tcp.set_reset_on_close(),
            Conn::Tls(t) => t.abort(),
        }
    }
}

/// Per-connection buffers reused across exchanges.
pub struct Exchange {
    /// The request (tcp: the block); lent to the kernel and back on every
    /// plain send.
    pub request: Vec<u8>,
    /// How the answer is read.
    answer: Answer,
    /// Decrypted bytes (TLS only).
    plain: Vec<u8>,
}

/// What an exchange waits for after sending.
enum Answer {
    /// An HTTP/1.1 response.
    Http(ResponseReader),
    /// The request echoed back; `echoed` bytes of it so far.
    Echo { echoed: usize },
}

/// A complete response and what it means for the connection.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    pub status: u16,
    /// The connection may carry the next request.
    pub reusable: bool,
}

impl Exchange {
    /// Buffers for `request`, answered to `method` (tcp: echoed).
    pub fn new(request: Vec<u8>, method: &str, proto: Proto) -> Exchange {
        let answer = match proto {
            Proto::Http => Answer::Http(ResponseReader::new(method)),
            Proto::Tcp => Answer::Echo { echoed: 0 },
        };
        Exchange {
            request,
            answer,
            plain: Vec::new(),
        }
    }

    /// Sends the request and reads the whole response; response bytes are
    /// added to `bytes`.
    pub async fn run(&mut self, conn: &mut Conn, bytes: &mut u64) -> Result<Outcome, ErrorKind> {
        match &mut self.answer {
            Answer::Http(reader) => reader.reset(),
            Answer::Echo { echoed } => *echoed = 0,
        }
        match conn {
            Conn::Plain(tcp) => {
                let (res, back) = tcp.send_owned(std::mem::take(&mut self.request)).await;
                self.request = back;
                res.map_err(|e| classify_io(&e))?;
                loop {
                    let chunk = tcp.recv().await.map_err(|e| classify_io(&e))?;
                    if chunk.is_empty() {
                        return self.eof();
                    }
                    *bytes += chunk.len() as u64;
                    if let Some(done) = self.feed(&chunk)? {
                        return Ok(outcome(done, chunk.len()));
                    }
                }
            }
            Conn::Tls(tls) => {
                tls.send(&self.request).await?;
                loop {
                    self.plain.clear();
                    let n = tls.recv_plain(&mut self.plain).await?;
                    if n == 0 {
                        return self.eof();
                    }
                    *bytes += n as u64;
                    let plain = std::mem::take(&mut self.plain);
                    let fed = self.feed(&plain);
                    self.plain = plain;
                    if let Some(done) = fed? {
                        return Ok(outcome(done, n));
                    }
                }
            }
        }
    }

    fn feed(&mut self, input: &[u8]) -> Result<Option<Done>, ErrorKind> {
        match &mut self.answer {
            Answer::Http(reader) => match reader.feed(input) {
                Ok(Feed::NeedMore) => Ok(None),
                Ok(Feed::Complete(done)) => Ok(Some(done)),
                Err(_) => Err(ErrorKind::BadResponse),
            },
            Answer::Echo { echoed } => {
                let want = &self.request[*echoed..];
                // More than was sent, or other bytes: not an echo.
                if input.len() > want.len() || want[..input.len()] != *input {
                    return Err(ErrorKind::BadResponse);
                }
                *echoed += input.len();
                Ok((*echoed == self.request.len()).then_some(Done {
                    status: 200,
                    keep_alive: true,
                    consumed: input.len(),
                }))
            }
        }
    }

    fn eof(&mut self) -> Result<Outcome, ErrorKind> {
        let Answer::Http(reader) = &mut self.answer else {
            return Err(ErrorKind::Closed);
        };
        match reader.feed_eof() {
            Ok(done) => Ok(Outcome {
                status: done.status,
                reusable: false,
            }),
            // Closed before the response was complete (or began).
            Err(_) => Err(ErrorKind::Closed),
        }
    }
}

/// Bytes after the response mean the stream is out of step: finish this
/// response but do not reuse the connection.
fn outcome(done: Done, fed: usize) -> Outcome {
    Outcome {
        status: done.status,
        reusable: done.keep_alive && done.consumed == fed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::parse_target;

    #[test]
    fn request_bytes() {
        let t = parse_target("http://127.0.0.1:9000/echo?x=1").unwrap();
        let req = build_request_with(
            "POST",
            &t,
            &t.path,
            &[("x-k".into(), "v".into())],
            b"xxx",
            false,
        );
        assert_eq!(
            req,
            b"POST /echo?x=1 HTTP/1.1\r\nHost: 127.0.0.1:9000\r\nx-k: v\r\nContent-Length: 3\r\n\r\nxxx"
        );
        let req = build_request_with(
            "GET",
            &t,
            "/other?q",
            &[("host".into(), "orders".into())],
            b"",
            true,
        );
        assert_eq!(
            req,
            b"GET /other?q HTTP/1.1\r\nhost: orders\r\nConnection: close\r\n\r\n"
        );
        // The data plane's parser accepts what we send.
        let limits = dataplane::http::Limits::default();
        assert!(matches!(
            dataplane::http::parse_request(&req, &limits),
            Ok(dataplane::http::Parse::Complete(_))
        ));
    }
}
