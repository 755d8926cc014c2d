//! [`TcpListener`]: a listening socket owned by one shard's ring, accepting
//! with multishot accept.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;

use io_uring::{opcode, types};

use super::socket::{BoundSocket, close_fd};
use super::stream::TcpStream;
use crate::runtime::driver::MultiKind;
use crate::runtime::op::{MultiOp, MultiPoll};

/// A listening socket; one per listener per shard (`SO_REUSEPORT`).
pub struct TcpListener {
    fd: RawFd,
    local: SocketAddr,
    accept: Option<MultiOp>,
}

impl std::fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpListener")
            .field("fd", &self.fd)
            .field("local", &self.local)
            .finish()
    }
}

impl TcpListener {
    /// Binds and listens on `addr`. With `reuse_port`, several shards bind
    /// the same address and the kernel spreads connections among them.
    pub fn bind(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
        BoundSocket::bind(addr, reuse_port).map(TcpListener::from_bound)
    }

    /// Takes ownership of a socket bound on another thread.
    pub fn from_bound(mut bound: BoundSocket) -> TcpListener {
        let fd = std::mem::replace(&mut bound.fd, -1);
        TcpListener {
            fd,
            local: bound.local,
            accept: None,
        }
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Waits for the next connection (multishot accept, re-armed when the
    /// kernel ends it).
    pub async fn accept(&mut self) -> io::Result<TcpStream> {
        loop {
            if self.accept.is_none() {
                let sqe = opcode::AcceptMulti::new(types::Fd(self.fd))
                    .flags(libc::SOCK_CLOEXEC)
                    .build();
                // SAFETY: multishot accept points at no memory of ours.
                self.accept = Some(unsafe { MultiOp::submit(MultiKind::Accept, sqe) });
            }
            let op = self.accept.as_mut().expect("armed above");
            let step = poll_fn(|cx| op.poll_next(cx)).await;
            match step {
                MultiPoll::Ended => self.accept = None,
                MultiPoll::Next { completion, last } => {
                    if last {
                        self.accept = None;
                    }
                    match completion.io_result() {
                        // A peer that reset before we looked (getpeername
                        // fails) costs nothing but a log line.
                        Ok(fd) => match TcpStream::from_accepted(fd as RawFd) {
                            Ok(stream) => return Ok(stream),
                            Err(e) => log::debug!("accepted connection vanished: {e}"),
                        },
                        Err(e) if e.raw_os_error() == Some(libc::ECANCELED) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        // Cancel the armed accept first: a multishot accept left armed could
        // still take a connection that no one will serve.
        drop(self.accept.take());
        close_fd(self.fd);
    }
}
