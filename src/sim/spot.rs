//! Spot interruptions: when notices come (alone, or correlated per instance
//! type and zone), rebalance recommendations, and what each handler does on
//! the notice and at the deadline. docs/node-churn-model.md gives the
//! sources.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::{Event, PodState, Simulation, NONE};
use crate::cluster::autoscaling::{Autoscaler, SpotHandler, SpotSpec};
use crate::cluster::spec::ClusterSpec;
use crate::time::Ms;

/// Nodes of one pool, instance type and zone: what a correlated event hits.
struct Group {
    pool: u32,
    itype: u16,
    zone: u32,
    nodes: Vec<u32>,
}

/// Spot groups of every spot pool.
pub struct SpotState {
    /// Per pool: its first group (or `NONE`) and its zones.
    base: Vec<u32>,
    zones: Vec<Vec<u32>>,
    groups: Vec<Group>,
}

impl SpotState {
    pub fn new(spec: &ClusterSpec, zone_of: &[u32]) -> Self {
        let mut base = Vec::new();
        let mut zones = Vec::new();
        let mut groups = Vec::new();
        for (pi, p) in spec.pools.iter().enumerate() {
            let mut z: Vec<u32> = p.subnets.iter().map(|&s| zone_of[s]).collect();
            z.sort_unstable();
            z.dedup();
            if p.spot.is_some() {
                base.push(groups.len() as u32);
                for k in 0..p.types.len() {
                    for &zone in &z {
                        groups.push(Group {
                            pool: pi as u32,
                            itype: k as u16,
                            zone,
                            nodes: Vec::new(),
                        });
                    }
                }
            } else {
                base.push(NONE);
            }
            zones.push(z);
        }
        SpotState {
            base,
            zones,
            groups,
        }
    }

    fn group_of(&self, pool: u32, itype: u16, zone: u32) -> u32 {
        let z = &self.zones[pool as usize];
        let pos = z.iter().position(|&x| x == zone).expect("pool zone");
        self.base[pool as usize] + u32::from(itype) * z.len() as u32 + pos as u32
    }
}

/// An exponentially distributed delay for a hazard per millisecond, at
/// least 1 ms (inverse transform of one uniform draw, rounded to whole
/// milliseconds).
pub fn exp_delay_hazard(r: &mut ChaCha8Rng, hazard_per_ms: f64) -> Ms {
    let u: f64 = r.gen_range(f64::EPSILON..1.0);
    let ms = (-u.ln() / hazard_per_ms).round().max(1.0);
    // Beyond any run's end (10 years) is as good as never.
    Ms(if ms < 4e14 {
        ms as u64
    } else {
        400_000_000_000_000
    })
}

/// The mean time between correlated events of one group for a per-node
/// hazard `h` when each event hits a share `s` of the group: `s / h`, so
/// that each node's own rate stays `h` whatever the group's size.
pub fn group_event_hazard(spot: &SpotSpec) -> f64 {
    spot.hazard_per_ms() / spot.correlation_share
}

/// A draw uniform in `[lo, hi]` milliseconds.
fn uniform(r: &mut ChaCha8Rng, lo: Ms, hi: Ms) -> Ms {
    Ms(r.gen_range(lo.0..=hi.0))
}

impl Simulation {
    fn spot_spec(&self, pool: u32) -> Option<&SpotSpec> {
        self.spec.pools[pool as usize].spot.as_ref()
    }

    /// Schedules each correlated group's first event.
    pub(super) fn spot_init(&mut self) {
        for g in 0..self.spot.groups.len() {
            let pool = self.spot.groups[g].pool;
            let spot = self.spot_spec(pool).expect("spot pool");
            if spot.correlated {
                let h = group_event_hazard(spot);
                let at = exp_delay_hazard(&mut self.rng.spot_groups, h);
                if at < self.duration {
                    self.queue
                        .schedule(at, Event::SpotGroup { group: g as u32 });
                }
            }
        }
    }

    /// A spot node launched: it joins its group; without correlation its
    /// own notice (and the rebalance recommendation before it) is drawn.
    pub(super) fn spot_on_launch(&mut self, id: u32) {
        let node = self.nodes[id as usize].as_ref().expect("live");
        let (pool, itype, zone) = (node.pool, node.itype, self.zone_of[node.subnet as usize]);
        let Some(spot) = self.spot_spec(pool).cloned() else {
            return;
        };
        let g = self.spot.group_of(pool, itype, zone);
        let list = &mut self.spot.groups[g as usize].nodes;
        let node = self.nodes[id as usize].as_mut().expect("live");
        node.spot_group = g;
        node.group_pos = list.len() as u32;
        list.push(id);
        if spot.correlated {
            return;
        }
        let now = self.queue.now();
        let t = exp_delay_hazard(&mut self.rng.spot, spot.hazard_per_ms());
        let lead = uniform(
            &mut self.rng.spot,
            spot.rebalance_lead.0,
            spot.rebalance_lead.1,
        );
        let notice_at = now + t;
        if notice_at < self.duration {
            self.queue
                .schedule(notice_at, Event::SpotNotice { node: id });
            if notice_at.0 > now.0 + lead.0 {
                self.queue
                    .schedule(notice_at - lead, Event::SpotRebalance { node: id });
            }
        }
    }

    /// The instance is gone: it leaves its group.
    pub(super) fn spot_on_gone(&mut self, id: u32) {
        let node = self.nodes[id as usize].as_mut().expect("live");
        let g = std::mem::replace(&mut node.spot_group, NONE);
        if g == NONE {
            return;
        }
        let pos = node.group_pos as usize;
        let list = &mut self.spot.groups[g as usize].nodes;
        list.swap_remove(pos);
        if let Some(&moved) = list.get(pos) {
            self.nodes[moved as usize]
                .as_mut()
                .expect("group members are live")
                .group_pos = pos as u32;
        }
    }

    /// A correlated interruption: each node of the group is hit with the
    /// pool's `correlation_share`; the hit nodes' notices spread over the
    /// correlation window.
    pub(super) fn spot_group_event(&mut self, g: u32) {
        let grp = &self.spot.groups[g as usize];
        let (pool, itype, zone) = (grp.pool, grp.itype, grp.zone);
        let spot = self.spot_spec(pool).expect("spot pool").clone();
        let now = self.queue.now();
        let next = now + exp_delay_hazard(&mut self.rng.spot_groups, group_event_hazard(&spot));
        if next < self.duration {
            self.queue.schedule(next, Event::SpotGroup { group: g });
        }
        let members = self.spot.groups[g as usize].nodes.len();
        let mut hit = 0;
        for k in 0..members {
            let id = self.spot.groups[g as usize].nodes[k];
            // One draw per member, hit or not, so the stream does not
            // depend on which members were already noticed.
            let yes = self.rng.spot.gen_bool(spot.correlation_share);
            let delay = uniform(&mut self.rng.spot, Ms::ZERO, spot.correlation_window);
            let node = self.nodes[id as usize]
                .as_ref()
                .expect("group members are live");
            if yes && !node.noticed {
                hit += 1;
                self.queue
                    .schedule(now + delay, Event::SpotNotice { node: id });
            }
        }
        let p = &self.spec.pools[pool as usize];
        let zone_name = self
            .spec
            .subnets
            .iter()
            .zip(&self.zone_of)
            .find(|(_, &z)| z == zone)
            .map(|(s, _)| s.zone.clone())
            .unwrap_or_default();
        let detail = format!(
            "{hit} of {members} {} spot nodes of pool {} in {zone_name} interrupted within {}",
            p.types[itype as usize].instance.name, p.name, spot.correlation_window
        );
        self.log("spot_correlated_event", None, None, detail);
    }

    pub(super) fn spot_rebalance(&mut self, id: u32) {
        let Some(node) = self.nodes[id as usize].as_ref() else {
            return;
        };
        if node.noticed || node.lost {
            return;
        }
        let (pool, si) = (node.pool, node.subnet);
        let spot = self.spot_spec(pool).expect("spot pool");
        let (handler, drain) = (spot.handler, spot.rebalance_drain);
        let what = match handler {
            SpotHandler::Karpenter => "Karpenter does not act on it",
            SpotHandler::NodeTerminationHandler if drain => "cordoned and drained",
            SpotHandler::NodeTerminationHandler => "no action (rebalance_drain off)",
            SpotHandler::None => "no handler",
        };
        self.log("spot_rebalance", Some(si), Some(id), what.into());
        if handler == SpotHandler::NodeTerminationHandler && drain {
            self.cordon(id);
            self.drain(id);
        }
    }

    pub(super) fn spot_notice(&mut self, id: u32) {
        let Some(node) = self.nodes[id as usize].as_mut() else {
            return;
        };
        if node.noticed || node.lost {
            return;
        }
        node.noticed = true;
        let (pool, si) = (node.pool, node.subnet);
        let spot = self.spot_spec(pool).expect("spot pool");
        let (handler, notice) = (spot.handler, spot.notice);
        self.gauges[si as usize].spot_notices += 1;
        let now = self.queue.now();
        self.queue
            .schedule(now + notice, Event::SpotDeadline { node: id });
        let what = match handler {
            SpotHandler::Karpenter => "Karpenter taints and drains; its pods are provisioned for",
            SpotHandler::NodeTerminationHandler => {
                "cordoned and drained by the termination handler"
            }
            SpotHandler::None => "no handler: the node will vanish",
        };
        self.log(
            "spot_notice",
            Some(si),
            Some(id),
            format!("terminates in {notice}; {what}"),
        );
        if handler != SpotHandler::None {
            self.cordon(id);
            self.drain(id);
        }
    }

    /// The instance is reclaimed. With a handler it was drained and now
    /// terminates; without one it vanishes and its pods stay bound to the
    /// NotReady node until the unreachable toleration runs out.
    pub(super) fn spot_deadline(&mut self, id: u32) {
        let Some(node) = self.nodes[id as usize].as_ref() else {
            return;
        };
        if node.lost {
            return;
        }
        let (pool, si) = (node.pool, node.subnet);
        let handler = self.spot_spec(pool).expect("spot pool").handler;
        self.gauges[si as usize].spot_interruptions += 1;
        self.log("spot_interruption", Some(si), Some(id), String::new());
        if handler != SpotHandler::None {
            self.terminate_node(id, "spot interruption");
        } else {
            self.vanish(id);
        }
        if self.spec.pools[pool as usize].autoscaler != Autoscaler::Karpenter {
            // The Auto Scaling group replaces the lost instance.
            self.asg_fill(pool);
        }
    }

    /// The instance is gone without a drain.
    fn vanish(&mut self, id: u32) {
        if self.nodes[id as usize]
            .as_ref()
            .expect("live")
            .schedulable()
        {
            self.index_remove(id);
        }
        self.leave_ready(id);
        let node = self.nodes[id as usize].as_ref().expect("live");
        let si = node.subnet as usize;
        let pods = node.pods.len();
        for k in 0..pods {
            let pid = self.nodes[id as usize].as_ref().expect("live").pods[k].0;
            let pod = &mut self.pods[pid as usize];
            let w = pod.workload as usize;
            match pod.state {
                PodState::Running => {
                    let a = pod.addr().expect("running pods have an address");
                    pod.set_addr(None);
                    self.gauges[a.subnet.0 as usize].pods_running -= 1;
                    self.wl[w].running -= 1;
                    if let Some(b) = pod.branch() {
                        pod.set_branch(None);
                        // The branch ENI goes with the instance.
                        self.ec2.delete_eni(b).expect("branch ENI is live");
                    }
                }
                PodState::WaitingIp => {
                    self.gauges[si].pods_waiting_ip -= 1;
                    self.wl[w].waiting_ip -= 1;
                }
                _ => {}
            }
            self.pods[pid as usize].state = PodState::Lost;
        }
        let enis = self.release_instance(id);
        self.nodes[id as usize].as_mut().expect("live").lost = true;
        let wait = self.spec.nodes.not_ready_eviction;
        let now = self.queue.now();
        self.queue
            .schedule(now + wait, Event::EvictLost { node: id });
        self.log(
            "node_terminated",
            Some(si as u32),
            Some(id),
            format!(
                "spot interruption, no handler: {enis} ENIs released; {pods} pods lost until deleted in {wait}"
            ),
        );
    }

    /// The unreachable toleration ran out: the vanished node's pods are
    /// deleted and recreated, and the Node object goes.
    pub(super) fn evict_lost(&mut self, id: u32) {
        let Some(node) = self.nodes[id as usize].as_mut() else {
            return;
        };
        let pods = std::mem::take(&mut node.pods);
        let si = node.subnet;
        for &(pid, w) in &pods {
            self.delete_pod(pid);
            self.new_pod(w);
        }
        self.nodes[id as usize] = None;
        self.log(
            "pods_evicted",
            Some(si),
            Some(id),
            format!(
                "{} pods of the vanished node deleted and recreated",
                pods.len()
            ),
        );
        self.queue_schedule();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::stream;

    #[test]
    fn exponential_delays_have_the_hazards_mean() {
        let mut r = stream(7, "t");
        let h = 1.0 / 1000.0;
        let n = 20_000;
        let sum: u64 = (0..n).map(|_| exp_delay_hazard(&mut r, h).0).sum();
        let mean = sum as f64 / n as f64;
        // Standard error of the mean: 1000 / sqrt(20000) ≈ 7.
        assert!((mean - 1000.0).abs() < 35.0, "{mean}");
    }

    /// Spot notices drawn at launch (95% a month, not correlated) for
    /// nodes Karpenter consolidates within minutes (some 2,300 launched a
    /// day): after three days, thousands of them are queued, with their
    /// rebalance recommendations, for nodes long gone. The sweep drops
    /// exactly those. Over ten days a run that sweeps peaks at 4,269
    /// queued events; without sweeps, 7,316.
    #[test]
    fn events_of_gone_nodes_are_swept_from_the_queue() {
        let yaml = "name: sweep
duration: 10d
subnets:
  - {name: a, cidr: 10.0.0.0/18, zone: z1}
node_pools:
  - name: k
    autoscaler: karpenter
    instance_types: [m5.large]
    subnets: [a]
    capacity_type: spot
    spot: {interruption_rate: \"95%\", correlated: false}
    karpenter: {consolidate_after: 1m}
jobs:
  - {name: batch, per_hour: 400, run_time: [2m, 6m], cpu: \"1\"}
";
        let sc = crate::scenario::parse(yaml, std::path::Path::new("t.yaml")).unwrap();
        let count = |sim: &mut Simulation| {
            let (mut stale, mut all) = (0usize, 0usize);
            let nodes = &sim.nodes;
            sim.queue.retain(|e| {
                all += 1;
                let gone = super::super::node_of(e).is_some_and(|n| nodes[n as usize].is_none());
                stale += usize::from(gone);
                true
            });
            (stale, all)
        };
        // Without sweeps (the test driver does not sweep).
        let mut sim = Simulation::new(&sc, 1);
        sim.run_until(
            Ms::from_secs(3 * 86_400),
            &mut crate::sim::observe::NullSink,
        );
        let (stale, all) = count(&mut sim);
        assert!(stale > 1_000 && stale > all / 2, "{stale} stale of {all}");
        sim.drop_stale_events();
        assert_eq!(count(&mut sim), (0, all - stale));
        // The run loop sweeps as the queue grows.
        let peak = Simulation::new(&sc, 1)
            .run(&mut |_| {})
            .summary
            .peak_queue_len;
        assert!(peak < 5_000, "peak queue {peak}");
    }
}
