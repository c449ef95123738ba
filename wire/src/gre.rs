//! The GRE header (RFC 2784, key and sequence number from RFC 2890) as a
//! typed view over bytes, and the options Switchyard sends.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-----+---------+-----+-------------------------------+
//! |C|R|K|S|s|Recur|  Flags  | Ver |         Protocol Type         |
//! +-+-+-+-+-+-----+---------+-----+-------------------------------+
//! |      Checksum (if C)          |       Reserved1 (if C)        |
//! +-------------------------------+-------------------------------+
//! |                          Key (if K)                           |
//! +---------------------------------------------------------------+
//! |                    Sequence Number (if S)                     |
//! +---------------------------------------------------------------+
//! ```
//!
//! Contract: [`GrePacket::new_checked`] accepts only version 0 headers whose
//! flags are a subset of C, K and S and whose optional fields fit the buffer;
//! after it no accessor panics. R (routing), s (strict source route), the
//! recursion control and the reserved flag bits are refused
//! ([`WireError::GreUnknownFlags`]). That is stricter than RFC 2784, which asks
//! receivers to ignore bits 6–12, and than Linux, which only refuses R and a
//! non-zero version; Linux and OVS never set these bits, so refusing them costs
//! no interoperability and turns garbage into a counted drop. The setters
//! write whatever they are told; they are for building headers, see
//! [`GreOptions::emit`]. The GRE checksum (C) is the Internet checksum of
//! [`crate::checksum`] over header and payload.
//!
//! Encapsulation and decapsulation — which outer headers, which drops are
//! counted under which name — are `yard-tunnel`'s; this module is the bytes.
//!
//! Abbreviations: GRE "Generic Routing Encapsulation", C/K/S the checksum,
//! key and sequence-number flags.

use core::ops::Range;

use crate::checksum;
use crate::WireError;

/// Bits of the first 16-bit word of the GRE header (flags and version).
pub mod flags {
    /// C: a checksum and a reserved word follow the base header.
    pub const CHECKSUM: u16 = 0x8000;
    /// R: routing present (RFC 1701, deprecated); refused.
    pub const ROUTING: u16 = 0x4000;
    /// K: a 32-bit key follows (RFC 2890).
    pub const KEY: u16 = 0x2000;
    /// S: a 32-bit sequence number follows (RFC 2890).
    pub const SEQUENCE: u16 = 0x1000;
    /// s: strict source route (RFC 1701, deprecated); refused.
    pub const STRICT_SOURCE_ROUTE: u16 = 0x0800;
    /// Recursion control (RFC 1701, deprecated); refused when non-zero.
    pub const RECURSION: u16 = 0x0700;
    /// Reserved flag bits (RFC 1701 "Flags"); refused when non-zero.
    pub const RESERVED: u16 = 0x00f8;
    /// The version field; only 0 is GRE as used here.
    pub const VERSION: u16 = 0x0007;
    /// Every bit that is neither C, K, S nor the version.
    pub const UNKNOWN: u16 = ROUTING | STRICT_SOURCE_ROUTE | RECURSION | RESERVED;
}

/// Byte offsets of the fixed fields.
mod field {
    use core::ops::Range;

    /// Flags and version.
    pub const FLAGS_VERSION: Range<usize> = 0..2;
    /// Protocol type (an EtherType).
    pub const PROTOCOL: Range<usize> = 2..4;
    /// Where the optional fields start.
    pub const OPTIONS: usize = 4;
    /// Length of the checksum + reserved1 word.
    pub const CHECKSUM_WORD_LEN: usize = 4;
    /// Length of the key and of the sequence number.
    pub const KEY_LEN: usize = 4;
    /// Length of the sequence number.
    pub const SEQUENCE_LEN: usize = 4;
}

/// Length of the base GRE header (flags, version, protocol type).
pub const BASE_HEADER_LEN: usize = 4;

/// Bytes each optional field (checksum word, key, sequence number) adds.
pub const OPTION_LEN: usize = 4;

/// Length of the longest GRE header Switchyard accepts (C + K + S).
pub const MAX_HEADER_LEN: usize = BASE_HEADER_LEN + 3 * OPTION_LEN;

/// Optional GRE fields: what to send, and what a received header carried.
///
/// The sequence number comes from the caller's per-tunnel counter; the key
/// is the tunnel's key. Linux `gretap ... key 42` and OVS `options:key=42`
/// send `GreOptions { key: Some(42), checksum: false, sequence: None }`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GreOptions {
    /// The GRE key (K flag), if any.
    pub key: Option<u32>,
    /// Whether the header carries a checksum (C flag) over header and payload.
    pub checksum: bool,
    /// The sequence number (S flag), if any.
    pub sequence: Option<u32>,
}

impl GreOptions {
    /// No key, no checksum, no sequence number: the 4-byte base header.
    pub const NONE: Self = Self {
        key: None,
        checksum: false,
        sequence: None,
    };

    /// Only a key, as Linux `gretap` and OVS `gre` ports with a key send.
    #[inline]
    pub const fn with_key(key: u32) -> Self {
        Self {
            key: Some(key),
            checksum: false,
            sequence: None,
        }
    }

    /// The flags-and-version word these options produce (version 0).
    #[inline]
    pub const fn flags(&self) -> u16 {
        let mut word = 0;
        if self.checksum {
            word |= flags::CHECKSUM;
        }
        if self.key.is_some() {
            word |= flags::KEY;
        }
        if self.sequence.is_some() {
            word |= flags::SEQUENCE;
        }
        word
    }

    /// How many optional 4-byte fields these options add (0 to 3).
    #[inline]
    pub const fn option_count(&self) -> usize {
        self.checksum as usize + self.key.is_some() as usize + self.sequence.is_some() as usize
    }

    /// Length of the GRE header these options produce: 4, 8, 12 or 16.
    #[inline]
    pub const fn header_len(&self) -> usize {
        BASE_HEADER_LEN + OPTION_LEN * self.option_count()
    }

    /// Writes the GRE header (everything but the checksum value) into the
    /// first [`header_len`](Self::header_len) bytes of `packet`, with
    /// `protocol` as protocol type. With `checksum` set, the checksum field is
    /// zeroed; call [`GrePacket::fill_checksum`] once the payload is in place.
    ///
    /// # Panics
    /// If the buffer is shorter than `header_len()`; the encap functions
    /// check this first.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut GrePacket<T>, protocol: u16) {
        packet.set_flags_version(self.flags());
        packet.set_protocol(protocol);
        if self.checksum {
            packet.set_checksum_word(0);
        }
        if let Some(key) = self.key {
            packet.set_key(key);
        }
        if let Some(sequence) = self.sequence {
            packet.set_sequence(sequence);
        }
    }
}

/// A typed view of a GRE header and its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrePacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> GrePacket<T> {
    /// Wraps `buffer` without any check; accessors may then panic on a short
    /// or malformed buffer. For building headers into a buffer known to be
    /// long enough.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps untrusted `buffer`, checking that it holds a version 0 GRE header
    /// with only C, K and S flags and all its optional fields. After this no
    /// accessor panics.
    ///
    /// # Errors
    /// [`WireError::Truncated`], [`WireError::GreVersion`] or
    /// [`WireError::GreUnknownFlags`].
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let packet = Self::new_unchecked(buffer);
        packet.check()?;
        Ok(packet)
    }

    /// The checks of [`new_checked`](Self::new_checked), in the order a
    /// drop is attributed: length of the base header, version, flags, length
    /// of the optional fields.
    #[inline]
    pub fn check(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < BASE_HEADER_LEN {
            return Err(WireError::Truncated {
                what: "GRE header",
                need: BASE_HEADER_LEN,
                have: len,
            });
        }
        let word = self.flags_version();
        if word & flags::VERSION != 0 {
            return Err(WireError::GreVersion((word & flags::VERSION) as u8));
        }
        if word & flags::UNKNOWN != 0 {
            return Err(WireError::GreUnknownFlags(word & flags::UNKNOWN));
        }
        if len < self.header_len() {
            return Err(WireError::Truncated {
                what: "GRE options",
                need: self.header_len(),
                have: len,
            });
        }
        Ok(())
    }

    /// Gives back the wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    fn read_u16(&self, range: Range<usize>) -> u16 {
        let bytes = &self.buffer.as_ref()[range];
        u16::from_be_bytes([bytes[0], bytes[1]])
    }

    #[inline]
    fn read_u32(&self, at: usize) -> u32 {
        let bytes = &self.buffer.as_ref()[at..at + 4];
        u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
    }

    /// The raw flags-and-version word.
    #[inline]
    pub fn flags_version(&self) -> u16 {
        self.read_u16(field::FLAGS_VERSION)
    }

    /// The version field (0 for everything accepted by `new_checked`).
    #[inline]
    pub fn version(&self) -> u8 {
        (self.flags_version() & flags::VERSION) as u8
    }

    /// Whether the C flag is set.
    #[inline]
    pub fn has_checksum(&self) -> bool {
        self.flags_version() & flags::CHECKSUM != 0
    }

    /// Whether the K flag is set.
    #[inline]
    pub fn has_key(&self) -> bool {
        self.flags_version() & flags::KEY != 0
    }

    /// Whether the S flag is set.
    #[inline]
    pub fn has_sequence(&self) -> bool {
        self.flags_version() & flags::SEQUENCE != 0
    }

    /// The protocol type (0x6558 for an Ethernet payload).
    #[inline]
    pub fn protocol(&self) -> u16 {
        self.read_u16(field::PROTOCOL)
    }

    /// Offset of the key field: after the checksum word when C is set.
    #[inline]
    fn key_offset(&self) -> usize {
        field::OPTIONS + usize::from(self.has_checksum()) * field::CHECKSUM_WORD_LEN
    }

    /// Offset of the sequence number: after the checksum word and the key.
    #[inline]
    fn sequence_offset(&self) -> usize {
        self.key_offset() + usize::from(self.has_key()) * field::KEY_LEN
    }

    /// Length of the header as its C, K and S flags say: 4 to 16 bytes.
    #[inline]
    pub fn header_len(&self) -> usize {
        self.sequence_offset() + usize::from(self.has_sequence()) * field::SEQUENCE_LEN
    }

    /// The checksum field, if the C flag is set.
    #[inline]
    pub fn checksum(&self) -> Option<u16> {
        self.has_checksum()
            .then(|| self.read_u16(field::OPTIONS..field::OPTIONS + 2))
    }

    /// The key, if the K flag is set.
    #[inline]
    pub fn key(&self) -> Option<u32> {
        self.has_key().then(|| self.read_u32(self.key_offset()))
    }

    /// The sequence number, if the S flag is set.
    #[inline]
    pub fn sequence(&self) -> Option<u32> {
        self.has_sequence()
            .then(|| self.read_u32(self.sequence_offset()))
    }

    /// The options this header carries.
    #[inline]
    pub fn options(&self) -> GreOptions {
        GreOptions {
            key: self.key(),
            checksum: self.has_checksum(),
            sequence: self.sequence(),
        }
    }

    /// Everything after the header: the encapsulated frame.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// Whether the checksum over header and payload is valid; `true` when
    /// the header has no checksum.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        !self.has_checksum() || checksum::verify(self.buffer.as_ref())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> GrePacket<T> {
    #[inline]
    fn write_u16(&mut self, at: usize, value: u16) {
        self.buffer.as_mut()[at..at + 2].copy_from_slice(&value.to_be_bytes());
    }

    #[inline]
    fn write_u32(&mut self, at: usize, value: u32) {
        self.buffer.as_mut()[at..at + 4].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the raw flags-and-version word. Set it before the optional
    /// fields: their offsets follow from the flags.
    #[inline]
    pub fn set_flags_version(&mut self, word: u16) {
        self.write_u16(field::FLAGS_VERSION.start, word);
    }

    /// Sets the protocol type.
    #[inline]
    pub fn set_protocol(&mut self, protocol: u16) {
        self.write_u16(field::PROTOCOL.start, protocol);
    }

    /// Sets the checksum field and zeroes Reserved1 (requires the C flag).
    #[inline]
    pub fn set_checksum_word(&mut self, checksum: u16) {
        self.write_u16(field::OPTIONS, checksum);
        self.write_u16(field::OPTIONS + 2, 0);
    }

    /// Sets the key field (requires the K flag).
    #[inline]
    pub fn set_key(&mut self, key: u32) {
        let at = self.key_offset();
        self.write_u32(at, key);
    }

    /// Sets the sequence number field (requires the S flag).
    #[inline]
    pub fn set_sequence(&mut self, sequence: u32) {
        let at = self.sequence_offset();
        self.write_u32(at, sequence);
    }

    /// The payload, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let at = self.header_len();
        &mut self.buffer.as_mut()[at..]
    }

    /// Computes and stores the checksum over header and the whole buffer
    /// after it; does nothing when the C flag is clear. The buffer must end
    /// where the payload ends.
    #[inline]
    pub fn fill_checksum(&mut self) {
        if self.has_checksum() {
            self.set_checksum_word(0);
            let sum = checksum::checksum(self.buffer.as_ref());
            self.set_checksum_word(sum);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lengths() {
        let all = [
            (GreOptions::NONE, 4, 0x0000),
            (GreOptions::with_key(1), 8, 0x2000),
            (
                GreOptions {
                    checksum: true,
                    ..GreOptions::NONE
                },
                8,
                0x8000,
            ),
            (
                GreOptions {
                    sequence: Some(1),
                    ..GreOptions::NONE
                },
                8,
                0x1000,
            ),
            (
                GreOptions {
                    key: Some(1),
                    checksum: true,
                    sequence: Some(1),
                },
                16,
                0xb000,
            ),
        ];
        for (options, len, word) in all {
            assert_eq!(options.header_len(), len, "{options:?}");
            assert_eq!(options.flags(), word, "{options:?}");
        }
        assert_eq!(MAX_HEADER_LEN, 16);
    }

    #[test]
    fn field_offsets_follow_flags() {
        // C + K + S: checksum word at 4, key at 8, sequence at 12.
        let bytes = [
            0xb0, 0x00, 0x65, 0x58, 0xaa, 0xbb, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a, 0x00, 0x00,
            0x00, 0x07,
        ];
        let packet = GrePacket::new_unchecked(&bytes[..]);
        assert_eq!(packet.header_len(), 16);
        assert_eq!(packet.checksum(), Some(0xaabb));
        assert_eq!(packet.key(), Some(42));
        assert_eq!(packet.sequence(), Some(7));
        assert_eq!(packet.protocol(), 0x6558);
        assert!(packet.payload().is_empty());
    }

    #[test]
    fn check_names_what_is_wrong() {
        assert_eq!(
            GrePacket::new_checked(&[0x00, 0x00, 0x65][..]),
            Err(WireError::Truncated {
                what: "GRE header",
                need: 4,
                have: 3
            })
        );
        assert_eq!(
            GrePacket::new_checked(&[0x00, 0x01, 0x65, 0x58][..]),
            Err(WireError::GreVersion(1))
        );
        assert_eq!(
            GrePacket::new_checked(&[0x40, 0x00, 0x65, 0x58][..]),
            Err(WireError::GreUnknownFlags(flags::ROUTING))
        );
        assert_eq!(
            GrePacket::new_checked(&[0x20, 0x00, 0x65, 0x58, 0, 0, 0][..]),
            Err(WireError::Truncated {
                what: "GRE options",
                need: 8,
                have: 7
            })
        );
    }

    #[test]
    fn emit_then_read() {
        let options = GreOptions {
            key: Some(0xdead_beef),
            checksum: false,
            sequence: Some(9),
        };
        let mut bytes = [0xffu8; 12];
        let mut packet = GrePacket::new_unchecked(&mut bytes[..]);
        options.emit(&mut packet, 0x6558);
        assert_eq!(
            bytes,
            [0x30, 0x00, 0x65, 0x58, 0xde, 0xad, 0xbe, 0xef, 0x00, 0x00, 0x00, 0x09]
        );
        let packet = GrePacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.options(), options);
    }
}
