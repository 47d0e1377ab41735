//! The simulation: a validated scenario played on the engine's event queue
//! against the cluster, ipamd and EC2 models, observed into a [`RunResult`].
//!
//! `Simulation::new(scenario, seed)` builds the state; `run` processes
//! events until the scenario's duration. Adding a churn source means adding
//! an [`Event`] variant, its handler, and (if it draws random numbers) a
//! named stream in [`Streams`].

mod cluster_autoscaler;
mod karpenter;
pub mod observe;
mod sgp;
mod spot;
mod workloads;

use std::collections::{BTreeSet, VecDeque};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::addr::ec2::{EniOwner, OwnerKind};
use crate::addr::{Ec2, Ec2Op, EniId, Subnet, SubnetId};
use crate::cluster::autoscaling::Autoscaler;
use crate::cluster::scheduler::{self, Capacity};
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
    /// The node reached its pool's `max_lifetime`: a replacement launches,
    /// the node is drained and terminated.
    NodeExpire {
        node: u32,
    },
    /// kubelet creates a pod's sandbox (asks ipamd for an address).
    PodSandbox {
        pod: u32,
        gen: u32,
    },
    /// kube-scheduler binds pending pods.
    Schedule,
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

struct Node {
    pool: u32,
    /// Index into the pool's types.
    itype: u16,
    subnet: u32,
    state: NodeState,
    primary: EniId,
    ipam: Option<NodeIpam>,
    cap: Capacity,
    /// Counted in `nodes_ready_empty_pool`.
    empty_counted: bool,
    /// Failed ipamd inits so far (aws-node restarts).
    init_failures: u32,
    /// When the node was launched.
    launched_at: Ms,
    /// Pods bound to this node.
    pods: Vec<u32>,
    /// The node this one replaces (drained once this one is Ready), or
    /// `NONE`.
    replaces: u32,
    /// Cordoned (tainted): out of the scheduler's index, being disrupted.
    cordoned: bool,
    /// A spot notice was received.
    noticed: bool,
    /// The instance is gone but the Node object and its pods remain until
    /// the unreachable toleration runs out.
    lost: bool,
    /// The spot group it belongs to and its place in the group's list, or
    /// `NONE`.
    spot_group: u32,
    group_pos: u32,
    /// When a pod last bound to or left this node (Karpenter's
    /// `consolidateAfter` counts from here).
    last_pod_event: Ms,
    /// Cluster Autoscaler: since when the node is under the utilization
    /// threshold.
    under_since: Option<Ms>,
    /// The trunk ENI (security groups for pods), once attached.
    trunk: Option<EniId>,
}

impl Node {
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

#[derive(Clone, Copy, Debug)]
struct Pod {
    workload: u32,
    /// Of the pod template a rollout is replacing.
    old: bool,
    /// When it became Running.
    running_since: Ms,
    /// Its branch ENI (security groups for pods).
    branch: Option<EniId>,
    state: PodState,
    node: u32,
    addr: Option<PodAddr>,
    retries: u32,
    gen: u32,
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
    nodes: Vec<Option<Node>>,
    /// Live nodes per pool and subnet (zone balance on launch).
    pool_subnet_nodes: Vec<Vec<u32>>,
    pods: Vec<Pod>,
    free_pods: Vec<u32>,
    /// Pending pods per workload, in creation order.
    pending: Vec<VecDeque<u32>>,
    pods_pending: u32,
    schedule_queued: bool,
    /// Ready nodes by allocation: all, and per pool.
    ready_all: BTreeSet<(u64, u32)>,
    ready_pool: Vec<BTreeSet<(u64, u32)>>,
    /// Each workload's pods, oldest first, as (id, generation): ids are
    /// reused, so an entry whose generation no longer matches is stale.
    workload_pods: Vec<VecDeque<(u32, u32)>>,
    /// Consumer ENIs per subnet and group.
    consumer_enis: Vec<Vec<VecDeque<EniId>>>,
    pub gauges: Vec<SubnetGauges>,
    /// Per pool: expired nodes waiting for their replacement, and whether
    /// a replacement is under way.
    rotation: Vec<VecDeque<u32>>,
    rotating: Vec<bool>,
    observer: Observer,
    ipam_events: Vec<IpamEvent>,
    /// Per node subnet: where its nodes' ipamd may create ENIs, and whether
    /// the primary ENI is excluded from pod addresses (from zones and tags).
    eni_subnets: Vec<(EniSubnets, bool)>,
    /// Per subnet: its zone's index.
    zone_of: Vec<u32>,
    /// Per pool: live instances (launched, not yet terminated or vanished),
    /// launches asked for and not yet made, the Auto Scaling group's
    /// desired capacity, and cordoned nodes.
    pool_live: Vec<u32>,
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
    /// Nodes that gained room (a pod left, the node became schedulable),
    /// in order; and per workload, the log's length when its pods last
    /// fitted nowhere: only nodes logged since can take one, so a pass does
    /// not scan every node for a pod that fits none (exact: a node's room
    /// only shrinks between its entries).
    gained: Vec<u32>,
    unfit: Vec<Option<usize>>,
    cands: Vec<Vec<u32>>,
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
            ready_all: BTreeSet::new(),
            ready_pool: vec![BTreeSet::new(); spec.pools.len()],
            workload_pods: vec![VecDeque::new(); spec.workloads.len()],
            consumer_enis: vec![Vec::new(); n_sub],
            gauges: vec![SubnetGauges::default(); n_sub],
            rotation: vec![VecDeque::new(); spec.pools.len()],
            rotating: vec![false; spec.pools.len()],
            ipam_events: Vec::new(),
            eni_subnets: (0..n_sub).map(|i| eni_subnets_for(&spec, i)).collect(),
            zone_of: zone_indices(&spec),
            pool_live: vec![0; spec.pools.len()],
            pool_launching: vec![0; spec.pools.len()],
            desired: spec.pools.iter().map(|p| p.size).collect(),
            pool_cordoned: vec![0; spec.pools.len()],
            booting: vec![Vec::new(); spec.pools.len()],
            pending_count: vec![0; spec.workloads.len()],
            unschedulable: vec![false; spec.workloads.len()],
            gained: Vec::new(),
            unfit: vec![None; spec.workloads.len()],
            cands: vec![Vec::new(); spec.workloads.len()],
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
        sim
    }

    /// Every ENI of every snapshot goes into EC2 where it was; adopted
    /// nodes start Ready with their ENIs and their pods Running.
    fn take_over_snapshots(&mut self) {
        // Adopted nodes get the first node ids, pool by pool.
        let mut owner_of: std::collections::BTreeMap<(usize, usize), u32> = Default::default();
        let mut next = 0u32;
        for p in &self.spec.pools {
            for a in &p.adopted {
                for &key in &a.enis {
                    owner_of.insert(key, next);
                }
                next += 1;
            }
        }
        let mut eni_of: std::collections::BTreeMap<(usize, usize), EniId> = Default::default();
        for si in 0..self.spec.subnets.len() {
            let Some(snap) = self.spec.subnets[si].snapshot.clone() else {
                continue;
            };
            let sid = SubnetId(si as u32);
            let mut kinds: std::collections::BTreeMap<&str, u32> = Default::default();
            for (k, e) in snap.enis.iter().enumerate() {
                let node = owner_of.get(&(si, k)).copied();
                let owner = EniOwner {
                    kind: e.kind,
                    instance: node,
                    device_index: e.device_index,
                };
                let addr = self.ec2.addr(sid, e.primary);
                let id = self
                    .ec2
                    .create_eni_at(sid, owner, addr)
                    .expect("snapshot validated");
                for &o in &e.secondary {
                    let a = self.ec2.addr(sid, o);
                    self.ec2.assign_ip_at(id, a).expect("snapshot validated");
                }
                for &b in &e.prefixes {
                    let net = self.ec2.prefix_cidr(sid, b);
                    self.ec2
                        .assign_prefix_at(id, net)
                        .expect("snapshot validated");
                }
                if node.is_none() {
                    self.snapshot_enis[si].push((e.kind, id));
                    self.foreign.insert(
                        self.ec2.eni(id).serial,
                        observe::Foreign {
                            id: e.id.clone(),
                            instance_id: e.instance_id.clone(),
                            device_index: e.device_index,
                            description: e.description.clone(),
                            tags: e.tags.clone(),
                        },
                    );
                }
                *kinds.entry(e.kind.name()).or_default() += 1;
                eni_of.insert((si, k), id);
            }
            let list: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
            let detail = format!(
                "{} ENIs from {}: {}",
                snap.enis.len(),
                snap.source,
                list.join(", ")
            );
            self.log("snapshot_loaded", Some(si as u32), None, detail);
        }
        for pi in 0..self.spec.pools.len() {
            let adopted = self.spec.pools[pi].adopted.clone();
            for a in adopted {
                self.adopt_node(pi as u32, &a, &eni_of);
            }
        }
        self.queue_schedule();
    }

    fn adopt_node(
        &mut self,
        pool: u32,
        a: &crate::cluster::spec::AdoptedNode,
        eni_of: &std::collections::BTreeMap<(usize, usize), EniId>,
    ) {
        let now = self.queue.now();
        let id = self.nodes.len() as u32;
        let pi = pool as usize;
        let (si, _) = a.enis[0];
        let enis: Vec<EniId> = a.enis.iter().map(|k| eni_of[k]).collect();
        let p = &self.spec.pools[pi];
        let pt = &p.types[0];
        let k = p
            .subnets
            .iter()
            .position(|&s| s == si)
            .expect("adopted in the pool's subnets");
        let (mut spec, _note) = IpamSpec::for_type(
            id,
            &pt.instance,
            &self.spec.cni,
            pt.max_pods,
            SubnetId(si as u32),
            SubnetId(p.pod_subnets[k] as u32),
        );
        if !self.spec.cni.custom_networking {
            let (subnets, excluded) = &self.eni_subnets[si];
            spec.eni_subnets = subnets.clone();
            spec.primary_excluded = *excluded;
        }
        if self.branch_limit(pool, 0) > 0 {
            spec.max_enis = spec.max_enis.saturating_sub(1).max(1);
        }
        let (ipam, next) = NodeIpam::adopt(spec, &enis, now, &self.ec2);
        let t = &pt.instance;
        let cap = Capacity {
            cpu_alloc: t.allocatable_cpu_millis.unwrap_or(0),
            mem_alloc: t.allocatable_memory_mib.unwrap_or(0),
            cpu_used: 0,
            mem_used: 0,
            pods: self.spec.nodes.daemonset_pods,
            max_pods: pt.max_pods,
            branch_max: 0,
            branch_used: 0,
        };
        let life = p
            .max_lifetime
            .or(p.karpenter.as_ref().and_then(|k| k.expire_after));
        self.nodes.push(Some(Node {
            pool,
            itype: 0,
            subnet: si as u32,
            state: NodeState::Ready,
            primary: enis[0],
            ipam: Some(ipam),
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
            under_since: None,
            trunk: None,
        }));
        if let Some(t) = next {
            self.queue.schedule(t, Event::IpamdTick { node: id });
        }
        if let Some(life) = life {
            self.queue
                .schedule(now + life, Event::NodeExpire { node: id });
        }
        self.pool_subnet_nodes[pi][si] += 1;
        self.pool_live[pi] += 1;
        if self.spec.pools[pi].autoscaler != Autoscaler::Karpenter {
            self.desired[pi] += 1;
        }
        let g = &mut self.gauges[si];
        g.nodes += 1;
        g.nodes_ready += 1;
        self.index_insert(id);
        self.attach_trunk(id);
        let held = self.nodes[id as usize]
            .as_ref()
            .and_then(|n| n.ipam.as_ref())
            .map_or(0, |i| i.stats().total);
        self.log(
            "node_adopted",
            Some(si as u32),
            Some(id),
            format!(
                "{} in pool {}: {} ENIs, {held} pod addresses held, {} pods running",
                a.instance_id,
                self.spec.pools[pi].name,
                enis.len(),
                a.pods
            ),
        );
        let w = self.spec.pools[pi].adopted_workload.expect("adopting pool") as u32;
        for _ in 0..a.pods {
            let pid = self.new_pod(w);
            self.pending[w as usize].pop_back();
            self.bind(pid, id);
        }
        self.update_empty_gauge(id);
        self.spot_on_launch(id);
        self.cluster_autoscaler_node_changed(id);
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
        while let Some((at, ev)) = self.queue.pop_until(end) {
            peak_queue = peak_queue.max(self.queue.len());
            self.handle(at, ev);
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
            Event::NodeExpire { node } => self.node_expire(node),
            Event::SpotNotice { node } => self.spot_notice(node),
            Event::SpotRebalance { node } => self.spot_rebalance(node),
            Event::SpotGroup { group } => self.spot_group_event(group),
            Event::SpotDeadline { node } => self.spot_deadline(node),
            Event::EvictLost { node } => self.evict_lost(node),
            Event::KarpenterBatch => self.karpenter_batch(),
            Event::KarpenterDisruption => self.karpenter_disruption(),
            Event::ClusterAutoscalerScan => self.cluster_autoscaler_scan(),
            Event::HpaSync { workload } => self.hpa_sync(workload),
            Event::JobArrival { workload } => self.job_arrival(workload),
            Event::PodDone { pod, gen } => self.pod_done(pod, gen),
            Event::RolloutStart { workload } => self.rollout_start(workload),
            Event::RolloutStep { workload } => self.rollout_step(workload),
            Event::PodSandbox { pod, gen } => self.pod_sandbox(pod, gen),
            Event::Schedule => self.schedule_pending(),
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
    }

    fn sample(&mut self, at: Ms) {
        let pending = self.pods_pending;
        self.observer
            .sample(at, &self.ec2, &self.gauges, pending, false);
        self.workload_rows(at);
    }

    // ---- nodes ----

    /// Starts the pool's next node replacement unless one is under way:
    /// launch first; the old node goes when the new one is Ready.
    fn next_rotation(&mut self, pool: u32) {
        if self.rotating[pool as usize] {
            return;
        }
        while let Some(old) = self.rotation[pool as usize].pop_front() {
            if self.nodes[old as usize].as_ref().is_some_and(|n| !n.lost) {
                self.rotating[pool as usize] = true;
                let itype = self.nodes[old as usize].as_ref().map_or(0, |n| n.itype);
                let now = self.queue.now();
                self.ask_launch(pool, old, itype, Launcher::NodeGroup, now);
                return;
            }
        }
    }

    /// Asks for a node launch now (Auto Scaling groups, the Cluster
    /// Autoscaler) or after Karpenter's launch delay.
    fn ask_launch(&mut self, pool: u32, replaces: u32, itype: u16, by: Launcher, at: Ms) {
        let now = self.queue.now();
        self.ask_launch_since(pool, replaces, itype, by, at, now);
    }

    /// A launch at `at`, first asked for at `asked` (a retry keeps it).
    fn ask_launch_since(
        &mut self,
        pool: u32,
        replaces: u32,
        itype: u16,
        by: Launcher,
        at: Ms,
        asked: Ms,
    ) {
        self.pool_launching[pool as usize] += 1;
        if by == Launcher::Karpenter {
            self.karpenter.launching[pool as usize][itype as usize] += 1;
        }
        // A run is at most 10 years: its seconds fit a u32.
        let asked_s = u32::try_from(asked.as_millis() / 1000).unwrap_or(u32::MAX);
        self.queue.schedule(
            at,
            Event::NodeLaunch {
                pool,
                replaces,
                itype,
                by,
                asked_s,
            },
        );
    }

    /// An Auto Scaling group launches until its live and launching
    /// instances reach its desired capacity.
    fn asg_fill(&mut self, pool: u32) {
        let pi = pool as usize;
        let have = self.pool_live[pi] + self.pool_launching[pi];
        let by = match self.spec.pools[pi].autoscaler {
            Autoscaler::ClusterAutoscaler => Launcher::ClusterAutoscaler,
            _ => Launcher::NodeGroup,
        };
        let now = self.queue.now();
        for _ in have..self.desired[pi] {
            self.ask_launch(pool, NONE, 0, by, now);
        }
    }

    /// The Auto Scaling group's choice: the subnet with the fewest of the
    /// pool's nodes, then the most free addresses, then the first listed.
    fn asg_subnet(&self, pool: u32) -> u32 {
        let p = &self.spec.pools[pool as usize];
        let mut best: Option<(usize, u32, u32)> = None;
        for &si in &p.subnets {
            let count = self.pool_subnet_nodes[pool as usize][si];
            let free = self.ec2.free_ips(SubnetId(si as u32));
            let better = match best {
                None => true,
                Some((_, bc, bf)) => count < bc || (count == bc && free > bf),
            };
            if better {
                best = Some((si, count, free));
            }
        }
        best.expect("pools have subnets").0 as u32
    }

    fn node_launch(&mut self, pool: u32, replaces: u32, itype: u16, by: Launcher, asked: Ms) {
        self.pool_launching[pool as usize] -= 1;
        if by == Launcher::Karpenter {
            self.karpenter.launching[pool as usize][itype as usize] -= 1;
        }
        let now = self.queue.now();
        let pi = pool as usize;
        // A launch for a node that is gone meanwhile is not needed.
        if replaces != NONE && self.nodes[replaces as usize].is_none() {
            if self.spec.pools[pi].karpenter.is_none() {
                self.rotating[pi] = false;
                self.next_rotation(pool);
            }
            return;
        }
        let si = match by {
            Launcher::Karpenter => match self.karpenter_subnet(pool) {
                Some(si) => si,
                None => return,
            },
            _ => self.asg_subnet(pool),
        };
        let id = self.nodes.len() as u32;
        let owner = EniOwner {
            kind: OwnerKind::Ec2Primary,
            instance: Some(id),
            device_index: 0,
        };
        match self
            .ec2
            .create_eni(SubnetId(si), owner, 0, &mut self.rng.ec2)
        {
            Err(error) => {
                self.fail(FailedCall {
                    node: None,
                    op: Ec2Op::RunInstances,
                    subnet: si,
                    error,
                    requested: 1,
                    paused: false,
                    unit: "address",
                });
                self.launch_failed(pool, replaces, itype, by, asked, si);
            }
            Ok(primary) => {
                self.observer
                    .end_runs(None, Some(si), Some(Ec2Op::RunInstances));
                let p = &self.spec.pools[pi];
                let pt = &p.types[itype as usize];
                let t = &pt.instance;
                let cap = Capacity {
                    cpu_alloc: t.allocatable_cpu_millis.unwrap_or(0),
                    mem_alloc: t.allocatable_memory_mib.unwrap_or(0),
                    cpu_used: 0,
                    mem_used: 0,
                    pods: self.spec.nodes.daemonset_pods,
                    max_pods: pt.max_pods,
                    branch_max: 0,
                    branch_used: 0,
                };
                let capacity = match p.capacity_type {
                    CapacityType::OnDemand => "on-demand",
                    CapacityType::Spot => "spot",
                };
                let mut detail = format!(
                    "{} {capacity} in pool {}, {}, by {}",
                    t.name,
                    p.name,
                    self.ec2.addr(SubnetId(si), self.ec2.eni(primary).primary),
                    by.name()
                );
                if replaces != NONE {
                    detail.push_str(&format!(", replacing {}", node_name(replaces)));
                }
                let life = p.max_lifetime;
                let expire = p.karpenter.as_ref().and_then(|k| k.expire_after);
                self.nodes.push(Some(Node {
                    pool,
                    itype,
                    subnet: si,
                    state: NodeState::Booting,
                    primary,
                    ipam: None,
                    cap,
                    empty_counted: false,
                    init_failures: 0,
                    launched_at: now,
                    pods: Vec::new(),
                    replaces,
                    cordoned: false,
                    noticed: false,
                    lost: false,
                    spot_group: NONE,
                    group_pos: 0,
                    last_pod_event: now,
                    under_since: None,
                    trunk: None,
                }));
                if let Some(life) = life.or(expire) {
                    self.queue
                        .schedule(now + life, Event::NodeExpire { node: id });
                }
                self.pool_subnet_nodes[pi][si as usize] += 1;
                self.pool_live[pi] += 1;
                self.booting[pi].push(id);
                let g = &mut self.gauges[si as usize];
                g.nodes += 1;
                g.nodes_launched += 1;
                self.log("node_launched", Some(si), Some(id), detail);
                let nt = &self.spec.nodes;
                let boot = boot_time(
                    &mut self.rng.node_boot,
                    nt.boot_min,
                    nt.boot_median,
                    nt.boot_max,
                );
                // Karpenter deletes a node claim not registered in time;
                // the Cluster Autoscaler gives up a node not provisioned in
                // time (with the default boot times neither happens).
                let limit = match self.spec.pools[pi].autoscaler {
                    Autoscaler::Karpenter => Some(self.spec.karpenter.registration_timeout),
                    Autoscaler::ClusterAutoscaler => {
                        Some(self.spec.cluster_autoscaler.max_node_provision_time)
                    }
                    Autoscaler::None => None,
                };
                match limit {
                    Some(limit) if boot > limit => self
                        .queue
                        .schedule(now + limit, Event::LaunchTimeout { node: id }),
                    _ => self
                        .queue
                        .schedule(now + boot, Event::NodeRegistered { node: id }),
                }
                self.spot_on_launch(id);
            }
        }
    }

    /// RunInstances / CreateFleet failed for want of an address.
    fn launch_failed(
        &mut self,
        pool: u32,
        replaces: u32,
        itype: u16,
        by: Launcher,
        asked: Ms,
        si: u32,
    ) {
        match by {
            // The node claim is deleted; its pods stay Pending and are
            // batched again.
            Launcher::Karpenter => self.karpenter_launch_failed(si),
            Launcher::ClusterAutoscaler if self.cluster_autoscaler_timed_out(pool, asked) => {}
            _ => {
                let retry = self.queue.now() + self.spec.nodes.launch_retry;
                self.ask_launch_since(pool, replaces, itype, by, retry, asked);
            }
        }
    }

    /// Karpenter's liveness controller deletes the node claim (and
    /// provisions again); the Cluster Autoscaler removes the node and
    /// shrinks the group back.
    fn launch_timeout(&mut self, id: u32) {
        let Some(node) = self.nodes[id as usize].as_ref() else {
            return;
        };
        if node.lost {
            return;
        }
        match self.spec.pools[node.pool as usize].autoscaler {
            Autoscaler::Karpenter => {
                self.terminate_node(id, "registration timeout");
                self.karpenter_trigger();
            }
            _ => self.cluster_autoscaler_launch_timeout(id),
        }
    }

    fn node_registered(&mut self, id: u32) {
        let now = self.queue.now();
        if self.nodes[id as usize].as_ref().is_none_or(|n| n.lost) {
            return;
        }
        let Some(node) = self.nodes[id as usize].as_mut() else {
            return;
        };
        let p = &self.spec.pools[node.pool as usize];
        let k = p
            .subnets
            .iter()
            .position(|&s| s as u32 == node.subnet)
            .expect("node subnet in pool");
        let pt = &p.types[node.itype as usize];
        let (mut spec, _note) = IpamSpec::for_type(
            id,
            &pt.instance,
            &self.spec.cni,
            pt.max_pods,
            SubnetId(node.subnet),
            SubnetId(p.pod_subnets[k] as u32),
        );
        if !self.spec.cni.custom_networking {
            let (subnets, excluded) = &self.eni_subnets[node.subnet as usize];
            spec.eni_subnets = subnets.clone();
            spec.primary_excluded = *excluded;
        }
        let (pool, itype) = (node.pool, node.itype);
        if self.branch_limit(pool, itype) > 0 {
            // The trunk ENI takes one of the node's ENIs.
            spec.max_enis = spec.max_enis.saturating_sub(1).max(1);
        }
        let node = self.nodes[id as usize].as_mut().expect("live");
        node.state = NodeState::NotReady;
        let si = node.subnet;
        let primary = node.primary;
        self.log("node_registered", Some(si), Some(id), String::new());
        self.ipam_events.clear();
        let (ipam, init) = NodeIpam::start(
            spec,
            primary,
            now,
            &self.spec.cni,
            &mut self.ec2,
            &mut self.rng.ipamd,
            &mut self.ipam_events,
        );
        self.nodes[id as usize].as_mut().expect("live").ipam = Some(ipam);
        self.after_init(id, init);
    }

    /// Schedules what ipamd's init decided: Ready at the end of init, or an
    /// aws-node restart after kubelet's back-off.
    fn after_init(&mut self, id: u32, init: crate::ipamd::InitOutcome) {
        self.flush_ipam_events(id);
        if let Some(t) = init.next {
            self.queue.schedule(t, Event::IpamdTick { node: id });
        }
        let node = self.nodes[id as usize].as_mut().expect("live");
        let si = node.subnet;
        if init.ok {
            self.queue
                .schedule(init.done_at, Event::NodeReady { node: id });
        } else {
            let k = &self.spec.kubelet;
            let shift = node.init_failures.min(20);
            let delay = Ms(k.retry_base.0.saturating_mul(1 << shift)).min(k.retry_max);
            node.init_failures += 1;
            self.queue
                .schedule(self.queue.now() + delay, Event::AwsNodeRestart { node: id });
            self.log(
                "aws_node_init_failed",
                Some(si),
                Some(id),
                format!(
                    "no address for pods under custom networking; aws-node restarts in {delay}"
                ),
            );
        }
    }

    fn aws_node_restart(&mut self, id: u32) {
        let now = self.queue.now();
        let Some(node) = self.nodes[id as usize].as_mut() else {
            return;
        };
        let Some(ipam) = node.ipam.as_mut() else {
            return;
        };
        self.ipam_events.clear();
        let init = ipam.init(
            now,
            &self.spec.cni,
            &mut self.ec2,
            &mut self.rng.ipamd,
            &mut self.ipam_events,
        );
        self.after_init(id, init);
    }

    fn ipamd_tick(&mut self, at: Ms, id: u32) {
        let Some(node) = self.nodes[id as usize].as_mut() else {
            return;
        };
        let Some(ipam) = node.ipam.as_mut() else {
            return;
        };
        if !ipam.is_due(at) {
            return;
        }
        self.ipam_events.clear();
        let next = ipam.tick(
            at,
            &self.spec.cni,
            &mut self.ec2,
            &mut self.rng.ipamd,
            &mut self.ipam_events,
        );
        if let Some(t) = next {
            self.queue.schedule(t, Event::IpamdTick { node: id });
        }
        self.flush_ipam_events(id);
    }

    /// Logs what ipamd did and keeps the node's empty-pool gauge current.
    fn flush_ipam_events(&mut self, id: u32) {
        if !self.ipam_events.is_empty() {
            let events = std::mem::take(&mut self.ipam_events);
            for e in &events {
                self.log_ipam(id, e);
            }
            self.ipam_events = events;
        }
        self.update_empty_gauge(id);
    }

    /// `nodes_ready_empty_pool`: a Ready node whose pool holds no address.
    fn update_empty_gauge(&mut self, id: u32) {
        let Some(node) = self.nodes[id as usize].as_mut() else {
            return;
        };
        let empty =
            node.state == NodeState::Ready && node.ipam.as_ref().is_some_and(NodeIpam::pool_empty);
        if empty != node.empty_counted {
            node.empty_counted = empty;
            let g = &mut self.gauges[node.subnet as usize];
            if empty {
                g.nodes_ready_empty_pool += 1;
            } else {
                g.nodes_ready_empty_pool -= 1;
            }
        }
    }

    fn log_ipam(&mut self, node: u32, e: &IpamEvent) {
        let unit = if self.spec.cni.prefix_delegation {
            "prefix"
        } else {
            "address"
        };
        match *e {
            IpamEvent::EniCreated {
                subnet,
                serial,
                cidrs,
                ..
            } => {
                self.observer.end_runs(Some(node), None, None);
                self.log(
                    "eni_created",
                    Some(subnet.0),
                    Some(node),
                    format!("{} with {cidrs} {unit}(es)", eni_name(serial)),
                );
            }
            IpamEvent::CidrsAssigned { eni, subnet, cidrs } => {
                self.observer.end_runs(Some(node), None, None);
                let serial = self.ec2.eni(eni).serial;
                self.log(
                    "cidrs_assigned",
                    Some(subnet.0),
                    Some(node),
                    format!("{cidrs} {unit}(es) on {}", eni_name(serial)),
                );
            }
            IpamEvent::CidrsReleased { eni, subnet, cidrs } => {
                let serial = self.ec2.eni(eni).serial;
                self.log(
                    "cidrs_released",
                    Some(subnet.0),
                    Some(node),
                    format!("{cidrs} {unit}(es) from {}", eni_name(serial)),
                );
            }
            IpamEvent::EniDeleted { subnet, serial } => {
                self.log("eni_deleted", Some(subnet.0), Some(node), eni_name(serial));
            }
            IpamEvent::AllocFailed {
                op,
                subnet,
                error,
                requested,
                paused,
            } => self.fail(FailedCall {
                node: Some(node),
                op,
                subnet: subnet.0,
                error,
                requested,
                paused,
                unit,
            }),
        }
    }

    fn node_expire(&mut self, id: u32) {
        let Some(node) = self.nodes[id as usize].as_ref() else {
            return;
        };
        if node.lost || node.cordoned {
            return;
        }
        let (pool, si) = (node.pool, node.subnet);
        if self.spec.pools[pool as usize].karpenter.is_some() {
            // Karpenter v1 expiration is forceful: the node claim is deleted
            // at once (no budget, no replacement first); its pods go Pending
            // and are provisioned for.
            self.log(
                "node_expired",
                Some(si),
                Some(id),
                "expireAfter reached".into(),
            );
            self.terminate_node(id, "expired");
        } else {
            self.log(
                "node_expired",
                Some(si),
                Some(id),
                "max_lifetime reached".into(),
            );
            self.rotation[pool as usize].push_back(id);
            self.next_rotation(pool);
        }
    }

    fn node_ready(&mut self, id: u32) {
        let Some(node) = self.nodes[id as usize].as_mut() else {
            return;
        };
        if node.state != NodeState::NotReady || node.lost {
            return;
        }
        node.state = NodeState::Ready;
        let now = self.queue.now();
        node.last_pod_event = now;
        self.observer.node_ready(node.launched_at, now);
        let node = self.nodes[id as usize].as_ref().expect("live");
        let (pool, si) = (node.pool, node.subnet);
        let schedulable = node.schedulable();
        let empty = node.ipam.as_ref().is_some_and(NodeIpam::pool_empty);
        self.gauges[si as usize].nodes_ready += 1;
        self.booting_remove(id, pool);
        if schedulable {
            self.index_insert(id);
        }
        self.attach_trunk(id);
        self.log(
            "node_ready",
            Some(si),
            Some(id),
            if empty {
                "pool empty: pods bound here wait for an address".to_string()
            } else {
                String::new()
            },
        );
        self.update_empty_gauge(id);
        self.karpenter_node_changed(pool);
        self.cluster_autoscaler_node_changed(id);
        let old = std::mem::replace(
            &mut self.nodes[id as usize].as_mut().expect("live").replaces,
            NONE,
        );
        if old != NONE {
            if self.spec.pools[pool as usize].karpenter.is_some() {
                self.terminate_node(old, "consolidation");
            } else {
                self.terminate_node(old, "rotation");
                self.rotating[pool as usize] = false;
                self.next_rotation(pool);
            }
        }
        self.queue_schedule();
    }

    /// The node is no longer launched-but-not-Ready.
    fn booting_remove(&mut self, id: u32, pool: u32) {
        let list = &mut self.booting[pool as usize];
        if let Some(k) = list.iter().position(|&n| n == id) {
            list.swap_remove(k);
        }
    }

    /// Adds a schedulable node to the scheduler's index.
    fn index_insert(&mut self, id: u32) {
        self.gained.push(id);
        let node = self.nodes[id as usize].as_ref().expect("live");
        let key = (node.cap.key(), id);
        self.ready_all.insert(key);
        self.ready_pool[node.pool as usize].insert(key);
    }

    fn index_remove(&mut self, id: u32) {
        let node = self.nodes[id as usize].as_ref().expect("live");
        let key = (node.cap.key(), id);
        self.ready_all.remove(&key);
        self.ready_pool[node.pool as usize].remove(&key);
    }

    /// Cordons a node (a taint): no new pods; counted as disrupting.
    fn cordon(&mut self, id: u32) {
        let Some(node) = self.nodes[id as usize].as_ref() else {
            return;
        };
        if node.cordoned {
            return;
        }
        if node.schedulable() {
            self.index_remove(id);
        }
        let node = self.nodes[id as usize].as_mut().expect("live");
        node.cordoned = true;
        self.gauges[node.subnet as usize].nodes_cordoned += 1;
        self.pool_cordoned[node.pool as usize] += 1;
    }

    /// Evicts every pod of a node (a drain): each workload recreates its
    /// pod, Pending.
    fn drain(&mut self, id: u32) -> usize {
        let Some(node) = self.nodes[id as usize].as_mut() else {
            return 0;
        };
        let evicted = std::mem::take(&mut node.pods);
        for &pid in &evicted {
            let w = self.pods[pid as usize].workload;
            self.delete_pod(pid);
            self.new_pod(w);
        }
        let n = evicted.len();
        // Keep the allocation (the list is empty now).
        if let Some(node) = self.nodes[id as usize].as_mut() {
            let mut v = evicted;
            v.clear();
            node.pods = v;
        }
        self.queue_schedule();
        n
    }

    /// Drains a node (cordon, then evict every pod: its workload recreates
    /// it, Pending) and terminates it: every ENI, address and prefix
    /// returns to the subnets. `reason` goes to `node_terminated`.
    pub fn terminate_node(&mut self, id: u32, reason: &'static str) {
        let Some(node) = self.nodes[id as usize].as_ref() else {
            return;
        };
        if node.lost {
            return;
        }
        self.cordon(id);
        self.observer.end_runs(Some(id), None, None);
        let evicted = self.drain(id);
        let node = self.nodes[id as usize].as_mut().expect("live");
        if node.state == NodeState::Ready {
            node.state = NodeState::NotReady;
            self.gauges[node.subnet as usize].nodes_ready -= 1;
        }
        self.update_empty_gauge(id);
        let enis = self.release_instance(id);
        let node = self.nodes[id as usize].take().expect("live node");
        self.log(
            "node_terminated",
            Some(node.subnet),
            Some(id),
            format!("{reason}: {evicted} pods evicted, {enis} ENIs released"),
        );
        self.queue_schedule();
    }

    /// The instance goes: its ENIs, addresses and prefixes return to the
    /// subnets and it leaves every count (the Node object may stay, see
    /// [`Self::spot_deadline`]). Returns the ENIs released.
    fn release_instance(&mut self, id: u32) -> usize {
        let node = self.nodes[id as usize].as_mut().expect("live node");
        let trunk = node.trunk.take();
        if let Some(t) = trunk {
            self.ec2.delete_eni(t).expect("trunk ENI is live");
        }
        let node = self.nodes[id as usize].as_mut().expect("live node");
        let enis = usize::from(trunk.is_some())
            + match node.ipam.take() {
                Some(ipam) => ipam.teardown(&mut self.ec2).len(),
                None => {
                    self.ec2
                        .delete_eni(node.primary)
                        .expect("primary ENI is live");
                    1
                }
            };
        let (pool, si) = (node.pool as usize, node.subnet as usize);
        if node.cordoned {
            node.cordoned = false;
            self.gauges[si].nodes_cordoned -= 1;
            self.pool_cordoned[pool] -= 1;
        }
        let g = &mut self.gauges[si];
        g.nodes -= 1;
        g.nodes_terminated += 1;
        self.pool_subnet_nodes[pool][si] -= 1;
        self.pool_live[pool] -= 1;
        self.booting_remove(id, pool as u32);
        self.spot_on_gone(id);
        self.cluster_autoscaler_node_gone(id);
        self.karpenter_node_changed(pool as u32);
        enis
    }

    // ---- pods ----

    fn queue_schedule(&mut self) {
        if !self.schedule_queued && self.pods_pending > 0 {
            self.schedule_queued = true;
            self.queue.schedule(self.queue.now(), Event::Schedule);
        }
    }

    fn new_pod(&mut self, workload: u32) -> u32 {
        let pod = Pod {
            workload,
            old: false,
            running_since: Ms::ZERO,
            branch: None,
            state: PodState::Pending,
            node: u32::MAX,
            addr: None,
            retries: 0,
            gen: 0,
        };
        let id = match self.free_pods.pop() {
            Some(id) => {
                let gen = self.pods[id as usize].gen + 1;
                self.pods[id as usize] = Pod { gen, ..pod };
                id
            }
            None => {
                self.pods.push(pod);
                self.pods.len() as u32 - 1
            }
        };
        self.pending[workload as usize].push_back(id);
        self.pods_pending += 1;
        self.pending_count[workload as usize] += 1;
        let gen = self.pods[id as usize].gen;
        self.workload_pods[workload as usize].push_back((id, gen));
        id
    }

    /// One kube-scheduler pass: per workload, bind pending pods in order
    /// until one fits nowhere (the rest of that workload, with the same
    /// requests and selector, would not fit either).
    fn schedule_pending(&mut self) {
        self.schedule_queued = false;
        let policy = scheduler::policy(self.spec.scheduler.scoring);
        let most = self.spec.scheduler.scoring == crate::cluster::spec::Scoring::MostAllocated;
        // The log of nodes that gained room only matters while some
        // workload remembers a failure; keep it bounded.
        if self.gained.len() > 4 * self.nodes.len() + 4096 {
            self.gained.clear();
            self.unfit.fill(None);
            self.cands.iter_mut().for_each(Vec::clear);
        }
        for wi in 0..self.pending.len() {
            while let Some(&pid) = self.pending[wi].front() {
                let pod = self.pods[pid as usize];
                if pod.state != PodState::Pending || pod.workload as usize != wi {
                    self.pending[wi].pop_front(); // deleted while pending
                    continue;
                }
                let w = &self.spec.workloads[wi];
                let (cpu, mem, sgp) = (w.cpu_millis, w.memory_mib, w.security_groups);
                let index = match w.pool {
                    Some(p) => &self.ready_pool[p],
                    None => &self.ready_all,
                };
                let nodes = &self.nodes;
                let cap = |n: u32| {
                    nodes[n as usize]
                        .as_ref()
                        .map(|x| x.cap)
                        .unwrap_or_default()
                };
                let choice = match self.unfit[wi] {
                    // Only nodes that gained room since this workload's
                    // pods last fitted nowhere can take one now.
                    Some(from) => {
                        let pool = w.pool;
                        // The nodes that could fit at the last look, and
                        // those that gained room since; keep those that
                        // fit now.
                        let mut list = std::mem::take(&mut self.cands[wi]);
                        list.extend_from_slice(&self.gained[from..]);
                        list.sort_unstable();
                        list.dedup();
                        list.retain(|&n| {
                            nodes[n as usize].as_ref().is_some_and(|x| {
                                x.schedulable()
                                    && pool.is_none_or(|p| p == x.pool as usize)
                                    && x.cap.fits(cpu, mem, sgp)
                            })
                        });
                        let mut best: Option<(u64, u32)> = None;
                        for &n in &list {
                            let k = nodes[n as usize].as_ref().expect("kept").cap.key();
                            let better = match (best, most) {
                                (None, _) => true,
                                (Some((bk, bn)), false) => (k, n) < (bk, bn),
                                (Some((bk, bn)), true) => k > bk || (k == bk && n < bn),
                            };
                            if better {
                                best = Some((k, n));
                            }
                        }
                        self.unfit[wi] = Some(self.gained.len());
                        self.cands[wi] = list;
                        best.map(|b| b.1)
                    }
                    None => policy.choose(index, cpu, mem, sgp, &cap),
                };
                match choice {
                    Some(n) => {
                        self.pending[wi].pop_front();
                        self.bind(pid, n);
                    }
                    None => {
                        // Unschedulable: what the autoscalers watch.
                        self.unfit[wi] = Some(self.gained.len());
                        self.unschedulable[wi] = true;
                        self.karpenter_unschedulable(wi);
                        break;
                    }
                }
            }
            if self.pending[wi].is_empty() {
                self.unschedulable[wi] = false;
            }
        }
    }

    fn reindex<F: FnOnce(&mut Capacity)>(&mut self, n: u32, f: F) {
        let now = self.queue.now();
        let node = self.nodes[n as usize].as_mut().expect("live node");
        let before = node.cap;
        let old = (before.key(), n);
        f(&mut node.cap);
        node.last_pod_event = now;
        let c = node.cap;
        let new = (c.key(), n);
        let pool = node.pool;
        let schedulable = node.schedulable();
        let roomier = c.cpu_used < before.cpu_used
            || c.mem_used < before.mem_used
            || c.pods < before.pods
            || c.branch_used < before.branch_used
            || c.branch_max > before.branch_max;
        if schedulable && roomier {
            self.gained.push(n);
        }
        self.karpenter_node_changed(pool);
        self.cluster_autoscaler_node_changed(n);
        if schedulable && old != new {
            let pool = pool as usize;
            self.ready_all.remove(&old);
            self.ready_all.insert(new);
            self.ready_pool[pool].remove(&old);
            self.ready_pool[pool].insert(new);
        }
    }

    fn bind(&mut self, pid: u32, n: u32) {
        let w = &self.spec.workloads[self.pods[pid as usize].workload as usize];
        let (cpu, mem, sgp) = (w.cpu_millis, w.memory_mib, u32::from(w.security_groups));
        self.reindex(n, |c| {
            c.cpu_used += cpu;
            c.mem_used += mem;
            c.pods += 1;
            c.branch_used += sgp;
        });
        self.nodes[n as usize]
            .as_mut()
            .expect("live node")
            .pods
            .push(pid);
        let pod = &mut self.pods[pid as usize];
        pod.state = PodState::Creating;
        pod.node = n;
        self.pods_pending -= 1;
        self.pending_count[pod.workload as usize] -= 1;
        let gen = pod.gen;
        self.queue
            .schedule(self.queue.now(), Event::PodSandbox { pod: pid, gen });
    }

    fn pod_sandbox(&mut self, pid: u32, gen: u32) {
        let now = self.queue.now();
        let pod = self.pods[pid as usize];
        if pod.gen != gen || !matches!(pod.state, PodState::Creating | PodState::WaitingIp) {
            return;
        }
        let was_waiting = pod.state == PodState::WaitingIp;
        if self.spec.workloads[pod.workload as usize].security_groups {
            self.branch_sandbox(pid, gen, was_waiting);
            return;
        }
        let node = self.nodes[pod.node as usize]
            .as_mut()
            .expect("bound to a live node");
        let si = node.subnet;
        let ipam = node.ipam.as_mut().expect("Ready nodes run ipamd");
        match ipam.assign_pod(now, &mut self.rng.ipamd) {
            Some(addr) => {
                if let Some(t) = ipam.on_pod_change(now) {
                    self.queue.schedule(t, Event::IpamdTick { node: pod.node });
                }
                self.pod_running(pid, gen, addr, was_waiting, si);
            }
            None => self.pod_waiting(pid, gen, was_waiting, si),
        }
    }

    /// The pod's sandbox got `addr`: it runs.
    fn pod_running(&mut self, pid: u32, gen: u32, addr: PodAddr, was_waiting: bool, si: u32) {
        let now = self.queue.now();
        let p = &mut self.pods[pid as usize];
        p.state = PodState::Running;
        p.addr = Some(addr);
        p.running_since = now;
        let w = p.workload as usize;
        self.wl[w].running += 1;
        self.job_pod_running(pid, gen, w as u32);
        self.rollout_poke(w as u32);
        if was_waiting {
            self.gauges[si as usize].pods_waiting_ip -= 1;
            self.wl[w].waiting_ip -= 1;
        }
        // Counted in the subnet its address is in.
        self.gauges[addr.subnet.0 as usize].pods_running += 1;
    }

    /// The pod's sandbox got no address: ContainerCreating, retried with
    /// kubelet's back-off.
    fn pod_waiting(&mut self, pid: u32, gen: u32, was_waiting: bool, si: u32) {
        let now = self.queue.now();
        let k = &self.spec.kubelet;
        let w = self.pods[pid as usize].workload as usize;
        if !was_waiting {
            self.gauges[si as usize].pods_waiting_ip += 1;
            self.wl[w].waiting_ip += 1;
        }
        let p = &mut self.pods[pid as usize];
        p.state = PodState::WaitingIp;
        let shift = p.retries.min(20);
        let delay = Ms(k.retry_base.0.saturating_mul(1 << shift)).min(k.retry_max);
        p.retries += 1;
        self.queue
            .schedule(now + delay, Event::PodSandbox { pod: pid, gen });
    }

    fn delete_pod(&mut self, pid: u32) {
        let now = self.queue.now();
        let pod = self.pods[pid as usize];
        match pod.state {
            PodState::Free => return,
            PodState::Pending => {
                self.pods_pending -= 1;
                self.pending_count[pod.workload as usize] -= 1;
            }
            PodState::Lost => {
                let w = &self.spec.workloads[pod.workload as usize];
                let (cpu, mem, sgp) = (w.cpu_millis, w.memory_mib, u32::from(w.security_groups));
                self.reindex(pod.node, |c| {
                    c.cpu_used -= cpu;
                    c.mem_used -= mem;
                    c.pods -= 1;
                    c.branch_used -= sgp;
                });
            }
            PodState::Creating | PodState::WaitingIp | PodState::Running => {
                let w = &self.spec.workloads[pod.workload as usize];
                let (cpu, mem, sgp) = (w.cpu_millis, w.memory_mib, u32::from(w.security_groups));
                self.reindex(pod.node, |c| {
                    c.cpu_used -= cpu;
                    c.mem_used -= mem;
                    c.pods -= 1;
                    c.branch_used -= sgp;
                });
                if let Some(b) = pod.branch {
                    // The branch ENI goes with the pod.
                    self.ec2.delete_eni(b).expect("branch ENI is live");
                    self.pods[pid as usize].branch = None;
                }
                let node = self.nodes[pod.node as usize].as_mut().expect("live node");
                let si = node.subnet as usize;
                if let Some(i) = node.pods.iter().position(|&p| p == pid) {
                    node.pods.swap_remove(i);
                }
                if let (Some(addr), Some(_)) = (pod.addr, pod.branch) {
                    self.gauges[addr.subnet.0 as usize].pods_running -= 1;
                    self.wl[pod.workload as usize].running -= 1;
                } else if let Some(addr) = pod.addr {
                    let ipam = node.ipam.as_mut().expect("ipamd");
                    ipam.release_pod(now, addr, &self.spec.cni);
                    if let Some(t) = ipam.on_pod_change(now) {
                        self.queue.schedule(t, Event::IpamdTick { node: pod.node });
                    }
                    self.gauges[addr.subnet.0 as usize].pods_running -= 1;
                    self.wl[pod.workload as usize].running -= 1;
                } else if pod.state == PodState::WaitingIp {
                    self.gauges[si].pods_waiting_ip -= 1;
                    self.wl[pod.workload as usize].waiting_ip -= 1;
                }
            }
        }
        self.pods[pid as usize].state = PodState::Free;
        self.free_pods.push(pid);
        self.rollout_poke(pod.workload);
        self.queue_schedule();
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
/// them), AWS-reserved addresses. O(ENIs + addresses); run only when a new
/// worst moment is reached and at the end.
fn fill_holders(ec2: &Ec2, nodes: &[Option<Node>], si: usize, out: &mut Vec<Holder>) {
    let sid = SubnetId(si as u32);
    let s = ec2.subnet(sid);
    out.clear();
    out.resize(s.size() as usize, Holder::Free);
    for off in 0..s.size() {
        if s.is_aws_reserved(off) {
            out[off as usize] = Holder::AwsReserved;
        }
    }
    for (_, e) in ec2.enis().filter(|(_, e)| e.subnet == sid) {
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
    for ipam in nodes.iter().flatten().filter_map(|n| n.ipam.as_ref()) {
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
    format!("i-{id:017x}")
}

/// `eni-` plus 17 hex digits.
pub fn eni_name(serial: u64) -> String {
    format!("eni-{serial:017x}")
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
