//! EC2's address operations over a set of subnets, with EC2's semantics
//! (docs/sources.md §1):
//!
//! - `create_eni`: one primary /32 placed by EC2; optionally N prefixes in
//!   the same call, all or nothing (`InvalidParameterValue` when they cannot
//!   be had, CNI #3105).
//! - `assign_private_ips`: N secondary /32s, all or nothing
//!   (`InsufficientFreeAddressesInSubnet`).
//! - `assign_prefixes`: N /28 prefixes, all or nothing, prefix reservations
//!   first (`InsufficientCidrBlocks`).
//! - `unassign_*`, `delete_eni`: release.
//!
//! Placement of each address and prefix is a [`Placement`] policy drawing
//! from the RNG the caller passes, so every random choice is on a stream
//! the caller names.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::placement::Placement;
use super::subnet::{Subnet, SubnetStats, BLOCK};
use super::AddrError;
use crate::time::Ms;

/// Index of a subnet in an [`Ec2`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct SubnetId(pub u32);

/// Handle of a live ENI. Handles are reused after deletion; `EniInfo::serial`
/// is unique for the whole run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct EniId(pub u32);

/// Why EC2 refused an allocation. The variant names are EC2's error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error, Serialize, PartialOrd, Ord)]
pub enum Ec2Error {
    #[error("InsufficientCidrBlocks: The specified subnet does not have enough free cidr blocks to satisfy the request")]
    InsufficientCidrBlocks,
    #[error("InsufficientFreeAddressesInSubnet: The specified subnet does not have enough free addresses to satisfy the request")]
    InsufficientFreeAddressesInSubnet,
    #[error("InvalidParameterValue: There aren't sufficient free Ipv4 addresses or prefixes")]
    InvalidParameterValue,
}

impl Ec2Error {
    /// EC2's error code.
    pub fn code(self) -> &'static str {
        match self {
            Ec2Error::InsufficientCidrBlocks => "InsufficientCidrBlocks",
            Ec2Error::InsufficientFreeAddressesInSubnet => "InsufficientFreeAddressesInSubnet",
            Ec2Error::InvalidParameterValue => "InvalidParameterValue",
        }
    }
}

/// The EC2 operation a failure came from, so every output can say which
/// call failed (a prefix on an existing ENI, a new ENI, a node's launch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
pub enum Ec2Op {
    /// `AssignPrivateIpAddresses --ipv4-prefix-count` on an existing ENI.
    AssignPrefixes,
    /// `AssignPrivateIpAddresses --secondary-private-ip-address-count`.
    AssignPrivateIps,
    /// `CreateNetworkInterface` (with prefixes or secondary addresses when
    /// ipamd creates it; a bare ENI for other consumers).
    CreateEni,
    /// `RunInstances`: the node's primary ENI at launch.
    RunInstances,
}

impl Ec2Op {
    pub fn name(self) -> &'static str {
        match self {
            Ec2Op::AssignPrefixes => "assign_prefixes",
            Ec2Op::AssignPrivateIps => "assign_private_ips",
            Ec2Op::CreateEni => "create_eni",
            Ec2Op::RunInstances => "run_instances",
        }
    }
}

/// What an ENI belongs to; names follow the owner types of AWS support's
/// analyzer so `inspect` output and simulated output read alike.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum OwnerKind {
    /// An EC2 instance's primary ENI (device index 0): the node's address.
    Ec2Primary,
    /// An ENI the VPC CNI attached to a node (description `aws-K8S-…`).
    EksPod,
    /// Another ENI attached to an instance (device index > 0).
    Ec2Secondary,
    /// EKS control-plane cross-account ENI (`Amazon EKS …`).
    #[serde(alias = "control_plane")]
    EksManaged,
    /// Application/classic load balancer (`ELB …`).
    #[serde(alias = "alb")]
    Elb,
    /// Network load balancer.
    Nlb,
    /// VPC Lambda Hyperplane ENI.
    Lambda,
    /// Interface VPC endpoint.
    VpcEndpoint,
    NatGateway,
    Efs,
    Rds,
    /// Security-groups-for-pods trunk ENI.
    Trunk,
    /// Security-groups-for-pods branch ENI.
    Branch,
    /// Detached (`available`) ENI.
    Orphaned,
    Other,
}

impl OwnerKind {
    pub fn name(self) -> &'static str {
        match self {
            OwnerKind::Ec2Primary => "ec2_primary",
            OwnerKind::EksPod => "eks_pod",
            OwnerKind::Ec2Secondary => "ec2_secondary",
            OwnerKind::EksManaged => "eks_managed",
            OwnerKind::Elb => "elb",
            OwnerKind::Nlb => "nlb",
            OwnerKind::Lambda => "lambda",
            OwnerKind::VpcEndpoint => "vpc_endpoint",
            OwnerKind::NatGateway => "nat_gateway",
            OwnerKind::Efs => "efs",
            OwnerKind::Rds => "rds",
            OwnerKind::Trunk => "trunk",
            OwnerKind::Branch => "branch",
            OwnerKind::Orphaned => "orphaned",
            OwnerKind::Other => "other",
        }
    }
}

/// Who owns an ENI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EniOwner {
    pub kind: OwnerKind,
    /// The instance it is attached to (simulation node id), if any.
    pub instance: Option<u32>,
    pub device_index: u32,
}

/// A live ENI.
#[derive(Clone, Debug)]
pub struct EniInfo {
    pub subnet: SubnetId,
    pub serial: u64,
    pub owner: EniOwner,
    /// Offset of the primary address in its subnet.
    pub primary: u32,
    /// Offsets of secondary /32s.
    pub secondary: Vec<u32>,
    /// Block indices of delegated /28 prefixes.
    pub prefixes: Vec<u32>,
}

/// The knobs for what EC2 does not document (docs/sources.md §1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Ec2Config {
    /// Where automatic single addresses land. Default `random` (CNI #2313).
    pub ip_placement: Placement,
    /// Which free /28 a prefix request gets. Default `random`.
    pub prefix_placement: Placement,
    /// Whether prefixes come from the unreserved range once the subnet's
    /// `prefix` reservations are full. Not documented by AWS; default true.
    pub prefix_reservation_fallback: bool,
    /// Whether automatic /32s (ENI primaries) may land inside `prefix`
    /// reservations. Documented: they avoid them; CNI #3087 reports
    /// otherwise. Default false.
    pub ips_in_prefix_reservations: bool,
    /// Latency of assigning addresses or prefixes to an existing ENI
    /// ("typically under a second", EKS best practices). Default 500ms.
    pub assign_latency: Ms,
    /// Latency of creating and attaching an ENI ("can take up to 10 s").
    /// Default 10s.
    pub eni_latency: Ms,
    /// The error `CreateNetworkInterface` returns when the prefixes asked
    /// for with the ENI cannot be had. CNI #3105 reports
    /// `InvalidParameterValue` (the default); AWS does not document it. It
    /// decides whether ipamd pauses 120 s under subnet discovery
    /// (`InsufficientCidrBlocks` pauses, `InvalidParameterValue` does not).
    pub create_eni_prefix_error: CreateEniPrefixError,
}

/// See [`Ec2Config::create_eni_prefix_error`].
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum CreateEniPrefixError {
    #[default]
    InvalidParameterValue,
    InsufficientCidrBlocks,
}

impl CreateEniPrefixError {
    pub fn error(self) -> Ec2Error {
        match self {
            CreateEniPrefixError::InvalidParameterValue => Ec2Error::InvalidParameterValue,
            CreateEniPrefixError::InsufficientCidrBlocks => Ec2Error::InsufficientCidrBlocks,
        }
    }
}

impl Default for Ec2Config {
    fn default() -> Self {
        Ec2Config {
            ip_placement: Placement::Random,
            prefix_placement: Placement::Random,
            prefix_reservation_fallback: true,
            ips_in_prefix_reservations: false,
            assign_latency: Ms::from_millis(500),
            eni_latency: Ms::from_secs(10),
            create_eni_prefix_error: CreateEniPrefixError::InvalidParameterValue,
        }
    }
}

/// The EC2 view of a set of subnets and the ENIs in them.
#[derive(Clone, Debug)]
pub struct Ec2 {
    pub config: Ec2Config,
    subnets: Vec<Subnet>,
    enis: Vec<Option<EniInfo>>,
    free_handles: Vec<u32>,
    next_serial: u64,
    /// Bumped on every change to a subnet's addresses (see `version`).
    version: u64,
}

impl Ec2 {
    pub fn new(config: Ec2Config) -> Self {
        Ec2 {
            config,
            subnets: Vec::new(),
            enis: Vec::new(),
            free_handles: Vec::new(),
            next_serial: 0,
            version: 0,
        }
    }

    pub fn add_subnet(&mut self, subnet: Subnet) -> SubnetId {
        self.version += 1;
        self.subnets.push(subnet);
        SubnetId(self.subnets.len() as u32 - 1)
    }

    pub fn subnet(&self, id: SubnetId) -> &Subnet {
        &self.subnets[id.0 as usize]
    }

    pub fn subnets(&self) -> impl Iterator<Item = (SubnetId, &Subnet)> {
        self.subnets
            .iter()
            .enumerate()
            .map(|(i, s)| (SubnetId(i as u32), s))
    }

    pub fn num_subnets(&self) -> usize {
        self.subnets.len()
    }

    pub fn stats(&self, id: SubnetId) -> SubnetStats {
        self.subnet(id)
            .stats(self.config.prefix_reservation_fallback)
    }

    /// Blocks a prefix request in this subnet could be served from now.
    pub fn delegatable_blocks(&self, id: SubnetId) -> u32 {
        self.subnet(id)
            .delegatable_blocks(self.config.prefix_reservation_fallback)
    }

    pub fn free_ips(&self, id: SubnetId) -> u32 {
        self.subnet(id).free_ips()
    }

    pub fn eni(&self, id: EniId) -> &EniInfo {
        self.enis[id.0 as usize].as_ref().expect("live ENI")
    }

    pub fn enis(&self) -> impl Iterator<Item = (EniId, &EniInfo)> {
        self.enis
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.as_ref().map(|e| (EniId(i as u32), e)))
    }

    pub fn addr(&self, subnet: SubnetId, offset: u32) -> Ipv4Addr {
        self.subnet(subnet).addr_at(offset)
    }

    pub fn prefix_cidr(&self, subnet: SubnetId, block: u32) -> Ipv4Net {
        self.subnet(subnet).block_cidr(block)
    }

    /// A number that changes whenever any subnet's addresses may have
    /// (an observer that saw the same number has nothing new to look at).
    pub fn version(&self) -> u64 {
        self.version
    }

    fn sub_mut(&mut self, id: SubnetId) -> &mut Subnet {
        self.version += 1;
        &mut self.subnets[id.0 as usize]
    }

    fn eni_mut(&mut self, id: EniId) -> Result<&mut EniInfo, AddrError> {
        self.enis
            .get_mut(id.0 as usize)
            .and_then(Option::as_mut)
            .ok_or(AddrError::NoSuchEni)
    }

    fn insert_eni(&mut self, info: EniInfo) -> EniId {
        if let Some(h) = self.free_handles.pop() {
            self.enis[h as usize] = Some(info);
            EniId(h)
        } else {
            self.enis.push(Some(info));
            EniId(self.enis.len() as u32 - 1)
        }
    }

    fn new_eni(&mut self, subnet: SubnetId, owner: EniOwner, primary: u32) -> EniId {
        let serial = self.next_serial;
        self.next_serial += 1;
        self.insert_eni(EniInfo {
            subnet,
            serial,
            owner,
            primary,
            secondary: Vec::new(),
            prefixes: Vec::new(),
        })
    }

    /// CreateNetworkInterface (+ attach): a primary /32 placed by EC2 and,
    /// when `prefixes > 0`, that many /28 prefixes in the same call.
    pub fn create_eni<R: Rng + ?Sized>(
        &mut self,
        subnet: SubnetId,
        owner: EniOwner,
        prefixes: u32,
        rng: &mut R,
    ) -> Result<EniId, Ec2Error> {
        let cfg = self.config;
        let s = self.subnet(subnet);
        let prefix_error = cfg.create_eni_prefix_error.error();
        if prefixes > 0 && s.delegatable_blocks(cfg.prefix_reservation_fallback) < prefixes {
            return Err(prefix_error);
        }
        let off = s
            .pick_ip(cfg.ip_placement, cfg.ips_in_prefix_reservations, rng)
            .ok_or(if prefixes > 0 {
                prefix_error
            } else {
                Ec2Error::InsufficientFreeAddressesInSubnet
            })?;
        self.sub_mut(subnet)
            .take_ip(off)
            .expect("picked a free address");
        let id = self.new_eni(subnet, owner, off);
        if prefixes > 0 {
            // The primary itself may have landed in a block that was
            // delegatable; if the prefixes no longer fit, undo the whole call.
            if self.assign_prefixes(id, prefixes, rng).is_err() {
                self.delete_eni(id).expect("just created");
                return Err(prefix_error);
            }
        }
        Ok(id)
    }

    /// AssignPrivateIpAddresses with a count: N secondary /32s, all or none.
    pub fn assign_private_ips<R: Rng + ?Sized>(
        &mut self,
        eni: EniId,
        n: u32,
        rng: &mut R,
    ) -> Result<(), Ec2Error> {
        let cfg = self.config;
        let subnet = self.eni(eni).subnet;
        // Taken addresses go straight onto the ENI; on failure they are
        // rolled back from its tail (no temporary buffer).
        let before = self.eni(eni).secondary.len();
        for _ in 0..n {
            let s = self.subnet(subnet);
            match s.pick_ip(cfg.ip_placement, cfg.ips_in_prefix_reservations, rng) {
                Some(off) => {
                    self.sub_mut(subnet).take_ip(off).expect("free");
                    self.eni_mut(eni).expect("live").secondary.push(off);
                }
                None => {
                    let info = self.enis[eni.0 as usize].as_mut().expect("live");
                    let s = &mut self.subnets[subnet.0 as usize];
                    self.version += 1;
                    for off in info.secondary.drain(before..) {
                        s.release_ip(off).expect("taken");
                    }
                    return Err(Ec2Error::InsufficientFreeAddressesInSubnet);
                }
            }
        }
        Ok(())
    }

    /// AssignPrivateIpAddresses with `--ipv4-prefix-count N`: all or none,
    /// prefix reservations first.
    pub fn assign_prefixes<R: Rng + ?Sized>(
        &mut self,
        eni: EniId,
        n: u32,
        rng: &mut R,
    ) -> Result<(), Ec2Error> {
        let cfg = self.config;
        let subnet = self.eni(eni).subnet;
        if self
            .subnet(subnet)
            .delegatable_blocks(cfg.prefix_reservation_fallback)
            < n
        {
            return Err(Ec2Error::InsufficientCidrBlocks);
        }
        for _ in 0..n {
            let b = self
                .subnet(subnet)
                .pick_block(cfg.prefix_placement, cfg.prefix_reservation_fallback, rng)
                .expect("counted delegatable blocks");
            self.sub_mut(subnet).take_prefix(b).expect("free block");
            self.eni_mut(eni).expect("live").prefixes.push(b);
        }
        Ok(())
    }

    /// UnassignPrivateIpAddresses for one secondary /32.
    pub fn unassign_ip(&mut self, eni: EniId, offset: u32) -> Result<(), AddrError> {
        let info = self.eni_mut(eni)?;
        let pos = info
            .secondary
            .iter()
            .position(|&o| o == offset)
            .ok_or(AddrError::NoSuchEni)?;
        info.secondary.swap_remove(pos);
        let subnet = info.subnet;
        self.sub_mut(subnet).release_ip(offset)
    }

    /// UnassignPrivateIpAddresses for one prefix.
    pub fn unassign_prefix(&mut self, eni: EniId, block: u32) -> Result<(), AddrError> {
        let info = self.eni_mut(eni)?;
        let pos = info
            .prefixes
            .iter()
            .position(|&b| b == block)
            .ok_or(AddrError::NoSuchEni)?;
        info.prefixes.swap_remove(pos);
        let subnet = info.subnet;
        self.sub_mut(subnet).release_prefix(block)
    }

    /// DeleteNetworkInterface: the primary, every secondary and every prefix
    /// return to the subnet.
    pub fn delete_eni(&mut self, eni: EniId) -> Result<(), AddrError> {
        let info = self
            .enis
            .get_mut(eni.0 as usize)
            .and_then(Option::take)
            .ok_or(AddrError::NoSuchEni)?;
        self.free_handles.push(eni.0);
        let s = self.sub_mut(info.subnet);
        s.release_ip(info.primary)?;
        for off in info.secondary {
            s.release_ip(off)?;
        }
        for b in info.prefixes {
            s.release_prefix(b)?;
        }
        Ok(())
    }

    /// An ENI at a given primary address (explicit placement; used to load a
    /// real subnet's state and for addresses in `explicit` reservations).
    pub fn create_eni_at(
        &mut self,
        subnet: SubnetId,
        owner: EniOwner,
        primary: Ipv4Addr,
    ) -> Result<EniId, AddrError> {
        self.version += 1;
        let s = self
            .subnets
            .get_mut(subnet.0 as usize)
            .ok_or(AddrError::NoSuchSubnet)?;
        let off = s
            .offset_of(primary)
            .ok_or(AddrError::OutsideSubnet(primary))?;
        s.take_ip(off)?;
        Ok(self.new_eni(subnet, owner, off))
    }

    /// A secondary /32 at a given address.
    pub fn assign_ip_at(&mut self, eni: EniId, addr: Ipv4Addr) -> Result<(), AddrError> {
        let subnet = self.eni_mut(eni)?.subnet;
        let s = self.sub_mut(subnet);
        let off = s.offset_of(addr).ok_or(AddrError::OutsideSubnet(addr))?;
        s.take_ip(off)?;
        self.eni_mut(eni)?.secondary.push(off);
        Ok(())
    }

    /// A prefix at a given /28.
    pub fn assign_prefix_at(&mut self, eni: EniId, prefix: Ipv4Net) -> Result<(), AddrError> {
        let subnet = self.eni_mut(eni)?.subnet;
        let s = self.sub_mut(subnet);
        if prefix.prefix_len() != 28 || prefix.trunc() != prefix {
            return Err(AddrError::NotAPrefix(prefix));
        }
        let off = s
            .offset_of(prefix.network())
            .ok_or(AddrError::OutsideSubnet(prefix.network()))?;
        s.take_prefix(off / BLOCK)?;
        self.eni_mut(eni)?.prefixes.push(off / BLOCK);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::{Reservation, ReservationType};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn owner() -> EniOwner {
        EniOwner {
            kind: OwnerKind::EksPod,
            instance: Some(0),
            device_index: 1,
        }
    }

    fn ec2_with(cidr: &str, res: Vec<Reservation>) -> (Ec2, SubnetId) {
        let mut ec2 = Ec2::new(Ec2Config::default());
        let id = ec2.add_subnet(Subnet::new(cidr.parse().unwrap(), res).unwrap());
        (ec2, id)
    }

    /// Every change to a subnet's addresses changes `version` (what the
    /// observer relies on to skip events that changed none); a read or a
    /// failed call that leaves the subnet as it was may leave it.
    #[test]
    fn version_moves_with_every_change() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (mut ec2, s) = ec2_with("10.0.0.0/22", vec![]);
        let mut last = ec2.version();
        let mut changed = |ec2: &Ec2| {
            let moved = ec2.version() != last;
            last = ec2.version();
            moved
        };
        let eni = ec2.create_eni(s, owner(), 0, &mut rng).unwrap();
        assert!(changed(&ec2));
        ec2.assign_private_ips(eni, 2, &mut rng).unwrap();
        assert!(changed(&ec2));
        ec2.assign_prefixes(eni, 1, &mut rng).unwrap();
        assert!(changed(&ec2));
        let ip = ec2.eni(eni).secondary[0];
        ec2.unassign_ip(eni, ip).unwrap();
        assert!(changed(&ec2));
        let b = ec2.eni(eni).prefixes[0];
        ec2.unassign_prefix(eni, b).unwrap();
        assert!(changed(&ec2));
        let at = ec2.addr(s, 40);
        let other = ec2.create_eni_at(s, owner(), at).unwrap();
        assert!(changed(&ec2));
        ec2.delete_eni(other).unwrap();
        assert!(changed(&ec2));
        let _ = ec2.delegatable_blocks(s);
        assert!(!changed(&ec2));
    }

    #[test]
    fn prefixes_all_or_nothing_with_real_error_names() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (mut ec2, s) = ec2_with("10.0.0.0/24", vec![]);
        ec2.config.ip_placement = Placement::Lowest;
        let eni = ec2.create_eni(s, owner(), 0, &mut rng).unwrap();
        // Lowest placement puts the primary at .4, in block 0 (has_reserved).
        assert_eq!(ec2.eni(eni).primary, 4);
        assert_eq!(ec2.delegatable_blocks(s), 14);
        assert_eq!(
            ec2.assign_prefixes(eni, 15, &mut rng),
            Err(Ec2Error::InsufficientCidrBlocks)
        );
        assert_eq!(
            ec2.eni(eni).prefixes.len(),
            0,
            "nothing assigned on failure"
        );
        ec2.assign_prefixes(eni, 14, &mut rng).unwrap();
        assert_eq!(ec2.delegatable_blocks(s), 0);
        // Plenty of single addresses remain in blocks 0 and 15, yet no prefix.
        assert!(ec2.free_ips(s) > 0);
        assert_eq!(
            ec2.assign_prefixes(eni, 1, &mut rng).unwrap_err().code(),
            "InsufficientCidrBlocks"
        );
        assert_eq!(
            ec2.create_eni(s, owner(), 1, &mut rng),
            Err(Ec2Error::InvalidParameterValue)
        );
        let free_before = ec2.free_ips(s);
        ec2.assign_private_ips(eni, free_before, &mut rng).unwrap();
        assert_eq!(ec2.free_ips(s), 0);
        assert_eq!(
            ec2.create_eni(s, owner(), 0, &mut rng),
            Err(Ec2Error::InsufficientFreeAddressesInSubnet)
        );
        assert_eq!(
            ec2.assign_private_ips(eni, 1, &mut rng),
            Err(Ec2Error::InsufficientFreeAddressesInSubnet)
        );
        ec2.delete_eni(eni).unwrap();
        assert_eq!(
            ec2.stats(s),
            Subnet::new("10.0.0.0/24".parse().unwrap(), vec![])
                .unwrap()
                .stats(true)
        );
    }

    #[test]
    fn explicit_reservation_only_by_request() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let (mut ec2, s) = ec2_with(
            "10.0.0.0/24",
            vec![Reservation {
                cidr: "10.0.0.16/28".parse().unwrap(),
                kind: ReservationType::Explicit,
            }],
        );
        // A random primary could land in a delegatable block and make the
        // 13-prefix call fail; put it in block 0.
        ec2.config.ip_placement = Placement::Lowest;
        let e = ec2.create_eni(s, owner(), 13, &mut rng).unwrap();
        assert!(!ec2.eni(e).prefixes.contains(&1));
        assert_eq!(ec2.delegatable_blocks(s), 0);
        // Explicit request inside the explicit reservation works.
        ec2.assign_ip_at(e, "10.0.0.20".parse().unwrap()).unwrap();
        assert!(ec2.assign_ip_at(e, "10.0.0.20".parse().unwrap()).is_err());
        assert!(ec2.assign_ip_at(e, "10.0.0.255".parse().unwrap()).is_err());
    }
}
