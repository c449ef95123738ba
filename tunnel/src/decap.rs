//! Decapsulation: validate a received tunnel packet and say where its inner
//! Ethernet frame is.
//!
//! Contract: for any input bytes these functions return without panicking
//! and without allocating; they never modify the packet. Every packet that
//! is not a well-formed Ethernet-over-GRE packet yields a [`DecapError`], one
//! variant per drop reason, whose [`as_str`](DecapError::as_str) is the
//! counter name. What is accepted: GRE version 0 with any combination of the
//! C, K and S flags (Linux `gretap` and OVS send K alone, or nothing; C and S
//! are optional on send), protocol type 0x6558, a correct checksum when C is
//! set, and an inner frame of at least an Ethernet header.
//!
//! Demultiplexing is not done here: the result carries the key and, for raw
//! IPv4, the outer addresses, and the daemon looks up its tunnel by
//! [`TunnelKey`].
//!
//! Outer IPv4 fragments are refused ([`DecapError::Fragment`]) rather than
//! reassembled: a raw IPv4 socket receives packets after the host's IP stack
//! has reassembled them, so a fragment reaching this function is malformed
//! input, not traffic to rebuild. Outer IPv4 options are skipped per IHL.

use core::net::Ipv4Addr;
use core::ops::Range;

use yard_wire::gre::{GreOptions, GrePacket};
use yard_wire::ipv4::Ipv4Packet;
use yard_wire::WireError;

use crate::{TunnelKey, ETHERNET_HEADER_LEN, ETHERTYPE_TEB, IP_PROTOCOL_GRE};

/// Why a received tunnel packet was dropped; one counter per variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, thiserror::Error)]
pub enum DecapError {
    /// The packet ends before a header it announces (outer IPv4 header or
    /// total length, GRE base header or options), or the inner frame is
    /// shorter than an Ethernet header.
    #[error("truncated: the packet ends before the headers it announces")]
    Truncated,
    /// The GRE version is not 0.
    #[error("GRE version is not 0")]
    Version,
    /// A GRE flag other than C, K or S is set (routing, strict source route,
    /// recursion control or a reserved bit).
    #[error("GRE flags other than checksum, key and sequence are set")]
    UnknownFlags,
    /// The GRE checksum does not match header and payload.
    #[error("GRE checksum does not match")]
    Checksum,
    /// The GRE protocol type is not 0x6558 (Transparent Ethernet Bridging).
    #[error("GRE payload is not Ethernet (protocol type is not 0x6558)")]
    NotEthernet,
    /// The outer IP version is not 4.
    #[error("outer IP version is not 4")]
    IpVersion,
    /// The outer IPv4 IHL is below 5.
    #[error("outer IPv4 header length (IHL) is below 5")]
    IpHeaderLength,
    /// The outer IPv4 total length is shorter than its header.
    #[error("outer IPv4 total length is shorter than its header")]
    IpTotalLength,
    /// The outer IPv4 header checksum does not match.
    #[error("outer IPv4 header checksum does not match")]
    IpChecksum,
    /// The outer IPv4 packet is a fragment (MF set or offset ≠ 0).
    #[error("outer IPv4 packet is a fragment")]
    Fragment,
    /// The outer IPv4 protocol is not 47 (GRE).
    #[error("outer IPv4 protocol is not GRE (47)")]
    NotGre,
}

impl DecapError {
    /// Every reason, in declaration order: `ALL[e as usize] == e`, so a
    /// `[u64; DecapError::ALL.len()]` indexed by `e as usize` counts them.
    pub const ALL: [Self; 11] = [
        Self::Truncated,
        Self::Version,
        Self::UnknownFlags,
        Self::Checksum,
        Self::NotEthernet,
        Self::IpVersion,
        Self::IpHeaderLength,
        Self::IpTotalLength,
        Self::IpChecksum,
        Self::Fragment,
        Self::NotGre,
    ];

    /// A short stable name, for per-reason counters.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Truncated => "truncated",
            Self::Version => "bad-version",
            Self::UnknownFlags => "unknown-flags",
            Self::Checksum => "bad-checksum",
            Self::NotEthernet => "not-ethernet",
            Self::IpVersion => "not-ipv4",
            Self::IpHeaderLength => "bad-ihl",
            Self::IpTotalLength => "bad-total-length",
            Self::IpChecksum => "bad-ip-checksum",
            Self::Fragment => "fragment",
            Self::NotGre => "not-gre",
        }
    }
}

impl From<WireError> for DecapError {
    /// The counted reason for what the outer IPv4 and the GRE views refuse.
    /// A total length past the buffer is a truncated packet, one below the
    /// header a bad total length. The views used here return no other
    /// errors; the rest are listed so a new one must be placed here.
    fn from(e: WireError) -> Self {
        match e {
            WireError::Truncated { .. } => Self::Truncated,
            WireError::BadVersion(_) => Self::IpVersion,
            WireError::BadHeaderLen(_) => Self::IpHeaderLength,
            WireError::BadTotalLen {
                total_len,
                header_len,
                ..
            } if usize::from(total_len) < header_len => Self::IpTotalLength,
            WireError::BadTotalLen { .. } => Self::Truncated,
            WireError::GreVersion(_) => Self::Version,
            WireError::GreUnknownFlags(_) => Self::UnknownFlags,
            WireError::UnsupportedArp
            | WireError::UnsupportedProtocol(_)
            | WireError::Fragmented
            | WireError::NotEchoRequest(_)
            | WireError::ErrorNotAllowed(_)
            | WireError::TooLong { .. }
            | WireError::BufferTooSmall { .. } => Self::Truncated,
        }
    }
}

/// A valid GRE packet: where its inner frame is and which options it had.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Decapped {
    /// Offset of the inner Ethernet frame in the slice given to decap.
    pub inner_offset: usize,
    /// Length of the inner Ethernet frame.
    pub inner_len: usize,
    /// The GRE options the packet carried (key, sequence number, whether it
    /// had a — valid — checksum).
    pub options: GreOptions,
}

impl Decapped {
    /// The inner frame's range in the slice given to decap.
    pub const fn inner_range(&self) -> Range<usize> {
        self.inner_offset..self.inner_offset + self.inner_len
    }

    /// The inner frame, given the slice that was decapsulated.
    ///
    /// # Panics
    /// If `packet` is shorter than the slice that was decapsulated.
    pub fn inner<'a>(&self, packet: &'a [u8]) -> &'a [u8] {
        &packet[self.inner_range()]
    }
}

/// A valid raw GRE-over-IPv4 packet: the GRE result plus the outer header
/// fields needed to demultiplex it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv4Decapped {
    /// Outer source address: the remote tunnel endpoint.
    pub src: Ipv4Addr,
    /// Outer destination address: the local tunnel endpoint.
    pub dst: Ipv4Addr,
    /// The GRE part; its offset is relative to the start of the IPv4 packet.
    pub gre: Decapped,
}

impl Ipv4Decapped {
    /// The key the daemon demultiplexes by: outer source and GRE key.
    pub const fn tunnel_key(&self) -> TunnelKey {
        TunnelKey::new(self.src, self.gre.options.key)
    }

    /// The inner frame's range in the IPv4 packet.
    pub const fn inner_range(&self) -> Range<usize> {
        self.gre.inner_range()
    }
}

/// Decapsulates a GRE packet (header + inner frame), e.g. a GRE-in-UDP
/// payload. The whole slice is the GRE packet.
///
/// # Errors
/// [`DecapError::Truncated`], [`DecapError::Version`],
/// [`DecapError::UnknownFlags`], [`DecapError::Checksum`] or
/// [`DecapError::NotEthernet`].
pub fn decap_gre(packet: &[u8]) -> Result<Decapped, DecapError> {
    decap_gre_at(packet, 0)
}

/// [`decap_gre`] for a GRE packet found at `base` in the caller's slice; the
/// inner offset is relative to that slice. Inlined so that the result is
/// built in place rather than copied field by field, which costs a
/// store-forwarding stall per copy.
#[inline(always)]
fn decap_gre_at(packet: &[u8], base: usize) -> Result<Decapped, DecapError> {
    let gre = GrePacket::new_checked(packet)?;
    // Integrity first: a corrupted protocol type is a checksum failure.
    if !gre.verify_checksum() {
        return Err(DecapError::Checksum);
    }
    if gre.protocol() != ETHERTYPE_TEB {
        return Err(DecapError::NotEthernet);
    }
    let inner_offset = gre.header_len();
    let inner_len = packet.len() - inner_offset;
    if inner_len < ETHERNET_HEADER_LEN {
        return Err(DecapError::Truncated);
    }
    Ok(Decapped {
        inner_offset: base + inner_offset,
        inner_len,
        options: gre.options(),
    })
}

/// Decapsulates an IPv4 packet carrying GRE, as a raw IPv4 socket for
/// protocol 47 delivers it (outer header included). Bytes past the outer
/// total length are ignored.
///
/// # Errors
/// Any [`DecapError`]: the outer header's reasons (truncated, `not-ipv4`,
/// `bad-ihl`, `bad-total-length`, `bad-ip-checksum`, `fragment`, `not-gre`),
/// then [`decap_gre`]'s.
pub fn decap_ipv4(packet: &[u8]) -> Result<Ipv4Decapped, DecapError> {
    let ip = Ipv4Packet::new_checked(packet)?;
    if !ip.verify_checksum() {
        return Err(DecapError::IpChecksum);
    }
    if ip.is_fragment() {
        return Err(DecapError::Fragment);
    }
    if ip.protocol() != IP_PROTOCOL_GRE {
        return Err(DecapError::NotGre);
    }
    let gre = decap_gre_at(ip.payload(), ip.header_len())?;
    Ok(Ipv4Decapped {
        src: ip.src(),
        dst: ip.dst(),
        gre,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_indexed_by_discriminant() {
        for (i, reason) in DecapError::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, i);
        }
        let mut names: Vec<_> = DecapError::ALL.iter().map(|e| e.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DecapError::ALL.len());
    }
}
