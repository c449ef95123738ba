//! `yard-wire`: Switchyard's one packet library.
//!
//! Contract: pure functions and typed views over caller-owned bytes — no I/O,
//! no allocation, no clocks, no `unsafe`, and no dependency on the other
//! Switchyard crates, so `yard-nat`, `yard-tunnel` and the daemon all read
//! and write packets through the same code, and every part here can be
//! fuzzed and benchmarked on its own. `no_std` outside its tests. Where it
//! sits among the crates: `docs/ARCHITECTURE.md`.
//!
//! # Shape
//!
//! One module per wire format, each with a view `XxxPacket<T: AsRef<[u8]>>`
//! (`EthernetFrame` for Ethernet): `new_checked` on untrusted bytes, after
//! which no accessor panics; `new_unchecked` for bytes already checked or
//! being built; getters in host order; setters for `T: AsMut<[u8]>` that
//! write one field (the ones documented as such keep a checksum right
//! incrementally). Field offsets are named ranges inside each module, and
//! big-endian reads and writes happen only there. Packets the project
//! writes itself are built from a small struct emitted into a caller's
//! buffer — "parse with a view, build with a `Repr`": [`ipv4::Ipv4Repr`],
//! [`arp::ArpFrame`], [`icmp::IcmpErrorRepr`] (with [`icmp::build_icmp_error`]),
//! [`gre::GreOptions`]. Errors are [`WireError`], about bytes only; what a
//! caller does with a well-formed packet it cannot use is its own error.
//! Modules are named per version (`ipv4`, `ipv6`, `icmp` for ICMPv4) so
//! that `icmpv6` and `ndp` views sit beside them; what both IP versions
//! share lives in [`ip`].
//!
//! # Modules and their contracts
//!
//! - [`checksum`]: the Internet checksum — full (RFC 1071), incremental
//!   (RFC 1624) and the partial (virtio `NEEDS_CSUM`) case; the only
//!   implementation in the project. Pure arithmetic, never panics.
//! - [`ethernet`]: Ethernet II frame view (14-byte header checked) and the
//!   EtherType numbers ([`ethernet::ethertype`]: `IPV4`, `ARP`, `VLAN`,
//!   `QINQ`, `IPV6`, `TEB`).
//! - [`vlan`]: 802.1Q / 802.1ad tag view over a tagged frame's payload
//!   (TCI and inner EtherType checked); pushing and popping tags is the
//!   caller's, who owns the headroom.
//! - [`arp`]: Ethernet/IPv4 ARP view (anything else refused) and the
//!   request and reply frames ([`arp::ArpFrame`]).
//! - [`ip`]: what IPv4 and IPv6 share — the protocol numbers (IPv6
//!   extension header types among them).
//! - [`ipv4`]: IPv4 header view (version, IHL and total length checked;
//!   `new_quoted` for the truncated copy inside an ICMP error) and
//!   [`ipv4::Ipv4Repr`], which emits a complete option-less header.
//! - [`ipv6`]: IPv6 fixed header view (version and payload length checked;
//!   extension headers are the payload), what GSO over IPv6 reads and
//!   writes; no `Repr` yet, as the project writes no IPv6 header itself.
//! - [`icmp`]: ICMPv4 view, the echo reply made in place, and ICMP errors
//!   (fragmentation needed included) built as RFC 1812 allows, at most 576
//!   bytes.
//! - [`igmp`]: IGMP v1–v3 view (reports, leaves, queries), the group
//!   records IGMPv3 and MLDv2 reports share, and [`igmp::IgmpQueryRepr`],
//!   the IGMPv3 query with Router Alert a querier sends.
//! - [`mld`]: MLD v1–v2 view over ICMPv6, the walk past IPv6 extension
//!   headers to it, and [`mld::MldQueryRepr`], the MLDv2 query (IPv6 and
//!   hop-by-hop headers included) a querier sends.
//! - [`tcp`]: TCP header view (data offset and options checked), flags, the
//!   one option walker ([`tcp::TcpOptionIter`]), MSS and window scale, MSS
//!   clamping that respects a partial checksum.
//! - [`udp`]: UDP header view (8-byte header checked; a fragment's or a
//!   quote's payload is bounded by the buffer).
//! - [`gre`]: GRE header view (RFC 2784, key and sequence number from
//!   RFC 2890; version 0 with only C, K and S) and [`gre::GreOptions`].
//! - [`cidr`]: IPv4 prefixes and their arithmetic ([`cidr::Ipv4Cidr`]);
//!   the API types and the gateway delegate to it.
//! - [`vnet`]: the virtio-net header TAP and AF_PACKET put before a frame.
//! - [`offload`]: a frame's offload state ([`offload::Offload`]), which
//!   travels with its bytes, and finishing a partial checksum in software.
//! - [`gso`]: GSO segmentation in software, from (bytes, offload) to a
//!   [`gso::SegmentSink`], reading and writing headers through the views
//!   above.
//! - [`gro`]: receive coalescing in software, the inverse of [`gso`]:
//!   consecutive TCP/IPv4 segments of one flow merged in place into one
//!   `GSO_TCPV4` frame with a partial checksum, by Linux GRO's rules.
//! - [`fragment`]: IPv4 fragmentation to fit an MTU, into the same sink,
//!   through the Ethernet and IPv4 views.
//! - [`WireError`]: why bytes could not be read or written.
//!
//! # Hand-written, not `smoltcp::wire`
//!
//! The views could have been built on `smoltcp::wire`, which exists for
//! this. `benches/benches/wire.rs` compares the two on the same frames
//! (criterion, `cargo bench -p yard-benches --bench wire -- --warm-up-time 1
//! --measurement-time 3`; 2 shared vCPUs of an AMD EPYC, Linux 6.18,
//! 2026-12-04, median of the run, a second run within ±10%):
//!
//! | operation | yard-wire | smoltcp 0.12 |
//! |---|---|---|
//! | parse Ethernet → IPv4 → TCP, checked, read addresses, ports, flags (64 B) | 5.6 ns | 5.1 ns |
//! | SNAT in place: IPv4 source + TCP source port, checksums kept (64 B) | 6.2 ns | 28.4 ns (recomputes both checksums) |
//! | the same, 1500 B | 6.3 ns | 105 ns (recomputes both checksums) |
//! | the same through smoltcp's views with yard-wire's RFC 1624 functions, 64 B / 1500 B | — | 6.1 / 7.3 ns |
//!
//! All variants allocate nothing. The views cost the same either way
//! (parse within half a nanosecond — smoltcp checks less: not the IP
//! version, and its error carries nothing — and rewrite within noise when
//! both update incrementally); what smoltcp lacks decides it: no
//! incremental checksum (its only update is a full recompute, 4.6× slower
//! on a small frame and 17× on a full one), no partial (virtio
//! `NEEDS_CSUM`) checksum handling, no GRE, no quoted-packet view for ICMP
//! errors, and errors that do not say what was wrong, where the drop
//! counters and `DecapError` need one reason per malformation. So the views
//! stay hand-written, and smoltcp is only a dev-dependency of the bench.
//!
//! The checksum itself sums native-order 32-bit halves of 8-byte words
//! without carries and swaps once (the loop vectorises): 1500 B in about
//! 42 ns, 64 KiB in 1.35 µs on the same machine, three times the speed of
//! the add-with-carry loop it replaced and equal to the GRE code's copy it
//! absorbed.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod arp;
pub mod checksum;
pub mod cidr;
mod error;
pub mod ethernet;
pub mod fragment;
pub mod gre;
pub mod gro;
pub mod gso;
pub mod icmp;
pub mod igmp;
pub mod ip;
pub mod ipv4;
pub mod ipv6;
pub mod mld;
pub mod offload;
pub mod tcp;
#[cfg(test)]
mod testutil;
pub mod udp;
pub mod vlan;
pub mod vnet;

pub use error::WireError;
