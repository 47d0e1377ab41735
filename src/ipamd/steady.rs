//! One node's steady state: what a node with N pods takes from its subnet.
//! Drives a single [`NodeIpam`] against an empty, roomy subnet (a /16),
//! adding pods one at a time and letting the pool settle after each, with
//! the same decision timing as the full simulation.

use ipnet::Ipv4Net;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::config::CniConfig;
use super::node::{InitOutcome, IpamEvent, IpamSpec, NodeIpam, PodAddr};
use crate::addr::ec2::{EniOwner, OwnerKind};
use crate::addr::{Ec2, Ec2Config, Subnet, SubnetId};
use crate::catalog::InstanceType;
use crate::time::Ms;

/// The answer of `subnetsim node`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct SteadyReport {
    pub instance_type: String,
    /// `prefix_delegation` or `secondary_ip` (after any fallback).
    pub mode: &'static str,
    pub max_pods: u32,
    pub pods: u32,
    /// Pods that got an address (less than `pods` when the node runs out).
    pub pods_running: u32,
    pub enis: u32,
    pub prefixes: u32,
    pub prefixes_per_eni: Vec<u32>,
    pub secondary_ips: u32,
    /// Addresses taken from the subnet(s): ENI primaries plus prefixes x 16
    /// (or secondary addresses).
    pub subnet_addresses: u32,
    /// Addresses in the node's pool not assigned to a pod.
    pub unused_ips: u32,
    /// Simulated time until the last pod's pool settled.
    pub settled_after: Ms,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Why a steady state could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SteadyError {
    #[error("{0}")]
    BadSetting(String),
    #[error("--pods {pods}: at most {} pods with their own address fit: max pods {max_pods} counts the 2 host-network pods (aws-node, kube-proxy)", max_pods.saturating_sub(HOST_NETWORK_PODS))]
    TooManyPods { pods: u32, max_pods: u32 },
    #[error("the pool did not settle within {0} decisions: it keeps allocating and releasing (the CNI does this with WARM_PREFIX_TARGET=0 and no pods; set WARM_PREFIX_TARGET >= 1 or an IP target)")]
    NoSettle(u32),
}

/// Host-network DaemonSet pods every node runs (aws-node, kube-proxy):
/// counted by max pods, given no address.
pub const HOST_NETWORK_PODS: u32 = 2;

/// Decisions after which a pool that keeps acting is declared unsettled.
const MAX_DECISIONS: u32 = 20_000;

/// One node driven on its own: an [`Ec2`] with roomy subnets, the node's
/// [`NodeIpam`], a clock, and the pending decision. Used by `subnetsim node`
/// and by the golden tests of scale-up and scale-down.
pub struct NodeHarness {
    pub ec2: Ec2,
    pub ipam: NodeIpam,
    pub cfg: CniConfig,
    pub now: Ms,
    /// The decision ipamd asked for, if any.
    pub next: Option<Ms>,
    /// How ipamd's init went (Ready time, or a failed init).
    pub init: InitOutcome,
    /// Everything ipamd did, with its time.
    pub log: Vec<(Ms, IpamEvent)>,
    pub notes: Vec<String>,
    rng: ChaCha8Rng,
    decisions: u32,
    scratch: Vec<IpamEvent>,
}

impl NodeHarness {
    /// A node of type `t` starting at time 0 in an empty /16 (plus a second
    /// /16 for pods under custom networking).
    pub fn new(t: &InstanceType, cfg: &CniConfig, max_pods: u32, seed: u64) -> Self {
        let roomy: Ipv4Net = "10.0.0.0/16".parse().expect("cidr");
        Self::in_subnet(t, cfg, max_pods, seed, roomy, Ec2Config::default())
    }

    /// A node whose primary ENI (and pods, unless custom networking) are in
    /// `cidr`, with the given EC2 behaviour.
    pub fn in_subnet(
        t: &InstanceType,
        cfg: &CniConfig,
        max_pods: u32,
        seed: u64,
        cidr: Ipv4Net,
        ec2_cfg: Ec2Config,
    ) -> Self {
        let mut ec2 = Ec2::new(ec2_cfg);
        let node_subnet = ec2.add_subnet(Subnet::new(cidr, vec![]).expect("valid subnet"));
        let pod_subnet = if cfg.custom_networking {
            ec2.add_subnet(
                Subnet::new("100.64.0.0/16".parse().expect("cidr"), vec![]).expect("valid"),
            )
        } else {
            node_subnet
        };
        Self::with_ec2(t, cfg, max_pods, seed, ec2, node_subnet, pod_subnet, |s| s)
    }

    /// A node in `node_subnet` of a prepared `ec2`, its spec adjusted by
    /// `adjust` (e.g. the subnets subnet discovery may use).
    #[allow(clippy::too_many_arguments)]
    pub fn with_ec2(
        t: &InstanceType,
        cfg: &CniConfig,
        max_pods: u32,
        seed: u64,
        mut ec2: Ec2,
        node_subnet: SubnetId,
        pod_subnet: SubnetId,
        adjust: impl FnOnce(IpamSpec) -> IpamSpec,
    ) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (spec, note) = IpamSpec::for_type(0, t, cfg, max_pods, node_subnet, pod_subnet);
        let spec = adjust(spec);
        let mut notes: Vec<String> = note.into_iter().collect();
        notes.extend(cfg.warnings(spec.pd));
        let primary = ec2
            .create_eni(
                node_subnet,
                EniOwner {
                    kind: OwnerKind::Ec2Primary,
                    instance: Some(0),
                    device_index: 0,
                },
                0,
                &mut rng,
            )
            .expect("the node's subnet has room for its primary address");
        let mut scratch = Vec::new();
        let (ipam, init) = NodeIpam::start(
            spec,
            primary,
            Ms::ZERO,
            cfg,
            &mut ec2,
            &mut rng,
            &mut scratch,
        );
        let log = scratch.drain(..).map(|e| (Ms::ZERO, e)).collect();
        NodeHarness {
            ec2,
            ipam,
            cfg: cfg.clone(),
            now: Ms::ZERO,
            next: init.next,
            init,
            log,
            notes,
            rng,
            decisions: 0,
            scratch,
        }
    }

    fn decide(&mut self, at: Ms) -> Result<(), SteadyError> {
        self.now = self.now.max(at);
        self.decisions += 1;
        if self.decisions > MAX_DECISIONS {
            return Err(SteadyError::NoSettle(MAX_DECISIONS));
        }
        self.scratch.clear();
        self.next = self.ipam.tick(
            self.now,
            &self.cfg,
            &mut self.ec2,
            &mut self.rng,
            &mut self.scratch,
        );
        let now = self.now;
        self.log.extend(self.scratch.drain(..).map(|e| (now, e)));
        Ok(())
    }

    /// Runs every decision due up to `t`, then sets the clock to `t`.
    pub fn run_until(&mut self, t: Ms) -> Result<(), SteadyError> {
        while let Some(at) = self.next.filter(|&at| at <= t) {
            self.decide(at)?;
        }
        self.now = self.now.max(t);
        Ok(())
    }

    /// Runs decisions until ipamd asks for none, then waits for in-flight
    /// EC2 calls to complete.
    pub fn settle(&mut self) -> Result<(), SteadyError> {
        while let Some(at) = self.next {
            self.decide(at)?;
        }
        self.now = self.now.max(self.ipam.ready_at().unwrap_or(self.now));
        Ok(())
    }

    /// A pod's sandbox asks for an address now.
    pub fn add_pod(&mut self) -> Option<PodAddr> {
        let a = self.ipam.assign_pod(self.now, &mut self.rng)?;
        if let Some(at) = self.ipam.on_pod_change(self.now, &self.cfg) {
            self.next = Some(at);
        }
        Some(a)
    }

    /// A pod leaves now.
    pub fn remove_pod(&mut self, a: PodAddr) {
        self.ipam.release_pod(self.now, a, &self.cfg);
        if let Some(at) = self.ipam.on_pod_change(self.now, &self.cfg) {
            self.next = Some(at);
        }
    }

    /// Addresses taken from all subnets.
    pub fn subnet_addresses(&self) -> u32 {
        self.ec2
            .subnets()
            .map(|(_, s)| s.size() - 5 - s.free_ips())
            .sum()
    }
}

/// Starts a node of type `t` in an empty /16 and schedules `pods` pods one
/// at a time, the pool settling after each.
pub fn steady_state(
    t: &InstanceType,
    cfg: &CniConfig,
    pods: u32,
    max_pods: u32,
    seed: u64,
) -> Result<SteadyReport, SteadyError> {
    // Max pods counts the two host-network DaemonSet pods (aws-node,
    // kube-proxy), which take no address: the "+2" of the formula.
    if pods > max_pods.saturating_sub(HOST_NETWORK_PODS) {
        return Err(SteadyError::TooManyPods { pods, max_pods });
    }
    let mut h = NodeHarness::new(t, cfg, max_pods, seed);
    h.settle()?;
    let mut running = 0;
    for _ in 0..pods {
        if h.add_pod().is_none() {
            // The sandbox fails; ipamd grows on its next decisions and
            // kubelet retries.
            if let Some(at) = h.ipam.on_pod_change(h.now, &h.cfg) {
                h.next = Some(at);
            }
            h.settle()?;
            if h.add_pod().is_none() {
                h.notes.push(format!(
                    "only {running} of {pods} pods got an address: the node's usable ENIs and slots hold {} addresses",
                    h.ipam.stats().total
                ));
                break;
            }
        }
        running += 1;
        h.settle()?;
    }
    let pd = h.ipam.spec().pd;
    let per_eni = h.ipam.cidrs_per_eni();
    let cidrs: u32 = per_eni.iter().sum();
    Ok(SteadyReport {
        instance_type: t.name.clone(),
        mode: if pd {
            "prefix_delegation"
        } else {
            "secondary_ip"
        },
        max_pods,
        pods,
        pods_running: running,
        enis: h.ipam.num_enis() as u32,
        prefixes: if pd { cidrs } else { 0 },
        prefixes_per_eni: if pd {
            per_eni
        } else {
            vec![0; h.ipam.num_enis()]
        },
        secondary_ips: if pd { 0 } else { cidrs },
        subnet_addresses: h.subnet_addresses(),
        unused_ips: h.ipam.unused_ips(),
        settled_after: h.now,
        notes: h.notes,
    })
}
