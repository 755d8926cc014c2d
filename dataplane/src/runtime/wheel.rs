//! A hierarchical timing wheel (sans-IO: time comes in as `Instant`s): the
//! per-shard store of timer deadlines behind [`super::timer`].
//!
//! Six levels of 64 slots; a slot of level `n` spans `64^n` ticks of 1 ms,
//! so the wheel covers 2^36 ms (≈ 795 days; later deadlines are clamped).
//! Insert and cancel are O(1) (an entry is a node of a doubly linked list
//! per slot, kept in a slab); a 64-bit occupancy mask per level finds the
//! next due slot without scanning. Entries of a higher level are moved down
//! ("cascaded") when their slot comes up. Entries keep their exact
//! deadline: slots sort them by the millisecond, and within the due
//! millisecond a timer fires only once its deadline has passed, so timers
//! are exact to the clock (never early, and not rounded up to the tick:
//! `meshbench`'s open-loop schedule needs sub-millisecond wake-ups).
//!
//! The layout follows the classic design (Varghese & Lauck; the same
//! arithmetic as tokio's wheel): an entry's level is given by the highest
//! 6-bit group in which its deadline differs from the current tick, so an
//! entry of a lower level is always due before any entry of a higher one.

use std::task::Waker;
use std::time::{Duration, Instant};

const LEVELS: usize = 6;
const SLOT_BITS: u32 = 6;
const SLOTS: usize = 1 << SLOT_BITS;
/// Largest representable tick offset.
const MAX_TICK: u64 = (1 << (SLOT_BITS as u64 * LEVELS as u64)) - 1;
const NIL: u32 = u32::MAX;
const TICK_NS: u64 = 1_000_000;

/// Identifies an inserted timer (stale once it fired or was removed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerKey {
    index: u32,
    generation: u32,
}

#[derive(Debug)]
struct Entry {
    /// Due tick (the millisecond `at` falls in, clamped to the wheel's range).
    tick: u64,
    /// Exact deadline, nanoseconds after the wheel's start.
    at: u64,
    waker: Option<Waker>,
    prev: u32,
    next: u32,
    level: u8,
    slot: u8,
    generation: u32,
    live: bool,
}

#[derive(Debug)]
struct Level {
    heads: [u32; SLOTS],
    occupied: u64,
}

impl Level {
    const fn new() -> Level {
        Level {
            heads: [NIL; SLOTS],
            occupied: 0,
        }
    }
}

/// The wheel of one shard.
#[derive(Debug)]
pub struct Wheel {
    /// Tick 0; set by the first insert or advance.
    start: Option<Instant>,
    /// Ticks processed so far.
    elapsed: u64,
    levels: [Level; LEVELS],
    slab: Vec<Entry>,
    free: Vec<u32>,
    len: usize,
}

impl Default for Wheel {
    fn default() -> Self {
        Wheel::new()
    }
}

impl Wheel {
    pub const fn new() -> Wheel {
        Wheel {
            start: None,
            elapsed: 0,
            levels: [const { Level::new() }; LEVELS],
            slab: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }

    /// Timers armed.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn start(&mut self, now: Instant) -> Instant {
        *self.start.get_or_insert(now)
    }

    /// Nanoseconds from the wheel's start to `at`; `now` starts the
    /// wheel's clock if nothing did yet.
    fn offset_of(&mut self, at: Instant, now: Instant) -> u64 {
        let start = self.start(now);
        u64::try_from(at.saturating_duration_since(start).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Arms a timer due at `deadline` that wakes `waker` (`now` is the
    /// caller's clock).
    pub fn insert(&mut self, now: Instant, deadline: Instant, waker: Waker) -> TimerKey {
        let at = self.offset_of(deadline, now);
        let tick = (at / TICK_NS).clamp(self.elapsed, self.elapsed.saturating_add(MAX_TICK));
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slab.push(Entry {
                    tick: 0,
                    at: 0,
                    waker: None,
                    prev: NIL,
                    next: NIL,
                    level: 0,
                    slot: 0,
                    generation: 0,
                    live: false,
                });
                u32::try_from(self.slab.len() - 1).expect("fewer than 2^32 timers")
            }
        };
        let e = &mut self.slab[index as usize];
        e.tick = tick;
        e.at = at;
        e.waker = Some(waker);
        e.generation = e.generation.wrapping_add(1);
        e.live = true;
        let generation = e.generation;
        self.link(index);
        self.len += 1;
        TimerKey { index, generation }
    }

    fn get(&self, key: TimerKey) -> Option<&Entry> {
        self.slab
            .get(key.index as usize)
            .filter(|e| e.live && e.generation == key.generation)
    }

    /// Whether `key` is still armed.
    pub fn contains(&self, key: TimerKey) -> bool {
        self.get(key).is_some()
    }

    /// Replaces the waker of an armed timer; `false` when it is no longer
    /// armed.
    pub fn set_waker(&mut self, key: TimerKey, waker: &Waker) -> bool {
        match self.slab.get_mut(key.index as usize) {
            Some(e) if e.live && e.generation == key.generation => {
                match &mut e.waker {
                    Some(w) if w.will_wake(waker) => {}
                    w => *w = Some(waker.clone()),
                }
                true
            }
            _ => false,
        }
    }

    /// Disarms `key` (nothing if it already fired or was removed).
    pub fn remove(&mut self, key: TimerKey) {
        if self.get(key).is_some() {
            self.unlink(key.index);
            self.release(key.index);
        }
    }

    fn release(&mut self, index: u32) {
        let e = &mut self.slab[index as usize];
        e.live = false;
        e.waker = None;
        self.free.push(index);
        self.len -= 1;
    }

    /// Level and slot of a due tick, relative to the current tick.
    fn position(&self, tick: u64) -> (usize, usize) {
        let masked = (self.elapsed ^ tick) | (SLOTS as u64 - 1);
        let significant = 63 - masked.leading_zeros();
        let level = ((significant / SLOT_BITS) as usize).min(LEVELS - 1);
        let slot = ((tick >> (level as u32 * SLOT_BITS)) as usize) & (SLOTS - 1);
        (level, slot)
    }

    fn link(&mut self, index: u32) {
        let (level, slot) = self.position(self.slab[index as usize].tick);
        let head = self.levels[level].heads[slot];
        {
            let e = &mut self.slab[index as usize];
            e.level = level as u8;
            e.slot = slot as u8;
            e.prev = NIL;
            e.next = head;
        }
        if head != NIL {
            self.slab[head as usize].prev = index;
        }
        let l = &mut self.levels[level];
        l.heads[slot] = index;
        l.occupied |= 1 << slot;
    }

    fn unlink(&mut self, index: u32) {
        let (prev, next, level, slot) = {
            let e = &self.slab[index as usize];
            (e.prev, e.next, e.level as usize, e.slot as usize)
        };
        if prev != NIL {
            self.slab[prev as usize].next = next;
        } else {
            self.levels[level].heads[slot] = next;
        }
        if next != NIL {
            self.slab[next as usize].prev = prev;
        }
        if self.levels[level].heads[slot] == NIL {
            self.levels[level].occupied &= !(1 << slot);
        }
    }

    /// The first occupied slot at or after the current tick: (level, slot,
    /// the tick it starts at).
    fn next_expiration(&self) -> Option<(usize, usize, u64)> {
        for (level, l) in self.levels.iter().enumerate() {
            if l.occupied == 0 {
                continue;
            }
            let shift = level as u32 * SLOT_BITS;
            let now_slot = ((self.elapsed >> shift) as usize) & (SLOTS - 1);
            let rotated = l.occupied.rotate_right(now_slot as u32);
            let slot = (rotated.trailing_zeros() as usize + now_slot) % SLOTS;
            let slot_range = 1u64 << shift;
            let level_range = slot_range << SLOT_BITS;
            let level_start = self.elapsed & !(level_range - 1);
            let mut tick = level_start + slot as u64 * slot_range;
            if tick + slot_range <= self.elapsed {
                tick += level_range;
            }
            return Some((level, slot, tick.max(self.elapsed)));
        }
        None
    }

    /// When the loop should look at the wheel again: the earliest exact
    /// deadline in the next occupied slot of level 0, or the start of a
    /// higher level's slot (whose entries then cascade).
    pub fn next_deadline(&self) -> Option<Instant> {
        let start = self.start?;
        let (level, slot, tick) = self.next_expiration()?;
        if level > 0 {
            return Some(start + Duration::from_millis(tick));
        }
        let mut earliest = u64::MAX;
        let mut index = self.levels[0].heads[slot];
        while index != NIL {
            let e = &self.slab[index as usize];
            earliest = earliest.min(e.at);
            index = e.next;
        }
        Some(start + Duration::from_nanos(earliest))
    }

    /// Moves the wheel to `now`, calling `wake` with the waker of every
    /// timer that is due (each once; they are disarmed).
    pub fn advance(&mut self, now: Instant, mut wake: impl FnMut(Waker)) {
        let now_ns = self.offset_of(now, now);
        let target = now_ns / TICK_NS;
        // Entries of the current millisecond that are not due yet.
        let mut later = Vec::new();
        while let Some((level, slot, tick)) = self.next_expiration() {
            if tick > target {
                break;
            }
            self.elapsed = self.elapsed.max(tick);
            // Take the slot's list, then fire (level 0, or already due) or
            // cascade each entry.
            let mut index = self.levels[level].heads[slot];
            self.levels[level].heads[slot] = NIL;
            self.levels[level].occupied &= !(1 << slot);
            while index != NIL {
                let next = self.slab[index as usize].next;
                let e = &self.slab[index as usize];
                if e.tick <= target && e.at <= now_ns {
                    let waker = self.slab[index as usize].waker.take();
                    self.release(index);
                    if let Some(w) = waker {
                        wake(w);
                    }
                } else if e.tick <= target {
                    later.push(index);
                } else {
                    self.link(index);
                }
                index = next;
            }
        }
        self.elapsed = self.elapsed.max(target);
        for index in later {
            self.link(index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    /// A waker that records its id into a shared log.
    struct Probe {
        id: usize,
        log: Arc<std::sync::Mutex<Vec<usize>>>,
        wakes: AtomicUsize,
    }

    impl Wake for Probe {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.wakes.fetch_add(1, Ordering::SeqCst);
            self.log.lock().unwrap().push(self.id);
        }
    }

    fn probe(id: usize, log: &Arc<std::sync::Mutex<Vec<usize>>>) -> Waker {
        Waker::from(Arc::new(Probe {
            id,
            log: log.clone(),
            wakes: AtomicUsize::new(0),
        }))
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn fires_in_order_never_early_and_only_once() {
        let t0 = Instant::now();
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut w = Wheel::new();
        w.advance(t0, |w| w.wake());
        for (id, at) in [(1, 5u64), (2, 70), (3, 3), (4, 5000), (5, 300_000)] {
            w.insert(t0, t0 + ms(at), probe(id, &log));
        }
        assert_eq!(w.len(), 5);
        let mut fired_at = Vec::new();
        let mut t = 0;
        while !w.is_empty() {
            let next = w.next_deadline().unwrap();
            assert!(next >= t0 + ms(t), "deadlines never go back");
            t = next.duration_since(t0).as_millis() as u64;
            let before = log.lock().unwrap().len();
            w.advance(next, |w| w.wake());
            for id in log.lock().unwrap()[before..].iter() {
                fired_at.push((*id, t));
            }
        }
        let order: Vec<usize> = fired_at.iter().map(|(id, _)| *id).collect();
        assert_eq!(order, [3, 1, 2, 4, 5]);
        for (id, at) in fired_at {
            let due = [0, 5, 70, 3, 5000, 300_000][id];
            assert!(
                at >= due && at <= due + 1,
                "timer {id} due {due} fired at {at}"
            );
        }
    }

    #[test]
    fn deadlines_are_exact_below_a_millisecond() {
        let t0 = Instant::now();
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut w = Wheel::new();
        w.advance(t0, |w| w.wake());
        let us = Duration::from_micros;
        w.insert(t0, t0 + us(1_300), probe(1, &log));
        w.insert(t0, t0 + us(1_700), probe(2, &log));
        assert_eq!(w.next_deadline(), Some(t0 + us(1_300)));
        w.advance(t0 + us(1_200), |w| w.wake());
        assert!(log.lock().unwrap().is_empty(), "never early");
        assert_eq!(w.next_deadline(), Some(t0 + us(1_300)));
        w.advance(t0 + us(1_300), |w| w.wake());
        assert_eq!(*log.lock().unwrap(), [1]);
        // The other one, same millisecond, waits for its own time.
        assert_eq!(w.next_deadline(), Some(t0 + us(1_700)));
        w.advance(t0 + us(1_699), |w| w.wake());
        assert_eq!(*log.lock().unwrap(), [1]);
        w.advance(t0 + us(1_700), |w| w.wake());
        assert_eq!(*log.lock().unwrap(), [1, 2]);
        assert!(w.is_empty());
    }

    #[test]
    fn removed_timers_never_fire_and_keys_go_stale() {
        let t0 = Instant::now();
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut w = Wheel::new();
        let a = w.insert(t0, t0 + ms(10), probe(1, &log));
        let b = w.insert(t0, t0 + ms(10), probe(2, &log));
        let c = w.insert(t0, t0 + ms(100_000), probe(3, &log));
        w.remove(a);
        w.remove(c);
        assert!(!w.contains(a) && w.contains(b));
        w.advance(t0 + ms(200_000), |w| w.wake());
        assert_eq!(*log.lock().unwrap(), [2]);
        assert!(!w.contains(b), "fired timers are disarmed");
        // A reused slab entry does not answer to an old key.
        let d = w.insert(t0 + ms(200_000), t0 + ms(200_500), probe(4, &log));
        w.remove(a);
        w.remove(b);
        assert!(w.contains(d));
        assert!(!w.set_waker(b, &probe(9, &log)));
        assert!(w.set_waker(d, &probe(5, &log)));
        w.advance(t0 + ms(201_000), |w| w.wake());
        assert_eq!(*log.lock().unwrap(), [2, 5]);
        assert!(w.is_empty() && w.next_deadline().is_none());
    }

    #[test]
    fn past_and_far_deadlines_are_clamped() {
        let t0 = Instant::now();
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut w = Wheel::new();
        w.advance(t0 + ms(50), |w| w.wake());
        w.insert(t0 + ms(50), t0, probe(1, &log)); // already due
        w.insert(
            t0 + ms(50),
            t0 + Duration::from_secs(10 * 365 * 86_400),
            probe(2, &log),
        );
        w.advance(t0 + ms(50), |w| w.wake());
        assert_eq!(*log.lock().unwrap(), [1]);
        assert_eq!(w.len(), 1);
    }

    proptest::proptest! {
        /// Against a sorted-list model: every timer fires exactly once, at
        /// the first advance at or after its deadline, and removed ones
        /// never.
        #[test]
        fn matches_a_sorted_model(
            // Offsets and steps in microseconds: most deadlines fall inside a
            // millisecond the wheel is in.
            ops in proptest::collection::vec((0u64..200_000, proptest::bool::ANY, 1u64..5_000), 1..200)
        ) {
            let t0 = Instant::now();
            let log = Arc::new(std::sync::Mutex::new(Vec::new()));
            let mut w = Wheel::new();
            w.advance(t0, |w| w.wake());
            let mut now = 0u64;
            let mut model: Vec<(u64, usize)> = Vec::new();
            let mut keys = Vec::new();
            for (id, (offset, remove_one, step)) in ops.into_iter().enumerate() {
                let due = now + offset;
                keys.push((w.insert(t0 + Duration::from_micros(now), t0 + Duration::from_micros(due), probe(id, &log)), id));
                model.push((due, id));
                if remove_one && keys.len() > 1 {
                    let (k, rid) = keys[keys.len() / 2];
                    if w.contains(k) {
                        w.remove(k);
                        model.retain(|(_, m)| *m != rid);
                    }
                }
                now += step;
                let before = log.lock().unwrap().len();
                w.advance(t0 + Duration::from_micros(now), |w| w.wake());
                let mut fired: Vec<usize> = log.lock().unwrap()[before..].to_vec();
                fired.sort_unstable();
                let mut expected: Vec<usize> =
                    model.iter().filter(|(d, _)| *d <= now).map(|(_, i)| *i).collect();
                expected.sort_unstable();
                model.retain(|(d, _)| *d > now);
                proptest::prop_assert_eq!(fired, expected);
                proptest::prop_assert_eq!(w.len(), model.len());
                if let Some(next) = w.next_deadline() {
                    let earliest = model.iter().map(|(d, _)| *d).min().unwrap();
                    proptest::prop_assert!(next <= t0 + Duration::from_micros(earliest));
                    proptest::prop_assert!(next > t0 + Duration::from_micros(now) || next == t0 + Duration::from_micros(now));
                }
            }
        }
    }
}
