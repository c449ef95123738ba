//! Links: pairs of access ports of a `--no-icc` network that may reach each
//! other after all (`yardctl link add A B`), as Docker's legacy links open
//! the FORWARD chain for a container pair on a bridge with `icc=false`.
//!
//! Contract: a link without ports lets every frame between its two ports
//! through, both ways. A link with ports (`--ports 3306/tcp`) lets A reach B
//! on those ports and B answer from them — the same stateless pair of rules
//! Docker writes (`-s A -d B --dport P` and `-s B -d A --sport P`) — plus
//! ARP, so the two can resolve each other; any other frame between them
//! stays blocked. Only frames the isolation check would drop are asked.
//! Nothing allocates: a network's links are a short vector searched in
//! place.

use yard_wire::ethernet::{ethertype, EthernetFrame};
use yard_wire::ip::protocol;
use yard_wire::ipv4::Ipv4Packet;

use crate::dataplane::port::PortId;

/// One link, with its ports resolved in this bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The port that may reach `b`.
    pub a: PortId,
    /// The port `a` reaches.
    pub b: PortId,
    /// `(IP protocol, port)` pairs `a` may reach on `b`; empty for all
    /// traffic both ways.
    pub ports: Vec<(u8, u16)>,
}

/// A link as the control plane gives it: its ports by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedLink {
    /// The port that may reach `b`.
    pub a: String,
    /// The port `a` reaches.
    pub b: String,
    /// As [`Link::ports`].
    pub ports: Vec<(u8, u16)>,
}

/// The links of one network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Links(Vec<Link>);

impl Links {
    /// Replaces the links.
    pub fn set(&mut self, links: Vec<Link>) {
        self.0 = links;
    }

    /// Forgets the links of a removed port.
    pub fn forget(&mut self, port: PortId) {
        self.0.retain(|l| l.a != port && l.b != port);
    }

    /// Whether `frame` (Ethernet, untagged) from `from` may reach `to`
    /// although both are isolated.
    pub fn allows(&self, from: PortId, to: PortId, frame: &[u8]) -> bool {
        self.0.iter().any(|link| {
            let forward = link.a == from && link.b == to;
            let backward = link.b == from && link.a == to;
            (forward || backward) && (link.ports.is_empty() || link.ports_allow(forward, frame))
        })
    }
}

impl Link {
    /// A frame of a port-limited link: ARP, or TCP/UDP to one of the ports
    /// (from `a`) or from one of them (from `b`).
    fn ports_allow(&self, forward: bool, frame: &[u8]) -> bool {
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return false;
        };
        match eth.ethertype() {
            ethertype::ARP => true,
            ethertype::IPV4 => {
                let Some((proto, sport, dport)) = transport_ports(eth.payload()) else {
                    return false;
                };
                let port = if forward { dport } else { sport };
                self.ports.contains(&(proto, port))
            }
            _ => false,
        }
    }
}

/// The protocol and ports of an unfragmented (or first-fragment) TCP or
/// UDP packet: both carry the source and destination port in their first
/// four bytes.
fn transport_ports(packet: &[u8]) -> Option<(u8, u16, u16)> {
    let ip = Ipv4Packet::new_checked(packet).ok()?;
    if ip.frag_offset() != 0 {
        return None;
    }
    let proto = ip.protocol();
    if proto != protocol::TCP && proto != protocol::UDP {
        return None;
    }
    let l4 = ip.payload();
    let ports = l4.get(..4)?;
    Some((
        proto,
        u16::from_be_bytes([ports[0], ports[1]]),
        u16::from_be_bytes([ports[2], ports[3]]),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: PortId = PortId(1);
    const B: PortId = PortId(2);
    const C: PortId = PortId(3);

    fn links(ports: Vec<(u8, u16)>) -> Links {
        let mut links = Links::default();
        links.set(vec![Link { a: A, b: B, ports }]);
        links
    }

    fn ip() -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]).ipv4(
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            64,
        )
    }

    fn tcp(sport: u16, dport: u16) -> Vec<u8> {
        let mut bytes = Vec::new();
        ip().tcp(sport, dport, 1, 1024)
            .write(&mut bytes, b"x")
            .unwrap();
        bytes
    }

    fn udp(sport: u16, dport: u16) -> Vec<u8> {
        let mut bytes = Vec::new();
        ip().udp(sport, dport).write(&mut bytes, b"x").unwrap();
        bytes
    }

    fn arp() -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06]);
        f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&[0; 20]);
        f
    }

    #[test]
    fn an_open_link_passes_everything_between_its_pair_only() {
        let links = links(Vec::new());
        let frame = udp(4000, 53);
        assert!(links.allows(A, B, &frame) && links.allows(B, A, &frame));
        assert!(!links.allows(A, C, &frame) && !links.allows(C, B, &frame));
    }

    #[test]
    fn a_port_limited_link_lets_a_reach_b_on_its_ports_and_b_answer() {
        let links = links(vec![(protocol::TCP, 3306)]);
        assert!(links.allows(A, B, &tcp(40000, 3306)), "A reaches B:3306");
        assert!(links.allows(B, A, &tcp(3306, 40000)), "B answers from 3306");
        assert!(
            !links.allows(B, A, &tcp(40000, 3306)),
            "B does not reach A:3306"
        );
        assert!(
            !links.allows(A, B, &tcp(40000, 22)),
            "A does not reach B:22"
        );
        assert!(
            !links.allows(A, B, &udp(40000, 3306)),
            "3306/udp is another port"
        );
        assert!(
            links.allows(A, B, &arp()) && links.allows(B, A, &arp()),
            "ARP passes"
        );
    }

    #[test]
    fn forgetting_a_port_drops_its_links() {
        let mut links = links(Vec::new());
        links.forget(B);
        assert!(!links.allows(A, B, &arp()));
    }
}
