//! ICMPv4 view (RFC 792) and the two ICMP messages the project writes: an
//! echo reply made from a request in place, and an error quoting a packet
//! (destination unreachable — fragmentation needed among them —, time
//! exceeded, parameter problem), described by an [`IcmpErrorKind`].
//!
//! Contract: the buffer is the ICMP message: the IPv4 payload. [`IcmpPacket::new_checked`]
//! checks the 8-byte header; the checksum covers the whole message (there is
//! no pseudo-header). For errors the data after the header is the quoted
//! packet: its IPv4 header and at least the first 8 bytes of its payload.
//!
//! Error size: [`build_icmp_error`] quotes as much of the original packet as
//! fits in a 576-byte error ([`MAX_ERROR_LEN`], RFC 1812 section 4.3.2.3),
//! which is never less than RFC 792's header + 8 bytes; it refuses the cases
//! RFC 1812 section 4.3.2.7 forbids.

use core::net::Ipv4Addr;

use crate::checksum;
use crate::ip::protocol;
use crate::ipv4::{self, Ipv4Packet, Ipv4Repr};
use crate::WireError;

mod field {
    use core::ops::Range;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const SEQ: Range<usize> = 6..8;
    pub const POINTER: usize = 4;
    pub const MTU: Range<usize> = 6..8;
    pub const REST: Range<usize> = 4..8;
}

/// Header length (type, code, checksum, 4 bytes of "rest of header").
pub const HEADER_LEN: usize = 8;

/// Offset of the checksum field.
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM.start;

/// Echo reply.
pub const ECHO_REPLY: u8 = 0;
/// Destination unreachable.
pub const DEST_UNREACHABLE: u8 = 3;
/// Source quench (deprecated, RFC 6633).
pub const SOURCE_QUENCH: u8 = 4;
/// Redirect (RFC 792): an error type, so never answered with an error.
pub const REDIRECT: u8 = 5;
/// Echo request.
pub const ECHO_REQUEST: u8 = 8;
/// Time exceeded.
pub const TIME_EXCEEDED: u8 = 11;
/// Parameter problem.
pub const PARAMETER_PROBLEM: u8 = 12;

/// Destination-unreachable code: fragmentation needed and DF set (the
/// message carries the next-hop MTU).
pub const CODE_FRAG_NEEDED: u8 = 4;
/// Destination-unreachable code: port unreachable.
pub const CODE_PORT_UNREACHABLE: u8 = 3;
/// Time-exceeded code: TTL exceeded in transit.
pub const CODE_TTL_EXCEEDED: u8 = 0;

/// Largest ICMP error we build, IPv4 header included (RFC 1812 4.3.2.3).
pub const MAX_ERROR_LEN: usize = 576;

/// TTL of the messages we originate.
pub const DEFAULT_TTL: u8 = 64;

/// TOS of the errors we build: precedence "internetwork control", as Linux
/// sends them.
const ERROR_TOS: u8 = 0xc0;

/// A view of an ICMPv4 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> IcmpPacket<T> {
    /// Wraps `buffer` without checks.
    pub fn new_unchecked(buffer: T) -> Self {
        IcmpPacket { buffer }
    }

    /// Wraps `buffer` after checking that the 8-byte header fits.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let len = buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated {
                what: "ICMP header",
                need: HEADER_LEN,
                have: len,
            });
        }
        Ok(IcmpPacket { buffer })
    }

    /// The underlying bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    fn u16_at(&self, r: core::ops::Range<usize>) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[r.start], b[r.start + 1]])
    }

    /// Message type.
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// Message code.
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    /// Echo identifier (bytes 4..6; meaningful for echo request/reply).
    pub fn echo_ident(&self) -> u16 {
        self.u16_at(field::IDENT)
    }

    /// Echo sequence number (bytes 6..8).
    pub fn echo_seq(&self) -> u16 {
        self.u16_at(field::SEQ)
    }

    /// Next-hop MTU of a "fragmentation needed" message (bytes 6..8, RFC 1191).
    pub fn next_hop_mtu(&self) -> u16 {
        self.u16_at(field::MTU)
    }

    /// Pointer of a parameter-problem message (byte 4).
    pub fn pointer(&self) -> u8 {
        self.buffer.as_ref()[field::POINTER]
    }

    /// Bytes 4..8 as one word.
    pub fn rest_of_header(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::REST];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// Everything after the 8-byte header.
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// Echo request or reply.
    pub fn is_echo(&self) -> bool {
        matches!(self.msg_type(), ECHO_REQUEST | ECHO_REPLY)
    }

    /// Any error message (one must never answer it with another error).
    pub fn is_error(&self) -> bool {
        is_error_type(self.msg_type())
    }

    /// The quoted packet of an error NAT translates (destination unreachable,
    /// time exceeded, parameter problem; RFC 5508), else `None`.
    pub fn quoted(&self) -> Option<&[u8]> {
        is_translated_error_type(self.msg_type()).then(|| self.data())
    }

    /// True when the checksum over the whole message is correct.
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(self.buffer.as_ref()) == 0
    }
}

/// Whether an ICMP type is an error message (RFC 1812 4.3.2.7's list).
pub fn is_error_type(t: u8) -> bool {
    matches!(
        t,
        DEST_UNREACHABLE | SOURCE_QUENCH | REDIRECT | TIME_EXCEEDED | PARAMETER_PROBLEM
    )
}

/// Whether an ICMP type is an error that NAT translates (RFC 5508 section 4:
/// destination unreachable, time exceeded, parameter problem).
pub fn is_translated_error_type(t: u8) -> bool {
    matches!(t, DEST_UNREACHABLE | TIME_EXCEEDED | PARAMETER_PROBLEM)
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IcmpPacket<T> {
    fn set_u16_at(&mut self, r: core::ops::Range<usize>, v: u16) {
        self.buffer.as_mut()[r].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the type; checksum not updated.
    pub fn set_msg_type(&mut self, t: u8) {
        self.buffer.as_mut()[field::TYPE] = t;
    }

    /// Sets the code; checksum not updated.
    pub fn set_code(&mut self, code: u8) {
        self.buffer.as_mut()[field::CODE] = code;
    }

    /// Writes the checksum field as given.
    pub fn set_checksum(&mut self, check: u16) {
        self.set_u16_at(field::CHECKSUM, check);
    }

    /// Sets the echo identifier; checksum not updated.
    pub fn set_echo_ident(&mut self, ident: u16) {
        self.set_u16_at(field::IDENT, ident);
    }

    /// Sets the echo sequence number; checksum not updated.
    pub fn set_echo_seq(&mut self, seq: u16) {
        self.set_u16_at(field::SEQ, seq);
    }

    /// Sets bytes 4..8 (unused / pointer / next-hop MTU); checksum not updated.
    pub fn set_rest_of_header(&mut self, rest: u32) {
        self.buffer.as_mut()[field::REST].copy_from_slice(&rest.to_be_bytes());
    }

    /// Everything after the header, mutable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }

    /// Recomputes the checksum over the whole message.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }
}

/// Turns the IPv4 ICMP echo request in `ip` into its reply, in place: swaps
/// source and destination, sets the TTL to `ttl`, the type to echo reply, and
/// updates both checksums incrementally. Identifier, sequence, data, IP
/// identification and options are kept (RFC 792: the data is returned
/// unchanged). Returns the reply's length (the request's total length; bytes
/// after it, such as Ethernet padding, are left alone).
///
/// Refuses a fragment (the gateway must not answer a partial request) and
/// anything that is not an echo request. The ICMP checksum must be a full
/// one: echo requests are never checksum-offloaded.
pub fn echo_reply_in_place(ip: &mut [u8], ttl: u8) -> Result<usize, WireError> {
    let mut p = Ipv4Packet::new_checked(ip)?;
    if p.protocol() != protocol::ICMP {
        return Err(WireError::UnsupportedProtocol(p.protocol()));
    }
    if p.is_fragment() {
        return Err(WireError::Fragmented);
    }
    let mut icmp = IcmpPacket::new_checked(p.payload_mut())?;
    if icmp.msg_type() != ECHO_REQUEST {
        return Err(WireError::NotEchoRequest(icmp.msg_type()));
    }
    let code = icmp.code();
    let old = u16::from_be_bytes([ECHO_REQUEST, code]);
    let new = u16::from_be_bytes([ECHO_REPLY, code]);
    let c = checksum::update16(icmp.checksum(), old, new);
    icmp.set_msg_type(ECHO_REPLY);
    icmp.set_checksum(c);

    // Swapping the two addresses leaves the header sum unchanged.
    let (src, dst) = (p.src(), p.dst());
    p.set_src_raw(dst);
    p.set_dst_raw(src);
    p.set_ttl(ttl);
    Ok(usize::from(p.total_len()))
}

/// Which ICMP error to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpErrorKind {
    /// Destination unreachable (type 3) with this code (0 net, 1 host,
    /// 3 port, 13 administratively prohibited, …). For code 4 use
    /// [`IcmpErrorKind::FragmentationNeeded`].
    DestUnreachable(u8),
    /// Destination unreachable, fragmentation needed and DF set (type 3
    /// code 4), with the next-hop MTU (RFC 1191).
    FragmentationNeeded {
        /// MTU of the link the packet did not fit.
        next_hop_mtu: u16,
    },
    /// Time exceeded (type 11): code 0 TTL exceeded in transit, 1 fragment
    /// reassembly time exceeded.
    TimeExceeded(u8),
    /// Parameter problem (type 12, code 0) with the offending byte.
    ParameterProblem {
        /// Offset of the bad byte in the quoted packet.
        pointer: u8,
    },
}

impl IcmpErrorKind {
    /// The kind of the error `msg` is, as [`build_icmp_error`] would have
    /// written it; `None` for anything else (an echo, a redirect, a
    /// parameter problem with a code other than 0).
    pub fn parse<T: AsRef<[u8]>>(msg: &IcmpPacket<T>) -> Option<IcmpErrorKind> {
        match (msg.msg_type(), msg.code()) {
            (DEST_UNREACHABLE, CODE_FRAG_NEEDED) => Some(IcmpErrorKind::FragmentationNeeded {
                next_hop_mtu: msg.next_hop_mtu(),
            }),
            (DEST_UNREACHABLE, code) => Some(IcmpErrorKind::DestUnreachable(code)),
            (TIME_EXCEEDED, code) => Some(IcmpErrorKind::TimeExceeded(code)),
            (PARAMETER_PROBLEM, 0) => Some(IcmpErrorKind::ParameterProblem {
                pointer: msg.pointer(),
            }),
            _ => None,
        }
    }

    fn type_code_rest(self) -> (u8, u8, u32) {
        match self {
            IcmpErrorKind::DestUnreachable(code) => (DEST_UNREACHABLE, code, 0),
            IcmpErrorKind::FragmentationNeeded { next_hop_mtu } => {
                (DEST_UNREACHABLE, CODE_FRAG_NEEDED, u32::from(next_hop_mtu))
            }
            IcmpErrorKind::TimeExceeded(code) => (TIME_EXCEEDED, code, 0),
            IcmpErrorKind::ParameterProblem { pointer } => {
                (PARAMETER_PROBLEM, 0, u32::from(pointer) << 24)
            }
        }
    }
}

/// Writes into `out` an IPv4 packet carrying an ICMP error of `kind` about
/// `original` (an IPv4 packet as it was received), from `src`, to the
/// original's source. Returns the number of bytes written.
///
/// The quote is as much of `original` (up to its total length) as fits in
/// [`MAX_ERROR_LEN`] bytes and in `out`; `out` must hold at least 28 bytes +
/// the original's IP header + 8 bytes of its payload (or the whole original
/// when shorter), else [`WireError::BufferTooSmall`]. The IPv4 header has no
/// options, TOS 0xc0 (precedence "internetwork control", as Linux sends
/// errors), identification `ident`, no flags, TTL [`DEFAULT_TTL`].
///
/// Refuses ([`WireError::ErrorNotAllowed`]) what RFC 1812 4.3.2.7 forbids
/// answering: an ICMP error, a fragment other than the first, a packet sent
/// to a broadcast or multicast address, or one whose source is not a unicast
/// address. (Subnet broadcasts are the caller's to recognise.)
pub fn build_icmp_error(
    out: &mut [u8],
    src: Ipv4Addr,
    ident: u16,
    kind: IcmpErrorKind,
    original: &[u8],
) -> Result<usize, WireError> {
    IcmpErrorRepr { src, ident, kind }.emit(out, original)
}

/// An ICMP error the project sends, apart from the packet it quotes: who
/// sends it, the IPv4 identification it goes with, and what it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpErrorRepr {
    /// The error's source address.
    pub src: Ipv4Addr,
    /// The identification of the error's IPv4 header.
    pub ident: u16,
    /// Type, code and rest of header.
    pub kind: IcmpErrorKind,
}

impl IcmpErrorRepr {
    /// Writes the error about `original` into `out` as [`build_icmp_error`]
    /// describes; returns the number of bytes written.
    pub fn emit(&self, out: &mut [u8], original: &[u8]) -> Result<usize, WireError> {
        let Self { src, ident, kind } = *self;
        let orig = Ipv4Packet::new_checked(original)?;
        check_error_allowed(&orig)?;

        let orig_len = usize::from(orig.total_len());
        let must_quote = (orig.header_len() + 8).min(orig_len);
        let overhead = ipv4::HEADER_LEN + HEADER_LEN;
        if out.len() < overhead + must_quote {
            return Err(WireError::BufferTooSmall {
                need: overhead + must_quote,
                have: out.len(),
            });
        }
        let quote_len = orig_len
            .min(MAX_ERROR_LEN - overhead)
            .min(out.len() - overhead);
        let total = overhead + quote_len;
        let out = &mut out[..total];

        Ipv4Repr {
            src,
            dst: orig.src(),
            protocol: protocol::ICMP,
            payload_len: total - ipv4::HEADER_LEN,
            ttl: DEFAULT_TTL,
            ident,
            dont_frag: false,
            tos: ERROR_TOS,
        }
        .emit(&mut Ipv4Packet::new_unchecked(&mut *out))?;

        let (icmp_type, code, rest) = kind.type_code_rest();
        let mut icmp = IcmpPacket::new_unchecked(&mut out[ipv4::HEADER_LEN..]);
        icmp.set_msg_type(icmp_type);
        icmp.set_code(code);
        icmp.set_rest_of_header(rest);
        icmp.data_mut().copy_from_slice(&original[..quote_len]);
        icmp.fill_checksum();
        Ok(total)
    }
}

fn check_error_allowed(orig: &Ipv4Packet<&[u8]>) -> Result<(), WireError> {
    if orig.is_later_fragment() {
        return Err(WireError::ErrorNotAllowed(
            "the packet is a non-first fragment",
        ));
    }
    if orig.protocol() == protocol::ICMP {
        let payload = orig.payload();
        // An error about an error could loop; a truncated ICMP header is
        // treated as one to be safe.
        if payload.is_empty() || is_error_type(payload[0]) {
            return Err(WireError::ErrorNotAllowed("the packet is an ICMP error"));
        }
    }
    let dst = orig.dst();
    if dst.is_broadcast() || dst.is_multicast() {
        return Err(WireError::ErrorNotAllowed(
            "the packet was sent to a broadcast or multicast address",
        ));
    }
    let s = orig.src();
    if s.is_unspecified()
        || s.is_broadcast()
        || s.is_multicast()
        || s.is_loopback()
        || s.octets()[0] >= 240
    {
        return Err(WireError::ErrorNotAllowed(
            "the packet's source is not a unicast address",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HOST: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 2);
    const GW: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 1);

    fn echo_request(payload: &[u8]) -> Vec<u8> {
        let b = etherparse::PacketBuilder::ipv4(HOST.octets(), GW.octets(), 64)
            .icmpv4_echo_request(0x4242, 7);
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

    fn udp(len: usize) -> Vec<u8> {
        let b =
            etherparse::PacketBuilder::ipv4(HOST.octets(), [198, 51, 100, 9], 1).udp(33000, 33434);
        let mut v = Vec::new();
        b.write(&mut v, &vec![0xab; len]).unwrap();
        v
    }

    #[test]
    fn echo_reply_every_byte() {
        let req = echo_request(b"abcdefgh");
        let mut v = req.clone();
        v.extend_from_slice(&[0; 6]); // Ethernet padding stays untouched
        let n = echo_reply_in_place(&mut v, 64).unwrap();
        assert_eq!(n, req.len());
        let want = {
            let b = etherparse::PacketBuilder::ipv4(GW.octets(), HOST.octets(), 64)
                .icmpv4_echo_reply(0x4242, 7);
            let mut w = Vec::new();
            b.write(&mut w, b"abcdefgh").unwrap();
            w
        };
        assert_eq!(&v[..n], &want[..]);
        assert_eq!(&v[n..], &[0; 6]);
    }

    #[test]
    fn echo_reply_refuses_non_requests() {
        let mut v = udp(4);
        assert_eq!(
            echo_reply_in_place(&mut v, 64),
            Err(WireError::UnsupportedProtocol(17))
        );
        let mut v = echo_request(b"x");
        v[20] = ECHO_REPLY;
        assert_eq!(
            echo_reply_in_place(&mut v, 64),
            Err(WireError::NotEchoRequest(0))
        );
    }

    #[test]
    fn time_exceeded_quotes_whole_small_packet() {
        let orig = udp(12);
        let mut out = [0u8; 600];
        let n = build_icmp_error(&mut out, GW, 99, IcmpErrorKind::TimeExceeded(0), &orig).unwrap();
        assert_eq!(n, 28 + orig.len());
        let ip = Ipv4Packet::new_checked(&out[..n]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(
            (ip.src(), ip.dst(), ip.protocol(), ip.ttl()),
            (GW, HOST, 1, 64)
        );
        assert_eq!((ip.ident(), ip.tos()), (99, 0xc0));
        let icmp = IcmpPacket::new_checked(ip.payload()).unwrap();
        assert!(icmp.verify_checksum());
        assert_eq!(
            (icmp.msg_type(), icmp.code(), icmp.rest_of_header()),
            (11, 0, 0)
        );
        assert_eq!(icmp.quoted(), Some(&orig[..]));
        // etherparse agrees on the whole message.
        let parsed = etherparse::SlicedPacket::from_ip(&out[..n]).unwrap();
        assert!(matches!(
            parsed.transport,
            Some(etherparse::TransportSlice::Icmpv4(_))
        ));
    }

    #[test]
    fn frag_needed_quotes_up_to_576() {
        let orig = udp(1400);
        let mut out = [0u8; 2000];
        let kind = IcmpErrorKind::FragmentationNeeded { next_hop_mtu: 1400 };
        let n = build_icmp_error(&mut out, GW, 1, kind, &orig).unwrap();
        assert_eq!(n, MAX_ERROR_LEN);
        let icmp = IcmpPacket::new_checked(&out[20..n]).unwrap();
        assert_eq!(
            (icmp.msg_type(), icmp.code(), icmp.next_hop_mtu()),
            (3, 4, 1400)
        );
        assert_eq!(icmp.data(), &orig[..548]);
        assert!(icmp.verify_checksum());
    }

    #[test]
    fn small_buffer_quotes_header_plus_8() {
        let orig = udp(100);
        let mut out = [0u8; 56];
        let n =
            build_icmp_error(&mut out, GW, 1, IcmpErrorKind::DestUnreachable(1), &orig).unwrap();
        assert_eq!(n, 56);
        let mut tiny = [0u8; 55];
        assert_eq!(
            build_icmp_error(&mut tiny, GW, 1, IcmpErrorKind::DestUnreachable(1), &orig),
            Err(WireError::BufferTooSmall { need: 56, have: 55 })
        );
    }

    #[test]
    fn error_kind_round_trips() {
        let orig = udp(20);
        let mut out = [0u8; 200];
        for kind in [
            IcmpErrorKind::DestUnreachable(13),
            IcmpErrorKind::FragmentationNeeded { next_hop_mtu: 1400 },
            IcmpErrorKind::TimeExceeded(1),
            IcmpErrorKind::ParameterProblem { pointer: 9 },
        ] {
            let n = build_icmp_error(&mut out, GW, 1, kind, &orig).unwrap();
            let icmp = IcmpPacket::new_checked(&out[20..n]).unwrap();
            assert_eq!(IcmpErrorKind::parse(&icmp), Some(kind));
        }
        let req = echo_request(b"");
        let echo = IcmpPacket::new_checked(&req[20..]).unwrap();
        assert_eq!(IcmpErrorKind::parse(&echo), None);
    }

    #[test]
    fn parameter_problem_pointer() {
        let orig = udp(0);
        let mut out = [0u8; 100];
        let kind = IcmpErrorKind::ParameterProblem { pointer: 9 };
        let n = build_icmp_error(&mut out, GW, 1, kind, &orig).unwrap();
        let icmp = IcmpPacket::new_checked(&out[20..n]).unwrap();
        assert_eq!((icmp.msg_type(), icmp.pointer()), (12, 9));
    }

    #[test]
    fn no_error_about_errors_fragments_or_broadcasts() {
        let mut out = [0u8; 600];
        let kind = IcmpErrorKind::TimeExceeded(0);
        let orig = udp(10);
        let n = build_icmp_error(&mut out, GW, 1, kind, &orig).unwrap();
        let err = out[..n].to_vec();
        assert!(matches!(
            build_icmp_error(&mut out, GW, 1, kind, &err),
            Err(WireError::ErrorNotAllowed(_))
        ));
        let mut frag = udp(10);
        Ipv4Packet::new_unchecked(&mut frag[..]).set_flags_frag(false, false, 8);
        assert!(matches!(
            build_icmp_error(&mut out, GW, 1, kind, &frag),
            Err(WireError::ErrorNotAllowed(_))
        ));
        let mut bcast = udp(10);
        Ipv4Packet::new_unchecked(&mut bcast[..]).set_dst_raw(Ipv4Addr::BROADCAST);
        assert!(matches!(
            build_icmp_error(&mut out, GW, 1, kind, &bcast),
            Err(WireError::ErrorNotAllowed(_))
        ));
        // An echo request is not an error: answering it is fine.
        assert!(build_icmp_error(&mut out, GW, 1, kind, &echo_request(b"")).is_ok());
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(mut i) = IcmpPacket::new_checked(data.clone()) {
                let _ = (i.msg_type(), i.code(), i.checksum(), i.echo_ident(), i.echo_seq());
                let _ = (i.next_hop_mtu(), i.pointer(), i.rest_of_header(), i.data());
                let _ = (i.quoted(), i.is_echo(), i.is_error(), i.verify_checksum());
                let _ = IcmpErrorKind::parse(&i);
                i.fill_checksum();
            }
            let mut out = [0u8; 128];
            let _ = build_icmp_error(&mut out, GW, 0, IcmpErrorKind::TimeExceeded(0), &data);
            let mut d = data;
            let _ = echo_reply_in_place(&mut d, 64);
        }
    }
}
