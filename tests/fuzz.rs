//! Fuzzing (proptest, stable toolchain, overflow checks on in the test
//! profile): mutated and generated scenario text and `inspect` JSON never
//! panic and never hang; a scenario that validates runs. Bounded in cases
//! and in simulated time so that CI stays quick.

use std::path::Path;

use proptest::prelude::*;
use subnetsim::inspect::{self, SubnetSource};
use subnetsim::scenario;
use subnetsim::sim::observe::NullSink;
use subnetsim::sim::Simulation;
use subnetsim::time::Ms;

macro_rules! base {
    ($f:literal) => {
        (
            concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/", $f),
            include_str!(concat!("../scenarios/", $f)),
        )
    };
}

/// Every shipped scenario but the two fleets (too large for a fuzz case),
/// with its path: `from-snapshot.yaml` reads its snapshots beside it.
const BASES: [(&str, &str); 14] = [
    base!("quickstart.yaml"),
    base!("subnet-discovery.yaml"),
    base!("rotation-22.yaml"),
    base!("seed-002-t3medium-24.yaml"),
    base!("from-snapshot.yaml"),
    base!("karpenter.yaml"),
    base!("karpenter-subnet-choice.yaml"),
    base!("cluster-autoscaler.yaml"),
    base!("no-scale-up.yaml"),
    base!("spot-interruptions.yaml"),
    base!("hpa-burst.yaml"),
    base!("compare-24-vs-22.yaml"),
    base!("compare-reservations.yaml"),
    base!("reservation-sizing.yaml"),
];

/// Values that broke or could break a parser or a conversion.
const NASTY: [&str; 28] = [
    "-1",
    "0",
    "1",
    "4294967295",
    "4294967296",
    "18446744073709551615",
    "18446744073709552",
    "1e400",
    "0.5",
    "\"\"",
    "~",
    "[",
    "]",
    "{a: b}",
    "[1, [2, [3]]]",
    "0.0.0.0/0",
    "10.0.0.0/33",
    "10.0.0.5/24",
    "10.0.0.0/28",
    "99999999999999999999d",
    "0ms",
    "1ms",
    "m5.larg",
    "t2.micro",
    "\"ünï\u{200b}cödé\"",
    "&a",
    "*a",
    "!!binary aGVsbG8=",
];

/// Cases per property: the CI default, or `FUZZ_CASES` for a longer
/// campaign (`FUZZ_CASES=20000 cargo test --test fuzz`).
fn cases(default: u32) -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Clone, Debug)]
enum Edit {
    DeleteLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    ReplaceValue(usize, usize),
    Indent(usize, u8),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<usize>().prop_map(Edit::DeleteLine),
        any::<usize>().prop_map(Edit::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        (any::<usize>(), 0..NASTY.len()).prop_map(|(a, v)| Edit::ReplaceValue(a, v)),
        (any::<usize>(), 0u8..6).prop_map(|(a, n)| Edit::Indent(a, n)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn mutate(base: &str, edits: &[Edit]) -> String {
    let mut lines: Vec<String> = base.lines().map(String::from).collect();
    for e in edits {
        if lines.is_empty() {
            break;
        }
        let n = lines.len();
        match *e {
            Edit::DeleteLine(i) => {
                lines.remove(i % n);
            }
            Edit::DuplicateLine(i) => {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
            }
            Edit::SwapLines(a, b) => lines.swap(a % n, b % n),
            Edit::ReplaceValue(i, v) => {
                let l = &mut lines[i % n];
                if let Some(p) = l.find(": ") {
                    l.truncate(p + 2);
                    l.push_str(NASTY[v]);
                } else {
                    l.push_str(NASTY[v]);
                }
            }
            Edit::Indent(i, k) => {
                let l = &mut lines[i % n];
                *l = format!("{}{}", " ".repeat(k as usize), l.trim_start());
            }
            Edit::Truncate(i) => {
                let l = &mut lines[i % n];
                let cut = i % (l.len() + 1);
                let cut = (0..=cut)
                    .rev()
                    .find(|&c| l.is_char_boundary(c))
                    .unwrap_or(0);
                l.truncate(cut);
            }
        }
    }
    lines.join("\n") + "\n"
}

/// Parses; if the scenario validates, runs it (at most 10 simulated
/// minutes) and checks the run's invariants.
fn check_scenario(text: &str) -> bool {
    check_scenario_at(text, "fuzz.yaml")
}

/// [`check_scenario`] for a text read from `path` (its relative files
/// resolve beside it).
fn check_scenario_at(text: &str, path: &str) -> bool {
    let Ok(mut sc) = scenario::parse(text, Path::new(path)) else {
        return false;
    };
    sc.duration = sc.duration.min(Ms::from_secs(600));
    sc.sample_every = sc.sample_every.min(sc.duration);
    sc.warmup = sc.warmup.min(sc.duration - Ms(1));
    assert!(scenario::check_timing(sc.duration, sc.sample_every, sc.warmup).is_empty());
    let r = Simulation::new(&sc, 1).run_into(&mut NullSink, &mut |_| {});
    assert_eq!(r.summary.simulated_duration, sc.duration);
    for s in &r.chart_samples {
        assert!(s.pods_running + s.pods_waiting_ip <= 10_000_000);
    }
    true
}

/// The mutations must leave many scenarios valid, or the property above
/// would seldom reach the simulation: with one edit, at least a third run.
#[test]
fn single_mutations_often_still_run() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut ran = 0;
    for i in 0..120 {
        let e = match rng.gen_range(0..4) {
            0 => Edit::DeleteLine(rng.gen()),
            1 => Edit::DuplicateLine(rng.gen()),
            2 => Edit::ReplaceValue(rng.gen(), rng.gen_range(0..NASTY.len())),
            _ => Edit::Indent(rng.gen(), rng.gen_range(0..6)),
        };
        let (path, text) = BASES[i % BASES.len()];
        if check_scenario_at(&mutate(text, &[e]), path) {
            ran += 1;
        }
    }
    assert!(ran >= 40, "only {ran} of 120 mutated scenarios ran");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(192), ..ProptestConfig::default() })]

    #[test]
    fn mutated_scenarios_never_panic(base in 0..BASES.len(), edits in prop::collection::vec(edit(), 1..6)) {
        let (path, text) = BASES[base];
        check_scenario_at(&mutate(text, &edits), path);
    }

    #[test]
    fn arbitrary_text_never_panics(text in "[ -~\n\t]{0,400}") {
        let _ = check_scenario(&text);
    }
}

const ENIS: &str = include_str!("../docs/examples/inspect/enis.json");
const SUBNETS: &str = include_str!("../docs/examples/inspect/subnets.json");
const RESERVATIONS: &str = include_str!("../docs/examples/inspect/reservations.json");

/// Replaces the `k`-th leaf of `v` (in document order) with `new`.
fn replace_leaf(v: &mut serde_json::Value, k: &mut usize, new: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Array(a) => a.iter_mut().any(|x| replace_leaf(x, k, new)),
        serde_json::Value::Object(o) => o.values_mut().any(|x| replace_leaf(x, k, new)),
        _ => {
            if *k == 0 {
                *v = new.clone();
                true
            } else {
                *k -= 1;
                false
            }
        }
    }
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        Just(serde_json::json!(null)),
        Just(serde_json::json!(true)),
        Just(serde_json::json!(-1)),
        Just(serde_json::json!(4294967296u64)),
        Just(serde_json::json!("")),
        Just(serde_json::json!("10.0.8.255")),
        Just(serde_json::json!("10.0.8.16/28")),
        Just(serde_json::json!("10.0.8.17/28")),
        Just(serde_json::json!("10.0.9.0/28")),
        Just(serde_json::json!("0.0.0.0/0")),
        Just(serde_json::json!("eni-00000000000000001")),
        Just(serde_json::json!([])),
        Just(serde_json::json!({})),
        "[ -~]{0,20}".prop_map(serde_json::Value::String),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256), ..ProptestConfig::default() })]

    #[test]
    fn mutated_inspect_json_never_panics(
        which in 0..3usize,
        edits in prop::collection::vec((any::<usize>(), json_value()), 1..5),
        raw_cut in prop::option::of(any::<usize>()),
    ) {
        let d = tempfile::tempdir().unwrap();
        let mut docs: Vec<String> = vec![ENIS.into(), SUBNETS.into(), RESERVATIONS.into()];
        let mut v: serde_json::Value = serde_json::from_str(&docs[which]).unwrap();
        for (k, new) in &edits {
            let leaves = count_leaves(&v).max(1);
            let mut k = k % leaves;
            replace_leaf(&mut v, &mut k, new);
        }
        let mut text = serde_json::to_string(&v).unwrap();
        if let Some(c) = raw_cut {
            let c = c % (text.len() + 1);
            text.truncate(c);
        }
        docs[which] = text;
        let names = ["enis.json", "subnets.json", "reservations.json"];
        for (n, t) in names.iter().zip(&docs) {
            std::fs::write(d.path().join(n), t).unwrap();
        }
        let (e, s, r) = (d.path().join(names[0]), d.path().join(names[1]), d.path().join(names[2]));
        if let Ok(ins) = inspect::load(SubnetSource::File(&s, None), &e, Some(&r)) {
            let rep = ins.report();
            let _ = inspect::render_text(&rep, ins.ec2.subnet(ins.subnet));
        }
        let cidr = "10.0.8.0/24".parse().unwrap();
        let _ = inspect::load(SubnetSource::Cidr(cidr, None), &e, None);
    }
}

fn count_leaves(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(a) => a.iter().map(count_leaves).sum(),
        serde_json::Value::Object(o) => o.values().map(count_leaves).sum(),
        _ => 1,
    }
}
