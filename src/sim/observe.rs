//! What a run records: time-series samples, the event log, every EC2
//! allocation failure, each subnet's block map at its worst moment (fewest
//! delegatable blocks) and at the end, and the final ENI state.

use serde::Serialize;

use crate::addr::ec2::OwnerKind;
use crate::addr::{BlockClass, Ec2, Ec2Error, Ec2Op, SubnetId};
use crate::cluster::autoscaling::Autoscaler;
use crate::cluster::spec::ClusterSpec;
use crate::inspect::{
    Attachment, DescribeNetworkInterfaces, Ipv4Prefix, NetworkInterface, PrivateIp,
};
use crate::time::Ms;

use super::{eni_name, node_name, SubnetGauges};

/// One row of `timeseries.csv`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SampleRow {
    pub time_s: String,
    pub subnet: String,
    pub cidr: String,
    pub free_ips: u32,
    pub delegatable_blocks: u32,
    pub free_blocks: u32,
    pub fragmented_blocks: u32,
    pub full_blocks: u32,
    pub prefix_allocated_blocks: u32,
    pub fragmentation_score: Option<u32>,
    pub nodes: u32,
    pub nodes_ready: u32,
    /// Ready nodes whose ipamd pool holds no pod address (their first
    /// allocation failed; pods bound to them wait for an address).
    pub nodes_ready_empty_pool: u32,
    pub pods_running: u32,
    pub pods_waiting_ip: u32,
    pub pods_pending: u32,
    pub insufficient_cidr_blocks: u64,
    pub insufficient_free_addresses: u64,
    pub invalid_parameter_value: u64,
    /// Node churn (docs/node-churn-model.md): cordoned nodes now, and
    /// cumulative counts of nodes launched and terminated, spot notices and
    /// interruptions, consolidations and scale-downs, in this subnet.
    pub nodes_cordoned: u32,
    pub nodes_launched: u64,
    pub nodes_terminated: u64,
    pub spot_notices: u64,
    pub spot_interruptions: u64,
    pub consolidations: u64,
    pub scale_downs: u64,
    /// For charts; not a CSV column.
    #[serde(skip)]
    pub time: Ms,
}

/// One row of `events.csv`, kept as indices; names are resolved when the
/// file is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRow {
    pub time: Ms,
    pub kind: &'static str,
    /// Subnet index.
    pub subnet: Option<u32>,
    /// Node id.
    pub node: Option<u32>,
    /// For a failure: the EC2 operation that failed.
    pub op: Option<Ec2Op>,
    /// How many times this happened (a failure run's length; 1 otherwise).
    pub count: u64,
    /// For a failure run: the time of its last failure.
    pub until: Option<Ms>,
    pub detail: String,
}

impl EventRow {
    /// A single event at `time`.
    pub fn one(
        time: Ms,
        kind: &'static str,
        subnet: Option<u32>,
        node: Option<u32>,
        detail: String,
    ) -> Self {
        EventRow {
            time,
            kind,
            subnet,
            node,
            op: None,
            count: 1,
            until: None,
            detail,
        }
    }
}

/// One EC2 call that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailedCall {
    /// The node whose ipamd or launch made the call (`None`: a consumer).
    pub node: Option<u32>,
    pub op: Ec2Op,
    pub subnet: u32,
    pub error: Ec2Error,
    /// Prefixes or addresses asked for.
    pub requested: u32,
    /// Growth paused 120 s after it.
    pub paused: bool,
    /// `prefix` or `address`, for the row's detail.
    pub unit: &'static str,
}

/// Key of a run of consecutive failures: node (`u32::MAX`: none),
/// operation, subnet, error.
type RunKey = (u32, Ec2Op, u32, Ec2Error);

/// A run of consecutive identical failures, written as one row when it ends.
#[derive(Clone, Debug)]
struct FailureRun {
    first: Ms,
    last: Ms,
    count: u64,
    requested: u32,
    paused: u64,
    unit: &'static str,
}

/// What holds an address, for the address-level subnet map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Holder {
    Free,
    AwsReserved,
    /// An instance's primary ENI: the node's own address.
    NodePrimary,
    /// The primary of another ENI (one the CNI attached, or another
    /// attached ENI).
    EniPrimary,
    /// A delegated prefix with at least one pod address assigned.
    PrefixInUse,
    /// A delegated prefix with no pod on it.
    PrefixUnused,
    /// A secondary address of a node ENI (secondary-IP mode).
    SecondaryIp,
    LoadBalancer,
    Lambda,
    Endpoint,
    ControlPlane,
    Other,
}

impl Holder {
    pub const ALL: [Holder; 12] = [
        Holder::NodePrimary,
        Holder::EniPrimary,
        Holder::PrefixInUse,
        Holder::PrefixUnused,
        Holder::SecondaryIp,
        Holder::LoadBalancer,
        Holder::Lambda,
        Holder::Endpoint,
        Holder::ControlPlane,
        Holder::Other,
        Holder::AwsReserved,
        Holder::Free,
    ];

    /// The holder of an ENI's primary address, by owner kind.
    pub fn of_primary(kind: OwnerKind) -> Holder {
        match kind {
            OwnerKind::Ec2Primary => Holder::NodePrimary,
            OwnerKind::EksPod | OwnerKind::Ec2Secondary | OwnerKind::Trunk | OwnerKind::Branch => {
                Holder::EniPrimary
            }
            OwnerKind::Elb | OwnerKind::Nlb => Holder::LoadBalancer,
            OwnerKind::Lambda => Holder::Lambda,
            OwnerKind::VpcEndpoint => Holder::Endpoint,
            OwnerKind::EksManaged => Holder::ControlPlane,
            OwnerKind::NatGateway
            | OwnerKind::Efs
            | OwnerKind::Rds
            | OwnerKind::Orphaned
            | OwnerKind::Other => Holder::Other,
        }
    }
}

/// Subnets up to this many addresses (a /22) get an address-level map;
/// larger ones a block-level map.
pub const ADDRESS_MAP_MAX: u32 = 1024;

/// A subnet's blocks at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub time: Ms,
    pub delegatable: u32,
    pub free_ips: u32,
    pub classes: Vec<BlockClass>,
    pub in_reservation: Vec<bool>,
    /// Per address, what holds it (subnets up to [`ADDRESS_MAP_MAX`]
    /// addresses; empty for larger ones).
    pub holders: Vec<Holder>,
    /// Taken at the first `InsufficientCidrBlocks` after warm-up.
    pub at_failure: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct SubnetInfo {
    pub name: String,
    pub cidr: String,
    pub zone: String,
    /// Its reservations, as `10.0.0.128/25 prefix, ...` (empty: none).
    pub reservations: String,
}

/// `summary.json`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub scenario: String,
    pub seed: u64,
    pub simulated_duration: Ms,
    pub simulated_seconds: u64,
    /// The warm-up left out of everything below (failures, first failure,
    /// minimum blocks, peak waiting count from its end).
    pub warmup: Ms,
    pub failures: FailureCounts,
    pub failures_by_subnet: Vec<SubnetFailures>,
    pub first_insufficient_cidr_blocks: Option<TimeAndSubnet>,
    /// The first EC2 allocation failure of any kind after warm-up.
    pub first_failure_s: Option<f64>,
    /// Time pods spent waiting for an address after warm-up, summed over
    /// pods, in seconds.
    pub pod_wait_time_s: f64,
    /// The slowest launch-to-Ready of a node launched after warm-up (a node
    /// never Ready counts to the end), in seconds.
    pub max_node_ready_s: Option<f64>,
    /// Most nodes at once (all subnets).
    pub peak_nodes: u32,
    /// At the end, per live node: subnet addresses held (ENI primaries plus
    /// prefixes x 16 or secondary addresses) and delegated prefixes.
    pub addresses_per_node: f64,
    pub prefixes_per_node: f64,
    pub min_delegatable_blocks: Vec<SubnetMinimum>,
    pub peak_pods_waiting_ip: PeakWaiting,
    /// Node churn over the whole run (warm-up included).
    pub node_churn: NodeChurn,
    pub events_processed: u64,
    /// The most events waiting in the queue at once (the queue's size
    /// decides its cost per event).
    pub peak_queue_len: u64,
    /// Wall-clock time of the run on this machine (not reproducible;
    /// `null` with `--no-wall-clock`).
    pub wall_time_s: Option<f64>,
    pub events_per_second: Option<f64>,
}

/// Node churn counts over a whole run (docs/node-churn-model.md).
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct NodeChurn {
    pub nodes_launched: u64,
    pub nodes_terminated: u64,
    pub spot_notices: u64,
    pub spot_interruptions: u64,
    pub consolidations: u64,
    pub scale_downs: u64,
}

impl NodeChurn {
    pub fn of(gauges: &[SubnetGauges]) -> Self {
        let sum = |f: fn(&SubnetGauges) -> u64| gauges.iter().map(f).sum();
        NodeChurn {
            nodes_launched: sum(|g| g.nodes_launched),
            nodes_terminated: sum(|g| g.nodes_terminated),
            spot_notices: sum(|g| g.spot_notices),
            spot_interruptions: sum(|g| g.spot_interruptions),
            consolidations: sum(|g| g.consolidations),
            scale_downs: sum(|g| g.scale_downs),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct FailureCounts {
    #[serde(rename = "InsufficientCidrBlocks")]
    pub insufficient_cidr_blocks: u64,
    #[serde(rename = "InsufficientFreeAddressesInSubnet")]
    pub insufficient_free_addresses: u64,
    #[serde(rename = "InvalidParameterValue")]
    pub invalid_parameter_value: u64,
}

impl FailureCounts {
    pub fn add(&mut self, e: Ec2Error) {
        match e {
            Ec2Error::InsufficientCidrBlocks => self.insufficient_cidr_blocks += 1,
            Ec2Error::InsufficientFreeAddressesInSubnet => self.insufficient_free_addresses += 1,
            Ec2Error::InvalidParameterValue => self.invalid_parameter_value += 1,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct SubnetFailures {
    pub subnet: String,
    #[serde(flatten)]
    pub counts: FailureCounts,
}

#[derive(Clone, Debug, Serialize)]
pub struct TimeAndSubnet {
    pub time_s: f64,
    pub subnet: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct SubnetMinimum {
    pub subnet: String,
    pub delegatable_blocks: u32,
    pub time_s: f64,
    pub free_ips_then: u32,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct PeakWaiting {
    pub pods: u32,
    pub time_s: f64,
}

/// Where a run's rows go as they are made (`timeseries.csv` and
/// `events.csv` are streamed: a run keeps no growing list of them).
pub trait RowSink {
    fn sample(&mut self, row: &SampleRow);
    fn event(&mut self, row: &EventRow);
    /// One row of `workloads.csv`.
    fn workload(&mut self, _row: &WorkloadRow) {}
}

/// One row of `workloads.csv`: a workload at a sample time.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct WorkloadRow {
    pub time_s: String,
    pub workload: String,
    /// The replica count asked for (the HPA's or the spec's).
    pub desired: u32,
    pub running: u32,
    /// Bound, ContainerCreating for want of an address.
    pub waiting_ip: u32,
    /// Not yet bound to a node.
    pub pending: u32,
    /// The workload's load (its first load signal) now; empty without one.
    pub load: Option<f64>,
}

/// A sink that drops every row (benchmarks).
pub struct NullSink;

impl RowSink for NullSink {
    fn sample(&mut self, _: &SampleRow) {}
    fn event(&mut self, _: &EventRow) {}
}

/// A sink that keeps every row in memory (tests and small library uses).
#[derive(Default)]
pub struct VecSink {
    pub samples: Vec<SampleRow>,
    pub events: Vec<EventRow>,
    pub workloads: Vec<WorkloadRow>,
}

impl RowSink for VecSink {
    fn sample(&mut self, row: &SampleRow) {
        self.samples.push(row.clone());
    }
    fn event(&mut self, row: &EventRow) {
        self.events.push(row.clone());
    }
    fn workload(&mut self, row: &WorkloadRow) {
        self.workloads.push(row.clone());
    }
}

/// Samples per subnet kept for the charts: every k-th sample (and the last)
/// so that a year of samples draws from at most about this many.
pub const CHART_SAMPLES: u64 = 4_000;

/// Everything a run produced besides the streamed rows.
pub struct RunResult {
    pub subnets: Vec<SubnetInfo>,
    /// The scenario's warm-up (left out of the summary, shaded in charts).
    pub warmup: Ms,
    /// The settings that matter, for chart subtitles.
    pub subtitle: String,
    /// Samples for the charts: every `chart_stride`-th row of
    /// `timeseries.csv` and the last (cumulative counts stay exact).
    pub chart_samples: Vec<SampleRow>,
    pub worst: Vec<Snapshot>,
    pub end: Vec<Snapshot>,
    pub summary: Summary,
    pub final_enis: DescribeNetworkInterfaces,
}

/// Seconds as text from integer milliseconds (no float rounding).
pub fn secs_text(t: Ms) -> String {
    let mut s = String::new();
    write_secs(&mut s, t);
    s
}

/// [`secs_text`] appended to `out`.
pub fn write_secs(out: &mut String, t: Ms) {
    let ms = t.as_millis();
    push_decimal(out, ms / 1000);
    if !ms.is_multiple_of(1000) {
        let frac = ms % 1000;
        out.push('.');
        for d in [frac / 100, frac / 10 % 10, frac % 10] {
            out.push(char::from(b'0' + d as u8));
        }
    }
}

/// `v` in decimal, as `write!(out, "{v}")` writes it (without the
/// formatter's machinery: one row of `events.csv` writes several).
pub fn push_decimal(out: &mut String, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&buf[i..]).expect("ASCII digits"));
}

/// Records a run as it goes.
pub struct Observer {
    subnets: Vec<SubnetInfo>,
    fallback: bool,
    /// Rows made by the current event, drained into the sink after it.
    events: Vec<EventRow>,
    samples: Vec<SampleRow>,
    workload_rows: Vec<WorkloadRow>,
    chart_samples: Vec<SampleRow>,
    chart_stride: u64,
    sample_index: u64,
    open_runs: std::collections::BTreeMap<RunKey, FailureRun>,
    closing: Vec<RunKey>,
    totals: FailureCounts,
    by_subnet: Vec<FailureCounts>,
    first_icb: Option<(Ms, u32)>,
    /// The subnet of the first `InsufficientCidrBlocks` after warm-up, set
    /// during the event that had it.
    first_icb_now: Option<u32>,
    first_failure: Option<Ms>,
    /// Pod-milliseconds waiting after warm-up; the waiting count and time
    /// of the last event, to integrate.
    wait_ms: u128,
    last_wait: (u32, Ms),
    max_ready: Option<Ms>,
    peak_nodes: u32,
    node_churn: NodeChurn,
    peak_queue: u64,
    per_node: (f64, f64),
    warmup: Ms,
    subtitle: String,
    worst: Vec<Snapshot>,
    peak_waiting: (u32, Ms),
    /// `Ec2::version` at the last look for a new worst moment.
    seen_version: u64,
    scenario: String,
    seed: u64,
    duration: Ms,
}

/// Fills a subnet's holder map (the simulation knows which prefixes have
/// pods): `fill(subnet, buffer)`.
pub type FillHolders<'a> = dyn FnMut(usize, &mut Vec<Holder>) + 'a;

fn snapshot(ec2: &Ec2, si: usize, time: Ms, fill: &mut FillHolders) -> Snapshot {
    let s = ec2.subnet(SubnetId(si as u32));
    let mut holders = Vec::new();
    if s.size() <= ADDRESS_MAP_MAX {
        fill(si, &mut holders);
    }
    Snapshot {
        time,
        delegatable: ec2.delegatable_blocks(SubnetId(si as u32)),
        free_ips: s.free_ips(),
        classes: s.classes().to_vec(),
        in_reservation: s.in_reservation_map().to_vec(),
        holders,
        at_failure: false,
    }
}

/// Copies the subnet's state into `w`, reusing its buffers.
fn recapture(w: &mut Snapshot, ec2: &Ec2, si: usize, at: Ms, fill: &mut FillHolders) {
    let s = ec2.subnet(SubnetId(si as u32));
    w.time = at;
    w.delegatable = ec2.delegatable_blocks(SubnetId(si as u32));
    w.free_ips = s.free_ips();
    w.classes.copy_from_slice(s.classes());
    w.in_reservation.copy_from_slice(s.in_reservation_map());
    if s.size() <= ADDRESS_MAP_MAX {
        fill(si, &mut w.holders);
    }
}

impl Observer {
    pub fn new(spec: &ClusterSpec) -> Self {
        Observer {
            subnets: spec
                .subnets
                .iter()
                .map(|s| SubnetInfo {
                    name: s.name.clone(),
                    cidr: s.cidr.to_string(),
                    zone: s.zone.clone(),
                    reservations: s
                        .reservations
                        .iter()
                        .map(|r| format!("{} {}", r.cidr, r.kind.name()))
                        .collect::<Vec<_>>()
                        .join(", "),
                })
                .collect(),
            fallback: spec.ec2.prefix_reservation_fallback,
            events: Vec::new(),
            samples: Vec::new(),
            chart_samples: Vec::new(),
            workload_rows: Vec::new(),
            chart_stride: 1,
            sample_index: 0,
            open_runs: Default::default(),
            closing: Vec::new(),
            totals: FailureCounts::default(),
            by_subnet: vec![FailureCounts::default(); spec.subnets.len()],
            first_icb: None,
            first_icb_now: None,
            first_failure: None,
            wait_ms: 0,
            last_wait: (0, Ms::ZERO),
            max_ready: None,
            peak_nodes: 0,
            node_churn: NodeChurn::default(),
            peak_queue: 0,
            per_node: (0.0, 0.0),
            warmup: Ms::ZERO,
            subtitle: subtitle(spec),
            worst: Vec::new(),
            peak_waiting: (0, Ms::ZERO),
            seen_version: u64::MAX,
            scenario: String::new(),
            seed: 0,
            duration: Ms::ZERO,
        }
    }

    pub fn set_run(
        &mut self,
        scenario: &str,
        seed: u64,
        duration: Ms,
        sample_every: Ms,
        warmup: Ms,
    ) {
        self.warmup = warmup;
        self.scenario = scenario.to_string();
        self.seed = seed;
        self.duration = duration;
        let rows = duration.as_millis() / sample_every.as_millis().max(1) + 2;
        self.chart_stride = rows.div_ceil(CHART_SAMPLES).max(1);
    }

    /// Logs one event row.
    pub fn event(&mut self, row: EventRow) {
        self.events.push(row);
    }

    /// Queues a `workloads.csv` row.
    pub fn workload(&mut self, row: WorkloadRow) {
        self.workload_rows.push(row);
    }

    /// Hands the rows made since the last call to `sink` (called after
    /// every event: most make no row, and cost three loads here).
    #[inline]
    pub fn drain(&mut self, sink: &mut dyn RowSink) {
        if self.workload_rows.is_empty() && self.samples.is_empty() && self.events.is_empty() {
            return;
        }
        self.drain_rows(sink);
    }

    #[inline(never)]
    fn drain_rows(&mut self, sink: &mut dyn RowSink) {
        if !self.workload_rows.is_empty() {
            for r in self.workload_rows.drain(..) {
                sink.workload(&r);
            }
        }
        if !self.samples.is_empty() {
            for r in self.samples.drain(..) {
                sink.sample(&r);
            }
        }
        if !self.events.is_empty() {
            for r in self.events.drain(..) {
                sink.event(&r);
            }
        }
    }

    /// One failed EC2 call: counted exactly, and added to its run of
    /// consecutive failures (same node, operation, subnet and error), which
    /// becomes one `events.csv` row when it ends.
    pub fn failure(&mut self, time: Ms, f: FailedCall) {
        if time >= self.warmup {
            for c in [&mut self.totals, &mut self.by_subnet[f.subnet as usize]] {
                c.add(f.error);
            }
            self.first_failure.get_or_insert(time);
            if f.error == Ec2Error::InsufficientCidrBlocks && self.first_icb.is_none() {
                self.first_icb = Some((time, f.subnet));
                self.first_icb_now = Some(f.subnet);
            }
        }
        let key = (f.node.unwrap_or(u32::MAX), f.op, f.subnet, f.error);
        let run = self.open_runs.entry(key).or_insert(FailureRun {
            first: time,
            last: time,
            count: 0,
            requested: f.requested,
            paused: 0,
            unit: f.unit,
        });
        run.last = time;
        run.count += 1;
        run.requested = f.requested;
        run.paused += u64::from(f.paused);
    }

    /// Ends the runs of `node` (`None`: the consumers' and launches' runs),
    /// limited to `subnet` and `op` when given: the allocation succeeded, or
    /// the node left.
    pub fn end_runs(&mut self, node: Option<u32>, subnet: Option<u32>, op: Option<Ec2Op>) {
        if self.open_runs.is_empty() {
            return;
        }
        let n = node.unwrap_or(u32::MAX);
        self.closing.clear();
        let lo = (
            n,
            Ec2Op::AssignPrefixes,
            0,
            Ec2Error::InsufficientCidrBlocks,
        );
        let hi = (
            n,
            Ec2Op::RunInstances,
            u32::MAX,
            Ec2Error::InvalidParameterValue,
        );
        for (k, _) in self.open_runs.range(lo..=hi) {
            if subnet.is_none_or(|s| s == k.2) && op.is_none_or(|o| o == k.1) {
                self.closing.push(*k);
            }
        }
        for i in 0..self.closing.len() {
            let k = self.closing[i];
            if let Some(run) = self.open_runs.remove(&k) {
                self.push_run(k, run);
            }
        }
    }

    fn push_run(&mut self, k: RunKey, run: FailureRun) {
        let (node, op, subnet, error) = k;
        let mut detail = format!("{} {}(es) requested", run.requested, run.unit);
        if run.paused > 0 {
            detail.push_str("; growth paused 120s");
            if run.count > 1 {
                detail.push_str(&format!(" after {} of them", run.paused));
            }
        }
        self.events.push(EventRow {
            time: run.first,
            kind: error.code(),
            subnet: Some(subnet),
            node: (node != u32::MAX).then_some(node),
            op: Some(op),
            count: run.count,
            until: Some(run.last),
            detail,
        });
    }

    /// After every event: keeps each subnet's worst moment after warm-up
    /// (fewest delegatable blocks, the first time reached; on a tie, the
    /// first `InsufficientCidrBlocks` after warm-up) and the peak of pods
    /// waiting. O(subnets) unless a new worst is reached.
    pub fn after_event(
        &mut self,
        at: Ms,
        ec2: &Ec2,
        gauges: &[SubnetGauges],
        fill: &mut FillHolders,
    ) {
        let waiting: u32 = gauges.iter().map(|g| g.pods_waiting_ip).sum();
        self.integrate_wait(at);
        self.last_wait = (waiting, at);
        let nodes: u32 = gauges.iter().map(|g| g.nodes).sum();
        self.peak_nodes = self.peak_nodes.max(nodes);
        if at < self.warmup {
            return;
        }
        if waiting > self.peak_waiting.0 {
            self.peak_waiting = (waiting, at);
        }
        if self.worst.is_empty() {
            self.worst = (0..self.subnets.len())
                .map(|i| snapshot(ec2, i, at, fill))
                .collect();
        }
        let first_failure = std::mem::take(&mut self.first_icb_now);
        // No subnet changed and no first failure: no new worst moment.
        if first_failure.is_none() && ec2.version() == self.seen_version {
            return;
        }
        self.seen_version = ec2.version();
        for i in 0..self.subnets.len() {
            let d = ec2.delegatable_blocks(SubnetId(i as u32));
            let w = &mut self.worst[i];
            let tie_at_failure =
                first_failure == Some(i as u32) && d == w.delegatable && !w.at_failure;
            if d < w.delegatable || tie_at_failure {
                recapture(w, ec2, i, at, fill);
                w.at_failure = first_failure == Some(i as u32);
            }
        }
    }

    /// Adds the waiting since the last event (the part after warm-up).
    fn integrate_wait(&mut self, at: Ms) {
        let (n, since) = self.last_wait;
        let from = since.max(self.warmup);
        if n > 0 && at > from {
            self.wait_ms += u128::from(n) * u128::from((at - from).as_millis());
        }
    }

    /// A node launched at `launched` became Ready at `at` (or, at the end,
    /// still was not).
    pub fn node_ready(&mut self, launched: Ms, at: Ms) {
        if launched >= self.warmup {
            let d = at - launched;
            self.max_ready = Some(self.max_ready.map_or(d, |m| m.max(d)));
        }
    }

    /// Addresses and prefixes per live node at the end.
    pub fn set_peak_queue(&mut self, n: u64) {
        self.peak_queue = n;
    }

    pub fn set_node_churn(&mut self, churn: NodeChurn) {
        self.node_churn = churn;
    }

    pub fn set_per_node(&mut self, addresses: f64, prefixes: f64) {
        self.per_node = (addresses, prefixes);
    }

    /// One row per subnet of `timeseries.csv`; `last`: the end row, always
    /// kept for the charts.
    pub fn sample(
        &mut self,
        at: Ms,
        ec2: &Ec2,
        gauges: &[SubnetGauges],
        pods_pending: u32,
        last: bool,
    ) {
        let keep = last || self.sample_index.is_multiple_of(self.chart_stride);
        self.sample_index += 1;
        let first_new = self.samples.len();
        for (i, info) in self.subnets.iter().enumerate() {
            let st = ec2.subnet(SubnetId(i as u32)).stats(self.fallback);
            let g = gauges[i];
            self.samples.push(SampleRow {
                time_s: secs_text(at),
                subnet: info.name.clone(),
                cidr: info.cidr.clone(),
                free_ips: st.free_ips,
                delegatable_blocks: st.delegatable_blocks,
                free_blocks: st.free_blocks,
                fragmented_blocks: st.fragmented_blocks,
                full_blocks: st.full_blocks,
                prefix_allocated_blocks: st.prefix_allocated_blocks,
                fragmentation_score: st.fragmentation_score,
                nodes: g.nodes,
                nodes_ready: g.nodes_ready,
                nodes_ready_empty_pool: g.nodes_ready_empty_pool,
                pods_running: g.pods_running,
                pods_waiting_ip: g.pods_waiting_ip,
                pods_pending,
                insufficient_cidr_blocks: g.insufficient_cidr_blocks,
                insufficient_free_addresses: g.insufficient_free_addresses,
                invalid_parameter_value: g.invalid_parameter_value,
                nodes_cordoned: g.nodes_cordoned,
                nodes_launched: g.nodes_launched,
                nodes_terminated: g.nodes_terminated,
                spot_notices: g.spot_notices,
                spot_interruptions: g.spot_interruptions,
                consolidations: g.consolidations,
                scale_downs: g.scale_downs,
                time: at,
            });
        }
        if keep {
            let new = &self.samples[first_new..];
            self.chart_samples.extend_from_slice(new);
        }
    }

    pub fn finish(
        mut self,
        ec2: &Ec2,
        processed: u64,
        final_enis: DescribeNetworkInterfaces,
        sink: &mut dyn RowSink,
        fill: &mut FillHolders,
    ) -> RunResult {
        let end_t = self.duration;
        let end: Vec<Snapshot> = (0..self.subnets.len())
            .map(|i| snapshot(ec2, i, end_t, fill))
            .collect();
        self.integrate_wait(end_t);
        self.last_wait = (0, end_t);
        // Runs still open at the end are written now, in key order.
        for (k, run) in std::mem::take(&mut self.open_runs) {
            self.push_run(k, run);
        }
        self.drain(sink);
        let first = self.first_icb.map(|(t, s)| TimeAndSubnet {
            time_s: t.as_secs_f64(),
            subnet: self.subnets[s as usize].name.clone(),
        });
        let worst = if self.worst.is_empty() {
            end.clone()
        } else {
            std::mem::take(&mut self.worst)
        };
        let summary = Summary {
            scenario: std::mem::take(&mut self.scenario),
            seed: self.seed,
            simulated_duration: end_t,
            simulated_seconds: end_t.as_millis() / 1000,
            warmup: self.warmup,
            failures: self.totals.clone(),
            failures_by_subnet: self
                .subnets
                .iter()
                .zip(&self.by_subnet)
                .map(|(s, counts)| SubnetFailures {
                    subnet: s.name.clone(),
                    counts: counts.clone(),
                })
                .collect(),
            first_insufficient_cidr_blocks: first,
            first_failure_s: self.first_failure.map(Ms::as_secs_f64),
            pod_wait_time_s: (self.wait_ms / 1000) as f64 + (self.wait_ms % 1000) as f64 / 1000.0,
            max_node_ready_s: self.max_ready.map(Ms::as_secs_f64),
            peak_nodes: self.peak_nodes,
            addresses_per_node: self.per_node.0,
            prefixes_per_node: self.per_node.1,
            min_delegatable_blocks: self
                .subnets
                .iter()
                .zip(&worst)
                .map(|(s, w)| SubnetMinimum {
                    subnet: s.name.clone(),
                    delegatable_blocks: w.delegatable,
                    time_s: w.time.as_secs_f64(),
                    free_ips_then: w.free_ips,
                })
                .collect(),
            node_churn: std::mem::take(&mut self.node_churn),
            peak_queue_len: self.peak_queue,
            peak_pods_waiting_ip: PeakWaiting {
                pods: self.peak_waiting.0,
                time_s: self.peak_waiting.1.as_secs_f64(),
            },
            events_processed: processed,
            wall_time_s: None,
            events_per_second: None,
        };
        RunResult {
            subnets: self.subnets,
            warmup: self.warmup,
            subtitle: self.subtitle,
            chart_samples: self.chart_samples,
            worst,
            end,
            summary,
            final_enis,
        }
    }
}

/// The settings a chart pasted alone must state: CNI mode and targets,
/// subnet discovery, node pools.
pub fn subtitle(spec: &ClusterSpec) -> String {
    let c = &spec.cni;
    let mut parts = Vec::new();
    if c.prefix_delegation {
        parts.push("prefix delegation".to_string());
        if c.ip_targets_defined() {
            if let Some(w) = c.warm_ip_target.filter(|&w| w > 0) {
                parts.push(format!("WARM_IP_TARGET={w}"));
            }
            if let Some(m) = c.minimum_ip_target.filter(|&m| m > 0) {
                parts.push(format!("MINIMUM_IP_TARGET={m}"));
            }
        } else {
            parts.push(format!("WARM_PREFIX_TARGET={}", c.warm_prefix_target));
        }
    } else {
        parts.push("secondary-IP mode".to_string());
        match (c.warm_ip_target, c.minimum_ip_target) {
            (None, None) => parts.push(format!("WARM_ENI_TARGET={}", c.warm_eni_target)),
            (w, m) => {
                if let Some(w) = w {
                    parts.push(format!("WARM_IP_TARGET={w}"));
                }
                if let Some(m) = m {
                    parts.push(format!("MINIMUM_IP_TARGET={m}"));
                }
            }
        }
    }
    parts.push(format!(
        "subnet discovery {}",
        if c.subnet_discovery { "on" } else { "off" }
    ));
    if c.custom_networking {
        parts.push("custom networking".to_string());
    }
    for p in &spec.pools {
        let types: Vec<&str> = p.types.iter().map(|t| t.instance.name.as_str()).collect();
        let types = types.join("/");
        let adopted = if p.adopted.is_empty() {
            String::new()
        } else {
            format!("{} adopted + ", p.adopted.len())
        };
        let what = match p.autoscaler {
            Autoscaler::None => format!("{adopted}{} × {types}", p.size),
            Autoscaler::Karpenter => format!("{adopted}Karpenter {types}"),
            Autoscaler::ClusterAutoscaler if p.max_size == u32::MAX => {
                format!("{adopted}CA {}+ × {types}", p.min_size)
            }
            Autoscaler::ClusterAutoscaler => {
                format!("{adopted}CA {}–{} × {types}", p.min_size, p.max_size)
            }
        };
        let spot = match &p.spot {
            Some(s) => format!(", spot {}", s.rate_text),
            None => String::new(),
        };
        parts.push(format!("{what} ({}{spot})", p.name));
    }
    parts.join(" · ")
}

/// The simulated subnet id (`subnet-<name>`).
pub fn subnet_id(name: &str) -> String {
    format!("subnet-{name}")
}

/// The end state as `describe-network-interfaces` output, ENIs in creation
/// order, so `subnetsim inspect` (and AWS support's analyzer) can read it.
/// What a snapshot said of an ENI the run took over and the simulation does
/// not own (kept so `final-state.json` describes it the same way).
#[derive(Clone, Debug, Default)]
pub struct Foreign {
    /// Its `NetworkInterfaceId` in the snapshot.
    pub id: String,
    pub instance_id: Option<String>,
    pub device_index: u32,
    pub description: String,
    pub tags: Vec<(String, String)>,
}

pub fn describe_enis(
    ec2: &Ec2,
    spec: &ClusterSpec,
    scenario: &str,
    foreign: &std::collections::BTreeMap<u64, Foreign>,
) -> DescribeNetworkInterfaces {
    let mut enis: Vec<_> = ec2.enis().collect();
    enis.sort_by_key(|(_, e)| e.serial);
    let network_interfaces = enis
        .into_iter()
        .map(|(_, e)| {
            let s = &spec.subnets[e.subnet.0 as usize];
            let addr = |off: u32| ec2.addr(e.subnet, off).to_string();
            let known = foreign.get(&e.serial);
            let instance = e
                .owner
                .instance
                .map(node_name)
                .or_else(|| known.and_then(|f| f.instance_id.clone()));
            let (itype, mut desc) = match e.owner.kind {
                OwnerKind::Ec2Primary => ("interface", String::new()),
                OwnerKind::EksPod => (
                    "interface",
                    format!("aws-K8S-{}", instance.clone().unwrap_or_default()),
                ),
                OwnerKind::EksManaged => ("interface", format!("Amazon EKS {scenario}")),
                OwnerKind::Elb => ("interface", format!("ELB app/{scenario}/{:016x}", e.serial)),
                OwnerKind::Nlb => (
                    "network_load_balancer",
                    format!("ELB net/{scenario}/{:016x}", e.serial),
                ),
                OwnerKind::Lambda => ("lambda", format!("AWS Lambda VPC ENI-{scenario}")),
                OwnerKind::VpcEndpoint => ("vpc_endpoint", "VPC Endpoint Interface".to_string()),
                OwnerKind::NatGateway => ("nat_gateway", "Interface for NAT Gateway".to_string()),
                OwnerKind::Efs => ("efs", "EFS mount target".to_string()),
                OwnerKind::Rds => ("interface", "RDSNetworkInterface".to_string()),
                OwnerKind::Trunk => ("trunk", String::new()),
                OwnerKind::Branch => ("branch", String::new()),
                OwnerKind::Ec2Secondary | OwnerKind::Orphaned | OwnerKind::Other => {
                    ("interface", String::new())
                }
            };
            if let Some(f) = known {
                desc = f.description.clone();
            }
            let mut ips = vec![PrivateIp {
                private_ip_address: addr(e.primary),
                primary: true,
            }];
            ips.extend(e.secondary.iter().map(|&o| PrivateIp {
                private_ip_address: addr(o),
                primary: false,
            }));
            NetworkInterface {
                network_interface_id: known.map_or_else(|| eni_name(e.serial), |f| f.id.clone()),
                subnet_id: Some(subnet_id(&s.name)),
                availability_zone: Some(s.zone.clone()),
                interface_type: Some(itype.to_string()),
                description: Some(desc),
                status: Some(
                    if e.owner.kind == OwnerKind::Orphaned {
                        "available"
                    } else {
                        "in-use"
                    }
                    .to_string(),
                ),
                requester_id: None,
                attachment: instance.map(|i| Attachment {
                    instance_id: Some(i),
                    device_index: Some(e.owner.device_index),
                    status: Some("attached".to_string()),
                }),
                private_ip_address: Some(addr(e.primary)),
                private_ip_addresses: ips,
                ipv4_prefixes: e
                    .prefixes
                    .iter()
                    .map(|&b| Ipv4Prefix {
                        ipv4_prefix: ec2.prefix_cidr(e.subnet, b).to_string(),
                    })
                    .collect(),
                tag_set: match known {
                    Some(f) => f
                        .tags
                        .iter()
                        .map(|(k, v)| crate::inspect::Tag {
                            key: k.clone(),
                            value: v.clone(),
                        })
                        .collect(),
                    // The tags ipamd puts on the ENIs it creates
                    // (`eniNodeTagKey`, `eniClusterTagKey`,
                    // pkg/awsutils/awsutils.go).
                    None if e.owner.kind == OwnerKind::EksPod => {
                        let mut t = vec![crate::inspect::Tag {
                            key: "node.k8s.amazonaws.com/instance_id".into(),
                            value: e.owner.instance.map(node_name).unwrap_or_default(),
                        }];
                        if let Some(c) = &spec.cni.cluster_name {
                            t.push(crate::inspect::Tag {
                                key: "cluster.k8s.amazonaws.com/name".into(),
                                value: c.clone(),
                            });
                        }
                        t
                    }
                    None => Vec::new(),
                },
            }
        })
        .collect();
    DescribeNetworkInterfaces { network_interfaces }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written number and name writers give what `format!` gives.
    #[test]
    fn writers_match_format() {
        for v in [0u64, 7, 10, 999, 1000, 86_400_001, u64::MAX] {
            let mut s = String::new();
            push_decimal(&mut s, v);
            assert_eq!(s, v.to_string());
            let mut s = String::new();
            write_secs(&mut s, Ms(v / 2));
            let ms = v / 2;
            let want = if ms % 1000 == 0 {
                format!("{}", ms / 1000)
            } else {
                format!("{}.{:03}", ms / 1000, ms % 1000)
            };
            assert_eq!(s, want);
        }
        for id in [0u32, 1, 0xabc, 0x1234_5678, u32::MAX] {
            let mut s = String::new();
            crate::sim::write_node_name(&mut s, id);
            assert_eq!(s, format!("i-{id:017x}"));
        }
        for serial in [0u64, 1, 0xabc, 0x1234_5678_9abc, u64::MAX] {
            assert_eq!(crate::sim::eni_name(serial), format!("eni-{serial:017x}"));
        }
    }
}
