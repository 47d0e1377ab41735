//! kube-scheduler's node choice as a placement policy over an index of
//! Ready nodes ordered by allocation, so binding a pod does not scan every
//! node (docs/sources.md §6: `NodeResourcesFit`, LeastAllocated by default).

use std::collections::BTreeSet;

use super::spec::Scoring;
use crate::bitmap::Bitmap;

/// Index keys below this have a bucket each; larger keys (only possible
/// for a node with no allocatable CPU or memory, or over-committed) go to
/// an ordered set.
const BUCKETS: usize = 2048;

/// The scheduler's index of Ready nodes: `(key, node)` pairs in ascending
/// order, as a `BTreeSet<(u64, u32)>` would hold them, but bucketed by key
/// (a key is at most 2000 per-mille for a node within its allocatable):
/// an empty bucket costs a bit, not a visit, and a bucket is a [`Bitmap`]
/// of node ids, so a node's move to a new key is two bit flips, with no
/// search and no shifting of ids. Keys are few in a real fleet
/// (bench-large: 3 to 15 buckets hold every node, up to 2,800 in one).
#[derive(Clone, Debug)]
pub struct ReadyIndex {
    buckets: Vec<Bitmap>,
    /// Bit k: bucket k is not empty.
    nonempty: [u64; BUCKETS / 64],
    /// Keys from `BUCKETS` up.
    high: BTreeSet<(u64, u32)>,
    len: usize,
    /// Emptied buckets' bitmaps (all zero, sized for the ids they held),
    /// taken by a bucket that fills again: memory stays that of the
    /// non-empty buckets and `SPARE` more, not of every key ever used.
    spare: Vec<Bitmap>,
}

/// Most emptied bitmaps kept for reuse.
const SPARE: usize = 16;

impl Default for ReadyIndex {
    fn default() -> Self {
        ReadyIndex {
            buckets: vec![Bitmap::default(); BUCKETS],
            nonempty: [0; BUCKETS / 64],
            high: BTreeSet::new(),
            len: 0,
            spare: Vec::new(),
        }
    }
}

impl ReadyIndex {
    /// Adds `(key, node)`; false if it was there.
    #[inline]
    pub fn insert(&mut self, (key, n): (u64, u32)) -> bool {
        let added = match usize::try_from(key).ok().filter(|&k| k < BUCKETS) {
            Some(b) => {
                let bit = 1 << (b % 64);
                if self.nonempty[b / 64] & bit == 0 {
                    self.nonempty[b / 64] |= bit;
                    if let Some(bits) = self.spare.pop() {
                        self.buckets[b] = bits;
                    }
                }
                self.buckets[b].insert(n)
            }
            None => self.high.insert((key, n)),
        };
        self.len += usize::from(added);
        added
    }

    /// Removes `(key, node)`; false if it was not there.
    #[inline]
    pub fn remove(&mut self, &(key, n): &(u64, u32)) -> bool {
        let removed = match usize::try_from(key).ok().filter(|&k| k < BUCKETS) {
            Some(b) => {
                let set = &mut self.buckets[b];
                let removed = set.remove(n);
                if removed && set.is_empty() {
                    self.nonempty[b / 64] &= !(1 << (b % 64));
                    let bits = std::mem::take(set);
                    if self.spare.len() < SPARE {
                        self.spare.push(bits);
                    }
                }
                removed
            }
            None => self.high.remove(&(key, n)),
        };
        self.len -= usize::from(removed);
        removed
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Ascending `(key, node)`.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.nonempty
            .iter()
            .enumerate()
            .flat_map(|(w, &bits)| Bits(bits).map(move |b| w * 64 + b))
            .flat_map(|b| self.buckets[b].iter().map(move |n| (b as u64, n)))
            .chain(self.high.iter().copied())
    }

    /// The first `(key, node)` in ascending order whose node `pred`
    /// accepts: `iter().find(..)`, as word loops.
    pub fn find(&self, mut pred: impl FnMut(u32) -> bool) -> Option<(u64, u32)> {
        for (w, &word) in self.nonempty.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let b = w * 64 + bits.trailing_zeros() as usize;
                if let Some(n) = self.buckets[b].find(&mut pred) {
                    return Some((b as u64, n));
                }
                bits &= bits - 1;
            }
        }
        self.high.iter().copied().find(|&(_, n)| pred(n))
    }

    /// Descending `(key, node)`.
    pub fn iter_rev(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.high.iter().rev().copied().chain(
            self.nonempty
                .iter()
                .enumerate()
                .rev()
                .flat_map(|(w, &bits)| BitsRev(bits).map(move |b| w * 64 + b))
                .flat_map(|b| self.buckets[b].iter_rev().map(move |n| (b as u64, n))),
        )
    }

    /// Bitmaps holding memory (non-empty buckets and spares).
    #[cfg(test)]
    fn bitmaps_held(&self) -> usize {
        self.nonempty
            .iter()
            .map(|w| w.count_ones() as usize)
            .sum::<usize>()
            + self.spare.len()
    }
}

impl FromIterator<(u64, u32)> for ReadyIndex {
    fn from_iter<I: IntoIterator<Item = (u64, u32)>>(it: I) -> Self {
        let mut x = ReadyIndex::default();
        for e in it {
            x.insert(e);
        }
        x
    }
}

/// The set bits of a word, lowest first.
struct Bits(u64);

impl Iterator for Bits {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        (self.0 != 0).then(|| {
            let b = self.0.trailing_zeros() as usize;
            self.0 &= self.0 - 1;
            b
        })
    }
}

/// The set bits of a word, highest first.
struct BitsRev(u64);

impl Iterator for BitsRev {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        (self.0 != 0).then(|| {
            let b = 63 - self.0.leading_zeros() as usize;
            self.0 &= !(1 << b);
            b
        })
    }
}

/// A node's schedulable capacity and use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capacity {
    pub cpu_alloc: u64,
    pub mem_alloc: u64,
    pub cpu_used: u64,
    pub mem_used: u64,
    pub pods: u32,
    pub max_pods: u32,
    /// Branch ENIs (`vpc.amazonaws.com/pod-eni`): advertised and used by
    /// pods with security groups.
    pub branch_max: u32,
    pub branch_used: u32,
}

impl Capacity {
    /// A fresh node of this type: nothing requested, the DaemonSet pods
    /// counted, no branch ENIs advertised yet.
    pub fn fresh(t: &crate::catalog::InstanceType, max_pods: u32, daemonset_pods: u32) -> Self {
        Capacity {
            cpu_alloc: t.allocatable_cpu_millis.unwrap_or(0),
            mem_alloc: t.allocatable_memory_mib.unwrap_or(0),
            cpu_used: 0,
            mem_used: 0,
            pods: daemonset_pods,
            max_pods,
            branch_max: 0,
            branch_used: 0,
        }
    }

    /// Allocation score: requested CPU and memory fractions, in per-mille,
    /// summed (the `NodeResourcesFit` score with equal weights).
    pub fn key(&self) -> u64 {
        self.cpu_used * 1000 / self.cpu_alloc.max(1) + self.mem_used * 1000 / self.mem_alloc.max(1)
    }

    /// `key()` without a division: by the reciprocals of the allocatable
    /// CPU and memory (`KeyDivisors::of` this capacity; they never change
    /// after launch). The same value, exactly.
    #[inline]
    pub fn key_by(&self, k: &KeyDivisors) -> u64 {
        let key = div_by(self.cpu_used * 1000, self.cpu_alloc.max(1), k.cpu)
            + div_by(self.mem_used * 1000, self.mem_alloc.max(1), k.mem);
        debug_assert_eq!(key, self.key());
        key
    }

    /// Room for a pod requesting `cpu`/`mem` (and a branch ENI when
    /// `branch`).
    pub fn fits(&self, cpu: u64, mem: u64, branch: bool) -> bool {
        self.pods < self.max_pods
            && self.cpu_used + cpu <= self.cpu_alloc
            && self.mem_used + mem <= self.mem_alloc
            && (!branch || self.branch_used < self.branch_max)
    }
}

/// A node's `Capacity::key_by` reciprocals: `floor(2^64 / d) + 1` of its
/// allocatable CPU and memory `d` (0 for `d` = 1 or `d` ≥ 2^32).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyDivisors {
    cpu: u64,
    mem: u64,
}

impl KeyDivisors {
    pub fn of(c: &Capacity) -> Self {
        KeyDivisors {
            cpu: reciprocal(c.cpu_alloc.max(1)),
            mem: reciprocal(c.mem_alloc.max(1)),
        }
    }
}

fn reciprocal(d: u64) -> u64 {
    if (2..1 << 32).contains(&d) {
        u64::MAX / d + 1
    } else {
        0
    }
}

/// `n / d` by `m = reciprocal(d)`: exact for `n` and `d` below 2^32 (the
/// error of `m`, under `d`, times `n` stays under 2^64, so it never
/// reaches the next integer: Granlund and Montgomery, "Division by
/// invariant integers using multiplication", 1994); a real division
/// otherwise. A 64-bit division costs tens of cycles, and every bind and
/// delete takes two.
#[inline]
fn div_by(n: u64, d: u64, m: u64) -> u64 {
    if m != 0 && n < 1 << 32 {
        ((u128::from(n) * u128::from(m)) >> 64) as u64
    } else {
        n / d
    }
}

/// A placement policy: which Ready node a pod goes to.
pub trait Placement {
    /// The node for a pod requesting `cpu`/`mem`, among `index` entries
    /// `(key, node)`; `cap` gives a node's capacity. Generic over `cap`,
    /// so that the fit test, run on several nodes a choice, is inlined.
    fn choose<F: Fn(u32) -> Capacity>(
        &self,
        index: &ReadyIndex,
        cpu: u64,
        mem: u64,
        branch: bool,
        cap: F,
    ) -> Option<u32>;
}

/// The policy `scheduler.scoring` chooses (an enum, not a trait object,
/// so the choice is inlined with its fit test).
#[derive(Clone, Copy, Debug)]
pub enum Policy {
    /// Least allocated first (spreads); ties: lowest node id (the real
    /// scheduler picks at random among equal scores).
    LeastAllocated,
    /// Most allocated first (packs); ties: lowest node id.
    MostAllocated,
}

impl Placement for Policy {
    fn choose<F: Fn(u32) -> Capacity>(
        &self,
        index: &ReadyIndex,
        cpu: u64,
        mem: u64,
        branch: bool,
        cap: F,
    ) -> Option<u32> {
        let fits = |n: u32| cap(n).fits(cpu, mem, branch);
        match self {
            Policy::LeastAllocated => index.find(fits).map(|(_, n)| n),
            Policy::MostAllocated => {
                // Highest key first; among equal keys, lowest node id.
                let mut best: Option<(u64, u32)> = None;
                for (k, n) in index.iter_rev() {
                    if best.is_some_and(|(bk, _)| k < bk) {
                        break;
                    }
                    if fits(n) {
                        best = Some((k, n));
                    }
                }
                best.map(|(_, n)| n)
            }
        }
    }
}

/// The policy for a scoring setting.
pub fn policy(s: Scoring) -> Policy {
    match s {
        Scoring::LeastAllocated => Policy::LeastAllocated,
        Scoring::MostAllocated => Policy::MostAllocated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The index holds and orders what a `BTreeSet` would, forwards and
        /// backwards, through any mix of inserts and removals (keys past
        /// the last bucket included).
        #[test]
        fn index_is_a_sorted_set(
            ops in proptest::collection::vec((0u8..5, 0u64..2200, 0u32..1000), 0..3000),
        ) {
            let mut index = ReadyIndex::default();
            let mut set = std::collections::BTreeSet::new();
            for (op, k, n) in ops {
                // Mostly a few keys (buckets large enough to split into
                // runs), some spread, some past the buckets.
                let k = match k {
                    2100.. => u64::MAX - k,
                    1000.. => k % 3,
                    _ => k,
                };
                let add = op < 3;
                if add {
                    proptest::prop_assert_eq!(index.insert((k, n)), set.insert((k, n)));
                } else {
                    proptest::prop_assert_eq!(index.remove(&(k, n)), set.remove(&(k, n)));
                }
                proptest::prop_assert_eq!(index.len(), set.len());
            }
            proptest::prop_assert!(index.iter().eq(set.iter().copied()));
            let odd = set.iter().copied().find(|&(_, n)| n % 2 == 1);
            proptest::prop_assert_eq!(index.find(|n| n % 2 == 1), odd);
            proptest::prop_assert!(index.iter_rev().eq(set.iter().rev().copied()));
        }
    }

    /// A node moving through every key leaves no memory behind in the
    /// buckets it left: what is held is the non-empty buckets and a few
    /// spares (without the spares' cap, one bitmap per key ever used).
    #[test]
    fn emptied_buckets_give_their_memory_back() {
        let mut index = ReadyIndex::default();
        index.insert((0, 100_000));
        for k in 1..BUCKETS as u64 {
            assert!(index.remove(&(k - 1, 100_000)));
            assert!(index.insert((k, 100_000)));
        }
        assert_eq!(index.len(), 1);
        assert!(
            index.bitmaps_held() <= 1 + SPARE,
            "{}",
            index.bitmaps_held()
        );
        let sized = index
            .buckets
            .iter()
            .filter(|b| b.is_empty() && b.words() > 0)
            .count();
        assert_eq!(sized, 0, "emptied buckets keep no bitmap");
    }

    proptest::proptest! {
        /// The key by reciprocals is the key by division, for any
        /// allocatable and use (near the 2^32 edges too).
        #[test]
        fn key_by_reciprocals_is_exact(
            cpu_alloc in proptest::prop_oneof![0u64..5, 1u64..200_000, (1u64 << 32) - 3..(1u64 << 32) + 3],
            mem_alloc in proptest::prop_oneof![0u64..5, 1u64..2_000_000, (1u64 << 32) - 3..(1u64 << 32) + 3],
            cpu_used in proptest::prop_oneof![0u64..400_000, 4_294_960u64..4_294_980],
            mem_used in 0u64..10_000_000,
        ) {
            let c = Capacity { cpu_alloc, mem_alloc, cpu_used, mem_used, ..Capacity::default() };
            proptest::prop_assert_eq!(c.key_by(&KeyDivisors::of(&c)), c.key());
        }
    }

    #[test]
    fn key_by_reciprocals_at_every_small_divisor() {
        for d in 1..3000u64 {
            let m = reciprocal(d);
            for n in (0..20_000u64).chain([(1 << 32) - 1, 1 << 32, u64::MAX / 1001]) {
                assert_eq!(div_by(n, d, m), n / d, "{n} / {d}");
            }
        }
    }

    #[test]
    fn least_spreads_most_packs() {
        let caps = [
            Capacity {
                cpu_alloc: 1000,
                mem_alloc: 1000,
                cpu_used: 500,
                mem_used: 0,
                pods: 1,
                max_pods: 10,
                branch_max: 0,
                branch_used: 0,
            },
            Capacity {
                cpu_alloc: 1000,
                mem_alloc: 1000,
                cpu_used: 0,
                mem_used: 0,
                pods: 0,
                max_pods: 10,
                branch_max: 2,
                branch_used: 2,
            },
            Capacity {
                cpu_alloc: 1000,
                mem_alloc: 1000,
                cpu_used: 900,
                mem_used: 0,
                pods: 9,
                max_pods: 10,
                branch_max: 5,
                branch_used: 0,
            },
        ];
        let index: ReadyIndex = caps
            .iter()
            .enumerate()
            .map(|(i, c)| (c.key(), i as u32))
            .collect();
        let cap = |n: u32| caps[n as usize];
        assert_eq!(
            Policy::LeastAllocated.choose(&index, 100, 0, false, cap),
            Some(1)
        );
        assert_eq!(
            Policy::MostAllocated.choose(&index, 100, 0, false, cap),
            Some(2)
        );
        // Node 2 cannot take 200m more: the next most allocated.
        assert_eq!(
            Policy::MostAllocated.choose(&index, 200, 0, false, cap),
            Some(0)
        );
        assert_eq!(
            Policy::LeastAllocated.choose(&index, 2000, 0, false, cap),
            None
        );
        // A pod with security groups needs a free branch ENI: node 1 has
        // used its 2, node 0 has none; node 2 has room.
        assert_eq!(
            Policy::LeastAllocated.choose(&index, 100, 0, true, cap),
            Some(2)
        );
    }
}
