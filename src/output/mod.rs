//! Output of a run: `timeseries.csv`, `events.csv`, `summary.json`,
//! `final-state.json` (+ `final-subnets.json`), `free-ips.png` and
//! `subnet-map.png`. All files are rendered first and written whole: each to
//! a temporary name in the output folder, then renamed into place, so a
//! failed run leaves either the previous outputs or complete new ones.

pub mod charts;

use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::sim::node_name;
use crate::sim::observe::{secs_text, subnet_id, RunResult};

/// Why outputs could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("chart {path}: {message}")]
    Chart { path: PathBuf, message: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> OutputError + '_ {
    move |source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The rendered bytes of every output file.
pub struct Rendered {
    pub files: Vec<(&'static str, Vec<u8>)>,
}

fn csv_bytes<T: Serialize>(rows: impl IntoIterator<Item = T>, header_if_empty: &[&str]) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut any = false;
    for r in rows {
        w.serialize(r).expect("CSV into memory");
        any = true;
    }
    if !any {
        w.write_record(header_if_empty).expect("CSV into memory");
    }
    w.into_inner().expect("CSV into memory")
}

/// The `timeseries.csv` columns, in order.
pub const TIMESERIES_COLUMNS: [&str; 19] = [
    "time_s",
    "subnet",
    "cidr",
    "free_ips",
    "delegatable_blocks",
    "free_blocks",
    "fragmented_blocks",
    "full_blocks",
    "prefix_allocated_blocks",
    "fragmentation_score",
    "nodes",
    "nodes_ready",
    "nodes_ready_empty_pool",
    "pods_running",
    "pods_waiting_ip",
    "pods_pending",
    "insufficient_cidr_blocks",
    "insufficient_free_addresses",
    "invalid_parameter_value",
];

/// The `events.csv` columns, in order.
pub const EVENTS_COLUMNS: [&str; 8] = [
    "time_s",
    "kind",
    "subnet",
    "node",
    "operation",
    "count",
    "until_s",
    "detail",
];

#[derive(Serialize)]
struct DescribeSubnets {
    #[serde(rename = "Subnets")]
    subnets: Vec<SubnetOut>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SubnetOut {
    subnet_id: String,
    cidr_block: String,
    availability_zone: String,
    available_ip_address_count: u32,
    tags: Vec<Tag>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Tag {
    key: String,
    value: String,
}

fn json_bytes<T: Serialize>(v: &T) -> Vec<u8> {
    let mut b = serde_json::to_vec_pretty(v).expect("JSON into memory");
    b.push(b'\n');
    b
}

/// Renders every output of a run in memory.
pub fn render(r: &RunResult) -> Result<Rendered, OutputError> {
    let mut files = Vec::new();
    files.push(("timeseries.csv", csv_bytes(&r.samples, &TIMESERIES_COLUMNS)));
    let events = r.events.iter().map(|e| {
        let subnet = e.subnet.map_or("", |s| r.subnets[s as usize].name.as_str());
        let node = e.node.map(node_name).unwrap_or_default();
        let op = e.op.map_or("", |o| o.name());
        let until = e.until.map(secs_text).unwrap_or_default();
        (
            secs_text(e.time),
            e.kind,
            subnet,
            node,
            op,
            e.count,
            until,
            &e.detail,
        )
    });
    let mut ev = csv::Writer::from_writer(Vec::new());
    ev.write_record(EVENTS_COLUMNS).expect("CSV into memory");
    for row in events {
        ev.serialize(row).expect("CSV into memory");
    }
    files.push(("events.csv", ev.into_inner().expect("CSV into memory")));
    files.push(("summary.json", json_bytes(&r.summary)));
    files.push(("final-state.json", json_bytes(&r.final_enis)));
    let subnets = DescribeSubnets {
        subnets: r
            .subnets
            .iter()
            .zip(&r.end)
            .map(|(s, e)| SubnetOut {
                subnet_id: subnet_id(&s.name),
                cidr_block: s.cidr.clone(),
                availability_zone: s.zone.clone(),
                available_ip_address_count: e.free_ips,
                tags: vec![Tag {
                    key: "Name".into(),
                    value: s.name.clone(),
                }],
            })
            .collect(),
    };
    files.push(("final-subnets.json", json_bytes(&subnets)));
    files.push(("free-ips.png", charts::free_ips_png(r)?));
    files.push(("subnet-map.png", charts::subnet_map_png(r)?));
    Ok(Rendered { files })
}

/// Writes rendered files into `dir` (created if missing): every file to a
/// temporary name first, then all renamed into place.
pub fn write_all(dir: &Path, rendered: &Rendered) -> Result<Vec<PathBuf>, OutputError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut temps = Vec::new();
    let cleanup = |temps: &[(PathBuf, PathBuf)]| {
        for (t, _) in temps {
            let _ = std::fs::remove_file(t);
        }
    };
    for (name, bytes) in &rendered.files {
        let tmp = dir.join(format!(".{name}.tmp"));
        let fin = dir.join(name);
        if let Err(e) = std::fs::write(&tmp, bytes) {
            cleanup(&temps);
            let _ = std::fs::remove_file(&tmp);
            return Err(io_err(&tmp)(e));
        }
        temps.push((tmp, fin));
    }
    let mut written = Vec::new();
    for (tmp, fin) in &temps {
        std::fs::rename(tmp, fin).map_err(io_err(fin))?;
        written.push(fin.clone());
    }
    Ok(written)
}
