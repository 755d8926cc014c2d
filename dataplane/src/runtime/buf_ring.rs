//! The provided-buffer ring: a pool of receive buffers the kernel picks from
//! when a multishot receive has data, so a connection holds a buffer only
//! while it has unread bytes.
//!
//! A buffer id is either *in the ring* (the kernel may write it) or *lent*
//! (carried by a completion or an [`super::RxChunk`]; only we touch it).
//! [`BufRing::recycle`] moves it back in. When the ring runs dry the kernel
//! ends the multishot receive with `ENOBUFS`; the stream re-arms it.

use std::alloc::{self, Layout};
use std::io;
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};

use io_uring::IoUring;
use io_uring::types::BufRingEntry;

/// The buffers' memory. Shared (`Rc`) by the ring and every chunk lent out
/// of it, so a chunk never outlives the bytes it points at, even when the
/// runtime that made it is gone.
pub(crate) struct RingMemory {
    ptr: NonNull<u8>,
    layout: Layout,
    buf_size: u32,
    entries: u16,
    /// Unique per ring, so a chunk is never recycled into another ring.
    id: u64,
}

static NEXT_RING_ID: AtomicU64 = AtomicU64::new(1);

impl RingMemory {
    /// Buffer `bid`'s first `len` bytes.
    ///
    /// # Safety
    /// `bid` must be lent to the caller (out of the ring), and `len` bytes of
    /// it written by a completed receive.
    pub(crate) unsafe fn slice(&self, bid: u16, len: usize) -> &[u8] {
        assert!(
            bid < self.entries && len <= self.buf_size as usize,
            "buffer {bid} with {len} bytes is out of range"
        );
        let offset = bid as usize * self.buf_size as usize;
        // SAFETY: in range (asserted); the caller guarantees the kernel does
        // not write this buffer now and that `len` bytes are initialised.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(offset), len) }
    }

    /// The ring this memory belongs to.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    fn buffer_addr(&self, bid: u16) -> u64 {
        assert!(bid < self.entries, "buffer id {bid} out of range");
        self.ptr.as_ptr() as u64 + bid as u64 * self.buf_size as u64
    }
}

impl Drop for RingMemory {
    fn drop(&mut self) {
        // SAFETY: allocated in `BufRing::new` with this layout. The last
        // owner is gone, and the kernel can no longer write here: the driver
        // drops its `BufRing` after closing the ring fd and draining in-flight
        // operations, or leaks it (and so this memory).
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

pub(crate) struct BufRing {
    bgid: u16,
    entries: u16,
    buf_size: u32,
    /// Ring of `entries` descriptors, page aligned, shared with the kernel.
    ring: NonNull<BufRingEntry>,
    ring_layout: Layout,
    /// `entries * buf_size` bytes of buffer memory.
    memory: Rc<RingMemory>,
    /// Our copy of the ring tail (the kernel owns the head).
    tail: u16,
}

impl BufRing {
    /// Allocates `entries` buffers of `buf_size` bytes and registers them as
    /// buffer group `bgid`.
    pub(crate) fn new(
        uring: &IoUring,
        entries: u16,
        buf_size: u32,
        bgid: u16,
    ) -> io::Result<BufRing> {
        if !entries.is_power_of_two() || buf_size == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer ring size must be a power of two",
            ));
        }
        let invalid = |e| io::Error::new(io::ErrorKind::InvalidInput, e);
        let ring_layout =
            Layout::from_size_align(entries as usize * size_of::<BufRingEntry>(), 4096)
                .map_err(invalid)?;
        let bufs_layout =
            Layout::from_size_align(entries as usize * buf_size as usize, 64).map_err(invalid)?;
        // SAFETY: both layouts have non-zero size (entries ≥ 1, buf_size ≥ 1).
        let ring = unsafe { alloc::alloc_zeroed(ring_layout) } as *mut BufRingEntry;
        // Zeroed once at start: the kernel's writes through the ring are
        // invisible to valgrind, which would otherwise call every received
        // byte uninitialised.
        // SAFETY: as above.
        let bufs = unsafe { alloc::alloc_zeroed(bufs_layout) };
        let (Some(ring), Some(bufs)) = (NonNull::new(ring), NonNull::new(bufs)) else {
            alloc::handle_alloc_error(ring_layout);
        };
        let id = NEXT_RING_ID.fetch_add(1, Ordering::Relaxed);
        let memory = Rc::new(RingMemory {
            ptr: bufs,
            layout: bufs_layout,
            buf_size,
            entries,
            id,
        });
        let mut this = BufRing {
            bgid,
            entries,
            buf_size,
            ring,
            ring_layout,
            memory,
            tail: 0,
        };
        // SAFETY: `ring` points at `entries` zeroed, page-aligned descriptors
        // that stay allocated until `Drop`, which runs after the ring fd
        // (and so the registration) is gone.
        unsafe {
            uring.submitter().register_buf_ring_with_flags(
                ring.as_ptr() as u64,
                entries,
                bgid,
                0,
            )?
        };
        for bid in 0..entries {
            this.push(bid);
        }
        this.publish();
        Ok(this)
    }

    /// The buffers' memory, lent along with each chunk.
    pub(crate) fn memory(&self) -> &Rc<RingMemory> {
        &self.memory
    }

    /// Returns buffer `bid` to the kernel.
    pub(crate) fn recycle(&mut self, bid: u16) {
        self.push(bid);
        self.publish();
    }

    fn push(&mut self, bid: u16) {
        let mask = self.entries - 1;
        let slot = (self.tail & mask) as usize;
        // SAFETY: slot < entries; the kernel reads descriptors only up to the
        // published tail, and this slot is past it until `publish`.
        let entry = unsafe { &mut *self.ring.as_ptr().add(slot) };
        entry.set_addr(self.memory.buffer_addr(bid));
        entry.set_len(self.buf_size);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail field lives inside the first descriptor of our
        // allocation; the kernel reads it with acquire semantics, so a
        // release store publishes the descriptors written before it.
        unsafe {
            let tail = BufRingEntry::tail(self.ring.as_ptr()) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    /// Buffer group id.
    pub(crate) fn bgid(&self) -> u16 {
        self.bgid
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout. The driver drops the
        // buffer ring only after its ring fd is closed and in-flight
        // operations were drained (see `Driver::drop`), or leaks it. The
        // buffer memory itself goes with its last `RingMemory` owner.
        unsafe { alloc::dealloc(self.ring.as_ptr() as *mut u8, self.ring_layout) };
    }
}
