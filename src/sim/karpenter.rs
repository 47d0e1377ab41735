//! Karpenter: provisioning (batching pending pods, choosing instance types,
//! choosing the subnet as karpenter-provider-aws does), expiration and
//! consolidation. Decisions are pure functions tested without the engine;
//! docs/node-churn-model.md gives the sources.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use super::{Event, Launcher, Node, Simulation, NONE};
use crate::addr::SubnetId;
use crate::cluster::autoscaling::{Autoscaler, ConsolidationPolicy, SubnetPolicy};
use crate::cluster::scheduler::Capacity;
use crate::cluster::spec::{CapacityType, ClusterSpec};
use crate::time::Ms;

/// Pods of one kind to place: requests per pod and how many.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Demand {
    pub cpu: u64,
    pub mem: u64,
    pub count: u32,
}

/// Room on a node: allocatable CPU and memory left, pods left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Room {
    pub cpu: u64,
    pub mem: u64,
    pub pods: u32,
}

impl Room {
    /// The room a fresh node of this capacity offers to pods.
    pub fn of(c: &Capacity) -> Room {
        Room {
            cpu: c.cpu_alloc.saturating_sub(c.cpu_used),
            mem: c.mem_alloc.saturating_sub(c.mem_used),
            pods: c.max_pods.saturating_sub(c.pods),
        }
    }

    /// How many pods of `d` fit (at most `d.count`).
    pub fn fits(&self, d: &Demand) -> u32 {
        let n = u64::from(d.count.min(self.pods));
        // Without a division when all of them fit, or none does.
        if self.cpu < d.cpu || self.mem < d.mem {
            return 0;
        }
        if n.saturating_mul(d.cpu) <= self.cpu && n.saturating_mul(d.mem) <= self.mem {
            return n as u32;
        }
        let by = |left: u64, per: u64| match left.checked_div(per) {
            Some(n) => n.min(u64::from(u32::MAX)) as u32,
            None => u32::MAX,
        };
        d.count
            .min(self.pods)
            .min(by(self.cpu, d.cpu))
            .min(by(self.mem, d.mem))
    }

    /// Places as many pods of each demand as fit, in order; returns how
    /// many were placed and leaves the rest in `demand`.
    pub fn fill(&mut self, demand: &mut [Demand]) -> u32 {
        let mut placed = 0;
        for d in demand.iter_mut() {
            let n = self.fits(d);
            if n > 0 {
                self.cpu -= d.cpu * u64::from(n);
                self.mem -= d.mem * u64::from(n);
                self.pods -= n;
                d.count -= n;
                placed += n;
            }
        }
        placed
    }
}

/// Karpenter's choice of instance types for pods no node (nor node in
/// flight) can take: for each new node, the cheapest type that takes all
/// the pods left, else the type that takes the most (the cheaper on a
/// tie), until every pod is placed. `types` are cheapest first. Returns
/// the types to launch; pods no type can take stay in `demand`.
pub fn plan_nodes(types: &[Room], demand: &mut [Demand], limit: u32) -> Vec<u16> {
    let mut out = Vec::new();
    while demand.iter().any(|d| d.count > 0) && (out.len() as u32) < limit {
        let left: u32 = demand.iter().map(|d| d.count).sum();
        let mut best: Option<(usize, u32)> = None;
        for (k, t) in types.iter().enumerate() {
            let mut room = *t;
            let mut trial: Vec<Demand> = demand.to_vec();
            let placed = room.fill(&mut trial);
            if placed == left {
                best = Some((k, placed));
                break;
            }
            if placed > best.map_or(0, |b| b.1) {
                best = Some((k, placed));
            }
        }
        match best {
            Some((k, n)) if n > 0 => {
                let mut room = types[k];
                room.fill(demand);
                out.push(k as u16);
            }
            _ => break,
        }
    }
    out
}

/// Whether every pod of `demand` fits on the `others` nodes' room
/// (first fit over the nodes in the order given, least allocated first):
/// the scheduling simulation behind consolidation and scale-down. It gives
/// up after [`GIVE_UP`] nodes in a row that take nothing (the rest, more
/// allocated, have less room), so a check costs a few nodes, not the
/// cluster.
pub fn reschedulable(demand: &[Demand], others: impl Iterator<Item = Room>) -> bool {
    reschedulable_in(demand, others, &mut Vec::new())
}

/// [`reschedulable`] with the pods left kept in `left` (a reused buffer).
pub fn reschedulable_in(
    demand: &[Demand],
    others: impl Iterator<Item = Room>,
    left: &mut Vec<Demand>,
) -> bool {
    left.clear();
    left.extend_from_slice(demand);
    let mut pods: u32 = left.iter().map(|d| d.count).sum();
    if pods == 0 {
        return true;
    }
    let mut idle = 0;
    for mut room in others {
        match room.fill(left) {
            0 => {
                idle += 1;
                if idle >= GIVE_UP {
                    return false;
                }
            }
            placed => {
                idle = 0;
                pods -= placed;
                if pods == 0 {
                    return true;
                }
            }
        }
    }
    false
}

/// Nodes in a row with no room after which a rescheduling check gives up.
pub const GIVE_UP: u32 = 8;

/// Cheaper instance types a spot node's single-node replacement needs
/// (`MinInstanceTypesForSpotToSpotConsolidation` in karpenter
/// `pkg/controllers/disruption/consolidation.go`).
pub const MIN_TYPES_SPOT_TO_SPOT: usize = 15;

/// The replacement for a single-node consolidation candidate, if Karpenter
/// makes one (`computeConsolidation`): `fitting` are the pool's types
/// cheaper than the candidate that take all its pods, cheapest first. An
/// on-demand node is replaced by the cheapest. A spot node replaced by
/// spot needs the `SpotToSpotConsolidation` feature gate (off by default)
/// and at least [`MIN_TYPES_SPOT_TO_SPOT`] cheaper options
/// (`computeSpotToSpotConsolidation`); Karpenter then launches from the 15
/// cheapest, the model the cheapest.
pub fn replacement(
    mut fitting: impl Iterator<Item = u16>,
    spot: bool,
    spot_to_spot: bool,
) -> Option<u16> {
    if !spot {
        return fitting.next();
    }
    if !spot_to_spot {
        return None;
    }
    let first = fitting.next()?;
    (fitting.take(MIN_TYPES_SPOT_TO_SPOT - 1).count() == MIN_TYPES_SPOT_TO_SPOT - 1)
        .then_some(first)
}

/// A consolidatable node's place in Karpenter's candidate order
/// (`sortCandidates` in `pkg/controllers/disruption/consolidation.go`,
/// v1.14 on): the savings ratio, price over reschedule disruption cost,
/// highest first. A node's disruption cost is 1 plus each reschedulable
/// pod's eviction cost (`computeRescheduleDisruptionCost`), 1 a pod without
/// a deletion-cost annotation or priority (`EvictionCost`), as every pod
/// here; DaemonSet pods are not reschedulable. Empty nodes (no
/// reschedulable pod) come first, for emptiness. Ties, which Karpenter
/// leaves in no set order (`sort.Slice` over nodes listed from a map), go
/// to the least allocated node, then the oldest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CandKey {
    /// Reschedulable pods (0: empty).
    pub pods: u32,
    /// Price per hour in millionths of a dollar; 0 for a type without a
    /// price (last, by allocation).
    pub price: u64,
    /// The scheduler's index key (allocation).
    pub alloc: u64,
    pub id: u32,
}

impl Ord for CandKey {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        // price / (1 + pods), higher first: compared exactly, crosswise.
        let mine = u128::from(self.price) * (1 + u128::from(o.pods));
        let theirs = u128::from(o.price) * (1 + u128::from(self.pods));
        (self.pods > 0)
            .cmp(&(o.pods > 0))
            .then(theirs.cmp(&mine))
            .then(self.alloc.cmp(&o.alloc))
            .then(self.id.cmp(&o.id))
            .then(self.pods.cmp(&o.pods))
            .then(self.price.cmp(&o.price))
    }
}

impl PartialOrd for CandKey {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

/// Node `id`'s place among the consolidatable nodes, under index key
/// `alloc` (the one it had when it became consolidatable).
fn cand_key(spec: &ClusterSpec, n: &Node, alloc: u64, id: u32) -> CandKey {
    CandKey {
        pods: n.ripe_pods,
        price: spec.pools[n.pool as usize].types[n.itype as usize]
            .price
            .unwrap_or(0),
        alloc,
        id,
    }
}

/// Candidates one consolidation pass evaluates at most (the first in
/// [`CandKey`] order): a bound on the simulation's cost, standing for Karpenter's
/// single-node consolidation timeout; a documented knob of the model, not
/// a Karpenter setting.
pub const CANDIDATES_PER_PASS: usize = 50;

/// One subnet as Karpenter's subnet provider sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubnetView {
    pub subnet: u32,
    pub zone: u32,
    /// `AvailableIpAddressCount` as last described, minus in-flight
    /// deductions (karpenter-provider-aws `inflightIPs`).
    pub available: i64,
    /// Delegatable /28 blocks now, less those launches in flight since the
    /// last refresh will take (for the what-if policy).
    pub blocks: i64,
    /// The pool's nodes in this subnet's zone.
    pub zone_nodes: u32,
}

/// The subnet for a launch: per zone the best subnet by `policy` (ties: the
/// first listed, as `ZonalSubnetsForLaunch` keeps the earlier on `>=`);
/// then the zone with the fewest of the pool's nodes (spreading), ties to
/// the better subnet, then the first listed.
pub fn choose_subnet(views: &[SubnetView], policy: SubnetPolicy) -> Option<usize> {
    let score = |v: &SubnetView| match policy {
        SubnetPolicy::AvailableIps => (v.available, 0),
        SubnetPolicy::DelegatableBlocks => (v.blocks, v.available),
    };
    // Per zone: the best subnet.
    let mut zonal: Vec<usize> = Vec::new();
    for (k, v) in views.iter().enumerate() {
        match zonal.iter_mut().find(|z| views[**z].zone == v.zone) {
            Some(z) => {
                if score(v) > score(&views[*z]) {
                    *z = k;
                }
            }
            None => zonal.push(k),
        }
    }
    let mut best: Option<usize> = None;
    for &k in &zonal {
        let v = &views[k];
        let better = match best {
            None => true,
            Some(b) => {
                let w = &views[b];
                v.zone_nodes < w.zone_nodes || (v.zone_nodes == w.zone_nodes && score(v) > score(w))
            }
        };
        if better {
            best = Some(k);
        }
    }
    best
}

/// Karpenter's state.
pub struct KarpenterState {
    /// Karpenter pools, in scenario order (a pod without a node pool goes
    /// to the first).
    pools: Vec<u32>,
    /// The open batch: (first pod, last pod).
    batch: Option<(Ms, Ms)>,
    batch_queued: bool,
    /// Per subnet: `AvailableIpAddressCount` as last described, the
    /// in-flight tracked count, and until when the subnet is unavailable
    /// after an `InsufficientFreeAddressesInSubnet`.
    cached: Vec<i64>,
    inflight: Vec<Option<i64>>,
    /// The what-if policy's counterpart: /28 blocks taken by launches in
    /// flight since the last refresh.
    inflight_blocks: Vec<i64>,
    unavailable_until: Vec<Ms>,
    refreshed: Option<Ms>,
    /// Per pool: Karpenter launches asked and not yet made, per type.
    pub launching: Vec<Vec<u32>>,
    /// Per pool: the cluster changed since consolidation last found
    /// nothing to do (Karpenter's `IsConsolidated`), and when to look again
    /// anyway: when the next node becomes consolidatable, or 5 minutes
    /// later (`Cluster.ConsolidationState`).
    changed: Vec<bool>,
    wake_at: Vec<Ms>,
    /// Per pool with `consolidate_after`: the nodes not yet
    /// consolidatable, each once (`Node::due_filed`), by when it would
    /// become so as of its filing (earliest first). A pod event only moves
    /// the node's `last_pod_event`; the entry is filed again at its true
    /// time when it comes up (it can only be later). So a pod event costs
    /// no entry, and a node one filing per `consolidate_after`.
    due: Vec<BinaryHeap<Reverse<(Ms, u32)>>>,
    /// Reused buffers of the disruption pass.
    scratch: Scratch,
    /// Per pool: the schedulable nodes whose last pod event is at least
    /// `consolidate_after` ago (consolidatable): the disruption pass's
    /// candidates in Karpenter's order ([`CandKey`]), without a scan of
    /// every node; with what the pass works out about each.
    ripe: Vec<BTreeMap<CandKey, Candidate>>,
    /// The command waiting out the validation delay, if any (no pass
    /// runs meanwhile).
    validating: Option<Command>,
}

/// A consolidatable node as the disruption pass sees it. A node leaves the
/// set at its next pod event, so its pods do not change while it is here:
/// its demand and its cheaper type are worked out once, at its first
/// pass, and kept with its entry, where the next passes read them without
/// touching the node (cold: untouched for `consolidate_after`).
#[derive(Clone, Debug, Default)]
struct Candidate {
    /// Index into the pool's types.
    itype: u16,
    /// Its pods as demands (`node_demand`), once worked out.
    demand: Option<Vec<Demand>>,
    /// The cheapest type (earlier in the pool's list) taking all of its
    /// pods, once looked for: `Some(None)` when none does.
    cheaper: Option<Option<u16>>,
}

/// The disruption pass's buffers, kept between passes.
#[derive(Default)]
struct Scratch {
    rooms: Vec<(u32, Room)>,
    workloads: Vec<u32>,
    left: Vec<Demand>,
    demand: Vec<Demand>,
    /// The pools a pass looks at, with when their next node becomes
    /// consolidatable.
    looked: Vec<(u32, Option<Ms>)>,
    /// Filings of nodes outside the index, set aside while the next
    /// wake-up is looked for.
    aside: Vec<Reverse<(Ms, u32)>>,
}

/// A disruption command, decided by a pass and carried out after the
/// validation delay if it still holds (`karpenter_validate`).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Command {
    /// Empty consolidatable nodes, within their pools' budgets.
    Empty(Vec<u32>),
    /// A node whose pods all fit on its pool's other nodes.
    Delete { node: u32, pods: u32 },
    /// A node replaced by a cheaper type (indices into the pool's types).
    Replace { node: u32, from: u16, to: u16 },
}

/// Karpenter considers consolidating at least this often even when
/// nothing changed (`Cluster.ConsolidationState`).
const CONSOLIDATION_RECHECK: Ms = Ms(5 * 60_000);

/// How long a subnet that failed a launch for want of addresses is left
/// out (karpenter-provider-aws `UnavailableOfferingsTTL`).
const SUBNET_UNAVAILABLE: Ms = Ms(3 * 60_000);

impl Candidate {
    fn of(itype: u16) -> Self {
        Candidate {
            itype,
            ..Candidate::default()
        }
    }
}

impl KarpenterState {
    pub fn new(spec: &ClusterSpec) -> Self {
        let n = spec.subnets.len();
        KarpenterState {
            pools: spec
                .pools
                .iter()
                .enumerate()
                .filter(|(_, p)| p.autoscaler == Autoscaler::Karpenter)
                .map(|(i, _)| i as u32)
                .collect(),
            batch: None,
            batch_queued: false,
            cached: vec![0; n],
            inflight: vec![None; n],
            inflight_blocks: vec![0; n],
            unavailable_until: vec![Ms::ZERO; n],
            refreshed: None,
            launching: spec.pools.iter().map(|p| vec![0; p.types.len()]).collect(),
            changed: vec![true; spec.pools.len()],
            wake_at: vec![Ms::ZERO; spec.pools.len()],
            due: vec![BinaryHeap::new(); spec.pools.len()],
            scratch: Scratch::default(),
            ripe: vec![BTreeMap::new(); spec.pools.len()],
            validating: None,
        }
    }
}

impl Simulation {
    fn is_karpenter(&self, pool: u32) -> bool {
        self.spec.pools[pool as usize].autoscaler == Autoscaler::Karpenter
    }

    pub(super) fn karpenter_init(&mut self) {
        let poll = self.spec.karpenter.disruption_poll;
        let any = self.karpenter.pools.iter().any(|&p| {
            self.spec.pools[p as usize]
                .karpenter
                .as_ref()
                .is_some_and(|k| k.consolidate_after.is_some())
        });
        if any {
            self.queue.schedule(poll, Event::KarpenterDisruption);
        }
    }

    /// The Karpenter pool for a workload's pods.
    fn karpenter_pool_for(&self, wi: usize) -> Option<u32> {
        match self.spec.workloads[wi].pool {
            Some(p) => self.is_karpenter(p as u32).then_some(p as u32),
            None => self.karpenter.pools.first().copied(),
        }
    }

    /// A pod could not be scheduled: Karpenter's batch opens or extends.
    pub(super) fn karpenter_unschedulable(&mut self, wi: usize) {
        if self.karpenter_pool_for(wi).is_some() {
            self.karpenter_trigger();
        }
    }

    pub(super) fn karpenter_trigger(&mut self) {
        let now = self.queue.now();
        match &mut self.karpenter.batch {
            Some((_, last)) => *last = now,
            None => self.karpenter.batch = Some((now, now)),
        }
        if !self.karpenter.batch_queued {
            self.karpenter.batch_queued = true;
            let idle = self.spec.karpenter.batch_idle_duration;
            self.queue.schedule(now + idle, Event::KarpenterBatch);
        }
    }

    /// The batch closes after `batch_idle_duration` without a new pod, or
    /// `batch_max_duration` after it opened.
    pub(super) fn karpenter_batch(&mut self) {
        self.karpenter.batch_queued = false;
        let Some((start, last)) = self.karpenter.batch else {
            return;
        };
        let k = &self.spec.karpenter;
        let close = (last + k.batch_idle_duration).min(start + k.batch_max_duration);
        let now = self.queue.now();
        if now < close {
            self.karpenter.batch_queued = true;
            self.queue.schedule(close, Event::KarpenterBatch);
            return;
        }
        self.karpenter.batch = None;
        for i in 0..self.karpenter.pools.len() {
            let pool = self.karpenter.pools[i];
            self.karpenter_provision(pool);
        }
    }

    /// Pending pods for the pool, less what nodes in flight will take; the
    /// rest gets new nodes.
    fn karpenter_provision(&mut self, pool: u32) {
        let pi = pool as usize;
        let mut demand: Vec<Demand> = Vec::new();
        for wi in 0..self.spec.workloads.len() {
            if self.pending_count[wi] > 0 && self.karpenter_pool_for(wi) == Some(pool) {
                let w = &self.spec.workloads[wi];
                demand.push(Demand {
                    cpu: w.cpu_millis,
                    mem: w.memory_mib,
                    count: self.pending_count[wi],
                });
            }
        }
        if demand.is_empty() {
            return;
        }
        let pending: u32 = demand.iter().map(|d| d.count).sum();
        // Nodes in flight take pods first (Karpenter schedules onto them).
        for k in 0..self.booting[pi].len() {
            let id = self.booting[pi][k];
            let mut room = Room::of(&self.nodes[id as usize].as_ref().expect("booting").cap);
            room.fill(&mut demand);
        }
        let types: Vec<Room> = self.spec.pools[pi]
            .types
            .iter()
            .map(|t| self.type_room(t))
            .collect();
        for (k, &n) in self.karpenter.launching[pi].iter().enumerate() {
            for _ in 0..n {
                types[k].clone().fill(&mut demand);
            }
        }
        let p = &self.spec.pools[pi];
        let have = self.pool_live(pi) + self.pool_launching[pi];
        let limit = p.max_size.saturating_sub(have);
        let plan = plan_nodes(&types, &mut demand, limit);
        let unplaced: u32 = demand.iter().map(|d| d.count).sum();
        if plan.is_empty() && unplaced == 0 {
            return;
        }
        let mut counts: Vec<(u16, u32)> = Vec::new();
        for &k in &plan {
            match counts.iter_mut().find(|c| c.0 == k) {
                Some(c) => c.1 += 1,
                None => counts.push((k, 1)),
            }
        }
        let list: Vec<String> = counts
            .iter()
            .map(|(k, n)| format!("{n} × {}", p.types[*k as usize].instance.name))
            .collect();
        let mut detail = format!(
            "pool {}: {pending} pending pods; launching {}",
            p.name,
            if list.is_empty() {
                "nothing".to_string()
            } else {
                list.join(", ")
            }
        );
        if unplaced > 0 {
            detail.push_str(&format!(
                "; {unplaced} pods left Pending ({})",
                if limit == 0 || plan.len() as u32 == limit {
                    "max_size reached"
                } else {
                    "no allowed type fits them"
                }
            ));
        }
        self.log("karpenter_provision", None, None, detail);
        let at = self.queue.now() + self.spec.karpenter.launch_delay;
        for k in plan {
            self.ask_launch(pool, NONE, k, Launcher::Karpenter, at);
        }
    }

    fn type_room(&self, t: &crate::cluster::spec::PoolType) -> Room {
        Room {
            cpu: t.instance.allocatable_cpu_millis.unwrap_or(0),
            mem: t.instance.allocatable_memory_mib.unwrap_or(0),
            pods: t.max_pods.saturating_sub(self.spec.nodes.daemonset_pods),
        }
    }

    /// Karpenter's subnet for a launch (`ZonalSubnetsForLaunch`), with the
    /// in-flight deduction of the smallest max pods of the pool's types.
    /// `None` when every subnet of the pool is out after a failure (the
    /// pods stay Pending and are batched again when one is back).
    pub(super) fn karpenter_subnet(&mut self, pool: u32) -> Option<u32> {
        let pi = pool as usize;
        let now = self.queue.now();
        let stale = self
            .karpenter
            .refreshed
            .is_none_or(|t| now >= t + self.spec.karpenter.subnet_refresh_interval);
        if stale {
            for (si, c) in self.karpenter.cached.iter_mut().enumerate() {
                *c = i64::from(self.ec2.free_ips(SubnetId(si as u32)));
            }
            self.karpenter.inflight.fill(None);
            self.karpenter.inflight_blocks.fill(0);
            self.karpenter.refreshed = Some(now);
        }
        let p = &self.spec.pools[pi];
        let mut views = Vec::with_capacity(p.subnets.len());
        let mut back_at: Option<Ms> = None;
        for &si in &p.subnets {
            let until = self.karpenter.unavailable_until[si];
            if until > now {
                back_at = Some(back_at.map_or(until, |b| b.min(until)));
                continue;
            }
            let zone = self.zone_of[si];
            let zone_nodes = p
                .subnets
                .iter()
                .filter(|&&s| self.zone_of[s] == zone)
                .map(|&s| self.pool_subnet_nodes[pi][s])
                .sum();
            views.push(SubnetView {
                subnet: si as u32,
                zone,
                available: self.karpenter.inflight[si].unwrap_or(self.karpenter.cached[si]),
                blocks: i64::from(self.ec2.delegatable_blocks(SubnetId(si as u32)))
                    - self.karpenter.inflight_blocks[si],
                zone_nodes,
            });
        }
        let policy = p.karpenter.as_ref().expect("karpenter pool").subnet_policy;
        let Some(k) = choose_subnet(&views, policy) else {
            if let Some(t) = back_at {
                // Batch again when a subnet is back.
                self.queue.schedule(t, Event::KarpenterBatch);
                self.karpenter.batch_queued = true;
                self.karpenter.batch = Some((t, t));
            }
            return None;
        };
        let si = views[k].subnet;
        let min_pods = p.types.iter().map(|t| t.max_pods).min().unwrap_or(0);
        self.karpenter.inflight[si as usize] = Some(views[k].available - i64::from(min_pods));
        self.karpenter.inflight_blocks[si as usize] += i64::from(min_pods.div_ceil(16));
        Some(si)
    }

    /// CreateFleet failed with `InsufficientFreeAddressesInSubnet`: the
    /// subnet is left out for 3 minutes and counted as empty; the pods are
    /// batched again.
    pub(super) fn karpenter_launch_failed(&mut self, si: u32) {
        let now = self.queue.now();
        self.karpenter.unavailable_until[si as usize] = now + SUBNET_UNAVAILABLE;
        self.karpenter.cached[si as usize] = 0;
        self.karpenter.inflight[si as usize] = None;
        self.karpenter_trigger();
    }

    /// Cluster state changed for the pool: consolidation looks again.
    pub(super) fn karpenter_node_changed(&mut self, pool: u32) {
        self.karpenter.changed[pool as usize] = true;
    }

    /// Node `id`'s `last_pod_event` was just set to now (its index key was
    /// `old_key`): it is no longer consolidatable, and becomes so again
    /// `consolidate_after` from now.
    #[inline]
    pub(super) fn karpenter_touch(&mut self, id: u32, old_key: u64) {
        let node = self.nodes[id as usize].as_ref().expect("live");
        debug_assert_eq!(node.last_pod_event, self.queue.now());
        if !node.karpenter_filed() {
            self.karpenter_refile(id, old_key);
        }
    }

    /// `karpenter_touch` for a node consolidatable until now, or not yet
    /// filed in its pool's `due` heap (out of line: every bind and delete
    /// asks).
    #[inline(never)]
    pub(super) fn karpenter_refile(&mut self, id: u32, old_key: u64) {
        let now = self.queue.now();
        let node = self.nodes[id as usize].as_mut().expect("live");
        let pi = node.pool as usize;
        if node.ripe {
            node.ripe = false;
            let key = cand_key(&self.spec, node, old_key, id);
            self.karpenter.ripe[pi].remove(&key);
        }
        if node.due_filed {
            return;
        }
        if let Some(after) = self.spec.pools[pi]
            .karpenter
            .as_ref()
            .and_then(|k| k.consolidate_after)
        {
            node.due_filed = true;
            self.karpenter.due[pi].push(Reverse((now + after, id)));
        }
    }

    /// Node `id` entered (`true`) or left the scheduler's index under
    /// `key`; a consolidatable node enters or leaves the consolidatable set
    /// with it.
    pub(super) fn karpenter_indexed(&mut self, id: u32, key: u64, entered: bool) {
        let node = self.nodes[id as usize].as_ref().expect("live");
        if node.ripe {
            let k = cand_key(&self.spec, node, key, id);
            let set = &mut self.karpenter.ripe[node.pool as usize];
            if entered {
                set.insert(k, Candidate::of(node.itype));
            } else {
                set.remove(&k);
            }
        }
    }

    /// Nodes whose last pod event is `after` ago by `now` become
    /// consolidatable; returns when the next schedulable one does, if any.
    fn karpenter_ripen(&mut self, pi: usize, now: Ms, after: Ms) -> Option<Ms> {
        let heap = &mut self.karpenter.due[pi];
        let mut aside = std::mem::take(&mut self.karpenter.scratch.aside);
        aside.clear();
        let next = loop {
            let Some(&Reverse((at, id))) = heap.peek() else {
                break None;
            };
            let Some(n) = self.nodes[id as usize].as_mut() else {
                heap.pop(); // gone
                continue;
            };
            debug_assert!(n.due_filed && n.pool as usize == pi);
            let due = n.last_pod_event + after;
            if due > at {
                // A pod event since it was filed: filed again at its time.
                heap.pop();
                heap.push(Reverse((due, id)));
            } else if due <= now {
                heap.pop();
                n.due_filed = false;
                debug_assert!(!n.ripe);
                n.ripe = true;
                n.ripe_pods = n.cap.pods.saturating_sub(self.spec.nodes.daemonset_pods);
                if n.schedulable() {
                    let n = &**n;
                    let key = cand_key(&self.spec, n, n.key, id);
                    self.karpenter.ripe[pi].insert(key, Candidate::of(n.itype));
                }
            } else if !n.schedulable() {
                // Not in the index: its time does not wake the pass.
                aside.push(heap.pop().expect("peeked"));
            } else {
                break Some(due);
            }
        };
        heap.extend(aside.drain(..));
        self.karpenter.scratch.aside = aside;
        next
    }

    /// The disruption controller's pass (`Controller.Reconcile`): in
    /// Karpenter's order, **emptiness** across the pools (every empty
    /// consolidatable node each pool's budget allows), else **single-node
    /// consolidation**, pool by pool (one underutilized node deleted or
    /// replaced by a cheaper one). A command found is not carried out at
    /// once: the controller waits out the validation delay and checks it
    /// again (`karpenter_validate`); meanwhile no pass runs. A pass that
    /// finds nothing polls again after `disruption_poll`.
    pub(super) fn karpenter_disruption(&mut self) {
        let now = self.queue.now();
        match self.disruption_command(now) {
            Some(cmd) => {
                self.karpenter.validating = Some(cmd);
                let at = now + self.spec.karpenter.validation_delay;
                self.queue.schedule(at, Event::KarpenterValidate);
            }
            None => self.next_disruption_pass(now + self.spec.karpenter.disruption_poll),
        }
    }

    fn next_disruption_pass(&mut self, at: Ms) {
        if at < self.duration {
            self.queue.schedule(at, Event::KarpenterDisruption);
        }
    }

    /// Nodes a pool's consolidation may disrupt now: its budget over its
    /// Ready nodes, less those already disrupting.
    fn disruption_allowed(&self, pi: usize) -> u32 {
        let kp = self.spec.pools[pi]
            .karpenter
            .as_ref()
            .expect("karpenter pool");
        let disrupting = self.pool_cordoned[pi];
        let nodes = self.ready_pool[pi].len() as u32 + disrupting;
        kp.budget.allowed(nodes).saturating_sub(disrupting)
    }

    /// The command a pass finds, if any (see `karpenter_disruption`).
    fn disruption_command(&mut self, now: Ms) -> Option<Command> {
        let mut s = std::mem::take(&mut self.karpenter.scratch);
        s.looked.clear();
        // Emptiness first, across the pools: empty nodes sort first in the
        // index (allocation 0).
        let mut empty = Vec::new();
        let daemons = self.spec.nodes.daemonset_pods;
        for i in 0..self.karpenter.pools.len() {
            let pi = self.karpenter.pools[i] as usize;
            if !self.karpenter.changed[pi] && now < self.karpenter.wake_at[pi] {
                continue;
            }
            let kp = self.spec.pools[pi]
                .karpenter
                .as_ref()
                .expect("karpenter pool");
            let Some(after) = kp.consolidate_after else {
                continue;
            };
            let next_ripe = self.karpenter_ripen(pi, now, after);
            #[cfg(debug_assertions)]
            {
                // The set and the wake-up agree with a scan of every node.
                let this: &Simulation = self;
                let scan = |ripe: bool| {
                    this.ready_pool[pi].iter().filter(move |&(_, id)| {
                        let n = this.nodes[id as usize].as_ref().expect("indexed");
                        (now >= n.last_pod_event + after) == ripe
                    })
                };
                let mut ids: Vec<u32> = scan(true).map(|(_, id)| id).collect();
                let mut held: Vec<u32> = this.karpenter.ripe[pi].keys().map(|k| k.id).collect();
                ids.sort_unstable();
                held.sort_unstable();
                debug_assert_eq!(ids, held);
                let first = scan(false)
                    .map(|(_, id)| this.nodes[id as usize].as_ref().expect("indexed"))
                    .map(|n| n.last_pod_event + after)
                    .min();
                debug_assert_eq!(first, next_ripe);
            }
            let allowed = self.disruption_allowed(pi);
            if allowed == 0 {
                continue; // looks again next pass
            }
            s.looked.push((pi as u32, next_ripe));
            // Empty nodes come first, the dearest first (`CandKey`).
            let ripe = &self.karpenter.ripe[pi];
            for key in ripe
                .keys()
                .take_while(|k| k.pods == 0)
                .take(allowed as usize)
            {
                let n = self.nodes[key.id as usize].as_ref().expect("indexed");
                debug_assert_eq!(n.cap.pods, daemons);
                empty.push(key.id);
            }
        }
        let mut cmd = (!empty.is_empty()).then_some(Command::Empty(empty));
        if cmd.is_none() {
            for k in 0..s.looked.len() {
                let (pool, next_ripe) = s.looked[k];
                let pi = pool as usize;
                // Consolidated for now: look again when the next node
                // becomes consolidatable, or in 5 minutes.
                let mut wake = now + CONSOLIDATION_RECHECK;
                if let Some(t) = next_ripe {
                    wake = wake.min(t);
                }
                self.karpenter.wake_at[pi] = wake;
                let when_empty = self.spec.pools[pi]
                    .karpenter
                    .as_ref()
                    .is_some_and(|k| k.consolidation_policy == ConsolidationPolicy::WhenEmpty);
                if !when_empty {
                    cmd = self.single_node(pi, &mut s);
                }
                if cmd.is_some() {
                    break;
                }
                self.karpenter.changed[pi] = false;
            }
        }
        self.karpenter.scratch = s;
        cmd
    }

    /// Single-node consolidation in pool `pi`: candidates in Karpenter's
    /// order, [`CandKey`] (their demands worked out at their first pass, see
    /// `Candidate`), the first whose pods fit on the pool's other nodes is
    /// deleted, or the first a cheaper type takes is replaced.
    fn single_node(&mut self, pi: usize, s: &mut Scratch) -> Option<Command> {
        let mut ripe = std::mem::take(&mut self.karpenter.ripe[pi]);
        for (&CandKey { id, .. }, c) in ripe.iter_mut().take(CANDIDATES_PER_PASS) {
            match &c.demand {
                None => {
                    let mut d = Vec::new();
                    self.node_demand_into(id, &mut d, &mut s.workloads);
                    c.demand = Some(d);
                }
                Some(d) => debug_assert_eq!(*d, self.node_demand(id), "a candidate's pods changed"),
            }
        }
        // The other nodes' room in index order, read once per pass as far
        // as any candidate looks (nothing changes between candidates).
        s.rooms.clear();
        let verdict = {
            let mut order = self.ready_pool[pi].iter();
            let rooms = &mut s.rooms;
            let mut verdict = None;
            for (&CandKey { id, .. }, c) in ripe.iter_mut().take(CANDIDATES_PER_PASS) {
                let demand = c.demand.as_deref().expect("worked out above");
                let mut k = 0;
                let nodes = &self.nodes;
                let others = std::iter::from_fn(|| loop {
                    if k == rooms.len() {
                        let (_, o) = order.next()?;
                        let cap = &nodes[o as usize].as_ref().expect("indexed").cap;
                        rooms.push((o, Room::of(cap)));
                    }
                    let (o, room) = rooms[k];
                    k += 1;
                    if o != id {
                        return Some(room);
                    }
                });
                if reschedulable_in(demand, others, &mut s.left) {
                    let pods: u32 = demand.iter().map(|d| d.count).sum();
                    verdict = Some(Command::Delete { node: id, pods });
                    break;
                }
                if let Some(to) = self.cheaper_type(pi, c, &mut s.left) {
                    verdict = Some(Command::Replace {
                        node: id,
                        from: c.itype,
                        to,
                    });
                    break;
                }
            }
            verdict
        };
        self.karpenter.ripe[pi] = ripe;
        verdict
    }

    /// A cheaper type (earlier in the pool's list) that takes all of a
    /// candidate's pods, worked out once per candidate.
    fn cheaper_type(&self, pi: usize, c: &mut Candidate, left: &mut Vec<Demand>) -> Option<u16> {
        let demand = c.demand.as_deref().expect("worked out");
        let types = &self.spec.pools[pi].types;
        let spot = self.spec.pools[pi].capacity_type == CapacityType::Spot;
        let spot_to_spot = self.spec.karpenter.spot_to_spot_consolidation;
        *c.cheaper.get_or_insert_with(|| {
            let fitting = (0..c.itype as usize)
                .filter(|&k| {
                    let mut room = self.type_room(&types[k]);
                    left.clear();
                    left.extend_from_slice(demand);
                    room.fill(left);
                    left.iter().all(|x| x.count == 0)
                })
                .map(|k| k as u16);
            replacement(fitting, spot, spot_to_spot)
        })
    }

    /// The validation delay has passed (`validation.go`, `isValid`): the
    /// command is carried out if it still holds, and the next pass runs at
    /// once; if not, it is abandoned and the next pass comes after
    /// `disruption_poll`. Each candidate must still be consolidatable (no
    /// pod bound to or gone from it since: Karpenter's `Consolidatable`
    /// condition), Ready and uncordoned, within its pool's budget; a
    /// deletion's pods must still fit on the other nodes, a replacement's
    /// must still not.
    pub(super) fn karpenter_validate(&mut self) {
        let now = self.queue.now();
        let Some(cmd) = self.karpenter.validating.take() else {
            return;
        };
        let started = match cmd {
            Command::Empty(nodes) => {
                let daemons = self.spec.nodes.daemonset_pods;
                let mut budgets: Vec<Option<u32>> = vec![None; self.spec.pools.len()];
                let mut valid = Vec::new();
                for id in nodes {
                    let Some(pi) = self.still_candidate(id) else {
                        continue;
                    };
                    let left = *budgets[pi].get_or_insert_with(|| self.disruption_allowed(pi));
                    let n = self.nodes[id as usize].as_ref().expect("live");
                    if left > 0 && n.cap.pods == daemons {
                        budgets[pi] = Some(left - 1);
                        valid.push(id);
                    }
                }
                if valid.is_empty() {
                    self.log(
                        "consolidation_abandoned",
                        None,
                        None,
                        "empty: no candidate still valid after the validation delay".into(),
                    );
                }
                for &id in &valid {
                    self.consolidation_starts(id, "empty: deleted".into());
                    self.terminate_node(id, "consolidation");
                }
                !valid.is_empty()
            }
            Command::Delete { node, pods } => match self.revalidate(node, false) {
                Ok(()) => {
                    let detail = format!("underutilized: {pods} pods fit on other nodes; deleted");
                    self.consolidation_starts(node, detail);
                    self.terminate_node(node, "consolidation");
                    true
                }
                Err(why) => {
                    self.abandoned(node, why);
                    false
                }
            },
            Command::Replace { node, from, to } => match self.revalidate(node, true) {
                Ok(()) => {
                    let pool = self.nodes[node as usize].as_ref().expect("live").pool;
                    let p = &self.spec.pools[pool as usize];
                    let detail = format!(
                        "underutilized: replacing {} by a cheaper {} (the node goes when the replacement is Ready)",
                        p.types[from as usize].instance.name, p.types[to as usize].instance.name
                    );
                    self.consolidation_starts(node, detail);
                    self.cordon(node);
                    self.ask_launch(pool, node, to, Launcher::Karpenter, now);
                    true
                }
                Err(why) => {
                    self.abandoned(node, why);
                    false
                }
            },
        };
        let poll = self.spec.karpenter.disruption_poll;
        self.next_disruption_pass(if started { now } else { now + poll });
    }

    /// A consolidation of node `id` starts: counted in its subnet and
    /// logged with `detail`.
    fn consolidation_starts(&mut self, id: u32, detail: String) {
        let si = self.nodes[id as usize].as_ref().expect("live").subnet;
        self.gauges[si as usize].consolidations += 1;
        self.log("consolidation", Some(si), Some(id), detail);
    }

    /// The pool of node `id` if it is still a consolidation candidate:
    /// live, Ready, uncordoned and consolidatable.
    fn still_candidate(&self, id: u32) -> Option<usize> {
        let n = self.nodes[id as usize].as_ref()?;
        (n.ripe && n.schedulable()).then_some(n.pool as usize)
    }

    /// Whether a single-node command on `id` still holds: a candidate,
    /// within the budget, and its pods fitting on the other nodes (a
    /// deletion) or not (a replacement); if not, why.
    fn revalidate(&mut self, id: u32, replace: bool) -> Result<(), &'static str> {
        let pi = self
            .still_candidate(id)
            .ok_or("a pod came or went, or the node is no longer Ready")?;
        if self.disruption_allowed(pi) == 0 {
            return Err("the disruption budget no longer allows it");
        }
        let mut s = std::mem::take(&mut self.karpenter.scratch);
        self.node_demand_into(id, &mut s.demand, &mut s.workloads);
        let nodes = &self.nodes;
        let others = self.ready_pool[pi]
            .iter()
            .filter(|&(_, o)| o != id)
            .map(|(_, o)| Room::of(&nodes[o as usize].as_ref().expect("indexed").cap));
        let fits = reschedulable_in(&s.demand, others, &mut s.left);
        self.karpenter.scratch = s;
        match (fits, replace) {
            (true, false) | (false, true) => Ok(()),
            (false, false) => Err("its pods no longer fit on the other nodes"),
            (true, true) => Err("its pods now fit on the other nodes"),
        }
    }

    fn abandoned(&mut self, id: u32, why: &str) {
        let si = self.nodes[id as usize].as_ref().map(|n| n.subnet);
        self.log(
            "consolidation_abandoned",
            si,
            si.map(|_| id),
            format!("underutilized: no longer valid after the validation delay: {why}"),
        );
    }

    /// A node's pods as demands, one per workload, in order of first
    /// appearance.
    pub(super) fn node_demand(&self, id: u32) -> Vec<Demand> {
        let mut out = Vec::new();
        self.node_demand_into(id, &mut out, &mut Vec::new());
        out
    }

    /// [`Self::node_demand`] into reused buffers (`workloads`: each
    /// demand's workload).
    pub(super) fn node_demand_into(
        &self,
        id: u32,
        out: &mut Vec<Demand>,
        workloads: &mut Vec<u32>,
    ) {
        out.clear();
        workloads.clear();
        let node = self.nodes[id as usize].as_ref().expect("live");
        for &(_, w) in &node.pods {
            match workloads.iter().position(|&x| x == w) {
                Some(k) => out[k].count += 1,
                None => {
                    let ws = &self.spec.workloads[w as usize];
                    workloads.push(w);
                    out.push(Demand {
                        cpu: ws.cpu_millis,
                        mem: ws.memory_mib,
                        count: 1,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::observe::{EventRow, VecSink};
    use crate::sim::PodState;

    /// 10 pods of 500m: no m5.large takes them (1930m: 3 pods), the
    /// m5.2xlarge does (15). At 10 minutes 7 of them are deleted (pods
    /// leaving; the workload does not recreate them here): one m5.2xlarge
    /// with 3 pods, which an m5.large would take.
    /// The event rows from `t` on.
    fn rows_since(sink: &VecSink, t: Ms) -> impl Iterator<Item = &EventRow> {
        sink.events.iter().filter(move |e| e.time >= t)
    }

    fn one_big_node_with_three_pods(cidr: &str) -> (Simulation, VecSink) {
        one_big_node_with_three_pods_in(cidr, "on_demand", false)
    }

    fn one_big_node_with_three_pods_in(
        cidr: &str,
        capacity: &str,
        spot_to_spot: bool,
    ) -> (Simulation, VecSink) {
        let yaml = format!(
            "name: replace
duration: 1h
karpenter: {{spot_to_spot_consolidation: {spot_to_spot}}}
subnets:
  - {{name: a, cidr: {cidr}, zone: z}}
node_pools:
  - name: k
    autoscaler: karpenter
    instance_types: [m5.large, m5.2xlarge]
    subnets: [a]
    capacity_type: {capacity}
    karpenter:
      prices: {{m5.large: 0.096, m5.2xlarge: 0.384}}
      consolidate_after: 1m
workloads:
  - {{name: w, replicas: 10, cpu: 500m}}
"
        );
        let sc = crate::scenario::parse(&yaml, std::path::Path::new("t.yaml")).unwrap();
        let mut sim = Simulation::new(&sc, 1);
        let mut sink = VecSink::default();
        sim.run_until(Ms::from_secs(600), &mut sink);
        let running: Vec<u32> = (0..sim.pods.len() as u32)
            .filter(|&p| sim.pods[p as usize].state == PodState::Running)
            .collect();
        assert_eq!(running.len(), 10);
        for &p in &running[..7] {
            sim.delete_pod(p);
        }
        (sim, sink)
    }

    #[test]
    fn an_underutilized_node_is_replaced_by_a_cheaper_type() {
        // The 3 pods fit nowhere else (it is the only node) but an
        // m5.large, cheaper, takes them: the node is cordoned, an m5.large
        // launched to replace it, and the 2xlarge drained once the
        // replacement is Ready.
        let (mut sim, mut sink) = one_big_node_with_three_pods("10.0.0.0/22");
        sim.run_until(Ms::from_secs(1200), &mut sink);
        let rows: Vec<(&str, String)> = rows_since(&sink, Ms::from_secs(600))
            .map(|e| (e.kind, e.detail.clone()))
            .filter(|(k, _)| matches!(*k, "consolidation" | "node_launched" | "node_terminated"))
            .collect();
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert_eq!(rows[0].0, "consolidation");
        assert!(rows[0]
            .1
            .contains("replacing m5.2xlarge by a cheaper m5.large"));
        assert!(rows[1].1.starts_with("m5.large on-demand"), "{rows:?}");
        assert!(rows[1].1.ends_with("replacing i-00000000000000000"));
        assert!(rows[2].1.starts_with("consolidation: 3 pods evicted"));
        // The three pods run on the m5.large.
        let live: Vec<&super::super::Node> = sim.nodes.iter().flatten().map(|n| &**n).collect();
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].itype, 0);
        assert_eq!(live[0].pods.len(), 3);
    }

    #[test]
    fn a_spot_node_is_not_replaced_by_spot_without_fifteen_cheaper_types() {
        // The same node as spot: Karpenter's SpotToSpotConsolidation gate
        // is off by default, and on it still needs 15 cheaper types (the
        // pool has one). The node stays, consolidatable, never replaced.
        for gate in [false, true] {
            let (mut sim, mut sink) = one_big_node_with_three_pods_in("10.0.0.0/22", "spot", gate);
            sim.run_until(Ms::from_secs(1200), &mut sink);
            let kinds: Vec<&str> = rows_since(&sink, Ms::from_secs(600))
                .map(|e| e.kind)
                .filter(|k| matches!(*k, "consolidation" | "node_launched" | "node_terminated"))
                .collect();
            assert!(kinds.is_empty(), "gate {gate}: {kinds:?}");
            let live: Vec<&super::super::Node> = sim.nodes.iter().flatten().map(|n| &**n).collect();
            assert_eq!(live.len(), 1);
            assert_eq!(live[0].itype, 1, "still the m5.2xlarge");
            assert_eq!(live[0].pods.len(), 3);
        }
    }

    #[test]
    fn candidates_go_by_savings_ratio_not_allocation() {
        // Two m5.large: node 0 holds one 1500m pod (78% allocated), node 1
        // two 100m pods (10%). Each's pods fit on the other. Least
        // allocated first would delete node 1; Karpenter takes the highest
        // price / (1 + pods) first: node 0 (p/2 against p/3).
        let yaml = "name: order
duration: 1h
subnets:
  - {name: a, cidr: 10.0.0.0/22, zone: z}
node_pools:
  - name: k
    autoscaler: karpenter
    instance_types: [m5.large]
    size: 2
    subnets: [a]
    karpenter:
      prices: {m5.large: 0.096}
      consolidate_after: 1m
workloads:
  - {name: big, replicas: 0, cpu: 1500m}
  - {name: small, replicas: 0, cpu: 100m}
";
        let sc = crate::scenario::parse(yaml, std::path::Path::new("t.yaml")).unwrap();
        let mut sim = Simulation::new(&sc, 1);
        let mut sink = VecSink::default();
        // Both nodes Ready, then the pods: the big one on node 0 (a tie,
        // the lower id), the small ones on node 1 (least allocated).
        sim.run_until(Ms::from_secs(60), &mut sink);
        assert_eq!(sim.ready_pool[0].len(), 2);
        sim.set_replicas(0, 1);
        sim.set_replicas(1, 2);
        sim.queue_schedule();
        sim.settle();
        sim.run_until(Ms::from_secs(600), &mut sink);
        let on = |w: u32| -> Vec<u32> {
            let mut v: Vec<u32> = sim
                .pods
                .iter()
                .filter(|p| p.workload == w && p.state == PodState::Running)
                .map(|p| p.node)
                .collect();
            v.sort_unstable();
            v
        };
        let first: Vec<String> = sink
            .events
            .iter()
            .filter(|e| e.kind == "consolidation")
            .map(|e| e.detail.clone())
            .collect();
        assert_eq!(first.len(), 1, "{first:?}");
        assert!(
            first[0].starts_with("underutilized: 1 pods fit"),
            "{first:?}"
        );
        // Every pod now runs on node 1.
        assert_eq!(on(0), [1]);
        assert_eq!(on(1), [1, 1]);
    }

    #[test]
    fn the_savings_ratio_orders_candidates() {
        let k = |pods: u32, price: u64, alloc: u64, id: u32| CandKey {
            pods,
            price,
            alloc,
            id,
        };
        let mut keys = [
            k(3, 384, 10, 0), // 96
            k(1, 96, 5, 1),   // 48
            k(0, 96, 0, 2),   // empty
            k(1, 192, 90, 3), // 96: ties with 0, more allocated
            k(0, 384, 0, 4),  // empty, dearer
            k(2, 0, 1, 5),    // no price
            k(7, 384, 20, 6), // 48, ties with 1, more allocated
        ];
        keys.sort();
        let ids: Vec<u32> = keys.iter().map(|k| k.id).collect();
        assert_eq!(ids, [4, 2, 0, 3, 1, 6, 5]);
    }

    #[test]
    fn spot_to_spot_replacement_follows_karpenter() {
        let cheaper = |n: u16| 0..n;
        // On-demand: the cheapest that fits.
        assert_eq!(replacement(cheaper(1), false, false), Some(0));
        assert_eq!(replacement(cheaper(0), false, true), None);
        // Spot: never with the gate off.
        assert_eq!(replacement(cheaper(20), true, false), None);
        // Gate on: 15 cheaper options at least, then the cheapest.
        assert_eq!(replacement(cheaper(14), true, true), None);
        assert_eq!(replacement(cheaper(15), true, true), Some(0));
        assert_eq!(replacement([3, 5].into_iter(), true, true), None);
        assert_eq!(replacement((2..40).step_by(2), true, true), Some(2));
    }

    #[test]
    fn a_pod_event_during_the_validation_delay_abandons_the_command() {
        // The 2xlarge is consolidatable 1m after the deletions at 600 s:
        // the pass at 660 s finds its replacement and waits 15 s. A pod
        // leaves it at 665 s: at 675 s the command no longer holds
        // (Karpenter's `Consolidatable` condition is gone) and is
        // abandoned; no pass runs in between. The node is consolidatable
        // again at 725 s, a pass on the 10 s grid from 675 s finds it then,
        // and the replacement starts at 740 s.
        let (mut sim, mut sink) = one_big_node_with_three_pods("10.0.0.0/22");
        sim.run_until(Ms::from_secs(665), &mut sink);
        assert!(matches!(
            sim.karpenter.validating,
            Some(Command::Replace { from: 1, to: 0, .. })
        ));
        let pod = (0..sim.pods.len() as u32)
            .find(|&p| sim.pods[p as usize].state == PodState::Running)
            .expect("a running pod");
        sim.delete_pod(pod);
        sim.run_until(Ms::from_secs(1200), &mut sink);
        let rows: Vec<(Ms, &str, &str)> = rows_since(&sink, Ms::from_secs(600))
            .filter(|e| e.kind.starts_with("consolidation"))
            .map(|e| (e.time, e.kind, e.detail.as_str()))
            .collect();
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(rows[0].0, Ms::from_secs(675));
        assert_eq!(rows[0].1, "consolidation_abandoned");
        assert!(rows[0].2.contains("a pod came or went"), "{rows:?}");
        assert_eq!(rows[1].0, Ms::from_secs(740));
        assert_eq!(rows[1].1, "consolidation");
        assert!(rows[1]
            .2
            .contains("replacing m5.2xlarge by a cheaper m5.large"));
    }

    #[test]
    fn a_failed_replacement_uncordons_the_candidate() {
        // As above, but every free address of the subnet is taken before
        // the replacement launches: CreateFleet fails, Karpenter abandons
        // the command and the 2xlarge is schedulable again.
        let (mut sim, mut sink) = one_big_node_with_three_pods("10.0.0.0/24");
        let owner = crate::addr::ec2::EniOwner {
            kind: crate::addr::ec2::OwnerKind::Lambda,
            instance: None,
            device_index: 0,
        };
        while sim
            .ec2
            .create_eni(SubnetId(0), owner.clone(), 0, &mut sim.rng.ec2)
            .is_ok()
        {}
        sim.run_until(Ms::from_secs(700), &mut sink);
        let kinds: Vec<&str> = rows_since(&sink, Ms::from_secs(600))
            .map(|e| e.kind)
            .collect();
        assert!(kinds.contains(&"consolidation"), "{kinds:?}");
        assert!(sim.gauges[0].insufficient_free_addresses > 0);
        let node = sim.nodes.iter().flatten().next().expect("the 2xlarge");
        assert_eq!(node.itype, 1);
        assert!(!node.cordoned, "uncordoned after the failed replacement");
        assert_eq!(sim.gauges[0].nodes_cordoned, 0);
    }

    fn room(cpu: u64, mem: u64, pods: u32) -> Room {
        Room { cpu, mem, pods }
    }

    fn d(cpu: u64, mem: u64, count: u32) -> Demand {
        Demand { cpu, mem, count }
    }

    #[test]
    fn cheapest_type_that_takes_the_batch() {
        // m5.large-like and m5.xlarge-like, cheapest first.
        let types = [room(1930, 7000, 27), room(3920, 14000, 56)];
        // 3 pods of 500m: the large takes them all.
        let mut dem = [d(500, 256, 3)];
        assert_eq!(plan_nodes(&types, &mut dem, u32::MAX), vec![0]);
        // 6 pods of 500m: only the xlarge takes all six (7 × 500 ≤ 3920).
        let mut dem = [d(500, 256, 6)];
        assert_eq!(plan_nodes(&types, &mut dem, u32::MAX), vec![1]);
        // 20 pods of 500m: xlarges (7 each) while none takes the rest,
        // then the cheapest that takes what is left (6 = one xlarge).
        let mut dem = [d(500, 256, 20)];
        assert_eq!(plan_nodes(&types, &mut dem, u32::MAX), vec![1, 1, 1]);
        assert_eq!(dem[0].count, 0);
        // A pod no type takes stays.
        let mut dem = [d(8000, 256, 1)];
        assert!(plan_nodes(&types, &mut dem, u32::MAX).is_empty());
        assert_eq!(dem[0].count, 1);
        // The limit stops launches.
        let mut dem = [d(500, 256, 20)];
        assert_eq!(plan_nodes(&types, &mut dem, 1).len(), 1);
        assert_eq!(dem[0].count, 13);
    }

    #[test]
    fn max_pods_limits_like_cpu() {
        let types = [room(100_000, 100_000, 27)];
        let mut dem = [d(10, 10, 60)];
        assert_eq!(plan_nodes(&types, &mut dem, u32::MAX), vec![0, 0, 0]);
    }

    proptest::proptest! {
        /// `fits` is the least of the count, the pods left and what the
        /// CPU and memory left allow, whichever path it takes.
        #[test]
        fn fits_is_the_least_of_the_limits(
            cpu in 0u64..5000, mem in 0u64..5000, pods in 0u32..40,
            dcpu in 0u64..1200, dmem in 0u64..1200, count in 0u32..40,
        ) {
            let room = Room { cpu, mem, pods };
            let d = Demand { cpu: dcpu, mem: dmem, count };
            let by = |left: u64, per: u64| left.checked_div(per).unwrap_or(u64::MAX);
            let want = u64::from(count.min(pods)).min(by(cpu, dcpu)).min(by(mem, dmem));
            proptest::prop_assert_eq!(u64::from(room.fits(&d)), want);
        }
    }

    #[test]
    fn reschedulable_needs_room_for_every_pod() {
        let others = [room(1000, 1000, 2), room(500, 1000, 10)];
        assert!(reschedulable(&[d(500, 100, 3)], others.iter().copied()));
        assert!(!reschedulable(&[d(500, 100, 4)], others.iter().copied()));
        // Pods left: limited by the first node's 2 pods.
        assert!(!reschedulable(&[d(100, 100, 13)], others.iter().copied()));
        assert!(reschedulable(&[], std::iter::empty()));
    }

    fn v(subnet: u32, zone: u32, available: i64, blocks: i64, zone_nodes: u32) -> SubnetView {
        SubnetView {
            subnet,
            zone,
            available,
            blocks,
            zone_nodes,
        }
    }

    #[test]
    fn subnet_choice_is_blind_to_blocks_unless_asked() {
        // Zone 0: subnet 0 has more addresses, subnet 1 more /28 blocks.
        let views = [v(0, 0, 300, 0, 0), v(1, 0, 200, 9, 0)];
        assert_eq!(choose_subnet(&views, SubnetPolicy::AvailableIps), Some(0));
        assert_eq!(
            choose_subnet(&views, SubnetPolicy::DelegatableBlocks),
            Some(1)
        );
        // Ties keep the first listed.
        let views = [v(0, 0, 200, 1, 0), v(1, 0, 200, 1, 0)];
        assert_eq!(choose_subnet(&views, SubnetPolicy::AvailableIps), Some(0));
    }

    #[test]
    fn zones_spread_then_prefer_the_better_subnet() {
        // Zone 1 has fewer of the pool's nodes: it wins despite fewer
        // addresses.
        let views = [v(0, 0, 900, 50, 3), v(1, 1, 100, 5, 2)];
        assert_eq!(choose_subnet(&views, SubnetPolicy::AvailableIps), Some(1));
        let views = [v(0, 0, 900, 50, 2), v(1, 1, 100, 5, 2)];
        assert_eq!(choose_subnet(&views, SubnetPolicy::AvailableIps), Some(0));
        assert_eq!(choose_subnet(&[], SubnetPolicy::AvailableIps), None);
    }
}
