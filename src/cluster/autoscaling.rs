//! Node churn configuration: spot interruptions, Karpenter, the Cluster
//! Autoscaler. Cluster-wide controller settings deserialize directly (with
//! the real components' defaults); per-pool settings are resolved by the
//! scenario into the validated types here.
//!
//! Sources (docs/node-churn-model.md cites each in full):
//! - Karpenter: kubernetes-sigs/karpenter `pkg/operator/options/options.go`
//!   (batch windows), `pkg/controllers/disruption/controller.go` (10 s
//!   polling), `pkg/controllers/nodeclaim/lifecycle/liveness.go` (15 min
//!   registration timeout); karpenter-provider-aws
//!   `pkg/operator/options/options.go` (1 min subnet refresh).
//! - Cluster Autoscaler: `cluster-autoscaler/FAQ.md`, parameters table.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::time::Ms;

/// Which component sizes a node pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Autoscaler {
    /// A fixed `size` (an Auto Scaling group nobody resizes).
    #[default]
    None,
    /// A Karpenter NodePool.
    Karpenter,
    /// A managed node group scaled by the Cluster Autoscaler.
    ClusterAutoscaler,
}

impl Autoscaler {
    pub fn name(self) -> &'static str {
        match self {
            Autoscaler::None => "node group",
            Autoscaler::Karpenter => "karpenter",
            Autoscaler::ClusterAutoscaler => "cluster_autoscaler",
        }
    }
}

/// What acts on a spot interruption notice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SpotHandler {
    /// Karpenter's interruption controller: taint and drain on the notice
    /// (its pods go Pending and are provisioned for at once); the instance
    /// goes at the deadline.
    Karpenter,
    /// aws-node-termination-handler: cordon and drain on the notice; the
    /// Auto Scaling group replaces the instance after it terminates.
    NodeTerminationHandler,
    /// Nothing: the instance vanishes at the deadline; its pods are deleted
    /// `nodes.not_ready_eviction` later and recreated.
    None,
}

impl SpotHandler {
    pub fn name(self) -> &'static str {
        match self {
            SpotHandler::Karpenter => "karpenter",
            SpotHandler::NodeTerminationHandler => "node_termination_handler",
            SpotHandler::None => "none",
        }
    }
}

/// A pool's spot interruptions, validated.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SpotSpec {
    /// The monthly fraction of instances interrupted (0 < f < 1).
    pub monthly_fraction: f64,
    /// As written (`5-10%`, `7%`), for outputs.
    pub rate_text: String,
    /// Interruptions of one instance type in one zone come together.
    pub correlated: bool,
    /// Share of the group's nodes a correlated event hits.
    pub correlation_share: f64,
    /// A correlated event's notices spread over this window.
    pub correlation_window: Ms,
    /// Notice to termination (2 minutes on EC2).
    pub notice: Ms,
    pub handler: SpotHandler,
    /// A rebalance recommendation precedes a notice by a time drawn
    /// uniformly in this range (best effort on EC2).
    pub rebalance_lead: (Ms, Ms),
    /// aws-node-termination-handler's `enableRebalanceDraining`: cordon and
    /// drain on the rebalance recommendation.
    pub rebalance_drain: bool,
}

/// A month for interruption rates: 30 days.
pub const MONTH: Ms = Ms(30 * 86_400_000);

impl SpotSpec {
    /// The per-instance hazard per millisecond for which a fraction
    /// `monthly_fraction` of instances alive for a month is interrupted:
    /// `-ln(1 - f) / month`.
    pub fn hazard_per_ms(&self) -> f64 {
        -(1.0 - self.monthly_fraction).ln() / MONTH.0 as f64
    }
}

/// Parses a Spot Instance Advisor bucket (`<5%`, `5-10%`, `10-15%`,
/// `15-20%`, `>20%`) or a monthly percentage (`7%`, `7.5%`) into a monthly
/// fraction. A bucket stands for its midpoint; `<5%` for 2.5% and `>20%`
/// for 25% (the Advisor gives no upper bound: a documented choice).
pub fn parse_interruption_rate(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let bucket = match t {
        "<5%" => Some(2.5),
        "5-10%" => Some(7.5),
        "10-15%" => Some(12.5),
        "15-20%" => Some(17.5),
        ">20%" => Some(25.0),
        _ => None,
    };
    let pct = match bucket {
        Some(p) => p,
        None => {
            let num = t.strip_suffix('%').ok_or_else(|| {
                format!("`{text}`: give a Spot Instance Advisor bucket (<5%, 5-10%, 10-15%, 15-20%, >20%) or a monthly percentage like 7%")
            })?;
            let p: f64 = num.trim().parse().map_err(|_| {
                format!("`{text}`: not a percentage; give a bucket (<5%, 5-10%, 10-15%, 15-20%, >20%) or e.g. 7%")
            })?;
            if !(p > 0.0 && p < 100.0) {
                return Err(format!(
                    "`{text}`: a monthly percentage above 0% and below 100%"
                ));
            }
            p
        }
    };
    Ok(pct / 100.0)
}

/// Where Karpenter launches a node, per zone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubnetPolicy {
    /// Karpenter's rule: the subnet with the most `AvailableIpAddressCount`
    /// minus in-flight launches (karpenter-provider-aws
    /// `pkg/providers/subnet/subnet.go` `ZonalSubnetsForLaunch`).
    #[default]
    AvailableIps,
    /// What-if: the subnet with the most delegatable /28 blocks.
    DelegatableBlocks,
}

/// Karpenter's `disruption.consolidationPolicy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConsolidationPolicy {
    WhenEmpty,
    #[default]
    WhenEmptyOrUnderutilized,
}

/// A disruption budget: a node count or a percentage of the pool's nodes
/// (rounded up, as Karpenter's `Budget.GetAllowedDisruptions` does).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Budget {
    Nodes(u32),
    Percent(u32),
}

impl Budget {
    /// Nodes allowed to be disrupting at once among `nodes`.
    pub fn allowed(self, nodes: u32) -> u32 {
        match self {
            Budget::Nodes(n) => n,
            Budget::Percent(p) => (u64::from(nodes) * u64::from(p)).div_ceil(100) as u32,
        }
    }

    pub fn parse(text: &str) -> Result<Budget, String> {
        let t = text.trim();
        if let Some(p) = t.strip_suffix('%') {
            let p: u32 = p
                .trim()
                .parse()
                .map_err(|_| format!("`{text}`: a whole percentage like 10% or a node count"))?;
            if p > 100 {
                return Err(format!("`{text}`: at most 100%"));
            }
            Ok(Budget::Percent(p))
        } else {
            t.parse()
                .map(Budget::Nodes)
                .map_err(|_| format!("`{text}`: a node count like 5 or a percentage like 10%"))
        }
    }
}

/// A Karpenter NodePool's settings, validated.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KarpenterPool {
    pub subnet_policy: SubnetPolicy,
    pub consolidation_policy: ConsolidationPolicy,
    /// `None`: `Never` (no consolidation).
    pub consolidate_after: Option<Ms>,
    /// `None`: `Never`.
    pub expire_after: Option<Ms>,
    pub budget: Budget,
}

/// Karpenter's controller settings (cluster-wide).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct KarpenterConfig {
    /// `BATCH_IDLE_DURATION`: a batch of pending pods closes after this
    /// long without a new one. Default 1s.
    pub batch_idle_duration: Ms,
    /// `BATCH_MAX_DURATION`: a batch closes after this long in any case.
    /// Default 10s.
    pub batch_max_duration: Ms,
    /// Batch closed to CreateFleet. Default 1s (a knob: not a setting of
    /// Karpenter's).
    pub launch_delay: Ms,
    /// `SUBNET_REFRESH_INTERVAL`: how stale Karpenter's view of subnets'
    /// free addresses may be; a refresh forgets in-flight deductions.
    /// Default 1m.
    pub subnet_refresh_interval: Ms,
    /// The disruption controller's polling period. Default 10s.
    pub disruption_poll: Ms,
    /// How long a disruption command waits before it is checked again
    /// and carried out (`commandValidationDelay`). Default 15s.
    pub validation_delay: Ms,
    /// A node claim not registered within this is deleted. Default 15m.
    pub registration_timeout: Ms,
    /// The `SpotToSpotConsolidation` feature gate: whether a spot node may
    /// be replaced by a cheaper spot node. Default false, as in Karpenter.
    pub spot_to_spot_consolidation: bool,
}

impl Default for KarpenterConfig {
    fn default() -> Self {
        KarpenterConfig {
            batch_idle_duration: Ms::from_secs(1),
            batch_max_duration: Ms::from_secs(10),
            launch_delay: Ms::from_secs(1),
            subnet_refresh_interval: Ms::from_secs(60),
            disruption_poll: Ms::from_secs(10),
            validation_delay: Ms::from_secs(15),
            registration_timeout: Ms::from_secs(15 * 60),
            spot_to_spot_consolidation: false,
        }
    }
}

/// The Cluster Autoscaler's expander.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Expander {
    /// The node group leaving the least idle CPU and memory (the default of
    /// current releases).
    #[default]
    LeastWaste,
    /// A node group at random (the default of older releases).
    Random,
}

/// The Cluster Autoscaler's flags (cluster-wide), with its defaults
/// (`cluster-autoscaler/FAQ.md`, parameters table).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterAutoscalerConfig {
    /// `--scan-interval`. Default 10s.
    pub scan_interval: Ms,
    /// `--expander`. Default least-waste.
    pub expander: Expander,
    /// `--scale-down-unneeded-time`. Default 10m.
    pub scale_down_unneeded_time: Ms,
    /// `--scale-down-delay-after-add`. Default 10m.
    pub scale_down_delay_after_add: Ms,
    /// `--scale-down-utilization-threshold`: the larger of requested CPU
    /// and memory over allocatable below which a node is unneeded.
    /// Default 0.5.
    pub scale_down_utilization_threshold: f64,
    /// `--max-node-provision-time`. Default 15m.
    pub max_node_provision_time: Ms,
    /// `--max-empty-bulk-delete`: empty nodes removed per scan. Default 10.
    pub max_empty_bulk_delete: u32,
    /// `--max-drain-parallelism`: non-empty nodes drained per scan.
    /// Default 1.
    pub max_drain_parallelism: u32,
    /// `--initial-node-group-backoff-duration`: a group whose scale-up
    /// timed out is not scaled up for this long. Default 5m.
    pub node_group_backoff: Ms,
}

impl Default for ClusterAutoscalerConfig {
    fn default() -> Self {
        ClusterAutoscalerConfig {
            scan_interval: Ms::from_secs(10),
            expander: Expander::LeastWaste,
            scale_down_unneeded_time: Ms::from_secs(600),
            scale_down_delay_after_add: Ms::from_secs(600),
            scale_down_utilization_threshold: 0.5,
            max_node_provision_time: Ms::from_secs(900),
            max_empty_bulk_delete: 10,
            max_drain_parallelism: 1,
            node_group_backoff: Ms::from_secs(300),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_percentages() {
        assert_eq!(parse_interruption_rate("5-10%").unwrap(), 0.075);
        assert_eq!(parse_interruption_rate("<5%").unwrap(), 0.025);
        assert_eq!(parse_interruption_rate(">20%").unwrap(), 0.25);
        assert_eq!(parse_interruption_rate(" 7% ").unwrap(), 0.07);
        assert!(parse_interruption_rate("7").is_err());
        assert!(parse_interruption_rate("0%").is_err());
        assert!(parse_interruption_rate("100%").is_err());
        assert!(parse_interruption_rate("5-11%").is_err());
    }

    #[test]
    fn hazard_gives_the_monthly_fraction() {
        let s = SpotSpec {
            monthly_fraction: 0.075,
            rate_text: "5-10%".into(),
            correlated: false,
            correlation_share: 0.5,
            correlation_window: Ms::from_secs(180),
            notice: Ms::from_secs(120),
            handler: SpotHandler::None,
            rebalance_lead: (Ms::from_secs(600), Ms::from_secs(1200)),
            rebalance_drain: false,
        };
        let survive = (-s.hazard_per_ms() * MONTH.0 as f64).exp();
        assert!((1.0 - survive - 0.075).abs() < 1e-12);
    }

    #[test]
    fn budgets_round_up() {
        assert_eq!(Budget::Percent(10).allowed(10), 1);
        assert_eq!(Budget::Percent(10).allowed(11), 2);
        assert_eq!(Budget::Percent(10).allowed(0), 0);
        assert_eq!(Budget::Nodes(3).allowed(1), 3);
        assert_eq!(Budget::parse("10%").unwrap(), Budget::Percent(10));
        assert_eq!(Budget::parse("5").unwrap(), Budget::Nodes(5));
        assert!(Budget::parse("101%").is_err());
        assert!(Budget::parse("x").is_err());
    }
}
