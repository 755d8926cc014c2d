//! [`RxChunk`]: received bytes lent to the reader, from the shard's
//! provided-buffer ring or a pooled vector.

use std::ops::Deref;
use std::rc::Rc;

use crate::runtime::buf_ring::RingMemory;
use crate::runtime::driver;
use crate::runtime::pool::BufPool;

/// Received bytes: a provided buffer (returned to its ring on drop) or a
/// pooled vector (fallback mode). Empty means end of stream. Opaque: only
/// the runtime makes chunks, each lending one buffer id exactly once.
pub struct RxChunk(pub(super) Lent);

pub(super) enum Lent {
    Ring {
        memory: Rc<RingMemory>,
        bid: u16,
        len: usize,
    },
    Owned(Vec<u8>),
}

impl RxChunk {
    pub(super) fn end_of_stream() -> RxChunk {
        RxChunk(Lent::Owned(Vec::new()))
    }
}

impl Deref for RxChunk {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.0 {
            // SAFETY: buffer `bid` is lent to this chunk (the kernel does not
            // write it until it is recycled on drop), `len` bytes of it were
            // written by the completed receive, and `memory` keeps the
            // allocation alive.
            Lent::Ring { memory, bid, len } => unsafe { memory.slice(*bid, *len) },
            Lent::Owned(v) => v,
        }
    }
}

impl Drop for RxChunk {
    fn drop(&mut self) {
        match &mut self.0 {
            Lent::Ring { memory, bid, .. } => {
                let (id, bid) = (memory.id(), *bid);
                driver::try_with(|d| {
                    // Only into the ring it came from: a chunk may outlive its
                    // runtime, and then the memory just goes with the Rc.
                    if let Some(ring) = d.buf_ring.as_mut()
                        && ring.memory().id() == id
                    {
                        ring.recycle(bid);
                    }
                });
            }
            Lent::Owned(v) => BufPool::give(std::mem::take(v)),
        }
    }
}

impl std::fmt::Debug for RxChunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RxChunk({} bytes)", self.len())
    }
}
