//! meshgate's data plane: everything a shard runs.
//!
//! ```text
//! accept ─► TLS (rustls, mTLS) ─► identity ─► HTTP/1.1 | TCP
//!   HTTP/1.1: read head ─► decide ─► tries ─► response head ─► forward body
//!   TCP:      decide ─► tries (connect) ─► relay both ways
//! decide: route match, redirect, split, rate limit, faults, max_requests
//! tries:  pick endpoint ─► pooled or new connection ─► send ─► judge ─► retry
//! ```
//!
//! | stage | module |
//! |---|---|
//! | io_uring driver, executor (system or virtual clock), timers, buffers, kernel TCP, shard threads | [`runtime`] |
//! | the stream seam: kernel TCP, the in-memory transport (the userspace stack joins here) | [`net`] |
//! | rustls configs, our record layer, mTLS, SPIFFE identity | [`tls`] |
//! | HTTP/1.1 codec (sans-IO) | [`http`] |
//! | snapshot types, route matching, policies | [`route`] |
//! | balancers, outlier and health state machines, retry rules, connection pool | [`upstream`] |
//! | the shard loop and what happens to a connection: decide, tries, forward, relay | [`proxy`] |
//! | per-shard counters | [`telemetry`] |
//!
//! Dependencies run one way: `proxy` uses `net`, `tls`, `http`, `route`,
//! `upstream` and `telemetry`; `tls` uses `net`; `net` uses `runtime`. Only
//! [`runtime`] touches file descriptors, and `proxy` never names a kernel
//! type (`tests/boundary.rs`); [`runtime`] is also the only module granted
//! `#![allow(unsafe_code)]` (the userspace-stack driver may join it).
//!
//! Tests of the proxy run a real shard on virtual time over the in-memory
//! transport (`proxy/tests/`), deterministic for a given seed.

pub mod http;
pub mod net;
pub mod proxy;
pub mod route;
pub mod runtime;
pub mod telemetry;
pub mod tls;
pub mod upstream;
