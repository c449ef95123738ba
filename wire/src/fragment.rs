//! IPv4 fragmentation on output, for packets routed toward a smaller MTU
//! without don't-fragment set (RFC 791 §3.2, RFC 1812 §4.2.2.7, RFC 4787
//! REQ-13a).
//!
//! [`fragment_ipv4`] cuts one untagged Ethernet frame carrying IPv4 into
//! frames whose IP packets fit an MTU, in order, each built in a
//! [`SegmentSink`]'s buffer:
//!
//! - every fragment keeps the Ethernet header and the IP header's
//!   identification, TOS, TTL, protocol and addresses;
//! - the data of every fragment but the last is a multiple of 8 bytes;
//! - fragment offset and more-fragments continue those of the input, which
//!   may be a fragment itself;
//! - the first fragment keeps every IP option, later ones only the options
//!   marked "copied" (padded to a 4-byte boundary);
//! - each header checksum is recomputed; total length is per fragment.
//!
//! The transport checksum is not touched: it covers the whole datagram, so
//! it must be complete before fragmenting (no partial checksum, no GSO:
//! finish those with [`crate::offload::complete_checksum`] or
//! [`crate::gso::segment`]). Bytes after the IP packet (Ethernet padding)
//! are not carried. [`dont_fragment`] tells a caller which way a packet that
//! does not fit goes: refused (ICMP fragmentation-needed) or cut.
//!
//! Contract: pure functions over caller-owned bytes — no I/O, no
//! allocation, no panic on any input. A frame that cannot be fragmented is
//! a [`FragmentError`], found before the first fragment is handed out.
//! Headers are read and written through [`EthernetFrame`] and
//! [`Ipv4Packet`]; only the walk over IP options (which options later
//! fragments copy) reads the option bytes itself.

use crate::ethernet::{self, ethertype, EthernetFrame};
use crate::gso::SegmentSink;
use crate::ipv4::{self, Ipv4Packet};
use crate::offload::Offload;

/// IP option type bit: copy the option into every fragment.
const OPTION_COPIED: u8 = 0x80;
/// IP option: end of the option list.
const OPTION_END: u8 = 0;
/// IP option: no operation (one byte).
const OPTION_NOP: u8 = 1;

/// Why a frame could not be fragmented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FragmentError {
    /// Not an untagged Ethernet frame with a well-formed IPv4 packet.
    #[error("not a well-formed IPv4 packet in an untagged Ethernet frame")]
    NotIpv4,
    /// The packet does not fit and has don't-fragment set: refuse it (ICMP
    /// fragmentation-needed) instead.
    #[error(
        "the packet does not fit and has don't-fragment set: answer fragmentation-needed instead"
    )]
    DontFragment,
    /// The frame is GSO or its checksum is partial: finish it first.
    #[error("a GSO frame or a partial checksum cannot be fragmented: segment it or complete its checksum first")]
    Offloaded,
    /// The MTU leaves no room for 8 bytes of data beside the IP header.
    #[error("an MTU of {0} leaves no room for data beside the IP header")]
    MtuTooSmall(u32),
    /// The sink's buffer cannot hold a fragment.
    #[error("a {need}-byte fragment does not fit the sink's {have}-byte buffer")]
    SinkTooSmall {
        /// Bytes the largest fragment needs.
        need: usize,
        /// Bytes the sink's buffer has.
        have: usize,
    },
}

/// Whether the IPv4 packet in `frame`, an untagged Ethernet frame, has
/// don't-fragment set; `None` when `frame` does not carry IPv4 (or is too
/// short to hold its fixed header).
pub fn dont_fragment(frame: &[u8]) -> Option<bool> {
    let ethernet = EthernetFrame::new_checked(frame).ok()?;
    let is_ipv4 =
        ethernet.ethertype() == ethertype::IPV4 && ethernet.payload().len() >= ipv4::HEADER_LEN;
    // The fixed header is there, which is all `dont_frag` reads.
    is_ipv4.then(|| Ipv4Packet::new_unchecked(ethernet.payload()).dont_frag())
}

/// The header later fragments carry: the fixed 20 bytes and the options
/// marked "copied", padded with end-of-list bytes to a 4-byte boundary.
/// `None` when the options are malformed.
fn later_header(header: &[u8]) -> Option<([u8; ipv4::MAX_HEADER_LEN], usize)> {
    let mut out = [0u8; ipv4::MAX_HEADER_LEN];
    let fixed = ipv4::HEADER_LEN;
    out[..fixed].copy_from_slice(&header[..fixed]);
    let mut len = fixed;
    let options = &header[fixed..];
    let mut i = 0;
    while i < options.len() {
        match options[i] {
            OPTION_END => break,
            OPTION_NOP => i += 1,
            kind => {
                let size = usize::from(*options.get(i + 1)?);
                if size < 2 || i + size > options.len() {
                    return None;
                }
                if kind & OPTION_COPIED != 0 {
                    out[len..len + size].copy_from_slice(&options[i..i + size]);
                    len += size;
                }
                i += size;
            }
        }
    }
    // The padding is already zero (end of list).
    let len = len.next_multiple_of(4);
    Ipv4Packet::new_unchecked(&mut out[..]).set_version_ihl((len / 4) as u8);
    Some((out, len))
}

/// Cuts the IPv4 packet in `frame` (an untagged Ethernet frame with offload
/// state `offload`) into fragments that fit `mtu` (IP header included),
/// building each in `sink` and handing it out in order; returns how many
/// there were. A packet that fits already is handed out once, unchanged.
/// `frame` is not changed; fragments carry no offloads.
pub fn fragment_ipv4<S: SegmentSink + ?Sized>(
    frame: &[u8],
    offload: &Offload,
    mtu: u32,
    sink: &mut S,
) -> Result<usize, FragmentError> {
    if offload.is_gso() || offload.needs_csum() {
        return Err(FragmentError::Offloaded);
    }
    let l3 = ethernet::HEADER_LEN;
    if dont_fragment(frame).is_none() {
        return Err(FragmentError::NotIpv4);
    }
    let ip = Ipv4Packet::new_checked(&frame[l3..]).map_err(|_| FragmentError::NotIpv4)?;
    let base_offset = usize::from(ip.frag_offset());
    let data = ip.payload();
    if base_offset + data.len() > usize::from(u16::MAX) {
        return Err(FragmentError::NotIpv4);
    }
    let first_header = ip.header();
    let Some((later, later_len)) = later_header(first_header) else {
        return Err(FragmentError::NotIpv4);
    };
    let have = sink.buffer().len();
    let mtu_bytes = mtu as usize;
    let (ihl, total) = (ip.header_len(), usize::from(ip.total_len()));
    if total <= mtu_bytes {
        if l3 + total > have {
            return Err(FragmentError::SinkTooSmall {
                need: l3 + total,
                have,
            });
        }
        emit(sink, &frame[..l3], first_header, data, None);
        return Ok(1);
    }
    if ip.dont_frag() {
        return Err(FragmentError::DontFragment);
    }
    let room = |header: usize| mtu_bytes.saturating_sub(header) & !7;
    let (first_room, later_room) = (room(ihl), room(later_len));
    if first_room == 0 || later_room == 0 {
        return Err(FragmentError::MtuTooSmall(mtu));
    }
    // The first fragment is the largest: it has the longest header and room.
    let need = l3 + ihl + first_room.min(data.len());
    if need > have {
        return Err(FragmentError::SinkTooSmall { need, have });
    }
    let more_after = ip.more_frags();
    let mut count = 0;
    let mut at = 0;
    while at < data.len() {
        let (header, room) = if at == 0 {
            (first_header, first_room)
        } else {
            (&later[..later_len], later_room)
        };
        let end = (at + room).min(data.len());
        let place = Place {
            more: end < data.len() || more_after,
            // Fits: base_offset + data.len() was checked above.
            offset: (base_offset + at) as u16,
        };
        emit(sink, &frame[..l3], header, &data[at..end], Some(place));
        count += 1;
        at = end;
    }
    Ok(count)
}

/// Where a fragment lies in its datagram: what its flags/offset word says.
#[derive(Debug, Clone, Copy)]
struct Place {
    /// More fragments follow.
    more: bool,
    /// Offset of its data in the datagram, in bytes (a multiple of 8).
    offset: u16,
}

/// Builds `ethernet`, `header` and `data` in the sink's buffer, with the
/// total length and header checksum set, and the flags/offset word set
/// for `place` (DF clear) or, without one, left as `header` has it; then
/// hands it out. The caller checked the room.
fn emit<S: SegmentSink + ?Sized>(
    sink: &mut S,
    ethernet: &[u8],
    header: &[u8],
    data: &[u8],
    place: Option<Place>,
) {
    let l3 = ethernet.len();
    let l4 = l3 + header.len();
    let len = l4 + data.len();
    let s = &mut sink.buffer()[..len];
    s[..l3].copy_from_slice(ethernet);
    s[l3..l4].copy_from_slice(header);
    s[l4..].copy_from_slice(data);
    let mut ip = Ipv4Packet::new_unchecked(&mut s[l3..l4]);
    ip.set_total_len((header.len() + data.len()) as u16);
    if let Some(place) = place {
        ip.set_flags_frag(false, place.more, place.offset);
    }
    ip.fill_checksum();
    sink.emit(len);
}

#[cfg(test)]
mod tests {
    use etherparse::{IpNumber, Ipv4Header, Ipv4Options, PacketBuilder};

    use super::*;
    use crate::testutil::Collect;
    use crate::vnet::F_NEEDS_CSUM;

    const SRC: [u8; 4] = [172, 31, 0, 2];
    const DST: [u8; 4] = [10, 1, 0, 1];
    const ETH_HEADER_LEN: usize = ethernet::HEADER_LEN;

    /// A frame and its offload state, as the daemon holds them.
    struct Frame {
        bytes: Vec<u8>,
        offload: Offload,
    }

    impl Frame {
        fn data(&self) -> &[u8] {
            &self.bytes
        }
    }

    /// An Ethernet frame with a UDP datagram of `payload` bytes in IPv4,
    /// built by etherparse.
    fn udp_frame(payload: usize, options: &[u8], flags_offset: (bool, bool, u16)) -> Frame {
        let mut ip = Ipv4Header::new(0, 63, IpNumber::UDP, SRC, DST).unwrap();
        ip.identification = 0x1234;
        ip.options = Ipv4Options::try_from(options).unwrap();
        ip.dont_fragment = flags_offset.0;
        ip.more_fragments = flags_offset.1;
        ip.fragment_offset = flags_offset.2.try_into().unwrap();
        let body: Vec<u8> = (0..payload).map(|i| (i * 7 + 3) as u8).collect();
        let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ip(etherparse::IpHeaders::Ipv4(ip, Default::default()))
            .udp(44000, 9999);
        let mut bytes = Vec::with_capacity(builder.size(body.len()));
        builder.write(&mut bytes, &body).unwrap();
        Frame {
            bytes,
            offload: Offload::NONE,
        }
    }

    fn fragments(frame: &Frame, mtu: u32) -> Result<Vec<Vec<u8>>, FragmentError> {
        let mut sink = Collect::new();
        let n = fragment_ipv4(&frame.bytes, &frame.offload, mtu, &mut sink)?;
        assert_eq!(
            n,
            sink.got.len(),
            "the count returned is the count handed out"
        );
        Ok(sink.got)
    }

    /// Parses a fragment's IP header with etherparse (which checks its
    /// length fields) and verifies its checksum.
    fn header_of(fragment: &[u8]) -> (Ipv4Header, &[u8]) {
        let (ip, rest) = Ipv4Header::from_slice(&fragment[ETH_HEADER_LEN..]).unwrap();
        assert_eq!(
            ip.header_checksum,
            ip.calc_header_checksum(),
            "header checksum"
        );
        assert_eq!(usize::from(ip.total_len), fragment.len() - ETH_HEADER_LEN);
        (ip, rest)
    }

    /// Puts the fragments' data back together by offset.
    fn reassemble(fragments: &[Vec<u8>]) -> Vec<u8> {
        let mut whole = Vec::new();
        for f in fragments {
            let (ip, data) = header_of(f);
            let at = usize::from(ip.fragment_offset.value()) * 8;
            assert_eq!(at, whole.len(), "fragments are in order, without gaps");
            whole.extend_from_slice(data);
        }
        whole
    }

    #[test]
    fn a_packet_that_fits_keeps_its_flags_word_and_gets_a_right_checksum() {
        // DF, MF and the reserved bit set, offset 64 units (512 bytes), a
        // stale header checksum: the one piece handed out has the same
        // flags word and a correct checksum.
        let mut frame = udp_frame(100, &[], (true, true, 64));
        frame.bytes[ETH_HEADER_LEN + 6] |= 0x80;
        frame.bytes[ETH_HEADER_LEN + 10] ^= 0xff;
        let got = fragments(&frame, 1500).unwrap();
        assert_eq!(got.len(), 1);
        // etherparse has no reserved bit, so the checksum is checked here.
        assert!(crate::checksum::verify(
            &got[0][ETH_HEADER_LEN..ETH_HEADER_LEN + 20]
        ));
        assert_eq!(got[0][ETH_HEADER_LEN + 6..ETH_HEADER_LEN + 8], [0xe0, 64]);
        assert_eq!(
            got[0][..ETH_HEADER_LEN + 10],
            frame.bytes[..ETH_HEADER_LEN + 10]
        );
        assert_eq!(
            got[0][ETH_HEADER_LEN + 12..],
            frame.bytes[ETH_HEADER_LEN + 12..]
        );
    }

    #[test]
    fn a_large_datagram_is_cut_in_order_to_fit_and_reassembles_exactly() {
        let frame = udp_frame(3000, &[], (false, false, 0));
        let got = fragments(&frame, 1400).unwrap();
        assert_eq!(got.len(), 3);
        let original = &frame.data()[ETH_HEADER_LEN + 20..];
        assert_eq!(reassemble(&got), original);
        for (i, f) in got.iter().enumerate() {
            assert_eq!(f[..ETH_HEADER_LEN], frame.data()[..ETH_HEADER_LEN]);
            let (ip, data) = header_of(f);
            assert!(usize::from(ip.total_len) <= 1400);
            assert_eq!(ip.identification, 0x1234);
            assert_eq!((ip.time_to_live, ip.source, ip.destination), (63, SRC, DST));
            assert_eq!(ip.protocol, IpNumber::UDP);
            assert!(!ip.dont_fragment);
            let last = i + 1 == got.len();
            assert_eq!(ip.more_fragments, !last, "MF on all but the last");
            if !last {
                assert_eq!(data.len(), 1376, "(1400 - 20) rounded down to 8");
            }
        }
        // The UDP checksum is the sender's, over the whole datagram.
        let (udp, _) = etherparse::UdpHeader::from_slice(&reassemble(&got)).unwrap();
        let body = &original[8..];
        let want = udp.calc_checksum_ipv4_raw(SRC, DST, body).unwrap();
        assert_eq!(udp.checksum, want);
    }

    #[test]
    fn a_fragment_is_cut_further_and_keeps_its_offset_and_more_fragments() {
        // The middle piece of some datagram: offset 1480, more to come.
        let frame = udp_frame(2000, &[], (false, true, 185));
        let got = fragments(&frame, 1000).unwrap();
        assert_eq!(got.len(), 3);
        let mut at = 1480;
        for f in &got {
            let (ip, data) = header_of(f);
            assert_eq!(usize::from(ip.fragment_offset.value()) * 8, at);
            assert!(ip.more_fragments, "the input had more after it");
            at += data.len();
        }
        assert_eq!(at, 1480 + 2008, "every byte, the UDP header included");
    }

    #[test]
    fn later_fragments_carry_only_the_copied_options() {
        // Record route (7, not copied), NOP, loose source route (0x83,
        // copied), end of list.
        let options = [
            7, 7, 4, 0, 0, 0, 0, // record route, one empty slot
            1, // NOP
            0x83, 7, 8, 10, 0, 0, 9, // LSRR with one address
            0, 0, 0, 0, 0, // end of list, padding to 20 bytes of options
        ];
        let frame = udp_frame(1500, &options, (false, false, 0));
        let got = fragments(&frame, 800).unwrap();
        let (first, _) = header_of(&got[0]);
        assert_eq!(first.options.as_slice(), &options[..]);
        for f in &got[1..] {
            let (ip, _) = header_of(f);
            assert_eq!(ip.options.as_slice(), &[0x83, 7, 8, 10, 0, 0, 9, 0]);
        }
        let original = &frame.data()[ETH_HEADER_LEN + 40..];
        assert_eq!(reassemble(&got), original);
    }

    #[test]
    fn a_packet_that_fits_is_handed_out_unchanged() {
        for df in [false, true] {
            let frame = udp_frame(1000, &[], (df, false, 0));
            assert_eq!(
                fragments(&frame, 1500).unwrap(),
                vec![frame.data().to_vec()]
            );
        }
    }

    #[test]
    fn refusals() {
        let df = udp_frame(3000, &[], (true, false, 0));
        assert_eq!(fragments(&df, 1400), Err(FragmentError::DontFragment));

        let mut partial = udp_frame(3000, &[], (false, false, 0));
        partial.offload.flags = F_NEEDS_CSUM;
        assert_eq!(fragments(&partial, 1400), Err(FragmentError::Offloaded));

        let plain = udp_frame(3000, &[], (false, false, 0));
        assert_eq!(fragments(&plain, 27), Err(FragmentError::MtuTooSmall(27)));
        assert_eq!(fragments(&plain, 28).unwrap().len(), 376, "8 bytes each");
    }

    #[test]
    fn a_sink_too_small_for_a_fragment_is_refused_before_anything_is_handed_out() {
        let plain = udp_frame(3000, &[], (false, false, 0));
        let mut sink = Collect::new();
        sink.buffer.truncate(1000);
        let r = fragment_ipv4(&plain.bytes, &plain.offload, 1400, &mut sink);
        assert_eq!(
            r,
            Err(FragmentError::SinkTooSmall {
                need: 14 + 20 + 1376,
                have: 1000
            })
        );
        assert!(sink.got.is_empty());
    }

    #[test]
    fn dont_fragment_reads_df_of_ipv4_only() {
        assert_eq!(
            dont_fragment(udp_frame(10, &[], (true, false, 0)).data()),
            Some(true)
        );
        assert_eq!(
            dont_fragment(udp_frame(10, &[], (false, false, 0)).data()),
            Some(false)
        );
        let mut arp = udp_frame(10, &[], (true, false, 0)).bytes;
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(dont_fragment(&arp), None);
        assert_eq!(dont_fragment(&arp[..20]), None);
    }

    #[test]
    fn no_panic_on_cut_short_or_corrupt_frames() {
        let frame = udp_frame(600, &[0x83, 7, 8, 10, 0, 0, 9, 0], (false, false, 0));
        let whole = frame.data().to_vec();
        for len in 0..whole.len() {
            let cut = Frame {
                bytes: whole[..len].to_vec(),
                offload: Offload::NONE,
            };
            let _ = fragments(&cut, 100);
        }
        for at in ETH_HEADER_LEN..ETH_HEADER_LEN + 28 {
            for value in [0u8, 1, 2, 0x45, 0x4f, 0x83, 0xff] {
                let mut bent = whole.clone();
                bent[at] = value;
                let cut = Frame {
                    bytes: bent,
                    offload: Offload::NONE,
                };
                let _ = fragments(&cut, 100);
            }
        }
    }
}
