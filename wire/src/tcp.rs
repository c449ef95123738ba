//! TCP header view (RFC 9293), its flags ([`TcpFlags`]) and options: the MSS
//! (read, rewritten, clamped) and the window scale.
//!
//! Contract: the buffer is the TCP segment: the IPv4 payload, header first.
//! [`TcpPacket::new_checked`] checks that the fixed header and the options
//! the data offset announces are present; after it no accessor panics.
//! Options are walked by one iterator, [`TcpOptionIter`], which stops quietly
//! at a malformed option (a length that runs past the header): the MSS and
//! window scale accessors then report none rather than failing.

use core::net::Ipv4Addr;

use crate::checksum::{self, L4Checksum};
use crate::ip::protocol;
use crate::WireError;

mod field {
    use core::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const SEQ: Range<usize> = 4..8;
    pub const ACK: Range<usize> = 8..12;
    pub const OFFSET: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: Range<usize> = 14..16;
    pub const CHECKSUM: Range<usize> = 16..18;
    pub const URGENT: Range<usize> = 18..20;
}

/// Offset of the checksum field in the header (it lies beyond the 8 bytes an
/// ICMP error is guaranteed to quote).
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM.start;

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;

/// TCP option kinds (IANA "TCP Option Kind Numbers").
pub mod option_kind {
    /// End of option list.
    pub const END: u8 = 0;
    /// No operation (padding between options).
    pub const NOP: u8 = 1;
    /// Maximum segment size (length 4).
    pub const MSS: u8 = 2;
    /// Window scale (length 3, RFC 7323).
    pub const WINDOW_SCALE: u8 = 3;
}

/// One TCP option other than END and NOP, as [`TcpOptionIter`] finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpOption<'a> {
    /// Option kind ([`option_kind`]).
    pub kind: u8,
    /// Offset of the kind byte within the options (add [`HEADER_LEN`] for
    /// the offset in the segment).
    pub offset: usize,
    /// The option's data: what follows its kind and length bytes.
    pub data: &'a [u8],
}

/// The one walker over TCP options: yields each option in order, skipping
/// NOPs, and stops at END or at the first malformed option (a missing
/// length byte, a length below 2 or one that runs past the options) — so a
/// caller never sees bytes that are not an option.
#[derive(Debug, Clone)]
pub struct TcpOptionIter<'a> {
    options: &'a [u8],
    at: usize,
}

impl<'a> TcpOptionIter<'a> {
    /// Walks `options`, the bytes between the fixed header and the data.
    pub fn new(options: &'a [u8]) -> Self {
        TcpOptionIter { options, at: 0 }
    }
}

impl<'a> Iterator for TcpOptionIter<'a> {
    type Item = TcpOption<'a>;

    fn next(&mut self) -> Option<TcpOption<'a>> {
        let opts = self.options;
        while let Some(&kind) = opts.get(self.at) {
            match kind {
                option_kind::END => break,
                option_kind::NOP => self.at += 1,
                _ => {
                    let at = self.at;
                    let len = opts.get(at + 1).map_or(0, |l| usize::from(*l));
                    if len < 2 || at + len > opts.len() {
                        break;
                    }
                    self.at += len;
                    return Some(TcpOption {
                        kind,
                        offset: at,
                        data: &opts[at + 2..at + len],
                    });
                }
            }
        }
        self.at = opts.len();
        None
    }
}

/// The TCP flag bits of byte 13.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// No more data from sender.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// Synchronise sequence numbers.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// Reset the connection.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// Push.
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// Acknowledgment field is significant.
    pub const ACK: TcpFlags = TcpFlags(0x10);
    /// Urgent pointer is significant.
    pub const URG: TcpFlags = TcpFlags(0x20);
    /// ECN echo.
    pub const ECE: TcpFlags = TcpFlags(0x40);
    /// Congestion window reduced.
    pub const CWR: TcpFlags = TcpFlags(0x80);

    /// No flags (also what non-TCP packets report).
    pub const fn empty() -> TcpFlags {
        TcpFlags(0)
    }

    /// True when every bit of `other` is set.
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// These flags with every bit of `other` cleared (GSO takes FIN and PSH
    /// off all segments but the last).
    pub const fn without(self, other: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 & !other.0)
    }

    /// SYN set.
    pub const fn syn(self) -> bool {
        self.contains(Self::SYN)
    }

    /// ACK set.
    pub const fn ack(self) -> bool {
        self.contains(Self::ACK)
    }

    /// FIN set.
    pub const fn fin(self) -> bool {
        self.contains(Self::FIN)
    }

    /// RST set.
    pub const fn rst(self) -> bool {
        self.contains(Self::RST)
    }
}

impl core::ops::BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

/// A view of a TCP segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wraps `buffer` without checks.
    pub fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }

    /// Wraps `buffer` after checking that the 20-byte header, a data offset
    /// ≥ 5 and the options it announces fit.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let len = buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated {
                what: "TCP header",
                need: HEADER_LEN,
                have: len,
            });
        }
        let p = TcpPacket { buffer };
        if p.data_offset() < 5 {
            return Err(WireError::BadHeaderLen(p.data_offset()));
        }
        if p.header_len() > len {
            return Err(WireError::Truncated {
                what: "TCP options",
                need: p.header_len(),
                have: len,
            });
        }
        Ok(p)
    }

    /// The underlying bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    fn u16_at(&self, r: core::ops::Range<usize>) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[r.start], b[r.start + 1]])
    }

    fn u32_at(&self, r: core::ops::Range<usize>) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([b[r.start], b[r.start + 1], b[r.start + 2], b[r.start + 3]])
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        self.u16_at(field::SRC_PORT)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        self.u16_at(field::DST_PORT)
    }

    /// Sequence number.
    pub fn seq(&self) -> u32 {
        self.u32_at(field::SEQ)
    }

    /// Acknowledgment number.
    pub fn ack(&self) -> u32 {
        self.u32_at(field::ACK)
    }

    /// Data offset in 32-bit words.
    pub fn data_offset(&self) -> u8 {
        self.buffer.as_ref()[field::OFFSET] >> 4
    }

    /// Header length in bytes, options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.data_offset()) * 4
    }

    /// The flag bits.
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.buffer.as_ref()[field::FLAGS])
    }

    /// Receive window.
    pub fn window(&self) -> u16 {
        self.u16_at(field::WINDOW)
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    /// Urgent pointer.
    pub fn urgent(&self) -> u16 {
        self.u16_at(field::URGENT)
    }

    /// The options bytes.
    pub fn options(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        let end = self.header_len().clamp(HEADER_LEN, b.len());
        &b[HEADER_LEN.min(end)..end]
    }

    /// The data after the header.
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[self.header_len().min(b.len())..]
    }

    /// The options, one by one (see [`TcpOptionIter`]).
    pub fn option_iter(&self) -> TcpOptionIter<'_> {
        TcpOptionIter::new(self.options())
    }

    /// Offset of the MSS option's value within the segment, if the first
    /// MSS option is well-formed (length 4).
    fn mss_offset(&self) -> Option<usize> {
        let o = self.option_iter().find(|o| o.kind == option_kind::MSS)?;
        (o.data.len() == 2).then_some(HEADER_LEN + o.offset + 2)
    }

    /// The MSS option's value, if the header carries a well-formed one.
    pub fn mss(&self) -> Option<u16> {
        let at = self.mss_offset()?;
        Some(self.u16_at(at..at + 2))
    }

    /// The window scale option's shift count (RFC 7323), from the first
    /// window scale option of length 3; `None` without one. Meaningful on
    /// SYN segments only.
    pub fn window_scale(&self) -> Option<u8> {
        self.option_iter()
            .find(|o| o.kind == option_kind::WINDOW_SCALE && o.data.len() == 1)
            .map(|o| o.data[0])
    }

    /// True when the checksum is correct for a segment of this length between
    /// `src` and `dst` (the buffer must be exactly the segment).
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        checksum::l4_checksum(src, dst, protocol::TCP, self.buffer.as_ref()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    fn set_u16_at(&mut self, r: core::ops::Range<usize>, v: u16) {
        self.buffer.as_mut()[r].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the source port; checksum not updated.
    pub fn set_src_port(&mut self, port: u16) {
        self.set_u16_at(field::SRC_PORT, port);
    }

    /// Sets the destination port; checksum not updated.
    pub fn set_dst_port(&mut self, port: u16) {
        self.set_u16_at(field::DST_PORT, port);
    }

    /// Sets the sequence number; checksum not updated.
    pub fn set_seq(&mut self, seq: u32) {
        self.buffer.as_mut()[field::SEQ].copy_from_slice(&seq.to_be_bytes());
    }

    /// Sets the acknowledgment number; checksum not updated.
    pub fn set_ack(&mut self, ack: u32) {
        self.buffer.as_mut()[field::ACK].copy_from_slice(&ack.to_be_bytes());
    }

    /// Sets the flag bits; checksum not updated.
    pub fn set_flags(&mut self, flags: TcpFlags) {
        self.buffer.as_mut()[field::FLAGS] = flags.0;
    }

    /// Writes the checksum field as given.
    pub fn set_checksum(&mut self, check: u16) {
        self.set_u16_at(field::CHECKSUM, check);
    }

    /// Sets the header length in 32-bit words (5 to 15; the low bits of
    /// the byte are kept); checksum not updated.
    pub fn set_data_offset(&mut self, words: u8) {
        let byte = &mut self.buffer.as_mut()[field::OFFSET];
        *byte = (words.clamp(5, 15) << 4) | (*byte & 0x0f);
    }

    /// Sets the receive window; checksum not updated.
    pub fn set_window(&mut self, window: u16) {
        self.set_u16_at(field::WINDOW, window);
    }

    /// Rewrites the MSS option's value if the header carries one, keeping the
    /// checksum right: updated incrementally in [`L4Checksum::Full`] mode,
    /// untouched in [`L4Checksum::Partial`] mode (the option is covered by the
    /// sum the device adds later). Returns the old value, or `None` (nothing
    /// changed) when there is no MSS option.
    pub fn set_mss(&mut self, mss: u16, mode: L4Checksum) -> Option<u16> {
        let at = self.mss_offset()?;
        let old = self.u16_at(at..at + 2);
        self.set_u16_at(at..at + 2, mss);
        if mode == L4Checksum::Full {
            let c = checksum::update16(self.checksum(), old, mss);
            self.set_checksum(c);
        }
        Some(old)
    }

    /// Lowers the MSS option to `max` if it is larger (MSS clamping for
    /// tunnels); returns true when it changed.
    pub fn clamp_mss(&mut self, max: u16, mode: L4Checksum) -> bool {
        match self.mss() {
            Some(m) if m > max => self.set_mss(max, mode).is_some(),
            _ => false,
        }
    }

    /// Recomputes the full checksum over the whole buffer (the segment).
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let c = checksum::l4_checksum(src, dst, protocol::TCP, self.buffer.as_ref());
        self.set_checksum(c);
    }

    /// Recomputes the full checksum over the whole buffer (the segment)
    /// from `pseudo_header`, the folded sum of the pseudo-header —
    /// addresses, protocol and this segment's length — of either IP
    /// version (for IPv6 the addresses come from
    /// [`crate::ipv6::Ipv6Packet::addresses`]).
    pub fn fill_checksum_with(&mut self, pseudo_header: u16) {
        self.set_checksum(0);
        let c = !checksum::add(pseudo_header, checksum::ones_sum(self.buffer.as_ref()));
        self.set_checksum(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const DST: Ipv4Addr = Ipv4Addr::new(93, 184, 216, 34);

    /// A SYN with MSS 1460, window scale and SACK-permitted, as an IPv4 packet.
    fn syn() -> Vec<u8> {
        use etherparse::TcpOptionElement::*;
        let b = etherparse::PacketBuilder::ipv4(SRC.octets(), DST.octets(), 64)
            .tcp(40000, 443, 0x1234_5678, 64240)
            .syn()
            .options(&[
                MaximumSegmentSize(1460),
                Noop,
                WindowScale(7),
                SelectiveAcknowledgementPermitted,
            ])
            .unwrap();
        let mut v = Vec::new();
        b.write(&mut v, &[]).unwrap();
        v
    }

    #[test]
    fn reads_syn() {
        let v = syn();
        let t = TcpPacket::new_checked(&v[20..]).unwrap();
        assert_eq!(t.src_port(), 40000);
        assert_eq!(t.dst_port(), 443);
        assert_eq!(t.seq(), 0x1234_5678);
        assert!(t.flags().syn() && !t.flags().ack() && !t.flags().fin() && !t.flags().rst());
        assert_eq!(t.header_len(), 32); // 10 option bytes, padded
        assert_eq!(t.mss(), Some(1460));
        assert!(t.verify_checksum(SRC, DST));
    }

    #[test]
    fn flags_without_clears_only_the_given_bits() {
        let f = TcpFlags::FIN | TcpFlags::PSH | TcpFlags::ACK | TcpFlags::CWR;
        let g = f.without(TcpFlags::FIN | TcpFlags::PSH);
        assert_eq!(g, TcpFlags::ACK | TcpFlags::CWR);
        assert_eq!(g.without(TcpFlags::SYN), g, "a clear bit stays clear");
        assert_eq!(g.without(TcpFlags(0xff)), TcpFlags::empty());
    }

    #[test]
    fn fill_checksum_with_a_pseudo_header_sum_equals_the_ipv4_one() {
        let mut v = syn();
        let mut t = TcpPacket::new_checked(&mut v[20..]).unwrap();
        let good = t.checksum();
        t.set_checksum(0x1234);
        let len = t.as_bytes().len() as u16;
        t.fill_checksum_with(checksum::pseudo_header_sum(SRC, DST, protocol::TCP, len));
        assert_eq!(t.checksum(), good);
        assert!(t.verify_checksum(SRC, DST));
    }

    #[test]
    fn clamps_mss_full_and_partial() {
        let mut v = syn();
        let mut t = TcpPacket::new_checked(&mut v[20..]).unwrap();
        assert!(t.clamp_mss(1400, L4Checksum::Full));
        assert_eq!(t.mss(), Some(1400));
        assert!(t.verify_checksum(SRC, DST));
        assert!(!t.clamp_mss(1420, L4Checksum::Full));

        let before = t.checksum();
        assert_eq!(t.set_mss(1300, L4Checksum::Partial), Some(1400));
        assert_eq!(t.checksum(), before, "partial mode leaves the field alone");
    }

    #[test]
    fn no_mss_without_option() {
        let b = etherparse::PacketBuilder::ipv4(SRC.octets(), DST.octets(), 64)
            .tcp(1, 2, 3, 4)
            .ack(5);
        let mut v = Vec::new();
        b.write(&mut v, &[9; 10]).unwrap();
        let mut t = TcpPacket::new_checked(&mut v[20..]).unwrap();
        assert_eq!(t.mss(), None);
        assert_eq!(t.set_mss(1000, L4Checksum::Full), None);
        assert_eq!(t.payload(), &[9; 10]);
    }

    #[test]
    fn option_walker_yields_each_option() {
        let v = syn();
        let t = TcpPacket::new_checked(&v[20..]).unwrap();
        let kinds: Vec<(u8, usize, usize)> = t
            .option_iter()
            .map(|o| (o.kind, o.offset, o.data.len()))
            .collect();
        // MSS at 0, NOP at 4, window scale at 5, SACK-permitted at 8, then
        // etherparse's END padding.
        assert_eq!(kinds, [(2, 0, 2), (3, 5, 1), (4, 8, 0)]);
        assert_eq!(t.window_scale(), Some(7));
        let bare = [0u8; 20];
        assert_eq!(TcpPacket::new_unchecked(&bare[..]).window_scale(), None);
    }

    #[test]
    fn option_walker_stops_at_a_malformed_option() {
        // NOP, window scale 5, then a length-1 option: nothing after it.
        let opts = [1, 3, 3, 5, 8, 1, 2, 4, 5, 0xb4];
        let found: Vec<u8> = TcpOptionIter::new(&opts).map(|o| o.kind).collect();
        assert_eq!(found, [3]);
        // A window scale of the wrong length is passed over, not taken.
        assert_eq!(
            TcpOptionIter::new(&[3, 4, 1, 1, 3, 3, 9, 0])
                .find(|o| o.kind == 3 && o.data.len() == 1)
                .map(|o| o.data[0]),
            Some(9)
        );
        assert_eq!(TcpOptionIter::new(&[2]).next(), None, "no length byte");
    }

    #[test]
    fn malformed_options_give_no_mss() {
        let mut v = syn();
        v[20 + 21] = 40; // MSS option length runs past the header
        let t = TcpPacket::new_checked(&v[20..]).unwrap();
        assert_eq!(t.mss(), None);
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(mut t) = TcpPacket::new_checked(data) {
                let _ = (t.src_port(), t.dst_port(), t.seq(), t.ack(), t.flags());
                let _ = (t.window(), t.checksum(), t.urgent(), t.options(), t.payload());
                let _ = (t.mss(), t.window_scale(), t.verify_checksum(SRC, DST));
                let _ = t.option_iter().count();
                t.clamp_mss(536, L4Checksum::Full);
                t.fill_checksum(SRC, DST);
            }
        }
    }
}
