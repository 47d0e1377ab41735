//! Workloads over time: the HorizontalPodAutoscaler's 15 s syncs over each
//! workload's load signal, scale-up and scale-down (victims chosen as the
//! ReplicaSet controller chooses them), and the `workloads.csv` rows. The
//! HPA's decisions are pure functions in [`crate::cluster::hpa`].

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::observe::{secs_text, WorkloadRow};
use super::{spot::exp_delay_hazard, Event, PodState, Simulation};
use crate::cluster::hpa::{self, HpaState, LoadPart};
use crate::cluster::spec::{Arrivals, ClusterSpec};
use crate::engine::stream;
use crate::time::Ms;

/// Random bursts of one load signal, drawn as time reaches them.
struct Bursts {
    part: usize,
    next: Ms,
    /// `(end, size)` of bursts under way.
    active: Vec<(Ms, f64)>,
}

/// One workload's state beyond its pods.
pub struct WorkloadState {
    /// Replicas asked for (the spec's, then the HPA's).
    pub replicas: u32,
    /// Its pods not yet deleted, whatever their state.
    pub live: u32,
    pub running: u32,
    pub waiting_ip: u32,
    hpa: HpaState,
    /// Per load signal (same order as the spec's): its bursts.
    bursts: Vec<Vec<Bursts>>,
    /// The workload's own stream (`load/<name>`): adding a workload shifts
    /// no other's bursts.
    rng: ChaCha8Rng,
    /// A rolling update is under way, and a step of it is queued.
    rolling: bool,
    step_queued: bool,
}

impl WorkloadState {
    pub fn new(spec: &ClusterSpec, seed: u64) -> Vec<Self> {
        spec.workloads
            .iter()
            .map(|w| {
                let name = if w.job.is_some() {
                    format!("jobs/{}", w.name)
                } else {
                    format!("load/{}", w.name)
                };
                let mut rng = stream(seed, &name);
                let bursts = w
                    .load
                    .iter()
                    .map(|(_, parts)| {
                        parts
                            .iter()
                            .enumerate()
                            .filter_map(|(k, p)| match *p {
                                LoadPart::Bursts { every, .. } => Some(Bursts {
                                    part: k,
                                    next: exp_delay_hazard(&mut rng, 1.0 / every.0 as f64),
                                    active: Vec::new(),
                                }),
                                _ => None,
                            })
                            .collect()
                    })
                    .collect();
                WorkloadState {
                    replicas: w.replicas,
                    live: 0,
                    running: 0,
                    waiting_ip: 0,
                    hpa: HpaState::default(),
                    bursts,
                    rng,
                    rolling: false,
                    step_queued: false,
                }
            })
            .collect()
    }
}

impl Simulation {
    /// The workload's load signal `k` at `now` (bursts drawn up to now).
    fn load_value(&mut self, w: usize, k: usize, now: Ms) -> f64 {
        let parts = &self.spec.workloads[w].load[k].1;
        let mut v = hpa::level(parts, now);
        let st = &mut self.wl[w];
        for b in &mut st.bursts[k] {
            let LoadPart::Bursts {
                every,
                size,
                lasting,
            } = parts[b.part]
            else {
                unreachable!("burst state for a bursts part")
            };
            while b.next <= now {
                let s = st.rng.gen_range(size.0..=size.1);
                let l = Ms(st.rng.gen_range(lasting.0 .0..=lasting.1 .0));
                b.active.push((b.next + l, s));
                b.next += exp_delay_hazard(&mut st.rng, 1.0 / every.0 as f64);
            }
            b.active.retain(|&(end, _)| end > now);
            v += b.active.iter().map(|&(_, s)| s).sum::<f64>();
        }
        v
    }

    /// The first HPA sync, one period after the workload starts.
    pub(super) fn hpa_start(&mut self, w: u32) {
        if let Some(h) = &self.spec.workloads[w as usize].hpa {
            let at = self.queue.now() + h.sync;
            self.queue.schedule(at, Event::HpaSync { workload: w });
        }
    }

    /// One HPA sync (`reconcileAutoscaler`).
    pub(super) fn hpa_sync(&mut self, w: u32) {
        let wi = w as usize;
        let now = self.queue.now();
        let spec = self.spec.workloads[wi].hpa.as_ref().expect("HPA workload");
        let (max, min, metrics, tolerance) =
            (spec.max, spec.min, spec.metrics.len(), spec.tolerance);
        let next = now + spec.sync;
        if next < self.duration {
            self.queue.schedule(next, Event::HpaSync { workload: w });
        }
        let current = self.wl[wi].replicas;
        let running = self.wl[wi].running;
        let not_running = current.saturating_sub(running);
        // The reason is written only when the HPA scales.
        enum Why {
            Max,
            Min,
            Metric {
                m: usize,
                load: f64,
                recommended: u32,
                limit: &'static str,
            },
        }
        let (desired, why) = if current > max {
            (max, Why::Max)
        } else if current < min {
            (min, Why::Min)
        } else {
            // The largest recommendation over the metrics.
            let mut best: Option<(u32, usize, f64)> = None;
            for mi in 0..metrics {
                let ws = &self.spec.workloads[wi];
                let m = &ws.hpa.as_ref().expect("HPA workload").metrics[mi];
                let target = m.target;
                let k = ws
                    .load
                    .iter()
                    .position(|(n, _)| *n == m.load)
                    .expect("validated load");
                let load = self.load_value(wi, k, now);
                if let Some(r) =
                    hpa::desired_for_metric(current, running, not_running, load, target, tolerance)
                {
                    if best.is_none_or(|(b, _, _)| r > b) {
                        best = Some((r, mi, load));
                    }
                }
            }
            let Some((recommended, m, load)) = best else {
                return; // no Running pod reports a metric
            };
            let spec = self.spec.workloads[wi].hpa.as_ref().expect("HPA workload");
            let st = &mut self.wl[wi].hpa;
            let (d, limit) = hpa::normalize(spec, st, now, current, recommended);
            (
                d,
                Why::Metric {
                    m,
                    load,
                    recommended,
                    limit: limit.name(),
                },
            )
        };
        if desired != current {
            self.wl[wi].hpa.record_scale(now, current, desired);
            let spec = self.spec.workloads[wi].hpa.as_ref().expect("HPA workload");
            let why = match why {
                Why::Max => "current replicas above maxReplicas".to_string(),
                Why::Min => "current replicas below minReplicas".to_string(),
                Why::Metric {
                    m,
                    load,
                    recommended,
                    limit,
                } => {
                    let m = &spec.metrics[m];
                    let per_pod = load / f64::from(running.max(1));
                    format!(
                        "{} {:.0} over {running} running pods ({per_pod:.1} per pod, target {}): recommends {recommended}; {limit}",
                        m.label, load, m.target
                    )
                }
            };
            let name = &self.spec.workloads[wi].name;
            let detail = format!("{name}: from {current} to {desired}: {why}");
            self.log("hpa_scale", None, None, detail);
            self.set_replicas(w, desired);
        }
    }

    /// Scales a workload to `to` replicas: new pods are created Pending;
    /// on a scale-down the victims are chosen as the ReplicaSet controller
    /// does (`getPodsToDelete`, `ActivePodsWithRanks`): unscheduled pods
    /// first, then pods not Running (ContainerCreating), then Running
    /// ones; the newest first within each.
    pub(super) fn set_replicas(&mut self, w: u32, to: u32) {
        let wi = w as usize;
        let from = self.wl[wi].replicas;
        self.wl[wi].replicas = to;
        if to > from {
            for _ in from..to {
                self.new_pod(w);
            }
        } else if to < from {
            // Per rank, how many pods go: unscheduled first, then not
            // Running, then Running; within a rank the newest first, so a
            // walk from the newest end stops once it has them.
            let pending = self.pending_count[wi];
            let running = self.wl[wi].running;
            let creating = self.wl[wi].live - pending - running;
            #[cfg(debug_assertions)]
            {
                let mut count = [0u32; 3];
                for &(pid, gen) in &self.workload_pods[wi] {
                    let p = &self.pods[pid as usize];
                    if p.gen == gen && p.state != PodState::Free {
                        count[victim_rank(p.state)] += 1;
                    }
                }
                debug_assert_eq!(count, [pending, creating, running]);
            }
            let mut n = from - to;
            let mut take = [0u32; 3];
            for (k, have) in [pending, creating, running].into_iter().enumerate() {
                take[k] = n.min(have);
                n -= take[k];
            }
            let mut victims = std::mem::take(&mut self.victims);
            victims.clear();
            for (rank, &want) in take.iter().enumerate() {
                let mut got = 0;
                for &(pid, gen) in self.workload_pods[wi].iter().rev() {
                    if got == want {
                        break;
                    }
                    let p = &self.pods[pid as usize];
                    if p.gen == gen && p.state != PodState::Free && victim_rank(p.state) == rank {
                        victims.push(pid);
                        got += 1;
                    }
                }
            }
            for &pid in &victims {
                self.delete_pod(pid);
            }
            self.victims = victims;
        }
        self.queue_schedule();
    }

    /// A job template's first arrival (at its start).
    pub(super) fn job_start(&mut self, w: u32) {
        if let Some(j) = &self.spec.workloads[w as usize].job {
            let now = self.queue.now();
            let at = match &j.arrivals {
                Arrivals::Every(_) => now,
                Arrivals::PerHour(r) => {
                    let h = r / 3_600_000.0;
                    now + exp_delay_hazard(&mut self.wl[w as usize].rng, h)
                }
                Arrivals::Cron { minutes, hours } => Arrivals::next_cron(minutes, hours, now),
            };
            if at < self.duration {
                self.queue.schedule(at, Event::JobArrival { workload: w });
            }
        }
    }

    /// A job arrives: its pods are created; the next arrival is drawn.
    pub(super) fn job_arrival(&mut self, w: u32) {
        let wi = w as usize;
        let j = self.spec.workloads[wi].job.as_ref().expect("job");
        let now = self.queue.now();
        let next = match &j.arrivals {
            Arrivals::Every(e) => now + *e,
            Arrivals::PerHour(r) => now + exp_delay_hazard(&mut self.wl[wi].rng, r / 3_600_000.0),
            Arrivals::Cron { minutes, hours } => Arrivals::next_cron(minutes, hours, now + Ms(1)),
        };
        if next < self.duration {
            self.queue.schedule(next, Event::JobArrival { workload: w });
        }
        let parallelism = j.parallelism;
        self.wl[wi].replicas += parallelism;
        for _ in 0..parallelism {
            self.new_pod(w);
        }
        self.queue_schedule();
    }

    /// A job's pod is Running: it completes after its run time.
    pub(super) fn job_pod_running(&mut self, pid: u32, gen: u32, w: u32) {
        if let Some(j) = &self.spec.workloads[w as usize].job {
            let (lo, hi) = j.run_time;
            let run = Ms(self.wl[w as usize].rng.gen_range(lo.0..=hi.0));
            let at = self.queue.now() + run;
            let node = self.pods[pid as usize].node;
            self.queue.schedule(
                at,
                Event::PodDone {
                    pod: pid,
                    gen,
                    node,
                },
            );
        }
    }

    /// A job's pod completed: it goes, and is not replaced.
    pub(super) fn pod_done(&mut self, pid: u32, gen: u32) {
        let p = self.pods[pid as usize];
        if p.gen != gen || p.state != PodState::Running {
            return;
        }
        let w = p.workload as usize;
        self.wl[w].replicas = self.wl[w].replicas.saturating_sub(1);
        self.delete_pod(pid);
    }

    /// Schedules the workload's rollouts.
    pub(super) fn rollout_init(&mut self, w: u32) {
        let Some(r) = self.spec.workloads[w as usize].rollout.clone() else {
            return;
        };
        let now = self.queue.now();
        let on_grid = |t: Ms| {
            r.every
                .is_some_and(|e| t > now && (t.0 - now.0).is_multiple_of(e.0))
        };
        for &t in &r.at {
            if t >= now && t < self.duration && !on_grid(t) {
                self.queue.schedule(t, Event::RolloutStart { workload: w });
            }
        }
        if let Some(e) = r.every {
            if now + e < self.duration {
                self.queue
                    .schedule(now + e, Event::RolloutStart { workload: w });
            }
        }
    }

    /// A new pod template: every live pod is now of the old one.
    pub(super) fn rollout_start(&mut self, w: u32) {
        let wi = w as usize;
        let r = self.spec.workloads[wi].rollout.clone().expect("rollout");
        let now = self.queue.now();
        let start = self.spec.workloads[wi].start;
        if let Some(e) = r.every {
            // On the period's grid: the next one.
            if (now.0 - start.0).is_multiple_of(e.0) && now + e < self.duration {
                self.queue
                    .schedule(now + e, Event::RolloutStart { workload: w });
            }
        }
        let mut n = 0;
        for k in 0..self.workload_pods[wi].len() {
            let (pid, gen) = self.workload_pods[wi][k];
            let p = &mut self.pods[pid as usize];
            if p.gen == gen && p.state != PodState::Free {
                p.old = true;
                n += 1;
            }
        }
        self.wl[wi].rolling = true;
        let name = self.spec.workloads[wi].name.clone();
        self.log(
            "rollout_started",
            None,
            None,
            format!("{name}: {n} pods to replace"),
        );
        self.rollout_poke(w);
    }

    /// Queues a rollout step if one is under way.
    #[inline]
    pub(super) fn rollout_poke(&mut self, w: u32) {
        let st = &self.wl[w as usize];
        if st.rolling && !st.step_queued {
            self.rollout_queue_step(w);
        }
    }

    /// `rollout_poke`'s rare part, out of the pod events' line (they run
    /// it twice a pod; a rollout is rarely under way).
    #[cold]
    #[inline(never)]
    fn rollout_queue_step(&mut self, w: u32) {
        self.wl[w as usize].step_queued = true;
        let now = self.queue.now();
        self.queue.schedule(now, Event::RolloutStep { workload: w });
    }

    /// One step of the Deployment controller's rolling update
    /// (`rolling.go`: `reconcileNewReplicaSet`, `reconcileOldReplicaSets`):
    /// new pods up to `replicas + maxSurge` in all (and `replicas` new);
    /// old pods down while `replicas - maxUnavailable` stay available
    /// (Running), not-Running old pods first.
    pub(super) fn rollout_step(&mut self, w: u32) {
        let wi = w as usize;
        self.wl[wi].step_queued = false;
        if !self.wl[wi].rolling {
            return;
        }
        let r = self.spec.workloads[wi].rollout.clone().expect("rollout");
        let replicas = self.wl[wi].replicas;
        let mut surge = r.max_surge.of(replicas, true);
        let mut unav = r.max_unavailable.of(replicas, false);
        if surge == 0 && unav == 0 {
            unav = 1; // ResolveFenceposts
            surge = 0;
        }
        // Old pods, newest first, not-Running before Running. A pod is
        // available once Running for `min_ready`.
        let now = self.queue.now();
        let mut wake: Option<Ms> = None;
        let mut old: Vec<(bool, u32)> = Vec::new();
        let (mut new_live, mut new_running) = (0u32, 0u32);
        for &(pid, gen) in self.workload_pods[wi].iter().rev() {
            let p = &self.pods[pid as usize];
            if p.gen != gen || p.state == PodState::Free {
                continue;
            }
            let ready_at = p.running_since + r.min_ready;
            let running = p.state == PodState::Running && ready_at <= now;
            if p.state == PodState::Running && ready_at > now {
                wake = Some(wake.map_or(ready_at, |x| x.min(ready_at)));
            }
            if p.old {
                old.push((running, pid));
            } else {
                new_live += 1;
                new_running += u32::from(running);
            }
        }
        if let Some(t) = wake {
            self.queue.schedule(t, Event::RolloutStep { workload: w });
        }
        old.sort_by_key(|&(running, _)| running);
        let old_live = old.len() as u32;
        let old_running = old.iter().filter(|x| x.0).count() as u32;
        let total = old_live + new_live;
        let create = replicas
            .saturating_sub(new_live)
            .min((replicas + surge).saturating_sub(total));
        for _ in 0..create {
            self.new_pod(w);
        }
        let new_live = new_live + create;
        let min_avail = replicas.saturating_sub(unav);
        let new_unavailable = new_live - new_running;
        let mut max_down = (total + create).saturating_sub(min_avail + new_unavailable);
        let mut available = old_running + new_running;
        let mut gone = 0;
        for &(running, pid) in &old {
            if max_down == 0 {
                break;
            }
            if running {
                if available <= min_avail {
                    break;
                }
                available -= 1;
            }
            self.delete_pod(pid);
            max_down -= 1;
            gone += 1;
        }
        if old_live - gone == 0 && new_live >= replicas {
            self.wl[wi].rolling = false;
            let name = self.spec.workloads[wi].name.clone();
            self.log(
                "rollout_finished",
                None,
                None,
                format!("{name}: {new_live} pods of the new template"),
            );
        }
        self.queue_schedule();
    }

    /// A `workloads.csv` row per workload.
    pub(super) fn workload_rows(&mut self, at: Ms) {
        for wi in 0..self.spec.workloads.len() {
            let load = if self.spec.workloads[wi].load.is_empty() {
                None
            } else {
                Some((self.load_value(wi, 0, at) * 1000.0).round() / 1000.0)
            };
            let st = &self.wl[wi];
            let row = WorkloadRow {
                time_s: secs_text(at),
                workload: self.spec.workloads[wi].name.clone(),
                desired: st.replicas,
                running: st.running,
                waiting_ip: st.waiting_ip,
                pending: self.pending_count[wi],
                load,
            };
            self.observer.workload(row);
        }
    }
}

/// A pod's rank as the ReplicaSet controller deletes them
/// (`ActivePodsWithRanks`): unscheduled, then not Running, then Running.
fn victim_rank(s: PodState) -> usize {
    match s {
        PodState::Pending => 0,
        PodState::Creating | PodState::WaitingIp | PodState::Lost => 1,
        _ => 2,
    }
}
