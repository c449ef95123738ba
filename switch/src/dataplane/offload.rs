//! Software offloads: finishing partial checksums and segmenting GSO frames
//! for ports that cannot take them.
//!
//! TAPs (with `TUNSETOFFLOAD`) and AF_PACKET ports (with `PACKET_VNET_HDR`)
//! hand the switch frames whose virtio-net header says "the L4 checksum is
//! partial" (`NEEDS_CSUM`) and "this is one 64 KB TCP/UDP send to be cut into
//! `gso_size` pieces" (GSO). Such frames pass unchanged to ports whose device
//! finishes the job (another TAP, a veth). A port that sends plain packets (a
//! tunnel) gets them finished here first:
//!
//! - [`complete_checksum`] sums the frame from `csum_start` to its end and
//!   stores the checksum at `csum_start + csum_offset`;
//! - [`segment`] cuts a GSO frame into MTU-sized frames with full checksums:
//!   TCP over IPv4 (`VIRTIO_NET_HDR_GSO_TCPV4`) and IPv6 (`_TCPV6`), UDP
//!   segmentation (`_UDP_L4`, "USO", IPv4 and IPv6: one datagram per
//!   segment) and legacy UDP fragmentation (`_UDP`, "UFO", IPv4 only: one
//!   datagram, IP fragments). Up to two VLAN tags in front are carried into
//!   every segment.
//!
//! Contract: pure functions over [`Frame`]s — no I/O, no allocation (each
//! segment is built in a caller-provided scratch frame, allocated once), no
//! panic on any input. A frame that cannot be handled is an [`OffloadError`],
//! found before the first segment is handed out, so a caller never sends half
//! a frame. Segments carry no offloads (plain virtio-net header).
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

use yard_wire::checksum::{add, ones_sum};

use yard_wire::offload::{self, Offload, OffloadError};
use yard_wire::vnet::{F_NEEDS_CSUM, GSO_ECN, GSO_TCPV4, GSO_TCPV6, GSO_UDP, GSO_UDP_L4};

use crate::dataplane::frame::{Frame, ETHERTYPE_QINQ, ETHERTYPE_VLAN, HEADROOM};

/// Offset of the checksum field in a UDP header.
const UDP_CSUM_OFFSET: u16 = 6;
/// Offset of the checksum field in a TCP header.
const TCP_CSUM_OFFSET: u16 = 16;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// IPv4 "more fragments" flag, in the flags/offset word.
const IPV4_MF: u16 = 0x2000;

/// Lowers the segment size of a TCP GSO frame whose segments would be
/// larger than `mtu` (their IP packets, headers included), so each fits; a
/// smaller segment is always allowed for TCP. True when it changed. UDP GSO
/// frames are left as they are: their segment size is the datagram size.
pub fn fit_gso(frame: &mut Frame, mtu: u32) -> bool {
    let gso_type = frame.offload.gso_type & !GSO_ECN;
    if gso_type != GSO_TCPV4 && gso_type != GSO_TCPV6 {
        return false;
    }
    let Ok(layout) = parse(frame.data()) else {
        return false;
    };
    let headers = layout.payload - layout.l3;
    let fits = (mtu as usize).saturating_sub(headers);
    if fits == 0 || usize::from(frame.offload.gso_size) <= fits {
        return false;
    }
    frame.offload.gso_size = fits.min(usize::from(u16::MAX)) as u16;
    true
}

/// Completes a partial L4 checksum (`NEEDS_CSUM`) of `frame` and clears
/// the flag ([`yard_wire::offload::complete_checksum`]).
pub fn complete_checksum(frame: &mut Frame) -> Result<(), OffloadError> {
    let (data, offload) = frame.data_and_offload_mut();
    offload::complete_checksum(data, offload)
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

/// The big-endian 16-bit field at `at`.
pub(crate) fn be16(d: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([d[at], d[at + 1]])
}

/// Stores `v` big-endian at `at`.
pub(crate) fn put16(d: &mut [u8], at: usize, v: u16) {
    d[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Parses Ethernet (with up to two VLAN tags), IPv4 or IPv6 (with
/// hop-by-hop, routing and destination-options extension headers) and the
/// TCP or UDP header. Every index is checked, so no input panics.
fn parse(d: &[u8]) -> Result<Layout, OffloadError> {
    let mut l3 = 12;
    let mut ethertype = 0;
    for _ in 0..3 {
        if d.len() < l3 + 2 {
            return Err(OffloadError::Malformed("Ethernet"));
        }
        ethertype = be16(d, l3);
        l3 += 2;
        if ethertype != ETHERTYPE_VLAN && ethertype != ETHERTYPE_QINQ {
            break;
        }
        l3 += 2;
    }
    let (ipv6, l4, end, mut protocol) = match ethertype {
        ETHERTYPE_IPV4 => {
            if d.len() < l3 + 20 || d[l3] >> 4 != 4 {
                return Err(OffloadError::Malformed("IPv4"));
            }
            let ihl = usize::from(d[l3] & 0x0f) * 4;
            let total = usize::from(be16(d, l3 + 2));
            let fragment = be16(d, l3 + 6) & 0x3fff != 0;
            if ihl < 20 || total < ihl || l3 + total > d.len() || fragment {
                return Err(OffloadError::Malformed("IPv4"));
            }
            (false, l3 + ihl, l3 + total, d[l3 + 9])
        }
        ETHERTYPE_IPV6 => {
            if d.len() < l3 + 40 || d[l3] >> 4 != 6 {
                return Err(OffloadError::Malformed("IPv6"));
            }
            let end = l3 + 40 + usize::from(be16(d, l3 + 4));
            if end > d.len() {
                return Err(OffloadError::Malformed("IPv6"));
            }
            (true, l3 + 40, end, d[l3 + 6])
        }
        _ => return Err(OffloadError::Malformed("Ethernet")),
    };
    let mut l4 = l4;
    if ipv6 {
        // Hop-by-hop, routing, destination options: the same length rule.
        while matches!(protocol, 0 | 43 | 60) {
            if l4 + 8 > end {
                return Err(OffloadError::Malformed("IPv6 extension"));
            }
            protocol = d[l4];
            l4 += (usize::from(d[l4 + 1]) + 1) * 8;
        }
    }
    let payload = match protocol {
        PROTO_TCP => {
            if l4 + 20 > end {
                return Err(OffloadError::Malformed("TCP"));
            }
            let doff = usize::from(d[l4 + 12] >> 4) * 4;
            if doff < 20 || l4 + doff > end {
                return Err(OffloadError::Malformed("TCP"));
            }
            l4 + doff
        }
        PROTO_UDP => {
            if l4 + 8 > end {
                return Err(OffloadError::Malformed("UDP"));
            }
            l4 + 8
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
    let addrs = if layout.ipv6 {
        &d[layout.l3 + 8..layout.l3 + 40]
    } else {
        &d[layout.l3 + 12..layout.l3 + 20]
    };
    add(ones_sum(addrs), u16::from(layout.protocol))
}

/// Recomputes the checksum of the IPv4 header at `l3` in place.
pub(crate) fn fix_ipv4_checksum(d: &mut [u8], l3: usize) {
    let ihl = usize::from(d[l3] & 0x0f) * 4;
    put16(d, l3 + 10, 0);
    let check = !ones_sum(&d[l3..l3 + ihl]);
    put16(d, l3 + 10, check);
}

/// Writes the full TCP or UDP checksum of `d[l4..]`, given the pseudo-header
/// sum without length.
fn fill_l4_checksum(d: &mut [u8], l4: usize, protocol: u8, base: u16) {
    let field = l4
        + usize::from(if protocol == PROTO_TCP {
            TCP_CSUM_OFFSET
        } else {
            UDP_CSUM_OFFSET
        });
    put16(d, field, 0);
    // An IPv4/IPv6 packet here is under 64 KiB, so the length fits the sum.
    let len = (d.len() - l4) as u16;
    let mut check = !add(add(base, len), ones_sum(&d[l4..]));
    if protocol == PROTO_UDP && check == 0 {
        check = 0xffff;
    }
    put16(d, field, check);
}

/// Checks a GSO frame's virtio-net header against its parsed headers.
fn validate(frame: &Frame, layout: &Layout, gso_type: u8) -> Result<(), OffloadError> {
    let vnet = frame.offload;
    let want = match gso_type {
        GSO_TCPV4 | GSO_TCPV6 => PROTO_TCP,
        GSO_UDP_L4 | GSO_UDP => PROTO_UDP,
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
    if vnet.gso_size == 0 || (gso_type == GSO_UDP && vnet.gso_size < 8) {
        return Err(OffloadError::GsoSizeTooSmall(vnet.gso_size));
    }
    let declared = usize::from(vnet.hdr_len);
    if declared != 0 && (declared < layout.payload || declared > frame.len()) {
        return Err(OffloadError::HeaderLength {
            declared: vnet.hdr_len,
            actual: layout.payload,
        });
    }
    if vnet.flags & F_NEEDS_CSUM != 0 && usize::from(vnet.csum_start) != layout.l4 {
        return Err(OffloadError::ChecksumStart {
            declared: vnet.csum_start,
            actual: layout.l4,
        });
    }
    if gso_type == GSO_UDP
        && usize::from(be16(frame.data(), layout.l4 + 4)) != layout.end - layout.l4
    {
        return Err(OffloadError::Malformed("UDP"));
    }
    Ok(())
}

/// Makes `scratch` hold `head` followed by `tail`, with no offloads.
fn build_in(scratch: &mut Frame, head: &[u8], tail: &[u8]) -> bool {
    let len = head.len() + tail.len();
    if !scratch.set_range(HEADROOM, len) {
        return false;
    }
    let out = scratch.data_mut();
    out[..head.len()].copy_from_slice(head);
    out[head.len()..].copy_from_slice(tail);
    true
}

/// Cuts `frame` into plain frames, each built in `scratch` and handed to
/// `out` in order; returns how many there were.
///
/// A GSO frame becomes segments of at most `gso_size` payload bytes (see the
/// module documentation for the header rules); a frame that is not GSO is
/// handed out once, its partial checksum (if any) completed. Either way the
/// frames handed out carry no offloads, and `frame` is not changed. On an
/// error nothing has been handed out.
pub fn segment<F: FnMut(&mut Frame)>(
    frame: &Frame,
    scratch: &mut Frame,
    mut out: F,
) -> Result<usize, OffloadError> {
    if !frame.offload.is_gso() {
        if !build_in(scratch, frame.data(), &[]) {
            return Err(OffloadError::Malformed("Ethernet"));
        }
        scratch.offload = frame.offload;
        complete_checksum(scratch)?;
        scratch.offload = Offload::NONE;
        out(scratch);
        return Ok(1);
    }
    let gso_type = frame.offload.gso_type & !GSO_ECN;
    let d = frame.data();
    let layout = parse(d)?;
    validate(frame, &layout, gso_type)?;
    let base = pseudo_base(d, &layout);
    if gso_type == GSO_UDP {
        return Ok(fragment_udp4(frame, &layout, base, scratch, out));
    }

    let mss = usize::from(frame.offload.gso_size);
    let headers = &d[..layout.payload];
    let payload = &d[layout.payload..layout.end];
    let count = payload.len().div_ceil(mss).max(1);
    let ip_id = be16(d, layout.l3 + 4);
    let seq = if layout.protocol == PROTO_TCP {
        u32::from_be_bytes([
            d[layout.l4 + 4],
            d[layout.l4 + 5],
            d[layout.l4 + 6],
            d[layout.l4 + 7],
        ])
    } else {
        0
    };
    for (i, chunk) in payload
        .chunks(mss)
        .chain(payload.is_empty().then_some(&[][..]))
        .enumerate()
    {
        if !build_in(scratch, headers, chunk) {
            // Unreachable: a segment is never longer than the frame.
            break;
        }
        let s = scratch.data_mut();
        let len = s.len();
        if layout.ipv6 {
            put16(s, layout.l3 + 4, (len - layout.l3 - 40) as u16);
        } else {
            put16(s, layout.l3 + 2, (len - layout.l3) as u16);
            put16(s, layout.l3 + 4, ip_id.wrapping_add(i as u16));
            fix_ipv4_checksum(s, layout.l3);
        }
        if layout.protocol == PROTO_TCP {
            let offset = (i * mss) as u32;
            s[layout.l4 + 4..layout.l4 + 8]
                .copy_from_slice(&seq.wrapping_add(offset).to_be_bytes());
            let flags = &mut s[layout.l4 + 13];
            if i + 1 < count {
                *flags &= !(TCP_FIN | TCP_PSH);
            }
            if i > 0 {
                *flags &= !TCP_CWR;
            }
        } else {
            put16(s, layout.l4 + 4, (len - layout.l4) as u16);
        }
        fill_l4_checksum(s, layout.l4, layout.protocol, base);
        out(scratch);
    }
    Ok(count)
}

/// Legacy UFO: one UDP datagram over IPv4, checksummed whole and cut into IP
/// fragments of `gso_size` payload bytes (rounded down to a multiple of 8).
fn fragment_udp4<F: FnMut(&mut Frame)>(
    frame: &Frame,
    layout: &Layout,
    base: u16,
    scratch: &mut Frame,
    mut out: F,
) -> usize {
    let d = frame.data();
    let datagram = &d[layout.l4..layout.end];
    // The checksum over the whole datagram, its own field counted as 0.
    let sum = add(
        add(base, datagram.len() as u16),
        add(ones_sum(&datagram[..6]), ones_sum(&datagram[8..])),
    );
    let check = match !sum {
        0 => 0xffff,
        c => c,
    };
    let step = usize::from(frame.offload.gso_size) & !7;
    let count = datagram.len().div_ceil(step);
    for (i, chunk) in datagram.chunks(step).enumerate() {
        if !build_in(scratch, &d[..layout.l4], chunk) {
            break;
        }
        let s = scratch.data_mut();
        let len = s.len();
        if i == 0 {
            put16(s, layout.l4 + 6, check);
        }
        let more = if i + 1 < count { IPV4_MF } else { 0 };
        put16(s, layout.l3 + 2, (len - layout.l3) as u16);
        // DF goes: these are fragments now.
        put16(s, layout.l3 + 6, more | ((i * step / 8) as u16));
        fix_ipv4_checksum(s, layout.l3);
        out(scratch);
    }
    count
}
