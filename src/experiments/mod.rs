//! Layer above the simulation: many runs of one scenario. A [`Study`] is a
//! scenario's base and its `variants`, each validated like a scenario, with
//! `--set` overrides applied; [`par_map`] runs them on a thread pool and
//! returns the results in variant order, so outputs do not depend on the
//! number of threads; [`expect`] checks a run's results against the
//! scenario's `expect:`. The simulation knows nothing of this layer.
//!
//! Common random numbers: every variant runs with the same seed, and every
//! random source is its own named stream (`engine::stream`), so a variant
//! that changes a subnet's CIDR, a reservation or a CNI setting does not
//! shift the draws of the others: the same consumers churn at the same
//! times, the same nodes launch with the same boot times, the same
//! workloads start. Only what the variant changes — and its consequences —
//! differ.

pub mod expect;
pub mod sweep;
pub mod variants;

use std::path::{Path, PathBuf};

use serde_yaml::Value;

use crate::scenario::{self, locate::Path as YPath, Problem, Scenario, ScenarioError};
use variants::{apply_set, merge, SetOverride};

/// One member of a study.
#[derive(Clone, Debug)]
pub struct Variant {
    /// `base`, or the variant's name.
    pub name: String,
    pub scenario: Scenario,
    /// The scenario as a YAML value (variant merged, `--set` applied), for
    /// further overrides (a sweep's grid points).
    pub value: Value,
    /// The variant's line in the file (for problems of derived scenarios).
    pub line: Option<usize>,
}

/// A scenario file's base and variants, in file order (base first).
#[derive(Clone, Debug)]
pub struct Study {
    pub file: PathBuf,
    pub name: String,
    pub variants: Vec<Variant>,
    /// The file's text (problems of derived scenarios are located in it).
    pub text: String,
}

impl Study {
    /// The variant called `name`, or an error listing the valid names.
    pub fn variant(&self, name: &str) -> Result<&Variant, ScenarioError> {
        self.variants
            .iter()
            .find(|v| v.name == name)
            .ok_or_else(|| {
                let names: Vec<&str> = self.variants.iter().map(|v| v.name.as_str()).collect();
                problem(
                    &self.file,
                    None,
                    "--variant",
                    format!("no variant named `{name}`; valid: {}", names.join(", ")),
                )
            })
    }
}

fn problem(file: &Path, line: Option<usize>, field: &str, message: String) -> ScenarioError {
    ScenarioError {
        file: file.to_path_buf(),
        problems: vec![Problem {
            line,
            column: None,
            field: field.to_string(),
            message,
        }],
    }
}

/// Loads a scenario file with its variants, applying `sets` to each.
pub fn load(path: &Path, sets: &[SetOverride]) -> Result<Study, ScenarioError> {
    if let Some(s) = sets.iter().find(|s| s.path[0] == "variants") {
        return Err(problem(
            path,
            None,
            "--set",
            format!(
                "{}: variants cannot be set from the command line; choose them with --variant NAME",
                s.text
            ),
        ));
    }
    let text = scenario::read_text(path)?;
    // The base as written: every problem with its exact position.
    let base = scenario::parse(&text, path)?;
    let mut root: Value = serde_yaml::from_str(&text)
        .map_err(|e| problem(path, None, "", format!("not YAML: {e}")))?;
    let raw_variants = match root.as_mapping_mut().and_then(|m| m.remove("variants")) {
        Some(Value::Sequence(v)) => v,
        Some(Value::Null) | None => Vec::new(),
        Some(_) => return Err(problem(path, None, "variants", "must be a list".into())),
    };
    let with_sets = |mut v: Value, label: &str, line: Option<usize>| {
        for s in sets {
            apply_set(&mut v, s).map_err(|m| problem(path, None, "--set", m))?;
        }
        let sc = scenario::from_value(v.clone(), &text, path, label, line)?;
        Ok::<_, ScenarioError>((sc, v))
    };
    // The base with the first `k` overrides; the scenario's problems
    // labelled `label` (an override's own problem names it already).
    let base_with = |k: usize, label: &str| {
        let mut v = root.clone();
        for s in &sets[..k] {
            apply_set(&mut v, s).map_err(|m| problem(path, None, "--set", m))?;
        }
        let sc = scenario::from_value(v.clone(), &text, path, label, None)?;
        Ok::<_, ScenarioError>((sc, v))
    };
    let (base, base_value) = if sets.is_empty() {
        (base, root.clone())
    } else {
        base_with(sets.len(), "--set").map_err(|e| {
            // Name the override at fault: the first whose addition makes
            // the scenario invalid (serde's type errors carry no path).
            let culprit = (1..=sets.len()).find(|&k| base_with(k, "--set").is_err());
            match culprit {
                Some(k) => base_with(k, &format!("--set {}", sets[k - 1].text))
                    .err()
                    .unwrap_or(e),
                None => e,
            }
        })?
    };
    let name = base.name.clone();
    let mut out = vec![Variant {
        name: "base".into(),
        scenario: base,
        value: base_value,
        line: None,
    }];
    for (i, raw) in raw_variants.into_iter().enumerate() {
        let line = scenario::line_of(&text, &YPath::default().key("variants").index(i));
        let field = format!("variants[{i}]");
        let Value::Mapping(mut m) = raw else {
            return Err(problem(
                path,
                line,
                &field,
                "must be a map with a `name`".into(),
            ));
        };
        let vname = match m.remove("name") {
            Some(Value::String(s)) => s,
            _ => {
                return Err(problem(
                    path,
                    line,
                    &format!("{field}.name"),
                    "every variant needs a `name`".into(),
                ))
            }
        };
        if !scenario::is_identifier(&vname) || vname == "base" {
            return Err(problem(
                path,
                line,
                &format!("{field}.name"),
                format!("`{vname}`: variant names are identifiers (letters, digits, `-`, `_`, `.`), not `base`; they become folder names"),
            ));
        }
        if out.iter().any(|v| v.name == vname) {
            return Err(problem(
                path,
                line,
                &format!("{field}.name"),
                format!("`{vname}` is already a variant"),
            ));
        }
        if m.contains_key("name") || m.contains_key("variants") {
            return Err(problem(
                path,
                line,
                &field,
                "a variant cannot set `variants`".into(),
            ));
        }
        let mut v = root.clone();
        merge(&mut v, &Value::Mapping(m));
        let (mut sc, value) = with_sets(v, &format!("variant `{vname}`"), line)?;
        sc.name = format!("{name}/{vname}");
        out.push(Variant {
            name: vname,
            scenario: sc,
            value,
            line,
        });
    }
    Ok(Study {
        file: path.to_path_buf(),
        name,
        variants: out,
        text,
    })
}

/// Maps `f` over `items` on `jobs` threads (0: all cores), results in input
/// order whatever the thread count.
pub fn par_map<T, R, F>(jobs: usize, items: &[T], f: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Sync + Send,
{
    use rayon::prelude::*;
    // No more threads than items; 0 is rayon's default (all cores).
    let threads = if jobs == 0 {
        0
    } else {
        jobs.min(items.len().max(1))
    };
    match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
        Ok(pool) => pool.install(|| items.par_iter().map(&f).collect()),
        // The system refused the threads: the same results, one by one
        // (they do not depend on the thread count).
        Err(_) => items.iter().map(&f).collect(),
    }
}
