//! Ethernet-over-GRE per frame: raw IPv4 encapsulation into headroom and
//! decapsulation, for 64-byte and 1500-byte inner frames, with a key only (what
//! Linux `gretap` and OVS send) and with key + checksum + sequence number (the
//! checksum reads the whole frame). Prints the allocations per frame beside
//! criterion's nanoseconds.

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};
use yard_benches::{allocations_per_call, CountingAlloc};
use yard_tunnel::{decap_ipv4, encap_ipv4, GreOptions, Ipv4Outer, MAX_IPV4_ENCAP_HEADROOM};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const HEADROOM: usize = MAX_IPV4_ENCAP_HEADROOM;

/// A buffer with headroom and an inner frame of `len` bytes after it.
fn buffer(len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; HEADROOM + len];
    for (i, b) in buf[HEADROOM..].iter_mut().enumerate() {
        *b = i as u8;
    }
    buf
}

fn outer() -> Ipv4Outer {
    Ipv4Outer::new(
        Ipv4Addr::new(192, 168, 88, 1),
        Ipv4Addr::new(192, 168, 88, 2),
    )
}

fn bench_gre(c: &mut Criterion) {
    let configs = [
        ("key", GreOptions::with_key(42)),
        (
            "key+csum+seq",
            GreOptions {
                key: Some(42),
                checksum: true,
                sequence: Some(1),
            },
        ),
    ];
    let mut group = c.benchmark_group("gre");
    group.throughput(Throughput::Elements(1));
    for len in [64usize, 1500] {
        for (name, options) in configs {
            let mut buf = buffer(len);
            let encap = |buf: &mut [u8]| {
                encap_ipv4(black_box(buf), HEADROOM, len, outer(), black_box(options)).unwrap()
            };
            let per_frame = allocations_per_call(100_000, || {
                encap(&mut buf);
            });
            println!("gre/encap-{name}/{len}: {per_frame} allocations per frame");
            group.bench_function(BenchmarkId::new(format!("encap-{name}"), len), |b| {
                b.iter(|| encap(&mut buf))
            });

            let start = encap(&mut buf);
            let packet = &buf[start..];
            let per_frame = allocations_per_call(100_000, || {
                black_box(decap_ipv4(black_box(packet)).unwrap());
            });
            println!("gre/decap-{name}/{len}: {per_frame} allocations per frame");
            group.bench_function(BenchmarkId::new(format!("decap-{name}"), len), |b| {
                b.iter(|| decap_ipv4(black_box(packet)).unwrap())
            });
        }
    }
    group.finish();
}

// criterion_group! defines an undocumented `pub fn benches`.
#[allow(missing_docs)]
mod entry {
    criterion::criterion_group!(benches, super::bench_gre);
}
criterion_main!(entry::benches);
