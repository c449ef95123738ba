//! The `wire` target: one frame through every `yard_wire` view and the
//! functions built on them.
//!
//! Input: a 10-byte virtio-net header (the frame's offload state), one byte
//! that picks an MTU for fragmentation and GSO, then the Ethernet frame.
//! What is checked besides "no panic": a header rebuilt from
//! [`Ipv4Repr`] reads back the same; an incremental address rewrite keeps a
//! valid IPv4 header checksum valid; an ARP reply built for a request
//! answers it; IPv4 fragments fit the MTU they were cut for; the segments
//! GSO cuts a frame into, merged back by software GRO as far as they merge,
//! cut again into the same segments.

use std::net::Ipv4Addr;

use yard_wire::arp::{ArpFrame, ArpPacket};
use yard_wire::checksum::{self, L4Checksum};
use yard_wire::ethernet::{self, ethertype, EthernetFrame};
use yard_wire::gre::GrePacket;
use yard_wire::gro::TcpMerge;
use yard_wire::gso::{self, SegmentSink};
use yard_wire::icmp::{self, IcmpErrorKind, IcmpPacket};
use yard_wire::ip::protocol;
use yard_wire::ipv4::{self, Ipv4Packet, Ipv4Repr};
use yard_wire::ipv6::Ipv6Packet;
use yard_wire::offload::{self, Offload};
use yard_wire::tcp::TcpPacket;
use yard_wire::udp::UdpPacket;
use yard_wire::vlan::VlanPacket;
use yard_wire::{fragment, vnet};

use crate::input::Input;

/// Runs one input (see the module documentation for its layout).
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let Some(header) = input.array::<{ vnet::HEADER_LEN }>() else {
        return;
    };
    let Some(mtu_seed) = input.byte() else {
        return;
    };
    let frame = input.take(usize::MAX);
    let offload = Offload::from_header(&header);
    let mtu = 68 + u32::from(mtu_seed) * 8;

    let l3 = views(frame);
    if let Some((start, ethertype)) = l3 {
        match ethertype {
            ethertype::IPV4 => ipv4_extras(&frame[start..]),
            ethertype::ARP => arp_extras(frame),
            _ => {}
        }
    }
    transforms(frame, offload, mtu);
}

/// Reads every field of every header it finds, walking Ethernet, up to two
/// VLAN tags, then ARP, IPv4 or IPv6 and the transport; returns where the
/// network header starts and its EtherType.
fn views(frame: &[u8]) -> Option<(usize, u16)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let _ = (eth.dst(), eth.src(), eth.payload().len());
    let mut ethertype = eth.ethertype();
    let mut at = ethernet::HEADER_LEN;
    for _ in 0..2 {
        if !ethertype::is_vlan_tag(ethertype) {
            break;
        }
        let tag = VlanPacket::new_checked(&frame[at..]).ok()?;
        let _ = (tag.tci(), tag.vid(), tag.pcp(), tag.dei(), tag.is_stacked());
        ethertype = tag.ethertype();
        at += frame[at..].len() - tag.payload().len();
    }
    let l3 = &frame[at..];
    match ethertype {
        ethertype::ARP => {
            if let Ok(arp) = ArpPacket::new_checked(l3) {
                let _ = (arp.op(), arp.sender_hw(), arp.sender_proto());
                let _ = (arp.target_hw(), arp.target_proto());
            }
        }
        ethertype::IPV4 => {
            if let Ok(ip) = Ipv4Packet::new_checked(l3) {
                ipv4_fields(&ip);
                transport(ip.protocol(), ip.src(), ip.dst(), ip.payload());
            }
        }
        ethertype::IPV6 => {
            if let Ok(ip) = Ipv6Packet::new_checked(l3) {
                let _ = (ip.version(), ip.payload_len(), ip.total_len());
                let _ = (ip.hop_limit(), ip.src(), ip.dst(), ip.addresses());
                transport(
                    ip.next_header(),
                    Ipv4Addr::UNSPECIFIED,
                    Ipv4Addr::UNSPECIFIED,
                    ip.payload(),
                );
            }
        }
        _ => {}
    }
    Some((at, ethertype))
}

fn ipv4_fields<T: AsRef<[u8]>>(ip: &Ipv4Packet<T>) {
    let _ = (ip.version(), ip.ihl(), ip.header_len(), ip.tos());
    let _ = (ip.total_len(), ip.ident(), ip.dont_frag(), ip.more_frags());
    let _ = (ip.frag_offset(), ip.is_fragment(), ip.is_later_fragment());
    let _ = (ip.ttl(), ip.protocol(), ip.checksum(), ip.src(), ip.dst());
    let _ = (
        ip.addresses(),
        ip.header(),
        ip.payload(),
        ip.verify_checksum(),
    );
}

/// The transport header views over an IP payload.
fn transport(proto: u8, src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) {
    match proto {
        protocol::TCP => {
            if let Ok(tcp) = TcpPacket::new_checked(payload) {
                let _ = (tcp.src_port(), tcp.dst_port(), tcp.seq(), tcp.ack());
                let _ = (tcp.data_offset(), tcp.header_len(), tcp.flags());
                let _ = (tcp.window(), tcp.checksum(), tcp.urgent());
                let _ = (tcp.options(), tcp.payload(), tcp.mss(), tcp.window_scale());
                let _ = tcp.verify_checksum(src, dst);
                for option in tcp.option_iter() {
                    let _ = option;
                }
            }
        }
        protocol::UDP => {
            if let Ok(udp) = UdpPacket::new_checked(payload) {
                let _ = (udp.src_port(), udp.dst_port(), udp.length());
                let _ = (udp.checksum(), udp.payload(), udp.verify_checksum(src, dst));
            }
        }
        protocol::ICMP => {
            if let Ok(msg) = IcmpPacket::new_checked(payload) {
                let _ = (msg.msg_type(), msg.code(), msg.checksum(), msg.echo_ident());
                let _ = (msg.echo_seq(), msg.next_hop_mtu(), msg.pointer());
                let _ = (msg.rest_of_header(), msg.data(), msg.is_echo());
                let _ = (
                    msg.is_error(),
                    msg.verify_checksum(),
                    IcmpErrorKind::parse(&msg),
                );
                if let Some(quote) = msg.quoted() {
                    if let Ok(inner) = Ipv4Packet::new_quoted(quote) {
                        ipv4_fields(&inner);
                        let _ = Ipv4Repr::parse(&inner);
                        transport(inner.protocol(), inner.src(), inner.dst(), inner.payload());
                    }
                }
            }
        }
        protocol::GRE => {
            if let Ok(gre) = GrePacket::new_checked(payload) {
                let _ = (gre.flags_version(), gre.version(), gre.has_checksum());
                let _ = (gre.has_key(), gre.has_sequence(), gre.protocol());
                let _ = (gre.header_len(), gre.checksum(), gre.key(), gre.sequence());
                let _ = (gre.options(), gre.payload(), gre.verify_checksum());
            }
        }
        _ => {}
    }
}

/// Builders and in-place writers on a well-formed IPv4 packet (a copy).
fn ipv4_extras(l3: &[u8]) {
    let Ok(ip) = Ipv4Packet::new_checked(l3) else {
        return;
    };
    // Parse with a view, build with a Repr: the fields survive the trip.
    let repr = Ipv4Repr::parse(&ip);
    let mut header = [0u8; ipv4::HEADER_LEN];
    if repr
        .emit(&mut Ipv4Packet::new_unchecked(&mut header[..]))
        .is_ok()
    {
        let rebuilt = Ipv4Packet::new_quoted(&header[..]).expect("an emitted header reads back");
        assert_eq!(Ipv4Repr::parse(&rebuilt), repr, "Ipv4Repr round trip");
        assert!(rebuilt.verify_checksum(), "emitted header checksum");
    }

    let mut copy = l3.to_vec();
    let valid = ip.verify_checksum();
    {
        let mut packet = Ipv4Packet::new_unchecked(&mut copy[..]);
        packet.set_src(Ipv4Addr::new(192, 0, 2, 1));
        packet.set_dst(Ipv4Addr::new(198, 51, 100, 2));
        packet.set_ttl(ip.ttl().wrapping_sub(1));
        if valid {
            assert!(
                packet.verify_checksum(),
                "incremental update kept the checksum"
            );
        }
    }
    let (src, dst, proto) = (ip.src(), ip.dst(), ip.protocol());
    let header_len = ip.header_len();
    let total = usize::from(ip.total_len());
    if proto == protocol::TCP {
        let mut packet = Ipv4Packet::new_unchecked(&mut copy[..]);
        if let Ok(mut tcp) = TcpPacket::new_checked(packet.payload_mut()) {
            let _ = tcp.clamp_mss(1200, L4Checksum::Full);
            let _ = tcp.set_mss(536, L4Checksum::Partial);
            tcp.fill_checksum(src, dst);
            assert!(
                tcp.verify_checksum(src, dst),
                "filled TCP checksum verifies"
            );
        }
    }
    if proto == protocol::UDP {
        let mut packet = Ipv4Packet::new_unchecked(&mut copy[..]);
        if let Ok(mut udp) = UdpPacket::new_checked(packet.payload_mut()) {
            udp.fill_checksum(src, dst);
        }
    }
    let mut echo = l3[..total.min(l3.len())].to_vec();
    let _ = icmp::echo_reply_in_place(&mut echo, 64);
    let _ = checksum::l4_checksum(src, dst, proto, &l3[header_len.min(total)..total]);

    let mut error = [0u8; 576];
    for kind in [
        IcmpErrorKind::DestUnreachable(3),
        IcmpErrorKind::FragmentationNeeded { next_hop_mtu: 1400 },
        IcmpErrorKind::ParameterProblem { pointer: 9 },
    ] {
        if let Ok(n) = icmp::build_icmp_error(&mut error, Ipv4Addr::new(10, 0, 0, 1), 7, kind, l3) {
            let built = Ipv4Packet::new_checked(&error[..n]).expect("an ICMP error reads back");
            assert!(built.verify_checksum());
            let msg = IcmpPacket::new_checked(built.payload()).expect("its ICMP part reads back");
            assert!(msg.verify_checksum(), "ICMP error checksum");
            assert_eq!(IcmpErrorKind::parse(&msg), Some(kind));
        }
    }
}

/// An ARP reply built for a request answers it.
fn arp_extras(frame: &[u8]) {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return;
    };
    let Ok(request) = ArpPacket::new_checked(eth.payload()) else {
        return;
    };
    let mac = [0x02, 0x59, 0, 0, 0, 1];
    let mut out = [0u8; 60];
    let n = ArpFrame::reply_to(&request, mac)
        .emit(&mut out)
        .expect("60 bytes hold an ARP frame");
    let reply_eth = EthernetFrame::new_checked(&out[..n]).expect("the reply reads back");
    let reply = ArpPacket::new_checked(reply_eth.payload()).expect("its ARP part reads back");
    assert_eq!(reply.target_hw(), request.sender_hw());
    assert_eq!(reply.target_proto(), request.sender_proto());
    assert_eq!(reply.sender_proto(), request.target_proto());
    assert_eq!(reply.sender_hw(), mac);
}

/// Counts the pieces handed out and checks each against `limit`.
struct Sink {
    buf: Vec<u8>,
    pieces: usize,
    /// The largest IP packet a piece may carry (fragments), if any.
    limit: Option<usize>,
}

impl SegmentSink for Sink {
    fn buffer(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    fn emit(&mut self, len: usize) {
        self.pieces += 1;
        assert!(len <= self.buf.len());
        if let Some(limit) = self.limit {
            let ip = len.saturating_sub(ethernet::HEADER_LEN);
            assert!(
                ip <= limit,
                "a fragment of {ip} bytes exceeds the MTU {limit}"
            );
        }
    }
}

/// Segmentation, fragmentation and checksum completion, each on its own
/// copy or into a sink; none may panic.
fn transforms(frame: &[u8], offload: Offload, mtu: u32) {
    let mut sink = Sink {
        buf: vec![0u8; frame.len()],
        pieces: 0,
        limit: None,
    };
    let _ = gso::segment(frame, &offload, &mut sink);

    let mut fitted = offload;
    let _ = gso::fit_gso(frame, &mut fitted, mtu);

    sink.limit = Some(mtu as usize);
    sink.pieces = 0;
    let _ = fragment::dont_fragment(frame);
    if fragment::fragment_ipv4(frame, &offload, mtu, &mut sink).is_ok() {
        assert!(sink.pieces >= 1);
    }

    merge_back(frame, offload);

    let mut copy = frame.to_vec();
    let mut state = offload;
    let _ = offload::complete_checksum(&mut copy, &mut state);
    let mut shifted = offload;
    shifted.shift(4);
    shifted.shift(-4);
    let _ = (offload.is_gso(), offload.gso_kind(), offload.needs_csum());
    let _ = (offload.l4_checksum(), offload.to_header());
}

/// Keeps a copy of every piece handed to it.
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

/// Cuts the frame with GSO, merges the pieces back in order with software
/// GRO as far as they merge, and checks that the merged frame cuts into
/// exactly the pieces it took. The frame itself, as a head, must refuse
/// itself as its own next segment.
fn merge_back(frame: &[u8], offload: Offload) {
    if let Some(mut merge) = TcpMerge::start(frame, &offload) {
        let mut head = frame.to_vec();
        head.resize(65_600, 0);
        assert!(
            !merge.append(&mut head, frame, &offload),
            "a segment continued itself"
        );
        assert_eq!(merge.finish(&mut head), Offload::NONE);
        assert_eq!(&head[..frame.len()], frame);
    }
    let mut pieces = Pieces {
        buf: vec![0u8; 65_600],
        got: Vec::new(),
    };
    if gso::segment(frame, &offload, &mut pieces).is_err() || pieces.got.is_empty() {
        return;
    }
    let first = &pieces.got[0];
    let Some(mut merge) = TcpMerge::start(first, &Offload::NONE) else {
        return;
    };
    let mut head = vec![0u8; 65_600];
    head[..first.len()].copy_from_slice(first);
    let taken = 1 + pieces.got[1..]
        .iter()
        .take_while(|piece| merge.append(&mut head, piece, &Offload::NONE))
        .count();
    let merged_offload = merge.finish(&mut head);
    let merged = &head[..merge.len()];
    let mut again = Pieces {
        buf: vec![0u8; 65_600],
        got: Vec::new(),
    };
    gso::segment(merged, &merged_offload, &mut again).expect("a merged frame segments");
    assert_eq!(
        again.got,
        pieces.got[..taken],
        "merged {taken} pieces do not cut back"
    );
}
