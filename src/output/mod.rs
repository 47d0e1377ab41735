//! Output of a run: `timeseries.csv`, `events.csv`, `summary.json`,
//! `final-state.json` (+ `final-subnets.json`), `free-ips.png` and
//! `subnet-map.png`.
//!
//! Written whole or not at all, as a set: an [`OutputSet`] takes an advisory
//! lock beside the target folder (a second run into the same folder fails at
//! once), writes every file into a fresh staging folder beside it (the two
//! CSVs streamed while the simulation runs, through a [`CsvSink`]), and then
//! swaps the staging folder into place in one step (`renameat2` with
//! `RENAME_EXCHANGE`), so readers see the old set or the new one, never a
//! mix. On any error the staging folder is removed; one left by a killed run
//! is removed by the next run into the same target.

pub mod charts;
pub mod compare;
pub mod sweep;

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::sim::observe::{
    subnet_id, write_secs, EventRow, RowSink, RunResult, SampleRow, WorkloadRow,
};
use crate::sim::write_node_name;

/// Why outputs could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The OS error is in the message, not a chained source (it would
    /// print twice).
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: io::Error },
    #[error("chart {path}: {message}")]
    Chart { path: PathBuf, message: String },
    #[error("{path}: another run is writing into this folder now (its lock is held); wait for it or choose another --out")]
    Busy { path: PathBuf },
    #[error("{path}: {message}")]
    Target { path: PathBuf, message: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> OutputError + '_ {
    move |error| OutputError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// The rendered bytes of the output files that are not streamed.
pub struct Rendered {
    pub files: Vec<(&'static str, Vec<u8>)>,
}

/// Streams `timeseries.csv` and `events.csv` rows as the run makes them,
/// names resolved as they are written. Keeps the first write error.
pub struct CsvSink<W: Write> {
    ts: csv::Writer<W>,
    ev: csv::Writer<W>,
    wl: csv::Writer<W>,
    subnets: Vec<String>,
    err: Option<csv::Error>,
    /// Reused text of an event row's time, node, count and until.
    fields: [String; 4],
}

impl<W: Write> CsvSink<W> {
    /// Writes the three headers; `subnets` names the subnets by index.
    pub fn new(ts: W, ev: W, wl: W, subnets: Vec<String>) -> Self {
        let mut b = csv::WriterBuilder::new();
        b.has_headers(false);
        let mut sink = CsvSink {
            ts: b.from_writer(ts),
            ev: b.from_writer(ev),
            wl: b.from_writer(wl),
            subnets,
            err: None,
            fields: Default::default(),
        };
        let r1 = sink.ts.write_record(TIMESERIES_COLUMNS);
        let r2 = sink.ev.write_record(EVENTS_COLUMNS);
        let r3 = sink.wl.write_record(WORKLOADS_COLUMNS);
        sink.keep(r1);
        sink.keep(r2);
        sink.keep(r3);
        sink
    }

    fn keep(&mut self, r: Result<(), csv::Error>) {
        if let (Err(e), None) = (r, &self.err) {
            self.err = Some(e);
        }
    }

    /// Flushes the three files; the first error met, if any.
    pub fn finish(mut self) -> Result<(W, W, W), csv::Error> {
        if let Some(e) = self.err.take() {
            return Err(e);
        }
        let ts = self
            .ts
            .into_inner()
            .map_err(|e| csv::Error::from(e.into_error()))?;
        let ev = self
            .ev
            .into_inner()
            .map_err(|e| csv::Error::from(e.into_error()))?;
        let wl = self
            .wl
            .into_inner()
            .map_err(|e| csv::Error::from(e.into_error()))?;
        Ok((ts, ev, wl))
    }
}

impl<W: Write> RowSink for CsvSink<W> {
    fn sample(&mut self, row: &SampleRow) {
        if self.err.is_none() {
            let r = self.ts.serialize(row);
            self.keep(r);
        }
    }

    fn event(&mut self, e: &EventRow) {
        if self.err.is_some() {
            return;
        }
        // Fields written as text into reused buffers (serde's tuple
        // serializer cost several thousand instructions a row; the bytes
        // are the same).
        let subnet = e.subnet.map_or("", |s| self.subnets[s as usize].as_str());
        let op = e.op.map_or("", |o| o.name());
        let [time, node, count, until] = &mut self.fields;
        time.clear();
        write_secs(time, e.time);
        node.clear();
        if let Some(n) = e.node {
            write_node_name(node, n);
        }
        count.clear();
        crate::sim::observe::push_decimal(count, e.count);
        until.clear();
        if let Some(u) = e.until {
            write_secs(until, u);
        }
        let r = self.ev.write_record([
            time.as_bytes(),
            e.kind.as_bytes(),
            subnet.as_bytes(),
            node.as_bytes(),
            op.as_bytes(),
            count.as_bytes(),
            until.as_bytes(),
            e.detail.as_bytes(),
        ]);
        self.keep(r);
    }

    fn workload(&mut self, row: &WorkloadRow) {
        if self.err.is_none() {
            let r = self.wl.serialize(row);
            self.keep(r);
        }
    }
}

/// The `timeseries.csv` columns, in order.
pub const TIMESERIES_COLUMNS: [&str; 26] = [
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
    "nodes_cordoned",
    "nodes_launched",
    "nodes_terminated",
    "spot_notices",
    "spot_interruptions",
    "consolidations",
    "scale_downs",
];

/// The `workloads.csv` columns, in order.
pub const WORKLOADS_COLUMNS: [&str; 7] = [
    "time_s",
    "workload",
    "desired",
    "running",
    "waiting_ip",
    "pending",
    "load",
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

/// Renders the outputs that are not streamed (JSON and charts) in memory.
pub fn render(r: &RunResult) -> Result<Rendered, OutputError> {
    let mut files = Vec::new();
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
    let (png, svg) = charts::free_ips(r)?;
    files.push(("free-ips.png", png));
    files.push(("free-ips.svg", svg));
    let (png, svg) = charts::subnet_map(r)?;
    files.push(("subnet-map.png", png));
    files.push(("subnet-map.svg", svg));
    Ok(Rendered { files })
}

/// Runs `scenario` with `seed`, streaming its CSVs into `set` (inside
/// folder `sub`, if given) and writing every other output there. The
/// wall-clock fields of `summary.json` are filled only with `wall_clock`.
pub fn run_into_set(
    set: &OutputSet,
    sub: Option<&str>,
    scenario: &crate::scenario::Scenario,
    seed: u64,
    wall_clock: bool,
    progress: &mut dyn FnMut(crate::time::Ms),
) -> Result<RunResult, OutputError> {
    let name = |f: &str| match sub {
        Some(d) => format!("{d}/{f}"),
        None => f.to_string(),
    };
    if let Some(d) = sub {
        set.dir(d)?;
    }
    let names = scenario
        .cluster
        .subnets
        .iter()
        .map(|s| s.name.clone())
        .collect();
    let mut sink = CsvSink::new(
        set.create(&name("timeseries.csv"))?,
        set.create(&name("events.csv"))?,
        set.create(&name("workloads.csv"))?,
        names,
    );
    let started = std::time::Instant::now();
    let mut result = crate::sim::Simulation::new(scenario, seed).run_into(&mut sink, progress);
    let wall = started.elapsed().as_secs_f64();
    let (mut ts, mut ev, mut wl) = sink.finish().map_err(|e| OutputError::Io {
        path: set.staging.join(name("timeseries.csv")),
        error: io::Error::other(e.to_string()),
    })?;
    for w in [&mut ts, &mut ev, &mut wl] {
        w.flush().map_err(io_err(&set.staging))?;
    }
    drop((ts, ev, wl));
    if wall_clock {
        result.summary.wall_time_s = Some((wall * 1000.0).round() / 1000.0);
        result.summary.events_per_second =
            Some((result.summary.events_processed as f64 / wall.max(1e-9)).round());
    }
    for (f, bytes) in &render(&result)?.files {
        set.write(&name(f), bytes)?;
    }
    Ok(result)
}

/// Test hook: `SUBNETSIM_FAULT=<stage>` aborts the process at that stage of
/// writing the set (`staged`: every file written, before the swap;
/// `swapped`: after the swap, before the old set is removed), to test that a
/// killed run leaves the target whole.
fn fault(stage: &str) {
    if std::env::var("SUBNETSIM_FAULT").is_ok_and(|v| v == stage) {
        std::process::abort();
    }
}

/// A run's output folder being written: see the module documentation.
pub struct OutputSet {
    target: PathBuf,
    staging: PathBuf,
    _lock: std::fs::File,
    committed: bool,
}

impl OutputSet {
    /// Takes the lock for `target` (failing at once if another run holds
    /// it), removes staging folders left by killed runs, and creates a fresh
    /// staging folder.
    pub fn begin(target: &Path) -> Result<Self, OutputError> {
        let name = target
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| !n.is_empty() && *n != "." && *n != "..")
            .ok_or_else(|| OutputError::Target {
                path: target.to_path_buf(),
                message: "names no folder (give a folder name, e.g. output/run1)".into(),
            })?
            .to_string();
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(io_err(&parent))?;
        if target.exists() && !target.is_dir() {
            return Err(OutputError::Target {
                path: target.to_path_buf(),
                message: "exists and is not a folder".into(),
            });
        }
        let lock_path = parent.join(format!(".{name}.lock"));
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(OutputError::Busy {
                    path: target.to_path_buf(),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err(&lock_path)(e)),
        }
        // We hold the lock: any staging folder of this target is a killed
        // run's.
        let prefix = format!(".{name}.staging-");
        if let Ok(entries) = std::fs::read_dir(&parent) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let staging = parent.join(format!("{prefix}{}", std::process::id()));
        std::fs::create_dir(&staging).map_err(io_err(&staging))?;
        Ok(OutputSet {
            target: target.to_path_buf(),
            staging,
            _lock: lock,
            committed: false,
        })
    }

    /// A folder inside the set (e.g. one per variant).
    pub fn dir(&self, name: &str) -> Result<(), OutputError> {
        let p = self.staging.join(name);
        std::fs::create_dir_all(&p).map_err(io_err(&p))
    }

    /// Creates one file of the set (buffered).
    pub fn create(&self, name: &str) -> Result<io::BufWriter<std::fs::File>, OutputError> {
        let p = self.staging.join(name);
        std::fs::File::create(&p)
            .map(|f| io::BufWriter::with_capacity(1 << 16, f))
            .map_err(io_err(&p))
    }

    /// Writes one whole file of the set.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<(), OutputError> {
        let p = self.staging.join(name);
        std::fs::write(&p, bytes).map_err(io_err(&p))
    }

    /// Swaps the staging folder into place in one step and removes the old
    /// set. Returns the files written.
    pub fn commit(mut self) -> Result<Vec<PathBuf>, OutputError> {
        fault("staged");
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.staging)
            .map_err(io_err(&self.staging))?
            .flatten()
            .map(|e| self.target.join(e.file_name()))
            .collect();
        names.sort();
        if self.target.exists() {
            use rustix::fs::{renameat_with, RenameFlags, CWD};
            match renameat_with(CWD, &self.staging, CWD, &self.target, RenameFlags::EXCHANGE) {
                Ok(()) => {}
                // A filesystem without RENAME_EXCHANGE: move the old set
                // aside, then the new one in (two steps).
                Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {
                    let aside = self.staging.with_extension("old");
                    std::fs::rename(&self.target, &aside).map_err(io_err(&self.target))?;
                    std::fs::rename(&self.staging, &self.target).map_err(io_err(&self.target))?;
                    std::fs::rename(&aside, &self.staging).map_err(io_err(&aside))?;
                }
                Err(e) => return Err(io_err(&self.target)(e.into())),
            }
            self.committed = true;
            fault("swapped");
            // The staging path now holds the old set.
            let _ = std::fs::remove_dir_all(&self.staging);
        } else {
            std::fs::rename(&self.staging, &self.target).map_err(io_err(&self.target))?;
            self.committed = true;
        }
        Ok(names)
    }
}

impl Drop for OutputSet {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.staging);
        }
    }
}
