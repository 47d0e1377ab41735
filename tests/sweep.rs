//! `sweep` and `merge`: the same bytes whatever the thread count or
//! sharding, failure probabilities that equal single runs, and the figures
//! docs/reservation-sizing.md quotes.

mod common;
use common::*;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

fn ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

const QS: &str = "scenarios/quickstart.yaml";
const RS: &str = "scenarios/reservation-sizing.yaml";

fn sweep(file: &str, out: &Path, extra: &[&str]) {
    let mut a = vec!["sweep", file, "--quiet", "--out", out.to_str().unwrap()];
    a.extend_from_slice(extra);
    ok(&a);
}

#[test]
fn sweep_outputs_do_not_depend_on_jobs_or_shards() {
    let d = tempfile::tempdir().unwrap();
    let p = |x: &str| d.path().join(x);
    let grid = "--grid=vpc_cni.warm_prefix_target=1,2";
    sweep(QS, &p("one"), &["--seeds", "1..24", grid, "--jobs", "1"]);
    sweep(QS, &p("two"), &["--seeds", "1..24", grid, "--jobs", "2"]);
    let one = tree(&p("one"));
    assert!(
        one.contains_key("sweep.csv")
            && one.contains_key("bands.csv")
            && one.contains_key("probability.png")
    );
    assert_eq!(one, tree(&p("two")), "--jobs 1 and --jobs 2 differ");
    for k in 0..3 {
        sweep(
            QS,
            &p(&format!("s{k}")),
            &["--seeds", "1..24", grid, "--shard", &format!("{k}/3")],
        );
    }
    let s: Vec<String> = (0..3)
        .map(|k| p(&format!("s{k}")).to_string_lossy().into_owned())
        .collect();
    ok(&[
        "merge",
        &s[2],
        &s[0],
        &s[1],
        "--out",
        p("merged").to_str().unwrap(),
    ]);
    assert_eq!(
        one,
        tree(&p("merged")),
        "sharded and merged differs from unsharded"
    );
    // Shards of another sweep, a shard twice, a shard missing: refused.
    sweep(
        QS,
        &p("other"),
        &["--seeds", "1..23", grid, "--shard", "0/3"],
    );
    for dirs in [
        vec![
            s[0].clone(),
            s[1].clone(),
            p("other").to_string_lossy().into_owned(),
        ],
        vec![s[0].clone(), s[0].clone(), s[1].clone()],
        vec![s[0].clone(), s[1].clone()],
    ] {
        let mut a = vec!["merge"];
        a.extend(dirs.iter().map(String::as_str));
        let out = p("bad");
        a.extend(["--out", out.to_str().unwrap()]);
        let o = run(&a);
        assert_eq!(o.status.code(), Some(2), "{dirs:?}");
    }
}

#[test]
fn probability_equals_the_fraction_of_single_runs_that_failed() {
    // reservation-sizing fails on some seeds and not others.
    let d = tempfile::tempdir().unwrap();
    sweep(
        RS,
        &d.path().join("s"),
        &["--seeds", "1..20", "--variant", "base"],
    );
    let csv = std::fs::read_to_string(d.path().join("s/sweep.csv")).unwrap();
    let row: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
    let failing_sweep: u64 = row[2].parse().unwrap();
    let mut failing_runs = 0;
    for seed in 1..=20 {
        let o = d.path().join(format!("r{seed}"));
        ok(&[
            "run",
            RS,
            "--seed",
            &seed.to_string(),
            "--quiet",
            "--out",
            o.to_str().unwrap(),
        ]);
        let s: serde_json::Value =
            serde_json::from_slice(&std::fs::read(o.join("summary.json")).unwrap()).unwrap();
        if s["failures"]["InsufficientCidrBlocks"].as_u64().unwrap() > 0 {
            failing_runs += 1;
        }
    }
    assert_eq!(failing_sweep, failing_runs);
    assert!(
        failing_runs > 0 && failing_runs < 20,
        "{failing_runs}: the test needs both outcomes"
    );
    assert_eq!(row[3], format!("{:.6}", failing_runs as f64 / 20.0));
}

#[test]
fn reservation_sizing_figures() {
    // docs/reservation-sizing.md: 200 seeds, no reservation 19 failing,
    // /26 10, /25 16, /24 4, /23 0; without fallback every reservation
    // fails every seed; the explicit /23 fails every seed.
    let d = tempfile::tempdir().unwrap();
    let g = "--grid=subnets.private-a.reservations=[[], [{cidr: 10.0.3.192/26, type: prefix}], [{cidr: 10.0.3.128/25, type: prefix}], [{cidr: 10.0.3.0/24, type: prefix}], [{cidr: 10.0.2.0/23, type: prefix}]]";
    sweep(
        RS,
        &d.path().join("s"),
        &["--seeds", "1..200", g, "--variant", "base"],
    );
    let mut r = csv::Reader::from_path(d.path().join("s/sweep.csv")).unwrap();
    let col = r
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "runs_with_insufficient_cidr_blocks")
        .unwrap();
    let failing: Vec<u64> = r
        .records()
        .map(|x| x.unwrap()[col].parse().unwrap())
        .collect();
    assert_eq!(failing, vec![19, 10, 16, 4, 0]);
    sweep(RS, &d.path().join("x"), &["--seeds", "1..200"]);
    let csv = std::fs::read_to_string(d.path().join("x/sweep.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert!(rows[1].starts_with("base,200,19,0.095000,"), "{}", rows[1]);
    assert!(
        rows[2].starts_with("explicit-23,200,200,1.000000,"),
        "{}",
        rows[2]
    );
    assert!(
        rows[3].starts_with("prefix-23,200,0,0.000000,0.000000,0.018"),
        "{}",
        rows[3]
    );
    let o = ok(&["check", RS]);
    assert!(
        o.contains("0.00% (0 of 200 runs failed") && o.contains("1 passed, 0 failed"),
        "{o}"
    );
    // The sweep assertion fails when the bound is tighter than the result.
    let o = run(&[
        "check",
        RS,
        "--set",
        "expect.sweep={seeds: 20, max_p_insufficient_cidr_blocks: 0.0}",
    ]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

#[test]
fn shard_auto_reads_the_batch_systems_index() {
    // Kubernetes Indexed Jobs and AWS Batch array jobs name the slice in an
    // environment variable; --shard auto must run the same slice as K/N.
    let d = tempfile::tempdir().unwrap();
    sweep(
        QS,
        &d.path().join("k1"),
        &["--seeds", "1..12", "--shard", "1/3"],
    );
    for var in ["JOB_COMPLETION_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX"] {
        let out = d.path().join(var);
        let o = Command::new(env!("CARGO_BIN_EXE_subnetsim"))
            .args([
                "sweep", QS, "--seeds", "1..12", "--shard", "auto", "--shards", "3", "--quiet",
                "--out",
            ])
            .arg(&out)
            .env(var, "1")
            .current_dir(root())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(tree(&out), tree(&d.path().join("k1")), "{var}");
    }
    // Without the variable, or without --shards: exit 2.
    let o = Command::new(env!("CARGO_BIN_EXE_subnetsim"))
        .args([
            "sweep",
            QS,
            "--seeds",
            "1..12",
            "--shard",
            "auto",
            "--shards",
            "3",
            "--out",
            "/tmp/never",
        ])
        .env_remove("JOB_COMPLETION_INDEX")
        .env_remove("AWS_BATCH_JOB_ARRAY_INDEX")
        .current_dir(root())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn keep_runs_writes_each_runs_outputs_identical_to_run() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("s");
    sweep(QS, &out, &["--seeds", "5..6", "--keep-runs"]);
    let kept = out.join("runs/base/0/seed-6");
    let single = d.path().join("single");
    ok(&[
        "run",
        QS,
        "--seed",
        "6",
        "--quiet",
        "--no-wall-clock",
        "--out",
        single.to_str().unwrap(),
    ]);
    assert_eq!(tree(&kept), tree(&single));
    // Without --keep-runs: no per-run files.
    sweep(QS, &d.path().join("lean"), &["--seeds", "5..6"]);
    assert!(!d.path().join("lean/runs").exists());
}

#[test]
fn progress_bar_on_a_terminal_only() {
    let d = tempfile::tempdir().unwrap();
    let o = run(&[
        "sweep",
        RS,
        "--variant",
        "base",
        "--seeds",
        "1..8",
        "--out",
        d.path().join("a").to_str().unwrap(),
    ]);
    assert!(o.status.success());
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("sweeping"),
        "no terminal, no bar"
    );
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("`script` not found: the terminal case is not checked here");
        return;
    }
    let log = d.path().join("typescript");
    let cmd = format!(
        "{} sweep {RS} --variant base --seeds 1..30 --out {}",
        env!("CARGO_BIN_EXE_subnetsim"),
        d.path().join("b").display()
    );
    let o = Command::new("script")
        .args(["-qec", &cmd, log.to_str().unwrap()])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let screen = String::from_utf8_lossy(&std::fs::read(&log).unwrap()).into_owned();
    assert!(
        screen.contains("sweeping [") && screen.contains("runs (ETA"),
        "{screen}"
    );
}

#[test]
fn a_wrong_grid_field_is_named() {
    let o = run(&[
        "sweep",
        QS,
        "--seeds",
        "1..2",
        "--grid",
        "vpc_cni.warm_prefx_target=1,2",
        "--out",
        "/tmp/never-written",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("variant `base`, --grid vpc_cni.warm_prefx_target=1: unknown field `warm_prefx_target`, expected one of"),
        "{e}"
    );
    assert!(!Path::new("/tmp/never-written").exists());
}
