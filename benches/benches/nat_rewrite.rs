//! The NAT per-packet path of `yard-nat`: `rewrite_src` (SNAT with
//! incremental checksum updates) of a 64-byte and a 1500-byte TCP packet —
//! the cost should not depend on the size — and `flow_of` (classification
//! for conntrack). Prints allocations per call beside criterion's
//! nanoseconds; the figure must be 0.

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};
use yard_benches::{allocations_per_call, CountingAlloc};
use yard_nat::classify::flow_of;
use yard_nat::rewrite::rewrite_src;
use yard_wire::checksum::L4Checksum;
use yard_wire::ipv4::Ipv4Packet;
use yard_wire::tcp::{TcpFlags, TcpPacket};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const INSIDE: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 2);
const PUBLIC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 5);

/// An IPv4 TCP ACK of `len` bytes in total, checksums filled.
fn tcp_packet(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    for (i, b) in v.iter_mut().enumerate().skip(40) {
        *b = i as u8;
    }
    let mut ip = Ipv4Packet::new_unchecked(&mut v[..]);
    ip.set_version_ihl(5);
    ip.set_total_len(len as u16);
    ip.set_flags_frag(true, false, 0);
    ip.as_bytes_mut()[8] = 64;
    ip.set_protocol(6);
    ip.set_src_raw(INSIDE);
    ip.set_dst_raw(PEER);
    ip.fill_checksum();
    let mut tcp = TcpPacket::new_unchecked(&mut v[20..]);
    tcp.set_src_port(40000);
    tcp.set_dst_port(443);
    tcp.set_seq(1);
    tcp.set_ack(1);
    tcp.set_flags(TcpFlags::ACK);
    v[32] = 5 << 4;
    TcpPacket::new_unchecked(&mut v[20..]).fill_checksum(INSIDE, PEER);
    v
}

fn bench_rewrite(c: &mut Criterion) {
    let mut group = c.benchmark_group("nat_rewrite_src");
    group.throughput(Throughput::Elements(1));
    for len in [64usize, 1500] {
        let mut pkt = tcp_packet(len);
        // Alternate between two translations so every call changes the
        // address and the port (an unchanged port skips its update).
        let mut flip = false;
        let mut step = |pkt: &mut [u8]| {
            flip = !flip;
            let (addr, port) = if flip {
                (PUBLIC, 61000)
            } else {
                (INSIDE, 40000)
            };
            black_box(rewrite_src(black_box(pkt), addr, port, L4Checksum::Full).unwrap());
        };
        let allocs = allocations_per_call(100_000, || step(&mut pkt));
        println!("nat_rewrite_src/{len}: {allocs} allocations per packet");
        group.bench_with_input(BenchmarkId::from_parameter(len), &len, |b, _| {
            b.iter(|| step(&mut pkt))
        });
    }
    group.finish();
}

fn bench_flow_of(c: &mut Criterion) {
    let mut group = c.benchmark_group("nat_flow_of");
    group.throughput(Throughput::Elements(1));
    let pkt = tcp_packet(64);
    let allocs = allocations_per_call(100_000, || {
        black_box(flow_of(black_box(&pkt)).unwrap());
    });
    println!("nat_flow_of/tcp64: {allocs} allocations per packet");
    group.bench_function("tcp64", |b| b.iter(|| flow_of(black_box(&pkt)).unwrap()));
    group.finish();
}

// criterion_group! defines an undocumented `pub fn benches`.
#[allow(missing_docs)]
mod entry {
    criterion::criterion_group!(benches, super::bench_rewrite, super::bench_flow_of);
}
criterion_main!(entry::benches);
