//! One node's ipamd: its ENIs, its datastore of prefixes (or secondary
//! addresses), pod address assignment, init, and the pool decision loop.
//!
//! It talks to EC2 only through [`Ec2`]'s operations and to time only
//! through the `now` its caller passes. It never polls: [`NodeIpam::tick`]
//! returns when the next decision is needed (or `None` once the pool is
//! settled), and [`NodeIpam::on_pod_change`] says when a pod event makes a
//! decision due again. Decisions stay on the 5 s grid they would fall on in
//! reality (the loop sleeps between decisions), starting 2.5 s after init.

use rand::seq::SliceRandom;
use rand::Rng;

use super::config::{timing, CniConfig, PodAddressPick};
use super::policy::{self, MapRange, NodeLimits, PoolStats, IPS_PER_PREFIX};
use crate::addr::ec2::{EniOwner, OwnerKind};
use crate::addr::{Ec2, Ec2Error, Ec2Op, EniId, SubnetId};
use crate::catalog::InstanceType;
use crate::time::Ms;

/// Where ipamd may create new ENIs (`createENI`, pkg/awsutils/awsutils.go).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EniSubnets {
    /// One subnet: the ENIConfig subnet under custom networking, or the
    /// node's subnet with subnet discovery off.
    Fixed(SubnetId),
    /// Subnet discovery: these subnets of the node's zone (valid by their
    /// `kubernetes.io/role/cni` tags), tried most free addresses first
    /// (`GetVpcSubnets` sorts by `AvailableIpAddressCount`, stable).
    Discover(Vec<SubnetId>),
    /// No subnet may take an ENI (every candidate tagged `role/cni=0`, or the
    /// node's subnet tagged so with discovery off): creation fails before
    /// any EC2 call.
    NoneValid,
}

/// What a node's ipamd needs to start.
#[derive(Clone, Debug)]
pub struct IpamSpec {
    pub node: u32,
    pub slots_per_eni: u32,
    /// ENIs the CNI may use: the type's limit, capped by `MAX_ENI`.
    pub max_enis: u32,
    pub max_pods: u32,
    /// Prefix delegation asked for and supported by the type.
    pub pd: bool,
    /// Subnet of the node's primary ENI.
    pub node_subnet: SubnetId,
    /// Where new ENIs go.
    pub eni_subnets: EniSubnets,
    pub custom_networking: bool,
    /// `ENABLE_SUBNET_DISCOVERY`.
    pub subnet_discovery: bool,
    /// The primary ENI is in a subnet tagged `role/cni=0` under discovery:
    /// excluded from pod addresses (`excludedENIBasedOnSubnetTags`).
    pub primary_excluded: bool,
    pub pick: PodAddressPick,
}

impl IpamSpec {
    /// The spec for an instance type under a CNI configuration, with new
    /// ENIs in `pod_subnet` (custom networking) or the node's subnet.
    /// Returns the spec and a note when prefix delegation falls back to
    /// secondary-IP mode (the CNI logs the same). Callers that know the
    /// zone's subnets and tags replace `eni_subnets` (see the simulation).
    pub fn for_type(
        node: u32,
        t: &InstanceType,
        cfg: &CniConfig,
        max_pods: u32,
        node_subnet: SubnetId,
        pod_subnet: SubnetId,
    ) -> (Self, Option<String>) {
        let pd = cfg.prefix_delegation && t.supports_prefix_delegation();
        let note = (cfg.prefix_delegation && !pd).then(|| {
            format!(
                "Prefix delegation is not supported on non-nitro instance {} hence falling back to default (secondary IP) mode",
                t.name
            )
        });
        let max_enis = cfg
            .max_eni
            .filter(|&m| m >= 1)
            .map_or(t.enis, |m| m.min(t.enis));
        let eni_subnets = if cfg.custom_networking {
            EniSubnets::Fixed(pod_subnet)
        } else if cfg.subnet_discovery {
            EniSubnets::Discover(vec![node_subnet])
        } else {
            EniSubnets::Fixed(node_subnet)
        };
        (
            IpamSpec {
                node,
                slots_per_eni: t.slots_per_eni(),
                max_enis,
                max_pods,
                pd,
                node_subnet,
                eni_subnets,
                custom_networking: cfg.custom_networking,
                subnet_discovery: cfg.subnet_discovery,
                primary_excluded: false,
                pick: cfg.pod_address_pick,
            },
            note,
        )
    }
}

/// Something ipamd did, for the event log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IpamEvent {
    EniCreated {
        eni: EniId,
        subnet: SubnetId,
        serial: u64,
        cidrs: u32,
    },
    CidrsAssigned {
        eni: EniId,
        subnet: SubnetId,
        cidrs: u32,
    },
    CidrsReleased {
        eni: EniId,
        subnet: SubnetId,
        cidrs: u32,
    },
    EniDeleted {
        subnet: SubnetId,
        serial: u64,
    },
    /// One EC2 call failed. `paused`: growth now pauses 120 s.
    AllocFailed {
        op: Ec2Op,
        subnet: SubnetId,
        error: Ec2Error,
        requested: u32,
        paused: bool,
    },
}

/// One prefix (16 addresses) or one secondary address. The per-address
/// cool-down ends are kept apart (`NodeEni::cool`), so the datastore's walk
/// over its cidrs reads 40 bytes a cidr, not 160.
#[derive(Clone, Debug)]
struct Cidr {
    /// Offset of the first address in its subnet.
    base: u32,
    /// Slot in the ENI's Go map (iteration order).
    slot: u32,
    /// Bit i: address i assigned to a pod.
    assigned: u16,
    /// Bit i: address i was cooling at the last `refresh` (and is while
    /// `cool_min` has not passed).
    cooling: u16,
    prefix: bool,
    /// The earliest cool-down end among the `cooling` addresses.
    cool_min: Ms,
    /// The latest cool-down end, for a fast "nothing cooling" check.
    cool_max: Ms,
    /// When the EC2 call that brought it in completes.
    ready_at: Ms,
}

impl Cidr {
    fn new(base: u32, prefix: bool, slot: u32, ready_at: Ms) -> Self {
        Cidr {
            base,
            slot,
            assigned: 0,
            cooling: 0,
            prefix,
            cool_min: Ms::ZERO,
            cool_max: Ms::ZERO,
            ready_at,
        }
    }

    fn size(&self) -> u32 {
        if self.prefix {
            IPS_PER_PREFIX
        } else {
            1
        }
    }

    fn full_mask(&self) -> u16 {
        if self.prefix {
            u16::MAX
        } else {
            1
        }
    }

    /// Brings `cooling` up to `now` from the addresses' cool-down ends
    /// (`until`): only when the earliest of them has passed.
    fn refresh(&mut self, now: Ms, until: &[Ms; 16]) {
        if self.cooling == 0 || self.cool_min > now {
            return;
        }
        if self.cool_max <= now {
            // Every cool-down has ended: no need to read their ends (a
            // cache line apart).
            self.cooling = 0;
            return;
        }
        let (mut cooling, mut min) = (0u16, Ms(u64::MAX));
        let mut bits = self.cooling;
        while bits != 0 {
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            if until[i] > now {
                cooling |= 1 << i;
                min = min.min(until[i]);
            }
        }
        self.cooling = cooling;
        self.cool_min = min;
    }

    /// Free and not cooling at `now`, as a bit mask (after `refresh` at
    /// `now`).
    fn usable_mask(&self, now: Ms) -> u16 {
        debug_assert!(self.cooling == 0 || self.cool_min > now, "refreshed");
        if self.ready_at > now {
            return 0;
        }
        !self.assigned & self.full_mask() & !self.cooling
    }

    /// Address `bit` is released at `now` and cools until `until`.
    fn release(&mut self, bit: u32, now: Ms, until: Ms, ends: &mut [Ms; 16]) {
        self.assigned &= !(1 << bit);
        ends[bit as usize] = until;
        self.cool_max = self.cool_max.max(until);
        if until > now {
            self.cool_min = if self.cooling == 0 {
                until
            } else {
                self.cool_min.min(until)
            };
            self.cooling |= 1 << bit;
        }
    }
}

#[derive(Clone, Debug)]
struct NodeEni {
    eni: EniId,
    subnet: SubnetId,
    serial: u64,
    primary: bool,
    /// Excluded from pod addresses (custom networking's primary, or an ENI
    /// in a subnet tagged `role/cni=0` under discovery).
    excluded: bool,
    /// Slot in the datastore's ENI map (iteration order).
    slot: u32,
    /// When ipamd added it to the datastore (after attachment): the 60 s
    /// minimum age counts from here (`ENI.createTime`).
    added: Ms,
    cidrs: Vec<Cidr>,
    /// Per cidr (same order): each address's cool-down end.
    cool: Vec<[Ms; 16]>,
    assigned: u32,
}

impl NodeEni {
    fn total(&self) -> u32 {
        self.cidrs.iter().map(Cidr::size).sum()
    }

    fn free_prefixes(&self) -> u32 {
        self.cidrs
            .iter()
            .filter(|c| c.prefix && c.assigned == 0)
            .count() as u32
    }

    fn has_usable(&self, now: Ms) -> bool {
        self.cidrs.iter().any(|c| c.usable_mask(now) != 0)
    }

    /// Every cidr's `cooling` brought up to `now`.
    fn refresh(&mut self, now: Ms) {
        for (c, until) in self.cidrs.iter_mut().zip(&self.cool) {
            c.refresh(now, until);
        }
    }

    fn push_cidr(&mut self, c: Cidr) {
        self.cidrs.push(c);
        self.cool.push([Ms::ZERO; 16]);
    }

    fn swap_remove_cidr(&mut self, j: usize) -> Cidr {
        self.cool.swap_remove(j);
        self.cidrs.swap_remove(j)
    }
}

/// The lowest slot no entry holds (Go's insert into a small map).
fn lowest_free_slot(slots: impl Iterator<Item = u32> + Clone) -> u32 {
    (0..)
        .find(|k| !slots.clone().any(|s| s == *k))
        .expect("fewer entries than slots")
}

/// Where a pod's address is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PodAddr {
    pub subnet: SubnetId,
    pub offset: u32,
}

/// How ipamd's init (`nodeInit`, `handlePreScaling`) went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitOutcome {
    /// Init succeeded: the node becomes Ready at `done_at`, with or without
    /// addresses in its pool. False only under custom networking with an
    /// empty pool: aws-node exits and is restarted.
    pub ok: bool,
    /// When init's work (the one pre-scaling allocation) completes.
    pub done_at: Ms,
    /// The first pool decision to schedule, if any.
    pub next: Option<Ms>,
}

/// One node's ipamd.
#[derive(Clone, Debug)]
#[repr(C)]
pub struct NodeIpam {
    // What a pod's sandbox and deletion read first (`repr(C)`: in this
    // order, in the node's cache lines after its scheduler fields).
    enis: Vec<NodeEni>,
    /// Where the first ENI's cidrs were at the last pod change: an
    /// address for [`NodeIpam::prefetch`] only, never read through (it
    /// may be stale after a decision moved them).
    cidrs_at: usize,
    stats: PoolStats,
    /// False while aws-node is down after a failed init: no decisions.
    running: bool,
    /// `spec.pick`, kept here in the lines a sandbox reads (the spec sits
    /// a cache line further: a miss on every address assignment).
    pick: PodAddressPick,
    /// The decision already asked for, if any.
    scheduled: Option<Ms>,
    /// Decisions fall on `anchor + k * 5 s`.
    anchor: Ms,
    /// No decision before this (the last one's time + 1 ms, or the first).
    earliest: Ms,
    limits: NodeLimits,
    spec: IpamSpec,
    last_decrease: Option<Ms>,
    last_insufficient: Option<Ms>,
    /// Reused scratch space (no allocation per pod or decision).
    scratch: Vec<u32>,
    scratch2: Vec<u32>,
}

enum Grow {
    Done(Ms),
    Nothing,
    Failed { pause: bool },
}

/// `containsInsufficientCIDRsOrSubnetIPs`.
fn insufficient(e: Ec2Error) -> bool {
    matches!(
        e,
        Ec2Error::InsufficientCidrBlocks | Ec2Error::InsufficientFreeAddressesInSubnet
    )
}

impl NodeIpam {
    /// aws-node starting on a node whose primary ENI is `primary` (created
    /// by EC2 at launch): builds the datastore and runs init, which tries
    /// once to fill the warm pool (`handlePreScaling`).
    pub fn start<R: Rng + ?Sized>(
        spec: IpamSpec,
        primary: EniId,
        now: Ms,
        cfg: &CniConfig,
        ec2: &mut Ec2,
        rng: &mut R,
        events: &mut Vec<IpamEvent>,
    ) -> (Self, InitOutcome) {
        let limits = NodeLimits {
            pd: spec.pd,
            slots_per_eni: spec.slots_per_eni,
            max_pods: spec.max_pods,
        };
        let serial = ec2.eni(primary).serial;
        let excluded = spec.custom_networking || spec.primary_excluded;
        let mut ipam = NodeIpam {
            enis: vec![NodeEni {
                eni: primary,
                subnet: spec.node_subnet,
                serial,
                primary: true,
                excluded,
                slot: 0,
                added: now,
                cidrs: Vec::new(),
                cool: Vec::new(),
                assigned: 0,
            }],
            pick: spec.pick,
            spec,
            limits,
            stats: PoolStats::default(),
            last_decrease: None,
            last_insufficient: None,
            anchor: now,
            earliest: now,
            cidrs_at: 0,
            scheduled: None,
            running: false,
            scratch: Vec::new(),
            scratch2: Vec::new(),
        };
        let out = ipam.init(now, cfg, ec2, rng, events);
        (ipam, out)
    }

    /// aws-node on a node that already runs (taken over from a snapshot):
    /// `nodeInit` rebuilds the datastore from the ENIs and their prefixes
    /// (or secondary addresses) that EC2 lists, primary first, without
    /// allocating. The first pool decision comes 2.5 s later, like after
    /// any init. The ENIs count as added at `now` (their real age is not in
    /// the snapshot).
    pub fn adopt(spec: IpamSpec, enis: &[EniId], now: Ms, ec2: &Ec2) -> (Self, Option<Ms>) {
        let limits = NodeLimits {
            pd: spec.pd,
            slots_per_eni: spec.slots_per_eni,
            max_pods: spec.max_pods,
        };
        let anchor = now + timing::FIRST_DECISION;
        let mut ipam = NodeIpam {
            enis: Vec::new(),
            cidrs_at: 0,
            limits,
            stats: PoolStats::default(),
            last_decrease: None,
            last_insufficient: None,
            anchor,
            earliest: anchor,
            scheduled: None,
            running: true,
            pick: spec.pick,
            scratch: Vec::new(),
            scratch2: Vec::new(),
            spec,
        };
        for (k, &e) in enis.iter().enumerate() {
            let info = ec2.eni(e);
            let primary = k == 0;
            ipam.enis.push(NodeEni {
                eni: e,
                subnet: info.subnet,
                serial: info.serial,
                primary,
                excluded: primary && (ipam.spec.custom_networking || ipam.spec.primary_excluded),
                slot: k as u32,
                added: now,
                cidrs: Vec::new(),
                cool: Vec::new(),
                assigned: 0,
            });
            ipam.adopt_new_cidrs(k, ec2, now);
        }
        let next = ipam.request(anchor);
        (ipam, next)
    }

    /// ipamd's init (`nodeInit` -> `handlePreScaling`): one
    /// `increaseDatastorePool` if the pool is low. Its Insufficient* errors
    /// are swallowed (the node becomes Ready with an empty pool); only under
    /// custom networking with an empty pool does init fail. Also used when
    /// aws-node restarts after a failed init (the process state is new: no
    /// pause in force).
    pub fn init<R: Rng + ?Sized>(
        &mut self,
        now: Ms,
        cfg: &CniConfig,
        ec2: &mut Ec2,
        rng: &mut R,
        events: &mut Vec<IpamEvent>,
    ) -> InitOutcome {
        self.last_insufficient = None;
        self.last_decrease = None;
        self.scheduled = None;
        let mut done_at = now;
        let mut wake = None;
        if policy::is_low(cfg, &self.limits, &self.stats) {
            match self.increase(now, cfg, ec2, rng, events) {
                Grow::Done(lat) => done_at = now + lat,
                Grow::Nothing => {}
                Grow::Failed { pause: true } => {
                    self.last_insufficient = Some(now);
                    wake = Some(now + timing::INSUFFICIENT_PAUSE);
                }
                Grow::Failed { pause: false } => wake = Some(now),
            }
        }
        // The pool manager starts after init; its first decision comes
        // after half an interval.
        self.anchor = done_at + timing::FIRST_DECISION;
        self.earliest = self.anchor;
        let ok = !(self.spec.custom_networking && self.stats.total == 0);
        self.running = ok;
        if !ok {
            return InitOutcome {
                ok,
                done_at,
                next: None,
            };
        }
        let next = if done_at > now || wake.is_some() {
            let at = wake
                .unwrap_or(self.anchor)
                .max(self.anchor)
                .next_on_grid(self.anchor, timing::POOL_INTERVAL);
            self.request(at)
        } else {
            None
        };
        InitOutcome { ok, done_at, next }
    }

    pub fn spec(&self) -> &IpamSpec {
        &self.spec
    }

    pub fn stats(&self) -> PoolStats {
        self.stats
    }

    /// Decisions fall on `anchor + k * 5 s`.
    pub fn anchor(&self) -> Ms {
        self.anchor
    }

    pub fn num_enis(&self) -> usize {
        self.enis.len()
    }

    /// Whether the pool holds no pod address at all (a Ready node in this
    /// state attracts pods that wait for an address).
    pub fn pool_empty(&self) -> bool {
        self.stats.total == 0
    }

    /// Cidrs (prefixes or secondary addresses) per ENI, primary first.
    pub fn cidrs_per_eni(&self) -> Vec<u32> {
        self.enis.iter().map(|e| e.cidrs.len() as u32).collect()
    }

    /// The subnet of each ENI, primary first.
    pub fn eni_subnets(&self) -> Vec<SubnetId> {
        self.enis.iter().map(|e| e.subnet).collect()
    }

    /// Whether `at` is the decision this ipamd asked for (later requests
    /// supersede earlier ones; a superseded wake-up is ignored).
    pub fn is_due(&self, at: Ms) -> bool {
        self.scheduled == Some(at)
    }

    /// The earliest time at which an address can be handed to a pod, if the
    /// pool holds any.
    pub fn ready_at(&self) -> Option<Ms> {
        self.enis
            .iter()
            .filter(|e| !e.excluded)
            .flat_map(|e| e.cidrs.iter())
            .map(|c| c.ready_at)
            .min()
    }

    /// Assigns a pod address as the datastore does (`AssignPodIPv4Address`):
    /// the first ENI, then the first prefix with a free, non-cooling
    /// address, in map order (or uniformly at random, by policy), then the
    /// lowest such address. No EC2 call. `None`: the sandbox fails
    /// (`failed to assign an IP address to container`).
    pub fn assign_pod<R: Rng + ?Sized>(&mut self, now: Ms, rng: &mut R) -> Option<PodAddr> {
        for e in &mut self.enis {
            e.refresh(now);
        }
        let ei = match self.pick {
            PodAddressPick::MapOrder => {
                let range = self.eni_range(rng);
                self.enis
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| !e.excluded && e.has_usable(now))
                    .min_by_key(|(_, e)| range.key(e.slot))
                    .map(|(i, _)| i)?
            }
            PodAddressPick::Random => {
                self.scratch.clear();
                for (i, e) in self.enis.iter().enumerate() {
                    if !e.excluded && e.has_usable(now) {
                        self.scratch.push(i as u32);
                    }
                }
                if self.scratch.is_empty() {
                    return None;
                }
                self.scratch[rng.gen_range(0..self.scratch.len())] as usize
            }
        };
        let cidrs = &self.enis[ei].cidrs;
        let ci = match self.pick {
            PodAddressPick::MapOrder => {
                let range = MapRange::draw(cidrs.iter().map(|c| c.slot).max().unwrap_or(0), rng);
                cidrs
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.usable_mask(now) != 0)
                    .min_by_key(|(_, c)| range.key(c.slot))
                    .map(|(j, _)| j)
                    .expect("the ENI has a usable cidr")
            }
            PodAddressPick::Random => {
                self.scratch2.clear();
                for (j, c) in cidrs.iter().enumerate() {
                    if c.usable_mask(now) != 0 {
                        self.scratch2.push(j as u32);
                    }
                }
                self.scratch2[rng.gen_range(0..self.scratch2.len())] as usize
            }
        };
        let eni = &mut self.enis[ei];
        let subnet = eni.subnet;
        let c = &mut eni.cidrs[ci];
        let bit = c.usable_mask(now).trailing_zeros();
        if c.prefix && c.assigned == 0 {
            self.stats.free_prefixes -= 1;
        }
        c.assigned |= 1 << bit;
        eni.assigned += 1;
        self.stats.assigned += 1;
        Some(PodAddr {
            subnet,
            offset: c.base + bit,
        })
    }

    /// A `range` over the datastore's ENI map.
    fn eni_range<R: Rng + ?Sized>(&self, rng: &mut R) -> MapRange {
        MapRange::draw(self.enis.iter().map(|e| e.slot).max().unwrap_or(0), rng)
    }

    /// Starts loading the lines a pod's release or a decision reads first:
    /// the first ENI's record and its first cidrs (a hint; see
    /// [`crate::prefetch`]).
    #[inline]
    pub fn prefetch(&self) {
        if let Some(e) = self.enis.first() {
            crate::prefetch::lines(e as *const NodeEni, 2);
        }
        if self.cidrs_at != 0 {
            crate::prefetch::lines(self.cidrs_at as *const [u8; 128], 2);
        }
    }

    /// A pod left: its address cools down before reuse.
    pub fn release_pod(&mut self, now: Ms, addr: PodAddr, cfg: &CniConfig) {
        for eni in self.enis.iter_mut() {
            if eni.subnet != addr.subnet {
                continue;
            }
            for (j, c) in eni.cidrs.iter_mut().enumerate() {
                if addr.offset >= c.base && addr.offset < c.base + c.size() {
                    let bit = addr.offset - c.base;
                    debug_assert!(
                        c.assigned & (1 << bit) != 0,
                        "released an unassigned address"
                    );
                    c.release(bit, now, now + cfg.ip_cooldown, &mut eni.cool[j]);
                    if c.prefix && c.assigned == 0 {
                        self.stats.free_prefixes += 1;
                    }
                    eni.assigned -= 1;
                    self.stats.assigned -= 1;
                    return;
                }
            }
        }
        debug_assert!(false, "pod address not found on this node");
    }

    /// A pod was added or removed at `now`: returns the time of the decision
    /// to schedule, if one is not already due earlier.
    ///
    /// A decision that would find nothing to do is not scheduled: the pool
    /// neither low nor high and no ENI to free, now or later
    /// ([`NodeIpam::idle`]). Only pod changes and ipamd's own actions move
    /// those conditions, and every pod change comes here, so the decision
    /// at `at` would do nothing unless another pod change comes first, and
    /// that one asks again. Nothing is lost by skipping it: a decision that
    /// does nothing leaves the loop on its grid (`anchor` is its time) and
    /// asks for no wake-up, so a later one it would have replaced is dropped
    /// here too.
    pub fn on_pod_change(&mut self, now: Ms, cfg: &CniConfig) -> Option<Ms> {
        self.cidrs_at = self.enis.first().map_or(0, |e| e.cidrs.as_ptr() as usize);
        if !self.running {
            return None;
        }
        let at = now
            .max(self.earliest)
            .next_on_grid(self.anchor, timing::POOL_INTERVAL);
        if self.scheduled.is_some_and(|s| s <= at) {
            // A decision comes first; it sees the pool as it is then.
            return None;
        }
        // Any later wake-up is replaced: by this decision, or, when it would
        // do nothing, by none (it would ask for none).
        self.scheduled = (!self.idle(cfg)).then_some(at);
        self.scheduled
    }

    /// Whether a pool decision now would do nothing and ask for none: the
    /// pool neither low nor high, and no ENI a candidate to be freed
    /// (`getDeletableENI` would find none, now or by its age or cool-down).
    /// Reads no clock: pod changes and ipamd's actions alone move it.
    pub fn idle(&self, cfg: &CniConfig) -> bool {
        let lim = &self.limits;
        if policy::is_low(cfg, lim, &self.stats) || policy::is_high(cfg, lim, &self.stats) {
            return false;
        }
        let looks = lim.pd || policy::should_remove_extra_enis(cfg, lim, &self.stats, false);
        !(looks && self.enis.len() > 1 && self.enis[1..].iter().any(|e| self.freeable(cfg, e)))
    }

    /// `getDeletableENI`'s tests other than age and cool-down: not the
    /// primary, no pod address, not needed for the warm targets.
    fn freeable(&self, cfg: &CniConfig, e: &NodeEni) -> bool {
        if e.primary || e.assigned > 0 {
            return false;
        }
        let other_total = self.stats.total - e.total();
        let other_available = other_total - (self.stats.assigned - e.assigned);
        let other_free = self.stats.free_prefixes - e.free_prefixes();
        !policy::eni_required(cfg, &self.limits, other_available, other_total, other_free)
    }

    fn request(&mut self, at: Ms) -> Option<Ms> {
        match self.scheduled {
            Some(s) if s <= at => None,
            _ => {
                self.scheduled = Some(at);
                Some(at)
            }
        }
    }

    /// One pool decision (`updateIPPoolIfRequired`): grow (at most one
    /// successful EC2 allocation), else shrink (at most once per 30 s), then
    /// maybe free one ENI. Returns the next decision time, or `None` when
    /// settled.
    pub fn tick<R: Rng + ?Sized>(
        &mut self,
        now: Ms,
        cfg: &CniConfig,
        ec2: &mut Ec2,
        rng: &mut R,
        events: &mut Vec<IpamEvent>,
    ) -> Option<Ms> {
        self.scheduled = None;
        if !self.running {
            return None;
        }
        let stats = self.stats;
        let lim = self.limits;
        let mut work: Option<Ms> = None; // latency of an action taken
        let mut wake: Option<Ms> = None; // a time-only condition to revisit

        if policy::is_low(cfg, &lim, &stats) {
            // `inInsufficientCidrCoolingPeriod`: `since <= 120 s`. The loop's
            // period is 5 s plus its work, so the decision on the grid point
            // 120 s later is already past the pause.
            let pause_end = self
                .last_insufficient
                .map(|t| t + timing::INSUFFICIENT_PAUSE)
                .filter(|&end| end > now);
            if let Some(end) = pause_end {
                wake = Some(end);
            } else {
                match self.increase(now, cfg, ec2, rng, events) {
                    Grow::Done(lat) => work = Some(lat),
                    Grow::Nothing => {}
                    Grow::Failed { pause: true } => {
                        self.last_insufficient = Some(now);
                        wake = Some(now + timing::INSUFFICIENT_PAUSE);
                    }
                    // No pause: the next decision tries again.
                    Grow::Failed { pause: false } => wake = Some(now + Ms(1)),
                }
            }
        } else if policy::is_high(cfg, &lim, &stats) {
            // `shouldSkipDataStorePoolDecrease`: `since <= 30 s`; as with the
            // pause, the grid point 30 s later is past it (first eligible
            // decision 30-35 s after the last decrease, by the anchor).
            let gate_end = self
                .last_decrease
                .map(|t| t + timing::DECREASE_INTERVAL)
                .filter(|&end| end > now);
            if let Some(end) = gate_end {
                wake = Some(end);
            } else {
                self.last_decrease = Some(now);
                if self.decrease(now, cfg, ec2, rng, events) > 0 {
                    work = Some(Ms::ZERO);
                }
            }
        }

        // `shouldRemoveExtraENIs`: without the freeable-ENI check it can only
        // become true in PD mode (`CheckFreeableENIexists`), so the search
        // runs only then. An ENI blocked only by its age or a cooling
        // address becomes freeable by time alone: wake up for it.
        let quick = policy::should_remove_extra_enis(cfg, &lim, &self.stats, false);
        if quick || lim.pd {
            match self.find_deletable_eni(now, cfg, rng) {
                Ok(ei) => {
                    let e = self.enis.swap_remove(ei);
                    self.stats.total -= e.total();
                    self.stats.cidrs -= e.cidrs.len() as u32;
                    self.stats.free_prefixes -= e.free_prefixes();
                    ec2.delete_eni(e.eni).expect("node ENI is live");
                    events.push(IpamEvent::EniDeleted {
                        subnet: e.subnet,
                        serial: e.serial,
                    });
                    work = Some(work.unwrap_or(Ms::ZERO));
                }
                Err(Some(t)) => wake = Some(wake.map_or(t, |w| w.min(t))),
                Err(None) => {}
            }
        }

        self.anchor = now + work.unwrap_or(Ms::ZERO);
        self.earliest = self.anchor + Ms(1);
        let next = match (work, wake) {
            (Some(_), _) => Some(self.anchor + timing::POOL_INTERVAL),
            (None, Some(w)) => Some(
                w.max(self.earliest)
                    .next_on_grid(self.anchor, timing::POOL_INTERVAL),
            ),
            (None, None) => None,
        };
        next.and_then(|t| self.request(t))
    }

    fn record_failure(
        events: &mut Vec<IpamEvent>,
        op: Ec2Op,
        subnet: SubnetId,
        error: Ec2Error,
        requested: u32,
        paused: bool,
    ) {
        events.push(IpamEvent::AllocFailed {
            op,
            subnet,
            error,
            requested,
            paused,
        });
    }

    /// `increaseDatastorePool`: `tryAssignCidrs` over the ENIs with free
    /// slots, in map order, each with its 1-cidr retry; under subnet
    /// discovery an Insufficient* error moves on to the next ENI and then to
    /// a new ENI (`tryAllocateENI`) in the same decision.
    fn increase<R: Rng + ?Sized>(
        &mut self,
        now: Ms,
        cfg: &CniConfig,
        ec2: &mut Ec2,
        rng: &mut R,
        events: &mut Vec<IpamEvent>,
    ) -> Grow {
        let lim = self.limits;
        let op = if lim.pd {
            Ec2Op::AssignPrefixes
        } else {
            Ec2Op::AssignPrivateIps
        };
        // GetAllocatableENIs ranges over the datastore's ENI map.
        self.scratch.clear();
        for (i, e) in self.enis.iter().enumerate() {
            if !e.excluded && (e.cidrs.len() as u32) < lim.slots_per_eni {
                self.scratch.push(i as u32);
            }
        }
        if !self.scratch.is_empty() {
            let range = self.eni_range(rng);
            let enis = &self.enis;
            self.scratch
                .sort_unstable_by_key(|&i| range.key(enis[i as usize].slot));
        }
        let mut any_failed = false;
        for k in 0..self.scratch.len() {
            let ei = self.scratch[k] as usize;
            let free_slots = lim.slots_per_eni - self.enis[ei].cidrs.len() as u32;
            let n = policy::request_size(cfg, &lim, &self.stats, free_slots);
            if n == 0 {
                // IP targets met (`tryAssignIPs` returns early); nothing to
                // allocate on a new ENI either.
                return Grow::Nothing;
            }
            let (eni, subnet) = (self.enis[ei].eni, self.enis[ei].subnet);
            let mut got = n;
            let mut res = self.ec2_assign(ec2, eni, n, rng);
            if let Err(error) = res {
                // "Try to just get one more" (unconditionally, even after a
                // request for one).
                Self::record_failure(events, op, subnet, error, n, false);
                res = self.ec2_assign(ec2, eni, 1, rng);
                got = 1;
            }
            match res {
                Ok(()) => {
                    self.adopt_new_cidrs(ei, ec2, now + ec2.config.assign_latency);
                    events.push(IpamEvent::CidrsAssigned {
                        eni,
                        subnet,
                        cidrs: got,
                    });
                    return Grow::Done(ec2.config.assign_latency);
                }
                Err(error) if self.spec.subnet_discovery && insufficient(error) => {
                    Self::record_failure(events, op, subnet, error, 1, false);
                    any_failed = true;
                }
                Err(error) => {
                    let pause = insufficient(error);
                    Self::record_failure(events, op, subnet, error, 1, pause);
                    return Grow::Failed { pause };
                }
            }
        }
        let none = if any_failed {
            Grow::Failed { pause: false }
        } else {
            Grow::Nothing
        };
        // tryAllocateENI, if `hasRoomForEni`.
        if self.enis.len() as u32 >= self.spec.max_enis {
            return none;
        }
        let n = policy::request_size(cfg, &lim, &self.stats, lim.slots_per_eni);
        if n == 0 {
            return none;
        }
        self.scratch2.clear();
        match &self.spec.eni_subnets {
            EniSubnets::Fixed(s) => self.scratch2.push(s.0),
            EniSubnets::Discover(list) => {
                self.scratch2.extend(list.iter().map(|s| s.0));
                // Most free single addresses first; stable for ties.
                self.scratch2
                    .sort_by_key(|&s| std::cmp::Reverse(ec2.free_ips(SubnetId(s))));
            }
            // createENI refuses before any EC2 call; not an Insufficient*
            // error, so no pause.
            EniSubnets::NoneValid => return none,
        }
        let owner = EniOwner {
            kind: OwnerKind::EksPod,
            instance: Some(self.spec.node),
            device_index: self.enis.len() as u32,
        };
        let tries = self.scratch2.len();
        for k in 0..tries {
            let subnet = SubnetId(self.scratch2[k]);
            let created = if lim.pd {
                ec2.create_eni(subnet, owner.clone(), n, rng)
            } else {
                ec2.create_eni(subnet, owner.clone(), 0, rng)
                    .and_then(|id| match ec2.assign_private_ips(id, n, rng) {
                        Ok(()) => Ok(id),
                        Err(e) => {
                            ec2.delete_eni(id).expect("just created");
                            Err(e)
                        }
                    })
            };
            match created {
                Ok(id) => {
                    let serial = ec2.eni(id).serial;
                    let slot = lowest_free_slot(self.enis.iter().map(|e| e.slot));
                    let ready = now + ec2.config.eni_latency;
                    self.enis.push(NodeEni {
                        eni: id,
                        subnet,
                        serial,
                        primary: false,
                        excluded: false,
                        slot,
                        added: ready,
                        cidrs: Vec::new(),
                        cool: Vec::new(),
                        assigned: 0,
                    });
                    let ei = self.enis.len() - 1;
                    self.adopt_new_cidrs(ei, ec2, ready);
                    events.push(IpamEvent::EniCreated {
                        eni: id,
                        subnet,
                        serial,
                        cidrs: n,
                    });
                    return Grow::Done(ec2.config.eni_latency);
                }
                Err(error) => {
                    // The error of the last subnet tried decides the pause.
                    let pause = k + 1 == tries && insufficient(error);
                    Self::record_failure(events, Ec2Op::CreateEni, subnet, error, n, pause);
                    if k + 1 == tries {
                        return Grow::Failed { pause };
                    }
                }
            }
        }
        none
    }

    fn ec2_assign<R: Rng + ?Sized>(
        &self,
        ec2: &mut Ec2,
        eni: EniId,
        n: u32,
        rng: &mut R,
    ) -> Result<(), Ec2Error> {
        if self.limits.pd {
            ec2.assign_prefixes(eni, n, rng)
        } else {
            ec2.assign_private_ips(eni, n, rng)
        }
    }

    /// Adds to the datastore the cidrs EC2 now lists on the ENI and this
    /// datastore does not yet hold (they are appended at the ENI's tail).
    fn adopt_new_cidrs(&mut self, ei: usize, ec2: &Ec2, ready_at: Ms) {
        let info = ec2.eni(self.enis[ei].eni);
        let pd = self.limits.pd;
        let list: &[u32] = if pd { &info.prefixes } else { &info.secondary };
        let have = self.enis[ei].cidrs.len();
        for &x in &list[have..] {
            let base = if pd { x * IPS_PER_PREFIX } else { x };
            let eni = &mut self.enis[ei];
            let slot = lowest_free_slot(eni.cidrs.iter().map(|c| c.slot));
            eni.push_cidr(Cidr::new(base, pd, slot, ready_at));
            self.stats.cidrs += 1;
            if pd {
                self.stats.total += IPS_PER_PREFIX;
                self.stats.free_prefixes += 1;
            } else {
                self.stats.total += 1;
            }
        }
    }

    /// `tryUnassignCidrsFromAll`: release up to `over` cidrs with no pod
    /// address assigned, ENIs and cidrs in random order.
    /// `FindFreeableCidrs` does not look at cool-down: a prefix, or a
    /// secondary address, with no pod is freeable while an address in it
    /// cools.
    fn decrease<R: Rng + ?Sized>(
        &mut self,
        now: Ms,
        cfg: &CniConfig,
        ec2: &mut Ec2,
        rng: &mut R,
        events: &mut Vec<IpamEvent>,
    ) -> u32 {
        let mut over = policy::over_count(cfg, &self.limits, &self.stats);
        let mut freed_total = 0;
        self.scratch.clear();
        self.scratch.extend(0..self.enis.len() as u32);
        self.scratch.shuffle(rng);
        for k in 0..self.scratch.len() {
            if over == 0 {
                break;
            }
            let ei = self.scratch[k] as usize;
            self.scratch2.clear();
            for (j, c) in self.enis[ei].cidrs.iter().enumerate() {
                // In flight (the EC2 call has not returned): not yet in the
                // datastore.
                if c.assigned == 0 && c.ready_at <= now {
                    self.scratch2.push(j as u32);
                }
            }
            if self.scratch2.is_empty() {
                continue;
            }
            self.scratch2.shuffle(rng);
            let take = over.min(self.scratch2.len() as u32) as usize;
            // Remove highest indices first so swap_remove keeps the rest valid.
            let picked = &mut self.scratch2[..take];
            picked.sort_unstable_by(|a, b| b.cmp(a));
            let (eni, subnet) = (self.enis[ei].eni, self.enis[ei].subnet);
            for &j in picked.iter() {
                let c = self.enis[ei].swap_remove_cidr(j as usize);
                self.stats.cidrs -= 1;
                self.stats.total -= c.size();
                if c.prefix {
                    self.stats.free_prefixes -= 1;
                    ec2.unassign_prefix(eni, c.base / IPS_PER_PREFIX)
                        .expect("prefix held by this ENI");
                } else {
                    ec2.unassign_ip(eni, c.base)
                        .expect("address held by this ENI");
                }
            }
            events.push(IpamEvent::CidrsReleased {
                eni,
                subnet,
                cidrs: take as u32,
            });
            over -= take as u32;
            freed_total += take as u32;
        }
        freed_total
    }

    /// `getDeletableENI`: the first deletable ENI in the map's random
    /// order, i.e. one of those deletable now, uniformly (drawn from `rng`
    /// only when there are several). `Err(Some(t))`: none now, but one
    /// blocked only by its age or a cooling address may go at `t`.
    fn find_deletable_eni<R: Rng + ?Sized>(
        &mut self,
        now: Ms,
        cfg: &CniConfig,
        rng: &mut R,
    ) -> Result<usize, Option<Ms>> {
        if self.enis.len() <= 1 {
            return Err(None);
        }
        self.scratch.clear();
        let mut later: Option<Ms> = None;
        for (ei, e) in self.enis.iter().enumerate().skip(1) {
            if !self.freeable(cfg, e) {
                continue;
            }
            let old_enough = e.added + timing::ENI_MIN_AGE;
            let cooled = e.cidrs.iter().map(|c| c.cool_max).max().unwrap_or(Ms::ZERO);
            let ready = e.cidrs.iter().map(|c| c.ready_at).max().unwrap_or(Ms::ZERO);
            let free_at = old_enough.max(cooled).max(ready);
            if free_at <= now {
                self.scratch.push(ei as u32);
            } else {
                later = Some(later.map_or(free_at, |l: Ms| l.min(free_at)));
            }
        }
        match self.scratch.len() {
            0 => Err(later),
            1 => Ok(self.scratch[0] as usize),
            n => Ok(self.scratch[rng.gen_range(0..n)] as usize),
        }
    }

    /// The node is gone: every ENI (primary included) is deleted and its
    /// addresses and prefixes return to the subnet. Returns the deleted
    /// ENIs' subnets and serials.
    pub fn teardown(self, ec2: &mut Ec2) -> Vec<(SubnetId, u64)> {
        self.enis
            .into_iter()
            .map(|e| {
                ec2.delete_eni(e.eni).expect("node ENI is live");
                (e.subnet, e.serial)
            })
            .collect()
    }

    /// The delegated prefixes (subnet, block) that hold at least one pod.
    pub fn prefixes_in_use(&self) -> impl Iterator<Item = (SubnetId, u32)> + '_ {
        self.enis.iter().flat_map(|e| {
            e.cidrs
                .iter()
                .filter(|c| c.prefix && c.assigned != 0)
                .map(move |c| (e.subnet, c.base / IPS_PER_PREFIX))
        })
    }

    /// Subnet addresses this node holds: its ENIs' primaries plus every
    /// prefix (16 each) or secondary address.
    pub fn subnet_addresses(&self) -> u32 {
        self.enis.len() as u32 + self.stats.total
    }

    /// Pool addresses not assigned to a pod.
    pub fn unused_ips(&self) -> u32 {
        self.stats.available()
    }
}
