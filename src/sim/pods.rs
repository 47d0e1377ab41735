//! Pods: creation, kube-scheduler's passes, binding, sandboxes (an
//! address from ipamd, or a branch ENI), and deletion.

use super::*;
use crate::cluster::scheduler::Placement;

/// Fitting nodes above which a workload's scheduling memo is dropped for
/// the index (see `schedule_pending`).
const MEMO_MAX: usize = 16;

impl Simulation {
    // ---- pods ----

    /// Asks for a kube-scheduler pass at the end of the current event
    /// (`settle`), when pods are pending.
    pub(super) fn queue_schedule(&mut self) {
        if self.pods_pending > 0 {
            self.schedule_queued = true;
        }
    }

    /// What an event set off, in the same millisecond: the scheduler's
    /// passes and the first sandbox of each pod they bound, in bind order,
    /// until neither is left (a sandbox can start a rollout's next step,
    /// whose pods need a pass). Run at the end of every event, so a pod's
    /// lifecycle is as many events as it has delays, not one per step.
    pub(super) fn settle(&mut self) {
        loop {
            if !self.creating.is_empty() {
                let mut list = std::mem::take(&mut self.creating);
                for &(pid, gen) in &list {
                    self.pod_sandbox(pid, gen);
                }
                // A sandbox binds nothing: the list is back, with its room.
                debug_assert!(self.creating.is_empty());
                list.clear();
                self.creating = list;
            } else if self.schedule_queued {
                self.schedule_pending();
            } else {
                return;
            }
        }
    }

    pub(super) fn new_pod(&mut self, workload: u32) -> u32 {
        let pod = Pod {
            workload,
            old: false,
            running_since: Ms::ZERO,
            branch_eni: NONE,
            state: PodState::Pending,
            node: u32::MAX,
            slot: 0,
            addr_subnet: NONE,
            addr_offset: 0,
            retries: 0,
            gen: 0,
        };
        let id = match self.free_pods.pop() {
            Some(id) => {
                let gen = self.pods[id as usize].gen + 1;
                self.pods[id as usize] = Pod { gen, ..pod };
                id
            }
            None => {
                self.pods.push(pod);
                self.pods.len() as u32 - 1
            }
        };
        self.pending[workload as usize].push_back(id);
        self.queued_wl.insert(workload);
        self.pods_pending += 1;
        self.pending_count[workload as usize] += 1;
        let gen = self.pods[id as usize].gen;
        let wi = workload as usize;
        self.wl[wi].live += 1;
        if !self.tracked[wi] {
            return id;
        }
        // Entries of deleted pods are skipped where the list is read; drop
        // them once they outnumber the live ones, so the list stays the
        // size of the workload however long the run.
        let list = &mut self.workload_pods[wi];
        if list.len() > 2 * self.wl[wi].live as usize + 64 {
            let pods = &self.pods;
            list.retain(|&(p, g)| {
                pods[p as usize].gen == g && pods[p as usize].state != PodState::Free
            });
        }
        list.push_back((id, gen));
        id
    }

    /// One kube-scheduler pass: per workload, bind pending pods in order
    /// until one fits nowhere (the rest of that workload, with the same
    /// requests and selector, would not fit either).
    /// The scheduler's index for workload `wi`'s pods: its pool's, or every
    /// Ready node's.
    pub(super) fn index_for(&self, wi: usize) -> &ReadyIndex {
        match self.spec.workloads[wi].pool {
            Some(p) => &self.ready_pool[p],
            None if self.ready_pool.len() == 1 => &self.ready_pool[0],
            None => &self.ready_all,
        }
    }

    pub(super) fn schedule_pending(&mut self) {
        self.schedule_queued = false;
        let policy = scheduler::policy(self.spec.scheduler.scoring);
        let most = self.spec.scheduler.scoring == crate::cluster::spec::Scoring::MostAllocated;
        // The log of nodes that gained room only matters while some
        // workload remembers a failure; keep it bounded by the live nodes
        // (clearing it only sends workloads back to the index: exact).
        let live: u32 = self.gauges.iter().map(|g| g.nodes).sum();
        if self.gained.len() > 4 * live as usize + 4096 {
            self.gained.clear();
            self.unfit.fill(None);
            self.cands.iter_mut().for_each(Vec::clear);
        }
        // The workloads with pods in their Pending queue, in order (for the
        // others the pass would only find `unschedulable` already false).
        let mut from = 0;
        while let Some(w) = self.queued_wl.next_from(from) {
            from = w + 1;
            let wi = w as usize;
            if self.unfit[wi] == Some(self.gained.len())
                && self.cands[wi].is_empty()
                && self.pending_count[wi] > 0
            {
                // No node gained room since this workload's pods last
                // fitted nowhere: they still fit nowhere (what the loop
                // below would find, without reading a pod or a node).
                self.unschedulable[wi] = true;
                self.karpenter_unschedulable(wi);
                continue;
            }
            while let Some(&pid) = self.pending[wi].front() {
                let pod = self.pods[pid as usize];
                if pod.state != PodState::Pending || pod.workload as usize != wi {
                    self.pending[wi].pop_front(); // deleted while pending
                    continue;
                }
                let w = &self.spec.workloads[wi];
                let (cpu, mem, sgp) = (w.cpu_millis, w.memory_mib, w.security_groups);
                let index = self.index_for(wi);
                let nodes = &self.nodes;
                let cap = |n: u32| {
                    nodes[n as usize]
                        .as_ref()
                        .map(|x| x.cap)
                        .unwrap_or_default()
                };
                let choice = match self.unfit[wi] {
                    // Only nodes that gained room since this workload's
                    // pods last fitted nowhere can take one now.
                    Some(from) => {
                        let pool = w.pool;
                        // The nodes that could fit at the last look, and
                        // those that gained room since; keep those that
                        // fit now.
                        let old = std::mem::take(&mut self.cands[wi]);
                        let mut list = std::mem::take(&mut self.cands_buf);
                        list.clear();
                        self.mark_epoch = self.mark_epoch.wrapping_add(1);
                        if self.mark_epoch == 0 {
                            self.mark.fill(0);
                            self.mark_epoch = 1;
                        }
                        if self.mark.len() < nodes.len() {
                            self.mark.resize(nodes.len(), 0);
                        }
                        let (mark, epoch) = (&mut self.mark, self.mark_epoch);
                        let mut best: Option<(u64, u32)> = None;
                        for &n in old.iter().chain(&self.gained[from..]) {
                            // Each node once (a stamp instead of a sort).
                            if mark[n as usize] == epoch {
                                continue;
                            }
                            mark[n as usize] = epoch;
                            let Some(x) = nodes[n as usize].as_ref() else {
                                continue;
                            };
                            if !x.schedulable()
                                || pool.is_some_and(|p| p != x.pool as usize)
                                || !x.cap.fits(cpu, mem, sgp)
                            {
                                continue;
                            }
                            list.push(n);
                            let k = x.key;
                            let better = match (best, most) {
                                (None, _) => true,
                                (Some((bk, bn)), false) => (k, n) < (bk, bn),
                                (Some((bk, bn)), true) => k > bk || (k == bk && n < bn),
                            };
                            if better {
                                best = Some((k, n));
                            }
                        }
                        self.cands_buf = old;
                        if list.len() > MEMO_MAX {
                            // Room on many nodes again: the index finds a
                            // fit at once, where the list would be scanned
                            // whole for every pod. Both give the same node.
                            self.unfit[wi] = None;
                            self.cands_buf = list;
                        } else {
                            self.unfit[wi] = Some(self.gained.len());
                            self.cands[wi] = list;
                        }
                        best.map(|b| b.1)
                    }
                    None => policy.choose(index, cpu, mem, sgp, cap),
                };
                match choice {
                    Some(n) => {
                        self.pending[wi].pop_front();
                        self.bind(pid, n);
                    }
                    None => {
                        // Unschedulable: what the autoscalers watch.
                        self.unfit[wi] = Some(self.gained.len());
                        self.unschedulable[wi] = true;
                        self.karpenter_unschedulable(wi);
                        break;
                    }
                }
            }
            if self.pending[wi].is_empty() {
                self.unschedulable[wi] = false;
                self.queued_wl.remove(w);
            }
        }
    }

    pub(super) fn reindex<F: FnOnce(&mut Capacity)>(&mut self, n: u32, f: F) {
        let now = self.queue.now();
        let node = self.nodes[n as usize].as_mut().expect("live node");
        let before = node.cap;
        let old = (node.key, n);
        f(&mut node.cap);
        node.key = node.cap.key_by(&node.divisors);
        node.last_pod_event = now;
        let c = node.cap;
        let new = (node.key, n);
        let pool = node.pool;
        let schedulable = node.schedulable();
        // `karpenter_touch`, with the node in hand.
        if !node.karpenter_filed() {
            self.karpenter_refile(n, old.0);
        }
        let roomier = c.cpu_used < before.cpu_used
            || c.mem_used < before.mem_used
            || c.pods < before.pods
            || c.branch_used < before.branch_used
            || c.branch_max > before.branch_max;
        if schedulable && roomier {
            self.gained.push(n);
        }
        self.karpenter_node_changed(pool);
        self.cluster_autoscaler_node_changed(n, pool);
        if schedulable && old != new {
            let pool = pool as usize;
            if self.ready_pool.len() > 1 {
                self.ready_all.remove(&old);
                self.ready_all.insert(new);
            }
            self.ready_pool[pool].remove(&old);
            self.ready_pool[pool].insert(new);
        }
    }

    pub(super) fn bind(&mut self, pid: u32, n: u32) {
        let w = &self.spec.workloads[self.pods[pid as usize].workload as usize];
        let (cpu, mem, sgp) = (w.cpu_millis, w.memory_mib, u32::from(w.security_groups));
        self.reindex(n, |c| {
            c.cpu_used += cpu;
            c.mem_used += mem;
            c.pods += 1;
            c.branch_used += sgp;
        });
        let list = &mut self.nodes[n as usize].as_mut().expect("live node").pods;
        let slot = list.len() as u32;
        list.push((pid, self.pods[pid as usize].workload));
        let pod = &mut self.pods[pid as usize];
        pod.state = PodState::Creating;
        pod.node = n;
        pod.slot = slot;
        self.pods_pending -= 1;
        self.pending_count[pod.workload as usize] -= 1;
        let gen = pod.gen;
        // Its first sandbox: once this pass is over (`settle`).
        self.creating.push((pid, gen));
    }

    pub(super) fn pod_sandbox(&mut self, pid: u32, gen: u32) {
        let now = self.queue.now();
        let pod = self.pods[pid as usize];
        if pod.gen != gen || !matches!(pod.state, PodState::Creating | PodState::WaitingIp) {
            return;
        }
        let was_waiting = pod.state == PodState::WaitingIp;
        if self.spec.workloads[pod.workload as usize].security_groups {
            self.branch_sandbox(pid, gen, was_waiting);
            return;
        }
        let node = self.nodes[pod.node as usize]
            .as_mut()
            .expect("bound to a live node");
        let si = node.subnet;
        let ipam = node.ipam.as_mut().expect("Ready nodes run ipamd");
        match ipam.assign_pod(now, &mut self.rng.ipamd) {
            Some(addr) => {
                if let Some(t) = ipam.on_pod_change(now, &self.spec.cni) {
                    self.queue.schedule(t, Event::IpamdTick { node: pod.node });
                }
                self.pod_running(pid, gen, addr, was_waiting, si);
            }
            None => self.pod_waiting(pid, gen, was_waiting, si),
        }
    }

    /// The pod's sandbox got `addr`: it runs.
    pub(super) fn pod_running(
        &mut self,
        pid: u32,
        gen: u32,
        addr: PodAddr,
        was_waiting: bool,
        si: u32,
    ) {
        let now = self.queue.now();
        let p = &mut self.pods[pid as usize];
        p.state = PodState::Running;
        p.set_addr(Some(addr));
        p.running_since = now;
        let w = p.workload as usize;
        self.wl[w].running += 1;
        self.job_pod_running(pid, gen, w as u32);
        self.rollout_poke(w as u32);
        if was_waiting {
            self.gauges[si as usize].pods_waiting_ip -= 1;
            self.wl[w].waiting_ip -= 1;
        }
        // Counted in the subnet its address is in.
        self.gauges[addr.subnet.0 as usize].pods_running += 1;
    }

    /// The pod's sandbox got no address: ContainerCreating, retried with
    /// kubelet's back-off.
    pub(super) fn pod_waiting(&mut self, pid: u32, gen: u32, was_waiting: bool, si: u32) {
        let now = self.queue.now();
        let k = &self.spec.kubelet;
        let w = self.pods[pid as usize].workload as usize;
        if !was_waiting {
            self.gauges[si as usize].pods_waiting_ip += 1;
            self.wl[w].waiting_ip += 1;
        }
        let p = &mut self.pods[pid as usize];
        p.state = PodState::WaitingIp;
        let shift = p.retries.min(20);
        let delay = Ms(k.retry_base.0.saturating_mul(1 << shift)).min(k.retry_max);
        p.retries = p.retries.saturating_add(1);
        self.queue
            .schedule(now + delay, Event::PodSandbox { pod: pid, gen });
    }

    /// A pod of workload `w` leaves node `n`: its requests are returned.
    fn unbind(&mut self, n: u32, w: u32) {
        let w = &self.spec.workloads[w as usize];
        let (cpu, mem, sgp) = (w.cpu_millis, w.memory_mib, u32::from(w.security_groups));
        self.reindex(n, |c| {
            c.cpu_used -= cpu;
            c.mem_used -= mem;
            c.pods -= 1;
            c.branch_used -= sgp;
        });
    }

    pub(super) fn delete_pod(&mut self, pid: u32) {
        let now = self.queue.now();
        let pod = self.pods[pid as usize];
        match pod.state {
            PodState::Free => return,
            PodState::Pending => {
                self.pods_pending -= 1;
                self.pending_count[pod.workload as usize] -= 1;
            }
            PodState::Lost => self.unbind(pod.node, pod.workload),
            PodState::Creating | PodState::WaitingIp | PodState::Running => {
                self.unbind(pod.node, pod.workload);
                if let Some(b) = pod.branch() {
                    // The branch ENI goes with the pod.
                    self.ec2.delete_eni(b).expect("branch ENI is live");
                    self.pods[pid as usize].set_branch(None);
                }
                let node = self.nodes[pod.node as usize].as_mut().expect("live node");
                let si = node.subnet as usize;
                // Not there when the node's list was taken (a drain).
                let i = pod.slot as usize;
                if node.pods.get(i).is_some_and(|&(p, _)| p == pid) {
                    node.pods.swap_remove(i);
                    if let Some(&(moved, _)) = node.pods.get(i) {
                        self.pods[moved as usize].slot = i as u32;
                    }
                }
                if let (Some(addr), Some(_)) = (pod.addr(), pod.branch()) {
                    self.gauges[addr.subnet.0 as usize].pods_running -= 1;
                    self.wl[pod.workload as usize].running -= 1;
                } else if let Some(addr) = pod.addr() {
                    // No ipamd: the node is being terminated (see
                    // `terminate_node`).
                    if let Some(ipam) = node.ipam.as_mut() {
                        ipam.release_pod(now, addr, &self.spec.cni);
                        if let Some(t) = ipam.on_pod_change(now, &self.spec.cni) {
                            self.queue.schedule(t, Event::IpamdTick { node: pod.node });
                        }
                    }
                    self.gauges[addr.subnet.0 as usize].pods_running -= 1;
                    self.wl[pod.workload as usize].running -= 1;
                } else if pod.state == PodState::WaitingIp {
                    self.gauges[si].pods_waiting_ip -= 1;
                    self.wl[pod.workload as usize].waiting_ip -= 1;
                }
            }
        }
        self.pods[pid as usize].state = PodState::Free;
        self.wl[pod.workload as usize].live -= 1;
        self.free_pods.push(pid);
        self.rollout_poke(pod.workload);
        self.queue_schedule();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim_of(yaml: &str) -> Simulation {
        let sc = crate::scenario::parse(yaml, std::path::Path::new("t.yaml")).unwrap();
        Simulation::new(&sc, 1)
    }

    /// A restart deletes a pod and creates its replacement; within that
    /// one event the replacement is bound and its sandbox has run (an
    /// address: Running), with no event queued for either step.
    #[test]
    fn a_pod_is_bound_and_sandboxed_in_the_event_that_made_it() {
        let yaml = "name: settle
duration: 2h
subnets:
  - {name: a, cidr: 10.0.0.0/22, zone: z}
node_pools:
  - {name: p, instance_type: m5.large, subnets: [a], size: 2}
workloads:
  - {name: web, replicas: 4, restart_every: 10h}
";
        let mut sim = sim_of(yaml);
        sim.run_until(Ms::from_secs(600), &mut observe::NullSink);
        assert_eq!(sim.wl[0].running, 4);
        let queued = sim.queue.len();
        let now = sim.queue.now();
        sim.handle(now, Event::WorkloadReplace { workload: 0 });
        assert_eq!(sim.pods_pending, 0, "bound in the same event");
        assert_eq!(sim.wl[0].running, 4, "its sandbox ran: Running");
        assert!(sim.creating.is_empty() && !sim.schedule_queued);
        // Queued: the next replacement, and ipamd's pool decision on the
        // node the old pod left and the one the new pod joined; nothing
        // for the pod itself.
        assert!(
            sim.queue.len() <= queued + 3,
            "{} {queued}",
            sim.queue.len()
        );
    }

    /// 600 job pods an hour for 12 hours: 7,200 pods pass, about 175 at
    /// once; and 150 replicas rolled every 30 minutes: 3,600 replacements.
    /// The rolled workload's list of pods stays about the
    /// size of the workload (it held every pod ever made before), the job
    /// template has none (nothing picks its pods by age), and every bound
    /// pod sits at its `slot` in its node's list, which holds exactly the
    /// bound pods.
    #[test]
    fn pod_lists_stay_the_size_of_what_is_live() {
        let yaml = "name: jobs
duration: 12h
subnets:
  - {name: a, cidr: 10.0.0.0/20, zone: z}
node_pools:
  - {name: ci, instance_type: m5.2xlarge, subnets: [a], size: 8}
jobs:
  - {name: builds, per_hour: 600, run_time: [5m, 30m], cpu: 100m}
workloads:
  - {name: web, replicas: 150, cpu: 100m, rollout: {every: 30m}}
";
        let mut sim = sim_of(yaml);
        sim.run_until(Ms::from_secs(12 * 3600), &mut observe::NullSink);
        let index = |name: &str| {
            sim.spec
                .workloads
                .iter()
                .position(|w| w.name == name)
                .unwrap()
        };
        let (w, web) = (index("builds"), index("web"));
        let live = sim.wl[w].live as usize;
        assert!((100..300).contains(&live), "{live}");
        assert!(sim.workload_pods[w].is_empty(), "job pods are not listed");
        let live = sim.wl[web].live as usize;
        assert_eq!(live, 150);
        // Compacted when it passes twice the live pods and 64; mid-rollout
        // the live pods are up to 25% more (maxSurge: 38). Without the
        // compaction it would hold every pod made: 150 and 150 more at
        // each of 24 rollouts, some 3,750.
        let listed = sim.workload_pods[web].len();
        let peak = live + 38;
        assert!(
            (live..=2 * peak + 65).contains(&listed),
            "{listed} entries for {live} pods"
        );
        let mut bound = 0;
        for (id, p) in sim.pods.iter().enumerate() {
            if matches!(
                p.state,
                PodState::Creating | PodState::WaitingIp | PodState::Running
            ) {
                let node = sim.nodes[p.node as usize].as_ref().unwrap();
                assert_eq!(node.pods[p.slot as usize], (id as u32, p.workload));
                bound += 1;
            }
        }
        let in_lists: usize = sim.nodes.iter().flatten().map(|n| n.pods.len()).sum();
        assert_eq!(in_lists, bound);
    }

    /// The scoring setting reaches the scheduler: 12 small pods on four
    /// m5.large spread 3 a node when least allocated, and pack onto one
    /// node when most allocated.
    #[test]
    fn scoring_spreads_or_packs() {
        let yaml = |scoring: &str| {
            format!(
                "name: scoring
duration: 10m
scheduler: {{scoring: {scoring}}}
subnets:
  - {{name: a, cidr: 10.0.0.0/22, zone: z}}
node_pools:
  - {{name: p, instance_type: m5.large, subnets: [a], size: 4}}
workloads:
  - {{name: web, replicas: 12, cpu: 10m, memory: 16Mi, start: 5m}}
"
            )
        };
        let per_node = |scoring: &str| {
            let mut sim = sim_of(&yaml(scoring));
            sim.run_until(Ms::from_secs(600), &mut observe::NullSink);
            let mut n: Vec<usize> = sim.nodes.iter().flatten().map(|n| n.pods.len()).collect();
            n.sort_unstable();
            n
        };
        assert_eq!(per_node("least_allocated"), [3, 3, 3, 3]);
        assert_eq!(per_node("most_allocated"), [0, 0, 0, 12]);
    }
}
