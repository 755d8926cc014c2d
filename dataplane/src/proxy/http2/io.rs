//! The byte pipe the `h2` state machine reads and writes: two buffers
//! shared with the connection's driver (downstream [`super::serve`],
//! upstream `super::client`), and the [`Pump`] that moves bytes between
//! them and the real stream (a TLS stream, or plain TCP).
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
use std::future::{Future, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::net::{ByteStream, Duplex, SendFuture, Sender};
use crate::runtime::{self, BufPool};

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

/// What moved bytes between the stream and the pipe.
pub(super) enum IoEvent {
    /// `h2` queued frames and no send is in flight.
    Flush,
    Read(io::Result<usize>),
    Sent(io::Result<()>, Vec<u8>),
    /// `h2` took everything received: the stream is to be read again.
    Rearm,
}

/// What an [`IoEvent`] did, for the driver's timers.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Moved {
    /// Bytes from the peer went into the pipe.
    Received,
    Other,
}

/// The byte side of an HTTP/2 connection's driver: the real stream, the
/// pipe `h2` reads and writes, and the one send in flight. The driver
/// polls `h2` and [`Pump::next`] together, then hands what happened to
/// [`Pump::handle`].
pub(super) struct Pump<S> {
    stream: S,
    pipe: Rc<RefCell<Pipe>>,
    sender: Sender,
    sending: Option<SendFuture>,
    inbuf: Vec<u8>,
}

impl<S: ByteStream + Duplex> Pump<S> {
    /// A pump over `stream`, and the pipe's side `h2` is given.
    pub(super) fn new(stream: S) -> (Pump<S>, H2Io) {
        let io = H2Io::default();
        let pump = Pump {
            sender: stream.sender(),
            stream,
            pipe: io.0.clone(),
            sending: None,
            inbuf: Vec::new(),
        };
        (pump, io)
    }

    /// Waits for the next I/O event. Poll `h2` before this in the same
    /// wake-up, so frames it queued are seen. Cancel-safe: dropping it
    /// loses no received byte.
    pub(super) async fn next(&mut self) -> IoEvent {
        // The read is armed only while `h2` has nothing left to read
        // (backpressure); once it has taken what this turn started with,
        // the read must be armed.
        let read_wanted = {
            let p = self.pipe.borrow();
            p.rx_drained() && !p.rx_closed
        };
        let Pump {
            stream,
            pipe,
            sending,
            inbuf,
            ..
        } = self;
        let mut read = pin!(async {
            if read_wanted {
                stream.read_into(inbuf).await
            } else {
                std::future::pending().await
            }
        });
        poll_fn(|cx| {
            if let Some(s) = sending.as_mut()
                && let Poll::Ready((r, buf)) = s.as_mut().poll(cx)
            {
                return Poll::Ready(IoEvent::Sent(r, buf));
            }
            if sending.is_none() && !pipe.borrow().tx.is_empty() {
                return Poll::Ready(IoEvent::Flush);
            }
            if !read_wanted && {
                let p = pipe.borrow();
                p.rx_drained() && !p.rx_closed
            } {
                return Poll::Ready(IoEvent::Rearm);
            }
            if let Poll::Ready(r) = read.as_mut().poll(cx) {
                return Poll::Ready(IoEvent::Read(r));
            }
            Poll::Pending
        })
        .await
    }

    /// Acts on `event`; `Err` ends the connection (a failed send or seal).
    pub(super) fn handle(&mut self, event: IoEvent) -> Result<Moved, String> {
        match event {
            IoEvent::Flush => {
                let queued = self.pipe.borrow_mut().take_queued();
                match self.stream.wire_bytes(queued) {
                    Ok(wire) => self.sending = Some(self.sender.send_owned(wire)),
                    Err(e) => return Err(format!("seal: {e}")),
                }
            }
            IoEvent::Sent(r, buf) => {
                self.sending = None;
                BufPool::give(buf);
                r.map_err(|e| format!("send: {e}"))?;
            }
            IoEvent::Read(r) => {
                let mut p = self.pipe.borrow_mut();
                match r {
                    Ok(0) => p.rx_closed = true,
                    Ok(_) => {
                        p.put_received(std::mem::take(&mut self.inbuf));
                        return Ok(Moved::Received);
                    }
                    Err(e) => {
                        p.rx_closed = true;
                        p.rx_error = Some(e.kind());
                    }
                }
            }
            IoEvent::Rearm => {}
        }
        Ok(Moved::Other)
    }

    /// The bytes the last [`Moved::Received`] put in the pipe (for the
    /// flood guard to scan before `h2` reads them).
    pub(super) fn received(&self) -> std::cell::Ref<'_, [u8]> {
        std::cell::Ref::map(self.pipe.borrow(), |p| &p.rx[p.rx_at..])
    }

    /// Sends what is in flight and what `h2` queued last (its GOAWAY),
    /// each within a second, then ends our side of the stream.
    pub(super) async fn finish(mut self) {
        if let Some(s) = self.sending.take() {
            let (_, buf) = runtime::timeout(Duration::from_secs(1), s)
                .await
                .unwrap_or((Ok(()), Vec::new()));
            BufPool::give(buf);
        }
        let queued = self.pipe.borrow_mut().take_queued();
        if !queued.is_empty()
            && let Ok(wire) = self.stream.wire_bytes(queued)
        {
            let _ = runtime::timeout(Duration::from_secs(1), self.sender.send_owned(wire)).await;
        }
        BufPool::give(std::mem::take(&mut self.inbuf));
        let _ = runtime::timeout(Duration::from_secs(1), self.stream.close_write()).await;
    }
}
