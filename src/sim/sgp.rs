//! Security groups for pods (`ENABLE_POD_ENI`): a trunk ENI per Nitro node,
//! attached by the VPC resource controller once the node is up, and a
//! branch ENI per pod of a workload with `security_groups`, with its own
//! address placed by EC2 like any single address (not from a prefix). The
//! node advertises `vpc.amazonaws.com/pod-eni` (its type's branch ENI
//! limit), which the scheduler counts. Sources: aws/amazon-vpc-resource-
//! controller-k8s; AWS's EKS security groups for pods documentation;
//! docs/workload-model.md.

use super::observe::FailedCall;
use super::{Simulation, NONE};
use crate::addr::ec2::{EniOwner, OwnerKind};
use crate::addr::{Ec2Op, SubnetId};
use crate::ipamd::PodAddr;

impl Simulation {
    /// Where a node's branch and trunk ENIs go: its subnet, or the
    /// ENIConfig subnet under custom networking.
    fn pod_eni_subnet(&self, id: u32) -> u32 {
        let node = self.nodes[id as usize].as_ref().expect("live");
        let p = &self.spec.pools[node.pool as usize];
        if self.spec.cni.custom_networking {
            let k = p
                .subnets
                .iter()
                .position(|&s| s as u32 == node.subnet)
                .expect("node subnet in pool");
            p.pod_subnets[k] as u32
        } else {
            node.subnet
        }
    }

    /// Branch ENIs the node's type supports (0 without pod ENI).
    pub(super) fn branch_limit(&self, pool: u32, itype: u16) -> u32 {
        if !self.spec.cni.enable_pod_eni {
            return 0;
        }
        let t = &self.spec.pools[pool as usize].types[itype as usize].instance;
        // The catalogue lists branch ENIs for the (Nitro) types that have
        // them.
        t.branch_enis.unwrap_or(0)
    }

    /// The VPC resource controller attaches the trunk ENI once the node is
    /// Ready; then the node advertises its branch ENIs. A trunk that gets
    /// no address leaves the node without any.
    pub(super) fn attach_trunk(&mut self, id: u32) {
        let node = self.nodes[id as usize].as_ref().expect("live");
        let limit = self.branch_limit(node.pool, node.itype);
        if limit == 0 || node.trunk.is_some() {
            return;
        }
        let enis = node.ipam.as_ref().map_or(1, |i| i.num_enis() as u32);
        let si = self.pod_eni_subnet(id);
        let owner = EniOwner {
            kind: OwnerKind::Trunk,
            instance: Some(id),
            device_index: enis,
        };
        match self
            .ec2
            .create_eni(SubnetId(si), owner, 0, &mut self.rng.ec2)
        {
            Ok(e) => {
                self.nodes[id as usize].as_mut().expect("live").trunk = Some(e);
                self.reindex(id, |c| c.branch_max = limit);
                let info = self.ec2.eni(e);
                let detail = format!(
                    "trunk {} at {}: {limit} branch ENIs",
                    super::eni_name(info.serial),
                    self.ec2.addr(SubnetId(si), info.primary)
                );
                self.log("trunk_attached", Some(si), Some(id), detail);
            }
            Err(error) => self.fail(FailedCall {
                node: Some(id),
                op: Ec2Op::CreateEni,
                subnet: si,
                error,
                requested: 1,
                paused: false,
                unit: "address",
            }),
        }
    }

    /// A pod with security groups: its branch ENI, created with its own
    /// address (or a failure, retried with kubelet's back-off).
    pub(super) fn branch_sandbox(&mut self, pid: u32, gen: u32, was_waiting: bool) {
        let node = self.pods[pid as usize].node;
        debug_assert_ne!(node, NONE);
        let si = self.nodes[node as usize].as_ref().expect("bound").subnet;
        let sub = self.pod_eni_subnet(node);
        let owner = EniOwner {
            kind: OwnerKind::Branch,
            instance: Some(node),
            device_index: 0,
        };
        match self
            .ec2
            .create_eni(SubnetId(sub), owner, 0, &mut self.rng.ec2)
        {
            Ok(e) => {
                self.observer
                    .end_runs(Some(node), Some(sub), Some(Ec2Op::CreateEni));
                let addr = PodAddr {
                    subnet: SubnetId(sub),
                    offset: self.ec2.eni(e).primary,
                };
                self.pods[pid as usize].set_branch(Some(e));
                self.pod_running(pid, gen, addr, was_waiting, si);
            }
            Err(error) => {
                self.fail(FailedCall {
                    node: Some(node),
                    op: Ec2Op::CreateEni,
                    subnet: sub,
                    error,
                    requested: 1,
                    paused: false,
                    unit: "address",
                });
                self.pod_waiting(pid, gen, was_waiting, si);
            }
        }
    }
}
