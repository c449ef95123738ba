//! IGMP messages (RFC 1112 v1, RFC 2236 v2, RFC 3376 v3): the view a
//! multicast-snooping switch reads reports, leaves and queries with, the
//! group records IGMPv3 and MLDv2 reports share, and the IGMPv3 query a
//! querier sends ([`IgmpQueryRepr`]).
//!
//! Contract: [`IgmpPacket::new_checked`] checks that the 8-byte header
//! fits; after it no accessor panics. A v3 report's records are read
//! through [`GroupRecords`], which stops at the first record the buffer
//! does not hold, so a truncated or lying report yields the records it
//! does hold and never panics. The checksum is not checked by the view
//! ([`IgmpPacket::verify_checksum`] does): a snooping switch, like the
//! Linux bridge, drops a report with a bad checksum, and that is the
//! caller's decision.

use core::net::Ipv4Addr;

use crate::checksum;
use crate::ip::protocol;
use crate::ipv4::{self, Ipv4Packet};
use crate::WireError;

mod field {
    use core::ops::Range;
    pub const TYPE: usize = 0;
    pub const MAX_RESP: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const GROUP: Range<usize> = 4..8;
    /// In a v3 query: reserved bits, S flag and the robustness variable.
    pub const S_QRV: usize = 8;
    pub const QQIC: usize = 9;
    pub const NUM_SOURCES: Range<usize> = 10..12;
}

/// The header every IGMP message starts with: type, max response code,
/// checksum and group address.
pub const HEADER_LEN: usize = 8;

/// Length of an IGMPv3 query without sources (a v2 query is 8 bytes: that is
/// how a host tells the versions apart).
pub const V3_QUERY_LEN: usize = 12;

/// IGMP message types.
pub mod msg_type {
    /// Membership query (every version).
    pub const QUERY: u8 = 0x11;
    /// IGMPv1 membership report.
    pub const V1_REPORT: u8 = 0x12;
    /// IGMPv2 membership report.
    pub const V2_REPORT: u8 = 0x16;
    /// IGMPv2 leave group.
    pub const V2_LEAVE: u8 = 0x17;
    /// IGMPv3 membership report (RFC 3376 §4.2).
    pub const V3_REPORT: u8 = 0x22;
}

/// Group record types of IGMPv3 and MLDv2 reports (RFC 3376 §4.2.12, RFC
/// 3810 §5.2.12 use the same numbers).
pub mod record_type {
    /// Current state: include only the listed sources.
    pub const MODE_IS_INCLUDE: u8 = 1;
    /// Current state: all sources but the listed ones.
    pub const MODE_IS_EXCLUDE: u8 = 2;
    /// Change: from now on, include only the listed sources.
    pub const CHANGE_TO_INCLUDE: u8 = 3;
    /// Change: from now on, all sources but the listed ones.
    pub const CHANGE_TO_EXCLUDE: u8 = 4;
    /// Change: the listed sources are added.
    pub const ALLOW_NEW_SOURCES: u8 = 5;
    /// Change: the listed sources are no longer wanted.
    pub const BLOCK_OLD_SOURCES: u8 = 6;
}

/// The IPv4 Router Alert option (RFC 2113) IGMPv2 and v3 messages carry.
pub const ROUTER_ALERT: [u8; 4] = [0x94, 0x04, 0x00, 0x00];

/// The Ethernet address an IPv4 multicast group is sent to: 01:00:5e and
/// the group's low 23 bits (RFC 1112 §6.4).
pub fn multicast_mac(group: Ipv4Addr) -> [u8; 6] {
    let o = group.octets();
    [0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]]
}

/// A view of an IGMP message: the IPv4 payload, header first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IgmpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> IgmpPacket<T> {
    /// Wraps `buffer` after checking that the 8-byte header fits.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let have = buffer.as_ref().len();
        if have < HEADER_LEN {
            return Err(WireError::Truncated {
                what: "IGMP header",
                need: HEADER_LEN,
                have,
            });
        }
        Ok(IgmpPacket { buffer })
    }

    /// The message type ([`msg_type`]).
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// The max response code of a query (tenths of a second below 128).
    pub fn max_resp_code(&self) -> u8 {
        self.buffer.as_ref()[field::MAX_RESP]
    }

    /// The group address of a query, v1/v2 report or leave (0.0.0.0 in a
    /// general query; reserved bytes and the record count in a v3 report).
    pub fn group(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::GROUP];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// Whether the checksum over the whole message is right.
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(self.buffer.as_ref())
    }

    /// The group records of a v3 report (empty for any other type).
    pub fn records(&self) -> GroupRecords<'_, 4> {
        if self.msg_type() != msg_type::V3_REPORT {
            return GroupRecords::new(&[], 0);
        }
        GroupRecords::of_report(self.buffer.as_ref())
    }
}

/// One group record of an IGMPv3 (`A` = 4) or MLDv2 (`A` = 16) report: what
/// a snooping switch needs of it (the source list is skipped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupRecord<const A: usize> {
    /// The record type ([`record_type`]).
    pub record_type: u8,
    /// How many sources the record lists.
    pub sources: u16,
    /// The group address.
    pub group: [u8; A],
}

impl<const A: usize> GroupRecord<A> {
    /// Whether the record says the host listens to the group (from some
    /// source) after it: an exclude mode, a change to exclude, new sources
    /// allowed, or include with a non-empty source list. An include with no
    /// sources — how v3 and MLDv2 hosts leave — says it does not. Blocking
    /// old sources says nothing about the group as a whole.
    pub fn listens(&self) -> Option<bool> {
        match self.record_type {
            record_type::MODE_IS_EXCLUDE
            | record_type::CHANGE_TO_EXCLUDE
            | record_type::ALLOW_NEW_SOURCES => Some(true),
            record_type::MODE_IS_INCLUDE | record_type::CHANGE_TO_INCLUDE => Some(self.sources > 0),
            _ => None,
        }
    }
}

/// The group records of a report with `A`-byte addresses: type, auxiliary
/// data length (in 32-bit words), source count, group, sources, auxiliary
/// data. Ends at the stated count or at the first record the buffer does
/// not hold, whichever comes first.
#[derive(Debug, Clone)]
pub struct GroupRecords<'a, const A: usize> {
    rest: &'a [u8],
    left: u16,
}

impl<'a, const A: usize> GroupRecords<'a, A> {
    /// The records in `bytes` (the report after its header), `count` of them.
    pub fn new(bytes: &'a [u8], count: u16) -> Self {
        GroupRecords {
            rest: bytes,
            left: count,
        }
    }

    /// The records of a whole IGMPv3 or MLDv2 report, from its first byte:
    /// both start with the same 8-byte header (type, a reserved byte or
    /// code, checksum, two reserved bytes, the record count; RFC 3376
    /// §4.2, RFC 3810 §5.2), then the records. None when the header is
    /// not all there.
    pub fn of_report(report: &'a [u8]) -> Self {
        match (report.get(6..8), report.get(8..)) {
            (Some(&[hi, lo]), Some(records)) => {
                GroupRecords::new(records, u16::from_be_bytes([hi, lo]))
            }
            _ => GroupRecords::new(&[], 0),
        }
    }
}

impl<const A: usize> Iterator for GroupRecords<'_, A> {
    type Item = GroupRecord<A>;

    fn next(&mut self) -> Option<GroupRecord<A>> {
        const FIXED: usize = 4;
        if self.left == 0 || self.rest.len() < FIXED + A {
            return None;
        }
        self.left -= 1;
        let b = self.rest;
        let sources = u16::from_be_bytes([b[2], b[3]]);
        let mut group = [0u8; A];
        group.copy_from_slice(&b[FIXED..FIXED + A]);
        let len = FIXED + A + usize::from(sources) * A + usize::from(b[1]) * 4;
        self.rest = b.get(len..).unwrap_or(&[]);
        Some(GroupRecord {
            record_type: b[0],
            sources,
            group,
        })
    }
}

/// An IGMPv3 query (RFC 3376 §4.1) in an IPv4 packet with the Router Alert
/// option, TTL 1 and precedence "internetwork control", as a querier sends
/// it: general (group 0.0.0.0, to 224.0.0.1) or group-specific (to the
/// group), without sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IgmpQueryRepr {
    /// The querier's address (0.0.0.0 for a switch without one, as the
    /// Linux bridge sends by default).
    pub src: Ipv4Addr,
    /// The group asked about; `UNSPECIFIED` for a general query.
    pub group: Ipv4Addr,
    /// How long hosts may wait before answering, in tenths of a second
    /// (below 128: the code is the value itself).
    pub max_resp_tenths: u8,
    /// The querier's robustness variable (QRV, 0–7).
    pub robustness: u8,
    /// The querier's query interval in seconds (below 128: the code is the
    /// value itself).
    pub interval_secs: u8,
}

impl IgmpQueryRepr {
    /// Length of what [`emit`](Self::emit) writes: IPv4 header with Router
    /// Alert (24 bytes) and the 12-byte query.
    pub const LEN: usize = ipv4::HEADER_LEN + ROUTER_ALERT.len() + V3_QUERY_LEN;

    /// The destination: all systems (224.0.0.1) for a general query, the
    /// group for a group-specific one.
    pub fn dst(&self) -> Ipv4Addr {
        if self.group.is_unspecified() {
            Ipv4Addr::new(224, 0, 0, 1)
        } else {
            self.group
        }
    }

    /// Writes the packet from its IPv4 header on into the start of `buf`;
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
        let header_len = ipv4::HEADER_LEN + ROUTER_ALERT.len();
        let (header, igmp) = buf.split_at_mut(header_len);
        igmp[field::TYPE] = msg_type::QUERY;
        igmp[field::MAX_RESP] = self.max_resp_tenths.min(127);
        igmp[field::CHECKSUM].fill(0);
        igmp[field::GROUP].copy_from_slice(&self.group.octets());
        igmp[field::S_QRV] = self.robustness & 0x07;
        igmp[field::QQIC] = self.interval_secs.min(127);
        igmp[field::NUM_SOURCES].fill(0);
        let check = checksum::checksum(igmp);
        igmp[field::CHECKSUM].copy_from_slice(&check.to_be_bytes());
        header[ipv4::HEADER_LEN..].copy_from_slice(&ROUTER_ALERT);
        let mut ip = Ipv4Packet::new_unchecked(header);
        ip.set_version_ihl((header_len / 4) as u8);
        // Precedence 6, "internetwork control" (RFC 3376 §4).
        ip.set_tos(0xc0);
        ip.set_total_len(Self::LEN as u16);
        ip.set_ident(0);
        ip.set_flags_frag(false, false, 0);
        ip.set_protocol(protocol::IGMP);
        ip.set_src_raw(self.src);
        ip.set_dst_raw(self.dst());
        ip.set_ttl(1);
        ip.fill_checksum();
        Ok(Self::LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IGMPv3 report with `records` as (type, group, sources), checksum
    /// filled.
    fn v3_report(records: &[(u8, [u8; 4], u16)]) -> Vec<u8> {
        let mut v = vec![msg_type::V3_REPORT, 0, 0, 0, 0, 0];
        v.extend_from_slice(&(records.len() as u16).to_be_bytes());
        for (t, group, sources) in records {
            v.extend_from_slice(&[*t, 1]);
            v.extend_from_slice(&sources.to_be_bytes());
            v.extend_from_slice(group);
            for s in 0..*sources {
                v.extend_from_slice(&[10, 0, 0, s as u8]);
            }
            v.extend_from_slice(&[0xaa; 4]); // one word of auxiliary data
        }
        let check = checksum::checksum(&v);
        v[2..4].copy_from_slice(&check.to_be_bytes());
        v
    }

    #[test]
    fn reads_v2_reports_and_leaves() {
        let mut v = vec![msg_type::V2_REPORT, 0, 0, 0, 239, 1, 2, 3];
        let check = checksum::checksum(&v);
        v[2..4].copy_from_slice(&check.to_be_bytes());
        let p = IgmpPacket::new_checked(&v[..]).unwrap();
        assert_eq!(p.msg_type(), msg_type::V2_REPORT);
        assert_eq!(p.group(), Ipv4Addr::new(239, 1, 2, 3));
        assert!(p.verify_checksum());
        assert_eq!(p.records().count(), 0, "only a v3 report has records");
        v[7] ^= 1;
        assert!(!IgmpPacket::new_checked(&v[..]).unwrap().verify_checksum());
        assert!(IgmpPacket::new_checked(&v[..7]).is_err());
    }

    #[test]
    fn walks_v3_records_past_sources_and_auxiliary_data() {
        let v = v3_report(&[
            (record_type::CHANGE_TO_EXCLUDE, [239, 0, 0, 1], 0),
            (record_type::MODE_IS_INCLUDE, [239, 0, 0, 2], 2),
            (record_type::CHANGE_TO_INCLUDE, [239, 0, 0, 3], 0),
            (record_type::BLOCK_OLD_SOURCES, [239, 0, 0, 4], 1),
        ]);
        let p = IgmpPacket::new_checked(&v[..]).unwrap();
        assert!(p.verify_checksum());
        let records: Vec<_> = p.records().collect();
        assert_eq!(records.len(), 4);
        let seen: Vec<_> = records.iter().map(|r| (r.group, r.listens())).collect();
        assert_eq!(
            seen,
            vec![
                ([239, 0, 0, 1], Some(true)),
                ([239, 0, 0, 2], Some(true)),
                ([239, 0, 0, 3], Some(false)),
                ([239, 0, 0, 4], None),
            ]
        );
    }

    #[test]
    fn a_truncated_or_lying_report_yields_what_it_holds() {
        let v = v3_report(&[
            (record_type::MODE_IS_EXCLUDE, [239, 0, 0, 1], 0),
            (record_type::MODE_IS_EXCLUDE, [239, 0, 0, 2], 3),
        ]);
        // Cut inside the second record's sources: its fixed part is still
        // there, then the walk ends.
        let p = IgmpPacket::new_checked(&v[..v.len() - 8]).unwrap();
        assert_eq!(p.records().count(), 2);
        // A count far above what is there.
        let mut lying = v.clone();
        lying[6..8].copy_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(
            IgmpPacket::new_checked(&lying[..])
                .unwrap()
                .records()
                .count(),
            2
        );
        // Every prefix parses without a panic.
        for len in HEADER_LEN..v.len() {
            let _ = IgmpPacket::new_checked(&v[..len])
                .unwrap()
                .records()
                .count();
        }
    }

    #[test]
    fn emits_a_v3_query_linux_accepts() {
        let mut buf = [0u8; 64];
        let general = IgmpQueryRepr {
            src: Ipv4Addr::UNSPECIFIED,
            group: Ipv4Addr::UNSPECIFIED,
            max_resp_tenths: 100,
            robustness: 2,
            interval_secs: 125,
        };
        assert_eq!(
            general.emit(&mut buf[..10]),
            Err(WireError::BufferTooSmall { need: 36, have: 10 })
        );
        let len = general.emit(&mut buf).unwrap();
        assert_eq!(len, 36);
        let ip = Ipv4Packet::new_checked(&buf[..len]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(
            (ip.header_len(), ip.ttl(), ip.protocol()),
            (24, 1, protocol::IGMP)
        );
        assert_eq!(ip.dst(), Ipv4Addr::new(224, 0, 0, 1));
        assert_eq!(&ip.header()[20..24], &ROUTER_ALERT);
        let igmp = IgmpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(ip.payload().len(), V3_QUERY_LEN, "12 bytes: a v3 query");
        assert!(igmp.verify_checksum());
        assert_eq!(
            (igmp.msg_type(), igmp.max_resp_code()),
            (msg_type::QUERY, 100)
        );
        assert_eq!(igmp.group(), Ipv4Addr::UNSPECIFIED);
        // etherparse reads the same packet.
        let parsed = etherparse::Ipv4HeaderSlice::from_slice(&buf[..len]).unwrap();
        assert_eq!(parsed.ttl(), 1);
        assert_eq!(parsed.options(), &ROUTER_ALERT);
        let specific = IgmpQueryRepr {
            group: Ipv4Addr::new(239, 1, 1, 1),
            max_resp_tenths: 10,
            ..general
        };
        let len = specific.emit(&mut buf).unwrap();
        let ip = Ipv4Packet::new_checked(&buf[..len]).unwrap();
        assert_eq!(ip.dst(), Ipv4Addr::new(239, 1, 1, 1));
        let igmp = IgmpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(igmp.group(), Ipv4Addr::new(239, 1, 1, 1));
        assert!(igmp.verify_checksum());
        assert_eq!(
            multicast_mac(Ipv4Addr::new(239, 129, 2, 3)),
            [1, 0, 0x5e, 1, 2, 3]
        );
    }
}
