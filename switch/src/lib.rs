//! `yard-switch`: the Switchyard daemon, `yardd`, as a library.
//!
//! Three parts, one folder each (the design of record, with the threads,
//! the data path and the control API: `docs/ARCHITECTURE.md`):
//!
//! - [`dataplane`]: everything that touches frames — the frame buffer, the
//!   L2 bridge and its forwarding databases, ports, tunnels, software
//!   offloads and the datapath threads that run them. It takes commands and
//!   answers queries; it never reads configuration files or sockets of its own.
//! - [`control`]: the control server on yardd's Unix socket, the
//!   configuration and its validation, the state file, and attaching ports
//!   (turning a port spec into a live device). It drives the data plane only
//!   through [`dataplane::threads::DatapathHandle`].
//! - [`relay`]: the host uplink's relay — the containers' flows to the
//!   outside through yardd's own host sockets, on a thread of its own.
//! - [`sys`]: the OS layer — TAP devices, AF_PACKET and raw sockets, netlink,
//!   network namespaces. The only module with `unsafe`.

pub mod cli;
pub mod control;
pub mod dataplane;
pub mod relay;
pub mod sys;
