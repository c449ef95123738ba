//! [`WireError`]: why bytes could not be read as, or written into, a wire
//! format.
//!
//! Contract: one enum for every view and builder of the crate, about bytes
//! only — a length, a field value, a buffer size. What a caller makes of a
//! well-formed packet (a protocol it does not track, an ICMP type it does
//! not translate) is the caller's own error, not a variant here. `Copy`, no
//! allocation, so a drop path can return it per frame.

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
    /// The IP version field is not the view's: 4 for an IPv4 view, 6 for
    /// an IPv6 one.
    #[error(
        "IP version {0} does not match the header view reading it (IPv4 reads 4, IPv6 reads 6)"
    )]
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
    /// The IPv4 packet carries another protocol than the operation handles
    /// (an echo reply is made only from ICMP).
    #[error("IP protocol {0} is not the one this operation handles")]
    UnsupportedProtocol(u8),
    /// A whole packet was required, not a fragment.
    #[error("packet is a fragment")]
    Fragmented,
    /// `echo_reply_in_place` was given something other than an echo request.
    #[error("ICMP type {0} is not an echo request")]
    NotEchoRequest(u8),
    /// RFC 1812 4.3.2.7 forbids an ICMP error about this packet.
    #[error("no ICMP error may be sent: {0}")]
    ErrorNotAllowed(&'static str),
    /// The GRE version field is not 0.
    #[error("GRE version {0}, expected 0")]
    GreVersion(u8),
    /// A GRE flag other than C, K and S is set (routing, strict source
    /// route, recursion control or a reserved bit).
    #[error("GRE flags {0:#06x} set besides checksum, key and sequence")]
    GreUnknownFlags(u16),
    /// An IPv4 packet to build would exceed the 65535 bytes its total length
    /// field can say.
    #[error("IPv4 packet of {total_len} bytes is over the 65535-byte limit: segment or fragment it first")]
    TooLong {
        /// The length the packet would have.
        total_len: usize,
    },
    /// The output buffer is too small.
    #[error("output buffer too small: need {need} bytes, have {have}")]
    BufferTooSmall {
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
}
