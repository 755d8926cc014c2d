//! The io_uring driver: one ring per shard, the table of in-flight
//! operations, and completion dispatch.
//!
//! Every submitted operation has a slot in [`Driver::slots`]; its index is the
//! SQE's `user_data`. A slot's [`Lifecycle`] says what the operation awaits.
//! When the future that owns an operation is dropped before its completion,
//! the resources the kernel may still read or write (buffers, socket
//! addresses) move into the slot ([`Lifecycle::Ignored`]) and are freed only
//! when the completion arrives — never earlier. Multishot operations
//! ([`MultiState`]) queue their completions until the owner takes them.

use std::any::Any;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::task::Waker;
use std::time::Duration;

use io_uring::{IoUring, cqueue, opcode, squeue, types};

use super::buf_ring::BufRing;
use super::{RingFeatures, RuntimeConfig};

/// `user_data` of SQEs whose completion nobody waits for (cancel requests).
const IGNORED_USER_DATA: u64 = u64::MAX;
/// Buffer group id of the shard's provided-buffer ring.
pub(crate) const RECV_BUFFER_GROUP: u16 = 0;

/// The result of one completion-queue entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    /// The syscall-style result: a count or descriptor, or `-errno`.
    pub result: i32,
    /// CQE flags (`IORING_CQE_F_*`).
    pub flags: u32,
}

impl Completion {
    /// The result as an `io::Result`.
    pub fn io_result(self) -> io::Result<u32> {
        if self.result < 0 {
            Err(io::Error::from_raw_os_error(-self.result))
        } else {
            Ok(self.result as u32)
        }
    }

    /// The provided buffer the kernel filled, if any.
    pub fn buffer_id(self) -> Option<u16> {
        cqueue::buffer_select(self.flags)
    }
}

/// What a single-shot operation's slot awaits.
pub(crate) enum Lifecycle {
    /// Submitted; nobody has polled it yet.
    Submitted,
    /// Submitted; this waker is woken on completion.
    Waiting(Waker),
    /// The owning future was dropped. The resources the kernel may still
    /// touch live here until the completion arrives.
    Ignored(#[allow(dead_code)] Box<dyn Any>),
    /// Completed; the owner has not taken the result yet.
    Completed(Completion),
}

/// Which kind of multishot operation a slot runs; decides how completions
/// that nobody will read are cleaned up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MultiKind {
    /// Each completion carries a new connection's descriptor.
    Accept,
    /// Each completion carries a provided buffer.
    Recv,
}

/// The state of a multishot operation.
pub(crate) struct MultiState {
    pub(crate) kind: MultiKind,
    pub(crate) waker: Option<Waker>,
    pub(crate) queue: VecDeque<Completion>,
    /// The kernel posted the last completion (no `IORING_CQE_F_MORE`).
    pub(crate) finished: bool,
    /// The owner is gone; completions are cleaned up on arrival.
    pub(crate) ignored: bool,
    /// A cancel was requested because too many completions wait unread.
    pub(crate) paused: bool,
}

pub(crate) enum Slot {
    Free,
    Single(Lifecycle),
    Multi(MultiState),
}

/// One shard's ring and its in-flight operations.
pub(crate) struct Driver {
    // Field order matters: the ring is dropped (closing the fd) before the
    // slots that may hold memory the kernel used. `Drop` also cancels and
    // drains everything first.
    pub(crate) ring: IoUring,
    pub(crate) slots: Vec<Slot>,
    free: Vec<u32>,
    in_flight: usize,
    pub(crate) buf_ring: Option<BufRing>,
    pub(crate) features: RingFeatures,
    /// Multishot receives to pause after this dispatch (reused vector).
    to_pause: Vec<u32>,
    /// [`RuntimeConfig::max_queued_recv`].
    max_queued_recv: usize,
}

thread_local! {
    static DRIVER: RefCell<Option<Driver>> = const { RefCell::new(None) };
}

/// Runs `f` on this thread's driver. Panics when the thread has no runtime:
/// runtime objects are only created inside [`super::block_on`].
pub(crate) fn with<R>(f: impl FnOnce(&mut Driver) -> R) -> R {
    DRIVER.with(|d| {
        let mut d = d.borrow_mut();
        let driver = d
            .as_mut()
            .expect("no meshgate runtime on this thread (use runtime::block_on)");
        f(driver)
    })
}

/// Like [`with`], but does nothing when the runtime is gone (thread teardown).
pub(crate) fn try_with(f: impl FnOnce(&mut Driver)) {
    let _ = DRIVER.try_with(|d| {
        if let Ok(mut d) = d.try_borrow_mut()
            && let Some(driver) = d.as_mut()
        {
            f(driver);
        }
    });
}

/// Whether a driver may still own a ring on this thread: installed, or
/// busy (borrowed) so we cannot tell. Memory the kernel might still write
/// must be leaked rather than freed while this holds.
pub(crate) fn may_be_running() -> bool {
    DRIVER
        .try_with(|d| d.try_borrow().map(|d| d.is_some()).unwrap_or(true))
        .unwrap_or(false)
}

/// Installs a driver on this thread for the duration of `f`.
pub(crate) fn install(config: &RuntimeConfig) -> io::Result<RingFeatures> {
    let driver = Driver::new(config)?;
    let features = driver.features;
    DRIVER.with(|d| {
        let mut d = d.borrow_mut();
        assert!(
            d.is_none(),
            "a meshgate runtime is already running on this thread"
        );
        *d = Some(driver);
    });
    Ok(features)
}

/// Removes and drops this thread's driver (cancelling what is in flight).
pub(crate) fn uninstall() {
    let driver = DRIVER.with(|d| d.borrow_mut().take());
    drop(driver);
}

/// The features of this thread's ring.
pub fn features() -> RingFeatures {
    with(|d| d.features)
}

impl Driver {
    fn new(config: &RuntimeConfig) -> io::Result<Driver> {
        let mut builder = IoUring::builder();
        builder
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_coop_taskrun();
        let (ring, defer_taskrun) = match builder.build(config.ring_entries) {
            Ok(ring) => (ring, true),
            // Older kernels: a plain ring still works, only slower.
            Err(_) => (IoUring::new(config.ring_entries)?, false),
        };
        let buf_ring = if config.multishot_recv {
            match BufRing::new(
                &ring,
                config.recv_buffers,
                config.recv_buffer_size,
                RECV_BUFFER_GROUP,
            ) {
                Ok(r) => Some(r),
                Err(e) => {
                    log::warn!(
                        "provided buffer ring unavailable ({e}); falling back to single-shot recv"
                    );
                    None
                }
            }
        } else {
            None
        };
        let features = RingFeatures {
            defer_taskrun,
            multishot_recv: buf_ring.is_some(),
        };
        Ok(Driver {
            ring,
            slots: Vec::with_capacity(256),
            free: Vec::new(),
            in_flight: 0,
            buf_ring,
            features,
            to_pause: Vec::new(),
            max_queued_recv: config.max_queued_recv.max(1),
        })
    }

    /// Number of operations whose final completion has not arrived.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    fn alloc_slot(&mut self, slot: Slot) -> u32 {
        self.in_flight += 1;
        if let Some(i) = self.free.pop() {
            self.slots[i as usize] = slot;
            i
        } else {
            self.slots.push(slot);
            (self.slots.len() - 1) as u32
        }
    }

    pub(crate) fn release_slot(&mut self, index: u32) {
        self.slots[index as usize] = Slot::Free;
        self.free.push(index);
    }

    /// Queues an SQE, flushing the submission queue to the kernel when full.
    ///
    /// # Safety
    /// Every pointer in `sqe` must stay valid until the operation's final
    /// completion (the caller's op owns that memory or parks it in the slot).
    pub(crate) unsafe fn push(&mut self, sqe: &squeue::Entry) {
        loop {
            // SAFETY: forwarded from this function's contract.
            let pushed = unsafe { self.ring.submission().push(sqe) };
            if pushed.is_ok() {
                return;
            }
            // The queue is full: hand what we have to the kernel and retry.
            if let Err(e) = self.ring.submit()
                && e.raw_os_error() != Some(libc::EBUSY)
            {
                log::error!("io_uring submit failed: {e}");
            }
        }
    }

    /// Submits a single-shot operation; returns its slot index.
    ///
    /// # Safety
    /// As [`Driver::push`].
    pub(crate) unsafe fn submit_single(&mut self, sqe: squeue::Entry) -> u32 {
        let index = self.alloc_slot(Slot::Single(Lifecycle::Submitted));
        let sqe = sqe.user_data(index as u64);
        // SAFETY: forwarded from this function's contract.
        unsafe { self.push(&sqe) };
        index
    }

    /// Submits a multishot operation; returns its slot index.
    ///
    /// # Safety
    /// As [`Driver::push`].
    pub(crate) unsafe fn submit_multi(&mut self, kind: MultiKind, sqe: squeue::Entry) -> u32 {
        let state = MultiState {
            kind,
            waker: None,
            queue: VecDeque::new(),
            finished: false,
            ignored: false,
            paused: false,
        };
        let index = self.alloc_slot(Slot::Multi(state));
        let sqe = sqe.user_data(index as u64);
        // SAFETY: forwarded from this function's contract.
        unsafe { self.push(&sqe) };
        index
    }

    /// Asks the kernel to cancel the operation in `index`. Its completion
    /// still arrives (usually with `-ECANCELED`) and frees the slot.
    pub(crate) fn cancel(&mut self, index: u32) {
        let sqe = opcode::AsyncCancel::new(index as u64)
            .build()
            .user_data(IGNORED_USER_DATA);
        // SAFETY: a cancel request references no memory.
        unsafe { self.push(&sqe) };
    }

    /// Submits queued SQEs and waits for at least one completion, at most
    /// `timeout` (`Some(ZERO)`: do not wait).
    pub(crate) fn park(&mut self, timeout: Option<Duration>) {
        let result = match timeout {
            // With DEFER_TASKRUN completions are only posted when we ask for
            // events: a zero timeout does that without sleeping.
            Some(t) if t.is_zero() => {
                let ts = types::Timespec::new();
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
            Some(t) => {
                let ts = types::Timespec::new()
                    .sec(t.as_secs())
                    .nsec(t.subsec_nanos());
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
            None => self.ring.submit_and_wait(1),
        };
        if let Err(e) = result {
            match e.raw_os_error() {
                Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::EAGAIN) => {}
                _ => log::error!("io_uring_enter failed: {e}"),
            }
        }
    }

    /// Moves every available completion into its slot and wakes its owner.
    /// Returns how many completions were handled.
    pub(crate) fn dispatch(&mut self) -> usize {
        let mut handled = 0;
        let mut cq = self.ring.completion();
        cq.sync();
        for cqe in &mut cq {
            handled += 1;
            let user_data = cqe.user_data();
            if user_data == IGNORED_USER_DATA {
                continue;
            }
            let completion = Completion {
                result: cqe.result(),
                flags: cqe.flags(),
            };
            let index = user_data as u32;
            let slot = &mut self.slots[index as usize];
            match slot {
                Slot::Free => log::error!("completion for free slot {index}"),
                Slot::Single(lifecycle) => {
                    self.in_flight -= 1;
                    match std::mem::replace(lifecycle, Lifecycle::Completed(completion)) {
                        Lifecycle::Submitted => {}
                        Lifecycle::Waiting(waker) => waker.wake(),
                        Lifecycle::Ignored(resources) => {
                            // The kernel is done with the memory: free it now.
                            drop(resources);
                            *slot = Slot::Free;
                            self.free.push(index);
                        }
                        Lifecycle::Completed(_) => {
                            log::error!("second completion for single-shot slot {index}")
                        }
                    }
                }
                Slot::Multi(state) => {
                    let last = !cqueue::more(completion.flags);
                    if state.ignored {
                        cleanup_unread(state.kind, completion, self.buf_ring.as_mut());
                    } else {
                        state.queue.push_back(completion);
                        if let Some(w) = state.waker.take() {
                            w.wake();
                        }
                        // Backpressure: a reader that falls behind stops
                        // taking buffers from the shared ring; its stream
                        // re-arms the receive once it has caught up.
                        if state.kind == MultiKind::Recv
                            && !last
                            && !state.paused
                            && state.queue.len() >= self.max_queued_recv
                        {
                            state.paused = true;
                            self.to_pause.push(index);
                        }
                    }
                    if last {
                        state.finished = true;
                        self.in_flight -= 1;
                        if state.ignored {
                            *slot = Slot::Free;
                            self.free.push(index);
                        }
                    }
                }
            }
        }
        drop(cq);
        while let Some(index) = self.to_pause.pop() {
            self.cancel(index);
        }
        handled
    }
}

/// Frees what an unread multishot completion carries.
pub(crate) fn cleanup_unread(
    kind: MultiKind,
    completion: Completion,
    buf_ring: Option<&mut BufRing>,
) {
    match kind {
        MultiKind::Accept => {
            if completion.result >= 0 {
                // SAFETY: the descriptor was just created by the kernel for us
                // and nobody else knows it.
                unsafe { libc::close(completion.result) };
            }
        }
        MultiKind::Recv => {
            if let (Some(bid), Some(ring)) = (completion.buffer_id(), buf_ring) {
                ring.recycle(bid);
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Cancel everything still in flight and wait (bounded) for the kernel
        // to let go of the memory before the slots are freed.
        for index in 0..self.slots.len() {
            let live = match &self.slots[index] {
                Slot::Single(l) => !matches!(l, Lifecycle::Completed(_)),
                Slot::Multi(m) => !m.finished,
                Slot::Free => false,
            };
            if live {
                if let Slot::Multi(m) = &mut self.slots[index] {
                    m.ignored = true;
                }
                self.cancel(index as u32);
            }
        }
        let mut rounds = 0;
        while self.in_flight > 0 && rounds < 100 {
            self.park(Some(Duration::from_millis(10)));
            self.dispatch();
            rounds += 1;
        }
        if self.in_flight > 0 {
            // Leak rather than free memory the kernel may still write.
            log::error!(
                "{} io_uring operations still in flight at shutdown; leaking their buffers",
                self.in_flight
            );
            std::mem::forget(std::mem::take(&mut self.slots));
            if let Some(ring) = self.buf_ring.take() {
                std::mem::forget(ring);
            }
        }
    }
}
