//! Regression tests of issue #8: each input here crashed the program, gave a
//! silently wrong answer, grew without bound or broke the output set before.

mod common;
use common::*;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

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
    // The time series and the summary come from the same run: the
    // failures counted after the 5-minute warm-up are the summary's.
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let mut r = csv::Reader::from_path(out.join("timeseries.csv")).unwrap();
    let col = r
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "insufficient_cidr_blocks")
        .unwrap();
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    let at = |t: &str| -> u64 {
        rows.iter().find(|x| &x[0] == t).unwrap()[col]
            .parse()
            .unwrap()
    };
    let icb = s["failures"]["InsufficientCidrBlocks"].as_u64().unwrap();
    assert_eq!(s["warmup"], "5m");
    let last: u64 = rows.last().unwrap()[col].parse().unwrap();
    assert_eq!(last - at("300"), icb);
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

#[test]
fn inspect_blames_the_right_input() {
    let e = "docs/examples/inspect/enis.json";
    let o = run(&["inspect", "--cidr", "10.0.0.0/8", "--enis", e]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--cidr: subnet 10.0.0.0/8"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("enis.json"), "{}", stderr(&o));
    let o = run(&["inspect", "--cidr", "10.0.8.5/24", "--enis", e]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("10.0.8.5/24 has host bits set; write 10.0.8.0/24"),
        "{}",
        stderr(&o)
    );
    // Duplicate ENI ids and two primaries on one ENI, with the JSON path.
    let d = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(root().join(e)).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut list = v["NetworkInterfaces"].as_array().unwrap().clone();
    list.push(list[0].clone());
    let dup = d.path().join("dup.json");
    std::fs::write(
        &dup,
        serde_json::json!({ "NetworkInterfaces": list }).to_string(),
    )
    .unwrap();
    let o = run(&[
        "inspect",
        "--cidr",
        "10.0.8.0/24",
        "--enis",
        dup.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let n = list.len() - 1;
    assert!(
        stderr(&o).contains(&format!(
            "NetworkInterfaces[{n}].NetworkInterfaceId: eni-00000000000000001 is listed twice (also NetworkInterfaces[0])"
        )),
        "{}",
        stderr(&o)
    );
    let two = serde_json::json!({"NetworkInterfaces": [{
        "NetworkInterfaceId": "eni-2",
        "PrivateIpAddresses": [
            {"PrivateIpAddress": "10.0.8.20", "Primary": true},
            {"PrivateIpAddress": "10.0.8.21", "Primary": true}
        ]
    }]});
    let f = d.path().join("two.json");
    std::fs::write(&f, two.to_string()).unwrap();
    let o = run(&[
        "inspect",
        "--cidr",
        "10.0.8.0/24",
        "--enis",
        f.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("NetworkInterfaces[0].PrivateIpAddresses[1]: a second primary address"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn max_pods_and_node_share_one_default_mode() {
    let out = |args: &[&str]| {
        let o = run(args);
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8(o.stdout).unwrap()
    };
    assert_eq!(out(&["max-pods", "m5.large"]).trim(), "110");
    assert_eq!(
        out(&["max-pods", "m5.large", "--prefix-delegation"]).trim(),
        "110"
    );
    assert_eq!(
        out(&["max-pods", "m5.large", "--secondary-ip"]).trim(),
        "29"
    );
    assert!(out(&["node", "m5.large", "--pods", "10"]).contains("prefix delegation"));
    assert!(out(&["node", "m5.large", "--pods", "10", "--secondary-ip"]).contains("secondary ip"));
    // 29 max pods hold 27 pods with an address: the other 2 are host-network.
    let o = run(&["node", "m5.large", "--pods", "29", "--secondary-ip"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("at most 27 pods with their own address"),
        "{}",
        stderr(&o)
    );
    let o = run(&["node", "m5.large", "--pods", "27", "--secondary-ip"]);
    assert!(o.status.success());
    assert!(!stderr(&o).contains("only"), "{}", stderr(&o));
}

#[test]
fn messages_speak_the_users_words() {
    refused(
        &OK.replace(
            "  - name: p\n    instance_type: m5.large\n    subnets: [a]\n    size: 1\n",
            "  - p\n",
        ),
        &[
            "node_pools[0]",
            "expected a node pool (a map with name, instance_type, subnets, size)",
        ],
    );
    assert!(!OK.contains("Raw"));
    // A duplicate key is reported at its own line, not its parent's.
    refused(
        &OK.replace("duration: 10m\n", "duration: 10m\nduration: 20m\n"),
        &["s.yaml:3", "duplicate field `duration`"],
    );
    // Invalid UTF-8: the line and byte offset.
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("s.yaml");
    let mut bytes = OK.as_bytes().to_vec();
    bytes.extend_from_slice(b"description: \"\xff\"\n");
    std::fs::write(&f, bytes).unwrap();
    let o = run(&["validate", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let at = OK.len() + "description: \"".len();
    assert!(
        stderr(&o).contains(&format!(
            "s.yaml:15: not UTF-8 text: invalid byte 0xff at byte offset {at}"
        )),
        "{}",
        stderr(&o)
    );
    let o = run(&["instance-types", "--family", "m55"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no instance family `m55`"),
        "{}",
        stderr(&o)
    );
}

/// A file that cannot be read or written is named with the OS's reason,
/// once (it printed twice, as the message and again as its cause).
#[test]
fn os_errors_are_told_once() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("missing.json");
    let o = run(&[
        "inspect",
        "--enis",
        missing.to_str().unwrap(),
        "--cidr",
        "10.0.0.0/24",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.contains("missing.json: cannot read: "), "{e}");
    assert_eq!(e.matches("os error 2").count(), 1, "{e}");
    let file = d.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let out = file.join("sub");
    let sc = root().join("scenarios/quickstart.yaml");
    let o = run(&[
        "run",
        sc.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "-q",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("cannot write the outputs into"), "{e}");
    assert_eq!(e.matches("(os error").count(), 1, "{e}");
}

#[test]
fn docs_cite_primary_sources_not_the_steering_folder() {
    // A user's clone has no ../shared: docs cite the sources themselves.
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    files.push(root().join("README.md"));
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for bad in ["../shared", "model-reference", "model reference"] {
            assert!(!text.contains(bad), "{} mentions {bad}", f.display());
        }
    }
}

#[test]
fn consumer_enis_are_traceable_in_the_event_log() {
    // A block lost to a Lambda ENI can be traced: every consumer ENI's
    // creation and deletion is logged with its kind, ENI and address.
    let d = tempfile::tempdir().unwrap();
    assert!(run_set(&d.path().join("o"), "42", None).status.success());
    let ev = std::fs::read_to_string(d.path().join("o/events.csv")).unwrap();
    let created: Vec<&str> = ev
        .lines()
        .filter(|l| l.contains(",consumer_created,"))
        .collect();
    let deleted: Vec<&str> = ev
        .lines()
        .filter(|l| l.contains(",consumer_deleted,"))
        .collect();
    assert!(created
        .iter()
        .any(|l| l.contains("lambda eni-") && l.contains(" at 10.0.0.")));
    assert!(deleted
        .iter()
        .any(|l| l.contains("elb eni-") && l.contains(" at 10.0.0.")));
    // Each deletion names an ENI created before.
    for l in &deleted {
        let eni = l
            .split_whitespace()
            .find(|w| w.starts_with("eni-"))
            .unwrap();
        assert!(created.iter().any(|c| c.contains(eni)), "{l}");
    }
}

#[test]
fn node_with_large_targets_says_what_is_true() {
    for args in [
        &[
            "node",
            "m5.large",
            "--pods",
            "10",
            "--warm-ip-target",
            "60000",
        ][..],
        &[
            "node",
            "m5.large",
            "--pods",
            "10",
            "--secondary-ip",
            "--warm-eni-target",
            "100",
        ][..],
    ] {
        let o = run(args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        assert!(
            !stderr(&o).contains("WARM_PREFIX_TARGET=0"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
}
