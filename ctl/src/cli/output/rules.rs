//! How `rule add` and `rule ls` read for people: one line for an added
//! rule, a table of a network's rules in order with their hits.

use super::super::table::Table;
use crate::api::RuleInfo;

/// `rule add`'s answer.
pub fn rule_added(info: &RuleInfo) -> String {
    format!(
        "rule {} of network {}: {}",
        info.position, info.spec.net, info.spec
    )
}

/// The `rule ls` table.
pub fn rules_table(rules: &[RuleInfo]) -> Table {
    let mut t = Table::new(&[
        "NETWORK", "POSITION", "FROM", "TO", "PROTO", "DPORT", "ACTION", "HITS",
    ]);
    let any = |text: Option<String>| text.unwrap_or_else(|| "any".to_string());
    for rule in rules {
        let spec = &rule.spec;
        t.row(vec![
            spec.net.clone(),
            rule.position.to_string(),
            any(spec.from.as_ref().map(ToString::to_string)),
            any(spec.to.as_ref().map(ToString::to_string)),
            any(spec.proto.map(|p| p.to_string())),
            any(spec.dport.map(|p| p.to_string())),
            spec.action.to_string(),
            rule.hits.to_string(),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{PortRange, RuleAction, RulePeer, RuleProto, RuleSpec};

    #[test]
    fn rules_list_in_order_with_their_hits() {
        let rule = |position, action, hits| RuleInfo {
            position,
            spec: RuleSpec {
                net: "web".into(),
                from: Some(RulePeer::Port("c1".into())),
                to: None,
                proto: Some(RuleProto::Tcp),
                dport: Some(PortRange {
                    first: 80,
                    last: 80,
                }),
                action,
            },
            hits,
        };
        let rules = [rule(1, RuleAction::Allow, 4), rule(2, RuleAction::Deny, 0)];
        let mut out = Vec::new();
        rules_table(&rules).render(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("NETWORK") && lines[0].ends_with("HITS"));
        let cells: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(cells, ["web", "1", "c1", "any", "tcp", "80", "allow", "4"]);
        assert_eq!(
            rule_added(&rules[1]),
            "rule 2 of network web: from c1 to any tcp/80 deny"
        );
    }
}
