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
//! - [`vnet`]: the virtio-net header TAP and AF_PACKET put before a frame.
//! - [`offload`]: a frame's offload state ([`offload::Offload`]), which
//!   travels with its bytes, and finishing a partial checksum in software.
//! - [`gso`]: GSO segmentation in software, from (bytes, offload) to a
//!   [`gso::SegmentSink`].
//! - [`fragment`]: IPv4 fragmentation to fit an MTU, into the same sink.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod checksum;
pub mod fragment;
pub mod gso;
pub mod offload;
pub mod vnet;
