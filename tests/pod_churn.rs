//! Pod churn: the HorizontalPodAutoscaler over load signals, and
//! workloads.csv. Each test states its hand-derived expectation.

mod common;

use common::{csv_rows, root, run, run_to, stderr};

fn inline(yaml: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("s.yaml");
    std::fs::write(&f, yaml).unwrap();
    run_to(&f, &d.path().join("o"), &[]);
    d
}

#[test]
fn hpa_defaults_double_hold_and_wait_300s() {
    // The worked example with Kubernetes' default behaviour: 10 replicas
    // at a target of 100 requests a pod; at 5m the load steps to 4,000
    // (4x what 10 serve). The workload starts at 2m, so syncs fall at
    // 2m15s + 15 s·k: 300 s is one. At 300 s the recommendation is
    // ceil(4,000 / 100) = 40, limited to max(10 + 4, 10 x 2) = 20; at
    // 315 s the previous change is a full 15 s old: 40; then it holds.
    // At 8m the load falls back to 1,000: the recommendation is 10, but
    // the last recommendation of 40 was at 465 s, so the 300 s window
    // keeps 40 until 765 s, when it drops to 10 at once (100% per 15 s).
    let d = inline(
        "name: hpa
duration: 20m
sample_every: 15s
subnets:
  - {name: a, cidr: 10.0.0.0/20, zone: z}
node_pools:
  - {name: p, instance_type: m5.2xlarge, subnets: [a], size: 6}
workloads:
  - name: web
    replicas: 10
    start: 2m
    hpa:
      minReplicas: 10
      maxReplicas: 100
      metrics:
        - type: Pods
          pods:
            metric: {name: requests}
            target: {type: AverageValue, averageValue: \"100\"}
    load:
      requests:
        - {at: 0s, to: 1000}
        - {at: 5m, to: 4000}
        - {at: 8m, to: 1000}
",
    );
    let ev = csv_rows(&d.path().join("o/events.csv"));
    let scales: Vec<(String, String)> = ev
        .iter()
        .filter(|r| r["kind"] == "hpa_scale")
        .map(|r| (r["time_s"].clone(), r["detail"].clone()))
        .collect();
    assert_eq!(scales.len(), 3, "{scales:?}");
    assert_eq!(scales[0].0, "300");
    assert!(scales[0].1.starts_with("web: from 10 to 20:"));
    assert!(scales[0].1.ends_with("recommends 40; ScaleUpLimit"));
    assert_eq!(scales[1].0, "315");
    assert!(scales[1].1.starts_with("web: from 20 to 40:"));
    assert_eq!(scales[2].0, "765");
    assert!(scales[2].1.starts_with("web: from 40 to 10:"));
    // workloads.csv: the columns, and 40 running from the next sample.
    let rows = csv_rows(&d.path().join("o/workloads.csv"));
    let cols: Vec<&String> = rows[0].keys().collect();
    for c in [
        "time_s",
        "workload",
        "desired",
        "running",
        "waiting_ip",
        "pending",
        "load",
    ] {
        assert!(cols.iter().any(|k| *k == c), "{c}");
    }
    let at = |t: &str| rows.iter().find(|r| r["time_s"] == t).unwrap();
    assert_eq!(at("330")["running"], "40");
    assert_eq!(at("750")["desired"], "40");
    assert_eq!(at("765")["desired"], "10");
    assert_eq!(at("330")["load"], "4000.0");
}

#[test]
fn hpa_burst_claims() {
    // scenarios/hpa-burst.yaml's comment: 10, 20, 40, 80, 105 at
    // successive syncs; 20 pods waiting for addresses while 85 run; back
    // to 10 300 s after the burst.
    let d = tempfile::tempdir().unwrap();
    run_to(&root().join("scenarios/hpa-burst.yaml"), d.path(), &[]);
    let ev = csv_rows(&d.path().join("events.csv"));
    // The big burst at about 4h53m (17,580 s).
    let ups: Vec<&String> = ev
        .iter()
        .filter(|r| r["kind"] == "hpa_scale" && r["time_s"].parse::<f64>().unwrap() >= 17_580.0)
        .map(|r| &r["detail"])
        .take(4)
        .collect();
    for (k, (a, b)) in [(10, 20), (20, 40), (40, 80), (80, 105)].iter().enumerate() {
        assert!(
            ups[k].starts_with(&format!("web: from {a} to {b}:")),
            "{:?}",
            ups[k]
        );
    }
    let rows = csv_rows(&d.path().join("workloads.csv"));
    let worst = rows
        .iter()
        .max_by_key(|r| r["waiting_ip"].parse::<u32>().unwrap())
        .unwrap();
    assert_eq!(worst["waiting_ip"], "20");
    assert_eq!(worst["running"], "85");
    assert_eq!(worst["desired"], "105");
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["peak_pods_waiting_ip"]["pods"], 20);
}

#[test]
fn bad_hpa_fields_are_refused_with_the_field() {
    let base = "name: bad
duration: 1h
subnets:
  - {name: a, cidr: 10.0.0.0/24, zone: z}
node_pools:
  - {name: p, instance_type: m5.large, subnets: [a], size: 1}
workloads:
  - name: w
    replicas: 2
";
    let cases = [
        (
            "    hpa: {maxReplicas: 5, metrics: [{type: Pods, pods: {metric: {name: rps}, target: {type: AverageValue, averageValue: \"10\"}}}]}\n",
            "workloads[0].hpa.metrics[0].pods.metric.name",
        ),
        (
            "    hpa: {minReplicas: 3, maxReplicas: 2, metrics: []}\n",
            "workloads[0].hpa.maxReplicas",
        ),
        (
            "    hpa: {maxReplicas: 5, metrics: [{type: Pods, pods: {metric: {name: rps}, target: {type: Value, value: 3}}}]}\n    load: {rps: [{at: 0s, to: 5}]}\n",
            "workloads[0].hpa.metrics[0].pods.target.type",
        ),
        (
            "    hpa: {maxReplicas: 5, metrics: [{type: Pods, pods: {metric: {name: rps}, target: {type: AverageValue, averageValue: \"10\"}}}], behavior: {scaleUp: {selectPolicy: Fastest}}}\n    load: {rps: [{at: 0s, to: 5}]}\n",
            "workloads[0].hpa.behavior.scaleUp.selectPolicy",
        ),
        (
            "    load: {rps: [{daily: {min: 1, max: 2, peak_at: \"25:00\"}}]}\n",
            "workloads[0].load.rps[0].daily.peak_at",
        ),
    ];
    let cases = cases.into_iter().chain([
        (
            "jobs: [{name: j, schedule: \"0 3 * * 1\", run_time: [1m, 2m]}]\n",
            "jobs[0].schedule",
        ),
        (
            "jobs: [{name: j, every: 1h, per_hour: 3, run_time: [1m, 2m]}]\n",
            "jobs[0]",
        ),
        (
            "jobs: [{name: w, every: 1h, run_time: [1m, 2m]}]\n",
            "jobs[0].name",
        ),
    ]);
    for (extra, field) in cases {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("bad.yaml");
        std::fs::write(&f, format!("{base}{extra}")).unwrap();
        let o = run(&["validate", f.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{extra}");
        let e = stderr(&o);
        assert!(e.contains(&format!(": {field}: ")), "{field}: {e}");
    }
}

#[test]
fn jobs_arrive_run_and_complete() {
    // builds: Poisson arrivals at 600 an hour, each pod running 5 to 30
    // minutes (uniform, mean 17.5): by Little's law 600 x 17.5 / 60 = 175
    // pods running on average once settled (after 2 h). Over the next 10
    // hours, about 34 independent stretches of 17.5 minutes, the mean's
    // standard error is about sqrt(175 / 34) ~ 2.3: accept +-10.
    // nightly: a CronJob at */15 with 3 pods of exactly 5 minutes: 3
    // running from each quarter hour for 5 minutes, none in between.
    let d = inline(
        "name: jobs
duration: 12h
sample_every: 1m
subnets:
  - {name: a, cidr: 10.0.0.0/20, zone: z}
node_pools:
  - {name: ci, instance_type: m5.2xlarge, subnets: [a], size: 8}
jobs:
  - name: builds
    per_hour: 600
    run_time: [5m, 30m]
    cpu: 100m
  - name: nightly
    schedule: \"*/15 * * * *\"
    parallelism: 3
    run_time: [5m, 5m]
    cpu: 100m
",
    );
    let rows = csv_rows(&d.path().join("o/workloads.csv"));
    let builds: Vec<f64> = rows
        .iter()
        .filter(|r| r["workload"] == "builds" && r["time_s"].parse::<f64>().unwrap() >= 7200.0)
        .map(|r| r["running"].parse().unwrap())
        .collect();
    let mean = builds.iter().sum::<f64>() / builds.len() as f64;
    assert!((165.0..=185.0).contains(&mean), "{mean}");
    let nightly = |t: &str| {
        rows.iter()
            .find(|r| r["workload"] == "nightly" && r["time_s"] == t)
            .unwrap()["running"]
            .clone()
    };
    for t in ["60", "240", "960", "1140", "3660"] {
        assert_eq!(nightly(t), "3", "{t}");
    }
    for t in ["360", "840", "1200", "3540"] {
        assert_eq!(nightly(t), "0", "{t}");
    }
    // Completed pods are gone, not recreated: desired follows the jobs.
    let last = rows
        .iter()
        .rev()
        .find(|r| r["workload"] == "builds")
        .unwrap();
    assert_eq!(last["desired"], last["running"]);
}

#[test]
fn rolling_update_follows_max_surge_and_max_unavailable() {
    // 20 replicas, maxSurge 25% (5) and maxUnavailable 25% (5), a new
    // pod available 30 s after it runs (min_ready). At 10m: 5 new pods
    // (25 in all), 5 old go (15 stay available); the 5 new run at once but
    // are not available yet, so 5 more new ones come (25 again: 15 old,
    // 10 new). At 630 s the 10 are available: 10 old go (15 available
    // remain), 10 new come. At 660 s those are available: the last 5 old
    // go. Finished at 660 s.
    let d = inline(
        "name: roll
duration: 20m
sample_every: 10s
subnets:
  - {name: a, cidr: 10.0.0.0/20, zone: z}
node_pools:
  - {name: p, instance_type: m5.2xlarge, subnets: [a], size: 4}
workloads:
  - name: web
    replicas: 20
    cpu: 100m
    rollout: {at: [10m], max_surge: \"25%\", max_unavailable: \"25%\", min_ready: 30s}
",
    );
    let ev = csv_rows(&d.path().join("o/events.csv"));
    let kinds: Vec<(String, String)> = ev
        .iter()
        .filter(|r| r["kind"].starts_with("rollout"))
        .map(|r| (r["time_s"].clone(), r["detail"].clone()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("600".to_string(), "web: 20 pods to replace".to_string()),
            (
                "660".to_string(),
                "web: 20 pods of the new template".to_string()
            ),
        ]
    );
    let rows = csv_rows(&d.path().join("o/workloads.csv"));
    let running = |t: &str| rows.iter().find(|r| r["time_s"] == t).unwrap()["running"].clone();
    assert_eq!(running("610"), "25");
    assert_eq!(running("640"), "25");
    assert_eq!(running("670"), "20");
}

#[test]
fn security_groups_for_pods_take_branch_enis_not_prefixes() {
    // Two m5.large with ENABLE_POD_ENI: each gets a trunk ENI (one address)
    // once Ready and advertises 9 branch ENIs (the catalogue's branch_enis
    // for m5.large). 24 pods with security groups: 18 fit (9 a node), 6
    // stay Pending (no pod-eni left). Each running one holds a branch ENI
    // of one address placed by EC2; none comes from a prefix: the 10 web
    // pods alone need prefixes.
    let d = inline(
        "name: sgp
duration: 30m
sample_every: 1m
vpc_cni: {prefix_delegation: true, warm_prefix_target: 1, enable_pod_eni: true}
subnets:
  - {name: a, cidr: 10.0.0.0/24, zone: z}
node_pools:
  - {name: p, instance_type: m5.large, subnets: [a], size: 2}
workloads:
  - {name: web, replicas: 10, cpu: 50m}
  - {name: payments, replicas: 24, cpu: 50m, security_groups: true}
",
    );
    let ev = csv_rows(&d.path().join("o/events.csv"));
    let trunks: Vec<_> = ev
        .iter()
        .filter(|r| r["kind"] == "trunk_attached")
        .collect();
    assert_eq!(trunks.len(), 2);
    assert!(trunks[0]["detail"].ends_with(": 9 branch ENIs"));
    let rows = csv_rows(&d.path().join("o/workloads.csv"));
    let last = |w: &str| {
        rows.iter()
            .rev()
            .find(|r| r["workload"] == w)
            .unwrap()
            .clone()
    };
    assert_eq!(last("payments")["running"], "18");
    assert_eq!(last("payments")["pending"], "6");
    assert_eq!(last("web")["running"], "10");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.path().join("o/final-state.json")).unwrap())
            .unwrap();
    let enis = state["NetworkInterfaces"].as_array().unwrap();
    let of = |t: &str| enis.iter().filter(|e| e["InterfaceType"] == t).count();
    assert_eq!(of("branch"), 18);
    assert_eq!(of("trunk"), 2);
    for e in enis.iter().filter(|e| e["InterfaceType"] == "branch") {
        assert_eq!(e["PrivateIpAddresses"].as_array().unwrap().len(), 1);
        assert!(e.get("Ipv4Prefixes").is_none());
    }
    // Refused without ENABLE_POD_ENI.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.yaml");
    std::fs::write(
        &f,
        "name: bad
duration: 1h
subnets: [{name: a, cidr: 10.0.0.0/24, zone: z}]
node_pools: [{name: p, instance_type: m5.large, subnets: [a], size: 1}]
workloads: [{name: w, replicas: 1, security_groups: true}]
",
    )
    .unwrap();
    let o = run(&["validate", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("workloads[0].security_groups: needs vpc_cni.enable_pod_eni"));
}

#[test]
fn bench_large_first_half_day() {
    // scenarios/bench-large.yaml for its first 12 hours (the criterion
    // benchmark runs a day; the month, where some peaks fail, is measured
    // with `run`: docs/simulation-model.md). By design (its comment):
    // about 2,000 nodes at the daily low and up to about 4,000 at the
    // peak, in three zones; jobs arrive at 17,000 an hour and run 5-30
    // minutes, so by Little's law 17,000 x 17.5 / 60 = 4,958 run at once
    // (+-5%); Karpenter spreads launches over the zones (each within 5
    // points of a third); the first afternoon peak fits, close to the edge:
    // under 200 of each zone's 4,096 /28 blocks left.
    let d = tempfile::tempdir().unwrap();
    run_to(
        &root().join("scenarios/bench-large.yaml"),
        d.path(),
        &["--duration", "12h"],
    );
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["failures"]["InsufficientCidrBlocks"], 0);
    for m in s["min_delegatable_blocks"].as_array().unwrap() {
        let b = m["delegatable_blocks"].as_u64().unwrap();
        assert!(b > 0 && b < 200, "{m}");
    }
    let peak = s["peak_nodes"].as_u64().unwrap();
    assert!((3000..=4200).contains(&peak), "{peak}");
    let rows = csv_rows(&d.path().join("timeseries.csv"));
    let mut nodes: std::collections::BTreeMap<u64, u64> = Default::default();
    for r in &rows {
        let t = r["time_s"].parse::<f64>().unwrap() as u64;
        *nodes.entry(t).or_default() += r["nodes"].parse::<u64>().unwrap();
    }
    let low = nodes.range(3600..).map(|(_, n)| *n).min().unwrap();
    assert!((1500..=2500).contains(&low), "{low}");
    let w = csv_rows(&d.path().join("workloads.csv"));
    let jobs: Vec<f64> = w
        .iter()
        .filter(|r| r["workload"] == "ci-jobs" && r["time_s"].parse::<f64>().unwrap() >= 7200.0)
        .map(|r| r["running"].parse().unwrap())
        .collect();
    let mean = jobs.iter().sum::<f64>() / jobs.len() as f64;
    assert!((4710.0..=5210.0).contains(&mean), "{mean}");
    let ev = csv_rows(&d.path().join("events.csv"));
    let launched: Vec<&String> = ev
        .iter()
        .filter(|r| r["kind"] == "node_launched")
        .map(|r| &r["subnet"])
        .collect();
    for z in ["ci-a", "ci-b", "ci-c"] {
        let share =
            launched.iter().filter(|s| s.as_str() == z).count() as f64 / launched.len() as f64;
        assert!((share - 1.0 / 3.0).abs() < 0.05, "{z}: {share}");
    }
}
