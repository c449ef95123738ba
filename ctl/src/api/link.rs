//! Links: a pair of ports of a `--no-icc` network allowed to reach each
//! other (`yardctl link add A B [--ports 3306/tcp,…]`), as Docker's legacy
//! `--link` under `icc=false`.

use serde::{Deserialize, Serialize};

use super::Transport;

/// A link as asked for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LinkSpec {
    /// The port that may reach `b`.
    pub a: String,
    /// The port `a` reaches.
    pub b: String,
    /// The ports `a` may reach on `b` (and `b` answer from); empty for all
    /// traffic both ways.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<LinkPort>,
}

/// One port of a link: `3306/tcp`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct LinkPort {
    /// The port number.
    pub port: u16,
    /// TCP or UDP.
    pub proto: Transport,
}

impl LinkPort {
    /// The IP protocol number and port, as the data plane matches them.
    pub fn ip_proto_port(&self) -> (u8, u16) {
        let proto = match self.proto {
            Transport::Tcp => 6,
            Transport::Udp => 17,
        };
        (proto, self.port)
    }
}

impl std::fmt::Display for LinkPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let proto = match self.proto {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        };
        write!(f, "{}/{proto}", self.port)
    }
}

impl std::str::FromStr for LinkPort {
    type Err = String;

    /// `PORT[/tcp|/udp]`, TCP by default, as Docker's `--expose`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (port, proto) = match s.rsplit_once('/') {
            Some((port, "tcp")) => (port, Transport::Tcp),
            Some((port, "udp")) => (port, Transport::Udp),
            Some((_, other)) => return Err(format!("{s}: protocol {other} is not tcp or udp")),
            None => (s, Transport::Tcp),
        };
        match port.parse::<u16>() {
            Ok(port) if port > 0 => Ok(LinkPort { port, proto }),
            _ => Err(format!("{s}: the port is not a number from 1 to 65535")),
        }
    }
}

/// A link as configured, with the network of its ports.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LinkInfo {
    /// The link (its fields inline in JSON).
    #[serde(flatten)]
    pub spec: LinkSpec,
    /// The network both ports are on.
    pub net: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_ports_parse_like_docker_expose() {
        let tcp: LinkPort = "3306".parse().unwrap();
        assert_eq!((tcp.port, tcp.proto), (3306, Transport::Tcp));
        let udp: LinkPort = "53/udp".parse().unwrap();
        assert_eq!(
            (udp.to_string(), udp.ip_proto_port()),
            ("53/udp".into(), (17, 53))
        );
        for bad in ["0", "70000", "80/sctp", "x/tcp"] {
            assert!(bad.parse::<LinkPort>().is_err(), "{bad}");
        }
    }
}
