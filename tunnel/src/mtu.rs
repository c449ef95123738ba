//! The overlay MTU: the largest inner IP MTU whose encapsulated packets fit
//! the underlay MTU without fragmentation.
//!
//! Contract: pure arithmetic, documented to the byte. An inner packet of MTU
//! bytes becomes, on the underlay:
//!
//! | carrier | outer headers | GRE | options | inner Ethernet | overhead |
//! |---|---|---|---|---|---|
//! | raw GRE ([`Carrier::Ipv4`]) | IPv4 20 | 4 | 4 each (K, C, S) | 14 | 38 + 4n |
//! | GRE-in-UDP ([`Carrier::UdpIpv4`]) | IPv4 20 + UDP 8 | 4 | 4 each | 14 | 46 + 4n |
//!
//! So a 1500-byte underlay carries 1462 (no options), 1458 (key only, what
//! OVS `gre` with `options:key` needs), 1450 (key + checksum + sequence
//! number), and over UDP 1454 / 1450 / 1442. The inner Ethernet header is
//! counted because the overlay MTU, like any interface MTU, excludes its own
//! link header; an inner 802.1Q tag would need 4 more.

use yard_wire::gre::GreOptions;
use yard_wire::{ipv4, udp};

use crate::ETHERNET_HEADER_LEN;

/// Length of a UDP header.
pub const UDP_HEADER_LEN: usize = udp::HEADER_LEN;

/// How GRE packets travel over the underlay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Carrier {
    /// GRE directly in IPv4, protocol 47 (raw socket).
    Ipv4,
    /// GRE in UDP over IPv4 (RFC 8086, ordinary UDP socket).
    UdpIpv4,
}

impl Carrier {
    /// Bytes of outer headers in front of the GRE header: 20 or 28.
    pub const fn outer_header_len(self) -> usize {
        match self {
            Self::Ipv4 => ipv4::HEADER_LEN,
            Self::UdpIpv4 => ipv4::HEADER_LEN + UDP_HEADER_LEN,
        }
    }
}

/// Bytes an inner Ethernet frame grows by on the underlay: outer headers
/// plus the GRE header (24–36 raw, 32–44 over UDP).
pub const fn encap_overhead(carrier: Carrier, options: &GreOptions) -> usize {
    carrier.outer_header_len() + options.header_len()
}

/// The largest inner IP MTU over `underlay_mtu`: underlay − outer headers −
/// GRE header (4 + 4 per option) − 14 (inner Ethernet header). 0 when the
/// underlay cannot carry even the headers. See the module doc for the table.
pub const fn overlay_mtu(underlay_mtu: u32, carrier: Carrier, options: &GreOptions) -> u32 {
    // At most 58 bytes, so the cast is lossless.
    let overhead = (encap_overhead(carrier, options) + ETHERNET_HEADER_LEN) as u32;
    underlay_mtu.saturating_sub(overhead)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: GreOptions = GreOptions {
        key: Some(42),
        checksum: false,
        sequence: None,
    };
    const ALL: GreOptions = GreOptions {
        key: Some(42),
        checksum: true,
        sequence: Some(1),
    };

    #[test]
    fn raw_gre() {
        assert_eq!(overlay_mtu(1500, Carrier::Ipv4, &GreOptions::NONE), 1462);
        assert_eq!(overlay_mtu(1500, Carrier::Ipv4, &KEY), 1458);
        let key_csum = GreOptions {
            checksum: true,
            ..KEY
        };
        assert_eq!(overlay_mtu(1500, Carrier::Ipv4, &key_csum), 1454);
        assert_eq!(overlay_mtu(1500, Carrier::Ipv4, &ALL), 1450);
        assert_eq!(overlay_mtu(9000, Carrier::Ipv4, &GreOptions::NONE), 8962);
    }

    #[test]
    fn gre_in_udp() {
        assert_eq!(overlay_mtu(1500, Carrier::UdpIpv4, &GreOptions::NONE), 1454);
        assert_eq!(overlay_mtu(1500, Carrier::UdpIpv4, &KEY), 1450);
        assert_eq!(overlay_mtu(1500, Carrier::UdpIpv4, &ALL), 1442);
    }

    #[test]
    fn overheads() {
        assert_eq!(encap_overhead(Carrier::Ipv4, &GreOptions::NONE), 24);
        assert_eq!(encap_overhead(Carrier::Ipv4, &ALL), 36);
        assert_eq!(encap_overhead(Carrier::UdpIpv4, &GreOptions::NONE), 32);
        assert_eq!(encap_overhead(Carrier::UdpIpv4, &ALL), 44);
    }

    #[test]
    fn tiny_underlay_saturates() {
        assert_eq!(overlay_mtu(30, Carrier::Ipv4, &ALL), 0);
        assert_eq!(overlay_mtu(0, Carrier::UdpIpv4, &GreOptions::NONE), 0);
    }
}
