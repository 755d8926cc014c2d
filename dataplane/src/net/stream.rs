//! [`Stream`]: a connected byte pipe, whichever network carries it, with
//! its detached [`Sender`] and the [`Chunk`]s it receives.
//!
//! Kernel TCP ([`crate::runtime::TcpStream`], through io_uring) and the
//! in-memory transport ([`super::memory`]) today; the userspace TCP/IP
//! stack becomes a third arm here, and nothing above `net/` changes.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::ops::Deref;
use std::pin::Pin;

use super::memory::{MemSender, MemStream};
use crate::runtime::{BufPool, RxChunk, TcpSender, TcpStream};

/// A connected stream.
pub struct Stream(Kind);

enum Kind {
    Kernel(TcpStream),
    Memory(MemStream),
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Kind::Kernel(s) => s.fmt(f),
            Kind::Memory(s) => s.fmt(f),
        }
    }
}

impl From<TcpStream> for Stream {
    fn from(s: TcpStream) -> Stream {
        Stream(Kind::Kernel(s))
    }
}

impl From<MemStream> for Stream {
    fn from(s: MemStream) -> Stream {
        Stream(Kind::Memory(s))
    }
}

impl Stream {
    /// Waits for received bytes; an empty chunk means the peer closed its
    /// side. Cancel-safe: a dropped receive loses no bytes (the next call
    /// returns them).
    pub async fn recv(&mut self) -> io::Result<Chunk> {
        match &mut self.0 {
            Kind::Kernel(s) => s.recv().await.map(|c| Chunk(ChunkKind::Kernel(c))),
            Kind::Memory(s) => s.recv().await.map(|v| Chunk(ChunkKind::Owned(v))),
        }
    }

    /// Sends all of `buf`, which the stream owns until the send completes.
    pub async fn send_owned(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        match &mut self.0 {
            Kind::Kernel(s) => s.send_owned(buf).await,
            Kind::Memory(s) => s.send_owned(buf).await,
        }
    }

    /// Half-closes the sending side (FIN).
    pub fn shutdown_write(&self) -> io::Result<()> {
        match &self.0 {
            Kind::Kernel(s) => s.shutdown_write(),
            Kind::Memory(s) => s.shutdown_write(),
        }
    }

    /// Makes the coming close a reset: the peer must not take what it got
    /// for a complete message.
    pub fn set_reset_on_close(&self) {
        match &self.0 {
            Kind::Kernel(s) => s.set_reset_on_close(),
            Kind::Memory(s) => s.set_reset_on_close(),
        }
    }

    /// The sending side, detached: it sends while the stream is being read
    /// (the TCP relay), and keeps the connection open while it lives.
    pub fn sender(&self) -> Sender {
        match &self.0 {
            Kind::Kernel(s) => Sender(SenderKind::Kernel(s.sender())),
            Kind::Memory(s) => Sender(SenderKind::Memory(s.sender())),
        }
    }

    /// Whether an idle pooled connection can carry another request: nothing
    /// (no byte, no end of stream) arrived on it while it was idle.
    pub fn is_reusable(&self) -> bool {
        match &self.0 {
            Kind::Kernel(s) => !s.has_unread_input(),
            Kind::Memory(s) => !s.has_unread_input(),
        }
    }

    /// The remote address.
    pub fn peer_addr(&self) -> SocketAddr {
        match &self.0 {
            Kind::Kernel(s) => s.peer_addr(),
            Kind::Memory(s) => s.peer_addr(),
        }
    }
}

/// A send's future: it owns the buffer and gives it back with the result.
pub type SendFuture = Pin<Box<dyn Future<Output = (io::Result<()>, Vec<u8>)>>>;

/// The detached sending side of a [`Stream`]; one send at a time keeps
/// bytes in order.
#[derive(Clone)]
pub struct Sender(SenderKind);

#[derive(Clone)]
enum SenderKind {
    Kernel(TcpSender),
    Memory(MemSender),
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            SenderKind::Kernel(s) => s.fmt(f),
            SenderKind::Memory(s) => s.fmt(f),
        }
    }
}

impl Sender {
    /// Sends all of `buf`; the future borrows nothing and holds the
    /// connection open.
    pub fn send_owned(&self, buf: Vec<u8>) -> SendFuture {
        match &self.0 {
            SenderKind::Kernel(s) => Box::pin(s.send_owned(buf)),
            SenderKind::Memory(s) => Box::pin(s.send_owned(buf)),
        }
    }

    /// Half-closes the sending side (FIN).
    pub fn shutdown_write(&self) -> io::Result<()> {
        match &self.0 {
            SenderKind::Kernel(s) => s.shutdown_write(),
            SenderKind::Memory(s) => s.shutdown_write(),
        }
    }
}

/// Received bytes, lent until dropped (a kernel chunk goes back to the
/// shard's buffer ring, an owned one to the buffer pool).
pub struct Chunk(ChunkKind);

enum ChunkKind {
    Kernel(RxChunk),
    Owned(Vec<u8>),
}

impl Deref for Chunk {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.0 {
            ChunkKind::Kernel(c) => c,
            ChunkKind::Owned(v) => v,
        }
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        if let ChunkKind::Owned(v) = &mut self.0 {
            BufPool::give(std::mem::take(v));
        }
    }
}

impl std::fmt::Debug for Chunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Chunk({} bytes)", self.len())
    }
}
