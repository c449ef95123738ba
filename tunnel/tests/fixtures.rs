//! Byte fixtures written by hand from the RFC 2784 / RFC 2890 / RFC 791 field
//! layouts, including what Linux `gretap` and OVS `gre` ports with a key put on
//! the wire (flags 0x2000, protocol 0x6558, DF, TTL 64). Each fixture is
//! decapsulated, and rebuilt by encapsulation byte for byte; each drop reason
//! has a fixture of its own.

use std::net::Ipv4Addr;

use yard_tunnel::{
    decap_gre, decap_ipv4, encap_gre, encap_ipv4, DecapError, GreOptions, Ipv4Outer, TunnelKey,
};

/// The inner Ethernet frame: broadcast from 02:00:00:00:00:01, EtherType ARP,
/// then four payload bytes "ping" (short on purpose: fixtures stay readable).
const INNER: [u8; 18] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // destination
    0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // source
    0x08, 0x06, // EtherType
    b'p', b'i', b'n', b'g',
];

const KEY: u32 = 42;
const SEQ: u32 = 7;

/// A GRE header fixture and the options it encodes.
struct GreFixture {
    name: &'static str,
    header: &'static [u8],
    options: GreOptions,
}

const fn opts(key: Option<u32>, checksum: bool, sequence: Option<u32>) -> GreOptions {
    GreOptions {
        key,
        checksum,
        sequence,
    }
}

/// Every combination of C, K and S. Checksums are the Internet checksum over
/// header (checksum field zero) and INNER, computed by hand.
const GRE_FIXTURES: &[GreFixture] = &[
    GreFixture {
        name: "none",
        header: &[0x00, 0x00, 0x65, 0x58],
        options: opts(None, false, None),
    },
    GreFixture {
        name: "K (gretap / OVS with key)",
        header: &[0x20, 0x00, 0x65, 0x58, 0x00, 0x00, 0x00, 0x2a],
        options: opts(Some(KEY), false, None),
    },
    GreFixture {
        name: "C",
        header: &[0x80, 0x00, 0x65, 0x58, 0x31, 0xcf, 0x00, 0x00],
        options: opts(None, true, None),
    },
    GreFixture {
        name: "S",
        header: &[0x10, 0x00, 0x65, 0x58, 0x00, 0x00, 0x00, 0x07],
        options: opts(None, false, Some(SEQ)),
    },
    GreFixture {
        name: "K+S",
        header: &[
            0x30, 0x00, 0x65, 0x58, 0x00, 0x00, 0x00, 0x2a, 0x00, 0x00, 0x00, 0x07,
        ],
        options: opts(Some(KEY), false, Some(SEQ)),
    },
    GreFixture {
        name: "C+K",
        header: &[
            0xa0, 0x00, 0x65, 0x58, 0x11, 0xa5, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a,
        ],
        options: opts(Some(KEY), true, None),
    },
    GreFixture {
        name: "C+S",
        header: &[
            0x90, 0x00, 0x65, 0x58, 0x21, 0xc8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07,
        ],
        options: opts(None, true, Some(SEQ)),
    },
    GreFixture {
        name: "C+K+S",
        header: &[
            0xb0, 0x00, 0x65, 0x58, 0x01, 0x9e, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a, 0x00, 0x00,
            0x00, 0x07,
        ],
        options: opts(Some(KEY), true, Some(SEQ)),
    },
];

const H1: [u8; 4] = [192, 168, 88, 1];
const H2: [u8; 4] = [192, 168, 88, 2];

/// What OVS `gre` with `options:key=42` (and Linux `gretap key 42`) sends from
/// 192.168.88.1 to .2: IPv4 with DF, TTL 64, protocol 47; GRE flags 0x2000,
/// protocol 0x6558, key 42; then the frame.
const OVS_KEY_HEADERS: [u8; 28] = [
    0x45, 0x00, 0x00, 0x2e, // version 4, IHL 5, DSCP 0, total length 46
    0x12, 0x34, 0x40, 0x00, // identification 0x1234, DF, offset 0
    0x40, 0x2f, 0xf7, 0x18, // TTL 64, protocol 47, header checksum
    192, 168, 88, 1, // source
    192, 168, 88, 2, // destination
    0x20, 0x00, 0x65, 0x58, // GRE: K, version 0, TEB
    0x00, 0x00, 0x00, 0x2a, // key 42
];

/// C+K+S over IPv4 without DF, identification 1.
const CKS_HEADERS: [u8; 36] = [
    0x45, 0x00, 0x00, 0x36, // version 4, IHL 5, DSCP 0, total length 54
    0x00, 0x01, 0x00, 0x00, // identification 1, no flags, offset 0
    0x40, 0x2f, 0x49, 0x44, // TTL 64, protocol 47, header checksum
    192, 168, 88, 1, // source
    192, 168, 88, 2, // destination
    0xb0, 0x00, 0x65, 0x58, // GRE: C, K, S, version 0, TEB
    0x01, 0x9e, 0x00, 0x00, // checksum, reserved1
    0x00, 0x00, 0x00, 0x2a, // key 42
    0x00, 0x00, 0x00, 0x07, // sequence number 7
];

fn concat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn ovs_packet() -> Vec<u8> {
    concat(&[&OVS_KEY_HEADERS, &INNER])
}

/// A buffer with `headroom` bytes of 0xee in front of INNER.
fn with_headroom(headroom: usize) -> Vec<u8> {
    concat(&[&vec![0xee; headroom], &INNER])
}

#[test]
fn gre_fixtures_decap() {
    for fixture in GRE_FIXTURES {
        let packet = concat(&[fixture.header, &INNER]);
        let decapped = decap_gre(&packet).unwrap_or_else(|e| panic!("{}: {e}", fixture.name));
        assert_eq!(decapped.options, fixture.options, "{}", fixture.name);
        assert_eq!(
            decapped.inner_offset,
            fixture.header.len(),
            "{}",
            fixture.name
        );
        assert_eq!(decapped.inner(&packet), INNER, "{}", fixture.name);
    }
}

#[test]
fn gre_fixtures_encap_byte_for_byte() {
    for fixture in GRE_FIXTURES {
        let headroom = 20;
        let mut buf = with_headroom(headroom);
        let start = encap_gre(&mut buf, headroom, INNER.len(), fixture.options).unwrap();
        assert_eq!(start, headroom - fixture.header.len(), "{}", fixture.name);
        assert_eq!(
            &buf[start..],
            concat(&[fixture.header, &INNER]),
            "{}",
            fixture.name
        );
        // Headroom in front of the headers is untouched.
        assert!(buf[..start].iter().all(|b| *b == 0xee), "{}", fixture.name);
    }
}

#[test]
fn ovs_key_fixture_decap() {
    let packet = ovs_packet();
    let decapped = decap_ipv4(&packet).unwrap();
    assert_eq!(decapped.src, Ipv4Addr::from(H1));
    assert_eq!(decapped.dst, Ipv4Addr::from(H2));
    assert_eq!(decapped.gre.options, GreOptions::with_key(KEY));
    assert_eq!(decapped.inner_range(), 28..46);
    assert_eq!(&packet[decapped.inner_range()], INNER);
    assert_eq!(
        decapped.tunnel_key(),
        TunnelKey {
            remote: Ipv4Addr::from(H1),
            key: Some(42)
        }
    );
}

#[test]
fn ovs_key_fixture_encap_byte_for_byte() {
    let mut buf = with_headroom(64);
    let outer = Ipv4Outer {
        ident: 0x1234,
        ..Ipv4Outer::new(H1.into(), H2.into())
    };
    let start = encap_ipv4(&mut buf, 64, INNER.len(), outer, GreOptions::with_key(KEY)).unwrap();
    assert_eq!(start, 64 - 28);
    assert_eq!(&buf[start..], ovs_packet());
}

#[test]
fn cks_fixture_both_ways() {
    let packet = concat(&[&CKS_HEADERS, &INNER]);
    let decapped = decap_ipv4(&packet).unwrap();
    assert_eq!(decapped.gre.options, opts(Some(KEY), true, Some(SEQ)));
    assert_eq!(&packet[decapped.inner_range()], INNER);

    let mut buf = with_headroom(40);
    let outer = Ipv4Outer {
        ident: 1,
        dont_fragment: false,
        ..Ipv4Outer::new(H1.into(), H2.into())
    };
    let start = encap_ipv4(&mut buf, 40, INNER.len(), outer, decapped.gre.options).unwrap();
    assert_eq!(&buf[start..], packet);
}

#[test]
fn outer_ipv4_options_are_skipped() {
    // IHL 6 with one word of NOP options, total length 50.
    let header: [u8; 24] = [
        0x46, 0x00, 0x00, 0x32, 0x12, 0x34, 0x40, 0x00, 0x40, 0x2f, 0xf4, 0x12, 192, 168, 88, 1,
        192, 168, 88, 2, 0x01, 0x01, 0x01, 0x01,
    ];
    let packet = concat(&[&header, &OVS_KEY_HEADERS[20..], &INNER]);
    let decapped = decap_ipv4(&packet).unwrap();
    assert_eq!(decapped.inner_range(), 32..50);
    assert_eq!(decapped.gre.options.key, Some(KEY));
}

#[test]
fn link_padding_after_total_length_is_ignored() {
    let mut packet = ovs_packet();
    packet.extend_from_slice(&[0; 14]);
    let decapped = decap_ipv4(&packet).unwrap();
    assert_eq!(&packet[decapped.inner_range()], INNER);
}

#[test]
fn encapsulated_packet_passes_etherparse() {
    let mut buf = with_headroom(36);
    let options = opts(Some(KEY), true, Some(SEQ));
    let start = encap_ipv4(
        &mut buf,
        36,
        INNER.len(),
        Ipv4Outer::new(H1.into(), H2.into()),
        options,
    )
    .unwrap();
    let (header, payload) = etherparse::Ipv4Header::from_slice(&buf[start..]).unwrap();
    assert_eq!(header.header_checksum, header.calc_header_checksum());
    assert_eq!(usize::from(header.total_len), buf.len() - start);
    assert_eq!(header.protocol, etherparse::IpNumber::GRE);
    assert!(header.dont_fragment);
    assert_eq!(header.time_to_live, 64);
    assert_eq!(payload.len(), 16 + INNER.len());
}

// ---- one fixture per drop reason ----

fn gre_err(packet: &[u8]) -> DecapError {
    decap_gre(packet).unwrap_err()
}

fn ip_err(packet: &[u8]) -> DecapError {
    decap_ipv4(packet).unwrap_err()
}

#[test]
fn truncated() {
    assert_eq!(gre_err(&[]), DecapError::Truncated);
    assert_eq!(gre_err(&[0x00, 0x00, 0x65]), DecapError::Truncated);
    // K announced, key cut short.
    assert_eq!(
        gre_err(&[0x20, 0x00, 0x65, 0x58, 0x00, 0x00]),
        DecapError::Truncated
    );
    // C+K+S announced, 12 of 16 header bytes.
    assert_eq!(
        gre_err(&GRE_FIXTURES[7].header[..12]),
        DecapError::Truncated
    );
    // Inner frame shorter than an Ethernet header.
    let runt = concat(&[&[0x00, 0x00, 0x65, 0x58], &INNER[..13]]);
    assert_eq!(gre_err(&runt), DecapError::Truncated);
    // Outer header cut, and total length beyond the buffer.
    let packet = ovs_packet();
    assert_eq!(ip_err(&packet[..19]), DecapError::Truncated);
    assert_eq!(ip_err(&packet[..45]), DecapError::Truncated);
    assert_eq!(DecapError::Truncated.as_str(), "truncated");
}

#[test]
fn bad_version() {
    for version in 1..=7u8 {
        let packet = concat(&[&[0x20, version, 0x65, 0x58, 0, 0, 0, 42], &INNER]);
        assert_eq!(gre_err(&packet), DecapError::Version, "version {version}");
    }
    assert_eq!(DecapError::Version.as_str(), "bad-version");
}

#[test]
fn unknown_flags() {
    // R, s, each recursion-control bit, each reserved flag bit.
    let bits: [u16; 10] = [
        0x4000, 0x0800, 0x0400, 0x0200, 0x0100, 0x0080, 0x0040, 0x0020, 0x0010, 0x0008,
    ];
    for bit in bits {
        let word = (0x2000 | bit).to_be_bytes();
        let packet = concat(&[&[word[0], word[1], 0x65, 0x58, 0, 0, 0, 42], &INNER]);
        assert_eq!(gre_err(&packet), DecapError::UnknownFlags, "bit {bit:#06x}");
    }
    assert_eq!(DecapError::UnknownFlags.as_str(), "unknown-flags");
}

#[test]
fn checksum_rejects_one_flipped_payload_bit() {
    let good = concat(&[GRE_FIXTURES[7].header, &INNER]);
    assert!(decap_gre(&good).is_ok());
    for byte in GRE_FIXTURES[7].header.len()..good.len() {
        for bit in 0..8 {
            let mut bad = good.clone();
            bad[byte] ^= 1 << bit;
            assert_eq!(gre_err(&bad), DecapError::Checksum, "byte {byte} bit {bit}");
        }
    }
    // The same over IPv4.
    let mut bad = concat(&[&CKS_HEADERS, &INNER]);
    let last = bad.len() - 1;
    bad[last] ^= 0x01;
    assert_eq!(ip_err(&bad), DecapError::Checksum);
    assert_eq!(DecapError::Checksum.as_str(), "bad-checksum");
}

#[test]
fn checksum_covers_key_and_sequence() {
    let mut bad = concat(&[GRE_FIXTURES[7].header, &INNER]);
    bad[11] ^= 0x01; // key 42 -> 43
    assert_eq!(gre_err(&bad), DecapError::Checksum);
    let mut bad = concat(&[GRE_FIXTURES[7].header, &INNER]);
    bad[15] ^= 0x80; // sequence number
    assert_eq!(gre_err(&bad), DecapError::Checksum);
}

#[test]
fn not_ethernet() {
    // GRE carrying IPv4 (protocol type 0x0800), as a plain `gre` (not gretap) device sends.
    let packet = concat(&[&[0x20, 0x00, 0x08, 0x00, 0, 0, 0, 42], &INNER]);
    assert_eq!(gre_err(&packet), DecapError::NotEthernet);
    assert_eq!(DecapError::NotEthernet.as_str(), "not-ethernet");
}

#[test]
fn not_ipv4() {
    let mut packet = ovs_packet();
    packet[0] = 0x65;
    assert_eq!(ip_err(&packet), DecapError::IpVersion);
    assert_eq!(DecapError::IpVersion.as_str(), "not-ipv4");
}

#[test]
fn bad_ihl() {
    let mut packet = ovs_packet();
    packet[0] = 0x44;
    assert_eq!(ip_err(&packet), DecapError::IpHeaderLength);
    assert_eq!(DecapError::IpHeaderLength.as_str(), "bad-ihl");
}

#[test]
fn bad_total_length() {
    let mut packet = ovs_packet();
    packet[2..4].copy_from_slice(&16u16.to_be_bytes());
    assert_eq!(ip_err(&packet), DecapError::IpTotalLength);
    assert_eq!(DecapError::IpTotalLength.as_str(), "bad-total-length");
}

#[test]
fn bad_ip_checksum() {
    let mut packet = ovs_packet();
    packet[8] = 63; // TTL changed, checksum not updated
    assert_eq!(ip_err(&packet), DecapError::IpChecksum);
    assert_eq!(DecapError::IpChecksum.as_str(), "bad-ip-checksum");
}

#[test]
fn fragment() {
    // MF set (flags 0x2000), checksum 0x1719.
    let mut packet = ovs_packet();
    packet[6..8].copy_from_slice(&[0x20, 0x00]);
    packet[10..12].copy_from_slice(&[0x17, 0x19]);
    assert_eq!(ip_err(&packet), DecapError::Fragment);
    // Offset 1 (8 bytes), DF clear, checksum 0x3718.
    let mut packet = ovs_packet();
    packet[6..8].copy_from_slice(&[0x00, 0x01]);
    packet[10..12].copy_from_slice(&[0x37, 0x18]);
    assert_eq!(ip_err(&packet), DecapError::Fragment);
    assert_eq!(DecapError::Fragment.as_str(), "fragment");
}

#[test]
fn not_gre() {
    // Protocol 17 (UDP), checksum 0xf736.
    let mut packet = ovs_packet();
    packet[9] = 17;
    packet[10..12].copy_from_slice(&[0xf7, 0x36]);
    assert_eq!(ip_err(&packet), DecapError::NotGre);
    assert_eq!(DecapError::NotGre.as_str(), "not-gre");
}

#[test]
fn gre_errors_surface_through_ipv4() {
    // The OVS packet with GRE version 1 (outer header untouched).
    let mut packet = ovs_packet();
    packet[21] = 0x01;
    assert_eq!(ip_err(&packet), DecapError::Version);
}
