//! Node churn: spot interruptions, Karpenter, the Cluster Autoscaler. Each
//! test states the expectation it checks and how it was derived by hand
//! (from the model's rules in docs/node-churn-model.md and the scenario's
//! numbers), then runs the binary on a real scenario file.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{csv_rows, root, run, run_to, stderr};

type Row = BTreeMap<String, String>;

fn run_scenario(file: &Path, extra: &[&str]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    run_to(file, d.path(), extra);
    d
}

fn shipped(name: &str, extra: &[&str]) -> tempfile::TempDir {
    run_scenario(&root().join("scenarios").join(name), extra)
}

/// A scenario written to a temporary file.
fn inline(yaml: &str, extra: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("s.yaml");
    std::fs::write(&f, yaml).unwrap();
    let out = run_scenario(&f, extra);
    drop(dir);
    out
}

fn events(d: &tempfile::TempDir) -> Vec<Row> {
    csv_rows(&d.path().join("events.csv"))
}

fn of<'a>(ev: &'a [Row], kind: &str) -> Vec<&'a Row> {
    ev.iter().filter(|r| r["kind"] == kind).collect()
}

fn t(r: &Row) -> f64 {
    r["time_s"].parse().unwrap()
}

fn last_sample(d: &tempfile::TempDir) -> Vec<Row> {
    let rows = csv_rows(&d.path().join("timeseries.csv"));
    let end = rows.last().unwrap()["time_s"].clone();
    rows.into_iter().filter(|r| r["time_s"] == end).collect()
}

fn sum(rows: &[Row], col: &str) -> u64 {
    rows.iter().map(|r| r[col].parse::<u64>().unwrap()).sum()
}

fn spot_fleet(nodes: u32, correlated: &str, zones: u32, days: u32) -> String {
    let subnets: String = (0..zones)
        .map(|z| format!("  - {{name: s{z}, cidr: 10.{z}.0.0/16, zone: z{z}}}\n",))
        .collect();
    let names: Vec<String> = (0..zones).map(|z| format!("s{z}")).collect();
    format!(
        "name: fleet
duration: {days}d
sample_every: 1d
subnets:
{subnets}node_pools:
  - name: spot
    instance_type: m5.large
    subnets: [{}]
    size: {nodes}
    capacity_type: spot
    spot: {{interruption_rate: \">20%\", {correlated}handler: node_termination_handler}}
",
        names.join(", ")
    )
}

#[test]
fn spot_notices_come_at_the_advisor_rate() {
    // `>20%` stands for 25% of instances a month: hazard -ln(0.75) =
    // 0.2877 per node-month. The termination handler's pool keeps 1,000
    // nodes (each reclaimed node is replaced), so 30 days give
    // 1000 × 0.2877 = 287.7 notices expected, Poisson with standard
    // deviation 17: accept ±4σ.
    let d = inline(&spot_fleet(1000, "correlated: false, ", 1, 30), &[]);
    let ev = events(&d);
    let n = of(&ev, "spot_notice").len() as f64;
    assert!((220.0..=356.0).contains(&n), "{n} notices");
    // Every notice but those within 2 minutes of the end is reclaimed,
    // and the group replaces each: as many launches beyond the first
    // 1,000.
    let reclaimed = of(&ev, "spot_interruption").len();
    let launched = of(&ev, "node_launched").len();
    assert!(reclaimed as f64 <= n && reclaimed as f64 >= n - 3.0);
    assert_eq!(launched, 1000 + reclaimed);
    // The time series counts them per subnet, cumulatively.
    let end = last_sample(&d);
    assert_eq!(sum(&end, "spot_notices"), n as u64);
    assert_eq!(sum(&end, "spot_interruptions"), reclaimed as u64);
    assert_eq!(sum(&end, "nodes"), 1000);
}

/// The share of notices with another notice in the same zone within 3
/// minutes (the measured correlation: over 92%).
fn together(ev: &[Row]) -> f64 {
    let notices: Vec<(f64, String)> = of(ev, "spot_notice")
        .iter()
        .map(|r| (t(r), r["subnet"].clone()))
        .collect();
    let near = notices
        .iter()
        .enumerate()
        .filter(|(i, (a, s))| {
            notices
                .iter()
                .enumerate()
                .any(|(j, (b, s2))| j != *i && s == s2 && (a - b).abs() <= 180.0)
        })
        .count();
    near as f64 / notices.len().max(1) as f64
}

#[test]
fn correlated_notices_come_together_and_keep_the_rate() {
    // 100 nodes in two zones, one type: two groups of 50. Each event
    // hits half a group (about 25 nodes) within 3 minutes, so every
    // notice has company. Events come per group at hazard / share
    // (0.2877 / 0.5 = 0.575 a month), so over 180 days about 6.9 events
    // are expected and each node's rate stays 0.2877 a month: 100 × 0.2877
    // × 6 = 173 notices expected, in lumps of about 25. One seed only
    // bounds it loosely: at least one event, at most 4 × the mean.
    let d = inline(&spot_fleet(100, "correlated: true, ", 2, 180), &[]);
    let ev = events(&d);
    let n = of(&ev, "spot_notice").len();
    assert!(n > 0 && n < 690, "{n}");
    assert!(together(&ev) >= 0.92, "{}", together(&ev));
    for e in of(&ev, "spot_correlated_event") {
        assert!(e["detail"].contains("interrupted within 3m"), "{e:?}");
    }
    // Without correlation, at one notice a day per zone on average, the
    // chance another comes within 3 minutes is about 2 × 3 / 1440 <
    // 1%: few do.
    let d = inline(&spot_fleet(200, "correlated: false, ", 2, 30), &[]);
    let ev = events(&d);
    assert!(of(&ev, "spot_notice").len() > 20);
    assert!(together(&ev) < 0.2, "{}", together(&ev));
}

/// The first notice's timeline in a small spot pool of each handler.
fn first_notice(handler: &str, autoscaler: &str) -> (Vec<Row>, f64, String) {
    let pool = if autoscaler == "karpenter" {
        "    autoscaler: karpenter\n    instance_types: [m5.large]\n    size: 4\n    karpenter: {consolidate_after: Never}\n"
    } else {
        "    instance_type: m5.large\n    size: 4\n"
    };
    let yaml = format!(
        "name: handlers
duration: 60d
sample_every: 1d
subnets:
  - {{name: a, cidr: 10.0.0.0/22, zone: z}}
node_pools:
  - name: spot
{pool}    subnets: [a]
    capacity_type: spot
    spot: {{interruption_rate: \"90%\", correlated: false, handler: {handler}}}
workloads:
  - {{name: web, replicas: 12, cpu: 500m, memory: 128Mi}}
"
    );
    let d = inline(&yaml, &[]);
    let ev = events(&d);
    let notice = of(&ev, "spot_notice")[0].clone();
    (ev, t(&notice), notice["node"].clone())
}

#[test]
fn handlers_act_as_documented() {
    // node_termination_handler: cordon and drain at the notice (the
    // node's pods go at once), reclaimed 120 s later, replaced by the
    // group at that moment.
    let (ev, at, node) = first_notice("node_termination_handler", "none");
    let mine = |k: &str| -> Vec<&Row> {
        ev.iter()
            .filter(|r| r["kind"] == k && r["node"] == node)
            .collect()
    };
    assert!(mine("spot_notice")[0]["detail"].contains("cordoned and drained"));
    let gone = mine("node_terminated")[0];
    assert_eq!(t(gone), at + 120.0);
    assert!(
        gone["detail"].starts_with("spot interruption: 0 pods evicted"),
        "{gone:?}"
    );
    assert!(ev.iter().any(|r| r["kind"] == "node_launched"
        && t(r) == at + 120.0
        && r["detail"].contains("by node group")));

    // none: the instance vanishes at the deadline with its pods bound;
    // they are deleted 300 s later (the unreachable toleration).
    let (ev, at, node) = first_notice("none", "none");
    let gone: Vec<&Row> = ev
        .iter()
        .filter(|r| r["kind"] == "node_terminated" && r["node"] == node)
        .collect();
    assert_eq!(t(gone[0]), at + 120.0);
    assert!(
        gone[0]["detail"].contains("pods lost until deleted in 5m"),
        "{:?}",
        gone[0]
    );
    let evicted: Vec<&Row> = ev
        .iter()
        .filter(|r| r["kind"] == "pods_evicted" && r["node"] == node)
        .collect();
    assert_eq!(t(evicted[0]), at + 420.0);

    // karpenter: drained at the notice; 12 pods of 500m fill the four
    // m5.large (3 each in 1930m), so the node's 3 pods fit nowhere: they
    // are batched (1 s idle) and a replacement launched a second later,
    // long before the deadline.
    let (ev, at, _) = first_notice("karpenter", "karpenter");
    let prov = ev
        .iter()
        .find(|r| r["kind"] == "karpenter_provision" && t(r) > at)
        .unwrap();
    assert!(t(prov) <= at + 10.0, "{prov:?}");
    let launch = ev
        .iter()
        .find(|r| r["kind"] == "node_launched" && t(r) > at)
        .unwrap();
    assert_eq!(t(launch), t(prov) + 1.0);
    assert!(launch["detail"].contains("by karpenter"));
}

#[test]
fn spot_interruptions_scenario() {
    // The shipped scenario: correlated events hit a zone's nodes in
    // lumps; with the termination handler no pod is ever lost; without
    // one, pods of vanished nodes are deleted 5 minutes later.
    let d = shipped("spot-interruptions.yaml", &[]);
    let ev = events(&d);
    assert!(together(&ev) >= 0.92);
    // The comment's figures: two events (days 19 and 29), 5 nodes
    // reclaimed, 1,236 failed prefix requests, no pod ever waiting;
    // private-a without a delegatable /28 for about a day (158 ten-minute
    // samples), private-b for about 2 hours (14).
    let events_at: Vec<u64> = of(&ev, "spot_correlated_event")
        .iter()
        .map(|r| (t(r) / 86400.0) as u64 + 1)
        .collect();
    assert_eq!(events_at, [19, 29]);
    assert_eq!(of(&ev, "spot_interruption").len(), 5);
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["failures"]["InsufficientCidrBlocks"], 1236);
    assert_eq!(s["peak_pods_waiting_ip"]["pods"], 0);
    let rows = csv_rows(&d.path().join("timeseries.csv"));
    let dry = |subnet: &str| {
        rows.iter()
            .filter(|r| r["subnet"] == subnet && r["delegatable_blocks"] == "0")
            .count()
    };
    assert_eq!((dry("private-a"), dry("private-b")), (158, 14));
    assert!(of(&ev, "pods_evicted").is_empty());
    let d = shipped("spot-interruptions.yaml", &["--variant", "uncorrelated"]);
    assert_eq!(of(&events(&d), "spot_interruption").len(), 9);
    let d = shipped("spot-interruptions.yaml", &["--variant", "no-handler"]);
    let ev = events(&d);
    assert_eq!(
        of(&ev, "pods_evicted").len(),
        of(&ev, "spot_interruption").len()
    );
}

#[test]
fn correlated_spot_events_come_at_the_same_times_in_every_variant() {
    // Common random numbers: a variant with another subnet or pool size
    // has other nodes in each group, but the correlated events' times are
    // drawn from their own stream (`spot_groups`), so they do not move;
    // which nodes they hit may. (With the times drawn from `spot`, after
    // each event's per-member draws, 14 nodes gave two events at other
    // times than 20 nodes' four.)
    let times = |extra: &[&str]| -> Vec<String> {
        let d = shipped("spot-interruptions.yaml", extra);
        of(&events(&d), "spot_correlated_event")
            .iter()
            .map(|r| r["time_s"].clone())
            .collect()
    };
    let base = times(&[]);
    assert_eq!(base.len(), 2);
    let wider = times(&["--set", "subnets.private-a.cidr=10.0.4.0/22"]);
    assert_eq!(base, wider);
    let fewer = times(&["--set", "node_pools.spot.size=14"]);
    assert_eq!(base, fewer);
    let other_seed = times(&["--seed", "8"]);
    assert_ne!(base, other_seed, "the times do come from the seed");
}

#[test]
fn karpenter_batches_and_picks_the_cheapest_fit() {
    // scenarios/karpenter.yaml. After consolidation two m5.large (1930m
    // allocatable) hold the 6 web pods of 400m (4 and 2: 1600m and
    // 800m). At 20m the 20 burst pods of 500m arrive: the first node has
    // 330m left (none fits), the second 1130m (2 fit): 18 are
    // unschedulable. The batch closes 1 s later (batch_idle_duration).
    // No type takes 18 (m5.2xlarge: 7910 / 500 = 15), so the type taking
    // most, m5.2xlarge, takes 15; the 3 left fit the cheapest, m5.large
    // (3 × 500 ≤ 1930). Launch 1 s after the batch.
    let d = shipped("karpenter.yaml", &[]);
    let ev = events(&d);
    let p = of(&ev, "karpenter_provision")
        .into_iter()
        .find(|r| t(r) >= 1200.0)
        .unwrap()
        .clone();
    assert_eq!(t(&p), 1201.0);
    assert!(
        p["detail"].ends_with("18 pending pods; launching 1 × m5.2xlarge, 1 × m5.large"),
        "{p:?}"
    );
    let launched: Vec<&Row> = of(&ev, "node_launched")
        .into_iter()
        .filter(|r| t(r) == 1202.0)
        .collect();
    assert_eq!(launched.len(), 2);
    // Two of the four initial nodes were consolidated (their pods fit on
    // the others): the pass at 160 s (the 10 s grid) finds the first, it
    // is deleted after the 15 s validation delay, and the pass run at once
    // then finds the second, deleted 15 s later. Every node launched at
    // the start expires at 1h (expireAfter), forcefully, and its pods are
    // provisioned for again.
    let cons: Vec<f64> = of(&ev, "consolidation").iter().map(|r| t(r)).collect();
    assert_eq!(cons, [175.0, 190.0]);
    let expired: Vec<&Row> = of(&ev, "node_terminated")
        .into_iter()
        .filter(|r| r["detail"].starts_with("expired"))
        .collect();
    assert!(expired.iter().filter(|r| t(r) == 3600.0).count() == 2);
    assert!(of(&ev, "karpenter_provision")
        .iter()
        .any(|r| t(r) == 3601.0));
}

/// Nodes expire exactly `expire_after` after launch, and the event queue
/// does not hold one expiry per node ever launched. Jobs of 1 CPU (2-6
/// minutes, 400 an hour) on m5.large make Karpenter launch and consolidate
/// some 1,200 nodes in 12 hours, while the base workload keeps a few nodes
/// until their 3 hours run out. One expiry event per launch, queued at
/// launch, held every node launched in the last 3 hours: a peak of 374
/// queued events. Queued per pool for the oldest live node, the queue
/// holds the fleet's and the pods' events: 59.
#[test]
fn nodes_expire_on_time_without_an_event_per_launch() {
    let yaml = "name: expiry
duration: 12h
sample_every: 10m
subnets:
  - {name: a, cidr: 10.0.0.0/20, zone: z1}
node_pools:
  - name: k
    autoscaler: karpenter
    instance_types: [m5.large]
    subnets: [a]
    karpenter: {consolidate_after: 1m, expire_after: 3h}
jobs:
  - {name: batch, per_hour: 400, run_time: [2m, 6m], cpu: \"1\"}
workloads:
  - {name: base, replicas: 6, cpu: 1500m, node_pool: k}
";
    let d = inline(yaml, &[]);
    let ev = events(&d);
    let launched: BTreeMap<&str, f64> = of(&ev, "node_launched")
        .iter()
        .map(|r| (r["node"].as_str(), t(r)))
        .collect();
    assert!(launched.len() > 1000, "{} launches", launched.len());
    let expired = of(&ev, "node_expired");
    assert!(expired.len() >= 10, "{} expiries", expired.len());
    for r in &expired {
        let life = t(r) - launched[r["node"].as_str()];
        assert!((life - 10_800.0).abs() < 0.0005, "{}: {life} s", r["node"]);
    }
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.path().join("summary.json")).unwrap()).unwrap();
    let peak = s["peak_queue_len"].as_u64().unwrap();
    assert!(peak < 150, "peak queue {peak}");
}

/// Nodes launched in one Karpenter batch expire in the same millisecond,
/// together: five pods of 900m on m5.large (about 1.9 CPUs allocatable)
/// take three nodes, 2, 2 and 1 pods, all launched at 2 s. At 3,602 s
/// all three go, and each pod is evicted once (5 evictions): none is
/// placed on the third node between the first's deletion and its own.
/// (With an event per node and a scheduler pass between, the third node
/// took one of the first node's pods and evicted 2: 6 evictions.)
#[test]
fn a_batch_expires_together() {
    let yaml = "name: batch-expiry
duration: 2h
subnets:
  - {name: a, cidr: 10.0.0.0/20, zone: z1}
node_pools:
  - name: k
    autoscaler: karpenter
    instance_types: [m5.large]
    subnets: [a]
    karpenter: {expire_after: 1h}
workloads:
  - {name: web, replicas: 5, cpu: 900m, node_pool: k}
";
    let d = inline(yaml, &[]);
    let ev = events(&d);
    let launched = of(&ev, "node_launched");
    assert!(launched.len() >= 3 && launched[..3].iter().all(|r| t(r) == 2.0));
    let gone: Vec<&Row> = of(&ev, "node_terminated")
        .into_iter()
        .filter(|r| t(r) == 3602.0)
        .collect();
    assert_eq!(gone.len(), 3, "{gone:?}");
    let evicted: u32 = gone
        .iter()
        .map(|r| {
            let d = &r["detail"];
            let n = d
                .split("expired: ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap();
            n.parse::<u32>().unwrap()
        })
        .sum();
    assert_eq!(evicted, 5, "{gone:?}");
}

#[test]
fn karpenter_deletes_empty_nodes_within_the_budget() {
    // Four empty nodes at the start and no pods: each becomes
    // consolidatable 2m after it is Ready. The budget is 10% of the Ready
    // nodes rounded up: 1 of 4, 3 and 2, and 1 of 1. So one node per
    // command. A pass on the 10 s grid finds the first; the command is
    // carried out after the 15 s validation delay, and the next pass runs
    // at once: each deletion comes 15 s after the pass that found it,
    // which is on the grid or at the previous deletion; all four gone.
    let yaml = "name: empty
duration: 30m
subnets:
  - {name: a, cidr: 10.0.0.0/24, zone: z}
node_pools:
  - name: k
    autoscaler: karpenter
    instance_types: [m5.large]
    subnets: [a]
    size: 4
    karpenter: {consolidate_after: 2m, consolidation_policy: WhenEmpty}
";
    let d = inline(yaml, &[]);
    let ev = events(&d);
    let ready: BTreeMap<String, f64> = of(&ev, "node_ready")
        .iter()
        .map(|r| (r["node"].clone(), t(r)))
        .collect();
    let cons = of(&ev, "consolidation");
    assert_eq!(cons.len(), 4);
    for w in cons.windows(2) {
        assert!(t(w[1]) >= t(w[0]) + 15.0, "one per command: {w:?}");
    }
    let mut prev = f64::NAN;
    for c in &cons {
        let found = t(c) - 15.0;
        assert!(found >= ready[&c["node"]] + 120.0, "{c:?}");
        // At most 10 s to the next pass, and three commands before it.
        assert!(found <= ready[&c["node"]] + 120.0 + 10.0 + 45.0, "{c:?}");
        assert!(
            found % 10.0 == 0.0 || found == prev,
            "a pass on the 10 s grid or right after a deletion: {c:?}"
        );
        prev = t(c);
    }
    assert_eq!(sum(&last_sample(&d), "nodes"), 0);
    assert_eq!(sum(&last_sample(&d), "consolidations"), 4);
    // A budget of 2 nodes deletes them in pairs.
    let d = inline(
        &yaml.replace("WhenEmpty}", "WhenEmpty, budget: \"2\"}"),
        &[],
    );
    let cons: Vec<f64> = of(&events(&d), "consolidation")
        .iter()
        .map(|r| t(r))
        .collect();
    assert_eq!(cons.len(), 4);
    assert!(cons.windows(2).any(|w| w[0] == w[1]), "{cons:?}");
}

#[test]
fn karpenter_subnet_choice_is_blind_to_blocks() {
    // busy-a: a /23 (507 usable) with 100 consumer addresses: 407 free,
    // nearly every /28 poisoned. clean-a: a /24, 251 free, 14 whole
    // blocks (the first and last /28 hold AWS-reserved addresses... and
    // the node primaries land where EC2 puts them). Karpenter's view:
    // busy-a leads by far more than the 29 (m5.large's max pods) it
    // deducts per launch in flight, so every node goes to busy-a, where
    // prefixes run out: pods wait for addresses to the end. The what-if
    // policy ranks by blocks and sends every node to clean-a: all run.
    let d = shipped("karpenter-subnet-choice.yaml", &[]);
    let ev = events(&d);
    let busy = of(&ev, "node_launched")
        .iter()
        .filter(|r| r["subnet"] == "busy-a")
        .count();
    assert_eq!(busy, of(&ev, "node_launched").len());
    let end = last_sample(&d);
    // 25 in the README.
    assert_eq!(sum(&end, "pods_waiting_ip"), 25);
    // Bound pods: Karpenter never launches for them after the burst.
    let last_prov = of(&ev, "karpenter_provision")
        .iter()
        .map(|r| t(r))
        .fold(0.0, f64::max);
    assert!(last_prov < 700.0, "{last_prov}");

    let d = shipped(
        "karpenter-subnet-choice.yaml",
        &["--variant", "delegatable-blocks"],
    );
    let ev = events(&d);
    assert!(of(&ev, "node_launched")
        .iter()
        .all(|r| r["subnet"] == "clean-a"));
    assert_eq!(sum(&last_sample(&d), "pods_waiting_ip"), 0);
}

#[test]
fn cluster_autoscaler_scales_down_then_up_with_least_waste() {
    // scenarios/cluster-autoscaler.yaml. The 8 web pods (200m) all land
    // on the first node Ready (1600m of 1930m), so 4 of the 6 nodes are
    // empty: each goes once unneeded for 10m (empty nodes in bulk), and
    // the group stops at its minimum of 2. At 30m, 12 batch pods (500m,
    // 1Gi): the second node (empty) takes 3, 9 are unschedulable (the
    // scheduler's pass runs in the event that created them), so the scan
    // at 1800 s, on the loop's 10 s grid, compares:
    //   small: 3 × m5.large (3 pods each): CPU waste (5790 − 4500) / 5790
    //     = 0.223, memory (3 × 6903 − 9 × 1024) / 20709 = 0.555: 0.778
    //   large: 1 × m5.2xlarge: (7910 − 4500) / 7910 = 0.431,
    //     (29317 − 9216) / 29317 = 0.686: 1.117
    // least-waste grows `small` by 3.
    let d = shipped("cluster-autoscaler.yaml", &[]);
    let ev = events(&d);
    let downs = of(&ev, "scale_down");
    assert_eq!(downs.len(), 4);
    for r in &downs {
        assert!(t(r) >= 600.0 && t(r) < 700.0, "{r:?}");
        assert!(r["detail"].contains("0 pods move"));
    }
    assert!(downs[3]["detail"].ends_with("target 2"));
    let ups = of(&ev, "scale_up");
    assert_eq!(ups.len(), 1);
    assert_eq!(t(ups[0]), 1800.0);
    assert!(
        ups[0]["detail"].starts_with("pool small: +3 nodes (target 5) for 9 unschedulable pods; expander least-waste among 2 groups"),
        "{:?}",
        ups[0]
    );
    let end = last_sample(&d);
    assert_eq!(sum(&end, "nodes"), 5);
    assert_eq!(sum(&end, "pods_running"), 20);
    // The random expander picks either group; the same seed, the same
    // pick.
    let a = shipped("cluster-autoscaler.yaml", &["--variant", "random-expander"]);
    let b = shipped("cluster-autoscaler.yaml", &["--variant", "random-expander"]);
    let up = |d: &tempfile::TempDir| of(&events(d), "scale_up")[0]["detail"].clone();
    assert_eq!(up(&a), up(&b));
    assert!(up(&a).contains("expander random"));
}

#[test]
fn cluster_autoscaler_gives_up_a_launch_after_15_minutes() {
    // A /28 (11 usable addresses) taken entirely by 11 consumer ENIs: no
    // node can get its primary address. The pending pod is unschedulable
    // (no node), the autoscaler asks for one node at the first scan (10 s);
    // the group retries every 30 s; at 15 minutes the autoscaler gives up
    // (the target returns to 0) and backs the group off for 5 minutes.
    let yaml = "name: timeout
duration: 40m
subnets:
  - name: tiny
    cidr: 10.0.0.0/28
    zone: z
    consumers: [{kind: lambda, count: 11}]
node_pools:
  - name: g
    instance_type: m5.large
    subnets: [tiny]
    autoscaler: cluster_autoscaler
    max_size: 3
workloads:
  - {name: w, replicas: 1}
";
    let d = inline(yaml, &[]);
    let ev = events(&d);
    let ups = of(&ev, "scale_up");
    let gaveup = of(&ev, "scale_up_timeout");
    assert_eq!(t(ups[0]), 10.0);
    assert!(!gaveup.is_empty());
    let dt = t(gaveup[0]) - t(ups[0]);
    assert!((900.0..=930.0).contains(&dt), "{dt}");
    assert!(gaveup[0]["detail"].contains("target back to 0"));
    // Backed off: the next scale-up at least 5 minutes later.
    assert!(t(ups[1]) >= t(gaveup[0]) + 300.0);
    assert!(of(&ev, "InsufficientFreeAddressesInSubnet")
        .iter()
        .all(|r| r["operation"] == "run_instances"));
}

#[test]
fn no_scale_up_while_pods_wait_for_addresses() {
    // scenarios/no-scale-up.yaml: 120 pods of 50m on 3 m5.xlarge (3 ×
    // 3920m): 6000m requested of 11,760m, so every pod is bound and none
    // is unschedulable. The /24 cannot delegate the prefixes they need:
    // pods wait for addresses to the end, and the Cluster Autoscaler
    // never scales up (it acts on unschedulable pods only).
    let d = shipped("no-scale-up.yaml", &[]);
    let ev = events(&d);
    assert!(of(&ev, "scale_up").is_empty());
    let end = last_sample(&d);
    assert_eq!(sum(&end, "nodes"), 3);
    // "two dozen" in the scenario's comment.
    assert!((20..=30).contains(&sum(&end, "pods_waiting_ip")));
    assert_eq!(sum(&end, "pods_pending"), 0);
    assert_eq!(
        sum(&end, "pods_running") + sum(&end, "pods_waiting_ip"),
        120
    );
    // With a /22 every pod runs, on the same 3 nodes.
    let d = shipped("no-scale-up.yaml", &["--variant", "subnet-22"]);
    let end = last_sample(&d);
    assert_eq!(sum(&end, "pods_running"), 120);
    assert_eq!(sum(&end, "nodes"), 3);
}

#[test]
fn node_churn_mix_is_deterministic() {
    // Spot (correlated, Karpenter handler), Karpenter consolidation and
    // expiration, a Cluster Autoscaler group and a fixed pool together:
    // two runs are byte-identical; another seed differs.
    let yaml = "name: mix
duration: 5d
sample_every: 10m
subnets:
  - {name: a, cidr: 10.0.0.0/22, zone: z1, consumers: [{kind: elb, count: 4, churn_every: 1h}]}
  - {name: b, cidr: 10.0.4.0/22, zone: z2}
node_pools:
  - name: k
    autoscaler: karpenter
    instance_types: [m5.large, m5.xlarge]
    subnets: [a, b]
    capacity_type: spot
    spot: {interruption_rate: \"95%\", correlation_share: 0.3}
    karpenter: {consolidate_after: 1m, expire_after: 1d}
  - name: ca
    instance_type: m5.large
    subnets: [a, b]
    autoscaler: cluster_autoscaler
    min_size: 1
    max_size: 6
  - name: fixed
    instance_type: m5.large
    subnets: [a]
    size: 2
    capacity_type: spot
    spot: {interruption_rate: \"95%\", correlated: false, handler: none}
workloads:
  - {name: w1, replicas: 30, cpu: 300m, node_pool: k, restart_every: 2h}
  - {name: w2, replicas: 10, cpu: 500m, node_pool: ca, start: 1h}
  - {name: w3, replicas: 6, cpu: 200m, node_pool: fixed}
";
    let a = inline(yaml, &[]);
    let b = inline(yaml, &[]);
    for f in [
        "timeseries.csv",
        "events.csv",
        "summary.json",
        "final-state.json",
    ] {
        assert_eq!(
            std::fs::read(a.path().join(f)).unwrap(),
            std::fs::read(b.path().join(f)).unwrap(),
            "{f}"
        );
    }
    let ev = events(&a);
    for k in [
        "karpenter_provision",
        "node_expired",
        "scale_up",
        "spot_notice",
    ] {
        assert!(!of(&ev, k).is_empty(), "no {k}");
    }
    let c = inline(yaml, &["--seed", "2"]);
    assert_ne!(
        std::fs::read(a.path().join("events.csv")).unwrap(),
        std::fs::read(c.path().join("events.csv")).unwrap()
    );
}

#[test]
fn bad_node_churn_fields_are_refused_with_the_field() {
    let base = "name: bad
duration: 1h
subnets:
  - {name: a, cidr: 10.0.0.0/24, zone: z}
node_pools:
  - name: p
    subnets: [a]
";
    let cases = [
        (
            "    instance_type: m5.large\n    size: 1\n    capacity_type: spot\n    spot: {interruption_rate: \"5-11%\"}\n",
            "node_pools[0].spot.interruption_rate",
        ),
        (
            "    instance_type: m5.large\n    size: 1\n    capacity_type: spot\n    spot: {interruption_rate: \"5%\", handler: karpenter}\n",
            "node_pools[0].spot.handler",
        ),
        (
            "    instance_type: m5.large\n    size: 1\n    spot: {interruption_rate: \"5%\"}\n",
            "node_pools[0].spot",
        ),
        (
            "    instance_types: [m5.large, m5.xlarge]\n    size: 1\n",
            "node_pools[0].instance_types",
        ),
        (
            "    instance_type: m5.large\n    autoscaler: cluster_autoscaler\n    min_size: 3\n    max_size: 2\n",
            "node_pools[0].size",
        ),
        (
            "    instance_type: m5.large\n    autoscaler: karpenter\n    karpenter: {budget: \"110%\"}\n",
            "node_pools[0].karpenter.budget",
        ),
        (
            "    instance_type: m5.large\n    autoscaler: karpenter\n    karpenter: {expire_after: soon}\n",
            "node_pools[0].karpenter.expire_after",
        ),
        ("    instance_type: m5.large\n", "node_pools[0].size"),
    ];
    for (pool, field) in cases {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("bad.yaml");
        std::fs::write(&f, format!("{base}{pool}")).unwrap();
        let o = run(&["validate", f.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{pool}");
        let e = stderr(&o);
        assert!(e.contains(&format!(": {field}: ")), "{field}: {e}");
        assert!(e.contains("bad.yaml:"), "{e}");
    }
}

#[test]
fn nodes_that_never_register_in_time_are_removed() {
    // Boots of 16-18 minutes: longer than Karpenter's 15-minute
    // registration timeout and the Cluster Autoscaler's 15-minute
    // max_node_provision_time. Karpenter deletes each node claim at
    // exactly 15 minutes after its launch and provisions again (1 s batch
    // + 1 s launch); the Cluster Autoscaler removes its node at 15 minutes
    // and shrinks the group back.
    let yaml = "name: slow
duration: 40m
nodes: {boot_min: 16m, boot_median: 17m, boot_max: 18m}
subnets:
  - {name: a, cidr: 10.0.0.0/24, zone: z}
node_pools:
  - name: k
    autoscaler: karpenter
    instance_types: [m5.large]
    subnets: [a]
  - name: g
    instance_type: m5.large
    subnets: [a]
    autoscaler: cluster_autoscaler
    max_size: 2
workloads:
  - {name: wk, replicas: 1, node_pool: k}
  - {name: wg, replicas: 1, node_pool: g}
";
    let d = inline(yaml, &[]);
    let ev = events(&d);
    let launched: BTreeMap<String, (f64, String)> = of(&ev, "node_launched")
        .iter()
        .map(|r| (r["node"].clone(), (t(r), r["detail"].clone())))
        .collect();
    let gone: Vec<&Row> = of(&ev, "node_terminated");
    assert!(gone.len() >= 3, "{gone:?}");
    for g in &gone {
        let (at, what) = &launched[&g["node"]];
        assert_eq!(t(g), at + 900.0, "{g:?}");
        if what.contains("by karpenter") {
            assert!(g["detail"].starts_with("registration timeout"), "{g:?}");
        } else {
            assert!(g["detail"].starts_with("max_node_provision_time"), "{g:?}");
        }
    }
    assert!(of(&ev, "node_registered").is_empty());
    assert!(of(&ev, "scale_up_timeout")[0]["detail"].contains("target back to 0"));
    // Karpenter's next launch follows 2 s after its claim was deleted.
    let k_gone = gone
        .iter()
        .find(|g| launched[&g["node"]].1.contains("by karpenter"))
        .unwrap();
    assert!(of(&ev, "node_launched")
        .iter()
        .any(|r| t(r) == t(k_gone) + 2.0 && r["detail"].contains("by karpenter")));
}
