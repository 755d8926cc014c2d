//! The quickstart's built-in demo upstream: a tiny HTTP/1.1 origin on
//! loopback (std threads; it is a demo, not the data plane) that greets the
//! caller by the identity meshgate forwarded in `x-forwarded-client-cert`.
//! It parses with the data plane's own codec.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;

use dataplane::http::{self, BodyDecoder, Limits, Parse};

/// Starts the demo upstream on `addr` (port 0: any) and returns its address.
pub fn start(addr: SocketAddr) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    thread::Builder::new()
        .name("demo-upstream".into())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                let _ = thread::Builder::new()
                    .name("demo-conn".into())
                    .spawn(move || serve(conn));
            }
        })?;
    Ok(local)
}

fn serve(mut conn: TcpStream) {
    let _ = conn.set_nodelay(true);
    let mut buf = Vec::with_capacity(8192);
    let mut chunk = [0u8; 16384];
    loop {
        // Read one request head.
        let (head_len, body, keep_alive, reply) = loop {
            if let Ok(Parse::Complete(head)) = http::parse_request(&buf, &Limits::default()) {
                break (head.head_len, head.body, head.keep_alive, greeting(&head));
            } else if let Err(e) = http::parse_request(&buf, &Limits::default()) {
                let mut out = Vec::new();
                http::write_local_response(e.status(), &[], b"bad request\n", false, &mut out);
                let _ = conn.write_all(&out);
                return;
            }
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        buf.drain(..head_len);
        // Skip the request body.
        let mut decoder = BodyDecoder::new(body);
        loop {
            match decoder.advance(&buf) {
                Ok(n) => {
                    buf.drain(..n);
                }
                Err(_) => return,
            }
            if decoder.is_done() {
                break;
            }
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let mut out = Vec::new();
        http::write_local_response(
            200,
            &[("x-demo-upstream", "meshgate-quickstart")],
            reply.as_bytes(),
            keep_alive,
            &mut out,
        );
        if conn.write_all(&out).is_err() || !keep_alive {
            return;
        }
    }
}

fn greeting(head: &http::RequestHead<'_>) -> String {
    let header = |name| {
        head.header(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    let caller = header("x-forwarded-client-cert")
        .and_then(|xfcc| {
            xfcc.split(';').find_map(|kv| {
                kv.strip_prefix("URI=")
                    .map(|u| u.trim_matches('"').to_owned())
            })
        })
        .unwrap_or_else(|| "an anonymous caller".to_owned());
    format!(
        "hello {caller}\nyou asked for {} {}\nrequest id: {}\nforwarded for: {}\n",
        head.method,
        head.target,
        header("x-request-id").unwrap_or_default(),
        header("x-forwarded-for").unwrap_or_default(),
    )
}
