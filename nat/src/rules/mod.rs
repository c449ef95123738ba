//! Firewall rules: an ordered list per network, first match wins, default
//! allow (`yardctl rule add NET … allow|deny`).
//!
//! Contract: pure. A new connection is described by a [`NewFlow`] (protocol,
//! addresses, destination port, whether it leaves for the outside); a
//! [`RuleSet`] says which rule it matches first. [`RuleSet::first_match`]
//! only looks (for `yardctl trace`); [`RuleSet::judge`] also counts a hit on
//! the rule it matched, allow or deny. Neither allocates: the rules are a
//! vector built when the set is replaced, the hits a vector beside it.
//! Hits follow a rule's [`RuleId`] across [`RuleSet::replace`], so adding
//! or removing another rule keeps them.
//!
//! Only new connections are judged here; what tracks the connections a
//! rule allowed, so their replies pass, is the caller's: the gateway's
//! conntrack for routed traffic, [`flows::FlowTable`] for switched traffic.

pub mod flows;

use std::net::Ipv4Addr;

use yard_wire::cidr::Ipv4Cidr;

use crate::flow::{FlowKey, Proto};

/// What a rule does with the connections it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleAction {
    /// Let the connection through (its replies pass too).
    Allow,
    /// Drop its packets.
    Deny,
}

/// A source or destination a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// Any address.
    Any,
    /// An address inside this prefix (a port resolves to its address/32).
    Prefix(Ipv4Cidr),
    /// No address at all: a rule naming a port that has no address (yet)
    /// matches nothing.
    Nothing,
    /// Anything leaving through the gateway to the uplink (a destination
    /// only).
    Outside,
}

impl Endpoint {
    fn matches(&self, addr: Ipv4Addr, outside: bool) -> bool {
        match self {
            Endpoint::Any => true,
            Endpoint::Prefix(prefix) => prefix.contains(addr),
            Endpoint::Nothing => false,
            Endpoint::Outside => outside,
        }
    }
}

/// A rule's identity, stable while it exists (positions shift as rules are
/// added and removed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId(pub u64);

/// One rule, its endpoints resolved to addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Its identity.
    pub id: RuleId,
    /// Where the connection comes from.
    pub from: Endpoint,
    /// Where it goes.
    pub to: Endpoint,
    /// Its protocol; `None` for any.
    pub proto: Option<Proto>,
    /// First and last destination port (TCP and UDP only); `None` for any.
    pub dports: Option<(u16, u16)>,
    /// What to do.
    pub action: RuleAction,
}

impl Rule {
    /// Whether this rule matches `flow`.
    pub fn matches(&self, flow: &NewFlow) -> bool {
        let proto = self.proto.is_none_or(|p| p == flow.key.proto);
        let dport = self.dports.is_none_or(|(lo, hi)| {
            flow.key.proto != Proto::Icmp && (lo..=hi).contains(&flow.key.dport)
        });
        proto
            && dport
            && self.from.matches(flow.key.src, false)
            && self.to.matches(flow.key.dst, flow.outside)
    }
}

/// A new connection as the rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewFlow {
    /// Its first packet's flow (after DNAT: the destination it will reach).
    pub key: FlowKey,
    /// It leaves through the gateway to the uplink (or the host uplink).
    pub outside: bool,
}

/// The rule a connection matched first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleMatch {
    /// Its position, from 1 as `rule ls` shows it.
    pub position: usize,
    /// Its identity.
    pub id: RuleId,
    /// What it does.
    pub action: RuleAction,
}

/// One network's rules in order, and how often each matched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleSet {
    rules: Vec<Rule>,
    hits: Vec<u64>,
}

impl RuleSet {
    /// Replaces the rules; a rule whose id was in the old set keeps its hits.
    pub fn replace(&mut self, rules: Vec<Rule>) {
        let hits = rules
            .iter()
            .map(|rule| {
                self.rules
                    .iter()
                    .position(|old| old.id == rule.id)
                    .map_or(0, |i| self.hits[i])
            })
            .collect();
        self.rules = rules;
        self.hits = hits;
    }

    /// No rules: everything is allowed and nothing need be tracked.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The first rule matching `flow`, without counting a hit; `None`
    /// when none does (the default: allow).
    pub fn first_match(&self, flow: &NewFlow) -> Option<RuleMatch> {
        self.rules
            .iter()
            .enumerate()
            .find(|(_, rule)| rule.matches(flow))
            .map(|(i, rule)| RuleMatch {
                position: i + 1,
                id: rule.id,
                action: rule.action,
            })
    }

    /// What happens to `flow`: its first matching rule's action, with a hit
    /// counted on that rule, or allow when no rule matches.
    pub fn judge(&mut self, flow: &NewFlow) -> RuleAction {
        match self.first_match(flow) {
            Some(found) => {
                self.hits[found.position - 1] += 1;
                found.action
            }
            None => RuleAction::Allow,
        }
    }

    /// Each rule's id and hits, in order.
    pub fn hits(&self) -> impl Iterator<Item = (RuleId, u64)> + '_ {
        self.rules
            .iter()
            .map(|r| r.id)
            .zip(self.hits.iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);
    const METADATA: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);

    fn host(addr: Ipv4Addr) -> Endpoint {
        Endpoint::Prefix(Ipv4Cidr::host(addr))
    }

    fn rule(id: u64, from: Endpoint, to: Endpoint, action: RuleAction) -> Rule {
        Rule {
            id: RuleId(id),
            from,
            to,
            proto: None,
            dports: None,
            action,
        }
    }

    fn flow(proto: Proto, src: Ipv4Addr, dst: Ipv4Addr, dport: u16, outside: bool) -> NewFlow {
        NewFlow {
            key: FlowKey {
                proto,
                src,
                sport: 40000,
                dst,
                dport,
            },
            outside,
        }
    }

    fn set(rules: Vec<Rule>) -> RuleSet {
        let mut set = RuleSet::default();
        set.replace(rules);
        set
    }

    #[test]
    fn no_rule_allows_and_counts_nothing() {
        let mut rules = set(vec![rule(1, host(B), Endpoint::Any, RuleAction::Deny)]);
        let f = flow(Proto::Tcp, A, B, 80, false);
        assert_eq!(rules.first_match(&f), None);
        assert_eq!(rules.judge(&f), RuleAction::Allow);
        assert_eq!(rules.hits().collect::<Vec<_>>(), vec![(RuleId(1), 0)]);
    }

    #[test]
    fn the_first_match_wins_and_counts_its_hit() {
        let allow_then_deny = vec![
            rule(1, host(A), host(B), RuleAction::Allow),
            rule(2, Endpoint::Any, Endpoint::Any, RuleAction::Deny),
        ];
        let mut rules = set(allow_then_deny.clone());
        assert_eq!(
            rules.judge(&flow(Proto::Udp, A, B, 53, false)),
            RuleAction::Allow
        );
        assert_eq!(
            rules.judge(&flow(Proto::Udp, B, A, 53, false)),
            RuleAction::Deny
        );
        assert_eq!(rules.hits().map(|h| h.1).collect::<Vec<_>>(), vec![1, 1]);
        let mut reversed = set(allow_then_deny.into_iter().rev().collect());
        assert_eq!(
            reversed.judge(&flow(Proto::Udp, A, B, 53, false)),
            RuleAction::Deny,
            "deny before allow"
        );
    }

    #[test]
    fn looking_counts_no_hit() {
        let rules = set(vec![rule(7, Endpoint::Any, host(B), RuleAction::Deny)]);
        let found = rules.first_match(&flow(Proto::Icmp, A, B, 9, false));
        assert_eq!(
            found,
            Some(RuleMatch {
                position: 1,
                id: RuleId(7),
                action: RuleAction::Deny
            })
        );
        assert_eq!(rules.hits().map(|h| h.1).sum::<u64>(), 0);
    }

    #[test]
    fn protocol_and_port_range_narrow_a_rule() {
        let mut web = rule(1, Endpoint::Any, host(B), RuleAction::Deny);
        web.proto = Some(Proto::Tcp);
        web.dports = Some((80, 90));
        let rules = set(vec![web]);
        let denied = |f: NewFlow| rules.first_match(&f).is_some();
        assert!(denied(flow(Proto::Tcp, A, B, 80, false)));
        assert!(denied(flow(Proto::Tcp, A, B, 90, false)));
        assert!(!denied(flow(Proto::Tcp, A, B, 91, false)));
        assert!(!denied(flow(Proto::Udp, A, B, 80, false)));
        assert!(!denied(flow(Proto::Icmp, A, B, 80, false)));
    }

    #[test]
    fn outside_matches_what_leaves_for_the_uplink_and_prefixes_match_addresses() {
        let rules = set(vec![
            rule(1, Endpoint::Any, host(METADATA), RuleAction::Deny),
            rule(2, host(A), Endpoint::Outside, RuleAction::Deny),
        ]);
        let position = |f: NewFlow| rules.first_match(&f).map(|m| m.position);
        assert_eq!(position(flow(Proto::Tcp, B, METADATA, 80, true)), Some(1));
        assert_eq!(position(flow(Proto::Tcp, A, METADATA, 80, true)), Some(1));
        assert_eq!(
            position(flow(Proto::Tcp, A, Ipv4Addr::new(8, 8, 8, 8), 53, true)),
            Some(2)
        );
        assert_eq!(position(flow(Proto::Tcp, A, B, 53, false)), None);
        let subnet = Endpoint::Prefix(Ipv4Cidr::new(Ipv4Addr::new(10, 0, 0, 0), 24).unwrap());
        let nothing = set(vec![
            rule(3, Endpoint::Nothing, Endpoint::Any, RuleAction::Deny),
            rule(4, subnet, Endpoint::Any, RuleAction::Deny),
        ]);
        assert_eq!(
            nothing
                .first_match(&flow(Proto::Tcp, A, B, 1, false))
                .map(|m| m.id),
            Some(RuleId(4)),
            "a port without an address matches nothing"
        );
    }

    #[test]
    fn hits_follow_their_rule_across_a_replace() {
        let mut rules = set(vec![rule(1, Endpoint::Any, host(B), RuleAction::Deny)]);
        rules.judge(&flow(Proto::Tcp, A, B, 80, false));
        rules.replace(vec![
            rule(2, host(A), Endpoint::Any, RuleAction::Allow),
            rule(1, Endpoint::Any, host(B), RuleAction::Deny),
        ]);
        assert_eq!(
            rules.hits().collect::<Vec<_>>(),
            vec![(RuleId(2), 0), (RuleId(1), 1)]
        );
    }
}
