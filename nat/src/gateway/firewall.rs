//! The firewall rules of routed connections: each network's [`RuleSet`],
//! consulted once per new connection, when its conntrack entry would be
//! made; its packets after that, replies included, ride the entry.
//!
//! Contract: a connection from a network is judged by that network's
//! rules; one from the uplink (a published port) by the rules of the
//! network it goes to. It leaves for the outside when it goes out to the
//! uplink or the host uplink; a query to the gateway's DNS is judged as
//! traffic to the gateway's address, not the outside. The destination and
//! port judged are the ones it will reach (after DNAT). A hit is counted
//! on the rule that decided it, allow or deny.

use super::{Gateway, Side};
use crate::flow::FlowKey;
use crate::rules::{NewFlow, Rule, RuleAction, RuleId, RuleMatch, RuleSet};

impl Gateway {
    /// Replaces network `net`'s rules (hits follow each rule's id); no
    /// rules removes them.
    pub fn set_rules(&mut self, net: u16, rules: Vec<Rule>) {
        match self.firewall.iter_mut().find(|(id, _)| *id == net) {
            Some((_, set)) if !rules.is_empty() => set.replace(rules),
            Some(_) => self.firewall.retain(|(id, _)| *id != net),
            None if rules.is_empty() => {}
            None => {
                let mut set = RuleSet::default();
                set.replace(rules);
                self.firewall.push((net, set));
            }
        }
    }

    /// Each of network `net`'s rules with the routed connections it decided.
    pub fn rule_hits(&self, net: u16) -> Vec<(RuleId, u64)> {
        self.rules_of(net)
            .map(|set| set.hits().collect())
            .unwrap_or_default()
    }

    fn rules_of(&self, net: u16) -> Option<&RuleSet> {
        self.firewall
            .iter()
            .find(|(id, _)| *id == net)
            .map(|(_, set)| set)
    }

    /// The network whose rules judge a connection from `from` to `to`, and
    /// the flow they see.
    fn judged(from: Side, to: Side, reached: FlowKey, dns: bool) -> Option<(u16, NewFlow)> {
        let net = match (from, to) {
            (Side::Net(n), _) | (_, Side::Net(n)) => n,
            _ => return None,
        };
        let outside = !dns && matches!(to, Side::Uplink | Side::Host);
        Some((
            net,
            NewFlow {
                key: reached,
                outside,
            },
        ))
    }

    /// The rule that decides a new routed connection, without counting a
    /// hit (for `yardctl trace`): `reached` is its first packet's key with
    /// the destination it will reach; `dns`: a query to the gateway's DNS.
    pub fn rule_for(&self, from: Side, to: Side, reached: FlowKey, dns: bool) -> Option<RuleMatch> {
        let (net, flow) = Self::judged(from, to, reached, dns)?;
        self.rules_of(net)?.first_match(&flow)
    }

    /// Judges a new routed connection, counting the hit.
    pub(super) fn judge_new(
        &mut self,
        from: Side,
        to: Side,
        reached: FlowKey,
        dns: bool,
    ) -> RuleAction {
        let Some((net, flow)) = Self::judged(from, to, reached, dns) else {
            return RuleAction::Allow;
        };
        match self.firewall.iter_mut().find(|(id, _)| *id == net) {
            Some((_, set)) => set.judge(&flow),
            None => RuleAction::Allow,
        }
    }
}
