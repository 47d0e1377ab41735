//! Helpers shared by the integration tests: the crate root, running the
//! binary there, and reading a CSV into maps by column name.
#![allow(dead_code)] // each test crate uses some of them

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The binary, run in the crate root.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_subnetsim"));
    c.current_dir(root());
    c
}

pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("the binary runs")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A CSV's rows as maps from column name to value.
pub fn csv_rows(p: &Path) -> Vec<BTreeMap<String, String>> {
    let mut r = csv::Reader::from_path(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let h = r.headers().unwrap().clone();
    r.records()
        .map(|x| {
            let x = x.unwrap();
            h.iter()
                .map(String::from)
                .zip(x.iter().map(String::from))
                .collect()
        })
        .collect()
}

/// Runs a scenario file into `out` (quiet, no wall clock), asserting
/// success.
pub fn run_to(file: &Path, out: &Path, extra: &[&str]) {
    let mut args = vec![
        "run",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
        "--no-wall-clock",
    ];
    args.extend_from_slice(extra);
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
}
