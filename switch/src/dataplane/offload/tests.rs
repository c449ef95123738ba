//! Tests of the glue: pieces built in the scratch frame carry no offloads,
//! and through the bridge a port without offloads gets segments and
//! finished checksums while one with offloads gets the frame as it came.
//! The algorithms themselves are tested in `yard-wire` (`gso`, `fragment`).

use etherparse::{
    IpNumber, Ipv4Header, Ipv6FlowLabel, Ipv6Header, PacketBuilder, TcpOptionElement,
};
use yard_wire::checksum::{add, ones_sum};
use yard_wire::offload::Offload;
use yard_wire::vnet::{F_NEEDS_CSUM, GSO_TCPV4};

use super::*;

const SRC_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const DST_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const SRC4: [u8; 4] = [10, 0, 0, 1];
const DST4: [u8; 4] = [10, 0, 0, 2];
const SRC6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const DST6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const SEQ: u32 = 0xffff_f000;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

/// Where a test packet's IP header is, and which family it is.
#[derive(Debug, Clone, Copy)]
struct Shape {
    v6: bool,
    vlan: bool,
}

const V4: Shape = Shape {
    v6: false,
    vlan: false,
};

fn l4_offset(shape: Shape) -> usize {
    let l3 = if shape.vlan { 18 } else { 14 };
    l3 + if shape.v6 { 40 } else { 20 }
}

/// A TCP/IPv4 packet with a timestamp option (as Linux sends), ACK set:
/// 66 bytes of headers.
fn tcp4(id: u16, payload: &[u8]) -> Vec<u8> {
    let mut ip = Ipv4Header::new(0, 64, IpNumber::TCP, SRC4, DST4).unwrap();
    ip.identification = id;
    let mut out = Vec::new();
    PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
        .ip(etherparse::IpHeaders::Ipv4(ip, Default::default()))
        .tcp(40_000, 5201, SEQ, 502)
        .ack(0x1234_5678)
        .options(&[
            TcpOptionElement::Noop,
            TcpOptionElement::Noop,
            TcpOptionElement::Timestamp(11, 22),
        ])
        .unwrap()
        .write(&mut out, payload)
        .unwrap();
    out
}

/// A UDP/IPv6 packet.
fn udp6(payload: &[u8]) -> Vec<u8> {
    let ip = Ipv6Header {
        traffic_class: 0,
        flow_label: Ipv6FlowLabel::try_new(7).unwrap(),
        payload_length: 0,
        next_header: IpNumber::UDP,
        hop_limit: 64,
        source: SRC6,
        destination: DST6,
    };
    let mut out = Vec::new();
    PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
        .ip(etherparse::IpHeaders::Ipv6(ip, Default::default()))
        .udp(40_000, 4789)
        .write(&mut out, payload)
        .unwrap();
    out
}

/// The folded pseudo-header sum for `packet`'s L4 part.
fn pseudo_sum(packet: &[u8], shape: Shape, protocol: u8) -> u16 {
    let l4 = l4_offset(shape);
    let l3 = l4 - if shape.v6 { 40 } else { 20 };
    let addrs = if shape.v6 {
        &packet[l3 + 8..l3 + 40]
    } else {
        &packet[l3 + 12..l3 + 20]
    };
    add(
        add(ones_sum(addrs), u16::from(protocol)),
        (packet.len() - l4) as u16,
    )
}

/// Turns a fully checksummed packet into what a TAP with offloads hands
/// over: partial checksum and its offload state.
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

/// A TCP/IPv4 TSO frame of `len` payload bytes in 1448-byte segments.
fn tcp4_frame(len: usize) -> Frame {
    offloaded(tcp4(1, &payload_of(len)), V4, PROTO_TCP, GSO_TCPV4, 1448)
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
    if !shape.v6 {
        let l3 = l4 - 20;
        assert_eq!(ones_sum(&seg[l3..l4]), 0xffff, "IPv4 header checksum");
    }
}

#[test]
fn segments_built_in_the_scratch_frame_carry_no_offloads() {
    let frame = tcp4_frame(10_000);
    let mut scratch = Frame::new();
    let mut got = Vec::new();
    let n = segment(&frame, &mut scratch, |s| {
        got.push((s.offload, s.data().to_vec()))
    })
    .unwrap();
    assert_eq!(n, 7);
    assert_eq!(got.len(), 7, "the count returned is the count handed out");
    let mut joined = Vec::new();
    for (offload, s) in &got {
        assert_eq!(*offload, Offload::NONE, "segments carry no offloads");
        assert_l4_checksum_ok(s, V4, PROTO_TCP);
        joined.extend_from_slice(&s[66..]);
    }
    assert_eq!(joined, payload_of(10_000));
}

#[test]
fn segments_merged_in_place_give_back_the_gso_frame_they_were_cut_from() {
    // A DF TSO frame, as Linux sends TCP.
    let mut packet = tcp4(1, &payload_of(10_000));
    packet[20] |= 0x40;
    yard_wire::ipv4::Ipv4Packet::new_unchecked(&mut packet[14..34]).fill_checksum();
    let tso = offloaded(packet, V4, PROTO_TCP, GSO_TCPV4, 1448);
    let mut scratch = Frame::new();
    let mut pieces: Vec<Frame> = Vec::new();
    segment(&tso, &mut scratch, |s| {
        let mut piece = Frame::new();
        piece.fill(s.offload, s.data());
        pieces.push(piece);
    })
    .unwrap();
    assert_eq!(pieces.len(), 7);

    let (head, rest) = pieces.split_at_mut(1);
    let mut merge = merge_start(&head[0]).expect("a plain DF segment heads a merge");
    for piece in rest.iter() {
        assert!(merge_append(&mut head[0], &mut merge, piece));
    }
    merge_finish(&mut head[0], &merge);
    assert_eq!(merge.segments(), 7);
    assert_eq!(head[0].offload, tso.offload);
    assert_eq!(head[0].data(), tso.data());
}

#[test]
fn a_segment_that_does_not_continue_the_head_leaves_both_unchanged() {
    let mut packet = tcp4(1, &payload_of(1448));
    packet[20] |= 0x40;
    yard_wire::ipv4::Ipv4Packet::new_unchecked(&mut packet[14..34]).fill_checksum();
    let mut head = Frame::new();
    head.fill(Offload::NONE, &packet);
    let mut merge = merge_start(&head).unwrap();
    // The same segment again: a retransmission, not the next one.
    let again = {
        let mut f = Frame::new();
        f.fill(Offload::NONE, &packet);
        f
    };
    assert!(!merge_append(&mut head, &mut merge, &again));
    merge_finish(&mut head, &merge);
    assert_eq!(head.data(), &packet[..]);
    assert_eq!(head.offload, Offload::NONE);
}

#[test]
fn fragments_built_in_the_scratch_frame_carry_no_offloads() {
    let mut packet = Vec::new();
    PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
        .ipv4(SRC4, DST4, 64)
        .udp(1, 2)
        .write(&mut packet, &payload_of(3000))
        .unwrap();
    packet[20] = 0; // DF off
    let mut frame = Frame::new();
    frame.fill(Offload::NONE, &packet);
    let mut scratch = Frame::new();
    let mut got = Vec::new();
    let n = fragment_ipv4(&frame, 1400, &mut scratch, |f| {
        got.push((f.offload, f.len()))
    })
    .unwrap();
    assert_eq!(n, 3);
    assert_eq!(
        got,
        vec![
            (Offload::NONE, 14 + 20 + 1376),
            (Offload::NONE, 14 + 20 + 1376),
            (Offload::NONE, 14 + 20 + 3008 - 2 * 1376)
        ]
    );
}

#[test]
fn the_glue_finishes_and_fits_in_place() {
    let mut frame = offloaded(
        udp6(&payload_of(300)),
        Shape {
            v6: true,
            vlan: false,
        },
        PROTO_UDP,
        0,
        0,
    );
    complete_checksum(&mut frame).unwrap();
    assert_eq!(frame.data(), &udp6(&payload_of(300))[..]);
    assert!(!frame.offload.needs_csum());

    let mut tso = offloaded(tcp4(1, &payload_of(20_000)), V4, PROTO_TCP, GSO_TCPV4, 8948);
    assert!(fit_gso(&mut tso, 1500));
    assert_eq!(tso.offload.gso_size, 1448, "1500 - 20 (IPv4) - 32 (TCP)");
}

/// Through the bridge: a port that takes no offloads gets segments with
/// full checksums (tagged on a trunk); a port that takes them gets the GSO
/// frame as it came; a frame software cannot segment is counted.
mod through_the_bridge {
    use std::sync::{Arc, Mutex};

    use yard_ctl::api::NetworkSpec;

    use super::*;
    use crate::dataplane::bridge::Bridge;
    use crate::dataplane::clock::Millis;
    use crate::dataplane::port::memory::{MemoryPort, MemoryQueues};
    use crate::dataplane::port::{Port, PortId};
    use crate::dataplane::verdict::DropReason;

    /// A memory port that, like a tunnel, takes no offloads.
    struct Plain(MemoryPort);

    impl Port for Plain {
        fn recv(&mut self, frame: &mut Frame) -> std::io::Result<bool> {
            self.0.recv(frame)
        }
        fn send(&mut self, frame: &mut Frame) -> std::io::Result<()> {
            assert!(!frame.offload.is_gso(), "a GSO frame reached a plain port");
            assert_eq!(frame.offload.flags & F_NEEDS_CSUM, 0);
            self.0.send(frame)
        }
        fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
            None
        }
        fn share(&self) -> std::io::Result<Box<dyn Port>> {
            Err(std::io::ErrorKind::Unsupported.into())
        }
        fn accepts_gso(&self) -> bool {
            false
        }
        fn accepts_partial_csum(&self) -> bool {
            false
        }
    }

    type Queues = Arc<Mutex<MemoryQueues>>;

    struct Lab {
        bridge: Bridge,
        from: PortId,
        plain: (PortId, Queues),
        trunk: (PortId, Queues),
        offloading: (PortId, Queues),
    }

    fn lab() -> Lab {
        let mut bridge = Bridge::new(100);
        let mut spec = NetworkSpec::new("n");
        spec.vlan = Some(10);
        bridge.add_network(&spec).unwrap();
        let mut add = |name: &str, port: Box<dyn Port>, trunk: bool| {
            let attachment = if trunk {
                bridge.trunk(&["n"]).unwrap()
            } else {
                bridge.access("n").unwrap()
            };
            bridge.add_port(name, port, attachment, 1500).unwrap()
        };
        let (from, _) = MemoryPort::new();
        let from = add("from", Box::new(from), false);
        let (p, plain_q) = MemoryPort::new();
        let plain = add("plain", Box::new(Plain(p)), false);
        let (p, trunk_q) = MemoryPort::new();
        let trunk = add("trunk", Box::new(Plain(p)), true);
        let (p, off_q) = MemoryPort::new();
        let offloading = add("offloading", Box::new(p), false);
        Lab {
            bridge,
            from,
            plain: (plain, plain_q),
            trunk: (trunk, trunk_q),
            offloading: (offloading, off_q),
        }
    }

    fn sent(q: &Queues) -> Vec<(Offload, Vec<u8>)> {
        std::mem::take(&mut q.lock().unwrap().outbound)
    }

    #[test]
    fn gso_frames_are_segmented_only_for_ports_without_offloads() {
        let mut lab = lab();
        let shape = V4;
        let payload = payload_of(10_000);
        let mut frame = offloaded(tcp4(9, &payload), shape, PROTO_TCP, GSO_TCPV4, 1448);
        let original = (frame.offload, frame.data().to_vec());
        // Unknown destination: flooded to all three.
        lab.bridge.process(lab.from, &mut frame, Millis(1));
        assert_eq!(
            (frame.offload, frame.data().to_vec()),
            original,
            "input kept"
        );

        let plain = sent(&lab.plain.1);
        assert_eq!(plain.len(), 7);
        let mut joined = Vec::new();
        for (vnet, s) in &plain {
            assert_eq!(*vnet, Offload::NONE);
            assert!(s.len() <= 1514);
            assert_l4_checksum_ok(s, shape, PROTO_TCP);
            joined.extend_from_slice(&s[66..]);
        }
        assert_eq!(joined, payload);

        let tagged = Shape {
            vlan: true,
            ..shape
        };
        let trunk = sent(&lab.trunk.1);
        assert_eq!(trunk.len(), 7);
        for ((_, t), (_, p)) in trunk.iter().zip(&plain) {
            assert_eq!(&t[12..16], &[0x81, 0, 0, 10]);
            assert_eq!(t[16..], p[12..]);
            assert_l4_checksum_ok(t, tagged, PROTO_TCP);
        }

        assert_eq!(sent(&lab.offloading.1), vec![original]);

        let stats = |id: PortId| lab.bridge.port(id).unwrap().counters.clone();
        assert_eq!(stats(lab.plain.0).tx_packets, 7);
        assert_eq!(stats(lab.trunk.0).tx_packets, 7);
        assert_eq!(stats(lab.offloading.0).tx_packets, 1);
    }

    #[test]
    fn partial_checksums_are_completed_only_for_ports_without_offloads() {
        let mut lab = lab();
        let shape = Shape {
            v6: true,
            vlan: false,
        };
        let want = udp6(&payload_of(300));
        let mut frame = offloaded(want.clone(), shape, PROTO_UDP, 0, 0);
        let partial = (frame.offload, frame.data().to_vec());
        // The offloading port comes last in the flood, after the checksum was
        // completed in place for the plain ones: it gets a correct frame.
        lab.bridge.process(lab.from, &mut frame, Millis(1));
        let plain = sent(&lab.plain.1);
        assert_eq!(plain.len(), 1);
        assert_eq!(plain[0].1, want);
        assert_eq!(plain[0].0.flags & F_NEEDS_CSUM, 0);
        let off = sent(&lab.offloading.1);
        assert_eq!(off.len(), 1);
        assert_l4_checksum_ok(&off[0].1, shape, PROTO_UDP);
        assert_ne!(partial.1, want, "the input really was partial");
    }

    #[test]
    fn a_malformed_gso_frame_is_counted_as_bad_offload() {
        let mut lab = lab();
        let mut frame = tcp4_frame(3000);
        frame.offload.hdr_len = 20;
        lab.bridge.process(lab.from, &mut frame, Millis(1));
        assert!(sent(&lab.plain.1).is_empty());
        let drops = |id: PortId| {
            lab.bridge.port(id).unwrap().counters.drops[DropReason::BadOffload.index()]
        };
        assert_eq!(drops(lab.plain.0), 1);
        assert_eq!(drops(lab.trunk.0), 1);
        assert_eq!(drops(lab.offloading.0), 0);
        assert_eq!(sent(&lab.offloading.1).len(), 1, "passed on as it is");
    }
}
