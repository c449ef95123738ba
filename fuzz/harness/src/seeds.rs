//! The first corpus of each target: the kinds of frame the unit tests of
//! `yard-wire`, `yard-nat`, `yard-tunnel` and the pipeline tests feed in
//! (built the way they build them, with etherparse and the project's own
//! builders, from the same addresses), laid out as each target reads its
//! input. The gateway and pipeline seeds are conversations: the replies
//! are made by running the outbound packet through the target's own lab
//! first, so they carry the SNAT port it really picks.
//!
//! `yard-fuzz-seed DIR` writes them to `DIR/<target>/seed-NN`
//! (`fuzz/run.sh` does this before fuzzing).

use std::net::Ipv4Addr;

use etherparse::err::packet::BuildWriteError;
use etherparse::{IpHeaders, PacketBuilder, PacketBuilderStep, TcpOptionElement, VlanId};
use yard_nat::gateway::{Action, Side};
use yard_tunnel::{encap_gre, encap_ipv4, GreOptions, Ipv4Outer};
use yard_wire::arp::ArpFrame;
use yard_wire::icmp::{self, IcmpErrorKind};
use yard_wire::offload::Offload;
use yard_wire::tcp::TcpPacket;
use yard_wire::vnet::{F_NEEDS_CSUM, GSO_TCPV4, GSO_UDP_L4};

use crate::gateway::{self as gw, control as gwc};
use crate::input::put_record as record;
use crate::pipeline::{self as pl, control as plc};

const A_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const B_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
const BROADCAST: [u8; 6] = [0xff; 6];

fn vlan(id: u16) -> VlanId {
    VlanId::try_new(id).expect("a valid VLAN id")
}

/// An Ethernet frame from `src_mac` to `dst_mac` with an IPv4 header (TTL
/// 64) from `src` to `dst`: how the seed frames below start.
fn eth_ipv4(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
) -> PacketBuilderStep<IpHeaders> {
    PacketBuilder::ethernet2(src_mac, dst_mac).ipv4(src.octets(), dst.octets(), 64)
}

/// The bytes an etherparse builder writes: `size` of them (what the
/// builder's `size` says for its payload), written by `write`.
fn built(size: usize, write: impl FnOnce(&mut Vec<u8>) -> Result<(), BuildWriteError>) -> Vec<u8> {
    let mut v = Vec::with_capacity(size);
    write(&mut v).expect("etherparse writes to a Vec");
    v
}

fn udp(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ports: (u16, u16),
    payload: &[u8],
) -> Vec<u8> {
    let b = eth_ipv4(src_mac, dst_mac, src, dst).udp(ports.0, ports.1);
    built(b.size(payload.len()), |v| b.write(v, payload))
}

fn tcp_syn(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ports: (u16, u16),
) -> Vec<u8> {
    let b = eth_ipv4(src_mac, dst_mac, src, dst)
        .tcp(ports.0, ports.1, 1000, 64240)
        .syn()
        .options(&[
            TcpOptionElement::MaximumSegmentSize(1460),
            TcpOptionElement::SelectiveAcknowledgementPermitted,
            TcpOptionElement::WindowScale(7),
        ])
        .expect("the options fit");
    built(b.size(0), |v| b.write(v, &[]))
}

fn tcp_data(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ports: (u16, u16),
    syn_ack: bool,
    payload: &[u8],
) -> Vec<u8> {
    let b = eth_ipv4(src_mac, dst_mac, src, dst)
        .tcp(ports.0, ports.1, 5000, 64240)
        .ack(1001);
    let b = if syn_ack { b.syn() } else { b };
    built(b.size(payload.len()), |v| b.write(v, payload))
}

fn ping(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    reply: bool,
    ident: u16,
) -> Vec<u8> {
    let b = eth_ipv4(src_mac, dst_mac, src, dst);
    let b = if reply {
        b.icmpv4_echo_reply(ident, 1)
    } else {
        b.icmpv4_echo_request(ident, 1)
    };
    built(b.size(8), |v| b.write(v, b"pingpong"))
}

fn arp_request(mac: [u8; 6], ip: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    ArpFrame::request(mac, ip, target)
        .emit(&mut f)
        .expect("60 bytes hold an ARP frame");
    f
}

/// An ICMP error from `from` about the IPv4 packet in `frame`, in a frame
/// from `src_mac` to `dst_mac`.
fn icmp_error(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    from: Ipv4Addr,
    kind: IcmpErrorKind,
    frame: &[u8],
) -> Vec<u8> {
    let mut out = vec![0u8; 14 + 576];
    out[..6].copy_from_slice(&dst_mac);
    out[6..12].copy_from_slice(&src_mac);
    out[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let n = icmp::build_icmp_error(&mut out[14..], from, 1, kind, &frame[14..])
        .expect("the quoted packet may be answered");
    out.truncate(14 + n);
    out
}

/// A frame with an inner Ethernet frame in GRE over IPv4 (raw, from the
/// IPv4 header on) and the GRE packet alone.
fn gre_packets(options: GreOptions, inner: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let headroom = yard_tunnel::MAX_IPV4_ENCAP_HEADROOM;
    let mut buf = vec![0u8; headroom + inner.len()];
    buf[headroom..].copy_from_slice(inner);
    let outer = Ipv4Outer::new(Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2));
    let start = encap_ipv4(&mut buf, headroom, inner.len(), outer, options).expect("it fits");
    let raw = buf[start..].to_vec();
    let mut buf = vec![0u8; headroom + inner.len()];
    buf[headroom..].copy_from_slice(inner);
    let start = encap_gre(&mut buf, headroom, inner.len(), options).expect("it fits");
    (raw, buf[start..].to_vec())
}

/// A TCP frame of `payload` bytes marked as a GSO frame with a partial
/// checksum, as a TAP hands it over.
fn gso_tcp(payload: usize) -> (Offload, Vec<u8>) {
    let data = vec![0x5a; payload];
    let mut frame = tcp_data(A_MAC, B_MAC, gw::C1, gw::SERVER, (40000, 443), false, &data);
    let l3 = 14;
    let l4 = l3 + 20;
    // The checksum field holds the pseudo-header sum, as the kernel leaves it.
    let sum =
        yard_wire::checksum::pseudo_header_sum(gw::C1, gw::SERVER, 6, (frame.len() - l4) as u16);
    TcpPacket::new_unchecked(&mut frame[l4..]).set_checksum(sum);
    let offload = Offload {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_TCPV4,
        hdr_len: 54,
        gso_size: 1448,
        csum_start: l4 as u16,
        csum_offset: 16,
    };
    (offload, frame)
}

/// Seeds of the `wire` target: virtio-net header, MTU byte, frame.
pub fn wire() -> Vec<Vec<u8>> {
    let (c1, s) = (gw::C1, gw::SERVER);
    let mut frames: Vec<(Offload, u8, Vec<u8>)> = Vec::new();
    let plain = |f: Vec<u8>| (Offload::NONE, 179, f);
    frames.push(plain(tcp_syn(A_MAC, B_MAC, c1, s, (40000, 443))));
    frames.push(plain(udp(A_MAC, B_MAC, c1, s, (5000, 53), b"query")));
    frames.push(plain(ping(A_MAC, B_MAC, c1, s, false, 7)));
    let quoted = udp(A_MAC, B_MAC, c1, s, (5000, 53), b"query");
    frames.push(plain(icmp_error(
        B_MAC,
        A_MAC,
        s,
        IcmpErrorKind::DestUnreachable(3),
        &quoted,
    )));
    frames.push(plain(arp_request(A_MAC, c1, gw::GW1)));
    for tagged in [
        PacketBuilder::ethernet2(A_MAC, B_MAC).single_vlan(vlan(10)),
        PacketBuilder::ethernet2(A_MAC, B_MAC).double_vlan(vlan(100), vlan(10)),
    ] {
        let b = tagged.ipv4(c1.octets(), s.octets(), 64).udp(1, 2);
        frames.push(plain(built(b.size(6), |v| b.write(v, b"tagged"))));
    }
    let b = PacketBuilder::ethernet2(A_MAC, B_MAC)
        .ipv6(
            [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            64,
        )
        .tcp(1, 2, 3, 4);
    let v = built(b.size(3000), |v| b.write(v, &[0x11; 3000]));
    let v6 = Offload {
        flags: F_NEEDS_CSUM,
        gso_type: yard_wire::vnet::GSO_TCPV6,
        hdr_len: 74,
        gso_size: 1000,
        csum_start: 54,
        csum_offset: 16,
    };
    frames.push((v6, 179, v));
    let (offload, frame) = gso_tcp(4000);
    frames.push((offload, 179, frame));
    let big_udp = udp(A_MAC, B_MAC, c1, s, (5000, 6000), &[0x22; 3000]);
    let udp_gso = Offload {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_UDP_L4,
        hdr_len: 42,
        gso_size: 1000,
        csum_start: 34,
        csum_offset: 6,
    };
    frames.push((udp_gso, 179, big_udp.clone()));
    // Fragmentation to a 576-byte MTU ((576 - 68) / 8 = 63.5).
    frames.push((Offload::NONE, 63, big_udp));
    let inner = udp(A_MAC, B_MAC, c1, s, (1, 2), b"inner");
    let (raw, _) = gre_packets(
        GreOptions {
            key: Some(42),
            checksum: true,
            sequence: Some(7),
        },
        &inner,
    );
    let mut gre_frame = vec![0u8; 14];
    gre_frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    gre_frame.extend_from_slice(&raw);
    frames.push(plain(gre_frame));
    frames
        .into_iter()
        .map(|(offload, mtu, frame)| {
            let mut input = offload.to_header().to_vec();
            input.push(mtu);
            input.extend_from_slice(&frame);
            input
        })
        .collect()
}

/// Seeds of the `gre` target: carrier byte, packet; every option
/// combination of the tunnel crate's fixtures, over both carriers.
pub fn gre() -> Vec<Vec<u8>> {
    let inner = udp(
        A_MAC,
        BROADCAST,
        gw::C1,
        Ipv4Addr::BROADCAST,
        (68, 67),
        b"ping",
    );
    let mut seeds = Vec::new();
    for key in [None, Some(42)] {
        for checksum in [false, true] {
            for sequence in [None, Some(7)] {
                let (raw, bare) = gre_packets(
                    GreOptions {
                        key,
                        checksum,
                        sequence,
                    },
                    &inner,
                );
                seeds.push([&[1u8][..], &raw].concat());
                seeds.push([&[0u8][..], &bare].concat());
            }
        }
    }
    seeds
}

/// Seeds of the `gateway` target: conversations through the lab.
pub fn gateway() -> Vec<Vec<u8>> {
    let net1 = gwc::FIX_UP;
    let net2 = 1 | gwc::FIX_UP;
    let uplink = 2 | gwc::FIX_UP;
    let (c1, s) = (gw::C1, gw::SERVER);
    let mut seeds = Vec::new();

    // Each outbound packet runs through the lab first, so its reply is
    // addressed to the SNAT port the lab really picks.
    let outbound = |frame: &[u8]| -> Vec<u8> {
        let mut lab = gw::lab();
        let mut f = frame.to_vec();
        match lab.handle(Side::Net(1), &mut f, Offload::NONE, 0) {
            Action::Send { len, .. } => f[..len].to_vec(),
            other => panic!("the seed's packet was not routed: {other:?}"),
        }
    };
    let port_of = |f: &[u8]| u16::from_be_bytes([f[34], f[35]]);

    let syn = tcp_syn(gw::C1_MAC, gw::GW1_MAC, c1, s, (40000, 443));
    let out = outbound(&syn);
    let mut conversation = Vec::new();
    record(&mut conversation, net1, None, &syn);
    let syn_ack = tcp_data(
        gw::ROUTER_MAC,
        gw::UPLINK_MAC,
        s,
        gw::UPLINK,
        (443, port_of(&out)),
        true,
        &[],
    );
    record(&mut conversation, uplink, None, &syn_ack);
    record(
        &mut conversation,
        net1 | (1 << gwc::CLOCK_SHIFT),
        None,
        &tcp_data(
            gw::C1_MAC,
            gw::GW1_MAC,
            c1,
            s,
            (40000, 443),
            false,
            b"GET /",
        ),
    );
    seeds.push(conversation);

    let query = udp(gw::C1_MAC, gw::GW1_MAC, c1, s, (5000, 53), b"query");
    let out = outbound(&query);
    let mut conversation = Vec::new();
    record(&mut conversation, net1, None, &query);
    record(
        &mut conversation,
        uplink,
        None,
        &udp(
            gw::ROUTER_MAC,
            gw::UPLINK_MAC,
            s,
            gw::UPLINK,
            (53, port_of(&out)),
            b"answer",
        ),
    );
    // The server's router refuses a later datagram: an ICMP error quoting
    // the translated packet comes back.
    let mut quoted = out.clone();
    quoted[..6].copy_from_slice(&gw::ROUTER_MAC);
    record(
        &mut conversation,
        uplink,
        None,
        &icmp_error(
            gw::ROUTER_MAC,
            gw::UPLINK_MAC,
            gw::ROUTER,
            IcmpErrorKind::DestUnreachable(3),
            &quoted,
        ),
    );
    seeds.push(conversation);

    let echo = ping(gw::C1_MAC, gw::GW1_MAC, c1, s, false, 77);
    let out = outbound(&echo);
    let ident = u16::from_be_bytes([out[38], out[39]]);
    let mut conversation = Vec::new();
    record(&mut conversation, net1, None, &echo);
    record(
        &mut conversation,
        uplink,
        None,
        &ping(gw::ROUTER_MAC, gw::UPLINK_MAC, s, gw::UPLINK, true, ident),
    );
    record(
        &mut conversation,
        net1 | (3 << gwc::CLOCK_SHIFT),
        None,
        &ping(gw::C1_MAC, gw::GW1_MAC, c1, gw::GW1, false, 1),
    );
    seeds.push(conversation);

    let mut published = Vec::new();
    record(
        &mut published,
        uplink,
        None,
        &tcp_syn(
            gw::ROUTER_MAC,
            gw::UPLINK_MAC,
            s,
            gw::UPLINK,
            (33000, gw::PUBLISHED_TCP),
        ),
    );
    record(
        &mut published,
        uplink,
        None,
        &udp(
            gw::ROUTER_MAC,
            gw::UPLINK_MAC,
            s,
            gw::UPLINK,
            (33001, gw::PUBLISHED_UDP),
            b"q",
        ),
    );
    record(
        &mut published,
        net1,
        None,
        &tcp_syn(
            gw::C1_MAC,
            gw::GW1_MAC,
            c1,
            gw::UPLINK,
            (40001, gw::PUBLISHED_TCP),
        ),
    );
    seeds.push(published);

    let mut local = Vec::new();
    record(
        &mut local,
        net2,
        None,
        &arp_request(gw::C2_MAC, gw::C2, gw::GW2),
    );
    record(
        &mut local,
        net2,
        None,
        &udp(gw::C2_MAC, gw::GW2_MAC, gw::C2, s, (1, 2), b"out"),
    );
    record(
        &mut local,
        net1,
        None,
        &udp(gw::C1_MAC, gw::GW1_MAC, c1, gw::C2, (1, 2), b"across"),
    );
    record(
        &mut local,
        net1,
        None,
        &udp(
            gw::C1_MAC,
            gw::GW1_MAC,
            c1,
            Ipv4Addr::new(172, 30, 9, 9),
            (1, 2),
            b"unknown",
        ),
    );
    let (offload, frame) = gso_tcp(3000);
    let mut frame = frame;
    frame[..6].copy_from_slice(&gw::GW1_MAC);
    record(&mut local, net1 | gwc::OFFLOAD, Some(offload), &frame);
    seeds.push(local);
    seeds
}

/// Seeds of the `pipeline` target: L2 and routed conversations.
pub fn pipeline() -> Vec<Vec<u8>> {
    let web = pl::web_gateway_mac();
    let (a, b, t, uplink) = (0u8, 1u8, 2u8, 3u8 | plc::FIX_UP);
    let c1 = pl::C1;
    let c2 = Ipv4Addr::new(172, 30, 0, 3);
    let s = gw::SERVER;
    let mut seeds = Vec::new();

    let mut l2 = Vec::new();
    record(&mut l2, a, None, &arp_request(A_MAC, c1, c2));
    record(
        &mut l2,
        b,
        None,
        &udp(B_MAC, A_MAC, c2, c1, (1, 2), b"to a"),
    );
    record(
        &mut l2,
        a,
        None,
        &udp(A_MAC, B_MAC, c1, c2, (2, 1), b"to b"),
    );
    let b_tagged = PacketBuilder::ethernet2([0x02, 0, 0, 0, 0, 0x0c], A_MAC)
        .single_vlan(vlan(10))
        .ipv4([172, 30, 0, 4], c1.octets(), 64)
        .udp(3, 4);
    let v = built(b_tagged.size(14), |v| b_tagged.write(v, b"from the trunk"));
    record(&mut l2, t, None, &v);
    record(
        &mut l2,
        a | (3 << plc::CLOCK_SHIFT),
        None,
        &udp(A_MAC, BROADCAST, c1, Ipv4Addr::BROADCAST, (68, 67), b"dhcp"),
    );
    seeds.push(l2);

    let mut routed = Vec::new();
    record(
        &mut routed,
        a,
        None,
        &arp_request(A_MAC, c1, Ipv4Addr::new(172, 30, 0, 1)),
    );
    record(
        &mut routed,
        a | plc::FIX_UP,
        None,
        &tcp_syn(A_MAC, web, c1, s, (40000, 443)),
    );
    record(
        &mut routed,
        a | plc::FIX_UP,
        None,
        &ping(A_MAC, web, c1, Ipv4Addr::new(172, 30, 0, 1), false, 3),
    );
    record(
        &mut routed,
        uplink,
        None,
        &arp_request(pl::UPLINK_MAC, pl::ROUTER, pl::UPLINK),
    );
    record(
        &mut routed,
        uplink,
        None,
        &tcp_syn(
            [0x52, 0x54, 0, 0, 0, 1],
            pl::UPLINK_MAC,
            s,
            pl::UPLINK,
            (33000, 8080),
        ),
    );
    let big = udp(A_MAC, web, c1, s, (5000, 6000), &[0x33; 3000]);
    record(&mut routed, a | plc::FIX_UP, None, &big);
    let (offload, mut frame) = gso_tcp(3000);
    frame[..6].copy_from_slice(&web);
    record(
        &mut routed,
        a | plc::OFFLOAD | plc::FIX_UP,
        Some(offload),
        &frame,
    );
    seeds.push(routed);
    seeds
}
