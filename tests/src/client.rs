//! Clients: the system `curl` ([`curl`]), raw bytes over TCP ([`raw_plain`],
//! [`RawConn`]) and over rustls ([`tls_client`], [`tls_connect`]), plus a
//! small HTTP/1.1 response parser ([`parse_response`]) for the raw ones.
//!
//! The raw clients exist for what curl will not send (smuggling vectors,
//! stalled heads) and for exact checks of what came back and when the
//! connection closed. Reads always have a timeout, so a gateway that hangs
//! fails the test instead of hanging it.

use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::{ClientConfig, ClientConnection, StreamOwned};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::pki::Pki;

/// Default read timeout of raw connections.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `curl -sS --max-time 60 <args>` and returns its output. The caller's
/// own `--max-time` wins (curl takes the last one).
pub fn curl<S: AsRef<OsStr>>(args: &[S]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "60"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run curl (is it installed?): {e}"))
}

/// Describes a finished process for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout:\n{}\n--- stderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// One parsed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    /// Names lowercased, values trimmed, in order.
    pub headers: Vec<(String, String)>,
    /// Decoded body (chunked framing removed).
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (case-insensitive).
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Whether the response says `connection: close`.
    pub fn says_close(&self) -> bool {
        self.headers_named("connection")
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("close"))
    }
}

/// Parses one response at the start of `buf`. `head_request`: the request
/// was HEAD (no body follows). `eof`: no more bytes will come (ends a
/// close-delimited body). `Ok(None)`: incomplete. Returns the response
/// and how many bytes it used.
pub fn parse_response(
    buf: &[u8],
    head_request: bool,
    eof: bool,
) -> Result<Option<(Response, usize)>, String> {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        return if eof && !buf.is_empty() {
            Err(format!(
                "connection closed inside a response head: {:?}",
                String::from_utf8_lossy(buf)
            ))
        } else {
            Ok(None)
        };
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| "head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(format!("bad status line {status_line:?}"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let reason = parts.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    for line in lines {
        let (n, v) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header line {line:?}"))?;
        headers.push((n.to_ascii_lowercase(), v.trim().to_owned()));
    }
    let mut resp = Response {
        status,
        reason,
        headers,
        body: Vec::new(),
    };
    let start = head_end + 4;
    let rest = &buf[start..];
    if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(Some((resp, start)));
    }
    let chunked = resp
        .headers_named("transfer-encoding")
        .any(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        return match decode_chunked(rest)? {
            Some((body, used)) => {
                resp.body = body;
                Ok(Some((resp, start + used)))
            }
            None if eof => Err("connection closed inside a chunked body".into()),
            None => Ok(None),
        };
    }
    if let Some(cl) = resp.header("content-length") {
        let n: usize = cl
            .parse()
            .map_err(|_| format!("bad content-length {cl:?}"))?;
        if rest.len() < n {
            return if eof {
                Err(format!(
                    "connection closed after {} of {n} body bytes",
                    rest.len()
                ))
            } else {
                Ok(None)
            };
        }
        resp.body = rest[..n].to_vec();
        return Ok(Some((resp, start + n)));
    }
    if eof {
        resp.body = rest.to_vec();
        Ok(Some((resp, buf.len())))
    } else {
        Ok(None)
    }
}

/// Decodes a complete chunked body at the start of `buf`; `Ok(None)`: incomplete.
fn decode_chunked(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, String> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let Some(eol) = find(&buf[pos..], b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&buf[pos..pos + eol]).map_err(|_| "chunk line")?;
        let size_str = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_str, 16)
            .map_err(|_| format!("bad chunk size line {line:?}"))?;
        pos += eol + 2;
        if size == 0 {
            // Trailers up to the empty line.
            loop {
                let Some(eol) = find(&buf[pos..], b"\r\n") else {
                    return Ok(None);
                };
                pos += eol + 2;
                if eol == 0 {
                    return Ok(Some((body, pos)));
                }
            }
        }
        if buf.len() < pos + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[pos..pos + size]);
        if &buf[pos + size..pos + size + 2] != b"\r\n" {
            return Err("chunk data not followed by CRLF".into());
        }
        pos += size + 2;
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Every complete response in `bytes` (a whole connection's output, read
/// to its close), in order. Panics on bytes that are not responses.
pub fn split_responses(bytes: &[u8]) -> Vec<Response> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        match parse_response(rest, false, true) {
            Ok(Some((r, used))) => {
                out.push(r);
                rest = &rest[used..];
            }
            Ok(None) => break,
            Err(e) => panic!(
                "unparsable response bytes ({e}):\n{}",
                String::from_utf8_lossy(bytes)
            ),
        }
    }
    out
}

/// What [`RawConn::read_to_close`] saw.
#[derive(Debug, Clone)]
pub struct RawRead {
    pub bytes: Vec<u8>,
    /// The peer closed (EOF or reset) before the time limit.
    pub closed: bool,
    /// The close was a reset.
    pub reset: bool,
}

impl RawRead {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// An HTTP/1.1 client connection over any byte stream, with a read buffer.
#[derive(Debug)]
pub struct Conn<S> {
    pub stream: S,
    buf: Vec<u8>,
    eof: bool,
}

/// A plaintext connection.
pub type RawConn = Conn<TcpStream>;

/// A TLS connection made with rustls.
pub type TlsConn = Conn<StreamOwned<ClientConnection, TcpStream>>;

impl<S: Read + Write> Conn<S> {
    pub fn new(stream: S) -> Conn<S> {
        Conn {
            stream,
            buf: Vec::new(),
            eof: false,
        }
    }

    /// Writes all of `bytes`.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 64 * 1024];
        let n = self.stream.read(&mut chunk)?;
        if n == 0 {
            self.eof = true;
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads the next final (non-1xx) response to a non-HEAD request.
    pub fn read_response(&mut self) -> io::Result<Response> {
        self.read_response_to(false)
    }

    /// Reads the next final response; `head_request`: it answers a HEAD.
    pub fn read_response_to(&mut self, head_request: bool) -> io::Result<Response> {
        loop {
            match parse_response(&self.buf, head_request, self.eof) {
                Ok(Some((resp, used))) => {
                    self.buf.drain(..used);
                    if (100..200).contains(&resp.status) {
                        continue;
                    }
                    return Ok(resp);
                }
                Ok(None) if self.eof => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed before a response",
                    ));
                }
                Ok(None) => {
                    self.fill()?;
                }
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
        }
    }

    /// Bytes received but not yet consumed by a `read_response`.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }
}

impl Conn<TcpStream> {
    /// Connects with a [`READ_TIMEOUT`] read timeout.
    pub fn connect(addr: SocketAddr) -> RawConn {
        let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        s.set_read_timeout(Some(READ_TIMEOUT))
            .expect("read timeout");
        s.set_nodelay(true).expect("nodelay");
        Conn::new(s)
    }

    /// Reads until the peer closes or `limit` passes; returns everything
    /// not yet consumed, including what earlier reads buffered.
    pub fn read_to_close(&mut self, limit: Duration) -> RawRead {
        let deadline = Instant::now() + limit;
        let mut closed = self.eof;
        let mut reset = false;
        while !closed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.stream
                .set_read_timeout(Some(left))
                .expect("read timeout");
            match self.fill() {
                Ok(0) => closed = true,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    closed = true;
                    reset = true;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break;
                }
                Err(e) => panic!("read: {e}"),
            }
        }
        let _ = self.stream.set_read_timeout(Some(READ_TIMEOUT));
        RawRead {
            bytes: std::mem::take(&mut self.buf),
            closed,
            reset,
        }
    }
}

/// Sends `bytes` on a new plaintext connection to `addr` and returns what
/// comes back until the gateway closes the connection (or 10 s pass).
/// Write errors are ignored: the gateway may close before reading it all.
pub fn raw_plain(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut c = RawConn::connect(addr);
    let _ = c.send(bytes);
    c.read_to_close(READ_TIMEOUT).bytes
}

/// A rustls client configuration (aws-lc-rs) that trusts the test CA and
/// presents the client certificate; `None` for `cert_key` presents none.
pub fn tls_client_with(ca: &Path, cert_key: Option<(&Path, &Path)>) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("read CA") {
        roots.add(cert.expect("CA PEM")).expect("add CA");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots);
    let config = match cert_key {
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .expect("read client cert")
                .collect::<Result<_, _>>()
                .expect("client cert PEM");
            let key = PrivateKeyDer::from_pem_file(key).expect("client key PEM");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client auth cert")
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// [`tls_client_with`] the test CA and `client.pem`.
pub fn tls_client(pki: &Pki) -> Arc<ClientConfig> {
    tls_client_with(&pki.ca, Some((&pki.client_cert, &pki.client_key)))
}

/// A TLS connection to `addr` with server name `localhost`; the handshake
/// completes on first use.
pub fn tls_connect(addr: SocketAddr, config: &Arc<ClientConfig>) -> io::Result<TlsConn> {
    let name = ServerName::try_from("localhost").expect("server name");
    let conn = ClientConnection::new(config.clone(), name).map_err(io::Error::other)?;
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(30)))?;
    tcp.set_nodelay(true)?;
    Ok(Conn::new(StreamOwned::new(conn, tcp)))
}

/// The values of every `name` field line in a raw request or response
/// head (as `/headers` returns it), in order; names compared
/// case-insensitively, values trimmed.
pub fn fields_in_head(head: &[u8], name: &str) -> Vec<String> {
    String::from_utf8_lossy(head)
        .split("\r\n")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_owned())
        .collect()
}

/// Runs `openssl s_client` against `addr` (stdin closed, so it quits right
/// after the handshake), trusting the test CA and presenting the client
/// certificate, with `extra` arguments (e.g. `-tls1_2`).
pub fn openssl_s_client(addr: SocketAddr, pki: &Pki, extra: &[&str]) -> Output {
    Command::new("openssl")
        .arg("s_client")
        .arg("-connect")
        .arg(addr.to_string())
        .args(["-servername", "localhost", "-verify_return_error", "-brief"])
        .arg("-CAfile")
        .arg(&pki.ca)
        .arg("-cert")
        .arg(&pki.client_cert)
        .arg("-key")
        .arg(&pki.client_key)
        .args(extra)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl (is it installed?): {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_length_chunked_and_close_delimited() {
        let (r, used) = parse_response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcX",
            false,
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!((r.status, r.body.as_slice(), used), (200, &b"abc"[..], 41));
        let (r, _) = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n1\r\nd\r\n0\r\n\r\n",
            false,
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.body, b"abcd");
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\n\r\nabc", false, false)
                .unwrap()
                .is_none()
        );
        let (r, _) = parse_response(b"HTTP/1.1 200 OK\r\n\r\nabc", false, true)
            .unwrap()
            .unwrap();
        assert_eq!(r.body, b"abc");
        assert!(
            parse_response(
                b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc",
                false,
                true
            )
            .is_err()
        );
    }
}
