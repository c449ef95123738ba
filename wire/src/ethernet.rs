//! Ethernet II frame view: destination, source, EtherType, payload; and the
//! EtherType numbers the project reads or writes ([`ethertype`]).
//!
//! Contract: [`EthernetFrame::new_checked`] checks that the 14-byte header
//! fits; after it no accessor panics. The view does not look behind the
//! EtherType: an 802.1Q or 802.1ad tag is the payload of a frame whose
//! EtherType is [`ethertype::VLAN`] or [`ethertype::QINQ`], read with
//! [`crate::vlan::VlanPacket`]. (The gateway sees untagged frames only — the
//! switch takes tags off first.)

use core::ops::Range;

use crate::WireError;

/// Header length (no VLAN tag).
pub const HEADER_LEN: usize = 14;
/// The broadcast address.
pub const BROADCAST: [u8; 6] = [0xff; 6];

/// EtherType values (IEEE 802 numbers) as they appear in the EtherType
/// field, host order.
pub mod ethertype {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// ARP.
    pub const ARP: u16 = 0x0806;
    /// An 802.1Q VLAN tag (customer tag, C-TAG) follows.
    pub const VLAN: u16 = 0x8100;
    /// An 802.1ad service tag (S-TAG, "QinQ") follows.
    pub const QINQ: u16 = 0x88a8;
    /// IPv6.
    pub const IPV6: u16 = 0x86dd;
    /// Transparent Ethernet Bridging: an Ethernet frame, as a GRE payload.
    pub const TEB: u16 = 0x6558;

    /// True for the two tag protocol identifiers, [`VLAN`] and [`QINQ`]:
    /// a tag, not the payload's protocol, follows the MAC addresses.
    pub const fn is_vlan_tag(ethertype: u16) -> bool {
        matches!(ethertype, VLAN | QINQ)
    }
}

mod field {
    use core::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
}

/// A view of an Ethernet II frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps `buffer` without checks.
    pub fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// Wraps `buffer` after checking that the 14-byte header fits.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let len = buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated {
                what: "Ethernet header",
                need: HEADER_LEN,
                have: len,
            });
        }
        Ok(EthernetFrame { buffer })
    }

    fn mac_at(&self, r: Range<usize>) -> [u8; 6] {
        let b = &self.buffer.as_ref()[r];
        [b[0], b[1], b[2], b[3], b[4], b[5]]
    }

    /// Destination MAC address.
    pub fn dst(&self) -> [u8; 6] {
        self.mac_at(field::DST)
    }

    /// Source MAC address.
    pub fn src(&self) -> [u8; 6] {
        self.mac_at(field::SRC)
    }

    /// EtherType (the tag protocol identifier when the frame is tagged).
    pub fn ethertype(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::ETHERTYPE];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Everything after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination MAC address.
    pub fn set_dst(&mut self, mac: [u8; 6]) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&mac);
    }

    /// Sets the source MAC address.
    pub fn set_src(&mut self, mac: [u8; 6]) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&mac);
    }

    /// Sets the EtherType.
    pub fn set_ethertype(&mut self, t: u16) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&t.to_be_bytes());
    }

    /// Everything after the header, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_fields() {
        let mut b = [0u8; 20];
        let mut f = EthernetFrame::new_checked(&mut b[..]).unwrap();
        f.set_dst(BROADCAST);
        f.set_src([2, 0, 0, 0, 0, 1]);
        f.set_ethertype(ethertype::ARP);
        assert_eq!(f.dst(), BROADCAST);
        assert_eq!(f.src(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(f.ethertype(), 0x0806);
        assert_eq!(f.payload().len(), 6);
        let parsed = etherparse::Ethernet2HeaderSlice::from_slice(&b).unwrap();
        assert_eq!(parsed.ether_type(), etherparse::EtherType::ARP);
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..30)) {
            if let Ok(f) = EthernetFrame::new_checked(&data[..]) {
                let _ = (f.dst(), f.src(), f.ethertype(), f.payload());
            }
        }
    }
}
