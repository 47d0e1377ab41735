//! The Cluster Autoscaler over managed node groups: scale-up on
//! unschedulable pods through an expander, scale-down of unneeded nodes,
//! provision timeouts. Decisions are pure functions tested without the
//! engine; docs/node-churn-model.md gives the sources.

use std::collections::BTreeSet;

use rand::Rng;

use super::karpenter::{plan_nodes, reschedulable, Demand, Room};
use super::{Event, Simulation};
use crate::cluster::autoscaling::{Autoscaler, Expander};
use crate::cluster::scheduler::Capacity;
use crate::cluster::spec::ClusterSpec;
use crate::time::Ms;

/// One way to scale up: `nodes` more of a group's nodes for pods
/// requesting `cpu`/`mem` in total.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScaleOption {
    pub pool: u32,
    pub nodes: u32,
    pub pods: u32,
    /// Allocatable per node.
    pub node_cpu: u64,
    pub node_mem: u64,
    /// Requested by the pods the option schedules.
    pub cpu: u64,
    pub mem: u64,
}

/// `least-waste` (cluster-autoscaler `expander/waste`): the options with
/// the smallest wasted CPU fraction plus wasted memory fraction over the
/// new nodes; several on an exact tie.
pub fn least_waste(options: &[ScaleOption]) -> Vec<usize> {
    let waste = |o: &ScaleOption| {
        let cpu = (o.node_cpu * u64::from(o.nodes)) as f64;
        let mem = (o.node_mem * u64::from(o.nodes)) as f64;
        (cpu - o.cpu as f64) / cpu + (mem - o.mem as f64) / mem
    };
    let mut best: Vec<usize> = Vec::new();
    let mut score = f64::INFINITY;
    for (k, o) in options.iter().enumerate() {
        let w = waste(o);
        if w < score {
            score = w;
            best.clear();
            best.push(k);
        } else if w == score {
            best.push(k);
        }
    }
    best
}

/// The larger of requested CPU and memory over allocatable, in
/// per-mille (the scale-down utilization).
pub fn utilization_permille(c: &Capacity) -> u64 {
    let cpu = c.cpu_used * 1000 / c.cpu_alloc.max(1);
    let mem = c.mem_used * 1000 / c.mem_alloc.max(1);
    cpu.max(mem)
}

/// The Cluster Autoscaler's state.
pub struct CaState {
    pools: Vec<u32>,
    last_scale_up: Option<Ms>,
    backoff_until: Vec<Ms>,
    /// Per pool: schedulable nodes under the utilization threshold, by the
    /// time they went under.
    under: Vec<BTreeSet<(Ms, u32)>>,
    /// The threshold in per-mille.
    threshold: u64,
}

impl CaState {
    pub fn new(spec: &ClusterSpec) -> Self {
        CaState {
            pools: spec
                .pools
                .iter()
                .enumerate()
                .filter(|(_, p)| p.autoscaler == Autoscaler::ClusterAutoscaler)
                .map(|(i, _)| i as u32)
                .collect(),
            last_scale_up: None,
            backoff_until: vec![Ms::ZERO; spec.pools.len()],
            under: vec![BTreeSet::new(); spec.pools.len()],
            threshold: (spec.cluster_autoscaler.scale_down_utilization_threshold * 1000.0).round()
                as u64,
        }
    }
}

impl Simulation {
    #[inline]
    fn is_ca(&self, pool: u32) -> bool {
        self.spec.pools[pool as usize].autoscaler == Autoscaler::ClusterAutoscaler
    }

    pub(super) fn cluster_autoscaler_init(&mut self) {
        if !self.ca.pools.is_empty() {
            let every = self.spec.cluster_autoscaler.scan_interval;
            self.queue.schedule(every, Event::ClusterAutoscalerScan);
        }
    }

    /// Keeps the node's place among the unneeded candidates current.
    #[inline]
    pub(super) fn cluster_autoscaler_node_changed(&mut self, id: u32, pool: u32) {
        if self.is_ca(pool) {
            self.cluster_autoscaler_node_moved(id, pool);
        }
    }

    /// `cluster_autoscaler_node_changed` for a node of a Cluster
    /// Autoscaler pool (out of line: every bind and delete asks).
    #[inline(never)]
    fn cluster_autoscaler_node_moved(&mut self, id: u32, pool: u32) {
        let node = self.nodes[id as usize].as_ref().expect("live");
        let under =
            node.schedulable() && !node.lost && utilization_permille(&node.cap) < self.ca.threshold;
        let since = node.under_since;
        let now = self.queue.now();
        let set = &mut self.ca.under[pool as usize];
        match (since, under) {
            (None, true) => {
                set.insert((now, id));
                self.nodes[id as usize].as_mut().expect("live").under_since = Some(now);
            }
            (Some(t), false) => {
                set.remove(&(t, id));
                self.nodes[id as usize].as_mut().expect("live").under_since = None;
            }
            _ => {}
        }
    }

    pub(super) fn cluster_autoscaler_node_gone(&mut self, id: u32) {
        let node = self.nodes[id as usize].as_mut().expect("live");
        if let Some(t) = node.under_since.take() {
            self.ca.under[node.pool as usize].remove(&(t, id));
        }
    }

    /// A launch for the group failed again: after `max_node_provision_time`
    /// the Cluster Autoscaler gives up on it (the group's target shrinks
    /// back) and backs the group off. True when it gave up.
    pub(super) fn cluster_autoscaler_timed_out(&mut self, pool: u32, asked: Ms) -> bool {
        let c = &self.spec.cluster_autoscaler;
        let now = self.queue.now();
        if now < asked + c.max_node_provision_time {
            return false;
        }
        let backoff = c.node_group_backoff;
        let pi = pool as usize;
        self.desired[pi] = self.desired[pi]
            .saturating_sub(1)
            .max(self.spec.pools[pi].min_size);
        self.ca.backoff_until[pi] = now + backoff;
        let detail = format!(
            "pool {}: no node after {}; target back to {}, group backed off for {backoff}",
            self.spec.pools[pi].name, c.max_node_provision_time, self.desired[pi]
        );
        self.log("scale_up_timeout", None, None, detail);
        true
    }

    /// A node not registered within `max_node_provision_time`: the
    /// autoscaler removes it, shrinks the group back and backs it off.
    pub(super) fn cluster_autoscaler_launch_timeout(&mut self, id: u32) {
        let pool = self.nodes[id as usize].as_ref().expect("live").pool;
        let pi = pool as usize;
        let c = &self.spec.cluster_autoscaler;
        let (limit, backoff) = (c.max_node_provision_time, c.node_group_backoff);
        let now = self.queue.now();
        self.desired[pi] = self.desired[pi]
            .saturating_sub(1)
            .max(self.spec.pools[pi].min_size);
        self.ca.backoff_until[pi] = now + backoff;
        let detail = format!(
            "pool {}: {} not registered after {limit}; target back to {}, group backed off for {backoff}",
            self.spec.pools[pi].name,
            super::node_name(id),
            self.desired[pi]
        );
        self.log("scale_up_timeout", None, None, detail);
        self.terminate_node(id, "max_node_provision_time");
    }

    /// One loop: scale up for unschedulable pods; if none, scale down.
    pub(super) fn cluster_autoscaler_scan(&mut self) {
        let now = self.queue.now();
        let next = now + self.spec.cluster_autoscaler.scan_interval;
        if next < self.duration {
            self.queue.schedule(next, Event::ClusterAutoscalerScan);
        }
        if !self.cluster_autoscaler_scale_up(now) {
            self.cluster_autoscaler_scale_down(now);
        }
    }

    /// The CA pools a workload's pods may go to.
    fn ca_pools_for(&self, wi: usize) -> Vec<u32> {
        match self.spec.workloads[wi].pool {
            Some(p) if self.is_ca(p as u32) => vec![p as u32],
            Some(_) => Vec::new(),
            None => self.ca.pools.clone(),
        }
    }

    fn cluster_autoscaler_scale_up(&mut self, now: Ms) -> bool {
        // Unschedulable pods, less what upcoming nodes will take.
        let mut demand: Vec<(usize, Demand)> = Vec::new();
        for wi in 0..self.spec.workloads.len() {
            if self.unschedulable[wi]
                && self.pending_count[wi] > 0
                && !self.ca_pools_for(wi).is_empty()
            {
                let w = &self.spec.workloads[wi];
                demand.push((
                    wi,
                    Demand {
                        cpu: w.cpu_millis,
                        mem: w.memory_mib,
                        count: self.pending_count[wi],
                    },
                ));
            }
        }
        if demand.is_empty() {
            return false;
        }
        for k in 0..self.ca.pools.len() {
            let pool = self.ca.pools[k];
            let pi = pool as usize;
            let room = self.type_room_of(pool);
            let upcoming = self.booting[pi].len() as u32 + self.pool_launching[pi];
            for _ in 0..upcoming {
                let mut r = room;
                for (wi, d) in demand.iter_mut() {
                    if self.ca_pools_for(*wi).contains(&pool) {
                        r.fill(std::slice::from_mut(d));
                    }
                }
            }
        }
        if demand.iter().all(|(_, d)| d.count == 0) {
            return false;
        }
        // One option per group that can grow.
        let mut options: Vec<ScaleOption> = Vec::new();
        for k in 0..self.ca.pools.len() {
            let pool = self.ca.pools[k];
            let pi = pool as usize;
            let p = &self.spec.pools[pi];
            if self.ca.backoff_until[pi] > now || self.desired[pi] >= p.max_size {
                continue;
            }
            let mut mine: Vec<Demand> = demand
                .iter()
                .filter(|(wi, _)| self.ca_pools_for(*wi).contains(&pool))
                .map(|(_, d)| *d)
                .collect();
            let before: Vec<Demand> = mine.clone();
            let room = self.type_room_of(pool);
            let plan = plan_nodes(&[room], &mut mine, p.max_size - self.desired[pi]);
            if plan.is_empty() {
                continue;
            }
            let (mut pods, mut cpu, mut mem) = (0u32, 0u64, 0u64);
            for (b, a) in before.iter().zip(&mine) {
                let n = b.count - a.count;
                pods += n;
                cpu += b.cpu * u64::from(n);
                mem += b.mem * u64::from(n);
            }
            let t = &p.types[0].instance;
            options.push(ScaleOption {
                pool,
                nodes: plan.len() as u32,
                pods,
                node_cpu: t.allocatable_cpu_millis.unwrap_or(1),
                node_mem: t.allocatable_memory_mib.unwrap_or(1),
                cpu,
                mem,
            });
        }
        if options.is_empty() {
            return false;
        }
        let expander = self.spec.cluster_autoscaler.expander;
        let best = match expander {
            Expander::LeastWaste => least_waste(&options),
            Expander::Random => (0..options.len()).collect(),
        };
        // Ties (and the random expander) are broken at random.
        let pick = if best.len() == 1 {
            best[0]
        } else {
            best[self.rng.cluster_autoscaler.gen_range(0..best.len())]
        };
        let o = options[pick];
        let pi = o.pool as usize;
        self.desired[pi] += o.nodes;
        self.ca.last_scale_up = Some(now);
        let name = match expander {
            Expander::LeastWaste => "least-waste",
            Expander::Random => "random",
        };
        let detail = format!(
            "pool {}: +{} nodes (target {}) for {} unschedulable pods; expander {name} among {} groups",
            self.spec.pools[pi].name,
            o.nodes,
            self.desired[pi],
            o.pods,
            options.len()
        );
        self.log("scale_up", None, None, detail);
        self.asg_fill(o.pool);
        true
    }

    fn type_room_of(&self, pool: u32) -> Room {
        let t = &self.spec.pools[pool as usize].types[0];
        Room {
            cpu: t.instance.allocatable_cpu_millis.unwrap_or(0),
            mem: t.instance.allocatable_memory_mib.unwrap_or(0),
            pods: t.max_pods.saturating_sub(self.spec.nodes.daemonset_pods),
        }
    }

    /// Unneeded nodes (under the threshold for `scale_down_unneeded_time`,
    /// their pods fitting elsewhere in the group) go: empty ones up to
    /// `max_empty_bulk_delete`, others up to `max_drain_parallelism`; not
    /// within `scale_down_delay_after_add` of a scale-up, never below the
    /// group's minimum.
    fn cluster_autoscaler_scale_down(&mut self, now: Ms) {
        let c = self.spec.cluster_autoscaler.clone();
        if self
            .ca
            .last_scale_up
            .is_some_and(|t| now < t + c.scale_down_delay_after_add)
        {
            return;
        }
        let daemons = self.spec.nodes.daemonset_pods;
        let (mut empty_done, mut drain_done) = (0u32, 0u32);
        for k in 0..self.ca.pools.len() {
            let pool = self.ca.pools[k];
            let pi = pool as usize;
            let candidates: Vec<u32> = self.ca.under[pi]
                .iter()
                .take_while(|&&(t, _)| now >= t + c.scale_down_unneeded_time)
                .map(|&(_, id)| id)
                .collect();
            for id in candidates {
                if self.desired[pi] <= self.spec.pools[pi].min_size {
                    break;
                }
                let node = self.nodes[id as usize]
                    .as_ref()
                    .expect("candidates are live");
                let empty = node.cap.pods == daemons;
                if empty {
                    if empty_done >= c.max_empty_bulk_delete {
                        continue;
                    }
                } else {
                    if drain_done >= c.max_drain_parallelism {
                        continue;
                    }
                    let demand = self.node_demand(id);
                    let others =
                        self.ready_pool[pi]
                            .iter()
                            .filter(|&(_, o)| o != id)
                            .map(|(_, o)| {
                                Room::of(&self.nodes[o as usize].as_ref().expect("indexed").cap)
                            });
                    if !reschedulable(&demand, others) {
                        continue;
                    }
                }
                let pods = node.cap.pods - daemons;
                let util = utilization_permille(&node.cap);
                let si = node.subnet;
                if empty {
                    empty_done += 1;
                } else {
                    drain_done += 1;
                }
                self.desired[pi] -= 1;
                self.gauges[si as usize].scale_downs += 1;
                self.log(
                    "scale_down",
                    Some(si),
                    Some(id),
                    format!(
                        "pool {}: utilization {}.{}% under the threshold for {}; {pods} pods move; target {}",
                        self.spec.pools[pi].name,
                        util / 10,
                        util % 10,
                        c.scale_down_unneeded_time,
                        self.desired[pi]
                    ),
                );
                self.terminate_node(id, "scale down");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opt(pool: u32, nodes: u32, node_cpu: u64, node_mem: u64, cpu: u64, mem: u64) -> ScaleOption {
        ScaleOption {
            pool,
            nodes,
            pods: 1,
            node_cpu,
            node_mem,
            cpu,
            mem,
        }
    }

    #[test]
    fn least_waste_picks_the_tightest_fit() {
        // 3 pods of 1 CPU / 1 GiB: two 2-CPU nodes waste 1 CPU of 4;
        // one 4-CPU node wastes 1 of 4 too, but less memory.
        let a = opt(0, 2, 2000, 8192, 3000, 3072);
        let b = opt(1, 1, 4000, 4096, 3000, 3072);
        assert_eq!(least_waste(&[a, b]), vec![1]);
        // Identical options tie.
        assert_eq!(least_waste(&[a, a]), vec![0, 1]);
    }

    #[test]
    fn utilization_is_the_larger_share() {
        let c = Capacity {
            cpu_alloc: 2000,
            mem_alloc: 8000,
            cpu_used: 500,
            mem_used: 6000,
            pods: 3,
            max_pods: 29,
            branch_max: 0,
            branch_used: 0,
        };
        assert_eq!(utilization_permille(&c), 750);
    }
}
