//! A collector's address (`http://host:port/path`, parsed once when the
//! config is loaded) and one HTTP/1.1 POST to it with a deadline: connect,
//! send, read the status line. Plain HTTP only; the exporter runs on its
//! own thread, so a blocking socket with timeouts is all it needs.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Where a collector listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    /// Starts with `/`.
    pub path: String,
}

impl Endpoint {
    /// `http://host[:port][/path]`; the error says what is wrong with it.
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let rest = match url.split_once("://") {
            Some(("http", rest)) => rest,
            Some(("https", _)) => {
                return Err(
                    "https collectors are not supported yet; use an http:// endpoint (a collector on loopback, or an agent next to the gateway)"
                        .into(),
                );
            }
            _ => return Err(format!("{url:?} is not an http:// URL")),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(format!(
                "{url:?}: the path has spaces or control characters"
            ));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                let port = p
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("{url:?}: port {p:?} is not 1..=65535"))?;
                (h, port)
            }
            _ => (authority, 80),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains(['@', '/', ' ']) {
            return Err(format!("{url:?}: no host"));
        }
        Ok(Endpoint {
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        })
    }

    /// `host:port` as written in a Host header.
    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}{}", self.authority(), self.path)
    }
}

/// POSTs `body` to `endpoint`, each step within `timeout`; returns the
/// response's status.
pub fn post(
    endpoint: &Endpoint,
    content_type: &str,
    body: &[u8],
    timeout: Duration,
) -> io::Result<u16> {
    let addr = (endpoint.host.as_str(), endpoint.port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "host has no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_read_timeout(Some(timeout))?;
    let head = format!(
        "POST {} HTTP/1.1\r\nhost: {}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nuser-agent: meshgate/{}\r\nconnection: close\r\n\r\n",
        endpoint.path,
        endpoint.authority(),
        body.len(),
        env!("CARGO_PKG_VERSION"),
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut line = String::new();
    BufReader::new(stream).take_line(&mut line)?;
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not an HTTP response: {:?}", line.trim_end()),
            )
        })?;
    Ok(status)
}

/// Reads one line of at most 1 KiB.
trait TakeLine {
    fn take_line(self, line: &mut String) -> io::Result<()>;
}

impl<R: io::Read> TakeLine for BufReader<R> {
    fn take_line(self, line: &mut String) -> io::Result<()> {
        io::Read::take(self, 1024).read_line(line).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_or_say_why() {
        let e = Endpoint::parse("http://127.0.0.1:4318/v1/traces").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.path.as_str()),
            ("127.0.0.1", 4318, "/v1/traces")
        );
        let e = Endpoint::parse("http://collector").unwrap();
        assert_eq!((e.port, e.path.as_str()), (80, "/"));
        let e = Endpoint::parse("http://[::1]:9411/api/v2/spans").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 9411));
        assert_eq!(e.to_string(), "http://[::1]:9411/api/v2/spans");
        for (bad, says) in [
            ("https://x/v1/traces", "https"),
            ("127.0.0.1:4318", "not an http"),
            ("http://:4318/", "no host"),
            ("http://x:0/", "port"),
            ("http://x:99999/", "port"),
            ("http://x/a b", "spaces"),
        ] {
            let e = Endpoint::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
