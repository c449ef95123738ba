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
//! no offloads. Headers are read with the crate's checked views
//! ([`EthernetFrame`], [`VlanPacket`], [`Ipv4Packet`], [`Ipv6Packet`],
//! [`TcpPacket`], [`UdpPacket`]) and written with their setters; only the
//! walk over IPv6 extension headers, which no view covers yet, reads bytes
//! itself.
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
use crate::ethernet::{self, ethertype, EthernetFrame};
use crate::ip::protocol;
use crate::ipv4::Ipv4Packet;
use crate::ipv6::{self, Ipv6Packet};
use crate::offload::{complete_checksum, Offload, OffloadError};
use crate::tcp::{TcpFlags, TcpPacket};
use crate::udp::{self, UdpPacket};
use crate::vlan::{self, VlanPacket};
use crate::vnet::{GSO_TCPV4, GSO_TCPV6, GSO_UDP, GSO_UDP_L4};

/// IPv6 extension headers segmentation looks through, all of one shape:
/// next header, then the length in 8-byte units after the first 8.
const IPV6_SKIPPED_EXTENSIONS: [u8; 3] = [
    protocol::IPV6_HOP_BY_HOP,
    protocol::IPV6_ROUTING,
    protocol::IPV6_DEST_OPTS,
];

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
/// TCP or UDP header, each through its checked view, so no input panics.
fn parse(d: &[u8]) -> Result<Layout, OffloadError> {
    let frame = EthernetFrame::new_checked(d).map_err(|_| OffloadError::Malformed("Ethernet"))?;
    let mut ethertype = frame.ethertype();
    let mut l3 = ethernet::HEADER_LEN;
    for _ in 0..2 {
        if !ethertype::is_vlan_tag(ethertype) {
            break;
        }
        let tag =
            VlanPacket::new_checked(&d[l3..]).map_err(|_| OffloadError::Malformed("Ethernet"))?;
        ethertype = tag.ethertype();
        l3 += vlan::TAG_LEN;
    }
    let (ipv6, l4, end, mut protocol) = match ethertype {
        ethertype::IPV4 => {
            let ip =
                Ipv4Packet::new_checked(&d[l3..]).map_err(|_| OffloadError::Malformed("IPv4"))?;
            if ip.is_fragment() {
                return Err(OffloadError::Malformed("IPv4"));
            }
            let end = l3 + usize::from(ip.total_len());
            (false, l3 + ip.header_len(), end, ip.protocol())
        }
        ethertype::IPV6 => {
            let ip =
                Ipv6Packet::new_checked(&d[l3..]).map_err(|_| OffloadError::Malformed("IPv6"))?;
            let end = l3 + ip.total_len();
            (true, l3 + ipv6::HEADER_LEN, end, ip.next_header())
        }
        _ => return Err(OffloadError::Malformed("Ethernet")),
    };
    let mut l4 = l4;
    if ipv6 {
        // Hop-by-hop, routing, destination options: the same length rule.
        while IPV6_SKIPPED_EXTENSIONS.contains(&protocol) {
            if l4 + 8 > end {
                return Err(OffloadError::Malformed("IPv6 extension"));
            }
            protocol = d[l4];
            l4 += (usize::from(d[l4 + 1]) + 1) * 8;
        }
    }
    // After the extension headers `l4` may lie past `end`: no L4 header.
    let l4_bytes = d.get(l4..end).unwrap_or(&[]);
    let payload = match protocol {
        protocol::TCP => {
            let tcp =
                TcpPacket::new_checked(l4_bytes).map_err(|_| OffloadError::Malformed("TCP"))?;
            l4 + tcp.header_len()
        }
        protocol::UDP => {
            UdpPacket::new_checked(l4_bytes).map_err(|_| OffloadError::Malformed("UDP"))?;
            l4 + udp::HEADER_LEN
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
    let ip = &d[layout.l3..];
    let addresses = if layout.ipv6 {
        ones_sum(Ipv6Packet::new_unchecked(ip).addresses())
    } else {
        ones_sum(Ipv4Packet::new_unchecked(ip).addresses())
    };
    add(addresses, u16::from(layout.protocol))
}

/// Writes the full TCP or UDP checksum of `d[l4..]`, given the pseudo-header
/// sum without length.
fn fill_l4_checksum(d: &mut [u8], l4: usize, protocol: u8, base: u16) {
    // An IPv4/IPv6 packet here is under 64 KiB, so the length fits the sum.
    let pseudo_header = add(base, (d.len() - l4) as u16);
    if protocol == protocol::TCP {
        TcpPacket::new_unchecked(&mut d[l4..]).fill_checksum_with(pseudo_header);
    } else {
        UdpPacket::new_unchecked(&mut d[l4..]).fill_checksum_with(pseudo_header);
    }
}

/// Checks a GSO frame's offload state against its parsed headers.
fn validate(
    d: &[u8],
    offload: &Offload,
    layout: &Layout,
    gso_type: u8,
) -> Result<(), OffloadError> {
    let want = match gso_type {
        GSO_TCPV4 | GSO_TCPV6 => protocol::TCP,
        GSO_UDP_L4 | GSO_UDP => protocol::UDP,
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
    // The protocol is UDP, so parse found its header within the packet.
    let udp_len = || UdpPacket::new_unchecked(&d[layout.l4..layout.end]).length();
    if gso_type == GSO_UDP && usize::from(udp_len()) != layout.end - layout.l4 {
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
    let ip = &frame[layout.l3..];
    let ip_id = if layout.ipv6 {
        0
    } else {
        Ipv4Packet::new_unchecked(ip).ident()
    };
    let is_tcp = layout.protocol == protocol::TCP;
    let seq = if is_tcp {
        TcpPacket::new_unchecked(&frame[layout.l4..]).seq()
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
            let payload_len = (len - l3 - ipv6::HEADER_LEN) as u16;
            Ipv6Packet::new_unchecked(&mut s[l3..]).set_payload_len(payload_len);
        } else {
            let mut ip = Ipv4Packet::new_unchecked(&mut s[l3..layout.l4]);
            ip.set_total_len((len - l3) as u16);
            ip.set_ident(ip_id.wrapping_add(i as u16));
            ip.fill_checksum();
        }
        if is_tcp {
            let mut tcp = TcpPacket::new_unchecked(&mut s[layout.l4..]);
            tcp.set_seq(seq.wrapping_add((i * mss) as u32));
            let mut flags = tcp.flags();
            if i + 1 < count {
                flags = flags.without(TcpFlags::FIN | TcpFlags::PSH);
            }
            if i > 0 {
                flags = flags.without(TcpFlags::CWR);
            }
            tcp.set_flags(flags);
        } else {
            UdpPacket::new_unchecked(&mut s[layout.l4..]).set_length((len - layout.l4) as u16);
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
    let field = udp::CHECKSUM_OFFSET;
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
            UdpPacket::new_unchecked(&mut s[layout.l4..]).set_checksum(check);
        }
        let mut ip = Ipv4Packet::new_unchecked(&mut s[layout.l3..layout.l4]);
        ip.set_total_len((len - layout.l3) as u16);
        // DF goes: these are fragments now. The offset is under 64 KiB, as
        // the datagram is.
        ip.set_flags_frag(false, i + 1 < count, (i * step) as u16);
        ip.fill_checksum();
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
