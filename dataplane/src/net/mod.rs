//! Streams stage: the byte-stream abstraction the proxy talks to.
//!
//! [`Transport`] is a raw byte pipe (kernel TCP through io_uring today; the
//! userspace TCP/IP stack plugs in here later). [`ByteStream`] is what proxy
//! code reads and writes: plaintext over a [`Transport`] ([`Plain`]) or TLS
//! over one ([`crate::tls::TlsStream`]).

use std::future::Future;
use std::io;
use std::ops::Deref;

use crate::runtime::{BufPool, RxChunk, TcpSender, TcpStream};

/// A raw, ordered byte pipe.
pub trait Transport {
    /// Received bytes; an empty chunk means the peer closed its side.
    type Chunk: Deref<Target = [u8]>;
    /// Waits for the next received bytes.
    fn recv(&mut self) -> impl Future<Output = io::Result<Self::Chunk>>;
    /// Sends all of `buf`, which the transport owns until the send completes.
    fn send_owned(&mut self, buf: Vec<u8>) -> impl Future<Output = (io::Result<()>, Vec<u8>)>;
    /// Half-closes the sending side.
    fn shutdown_write(&mut self) -> io::Result<()>;
    /// Makes the coming close a reset: the peer must not take what it got
    /// for a complete message.
    fn set_reset_on_close(&mut self);
    /// The sending side, detached (see [`Duplex`]).
    fn sender(&self) -> TcpSender;
}

impl Transport for TcpStream {
    type Chunk = RxChunk;
    fn recv(&mut self) -> impl Future<Output = io::Result<RxChunk>> {
        TcpStream::recv(self)
    }
    fn send_owned(&mut self, buf: Vec<u8>) -> impl Future<Output = (io::Result<()>, Vec<u8>)> {
        TcpStream::send_owned(self, buf)
    }
    fn shutdown_write(&mut self) -> io::Result<()> {
        TcpStream::shutdown_write(self)
    }
    fn set_reset_on_close(&mut self) {
        TcpStream::set_reset_on_close(self)
    }
    fn sender(&self) -> TcpSender {
        TcpStream::sender(self)
    }
}

/// A stream that can send while it is being read: the TCP relay forwards
/// both directions at once, so a peer that stops reading stalls only the
/// direction towards it. The relay turns plaintext into wire bytes here
/// (synchronously), then sends them with the detached [`TcpSender`] while
/// it goes on reading the stream; one send at a time per stream.
pub trait Duplex {
    /// The sending side; it keeps the connection open while it lives.
    fn sender(&self) -> TcpSender;
    /// `plaintext` as bytes for the wire (TLS: sealed records, after any
    /// record the session owes the peer).
    fn wire_bytes(&mut self, plaintext: Vec<u8>) -> io::Result<Vec<u8>>;
    /// What ends our sending side before the FIN (TLS: close_notify).
    fn closing_bytes(&mut self) -> Vec<u8>;
    /// After a read returned 0: whether the peer closed cleanly (TLS: with
    /// close_notify; a bare FIN could be a truncation).
    fn closed_cleanly(&self) -> bool;
}

impl<T: Transport> Duplex for Plain<T> {
    fn sender(&self) -> TcpSender {
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

/// A plaintext stream over a transport.
#[derive(Debug)]
pub struct Plain<T>(pub T);

impl<T: Transport> ByteStream for Plain<T> {
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
