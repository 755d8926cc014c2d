//! Active health checking, the pure part (upstream stage, sans-IO): owns one
//! endpoint's healthy/unhealthy verdict from its streaks of check results,
//! the jittered delay until its next check, and which HTTP statuses pass.
//!
//! The control thread runs the checks (connect, request, read status) and
//! feeds each result to [`HealthTracker::record`]; the verdict flips only
//! after `unhealthy` failures or `healthy` successes in a row, so one lost
//! probe does not pull an endpoint and one lucky probe does not restore it.
//!
//! Time and randomness are inputs: [`next_check_delay`] takes the interval
//! and a random `u64`; nothing here reads a clock or an RNG. Nothing panics
//! on any input (thresholds of 0 count as 1, arithmetic saturates) and
//! nothing allocates.

use std::time::Duration;

/// Status range that passes a check unless configured otherwise.
pub const DEFAULT_PASSING: (u16, u16) = (200, 399);

/// How many results in a row flip the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthThresholds {
    /// Consecutive successes that mark an unhealthy endpoint healthy (0
    /// counts as 1).
    pub healthy: u32,
    /// Consecutive failures that mark a healthy endpoint unhealthy (0
    /// counts as 1).
    pub unhealthy: u32,
}

impl Default for HealthThresholds {
    /// 2 successes to recover, 3 failures to fail (a common choice; Envoy
    /// makes both mandatory).
    fn default() -> Self {
        HealthThresholds {
            healthy: 2,
            unhealthy: 3,
        }
    }
}

/// A change of verdict reported by [`HealthTracker::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// `healthy` successes in a row after being unhealthy.
    BecameHealthy,
    /// `unhealthy` failures in a row after being healthy.
    BecameUnhealthy,
}

/// One endpoint's active-check verdict and current streaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthTracker {
    healthy: bool,
    /// Successes in a row (0 after any failure).
    successes: u32,
    /// Failures in a row (0 after any success).
    failures: u32,
}

impl Default for HealthTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl HealthTracker {
    /// A tracker that starts **healthy**: an endpoint that just appeared in
    /// the config (or after a control-plane restart) gets traffic until its
    /// checks say otherwise. Starting unhealthy would black-hole a whole
    /// cluster for `healthy * interval` on every deploy or reload; the cost
    /// of starting healthy — requests to a dead new endpoint until
    /// `unhealthy` checks fail — is bounded and also covered by passive
    /// outlier detection and connect-failure retries.
    pub fn new() -> HealthTracker {
        HealthTracker {
            healthy: true,
            successes: 0,
            failures: 0,
        }
    }

    /// Records one check result; returns the transition it caused, if any.
    pub fn record(&mut self, ok: bool, t: &HealthThresholds) -> Option<Transition> {
        if ok {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            if !self.healthy && self.successes >= t.healthy.max(1) {
                self.healthy = true;
                return Some(Transition::BecameHealthy);
            }
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.healthy && self.failures >= t.unhealthy.max(1) {
                self.healthy = false;
                return Some(Transition::BecameUnhealthy);
            }
        }
        None
    }

    /// The current verdict.
    pub fn is_healthy(&self) -> bool {
        self.healthy
    }

    /// Successes in a row so far (for display).
    pub fn successes(&self) -> u32 {
        self.successes
    }

    /// Failures in a row so far (for display).
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// Delay until the next check: `interval` plus a jitter uniform in
/// `[0, interval * jitter_percent / 100]` (both ends included) drawn from
/// `random`, so that checks from many shards/gateways do not synchronise.
/// Saturates instead of overflowing.
pub fn next_check_delay(interval: Duration, jitter_percent: u32, random: u64) -> Duration {
    let max_jitter = interval
        .as_nanos()
        .saturating_mul(u128::from(jitter_percent))
        / 100;
    let max_jitter = u64::try_from(max_jitter).unwrap_or(u64::MAX);
    interval.saturating_add(Duration::from_nanos(uniform_inclusive(random, max_jitter)))
}

/// Maps `random` onto `[0, max]` by multiply-and-shift (no division, no
/// modulo; `u64::MAX` maps to `max`).
fn uniform_inclusive(random: u64, max: u64) -> u64 {
    let span = u128::from(max) + 1;
    // random < 2^64 and span <= 2^64, so the product fits in u128 and the
    // result is < span.
    ((u128::from(random) * span) >> 64) as u64
}

/// Whether `status` passes a check for the inclusive range `[lo, hi]`
/// (default [`DEFAULT_PASSING`]); an empty range (`lo > hi`) passes nothing.
pub fn status_passes(status: u16, range: (u16, u16)) -> bool {
    range.0 <= status && status <= range.1
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: HealthThresholds = HealthThresholds {
        healthy: 2,
        unhealthy: 3,
    };

    #[test]
    fn starts_healthy_and_fails_after_unhealthy_threshold() {
        let mut h = HealthTracker::new();
        assert!(h.is_healthy());
        assert_eq!(h.record(false, &T), None);
        assert_eq!(h.record(false, &T), None);
        assert!(h.is_healthy());
        assert_eq!(h.record(false, &T), Some(Transition::BecameUnhealthy));
        assert!(!h.is_healthy());
        // Further failures report nothing new.
        assert_eq!(h.record(false, &T), None);
        assert_eq!(h.failures(), 4);
    }

    #[test]
    fn recovers_after_healthy_threshold() {
        let mut h = HealthTracker::new();
        for _ in 0..3 {
            h.record(false, &T);
        }
        assert_eq!(h.record(true, &T), None);
        assert!(!h.is_healthy());
        assert_eq!(h.record(true, &T), Some(Transition::BecameHealthy));
        assert!(h.is_healthy());
        assert_eq!(h.record(true, &T), None);
    }

    #[test]
    fn flapping_resets_streaks() {
        let mut h = HealthTracker::new();
        for _ in 0..10 {
            assert_eq!(h.record(false, &T), None);
            assert_eq!(h.record(false, &T), None);
            assert_eq!(h.record(true, &T), None);
        }
        assert!(h.is_healthy());
        for _ in 0..3 {
            h.record(false, &T);
        }
        assert!(!h.is_healthy());
        for _ in 0..10 {
            assert_eq!(h.record(true, &T), None);
            assert_eq!(h.record(false, &T), None);
        }
        assert!(!h.is_healthy());
        assert_eq!((h.successes(), h.failures()), (0, 1));
    }

    #[test]
    fn zero_thresholds_count_as_one() {
        let t = HealthThresholds {
            healthy: 0,
            unhealthy: 0,
        };
        let mut h = HealthTracker::default();
        assert_eq!(h.record(false, &t), Some(Transition::BecameUnhealthy));
        assert_eq!(h.record(true, &t), Some(Transition::BecameHealthy));
    }

    #[test]
    fn jitter_bounds() {
        let i = Duration::from_secs(10);
        for r in [0, 1, 12345, u64::MAX / 2, u64::MAX] {
            assert_eq!(next_check_delay(i, 0, r), i);
        }
        assert_eq!(next_check_delay(i, 10, 0), i);
        assert_eq!(
            next_check_delay(i, 10, u64::MAX),
            i + Duration::from_secs(1)
        );
        let mid = next_check_delay(i, 10, u64::MAX / 2);
        assert!(mid > i + Duration::from_millis(499) && mid < i + Duration::from_millis(501));
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..1000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let d = next_check_delay(i, 25, x);
            assert!(d >= i && d <= i + Duration::from_millis(2500), "{d:?}");
        }
    }

    #[test]
    fn jitter_saturates() {
        assert_eq!(
            next_check_delay(Duration::MAX, 100, u64::MAX),
            Duration::MAX
        );
        assert_eq!(
            next_check_delay(Duration::from_secs(1), u32::MAX, 0),
            Duration::from_secs(1)
        );
        assert_eq!(
            next_check_delay(Duration::ZERO, 50, u64::MAX),
            Duration::ZERO
        );
    }

    #[test]
    fn status_ranges() {
        assert!(status_passes(200, DEFAULT_PASSING));
        assert!(status_passes(399, DEFAULT_PASSING));
        assert!(status_passes(302, DEFAULT_PASSING));
        assert!(!status_passes(199, DEFAULT_PASSING));
        assert!(!status_passes(400, DEFAULT_PASSING));
        assert!(!status_passes(503, DEFAULT_PASSING));
        assert!(status_passes(204, (204, 204)));
        assert!(!status_passes(204, (300, 200)));
    }
}
