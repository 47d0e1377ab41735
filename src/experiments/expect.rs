//! `expect:` checked against a run's summary (after warm-up).

use serde::Serialize;

use crate::scenario::Expect;
use crate::sim::observe::Summary;

/// One assertion's outcome.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Check {
    pub assertion: String,
    pub expected: String,
    pub got: String,
    pub pass: bool,
}

/// Seconds as `h:mm:ss` (whole seconds), or `45s` under a minute.
fn secs(s: f64) -> String {
    let t = s.round() as u64;
    if t < 60 {
        format!("{t}s")
    } else {
        format!("{}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60)
    }
}

/// The sweep assertion against `failing` of `runs` runs.
pub fn evaluate_sweep(e: &Expect, failing: u64, runs: u64) -> Option<Check> {
    let (seeds, max) = e.sweep?;
    let p = failing as f64 / runs.max(1) as f64;
    let (lo, hi) = crate::experiments::sweep::wilson(failing, runs);
    Some(Check {
        assertion: format!("sweep: P(InsufficientCidrBlocks) over {seeds} seeds"),
        expected: format!("<= {:.2}%", max * 100.0),
        got: format!(
            "{:.2}% ({failing} of {runs} runs failed; 95%: {:.2}-{:.2}%)",
            p * 100.0,
            lo * 100.0,
            hi * 100.0
        ),
        pass: p <= max,
    })
}

/// Every assertion of `e` against `s`, in the order of the reference.
pub fn evaluate(e: &Expect, s: &Summary) -> Vec<Check> {
    let mut out = Vec::new();
    let mut push = |assertion: String, expected: String, got: String, pass: bool| {
        out.push(Check {
            assertion,
            expected,
            got,
            pass,
        })
    };
    if let Some(max) = e.max_insufficient_cidr_blocks {
        let got = s.failures.insufficient_cidr_blocks;
        push(
            "max_insufficient_cidr_blocks".into(),
            format!("<= {max}"),
            got.to_string(),
            got <= max,
        );
    }
    for (i, min) in e.min_delegatable_blocks.iter().enumerate() {
        if let (Some(min), Some(m)) = (min, s.min_delegatable_blocks.get(i)) {
            push(
                format!("min_delegatable_blocks ({})", m.subnet),
                format!(">= {min}"),
                format!("{} at {}", m.delegatable_blocks, secs(m.time_s)),
                m.delegatable_blocks >= *min,
            );
        }
    }
    if let Some(t) = e.no_failure_before {
        let got = s.first_failure_s;
        push(
            "no_failure_before".into(),
            format!("none before {t}"),
            got.map_or("no failure".into(), |g| format!("first at {}", secs(g))),
            got.is_none_or(|g| g >= t.as_secs_f64()),
        );
    }
    if let Some(max) = e.max_pods_waiting_ip {
        let got = s.peak_pods_waiting_ip.pods;
        push(
            "max_pods_waiting_ip".into(),
            format!("<= {max}"),
            got.to_string(),
            got <= max,
        );
    }
    if let Some(max) = e.max_pod_wait_time {
        let got = s.pod_wait_time_s;
        push(
            "max_pod_wait_time".into(),
            format!("<= {max}"),
            secs(got),
            got <= max.as_secs_f64(),
        );
    }
    if let Some(max) = e.nodes_ready_within {
        let got = s.max_node_ready_s;
        push(
            "nodes_ready_within".into(),
            format!("<= {max}"),
            got.map_or("no node launched".into(), secs),
            got.is_none_or(|g| g <= max.as_secs_f64()),
        );
    }
    out
}
