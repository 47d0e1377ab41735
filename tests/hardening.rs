//! Regression tests of issue #8: each input here crashed the program, gave a
//! silently wrong answer, grew without bound or broke the output set before.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_subnetsim"));
    c.current_dir(root());
    c
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes scenario text to a file in `dir` and validates it.
fn validate(dir: &Path, text: &str) -> Output {
    let f = dir.join("s.yaml");
    std::fs::write(&f, text).unwrap();
    run(&["validate", f.to_str().unwrap()])
}

const OK: &str = "\
name: t
duration: 10m
subnets:
  - name: a
    cidr: 10.0.0.0/24
    zone: z1
node_pools:
  - name: p
    instance_type: m5.large
    subnets: [a]
    size: 1
workloads:
  - name: w
    replicas: 3
";

fn refused(text: &str, needles: &[&str]) {
    let d = tempfile::tempdir().unwrap();
    let o = validate(d.path(), text);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(!e.contains("panicked"), "{e}");
    for n in needles {
        assert!(e.contains(n), "`{n}` not in: {e}");
    }
}

#[test]
fn a_closed_stdout_exits_quietly() {
    // `instance-types` prints ~120 KB, more than a pipe holds: with the
    // reading end closed at once, its writes fail with EPIPE.
    for args in [
        &["instance-types"][..],
        &["schema"][..],
        &["run", "scenarios/quickstart.yaml", "--out"][..],
    ] {
        let d = tempfile::tempdir().unwrap();
        let mut cmd = bin();
        cmd.args(args);
        if args[0] == "run" {
            cmd.arg(d.path().join("o"));
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn user_numbers_never_wrap() {
    // 18446744073709552 s * 1000 overflows u64: it validated as 384ms.
    refused(
        &OK.replace("duration: 10m", "duration: 18446744073709552"),
        &["s.yaml:2", "duration", "too large"],
    );
    // --warm-prefix-target 268435456: 16 x 2^28 wrapped to 0 prefixes.
    let o = run(&[
        "node",
        "m5.large",
        "--pods",
        "37",
        "--warm-prefix-target",
        "268435456",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--warm-prefix-target"),
        "{}",
        stderr(&o)
    );
    refused(
        &OK.replace(
            "duration: 10m",
            "duration: 10m\nvpc_cni:\n  warm_ip_target: 4000000000",
        ),
        &["vpc_cni.warm_ip_target", "at most 65536"],
    );
}

#[test]
fn duration_override_is_checked_like_the_file() {
    let d = tempfile::tempdir().unwrap();
    let o = run(&[
        "run",
        "scenarios/quickstart.yaml",
        "--duration",
        "99999999h",
        "--out",
        d.path().join("o").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--duration"), "{}", stderr(&o));
    assert!(!d.path().join("o").exists());
}

#[test]
fn absurd_sizes_are_refused_before_any_work() {
    refused(
        &OK.replace("size: 1", "size: 1000000"),
        &["node_pools[0].size", "at most 251"],
    );
    refused(
        &OK.replace("replicas: 3", "replicas: 4294967295"),
        &["workloads[0].replicas", "at most 1000000"],
    );
    refused(
        &OK.replace(
            "    zone: z1\n",
            "    zone: z1\n    consumers:\n      - kind: lambda\n        count: 10000000\n",
        ),
        &["subnets[0].consumers[0].count", "at most 251"],
    );
    refused(
        &OK.replace("size: 1", "size: 1\n    max_pods: 4000000"),
        &["node_pools[0].max_pods"],
    );
}

#[test]
fn deep_nesting_and_huge_names_are_refused_at_once() {
    // 100k levels took 42 s to refuse inside the YAML parser; the
    // pre-check refuses at the first line past 64 levels.
    let flow = format!("{}x: {}{}\n", OK, "[".repeat(100_000), "]".repeat(100_000));
    refused(&flow, &["nested more than 64 levels"]);
    let mut block = OK.to_string() + "x:\n";
    for i in 1..200 {
        block.push_str(&" ".repeat(2 * i));
        block.push_str("- \n");
    }
    refused(&block, &["nested more than 64 levels"]);
    let long = "n".repeat(300);
    refused(
        &OK.replace("  - name: a\n", &format!("  - name: {long}\n"))
            .replace("subnets: [a]", &format!("subnets: [{long}]")),
        &["subnets[0].name", "longer than 200"],
    );
}

#[test]
fn scenario_names_are_identifiers() {
    for bad in ["../../x", "/tmp/x", "\"\"", ".hidden", "a b"] {
        refused(
            &OK.replace("name: t", &format!("name: {bad}")),
            &["s.yaml:1", "name", "identifiers"],
        );
    }
    let d = tempfile::tempdir().unwrap();
    let o = validate(d.path(), &OK.replace("name: t", "name: web-1.2_x"));
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Runs the quickstart into `out` with a seed and an optional fault stage.
fn run_set(out: &Path, seed: &str, fault: Option<&str>) -> Output {
    let mut c = bin();
    c.args([
        "run",
        "scenarios/quickstart.yaml",
        "--quiet",
        "--no-wall-clock",
        "--seed",
        seed,
        "--out",
        out.to_str().unwrap(),
    ]);
    if let Some(f) = fault {
        c.env("SUBNETSIM_FAULT", f);
    }
    c.output().unwrap()
}

fn seed_of(out: &Path) -> u64 {
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    s["seed"].as_u64().unwrap()
}

/// The set in `out` is whole: every file, all from one run (the events'
/// and the summary's seeds agree through the timeseries' last row).
fn assert_whole(out: &Path, seed: u64) {
    assert_eq!(seed_of(out), seed);
    for f in [
        "timeseries.csv",
        "events.csv",
        "summary.json",
        "final-state.json",
        "final-subnets.json",
        "free-ips.png",
        "subnet-map.png",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    // The time series ends with the summary's totals.
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let ts = std::fs::read_to_string(out.join("timeseries.csv")).unwrap();
    let last = ts.lines().last().unwrap();
    let icb = s["failures"]["InsufficientCidrBlocks"].as_u64().unwrap();
    assert!(last.contains(&format!(",{icb},")), "{last} vs {icb}");
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".staging-") || n.ends_with(".tmp"))
        .collect()
}

#[test]
fn a_killed_run_leaves_the_old_set_or_the_new_one_whole() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("o");
    assert!(run_set(&out, "1", None).status.success());
    assert_whole(&out, 1);
    // Killed with every file written, before the swap: the old set stays.
    let o = run_set(&out, "2", Some("staged"));
    assert!(!o.status.success());
    assert_whole(&out, 1);
    // Killed right after the swap: the new set is in place.
    let o = run_set(&out, "3", Some("swapped"));
    assert!(!o.status.success());
    assert_whole(&out, 3);
    assert!(
        !leftovers(d.path()).is_empty(),
        "a killed run cannot clean up"
    );
    // The next run removes what killed runs left.
    assert!(run_set(&out, "4", None).status.success());
    assert_whole(&out, 4);
    assert_eq!(leftovers(d.path()), Vec::<String>::new());
}

#[test]
fn a_second_run_into_the_same_folder_fails_at_once() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("o");
    // 20 days of the quickstart take seconds (in a debug build); the second
    // run starts while the first holds the lock.
    let mut first = bin()
        .args([
            "run",
            "scenarios/quickstart.yaml",
            "--quiet",
            "--duration",
            "20d",
            "--out",
            out.to_str().unwrap(),
        ])
        .spawn()
        .unwrap();
    // Wait until the first run has taken its lock (its staging folder
    // exists).
    let t0 = std::time::Instant::now();
    while leftovers(d.path()).is_empty() && t0.elapsed().as_secs() < 30 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let second = run_set(&out, "5", None);
    let e = stderr(&second);
    assert_eq!(second.status.code(), Some(1), "{e}");
    assert!(e.contains("another run is writing into this folder"), "{e}");
    assert!(first.wait().unwrap().success());
    assert_whole(&out, 42);
    assert_eq!(leftovers(d.path()), Vec::<String>::new());
}
