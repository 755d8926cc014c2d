//! The byte pipe the `h2` state machine reads and writes: two buffers
//! shared with the connection's driver ([`super::serve`]), which moves
//! bytes between them and the real stream (a TLS stream, or plain TCP).
//!
//! `h2` wants tokio's `AsyncRead`/`AsyncWrite`; our streams are
//! ownership-passing (a read fills a pooled buffer, a send owns its
//! buffer until the completion). Rather than make a stream poll-based,
//! the driver owns the stream and this type only holds bytes: a read
//! hands `h2` what the driver received, a write queues what `h2` framed
//! for the driver to send. Everything runs on the shard's one thread, and
//! `h2` is only ever polled by the driver's task, so the driver's waker
//! is the one that a completed receive or send wakes.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::runtime::BufPool;

/// Above this many queued bytes, `h2`'s writes wait for the send in
/// flight (its frames stay in its own buffers meanwhile).
const MAX_QUEUED: usize = 256 * 1024;

/// The bytes between the driver and `h2`.
#[derive(Debug, Default)]
pub(super) struct Pipe {
    /// Received plaintext not yet read by `h2`, from `rx_at`.
    pub(super) rx: Vec<u8>,
    rx_at: usize,
    /// The peer closed its side (or the read failed: `rx_error`).
    pub(super) rx_closed: bool,
    pub(super) rx_error: Option<io::ErrorKind>,
    /// Frames `h2` wrote, for the driver to send.
    pub(super) tx: Vec<u8>,
}

impl Pipe {
    /// Whether `h2` has read everything received so far.
    pub(super) fn rx_drained(&self) -> bool {
        self.rx_at >= self.rx.len()
    }

    /// Hands received bytes to `h2` (the pipe's receive side must be
    /// drained); the pipe's old buffer goes back to the shard's pool, so
    /// an idle connection holds none.
    pub(super) fn put_received(&mut self, bytes: Vec<u8>) {
        self.rx_at = 0;
        let mut old = std::mem::replace(&mut self.rx, bytes);
        old.clear();
        BufPool::release_if_empty(&mut old);
    }

    /// Takes the queued frames, for sending.
    pub(super) fn take_queued(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.tx)
    }
}

/// `h2`'s side of the pipe.
#[derive(Debug, Clone, Default)]
pub(super) struct H2Io(pub(super) Rc<RefCell<Pipe>>);

impl AsyncRead for H2Io {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut pipe = self.0.borrow_mut();
        if !pipe.rx_drained() {
            let at = pipe.rx_at;
            let n = buf.remaining().min(pipe.rx.len() - at);
            buf.put_slice(&pipe.rx[at..at + n]);
            pipe.rx_at += n;
            if pipe.rx_drained() {
                // Nothing buffered while idle: the buffer goes back.
                pipe.rx_at = 0;
                pipe.rx.clear();
                BufPool::release_if_empty(&mut pipe.rx);
            }
            return Poll::Ready(Ok(()));
        }
        if let Some(kind) = pipe.rx_error {
            return Poll::Ready(Err(kind.into()));
        }
        if pipe.rx_closed {
            return Poll::Ready(Ok(())); // end of stream: nothing put
        }
        // The driver reads the stream and polls `h2` again.
        Poll::Pending
    }
}

impl AsyncWrite for H2Io {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut pipe = self.0.borrow_mut();
        if pipe.tx.len() >= MAX_QUEUED {
            // The driver's send completion polls `h2` again.
            return Poll::Pending;
        }
        if pipe.tx.capacity() == 0 {
            pipe.tx = BufPool::take();
        }
        let n = buf.len().min(MAX_QUEUED - pipe.tx.len());
        pipe.tx.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The driver sends whatever is queued after every poll of `h2`.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
