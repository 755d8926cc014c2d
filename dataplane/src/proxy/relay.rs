//! The TCP relay: bytes copied both ways at once between two streams
//! until both directions have closed. A side that stops reading stalls
//! only the direction towards it; a half-close is passed on (FIN, TLS
//! close_notify); an error, a TLS end without close_notify (a possible
//! truncation) or the idle timeout without a byte either way aborts both
//! sides (reset).
//!
//! Uses `net` (streams and their detached senders), [`super::context`]
//! (counters) and the runtime's timers and buffer pool.

use std::io;
use std::time::Duration;

use super::conn::ConnInfo;
use super::context::ShardContext;
use crate::net::{ByteStream, Duplex, SendFuture, Sender};
use crate::runtime::{BufPool, timeout};

/// A send in flight to one side: the future owns its buffer and holds the
/// connection open; `bytes` is the plaintext it carries (for the counters).
struct Sending {
    future: SendFuture,
    bytes: usize,
    /// A FIN follows once this (close_notify or nothing) is sent.
    then_shutdown: bool,
}

/// One direction of the relay: bytes read from one side, sent to the other.
#[derive(Default)]
struct Way {
    /// The source side read 0 (closed its sending side).
    source_done: bool,
    /// The FIN went to the destination.
    shut: bool,
    sending: Option<Sending>,
    /// Plaintext bytes delivered to the destination.
    moved: u64,
}

/// What a relay moved, and why it ended early (`None`: both directions
/// closed cleanly).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Relayed {
    /// Client → upstream.
    pub(super) up: u64,
    /// Upstream → client.
    pub(super) down: u64,
    pub(super) aborted: Option<&'static str>,
}

/// What woke the relay.
enum Event {
    /// A new snapshot: check the caller again.
    ConfigChanged,
    ReadDown(io::Result<usize>),
    ReadUp(io::Result<usize>),
    SentUp(io::Result<()>, Vec<u8>),
    SentDown(io::Result<()>, Vec<u8>),
}

/// Copies both ways at once until both directions are closed: a side that
/// stops reading stalls only the direction towards it (its source is not
/// read while a send to it is pending), never the other one. Aborts both
/// sides on an error, on a TLS end without close_notify (a possible
/// truncation), or when nothing moved either way for `idle`.
pub(super) async fn relay<D, U>(
    ctx: &ShardContext,
    conn: &mut ConnInfo,
    down: &mut D,
    up: &mut U,
    idle: Duration,
) -> Relayed
where
    D: ByteStream + Duplex,
    U: ByteStream + Duplex,
{
    let (down_tx, up_tx) = (down.sender(), up.sender());
    // A new snapshot wakes the relay: the caller is checked against it (a
    // revoked certificate, a rule that now refuses it) and cut off at once.
    fn watch<'c>(
        ctx: &'c ShardContext,
        conn: &ConnInfo,
    ) -> std::pin::Pin<Box<super::context::IdleWakeup<'c>>> {
        Box::pin(ctx.config_change(conn.listener.clone(), ctx.generation()))
    }
    let mut change = watch(ctx, conn);
    let mut to_up = Way::default();
    let mut to_down = Way::default();
    let mut from_down = BufPool::take();
    let mut from_up = BufPool::take();
    let outcome: Result<(), &'static str> = loop {
        // A direction whose source closed ends with our close (TLS
        // close_notify) and a FIN once its last bytes went out.
        for (way, dst, tx) in [
            (&mut to_up, &mut *up as &mut dyn Duplex, &up_tx),
            (&mut to_down, &mut *down as &mut dyn Duplex, &down_tx),
        ] {
            if way.source_done && !way.shut && way.sending.is_none() {
                let closing = dst.closing_bytes();
                if closing.is_empty() {
                    let _ = tx.shutdown_write();
                    way.shut = true;
                } else {
                    way.sending = Some(Sending {
                        future: tx.send_owned(closing),
                        bytes: 0,
                        then_shutdown: true,
                    });
                }
            }
        }
        if to_up.shut && to_down.shut {
            break Ok(());
        }
        let read_down = !to_up.source_done && to_up.sending.is_none();
        let read_up = !to_down.source_done && to_down.sending.is_none();
        let event = {
            let mut down_read = std::pin::pin!(async {
                if read_down {
                    down.read_into(&mut from_down).await
                } else {
                    std::future::pending::<io::Result<usize>>().await
                }
            });
            let mut up_read = std::pin::pin!(async {
                if read_up {
                    up.read_into(&mut from_up).await
                } else {
                    std::future::pending::<io::Result<usize>>().await
                }
            });
            let (to_up_send, to_down_send) = (&mut to_up.sending, &mut to_down.sending);
            timeout(
                idle,
                std::future::poll_fn(|cx| {
                    use std::task::Poll;
                    if let Some(s) = to_up_send.as_mut()
                        && let Poll::Ready((r, buf)) = s.future.as_mut().poll(cx)
                    {
                        return Poll::Ready(Event::SentUp(r, buf));
                    }
                    if let Some(s) = to_down_send.as_mut()
                        && let Poll::Ready((r, buf)) = s.future.as_mut().poll(cx)
                    {
                        return Poll::Ready(Event::SentDown(r, buf));
                    }
                    if let Poll::Ready(r) = down_read.as_mut().poll(cx) {
                        return Poll::Ready(Event::ReadDown(r));
                    }
                    if let Poll::Ready(r) = up_read.as_mut().poll(cx) {
                        return Poll::Ready(Event::ReadUp(r));
                    }
                    if change.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Event::ConfigChanged);
                    }
                    Poll::Pending
                }),
            )
            .await
        };
        // The reads that did not finish are dropped here (cancel-safe).
        let event = match event {
            Ok(event) => event,
            Err(_) => {
                ctx.stats.idle_timeouts.incr();
                break Err("no byte either way within the idle timeout");
            }
        };
        match event {
            Event::ConfigChanged => {
                let snapshot = ctx.snapshot();
                if super::recheck::recheck(ctx, &snapshot, conn, true).is_err() {
                    break Err("the caller was refused after a configuration change");
                }
                change = watch(ctx, conn);
            }
            Event::ReadDown(Ok(0)) => {
                if !down.closed_cleanly() {
                    break Err("downstream ended without TLS close_notify");
                }
                to_up.source_done = true;
            }
            Event::ReadUp(Ok(0)) => {
                if !up.closed_cleanly() {
                    break Err("upstream ended uncleanly");
                }
                to_down.source_done = true;
            }
            Event::ReadDown(Ok(n)) => match up.wire_bytes(std::mem::take(&mut from_down)) {
                Ok(wire) => {
                    to_up.sending = Some(Sending {
                        future: up_tx.send_owned(wire),
                        bytes: n,
                        then_shutdown: false,
                    })
                }
                Err(_) => break Err("upstream seal"),
            },
            Event::ReadUp(Ok(n)) => match down.wire_bytes(std::mem::take(&mut from_up)) {
                Ok(wire) => {
                    to_down.sending = Some(Sending {
                        future: down_tx.send_owned(wire),
                        bytes: n,
                        then_shutdown: false,
                    })
                }
                Err(_) => break Err("downstream seal"),
            },
            Event::ReadDown(Err(_)) => break Err("downstream read"),
            Event::ReadUp(Err(_)) => break Err("upstream read"),
            Event::SentUp(r, buf) => {
                if let Err(why) = sent(&mut to_up, r, buf, &up_tx, &ctx.stats.tcp_bytes_up) {
                    break Err(why);
                }
            }
            Event::SentDown(r, buf) => {
                if let Err(why) = sent(&mut to_down, r, buf, &down_tx, &ctx.stats.tcp_bytes_down) {
                    break Err(why);
                }
            }
        }
    };
    if let Err(why) = outcome {
        log::debug!("shard {}: tcp relay ended: {why}", ctx.id);
        down.abort();
        up.abort();
    }
    let relayed = Relayed {
        up: to_up.moved,
        down: to_down.moved,
        aborted: outcome.err(),
    };
    // Sends still in flight are cancelled before the streams close.
    drop(to_up);
    drop(to_down);
    BufPool::give(from_down);
    BufPool::give(from_up);
    relayed
}

/// A send of `way` completed: count its bytes, send the FIN it was waiting
/// for, recycle the buffer.
fn sent(
    way: &mut Way,
    result: io::Result<()>,
    mut buf: Vec<u8>,
    tx: &Sender,
    counter: &crate::telemetry::Counter,
) -> Result<(), &'static str> {
    let done = way.sending.take();
    buf.clear();
    BufPool::give(buf);
    result.map_err(|_| "send failed")?;
    if let Some(s) = done {
        counter.add(s.bytes as u64);
        way.moved += s.bytes as u64;
        if s.then_shutdown {
            let _ = tx.shutdown_write();
            way.shut = true;
        }
    }
    Ok(())
}
