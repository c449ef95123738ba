//! The identity of a connection: protocol and both endpoints.
//!
//! For TCP and UDP the ports are the transport ports; for ICMP echo both
//! "ports" are the echo identifier, so a query and its reply share one key
//! shape. A key is directional: [`FlowKey::reversed`] gives the key the other
//! direction's packets carry.

use std::net::Ipv4Addr;

use yard_wire::ip::protocol;

/// IP protocol numbers the gateway tracks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    /// ICMP (1): echo queries are tracked; errors follow the flow they quote.
    Icmp,
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
}

impl Proto {
    /// From the IPv4 protocol field; `None` for protocols not tracked.
    pub fn from_ip_protocol(p: u8) -> Option<Proto> {
        match p {
            protocol::ICMP => Some(Proto::Icmp),
            protocol::TCP => Some(Proto::Tcp),
            protocol::UDP => Some(Proto::Udp),
            _ => None,
        }
    }

    /// The IPv4 protocol field value.
    pub fn ip_protocol(self) -> u8 {
        match self {
            Proto::Icmp => protocol::ICMP,
            Proto::Tcp => protocol::TCP,
            Proto::Udp => protocol::UDP,
        }
    }

    /// Lower-case name, as `conntrack ls` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Icmp => "icmp",
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// One direction of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// TCP, UDP or ICMP (echo): what the ports mean.
    pub proto: Proto,
    /// Source address.
    pub src: Ipv4Addr,
    /// Source port (ICMP: echo identifier).
    pub sport: u16,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Destination port (ICMP: echo identifier).
    pub dport: u16,
}

impl FlowKey {
    /// The key of the opposite direction.
    pub fn reversed(&self) -> FlowKey {
        FlowKey {
            proto: self.proto,
            src: self.dst,
            sport: self.dport,
            dst: self.src,
            dport: self.sport,
        }
    }
}

impl std::fmt::Display for FlowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}:{} -> {}:{}",
            self.proto.as_str(),
            self.src,
            self.sport,
            self.dst,
            self.dport
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reversing_twice_is_identity() {
        let k = FlowKey {
            proto: Proto::Tcp,
            src: Ipv4Addr::new(172, 30, 0, 2),
            sport: 40000,
            dst: Ipv4Addr::new(10, 1, 0, 1),
            dport: 80,
        };
        assert_eq!(k.reversed().reversed(), k);
        assert_eq!(k.reversed().src, k.dst);
        assert_eq!(Proto::from_ip_protocol(6), Some(Proto::Tcp));
        assert_eq!(Proto::from_ip_protocol(47), None);
    }
}
