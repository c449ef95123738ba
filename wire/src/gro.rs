//! Receive coalescing in software (GRO): consecutive TCP/IPv4 segments of
//! one flow merged into one GSO frame, the inverse of [`crate::gso::segment`].
//!
//! A tunnel receives a large TCP send as many MTU-sized segments; writing
//! each into a TAP costs a crossing and a trip through the receiving
//! kernel's stack. [`TcpMerge`] puts them back together: the first segment
//! (the head) stays where it is, and each following segment that continues
//! it has its payload copied after the head's. [`TcpMerge::finish`] then
//! makes the head one `GSO_TCPV4` frame with a partial checksum — what a TAP
//! hands over for a TSO send — that segments back, byte for byte, into the
//! segments that went in.
//!
//! The rules are the ones Linux GRO applies (`tcp_gro_receive`,
//! `inet_gro_receive`), kept strict so that nothing the receiver could tell
//! apart is merged away:
//!
//! - plain frames only ([`Offload::NONE`]: complete checksums), untagged
//!   Ethernet carrying IPv4 with no options, DF set, not a fragment, the
//!   frame exactly as long as the IP packet says (no padding), a valid IP
//!   header checksum and a valid TCP checksum (the merged frame's checksum
//!   is partial, so a damaged segment must not hide in it);
//! - TCP with no options or exactly the timestamp option in its usual
//!   12-byte layout (NOP, NOP, TS), byte-equal in every merged segment;
//! - the head carries only ACK and a payload, which sets the segment size
//!   (MSS); each next segment has the same MACs, addresses, TOS, TTL,
//!   ports, ACK number, window and options, the next sequence number and
//!   the next IP identification, ACK or ACK+PSH, and a payload of at most
//!   the MSS. A shorter payload or PSH is merged as the last segment;
//! - the merged IP packet stays within 65535 bytes (a 64 KB GSO frame).
//!
//! A segment that does not qualify is not touched; the caller passes it on
//! as it is, after the head (never reordering a flow). Contract: pure
//! functions over caller-owned bytes, no allocation, no panic on any input.

use crate::checksum::{self, pseudo_header_sum};
use crate::ethernet::{self, ethertype, EthernetFrame};
use crate::ip::protocol;
use crate::ipv4::{self, Ipv4Packet};
use crate::offload::Offload;
use crate::tcp::{self, TcpFlags, TcpPacket};
use crate::vnet;

/// Where the IPv4 header starts (an untagged Ethernet frame).
const IP: usize = ethernet::HEADER_LEN;
/// Where the TCP header starts (an IPv4 header without options).
const TCP: usize = IP + ipv4::HEADER_LEN;
/// The largest IPv4 packet, and so the largest merged one.
const MAX_IP_LEN: usize = 65_535;
/// The one option layout merged besides none: NOP, NOP, timestamps (kind 8,
/// length 10), 12 bytes.
const TIMESTAMP_OPTIONS: [u8; 4] = [1, 1, 8, 10];
/// Header bytes every merged segment must share with the head: everything
/// up to the end of the TCP header except the IP total length (2..4 of the
/// IP header), identification (4..6) and checksum (10..12), and the TCP
/// sequence number (4..8), flags (13) and checksum (16..18).
const SAME: [(usize, usize); 6] = [
    (0, IP + 2),
    (IP + 6, IP + 10),
    (IP + 12, TCP + 4),
    (TCP + 8, TCP + 13),
    (TCP + 14, TCP + 16),
    (TCP + 18, usize::MAX),
];

/// A merge in progress: the head frame's layout and what the next segment
/// must look like to continue it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpMerge {
    /// Ethernet, IPv4 and TCP headers: where the payload starts.
    header_len: usize,
    /// The head's payload length: every segment but the last has it.
    mss: u16,
    /// The merged frame's length so far.
    len: usize,
    /// The sequence number the next segment must have.
    next_seq: u32,
    /// The IP identification the next segment must have.
    next_ident: u16,
    /// Segments merged so far, the head included.
    segments: u16,
    /// The last segment carried PSH.
    push: bool,
    /// A short or PSH segment was merged: nothing may follow it.
    closed: bool,
}

impl TcpMerge {
    /// Starts a merge with `frame` (offload state `offload`) as its head, or
    /// `None` when it cannot head one (not a plain TCP/IPv4 data segment
    /// that fits the rules in the module documentation). Nothing is changed.
    pub fn start(frame: &[u8], offload: &Offload) -> Option<TcpMerge> {
        let (ident, tcp) = check_segment(frame, offload)?;
        let header_len = TCP + tcp.header_len();
        let options = tcp.options();
        let options_ok =
            options.is_empty() || (options.len() == 12 && options[..4] == TIMESTAMP_OPTIONS);
        let payload = frame.len() - header_len;
        if !options_ok || tcp.flags() != TcpFlags::ACK || payload == 0 {
            return None;
        }
        Some(TcpMerge {
            header_len,
            mss: u16::try_from(payload).ok()?,
            len: frame.len(),
            next_seq: tcp.seq().wrapping_add(payload as u32),
            next_ident: ident.wrapping_add(1),
            segments: 1,
            push: false,
            closed: false,
        })
    }

    /// Appends `segment` (offload state `offload`) to the head if it
    /// continues it: its payload is copied to `head[self.len()..]`, where
    /// `head` is the head frame's buffer from its first byte to the end of
    /// its room. Returns false, changing nothing, when the segment does not
    /// continue the head or the result would not fit `head` or 64 KB.
    pub fn append(&mut self, head: &mut [u8], segment: &[u8], offload: &Offload) -> bool {
        if self.closed || segment.len() <= self.header_len || head.len() < self.header_len {
            return false;
        }
        let payload = segment.len() - self.header_len;
        let merged = self.len + payload;
        if payload > usize::from(self.mss) || merged - IP > MAX_IP_LEN || merged > head.len() {
            return false;
        }
        let same = SAME.iter().all(|&(from, to)| {
            let to = to.min(self.header_len);
            head[from..to] == segment[from..to]
        });
        if !same {
            return false;
        }
        let Some((ident, tcp)) = check_segment(segment, offload) else {
            return false;
        };
        let flags = tcp.flags();
        let push = flags == TcpFlags::ACK | TcpFlags::PSH;
        if ident != self.next_ident
            || tcp.seq() != self.next_seq
            || !(flags == TcpFlags::ACK || push)
        {
            return false;
        }
        head[self.len..merged].copy_from_slice(&segment[self.header_len..]);
        self.len = merged;
        self.next_seq = self.next_seq.wrapping_add(payload as u32);
        self.next_ident = self.next_ident.wrapping_add(1);
        self.segments += 1;
        self.push = push;
        self.closed = push || payload < usize::from(self.mss);
        true
    }

    /// The merged frame's length so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a merge holds at least its head.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Segments merged so far, the head included.
    pub fn segments(&self) -> u16 {
        self.segments
    }

    /// Ends the merge: `head` (at least [`len`](Self::len) bytes, the head
    /// frame's buffer as given to [`append`](Self::append)) becomes one GSO
    /// frame of `len` bytes — IP total length and header checksum written,
    /// PSH set if the last segment had it, the TCP checksum field holding
    /// the pseudo-header sum — and its offload state is returned. A merge of
    /// the head alone changes nothing and returns [`Offload::NONE`].
    pub fn finish(&self, head: &mut [u8]) -> Offload {
        if self.segments < 2 || head.len() < self.len {
            return Offload::NONE;
        }
        let frame = &mut head[..self.len];
        let mut ip = Ipv4Packet::new_unchecked(&mut frame[IP..TCP]);
        ip.set_total_len((self.len - IP) as u16);
        ip.fill_checksum();
        let (src, dst) = (ip.src(), ip.dst());
        let mut tcp = TcpPacket::new_unchecked(&mut frame[TCP..]);
        if self.push {
            let flags = tcp.flags() | TcpFlags::PSH;
            tcp.set_flags(flags);
        }
        let tcp_len = (self.len - TCP) as u16;
        tcp.set_checksum(pseudo_header_sum(src, dst, protocol::TCP, tcp_len));
        Offload {
            flags: vnet::F_NEEDS_CSUM,
            gso_type: vnet::GSO_TCPV4,
            hdr_len: self.header_len as u16,
            gso_size: self.mss,
            csum_start: TCP as u16,
            csum_offset: tcp::CHECKSUM_OFFSET as u16,
        }
    }
}

/// The checks head and followers share: a plain, unpadded, untagged
/// Ethernet frame carrying an option-less, unfragmented DF IPv4 packet with
/// a valid header checksum, carrying TCP with a valid checksum. Returns the
/// IP identification and the TCP view.
fn check_segment<'a>(frame: &'a [u8], offload: &Offload) -> Option<(u16, TcpPacket<&'a [u8]>)> {
    if *offload != Offload::NONE {
        return None;
    }
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != ethertype::IPV4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(&frame[IP..]).ok()?;
    if ip.header_len() != ipv4::HEADER_LEN
        || ip.protocol() != protocol::TCP
        || !ip.dont_frag()
        || ip.is_fragment()
        || usize::from(ip.total_len()) != frame.len() - IP
        || !ip.verify_checksum()
    {
        return None;
    }
    let (src, dst, ident) = (ip.src(), ip.dst(), ip.ident());
    let tcp = TcpPacket::new_checked(&frame[TCP..]).ok()?;
    if checksum::l4_checksum(src, dst, protocol::TCP, &frame[TCP..]) != 0 {
        return None;
    }
    Some((ident, tcp))
}

#[cfg(test)]
mod tests;
