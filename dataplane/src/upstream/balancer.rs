//! Load balancing (sans-IO): which endpoint of a cluster gets the next
//! request. Round robin and least request (power of two choices over a
//! per-endpoint cost: requests in flight on this shard, weighted by a
//! peak-sensitive latency average, [`PeakEwma`]); randomness comes from a
//! seeded [`XorShift`] and time from the caller, so every policy is
//! deterministic under test.

use std::time::{Duration, Instant};

/// Per-shard round-robin cursors, one per cluster of the current snapshot.
#[derive(Debug, Default)]
pub struct RoundRobin {
    cursors: Vec<usize>,
}

impl RoundRobin {
    /// Resets the cursors for a snapshot with `clusters` clusters.
    pub fn reset(&mut self, clusters: usize) {
        self.cursors.clear();
        self.cursors.resize(clusters, 0);
    }

    /// The index of the next endpoint of cluster `cluster` among `endpoints`
    /// (`None` when the cluster has no endpoint). `start` offsets the first
    /// pick so that shards do not all begin at endpoint 0.
    pub fn pick(&mut self, cluster: usize, endpoints: usize, start: usize) -> Option<usize> {
        if endpoints == 0 {
            return None;
        }
        if cluster >= self.cursors.len() {
            self.cursors.resize(cluster + 1, 0);
        }
        let cursor = &mut self.cursors[cluster];
        let index = (*cursor + start) % endpoints;
        *cursor = cursor.wrapping_add(1);
        Some(index)
    }
}

/// A small, fast, seeded PRNG (xorshift64*): randomness as an input.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator from `seed` (0 is replaced: xorshift needs a non-zero state).
    pub fn new(seed: u64) -> XorShift {
        XorShift(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }
}

/// Power of two choices: two distinct random endpoints of `n`, the one with
/// the lower cost (`cost(i)`: requests in flight, or [`PeakEwma::cost`])
/// wins; ties go to the first draw. `None` when `n == 0`.
pub fn least_request<T: PartialOrd>(
    n: usize,
    rng: &mut XorShift,
    in_flight: impl Fn(usize) -> T,
) -> Option<usize> {
    match n {
        0 => None,
        1 => Some(0),
        _ => {
            let a = rng.below(n);
            let b = (a + 1 + rng.below(n - 1)) % n;
            Some(if in_flight(b) < in_flight(a) { b } else { a })
        }
    }
}

/// A peak-sensitive, exponentially weighted moving average of an
/// endpoint's latency (the PeakEWMA of Finagle and linkerd): a sample above
/// the average replaces it at once (a slow endpoint is noticed after one
/// slow response), a lower one moves it by `1 - e^(-Δt/τ)`, and the
/// average decays toward zero while no sample arrives, so an endpoint
/// avoided for being slow is tried again after a while (500 ms decays to
/// under 1 ms in about 6 τ).
#[derive(Debug, Clone, Copy, Default)]
pub struct PeakEwma {
    micros: f64,
    at: Option<Instant>,
}

impl PeakEwma {
    /// The time constant τ.
    pub const DECAY: Duration = Duration::from_secs(2);

    /// Records one latency sample taken at `now`.
    pub fn observe(&mut self, sample: Duration, now: Instant) {
        let sample = sample.as_secs_f64() * 1e6;
        let current = self.estimate(now);
        self.micros = if sample > current {
            sample
        } else {
            let w = self.weight(now);
            current * w + sample * (1.0 - w)
        };
        self.at = Some(now);
    }

    /// The average at `now`, µs (0 before the first sample).
    pub fn estimate(&self, now: Instant) -> f64 {
        self.micros * self.weight(now)
    }

    /// `e^(-Δt/τ)` since the last sample.
    fn weight(&self, now: Instant) -> f64 {
        match self.at {
            Some(at) => {
                let dt = now.saturating_duration_since(at).as_secs_f64();
                (-dt / Self::DECAY.as_secs_f64()).exp()
            }
            None => 0.0,
        }
    }

    /// Latencies below this count as this much: among endpoints that are
    /// all fast, requests in flight alone decide (plain least request), and
    /// a connect or a cold cache cannot starve an endpoint at low load.
    pub const FLOOR: Duration = Duration::from_millis(5);

    /// The balancing cost with `in_flight` requests outstanding: the
    /// expected wait behind them, (in flight + 1) × max(estimate, FLOOR).
    pub fn cost(&self, in_flight: u32, now: Instant) -> f64 {
        let floor = Self::FLOOR.as_secs_f64() * 1e6;
        (f64::from(in_flight) + 1.0) * self.estimate(now).max(floor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_ewma_jumps_up_decays_down_and_forgets() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut e = PeakEwma::default();
        assert_eq!(e.estimate(t0), 0.0);
        e.observe(ms(1), t0);
        assert!((e.estimate(t0) - 1000.0).abs() < 1e-6);
        // A peak replaces the average at once.
        e.observe(ms(500), t0 + ms(10));
        assert!(e.estimate(t0 + ms(10)) >= 499_000.0);
        // Fast samples pull it down gradually.
        let mut t = t0 + ms(10);
        for _ in 0..100 {
            t += ms(20);
            e.observe(ms(1), t);
        }
        let after = e.estimate(t);
        assert!(after < 100_000.0 && after > 1000.0, "{after}");
        // Left alone, it decays toward zero (≈ e^-6 after 6 τ).
        let mut slow = PeakEwma::default();
        slow.observe(ms(500), t0);
        let later = slow.estimate(t0 + PeakEwma::DECAY * 6);
        assert!(later < 500_000.0 * 0.003, "{later}");
        // Cost: latency (at least the floor) times (in flight + 1).
        assert_eq!(PeakEwma::default().cost(0, t0), 5000.0);
        assert_eq!(PeakEwma::default().cost(2, t0), 15000.0);
        assert_eq!(e.cost(0, t), after.max(5000.0));
    }

    /// One endpoint answers in 500 ms, three in 1 ms; ten requests at a
    /// time. Cost-based P2C sends the slow one a small share, in-flight
    /// P2C alone does not (ties at 0 or 1 in flight go to either).
    #[test]
    fn latency_aware_least_request_starves_a_slow_endpoint() {
        let t0 = Instant::now();
        let service = [500u64, 1, 1, 1];
        let run = |use_latency: bool| {
            let mut rng = XorShift::new(3);
            let mut ewma = [PeakEwma::default(); 4];
            let mut in_flight = [0u32; 4];
            // (finish time ms, endpoint, start ms)
            let mut outstanding: Vec<(u64, usize, u64)> = Vec::new();
            let mut served = [0usize; 4];
            for now_ms in 0..20_000u64 {
                let now = t0 + Duration::from_millis(now_ms);
                outstanding.retain(|&(end, i, start)| {
                    if end <= now_ms {
                        in_flight[i] -= 1;
                        ewma[i].observe(Duration::from_millis(end - start), now);
                        false
                    } else {
                        true
                    }
                });
                while outstanding.len() < 10 {
                    let i = if use_latency {
                        least_request(4, &mut rng, |i| ewma[i].cost(in_flight[i], now))
                    } else {
                        least_request(4, &mut rng, |i| in_flight[i])
                    }
                    .unwrap();
                    in_flight[i] += 1;
                    served[i] += 1;
                    outstanding.push((now_ms + service[i], i, now_ms));
                }
            }
            served
        };
        let with = run(true);
        let without = run(false);
        let share = |s: [usize; 4]| s[0] as f64 / s.iter().sum::<usize>() as f64;
        assert!(share(with) < 0.001, "latency-aware: {with:?}");
        assert!(
            share(with) * 10.0 < share(without),
            "{with:?} vs {without:?}"
        );
        // ...but the slow endpoint is still probed now and then.
        assert!(with[0] >= 2, "{with:?}");
    }

    #[test]
    fn least_request_avoids_the_busy_endpoint_and_covers_all() {
        let mut rng = XorShift::new(7);
        let busy = [0u32, 10, 0, 0];
        let mut counts = [0usize; 4];
        for _ in 0..4000 {
            counts[least_request(4, &mut rng, |i| busy[i]).unwrap()] += 1;
        }
        // Endpoint 1 wins only when drawn with... nothing: it loses every
        // comparison, and two distinct endpoints are always drawn.
        assert_eq!(counts[1], 0, "{counts:?}");
        for i in [0, 2, 3] {
            assert!(counts[i] > 1000, "{counts:?}");
        }
        assert_eq!(least_request(0, &mut rng, |_| 0), None);
        assert_eq!(least_request(1, &mut rng, |_| 9), Some(0));
    }

    /// Simulated skewed latency: endpoint 0 takes 10 ticks per request, the
    /// others 1. P2C keeps in-flight counts close together, so the slow
    /// endpoint gets far fewer requests and no endpoint piles up work.
    #[test]
    fn least_request_keeps_in_flight_balanced_under_skewed_latency() {
        let mut rng = XorShift::new(42);
        let service = [10u32, 1, 1, 1];
        let mut in_flight = [0u32; 4];
        // Remaining ticks of each outstanding request, per endpoint.
        let mut outstanding: Vec<Vec<u32>> = vec![Vec::new(); 4];
        let mut served = [0usize; 4];
        let mut max_in_flight = [0u32; 4];
        for _tick in 0..20_000 {
            // Four new requests per tick.
            for _ in 0..4 {
                let i = least_request(4, &mut rng, |i| in_flight[i]).unwrap();
                in_flight[i] += 1;
                outstanding[i].push(service[i]);
                served[i] += 1;
                max_in_flight[i] = max_in_flight[i].max(in_flight[i]);
            }
            for (i, reqs) in outstanding.iter_mut().enumerate() {
                for r in reqs.iter_mut() {
                    *r -= 1;
                }
                let before = reqs.len();
                reqs.retain(|r| *r > 0);
                in_flight[i] -= (before - reqs.len()) as u32;
            }
        }
        assert!(
            served[0] * 2 < served[1],
            "slow endpoint should get far less: {served:?}"
        );
        let max = *max_in_flight.iter().max().unwrap();
        assert!(
            max <= 8,
            "in-flight stays bounded and balanced: {max_in_flight:?}"
        );
    }

    #[test]
    fn xorshift_is_seeded_and_covers_the_range() {
        let mut a = XorShift::new(1);
        let mut b = XorShift::new(1);
        assert_eq!(a.next_u64(), b.next_u64());
        let mut seen = [false; 5];
        for _ in 0..100 {
            seen[a.below(5)] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn cycles_through_endpoints_evenly() {
        let mut rr = RoundRobin::default();
        rr.reset(2);
        let mut counts = [0usize; 3];
        for _ in 0..300 {
            counts[rr.pick(1, 3, 0).unwrap()] += 1;
        }
        assert_eq!(counts, [100, 100, 100]);
    }

    #[test]
    fn clusters_have_independent_cursors_and_start_offsets() {
        let mut rr = RoundRobin::default();
        rr.reset(2);
        assert_eq!(rr.pick(0, 2, 1), Some(1));
        assert_eq!(rr.pick(1, 2, 0), Some(0));
        assert_eq!(rr.pick(0, 2, 1), Some(0));
        assert_eq!(rr.pick(0, 0, 0), None);
    }
}
