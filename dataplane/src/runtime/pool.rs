//! A per-shard pool of byte vectors, so a connection borrows a buffer while
//! it has bytes to hold and returns it when it goes idle, without a trip to
//! the allocator each time.

use std::cell::RefCell;

/// Buffers kept per shard.
const MAX_POOLED: usize = 4096;
/// Capacity of a fresh pooled buffer.
pub const POOLED_CAPACITY: usize = 16 * 1024;
/// Buffers that grew beyond this are not kept.
const MAX_KEPT_CAPACITY: usize = 256 * 1024;

thread_local! {
    static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// Handle to this shard's buffer pool.
#[derive(Debug, Clone, Copy, Default)]
pub struct BufPool;

impl BufPool {
    /// An empty vector with at least [`POOLED_CAPACITY`] bytes of capacity.
    pub fn take() -> Vec<u8> {
        POOL.with(|p| p.borrow_mut().pop())
            .unwrap_or_else(|| Vec::with_capacity(POOLED_CAPACITY))
    }

    /// Returns `buf` to the pool (cleared). Vectors without capacity or with
    /// very large capacity are dropped.
    pub fn give(mut buf: Vec<u8>) {
        if buf.capacity() < POOLED_CAPACITY || buf.capacity() > MAX_KEPT_CAPACITY {
            return;
        }
        buf.clear();
        let _ = POOL.try_with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < MAX_POOLED {
                p.push(buf);
            }
        });
    }

    /// Ensures `buf` has a pooled allocation (for a vector that gave its
    /// buffer back while idle).
    pub fn ensure(buf: &mut Vec<u8>) {
        if buf.capacity() == 0 {
            *buf = Self::take();
        }
    }

    /// Gives `buf`'s allocation back if it holds no bytes (an idle
    /// connection keeps no buffer).
    pub fn release_if_empty(buf: &mut Vec<u8>) {
        if buf.is_empty() && buf.capacity() != 0 {
            Self::give(std::mem::take(buf));
        }
    }

    /// Buffers currently pooled on this shard.
    pub fn pooled() -> usize {
        POOL.with(|p| p.borrow().len())
    }
}
