//! Layer 2: the VPC CNI's per-node IP address manager (ipamd), talking to
//! EC2 through [`crate::addr::Ec2`]'s operations only. See
//! `docs/ipamd-model.md` for what is modelled and each rule's source.

pub mod config;
pub mod node;
pub mod policy;
pub mod steady;

pub use config::{CniConfig, PodAddressPick};
pub use node::{EniSubnets, InitOutcome, IpamEvent, IpamSpec, NodeIpam, PodAddr};
