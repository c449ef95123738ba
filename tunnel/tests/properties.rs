//! Property tests: encapsulation then decapsulation gives back the inner frame
//! and the options, for random frames, options, headroom and outer headers;
//! decapsulation of arbitrary bytes never panics.

use std::net::Ipv4Addr;

use proptest::prelude::*;
use yard_tunnel::{
    decap_gre, decap_ipv4, encap_gre, encap_ipv4, DecapError, GreOptions, Ipv4Outer,
    MAX_IPV4_ENCAP_HEADROOM,
};

fn options() -> impl Strategy<Value = GreOptions> {
    (
        proptest::option::of(any::<u32>()),
        any::<bool>(),
        proptest::option::of(any::<u32>()),
    )
        .prop_map(|(key, checksum, sequence)| GreOptions {
            key,
            checksum,
            sequence,
        })
}

fn outer() -> impl Strategy<Value = Ipv4Outer> {
    (
        any::<[u8; 4]>(),
        any::<[u8; 4]>(),
        any::<u16>(),
        any::<u8>(),
        any::<bool>(),
    )
        .prop_map(|(src, dst, ident, ttl, dont_fragment)| Ipv4Outer {
            src: Ipv4Addr::from(src),
            dst: Ipv4Addr::from(dst),
            ident,
            ttl,
            dont_fragment,
        })
}

/// An inner frame of at least an Ethernet header, up to a jumbo frame.
fn frame() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 14..=9018)
}

proptest! {
    #[test]
    fn ipv4_round_trip(
        inner in frame(),
        options in options(),
        outer in outer(),
        extra_headroom in 0usize..64,
        tail in 0usize..16,
    ) {
        let headroom = MAX_IPV4_ENCAP_HEADROOM + extra_headroom;
        let mut buf = vec![0x5a; headroom + inner.len() + tail];
        buf[headroom..headroom + inner.len()].copy_from_slice(&inner);
        let start = encap_ipv4(&mut buf, headroom, inner.len(), outer, options).unwrap();
        prop_assert_eq!(start, headroom - 20 - options.header_len());
        // The bytes around the packet are untouched.
        prop_assert!(buf[..start].iter().all(|b| *b == 0x5a));
        prop_assert!(buf[headroom + inner.len()..].iter().all(|b| *b == 0x5a));

        let packet = &buf[start..headroom + inner.len()];
        let decapped = decap_ipv4(packet).unwrap();
        prop_assert_eq!(decapped.src, outer.src);
        prop_assert_eq!(decapped.dst, outer.dst);
        prop_assert_eq!(decapped.gre.options, options);
        prop_assert_eq!(&packet[decapped.inner_range()], &inner[..]);
        prop_assert_eq!(decapped.tunnel_key().key, options.key);
    }

    #[test]
    fn gre_round_trip(inner in frame(), options in options(), headroom in 16usize..40) {
        let mut buf = vec![0; headroom];
        buf.extend_from_slice(&inner);
        let start = encap_gre(&mut buf, headroom, inner.len(), options).unwrap();
        let decapped = decap_gre(&buf[start..]).unwrap();
        prop_assert_eq!(decapped.options, options);
        prop_assert_eq!(decapped.inner(&buf[start..]), &inner[..]);
    }

    #[test]
    fn checksummed_packet_with_any_flipped_bit_is_dropped(
        inner in proptest::collection::vec(any::<u8>(), 14..200),
        key in proptest::option::of(any::<u32>()),
        sequence in proptest::option::of(any::<u32>()),
        bit in any::<proptest::sample::Index>(),
    ) {
        let options = GreOptions { key, checksum: true, sequence };
        let mut buf = vec![0; 16];
        buf.extend_from_slice(&inner);
        let start = encap_gre(&mut buf, 16, inner.len(), options).unwrap();
        let packet = &mut buf[start..];
        // Flip any bit after the flags-and-version word (a flipped flag is a
        // different drop reason or a different header layout).
        let bit = 16 + bit.index(packet.len() * 8 - 16);
        packet[bit / 8] ^= 1 << (bit % 8);
        let result = decap_gre(packet);
        prop_assert_eq!(result, Err(DecapError::Checksum));
    }

    #[test]
    fn decap_random_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(d) = decap_gre(&bytes) {
            prop_assert!(d.inner_offset + d.inner_len == bytes.len());
        }
        if let Ok(d) = decap_ipv4(&bytes) {
            prop_assert!(d.inner_range().end <= bytes.len());
        }
    }

    #[test]
    fn decap_mutated_valid_packets_never_panics(
        inner in proptest::collection::vec(any::<u8>(), 14..100),
        options in options(),
        flips in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<proptest::sample::Index>(),
    ) {
        // Random bytes rarely get past the first checks; mutating a valid
        // packet explores the later ones.
        let mut buf = vec![0; MAX_IPV4_ENCAP_HEADROOM];
        buf.extend_from_slice(&inner);
        let outer = Ipv4Outer::new(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let start =
            encap_ipv4(&mut buf, MAX_IPV4_ENCAP_HEADROOM, inner.len(), outer, options).unwrap();
        let packet = &mut buf[start..];
        for (at, value) in flips {
            let at = at.index(packet.len());
            packet[at] = value;
        }
        let len = cut.index(packet.len() + 1);
        if let Ok(d) = decap_ipv4(&packet[..len]) {
            prop_assert!(d.inner_range().end <= len);
        }
        if let Ok(d) = decap_gre(&packet[20..len.max(20)]) {
            prop_assert!(d.inner_range().end <= len.max(20) - 20);
        }
    }
}
