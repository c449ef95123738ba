//! IPv6 fixed header view (RFC 8200 §3): version, payload length, next
//! header, hop limit and the two addresses.
//!
//! Contract: [`Ipv6Packet::new_checked`] checks that the 40-byte fixed
//! header fits, that the version is 6 and that the payload length stays
//! within the buffer; after it no accessor panics. The buffer may be longer
//! than the packet (Ethernet padding): [`Ipv6Packet::payload`] stops at the
//! payload length. The view reads the fixed header only: extension headers
//! are the payload, and whoever needs to walk them does so on it (GSO does,
//! in [`crate::gso`]); a jumbogram (payload length 0 with a hop-by-hop
//! jumbo option) reads as an empty payload. IPv6 has no header checksum, so
//! every setter writes its field only; the transport checksum covers the
//! addresses through the pseudo-header ([`Ipv6Packet::addresses`]).

use core::net::Ipv6Addr;
use core::ops::Range;

use crate::WireError;

/// Field offsets.
mod field {
    use core::ops::Range;
    pub const VERSION: usize = 0;
    pub const PAYLOAD_LEN: Range<usize> = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: Range<usize> = 8..24;
    pub const DST: Range<usize> = 24..40;
    /// Source and destination together, as the pseudo-header sums them.
    pub const ADDRESSES: Range<usize> = 8..40;
}

/// Length of the fixed header, before any extension header.
pub const HEADER_LEN: usize = 40;

/// A view of an IPv6 packet in a byte buffer, header first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wraps `buffer` without checks. Accessors may panic on a buffer
    /// shorter than [`HEADER_LEN`]; use [`Ipv6Packet::new_checked`] for
    /// untrusted input.
    pub fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
    }

    /// Wraps `buffer` after checking: the fixed header fits, version 6, and
    /// header plus payload length ≤ buffer length.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let len = buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated {
                what: "IPv6 header",
                need: HEADER_LEN,
                have: len,
            });
        }
        let p = Ipv6Packet { buffer };
        if p.version() != 6 {
            return Err(WireError::BadVersion(p.version()));
        }
        if p.total_len() > len {
            return Err(WireError::Truncated {
                what: "IPv6 payload",
                need: p.total_len(),
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

    fn address_at(&self, r: Range<usize>) -> Ipv6Addr {
        let mut octets = [0u8; 16];
        octets.copy_from_slice(&self.buffer.as_ref()[r]);
        Ipv6Addr::from(octets)
    }

    /// IP version (6).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION] >> 4
    }

    /// Payload length: the bytes after the fixed header, extension headers
    /// included.
    pub fn payload_len(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::PAYLOAD_LEN];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// The whole packet's length: fixed header and payload.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + usize::from(self.payload_len())
    }

    /// Next header: the first extension header's type, or the transport
    /// protocol ([`crate::ip::protocol`]) when there is none.
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NEXT_HEADER]
    }

    /// Hop limit (IPv4's TTL).
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// Source address.
    pub fn src(&self) -> Ipv6Addr {
        self.address_at(field::SRC)
    }

    /// Destination address.
    pub fn dst(&self) -> Ipv6Addr {
        self.address_at(field::DST)
    }

    /// Source and destination address bytes, back to back (32 bytes): the
    /// part of the transport pseudo-header (RFC 8200 §8.1) that comes from
    /// this header, to sum without copying.
    pub fn addresses(&self) -> &[u8] {
        &self.buffer.as_ref()[field::ADDRESSES]
    }

    /// The payload: from the end of the fixed header to the payload length,
    /// or to the end of the buffer if that comes first.
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        let end = self.total_len().min(b.len());
        &b[HEADER_LEN..end]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Sets the payload length.
    pub fn set_payload_len(&mut self, len: u16) {
        self.buffer.as_mut()[field::PAYLOAD_LEN].copy_from_slice(&len.to_be_bytes());
    }

    /// Sets the next header.
    pub fn set_next_header(&mut self, next_header: u8) {
        self.buffer.as_mut()[field::NEXT_HEADER] = next_header;
    }

    /// Sets the hop limit.
    pub fn set_hop_limit(&mut self, hop_limit: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = hop_limit;
    }

    /// The payload, mutable (same bounds as [`Ipv6Packet::payload`]).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.total_len().min(self.buffer.as_ref().len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ip::protocol;
    use proptest::prelude::*;

    const SRC: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const DST: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

    /// A UDP datagram with `data` over IPv6, as etherparse writes it.
    fn udp6(data: &[u8]) -> Vec<u8> {
        let b = etherparse::PacketBuilder::ipv6(SRC, DST, 47).udp(5353, 53);
        let mut v = Vec::new();
        b.write(&mut v, data).unwrap();
        v
    }

    #[test]
    fn reads_the_fixed_header() {
        let mut v = udp6(b"hello");
        v.extend_from_slice(&[0; 6]); // padding after the packet
        let p = Ipv6Packet::new_checked(&v[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.payload_len(), 13);
        assert_eq!(p.total_len(), 53);
        assert_eq!(p.next_header(), protocol::UDP);
        assert_eq!(p.hop_limit(), 47);
        assert_eq!(p.src(), Ipv6Addr::from(SRC));
        assert_eq!(p.dst(), Ipv6Addr::from(DST));
        assert_eq!(p.addresses()[..16], SRC);
        assert_eq!(p.addresses()[16..], DST);
        assert_eq!(p.payload().len(), 13, "padding is not payload");
        assert_eq!(&p.payload()[8..], b"hello");
    }

    #[test]
    fn setters_write_their_field_only() {
        let mut v = udp6(b"hello world");
        let mut p = Ipv6Packet::new_checked(&mut v[..]).unwrap();
        p.set_payload_len(8 + 5);
        p.set_hop_limit(1);
        p.set_next_header(protocol::TCP);
        p.payload_mut()[0] = 0xab;
        assert_eq!(p.payload().len(), 13);
        let (h, rest) = etherparse::Ipv6Header::from_slice(&v).unwrap();
        assert_eq!(h.payload_length, 13);
        assert_eq!(h.hop_limit, 1);
        assert_eq!(h.next_header, etherparse::IpNumber::TCP);
        assert_eq!((h.source, h.destination), (SRC, DST));
        assert_eq!(h.flow_label.value(), 0);
        assert_eq!(rest[0], 0xab);
    }

    #[test]
    fn new_checked_refuses_short_wrong_version_and_overlong() {
        let v = udp6(b"hi");
        assert_eq!(
            Ipv6Packet::new_checked(&v[..39]),
            Err(WireError::Truncated {
                what: "IPv6 header",
                need: 40,
                have: 39
            })
        );
        let mut four = v.clone();
        four[0] = 0x45;
        assert_eq!(
            Ipv6Packet::new_checked(&four[..]),
            Err(WireError::BadVersion(4))
        );
        assert_eq!(
            Ipv6Packet::new_checked(&v[..v.len() - 1]),
            Err(WireError::Truncated {
                what: "IPv6 payload",
                need: v.len(),
                have: v.len() - 1
            })
        );
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(mut p) = Ipv6Packet::new_checked(data) {
                let _ = (p.version(), p.payload_len(), p.next_header(), p.hop_limit());
                let _ = (p.src(), p.dst(), p.addresses(), p.payload());
                p.set_hop_limit(0);
                let _ = p.payload_mut();
            }
        }
    }
}
