//! Every shipped scenario's comment says what its run shows; these tests
//! check each claim, with the figures the comments and the README give.
//! (`seed-002-t3medium-24` is checked in `tests/scenarios.rs`,
//! `subnet-discovery` in `tests/ipamd_in_runs.rs`.)

mod common;
use common::*;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

fn run(scenario: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_subnetsim"))
        .args(["run", scenario, "--quiet", "--no-wall-clock", "--out"])
        .arg(d.path().join("o"))
        .current_dir(root())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    d
}

fn rows(dir: &Path) -> Vec<BTreeMap<String, String>> {
    csv_rows(&dir.join("o/timeseries.csv"))
}

fn n(r: &BTreeMap<String, String>, k: &str) -> u64 {
    r[k].parse().unwrap()
}

fn t(r: &BTreeMap<String, String>) -> f64 {
    r["time_s"].parse().unwrap()
}

#[test]
fn quickstart_claims() {
    // "no /28 can be delegated although 84 addresses are free, and 14-15
    // pods hang in ContainerCreating to the end (InsufficientCidrBlocks
    // every 5 s per node)"; README: 5,752 and 2,876 failures.
    let d = run("scenarios/quickstart.yaml");
    let rows = rows(d.path());
    let after: Vec<_> = rows.iter().filter(|r| t(r) >= 45.0 * 60.0).collect();
    for r in &after {
        assert_eq!(n(r, "delegatable_blocks"), 0, "{r:?}");
        assert_eq!(n(r, "free_ips"), 84, "{r:?}");
        assert!((14..=15).contains(&n(r, "pods_waiting_ip")), "{r:?}");
    }
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.path().join("o/summary.json")).unwrap()).unwrap();
    assert_eq!(s["failures"]["InsufficientCidrBlocks"], 5752);
    assert_eq!(s["failures"]["InvalidParameterValue"], 2876);
    // Every 5 s per node: 3 nodes x 2 assign calls for ~80 minutes.
    let per_5s = 5752.0 / (3.0 * 2.0 * (7200.0 - 2404.0) / 5.0);
    assert!((0.99..1.01).contains(&per_5s), "{per_5s}");
}

#[test]
fn rotation_22_claims() {
    // "after the first hour the delegatable /28 count swings between 4 and
    // 13 while the free-address count stays between 340 and 436".
    let d = run("scenarios/rotation-22.yaml");
    let rows = rows(d.path());
    let after: Vec<_> = rows.iter().filter(|r| t(r) >= 3600.0).collect();
    let blocks: Vec<u64> = after.iter().map(|r| n(r, "delegatable_blocks")).collect();
    let free: Vec<u64> = after.iter().map(|r| n(r, "free_ips")).collect();
    assert_eq!(blocks.iter().min(), Some(&4));
    assert_eq!(blocks.iter().max(), Some(&13));
    assert_eq!(free.iter().min(), Some(&340));
    assert_eq!(free.iter().max(), Some(&436));
    // The rotation happened: nodes expired and were replaced.
    let ev = std::fs::read_to_string(d.path().join("o/events.csv")).unwrap();
    assert!(ev.lines().filter(|l| l.contains(",node_expired,")).count() >= 12);
}

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("o/summary.json")).unwrap()).unwrap()
}

#[test]
fn large_16_claims() {
    // "Thousands of addresses stay free while most of them sit in /28s that
    // single addresses have poisoned": after the 20-minute warm-up, free
    // addresses never fall below 11,639, while at the worst moment (the
    // first InsufficientCidrBlocks, 47:55) no /28 can be delegated.
    let d = run("scenarios/large-16.yaml");
    let rows = rows(d.path());
    let after: Vec<_> = rows.iter().filter(|r| t(r) >= 1200.0).collect();
    let min_free = after.iter().map(|r| n(r, "free_ips")).min().unwrap();
    assert_eq!(min_free, 11_639);
    for r in &after {
        assert!(
            n(r, "free_ips") > 2 * 16 * n(r, "delegatable_blocks"),
            "{r:?}"
        );
    }
    let s = summary(d.path());
    let worst = &s["min_delegatable_blocks"][0];
    assert_eq!(worst["delegatable_blocks"], 0);
    assert_eq!(worst["free_ips_then"], 11_639);
    assert_eq!(
        worst["time_s"],
        s["first_insufficient_cidr_blocks"]["time_s"]
    );
    assert_eq!(s["failures"]["InsufficientCidrBlocks"], 2020);
}

#[test]
fn warmup_is_left_out_of_the_summary() {
    // rotation-22's start-up surge leaves 2 delegatable blocks at 4 minutes;
    // with its 20-minute warm-up the summary's worst is after it (4 blocks),
    // and the chart shows the warm-up shaded (the summary says how long).
    let d = run("scenarios/rotation-22.yaml");
    let rows = rows(d.path());
    let early = rows
        .iter()
        .filter(|r| t(r) < 1200.0)
        .map(|r| n(r, "delegatable_blocks"))
        .min();
    assert_eq!(early, Some(2));
    let s = summary(d.path());
    assert_eq!(s["warmup"], "20m");
    let worst = &s["min_delegatable_blocks"][0];
    assert_eq!(worst["delegatable_blocks"], 4);
    assert!(worst["time_s"].as_f64().unwrap() >= 1200.0);
    // The quickstart's worst moment is its first failure, not the start-up.
    let q = run("scenarios/quickstart.yaml");
    let s = summary(q.path());
    assert_eq!(
        s["min_delegatable_blocks"][0]["time_s"],
        s["first_insufficient_cidr_blocks"]["time_s"]
    );
}

#[test]
fn every_shipped_scenario_is_documented_and_checked() {
    let reference = std::fs::read_to_string(root().join("docs/scenario-reference.md")).unwrap();
    let tests: String = [
        "tests/scenario_claims.rs",
        "tests/scenarios.rs",
        "tests/ipamd_in_runs.rs",
        "tests/compare.rs",
        "tests/sweep.rs",
        "tests/node_churn.rs",
        "tests/snapshots.rs",
        "tests/pod_churn.rs",
    ]
    .iter()
    .map(|f| std::fs::read_to_string(root().join(f)).unwrap())
    .collect();
    for e in std::fs::read_dir(root().join("scenarios"))
        .unwrap()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".yaml") {
            continue;
        }
        assert!(
            reference.contains(&format!("`{name}`")),
            "{name} not in the scenario reference"
        );
        assert!(tests.contains(&name), "no test runs {name}");
    }
}
