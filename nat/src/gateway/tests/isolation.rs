//! Isolation: the source check (uRPF), the side each conntrack direction
//! comes in from and goes out to, and `--no-icc` through the gateway.
//!
//! Network 5 (10.5.0.0/24, `--no-icc`) with hosts A5 and B5 joins the lab
//! for the icc tests.

use super::*;
use yard_wire::icmp::IcmpErrorKind;

const GW5: Ipv4Addr = Ipv4Addr::new(10, 5, 0, 1);
const A5: Ipv4Addr = Ipv4Addr::new(10, 5, 0, 2);
const B5: Ipv4Addr = Ipv4Addr::new(10, 5, 0, 3);
const GW5_MAC: [u8; 6] = [0x02, 0x42, 0, 0, 0x05, 0x01];
const A5_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x05, 0x02];
const B5_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x05, 0x03];
const NET5: Side = Side::Net(5);

/// A second host of network 1 (icc on).
const D1: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 9);
const D1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x09];

/// The lab plus network 5 (`--no-icc`) with A5 and B5, and D1 on network
/// 1, all known; outbox empty, counters zero.
fn icc_lab() -> Gateway {
    let mut gw = lab();
    gw.set_network(NetConfig {
        icc: false,
        host_loopback: None,
        ..net(5, (Ipv4Addr::new(10, 5, 0, 0), 24), GW5, GW5_MAC)
    });
    for (side, ip, mac, target) in [
        (NET5, A5, A5_MAC, GW5),
        (NET5, B5, B5_MAC, GW5),
        (NET1, D1, D1_MAC, GW1),
    ] {
        let f = arp(ArpFrame::request(mac, ip, target));
        assert_sent(run(&mut gw, side, f, 0).0, side);
    }
    while gw.next_outbox().is_some() {}
    gw.counters = GatewayCounters::default();
    gw
}

/// Asserts that `frame` from `side` is dropped for `reason`, leaves
/// conntrack as it was and makes nothing (no ICMP error, no ARP).
#[track_caller]
fn assert_dropped_quietly(gw: &mut Gateway, side: Side, frame: Vec<u8>, reason: GatewayDrop) {
    let before = gw.conntrack().stats();
    let count = gw.counters().drop_count(reason);
    assert_eq!(run(gw, side, frame, 5).0, Action::Drop(reason));
    assert_eq!(gw.counters().drop_count(reason), count + 1);
    assert_eq!(gw.conntrack().stats(), before, "conntrack changed");
    assert!(outbox(gw).is_empty(), "the drop made frames");
}

#[test]
fn a_network_may_not_send_with_another_networks_source() {
    // The exfiltration: C1 (network 1) sends UDP to the outside with the
    // source of C3, on the internal network 3. Nothing leaves, nothing is
    // tracked, and the outside's answer has nothing to ride back to C3.
    let mut gw = lab();
    let spoofed = udp(C1_MAC, GW1_MAC, (C3, 5000), (S, 53), 64, b"secret");
    assert_dropped_quietly(&mut gw, NET1, spoofed, GatewayDrop::BadSource);
    assert!(gw.conntrack().is_empty());
    let answer = udp(R_MAC, U_MAC, (S, 53), (U, 5000), 60, b"ack");
    assert_eq!(
        run(&mut gw, Side::Uplink, answer, 6).0,
        Action::Drop(GatewayDrop::NotForGateway)
    );
    assert_eq!(GatewayDrop::BadSource.as_str(), "gw-bad-source");
}

#[test]
fn a_network_source_must_be_a_host_of_its_subnet_other_than_the_gateway() {
    let mut gw = lab();
    for src in [
        C2,                               // another network's host
        S,                                // an outside address
        U,                                // the uplink address
        GW1,                              // the gateway itself
        Ipv4Addr::new(172, 30, 0, 0),     // the subnet's network address
        Ipv4Addr::new(172, 30, 255, 255), // its directed broadcast
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::new(0, 1, 2, 3),
        Ipv4Addr::LOCALHOST,
        Ipv4Addr::new(224, 0, 0, 5),
        Ipv4Addr::BROADCAST,
    ] {
        let f = udp(C1_MAC, GW1_MAC, (src, 5000), (S, 53), 64, b"q");
        assert_dropped_quietly(&mut gw, NET1, f, GatewayDrop::BadSource);
        // Not even the gateway answers a spoofed echo request.
        let ping = echo(C1_MAC, GW1_MAC, src, GW1, 64, true, 9, b"hi");
        assert_dropped_quietly(&mut gw, NET1, ping, GatewayDrop::BadSource);
    }
    // A host of the subnet gets through, as always.
    let f = udp(C1_MAC, GW1_MAC, (C1, 5000), (S, 53), 64, b"q");
    assert_sent(run(&mut gw, NET1, f, 6).0, Side::Uplink);
    let ping = echo(C1_MAC, GW1_MAC, C1, GW1, 64, true, 9, b"hi");
    assert_sent(run(&mut gw, NET1, ping, 6).0, NET1);
}

#[test]
fn the_uplink_may_not_send_from_inside_addresses_or_the_gateways_own() {
    let mut gw = lab();
    gw.add_publish(rule(1, Proto::Udp, 8053, C1, 53)).unwrap();
    for src in [
        C1,                          // a network's host
        Ipv4Addr::new(10, 3, 0, 77), // inside the internal network's subnet
        GW2,
        U,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::LOCALHOST,
        Ipv4Addr::new(239, 1, 1, 1),
    ] {
        let f = udp(R_MAC, U_MAC, (src, 4000), (U, 8053), 60, b"q");
        assert_dropped_quietly(&mut gw, Side::Uplink, f, GatewayDrop::BadSource);
    }
    // Outside addresses, the uplink's neighbours among them, are fine.
    for src in [S, R] {
        let f = udp(R_MAC, U_MAC, (src, 4000), (U, 8053), 60, b"q");
        assert_sent(run(&mut gw, Side::Uplink, f, 6).0, NET1);
    }
}

/// A network 4 whose subnet holds S: from now on S is behind it, not
/// behind the uplink.
fn move_s_into_a_network(gw: &mut Gateway) {
    let gw4_mac = [0x02, 0x42, 0, 0, 0x04, 0x01];
    gw.set_network(net(
        4,
        (Ipv4Addr::new(198, 51, 100, 0), 24),
        Ipv4Addr::new(198, 51, 100, 1),
        gw4_mac,
    ));
    let f = arp(ArpFrame::request(R_MAC, S, Ipv4Addr::new(198, 51, 100, 1)));
    assert_sent(run(gw, Side::Net(4), f, 1).0, Side::Net(4));
    while gw.next_outbox().is_some() {}
}

#[test]
fn a_packet_rides_a_connection_only_from_the_side_its_direction_comes_from() {
    // S reaches C1's published port from the outside; then a network that
    // holds S's address appears. A host there sending S's tuple is a
    // packet of network 4, not of the outside's connection: it must not be
    // DNATed to C1, nor refresh the entry.
    let mut gw = lab();
    gw.add_publish(rule(1, Proto::Udp, 8053, C1, 53)).unwrap();
    let q = udp(R_MAC, U_MAC, (S, 4000), (U, 8053), 60, b"q");
    assert_sent(run(&mut gw, Side::Uplink, q, 0).0, NET1);
    move_s_into_a_network(&mut gw);
    let h = gw.conntrack().iter(2).next().unwrap().0;
    let counters = gw.conntrack().get(h).unwrap().counters;
    let q = udp(
        R_MAC,
        [0x02, 0x42, 0, 0, 0x04, 0x01],
        (S, 4000),
        (U, 8053),
        60,
        b"q",
    );
    assert_dropped_quietly(&mut gw, Side::Net(4), q, GatewayDrop::WrongSide);
    assert_eq!(gw.conntrack().get(h).unwrap().counters, counters);
    assert_eq!(GatewayDrop::WrongSide.as_str(), "gw-wrong-side");
}

#[test]
fn a_connection_leaves_only_to_the_side_its_other_direction_comes_from() {
    // C1 talks to S through the uplink; then S's address moves behind
    // network 4. C1's next packet of that connection must not be delivered
    // into network 4.
    let mut gw = lab();
    let f = udp(C1_MAC, GW1_MAC, (C1, 5000), (S, 53), 64, b"one");
    assert_sent(run(&mut gw, NET1, f, 0).0, Side::Uplink);
    move_s_into_a_network(&mut gw);
    let f = udp(C1_MAC, GW1_MAC, (C1, 5000), (S, 53), 64, b"two");
    assert_eq!(
        run(&mut gw, NET1, f, 2).0,
        Action::Drop(GatewayDrop::WrongSide)
    );
    assert!(outbox(&mut gw).is_empty());
}

#[test]
fn an_icmp_error_counts_only_from_where_the_quoted_packet_went() {
    // C1's SYN went out of the uplink. C2, on network 2, forges a port
    // unreachable about it (from its own, valid, address): an error about
    // that packet can only come from the uplink, so C1 never hears it.
    let mut gw = lab();
    let sent = c1_syn(1);
    let (_, out) = run(&mut gw, NET1, sent, 0);
    let kind = IcmpErrorKind::DestUnreachable(3);
    let forged = icmp_error(C2_MAC, GW2_MAC, C2, 7, 64, kind, &out);
    assert_dropped_quietly(&mut gw, NET2, forged, GatewayDrop::WrongSide);
    // The same error from the uplink reaches C1.
    let real = icmp_error(R_MAC, U_MAC, R, 7, 64, kind, &out);
    assert_sent(run(&mut gw, Side::Uplink, real, 1).0, NET1);
}

#[test]
fn connections_record_the_side_of_each_direction() {
    let mut gw = lab();
    gw.add_publish(rule(1, Proto::Tcp, 8080, C1, 80)).unwrap();
    gw.connect(1, 2);
    let cases = [
        // Masqueraded to the outside.
        (NET1, udp(C1_MAC, GW1_MAC, (C1, 1), (S, 53), 64, b"")),
        // Published port from the outside.
        (
            Side::Uplink,
            tcp(R_MAC, U_MAC, (S, 2), (U, 8080), 60, Tcp::Syn, (1, 0), b""),
        ),
        // Hairpin from network 2.
        (
            NET2,
            tcp(
                C2_MAC,
                GW2_MAC,
                (C2, 3),
                (U, 8080),
                64,
                Tcp::Syn,
                (1, 0),
                b"",
            ),
        ),
        // Between connected networks.
        (NET2, udp(C2_MAC, GW2_MAC, (C2, 4), (C1, 9), 64, b"")),
    ];
    let want = [
        [NET1, Side::Uplink],
        [Side::Uplink, NET1],
        [NET2, NET1],
        [NET2, NET1],
    ];
    for (i, (side, f)) in cases.into_iter().enumerate() {
        assert!(matches!(run(&mut gw, side, f, 0).0, Action::Send { .. }));
        let sport = i as u16 + 1;
        let e = gw
            .conntrack()
            .iter(0)
            .map(|(_, e)| e)
            .find(|e| e.original.sport == sport)
            .unwrap();
        assert_eq!(e.ingress, want[i].map(Side::ingress), "case {i}");
    }
}

#[test]
fn no_icc_refuses_routing_between_two_hosts_of_the_network() {
    let mut gw = icc_lab();
    let frames = [
        udp(A5_MAC, GW5_MAC, (A5, 5000), (B5, 53), 64, b"q"),
        echo(A5_MAC, GW5_MAC, A5, B5, 64, true, 3, b"ping"),
        tcp(
            A5_MAC,
            GW5_MAC,
            (A5, 4000),
            (B5, 80),
            64,
            Tcp::Syn,
            (1, 0),
            b"",
        ),
        udp(B5_MAC, GW5_MAC, (B5, 53), (A5, 5000), 64, b"a"),
        echo(B5_MAC, GW5_MAC, B5, A5, 64, true, 4, b"ping"),
    ];
    for f in frames {
        let sender = Ipv4Packet::new_checked(&f[14..]).unwrap().src();
        assert_eq!(run(&mut gw, NET5, f, 1).0, Action::Drop(GatewayDrop::Icc));
        // The sender hears why (administratively prohibited), as for
        // networks that are not connected.
        let out = outbox(&mut gw);
        assert_eq!(out.len(), 1, "{out:?}");
        let (side, err) = &out[0];
        let ip = Ipv4Packet::new_checked(&err[14..]).unwrap();
        assert_eq!((*side, ip.src(), ip.dst()), (NET5, GW5, sender));
        assert_eq!(ip.payload()[..2], [3, 13]);
    }
    assert_eq!(gw.counters().drop_count(GatewayDrop::Icc), 5);
    assert!(gw.conntrack().is_empty());
    assert_eq!(GatewayDrop::Icc.as_str(), "gw-icc");
    // The gateway itself still answers them.
    let ping = echo(A5_MAC, GW5_MAC, A5, GW5, 64, true, 5, b"gw");
    assert_sent(run(&mut gw, NET5, ping, 2).0, NET5);
}

#[test]
fn no_icc_leaves_the_outside_and_connected_networks_alone() {
    let mut gw = icc_lab();
    let f = udp(A5_MAC, GW5_MAC, (A5, 5000), (S, 53), 64, b"q");
    assert_sent(run(&mut gw, NET5, f, 1).0, Side::Uplink);
    gw.connect(5, 2);
    let f = udp(A5_MAC, GW5_MAC, (A5, 5001), (C2, 53), 64, b"q");
    assert_sent(run(&mut gw, NET5, f, 1).0, NET2);
    let f = udp(C2_MAC, GW2_MAC, (C2, 53), (B5, 5001), 64, b"q");
    assert_sent(run(&mut gw, NET2, f, 1).0, NET5);
    // A network with icc on still routes between its own hosts.
    let f = udp(C1_MAC, GW1_MAC, (C1, 5000), (D1, 53), 64, b"q");
    assert_sent(run(&mut gw, NET1, f, 1).0, NET1);
    assert_eq!(gw.counters().drop_count(GatewayDrop::Icc), 0);
}

#[test]
fn no_icc_refuses_the_hairpin_to_a_neighbours_published_port() {
    let mut gw = icc_lab();
    gw.add_publish(rule(1, Proto::Tcp, 8080, B5, 80)).unwrap();
    let syn = |mac, src| {
        tcp(
            mac,
            GW5_MAC,
            (src, 4000),
            (U, 8080),
            64,
            Tcp::Syn,
            (1, 0),
            b"",
        )
    };
    assert_eq!(
        run(&mut gw, NET5, syn(A5_MAC, A5), 1).0,
        Action::Drop(GatewayDrop::Icc)
    );
    assert!(gw.conntrack().is_empty());
    // B5 reaching its own published port is not two hosts talking.
    assert_sent(run(&mut gw, NET5, syn(B5_MAC, B5), 1).0, NET5);
    // Another network reaches the published port as before.
    let f = tcp(
        C1_MAC,
        GW1_MAC,
        (C1, 4000),
        (U, 8080),
        64,
        Tcp::Syn,
        (1, 0),
        b"",
    );
    assert_sent(run(&mut gw, NET1, f, 1).0, NET5);
    // And so does the outside.
    let f = tcp(
        R_MAC,
        U_MAC,
        (S, 4000),
        (U, 8080),
        60,
        Tcp::Syn,
        (1, 0),
        b"",
    );
    assert_sent(run(&mut gw, Side::Uplink, f, 1).0, NET5);
}
