//! The outer IPv4 header of raw GRE as a typed view over bytes, and the
//! parameters Switchyard sends it with.
//!
//! Contract: [`Ipv4Packet::new_checked`] accepts a buffer holding an IPv4
//! header (version 4, IHL ≥ 5) and the whole packet its total length claims;
//! after it no accessor panics. Bytes past the total length (link padding) are
//! ignored. The header checksum, the protocol and fragmentation are checked by
//! [`decap_ipv4`](crate::decap_ipv4), which knows what to do about them. Options
//! are never written and are skipped on receive, per IHL.
//!
//! This view exists, rather than etherparse's `Ipv4HeaderSlice`, because
//! decapsulation needs one counted reason per malformation and encapsulation
//! needs in-place setters; the tests use etherparse as an independent check.

use core::net::Ipv4Addr;
use core::ops::Range;

use crate::checksum;
use crate::decap::DecapError;

/// Length of an IPv4 header without options; the only length Switchyard sends.
pub const HEADER_LEN: usize = 20;

/// Byte offsets of the fields.
mod field {
    use core::ops::Range;

    /// Version (high nibble) and IHL (low nibble).
    pub const VERSION_IHL: usize = 0;
    /// DSCP and ECN.
    pub const DSCP_ECN: usize = 1;
    /// Total length of the packet, header included.
    pub const TOTAL_LEN: Range<usize> = 2..4;
    /// Identification.
    pub const IDENT: Range<usize> = 4..6;
    /// Flags (3 bits) and fragment offset (13 bits).
    pub const FLAGS_FRAGMENT: Range<usize> = 6..8;
    /// Time to live.
    pub const TTL: usize = 8;
    /// Protocol of the payload.
    pub const PROTOCOL: usize = 9;
    /// Header checksum.
    pub const CHECKSUM: Range<usize> = 10..12;
    /// Source address.
    pub const SRC: Range<usize> = 12..16;
    /// Destination address.
    pub const DST: Range<usize> = 16..20;
}

/// Don't Fragment bit of the flags-and-fragment-offset word.
const FLAG_DF: u16 = 0x4000;
/// More Fragments bit.
const FLAG_MF: u16 = 0x2000;
/// Fragment offset mask (in 8-byte units).
const FRAGMENT_OFFSET: u16 = 0x1fff;

/// How the outer IPv4 header of an encapsulated packet is filled in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv4Outer {
    /// Local tunnel endpoint.
    pub src: Ipv4Addr,
    /// Remote tunnel endpoint.
    pub dst: Ipv4Addr,
    /// Identification, from the caller's per-tunnel counter. (With
    /// `IP_HDRINCL`, Linux replaces an identification of 0 with its own.)
    pub ident: u16,
    /// Time to live; [`DEFAULT_TTL`](crate::DEFAULT_TTL) (64) as Linux and OVS.
    pub ttl: u8,
    /// Set DF, as OVS does by default (`options:df_default=true`), so an
    /// oversized packet is refused by the underlay rather than fragmented.
    pub dont_fragment: bool,
}

impl Ipv4Outer {
    /// Outer header from `src` to `dst` as OVS sends it: TTL 64, DF set,
    /// identification 0 (set [`ident`](Self::ident) from a counter).
    #[inline]
    pub const fn new(src: Ipv4Addr, dst: Ipv4Addr) -> Self {
        Self {
            src,
            dst,
            ident: 0,
            ttl: crate::DEFAULT_TTL,
            dont_fragment: true,
        }
    }
}

/// A typed view of an IPv4 packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps `buffer` without any check; accessors may then panic.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps untrusted `buffer`, checking version, IHL and total length
    /// against the buffer. After this no accessor panics.
    ///
    /// # Errors
    /// [`DecapError::Truncated`], [`DecapError::IpVersion`],
    /// [`DecapError::IpHeaderLength`] or [`DecapError::IpTotalLength`].
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, DecapError> {
        let packet = Self::new_unchecked(buffer);
        packet.check()?;
        Ok(packet)
    }

    /// The checks of [`new_checked`](Self::new_checked).
    #[inline]
    pub fn check(&self) -> Result<(), DecapError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(DecapError::Truncated);
        }
        if self.version() != 4 {
            return Err(DecapError::IpVersion);
        }
        let header_len = self.header_len();
        if header_len < HEADER_LEN {
            return Err(DecapError::IpHeaderLength);
        }
        if len < header_len {
            return Err(DecapError::Truncated);
        }
        let total_len = usize::from(self.total_len());
        if total_len < header_len {
            return Err(DecapError::IpTotalLength);
        }
        if len < total_len {
            return Err(DecapError::Truncated);
        }
        Ok(())
    }

    /// Gives back the wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    fn read_u16(&self, range: Range<usize>) -> u16 {
        let bytes = &self.buffer.as_ref()[range];
        u16::from_be_bytes([bytes[0], bytes[1]])
    }

    #[inline]
    fn read_addr(&self, range: Range<usize>) -> Ipv4Addr {
        let bytes = &self.buffer.as_ref()[range];
        Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])
    }

    /// The version field (4 for everything accepted by `new_checked`).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION_IHL] >> 4
    }

    /// The header length in bytes (IHL × 4), options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VERSION_IHL] & 0x0f) * 4
    }

    /// The DSCP and ECN byte.
    #[inline]
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    /// The total length field.
    #[inline]
    pub fn total_len(&self) -> u16 {
        self.read_u16(field::TOTAL_LEN)
    }

    /// The identification field.
    #[inline]
    pub fn ident(&self) -> u16 {
        self.read_u16(field::IDENT)
    }

    /// Whether DF is set.
    #[inline]
    pub fn dont_fragment(&self) -> bool {
        self.read_u16(field::FLAGS_FRAGMENT) & FLAG_DF != 0
    }

    /// Whether MF is set.
    #[inline]
    pub fn more_fragments(&self) -> bool {
        self.read_u16(field::FLAGS_FRAGMENT) & FLAG_MF != 0
    }

    /// The fragment offset in bytes.
    #[inline]
    pub fn fragment_offset(&self) -> usize {
        usize::from(self.read_u16(field::FLAGS_FRAGMENT) & FRAGMENT_OFFSET) * 8
    }

    /// Whether this packet is a fragment (MF set or a non-zero offset).
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.more_fragments() || self.fragment_offset() != 0
    }

    /// The time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// The payload's protocol number (47 for GRE).
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// The header checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        self.read_u16(field::CHECKSUM)
    }

    /// The source address.
    #[inline]
    pub fn src(&self) -> Ipv4Addr {
        self.read_addr(field::SRC)
    }

    /// The destination address.
    #[inline]
    pub fn dst(&self) -> Ipv4Addr {
        self.read_addr(field::DST)
    }

    /// Whether the header checksum (over IHL × 4 bytes) is valid.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(&self.buffer.as_ref()[..self.header_len()])
    }

    /// The payload: from the end of the header (options skipped) to the end
    /// of the total length.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Writes a complete 20-byte header without options — version/IHL,
    /// DSCP 0, total length, identification, flags, TTL, protocol, addresses —
    /// and its checksum.
    ///
    /// # Panics
    /// If the buffer is shorter than [`HEADER_LEN`]; the encap functions
    /// check this first.
    #[inline]
    pub fn emit(&mut self, outer: &Ipv4Outer, protocol: u8, total_len: u16) {
        let flags = if outer.dont_fragment { FLAG_DF } else { 0 };
        let header = &mut self.buffer.as_mut()[..HEADER_LEN];
        header[field::VERSION_IHL] = 0x45;
        header[field::DSCP_ECN] = 0;
        header[field::TOTAL_LEN].copy_from_slice(&total_len.to_be_bytes());
        header[field::IDENT].copy_from_slice(&outer.ident.to_be_bytes());
        header[field::FLAGS_FRAGMENT].copy_from_slice(&flags.to_be_bytes());
        header[field::TTL] = outer.ttl;
        header[field::PROTOCOL] = protocol;
        header[field::CHECKSUM].copy_from_slice(&[0, 0]);
        header[field::SRC].copy_from_slice(&outer.src.octets());
        header[field::DST].copy_from_slice(&outer.dst.octets());
        let sum = checksum::internet_checksum(header);
        header[field::CHECKSUM].copy_from_slice(&sum.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emit_matches_etherparse() {
        let outer = Ipv4Outer {
            ident: 0x1234,
            ..Ipv4Outer::new(
                Ipv4Addr::new(192, 168, 88, 1),
                Ipv4Addr::new(192, 168, 88, 2),
            )
        };
        let mut bytes = [0u8; 60];
        Ipv4Packet::new_unchecked(&mut bytes[..]).emit(&outer, 47, 60);
        let slice = etherparse::Ipv4HeaderSlice::from_slice(&bytes).unwrap();
        let header = slice.to_header();
        assert_eq!(header.header_checksum, header.calc_header_checksum());
        assert_eq!(header.total_len, 60);
        assert_eq!(header.identification, 0x1234);
        assert!(header.dont_fragment);
        assert!(!header.more_fragments);
        assert_eq!(header.time_to_live, 64);
        assert_eq!(header.protocol, etherparse::IpNumber::GRE);
        assert_eq!(slice.source_addr(), outer.src);
        assert_eq!(slice.destination_addr(), outer.dst);
        let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert!(packet.verify_checksum());
        assert!(!packet.is_fragment());
        assert_eq!(packet.payload().len(), 40);
    }

    #[test]
    fn options_are_skipped() {
        // IHL 6: one 4-byte option (NOPs), then a 4-byte payload.
        let mut bytes = [0u8; 28];
        bytes[0] = 0x46;
        bytes[2..4].copy_from_slice(&28u16.to_be_bytes());
        bytes[20..24].copy_from_slice(&[1, 1, 1, 1]);
        bytes[24..28].copy_from_slice(b"data");
        let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.header_len(), 24);
        assert_eq!(packet.payload(), b"data");
    }
}
