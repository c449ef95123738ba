//! Firewall rules in the pipeline, with two bridges standing for two
//! datapath threads that share allowed flows as the mesh does: the reply
//! of a flow one bridge allowed passes the other's deny although that
//! bridge never took in the announcement before the reply arrived.

use yard_ctl::MacAddr;
use yard_nat::rules::{Endpoint, Rule, RuleAction, RuleId};
use yard_wire::cidr::Ipv4Cidr;

use super::{mac, Lab, T0};
use crate::dataplane::bridge::rules::FlowLink;
use crate::dataplane::port::PortId;
use crate::dataplane::verdict::DropReason;

const A: [u8; 4] = [10, 0, 0, 1];
const B: [u8; 4] = [10, 0, 0, 2];

fn udp(
    dst_mac: u8,
    src_mac: u8,
    (src, sport): ([u8; 4], u16),
    (dst, dport): ([u8; 4], u16),
) -> Vec<u8> {
    let mut bytes = Vec::new();
    etherparse::PacketBuilder::ethernet2(mac(src_mac).0, mac(dst_mac).0)
        .ipv4(src, dst, 64)
        .udp(sport, dport)
        .write(&mut bytes, b"x")
        .unwrap();
    bytes
}

/// B may not open connections to A.
fn deny_b_to_a() -> Vec<Rule> {
    let host = |a: [u8; 4]| Endpoint::Prefix(Ipv4Cidr::host(a.into()));
    vec![Rule {
        id: RuleId(1),
        from: host(B),
        to: host(A),
        proto: None,
        dports: None,
        action: RuleAction::Deny,
    }]
}

/// Two bridges with network n, ports a (mac 1) and b (mac 2) both
/// learned, the rules set, sharing flows.
fn two_threads() -> (Lab, Lab, PortId, PortId) {
    let (tx0, rx0) = crossbeam_channel::bounded(16);
    let (tx1, rx1) = crossbeam_channel::bounded(16);
    let mut labs = [Lab::new(4096), Lab::new(4096)];
    let mut ids = (PortId(0), PortId(0));
    for lab in &mut labs {
        lab.net("n", true, None, 300);
        ids = (lab.access("a", "n", 1500), lab.access("b", "n", 1500));
        lab.send(ids.0, &super::eth(MacAddr::BROADCAST, mac(1), 28), T0);
        lab.send(ids.1, &super::eth(MacAddr::BROADCAST, mac(2), 28), T0);
        lab.out(ids.0);
        lab.out(ids.1);
        lab.bridge.set_rules("n", deny_b_to_a()).unwrap();
    }
    let [mut zero, mut one] = labs;
    zero.bridge.share_flows(FlowLink::new(vec![tx1], rx0));
    one.bridge.share_flows(FlowLink::new(vec![tx0], rx1));
    (zero, one, ids.0, ids.1)
}

#[test]
fn a_reply_read_by_another_thread_passes_its_deny() {
    let (mut zero, mut one, a, b) = two_threads();
    let query = udp(2, 1, (A, 5000), (B, 53));
    zero.send(a, &query, T0);
    assert_eq!(zero.out(b), vec![query], "A may open to B");
    // Thread one reads B's reply before it took in any announcement.
    let reply = udp(1, 2, (B, 53), (A, 5000));
    one.send(b, &reply, T0);
    assert_eq!(one.out(a), vec![reply], "the reply passes the deny");
    assert_eq!(one.drops(b, DropReason::RuleDeny), 0);
    // B opening its own connection to A is denied on either thread.
    let opened = udp(1, 2, (B, 53), (A, 6000));
    one.send(b, &opened, T0);
    zero.send(b, &opened, T0);
    assert!(one.out(a).is_empty() && zero.out(a).is_empty());
    assert_eq!(one.drops(b, DropReason::RuleDeny), 1);
    assert_eq!(zero.drops(b, DropReason::RuleDeny), 1);
    let hits = |lab: &Lab| lab.bridge.rule_hits("n").unwrap();
    assert_eq!(
        (hits(&zero), hits(&one)),
        (vec![(RuleId(1), 1)], vec![(RuleId(1), 1)])
    );
}
