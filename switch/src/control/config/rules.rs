//! Firewall rules as configured: each network's ordered list (first match
//! wins), the checks a new rule must pass, and the list resolved for the
//! data plane — a port named by a rule is its address (/32), or nothing
//! while the port is gone or has no address.
//!
//! A rule keeps an id of its own (never reused while yardd's state lives),
//! so its hits follow it when rules before it are added or removed.

use serde::{Deserialize, Serialize};

use yard_ctl::api::{check_rule, RuleAction, RulePeer, RuleProto, RuleSpec};
use yard_nat::flow::Proto;
use yard_nat::rules::{self, Endpoint, RuleId};
use yard_wire::cidr::Ipv4Cidr;

use super::{Config, ConfigError};

/// A rule as kept in the state file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConfiguredRule {
    /// Its identity.
    pub id: u64,
    /// The rule (its fields inline).
    #[serde(flatten)]
    pub spec: RuleSpec,
}

impl Config {
    /// Checks a new rule for `spec.net` at `position` (from 1; `None`:
    /// last). Returns the index in [`Config::rules`] it goes to.
    pub fn check_new_rule(
        &self,
        spec: &RuleSpec,
        position: Option<usize>,
    ) -> Result<usize, ConfigError> {
        self.existing_network(&spec.net)?;
        check_rule(spec).map_err(ConfigError::Rule)?;
        for peer in [&spec.from, &spec.to].into_iter().flatten() {
            if let RulePeer::Port(name) = peer {
                let port = self
                    .port(name)
                    .ok_or_else(|| ConfigError::RuleNoPort(name.clone()))?;
                if port.kind.address().is_none() {
                    return Err(ConfigError::RulePortWithoutAddress(name.clone()));
                }
            }
        }
        let indices: Vec<usize> = self.rule_indices(&spec.net).collect();
        match position {
            None => Ok(indices.last().map_or(self.rules.len(), |i| i + 1)),
            Some(p) if p >= 1 && p <= indices.len() => Ok(indices[p - 1]),
            Some(p) if p == indices.len() + 1 => {
                Ok(indices.last().map_or(self.rules.len(), |i| i + 1))
            }
            Some(p) => Err(ConfigError::RulePosition {
                net: spec.net.clone(),
                position: p,
                count: indices.len(),
            }),
        }
    }

    /// Where network `net`'s rules are in [`Config::rules`], in order.
    fn rule_indices<'a>(&'a self, net: &'a str) -> impl Iterator<Item = usize> + 'a {
        self.rules
            .iter()
            .enumerate()
            .filter(move |(_, r)| r.spec.net == net)
            .map(|(i, _)| i)
    }

    /// The index in [`Config::rules`] of network `net`'s rule at
    /// `position` (from 1), or why there is none.
    pub fn rule_at(&self, net: &str, position: usize) -> Result<usize, ConfigError> {
        self.existing_network(net)?;
        let indices: Vec<usize> = self.rule_indices(net).collect();
        match position.checked_sub(1).and_then(|i| indices.get(i)) {
            Some(&index) => Ok(index),
            None => Err(ConfigError::NoRule {
                net: net.to_string(),
                position,
                count: indices.len(),
            }),
        }
    }

    /// An id no rule has.
    pub fn next_rule_id(&self) -> u64 {
        self.rules.iter().map(|r| r.id).max().map_or(1, |id| id + 1)
    }

    /// The networks whose rules name port `name`.
    pub fn nets_with_rules_naming(&self, name: &str) -> Vec<String> {
        let mut nets: Vec<String> = self
            .rules
            .iter()
            .filter(|r| {
                [&r.spec.from, &r.spec.to]
                    .into_iter()
                    .flatten()
                    .any(|p| matches!(p, RulePeer::Port(n) if n == name))
            })
            .map(|r| r.spec.net.clone())
            .collect();
        nets.sort();
        nets.dedup();
        nets
    }

    /// Network `net`'s rules as the data plane and gateway match them.
    pub fn datapath_rules(&self, net: &str) -> Vec<rules::Rule> {
        self.rules
            .iter()
            .filter(|r| r.spec.net == net)
            .map(|r| rules::Rule {
                id: RuleId(r.id),
                from: self.endpoint(r.spec.from.as_ref()),
                to: self.endpoint(r.spec.to.as_ref()),
                proto: r.spec.proto.map(|p| match p {
                    RuleProto::Tcp => Proto::Tcp,
                    RuleProto::Udp => Proto::Udp,
                    RuleProto::Icmp => Proto::Icmp,
                }),
                dports: r.spec.dport.map(|d| (d.first, d.last)),
                action: match r.spec.action {
                    RuleAction::Allow => rules::RuleAction::Allow,
                    RuleAction::Deny => rules::RuleAction::Deny,
                },
            })
            .collect()
    }

    fn endpoint(&self, peer: Option<&RulePeer>) -> Endpoint {
        match peer {
            None => Endpoint::Any,
            Some(RulePeer::Outside) => Endpoint::Outside,
            Some(RulePeer::Cidr(cidr)) => Endpoint::Prefix(cidr.to_wire()),
            Some(RulePeer::Port(name)) => self
                .port(name)
                .and_then(|p| p.kind.address())
                .map_or(Endpoint::Nothing, |a| {
                    Endpoint::Prefix(Ipv4Cidr::host(a.addr))
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use yard_ctl::api::{NetworkSpec, PortKind, PortRange, PortSpec};
    use yard_ctl::Ipv4Cidr as Cidr;

    use super::*;

    fn config() -> Config {
        let mut config = Config::default();
        config.networks.push(NetworkSpec::new("n"));
        let ip = Cidr::new(Ipv4Addr::new(10, 9, 0, 2), 24);
        config.ports.push(PortSpec {
            name: "web".into(),
            kind: PortKind::tap("n", None, ip),
        });
        config.ports.push(PortSpec {
            name: "bare".into(),
            kind: PortKind::tap("n", None, None),
        });
        config
    }

    fn deny(net: &str) -> RuleSpec {
        RuleSpec {
            net: net.into(),
            from: Some(RulePeer::Port("web".into())),
            to: Some(RulePeer::Outside),
            proto: None,
            dport: None,
            action: RuleAction::Deny,
        }
    }

    fn add(config: &mut Config, spec: RuleSpec, position: Option<usize>) {
        let at = config.check_new_rule(&spec, position).unwrap();
        let id = config.next_rule_id();
        config.rules.insert(at, ConfiguredRule { id, spec });
    }

    #[test]
    fn positions_count_within_a_network() {
        let mut config = config();
        config.networks.push(NetworkSpec::new("other"));
        add(&mut config, deny("n"), None);
        add(&mut config, deny("other"), None);
        let mut first = deny("n");
        first.action = RuleAction::Allow;
        add(&mut config, first, Some(1));
        add(&mut config, deny("n"), Some(3));
        let actions: Vec<_> = config
            .datapath_rules("n")
            .iter()
            .map(|r| (r.id.0, r.action))
            .collect();
        assert_eq!(
            actions,
            vec![
                (3, rules::RuleAction::Allow),
                (1, rules::RuleAction::Deny),
                (4, rules::RuleAction::Deny)
            ]
        );
        assert_eq!(config.rule_at("n", 2).map(|i| config.rules[i].id), Ok(1));
        assert_eq!(config.datapath_rules("other").len(), 1);
        assert_eq!(config.nets_with_rules_naming("web"), vec!["n", "other"]);
    }

    #[test]
    fn bad_rules_are_refused_with_the_way_out() {
        let config = config();
        let refused =
            |spec: RuleSpec, position| config.check_new_rule(&spec, position).unwrap_err();
        assert_eq!(
            refused(deny("nope"), None),
            ConfigError::NoNetwork("nope".into())
        );
        let mut ghost = deny("n");
        ghost.from = Some(RulePeer::Port("ghost".into()));
        assert_eq!(
            refused(ghost, None),
            ConfigError::RuleNoPort("ghost".into())
        );
        let mut bare = deny("n");
        bare.to = Some(RulePeer::Port("bare".into()));
        assert!(refused(bare, None).to_string().contains("--ip"));
        let mut icmp = deny("n");
        icmp.proto = Some(RuleProto::Icmp);
        icmp.dport = Some(PortRange { first: 1, last: 2 });
        assert!(matches!(refused(icmp, None), ConfigError::Rule(_)));
        let beyond = refused(deny("n"), Some(2));
        assert!(beyond.to_string().contains("1 to 1"), "{beyond}");
        assert!(matches!(
            config.rule_at("n", 1),
            Err(ConfigError::NoRule { count: 0, .. })
        ));
    }

    #[test]
    fn a_port_resolves_to_its_address_or_nothing() {
        let mut config = config();
        add(&mut config, deny("n"), None);
        let rule = config.datapath_rules("n")[0];
        assert_eq!(
            rule.from,
            Endpoint::Prefix(Ipv4Cidr::host(Ipv4Addr::new(10, 9, 0, 2)))
        );
        assert_eq!(rule.to, Endpoint::Outside);
        config.ports.retain(|p| p.name != "web");
        assert_eq!(config.datapath_rules("n")[0].from, Endpoint::Nothing);
    }
}
