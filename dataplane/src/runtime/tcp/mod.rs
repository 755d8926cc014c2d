//! Kernel TCP sockets driven through the ring: listeners with multishot
//! accept and streams with multishot receive into provided buffers (or
//! single-shot receive into a pooled buffer when the kernel lacks buffer
//! rings), owned-buffer send, and connect.
//!
//! - [`socket`]: the syscalls (addresses, options, close through the ring)
//!   and [`BoundSocket`], bound on the control thread;
//! - [`listener`]: [`TcpListener`], multishot accept;
//! - [`stream`]: [`TcpStream`] and its detached [`TcpSender`];
//! - [`chunk`]: [`RxChunk`], received bytes lent to the reader.
//!
//! Descriptors are closed through the ring (`IORING_OP_CLOSE`) after the
//! cancel of their operations, so a descriptor number cannot be reused by a
//! new socket while an SQE naming it still waits in the submission queue.

mod chunk;
mod listener;
mod socket;
mod stream;

pub use chunk::RxChunk;
pub use listener::TcpListener;
pub use socket::BoundSocket;
pub use stream::{MAX_RECV_PER_ARM, TcpSender, TcpStream};
