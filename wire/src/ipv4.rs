//! IPv4 header view (RFC 791) and [`Ipv4Repr`], the header the project
//! writes.
//!
//! Contract: [`Ipv4Packet::new_checked`] validates version, IHL, total length and that
//! the header fits; after it no accessor panics. The buffer may be longer
//! than the packet (Ethernet padding): [`Ipv4Packet::payload`] stops at the
//! total length. [`Ipv4Packet::new_quoted`] accepts the truncated copy of a
//! packet that an ICMP error carries.
//!
//! Setters that change a header field come in two kinds: `set_src`,
//! `set_dst` and `set_ttl` keep the header checksum right incrementally
//! (RFC 1624); the other setters write the field only, and the caller ends
//! with [`Ipv4Packet::fill_checksum`].
//!
//! Headers the project writes itself (the outer header of a GRE packet, an
//! ICMP error's header) are built from an [`Ipv4Repr`]: its `emit` writes a
//! complete 20-byte header, checksum included, and never options.
//!
//! Abbreviations: MF "more fragments", DF "don't fragment", IHL "internet
//! header length" (in 32-bit words), TOS "type of service" (DSCP + ECN).

use core::net::Ipv4Addr;

use crate::checksum;
use crate::WireError;

/// Field offsets.
mod field {
    use core::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const TOTAL_LEN: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLAGS_FRAG: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;

/// Length of the longest header: IHL 15, 40 bytes of options.
pub const MAX_HEADER_LEN: usize = 60;

/// "Don't fragment" flag bit in the flags/fragment-offset word.
const FLAG_DF: u16 = 0x4000;
/// "More fragments" flag bit.
const FLAG_MF: u16 = 0x2000;
/// Fragment offset mask (in 8-byte units).
const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet in a byte buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps `buffer` without checks. Accessors may panic on a short buffer;
    /// use [`Ipv4Packet::new_checked`] for untrusted input.
    pub fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Wraps `buffer` after checking: version 4, IHL ≥ 5, the header fits in
    /// the buffer, and header length ≤ total length ≤ buffer length.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let p = Self::new_quoted(buffer)?;
        let len = p.buffer.as_ref().len();
        let total = usize::from(p.total_len());
        if total < p.header_len() || total > len {
            return Err(WireError::BadTotalLen {
                total_len: p.total_len(),
                header_len: p.header_len(),
                buffer: len,
            });
        }
        Ok(p)
    }

    /// Wraps the quoted packet of an ICMP error: version 4, IHL ≥ 5 and the
    /// header fits, but the total length may exceed the buffer (the quote is
    /// truncated). No accessor panics after it either; [`Ipv4Packet::payload`]
    /// returns what is present.
    pub fn new_quoted(buffer: T) -> Result<Self, WireError> {
        let len = buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated {
                what: "IPv4 header",
                need: HEADER_LEN,
                have: len,
            });
        }
        let p = Ipv4Packet { buffer };
        if p.version() != 4 {
            return Err(WireError::BadVersion(p.version()));
        }
        if p.ihl() < 5 {
            return Err(WireError::BadHeaderLen(p.ihl()));
        }
        if p.header_len() > len {
            return Err(WireError::Truncated {
                what: "IPv4 header with options",
                need: p.header_len(),
                have: len,
            });
        }
        Ok(p)
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The underlying bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    fn u16_at(&self, r: core::ops::Range<usize>) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[r.start], b[r.start + 1]])
    }

    /// IP version (4).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Internet header length in 32-bit words.
    pub fn ihl(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] & 0x0f
    }

    /// Header length in bytes (IHL × 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.ihl()) * 4
    }

    /// Type of service / DSCP + ECN byte.
    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[field::TOS]
    }

    /// Total length of the packet (header + payload), from the header.
    pub fn total_len(&self) -> u16 {
        self.u16_at(field::TOTAL_LEN)
    }

    /// Identification (groups the fragments of one datagram).
    pub fn ident(&self) -> u16 {
        self.u16_at(field::IDENT)
    }

    /// The "don't fragment" flag.
    pub fn dont_frag(&self) -> bool {
        self.u16_at(field::FLAGS_FRAG) & FLAG_DF != 0
    }

    /// The "more fragments" flag.
    pub fn more_frags(&self) -> bool {
        self.u16_at(field::FLAGS_FRAG) & FLAG_MF != 0
    }

    /// Fragment offset in bytes (the field counts 8-byte units).
    pub fn frag_offset(&self) -> u16 {
        (self.u16_at(field::FLAGS_FRAG) & FRAG_OFFSET_MASK) << 3
    }

    /// True for any fragment: MF set or a non-zero offset.
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }

    /// True for a fragment other than the first: it carries no L4 header.
    pub fn is_later_fragment(&self) -> bool {
        self.frag_offset() != 0
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Protocol of the payload (1 ICMP, 6 TCP, 17 UDP, …).
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// Header checksum field.
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    /// Source address.
    pub fn src(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::SRC];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// Destination address.
    pub fn dst(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::DST];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// Source and destination address bytes, back to back (8 bytes): the
    /// part of the transport pseudo-header that comes from this header, to
    /// sum without copying.
    pub fn addresses(&self) -> &[u8] {
        &self.buffer.as_ref()[field::SRC.start..field::DST.end]
    }

    /// The header, options included.
    pub fn header(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[..self.header_len().min(b.len())]
    }

    /// The payload: from the end of the header to the total length, or to the
    /// end of the buffer if that comes first (a quoted packet). Empty when the
    /// total length is shorter than the header.
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        let (start, end) = self.payload_range();
        &b[start..end]
    }

    fn payload_range(&self) -> (usize, usize) {
        let len = self.buffer.as_ref().len();
        let start = self.header_len().min(len);
        let end = usize::from(self.total_len()).min(len).max(start);
        (start, end)
    }

    /// True when the header checksum is correct.
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(self.header())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    fn set_u16_at(&mut self, r: core::ops::Range<usize>, v: u16) {
        self.buffer.as_mut()[r].copy_from_slice(&v.to_be_bytes());
    }

    /// Mutable underlying bytes.
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    /// Sets version 4 and the IHL (header words). Checksum not updated.
    pub fn set_version_ihl(&mut self, ihl: u8) {
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | (ihl & 0x0f);
    }

    /// Sets the TOS byte. Checksum not updated.
    pub fn set_tos(&mut self, tos: u8) {
        self.buffer.as_mut()[field::TOS] = tos;
    }

    /// Sets the total length. Checksum not updated.
    pub fn set_total_len(&mut self, len: u16) {
        self.set_u16_at(field::TOTAL_LEN, len);
    }

    /// Sets the identification. Checksum not updated.
    pub fn set_ident(&mut self, ident: u16) {
        self.set_u16_at(field::IDENT, ident);
    }

    /// Sets the flags and fragment offset (offset in bytes, a multiple of 8).
    /// Checksum not updated.
    pub fn set_flags_frag(&mut self, dont_frag: bool, more_frags: bool, offset: u16) {
        let mut w = (offset >> 3) & FRAG_OFFSET_MASK;
        if dont_frag {
            w |= FLAG_DF;
        }
        if more_frags {
            w |= FLAG_MF;
        }
        self.set_u16_at(field::FLAGS_FRAG, w);
    }

    /// Sets the protocol. Checksum not updated.
    pub fn set_protocol(&mut self, protocol: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = protocol;
    }

    /// Writes the checksum field as given.
    pub fn set_checksum(&mut self, check: u16) {
        self.set_u16_at(field::CHECKSUM, check);
    }

    /// Sets the TTL, updating the header checksum incrementally.
    pub fn set_ttl(&mut self, ttl: u8) {
        let b = self.buffer.as_ref();
        let old = u16::from_be_bytes([b[field::TTL], b[field::PROTOCOL]]);
        let new = u16::from_be_bytes([ttl, b[field::PROTOCOL]]);
        let c = checksum::update16(self.checksum(), old, new);
        self.buffer.as_mut()[field::TTL] = ttl;
        self.set_checksum(c);
    }

    /// Sets the source address, updating the header checksum incrementally.
    /// (An L4 checksum over the pseudo-header is the caller's business.)
    pub fn set_src(&mut self, addr: Ipv4Addr) {
        let old = u32::from(self.src());
        let c = checksum::update32(self.checksum(), old, u32::from(addr));
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr.octets());
        self.set_checksum(c);
    }

    /// Sets the destination address, updating the header checksum
    /// incrementally.
    pub fn set_dst(&mut self, addr: Ipv4Addr) {
        let old = u32::from(self.dst());
        let c = checksum::update32(self.checksum(), old, u32::from(addr));
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr.octets());
        self.set_checksum(c);
    }

    /// Sets the source address without touching the checksum.
    pub fn set_src_raw(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address without touching the checksum.
    pub fn set_dst_raw(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr.octets());
    }

    /// Recomputes the header checksum from scratch.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.header());
        self.set_checksum(c);
    }

    /// The payload, mutable (same bounds as [`Ipv4Packet::payload`]).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (start, end) = self.payload_range();
        &mut self.buffer.as_mut()[start..end]
    }
}

/// The fields of an IPv4 header without options: what [`Ipv4Repr::emit`]
/// writes, and what [`Ipv4Repr::parse`] reads back (options skipped).
/// Fragmentation fields are not represented: an emitted header has MF clear
/// and offset 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Protocol of the payload ([`crate::ip::protocol`]).
    pub protocol: u8,
    /// Bytes after the header; the total length is 20 more.
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
    /// Identification.
    pub ident: u16,
    /// The "don't fragment" flag.
    pub dont_frag: bool,
    /// Type of service (DSCP and ECN).
    pub tos: u8,
}

impl Ipv4Repr {
    /// The header fields of `packet` (checked, or quoted: a payload length
    /// the buffer does not hold is reported as the header says it).
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Ipv4Repr {
        Ipv4Repr {
            src: packet.src(),
            dst: packet.dst(),
            protocol: packet.protocol(),
            payload_len: usize::from(packet.total_len()).saturating_sub(packet.header_len()),
            ttl: packet.ttl(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
            tos: packet.tos(),
        }
    }

    /// Length of the header `emit` writes: always [`HEADER_LEN`].
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Header and payload: what the total length field says.
    pub const fn total_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Writes the 20-byte header — version 4, IHL 5, TOS, total length,
    /// identification, flags (DF as given, MF clear, offset 0), TTL,
    /// protocol, addresses — and its checksum into the start of `packet`'s
    /// buffer. Bytes after the header are not touched.
    ///
    /// # Errors
    /// [`WireError::BufferTooSmall`] when the buffer is shorter than the
    /// header, [`WireError::TooLong`] when the total length exceeds 65535;
    /// nothing is written then.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Ipv4Packet<T>,
    ) -> Result<(), WireError> {
        let have = packet.as_bytes().len();
        if have < HEADER_LEN {
            return Err(WireError::BufferTooSmall {
                need: HEADER_LEN,
                have,
            });
        }
        let total_len = self.total_len();
        let total = u16::try_from(total_len).map_err(|_| WireError::TooLong { total_len })?;
        packet.set_version_ihl(5);
        packet.set_tos(self.tos);
        packet.set_total_len(total);
        packet.set_ident(self.ident);
        packet.set_flags_frag(self.dont_frag, false, 0);
        packet.buffer.as_mut()[field::TTL] = self.ttl;
        packet.set_protocol(self.protocol);
        packet.set_src_raw(self.src);
        packet.set_dst_raw(self.dst);
        packet.fill_checksum();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Vec<u8> {
        let b =
            etherparse::PacketBuilder::ipv4([10, 0, 0, 1], [192, 168, 1, 2], 64).udp(1000, 2000);
        let mut v = Vec::new();
        b.write(&mut v, &[1, 2, 3, 4]).unwrap();
        v
    }

    #[test]
    fn reads_fields() {
        let v = sample();
        let p = Ipv4Packet::new_checked(&v[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 32);
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), 17);
        assert_eq!(p.src(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(p.dst(), Ipv4Addr::new(192, 168, 1, 2));
        assert!(p.dont_frag());
        assert!(!p.is_fragment());
        assert!(p.verify_checksum());
        assert_eq!(p.payload().len(), 12);
    }

    #[test]
    fn rejects_bad_headers() {
        let mut v = sample();
        assert!(matches!(
            Ipv4Packet::new_checked(&v[..10]),
            Err(WireError::Truncated { .. })
        ));
        v[0] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&v[..]),
            Err(WireError::BadVersion(6))
        );
        v[0] = 0x44;
        assert_eq!(
            Ipv4Packet::new_checked(&v[..]),
            Err(WireError::BadHeaderLen(4))
        );
        v[0] = 0x45;
        v[3] = 200;
        assert!(matches!(
            Ipv4Packet::new_checked(&v[..]),
            Err(WireError::BadTotalLen { .. })
        ));
        assert!(Ipv4Packet::new_quoted(&v[..]).is_ok());
    }

    #[test]
    fn padding_is_not_payload() {
        let mut v = sample();
        v.extend_from_slice(&[0xee; 10]);
        let p = Ipv4Packet::new_checked(&v[..]).unwrap();
        assert_eq!(p.payload().len(), 12);
    }

    #[test]
    fn incremental_setters_keep_checksum() {
        let mut v = sample();
        let mut p = Ipv4Packet::new_checked(&mut v[..]).unwrap();
        p.set_src(Ipv4Addr::new(198, 51, 100, 7));
        p.set_dst(Ipv4Addr::new(203, 0, 113, 9));
        p.set_ttl(3);
        assert!(p.verify_checksum());
        let c = p.checksum();
        p.fill_checksum();
        assert_eq!(p.checksum(), c);
    }

    #[test]
    fn fragment_fields() {
        let mut v = sample();
        let mut p = Ipv4Packet::new_checked(&mut v[..]).unwrap();
        p.set_flags_frag(false, true, 1480);
        assert!(p.more_frags());
        assert!(!p.dont_frag());
        assert_eq!(p.frag_offset(), 1480);
        assert!(p.is_later_fragment());
    }

    #[test]
    fn repr_emit_matches_etherparse() {
        let repr = Ipv4Repr {
            src: Ipv4Addr::new(192, 168, 88, 1),
            dst: Ipv4Addr::new(192, 168, 88, 2),
            protocol: 47,
            payload_len: 40,
            ttl: 64,
            ident: 0x1234,
            dont_frag: true,
            tos: 0,
        };
        let mut bytes = [0u8; 60];
        repr.emit(&mut Ipv4Packet::new_unchecked(&mut bytes[..]))
            .unwrap();
        let slice = etherparse::Ipv4HeaderSlice::from_slice(&bytes).unwrap();
        let header = slice.to_header();
        assert_eq!(header.header_checksum, header.calc_header_checksum());
        assert_eq!(header.total_len, 60);
        assert_eq!(header.identification, 0x1234);
        assert!(header.dont_fragment);
        assert!(!header.more_fragments);
        assert_eq!(header.time_to_live, 64);
        assert_eq!(header.protocol, etherparse::IpNumber::GRE);
        assert_eq!(slice.source_addr(), repr.src);
        assert_eq!(slice.destination_addr(), repr.dst);
        let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert!(packet.verify_checksum());
        assert!(!packet.is_fragment());
        assert_eq!(packet.payload().len(), 40);
        assert_eq!(Ipv4Repr::parse(&packet), repr);
    }

    #[test]
    fn repr_emit_refuses_what_does_not_fit() {
        let mut repr = Ipv4Repr::parse(&Ipv4Packet::new_checked(&sample()[..]).unwrap());
        let mut short = [0u8; 19];
        assert_eq!(
            repr.emit(&mut Ipv4Packet::new_unchecked(&mut short[..])),
            Err(WireError::BufferTooSmall { need: 20, have: 19 })
        );
        repr.payload_len = 65_516;
        let mut bytes = [0u8; 20];
        assert_eq!(
            repr.emit(&mut Ipv4Packet::new_unchecked(&mut bytes[..])),
            Err(WireError::TooLong { total_len: 65_536 })
        );
        assert_eq!(bytes, [0; 20], "nothing written");
    }

    #[test]
    fn addresses_are_source_then_destination() {
        let v = sample();
        let p = Ipv4Packet::new_checked(&v[..]).unwrap();
        let (src, dst) = (p.src().octets(), p.dst().octets());
        assert_eq!(p.addresses()[..4], src);
        assert_eq!(p.addresses()[4..], dst);
    }

    #[test]
    fn the_longest_header_is_fifteen_words() {
        let mut bytes = [0u8; MAX_HEADER_LEN];
        let mut p = Ipv4Packet::new_unchecked(&mut bytes[..]);
        p.set_version_ihl(0x0f);
        p.set_total_len(MAX_HEADER_LEN as u16);
        let p = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.header_len(), MAX_HEADER_LEN);
        assert!(p.payload().is_empty());
        let (h, _) = etherparse::Ipv4Header::from_slice(&bytes).unwrap();
        assert_eq!(h.header_len(), MAX_HEADER_LEN);
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

    proptest! {
        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..80)) {
            for p in [Ipv4Packet::new_checked(&data[..]), Ipv4Packet::new_quoted(&data[..])]
                .into_iter()
                .flatten()
            {
                let _ = (p.version(), p.ihl(), p.tos(), p.total_len(), p.ident());
                let _ = (p.dont_frag(), p.more_frags(), p.frag_offset(), p.ttl());
                let _ = (p.protocol(), p.checksum(), p.src(), p.dst(), p.header_len());
                let _ = (p.payload(), p.header(), p.verify_checksum(), p.is_fragment());
                let _ = Ipv4Repr::parse(&p);
            }
        }

        #[test]
        fn header_checksum_incremental_equals_full(
            src in any::<u32>(), dst in any::<u32>(), ttl in any::<u8>(),
            new_src in any::<u32>(), new_dst in any::<u32>(), new_ttl in any::<u8>(),
        ) {
            let b = etherparse::PacketBuilder::ipv4(
                Ipv4Addr::from(src).octets(), Ipv4Addr::from(dst).octets(), ttl,
            ).udp(1, 2);
            let mut v = Vec::new();
            b.write(&mut v, &[]).unwrap();
            let mut p = Ipv4Packet::new_checked(&mut v[..]).unwrap();
            p.set_src(Ipv4Addr::from(new_src));
            p.set_dst(Ipv4Addr::from(new_dst));
            p.set_ttl(new_ttl);
            let inc = p.checksum();
            p.fill_checksum();
            prop_assert_eq!(inc, p.checksum());
        }
    }
}
