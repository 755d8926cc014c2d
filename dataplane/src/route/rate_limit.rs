//! Local rate limiting (route stage, sans-IO): owns the token bucket that
//! admits or refuses one request at a time, and how long a refused client
//! should wait.
//!
//! Arithmetic is integer and exact: tokens are held as nanotokens (1 token =
//! 10^9 nanotokens), the rate as nanotokens per second, and the sub-nanotoken
//! remainder of every refill is carried forward, so no admission is lost or
//! gained to rounding however often the bucket is polled. Only
//! [`TokenBucket::new`] converts the configured `f64` rate and burst.
//!
//! Time is an input (`now`); nothing here reads a clock. Nothing panics on
//! any input: a `now` earlier than one seen before counts as no time passed,
//! rates and bursts are clamped to representable values, and long idle
//! periods saturate at a full bucket. Nothing allocates.

use std::time::{Duration, Instant};

/// Nanotokens per token, and nanoseconds per second.
const GIGA: u64 = 1_000_000_000;

/// A token bucket refilled continuously at `rate` tokens/s up to `burst`
/// tokens; starts full.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Refill rate in nanotokens per second (>= 1).
    rate: u64,
    /// Capacity in nanotokens (>= 1 token).
    capacity: u64,
    /// Current fill in nanotokens (<= capacity).
    tokens: u64,
    /// Refill carried over: `elapsed_ns * rate` units not yet worth a whole
    /// nanotoken (< 10^9; 0 while full).
    carry: u64,
    /// Latest time seen.
    last: Instant,
}

impl TokenBucket {
    /// A full bucket refilling at `rate_per_sec` tokens per second (may be
    /// fractional, e.g. 500.5 for one shard's share of 1001/s over 2
    /// shards) holding up to `burst` tokens. A burst below 1 is raised to 1
    /// token; a fractional burst above 1 is kept exactly (50.5 admits 50 at
    /// once and the 51st after half a token's refill). A rate that is zero,
    /// negative or NaN becomes the smallest one (10^-9 token/s); values too
    /// large saturate (rate ~1.8e10/s, burst ~1.8e10 tokens).
    pub fn new(rate_per_sec: f64, burst: f64, now: Instant) -> TokenBucket {
        // `as` from f64 saturates and maps NaN to 0.
        let rate = ((rate_per_sec * GIGA as f64).round() as u64).max(1);
        let capacity = ((burst * GIGA as f64).round() as u64).max(GIGA);
        TokenBucket {
            rate,
            capacity,
            tokens: capacity,
            carry: 0,
            last: now,
        }
    }

    /// Takes one token. `Err(wait)` says how long until one is available
    /// (rounded up to the nanosecond; the caller rounds up to whole seconds
    /// for `Retry-After`). A refused attempt takes nothing.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= GIGA {
            self.tokens -= GIGA;
            return Ok(());
        }
        // Nanotokens missing, in refill units (nanotokens * 10^9), minus
        // what is already carried; the wait is that over the rate, rounded
        // up.
        let missing = u128::from(GIGA - self.tokens) * u128::from(GIGA) - u128::from(self.carry);
        let rate = u128::from(self.rate);
        let wait = missing.div_ceil(rate);
        Err(Duration::from_nanos(
            u64::try_from(wait).unwrap_or(u64::MAX),
        ))
    }

    /// Whole tokens available at the last time seen (for display).
    pub fn available(&self) -> u64 {
        self.tokens / GIGA
    }

    /// Adds the refill for the time since `last`.
    fn refill(&mut self, now: Instant) {
        let Some(elapsed) = now.checked_duration_since(self.last) else {
            // Time went backwards: treat as no time passed, keep `last`.
            return;
        };
        self.last = now;
        if self.tokens >= self.capacity {
            // Time spent full refills nothing.
            self.carry = 0;
            return;
        }
        // elapsed < 2^64 and rate < 2^64, so the product plus carry (< 10^9)
        // fits in u128; anything past ~584 years fills the bucket anyway.
        let elapsed = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let units = u128::from(elapsed) * u128::from(self.rate) + u128::from(self.carry);
        let added = units / u128::from(GIGA);
        let room = u128::from(self.capacity - self.tokens);
        if added >= room {
            self.tokens = self.capacity;
            self.carry = 0;
        } else {
            // added < room <= u64::MAX
            self.tokens += added as u64;
            self.carry = (units % u128::from(GIGA)) as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Takes until refused; returns how many were admitted.
    fn drain(b: &mut TokenBucket, now: Instant) -> u32 {
        let mut n = 0;
        while b.try_take(now).is_ok() {
            n += 1;
        }
        n
    }

    #[test]
    fn burst_admitted_at_once_then_refused() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 100.0, t0);
        assert_eq!(b.available(), 100);
        assert_eq!(drain(&mut b, t0), 100);
        assert_eq!(b.try_take(t0), Err(ms(100)));
        assert_eq!(b.try_take(t0 + ms(99)), Err(ms(1)));
        assert_eq!(b.try_take(t0 + ms(100)), Ok(()));
        assert!(b.try_take(t0 + ms(100)).is_err());
    }

    #[test]
    fn three_times_offered_load_admits_rate_times_time_plus_burst() {
        let t0 = Instant::now();
        let (rate, burst, secs, offered) = (1000u64, 100u64, 10u64, 3000u64);
        let mut b = TokenBucket::new(rate as f64, burst as f64, t0);
        let mut admitted = 0u64;
        for k in 0..offered * secs {
            let now = t0 + Duration::from_nanos(k * GIGA / offered);
            if b.try_take(now).is_ok() {
                admitted += 1;
            }
        }
        let want = rate * secs + burst;
        assert!(admitted.abs_diff(want) <= 1, "{admitted} vs {want}");
    }

    #[test]
    fn fractional_rate_is_exact_over_time() {
        let t0 = Instant::now();
        // One shard's share of 1001/s over 2 shards. (A burst of 1 would
        // lose refill to the cap: 1 ms polls see 1.001 tokens.)
        let mut b = TokenBucket::new(500.5, 2.0, t0);
        assert_eq!(drain(&mut b, t0), 2);
        let mut admitted = 0u64;
        // Poll every 1 ms (odd steps exercise the carried remainder).
        for k in 1..=20_000u64 {
            if b.try_take(t0 + ms(k)).is_ok() {
                admitted += 1;
            }
        }
        // 20 s at 500.5/s.
        assert!(admitted.abs_diff(10_010) <= 1, "{admitted}");

        // Slower than one per second: 0.25/s admits one every 4 s.
        let mut b = TokenBucket::new(0.25, 1.0, t0);
        assert_eq!(b.try_take(t0), Ok(()));
        assert_eq!(b.try_take(t0), Err(Duration::from_secs(4)));
        assert!(b.try_take(t0 + ms(3999)).is_err());
        assert_eq!(b.try_take(t0 + ms(4000)), Ok(()));
    }

    #[test]
    fn carried_remainder_loses_nothing_under_nanosecond_polling() {
        let t0 = Instant::now();
        // 1/3 token per second: each 1 ns poll adds 1/3 nanotoken.
        let mut b = TokenBucket::new(1.0 / 3.0, 1.0, t0);
        assert_eq!(b.try_take(t0), Ok(()));
        let Err(wait) = b.try_take(t0) else {
            panic!("empty")
        };
        for k in 1..10_000u64 {
            assert!(b.try_take(t0 + Duration::from_nanos(k)).is_err());
        }
        assert!(b.try_take(t0 + wait - Duration::from_nanos(1)).is_err());
        assert_eq!(b.try_take(t0 + wait), Ok(()));
    }

    #[test]
    fn fractional_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1.0, 0.2, t0);
        assert_eq!(drain(&mut b, t0), 1, "burst below 1 becomes 1");
        let mut b = TokenBucket::new(2.0, 2.5, t0);
        assert_eq!(drain(&mut b, t0), 2);
        // Half a token left: the next one needs a quarter second at 2/s.
        assert_eq!(b.try_take(t0), Err(ms(250)));
        // Refill caps at 2.5 tokens.
        assert_eq!(drain(&mut b, t0 + Duration::from_secs(60)), 2);
        assert_eq!(b.try_take(t0 + Duration::from_secs(60)), Err(ms(250)));
    }

    #[test]
    fn wait_duration_is_exact() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(3.0, 1.0, t0);
        assert_eq!(b.try_take(t0), Ok(()));
        // 1/3 s, rounded up to the nanosecond.
        assert_eq!(b.try_take(t0), Err(Duration::from_nanos(333_333_334)));
        let at = t0 + ms(100);
        let Err(wait) = b.try_take(at) else {
            panic!("empty")
        };
        assert_eq!(wait, Duration::from_nanos(233_333_334));
        assert!(b.try_take(at + wait - Duration::from_nanos(1)).is_err());
        assert_eq!(b.try_take(at + wait), Ok(()));
    }

    #[test]
    fn time_going_backwards_is_no_time() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(10);
        let mut b = TokenBucket::new(1.0, 1.0, later);
        assert_eq!(b.try_take(later), Ok(()));
        assert_eq!(b.try_take(t0), Err(Duration::from_secs(1)));
        // `last` did not move back: half a second after `later` is half a
        // token.
        assert_eq!(b.try_take(later + ms(500)), Err(ms(500)));
        assert_eq!(b.try_take(later + ms(1000)), Ok(()));
    }

    #[test]
    fn long_idle_and_extreme_settings_do_not_overflow() {
        let t0 = Instant::now();
        let year = Duration::from_secs(3600 * 24 * 365);
        let mut b = TokenBucket::new(1e9, 1e9, t0);
        assert_eq!(b.try_take(t0), Ok(()));
        assert_eq!(b.try_take(t0 + year * 100), Ok(()));
        assert_eq!(b.available(), 999_999_999);

        let mut huge = TokenBucket::new(f64::MAX, f64::INFINITY, t0);
        assert_eq!(huge.try_take(t0 + year * 1000), Ok(()));

        for rate in [0.0, -5.0, f64::NAN, f64::NEG_INFINITY] {
            let mut b = TokenBucket::new(rate, f64::NAN, t0);
            assert_eq!(b.try_take(t0), Ok(()));
            let Err(wait) = b.try_take(t0 + year) else {
                panic!("{rate}")
            };
            assert!(wait > year, "{rate} {wait:?}");
        }
    }
}
