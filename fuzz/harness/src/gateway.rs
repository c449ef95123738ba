//! The `gateway` target: a sequence of frames into one `yard_nat` gateway,
//! verdicts and made frames out.
//!
//! The lab (fixed, so every run of an input does the same): network 1
//! ([`NET1_SUBNET`], masquerade) with container [`C1`], network 2
//! ([`NET2_SUBNET`], `--internal`) with [`C2`], the uplink [`UPLINK`] whose
//! router is [`ROUTER`], TCP port 8080 published to C1:80 and UDP 5353 to
//! C1:53. The neighbours are known before the input starts (each asked
//! for its gateway's MAC), and SNAT ports come from a fixed seed.
//!
//! Input: records, each a control byte, an optional 10-byte virtio-net
//! header and a frame (16-bit length, then the bytes). The control byte:
//! bits 0–1 the side the frame arrives on (network 1, network 2, the
//! uplink, or a network the gateway does not serve); bit 2 "fix up" — the
//! destination MAC becomes the gateway's on that side and a well-formed
//! IPv4 header gets its checksum filled, so the fuzzer reaches past the
//! first checks; bits 3–4 how far the clock moves first (0, 10 ms, 1.5 s,
//! 200 s, the last two also running the timers); bit 5 an offload header
//! follows. Besides "no panic": a frame sent on is no longer than the
//! buffer, goes to a side that exists and, when IPv4, carries a valid
//! header checksum, and a valid TCP, UDP or ICMP checksum stays valid
//! through the rewrites (plain frames, not fragments); every frame the
//! gateway makes is an Ethernet frame.

use std::net::Ipv4Addr;

use yard_nat::conntrack::{Config, Conntrack, RuleId};
use yard_nat::flow::Proto;
use yard_nat::gateway::{Action, Gateway, NetConfig, PublishRule, Side, UplinkConfig};
use yard_nat::mapping::Mapping;
use yard_wire::arp::ArpFrame;
use yard_wire::ethernet::{self, ethertype, EthernetFrame};
use yard_wire::icmp::IcmpPacket;
use yard_wire::ip::protocol;
use yard_wire::ipv4::Ipv4Packet;
use yard_wire::offload::Offload;
use yard_wire::tcp::TcpPacket;
use yard_wire::udp::UdpPacket;

use crate::input::{fix_up, Input};

/// Network 1's subnet.
pub const NET1_SUBNET: (Ipv4Addr, u8) = (Ipv4Addr::new(172, 30, 0, 0), 16);
/// Network 1's gateway address.
pub const GW1: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 1);
/// Network 1's gateway MAC.
pub const GW1_MAC: [u8; 6] = [0x02, 0x42, 0, 0, 0x01, 0x01];
/// A container on network 1 (the published ports' target).
pub const C1: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 2);
/// C1's MAC.
pub const C1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x02];
/// Network 2's subnet (`--internal`).
pub const NET2_SUBNET: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 2, 0, 0), 24);
/// Network 2's gateway address.
pub const GW2: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 1);
/// Network 2's gateway MAC.
pub const GW2_MAC: [u8; 6] = [0x02, 0x42, 0, 0, 0x02, 0x01];
/// A container on network 2.
pub const C2: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 5);
/// C2's MAC.
pub const C2_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x05];
/// The uplink's address.
pub const UPLINK: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
/// The uplink's MAC.
pub const UPLINK_MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x10];
/// The uplink's router.
pub const ROUTER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The router's MAC.
pub const ROUTER_MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x01];
/// A server on the Internet.
pub const SERVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
/// The published TCP port on the uplink address (to C1:80).
pub const PUBLISHED_TCP: u16 = 8080;
/// The published UDP port on the uplink address (to C1:53).
pub const PUBLISHED_UDP: u16 = 5353;

/// The control byte's bits (see the module documentation).
pub mod control {
    pub use crate::input::control::*;
    /// Mask of the side.
    pub const SIDE: u8 = 0b11;
}

/// The side and gateway MAC the two side bits pick.
fn side_of(bits: u8) -> (Side, [u8; 6]) {
    match bits & control::SIDE {
        0 => (Side::Net(1), GW1_MAC),
        1 => (Side::Net(2), GW2_MAC),
        2 => (Side::Uplink, UPLINK_MAC),
        _ => (Side::Net(7), [0x02, 0x42, 0, 0, 0x07, 0x01]),
    }
}

/// The lab gateway with its neighbours known and its counters as they
/// are after learning them.
pub fn lab() -> Gateway {
    let config = Config::default();
    let mut gw = Gateway::new(config);
    *gw.conntrack_mut() = Conntrack::with_mapping(config, Mapping::with_seed(1));
    let net = |id, subnet, gateway, mac, internal: bool| NetConfig {
        id,
        subnet,
        gateway,
        mac,
        masquerade: !internal,
        internal,
        // The internal network also keeps its hosts apart, so both ways
        // through the icc check are fuzzed.
        icc: !internal,
        host_loopback: None,
    };
    gw.set_network(net(1, NET1_SUBNET, GW1, GW1_MAC, false));
    gw.set_network(net(2, NET2_SUBNET, GW2, GW2_MAC, true));
    gw.set_uplink(Some(UplinkConfig {
        addr: (UPLINK, 24),
        mac: UPLINK_MAC,
        gateway: Some(ROUTER),
    }));
    for (id, proto, host, target) in [
        (1, Proto::Tcp, PUBLISHED_TCP, 80),
        (2, Proto::Udp, PUBLISHED_UDP, 53),
    ] {
        gw.add_publish(PublishRule {
            id: RuleId(id),
            proto,
            host_addr: None,
            host_ports: (host, host),
            target: C1,
            target_ports: (target, target),
        })
        .expect("the lab's rules do not overlap");
    }
    for (side, ip, mac, target) in [
        (Side::Net(1), C1, C1_MAC, GW1),
        (Side::Net(2), C2, C2_MAC, GW2),
        (Side::Uplink, ROUTER, ROUTER_MAC, UPLINK),
    ] {
        let mut frame = [0u8; 60];
        let n = ArpFrame::request(mac, ip, target)
            .emit(&mut frame)
            .expect("60 bytes hold an ARP frame");
        let action = gw.handle(side, &mut frame[..n], Offload::NONE, 0);
        assert!(
            matches!(action, Action::Send { .. }),
            "the lab's ARP: {action:?}"
        );
    }
    while gw.next_outbox().is_some() {}
    gw
}

/// Runs one input (see the module documentation for its layout).
pub fn run(data: &[u8]) {
    let mut gw = lab();
    let mut input = Input::new(data);
    let mut now = 0u64;
    let mut frame = Vec::new();
    while let Some(record) = input.record() {
        match record.clock_step() {
            0 => {}
            1 => now += 10,
            2 => {
                now += 1_500;
                gw.tick(now);
            }
            _ => {
                now += 200_000;
                gw.tick(now);
            }
        }
        let (side, mac) = side_of(record.bits);
        let offload = record.offload;
        frame.clear();
        frame.extend_from_slice(record.frame);
        if record.fix_up() {
            fix_up(&mut frame, mac);
        }
        let transport_valid =
            offload == Offload::NONE && transport_checksum_valid(&frame) == Some(true);
        let action = gw.handle(side, &mut frame, offload, now);
        if let Action::Send { side, len } = action {
            if transport_valid {
                assert_eq!(
                    transport_checksum_valid(&frame[..len]),
                    Some(true),
                    "a valid transport checksum broke on the way through"
                );
            }
            assert!(
                len <= frame.len(),
                "Send of {len} bytes from a {}-byte buffer",
                frame.len()
            );
            assert!(
                matches!(side, Side::Net(1) | Side::Net(2) | Side::Uplink),
                "sent to {side:?}, which does not exist"
            );
            check_sent(&frame[..len]);
        }
        while let Some(out) = gw.next_outbox() {
            assert!(
                EthernetFrame::new_checked(&out.bytes[..]).is_ok(),
                "the gateway made a {}-byte frame",
                out.bytes.len()
            );
        }
    }
    let counters = gw.counters();
    let _ = counters.drops_by_name().count();
}

/// Whether the TCP, UDP (with a checksum) or ICMP checksum of an untagged,
/// unfragmented IPv4 packet verifies; `None` for anything else.
fn transport_checksum_valid(frame: &[u8]) -> Option<bool> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != ethertype::IPV4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.is_fragment() {
        return None;
    }
    let (src, dst, l4) = (ip.src(), ip.dst(), ip.payload());
    match ip.protocol() {
        protocol::TCP => Some(TcpPacket::new_checked(l4).ok()?.verify_checksum(src, dst)),
        protocol::UDP => {
            let udp = UdpPacket::new_checked(l4).ok()?;
            (udp.checksum() != 0).then(|| udp.verify_checksum(src, dst))
        }
        protocol::ICMP => Some(IcmpPacket::new_checked(l4).ok()?.verify_checksum()),
        _ => None,
    }
}

/// A routed IPv4 packet leaves with a header checksum that verifies.
fn check_sent(frame: &[u8]) {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        panic!(
            "sent a {}-byte frame, shorter than an Ethernet header",
            frame.len()
        );
    };
    if eth.ethertype() == ethertype::IPV4 {
        let ip = Ipv4Packet::new_checked(&frame[ethernet::HEADER_LEN..])
            .expect("a routed IPv4 packet reads back");
        assert!(ip.verify_checksum(), "routed IPv4 header checksum");
    }
}
