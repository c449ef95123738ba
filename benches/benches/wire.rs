//! `yard-wire`'s hand-written views against `smoltcp::wire` on the same
//! frames — the comparison behind the choice written in `wire/src/lib.rs`.
//!
//! - `wire_parse`: Ethernet → IPv4 → TCP with checked views, reading both
//!   addresses, both ports and the flags of a 64-byte frame.
//! - `wire_rewrite`: an in-place NAT-style rewrite of a 64- and a 1500-byte
//!   frame — the IPv4 source and the TCP source port — with both checksums
//!   kept right. `yard-wire` updates them incrementally (RFC 1624);
//!   smoltcp's views have only a full recompute (`fill_checksum`), measured
//!   as smoltcp would be used, and once more with `yard-wire`'s RFC 1624
//!   functions on smoltcp's fields, which isolates the cost of the views.
//!
//! Each variant alternates between two translations so every call changes
//! the address and the port, and checks once that its result equals a
//! freshly built frame. Allocations per call are printed beside criterion's
//! nanoseconds; every figure must be 0.

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};
use smoltcp::wire as smol;
use yard_benches::{allocations_per_call, CountingAlloc};
use yard_wire::checksum;
use yard_wire::ethernet::{self, ethertype, EthernetFrame};
use yard_wire::ip::protocol;
use yard_wire::ipv4::Ipv4Packet;
use yard_wire::tcp::TcpPacket;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const INSIDE: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 2);
const PUBLIC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 5);
const INSIDE_PORT: u16 = 40000;
const PUBLIC_PORT: u16 = 61000;

/// An Ethernet frame of `len` bytes carrying an IPv4 TCP ACK from
/// `src`:`sport` to the peer, built by etherparse (every checksum computed
/// from scratch).
fn frame(len: usize, src: Ipv4Addr, sport: u16) -> Vec<u8> {
    let payload: Vec<u8> = (0..len - 54).map(|i| i as u8).collect();
    let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src.octets(), PEER.octets(), 64)
        .tcp(sport, 443, 1, 64240)
        .ack(1);
    let mut v = Vec::with_capacity(len);
    b.write(&mut v, &payload).unwrap();
    assert_eq!(v.len(), len);
    v
}

/// What a parse reads: both addresses, both ports, SYN and ACK.
type Summary = (Ipv4Addr, Ipv4Addr, u16, u16, bool, bool);

/// A parser under test.
type Parse = fn(&[u8]) -> Option<Summary>;

/// A rewriter under test: frame, new source address, new source port.
type Rewrite = fn(&mut [u8], Ipv4Addr, u16);

fn parse_wire(f: &[u8]) -> Option<Summary> {
    let eth = EthernetFrame::new_checked(f).ok()?;
    if eth.ethertype() != ethertype::IPV4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.protocol() != protocol::TCP {
        return None;
    }
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    let flags = tcp.flags();
    Some((
        ip.src(),
        ip.dst(),
        tcp.src_port(),
        tcp.dst_port(),
        flags.syn(),
        flags.ack(),
    ))
}

fn parse_smoltcp(f: &[u8]) -> Option<Summary> {
    let eth = smol::EthernetFrame::new_checked(f).ok()?;
    if eth.ethertype() != smol::EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = smol::Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.next_header() != smol::IpProtocol::Tcp {
        return None;
    }
    let tcp = smol::TcpPacket::new_checked(ip.payload()).ok()?;
    Some((
        ip.src_addr(),
        ip.dst_addr(),
        tcp.src_port(),
        tcp.dst_port(),
        tcp.syn(),
        tcp.ack(),
    ))
}

/// SNAT with yard-wire's views: the IPv4 setter keeps the header checksum,
/// the TCP checksum takes the address and the port change (RFC 1624).
fn rewrite_wire(f: &mut [u8], addr: Ipv4Addr, port: u16) {
    let mut ip = Ipv4Packet::new_unchecked(&mut f[ethernet::HEADER_LEN..]);
    let old = ip.src();
    ip.set_src(addr);
    let mut tcp = TcpPacket::new_unchecked(ip.payload_mut());
    let c = checksum::update32(tcp.checksum(), u32::from(old), u32::from(addr));
    let c = checksum::update16(c, tcp.src_port(), port);
    tcp.set_src_port(port);
    tcp.set_checksum(c);
}

/// SNAT as smoltcp's views do it: set the fields, recompute both checksums.
fn rewrite_smoltcp_full(f: &mut [u8], addr: Ipv4Addr, port: u16) {
    let mut ip = smol::Ipv4Packet::new_unchecked(&mut f[ethernet::HEADER_LEN..]);
    ip.set_src_addr(addr);
    ip.fill_checksum();
    let dst = ip.dst_addr();
    let mut tcp = smol::TcpPacket::new_unchecked(ip.payload_mut());
    tcp.set_src_port(port);
    tcp.fill_checksum(&addr.into(), &dst.into());
}

/// SNAT through smoltcp's views with yard-wire's RFC 1624 arithmetic.
fn rewrite_smoltcp_incremental(f: &mut [u8], addr: Ipv4Addr, port: u16) {
    let mut ip = smol::Ipv4Packet::new_unchecked(&mut f[ethernet::HEADER_LEN..]);
    let old = u32::from(ip.src_addr());
    let new = u32::from(addr);
    let c = checksum::update32(ip.checksum(), old, new);
    ip.set_src_addr(addr);
    ip.set_checksum(c);
    let mut tcp = smol::TcpPacket::new_unchecked(ip.payload_mut());
    let c = checksum::update32(tcp.checksum(), old, new);
    let c = checksum::update16(c, tcp.src_port(), port);
    tcp.set_src_port(port);
    tcp.set_checksum(c);
}

fn bench_parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("wire_parse");
    group.throughput(Throughput::Elements(1));
    let f = frame(64, INSIDE, INSIDE_PORT);
    let want = Some((INSIDE, PEER, INSIDE_PORT, 443, false, true));
    let parsers: [(&str, Parse); 2] = [("yard-wire", parse_wire), ("smoltcp", parse_smoltcp)];
    for (name, parse) in parsers {
        assert_eq!(parse(&f), want, "{name}");
        let allocs = allocations_per_call(100_000, || {
            black_box(parse(black_box(&f)));
        });
        println!("wire_parse/{name}: {allocs} allocations per frame");
        group.bench_function(name, |b| b.iter(|| parse(black_box(&f))));
    }
    group.finish();
}

fn bench_rewrite(c: &mut Criterion) {
    let mut group = c.benchmark_group("wire_rewrite");
    group.throughput(Throughput::Elements(1));
    let rewriters: [(&str, Rewrite); 3] = [
        ("yard-wire", rewrite_wire),
        ("smoltcp-full", rewrite_smoltcp_full),
        ("smoltcp-incremental", rewrite_smoltcp_incremental),
    ];
    for len in [64usize, 1500] {
        let inside = frame(len, INSIDE, INSIDE_PORT);
        let public = frame(len, PUBLIC, PUBLIC_PORT);
        for (name, rewrite) in rewriters {
            let mut f = inside.clone();
            rewrite(&mut f, PUBLIC, PUBLIC_PORT);
            assert_eq!(f, public, "{name}/{len}: SNAT");
            rewrite(&mut f, INSIDE, INSIDE_PORT);
            assert_eq!(f, inside, "{name}/{len}: back");
            let mut flip = false;
            let mut step = |f: &mut [u8]| {
                flip = !flip;
                let (addr, port) = if flip {
                    (PUBLIC, PUBLIC_PORT)
                } else {
                    (INSIDE, INSIDE_PORT)
                };
                rewrite(black_box(f), addr, port);
            };
            let allocs = allocations_per_call(100_000, || step(&mut f));
            println!("wire_rewrite/{name}/{len}: {allocs} allocations per frame");
            group.bench_with_input(BenchmarkId::new(name, len), &len, |b, _| {
                b.iter(|| step(&mut f))
            });
        }
    }
    group.finish();
}

// criterion_group! defines an undocumented `pub fn benches`.
#[allow(missing_docs)]
mod entry {
    criterion::criterion_group!(benches, super::bench_parse, super::bench_rewrite);
}
criterion_main!(entry::benches);
