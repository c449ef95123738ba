//! GSO segmentation, IPv4 fragmentation, partial-checksum completion and
//! software GRO (merging segments back) in yard-wire: nanoseconds and
//! allocations per frame (the figure is 0).

use std::hint::black_box;

use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};
use etherparse::PacketBuilder;
use yard_benches::{allocations_per_call, CountingAlloc};
use yard_wire::fragment::fragment_ipv4;
use yard_wire::gro::TcpMerge;
use yard_wire::gso::{segment, SegmentSink};
use yard_wire::offload::{complete_checksum, Offload};
use yard_wire::vnet;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

struct Scratch {
    buf: Vec<u8>,
    total: usize,
}
impl SegmentSink for Scratch {
    fn buffer(&mut self) -> &mut [u8] {
        &mut self.buf
    }
    fn emit(&mut self, len: usize) {
        self.total = self
            .total
            .wrapping_add(len + usize::from(self.buf[len - 1]));
    }
}

fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| i as u8).collect()
}

fn tcp4(n: usize) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(1000, 2000, 1, 65535)
        .psh();
    let mut v = Vec::new();
    b.write(&mut v, &payload(n)).unwrap();
    v
}

fn tcp6(n: usize) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv6([0xfd; 16], [0xfe; 16], 64)
        .tcp(1000, 2000, 1, 65535);
    let mut v = Vec::new();
    b.write(&mut v, &payload(n)).unwrap();
    v
}

fn udp4(n: usize) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(1000, 2000);
    let mut v = Vec::new();
    b.write(&mut v, &payload(n)).unwrap();
    v
}

fn bench_gso(c: &mut Criterion) {
    let mut group = c.benchmark_group("gso");
    group.throughput(Throughput::Elements(1));
    let mut sink = Scratch {
        buf: vec![0; 65_600],
        total: 0,
    };
    let mss = 1448u16;
    // (name, frame, GSO type, segment size, where L4 starts, L4 checksum field)
    let cases = [
        (
            "tcpv4",
            tcp4(usize::from(mss) * 40),
            vnet::GSO_TCPV4,
            mss,
            34u16,
            16u16,
        ),
        (
            "tcpv6",
            tcp6(usize::from(mss) * 40),
            vnet::GSO_TCPV6,
            mss,
            54,
            16,
        ),
        ("uso4", udp4(1400 * 40), vnet::GSO_UDP_L4, 1400, 34, 6),
        ("ufo4", udp4(20_000), vnet::GSO_UDP, mss, 34, 6),
    ];
    for (name, frame, gso_type, gso_size, csum_start, csum_offset) in cases {
        let offload = Offload {
            flags: vnet::F_NEEDS_CSUM,
            gso_type,
            hdr_len: 0,
            gso_size,
            csum_start,
            csum_offset,
        };
        segment(&frame, &offload, &mut sink).unwrap();
        let per = allocations_per_call(1000, || {
            segment(black_box(&frame), &offload, &mut sink).unwrap();
        });
        println!("gso/segment-{name}: {per} allocations per frame");
        group.bench_function(BenchmarkId::new("segment", name), |b| {
            b.iter(|| segment(black_box(&frame), black_box(&offload), &mut sink).unwrap())
        });
    }
    for len in [1500usize, 9000] {
        let mut frame = udp4(len - 28);
        frame[14 + 6] &= !0x40; // DF off: cut, not refused
        let per = allocations_per_call(10_000, || {
            fragment_ipv4(black_box(&frame), &Offload::NONE, 1400, &mut sink).unwrap();
        });
        println!("gso/fragment-{len}: {per} allocations per frame");
        group.bench_function(BenchmarkId::new("fragment-mtu1400", len), |b| {
            b.iter(|| fragment_ipv4(black_box(&frame), &Offload::NONE, 1400, &mut sink).unwrap())
        });
    }
    let mut frame = tcp4(1446);
    let partial = Offload {
        flags: vnet::F_NEEDS_CSUM,
        csum_start: 34,
        csum_offset: 16,
        ..Offload::NONE
    };
    group.bench_function("complete_checksum/1500", |b| {
        b.iter(|| {
            let mut o = partial;
            complete_checksum(black_box(&mut frame), &mut o).unwrap()
        })
    });
    group.finish();
}

/// Collects the pieces of a segmentation (set-up only).
struct Pieces {
    buf: Vec<u8>,
    got: Vec<Vec<u8>>,
}
impl SegmentSink for Pieces {
    fn buffer(&mut self) -> &mut [u8] {
        &mut self.buf
    }
    fn emit(&mut self, len: usize) {
        self.got.push(self.buf[..len].to_vec());
    }
}

/// Merges the 45 segments of a 64 KB TSO frame (DF, ACK, as Linux sends
/// TCP) back into one frame in place, as the tunnel receive path does.
fn bench_gro(c: &mut Criterion) {
    let mss = 1448u16;
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(1000, 2000, 1, 65535)
        .ack(7);
    let mut frame = Vec::new();
    b.write(&mut frame, &payload(usize::from(mss) * 45))
        .unwrap();
    frame[14 + 6] |= 0x40; // DF
    yard_wire::ipv4::Ipv4Packet::new_unchecked(&mut frame[14..34]).fill_checksum();
    let tso = Offload {
        flags: vnet::F_NEEDS_CSUM,
        gso_type: vnet::GSO_TCPV4,
        hdr_len: 54,
        gso_size: mss,
        csum_start: 34,
        csum_offset: 16,
    };
    let mut pieces = Pieces {
        buf: vec![0; 65_600],
        got: Vec::new(),
    };
    segment(&frame, &tso, &mut pieces).unwrap();
    let segments = pieces.got;
    assert_eq!(segments.len(), 45);
    let mut head = vec![0u8; 65_600];
    let merge_all = |head: &mut Vec<u8>| {
        let first = &segments[0];
        head[..first.len()].copy_from_slice(first);
        let mut merge = TcpMerge::start(&head[..first.len()], &Offload::NONE).unwrap();
        for s in &segments[1..] {
            merge.append(head, black_box(s), &Offload::NONE);
        }
        let offload = merge.finish(head);
        (merge.segments(), offload)
    };
    assert_eq!(merge_all(&mut head).0, 45, "every segment merges");
    let per = allocations_per_call(1000, || {
        merge_all(&mut head);
    });
    println!("gro/merge-45x1448: {per} allocations per merged frame");
    let mut group = c.benchmark_group("gro");
    group.throughput(Throughput::Elements(45));
    group.bench_function("merge-45x1448", |b| b.iter(|| merge_all(&mut head)));
    group.finish();
}

#[allow(missing_docs)]
mod entry {
    criterion::criterion_group!(benches, super::bench_gso, super::bench_gro);
}
criterion_main!(entry::benches);
