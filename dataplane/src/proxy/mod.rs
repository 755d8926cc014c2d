//! Proxy stage: what happens to a connection after accept.
//!
//! ```text
//! shard ─► accept ─► (TLS, identity, ALPN) ─► http1 | http2 | tcp
//!   http2: h2 connection ─► per stream: the http1 request path
//!   http1: read head ─► decide ─► tries ─► respond ─► forward body
//!   tcp:   decide ─► tries (connect) ─► relay
//! ```
//!
//! | step | module |
//! |---|---|
//! | the shard's loop: listeners, control orders, drain, housekeeping | [`shard`] |
//! | the shard's shared state: snapshots, pool, traffic, counters | [`context`] |
//! | the accept loop, TLS handshake, the caller's identity | [`accept`] |
//! | a connection's facts | [`conn`] |
//! | the stream a request comes in on (bytes, or an HTTP/2 stream's body) | [`downstream`] |
//! | decide: route, redirect, split, rate limit, faults, `max_requests` (pure) | [`decide`] |
//! | tries: pick, try, judge, retry within policy and budget (any protocol) | `tries` |
//! | upstream connections: pool, or connect within the breakers (TLS for `[clusters.tls]`) | `connect` |
//! | an upstream connection, plaintext or TLS we originated | [`upstream_conn`] |
//! | forward: one HTTP/1 body streamed between streams | `forward` |
//! | HTTP/1.1 downstream: the request loop, its upstream try, its responses | [`http1`] |
//! | HTTP/2 downstream: the connection driver (`h2`), each stream served by the HTTP/1.1 request path | [`http2`] |
//! | TCP listeners: decide, connect tries, then the relay | [`tcp`], `relay` |
//! | traffic state: balancers, outlier ejection, breaker gauges, buckets | [`traffic`] |
//! | every way a request fails, its side, retry class and response | [`error`] |
//! | gRPC facts: is it gRPC, its `grpc-timeout`, an answer's `grpc-status` | [`grpc`] |
//! | a finished request or session: its counts and access-log record | `observe` |
//! | a request's trace: context, upstream trace fields, spans to export | `tracing` |
//! | `x-request-id` values | [`request_id`] |
//! | rechecking live connections after a change (revoked certificates, rules) | `recheck` |
//!
//! The dependency direction runs down this table's data path: protocol
//! modules (`http1`, `tcp`) use `decide`, `tries`, `connect`, `forward` and
//! `relay`; those use `context`, `traffic` and `error`; nothing here uses a
//! protocol module but `accept`, and nothing names a kernel type — sockets
//! are reached through `crate::net` only.
//!
//! Work per loop turn is bounded by construction: each forwarded chunk ends
//! in a send that waits for its completion, which yields to the shard loop.

pub mod accept;
pub mod conn;
mod connect;
pub mod context;
pub mod decide;
pub mod downstream;
pub mod error;
mod forward;
pub mod grpc;
pub mod http1;
pub mod http2;
mod observe;
mod recheck;
mod relay;
pub mod request_id;
pub mod shard;
pub mod tcp;
mod tracing;
pub mod traffic;
mod tries;
pub mod upstream_conn;

#[cfg(test)]
mod tests;

pub use conn::ConnInfo;
pub use context::ShardContext;
pub use error::ProxyError;
pub use shard::{ShardCommand, ShardInit, run_shard, shard_loop};
