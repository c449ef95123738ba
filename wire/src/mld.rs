//! MLD, Multicast Listener Discovery (RFC 2710 v1, RFC 3810 v2): the
//! ICMPv6 messages IPv6 hosts join and leave groups with — solicited-node
//! groups for Neighbor Discovery among them — read by a snooping switch;
//! the way past IPv6 extension headers to them ([`upper_layer`]); and the
//! MLDv2 query a querier sends ([`MldQueryRepr`]).
//!
//! Contract: [`MldPacket::new_checked`] checks that the fixed part of the
//! message fits (24 bytes: type, code, checksum, max response, group); after
//! it no accessor panics. A v2 report's records are read through
//! [`GroupRecords`] with 16-byte addresses, which stops at the first record
//! the buffer does not hold. [`upper_layer`] walks at most
//! [`MAX_EXTENSION_HEADERS`] headers and stops at a fragment header, so any
//! bytes give an answer and never a panic.

use core::net::Ipv6Addr;

use crate::checksum;
use crate::igmp::GroupRecords;
use crate::ip::protocol;
use crate::ipv6::{self, Ipv6Packet};
use crate::WireError;

mod field {
    use core::ops::Range;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const MAX_RESP: Range<usize> = 4..6;
    pub const RESERVED: Range<usize> = 6..8;
    pub const GROUP: Range<usize> = 8..24;
    /// In a v2 query: reserved bits, S flag and the robustness variable.
    pub const S_QRV: usize = 24;
    pub const QQIC: usize = 25;
    pub const NUM_SOURCES: Range<usize> = 26..28;
}

/// The fixed part of every MLD message but a v2 report's records.
pub const HEADER_LEN: usize = 24;

/// Length of an MLDv2 query without sources (a v1 query is 24 bytes: that
/// is how a host tells the versions apart).
pub const V2_QUERY_LEN: usize = 28;

/// Extension headers [`upper_layer`] walks past before it gives up.
pub const MAX_EXTENSION_HEADERS: usize = 8;

/// ICMPv6 types of MLD messages.
pub mod msg_type {
    /// Multicast listener query (v1 and v2).
    pub const QUERY: u8 = 130;
    /// MLDv1 listener report.
    pub const V1_REPORT: u8 = 131;
    /// MLDv1 listener done (a leave).
    pub const V1_DONE: u8 = 132;
    /// MLDv2 listener report (RFC 3810 §5.2).
    pub const V2_REPORT: u8 = 143;
}

/// The hop-by-hop options header MLD messages carry (RFC 3810 §5): next
/// header ICMPv6, length 0 (8 bytes), Router Alert with value 0 ("the
/// datagram contains an MLD message"), PadN of 0 bytes.
pub const HOP_BY_HOP_ROUTER_ALERT: [u8; 8] = [protocol::ICMPV6, 0, 0x05, 0x02, 0, 0, 0x01, 0x00];

/// The protocol after IPv6's extension headers and its bytes: starts from
/// the fixed header's `next_header` and its `payload`, and walks hop-by-hop,
/// routing and destination options headers. `None` when a header does not
/// fit, a fragment header comes first (only the first fragment could be
/// read, and MLD is never fragmented), or there are more than
/// [`MAX_EXTENSION_HEADERS`].
pub fn upper_layer(next_header: u8, payload: &[u8]) -> Option<(u8, &[u8])> {
    let (mut next, mut rest) = (next_header, payload);
    for _ in 0..MAX_EXTENSION_HEADERS {
        match next {
            protocol::IPV6_HOP_BY_HOP | protocol::IPV6_ROUTING | protocol::IPV6_DEST_OPTS => {
                let (&header_next, &len_words) = (rest.first()?, rest.get(1)?);
                let len = (usize::from(len_words) + 1) * 8;
                rest = rest.get(len..)?;
                next = header_next;
            }
            _ => return Some((next, rest)),
        }
    }
    None
}

/// A view of an MLD message: the ICMPv6 message, type first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MldPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> MldPacket<T> {
    /// Wraps `buffer` after checking that the 24-byte fixed part fits (an
    /// MLDv2 report's 8-byte header and first record take as much).
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let have = buffer.as_ref().len();
        if have < HEADER_LEN {
            return Err(WireError::Truncated {
                what: "MLD message",
                need: HEADER_LEN,
                have,
            });
        }
        Ok(MldPacket { buffer })
    }

    /// The ICMPv6 type ([`msg_type`]).
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// The ICMPv6 code (0 for MLD).
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// The maximum response code of a query (milliseconds below 32768).
    pub fn max_resp_code(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::MAX_RESP];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// The group of a query (`::` in a general query), v1 report or done.
    pub fn group(&self) -> Ipv6Addr {
        let mut octets = [0u8; 16];
        octets.copy_from_slice(&self.buffer.as_ref()[field::GROUP]);
        Ipv6Addr::from(octets)
    }

    /// Whether the ICMPv6 checksum is right for a message between the two
    /// addresses `addresses` (source then destination, 32 bytes, as
    /// [`Ipv6Packet::addresses`] gives them).
    pub fn verify_checksum(&self, addresses: &[u8]) -> bool {
        let icmp = self.buffer.as_ref();
        ones_sum_with_pseudo_header(addresses, icmp) == 0xffff
    }

    /// The group records of a v2 report (empty for any other type).
    pub fn records(&self) -> GroupRecords<'_, 16> {
        if self.msg_type() != msg_type::V2_REPORT {
            return GroupRecords::new(&[], 0);
        }
        GroupRecords::of_report(self.buffer.as_ref())
    }
}

/// The folded sum of the IPv6 pseudo-header (RFC 8200 §8.1: addresses,
/// upper-layer length, next header ICMPv6) and the ICMPv6 message.
fn ones_sum_with_pseudo_header(addresses: &[u8], icmp: &[u8]) -> u16 {
    let len = icmp.len() as u32;
    let lengths = checksum::add((len >> 16) as u16, len as u16);
    let pseudo = checksum::add(
        checksum::ones_sum(addresses),
        checksum::add(lengths, u16::from(protocol::ICMPV6)),
    );
    checksum::add(pseudo, checksum::ones_sum(icmp))
}

/// The link-local address a device with MAC `mac` forms from it by
/// modified EUI-64 (RFC 4291 appendix A): what a querier without an IPv6
/// address of its own sends MLD queries from, since hosts drop queries from
/// any other kind of address (RFC 3810 §5.1.14).
pub fn link_local_from_mac(mac: [u8; 6]) -> Ipv6Addr {
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        mac[0] ^ 0x02,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ])
}

/// The Ethernet address an IPv6 multicast group is sent to: 33:33 and the
/// group's last four bytes (RFC 2464 §7).
pub fn multicast_mac(group: Ipv6Addr) -> [u8; 6] {
    let o = group.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

/// An MLDv2 query (RFC 3810 §5.1) in an IPv6 packet with hop limit 1 and a
/// hop-by-hop Router Alert, as a querier sends it: general (group `::`, to
/// all nodes, ff02::1) or group-specific (to the group), without sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MldQueryRepr {
    /// The querier's link-local address.
    pub src: Ipv6Addr,
    /// The group asked about; `UNSPECIFIED` for a general query.
    pub group: Ipv6Addr,
    /// How long hosts may wait before answering, in milliseconds (below
    /// 32768: the code is the value itself).
    pub max_resp_ms: u16,
    /// The querier's robustness variable (QRV, 0–7).
    pub robustness: u8,
    /// The querier's query interval in seconds (below 128: the code is the
    /// value itself).
    pub interval_secs: u8,
}

impl MldQueryRepr {
    /// Length of what [`emit`](Self::emit) writes: the IPv6 header, the
    /// hop-by-hop header and the 28-byte query.
    pub const LEN: usize = ipv6::HEADER_LEN + HOP_BY_HOP_ROUTER_ALERT.len() + V2_QUERY_LEN;

    /// The destination: all nodes (ff02::1) for a general query, the group
    /// for a group-specific one.
    pub fn dst(&self) -> Ipv6Addr {
        if self.group.is_unspecified() {
            Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1)
        } else {
            self.group
        }
    }

    /// Writes the packet from its IPv6 header on into the start of `buf`;
    /// returns its length ([`Self::LEN`]).
    ///
    /// # Errors
    /// [`WireError::BufferTooSmall`] when `buf` is shorter than
    /// [`Self::LEN`]; nothing is written then.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let have = buf.len();
        let buf = buf.get_mut(..Self::LEN).ok_or(WireError::BufferTooSmall {
            need: Self::LEN,
            have,
        })?;
        let (header, rest) = buf.split_at_mut(ipv6::HEADER_LEN);
        let (hop_by_hop, query) = rest.split_at_mut(HOP_BY_HOP_ROUTER_ALERT.len());
        // Version 6, traffic class and flow label 0.
        header[..4].copy_from_slice(&[0x60, 0, 0, 0]);
        header[8..24].copy_from_slice(&self.src.octets());
        header[24..40].copy_from_slice(&self.dst().octets());
        let mut ip = Ipv6Packet::new_unchecked(&mut *header);
        ip.set_payload_len((HOP_BY_HOP_ROUTER_ALERT.len() + V2_QUERY_LEN) as u16);
        ip.set_next_header(protocol::IPV6_HOP_BY_HOP);
        ip.set_hop_limit(1);
        hop_by_hop.copy_from_slice(&HOP_BY_HOP_ROUTER_ALERT);
        query[field::TYPE] = msg_type::QUERY;
        query[field::CODE] = 0;
        query[field::CHECKSUM].fill(0);
        query[field::MAX_RESP].copy_from_slice(&self.max_resp_ms.min(32_767).to_be_bytes());
        query[field::RESERVED].fill(0);
        query[field::GROUP].copy_from_slice(&self.group.octets());
        query[field::S_QRV] = self.robustness & 0x07;
        query[field::QQIC] = self.interval_secs.min(127);
        query[field::NUM_SOURCES].fill(0);
        let check = !ones_sum_with_pseudo_header(&header[8..40], query);
        query[field::CHECKSUM].copy_from_slice(&check.to_be_bytes());
        Ok(Self::LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::igmp::record_type;

    const HOST: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0x1, 0x2, 0x3, 0x4);
    const MLDV2_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x16);

    /// An MLDv2 report from HOST joining `groups` (exclude mode, no
    /// sources) as a full IPv6 packet with the hop-by-hop header.
    fn v2_report(groups: &[Ipv6Addr]) -> Vec<u8> {
        let mut icmp = vec![msg_type::V2_REPORT, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&(groups.len() as u16).to_be_bytes());
        for g in groups {
            icmp.extend_from_slice(&[record_type::CHANGE_TO_EXCLUDE, 0, 0, 0]);
            icmp.extend_from_slice(&g.octets());
        }
        let mut addresses = HOST.octets().to_vec();
        addresses.extend_from_slice(&MLDV2_ROUTERS.octets());
        let check = !ones_sum_with_pseudo_header(&addresses, &icmp);
        icmp[2..4].copy_from_slice(&check.to_be_bytes());
        let mut packet = vec![0x60, 0, 0, 0];
        packet.extend_from_slice(&((8 + icmp.len()) as u16).to_be_bytes());
        packet.extend_from_slice(&[protocol::IPV6_HOP_BY_HOP, 1]);
        packet.extend_from_slice(&addresses);
        packet.extend_from_slice(&HOP_BY_HOP_ROUTER_ALERT);
        packet.extend_from_slice(&icmp);
        packet
    }

    #[test]
    fn finds_a_v2_report_behind_the_hop_by_hop_header() {
        let solicited = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff03, 0x0004);
        let packet = v2_report(&[solicited, MLDV2_ROUTERS]);
        let ip = Ipv6Packet::new_checked(&packet[..]).unwrap();
        let (proto, icmp) = upper_layer(ip.next_header(), ip.payload()).unwrap();
        assert_eq!(proto, protocol::ICMPV6);
        let mld = MldPacket::new_checked(icmp).unwrap();
        assert_eq!(mld.msg_type(), msg_type::V2_REPORT);
        assert!(mld.verify_checksum(ip.addresses()));
        let groups: Vec<_> = mld
            .records()
            .map(|r| (Ipv6Addr::from(r.group), r.listens()))
            .collect();
        assert_eq!(
            groups,
            vec![(solicited, Some(true)), (MLDV2_ROUTERS, Some(true))]
        );
        let mut bad = packet.clone();
        *bad.last_mut().unwrap() ^= 1;
        let ip = Ipv6Packet::new_checked(&bad[..]).unwrap();
        let (_, icmp) = upper_layer(ip.next_header(), ip.payload()).unwrap();
        assert!(!MldPacket::new_checked(icmp)
            .unwrap()
            .verify_checksum(ip.addresses()));
    }

    #[test]
    fn the_walk_ends_on_anything_it_cannot_pass() {
        assert_eq!(
            upper_layer(protocol::UDP, b"xy"),
            Some((protocol::UDP, &b"xy"[..]))
        );
        // A hop-by-hop header longer than what is there.
        assert_eq!(upper_layer(protocol::IPV6_HOP_BY_HOP, &[58, 3, 0, 0]), None);
        assert_eq!(upper_layer(protocol::IPV6_HOP_BY_HOP, &[]), None);
        // A fragment header is not walked.
        assert_eq!(
            upper_layer(44, &[58, 0, 0, 0, 0, 0, 0, 0]).map(|(p, _)| p),
            Some(44)
        );
        // A chain of destination options longer than the limit.
        let chain =
            [protocol::IPV6_DEST_OPTS, 0, 0, 0, 0, 0, 0, 0].repeat(MAX_EXTENSION_HEADERS + 1);
        assert_eq!(upper_layer(protocol::IPV6_DEST_OPTS, &chain), None);
    }

    #[test]
    fn emits_a_v2_query_linux_accepts() {
        let mut buf = [0u8; 128];
        let src = link_local_from_mac([0x02, 0x42, 0xac, 0x11, 0x00, 0x01]);
        assert_eq!(src, "fe80::42:acff:fe11:1".parse::<Ipv6Addr>().unwrap());
        let general = MldQueryRepr {
            src,
            group: Ipv6Addr::UNSPECIFIED,
            max_resp_ms: 10_000,
            robustness: 2,
            interval_secs: 125,
        };
        assert!(general.emit(&mut buf[..40]).is_err());
        let len = general.emit(&mut buf).unwrap();
        assert_eq!(len, 76);
        // What Linux checks before it answers (RFC 3810 §6.2): link-local
        // source, hop limit 1, Router Alert for MLD; and the checksum.
        let ip = Ipv6Packet::new_checked(&buf[..len]).unwrap();
        assert_eq!((ip.src(), ip.hop_limit()), (src, 1));
        assert_eq!(ip.dst(), "ff02::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(&ip.payload()[..8], &HOP_BY_HOP_ROUTER_ALERT);
        let (proto, icmp) = upper_layer(ip.next_header(), ip.payload()).unwrap();
        assert_eq!((proto, icmp.len()), (protocol::ICMPV6, V2_QUERY_LEN));
        let mld = MldPacket::new_checked(icmp).unwrap();
        assert!(mld.verify_checksum(ip.addresses()));
        assert_eq!(
            (mld.msg_type(), mld.max_resp_code()),
            (msg_type::QUERY, 10_000)
        );
        assert_eq!(mld.group(), Ipv6Addr::UNSPECIFIED);
        // etherparse agrees on the headers.
        let parsed = etherparse::SlicedPacket::from_ip(&buf[..len]).unwrap();
        assert!(matches!(parsed.net, Some(etherparse::NetSlice::Ipv6(_))));
        let group = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, 0x0001);
        let specific = MldQueryRepr {
            group,
            max_resp_ms: 1000,
            ..general
        };
        let len = specific.emit(&mut buf).unwrap();
        let ip = Ipv6Packet::new_checked(&buf[..len]).unwrap();
        assert_eq!(ip.dst(), group);
        assert_eq!(multicast_mac(group), [0x33, 0x33, 0xff, 0, 0, 1]);
        let (_, icmp) = upper_layer(ip.next_header(), ip.payload()).unwrap();
        assert!(MldPacket::new_checked(icmp)
            .unwrap()
            .verify_checksum(ip.addresses()));
    }
}
