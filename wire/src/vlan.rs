//! 802.1Q VLAN tag view (and the 802.1ad service tag, which has the same
//! layout).
//!
//! A tagged frame carries, after the two MAC addresses, a tag protocol
//! identifier (TPID: [`ethertype::VLAN`] or [`ethertype::QINQ`]) where the
//! EtherType would be, then the tag control information (TCI: priority
//! code point, drop eligible indicator, VLAN id), then the EtherType of
//! what follows. So for an [`EthernetFrame`](crate::ethernet::EthernetFrame)
//! whose `ethertype()` is a TPID, its payload is a [`VlanPacket`]: TCI,
//! inner EtherType, payload — and a QinQ frame's payload is a `VlanPacket`
//! whose payload is another one.
//!
//! Contract: [`VlanPacket::new_checked`] checks that the 4 bytes of TCI
//! and EtherType fit; after it no accessor panics. Setters write one field
//! and keep the others (`set_vid` leaves priority and DEI alone). Pushing
//! or popping a tag (moving the MAC addresses by [`TAG_LEN`]) is the
//! caller's: it owns the headroom.
//!
//! Abbreviations: TPID "tag protocol identifier", TCI "tag control
//! information", PCP "priority code point", DEI "drop eligible indicator",
//! VID "VLAN identifier".

use core::ops::Range;

use crate::ethernet::ethertype;
use crate::WireError;

/// Length of what this view reads before the payload: TCI and EtherType.
pub const HEADER_LEN: usize = 4;

/// Bytes a tag adds to a frame: TPID and TCI.
pub const TAG_LEN: usize = 4;

/// The largest VLAN id; 0 means "priority tag, no VLAN" and 4095 is
/// reserved.
pub const MAX_VID: u16 = 0x0fff;

mod field {
    use core::ops::Range;
    pub const TCI: Range<usize> = 0..2;
    pub const ETHERTYPE: Range<usize> = 2..4;
}

/// TCI bits of the VLAN id.
const VID_MASK: u16 = MAX_VID;
/// TCI bit of the drop eligible indicator.
const DEI_BIT: u16 = 0x1000;
/// Shift of the 3-bit priority code point in the TCI.
const PCP_SHIFT: u16 = 13;

/// A view of an 802.1Q (or 802.1ad) tag and what follows it, starting at
/// the TCI: the payload of an Ethernet frame whose EtherType is a TPID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VlanPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanPacket<T> {
    /// Wraps `buffer` without checks; accessors may panic on a buffer
    /// shorter than [`HEADER_LEN`].
    pub fn new_unchecked(buffer: T) -> Self {
        VlanPacket { buffer }
    }

    /// Wraps `buffer` after checking that TCI and EtherType fit.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let len = buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated {
                what: "VLAN tag",
                need: HEADER_LEN,
                have: len,
            });
        }
        Ok(VlanPacket { buffer })
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn u16_at(&self, r: Range<usize>) -> u16 {
        let b = &self.buffer.as_ref()[r];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// The whole tag control information: PCP, DEI and VLAN id.
    pub fn tci(&self) -> u16 {
        self.u16_at(field::TCI)
    }

    /// The VLAN id (12 bits).
    pub fn vid(&self) -> u16 {
        self.tci() & VID_MASK
    }

    /// The priority code point (3 bits, 802.1p).
    pub fn pcp(&self) -> u8 {
        (self.tci() >> PCP_SHIFT) as u8
    }

    /// The drop eligible indicator.
    pub fn dei(&self) -> bool {
        self.tci() & DEI_BIT != 0
    }

    /// The EtherType of what follows the tag (another TPID for the outer
    /// tag of a QinQ frame).
    pub fn ethertype(&self) -> u16 {
        self.u16_at(field::ETHERTYPE)
    }

    /// True when another tag follows this one (QinQ).
    pub fn is_stacked(&self) -> bool {
        ethertype::is_vlan_tag(self.ethertype())
    }

    /// Everything after the tag.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VlanPacket<T> {
    fn set_u16_at(&mut self, r: Range<usize>, v: u16) {
        self.buffer.as_mut()[r].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the whole tag control information.
    pub fn set_tci(&mut self, tci: u16) {
        self.set_u16_at(field::TCI, tci);
    }

    /// Sets the VLAN id (its low 12 bits), keeping PCP and DEI.
    pub fn set_vid(&mut self, vid: u16) {
        let tci = (self.tci() & !VID_MASK) | (vid & VID_MASK);
        self.set_tci(tci);
    }

    /// Sets the priority code point (its low 3 bits), keeping DEI and the
    /// VLAN id.
    pub fn set_pcp(&mut self, pcp: u8) {
        let tci = (self.tci() & !(0x7 << PCP_SHIFT)) | (u16::from(pcp & 0x7) << PCP_SHIFT);
        self.set_tci(tci);
    }

    /// Sets the drop eligible indicator, keeping PCP and the VLAN id.
    pub fn set_dei(&mut self, dei: bool) {
        let tci = if dei {
            self.tci() | DEI_BIT
        } else {
            self.tci() & !DEI_BIT
        };
        self.set_tci(tci);
    }

    /// Sets the EtherType of what follows the tag.
    pub fn set_ethertype(&mut self, ethertype: u16) {
        self.set_u16_at(field::ETHERTYPE, ethertype);
    }

    /// Everything after the tag, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ethernet::EthernetFrame;
    use proptest::prelude::*;

    /// A QinQ frame: S-TAG 20 (PCP 3), C-TAG 10 (PCP 5, DEI), IPv4 payload.
    fn qinq() -> Vec<u8> {
        let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .vlan(etherparse::VlanHeader::Double(
                etherparse::DoubleVlanHeader {
                    outer: etherparse::SingleVlanHeader {
                        pcp: etherparse::VlanPcp::try_new(3).unwrap(),
                        drop_eligible_indicator: false,
                        vlan_id: etherparse::VlanId::try_new(20).unwrap(),
                        ether_type: etherparse::EtherType(ethertype::VLAN),
                    },
                    inner: etherparse::SingleVlanHeader {
                        pcp: etherparse::VlanPcp::try_new(5).unwrap(),
                        drop_eligible_indicator: true,
                        vlan_id: etherparse::VlanId::try_new(10).unwrap(),
                        ether_type: etherparse::EtherType::IPV4,
                    },
                },
            ))
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(1, 2);
        let mut v = Vec::new();
        b.write(&mut v, b"x").unwrap();
        v
    }

    #[test]
    fn reads_a_qinq_frame_tag_by_tag() {
        let v = qinq();
        let eth = EthernetFrame::new_checked(&v[..]).unwrap();
        assert_eq!(eth.ethertype(), ethertype::QINQ);
        assert!(ethertype::is_vlan_tag(eth.ethertype()));
        let outer = VlanPacket::new_checked(eth.payload()).unwrap();
        assert_eq!((outer.vid(), outer.pcp(), outer.dei()), (20, 3, false));
        assert!(outer.is_stacked());
        let inner = VlanPacket::new_checked(outer.payload()).unwrap();
        assert_eq!((inner.vid(), inner.pcp(), inner.dei()), (10, 5, true));
        assert_eq!(inner.tci(), (5 << 13) | 0x1000 | 10);
        assert!(!inner.is_stacked());
        assert_eq!(inner.ethertype(), ethertype::IPV4);
        assert_eq!(inner.payload()[0], 0x45);
    }

    #[test]
    fn setters_keep_the_other_fields() {
        let mut b = [0u8; 8];
        let mut tag = VlanPacket::new_checked(&mut b[..]).unwrap();
        tag.set_tci((6 << 13) | 0x1000 | 100);
        tag.set_vid(0xf123);
        assert_eq!((tag.vid(), tag.pcp(), tag.dei()), (0x123, 6, true));
        tag.set_pcp(9);
        assert_eq!((tag.vid(), tag.pcp(), tag.dei()), (0x123, 1, true));
        tag.set_dei(false);
        assert_eq!((tag.vid(), tag.pcp(), tag.dei()), (0x123, 1, false));
        tag.set_ethertype(ethertype::ARP);
        tag.payload_mut()[0] = 7;
        assert_eq!(b[..5], [0x21, 0x23, 0x08, 0x06, 7]);
        let parsed = etherparse::SingleVlanHeaderSlice::from_slice(&b).unwrap();
        assert_eq!(parsed.vlan_identifier().value(), 0x123);
        assert_eq!(parsed.ether_type(), etherparse::EtherType::ARP);
    }

    #[test]
    fn short_buffer_is_truncated() {
        assert_eq!(
            VlanPacket::new_checked(&[0u8; 3][..]),
            Err(WireError::Truncated {
                what: "VLAN tag",
                need: 4,
                have: 3
            })
        );
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..12)) {
            if let Ok(t) = VlanPacket::new_checked(&data[..]) {
                let _ = (t.tci(), t.vid(), t.pcp(), t.dei(), t.ethertype(), t.is_stacked());
                let _ = t.payload();
            }
        }
    }
}
