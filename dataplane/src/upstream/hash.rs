//! Consistent hashing (sans-IO) for the `ring_hash` and `maglev` policies:
//! the stable request-key hash [`hash_key`], the Ketama-style [`RingHash`]
//! and the [`Maglev`] lookup table. Both structures are built once per
//! cluster when a snapshot is compiled and then only read per request.
//!
//! An endpoint's place in either structure comes from its address (its
//! `Display` form, `10.0.0.1:8080` or `[::1]:8080`), never from its index,
//! so an endpoint keeps its keys when others come or go. On the ring this
//! is exact as long as the points per unit of weight stay the same (see
//! [`RingHash::build`]): removing an endpoint moves only its own keys,
//! adding one moves only keys to it. Maglev moves a few percent more
//! (Eisenbud et al., NSDI 2016, §3.4) in exchange for an even spread and
//! O(1) picks.
//!
//! Builds and picks are deterministic (no clock, no randomness: the request
//! key is the input), and never panic on any input: zero or mismatched
//! weights, absurd sizes and "nothing usable" all have defined answers.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt::Write;
use std::net::SocketAddr;

/// A stable 64-bit hash of bytes (same value in every process and version):
/// FNV-1a 64 followed by the murmur3 `fmix64` finalizer, which spreads
/// FNV's weak low bits over the whole word. Used for request keys (header
/// value, cookie value, client IP bytes) and for placing endpoints.
pub fn hash_key(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    fmix64(h)
}

/// murmur3's 64-bit finalizer: a bijection with full avalanche.
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

/// The weight of endpoint `i`: all 1 when `weights` is empty, 0 for an
/// endpoint past the end of a non-empty (mismatched) `weights`.
fn weight_at(weights: &[u32], i: usize) -> u32 {
    if weights.is_empty() {
        1
    } else {
        weights.get(i).copied().unwrap_or(0)
    }
}

/// How many endpoints can be indexed: indices are stored as `u32`, and
/// `u32::MAX` is kept free as Maglev's empty-slot marker.
fn indexable(endpoints: &[SocketAddr]) -> usize {
    endpoints.len().min(u32::MAX as usize)
}

/// The first usable endpoint of `order`; after `members` misses, checks
/// once whether any member is usable at all, so a pick with nothing usable
/// costs O(members) rather than a full walk.
fn first_usable(
    order: impl Iterator<Item = u32>,
    members: &[u32],
    usable: impl Fn(usize) -> bool,
) -> Option<usize> {
    for (step, e) in order.enumerate() {
        let e = e as usize;
        if usable(e) {
            return Some(e);
        }
        if step == members.len() && !members.iter().any(|&m| usable(m as usize)) {
            return None;
        }
    }
    None
}

/// Ketama-style ring: each endpoint gets points proportional to its weight
/// (`hash_key` of `"{addr}_{i}"`), the ring sorted by point.
#[derive(Debug, Clone)]
pub struct RingHash {
    /// `(point, endpoint index)`, sorted.
    points: Vec<(u64, u32)>,
    /// Endpoints with at least one point.
    members: Vec<u32>,
}

/// Points per unit of weight are `2^shift`; this is the lowest shift.
const MIN_SHIFT: i32 = -100;

/// Points for `weight` at `2^shift` points per unit, rounded up so that
/// every endpoint with weight gets at least one point.
fn ring_points(weight: u32, shift: i32) -> u128 {
    let weight = u128::from(weight);
    if weight == 0 {
        0
    } else if shift >= 0 {
        weight << shift
    } else {
        let s = shift.unsigned_abs();
        (weight + (1u128 << s) - 1) >> s
    }
}

impl RingHash {
    /// The default lower bound on the number of points.
    pub const DEFAULT_MIN_RING_SIZE: usize = 1024;
    /// The upper bound on the number of points (exceeded only when more
    /// endpoints than this have weight: each still gets one point).
    pub const MAX_RING_SIZE: usize = 1 << 20;

    /// The ring of `endpoints` with `weights` (same length; empty means all
    /// 1; a weight of 0, or a missing one, gets no points).
    ///
    /// Each unit of weight gets `2^k` points (k may be negative, rounding
    /// up), with the smallest `k` that makes the total weight times `2^k`
    /// at least `min_ring_size` (taken as at least 1), lowered again if
    /// needed to stay within [`Self::MAX_RING_SIZE`] (the cap wins over the
    /// minimum). So the ring has from `min_ring_size` to about twice that
    /// many points (plus under one per endpoint from rounding up). Because
    /// `k` moves in power-of-two steps rather than fitting exactly, it
    /// depends only on which power-of-two band the total weight is in:
    /// with the default minimum, 4 to 7 equal endpoints all get 256 points
    /// each. While `k` stays, the other endpoints keep exactly their points
    /// when one comes or goes, and only that endpoint's keys move.
    pub fn build(endpoints: &[SocketAddr], weights: &[u32], min_ring_size: usize) -> RingHash {
        let n = indexable(endpoints);
        let total: u128 = (0..n).map(|i| u128::from(weight_at(weights, i))).sum();
        if total == 0 {
            return RingHash {
                points: Vec::new(),
                members: Vec::new(),
            };
        }
        let max = Self::MAX_RING_SIZE as u128;
        let target = min_ring_size.clamp(1, Self::MAX_RING_SIZE) as u128;
        // Smallest shift with total * 2^shift >= target (total >= 1 and
        // target <= 2^20 bound it to MIN_SHIFT..=20).
        let mut shift = 0;
        if total >= target {
            while shift > MIN_SHIFT && total >= target << (1 - shift) {
                shift -= 1;
            }
        } else {
            while total << shift < target {
                shift += 1;
            }
        }
        let size = |shift| -> u128 {
            (0..n)
                .map(|i| ring_points(weight_at(weights, i), shift))
                .sum()
        };
        while shift > MIN_SHIFT && size(shift) > max {
            shift -= 1;
        }

        let mut points = Vec::with_capacity(size(shift).min(max) as usize);
        let mut members = Vec::new();
        let mut key = String::new();
        for (i, addr) in endpoints.iter().enumerate().take(n) {
            let count = ring_points(weight_at(weights, i), shift);
            if count == 0 {
                continue;
            }
            members.push(i as u32);
            for p in 0..count {
                key.clear();
                // Writing to a String cannot fail.
                let _ = write!(key, "{addr}_{p}");
                points.push((hash_key(key.as_bytes()), i as u32));
            }
        }
        points.sort_unstable();
        RingHash { points, members }
    }

    /// The endpoint of the first point at or after `hash` (wrapping) whose
    /// endpoint is `usable`; `None` if the ring is empty or none usable.
    pub fn pick(&self, hash: u64, usable: impl Fn(usize) -> bool) -> Option<usize> {
        let start = self.points.partition_point(|&(point, _)| point < hash);
        let (before, after) = self.points.split_at(start);
        let order = after.iter().chain(before).map(|&(_, e)| e);
        first_usable(order, &self.members, usable)
    }

    /// The number of points on the ring.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether the ring has no points (no endpoint with weight).
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }
}

/// Maglev lookup table (Eisenbud et al., NSDI 2016): each endpoint's
/// preference list is a permutation of the slots, offset and skip taken
/// from two hashes of its address; endpoints take turns claiming their
/// next free preferred slot until the prime-sized table is full. Weighted
/// as Envoy does: per round, an endpoint takes `weight / max weight` turns.
#[derive(Debug, Clone)]
pub struct Maglev {
    /// Endpoint index per slot.
    table: Vec<u32>,
    /// Endpoints owning at least one slot.
    members: Vec<u32>,
}

/// An endpoint while the table is being filled.
struct Filler {
    index: u32,
    weight: u64,
    /// The next slot of its permutation.
    slot: u64,
    skip: u64,
    turns: u64,
}

fn is_prime(n: usize) -> bool {
    if n < 4 {
        return n >= 2;
    }
    if n.is_multiple_of(2) {
        return false;
    }
    let mut d = 3;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

/// The first prime at or above `n`.
fn prime_at_least(mut n: usize) -> usize {
    while !is_prime(n) {
        n += 1;
    }
    n
}

impl Maglev {
    /// The default table size (prime).
    pub const DEFAULT_TABLE_SIZE: usize = 65537;
    /// The largest table size (prime, Envoy's limit): larger requests are
    /// clamped to it.
    pub const MAX_TABLE_SIZE: usize = 5_000_011;

    /// The table for `endpoints` with `weights` (same length; empty means
    /// all 1; a weight of 0, or a missing one, gets no slots). The size is
    /// the first prime at or above `table_size`, within
    /// `2..=`[`Self::MAX_TABLE_SIZE`]; it should be well above the endpoint
    /// count (the paper suggests 100x) for an even spread. Turn order within
    /// a round follows the address hashes, not the slice order, so the same
    /// set of endpoints gives the same table in any order.
    pub fn build(endpoints: &[SocketAddr], weights: &[u32], table_size: usize) -> Maglev {
        let size = prime_at_least(table_size.clamp(2, Self::MAX_TABLE_SIZE));
        let m = size as u64;
        let mut key = String::new();
        let mut fillers: Vec<(u64, Filler)> = Vec::new();
        for (i, addr) in endpoints.iter().enumerate().take(indexable(endpoints)) {
            let weight = weight_at(weights, i);
            if weight == 0 {
                continue;
            }
            key.clear();
            // Writing to a String cannot fail.
            let _ = write!(key, "{addr}");
            let h1 = hash_key(key.as_bytes());
            let h2 = fmix64(h1 ^ 0x9e37_79b9_7f4a_7c15);
            let filler = Filler {
                index: i as u32,
                weight: u64::from(weight),
                slot: h1 % m,
                skip: h2 % (m - 1) + 1,
                turns: 0,
            };
            fillers.push((h1, filler));
        }
        if fillers.is_empty() {
            return Maglev {
                table: Vec::new(),
                members: Vec::new(),
            };
        }
        fillers.sort_unstable_by_key(|(h1, f)| (*h1, f.index));
        let mut fillers: Vec<Filler> = fillers.into_iter().map(|(_, f)| f).collect();
        let max_weight = fillers.iter().map(|f| f.weight).max().unwrap_or(1);

        // Envoy's rounds: a filler takes its k-th turn (from 0) in round
        // ceil(k * max_weight / weight), and within a round fillers go in
        // order. A heap of (round, filler) replays that in O(M log N)
        // instead of scanning every filler every round.
        let mut queue: BinaryHeap<Reverse<(u64, usize)>> =
            (0..fillers.len()).map(|j| Reverse((0, j))).collect();
        let mut table = vec![u32::MAX; size];
        let mut filled = 0;
        while filled < size {
            let Some(Reverse((_, j))) = queue.pop() else {
                break;
            };
            let f = &mut fillers[j];
            // The permutation visits every slot (m is prime, 0 < skip < m)
            // and every slot it passed is taken, so a free one is ahead.
            loop {
                let slot = f.slot as usize;
                f.slot = (f.slot + f.skip) % m;
                if table[slot] == u32::MAX {
                    table[slot] = f.index;
                    break;
                }
            }
            filled += 1;
            f.turns += 1;
            let round = (f.turns * max_weight).div_ceil(f.weight);
            queue.push(Reverse((round, j)));
        }

        let mut members: Vec<u32> = fillers
            .iter()
            .filter(|f| f.turns > 0)
            .map(|f| f.index)
            .collect();
        members.sort_unstable();
        Maglev { table, members }
    }

    /// `table[hash % size]` if usable; otherwise probes again with
    /// rehashed keys (`hash_key` of the hash's and the attempt's
    /// little-endian bytes) up to twice the member count, then takes the
    /// first usable endpoint walking the table from the original slot.
    /// `None` if the table is empty or no endpoint is usable.
    pub fn pick(&self, hash: u64, usable: impl Fn(usize) -> bool) -> Option<usize> {
        let m = self.table.len() as u64;
        if m == 0 {
            return None;
        }
        let slot = (hash % m) as usize;
        let attempts = 2 * self.members.len() as u64;
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&hash.to_le_bytes());
        let rehashed = (1..=attempts).map(|attempt| {
            bytes[8..].copy_from_slice(&attempt.to_le_bytes());
            self.table[(hash_key(&bytes) % m) as usize]
        });
        let (before, after) = self.table.split_at(slot);
        let walk = after.iter().chain(before).copied();
        let order = std::iter::once(self.table[slot])
            .chain(rehashed)
            .chain(walk);
        first_usable(order, &self.members, usable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: u64 = 100_000;

    fn addrs(n: usize) -> Vec<SocketAddr> {
        (0..n)
            .map(|i| SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8 + 1], 8080)))
            .collect()
    }

    fn key(i: u64) -> u64 {
        hash_key(&i.to_le_bytes())
    }

    /// The address each key lands on, for comparing across rebuilds.
    fn owners(endpoints: &[SocketAddr], pick: impl Fn(u64) -> Option<usize>) -> Vec<SocketAddr> {
        (0..KEYS)
            .map(|i| endpoints[pick(key(i)).unwrap()])
            .collect()
    }

    fn shares(n: usize, pick: impl Fn(u64) -> Option<usize>) -> Vec<f64> {
        let mut counts = vec![0u64; n];
        for i in 0..KEYS {
            counts[pick(key(i)).unwrap()] += 1;
        }
        counts.iter().map(|&c| c as f64 / KEYS as f64).collect()
    }

    fn moved(a: &[SocketAddr], b: &[SocketAddr]) -> f64 {
        a.iter().zip(b).filter(|(a, b)| a != b).count() as f64 / KEYS as f64
    }

    #[test]
    fn hash_key_is_pinned() {
        assert_eq!(hash_key(b""), 0xefd0_1f60_ba99_2926);
        assert_eq!(hash_key(b"10.0.0.1:8080"), 0xe8c7_2115_6ed5_2b14);
        assert_eq!(hash_key(&7u64.to_le_bytes()), 0xc211_2d51_b876_518d);
    }

    #[test]
    fn ring_spreads_equal_weights_evenly() {
        let eps = addrs(4);
        let ring = RingHash::build(&eps, &[], RingHash::DEFAULT_MIN_RING_SIZE);
        assert_eq!(ring.len(), 1024);
        for share in shares(4, |h| ring.pick(h, |_| true)) {
            assert!((0.20..=0.30).contains(&share), "{share}");
        }
    }

    #[test]
    fn maglev_spreads_equal_weights_evenly() {
        let eps = addrs(4);
        let maglev = Maglev::build(&eps, &[1, 1, 1, 1], Maglev::DEFAULT_TABLE_SIZE);
        for share in shares(4, |h| maglev.pick(h, |_| true)) {
            assert!((0.2375..=0.2625).contains(&share), "{share}");
        }
    }

    #[test]
    fn weights_set_the_share() {
        let eps = addrs(2);
        let ring = RingHash::build(&eps, &[1, 2], 1024);
        let share = shares(2, |h| ring.pick(h, |_| true))[1];
        assert!((share - 2.0 / 3.0).abs() < 0.04, "ring {share}");
        let maglev = Maglev::build(&eps, &[1, 2], 65537);
        let share = shares(2, |h| maglev.pick(h, |_| true))[1];
        assert!((share - 2.0 / 3.0).abs() < 0.01, "maglev {share}");
    }

    #[test]
    fn ring_removal_moves_only_the_removed_keys() {
        let all = addrs(5);
        let rest: Vec<_> = all.iter().copied().filter(|a| *a != all[2]).collect();
        let before = RingHash::build(&all, &[], 1024);
        let after = RingHash::build(&rest, &[], 1024);
        let a = owners(&all, |h| before.pick(h, |_| true));
        let b = owners(&rest, |h| after.pick(h, |_| true));
        for (a, b) in a.iter().zip(&b) {
            assert!(a == b || *a == all[2], "{a} moved to {b}");
        }
        assert!(moved(&a, &b) <= 0.25, "{}", moved(&a, &b));
    }

    #[test]
    fn ring_addition_moves_keys_only_to_the_new_endpoint() {
        let all = addrs(6);
        let before = RingHash::build(&all[..5], &[], 1024);
        let after = RingHash::build(&all, &[], 1024);
        let a = owners(&all[..5], |h| before.pick(h, |_| true));
        let b = owners(&all, |h| after.pick(h, |_| true));
        for (a, b) in a.iter().zip(&b) {
            assert!(a == b || *b == all[5], "{a} moved to {b}");
        }
        assert!(moved(&a, &b) <= 1.0 / 6.0 + 0.05, "{}", moved(&a, &b));
    }

    #[test]
    fn maglev_remapping_is_bounded() {
        let all = addrs(6);
        let rest: Vec<_> = all[..5].iter().copied().filter(|a| *a != all[2]).collect();
        let five = Maglev::build(&all[..5], &[], 65537);
        let four = Maglev::build(&rest, &[], 65537);
        let six = Maglev::build(&all, &[], 65537);
        let on_five = owners(&all[..5], |h| five.pick(h, |_| true));
        let on_four = owners(&rest, |h| four.pick(h, |_| true));
        let on_six = owners(&all, |h| six.pick(h, |_| true));
        let removed = moved(&on_five, &on_four);
        assert!(removed <= 0.2 + 0.05, "removal moved {removed}");
        let added = moved(&on_five, &on_six);
        assert!(added <= 1.0 / 6.0 + 0.05, "addition moved {added}");
    }

    #[test]
    fn ring_unusable_endpoint_hands_its_keys_to_its_successors() {
        let all = addrs(5);
        let ring = RingHash::build(&all, &[], 1024);
        let healthy = owners(&all, |h| ring.pick(h, |_| true));
        let ejected = owners(&all, |h| ring.pick(h, |i| i != 3));
        for (a, b) in healthy.iter().zip(&ejected) {
            assert_ne!(*b, all[3]);
            assert!(a == b || *a == all[3], "{a} moved to {b}");
        }
        // Same answer as a ring rebuilt without it.
        let rest: Vec<_> = all.iter().copied().filter(|a| *a != all[3]).collect();
        let rebuilt = RingHash::build(&rest, &[], 1024);
        assert_eq!(ejected, owners(&rest, |h| rebuilt.pick(h, |_| true)));
    }

    #[test]
    fn maglev_unusable_endpoint_spreads_its_keys() {
        let all = addrs(5);
        let maglev = Maglev::build(&all, &[], 65537);
        let healthy = owners(&all, |h| maglev.pick(h, |_| true));
        let ejected = owners(&all, |h| maglev.pick(h, |i| i != 3));
        let mut took = [0usize; 5];
        for (a, b) in healthy.iter().zip(&ejected) {
            assert_ne!(*b, all[3]);
            if a == b {
                continue;
            }
            assert_eq!(*a, all[3]);
            took[all.iter().position(|e| e == b).unwrap()] += 1;
        }
        for (i, took) in took.iter().enumerate().filter(|(i, _)| *i != 3) {
            assert!(*took > 2500, "endpoint {i} took {took}");
        }
    }

    #[test]
    fn nothing_to_pick_is_none() {
        let eps = addrs(3);
        let empty_ring = RingHash::build(&[], &[], 1024);
        assert!(empty_ring.is_empty());
        assert_eq!(empty_ring.pick(1, |_| true), None);
        assert_eq!(Maglev::build(&[], &[], 65537).pick(1, |_| true), None);
        let zero_ring = RingHash::build(&eps, &[0, 0, 0], 1024);
        assert!(zero_ring.is_empty());
        assert_eq!(zero_ring.pick(1, |_| true), None);
        assert_eq!(
            Maglev::build(&eps, &[0, 0, 0], 65537).pick(1, |_| true),
            None
        );
        for h in [0, 1, u64::MAX, key(9)] {
            let ring = RingHash::build(&eps, &[], 1024);
            assert_eq!(ring.pick(h, |_| false), None);
            let maglev = Maglev::build(&eps, &[], 65537);
            assert_eq!(maglev.pick(h, |_| false), None);
        }
    }

    #[test]
    fn single_endpoint_is_always_picked() {
        let eps = addrs(4);
        let ring = RingHash::build(&eps, &[0, 0, 5, 0], 1024);
        let maglev = Maglev::build(&eps, &[0, 0, 5, 0], 65537);
        for i in 0..1000 {
            assert_eq!(ring.pick(key(i), |_| true), Some(2));
            assert_eq!(maglev.pick(key(i), |_| true), Some(2));
        }
        // Only one usable of many.
        let ring = RingHash::build(&eps, &[], 1024);
        let maglev = Maglev::build(&eps, &[], 65537);
        for i in 0..1000 {
            assert_eq!(ring.pick(key(i), |e| e == 1), Some(1));
            assert_eq!(maglev.pick(key(i), |e| e == 1), Some(1));
        }
    }

    #[test]
    fn ring_size_follows_min_and_cap() {
        let eps = addrs(5);
        assert_eq!(RingHash::build(&eps, &[], 0).len(), 5);
        assert_eq!(RingHash::build(&eps, &[], 1024).len(), 1280);
        // Every endpoint with weight gets a point, however light.
        let ring = RingHash::build(&eps[..2], &[1, 1_000_000], 1024);
        assert!((1024..2048).contains(&ring.len()), "{}", ring.len());
        assert_eq!(ring.members, [0, 1]);
        let ring = RingHash::build(&eps, &[u32::MAX; 5], usize::MAX);
        assert!(ring.len() <= RingHash::MAX_RING_SIZE && ring.len() >= 1 << 19);
        // Mismatched weights: missing ones count as 0.
        let ring = RingHash::build(&eps, &[1, 1], 1024);
        assert!((0..1000).all(|i| ring.pick(key(i), |_| true).unwrap() < 2));
    }

    #[test]
    fn maglev_table_size_is_prime_and_clamped() {
        let eps = addrs(3);
        let size = |s| Maglev::build(&eps, &[], s).table.len();
        assert_eq!(size(0), 2);
        assert_eq!(size(10), 11);
        assert_eq!(size(65537), 65537);
        assert_eq!(size(65538), 65539);
        // Clamped to MAX_TABLE_SIZE, itself prime (not built here: slow in
        // debug builds).
        assert_eq!(
            prime_at_least(Maglev::MAX_TABLE_SIZE),
            Maglev::MAX_TABLE_SIZE
        );
        assert_eq!(prime_at_least(1_000_000), 1_000_003);
        // A table smaller than the endpoint count still answers.
        let maglev = Maglev::build(&addrs(10), &[], 2);
        assert!((0..100).all(|i| maglev.pick(key(i), |_| true).is_some()));
    }

    #[test]
    fn maglev_fills_evenly_with_many_endpoints() {
        let maglev = Maglev::build(&addrs(100), &[], Maglev::DEFAULT_TABLE_SIZE);
        let mut slots = [0usize; 100];
        for &e in &maglev.table {
            slots[e as usize] += 1;
        }
        // Equal weights take turns: counts differ by at most one.
        assert!(slots.iter().all(|&s| s == 655 || s == 656), "{slots:?}");
    }

    #[test]
    fn maglev_ignores_endpoint_order() {
        let eps = addrs(7);
        let reversed: Vec<_> = eps.iter().rev().copied().collect();
        let a = Maglev::build(&eps, &[], 1009);
        let b = Maglev::build(&reversed, &[], 1009);
        for (x, y) in a.table.iter().zip(&b.table) {
            assert_eq!(eps[*x as usize], reversed[*y as usize]);
        }
    }
}
