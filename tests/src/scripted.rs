//! [`Scripted`]: an origin that answers every connection with the same
//! canned bytes, for upstream misbehaviour [`crate::Upstream`] would never
//! produce (response smuggling, broken chunking, closing a keep-alive
//! connection right after answering).
//!
//! Per connection: read one request head (up to the empty line), write the
//! script (in parts with a pause between them, when built with
//! [`Scripted::start_in_parts`]), close. It never reads request bodies; use
//! it with bodiless requests.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// A running scripted origin; stops accepting when dropped.
#[derive(Debug)]
pub struct Scripted {
    addr: SocketAddr,
    heads: Arc<AtomicUsize>,
    /// Connections answered and closed.
    closed: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Scripted {
    /// Binds 127.0.0.1:0 and answers every connection with `script`.
    pub fn start(script: &[u8]) -> Scripted {
        Scripted::start_in_parts(&[script], Duration::ZERO)
    }

    /// Like [`Scripted::start`], but writes `parts` one by one with `pause`
    /// between them, so the gateway reads them separately.
    pub fn start_in_parts(parts: &[&[u8]], pause: Duration) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").expect("scripted: bind");
        let addr = listener.local_addr().expect("scripted: local_addr");
        let heads = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let script: Vec<Vec<u8>> = parts.iter().map(|p| p.to_vec()).collect();
        let accept = {
            let (heads, closed, stop) = (heads.clone(), closed.clone(), stop.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(conn) = conn else { continue };
                    let (heads, closed, script) = (heads.clone(), closed.clone(), script.clone());
                    std::thread::spawn(move || {
                        answer(conn, &script, pause, &heads);
                        closed.fetch_add(1, Ordering::SeqCst);
                    });
                }
            })
        };
        Scripted {
            addr,
            heads,
            closed,
            stop,
            accept: Some(accept),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Request heads received.
    pub fn heads(&self) -> usize {
        self.heads.load(Ordering::SeqCst)
    }

    /// Connections it has finished with (answered, or given up on) and
    /// closed.
    pub fn closed(&self) -> usize {
        self.closed.load(Ordering::SeqCst)
    }
}

fn answer(conn: TcpStream, script: &[Vec<u8>], pause: Duration, heads: &AtomicUsize) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(read_half) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line == b"\r\n" => break,
            Ok(_) => {}
        }
    }
    heads.fetch_add(1, Ordering::SeqCst);
    let mut w = conn;
    let _ = w.set_nodelay(true);
    for (i, part) in script.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(pause);
        }
        if w.write_all(part).is_err() {
            return;
        }
    }
    // Dropping closes the connection (FIN: the head was read completely).
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}
