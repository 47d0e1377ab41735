//! ipamd's v1.23 failure path as a whole run shows it: subnet discovery with
//! a tagged second subnet (the shipped `subnet-discovery` scenario, with and
//! without the tag), nodes Ready with an empty pool, aws-node restarts under
//! custom networking, and failure rows coalesced with exact totals.

mod common;
use common::*;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Runs scenario text (written to a file) into a fresh folder.
fn run_text(text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.yaml");
    std::fs::write(&file, text).unwrap();
    let out = dir.path().join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_subnetsim"))
        .args([
            "run",
            file.to_str().unwrap(),
            "--quiet",
            "--no-wall-clock",
            "--out",
        ])
        .arg(&out)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    dir
}

fn num(r: &BTreeMap<String, String>, k: &str) -> u64 {
    r[k].parse().unwrap_or_else(|_| panic!("{k}: {:?}", r[k]))
}

/// The last sample of each subnet.
fn last_rows(dir: &Path) -> BTreeMap<String, BTreeMap<String, String>> {
    csv_rows(&dir.join("out/timeseries.csv"))
        .into_iter()
        .map(|r| (r["subnet"].clone(), r))
        .collect()
}

fn shipped(name: &str) -> String {
    std::fs::read_to_string(root().join("scenarios").join(name)).unwrap()
}

#[test]
fn a_tagged_subnet_saves_the_starved_one_only_when_discovery_can_use_it() {
    // Hand-checked from the scenario: three m5.large nodes whose /24 has no
    // /28 left once the batch starts. With discovery and the tag, each node
    // attaches a second ENI in pods-a and every pod runs at the end; pods-a
    // holds addresses. Without the tag, or without discovery, the batch pods
    // still wait at the end, as in the quickstart.
    let text = shipped("subnet-discovery.yaml");
    let saved = run_text(&text);
    let last = last_rows(saved.path());
    let waiting: u64 = last.values().map(|r| num(r, "pods_waiting_ip")).sum();
    assert_eq!(waiting, 0, "{last:?}");
    assert!(num(&last["pods-a"], "pods_running") > 0);
    let events = std::fs::read_to_string(saved.path().join("out/events.csv")).unwrap();
    assert_eq!(
        events
            .lines()
            .filter(|l| l.contains(",eni_created,pods-a,"))
            .count(),
        3,
        "one new ENI per node, in the tagged subnet"
    );

    let untagged = text.replace("    tags:\n      kubernetes.io/role/cni: \"1\"\n", "");
    assert_ne!(untagged, text);
    let off = text.replace("subnet_discovery: true", "subnet_discovery: false");
    assert_ne!(off, text);
    for variant in [untagged, off] {
        let d = run_text(&variant);
        let last = last_rows(d.path());
        assert!(num(&last["private-a"], "pods_waiting_ip") > 0, "{last:?}");
        assert_eq!(num(&last["pods-a"], "pods_running"), 0);
    }
}

#[test]
fn failure_rows_are_coalesced_and_totals_stay_exact() {
    // The quickstart's starved nodes fail every 5 s (two assign calls and an
    // ENI creation each time, with no pause: InvalidParameterValue). The
    // log holds one row per node, operation and error per run, whose counts
    // add up to summary.json's totals.
    let d = run_text(&shipped("quickstart.yaml"));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.path().join("out/summary.json")).unwrap()).unwrap();
    let ev = csv_rows(&d.path().join("out/events.csv"));
    for kind in [
        "InsufficientCidrBlocks",
        "InsufficientFreeAddressesInSubnet",
        "InvalidParameterValue",
    ] {
        let failure_rows: Vec<_> = ev.iter().filter(|r| r["kind"] == kind).collect();
        let sum: u64 = failure_rows.iter().map(|r| num(r, "count")).sum();
        assert_eq!(sum, summary["failures"][kind].as_u64().unwrap(), "{kind}");
        for r in &failure_rows {
            assert!(!r["operation"].is_empty());
            assert!(r["until_s"].parse::<f64>().unwrap() >= r["time_s"].parse::<f64>().unwrap());
        }
    }
    let icb: u64 = summary["failures"]["InsufficientCidrBlocks"]
        .as_u64()
        .unwrap();
    let icb_rows = ev
        .iter()
        .filter(|r| r["kind"] == "InsufficientCidrBlocks")
        .count() as u64;
    assert!(icb > 1000, "a starved node fails every 5 s: {icb}");
    assert!(icb_rows * 100 < icb, "{icb_rows} rows for {icb} failures");
    let ops: std::collections::BTreeSet<&str> = ev
        .iter()
        .filter(|r| r["kind"] == "InvalidParameterValue")
        .map(|r| r["operation"].as_str())
        .collect();
    assert_eq!(ops.into_iter().collect::<Vec<_>>(), vec!["create_eni"]);
}

const STARVED: &str = "\
name: starved
duration: 10m
sample_every: 1m
subnets:
  - name: tiny
    cidr: 10.0.0.0/28
    zone: z1
  - name: big
    cidr: 10.1.0.0/24
    zone: z1
node_pools:
  - name: p
    instance_type: m5.large
    subnets: [tiny]
    size: 1
workloads:
  - name: w
    replicas: 5
";

#[test]
fn a_node_without_a_prefix_is_ready_and_attracts_pods_that_wait() {
    // A /28 has no delegatable /28: init's prefix request fails and is
    // swallowed (`handlePreScaling`), the node becomes Ready with an empty
    // pool, all 5 pods are bound to it and wait for an address.
    let d = run_text(STARVED);
    let last = last_rows(d.path());
    let tiny = &last["tiny"];
    assert_eq!(num(tiny, "nodes_ready"), 1);
    assert_eq!(num(tiny, "nodes_ready_empty_pool"), 1);
    assert_eq!(num(tiny, "pods_waiting_ip"), 5);
    assert_eq!(num(tiny, "pods_pending"), 0, "bound, not Pending");
    let ev = std::fs::read_to_string(d.path().join("out/events.csv")).unwrap();
    assert!(ev.contains("pool empty: pods bound here wait for an address"));
}

#[test]
fn custom_networking_with_an_empty_pool_stays_not_ready_and_restarts_aws_node() {
    // Under custom networking the ENIConfig subnet (here the /28) cannot
    // give the new ENI a prefix: init fails, the node stays NotReady, pods
    // stay Pending, and aws-node restarts with kubelet's back-off (10 s, 20
    // s, 40 s, ... up to 5 min): in 10 minutes, restarts at about 10, 30,
    // 70, 150, 310 s after registration: 6 failed inits.
    let text = STARVED
        .replace(
            "duration: 10m\n",
            "duration: 10m\nvpc_cni:\n  custom_networking: true\n",
        )
        .replace("subnets: [tiny]", "subnets: [big]\n    pod_subnets: [tiny]");
    let d = run_text(&text);
    let last = last_rows(d.path());
    assert_eq!(num(&last["big"], "nodes_ready"), 0);
    assert_eq!(num(&last["big"], "pods_pending"), 5);
    let ev = csv_rows(&d.path().join("out/events.csv"));
    let fails = ev
        .iter()
        .filter(|r| r["kind"] == "aws_node_init_failed")
        .count();
    assert_eq!(fails, 6, "{ev:?}");
}
