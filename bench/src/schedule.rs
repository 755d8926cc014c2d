//! Load shape, sans-IO: how connections and requests are split over
//! threads, and when each request of an open-loop run is due.
//!
//! Open loop (`--rate R`): each of the `C` connections sends at `R / C`
//! requests per second, connection `i` offset by `i / R` so the whole run is
//! an even stream of one request every `1 / R`. Request `k` of a connection
//! is *intended* at `offset + k · interval`; when a slow response makes a
//! connection late, the next request goes out at once and its latency still
//! counts from its intended time. That is the coordinated-omission
//! correction (as in wrk2): a stalled server shows up as the whole backlog
//! of late requests, not as one slow sample.
//!
//! Times are offsets from the run's start, so the schedule is pure and
//! tested without a clock.

use std::time::Duration;

/// Share `i` of `total` split into `parts` near-equal shares (the first
/// `total % parts` shares get one more).
pub fn share(total: usize, parts: usize, i: usize) -> usize {
    debug_assert!(parts > 0 && i < parts);
    total / parts + usize::from(i < total % parts)
}

/// Open-loop schedule of one connection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    offset_ns: f64,
    interval_ns: f64,
}

impl Schedule {
    /// Schedule of connection `index` (over all threads) of `connections`,
    /// at a total of `rate` requests per second.
    pub fn new(rate: f64, connections: usize, index: usize) -> Schedule {
        let per_conn = rate / connections as f64;
        Schedule {
            offset_ns: index as f64 * 1e9 / rate,
            interval_ns: 1e9 / per_conn,
        }
    }

    /// When request `k` (from 0) is intended, from the start of the run.
    pub fn intended(&self, k: u64) -> Duration {
        // Multiply rather than add up intervals, so rounding does not drift
        // over a long run (f64 holds nanoseconds exactly for ~100 days).
        nanos(self.offset_ns + self.interval_ns * k as f64)
    }
}

fn nanos(ns: f64) -> Duration {
    // Saturating float-to-int cast: never panics.
    Duration::from_nanos(ns.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up() {
        for total in 0..50 {
            for parts in 1..7 {
                let sum: usize = (0..parts).map(|i| share(total, parts, i)).sum();
                assert_eq!(sum, total);
                let max = (0..parts).map(|i| share(total, parts, i)).max().unwrap();
                let min = (0..parts).map(|i| share(total, parts, i)).min().unwrap();
                assert!(max - min <= 1);
            }
        }
    }

    #[test]
    fn connections_interleave_into_an_even_stream() {
        // 1000 rps over 4 connections: one request every 1 ms overall.
        let scheds: Vec<_> = (0..4).map(|i| Schedule::new(1000.0, 4, i)).collect();
        assert_eq!(
            scheds[0].intended(1) - scheds[0].intended(0),
            Duration::from_millis(4)
        );
        let mut all: Vec<Duration> = scheds
            .iter()
            .flat_map(|s| (0..25).map(move |k| s.intended(k)))
            .collect();
        all.sort();
        for (n, t) in all.iter().enumerate() {
            let want = Duration::from_millis(n as u64);
            let diff = t.abs_diff(want);
            assert!(diff < Duration::from_micros(1), "{n}: {t:?}");
        }
    }

    #[test]
    fn no_drift_over_long_runs() {
        let s = Schedule::new(3.0, 1, 0); // interval 333.333… ms
        let t = s.intended(3_000_000);
        assert!(t.abs_diff(Duration::from_secs(1_000_000)) < Duration::from_millis(1));
    }

    #[test]
    fn requests_within_a_duration() {
        // What a run of `d` sends: the requests intended before its end.
        let within = |s: &Schedule, d: Duration| (0..).take_while(|&k| s.intended(k) < d).count();
        let s = Schedule::new(100.0, 1, 0); // every 10 ms from 0
        assert_eq!(within(&s, Duration::from_secs(1)), 100);
        assert_eq!(within(&s, Duration::from_millis(1001)), 101);
        let s = Schedule::new(100.0, 2, 1); // every 20 ms from 10 ms
        assert_eq!(s.intended(0), Duration::from_millis(10));
        assert_eq!(s.intended(1), Duration::from_millis(30));
        assert_eq!(within(&s, Duration::from_secs(1)), 50);
        assert_eq!(within(&s, Duration::from_millis(5)), 0);
    }
}
