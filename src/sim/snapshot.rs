//! Taking a subnet's state over from a snapshot (`subnets[].from`): every
//! ENI where it was, adopted nodes Ready with their ENIs and pods.

use super::*;

impl Simulation {
    /// Every ENI of every snapshot goes into EC2 where it was; adopted
    /// nodes start Ready with their ENIs and their pods Running.
    pub(super) fn take_over_snapshots(&mut self) {
        // Adopted nodes get the first node ids, pool by pool.
        let mut owner_of: std::collections::BTreeMap<(usize, usize), u32> = Default::default();
        let mut next = 0u32;
        for p in &self.spec.pools {
            for a in &p.adopted {
                for &key in &a.enis {
                    owner_of.insert(key, next);
                }
                next += 1;
            }
        }
        let mut eni_of: std::collections::BTreeMap<(usize, usize), EniId> = Default::default();
        for si in 0..self.spec.subnets.len() {
            let Some(snap) = self.spec.subnets[si].snapshot.clone() else {
                continue;
            };
            let sid = SubnetId(si as u32);
            let mut kinds: std::collections::BTreeMap<&str, u32> = Default::default();
            for (k, e) in snap.enis.iter().enumerate() {
                let node = owner_of.get(&(si, k)).copied();
                let owner = EniOwner {
                    kind: e.kind,
                    instance: node,
                    device_index: e.device_index,
                };
                let addr = self.ec2.addr(sid, e.primary);
                let id = self
                    .ec2
                    .create_eni_at(sid, owner, addr)
                    .expect("snapshot validated");
                for &o in &e.secondary {
                    let a = self.ec2.addr(sid, o);
                    self.ec2.assign_ip_at(id, a).expect("snapshot validated");
                }
                for &b in &e.prefixes {
                    let net = self.ec2.prefix_cidr(sid, b);
                    self.ec2
                        .assign_prefix_at(id, net)
                        .expect("snapshot validated");
                }
                if node.is_none() {
                    self.snapshot_enis[si].push((e.kind, id));
                    self.foreign.insert(
                        self.ec2.eni(id).serial,
                        observe::Foreign {
                            id: e.id.clone(),
                            instance_id: e.instance_id.clone(),
                            device_index: e.device_index,
                            description: e.description.clone(),
                            tags: e.tags.clone(),
                        },
                    );
                }
                *kinds.entry(e.kind.name()).or_default() += 1;
                eni_of.insert((si, k), id);
            }
            let list: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
            let detail = format!(
                "{} ENIs from {}: {}",
                snap.enis.len(),
                snap.source,
                list.join(", ")
            );
            self.log("snapshot_loaded", Some(si as u32), None, detail);
        }
        for pi in 0..self.spec.pools.len() {
            let adopted = self.spec.pools[pi].adopted.clone();
            for a in adopted {
                self.adopt_node(pi as u32, &a, &eni_of);
            }
        }
        self.queue_schedule();
    }

    pub(super) fn adopt_node(
        &mut self,
        pool: u32,
        a: &crate::cluster::spec::AdoptedNode,
        eni_of: &std::collections::BTreeMap<(usize, usize), EniId>,
    ) {
        let now = self.queue.now();
        let id = self.nodes.len() as u32;
        let pi = pool as usize;
        let (si, _) = a.enis[0];
        let enis: Vec<EniId> = a.enis.iter().map(|k| eni_of[k]).collect();
        let p = &self.spec.pools[pi];
        let pt = &p.types[0];
        let k = p
            .subnets
            .iter()
            .position(|&s| s == si)
            .expect("adopted in the pool's subnets");
        let (mut spec, _note) = IpamSpec::for_type(
            id,
            &pt.instance,
            &self.spec.cni,
            pt.max_pods,
            SubnetId(si as u32),
            SubnetId(p.pod_subnets[k] as u32),
        );
        if !self.spec.cni.custom_networking {
            let (subnets, excluded) = &self.eni_subnets[si];
            spec.eni_subnets = subnets.clone();
            spec.primary_excluded = *excluded;
        }
        if self.branch_limit(pool, 0) > 0 {
            spec.max_enis = spec.max_enis.saturating_sub(1).max(1);
        }
        let (ipam, next) = NodeIpam::adopt(spec, &enis, now, &self.ec2);
        let t = &pt.instance;
        let cap = Capacity::fresh(t, pt.max_pods, self.spec.nodes.daemonset_pods);
        let node = Node {
            state: NodeState::Ready,
            ipam: Some(ipam),
            ..Node::launched(pool, 0, si as u32, enis[0], cap, now)
        };
        self.add_node(node);
        if let Some(t) = next {
            self.queue.schedule(t, Event::IpamdTick { node: id });
        }
        self.expiry_add(pi, id);
        self.pool_subnet_nodes[pi][si] += 1;
        if self.spec.pools[pi].autoscaler != Autoscaler::Karpenter {
            self.desired[pi] += 1;
        }
        let g = &mut self.gauges[si];
        g.nodes += 1;
        g.nodes_ready += 1;
        self.index_insert(id);
        self.attach_trunk(id);
        let held = self.nodes[id as usize]
            .as_ref()
            .and_then(|n| n.ipam.as_ref())
            .map_or(0, |i| i.stats().total);
        self.log(
            "node_adopted",
            Some(si as u32),
            Some(id),
            format!(
                "{} in pool {}: {} ENIs, {held} pod addresses held, {} pods running",
                a.instance_id,
                self.spec.pools[pi].name,
                enis.len(),
                a.pods
            ),
        );
        let w = self.spec.pools[pi].adopted_workload.expect("adopting pool") as u32;
        for _ in 0..a.pods {
            let pid = self.new_pod(w);
            self.pending[w as usize].pop_back();
            self.bind(pid, id);
        }
        self.update_empty_gauge(id);
        self.spot_on_launch(id);
        self.cluster_autoscaler_node_changed(id, pi as u32);
    }
}
