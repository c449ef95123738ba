//! Firewall rules on routed connections: judged once, when the conntrack
//! entry would be made, by the rules of the network the connection comes
//! from; replies ride the entry.

use super::*;
use crate::rules::{Endpoint, Rule, RuleAction, RuleId};

const METADATA: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);

fn deny(id: u64, from: Endpoint, to: Endpoint) -> Rule {
    Rule {
        id: RuleId(id),
        from,
        to,
        proto: None,
        dports: None,
        action: RuleAction::Deny,
    }
}

fn host(addr: Ipv4Addr) -> Endpoint {
    Endpoint::Prefix(Ipv4Cidr::host(addr))
}

#[test]
fn a_deny_rule_stops_new_routed_connections_and_counts_its_hits() {
    let mut gw = lab();
    gw.set_rules(1, vec![deny(1, Endpoint::Any, host(METADATA))]);
    let to_metadata = tcp(
        C1_MAC,
        GW1_MAC,
        (C1, 40000),
        (METADATA, 80),
        64,
        Tcp::Syn,
        (1, 0),
        b"",
    );
    let ping = echo(C1_MAC, GW1_MAC, C1, METADATA, 64, true, 9, b"p");
    for frame in [to_metadata, ping] {
        assert_eq!(
            run(&mut gw, NET1, frame, 1).0,
            Action::Drop(GatewayDrop::RuleDeny)
        );
    }
    assert!(gw.conntrack().is_empty());
    assert_eq!(gw.rule_hits(1), vec![(RuleId(1), 2)]);
    assert_eq!(gw.counters().drop_count(GatewayDrop::RuleDeny), 2);
    // Anything else still leaves; network 2 has no rules.
    assert_sent(run(&mut gw, NET1, c1_syn(1), 2).0, Side::Uplink);
    let f = udp(C2_MAC, GW2_MAC, (C2, 5000), (METADATA, 53), 64, b"q");
    assert_sent(run(&mut gw, NET2, f, 2).0, Side::Uplink);
    assert_eq!(gw.rule_hits(1), vec![(RuleId(1), 2)]);
}

#[test]
fn outside_is_what_leaves_for_the_uplink() {
    let mut gw = lab();
    gw.connect(1, 2);
    gw.set_rules(1, vec![deny(1, host(C1), Endpoint::Outside)]);
    assert_eq!(
        run(&mut gw, NET1, c1_syn(1), 1).0,
        Action::Drop(GatewayDrop::RuleDeny)
    );
    let f = udp(C1_MAC, GW1_MAC, (C1, 5000), (C2, 53), 64, b"q");
    assert_sent(run(&mut gw, NET1, f, 1).0, NET2);
    let found = gw.rule_for(
        NET1,
        Side::Uplink,
        flow(Proto::Tcp, (C1, 1), (S, 80)),
        false,
    );
    assert_eq!(
        found.map(|m| (m.position, m.action)),
        Some((1, RuleAction::Deny))
    );
    assert_eq!(
        gw.rule_hits(1),
        vec![(RuleId(1), 1)],
        "rule_for counts nothing"
    );
}

#[test]
fn replies_of_an_allowed_connection_pass_a_deny_for_their_direction() {
    let mut gw = lab();
    gw.connect(1, 2);
    // Network 2 may not open connections to C1; C1 may reach C2.
    gw.set_rules(2, vec![deny(5, host(C2), host(C1))]);
    let query = udp(C1_MAC, GW1_MAC, (C1, 5000), (C2, 53), 64, b"q");
    assert_sent(run(&mut gw, NET1, query, 1).0, NET2);
    let answer = udp(C2_MAC, GW2_MAC, (C2, 53), (C1, 5000), 64, b"a");
    assert_sent(run(&mut gw, NET2, answer, 2).0, NET1);
    let opened = udp(C2_MAC, GW2_MAC, (C2, 53), (C1, 6000), 64, b"new");
    assert_eq!(
        run(&mut gw, NET2, opened, 3).0,
        Action::Drop(GatewayDrop::RuleDeny)
    );
    assert_eq!(gw.rule_hits(2), vec![(RuleId(5), 1)]);
    // No rules: nothing is judged any more.
    gw.set_rules(2, Vec::new());
    assert!(gw.rule_hits(2).is_empty());
}

#[test]
fn a_published_port_is_judged_by_the_network_it_reaches_at_its_target() {
    let mut gw = lab();
    gw.add_publish(rule(1, Proto::Tcp, 8080, C1, 80)).unwrap();
    let mut web = deny(1, Endpoint::Any, host(C1));
    web.proto = Some(Proto::Tcp);
    web.dports = Some((80, 80));
    gw.set_rules(1, vec![web]);
    let syn = tcp(
        R_MAC,
        U_MAC,
        (S, 40000),
        (U, 8080),
        64,
        Tcp::Syn,
        (1, 0),
        b"",
    );
    assert_eq!(
        run(&mut gw, Side::Uplink, syn, 1).0,
        Action::Drop(GatewayDrop::RuleDeny)
    );
    assert_eq!(gw.rule_hits(1), vec![(RuleId(1), 1)]);
}

#[test]
fn outside_includes_the_host_uplink_but_not_the_gateways_dns() {
    let mut gw = lab();
    gw.set_uplink(None);
    gw.set_host_uplink(true);
    gw.set_dns_forward(Some(Ipv4Addr::new(127, 0, 0, 53)));
    gw.set_rules(1, vec![deny(1, Endpoint::Any, Endpoint::Outside)]);
    let out = udp(C1_MAC, GW1_MAC, (C1, 40000), (S, 53), 64, b"q");
    assert_eq!(
        run(&mut gw, NET1, out, 0).0,
        Action::Drop(GatewayDrop::RuleDeny)
    );
    let dns = udp(C1_MAC, GW1_MAC, (C1, 40001), (GW1, 53), 64, b"q");
    assert_sent(run(&mut gw, NET1, dns, 0).0, Side::Host);
    assert_eq!(gw.rule_hits(1), vec![(RuleId(1), 1)]);
    // A rule for the gateway's address does judge the DNS query.
    gw.set_rules(1, vec![deny(2, Endpoint::Any, host(GW1))]);
    let dns = udp(C1_MAC, GW1_MAC, (C1, 40002), (GW1, 53), 64, b"q");
    assert_eq!(
        run(&mut gw, NET1, dns, 0).0,
        Action::Drop(GatewayDrop::RuleDeny)
    );
}
