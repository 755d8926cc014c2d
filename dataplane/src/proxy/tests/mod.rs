//! Tests of the proxy layer through a real shard on virtual time, over the
//! in-memory transport ([`harness`]): they run in milliseconds, without
//! sockets or sleeps, and replay exactly with the same seed.

mod access_log;
mod determinism;
pub(super) mod harness;
mod http1;
mod http2;
mod tcp;
mod tracing;
