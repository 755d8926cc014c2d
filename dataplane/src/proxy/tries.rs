//! Tries: one request's (or TCP connection's) attempts against its
//! cluster, whatever the protocol. [`run_tries`] picks an endpoint
//! (avoiding the one that just failed), lets the protocol try it
//! ([`Attempt`]), judges the outcome with the one failure classification
//! ([`TryFailed`], from [`ProxyError::retry_class`] and
//! [`ProxyError::blames_endpoint`]), records it (outlier detection,
//! latency-aware balancing, timeout counters), and retries what the
//! route's policy, the time left and the cluster's retry budget allow
//! ([`admit_retry`], the one admission path), after a backoff.
//!
//! Uses [`super::context`] (traffic state, counters), `upstream::retry`
//! (policy, backoff) and the runtime's clock and timers.

use std::net::SocketAddr;
use std::time::Instant;

use super::context::ShardContext;
use super::error::ProxyError;
use super::tracing;
use super::traffic::{GaugeGuard, PickInput};
use crate::route::{ClusterId, RetryPolicy, Snapshot};
use crate::runtime;
use crate::telemetry::trace::{SpanId, TrySpan};
use crate::upstream::retry::{Failure, backoff};

/// How one try to an endpoint ended without a usable answer.
pub(crate) struct TryFailed {
    pub(crate) error: ProxyError,
    /// The try used a pooled connection and got no response byte on it:
    /// the upstream may just have closed it.
    pub(crate) silent_reused: bool,
    /// The upstream said it never processed the request (an HTTP/2
    /// stream refused, or above its GOAWAY): it may be sent again on a new
    /// connection whatever its method, if it can be replayed.
    pub(crate) unprocessed: bool,
}

impl TryFailed {
    pub(crate) fn new(error: ProxyError) -> TryFailed {
        TryFailed {
            error,
            silent_reused: false,
            unprocessed: false,
        }
    }

    /// Marks the failure as one the upstream never processed.
    pub(crate) fn unprocessed(mut self, unprocessed: bool) -> TryFailed {
        self.unprocessed |= unprocessed;
        self
    }

    /// A failure on a pooled connection that never answered.
    pub(crate) fn on_silent_reused(error: ProxyError, silent_reused: bool) -> TryFailed {
        TryFailed {
            error,
            silent_reused,
            unprocessed: false,
        }
    }
}

/// One protocol's way of trying an endpoint.
pub(crate) trait Attempt {
    /// What a try that worked gives (a response head, a connection).
    type Ok;

    /// Tries endpoint `addr`: on a new connection when `fresh`, else
    /// possibly a pooled one; everything it waits for is bounded by
    /// `deadline` (when there is one).
    async fn attempt(
        &mut self,
        addr: SocketAddr,
        fresh: bool,
        deadline: Option<Instant>,
    ) -> Result<Self::Ok, TryFailed>;

    /// The status a try that worked answered with (`None`: no status, as
    /// for a TCP connection), judged by the retry policy.
    fn status(ok: &Self::Ok) -> Option<u16>;

    /// The gRPC status a try that worked answered with in its head, if
    /// any (judged by gRPC retry conditions).
    fn grpc_status(_ok: &Self::Ok) -> Option<u32> {
        None
    }

    /// Whether the request can still be sent again (nothing that cannot be
    /// resent went upstream).
    fn replayable(&self) -> bool;

    /// Whether a try that died silently on a pooled connection may be sent
    /// once more on a new one (an idempotent request without a body).
    fn resend_on_fresh_connection(&self) -> bool;

    /// The next try is client span `span` of a recorded trace (a protocol
    /// that propagates trace context names it as the upstream's parent).
    fn set_span(&mut self, _span: SpanId) {}
}

/// The rules the tries of one request follow.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TryRules {
    pub(crate) cluster: ClusterId,
    /// Ring hash / maglev key.
    pub(crate) hash: u64,
    /// When the whole exchange must have its answer (`None`: no limit; each
    /// try is still bounded by its own connect timeout).
    pub(crate) deadline: Option<Instant>,
    pub(crate) retry: Option<RetryPolicy>,
    /// Record a client span per try (the request's trace is recorded).
    pub(crate) traced: bool,
}

/// What the tries of one request did, for its metrics, access log and
/// trace.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct TriesReport {
    /// Tries made (a resend on a fresh connection counts as one).
    pub(crate) attempts: u32,
    /// The endpoint of the last try.
    pub(crate) endpoint: Option<SocketAddr>,
    /// How long the try that answered took to its answer (for HTTP: the
    /// response head, i.e. the upstream's time to first byte).
    pub(crate) ttfb: Option<std::time::Duration>,
    /// A client span per try, when [`TryRules::traced`].
    pub(crate) spans: Vec<TrySpan>,
}

/// Tries endpoints of `rules.cluster` until one answers or the policy
/// gives up. `Ok`: an answer to forward (which may be a retriable status
/// whose retries ran out); `Err`: the last try's error, to answer locally.
pub(crate) async fn run_tries<A: Attempt>(
    ctx: &ShardContext,
    snapshot: &Snapshot,
    rules: TryRules,
    attempt: &mut A,
    report: &mut TriesReport,
) -> Result<A::Ok, ProxyError> {
    let cluster_index = rules.cluster.0 as usize;
    let mut retries = 0u32;
    let mut avoid = None;
    let mut fresh = false;
    let mut resent_dead = false;
    let mut retrying: Option<GaugeGuard> = None;
    loop {
        let now = runtime::now();
        let picked = ctx.traffic.borrow_mut().pick(
            snapshot,
            rules.cluster,
            PickInput {
                hash: rules.hash,
                avoid,
            },
            now,
        );
        let Some(endpoint) = picked else {
            let name = snapshot.cluster(rules.cluster).name.clone();
            return Err(ProxyError::NoEndpoint(name));
        };
        let addr = snapshot.cluster(rules.cluster).endpoints[endpoint];
        let _try = ctx.traffic.borrow().clusters[cluster_index].endpoint[endpoint]
            .in_flight
            .enter();
        let per_try = rules.retry.and_then(|r| r.per_try_timeout);
        let try_deadline = match (rules.deadline, per_try) {
            (Some(d), Some(p)) => Some(d.min(now + p)),
            (d, None) => d,
            (None, Some(p)) => Some(now + p),
        };
        let span = rules.traced.then(|| tracing::try_span_id(ctx));
        if let Some(span) = span {
            attempt.set_span(span);
        }
        let sent = runtime::precise_now();
        let outcome = attempt.attempt(addr, fresh, try_deadline).await;
        fresh = false;
        if let Some(span) = span {
            let (status, error) = match &outcome {
                Ok(ok) => (A::status(ok), None),
                Err(failed) => (None, Some(failed.error.label())),
            };
            let s = tracing::try_span(span, sent, addr, status, error);
            report.spans.push(s);
        }
        let end = runtime::now();
        let took = end.saturating_duration_since(now);
        report.attempts += 1;
        report.endpoint = Some(addr);
        report.ttfb = outcome
            .is_ok()
            .then(|| runtime::precise_now().saturating_duration_since(sent));
        // What went wrong, as the retry policy sees it.
        let failure = match &outcome {
            Ok(ok) => {
                let status = A::status(ok);
                let failed = status.is_some_and(|s| s >= 500);
                let mut traffic = ctx.traffic.borrow_mut();
                traffic.record(snapshot, rules.cluster, endpoint, failed, took, end);
                match A::grpc_status(ok) {
                    Some(code) if code != 0 => Some(Failure::Grpc(code)),
                    _ => status.map(Failure::Status),
                }
            }
            Err(failed) => {
                let class = failed.error.retry_class();
                // A pooled connection the upstream had just closed, or a
                // request it refused unprocessed: resend once on a new
                // connection (not a retry; the endpoint is fine).
                let resend = if failed.unprocessed {
                    attempt.replayable()
                } else {
                    failed.silent_reused
                        && class == Some(Failure::Reset)
                        && attempt.resend_on_fresh_connection()
                };
                if resend && !resent_dead {
                    if failed.unprocessed {
                        ctx.stats.h2_upstream_unprocessed.incr();
                    }
                    resent_dead = true;
                    fresh = true;
                    continue;
                }
                let per_try_fired = match (try_deadline, rules.deadline) {
                    (Some(t), Some(d)) => t < d,
                    (Some(_), None) => true,
                    (None, _) => false,
                };
                count_timeout(ctx, &failed.error, per_try_fired);
                if failed.error.blames_endpoint() {
                    let mut traffic = ctx.traffic.borrow_mut();
                    traffic.record(snapshot, rules.cluster, endpoint, true, took, end);
                }
                class
            }
        };
        // Retry when the route asks for it, the request can be sent again,
        // tries and time remain, and the cluster's retry budget allows.
        let policy = rules.retry.filter(|p| {
            failure.is_some_and(|f| p.on.retries(f))
                && attempt.replayable()
                && retries < p.attempts
                && rules.deadline.is_none_or(|d| runtime::now() < d)
        });
        let admitted = policy.is_some()
            && (retrying.is_some() || {
                retrying = admit_retry(ctx, snapshot, rules.cluster);
                retrying.is_some()
            });
        let (Some(policy), true) = (policy, admitted) else {
            // The last answer stands: a response (even a retriable status)
            // or the error of the last try.
            return outcome.map_err(|failed| failed.error);
        };
        // The failed try's connection (and any response) is dropped here.
        drop(outcome);
        let random = ctx.traffic.borrow_mut().random();
        let wait = backoff(retries, policy.backoff_base, policy.backoff_max, random);
        let until = runtime::now() + wait;
        runtime::sleep_until(rules.deadline.map_or(until, |d| until.min(d))).await;
        retries += 1;
        ctx.stats.retries.incr();
        avoid = Some(endpoint);
    }
}

/// Counts a timeout by kind: per try (its deadline came before the
/// exchange's), the whole request, or the connect.
fn count_timeout(ctx: &ShardContext, error: &ProxyError, per_try: bool) {
    match error {
        ProxyError::UpstreamTimeout if per_try => ctx.stats.per_try_timeouts.incr(),
        ProxyError::UpstreamTimeout => ctx.stats.request_timeouts.incr(),
        ProxyError::ConnectTimeout(_) => ctx.stats.connect_timeouts.incr(),
        _ => {}
    }
}

/// Whether a retry may start on `cluster`: under its `max_retries` breaker
/// (this shard's share) and its retry budget (a share of the requests in
/// flight). The guard counts the retrying request until dropped; a refusal
/// is counted as a retry overflow.
pub(crate) fn admit_retry(
    ctx: &ShardContext,
    snapshot: &Snapshot,
    cluster: ClusterId,
) -> Option<GaugeGuard> {
    let traffic = ctx.traffic.borrow();
    let state = &traffic.clusters[cluster.0 as usize];
    let limits = snapshot.cluster(cluster).limits;
    let active = state.active_requests.get();
    let in_retry = state.active_retries.get();
    if in_retry < traffic.share(limits.max_retries) && limits.retry_budget.allows(active, in_retry)
    {
        Some(state.active_retries.enter())
    } else {
        ctx.stats.retry_overflows.incr();
        None
    }
}
