//! `yard-switch`: the Switchyard daemon, `yardd`, as a library.
//!
//! The datapath ([`datapath`]) owns the ports, the networks and their forwarding
//! databases and runs the per-frame [`bridge`] pipeline; the control server
//! ([`control`]) owns the configuration, persists it ([`state`]) and sends the
//! datapath commands. Everything that touches the kernel with `unsafe` lives in
//! [`sys`].

pub mod attach;
pub mod bridge;
pub mod capture;
pub mod config;
pub mod control;
pub mod datapath;
pub mod fdb;
pub mod fragment;
pub mod frame;
pub mod l3;
pub mod netconf;
pub mod netns;
pub mod offload;
pub mod overlay;
pub mod port;
pub mod state;
pub mod sys;
pub mod verdict;
