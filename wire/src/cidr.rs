//! IPv4 prefixes: an address with a prefix length (`172.30.0.2/16`), and the
//! arithmetic on them — netmask, network, containment, overlap, the first
//! host and the directed broadcast address.
//!
//! Contract: the one implementation of prefix arithmetic in the project;
//! the API types (`yard_ctl::Ipv4Cidr`, which adds parsing and serde) and
//! the gateway's subnets delegate to it. Pure `const`-friendly arithmetic on
//! `u32`s: no allocation, no panic for any value (a prefix length over 32
//! cannot be built). An IPv6 prefix type will sit beside this one.

use core::fmt;
use core::net::Ipv4Addr;

/// An IPv4 address with a prefix length, 0 to 32: an interface address
/// (`172.30.0.2/16`) or, with the host bits zero, a subnet (`172.30.0.0/16`).
/// The address is kept as given; [`Ipv4Cidr::network`] clears the host bits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Ipv4Cidr {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Cidr {
    /// The longest prefix length.
    pub const MAX_PREFIX: u8 = 32;

    /// `addr/prefix`; `None` when `prefix` is over 32.
    pub const fn new(addr: Ipv4Addr, prefix: u8) -> Option<Ipv4Cidr> {
        if prefix > Self::MAX_PREFIX {
            return None;
        }
        Some(Ipv4Cidr { addr, prefix })
    }

    /// `addr/32`: the prefix holding one address.
    pub const fn host(addr: Ipv4Addr) -> Ipv4Cidr {
        Ipv4Cidr {
            addr,
            prefix: Self::MAX_PREFIX,
        }
    }

    /// The address as given (host bits included).
    pub const fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length, 0 to 32.
    pub const fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The netmask as a number: `prefix` one bits from the top.
    pub const fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix as u32)
        }
    }

    /// The netmask as an address (`255.255.0.0` for a /16).
    pub const fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from_bits(self.mask())
    }

    /// The same prefix with the host bits cleared.
    pub const fn network(&self) -> Ipv4Cidr {
        Ipv4Cidr {
            addr: Ipv4Addr::from_bits(self.addr.to_bits() & self.mask()),
            prefix: self.prefix,
        }
    }

    /// True when `ip` lies inside this prefix.
    pub const fn contains(&self, ip: Ipv4Addr) -> bool {
        ip.to_bits() & self.mask() == self.addr.to_bits() & self.mask()
    }

    /// True when the two prefixes share any address: the shorter one holds
    /// the longer one's address.
    pub const fn overlaps(&self, other: &Ipv4Cidr) -> bool {
        if self.prefix <= other.prefix {
            self.contains(other.addr)
        } else {
            other.contains(self.addr)
        }
    }

    /// The first host address (network + 1), Docker's default gateway.
    pub const fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from_bits((self.addr.to_bits() & self.mask()).wrapping_add(1))
    }

    /// The directed broadcast address of the prefix: the host bits all ones.
    pub const fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from_bits(self.addr.to_bits() | !self.mask())
    }

    /// True when `ip` is this prefix's directed broadcast address and the
    /// prefix has one: a /31 (RFC 3021, point-to-point) and a /32 use every
    /// address for hosts.
    pub const fn is_directed_broadcast(&self, ip: Ipv4Addr) -> bool {
        self.prefix < 31 && ip.to_bits() == self.broadcast().to_bits()
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cidr(a: [u8; 4], p: u8) -> Ipv4Cidr {
        Ipv4Cidr::new(Ipv4Addr::from(a), p).unwrap()
    }

    #[test]
    fn masks_and_addresses() {
        assert_eq!(cidr([0, 0, 0, 0], 0).mask(), 0);
        assert_eq!(cidr([10, 0, 0, 0], 8).mask(), 0xff00_0000);
        assert_eq!(cidr([10, 0, 0, 1], 32).mask(), u32::MAX);
        assert_eq!(
            cidr([172, 30, 9, 9], 16).netmask(),
            Ipv4Addr::new(255, 255, 0, 0)
        );
        let net = cidr([172, 30, 9, 9], 16);
        assert_eq!(net.network(), cidr([172, 30, 0, 0], 16));
        assert_eq!(net.addr(), Ipv4Addr::new(172, 30, 9, 9), "kept as given");
        assert_eq!(net.first_host(), Ipv4Addr::new(172, 30, 0, 1));
        assert_eq!(net.broadcast(), Ipv4Addr::new(172, 30, 255, 255));
        assert_eq!(net.to_string(), "172.30.9.9/16");
        assert_eq!(Ipv4Cidr::new(Ipv4Addr::LOCALHOST, 33), None);
        assert_eq!(Ipv4Cidr::host(Ipv4Addr::LOCALHOST).prefix(), 32);
    }

    #[test]
    fn containment_and_overlap() {
        let net = cidr([172, 30, 0, 0], 16);
        assert!(net.contains(Ipv4Addr::new(172, 30, 255, 1)));
        assert!(!net.contains(Ipv4Addr::new(172, 31, 0, 1)));
        assert!(cidr([0, 0, 0, 0], 0).contains(Ipv4Addr::BROADCAST));
        let inner = cidr([172, 30, 5, 0], 24);
        assert!(net.overlaps(&inner) && inner.overlaps(&net));
        assert!(!net.overlaps(&cidr([172, 31, 0, 0], 16)));
    }

    #[test]
    fn directed_broadcast_only_below_31() {
        let net = cidr([192, 168, 1, 0], 24);
        assert!(net.is_directed_broadcast(Ipv4Addr::new(192, 168, 1, 255)));
        assert!(!net.is_directed_broadcast(Ipv4Addr::new(192, 168, 1, 254)));
        let p2p = cidr([10, 0, 0, 0], 31);
        assert!(!p2p.is_directed_broadcast(Ipv4Addr::new(10, 0, 0, 1)));
        let host = Ipv4Cidr::host(Ipv4Addr::new(10, 0, 0, 7));
        assert!(!host.is_directed_broadcast(Ipv4Addr::new(10, 0, 0, 7)));
    }

    proptest! {
        #[test]
        fn network_and_broadcast_bound_the_prefix(a in any::<u32>(), p in 0u8..=32, x in any::<u32>()) {
            let c = Ipv4Cidr::new(Ipv4Addr::from(a), p).unwrap();
            let (lo, hi) = (c.network().addr().to_bits(), c.broadcast().to_bits());
            prop_assert_eq!(c.contains(Ipv4Addr::from(x)), lo <= x && x <= hi);
            prop_assert_eq!(u64::from(hi - lo) + 1, 1u64 << (32 - p));
        }
    }
}
