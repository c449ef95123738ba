use std::net::Ipv4Addr;

use super::*;
use crate::ipv4::Ipv4Repr;
use crate::testutil::Collect;

const SRC: Ipv4Addr = Ipv4Addr::new(172, 32, 0, 2);
const DST: Ipv4Addr = Ipv4Addr::new(172, 32, 0, 3);
const MSS: usize = 1406;
/// Room of a datapath buffer for the head.
const ROOM: usize = 65_600;

/// How a test segment is made.
#[derive(Clone, Copy)]
struct Seg {
    seq: u32,
    ident: u16,
    len: usize,
    flags: TcpFlags,
    src_port: u16,
    timestamp: Option<u32>,
    dont_frag: bool,
}

impl Seg {
    /// The `i`-th full-sized segment of one flow with timestamps.
    fn nth(i: usize) -> Seg {
        Seg {
            seq: 1000 + (i * MSS) as u32,
            ident: 7 + i as u16,
            len: MSS,
            flags: TcpFlags::ACK,
            src_port: 40000,
            timestamp: Some(5),
            dont_frag: true,
        }
    }

    /// The frame, checksums complete; the payload bytes depend on the
    /// sequence number, so a misplaced copy shows.
    fn build(&self) -> Vec<u8> {
        let options = if self.timestamp.is_some() { 12 } else { 0 };
        let tcp_len = tcp::HEADER_LEN + options + self.len;
        let mut f = vec![0u8; TCP + tcp_len];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 3]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[12..14].copy_from_slice(&ethertype::IPV4.to_be_bytes());
        let repr = Ipv4Repr {
            src: SRC,
            dst: DST,
            protocol: protocol::TCP,
            payload_len: tcp_len,
            ttl: 64,
            ident: self.ident,
            dont_frag: self.dont_frag,
            tos: 0,
        };
        repr.emit(&mut Ipv4Packet::new_unchecked(&mut f[IP..TCP]))
            .unwrap();
        let t = &mut f[TCP..];
        t[0..2].copy_from_slice(&self.src_port.to_be_bytes());
        t[2..4].copy_from_slice(&5201u16.to_be_bytes());
        t[4..8].copy_from_slice(&self.seq.to_be_bytes());
        t[8..12].copy_from_slice(&77u32.to_be_bytes());
        t[12] = (((tcp::HEADER_LEN + options) / 4) << 4) as u8;
        t[13] = self.flags.0;
        t[14..16].copy_from_slice(&500u16.to_be_bytes());
        if let Some(ts) = self.timestamp {
            t[20..24].copy_from_slice(&TIMESTAMP_OPTIONS);
            t[24..28].copy_from_slice(&ts.to_be_bytes());
            t[28..32].copy_from_slice(&9u32.to_be_bytes());
        }
        let payload_at = tcp::HEADER_LEN + options;
        for (i, b) in t[payload_at..].iter_mut().enumerate() {
            *b = (self.seq as usize + i) as u8;
        }
        TcpPacket::new_unchecked(&mut f[TCP..]).fill_checksum(SRC, DST);
        f
    }
}

/// A head buffer: the frame at the start of a datapath-sized buffer.
fn head_buffer(frame: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; ROOM];
    buf[..frame.len()].copy_from_slice(frame);
    buf
}

/// Merges `segments` in order as a datapath would: returns the merged
/// frame, its offload state and how many of the segments were merged (the
/// rest are refused at the first refusal).
fn merge(segments: &[Vec<u8>]) -> (Vec<u8>, Offload, usize) {
    let mut merge = TcpMerge::start(&segments[0], &Offload::NONE).expect("head starts a merge");
    let mut buf = head_buffer(&segments[0]);
    let mut taken = 1;
    for s in &segments[1..] {
        if !merge.append(&mut buf, s, &Offload::NONE) {
            break;
        }
        taken += 1;
    }
    let offload = merge.finish(&mut buf);
    (buf[..merge.len()].to_vec(), offload, taken)
}

/// Cuts a merged frame back into segments with the GSO code.
fn resegment(frame: &[u8], offload: &Offload) -> Vec<Vec<u8>> {
    let mut sink = Collect::new();
    crate::gso::segment(frame, offload, &mut sink).expect("merged frame segments");
    sink.got
}

#[test]
fn in_order_equal_segments_merge_into_one_gso_frame_that_segments_back_byte_for_byte() {
    let mut segs: Vec<Vec<u8>> = (0..10).map(|i| Seg::nth(i).build()).collect();
    segs.push(
        Seg {
            len: 300,
            flags: TcpFlags::ACK | TcpFlags::PSH,
            ..Seg::nth(10)
        }
        .build(),
    );
    let (frame, offload, taken) = merge(&segs);
    assert_eq!(taken, 11);
    assert_eq!(frame.len(), segs[0].len() + 9 * MSS + 300);
    assert_eq!(offload.gso_kind(), vnet::GSO_TCPV4);
    assert!(offload.needs_csum());
    assert_eq!(usize::from(offload.gso_size), MSS);
    assert_eq!(usize::from(offload.hdr_len), TCP + 32);
    let ip = Ipv4Packet::new_checked(&frame[IP..]).unwrap();
    assert_eq!(usize::from(ip.total_len()), frame.len() - IP);
    assert!(ip.verify_checksum());
    assert_eq!(ip.ident(), 7);
    let tcp = TcpPacket::new_checked(&frame[TCP..]).unwrap();
    assert_eq!(tcp.flags(), TcpFlags::ACK | TcpFlags::PSH);
    assert_eq!(tcp.seq(), 1000);
    // Finishing the partial checksum gives the checksum of the whole.
    let mut done = frame.clone();
    let mut plain = Offload {
        gso_type: vnet::GSO_NONE,
        gso_size: 0,
        ..offload
    };
    crate::offload::complete_checksum(&mut done, &mut plain).unwrap();
    assert_eq!(
        checksum::l4_checksum(SRC, DST, protocol::TCP, &done[TCP..]),
        0
    );
    assert_eq!(resegment(&frame, &offload), segs);
}

#[test]
fn segments_without_options_merge_too() {
    let segs: Vec<Vec<u8>> = (0..3)
        .map(|i| {
            Seg {
                timestamp: None,
                ..Seg::nth(i)
            }
            .build()
        })
        .collect();
    let (frame, offload, taken) = merge(&segs);
    assert_eq!(taken, 3);
    assert_eq!(usize::from(offload.hdr_len), TCP + 20);
    assert_eq!(resegment(&frame, &offload), segs);
}

#[test]
fn a_gap_in_the_sequence_stops_the_merge() {
    let segs = vec![
        Seg::nth(0).build(),
        Seg::nth(1).build(),
        Seg {
            ident: 9,
            ..Seg::nth(3)
        }
        .build(),
    ];
    let (frame, offload, taken) = merge(&segs);
    assert_eq!(taken, 2);
    assert_eq!(resegment(&frame, &offload), segs[..2]);
}

#[test]
fn a_repeated_segment_is_not_merged() {
    let segs = vec![
        Seg::nth(0).build(),
        Seg::nth(1).build(),
        Seg::nth(1).build(),
    ];
    assert_eq!(merge(&segs).2, 2);
}

#[test]
fn an_ip_identification_that_does_not_follow_stops_the_merge() {
    let segs = vec![
        Seg::nth(0).build(),
        Seg {
            ident: 100,
            ..Seg::nth(1)
        }
        .build(),
    ];
    assert_eq!(merge(&segs).2, 1);
}

#[test]
fn a_flag_change_stops_the_merge() {
    for flags in [
        TcpFlags::ACK | TcpFlags::FIN,
        TcpFlags::ACK | TcpFlags::URG,
        TcpFlags::ACK | TcpFlags::RST,
        TcpFlags::ACK | TcpFlags::CWR,
        TcpFlags::ACK | TcpFlags::ECE,
    ] {
        let segs = vec![
            Seg::nth(0).build(),
            Seg {
                flags,
                ..Seg::nth(1)
            }
            .build(),
        ];
        assert_eq!(merge(&segs).2, 1, "flags {flags:?}");
    }
}

#[test]
fn a_push_segment_is_merged_last() {
    let segs = vec![
        Seg::nth(0).build(),
        Seg {
            flags: TcpFlags::ACK | TcpFlags::PSH,
            ..Seg::nth(1)
        }
        .build(),
        Seg::nth(2).build(),
    ];
    let (frame, offload, taken) = merge(&segs);
    assert_eq!(taken, 2);
    assert_eq!(resegment(&frame, &offload), segs[..2]);
}

#[test]
fn a_head_that_is_not_a_plain_ack_with_data_starts_nothing() {
    for flags in [
        TcpFlags::ACK | TcpFlags::PSH,
        TcpFlags::SYN | TcpFlags::ACK,
        TcpFlags::ACK | TcpFlags::FIN,
    ] {
        let head = Seg {
            flags,
            ..Seg::nth(0)
        }
        .build();
        assert_eq!(TcpMerge::start(&head, &Offload::NONE), None, "{flags:?}");
    }
    let bare_ack = Seg {
        len: 0,
        ..Seg::nth(0)
    }
    .build();
    assert_eq!(TcpMerge::start(&bare_ack, &Offload::NONE), None);
    let no_df = Seg {
        dont_frag: false,
        ..Seg::nth(0)
    }
    .build();
    assert_eq!(TcpMerge::start(&no_df, &Offload::NONE), None);
}

#[test]
fn another_flow_is_not_merged() {
    let segs = vec![
        Seg::nth(0).build(),
        Seg {
            src_port: 40001,
            ..Seg::nth(1)
        }
        .build(),
    ];
    assert_eq!(merge(&segs).2, 1);
    let mut other_mac = Seg::nth(1).build();
    other_mac[5] = 9;
    assert_eq!(merge(&[Seg::nth(0).build(), other_mac]).2, 1);
}

#[test]
fn a_different_timestamp_stops_the_merge() {
    let segs = vec![
        Seg::nth(0).build(),
        Seg {
            timestamp: Some(6),
            ..Seg::nth(1)
        }
        .build(),
    ];
    assert_eq!(merge(&segs).2, 1);
}

#[test]
fn options_other_than_timestamps_start_nothing() {
    let mut head = Seg::nth(0).build();
    // A SACK-permitted option in place of the first two NOPs.
    head[TCP + 20..TCP + 22].copy_from_slice(&[4, 2]);
    TcpPacket::new_unchecked(&mut head[TCP..]).fill_checksum(SRC, DST);
    assert_eq!(TcpMerge::start(&head, &Offload::NONE), None);
}

#[test]
fn a_larger_segment_is_refused_and_a_smaller_one_ends_the_merge() {
    let larger = Seg {
        len: MSS + 1,
        ..Seg::nth(1)
    }
    .build();
    assert_eq!(merge(&[Seg::nth(0).build(), larger]).2, 1);

    let segs = vec![
        Seg::nth(0).build(),
        Seg {
            len: 100,
            ..Seg::nth(1)
        }
        .build(),
        Seg {
            seq: Seg::nth(1).seq + 100,
            ..Seg::nth(2)
        }
        .build(),
    ];
    let (frame, offload, taken) = merge(&segs);
    assert_eq!(taken, 2);
    assert_eq!(resegment(&frame, &offload), segs[..2]);
}

#[test]
fn a_damaged_segment_is_not_merged() {
    let mut damaged = Seg::nth(1).build();
    let last = damaged.len() - 1;
    damaged[last] ^= 0xff;
    assert_eq!(merge(&[Seg::nth(0).build(), damaged.clone()]).2, 1);
    assert_eq!(TcpMerge::start(&damaged, &Offload::NONE), None);
    let mut bad_ip = Seg::nth(1).build();
    bad_ip[IP + 8] = 63; // TTL changed, IP checksum not updated
    assert_eq!(TcpMerge::start(&bad_ip, &Offload::NONE), None);
}

#[test]
fn a_padded_or_offloaded_frame_is_not_merged() {
    let mut padded = Seg::nth(1).build();
    padded.extend_from_slice(&[0; 4]);
    assert_eq!(merge(&[Seg::nth(0).build(), padded]).2, 1);
    let partial = Offload {
        flags: vnet::F_NEEDS_CSUM,
        csum_start: TCP as u16,
        csum_offset: tcp::CHECKSUM_OFFSET as u16,
        ..Offload::NONE
    };
    let head = Seg::nth(0).build();
    assert_eq!(TcpMerge::start(&head, &partial), None);
    let mut merge = TcpMerge::start(&head, &Offload::NONE).unwrap();
    let mut buf = head_buffer(&head);
    assert!(!merge.append(&mut buf, &Seg::nth(1).build(), &partial));
}

#[test]
fn a_merge_never_exceeds_64_kb() {
    let segs: Vec<Vec<u8>> = (0..60).map(|i| Seg::nth(i).build()).collect();
    let (frame, offload, taken) = merge(&segs);
    // 46 segments of 1406 bytes with 52 bytes of IP and TCP headers fit
    // in 65535; a 47th would not.
    let fit = (MAX_IP_LEN - 52) / MSS;
    assert_eq!(taken, fit);
    assert!(frame.len() - IP <= MAX_IP_LEN);
    assert_eq!(resegment(&frame, &offload), segs[..fit]);
}

#[test]
fn a_merge_stops_where_the_head_buffer_ends() {
    let head = Seg::nth(0).build();
    let mut merge = TcpMerge::start(&head, &Offload::NONE).unwrap();
    let mut buf = vec![0u8; head.len() + MSS - 1];
    buf[..head.len()].copy_from_slice(&head);
    assert!(!merge.append(&mut buf, &Seg::nth(1).build(), &Offload::NONE));
    assert_eq!(merge.segments(), 1);
}

#[test]
fn non_tcp_frames_start_nothing() {
    let mut udp = Seg::nth(0).build();
    udp[IP + 9] = protocol::UDP;
    Ipv4Packet::new_unchecked(&mut udp[IP..TCP]).fill_checksum();
    assert_eq!(TcpMerge::start(&udp, &Offload::NONE), None);
    let mut arp = Seg::nth(0).build();
    arp[12..14].copy_from_slice(&ethertype::ARP.to_be_bytes());
    assert_eq!(TcpMerge::start(&arp, &Offload::NONE), None);
    assert_eq!(TcpMerge::start(&[0u8; 10], &Offload::NONE), None);
}

#[test]
fn a_lone_head_is_left_as_it_was() {
    let head = Seg::nth(0).build();
    let merge = TcpMerge::start(&head, &Offload::NONE).unwrap();
    let mut buf = head_buffer(&head);
    assert_eq!(merge.finish(&mut buf), Offload::NONE);
    assert_eq!(&buf[..head.len()], &head[..]);
}

#[test]
fn a_refused_segment_leaves_head_and_segment_unchanged() {
    let head = Seg::nth(0).build();
    let next = Seg::nth(1).build();
    let mut merge = TcpMerge::start(&head, &Offload::NONE).unwrap();
    let mut buf = head_buffer(&head);
    assert!(merge.append(&mut buf, &next, &Offload::NONE));
    let before = (merge, buf.clone());
    let gap = Seg::nth(5).build();
    assert!(!merge.append(&mut buf, &gap, &Offload::NONE));
    assert_eq!((merge, buf), before);
}
