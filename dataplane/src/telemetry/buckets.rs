//! Fixed-bound latency buckets: what Prometheus histograms are made of.
//!
//! One [`Buckets`] is 26 counters and a sum (216 bytes), cheap enough for
//! every route and cluster of every shard, and recording is one search in a
//! sorted table of 24 bounds. The bounds run from 50 µs to 60 s, dense
//! below 10 ms where a gateway's own time lives.

/// Upper bounds of the buckets, µs (the last bucket, `+Inf`, is implied).
pub const BOUNDS_US: [u64; 24] = [
    50, 100, 200, 300, 500, 750, 1_000, 1_500, 2_000, 3_000, 5_000, 7_500, 10_000, 25_000, 50_000,
    100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000, 60_000_000,
];

/// Counts of samples per bucket (not cumulative) and their sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buckets {
    /// `counts[i]`: samples ≤ `BOUNDS_US[i]` and above the bound before;
    /// the last slot counts samples above every bound.
    pub counts: [u64; BOUNDS_US.len() + 1],
    /// Sum of every sample, µs.
    pub sum_us: u64,
}

impl Default for Buckets {
    fn default() -> Buckets {
        Buckets {
            counts: [0; BOUNDS_US.len() + 1],
            sum_us: 0,
        }
    }
}

impl Buckets {
    /// Records one sample of `us` microseconds.
    pub fn record(&mut self, us: u64) {
        let i = BOUNDS_US.partition_point(|&b| b < us);
        self.counts[i] += 1;
        self.sum_us = self.sum_us.saturating_add(us);
    }

    /// Records `n` samples of `us` microseconds (moving an HDR
    /// histogram's counts into these buckets).
    pub fn record_n(&mut self, us: u64, n: u64) {
        let i = BOUNDS_US.partition_point(|&b| b < us);
        self.counts[i] += n;
        self.sum_us = self.sum_us.saturating_add(us.saturating_mul(n));
    }

    /// How many samples were recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Adds `other` (merging shards).
    pub fn add(&mut self, other: &Buckets) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
    }

    /// What was recorded since `earlier` (a copy of this one, taken before).
    pub fn since(&self, earlier: &Buckets) -> Buckets {
        let mut d = *self;
        for (a, b) in d.counts.iter_mut().zip(earlier.counts) {
            *a = a.saturating_sub(b);
        }
        d.sum_us = d.sum_us.saturating_sub(earlier.sum_us);
        d
    }

    /// The cumulative count at each bound, then the total (`+Inf`).
    pub fn cumulative(&self) -> impl Iterator<Item = (Option<u64>, u64)> + '_ {
        let mut running = 0;
        self.counts.iter().enumerate().map(move |(i, c)| {
            running += c;
            (BOUNDS_US.get(i).copied(), running)
        })
    }

    /// An estimate of quantile `q` (0..=1), µs, interpolating linearly
    /// inside the bucket it falls in (as PromQL's `histogram_quantile`
    /// does); `None` when empty. Samples above 60 s count as 60 s.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).max(1.0);
        let mut below = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            if c > 0 && (below + c) as f64 >= rank {
                let low = if i == 0 { 0 } else { BOUNDS_US[i - 1] };
                let Some(&high) = BOUNDS_US.get(i) else {
                    return Some(low);
                };
                let within = (rank - below as f64) / c as f64;
                return Some(low + ((high - low) as f64 * within).round() as u64);
            }
            below += c;
        }
        BOUNDS_US.last().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_land_in_the_bucket_of_their_upper_bound() {
        let mut b = Buckets::default();
        b.record(0);
        b.record(50); // ≤ 50: first bucket
        b.record(51);
        b.record(60_000_000);
        b.record(60_000_001); // +Inf
        assert_eq!(b.counts[0], 2);
        assert_eq!(b.counts[1], 1);
        assert_eq!(b.counts[BOUNDS_US.len() - 1], 1);
        assert_eq!(b.counts[BOUNDS_US.len()], 1);
        assert_eq!(b.count(), 5);
        assert_eq!(b.sum_us, 50 + 51 + 60_000_000 + 60_000_001);
        let cumulative: Vec<_> = b.cumulative().collect();
        assert_eq!(cumulative[0], (Some(50), 2));
        assert_eq!(*cumulative.last().unwrap(), (None, 5));
    }

    #[test]
    fn bounds_are_increasing_and_dense_below_ten_ms() {
        assert!(BOUNDS_US.windows(2).all(|w| w[0] < w[1]));
        assert!(BOUNDS_US.iter().filter(|&&b| b <= 10_000).count() >= 12);
    }

    #[test]
    fn quantiles_interpolate_inside_a_bucket() {
        let mut b = Buckets::default();
        assert_eq!(b.quantile(0.5), None);
        for _ in 0..100 {
            b.record(120); // bucket (100, 200]
        }
        let p50 = b.quantile(0.5).unwrap();
        assert!((100..=200).contains(&p50), "{p50}");
        b.record(5_000_000);
        assert_eq!(b.quantile(1.0), Some(5_000_000));
        let mut over = Buckets::default();
        over.record(u64::MAX);
        assert_eq!(over.quantile(0.99), Some(60_000_000));
    }

    #[test]
    fn since_and_add_are_inverse() {
        let mut a = Buckets::default();
        a.record(10);
        let before = a;
        a.record(7_000);
        let mut d = a.since(&before);
        assert_eq!(d.count(), 1);
        d.add(&before);
        assert_eq!(d, a);
    }
}
