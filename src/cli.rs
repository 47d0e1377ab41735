//! Command-line interface: raw arguments (clap) resolved into library calls.
//! `anyhow` lives here only; the library returns typed errors.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use subnetsim::catalog::{max_pods, Catalog, CatalogError, MaxPodsQuery};
use subnetsim::experiments::{self, expect, variants::SetOverride};
use subnetsim::inspect::{self, InspectError, SubnetSource};
use subnetsim::ipamd::steady::{steady_state, SteadyError};
use subnetsim::ipamd::CniConfig;
use subnetsim::output::{compare as cmp, run_into_set, OutputSet};
use subnetsim::scenario::{self, ScenarioError};
use subnetsim::time::Ms;

/// Simulate EKS cluster churn against VPC subnet /28 fragmentation.
#[derive(Parser, Debug)]
#[command(name = "subnetsim", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Recommended max pods for an instance type (the EKS max-pods calculator).
    MaxPods(MaxPodsArgs),
    /// List the instance catalogue.
    InstanceTypes(InstanceTypesArgs),
    /// Analyse a real subnet from AWS CLI output: counts, score, block map.
    Inspect(InspectArgs),
    /// One node's steady state: what a node with N pods takes from its subnet.
    Node(NodeArgs),
    /// Run a scenario: time series, event log, summary, charts.
    Run(RunArgs),
    /// Run every variant of a scenario with the same seed and compare them.
    Compare(CompareArgs),
    /// Run scenarios and check their `expect:` assertions (exit 1 if any fails).
    Check(CheckArgs),
    /// Run many seeds (times variants, times a parameter grid): failure probability and bands.
    Sweep(SweepArgs),
    /// Combine the outputs of sweep shards into those of one unsharded sweep.
    Merge(MergeArgs),
    /// Check a scenario without running it.
    Validate(ValidateArgs),
    /// Print the scenario file's JSON Schema (for editor completion).
    Schema,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Scenario file (YAML).
    file: PathBuf,
    /// Seed for every random stream (default: the scenario's `seed`).
    #[arg(long)]
    seed: Option<u64>,
    /// Output folder (default: output/<scenario name>/).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Simulated duration, overriding the scenario's (e.g. 30m, 2h).
    #[arg(long, value_name = "D", value_parser = parse_duration)]
    duration: Option<Ms>,
    /// No progress bar and no summary on stdout.
    #[arg(long, short)]
    quiet: bool,
    /// Write wall_time_s and events_per_second as null, so summary.json is
    /// byte-identical between runs too.
    #[arg(long)]
    no_wall_clock: bool,
    /// Run this variant of the scenario (default: the base).
    #[arg(long, value_name = "NAME")]
    variant: Option<String>,
    /// Override one field: PATH=VALUE, list elements by name (e.g.
    /// subnets.private-a.cidr=10.0.0.0/22). Repeatable.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    sets: Vec<String>,
}

#[derive(Args, Debug)]
struct CompareArgs {
    /// Scenario file (YAML) with `variants`.
    file: PathBuf,
    /// Seed for every variant (default: the scenario's `seed`).
    #[arg(long)]
    seed: Option<u64>,
    /// Output folder (default: output/<scenario name>-compare/).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Threads (default: all cores). Outputs do not depend on it.
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = jobs_arg)]
    jobs: usize,
    /// Override one field of every variant: PATH=VALUE. Repeatable.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    sets: Vec<String>,
    /// No table on stdout.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args, Debug)]
struct SweepArgs {
    /// Scenario file (YAML); every variant is swept.
    file: PathBuf,
    /// Seeds, as A..B (inclusive), e.g. 1..200.
    #[arg(long, value_name = "A..B")]
    seeds: String,
    /// A parameter axis: PATH=V1,V2,... or PATH=[V1, V2, ...] (YAML list).
    /// Repeatable: the grid is every combination.
    #[arg(long = "grid", value_name = "PATH=VALUES")]
    grid: Vec<String>,
    /// Threads (default: all cores). Results do not depend on it.
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = jobs_arg)]
    jobs: usize,
    /// Run slice K (0 to N-1) of N: K/N, or `auto` (the index from
    /// JOB_COMPLETION_INDEX or AWS_BATCH_JOB_ARRAY_INDEX; N from --shards).
    #[arg(long, value_name = "K/N|auto")]
    shard: Option<String>,
    /// N for --shard auto.
    #[arg(long, value_name = "N")]
    shards: Option<usize>,
    /// Sweep only these variants (repeatable; default: all, `base` first).
    #[arg(long = "variant", value_name = "NAME")]
    variants: Vec<String>,
    /// Also write every run's full outputs under runs/ (each run is then
    /// simulated a second time for them).
    #[arg(long)]
    keep_runs: bool,
    /// Output folder (default: output/<scenario name>-sweep/).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Override one field of every run: PATH=VALUE. Repeatable.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    sets: Vec<String>,
    /// No progress bar and no table on stdout.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args, Debug)]
struct MergeArgs {
    /// Output folders of `sweep --shard K/N`.
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// Output folder.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

#[derive(Args, Debug)]
struct CheckArgs {
    /// Scenario files (YAML) with `expect:`.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Seed for every run (default: each scenario's `seed`).
    #[arg(long)]
    seed: Option<u64>,
    /// Also write a JUnit XML report here.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Threads (default: all cores).
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = jobs_arg)]
    jobs: usize,
    /// Override one field of every run: PATH=VALUE. Repeatable.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    sets: Vec<String>,
}

#[derive(Args, Debug)]
struct ValidateArgs {
    /// Scenario file (YAML).
    file: PathBuf,
}

fn parse_duration(s: &str) -> Result<Ms, String> {
    match Ms::parse(s)? {
        Ms::ZERO => Err("must be more than 0".into()),
        d => Ok(d),
    }
}

/// The most threads `--jobs` takes: beyond any machine's cores, and far
/// below what would make creating them the run's cost.
const MAX_JOBS: usize = 1024;

fn jobs_arg(s: &str) -> Result<usize, String> {
    let n: usize = s
        .parse()
        .map_err(|_| format!("`{s}`: expected a number of threads, 0 for all cores"))?;
    if n > MAX_JOBS {
        return Err(format!("{n} threads: at most {MAX_JOBS} (0: all cores)"));
    }
    Ok(n)
}

#[derive(Args, Debug)]
struct NodeArgs {
    /// Instance type, e.g. m5.large.
    instance_type: String,
    /// Pods to schedule (one at a time, the pool settling after each).
    #[arg(long, value_name = "N")]
    pods: u32,
    /// Prefix delegation (the default).
    #[arg(long, conflicts_with = "secondary_ip")]
    prefix_delegation: bool,
    /// Secondary-IP mode (ENABLE_PREFIX_DELEGATION=false).
    #[arg(long)]
    secondary_ip: bool,
    /// WARM_PREFIX_TARGET (default 1, as in the shipped manifest).
    #[arg(long, value_name = "W")]
    warm_prefix_target: Option<u32>,
    /// WARM_IP_TARGET.
    #[arg(long, value_name = "X")]
    warm_ip_target: Option<u32>,
    /// MINIMUM_IP_TARGET.
    #[arg(long, value_name = "M")]
    minimum_ip_target: Option<u32>,
    /// WARM_ENI_TARGET (default 1; secondary-IP mode only).
    #[arg(long, value_name = "E")]
    warm_eni_target: Option<u32>,
    /// MAX_ENI.
    #[arg(long, value_name = "K")]
    max_eni: Option<u32>,
    /// Custom networking: pods on secondary ENIs in another subnet.
    #[arg(long)]
    custom_networking: bool,
    /// The kubelet's max pods (default: the max-pods calculator's answer).
    #[arg(long, value_name = "P")]
    max_pods: Option<u32>,
    /// Seed for EC2 placement and ipamd's random choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct MaxPodsArgs {
    /// Instance type, e.g. m5.large.
    instance_type: String,
    /// Prefix delegation (ENABLE_PREFIX_DELEGATION=true): the default, as
    /// for `node` and scenarios.
    #[arg(long, conflicts_with = "secondary_ip")]
    prefix_delegation: bool,
    /// Secondary-IP mode (ENABLE_PREFIX_DELEGATION=false).
    #[arg(long)]
    secondary_ip: bool,
    /// Custom networking (pods on secondary ENIs only: one ENI less).
    #[arg(long)]
    custom_networking: bool,
    /// The CNI's MAX_ENI.
    #[arg(long, value_name = "N")]
    max_eni: Option<u32>,
    /// vCPU count for the 110/250 cap (needed where the catalogue has none).
    #[arg(long, value_name = "N")]
    vcpus: Option<u32>,
    /// The formula's maximum, without the 110/250 cap.
    #[arg(long)]
    show_max_allowed: bool,
    /// Print the calculation as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct InstanceTypesArgs {
    /// Only this family (the part before the dot), e.g. m5.
    #[arg(long)]
    family: Option<String>,
    /// JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct InspectArgs {
    /// The subnet's CIDR (or give --subnet).
    #[arg(long, required_unless_present = "subnet", conflicts_with = "subnet")]
    cidr: Option<ipnet::Ipv4Net>,
    /// Output of `aws ec2 describe-subnets` (instead of --cidr).
    #[arg(long, value_name = "FILE")]
    subnet: Option<PathBuf>,
    /// Which subnet: picks it from a --subnet file listing several, and
    /// keeps only ENIs whose SubnetId matches.
    #[arg(long, value_name = "ID")]
    subnet_id: Option<String>,
    /// Output of `aws ec2 describe-network-interfaces --filters Name=subnet-id,Values=…`.
    #[arg(long, value_name = "FILE")]
    enis: PathBuf,
    /// Output of `aws ec2 get-subnet-cidr-reservations`.
    #[arg(long, value_name = "FILE")]
    reservations: Option<PathBuf>,
    /// JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// `println!` that returns an error (a closed pipe) instead of panicking.
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($t)*)?
    }};
}

/// `eprintln!` that never panics (a closed standard error is ignored).
macro_rules! errln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($t)*);
    }};
}

/// `print!` that returns an error instead of panicking.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($t)*)?
    }};
}

/// Whether the error is standard output closed early (`| head`): the
/// reader has what it wanted; exit quietly with 0.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .is_some_and(|j| j.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe))
    })
}

/// Errors that are the user's input, reported with exit code 2.
fn is_input_error(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<CatalogError>().is_some()
            || c.downcast_ref::<InspectError>().is_some()
            || c.downcast_ref::<SteadyError>().is_some()
            || c.downcast_ref::<ScenarioError>().is_some()
    })
}

pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    match run(cli) {
        Ok(()) => 0,
        Err(e) if is_broken_pipe(&e) => 0,
        Err(e) => {
            errln!("error: {e:#}");
            if is_input_error(&e) {
                2
            } else {
                1
            }
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::MaxPods(a) => cmd_max_pods(a),
        Command::InstanceTypes(a) => cmd_instance_types(a),
        Command::Inspect(a) => cmd_inspect(a),
        Command::Node(a) => cmd_node(a),
        Command::Run(a) => cmd_run(a),
        Command::Compare(a) => cmd_compare(a),
        Command::Check(a) => cmd_check(a),
        Command::Sweep(a) => cmd_sweep(a),
        Command::Merge(a) => cmd_merge(a),
        Command::Validate(a) => cmd_validate(a),
        Command::Schema => print_json(&subnetsim::scenario::json_schema()),
    }
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

fn cmd_max_pods(a: MaxPodsArgs) -> Result<()> {
    let t = Catalog::embedded().get(&a.instance_type)?;
    let q = MaxPodsQuery {
        prefix_delegation: !a.secondary_ip,
        custom_networking: a.custom_networking,
        max_eni: a.max_eni,
        vcpus: a.vcpus,
        show_max_allowed: a.show_max_allowed,
    };
    let r = max_pods(t, &q)?;
    if let Some(note) = &r.note {
        errln!("note: {note}");
    }
    if a.json {
        print_json(&r)
    } else {
        outln!("{}", r.max_pods);
        Ok(())
    }
}

fn cmd_instance_types(a: InstanceTypesArgs) -> Result<()> {
    let cat = Catalog::embedded();
    let rows: Vec<_> = cat
        .iter()
        .filter(|t| a.family.as_deref().is_none_or(|f| t.family() == f))
        .collect();
    if let Some(f) = &a.family {
        if rows.is_empty() {
            let families: std::collections::BTreeSet<&str> =
                cat.iter().map(|t| t.family()).collect();
            let nearest = subnetsim::catalog::nearest_names(f, families.into_iter(), 5);
            return Err(CatalogError::UnknownFamily {
                name: f.clone(),
                nearest,
            }
            .into());
        }
    }
    if a.json {
        return print_json(&rows);
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<22} {:>4} {:>7} {:>9} {:>6} {:>5} {:>9} {:>9} {:>9}",
        "instance_type",
        "enis",
        "ipv4/eni",
        "hypervisor",
        "metal",
        "vcpu",
        "mem_mib",
        "max_pods",
        "pd"
    )?;
    for t in rows {
        writeln!(
            out,
            "{:<22} {:>4} {:>7} {:>9} {:>6} {:>5} {:>9} {:>9} {:>9}",
            t.name,
            t.enis,
            t.ipv4_per_eni,
            format!("{:?}", t.hypervisor).to_lowercase(),
            t.bare_metal,
            t.vcpu.map_or("-".into(), |v| v.to_string()),
            t.memory_mib.map_or("-".into(), |v| v.to_string()),
            t.eni_max_pods(),
            if t.supports_prefix_delegation() {
                "yes"
            } else {
                "no"
            },
        )?;
    }
    Ok(())
}

fn cmd_inspect(a: InspectArgs) -> Result<()> {
    let source = match (&a.cidr, &a.subnet) {
        (Some(c), _) => SubnetSource::Cidr(*c, a.subnet_id.as_deref()),
        (None, Some(p)) => SubnetSource::File(p, a.subnet_id.as_deref()),
        (None, None) => unreachable!("clap requires one"),
    };
    let ins = inspect::load(source, &a.enis, a.reservations.as_deref())
        .with_context(|| "cannot inspect the subnet")?;
    let report = ins.report();
    if a.json {
        print_json(&report)
    } else {
        out!(
            "{}",
            inspect::render_text(&report, ins.ec2.subnet(ins.subnet))
        );
        Ok(())
    }
}

fn cmd_node(a: NodeArgs) -> Result<()> {
    let t = Catalog::embedded().get(&a.instance_type)?;
    let defaults = CniConfig::default();
    let cfg = CniConfig {
        prefix_delegation: !a.secondary_ip,
        warm_prefix_target: a.warm_prefix_target.unwrap_or(defaults.warm_prefix_target),
        warm_ip_target: a.warm_ip_target,
        minimum_ip_target: a.minimum_ip_target,
        warm_eni_target: a.warm_eni_target.unwrap_or(defaults.warm_eni_target),
        max_eni: a.max_eni,
        custom_networking: a.custom_networking,
        ..defaults
    };
    if let Some((field, msg)) = cfg.check().into_iter().next() {
        return Err(
            SteadyError::BadSetting(format!("--{}: {msg}", field.replace('_', "-"))).into(),
        );
    }
    let max_pods = match a.max_pods {
        Some(p) if p > scenario::MAX_MAX_PODS => {
            return Err(SteadyError::BadSetting(format!(
                "--max-pods: {p} is more than any kubelet runs; at most {}",
                scenario::MAX_MAX_PODS
            ))
            .into())
        }
        Some(p) => p,
        None => max_pods(t, &cfg.max_pods_query())?.max_pods,
    };
    let r = steady_state(t, &cfg, a.pods, max_pods, a.seed)?;
    for n in &r.notes {
        errln!("note: {n}");
    }
    if a.json {
        return print_json(&r);
    }
    outln!(
        "{} with {} pods ({}, max pods {})",
        r.instance_type,
        r.pods_running,
        r.mode.replace('_', " "),
        r.max_pods
    );
    outln!("  ENIs:               {}", r.enis);
    if r.mode == "prefix_delegation" {
        let per: Vec<String> = r.prefixes_per_eni.iter().map(u32::to_string).collect();
        outln!(
            "  prefixes:           {} (per ENI: {})",
            r.prefixes,
            per.join(", ")
        );
    } else {
        outln!("  secondary IPs:      {}", r.secondary_ips);
    }
    outln!("  subnet addresses:   {}", r.subnet_addresses);
    outln!("  unused pod IPs:     {}", r.unused_ips);
    Ok(())
}

fn cmd_validate(a: ValidateArgs) -> Result<()> {
    let sc = scenario::load(&a.file)?;
    for w in &sc.warnings {
        errln!("warning: {w}");
    }
    let c = &sc.cluster;
    outln!(
        "{}: ok ({}: {} subnet(s), {} node pool(s), {} workload(s), duration {}, seed {})",
        a.file.display(),
        sc.name,
        c.subnets.len(),
        c.pools.len(),
        c.workloads.len(),
        sc.duration,
        sc.seed
    );
    Ok(())
}

fn cmd_run(a: RunArgs) -> Result<()> {
    use std::io::IsTerminal;
    let sets = parse_sets(&a.sets)?;
    let study = experiments::load(&a.file, &sets)?;
    let mut sc = study
        .variant(a.variant.as_deref().unwrap_or("base"))?
        .scenario
        .clone();
    if let Some(d) = a.duration {
        sc.duration = d;
        if sc.sample_every > d {
            sc.sample_every = d;
        }
        // The file's checks hold for the override too.
        let problems: Vec<scenario::Problem> =
            scenario::check_timing(sc.duration, sc.sample_every, sc.warmup)
                .into_iter()
                .map(|(field, message)| scenario::Problem {
                    line: None,
                    column: None,
                    field: if field == "duration" {
                        "--duration".to_string()
                    } else {
                        format!("{field} (with --duration {d})")
                    },
                    message,
                })
                .collect();
        if !problems.is_empty() {
            return Err(ScenarioError {
                file: a.file.clone(),
                problems,
            }
            .into());
        }
    }
    let seed = a.seed.unwrap_or(sc.seed);
    for w in &sc.warnings {
        errln!("warning: {w}");
    }
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("output").join(&sc.name));
    let ctx = || format!("cannot write the outputs into {}", out.display());
    // The lock is taken before any work: a second run into the same folder
    // fails at once.
    let set = OutputSet::begin(&out).with_context(ctx)?;
    let started = std::time::Instant::now();
    let show = !a.quiet && std::io::stderr().is_terminal();
    let bar = progress_bar(sc.duration);
    let mut visible = false;
    let result = run_into_set(&set, None, &sc, seed, !a.no_wall_clock, &mut |t: Ms| {
        if show && !visible && started.elapsed() > std::time::Duration::from_millis(300) {
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            visible = true;
        }
        bar.set_position(t.as_millis());
    })
    .with_context(ctx)?;
    bar.finish_and_clear();
    let written = set.commit().with_context(ctx)?;
    if !a.quiet {
        let s = &result.summary;
        outln!(
            "{} (seed {}): {} simulated, {} events",
            s.scenario,
            s.seed,
            s.simulated_duration,
            s.events_processed
        );
        outln!(
            "  failures: {} InsufficientCidrBlocks, {} InsufficientFreeAddressesInSubnet, {} InvalidParameterValue",
            s.failures.insufficient_cidr_blocks,
            s.failures.insufficient_free_addresses,
            s.failures.invalid_parameter_value
        );
        if let Some(f) = &s.first_insufficient_cidr_blocks {
            outln!(
                "  first InsufficientCidrBlocks: {}s in {}",
                f.time_s,
                f.subnet
            );
        }
        for m in &s.min_delegatable_blocks {
            outln!(
                "  {}: min {} delegatable /28 blocks at {}s ({} free addresses then)",
                m.subnet,
                m.delegatable_blocks,
                m.time_s,
                m.free_ips_then
            );
        }
        outln!(
            "  peak pods waiting for an address: {}",
            s.peak_pods_waiting_ip.pods
        );
        outln!("wrote {} files to {}", written.len(), out.display());
    }
    Ok(())
}

fn parse_sets(raw: &[String]) -> Result<Vec<SetOverride>> {
    raw.iter()
        .map(|s| {
            experiments::variants::parse_set(s).map_err(|m| {
                ScenarioError {
                    file: PathBuf::from("--set"),
                    problems: vec![scenario::Problem {
                        line: None,
                        column: None,
                        field: String::new(),
                        message: m,
                    }],
                }
                .into()
            })
        })
        .collect()
}

fn progress_bar(duration: Ms) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(duration.as_millis()),
        indicatif::ProgressDrawTarget::hidden(),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} simulating [{bar:40}] {percent}% ({elapsed})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}

fn cmd_compare(a: CompareArgs) -> Result<()> {
    let sets = parse_sets(&a.sets)?;
    let study = experiments::load(&a.file, &sets)?;
    let seed = a.seed.unwrap_or(study.variants[0].scenario.seed);
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("output").join(format!("{}-compare", study.name)));
    let ctx = || format!("cannot write the outputs into {}", out.display());
    let set = OutputSet::begin(&out).with_context(ctx)?;
    // Every variant's full outputs in its own folder, byte-identical to
    // `run --variant NAME --no-wall-clock` with the same seed.
    let results = experiments::par_map(a.jobs, &study.variants, |v| {
        run_into_set(&set, Some(&v.name), &v.scenario, seed, false, &mut |_| {})
    });
    let mut runs = Vec::new();
    for (v, r) in study.variants.iter().zip(results) {
        runs.push((v.name.clone(), r.with_context(ctx)?));
    }
    let refs: Vec<(String, &subnetsim::sim::observe::RunResult)> =
        runs.iter().map(|(n, r)| (n.clone(), r)).collect();
    let rows = cmp::rows(&refs);
    let warmup = study.variants[0].scenario.warmup;
    let md = cmp::markdown(&study.name, seed, warmup, &rows);
    set.write("comparison.csv", &cmp::csv(&rows))
        .with_context(ctx)?;
    set.write("comparison.md", &md).with_context(ctx)?;
    let title = format!("{} (seed {seed})", study.name);
    for (name, chart) in [
        ("compare-blocks", cmp::blocks_chart(&title, &refs)?),
        ("compare-addresses", cmp::addresses_chart(&title, &refs)?),
        ("compare-maps", cmp::maps_chart(&title, &refs)?),
    ] {
        set.write(&format!("{name}.png"), &chart.0)
            .with_context(ctx)?;
        set.write(&format!("{name}.svg"), &chart.1)
            .with_context(ctx)?;
    }
    set.commit().with_context(ctx)?;
    if !a.quiet {
        out!("{}", String::from_utf8_lossy(&md));
        outln!(
            "wrote {} variants and the comparison to {}",
            runs.len(),
            out.display()
        );
    }
    Ok(())
}

/// JUnit XML escaping.
fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn cmd_check(a: CheckArgs) -> Result<()> {
    let sets = parse_sets(&a.sets)?;
    let studies = a
        .files
        .iter()
        .map(|f| experiments::load(f, &sets))
        .collect::<Result<Vec<_>, _>>()?;
    let jobs: Vec<(usize, usize)> = studies
        .iter()
        .enumerate()
        .flat_map(|(i, s)| (0..s.variants.len()).map(move |j| (i, j)))
        .collect();
    let results = experiments::par_map(a.jobs, &jobs, |&(i, j)| {
        let v = &studies[i].variants[j];
        let seed = a.seed.unwrap_or(v.scenario.seed);
        let r = subnetsim::sim::Simulation::new(&v.scenario, seed)
            .run_into(&mut subnetsim::sim::observe::NullSink, &mut |_| {});
        let mut checks = expect::evaluate(&v.scenario.expect, &r.summary);
        if let Some((n, _)) = v.scenario.expect.sweep {
            // Seeds from the run's seed on, one after another.
            let failing = (0..u64::from(n))
                .filter(|k| {
                    let r = subnetsim::sim::Simulation::new(&v.scenario, seed.wrapping_add(*k))
                        .run_into(&mut subnetsim::sim::observe::NullSink, &mut |_| {});
                    r.summary.failures.insufficient_cidr_blocks > 0
                })
                .count() as u64;
            checks.extend(expect::evaluate_sweep(
                &v.scenario.expect,
                failing,
                u64::from(n),
            ));
        }
        checks
    });
    let (mut pass, mut fail, mut none) = (0, 0, 0);
    let mut junit = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n");
    outln!(
        "{:<32} {:<16} {:<36} {:<22} {:<26} result",
        "scenario",
        "variant",
        "assertion",
        "expected",
        "got"
    );
    let mut k = 0;
    for st in &studies {
        let file = st.file.display().to_string();
        let mut cases = String::new();
        let (mut n, mut f) = (0, 0);
        for v in &st.variants {
            let checks = &results[k];
            k += 1;
            if checks.is_empty() {
                none += 1;
                outln!(
                    "{:<32} {:<16} {:<36} {:<22} {:<26} -",
                    file,
                    v.name,
                    "(no expect:)",
                    "",
                    ""
                );
                continue;
            }
            for c in checks {
                n += 1;
                let verdict = if c.pass { "pass" } else { "FAIL" };
                outln!(
                    "{:<32} {:<16} {:<36} {:<22} {:<26} {verdict}",
                    file,
                    v.name,
                    c.assertion,
                    c.expected,
                    c.got
                );
                cases.push_str(&format!(
                    "    <testcase classname=\"{}.{}\" name=\"{}\">",
                    xml(&st.name),
                    xml(&v.name),
                    xml(&c.assertion)
                ));
                if c.pass {
                    pass += 1;
                } else {
                    fail += 1;
                    f += 1;
                    cases.push_str(&format!(
                        "<failure message=\"expected {}, got {}\"/>",
                        xml(&c.expected),
                        xml(&c.got)
                    ));
                }
                cases.push_str("</testcase>\n");
            }
        }
        junit.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{n}\" failures=\"{f}\">\n{cases}  </testsuite>\n",
            xml(&file)
        ));
    }
    junit.push_str("</testsuites>\n");
    outln!("{pass} passed, {fail} failed");
    if none > 0 {
        errln!("note: {none} run(s) have no expect: assertions");
    }
    if let Some(path) = &a.junit {
        std::fs::write(path, junit).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if fail > 0 {
        return Err(ChecksFailed(fail).into());
    }
    Ok(())
}

/// `check` found failed assertions: exit 1 after the table.
#[derive(Debug, thiserror::Error)]
#[error("{0} expectation(s) failed")]
struct ChecksFailed(usize);

/// A usage problem with a sweep's or merge's arguments or inputs (exit 2).
fn input_error(file: &std::path::Path, field: &str, message: String) -> anyhow::Error {
    ScenarioError {
        file: file.to_path_buf(),
        problems: vec![scenario::Problem {
            line: None,
            column: None,
            field: field.to_string(),
            message,
        }],
    }
    .into()
}

/// FNV-1a over the parts that define a sweep's results.
fn sweep_key(parts: &[&str]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain([0u8]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

fn sample_times(sc: &scenario::Scenario) -> Vec<u64> {
    let (d, e) = (sc.duration.as_millis(), sc.sample_every.as_millis());
    let mut t: Vec<u64> = (0..).map(|k| k * e).take_while(|&x| x < d).collect();
    t.push(d);
    t
}

fn cmd_sweep(a: SweepArgs) -> Result<()> {
    use std::io::IsTerminal;
    use subnetsim::experiments::sweep;
    use subnetsim::output::sweep::{GroupInfo, Manifest};
    let sets = parse_sets(&a.sets)?;
    let mut study = experiments::load(&a.file, &sets)?;
    if !a.variants.is_empty() {
        for v in &a.variants {
            study.variant(v)?;
        }
        study.variants.retain(|v| a.variants.contains(&v.name));
    }
    let seeds = sweep::parse_seeds(&a.seeds).map_err(|m| input_error(&a.file, "--seeds", m))?;
    let axes = a
        .grid
        .iter()
        .map(|g| sweep::parse_axis(g))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|m| input_error(&a.file, "--grid", m))?;
    let groups = sweep::groups(&study, &axes)?;
    let (k, n) = match &a.shard {
        None => (0, 1),
        Some(s) => {
            sweep::parse_shard(s, a.shards).map_err(|m| input_error(&a.file, "--shard", m))?
        }
    };
    let seeds_text: Vec<String> = seeds.iter().map(u64::to_string).collect();
    let mut key_parts: Vec<&str> = vec![&study.text];
    key_parts.extend(a.sets.iter().map(String::as_str));
    key_parts.push("--variant");
    key_parts.extend(a.variants.iter().map(String::as_str));
    key_parts.push("--grid");
    key_parts.extend(a.grid.iter().map(String::as_str));
    key_parts.push("--seeds");
    key_parts.extend(seeds_text.iter().map(String::as_str));
    let manifest = Manifest {
        scenario: study.name.clone(),
        key: sweep_key(&key_parts),
        seeds: seeds.clone(),
        grid: axes.iter().map(|x| x.path.clone()).collect(),
        groups: groups
            .iter()
            .map(|g| GroupInfo {
                variant: g.variant.clone(),
                point: g.point.clone(),
                subtitle: subnetsim::sim::observe::subtitle(&g.scenario.cluster),
                warmup_ms: g.scenario.warmup.as_millis(),
                times_ms: sample_times(&g.scenario),
            })
            .collect(),
        shard: [k, n],
    };
    let items = sweep::shard_items(manifest.total(), k, n);
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("output").join(format!("{}-sweep", study.name)));
    let ctx = || format!("cannot write the outputs into {}", out.display());
    let set = OutputSet::begin(&out).with_context(ctx)?;
    let show = !a.quiet && std::io::stderr().is_terminal();
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(items.len() as u64),
        if show {
            indicatif::ProgressDrawTarget::stderr()
        } else {
            indicatif::ProgressDrawTarget::hidden()
        },
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} sweeping [{bar:40}] {pos}/{len} runs (ETA {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let records = experiments::par_map(a.jobs, &items, |&i| {
        let r = sweep::run_one(&groups, &seeds, i);
        bar.inc(1);
        r
    });
    bar.finish_and_clear();
    if a.keep_runs {
        let kept = experiments::par_map(a.jobs, &items, |&i| {
            let (g, s) = (i / seeds.len(), i % seeds.len());
            let dir = format!("runs/{}/{}/seed-{}", groups[g].variant, g, seeds[s]);
            run_into_set(
                &set,
                Some(&dir),
                &groups[g].scenario,
                seeds[s],
                false,
                &mut |_| {},
            )
            .map(|_| ())
        });
        for r in kept {
            r.with_context(ctx)?;
        }
    }
    if n > 1 {
        set.write("shard.json", &serde_json::to_vec_pretty(&manifest)?)
            .with_context(ctx)?;
        set.write("records.json", &serde_json::to_vec(&records)?)
            .with_context(ctx)?;
        set.commit().with_context(ctx)?;
        if !a.quiet {
            outln!(
                "shard {k}/{n}: {} runs written to {}; combine the shards with `subnetsim merge`",
                records.len(),
                out.display()
            );
        }
        return Ok(());
    }
    finish_sweep(&set, &manifest, &records, a.quiet).with_context(ctx)?;
    set.commit().with_context(ctx)?;
    if !a.quiet {
        outln!("wrote {}", out.display());
    }
    Ok(())
}

/// The outputs of a whole sweep, and its table on stdout.
fn finish_sweep(
    set: &OutputSet,
    m: &subnetsim::output::sweep::Manifest,
    records: &[subnetsim::experiments::sweep::RunRecord],
    quiet: bool,
) -> Result<()> {
    let mut whole = m.clone();
    whole.shard = [0, 1];
    set.write("sweep.json", &serde_json::to_vec_pretty(&whole)?)?;
    let stats = subnetsim::output::sweep::write_results(set, &whole, records)?;
    if !quiet {
        outln!(
            "{:<20} {:<40} {:>6} {:>8} {:>8}  95% interval",
            "variant",
            "grid point",
            "runs",
            "failing",
            "P"
        );
        for (g, st) in m.groups.iter().zip(&stats) {
            outln!(
                "{:<20} {:<40} {:>6} {:>8} {:>7.1}%  {:.1}% to {:.1}%",
                g.variant,
                if g.point.is_empty() {
                    "-".to_string()
                } else {
                    g.point.join(", ")
                },
                st.runs,
                st.failing,
                st.p * 100.0,
                st.p_low * 100.0,
                st.p_high * 100.0
            );
        }
    }
    Ok(())
}

fn cmd_merge(a: MergeArgs) -> Result<()> {
    use subnetsim::experiments::sweep::RunRecord;
    use subnetsim::output::sweep::Manifest;
    let mut first: Option<Manifest> = None;
    let mut seen = std::collections::BTreeSet::new();
    let mut records: Vec<RunRecord> = Vec::new();
    for d in &a.dirs {
        let read = |f: &str| -> Result<Vec<u8>> {
            std::fs::read(d.join(f)).map_err(|e| {
                input_error(&d.join(f), "", format!("not a sweep shard's output: {e}"))
            })
        };
        let m: Manifest = serde_json::from_slice(&read("shard.json")?)
            .map_err(|e| input_error(&d.join("shard.json"), "", e.to_string()))?;
        let rs: Vec<RunRecord> = serde_json::from_slice(&read("records.json")?)
            .map_err(|e| input_error(&d.join("records.json"), "", e.to_string()))?;
        if let Some(f) = &first {
            if f.key != m.key
                || f.shard[1] != m.shard[1]
                || f.groups != m.groups
                || f.seeds != m.seeds
            {
                return Err(input_error(
                    d,
                    "shard.json",
                    format!(
                        "a shard of another sweep (scenario, settings, seeds, grid or shard count differ from {})",
                        a.dirs[0].display()
                    ),
                ));
            }
        }
        if !seen.insert(m.shard[0]) {
            return Err(input_error(
                d,
                "shard.json",
                format!("shard {} given twice", m.shard[0]),
            ));
        }
        records.extend(rs);
        first.get_or_insert(m);
    }
    let m = first.expect("at least one folder");
    let n = m.shard[1];
    let missing: Vec<usize> = (0..n).filter(|k| !seen.contains(k)).collect();
    if !missing.is_empty() {
        return Err(input_error(
            &a.dirs[0],
            "shard.json",
            format!("missing shards {missing:?} of {n}"),
        ));
    }
    records.sort_by_key(|r| r.index);
    if records.len() != m.total() || records.iter().enumerate().any(|(i, r)| r.index != i) {
        return Err(input_error(
            &a.dirs[0],
            "records.json",
            "the shards do not hold every run exactly once".into(),
        ));
    }
    let ctx = || format!("cannot write the outputs into {}", a.out.display());
    let set = OutputSet::begin(&a.out).with_context(ctx)?;
    finish_sweep(&set, &m, &records, false).with_context(ctx)?;
    set.commit().with_context(ctx)?;
    outln!(
        "merged {n} shards ({} runs) into {}",
        records.len(),
        a.out.display()
    );
    Ok(())
}
