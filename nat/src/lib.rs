//! `yard-nat`: Switchyard's L3 gateway, connection tracking and NAT.
//!
//! Where this crate sits among the others, and why: `docs/ARCHITECTURE.md`.
//!
//! Pure: byte slices in, verdicts and rewritten bytes out. No I/O, no clocks
//! (time is passed in), no threads; so every path is testable and benchable
//! without a daemon, a socket or root.
//!
//! - [`flow`]: the 5-tuple ([`flow::FlowKey`]) that identifies a connection.
//! - [`classify`]: which flow an IPv4 packet belongs to ([`classify::flow_of`]).
//!   The packets themselves are read and written through `yard_wire`'s views.
//! - [`rewrite`]: applying a translation to a packet, ICMP errors included
//!   (RFC 5508).
//! - [`conntrack`]: the connection table, TCP state machine and timeouts.
//! - [`mapping`]: SNAT port allocation (RFC 4787, 5382, 5508).
//! - [`rules`]: firewall rules (first match wins) and the table of switched
//!   flows they allowed.

pub mod classify;
pub mod conntrack;
pub mod flow;
pub mod frag;
pub mod gateway;
pub mod mapping;
pub mod rewrite;
pub mod rules;
