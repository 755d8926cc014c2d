//! Proxy stage: what happens to a connection after accept.
//!
//! - [`shard`]: one shard's context (snapshot cache, upstream pool, load
//!   balancer state, counters) and its main loop.
//! - [`listener`]: the accept loop; the TLS handshake and identity.
//! - [`http1`]: the HTTP/1.1 request loop: read, plan (route and
//!   policies), forward, stream bodies both ways, keep-alive on both sides.
//! - [`tcp`]: TCP listeners: a connection relayed as raw bytes to the
//!   route's cluster.
//! - `exchange`: one request's tries against its cluster: connections
//!   within the breakers, retries, the response head.
//! - [`traffic`]: per-shard traffic state: balancer cursors, outlier
//!   ejection, circuit-breaker gauges, rate-limit buckets.
//! - [`error`]: every way a request can fail, its side, and the response
//!   it becomes.
//!
//! Work per loop turn is bounded by construction: each forwarded chunk ends
//! in a send that waits for its completion, which yields to the shard loop.

pub mod error;
mod exchange;
pub mod http1;
pub mod listener;
pub mod request_id;
pub mod shard;
pub mod tcp;
pub mod traffic;

pub use error::ProxyError;
pub use shard::{ShardCommand, ShardContext, ShardInit, run_shard};
