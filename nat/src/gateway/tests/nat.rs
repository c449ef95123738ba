//! SNAT, DNAT, hairpin, network policy and partial-checksum tests.

use super::*;
use crate::conntrack::tcp::TcpState;
use crate::conntrack::Dir;

#[test]
fn snat_tcp_handshake_and_data_with_port_preservation() {
    let mut gw = lab();
    let c = (C1, 40000);
    let s = (S, 80);
    let f = tcp(C1_MAC, GW1_MAC, c, s, 64, Tcp::Syn, (100, 0), b"");
    let (a, out) = run(&mut gw, NET1, f, 0);
    assert_eq!(
        a,
        Action::Send {
            side: Side::Uplink,
            len: out.len()
        }
    );
    assert_eq!(
        out,
        tcp(U_MAC, R_MAC, (U, 40000), s, 63, Tcp::Syn, (100, 0), b"")
    );
    assert_checksums(&out);

    let f = tcp(
        R_MAC,
        U_MAC,
        s,
        (U, 40000),
        60,
        Tcp::SynAck,
        (900, 101),
        b"",
    );
    let (a, out) = run(&mut gw, Side::Uplink, f, 1);
    assert_eq!(
        a,
        Action::Send {
            side: NET1,
            len: out.len()
        }
    );
    assert_eq!(
        out,
        tcp(GW1_MAC, C1_MAC, s, c, 59, Tcp::SynAck, (900, 101), b"")
    );

    let f = tcp(C1_MAC, GW1_MAC, c, s, 64, Tcp::Ack, (101, 901), b"");
    let (_, out) = run(&mut gw, NET1, f, 2);
    assert_eq!(
        out,
        tcp(U_MAC, R_MAC, (U, 40000), s, 63, Tcp::Ack, (101, 901), b"")
    );
    let data = b"GET / HTTP/1.0\r\n\r\n";
    let f = tcp(C1_MAC, GW1_MAC, c, s, 64, Tcp::Ack, (101, 901), data);
    let (_, out) = run(&mut gw, NET1, f, 3);
    assert_eq!(
        out,
        tcp(U_MAC, R_MAC, (U, 40000), s, 63, Tcp::Ack, (101, 901), data)
    );
    let f = tcp(
        R_MAC,
        U_MAC,
        s,
        (U, 40000),
        60,
        Tcp::Ack,
        (901, 119),
        b"200 OK",
    );
    let (_, out) = run(&mut gw, Side::Uplink, f, 4);
    assert_eq!(
        out,
        tcp(GW1_MAC, C1_MAC, s, c, 59, Tcp::Ack, (901, 119), b"200 OK")
    );

    let ct = gw.conntrack();
    assert_eq!(ct.len(), 1);
    let (h, dir) = ct.lookup(0, &flow(Proto::Tcp, c, s), 5).unwrap();
    assert_eq!(dir, Dir::Original);
    let e = ct.get(h).unwrap();
    assert_eq!(e.nat.snat, Some((U, 40000)));
    assert_eq!(e.nat.dnat, None);
    assert_eq!(e.reply, flow(Proto::Tcp, s, (U, 40000)));
    assert_eq!(e.tcp_state(), Some(TcpState::Established));
    assert_eq!((e.counters[0].packets, e.counters[1].packets), (3, 2));
    assert_eq!(gw.counters().forwarded, 5);
}

#[test]
fn a_bare_ack_is_picked_up_mid_stream() {
    // After a restart the table is empty; the inside end's next ACK picks
    // its connection up, through the same mapping (port kept).
    let mut gw = lab();
    let (c, s) = ((C1, 40000), (S, 80));
    let f = tcp(C1_MAC, GW1_MAC, c, s, 64, Tcp::Ack, (1_000, 9_000), b"more");
    let (a, out) = run(&mut gw, NET1, f, 0);
    assert_sent(a, Side::Uplink);
    assert_eq!(
        out,
        tcp(
            U_MAC,
            R_MAC,
            (U, 40000),
            s,
            63,
            Tcp::Ack,
            (1_000, 9_000),
            b"more"
        )
    );
    let back = tcp(
        R_MAC,
        U_MAC,
        s,
        (U, 40000),
        60,
        Tcp::Ack,
        (9_000, 1_004),
        b"",
    );
    let (a, out) = run(&mut gw, Side::Uplink, back, 1);
    assert_sent(a, NET1);
    assert_eq!(
        out,
        tcp(GW1_MAC, C1_MAC, s, c, 59, Tcp::Ack, (9_000, 1_004), b"")
    );
    let e = gw.conntrack().iter(2).next().unwrap().1;
    assert_eq!(e.tcp_state(), Some(TcpState::Established));
    assert!(e.assured);
}

#[test]
fn snat_udp_both_ways() {
    let mut gw = lab();
    let f = udp(C1_MAC, GW1_MAC, (C1, 5353), (S, 53), 64, b"query");
    let (_, out) = run(&mut gw, NET1, f, 0);
    assert_eq!(out, udp(U_MAC, R_MAC, (U, 5353), (S, 53), 63, b"query"));
    let f = udp(R_MAC, U_MAC, (S, 53), (U, 5353), 64, b"answer");
    let (a, out) = run(&mut gw, Side::Uplink, f, 1);
    assert_eq!(
        a,
        Action::Send {
            side: NET1,
            len: out.len()
        }
    );
    assert_eq!(
        out,
        udp(GW1_MAC, C1_MAC, (S, 53), (C1, 5353), 63, b"answer")
    );
    let e = gw.conntrack().iter(2).next().unwrap().1;
    assert!(e.seen_reply && e.assured);
    assert_eq!(e.state_name(), "REPLIED");
}

#[test]
fn icmp_echo_through_snat_maps_the_identifier() {
    let mut gw = lab();
    let f = echo(C2_MAC, GW2_MAC, C2, S, 64, true, 0x1234, b"ping");
    let (_, out) = run(&mut gw, NET2, f, 0);
    let e = gw.conntrack().iter(0).next().unwrap().1.clone();
    let (addr, id) = e.nat.snat.unwrap();
    assert_eq!(addr, U);
    assert_eq!(out, echo(U_MAC, R_MAC, U, S, 63, true, id, b"ping"));
    let f = echo(R_MAC, U_MAC, S, U, 64, false, id, b"ping");
    let (a, out) = run(&mut gw, Side::Uplink, f, 1);
    assert_eq!(
        a,
        Action::Send {
            side: NET2,
            len: out.len()
        }
    );
    assert_eq!(
        out,
        echo(GW2_MAC, C2_MAC, S, C2, 63, false, 0x1234, b"ping")
    );
}

#[test]
fn dnat_from_uplink_keeps_the_client_address() {
    let mut gw = lab();
    gw.add_publish(rule(7, Proto::Tcp, 8080, C1, 80)).unwrap();
    let f = tcp(
        R_MAC,
        U_MAC,
        (S, 51000),
        (U, 8080),
        60,
        Tcp::Syn,
        (5, 0),
        b"",
    );
    let (a, out) = run(&mut gw, Side::Uplink, f, 0);
    assert_eq!(
        a,
        Action::Send {
            side: NET1,
            len: out.len()
        }
    );
    assert_eq!(
        out,
        tcp(
            GW1_MAC,
            C1_MAC,
            (S, 51000),
            (C1, 80),
            59,
            Tcp::Syn,
            (5, 0),
            b""
        )
    );
    let f = tcp(
        C1_MAC,
        GW1_MAC,
        (C1, 80),
        (S, 51000),
        64,
        Tcp::SynAck,
        (70, 6),
        b"",
    );
    let (a, out) = run(&mut gw, NET1, f, 1);
    assert_eq!(
        a,
        Action::Send {
            side: Side::Uplink,
            len: out.len()
        }
    );
    assert_eq!(
        out,
        tcp(
            U_MAC,
            R_MAC,
            (U, 8080),
            (S, 51000),
            63,
            Tcp::SynAck,
            (70, 6),
            b""
        )
    );
    let e = gw.conntrack().iter(1).next().unwrap().1;
    assert_eq!(e.rule, Some(RuleId(7)));
    assert_eq!(e.nat.dnat, Some((C1, 80)));
    assert_eq!(e.nat.snat, None);
    assert_eq!(e.inside, C1);

    // Without a published port the uplink reaches nothing inside.
    let f = tcp(
        R_MAC,
        U_MAC,
        (S, 51000),
        (U, 9090),
        60,
        Tcp::Syn,
        (5, 0),
        b"",
    );
    assert_eq!(
        run(&mut gw, Side::Uplink, f, 2).0,
        Action::Drop(GatewayDrop::NotForGateway)
    );
    let f = tcp(
        R_MAC,
        U_MAC,
        (S, 51000),
        (C1, 80),
        60,
        Tcp::Syn,
        (5, 0),
        b"",
    );
    assert_eq!(
        run(&mut gw, Side::Uplink, f, 2).0,
        Action::Drop(GatewayDrop::NotPublished)
    );
    // Uplink to uplink is not routed.
    let f = tcp(
        R_MAC,
        U_MAC,
        (S, 51000),
        (Ipv4Addr::new(203, 0, 113, 1), 80),
        60,
        Tcp::Syn,
        (5, 0),
        b"",
    );
    assert_eq!(
        run(&mut gw, Side::Uplink, f, 2).0,
        Action::Drop(GatewayDrop::NoRoute)
    );
}

#[test]
fn hairpin_snats_and_dnats() {
    let mut gw = lab();
    gw.add_publish(rule(7, Proto::Tcp, 8080, C1, 80)).unwrap();
    let f = tcp(
        C2_MAC,
        GW2_MAC,
        (C2, 45000),
        (U, 8080),
        64,
        Tcp::Syn,
        (5, 0),
        b"",
    );
    let (a, out) = run(&mut gw, NET2, f, 0);
    assert_eq!(
        a,
        Action::Send {
            side: NET1,
            len: out.len()
        }
    );
    let e = gw.conntrack().iter(0).next().unwrap().1.clone();
    let (snat_addr, p) = e.nat.snat.unwrap();
    assert_eq!(snat_addr, U);
    assert_eq!(e.nat.dnat, Some((C1, 80)));
    assert_eq!(
        out,
        tcp(GW1_MAC, C1_MAC, (U, p), (C1, 80), 63, Tcp::Syn, (5, 0), b"")
    );
    let f = tcp(
        C1_MAC,
        GW1_MAC,
        (C1, 80),
        (U, p),
        64,
        Tcp::SynAck,
        (70, 6),
        b"",
    );
    let (a, out) = run(&mut gw, NET1, f, 1);
    assert_eq!(
        a,
        Action::Send {
            side: NET2,
            len: out.len()
        }
    );
    assert_eq!(
        out,
        tcp(
            GW2_MAC,
            C2_MAC,
            (U, 8080),
            (C2, 45000),
            63,
            Tcp::SynAck,
            (70, 6),
            b""
        )
    );
    // Published ports are reachable from internal networks too.
    let f = tcp(
        C3_MAC,
        GW3_MAC,
        (C3, 45000),
        (U, 8080),
        64,
        Tcp::Syn,
        (5, 0),
        b"",
    );
    assert!(matches!(
        run(&mut gw, NET3, f, 2).0,
        Action::Send { side: NET1, .. }
    ));
}

#[test]
fn internal_network_may_not_reach_the_uplink() {
    let mut gw = lab();
    let f = udp(C3_MAC, GW3_MAC, (C3, 5000), (S, 53), 64, b"q");
    assert_eq!(
        run(&mut gw, NET3, f, 0).0,
        Action::Drop(GatewayDrop::Internal)
    );
    assert_eq!(gw.counters().drop_count(GatewayDrop::Internal), 1);
    assert!(gw.conntrack().is_empty());
}

#[test]
fn networks_route_only_when_connected_and_without_nat() {
    let mut gw = lab();
    let f = || udp(C1_MAC, GW1_MAC, (C1, 5000), (C2, 7000), 64, b"hi");
    assert_eq!(
        run(&mut gw, NET1, f(), 0).0,
        Action::Drop(GatewayDrop::NetworksNotConnected)
    );
    gw.connect(2, 1);
    let (a, out) = run(&mut gw, NET1, f(), 1);
    assert_eq!(
        a,
        Action::Send {
            side: NET2,
            len: out.len()
        }
    );
    assert_eq!(out, udp(GW2_MAC, C2_MAC, (C1, 5000), (C2, 7000), 63, b"hi"));
    let back = udp(C2_MAC, GW2_MAC, (C2, 7000), (C1, 5000), 64, b"ho");
    let (_, out) = run(&mut gw, NET2, back, 2);
    assert_eq!(out, udp(GW1_MAC, C1_MAC, (C2, 7000), (C1, 5000), 63, b"ho"));
    let e = gw.conntrack().iter(2).next().unwrap().1;
    assert_eq!(e.nat, crate::conntrack::Nat::default());
    gw.disconnect(1, 2);
    assert!(gw.conntrack().is_empty());
    assert_eq!(
        run(&mut gw, NET1, f(), 3).0,
        Action::Drop(GatewayDrop::NetworksNotConnected)
    );
}

#[test]
fn partial_checksum_stays_partial() {
    let mut gw = lab();
    let c = (C1, 40000);
    let s = (S, 80);
    run(
        &mut gw,
        NET1,
        tcp(C1_MAC, GW1_MAC, c, s, 64, Tcp::Syn, (1, 0), b""),
        0,
    );
    run(
        &mut gw,
        Side::Uplink,
        tcp(R_MAC, U_MAC, s, (U, 40000), 64, Tcp::SynAck, (9, 2), b""),
        0,
    );
    let data = [0xabu8; 1000];
    // The NEEDS_CSUM form: the field holds the pseudo-header sum.
    let partial = |f: Vec<u8>| with_partial_checksum(f, 16);
    let mut f = partial(tcp(C1_MAC, GW1_MAC, c, s, 64, Tcp::Ack, (2, 10), &data));
    let (_, out) = run_mode(&mut gw, NET1, &mut f, partial_csum(16), 1);
    let want = tcp(U_MAC, R_MAC, (U, 40000), s, 63, Tcp::Ack, (2, 10), &data);
    assert_eq!(out, partial(want.clone()));
    // What the device computes from it is the full checksum.
    let device = yard_wire::checksum::checksum(&out[14 + 20..]);
    assert_eq!(device, u16::from_be_bytes([want[50], want[51]]));
}

#[test]
fn a_partial_checksum_waits_for_arp_as_it_came() {
    // The held copy leaves through the outbox with its offload state: still
    // partial, for whoever sends it to finish, as the device would have.
    let mut gw = bare_lab();
    let payload = [7u8; 100];
    let mut f = with_partial_checksum(udp(C1_MAC, GW1_MAC, (C1, 5000), (S, 53), 64, &payload), 6);
    let (action, _) = run_mode(&mut gw, NET1, &mut f, partial_csum(6), 0);
    assert_eq!(action, Action::Consumed);
    outbox(&mut gw); // the ARP request for R
    let reply = arp_reply_from_r();
    run(&mut gw, Side::Uplink, reply, 1);
    let released = outbox_with_offloads(&mut gw);
    let want = udp(U_MAC, R_MAC, (U, 5000), (S, 53), 63, &payload);
    assert_eq!(
        released,
        vec![(
            Side::Uplink,
            with_partial_checksum(want.clone(), 6),
            partial_csum(6)
        )]
    );
    // Finished as a port would, it is the packet with its full checksum.
    let (_, mut bytes, mut offload) = released.into_iter().next().unwrap();
    yard_wire::offload::complete_checksum(&mut bytes, &mut offload).unwrap();
    assert_eq!(bytes, want);
    assert!(!offload.needs_csum());
}

#[test]
fn a_restarted_container_reusing_an_established_tuple_gets_through() {
    // c1:40000 -> s:80 is ESTABLISHED (ISNs 100 and 900) when c1 restarts
    // and, by chance, opens a new connection from the same port.
    let mut gw = lab();
    let (c, s) = ((C1, 40000), (S, 80));
    run(
        &mut gw,
        NET1,
        tcp(C1_MAC, GW1_MAC, c, s, 64, Tcp::Syn, (100, 0), b""),
        0,
    );
    let synack = tcp(
        R_MAC,
        U_MAC,
        s,
        (U, 40000),
        60,
        Tcp::SynAck,
        (900, 101),
        b"",
    );
    run(&mut gw, Side::Uplink, synack, 1);
    run(
        &mut gw,
        NET1,
        tcp(C1_MAC, GW1_MAC, c, s, 64, Tcp::Ack, (101, 901), b""),
        2,
    );

    // The new SYN leaves through the same mapping (it was dropped as
    // invalid, for as long as the old entry lived: up to 5 days).
    let syn = tcp(C1_MAC, GW1_MAC, c, s, 64, Tcp::Syn, (7_000, 0), b"");
    let (a, out) = run(&mut gw, NET1, syn, 10);
    assert_sent(a, Side::Uplink);
    assert_eq!(
        out,
        tcp(U_MAC, R_MAC, (U, 40000), s, 63, Tcp::Syn, (7_000, 0), b"")
    );
    // The server had closed its side: it accepts, and the entry starts over.
    let synack = tcp(
        R_MAC,
        U_MAC,
        s,
        (U, 40000),
        60,
        Tcp::SynAck,
        (3_000, 7_001),
        b"",
    );
    let (a, _) = run(&mut gw, Side::Uplink, synack, 11);
    assert_sent(a, NET1);
    run(
        &mut gw,
        NET1,
        tcp(C1_MAC, GW1_MAC, c, s, 64, Tcp::Ack, (7_001, 3_001), b""),
        12,
    );
    let (h, _) = gw
        .conntrack()
        .lookup(0, &flow(Proto::Tcp, c, s), 12)
        .unwrap();
    assert_eq!(
        gw.conntrack().get(h).unwrap().tcp_state(),
        Some(TcpState::Established)
    );
    assert_eq!(gw.counters().drop_count(GatewayDrop::InvalidTcp), 0);
}

#[test]
fn a_published_connection_is_picked_up_from_its_client_side_only() {
    // After a restart: the published server's segment first would be
    // masqueraded as a new connection from port 80 and draw a RST from the
    // client; it is dropped, and the client's next segment picks the
    // connection up the right way round.
    let mut gw = lab();
    gw.add_publish(rule(1, Proto::Tcp, 8080, C1, 80)).unwrap();
    let (client, server) = ((S, 5000), (C1, 80));
    let early = tcp(
        C1_MAC,
        GW1_MAC,
        server,
        client,
        64,
        Tcp::Ack,
        (7_000, 3_000),
        b"data",
    );
    assert_eq!(
        run(&mut gw, NET1, early, 0).0,
        Action::Drop(GatewayDrop::InvalidTcp)
    );
    assert!(gw.conntrack().is_empty());

    let from_client = tcp(
        R_MAC,
        U_MAC,
        client,
        (U, 8080),
        60,
        Tcp::Ack,
        (3_000, 7_000),
        b"",
    );
    let (a, out) = run(&mut gw, Side::Uplink, from_client, 1);
    assert_sent(a, NET1);
    assert_eq!(
        out,
        tcp(
            GW1_MAC,
            C1_MAC,
            client,
            server,
            59,
            Tcp::Ack,
            (3_000, 7_000),
            b""
        )
    );
    let again = tcp(
        C1_MAC,
        GW1_MAC,
        server,
        client,
        64,
        Tcp::Ack,
        (7_000, 3_000),
        b"data",
    );
    let (a, out) = run(&mut gw, NET1, again, 2);
    assert_sent(a, Side::Uplink);
    assert_eq!(
        out,
        tcp(
            U_MAC,
            R_MAC,
            (U, 8080),
            client,
            63,
            Tcp::Ack,
            (7_000, 3_000),
            b"data"
        )
    );
}

/// A UDP connection from C1 port 5000 to S port 53, as conntrack would be
/// asked to track it (masqueraded to the uplink address).
fn c1_to_s() -> crate::conntrack::NewConn {
    let key = crate::flow::FlowKey {
        proto: Proto::Udp,
        src: C1,
        sport: 5000,
        dst: S,
        dport: 53,
    };
    crate::conntrack::NewConn {
        snat: Some(U),
        ..crate::conntrack::NewConn::new(key)
    }
}

#[test]
fn a_reply_tuple_clash_is_dropped_as_gw_conntrack_clash() {
    // C1 talks to S from port 80 (masqueraded, port kept); then S sends to
    // a published port that leads to C1 port 80: the new connection's reply
    // tuple (C1:80 -> S:1000) is the first connection's original one.
    let mut gw = lab();
    gw.add_publish(rule(7, Proto::Udp, 8080, C1, 80)).unwrap();
    let out = udp(C1_MAC, GW1_MAC, (C1, 80), (S, 1000), 64, b"hello");
    assert_sent(run(&mut gw, NET1, out, 0).0, Side::Uplink);
    let inbound = udp(
        R_MAC,
        U_MAC,
        (S, 1000),
        (U, 8080),
        64,
        b"to the published port",
    );
    assert_eq!(
        run(&mut gw, Side::Uplink, inbound, 1).0,
        Action::Drop(GatewayDrop::ConntrackClash)
    );
    assert_eq!(gw.counters().drop_count(GatewayDrop::ConntrackClash), 1);
    assert_eq!(gw.counters().drop_count(GatewayDrop::ConntrackFull), 0);
    assert_eq!(GatewayDrop::ConntrackClash.as_str(), "gw-conntrack-clash");
    assert!(outbox(&mut gw).is_empty(), "outside stays unanswered");
}

#[test]
fn an_insert_of_a_tracked_tuple_is_its_own_drop_reason() {
    let mut gw = lab();
    let ct = gw.conntrack_mut();
    ct.insert(c1_to_s(), &crate::conntrack::Packet::other(100), 0)
        .unwrap();
    let again = ct
        .insert(c1_to_s(), &crate::conntrack::Packet::other(100), 1)
        .unwrap_err();
    assert!(matches!(
        again,
        crate::conntrack::ConntrackError::Exists { .. }
    ));
    assert_eq!(
        super::policy::insert_refused(again),
        GatewayDrop::ConntrackExists
    );
    assert_eq!(GatewayDrop::ConntrackExists.as_str(), "gw-conntrack-exists");
}

#[test]
fn an_entry_gone_before_it_is_read_is_its_own_drop_reason() {
    let mut gw = lab();
    let ct = gw.conntrack_mut();
    let packet = crate::conntrack::Packet::other(100);
    let h = ct.insert(c1_to_s(), &packet, 0).unwrap();
    assert!(ct.remove(h));
    let gone = ct.touch(h, Dir::Original, &packet, 1).unwrap_err();
    assert_eq!(gone, crate::conntrack::ConntrackError::Stale);
    assert_eq!(
        super::policy::insert_refused(gone),
        GatewayDrop::ConntrackStale
    );
    assert_eq!(GatewayDrop::ConntrackStale.as_str(), "gw-conntrack-stale");
}

#[test]
fn a_table_with_no_room_is_the_one_full_table_reason() {
    let mut gw = lab();
    gw.conntrack_mut().set_max_entries(0);
    let f = udp(C1_MAC, GW1_MAC, (C1, 5000), (S, 53), 64, b"q");
    assert_eq!(
        run(&mut gw, NET1, f, 0).0,
        Action::Drop(GatewayDrop::ConntrackFull)
    );
    assert_eq!(
        super::policy::insert_refused(crate::conntrack::ConntrackError::Full),
        GatewayDrop::ConntrackFull
    );
}
