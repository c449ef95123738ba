//! The gateway's per-packet cost: an established TCP flow through SNAT (one
//! conntrack lookup, an in-place rewrite with incremental checksums, TTL and
//! Ethernet rewrite) with 1k, 100k and 1M other connections in the table —
//! it should stay flat — and the cost of setting up a new flow (rule walk,
//! port allocation, insert). Prints allocations per packet beside the time.
//! Also the cost of one `yardctl trace` through the gateway
//! (`Gateway::trace`: a copy of the gateway, its table included) with 1k
//! and 100k connections in the table — slow path, paid once per trace.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::net::Ipv4Addr;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use etherparse::PacketBuilder;
use yard_benches::{allocations_per_call, CountingAlloc};
use yard_nat::conntrack::Config;
use yard_nat::gateway::{Action, Gateway, NetConfig, Side, UplinkConfig};
use yard_wire::offload::Offload;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const GW_MAC: [u8; 6] = [0x02, 0x42, 0, 0, 0, 1];
const UP_MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x10];
const ROUTER_MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x01];
const ROUTER: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 7);

fn container(n: u32) -> Ipv4Addr {
    // 172.30.0.0/16 less network and gateway addresses.
    Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 30, 0, 2)) + n % 65_000)
}

fn server(n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(SERVER) + n)
}

fn tcp_frame(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, syn: bool, payload: usize) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2([0x02, 0, 0, 0, 0, 2], GW_MAC)
        .ipv4(src.octets(), dst.octets(), 64)
        .tcp(sport, 80, 1000, 64_000);
    if syn {
        b = b.syn();
    } else {
        b = b.ack(1);
    }
    let body = vec![0u8; payload];
    let mut out = Vec::with_capacity(b.size(payload));
    b.write(&mut out, &body).expect("frame builds");
    out
}

/// A gateway with one masquerading network, an uplink whose router is
/// resolved, and `flows` SNAT'd connections already in the table.
fn gateway_with(flows: u32) -> Gateway {
    let config = Config {
        max_entries: (flows as usize + 16).max(1024),
        ..Config::default()
    };
    let mut gw = Gateway::new(config);
    gw.set_network(NetConfig {
        id: 1,
        subnet: (Ipv4Addr::new(172, 30, 0, 0), 16),
        gateway: Ipv4Addr::new(172, 30, 0, 1),
        mac: GW_MAC,
        masquerade: true,
        internal: false,
        icc: true,
        host_loopback: None,
    });
    gw.set_uplink(Some(UplinkConfig {
        addr: (Ipv4Addr::new(10, 1, 0, 2), 24),
        mac: UP_MAC,
        gateway: Some(ROUTER),
    }));
    // Resolve the router: the first packet is held and an ARP request goes
    // out; the router's reply releases it.
    let mut first = tcp_frame(container(0), 1024, SERVER, true, 0);
    gw.handle(Side::Net(1), &mut first, Offload::NONE, 0);
    while gw.next_outbox().is_some() {}
    // ARP reply from the router (Ethernet/IPv4, 42 bytes).
    let mut reply = Vec::with_capacity(42);
    reply.extend_from_slice(&UP_MAC);
    reply.extend_from_slice(&ROUTER_MAC);
    reply.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 2]);
    reply.extend_from_slice(&ROUTER_MAC);
    reply.extend_from_slice(&ROUTER.octets());
    reply.extend_from_slice(&UP_MAC);
    reply.extend_from_slice(&[10, 1, 0, 2]);
    gw.handle(Side::Uplink, &mut reply, Offload::NONE, 0);
    while gw.next_outbox().is_some() {}
    // 1000 inside endpoints, each talking to many servers: with
    // endpoint-independent mapping they share 1000 external ports, as real
    // clients do (one address has only 64k ports to map endpoints to).
    for n in 1..flows {
        let mut syn = tcp_frame(container(n % 1000), 1024, server(n / 1000), true, 0);
        gw.handle(Side::Net(1), &mut syn, Offload::NONE, 0);
    }
    gw
}

fn bench_gateway(c: &mut Criterion) {
    let mut group = c.benchmark_group("gateway");
    for flows in [1_000u32, 100_000, 1_000_000] {
        let mut gw = gateway_with(flows);
        // The measured flow: established by its SYN, then data packets.
        let src = Ipv4Addr::new(172, 30, 255, 200);
        let mut syn = tcp_frame(src, 50_000, SERVER, true, 0);
        assert!(matches!(
            gw.handle(Side::Net(1), &mut syn, Offload::NONE, 1),
            Action::Send { .. }
        ));
        let template = tcp_frame(src, 50_000, SERVER, false, 1400);
        let mut frame = template.clone();
        let per_packet = allocations_per_call(10_000, || {
            frame.copy_from_slice(&template);
            gw.handle(Side::Net(1), &mut frame, Offload::NONE, 2);
        });
        println!(
            "gateway/established-snat/{flows}: {per_packet} allocations per packet, {} entries",
            gw.conntrack().len()
        );
        group.bench_function(BenchmarkId::new("established-snat", flows), |b| {
            b.iter(|| {
                frame[..54].copy_from_slice(&template[..54]);
                gw.handle(Side::Net(1), &mut frame, Offload::NONE, 2)
            })
        });
    }
    group.sample_size(10);
    for flows in [1_000u32, 100_000] {
        let gw = gateway_with(flows);
        let syn = tcp_frame(Ipv4Addr::new(172, 30, 255, 201), 50_001, SERVER, true, 0);
        group.bench_function(BenchmarkId::new("trace-new-flow", flows), |b| {
            b.iter(|| gw.trace(Side::Net(1), &syn, Offload::NONE, 2))
        });
    }
    group.sample_size(100);
    let mut gw = gateway_with(1_000);
    gw.conntrack_mut().set_max_entries(2_000_000);
    let mut n = 0u32;
    group.bench_function("new-flow-snat", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            let mut syn = tcp_frame(container(n % 1000), 2000, server(n), true, 0);
            gw.handle(Side::Net(1), &mut syn, Offload::NONE, 3)
        })
    });
    group.finish();
}

criterion_group!(benches, bench_gateway);
criterion_main!(benches);
