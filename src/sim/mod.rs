//! The simulation: a validated scenario played on the engine's event queue
//! against the cluster, ipamd and EC2 models, observed into a [`RunResult`].
//!
//! `Simulation::new(scenario, seed)` builds the state; `run` processes
//! events until the scenario's duration. Adding a churn source means adding
//! an [`Event`] variant, its handler, and (if it draws random numbers) a
//! named stream in [`Streams`].

pub mod observe;

use std::collections::{BTreeSet, VecDeque};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::addr::ec2::{EniOwner, OwnerKind};
use crate::addr::{Ec2, Ec2Op, EniId, Subnet, SubnetId};
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
    /// A node group launches (or retries launching) a node.
    NodeLaunch {
        pool: u32,
        /// The node this launch replaces (`u32::MAX`: none).
        replaces: u32,
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
}

impl Streams {
    pub fn new(seed: u64) -> Self {
        Streams {
            ec2: stream(seed, "ec2"),
            ipamd: stream(seed, "ipamd"),
            node_boot: stream(seed, "node_boot"),
            consumers: stream(seed, "consumers"),
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
    Free,
}

#[derive(Clone, Copy, Debug)]
struct Pod {
    workload: u32,
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
            spec,
        };
        sim.observer.set_run(
            &scenario.name,
            seed,
            scenario.duration,
            scenario.sample_every,
            scenario.warmup,
        );
        sim.init();
        sim
    }

    fn init(&mut self) {
        // Consumers take their addresses before any node launches.
        for si in 0..self.spec.subnets.len() {
            for gi in 0..self.spec.subnets[si].consumers.len() {
                self.consumer_enis[si].push(VecDeque::new());
                let c = self.spec.subnets[si].consumers[gi].clone();
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
        for (pi, p) in self.spec.pools.iter().enumerate() {
            for _ in 0..p.size {
                self.queue.schedule(
                    Ms::ZERO,
                    Event::NodeLaunch {
                        pool: pi as u32,
                        replaces: NONE,
                    },
                );
            }
        }
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
        while let Some((at, ev)) = self.queue.pop_until(end) {
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
        // The end row is taken after every event at the end time, so it
        // agrees with final-state.json.
        let pending = self.pods_pending;
        self.observer
            .sample(end, &self.ec2, &self.gauges, pending, true);
        let final_enis = observe::describe_enis(&self.ec2, &self.spec, &self.name);
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

    fn handle(&mut self, at: Ms, ev: Event) {
        match ev {
            Event::NodeLaunch { pool, replaces } => self.node_launch(pool, replaces),
            Event::NodeRegistered { node } => self.node_registered(node),
            Event::IpamdTick { node } => self.ipamd_tick(at, node),
            Event::NodeReady { node } => self.node_ready(node),
            Event::AwsNodeRestart { node } => self.aws_node_restart(node),
            Event::NodeExpire { node } => {
                let pool = self.nodes[node as usize].as_ref().map(|n| n.pool);
                if let Some(pool) = pool {
                    let si = self.nodes[node as usize].as_ref().map(|n| n.subnet);
                    self.log(
                        "node_expired",
                        si,
                        Some(node),
                        "max_lifetime reached".into(),
                    );
                    self.rotation[pool as usize].push_back(node);
                    self.next_rotation(pool);
                }
            }
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
    }

    // ---- nodes ----

    /// Starts the pool's next node replacement unless one is under way:
    /// launch first; the old node goes when the new one is Ready.
    fn next_rotation(&mut self, pool: u32) {
        if self.rotating[pool as usize] {
            return;
        }
        while let Some(old) = self.rotation[pool as usize].pop_front() {
            if self.nodes[old as usize].is_some() {
                self.rotating[pool as usize] = true;
                self.queue.schedule(
                    self.queue.now(),
                    Event::NodeLaunch {
                        pool,
                        replaces: old,
                    },
                );
                return;
            }
        }
    }

    fn node_launch(&mut self, pool: u32, replaces: u32) {
        let p = self.spec.pools[pool as usize].clone();
        // Balance zones: the subnet with the fewest of this pool's nodes,
        // then the most free addresses, then the first listed.
        let mut best: Option<(usize, u32, u32)> = None;
        for (k, &si) in p.subnets.iter().enumerate() {
            let count = self.pool_subnet_nodes[pool as usize][si];
            let free = self.ec2.free_ips(SubnetId(si as u32));
            let better = match best {
                None => true,
                Some((_, bc, bf)) => count < bc || (count == bc && free > bf),
            };
            if better {
                best = Some((k, count, free));
            }
        }
        let (k, _, _) = best.expect("pools have subnets");
        let si = p.subnets[k] as u32;
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
                let retry = self.spec.nodes.launch_retry;
                self.queue.schedule(
                    self.queue.now() + retry,
                    Event::NodeLaunch { pool, replaces },
                );
            }
            Ok(primary) => {
                self.observer
                    .end_runs(None, Some(si), Some(Ec2Op::RunInstances));
                let t = &p.instance;
                let cap = Capacity {
                    cpu_alloc: t.allocatable_cpu_millis.unwrap_or(0),
                    mem_alloc: t.allocatable_memory_mib.unwrap_or(0),
                    cpu_used: 0,
                    mem_used: 0,
                    pods: self.spec.nodes.daemonset_pods,
                    max_pods: p.max_pods,
                };
                self.nodes.push(Some(Node {
                    pool,
                    subnet: si,
                    state: NodeState::Booting,
                    primary,
                    ipam: None,
                    cap,
                    empty_counted: false,
                    init_failures: 0,
                    launched_at: self.queue.now(),
                    pods: Vec::new(),
                    replaces,
                }));
                if let Some(life) = p.max_lifetime {
                    self.queue
                        .schedule(self.queue.now() + life, Event::NodeExpire { node: id });
                }
                self.pool_subnet_nodes[pool as usize][si as usize] += 1;
                self.gauges[si as usize].nodes += 1;
                let capacity = match p.capacity_type {
                    CapacityType::OnDemand => "on-demand",
                    CapacityType::Spot => "spot",
                };
                let detail = format!(
                    "{} {capacity} in pool {}, {}",
                    t.name,
                    p.name,
                    self.ec2.addr(SubnetId(si), self.ec2.eni(primary).primary)
                );
                self.log("node_launched", Some(si), Some(id), detail);
                let nt = &self.spec.nodes;
                let boot = boot_time(
                    &mut self.rng.node_boot,
                    nt.boot_min,
                    nt.boot_median,
                    nt.boot_max,
                );
                self.queue
                    .schedule(self.queue.now() + boot, Event::NodeRegistered { node: id });
            }
        }
    }

    fn node_registered(&mut self, id: u32) {
        let now = self.queue.now();
        let Some(node) = self.nodes[id as usize].as_mut() else {
            return;
        };
        let p = &self.spec.pools[node.pool as usize];
        let k = p
            .subnets
            .iter()
            .position(|&s| s as u32 == node.subnet)
            .expect("node subnet in pool");
        let (mut spec, _note) = IpamSpec::for_type(
            id,
            &p.instance,
            &self.spec.cni,
            p.max_pods,
            SubnetId(node.subnet),
            SubnetId(p.pod_subnets[k] as u32),
        );
        if !self.spec.cni.custom_networking {
            let (subnets, excluded) = &self.eni_subnets[node.subnet as usize];
            spec.eni_subnets = subnets.clone();
            spec.primary_excluded = *excluded;
        }
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

    fn node_ready(&mut self, id: u32) {
        let Some(node) = self.nodes[id as usize].as_mut() else {
            return;
        };
        if node.state != NodeState::NotReady {
            return;
        }
        node.state = NodeState::Ready;
        let now = self.queue.now();
        self.observer.node_ready(node.launched_at, now);
        let node = self.nodes[id as usize].as_mut().expect("live");
        let key = (node.cap.key(), id);
        let (pool, si) = (node.pool, node.subnet);
        self.ready_all.insert(key);
        self.ready_pool[pool as usize].insert(key);
        self.gauges[si as usize].nodes_ready += 1;
        let empty = self.nodes[id as usize]
            .as_ref()
            .and_then(|n| n.ipam.as_ref())
            .is_some_and(NodeIpam::pool_empty);
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
        let old = std::mem::replace(
            &mut self.nodes[id as usize].as_mut().expect("live").replaces,
            NONE,
        );
        if old != NONE {
            self.terminate_node(old);
            self.rotating[pool as usize] = false;
            self.next_rotation(pool);
        }
        self.queue_schedule();
    }

    /// Drains a node (cordon, then evict every pod: its workload recreates
    /// it, Pending) and terminates it: every ENI, address and prefix
    /// returns to the subnets.
    pub fn terminate_node(&mut self, id: u32) {
        let Some(node) = self.nodes[id as usize].as_mut() else {
            return;
        };
        if node.state == NodeState::Ready {
            let key = (node.cap.key(), id);
            let pool = node.pool as usize;
            self.ready_all.remove(&key);
            self.ready_pool[pool].remove(&key);
            node.state = NodeState::NotReady;
            self.gauges[node.subnet as usize].nodes_ready -= 1;
        }
        let evicted = std::mem::take(&mut node.pods);
        self.update_empty_gauge(id);
        self.observer.end_runs(Some(id), None, None);
        for &pid in &evicted {
            let w = self.pods[pid as usize].workload;
            self.delete_pod(pid);
            self.new_pod(w);
        }
        let node = self.nodes[id as usize].take().expect("live node");
        let enis = match node.ipam {
            Some(ipam) => ipam.teardown(&mut self.ec2).len(),
            None => {
                self.ec2
                    .delete_eni(node.primary)
                    .expect("primary ENI is live");
                1
            }
        };
        let si = node.subnet;
        self.gauges[si as usize].nodes -= 1;
        self.pool_subnet_nodes[node.pool as usize][si as usize] -= 1;
        self.log(
            "node_terminated",
            Some(si),
            Some(id),
            format!("{} pods evicted, {enis} ENIs released", evicted.len()),
        );
        self.queue_schedule();
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
        for wi in 0..self.pending.len() {
            while let Some(&pid) = self.pending[wi].front() {
                let pod = self.pods[pid as usize];
                if pod.state != PodState::Pending || pod.workload as usize != wi {
                    self.pending[wi].pop_front(); // deleted while pending
                    continue;
                }
                let w = &self.spec.workloads[wi];
                let (cpu, mem) = (w.cpu_millis, w.memory_mib);
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
                match policy.choose(index, cpu, mem, &cap) {
                    Some(n) => {
                        self.pending[wi].pop_front();
                        self.bind(pid, n);
                    }
                    None => break,
                }
            }
        }
    }

    fn reindex<F: FnOnce(&mut Capacity)>(&mut self, n: u32, f: F) {
        let node = self.nodes[n as usize].as_mut().expect("live node");
        let old = (node.cap.key(), n);
        f(&mut node.cap);
        let new = (node.cap.key(), n);
        if node.state == NodeState::Ready && old != new {
            let pool = node.pool as usize;
            self.ready_all.remove(&old);
            self.ready_all.insert(new);
            self.ready_pool[pool].remove(&old);
            self.ready_pool[pool].insert(new);
        }
    }

    fn bind(&mut self, pid: u32, n: u32) {
        let w = &self.spec.workloads[self.pods[pid as usize].workload as usize];
        let (cpu, mem) = (w.cpu_millis, w.memory_mib);
        self.reindex(n, |c| {
            c.cpu_used += cpu;
            c.mem_used += mem;
            c.pods += 1;
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
                let p = &mut self.pods[pid as usize];
                p.state = PodState::Running;
                p.addr = Some(addr);
                if was_waiting {
                    self.gauges[si as usize].pods_waiting_ip -= 1;
                }
                // Counted in the subnet its address is in.
                self.gauges[addr.subnet.0 as usize].pods_running += 1;
            }
            None => {
                let k = &self.spec.kubelet;
                if !was_waiting {
                    self.gauges[si as usize].pods_waiting_ip += 1;
                }
                let p = &mut self.pods[pid as usize];
                p.state = PodState::WaitingIp;
                let shift = p.retries.min(20);
                let delay = Ms(k.retry_base.0.saturating_mul(1 << shift)).min(k.retry_max);
                p.retries += 1;
                self.queue
                    .schedule(now + delay, Event::PodSandbox { pod: pid, gen });
            }
        }
    }

    fn delete_pod(&mut self, pid: u32) {
        let now = self.queue.now();
        let pod = self.pods[pid as usize];
        match pod.state {
            PodState::Free => return,
            PodState::Pending => self.pods_pending -= 1,
            PodState::Creating | PodState::WaitingIp | PodState::Running => {
                let w = &self.spec.workloads[pod.workload as usize];
                let (cpu, mem) = (w.cpu_millis, w.memory_mib);
                self.reindex(pod.node, |c| {
                    c.cpu_used -= cpu;
                    c.mem_used -= mem;
                    c.pods -= 1;
                });
                let node = self.nodes[pod.node as usize].as_mut().expect("live node");
                let si = node.subnet as usize;
                if let Some(i) = node.pods.iter().position(|&p| p == pid) {
                    node.pods.swap_remove(i);
                }
                if let Some(addr) = pod.addr {
                    let ipam = node.ipam.as_mut().expect("ipamd");
                    ipam.release_pod(now, addr, &self.spec.cni);
                    if let Some(t) = ipam.on_pod_change(now) {
                        self.queue.schedule(t, Event::IpamdTick { node: pod.node });
                    }
                    self.gauges[addr.subnet.0 as usize].pods_running -= 1;
                } else if pod.state == PodState::WaitingIp {
                    self.gauges[si].pods_waiting_ip -= 1;
                }
            }
        }
        self.pods[pid as usize].state = PodState::Free;
        self.free_pods.push(pid);
        self.queue_schedule();
    }

    // ---- workloads ----

    fn workload_start(&mut self, w: u32) {
        let spec = &self.spec.workloads[w as usize];
        let (replicas, every) = (spec.replicas, spec.restart_every);
        for _ in 0..replicas {
            self.new_pod(w);
        }
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
        let step =
            Ms((spec.restart_every.expect("replace scheduled").0 / spec.replicas as u64).max(1));
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
