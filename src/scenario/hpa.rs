//! `workloads[].hpa` (the `spec` of an `autoscaling/v2`
//! HorizontalPodAutoscaler, camelCase, so a real manifest's spec pastes in)
//! and `workloads[].load`, as written, and their resolution.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::locate::Path;
use super::Checker;
use crate::cluster::hpa::{HpaSpec, LoadPart, LoadSpec, Metric, Policy, PolicyKind, Rules, Select};
use crate::time::Ms;

/// `HorizontalPodAutoscalerSpec`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawHpa {
    /// Accepted and ignored (the workload is the target).
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Value>")]
    pub scale_target_ref: Option<serde_yaml::Value>,
    /// Default 1.
    #[serde(default)]
    pub min_replicas: Option<u32>,
    pub max_replicas: u32,
    pub metrics: Vec<RawMetric>,
    #[serde(default)]
    pub behavior: Option<RawBehavior>,
}

/// `MetricSpec`: `Pods` (with an `AverageValue` target) or `Resource` (cpu,
/// with a `Utilization` target).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawMetric {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub pods: Option<RawPodsMetric>,
    #[serde(default)]
    pub resource: Option<RawResourceMetric>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawPodsMetric {
    pub metric: RawMetricId,
    pub target: RawTarget,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawMetricId {
    pub name: String,
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Value>")]
    pub selector: Option<serde_yaml::Value>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawResourceMetric {
    pub name: String,
    pub target: RawTarget,
}

/// `MetricTarget`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawTarget {
    #[serde(rename = "type")]
    pub kind: String,
    /// A quantity: `100`, `500m`, `1k`.
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Value>")]
    pub average_value: Option<serde_yaml::Value>,
    #[serde(default)]
    pub average_utilization: Option<u32>,
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Value>")]
    pub value: Option<serde_yaml::Value>,
}

/// `HorizontalPodAutoscalerBehavior`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawBehavior {
    #[serde(default)]
    pub scale_up: Option<RawRules>,
    #[serde(default)]
    pub scale_down: Option<RawRules>,
}

/// `HPAScalingRules`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawRules {
    #[serde(default)]
    pub stabilization_window_seconds: Option<u32>,
    /// `Max` (default), `Min` or `Disabled`.
    #[serde(default)]
    pub select_policy: Option<String>,
    #[serde(default)]
    pub policies: Option<Vec<RawPolicy>>,
    /// Accepted for manifests of Kubernetes 1.33+ (`tolerance` per
    /// direction): a quantity.
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Value>")]
    pub tolerance: Option<serde_yaml::Value>,
}

/// `HPAScalingPolicy`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawPolicy {
    /// `Pods` or `Percent`.
    #[serde(rename = "type")]
    pub kind: String,
    pub value: u32,
    pub period_seconds: u32,
}

/// One element of a load signal: a step or ramp (`at`, `to`, optional
/// `over`, optional `hold`), `bursts`, or `daily`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLoadPart {
    #[serde(default)]
    pub at: Option<Ms>,
    #[serde(default)]
    pub to: Option<f64>,
    #[serde(default)]
    pub over: Option<Ms>,
    #[serde(default)]
    pub hold: Option<Ms>,
    #[serde(default)]
    pub bursts: Option<RawBursts>,
    #[serde(default)]
    pub daily: Option<RawDaily>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawBursts {
    /// Mean time between bursts (exponential).
    pub every: Ms,
    /// `[smallest, largest]` added load, drawn uniformly.
    pub size: [f64; 2],
    /// `[shortest, longest]` duration, drawn uniformly.
    pub lasting: [Ms; 2],
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDaily {
    pub min: f64,
    pub max: f64,
    /// Time of day of the peak, `HH:MM` (the run starts at midnight).
    pub peak_at: String,
}

/// A Kubernetes quantity as a number: `100`, `1.5`, `500m`, `2k`, `1Mi`.
pub fn parse_quantity(v: &serde_yaml::Value) -> Result<f64, String> {
    let text = match v {
        serde_yaml::Value::Number(n) => return n.as_f64().ok_or("not a number".to_string()),
        serde_yaml::Value::String(s) => s.trim().to_string(),
        _ => return Err("a quantity like 100, 500m or 2k".into()),
    };
    let (num, mult) = [
        ("Ki", 1024.0),
        ("Mi", 1024.0 * 1024.0),
        ("Gi", 1024.0 * 1024.0 * 1024.0),
        ("m", 0.001),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
    ]
    .iter()
    .find_map(|(suf, m)| text.strip_suffix(suf).map(|n| (n.to_string(), *m)))
    .unwrap_or((text.clone(), 1.0));
    let x: f64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a quantity (e.g. 100, 500m, 2k)"))?;
    if !x.is_finite() || x < 0.0 {
        return Err(format!("`{text}`: a quantity of 0 or more"));
    }
    Ok(x * mult)
}

fn rules(raw: Option<&RawRules>, default: Rules, p: &Path, c: &mut Checker) -> Rules {
    let Some(r) = raw else { return default };
    let select = match r.select_policy.as_deref() {
        None | Some("Max") => Select::Max,
        Some("Min") => Select::Min,
        Some("Disabled") => Select::Disabled,
        Some(other) => {
            c.err(
                &p.key("selectPolicy"),
                format!("`{other}`: one of Max, Min, Disabled"),
            );
            Select::Max
        }
    };
    let policies = match &r.policies {
        None => default.policies.clone(),
        Some(list) => list
            .iter()
            .enumerate()
            .filter_map(|(i, x)| {
                let pp = p.key("policies").index(i);
                let kind = match x.kind.as_str() {
                    "Pods" => PolicyKind::Pods,
                    "Percent" => PolicyKind::Percent,
                    other => {
                        c.err(&pp.key("type"), format!("`{other}`: Pods or Percent"));
                        return None;
                    }
                };
                if x.period_seconds == 0 || x.period_seconds > 1800 {
                    c.err(
                        &pp.key("periodSeconds"),
                        "between 1 and 1800 (autoscaling/v2 validation)",
                    );
                    return None;
                }
                if x.value == 0 {
                    c.err(&pp.key("value"), "more than 0");
                    return None;
                }
                Some(Policy {
                    kind,
                    value: x.value,
                    period: Ms::from_secs(u64::from(x.period_seconds)),
                })
            })
            .collect(),
    };
    let stabilization = match r.stabilization_window_seconds {
        None => default.stabilization,
        Some(s) if s > 3600 => {
            c.err(
                &p.key("stabilizationWindowSeconds"),
                "at most 3600 (autoscaling/v2 validation)",
            );
            default.stabilization
        }
        Some(s) => Ms::from_secs(u64::from(s)),
    };
    Rules {
        stabilization,
        select,
        policies,
    }
}

/// Resolves `hpa` and `load` for a workload whose pods request `cpu_millis`.
pub(super) fn resolve(
    hpa: Option<&RawHpa>,
    load: &BTreeMap<String, Vec<RawLoadPart>>,
    replicas: u32,
    cpu_millis: u64,
    p: &Path,
    c: &mut Checker,
) -> (Option<HpaSpec>, LoadSpec) {
    let mut loads: LoadSpec = Vec::new();
    for (name, parts) in load {
        let lp = p.key("load").key(name);
        let mut out = Vec::new();
        for (i, x) in parts.iter().enumerate() {
            let xp = lp.index(i);
            let kinds = [x.to.is_some(), x.bursts.is_some(), x.daily.is_some()]
                .iter()
                .filter(|&&b| b)
                .count();
            if kinds != 1 {
                c.err(
                    &xp,
                    "each element is one of: a step or ramp {at, to, over, hold}, {bursts: {...}}, {daily: {...}}",
                );
                continue;
            }
            if let Some(to) = x.to {
                if !(to.is_finite() && to >= 0.0) {
                    c.err(&xp.key("to"), "a load of 0 or more");
                    continue;
                }
                out.push(LoadPart::Step {
                    at: x.at.unwrap_or(Ms::ZERO),
                    to,
                    over: x.over.unwrap_or(Ms::ZERO),
                    hold: x.hold,
                });
            } else if x.at.is_some() || x.over.is_some() || x.hold.is_some() {
                c.err(&xp, "at, over and hold belong to a step {at, to}");
            } else if let Some(b) = &x.bursts {
                let ok_size =
                    b.size.iter().all(|v| v.is_finite() && *v >= 0.0) && b.size[0] <= b.size[1];
                if b.every == Ms::ZERO {
                    c.err(&xp.key("bursts").key("every"), "more than 0");
                } else if !ok_size {
                    c.err(
                        &xp.key("bursts").key("size"),
                        "[smallest, largest], both 0 or more",
                    );
                } else if b.lasting[0] > b.lasting[1] || b.lasting[1] == Ms::ZERO {
                    c.err(
                        &xp.key("bursts").key("lasting"),
                        "[shortest, longest], longest more than 0",
                    );
                } else {
                    out.push(LoadPart::Bursts {
                        every: b.every,
                        size: (b.size[0], b.size[1]),
                        lasting: (b.lasting[0], b.lasting[1]),
                    });
                }
            } else if let Some(d) = &x.daily {
                let peak = parse_clock(&d.peak_at);
                match peak {
                    Err(m) => c.err(&xp.key("daily").key("peak_at"), m),
                    Ok(_)
                        if !(d.min.is_finite()
                            && d.max.is_finite()
                            && 0.0 <= d.min
                            && d.min <= d.max) =>
                    {
                        c.err(&xp.key("daily"), "needs 0 <= min <= max")
                    }
                    Ok(peak) => out.push(LoadPart::Daily {
                        min: d.min,
                        max: d.max,
                        peak,
                    }),
                }
            }
        }
        loads.push((name.clone(), out));
    }
    let Some(h) = hpa else {
        return (None, loads);
    };
    let hp = p.key("hpa");
    let min = h.min_replicas.unwrap_or(1);
    if min == 0 {
        c.err(
            &hp.key("minReplicas"),
            "at least 1 (scale to zero needs the HPAScaleToZero feature gate and an Object or External metric)",
        );
    }
    if h.max_replicas < min.max(1) {
        c.err(
            &hp.key("maxReplicas"),
            format!("at least minReplicas ({min})"),
        );
    }
    if h.max_replicas > super::MAX_REPLICAS {
        c.err(
            &hp.key("maxReplicas"),
            format!("at most {}", super::MAX_REPLICAS),
        );
    }
    if replicas == 0 {
        c.err(
            &p.key("replicas"),
            "an HPA does not scale a workload from 0 replicas; start it with at least minReplicas",
        );
    }
    if h.metrics.is_empty() {
        c.err(&hp.key("metrics"), "at least one metric");
    }
    let mut metrics = Vec::new();
    for (i, m) in h.metrics.iter().enumerate() {
        let mp = hp.key("metrics").index(i);
        match (m.kind.as_str(), &m.pods, &m.resource) {
            ("Pods", Some(pm), None) => {
                let tp = mp.key("pods").key("target");
                if pm.target.kind != "AverageValue" {
                    c.err(&tp.key("type"), "a Pods metric's target is AverageValue");
                    continue;
                }
                let Some(v) = &pm.target.average_value else {
                    c.err(
                        &tp.key("averageValue"),
                        "missing: the value per pod to keep",
                    );
                    continue;
                };
                match parse_quantity(v) {
                    Ok(t) if t > 0.0 => {
                        if !load.contains_key(&pm.metric.name) {
                            c.err(
                                &mp.key("pods").key("metric").key("name"),
                                format!(
                                    "no load named `{}` in this workload's `load` (the metric's demand over time)",
                                    pm.metric.name
                                ),
                            );
                            continue;
                        }
                        metrics.push(Metric {
                            load: pm.metric.name.clone(),
                            target: t,
                            label: pm.metric.name.clone(),
                        });
                    }
                    Ok(_) => c.err(&tp.key("averageValue"), "more than 0"),
                    Err(e) => c.err(&tp.key("averageValue"), e),
                }
            }
            ("Resource", None, Some(rm)) => {
                let tp = mp.key("resource").key("target");
                if rm.name != "cpu" {
                    c.err(
                        &mp.key("resource").key("name"),
                        format!("`{}`: only cpu is modelled (its load is in cores)", rm.name),
                    );
                    continue;
                }
                let Some(u) = rm
                    .target
                    .average_utilization
                    .filter(|_| rm.target.kind == "Utilization")
                else {
                    c.err(
                        &tp,
                        "a cpu target of type Utilization with averageUtilization",
                    );
                    continue;
                };
                if u == 0 {
                    c.err(&tp.key("averageUtilization"), "more than 0");
                    continue;
                }
                if !load.contains_key("cpu") {
                    c.err(
                        &mp,
                        "a cpu metric needs `load: {cpu: [...]}`, the workload's total CPU use in cores",
                    );
                    continue;
                }
                metrics.push(Metric {
                    load: "cpu".into(),
                    // Cores per pod at the target: request × utilization.
                    target: cpu_millis as f64 / 1000.0 * f64::from(u) / 100.0,
                    label: format!("cpu {u}%"),
                });
            }
            (k, _, _) => c.err(
                &mp,
                format!(
                    "`{k}`: give type Pods with `pods`, or type Resource with `resource` (cpu)"
                ),
            ),
        }
    }
    let b = h.behavior.clone().unwrap_or_default();
    let up = rules(
        b.scale_up.as_ref(),
        Rules::default_up(),
        &hp.key("behavior").key("scaleUp"),
        c,
    );
    let down = rules(
        b.scale_down.as_ref(),
        Rules::default_down(),
        &hp.key("behavior").key("scaleDown"),
        c,
    );
    (
        Some(HpaSpec {
            min: min.max(1),
            max: h.max_replicas,
            metrics,
            up,
            down,
            tolerance: 0.1,
            sync: Ms::from_secs(15),
        }),
        loads,
    )
}

/// `HH:MM` as a time of day.
fn parse_clock(s: &str) -> Result<Ms, String> {
    let bad = || format!("`{s}`: a time of day like 14:00");
    let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
    let h: u64 = h.parse().map_err(|_| bad())?;
    let m: u64 = m.parse().map_err(|_| bad())?;
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok(Ms::from_secs(h * 3600 + m * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        let q = |s: &str| parse_quantity(&serde_yaml::Value::String(s.into()));
        assert_eq!(q("100").unwrap(), 100.0);
        assert_eq!(q("500m").unwrap(), 0.5);
        assert_eq!(q("2k").unwrap(), 2000.0);
        assert_eq!(q("1Ki").unwrap(), 1024.0);
        assert!(q("x").is_err());
        assert!(q("-1").is_err());
        assert_eq!(parse_quantity(&serde_yaml::Value::from(7)).unwrap(), 7.0);
        assert_eq!(parse_clock("14:30").unwrap(), Ms::from_secs(52200));
        assert!(parse_clock("25:00").is_err());
    }
}
