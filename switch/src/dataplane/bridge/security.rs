//! Port security: what a port may claim to be, checked on ingress before
//! the bridge learns a frame's source or forwards it (anti-spoofing, as
//! OpenStack's port security and the Linux bridge's `locked` ports do).
//!
//! A port with a [`PortSecurity`] policy (a TAP yardd configures, unless it
//! was added with `--no-port-security`):
//! - sends only from its own MAC or an allowed one (`spoofed-mac`);
//! - sends IPv4 only from its address or an allowed prefix (`spoofed-ip`);
//!   source 0.0.0.0 passes only as a DHCP client's (UDP to port 67);
//! - sends ARP only with an allowed sender MAC and, as sender address, its
//!   own address or an allowed one (`spoofed-arp`) — which covers replies,
//!   gratuitous ARP and requests that would teach the gateway or a
//!   neighbour a false mapping; sender 0.0.0.0 passes in requests (RFC 5227
//!   probes).
//!
//! A port with no IPv4 address at all (a TAP without `--ip` and without an
//! allowed prefix) is checked for its MAC only: yardd does not know what
//! the container will configure. IPv6 gets the MAC check alone: yardd gives
//! containers no IPv6 address and the gateway does not route IPv6, so there
//! is nothing to compare a source or an NDP target with (a link-local
//! address need not come from the MAC: `addr_gen_mode` may be random).
//!
//! Every access port, secured or not, is refused the network's gateway
//! address as an IPv4 source or an ARP sender (`gateway-claim`): that
//! address is yardd's. Tunnel and trunk ports are links to other switches,
//! which may have a gateway of the same address themselves (every host of
//! a network spanning GRE tunnels has one): they are not checked for it,
//! nor for addresses at all.
//!
//! A MAC that a secured port owns is never learned elsewhere: a frame from
//! any other port (unsecured, tunnel or trunk) with that source is dropped
//! as `spoofed-mac`, so no port can divert a secured port's traffic by
//! sending as it. Ports that are not secured may still steal each other's
//! MACs, as before.
//!
//! Contract: the per-frame check ([`check`]) allocates nothing and takes a
//! handful of compares: a port's own MACs and prefixes are a short slice
//! (usually one of each), and the owned MACs of a network are a sorted
//! slice searched in `log n` compares, only for frames of unsecured ports.
//! It never changes the frame. Policies are built and installed on the
//! slow path ([`PortSecurity::new`], [`NetGuard::own`]).

use std::net::Ipv4Addr;

use yard_ctl::types::AllowedAddress;
use yard_ctl::MacAddr;
use yard_wire::arp::{ArpOp, ArpPacket};
use yard_wire::cidr::Ipv4Cidr;
use yard_wire::ethernet::{ethertype, EthernetFrame};
use yard_wire::ip::protocol;
use yard_wire::ipv4::Ipv4Packet;
use yard_wire::udp::UdpPacket;

use crate::dataplane::port::PortId;
use crate::dataplane::verdict::DropReason;

/// The UDP port DHCP servers listen on: a client without an address sends
/// to it from 0.0.0.0 (RFC 2131).
const DHCP_SERVER_PORT: u16 = 67;

/// What one secured port may send from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSecurity {
    /// Its own MAC first, then the allowed ones.
    macs: Box<[MacAddr]>,
    /// Its own address as a /32 first, then the allowed prefixes; empty
    /// when it has none (then IPv4 and ARP sources are not checked).
    ipv4: Box<[Ipv4Cidr]>,
}

impl PortSecurity {
    /// The policy of a port whose container-side MAC is `mac`, whose address
    /// is `ip` (if it has one), and which may also use `allowed`.
    pub fn new(mac: MacAddr, ip: Option<Ipv4Addr>, allowed: &[AllowedAddress]) -> Self {
        let mut macs = vec![mac];
        let mut ipv4: Vec<Ipv4Cidr> = ip.map(Ipv4Cidr::host).into_iter().collect();
        for address in allowed {
            match address {
                AllowedAddress::Mac(m) if !macs.contains(m) => macs.push(*m),
                AllowedAddress::Mac(_) => {}
                AllowedAddress::Ip(cidr) => ipv4.push(cidr.to_wire()),
            }
        }
        PortSecurity {
            macs: macs.into_boxed_slice(),
            ipv4: ipv4.into_boxed_slice(),
        }
    }

    /// The MACs the port may send from: its own, then the allowed ones.
    pub fn macs(&self) -> &[MacAddr] {
        &self.macs
    }

    fn allows_mac(&self, mac: [u8; 6]) -> bool {
        self.macs.iter().any(|m| m.0 == mac)
    }

    /// True when `ip` is one of the port's sources, or the port has no
    /// IPv4 address to hold it to.
    fn allows_ipv4(&self, ip: Ipv4Addr) -> bool {
        self.ipv4.is_empty() || self.ipv4.iter().any(|c| c.contains(ip))
    }
}

/// A network's side of port security: its gateway address, which no port
/// may claim, and the MACs its secured ports own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetGuard {
    /// The gateway's address, when the network has a gateway.
    pub gateway_ip: Option<Ipv4Addr>,
    /// `(MAC as a number, owning port)`, sorted: searched in `log n`
    /// integer compares.
    owned: Vec<(u64, PortId)>,
}

/// A MAC as a number, for the owned list's compares.
fn mac_key(mac: [u8; 6]) -> u64 {
    let [a, b, c, d, e, f] = mac;
    u64::from_be_bytes([0, 0, a, b, c, d, e, f])
}

impl NetGuard {
    /// Records that `port` owns `macs` (a secured port's own and allowed
    /// MACs). Two ports allowed the same MAC both own it.
    pub fn own(&mut self, port: PortId, macs: &[MacAddr]) {
        for mac in macs {
            let key = mac_key(mac.0);
            let at = self.owned.partition_point(|(k, _)| *k < key);
            self.owned.insert(at, (key, port));
        }
    }

    /// Forgets the MACs `port` owned.
    pub fn disown(&mut self, port: PortId) {
        self.owned.retain(|(_, p)| *p != port);
    }

    /// True when `mac` is owned, but not by `port`.
    fn owned_elsewhere(&self, mac: [u8; 6], port: PortId) -> bool {
        let key = mac_key(mac);
        let first = self.owned.partition_point(|(k, _)| *k < key);
        let mut owned = false;
        for (_, owner) in self.owned[first..].iter().take_while(|(k, _)| *k == key) {
            if *owner == port {
                return false;
            }
            owned = true;
        }
        owned
    }

    /// The number of owned MACs (for tests and figures).
    pub fn owned_len(&self) -> usize {
        self.owned.len()
    }
}

/// How the port a frame came in on is checked.
#[derive(Debug, Clone, Copy)]
pub enum Ingress<'a> {
    /// A secured access port, with its policy.
    Secured(&'a PortSecurity),
    /// An access port without port security: only the gateway's address
    /// and other ports' owned MACs are refused.
    Open,
    /// A tunnel or trunk: a link to another switch; only other ports'
    /// owned MACs are refused.
    Link,
}

/// Checks one received frame (untagged: a trunk's tag is already popped)
/// from `port` of the network guarded by `guard`. `Err` carries the reason
/// to drop and count it for.
pub fn check(
    ingress: Ingress<'_>,
    guard: &NetGuard,
    port: PortId,
    frame: &[u8],
) -> Result<(), DropReason> {
    let eth = EthernetFrame::new_checked(frame).map_err(|_| DropReason::Malformed)?;
    let policy = match ingress {
        Ingress::Secured(policy) => {
            if !policy.allows_mac(eth.src()) {
                return Err(DropReason::SpoofedMac);
            }
            Some(policy)
        }
        Ingress::Open | Ingress::Link => {
            if !guard.owned.is_empty() && guard.owned_elsewhere(eth.src(), port) {
                return Err(DropReason::SpoofedMac);
            }
            if matches!(ingress, Ingress::Link) {
                return Ok(());
            }
            None
        }
    };
    match eth.ethertype() {
        ethertype::IPV4 => check_ipv4(policy, guard, eth.payload()),
        ethertype::ARP => check_arp(policy, guard, eth.payload()),
        _ => Ok(()),
    }
}

fn check_ipv4(
    policy: Option<&PortSecurity>,
    guard: &NetGuard,
    packet: &[u8],
) -> Result<(), DropReason> {
    // The header must hold a source to check; an open port's broken packet
    // is left to its receiver, as before.
    let ip = match (Ipv4Packet::new_quoted(packet), policy) {
        (Ok(ip), _) => ip,
        (Err(_), Some(_)) => return Err(DropReason::Malformed),
        (Err(_), None) => return Ok(()),
    };
    let src = ip.src();
    if guard.gateway_ip == Some(src) {
        return Err(DropReason::GatewayClaim);
    }
    let Some(policy) = policy else {
        return Ok(());
    };
    let acquiring = src.is_unspecified() && is_dhcp_client(&ip);
    if policy.allows_ipv4(src) || acquiring {
        Ok(())
    } else {
        Err(DropReason::SpoofedIp)
    }
}

/// A DHCP client's packet from 0.0.0.0: UDP to the server port, in the
/// first (or only) fragment.
fn is_dhcp_client(ip: &Ipv4Packet<&[u8]>) -> bool {
    ip.protocol() == protocol::UDP
        && !ip.is_later_fragment()
        && UdpPacket::new_checked(ip.payload()).is_ok_and(|udp| udp.dst_port() == DHCP_SERVER_PORT)
}

fn check_arp(
    policy: Option<&PortSecurity>,
    guard: &NetGuard,
    packet: &[u8],
) -> Result<(), DropReason> {
    let arp = match (ArpPacket::new_checked(packet), policy) {
        (Ok(arp), _) => arp,
        (Err(_), Some(_)) => return Err(DropReason::SpoofedArp),
        (Err(_), None) => return Ok(()),
    };
    let sender = arp.sender_proto();
    if guard.gateway_ip == Some(sender) {
        return Err(DropReason::GatewayClaim);
    }
    let Some(policy) = policy else {
        return Ok(());
    };
    let probe = sender.is_unspecified() && arp.op() == ArpOp::Request;
    if !policy.allows_mac(arp.sender_hw()) || !(probe || policy.allows_ipv4(sender)) {
        return Err(DropReason::SpoofedArp);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: MacAddr = MacAddr([0x02, 0x42, 172, 30, 0, 2]);
    const OTHER: MacAddr = MacAddr([0x02, 0x42, 172, 30, 0, 3]);
    const P1: PortId = PortId(1);
    const P2: PortId = PortId(2);

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn a_policy_holds_its_own_and_allowed_addresses() {
        let allowed = [
            "10.8.0.0/24".parse().unwrap(),
            "02:42:0a:08:00:01".parse().unwrap(),
            AllowedAddress::Mac(OWN),
        ];
        let policy = PortSecurity::new(OWN, Some(ip("172.30.0.2")), &allowed);
        assert_eq!(
            policy.macs().len(),
            2,
            "its own MAC once, then the allowed one"
        );
        assert!(policy.allows_mac(OWN.0));
        assert!(policy.allows_mac([0x02, 0x42, 0x0a, 0x08, 0x00, 0x01]));
        assert!(!policy.allows_mac(OTHER.0));
        assert!(policy.allows_ipv4(ip("172.30.0.2")));
        assert!(policy.allows_ipv4(ip("10.8.0.200")));
        assert!(!policy.allows_ipv4(ip("172.30.0.3")));
        assert!(!policy.allows_ipv4(ip("10.8.1.1")));

        let no_address = PortSecurity::new(OWN, None, &[]);
        assert!(
            no_address.allows_ipv4(ip("192.0.2.1")),
            "a port without an address is held to its MAC only"
        );
    }

    #[test]
    fn owned_macs_are_refused_to_every_other_port() {
        let mut guard = NetGuard::default();
        guard.own(P1, &[OTHER, OWN]);
        assert_eq!(guard.owned_len(), 2);
        assert!(guard.owned_elsewhere(OWN.0, P2));
        assert!(!guard.owned_elsewhere(OWN.0, P1));
        assert!(!guard.owned_elsewhere([0x02, 0, 0, 0, 0, 9], P2));
        // A MAC both ports are allowed stays usable by both.
        guard.own(P2, &[OWN]);
        assert!(!guard.owned_elsewhere(OWN.0, P2));
        assert!(!guard.owned_elsewhere(OWN.0, P1));
        assert!(guard.owned_elsewhere(OWN.0, PortId(3)));
        guard.disown(P1);
        assert!(!guard.owned_elsewhere(OTHER.0, P2));
        assert_eq!(guard.owned_len(), 1);
    }
}
