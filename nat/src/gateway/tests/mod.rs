//! Whole-frame tests of the gateway. Frames are built with etherparse, which
//! computes every checksum from scratch: comparing the gateway's output with
//! a freshly built frame checks every byte, and that the incremental
//! checksum updates equal a full recompute.
//!
//! The lab: network 1 (172.30.0.0/16, masquerade) with container C1,
//! network 2 (10.2.0.0/24, masquerade) with container C2, network 3
//! (10.3.0.0/24, internal) with container C3, and the uplink
//! 192.0.2.10/24 whose gateway is router R; S is a server on the Internet.

mod arp_icmp;
mod config;
mod firewall;
mod host;
mod isolation;
mod nat;
mod trace;
mod transit;

use std::net::Ipv4Addr;

use etherparse::PacketBuilder;

use super::*;
use crate::conntrack::Config;
use yard_wire::arp::{ArpFrame, ArpOp};
use yard_wire::ipv4::Ipv4Packet;
use yard_wire::offload::Offload;
use yard_wire::vnet::{F_NEEDS_CSUM, GSO_UDP_L4};

const C1: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 2);
const C2: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 5);
const C3: Ipv4Addr = Ipv4Addr::new(10, 3, 0, 5);
const GW1: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 1);
const GW2: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 1);
const GW3: Ipv4Addr = Ipv4Addr::new(10, 3, 0, 1);
const U: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const R: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const S: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

const C1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x02];
const C2_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x05];
const C3_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x03, 0x05];
const GW1_MAC: [u8; 6] = [0x02, 0x42, 0, 0, 0x01, 0x01];
const GW2_MAC: [u8; 6] = [0x02, 0x42, 0, 0, 0x02, 0x01];
const GW3_MAC: [u8; 6] = [0x02, 0x42, 0, 0, 0x03, 0x01];
const U_MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x10];
const R_MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x01];
const BCAST: [u8; 6] = [0xff; 6];

const NET1: Side = Side::Net(1);
const NET2: Side = Side::Net(2);
const NET3: Side = Side::Net(3);

fn net(id: u16, subnet: (Ipv4Addr, u8), gateway: Ipv4Addr, mac: [u8; 6]) -> NetConfig {
    NetConfig {
        id,
        subnet,
        gateway,
        mac,
        masquerade: true,
        internal: false,
        icc: true,
        host_loopback: None,
    }
}

/// The lab without any neighbour known.
fn bare_lab() -> Gateway {
    let mut gw = Gateway::new(Config::default());
    gw.set_network(net(1, (Ipv4Addr::new(172, 30, 0, 0), 16), GW1, GW1_MAC));
    gw.set_network(net(2, (Ipv4Addr::new(10, 2, 0, 0), 24), GW2, GW2_MAC));
    gw.set_network(NetConfig {
        internal: true,
        masquerade: false,
        ..net(3, (Ipv4Addr::new(10, 3, 0, 0), 24), GW3, GW3_MAC)
    });
    gw.set_uplink(Some(UplinkConfig {
        addr: (U, 24),
        mac: U_MAC,
        gateway: Some(R),
    }));
    gw
}

/// The lab with C1, C2, C3 and R known (each asked for its gateway), the
/// outbox empty and the counters zero.
fn lab() -> Gateway {
    let mut gw = bare_lab();
    for (side, ip, mac, target) in [
        (NET1, C1, C1_MAC, GW1),
        (NET2, C2, C2_MAC, GW2),
        (NET3, C3, C3_MAC, GW3),
        (Side::Uplink, R, R_MAC, U),
    ] {
        let mut f = arp(ArpFrame::request(mac, ip, target));
        assert!(matches!(
            gw.handle(side, &mut f, Offload::NONE, 0),
            Action::Send { .. }
        ));
    }
    while gw.next_outbox().is_some() {}
    gw.counters = GatewayCounters::default();
    gw
}

/// R's ARP reply to the gateway's uplink address.
fn arp_reply_from_r() -> Vec<u8> {
    arp(ArpFrame {
        op: ArpOp::Reply,
        eth_dst: U_MAC,
        sender_hw: R_MAC,
        sender_proto: R,
        target_hw: U_MAC,
        target_proto: U,
    })
}

fn arp(a: ArpFrame) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    a.emit(&mut f).unwrap();
    f
}

/// Hands `frame` to the gateway; returns the action and, for `Send`, the
/// frame cut to its new length.
fn run(gw: &mut Gateway, side: Side, mut frame: Vec<u8>, now: u64) -> (Action, Vec<u8>) {
    run_mode(gw, side, &mut frame, Offload::NONE, now)
}

fn run_mode(
    gw: &mut Gateway,
    side: Side,
    frame: &mut Vec<u8>,
    offload: Offload,
    now: u64,
) -> (Action, Vec<u8>) {
    let a = gw.handle(side, frame, offload, now);
    if let Action::Send { len, .. } = a {
        frame.truncate(len);
    }
    (a, frame.clone())
}

/// Asserts that the gateway sent the frame on, out of `side`.
#[track_caller]
fn assert_sent(a: Action, side: Side) {
    assert!(
        matches!(a, Action::Send { side: s, .. } if s == side),
        "expected a send to {side:?}, got {a:?}"
    );
}

/// The offload state of an untagged IPv4 frame (no options) from a TAP
/// with checksum offload: its L4 checksum, `csum_offset` into the L4
/// header (16 for TCP, 6 for UDP), is partial.
fn partial_csum(csum_offset: u16) -> Offload {
    Offload {
        flags: F_NEEDS_CSUM,
        csum_start: 34,
        csum_offset,
        ..Offload::NONE
    }
}

/// The offload state of an untagged IPv4 UDP frame from a TAP with UDP
/// segmentation offload: datagrams of `size` bytes, partial checksum.
fn uso(size: u16) -> Offload {
    Offload {
        gso_type: GSO_UDP_L4,
        hdr_len: 42,
        gso_size: size,
        ..partial_csum(6)
    }
}

/// What the gateway put in its outbox: (side, frame) pairs.
fn outbox(gw: &mut Gateway) -> Vec<(Side, Vec<u8>)> {
    outbox_with_offloads(gw)
        .into_iter()
        .map(|(side, bytes, _)| (side, bytes))
        .collect()
}

/// What the gateway put in its outbox, each frame with its offload state.
fn outbox_with_offloads(gw: &mut Gateway) -> Vec<(Side, Vec<u8>, Offload)> {
    std::iter::from_fn(|| gw.next_outbox())
        .map(|o| (o.side, o.bytes, o.offload))
        .collect()
}

/// `frame` (Ethernet, untagged IPv4 without options, TCP or UDP) with its
/// L4 checksum field holding the pseudo-header sum, as a TAP with checksum
/// offload hands it over.
fn with_partial_checksum(mut frame: Vec<u8>, csum_offset: usize) -> Vec<u8> {
    let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
    let sum = yard_wire::checksum::pseudo_header_sum(
        ip.src(),
        ip.dst(),
        ip.protocol(),
        ip.payload().len() as u16,
    );
    frame[34 + csum_offset..36 + csum_offset].copy_from_slice(&sum.to_be_bytes());
    frame
}

/// Ethernet + IPv4 builder step.
fn ip(
    smac: [u8; 6],
    dmac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
) -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
    PacketBuilder::ethernet2(smac, dmac).ipv4(src.octets(), dst.octets(), ttl)
}

/// TCP flags of a test segment.
#[derive(Clone, Copy)]
enum Tcp {
    Syn,
    SynAck,
    Ack,
}

#[allow(clippy::too_many_arguments)]
fn tcp(
    smac: [u8; 6],
    dmac: [u8; 6],
    (src, sport): (Ipv4Addr, u16),
    (dst, dport): (Ipv4Addr, u16),
    ttl: u8,
    flags: Tcp,
    (seq, ack): (u32, u32),
    payload: &[u8],
) -> Vec<u8> {
    let b = ip(smac, dmac, src, dst, ttl).tcp(sport, dport, seq, 64240);
    let b = match flags {
        Tcp::Syn => b.syn(),
        Tcp::SynAck => b.syn().ack(ack),
        Tcp::Ack => b.ack(ack),
    };
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

/// C1's SYN from port 40000 to S:80 with sequence number `seq`, as it
/// reaches network 1's gateway: the connection most tests open.
fn c1_syn(seq: u32) -> Vec<u8> {
    tcp(
        C1_MAC,
        GW1_MAC,
        (C1, 40000),
        (S, 80),
        64,
        Tcp::Syn,
        (seq, 0),
        b"",
    )
}

fn udp(
    smac: [u8; 6],
    dmac: [u8; 6],
    (src, sport): (Ipv4Addr, u16),
    (dst, dport): (Ipv4Addr, u16),
    ttl: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut v = Vec::new();
    ip(smac, dmac, src, dst, ttl)
        .udp(sport, dport)
        .write(&mut v, payload)
        .unwrap();
    v
}

#[allow(clippy::too_many_arguments)]
fn echo(
    smac: [u8; 6],
    dmac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    request: bool,
    id: u16,
    payload: &[u8],
) -> Vec<u8> {
    let b = ip(smac, dmac, src, dst, ttl);
    let b = if request {
        b.icmpv4_echo_request(id, 7)
    } else {
        b.icmpv4_echo_reply(id, 7)
    };
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

/// An Ethernet frame carrying the ICMP error `kind` from `src` about the IP
/// packet of `about` (a whole frame), with outer TTL `ttl` and IP id `ident`.
#[allow(clippy::too_many_arguments)]
fn icmp_error(
    smac: [u8; 6],
    dmac: [u8; 6],
    src: Ipv4Addr,
    ident: u16,
    ttl: u8,
    kind: yard_wire::icmp::IcmpErrorKind,
    about: &[u8],
) -> Vec<u8> {
    let mut v = vec![0u8; 14 + 576];
    let n =
        yard_wire::icmp::build_icmp_error(&mut v[14..], src, ident, kind, &about[14..]).unwrap();
    v.truncate(14 + n);
    v[0..6].copy_from_slice(&dmac);
    v[6..12].copy_from_slice(&smac);
    v[12..14].copy_from_slice(&[0x08, 0x00]);
    Ipv4Packet::new_unchecked(&mut v[14..]).set_ttl(ttl);
    v
}

/// Sets the TTL of a frame's IP packet (checksum kept).
fn with_ttl(mut f: Vec<u8>, ttl: u8) -> Vec<u8> {
    Ipv4Packet::new_unchecked(&mut f[14..]).set_ttl(ttl);
    f
}

/// The IP identification of a frame's packet.
fn ident(f: &[u8]) -> u16 {
    Ipv4Packet::new_unchecked(&f[14..]).ident()
}

/// Checks the IP header checksum and a TCP/UDP checksum by full recompute.
fn assert_checksums(f: &[u8]) {
    let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
    assert!(ip.verify_checksum(), "IP header checksum");
    let l4 = ip.payload();
    match ip.protocol() {
        6 => assert!(yard_wire::tcp::TcpPacket::new_checked(l4)
            .unwrap()
            .verify_checksum(ip.src(), ip.dst())),
        17 => assert!(yard_wire::udp::UdpPacket::new_checked(l4)
            .unwrap()
            .verify_checksum(ip.src(), ip.dst())),
        1 => assert_eq!(yard_wire::checksum::checksum(l4), 0, "ICMP checksum"),
        _ => {}
    }
}

fn rule(id: u32, proto: Proto, host: u16, target: Ipv4Addr, port: u16) -> PublishRule {
    PublishRule {
        id: RuleId(id),
        proto,
        host_addr: None,
        host_ports: (host, host),
        target,
        target_ports: (port, port),
    }
}

fn flow(proto: Proto, src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16)) -> crate::flow::FlowKey {
    crate::flow::FlowKey {
        proto,
        src: src.0,
        sport: src.1,
        dst: dst.0,
        dport: dst.1,
    }
}

#[test]
fn drop_reasons_index_their_counters() {
    for (i, d) in GatewayDrop::ALL.iter().enumerate() {
        assert_eq!(d.index(), i);
    }
    let names: Vec<_> = GatewayCounters::default().drops_by_name().collect();
    assert_eq!(names.len(), GatewayDrop::COUNT);
    assert_eq!(names[0], ("gw-malformed", 0));
}

#[test]
fn arp_op_of_builder_frames() {
    // Sanity of the fixture builder the other tests rely on.
    let f = arp(ArpFrame::request(C1_MAC, C1, GW1));
    let p = yard_wire::arp::ArpPacket::new_checked(&f[14..42]).unwrap();
    assert_eq!(p.op(), ArpOp::Request);
}
