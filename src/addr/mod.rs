//! Layer 1: the VPC subnet address space and EC2's allocation operations.
//! Nothing here knows about pods or nodes.
//!
//! - [`subnet::Subnet`]: one subnet, address by address, with block classes,
//!   counters and placement indexes maintained incrementally.
//! - [`ec2::Ec2`]: ENIs and the EC2 operations (assign one address, assign N
//!   prefixes all-or-nothing, release, create and delete ENIs) with EC2's
//!   error names.
//! - [`placement::Placement`]: the undocumented choice of *which* free
//!   address or block EC2 hands out, as a policy.

pub mod ec2;
pub mod idset;
pub mod placement;
pub mod subnet;

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

pub use ec2::{Ec2, Ec2Config, Ec2Error, Ec2Op, EniId, OwnerKind, SubnetId};
pub use placement::Placement;
pub use subnet::{BlockClass, Subnet, SubnetStats};

/// Subnet CIDR reservation type (VPC user guide, subnet CIDR reservations).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReservationType {
    /// EC2 assigns prefixes from it automatically, before the rest.
    Prefix,
    /// Never assigned automatically; only by explicit request.
    Explicit,
}

impl ReservationType {
    pub fn name(self) -> &'static str {
        match self {
            ReservationType::Prefix => "prefix",
            ReservationType::Explicit => "explicit",
        }
    }
}

/// One subnet CIDR reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub cidr: Ipv4Net,
    #[serde(rename = "type")]
    pub kind: ReservationType,
}

/// A state or configuration error of the address space: a caller asked for
/// something that cannot be (as opposed to EC2 refusing for lack of space,
/// which is an [`Ec2Error`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    #[error("subnet {0} is not between /16 and /28 (VPC subnets are /16 to /28)")]
    SubnetSize(Ipv4Net),
    #[error("reservation {0} has host bits set (write the network address)")]
    ReservationNotAligned(Ipv4Net),
    #[error("reservation {reservation} is not inside subnet {subnet}")]
    ReservationOutside {
        reservation: Ipv4Net,
        subnet: Ipv4Net,
    },
    #[error("reservations {0} and {1} overlap (reservations in a subnet cannot overlap)")]
    ReservationOverlap(Ipv4Net, Ipv4Net),
    #[error("address {0} is outside the subnet")]
    OutsideSubnet(Ipv4Addr),
    #[error("address {0} is one of the five AWS-reserved addresses")]
    AwsReserved(Ipv4Addr),
    #[error("address {0} is already in use")]
    InUse(Ipv4Addr),
    #[error("address {0} is not in use")]
    NotInUse(Ipv4Addr),
    #[error("prefix {0} is not free (an address in it is used, reserved by AWS, or it is delegated already)")]
    BlockNotFree(Ipv4Net),
    #[error("prefix {0} is not an aligned /28")]
    NotAPrefix(Ipv4Net),
    #[error("no such ENI")]
    NoSuchEni,
    #[error("no such subnet")]
    NoSuchSubnet,
}
