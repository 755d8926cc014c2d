//! The in-memory transport: listeners and connected pipe pairs inside one
//! thread, for tests that run the proxy without sockets (the in-process
//! harness in `proxy/tests`).
//!
//! Each thread has one network ([`reset`] empties it): [`listen`] on an
//! address, [`connect`] to it (optionally from a chosen source address).
//! A connection is two one-way pipes. Its behaviour is controllable from
//! either end, so a test can script what a kernel would do:
//!
//! - delivery ([`Delivery`]): how bytes this end sends reach the peer — in
//!   chunks of at most `max_chunk` bytes, after `delay`, with sends waiting
//!   while `capacity` bytes are unread (backpressure);
//! - half-close ([`MemStream::shutdown_write`]), reset
//!   ([`MemStream::reset`]), and closing with unread input, which resets
//!   like the kernel does;
//! - connect faults per address ([`fault`]): refused, never answered, or
//!   slow, and a count of connects per address ([`connects`]).
//!
//! Timing uses the runtime's timers, so under
//! [`Clock::Virtual`](crate::runtime::Clock::Virtual) a delayed delivery
//! costs no real time. Nothing here touches a descriptor.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::{Future, poll_fn};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use crate::runtime::{self, BufPool};

/// How the bytes one end sends are delivered to the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// A receive returns at most this many bytes.
    pub max_chunk: usize,
    /// Bytes become readable this long after they were sent.
    pub delay: Duration,
    /// A send waits while this many bytes are unread by the peer.
    pub capacity: usize,
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery {
            max_chunk: 16 * 1024,
            delay: Duration::ZERO,
            capacity: usize::MAX,
        }
    }
}

/// What a connect to an address meets instead of its listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFault {
    /// Refused at once (`ECONNREFUSED`), as with no listener.
    Refuse,
    /// Never answered: the connect waits until its caller's timeout.
    Hang,
    /// Answered after this long.
    Delay(Duration),
}

#[derive(Default)]
struct Network {
    listeners: HashMap<SocketAddr, Rc<Backlog>>,
    faults: HashMap<SocketAddr, ConnectFault>,
    connects: HashMap<SocketAddr, u64>,
    next_port: u16,
}

thread_local! {
    static NETWORK: RefCell<Network> = RefCell::new(Network::default());
}

/// Empties this thread's network: listeners, faults and counts.
pub fn reset() {
    let old = NETWORK.with(|n| std::mem::take(&mut *n.borrow_mut()));
    drop(old);
}

/// Sets (or with `None` clears) the fault a connect to `addr` meets.
pub fn fault(addr: SocketAddr, fault: Option<ConnectFault>) {
    NETWORK.with(|n| match fault {
        Some(f) => n.borrow_mut().faults.insert(addr, f),
        None => n.borrow_mut().faults.remove(&addr),
    });
}

/// Connects attempted to `addr` so far (refused and faulted ones included).
pub fn connects(addr: SocketAddr) -> u64 {
    NETWORK.with(|n| n.borrow().connects.get(&addr).copied().unwrap_or(0))
}

/// Accepted connections waiting for [`MemListener::accept`].
#[derive(Default)]
struct Backlog {
    queue: RefCell<VecDeque<MemStream>>,
    waker: RefCell<Option<Waker>>,
}

/// A listener on this thread's network.
pub struct MemListener {
    addr: SocketAddr,
    backlog: Rc<Backlog>,
}

impl std::fmt::Debug for MemListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemListener")
            .field("addr", &self.addr)
            .finish()
    }
}

/// Listens on `addr`; `AddrInUse` when something already does.
pub fn listen(addr: SocketAddr) -> io::Result<MemListener> {
    NETWORK.with(|n| {
        let mut n = n.borrow_mut();
        if n.listeners.contains_key(&addr) {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{addr} is already listened on"),
            ));
        }
        let backlog = Rc::new(Backlog::default());
        n.listeners.insert(addr, backlog.clone());
        Ok(MemListener { addr, backlog })
    })
}

impl MemListener {
    /// The address listened on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits for the next connection.
    pub async fn accept(&mut self) -> io::Result<MemStream> {
        poll_fn(|cx| match self.backlog.queue.borrow_mut().pop_front() {
            Some(stream) => Poll::Ready(Ok(stream)),
            None => {
                *self.backlog.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

impl Drop for MemListener {
    fn drop(&mut self) {
        let _ = NETWORK.try_with(|n| {
            if let Ok(mut n) = n.try_borrow_mut()
                && n.listeners
                    .get(&self.addr)
                    .is_some_and(|b| Rc::ptr_eq(b, &self.backlog))
            {
                n.listeners.remove(&self.addr);
            }
        });
        // Connections nobody accepted are reset, as a closed kernel
        // listener resets its backlog.
        for stream in self.backlog.queue.borrow_mut().drain(..) {
            stream.reset();
        }
    }
}

/// Connects to `addr` from a loopback source address.
pub async fn connect(addr: SocketAddr) -> io::Result<MemStream> {
    connect_from(IpAddr::V4(Ipv4Addr::LOCALHOST), addr).await
}

/// Connects to `addr` from source address `ip` (a fresh port each time).
pub async fn connect_from(ip: IpAddr, addr: SocketAddr) -> io::Result<MemStream> {
    let (fault, port) = NETWORK.with(|n| {
        let mut n = n.borrow_mut();
        *n.connects.entry(addr).or_default() += 1;
        n.next_port = n.next_port.wrapping_add(1);
        (n.faults.get(&addr).copied(), 40_000 + n.next_port % 20_000)
    });
    match fault {
        Some(ConnectFault::Refuse) => return Err(io::ErrorKind::ConnectionRefused.into()),
        Some(ConnectFault::Hang) => std::future::pending::<()>().await,
        Some(ConnectFault::Delay(d)) => runtime::sleep(d).await,
        None => {}
    }
    let backlog = NETWORK.with(|n| n.borrow().listeners.get(&addr).cloned());
    let Some(backlog) = backlog else {
        return Err(io::ErrorKind::ConnectionRefused.into());
    };
    let client_addr = SocketAddr::new(ip, port);
    let (client, server) = MemStream::pair(client_addr, addr);
    backlog.queue.borrow_mut().push_back(server);
    if let Some(w) = backlog.waker.borrow_mut().take() {
        w.wake();
    }
    Ok(client)
}

/// Bytes sent in one piece, readable from `visible_at`.
struct Segment {
    bytes: Vec<u8>,
    read: usize,
    visible_at: Instant,
}

/// One direction of a connection.
#[derive(Default)]
struct Pipe {
    segments: VecDeque<Segment>,
    unread: usize,
    /// The writer half-closed or closed.
    fin: bool,
    /// The writer reset the connection.
    reset: bool,
    /// The reader is gone: sends fail.
    reader_closed: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
    delivery: Delivery,
}

impl Pipe {
    fn wake_reader(&mut self) {
        if let Some(w) = self.reader.take() {
            w.wake();
        }
    }

    fn wake_writer(&mut self) {
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }
}

/// One end of a connection; closes when the stream and its senders are
/// gone.
struct End {
    rx: Rc<RefCell<Pipe>>,
    tx: Rc<RefCell<Pipe>>,
    reset_on_close: Cell<bool>,
}

impl Drop for End {
    fn drop(&mut self) {
        let mut rx = self.rx.borrow_mut();
        // Closing with unread input resets, as the kernel does.
        let reset = self.reset_on_close.get() || rx.unread > 0;
        rx.reader_closed = true;
        rx.segments.clear();
        rx.unread = 0;
        rx.wake_writer();
        drop(rx);
        let mut tx = self.tx.borrow_mut();
        if reset {
            tx.reset = true;
        } else {
            tx.fin = true;
        }
        tx.wake_reader();
    }
}

/// One end of an in-memory connection.
pub struct MemStream {
    end: Rc<End>,
    local: SocketAddr,
    peer: SocketAddr,
}

impl std::fmt::Debug for MemStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemStream")
            .field("local", &self.local)
            .field("peer", &self.peer)
            .finish()
    }
}

/// The sending side of a [`MemStream`], usable while the stream is being
/// read; it keeps the connection open while it lives.
#[derive(Clone)]
pub struct MemSender {
    end: Rc<End>,
}

impl std::fmt::Debug for MemSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemSender")
    }
}

impl MemSender {
    /// Sends all of `buf` (see [`MemStream::send_owned`]).
    pub fn send_owned(
        &self,
        buf: Vec<u8>,
    ) -> impl Future<Output = (io::Result<()>, Vec<u8>)> + 'static {
        let tx = self.end.tx.clone();
        async move { send(&tx, buf).await }
    }

    /// Half-closes the sending side.
    pub fn shutdown_write(&self) -> io::Result<()> {
        shutdown(&self.end.tx)
    }
}

async fn send(tx: &RefCell<Pipe>, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
    let result = poll_fn(|cx| {
        let mut p = tx.borrow_mut();
        if p.reader_closed || p.reset {
            return Poll::Ready(Err(io::Error::from(io::ErrorKind::BrokenPipe)));
        }
        if p.fin {
            return Poll::Ready(Err(io::Error::other("send after shutdown")));
        }
        if p.unread >= p.delivery.capacity {
            p.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    })
    .await;
    if let Err(e) = result {
        return (Err(e), buf);
    }
    if !buf.is_empty() {
        let mut p = tx.borrow_mut();
        let visible_at = runtime::now() + p.delivery.delay;
        p.unread += buf.len();
        let mut bytes = BufPool::take();
        bytes.extend_from_slice(&buf);
        p.segments.push_back(Segment {
            bytes,
            read: 0,
            visible_at,
        });
        p.wake_reader();
    }
    // Returned as it came, like a kernel send (a retry resends from it).
    (Ok(()), buf)
}

fn shutdown(tx: &RefCell<Pipe>) -> io::Result<()> {
    let mut p = tx.borrow_mut();
    if p.reset {
        return Err(io::ErrorKind::NotConnected.into());
    }
    p.fin = true;
    p.wake_reader();
    Ok(())
}

/// What the receive side holds now.
enum Ready {
    Bytes(Vec<u8>),
    Eof,
    Reset,
    At(Instant),
}

impl MemStream {
    fn pair(client: SocketAddr, server: SocketAddr) -> (MemStream, MemStream) {
        let up = Rc::new(RefCell::new(Pipe::default()));
        let down = Rc::new(RefCell::new(Pipe::default()));
        let end = |rx: &Rc<RefCell<Pipe>>, tx: &Rc<RefCell<Pipe>>| {
            Rc::new(End {
                rx: rx.clone(),
                tx: tx.clone(),
                reset_on_close: Cell::new(false),
            })
        };
        (
            MemStream {
                end: end(&down, &up),
                local: client,
                peer: server,
            },
            MemStream {
                end: end(&up, &down),
                local: server,
                peer: client,
            },
        )
    }

    /// The remote address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The local address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// How the bytes this end sends reach the peer from now on.
    pub fn set_delivery(&self, delivery: Delivery) {
        self.end.tx.borrow_mut().delivery = Delivery {
            max_chunk: delivery.max_chunk.max(1),
            ..delivery
        };
    }

    /// Waits for received bytes; an empty vector means the peer closed its
    /// side. Cancel-safe: bytes stay in the pipe until a receive returns
    /// them.
    pub async fn recv(&mut self) -> io::Result<Vec<u8>> {
        loop {
            let ready = poll_fn(|cx| {
                let mut p = self.end.rx.borrow_mut();
                let max = p.delivery.max_chunk;
                if let Some(seg) = p.segments.front_mut() {
                    if seg.visible_at > runtime::now() {
                        return Poll::Ready(Ready::At(seg.visible_at));
                    }
                    let n = (seg.bytes.len() - seg.read).min(max);
                    let mut out = BufPool::take();
                    out.extend_from_slice(&seg.bytes[seg.read..seg.read + n]);
                    seg.read += n;
                    if seg.read == seg.bytes.len()
                        && let Some(done) = p.segments.pop_front()
                    {
                        BufPool::give(done.bytes);
                    }
                    p.unread -= n;
                    p.wake_writer();
                    return Poll::Ready(Ready::Bytes(out));
                }
                if p.reset {
                    return Poll::Ready(Ready::Reset);
                }
                if p.fin {
                    return Poll::Ready(Ready::Eof);
                }
                p.reader = Some(cx.waker().clone());
                Poll::Pending
            })
            .await;
            match ready {
                Ready::Bytes(b) => return Ok(b),
                Ready::Eof => return Ok(Vec::new()),
                Ready::Reset => return Err(io::ErrorKind::ConnectionReset.into()),
                Ready::At(t) => runtime::sleep_until(t).await,
            }
        }
    }

    /// Sends all of `buf`, waiting while the peer has `capacity` bytes
    /// unread; the buffer comes back, unchanged, with the result.
    pub async fn send_owned(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        send(&self.end.tx, buf).await
    }

    /// Half-closes the sending side (the peer reads the end of the stream).
    pub fn shutdown_write(&self) -> io::Result<()> {
        shutdown(&self.end.tx)
    }

    /// Makes the coming close a reset.
    pub fn set_reset_on_close(&self) {
        self.end.reset_on_close.set(true);
    }

    /// Closes the connection with a reset now (the peer's reads fail once
    /// what was sent before is read).
    pub fn reset(self) {
        self.end.reset_on_close.set(true);
    }

    /// The detached sending side.
    pub fn sender(&self) -> MemSender {
        MemSender {
            end: self.end.clone(),
        }
    }

    /// Whether bytes, the end of the stream or a reset arrived unread.
    pub fn has_unread_input(&self) -> bool {
        let p = self.end.rx.borrow();
        p.unread > 0 || p.fin || p.reset
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{Clock, RuntimeConfig, block_on};

    fn virtual_time() -> RuntimeConfig {
        RuntimeConfig {
            clock: Clock::Virtual,
            ..RuntimeConfig::default()
        }
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    #[test]
    fn bytes_cross_in_order_in_the_chunks_asked_for_after_the_delay() {
        reset();
        block_on(&virtual_time(), async {
            let mut listener = listen(addr(80)).unwrap();
            let mut client = connect(addr(80)).await.unwrap();
            let mut server = listener.accept().await.unwrap();
            assert_eq!(server.peer_addr(), client.local_addr());
            client.set_delivery(Delivery {
                max_chunk: 3,
                delay: Duration::from_millis(50),
                ..Delivery::default()
            });
            let t0 = runtime::now();
            let (r, _) = client.send_owned(b"hello world".to_vec()).await;
            r.unwrap();
            let mut got = Vec::new();
            let mut chunks = 0;
            while got.len() < 11 {
                let chunk = server.recv().await.unwrap();
                assert!(chunk.len() <= 3);
                got.extend_from_slice(&chunk);
                chunks += 1;
            }
            assert_eq!(got, b"hello world");
            assert_eq!(chunks, 4);
            assert_eq!(runtime::now() - t0, Duration::from_millis(50));
        })
        .unwrap();
    }

    #[test]
    fn half_close_reset_and_closing_with_unread_input() {
        reset();
        block_on(&virtual_time(), async {
            let mut listener = listen(addr(81)).unwrap();
            // Half-close: the peer reads EOF and can still send back.
            let mut client = connect(addr(81)).await.unwrap();
            let mut server = listener.accept().await.unwrap();
            client.shutdown_write().unwrap();
            assert!(server.recv().await.unwrap().is_empty());
            assert!(
                server.has_unread_input(),
                "the end of the stream stays visible"
            );
            server.send_owned(b"late".to_vec()).await.0.unwrap();
            assert_eq!(client.recv().await.unwrap(), b"late");
            // A reset: what was sent is read, then the error.
            server.send_owned(b"x".to_vec()).await.0.unwrap();
            server.reset();
            assert_eq!(client.recv().await.unwrap(), b"x");
            let e = client.recv().await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
            // Closing with unread input resets too; sends to a closed peer
            // fail.
            let mut client = connect(addr(81)).await.unwrap();
            let server = listener.accept().await.unwrap();
            client.send_owned(b"unread".to_vec()).await.0.unwrap();
            drop(server);
            assert_eq!(
                client.recv().await.unwrap_err().kind(),
                io::ErrorKind::ConnectionReset
            );
            assert!(client.send_owned(b"more".to_vec()).await.0.is_err());
        })
        .unwrap();
    }

    #[test]
    fn connect_faults_and_counts() {
        reset();
        block_on(&virtual_time(), async {
            assert_eq!(
                connect(addr(82)).await.unwrap_err().kind(),
                io::ErrorKind::ConnectionRefused
            );
            let _listener = listen(addr(82)).unwrap();
            fault(addr(82), Some(ConnectFault::Hang));
            let hung = runtime::timeout(Duration::from_secs(5), connect(addr(82))).await;
            assert!(hung.is_err());
            fault(
                addr(82),
                Some(ConnectFault::Delay(Duration::from_millis(7))),
            );
            let t0 = runtime::now();
            connect(addr(82)).await.unwrap();
            assert_eq!(runtime::now() - t0, Duration::from_millis(7));
            fault(addr(82), None);
            connect(addr(82)).await.unwrap();
            assert_eq!(connects(addr(82)), 4);
        })
        .unwrap();
    }

    #[test]
    fn a_full_pipe_holds_the_sender_until_the_reader_reads() {
        reset();
        block_on(&virtual_time(), async {
            let mut listener = listen(addr(83)).unwrap();
            let client = connect(addr(83)).await.unwrap();
            let mut server = listener.accept().await.unwrap();
            client.set_delivery(Delivery {
                capacity: 4,
                ..Delivery::default()
            });
            let tx = client.sender();
            let sent = Rc::new(Cell::new(0));
            let count = sent.clone();
            let writer = runtime::spawn(async move {
                for _ in 0..3 {
                    tx.send_owned(b"abcd".to_vec()).await.0.unwrap();
                    count.set(count.get() + 1);
                }
            });
            runtime::sleep(Duration::from_millis(1)).await;
            assert_eq!(sent.get(), 1, "the second send waits for room");
            let mut got = 0;
            while got < 12 {
                got += server.recv().await.unwrap().len();
            }
            writer.await;
            assert_eq!(sent.get(), 3);
            drop(client);
        })
        .unwrap();
    }
}
