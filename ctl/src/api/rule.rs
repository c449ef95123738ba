//! Firewall rules: `yardctl rule add NET [--from PORT|CIDR] [--to
//! PORT|CIDR|outside] [--proto tcp|udp|icmp] [--dport N[-M]] allow|deny
//! [--position N]`, per network, first match wins, default allow; applied
//! to new connections, whose replies then pass.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::types::Ipv4Cidr;

/// What a rule does.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    /// Let the connection through.
    Allow,
    /// Drop it.
    Deny,
}

impl std::fmt::Display for RuleAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RuleAction::Allow => "allow",
            RuleAction::Deny => "deny",
        })
    }
}

impl std::str::FromStr for RuleAction {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "allow" => Ok(RuleAction::Allow),
            "deny" => Ok(RuleAction::Deny),
            _ => Err(format!("{s}: a rule's action is allow or deny")),
        }
    }
}

/// The protocol a rule matches.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RuleProto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP (echo; errors follow the connection they are about).
    Icmp,
}

impl std::fmt::Display for RuleProto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RuleProto::Tcp => "tcp",
            RuleProto::Udp => "udp",
            RuleProto::Icmp => "icmp",
        })
    }
}

impl std::str::FromStr for RuleProto {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tcp" => Ok(RuleProto::Tcp),
            "udp" => Ok(RuleProto::Udp),
            "icmp" => Ok(RuleProto::Icmp),
            _ => Err(format!("{s}: the protocol is tcp, udp or icmp")),
        }
    }
}

/// A rule's source or destination.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RulePeer {
    /// A yardd port, by name: its address.
    Port(String),
    /// Addresses in a prefix (a bare address is a /32).
    Cidr(Ipv4Cidr),
    /// Anything leaving through the gateway to the uplink (destination
    /// only).
    Outside,
}

impl std::fmt::Display for RulePeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RulePeer::Port(name) => f.write_str(name),
            RulePeer::Cidr(cidr) => write!(f, "{cidr}"),
            RulePeer::Outside => f.write_str("outside"),
        }
    }
}

impl std::str::FromStr for RulePeer {
    type Err = String;

    /// `outside`, `CIDR`, an IPv4 address (a /32), or a port name.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "outside" {
            return Ok(RulePeer::Outside);
        }
        if let Ok(addr) = s.parse::<Ipv4Addr>() {
            return Ok(RulePeer::Cidr(Ipv4Cidr { addr, prefix: 32 }));
        }
        let looks_like_address = s.contains('/') || s.starts_with(|c: char| c.is_ascii_digit());
        if looks_like_address {
            return s.parse::<Ipv4Cidr>().map(RulePeer::Cidr).map_err(|_| {
                format!("{s} is not an IPv4 address or CIDR (e.g. 10.0.0.0/8 or 169.254.169.254); a port name starts with a letter")
            });
        }
        if s.is_empty() {
            return Err("give a port name, a CIDR or outside".into());
        }
        Ok(RulePeer::Port(s.to_string()))
    }
}

/// A destination port range: `80` or `8000-8080`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct PortRange {
    /// The first port.
    pub first: u16,
    /// The last port (equal to `first` for one port).
    pub last: u16,
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl std::str::FromStr for PortRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (first, last) = s.split_once('-').unwrap_or((s, s));
        let port = |p: &str| match p.parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "{s}: a port is a number from 1 to 65535, a range N-M"
            )),
        };
        let (first, last) = (port(first)?, port(last)?);
        if last < first {
            return Err(format!("{s}: the range must ascend, e.g. {last}-{first}"));
        }
        Ok(PortRange { first, last })
    }
}

/// A rule as asked for and kept.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RuleSpec {
    /// The network whose traffic it judges.
    pub net: String,
    /// Where connections come from; `None` for anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<RulePeer>,
    /// Where they go; `None` for anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<RulePeer>,
    /// The protocol; `None` for any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<RuleProto>,
    /// Destination ports (TCP or UDP only); `None` for any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dport: Option<PortRange>,
    /// What to do.
    pub action: RuleAction,
}

impl std::fmt::Display for RuleSpec {
    /// The match and action: `from web to outside tcp/80-90 deny`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let any = |p: &Option<RulePeer>| p.as_ref().map_or("any".to_string(), |p| p.to_string());
        write!(f, "from {} to {}", any(&self.from), any(&self.to))?;
        match (self.proto, self.dport) {
            (Some(proto), Some(ports)) => write!(f, " {proto}/{ports}")?,
            (Some(proto), None) => write!(f, " {proto}")?,
            (None, Some(ports)) => write!(f, " port {ports}")?,
            (None, None) => {}
        }
        write!(f, " {}", self.action)
    }
}

/// Why a rule makes no sense by itself (yardctl and yardd check alike).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// Ports without a protocol that has ports.
    #[error("--dport {0} needs --proto tcp or --proto udp: only TCP and UDP have ports")]
    DportWithoutPorts(PortRange),
    /// `outside` as a source.
    #[error("--from outside: outside is a destination only; match connections from the outside (to published ports) by --from CIDR")]
    FromOutside,
}

/// Checks what can be checked of a rule without yardd's configuration.
pub fn check_rule(rule: &RuleSpec) -> Result<(), RuleError> {
    if let Some(ports) = rule.dport {
        if !matches!(rule.proto, Some(RuleProto::Tcp | RuleProto::Udp)) {
            return Err(RuleError::DportWithoutPorts(ports));
        }
    }
    if rule.from == Some(RulePeer::Outside) {
        return Err(RuleError::FromOutside);
    }
    Ok(())
}

/// A configured rule with its place and its hits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RuleInfo {
    /// Its position in its network's list, from 1 (first match wins).
    pub position: usize,
    /// The rule (its fields inline in JSON).
    #[serde(flatten)]
    pub spec: RuleSpec,
    /// New connections it decided (allowed or denied), switched and
    /// routed, since yardd started.
    pub hits: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_outside_addresses_or_port_names() {
        assert_eq!("outside".parse(), Ok(RulePeer::Outside));
        assert_eq!(
            "169.254.169.254".parse::<RulePeer>().unwrap().to_string(),
            "169.254.169.254/32"
        );
        assert_eq!(
            "10.0.0.0/8".parse::<RulePeer>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!("web".parse(), Ok(RulePeer::Port("web".into())));
        for bad in ["10.0.0.0/33", "10.0.0.300", "1.2.3", ""] {
            assert!(bad.parse::<RulePeer>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ports_need_tcp_or_udp_and_outside_is_no_source() {
        let mut rule = RuleSpec {
            net: "n".into(),
            from: None,
            to: None,
            proto: Some(RuleProto::Icmp),
            dport: Some(PortRange { first: 1, last: 1 }),
            action: RuleAction::Deny,
        };
        assert!(matches!(
            check_rule(&rule),
            Err(RuleError::DportWithoutPorts(_))
        ));
        rule.proto = Some(RuleProto::Udp);
        assert_eq!(check_rule(&rule), Ok(()));
        rule.from = Some(RulePeer::Outside);
        assert_eq!(check_rule(&rule), Err(RuleError::FromOutside));
    }

    #[test]
    fn port_ranges_are_one_port_or_an_ascending_pair() {
        assert_eq!(
            "80".parse(),
            Ok(PortRange {
                first: 80,
                last: 80
            })
        );
        assert_eq!(
            "8000-8080".parse::<PortRange>().unwrap().to_string(),
            "8000-8080"
        );
        for bad in ["0", "90-80", "x", "70000", "1-"] {
            assert!(bad.parse::<PortRange>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_rule_reads_as_its_match_and_action_and_lists_its_hits() {
        let rule = RuleSpec {
            net: "n".into(),
            from: Some(RulePeer::Port("web".into())),
            to: Some(RulePeer::Outside),
            proto: Some(RuleProto::Tcp),
            dport: Some(PortRange {
                first: 80,
                last: 90,
            }),
            action: RuleAction::Deny,
        };
        assert_eq!(rule.to_string(), "from web to outside tcp/80-90 deny");
        let info = RuleInfo {
            position: 1,
            spec: rule,
            hits: 3,
        };
        let json = serde_json::to_value(&info).unwrap();
        assert_eq!(json["hits"], 3);
        assert_eq!(json["to"], "outside");
        assert_eq!(json["from"]["port"], "web");
        let back: RuleInfo = serde_json::from_value(json).unwrap();
        assert_eq!(back, info);
    }
}
