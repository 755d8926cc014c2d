//! I/O runtime stage: our own single-threaded io_uring executor, one per shard.
//!
//! What this module owns:
//! - [`driver`]: the ring, the table of in-flight operations and the
//!   completion dispatch. An operation owns the memory the kernel may touch
//!   (buffers, socket addresses) until its completion arrives; a dropped
//!   future parks that memory in the table and asks the kernel to cancel
//!   ([`op`]), so dropping never frees memory the kernel may still write.
//! - [`executor`]: tasks, wakers, `block_on` and the shard loop: run ready
//!   tasks (bounded per turn), submit, sleep in `submit_and_wait` until the
//!   next completion or timer deadline, dispatch completions, fire timers.
//! - [`timer`]: per-shard deadlines (`sleep`, `timeout`) over [`wheel`], a
//!   hierarchical timing wheel.
//! - [`buf_ring`]: the provided-buffer ring used by multishot receive, so an
//!   idle connection owns no receive buffer; [`pool`]: reusable byte vectors.
//! - [`tcp`]: kernel TCP listeners (multishot accept, `SO_REUSEPORT`) and
//!   streams (multishot receive, owned-buffer send, connect).
//! - [`select`]: waiting on the first of two futures.
//! - [`privileges`]: becoming an unprivileged user after start.
//! - [`shard`]: one pinned thread per core, each with its own runtime.
//!
//! This is the only module (with the future userspace-stack driver) that
//! touches file descriptors or contains `unsafe`; every `unsafe` block
//! carries a `// SAFETY:` comment.
#![allow(unsafe_code)]

pub mod buf_ring;
pub mod driver;
pub mod executor;
pub mod op;
pub mod pool;
pub mod privileges;
pub mod select;
pub mod shard;
pub mod signals;
pub mod tcp;
pub mod timer;
pub mod unixcred;
pub mod wheel;

#[cfg(test)]
mod tests;

pub use driver::features;
pub use executor::{JoinHandle, LoopFigures, block_on, live_tasks, loop_figures, spawn, yield_now};
pub use pool::BufPool;
pub use select::{Either, first_of};
pub use tcp::{BoundSocket, MAX_RECV_PER_ARM, RxChunk, TcpListener, TcpSender, TcpStream};
pub use timer::{
    Elapsed, Sleep, now, precise_now, sleep, sleep_until, timeout, timeout_at, wall_clock,
};

/// How a shard's ring was set up; logged once at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingFeatures {
    /// `SINGLE_ISSUER | DEFER_TASKRUN | COOP_TASKRUN` accepted by the kernel.
    pub defer_taskrun: bool,
    /// A provided buffer ring is registered: receives are multishot.
    pub multishot_recv: bool,
}

/// Settings for one shard's runtime.
#[derive(Debug, Clone, Copy)]
pub struct RuntimeConfig {
    /// Submission queue entries.
    pub ring_entries: u32,
    /// Buffers in the provided-buffer ring (a power of two).
    pub recv_buffers: u16,
    /// Size of each receive buffer.
    pub recv_buffer_size: u32,
    /// Task polls per loop turn before the loop goes back to the kernel.
    pub max_polls_per_turn: usize,
    /// Use the provided-buffer ring when the kernel supports it.
    pub multishot_recv: bool,
    /// Completions a stream may hold unread before its multishot receive
    /// is paused (backpressure: one connection cannot drain the shard's
    /// buffers).
    pub max_queued_recv: usize,
    /// Where the shard's clock comes from.
    pub clock: Clock,
}

/// Where a runtime's clock comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Clock {
    /// The system's monotonic clock, read once per loop turn.
    #[default]
    System,
    /// Virtual time for deterministic tests: it stands still while any
    /// task can run and jumps to the next timer deadline when none can
    /// (like a manual clock that a test advances by sleeping). Only for
    /// runtimes whose I/O never waits on the kernel (the in-memory
    /// transport of [`crate::net::memory`]).
    Virtual,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            ring_entries: 1024,
            recv_buffers: 1024,
            recv_buffer_size: 16 * 1024,
            max_polls_per_turn: 256,
            multishot_recv: true,
            max_queued_recv: 4,
            clock: Clock::System,
        }
    }
}
