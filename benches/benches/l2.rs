//! The per-frame L2 path: a frame through ingress, learning, lookup and
//! egress of the real [`Bridge`], into ports that only count. Prints the
//! allocations per frame beside criterion's nanoseconds. The `ipv4` cases
//! carry a real IPv4/UDP packet from an open port and from a port with port
//! security (MAC, source address), so the check's cost is their difference.
//! The `ruled` cases carry UDP through a network with firewall rules: a
//! tracked flow's frames, and a new flow in every frame.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use yard_benches::{allocations_per_call, CountingAlloc};
use yard_ctl::api::NetworkSpec;
use yard_ctl::MacAddr;
use yard_switch::dataplane::bridge::security::{self, Ingress, NetGuard, PortSecurity};
use yard_switch::dataplane::bridge::Bridge;
use yard_switch::dataplane::clock::Millis;
use yard_switch::dataplane::frame::Frame;
use yard_switch::dataplane::port::memory::MemoryPort;
use yard_switch::dataplane::port::PortId;
use yard_wire::offload::Offload;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn mac(n: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0, n])
}

fn frame(dst: MacAddr, src: MacAddr, len: usize) -> Frame {
    let mut bytes = vec![0u8; len];
    bytes[..6].copy_from_slice(&dst.0);
    bytes[6..12].copy_from_slice(&src.0);
    bytes[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let mut f = Frame::new();
    f.fill(Offload::NONE, &bytes);
    f
}

/// `frame` carrying an IPv4/UDP packet from 10.0.0.1 to 10.0.0.2.
fn ipv4_frame(dst: MacAddr, src: MacAddr, len: usize) -> Frame {
    let mut bytes = vec![0u8; len];
    bytes[..6].copy_from_slice(&dst.0);
    bytes[6..12].copy_from_slice(&src.0);
    bytes[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let total = (len - 14) as u16;
    bytes[14] = 0x45;
    bytes[16..18].copy_from_slice(&total.to_be_bytes());
    bytes[22] = 64;
    bytes[23] = 17;
    bytes[26..30].copy_from_slice(&[10, 0, 0, 1]);
    bytes[30..34].copy_from_slice(&[10, 0, 0, 2]);
    let mut f = Frame::new();
    f.fill(Offload::NONE, &bytes);
    f
}

/// A network with `ports` access ports (plus a trunk when `trunk`), each
/// port's MAC already learned, and 1000 other learned addresses.
fn bridge(ports: u8, trunk: bool) -> (Bridge, Vec<PortId>) {
    let mut bridge = Bridge::new(4096);
    let mut spec = NetworkSpec::new("n");
    spec.vlan = Some(10);
    bridge.add_network(&spec).unwrap();
    let mut ids = Vec::new();
    for p in 0..ports {
        let attachment = if trunk && p == ports - 1 {
            bridge.trunk(&["n"]).unwrap()
        } else {
            bridge.access("n").unwrap()
        };
        let id = bridge
            .add_port(
                &format!("p{p}"),
                Box::new(MemoryPort::discarding()),
                attachment,
                1500,
            )
            .unwrap();
        ids.push(id);
    }
    for (i, id) in ids.iter().enumerate() {
        let mut f = frame(MacAddr::BROADCAST, mac(i as u8 + 1), 64);
        if trunk && i == ids.len() - 1 {
            f.push_vlan(10);
        }
        bridge.process(*id, &mut f, Millis(0));
    }
    for n in 0..1000u32 {
        let b = n.to_be_bytes();
        let mut f = frame(
            MacAddr::BROADCAST,
            MacAddr([0x02, 0x10, b[0], b[1], b[2], b[3]]),
            64,
        );
        bridge.process(ids[0], &mut f, Millis(0));
    }
    (bridge, ids)
}

/// An IPv4 packet of `protocol` from 10.0.0.`src` to `group`, in a frame to
/// the group's MAC.
fn to_group(src: u8, group: std::net::Ipv4Addr, protocol: u8, payload: &[u8]) -> Frame {
    use yard_wire::ipv4::{Ipv4Packet, Ipv4Repr};
    let mut bytes = yard_wire::igmp::multicast_mac(group).to_vec();
    bytes.extend_from_slice(&mac(src).0);
    bytes.extend_from_slice(&0x0800u16.to_be_bytes());
    let mut ip = [0u8; 20];
    let repr = Ipv4Repr {
        src: std::net::Ipv4Addr::new(10, 0, 0, src),
        dst: group,
        protocol,
        payload_len: payload.len(),
        ttl: 1,
        ident: 0,
        dont_frag: false,
        tos: 0,
    };
    repr.emit(&mut Ipv4Packet::new_unchecked(&mut ip[..]))
        .unwrap();
    bytes.extend_from_slice(&ip);
    bytes.extend_from_slice(payload);
    let mut f = Frame::new();
    f.fill(Offload::NONE, &bytes);
    f
}

/// `frame` from mac(1) to mac(2) carrying UDP from 10.0.0.1:`sport` to
/// 10.0.0.2:53, `len` bytes long.
fn udp_frame(sport: u16, len: usize) -> Frame {
    let mut bytes = Vec::new();
    etherparse::PacketBuilder::ethernet2(mac(1).0, mac(2).0)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(sport, 53)
        .write(&mut bytes, &vec![0u8; len.saturating_sub(42)])
        .expect("a UDP frame");
    let mut f = Frame::new();
    f.fill(Offload::NONE, &bytes);
    f
}

/// [`bridge`] with two firewall rules on its network, neither matching
/// 10.0.0.1's UDP to 10.0.0.2:53 (so every flow is allowed by default
/// after both are tried).
fn ruled_bridge() -> (Bridge, Vec<PortId>) {
    use yard_nat::flow::Proto;
    use yard_nat::rules::{Endpoint, Rule, RuleAction, RuleId};
    let (mut br, ids) = bridge(4, false);
    let metadata = yard_wire::cidr::Ipv4Cidr::host([169, 254, 169, 254].into());
    let rule = |id, proto| Rule {
        id: RuleId(id),
        from: Endpoint::Any,
        to: Endpoint::Prefix(metadata),
        proto: Some(proto),
        dports: None,
        action: RuleAction::Deny,
    };
    br.set_rules("n", vec![rule(1, Proto::Tcp), rule(2, Proto::Udp)])
        .expect("rules on n");
    (br, ids)
}

/// A network with a gateway (so the bridge is the querier and snooping
/// narrows floods) and `ports` access ports, of which port 1 joined group
/// 239.1.2.3 with an IGMPv2 report.
fn snooping_bridge(ports: u8) -> (Bridge, Vec<PortId>) {
    let mut bridge = Bridge::new(4096);
    let net = bridge.add_network(&NetworkSpec::new("n")).unwrap();
    bridge.set_gateway_mac(net, Some(mac(0xfe)));
    let ids: Vec<PortId> = (0..ports)
        .map(|p| {
            let attachment = bridge.access("n").unwrap();
            let port = Box::new(MemoryPort::discarding());
            bridge
                .add_port(&format!("p{p}"), port, attachment, 1500)
                .unwrap()
        })
        .collect();
    // Ports stop being newcomers once asked and given time to answer.
    bridge.expire(Millis(0));
    bridge.expire(Millis(10_000));
    let group = std::net::Ipv4Addr::new(239, 1, 2, 3);
    let mut igmp = [0x16, 0, 0, 0, 239, 1, 2, 3];
    let check = yard_wire::checksum::checksum(&igmp);
    igmp[2..4].copy_from_slice(&check.to_be_bytes());
    let mut report = to_group(2, group, 2, &igmp);
    bridge.process(ids[1], &mut report, Millis(10_000));
    (bridge, ids)
}

fn bench_l2(c: &mut Criterion) {
    let mut group = c.benchmark_group("l2");
    for len in [64usize, 1500] {
        group.throughput(Throughput::Elements(1));
        let (mut br, ids) = bridge(4, false);
        let mut f = frame(mac(2), mac(1), len);
        let per_frame = allocations_per_call(100_000, || {
            br.process(ids[0], &mut f, Millis(1));
        });
        println!("l2/unicast/{len}: {per_frame} allocations per frame");
        group.bench_function(BenchmarkId::new("unicast", len), |b| {
            b.iter(|| br.process(ids[0], &mut f, Millis(1)))
        });

        let (mut br, ids) = bridge(4, true);
        let mut f = frame(mac(4), mac(1), len);
        let per_frame = allocations_per_call(100_000, || {
            br.process(ids[0], &mut f, Millis(1));
        });
        println!("l2/unicast-to-trunk/{len}: {per_frame} allocations per frame");
        group.bench_function(BenchmarkId::new("unicast-to-trunk", len), |b| {
            b.iter(|| br.process(ids[0], &mut f, Millis(1)))
        });

        for secured in [false, true] {
            let (mut br, ids) = bridge(4, false);
            if secured {
                let policy = PortSecurity::new(mac(1), Some([10, 0, 0, 1].into()), &[]);
                br.set_port_security(ids[0], Some(policy));
            }
            let mut f = ipv4_frame(mac(2), mac(1), len);
            let name = if secured {
                "unicast-ipv4-secured"
            } else {
                "unicast-ipv4"
            };
            let before = br.port(ids[1]).map_or(0, |p| p.counters.tx_packets);
            let per_frame = allocations_per_call(100_000, || {
                br.process(ids[0], &mut f, Millis(1));
            });
            let sent = br.port(ids[1]).map_or(0, |p| p.counters.tx_packets) - before;
            assert!(sent >= 100_000, "{name}: the frames were not forwarded");
            println!("l2/{name}/{len}: {per_frame} allocations per frame");
            group.bench_function(BenchmarkId::new(name, len), |b| {
                b.iter(|| br.process(ids[0], &mut f, Millis(1)))
            });
        }

        // Firewall rules on the network (bridge/rules): the frames of a
        // tracked flow, and frames that each open a new flow (judged,
        // recorded until the flow table is full, then passed unrecorded).
        let (mut br, ids) = ruled_bridge();
        let mut f = udp_frame(40000, len);
        let per_frame = allocations_per_call(100_000, || {
            br.process(ids[0], &mut f, Millis(1));
        });
        println!("l2/unicast-udp-ruled/{len}: {per_frame} allocations per frame");
        group.bench_function(BenchmarkId::new("unicast-udp-ruled", len), |b| {
            b.iter(|| br.process(ids[0], &mut f, Millis(1)))
        });
        let (mut br, ids) = ruled_bridge();
        let mut sport = 0u16;
        let mut new_flow = |br: &mut Bridge| {
            sport = sport.wrapping_add(1);
            f.data_mut()[34..36].copy_from_slice(&sport.to_be_bytes());
            br.process(ids[0], &mut f, Millis(1));
        };
        let per_frame = allocations_per_call(100_000, || new_flow(&mut br));
        let sent = br.port(ids[1]).map_or(0, |p| p.counters.tx_packets);
        assert!(sent >= 100_000, "new flows were not forwarded");
        println!("l2/new-flow-ruled/{len}: {per_frame} allocations per frame");
        group.bench_function(BenchmarkId::new("new-flow-ruled", len), |b| {
            b.iter(|| new_flow(&mut br))
        });

        let (mut br, ids) = bridge(4, false);
        let mut f = frame(MacAddr::BROADCAST, mac(1), len);
        let per_frame = allocations_per_call(100_000, || {
            br.process(ids[0], &mut f, Millis(1));
        });
        println!("l2/flood-to-3/{len}: {per_frame} allocations per frame");
        group.bench_function(BenchmarkId::new("flood-to-3", len), |b| {
            b.iter(|| br.process(ids[0], &mut f, Millis(1)))
        });
    }
    group.finish();

    // Multicast with snooping: a datagram to a group one port of 64 joined
    // goes to that port alone; the decision reads the IPv4 header and looks
    // the group up once.
    let mut group = c.benchmark_group("l2-multicast");
    group.throughput(Throughput::Elements(1));
    let (mut br, ids) = snooping_bridge(64);
    let mut f = to_group(1, std::net::Ipv4Addr::new(239, 1, 2, 3), 17, &[0; 72]);
    let now = Millis(11_000);
    // The first flood sizes the bridge's reused flood list.
    br.process(ids[0], &mut f, now);
    let per_frame = allocations_per_call(100_000, || {
        br.process(ids[0], &mut f, now);
    });
    println!("l2-multicast/to-1-member-of-64: {per_frame} allocations per frame");
    group.bench_function("to-1-member-of-64", |b| {
        b.iter(|| br.process(ids[0], &mut f, now))
    });
    group.finish();
}

/// Port security's check alone: a secured port's IPv4 frame, and an open
/// port's frame looked up among 1000 MACs secured ports own.
fn bench_port_security(c: &mut Criterion) {
    let mut group = c.benchmark_group("port-security");
    group.throughput(Throughput::Elements(1));
    let policy = PortSecurity::new(mac(1), Some([10, 0, 0, 1].into()), &[]);
    let mut guard = NetGuard::default();
    for n in 0..1000u32 {
        let b = n.to_be_bytes();
        guard.own(
            PortId(n + 10),
            &[MacAddr([0x02, 0x20, b[0], b[1], b[2], b[3]])],
        );
    }
    let f = ipv4_frame(mac(2), mac(1), 64);
    let open = ipv4_frame(mac(2), mac(3), 64);
    let cases = [
        ("secured-ipv4", Ingress::Secured(&policy), &f),
        ("open-ipv4-1000-owned", Ingress::Open, &open),
    ];
    for (name, ingress, frame) in cases {
        let bytes = frame.data();
        assert!(security::check(ingress, &guard, PortId(0), bytes).is_ok());
        let per_call = allocations_per_call(100_000, || {
            let _ = security::check(ingress, &guard, PortId(0), bytes);
        });
        println!("port-security/{name}: {per_call} allocations per frame");
        group.bench_function(name, |b| {
            b.iter(|| security::check(ingress, &guard, PortId(0), std::hint::black_box(bytes)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_l2, bench_port_security);
criterion_main!(benches);
