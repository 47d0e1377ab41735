//! The engine: simulated time, the ordered event queue and seeded random
//! streams. It knows nothing of what events mean.
//!
//! # Ordering guarantee
//!
//! Events run in order of `(time, sequence)`: earlier time first; at equal
//! times, the event scheduled first runs first (the sequence is the order
//! of `schedule` calls). The order is total and depends only on the order
//! of `schedule` calls, never on hashing, addresses or threads. Time is an
//! integer number of milliseconds, and never goes back: an event scheduled
//! in the past runs now.
//!
//! # The queue
//!
//! Because time never goes back, the queue is a radix heap (Ahuja, Mehlhorn,
//! Orlin and Tarjan, "Faster algorithms for the shortest path problem",
//! 1990) rather than a binary heap, with a byte of the time per level:
//! bucket 0 holds the events at the last time taken (`last`), in the order
//! they came; any other event sits in the bucket of the highest byte in
//! which its time differs from `last` and of its value there, so ascending
//! buckets hold ascending times. Scheduling is an append; taking the next
//! event is a read from bucket 0, or, when it is used up, one pass over the
//! lowest non-empty bucket (found in a two-level bitmap), which moves its
//! events to lower levels. A bucket of the lowest level holds a single time,
//! so it becomes bucket 0 whole (a swap, no event moves). An event moves
//! down at most 7 times, and once or twice for one half an hour away. Events at equal times are always in the
//! same bucket (the bucket depends only on the time and `last`), and every
//! move keeps their order, so bucket 0 serves them in the order they were
//! scheduled: the `(time, sequence)` order, without storing a sequence
//! number. A property test checks the order against a sorted map.
//!
//! # Random streams
//!
//! Every random source is a named stream: a ChaCha8 generator keyed by the
//! scenario seed, on a stream number derived from the name (FNV-1a). Adding
//! a stream, or drawing more from one, never shifts another.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::time::Ms;

/// Bits of a time per level of the radix heap: a byte per level.
const DIGIT: u32 = 8;
/// Buckets per level.
const RADIX: usize = 1 << DIGIT;
/// Levels for a 64-bit time.
const LEVELS: usize = 64 / DIGIT as usize;
/// Words of the bitmap of non-empty buckets (bucket 0 aside).
const WORDS: usize = LEVELS * RADIX / 64;

/// The event queue and clock.
pub struct EventQueue<E> {
    /// `1 + LEVELS * RADIX` buckets (see the module docs); bucket 0 is read
    /// from `head`.
    buckets: Vec<Vec<(Ms, E)>>,
    /// Bit b - 1 (over the words): bucket b is not empty.
    nonempty: [u64; WORDS],
    /// Bit w: word w of `nonempty` is not zero.
    summary: u32,
    head: usize,
    /// The time of the events in bucket 0: the last time taken, or zero.
    last: Ms,
    len: usize,
    now: Ms,
    processed: u64,
}

const _: () = assert!(WORDS <= 32, "the summary is one u32");

/// Most events an emptied bucket keeps room for: the buckets are many,
/// and each would otherwise keep the room of its largest burst (19 MB more
/// over bench-large's month).
const SPARE: usize = 256;

impl<E: Copy> Default for EventQueue<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E: Copy> EventQueue<E> {
    pub fn new() -> Self {
        EventQueue {
            buckets: (0..=LEVELS * RADIX).map(|_| Vec::new()).collect(),
            nonempty: [0; WORDS],
            summary: 0,
            head: 0,
            last: Ms::ZERO,
            len: 0,
            now: Ms::ZERO,
            processed: 0,
        }
    }

    /// The time of the event being processed (or last processed).
    pub fn now(&self) -> Ms {
        self.now
    }

    /// Bucket 0 for `last` itself; else 1 + `RADIX` × the level of the
    /// highest digit in which `at` differs from `last` + that digit of
    /// `at`: ascending buckets hold ascending times.
    fn bucket(&self, at: Ms) -> usize {
        let x = at.0 ^ self.last.0;
        if x == 0 {
            return 0;
        }
        let level = ((63 - x.leading_zeros()) / DIGIT) as usize;
        1 + level * RADIX + ((at.0 >> (level as u32 * DIGIT)) as usize & (RADIX - 1))
    }

    /// Schedules `event` at `at` (never before now).
    pub fn schedule(&mut self, at: Ms, event: E) {
        let at = at.max(self.now);
        self.put(at, event);
        self.len += 1;
    }

    /// Files `event` in its bucket, and returns the bucket.
    fn put(&mut self, at: Ms, event: E) -> usize {
        let b = self.bucket(at);
        self.buckets[b].push((at, event));
        if b > 0 {
            let w = (b - 1) / 64;
            self.nonempty[w] |= 1 << ((b - 1) % 64);
            self.summary |= 1 << w;
        }
        b
    }

    /// The event [`Self::pop_until`] would take next, when it is known
    /// without moving any (it is at the time last taken, or the lowest
    /// non-empty bucket is of the lowest level); `None` otherwise. Events
    /// scheduled meanwhile may still come before it.
    pub fn peek(&self) -> Option<&E> {
        if let Some((_, e)) = self.buckets[0].get(self.head) {
            return Some(e);
        }
        if self.summary == 0 {
            return None;
        }
        let w = self.summary.trailing_zeros() as usize;
        let i = w * 64 + self.nonempty[w].trailing_zeros() as usize + 1;
        if i <= RADIX {
            self.buckets[i].first().map(|(_, e)| e)
        } else {
            None
        }
    }

    /// Removes the next event if it is due at or before `until`, advancing
    /// the clock to its time.
    pub fn pop_until(&mut self, until: Ms) -> Option<(Ms, E)> {
        self.pop_until_hinted(until, &mut |_| {})
    }

    /// [`Self::pop_until`], calling `soon` on each event as it moves into
    /// the lowest level: an event that runs within the next 256 ms of
    /// simulated time, a few events from now. A caller can start loading
    /// what that event will touch (the simulation prefetches); `soon`
    /// must not change what the events do.
    pub fn pop_until_hinted(&mut self, until: Ms, soon: &mut impl FnMut(&E)) -> Option<(Ms, E)> {
        if self.head == self.buckets[0].len() {
            self.buckets[0].clear();
            self.head = 0;
            // The lowest non-empty bucket holds the earliest events.
            if self.summary == 0 {
                return None;
            }
            let w = self.summary.trailing_zeros() as usize;
            let i = w * 64 + self.nonempty[w].trailing_zeros() as usize + 1;
            // A bucket of the lowest level holds one time (its events agree
            // with `last` on every higher digit, and on this one).
            let level0 = i <= RADIX;
            let m = if level0 {
                self.buckets[i][0].0
            } else {
                self.buckets[i].iter().map(|e| e.0).min()?
            };
            if m > until {
                return None; // nothing moves: `last` stays at or before now
            }
            self.last = m;
            self.unflag(i);
            if level0 {
                // All of it is due at `m`, in order: it becomes bucket 0.
                // The used-up bucket 0 takes its place, without a large
                // allocation.
                self.buckets.swap(0, i);
                if self.buckets[i].capacity() > SPARE {
                    self.buckets[i] = Vec::new();
                }
            } else {
                let mut v = std::mem::take(&mut self.buckets[i]);
                for &(at, e) in &v {
                    if self.put(at, e) <= RADIX {
                        soon(&e);
                    }
                }
                v.clear();
                if v.capacity() <= SPARE {
                    self.buckets[i] = v;
                }
            }
        }
        if self.last > until {
            return None;
        }
        let (at, e) = self.buckets[0][self.head];
        self.head += 1;
        self.len -= 1;
        self.now = at;
        self.processed += 1;
        Some((at, e))
    }

    /// Drops the waiting events `keep` refuses, keeping the order of the
    /// rest (each bucket is filtered in place). O(events waiting): for an
    /// occasional sweep of events known to do nothing when they run.
    pub fn retain(&mut self, mut keep: impl FnMut(&E) -> bool) {
        let head = std::mem::take(&mut self.head);
        self.buckets[0].drain(..head);
        let mut len = 0;
        for b in 0..self.buckets.len() {
            let bucket = &mut self.buckets[b];
            if bucket.is_empty() {
                continue;
            }
            bucket.retain(|(_, e)| keep(e));
            len += bucket.len();
            if b > 0 && bucket.is_empty() {
                self.unflag(b);
            }
        }
        self.len = len;
    }

    /// Bucket `b` (not 0) is empty: its bit goes, and its word's summary
    /// bit when the word is now zero.
    #[inline]
    fn unflag(&mut self, b: usize) {
        let w = (b - 1) / 64;
        self.nonempty[w] &= !(1 << ((b - 1) % 64));
        if self.nonempty[w] == 0 {
            self.summary &= !(1 << w);
        }
    }

    /// Events processed so far.
    pub fn processed(&self) -> u64 {
        self.processed
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// FNV-1a of a stream name.
fn stream_id(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The random stream called `name` for `seed`.
pub fn stream(seed: u64, name: &str) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(stream_id(name));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn time_then_sequence() {
        let mut q = EventQueue::new();
        q.schedule(Ms(20), "c");
        q.schedule(Ms(10), "a");
        q.schedule(Ms(10), "b");
        q.schedule(Ms(30), "d");
        let mut out = Vec::new();
        while let Some((_, e)) = q.pop_until(Ms(25)) {
            out.push(e);
        }
        assert_eq!(out, ["a", "b", "c"]);
        assert_eq!(q.now(), Ms(20));
        // Scheduling in the past runs at now.
        q.schedule(Ms(5), "e");
        assert_eq!(q.pop_until(Ms::MAX), Some((Ms(20), "e")));
        assert_eq!(q.processed(), 4);
    }

    proptest::proptest! {
        /// The queue keeps the `(time, sequence)` order of a plain sorted
        /// map, whatever the mix of same-time and later events (near and
        /// far), pops and schedules while handling, early stops and sweeps
        /// (`retain`).
        #[test]
        fn radix_queue_keeps_time_then_sequence(
            ops in proptest::collection::vec((0u64..4, 0u8..4, proptest::bool::ANY, 0u32..12), 1..400),
            until_step in 0u64..3,
            far in 0u32..56,
        ) {
            let mut q = EventQueue::new();
            let mut reference = std::collections::BTreeMap::new();
            let mut seq = 0u64;
            let mut now = 0u64;
            let mut until = 0u64;
            let mut n = 0u32;
            // Events taken, and whether a hint came after its event.
            let mut popped = std::collections::BTreeSet::new();
            let mut late = false;
            for (delay, pushes, pop, shift) in ops {
                for k in 0..pushes {
                    // Some at now, some later (near, and far enough to land
                    // in high buckets), some in the past (run at now).
                    let at = match (delay, k) {
                        (0, _) => now,
                        (1, 0) => now.saturating_sub(5),
                        (3, 1) => now + (u64::from(shift) << far),
                        _ => now + delay * u64::from(k + 1),
                    };
                    q.schedule(Ms(at), n);
                    reference.insert((at.max(now), seq), n);
                    seq += 1;
                    n += 1;
                }
                if pushes == 3 && !pop && shift == 11 {
                    // A sweep: the events a third of the ids name go.
                    q.retain(|&e| e % 3 != 0);
                    reference.retain(|_, e| *e % 3 != 0);
                    proptest::prop_assert_eq!(q.len(), reference.len());
                }
                if pop {
                    // What `peek` promises is what comes next.
                    if let Some(&e) = q.peek() {
                        let (_, &first) = reference.first_key_value().expect("peeked an event");
                        proptest::prop_assert_eq!(e, first);
                    }
                    until = until.max(now) + until_step;
                    let want = reference
                        .first_key_value()
                        .filter(|(&(at, _), _)| at <= until)
                        .map(|(&(at, s), &e)| (at, s, e));
                    let got = q.pop_until_hinted(Ms(until), &mut |&e| {
                        late |= popped.contains(&e);
                    });
                    if let Some((_, e)) = got {
                        popped.insert(e);
                    }
                    match want {
                        Some((at, s, e)) => {
                            reference.remove(&(at, s));
                            proptest::prop_assert_eq!(got, Some((Ms(at), e)));
                            now = at;
                        }
                        None => proptest::prop_assert_eq!(got, None),
                    }
                }
            }
            proptest::prop_assert!(!late, "a hint for an event already taken");
            proptest::prop_assert_eq!(q.len(), reference.len());
            while let Some((&(at, _), &e)) = reference.first_key_value() {
                proptest::prop_assert_eq!(q.pop_until(Ms::MAX), Some((Ms(at), e)));
                reference.pop_first();
            }
            proptest::prop_assert!(q.is_empty());
        }
    }

    /// Events far ahead are hinted as they come within 256 ms, before they
    /// are taken; `peek` then names the next one.
    #[test]
    fn events_are_hinted_before_they_run_and_peek_names_the_next() {
        let mut q = EventQueue::new();
        for (k, at) in [60_000u64, 60_100, 60_200, 61_000].into_iter().enumerate() {
            q.schedule(Ms(at), k as u32);
        }
        assert_eq!(q.peek(), None, "nothing is in the lowest level yet");
        let mut hinted = Vec::new();
        let first = q.pop_until_hinted(Ms::MAX, &mut |&e| hinted.push(e));
        assert_eq!(first, Some((Ms(60_000), 0)));
        // What moved to the lowest level with the first is hinted; `peek`
        // names the next in line while it is there; every event is hinted
        // by the time it runs.
        assert!(hinted.contains(&0));
        while let Some(&next) = q.peek() {
            let mut more = Vec::new();
            let got = q.pop_until_hinted(Ms::MAX, &mut |&e| more.push(e));
            assert_eq!(got.map(|(_, e)| e), Some(next));
            hinted.extend(more);
        }
        let mut rest = Vec::new();
        while let Some((_, e)) = q.pop_until_hinted(Ms::MAX, &mut |&e| rest.push(e)) {
            assert!(
                rest.contains(&e) || hinted.contains(&e),
                "event {e} ran unhinted"
            );
        }
    }

    /// Bursts of events, near (lowest level) and far: once they are taken,
    /// no bucket but bucket 0 keeps room for more than `SPARE` events.
    #[test]
    fn emptied_buckets_keep_little_room() {
        let mut q = EventQueue::new();
        for burst in 1..=20u64 {
            let at = q.now().0 + burst * 300 + (burst % 3) * 70_000;
            for e in 0..2_000u32 {
                q.schedule(Ms(at), e);
            }
            while q.pop_until(Ms(at)).is_some() {}
        }
        assert!(q.is_empty());
        let roomy = q.buckets[1..]
            .iter()
            .filter(|b| b.capacity() > SPARE)
            .count();
        assert_eq!(roomy, 0);
    }

    #[test]
    fn streams_are_independent_and_stable() {
        let a1: u64 = stream(7, "nodes").gen();
        let a2: u64 = stream(7, "nodes").gen();
        let b: u64 = stream(7, "ec2").gen();
        let c: u64 = stream(8, "nodes").gen();
        assert_eq!(a1, a2);
        assert_ne!(a1, b);
        assert_ne!(a1, c);
    }
}
