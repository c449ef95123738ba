//! Configuration changes and the state they remove.

use super::*;
use crate::mapping::MappingError;

#[test]
fn publish_rules_are_checked_and_reserved() {
    let mut gw = lab();
    gw.add_publish(rule(1, Proto::Tcp, 8080, C1, 80)).unwrap();
    assert!(gw.conntrack().mapping().is_taken(Proto::Tcp, U, 8080));
    assert_eq!(
        gw.add_publish(rule(1, Proto::Udp, 1, C1, 1)),
        Err(GatewayError::RuleExists(1))
    );
    assert!(matches!(
        gw.add_publish(rule(2, Proto::Tcp, 8080, C2, 80)),
        Err(GatewayError::AlreadyPublished {
            by: 1,
            port: 8080,
            ..
        })
    ));
    let mut bad = rule(3, Proto::Tcp, 100, C1, 80);
    bad.host_ports = (100, 101);
    assert!(matches!(
        gw.add_publish(bad),
        Err(GatewayError::InvalidRule { .. })
    ));
    // A port masquerade holds cannot be published.
    run(
        &mut gw,
        NET1,
        udp(C1_MAC, GW1_MAC, (C1, 7777), (S, 53), 64, b"q"),
        0,
    );
    assert!(matches!(
        gw.add_publish(rule(4, Proto::Udp, 7777, C2, 53)),
        Err(GatewayError::PortTaken {
            source: MappingError::InUseBySnat { .. },
            ..
        })
    ));
    // Removing unreserves.
    assert_eq!(gw.remove_publish(RuleId(1)), 0);
    assert!(!gw.conntrack().mapping().is_taken(Proto::Tcp, U, 8080));
    assert_eq!(gw.remove_publish(RuleId(1)), 0);
}

#[test]
fn remove_publish_removes_exactly_its_connections() {
    let mut gw = lab();
    gw.add_publish(rule(1, Proto::Udp, 5353, C1, 53)).unwrap();
    gw.add_publish(rule(2, Proto::Udp, 6363, C2, 63)).unwrap();
    run(
        &mut gw,
        Side::Uplink,
        udp(R_MAC, U_MAC, (S, 1000), (U, 5353), 60, b"a"),
        0,
    );
    run(
        &mut gw,
        Side::Uplink,
        udp(R_MAC, U_MAC, (S, 1001), (U, 5353), 60, b"b"),
        0,
    );
    run(
        &mut gw,
        Side::Uplink,
        udp(R_MAC, U_MAC, (S, 1000), (U, 6363), 60, b"c"),
        0,
    );
    run(
        &mut gw,
        NET1,
        udp(C1_MAC, GW1_MAC, (C1, 4000), (S, 53), 64, b"d"),
        0,
    );
    assert_eq!(gw.conntrack().len(), 4);
    assert_eq!(gw.remove_publish(RuleId(1)), 2);
    let left: Vec<_> = gw.conntrack().iter(0).map(|(_, e)| e.rule).collect();
    assert_eq!(left.len(), 2);
    assert!(left.contains(&Some(RuleId(2))) && left.contains(&None));
    // The port is no longer published.
    let f = udp(R_MAC, U_MAC, (S, 1002), (U, 5353), 60, b"e");
    assert_eq!(
        run(&mut gw, Side::Uplink, f, 1).0,
        Action::Drop(GatewayDrop::NotForGateway)
    );
}

#[test]
fn forget_address_removes_its_connections_and_neighbour() {
    let mut gw = lab();
    gw.add_publish(rule(1, Proto::Udp, 5353, C1, 53)).unwrap();
    let q = || udp(R_MAC, U_MAC, (S, 1000), (U, 5353), 60, b"a");
    assert!(matches!(
        run(&mut gw, Side::Uplink, q(), 0).0,
        Action::Send { side: NET1, .. }
    ));
    run(
        &mut gw,
        NET1,
        udp(C1_MAC, GW1_MAC, (C1, 4000), (S, 53), 64, b"d"),
        0,
    );
    run(
        &mut gw,
        NET2,
        udp(C2_MAC, GW2_MAC, (C2, 4000), (S, 53), 64, b"d"),
        0,
    );
    assert_eq!(gw.conntrack().len(), 3);
    assert_eq!(gw.forget_address(C1), 2);
    assert_eq!(gw.conntrack().len(), 1);
    assert_eq!(gw.neighbours.lookup(NET1, C1, 0), None);
    // A successor at the same address: a fresh entry, resolved afresh.
    let inserted = gw.conntrack().stats().inserted;
    assert_eq!(run(&mut gw, Side::Uplink, q(), 1).0, Action::Consumed);
    assert_eq!(gw.conntrack().stats().inserted, inserted + 1);
    assert_eq!(
        outbox(&mut gw),
        vec![(
            NET1,
            arp(ArpFrame::request(GW1_MAC, GW1, C1))[..42].to_vec()
        )]
    );
    let new_mac = [0x02, 0, 0, 0, 0x01, 0x99];
    let reply = arp(ArpFrame {
        op: ArpOp::Reply,
        eth_dst: GW1_MAC,
        sender_hw: new_mac,
        sender_proto: C1,
        target_hw: GW1_MAC,
        target_proto: GW1,
    });
    run(&mut gw, NET1, reply, 2);
    assert_eq!(
        outbox(&mut gw),
        vec![(NET1, udp(GW1_MAC, new_mac, (S, 1000), (C1, 53), 59, b"a"))]
    );
}

#[test]
fn removing_the_uplink_or_a_network_flushes_their_connections() {
    let mut gw = lab();
    gw.add_publish(rule(1, Proto::Tcp, 8080, C1, 80)).unwrap();
    gw.connect(1, 2);
    run(
        &mut gw,
        NET1,
        udp(C1_MAC, GW1_MAC, (C1, 4000), (S, 53), 64, b"d"),
        0,
    );
    run(
        &mut gw,
        NET1,
        udp(C1_MAC, GW1_MAC, (C1, 4000), (C2, 53), 64, b"d"),
        0,
    );
    run(
        &mut gw,
        NET2,
        udp(
            C2_MAC,
            GW2_MAC,
            (C2, 4000),
            (Ipv4Addr::new(10, 2, 0, 1), 9),
            64,
            b"d",
        ),
        0,
    );
    assert_eq!(gw.conntrack().len(), 2);
    gw.set_uplink(None);
    assert_eq!(gw.conntrack().len(), 1);
    assert!(!gw.conntrack().mapping().is_taken(Proto::Tcp, U, 8080));
    gw.set_uplink(Some(UplinkConfig {
        addr: (U, 24),
        mac: U_MAC,
        gateway: Some(R),
    }));
    assert!(gw.conntrack().mapping().is_taken(Proto::Tcp, U, 8080));
    gw.remove_network(2);
    assert!(gw.conntrack().is_empty());
    let f = udp(C2_MAC, GW2_MAC, (C2, 4000), (S, 53), 64, b"d");
    assert_eq!(
        run(&mut gw, NET2, f, 1).0,
        Action::Drop(GatewayDrop::NotForGateway)
    );
}
