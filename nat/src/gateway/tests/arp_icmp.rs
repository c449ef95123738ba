//! ARP, neighbour resolution, echo, TTL and no-route tests.

use super::*;
use yard_wire::icmp::IcmpErrorKind;

#[test]
fn arp_reply_for_network_gateway_and_uplink() {
    let mut gw = bare_lab();
    let (a, out) = run(&mut gw, NET1, arp(ArpFrame::request(C1_MAC, C1, GW1)), 0);
    assert_eq!(
        a,
        Action::Send {
            side: NET1,
            len: 42
        }
    );
    let want = arp(ArpFrame {
        op: ArpOp::Reply,
        eth_dst: C1_MAC,
        sender_hw: GW1_MAC,
        sender_proto: GW1,
        target_hw: C1_MAC,
        target_proto: C1,
    });
    assert_eq!(out, want[..42]);

    let (a, out) = run(
        &mut gw,
        Side::Uplink,
        arp(ArpFrame::request(R_MAC, R, U)),
        0,
    );
    assert_eq!(
        a,
        Action::Send {
            side: Side::Uplink,
            len: 42
        }
    );
    let want = arp(ArpFrame {
        op: ArpOp::Reply,
        eth_dst: R_MAC,
        sender_hw: U_MAC,
        sender_proto: U,
        target_hw: R_MAC,
        target_proto: R,
    });
    assert_eq!(out, want[..42]);
    assert_eq!(gw.counters().arp_replies_sent, 2);
    // The requesters were learned.
    assert_eq!(gw.neighbours.lookup(NET1, C1, 0), Some(C1_MAC));
    assert_eq!(gw.neighbours.lookup(Side::Uplink, R, 0), Some(R_MAC));
    assert!(outbox(&mut gw).is_empty());
}

#[test]
fn arp_for_other_addresses_is_ignored() {
    let mut gw = bare_lab();
    // Another host in network 1; the gateway address of another network.
    for target in [Ipv4Addr::new(172, 30, 0, 9), GW2] {
        let (a, _) = run(&mut gw, NET1, arp(ArpFrame::request(C1_MAC, C1, target)), 0);
        assert_eq!(a, Action::Drop(GatewayDrop::NotForGateway));
    }
    // The uplink does not answer for a network gateway.
    let (a, _) = run(
        &mut gw,
        Side::Uplink,
        arp(ArpFrame::request(R_MAC, R, GW1)),
        0,
    );
    assert_eq!(a, Action::Drop(GatewayDrop::NotForGateway));
    assert_eq!(gw.counters().arp_replies_sent, 0);
    assert_eq!(gw.counters().drop_count(GatewayDrop::NotForGateway), 3);
    assert_eq!(gw.neighbours.lookup(NET1, C1, 0), None);
    // IPv4 broadcast frames are not routed.
    let f = udp(C1_MAC, BCAST, (C1, 68), (Ipv4Addr::BROADCAST, 67), 64, b"x");
    assert_eq!(
        run(&mut gw, NET1, f, 0).0,
        Action::Drop(GatewayDrop::NotForGateway)
    );
    // A unicast frame on the uplink for another MAC is not ours either.
    let f = udp(R_MAC, C1_MAC, (S, 1), (U, 2), 64, b"x");
    assert_eq!(
        run(&mut gw, Side::Uplink, f, 0).0,
        Action::Drop(GatewayDrop::NotForGateway)
    );
}

#[test]
fn echo_reply_from_gateway_and_uplink_addresses() {
    let mut gw = lab();
    let req = echo(C1_MAC, GW1_MAC, C1, GW1, 64, true, 0x77, b"hello");
    let (a, out) = run(&mut gw, NET1, req, 0);
    assert_eq!(
        a,
        Action::Send {
            side: NET1,
            len: out.len()
        }
    );
    assert_eq!(
        out,
        echo(GW1_MAC, C1_MAC, GW1, C1, 64, false, 0x77, b"hello")
    );

    let req = echo(R_MAC, U_MAC, S, U, 50, true, 0x78, b"hi");
    let (_, out) = run(&mut gw, Side::Uplink, req, 0);
    assert_eq!(out, echo(U_MAC, R_MAC, U, S, 64, false, 0x78, b"hi"));
    assert_eq!(gw.counters().echo_replies, 2);
    assert!(gw.conntrack().is_empty());

    // Other traffic to a gateway address is not for it.
    let f = udp(C1_MAC, GW1_MAC, (C1, 5000), (GW1, 53), 64, b"q");
    assert_eq!(
        run(&mut gw, NET1, f, 0).0,
        Action::Drop(GatewayDrop::NotForGateway)
    );
}

#[test]
fn ttl_1_gets_time_exceeded_from_the_ingress_gateway() {
    let mut gw = lab();
    let f = udp(C1_MAC, GW1_MAC, (C1, 33000), (S, 33434), 1, &[0; 12]);
    let (a, _) = run(&mut gw, NET1, f.clone(), 0);
    assert_eq!(a, Action::Consumed);
    let out = outbox(&mut gw);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, NET1);
    let got = &out[0].1;
    let kind = IcmpErrorKind::TimeExceeded(0);
    let want = icmp_error(GW1_MAC, C1_MAC, GW1, ident(got), 64, kind, &f);
    assert_eq!(got, &want);
    assert_eq!(gw.counters().icmp_errors_sent, 1);
    assert!(gw.conntrack().is_empty());

    // From the uplink: from the uplink address, back through the router.
    let f = udp(R_MAC, U_MAC, (S, 33000), (U, 33434), 1, &[0; 12]);
    assert_eq!(run(&mut gw, Side::Uplink, f.clone(), 0).0, Action::Consumed);
    let out = outbox(&mut gw);
    let want = icmp_error(U_MAC, R_MAC, U, ident(&out[0].1), 64, kind, &f);
    assert_eq!(out, vec![(Side::Uplink, want)]);
}

#[test]
fn no_route_sends_net_unreachable() {
    let mut gw = lab();
    gw.set_uplink(None);
    let f = c1_syn(1);
    assert_eq!(
        run(&mut gw, NET1, f.clone(), 0).0,
        Action::Drop(GatewayDrop::NoRoute)
    );
    let out = outbox(&mut gw);
    assert_eq!(out.len(), 1);
    let kind = IcmpErrorKind::DestUnreachable(0);
    let want = icmp_error(GW1_MAC, C1_MAC, GW1, ident(&out[0].1), 64, kind, &f);
    assert_eq!(out[0], (NET1, want));
    assert_eq!(gw.counters().drop_count(GatewayDrop::NoRoute), 1);
    assert!(gw.conntrack().is_empty());
}

#[test]
fn unresolved_next_hop_is_held_until_the_arp_reply() {
    let mut gw = bare_lab();
    // C1 asks for its gateway (so C1 is known); R is not known.
    run(&mut gw, NET1, arp(ArpFrame::request(C1_MAC, C1, GW1)), 0);
    let f = udp(C1_MAC, GW1_MAC, (C1, 5000), (S, 53), 64, b"query");
    assert_eq!(run(&mut gw, NET1, f, 0).0, Action::Consumed);
    assert_eq!(gw.counters().held_for_arp, 1);
    assert_eq!(
        outbox(&mut gw),
        vec![(
            Side::Uplink,
            arp(ArpFrame::request(U_MAC, U, R))[..42].to_vec()
        )]
    );
    // A second packet waits too, without another request.
    let f2 = udp(C1_MAC, GW1_MAC, (C1, 5000), (S, 53), 64, b"again");
    assert_eq!(run(&mut gw, NET1, f2, 0).0, Action::Consumed);
    assert!(outbox(&mut gw).is_empty());
    assert_eq!(gw.neighbours.pending_hops(), 1);

    let reply = arp_reply_from_r();
    assert_eq!(run(&mut gw, Side::Uplink, reply, 10).0, Action::Consumed);
    let want = |p: &[u8]| udp(U_MAC, R_MAC, (U, 5000), (S, 53), 63, p);
    assert_eq!(
        outbox(&mut gw),
        vec![
            (Side::Uplink, want(b"query")),
            (Side::Uplink, want(b"again"))
        ]
    );
    assert_eq!(gw.counters().forwarded, 2);
    assert_eq!(gw.neighbours.pending_hops(), 0);
    // Now resolved: the next packet goes at once.
    let f3 = udp(C1_MAC, GW1_MAC, (C1, 5000), (S, 53), 64, b"3");
    let (a, out) = run(&mut gw, NET1, f3, 20);
    assert!(matches!(
        a,
        Action::Send {
            side: Side::Uplink,
            ..
        }
    ));
    assert_eq!(out, want(b"3"));
}

#[test]
fn arp_queue_is_bounded() {
    let mut gw = bare_lab();
    run(&mut gw, NET1, arp(ArpFrame::request(C1_MAC, C1, GW1)), 0);
    for i in 0..8u16 {
        let f = udp(C1_MAC, GW1_MAC, (C1, 5000 + i), (S, 53), 64, b"q");
        assert_eq!(run(&mut gw, NET1, f, 0).0, Action::Consumed);
    }
    let f = udp(C1_MAC, GW1_MAC, (C1, 6000), (S, 53), 64, b"q");
    assert_eq!(
        run(&mut gw, NET1, f, 0).0,
        Action::Drop(GatewayDrop::ArpQueueFull)
    );
}

#[test]
fn a_next_hop_in_use_is_asked_for_again_before_it_expires() {
    // R was learned at 0, so its entry expires at 60 s; packets keep going to
    // it directly while the gateway asks again from 45 s on.
    let mut gw = lab();
    let request = arp(ArpFrame::request(U_MAC, U, R))[..42].to_vec();
    let send_at = |gw: &mut Gateway, t: u64| {
        let f = udp(C1_MAC, GW1_MAC, (C1, 5000), (S, 53), 64, b"q");
        let (action, _) = run(gw, NET1, f, t);
        assert!(
            matches!(
                action,
                Action::Send {
                    side: Side::Uplink,
                    ..
                }
            ),
            "{t}: {action:?}"
        );
        outbox(gw)
    };
    assert!(send_at(&mut gw, 44_000).is_empty(), "not yet near expiry");
    assert_eq!(
        send_at(&mut gw, 45_000),
        vec![(Side::Uplink, request.clone())]
    );
    assert!(send_at(&mut gw, 45_500).is_empty(), "asked a moment ago");
    assert_eq!(
        send_at(&mut gw, 46_000),
        vec![(Side::Uplink, request.clone())]
    );
    // R answers (any ARP from it renews the entry): no stall at 60 s.
    run(
        &mut gw,
        Side::Uplink,
        arp(ArpFrame::request(R_MAC, R, U)),
        46_100,
    );
    outbox(&mut gw);
    assert!(send_at(&mut gw, 90_000).is_empty());
    assert_eq!(gw.counters().held_for_arp, 0);
    // R stops answering: at expiry packets wait for it again.
    let f = udp(C1_MAC, GW1_MAC, (C1, 5000), (S, 53), 64, b"q");
    assert_eq!(run(&mut gw, NET1, f, 106_100).0, Action::Consumed);
    assert_eq!(gw.counters().held_for_arp, 1);
}

#[test]
fn arp_timeout_discards_and_sends_host_unreachable() {
    let mut gw = bare_lab();
    run(&mut gw, NET1, arp(ArpFrame::request(C1_MAC, C1, GW1)), 0);
    outbox(&mut gw);
    let f = c1_syn(1);
    assert_eq!(run(&mut gw, NET1, f.clone(), 0).0, Action::Consumed);
    let request = arp(ArpFrame::request(U_MAC, U, R))[..42].to_vec();
    assert_eq!(outbox(&mut gw), vec![(Side::Uplink, request.clone())]);
    gw.tick(500);
    assert!(outbox(&mut gw).is_empty());
    for t in [1000, 2000, 3000] {
        gw.tick(t);
        assert_eq!(
            outbox(&mut gw),
            vec![(Side::Uplink, request.clone())],
            "{t}"
        );
    }
    assert_eq!(gw.counters().arp_requests_sent, 4);
    gw.tick(4000);
    let out = outbox(&mut gw);
    assert_eq!(gw.counters().arp_timeouts, 1);
    assert_eq!(out.len(), 1);
    // The error quotes the packet as C1 sent it (translated back), with the
    // TTL it had when it waited.
    let kind = IcmpErrorKind::DestUnreachable(1);
    let want = icmp_error(
        GW1_MAC,
        C1_MAC,
        GW1,
        ident(&out[0].1),
        64,
        kind,
        &with_ttl(f, 63),
    );
    assert_eq!(out[0], (NET1, want));
    gw.tick(5000);
    assert!(outbox(&mut gw).is_empty());
}

#[test]
fn refused_inside_connections_hear_administratively_prohibited() {
    // RFC 5508 REQ-8: the internal network's container toward the uplink,
    // and a container toward a network not connected to its own.
    let mut gw = lab();
    let kind = IcmpErrorKind::DestUnreachable(13);
    let to_uplink = udp(C3_MAC, GW3_MAC, (C3, 5000), (S, 53), 64, b"q");
    assert_eq!(
        run(&mut gw, NET3, to_uplink.clone(), 0).0,
        Action::Drop(GatewayDrop::Internal)
    );
    let out = outbox(&mut gw);
    let want = icmp_error(GW3_MAC, C3_MAC, GW3, ident(&out[0].1), 64, kind, &to_uplink);
    assert_eq!(out, vec![(NET3, want)]);

    let across = udp(C1_MAC, GW1_MAC, (C1, 5000), (C2, 7000), 64, b"hi");
    assert_eq!(
        run(&mut gw, NET1, across.clone(), 1).0,
        Action::Drop(GatewayDrop::NetworksNotConnected)
    );
    let out = outbox(&mut gw);
    let want = icmp_error(GW1_MAC, C1_MAC, GW1, ident(&out[0].1), 64, kind, &across);
    assert_eq!(out, vec![(NET1, want)]);
    assert_eq!(gw.counters().icmp_errors_sent, 2);

    // Unsolicited packets from outside get no answer.
    let unsolicited = udp(R_MAC, U_MAC, (S, 5000), (U, 6000), 64, b"knock");
    assert_eq!(
        run(&mut gw, Side::Uplink, unsolicited, 2).0,
        Action::Drop(GatewayDrop::NotForGateway)
    );
    assert!(outbox(&mut gw).is_empty());
}

#[test]
fn generated_icmp_errors_are_rate_limited() {
    // A burst of 50, then one per millisecond (Linux's defaults).
    let mut gw = lab();
    let refused = |port: u16| udp(C3_MAC, GW3_MAC, (C3, port), (S, 53), 64, b"q");
    for port in 0..60 {
        run(&mut gw, NET3, refused(5000 + port), 0);
    }
    assert_eq!(outbox(&mut gw).len(), 50);
    assert_eq!(gw.counters().icmp_errors_limited, 10);
    for port in 0..20 {
        run(&mut gw, NET3, refused(6000 + port), 10);
    }
    assert_eq!(outbox(&mut gw).len(), 10, "10 ms earned 10 more");
    assert_eq!(gw.counters().drop_count(GatewayDrop::Internal), 80);
}

#[test]
fn a_udp_gso_frame_waits_for_arp_with_its_offload_state() {
    // A UDP GSO frame (3 datagrams of 1000 bytes) waits like any frame and
    // leaves with its GSO state, so it is cut into datagrams on the way out
    // and not read as one huge datagram.
    let mut gw = bare_lab();
    run(&mut gw, NET1, arp(ArpFrame::request(C1_MAC, C1, GW1)), 0);
    outbox(&mut gw);
    let payload = [7u8; 3000];
    let gso = || with_partial_checksum(udp(C1_MAC, GW1_MAC, (C1, 5000), (S, 443), 64, &payload), 6);
    for now in [0, 1] {
        let mut f = gso();
        let a = gw.handle(NET1, &mut f, uso(1000), now);
        assert_eq!(a, Action::Consumed);
    }
    assert_eq!(
        outbox(&mut gw),
        vec![(
            Side::Uplink,
            arp(ArpFrame::request(U_MAC, U, R))[..42].to_vec()
        )],
        "one ARP request for both"
    );
    assert_eq!(gw.counters().held_for_arp, 2);

    let reply = arp_reply_from_r();
    run(&mut gw, Side::Uplink, reply, 10);
    let want = with_partial_checksum(udp(U_MAC, R_MAC, (U, 5000), (S, 443), 63, &payload), 6);
    assert_eq!(
        outbox_with_offloads(&mut gw),
        vec![
            (Side::Uplink, want.clone(), uso(1000)),
            (Side::Uplink, want, uso(1000))
        ],
        "translated, their GSO state kept"
    );
    assert_eq!(gw.counters().forwarded, 2);
    let mut f = gso();
    let a = gw.handle(NET1, &mut f, uso(1000), 11);
    assert_sent(a, Side::Uplink);
}

#[test]
fn an_icmp_error_about_a_udp_gso_frame_may_wait_for_arp() {
    // TTL 1: the gateway answers time exceeded to C1, whose MAC it does not
    // know yet; its own error waits for ARP like any packet.
    let mut gw = bare_lab();
    let mut f = udp(C1_MAC, GW1_MAC, (C1, 5000), (S, 443), 1, &[7; 3000]);
    assert_eq!(gw.handle(NET1, &mut f, uso(1000), 0), Action::Consumed);
    assert_eq!(gw.counters().held_for_arp, 1);
}
