//! Upstream stage: picking an endpoint of a cluster and keeping per-shard
//! pools of idle keep-alive connections to endpoints.
//!
//! Everything here is per shard (shared-nothing): no locks, no atomics.

pub mod balancer;
pub mod pool;

pub use balancer::{RoundRobin, XorShift, least_request};
pub use pool::{PoolKey, UpstreamPool};
