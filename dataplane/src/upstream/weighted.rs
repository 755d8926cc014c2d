//! Smooth weighted round robin (sans-IO): which endpoint of a weighted
//! cluster gets the next request, with per-shard state.
//!
//! This is nginx's algorithm (`ngx_http_upstream_get_peer`): each pick adds
//! every usable endpoint's weight to its running `current` value, the
//! largest `current` wins (ties go to the lower index) and the winner gives
//! back the total weight of this pick. Starting from a reset, every `total`
//! picks give each endpoint exactly `weight` picks, and a heavy endpoint's
//! picks are spread out rather than bunched: `[5, 1, 1]` gives
//! `a a b a c a a`.
//!
//! No clock and no randomness: the sequence is fully determined by the
//! weights and the `usable` answers. Never panics on any input (the
//! arithmetic saturates, a length change resets the state).

/// Per-cluster smooth weighted round-robin state (per shard).
#[derive(Debug, Default, Clone)]
pub struct SmoothWeighted {
    current: Vec<i64>,
}

impl SmoothWeighted {
    /// Index of the next endpoint given per-endpoint weights (same order
    /// every call; when `weights.len()` changes, the state resets). Weight 0
    /// is never picked. `usable(i)` false excludes endpoint `i` for this
    /// pick (e.g. ejected): it neither gains nor gives back weight, so the
    /// proportions among the others are kept. `None` if no endpoint with
    /// weight > 0 is usable.
    pub fn pick(&mut self, weights: &[u32], usable: impl Fn(usize) -> bool) -> Option<usize> {
        if self.current.len() != weights.len() {
            self.current.clear();
            self.current.resize(weights.len(), 0);
        }
        let mut total: i64 = 0;
        let mut best: Option<(usize, i64)> = None;
        for (i, (&weight, current)) in weights.iter().zip(self.current.iter_mut()).enumerate() {
            if weight == 0 || !usable(i) {
                continue;
            }
            let weight = i64::from(weight);
            total = total.saturating_add(weight);
            *current = current.saturating_add(weight);
            if best.is_none_or(|(_, value)| *current > value) {
                best = Some((i, *current));
            }
        }
        let (index, _) = best?;
        self.current[index] = self.current[index].saturating_sub(total);
        Some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(sw: &mut SmoothWeighted, weights: &[u32], picks: usize) -> Vec<usize> {
        let mut counts = vec![0; weights.len()];
        for _ in 0..picks {
            counts[sw.pick(weights, |_| true).unwrap()] += 1;
        }
        counts
    }

    #[test]
    fn interleaves_like_nginx() {
        let mut sw = SmoothWeighted::default();
        let picks: Vec<usize> = (0..14)
            .map(|_| sw.pick(&[5, 1, 1], |_| true).unwrap())
            .collect();
        // a a b a c a a, twice: the state is back to zero after each cycle.
        let cycle = [0, 0, 1, 0, 2, 0, 0];
        assert_eq!(picks[..7], cycle);
        assert_eq!(picks[7..], cycle);
        // Within a cycle `a` never runs longer than two in a row.
        let longest = picks[..7]
            .split(|&p| p != 0)
            .map(<[usize]>::len)
            .max()
            .unwrap();
        assert_eq!(longest, 2);
    }

    #[test]
    fn proportions_are_exact() {
        let mut sw = SmoothWeighted::default();
        assert_eq!(counts(&mut sw, &[3, 2, 1], 6000), [3000, 2000, 1000]);
    }

    #[test]
    fn zero_weight_is_never_picked() {
        let mut sw = SmoothWeighted::default();
        assert_eq!(counts(&mut sw, &[0, 3, 0, 1], 400), [0, 300, 0, 100]);
    }

    #[test]
    fn unusable_is_skipped_and_the_rest_keep_their_proportions() {
        let weights = [3, 2, 1];
        let mut sw = SmoothWeighted::default();
        let mut got = [0usize; 3];
        for _ in 0..3000 {
            got[sw.pick(&weights, |i| i != 0).unwrap()] += 1;
        }
        assert_eq!(got, [0, 2000, 1000]);
        // Back in rotation, the ejected endpoint gets its share again.
        let got = counts(&mut sw, &weights, 6000);
        for (got, want) in got.iter().zip([3000, 2000, 1000]) {
            assert!(got.abs_diff(want) <= 3, "{got} vs {want}");
        }
    }

    #[test]
    fn nothing_to_pick_is_none() {
        let mut sw = SmoothWeighted::default();
        assert_eq!(sw.pick(&[], |_| true), None);
        assert_eq!(sw.pick(&[0, 0], |_| true), None);
        assert_eq!(sw.pick(&[1, 2], |_| false), None);
        assert_eq!(sw.pick(&[7], |_| true), Some(0));
    }

    #[test]
    fn length_change_resets_the_state() {
        let mut sw = SmoothWeighted::default();
        sw.pick(&[1, 1, 1], |_| true);
        sw.pick(&[5], |_| true);
        sw.pick(&[], |_| true);
        let mut fresh = SmoothWeighted::default();
        for _ in 0..10 {
            assert_eq!(sw.pick(&[2, 3], |_| true), fresh.pick(&[2, 3], |_| true));
        }
    }

    #[test]
    fn extreme_weights_do_not_overflow() {
        let mut sw = SmoothWeighted::default();
        let weights = [u32::MAX, u32::MAX, 1, u32::MAX];
        for n in 0..10_000usize {
            // Flapping usability lets `current` drift; it must saturate.
            assert!(sw.pick(&weights, |i| (n + i) % 3 != 0).is_some());
        }
        let got = counts(&mut sw, &[u32::MAX, u32::MAX], 1000);
        assert_eq!(got.iter().sum::<usize>(), 1000);
    }
}
