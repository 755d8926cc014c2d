//! Retry policy helpers (upstream stage, sans-IO): owns which failures a
//! route retries ([`RetryOn`]), the delay before a retry ([`backoff`]) and
//! whether the cluster's retry budget lets another retry start
//! ([`RetryBudget`]).
//!
//! Conditions follow Envoy's `retry_on` names. As in Envoy, `5xx` and
//! `gateway-error` also cover failures that never produced a status —
//! connect failure, reset before a response head, per-try timeout — because
//! the gateway would answer those itself with a 502/503/504.
//!
//! Whether a request may be retried at all (idempotent method, body still
//! replayable, no response bytes sent downstream yet, attempts left) is the
//! caller's decision; this module only answers the policy questions.
//!
//! Time and randomness are inputs ([`backoff`] takes a random `u64`). No
//! function panics on any input, arithmetic saturates, nothing allocates.

use std::time::Duration;

/// What went wrong with one upstream attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The connection (TCP or TLS handshake) to the endpoint failed.
    ConnectFailure,
    /// The connection was reset or closed before a response head arrived.
    Reset,
    /// The per-try timeout fired before a response head arrived.
    Timeout,
    /// A response head arrived with this status.
    Status(u16),
    /// A gRPC answer arrived with this non-zero `grpc-status` in its head
    /// (trailers-only: nothing of the response has gone downstream).
    Grpc(u32),
}

/// The failures a route retries: a set of `retry_on` conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetryOn(u16);

impl RetryOn {
    /// `connect-failure`: the connection to the endpoint failed.
    pub const CONNECT_FAILURE: RetryOn = RetryOn(1 << 0);
    /// `reset`: reset/closed before a response head.
    pub const RESET: RetryOn = RetryOn(1 << 1);
    /// `5xx`: any 5xx status, and connect failure, reset and timeout.
    pub const FIVE_XX: RetryOn = RetryOn(1 << 2);
    /// `gateway-error`: 502, 503, 504, and connect failure, reset and
    /// timeout.
    pub const GATEWAY_ERROR: RetryOn = RetryOn(1 << 3);
    /// `503`: status 503 only.
    pub const SERVICE_UNAVAILABLE: RetryOn = RetryOn(1 << 4);
    /// `retriable-4xx`: status 409 (Conflict).
    pub const RETRIABLE_4XX: RetryOn = RetryOn(1 << 5);
    /// `timeout`: the per-try timeout fired.
    pub const TIMEOUT: RetryOn = RetryOn(1 << 6);
    /// gRPC statuses, by Envoy's `retry_grpc_on` names: `cancelled` (1),
    /// `deadline-exceeded` (4), `resource-exhausted` (8), `internal` (13),
    /// `unavailable` (14).
    pub const GRPC_CANCELLED: RetryOn = RetryOn(1 << 7);
    pub const GRPC_DEADLINE_EXCEEDED: RetryOn = RetryOn(1 << 8);
    pub const GRPC_INTERNAL: RetryOn = RetryOn(1 << 9);
    pub const GRPC_RESOURCE_EXHAUSTED: RetryOn = RetryOn(1 << 10);
    pub const GRPC_UNAVAILABLE: RetryOn = RetryOn(1 << 11);

    /// The empty set (retry nothing).
    pub const NONE: RetryOn = RetryOn(0);

    /// Config names, index `k` naming the condition with bit `1 << k`.
    pub const NAMES: [&'static str; 12] = [
        "connect-failure",
        "reset",
        "5xx",
        "gateway-error",
        "503",
        "retriable-4xx",
        "timeout",
        "cancelled",
        "deadline-exceeded",
        "internal",
        "resource-exhausted",
        "unavailable",
    ];

    /// The condition named `s` (exact match of one of [`NAMES`](Self::NAMES)).
    pub fn parse(s: &str) -> Option<RetryOn> {
        Self::NAMES
            .iter()
            .position(|name| *name == s)
            .map(|k| RetryOn(1 << k))
    }

    /// A comma-separated list of names (Envoy's `retry_on` header/config
    /// form, blanks around names allowed), e.g. `"5xx, reset"`. `None` if
    /// any name is unknown or empty.
    pub fn parse_list(s: &str) -> Option<RetryOn> {
        s.split(',').try_fold(RetryOn::NONE, |acc, name| {
            Some(acc.union(Self::parse(name.trim())?))
        })
    }

    /// Both sets.
    pub fn union(self, o: RetryOn) -> RetryOn {
        RetryOn(self.0 | o.0)
    }

    /// Whether every condition of `o` is in `self`.
    pub fn contains(self, o: RetryOn) -> bool {
        self.0 & o.0 == o.0
    }

    /// Whether no condition is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The names of the set conditions, in [`NAMES`](Self::NAMES) order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Self::NAMES
            .iter()
            .enumerate()
            .filter(move |(k, _)| self.0 & (1 << k) != 0)
            .map(|(_, name)| *name)
    }

    /// Whether a failure of this kind should be retried under this set.
    pub fn retries(self, failure: Failure) -> bool {
        let any = |set: RetryOn| self.0 & set.0 != 0;
        let no_response = RetryOn::FIVE_XX.union(RetryOn::GATEWAY_ERROR);
        match failure {
            Failure::ConnectFailure => any(no_response.union(RetryOn::CONNECT_FAILURE)),
            Failure::Reset => any(no_response.union(RetryOn::RESET)),
            Failure::Timeout => any(no_response.union(RetryOn::TIMEOUT)),
            Failure::Status(status) => {
                let mut matching = RetryOn::NONE;
                if (500..=599).contains(&status) {
                    matching = matching.union(RetryOn::FIVE_XX);
                }
                if matches!(status, 502..=504) {
                    matching = matching.union(RetryOn::GATEWAY_ERROR);
                }
                if status == 503 {
                    matching = matching.union(RetryOn::SERVICE_UNAVAILABLE);
                }
                if status == 409 {
                    matching = matching.union(RetryOn::RETRIABLE_4XX);
                }
                any(matching)
            }
            Failure::Grpc(code) => match code {
                1 => any(RetryOn::GRPC_CANCELLED),
                4 => any(RetryOn::GRPC_DEADLINE_EXCEEDED),
                8 => any(RetryOn::GRPC_RESOURCE_EXHAUSTED),
                13 => any(RetryOn::GRPC_INTERNAL),
                14 => any(RetryOn::GRPC_UNAVAILABLE),
                _ => false,
            },
        }
    }
}

/// Exponential backoff with full jitter: a delay uniform in
/// `[0, min(max, base * 2^retry_index)]` (both ends included) drawn from
/// `random`; `retry_index` is 0 for the first retry. Never overflows: large
/// indexes saturate at `max`, and a cap beyond `u64::MAX` nanoseconds
/// (~584 years) is treated as that.
pub fn backoff(retry_index: u32, base: Duration, max: Duration, random: u64) -> Duration {
    let base = base.as_nanos();
    let max = max.as_nanos();
    let cap = if base == 0 {
        0
    } else {
        // 2^retry_index > max / base for retry_index >= 128: always max.
        1u128
            .checked_shl(retry_index)
            .and_then(|factor| base.checked_mul(factor))
            .map_or(max, |d| d.min(max))
    };
    let cap = u64::try_from(cap).unwrap_or(u64::MAX);
    // Multiply-and-shift onto [0, cap]: random < 2^64, cap + 1 <= 2^64.
    let nanos = (u128::from(random) * (u128::from(cap) + 1)) >> 64;
    Duration::from_nanos(nanos as u64)
}

/// Retry budget (Envoy's `retry_budget`): a retry may start only while the
/// retries in flight are fewer than `max(min_concurrent, percent% of active
/// requests)`. It bounds the extra load retries add when a cluster is
/// failing, where a fixed attempt count per request would multiply it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryBudget {
    /// Share of active requests that may be retries, 0..=100 (above 100
    /// counts as 100).
    pub percent: u32,
    /// Retries allowed in flight however few requests are active.
    pub min_concurrent: u32,
}

impl Default for RetryBudget {
    /// Envoy's defaults: 20 %, at least 3.
    fn default() -> Self {
        RetryBudget {
            percent: 20,
            min_concurrent: 3,
        }
    }
}

impl RetryBudget {
    /// Whether one more retry may start, given the requests active on the
    /// cluster (including those being retried) and the retries in flight.
    pub fn allows(&self, active_requests: u32, active_retries: u32) -> bool {
        let share = u64::from(active_requests) * u64::from(self.percent.min(100)) / 100;
        u64::from(active_retries) < share.max(u64::from(self.min_concurrent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [RetryOn; 12] = [
        RetryOn::CONNECT_FAILURE,
        RetryOn::RESET,
        RetryOn::FIVE_XX,
        RetryOn::GATEWAY_ERROR,
        RetryOn::SERVICE_UNAVAILABLE,
        RetryOn::RETRIABLE_4XX,
        RetryOn::TIMEOUT,
        RetryOn::GRPC_CANCELLED,
        RetryOn::GRPC_DEADLINE_EXCEEDED,
        RetryOn::GRPC_INTERNAL,
        RetryOn::GRPC_RESOURCE_EXHAUSTED,
        RetryOn::GRPC_UNAVAILABLE,
    ];

    #[test]
    fn grpc_statuses_are_retried_only_by_their_own_names() {
        use RetryOn as R;
        assert_eq!(matching(Failure::Grpc(14)), [R::GRPC_UNAVAILABLE]);
        assert_eq!(matching(Failure::Grpc(1)), [R::GRPC_CANCELLED]);
        assert_eq!(matching(Failure::Grpc(4)), [R::GRPC_DEADLINE_EXCEEDED]);
        assert_eq!(matching(Failure::Grpc(8)), [R::GRPC_RESOURCE_EXHAUSTED]);
        assert_eq!(matching(Failure::Grpc(13)), [R::GRPC_INTERNAL]);
        // NOT_FOUND, PERMISSION_DENIED and the rest are answers, not faults.
        for code in [2, 3, 5, 7, 12, 16, 99] {
            assert!(matching(Failure::Grpc(code)).is_empty(), "{code}");
        }
        // And HTTP conditions never match a gRPC status.
        assert!(!R::FIVE_XX.retries(Failure::Grpc(14)));
    }

    #[test]
    fn parses_every_name_and_rejects_unknown() {
        for (name, want) in RetryOn::NAMES.iter().zip(ALL) {
            assert_eq!(RetryOn::parse(name), Some(want), "{name}");
            assert_eq!(want.names().collect::<Vec<_>>(), [*name]);
        }
        for bad in [
            "",
            "5XX",
            " 5xx",
            "4xx",
            "gateway_error",
            "retriable-4xx,",
            "502",
        ] {
            assert_eq!(RetryOn::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn parses_lists() {
        let set = RetryOn::parse_list("5xx, reset ,connect-failure").unwrap();
        assert_eq!(
            set,
            RetryOn::FIVE_XX
                .union(RetryOn::RESET)
                .union(RetryOn::CONNECT_FAILURE)
        );
        assert_eq!(
            set.names().collect::<Vec<_>>(),
            ["connect-failure", "reset", "5xx"]
        );
        assert_eq!(RetryOn::parse_list("5xx,,reset"), None);
        assert_eq!(RetryOn::parse_list("5xx,bogus"), None);
        assert_eq!(RetryOn::parse_list(""), None);
    }

    #[test]
    fn set_operations() {
        let all = ALL.iter().fold(RetryOn::default(), |a, b| a.union(*b));
        assert!(RetryOn::default().is_empty());
        assert!(!all.is_empty());
        for c in ALL {
            assert!(all.contains(c));
            assert!(!RetryOn::NONE.contains(c));
            assert!(c.contains(RetryOn::NONE));
        }
        let two = RetryOn::RESET.union(RetryOn::TIMEOUT);
        assert!(two.contains(RetryOn::RESET) && two.contains(RetryOn::TIMEOUT));
        assert!(!RetryOn::RESET.contains(two));
    }

    /// The conditions of `ALL` that retry `failure`.
    fn matching(failure: Failure) -> Vec<RetryOn> {
        ALL.into_iter().filter(|c| c.retries(failure)).collect()
    }

    #[test]
    fn status_mapping() {
        use RetryOn as R;
        assert_eq!(
            matching(Failure::Status(503)),
            [R::FIVE_XX, R::GATEWAY_ERROR, R::SERVICE_UNAVAILABLE]
        );
        assert_eq!(
            matching(Failure::Status(502)),
            [R::FIVE_XX, R::GATEWAY_ERROR]
        );
        assert_eq!(
            matching(Failure::Status(504)),
            [R::FIVE_XX, R::GATEWAY_ERROR]
        );
        assert_eq!(matching(Failure::Status(500)), [R::FIVE_XX]);
        assert_eq!(matching(Failure::Status(599)), [R::FIVE_XX]);
        assert_eq!(matching(Failure::Status(409)), [R::RETRIABLE_4XX]);
        for ok in [0, 200, 404, 429, 499, 600, u16::MAX] {
            assert!(matching(Failure::Status(ok)).is_empty(), "{ok}");
        }
        assert!(!RetryOn::NONE.retries(Failure::Status(503)));
    }

    #[test]
    fn failures_without_a_response() {
        use RetryOn as R;
        assert_eq!(
            matching(Failure::ConnectFailure),
            [R::CONNECT_FAILURE, R::FIVE_XX, R::GATEWAY_ERROR]
        );
        assert_eq!(
            matching(Failure::Reset),
            [R::RESET, R::FIVE_XX, R::GATEWAY_ERROR]
        );
        assert_eq!(
            matching(Failure::Timeout),
            [R::FIVE_XX, R::GATEWAY_ERROR, R::TIMEOUT]
        );
        assert!(!RetryOn::SERVICE_UNAVAILABLE.retries(Failure::ConnectFailure));
    }

    #[test]
    fn backoff_bounds() {
        let base = Duration::from_millis(25);
        let max = Duration::from_millis(250);
        for i in 0..4 {
            let cap = base * (1 << i);
            assert_eq!(backoff(i, base, max, 0), Duration::ZERO);
            assert_eq!(backoff(i, base, max, u64::MAX), cap, "{i}");
            let mid = backoff(i, base, max, u64::MAX / 2);
            assert!(
                mid.abs_diff(cap / 2) < Duration::from_micros(1),
                "{i} {mid:?}"
            );
        }
        // 25 * 16 = 400 > 250.
        assert_eq!(backoff(4, base, max, u64::MAX), max);
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for i in 0..200 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            assert!(backoff(i % 10, base, max, x) <= max);
        }
    }

    #[test]
    fn backoff_saturates() {
        let base = Duration::from_millis(25);
        let max = Duration::from_secs(1);
        for i in [30, 63, 64, 127, 128, 1000, u32::MAX] {
            assert_eq!(backoff(i, base, max, u64::MAX), max, "{i}");
        }
        assert_eq!(
            backoff(u32::MAX, Duration::MAX, Duration::MAX, u64::MAX),
            Duration::from_nanos(u64::MAX)
        );
        assert_eq!(backoff(5, Duration::ZERO, max, u64::MAX), Duration::ZERO);
        assert_eq!(backoff(5, base, Duration::ZERO, u64::MAX), Duration::ZERO);
    }

    #[test]
    fn budget_math() {
        let b = RetryBudget {
            percent: 20,
            min_concurrent: 3,
        };
        // Few requests: the floor of 3 rules.
        assert!(b.allows(0, 0));
        assert!(b.allows(10, 2));
        assert!(!b.allows(10, 3));
        // 100 active: 20 retries.
        assert!(b.allows(100, 19));
        assert!(!b.allows(100, 20));
        // 19 active: 3.8 rounds down to 3, the floor.
        assert!(!b.allows(19, 3));
        assert!(b.allows(u32::MAX, 858_993_458));
        assert!(!b.allows(u32::MAX, 858_993_459));
        let none = RetryBudget {
            percent: 0,
            min_concurrent: 0,
        };
        assert!(!none.allows(1000, 0));
        let over = RetryBudget {
            percent: 500,
            min_concurrent: 0,
        };
        assert!(over.allows(10, 9));
        assert!(!over.allows(10, 10));
        assert_eq!(RetryBudget::default(), b);
    }
}
