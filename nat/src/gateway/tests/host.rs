//! The host uplink: flows to the outside go to the relay untranslated and
//! tracked, the relay's packets come back on the same entry, and the
//! policy (`--internal`, masquerade, unsolicited) holds.

use super::*;
use std::net::SocketAddrV4;

use crate::conntrack::Filter;
use crate::flow::{FlowKey, Proto};

/// The lab with the host uplink in place of the interface uplink.
fn host_lab() -> Gateway {
    let mut gw = lab();
    gw.set_uplink(None);
    gw.set_host_uplink(true);
    gw
}

/// S's UDP reply to C1 as the relay hands it over: an IPv4 packet after
/// an Ethernet header's room, left zero.
fn reply_from_s() -> Vec<u8> {
    let mut f = udp([0; 6], [0; 6], (S, 53), (C1, 40000), 64, b"pong");
    f[..yard_wire::ethernet::HEADER_LEN].fill(0);
    f
}

#[test]
fn a_flow_to_the_outside_goes_to_the_relay_and_its_reply_comes_back() {
    let mut gw = host_lab();
    let f = udp(C1_MAC, GW1_MAC, (C1, 40000), (S, 53), 64, b"ping");
    let (a, out) = run(&mut gw, NET1, f.clone(), 0);
    assert_sent(a, Side::Host);
    // Untranslated: only the TTL went down.
    let expected = udp(C1_MAC, GW1_MAC, (C1, 40000), (S, 53), 63, b"ping");
    assert_eq!(
        out[yard_wire::ethernet::HEADER_LEN..],
        expected[yard_wire::ethernet::HEADER_LEN..]
    );
    let entries: Vec<_> = gw.conntrack().iter(0).map(|(_, e)| e.clone()).collect();
    assert_eq!(entries.len(), 1);
    assert_eq!((entries[0].original.src, entries[0].original.dst), (C1, S));
    assert!(entries[0].nat.snat.is_none());

    let mut back = reply_from_s();
    let a = gw.handle_from_host(&mut back, Offload::NONE, 10);
    assert_sent(a, NET1);
    let expected = udp(GW1_MAC, C1_MAC, (S, 53), (C1, 40000), 63, b"pong");
    assert_eq!(back, expected);
}

#[test]
fn the_relay_cannot_start_an_unpublished_flow_or_reach_another_one() {
    let mut gw = host_lab();
    let mut back = reply_from_s();
    assert_eq!(
        gw.handle_from_host(&mut back, Offload::NONE, 0),
        Action::Drop(GatewayDrop::NotPublished)
    );
    // Nor may it claim a network's address as its source.
    let mut spoof = udp([0; 6], [0; 6], (C2, 53), (C1, 40000), 64, b"x");
    assert_eq!(
        gw.handle_from_host(&mut spoof, Offload::NONE, 0),
        Action::Drop(GatewayDrop::BadSource)
    );
}

#[test]
fn internal_networks_and_networks_without_masquerade_are_not_relayed() {
    let mut gw = host_lab();
    let f = udp(C3_MAC, GW3_MAC, (C3, 40000), (S, 53), 64, b"x");
    assert_eq!(
        run(&mut gw, NET3, f, 0).0,
        Action::Drop(GatewayDrop::Internal)
    );
    gw.set_network(NetConfig {
        masquerade: false,
        ..net(2, (Ipv4Addr::new(10, 2, 0, 0), 24), GW2, GW2_MAC)
    });
    let f = udp(C2_MAC, GW2_MAC, (C2, 40000), (S, 53), 64, b"x");
    assert_eq!(
        run(&mut gw, NET2, f, 0).0,
        Action::Drop(GatewayDrop::NoRoute)
    );
    // Between networks nothing changes: not connected, not routed.
    let f = udp(C1_MAC, GW1_MAC, (C1, 40000), (C2, 53), 64, b"x");
    assert_eq!(
        run(&mut gw, NET1, f, 0).0,
        Action::Drop(GatewayDrop::NetworksNotConnected)
    );
}

#[test]
fn the_hosts_loopback_is_not_reachable_through_the_relay() {
    let mut gw = host_lab();
    for dst in [
        Ipv4Addr::new(127, 0, 0, 1),
        Ipv4Addr::new(127, 0, 0, 53),
        Ipv4Addr::new(0, 1, 2, 3),
    ] {
        let f = udp(C1_MAC, GW1_MAC, (C1, 40000), (dst, 53), 64, b"x");
        assert_eq!(
            run(&mut gw, NET1, f, 0).0,
            Action::Drop(GatewayDrop::NoRoute),
            "{dst}"
        );
    }
    assert_eq!(gw.conntrack().len(), 0);
}

#[test]
fn host_ends_are_listed_until_the_entry_goes_then_handed_back_to_close() {
    let mut gw = host_lab();
    let f = udp(C1_MAC, GW1_MAC, (C1, 40000), (S, 53), 64, b"ping");
    assert_sent(run(&mut gw, NET1, f, 0).0, Side::Host);
    let key = gw.conntrack().iter(0).next().unwrap().1.original;
    let local = "10.9.0.2:51000".parse().unwrap();
    let remote = SocketAddrV4::new(S, 53);
    assert!(gw.set_host_end(key, local, remote));
    let entry = gw.conntrack().iter(0).next().unwrap().1.clone();
    assert_eq!(gw.host_end(&entry), Some((local, remote)));
    assert!(gw.closed_host_flows().is_empty());
    gw.conntrack_mut().flush(&Filter::default());
    assert_eq!(gw.closed_host_flows(), vec![key]);
    assert_eq!(gw.host_end(&entry), None);
    // A socket reported for a flow already gone is to be closed at once.
    assert!(!gw.set_host_end(key, local, remote));
}

#[test]
fn removing_the_host_uplink_removes_the_relayed_flows() {
    let mut gw = host_lab();
    let f = udp(C1_MAC, GW1_MAC, (C1, 40000), (S, 53), 64, b"ping");
    assert_sent(run(&mut gw, NET1, f, 0).0, Side::Host);
    gw.set_host_uplink(false);
    assert_eq!(gw.conntrack().len(), 0);
    let f = udp(C1_MAC, GW1_MAC, (C1, 40000), (S, 53), 64, b"ping");
    assert_eq!(
        run(&mut gw, NET1, f, 0).0,
        Action::Drop(GatewayDrop::NoRoute)
    );
}

#[test]
fn dns_to_the_gateway_goes_to_the_host_resolver_and_comes_back_from_the_gateway() {
    let resolver = Ipv4Addr::new(127, 0, 0, 53);
    let mut gw = host_lab();
    let query = || udp(C1_MAC, GW1_MAC, (C1, 40000), (GW1, 53), 64, b"query");
    // Without a resolver the gateway does not answer DNS.
    assert_eq!(
        run(&mut gw, NET1, query(), 0).0,
        Action::Drop(GatewayDrop::NotForGateway)
    );
    gw.set_dns_forward(Some(resolver));
    let (a, out) = run(&mut gw, NET1, query(), 0);
    assert_sent(a, Side::Host);
    let expected = udp(C1_MAC, GW1_MAC, (C1, 40000), (resolver, 53), 63, b"query");
    assert_eq!(out[14..], expected[14..]);

    // The relay reports the flow as it sees it: to the resolver.
    let seen = FlowKey {
        proto: Proto::Udp,
        src: C1,
        sport: 40000,
        dst: resolver,
        dport: 53,
    };
    let local = "127.0.0.1:50000".parse().unwrap();
    let remote = SocketAddrV4::new(resolver, 53);
    assert!(gw.set_host_end(seen, local, remote));
    let entry = gw.conntrack().iter(0).next().unwrap().1.clone();
    assert_eq!(entry.original.dst, GW1);
    assert_eq!(gw.host_end(&entry), Some((local, remote)));

    let mut answer = udp([0; 6], [0; 6], (resolver, 53), (C1, 40000), 64, b"answer");
    answer[..14].fill(0);
    assert_sent(gw.handle_from_host(&mut answer, Offload::NONE, 5), NET1);
    let expected = udp(GW1_MAC, C1_MAC, (GW1, 53), (C1, 40000), 63, b"answer");
    assert_eq!(answer, expected);

    // An --internal network gets no DNS from outside; another port is not
    // DNS; and the loopback is still out of reach directly.
    let f = udp(C3_MAC, GW3_MAC, (C3, 40000), (GW3, 53), 64, b"query");
    assert_eq!(
        run(&mut gw, NET3, f, 0).0,
        Action::Drop(GatewayDrop::NotForGateway)
    );
    let f = udp(C1_MAC, GW1_MAC, (C1, 40001), (GW1, 54), 64, b"query");
    assert_eq!(
        run(&mut gw, NET1, f, 0).0,
        Action::Drop(GatewayDrop::NotForGateway)
    );
    let f = udp(C1_MAC, GW1_MAC, (C1, 40002), (resolver, 53), 64, b"query");
    assert_eq!(
        run(&mut gw, NET1, f, 0).0,
        Action::Drop(GatewayDrop::NoRoute)
    );
}

#[test]
fn a_port_unreachable_from_the_relay_reaches_the_container() {
    let mut gw = host_lab();
    let f = udp(C1_MAC, GW1_MAC, (C1, 40000), (S, 7778), 64, b"x");
    let (a, sent) = run(&mut gw, NET1, f, 0);
    assert_sent(a, Side::Host);
    // The relay quotes the datagram as it left for the host.
    let mut error = icmp_error(
        [0; 6],
        [0; 6],
        S,
        0,
        64,
        yard_wire::icmp::IcmpErrorKind::DestUnreachable(3),
        &sent,
    );
    error[..14].fill(0);
    assert_sent(gw.handle_from_host(&mut error, Offload::NONE, 5), NET1);
}

/// A packet the relay sends for a published connection's client: an IPv4
/// packet after an Ethernet header's room, left zero.
fn from_host_client(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), payload: &[u8]) -> Vec<u8> {
    let mut f = udp([0; 6], [0; 6], src, dst, 64, payload);
    f[..yard_wire::ethernet::HEADER_LEN].fill(0);
    f
}

/// The host address a client reached through the relay's listening socket.
const HOST_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);

#[test]
fn a_published_port_on_the_host_uplink_delivers_the_clients_own_address() {
    let mut gw = host_lab();
    gw.add_publish(rule(1, Proto::Udp, 8080, C1, 80)).unwrap();
    let mut f = from_host_client((S, 40000), (HOST_ADDR, 8080), b"hi");
    assert_sent(gw.handle_from_host(&mut f, Offload::NONE, 0), NET1);
    // Only the destination changed: the container sees the real client.
    let expected = udp(GW1_MAC, C1_MAC, (S, 40000), (C1, 80), 63, b"hi");
    assert_eq!(f, expected);
    let e = gw.conntrack().iter(0).next().unwrap().1.clone();
    assert_eq!(e.rule, Some(RuleId(1)));

    // The reply goes back to the relay from the address the client reached.
    let reply = udp(C1_MAC, GW1_MAC, (C1, 80), (S, 40000), 64, b"ho");
    let (a, out) = run(&mut gw, NET1, reply, 1);
    assert_sent(a, Side::Host);
    let expected = udp(C1_MAC, GW1_MAC, (HOST_ADDR, 8080), (S, 40000), 63, b"ho");
    assert_eq!(out[14..], expected[14..]);

    // The relay names the flow by the packets it gets: the reply direction.
    let seen = flow(Proto::Udp, (HOST_ADDR, 8080), (S, 40000));
    let local = SocketAddrV4::new(HOST_ADDR, 8080);
    let remote = SocketAddrV4::new(S, 40000);
    assert!(gw.set_host_end(seen, local, remote));
    assert_eq!(gw.host_end(&e), Some((local, remote)));
    gw.remove_publish(RuleId(1));
    assert_eq!(gw.closed_host_flows(), vec![seen]);
}

#[test]
fn a_published_port_on_the_host_uplink_honours_its_address_and_internal_networks() {
    let mut gw = host_lab();
    let on_one = PublishRule {
        host_addr: Some(Ipv4Addr::new(10, 77, 0, 9)),
        ..rule(1, Proto::Udp, 8080, C1, 80)
    };
    gw.add_publish(on_one).unwrap();
    gw.add_publish(rule(2, Proto::Udp, 8081, C3, 80)).unwrap();
    for (dst, why) in [
        ((HOST_ADDR, 8080), GatewayDrop::NotPublished),
        ((HOST_ADDR, 8082), GatewayDrop::NotPublished),
        ((HOST_ADDR, 8081), GatewayDrop::Internal),
    ] {
        let mut f = from_host_client((S, 40000), dst, b"hi");
        assert_eq!(
            gw.handle_from_host(&mut f, Offload::NONE, 0),
            Action::Drop(why),
            "{dst:?}"
        );
    }
    let mut f = from_host_client((S, 40000), (Ipv4Addr::new(10, 77, 0, 9), 8080), b"hi");
    assert_sent(gw.handle_from_host(&mut f, Offload::NONE, 0), NET1);
}

#[test]
fn a_client_on_the_hosts_loopback_comes_from_the_gateway_or_the_host_loopback_address() {
    let mut gw = host_lab();
    gw.add_publish(rule(1, Proto::Udp, 8080, C1, 80)).unwrap();
    let lo = Ipv4Addr::LOCALHOST;
    let mut f = from_host_client((lo, 40000), (lo, 8080), b"hi");
    assert_sent(gw.handle_from_host(&mut f, Offload::NONE, 0), NET1);
    let (src, dst) = {
        let ip = yard_wire::ipv4::Ipv4Packet::new_checked(&f[14..]).unwrap();
        (ip.src(), ip.dst())
    };
    assert_eq!((src, dst), (GW1, C1));

    // The reply, to the gateway's address, goes back to the loopback client.
    let e = gw.conntrack().iter(0).next().unwrap().1.clone();
    let (snat_addr, snat_port) = e.nat.snat.unwrap();
    let reply = udp(C1_MAC, GW1_MAC, (C1, 80), (snat_addr, snat_port), 64, b"ho");
    let (a, out) = run(&mut gw, NET1, reply, 1);
    assert_sent(a, Side::Host);
    let expected = udp(C1_MAC, GW1_MAC, (lo, 8080), (lo, 40000), 63, b"ho");
    assert_eq!(out[14..], expected[14..]);

    let host_loopback = Ipv4Addr::new(169, 254, 1, 2);
    gw.set_network(NetConfig {
        host_loopback: Some(host_loopback),
        ..net(1, (Ipv4Addr::new(172, 30, 0, 0), 16), GW1, GW1_MAC)
    });
    let mut f = from_host_client((lo, 40001), (lo, 8080), b"hi");
    assert_sent(gw.handle_from_host(&mut f, Offload::NONE, 2), NET1);
    let src = yard_wire::ipv4::Ipv4Packet::new_checked(&f[14..])
        .unwrap()
        .src();
    assert_eq!(src, host_loopback);
}

#[test]
fn the_host_loopback_address_reaches_the_hosts_loopback_only_where_set() {
    let host_loopback = Ipv4Addr::new(169, 254, 1, 2);
    let mut gw = host_lab();
    let to_it = |sport| {
        udp(
            C1_MAC,
            GW1_MAC,
            (C1, sport),
            (host_loopback, 5432),
            64,
            b"q",
        )
    };
    // Off by default: an address like any other on the outside.
    let (a, out) = run(&mut gw, NET1, to_it(40000), 0);
    assert_sent(a, Side::Host);
    let dst = yard_wire::ipv4::Ipv4Packet::new_checked(&out[14..])
        .unwrap()
        .dst();
    assert_eq!(dst, host_loopback);

    gw.set_network(NetConfig {
        host_loopback: Some(host_loopback),
        ..net(1, (Ipv4Addr::new(172, 30, 0, 0), 16), GW1, GW1_MAC)
    });
    let (a, out) = run(&mut gw, NET1, to_it(40001), 1);
    assert_sent(a, Side::Host);
    let expected = udp(
        C1_MAC,
        GW1_MAC,
        (C1, 40001),
        (Ipv4Addr::LOCALHOST, 5432),
        63,
        b"q",
    );
    assert_eq!(out[14..], expected[14..]);
    // The answer from the host's loopback comes from the mapped address.
    let mut answer = udp(
        [0; 6],
        [0; 6],
        (Ipv4Addr::LOCALHOST, 5432),
        (C1, 40001),
        64,
        b"a",
    );
    answer[..14].fill(0);
    assert_sent(gw.handle_from_host(&mut answer, Offload::NONE, 2), NET1);
    let expected = udp(
        GW1_MAC,
        C1_MAC,
        (host_loopback, 5432),
        (C1, 40001),
        63,
        b"a",
    );
    assert_eq!(answer, expected);

    // The gateway's own address may stand for the host too; DNS keeps port 53.
    gw.set_network(NetConfig {
        host_loopback: Some(GW1),
        ..net(1, (Ipv4Addr::new(172, 30, 0, 0), 16), GW1, GW1_MAC)
    });
    let f = udp(C1_MAC, GW1_MAC, (C1, 40002), (GW1, 5432), 64, b"q");
    let (a, out) = run(&mut gw, NET1, f, 3);
    assert_sent(a, Side::Host);
    let dst = yard_wire::ipv4::Ipv4Packet::new_checked(&out[14..])
        .unwrap()
        .dst();
    assert_eq!(dst, Ipv4Addr::LOCALHOST);

    // Not without the host uplink.
    gw.set_host_uplink(false);
    let f = udp(C1_MAC, GW1_MAC, (C1, 40003), (GW1, 5432), 64, b"q");
    assert_eq!(
        run(&mut gw, NET1, f, 4).0,
        Action::Drop(GatewayDrop::NotForGateway)
    );
}
