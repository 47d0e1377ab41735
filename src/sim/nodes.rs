//! Nodes: launches by node groups and autoscalers, registration, ipamd's
//! init and decisions, Ready, rotation and expiry, cordon, drain and
//! termination. The handlers the dispatcher in `mod.rs` calls.

use super::observe::{push_decimal, FailedCall};
use super::*;

impl Simulation {
    // ---- nodes ----

    /// Starts the pool's next node replacement unless one is under way:
    /// launch first; the old node goes when the new one is Ready.
    pub(super) fn next_rotation(&mut self, pool: u32) {
        if self.rotating[pool as usize] {
            return;
        }
        while let Some(old) = self.rotation[pool as usize].pop_front() {
            if self.nodes[old as usize].as_ref().is_some_and(|n| !n.lost) {
                self.rotating[pool as usize] = true;
                let itype = self.nodes[old as usize].as_ref().map_or(0, |n| n.itype);
                let now = self.queue.now();
                self.ask_launch(pool, old, itype, Launcher::NodeGroup, now);
                return;
            }
        }
    }

    /// Asks for a node launch now (Auto Scaling groups, the Cluster
    /// Autoscaler) or after Karpenter's launch delay.
    pub(super) fn ask_launch(
        &mut self,
        pool: u32,
        replaces: u32,
        itype: u16,
        by: Launcher,
        at: Ms,
    ) {
        let now = self.queue.now();
        self.ask_launch_since(pool, replaces, itype, by, at, now);
    }

    /// A launch at `at`, first asked for at `asked` (a retry keeps it).
    pub(super) fn ask_launch_since(
        &mut self,
        pool: u32,
        replaces: u32,
        itype: u16,
        by: Launcher,
        at: Ms,
        asked: Ms,
    ) {
        self.pool_launching[pool as usize] += 1;
        if by == Launcher::Karpenter {
            self.karpenter.launching[pool as usize][itype as usize] += 1;
        }
        // A run is at most 10 years: its seconds fit a u32.
        let asked_s = u32::try_from(asked.as_millis() / 1000).unwrap_or(u32::MAX);
        self.queue.schedule(
            at,
            Event::NodeLaunch {
                pool,
                replaces,
                itype,
                by,
                asked_s,
            },
        );
    }

    /// An Auto Scaling group launches until its live and launching
    /// instances reach its desired capacity.
    pub(super) fn asg_fill(&mut self, pool: u32) {
        let pi = pool as usize;
        let have = self.pool_live(pi) + self.pool_launching[pi];
        let by = match self.spec.pools[pi].autoscaler {
            Autoscaler::ClusterAutoscaler => Launcher::ClusterAutoscaler,
            _ => Launcher::NodeGroup,
        };
        let now = self.queue.now();
        for _ in have..self.desired[pi] {
            self.ask_launch(pool, NONE, 0, by, now);
        }
    }

    /// The Auto Scaling group's choice: the subnet with the fewest of the
    /// pool's nodes, then the most free addresses, then the first listed.
    pub(super) fn asg_subnet(&self, pool: u32) -> u32 {
        let p = &self.spec.pools[pool as usize];
        let mut best: Option<(usize, u32, u32)> = None;
        for &si in &p.subnets {
            let count = self.pool_subnet_nodes[pool as usize][si];
            let free = self.ec2.free_ips(SubnetId(si as u32));
            let better = match best {
                None => true,
                Some((_, bc, bf)) => count < bc || (count == bc && free > bf),
            };
            if better {
                best = Some((si, count, free));
            }
        }
        best.expect("pools have subnets").0 as u32
    }

    pub(super) fn node_launch(
        &mut self,
        pool: u32,
        replaces: u32,
        itype: u16,
        by: Launcher,
        asked: Ms,
    ) {
        self.pool_launching[pool as usize] -= 1;
        if by == Launcher::Karpenter {
            self.karpenter.launching[pool as usize][itype as usize] -= 1;
        }
        let now = self.queue.now();
        let pi = pool as usize;
        // A launch for a node that is gone meanwhile is not needed.
        if replaces != NONE && self.nodes[replaces as usize].is_none() {
            if self.spec.pools[pi].karpenter.is_none() {
                self.rotating[pi] = false;
                self.next_rotation(pool);
            }
            return;
        }
        let si = match by {
            Launcher::Karpenter => match self.karpenter_subnet(pool) {
                Some(si) => si,
                None => {
                    if replaces != NONE {
                        self.uncordon(replaces);
                    }
                    return;
                }
            },
            _ => self.asg_subnet(pool),
        };
        let id = self.nodes.len() as u32;
        let owner = EniOwner {
            kind: OwnerKind::Ec2Primary,
            instance: Some(id),
            device_index: 0,
        };
        match self
            .ec2
            .create_eni(SubnetId(si), owner, 0, &mut self.rng.ec2)
        {
            Err(error) => {
                self.fail(FailedCall {
                    node: None,
                    op: Ec2Op::RunInstances,
                    subnet: si,
                    error,
                    requested: 1,
                    paused: false,
                    unit: "address",
                });
                self.launch_failed(pool, replaces, itype, by, asked, si);
            }
            Ok(primary) => {
                self.observer
                    .end_runs(None, Some(si), Some(Ec2Op::RunInstances));
                let p = &self.spec.pools[pi];
                let pt = &p.types[itype as usize];
                let t = &pt.instance;
                let cap = Capacity::fresh(t, pt.max_pods, self.spec.nodes.daemonset_pods);
                let capacity = match p.capacity_type {
                    CapacityType::OnDemand => "on-demand",
                    CapacityType::Spot => "spot",
                };
                let mut detail = format!(
                    "{} {capacity} in pool {}, {}, by {}",
                    t.name,
                    p.name,
                    self.ec2.addr(SubnetId(si), self.ec2.eni(primary).primary),
                    by.name()
                );
                if replaces != NONE {
                    detail.push_str(&format!(", replacing {}", node_name(replaces)));
                }
                let node = Node {
                    replaces,
                    ..Node::launched(pool, itype, si, primary, cap, now)
                };
                self.add_node(node);
                self.expiry_add(pi, id);
                self.pool_subnet_nodes[pi][si as usize] += 1;
                self.booting[pi].push(id);
                let g = &mut self.gauges[si as usize];
                g.nodes += 1;
                g.nodes_launched += 1;
                self.log("node_launched", Some(si), Some(id), detail);
                let nt = &self.spec.nodes;
                let boot = boot_time(
                    &mut self.rng.node_boot,
                    nt.boot_min,
                    nt.boot_median,
                    nt.boot_max,
                );
                // Karpenter deletes a node claim not registered in time;
                // the Cluster Autoscaler gives up a node not provisioned in
                // time (with the default boot times neither happens).
                let limit = match self.spec.pools[pi].autoscaler {
                    Autoscaler::Karpenter => Some(self.spec.karpenter.registration_timeout),
                    Autoscaler::ClusterAutoscaler => {
                        Some(self.spec.cluster_autoscaler.max_node_provision_time)
                    }
                    Autoscaler::None => None,
                };
                match limit {
                    Some(limit) if boot > limit => self
                        .queue
                        .schedule(now + limit, Event::LaunchTimeout { node: id }),
                    _ => self
                        .queue
                        .schedule(now + boot, Event::NodeRegistered { node: id }),
                }
                self.spot_on_launch(id);
            }
        }
    }

    /// RunInstances / CreateFleet failed for want of an address.
    pub(super) fn launch_failed(
        &mut self,
        pool: u32,
        replaces: u32,
        itype: u16,
        by: Launcher,
        asked: Ms,
        si: u32,
    ) {
        match by {
            // The node claim is deleted; its pods stay Pending and are
            // batched again. A consolidation replacement that fails
            // abandons the command: the candidate is uncordoned.
            Launcher::Karpenter => {
                if replaces != NONE {
                    self.uncordon(replaces);
                }
                self.karpenter_launch_failed(si)
            }
            Launcher::ClusterAutoscaler if self.cluster_autoscaler_timed_out(pool, asked) => {}
            _ => {
                let retry = self.queue.now() + self.spec.nodes.launch_retry;
                self.ask_launch_since(pool, replaces, itype, by, retry, asked);
            }
        }
    }

    /// Karpenter's liveness controller deletes the node claim (and
    /// provisions again); the Cluster Autoscaler removes the node and
    /// shrinks the group back.
    pub(super) fn launch_timeout(&mut self, id: u32) {
        let Some(node) = self.nodes[id as usize].as_ref() else {
            return;
        };
        if node.lost {
            return;
        }
        match self.spec.pools[node.pool as usize].autoscaler {
            Autoscaler::Karpenter => {
                self.terminate_node(id, "registration timeout");
                self.karpenter_trigger();
            }
            _ => self.cluster_autoscaler_launch_timeout(id),
        }
    }

    pub(super) fn node_registered(&mut self, id: u32) {
        let now = self.queue.now();
        if self.nodes[id as usize].as_ref().is_none_or(|n| n.lost) {
            return;
        }
        let Some(node) = self.nodes[id as usize].as_mut() else {
            return;
        };
        let p = &self.spec.pools[node.pool as usize];
        let k = p
            .subnets
            .iter()
            .position(|&s| s as u32 == node.subnet)
            .expect("node subnet in pool");
        let pt = &p.types[node.itype as usize];
        let (mut spec, _note) = IpamSpec::for_type(
            id,
            &pt.instance,
            &self.spec.cni,
            pt.max_pods,
            SubnetId(node.subnet),
            SubnetId(p.pod_subnets[k] as u32),
        );
        if !self.spec.cni.custom_networking {
            let (subnets, excluded) = &self.eni_subnets[node.subnet as usize];
            spec.eni_subnets = subnets.clone();
            spec.primary_excluded = *excluded;
        }
        let (pool, itype) = (node.pool, node.itype);
        if self.branch_limit(pool, itype) > 0 {
            // The trunk ENI takes one of the node's ENIs.
            spec.max_enis = spec.max_enis.saturating_sub(1).max(1);
        }
        let node = self.nodes[id as usize].as_mut().expect("live");
        node.state = NodeState::NotReady;
        let si = node.subnet;
        let primary = node.primary;
        self.log("node_registered", Some(si), Some(id), String::new());
        self.ipam_events.clear();
        let (ipam, init) = NodeIpam::start(
            spec,
            primary,
            now,
            &self.spec.cni,
            &mut self.ec2,
            &mut self.rng.ipamd,
            &mut self.ipam_events,
        );
        self.nodes[id as usize].as_mut().expect("live").ipam = Some(ipam);
        self.after_init(id, init);
    }

    /// Schedules what ipamd's init decided: Ready at the end of init, or an
    /// aws-node restart after kubelet's back-off.
    pub(super) fn after_init(&mut self, id: u32, init: crate::ipamd::InitOutcome) {
        self.flush_ipam_events(id);
        if let Some(t) = init.next {
            self.queue.schedule(t, Event::IpamdTick { node: id });
        }
        let node = self.nodes[id as usize].as_mut().expect("live");
        let si = node.subnet;
        if init.ok {
            self.queue
                .schedule(init.done_at, Event::NodeReady { node: id });
        } else {
            let k = &self.spec.kubelet;
            let shift = node.init_failures.min(20);
            let delay = Ms(k.retry_base.0.saturating_mul(1 << shift)).min(k.retry_max);
            node.init_failures += 1;
            self.queue
                .schedule(self.queue.now() + delay, Event::AwsNodeRestart { node: id });
            self.log(
                "aws_node_init_failed",
                Some(si),
                Some(id),
                format!(
                    "no address for pods under custom networking; aws-node restarts in {delay}"
                ),
            );
        }
    }

    pub(super) fn aws_node_restart(&mut self, id: u32) {
        let now = self.queue.now();
        let Some(node) = self.nodes[id as usize].as_mut() else {
            return;
        };
        let Some(ipam) = node.ipam.as_mut() else {
            return;
        };
        self.ipam_events.clear();
        let init = ipam.init(
            now,
            &self.spec.cni,
            &mut self.ec2,
            &mut self.rng.ipamd,
            &mut self.ipam_events,
        );
        self.after_init(id, init);
    }

    pub(super) fn ipamd_tick(&mut self, at: Ms, id: u32) {
        let Some(node) = self.nodes[id as usize].as_mut() else {
            return;
        };
        let Some(ipam) = node.ipam.as_mut() else {
            return;
        };
        if !ipam.is_due(at) {
            return;
        }
        self.ipam_events.clear();
        let next = ipam.tick(
            at,
            &self.spec.cni,
            &mut self.ec2,
            &mut self.rng.ipamd,
            &mut self.ipam_events,
        );
        if let Some(t) = next {
            self.queue.schedule(t, Event::IpamdTick { node: id });
        }
        self.flush_ipam_events(id);
    }

    /// Logs what ipamd did and keeps the node's empty-pool gauge current.
    pub(super) fn flush_ipam_events(&mut self, id: u32) {
        if !self.ipam_events.is_empty() {
            let events = std::mem::take(&mut self.ipam_events);
            for e in &events {
                self.log_ipam(id, e);
            }
            self.ipam_events = events;
        }
        self.update_empty_gauge(id);
    }

    /// `nodes_ready_empty_pool`: a Ready node whose pool holds no address.
    pub(super) fn update_empty_gauge(&mut self, id: u32) {
        let Some(node) = self.nodes[id as usize].as_mut() else {
            return;
        };
        let empty =
            node.state == NodeState::Ready && node.ipam.as_ref().is_some_and(NodeIpam::pool_empty);
        if empty != node.empty_counted {
            node.empty_counted = empty;
            let g = &mut self.gauges[node.subnet as usize];
            if empty {
                g.nodes_ready_empty_pool += 1;
            } else {
                g.nodes_ready_empty_pool -= 1;
            }
        }
    }

    pub(super) fn log_ipam(&mut self, node: u32, e: &IpamEvent) {
        let unit = if self.spec.cni.prefix_delegation {
            "prefix"
        } else {
            "address"
        };
        match *e {
            IpamEvent::EniCreated {
                subnet,
                serial,
                cidrs,
                ..
            } => {
                self.observer.end_runs(Some(node), None, None);
                self.log("eni_created", Some(subnet.0), Some(node), {
                    let mut d = String::with_capacity(48);
                    write_eni_name(&mut d, serial);
                    d.push_str(" with ");
                    push_cidrs(&mut d, cidrs, unit);
                    d
                });
            }
            IpamEvent::CidrsAssigned { eni, subnet, cidrs } => {
                self.observer.end_runs(Some(node), None, None);
                let serial = self.ec2.eni(eni).serial;
                self.log(
                    "cidrs_assigned",
                    Some(subnet.0),
                    Some(node),
                    cidrs_detail(cidrs, unit, " on ", serial),
                );
            }
            IpamEvent::CidrsReleased { eni, subnet, cidrs } => {
                let serial = self.ec2.eni(eni).serial;
                self.log(
                    "cidrs_released",
                    Some(subnet.0),
                    Some(node),
                    cidrs_detail(cidrs, unit, " from ", serial),
                );
            }
            IpamEvent::EniDeleted { subnet, serial } => {
                self.log("eni_deleted", Some(subnet.0), Some(node), eni_name(serial));
            }
            IpamEvent::AllocFailed {
                op,
                subnet,
                error,
                requested,
                paused,
            } => self.fail(FailedCall {
                node: Some(node),
                op,
                subnet: subnet.0,
                error,
                requested,
                paused,
                unit,
            }),
        }
    }

    /// Files node `id`, just launched in pool `pi`, for its expiry (when
    /// the pool has a lifetime).
    pub(super) fn expiry_add(&mut self, pi: usize, id: u32) {
        let Some(life) = self.node_lifetime(pi) else {
            return;
        };
        // Gone nodes leave the list when they outnumber the rest; the next
        // look waits until it has doubled again (nodes vanished but not
        // yet removed stay, so a look can free less than it hoped).
        let list = &mut self.expiring[pi];
        if list.len() >= self.expiry_compact_at[pi] {
            let nodes = &self.nodes;
            list.retain(|&n| nodes[n as usize].is_some());
            self.expiry_compact_at[pi] = 2 * list.len() + 64;
        }
        self.expiring[pi].push_back(id);
        if self.expiry_armed[pi].is_none() {
            let at = self.queue.now() + life;
            self.expiry_armed[pi] = Some(at);
            self.queue
                .schedule(at, Event::NodeExpire { pool: pi as u32 });
        }
    }

    /// Pool `pool`'s `NodeExpire`: every node whose lifetime has run out
    /// expires, oldest first; the event is queued again for the next.
    /// (`expiry_armed` stays set while the nodes expire, so a node
    /// launched meanwhile does not queue a second event: the one queued
    /// at the end covers it.)
    pub(super) fn expiry_due(&mut self, pool: u32) {
        let pi = pool as usize;
        let now = self.queue.now();
        let Some(life) = self.node_lifetime(pi) else {
            self.expiry_armed[pi] = None;
            return;
        };
        let mut next = None;
        while let Some(&id) = self.expiring[pi].front() {
            let Some(node) = self.nodes[id as usize].as_ref() else {
                self.expiring[pi].pop_front(); // gone before its expiry
                continue;
            };
            let at = node.launched_at + life;
            if at > now {
                next = Some(at);
                break;
            }
            self.expiring[pi].pop_front();
            self.node_expire(id);
        }
        self.expiry_armed[pi] = next;
        if let Some(at) = next {
            self.queue.schedule(at, Event::NodeExpire { pool });
        }
    }

    fn node_expire(&mut self, id: u32) {
        let Some(node) = self.nodes[id as usize].as_ref() else {
            return;
        };
        if node.lost || node.cordoned {
            return;
        }
        let (pool, si) = (node.pool, node.subnet);
        if self.spec.pools[pool as usize].karpenter.is_some() {
            // Karpenter v1 expiration is forceful: the node claim is deleted
            // at once (no budget, no replacement first); its pods go Pending
            // and are provisioned for.
            self.log(
                "node_expired",
                Some(si),
                Some(id),
                "expireAfter reached".into(),
            );
            self.terminate_node(id, "expired");
        } else {
            self.log(
                "node_expired",
                Some(si),
                Some(id),
                "max_lifetime reached".into(),
            );
            self.rotation[pool as usize].push_back(id);
            self.next_rotation(pool);
        }
    }

    pub(super) fn node_ready(&mut self, id: u32) {
        let Some(node) = self.nodes[id as usize].as_mut() else {
            return;
        };
        if node.state != NodeState::NotReady || node.lost {
            return;
        }
        node.state = NodeState::Ready;
        let now = self.queue.now();
        node.last_pod_event = now;
        let key = node.key;
        self.observer.node_ready(node.launched_at, now);
        self.karpenter_touch(id, key);
        let node = self.nodes[id as usize].as_ref().expect("live");
        let (pool, si) = (node.pool, node.subnet);
        let schedulable = node.schedulable();
        let empty = node.ipam.as_ref().is_some_and(NodeIpam::pool_empty);
        self.gauges[si as usize].nodes_ready += 1;
        self.booting_remove(id, pool);
        if schedulable {
            self.index_insert(id);
        }
        self.attach_trunk(id);
        self.log(
            "node_ready",
            Some(si),
            Some(id),
            if empty {
                "pool empty: pods bound here wait for an address".to_string()
            } else {
                String::new()
            },
        );
        self.update_empty_gauge(id);
        self.karpenter_node_changed(pool);
        self.cluster_autoscaler_node_changed(id, pool);
        let old = std::mem::replace(
            &mut self.nodes[id as usize].as_mut().expect("live").replaces,
            NONE,
        );
        if old != NONE {
            if self.spec.pools[pool as usize].karpenter.is_some() {
                self.terminate_node(old, "consolidation");
            } else {
                self.terminate_node(old, "rotation");
                self.rotating[pool as usize] = false;
                self.next_rotation(pool);
            }
        }
        self.queue_schedule();
    }

    /// The node is no longer launched-but-not-Ready.
    pub(super) fn booting_remove(&mut self, id: u32, pool: u32) {
        let list = &mut self.booting[pool as usize];
        if let Some(k) = list.iter().position(|&n| n == id) {
            list.swap_remove(k);
        }
    }

    /// Adds a schedulable node to the scheduler's index.
    pub(super) fn index_insert(&mut self, id: u32) {
        self.gained.push(id);
        let node = self.nodes[id as usize].as_ref().expect("live");
        debug_assert_eq!(node.key, node.cap.key(), "key kept with cap");
        let key = (node.key, id);
        if self.ready_pool.len() > 1 {
            self.ready_all.insert(key);
        }
        self.ready_pool[node.pool as usize].insert(key);
        self.karpenter_indexed(id, key.0, true);
    }

    pub(super) fn index_remove(&mut self, id: u32) {
        let node = self.nodes[id as usize].as_ref().expect("live");
        debug_assert_eq!(node.key, node.cap.key(), "key kept with cap");
        let key = (node.key, id);
        if self.ready_pool.len() > 1 {
            self.ready_all.remove(&key);
        }
        self.ready_pool[node.pool as usize].remove(&key);
        self.karpenter_indexed(id, key.0, false);
    }

    /// Cordons a node (a taint): no new pods; counted as disrupting.
    pub(super) fn cordon(&mut self, id: u32) {
        let Some(node) = self.nodes[id as usize].as_ref() else {
            return;
        };
        if node.cordoned {
            return;
        }
        if node.schedulable() {
            self.index_remove(id);
        }
        let node = self.nodes[id as usize].as_mut().expect("live");
        node.cordoned = true;
        self.gauges[node.subnet as usize].nodes_cordoned += 1;
        self.pool_cordoned[node.pool as usize] += 1;
    }

    /// Lifts a cordon (a disruption abandoned).
    pub(super) fn uncordon(&mut self, id: u32) {
        let Some(node) = self.nodes[id as usize].as_mut() else {
            return;
        };
        if !node.cordoned || node.noticed || node.lost {
            return;
        }
        node.cordoned = false;
        self.gauges[node.subnet as usize].nodes_cordoned -= 1;
        self.pool_cordoned[node.pool as usize] -= 1;
        if self.nodes[id as usize]
            .as_ref()
            .expect("live")
            .schedulable()
        {
            self.index_insert(id);
        }
        self.queue_schedule();
    }

    /// Evicts every pod of a node (a drain): each workload recreates its
    /// pod, Pending.
    pub(super) fn drain(&mut self, id: u32) -> usize {
        let Some(node) = self.nodes[id as usize].as_mut() else {
            return 0;
        };
        let evicted = std::mem::take(&mut node.pods);
        // Scattered in the pod array and cold: start loading them all.
        for &(pid, _) in &evicted {
            if let Some(p) = self.pods.get(pid as usize) {
                crate::prefetch::line(p as *const Pod);
            }
        }
        for &(pid, w) in &evicted {
            self.delete_pod(pid);
            self.new_pod(w);
        }
        let n = evicted.len();
        // Keep the allocation (the list is empty now).
        if let Some(node) = self.nodes[id as usize].as_mut() {
            let mut v = evicted;
            v.clear();
            node.pods = v;
        }
        self.queue_schedule();
        n
    }

    /// Drains a node (cordon, then evict every pod: its workload recreates
    /// it, Pending) and terminates it: every ENI, address and prefix
    /// returns to the subnets. `reason` goes to `node_terminated`.
    pub(super) fn terminate_node(&mut self, id: u32, reason: &'static str) {
        let Some(node) = self.nodes[id as usize].as_ref() else {
            return;
        };
        if node.lost {
            return;
        }
        self.cordon(id);
        // The instance goes with its ENIs: the evictions need not hand their
        // addresses back to ipamd's pool one by one (nothing reads it again
        // but the teardown, which returns every prefix whatever it holds).
        let ipam = self.nodes[id as usize].as_mut().and_then(|n| n.ipam.take());
        let evicted = self.drain(id);
        self.nodes[id as usize].as_mut().expect("live").ipam = ipam;
        self.leave_ready(id);
        let enis = self.release_instance(id);
        let node = self.nodes[id as usize].take().expect("live node");
        self.log(
            "node_terminated",
            Some(node.subnet),
            Some(id),
            format!("{reason}: {evicted} pods evicted, {enis} ENIs released"),
        );
        self.queue_schedule();
    }

    /// The node is no longer Ready (it is going): out of the Ready and
    /// empty-pool counts, its open failure runs written. The caller has
    /// taken it out of the scheduler's index.
    pub(super) fn leave_ready(&mut self, id: u32) {
        self.observer.end_runs(Some(id), None, None);
        let node = self.nodes[id as usize].as_mut().expect("live");
        if node.state == NodeState::Ready {
            node.state = NodeState::NotReady;
            self.gauges[node.subnet as usize].nodes_ready -= 1;
        }
        self.update_empty_gauge(id);
    }

    /// The instance goes: its ENIs, addresses and prefixes return to the
    /// subnets and it leaves every count (the Node object may stay, see
    /// [`Self::spot_deadline`]). Returns the ENIs released.
    pub(super) fn release_instance(&mut self, id: u32) -> usize {
        let node = self.nodes[id as usize].as_mut().expect("live node");
        let trunk = node.trunk.take();
        if let Some(t) = trunk {
            self.ec2.delete_eni(t).expect("trunk ENI is live");
        }
        let node = self.nodes[id as usize].as_mut().expect("live node");
        let enis = usize::from(trunk.is_some())
            + match node.ipam.take() {
                Some(ipam) => ipam.teardown(&mut self.ec2).len(),
                None => {
                    self.ec2
                        .delete_eni(node.primary)
                        .expect("primary ENI is live");
                    1
                }
            };
        let (pool, si) = (node.pool as usize, node.subnet as usize);
        if node.cordoned {
            node.cordoned = false;
            self.gauges[si].nodes_cordoned -= 1;
            self.pool_cordoned[pool] -= 1;
        }
        let g = &mut self.gauges[si];
        g.nodes -= 1;
        g.nodes_terminated += 1;
        self.pool_subnet_nodes[pool][si] -= 1;
        self.booting_remove(id, pool as u32);
        self.spot_on_gone(id);
        self.cluster_autoscaler_node_gone(id);
        self.karpenter_node_changed(pool as u32);
        enis
    }
}

/// `"{cidrs} {unit}(es){word}{eni name}"`, built without `core::fmt` (a
/// row per prefix assignment or release).
fn cidrs_detail(cidrs: u32, unit: &str, word: &str, serial: u64) -> String {
    let mut d = String::with_capacity(48);
    push_cidrs(&mut d, cidrs, unit);
    d.push_str(word);
    write_eni_name(&mut d, serial);
    d
}

/// `"{cidrs} {unit}(es)"` appended to `d`.
fn push_cidrs(d: &mut String, cidrs: u32, unit: &str) {
    push_decimal(d, u64::from(cidrs));
    d.push(' ');
    d.push_str(unit);
    d.push_str("(es)");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::observe::NullSink;

    /// A Karpenter pool that launches and consolidates about 1,200 nodes
    /// in 12 hours, with a 6-hour lifetime: its expiry list holds at most
    /// about twice its live nodes and 64 (95 at the hourly looks), not
    /// every node launched in the last 6 hours (609 without the
    /// compaction).
    #[test]
    fn the_expiry_list_stays_the_size_of_the_fleet() {
        let yaml = "name: t
duration: 12h
subnets:
  - {name: a, cidr: 10.0.0.0/20, zone: z1}
node_pools:
  - name: k
    autoscaler: karpenter
    instance_types: [m5.large]
    subnets: [a]
    karpenter: {consolidate_after: 1m, expire_after: 6h}
jobs:
  - {name: batch, per_hour: 400, run_time: [2m, 6m], cpu: \"1\"}
";
        let sc = crate::scenario::parse(yaml, std::path::Path::new("t.yaml")).unwrap();
        let mut sim = Simulation::new(&sc, 1);
        let mut most = 0;
        for h in 1..=12 {
            sim.run_until(Ms::from_secs(h * 3600), &mut NullSink);
            most = most.max(sim.expiring[0].len());
        }
        let launched = sim.nodes.len();
        let live = sim.nodes.iter().flatten().count();
        assert!(launched > 1_000, "{launched} launched");
        assert!(
            most < 150,
            "{most} listed, {live} live, {launched} launched"
        );
    }

    /// A node with pods on two ENIs is terminated: its pods are evicted
    /// (ipamd's pool is not updated pod by pod, the instance goes), and
    /// every ENI and prefix it held returns to the subnet.
    #[test]
    fn a_terminated_node_returns_every_eni_and_prefix() {
        // WARM_PREFIX_TARGET=7 on a t3.medium (5 prefixes an ENI, max pods
        // 110): a second ENI at once.
        let yaml = "name: t
duration: 1h
vpc_cni: {prefix_delegation: true, warm_prefix_target: 7}
subnets:
  - {name: a, cidr: 10.0.0.0/22, zone: z}
node_pools:
  - {name: p, instance_type: t3.medium, subnets: [a], size: 2}
workloads:
  - {name: w, replicas: 20, cpu: 10m}
";
        let sc = crate::scenario::parse(yaml, std::path::Path::new("t.yaml")).unwrap();
        let mut sim = Simulation::new(&sc, 1);
        sim.run_until(Ms::from_secs(600), &mut NullSink);
        let subnet = crate::addr::SubnetId(0);
        let owned = |sim: &Simulation, id: u32| {
            sim.ec2
                .enis()
                .filter(|(_, e)| e.owner.instance == Some(id))
                .count()
        };
        let id = (0..2u32)
            .find(|&id| {
                sim.nodes[id as usize]
                    .as_ref()
                    .is_some_and(|n| !n.pods.is_empty())
            })
            .expect("a node with pods");
        assert!(owned(&sim, id) >= 2, "two ENIs");
        let held = sim.nodes[id as usize]
            .as_ref()
            .and_then(|n| n.ipam.as_ref())
            .map(|i| i.subnet_addresses())
            .unwrap();
        let free = sim.ec2.free_ips(subnet);
        sim.terminate_node(id, "test");
        assert_eq!(owned(&sim, id), 0);
        assert_eq!(sim.ec2.free_ips(subnet), free + held);
        assert!(sim.nodes[id as usize].is_none());
    }
}
