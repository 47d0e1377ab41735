//! Reading a real subnet's state from AWS CLI output, and reporting it in
//! the vocabulary of AWS support's subnet analyzer (docs/sources.md §2).
//!
//! Inputs are exactly what the AWS CLI prints:
//! - `aws ec2 describe-network-interfaces --filters Name=subnet-id,Values=…`
//! - `aws ec2 get-subnet-cidr-reservations --subnet-id …` (optional)
//! - `aws ec2 describe-subnets --subnet-ids …` (optional, for the CIDR)
//!
//! The same ENI shape is what `subnetsim run` writes as `final-state.json`,
//! so a simulated end state can be inspected like a real one.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::addr::ec2::{Ec2, Ec2Config, EniOwner, OwnerKind};
use crate::addr::subnet::{score_band, BlockClass, Subnet, SubnetStats};
use crate::addr::{AddrError, Reservation, ReservationType, SubnetId};

/// `describe-network-interfaces` output.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeNetworkInterfaces {
    pub network_interfaces: Vec<NetworkInterface>,
}

/// One `NetworkInterfaces[]` entry: the fields subnetsim reads and writes.
/// Unknown fields are ignored (the real output has many more).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkInterface {
    pub network_interface_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    #[serde(default)]
    pub interface_type: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<Attachment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_ip_address: Option<String>,
    #[serde(default)]
    pub private_ip_addresses: Vec<PrivateIp>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipv4_prefixes: Vec<Ipv4Prefix>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tag_set: Vec<Tag>,
}

/// An AWS tag.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    pub key: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Attachment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    #[serde(default)]
    pub device_index: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PrivateIp {
    pub private_ip_address: String,
    #[serde(default)]
    pub primary: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Ipv4Prefix {
    pub ipv4_prefix: String,
}

/// `get-subnet-cidr-reservations` output.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetSubnetCidrReservations {
    #[serde(default)]
    pub subnet_ipv4_cidr_reservations: Vec<CidrReservation>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CidrReservation {
    pub cidr: String,
    pub reservation_type: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub subnet_cidr_reservation_id: Option<String>,
}

/// `describe-subnets` output.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeSubnets {
    pub subnets: Vec<SubnetDescription>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SubnetDescription {
    pub subnet_id: Option<String>,
    pub cidr_block: Option<String>,
    #[serde(default)]
    pub availability_zone: Option<String>,
    #[serde(default)]
    pub available_ip_address_count: Option<u32>,
}

/// Why an inspection input was refused. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The OS error is in the message, not a chained source (it would
    /// print twice).
    #[error("{file}: cannot read: {error}")]
    Io {
        file: PathBuf,
        error: std::io::Error,
    },
    #[error("{file}:{line}:{column}: not the expected AWS CLI JSON: {message}")]
    Json {
        file: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}: {message}")]
    Invalid { file: PathBuf, message: String },
    /// A command-line argument (not a file) is wrong.
    #[error("{arg}: {message}")]
    Arg { arg: String, message: String },
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, InspectError> {
    let text = std::fs::read_to_string(path).map_err(|error| InspectError::Io {
        file: path.to_path_buf(),
        error,
    })?;
    serde_json::from_str(&text).map_err(|e| InspectError::Json {
        file: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })
}

fn invalid(file: &Path, message: impl Into<String>) -> InspectError {
    InspectError::Invalid {
        file: file.to_path_buf(),
        message: message.into(),
    }
}

/// Where the subnet's CIDR comes from.
pub enum SubnetSource<'a> {
    /// A CIDR and, optionally, the subnet id to keep ENIs of.
    Cidr(Ipv4Net, Option<&'a str>),
    /// A `describe-subnets` file and, when it lists several, which one.
    File(&'a Path, Option<&'a str>),
}

/// A subnet's identity for the report.
#[derive(Debug, Clone, Serialize)]
pub struct SubnetMeta {
    pub cidr: Ipv4Net,
    pub subnet_id: Option<String>,
    pub availability_zone: Option<String>,
    /// EC2's own count, when `describe-subnets` gave one.
    pub available_ip_address_count: Option<u32>,
}

/// The loaded state and its owners.
pub struct Inspection {
    pub meta: SubnetMeta,
    pub ec2: Ec2,
    pub subnet: SubnetId,
    /// Reservation descriptions, parallel to the subnet's reservations.
    pub reservation_labels: Vec<String>,
    /// Per owner type: (ENIs, /32 addresses, prefixes).
    pub owners: BTreeMap<&'static str, (u32, u32, u32)>,
    /// What the file says of each ENI loaded, in the order created in
    /// `ec2` (the same order as the file).
    pub enis: Vec<LoadedEni>,
}

/// An ENI as the file describes it, beyond its addresses.
#[derive(Debug, Clone)]
pub struct LoadedEni {
    pub eni: crate::addr::EniId,
    /// `NetworkInterfaces[i]`: its place in the file.
    pub index: usize,
    pub id: String,
    pub kind: OwnerKind,
    pub instance_id: Option<String>,
    pub device_index: u32,
    pub description: String,
    pub tags: Vec<(String, String)>,
}

/// The analyzer's ENI classification (`classify_eni`), reduced to
/// subnetsim's owner kinds.
pub fn classify(eni: &NetworkInterface) -> OwnerKind {
    let itype = eni.interface_type.as_deref().unwrap_or("interface");
    let desc = eni.description.as_deref().unwrap_or("");
    if eni.status.as_deref() == Some("available") {
        return OwnerKind::Orphaned;
    }
    match itype {
        "lambda" => return OwnerKind::Lambda,
        "nat_gateway" => return OwnerKind::NatGateway,
        "load_balancer" => return OwnerKind::Elb,
        "network_load_balancer" => return OwnerKind::Nlb,
        "vpc_endpoint" => return OwnerKind::VpcEndpoint,
        "efs" => return OwnerKind::Efs,
        "trunk" => return OwnerKind::Trunk,
        "branch" => return OwnerKind::Branch,
        _ => {}
    }
    if desc.starts_with("ELB ") || desc.starts_with("aws-elb") {
        return OwnerKind::Elb;
    }
    if desc.starts_with("aws-K8S-") {
        return OwnerKind::EksPod;
    }
    if desc.starts_with("Amazon EKS") {
        return OwnerKind::EksManaged;
    }
    if desc.starts_with("RDSNetworkInterface") {
        return OwnerKind::Rds;
    }
    if let Some(att) = &eni.attachment {
        if att.instance_id.is_some() {
            return if att.device_index.unwrap_or(0) == 0 {
                OwnerKind::Ec2Primary
            } else {
                OwnerKind::Ec2Secondary
            };
        }
    }
    OwnerKind::Other
}

/// Loads a subnet's state. Addresses outside the CIDR, addresses used
/// twice, overlapping prefixes and AWS-reserved addresses in use are errors.
pub fn load(
    subnet: SubnetSource<'_>,
    enis_file: &Path,
    reservations_file: Option<&Path>,
) -> Result<Inspection, InspectError> {
    let meta = match subnet {
        SubnetSource::Cidr(cidr, id) => {
            let arg = |message: String| InspectError::Arg {
                arg: "--cidr".into(),
                message,
            };
            if cidr.trunc() != cidr {
                return Err(arg(format!(
                    "{cidr} has host bits set; write {}",
                    cidr.trunc()
                )));
            }
            if let Err(e) = Subnet::new(cidr, Vec::new()) {
                return Err(arg(e.to_string()));
            }
            SubnetMeta {
                cidr,
                subnet_id: id.map(str::to_string),
                availability_zone: None,
                available_ip_address_count: None,
            }
        }
        SubnetSource::File(path, want) => {
            let d: DescribeSubnets = read_json(path)?;
            let pick = match want {
                Some(id) => d
                    .subnets
                    .iter()
                    .find(|s| s.subnet_id.as_deref() == Some(id))
                    .ok_or_else(|| invalid(path, format!("no subnet `{id}` in the file")))?,
                None if d.subnets.len() == 1 => &d.subnets[0],
                None => {
                    let ids: Vec<_> = d
                        .subnets
                        .iter()
                        .filter_map(|s| s.subnet_id.clone())
                        .collect();
                    return Err(invalid(
                        path,
                        format!(
                            "{} subnets in the file; choose one with --subnet-id ({})",
                            d.subnets.len(),
                            ids.join(", ")
                        ),
                    ));
                }
            };
            let cidr_text = pick
                .cidr_block
                .as_deref()
                .ok_or_else(|| invalid(path, "the subnet has no CidrBlock (IPv6-only?)"))?;
            let cidr: Ipv4Net = cidr_text.parse().map_err(|_| {
                invalid(path, format!("CidrBlock `{cidr_text}` is not an IPv4 CIDR"))
            })?;
            if cidr.trunc() != cidr {
                return Err(invalid(path, format!("CidrBlock {cidr} has host bits set")));
            }
            if let Err(e) = Subnet::new(cidr, Vec::new()) {
                return Err(invalid(path, format!("CidrBlock: {e}")));
            }
            SubnetMeta {
                cidr,
                subnet_id: pick.subnet_id.clone(),
                availability_zone: pick.availability_zone.clone(),
                available_ip_address_count: pick.available_ip_address_count,
            }
        }
    };

    let mut reservations = Vec::new();
    let mut reservation_labels = Vec::new();
    if let Some(path) = reservations_file {
        let r: GetSubnetCidrReservations = read_json(path)?;
        for (i, res) in r.subnet_ipv4_cidr_reservations.iter().enumerate() {
            let cidr: Ipv4Net = res.cidr.parse().map_err(|_| {
                invalid(
                    path,
                    format!(
                        "SubnetIpv4CidrReservations[{i}].Cidr `{}` is not an IPv4 CIDR",
                        res.cidr
                    ),
                )
            })?;
            let kind = match res.reservation_type.as_str() {
                "prefix" => ReservationType::Prefix,
                "explicit" => ReservationType::Explicit,
                other => {
                    return Err(invalid(
                        path,
                        format!(
                            "SubnetIpv4CidrReservations[{i}].ReservationType `{other}`: expected `prefix` or `explicit`"
                        ),
                    ))
                }
            };
            reservations.push(Reservation { cidr, kind });
            reservation_labels.push(
                res.description
                    .clone()
                    .filter(|d| !d.is_empty())
                    .or_else(|| res.subnet_cidr_reservation_id.clone())
                    .unwrap_or_default(),
            );
        }
    }
    // The subnet's own CIDR was checked above: what fails here is a
    // reservation.
    let s = Subnet::new(meta.cidr, reservations).map_err(|e| {
        invalid(
            reservations_file.expect("only reservations can fail here"),
            format!("SubnetIpv4CidrReservations: {e}"),
        )
    })?;
    let mut ec2 = Ec2::new(Ec2Config::default());
    let sid = ec2.add_subnet(s);

    let d: DescribeNetworkInterfaces = read_json(enis_file)?;
    let mut owners: BTreeMap<&'static str, (u32, u32, u32)> = BTreeMap::new();
    let mut loaded = Vec::new();
    let mut seen_ids: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, eni) in d.network_interfaces.iter().enumerate() {
        if let Some(first) = seen_ids.insert(eni.network_interface_id.as_str(), i) {
            return Err(invalid(
                enis_file,
                format!(
                    "NetworkInterfaces[{i}].NetworkInterfaceId: {} is listed twice (also NetworkInterfaces[{first}])",
                    eni.network_interface_id
                ),
            ));
        }
        // A file covering several subnets: keep this subnet's ENIs.
        if let (Some(want), Some(have)) = (&meta.subnet_id, &eni.subnet_id) {
            if want != have {
                continue;
            }
        }
        let here = |what: &str, e: AddrError| {
            invalid(
                enis_file,
                format!(
                    "NetworkInterfaces[{i}] ({}): {what}: {e}",
                    eni.network_interface_id
                ),
            )
        };
        let kind = classify(eni);
        let mut ips: Vec<(Ipv4Addr, bool)> = Vec::new();
        for (j, p) in eni.private_ip_addresses.iter().enumerate() {
            let a: Ipv4Addr = p.private_ip_address.parse().map_err(|_| {
                invalid(
                    enis_file,
                    format!(
                        "NetworkInterfaces[{i}].PrivateIpAddresses[{j}]: `{}` is not an IPv4 address",
                        p.private_ip_address
                    ),
                )
            })?;
            ips.push((a, p.primary));
        }
        let primaries: Vec<usize> = ips
            .iter()
            .enumerate()
            .filter(|(_, &(_, p))| p)
            .map(|(j, _)| j)
            .collect();
        if primaries.len() > 1 {
            return Err(invalid(
                enis_file,
                format!(
                    "NetworkInterfaces[{i}].PrivateIpAddresses[{}]: a second primary address ({}); an ENI has one",
                    primaries[1], ips[primaries[1]].0
                ),
            ));
        }
        if ips.is_empty() {
            // An ENI always has a primary; tolerate the short form.
            if let Some(a) = &eni.private_ip_address {
                let a = a.parse().map_err(|_| {
                    invalid(
                        enis_file,
                        format!(
                            "NetworkInterfaces[{i}].PrivateIpAddress `{a}` is not an IPv4 address"
                        ),
                    )
                })?;
                ips.push((a, true));
            }
        }
        let Some(primary_pos) =
            ips.iter()
                .position(|&(_, p)| p)
                .or(if ips.is_empty() { None } else { Some(0) })
        else {
            return Err(invalid(
                enis_file,
                format!(
                    "NetworkInterfaces[{i}] ({}) has no private IPv4 address",
                    eni.network_interface_id
                ),
            ));
        };
        let owner = EniOwner {
            kind,
            instance: None,
            device_index: eni
                .attachment
                .as_ref()
                .and_then(|a| a.device_index)
                .unwrap_or(0),
        };
        let (primary, _) = ips[primary_pos];
        let device_index = owner.device_index;
        let id = ec2
            .create_eni_at(sid, owner, primary)
            .map_err(|e| here("primary address", e))?;
        for (k, &(a, _)) in ips.iter().enumerate() {
            if k != primary_pos {
                ec2.assign_ip_at(id, a)
                    .map_err(|e| here("secondary address", e))?;
            }
        }
        for (j, p) in eni.ipv4_prefixes.iter().enumerate() {
            let net: Ipv4Net = p.ipv4_prefix.parse().map_err(|_| {
                invalid(
                    enis_file,
                    format!(
                        "NetworkInterfaces[{i}].Ipv4Prefixes[{j}]: `{}` is not an IPv4 prefix",
                        p.ipv4_prefix
                    ),
                )
            })?;
            if !meta.cidr.contains(&net) {
                return Err(here("prefix", AddrError::OutsideSubnet(net.network())));
            }
            ec2.assign_prefix_at(id, net)
                .map_err(|e| here("prefix", e))?;
        }
        let entry = owners.entry(kind.name()).or_default();
        entry.0 += 1;
        entry.1 += ips.len() as u32;
        entry.2 += eni.ipv4_prefixes.len() as u32;
        loaded.push(LoadedEni {
            eni: id,
            index: i,
            id: eni.network_interface_id.clone(),
            kind,
            instance_id: eni.attachment.as_ref().and_then(|a| a.instance_id.clone()),
            device_index,
            description: eni.description.clone().unwrap_or_default(),
            tags: eni
                .tag_set
                .iter()
                .map(|t| (t.key.clone(), t.value.clone()))
                .collect(),
        });
    }
    Ok(Inspection {
        meta,
        ec2,
        subnet: sid,
        reservation_labels,
        owners,
        enis: loaded,
    })
}

/// One /28 block in the JSON report (the analyzer's field names).
#[derive(Debug, Clone, Serialize)]
pub struct BlockReport {
    pub cidr: Ipv4Net,
    pub status: BlockClass,
    pub in_reservation: bool,
    pub used: u32,
    pub free: u32,
}

/// The `--json` report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub subnet: SubnetMeta,
    #[serde(flatten)]
    pub stats: SubnetStats,
    pub severity: &'static str,
    pub reservations: Vec<ReservationReport>,
    pub owners: Vec<OwnerReport>,
    pub blocks: Vec<BlockReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReservationReport {
    pub cidr: Ipv4Net,
    #[serde(rename = "type")]
    pub kind: ReservationType,
    pub description: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct OwnerReport {
    pub owner_type: &'static str,
    pub enis: u32,
    pub ips: u32,
    pub prefixes: u32,
}

/// Per-block rows of a subnet, in address order.
pub fn blocks(s: &Subnet) -> Vec<BlockReport> {
    (0..s.num_blocks())
        .map(|b| BlockReport {
            cidr: s.block_cidr(b),
            status: s.block_class(b),
            in_reservation: s.block_in_reservation(b),
            used: s.block_used(b),
            free: s.block_free(b),
        })
        .collect()
}

impl Inspection {
    pub fn report(&self) -> Report {
        let s = self.ec2.subnet(self.subnet);
        let stats = self.ec2.stats(self.subnet);
        let mut owners: Vec<OwnerReport> = self
            .owners
            .iter()
            .map(|(k, &(e, i, p))| OwnerReport {
                owner_type: k,
                enis: e,
                ips: i,
                prefixes: p,
            })
            .collect();
        owners.sort_by(|a, b| b.ips.cmp(&a.ips).then(a.owner_type.cmp(b.owner_type)));
        Report {
            subnet: self.meta.clone(),
            severity: score_band(stats.fragmentation_score, stats.fragmented_blocks),
            stats,
            reservations: s
                .reservations()
                .iter()
                .zip(&self.reservation_labels)
                .map(|(r, l)| ReservationReport {
                    cidr: r.cidr,
                    kind: r.kind,
                    description: l.clone(),
                })
                .collect(),
            owners,
            blocks: blocks(s),
        }
    }
}

/// The analyzer's block-map glyph for a block.
pub fn glyph(class: BlockClass, in_reservation: bool) -> char {
    if in_reservation && class == BlockClass::Free {
        return 'P';
    }
    match class {
        BlockClass::Free => '□',
        BlockClass::Full => '■',
        BlockClass::Fragmented => '▣',
        BlockClass::HasReserved => 'R',
        BlockClass::PrefixAllocated => 'A',
    }
}

/// The block map, 16 blocks a row as the analyzer prints it.
pub fn block_map(s: &Subnet) -> String {
    let mut out = String::from(
        "  /28 Block Map:  ■ full  ▣ fragmented  □ free  R reserved  A prefix-allocated  P prefix-reserved\n  ",
    );
    for b in 0..s.num_blocks() {
        out.push(glyph(s.block_class(b), s.block_in_reservation(b)));
        out.push(' ');
        if (b + 1) % 16 == 0 {
            out.push_str("\n  ");
        }
    }
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

/// The text report, laid out like the analyzer's so the two read side by
/// side, plus subnetsim's delegatable count and largest free run.
pub fn render_text(r: &Report, s: &Subnet) -> String {
    let st = &r.stats;
    let mut o = String::new();
    let bar = "═".repeat(70);
    let name = r
        .subnet
        .subnet_id
        .clone()
        .unwrap_or_else(|| r.subnet.cidr.to_string());
    let _ = writeln!(o, "{bar}\n  Subnet: {name}");
    let _ = writeln!(
        o,
        "  CIDR:   {}  AZ: {}\n{bar}",
        r.subnet.cidr,
        r.subnet.availability_zone.as_deref().unwrap_or("-")
    );
    if !r.reservations.is_empty() {
        let _ = writeln!(o, "\n  CIDR Reservations:");
        for res in &r.reservations {
            let _ = writeln!(
                o,
                "    {} ({}) {}",
                res.cidr,
                res.kind.name(),
                res.description
            );
        }
    }
    let _ = writeln!(
        o,
        "\n  IPs:  {} used | {} free | {} AWS-reserved",
        st.used_ips, st.free_ips, st.aws_reserved_ips
    );
    if let Some(n) = r.subnet.available_ip_address_count {
        let _ = writeln!(o, "  EC2 AvailableIpAddressCount: {n}");
    }
    let _ = writeln!(
        o,
        "  /28 blocks: {} total | {} free | {} fragmented | {} full | {} reserved | {} prefix-allocated",
        st.total_blocks,
        st.free_blocks,
        st.fragmented_blocks,
        st.full_blocks,
        st.reserved_blocks,
        st.prefix_allocated_blocks
    );
    let _ = writeln!(
        o,
        "  Delegatable /28 blocks now: {}   Largest free aligned run: {}",
        st.delegatable_blocks,
        st.largest_free_run
            .map_or("none".to_string(), |p| format!("/{p}"))
    );
    match st.fragmentation_score {
        None => {
            let _ = writeln!(
                o,
                "  Fragmentation: N/A (no candidate blocks - all reserved or already prefix-allocated)"
            );
        }
        Some(score) => {
            let filled = (score / 5) as usize;
            let _ = writeln!(
                o,
                "  Fragmentation: [{}{}] {}% ({})",
                "█".repeat(filled),
                "░".repeat(20 - filled),
                score,
                r.severity
            );
        }
    }
    let _ = writeln!(
        o,
        "\n  {:<20} {:>6} {:>6} {:>9}",
        "Owner Type", "ENIs", "IPs", "Prefixes"
    );
    let _ = writeln!(o, "  {}", "─".repeat(44));
    for ow in &r.owners {
        let _ = writeln!(
            o,
            "  {:<20} {:>6} {:>6} {:>9}",
            ow.owner_type.replace('_', " "),
            ow.enis,
            ow.ips,
            ow.prefixes
        );
    }
    o.push('\n');
    o.push_str(&block_map(s));
    o
}
