//! Per-shard timers: [`sleep`], [`timeout`] and the loop's cached clock.
//!
//! Deadlines live in a hierarchical timing wheel ([`super::wheel`]): O(1)
//! insert and cancel (most timers — request timeouts — are cancelled, not
//! fired); each entry keeps its exact deadline and fires once the clock has
//! passed it (never early), and the loop asks for the next deadline to bound
//! its wait in the kernel. The clock is read once per loop turn ([`now`]),
//! so the many deadlines computed per request cost no syscall each.
//!
//! Under [`Clock::Virtual`] the clock does not follow the system: it stands
//! still while tasks run and the loop moves it to the next deadline when
//! nothing else can happen ([`jump_to_next_deadline`]), so tests of timeouts
//! run in microseconds and replay exactly.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::Clock;
use super::wheel::{TimerKey, Wheel};

struct Timers {
    wheel: RefCell<Wheel>,
    now: Cell<Option<Instant>>,
    virtual_time: Cell<bool>,
    /// When the runtime started, by both clocks.
    started: Cell<Option<(Instant, std::time::SystemTime)>>,
}

thread_local! {
    static TIMERS: Timers = const {
        Timers {
            wheel: RefCell::new(Wheel::new()),
            now: Cell::new(None),
            virtual_time: Cell::new(false),
            started: Cell::new(None),
        }
    };
}

/// A fresh clock reading, for measurements finer than a loop turn (request
/// latency). Everything else uses [`now`]. Under virtual time: [`now`].
pub fn precise_now() -> Instant {
    TIMERS.with(|t| match t.now.get() {
        Some(now) if t.virtual_time.get() => now,
        _ => Instant::now(),
    })
}

/// The wall-clock time (for certificate validity). Under virtual time: the
/// system time at the runtime's start plus the virtual time elapsed.
pub fn wall_clock() -> std::time::SystemTime {
    TIMERS.with(
        |t| match (t.virtual_time.get(), t.now.get(), t.started.get()) {
            (true, Some(now), Some((at, wall))) => wall + now.saturating_duration_since(at),
            _ => std::time::SystemTime::now(),
        },
    )
}

/// The shard's clock, as of the start of this loop turn (outside a runtime:
/// the real clock).
pub fn now() -> Instant {
    TIMERS.with(|t| t.now.get()).unwrap_or_else(Instant::now)
}

/// Starts the clock of a new runtime (virtual time starts at the system
/// clock's reading and moves only by [`jump_to_next_deadline`]).
pub(crate) fn reset_clock(clock: Clock) {
    TIMERS.with(|t| {
        let now = Instant::now();
        t.now.set(Some(now));
        t.started.set(Some((now, std::time::SystemTime::now())));
        t.virtual_time.set(clock == Clock::Virtual);
    });
}

/// Reads the clock (the system's; virtual time stays) and wakes every timer
/// that is due.
pub(crate) fn advance() {
    let mut due: Vec<Waker> = Vec::new();
    TIMERS.with(|t| {
        let now = match t.now.get() {
            Some(now) if t.virtual_time.get() => now,
            _ => Instant::now(),
        };
        t.now.set(Some(now));
        t.wheel.borrow_mut().advance(now, |w| due.push(w));
    });
    // Woken outside the borrow: a waker may touch the timers.
    for w in due {
        w.wake();
    }
}

/// Virtual time: moves the clock to the next armed deadline (if it is in
/// the future) and fires what is due there. Returns false when no timer is
/// armed.
pub(crate) fn jump_to_next_deadline() -> bool {
    let Some(deadline) = next_deadline() else {
        return false;
    };
    TIMERS.with(|t| {
        if t.now.get().is_none_or(|now| now < deadline) {
            t.now.set(Some(deadline));
        }
    });
    advance();
    true
}

/// When the loop should look at the timers again.
pub(crate) fn next_deadline() -> Option<Instant> {
    TIMERS.with(|t| t.wheel.borrow().next_deadline())
}

pub(crate) fn clear() {
    let wheel = TIMERS.with(|t| {
        t.now.set(None);
        t.virtual_time.set(false);
        std::mem::take(&mut *t.wheel.borrow_mut())
    });
    drop(wheel);
}

/// Number of armed timers (for tests and stats).
pub fn armed() -> usize {
    TIMERS.with(|t| t.wheel.borrow().len())
}

/// Completes at `deadline`.
pub struct Sleep {
    deadline: Instant,
    key: Option<TimerKey>,
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
                TIMERS.with(|t| t.wheel.borrow_mut().remove(key));
            }
            return Poll::Ready(());
        }
        let deadline = self.deadline;
        let key = TIMERS.with(|t| {
            let mut wheel = t.wheel.borrow_mut();
            match self.key {
                // Still armed: keep it, with this waker.
                Some(key) if wheel.set_waker(key, cx.waker()) => key,
                // Not armed yet (or already fired): arm.
                _ => wheel.insert(now(), deadline, cx.waker().clone()),
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
                if let Ok(mut w) = t.wheel.try_borrow_mut() {
                    w.remove(key);
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
