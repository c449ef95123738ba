//! Segmentation tests: every segment is compared byte for byte with the
//! packet etherparse builds for the same slice of payload; checksums are
//! also verified by a full recompute; property tests cover sizes at random.

use etherparse::{
    IpFragOffset, IpHeaders, IpNumber, Ipv4Header, Ipv6FlowLabel, Ipv6Header, PacketBuilder,
    TcpOptionElement, VlanId,
};
use proptest::prelude::*;

use super::*;
use crate::checksum::{add, ones_sum};
use crate::offload::complete_checksum;
use crate::testutil::Collect;
use crate::vnet::{F_NEEDS_CSUM, GSO_ECN};

const PROTO_TCP: u8 = protocol::TCP;
const PROTO_UDP: u8 = protocol::UDP;

const SRC_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const DST_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const SRC4: [u8; 4] = [10, 0, 0, 1];
const DST4: [u8; 4] = [10, 0, 0, 2];
const SRC6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const DST6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const SEQ: u32 = 0xffff_f000; // wraps within the first segments
const IP_ID: u16 = 0xfffe; // wraps too

#[derive(Debug, Clone, Copy, PartialEq)]
enum Family {
    V4,
    V6,
}

#[derive(Debug, Clone, Copy, Default)]
struct Flags {
    fin: bool,
    psh: bool,
    cwr: bool,
}

/// What to build: IP family, optional VLAN tag, IPv4 identification.
#[derive(Debug, Clone, Copy)]
struct Shape {
    family: Family,
    vlan: Option<u16>,
    id: u16,
}

fn ip_headers(shape: Shape, protocol: IpNumber) -> IpHeaders {
    match shape.family {
        Family::V4 => {
            let mut h = Ipv4Header::new(0, 64, protocol, SRC4, DST4).unwrap();
            h.identification = shape.id;
            IpHeaders::Ipv4(h, Default::default())
        }
        Family::V6 => IpHeaders::Ipv6(
            Ipv6Header {
                traffic_class: 0,
                flow_label: Ipv6FlowLabel::try_new(7).unwrap(),
                payload_length: 0,
                next_header: protocol,
                hop_limit: 64,
                source: SRC6,
                destination: DST6,
            },
            Default::default(),
        ),
    }
}

fn ip_step(
    shape: Shape,
    protocol: IpNumber,
) -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
    let eth = PacketBuilder::ethernet2(SRC_MAC, DST_MAC);
    let ip = ip_headers(shape, protocol);
    match shape.vlan {
        Some(v) => eth.single_vlan(VlanId::try_new(v).unwrap()).ip(ip),
        None => eth.ip(ip),
    }
}

/// A TCP packet with a timestamp option (as Linux sends), ACK set.
fn tcp(shape: Shape, seq: u32, flags: Flags, payload: &[u8]) -> Vec<u8> {
    let mut b = ip_step(shape, IpNumber::TCP)
        .tcp(40_000, 5201, seq, 502)
        .ack(0x1234_5678)
        .options(&[
            TcpOptionElement::Noop,
            TcpOptionElement::Noop,
            TcpOptionElement::Timestamp(11, 22),
        ])
        .unwrap();
    if flags.fin {
        b = b.fin();
    }
    if flags.psh {
        b = b.psh();
    }
    if flags.cwr {
        b = b.cwr();
    }
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

fn udp(shape: Shape, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    ip_step(shape, IpNumber::UDP)
        .udp(40_000, 4789)
        .write(&mut out, payload)
        .unwrap();
    out
}

fn l2_len(shape: Shape) -> usize {
    if shape.vlan.is_some() {
        18
    } else {
        14
    }
}

fn l4_offset(shape: Shape) -> usize {
    l2_len(shape)
        + match shape.family {
            Family::V4 => 20,
            Family::V6 => 40,
        }
}

/// The folded pseudo-header sum for `packet`'s L4 part, as a device with
/// checksum offload leaves it in the checksum field.
fn pseudo_sum(packet: &[u8], shape: Shape, protocol: u8) -> u16 {
    let l3 = l2_len(shape);
    let l4 = l4_offset(shape);
    let addrs = match shape.family {
        Family::V4 => &packet[l3 + 12..l3 + 20],
        Family::V6 => &packet[l3 + 8..l3 + 40],
    };
    add(
        add(ones_sum(addrs), u16::from(protocol)),
        (packet.len() - l4) as u16,
    )
}

/// Turns a fully checksummed packet into what a TAP with offloads hands
/// over: partial checksum and a virtio-net header.
fn offloaded(
    mut packet: Vec<u8>,
    shape: Shape,
    protocol: u8,
    gso_type: u8,
    gso_size: u16,
) -> Frame {
    let l4 = l4_offset(shape);
    let (field, hdr_len) = if protocol == PROTO_TCP {
        (16, l4 + 32)
    } else {
        (6, l4 + 8)
    };
    let partial = pseudo_sum(&packet, shape, protocol);
    packet[l4 + field..l4 + field + 2].copy_from_slice(&partial.to_be_bytes());
    let mut frame = Frame::new();
    frame.fill(
        Offload {
            flags: F_NEEDS_CSUM,
            gso_type,
            hdr_len: hdr_len as u16,
            gso_size,
            csum_start: l4 as u16,
            csum_offset: field as u16,
        },
        &packet,
    );
    frame
}

/// A frame's bytes and offload state, as a port hands them over.
struct Frame {
    bytes: Vec<u8>,
    offload: Offload,
}

impl Frame {
    fn new() -> Frame {
        Frame {
            bytes: Vec::new(),
            offload: Offload::NONE,
        }
    }

    fn fill(&mut self, offload: Offload, bytes: &[u8]) {
        self.offload = offload;
        self.bytes = bytes.to_vec();
    }

    fn data(&self) -> &[u8] {
        &self.bytes
    }

    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }

    fn len(&self) -> usize {
        self.bytes.len()
    }
}

fn collect(frame: &Frame) -> Result<Vec<Vec<u8>>, OffloadError> {
    let mut sink = Collect::new();
    let n = segment(&frame.bytes, &frame.offload, &mut sink)?;
    assert_eq!(
        n,
        sink.got.len(),
        "the count returned is the count handed out"
    );
    Ok(sink.got)
}

fn payload_of(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Full recompute: the one's-complement sum over pseudo-header and L4 part
/// of a correct packet is 0xffff.
fn assert_l4_checksum_ok(seg: &[u8], shape: Shape, protocol: u8) {
    let l4 = l4_offset(shape);
    let total = add(pseudo_sum(seg, shape, protocol), ones_sum(&seg[l4..]));
    assert_eq!(total, 0xffff, "L4 checksum of a segment does not verify");
    if shape.family == Family::V4 {
        let l3 = l2_len(shape);
        assert_eq!(ones_sum(&seg[l3..l3 + 20]), 0xffff, "IPv4 header checksum");
    }
}

fn tcp_segmentation_matches_etherparse(family: Family, vlan: Option<u16>, len: usize, mss: u16) {
    let shape = Shape {
        family,
        vlan,
        id: IP_ID,
    };
    let payload = payload_of(len);
    let all = Flags {
        fin: true,
        psh: true,
        cwr: true,
    };
    let gso_type = match family {
        Family::V4 => GSO_TCPV4,
        Family::V6 => GSO_TCPV6,
    } | GSO_ECN;
    let frame = offloaded(
        tcp(shape, SEQ, all, &payload),
        shape,
        PROTO_TCP,
        gso_type,
        mss,
    );
    let segments = collect(&frame).unwrap();
    let chunks: Vec<&[u8]> = payload.chunks(usize::from(mss)).collect();
    assert_eq!(segments.len(), chunks.len());
    for (i, (got, chunk)) in segments.iter().zip(&chunks).enumerate() {
        let last = i + 1 == chunks.len();
        let flags = Flags {
            fin: last,
            psh: last,
            cwr: i == 0,
        };
        let seg_shape = Shape {
            id: IP_ID.wrapping_add(i as u16),
            ..shape
        };
        let seq = SEQ.wrapping_add((i * usize::from(mss)) as u32);
        let want = tcp(seg_shape, seq, flags, chunk);
        assert_eq!(got, &want, "segment {i} of {}", chunks.len());
        assert_l4_checksum_ok(got, shape, PROTO_TCP);
    }
}

#[test]
fn tcpv4_10000_bytes_in_1448_byte_segments() {
    tcp_segmentation_matches_etherparse(Family::V4, None, 10_000, 1448);
}

#[test]
fn tcpv6_10000_bytes_in_1428_byte_segments() {
    tcp_segmentation_matches_etherparse(Family::V6, None, 10_000, 1428);
}

#[test]
fn vlan_tagged_tcp_frames_are_segmented_too() {
    tcp_segmentation_matches_etherparse(Family::V4, Some(10), 5000, 1448);
    tcp_segmentation_matches_etherparse(Family::V6, Some(4094), 5000, 1400);
}

#[test]
fn payload_an_exact_multiple_of_gso_size() {
    tcp_segmentation_matches_etherparse(Family::V4, None, 4 * 1448, 1448);
    tcp_segmentation_matches_etherparse(Family::V6, None, 3 * 1000, 1000);
}

#[test]
fn a_payload_smaller_than_gso_size_is_one_segment() {
    tcp_segmentation_matches_etherparse(Family::V4, None, 1000, 1448);
    tcp_segmentation_matches_etherparse(Family::V4, None, 1448, 1448);
    tcp_segmentation_matches_etherparse(Family::V4, None, 1, 1448);
}

#[test]
fn largest_tcp_frame_in_one_byte_segments() {
    // 65 483 bytes of payload: the largest an IPv4 GSO frame holds with
    // these headers, in gso_size 9000 and in gso_size 1.
    tcp_segmentation_matches_etherparse(Family::V4, None, 65_535 - 52, 9000);
    let shape = Shape {
        family: Family::V4,
        vlan: None,
        id: 0,
    };
    let payload = payload_of(3000);
    let frame = offloaded(
        tcp(shape, SEQ, Flags::default(), &payload),
        shape,
        PROTO_TCP,
        GSO_TCPV4,
        1,
    );
    let segments = collect(&frame).unwrap();
    assert_eq!(segments.len(), 3000);
    for (i, s) in segments.iter().enumerate() {
        assert_eq!(s[66..], payload[i..i + 1]);
        assert_l4_checksum_ok(s, shape, PROTO_TCP);
    }
}

#[test]
fn a_gso_frame_without_payload_is_one_segment() {
    let shape = Shape {
        family: Family::V4,
        vlan: None,
        id: 5,
    };
    let flags = Flags {
        fin: true,
        ..Flags::default()
    };
    let frame = offloaded(
        tcp(shape, SEQ, flags, &[]),
        shape,
        PROTO_TCP,
        GSO_TCPV4,
        1448,
    );
    let segments = collect(&frame).unwrap();
    assert_eq!(segments.len(), 1);
    assert_eq!(segments[0], tcp(shape, SEQ, flags, &[]));
}

fn udp_segmentation_matches_etherparse(family: Family, len: usize, size: u16) {
    let shape = Shape {
        family,
        vlan: None,
        id: IP_ID,
    };
    let payload = payload_of(len);
    let frame = offloaded(udp(shape, &payload), shape, PROTO_UDP, GSO_UDP_L4, size);
    let segments = collect(&frame).unwrap();
    let chunks: Vec<&[u8]> = payload.chunks(usize::from(size)).collect();
    assert_eq!(segments.len(), chunks.len());
    for (i, (got, chunk)) in segments.iter().zip(&chunks).enumerate() {
        let seg_shape = Shape {
            id: IP_ID.wrapping_add(i as u16),
            ..shape
        };
        assert_eq!(got, &udp(seg_shape, chunk), "datagram {i}");
        assert_l4_checksum_ok(got, shape, PROTO_UDP);
    }
}

#[test]
fn udpv4_segmentation_gives_one_datagram_per_segment() {
    udp_segmentation_matches_etherparse(Family::V4, 10_000, 1472);
    udp_segmentation_matches_etherparse(Family::V4, 2 * 1472, 1472);
}

#[test]
fn udpv6_segmentation_gives_one_datagram_per_segment() {
    udp_segmentation_matches_etherparse(Family::V6, 10_000, 1452);
    udp_segmentation_matches_etherparse(Family::V6, 100, 1452);
}

#[test]
fn ufo_cuts_one_udp_datagram_into_ipv4_fragments() {
    let shape = Shape {
        family: Family::V4,
        vlan: None,
        id: 0x4242,
    };
    let payload = payload_of(5000);
    let whole = udp(shape, &payload);
    let frame = offloaded(whole.clone(), shape, PROTO_UDP, GSO_UDP, 1480);
    let segments = collect(&frame).unwrap();
    // The IP payload (UDP header included) in 1480-byte pieces.
    let datagram = &whole[34..];
    let pieces: Vec<&[u8]> = datagram.chunks(1480).collect();
    assert_eq!(segments.len(), pieces.len());
    for (i, (got, piece)) in segments.iter().zip(&pieces).enumerate() {
        let mut h = Ipv4Header::new(0, 64, IpNumber::UDP, SRC4, DST4).unwrap();
        h.identification = 0x4242;
        h.dont_fragment = false;
        h.more_fragments = i + 1 < pieces.len();
        h.fragment_offset = IpFragOffset::try_new((i * 1480 / 8) as u16).unwrap();
        let mut want = Vec::new();
        PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
            .ip(IpHeaders::Ipv4(h, Default::default()))
            .write(&mut want, IpNumber::UDP, piece)
            .unwrap();
        assert_eq!(got, &want, "fragment {i}");
    }
    // A UFO size that is not a multiple of 8 is rounded down.
    let frame = offloaded(whole.clone(), shape, PROTO_UDP, GSO_UDP, 1485);
    let segments = collect(&frame).unwrap();
    assert_eq!(segments[0].len(), 34 + 1480);
    assert_eq!(segments.len(), 4);
}

#[test]
fn fit_gso_lowers_tcp_segments_and_leaves_udp_datagrams() {
    let shape = Shape {
        family: Family::V4,
        vlan: None,
        id: IP_ID,
    };
    let packet = tcp(shape, SEQ, Flags::default(), &payload_of(20_000));
    let mut frame = offloaded(packet, shape, PROTO_TCP, GSO_TCPV4, 8948);
    assert!(fit_gso(&frame.bytes, &mut frame.offload, 1500));
    assert_eq!(frame.offload.gso_size, 1448, "1500 - 20 (IPv4) - 32 (TCP)");
    assert!(
        !fit_gso(&frame.bytes, &mut frame.offload, 1500),
        "fits already"
    );
    for seg in collect(&frame).unwrap() {
        assert!(seg.len() - 14 <= 1500);
    }
    let udp_frame = offloaded(
        udp(shape, &payload_of(20_000)),
        shape,
        PROTO_UDP,
        GSO_UDP_L4,
        8000,
    );
    let mut udp_frame = udp_frame;
    assert!(
        !fit_gso(&udp_frame.bytes, &mut udp_frame.offload, 1500),
        "a UDP segment is a datagram"
    );
    assert_eq!(udp_frame.offload.gso_size, 8000);
}

#[test]
fn a_frame_that_is_not_gso_comes_out_once_with_its_checksum_done() {
    let shape = Shape {
        family: Family::V6,
        vlan: None,
        id: 0,
    };
    let want = tcp(shape, 1, Flags::default(), &payload_of(700));
    let frame = offloaded(want.clone(), shape, PROTO_TCP, 0, 0);
    let segments = collect(&frame).unwrap();
    assert_eq!(segments, vec![want]);
}

#[test]
fn hdr_len_longer_than_the_headers_is_a_hint_and_accepted() {
    // Linux reports the length of the linear buffer, which may hold payload.
    let shape = Shape {
        family: Family::V4,
        vlan: None,
        id: 1,
    };
    let mut frame = offloaded(
        tcp(shape, SEQ, Flags::default(), &payload_of(4000)),
        shape,
        PROTO_TCP,
        GSO_TCPV4,
        1448,
    );
    frame.offload.hdr_len = 200;
    assert_eq!(collect(&frame).unwrap().len(), 3);
    frame.offload.hdr_len = 0;
    assert_eq!(collect(&frame).unwrap().len(), 3);
}

#[test]
fn bytes_after_the_ip_packet_are_not_carried() {
    let shape = Shape {
        family: Family::V4,
        vlan: None,
        id: 1,
    };
    let mut packet = tcp(shape, SEQ, Flags::default(), &payload_of(3000));
    packet.extend_from_slice(&[0xee; 6]);
    let frame = offloaded(packet, shape, PROTO_TCP, GSO_TCPV4, 1448);
    // The partial sum must not count the padding; rebuild it over the packet.
    let segments = collect(&frame).unwrap();
    assert_eq!(segments.len(), 3);
    assert_eq!(segments[2].len(), 66 + 3000 - 2 * 1448);
}

fn tcp4_frame(len: usize) -> Frame {
    let shape = Shape {
        family: Family::V4,
        vlan: None,
        id: 1,
    };
    offloaded(
        tcp(shape, SEQ, Flags::default(), &payload_of(len)),
        shape,
        PROTO_TCP,
        GSO_TCPV4,
        1448,
    )
}

#[test]
fn inconsistent_virtio_headers_are_errors() {
    let mut f = tcp4_frame(3000);
    f.offload.hdr_len = 54; // the TCP options are headers too
    assert_eq!(
        collect(&f),
        Err(OffloadError::HeaderLength {
            declared: 54,
            actual: 66
        })
    );
    f.offload.hdr_len = 5000;
    assert!(matches!(
        collect(&f),
        Err(OffloadError::HeaderLength { .. })
    ));

    let mut f = tcp4_frame(3000);
    f.offload.gso_size = 0;
    assert_eq!(collect(&f), Err(OffloadError::GsoSizeTooSmall(0)));

    for gso_type in [2, 6, 0x7f] {
        let mut f = tcp4_frame(3000);
        f.offload.gso_type = gso_type;
        assert_eq!(collect(&f), Err(OffloadError::UnsupportedGsoType(gso_type)));
    }

    let mut f = tcp4_frame(3000);
    f.offload.gso_type = GSO_TCPV6;
    assert!(matches!(
        collect(&f),
        Err(OffloadError::ProtocolMismatch { .. })
    ));
    f.offload.gso_type = GSO_UDP_L4;
    assert_eq!(
        collect(&f),
        Err(OffloadError::ProtocolMismatch {
            gso_type: GSO_UDP_L4,
            protocol: 6
        })
    );

    let mut f = tcp4_frame(3000);
    f.offload.csum_start = 38;
    assert_eq!(
        collect(&f),
        Err(OffloadError::ChecksumStart {
            declared: 38,
            actual: 34
        })
    );

    let shape = Shape {
        family: Family::V6,
        vlan: None,
        id: 0,
    };
    let f = offloaded(udp(shape, &[1; 3000]), shape, PROTO_UDP, GSO_UDP, 1448);
    assert_eq!(collect(&f), Err(OffloadError::UnsupportedGsoType(GSO_UDP)));
}

#[test]
fn ipv4_fragments_and_bad_lengths_are_refused() {
    let mut f = tcp4_frame(3000);
    f.data_mut()[20] = 0x20; // MF
    assert_eq!(collect(&f), Err(OffloadError::Malformed("IPv4")));
    let mut f = tcp4_frame(3000);
    f.data_mut()[16..18].copy_from_slice(&60_000u16.to_be_bytes());
    assert_eq!(collect(&f), Err(OffloadError::Malformed("IPv4")));
    let mut f = tcp4_frame(3000);
    f.data_mut()[46] = 0x40; // TCP data offset 16 bytes
    assert_eq!(collect(&f), Err(OffloadError::Malformed("TCP")));
}

#[test]
fn cut_short_frames_are_errors_not_panics() {
    let whole = tcp4_frame(3000);
    for len in 0..whole.len() {
        let mut f = Frame::new();
        f.fill(whole.offload, &whole.data()[..len]);
        assert!(collect(&f).is_err(), "{len}-byte frame");
    }
}

#[test]
fn nothing_is_handed_out_before_an_error() {
    let mut f = tcp4_frame(3000);
    f.offload.hdr_len = 1;
    let mut sink = Collect::new();
    assert!(segment(&f.bytes, &f.offload, &mut sink).is_err());
    assert!(sink.got.is_empty());
}

#[test]
fn a_sink_too_small_for_a_segment_is_refused_before_anything_is_handed_out() {
    let f = tcp4_frame(3000);
    let mut sink = Collect::new();
    sink.buffer.truncate(66 + 1000);
    assert_eq!(
        segment(&f.bytes, &f.offload, &mut sink),
        Err(OffloadError::SinkTooSmall {
            need: 66 + 1448,
            have: 66 + 1000
        })
    );
    assert!(sink.got.is_empty());
    let mut plain = Frame::new();
    plain.fill(Offload::NONE, &[0xab; 60]);
    sink.buffer.truncate(59);
    assert!(segment(&plain.bytes, &plain.offload, &mut sink).is_err());
    assert!(sink.got.is_empty());
}

#[test]
fn partial_checksums_are_completed() {
    let shape = Shape {
        family: Family::V4,
        vlan: None,
        id: 0,
    };
    let want = udp(shape, &[1, 2, 3, 4, 5]);
    let mut f = offloaded(want.clone(), shape, PROTO_UDP, 0, 0);
    complete_checksum(&mut f.bytes, &mut f.offload).unwrap();
    assert_eq!(f.data(), &want[..]);
    assert_eq!(f.offload.flags & F_NEEDS_CSUM, 0);

    let shape = Shape {
        family: Family::V6,
        vlan: Some(3),
        id: 0,
    };
    let want = tcp(shape, 9, Flags::default(), &payload_of(999));
    let mut f = offloaded(want.clone(), shape, PROTO_TCP, 0, 0);
    complete_checksum(&mut f.bytes, &mut f.offload).unwrap();
    assert_eq!(f.data(), &want[..]);

    // A frame without the flag is not touched.
    let mut g = Frame::new();
    g.fill(Offload::NONE, &[0xab; 60]);
    complete_checksum(&mut g.bytes, &mut g.offload).unwrap();
    assert_eq!(g.data(), &[0xab; 60]);
}

#[test]
fn a_udp_checksum_computing_to_zero_is_sent_as_ffff() {
    let shape = Shape {
        family: Family::V4,
        vlan: None,
        id: 0,
    };
    // Choose the last payload word so that the checksum comes out 0.
    let mut payload = vec![0x5a; 32];
    payload[30] = 0;
    payload[31] = 0;
    let probe = udp(shape, &payload);
    let c = u16::from_be_bytes([probe[40], probe[41]]);
    payload[30..32].copy_from_slice(&c.to_be_bytes());
    let mut f = offloaded(udp(shape, &payload), shape, PROTO_UDP, 0, 0);
    complete_checksum(&mut f.bytes, &mut f.offload).unwrap();
    assert_eq!(&f.data()[40..42], &[0xff, 0xff]);
    assert_l4_checksum_ok(f.data(), shape, PROTO_UDP);
}

#[test]
fn a_checksum_field_outside_the_frame_is_an_error() {
    let mut f = Frame::new();
    f.fill(
        Offload {
            flags: F_NEEDS_CSUM,
            csum_start: 50,
            csum_offset: 16,
            ..Offload::NONE
        },
        &[0; 60],
    );
    assert_eq!(
        complete_checksum(&mut f.bytes, &mut f.offload),
        Err(OffloadError::ChecksumOutsideFrame {
            start: 50,
            offset: 16,
            len: 60
        })
    );
    assert_ne!(f.offload.flags & F_NEEDS_CSUM, 0, "flag kept on error");
    f.offload.csum_start = u16::MAX;
    f.offload.csum_offset = u16::MAX;
    assert!(complete_checksum(&mut f.bytes, &mut f.offload).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn segments_reassemble_to_the_payload(
        v6 in any::<bool>(),
        is_udp in any::<bool>(),
        vlan in proptest::option::of(1u16..4095),
        len in 0usize..20_000,
        mss in 8u16..9000,
        seed in any::<u8>(),
    ) {
        let shape = Shape {
            family: if v6 { Family::V6 } else { Family::V4 },
            vlan,
            id: u16::from(seed) << 8,
        };
        let payload: Vec<u8> = (0..len).map(|i| (i as u8) ^ seed).collect();
        let (packet, protocol, gso_type, l4_hdr) = if is_udp {
            (udp(shape, &payload), PROTO_UDP, GSO_UDP_L4, 8)
        } else {
            let t = if v6 { GSO_TCPV6 } else { GSO_TCPV4 };
            (tcp(shape, SEQ, Flags::default(), &payload), PROTO_TCP, t, 32)
        };
        let frame = offloaded(packet, shape, protocol, gso_type, mss);
        let segments = collect(&frame).unwrap();
        let headers = l4_offset(shape) + l4_hdr;
        let mut joined = Vec::new();
        for s in &segments {
            prop_assert!(s.len() - headers <= usize::from(mss));
            assert_l4_checksum_ok(s, shape, protocol);
            joined.extend_from_slice(&s[headers..]);
        }
        prop_assert_eq!(joined, payload);
        prop_assert_eq!(segments.len(), len.div_ceil(usize::from(mss)).max(1));
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
        gso_type in 0u8..8,
        hdr_len in any::<u16>(),
        gso_size in any::<u16>(),
        csum_start in any::<u16>(),
        csum_offset in any::<u16>(),
    ) {
        let mut f = Frame::new();
        f.fill(
            Offload { flags: F_NEEDS_CSUM, gso_type, hdr_len, gso_size, csum_start, csum_offset },
            &bytes,
        );
        let _ = segment(&f.bytes, &f.offload, &mut Collect::new());
        let _ = complete_checksum(&mut f.bytes, &mut f.offload);
    }

    #[test]
    fn mutated_headers_never_panic(
        v6 in any::<bool>(),
        is_udp in any::<bool>(),
        edits in proptest::collection::vec((0usize..90, any::<u8>()), 1..6),
        gso_type in 0u8..8,
        gso_size in any::<u16>(),
        cut in 0usize..3000,
    ) {
        let shape = Shape {
            family: if v6 { Family::V6 } else { Family::V4 },
            vlan: None,
            id: 0,
        };
        let payload = payload_of(2000);
        let (packet, protocol) = if is_udp {
            (udp(shape, &payload), PROTO_UDP)
        } else {
            (tcp(shape, SEQ, Flags::default(), &payload), PROTO_TCP)
        };
        let good = offloaded(packet, shape, protocol, gso_type, gso_size);
        let mut bytes = good.data().to_vec();
        for (at, byte) in edits {
            bytes[at] = byte;
        }
        bytes.truncate(bytes.len() - cut.min(bytes.len()));
        let mut f = Frame::new();
        f.fill(good.offload, &bytes);
        if let Ok(n) = segment(&f.bytes, &f.offload, &mut Collect::new()) {
            prop_assert!(n >= 1);
        }
        let _ = complete_checksum(&mut f.bytes, &mut f.offload);
    }
}
