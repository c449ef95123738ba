//! GSO in software: cutting a frame that is one large TCP or UDP send into
//! the MTU-sized frames a device with segmentation offload would have sent.
//!
//! [`segment`] takes a frame's bytes and its [`Offload`] state and hands out
//! plain frames with full checksums, one at a time, through a
//! [`SegmentSink`]: TCP over IPv4 (`GSO_TCPV4`) and IPv6 (`GSO_TCPV6`), UDP
//! segmentation (`GSO_UDP_L4`, "USO", IPv4 and IPv6: one datagram per
//! segment) and legacy UDP fragmentation (`GSO_UDP`, "UFO", IPv4 only: one
//! datagram, IP fragments). Up to two VLAN tags in front are carried into
//! every segment. A frame that is not GSO is handed out once, its partial
//! checksum (if any) completed. [`fit_gso`] lowers a TCP GSO frame's segment
//! size to fit an MTU.
//!
//! Contract: pure functions over caller-owned bytes — no I/O, no allocation
//! (each piece is built directly in the sink's buffer, which the daemon
//! points at a scratch frame allocated once), no panic on any input. A frame
//! that cannot be handled is an [`OffloadError`], found before the first
//! piece is handed out, so a caller never sends half a frame. Pieces carry
//! no offloads.
//!
//! What a segment looks like (as Linux's `tcp_gso_segment`/`inet_gso_segment`
//! make them): the original headers, then at most `gso_size` payload bytes;
//! IPv4 total length and header checksum recomputed and the identification
//! incremented per segment (kept for UFO fragments, which get offset and MF
//! instead, DF cleared); IPv6 payload length recomputed; TCP sequence
//! advanced, FIN and PSH only on the last segment, CWR only on the first;
//! UDP length recomputed; TCP and UDP checksums computed in full over the
//! pseudo-header and segment, whatever the input's checksum field held.
//!
//! The `hdr_len` of a virtio-net header is a hint (Linux fills in the length
//! of the linear part of the buffer, which may run past the headers): the
//! headers are parsed from the frame, and `hdr_len` is only checked to be no
//! shorter than them and no longer than the frame. Abbreviations: GSO,
//! generic segmentation offload; TSO, its TCP case; L3/L4, the IP and the
//! TCP/UDP layer; MSS, the payload bytes per segment (`gso_size`).

#[cfg(test)]
mod tests;

use crate::checksum::{add, ones_sum};
use crate::offload::headers::{self as h, at, get16, set16};
use crate::offload::{complete_checksum, Offload, OffloadError};
use crate::vnet::{GSO_TCPV4, GSO_TCPV6, GSO_UDP, GSO_UDP_L4};

/// Where the pieces of a cut frame go, one at a time: each is built in
/// [`buffer`](Self::buffer) and handed on with [`emit`](Self::emit). The
/// daemon's sink is a scratch frame, so a piece is written once, in the
/// place it is sent from.
pub trait SegmentSink {
    /// The buffer the next piece is built in, from its first byte. It must
    /// hold the largest piece (at most the length of the frame being cut);
    /// a shorter one is refused with [`OffloadError::SinkTooSmall`] before
    /// anything is handed out.
    fn buffer(&mut self) -> &mut [u8];

    /// The first `len` bytes of the buffer are the next piece: a plain
    /// frame, its checksums complete. Send it (or keep it) before returning:
    /// the next piece is built over it.
    fn emit(&mut self, len: usize);
}

/// Where a GSO frame's headers are.
#[derive(Debug, Clone, Copy)]
struct Layout {
    /// Offset of the IP header.
    l3: usize,
    /// IPv6 rather than IPv4.
    ipv6: bool,
    /// Offset of the TCP/UDP header.
    l4: usize,
    /// End of the TCP/UDP header: where the payload starts.
    payload: usize,
    /// End of the IP packet (bytes after it, padding, are not carried).
    end: usize,
    /// TCP or UDP.
    protocol: u8,
}

/// Parses Ethernet (with up to two VLAN tags), IPv4 or IPv6 (with
/// hop-by-hop, routing and destination-options extension headers) and the
/// TCP or UDP header. Every index is checked, so no input panics.
fn parse(d: &[u8]) -> Result<Layout, OffloadError> {
    let mut l3 = h::ETH_TYPE;
    let mut ethertype = 0;
    for _ in 0..3 {
        if d.len() < l3 + 2 {
            return Err(OffloadError::Malformed("Ethernet"));
        }
        ethertype = get16(d, l3..l3 + 2);
        l3 += 2;
        if ethertype != h::ETHERTYPE_VLAN && ethertype != h::ETHERTYPE_QINQ {
            break;
        }
        l3 += h::VLAN_TAG_LEN - 2;
    }
    let (ipv6, l4, end, mut protocol) = match ethertype {
        h::ETHERTYPE_IPV4 => {
            if d.len() < l3 + h::IPV4_MIN_HEADER_LEN || d[l3] >> 4 != 4 {
                return Err(OffloadError::Malformed("IPv4"));
            }
            let ihl = usize::from(d[l3 + h::IPV4_VERSION_IHL] & 0x0f) * 4;
            let total = usize::from(get16(d, at(l3, h::IPV4_TOTAL_LEN)));
            let fragment =
                get16(d, at(l3, h::IPV4_FLAGS_FRAGMENT)) & (h::IPV4_MF | h::IPV4_OFFSET_MASK) != 0;
            if ihl < h::IPV4_MIN_HEADER_LEN || total < ihl || l3 + total > d.len() || fragment {
                return Err(OffloadError::Malformed("IPv4"));
            }
            (false, l3 + ihl, l3 + total, d[l3 + h::IPV4_PROTOCOL])
        }
        h::ETHERTYPE_IPV6 => {
            if d.len() < l3 + h::IPV6_HEADER_LEN || d[l3] >> 4 != 6 {
                return Err(OffloadError::Malformed("IPv6"));
            }
            let end = l3 + h::IPV6_HEADER_LEN + usize::from(get16(d, at(l3, h::IPV6_PAYLOAD_LEN)));
            if end > d.len() {
                return Err(OffloadError::Malformed("IPv6"));
            }
            (
                true,
                l3 + h::IPV6_HEADER_LEN,
                end,
                d[l3 + h::IPV6_NEXT_HEADER],
            )
        }
        _ => return Err(OffloadError::Malformed("Ethernet")),
    };
    let mut l4 = l4;
    if ipv6 {
        // Hop-by-hop, routing, destination options: the same length rule.
        while h::IPV6_SKIPPED_EXTENSIONS.contains(&protocol) {
            if l4 + 8 > end {
                return Err(OffloadError::Malformed("IPv6 extension"));
            }
            protocol = d[l4];
            l4 += (usize::from(d[l4 + 1]) + 1) * 8;
        }
    }
    let payload = match protocol {
        h::PROTO_TCP => {
            if l4 + h::TCP_MIN_HEADER_LEN > end {
                return Err(OffloadError::Malformed("TCP"));
            }
            let doff = usize::from(d[l4 + h::TCP_DATA_OFFSET] >> 4) * 4;
            if doff < h::TCP_MIN_HEADER_LEN || l4 + doff > end {
                return Err(OffloadError::Malformed("TCP"));
            }
            l4 + doff
        }
        h::PROTO_UDP => {
            if l4 + h::UDP_HEADER_LEN > end {
                return Err(OffloadError::Malformed("UDP"));
            }
            l4 + h::UDP_HEADER_LEN
        }
        _ => l4,
    };
    Ok(Layout {
        l3,
        ipv6,
        l4,
        payload,
        end,
        protocol,
    })
}

/// The pseudo-header sum without the length: addresses and protocol.
fn pseudo_base(d: &[u8], layout: &Layout) -> u16 {
    let addresses = if layout.ipv6 {
        at(layout.l3, h::IPV6_ADDRESSES)
    } else {
        at(layout.l3, h::IPV4_ADDRESSES)
    };
    add(ones_sum(&d[addresses]), u16::from(layout.protocol))
}

/// Writes the full TCP or UDP checksum of `d[l4..]`, given the pseudo-header
/// sum without length.
fn fill_l4_checksum(d: &mut [u8], l4: usize, protocol: u8, base: u16) {
    let field = l4
        + usize::from(if protocol == h::PROTO_TCP {
            h::TCP_CHECKSUM
        } else {
            h::UDP_CHECKSUM
        });
    set16(d, field..field + 2, 0);
    // An IPv4/IPv6 packet here is under 64 KiB, so the length fits the sum.
    let len = (d.len() - l4) as u16;
    let mut check = !add(add(base, len), ones_sum(&d[l4..]));
    if protocol == h::PROTO_UDP && check == 0 {
        check = 0xffff;
    }
    set16(d, field..field + 2, check);
}

/// Checks a GSO frame's offload state against its parsed headers.
fn validate(
    d: &[u8],
    offload: &Offload,
    layout: &Layout,
    gso_type: u8,
) -> Result<(), OffloadError> {
    let want = match gso_type {
        GSO_TCPV4 | GSO_TCPV6 => h::PROTO_TCP,
        GSO_UDP_L4 | GSO_UDP => h::PROTO_UDP,
        other => return Err(OffloadError::UnsupportedGsoType(other)),
    };
    let family_ok = match gso_type {
        GSO_TCPV4 | GSO_UDP => !layout.ipv6,
        GSO_TCPV6 => layout.ipv6,
        _ => true,
    };
    if gso_type == GSO_UDP && layout.ipv6 {
        return Err(OffloadError::UnsupportedGsoType(gso_type));
    }
    if layout.protocol != want || !family_ok {
        return Err(OffloadError::ProtocolMismatch {
            gso_type,
            protocol: layout.protocol,
        });
    }
    if offload.gso_size == 0 || (gso_type == GSO_UDP && offload.gso_size < 8) {
        return Err(OffloadError::GsoSizeTooSmall(offload.gso_size));
    }
    let declared = usize::from(offload.hdr_len);
    if declared != 0 && (declared < layout.payload || declared > d.len()) {
        return Err(OffloadError::HeaderLength {
            declared: offload.hdr_len,
            actual: layout.payload,
        });
    }
    if offload.needs_csum() && usize::from(offload.csum_start) != layout.l4 {
        return Err(OffloadError::ChecksumStart {
            declared: offload.csum_start,
            actual: layout.l4,
        });
    }
    if gso_type == GSO_UDP
        && usize::from(get16(d, at(layout.l4, h::UDP_LEN))) != layout.end - layout.l4
    {
        return Err(OffloadError::Malformed("UDP"));
    }
    Ok(())
}

/// Refuses a sink whose buffer cannot hold a `need`-byte piece.
fn check_room<S: SegmentSink + ?Sized>(sink: &mut S, need: usize) -> Result<(), OffloadError> {
    let have = sink.buffer().len();
    if need > have {
        return Err(OffloadError::SinkTooSmall { need, have });
    }
    Ok(())
}

/// Builds `head` followed by `tail` at the start of the sink's buffer;
/// returns their length. The caller checked the room.
fn build<S: SegmentSink + ?Sized>(sink: &mut S, head: &[u8], tail: &[u8]) -> usize {
    let len = head.len() + tail.len();
    let out = &mut sink.buffer()[..len];
    out[..head.len()].copy_from_slice(head);
    out[head.len()..].copy_from_slice(tail);
    len
}

/// Cuts `frame`, an Ethernet frame with offload state `offload`, into plain
/// frames built in `sink` and handed out in order; returns how many there
/// were.
///
/// A GSO frame becomes segments of at most `gso_size` payload bytes (see the
/// module documentation for the header rules); a frame that is not GSO is
/// handed out once, its partial checksum (if any) completed. Either way the
/// frames handed out carry no offloads, and `frame` is not changed. On an
/// error nothing has been handed out.
pub fn segment<S: SegmentSink + ?Sized>(
    frame: &[u8],
    offload: &Offload,
    sink: &mut S,
) -> Result<usize, OffloadError> {
    if !offload.is_gso() {
        check_room(sink, frame.len())?;
        let len = build(sink, frame, &[]);
        let mut state = *offload;
        complete_checksum(&mut sink.buffer()[..len], &mut state)?;
        sink.emit(len);
        return Ok(1);
    }
    let gso_type = offload.gso_kind();
    let layout = parse(frame)?;
    validate(frame, offload, &layout, gso_type)?;
    let base = pseudo_base(frame, &layout);
    if gso_type == GSO_UDP {
        return fragment_udp4(frame, offload, &layout, base, sink);
    }

    let mss = usize::from(offload.gso_size);
    let headers = &frame[..layout.payload];
    let payload = &frame[layout.payload..layout.end];
    check_room(sink, headers.len() + mss.min(payload.len()))?;
    let count = payload.len().div_ceil(mss).max(1);
    let ip_id = get16(frame, at(layout.l3, h::IPV4_IDENT));
    let seq_at = at(layout.l4, h::TCP_SEQ);
    let seq = if layout.protocol == h::PROTO_TCP {
        let s = &frame[seq_at.clone()];
        u32::from_be_bytes([s[0], s[1], s[2], s[3]])
    } else {
        0
    };
    for (i, chunk) in payload
        .chunks(mss)
        .chain(payload.is_empty().then_some(&[][..]))
        .enumerate()
    {
        let len = build(sink, headers, chunk);
        let s = &mut sink.buffer()[..len];
        let l3 = layout.l3;
        if layout.ipv6 {
            let payload_len = (len - l3 - h::IPV6_HEADER_LEN) as u16;
            set16(s, at(l3, h::IPV6_PAYLOAD_LEN), payload_len);
        } else {
            set16(s, at(l3, h::IPV4_TOTAL_LEN), (len - l3) as u16);
            set16(s, at(l3, h::IPV4_IDENT), ip_id.wrapping_add(i as u16));
            h::fix_ipv4_checksum(&mut s[l3..layout.l4]);
        }
        if layout.protocol == h::PROTO_TCP {
            let offset = (i * mss) as u32;
            s[seq_at.clone()].copy_from_slice(&seq.wrapping_add(offset).to_be_bytes());
            let flags = &mut s[layout.l4 + h::TCP_FLAGS];
            if i + 1 < count {
                *flags &= !(h::TCP_FIN | h::TCP_PSH);
            }
            if i > 0 {
                *flags &= !h::TCP_CWR;
            }
        } else {
            set16(s, at(layout.l4, h::UDP_LEN), (len - layout.l4) as u16);
        }
        fill_l4_checksum(s, layout.l4, layout.protocol, base);
        sink.emit(len);
    }
    Ok(count)
}

/// Legacy UFO: one UDP datagram over IPv4, checksummed whole and cut into IP
/// fragments of `gso_size` payload bytes (rounded down to a multiple of 8).
fn fragment_udp4<S: SegmentSink + ?Sized>(
    frame: &[u8],
    offload: &Offload,
    layout: &Layout,
    base: u16,
    sink: &mut S,
) -> Result<usize, OffloadError> {
    let datagram = &frame[layout.l4..layout.end];
    let step = usize::from(offload.gso_size) & !7;
    check_room(sink, layout.l4 + step.min(datagram.len()))?;
    // The checksum over the whole datagram, its own field counted as 0.
    let field = usize::from(h::UDP_CHECKSUM);
    let sum = add(
        add(base, datagram.len() as u16),
        add(
            ones_sum(&datagram[..field]),
            ones_sum(&datagram[field + 2..]),
        ),
    );
    let check = match !sum {
        0 => 0xffff,
        c => c,
    };
    let count = datagram.len().div_ceil(step);
    for (i, chunk) in datagram.chunks(step).enumerate() {
        let len = build(sink, &frame[..layout.l4], chunk);
        let s = &mut sink.buffer()[..len];
        if i == 0 {
            let f = layout.l4 + field;
            set16(s, f..f + 2, check);
        }
        let more = if i + 1 < count { h::IPV4_MF } else { 0 };
        set16(
            s,
            at(layout.l3, h::IPV4_TOTAL_LEN),
            (len - layout.l3) as u16,
        );
        // DF goes: these are fragments now.
        let word = more | ((i * step / 8) as u16);
        set16(s, at(layout.l3, h::IPV4_FLAGS_FRAGMENT), word);
        h::fix_ipv4_checksum(&mut s[layout.l3..layout.l4]);
        sink.emit(len);
    }
    Ok(count)
}

/// Lowers the segment size of a TCP GSO frame whose segments would be
/// larger than `mtu` (their IP packets, headers included), so each fits; a
/// smaller segment is always allowed for TCP. True when it changed. UDP GSO
/// frames are left as they are: their segment size is the datagram size.
pub fn fit_gso(frame: &[u8], offload: &mut Offload, mtu: u32) -> bool {
    let gso_type = offload.gso_kind();
    if !offload.is_gso() || (gso_type != GSO_TCPV4 && gso_type != GSO_TCPV6) {
        return false;
    }
    let Ok(layout) = parse(frame) else {
        return false;
    };
    let headers = layout.payload - layout.l3;
    let fits = (mtu as usize).saturating_sub(headers);
    if fits == 0 || usize::from(offload.gso_size) <= fits {
        return false;
    }
    offload.gso_size = fits.min(usize::from(u16::MAX)) as u16;
    true
}
