//! `yard-wire`: Switchyard's one packet library.
//!
//! Contract: pure functions and typed views over caller-owned bytes — no I/O,
//! no allocation, no clocks, no `unsafe`, and no dependency on the other
//! Switchyard crates, so `yard-nat`, `yard-tunnel` and the daemon all read
//! and write packets through the same code, and every part here can be
//! fuzzed and benchmarked on its own.
//!
//! - [`checksum`]: the Internet checksum — full (RFC 1071), incremental
//!   (RFC 1624) and the partial (virtio `NEEDS_CSUM`) case.
//! - [`ethernet`]: Ethernet II frame view and the EtherType numbers
//!   ([`ethernet::ethertype`]).
//! - [`vlan`]: 802.1Q / 802.1ad tag view.
//! - [`arp`]: Ethernet/IPv4 ARP view, and the request and reply frames.
//! - [`ip`]: what IPv4 and IPv6 share — the protocol numbers.
//! - [`ipv4`]: IPv4 header view.
//! - [`icmp`]: ICMPv4 view, the echo reply made in place and ICMP errors.
//! - [`tcp`]: TCP header view, flags and the MSS option.
//! - [`udp`]: UDP header view.
//! - [`gre`]: GRE header view (RFC 2784, key and sequence number from
//!   RFC 2890) and the options it carries.
//! - [`cidr`]: IPv4 prefixes and their arithmetic ([`cidr::Ipv4Cidr`]).
//! - [`WireError`]: why bytes could not be read or written.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod arp;
pub mod checksum;
pub mod cidr;
mod error;
pub mod ethernet;
pub mod gre;
pub mod icmp;
pub mod ip;
pub mod ipv4;
pub mod tcp;
pub mod udp;
pub mod vlan;

pub use error::WireError;
