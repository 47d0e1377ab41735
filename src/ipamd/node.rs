//! One node's ipamd: its ENIs, its datastore of prefixes (or secondary
//! addresses), pod address assignment, and the pool decision loop.
//!
//! It talks to EC2 only through [`Ec2`]'s operations and to time only
//! through the `now` its caller passes. It never polls: [`NodeIpam::tick`]
//! returns when the next decision is needed (or `None` once the pool is
//! settled), and [`NodeIpam::on_pod_change`] says when a pod event makes a
//! decision due again. Decisions stay on the 5 s grid they would fall on in
//! reality (the loop sleeps 5 s after each decision's work).

use rand::seq::SliceRandom;
use rand::Rng;

use super::config::{timing, CniConfig};
use super::policy::{self, NodeLimits, PoolStats, IPS_PER_PREFIX};
use crate::addr::ec2::{EniOwner, OwnerKind};
use crate::addr::{Ec2, Ec2Error, EniId, SubnetId};
use crate::catalog::InstanceType;
use crate::time::Ms;

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
    /// Subnet of the ENIs ipamd attaches (the ENIConfig subnet under custom
    /// networking, else the node subnet).
    pub pod_subnet: SubnetId,
    pub custom_networking: bool,
}

impl IpamSpec {
    /// The spec for an instance type under a CNI configuration. Returns the
    /// spec and a note when prefix delegation falls back to secondary-IP
    /// mode (the CNI logs the same).
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
        (
            IpamSpec {
                node,
                slots_per_eni: t.slots_per_eni(),
                max_enis,
                max_pods,
                pd,
                node_subnet,
                pod_subnet: if cfg.custom_networking {
                    pod_subnet
                } else {
                    node_subnet
                },
                custom_networking: cfg.custom_networking,
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
        serial: u64,
        cidrs: u32,
    },
    CidrsAssigned {
        eni: EniId,
        cidrs: u32,
    },
    CidrsReleased {
        eni: EniId,
        cidrs: u32,
    },
    EniDeleted {
        serial: u64,
    },
    /// An EC2 call failed; `paused` when growth now pauses 120 s.
    AllocFailed {
        error: Ec2Error,
        requested: u32,
        new_eni: bool,
        paused: bool,
    },
}

/// One prefix (16 addresses) or one secondary address.
#[derive(Clone, Debug)]
struct Cidr {
    /// Offset of the first address in its subnet.
    base: u32,
    prefix: bool,
    /// Bit i: address i assigned to a pod.
    assigned: u16,
    /// Per address: when its cool-down ends.
    cool_until: [Ms; 16],
    /// The latest `cool_until`, for a fast "nothing cooling" check.
    cool_max: Ms,
    /// When the EC2 call that brought it in completes.
    ready_at: Ms,
}

impl Cidr {
    fn new(base: u32, prefix: bool, ready_at: Ms) -> Self {
        Cidr {
            base,
            prefix,
            assigned: 0,
            cool_until: [Ms::ZERO; 16],
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

    /// Free and not cooling at `now`, as a bit mask.
    fn usable_mask(&self, now: Ms) -> u16 {
        if self.ready_at > now {
            return 0;
        }
        let free = !self.assigned & self.full_mask();
        if self.cool_max <= now {
            return free;
        }
        let mut m = 0u16;
        for i in 0..self.size() as usize {
            if free & (1 << i) != 0 && self.cool_until[i] <= now {
                m |= 1 << i;
            }
        }
        m
    }

    fn has_cooling(&self, now: Ms) -> bool {
        self.cool_max > now
    }
}

#[derive(Clone, Debug)]
struct NodeEni {
    eni: EniId,
    serial: u64,
    primary: bool,
    created: Ms,
    cidrs: Vec<Cidr>,
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
}

/// Where a pod's address is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PodAddr {
    pub subnet: SubnetId,
    pub offset: u32,
}

/// One node's ipamd.
#[derive(Clone, Debug)]
pub struct NodeIpam {
    spec: IpamSpec,
    limits: NodeLimits,
    enis: Vec<NodeEni>,
    stats: PoolStats,
    last_decrease: Option<Ms>,
    last_insufficient: Option<Ms>,
    /// End of the last decision's work; decisions fall on anchor + k * 5 s.
    anchor: Ms,
    /// The decision already asked for, if any.
    scheduled: Option<Ms>,
    /// Reused scratch space (no allocation per pod or decision).
    scratch: Vec<u32>,
    scratch2: Vec<u32>,
}

impl NodeIpam {
    /// ipamd starting on a node whose primary ENI is `primary` (created by
    /// EC2 at launch). Returns the ipamd and the time of its first decision
    /// (immediately).
    pub fn start(spec: IpamSpec, primary: EniId, ec2: &Ec2, now: Ms) -> (Self, Ms) {
        let limits = NodeLimits {
            pd: spec.pd,
            slots_per_eni: spec.slots_per_eni,
            max_pods: spec.max_pods,
        };
        let serial = ec2.eni(primary).serial;
        let ipam = NodeIpam {
            spec,
            limits,
            enis: vec![NodeEni {
                eni: primary,
                serial,
                primary: true,
                created: now,
                cidrs: Vec::new(),
                assigned: 0,
            }],
            stats: PoolStats::default(),
            last_decrease: None,
            last_insufficient: None,
            anchor: now,
            scheduled: Some(now),
            scratch: Vec::new(),
            scratch2: Vec::new(),
        };
        (ipam, now)
    }

    pub fn spec(&self) -> &IpamSpec {
        &self.spec
    }

    pub fn stats(&self) -> PoolStats {
        self.stats
    }

    /// End of the last decision's work: decisions fall on `anchor + k * 5 s`.
    pub fn anchor(&self) -> Ms {
        self.anchor
    }

    pub fn num_enis(&self) -> usize {
        self.enis.len()
    }

    /// Cidrs (prefixes or secondary addresses) per ENI, primary first.
    pub fn cidrs_per_eni(&self) -> Vec<u32> {
        self.enis.iter().map(|e| e.cidrs.len() as u32).collect()
    }

    /// Whether `at` is the decision this ipamd asked for (later requests
    /// supersede earlier ones; a superseded wake-up is ignored).
    pub fn is_due(&self, at: Ms) -> bool {
        self.scheduled == Some(at)
    }

    fn pod_eni(&self, e: &NodeEni) -> bool {
        !(self.spec.custom_networking && e.primary)
    }

    /// The earliest time at which an address can be handed to a pod, if the
    /// pool holds any (CNI readiness, §5).
    pub fn ready_at(&self) -> Option<Ms> {
        self.enis
            .iter()
            .filter(|e| self.pod_eni(e))
            .flat_map(|e| e.cidrs.iter())
            .map(|c| c.ready_at)
            .min()
    }

    /// Assigns a pod address the way the datastore does: a random ENI and a
    /// random prefix among those with a free, non-cooling address, then the
    /// lowest such address. No EC2 call. `None`: the sandbox fails
    /// (`failed to assign an IP address to container`).
    pub fn assign_pod<R: Rng + ?Sized>(&mut self, now: Ms, rng: &mut R) -> Option<PodAddr> {
        self.scratch.clear();
        for (i, e) in self.enis.iter().enumerate() {
            if self.pod_eni(e) && e.cidrs.iter().any(|c| c.usable_mask(now) != 0) {
                self.scratch.push(i as u32);
            }
        }
        if self.scratch.is_empty() {
            return None;
        }
        let ei = self.scratch[rng.gen_range(0..self.scratch.len())] as usize;
        self.scratch2.clear();
        for (j, c) in self.enis[ei].cidrs.iter().enumerate() {
            if c.usable_mask(now) != 0 {
                self.scratch2.push(j as u32);
            }
        }
        let ci = self.scratch2[rng.gen_range(0..self.scratch2.len())] as usize;
        let subnet = self.eni_subnet(ei);
        let eni = &mut self.enis[ei];
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

    fn eni_subnet(&self, ei: usize) -> SubnetId {
        if self.enis[ei].primary {
            self.spec.node_subnet
        } else {
            self.spec.pod_subnet
        }
    }

    /// A pod left: its address cools down before reuse.
    pub fn release_pod(&mut self, now: Ms, addr: PodAddr, cfg: &CniConfig) {
        for ei in 0..self.enis.len() {
            if self.eni_subnet(ei) != addr.subnet {
                continue;
            }
            let eni = &mut self.enis[ei];
            for c in eni.cidrs.iter_mut() {
                if addr.offset >= c.base && addr.offset < c.base + c.size() {
                    let bit = addr.offset - c.base;
                    debug_assert!(
                        c.assigned & (1 << bit) != 0,
                        "released an unassigned address"
                    );
                    c.assigned &= !(1 << bit);
                    let until = now + cfg.ip_cooldown;
                    c.cool_until[bit as usize] = until;
                    c.cool_max = c.cool_max.max(until);
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
    pub fn on_pod_change(&mut self, now: Ms) -> Option<Ms> {
        let at = (now.max(self.anchor + Ms(1))).next_on_grid(self.anchor, timing::POOL_INTERVAL);
        self.request(at)
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

    /// One pool decision (`updateIPPoolIfRequired`): grow (at most one EC2
    /// allocation), else shrink (at most once per 30 s), then maybe free
    /// one ENI. Returns the next decision time, or `None` when settled.
    pub fn tick<R: Rng + ?Sized>(
        &mut self,
        now: Ms,
        cfg: &CniConfig,
        ec2: &mut Ec2,
        rng: &mut R,
        events: &mut Vec<IpamEvent>,
    ) -> Option<Ms> {
        self.scheduled = None;
        let stats = self.stats;
        let lim = self.limits;
        let mut work: Option<Ms> = None; // latency of an action taken
        let mut wake: Option<Ms> = None; // a time-only condition to revisit

        if policy::is_low(cfg, &lim, &stats) {
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
                    Grow::Failed { pause } => {
                        if pause {
                            self.last_insufficient = Some(now);
                            wake = Some(now + timing::INSUFFICIENT_PAUSE);
                        } else {
                            // InvalidParameterValue: retried on the next decision.
                            wake = Some(now + Ms(1));
                        }
                    }
                }
            }
        } else if policy::is_high(cfg, &lim, &stats) {
            let gate_end = self
                .last_decrease
                .map(|t| t + timing::DECREASE_INTERVAL + Ms(1))
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
                    events.push(IpamEvent::EniDeleted { serial: e.serial });
                    work = Some(work.unwrap_or(Ms::ZERO));
                }
                Err(Some(t)) => wake = Some(wake.map_or(t, |w| w.min(t))),
                Err(None) => {}
            }
        }

        self.anchor = now + work.unwrap_or(Ms::ZERO);
        let next = match (work, wake) {
            (Some(_), _) => Some(self.anchor + timing::POOL_INTERVAL),
            (None, Some(w)) => Some(
                w.max(now + Ms(1))
                    .next_on_grid(self.anchor, timing::POOL_INTERVAL),
            ),
            (None, None) => None,
        };
        next.and_then(|t| self.request(t))
    }

    /// `increaseDatastorePool`: fill an existing ENI, else attach a new one.
    fn increase<R: Rng + ?Sized>(
        &mut self,
        now: Ms,
        cfg: &CniConfig,
        ec2: &mut Ec2,
        rng: &mut R,
        events: &mut Vec<IpamEvent>,
    ) -> Grow {
        let lim = self.limits;
        // tryAssignCidrs: ENIs with free slots, in the datastore's random order.
        self.scratch.clear();
        for (i, e) in self.enis.iter().enumerate() {
            if self.pod_eni(e) && (e.cidrs.len() as u32) < lim.slots_per_eni {
                self.scratch.push(i as u32);
            }
        }
        if !self.scratch.is_empty() {
            let ei = self.scratch[rng.gen_range(0..self.scratch.len())] as usize;
            let free_slots = lim.slots_per_eni - self.enis[ei].cidrs.len() as u32;
            let n = policy::request_size(cfg, &lim, &self.stats, free_slots);
            if n == 0 {
                return Grow::Nothing;
            }
            let eni = self.enis[ei].eni;
            let mut res = self.ec2_assign(ec2, eni, n, rng);
            let mut got = n;
            if res.is_err() && n > 1 {
                // "Try to just get one more prefix" (and likewise one address).
                res = self.ec2_assign(ec2, eni, 1, rng);
                got = 1;
            }
            return match res {
                Ok(()) => {
                    self.adopt_new_cidrs(ei, ec2, now + ec2.config.assign_latency);
                    events.push(IpamEvent::CidrsAssigned { eni, cidrs: got });
                    Grow::Done(ec2.config.assign_latency)
                }
                Err(error) => failed(events, error, got, false),
            };
        }
        // tryAllocateENI
        if self.enis.len() as u32 >= self.spec.max_enis {
            return Grow::Nothing;
        }
        let n = policy::request_size(cfg, &lim, &self.stats, lim.slots_per_eni);
        if n == 0 {
            return Grow::Nothing;
        }
        let owner = EniOwner {
            kind: OwnerKind::EksPod,
            instance: Some(self.spec.node),
            device_index: self.enis.len() as u32,
        };
        let created = if lim.pd {
            ec2.create_eni(self.spec.pod_subnet, owner, n, rng)
        } else {
            ec2.create_eni(self.spec.pod_subnet, owner, 0, rng)
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
                self.enis.push(NodeEni {
                    eni: id,
                    serial,
                    primary: false,
                    created: now,
                    cidrs: Vec::new(),
                    assigned: 0,
                });
                let ei = self.enis.len() - 1;
                self.adopt_new_cidrs(ei, ec2, now + ec2.config.eni_latency);
                events.push(IpamEvent::EniCreated {
                    eni: id,
                    serial,
                    cidrs: n,
                });
                Grow::Done(ec2.config.eni_latency)
            }
            Err(error) => failed(events, error, n, true),
        }
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
            self.enis[ei].cidrs.push(Cidr::new(base, pd, ready_at));
            self.stats.cidrs += 1;
            if pd {
                self.stats.total += IPS_PER_PREFIX;
                self.stats.free_prefixes += 1;
            } else {
                self.stats.total += 1;
            }
        }
    }

    /// `tryUnassignCidrsFromAll`: release up to `over` unused cidrs, ENIs
    /// and cidrs in random order (the datastore iterates Go maps). Prefixes
    /// go whatever their cool-down; single addresses only once cooled.
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
                let freeable =
                    c.assigned == 0 && c.ready_at <= now && (c.prefix || !c.has_cooling(now));
                if freeable {
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
            let eni = self.enis[ei].eni;
            for &j in picked.iter() {
                let c = self.enis[ei].cidrs.swap_remove(j as usize);
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
                cidrs: take as u32,
            });
            over -= take as u32;
            freed_total += take as u32;
        }
        freed_total
    }

    /// `getDeletableENI`, in random ENI order. `Err(Some(t))`: none now, but
    /// one blocked only by its age or a cooling address may go at `t`.
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
        self.scratch.extend(1..self.enis.len() as u32);
        self.scratch.shuffle(rng);
        let mut later: Option<Ms> = None;
        for &ei in &self.scratch {
            let e = &self.enis[ei as usize];
            if e.primary || e.assigned > 0 {
                continue;
            }
            let other_total = self.stats.total - e.total();
            let other_available = other_total - (self.stats.assigned - e.assigned);
            let other_free = self.stats.free_prefixes - e.free_prefixes();
            if policy::eni_required(cfg, &self.limits, other_available, other_total, other_free) {
                continue;
            }
            let old_enough = e.created + timing::ENI_MIN_AGE;
            let cooled = e.cidrs.iter().map(|c| c.cool_max).max().unwrap_or(Ms::ZERO);
            let ready = e.cidrs.iter().map(|c| c.ready_at).max().unwrap_or(Ms::ZERO);
            let free_at = old_enough.max(cooled).max(ready);
            if free_at <= now {
                return Ok(ei as usize);
            }
            later = Some(later.map_or(free_at, |l: Ms| l.min(free_at)));
        }
        Err(later)
    }

    /// The node is gone: every ENI (primary included) is deleted and its
    /// addresses and prefixes return to the subnet.
    pub fn teardown(self, ec2: &mut Ec2) -> Vec<u64> {
        self.enis
            .into_iter()
            .map(|e| {
                ec2.delete_eni(e.eni).expect("node ENI is live");
                e.serial
            })
            .collect()
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

enum Grow {
    Done(Ms),
    Nothing,
    Failed { pause: bool },
}

/// Records a failed EC2 allocation; growth pauses after the errors that
/// `containsInsufficientCIDRsOrSubnetIPs` matches.
fn failed(events: &mut Vec<IpamEvent>, error: Ec2Error, requested: u32, new_eni: bool) -> Grow {
    let pause = pauses(error);
    events.push(IpamEvent::AllocFailed {
        error,
        requested,
        new_eni,
        paused: pause,
    });
    Grow::Failed { pause }
}

/// `containsInsufficientCIDRsOrSubnetIPs`: these two errors pause growth.
fn pauses(e: Ec2Error) -> bool {
    matches!(
        e,
        Ec2Error::InsufficientCidrBlocks | Ec2Error::InsufficientFreeAddressesInSubnet
    )
}
