//! ARP view (RFC 826) for Ethernet and IPv4 only, and the request and reply
//! frames the project sends (the gateway's, built from an [`ArpFrame`]).
//!
//! Contract: [`ArpPacket::new_checked`] accepts only hardware type 1
//! (Ethernet), protocol type 0x0800 (IPv4), hardware length 6 and protocol
//! length 4 in a buffer of at least 28 bytes; after it no accessor panics.
//! The buffer is the Ethernet payload (it may carry padding after the 28
//! bytes). [`ArpFrame::emit`] writes a whole 42-byte Ethernet frame and
//! nothing else; padding to the Ethernet minimum is the caller's.

use core::net::Ipv4Addr;

use crate::ethernet::{self, ethertype, EthernetFrame};
use crate::WireError;

mod field {
    use core::ops::Range;
    pub const HTYPE: Range<usize> = 0..2;
    pub const PTYPE: Range<usize> = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Range<usize> = 6..8;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: Range<usize> = 24..28;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;
/// Length of an ARP frame we build: Ethernet header + ARP packet (callers
/// pad to 60 bytes if their port needs it).
pub const FRAME_LEN: usize = ethernet::HEADER_LEN + PACKET_LEN;

/// ARP operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpOp {
    /// Who has `target_proto`? (1)
    Request,
    /// `sender_proto` is at `sender_hw`. (2)
    Reply,
    /// Another operation code (RARP and others).
    Other(u16),
}

impl ArpOp {
    fn from_u16(v: u16) -> ArpOp {
        match v {
            1 => ArpOp::Request,
            2 => ArpOp::Reply,
            v => ArpOp::Other(v),
        }
    }

    fn to_u16(self) -> u16 {
        match self {
            ArpOp::Request => 1,
            ArpOp::Reply => 2,
            ArpOp::Other(v) => v,
        }
    }
}

/// A view of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wraps `buffer` without checks.
    pub fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }

    /// Wraps `buffer` after checking its length and that it is Ethernet/IPv4
    /// ARP.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let len = buffer.as_ref().len();
        if len < PACKET_LEN {
            return Err(WireError::Truncated {
                what: "ARP packet",
                need: PACKET_LEN,
                have: len,
            });
        }
        let p = ArpPacket { buffer };
        let b = p.buffer.as_ref();
        if p.u16_at(field::HTYPE) != 1
            || p.u16_at(field::PTYPE) != ethertype::IPV4
            || b[field::HLEN] != 6
            || b[field::PLEN] != 4
        {
            return Err(WireError::UnsupportedArp);
        }
        Ok(p)
    }

    fn u16_at(&self, r: core::ops::Range<usize>) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[r.start], b[r.start + 1]])
    }

    fn mac_at(&self, r: core::ops::Range<usize>) -> [u8; 6] {
        let b = &self.buffer.as_ref()[r];
        [b[0], b[1], b[2], b[3], b[4], b[5]]
    }

    fn ip_at(&self, r: core::ops::Range<usize>) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[r];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// Whether this is a request or a reply (the OPER field).
    pub fn op(&self) -> ArpOp {
        ArpOp::from_u16(self.u16_at(field::OPER))
    }

    /// Sender hardware (MAC) address.
    pub fn sender_hw(&self) -> [u8; 6] {
        self.mac_at(field::SHA)
    }

    /// Sender protocol (IPv4) address.
    pub fn sender_proto(&self) -> Ipv4Addr {
        self.ip_at(field::SPA)
    }

    /// Target hardware (MAC) address.
    pub fn target_hw(&self) -> [u8; 6] {
        self.mac_at(field::THA)
    }

    /// Target protocol (IPv4) address.
    pub fn target_proto(&self) -> Ipv4Addr {
        self.ip_at(field::TPA)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Writes the fixed Ethernet/IPv4 fields (types and lengths).
    pub fn fill_fixed(&mut self) {
        let b = self.buffer.as_mut();
        b[field::HTYPE].copy_from_slice(&1u16.to_be_bytes());
        b[field::PTYPE].copy_from_slice(&ethertype::IPV4.to_be_bytes());
        b[field::HLEN] = 6;
        b[field::PLEN] = 4;
    }

    /// Sets the operation.
    pub fn set_op(&mut self, op: ArpOp) {
        self.buffer.as_mut()[field::OPER].copy_from_slice(&op.to_u16().to_be_bytes());
    }

    /// Sets the sender hardware address.
    pub fn set_sender_hw(&mut self, mac: [u8; 6]) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(&mac);
    }

    /// Sets the sender protocol address.
    pub fn set_sender_proto(&mut self, ip: Ipv4Addr) {
        self.buffer.as_mut()[field::SPA].copy_from_slice(&ip.octets());
    }

    /// Sets the target hardware address.
    pub fn set_target_hw(&mut self, mac: [u8; 6]) {
        self.buffer.as_mut()[field::THA].copy_from_slice(&mac);
    }

    /// Sets the target protocol address.
    pub fn set_target_proto(&mut self, ip: Ipv4Addr) {
        self.buffer.as_mut()[field::TPA].copy_from_slice(&ip.octets());
    }
}

/// The endpoints of an ARP message, for the frame builders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpFrame {
    /// Request or reply.
    pub op: ArpOp,
    /// Ethernet destination.
    pub eth_dst: [u8; 6],
    /// Sender MAC (also the Ethernet source).
    pub sender_hw: [u8; 6],
    /// Sender IPv4 address.
    pub sender_proto: Ipv4Addr,
    /// Target MAC (zero in a request).
    pub target_hw: [u8; 6],
    /// Target IPv4 address.
    pub target_proto: Ipv4Addr,
}

impl ArpFrame {
    /// A broadcast request from `mac`/`ip` asking who has `target`.
    pub fn request(mac: [u8; 6], ip: Ipv4Addr, target: Ipv4Addr) -> ArpFrame {
        ArpFrame {
            op: ArpOp::Request,
            eth_dst: ethernet::BROADCAST,
            sender_hw: mac,
            sender_proto: ip,
            target_hw: [0; 6],
            target_proto: target,
        }
    }

    /// The reply from `mac` to `request`, claiming the address it asked for
    /// (the caller decides whether that address is ours). Unicast to the
    /// requester.
    pub fn reply_to<T: AsRef<[u8]>>(request: &ArpPacket<T>, mac: [u8; 6]) -> ArpFrame {
        ArpFrame {
            op: ArpOp::Reply,
            eth_dst: request.sender_hw(),
            sender_hw: mac,
            sender_proto: request.target_proto(),
            target_hw: request.sender_hw(),
            target_proto: request.sender_proto(),
        }
    }

    /// Writes the Ethernet frame ([`FRAME_LEN`] bytes) into `out`; returns the
    /// length written.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, WireError> {
        if out.len() < FRAME_LEN {
            return Err(WireError::BufferTooSmall {
                need: FRAME_LEN,
                have: out.len(),
            });
        }
        let mut eth = EthernetFrame::new_unchecked(&mut out[..FRAME_LEN]);
        eth.set_dst(self.eth_dst);
        eth.set_src(self.sender_hw);
        eth.set_ethertype(ethertype::ARP);
        let mut arp = ArpPacket::new_unchecked(eth.payload_mut());
        arp.fill_fixed();
        arp.set_op(self.op);
        arp.set_sender_hw(self.sender_hw);
        arp.set_sender_proto(self.sender_proto);
        arp.set_target_hw(self.target_hw);
        arp.set_target_proto(self.target_proto);
        Ok(FRAME_LEN)
    }
}

/// Writes a broadcast ARP request frame into `out`; returns its length.
pub fn build_arp_request(
    out: &mut [u8],
    mac: [u8; 6],
    ip: Ipv4Addr,
    target: Ipv4Addr,
) -> Result<usize, WireError> {
    ArpFrame::request(mac, ip, target).emit(out)
}

/// Writes the ARP reply frame to `request` from `mac` into `out`; returns its
/// length. The caller has checked that the requested address is ours.
pub fn build_arp_reply<T: AsRef<[u8]>>(
    out: &mut [u8],
    request: &ArpPacket<T>,
    mac: [u8; 6],
) -> Result<usize, WireError> {
    ArpFrame::reply_to(request, mac).emit(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GW_MAC: [u8; 6] = [0x02, 0x59, 0x41, 0x52, 0x44, 0x01];
    const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
    const GW: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 1);
    const HOST: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 2);

    #[test]
    fn request_every_byte() {
        let mut out = [0u8; 64];
        let n = build_arp_request(&mut out, GW_MAC, GW, HOST).unwrap();
        assert_eq!(n, 42);
        #[rustfmt::skip]
        let want = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x59, 0x41, 0x52, 0x44, 0x01, 0x08, 0x06,
            0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01,
            0x02, 0x59, 0x41, 0x52, 0x44, 0x01, 172, 30, 0, 1,
            0, 0, 0, 0, 0, 0, 172, 30, 0, 2,
        ];
        assert_eq!(&out[..n], &want[..]);
    }

    #[test]
    fn reply_answers_request() {
        let mut req = [0u8; 60]; // padded to the Ethernet minimum
        build_arp_request(&mut req, HOST_MAC, HOST, GW).unwrap();
        let arp = ArpPacket::new_checked(&req[14..]).unwrap();
        assert_eq!(arp.op(), ArpOp::Request);
        let mut out = [0u8; 42];
        let n = build_arp_reply(&mut out, &arp, GW_MAC).unwrap();
        let eth = EthernetFrame::new_checked(&out[..n]).unwrap();
        assert_eq!((eth.dst(), eth.src()), (HOST_MAC, GW_MAC));
        let rep = ArpPacket::new_checked(eth.payload()).unwrap();
        assert_eq!(rep.op(), ArpOp::Reply);
        assert_eq!((rep.sender_hw(), rep.sender_proto()), (GW_MAC, GW));
        assert_eq!((rep.target_hw(), rep.target_proto()), (HOST_MAC, HOST));
        assert!(matches!(
            build_arp_reply(&mut out[..41], &arp, GW_MAC),
            Err(WireError::BufferTooSmall { need: 42, have: 41 })
        ));
    }

    #[test]
    fn rejects_non_ethernet_ipv4() {
        let mut req = [0u8; 42];
        build_arp_request(&mut req, HOST_MAC, HOST, GW).unwrap();
        req[14 + 5] = 16; // IPv6-sized protocol address
        assert_eq!(
            ArpPacket::new_checked(&req[14..]),
            Err(WireError::UnsupportedArp)
        );
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(a) = ArpPacket::new_checked(&data[..]) {
                let _ = (a.op(), a.sender_hw(), a.sender_proto(), a.target_hw(), a.target_proto());
                let mut out = [0u8; 42];
                build_arp_reply(&mut out, &a, GW_MAC).unwrap();
            }
        }
    }
}
