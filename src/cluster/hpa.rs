//! A workload's HorizontalPodAutoscaler and load signal, validated, and the
//! HPA's decisions as pure functions (kubernetes
//! `pkg/controller/podautoscaler`: `replica_calculator.go`
//! `calcPlainMetricReplicas`, `horizontal.go`
//! `stabilizeRecommendationWithBehaviors`,
//! `convertDesiredReplicasWithBehaviorRate`,
//! `calculateScaleUpLimitWithScalingRules`,
//! `calculateScaleDownLimitWithBehaviors`; defaults from
//! `pkg/apis/autoscaling/v2/defaults.go`).

use serde::Serialize;

use crate::time::Ms;

/// `HPAScalingPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum PolicyKind {
    Pods,
    Percent,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Policy {
    pub kind: PolicyKind,
    pub value: u32,
    pub period: Ms,
}

/// `selectPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Select {
    Max,
    Min,
    Disabled,
}

/// `HPAScalingRules`, with the defaults filled in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rules {
    pub stabilization: Ms,
    pub select: Select,
    pub policies: Vec<Policy>,
}

impl Rules {
    /// scaleUp's defaults: no stabilization; the larger of 4 pods or 100%
    /// per 15 s.
    pub fn default_up() -> Rules {
        Rules {
            stabilization: Ms::ZERO,
            select: Select::Max,
            policies: vec![
                Policy {
                    kind: PolicyKind::Percent,
                    value: 100,
                    period: Ms::from_secs(15),
                },
                Policy {
                    kind: PolicyKind::Pods,
                    value: 4,
                    period: Ms::from_secs(15),
                },
            ],
        }
    }

    /// scaleDown's defaults: a 300 s stabilization window; up to 100% per
    /// 15 s.
    pub fn default_down() -> Rules {
        Rules {
            stabilization: Ms::from_secs(300),
            select: Select::Max,
            policies: vec![Policy {
                kind: PolicyKind::Percent,
                value: 100,
                period: Ms::from_secs(15),
            }],
        }
    }

    fn longest_period(&self) -> Ms {
        self.policies
            .iter()
            .map(|p| p.period)
            .max()
            .unwrap_or(Ms::ZERO)
    }
}

/// One metric: per pod, the load named `load` spread over the Running
/// pods, against `target` per pod (a `Pods` metric with an `AverageValue`
/// target; a `Resource` CPU `Utilization` target is turned into cores per
/// pod: request × utilization).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Metric {
    /// The load signal's name (`requests`, or `cpu` for CPU utilization).
    pub load: String,
    pub target: f64,
    /// As written, for events (`requests`, `cpu 60%`).
    pub label: String,
}

/// A validated HPA.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HpaSpec {
    pub min: u32,
    pub max: u32,
    pub metrics: Vec<Metric>,
    pub up: Rules,
    pub down: Rules,
    /// `--horizontal-pod-autoscaler-tolerance`, 0.1.
    pub tolerance: f64,
    /// `--horizontal-pod-autoscaler-sync-period`, 15 s.
    pub sync: Ms,
}

/// One piece of a load signal; the signal is the sum of its steps/ramps
/// level, its bursts and its daily cycle.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum LoadPart {
    /// From `at`, the level goes to `to` (linearly over `over`, or at
    /// once); with `hold`, it returns to the previous level after it.
    Step {
        at: Ms,
        to: f64,
        over: Ms,
        hold: Option<Ms>,
    },
    /// Bursts arriving at random (mean interval `every`), each adding a
    /// size drawn in `size` for a time drawn in `lasting`.
    Bursts {
        every: Ms,
        size: (f64, f64),
        lasting: (Ms, Ms),
    },
    /// A daily cosine between `min` and `max`, highest at `peak` (time of
    /// day from the run's start, which is midnight).
    Daily { min: f64, max: f64, peak: Ms },
}

/// A workload's load signals, by name.
pub type LoadSpec = Vec<(String, Vec<LoadPart>)>;

const DAY: f64 = 86_400_000.0;

/// The steps/ramps level and the daily cycle at `t` (bursts are drawn by
/// the simulation and added by it).
pub fn level(parts: &[LoadPart], t: Ms) -> f64 {
    let mut level = 0.0;
    let mut daily = 0.0;
    for p in parts {
        match *p {
            LoadPart::Step { at, to, over, hold } => {
                if t < at {
                    continue;
                }
                let from = level;
                let reached = if over == Ms::ZERO || t >= at + over {
                    to
                } else {
                    from + (to - from) * ((t.0 - at.0) as f64 / over.0 as f64)
                };
                match hold {
                    Some(h) if t >= at + over + h => {} // back to `from`
                    _ => level = reached,
                }
            }
            LoadPart::Daily { min, max, peak } => {
                let phase = ((t.0 as f64 - peak.0 as f64) / DAY) * std::f64::consts::TAU;
                daily += min + (max - min) * (1.0 + phase.cos()) / 2.0;
            }
            LoadPart::Bursts { .. } => {}
        }
    }
    level + daily
}

/// `calcPlainMetricReplicas` for one metric: each of the `running` pods
/// reports `load / running`; pods not Running (Pending, including those
/// bound and waiting for an address in ContainerCreating) have no metric
/// and are ignored, except that on a scale-up they count as reporting 0.
/// `None`: no Running pod, so no metric (the HPA does not act on it).
pub fn desired_for_metric(
    current: u32,
    running: u32,
    not_running: u32,
    load: f64,
    target: f64,
    tolerance: f64,
) -> Option<u32> {
    if running == 0 || target <= 0.0 {
        return None;
    }
    let per_pod = load / f64::from(running);
    let ratio = per_pod / target;
    let rebalance = not_running > 0 && ratio > 1.0;
    if !rebalance {
        if (1.0 - ratio).abs() <= tolerance {
            return Some(current);
        }
        return Some(ceil_u32(ratio * f64::from(running)));
    }
    // Pods without metrics count as 0 on a scale-up.
    let n = running + not_running;
    let new_ratio = load / f64::from(n) / target;
    if (1.0 - new_ratio).abs() <= tolerance || new_ratio < 1.0 {
        return Some(current);
    }
    Some(ceil_u32(new_ratio * f64::from(n)))
}

fn ceil_u32(x: f64) -> u32 {
    if x >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        x.ceil().max(0.0) as u32
    }
}

/// An HPA's memory: recent recommendations and scale events.
#[derive(Clone, Debug, Default)]
pub struct HpaState {
    /// `(time, recommendation)`.
    pub recommendations: Vec<(Ms, u32)>,
    /// `(time, change)`: replicas added (> 0) or removed (< 0).
    pub events: Vec<(Ms, i64)>,
}

/// Why the HPA chose what it chose (`hpa_scale` events).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Within,
    ScaleUpStabilized,
    ScaleDownStabilized,
    ScaleUpLimit,
    ScaleDownLimit,
    TooManyReplicas,
    TooFewReplicas,
}

impl Limit {
    pub fn name(self) -> &'static str {
        match self {
            Limit::Within => "DesiredWithinRange",
            Limit::ScaleUpStabilized => "ScaleUpStabilized",
            Limit::ScaleDownStabilized => "ScaleDownStabilized",
            Limit::ScaleUpLimit => "ScaleUpLimit",
            Limit::ScaleDownLimit => "ScaleDownLimit",
            Limit::TooManyReplicas => "TooManyReplicas",
            Limit::TooFewReplicas => "TooFewReplicas",
        }
    }
}

/// `normalizeDesiredReplicasWithBehaviors`: stabilization over the
/// recent recommendations, then the scaling policies' rate and the
/// min/max. Records the recommendation; the caller records the scale
/// event with [`HpaState::record_scale`].
pub fn normalize(
    spec: &HpaSpec,
    state: &mut HpaState,
    now: Ms,
    current: u32,
    recommended: u32,
) -> (u32, Limit) {
    // Stabilization (`stabilizeRecommendationWithBehaviors`).
    let (window, up) = if recommended >= current {
        (spec.up.stabilization, true)
    } else {
        (spec.down.stabilization, false)
    };
    let longest = spec.up.stabilization.max(spec.down.stabilization);
    let mut stabilized = recommended;
    for &(t, r) in &state.recommendations {
        if t.0 + window.0 > now.0 {
            stabilized = if up {
                stabilized.min(r)
            } else {
                stabilized.max(r)
            };
        }
    }
    // Drop what no window needs any more; keep this one.
    state
        .recommendations
        .retain(|&(t, _)| t.0 + longest.0 >= now.0);
    state.recommendations.push((now, recommended));
    let mut limit = if stabilized != recommended {
        if up {
            Limit::ScaleUpStabilized
        } else {
            Limit::ScaleDownStabilized
        }
    } else {
        Limit::Within
    };
    // Rate (`convertDesiredReplicasWithBehaviorRate`).
    let horizon = spec.up.longest_period().max(spec.down.longest_period());
    state.events.retain(|&(t, _)| t.0 + horizon.0 > now.0);
    let changed_in = |period: Ms, sign: i64| -> i64 {
        state
            .events
            .iter()
            .filter(|&&(t, c)| t.0 + period.0 > now.0 && c.signum() == sign)
            .map(|&(_, c)| c.abs())
            .sum()
    };
    let desired = if stabilized > current {
        let cur = i64::from(current);
        let up_limit = match spec.up.select {
            Select::Disabled => cur,
            sel => {
                let mut result: Option<i64> = None;
                for p in &spec.up.policies {
                    let start = cur - changed_in(p.period, 1);
                    let proposed = match p.kind {
                        PolicyKind::Pods => start + i64::from(p.value),
                        PolicyKind::Percent => {
                            (start as f64 * (1.0 + f64::from(p.value) / 100.0)).ceil() as i64
                        }
                    };
                    result = Some(match (result, sel) {
                        (None, _) => proposed,
                        (Some(r), Select::Min) => r.min(proposed),
                        (Some(r), _) => r.max(proposed),
                    });
                }
                result.unwrap_or(cur).max(cur)
            }
        };
        let max_allowed = i64::from(spec.max).min(up_limit);
        let why = if i64::from(spec.max) > up_limit {
            Limit::ScaleUpLimit
        } else {
            Limit::TooManyReplicas
        };
        if i64::from(stabilized) > max_allowed {
            limit = why;
            max_allowed as u32
        } else {
            stabilized
        }
    } else if stabilized < current {
        let cur = i64::from(current);
        let down_limit = match spec.down.select {
            Select::Disabled => cur,
            sel => {
                let mut result: Option<i64> = None;
                for p in &spec.down.policies {
                    let start = cur + changed_in(p.period, -1);
                    let proposed = match p.kind {
                        PolicyKind::Pods => start - i64::from(p.value),
                        PolicyKind::Percent => {
                            (start as f64 * (1.0 - f64::from(p.value) / 100.0)) as i64
                        }
                    };
                    result = Some(match (result, sel) {
                        (None, _) => proposed,
                        (Some(r), Select::Min) => r.max(proposed),
                        (Some(r), _) => r.min(proposed),
                    });
                }
                result.unwrap_or(cur).min(cur)
            }
        };
        let min_allowed = i64::from(spec.min).max(down_limit);
        let why = if i64::from(spec.min) < down_limit {
            Limit::ScaleDownLimit
        } else {
            Limit::TooFewReplicas
        };
        if i64::from(stabilized) < min_allowed {
            limit = why;
            min_allowed.max(0) as u32
        } else {
            stabilized
        }
    } else {
        stabilized
    };
    (desired, limit)
}

impl HpaState {
    pub fn record_scale(&mut self, now: Ms, from: u32, to: u32) {
        if from != to {
            self.events.push((now, i64::from(to) - i64::from(from)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> HpaSpec {
        HpaSpec {
            min: 10,
            max: 100,
            metrics: vec![Metric {
                load: "requests".into(),
                target: 100.0,
                label: "requests".into(),
            }],
            up: Rules::default_up(),
            down: Rules::default_down(),
            tolerance: 0.1,
            sync: Ms::from_secs(15),
        }
    }

    #[test]
    fn metric_replicas_as_calc_plain_metric_replicas() {
        // 10 running pods, load 4,000 against 100 a pod: ratio 4, 40.
        assert_eq!(desired_for_metric(10, 10, 0, 4000.0, 100.0, 0.1), Some(40));
        // Within tolerance: no change.
        assert_eq!(desired_for_metric(10, 10, 0, 1050.0, 100.0, 0.1), Some(10));
        // 10 running, 10 not running (waiting for an address) on a
        // scale-up: they count as 0, so 4,000 over 20 pods: ratio 2, 40.
        assert_eq!(desired_for_metric(20, 10, 10, 4000.0, 100.0, 0.1), Some(40));
        // The same 20 when the load only fills the running ones (ratio
        // 1.5 over 10, 0.75 over 20): the direction would flip, no change.
        assert_eq!(desired_for_metric(20, 10, 10, 1500.0, 100.0, 0.1), Some(20));
        // Scale-down: not-running pods are ignored.
        assert_eq!(desired_for_metric(20, 10, 10, 500.0, 100.0, 0.1), Some(5));
        assert_eq!(desired_for_metric(5, 0, 5, 500.0, 100.0, 0.1), None);
    }

    #[test]
    fn defaults_double_then_hold_then_wait_300s_to_scale_down() {
        // The worked example: load 4x what 10 replicas serve.
        let s = spec();
        let mut st = HpaState::default();
        let t = |k: u64| Ms::from_secs(15 * k);
        // Sync 1: recommendation 40; up by max(4, 100%) = 20.
        let (d, why) = normalize(&s, &mut st, t(1), 10, 40);
        assert_eq!((d, why), (20, Limit::ScaleUpLimit));
        st.record_scale(t(1), 10, 20);
        // Sync 2, 15 s later: the last event is a full period old: 40.
        let (d, why) = normalize(&s, &mut st, t(2), 20, 40);
        assert_eq!((d, why), (40, Limit::Within));
        st.record_scale(t(2), 20, 40);
        // Holds.
        assert_eq!(normalize(&s, &mut st, t(3), 40, 40).0, 40);
        // The load falls back: recommendation 10, but the window still
        // holds 40s for 300 s after the last one.
        for k in 4..=22 {
            let (d, why) = normalize(&s, &mut st, t(k), 40, 10);
            assert_eq!((d, why), (40, Limit::ScaleDownStabilized), "sync {k}");
        }
        // 300 s after the last recommendation of 40 (sync 3 at 45 s):
        // sync 23 at 345 s sees only 10s.
        let (d, _) = normalize(&s, &mut st, t(23), 40, 10);
        assert_eq!(d, 10);
    }

    #[test]
    fn policies_and_select() {
        let mut s = spec();
        let mut st = HpaState::default();
        // selectPolicy Min: the smaller of 4 pods and 100%.
        s.up.select = Select::Min;
        assert_eq!(normalize(&s, &mut st, Ms::from_secs(15), 10, 40).0, 14);
        // Disabled: no scale-up.
        s.up.select = Select::Disabled;
        let mut st = HpaState::default();
        assert_eq!(normalize(&s, &mut st, Ms::from_secs(15), 10, 40).0, 10);
        // max and min replicas.
        let s = spec();
        let mut st = HpaState::default();
        assert_eq!(
            normalize(&s, &mut st, Ms::from_secs(15), 90, 400),
            (100, Limit::TooManyReplicas)
        );
        let mut s = spec();
        s.down.stabilization = Ms::ZERO;
        let mut st = HpaState::default();
        assert_eq!(
            normalize(&s, &mut st, Ms::from_secs(15), 20, 2),
            (10, Limit::TooFewReplicas)
        );
        // A Pods policy of 2 per minute on the way down.
        s.down.policies = vec![Policy {
            kind: PolicyKind::Pods,
            value: 2,
            period: Ms::from_secs(60),
        }];
        let mut st = HpaState::default();
        assert_eq!(
            normalize(&s, &mut st, Ms::from_secs(15), 20, 12),
            (18, Limit::ScaleDownLimit)
        );
        st.record_scale(Ms::from_secs(15), 20, 18);
        // 30 s later the 2 removed still count in the minute: no more.
        assert_eq!(normalize(&s, &mut st, Ms::from_secs(45), 18, 12).0, 18);
        // After the minute: 2 more.
        assert_eq!(normalize(&s, &mut st, Ms::from_secs(76), 18, 12).0, 16);
    }

    #[test]
    fn load_levels() {
        let parts = vec![
            LoadPart::Step {
                at: Ms::ZERO,
                to: 1000.0,
                over: Ms::ZERO,
                hold: None,
            },
            LoadPart::Step {
                at: Ms::from_secs(300),
                to: 4000.0,
                over: Ms::ZERO,
                hold: None,
            },
            LoadPart::Step {
                at: Ms::from_secs(3600),
                to: 8000.0,
                over: Ms::from_secs(600),
                hold: Some(Ms::from_secs(600)),
            },
        ];
        assert_eq!(level(&parts, Ms::from_secs(10)), 1000.0);
        assert_eq!(level(&parts, Ms::from_secs(300)), 4000.0);
        assert_eq!(level(&parts, Ms::from_secs(3900)), 6000.0);
        assert_eq!(level(&parts, Ms::from_secs(4200)), 8000.0);
        assert_eq!(level(&parts, Ms::from_secs(4799)), 8000.0);
        assert_eq!(level(&parts, Ms::from_secs(4800)), 4000.0);
        let daily = vec![LoadPart::Daily {
            min: 500.0,
            max: 3000.0,
            peak: Ms::from_secs(14 * 3600),
        }];
        assert!((level(&daily, Ms::from_secs(14 * 3600)) - 3000.0).abs() < 1e-9);
        assert!((level(&daily, Ms::from_secs(2 * 3600)) - 500.0).abs() < 1e-9);
    }
}
