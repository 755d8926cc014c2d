//! meshgate's data plane: everything a shard runs.
//!
//! ```text
//! accept ─► TLS (rustls, mTLS) ─► identity ─► HTTP/1.1 codec
//!    ─► route match ─► cluster ─► LB pick ─► upstream pool
//!    ─► forward (bodies streamed both ways) ─► response ─► counters
//! ```
//!
//! | stage | module |
//! |---|---|
//! | io_uring driver, executor, timers, buffers, shard threads | [`runtime`] |
//! | byte streams over kernel sockets (and later the userspace stack) | [`net`] |
//! | rustls configs, mTLS, SPIFFE identity | [`tls`] |
//! | HTTP/1.1 codec (sans-IO) | [`http`] |
//! | snapshot types, route matching | [`route`] |
//! | clusters, load balancing, connection pools | [`upstream`] |
//! | per-connection proxy logic | [`proxy`] |
//! | per-shard counters | [`telemetry`] |
//!
//! Only [`runtime`] touches file descriptors; it is also the only module
//! granted `#![allow(unsafe_code)]` (the userspace-stack driver may join it).

pub mod http;
pub mod net;
pub mod proxy;
pub mod route;
pub mod runtime;
pub mod telemetry;
pub mod tls;
pub mod upstream;
