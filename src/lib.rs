//! subnetsim: a discrete-event simulator of EKS cluster churn and VPC subnet
//! /28 fragmentation under the VPC CNI's prefix delegation.
//!
//! Layers, lowest first (each depends only on those above it in this list):
//! - [`time`]: integer-millisecond time (a leaf every layer uses);
//! - [`addr`]: subnet address space and EC2 allocation;
//! - [`catalog`]: the instance-type catalogue and the max-pods calculator;
//! - [`ipamd`]: the VPC CNI's per-node IP manager;
//! - [`inspect`]: reading a real subnet's state from AWS CLI output.

pub mod addr;
pub mod catalog;
pub mod inspect;
pub mod ipamd;
pub mod time;
