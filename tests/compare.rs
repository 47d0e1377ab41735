//! `compare`, `check`, variants and `--set` on the shipped comparison
//! scenarios.

mod common;
use common::*;

use std::path::Path;

const C24: &str = "scenarios/compare-24-vs-22.yaml";

fn compare(file: &str, dir: &Path, extra: &[&str]) {
    let mut args = vec!["compare", file, "--quiet", "--out", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Every file under `dir`, relative path to bytes.
fn tree(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut m = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                m.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    m
}

#[test]
fn compare_writes_every_variant_and_the_comparison() {
    let d = tempfile::tempdir().unwrap();
    let o = d.path().join("c");
    compare(C24, &o, &[]);
    let files = tree(&o);
    for f in [
        "comparison.csv",
        "comparison.md",
        "compare-blocks.png",
        "compare-blocks.svg",
        "compare-addresses.png",
        "compare-addresses.svg",
        "compare-maps.png",
        "compare-maps.svg",
        "base/timeseries.csv",
        "base/subnet-map.png",
        "slash-22/events.csv",
        "slash-22/summary.json",
    ] {
        assert!(files.contains_key(f), "{f} missing: {:?}", files.keys());
    }
    // The scenario's claims: the /24 fails, the /22 does not.
    let csv = String::from_utf8(files["comparison.csv"].clone()).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].starts_with("variant,first_insufficient_cidr_blocks_s,insufficient_cidr_blocks,")
    );
    assert!(
        lines[1].starts_with("base,2403.9,5752,0,2876,private-a=0,47,"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].starts_with("slash-22,,0,0,0,private-a=41,47,770.0,81.0,5.0,3"),
        "{}",
        lines[2]
    );
    let md = String::from_utf8(files["comparison.md"].clone()).unwrap();
    assert!(
        md.contains("| base | 0:40:03 | 5,752 | 0 | 2,876 | private-a=0 | 47 | 19.3 h |"),
        "{md}"
    );
}

#[test]
fn outputs_do_not_depend_on_the_thread_count() {
    let d = tempfile::tempdir().unwrap();
    compare(C24, &d.path().join("one"), &["--jobs", "1"]);
    compare(C24, &d.path().join("two"), &["--jobs", "2"]);
    // More threads than variants: as many threads as variants.
    compare(C24, &d.path().join("many"), &["--jobs", "1024"]);
    let (a, b) = (tree(&d.path().join("one")), tree(&d.path().join("two")));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (k, v) in &a {
        assert!(v == &b[k], "{k} differs between --jobs 1 and --jobs 2");
    }
    assert!(a == tree(&d.path().join("many")), "--jobs 1024 differs");
    // A thread count no machine has is refused, not attempted.
    let o = run(&["compare", C24, "--jobs", "100000", "--quiet"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("at most 1024"), "{}", stderr(&o));
}

#[test]
fn each_variant_folder_equals_run_variant() {
    let d = tempfile::tempdir().unwrap();
    compare(C24, &d.path().join("c"), &[]);
    let single = d.path().join("single");
    let o = run(&[
        "run",
        C24,
        "--variant",
        "slash-22",
        "--quiet",
        "--no-wall-clock",
        "--out",
        single.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (a, b) = (tree(&d.path().join("c/slash-22")), tree(&single));
    assert_eq!(a.len(), 10);
    assert_eq!(
        a, b,
        "compare's slash-22 folder and run --variant slash-22 differ"
    );
}

#[test]
fn variants_see_identical_demand() {
    // Common random numbers: the variant changes only the CIDR, so the same
    // nodes launch and register (boot times) at the same times, and the
    // same consumers churn at the same times, in both runs.
    let d = tempfile::tempdir().unwrap();
    compare(C24, &d.path().join("c"), &[]);
    let demand = |v: &str| -> Vec<(String, String)> {
        let ev = std::fs::read_to_string(d.path().join("c").join(v).join("events.csv")).unwrap();
        ev.lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.splitn(3, ',').collect();
                matches!(
                    f[1],
                    "node_launched" | "node_registered" | "consumer_created" | "consumer_deleted"
                )
                .then(|| (f[0].to_string(), f[1].to_string()))
            })
            .collect()
    };
    let (a, b) = (demand("base"), demand("slash-22"));
    assert!(a.len() > 10, "{a:?}");
    assert_eq!(a, b);
}

#[test]
fn set_overrides_a_field_like_a_variant() {
    // --set subnets.private-a.cidr=10.0.0.0/22 on the base runs what the
    // slash-22 variant runs: the same time series.
    let d = tempfile::tempdir().unwrap();
    compare(C24, &d.path().join("c"), &[]);
    let s = d.path().join("set");
    let o = run(&[
        "run",
        C24,
        "--set",
        "subnets.private-a.cidr=10.0.0.0/22",
        "--quiet",
        "--no-wall-clock",
        "--out",
        s.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        std::fs::read(s.join("timeseries.csv")).unwrap()
            == std::fs::read(d.path().join("c/slash-22/timeseries.csv")).unwrap()
    );
    // A path that names nothing, and a malformed one: exit 2, saying why.
    let o = run(&[
        "run",
        C24,
        "--set",
        "subnets.private-b.cidr=10.0.0.0/22",
        "--out",
        "/tmp/x",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no element named `private-b`")
            && stderr(&o).contains("valid: private-a"),
        "{}",
        stderr(&o)
    );
    let o = run(&["run", C24, "--set", "vpc_cni.warm_ip_target"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("expected PATH=VALUE"), "{}", stderr(&o));
    // A value of the wrong type: the override at fault is named, not
    // only `--set` (serde's type errors carry no path).
    let o = run(&[
        "run",
        C24,
        "--set",
        "seed=3",
        "--set",
        "karpenter.spot_to_spot_consolidation=maybe",
        "--out",
        "/tmp/x",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(
            "--set karpenter.spot_to_spot_consolidation=maybe: invalid type: string \"maybe\", expected a boolean"
        ),
        "{}",
        stderr(&o)
    );
    let o = run(&["run", C24, "--variant", "slash-23"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no variant named `slash-23`; valid: base, slash-22"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn check_passes_when_expectations_hold_and_fails_when_broken() {
    let o = run(&["check", C24]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("3 passed, 0 failed"), "{}", stdout(&o));
    // The same expectation on the /24 (via --set, for every run) is broken.
    let d = tempfile::tempdir().unwrap();
    let junit = d.path().join("report.xml");
    let o = run(&[
        "check",
        C24,
        "--set",
        "expect.max_insufficient_cidr_blocks=0",
        "--junit",
        junit.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let table = stdout(&o);
    assert!(
        table.contains("base")
            && table.contains("max_insufficient_cidr_blocks")
            && table.contains("5752")
            && table.contains("FAIL"),
        "{table}"
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains(
            "<testsuite name=\"scenarios/compare-24-vs-22.yaml\" tests=\"4\" failures=\"1\">"
        ),
        "{xml}"
    );
    assert!(
        xml.contains("<failure message=\"expected &lt;= 0, got 5752\"/>"),
        "{xml}"
    );
    // Bad input: exit 2.
    let o = run(&["check", "scenarios/no-such-file.yaml"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn a_bad_variant_is_named_with_file_line_and_field() {
    let d = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(root().join(C24))
        .unwrap()
        .replace("        cidr: 10.0.0.0/22\n", "        cidr: 10.0.0.0/33\n");
    let f = d.path().join("bad.yaml");
    std::fs::write(&f, &text).unwrap();
    let o = run(&[
        "compare",
        f.to_str().unwrap(),
        "--out",
        d.path().join("o").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    let line = text
        .lines()
        .position(|l| l.contains("- name: slash-22"))
        .unwrap()
        + 1;
    assert!(
        e.contains(&format!("bad.yaml:{line}: variant `slash-22`: subnets[0].cidr: `10.0.0.0/33` is not an IPv4 CIDR")),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1, "one problem, no cascade: {e}");
    assert!(!d.path().join("o").exists(), "nothing written");
}

#[test]
fn reservation_comparison_claims() {
    // The figures in scenarios/compare-reservations.yaml's comment.
    let d = tempfile::tempdir().unwrap();
    compare(
        "scenarios/compare-reservations.yaml",
        &d.path().join("c"),
        &[],
    );
    let csv = std::fs::read_to_string(d.path().join("c/comparison.csv")).unwrap();
    let icb: Vec<(String, u64)> = csv
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].to_string(), f[2].parse().unwrap())
        })
        .collect();
    assert_eq!(
        icb,
        vec![
            ("base".to_string(), 2098),
            ("prefix-26".to_string(), 3620),
            ("prefix-25".to_string(), 2608),
            ("prefix-24".to_string(), 212),
            ("explicit-24".to_string(), 37112),
        ]
    );
}
