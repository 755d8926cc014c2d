//! The provided-buffer ring: a pool of receive buffers the kernel picks from
//! when a multishot receive has data, so a connection holds a buffer only
//! while it has unread bytes.
//!
//! A buffer id is either *in the ring* (the kernel may write it) or *out*
//! (carried by a completion or an [`super::RxChunk`]; only we touch it).
//! [`BufRing::recycle`] moves it back in. When the ring runs dry the kernel
//! ends the multishot receive with `ENOBUFS`; the stream re-arms it.

use std::alloc::{self, Layout};
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::IoUring;
use io_uring::types::BufRingEntry;

pub(crate) struct BufRing {
    bgid: u16,
    entries: u16,
    buf_size: u32,
    /// Ring of `entries` descriptors, page aligned, shared with the kernel.
    ring: NonNull<BufRingEntry>,
    ring_layout: Layout,
    /// `entries * buf_size` bytes of buffer memory.
    bufs: NonNull<u8>,
    bufs_layout: Layout,
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
        let ring_layout =
            Layout::from_size_align(entries as usize * size_of::<BufRingEntry>(), 4096)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let bufs_layout = Layout::from_size_align(entries as usize * buf_size as usize, 64)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: both layouts have non-zero size (entries ≥ 1, buf_size ≥ 1).
        let ring = unsafe { alloc::alloc_zeroed(ring_layout) } as *mut BufRingEntry;
        // SAFETY: as above.
        let bufs = unsafe { alloc::alloc(bufs_layout) };
        let (Some(ring), Some(bufs)) = (NonNull::new(ring), NonNull::new(bufs)) else {
            alloc::handle_alloc_error(ring_layout);
        };
        let mut this = BufRing {
            bgid,
            entries,
            buf_size,
            ring,
            ring_layout,
            bufs,
            bufs_layout,
            tail: 0,
        };
        // SAFETY: `ring` points at `entries` zeroed, page-aligned descriptors
        // that stay allocated until `Drop`, which runs after the ring fd
        // (and so the registration) is gone or after unregistering.
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

    /// Pointer to buffer `bid`'s memory.
    pub(crate) fn buffer_ptr(&self, bid: u16) -> *const u8 {
        assert!(bid < self.entries, "buffer id {bid} out of range");
        // SAFETY: bid < entries, so the offset stays inside the allocation.
        unsafe {
            self.bufs
                .as_ptr()
                .add(bid as usize * self.buf_size as usize)
        }
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
        entry.set_addr(self.buffer_ptr(bid) as u64);
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
        // SAFETY: allocated in `new` with these layouts. The driver drops the
        // buffer ring only after its ring fd is closed and in-flight
        // operations were drained (see `Driver::drop`), or leaks it.
        unsafe {
            alloc::dealloc(self.ring.as_ptr() as *mut u8, self.ring_layout);
            alloc::dealloc(self.bufs.as_ptr(), self.bufs_layout);
        }
    }
}
