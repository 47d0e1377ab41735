//! `Bitmap`: a growable set of small integer ids as a hierarchy of bit
//! words: `levels[0]` has one bit per id, each further level one bit per
//! non-zero word of the level below, up to a single word. Insert and remove
//! touch one word per level at most (usually one); the lowest member, the
//! next member after an id and the previous one before it are a few word
//! lookups, whatever the number of ids.
//!
//! Used for the address space's free sets ([`crate::addr::idset`]) and the
//! scheduler's index of Ready nodes ([`crate::cluster::scheduler`]), where
//! node ids grow through a run: the bitmap grows to the largest id put in.

/// A set of ids, growing to hold the largest inserted.
#[derive(Clone, Debug, Default)]
pub struct Bitmap {
    /// Empty until the first insert (or `with_capacity`); then the last
    /// level is a single word.
    levels: Vec<Vec<u64>>,
}

impl Bitmap {
    /// An empty set with room for ids `0..capacity` without growing.
    pub fn with_capacity(capacity: usize) -> Self {
        let mut b = Bitmap::default();
        b.grow(capacity.max(1));
        b
    }

    /// Room for ids `0..capacity`: every level long enough, and levels
    /// added on top (each new one summarizing the one below) until the last
    /// is a single word.
    fn grow(&mut self, capacity: usize) {
        let mut n = capacity;
        let mut k = 0;
        loop {
            let words = n.div_ceil(64).max(1);
            if k == self.levels.len() {
                let mut level = vec![0u64; words];
                if k > 0 {
                    for (w, &word) in self.levels[k - 1].iter().enumerate() {
                        if word != 0 {
                            level[w / 64] |= 1 << (w % 64);
                        }
                    }
                }
                self.levels.push(level);
            } else if self.levels[k].len() < words {
                self.levels[k].resize(words, 0);
            }
            if self.levels[k].len() == 1 {
                break;
            }
            n = self.levels[k].len();
            k += 1;
        }
    }

    /// Words held (memory, in 8-byte units).
    pub fn words(&self) -> usize {
        self.levels.iter().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.levels.last().is_none_or(|top| top[0] == 0)
    }

    pub fn contains(&self, id: u32) -> bool {
        let i = id as usize;
        self.levels
            .first()
            .and_then(|l| l.get(i / 64))
            .is_some_and(|&w| w & (1 << (i % 64)) != 0)
    }

    /// Inserts `id`; false if it was there. Inlined: a bit set in the
    /// leaf word, and the levels above only when the word was empty (the
    /// scheduler's index moves a node on every bind and delete).
    #[inline]
    pub fn insert(&mut self, id: u32) -> bool {
        let i = id as usize;
        let Some(word) = self.levels.first_mut().and_then(|l| l.get_mut(i / 64)) else {
            return self.insert_growing(id);
        };
        let bit = 1u64 << (i % 64);
        if *word & bit != 0 {
            return false;
        }
        let was_zero = *word == 0;
        *word |= bit;
        if was_zero {
            self.mark_above(i / 64);
        }
        true
    }

    /// `insert` beyond the ids held so far.
    #[cold]
    fn insert_growing(&mut self, id: u32) -> bool {
        self.grow(id as usize + 1);
        self.insert(id)
    }

    /// Word `w` of the leaf level became non-empty: its bit, and the bits
    /// of the words above that were empty.
    fn mark_above(&mut self, w: usize) {
        let mut i = w;
        for level in self.levels.iter_mut().skip(1) {
            let (w, b) = (i / 64, i % 64);
            let was_zero = level[w] == 0;
            level[w] |= 1 << b;
            if !was_zero {
                break;
            }
            i = w;
        }
    }

    /// Removes `id`; false if it was not there. Inlined, as `insert`.
    #[inline]
    pub fn remove(&mut self, id: u32) -> bool {
        let i = id as usize;
        let Some(word) = self.levels.first_mut().and_then(|l| l.get_mut(i / 64)) else {
            return false;
        };
        let bit = 1u64 << (i % 64);
        if *word & bit == 0 {
            return false;
        }
        *word &= !bit;
        if *word == 0 {
            self.clear_above(i / 64);
        }
        true
    }

    /// Word `w` of the leaf level became empty: its bit cleared above, and
    /// the bits of the words above that became empty.
    fn clear_above(&mut self, w: usize) {
        let mut i = w;
        for level in self.levels.iter_mut().skip(1) {
            let (w, b) = (i / 64, i % 64);
            level[w] &= !(1 << b);
            if level[w] != 0 {
                break;
            }
            i = w;
        }
    }

    /// The lowest member.
    pub fn first(&self) -> Option<u32> {
        if self.is_empty() {
            return None;
        }
        // Down from the single top word through each lowest set bit.
        let mut i = 0usize;
        for level in self.levels.iter().rev() {
            i = i * 64 + level[i].trailing_zeros() as usize;
        }
        Some(i as u32)
    }

    /// The highest member.
    pub fn last(&self) -> Option<u32> {
        if self.is_empty() {
            return None;
        }
        let mut i = 0usize;
        for level in self.levels.iter().rev() {
            i = i * 64 + 63 - level[i].leading_zeros() as usize;
        }
        Some(i as u32)
    }

    /// The lowest member at or above `from`.
    pub fn next_from(&self, from: u32) -> Option<u32> {
        let mut i = from as usize;
        let mut k = 0;
        // Up while the rest of the word at this level is empty.
        loop {
            let level = self.levels.get(k)?;
            let w = i / 64;
            let bits = level.get(w)? & (!0u64 << (i % 64));
            if bits != 0 {
                i = w * 64 + bits.trailing_zeros() as usize;
                break;
            }
            i = w + 1;
            k += 1;
        }
        // Down through the lowest set bit of each word.
        while k > 0 {
            k -= 1;
            i = i * 64 + self.levels[k][i].trailing_zeros() as usize;
        }
        Some(i as u32)
    }

    /// The highest member at or below `upto`.
    pub fn prev_from(&self, upto: u32) -> Option<u32> {
        let mut i = upto as usize;
        let mut k = 0;
        loop {
            let level = self.levels.get(k)?;
            let (w, bits) = match level.get(i / 64) {
                Some(&word) => (i / 64, word & (!0u64 >> (63 - i % 64))),
                // Past this level's end: all of it is below `upto`.
                None => (level.len() - 1, level[level.len() - 1]),
            };
            if bits != 0 {
                i = w * 64 + 63 - bits.leading_zeros() as usize;
                break;
            }
            if w == 0 {
                return None;
            }
            i = w - 1;
            k += 1;
        }
        while k > 0 {
            k -= 1;
            i = i * 64 + 63 - self.levels[k][i].leading_zeros() as usize;
        }
        Some(i as u32)
    }

    /// The lowest member for which `pred` holds, trying members in
    /// ascending order (a loop over words, no iterator adaptors: the
    /// scheduler's first fit).
    #[inline]
    pub fn find(&self, mut pred: impl FnMut(u32) -> bool) -> Option<u32> {
        let leaf = self.levels.first()?;
        let mut w = 0usize;
        let mut bits = leaf[0];
        loop {
            while bits != 0 {
                let id = (w * 64) as u32 + bits.trailing_zeros();
                if pred(id) {
                    return Some(id);
                }
                bits &= bits - 1;
            }
            let next = self.next_from(u32::try_from((w + 1) * 64).ok()?)? as usize;
            w = next / 64;
            bits = leaf[w] & (!0u64 << (next % 64));
        }
    }

    /// Members, ascending: a word's bits one by one, the next non-empty
    /// word found through the levels above.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        let mut w = 0usize;
        let mut bits = self.levels.first().map_or(0, |l| l[0]);
        std::iter::from_fn(move || {
            if bits == 0 {
                let next = self.next_from(u32::try_from((w + 1) * 64).ok()?)? as usize;
                w = next / 64;
                bits = self.levels[0][w] & (!0u64 << (next % 64));
            }
            let b = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            Some((w * 64 + b) as u32)
        })
    }

    /// Members, descending.
    pub fn iter_rev(&self) -> impl Iterator<Item = u32> + '_ {
        let leaf = self.levels.first().map_or(&[][..], |l| &l[..]);
        let mut w = leaf.len().saturating_sub(1);
        let mut bits = leaf.last().copied().unwrap_or(0);
        std::iter::from_fn(move || {
            if bits == 0 {
                let prev = self.prev_from(u32::try_from((w * 64).checked_sub(1)?).ok()?)? as usize;
                w = prev / 64;
                bits = leaf[w] & (!0u64 >> (63 - prev % 64));
            }
            let b = 63 - bits.leading_zeros() as usize;
            bits &= !(1 << b);
            Some((w * 64 + b) as u32)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn grows_and_answers_at_the_edges() {
        let mut b = Bitmap::default();
        assert!(b.is_empty());
        assert_eq!((b.first(), b.last()), (None, None));
        assert_eq!(b.next_from(5), None);
        assert_eq!(b.prev_from(5), None);
        assert!(!b.remove(3));
        assert!(b.insert(0));
        assert!(b.insert(70_000)); // a third level
        assert!(!b.insert(70_000));
        assert_eq!(b.levels.len(), 3);
        assert!(b.insert(4095));
        assert!(b.insert(u32::MAX >> 6)); // a fifth level
        assert_eq!(b.levels.len(), 5);
        assert!(b.contains(0) && b.contains(70_000) && !b.contains(1));
        assert_eq!(b.first(), Some(0));
        assert_eq!(b.next_from(1), Some(4095));
        assert_eq!(b.next_from(4096), Some(70_000));
        assert_eq!(b.next_from(70_001), Some(u32::MAX >> 6));
        assert_eq!(b.next_from((u32::MAX >> 6) + 1), None);
        assert_eq!(b.prev_from(u32::MAX), Some(u32::MAX >> 6));
        assert_eq!(b.prev_from(69_999), Some(4095));
        assert_eq!(b.prev_from(4094), Some(0));
        assert!(b.remove(0));
        assert_eq!(b.prev_from(4094), None);
        let all: Vec<u32> = b.iter().collect();
        assert_eq!(all, [4095, 70_000, u32::MAX >> 6]);
        let rev: Vec<u32> = b.iter_rev().collect();
        assert_eq!(rev, [u32::MAX >> 6, 70_000, 4095]);
        for x in all {
            assert!(b.remove(x));
        }
        assert!(b.is_empty());
    }

    proptest::proptest! {
        /// Any mix of inserts and removals holds and orders what a
        /// `BTreeSet` does; next and previous from any point agree.
        #[test]
        fn is_a_sorted_set(
            ops in proptest::collection::vec((0u8..5, 0u32..300_000), 0..2000),
            probes in proptest::collection::vec(0u32..300_100, 0..50),
        ) {
            let mut b = Bitmap::default();
            let mut set = BTreeSet::new();
            for (op, n) in ops {
                // Half the ids in a narrow range (shared words), half wide.
                let n = if op % 2 == 0 { n % 700 } else { n };
                if op < 3 {
                    proptest::prop_assert_eq!(b.insert(n), set.insert(n));
                } else {
                    proptest::prop_assert_eq!(b.remove(n), set.remove(&n));
                }
            }
            proptest::prop_assert_eq!(b.is_empty(), set.is_empty());
            proptest::prop_assert!(b.iter().eq(set.iter().copied()));
            proptest::prop_assert!(b.iter_rev().eq(set.iter().rev().copied()));
            let some: Vec<u32> = set.iter().copied().filter(|x| x % 3 == 1).collect();
            proptest::prop_assert_eq!(b.find(|x| x % 3 == 1), some.first().copied());
            proptest::prop_assert_eq!(b.find(|_| false), None);
            for p in probes {
                proptest::prop_assert_eq!(b.next_from(p), set.range(p..).next().copied());
                proptest::prop_assert_eq!(b.prev_from(p), set.range(..=p).next_back().copied());
                proptest::prop_assert_eq!(b.contains(p), set.contains(&p));
            }
        }
    }
}
