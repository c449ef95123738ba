//! Ethernet over GRE (RFC 2784, with key and sequence number from RFC 2890) and
//! GRE-in-UDP (RFC 8086), as pure functions on byte slices.
//!
//! Where this crate sits among the others, and why: `docs/ARCHITECTURE.md`.
//!
//! This crate owns the wire formats of Switchyard's tunnel ports and nothing
//! else: it never opens a socket, never allocates (it is `no_std` outside its
//! own tests, with no `alloc`), never logs and contains no `unsafe`. The daemon
//! owns the sockets, the per-tunnel counters and the demultiplexing by
//! [`TunnelKey`].
//!
//! What is on the wire is what Linux `gretap` and Open vSwitch `gre` ports
//! exchange: protocol type 0x6558 (Transparent Ethernet Bridging), version 0,
//! optionally a checksum (C), a key (K) and a sequence number (S).
//!
//! - **Encapsulation** writes the outer headers into the headroom in front of
//!   an inner Ethernet frame that already sits in the buffer, so the frame is
//!   never copied: [`encap_ipv4`] writes IPv4 (protocol 47) + GRE for a raw
//!   socket with `IP_HDRINCL`; [`encap_gre`] writes only the GRE header, for
//!   GRE-in-UDP, where the kernel's UDP socket adds UDP and IP.
//! - **Decapsulation** validates and reports where the inner frame is:
//!   [`decap_ipv4`] for what a raw IPv4 socket delivers (outer IPv4 header
//!   included), [`decap_gre`] for a UDP payload. A packet that must be dropped
//!   yields a [`DecapError`] whose [`DecapError::as_str`] names the counter.
//! - **MTU**: [`overlay_mtu`] is the largest inner IP MTU that fits the
//!   underlay without fragmenting the outer packet.
//!
//! The bytes themselves — the GRE header view and its options, the IPv4
//! header view and the [`Ipv4Repr`](yard_wire::ipv4::Ipv4Repr) the outer
//! header is emitted from, the Internet checksum — are `yard_wire`'s; this
//! crate decides what to write and which drop to count.
//!
//! Abbreviations used throughout: GRE = Generic Routing Encapsulation,
//! TEB = Transparent Ethernet Bridging, DF = IPv4 Don't Fragment,
//! MF = More Fragments, IHL = IPv4 Internet Header Length (in 32-bit words),
//! headroom = bytes of the buffer in front of the inner frame.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod decap;
pub mod encap;
pub mod mtu;

use core::net::Ipv4Addr;

use yard_wire::{ethernet, gre, ip, ipv4};

pub use decap::{decap_gre, decap_ipv4, DecapError, Decapped, Ipv4Decapped};
pub use encap::{encap_gre, encap_ipv4, EncapError, Ipv4Outer};
pub use mtu::{encap_overhead, overlay_mtu, Carrier};
/// The GRE options a tunnel sends, and a decapsulated packet carried.
pub use yard_wire::gre::GreOptions;

/// IP protocol number of GRE, the outer IPv4 header's protocol field.
pub const IP_PROTOCOL_GRE: u8 = ip::protocol::GRE;

/// GRE protocol type of an Ethernet frame payload (Transparent Ethernet
/// Bridging), what `gretap` and OVS `gre` ports use.
pub const ETHERTYPE_TEB: u16 = ethernet::ethertype::TEB;

/// UDP destination port for GRE-in-UDP (RFC 8086, IANA "gre-in-udp").
pub const GRE_IN_UDP_PORT: u16 = 4754;

/// Default TTL of the outer IPv4 header, as Linux and OVS use.
pub const DEFAULT_TTL: u8 = 64;

/// Length of an Ethernet header without VLAN tag; the shortest inner frame
/// decapsulation accepts.
pub const ETHERNET_HEADER_LEN: usize = ethernet::HEADER_LEN;

/// Headroom that is always enough for [`encap_ipv4`]: outer IPv4 header
/// without options (20) + the longest GRE header (16).
pub const MAX_IPV4_ENCAP_HEADROOM: usize = ipv4::HEADER_LEN + gre::MAX_HEADER_LEN;

/// What the daemon demultiplexes received tunnel packets by: the remote
/// endpoint and the GRE key (none when the packet carried no key).
///
/// For raw GRE the remote is the outer IPv4 source ([`Ipv4Decapped::tunnel_key`]);
/// for GRE-in-UDP it is the source address the UDP socket reports, combined
/// with [`Decapped::options`]`.key`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TunnelKey {
    /// The remote tunnel endpoint (outer source address of received packets).
    pub remote: Ipv4Addr,
    /// The GRE key, `None` for a tunnel without key.
    pub key: Option<u32>,
}

impl TunnelKey {
    /// The demultiplexing key of a tunnel to `remote` with GRE key `key`.
    pub const fn new(remote: Ipv4Addr, key: Option<u32>) -> Self {
        Self { remote, key }
    }
}
