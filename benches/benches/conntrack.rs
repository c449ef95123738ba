//! Conntrack hot and warm paths: an established flow's lookup + touch at
//! 1k, 100k and 1M entries (should be flat: one keyed-hash probe), and a new
//! flow's setup (SNAT port allocation + insert, at the table limit so each
//! insert also evicts), and a flooding source's new flow at its SNAT share
//! (each reclaims the source's oldest unanswered mapping). Prints allocations per call beside criterion's
//! nanoseconds, and the memory per entry computed from the table's own
//! capacity accounting (size_of plus slab, index and wheel overhead).

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};
use yard_benches::{allocations_per_call, CountingAlloc};
use yard_nat::conntrack::{Config, Conntrack, Entry, NewConn, Packet};
use yard_nat::flow::{FlowKey, Proto};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const EXT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

/// The i-th distinct UDP flow: inside hosts in 10.0.0.0/8, 16 source ports each.
fn flow(i: u32) -> FlowKey {
    FlowKey {
        proto: Proto::Udp,
        src: Ipv4Addr::from(0x0a00_0000 | (i >> 4)),
        sport: 20000 + (i & 15) as u16,
        dst: Ipv4Addr::new(203, 0, 113, 9),
        dport: 53,
    }
}

fn table(n: u32) -> (Conntrack, Vec<FlowKey>) {
    let mut t = Conntrack::new(Config {
        max_entries: n as usize,
        ..Config::default()
    });
    let keys: Vec<FlowKey> = (0..n).map(flow).collect();
    for k in &keys {
        t.insert(NewConn::new(*k), &Packet::other(100), 0).unwrap();
    }
    (t, keys)
}

/// A cheap permutation-ish walk over the keys so lookups miss the cache the
/// way real traffic over a big table does.
fn next(i: &mut u64, n: usize) -> usize {
    *i = i
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*i >> 33) as usize) % n
}

fn bench_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("conntrack_lookup_touch");
    group.throughput(Throughput::Elements(1));
    group.sample_size(30);
    group.measurement_time(std::time::Duration::from_secs(3));
    for n in [1_000u32, 100_000, 1_000_000] {
        let (mut t, keys) = table(n);
        let pkt = Packet::other(100);
        let mut i = 0u64;
        let mut now = 1u64;
        let mut step = |t: &mut Conntrack| {
            let k = &keys[next(&mut i, keys.len())];
            now += 1;
            black_box(t.lookup_touch(0, black_box(k), &pkt, now));
        };
        let allocs = allocations_per_call(100_000, || step(&mut t));
        println!("conntrack lookup+touch at {n} entries: {allocs} allocations per packet");
        group.bench_with_input(BenchmarkId::new("uniform", n), &n, |b, _| {
            b.iter(|| step(&mut t))
        });
        // 1024 active flows spread over the whole table: the algorithmic
        // cost, without the DRAM/TLB misses a uniform walk over 300 MB pays.
        let stride = keys.len() / 1024;
        let hot: Vec<FlowKey> = (0..1024).map(|j| keys[j * stride]).collect();
        let mut j = 0u64;
        group.bench_with_input(BenchmarkId::new("hot1024", n), &n, |b, _| {
            b.iter(|| {
                let k = &hot[next(&mut j, hot.len())];
                now += 1;
                black_box(t.lookup_touch(0, black_box(k), &pkt, now))
            })
        });
        if n == 1_000_000 {
            let heap = t.heap_bytes();
            println!(
                "conntrack memory at {} entries: {} bytes/entry (size_of::<Entry>() = {}, \
                 table heap {} MiB: slab + 2 index entries + wheel + free list)",
                t.len(),
                heap / t.len(),
                std::mem::size_of::<Entry>(),
                heap >> 20,
            );
        }
    }
    group.finish();
}

fn bench_new_flow(c: &mut Criterion) {
    let mut group = c.benchmark_group("conntrack_new_flow");
    group.throughput(Throughput::Elements(1));
    group.sample_size(30);
    group.measurement_time(std::time::Duration::from_secs(3));
    // At the limit: each setup allocates a port, inserts and evicts the
    // oldest unreplied entry (releasing its port).
    let limit = 32_768u32;
    let mut t = Conntrack::new(Config {
        max_entries: limit as usize,
        ..Config::default()
    });
    let mut i = 0u32;
    let pkt = Packet::other(100);
    let mut setup = |t: &mut Conntrack| {
        let mut conn = NewConn::new(flow(i));
        conn.snat = Some(EXT);
        i = i.wrapping_add(1);
        black_box(t.insert(conn, &pkt, 0).unwrap());
    };
    for _ in 0..limit {
        setup(&mut t);
    }
    let allocs = allocations_per_call(100_000, || setup(&mut t));
    println!("conntrack new flow (SNAT + insert + evict): {allocs} allocations per flow");
    group.bench_function("snat_insert_at_limit", |b| b.iter(|| setup(&mut t)));
    println!(
        "mappings live: {}, entries: {}, stats: {:?}",
        t.mapping().len(),
        t.len(),
        t.stats()
    );

    // One source flooding from ever-new ports, at its SNAT share: each new
    // flow reclaims the source's oldest unanswered mapping (removing its
    // entry) and takes a port.
    let mut t = Conntrack::new(Config::default());
    let flooder = Ipv4Addr::new(172, 30, 0, 2);
    let mut port = 0u32;
    let mut flood = |t: &mut Conntrack| {
        let mut conn = NewConn::new(FlowKey {
            proto: Proto::Udp,
            src: flooder,
            sport: 1024 + (port % 64_512) as u16,
            dst: Ipv4Addr::new(203, 0, 113, 9),
            dport: 53,
        });
        conn.snat = Some(EXT);
        port = port.wrapping_add(1);
        black_box(t.insert(conn, &pkt, 0).unwrap());
    };
    let share = t.mapping().share_limit(flow_pool(flooder));
    for _ in 0..share {
        flood(&mut t);
    }
    let allocs = allocations_per_call(100_000, || flood(&mut t));
    println!(
        "conntrack new flow at the SNAT share (reclaim + insert): {allocs} allocations per flow"
    );
    group.bench_function("snat_reclaim_at_share", |b| b.iter(|| flood(&mut t)));
    group.finish();
    println!(
        "share {share}: mappings live: {}, entries: {}, stats: {:?}",
        t.mapping().len(),
        t.len(),
        t.stats()
    );
}

/// The pool a flooder's high-port UDP mappings on `EXT` come from.
fn flow_pool(src: Ipv4Addr) -> yard_nat::mapping::PoolKey {
    yard_nat::mapping::MappingKey {
        proto: Proto::Udp,
        inside_addr: src,
        inside_port: 1024,
        external: EXT,
    }
    .pool()
}

// criterion_group! defines an undocumented `pub fn benches`.
#[allow(missing_docs)]
mod entry {
    criterion::criterion_group!(benches, super::bench_lookup, super::bench_new_flow);
}
criterion_main!(entry::benches);
