//! One VPC subnet's IPv4 space, address by address, with the views the
//! simulator reads after every event kept current incrementally.
//!
//! Vocabulary and classification follow AWS support's subnet analyzer
//! (`subnet_frag.py`, docs/sources.md §2); the address rules follow the VPC
//! user guide (§1). This module knows nothing of ENIs, nodes or pods: it
//! only marks addresses and /28 blocks taken or free and answers placement
//! questions. Ownership lives one layer up, in [`crate::addr::ec2`].

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use rand::Rng;
use serde::Serialize;

use super::idset::IdSet;
use super::placement::Placement;
use super::{AddrError, Reservation, ReservationType};

/// Addresses in a /28 block.
pub const BLOCK: u32 = 16;

/// A /28 block's class, first match wins (analyzer order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum BlockClass {
    /// The block is a delegated prefix.
    PrefixAllocated,
    /// The block holds one of the five AWS-reserved addresses.
    HasReserved,
    /// No address of the block is used.
    Free,
    /// Every address of the block is used.
    Full,
    /// Some used, some free.
    Fragmented,
}

impl BlockClass {
    pub const ALL: [BlockClass; 5] = [
        BlockClass::PrefixAllocated,
        BlockClass::HasReserved,
        BlockClass::Free,
        BlockClass::Full,
        BlockClass::Fragmented,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BlockClass::PrefixAllocated => "prefix_allocated",
            BlockClass::HasReserved => "has_reserved",
            BlockClass::Free => "free",
            BlockClass::Full => "full",
            BlockClass::Fragmented => "fragmented",
        }
    }

    fn idx(self) -> usize {
        self as usize
    }
}

/// Which prefix-delegation pool a block can be served from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pool {
    /// No address of the block is in a reservation.
    Open,
    /// The whole block lies inside one `prefix` reservation.
    PrefixReserved,
    /// Touches an `explicit` reservation, or only part of it is reserved,
    /// or it holds an AWS-reserved address: never delegated automatically.
    Never,
}

/// Per-address reservation tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AddrRes {
    None,
    Prefix,
    Explicit,
}

/// Counts and scores of one subnet at one moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SubnetStats {
    pub total_ips: u32,
    /// Neither used, nor AWS-reserved, nor inside a delegated prefix.
    pub free_ips: u32,
    /// Single addresses (/32) in use: ENI primaries and secondaries.
    pub used_ips: u32,
    pub aws_reserved_ips: u32,
    pub prefixes: u32,
    pub total_blocks: u32,
    pub free_blocks: u32,
    pub fragmented_blocks: u32,
    pub full_blocks: u32,
    pub reserved_blocks: u32,
    pub prefix_allocated_blocks: u32,
    /// Blocks overlapping any CIDR reservation, whatever their class.
    pub in_reservation_blocks: u32,
    /// Blocks a prefix request could be given now, reservations respected.
    pub delegatable_blocks: u32,
    /// Prefix length of the largest naturally aligned run of free blocks.
    pub largest_free_run: Option<u8>,
    /// `ceil((fragmented + full) / (free + fragmented + full) * 100)`.
    pub fragmentation_score: Option<u32>,
}

/// The analyzer's severity band for a score (§2).
pub fn score_band(score: Option<u32>, fragmented_blocks: u32) -> &'static str {
    match score {
        None => "N/A",
        Some(100) if fragmented_blocks == 0 => "EXHAUSTED",
        Some(100) => "CRITICAL",
        Some(s) if s >= 75 => "HIGH",
        Some(s) if s >= 50 => "MEDIUM",
        Some(s) if s >= 25 => "LOW",
        Some(_) => "HEALTHY",
    }
}

/// Fragmentation score exactly as the analyzer computes it.
pub fn fragmentation_score(free: u32, fragmented: u32, full: u32) -> Option<u32> {
    let denom = free + fragmented + full;
    if denom == 0 {
        None
    } else {
        Some(((fragmented + full) * 100).div_ceil(denom))
    }
}

/// Complete binary tree over blocks counting all-free aligned runs per
/// level, so the largest free aligned run is known after O(log n) work per
/// block change.
#[derive(Clone, Debug)]
struct FreeRuns {
    /// `levels[k][i]`: the 2^k blocks starting at `i * 2^k` are all free.
    levels: Vec<Vec<bool>>,
    counts: Vec<u32>,
}

impl FreeRuns {
    fn new(nblocks: u32) -> Self {
        let mut levels = Vec::new();
        let mut n = nblocks as usize;
        loop {
            levels.push(vec![false; n]);
            if n <= 1 {
                break;
            }
            n /= 2;
        }
        let counts = vec![0; levels.len()];
        FreeRuns { levels, counts }
    }

    fn set(&mut self, block: u32, free: bool) {
        let mut i = block as usize;
        let mut val = free;
        for k in 0..self.levels.len() {
            if self.levels[k][i] == val {
                return;
            }
            self.levels[k][i] = val;
            if val {
                self.counts[k] += 1;
            } else {
                self.counts[k] -= 1;
            }
            if k + 1 == self.levels.len() {
                break;
            }
            let sib = i ^ 1;
            val = self.levels[k][i] && self.levels[k][sib];
            i /= 2;
        }
    }

    /// Largest `k` with an all-free aligned run of 2^k blocks.
    fn largest_level(&self) -> Option<u32> {
        (0..self.counts.len())
            .rev()
            .find(|&k| self.counts[k] > 0)
            .map(|k| k as u32)
    }
}

/// One subnet.
#[derive(Clone, Debug)]
pub struct Subnet {
    cidr: Ipv4Net,
    base: u32,
    size: u32,
    reservations: Vec<Reservation>,
    has_prefix_reservation: bool,
    addr_res: Vec<AddrRes>,
    /// Per block: bit i set when address i of the block is used as a /32.
    used: Vec<u16>,
    aws_mask: Vec<u16>,
    prefix: Vec<bool>,
    pool: Vec<Pool>,
    in_reservation: Vec<bool>,
    class: Vec<BlockClass>,
    free_ips_open: IdSet,
    free_ips_prefix_res: IdSet,
    free_blocks_open: IdSet,
    free_blocks_res: IdSet,
    class_counts: [u32; 5],
    in_reservation_blocks: u32,
    free_ips: u32,
    used_ips: u32,
    prefixes: u32,
    runs: FreeRuns,
}

impl Subnet {
    /// A subnet of `/16` to `/28` with its CIDR reservations (validated:
    /// inside the subnet, no overlaps).
    pub fn new(cidr: Ipv4Net, reservations: Vec<Reservation>) -> Result<Self, AddrError> {
        let cidr = cidr.trunc();
        if !(16..=28).contains(&cidr.prefix_len()) {
            return Err(AddrError::SubnetSize(cidr));
        }
        for (i, r) in reservations.iter().enumerate() {
            if r.cidr.trunc() != r.cidr {
                return Err(AddrError::ReservationNotAligned(r.cidr));
            }
            if !cidr.contains(&r.cidr) {
                return Err(AddrError::ReservationOutside {
                    reservation: r.cidr,
                    subnet: cidr,
                });
            }
            for other in &reservations[..i] {
                if other.cidr.contains(&r.cidr.network()) || r.cidr.contains(&other.cidr.network())
                {
                    return Err(AddrError::ReservationOverlap(other.cidr, r.cidr));
                }
            }
        }
        let base = u32::from(cidr.network());
        let size = 1u32 << (32 - cidr.prefix_len());
        let nblocks = size / BLOCK;
        let mut addr_res = vec![AddrRes::None; size as usize];
        for r in &reservations {
            let start = u32::from(r.cidr.network()) - base;
            let len = 1u32 << (32 - r.cidr.prefix_len());
            let tag = match r.kind {
                ReservationType::Prefix => AddrRes::Prefix,
                ReservationType::Explicit => AddrRes::Explicit,
            };
            for a in start..start + len {
                addr_res[a as usize] = tag;
            }
        }
        let mut aws_mask = vec![0u16; nblocks as usize];
        for off in [0, 1, 2, 3, size - 1] {
            aws_mask[(off / BLOCK) as usize] |= 1 << (off % BLOCK);
        }
        let mut s = Subnet {
            cidr,
            base,
            size,
            has_prefix_reservation: reservations
                .iter()
                .any(|r| r.kind == ReservationType::Prefix),
            reservations,
            addr_res,
            used: vec![0; nblocks as usize],
            aws_mask,
            prefix: vec![false; nblocks as usize],
            pool: vec![Pool::Never; nblocks as usize],
            in_reservation: vec![false; nblocks as usize],
            class: vec![BlockClass::Free; nblocks as usize],
            free_ips_open: IdSet::new(size),
            free_ips_prefix_res: IdSet::new(size),
            free_blocks_open: IdSet::new(nblocks),
            free_blocks_res: IdSet::new(nblocks),
            class_counts: [0; 5],
            in_reservation_blocks: 0,
            free_ips: 0,
            used_ips: 0,
            prefixes: 0,
            runs: FreeRuns::new(nblocks),
        };
        for b in 0..nblocks {
            let tags = &s.addr_res[(b * BLOCK) as usize..((b + 1) * BLOCK) as usize];
            s.in_reservation[b as usize] = tags.iter().any(|&t| t != AddrRes::None);
            s.pool[b as usize] = if s.aws_mask[b as usize] != 0 {
                Pool::Never
            } else if tags.iter().all(|&t| t == AddrRes::None) {
                Pool::Open
            } else if tags.iter().all(|&t| t == AddrRes::Prefix) {
                Pool::PrefixReserved
            } else {
                Pool::Never
            };
            if s.in_reservation[b as usize] {
                s.in_reservation_blocks += 1;
            }
            let c = s.compute_class(b);
            s.class[b as usize] = c;
            s.class_counts[c.idx()] += 1;
            s.index_block(b, c);
        }
        for off in 0..size {
            if s.aws_mask[(off / BLOCK) as usize] & (1 << (off % BLOCK)) == 0 {
                s.free_ips += 1;
                s.index_ip(off, true);
            }
        }
        Ok(s)
    }

    pub fn cidr(&self) -> Ipv4Net {
        self.cidr
    }

    pub fn reservations(&self) -> &[Reservation] {
        &self.reservations
    }

    pub fn has_prefix_reservation(&self) -> bool {
        self.has_prefix_reservation
    }

    /// Number of addresses, AWS-reserved included.
    pub fn size(&self) -> u32 {
        self.size
    }

    pub fn num_blocks(&self) -> u32 {
        self.size / BLOCK
    }

    /// Offset of an address in this subnet.
    pub fn offset_of(&self, addr: Ipv4Addr) -> Option<u32> {
        let a = u32::from(addr);
        (a >= self.base && a - self.base < self.size).then(|| a - self.base)
    }

    pub fn addr_at(&self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.base + offset)
    }

    pub fn block_cidr(&self, block: u32) -> Ipv4Net {
        Ipv4Net::new(self.addr_at(block * BLOCK), 28).expect("valid /28")
    }

    /// The AWS-reserved offsets, ascending (a look at each block's mask,
    /// not at each address).
    pub fn aws_reserved(&self) -> impl Iterator<Item = u32> + '_ {
        self.aws_mask
            .iter()
            .enumerate()
            .filter(|(_, &m)| m != 0)
            .flat_map(|(b, &m)| {
                (0..BLOCK)
                    .filter(move |i| m & (1 << i) != 0)
                    .map(move |i| b as u32 * BLOCK + i)
            })
    }

    pub fn is_aws_reserved(&self, offset: u32) -> bool {
        self.aws_mask[(offset / BLOCK) as usize] & (1 << (offset % BLOCK)) != 0
    }

    pub fn is_used(&self, offset: u32) -> bool {
        self.used[(offset / BLOCK) as usize] & (1 << (offset % BLOCK)) != 0
    }

    pub fn is_prefix(&self, block: u32) -> bool {
        self.prefix[block as usize]
    }

    /// True when the address can be taken as a /32 now.
    pub fn is_ip_free(&self, offset: u32) -> bool {
        offset < self.size
            && !self.is_aws_reserved(offset)
            && !self.is_used(offset)
            && !self.prefix[(offset / BLOCK) as usize]
    }

    pub fn block_class(&self, block: u32) -> BlockClass {
        self.class[block as usize]
    }

    /// Every block's class, in address order (cheap to copy: one byte each).
    pub fn classes(&self) -> &[BlockClass] {
        &self.class
    }

    /// Per block: overlaps a CIDR reservation.
    pub fn in_reservation_map(&self) -> &[bool] {
        &self.in_reservation
    }

    pub fn block_in_reservation(&self, block: u32) -> bool {
        self.in_reservation[block as usize]
    }

    /// Used /32 addresses in a block.
    pub fn block_used(&self, block: u32) -> u32 {
        self.used[block as usize].count_ones()
    }

    /// Free addresses in a block (the analyzer's `free` column).
    pub fn block_free(&self, block: u32) -> u32 {
        if self.prefix[block as usize] {
            0
        } else {
            BLOCK - (self.used[block as usize] | self.aws_mask[block as usize]).count_ones()
        }
    }

    pub fn free_ips(&self) -> u32 {
        self.free_ips
    }

    pub fn class_count(&self, c: BlockClass) -> u32 {
        self.class_counts[c.idx()]
    }

    /// Blocks a prefix request could be served from now. With prefix
    /// reservations and no fallback, only the reservations count.
    pub fn delegatable_blocks(&self, fallback: bool) -> u32 {
        let open = if !self.has_prefix_reservation || fallback {
            self.free_blocks_open.len()
        } else {
            0
        };
        (self.free_blocks_res.len() + open) as u32
    }

    pub fn stats(&self, fallback: bool) -> SubnetStats {
        let cc = |c: BlockClass| self.class_counts[c.idx()];
        SubnetStats {
            total_ips: self.size,
            free_ips: self.free_ips,
            used_ips: self.used_ips,
            aws_reserved_ips: 5,
            prefixes: self.prefixes,
            total_blocks: self.num_blocks(),
            free_blocks: cc(BlockClass::Free),
            fragmented_blocks: cc(BlockClass::Fragmented),
            full_blocks: cc(BlockClass::Full),
            reserved_blocks: cc(BlockClass::HasReserved),
            prefix_allocated_blocks: cc(BlockClass::PrefixAllocated),
            in_reservation_blocks: self.in_reservation_blocks,
            delegatable_blocks: self.delegatable_blocks(fallback),
            largest_free_run: self.runs.largest_level().map(|k| (28 - k) as u8),
            fragmentation_score: fragmentation_score(
                cc(BlockClass::Free),
                cc(BlockClass::Fragmented),
                cc(BlockClass::Full),
            ),
        }
    }

    fn compute_class(&self, b: u32) -> BlockClass {
        let i = b as usize;
        if self.prefix[i] {
            BlockClass::PrefixAllocated
        } else if self.aws_mask[i] != 0 {
            BlockClass::HasReserved
        } else if self.used[i] == 0 {
            BlockClass::Free
        } else if self.used[i] == u16::MAX {
            BlockClass::Full
        } else {
            BlockClass::Fragmented
        }
    }

    fn index_block(&mut self, b: u32, c: BlockClass) {
        let free = c == BlockClass::Free;
        self.runs.set(b, free);
        let set = match self.pool[b as usize] {
            Pool::Open => &mut self.free_blocks_open,
            Pool::PrefixReserved => &mut self.free_blocks_res,
            Pool::Never => return,
        };
        if free {
            set.insert(b);
        } else {
            set.remove(b);
        }
    }

    fn index_ip(&mut self, off: u32, free: bool) {
        let set = match self.addr_res[off as usize] {
            AddrRes::None => &mut self.free_ips_open,
            AddrRes::Prefix => &mut self.free_ips_prefix_res,
            AddrRes::Explicit => return,
        };
        if free {
            set.insert(off);
        } else {
            set.remove(off);
        }
    }

    fn reclassify(&mut self, b: u32) {
        let old = self.class[b as usize];
        let new = self.compute_class(b);
        if old != new {
            self.class_counts[old.idx()] -= 1;
            self.class_counts[new.idx()] += 1;
            self.class[b as usize] = new;
            self.index_block(b, new);
        }
    }

    /// Marks one address used as a /32.
    pub fn take_ip(&mut self, off: u32) -> Result<(), AddrError> {
        if off >= self.size {
            return Err(AddrError::OutsideSubnet(self.addr_at(off)));
        }
        if self.is_aws_reserved(off) {
            return Err(AddrError::AwsReserved(self.addr_at(off)));
        }
        if self.is_used(off) || self.prefix[(off / BLOCK) as usize] {
            return Err(AddrError::InUse(self.addr_at(off)));
        }
        let b = off / BLOCK;
        self.used[b as usize] |= 1 << (off % BLOCK);
        self.used_ips += 1;
        self.free_ips -= 1;
        self.index_ip(off, false);
        self.reclassify(b);
        Ok(())
    }

    /// Returns a used /32 to the free space.
    pub fn release_ip(&mut self, off: u32) -> Result<(), AddrError> {
        if off >= self.size || !self.is_used(off) {
            return Err(AddrError::NotInUse(self.addr_at(off)));
        }
        let b = off / BLOCK;
        self.used[b as usize] &= !(1 << (off % BLOCK));
        self.used_ips -= 1;
        self.free_ips += 1;
        self.index_ip(off, true);
        self.reclassify(b);
        Ok(())
    }

    /// Marks a whole /28 block delegated. All 16 addresses must be free.
    pub fn take_prefix(&mut self, b: u32) -> Result<(), AddrError> {
        if b >= self.num_blocks() {
            return Err(AddrError::OutsideSubnet(self.addr_at(b * BLOCK)));
        }
        if self.prefix[b as usize] || self.aws_mask[b as usize] != 0 || self.used[b as usize] != 0 {
            return Err(AddrError::BlockNotFree(self.block_cidr(b)));
        }
        self.prefix[b as usize] = true;
        self.prefixes += 1;
        self.free_ips -= BLOCK;
        for off in b * BLOCK..(b + 1) * BLOCK {
            self.index_ip(off, false);
        }
        self.reclassify(b);
        Ok(())
    }

    pub fn release_prefix(&mut self, b: u32) -> Result<(), AddrError> {
        if b >= self.num_blocks() || !self.prefix[b as usize] {
            return Err(AddrError::NotInUse(
                self.addr_at(b.min(self.num_blocks()) * BLOCK),
            ));
        }
        self.prefix[b as usize] = false;
        self.prefixes -= 1;
        self.free_ips += BLOCK;
        for off in b * BLOCK..(b + 1) * BLOCK {
            self.index_ip(off, true);
        }
        self.reclassify(b);
        Ok(())
    }

    /// Chooses a free address for an automatic /32 (never in an explicit
    /// reservation; in a prefix reservation only when `allow_prefix_res`).
    pub fn pick_ip<R: Rng + ?Sized>(
        &self,
        policy: Placement,
        allow_prefix_res: bool,
        rng: &mut R,
    ) -> Option<u32> {
        let second = if allow_prefix_res {
            Some(&self.free_ips_prefix_res)
        } else {
            None
        };
        policy.choose(&self.free_ips_open, second, rng)
    }

    /// Chooses a free, delegatable /28: prefix reservations first; the open
    /// range when there are none, or when `fallback` allows it once they are
    /// full.
    pub fn pick_block<R: Rng + ?Sized>(
        &self,
        policy: Placement,
        fallback: bool,
        rng: &mut R,
    ) -> Option<u32> {
        if !self.free_blocks_res.is_empty() {
            return policy.choose(&self.free_blocks_res, None, rng);
        }
        if self.has_prefix_reservation && !fallback {
            return None;
        }
        policy.choose(&self.free_blocks_open, None, rng)
    }

    /// Counters recomputed from the per-address state, for tests.
    #[doc(hidden)]
    pub fn recount(&self, fallback: bool) -> SubnetStats {
        let mut counts = [0u32; 5];
        let (mut free_ips, mut used_ips, mut prefixes, mut inres) = (0, 0, 0, 0);
        let (mut deleg_open, mut deleg_res) = (0, 0);
        for b in 0..self.num_blocks() {
            let c = self.compute_class(b);
            counts[c.idx()] += 1;
            if self.prefix[b as usize] {
                prefixes += 1;
            }
            if self.in_reservation[b as usize] {
                inres += 1;
            }
            if c == BlockClass::Free {
                match self.pool[b as usize] {
                    Pool::Open => deleg_open += 1,
                    Pool::PrefixReserved => deleg_res += 1,
                    Pool::Never => {}
                }
            }
            for off in b * BLOCK..(b + 1) * BLOCK {
                if self.is_used(off) {
                    used_ips += 1;
                } else if self.is_ip_free(off) {
                    free_ips += 1;
                }
            }
        }
        // Largest run by brute force over every aligned size.
        let mut largest = None;
        let mut k = 0u32;
        while (1u32 << k) <= self.num_blocks() {
            let run = 1u32 << k;
            let any = (0..self.num_blocks() / run)
                .any(|i| (i * run..(i + 1) * run).all(|b| counts_free(self, b)));
            if any {
                largest = Some((28 - k) as u8);
            }
            k += 1;
        }
        fn counts_free(s: &Subnet, b: u32) -> bool {
            s.compute_class(b) == BlockClass::Free
        }
        let open = if !self.has_prefix_reservation || fallback {
            deleg_open
        } else {
            0
        };
        SubnetStats {
            total_ips: self.size,
            free_ips,
            used_ips,
            aws_reserved_ips: 5,
            prefixes,
            total_blocks: self.num_blocks(),
            free_blocks: counts[BlockClass::Free.idx()],
            fragmented_blocks: counts[BlockClass::Fragmented.idx()],
            full_blocks: counts[BlockClass::Full.idx()],
            reserved_blocks: counts[BlockClass::HasReserved.idx()],
            prefix_allocated_blocks: counts[BlockClass::PrefixAllocated.idx()],
            in_reservation_blocks: inres,
            delegatable_blocks: deleg_res + open,
            largest_free_run: largest,
            fragmentation_score: fragmentation_score(
                counts[BlockClass::Free.idx()],
                counts[BlockClass::Fragmented.idx()],
                counts[BlockClass::Full.idx()],
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_reserved_offsets_match_the_mask() {
        for cidr in ["10.0.0.0/24", "10.0.0.0/28", "10.0.0.0/16"] {
            let s = Subnet::new(cidr.parse().unwrap(), Vec::new()).unwrap();
            let listed: Vec<u32> = s.aws_reserved().collect();
            let scanned: Vec<u32> = (0..s.size()).filter(|&o| s.is_aws_reserved(o)).collect();
            assert_eq!(listed, scanned);
            assert_eq!(listed, [0, 1, 2, 3, s.size() - 1]);
        }
    }
    use rand::SeedableRng;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn delegatable_counts_match_the_model_reference() {
        // §1: a /24 has 14 delegatable /28s of 16, a /22 62 of 64, a /20 254 of 256.
        for (cidr, total, deleg) in [
            ("10.0.0.0/24", 16, 14),
            ("10.0.0.0/22", 64, 62),
            ("10.0.0.0/20", 256, 254),
            ("10.0.0.0/16", 4096, 4094),
        ] {
            let s = Subnet::new(net(cidr), vec![]).unwrap();
            let st = s.stats(true);
            assert_eq!(st.total_blocks, total, "{cidr}");
            assert_eq!(st.delegatable_blocks, deleg, "{cidr}");
            assert_eq!(st.reserved_blocks, 2, "{cidr}");
            assert_eq!(st.free_ips, s.size() - 5);
            assert_eq!(st.fragmentation_score, Some(0));
        }
        // A /28 is one block holding every reserved address: nothing to delegate.
        let s = Subnet::new(net("10.0.0.0/28"), vec![]).unwrap();
        assert_eq!(s.stats(true).delegatable_blocks, 0);
        assert_eq!(s.stats(true).free_ips, 11);
        assert_eq!(s.stats(true).fragmentation_score, None);
    }

    #[test]
    fn classes_follow_the_analyzer() {
        let mut s = Subnet::new(net("10.0.0.0/24"), vec![]).unwrap();
        s.take_ip(16).unwrap(); // block 1 fragmented
        for off in 32..48 {
            s.take_ip(off).unwrap(); // block 2 full
        }
        s.take_prefix(3).unwrap();
        assert_eq!(s.block_class(0), BlockClass::HasReserved);
        assert_eq!(s.block_class(1), BlockClass::Fragmented);
        assert_eq!(s.block_class(2), BlockClass::Full);
        assert_eq!(s.block_class(3), BlockClass::PrefixAllocated);
        assert_eq!(s.block_class(4), BlockClass::Free);
        assert_eq!(s.block_class(15), BlockClass::HasReserved);
        let st = s.stats(true);
        // Blocks 4..=14 free (11), 1 fragmented, 1 full: ceil(2/13*100) = 16.
        assert_eq!(st.fragmentation_score, Some(16));
        assert_eq!(st.delegatable_blocks, 11);
        assert_eq!(st.free_ips, 251 - 17 - 16);
        assert_eq!(s.recount(true), st);
        assert_eq!(score_band(st.fragmentation_score, 1), "HEALTHY");
    }

    #[test]
    fn score_and_bands() {
        assert_eq!(fragmentation_score(0, 0, 0), None);
        assert_eq!(fragmentation_score(509, 1, 0), Some(1)); // ceil, not round
        assert_eq!(fragmentation_score(3, 1, 0), Some(25));
        assert_eq!(score_band(Some(24), 1), "HEALTHY");
        assert_eq!(score_band(Some(25), 1), "LOW");
        assert_eq!(score_band(Some(50), 1), "MEDIUM");
        assert_eq!(score_band(Some(75), 1), "HIGH");
        assert_eq!(score_band(Some(99), 1), "HIGH");
        assert_eq!(score_band(Some(100), 0), "EXHAUSTED");
        assert_eq!(score_band(Some(100), 2), "CRITICAL");
        assert_eq!(score_band(None, 0), "N/A");
    }

    #[test]
    fn reservations_are_validated() {
        let res = |c: &str, kind| Reservation { cidr: net(c), kind };
        use ReservationType::*;
        assert!(matches!(
            Subnet::new(net("10.0.0.0/24"), vec![res("10.0.1.0/28", Prefix)]),
            Err(AddrError::ReservationOutside { .. })
        ));
        assert!(matches!(
            Subnet::new(
                net("10.0.0.0/24"),
                vec![res("10.0.0.0/25", Prefix), res("10.0.0.64/26", Explicit)]
            ),
            Err(AddrError::ReservationOverlap(..))
        ));
        assert!(matches!(
            Subnet::new(net("10.0.0.0/15"), vec![]),
            Err(AddrError::SubnetSize(_))
        ));
    }

    #[test]
    fn prefix_reservations_first_then_fallback_knob() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut s = Subnet::new(
            net("10.0.0.0/24"),
            vec![
                Reservation {
                    cidr: net("10.0.0.64/27"),
                    kind: ReservationType::Prefix,
                },
                Reservation {
                    cidr: net("10.0.0.128/26"),
                    kind: ReservationType::Explicit,
                },
            ],
        )
        .unwrap();
        // 2 blocks reserved for prefixes, 4 explicit, 2 has_reserved, 8 open.
        assert_eq!(s.delegatable_blocks(false), 2);
        assert_eq!(s.delegatable_blocks(true), 10);
        for _ in 0..2 {
            let b = s.pick_block(Placement::Random, false, &mut rng).unwrap();
            assert!(b == 4 || b == 5, "prefix reservation first, got {b}");
            s.take_prefix(b).unwrap();
        }
        assert_eq!(s.pick_block(Placement::Random, false, &mut rng), None);
        let b = s.pick_block(Placement::Lowest, true, &mut rng).unwrap();
        assert_eq!(b, 1);
        // Automatic /32s never land in any reservation unless allowed.
        for _ in 0..200 {
            let Some(off) = s.pick_ip(Placement::Random, false, &mut rng) else {
                break;
            };
            assert!(!(64..96).contains(&off) && !(128..192).contains(&off));
            s.take_ip(off).unwrap();
        }
        assert_eq!(s.recount(false), s.stats(false));
    }

    #[test]
    fn largest_free_run() {
        let mut s = Subnet::new(net("10.0.0.0/24"), vec![]).unwrap();
        // Blocks 0 and 15 hold reserved addresses: the largest aligned free run
        // is 4 blocks (/26) at blocks 4..8 or 8..12.
        assert_eq!(s.stats(true).largest_free_run, Some(26));
        s.take_ip(5 * 16 + 3).unwrap();
        s.take_ip(9 * 16).unwrap();
        assert_eq!(s.stats(true).largest_free_run, Some(27));
        assert_eq!(s.recount(true), s.stats(true));
    }
}
