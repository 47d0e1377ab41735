//! subnetsim: a discrete-event simulator of EKS cluster churn and VPC subnet
//! /28 fragmentation under the VPC CNI's prefix delegation.
//!
//! Layers, lowest first (each depends only on those above it in this list):
//! - [`time`]: integer-millisecond time, [`bitmap`], a set of ids, and
//!   [`prefetch`], cache-line hints (leaves every layer uses);
//! - [`addr`]: subnet address space and EC2 allocation;
//! - [`catalog`]: the instance-type catalogue and the max-pods calculator;
//! - [`ipamd`]: the VPC CNI's per-node IP manager;
//! - [`cluster`]: node, pod and workload specs, the scheduler's placement;
//! - [`engine`]: the ordered event queue and named random streams;
//! - [`inspect`]: reading a real subnet's state from AWS CLI output (and
//!   the AWS shapes a run writes);
//! - [`scenario`]: YAML scenarios resolved into validated specs;
//! - [`sim`]: the simulation, wiring the layers to the event queue;
//! - [`experiments`]: many runs of one scenario (variants, `--set`,
//!   parallel runs, `expect:` checks); `sim` knows nothing of it;
//! - [`output`]: CSV, JSON, PNG and SVG files of runs and comparisons.
//!
//! The command-line interface is in the binary (`src/cli.rs`).

pub mod addr;
pub mod bitmap;
pub mod catalog;
pub mod cluster;
pub mod engine;
pub mod experiments;
pub mod inspect;
pub mod ipamd;
pub mod output;
pub mod prefetch;
pub mod scenario;
pub mod sim;
pub mod time;
