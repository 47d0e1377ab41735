//! Integration tests of `subnetsim run`, `validate` and `schema` on real
//! scenario files: every shipped scenario, determinism, worked outcomes and
//! bad input.

mod common;
use common::*;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

const FILES: [&str; 10] = [
    "timeseries.csv",
    "workloads.csv",
    "events.csv",
    "summary.json",
    "final-state.json",
    "final-subnets.json",
    "free-ips.png",
    "free-ips.svg",
    "subnet-map.png",
    "subnet-map.svg",
];

fn run_into(scenario: &str, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["run", scenario, "--quiet", "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = run(&args);
    assert!(o.status.success(), "{scenario}: {}", stderr(&o));
    o
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `subnetsim inspect --json` on a run's final-subnets.json and
/// final-state.json (single-subnet scenarios).
fn inspect_run(dir: &Path) -> serde_json::Value {
    let o = run(&[
        "inspect",
        "--subnet",
        dir.join("final-subnets.json").to_str().unwrap(),
        "--enis",
        dir.join("final-state.json").to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&read(&dir.join("summary.json"))).unwrap()
}

#[test]
fn every_shipped_scenario_runs_and_writes_every_output() {
    let mut n = 0;
    for entry in std::fs::read_dir(root().join("scenarios")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        n += 1;
        let dir = tempfile::tempdir().unwrap();
        let rel = format!("scenarios/{}", path.file_name().unwrap().to_str().unwrap());
        let o = run(&["validate", &rel]);
        assert!(o.status.success(), "{rel}: {}", stderr(&o));
        // The fleet benchmark's month takes minutes in a debug build; its
        // first hours are enough here (tests/pod_churn.rs checks 12 h).
        let extra: &[&str] = if rel.ends_with("bench-large.yaml") {
            &["--duration", "2h"]
        } else {
            &[]
        };
        run_into(&rel, dir.path(), extra);
        for f in FILES {
            let bytes = read(&dir.path().join(f));
            assert!(!bytes.is_empty(), "{rel}: {f} empty");
            if f.ends_with(".png") {
                assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{rel}: {f} is a PNG");
            }
        }
        // No temporary files left behind.
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{rel}: temp files left");
        let header = String::from_utf8(read(&dir.path().join("timeseries.csv")))
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .to_string();
        assert_eq!(header, subnetsim::output::TIMESERIES_COLUMNS.join(","));
        let ev = String::from_utf8(read(&dir.path().join("events.csv"))).unwrap();
        assert!(ev.starts_with(&format!(
            "{}\n",
            subnetsim::output::EVENTS_COLUMNS.join(",")
        )));
    }
    assert!(n >= 2, "scenarios/ holds the shipped examples");
}

#[test]
fn same_scenario_and_seed_give_identical_bytes() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    run_into("scenarios/quickstart.yaml", a.path(), &["--no-wall-clock"]);
    run_into("scenarios/quickstart.yaml", b.path(), &["--no-wall-clock"]);
    for f in FILES {
        assert!(
            read(&a.path().join(f)) == read(&b.path().join(f)),
            "{f} differs between two runs"
        );
    }
    // With the wall clock, only its two fields differ.
    run_into("scenarios/quickstart.yaml", c.path(), &[]);
    for f in FILES.iter().filter(|f| **f != "summary.json") {
        assert!(
            read(&a.path().join(f)) == read(&c.path().join(f)),
            "{f} differs"
        );
    }
    let mut sa = summary(a.path());
    let mut sc = summary(c.path());
    assert!(sc["wall_time_s"].is_number() && sc["events_per_second"].is_number());
    for s in [&mut sa, &mut sc] {
        s["wall_time_s"] = serde_json::Value::Null;
        s["events_per_second"] = serde_json::Value::Null;
    }
    assert_eq!(sa, sc);
    // Another seed gives another run (so the comparison above can fail).
    let d = tempfile::tempdir().unwrap();
    run_into(
        "scenarios/quickstart.yaml",
        d.path(),
        &["--no-wall-clock", "--seed", "7"],
    );
    assert!(read(&a.path().join("events.csv")) != read(&d.path().join("events.csv")));
    assert_eq!(summary(d.path())["seed"], 7);
}

#[test]
fn quickstart_fails_with_free_addresses_left() {
    let dir = tempfile::tempdir().unwrap();
    run_into("scenarios/quickstart.yaml", dir.path(), &[]);
    let s = summary(dir.path());
    assert!(s["failures"]["InsufficientCidrBlocks"].as_u64().unwrap() > 0);
    assert!(
        s["first_insufficient_cidr_blocks"]["time_s"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    // Every InsufficientCidrBlocks in the log happened with free addresses
    // left: the point of the quickstart.
    let rows = csv_rows(&dir.path().join("timeseries.csv"));
    let failing: Vec<_> = rows
        .windows(2)
        .filter(|w| w[1]["insufficient_cidr_blocks"] != w[0]["insufficient_cidr_blocks"])
        .collect();
    assert!(!failing.is_empty());
    for w in failing {
        assert_eq!(w[1]["delegatable_blocks"], "0");
        assert!(w[1]["free_ips"].parse::<u32>().unwrap() > 50, "{:?}", w[1]);
    }
    assert!(s["peak_pods_waiting_ip"]["pods"].as_u64().unwrap() > 0);
    // The README's story: pods still wait at the end, with addresses free.
    let last = rows.last().unwrap();
    assert!(
        last["pods_waiting_ip"].parse::<u32>().unwrap() > 0,
        "{last:?}"
    );
    assert!(last["free_ips"].parse::<u32>().unwrap() > 50, "{last:?}");
    let events = String::from_utf8(read(&dir.path().join("events.csv"))).unwrap();
    assert!(events
        .lines()
        .any(|l| l.contains(",InsufficientCidrBlocks,private-a,i-")));
}

#[test]
fn seed_002_outcome() {
    // See scenarios/seed-002-t3medium-24.yaml: 108 pods per t3.medium, 7
    // prefixes each (5 on the primary ENI, 2 on a second), no failure, and
    // 251 - 2 primaries - 7 * 16 = 137 free addresses per /24.
    let dir = tempfile::tempdir().unwrap();
    run_into("scenarios/seed-002-t3medium-24.yaml", dir.path(), &[]);
    let rows = csv_rows(&dir.path().join("timeseries.csv"));
    let last: Vec<_> = rows.iter().rev().take(3).collect();
    for r in &last {
        assert_eq!(r["time_s"], "1800");
        assert_eq!(r["pods_running"], "108", "{r:?}");
        assert_eq!(r["prefix_allocated_blocks"], "7", "{r:?}");
        assert_eq!(r["free_ips"], "137", "{r:?}");
        assert_eq!(r["insufficient_cidr_blocks"], "0");
        assert_eq!(r["pods_waiting_ip"], "0");
        assert_eq!(r["pods_pending"], "0");
    }
    let st: serde_json::Value =
        serde_json::from_slice(&read(&dir.path().join("final-state.json"))).unwrap();
    let mut per_node: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for e in st["NetworkInterfaces"].as_array().unwrap() {
        let node = e["Attachment"]["InstanceId"].as_str().unwrap().to_string();
        per_node
            .entry(node)
            .or_default()
            .push(e["Ipv4Prefixes"].as_array().map_or(0, Vec::len));
    }
    assert_eq!(per_node.len(), 3);
    for v in per_node.values() {
        assert_eq!(v, &vec![5, 2]);
    }
}

#[test]
fn inspect_reads_the_simulated_end_state() {
    let dir = tempfile::tempdir().unwrap();
    run_into("scenarios/quickstart.yaml", dir.path(), &[]);
    let v = inspect_run(dir.path());
    let rows = csv_rows(&dir.path().join("timeseries.csv"));
    let last = rows.last().unwrap();
    for k in [
        "free_ips",
        "delegatable_blocks",
        "fragmented_blocks",
        "prefix_allocated_blocks",
        "free_blocks",
    ] {
        assert_eq!(v[k].to_string(), last[k], "{k}");
    }
}

#[test]
fn overrides_apply() {
    let dir = tempfile::tempdir().unwrap();
    run_into(
        "scenarios/quickstart.yaml",
        dir.path(),
        &["--duration", "10m", "--seed", "3"],
    );
    let s = summary(dir.path());
    assert_eq!(s["simulated_seconds"], 600);
    assert_eq!(s["seed"], 3);
    let o = run(&["run", "scenarios/quickstart.yaml", "--duration", "0s"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn bad_scenarios_exit_2_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(root().join("scenarios/quickstart.yaml")).unwrap();
    let cases = [
        (
            base.replace("m5.large", "m5.larg"),
            "node_pools[0].instance_type: unknown instance type `m5.larg`; nearest: m5.large",
        ),
        (
            base.replace("    zone: eu-west-1a", "    zone: eu-west-1a\n    zones: x"),
            "unknown field `zones`",
        ),
        (
            base.replace("subnets: [private-a]", "subnets: [private-b]"),
            "no subnet named `private-b`; valid: private-a",
        ),
        (
            base.replace("cidr: 10.0.0.0/24", "cidr: 10.0.0.0/14"),
            "not between /16 and /28",
        ),
        (base.replace("cpu: 50m", "cpu: fifty"), "workloads[0].cpu"),
        (
            base.replace("kind: lambda", "kind: lamda"),
            "unknown variant `lamda`",
        ),
        (
            base.replace("duration: 2h", "duration: 2 hours"),
            "duration",
        ),
        (
            base.replace("sample_every: 30s", "sample_every: 1ms")
                .replace("duration: 2h", "duration: 4h"),
            "sample_every: 1ms over 4h is more than 10000000 rows per subnet; use at least 2ms",
        ),
        ("name: [\n".to_string(), "bad.yaml:"),
    ];
    for (text, want) in cases {
        let f = dir.path().join("bad.yaml");
        std::fs::write(&f, &text).unwrap();
        let out = dir.path().join("out");
        for cmd in ["validate", "run"] {
            let mut args = vec![cmd, f.to_str().unwrap()];
            if cmd == "run" {
                args.extend(["--out", out.to_str().unwrap()]);
            }
            let o = run(&args);
            assert_eq!(o.status.code(), Some(2), "{cmd} {want}: {}", stderr(&o));
            let e = stderr(&o);
            assert!(e.contains(want), "want `{want}` in: {e}");
            assert!(e.contains("bad.yaml:"), "names file and line: {e}");
            assert!(!e.contains("panicked"), "{e}");
        }
        assert!(!out.exists(), "nothing written for a bad scenario");
    }
    let o = run(&["run", "scenarios/no-such-file.yaml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no-such-file.yaml"));
}

#[test]
fn unwritable_output_leaves_no_partial_files() {
    let dir = tempfile::tempdir().unwrap();
    // The output folder is a file: nothing can be written, exit 1.
    let blocker = dir.path().join("out");
    std::fs::write(&blocker, "x").unwrap();
    let o = run(&[
        "run",
        "scenarios/quickstart.yaml",
        "--quiet",
        "--out",
        blocker.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&blocker).unwrap(), "x");
}

#[test]
fn schema_is_json_with_every_section() {
    let o = run(&["schema"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let props = v["properties"].as_object().unwrap();
    for k in [
        "vpc_cni",
        "ec2",
        "kubelet",
        "nodes",
        "scheduler",
        "subnets",
        "node_pools",
        "workloads",
    ] {
        assert!(props.contains_key(k), "{k}");
    }
}

#[test]
fn scenario_reference_documents_every_field() {
    // Every property name anywhere in the JSON Schema appears in the
    // reference as `field`.
    fn walk(v: &serde_json::Value, out: &mut std::collections::BTreeSet<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(serde_json::Value::Object(props)) = m.get("properties") {
                    out.extend(props.keys().cloned());
                }
                for x in m.values() {
                    walk(x, out);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut fields = std::collections::BTreeSet::new();
    walk(&subnetsim::scenario::json_schema(), &mut fields);
    assert!(fields.len() > 40, "{fields:?}");
    let doc = std::fs::read_to_string(root().join("docs/scenario-reference.md")).unwrap();
    let missing: Vec<_> = fields
        .iter()
        .filter(|f| !doc.contains(&format!("`{f}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "undocumented scenario fields: {missing:?}"
    );
}

#[test]
fn rotated_nodes_are_drained_and_release_everything() {
    let dir = tempfile::tempdir().unwrap();
    run_into("scenarios/rotation-22.yaml", dir.path(), &[]);
    let events = String::from_utf8(read(&dir.path().join("events.csv"))).unwrap();
    let rows: Vec<Vec<&str>> = events
        .lines()
        .skip(1)
        .map(|l| l.splitn(5, ',').collect())
        .collect();
    let of = |kind: &str| -> Vec<&Vec<&str>> { rows.iter().filter(|r| r[1] == kind).collect() };
    let expired = of("node_expired");
    let terminated = of("node_terminated");
    // 12 nodes, 3 h lifetime, 12 h: rotations at 3, 6 and 9 h; a node
    // expiring at the very end has no time left for its replacement.
    assert_eq!(terminated.len(), 36);
    assert!(
        expired.len() >= 36 && expired.len() <= 37,
        "{}",
        expired.len()
    );
    let time = |r: &Vec<&str>| r[0].parse::<f64>().unwrap();
    // Launch before terminate, one replacement at a time: every termination
    // happens right when a replacement became Ready.
    for t in &terminated {
        assert!(
            rows.iter()
                .any(|r| r[1] == "node_ready" && time(r) == time(t) && r[3] != t[3]),
            "termination of {} at {} without a replacement Ready",
            t[3],
            t[0]
        );
    }
    let gone: std::collections::BTreeSet<&str> = terminated.iter().map(|r| r[3]).collect();
    let st: serde_json::Value =
        serde_json::from_slice(&read(&dir.path().join("final-state.json"))).unwrap();
    let enis = st["NetworkInterfaces"].as_array().unwrap();
    let mut primaries = 0;
    for e in enis {
        if let Some(i) = e["Attachment"]["InstanceId"].as_str() {
            assert!(
                !gone.contains(i),
                "ENI {} of terminated {i} remains",
                e["NetworkInterfaceId"]
            );
            if e["Attachment"]["DeviceIndex"] == 0 {
                primaries += 1;
            }
        }
    }
    let ts = csv_rows(&dir.path().join("timeseries.csv"));
    let last = ts.last().unwrap();
    // Every live node (12 Ready, plus a replacement still booting if a
    // rotation is in flight at the end) has exactly one primary ENI.
    assert_eq!(primaries.to_string(), last["nodes"]);
    assert_eq!(last["nodes_ready"], "12");
    assert_eq!(
        last["nodes"],
        (12 + expired.len() - terminated.len()).to_string()
    );
    assert_eq!(last["pods_running"], "336");
    // The subnet's state is exactly what the remaining ENIs hold.
    let v = inspect_run(dir.path());
    assert_eq!(v["free_ips"].to_string(), last["free_ips"]);
    assert_eq!(
        v["prefix_allocated_blocks"].to_string(),
        last["prefix_allocated_blocks"]
    );
}

#[test]
fn progress_bar_only_on_a_terminal_and_not_with_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o");
    let bin = env!("CARGO_BIN_EXE_subnetsim");
    let scenario = root().join("benches/scenarios/large.yaml");
    // stderr not a terminal: no bar.
    let o = run(&[
        "run",
        scenario.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--duration",
        "20m",
    ]);
    assert!(o.status.success());
    assert!(!stderr(&o).contains("simulating"), "{}", stderr(&o));
    // A pseudo-terminal (util-linux `script`), a run longer than a moment
    // (the bar shows after 300 ms): simulated durations four times longer
    // until it shows, in a debug or a release build; a run of 2 s without
    // it fails.
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("`script` not found: the terminal case is not checked here");
        return;
    }
    let pty = |minutes: u64, extra: &str| {
        let log = dir.path().join("typescript");
        let cmd = format!(
            "{bin} run {} --out {} --duration {minutes}m {extra}",
            scenario.display(),
            out.display()
        );
        let o = Command::new("script")
            .args(["-qec", &cmd, log.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&read(&log)).into_owned()
    };
    let mut minutes = 20;
    loop {
        let started = std::time::Instant::now();
        if pty(minutes, "").contains("simulating [") {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2) && minutes < 60 * 24 * 30,
            "a bar on the terminal ({minutes} simulated minutes)"
        );
        minutes *= 4;
    }
    assert!(
        !pty(minutes, "--quiet").contains("simulating"),
        "no bar with --quiet"
    );
}
