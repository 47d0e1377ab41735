//! kube-scheduler's node choice as a placement policy over an index of
//! Ready nodes ordered by allocation, so binding a pod does not scan every
//! node (docs/sources.md §6: `NodeResourcesFit`, LeastAllocated by default).

use std::collections::BTreeSet;

use super::spec::Scoring;

/// A node's schedulable capacity and use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capacity {
    pub cpu_alloc: u64,
    pub mem_alloc: u64,
    pub cpu_used: u64,
    pub mem_used: u64,
    pub pods: u32,
    pub max_pods: u32,
    /// Branch ENIs (`vpc.amazonaws.com/pod-eni`): advertised and used by
    /// pods with security groups.
    pub branch_max: u32,
    pub branch_used: u32,
}

impl Capacity {
    /// A fresh node of this type: nothing requested, the DaemonSet pods
    /// counted, no branch ENIs advertised yet.
    pub fn fresh(t: &crate::catalog::InstanceType, max_pods: u32, daemonset_pods: u32) -> Self {
        Capacity {
            cpu_alloc: t.allocatable_cpu_millis.unwrap_or(0),
            mem_alloc: t.allocatable_memory_mib.unwrap_or(0),
            cpu_used: 0,
            mem_used: 0,
            pods: daemonset_pods,
            max_pods,
            branch_max: 0,
            branch_used: 0,
        }
    }

    /// Allocation score: requested CPU and memory fractions, in per-mille,
    /// summed (the `NodeResourcesFit` score with equal weights).
    pub fn key(&self) -> u64 {
        self.cpu_used * 1000 / self.cpu_alloc.max(1) + self.mem_used * 1000 / self.mem_alloc.max(1)
    }

    /// Room for a pod requesting `cpu`/`mem` (and a branch ENI when
    /// `branch`).
    pub fn fits(&self, cpu: u64, mem: u64, branch: bool) -> bool {
        self.pods < self.max_pods
            && self.cpu_used + cpu <= self.cpu_alloc
            && self.mem_used + mem <= self.mem_alloc
            && (!branch || self.branch_used < self.branch_max)
    }
}

/// A placement policy: which Ready node a pod goes to.
pub trait Placement {
    /// The node for a pod requesting `cpu`/`mem`, among `index` entries
    /// `(key, node)`; `cap` gives a node's capacity.
    fn choose(
        &self,
        index: &BTreeSet<(u64, u32)>,
        cpu: u64,
        mem: u64,
        branch: bool,
        cap: &dyn Fn(u32) -> Capacity,
    ) -> Option<u32>;
}

/// Least allocated first (spreads); ties: lowest node id (the real scheduler
/// picks at random among equal scores).
pub struct LeastAllocated;
/// Most allocated first (packs).
pub struct MostAllocated;

impl Placement for LeastAllocated {
    fn choose(
        &self,
        index: &BTreeSet<(u64, u32)>,
        cpu: u64,
        mem: u64,
        branch: bool,
        cap: &dyn Fn(u32) -> Capacity,
    ) -> Option<u32> {
        index
            .iter()
            .map(|&(_, n)| n)
            .find(|&n| cap(n).fits(cpu, mem, branch))
    }
}

impl Placement for MostAllocated {
    fn choose(
        &self,
        index: &BTreeSet<(u64, u32)>,
        cpu: u64,
        mem: u64,
        branch: bool,
        cap: &dyn Fn(u32) -> Capacity,
    ) -> Option<u32> {
        // Highest key first; among equal keys, lowest node id.
        let mut best: Option<(u64, u32)> = None;
        for &(k, n) in index.iter().rev() {
            if let Some((bk, _)) = best {
                if k < bk {
                    break;
                }
            }
            if cap(n).fits(cpu, mem, branch) {
                best = Some((k, n));
            }
        }
        best.map(|(_, n)| n)
    }
}

/// The policy for a scoring setting.
pub fn policy(s: Scoring) -> &'static dyn Placement {
    match s {
        Scoring::LeastAllocated => &LeastAllocated,
        Scoring::MostAllocated => &MostAllocated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_spreads_most_packs() {
        let caps = [
            Capacity {
                cpu_alloc: 1000,
                mem_alloc: 1000,
                cpu_used: 500,
                mem_used: 0,
                pods: 1,
                max_pods: 10,
                branch_max: 0,
                branch_used: 0,
            },
            Capacity {
                cpu_alloc: 1000,
                mem_alloc: 1000,
                cpu_used: 0,
                mem_used: 0,
                pods: 0,
                max_pods: 10,
                branch_max: 2,
                branch_used: 2,
            },
            Capacity {
                cpu_alloc: 1000,
                mem_alloc: 1000,
                cpu_used: 900,
                mem_used: 0,
                pods: 9,
                max_pods: 10,
                branch_max: 5,
                branch_used: 0,
            },
        ];
        let index: BTreeSet<(u64, u32)> = caps
            .iter()
            .enumerate()
            .map(|(i, c)| (c.key(), i as u32))
            .collect();
        let cap = |n: u32| caps[n as usize];
        assert_eq!(LeastAllocated.choose(&index, 100, 0, false, &cap), Some(1));
        assert_eq!(MostAllocated.choose(&index, 100, 0, false, &cap), Some(2));
        // Node 2 cannot take 200m more: the next most allocated.
        assert_eq!(MostAllocated.choose(&index, 200, 0, false, &cap), Some(0));
        assert_eq!(LeastAllocated.choose(&index, 2000, 0, false, &cap), None);
        // A pod with security groups needs a free branch ENI: node 1 has
        // used its 2, node 0 has none; node 2 has room.
        assert_eq!(LeastAllocated.choose(&index, 100, 0, true, &cap), Some(2));
    }
}
