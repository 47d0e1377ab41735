//! The simulation: a validated scenario played on the engine's event queue
//! against the cluster, ipamd and EC2 models, observed into a [`RunResult`].
//!
//! `Simulation::new(scenario, seed)` builds the state; `run` processes
//! events until the scenario's duration. Adding a churn source means adding
//! an [`Event`] variant, its handler, and (if it draws random numbers) a
//! named stream in [`Streams`].

mod cluster_autoscaler;
mod karpenter;
mod nodes;
pub mod observe;
mod pods;
mod sgp;
mod snapshot;
mod spot;
mod workloads;

use std::collections::VecDeque;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::addr::ec2::{EniOwner, OwnerKind};
use crate::addr::{Ec2, Ec2Op, EniId, Subnet, SubnetId};
use crate::cluster::autoscaling::Autoscaler;
use crate::cluster::scheduler::{self, Capacity, KeyDivisors, ReadyIndex};
use crate::cluster::spec::{CapacityType, ClusterSpec};
use crate::engine::{stream, EventQueue};
use crate::ipamd::{policy, EniSubnets, IpamEvent, IpamSpec, NodeIpam, PodAddr};
use crate::scenario::Scenario;
use crate::time::Ms;
use observe::{EventRow, FailedCall, Holder, Observer, RowSink, RunResult};

/// Everything that can happen. Handlers are in `Simulation::handle`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A node group, Karpenter or the Cluster Autoscaler launches (or
    /// retries launching) a node.
    NodeLaunch {
        pool: u32,
        /// The node this launch replaces (`u32::MAX`: none).
        replaces: u32,
        /// Index into the pool's types.
        itype: u16,
        by: Launcher,
        /// When the launch was first asked for, in whole seconds
        /// (provision timeouts; seconds keep the event 16 bytes, so the
        /// queue's entries stay 32).
        asked_s: u32,
    },
    /// A spot instance's interruption notice (2 minutes before).
    SpotNotice {
        node: u32,
    },
    /// A rebalance recommendation for a spot instance.
    SpotRebalance {
        node: u32,
    },
    /// A correlated interruption of one spot group (pool, type, zone).
    SpotGroup {
        group: u32,
    },
    /// The spot instance is reclaimed.
    SpotDeadline {
        node: u32,
    },
    /// Pods of a vanished node are deleted (the unreachable toleration ran
    /// out) and recreated by their workloads.
    EvictLost {
        node: u32,
    },
    /// Karpenter's batch window may have closed.
    KarpenterBatch,
    /// Karpenter's disruption controller polls.
    KarpenterDisruption,
    /// The disruption command's validation delay has passed.
    KarpenterValidate,
    /// The Cluster Autoscaler's loop.
    ClusterAutoscalerScan,
    /// A workload's HorizontalPodAutoscaler syncs (every 15 s).
    HpaSync {
        workload: u32,
    },
    /// A job of a job template arrives.
    JobArrival {
        workload: u32,
    },
    /// A job's pod completes.
    PodDone {
        pod: u32,
        gen: u32,
        /// The node it runs on (read only by [`prefetch_soon`]).
        node: u32,
    },
    /// A rolling update of a workload begins.
    RolloutStart {
        workload: u32,
    },
    /// A rolling update takes its next step.
    RolloutStep {
        workload: u32,
    },
    /// A node launched by an autoscaler has not registered in time.
    LaunchTimeout {
        node: u32,
    },
    /// The node's kubelet registered; aws-node (ipamd) starts.
    NodeRegistered {
        node: u32,
    },
    /// An ipamd pool decision (ignored unless it is the one ipamd asked for).
    IpamdTick {
        node: u32,
    },
    /// ipamd's init completed: the node becomes Ready (with or without
    /// addresses in its pool).
    NodeReady {
        node: u32,
    },
    /// aws-node restarts after a failed init (kubelet's back-off) and runs
    /// ipamd's init again.
    AwsNodeRestart {
        node: u32,
    },
    /// The oldest nodes of a pool reach its `max_lifetime` (or Karpenter's
    /// `expire_after`): each is replaced (rotation) or deleted. One such
    /// event is queued per pool at a time, for its oldest live node (see
    /// `Simulation::expiring`), not one per node launched.
    NodeExpire {
        pool: u32,
    },
    /// kubelet creates a pod's sandbox (asks ipamd for an address).
    PodSandbox {
        pod: u32,
        gen: u32,
    },
    WorkloadStart {
        workload: u32,
    },
    /// One replica of a workload is replaced (continuous rolling restart).
    WorkloadReplace {
        workload: u32,
    },
    /// A consumer ENI is replaced at a new address.
    ConsumerChurn {
        subnet: u32,
        group: u32,
    },
    /// A row of the time series.
    Sample,
}

/// Who launched a node (`node_launched` events).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Launcher {
    /// The pool's Auto Scaling group (initial size, replacement of a lost
    /// instance, max lifetime rotation).
    NodeGroup,
    Karpenter,
    ClusterAutoscaler,
}

impl Launcher {
    pub fn name(self) -> &'static str {
        match self {
            Launcher::NodeGroup => "node group",
            Launcher::Karpenter => "karpenter",
            Launcher::ClusterAutoscaler => "cluster_autoscaler",
        }
    }
}

const _: () = assert!(
    std::mem::size_of::<Event>() <= 16,
    "queue entries stay 32 bytes"
);

/// The named random streams (see [`crate::engine`]).
pub struct Streams {
    /// EC2's placement of addresses and prefixes.
    pub ec2: ChaCha8Rng,
    /// ipamd's random choices (pod address, releases, ENI order).
    pub ipamd: ChaCha8Rng,
    /// Node boot times.
    pub node_boot: ChaCha8Rng,
    /// Consumer ENI churn times.
    pub consumers: ChaCha8Rng,
    /// Spot interruption times and which nodes a correlated event hits.
    pub spot: ChaCha8Rng,
    /// When each correlated spot group's events come: apart from `spot`,
    /// whose draws follow the nodes launched, so the events' times are the
    /// same in every variant (common random numbers).
    pub spot_groups: ChaCha8Rng,
    /// The Cluster Autoscaler's random expander and tie-breaks.
    pub cluster_autoscaler: ChaCha8Rng,
}

impl Streams {
    pub fn new(seed: u64) -> Self {
        Streams {
            ec2: stream(seed, "ec2"),
            ipamd: stream(seed, "ipamd"),
            node_boot: stream(seed, "node_boot"),
            consumers: stream(seed, "consumers"),
            spot: stream(seed, "spot"),
            spot_groups: stream(seed, "spot_groups"),
            cluster_autoscaler: stream(seed, "cluster_autoscaler"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NodeState {
    Booting,
    NotReady,
    Ready,
}

/// A node. Fields are in the order a pod event reads them (`repr(C)`, on
/// cache-line boundaries): the scheduler's view in the first line, the pod
/// list and flags in the second, ipamd's datastore next, the rest last; a
/// bind, sandbox or delete touches three or four lines of it, not six.
#[repr(C, align(64))]
struct Node {
    cap: Capacity,
    /// `cap.key()`, kept with `cap` (the scheduler's index key; two
    /// divisions saved on every bind and delete).
    key: u64,
    /// When a pod last bound to or left this node (Karpenter's
    /// `consolidateAfter` counts from here).
    last_pod_event: Ms,
    /// Pods bound to this node, with their workloads (each pod knows its
    /// place here: `Pod::slot`).
    pods: Vec<(u32, u32)>,
    /// `cap.key_by` reciprocals (`cap`'s allocatable never changes).
    divisors: KeyDivisors,
    pool: u32,
    subnet: u32,
    /// Index into the pool's types.
    itype: u16,
    state: NodeState,
    /// Cordoned (tainted): out of the scheduler's index, being disrupted.
    cordoned: bool,
    /// Karpenter: `consolidate_after` has passed since `last_pod_event`
    /// (set when the pass sees it; see `KarpenterState::ripe`).
    ripe: bool,
    /// Karpenter: filed in its pool's `KarpenterState::due` (once at most).
    due_filed: bool,
    /// The instance is gone but the Node object and its pods remain until
    /// the unreachable toleration runs out.
    lost: bool,
    /// A spot notice was received.
    noticed: bool,
    /// Counted in `nodes_ready_empty_pool`.
    empty_counted: bool,
    ipam: Option<NodeIpam>,
    primary: EniId,
    /// Failed ipamd inits so far (aws-node restarts).
    init_failures: u32,
    /// When the node was launched.
    launched_at: Ms,
    /// The node this one replaces (drained once this one is Ready), or
    /// `NONE`.
    replaces: u32,
    /// The spot group it belongs to and its place in the group's list, or
    /// `NONE`.
    spot_group: u32,
    group_pos: u32,
    /// Karpenter: its reschedulable pods when it became consolidatable
    /// (its place among the candidates, `karpenter::CandKey`).
    ripe_pods: u32,
    /// Cluster Autoscaler: since when the node is under the utilization
    /// threshold.
    under_since: Option<Ms>,
    /// The trunk ENI (security groups for pods), once attached.
    trunk: Option<EniId>,
}

impl Node {
    /// Karpenter's view of the node needs nothing after a pod event: it
    /// was not consolidatable, and it is already filed for when it will
    /// be (nearly every bind and delete).
    #[inline]
    fn karpenter_filed(&self) -> bool {
        !self.ripe && self.due_filed
    }

    /// A node launched at `now`: booting, without ipamd, pods or flags.
    fn launched(
        pool: u32,
        itype: u16,
        subnet: u32,
        primary: EniId,
        cap: Capacity,
        now: Ms,
    ) -> Self {
        Node {
            pool,
            itype,
            subnet,
            state: NodeState::Booting,
            primary,
            ipam: None,
            key: cap.key(),
            divisors: KeyDivisors::of(&cap),
            cap,
            empty_counted: false,
            init_failures: 0,
            launched_at: now,
            pods: Vec::new(),
            replaces: NONE,
            cordoned: false,
            noticed: false,
            lost: false,
            spot_group: NONE,
            group_pos: 0,
            last_pod_event: now,
            ripe: false,
            ripe_pods: 0,
            due_filed: false,
            under_since: None,
            trunk: None,
        }
    }

    /// In the scheduler's index of Ready nodes.
    fn schedulable(&self) -> bool {
        self.state == NodeState::Ready && !self.cordoned
    }
}

const NONE: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PodState {
    Pending,
    /// Bound; the first sandbox attempt has not run yet.
    Creating,
    /// Bound; a sandbox failed for want of an address (ContainerCreating).
    WaitingIp,
    Running,
    /// On a node whose instance vanished, until deleted.
    Lost,
    Free,
}

/// A pod: 40 bytes (the optional address and branch ENI as `NONE`
/// sentinels, sandbox retries in a byte), so most pods sit in one cache
/// line and the array is 30% smaller than with `Option`s.
#[derive(Clone, Copy, Debug)]
struct Pod {
    workload: u32,
    node: u32,
    /// Its place in its node's `pods` while bound.
    slot: u32,
    gen: u32,
    /// When it became Running.
    running_since: Ms,
    /// Its address (`addr()`): subnet `NONE` when it has none.
    addr_subnet: u32,
    addr_offset: u32,
    /// Its branch ENI (security groups for pods; `branch()`), or `NONE`.
    branch_eni: u32,
    state: PodState,
    /// Of the pod template a rollout is replacing.
    old: bool,
    /// Failed sandboxes so far (kubelet's back-off doubles up to 20 of
    /// them; saturates).
    retries: u8,
}

const _: () = assert!(std::mem::size_of::<Pod>() == 40);

impl Pod {
    fn addr(&self) -> Option<PodAddr> {
        (self.addr_subnet != NONE).then_some(PodAddr {
            subnet: SubnetId(self.addr_subnet),
            offset: self.addr_offset,
        })
    }

    fn set_addr(&mut self, a: Option<PodAddr>) {
        (self.addr_subnet, self.addr_offset) = a.map_or((NONE, 0), |a| (a.subnet.0, a.offset));
    }

    fn branch(&self) -> Option<EniId> {
        (self.branch_eni != NONE).then_some(EniId(self.branch_eni))
    }

    fn set_branch(&mut self, b: Option<EniId>) {
        self.branch_eni = b.map_or(NONE, |e| {
            debug_assert_ne!(e.0, NONE);
            e.0
        });
    }
}

/// Per-subnet gauges kept current by the handlers.
#[derive(Clone, Copy, Debug, Default)]
pub struct SubnetGauges {
    pub nodes: u32,
    pub nodes_ready: u32,
    pub nodes_ready_empty_pool: u32,
    pub pods_running: u32,
    pub pods_waiting_ip: u32,
    pub insufficient_cidr_blocks: u64,
    pub insufficient_free_addresses: u64,
    pub invalid_parameter_value: u64,
    /// Nodes cordoned for a disruption (spot notice, consolidation
    /// replacement) and not yet gone.
    pub nodes_cordoned: u32,
    /// Cumulative: nodes launched and terminated in this subnet.
    pub nodes_launched: u64,
    pub nodes_terminated: u64,
    /// Cumulative: spot notices and reclaimed spot instances.
    pub spot_notices: u64,
    pub spot_interruptions: u64,
    /// Cumulative: nodes removed by Karpenter's consolidation and by the
    /// Cluster Autoscaler's scale-down.
    pub consolidations: u64,
    pub scale_downs: u64,
}

/// The simulation state.
pub struct Simulation {
    pub name: String,
    pub seed: u64,
    pub duration: Ms,
    pub sample_every: Ms,
    spec: ClusterSpec,
    pub ec2: Ec2,
    queue: EventQueue<Event>,
    rng: Streams,
    nodes: Vec<Option<Box<Node>>>,
    /// Live nodes per pool and subnet (zone balance on launch).
    pool_subnet_nodes: Vec<Vec<u32>>,
    pods: Vec<Pod>,
    free_pods: Vec<u32>,
    /// Pending pods per workload, in creation order.
    pending: Vec<VecDeque<u32>>,
    pods_pending: u32,
    /// A scheduler pass is due at the end of this event (`settle`).
    schedule_queued: bool,
    /// Pods bound in this event whose first sandbox has not run, in bind
    /// order (`settle`).
    creating: Vec<(u32, u32)>,
    /// Ready nodes by allocation: all, and per pool.
    /// (`ready_all` is kept only when there are several pools.)
    ready_all: ReadyIndex,
    ready_pool: Vec<ReadyIndex>,
    /// Each workload's pods, oldest first, as (id, generation): ids are
    /// reused, so an entry whose generation no longer matches is stale.
    /// Kept only for the workloads that pick pods by age (`tracked`: an
    /// HPA's scale-down, a rollout, `restart_every`); a job template's
    /// pods are never picked, and their list cost a cache miss or two a
    /// pod.
    workload_pods: Vec<VecDeque<(u32, u32)>>,
    tracked: Vec<bool>,
    /// Consumer ENIs per subnet and group.
    consumer_enis: Vec<Vec<VecDeque<EniId>>>,
    pub gauges: Vec<SubnetGauges>,
    /// Per pool: expired nodes waiting for their replacement, and whether
    /// a replacement is under way.
    rotation: Vec<VecDeque<u32>>,
    rotating: Vec<bool>,
    /// Per pool with a node lifetime: its nodes in launch order, so in
    /// order of expiry (a pool's lifetime is one), and the time of the
    /// `NodeExpire` queued for the first, if any. Nodes gone before their
    /// expiry are dropped when they reach the front, or all at once when
    /// the list has doubled since the last look: the list, and the queue, stay the
    /// size of the fleet however many nodes a run launches (one event per
    /// launch, due a lifetime later, made the queue grow by every node
    /// launched: bench-large's month averaged 70,000 queued events).
    expiring: Vec<VecDeque<u32>>,
    expiry_armed: Vec<Option<Ms>>,
    /// Per pool: the length of `expiring` at which gone nodes are dropped.
    expiry_compact_at: Vec<usize>,
    /// Queue length at which `drop_stale_events` next runs.
    sweep_at: usize,
    observer: Observer,
    ipam_events: Vec<IpamEvent>,
    /// Per node subnet: where its nodes' ipamd may create ENIs, and whether
    /// the primary ENI is excluded from pod addresses (from zones and tags).
    eni_subnets: Vec<(EniSubnets, bool)>,
    /// Per subnet: its zone's index.
    zone_of: Vec<u32>,
    /// Per pool: launches asked for and not yet made, the Auto Scaling group's
    /// desired capacity, and cordoned nodes.
    pool_launching: Vec<u32>,
    desired: Vec<u32>,
    pool_cordoned: Vec<u32>,
    /// Per pool: nodes launched and not yet Ready (in flight).
    booting: Vec<Vec<u32>>,
    /// Per workload: Pending pods, and whether the scheduler found no node
    /// for them (`PodScheduled=False`, reason Unschedulable: what the
    /// autoscalers act on).
    pending_count: Vec<u32>,
    unschedulable: Vec<bool>,
    /// A bit per workload: its Pending queue may hold pods (set when one
    /// is queued, cleared by the scheduler's pass when it finds the queue
    /// empty). The pass visits only these.
    queued_wl: crate::bitmap::Bitmap,
    /// Nodes that gained room (a pod left, the node became schedulable),
    /// in order; and per workload, the log's length when its pods last
    /// fitted nowhere: only nodes logged since can take one, so a pass does
    /// not scan every node for a pod that fits none (exact: a node's room
    /// only shrinks between its entries).
    gained: Vec<u32>,
    unfit: Vec<Option<usize>>,
    cands: Vec<Vec<u32>>,
    /// Scratch for the above: a reused list, and a stamp per node so each
    /// is looked at once per pass without sorting.
    cands_buf: Vec<u32>,
    /// Scratch: a scale-down's victims.
    victims: Vec<u32>,
    mark: Vec<u32>,
    mark_epoch: u32,
    spot: spot::SpotState,
    karpenter: karpenter::KarpenterState,
    ca: cluster_autoscaler::CaState,
    /// Per workload: replicas asked for, pods running and waiting, the
    /// HPA's memory, load bursts.
    wl: Vec<workloads::WorkloadState>,
    /// Per subnet: the snapshot's ENIs not adopted with a node, by kind.
    snapshot_enis: Vec<Vec<(OwnerKind, EniId)>>,
    /// ENIs taken over from snapshots and not adopted with a node, by
    /// serial: what the snapshot said of them.
    foreign: std::collections::BTreeMap<u64, observe::Foreign>,
}

/// Where ipamd on a node in subnet `si` may create ENIs
/// (`createENI`, `isSubnetValidForENICreation`), and whether its primary ENI
/// is excluded from pod addresses (`excludedENIBasedOnSubnetTags`). Custom
/// networking is handled per pool (the ENIConfig subnet).
fn eni_subnets_for(spec: &ClusterSpec, si: usize) -> (EniSubnets, bool) {
    let cni = &spec.cni;
    let own = &spec.subnets[si];
    let cluster = cni.cluster_name.as_deref();
    if !cni.subnet_discovery {
        return if policy::subnet_excluded(own.tag_pairs()) {
            (EniSubnets::NoneValid, false)
        } else {
            (EniSubnets::Fixed(SubnetId(si as u32)), false)
        };
    }
    let list: Vec<SubnetId> = spec
        .subnets
        .iter()
        .enumerate()
        .filter(|(j, s)| {
            s.zone == own.zone && policy::subnet_valid_for_eni(s.tag_pairs(), *j == si, cluster)
        })
        .map(|(j, _)| SubnetId(j as u32))
        .collect();
    let excluded = policy::subnet_excluded(own.tag_pairs());
    if list.is_empty() {
        (EniSubnets::NoneValid, excluded)
    } else {
        (EniSubnets::Discover(list), excluded)
    }
}

impl Simulation {
    /// Builds the initial state (subnets, consumers) and the first events.
    pub fn new(scenario: &Scenario, seed: u64) -> Self {
        let spec = scenario.cluster.clone();
        let mut ec2 = Ec2::new(spec.ec2);
        for s in &spec.subnets {
            ec2.add_subnet(Subnet::new(s.cidr, s.reservations.clone()).expect("validated subnet"));
        }
        let n_sub = spec.subnets.len();
        let mut sim = Simulation {
            name: scenario.name.clone(),
            seed,
            duration: scenario.duration,
            sample_every: scenario.sample_every,
            observer: Observer::new(&spec),
            ec2,
            queue: EventQueue::new(),
            rng: Streams::new(seed),
            nodes: Vec::new(),
            pool_subnet_nodes: vec![vec![0; n_sub]; spec.pools.len()],
            pods: Vec::new(),
            free_pods: Vec::new(),
            pending: vec![VecDeque::new(); spec.workloads.len()],
            pods_pending: 0,
            schedule_queued: false,
            creating: Vec::new(),
            ready_all: ReadyIndex::default(),
            ready_pool: vec![ReadyIndex::default(); spec.pools.len()],
            workload_pods: vec![VecDeque::new(); spec.workloads.len()],
            tracked: spec
                .workloads
                .iter()
                .map(|w| w.hpa.is_some() || w.rollout.is_some() || w.restart_every.is_some())
                .collect(),
            consumer_enis: vec![Vec::new(); n_sub],
            gauges: vec![SubnetGauges::default(); n_sub],
            rotation: vec![VecDeque::new(); spec.pools.len()],
            rotating: vec![false; spec.pools.len()],
            expiring: vec![VecDeque::new(); spec.pools.len()],
            expiry_armed: vec![None; spec.pools.len()],
            expiry_compact_at: vec![64; spec.pools.len()],
            sweep_at: SWEEP_MIN,
            ipam_events: Vec::new(),
            eni_subnets: (0..n_sub).map(|i| eni_subnets_for(&spec, i)).collect(),
            zone_of: zone_indices(&spec),
            pool_launching: vec![0; spec.pools.len()],
            desired: spec.pools.iter().map(|p| p.size).collect(),
            pool_cordoned: vec![0; spec.pools.len()],
            booting: vec![Vec::new(); spec.pools.len()],
            pending_count: vec![0; spec.workloads.len()],
            unschedulable: vec![false; spec.workloads.len()],
            queued_wl: crate::bitmap::Bitmap::with_capacity(spec.workloads.len()),
            gained: Vec::new(),
            unfit: vec![None; spec.workloads.len()],
            cands: vec![Vec::new(); spec.workloads.len()],
            cands_buf: Vec::new(),
            victims: Vec::new(),
            mark: Vec::new(),
            mark_epoch: 0,
            spot: spot::SpotState::new(&spec, &zone_indices(&spec)),
            karpenter: karpenter::KarpenterState::new(&spec),
            ca: cluster_autoscaler::CaState::new(&spec),
            foreign: std::collections::BTreeMap::new(),
            snapshot_enis: vec![Vec::new(); n_sub],
            wl: workloads::WorkloadState::new(&spec, seed),
            spec,
        };
        sim.observer.set_run(
            &scenario.name,
            seed,
            scenario.duration,
            scenario.sample_every,
            scenario.warmup,
        );
        sim.take_over_snapshots();
        sim.init();
        // Adopted pods' sandboxes and the first pass, before any event.
        sim.settle();
        sim
    }

    fn init(&mut self) {
        // Consumers take their addresses before any node launches.
        for si in 0..self.spec.subnets.len() {
            for gi in 0..self.spec.subnets[si].consumers.len() {
                self.consumer_enis[si].push(VecDeque::new());
                let c = self.spec.subnets[si].consumers[gi].clone();
                if c.existing {
                    // The snapshot's ENIs of this kind churn from now on.
                    let list: Vec<EniId> = self.snapshot_enis[si]
                        .iter()
                        .filter(|(k, _)| *k == c.kind)
                        .map(|&(_, e)| e)
                        .collect();
                    let mean = c.churn_every.expect("from.churn has a period");
                    for e in list {
                        self.consumer_enis[si][gi].push_back(e);
                        let at = exp_delay(&mut self.rng.consumers, mean);
                        self.queue.schedule(
                            at,
                            Event::ConsumerChurn {
                                subnet: si as u32,
                                group: gi as u32,
                            },
                        );
                    }
                    continue;
                }
                for _ in 0..c.count {
                    self.create_consumer(si as u32, gi as u32);
                    if let Some(mean) = c.churn_every {
                        let at = exp_delay(&mut self.rng.consumers, mean);
                        self.queue.schedule(
                            at,
                            Event::ConsumerChurn {
                                subnet: si as u32,
                                group: gi as u32,
                            },
                        );
                    }
                }
            }
        }
        for pi in 0..self.spec.pools.len() {
            let p = &self.spec.pools[pi];
            if p.autoscaler == Autoscaler::Karpenter {
                // Nodes that exist at the start: the cheapest type.
                for _ in 0..p.size {
                    self.ask_launch(pi as u32, NONE, 0, Launcher::Karpenter, Ms::ZERO);
                }
            } else {
                self.asg_fill(pi as u32);
            }
        }
        self.spot_init();
        self.karpenter_init();
        self.cluster_autoscaler_init();
        for (wi, w) in self.spec.workloads.iter().enumerate() {
            self.queue.schedule(
                w.start,
                Event::WorkloadStart {
                    workload: wi as u32,
                },
            );
        }
        self.queue.schedule(Ms::ZERO, Event::Sample);
    }

    fn log(&mut self, kind: &'static str, subnet: Option<u32>, node: Option<u32>, detail: String) {
        self.observer
            .event(EventRow::one(self.queue.now(), kind, subnet, node, detail));
    }

    fn create_consumer(&mut self, si: u32, gi: u32) {
        let kind = self.spec.subnets[si as usize].consumers[gi as usize].kind;
        let owner = EniOwner {
            kind,
            instance: None,
            device_index: 1,
        };
        match self
            .ec2
            .create_eni(SubnetId(si), owner, 0, &mut self.rng.ec2)
        {
            Ok(e) => {
                self.consumer_enis[si as usize][gi as usize].push_back(e);
                self.observer
                    .end_runs(None, Some(si), Some(Ec2Op::CreateEni));
                let info = self.ec2.eni(e);
                let detail = format!(
                    "{} {} at {}",
                    kind.name(),
                    eni_name(info.serial),
                    self.ec2.addr(SubnetId(si), info.primary)
                );
                self.log("consumer_created", Some(si), None, detail);
            }
            Err(error) => self.fail(FailedCall {
                node: None,
                op: Ec2Op::CreateEni,
                subnet: si,
                error,
                requested: 1,
                paused: false,
                unit: "address",
            }),
        }
    }

    /// One failed EC2 call: counted per subnet and kind, and logged.
    fn fail(&mut self, f: FailedCall) {
        use crate::addr::Ec2Error::*;
        let g = &mut self.gauges[f.subnet as usize];
        match f.error {
            InsufficientCidrBlocks => g.insufficient_cidr_blocks += 1,
            InsufficientFreeAddressesInSubnet => g.insufficient_free_addresses += 1,
            InvalidParameterValue => g.invalid_parameter_value += 1,
        }
        let now = self.queue.now();
        self.observer.failure(now, f);
    }

    /// Adds a node; its pod-event clock starts now.
    fn add_node(&mut self, node: Node) -> u32 {
        let id = self.nodes.len() as u32;
        self.nodes.push(Some(Box::new(node)));
        self.karpenter_touch(id, 0);
        id
    }

    /// How long a pool's nodes live: `max_lifetime`, else Karpenter's
    /// `expire_after`.
    fn node_lifetime(&self, pi: usize) -> Option<Ms> {
        let p = &self.spec.pools[pi];
        p.max_lifetime
            .or(p.karpenter.as_ref().and_then(|k| k.expire_after))
    }

    /// A pool's live instances (launched, not yet terminated or vanished).
    fn pool_live(&self, pi: usize) -> u32 {
        self.pool_subnet_nodes[pi].iter().sum()
    }

    /// Runs to the scenario's duration, dropping the rows (benchmarks).
    pub fn run(self, progress: &mut dyn FnMut(Ms)) -> RunResult {
        self.run_into(&mut observe::NullSink, progress)
    }

    /// Runs to the scenario's duration, streaming every `timeseries.csv`
    /// and `events.csv` row into `sink` as it is made. `progress` is called
    /// now and then with the simulated time reached.
    pub fn run_into(mut self, sink: &mut dyn RowSink, progress: &mut dyn FnMut(Ms)) -> RunResult {
        let end = self.duration;
        let mut n = 0u64;
        let mut peak_queue = 0usize;
        loop {
            let (pods, nodes) = (&self.pods, &self.nodes);
            let Some((at, ev)) = self
                .queue
                .pop_until_hinted(end, &mut |e| prefetch_soon(pods, nodes, e))
            else {
                break;
            };
            peak_queue = peak_queue.max(self.queue.len());
            if let Some(&next) = self.queue.peek() {
                self.prefetch_next(next);
            }
            self.handle(at, ev);
            if self.queue.len() > self.sweep_at {
                self.drop_stale_events();
            }
            let (ec2, nodes) = (&self.ec2, &self.nodes);
            self.observer
                .after_event(at, ec2, &self.gauges, &mut |si, out| {
                    fill_holders(ec2, nodes, si, out)
                });
            self.observer.drain(sink);
            n += 1;
            if n.is_multiple_of(4096) {
                progress(at);
            }
        }
        progress(end);
        let processed = self.queue.processed();
        self.observer.set_peak_queue(peak_queue as u64);
        // The end row is taken after every event at the end time, so it
        // agrees with final-state.json.
        let pending = self.pods_pending;
        self.observer
            .sample(end, &self.ec2, &self.gauges, pending, true);
        self.workload_rows(end);
        let final_enis = observe::describe_enis(&self.ec2, &self.spec, &self.name, &self.foreign);
        self.observer
            .set_node_churn(observe::NodeChurn::of(&self.gauges));
        // Nodes never Ready count to the end; consumption per live node.
        let (mut live, mut addrs, mut prefixes) = (0u64, 0u64, 0u64);
        for n in self.nodes.iter().flatten() {
            if n.state != NodeState::Ready {
                self.observer.node_ready(n.launched_at, end);
            }
            live += 1;
            match &n.ipam {
                Some(ipam) => {
                    addrs += u64::from(ipam.subnet_addresses());
                    if ipam.spec().pd {
                        prefixes += u64::from(ipam.stats().cidrs);
                    }
                }
                None => addrs += 1,
            }
        }
        if live > 0 {
            let per = |x: u64| (x as f64 / live as f64 * 100.0).round() / 100.0;
            self.observer.set_per_node(per(addrs), per(prefixes));
        }
        let (ec2, nodes) = (&self.ec2, &self.nodes);
        self.observer
            .finish(ec2, processed, final_enis, sink, &mut |si, out| {
                fill_holders(ec2, nodes, si, out)
            })
    }

    /// Drops the queued events of nodes that are gone. Node ids are never
    /// reused and every handler of a node's event returns at once when the
    /// node is gone, so these would do nothing when they ran; but they can
    /// be far ahead (a spot notice drawn at launch, for a node Karpenter
    /// consolidated away within the hour), and without the sweep the queue
    /// would grow with every node a run launches. Run when the queue has
    /// doubled since the last sweep: O(1) an event, amortized. The order
    /// of the events kept is unchanged.
    fn drop_stale_events(&mut self) {
        let nodes = &self.nodes;
        self.queue
            .retain(|e| node_of(e).is_none_or(|n| nodes[n as usize].is_some()));
        self.sweep_at = 2 * self.queue.len() + SWEEP_MIN;
    }

    /// Processes events up to `until` (tests that act on the state midway).
    #[cfg(test)]
    fn run_until(&mut self, until: Ms, sink: &mut dyn RowSink) {
        while let Some((at, ev)) = self.queue.pop_until(until) {
            self.handle(at, ev);
            self.observer.drain(sink);
        }
    }

    fn handle(&mut self, at: Ms, ev: Event) {
        match ev {
            Event::NodeLaunch {
                pool,
                replaces,
                itype,
                by,
                asked_s,
            } => self.node_launch(pool, replaces, itype, by, Ms::from_secs(u64::from(asked_s))),
            Event::NodeRegistered { node } => self.node_registered(node),
            Event::LaunchTimeout { node } => self.launch_timeout(node),
            Event::IpamdTick { node } => self.ipamd_tick(at, node),
            Event::NodeReady { node } => self.node_ready(node),
            Event::AwsNodeRestart { node } => self.aws_node_restart(node),
            Event::NodeExpire { pool } => self.expiry_due(pool),
            Event::SpotNotice { node } => self.spot_notice(node),
            Event::SpotRebalance { node } => self.spot_rebalance(node),
            Event::SpotGroup { group } => self.spot_group_event(group),
            Event::SpotDeadline { node } => self.spot_deadline(node),
            Event::EvictLost { node } => self.evict_lost(node),
            Event::KarpenterBatch => self.karpenter_batch(),
            Event::KarpenterDisruption => self.karpenter_disruption(),
            Event::KarpenterValidate => self.karpenter_validate(),
            Event::ClusterAutoscalerScan => self.cluster_autoscaler_scan(),
            Event::HpaSync { workload } => self.hpa_sync(workload),
            Event::JobArrival { workload } => self.job_arrival(workload),
            Event::PodDone { pod, gen, .. } => self.pod_done(pod, gen),
            Event::RolloutStart { workload } => self.rollout_start(workload),
            Event::RolloutStep { workload } => self.rollout_step(workload),
            Event::PodSandbox { pod, gen } => self.pod_sandbox(pod, gen),
            Event::WorkloadStart { workload } => self.workload_start(workload),
            Event::WorkloadReplace { workload } => self.workload_replace(workload),
            Event::ConsumerChurn { subnet, group } => self.consumer_churn(subnet, group),
            Event::Sample => {
                self.sample(at);
                let next = at + self.sample_every;
                if next < self.duration {
                    self.queue.schedule(next, Event::Sample);
                }
            }
        }
        self.settle();
    }

    fn sample(&mut self, at: Ms) {
        let pending = self.pods_pending;
        self.observer
            .sample(at, &self.ec2, &self.gauges, pending, false);
        self.workload_rows(at);
    }

    // ---- workloads ----

    fn workload_start(&mut self, w: u32) {
        let spec = &self.spec.workloads[w as usize];
        if spec.preplaced {
            return; // its pods were bound to adopted nodes at the start
        }
        let (replicas, every) = (spec.replicas, spec.restart_every);
        for _ in 0..replicas {
            self.new_pod(w);
        }
        self.hpa_start(w);
        self.job_start(w);
        self.rollout_init(w);
        if let (Some(every), true) = (every, replicas > 0) {
            let step = Ms((every.0 / replicas as u64).max(1));
            self.queue.schedule(
                self.queue.now() + step,
                Event::WorkloadReplace { workload: w },
            );
        }
        self.queue_schedule();
    }

    fn workload_replace(&mut self, w: u32) {
        while let Some((old, gen)) = self.workload_pods[w as usize].pop_front() {
            let p = self.pods[old as usize];
            if p.gen == gen && p.state != PodState::Free {
                self.delete_pod(old);
                self.new_pod(w);
                break;
            }
        }
        let spec = &self.spec.workloads[w as usize];
        let replicas = u64::from(self.wl[w as usize].replicas.max(1));
        let step = Ms((spec.restart_every.expect("replace scheduled").0 / replicas).max(1));
        self.queue.schedule(
            self.queue.now() + step,
            Event::WorkloadReplace { workload: w },
        );
        self.queue_schedule();
    }

    // ---- consumers ----

    fn consumer_churn(&mut self, si: u32, gi: u32) {
        let list = &mut self.consumer_enis[si as usize][gi as usize];
        if let Some(old) = list.pop_front() {
            let info = self.ec2.eni(old);
            let detail = format!(
                "{} {} at {}",
                info.owner.kind.name(),
                eni_name(info.serial),
                self.ec2.addr(SubnetId(si), info.primary)
            );
            self.ec2.delete_eni(old).expect("consumer ENI is live");
            self.log("consumer_deleted", Some(si), None, detail);
        }
        self.create_consumer(si, gi);
        let mean = self.spec.subnets[si as usize].consumers[gi as usize]
            .churn_every
            .expect("churn scheduled");
        let at = self.queue.now() + exp_delay(&mut self.rng.consumers, mean);
        self.queue.schedule(
            at,
            Event::ConsumerChurn {
                subnet: si,
                group: gi,
            },
        );
    }
}

/// Each subnet's zone as an index (zones numbered in order of first
/// appearance).
fn zone_indices(spec: &ClusterSpec) -> Vec<u32> {
    let mut names: Vec<&str> = Vec::new();
    spec.subnets
        .iter()
        .map(|s| match names.iter().position(|&n| n == s.zone) {
            Some(k) => k as u32,
            None => {
                names.push(&s.zone);
                names.len() as u32 - 1
            }
        })
        .collect()
}

/// What holds each address of subnet `si`: ENI primaries by owner kind,
/// secondary addresses, prefixes (in use when a pod holds an address in
/// them), AWS-reserved addresses. O(ENIs + the subnet's blocks), never a
/// visit of every address or of every node the run has had; run only when
/// a new worst moment is reached and at the end.
fn fill_holders(ec2: &Ec2, nodes: &[Option<Box<Node>>], si: usize, out: &mut Vec<Holder>) {
    let sid = SubnetId(si as u32);
    let s = ec2.subnet(sid);
    out.clear();
    out.resize(s.size() as usize, Holder::Free);
    for off in s.aws_reserved() {
        out[off as usize] = Holder::AwsReserved;
    }
    // Nodes with prefixes here: whose prefixes may be in use.
    let mut owners: Vec<u32> = Vec::new();
    for (_, e) in ec2.enis().filter(|(_, e)| e.subnet == sid) {
        if let (Some(n), false) = (e.owner.instance, e.prefixes.is_empty()) {
            owners.push(n);
        }
        let kind = e.owner.kind;
        out[e.primary as usize] = Holder::of_primary(kind);
        let node_eni = matches!(kind, OwnerKind::Ec2Primary | OwnerKind::EksPod);
        for &off in &e.secondary {
            out[off as usize] = if node_eni {
                Holder::SecondaryIp
            } else {
                Holder::of_primary(kind)
            };
        }
        for &b in &e.prefixes {
            let base = (b * 16) as usize;
            out[base..base + 16].fill(Holder::PrefixUnused);
        }
    }
    owners.sort_unstable();
    owners.dedup();
    let ipams = owners.iter().filter_map(|&n| {
        nodes
            .get(n as usize)
            .and_then(|x| x.as_ref())
            .and_then(|x| x.ipam.as_ref())
    });
    for ipam in ipams {
        for (sub, b) in ipam.prefixes_in_use() {
            if sub == sid {
                let base = (b * 16) as usize;
                out[base..base + 16].fill(Holder::PrefixInUse);
            }
        }
    }
}

/// `i-` plus 17 hex digits, like an EC2 instance id.
pub fn node_name(id: u32) -> String {
    let mut s = String::new();
    write_node_name(&mut s, id);
    s
}

/// [`node_name`] appended to `out`.
pub fn write_node_name(out: &mut String, id: u32) {
    out.push_str("i-");
    // 17 hex digits of a 32-bit id: nine zeros, then its eight digits.
    out.push_str("000000000");
    for k in (0..8).rev() {
        let d = (id >> (4 * k)) & 15;
        out.push(char::from(b"0123456789abcdef"[d as usize]));
    }
}

/// `eni-` plus 17 hex digits.
pub fn eni_name(serial: u64) -> String {
    let mut s = String::with_capacity(21);
    write_eni_name(&mut s, serial);
    s
}

/// [`eni_name`] appended to `out`, without `core::fmt` (its padded hex
/// path costs about a thousand instructions; a row per prefix assigned).
pub fn write_eni_name(out: &mut String, serial: u64) {
    // 17 hex digits of a 64-bit serial: a zero, then its sixteen digits.
    out.push_str("eni-0");
    for k in (0..16).rev() {
        let d = (serial >> (4 * k)) & 15;
        out.push(char::from(b"0123456789abcdef"[d as usize]));
    }
}

/// Half the boots uniform in [min, median], half in [median, max]: the
/// median and range of docs/sources.md §5.
fn boot_time(r: &mut ChaCha8Rng, min: Ms, median: Ms, max: Ms) -> Ms {
    if r.gen_bool(0.5) {
        Ms(r.gen_range(min.0..=median.0))
    } else {
        Ms(r.gen_range(median.0..=max.0))
    }
}

/// An exponentially distributed delay with the given mean, at least 1 ms.
/// Inverse transform of one uniform draw; rounded to whole milliseconds, so
/// the event order stays integer.
fn exp_delay(r: &mut ChaCha8Rng, mean: Ms) -> Ms {
    let u: f64 = r.gen_range(f64::EPSILON..1.0);
    Ms(((-u.ln()) * mean.0 as f64).round().max(1.0) as u64)
}

/// Lines of a [`Node`] a pod's deletion or an ipamd decision reads: its
/// scheduler fields, pod list and ipamd's datastore (`repr(C)` order).
const NODE_HOT_LINES: usize = 4;

/// Queue length over which the first sweep for stale events runs
/// ([`Simulation::drop_stale_events`]).
const SWEEP_MIN: usize = 4096;

/// The node an event is for, when it does nothing once that node is gone
/// (a pod's completion names its node only as a hint: not here).
fn node_of(e: &Event) -> Option<u32> {
    match *e {
        Event::SpotNotice { node }
        | Event::SpotRebalance { node }
        | Event::SpotDeadline { node }
        | Event::EvictLost { node }
        | Event::LaunchTimeout { node }
        | Event::NodeRegistered { node }
        | Event::IpamdTick { node }
        | Event::NodeReady { node }
        | Event::AwsNodeRestart { node } => Some(node),
        _ => None,
    }
}

/// An event a few events from now (see
/// [`crate::engine::EventQueue::pop_until_hinted`]): starts loading the pod
/// and node it will read. Hints only: the outputs do not depend on them.
fn prefetch_soon(pods: &[Pod], nodes: &[Option<Box<Node>>], e: &Event) {
    let node = match *e {
        Event::PodDone { pod, node, .. } => {
            if let Some(p) = pods.get(pod as usize) {
                crate::prefetch::lines(p as *const Pod, 2);
            }
            node
        }
        Event::IpamdTick { node } => node,
        _ => return,
    };
    if let Some(Some(n)) = nodes.get(node as usize) {
        crate::prefetch::lines(&**n as *const Node, NODE_HOT_LINES);
    }
}

impl Simulation {
    /// The next event (its pod and node loaded by [`prefetch_soon`]):
    /// starts loading what those point to, the pod's entry in its node's
    /// pod list and the last one (a pod's removal moves it) and ipamd's
    /// first ENI. For a job's
    /// arrival, the node its pod will most likely go to: the first in the
    /// scheduler's index (hints only).
    fn prefetch_next(&self, e: Event) {
        let (node, slot) = match e {
            Event::PodDone { pod, node, .. } => match self.pods.get(pod as usize) {
                Some(p) if p.node == node => (node, p.slot as usize),
                _ => return,
            },
            Event::IpamdTick { node } => (node, usize::MAX),
            Event::JobArrival { workload } => {
                let wi = workload as usize;
                if self.unfit[wi].is_none() {
                    if let Some((_, n)) = self.index_for(wi).find(|_| true) {
                        if let Some(Some(n)) = self.nodes.get(n as usize) {
                            crate::prefetch::lines(&**n as *const Node, NODE_HOT_LINES);
                        }
                    }
                }
                return;
            }
            _ => return,
        };
        if let Some(Some(n)) = self.nodes.get(node as usize) {
            if let Some(last) = n.pods.last() {
                crate::prefetch::line(last as *const (u32, u32));
            }
            if let Some(own) = n.pods.get(slot) {
                crate::prefetch::line(own as *const (u32, u32));
            }
            if let Some(ipam) = &n.ipam {
                ipam.prefetch();
            }
        }
    }
}
