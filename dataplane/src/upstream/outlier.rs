//! Passive outlier detection (upstream stage, sans-IO): owns the per-endpoint
//! failure streaks and ejections of ONE cluster on ONE shard, and decides
//! when an endpoint leaves and rejoins the load-balancing rotation.
//!
//! Semantics follow Envoy's `consecutive_5xx` detector, simplified:
//! - the caller classifies each finished request as [`Outcome::Success`] or
//!   [`Outcome::Failure`] (5xx, gateway error, connect failure) and reports
//!   it with [`OutlierDetector::record`];
//! - after `consecutive_failures` failures in a row an endpoint is ejected
//!   for `min(base_ejection * times_ejected, max_ejection)`, where
//!   `times_ejected` counts this ejection too — unless ejecting it would put
//!   more than `max_ejection_percent` of the cluster out of rotation;
//! - an ejection ends by time: [`OutlierDetector::is_ejected`] is false from
//!   `ejected_until` on, and [`OutlierDetector::tick`] (or the next `record`
//!   for that endpoint) re-admits it, clearing its failure streak;
//! - **decay rule**: for every full `base_ejection` period an endpoint spends
//!   back in rotation without a new ejection, `times_ejected` drops by one
//!   (counted from the moment its ejection ended), so an endpoint that
//!   recovered gets a short ejection again the next time it fails.
//!
//! Time is an input (`now`); nothing here reads a clock. No method panics on
//! any input: out-of-range endpoint indexes are ignored, durations and
//! counters saturate. `record`, `is_ejected` and `tick` never allocate; only
//! [`OutlierDetector::reset`] and [`OutlierDetector::remap`] (endpoint list
//! changes) may.

use std::time::{Duration, Instant};

/// Outlier-detection settings of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierSettings {
    /// Failures in a row that eject an endpoint; 0 disables detection.
    pub consecutive_failures: u32,
    /// Length of a first ejection; the n-th ejection lasts n times this.
    /// Zero disables ejection.
    pub base_ejection: Duration,
    /// Cap on the length of one ejection.
    pub max_ejection: Duration,
    /// Largest share of the cluster (percent, values above 100 count as
    /// 100) that may be ejected at once.
    pub max_ejection_percent: u8,
}

impl Default for OutlierSettings {
    /// Envoy's defaults: 5 failures, 30 s base, 300 s cap, 10 %.
    fn default() -> Self {
        OutlierSettings {
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
            max_ejection_percent: 10,
        }
    }
}

/// How a request to an endpoint ended, as classified by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Any response that is not a failure.
    Success,
    /// 5xx, gateway error or connect failure.
    Failure,
}

/// A change of an endpoint's ejection state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The endpoint left the rotation until `until`; `times` counts this
    /// ejection (after decay).
    Ejected { until: Instant, times: u32 },
    /// The endpoint's ejection ended and it is back in rotation (reported by
    /// [`OutlierDetector::tick_each`]).
    Returned,
}

/// One endpoint's outlier state, for display.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointOutlier {
    /// End of the current ejection; `None` when in rotation (an ejection
    /// whose end has passed stays here until `tick`/`record` re-admits it).
    pub ejected_until: Option<Instant>,
    /// Ejections counted towards the next ejection's length (decays).
    pub times_ejected: u32,
    /// Current streak of failures.
    pub consecutive_failures: u32,
}

/// Internal per-endpoint state: the displayed part plus the decay clock.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    shown: EndpointOutlier,
    /// Start of the current decay period (in rotation with
    /// `times_ejected > 0`); `None` otherwise.
    decay_from: Option<Instant>,
}

/// Outlier state of one cluster's endpoints on one shard, indexed by the
/// endpoint's position in the cluster's endpoint list.
#[derive(Debug, Default)]
pub struct OutlierDetector {
    slots: Vec<Slot>,
    /// Endpoints with `ejected_until` set (not yet re-admitted).
    ejected: usize,
    ejections_total: u64,
    returns_total: u64,
}

impl OutlierDetector {
    /// An empty detector (call [`reset`](Self::reset) with the endpoint count).
    pub fn new() -> Self {
        Self::default()
    }

    /// Resizes for a cluster with `n` endpoints: the state of indexes `< n`
    /// is kept, new indexes start clean. Use [`remap`](Self::remap) when the
    /// endpoint list was reordered.
    pub fn reset(&mut self, n: usize) {
        self.slots.resize(n, Slot::default());
        self.recount();
    }

    /// Rebuilds the state for a new endpoint list of `n` endpoints, where
    /// `old_index_of(new)` gives the index the same endpoint (by address)
    /// had in the previous list, or `None` for a new endpoint. Totals are
    /// kept.
    pub fn remap(&mut self, n: usize, mut old_index_of: impl FnMut(usize) -> Option<usize>) {
        let slots: Vec<Slot> = (0..n)
            .map(|new| {
                old_index_of(new)
                    .and_then(|old| self.slots.get(old).copied())
                    .unwrap_or_default()
            })
            .collect();
        self.slots = slots;
        self.recount();
    }

    fn recount(&mut self) {
        self.ejected = self
            .slots
            .iter()
            .filter(|s| s.shown.ejected_until.is_some())
            .count();
    }

    /// Number of endpoints tracked.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no endpoint is tracked.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Records the outcome of a request to endpoint `i`. A failure extends
    /// its streak, a success clears it. When the streak reaches
    /// `consecutive_failures`, the endpoint is in rotation and
    /// `(ejected after) * 100 <= max_ejection_percent * n`, it is ejected
    /// (streak cleared) and `Some(Event::Ejected)` is returned. A streak
    /// blocked by the percentage limit stays, so the next failure tries
    /// again. Outcomes of requests that finish while the endpoint is ejected
    /// are counted but cannot eject it again; its streak is cleared when it
    /// returns. Out-of-range `i` is ignored.
    pub fn record(
        &mut self,
        i: usize,
        outcome: Outcome,
        now: Instant,
        s: &OutlierSettings,
    ) -> Option<Event> {
        let n = self.slots.len();
        let mut slot = *self.slots.get(i)?;
        if settle(&mut slot, now, s.base_ejection) {
            self.note_return();
        }
        let event = match outcome {
            Outcome::Success => {
                slot.shown.consecutive_failures = 0;
                None
            }
            Outcome::Failure => {
                slot.shown.consecutive_failures = slot.shown.consecutive_failures.saturating_add(1);
                self.try_eject(&mut slot, n, now, s)
            }
        };
        if let Some(place) = self.slots.get_mut(i) {
            *place = slot;
        }
        event
    }

    /// Ejects `slot` (a copy of an entry of `self.slots`, written back by
    /// the caller) if its streak and the cluster's ejection budget allow.
    fn try_eject(
        &mut self,
        slot: &mut Slot,
        n: usize,
        now: Instant,
        s: &OutlierSettings,
    ) -> Option<Event> {
        if s.consecutive_failures == 0
            || slot.shown.consecutive_failures < s.consecutive_failures
            || slot.shown.ejected_until.is_some()
        {
            return None;
        }
        let times = slot.shown.times_ejected.saturating_add(1);
        let length = s
            .base_ejection
            .checked_mul(times)
            .unwrap_or(s.max_ejection)
            .min(s.max_ejection);
        if length.is_zero() {
            return None;
        }
        let until = now.checked_add(length)?;
        // The endpoint itself is in rotation (settled above), so every
        // endpoint ejected at `now` is another one. Scanning is fine: this
        // runs only when a streak reaches the threshold.
        let others = self
            .slots
            .iter()
            .filter(|x| x.shown.ejected_until.is_some_and(|u| now < u))
            .count() as u64;
        let percent = u64::from(s.max_ejection_percent.min(100));
        if (others + 1).saturating_mul(100) > percent.saturating_mul(n as u64) {
            return None;
        }
        slot.shown = EndpointOutlier {
            ejected_until: Some(until),
            times_ejected: times,
            consecutive_failures: 0,
        };
        slot.decay_from = None;
        self.ejected += 1;
        self.ejections_total += 1;
        Some(Event::Ejected { until, times })
    }

    fn note_return(&mut self) {
        self.ejected = self.ejected.saturating_sub(1);
        self.returns_total += 1;
    }

    /// Whether endpoint `i` is out of rotation at `now`. An ejection whose
    /// end has passed counts as returned even before `tick` runs.
    /// Out-of-range `i` is not ejected.
    pub fn is_ejected(&self, i: usize, now: Instant) -> bool {
        self.slots
            .get(i)
            .is_some_and(|s| s.shown.ejected_until.is_some_and(|u| now < u))
    }

    /// Re-admits every endpoint whose ejection ended by `now` and applies
    /// the decay rule (see the module docs); returns how many returned.
    pub fn tick(&mut self, now: Instant, s: &OutlierSettings) -> u32 {
        self.tick_each(now, s, |_, _| {})
    }

    /// [`tick`](Self::tick), calling `on_event(i, Event::Returned)` for
    /// each endpoint `i` that returned (for logging).
    pub fn tick_each(
        &mut self,
        now: Instant,
        s: &OutlierSettings,
        mut on_event: impl FnMut(usize, Event),
    ) -> u32 {
        let mut returned = 0u32;
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if settle(slot, now, s.base_ejection) {
                returned = returned.saturating_add(1);
                on_event(i, Event::Returned);
            }
        }
        self.ejected = self.ejected.saturating_sub(returned as usize);
        self.returns_total += u64::from(returned);
        returned
    }

    /// The earliest end of a current ejection: when `tick` next has work
    /// (decay aside), so the shard can arm a timer instead of polling.
    pub fn next_return(&self) -> Option<Instant> {
        self.slots
            .iter()
            .filter_map(|s| s.shown.ejected_until)
            .min()
    }

    /// Endpoints marked ejected (as of the last `tick`/`record`: an ejection
    /// that ended since still counts until one of them re-admits it).
    pub fn ejected_count(&self) -> usize {
        self.ejected
    }

    /// Endpoint `i`'s state, for display (all clear for out-of-range `i`).
    pub fn state(&self, i: usize) -> EndpointOutlier {
        self.slots.get(i).map(|s| s.shown).unwrap_or_default()
    }

    /// Ejections since creation.
    pub fn ejections_total(&self) -> u64 {
        self.ejections_total
    }

    /// Returns to rotation since creation.
    pub fn returns_total(&self) -> u64 {
        self.returns_total
    }
}

/// Brings one endpoint up to `now`: ends an ejection that has run out
/// (returns `true`) and applies the decay rule. Never allocates.
fn settle(slot: &mut Slot, now: Instant, base: Duration) -> bool {
    let mut returned = false;
    if let Some(until) = slot.shown.ejected_until {
        if now < until {
            return false;
        }
        slot.shown.ejected_until = None;
        slot.shown.consecutive_failures = 0;
        // Time in rotation counts from the ejection's end, not from when a
        // tick happened to notice it.
        slot.decay_from = Some(until);
        returned = true;
    }
    if slot.shown.times_ejected == 0 {
        slot.decay_from = None;
        return returned;
    }
    let Some(from) = slot.decay_from else {
        return returned;
    };
    let spent = now.saturating_duration_since(from);
    let periods = if base.is_zero() {
        u128::from(u32::MAX)
    } else {
        spent.as_nanos() / base.as_nanos()
    };
    let steps = u32::try_from(periods)
        .unwrap_or(u32::MAX)
        .min(slot.shown.times_ejected);
    if steps > 0 {
        slot.shown.times_ejected -= steps;
        slot.decay_from = if slot.shown.times_ejected == 0 {
            None
        } else {
            // Keep the remainder of the current period; on (absurd)
            // overflow restart the period at `now`.
            Some(
                base.checked_mul(steps)
                    .and_then(|d| from.checked_add(d))
                    .unwrap_or(now),
            )
        };
    }
    returned
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn settings(consecutive: u32, percent: u8) -> OutlierSettings {
        OutlierSettings {
            consecutive_failures: consecutive,
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
            max_ejection_percent: percent,
        }
    }

    fn detector(n: usize) -> OutlierDetector {
        let mut d = OutlierDetector::new();
        d.reset(n);
        d
    }

    /// Records `k` failures on endpoint `i` at `now`; returns the last event.
    fn fail(
        d: &mut OutlierDetector,
        i: usize,
        k: u32,
        now: Instant,
        s: &OutlierSettings,
    ) -> Option<Event> {
        let mut last = None;
        for _ in 0..k {
            last = d.record(i, Outcome::Failure, now, s);
        }
        last
    }

    #[test]
    fn three_failures_eject() {
        let t0 = Instant::now();
        let s = settings(3, 100);
        let mut d = detector(2);
        assert_eq!(d.record(0, Outcome::Failure, t0, &s), None);
        assert_eq!(d.record(0, Outcome::Failure, t0, &s), None);
        assert_eq!(d.state(0).consecutive_failures, 2);
        let until = t0 + Duration::from_secs(30);
        assert_eq!(
            d.record(0, Outcome::Failure, t0, &s),
            Some(Event::Ejected { until, times: 1 })
        );
        assert!(d.is_ejected(0, t0));
        assert!(d.is_ejected(0, until - ms(1)));
        assert!(!d.is_ejected(0, until));
        assert!(!d.is_ejected(1, t0));
        assert_eq!(d.ejected_count(), 1);
        assert_eq!(d.ejections_total(), 1);
        assert_eq!(
            d.state(0),
            EndpointOutlier {
                ejected_until: Some(until),
                times_ejected: 1,
                consecutive_failures: 0
            }
        );
    }

    #[test]
    fn success_resets_the_streak() {
        let t0 = Instant::now();
        let s = settings(3, 100);
        let mut d = detector(1);
        fail(&mut d, 0, 2, t0, &s);
        assert_eq!(d.record(0, Outcome::Success, t0, &s), None);
        assert_eq!(d.state(0).consecutive_failures, 0);
        assert_eq!(fail(&mut d, 0, 2, t0, &s), None);
        assert!(!d.is_ejected(0, t0));
        assert!(matches!(
            fail(&mut d, 0, 1, t0, &s),
            Some(Event::Ejected { .. })
        ));
    }

    #[test]
    fn ejection_doubles_on_second_and_caps_at_max_ejection() {
        let t0 = Instant::now();
        let mut s = settings(1, 100);
        s.max_ejection = Duration::from_secs(70);
        let mut d = detector(1);
        let Some(Event::Ejected { until, times: 1 }) = fail(&mut d, 0, 1, t0, &s) else {
            panic!("first ejection");
        };
        assert_eq!(until, t0 + Duration::from_secs(30));
        // Fails again the moment it returns: no full base period in
        // rotation, so no decay.
        let Some(Event::Ejected { until, times: 2 }) = fail(&mut d, 0, 1, until, &s) else {
            panic!("second ejection");
        };
        assert_eq!(until, t0 + Duration::from_secs(30 + 60));
        // Third would be 90 s; capped at 70 s.
        let Some(Event::Ejected {
            until: third,
            times: 3,
        }) = fail(&mut d, 0, 1, until, &s)
        else {
            panic!("third ejection");
        };
        assert_eq!(third, until + Duration::from_secs(70));
        assert_eq!(d.ejections_total(), 3);
        assert_eq!(d.returns_total(), 2);
    }

    #[test]
    fn tick_returns_after_ejection_time() {
        let t0 = Instant::now();
        let s = settings(1, 100);
        let mut d = detector(3);
        fail(&mut d, 0, 1, t0, &s);
        fail(&mut d, 2, 1, t0 + ms(500), &s);
        assert_eq!(d.next_return(), Some(t0 + Duration::from_secs(30)));
        assert_eq!(d.tick(t0 + Duration::from_secs(29), &s), 0);
        assert_eq!(d.ejected_count(), 2);
        let mut seen = Vec::new();
        let back = d.tick_each(t0 + Duration::from_secs(30), &s, |i, e| seen.push((i, e)));
        assert_eq!(back, 1);
        assert_eq!(seen, [(0, Event::Returned)]);
        assert_eq!(d.state(0).ejected_until, None);
        assert_eq!(d.ejected_count(), 1);
        assert_eq!(d.tick(t0 + Duration::from_secs(31), &s), 1);
        assert_eq!(d.ejected_count(), 0);
        assert_eq!(d.returns_total(), 2);
        assert_eq!(d.next_return(), None);
        // Ticking again changes nothing.
        assert_eq!(d.tick(t0 + Duration::from_secs(32), &s), 0);
    }

    #[test]
    fn failures_while_ejected_do_not_re_eject_and_clear_on_return() {
        let t0 = Instant::now();
        let s = settings(2, 100);
        let mut d = detector(1);
        fail(&mut d, 0, 2, t0, &s);
        // Stragglers that were in flight when it was ejected.
        assert_eq!(fail(&mut d, 0, 5, t0 + ms(10), &s), None);
        assert_eq!(d.state(0).consecutive_failures, 5);
        assert_eq!(d.state(0).ejected_until, Some(t0 + Duration::from_secs(30)));
        assert_eq!(d.tick(t0 + Duration::from_secs(30), &s), 1);
        assert_eq!(d.state(0).consecutive_failures, 0);
    }

    #[test]
    fn record_readmits_an_expired_ejection_before_tick() {
        let t0 = Instant::now();
        let s = settings(1, 100);
        let mut d = detector(1);
        fail(&mut d, 0, 1, t0, &s);
        let later = t0 + Duration::from_secs(31);
        assert!(!d.is_ejected(0, later));
        assert_eq!(d.record(0, Outcome::Success, later, &s), None);
        assert_eq!(d.state(0).ejected_until, None);
        assert_eq!(d.ejected_count(), 0);
        assert_eq!(d.returns_total(), 1);
        assert_eq!(d.tick(later, &s), 0);
    }

    #[test]
    fn max_percent_50_with_3_endpoints_allows_one_not_two() {
        let t0 = Instant::now();
        let s = settings(1, 50);
        let mut d = detector(3);
        assert!(fail(&mut d, 0, 1, t0, &s).is_some());
        assert_eq!(fail(&mut d, 1, 1, t0, &s), None);
        assert!(!d.is_ejected(1, t0));
        // The streak stays: once endpoint 0 returns, the next failure ejects.
        assert_eq!(d.state(1).consecutive_failures, 1);
        let back = t0 + Duration::from_secs(30);
        assert!(fail(&mut d, 1, 1, back, &s).is_some());
        assert!(!d.is_ejected(0, back));
        // 0 stays marked until a tick re-admits it.
        assert_eq!(d.ejected_count(), 2);
        assert_eq!(d.tick(back, &s), 1);
        assert_eq!(d.ejected_count(), 1);
    }

    #[test]
    fn max_percent_50_with_one_endpoint_never_ejects() {
        let t0 = Instant::now();
        let s = settings(1, 50);
        let mut d = detector(1);
        assert_eq!(fail(&mut d, 0, 100, t0, &s), None);
        assert_eq!(d.ejected_count(), 0);
        assert_eq!(d.ejections_total(), 0);
    }

    #[test]
    fn max_percent_100_allows_all_and_over_100_counts_as_100() {
        let t0 = Instant::now();
        for percent in [100, 255] {
            let s = settings(1, percent);
            let mut d = detector(3);
            for i in 0..3 {
                assert!(fail(&mut d, i, 1, t0, &s).is_some(), "{percent} {i}");
            }
            assert_eq!(d.ejected_count(), 3);
        }
        let s = settings(1, 0);
        let mut d = detector(3);
        assert_eq!(fail(&mut d, 0, 1, t0, &s), None);
    }

    #[test]
    fn zero_consecutive_failures_or_zero_length_disables() {
        let t0 = Instant::now();
        let mut d = detector(1);
        assert_eq!(fail(&mut d, 0, 1000, t0, &settings(0, 100)), None);
        let mut s = settings(1, 100);
        s.base_ejection = Duration::ZERO;
        assert_eq!(fail(&mut d, 0, 10, t0, &s), None);
        let mut s = settings(1, 100);
        s.max_ejection = Duration::ZERO;
        assert_eq!(fail(&mut d, 0, 10, t0, &s), None);
        assert_eq!(d.ejected_count(), 0);
    }

    #[test]
    fn times_ejected_decays_one_per_base_period_in_rotation() {
        let t0 = Instant::now();
        let s = settings(1, 100);
        let mut d = detector(1);
        let mut now = t0;
        // Three back-to-back ejections: 30 + 60 + 90 s.
        for _ in 0..3 {
            let Some(Event::Ejected { until, .. }) = fail(&mut d, 0, 1, now, &s) else {
                panic!("ejection");
            };
            now = until;
        }
        assert_eq!(d.state(0).times_ejected, 3);
        let returned = now;
        d.tick(returned, &s);
        assert_eq!(d.state(0).times_ejected, 3);
        d.tick(returned + Duration::from_secs(29), &s);
        assert_eq!(d.state(0).times_ejected, 3);
        d.tick(returned + Duration::from_secs(30), &s);
        assert_eq!(d.state(0).times_ejected, 2);
        // A late tick catches up several periods at once, keeping the
        // period's phase.
        d.tick(returned + Duration::from_secs(65), &s);
        assert_eq!(d.state(0).times_ejected, 1);
        d.tick(returned + Duration::from_secs(89), &s);
        assert_eq!(d.state(0).times_ejected, 1);
        // Decay also applies when `record` notices first: next ejection is
        // short again.
        let Some(Event::Ejected { until, times }) =
            fail(&mut d, 0, 1, returned + Duration::from_secs(90), &s)
        else {
            panic!("ejection");
        };
        assert_eq!(times, 1);
        assert_eq!(until, returned + Duration::from_secs(120));
    }

    #[test]
    fn decay_counts_from_the_end_of_the_ejection_not_the_tick() {
        let t0 = Instant::now();
        let s = settings(1, 100);
        let mut d = detector(1);
        fail(&mut d, 0, 1, t0, &s);
        // First tick long after the 30 s ejection ended: 30 s of rotation
        // already passed.
        assert_eq!(d.tick(t0 + Duration::from_secs(60), &s), 1);
        assert_eq!(d.state(0).times_ejected, 0);
    }

    #[test]
    fn out_of_range_and_empty_never_panic() {
        let t0 = Instant::now();
        let s = settings(1, 100);
        let mut d = OutlierDetector::new();
        assert_eq!(d.record(0, Outcome::Failure, t0, &s), None);
        assert!(!d.is_ejected(0, t0));
        assert_eq!(d.tick(t0, &s), 0);
        d.reset(2);
        assert_eq!(d.record(2, Outcome::Failure, t0, &s), None);
        assert_eq!(d.record(usize::MAX, Outcome::Failure, t0, &s), None);
        assert!(!d.is_ejected(usize::MAX, t0));
        assert_eq!(d.state(7), EndpointOutlier::default());
        // Huge settings saturate instead of overflowing.
        let huge = OutlierSettings {
            consecutive_failures: 1,
            base_ejection: Duration::MAX,
            max_ejection: Duration::MAX,
            max_ejection_percent: 100,
        };
        let _ = d.record(0, Outcome::Failure, t0, &huge);
        let _ = d.tick(t0, &huge);
    }

    #[test]
    fn reset_keeps_low_indexes_and_remap_follows_addresses() {
        let t0 = Instant::now();
        let s = settings(1, 100);
        let mut d = detector(3);
        fail(&mut d, 2, 1, t0, &s);
        d.record(1, Outcome::Failure, t0, &settings(5, 100));
        // Endpoint list [a, b, c] becomes [c, x, b].
        d.remap(3, |new| [Some(2), None, Some(1)][new]);
        assert!(d.is_ejected(0, t0));
        assert_eq!(d.state(1), EndpointOutlier::default());
        assert_eq!(d.state(2).consecutive_failures, 1);
        assert_eq!(d.ejected_count(), 1);
        d.reset(1);
        assert!(d.is_ejected(0, t0));
        assert_eq!(d.len(), 1);
        d.reset(0);
        assert_eq!(d.ejected_count(), 0);
        assert!(d.is_empty());
        assert_eq!(d.ejections_total(), 1);
    }

    /// Random outcomes, ticks and resizes on virtual time: the counters stay
    /// consistent and the percentage limit is never exceeded.
    #[test]
    fn random_walk_keeps_invariants() {
        let t0 = Instant::now();
        let s = OutlierSettings {
            consecutive_failures: 2,
            base_ejection: ms(300),
            max_ejection: ms(2000),
            max_ejection_percent: 40,
        };
        let mut d = detector(5);
        let mut x = 0x1234_5678_9ABC_DEF1u64;
        let mut now = t0;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            now += Duration::from_millis(x % 7);
            let i = (x >> 8) as usize % 7; // sometimes out of range
            match (x >> 16) % 10 {
                0 => {
                    d.tick(now, &s);
                }
                1 if x.is_multiple_of(97) => d.reset(3 + (x >> 24) as usize % 4),
                2..=5 => {
                    d.record(i, Outcome::Success, now, &s);
                }
                _ => {
                    d.record(i, Outcome::Failure, now, &s);
                }
            }
            let marked = (0..d.len())
                .filter(|&j| d.state(j).ejected_until.is_some())
                .count();
            assert_eq!(d.ejected_count(), marked);
            let active = (0..d.len()).filter(|&j| d.is_ejected(j, now)).count();
            assert!(active * 100 <= 40 * d.len(), "{active} of {}", d.len());
        }
        assert!(d.ejections_total() > 10, "{}", d.ejections_total());
        assert!(d.returns_total() <= d.ejections_total());
    }
}
