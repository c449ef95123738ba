//! The Internet checksum (RFC 1071), used by the outer IPv4 header and by the
//! optional GRE checksum (RFC 2784: over the GRE header and its payload).
//!
//! Contract: pure functions over a byte slice, no allocation, no panics for
//! any input. Bytes are summed as big-endian 16-bit words starting at the
//! first byte of the slice; an odd trailing byte is padded with a zero byte.

/// The one's-complement sum of `data` in native byte order, not yet folded.
///
/// Two facts from RFC 1071 make this fast: summing 32-bit words into a 64-bit
/// accumulator equals summing 16-bit words once folded (2^16 ≡ 1 mod
/// 2^16 − 1), and the sum is byte-order independent, so words are read in
/// native order and the folded result is swapped once ([`finish`]). The loop
/// then is loads and adds the compiler vectorises.
fn sum(data: &[u8]) -> u64 {
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_ne_bytes(word);
        acc += (word >> 32) + (word & 0xffff_ffff);
    }
    let mut pairs = chunks.remainder().chunks_exact(2);
    for pair in &mut pairs {
        acc += u64::from(u16::from_ne_bytes([pair[0], pair[1]]));
    }
    if let [last] = pairs.remainder() {
        // A big-endian word padded with a zero byte after `last`.
        acc += u64::from(u16::from_ne_bytes([*last, 0]));
    }
    acc
}

/// Folds a 64-bit one's-complement sum into 16 bits.
fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    // The loop leaves acc ≤ 0xffff.
    acc as u16
}

/// The folded native-order sum, as the value of big-endian 16-bit words.
fn finish(acc: u64) -> u16 {
    u16::from_be(fold(acc))
}

/// The Internet checksum of `data`: the complement of its folded
/// one's-complement sum. Compute it with the checksum field zeroed, then
/// store it big-endian.
pub fn internet_checksum(data: &[u8]) -> u16 {
    !finish(sum(data))
}

/// Whether `data`, checksum field included, has a valid Internet checksum
/// (its folded one's-complement sum is 0xffff).
pub fn verify(data: &[u8]) -> bool {
    fold(sum(data)) == 0xffff
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A straightforward 16-bit-word implementation to compare against.
    fn reference(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for pair in data.chunks(2) {
            let hi = u32::from(pair[0]) << 8;
            let lo = pair.get(1).map_or(0, |b| u32::from(*b));
            acc += hi | lo;
            acc = (acc & 0xffff) + (acc >> 16);
        }
        !(acc as u16)
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: words 0001 f203 f4f5 f6f7 sum to ddf2 (folded).
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(internet_checksum(&data), !0xddf2);
    }

    #[test]
    fn ipv4_header_example() {
        // A well-known IPv4 header whose checksum is 0xb861.
        let mut header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(internet_checksum(&header), 0xb861);
        header[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert!(verify(&header));
        header[3] ^= 0x01;
        assert!(!verify(&header));
    }

    #[test]
    fn empty_and_zero() {
        assert_eq!(internet_checksum(&[]), 0xffff);
        assert_eq!(internet_checksum(&[0; 7]), 0xffff);
        assert!(verify(&[0xff, 0xff]));
    }

    proptest::proptest! {
        #[test]
        fn matches_reference(data in proptest::collection::vec(proptest::num::u8::ANY, 0..3000)) {
            proptest::prop_assert_eq!(internet_checksum(&data), reference(&data));
        }

        #[test]
        fn checksum_then_verify(data in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            // Append the checksum as a trailing word at an even offset.
            let mut data = data;
            if data.len() % 2 == 1 {
                data.push(0);
            }
            let sum = internet_checksum(&data);
            data.extend_from_slice(&sum.to_be_bytes());
            proptest::prop_assert!(verify(&data));
        }
    }
}
