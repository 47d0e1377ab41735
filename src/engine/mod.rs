//! The engine: simulated time, the ordered event queue and seeded random
//! streams. It knows nothing of what events mean.
//!
//! # Ordering guarantee
//!
//! Events run in order of `(time, sequence)`: earlier time first; at equal
//! times, the event scheduled first (lowest sequence number) runs first.
//! The sequence number is a counter incremented on every `schedule`, so the
//! order is total and depends only on the order of `schedule` calls, never on
//! hashing, addresses or threads. Time is an integer number of milliseconds.
//!
//! Events scheduled for the current time (a scheduler pass or a sandbox
//! asked for by the event being handled) skip the heap: they go to a FIFO
//! that runs after the heap's events at the same time. The order is the
//! same `(time, sequence)` order: an event in the heap at the current time
//! was scheduled before the clock reached it, so before any event in the
//! FIFO, and the clock only moves on once the FIFO is empty.
//!
//! # Random streams
//!
//! Every random source is a named stream: a ChaCha8 generator keyed by the
//! scenario seed, on a stream number derived from the name (FNV-1a). Adding
//! a stream, or drawing more from one, never shifts another.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::time::Ms;

struct Entry<E> {
    at: Ms,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, o: &Self) -> bool {
        self.at == o.at && self.seq == o.seq
    }
}
impl<E> Eq for Entry<E> {}
impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<E> Ord for Entry<E> {
    fn cmp(&self, o: &Self) -> Ordering {
        // BinaryHeap is a max-heap: reverse for earliest (time, seq) first.
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

/// The event queue and clock.
pub struct EventQueue<E> {
    heap: BinaryHeap<Entry<E>>,
    /// Events scheduled at `now` while the clock is at `now`, in order.
    fifo: VecDeque<E>,
    seq: u64,
    now: Ms,
    processed: u64,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E> EventQueue<E> {
    pub fn new() -> Self {
        EventQueue {
            heap: BinaryHeap::new(),
            fifo: VecDeque::new(),
            seq: 0,
            now: Ms::ZERO,
            processed: 0,
        }
    }

    /// The time of the event being processed (or last processed).
    pub fn now(&self) -> Ms {
        self.now
    }

    /// Schedules `event` at `at` (never before now).
    pub fn schedule(&mut self, at: Ms, event: E) {
        let at = at.max(self.now);
        self.seq += 1;
        if at == self.now {
            self.fifo.push_back(event);
            return;
        }
        self.heap.push(Entry {
            at,
            seq: self.seq,
            event,
        });
    }

    /// Removes the next event if it is due at or before `until`, advancing
    /// the clock to its time.
    pub fn pop_until(&mut self, until: Ms) -> Option<(Ms, E)> {
        let top = self.heap.peek().map(|e| e.at);
        if top != Some(self.now) && self.now <= until {
            if let Some(event) = self.fifo.pop_front() {
                self.processed += 1;
                return Some((self.now, event));
            }
        }
        if top? > until {
            return None;
        }
        let e = self.heap.pop()?;
        self.now = e.at;
        self.processed += 1;
        Some((e.at, e.event))
    }

    /// Events processed so far.
    pub fn processed(&self) -> u64 {
        self.processed
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.heap.len() + self.fifo.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty() && self.fifo.is_empty()
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
        /// The FIFO for events at the current time keeps the `(time,
        /// sequence)` order of a plain sorted queue, whatever the mix of
        /// same-time and later events, pops and schedules while handling.
        #[test]
        fn same_time_fifo_keeps_time_then_sequence(
            ops in proptest::collection::vec((0u64..4, 0u8..4, proptest::bool::ANY), 1..400),
            until_step in 0u64..3,
        ) {
            let mut q = EventQueue::new();
            let mut reference = std::collections::BTreeMap::new();
            let mut seq = 0u64;
            let mut now = 0u64;
            let mut until = 0u64;
            let mut n = 0u32;
            for (delay, pushes, pop) in ops {
                for k in 0..pushes {
                    // Some at now, some later, some in the past (run at now).
                    let at = match (delay, k) {
                        (0, _) => now,
                        (1, 0) => now.saturating_sub(5),
                        _ => now + delay * u64::from(k + 1),
                    };
                    q.schedule(Ms(at), n);
                    reference.insert((at.max(now), seq), n);
                    seq += 1;
                    n += 1;
                }
                if pop {
                    until += until_step;
                    let want = reference
                        .first_key_value()
                        .filter(|(&(at, _), _)| at <= until)
                        .map(|(&(at, s), &e)| (at, s, e));
                    let got = q.pop_until(Ms(until));
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
            proptest::prop_assert_eq!(q.len(), reference.len());
            while let Some((&(at, _), &e)) = reference.first_key_value() {
                proptest::prop_assert_eq!(q.pop_until(Ms::MAX), Some((Ms(at), e)));
                reference.pop_first();
            }
            proptest::prop_assert!(q.is_empty());
        }
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
