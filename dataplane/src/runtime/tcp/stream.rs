//! [`TcpStream`]: a connected kernel TCP stream owned by one shard
//! (multishot receive into provided buffers, or single-shot receive into a
//! pooled buffer; owned-buffer send; connect), and [`TcpSender`], its
//! detached sending side.

use std::future::poll_fn;
use std::io;
use std::mem::size_of;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::rc::Rc;

use io_uring::{opcode, types};

use super::chunk::{Lent, RxChunk};
use super::socket::{RawAddr, close_fd, cvt, local_addr_of, new_socket, peer_addr_of, set_int_opt};
use crate::runtime::driver::{self, Completion, MultiKind};
use crate::runtime::op::{MultiOp, MultiPoll, Op};
use crate::runtime::pool::BufPool;

/// Bytes one arming of the multishot receive may take before the kernel
/// ends it (the SQE's `optlen`, kernel 6.15+); the stream re-arms when its
/// reader asks for more. So a connection whose reader falls behind holds at
/// most this much of the shard's receive buffers.
pub const MAX_RECV_PER_ARM: u32 = 64 * 1024;

const _: () = assert!(size_of::<io_uring::squeue::Entry>() == 64);

/// Sets the multishot receive's total byte limit (`sqe->optlen`).
fn with_total_limit(sqe: io_uring::squeue::Entry, limit: u32) -> io_uring::squeue::Entry {
    // SAFETY: `squeue::Entry` is `#[repr(C)]` around the kernel's 64-byte
    // `io_uring_sqe` (size asserted above); bytes 44..48 are the union that
    // holds `optlen` in the kernel ABI. Any bit pattern is a valid SQE.
    let mut raw: [u8; 64] = unsafe { std::mem::transmute(sqe) };
    raw[44..48].copy_from_slice(&limit.to_ne_bytes());
    // SAFETY: as above.
    unsafe { std::mem::transmute::<[u8; 64], io_uring::squeue::Entry>(raw) }
}

thread_local! {
    /// Whether the kernel accepted a total limit on multishot receive.
    static RECV_LIMIT_SUPPORTED: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

/// What one receive completion gave.
enum Received {
    Chunk(RxChunk),
    Again,
    OutOfBuffers,
}

/// Owns a descriptor; closes it through the ring when the last owner (a
/// stream or one of its senders) goes.
struct FdOwner(RawFd);

impl Drop for FdOwner {
    fn drop(&mut self) {
        close_fd(self.0);
    }
}

/// The sending side of a [`TcpStream`], usable while the stream itself is
/// borrowed for receiving (the TCP relay sends one way while it reads the
/// other). It keeps the descriptor open while it lives; one send at a time
/// per stream keeps bytes in order.
#[derive(Clone)]
pub struct TcpSender {
    owner: Rc<FdOwner>,
}

impl std::fmt::Debug for TcpSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpSender")
            .field("fd", &self.owner.0)
            .finish()
    }
}

impl TcpSender {
    /// Sends all of `buf` (see [`TcpStream::send_owned`]); the future holds
    /// the descriptor open and borrows nothing.
    pub fn send_owned(
        &self,
        buf: Vec<u8>,
    ) -> impl std::future::Future<Output = (io::Result<()>, Vec<u8>)> + 'static {
        let owner = self.owner.clone();
        async move { send_all(owner.0, buf).await }
    }

    /// Half-closes the sending side (FIN).
    pub fn shutdown_write(&self) -> io::Result<()> {
        // SAFETY: plain syscall on a descriptor the owner keeps open.
        cvt(unsafe { libc::shutdown(self.owner.0, libc::SHUT_WR) }).map(drop)
    }
}

/// Sends all of `buf` on `fd`, which the caller keeps open until the future
/// completes or is dropped (a dropped send is cancelled by its op).
async fn send_all(fd: RawFd, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
    let mut buf = buf;
    let mut sent = 0;
    while sent < buf.len() {
        let remaining = &buf[sent..];
        let sqe = opcode::Send::new(types::Fd(fd), remaining.as_ptr(), remaining.len() as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build();
        // SAFETY: the kernel reads from `buf`'s heap allocation, which the
        // op owns until completion.
        let (completion, back) = unsafe { Op::submit(sqe, buf) }.await;
        buf = back;
        match completion.io_result() {
            Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), buf),
            Ok(n) => sent += n as usize,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (Err(e), buf),
        }
    }
    (Ok(()), buf)
}

/// A connected TCP stream owned by one shard.
pub struct TcpStream {
    pub(crate) fd: RawFd,
    /// Closes `fd` once the stream and all its senders are gone.
    owner: Rc<FdOwner>,
    peer: SocketAddr,
    recv: Option<MultiOp>,
    /// Fallback mode: the single-shot receive in flight, kept here so a
    /// dropped [`recv`](Self::recv) future loses no bytes.
    recv_single: Option<Op<Vec<u8>>>,
    /// The armed receive carries the per-arm byte limit.
    recv_limited: bool,
}

impl std::fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpStream")
            .field("fd", &self.fd)
            .field("peer", &self.peer)
            .finish()
    }
}

impl TcpStream {
    pub(super) fn from_accepted(fd: RawFd) -> io::Result<TcpStream> {
        let peer = match peer_addr_of(fd) {
            Ok(p) => p,
            Err(e) => {
                close_fd(fd);
                return Err(e);
            }
        };
        let _ = set_int_opt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
        Ok(TcpStream {
            fd,
            owner: Rc::new(FdOwner(fd)),
            peer,
            recv: None,
            recv_single: None,
            recv_limited: false,
        })
    }

    /// Connects to `addr` (no deadline of its own: wrap in `timeout`).
    pub async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
        let fd = new_socket(&addr)?;
        let raw = Box::new(RawAddr::from_std(&addr));
        let sqe = opcode::Connect::new(
            types::Fd(fd),
            &raw.storage as *const _ as *const libc::sockaddr,
            raw.len,
        )
        .build();
        // SAFETY: the address lives in the boxed `raw`, owned by the op.
        let op = unsafe { Op::submit(sqe, raw) };
        // If this future is dropped, `guard` closes the socket after the
        // op's cancel was queued (drop order: op first, then guard).
        struct Guard(Option<RawFd>);
        impl Drop for Guard {
            fn drop(&mut self) {
                if let Some(fd) = self.0.take() {
                    close_fd(fd);
                }
            }
        }
        let mut guard = Guard(Some(fd));
        let (completion, _raw) = op.await;
        completion.io_result()?;
        guard.0 = None;
        let _ = set_int_opt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
        Ok(TcpStream {
            fd,
            owner: Rc::new(FdOwner(fd)),
            peer: addr,
            recv: None,
            recv_single: None,
            recv_limited: false,
        })
    }

    /// The remote address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        local_addr_of(self.fd)
    }

    /// Waits for received bytes. An empty chunk means the peer closed its
    /// side. Multishot receive stays armed between calls; it pauses itself
    /// when [`RuntimeConfig::max_queued_recv`](crate::runtime::RuntimeConfig::max_queued_recv) chunks wait unread.
    ///
    /// Cancel-safe: the receive stays armed in the stream when the future is
    /// dropped, and bytes it got are returned by the next call (so callers
    /// may race it against a timer or another stream).
    pub async fn recv(&mut self) -> io::Result<RxChunk> {
        let Some(group) = driver::with(|d| d.buf_ring.as_ref().map(|r| r.bgid())) else {
            return self.recv_single().await;
        };
        loop {
            if self.recv.is_none() {
                let mut sqe = opcode::RecvMulti::new(types::Fd(self.fd), group).build();
                self.recv_limited = RECV_LIMIT_SUPPORTED.with(|s| s.get());
                if self.recv_limited {
                    sqe = with_total_limit(sqe, MAX_RECV_PER_ARM);
                }
                // SAFETY: the kernel writes only provided buffers, owned by
                // the driver's buffer ring.
                self.recv = Some(unsafe { MultiOp::submit(MultiKind::Recv, sqe) });
            }
            let op = self.recv.as_mut().expect("armed above");
            let step = poll_fn(|cx| op.poll_next(cx)).await;
            let (completion, last) = match step {
                MultiPoll::Ended => {
                    self.recv = None;
                    continue;
                }
                MultiPoll::Next { completion, last } => (completion, last),
            };
            if last {
                self.recv = None;
            }
            match self.chunk_from(completion)? {
                Received::Chunk(chunk) => return Ok(chunk),
                Received::Again => {}
                Received::OutOfBuffers => {
                    crate::runtime::sleep(std::time::Duration::from_millis(1)).await
                }
            }
        }
    }

    /// Turns one receive completion into a chunk.
    fn chunk_from(&mut self, completion: Completion) -> io::Result<Received> {
        if completion.result < 0 {
            return match -completion.result {
                // Paused for backpressure (or cancelled): re-arm.
                libc::ECANCELED => Ok(Received::Again),
                // The shard's buffer ring ran dry; it refills as other
                // connections drop their chunks. Wait a little, then re-arm.
                libc::ENOBUFS => Ok(Received::OutOfBuffers),
                // A kernel without the total limit rejects it: arm without
                // (the driver's pause-on-backlog still bounds the queue).
                // (Every stream armed with the limit before the first EINVAL
                // arrives gets one too: each re-arms without.)
                libc::EINVAL if self.recv_limited => {
                    if RECV_LIMIT_SUPPORTED.with(|s| s.replace(false)) {
                        log::warn!(
                            "kernel rejects multishot receive limits; relying on pause-on-backlog"
                        );
                    }
                    Ok(Received::Again)
                }
                errno => Err(io::Error::from_raw_os_error(errno)),
            };
        }
        let len = completion.result as usize;
        let Some(bid) = completion.buffer_id() else {
            return if len == 0 {
                Ok(Received::Chunk(RxChunk::end_of_stream()))
            } else {
                Err(io::Error::other("receive completed without a buffer"))
            };
        };
        let memory = driver::with(|d| d.buf_ring.as_ref().map(|r| r.memory().clone()));
        match memory {
            Some(memory) => Ok(Received::Chunk(RxChunk(Lent::Ring { memory, bid, len }))),
            None => Err(io::Error::other("buffer ring gone")),
        }
    }

    async fn recv_single(&mut self) -> io::Result<RxChunk> {
        if self.recv_single.is_none() {
            let mut buf = BufPool::take();
            // Initialised first: the kernel's write is invisible to valgrind,
            // and `set_len` below then only exposes initialised bytes either
            // way (fallback mode only; multishot receive needs no fill).
            buf.resize(buf.capacity(), 0);
            buf.clear();
            let cap = buf.capacity();
            let sqe = opcode::Recv::new(types::Fd(self.fd), buf.as_mut_ptr(), cap as u32).build();
            // SAFETY: the kernel writes into `buf`'s heap allocation, which
            // the op owns until completion.
            self.recv_single = Some(unsafe { Op::submit(sqe, buf) });
        }
        let op = self.recv_single.as_mut().expect("submitted above");
        let (completion, mut buf) = poll_fn(|cx| std::pin::Pin::new(&mut *op).poll(cx)).await;
        self.recv_single = None;
        let cap = buf.capacity();
        let n = completion.io_result()? as usize;
        // SAFETY: the kernel initialised the first `n ≤ cap` bytes.
        unsafe { buf.set_len(n.min(cap)) };
        Ok(RxChunk(Lent::Owned(buf)))
    }

    /// Sends all of `buf`. Ownership passes to the kernel while a send is in
    /// flight and comes back with the result.
    pub async fn send_owned(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        send_all(self.fd, buf).await
    }

    /// A sending side that works while this stream is being read.
    pub fn sender(&self) -> TcpSender {
        TcpSender {
            owner: self.owner.clone(),
        }
    }

    /// Whether bytes or end-of-stream arrived that nobody has read yet. An
    /// idle pooled upstream connection with unread input is not reusable.
    /// Looks at the armed multishot receive (no syscall); when none is armed
    /// (fallback mode, or the last arm ended at its byte limit) it peeks.
    pub fn has_unread_input(&self) -> bool {
        if let Some(op) = &self.recv {
            return op.has_unread();
        }
        let mut byte = 0u8;
        // SAFETY: `byte` is writable for 1 byte; MSG_PEEK leaves the data.
        let n = unsafe {
            libc::recv(
                self.fd,
                &mut byte as *mut u8 as *mut libc::c_void,
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        // 0: EOF; >0: stray bytes; <0 with EAGAIN: nothing (reusable).
        n >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock
    }

    /// Makes the coming close a reset (`SO_LINGER` 0): the peer must not
    /// take a cut-off message for a complete one.
    pub fn set_reset_on_close(&self) {
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: `linger` outlives the call and its size is passed.
        unsafe {
            libc::setsockopt(
                self.fd,
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                &linger as *const _ as *const libc::c_void,
                size_of::<libc::linger>() as libc::socklen_t,
            )
        };
    }

    /// Half-closes the sending side (FIN).
    pub fn shutdown_write(&self) -> io::Result<()> {
        // SAFETY: plain syscall on a descriptor we own.
        cvt(unsafe { libc::shutdown(self.fd, libc::SHUT_WR) }).map(drop)
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        // Receives are cancelled first; `owner` then closes the descriptor
        // (after these cancels in the ring), or the last sender does.
        drop(self.recv.take());
        drop(self.recv_single.take());
    }
}
