//! Monte Carlo sweeps: many seeds, times every variant, times a parameter
//! grid. Each run is reduced as it goes to a [`RunRecord`] (its failure
//! counts, first failure, pod waiting and a series of delegatable blocks and
//! free addresses); nothing else of it is kept. Work items are numbered
//! (variant, grid point, seed) in that order; records are aggregated in
//! index order, so the results are the same whatever the thread count, and
//! a sweep cut into shards and merged gives the same records, hence the same
//! bytes.

use serde::{Deserialize, Serialize};
use serde_yaml::Value;

use super::variants::{apply_set, parse_set, SetOverride};
use super::Study;
use crate::scenario::{self, Scenario, ScenarioError};
use crate::sim::observe::{EventRow, RowSink, SampleRow};
use crate::sim::Simulation;

/// One grid axis: a field and its values.
#[derive(Clone, Debug)]
pub struct Axis {
    /// The field, as written (`subnets.private-a.reservations`).
    pub path: String,
    pub values: Vec<Value>,
}

/// Parses `PATH=V1,V2,...`, or `PATH=[V1, V2, ...]` (a YAML list, for
/// values that contain commas).
pub fn parse_axis(s: &str) -> Result<Axis, String> {
    let (path, rest) = s.split_once('=').ok_or_else(|| {
        format!("`{s}`: expected PATH=V1,V2,... (e.g. vpc_cni.warm_ip_target=0,4,8)")
    })?;
    let values: Vec<Value> = if rest.trim_start().starts_with('[') {
        serde_yaml::from_str(rest)
            .map_err(|e| format!("`{s}`: the values are not a YAML list: {e}"))?
    } else {
        rest.split(',')
            .map(|v| serde_yaml::from_str(v).map_err(|e| format!("`{s}`: `{v}` is not YAML: {e}")))
            .collect::<Result<_, _>>()?
    };
    if values.is_empty() {
        return Err(format!("`{s}`: no values"));
    }
    parse_set(&format!("{path}=0"))?;
    Ok(Axis {
        path: path.to_string(),
        values,
    })
}

/// A value as one CSV cell and chart label: scalars as written, a map as
/// its values joined by spaces (`10.0.3.0/24 prefix`), a list as its
/// elements joined by ` + `, an empty list as `none`.
pub fn label(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Sequence(l) if l.is_empty() => "none".into(),
        Value::Sequence(l) => l.iter().map(label).collect::<Vec<_>>().join(" + "),
        Value::Mapping(m) => m.values().map(label).collect::<Vec<_>>().join(" "),
        Value::Null => "null".into(),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

/// One (variant, grid point): its scenario, resolved once.
#[derive(Clone, Debug)]
pub struct Group {
    pub variant: String,
    /// The grid point's value labels, one per axis.
    pub point: Vec<String>,
    pub scenario: Scenario,
}

/// Builds every (variant, grid point) group, first axis slowest.
pub fn groups(study: &Study, axes: &[Axis]) -> Result<Vec<Group>, ScenarioError> {
    let mut points: Vec<Vec<usize>> = vec![Vec::new()];
    for a in axes {
        points = points
            .into_iter()
            .flat_map(|p| {
                (0..a.values.len()).map(move |i| {
                    let mut q = p.clone();
                    q.push(i);
                    q
                })
            })
            .collect();
    }
    let mut out = Vec::new();
    for v in &study.variants {
        for p in &points {
            let mut value = v.value.clone();
            let mut labels = Vec::new();
            for (a, &i) in axes.iter().zip(p) {
                let set = SetOverride {
                    text: format!("--grid {}={}", a.path, label(&a.values[i])),
                    path: a.path.split('.').map(String::from).collect(),
                    value: a.values[i].clone(),
                };
                apply_set(&mut value, &set).map_err(|m| ScenarioError {
                    file: study.file.clone(),
                    problems: vec![scenario::Problem {
                        line: None,
                        column: None,
                        field: "--grid".into(),
                        message: m,
                    }],
                })?;
                labels.push(label(&a.values[i]));
            }
            let axes_text: Vec<String> = axes
                .iter()
                .zip(&labels)
                .map(|(a, l)| format!("--grid {}={l}", a.path))
                .collect();
            let what = format!("variant `{}`, {}", v.name, axes_text.join(", "));
            let mut sc = scenario::from_value(value, &study.text, &study.file, &what, v.line)?;
            sc.name = v.scenario.name.clone();
            out.push(Group {
                variant: v.name.clone(),
                point: labels,
                scenario: sc,
            });
        }
    }
    Ok(out)
}

/// What one run leaves.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunRecord {
    pub index: usize,
    pub group: usize,
    pub seed: u64,
    pub insufficient_cidr_blocks: u64,
    pub insufficient_free_addresses: u64,
    pub invalid_parameter_value: u64,
    pub first_insufficient_cidr_blocks_s: Option<f64>,
    pub pod_wait_time_s: f64,
    /// Per sample: delegatable /28s and free addresses, summed over subnets.
    pub series: Vec<(u32, u32)>,
}

/// Reduces a run's samples to its series as they come (no rows kept).
#[derive(Default)]
struct SeriesSink {
    series: Vec<(u32, u32)>,
    last: Option<crate::time::Ms>,
}

impl RowSink for SeriesSink {
    fn sample(&mut self, row: &SampleRow) {
        if self.last != Some(row.time) {
            self.last = Some(row.time);
            self.series.push((0, 0));
        }
        let e = self.series.last_mut().expect("pushed");
        e.0 += row.delegatable_blocks;
        e.1 += row.free_ips;
    }
    fn event(&mut self, _: &EventRow) {}
}

/// Runs work item `index` of `groups` x `seeds`.
pub fn run_one(groups: &[Group], seeds: &[u64], index: usize) -> RunRecord {
    let (g, k) = (index / seeds.len(), index % seeds.len());
    let mut sink = SeriesSink::default();
    let r = Simulation::new(&groups[g].scenario, seeds[k]).run_into(&mut sink, &mut |_| {});
    let s = &r.summary;
    RunRecord {
        index,
        group: g,
        seed: seeds[k],
        insufficient_cidr_blocks: s.failures.insufficient_cidr_blocks,
        insufficient_free_addresses: s.failures.insufficient_free_addresses,
        invalid_parameter_value: s.failures.invalid_parameter_value,
        first_insufficient_cidr_blocks_s: s
            .first_insufficient_cidr_blocks
            .as_ref()
            .map(|f| f.time_s),
        pod_wait_time_s: s.pod_wait_time_s,
        series: sink.series,
    }
}

/// Wilson score interval for `k` successes in `n` trials (95%).
pub fn wilson(k: u64, n: u64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = 1.959_963_984_540_054_f64;
    let (n, p) = (n as f64, k as f64 / n as f64);
    let d = 1.0 + z * z / n;
    let c = (p + z * z / (2.0 * n)) / d;
    let h = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / d;
    // At k = 0 (k = n) the bound is exactly 0 (1); keep float residue out.
    let lo = if k == 0 { 0.0 } else { (c - h).max(0.0) };
    let hi = if k as f64 == n { 1.0 } else { (c + h).min(1.0) };
    (lo, hi)
}

/// The nearest-rank percentile `q` (0-100) of sorted values.
pub fn percentile<T: Copy>(sorted: &[T], q: u32) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q as usize * sorted.len()).div_ceil(100)).max(1);
    Some(sorted[rank - 1])
}

/// Aggregates of one group.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupStats {
    pub runs: u64,
    pub failing: u64,
    pub p: f64,
    pub p_low: f64,
    pub p_high: f64,
    /// Over failing runs: first-failure time p5, p50, p95 (s).
    pub first_failure: [Option<f64>; 3],
    /// InsufficientCidrBlocks per run: p50, p95, mean.
    pub icb: (u64, u64, f64),
    /// Pod waiting per run (s): mean, p95.
    pub pod_wait: (f64, f64),
    /// Per sample: (p5, p50, p95) of delegatable blocks and of free
    /// addresses.
    pub bands: Vec<([u32; 3], [u32; 3])>,
}

/// Aggregates records (all of one group, any order).
pub fn stats(records: &[&RunRecord]) -> GroupStats {
    let n = records.len() as u64;
    let failing = records
        .iter()
        .filter(|r| r.insufficient_cidr_blocks > 0)
        .count() as u64;
    let (p_low, p_high) = wilson(failing, n);
    let mut firsts: Vec<f64> = records
        .iter()
        .filter_map(|r| r.first_insufficient_cidr_blocks_s)
        .collect();
    firsts.sort_by(f64::total_cmp);
    let mut icb: Vec<u64> = records.iter().map(|r| r.insufficient_cidr_blocks).collect();
    icb.sort_unstable();
    let mut wait: Vec<f64> = records.iter().map(|r| r.pod_wait_time_s).collect();
    wait.sort_by(f64::total_cmp);
    let len = records.iter().map(|r| r.series.len()).min().unwrap_or(0);
    let mut bands = Vec::with_capacity(len);
    let mut b: Vec<u32> = Vec::with_capacity(records.len());
    let mut f: Vec<u32> = Vec::with_capacity(records.len());
    for k in 0..len {
        b.clear();
        f.clear();
        for r in records {
            b.push(r.series[k].0);
            f.push(r.series[k].1);
        }
        b.sort_unstable();
        f.sort_unstable();
        let q = |v: &[u32]| [5, 50, 95].map(|p| percentile(v, p).unwrap_or(0));
        bands.push((q(&b), q(&f)));
    }
    GroupStats {
        runs: n,
        failing,
        p: if n == 0 {
            0.0
        } else {
            failing as f64 / n as f64
        },
        p_low,
        p_high,
        first_failure: [5, 50, 95].map(|q| percentile(&firsts, q)),
        icb: (
            percentile(&icb, 50).unwrap_or(0),
            percentile(&icb, 95).unwrap_or(0),
            if n == 0 {
                0.0
            } else {
                icb.iter().sum::<u64>() as f64 / n as f64
            },
        ),
        pod_wait: (
            if n == 0 {
                0.0
            } else {
                wait.iter().sum::<f64>() / n as f64
            },
            percentile(&wait, 95).unwrap_or(0.0),
        ),
        bands,
    }
}

/// Parses `--seeds A..B` (inclusive) or a single seed.
pub fn parse_seeds(s: &str) -> Result<Vec<u64>, String> {
    let bad = || format!("`{s}`: expected seeds as A..B (e.g. 1..200) or one seed");
    let seeds: Vec<u64> = match s.split_once("..") {
        Some((a, b)) => {
            let (a, b): (u64, u64) = (
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            );
            if b < a {
                return Err(bad());
            }
            if b - a >= 1_000_000 {
                return Err(format!("`{s}`: at most 1,000,000 seeds"));
            }
            (a..=b).collect()
        }
        None => vec![s.trim().parse().map_err(|_| bad())?],
    };
    Ok(seeds)
}

/// `K/N` (K from 0), or `auto` with N given: K from the batch system
/// (`JOB_COMPLETION_INDEX` of Kubernetes Indexed Jobs,
/// `AWS_BATCH_JOB_ARRAY_INDEX` of AWS Batch array jobs).
pub fn parse_shard(s: &str, count: Option<usize>) -> Result<(usize, usize), String> {
    let (k, n) = if s == "auto" {
        let n = count.ok_or("--shard auto needs --shards N (the number of slices)")?;
        let k = ["JOB_COMPLETION_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX"]
            .iter()
            .find_map(|v| std::env::var(v).ok())
            .ok_or(
                "--shard auto: neither JOB_COMPLETION_INDEX nor AWS_BATCH_JOB_ARRAY_INDEX is set",
            )?;
        let k: usize = k
            .trim()
            .parse()
            .map_err(|_| format!("--shard auto: index `{k}` is not a number"))?;
        (k, n)
    } else {
        let (k, n) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}`: expected K/N (e.g. 0/4) or auto"))?;
        (
            k.parse().map_err(|_| format!("`{s}`: K is not a number"))?,
            n.parse().map_err(|_| format!("`{s}`: N is not a number"))?,
        )
    };
    if n == 0 || k >= n {
        return Err(format!("shard {k}/{n}: K runs from 0 to N-1"));
    }
    Ok((k, n))
}

/// The work items of shard `k` of `n`: every index with `index % n == k`.
pub fn shard_items(total: usize, k: usize, n: usize) -> Vec<usize> {
    (k..total).step_by(n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_the_textbook() {
        // 0 of 200: [0, 0.0188]; 10 of 100: [0.0552, 0.1744].
        let (lo, hi) = wilson(0, 200);
        assert_eq!(lo, 0.0);
        assert!((hi - 0.018_8).abs() < 1e-4, "{hi}");
        let (lo, hi) = wilson(10, 100);
        assert!(
            (lo - 0.055_2).abs() < 1e-4 && (hi - 0.174_4).abs() < 1e-4,
            "{lo} {hi}"
        );
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u32> = (1..=20).collect();
        assert_eq!(percentile(&v, 5), Some(1));
        assert_eq!(percentile(&v, 50), Some(10));
        assert_eq!(percentile(&v, 95), Some(19));
        assert_eq!(percentile::<u32>(&[], 50), None);
    }

    #[test]
    fn seeds_axes_and_shards() {
        assert_eq!(parse_seeds("1..3").unwrap(), vec![1, 2, 3]);
        assert_eq!(parse_seeds("7").unwrap(), vec![7]);
        assert!(parse_seeds("3..1").is_err());
        let a = parse_axis("vpc_cni.warm_ip_target=0,4,8").unwrap();
        assert_eq!(a.values.len(), 3);
        let a =
            parse_axis("subnets.a.reservations=[[], [{cidr: 10.0.3.0/24, type: prefix}]]").unwrap();
        assert_eq!(label(&a.values[1]), "10.0.3.0/24 prefix");
        assert_eq!(label(&a.values[0]), "none");
        assert_eq!(parse_shard("1/4", None).unwrap(), (1, 4));
        assert!(parse_shard("4/4", None).is_err());
        assert_eq!(shard_items(10, 1, 4), vec![1, 5, 9]);
        let all: Vec<usize> = (0..4).flat_map(|k| shard_items(10, k, 4)).collect();
        assert_eq!(all.len(), 10);
    }
}
