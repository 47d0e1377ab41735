//! Scenarios: one YAML file, deserialized into raw types (serde, unknown
//! fields refused) and resolved into validated model types
//! ([`Scenario`], [`ClusterSpec`]). Every error names the file, the line and
//! column, the field, and what would be valid. Nothing here panics on input.
//!
//! The field-by-field reference is `docs/scenario-reference.md`; the same
//! structure as a JSON Schema is printed by `subnetsim schema`.

mod hpa;
pub mod locate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path as FsPath, PathBuf};

use ipnet::Ipv4Net;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::addr::ec2::OwnerKind;
use crate::addr::{Ec2Config, Reservation, ReservationType, Subnet};

use crate::catalog::{max_pods, nearest_names, Catalog, InstanceType};
use crate::cluster::autoscaling::{
    self, Autoscaler, Budget, ClusterAutoscalerConfig, ConsolidationPolicy, KarpenterConfig,
    KarpenterPool, SpotHandler, SpotSpec, SubnetPolicy,
};
use crate::cluster::spec::{
    AdoptedNode, Arrivals, CapacityType, ClusterSpec, ConsumerSpec, IntOrPercent, JobSpec,
    KubeletConfig, NodeTiming, PoolSpec, PoolType, RolloutSpec, SchedulerConfig, SnapshotEni,
    SnapshotSpec, SubnetSpec, WorkloadSpec,
};
use crate::inspect;
use crate::ipamd::CniConfig;
use crate::time::Ms;
use locate::{locate, Path};

/// A scenario file as written.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "subnetsim scenario")]
pub struct RawScenario {
    /// Names the run; the default output folder is `output/<name>/`.
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Seed of every random stream (`--seed` overrides it).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Simulated time to run.
    pub duration: Ms,
    /// Interval between rows of `timeseries.csv`.
    #[serde(default = "default_sample")]
    pub sample_every: Ms,
    /// The start-up transient to leave out of the summary: failures, the
    /// worst moment, first failure and peak waiting count from here on.
    /// Charts still show it, shaded. Default 0.
    #[serde(default)]
    pub warmup: Ms,
    /// VPC CNI settings (aws-node environment).
    #[serde(default)]
    pub vpc_cni: CniConfig,
    /// EC2 placement policies and undocumented behaviour.
    #[serde(default)]
    pub ec2: Ec2Config,
    #[serde(default)]
    pub kubelet: KubeletConfig,
    #[serde(default)]
    pub nodes: NodeTiming,
    #[serde(default)]
    pub scheduler: SchedulerConfig,
    /// Karpenter's controller settings (batching, subnet refresh,
    /// disruption polling), for pools with `autoscaler: karpenter`.
    #[serde(default)]
    pub karpenter: KarpenterConfig,
    /// The Cluster Autoscaler's flags, for pools with
    /// `autoscaler: cluster_autoscaler`.
    #[serde(default)]
    pub cluster_autoscaler: ClusterAutoscalerConfig,
    /// Instance types added to (or replacing entries of) the catalogue.
    #[serde(default)]
    pub instance_types: Vec<InstanceType>,
    pub subnets: Vec<RawSubnet>,
    pub node_pools: Vec<RawNodePool>,
    #[serde(default)]
    pub workloads: Vec<RawWorkload>,
    /// Jobs and CronJobs: pods that arrive, run for a while and complete.
    #[serde(default)]
    pub jobs: Vec<RawJob>,
    /// Assertions on the run's results, checked by `subnetsim check` (after
    /// the warm-up). A variant's `expect` overrides the base's, field by
    /// field.
    #[serde(default)]
    pub expect: RawExpect,
    /// Named variants of this scenario: partial YAML merged over it (maps
    /// merge, lists replace, list elements with a `name` are matched by
    /// it). `subnetsim compare` runs them all, the base as `base`.
    #[serde(default)]
    #[schemars(with = "Vec<serde_json::Value>")]
    pub variants: Vec<serde_yaml::Value>,
}

/// `expect:` as written.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawExpect {
    /// At most this many `InsufficientCidrBlocks` (every failed call).
    pub max_insufficient_cidr_blocks: Option<u64>,
    /// Every subnet keeps at least this many delegatable /28s, or a map of
    /// subnet name to its minimum.
    pub min_delegatable_blocks: Option<MinBlocks>,
    /// No EC2 allocation failure of any kind before this time.
    pub no_failure_before: Option<Ms>,
    /// At most this many pods waiting for an address at once.
    pub max_pods_waiting_ip: Option<u32>,
    /// At most this much time spent waiting for an address, summed over
    /// pods.
    pub max_pod_wait_time: Option<Ms>,
    /// Every node Ready within this long of its launch (a node never Ready
    /// counts from its launch to the end).
    pub nodes_ready_within: Option<Ms>,
    /// A sweep assertion: over `seeds` seeds (from the scenario's seed on),
    /// the fraction of runs with at least one `InsufficientCidrBlocks` is at
    /// most `max_p_insufficient_cidr_blocks`.
    pub sweep: Option<RawSweepExpect>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawSweepExpect {
    /// Seeds to run (1 to 100,000).
    pub seeds: u32,
    /// Largest fraction of failing runs allowed (0 to 1).
    pub max_p_insufficient_cidr_blocks: f64,
}

/// One minimum for every subnet, or one per subnet name.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(untagged)]
pub enum MinBlocks {
    All(u32),
    BySubnet(BTreeMap<String, u32>),
}

/// Validated expectations.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Expect {
    /// (seeds, largest failing fraction).
    pub sweep: Option<(u32, f64)>,
    pub max_insufficient_cidr_blocks: Option<u64>,
    /// Per subnet index.
    pub min_delegatable_blocks: Vec<Option<u32>>,
    pub no_failure_before: Option<Ms>,
    pub max_pods_waiting_ip: Option<u32>,
    pub max_pod_wait_time: Option<Ms>,
    pub nodes_ready_within: Option<Ms>,
}

/// Rows per subnet `timeseries.csv` may hold (streamed to disk; a year at
/// 30 s is about 1.05 million).
pub const MAX_SAMPLES: u64 = 10_000_000;
/// The longest simulated duration: 10 years.
pub const MAX_DURATION: Ms = Ms(3650 * 86_400_000);
/// Longest name of a subnet, pool, workload or scenario.
pub const MAX_NAME: usize = 200;
/// Pods one workload may ask for.
pub const MAX_REPLICAS: u32 = 1_000_000;
/// Largest kubelet max pods accepted.
pub const MAX_MAX_PODS: u32 = 10_000;
/// Largest scenario file read.
pub const MAX_FILE_BYTES: usize = 8 << 20;
/// Deepest nesting of YAML collections (flow brackets or block indentation
/// levels) accepted.
pub const MAX_NESTING: usize = 64;

const NAME_RULE: &str = "names are identifiers: letters, digits, `-`, `_` and `.` (not first), at most 200 characters (the default output folder is output/<name>/)";

/// A scenario name: letters, digits, `-`, `_`, `.`, not starting with `.`,
/// at most [`MAX_NAME`] characters. It becomes a folder name.
pub fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('.')
        && name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'))
}

/// The checks on duration and sampling, applied to the file and again after
/// `--duration` overrides it.
pub fn check_timing(duration: Ms, sample_every: Ms, warmup: Ms) -> Vec<(&'static str, String)> {
    let mut bad = Vec::new();
    if warmup >= duration && duration > Ms::ZERO {
        bad.push((
            "warmup",
            format!("{warmup} leaves nothing of the duration {duration}; make it shorter"),
        ));
    }
    if duration == Ms::ZERO {
        bad.push(("duration", "must be more than 0 (e.g. 2h)".to_string()));
    } else if duration > MAX_DURATION {
        bad.push((
            "duration",
            format!("{duration} is more than the longest run, {MAX_DURATION}"),
        ));
    }
    if sample_every == Ms::ZERO {
        bad.push(("sample_every", "must be more than 0 (e.g. 30s)".to_string()));
    } else if sample_every > duration && duration > Ms::ZERO {
        bad.push((
            "sample_every",
            format!("{sample_every} is longer than the duration {duration}"),
        ));
    } else if duration.as_millis() / sample_every.as_millis() > MAX_SAMPLES {
        let at_least = Ms(duration.as_millis().div_ceil(MAX_SAMPLES));
        bad.push((
            "sample_every",
            format!(
                "{sample_every} over {duration} is more than {MAX_SAMPLES} rows per subnet; use at least {at_least}"
            ),
        ));
    }
    bad
}

/// Refuses, before parsing, what would make the YAML parser slow or the
/// run absurd: files over 8 MiB and nesting deeper than [`MAX_NESTING`]
/// (flow brackets, or block indentation levels).
fn precheck(text: &str) -> Result<(), Problem> {
    let problem = |line: usize, message: String| Problem {
        line: Some(line),
        column: None,
        field: String::new(),
        message,
    };
    if text.len() > MAX_FILE_BYTES {
        return Err(problem(
            1,
            format!("the file is over {} MiB", MAX_FILE_BYTES >> 20),
        ));
    }
    let mut depth = 0usize;
    for (i, line) in text.lines().enumerate() {
        let indent = line.len() - line.trim_start_matches([' ', '-']).len();
        // Two columns per block level at the least.
        if indent / 2 > MAX_NESTING {
            return Err(problem(
                i + 1,
                format!("nested more than {MAX_NESTING} levels deep"),
            ));
        }
        let mut quote: Option<char> = None;
        for ch in line.chars() {
            match (quote, ch) {
                (None, '#') => break,
                (None, '"' | '\'') => quote = Some(ch),
                (Some(q), _) if ch == q => quote = None,
                (None, '[' | '{') => {
                    depth += 1;
                    if depth > MAX_NESTING {
                        return Err(problem(
                            i + 1,
                            format!("nested more than {MAX_NESTING} levels deep"),
                        ));
                    }
                }
                (None, ']' | '}') => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
    }
    Ok(())
}

fn default_seed() -> u64 {
    1
}

fn default_sample() -> Ms {
    Ms::from_secs(60)
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSubnet {
    /// Unique name, referred to by node pools.
    pub name: String,
    /// IPv4 CIDR, /16 to /28 (may come from `from.subnet`).
    #[serde(default)]
    pub cidr: Option<String>,
    /// Availability zone (may come from `from.subnet`).
    #[serde(default)]
    pub zone: Option<String>,
    /// Start from a real subnet's state: AWS CLI output files.
    #[serde(default)]
    pub from: Option<RawFrom>,
    #[serde(default)]
    pub reservations: Vec<RawReservation>,
    /// Other users of single addresses in this subnet.
    #[serde(default)]
    pub consumers: Vec<RawConsumer>,
    /// The subnet's AWS tags, key to value. `kubernetes.io/role/cni` decides
    /// where subnet discovery may put new ENIs: `"0"` excludes the subnet
    /// (even the node's own); any other value lets nodes of the same zone in
    /// other subnets use it.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// `subnets[].from`: the AWS CLI's JSON for the subnet, paths relative to
/// the scenario file.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawFrom {
    /// `aws ec2 describe-subnets` output (gives the CIDR and zone); may be
    /// omitted when the subnet's `cidr` and `zone` are given.
    #[serde(default)]
    pub subnet: Option<String>,
    /// Which subnet of the files, when they cover several (e.g.
    /// `subnet-0a1b2c3d`, or `subnet-<name>` in a run's outputs).
    #[serde(default)]
    pub subnet_id: Option<String>,
    /// `aws ec2 describe-network-interfaces` output (or a run's
    /// `final-state.json`).
    pub network_interfaces: String,
    /// `aws ec2 get-subnet-cidr-reservations` output.
    #[serde(default)]
    pub reservations: Option<String>,
    /// The snapshot's own ENIs of these kinds (not adopted with a node)
    /// churn: each is replaced after an exponentially distributed time
    /// with mean `every`, like `consumers` with `churn_every`.
    #[serde(default)]
    pub churn: Vec<RawSnapshotChurn>,
}

/// `subnets[].from.churn[]`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSnapshotChurn {
    /// An owner kind as `inspect` classifies it (`elb`, `lambda`, ...).
    pub kind: OwnerKind,
    /// Mean time after which each is replaced.
    pub every: Ms,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawReservation {
    /// CIDR inside the subnet.
    pub cidr: String,
    /// `prefix` or `explicit`.
    #[serde(rename = "type")]
    pub kind: ReservationType,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawConsumer {
    /// What the ENIs are (analyzer owner types): `eks_managed`
    /// (alias `control_plane`), `elb` (alias `alb`), `nlb`, `lambda`,
    /// `vpc_endpoint`, `nat_gateway`, `efs`, `rds`, `other`, ...
    pub kind: OwnerKind,
    /// ENIs (one address each).
    pub count: u32,
    /// Mean time after which each ENI is replaced at a new address.
    #[serde(default)]
    pub churn_every: Option<Ms>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawNodePool {
    pub name: String,
    /// Catalogue name, e.g. `m5.large` (or give `instance_types`).
    #[serde(default)]
    pub instance_type: Option<String>,
    /// The types Karpenter may choose from (a list of catalogue names);
    /// other pools take exactly one.
    #[serde(default)]
    pub instance_types: Option<Vec<String>>,
    /// Node subnets (names); nodes are balanced across them.
    pub subnets: Vec<String>,
    /// Under custom networking: the ENIConfig (pod) subnet for each node
    /// subnet, in the same order.
    #[serde(default)]
    pub pod_subnets: Option<Vec<String>>,
    /// Nodes at the start. Required with `autoscaler: none`; with the
    /// Cluster Autoscaler the group's initial desired size (default
    /// `min_size`); with Karpenter nodes that exist at the start (default
    /// 0). 0 is valid.
    #[serde(default)]
    pub size: Option<u32>,
    /// Cluster Autoscaler: the group's minimum size (default 0).
    #[serde(default)]
    pub min_size: Option<u32>,
    /// Cluster Autoscaler: the group's maximum size; Karpenter: a limit on
    /// the pool's nodes (like a NodePool `limits`). Default: no limit.
    #[serde(default)]
    pub max_size: Option<u32>,
    /// Who sizes the pool: `none` (a fixed `size`), `karpenter`,
    /// `cluster_autoscaler`.
    #[serde(default)]
    pub autoscaler: Autoscaler,
    /// kubelet max pods; default: the max-pods calculator for the CNI
    /// settings, or for Karpenter pools Karpenter's own rule (the
    /// secondary-IP formula, blind to prefix delegation).
    #[serde(default)]
    pub max_pods: Option<u32>,
    #[serde(default)]
    pub capacity_type: CapacityType,
    /// Spot interruptions (with `capacity_type: spot`).
    #[serde(default)]
    pub spot: Option<RawSpot>,
    /// The Karpenter NodePool's settings (with `autoscaler: karpenter`).
    #[serde(default)]
    pub karpenter: Option<RawKarpenterPool>,
    /// Take over EKS nodes found in the pool's subnets' snapshots
    /// (`subnets[].from`).
    #[serde(default)]
    pub adopt: Option<RawAdopt>,
    /// Replace each node after this long (EC2 Auto Scaling's maximum
    /// instance lifetime): a new node launches, the old one is drained and
    /// terminated. Not with Karpenter (use `karpenter.expire_after`).
    #[serde(default)]
    pub max_lifetime: Option<Ms>,
}

/// `node_pools[].spot` as written.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSpot {
    /// A Spot Instance Advisor bucket (`<5%`, `5-10%`, `10-15%`, `15-20%`,
    /// `>20%`: the monthly fraction of instances interrupted; a bucket
    /// stands for its midpoint, `>20%` for 25%) or a monthly percentage
    /// (`7%`).
    pub interruption_rate: String,
    /// Interruptions of one instance type in one zone come together
    /// (default true).
    #[serde(default = "yes")]
    pub correlated: bool,
    /// Share of a zone's nodes of one type that a correlated event hits
    /// (default 0.5; not measured by the source: a knob).
    #[serde(default)]
    pub correlation_share: Option<f64>,
    /// A correlated event's notices arrive within this window (default 3m).
    #[serde(default)]
    pub correlation_window: Option<Ms>,
    /// What acts on the notice: `karpenter` (default for Karpenter pools),
    /// `node_termination_handler`, `none` (default for other pools).
    #[serde(default)]
    pub handler: Option<SpotHandler>,
    /// Notice to termination (default 2m).
    #[serde(default)]
    pub notice: Option<Ms>,
    /// Rebalance recommendations come this long before the notice, drawn
    /// uniformly between the two (default [10m, 20m]).
    #[serde(default)]
    pub rebalance_lead: Option<[Ms; 2]>,
    /// `node_termination_handler` only: cordon and drain on the rebalance
    /// recommendation (its `enableRebalanceDraining`; default false).
    #[serde(default)]
    pub rebalance_drain: bool,
}

fn yes() -> bool {
    true
}

/// `node_pools[].adopt` as written.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAdopt {
    /// Instance ids to adopt; default: every instance with a primary ENI
    /// (device index 0) in the pool's subnets' snapshots, less those
    /// another pool adopts by id.
    #[serde(default)]
    pub instances: Option<Vec<String>>,
    /// Only instances one of whose ENIs carries this tag, `key=value` (e.g.
    /// `eks:nodegroup-name=general`, `karpenter.sh/nodepool=default`).
    #[serde(default)]
    pub tag: Option<String>,
    /// Only instances one of whose ENIs' description starts with this
    /// (e.g. `aws-K8S-`, the CNI's ENIs).
    #[serde(default)]
    pub description_prefix: Option<String>,
    /// Pods running on each adopted node; default: estimated from its
    /// prefixes (or secondary addresses) and the warm targets.
    #[serde(default)]
    pub pods_per_node: Option<u32>,
    /// Requests of those pods (default 100m and 128Mi).
    #[serde(default)]
    pub pod_cpu: Option<String>,
    #[serde(default)]
    pub pod_memory: Option<String>,
}

/// `node_pools[].karpenter` as written (a NodePool's `disruption` and
/// prices).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawKarpenterPool {
    /// `available_ips` (Karpenter's rule, default) or `delegatable_blocks`
    /// (what-if: rank a zone's subnets by free /28 blocks).
    #[serde(default)]
    pub subnet_policy: SubnetPolicy,
    /// `WhenEmpty` or `WhenEmptyOrUnderutilized` (default).
    #[serde(default)]
    pub consolidation_policy: ConsolidationPolicy,
    /// A duration or `Never` (default 0s).
    #[serde(default)]
    pub consolidate_after: Option<String>,
    /// A duration or `Never` (default 720h).
    #[serde(default)]
    pub expire_after: Option<String>,
    /// Nodes that may be disrupting at once: a count or a percentage of the
    /// pool's nodes (default 10%).
    #[serde(default)]
    pub budget: Option<String>,
    /// Price per hour per instance type (e.g. `m5.large: 0.096`), for the
    /// cheapest fit; types without a price rank by vCPUs, then memory.
    #[serde(default)]
    pub prices: BTreeMap<String, f64>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawWorkload {
    pub name: String,
    pub replicas: u32,
    /// CPU request per pod: `250m`, `1`, `1.5`.
    #[serde(default = "default_cpu")]
    pub cpu: String,
    /// Memory request per pod: `512Mi`, `1Gi`, `1G`.
    #[serde(default = "default_mem")]
    pub memory: String,
    /// Only on this node pool's nodes.
    #[serde(default)]
    pub node_pool: Option<String>,
    /// Rolling restart of every replica this often.
    #[serde(default)]
    pub restart_every: Option<Ms>,
    /// When the workload is created (default at once).
    #[serde(default)]
    pub start: Option<Ms>,
    /// A HorizontalPodAutoscaler: the `spec` of an `autoscaling/v2`
    /// manifest (camelCase); `replicas` is the initial count.
    #[serde(default)]
    pub hpa: Option<hpa::RawHpa>,
    /// The workload's demand over time, per metric name (the HPA's Pods
    /// metrics; `cpu` in cores for a cpu Utilization metric).
    #[serde(default)]
    pub load: BTreeMap<String, Vec<hpa::RawLoadPart>>,
    /// Rolling updates (a new pod template rolled out with the Deployment's
    /// `maxSurge` and `maxUnavailable`), at given times or periodically.
    #[serde(default)]
    pub rollout: Option<RawRollout>,
    /// Security groups for pods (a SecurityGroupPolicy selects the pods):
    /// each pod gets a branch ENI with its own address, not one from a
    /// prefix. Needs `vpc_cni.enable_pod_eni: true`.
    #[serde(default)]
    pub security_groups: bool,
}

/// `workloads[].rollout` as written.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRollout {
    /// A count or a percentage (default `25%`, rounded up).
    #[serde(default)]
    pub max_surge: Option<String>,
    /// A count or a percentage (default `25%`, rounded down).
    #[serde(default)]
    pub max_unavailable: Option<String>,
    /// Rollouts at these times.
    #[serde(default)]
    pub at: Vec<Ms>,
    /// Rollouts every this long.
    #[serde(default)]
    pub every: Option<Ms>,
    /// A new pod counts as available this long after it is Running (the
    /// Deployment's `minReadySeconds`; the model starts containers at once,
    /// so put start-up and readiness time here). Default 0.
    #[serde(default)]
    pub min_ready: Option<Ms>,
}

/// `jobs[]` as written.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawJob {
    pub name: String,
    /// CPU request per pod.
    #[serde(default = "default_cpu")]
    pub cpu: String,
    /// Memory request per pod.
    #[serde(default = "default_mem")]
    pub memory: String,
    /// Only on this node pool's nodes.
    #[serde(default)]
    pub node_pool: Option<String>,
    /// A CronJob schedule (`*/15 * * * *`: minute and hour fields; the day
    /// fields must be `*`).
    #[serde(default)]
    pub schedule: Option<String>,
    /// Or: a job every this long.
    #[serde(default)]
    pub every: Option<Ms>,
    /// Or: jobs arriving at random, this many an hour on average.
    #[serde(default)]
    pub per_hour: Option<f64>,
    /// Pods per job (default 1).
    #[serde(default)]
    pub parallelism: Option<u32>,
    /// `[shortest, longest]` run time of a pod once Running (uniform).
    pub run_time: [Ms; 2],
    /// When arrivals begin (default at once).
    #[serde(default)]
    pub start: Option<Ms>,
}

fn default_cpu() -> String {
    "100m".into()
}

fn default_mem() -> String {
    "128Mi".into()
}

/// A validated scenario.
#[derive(Clone, Debug, Serialize)]
pub struct Scenario {
    pub name: String,
    pub description: Option<String>,
    pub seed: u64,
    pub duration: Ms,
    pub sample_every: Ms,
    /// See [`RawScenario::warmup`].
    pub warmup: Ms,
    pub cluster: ClusterSpec,
    /// Assertions for `subnetsim check`.
    pub expect: Expect,
    /// Notes worth telling the user (e.g. a CNI setting the CNI does not
    /// support, PD falling back on a Xen type).
    pub warnings: Vec<String>,
}

/// One problem in a scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// The field, as a path (`node_pools[1].instance_type`).
    pub field: String,
    pub message: String,
}

/// Why a scenario was refused: one or more problems in one file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ScenarioError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", self.file.display())?;
            if let Some(l) = p.line {
                write!(f, ":{l}")?;
                if let Some(c) = p.column {
                    write!(f, ":{c}")?;
                }
            }
            if p.field.is_empty() {
                write!(f, ": {}", p.message)?;
            } else {
                write!(f, ": {}: {}", p.field, p.message)?;
            }
        }
        Ok(())
    }
}

/// Collects problems with their positions.
struct Checker<'a> {
    text: &'a str,
    /// The scenario file: `from:` paths are relative to its folder.
    file: &'a FsPath,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn err(&mut self, path: &Path, message: impl Into<String>) {
        let pos = locate(self.text, path);
        self.problems.push(Problem {
            line: pos.map(|p| p.0),
            column: pos.map(|p| p.1),
            field: path.to_string(),
            message: message.into(),
        });
    }
}

fn one_of(valid: &[String]) -> String {
    if valid.is_empty() {
        "none is defined".to_string()
    } else {
        format!("valid: {}", valid.join(", "))
    }
}

/// Parses a CPU quantity into millicores: `250m`, `1`, `0.5`.
pub fn parse_cpu(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let bad = || format!("`{s}` is not a CPU quantity (e.g. 250m, 1, 1.5)");
    if let Some(m) = t.strip_suffix('m') {
        return m.parse::<u64>().map_err(|_| bad());
    }
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if frac.len() > 3 || int.is_empty() && frac.is_empty() {
        return Err(bad());
    }
    let i: u64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| bad())?
    };
    let f: u64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<3}").parse().map_err(|_| bad())?
    };
    i.checked_mul(1000)
        .and_then(|v| v.checked_add(f))
        .ok_or_else(bad)
}

/// Parses a memory quantity into MiB: `512Mi`, `1Gi`, `1G`, `500M`.
pub fn parse_memory(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let bad = || format!("`{s}` is not a memory quantity (e.g. 128Mi, 1Gi, 512M)");
    let units: [(&str, f64); 6] = [
        ("Ki", 1.0 / 1024.0),
        ("Mi", 1.0),
        ("Gi", 1024.0),
        ("K", 1000.0 / 1_048_576.0),
        ("M", 1_000_000.0 / 1_048_576.0),
        ("G", 1_000_000_000.0 / 1_048_576.0),
    ];
    for (u, mult) in units {
        if let Some(n) = t.strip_suffix(u) {
            let v: u64 = n.parse().map_err(|_| bad())?;
            return Ok((v as f64 * mult).ceil() as u64);
        }
    }
    Err(bad())
}

/// Reads and validates a scenario file.
pub fn load(path: &FsPath) -> Result<Scenario, ScenarioError> {
    let text = read_text(path)?;
    parse(&text, path)
}

/// serde's words for types, in the words of the scenario reference.
fn humanize(msg: &str) -> String {
    const NAMES: [(&str, &str); 12] = [
        (
            "struct RawScenario",
            "a scenario (a map of fields: name, duration, subnets, node_pools, ...)",
        ),
        ("struct RawSubnet", "a subnet (a map with name, cidr, zone)"),
        (
            "struct RawNodePool",
            "a node pool (a map with name, instance_type, subnets, size)",
        ),
        (
            "struct RawWorkload",
            "a workload (a map with name, replicas)",
        ),
        (
            "struct RawReservation",
            "a reservation (a map with cidr and type)",
        ),
        (
            "struct RawConsumer",
            "a consumer group (a map with kind and count)",
        ),
        ("struct CniConfig", "the vpc_cni settings (a map)"),
        ("struct Ec2Config", "the ec2 settings (a map)"),
        ("struct KubeletConfig", "the kubelet settings (a map)"),
        ("struct NodeTiming", "the nodes settings (a map)"),
        ("struct SchedulerConfig", "the scheduler settings (a map)"),
        (
            "struct InstanceType",
            "an instance type (a map with instance_type, enis, ipv4_per_eni, hypervisor)",
        ),
    ];
    let mut m = msg.to_string();
    for (from, to) in NAMES {
        m = m.replace(from, to);
    }
    m.replace(
        "expected a sequence",
        "expected a list (`- item` lines, or [a, b])",
    )
    .replace(
        "expected u32",
        "expected a whole number from 0 to 4294967295",
    )
    .replace(
        "expected u64",
        "expected a whole number from 0 to 18446744073709551615",
    )
    .replace("expected a borrowed string", "expected a string")
}

/// The line of the second `key:` at the indentation of its first: where a
/// duplicate key is (serde_yaml reports the map that holds it).
fn duplicate_line(text: &str, key: &str) -> Option<usize> {
    let mut first_indent: Option<usize> = None;
    for (i, line) in text.lines().enumerate() {
        let body = line.trim_start_matches([' ', '-']);
        let indent = line.len() - body.len();
        let k = body
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches(['"', '\'']);
        if k == key && body.contains(':') {
            match first_indent {
                None => first_indent = Some(indent),
                Some(f) if f == indent => return Some(i + 1),
                _ => {}
            }
        }
    }
    None
}

/// Validates scenario text; `file` names it in errors.
pub fn parse(text: &str, file: &FsPath) -> Result<Scenario, ScenarioError> {
    precheck(text).map_err(|p| ScenarioError {
        file: file.to_path_buf(),
        problems: vec![p],
    })?;
    let raw: RawScenario = serde_yaml::from_str(text).map_err(|e| {
        let loc = e.location();
        // serde_yaml prefixes the field path, then appends the position.
        let msg = e.to_string();
        let msg = match msg.rfind(" at line ") {
            Some(i) => msg[..i].to_string(),
            None => msg,
        };
        let (field, message) = split_serde_message(&msg);
        let mut line = loc.as_ref().map(|l| l.line());
        let mut column = loc.as_ref().map(|l| l.column());
        let dup = message
            .strip_prefix("duplicate field `")
            .or_else(|| message.strip_prefix("duplicate entry with key \""))
            .and_then(|r| r.split(['`', '"']).next());
        if let Some(l) = dup.and_then(|k| duplicate_line(text, k)) {
            line = Some(l);
            column = None;
        }
        ScenarioError {
            file: file.to_path_buf(),
            problems: vec![Problem {
                line,
                column,
                field,
                message,
            }],
        }
    })?;
    resolve_in(raw, text, file).map_err(|problems| ScenarioError {
        file: file.to_path_buf(),
        problems,
    })
}

/// serde's `path: message` split into the field and the message in the
/// user's words.
fn split_serde_message(msg: &str) -> (String, String) {
    match msg.split_once(": ") {
        Some((f, m)) if !f.contains(' ') => (f.to_string(), humanize(m)),
        _ => (String::new(), humanize(msg)),
    }
}

/// Resolves a raw scenario, locating problems in `text`.
fn resolve_in(raw: RawScenario, text: &str, file: &FsPath) -> Result<Scenario, Vec<Problem>> {
    let mut c = Checker {
        text,
        file,
        problems: Vec::new(),
    };
    let scenario = resolve(raw, &mut c);
    if c.problems.is_empty() {
        Ok(scenario.expect("no problems, so resolved"))
    } else {
        Err(c.problems)
    }
}

/// Validates a scenario built as a YAML value (a variant merged over the
/// base, or `--set` overrides applied). `text` is the file it came from:
/// problems are located there where the field is written in the base, else
/// at `fallback_line` (the variant's entry); `label` (e.g. "variant
/// `slash-22`") prefixes each problem's field.
pub fn from_value(
    value: serde_yaml::Value,
    text: &str,
    file: &FsPath,
    label: &str,
    fallback_line: Option<usize>,
) -> Result<Scenario, ScenarioError> {
    let raw: RawScenario = serde_yaml::from_value(value).map_err(|e| {
        let (field, message) = split_serde_message(&e.to_string());
        ScenarioError {
            file: file.to_path_buf(),
            problems: vec![Problem {
                line: fallback_line,
                column: None,
                field: if field.is_empty() {
                    label.to_string()
                } else {
                    format!("{label}: {field}")
                },
                message,
            }],
        }
    })?;
    let mut problems = match resolve_in(raw, text, file) {
        Ok(scenario) => return Ok(scenario),
        Err(p) => p,
    };
    // The base validated on its own: a problem here comes from what the
    // variant (or --set) changed, so it is reported at the variant's entry
    // when there is one.
    for p in &mut problems {
        p.field = format!("{label}: {}", p.field);
        if fallback_line.is_some() {
            p.line = fallback_line;
            p.column = None;
        }
    }
    Err(ScenarioError {
        file: file.to_path_buf(),
        problems,
    })
}

/// Reads a scenario file as text (size and UTF-8 checked).
pub fn read_text(path: &FsPath) -> Result<String, ScenarioError> {
    let one = |line: Option<usize>, message: String| ScenarioError {
        file: path.to_path_buf(),
        problems: vec![Problem {
            line,
            column: None,
            field: String::new(),
            message,
        }],
    };
    let bytes = std::fs::read(path).map_err(|e| one(None, format!("cannot read: {e}")))?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(one(
            None,
            format!("the file is over {} MiB", MAX_FILE_BYTES >> 20),
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        one(
            Some(line),
            format!(
                "not UTF-8 text: invalid byte 0x{:02x} at byte offset {at}",
                bytes[at]
            ),
        )
    })
}

/// Where a path is written in `text` (line), if it is.
pub fn line_of(text: &str, path: &Path) -> Option<usize> {
    locate(text, path).map(|p| p.0)
}

fn check_unique<'a>(c: &mut Checker, what: &str, names: impl Iterator<Item = &'a str>) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, n) in names.enumerate() {
        let path = Path::default().key(what).index(i).key("name");
        if n.is_empty() {
            c.err(&path, "must not be empty");
        } else if n.len() > MAX_NAME {
            c.err(&path, format!("longer than {MAX_NAME} characters"));
        }
        if let Some(first) = seen.insert(n, i) {
            c.err(
                &path,
                format!("`{n}` is already the name of {what}[{first}]; names must be unique"),
            );
        }
    }
}

fn resolve(raw: RawScenario, c: &mut Checker) -> Option<Scenario> {
    let root = Path::default();
    for (field, msg) in check_timing(raw.duration, raw.sample_every, raw.warmup) {
        c.err(&root.key(field), msg);
    }
    for (field, msg) in raw.vpc_cni.check() {
        c.err(&root.key("vpc_cni").key(field), msg);
    }
    if !is_identifier(&raw.name) {
        c.err(&root.key("name"), NAME_RULE);
    }
    if raw.nodes.boot_min > raw.nodes.boot_median || raw.nodes.boot_median > raw.nodes.boot_max {
        c.err(
            &root.key("nodes"),
            "needs boot_min <= boot_median <= boot_max",
        );
    }
    if raw.kubelet.retry_base == Ms::ZERO || raw.kubelet.retry_base > raw.kubelet.retry_max {
        c.err(&root.key("kubelet"), "needs 0 < retry_base <= retry_max");
    }
    // Periods after which something is tried again: zero would repeat it
    // forever within one millisecond.
    for (section, field, value) in [
        ("nodes", "launch_retry", raw.nodes.launch_retry),
        (
            "karpenter",
            "disruption_poll",
            raw.karpenter.disruption_poll,
        ),
        (
            "karpenter",
            "registration_timeout",
            raw.karpenter.registration_timeout,
        ),
        (
            "cluster_autoscaler",
            "scan_interval",
            raw.cluster_autoscaler.scan_interval,
        ),
    ] {
        if value == Ms::ZERO {
            c.err(
                &root.key(section).key(field),
                "must be more than 0 (e.g. 10s)",
            );
        }
    }

    // Catalogue with the scenario's own types.
    let mut catalog = Catalog::embedded().clone();
    for (i, t) in raw.instance_types.iter().enumerate() {
        let p = root.key("instance_types").index(i);
        if t.enis == 0 || t.ipv4_per_eni < 2 || t.enis > 64 || t.ipv4_per_eni > 64 {
            c.err(
                &p,
                "needs 1 <= enis <= 64 and 2 <= ipv4_per_eni <= 64 (the largest real types have 15 and 50)",
            );
        }
        catalog.insert(t.clone());
    }

    // Subnets.
    check_unique(c, "subnets", raw.subnets.iter().map(|s| s.name.as_str()));
    if raw.subnets.is_empty() {
        c.err(&root.key("subnets"), "at least one subnet is needed");
    }
    let mut subnets = Vec::new();
    let mut cidrs: Vec<(usize, Ipv4Net)> = Vec::new();
    // Snapshots first: they may give a subnet's CIDR and zone.
    let snapshots: Vec<Option<Loaded>> = raw
        .subnets
        .iter()
        .enumerate()
        .map(|(i, s)| load_snapshot(s, &root.key("subnets").index(i), c))
        .collect();
    let cidr_text: Vec<Option<String>> = raw
        .subnets
        .iter()
        .zip(&snapshots)
        .map(|(s, l)| {
            s.cidr
                .clone()
                .or_else(|| l.as_ref().map(|l| l.cidr.to_string()))
        })
        .collect();
    // Usable addresses per subnet as written (None when its CIDR is
    // invalid: that is reported once, not again through the pools).
    let usable_of: Vec<Option<u64>> = cidr_text
        .iter()
        .map(|s| {
            s.as_deref()?
                .parse::<Ipv4Net>()
                .ok()
                .filter(|n| n.trunc() == *n && (16..=28).contains(&n.prefix_len()))
                .map(|n| (1u64 << (32 - n.prefix_len())).saturating_sub(5))
        })
        .collect();
    for (i, s) in raw.subnets.iter().enumerate() {
        let p = root.key("subnets").index(i);
        let Some(text) = cidr_text[i].clone() else {
            if s.from.is_none() {
                c.err(
                    &p.key("cidr"),
                    "missing: give the subnet's CIDR (or take it from from.subnet)",
                );
            }
            continue;
        };
        let loaded = snapshots[i].as_ref();
        if s.from.is_some() && loaded.is_none() {
            continue; // the snapshot's problem is reported
        }
        let zone = match (&s.zone, loaded.and_then(|l| l.zone.clone())) {
            (Some(z), Some(f)) if *z != f => {
                c.err(&p.key("zone"), format!("`{z}`, but from.subnet says {f}"));
                continue;
            }
            (Some(z), _) => z.clone(),
            (None, Some(f)) => f,
            (None, None) => {
                c.err(
                    &p.key("zone"),
                    "missing: give the subnet's availability zone",
                );
                continue;
            }
        };
        let cidr = match text.parse::<Ipv4Net>() {
            Ok(n) if n.trunc() != n => {
                c.err(
                    &p.key("cidr"),
                    format!("`{text}` has host bits set; write {}", n.trunc()),
                );
                continue;
            }
            Ok(n) => n,
            Err(_) => {
                c.err(
                    &p.key("cidr"),
                    format!("`{text}` is not an IPv4 CIDR (e.g. 10.0.0.0/22)"),
                );
                continue;
            }
        };
        if let Some(l) = loaded {
            if l.cidr != cidr {
                c.err(
                    &p.key("cidr"),
                    format!("{cidr}, but the snapshot's subnet is {}", l.cidr),
                );
                continue;
            }
        }
        for &(j, other) in &cidrs {
            if other.contains(&cidr.network()) || cidr.contains(&other.network()) {
                c.err(
                    &p.key("cidr"),
                    format!("{cidr} overlaps subnets[{j}] ({other})"),
                );
            }
        }
        cidrs.push((i, cidr));
        let mut reservations: Vec<Reservation> =
            loaded.map(|l| l.reservations.clone()).unwrap_or_default();
        let mut bad = false;
        for (j, r) in s.reservations.iter().enumerate() {
            match r.cidr.parse::<Ipv4Net>() {
                Ok(n) => reservations.push(Reservation {
                    cidr: n,
                    kind: r.kind,
                }),
                Err(_) => {
                    bad = true;
                    c.err(
                        &p.key("reservations").index(j).key("cidr"),
                        format!("`{}` is not an IPv4 CIDR", r.cidr),
                    );
                }
            }
        }
        if !bad {
            if let Err(e) = Subnet::new(cidr, reservations.clone()) {
                c.err(
                    &p.key(if s.reservations.is_empty() {
                        "cidr"
                    } else {
                        "reservations"
                    }),
                    e.to_string(),
                );
            }
        }
        let usable = (1u64 << (32 - cidr.prefix_len())).saturating_sub(5);
        let consumers = s
            .consumers
            .iter()
            .enumerate()
            .filter_map(|(j, k)| {
                if u64::from(k.count) > usable {
                    c.err(
                        &p.key("consumers").index(j).key("count"),
                        format!(
                            "{} ENIs cannot fit in {cidr} ({usable} usable addresses); at most {usable}",
                            k.count
                        ),
                    );
                    return None;
                }
                if k.churn_every == Some(Ms::ZERO) {
                    c.err(
                        &p.key("consumers").index(j).key("churn_every"),
                        "must be more than 0 or omitted",
                    );
                    return None;
                }
                Some(ConsumerSpec {
                    kind: k.kind,
                    count: k.count,
                    churn_every: k.churn_every,
                    existing: false,
                })
            })
            .collect();
        let mut consumers: Vec<ConsumerSpec> = consumers;
        for (j, ch) in s.from.iter().flat_map(|f| f.churn.iter()).enumerate() {
            if ch.every == Ms::ZERO {
                c.err(
                    &p.key("from").key("churn").index(j).key("every"),
                    "more than 0",
                );
                continue;
            }
            consumers.push(ConsumerSpec {
                kind: ch.kind,
                count: 0,
                churn_every: Some(ch.every),
                existing: true,
            });
        }
        subnets.push(SubnetSpec {
            name: s.name.clone(),
            cidr,
            zone,
            reservations,
            consumers,
            tags: s.tags.clone(),
            snapshot: loaded.map(|l| l.snapshot.clone()),
        });
    }
    let subnet_names: Vec<String> = raw.subnets.iter().map(|s| s.name.clone()).collect();
    let find_subnet = |c: &mut Checker, path: &Path, name: &str| -> Option<usize> {
        let hit = subnet_names.iter().position(|n| n == name);
        if hit.is_none() {
            let near = nearest_names(name, subnet_names.iter().map(String::as_str), 3);
            c.err(path, format!("no subnet named `{name}`; {}", one_of(&near)));
        }
        hit
    };

    // Node pools.
    check_unique(
        c,
        "node_pools",
        raw.node_pools.iter().map(|p| p.name.as_str()),
    );
    let mut warnings = Vec::new();
    let mut pools = Vec::new();
    for (i, np) in raw.node_pools.iter().enumerate() {
        let p = root.key("node_pools").index(i);
        let types = match pool_types(np, &catalog, &p, c) {
            Some(t) => t,
            None => continue,
        };
        let t = types[0].clone();
        if np.subnets.is_empty() {
            c.err(
                &p.key("subnets"),
                format!("at least one subnet; {}", one_of(&subnet_names)),
            );
        }
        let sn: Vec<Option<usize>> = np
            .subnets
            .iter()
            .enumerate()
            .map(|(j, n)| find_subnet(c, &p.key("subnets").index(j), n))
            .collect();
        let pod_sn: Vec<Option<usize>> = match (&np.pod_subnets, raw.vpc_cni.custom_networking) {
            (Some(ps), true) => {
                if ps.len() != np.subnets.len() {
                    c.err(
                        &p.key("pod_subnets"),
                        format!(
                            "{} pod subnets for {} node subnets: give one ENIConfig subnet per node subnet, in order",
                            ps.len(),
                            np.subnets.len()
                        ),
                    );
                }
                ps.iter()
                    .enumerate()
                    .map(|(j, n)| find_subnet(c, &p.key("pod_subnets").index(j), n))
                    .collect()
            }
            (None, true) => {
                c.err(
                    &p.key("pod_subnets"),
                    "vpc_cni.custom_networking is on: give the ENIConfig subnet for each node subnet",
                );
                vec![]
            }
            (Some(_), false) => {
                c.err(
                    &p.key("pod_subnets"),
                    "only used with vpc_cni.custom_networking: true",
                );
                vec![]
            }
            (None, false) => sn.clone(),
        };
        if np.max_lifetime == Some(Ms::ZERO) {
            c.err(&p.key("max_lifetime"), "must be more than 0 or omitted");
        }
        let pd = raw.vpc_cni.prefix_delegation && t.supports_prefix_delegation();
        if raw.vpc_cni.prefix_delegation && !pd {
            warnings.push(format!(
                "node_pools[{i}] ({}): {} is not Nitro or bare metal; the CNI falls back to secondary-IP mode",
                np.name, t.name
            ));
        }
        let mut pool_types = Vec::new();
        for (k, t) in types.iter().enumerate() {
            let field = if np.instance_types.is_some() {
                p.key("instance_types").index(k)
            } else {
                p.key("instance_type")
            };
            let mp = match np.max_pods {
                Some(0) => {
                    c.err(&p.key("max_pods"), "must be at least 1");
                    None
                }
                Some(m) if m > MAX_MAX_PODS => {
                    c.err(
                        &p.key("max_pods"),
                        format!("{m} is more than any kubelet runs; at most {MAX_MAX_PODS}"),
                    );
                    None
                }
                Some(m) => Some(m),
                // Karpenter's own rule, blind to prefix delegation
                // (karpenter-provider-aws instancetype/types.go `pods`).
                None if np.autoscaler == Autoscaler::Karpenter => Some(t.eni_max_pods()),
                None => match max_pods(t, &raw.vpc_cni.max_pods_query()) {
                    Ok(r) => Some(r.max_pods),
                    Err(e) => {
                        c.err(&p.key("max_pods"), format!("{e}; set max_pods"));
                        None
                    }
                },
            };
            if t.allocatable_cpu_millis.is_none() || t.allocatable_memory_mib.is_none() {
                c.err(
                    &field,
                    format!(
                        "{} has no allocatable CPU/memory in the catalogue; define it under instance_types",
                        t.name
                    ),
                );
                continue;
            }
            let price = np.karpenter.as_ref().and_then(|k| k.prices.get(&t.name));
            let price = match price {
                Some(&v) if v.is_finite() && v > 0.0 && v < 1e6 => Some((v * 1e6).round() as u64),
                Some(v) => {
                    c.err(
                        &p.key("karpenter").key("prices").key(&t.name),
                        format!("{v}: a price per hour above 0 and below 1000000"),
                    );
                    None
                }
                None => None,
            };
            if let Some(mp) = mp {
                pool_types.push(PoolType {
                    instance: t.clone(),
                    max_pods: mp,
                    price,
                });
            }
        }
        if pool_types.len() != types.len() {
            continue;
        }
        if let Some(k) = &np.karpenter {
            for name in k.prices.keys() {
                if !types.iter().any(|t| &t.name == name) {
                    c.err(
                        &p.key("karpenter").key("prices").key(name),
                        format!(
                            "`{name}` is not one of the pool's instance_types; {}",
                            one_of(&types.iter().map(|t| t.name.clone()).collect::<Vec<_>>())
                        ),
                    );
                }
            }
        }
        // Cheapest first: priced types by price, then unpriced by size.
        pool_types.sort_by(|a, b| {
            let key = |t: &PoolType| {
                (
                    t.price.is_none(),
                    t.price.unwrap_or(0),
                    t.instance.vcpu,
                    t.instance.memory_mib,
                    t.instance.name.clone(),
                )
            };
            key(a).cmp(&key(b))
        });
        let Some(sizes) = pool_sizes(np, &p, c) else {
            continue;
        };
        let (Ok(spot), Ok(karpenter)) = (pool_spot(np, &p, c), pool_karpenter(np, &p, c)) else {
            continue;
        };
        if sn.iter().any(Option::is_none) || pod_sn.iter().any(Option::is_none) {
            continue;
        }
        let subnets_ix: Vec<usize> = sn.into_iter().flatten().collect();
        // Each node takes at least its primary address.
        let room: Option<u64> = subnets_ix.iter().map(|&k| usable_of[k]).sum();
        if let Some(room) = room.filter(|&r| u64::from(sizes.0) > r) {
            c.err(
                &p.key("size"),
                format!(
                    "{} nodes cannot fit in the pool's subnets ({room} usable addresses, one per node at the least); at most {room}",
                    sizes.0
                ),
            );
            continue;
        }
        let pod_ix: Vec<usize> = pod_sn.into_iter().flatten().collect();
        pools.push(PoolSpec {
            name: np.name.clone(),
            pod_subnets: if pod_ix.len() == subnets_ix.len() {
                pod_ix
            } else {
                subnets_ix.clone()
            },
            subnets: subnets_ix,
            types: pool_types,
            size: sizes.0,
            min_size: sizes.1,
            max_size: sizes.2,
            autoscaler: np.autoscaler,
            capacity_type: np.capacity_type,
            spot,
            karpenter,
            adopted: Vec::new(),
            adopted_workload: None,
            max_lifetime: np.max_lifetime,
        });
    }
    if raw.node_pools.is_empty() {
        c.err(&root.key("node_pools"), "at least one node pool is needed");
    }

    // Workloads.
    check_unique(
        c,
        "workloads",
        raw.workloads.iter().map(|w| w.name.as_str()),
    );
    let pool_names: Vec<String> = raw.node_pools.iter().map(|p| p.name.clone()).collect();
    let mut workloads = Vec::new();
    for (i, w) in raw.workloads.iter().enumerate() {
        let p = root.key("workloads").index(i);
        let cpu = parse_cpu(&w.cpu).map_err(|m| c.err(&p.key("cpu"), m)).ok();
        let mem = parse_memory(&w.memory)
            .map_err(|m| c.err(&p.key("memory"), m))
            .ok();
        let pool = node_pool(w.node_pool.as_deref(), &pool_names, &p, c);
        if w.replicas > MAX_REPLICAS {
            c.err(
                &p.key("replicas"),
                format!(
                    "{} is more than subnetsim simulates; at most {MAX_REPLICAS}",
                    w.replicas
                ),
            );
        }
        if w.restart_every == Some(Ms::ZERO) {
            c.err(&p.key("restart_every"), "must be more than 0 or omitted");
        }
        let (hpa, load) =
            hpa::resolve(w.hpa.as_ref(), &w.load, w.replicas, cpu.unwrap_or(0), &p, c);
        let rollout = w
            .rollout
            .as_ref()
            .and_then(|r| resolve_rollout(r, &p.key("rollout"), c));
        if w.security_groups && !raw.vpc_cni.enable_pod_eni {
            c.err(
                &p.key("security_groups"),
                "needs vpc_cni.enable_pod_eni: true (ENABLE_POD_ENI), or the pods never get a branch ENI",
            );
        }
        if let (Some(cpu), Some(mem), Some(pool)) = (cpu, mem, pool) {
            workloads.push(WorkloadSpec {
                hpa,
                load,
                job: None,
                rollout,
                security_groups: w.security_groups,
                name: w.name.clone(),
                replicas: w.replicas,
                cpu_millis: cpu,
                memory_mib: mem,
                pool,
                restart_every: w.restart_every,
                start: w.start.unwrap_or(Ms::ZERO),
                preplaced: false,
            });
        }
    }
    resolve_jobs(&raw, &pool_names, &mut workloads, c);
    resolve_adoption(&raw, &subnets, &mut pools, &mut workloads, c);
    let expect = resolve_expect(&raw.expect, &subnet_names, c);
    if !c.problems.is_empty() {
        return None;
    }
    let mut cni_warnings = raw.vpc_cni.warnings(raw.vpc_cni.prefix_delegation);
    warnings.append(&mut cni_warnings);
    Some(Scenario {
        name: raw.name,
        description: raw.description,
        seed: raw.seed,
        duration: raw.duration,
        sample_every: raw.sample_every,
        warmup: raw.warmup,
        expect,
        cluster: ClusterSpec {
            cni: raw.vpc_cni,
            ec2: raw.ec2,
            kubelet: raw.kubelet,
            nodes: raw.nodes,
            scheduler: raw.scheduler,
            karpenter: raw.karpenter,
            cluster_autoscaler: raw.cluster_autoscaler,
            subnets,
            pools,
            workloads,
        },
        warnings,
    })
}

fn resolve_rollout(r: &RawRollout, p: &Path, c: &mut Checker) -> Option<RolloutSpec> {
    let parse = |t: &str| -> Result<IntOrPercent, String> {
        let t = t.trim();
        match t.strip_suffix('%') {
            Some(x) => x
                .parse()
                .ok()
                .filter(|&v: &u32| v <= 100)
                .map(IntOrPercent::Percent)
                .ok_or(format!("`{t}`: a percentage from 0% to 100%, or a count")),
            None => t
                .parse()
                .map(IntOrPercent::Count)
                .map_err(|_| format!("`{t}`: a count like 2 or a percentage like 25%")),
        }
    };
    let surge = parse(r.max_surge.as_deref().unwrap_or("25%"))
        .map_err(|m| c.err(&p.key("max_surge"), m))
        .ok()?;
    let unav = parse(r.max_unavailable.as_deref().unwrap_or("25%"))
        .map_err(|m| c.err(&p.key("max_unavailable"), m))
        .ok()?;
    let zero = |x: IntOrPercent| matches!(x, IntOrPercent::Count(0) | IntOrPercent::Percent(0));
    if zero(surge) && zero(unav) {
        c.err(
            &p.key("max_unavailable"),
            "max_surge and max_unavailable may not both be 0 (the rollout could not progress)",
        );
        return None;
    }
    if r.every == Some(Ms::ZERO) {
        c.err(&p.key("every"), "more than 0");
        return None;
    }
    if r.at.is_empty() && r.every.is_none() {
        c.err(p, "give `at` (times) or `every` (a period)");
        return None;
    }
    Some(RolloutSpec {
        max_surge: surge,
        max_unavailable: unav,
        at: r.at.clone(),
        every: r.every,
        min_ready: r.min_ready.unwrap_or(Ms::ZERO),
    })
}

/// A workload's or job's `node_pool`: `Some(None)` for any pool,
/// `Some(Some(i))` for pool `i`, `None` (reported) for an unknown name.
fn node_pool(
    name: Option<&str>,
    pool_names: &[String],
    p: &Path,
    c: &mut Checker,
) -> Option<Option<usize>> {
    let Some(n) = name else {
        return Some(None);
    };
    match pool_names.iter().position(|x| x == n) {
        Some(ix) => Some(Some(ix)),
        None => {
            let near = nearest_names(n, pool_names.iter().map(String::as_str), 3);
            c.err(
                &p.key("node_pool"),
                format!("no node pool named `{n}`; {}", one_of(&near)),
            );
            None
        }
    }
}

/// `jobs[]` into workloads with a job template.
fn resolve_jobs(
    raw: &RawScenario,
    pool_names: &[String],
    workloads: &mut Vec<WorkloadSpec>,
    c: &mut Checker,
) {
    let root = Path::default();
    for (i, j) in raw.jobs.iter().enumerate() {
        let p = root.key("jobs").index(i);
        if let Some(k) = raw.workloads.iter().position(|w| w.name == j.name) {
            c.err(
                &p.key("name"),
                format!(
                    "`{}` is already the name of workloads[{k}]; names must be unique",
                    j.name
                ),
            );
        }
        if let Some(k) = raw.jobs[..i].iter().position(|x| x.name == j.name) {
            c.err(
                &p.key("name"),
                format!(
                    "`{}` is already the name of jobs[{k}]; names must be unique",
                    j.name
                ),
            );
        }
        let cpu = parse_cpu(&j.cpu).map_err(|m| c.err(&p.key("cpu"), m)).ok();
        let mem = parse_memory(&j.memory)
            .map_err(|m| c.err(&p.key("memory"), m))
            .ok();
        let pool = node_pool(j.node_pool.as_deref(), pool_names, &p, c);
        let arrivals = match (&j.schedule, j.every, j.per_hour) {
            (Some(s), None, None) => parse_cron(s).map_err(|m| c.err(&p.key("schedule"), m)).ok(),
            (None, Some(e), None) if e > Ms::ZERO => Some(Arrivals::Every(e)),
            (None, Some(_), None) => {
                c.err(&p.key("every"), "more than 0");
                None
            }
            (None, None, Some(r)) if r.is_finite() && r > 0.0 && r <= 1e7 => {
                Some(Arrivals::PerHour(r))
            }
            (None, None, Some(r)) => {
                c.err(
                    &p.key("per_hour"),
                    format!("{r}: above 0 and at most 10000000"),
                );
                None
            }
            _ => {
                c.err(
                    &p,
                    "give exactly one of schedule (cron), every (a period) or per_hour (a Poisson rate)",
                );
                None
            }
        };
        let parallelism = j.parallelism.unwrap_or(1);
        if parallelism == 0 || parallelism > MAX_REPLICAS {
            c.err(
                &p.key("parallelism"),
                format!("between 1 and {MAX_REPLICAS}"),
            );
            continue;
        }
        if j.run_time[0] > j.run_time[1] || j.run_time[1] == Ms::ZERO {
            c.err(
                &p.key("run_time"),
                "[shortest, longest], longest more than 0",
            );
            continue;
        }
        if let (Some(cpu), Some(mem), Some(pool), Some(arrivals)) = (cpu, mem, pool, arrivals) {
            workloads.push(WorkloadSpec {
                name: j.name.clone(),
                replicas: 0,
                cpu_millis: cpu,
                memory_mib: mem,
                pool,
                restart_every: None,
                start: j.start.unwrap_or(Ms::ZERO),
                preplaced: false,
                hpa: None,
                load: Vec::new(),
                rollout: None,
                security_groups: false,
                job: Some(JobSpec {
                    arrivals,
                    parallelism,
                    run_time: (j.run_time[0], j.run_time[1]),
                }),
            });
        }
    }
}

/// A cron schedule's minute and hour fields (`*`, `*/n`, `a`, `a-b`,
/// `a,b`); the day-of-month, month and day-of-week fields must be `*`.
fn parse_cron(s: &str) -> Result<Arrivals, String> {
    let f: Vec<&str> = s.split_whitespace().collect();
    if f.len() != 5 {
        return Err(format!(
            "`{s}`: five fields, minute hour day month weekday (e.g. */15 * * * *)"
        ));
    }
    if f[2..].iter().any(|x| *x != "*") {
        return Err(format!(
            "`{s}`: only the minute and hour fields are modelled; the day, month and weekday fields must be *"
        ));
    }
    let field = |t: &str, max: u32| -> Result<Vec<u32>, String> {
        let mut out = Vec::new();
        for part in t.split(',') {
            let (range, step) = match part.split_once('/') {
                Some((r, st)) => (
                    r,
                    st.parse::<u32>()
                        .ok()
                        .filter(|&x| x > 0)
                        .ok_or(format!("`{part}`: a step like */15"))?,
                ),
                None => (part, 1),
            };
            let (lo, hi) = if range == "*" {
                (0, max)
            } else if let Some((a, b)) = range.split_once('-') {
                (
                    a.parse().map_err(|_| format!("`{part}`"))?,
                    b.parse().map_err(|_| format!("`{part}`"))?,
                )
            } else {
                let v: u32 = range
                    .parse()
                    .map_err(|_| format!("`{part}` is not a number"))?;
                (v, if step > 1 { max } else { v })
            };
            if lo > hi || hi > max {
                return Err(format!("`{part}`: between 0 and {max}"));
            }
            out.extend((lo..=hi).step_by(step as usize));
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    };
    Ok(Arrivals::Cron {
        minutes: field(f[0], 59).map_err(|m| format!("minute field: {m}"))?,
        hours: field(f[1], 23).map_err(|m| format!("hour field: {m}"))?,
    })
}

/// A subnet's snapshot, loaded and validated.
struct Loaded {
    cidr: Ipv4Net,
    zone: Option<String>,
    reservations: Vec<Reservation>,
    snapshot: SnapshotSpec,
}

/// Loads `subnets[i].from` with the checks `inspect` makes (addresses in
/// the subnet, no overlaps, aligned /28 prefixes), naming the file and the
/// JSON path of a problem.
fn load_snapshot(s: &RawSubnet, p: &Path, c: &mut Checker) -> Option<Loaded> {
    let from = s.from.as_ref()?;
    let fp = p.key("from");
    let dir = c.file.parent().unwrap_or(FsPath::new(""));
    let at = |f: &str| dir.join(f);
    let subnet_file = from.subnet.as_ref().map(|f| at(f));
    let enis_file = at(&from.network_interfaces);
    let res_file = from.reservations.as_ref().map(|f| at(f));
    let source = match (&subnet_file, &s.cidr) {
        (Some(f), _) => inspect::SubnetSource::File(f, from.subnet_id.as_deref()),
        (None, Some(cidr)) => match cidr.parse::<Ipv4Net>() {
            Ok(n) => inspect::SubnetSource::Cidr(n, from.subnet_id.as_deref()),
            Err(_) => return None, // reported with the CIDR
        },
        (None, None) => {
            c.err(
                &fp.key("subnet"),
                "missing: give from.subnet (describe-subnets output) or the subnet's cidr",
            );
            return None;
        }
    };
    let loaded = match inspect::load(source, &enis_file, res_file.as_deref()) {
        Ok(l) => l,
        Err(e) => {
            let field = match &e {
                inspect::InspectError::Arg { .. } => p.key("cidr"),
                _ => {
                    let msg = e.to_string();
                    if subnet_file
                        .as_ref()
                        .is_some_and(|f| msg.starts_with(&f.display().to_string()))
                    {
                        fp.key("subnet")
                    } else if res_file
                        .as_ref()
                        .is_some_and(|f| msg.starts_with(&f.display().to_string()))
                    {
                        fp.key("reservations")
                    } else {
                        fp.key("network_interfaces")
                    }
                }
            };
            c.err(&field, e.to_string());
            return None;
        }
    };
    let ec2 = &loaded.ec2;
    let enis = loaded
        .enis
        .iter()
        .map(|m| {
            let info = ec2.eni(m.eni);
            SnapshotEni {
                id: m.id.clone(),
                kind: m.kind,
                instance_id: m.instance_id.clone(),
                device_index: m.device_index,
                description: m.description.clone(),
                tags: m.tags.clone(),
                primary: info.primary,
                secondary: info.secondary.clone(),
                prefixes: info.prefixes.clone(),
            }
        })
        .collect();
    let sub = ec2.subnet(loaded.subnet);
    let files: Vec<String> = [subnet_file.as_ref(), Some(&enis_file), res_file.as_ref()]
        .into_iter()
        .flatten()
        .map(|f| f.display().to_string())
        .collect();
    Some(Loaded {
        cidr: loaded.meta.cidr,
        zone: loaded.meta.availability_zone.clone(),
        reservations: sub.reservations().to_vec(),
        snapshot: SnapshotSpec {
            source: files.join(", "),
            enis,
        },
    })
}

/// Matches `adopt:` rules to the instances in the snapshots: each pool's
/// adopted nodes, and a workload standing for their pods.
fn resolve_adoption(
    raw: &RawScenario,
    subnets: &[SubnetSpec],
    pools: &mut [PoolSpec],
    workloads: &mut Vec<WorkloadSpec>,
    c: &mut Checker,
) {
    let root = Path::default();
    if subnets.len() != raw.subnets.len() {
        // A subnet was refused (its error is reported): the pools' subnet
        // indices count the scenario's subnets, so they would name the
        // wrong ones here, or none.
        return;
    }
    // Every instance with a primary ENI in a snapshot: (subnet, eni index).
    let mut primaries: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut others: BTreeMap<&str, Vec<(usize, usize)>> = BTreeMap::new();
    for (si, s) in subnets.iter().enumerate() {
        for (k, e) in s.snapshot.iter().flat_map(|x| x.enis.iter().enumerate()) {
            if let Some(id) = e.instance_id.as_deref() {
                if e.device_index == 0 && e.kind == OwnerKind::Ec2Primary {
                    primaries.insert(id, (si, k));
                } else {
                    others.entry(id).or_default().push((si, k));
                }
            }
        }
    }
    let mut taken: BTreeMap<String, usize> = BTreeMap::new();
    // Pools naming instances first, then the others take what is left.
    let mut order: Vec<usize> = (0..raw.node_pools.len()).collect();
    order.sort_by_key(|&i| {
        raw.node_pools[i]
            .adopt
            .as_ref()
            .is_none_or(|a| a.instances.is_none())
    });
    for i in order {
        let np = &raw.node_pools[i];
        let Some(a) = &np.adopt else { continue };
        let p = root.key("node_pools").index(i).key("adopt");
        let Some(pi) = pools.iter().position(|x| x.name == np.name) else {
            continue; // the pool itself was refused
        };
        let pool_subnets = pools[pi].subnets.clone();
        if !pool_subnets.iter().any(|&s| subnets[s].snapshot.is_some()) {
            c.err(
                &p,
                "none of the pool's subnets has a snapshot (subnets[].from) to adopt nodes from",
            );
            continue;
        }
        let tag = match a.tag.as_deref().map(|t| t.split_once('=')) {
            None => None,
            Some(Some((k, v))) => Some((k.to_string(), v.to_string())),
            Some(None) => {
                c.err(
                    &p.key("tag"),
                    "write key=value, e.g. eks:nodegroup-name=general",
                );
                continue;
            }
        };
        let prefix = a.description_prefix.as_deref();
        let has_tag = |id: &str| {
            let mut all = primaries.get(id).into_iter().copied().collect::<Vec<_>>();
            all.extend(others.get(id).into_iter().flatten().copied());
            let eni =
                |&(s, e): &(usize, usize)| &subnets[s].snapshot.as_ref().expect("loaded").enis[e];
            let tag_ok = match &tag {
                None => true,
                Some((k, v)) => all
                    .iter()
                    .any(|x| eni(x).tags.iter().any(|(a, b)| a == k && b == v)),
            };
            let desc_ok = match prefix {
                None => true,
                Some(p) => all.iter().any(|x| eni(x).description.starts_with(p)),
            };
            tag_ok && desc_ok
        };
        let mut chosen: Vec<String> = Vec::new();
        match &a.instances {
            Some(list) => {
                for (j, id) in list.iter().enumerate() {
                    match primaries.get(id.as_str()) {
                        Some(&(s, _)) if pool_subnets.contains(&s) => chosen.push(id.clone()),
                        Some(&(s, _)) => c.err(
                            &p.key("instances").index(j),
                            format!("{id}'s primary ENI is in subnet {}, not one of the pool's subnets", subnets[s].name),
                        ),
                        None => c.err(
                            &p.key("instances").index(j),
                            format!("no instance {id} with a primary ENI (device index 0) in the snapshots"),
                        ),
                    }
                }
            }
            None => {
                for (&id, &(s, _)) in &primaries {
                    if pool_subnets.contains(&s) && !taken.contains_key(id) && has_tag(id) {
                        chosen.push(id.to_string());
                    }
                }
            }
        }
        let pool = &pools[pi];
        if pool.types.len() > 1 {
            c.err(
                &p,
                "adopted nodes take the pool's type, so give it one instance type (the snapshot does not say which)",
            );
            continue;
        }
        let pt = &pool.types[0];
        let cpu = a.pod_cpu.as_deref().map_or(Ok(100), parse_cpu);
        let mem = a.pod_memory.as_deref().map_or(Ok(128), parse_memory);
        let (cpu, mem) = match (cpu, mem) {
            (Ok(x), Ok(y)) => (x, y),
            (Err(m), _) => {
                c.err(&p.key("pod_cpu"), m);
                continue;
            }
            (_, Err(m)) => {
                c.err(&p.key("pod_memory"), m);
                continue;
            }
        };
        let mut nodes = Vec::new();
        for id in chosen {
            if let Some(first) = taken.insert(id.clone(), i) {
                if first != i {
                    c.err(
                        &p,
                        format!("{id} is adopted by node_pools[{first}] as well"),
                    );
                }
                continue;
            }
            let mut enis = vec![primaries[id.as_str()]];
            enis.extend(others.get(id.as_str()).into_iter().flatten().copied());
            let held: u32 = enis
                .iter()
                .map(|&(s, e)| {
                    let x = &subnets[s].snapshot.as_ref().expect("loaded").enis[e];
                    x.prefixes.len() as u32 * 16 + x.secondary.len() as u32
                })
                .sum();
            let t = &pt.instance;
            let room = pt.max_pods.saturating_sub(raw.nodes.daemonset_pods);
            let by_cpu = t
                .allocatable_cpu_millis
                .unwrap_or(0)
                .checked_div(cpu)
                .unwrap_or(u64::MAX);
            let by_mem = t
                .allocatable_memory_mib
                .unwrap_or(0)
                .checked_div(mem)
                .unwrap_or(u64::MAX);
            let cap = u64::from(room).min(by_cpu).min(by_mem) as u32;
            let pods = a
                .pods_per_node
                .unwrap_or_else(|| estimate_pods(held, &raw.vpc_cni))
                .min(cap)
                .min(held);
            nodes.push(AdoptedNode {
                instance_id: id,
                enis,
                pods,
            });
        }
        if nodes.is_empty() {
            c.err(&p, "no instance matched: nothing to adopt");
            continue;
        }
        let total: u32 = nodes.iter().map(|n| n.pods).sum();
        let wi = workloads.len();
        workloads.push(WorkloadSpec {
            name: format!("{}-existing", np.name),
            replicas: total,
            cpu_millis: cpu,
            memory_mib: mem,
            pool: Some(pi),
            restart_every: None,
            start: Ms::ZERO,
            preplaced: true,
            hpa: None,
            load: Vec::new(),
            job: None,
            rollout: None,
            security_groups: false,
        });
        let pool = &mut pools[pi];
        pool.adopted = nodes;
        pool.adopted_workload = Some(wi);
    }
}

/// Pods on a node holding `held` addresses (prefixes × 16 plus secondary
/// addresses), from the warm targets ipamd keeps: with
/// `WARM_PREFIX_TARGET = W` ipamd keeps at least 16·W addresses free and
/// releases a prefix when more than W are wholly free, so the pods lie in
/// (16·(n − W − 1), 16·(n − W)]; the estimate is the middle,
/// `16·(n − W) − 8`. With `WARM_IP_TARGET` the free addresses are the
/// target: `held − WARM_IP`. Never below 0.
pub fn estimate_pods(held: u32, cni: &CniConfig) -> u32 {
    match cni.warm_ip_target.filter(|&w| w > 0) {
        Some(w) => held.saturating_sub(w),
        None if cni.prefix_delegation => {
            let n = held / 16;
            (n.saturating_sub(cni.warm_prefix_target) * 16).saturating_sub(8)
        }
        None => held.saturating_sub(held.min(8)),
    }
}

/// The pool's instance types from `instance_type` or `instance_types`.
fn pool_types(
    np: &RawNodePool,
    catalog: &Catalog,
    p: &Path,
    c: &mut Checker,
) -> Option<Vec<InstanceType>> {
    let names: Vec<(Path, &str)> = match (&np.instance_type, &np.instance_types) {
        (Some(t), None) => vec![(p.key("instance_type"), t.as_str())],
        (None, Some(list)) => {
            if list.is_empty() {
                c.err(&p.key("instance_types"), "at least one instance type");
                return None;
            }
            if list.len() > 1 && np.autoscaler != Autoscaler::Karpenter {
                c.err(
                    &p.key("instance_types"),
                    "only Karpenter chooses among several types; give one (instance_type) or set autoscaler: karpenter",
                );
                return None;
            }
            list.iter()
                .enumerate()
                .map(|(k, t)| (p.key("instance_types").index(k), t.as_str()))
                .collect()
        }
        (Some(_), Some(_)) => {
            c.err(
                &p.key("instance_types"),
                "give either instance_type or instance_types, not both",
            );
            return None;
        }
        (None, None) => {
            c.err(
                &p.key("instance_type"),
                "missing: give instance_type (one type) or instance_types (a list, for Karpenter)",
            );
            return None;
        }
    };
    let mut out: Vec<InstanceType> = Vec::new();
    for (path, name) in names {
        match catalog.get(name) {
            Ok(t) if out.iter().any(|o| o.name == t.name) => {
                c.err(&path, format!("`{name}` is listed twice"));
            }
            Ok(t) => out.push(t.clone()),
            Err(e) => c.err(&path, e.to_string()),
        }
    }
    (out.len() == np.instance_types.as_ref().map_or(1, Vec::len)).then_some(out)
}

/// `(size, min_size, max_size)` for the pool's autoscaler.
fn pool_sizes(np: &RawNodePool, p: &Path, c: &mut Checker) -> Option<(u32, u32, u32)> {
    match np.autoscaler {
        Autoscaler::None => {
            for (field, v) in [("min_size", np.min_size), ("max_size", np.max_size)] {
                if v.is_some() {
                    c.err(
                        &p.key(field),
                        "only for autoscaled pools (autoscaler: cluster_autoscaler or karpenter); a fixed pool has a size",
                    );
                }
            }
            match np.size {
                Some(n) => Some((n, n, n)),
                // Adopted nodes only.
                None if np.adopt.is_some() => Some((0, 0, 0)),
                None => {
                    c.err(
                        &p.key("size"),
                        "missing: a fixed pool (autoscaler: none) needs a size (0 is valid)",
                    );
                    None
                }
            }
        }
        Autoscaler::ClusterAutoscaler => {
            let min = np.min_size.unwrap_or(0);
            let max = np.max_size.unwrap_or(u32::MAX);
            let size = np.size.unwrap_or(min);
            if !(min <= size && size <= max) {
                c.err(
                    &p.key("size"),
                    format!("needs min_size <= size <= max_size; here {min} <= {size} <= {max}"),
                );
                return None;
            }
            Some((size, min, max))
        }
        Autoscaler::Karpenter => {
            if np.min_size.is_some() {
                c.err(
                    &p.key("min_size"),
                    "Karpenter keeps no minimum number of nodes; omit it (size gives nodes that exist at the start)",
                );
                return None;
            }
            let max = np.max_size.unwrap_or(u32::MAX);
            let size = np.size.unwrap_or(0);
            if size > max {
                c.err(
                    &p.key("size"),
                    format!("{size} nodes at the start but max_size is {max}"),
                );
                return None;
            }
            Some((size, 0, max))
        }
    }
}

fn pool_spot(np: &RawNodePool, p: &Path, c: &mut Checker) -> Result<Option<SpotSpec>, ()> {
    let Some(raw) = &np.spot else {
        return Ok(None);
    };
    let sp = p.key("spot");
    let before = c.problems.len();
    if np.capacity_type != CapacityType::Spot {
        c.err(&sp, "spot interruptions need capacity_type: spot");
    }
    let monthly_fraction = autoscaling::parse_interruption_rate(&raw.interruption_rate)
        .map_err(|m| c.err(&sp.key("interruption_rate"), m))
        .unwrap_or(0.0);
    let share = raw.correlation_share.unwrap_or(0.5);
    if !(share > 0.0 && share <= 1.0) {
        c.err(
            &sp.key("correlation_share"),
            format!("{share}: a share above 0 and at most 1"),
        );
    }
    if !raw.correlated && (raw.correlation_share.is_some() || raw.correlation_window.is_some()) {
        c.err(
            &sp.key("correlated"),
            "correlation_share and correlation_window apply only with correlated: true",
        );
    }
    let handler = raw.handler.unwrap_or(match np.autoscaler {
        Autoscaler::Karpenter => SpotHandler::Karpenter,
        _ => SpotHandler::None,
    });
    match (handler, np.autoscaler) {
        (SpotHandler::Karpenter, a) if a != Autoscaler::Karpenter => c.err(
            &sp.key("handler"),
            "Karpenter handles interruptions only of its own nodes (autoscaler: karpenter); use node_termination_handler or none",
        ),
        (SpotHandler::NodeTerminationHandler, Autoscaler::Karpenter) => c.err(
            &sp.key("handler"),
            "Karpenter pools: karpenter or none (aws-node-termination-handler runs beside Auto Scaling groups)",
        ),
        _ => {}
    }
    if raw.rebalance_drain && handler != SpotHandler::NodeTerminationHandler {
        c.err(
            &sp.key("rebalance_drain"),
            "only node_termination_handler acts on rebalance recommendations (Karpenter ignores them)",
        );
    }
    let notice = raw.notice.unwrap_or(Ms::from_secs(120));
    let window = raw.correlation_window.unwrap_or(Ms::from_secs(180));
    let lead = raw
        .rebalance_lead
        .unwrap_or([Ms::from_secs(600), Ms::from_secs(1200)]);
    if lead[0] > lead[1] {
        c.err(
            &sp.key("rebalance_lead"),
            "[earliest, latest]: the first may not be larger",
        );
    }
    for (f, v) in [("notice", notice), ("correlation_window", window)] {
        if v > MAX_DURATION {
            c.err(&sp.key(f), format!("at most {MAX_DURATION}"));
        }
    }
    if c.problems.len() > before {
        return Err(());
    }
    Ok(Some(SpotSpec {
        monthly_fraction,
        rate_text: raw.interruption_rate.trim().to_string(),
        correlated: raw.correlated,
        correlation_share: share,
        correlation_window: window,
        notice,
        handler,
        rebalance_lead: (lead[0], lead[1]),
        rebalance_drain: raw.rebalance_drain,
    }))
}

/// A duration or `Never`.
fn never_or(text: &str) -> Result<Option<Ms>, String> {
    if text.trim() == "Never" {
        return Ok(None);
    }
    let t = Ms::parse(text).map_err(|m| format!("{m}; or Never"))?;
    if t > MAX_DURATION {
        return Err(format!("at most {MAX_DURATION}, or Never"));
    }
    Ok(Some(t))
}

fn pool_karpenter(
    np: &RawNodePool,
    p: &Path,
    c: &mut Checker,
) -> Result<Option<KarpenterPool>, ()> {
    let kp = p.key("karpenter");
    if np.autoscaler != Autoscaler::Karpenter {
        if np.karpenter.is_some() {
            c.err(&kp, "only with autoscaler: karpenter");
            return Err(());
        }
        return Ok(None);
    }
    if np.max_lifetime.is_some() {
        c.err(
            &p.key("max_lifetime"),
            "Karpenter nodes expire by karpenter.expire_after (default 720h), not max_lifetime",
        );
        return Err(());
    }
    let raw = np.karpenter.clone().unwrap_or_default();
    let before = c.problems.len();
    let consolidate_after = never_or(raw.consolidate_after.as_deref().unwrap_or("0s"))
        .map_err(|m| c.err(&kp.key("consolidate_after"), m))
        .unwrap_or(None);
    let expire_after = never_or(raw.expire_after.as_deref().unwrap_or("720h"))
        .map_err(|m| c.err(&kp.key("expire_after"), m))
        .unwrap_or(None);
    if expire_after == Some(Ms::ZERO) {
        c.err(&kp.key("expire_after"), "must be more than 0, or Never");
    }
    let budget = Budget::parse(raw.budget.as_deref().unwrap_or("10%"))
        .map_err(|m| c.err(&kp.key("budget"), m))
        .unwrap_or(Budget::Percent(10));
    if c.problems.len() > before {
        return Err(());
    }
    Ok(Some(KarpenterPool {
        subnet_policy: raw.subnet_policy,
        consolidation_policy: raw.consolidation_policy,
        consolidate_after,
        expire_after,
        budget,
    }))
}

fn resolve_expect(e: &RawExpect, subnet_names: &[String], c: &mut Checker) -> Expect {
    let path = Path::default().key("expect").key("min_delegatable_blocks");
    let min_delegatable_blocks = match &e.min_delegatable_blocks {
        None => vec![None; subnet_names.len()],
        Some(MinBlocks::All(n)) => vec![Some(*n); subnet_names.len()],
        Some(MinBlocks::BySubnet(m)) => {
            for k in m.keys() {
                if !subnet_names.contains(k) {
                    let near = nearest_names(k, subnet_names.iter().map(String::as_str), 3);
                    c.err(&path, format!("no subnet named `{k}`; {}", one_of(&near)));
                }
            }
            subnet_names.iter().map(|n| m.get(n).copied()).collect()
        }
    };
    let sweep = e.sweep.as_ref().and_then(|sw| {
        let p = Path::default().key("expect").key("sweep");
        if sw.seeds == 0 || sw.seeds > 100_000 {
            c.err(&p.key("seeds"), "from 1 to 100000");
            return None;
        }
        if !(0.0..=1.0).contains(&sw.max_p_insufficient_cidr_blocks) {
            c.err(
                &p.key("max_p_insufficient_cidr_blocks"),
                "a fraction from 0 to 1 (0.01 is 1%)",
            );
            return None;
        }
        Some((sw.seeds, sw.max_p_insufficient_cidr_blocks))
    });
    Expect {
        sweep,
        max_insufficient_cidr_blocks: e.max_insufficient_cidr_blocks,
        min_delegatable_blocks,
        no_failure_before: e.no_failure_before,
        max_pods_waiting_ip: e.max_pods_waiting_ip,
        max_pod_wait_time: e.max_pod_wait_time,
        nodes_ready_within: e.nodes_ready_within,
    }
}

/// The JSON Schema of a scenario file.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(RawScenario)).expect("schema serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_cpu("250m"), Ok(250));
        assert_eq!(parse_cpu("1"), Ok(1000));
        assert_eq!(parse_cpu("1.5"), Ok(1500));
        assert_eq!(parse_cpu("0.25"), Ok(250));
        assert!(parse_cpu("abc").is_err());
        assert!(parse_cpu("1.2345").is_err());
        assert_eq!(parse_memory("512Mi"), Ok(512));
        assert_eq!(parse_memory("1Gi"), Ok(1024));
        assert_eq!(parse_memory("1G"), Ok(954));
        assert!(parse_memory("12").is_err());
    }

    const OK: &str = "\
name: t
duration: 10m
subnets:
  - name: a
    cidr: 10.0.0.0/24
    zone: z1
node_pools:
  - name: p
    instance_type: m5.large
    subnets: [a]
    size: 1
";

    fn errs(text: &str) -> String {
        parse(text, FsPath::new("s.yaml")).unwrap_err().to_string()
    }

    #[test]
    fn a_minimal_scenario_resolves() {
        let s = parse(OK, FsPath::new("s.yaml")).unwrap();
        assert_eq!(s.cluster.pools[0].types[0].max_pods, 110);
        assert_eq!(s.sample_every, Ms::from_secs(60));
    }

    #[test]
    fn errors_name_file_line_field_and_valid_values() {
        let e = errs(&OK.replace("m5.large", "m5.larg"));
        assert!(e.starts_with("s.yaml:9:5: node_pools[0].instance_type: unknown instance type `m5.larg`; nearest: m5.large"), "{e}");
        let e = errs(&OK.replace("subnets: [a]", "subnets: [b]"));
        assert!(e.contains("node_pools[0].subnets"), "{e}");
        assert!(e.contains("no subnet named `b`; valid: a"), "{e}");
        let e = errs(&OK.replace("    zone: z1", "    zone: z1\n    zoen: z2"));
        assert!(e.contains("s.yaml:7:5"), "{e}");
        assert!(e.contains("unknown field `zoen`"), "{e}");
        assert!(e.contains("expected one of"), "{e}");
        let e = errs(&OK.replace("10.0.0.0/24", "10.0.0.0/33"));
        assert!(
            e.contains("s.yaml:5:5: subnets[0].cidr: `10.0.0.0/33` is not an IPv4 CIDR"),
            "{e}"
        );
        let e = errs(&OK.replace("duration: 10m", "duration: 10 minutes"));
        assert!(e.contains("s.yaml:2:"), "{e}");
        assert!(e.contains("unit"), "{e}");
        let e = errs(&OK.replace("size: 1", "size: -1"));
        assert!(e.contains("size"), "{e}");
        let e = errs("name: [");
        assert!(e.starts_with("s.yaml:"), "{e}");
    }

    /// A retry or polling period of zero would repeat its event forever
    /// within one millisecond: refused, naming the field.
    #[test]
    fn zero_periods_are_refused() {
        for (section, field) in [
            ("nodes", "launch_retry"),
            ("karpenter", "disruption_poll"),
            ("karpenter", "registration_timeout"),
            ("cluster_autoscaler", "scan_interval"),
        ] {
            let y = format!("{OK}{section}: {{{field}: 0s}}\n");
            let e = errs(&y);
            assert!(
                e.contains(&format!("{section}.{field}: must be more than 0")),
                "{e}"
            );
            assert!(parse(&y.replace("0s}", "1s}"), std::path::Path::new("s.yaml")).is_ok());
        }
    }

    #[test]
    fn reservations_and_overlaps_are_checked() {
        let y = OK.replace(
            "    zone: z1\n",
            "    zone: z1\n    reservations:\n      - cidr: 10.0.1.0/28\n        type: prefix\n",
        );
        let e = errs(&y);
        assert!(e.contains("subnets[0].reservations"), "{e}");
        assert!(e.contains("not inside subnet"), "{e}");
        let y = OK.replace(
            "    zone: z1\n",
            "    zone: z1\n    reservations:\n      - cidr: 10.0.0.0/28\n        type: prefixx\n",
        );
        let e = errs(&y);
        assert!(
            e.contains("unknown variant `prefixx`, expected `prefix` or `explicit`"),
            "{e}"
        );
    }

    #[test]
    fn schema_lists_every_section() {
        let s = json_schema();
        let props = s["properties"].as_object().unwrap();
        for k in [
            "name",
            "seed",
            "duration",
            "sample_every",
            "vpc_cni",
            "ec2",
            "subnets",
            "node_pools",
            "workloads",
        ] {
            assert!(props.contains_key(k), "{k}");
        }
    }
}
