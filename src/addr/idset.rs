//! `IdSet`: a set of small integer ids (addresses or /28 block indices) that
//! answers the two placement questions in constant time:
//!
//! - a uniformly random member (`nth` over a dense vector), and
//! - the lowest member (a [`Bitmap`], so a /16 needs at most three word
//!   lookups).
//!
//! Insert and remove are O(1) (swap-remove in the dense vector plus bitmap
//! updates). This is what lets the allocator stay cheap on a fragmented /16.

/// Set of ids in `0..capacity`.
#[derive(Clone, Debug)]
pub struct IdSet {
    dense: Vec<u32>,
    /// Position of each id in `dense`, `u32::MAX` when absent.
    pos: Vec<u32>,
    /// The members as a bitmap (the lowest in a few word lookups).
    bits: Bitmap,
}

use crate::bitmap::Bitmap;

const ABSENT: u32 = u32::MAX;

impl IdSet {
    /// An empty set able to hold ids `0..capacity`.
    pub fn new(capacity: u32) -> Self {
        IdSet {
            dense: Vec::new(),
            pos: vec![ABSENT; capacity as usize],
            bits: Bitmap::with_capacity(capacity as usize),
        }
    }

    pub fn len(&self) -> usize {
        self.dense.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dense.is_empty()
    }

    pub fn contains(&self, id: u32) -> bool {
        self.pos.get(id as usize).is_some_and(|&p| p != ABSENT)
    }

    /// Inserts `id`; returns false if it was already present.
    pub fn insert(&mut self, id: u32) -> bool {
        if self.contains(id) {
            return false;
        }
        self.pos[id as usize] = self.dense.len() as u32;
        self.dense.push(id);
        self.bits.insert(id);
        true
    }

    /// Removes `id`; returns false if it was absent.
    pub fn remove(&mut self, id: u32) -> bool {
        if !self.contains(id) {
            return false;
        }
        let p = self.pos[id as usize] as usize;
        let last = *self.dense.last().expect("non-empty");
        self.dense.swap_remove(p);
        if last != id {
            self.pos[last as usize] = p as u32;
        }
        self.pos[id as usize] = ABSENT;
        self.bits.remove(id);
        true
    }

    /// The member at dense position `i` (`i < len()`); with a uniform `i`
    /// this is a uniform random member. The dense order depends only on the
    /// sequence of inserts and removes, so it is deterministic.
    pub fn nth(&self, i: usize) -> u32 {
        self.dense[i]
    }

    /// The lowest member.
    pub fn min(&self) -> Option<u32> {
        self.bits.first()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_remove_min_nth() {
        let mut s = IdSet::new(70_000);
        assert_eq!(s.min(), None);
        for id in [65_535, 5, 4096, 64, 63] {
            assert!(s.insert(id));
        }
        assert!(!s.insert(5));
        assert_eq!(s.len(), 5);
        assert_eq!(s.min(), Some(5));
        assert!(s.remove(5));
        assert!(!s.remove(5));
        assert_eq!(s.min(), Some(63));
        s.remove(63);
        s.remove(64);
        assert_eq!(s.min(), Some(4096));
        s.remove(4096);
        assert_eq!(s.min(), Some(65_535));
        assert_eq!(s.nth(0), 65_535);
        s.remove(65_535);
        assert!(s.is_empty());
        assert_eq!(s.min(), None);
    }

    #[test]
    fn tiny_capacity() {
        let mut s = IdSet::new(1);
        assert!(s.insert(0));
        assert_eq!(s.min(), Some(0));
        assert!(s.contains(0));
        assert!(!s.contains(1));
    }

    #[test]
    fn min_matches_model_after_random_ops() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut s = IdSet::new(5000);
        let mut model = std::collections::BTreeSet::new();
        for _ in 0..20_000 {
            let id = rng.gen_range(0..5000);
            if rng.gen_bool(0.5) {
                assert_eq!(s.insert(id), model.insert(id));
            } else {
                assert_eq!(s.remove(id), model.remove(&id));
            }
            assert_eq!(s.min(), model.iter().next().copied());
            assert_eq!(s.len(), model.len());
        }
    }
}
