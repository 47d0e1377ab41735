//! The VPC CNI's settings (environment variables of `aws-node`) and the
//! timing constants of ipamd, with their defaults (docs/sources.md §4).

use serde::{Deserialize, Serialize};

use crate::time::Ms;

/// CNI settings. Field names follow the environment variables.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CniConfig {
    /// `ENABLE_PREFIX_DELEGATION`. The code default is false; subnetsim's
    /// default is true because prefix delegation is what it studies.
    pub prefix_delegation: bool,
    /// `WARM_PREFIX_TARGET`: code default 0, shipped manifest 1 (used here).
    pub warm_prefix_target: u32,
    /// `WARM_IP_TARGET`; unset (or 0) means not defined.
    pub warm_ip_target: Option<u32>,
    /// `MINIMUM_IP_TARGET`; unset (or 0) means not defined.
    pub minimum_ip_target: Option<u32>,
    /// `WARM_ENI_TARGET` (ignored in PD).
    pub warm_eni_target: u32,
    /// `MAX_ENI`: caps the ENIs the CNI uses (instance limit when unset).
    pub max_eni: Option<u32>,
    /// `AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG`: pods only on secondary ENIs, in
    /// the ENIConfig subnet.
    pub custom_networking: bool,
    /// `IP_COOLDOWN_PERIOD`: a released pod address waits this long before
    /// reuse.
    pub ip_cooldown: Ms,
    /// `ENABLE_SUBNET_DISCOVERY` (code default true since v1.19.0, CNI
    /// #2954). On: after an Insufficient* error on an existing ENI ipamd
    /// tries the next ENI, then a new ENI in the same decision, in any
    /// subnet of the node's zone the `kubernetes.io/role/cni` tag allows;
    /// growth pauses 120 s only when that ENI creation fails with an
    /// Insufficient* error. Off: the first Insufficient* error pauses.
    pub subnet_discovery: bool,
    /// `ENABLE_POD_ENI`: security groups for pods. Each Nitro node gets a
    /// trunk ENI (one ENI slot and one address of the node's subnet, or the
    /// ENIConfig subnet), and pods of workloads with `security_groups` get
    /// a branch ENI each. Default false.
    pub enable_pod_eni: bool,
    /// How the datastore picks a pod's address: `map_order` (default)
    /// imitates Go's map iteration in `AssignPodIPv4Address` (first ENI,
    /// first prefix with a free address, the oldest entry favoured);
    /// `random` picks ENI and prefix uniformly.
    pub pod_address_pick: PodAddressPick,
    /// `CLUSTER_NAME`: with it set, a subnet carrying any
    /// `kubernetes.io/cluster/<name>` tag is used for new ENIs only when one
    /// names this cluster (`ValidSubnetTagsMatchingClusterName`).
    pub cluster_name: Option<String>,
}

/// Upper bounds of the CNI settings (far above any instance's capacity).
pub const MAX_PREFIX_TARGET: u32 = 4_096;
pub const MAX_IP_TARGET: u32 = 65_536;
pub const MAX_ENIS: u32 = 128;

/// The datastore's choice of a pod address (see `docs/ipamd-model.md`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum PodAddressPick {
    /// Go map iteration order: a random start among 8 slots for small maps,
    /// so the oldest ENI and prefix are favoured.
    #[default]
    MapOrder,
    /// Uniformly random ENI, then prefix.
    Random,
}

impl Default for CniConfig {
    fn default() -> Self {
        CniConfig {
            prefix_delegation: true,
            warm_prefix_target: 1,
            warm_ip_target: None,
            minimum_ip_target: None,
            warm_eni_target: 1,
            max_eni: None,
            custom_networking: false,
            ip_cooldown: Ms::from_secs(30),
            subnet_discovery: true,
            enable_pod_eni: false,
            pod_address_pick: PodAddressPick::MapOrder,
            cluster_name: None,
        }
    }
}

impl CniConfig {
    /// `WARM_IP_TARGET` when defined (non-zero).
    pub fn warm_ip(&self) -> u32 {
        self.warm_ip_target.unwrap_or(0)
    }

    /// `MINIMUM_IP_TARGET` when defined (non-zero).
    pub fn min_ip(&self) -> u32 {
        self.minimum_ip_target.unwrap_or(0)
    }

    /// The max-pods calculator's question for these settings (the kubelet
    /// default when a node's max pods is not given).
    pub fn max_pods_query(&self) -> crate::catalog::MaxPodsQuery {
        crate::catalog::MaxPodsQuery {
            prefix_delegation: self.prefix_delegation,
            custom_networking: self.custom_networking,
            max_eni: self.max_eni,
            vcpus: None,
            show_max_allowed: false,
        }
    }

    /// IP targets are in force when either is non-zero; with prefix
    /// delegation they then override `WARM_PREFIX_TARGET`.
    pub fn ip_targets_defined(&self) -> bool {
        self.warm_ip() > 0 || self.min_ip() > 0
    }

    /// Out-of-range settings, as `(field, message)`: values beyond anything
    /// an instance can hold are refused so that no count can wrap (the
    /// largest types hold 15 ENIs of 49 prefixes: 11,760 addresses).
    pub fn check(&self) -> Vec<(&'static str, String)> {
        let mut bad = Vec::new();
        let mut limit = |field: &'static str, v: Option<u32>, max: u32| {
            if let Some(v) = v.filter(|&v| v > max) {
                bad.push((
                    field,
                    format!("{v} is more than any node can use; at most {max}"),
                ));
            }
        };
        limit(
            "warm_prefix_target",
            Some(self.warm_prefix_target),
            MAX_PREFIX_TARGET,
        );
        limit("warm_ip_target", self.warm_ip_target, MAX_IP_TARGET);
        limit("minimum_ip_target", self.minimum_ip_target, MAX_IP_TARGET);
        limit("warm_eni_target", Some(self.warm_eni_target), MAX_ENIS);
        limit("max_eni", self.max_eni, MAX_ENIS);
        if self.cluster_name.as_ref().is_some_and(|n| n.len() > 255) {
            bad.push(("cluster_name", "longer than 255 characters".to_string()));
        }
        bad
    }

    /// Settings the CNI documents as unsupported but accepts. Each is
    /// modelled as the source behaves; this lists what to warn about.
    pub fn warnings(&self, pd_effective: bool) -> Vec<String> {
        let mut w = Vec::new();
        if pd_effective && !self.ip_targets_defined() && self.warm_prefix_target == 0 {
            w.push(
                "WARM_PREFIX_TARGET=0 without WARM_IP_TARGET/MINIMUM_IP_TARGET is not supported with prefix \
                 delegation; modelled as the source does: a prefix is requested only when no address is available"
                    .to_string(),
            );
        }
        if self.warm_ip_target == Some(0) || self.minimum_ip_target == Some(0) {
            w.push(
                "WARM_IP_TARGET=0 / MINIMUM_IP_TARGET=0 count as not set (the source ignores zero)"
                    .to_string(),
            );
        }
        if !pd_effective && !self.ip_targets_defined() && self.warm_eni_target == 0 {
            w.push(
                "WARM_ENI_TARGET=0 without IP targets: addresses are requested only when none is available"
                    .to_string(),
            );
        }
        w
    }
}

/// ipamd's fixed timing (CNI v1.23 source constants).
pub mod timing {
    use crate::time::Ms;
    /// `ipPoolMonitorInterval`: one pool decision every 5 s.
    pub const POOL_INTERVAL: Ms = Ms::from_secs(5);
    /// `decreaseIPPoolInterval`: releases at most once per 30 s.
    pub const DECREASE_INTERVAL: Ms = Ms::from_secs(30);
    /// `StartNodeIPPoolManager` sleeps half an interval before each
    /// decision: the first comes 2.5 s after ipamd's init.
    pub const FIRST_DECISION: Ms = Ms::from_millis(2_500);
    /// `insufficientCidrErrorCooldown`: growth pauses 120 s after
    /// `InsufficientCidrBlocks` / `InsufficientFreeAddressesInSubnet`.
    pub const INSUFFICIENT_PAUSE: Ms = Ms::from_secs(120);
    /// `minLifeTime`: an ENI younger than this is never removed.
    pub const ENI_MIN_AGE: Ms = Ms::from_secs(60);
}
