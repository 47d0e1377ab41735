//! Layer 3: the cluster: nodes, pods, the scheduler's placement policy and
//! workloads. The event handlers that tie them to ipamd and EC2 are in
//! [`crate::sim`].

pub mod autoscaling;
pub mod hpa;
pub mod scheduler;
pub mod spec;
