//! UDP header view (RFC 768).
//!
//! Contract: the buffer is the datagram: the IPv4 payload, header first. The view
//! checks only that the 8-byte header is present, because the buffer may be
//! the first fragment of a larger datagram or an ICMP error's truncated
//! quote; [`UdpPacket::payload`] is bounded by both the length field and the
//! buffer. A checksum field of 0 means "no checksum" (see
//! [`crate::checksum`]).

use core::net::Ipv4Addr;

use crate::checksum;
use crate::ip::protocol;
use crate::WireError;

mod field {
    use core::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
}

/// Header length.
pub const HEADER_LEN: usize = 8;

/// Offset of the checksum field (within the 8 bytes an ICMP error quotes).
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM.start;

/// A view of a UDP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps `buffer` without checks.
    pub fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    /// Wraps `buffer` after checking that the 8-byte header fits.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let len = buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated {
                what: "UDP header",
                need: HEADER_LEN,
                have: len,
            });
        }
        Ok(UdpPacket { buffer })
    }

    /// The underlying bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    fn u16_at(&self, r: core::ops::Range<usize>) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[r.start], b[r.start + 1]])
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        self.u16_at(field::SRC_PORT)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        self.u16_at(field::DST_PORT)
    }

    /// Length field (header + data).
    pub fn length(&self) -> u16 {
        self.u16_at(field::LENGTH)
    }

    /// Checksum field (0: none).
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    /// The data: from byte 8 to the length field or the end of the buffer,
    /// whichever comes first.
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        let end = usize::from(self.length()).clamp(HEADER_LEN, b.len());
        &b[HEADER_LEN..end]
    }

    /// True when the checksum field is 0 ("none") or correct for this
    /// buffer (which must be exactly the datagram) between `src` and `dst`.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.checksum() == 0
            || checksum::l4_checksum(src, dst, protocol::UDP, self.buffer.as_ref()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    fn set_u16_at(&mut self, r: core::ops::Range<usize>, v: u16) {
        self.buffer.as_mut()[r].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the source port; checksum not updated.
    pub fn set_src_port(&mut self, port: u16) {
        self.set_u16_at(field::SRC_PORT, port);
    }

    /// Sets the destination port; checksum not updated.
    pub fn set_dst_port(&mut self, port: u16) {
        self.set_u16_at(field::DST_PORT, port);
    }

    /// Sets the length field; checksum not updated.
    pub fn set_length(&mut self, len: u16) {
        self.set_u16_at(field::LENGTH, len);
    }

    /// Writes the checksum field as given.
    pub fn set_checksum(&mut self, check: u16) {
        self.set_u16_at(field::CHECKSUM, check);
    }

    /// Recomputes the full checksum over the whole buffer (a computed 0 is
    /// written as `0xffff`).
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let c = checksum::l4_checksum_udp(src, dst, self.buffer.as_ref());
        self.set_checksum(c);
    }

    /// Recomputes the full checksum over the whole buffer (the datagram)
    /// from `pseudo_header`, the folded sum of the pseudo-header —
    /// addresses, protocol and this datagram's length — of either IP
    /// version; a computed 0 is written as `0xffff`.
    pub fn fill_checksum_with(&mut self, pseudo_header: u16) {
        self.set_checksum(0);
        let c = match !checksum::add(pseudo_header, checksum::ones_sum(self.buffer.as_ref())) {
            0 => 0xffff,
            c => c,
        };
        self.set_checksum(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const DST: Ipv4Addr = Ipv4Addr::new(8, 8, 8, 8);

    #[test]
    fn reads_datagram() {
        let b = etherparse::PacketBuilder::ipv4(SRC.octets(), DST.octets(), 64).udp(5353, 53);
        let mut v = Vec::new();
        b.write(&mut v, b"hello").unwrap();
        let mut u = UdpPacket::new_checked(&mut v[20..]).unwrap();
        assert_eq!((u.src_port(), u.dst_port(), u.length()), (5353, 53, 13));
        assert_eq!(u.payload(), b"hello");
        assert!(u.verify_checksum(SRC, DST));
        let c = u.checksum();
        u.fill_checksum(SRC, DST);
        assert_eq!(u.checksum(), c);
        u.set_checksum(0);
        assert!(u.verify_checksum(SRC, DST), "0 means no checksum");
    }

    #[test]
    fn fill_checksum_with_a_pseudo_header_sum_equals_the_ipv4_one() {
        let b = etherparse::PacketBuilder::ipv4(SRC.octets(), DST.octets(), 64).udp(5353, 53);
        let mut v = Vec::new();
        b.write(&mut v, b"hello").unwrap();
        let mut u = UdpPacket::new_checked(&mut v[20..]).unwrap();
        let good = u.checksum();
        u.set_checksum(0);
        u.fill_checksum_with(checksum::pseudo_header_sum(SRC, DST, protocol::UDP, 13));
        assert_eq!(u.checksum(), good);
        assert!(u.verify_checksum(SRC, DST));
    }

    #[test]
    fn fill_checksum_with_sends_a_computed_zero_as_all_ones() {
        // Two zero ports, length 8 and no data: the data sums to 8, so a
        // pseudo-header sum of !8 makes the total 0xffff and the checksum 0.
        let mut d = [0, 0, 0, 0, 0, 8, 0x12, 0x34];
        let mut u = UdpPacket::new_checked(&mut d[..]).unwrap();
        u.fill_checksum_with(!8);
        assert_eq!(u.checksum(), 0xffff);
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(mut u) = UdpPacket::new_checked(data) {
                let _ = (u.src_port(), u.dst_port(), u.length(), u.checksum(), u.payload());
                let _ = u.verify_checksum(SRC, DST);
                u.fill_checksum(SRC, DST);
            }
        }
    }
}
