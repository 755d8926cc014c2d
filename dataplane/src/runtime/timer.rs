//! Per-shard timers: [`sleep`], [`timeout`] and the loop's cached clock.
//!
//! Deadlines live in an ordered map keyed by `(deadline, sequence)`: O(log n)
//! insert and cancel, and the loop asks for the earliest deadline to bound its
//! wait in the kernel. The clock is read once per loop turn ([`now`]), so the
//! many deadlines computed per request cost no syscall each.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

type Key = (Instant, u64);

struct Timers {
    pending: RefCell<BTreeMap<Key, Waker>>,
    next_seq: Cell<u64>,
    now: Cell<Option<Instant>>,
}

thread_local! {
    static TIMERS: Timers = const {
        Timers { pending: RefCell::new(BTreeMap::new()), next_seq: Cell::new(0), now: Cell::new(None) }
    };
}

/// A fresh clock reading, for measurements finer than a loop turn (request
/// latency). Everything else uses [`now`].
pub fn precise_now() -> Instant {
    Instant::now()
}

/// The shard's clock, as of the start of this loop turn (outside a runtime:
/// the real clock).
pub fn now() -> Instant {
    TIMERS.with(|t| t.now.get()).unwrap_or_else(Instant::now)
}

pub(crate) fn reset_clock() {
    TIMERS.with(|t| t.now.set(Some(Instant::now())));
}

/// Reads the clock and wakes every timer that is due.
pub(crate) fn advance() {
    TIMERS.with(|t| {
        let now = Instant::now();
        t.now.set(Some(now));
        loop {
            let due = {
                let mut pending = t.pending.borrow_mut();
                match pending.first_key_value() {
                    Some((&(deadline, _), _)) if deadline <= now => pending.pop_first(),
                    _ => None,
                }
            };
            match due {
                Some((_, waker)) => waker.wake(),
                None => break,
            }
        }
    });
}

/// The earliest pending deadline.
pub(crate) fn next_deadline() -> Option<Instant> {
    TIMERS.with(|t| t.pending.borrow().first_key_value().map(|(k, _)| k.0))
}

pub(crate) fn clear() {
    let pending = TIMERS.with(|t| {
        t.now.set(None);
        std::mem::take(&mut *t.pending.borrow_mut())
    });
    drop(pending);
}

/// Number of armed timers (for tests and stats).
pub fn armed() -> usize {
    TIMERS.with(|t| t.pending.borrow().len())
}

/// Completes at `deadline`.
pub struct Sleep {
    deadline: Instant,
    key: Option<Key>,
}

impl Sleep {
    /// The instant this sleep completes.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

/// Sleeps for `duration` from the shard clock's [`now`].
pub fn sleep(duration: Duration) -> Sleep {
    sleep_until(now() + duration)
}

/// Sleeps until `deadline`.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline,
        key: None,
    }
}

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if now() >= self.deadline {
            if let Some(key) = self.key.take() {
                TIMERS.with(|t| t.pending.borrow_mut().remove(&key));
            }
            return Poll::Ready(());
        }
        let deadline = self.deadline;
        let key = TIMERS.with(|t| {
            let mut pending = t.pending.borrow_mut();
            match self.key {
                Some(key) => {
                    match pending.get_mut(&key) {
                        Some(w) if w.will_wake(cx.waker()) => {}
                        Some(w) => *w = cx.waker().clone(),
                        // Already fired but the clock says not due: re-arm.
                        None => {
                            pending.insert(key, cx.waker().clone());
                        }
                    }
                    key
                }
                None => {
                    let seq = t.next_seq.get();
                    t.next_seq.set(seq + 1);
                    let key = (deadline, seq);
                    pending.insert(key, cx.waker().clone());
                    key
                }
            }
        });
        self.key = Some(key);
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let _ = TIMERS.try_with(|t| {
                if let Ok(mut p) = t.pending.try_borrow_mut() {
                    p.remove(&key);
                }
            });
        }
    }
}

/// The error of a [`timeout`] whose deadline passed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deadline elapsed")]
pub struct Elapsed;

/// Runs `future` until it completes or `duration` passes.
pub async fn timeout<F: Future>(duration: Duration, future: F) -> Result<F::Output, Elapsed> {
    timeout_at(now() + duration, future).await
}

/// Runs `future` until it completes or `deadline` passes.
pub async fn timeout_at<F: Future>(deadline: Instant, future: F) -> Result<F::Output, Elapsed> {
    let mut future = std::pin::pin!(future);
    let mut sleep = std::pin::pin!(sleep_until(deadline));
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = future.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(Elapsed));
        }
        Poll::Pending
    })
    .await
}
