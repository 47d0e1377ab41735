//! The cluster's configuration (deserializable, with documented defaults)
//! and the validated model a scenario resolves into.

use ipnet::Ipv4Net;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::autoscaling::{
    Autoscaler, ClusterAutoscalerConfig, KarpenterConfig, KarpenterPool, SpotSpec,
};
use crate::addr::ec2::OwnerKind;
use crate::addr::{Ec2Config, Reservation};
use crate::catalog::InstanceType;
use crate::ipamd::CniConfig;
use crate::time::Ms;

/// kubelet's retry of a pod sandbox that got no address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct KubeletConfig {
    /// First retry after a failed sandbox (`failed to assign an IP address
    /// to container`). Default 10s (docs/sources.md §4).
    pub retry_base: Ms,
    /// The back-off doubles per failure up to this. Default 5m (kubelet's
    /// maximum container back-off; not documented for sandboxes: a knob).
    pub retry_max: Ms,
}

impl Default for KubeletConfig {
    fn default() -> Self {
        KubeletConfig {
            retry_base: Ms::from_secs(10),
            retry_max: Ms::from_secs(300),
        }
    }
}

/// Node launch timing (docs/sources.md §5).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct NodeTiming {
    /// A node that vanished (a spot interruption nobody handled) keeps its
    /// pods bound this long before they are deleted and recreated: the
    /// `node.kubernetes.io/unreachable` toleration of 300 s that
    /// kube-apiserver's DefaultTolerationSeconds admission plugin gives
    /// every pod. Default 5m.
    pub not_ready_eviction: Ms,
    /// Launch to kubelet registered: half the launches fall uniformly in
    /// [boot_min, boot_median], half in [boot_median, boot_max].
    pub boot_min: Ms,
    pub boot_median: Ms,
    pub boot_max: Ms,
    /// After a failed launch (no address for the node's primary ENI), the
    /// node group tries again after this long.
    pub launch_retry: Ms,
    /// Host-network DaemonSet pods per node (aws-node, kube-proxy): they
    /// count against max pods but take no address (the "+2" of the max-pods
    /// formula).
    pub daemonset_pods: u32,
}

impl Default for NodeTiming {
    fn default() -> Self {
        NodeTiming {
            not_ready_eviction: Ms::from_secs(300),
            boot_min: Ms::from_secs(30),
            boot_median: Ms::from_secs(40),
            boot_max: Ms::from_secs(80),
            launch_retry: Ms::from_secs(30),
            daemonset_pods: 2,
        }
    }
}

/// kube-scheduler's `NodeResourcesFit` scoring (docs/sources.md §6).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scoring {
    /// Prefer the least allocated node (spreads pods): the default.
    #[default]
    LeastAllocated,
    /// Prefer the most allocated node (packs pods).
    MostAllocated,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    pub scoring: Scoring,
}

/// On-demand or spot capacity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CapacityType {
    #[default]
    OnDemand,
    Spot,
}

/// A group of single-address consumers in a subnet (load balancers,
/// Lambda, endpoints, control plane …): `count` ENIs of one primary address
/// each, placed by EC2.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConsumerSpec {
    pub kind: OwnerKind,
    pub count: u32,
    /// Each ENI is replaced (deleted, then created again wherever EC2 puts
    /// it) after an exponentially distributed time with this mean.
    pub churn_every: Option<Ms>,
    /// The group is the snapshot's own ENIs of this kind (`from.churn`):
    /// none is created at the start; they churn.
    pub existing: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct SubnetSpec {
    pub name: String,
    pub cidr: Ipv4Net,
    pub zone: String,
    pub reservations: Vec<Reservation>,
    pub consumers: Vec<ConsumerSpec>,
    /// AWS tags (key to value).
    pub tags: std::collections::BTreeMap<String, String>,
    /// The state taken over from a snapshot (`from:`), if any.
    pub snapshot: Option<SnapshotSpec>,
}

/// A subnet's ENIs as a snapshot (AWS CLI output) lists them, validated:
/// addresses inside the subnet, no overlaps, prefixes aligned /28s.
#[derive(Clone, Debug, Serialize)]
pub struct SnapshotSpec {
    /// The files, for messages.
    pub source: String,
    pub enis: Vec<SnapshotEni>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SnapshotEni {
    /// `NetworkInterfaceId` in the file.
    pub id: String,
    pub kind: OwnerKind,
    pub instance_id: Option<String>,
    pub device_index: u32,
    pub description: String,
    pub tags: Vec<(String, String)>,
    /// Offsets in the subnet.
    pub primary: u32,
    pub secondary: Vec<u32>,
    /// /28 block indices.
    pub prefixes: Vec<u32>,
}

/// An EKS node found in a snapshot and taken over by a pool.
#[derive(Clone, Debug, Serialize)]
pub struct AdoptedNode {
    pub instance_id: String,
    /// Its ENIs as (subnet, index in that subnet's snapshot); the primary
    /// (device index 0) first.
    pub enis: Vec<(usize, usize)>,
    /// Pods running on it at the start.
    pub pods: u32,
}

impl SubnetSpec {
    /// Tags as `(key, value)` pairs.
    pub fn tag_pairs(&self) -> impl Iterator<Item = (&str, &str)> + Clone {
        self.tags.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// One instance type a pool may launch.
#[derive(Clone, Debug, Serialize)]
pub struct PoolType {
    pub instance: InstanceType,
    /// kubelet max pods on this type.
    pub max_pods: u32,
    /// Price per hour in millionths of a dollar, from the scenario's
    /// `karpenter.prices`; `None`: ranked by vCPUs, then memory.
    pub price: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PoolSpec {
    pub name: String,
    /// The types it may launch (one unless Karpenter chooses), cheapest
    /// first.
    pub types: Vec<PoolType>,
    /// Indices into the cluster's subnets (node subnets).
    pub subnets: Vec<usize>,
    /// Under custom networking: the ENIConfig subnet per node subnet
    /// (parallel to `subnets`); else equal to `subnets`.
    pub pod_subnets: Vec<usize>,
    /// Nodes at the start (an Auto Scaling group's desired capacity).
    pub size: u32,
    pub min_size: u32,
    pub max_size: u32,
    pub autoscaler: Autoscaler,
    pub capacity_type: CapacityType,
    /// Spot interruptions (spot pools only).
    pub spot: Option<SpotSpec>,
    /// The NodePool's settings (Karpenter pools only).
    pub karpenter: Option<KarpenterPool>,
    /// Nodes taken over from snapshots, Ready at the start (of the pool's
    /// first type).
    pub adopted: Vec<AdoptedNode>,
    /// The workload standing for the adopted nodes' pods.
    pub adopted_workload: Option<usize>,
    /// EC2 Auto Scaling's maximum instance lifetime: each node is replaced
    /// (a new node launches, the old one is drained and terminated) after
    /// this long.
    pub max_lifetime: Option<Ms>,
}

#[derive(Clone, Debug, Serialize)]
pub struct WorkloadSpec {
    pub name: String,
    pub replicas: u32,
    pub cpu_millis: u64,
    pub memory_mib: u64,
    /// Only on this pool's nodes (a node selector), else anywhere.
    pub pool: Option<usize>,
    /// A rolling restart of every replica, this often.
    pub restart_every: Option<Ms>,
    /// When the workload is created.
    pub start: Ms,
    /// Its pods exist at the start, bound to adopted nodes (not created by
    /// `start`); drained ones are recreated Pending like any other.
    pub preplaced: bool,
    /// Its HorizontalPodAutoscaler, if any.
    pub hpa: Option<super::hpa::HpaSpec>,
    /// A Job (or CronJob) template: pods come with each arrival and end
    /// after their run time.
    pub job: Option<JobSpec>,
    /// Rolling updates of the Deployment, if any.
    pub rollout: Option<RolloutSpec>,
    /// Security groups for pods: each pod gets a branch ENI.
    pub security_groups: bool,
    /// Its load signals by name.
    pub load: super::hpa::LoadSpec,
}

/// When jobs arrive.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Arrivals {
    /// Every this long from the start.
    Every(Ms),
    /// A Poisson process: this many an hour on average.
    PerHour(f64),
    /// A CronJob schedule: these minutes of these hours, every day
    /// (sorted, deduplicated).
    Cron { minutes: Vec<u32>, hours: Vec<u32> },
}

impl Arrivals {
    /// The first cron time at or after `t` (the run starts at midnight).
    pub fn next_cron(minutes: &[u32], hours: &[u32], t: Ms) -> Ms {
        let day = 86_400_000u64;
        let d0 = t.0 / day;
        for d in d0..d0 + 2 {
            for &h in hours {
                for &m in minutes {
                    let at = d * day + u64::from(h) * 3_600_000 + u64::from(m) * 60_000;
                    if at >= t.0 {
                        return Ms(at);
                    }
                }
            }
        }
        unreachable!("a cron schedule fires every day")
    }
}

/// A count or a percentage of the replicas (`maxSurge`,
/// `maxUnavailable`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum IntOrPercent {
    Count(u32),
    Percent(u32),
}

impl IntOrPercent {
    /// Resolved against `replicas`, rounding up (`maxSurge`) or down
    /// (`maxUnavailable`), as `intstr.GetScaledValueFromIntOrPercent`.
    pub fn of(self, replicas: u32, round_up: bool) -> u32 {
        match self {
            IntOrPercent::Count(n) => n,
            IntOrPercent::Percent(p) => {
                let x = u64::from(replicas) * u64::from(p);
                (if round_up { x.div_ceil(100) } else { x / 100 }) as u32
            }
        }
    }
}

/// Rolling updates (`strategy.rollingUpdate`) and when they happen.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RolloutSpec {
    pub max_surge: IntOrPercent,
    pub max_unavailable: IntOrPercent,
    /// Rollouts at these times from the start.
    pub at: Vec<Ms>,
    /// And/or every this long from the start.
    pub every: Option<Ms>,
    /// `minReadySeconds`: a new pod counts as available this long after it
    /// is Running (the model starts containers at once: put the start-up
    /// and readiness time here).
    pub min_ready: Ms,
}

/// A Job template.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JobSpec {
    pub arrivals: Arrivals,
    /// Pods per job.
    pub parallelism: u32,
    /// Each pod runs for a time drawn uniformly in this range once it is
    /// Running, then completes (its address is released).
    pub run_time: (Ms, Ms),
}

/// Everything the cluster simulation needs, validated.
#[derive(Clone, Debug, Serialize)]
pub struct ClusterSpec {
    pub cni: CniConfig,
    pub ec2: Ec2Config,
    pub kubelet: KubeletConfig,
    pub nodes: NodeTiming,
    pub scheduler: SchedulerConfig,
    pub karpenter: KarpenterConfig,
    pub cluster_autoscaler: ClusterAutoscalerConfig,
    pub subnets: Vec<SubnetSpec>,
    pub pools: Vec<PoolSpec>,
    pub workloads: Vec<WorkloadSpec>,
}
