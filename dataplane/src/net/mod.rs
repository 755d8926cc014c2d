//! Streams stage: the one seam between the proxy and the networks under
//! it. Everything above `net/` (the proxy, the TLS stream) reaches sockets
//! only through the types here; none of them names a kernel type (a test,
//! `dataplane/tests/boundary.rs`, keeps it so).
//!
//! - [`Stream`] (with its detached [`Sender`] and received [`Chunk`]s): a
//!   connected byte pipe — kernel TCP through io_uring, or the in-memory
//!   transport; the userspace TCP/IP stack becomes one more arm inside it.
//! - [`Stack`]: connects to an endpoint; [`ListenSocket`] / [`Listener`]:
//!   what the control thread hands a shard, and what the shard accepts on.
//! - [`memory`]: the in-memory transport for tests (pipe pairs with
//!   controllable delivery, resets, half-closes and delays).
//! - [`ByteStream`] / [`Duplex`]: what proxy code reads, writes and relays:
//!   plaintext over a stream ([`Plain`]) or TLS over one
//!   ([`crate::tls::TlsStream`]).
//!
//! Uses the runtime (kernel sockets, timers, buffer pool); used by `tls`
//! and `proxy`.

mod listen;
pub mod memory;
mod stream;

use std::future::Future;
use std::io;

pub use listen::{ListenSocket, Listener, Stack};
pub use stream::{Chunk, SendFuture, Sender, Stream};

use crate::runtime::BufPool;

/// A stream that can send while it is being read: the TCP relay forwards
/// both directions at once, so a peer that stops reading stalls only the
/// direction towards it. The relay turns plaintext into wire bytes here
/// (synchronously), then sends them with the detached [`Sender`] while it
/// goes on reading the stream; one send at a time per stream.
pub trait Duplex {
    /// The sending side; it keeps the connection open while it lives.
    fn sender(&self) -> Sender;
    /// `plaintext` as bytes for the wire (TLS: sealed records, after any
    /// record the session owes the peer).
    fn wire_bytes(&mut self, plaintext: Vec<u8>) -> io::Result<Vec<u8>>;
    /// What ends our sending side before the FIN (TLS: close_notify).
    fn closing_bytes(&mut self) -> Vec<u8>;
    /// After a read returned 0: whether the peer closed cleanly (TLS: with
    /// close_notify; a bare FIN could be a truncation).
    fn closed_cleanly(&self) -> bool;
}

impl Duplex for Plain {
    fn sender(&self) -> Sender {
        self.0.sender()
    }
    fn wire_bytes(&mut self, plaintext: Vec<u8>) -> io::Result<Vec<u8>> {
        Ok(plaintext)
    }
    fn closing_bytes(&mut self) -> Vec<u8> {
        Vec::new()
    }
    fn closed_cleanly(&self) -> bool {
        true
    }
}

/// What proxy code reads from and writes to.
pub trait ByteStream {
    /// Waits for bytes and appends them to `dst` (taking a pooled buffer if
    /// `dst` has none). Returns the count; 0 means the peer closed its side.
    /// Cancel-safe: dropping the future before it completes loses no bytes
    /// (the TCP proxy races the two directions' reads).
    fn read_into(&mut self, dst: &mut Vec<u8>) -> impl Future<Output = io::Result<usize>>;
    /// Writes all of `buf`; the buffer comes back for reuse.
    fn write_owned(&mut self, buf: Vec<u8>) -> impl Future<Output = (io::Result<()>, Vec<u8>)>;
    /// Ends the sending side (TLS: close_notify, then FIN).
    fn close_write(&mut self) -> impl Future<Output = io::Result<()>>;
    /// Gives up on the stream: no close_notify, and the close is a reset, so
    /// a cut-off message is never mistaken for a complete one.
    fn abort(&mut self);
}

/// A plaintext stream.
#[derive(Debug)]
pub struct Plain(pub Stream);

impl ByteStream for Plain {
    async fn read_into(&mut self, dst: &mut Vec<u8>) -> io::Result<usize> {
        let chunk = self.0.recv().await?;
        if chunk.is_empty() {
            return Ok(0);
        }
        BufPool::ensure(dst);
        dst.extend_from_slice(&chunk);
        Ok(chunk.len())
    }

    fn write_owned(&mut self, buf: Vec<u8>) -> impl Future<Output = (io::Result<()>, Vec<u8>)> {
        self.0.send_owned(buf)
    }

    async fn close_write(&mut self) -> io::Result<()> {
        self.0.shutdown_write()
    }

    fn abort(&mut self) {
        self.0.set_reset_on_close();
    }
}
