//! Typed views over the wire formats the gateway reads and rewrites:
//! Ethernet, ARP, IPv4, TCP, UDP and ICMP, in the style of smoltcp's `wire`.
//!
//! Contract: every view wraps a caller's buffer (`T: AsRef<[u8]>`, setters
//! need `T: AsMut<[u8]>`); `new_checked` validates untrusted input and after
//! it no accessor panics. Nothing here allocates or does I/O. Setters write
//! one field; only the ones documented as such (`Ipv4Packet::set_src`,
//! `set_dst`, `set_ttl`, `TcpPacket::set_mss`) keep a checksum right.
//! Builders write into caller-provided buffers and return the length written.
//!
//! [`flow_of`] classifies an IPv4 packet for connection tracking.
//!
//! Abbreviations: MF "more fragments", DF "don't fragment", IHL "internet
//! header length", MSS "maximum segment size".

pub mod arp;
mod classify;
pub mod ethernet;
pub mod icmp;
pub mod ipv4;
pub mod tcp;
pub mod udp;

pub use arp::{build_arp_reply, build_arp_request, ArpFrame, ArpOp, ArpPacket};
pub(crate) use classify::quoted_flow;
pub use classify::{flow_of, FragmentInfo, PacketFlow};
pub use ethernet::EthernetFrame;
pub use icmp::{build_icmp_error, echo_reply_in_place, IcmpErrorKind, IcmpPacket};
pub use ipv4::Ipv4Packet;
pub use tcp::{TcpFlags, TcpPacket};
pub use udp::UdpPacket;

/// Why bytes could not be read as, or written into, a wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The buffer ends before the named part does.
    #[error("{what} truncated: need {need} bytes, have {have}")]
    Truncated {
        /// The part that does not fit.
        what: &'static str,
        /// Bytes it needs.
        need: usize,
        /// Bytes there are.
        have: usize,
    },
    /// The IP version field is not 4.
    #[error("IP version {0}, expected 4")]
    BadVersion(u8),
    /// A header length field (IPv4 IHL, TCP data offset) is below the minimum of 5 words.
    #[error("header length {0} words is below the minimum of 5")]
    BadHeaderLen(u8),
    /// The IPv4 total length is shorter than the header or longer than the buffer.
    #[error("IPv4 total length {total_len} outside header length {header_len}..=buffer {buffer}")]
    BadTotalLen {
        /// Total length field.
        total_len: u16,
        /// Header length in bytes.
        header_len: usize,
        /// Buffer length.
        buffer: usize,
    },
    /// ARP for something other than Ethernet and IPv4.
    #[error("ARP packet is not Ethernet/IPv4")]
    UnsupportedArp,
    /// An IP protocol the gateway does not track or translate.
    #[error("IP protocol {0} is not TCP, UDP or ICMP")]
    UnsupportedProtocol(u8),
    /// An ICMP message that is neither an echo nor a translated error.
    #[error("ICMP type {icmp_type} code {code} is not tracked")]
    UntrackedIcmp {
        /// ICMP type.
        icmp_type: u8,
        /// ICMP code.
        code: u8,
    },
    /// An ICMP error quotes a packet whose flow cannot be known: a non-first
    /// fragment, or an ICMP message other than an echo.
    #[error("ICMP error quotes {0}")]
    UntrackableQuote(&'static str),
    /// A whole packet was required, not a fragment.
    #[error("packet is a fragment")]
    Fragmented,
    /// `echo_reply_in_place` was given something other than an echo request.
    #[error("ICMP type {0} is not an echo request")]
    NotEchoRequest(u8),
    /// RFC 1812 4.3.2.7 forbids an ICMP error about this packet.
    #[error("no ICMP error may be sent: {0}")]
    ErrorNotAllowed(&'static str),
    /// The output buffer is too small.
    #[error("output buffer too small: need {need} bytes, have {have}")]
    BufferTooSmall {
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
}
