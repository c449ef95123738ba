//! Value types carried by the control API: MAC addresses, IPv4 prefixes and
//! the extra addresses a port with port security may send from.
//!
//! Both serialize as the strings people write (`02:00:ac:1e:00:02`,
//! `172.30.0.0/16`), so the JSON a script sees is the text a person types.
//! Parsing is strict and every error says what was expected. Prefix
//! arithmetic is `yard_wire::cidr`'s; [`Ipv4Cidr`] adds the text forms.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use yard_wire::cidr as wire;

/// A 48-bit Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// True for group (multicast and broadcast) addresses: the I/G bit is set.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// True for the all-ones broadcast address.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// True when this address may appear as a frame's source: not a group
    /// address and not all zeroes.
    pub fn is_valid_source(&self) -> bool {
        !self.is_multicast() && self.0 != [0; 6]
    }

    /// A locally administered unicast address derived from `seed`, stable for the
    /// same seed (used for ports the user gave no `--mac`).
    pub fn local_from_seed(seed: &[u8]) -> MacAddr {
        // FNV-1a: stable across runs and Rust versions, unlike std's hasher.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in seed {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        let b = hash.to_be_bytes();
        MacAddr([0x02, b[1], b[2], b[3], b[4], b[5]])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a string is not a MAC address or an IPv4 prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not six colon-separated hex octets.
    #[error("'{0}' is not a MAC address: expected six hex octets such as 02:42:ac:11:00:02")]
    Mac(String),
    /// Not `a.b.c.d/len` with len 0..=32.
    #[error("'{0}' is not an IPv4 prefix: expected ADDRESS/LENGTH such as 172.30.0.2/16")]
    Cidr(String),
    /// Neither an IPv4 address or prefix nor a MAC address.
    #[error(
        "'{0}' is not an allowed address: expected an IPv4 address or prefix (172.30.0.9, \
         10.8.0.0/24) or a unicast MAC address (02:42:ac:1e:00:09)"
    )]
    Allowed(String),
}

impl FromStr for MacAddr {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseError::Mac(s.to_string());
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in out.iter_mut() {
            let part = parts.next().ok_or_else(err)?;
            if part.is_empty() || part.len() > 2 {
                return Err(err());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(MacAddr(out))
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An IPv4 address with a prefix length: an interface address (`172.30.0.2/16`)
/// or, with the host bits zero, a subnet (`172.30.0.0/16`). The text and
/// serde form of [`yard_wire::cidr::Ipv4Cidr`], which does the arithmetic.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Ipv4Cidr {
    /// The address as written.
    pub addr: Ipv4Addr,
    /// Prefix length, 0 to 32.
    pub prefix: u8,
}

impl Ipv4Cidr {
    /// Builds a prefix; `None` when `prefix > 32`.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Self> {
        wire::Ipv4Cidr::new(addr, prefix).map(Self::from)
    }

    /// The prefix as `yard_wire` computes with it. The fields are public, so
    /// a prefix length over 32 can be written in: it reads as 32.
    pub fn to_wire(&self) -> wire::Ipv4Cidr {
        wire::Ipv4Cidr::new(self.addr, self.prefix).unwrap_or(wire::Ipv4Cidr::host(self.addr))
    }

    /// The netmask as a number.
    pub fn mask(&self) -> u32 {
        self.to_wire().mask()
    }

    /// The same prefix with the host bits cleared.
    pub fn network(&self) -> Ipv4Cidr {
        self.to_wire().network().into()
    }

    /// True when `ip` lies inside this prefix.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.to_wire().contains(ip)
    }

    /// True when the two prefixes share any address.
    pub fn overlaps(&self, other: &Ipv4Cidr) -> bool {
        self.to_wire().overlaps(&other.to_wire())
    }

    /// The first usable host address (network + 1), Docker's default gateway.
    pub fn first_host(&self) -> Ipv4Addr {
        self.to_wire().first_host()
    }

    /// The directed broadcast address of the prefix.
    pub fn broadcast(&self) -> Ipv4Addr {
        self.to_wire().broadcast()
    }
}

impl From<wire::Ipv4Cidr> for Ipv4Cidr {
    fn from(c: wire::Ipv4Cidr) -> Self {
        Ipv4Cidr {
            addr: c.addr(),
            prefix: c.prefix(),
        }
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseError::Cidr(s.to_string());
        let (addr, prefix) = s.split_once('/').ok_or_else(err)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| err())?;
        let prefix: u8 = prefix.parse().map_err(|_| err())?;
        Ipv4Cidr::new(addr, prefix).ok_or_else(err)
    }
}

impl Serialize for Ipv4Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ipv4Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An address a port with port security may send from besides its own
/// (`port add --allowed-address`): IPv4 sources inside a prefix (a router's
/// routed subnet, a VM's second address), or one more source MAC (a VM with
/// several interfaces on one TAP, a VRRP virtual MAC). The text form is what
/// people type: `172.30.0.9` (a /32), `10.8.0.0/24` or `02:42:ac:1e:00:09`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum AllowedAddress {
    /// IPv4 sources inside this prefix.
    Ip(Ipv4Cidr),
    /// This source MAC.
    Mac(MacAddr),
}

impl fmt::Display for AllowedAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllowedAddress::Ip(cidr) => cidr.fmt(f),
            AllowedAddress::Mac(mac) => mac.fmt(f),
        }
    }
}

impl FromStr for AllowedAddress {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseError::Allowed(s.to_string());
        if s.contains('/') {
            return s.parse().map(AllowedAddress::Ip).map_err(|_| err());
        }
        if let Ok(addr) = s.parse::<Ipv4Addr>() {
            return Ok(AllowedAddress::Ip(Ipv4Cidr { addr, prefix: 32 }));
        }
        match s.parse::<MacAddr>() {
            Ok(mac) if mac.is_valid_source() => Ok(AllowedAddress::Mac(mac)),
            _ => Err(err()),
        }
    }
}

impl Serialize for AllowedAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AllowedAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trips_and_rejects_garbage() {
        let mac: MacAddr = "02:42:AC:11:00:02".parse().unwrap();
        assert_eq!(mac.0, [0x02, 0x42, 0xac, 0x11, 0x00, 0x02]);
        assert_eq!(mac.to_string(), "02:42:ac:11:00:02");
        for bad in [
            "",
            "02:42:ac:11:00",
            "02:42:ac:11:00:02:03",
            "zz:42:ac:11:00:02",
            "002:42:ac:11:00:02",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad} parsed");
        }
        assert!(MacAddr::BROADCAST.is_multicast());
        assert!(!mac.is_multicast());
        assert!(!MacAddr([0; 6]).is_valid_source());
    }

    #[test]
    fn seeded_mac_is_local_unicast_and_stable() {
        let a = MacAddr::local_from_seed(b"c1");
        assert_eq!(a, MacAddr::local_from_seed(b"c1"));
        assert_ne!(a, MacAddr::local_from_seed(b"c2"));
        assert!(a.is_valid_source());
        assert_eq!(a.0[0] & 0x02, 0x02, "locally administered bit");
    }

    #[test]
    fn cidr_math() {
        let net: Ipv4Cidr = "172.30.0.0/16".parse().unwrap();
        assert!(net.contains("172.30.255.1".parse().unwrap()));
        assert!(!net.contains("172.31.0.1".parse().unwrap()));
        assert_eq!(net.first_host(), Ipv4Addr::new(172, 30, 0, 1));
        assert_eq!(net.broadcast(), Ipv4Addr::new(172, 30, 255, 255));
        let inner: Ipv4Cidr = "172.30.5.0/24".parse().unwrap();
        assert!(net.overlaps(&inner) && inner.overlaps(&net));
        assert!(!net.overlaps(&"172.31.0.0/16".parse().unwrap()));
        assert!("172.30.0.0/33".parse::<Ipv4Cidr>().is_err());
        assert!("172.30.0.0".parse::<Ipv4Cidr>().is_err());
        assert_eq!("0.0.0.0/0".parse::<Ipv4Cidr>().unwrap().mask(), 0);
    }

    #[test]
    fn serde_uses_the_text_form() {
        let mac: MacAddr = "02:00:00:00:00:01".parse().unwrap();
        assert_eq!(
            serde_json::to_string(&mac).unwrap(),
            "\"02:00:00:00:00:01\""
        );
        let cidr: Ipv4Cidr = serde_json::from_str("\"10.0.0.1/8\"").unwrap();
        assert_eq!(cidr.prefix, 8);
        assert!(serde_json::from_str::<Ipv4Cidr>("\"10.0.0.1\"").is_err());
    }

    #[test]
    fn allowed_addresses_parse_as_people_write_them() {
        let one: AllowedAddress = "172.30.0.9".parse().unwrap();
        assert_eq!(
            one,
            AllowedAddress::Ip("172.30.0.9/32".parse().unwrap()),
            "a bare address is a /32"
        );
        let net: AllowedAddress = "10.8.0.0/24".parse().unwrap();
        assert_eq!(net.to_string(), "10.8.0.0/24");
        let mac: AllowedAddress = "02:42:AC:1E:00:09".parse().unwrap();
        assert_eq!(mac.to_string(), "02:42:ac:1e:00:09");
        for bad in [
            "",
            "10.8.0.0/40",
            "ff:ff:ff:ff:ff:ff",
            "01:00:5e:00:00:01",
            "x",
        ] {
            let err = bad.parse::<AllowedAddress>().unwrap_err();
            assert!(err.to_string().contains("allowed address"), "{bad}: {err}");
        }
        let json = serde_json::to_string(&vec![one, mac]).unwrap();
        assert_eq!(json, r#"["172.30.0.9/32","02:42:ac:1e:00:09"]"#);
        assert_eq!(
            serde_json::from_str::<Vec<AllowedAddress>>(&json).unwrap(),
            vec![one, mac]
        );
    }
}
