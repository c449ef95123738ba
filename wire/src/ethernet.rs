//! Ethernet II frame view: destination, source, EtherType, payload. No VLAN
//! tags — the switch strips them before a frame reaches the gateway.

use crate::WireError;

/// Header length.
pub const HEADER_LEN: usize = 14;
/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// The broadcast address.
pub const BROADCAST: [u8; 6] = [0xff; 6];

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

    fn mac_at(&self, r: core::ops::Range<usize>) -> [u8; 6] {
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

    /// EtherType.
    pub fn ethertype(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[12], b[13]])
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
        f.set_ethertype(ETHERTYPE_ARP);
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
