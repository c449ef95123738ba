//! The firewall rule requests of the control server: `rule add`, `rule
//! rm`, `rule ls` — validated by [`crate::control::config::Config`],
//! applied to every datapath thread (bridges and gateway) as the network's
//! whole list, then persisted; restored after the ports. A port named by a
//! rule is resolved to its address whenever the list is pushed, so a port
//! added or removed re-pushes the lists that name it. Rules go with their
//! network.

use yard_ctl::api::{Payload, RuleInfo, RuleSpec};

use super::{Control, Outcome};
use crate::control::config::ConfiguredRule;
use crate::dataplane::threads::DatapathError;

impl Control {
    pub(super) fn rule_add(&mut self, spec: RuleSpec, position: Option<usize>) -> Outcome {
        let index = self.config.check_new_rule(&spec, position)?;
        let net = spec.net.clone();
        let before = self.config.clone();
        let id = self.config.next_rule_id();
        self.config.rules.insert(
            index,
            ConfiguredRule {
                id,
                spec: spec.clone(),
            },
        );
        self.push_rules(&net)?;
        let undo = before.datapath_rules(&net);
        let undo_net = net.clone();
        self.commit(before, move |dp| dp.set_rules(&undo_net, undo))?;
        let position = self.position_of(id);
        Ok(Payload::Rule(RuleInfo {
            position,
            spec,
            hits: 0,
        }))
    }

    pub(super) fn rule_rm(&mut self, net: &str, position: usize) -> Outcome {
        let index = self.config.rule_at(net, position)?;
        let before = self.config.clone();
        self.config.rules.remove(index);
        self.push_rules(net)?;
        let undo = before.datapath_rules(net);
        let undo_net = net.to_string();
        self.commit(before, move |dp| dp.set_rules(&undo_net, undo))?;
        Ok(Payload::Done)
    }

    /// `rule ls`: network `net`'s rules (or every network's), in order,
    /// with their hits summed over the datapath threads.
    pub(super) fn rule_ls(&self, net: Option<&str>) -> Outcome {
        if let Some(net) = net {
            self.known_network(net)?;
        }
        let mut infos = Vec::new();
        for network in &self.config.networks {
            if net.is_some_and(|n| n != network.name) {
                continue;
            }
            let rules: Vec<&ConfiguredRule> = self
                .config
                .rules
                .iter()
                .filter(|r| r.spec.net == network.name)
                .collect();
            if rules.is_empty() {
                continue;
            }
            let hits = self.datapath.rule_hits(&network.name)?;
            for (i, rule) in rules.into_iter().enumerate() {
                infos.push(RuleInfo {
                    position: i + 1,
                    spec: rule.spec.clone(),
                    hits: hits
                        .iter()
                        .find(|(id, _)| id.0 == rule.id)
                        .map_or(0, |(_, h)| *h),
                });
            }
        }
        Ok(Payload::Rules(infos))
    }

    /// The position (from 1) of rule `id` in its network's list.
    fn position_of(&self, id: u64) -> usize {
        let Some(rule) = self.config.rules.iter().find(|r| r.id == id) else {
            return 0;
        };
        self.config
            .rules
            .iter()
            .filter(|r| r.spec.net == rule.spec.net)
            .position(|r| r.id == id)
            .map_or(0, |p| p + 1)
    }

    /// Gives network `net`'s bridges and gateway its rules as configured.
    pub(super) fn push_rules(&self, net: &str) -> Result<(), DatapathError> {
        self.datapath
            .set_rules(net, self.config.datapath_rules(net))
    }

    /// Re-resolves the rules naming port `name`, which was added or
    /// removed.
    pub(super) fn reresolve_rules(&self, name: &str) {
        for net in self.config.nets_with_rules_naming(name) {
            if let Err(error) = self.push_rules(&net) {
                tracing::warn!(%net, %error, "rules not applied");
            }
        }
    }

    /// Restores the saved rules after the ports: each network's list at
    /// once.
    pub(super) fn restore_rules(&mut self, saved: Vec<ConfiguredRule>) {
        self.config.rules = saved;
        let mut nets: Vec<String> = self
            .config
            .rules
            .iter()
            .map(|r| r.spec.net.clone())
            .collect();
        nets.sort();
        nets.dedup();
        for net in nets {
            if let Err(error) = self.push_rules(&net) {
                tracing::warn!(%net, %error, "rules not restored");
            }
        }
    }
}
