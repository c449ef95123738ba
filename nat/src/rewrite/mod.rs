//! Applying a NAT translation to an IPv4 packet in place, with incremental
//! checksum updates (RFC 1624) — the per-packet fast path: no allocation, no
//! full recompute, and on error the packet is left unchanged (everything is
//! validated before the first write).
//!
//! # Transport packets: [`rewrite_src`], [`rewrite_dst`]
//!
//! Replace one endpoint (address and port) of a TCP, UDP or ICMP echo packet.
//! For ICMP echo the identifier plays the port (a query and its reply carry
//! the same identifier, so SNAT rewrites it with the source and un-SNAT with
//! the destination); the ICMP checksum has no pseudo-header, so only the
//! identifier change touches it.
//!
//! Checksums: the IPv4 header checksum always; the L4 checksum according to
//! [`L4Checksum`]:
//! - `Full`: the address change (pseudo-header) and the port change are both
//!   folded in; a UDP checksum of 0 stays 0.
//! - `Partial` (virtio-net `NEEDS_CSUM`; the field holds the pseudo-header
//!   sum): the address change is added as a plain sum; the port change is
//!   not applied to the field, because the device sums the new port itself.
//!   ICMP's field is never touched in this mode.
//!
//! Fragments: a first fragment (MF set, offset 0) carries the L4 header and
//! the L4 checksum, which covers the whole reassembled datagram and the
//! pseudo-header. An incremental update needs only the changed words, so the
//! first fragment's checksum is updated exactly as for a whole packet — that
//! accounts for the address change of every fragment. Later fragments
//! (offset ≠ 0) carry no L4 header: only their IP address and header
//! checksum change, the port is ignored, and the result says
//! [`Rewritten::AddressOnly`]. (Translating a later fragment still needs the
//! flow, which the caller finds in a fragment cache keyed by the IP id.)
//!
//! # ICMP errors (RFC 5508): [`rewrite_icmp_error_for_inside`], [`rewrite_icmp_error_for_outside`]
//!
//! An ICMP error quotes a packet of the connection as it was when the error
//! was generated. The caller passes the flow key the quoted packet must
//! carry afterwards; the rewriter then changes the quoted IP source and
//! destination, the quoted ports (or echo identifier), the quoted IP header
//! checksum, the quoted L4 checksum where the quote holds it (UDP's always,
//! at bytes 6..8; TCP's at 16..18 only if the router quoted that far — as
//! Linux does, a TCP checksum outside the quote is left alone; an ICMP echo's
//! at 2..4), the outer addresses (see each function), the outer IP header
//! checksum and the ICMP checksum, which covers the quoted bytes. The quoted
//! checksums are always full ones; `mode` applies to the outer ICMP checksum
//! only (partial: left alone).

#[cfg(test)]
mod tests;

use std::net::Ipv4Addr;

use crate::classify::{quoted_flow, FlowError};
use crate::flow::{FlowKey, Proto};
use yard_wire::checksum::{self, L4Checksum};
use yard_wire::icmp::{self, IcmpPacket};
use yard_wire::ipv4::Ipv4Packet;
use yard_wire::tcp::{self, TcpPacket};
use yard_wire::udp::{self, UdpPacket};
use yard_wire::WireError;

/// Why a packet could not be translated. The packet is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    /// The packet, or the packet an ICMP error quotes, is malformed.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The packet, or the packet an ICMP error quotes, is of a kind NAT does
    /// not track (another protocol, an ICMP type that is neither an echo nor
    /// a translated error, a quoted later fragment).
    #[error(transparent)]
    Flow(FlowError),
    /// `rewrite_src`/`rewrite_dst` got an ICMP error; translate it with
    /// `rewrite_icmp_error_for_inside`/`_for_outside`.
    #[error("packet is an ICMP error: use the ICMP error rewriters")]
    IsIcmpError,
    /// An ICMP error rewriter got something other than a destination
    /// unreachable, time exceeded or parameter problem message.
    #[error("packet is not an ICMP error that NAT translates")]
    NotIcmpError,
    /// The quoted packet's protocol differs from the key given for it.
    #[error("quoted packet is {found:?}, the key given is {expected:?}")]
    ProtocolMismatch {
        /// The key's protocol.
        expected: Proto,
        /// The quoted packet's protocol.
        found: Proto,
    },
}

impl From<FlowError> for RewriteError {
    /// A malformed packet is [`RewriteError::Wire`] whichever layer found
    /// it; only the tracker's own refusals are [`RewriteError::Flow`].
    fn from(e: FlowError) -> Self {
        match e {
            FlowError::Wire(w) => RewriteError::Wire(w),
            other => RewriteError::Flow(other),
        }
    }
}

/// What a transport rewrite changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rewritten {
    /// Address and port (or echo identifier), with their checksums.
    AddressAndPort,
    /// Only the address: a later fragment has no L4 header.
    AddressOnly,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Src,
    Dst,
}

/// The fields a translation touches in a TCP, UDP or ICMP echo header — the
/// port of one side (the echo identifier is both "ports") and the checksum —
/// read and written through `yard_wire`'s views. The views are unchecked:
/// callers have checked [`L4::min_len`] bytes, or for a quote the 8 bytes
/// that hold the ports and, before touching the checksum,
/// [`L4::check_end`].
#[derive(Clone, Copy)]
struct L4 {
    proto: Proto,
}

impl L4 {
    /// Bytes of header that must be present to rewrite a packet.
    fn min_len(self) -> usize {
        match self.proto {
            Proto::Tcp => tcp::HEADER_LEN,
            Proto::Udp => udp::HEADER_LEN,
            Proto::Icmp => icmp::HEADER_LEN,
        }
    }

    /// Bytes of header that hold the checksum field.
    fn check_end(self) -> usize {
        match self.proto {
            Proto::Tcp => tcp::CHECKSUM_OFFSET + 2,
            Proto::Udp => udp::CHECKSUM_OFFSET + 2,
            Proto::Icmp => icmp::CHECKSUM_OFFSET + 2,
        }
    }

    fn port(self, l4: &[u8], side: Side) -> u16 {
        match (self.proto, side) {
            (Proto::Tcp, Side::Src) => TcpPacket::new_unchecked(l4).src_port(),
            (Proto::Tcp, Side::Dst) => TcpPacket::new_unchecked(l4).dst_port(),
            (Proto::Udp, Side::Src) => UdpPacket::new_unchecked(l4).src_port(),
            (Proto::Udp, Side::Dst) => UdpPacket::new_unchecked(l4).dst_port(),
            (Proto::Icmp, _) => IcmpPacket::new_unchecked(l4).echo_ident(),
        }
    }

    fn set_port(self, l4: &mut [u8], side: Side, port: u16) {
        match (self.proto, side) {
            (Proto::Tcp, Side::Src) => TcpPacket::new_unchecked(l4).set_src_port(port),
            (Proto::Tcp, Side::Dst) => TcpPacket::new_unchecked(l4).set_dst_port(port),
            (Proto::Udp, Side::Src) => UdpPacket::new_unchecked(l4).set_src_port(port),
            (Proto::Udp, Side::Dst) => UdpPacket::new_unchecked(l4).set_dst_port(port),
            (Proto::Icmp, _) => IcmpPacket::new_unchecked(l4).set_echo_ident(port),
        }
    }

    fn check(self, l4: &[u8]) -> u16 {
        match self.proto {
            Proto::Tcp => TcpPacket::new_unchecked(l4).checksum(),
            Proto::Udp => UdpPacket::new_unchecked(l4).checksum(),
            Proto::Icmp => IcmpPacket::new_unchecked(l4).checksum(),
        }
    }

    fn set_check(self, l4: &mut [u8], check: u16) {
        match self.proto {
            Proto::Tcp => TcpPacket::new_unchecked(l4).set_checksum(check),
            Proto::Udp => UdpPacket::new_unchecked(l4).set_checksum(check),
            Proto::Icmp => IcmpPacket::new_unchecked(l4).set_checksum(check),
        }
    }

    /// Folds an IPv4 address change (part of the pseudo-header) into the L4
    /// checksum; ICMP's has no pseudo-header.
    fn address_change(self, l4: &mut [u8], old: u32, new: u32, mode: L4Checksum) {
        let c = self.check(l4);
        let c = match (self.proto, mode) {
            (Proto::Icmp, _) => return,
            (Proto::Tcp, L4Checksum::Full) => checksum::update32(c, old, new),
            (Proto::Udp, L4Checksum::Full) => checksum::update32_udp(c, old, new),
            (_, L4Checksum::Partial) => checksum::update_partial32(c, old, new),
        };
        self.set_check(l4, c);
    }

    /// Writes the port (or echo identifier) of `side` and folds the change
    /// into the L4 checksum in full mode; a partial checksum is left alone
    /// because the device sums the port itself.
    fn port_change(self, l4: &mut [u8], side: Side, new: u16, mode: L4Checksum) {
        let old = self.port(l4, side);
        self.set_port(l4, side, new);
        if mode == L4Checksum::Partial || old == new {
            return;
        }
        let c = self.check(l4);
        let c = match self.proto {
            Proto::Udp => checksum::update16_udp(c, old, new),
            Proto::Tcp | Proto::Icmp => checksum::update16(c, old, new),
        };
        self.set_check(l4, c);
    }
}

/// Rewrites the source address and port of the TCP, UDP or ICMP echo packet
/// `pkt` (an IPv4 packet; bytes after its total length are untouched) — the
/// SNAT direction, or un-DNAT of a reply. See the module documentation for
/// checksums, ICMP echo and fragments.
pub fn rewrite_src(
    pkt: &mut [u8],
    new_addr: Ipv4Addr,
    new_port: u16,
    mode: L4Checksum,
) -> Result<Rewritten, RewriteError> {
    rewrite_endpoint(pkt, Side::Src, new_addr, new_port, mode)
}

/// Rewrites the destination address and port — DNAT, or un-SNAT of a reply.
/// Otherwise as [`rewrite_src`].
pub fn rewrite_dst(
    pkt: &mut [u8],
    new_addr: Ipv4Addr,
    new_port: u16,
    mode: L4Checksum,
) -> Result<Rewritten, RewriteError> {
    rewrite_endpoint(pkt, Side::Dst, new_addr, new_port, mode)
}

fn rewrite_endpoint(
    pkt: &mut [u8],
    side: Side,
    new_addr: Ipv4Addr,
    new_port: u16,
    mode: L4Checksum,
) -> Result<Rewritten, RewriteError> {
    let mut ip = Ipv4Packet::new_checked(pkt)?;
    let old_addr = match side {
        Side::Src => ip.src(),
        Side::Dst => ip.dst(),
    };
    let set_addr = |ip: &mut Ipv4Packet<&mut [u8]>| match side {
        Side::Src => ip.set_src(new_addr),
        Side::Dst => ip.set_dst(new_addr),
    };
    if ip.is_later_fragment() {
        set_addr(&mut ip);
        return Ok(Rewritten::AddressOnly);
    }
    let proto = Proto::from_ip_protocol(ip.protocol())
        .ok_or(FlowError::UntrackedProtocol(ip.protocol()))?;
    let layout = L4 { proto };
    let l4 = ip.payload_mut();
    if l4.len() < layout.min_len() {
        return Err(WireError::Truncated {
            what: "L4 header",
            need: layout.min_len(),
            have: l4.len(),
        }
        .into());
    }
    if proto == Proto::Icmp {
        let msg = IcmpPacket::new_unchecked(&*l4);
        if icmp::is_translated_error_type(msg.msg_type()) {
            return Err(RewriteError::IsIcmpError);
        }
        if !msg.is_echo() {
            return Err(FlowError::UntrackedIcmp {
                icmp_type: msg.msg_type(),
                code: msg.code(),
            }
            .into());
        }
    }
    layout.address_change(l4, u32::from(old_addr), u32::from(new_addr), mode);
    layout.port_change(l4, side, new_port, mode);
    set_addr(&mut ip);
    Ok(Rewritten::AddressAndPort)
}

/// Translates an ICMP error travelling from the outside to the inside
/// (RFC 5508 section 4.2: an error about a packet that left through the
/// NAT).
///
/// `quoted` is the flow key the quoted packet must carry afterwards: the
/// packet as the inside host sent it (for SNAT, the connection's original
/// direction; for a DNAT'd connection, the server's reply as it left the
/// server). The quoted packet's protocol must match `quoted.proto`; for ICMP
/// echo the identifier becomes `quoted.sport`.
///
/// Outer header: the destination becomes `quoted.src` (an error goes to the
/// source of the packet it quotes). The source becomes `quoted.dst` only if
/// it equals the quoted packet's old destination, i.e. the peer itself sent
/// the error (port unreachable); an error from a router on the path keeps
/// the router's address. `mode` applies to the outer ICMP checksum.
pub fn rewrite_icmp_error_for_inside(
    pkt: &mut [u8],
    quoted: &FlowKey,
    mode: L4Checksum,
) -> Result<(), RewriteError> {
    rewrite_icmp_error(pkt, quoted, mode, Direction::Inside)
}

/// Translates an ICMP error travelling from the inside to the outside (an
/// inside host's error about a packet that came in through the NAT, e.g.
/// port unreachable from a DNAT'd server or from an SNAT'd client).
///
/// `quoted` is the flow key the quoted packet must carry afterwards: the
/// packet as the outside peer sent it. Outer header: the destination becomes
/// `quoted.src` and the source always becomes `quoted.dst` — the address the
/// peer talked to — so no inside address leaks, whoever inside generated the
/// error. Otherwise as [`rewrite_icmp_error_for_inside`].
pub fn rewrite_icmp_error_for_outside(
    pkt: &mut [u8],
    quoted: &FlowKey,
    mode: L4Checksum,
) -> Result<(), RewriteError> {
    rewrite_icmp_error(pkt, quoted, mode, Direction::Outside)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Inside,
    Outside,
}

/// Accumulates changes to bytes covered by the outer ICMP checksum.
struct IcmpSum {
    check: u16,
}

impl IcmpSum {
    fn note16(&mut self, old: u16, new: u16) {
        self.check = checksum::update16(self.check, old, new);
    }

    fn note32(&mut self, old: u32, new: u32) {
        self.check = checksum::update32(self.check, old, new);
    }
}

fn rewrite_icmp_error(
    pkt: &mut [u8],
    quoted: &FlowKey,
    mode: L4Checksum,
    direction: Direction,
) -> Result<(), RewriteError> {
    let mut ip = Ipv4Packet::new_checked(pkt)?;
    if ip.protocol() != 1 {
        return Err(RewriteError::NotIcmpError);
    }
    if ip.is_later_fragment() {
        return Err(WireError::Fragmented.into());
    }
    let outer_src = ip.src();
    let msg = ip.payload_mut();
    let icmp_view = IcmpPacket::new_checked(&*msg)?;
    let Some(quote) = icmp_view.quoted() else {
        return Err(RewriteError::NotIcmpError);
    };
    let (old, qhl) = quoted_flow(quote)?;
    if old.proto != quoted.proto {
        return Err(RewriteError::ProtocolMismatch {
            expected: quoted.proto,
            found: old.proto,
        });
    }
    // Bytes of the quoted L4 header present: bounded by the quote and by the
    // quoted packet's own total length (at least 8, checked above).
    let quoted_l4_len = Ipv4Packet::new_quoted(quote)?.payload().len();
    let mut sum = IcmpSum {
        check: icmp_view.checksum(),
    };

    let q = &mut msg[icmp::HEADER_LEN..];
    // Quoted IP header: addresses and its checksum.
    let mut qip = Ipv4Packet::new_unchecked(&mut *q);
    let (old_qsrc, old_qdst) = (u32::from(qip.src()), u32::from(qip.dst()));
    let (new_qsrc, new_qdst) = (u32::from(quoted.src), u32::from(quoted.dst));
    let old_qck = qip.checksum();
    let new_qck = checksum::update32(
        checksum::update32(old_qck, old_qsrc, new_qsrc),
        old_qdst,
        new_qdst,
    );
    qip.set_src_raw(quoted.src);
    qip.set_dst_raw(quoted.dst);
    qip.set_checksum(new_qck);
    sum.note32(old_qsrc, new_qsrc);
    sum.note32(old_qdst, new_qdst);
    sum.note16(old_qck, new_qck);

    // Quoted L4 header: ports or identifier, and its checksum if quoted.
    let l4 = &mut q[qhl..];
    let layout = L4 {
        proto: quoted.proto,
    };
    let has_checksum = quoted_l4_len >= layout.check_end();
    let old_l4ck = if has_checksum { layout.check(l4) } else { 0 };
    if has_checksum {
        layout.address_change(l4, old_qsrc, new_qsrc, L4Checksum::Full);
        layout.address_change(l4, old_qdst, new_qdst, L4Checksum::Full);
    }
    let ports: &[(Side, u16)] = if quoted.proto == Proto::Icmp {
        &[(Side::Src, quoted.sport)]
    } else {
        &[(Side::Src, quoted.sport), (Side::Dst, quoted.dport)]
    };
    for &(side, new_port) in ports {
        let old_port = layout.port(l4, side);
        if has_checksum {
            layout.port_change(l4, side, new_port, L4Checksum::Full);
        } else {
            layout.set_port(l4, side, new_port);
        }
        sum.note16(old_port, new_port);
    }
    if has_checksum {
        sum.note16(old_l4ck, layout.check(l4));
    }

    if mode == L4Checksum::Full {
        IcmpPacket::new_unchecked(&mut *msg).set_checksum(sum.check);
    }

    // Outer header; the ICMP checksum has no pseudo-header.
    ip.set_dst(quoted.src);
    let peer_sent_it = outer_src == Ipv4Addr::from(old_qdst);
    if direction == Direction::Outside || peer_sent_it {
        ip.set_src(quoted.dst);
    }
    Ok(())
}
