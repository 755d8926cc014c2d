//! Upstream stage: picking an endpoint of a cluster (balancers, consistent
//! hashing, outlier ejection, health thresholds, retry rules) and keeping
//! per-shard pools of idle keep-alive connections to endpoints.
//!
//! Everything here is per shard (shared-nothing): no locks, no atomics.

pub mod balancer;
pub mod hash;
pub mod health;
pub mod outlier;
pub mod pool;
pub mod retry;
pub mod weighted;

pub use balancer::{RoundRobin, XorShift, least_request};
pub use pool::{PoolKey, UpstreamPool};
