//! Where streams come from: the [`Stack`] a shard connects through, the
//! [`ListenSocket`] the control thread hands a shard, and the [`Listener`]
//! the shard accepts on.

use std::io;
use std::net::SocketAddr;

use super::memory::{self, MemListener};
use super::stream::Stream;
use crate::runtime::{BoundSocket, TcpListener, TcpStream};

/// The TCP/IP stack a shard's connections run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stack {
    /// The kernel's, through io_uring.
    #[default]
    Kernel,
    /// This thread's in-memory network ([`memory`]), for tests.
    Memory,
}

impl Stack {
    /// Connects to `addr` (no deadline of its own: wrap in a timeout).
    pub async fn connect(self, addr: SocketAddr) -> io::Result<Stream> {
        match self {
            Stack::Kernel => TcpStream::connect(addr).await.map(Stream::from),
            Stack::Memory => memory::connect(addr).await.map(Stream::from),
        }
    }
}

/// A listening socket on its way to a shard (it can cross threads; the
/// shard opens it with [`Listener::open`]).
#[derive(Debug)]
pub struct ListenSocket(SocketKind);

#[derive(Debug)]
enum SocketKind {
    Kernel(BoundSocket),
    Memory(SocketAddr),
}

impl From<BoundSocket> for ListenSocket {
    fn from(s: BoundSocket) -> ListenSocket {
        ListenSocket(SocketKind::Kernel(s))
    }
}

impl ListenSocket {
    /// A listener on the shard thread's in-memory network at `addr`.
    pub fn memory(addr: SocketAddr) -> ListenSocket {
        ListenSocket(SocketKind::Memory(addr))
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        match &self.0 {
            SocketKind::Kernel(s) => s.local_addr(),
            SocketKind::Memory(a) => *a,
        }
    }
}

/// A shard's listener.
#[derive(Debug)]
pub struct Listener(ListenerKind);

#[derive(Debug)]
enum ListenerKind {
    Kernel(TcpListener),
    Memory(MemListener),
}

impl Listener {
    /// Starts listening on `socket` on the calling shard.
    pub fn open(socket: ListenSocket) -> io::Result<Listener> {
        Ok(Listener(match socket.0 {
            SocketKind::Kernel(s) => ListenerKind::Kernel(TcpListener::from_bound(s)),
            SocketKind::Memory(a) => ListenerKind::Memory(memory::listen(a)?),
        }))
    }

    /// The address listened on.
    pub fn local_addr(&self) -> SocketAddr {
        match &self.0 {
            ListenerKind::Kernel(l) => l.local_addr(),
            ListenerKind::Memory(l) => l.local_addr(),
        }
    }

    /// Waits for the next connection. Dropping the listener stops
    /// accepting (a kernel listener cancels its multishot accept).
    pub async fn accept(&mut self) -> io::Result<Stream> {
        match &mut self.0 {
            ListenerKind::Kernel(l) => l.accept().await.map(Stream::from),
            ListenerKind::Memory(l) => l.accept().await.map(Stream::from),
        }
    }
}
