//! Operation futures: [`Op`] for single-shot operations and [`MultiOp`] for
//! multishot ones.
//!
//! An `Op<T>` owns `T`, the memory its SQE points into, until the CQE
//! arrives; then it hands `T` back with the [`Completion`]. Dropping an `Op`
//! early parks `T` in the driver slot and submits an `ASYNC_CANCEL`: the
//! memory is freed only when the kernel reports the operation finished.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use io_uring::squeue;

use super::driver::{self, Completion, Lifecycle, MultiKind, Slot};

/// A submitted single-shot operation that owns its resources `T`.
pub(crate) struct Op<T: 'static> {
    index: u32,
    resources: Option<T>,
}

impl<T: 'static> Op<T> {
    /// Submits `sqe`, which may point into `resources`.
    ///
    /// # Safety
    /// Every pointer in `sqe` must point into heap memory owned by
    /// `resources` (so it does not move when the `Op` moves) or into memory
    /// that outlives the operation.
    pub(crate) unsafe fn submit(sqe: squeue::Entry, resources: T) -> Op<T> {
        // SAFETY: the memory `sqe` uses is owned by `resources`, which this
        // `Op` keeps (or parks in the slot) until the completion arrives.
        let index = driver::with(|d| unsafe { d.submit_single(sqe) });
        Op {
            index,
            resources: Some(resources),
        }
    }

    #[cfg_attr(not(test), allow(dead_code))]
    /// Requests cancellation; the future still resolves (usually with
    /// `-ECANCELED`, or with the result if the operation won the race).
    pub(crate) fn cancel(&self) {
        if self.resources.is_some() {
            driver::with(|d| d.cancel(self.index));
        }
    }
}

impl<T: 'static + Unpin> Future for Op<T> {
    type Output = (Completion, T);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let index = self.index;
        let done = driver::with(|d| {
            let Slot::Single(lifecycle) = &mut d.slots[index as usize] else {
                unreachable!("op slot {index} is not single-shot");
            };
            match lifecycle {
                Lifecycle::Completed(c) => {
                    let c = *c;
                    d.release_slot(index);
                    Some(c)
                }
                Lifecycle::Waiting(w) if w.will_wake(cx.waker()) => None,
                other => {
                    *other = Lifecycle::Waiting(cx.waker().clone());
                    None
                }
            }
        });
        match done {
            Some(c) => {
                let resources = self.resources.take().expect("Op polled after completion");
                Poll::Ready((c, resources))
            }
            None => Poll::Pending,
        }
    }
}

impl<T: 'static> Drop for Op<T> {
    fn drop(&mut self) {
        let Some(resources) = self.resources.take() else {
            return;
        };
        let index = self.index;
        let mut resources = Some(resources);
        driver::try_with(|d| {
            let Slot::Single(lifecycle) = &mut d.slots[index as usize] else {
                return;
            };
            let resources = resources.take();
            if matches!(lifecycle, Lifecycle::Completed(_)) {
                d.release_slot(index);
                drop(resources);
            } else {
                *lifecycle = Lifecycle::Ignored(Box::new(resources));
                d.cancel(index);
            }
        });
        if let Some(resources) = resources {
            // The driver could not be reached. If a ring may still exist,
            // the kernel may still write this memory: leak it, never free.
            if driver::may_be_running() {
                log::error!("operation dropped while the driver was busy; leaking its buffers");
                std::mem::forget(resources);
            }
        }
    }
}

/// A submitted multishot operation (accept or receive): a stream of
/// completions until one arrives without `IORING_CQE_F_MORE`.
pub(crate) struct MultiOp {
    index: u32,
    kind: MultiKind,
}

/// One step of a multishot operation.
pub(crate) enum MultiPoll {
    /// A completion; more may follow unless `last`.
    Next { completion: Completion, last: bool },
    /// The operation has ended and every completion was taken.
    Ended,
}

impl MultiOp {
    /// Submits a multishot `sqe`.
    ///
    /// # Safety
    /// As [`Op::submit`]; multishot accept and provided-buffer receive point
    /// at no caller memory.
    pub(crate) unsafe fn submit(kind: MultiKind, sqe: squeue::Entry) -> MultiOp {
        // SAFETY: forwarded from this function's contract.
        let index = driver::with(|d| unsafe { d.submit_multi(kind, sqe) });
        MultiOp { index, kind }
    }

    /// Takes the next completion, or registers the waker.
    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<MultiPoll> {
        let index = self.index;
        driver::with(|d| {
            let Slot::Multi(state) = &mut d.slots[index as usize] else {
                unreachable!("op slot {index} is not multishot");
            };
            if let Some(completion) = state.queue.pop_front() {
                let last = state.finished && state.queue.is_empty();
                return Poll::Ready(MultiPoll::Next { completion, last });
            }
            if state.finished {
                return Poll::Ready(MultiPoll::Ended);
            }
            state.waker = Some(cx.waker().clone());
            Poll::Pending
        })
    }
}

impl MultiOp {
    /// Whether completions wait unread or the operation has ended.
    pub(crate) fn has_unread(&self) -> bool {
        driver::with(
            |d| matches!(&d.slots[self.index as usize], Slot::Multi(s) if !s.queue.is_empty() || s.finished),
        )
    }
}

impl Drop for MultiOp {
    fn drop(&mut self) {
        let (index, kind) = (self.index, self.kind);
        driver::try_with(|d| {
            let Slot::Multi(state) = &mut d.slots[index as usize] else {
                return;
            };
            let queued: Vec<Completion> = state.queue.drain(..).collect();
            let finished = state.finished;
            state.ignored = true;
            state.waker = None;
            for c in queued {
                driver::cleanup_unread(kind, c, d.buf_ring.as_mut());
            }
            if finished {
                d.release_slot(index);
            } else {
                d.cancel(index);
            }
        });
    }
}
