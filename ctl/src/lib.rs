//! `yard-ctl`: the control API of Switchyard.
//!
//! Where this crate sits among the others, and why: `docs/ARCHITECTURE.md`.
//!
//! This crate owns the contract between `yardd` and its clients: the versioned
//! request and reply types ([`api`]), the small value types they carry
//! ([`types`]), the rule for interface names both sides check ([`ifname`]),
//! where the control socket and state live by default ([`paths`]), a
//! blocking client ([`client`]), and the CNI plugin `yard-cni` built on it
//! ([`cni`]). Of the other Switchyard crates it depends
//! only on `yard-wire` (pure, for prefix arithmetic), and it performs no I/O
//! except in [`client`], [`cni`] (which also runs IPAM plugins) and
//! [`container`] (`yardctl run`'s namespaces and process).

pub mod api;
pub mod cli;
pub mod client;
pub mod cni;
pub mod container;
pub mod docker;
pub mod engine;
pub mod ifname;
pub mod paths;
pub mod pcap;
pub mod types;

pub use api::{Reply, Request, API_VERSION};
pub use types::{Ipv4Cidr, MacAddr};
