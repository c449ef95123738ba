//! Port security in the pipeline: what a secured port may send, what no
//! port may claim, and that a secured port's MAC cannot be stolen. Each test
//! asserts what came out of every port, the drop counters and the FDB.

use std::net::Ipv4Addr;

use yard_ctl::types::AllowedAddress;
use yard_wire::arp::{ArpFrame, ArpOp};

use super::{mac, Lab, T0};
use crate::dataplane::bridge::security::PortSecurity;
use crate::dataplane::port::PortId;
use crate::dataplane::verdict::DropReason;

const GATEWAY: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 1);

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(172, 30, 0, last)
}

/// An IPv4 packet from `src_mac`/`src` to `dst_mac`/`dst`: UDP to `dport`
/// (protocol 17) or, with `proto`, another protocol with 8 bytes of payload.
fn ipv4(dst_mac: u8, src_mac: u8, src: Ipv4Addr, dst: Ipv4Addr, proto: u8, dport: u16) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&mac(dst_mac).0);
    f.extend_from_slice(&mac(src_mac).0);
    f.extend_from_slice(&[0x08, 0x00]);
    let total: u16 = 20 + 8;
    f.extend_from_slice(&[
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        0,
        0x40,
        0,
        64,
        proto,
    ]);
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&[0x00, 0x44]);
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&[0, 8, 0, 0]);
    f
}

fn udp(dst_mac: u8, src_mac: u8, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    ipv4(dst_mac, src_mac, src, dst, 17, 5000)
}

fn arp(op: ArpOp, eth_dst: [u8; 6], sender_mac: u8, sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let frame = ArpFrame {
        op,
        eth_dst,
        sender_hw: mac(sender_mac).0,
        sender_proto: sender,
        target_hw: if op == ArpOp::Request {
            [0; 6]
        } else {
            eth_dst
        },
        target_proto: target,
    };
    let mut out = vec![0; 60];
    let len = frame.emit(&mut out).unwrap();
    out.truncate(len);
    out
}

/// Network "n" with gateway 172.30.0.1 and ports a (secured: mac 1,
/// 172.30.0.2), b (secured: mac 2, 172.30.0.3) and an open port c.
fn secured_lab() -> (Lab, PortId, PortId, PortId) {
    let mut lab = Lab::new(4096);
    let (a, b, c) = lab.three_ports(300);
    let net = lab.bridge.net_id("n").unwrap();
    lab.bridge.set_gateway_ip(net, Some(GATEWAY));
    lab.bridge
        .set_port_security(a, Some(PortSecurity::new(mac(1), Some(ip(2)), &[])));
    lab.bridge
        .set_port_security(b, Some(PortSecurity::new(mac(2), Some(ip(3)), &[])));
    (lab, a, b, c)
}

fn learned(lab: &Lab) -> Vec<(yard_ctl::MacAddr, String)> {
    let entries = lab.bridge.fdb_entries(None, T0).unwrap();
    entries.into_iter().map(|e| (e.mac, e.port)).collect()
}

#[test]
fn a_secured_port_sends_only_from_its_mac_and_address() {
    let (mut lab, a, b, c) = secured_lab();

    let good = udp(2, 1, ip(2), ip(3));
    lab.send(a, &good, T0);
    assert_eq!(
        lab.out(b),
        vec![good.clone()],
        "its own MAC and address pass"
    );
    assert_eq!(lab.out(c), vec![good]);

    let spoofed_mac = udp(2, 9, ip(2), ip(3));
    lab.send(a, &spoofed_mac, T0);
    assert!(lab.out(b).is_empty() && lab.out(c).is_empty());
    assert_eq!(lab.drops(a, DropReason::SpoofedMac), 1);

    let spoofed_ip = udp(2, 1, ip(3), ip(3));
    lab.send(a, &spoofed_ip, T0);
    let outside = udp(2, 1, Ipv4Addr::new(10, 0, 0, 7), ip(3));
    lab.send(a, &outside, T0);
    assert!(lab.out(b).is_empty() && lab.out(c).is_empty());
    assert_eq!(lab.drops(a, DropReason::SpoofedIp), 2);

    assert_eq!(
        learned(&lab),
        vec![(mac(1), "a".to_string())],
        "nothing dropped was learned"
    );
}

#[test]
fn a_dhcp_client_may_send_from_the_unspecified_address_and_nothing_else() {
    let (mut lab, a, b, _c) = secured_lab();
    let broadcast = Ipv4Addr::BROADCAST;
    let discover = ipv4(0xff, 1, Ipv4Addr::UNSPECIFIED, broadcast, 17, 67);
    lab.send(a, &discover, T0);
    assert_eq!(lab.out(b).len(), 1, "DHCP discover from 0.0.0.0 passes");

    let other_udp = ipv4(2, 1, Ipv4Addr::UNSPECIFIED, ip(3), 17, 53);
    let tcp = ipv4(2, 1, Ipv4Addr::UNSPECIFIED, ip(3), 6, 67);
    lab.send(a, &other_udp, T0);
    lab.send(a, &tcp, T0);
    assert!(lab.out(b).is_empty());
    assert_eq!(lab.drops(a, DropReason::SpoofedIp), 2);
}

#[test]
fn a_secured_port_answers_arp_only_for_its_own_address() {
    let (mut lab, a, b, c) = secured_lab();
    let bcast = [0xff; 6];

    // Its own request, and an RFC 5227 probe from 0.0.0.0, pass.
    let request = arp(ArpOp::Request, bcast, 1, ip(2), ip(3));
    let probe = arp(ArpOp::Request, bcast, 1, Ipv4Addr::UNSPECIFIED, ip(2));
    lab.send(a, &request, T0);
    lab.send(a, &probe, T0);
    assert_eq!(lab.out(b), vec![request, probe]);
    lab.out(c);

    // A reply claiming the neighbour's address, a gratuitous ARP for it, a
    // request teaching the gateway that it lives here, a sender MAC not the
    // port's, and a reply "from" 0.0.0.0: all refused.
    let forged = [
        arp(ArpOp::Reply, mac(2).0, 1, ip(3), ip(3)),
        arp(ArpOp::Request, bcast, 1, ip(3), ip(3)),
        arp(ArpOp::Request, bcast, 1, ip(3), GATEWAY),
        {
            let mut f = arp(ArpOp::Request, bcast, 1, ip(2), ip(3));
            f[22..28].copy_from_slice(&mac(2).0);
            f
        },
        arp(ArpOp::Reply, mac(2).0, 1, Ipv4Addr::UNSPECIFIED, ip(3)),
    ];
    for frame in &forged {
        lab.send(a, frame, T0);
    }
    assert!(lab.out(b).is_empty() && lab.out(c).is_empty());
    assert_eq!(lab.drops(a, DropReason::SpoofedArp), forged.len() as u64);
    // The broadcast ones were not handed to the gateway either.
    let net = lab.bridge.net_id("n").unwrap();
    lab.bridge.set_gateway_mac(net, Some(mac(0xfe)));
    let mut frame = crate::dataplane::frame::Frame::new();
    frame.fill(yard_wire::offload::Offload::NONE, &forged[2]);
    assert_eq!(lab.bridge.process(a, &mut frame, T0), None);
}

#[test]
fn no_port_may_claim_the_gateway_address() {
    let (mut lab, a, b, c) = secured_lab();
    let bcast = [0xff; 6];
    let claims = [
        arp(ArpOp::Reply, mac(2).0, 3, GATEWAY, ip(3)),
        arp(ArpOp::Request, bcast, 3, GATEWAY, ip(3)),
        udp(2, 3, GATEWAY, ip(3)),
    ];
    for frame in &claims {
        lab.send(c, frame, T0);
    }
    assert!(lab.out(a).is_empty() && lab.out(b).is_empty());
    assert_eq!(
        lab.drops(c, DropReason::GatewayClaim),
        3,
        "an open port is refused the gateway's address too"
    );

    // A secured port allowed the whole subnet still cannot use it.
    let wide = [AllowedAddress::Ip("172.30.0.0/16".parse().unwrap())];
    lab.bridge
        .set_port_security(a, Some(PortSecurity::new(mac(1), Some(ip(2)), &wide)));
    lab.send(a, &udp(2, 1, ip(77), ip(3)), T0);
    assert_eq!(lab.out(b).len(), 1, "an allowed address passes");
    lab.send(a, &udp(2, 1, GATEWAY, ip(3)), T0);
    lab.send(a, &arp(ArpOp::Reply, mac(2).0, 1, GATEWAY, ip(3)), T0);
    assert!(lab.out(b).is_empty());
    assert_eq!(lab.drops(a, DropReason::GatewayClaim), 2);
}

#[test]
fn a_trunk_is_a_link_not_checked_for_addresses() {
    let mut lab = Lab::new(4096);
    lab.net("v", true, Some(10), 300);
    let access = lab.access("p", "v", 1500);
    let trunk = lab.trunk("t", &["v"]);
    let net = lab.bridge.net_id("v").unwrap();
    lab.bridge.set_gateway_ip(net, Some(GATEWAY));
    // Another switch's gateway of the same address answers through it.
    let reply = arp(ArpOp::Reply, mac(1).0, 5, GATEWAY, ip(2));
    lab.send(trunk, &super::tagged(10, &reply), T0);
    assert_eq!(lab.out(access), vec![reply]);
    assert_eq!(lab.drops(trunk, DropReason::GatewayClaim), 0);
}

#[test]
fn a_secured_port_mac_is_never_learned_elsewhere() {
    let (mut lab, a, b, c) = secured_lab();
    lab.send(b, &udp(1, 2, ip(3), ip(2)), T0);
    assert_eq!(lab.out(a).len(), 1);
    lab.out(c);

    // The open port c sends as b: dropped, and b keeps its entry.
    lab.send(c, &udp(1, 2, ip(3), ip(2)), T0);
    assert!(lab.out(a).is_empty() && lab.out(b).is_empty());
    assert_eq!(lab.drops(c, DropReason::SpoofedMac), 1);
    // Secured a cannot either.
    lab.send(a, &udp(0xff, 2, ip(2), ip(3)), T0);
    assert_eq!(lab.drops(a, DropReason::SpoofedMac), 1);
    assert_eq!(
        learned(&lab),
        vec![(mac(2), "b".to_string())],
        "b's MAC still lives behind b"
    );
    let to_b = udp(2, 1, ip(2), ip(3));
    lab.send(a, &to_b, T0);
    assert_eq!(lab.out(b), vec![to_b], "b's traffic still reaches b");
    assert!(lab.out(c).is_empty(), "and not the thief");

    // Once b is gone its MAC is free again.
    lab.bridge.remove_port("b").unwrap();
    lab.send(c, &udp(1, 2, ip(3), ip(2)), T0);
    assert_eq!(lab.out(a).len(), 1);
    assert_eq!(lab.drops(c, DropReason::SpoofedMac), 1);
}

#[test]
fn securing_a_port_unlearns_its_mac_from_a_thief() {
    let mut lab = Lab::new(4096);
    let (a, _b, c) = lab.three_ports(300);
    // c learned mac(1) before a was secured (e.g. a race at creation).
    lab.send(c, &udp(0xff, 1, ip(2), ip(3)), T0);
    assert_eq!(learned(&lab), vec![(mac(1), "c".to_string())]);
    lab.bridge
        .set_port_security(a, Some(PortSecurity::new(mac(1), Some(ip(2)), &[])));
    assert!(learned(&lab).is_empty(), "the stolen entry is forgotten");
}

#[test]
fn allowed_addresses_widen_a_port_and_no_address_means_mac_only() {
    let (mut lab, a, b, _c) = secured_lab();
    let allowed = [
        "10.8.0.0/24".parse::<AllowedAddress>().unwrap(),
        AllowedAddress::Mac(mac(7)),
    ];
    lab.bridge
        .set_port_security(a, Some(PortSecurity::new(mac(1), Some(ip(2)), &allowed)));
    lab.send(a, &udp(2, 1, Ipv4Addr::new(10, 8, 0, 9), ip(3)), T0);
    lab.send(a, &udp(2, 7, ip(2), ip(3)), T0);
    lab.send(
        a,
        &arp(ArpOp::Reply, mac(2).0, 7, Ipv4Addr::new(10, 8, 0, 1), ip(3)),
        T0,
    );
    assert_eq!(lab.out(b).len(), 3, "allowed prefix and MAC pass");
    lab.send(a, &udp(2, 1, Ipv4Addr::new(10, 8, 1, 9), ip(3)), T0);
    assert_eq!(lab.drops(a, DropReason::SpoofedIp), 1);

    // A port without an address is held to its MAC only.
    lab.bridge
        .set_port_security(a, Some(PortSecurity::new(mac(1), None, &[])));
    lab.send(a, &udp(2, 1, Ipv4Addr::new(192, 0, 2, 1), ip(3)), T0);
    assert_eq!(lab.out(b).len(), 1);
    lab.send(a, &udp(2, 7, ip(2), ip(3)), T0);
    assert_eq!(
        lab.drops(a, DropReason::SpoofedMac),
        1,
        "mac(7) no longer allowed"
    );

    // Taking port security away restores the old behaviour.
    lab.bridge.set_port_security(a, None);
    lab.send(a, &udp(2, 9, ip(3), ip(3)), T0);
    assert_eq!(lab.out(b).len(), 1);
}

#[test]
fn a_truncated_ipv4_header_from_a_secured_port_is_malformed() {
    let (mut lab, a, b, c) = secured_lab();
    let mut short = udp(2, 1, ip(2), ip(3));
    short.truncate(14 + 12);
    lab.send(a, &short, T0);
    assert!(lab.out(b).is_empty());
    assert_eq!(lab.drops(a, DropReason::Malformed), 1);
    short[6..12].copy_from_slice(&mac(3).0);
    lab.send(c, &short, T0);
    assert_eq!(
        lab.out(b),
        vec![short],
        "an open port's is left to its receiver"
    );
}

#[test]
fn a_spoofed_packet_never_reaches_the_gateway() {
    let (mut lab, a, _b, _c) = secured_lab();
    let net = lab.bridge.net_id("n").unwrap();
    let gateway_mac = mac(0xfe);
    lab.bridge.set_gateway_mac(net, Some(gateway_mac));
    let mut frame = crate::dataplane::frame::Frame::new();
    let outside = Ipv4Addr::new(192, 0, 2, 9);

    frame.fill(
        yard_wire::offload::Offload::NONE,
        &udp(0xfe, 1, ip(2), outside),
    );
    assert_eq!(
        lab.bridge.process(a, &mut frame, T0),
        Some(net),
        "its own source goes to the gateway"
    );
    frame.fill(
        yard_wire::offload::Offload::NONE,
        &udp(0xfe, 1, ip(3), outside),
    );
    assert_eq!(
        lab.bridge.process(a, &mut frame, T0),
        None,
        "a neighbour's source is dropped before the gateway sees it"
    );
    assert_eq!(lab.drops(a, DropReason::SpoofedIp), 1);
}
