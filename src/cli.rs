//! Command-line interface: raw arguments (clap) resolved into library calls.
//! `anyhow` lives here only; the library returns typed errors.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use subnetsim::catalog::{max_pods, Catalog, CatalogError, MaxPodsQuery};
use subnetsim::inspect::{self, InspectError, SubnetSource};
use subnetsim::ipamd::steady::{steady_state, SteadyError};
use subnetsim::ipamd::CniConfig;

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
    /// Prefix delegation enabled (ENABLE_PREFIX_DELEGATION=true).
    #[arg(long)]
    prefix_delegation: bool,
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
    /// Which subnet of the --subnet file, when it lists several.
    #[arg(long, value_name = "ID", requires = "subnet")]
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

/// Errors that are the user's input, reported with exit code 2.
fn is_input_error(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<CatalogError>().is_some()
            || c.downcast_ref::<InspectError>().is_some()
            || c.downcast_ref::<SteadyError>().is_some()
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
        Err(e) => {
            eprintln!("error: {e:#}");
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
        prefix_delegation: a.prefix_delegation,
        custom_networking: a.custom_networking,
        max_eni: a.max_eni,
        vcpus: a.vcpus,
        show_max_allowed: a.show_max_allowed,
    };
    let r = max_pods(t, &q)?;
    if let Some(note) = &r.note {
        eprintln!("note: {note}");
    }
    if a.json {
        print_json(&r)
    } else {
        println!("{}", r.max_pods);
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
            return Err(CatalogError::UnknownType {
                name: format!("family {f}"),
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
        (Some(c), _) => SubnetSource::Cidr(*c),
        (None, Some(p)) => SubnetSource::File(p, a.subnet_id.as_deref()),
        (None, None) => unreachable!("clap requires one"),
    };
    let ins = inspect::load(source, &a.enis, a.reservations.as_deref())
        .with_context(|| "cannot inspect the subnet")?;
    let report = ins.report();
    if a.json {
        print_json(&report)
    } else {
        print!(
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
    let max_pods = match a.max_pods {
        Some(p) => p,
        None => {
            let q = MaxPodsQuery {
                prefix_delegation: cfg.prefix_delegation,
                custom_networking: cfg.custom_networking,
                max_eni: cfg.max_eni,
                vcpus: None,
                show_max_allowed: false,
            };
            max_pods(t, &q)?.max_pods
        }
    };
    let r = steady_state(t, &cfg, a.pods, max_pods, a.seed)?;
    for n in &r.notes {
        eprintln!("note: {n}");
    }
    if a.json {
        return print_json(&r);
    }
    println!(
        "{} with {} pods ({}, max pods {})",
        r.instance_type,
        r.pods_running,
        r.mode.replace('_', " "),
        r.max_pods
    );
    println!("  ENIs:               {}", r.enis);
    if r.mode == "prefix_delegation" {
        let per: Vec<String> = r.prefixes_per_eni.iter().map(u32::to_string).collect();
        println!(
            "  prefixes:           {} (per ENI: {})",
            r.prefixes,
            per.join(", ")
        );
    } else {
        println!("  secondary IPs:      {}", r.secondary_ips);
    }
    println!("  subnet addresses:   {}", r.subnet_addresses);
    println!("  unused pod IPs:     {}", r.unused_ips);
    Ok(())
}
