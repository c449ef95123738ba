//! Pipeline tests: in-memory ports feed frames through the real bridge; each
//! test asserts what came out of every port and the state it left behind.

use std::sync::{Arc, Mutex};

use yard_ctl::api::NetworkSpec;
use yard_ctl::MacAddr;

use super::*;
use crate::dataplane::port::memory::{MemoryPort, MemoryQueues};
use yard_nat::gateway::IcmpErrors;
use yard_wire::offload::Offload;

mod rules;
mod security;
mod trace;

const T0: Millis = Millis(1_000);

fn mac(n: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0, n])
}

fn eth(dst: MacAddr, src: MacAddr, payload_len: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload_len);
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    f.extend((0..payload_len).map(|i| i as u8));
    f
}

fn tagged(vid: u16, untagged: &[u8]) -> Vec<u8> {
    let mut f = untagged[..12].to_vec();
    f.extend_from_slice(&[0x81, 0x00]);
    f.extend_from_slice(&vid.to_be_bytes());
    f.extend_from_slice(&untagged[12..]);
    f
}

struct Lab {
    bridge: Bridge,
    queues: Vec<(PortId, Arc<Mutex<MemoryQueues>>)>,
    frame: Frame,
}

impl Lab {
    fn new(limit: u32) -> Self {
        Lab {
            bridge: Bridge::new(limit),
            queues: Vec::new(),
            frame: Frame::new(),
        }
    }

    fn net(&mut self, name: &str, icc: bool, vlan: Option<u16>, aging: u64) {
        let mut spec = NetworkSpec::new(name);
        spec.icc = icc;
        spec.vlan = vlan;
        spec.aging_secs = aging;
        self.bridge.add_network(&spec).unwrap();
    }

    /// Network "n" (members talk to each other, untagged, entries aging
    /// after `aging` seconds) with access ports a, b and c at MTU 1500.
    fn three_ports(&mut self, aging: u64) -> (PortId, PortId, PortId) {
        self.net("n", true, None, aging);
        (
            self.access("a", "n", 1500),
            self.access("b", "n", 1500),
            self.access("c", "n", 1500),
        )
    }

    fn access(&mut self, name: &str, net: &str, mtu: u32) -> PortId {
        let attachment = self.bridge.access(net).unwrap();
        self.attach(name, attachment, mtu)
    }

    fn trunk(&mut self, name: &str, nets: &[&str]) -> PortId {
        let attachment = self.bridge.trunk(nets).unwrap();
        self.attach(name, attachment, 1500)
    }

    fn attach(&mut self, name: &str, attachment: Attachment, mtu: u32) -> PortId {
        let (port, queues) = MemoryPort::new();
        let id = self
            .bridge
            .add_port(name, Box::new(port), attachment, mtu)
            .unwrap();
        self.queues.push((id, queues));
        id
    }

    fn send(&mut self, port: PortId, bytes: &[u8], now: Millis) {
        self.frame.fill(Offload::NONE, bytes);
        self.bridge.process(port, &mut self.frame, now);
    }

    /// Frames each port sent since the last call, drained.
    fn out(&mut self, port: PortId) -> Vec<Vec<u8>> {
        let (_, q) = self.queues.iter().find(|(id, _)| *id == port).unwrap();
        q.lock()
            .unwrap()
            .outbound
            .drain(..)
            .map(|(_, b)| b)
            .collect()
    }

    fn drops(&self, port: PortId, reason: DropReason) -> u64 {
        self.bridge.port(port).unwrap().counters.drops[reason.index()]
    }
}

#[test]
fn unknown_unicast_floods_then_learning_makes_it_unicast() {
    let mut lab = Lab::new(4096);
    let (a, b, c) = lab.three_ports(300);

    let request = eth(mac(2), mac(1), 46);
    lab.send(a, &request, T0);
    assert!(lab.out(a).is_empty(), "never back to the in-port");
    assert_eq!(lab.out(b), vec![request.clone()]);
    assert_eq!(lab.out(c), vec![request]);

    let reply = eth(mac(1), mac(2), 46);
    lab.send(b, &reply, T0);
    assert_eq!(lab.out(a), vec![reply], "learned: unicast to a only");
    assert!(lab.out(c).is_empty());

    let entries = lab.bridge.fdb_entries(None, T0).unwrap();
    let pairs: Vec<_> = entries.iter().map(|e| (e.mac, e.port.as_str())).collect();
    assert_eq!(pairs, vec![(mac(1), "a"), (mac(2), "b")]);
    let stats = &lab.bridge.port_reports(Some("a")).unwrap()[0].counters;
    assert_eq!((stats.rx_packets, stats.tx_packets), (1, 1));
}

#[test]
fn broadcast_stays_inside_its_network() {
    let mut lab = Lab::new(4096);
    lab.net("red", true, None, 300);
    lab.net("blue", true, None, 300);
    let r1 = lab.access("r1", "red", 1500);
    let r2 = lab.access("r2", "red", 1500);
    let b1 = lab.access("b1", "blue", 1500);
    let bcast = eth(MacAddr::BROADCAST, mac(1), 28);
    lab.send(r1, &bcast, T0);
    assert_eq!(lab.out(r2).len(), 1);
    assert!(lab.out(b1).is_empty(), "networks are isolated");
    // A unicast to an address learned in another network floods in its own.
    lab.send(b1, &eth(mac(5), mac(9), 28), T0);
    lab.send(r1, &eth(mac(9), mac(1), 28), T0);
    assert!(lab.out(b1).is_empty());
    assert_eq!(lab.out(r2).len(), 1);
}

#[test]
fn entries_age_out_on_the_injected_clock() {
    let mut lab = Lab::new(4096);
    let (a, b, c) = lab.three_ports(10);
    lab.send(b, &eth(MacAddr::BROADCAST, mac(2), 28), T0);
    lab.out(a);
    lab.out(c);
    lab.send(a, &eth(mac(2), mac(1), 28), Millis(T0.0 + 9_999));
    assert_eq!((lab.out(b).len(), lab.out(c).len()), (1, 0), "still known");
    lab.send(a, &eth(mac(2), mac(1), 28), Millis(T0.0 + 10_000));
    assert_eq!(
        (lab.out(b).len(), lab.out(c).len()),
        (1, 1),
        "aged: flooded"
    );
    assert_eq!(lab.bridge.expire(Millis(T0.0 + 10_000)), 1);
}

#[test]
fn moves_are_counted() {
    let mut lab = Lab::new(4096);
    lab.net("n", true, None, 300);
    let (a, b) = (lab.access("a", "n", 1500), lab.access("b", "n", 1500));
    lab.send(a, &eth(MacAddr::BROADCAST, mac(1), 28), T0);
    lab.send(b, &eth(MacAddr::BROADCAST, mac(1), 28), T0);
    let id = lab.bridge.net_id("n").unwrap();
    assert_eq!(lab.bridge.network(id).unwrap().fdb.mac_moves, 1);
    assert_eq!(lab.bridge.fdb_entries(Some("n"), T0).unwrap()[0].port, "b");
}

#[test]
fn no_icc_isolates_access_ports_but_not_trunks() {
    let mut lab = Lab::new(4096);
    lab.net("iso", false, Some(30), 300);
    let (a, b) = (lab.access("a", "iso", 1500), lab.access("b", "iso", 1500));
    let t = lab.trunk("t", &["iso"]);
    lab.send(a, &eth(MacAddr::BROADCAST, mac(1), 28), T0);
    assert!(lab.out(b).is_empty(), "no flooding between isolated ports");
    assert_eq!(lab.out(t).len(), 1, "the trunk still hears it");
    lab.send(b, &eth(mac(1), mac(2), 28), T0);
    assert!(lab.out(a).is_empty());
    assert_eq!(lab.drops(b, DropReason::IccDisabled), 1);
    // The trunk reaches both.
    lab.send(t, &tagged(30, &eth(mac(1), mac(3), 28)), T0);
    assert_eq!(lab.out(a).len(), 1);
}

/// A TCP segment from `src` to `dst` (MACs) between two ports of 10.0.0.0/24.
fn tcp_frame(dst: MacAddr, src: MacAddr, sport: u16, dport: u16) -> Vec<u8> {
    let mut bytes = Vec::new();
    etherparse::PacketBuilder::ethernet2(src.0, dst.0)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(sport, dport, 1, 1024)
        .write(&mut bytes, b"x")
        .unwrap();
    bytes
}

#[test]
fn a_link_opens_an_isolated_pair_on_its_ports_only() {
    let mut lab = Lab::new(4096);
    lab.net("iso", false, None, 300);
    let (a, b, c) = (
        lab.access("a", "iso", 1500),
        lab.access("b", "iso", 1500),
        lab.access("c", "iso", 1500),
    );
    let links = [NamedLink {
        a: "a".into(),
        b: "b".into(),
        ports: vec![(6, 3306)],
    }];
    lab.bridge.set_links("iso", &links).unwrap();
    // ARP broadcast from a reaches its linked b, not c.
    let arp = |src: MacAddr| {
        let mut f = eth(MacAddr::BROADCAST, src, 28);
        f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        f
    };
    lab.send(a, &arp(mac(1)), T0);
    assert_eq!(lab.out(b).len(), 1, "b hears a's ARP");
    assert!(lab.out(c).is_empty(), "c does not");
    lab.send(b, &arp(mac(2)), T0);
    lab.send(c, &arp(mac(3)), T0);
    for port in [a, b, c] {
        lab.out(port);
    }
    // a reaches b:3306 and b answers; a:22 and c stay shut.
    lab.send(a, &tcp_frame(mac(2), mac(1), 40000, 3306), T0);
    assert_eq!(lab.out(b).len(), 1, "a reaches b on 3306");
    lab.send(b, &tcp_frame(mac(1), mac(2), 3306, 40000), T0);
    assert_eq!(lab.out(a).len(), 1, "b's answer reaches a");
    lab.send(a, &tcp_frame(mac(2), mac(1), 40000, 22), T0);
    lab.send(b, &tcp_frame(mac(1), mac(2), 40001, 3306), T0);
    lab.send(a, &tcp_frame(mac(3), mac(1), 40000, 3306), T0);
    assert!(lab.out(b).is_empty() && lab.out(a).is_empty() && lab.out(c).is_empty());
    assert_eq!(lab.drops(a, DropReason::IccDisabled), 2);
    assert_eq!(lab.drops(b, DropReason::IccDisabled), 1);
    // Without the link the pair is isolated again.
    lab.bridge.set_links("iso", &[]).unwrap();
    lab.send(a, &tcp_frame(mac(2), mac(1), 40000, 3306), T0);
    assert!(lab.out(b).is_empty());
}

#[test]
fn trunk_tags_and_untags_by_network() {
    let mut lab = Lab::new(4096);
    lab.net("ten", true, Some(10), 300);
    lab.net("twenty", true, Some(20), 300);
    let a10 = lab.access("a10", "ten", 1500);
    let a20 = lab.access("a20", "twenty", 1500);
    let t = lab.trunk("t", &["ten", "twenty"]);

    let from_a10 = eth(MacAddr::BROADCAST, mac(1), 28);
    lab.send(a10, &from_a10, T0);
    assert_eq!(lab.out(t), vec![tagged(10, &from_a10)]);
    assert!(lab.out(a20).is_empty());

    let from_trunk = eth(mac(1), mac(7), 28);
    lab.send(t, &tagged(10, &from_trunk), T0);
    assert_eq!(
        lab.out(a10),
        vec![from_trunk],
        "untagged toward the access port"
    );

    lab.send(t, &tagged(20, &eth(MacAddr::BROADCAST, mac(8), 28)), T0);
    assert_eq!(lab.out(a20).len(), 1);
    assert!(lab.out(a10).is_empty());

    lab.send(t, &tagged(99, &eth(MacAddr::BROADCAST, mac(8), 28)), T0);
    lab.send(t, &eth(MacAddr::BROADCAST, mac(8), 28), T0);
    lab.send(a10, &tagged(20, &eth(MacAddr::BROADCAST, mac(1), 28)), T0);
    let mut qinq = tagged(10, &eth(MacAddr::BROADCAST, mac(1), 28));
    qinq[12..14].copy_from_slice(&[0x88, 0xa8]);
    lab.send(a10, &qinq, T0);
    lab.send(t, &qinq, T0);
    assert_eq!(lab.drops(t, DropReason::VlanNotAllowed), 2);
    assert_eq!(lab.drops(t, DropReason::UntaggedOnTrunk), 1);
    assert_eq!(
        lab.drops(a10, DropReason::TaggedOnAccess),
        2,
        "802.1Q and 802.1ad"
    );
    assert!(lab.out(a20).is_empty() && lab.out(t).is_empty());
}

#[test]
fn trunk_needs_vlan_ids() {
    let mut lab = Lab::new(4096);
    lab.net("plain", true, None, 300);
    assert_eq!(
        lab.bridge.trunk(&["plain"]),
        Err(BridgeError::NoVlan("plain".into()))
    );
}

#[test]
fn per_port_learning_limit() {
    let mut lab = Lab::new(2);
    lab.net("n", true, None, 300);
    let (a, b) = (lab.access("a", "n", 1500), lab.access("b", "n", 1500));
    for n in 1..=5 {
        lab.send(a, &eth(MacAddr::BROADCAST, mac(n), 28), T0);
    }
    assert_eq!(lab.out(b).len(), 5, "frames still flow past the limit");
    assert_eq!(lab.bridge.fdb_entries(Some("n"), T0).unwrap().len(), 2);
    let id = lab.bridge.net_id("n").unwrap();
    assert_eq!(lab.bridge.network(id).unwrap().fdb.limit_hits, 3);
}

#[test]
fn static_entries_win_over_learning() {
    let mut lab = Lab::new(4096);
    let (a, b, c) = lab.three_ports(300);
    lab.bridge.fdb_add("n", mac(9), "c").unwrap();
    lab.send(b, &eth(MacAddr::BROADCAST, mac(9), 28), T0); // spoofed from b
    lab.out(a);
    lab.out(c);
    lab.send(a, &eth(mac(9), mac(1), 28), T0);
    assert_eq!(lab.out(c).len(), 1, "static entry is not moved by learning");
    assert!(lab.out(b).is_empty());
    lab.bridge.fdb_flush(None).unwrap();
    let entries = lab.bridge.fdb_entries(None, T0).unwrap();
    assert_eq!(entries.len(), 1);
    assert!(entries[0].is_static && entries[0].age_secs.is_none());
    assert_eq!(
        lab.bridge.fdb_add("n", mac(3), "nope"),
        Err(BridgeError::NoPort("nope".into()))
    );
}

#[test]
fn mtu_is_enforced_and_jumbo_frames_pass() {
    let mut lab = Lab::new(4096);
    lab.net("n", true, None, 300);
    let j1 = lab.access("j1", "n", 9000);
    let j2 = lab.access("j2", "n", 9000);
    let small = lab.access("small", "n", 1500);
    let jumbo = eth(MacAddr::BROADCAST, mac(1), 9000);
    lab.send(j1, &jumbo, T0);
    assert_eq!(lab.out(j2), vec![jumbo]);
    assert!(lab.out(small).is_empty());
    assert_eq!(lab.drops(small, DropReason::TooBig), 1);
    lab.send(small, &eth(MacAddr::BROADCAST, mac(2), 1501), T0);
    assert_eq!(lab.drops(small, DropReason::TooBig), 2, "ingress over MTU");
    assert!(lab.out(j1).is_empty());
}

#[test]
fn bad_frames_are_dropped_with_reasons() {
    let mut lab = Lab::new(4096);
    lab.net("n", true, None, 300);
    let (a, b) = (lab.access("a", "n", 1500), lab.access("b", "n", 1500));
    lab.send(a, &[0u8; 10], T0);
    lab.send(a, &eth(mac(2), MacAddr::BROADCAST, 28), T0);
    lab.send(a, &eth(mac(2), MacAddr([0; 6]), 28), T0);
    assert!(lab.out(b).is_empty());
    assert_eq!(lab.drops(a, DropReason::Malformed), 1);
    assert_eq!(lab.drops(a, DropReason::BadSourceMac), 2);
    lab.send(a, &eth(MacAddr::BROADCAST, mac(1), 28), T0);
    lab.send(a, &eth(mac(1), mac(3), 28), T0);
    assert_eq!(lab.drops(a, DropReason::DestinationIsSource), 1);
}

#[test]
fn a_closed_port_keeps_its_addresses_and_counts_what_is_sent_to_it() {
    let mut lab = Lab::new(4096);
    let (a, b, c) = lab.three_ports(300);
    lab.send(a, &eth(MacAddr::BROADCAST, mac(1), 28), T0);
    lab.out(b);
    lab.out(c);
    lab.bridge.close_port("a").unwrap();

    // Frames to a's MAC still go to a — where they are dropped and
    // counted — rather than flooding to everyone.
    lab.send(b, &eth(mac(1), mac(2), 46), T0);
    lab.send(b, &eth(mac(1), mac(2), 46), T0);
    assert!(lab.out(c).is_empty(), "not flooded");
    assert_eq!(lab.drops(a, DropReason::PortDown), 2);
    let entries = lab.bridge.fdb_entries(None, T0).unwrap();
    assert!(entries.iter().any(|e| e.mac == mac(1) && e.port == "a"));
    // It can still be removed.
    lab.bridge.remove_port("a").unwrap();
}

#[test]
fn removing_a_port_forgets_it_and_frees_the_network() {
    let mut lab = Lab::new(4096);
    lab.net("n", true, None, 300);
    let (a, b) = (lab.access("a", "n", 1500), lab.access("b", "n", 1500));
    lab.send(a, &eth(MacAddr::BROADCAST, mac(1), 28), T0);
    assert_eq!(
        lab.bridge.remove_network("n"),
        Err(BridgeError::InUse("n".into()))
    );
    lab.bridge.remove_port("a").unwrap();
    assert!(lab.bridge.fdb_entries(None, T0).unwrap().is_empty());
    lab.out(b);
    lab.send(b, &eth(mac(1), mac(2), 28), T0);
    assert!(lab.out(b).is_empty());
    lab.bridge.remove_port("b").unwrap();
    lab.bridge.remove_network("n").unwrap();
    assert!(lab.bridge.net_id("n").is_err());
}

#[test]
fn vnet_header_travels_with_the_frame() {
    let mut lab = Lab::new(4096);
    lab.net("n", true, Some(5), 300);
    let a = lab.access("a", "n", 1500);
    let t = lab.trunk("t", &["n"]);
    let vnet = Offload {
        flags: 1,
        gso_type: 1,
        hdr_len: 66,
        gso_size: 1448,
        csum_start: 34,
        csum_offset: 16,
    };
    lab.frame
        .fill(vnet, &eth(MacAddr::BROADCAST, mac(1), 20_000));
    lab.bridge.process(a, &mut lab.frame, T0);
    let (_, q) = lab.queues.iter().find(|(id, _)| *id == t).unwrap();
    let sent = q.lock().unwrap().outbound.pop().unwrap();
    assert_eq!(sent.0.gso_size, 1448, "GSO frame passes despite its size");
    assert_eq!(sent.0.csum_start, 38, "offsets follow the pushed tag");
    assert_eq!(sent.0.hdr_len, 70);
}

/// An IPv4/ICMP echo frame of `ip_len` bytes of IP packet, DF as given.
fn ipv4_echo(dst: MacAddr, src: MacAddr, ip_len: usize, dont_fragment: bool) -> Vec<u8> {
    let payload = vec![0x5a; ip_len - 20 - 8];
    let builder = etherparse::PacketBuilder::ethernet2(src.0, dst.0)
        .ipv4([172, 32, 0, 2], [172, 32, 0, 3], 64)
        .icmpv4_echo_request(1, 1);
    let mut bytes = Vec::new();
    builder.write(&mut bytes, &payload).unwrap();
    if !dont_fragment {
        bytes[20] &= !0x40;
        let sum = yard_wire::checksum::checksum(&{
            let mut h = bytes[14..34].to_vec();
            h[10] = 0;
            h[11] = 0;
            h
        });
        bytes[24..26].copy_from_slice(&sum.to_be_bytes());
    }
    bytes
}

/// Network "ov" with access port c1 (MTU 1500) and a tunnel t (overlay
/// MTU 1458) behind which mac 3 has been learned; returns (c1, t).
fn overlay_with_tunnel(lab: &mut Lab) -> (PortId, PortId) {
    lab.net("ov", true, None, 300);
    let c1 = lab.access("c1", "ov", 1500);
    let t = lab.access("t", "ov", 1458);
    lab.bridge.set_tunnel(t, 1458);
    // Learn the far MAC behind the tunnel.
    lab.send(t, &eth(MacAddr::BROADCAST, mac(3), 28), T0);
    lab.out(c1);
    (c1, t)
}

#[test]
fn tunnels_answer_df_packets_over_the_overlay_mtu_and_carry_the_rest() {
    let mut lab = Lab::new(4096);
    let (c1, t) = overlay_with_tunnel(&mut lab);

    let big_df = ipv4_echo(mac(3), mac(2), 1500, true);
    lab.send(c1, &big_df, T0);
    assert!(
        lab.out(t).is_empty(),
        "a DF packet over the overlay MTU does not enter the tunnel"
    );
    assert_eq!(lab.drops(t, DropReason::TooBig), 1);
    let replies = lab.out(c1);
    assert_eq!(replies.len(), 1, "fragmentation-needed goes back, to c1");
    let reply = &replies[0];
    assert_eq!(&reply[..6], &mac(2).0, "to the sender's MAC");
    let ip = &reply[14..];
    assert_eq!(
        (ip[20], ip[21]),
        (3, 4),
        "ICMP destination unreachable, fragmentation needed"
    );
    assert_eq!(u16::from_be_bytes([ip[26], ip[27]]), 1458, "next-hop MTU");
    assert_eq!(
        &ip[12..16],
        &[172, 32, 0, 3],
        "from the packet's destination"
    );

    let big = ipv4_echo(mac(3), mac(2), 1500, false);
    lab.send(c1, &big, T0);
    assert_eq!(lab.out(t).len(), 1, "a non-DF packet is carried");
    let jumbo_in = ipv4_echo(mac(2), mac(3), 3000, false);
    lab.send(t, &jumbo_in, T0);
    assert!(lab.out(c1).is_empty(), "over c1's MTU: dropped at egress");
    let fits = ipv4_echo(mac(2), mac(3), 1500, false);
    lab.send(t, &fits, T0);
    assert_eq!(
        lab.out(c1).len(),
        1,
        "a tunnel takes frames over its overlay MTU"
    );
}

#[test]
fn fragmentation_needed_from_the_bridge_counts_against_the_shared_icmp_rate_limit() {
    let mut lab = Lab::new(4096);
    let limit = Arc::new(IcmpErrors::new());
    lab.bridge.share_icmp_errors(limit.clone());
    let (c1, t) = overlay_with_tunnel(&mut lab);

    // 60 DF packets too big for the tunnel at once: a burst of 50 is
    // answered, 10 are not (gw-icmp-errors-limited), all are dropped.
    let big_df = ipv4_echo(mac(3), mac(2), 1500, true);
    for _ in 0..60 {
        lab.send(c1, &big_df, T0);
    }
    assert_eq!(lab.drops(t, DropReason::TooBig), 60);
    assert_eq!(lab.out(c1).len(), 50);
    assert_eq!(limit.limited(), 10);
    // The gateway sharing the limit has no token left either.
    assert!(!limit.admit(T0.0));
    // 5 ms later, 5 more answers.
    for _ in 0..10 {
        lab.send(c1, &big_df, Millis(T0.0 + 5));
    }
    assert_eq!(lab.out(c1).len(), 5);
}
