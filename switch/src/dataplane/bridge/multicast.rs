//! Multicast snooping (IGMP and MLD, RFC 4541): which ports of a network
//! listen to which multicast group, so a multicast frame goes to the ports
//! that joined its group and to multicast routers, not to every port.
//!
//! What it owns: one [`Snooping`] table per network — group → member ports,
//! each with an expiry; ports a query came from (multicast routers); ports
//! just added — and the querier yardd runs on networks with a gateway. It
//! never drops a frame: it only narrows a flood, and when in doubt (a
//! network nobody queries, a malformed packet, a full table) the frame is
//! flooded as before.
//!
//! The flood decision ([`Snooping::observe`], then [`Reach::includes`] per
//! port):
//!
//! - broadcast, non-IP multicast, IPv4 link-local groups (224.0.0.0/24:
//!   mDNS, VRRP, OSPF…) and IPv6 all-nodes (ff02::1) go to every port;
//! - IGMP and MLD queries go to every port, and make the port they came
//!   from a router port for [`ROUTER_MS`];
//! - IGMP and MLD reports and leaves go to router ports only (a host
//!   never needs another's report; RFC 4541 §2.1.1), after updating the
//!   table: a join makes the port a member for [`MEMBERSHIP_MS`]; a leave
//!   shortens that to [`LAST_MEMBER_MS`] and, where yardd is the querier,
//!   asks the port a group-specific query, so a listener left behind it
//!   answers in time;
//! - any other multicast — solicited-node groups (ff02::1:ffXX:XXXX, the
//!   Neighbor Discovery of every IPv6 host), ff02::2, routable groups —
//!   goes to the group's members and to router ports. A group nobody
//!   joined reaches router ports only: MLD is mandatory for every IPv6
//!   group but ff02::1, and IGMP for every IPv4 group outside 224.0.0.0/24,
//!   so a listener has always said so (this differs from the Linux bridge's
//!   `mcast_flood`, which floods such groups to every port).
//!
//! Router ports are trunks and tunnels (always: what lies behind them is
//! another switch) and ports a query came from. A port just added gets
//! every multicast frame of its network (reports aside, which are for
//! routers) until it has been asked: at the next [`Bridge::expire`] yardd
//! sends it a general query with a 1-second response time, and it stops
//! being a newcomer [`NEWCOMER_MS`] later — so a port re-adopted after a
//! restart, whose host joined its groups long ago, misses nothing.
//!
//! Snooping narrows floods only where memberships are kept fresh by a
//! querier: on a network with a gateway yardd is the querier (`querier`) (IGMPv3
//! queries from 0.0.0.0 as the Linux bridge sends them, MLDv2 queries from
//! the gateway MAC's EUI-64 link-local address, every [`QUERY_INTERVAL_MS`]
//! to every access port); on a network without one, only while a querier
//! is heard on one of its ports. Elsewhere every multicast frame is flooded,
//! as a Linux bridge without a querier does. With several datapath threads
//! each bridge hears only the reports of the ports it reads, so it tells
//! the others what it heard ([`MembershipNews`], through the threads' mesh)
//! and applies what they heard ([`Bridge::hear_multicast`]); only the home
//! thread's bridge sends queries ([`Bridge::share_learning`]).
//!
//! Per-frame cost: one group lookup (std's keyed SipHash: group addresses
//! are chosen by containers) and, per port, scans of short lists; no
//! allocation. Reports and queries — the slow path — may allocate a group's
//! member list. The table holds at most [`MAX_GROUPS`] groups per network;
//! past that, groups it could not record are flooded until
//! [`MEMBERSHIP_MS`] after the last refusal.

#[cfg(test)]
pub(crate) mod tests;

mod querier;
pub use querier::PlannedQuery;

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use yard_wire::ethernet::{ethertype, EthernetFrame};
use yard_wire::igmp::{self, GroupRecords, IgmpPacket};
use yard_wire::ip::protocol;
use yard_wire::ipv4::Ipv4Packet;
use yard_wire::ipv6::Ipv6Packet;
use yard_wire::mld::{self, MldPacket};

use super::{attached_nets, Attachment, Bridge, NetId, PortSlot};
use crate::dataplane::clock::Millis;
use crate::dataplane::frame::Frame;
use crate::dataplane::port::PortId;

/// How often the querier asks every port (RFC 3376 and RFC 3810 default).
pub const QUERY_INTERVAL_MS: u64 = 125_000;
/// How long hosts may take to answer a periodic general query.
pub const QUERY_RESPONSE_MS: u64 = 10_000;
/// The robustness variable: queries a host may miss.
pub const ROBUSTNESS: u64 = 2;
/// How long a membership lasts without a report: robustness × query
/// interval + response time, 260 s (the Linux bridge's default too).
pub const MEMBERSHIP_MS: u64 = ROBUSTNESS * QUERY_INTERVAL_MS + QUERY_RESPONSE_MS;
/// How long a port stays a router port after its last query (RFC 3376's
/// other-querier-present interval, 255 s).
pub const ROUTER_MS: u64 = ROBUSTNESS * QUERY_INTERVAL_MS + QUERY_RESPONSE_MS / 2;
/// How long hosts may take to answer the query a new port or a leave gets.
pub const SHORT_RESPONSE_MS: u64 = 1_000;
/// How long a membership lasts after a leave unless a listener answers the
/// group-specific query: a tick to send it, its response time and a
/// second to spare.
pub const LAST_MEMBER_MS: u64 = 3_000;
/// How long after its first query a new port still gets every multicast
/// frame: the query's response time and a second to spare.
pub const NEWCOMER_MS: u64 = 2_000;
/// Groups one network's table holds.
pub const MAX_GROUPS: usize = 4096;
/// Group-specific queries waiting for the next tick, per network.
const MAX_PENDING_QUERIES: usize = 256;
/// What one network's table keeps for the other threads between rounds.
const MAX_JOURNAL: usize = 1024;
/// What a bridge keeps for the other threads between rounds.
const MAX_NEWS: usize = 4096;

/// What a port said, as one datapath thread tells the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    /// It listens to the group (a report).
    Joined(Group),
    /// It left the group (a leave, or a record that includes no source).
    Left(Group),
    /// A query came from it: a multicast router lives behind it.
    Query,
}

/// What one datapath thread's snooping heard on one of its ports, for the
/// other threads (`yardd --threads`), which apply it to their own tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MembershipNews {
    /// The network.
    pub net: NetId,
    /// The port it came from.
    pub port: PortId,
    /// The port's [`PortSlot::generation`]: news about a port since removed
    /// does not land on a new port with its id.
    pub generation: u64,
    /// What the port said.
    pub heard: Heard,
}

/// A multicast group address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Group {
    /// An IPv4 group (224.0.0.0/4).
    V4(Ipv4Addr),
    /// An IPv6 group (ff00::/8).
    V6(Ipv6Addr),
}

impl Group {
    /// Whether snooping tracks the group: a multicast address other than
    /// the ones every host listens to without reporting them (IPv4's
    /// link-local 224.0.0.0/24, IPv6's all-nodes ff02::1).
    pub fn is_snooped(self) -> bool {
        match self {
            Group::V4(a) => a.is_multicast() && a.octets()[..3] != [224, 0, 0],
            Group::V6(a) => a.is_multicast() && a != ALL_NODES,
        }
    }

    /// Where a data frame to the group goes: its members and the routers
    /// when snooping tracks it, every port otherwise.
    fn data_scope(self) -> FloodScope {
        if self.is_snooped() {
            FloodScope::Group(self)
        } else {
            FloodScope::All
        }
    }
}

const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// Which ports a flooded frame may go to, as [`Snooping::observe`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloodScope {
    /// Every port (broadcast, unknown unicast, frames snooping does not
    /// narrow).
    All,
    /// The group's members and the router ports.
    Group(Group),
    /// Router ports only (reports and leaves).
    Routers,
}

/// A port's stay in a list, until `until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// The port.
    pub port: PortId,
    /// When it leaves the list unless renewed.
    pub until: Millis,
}

/// Whether `port` is in `list` (sorted by port) and its stay lasts past
/// `now`: a binary search, so a group every port joined (mDNS on IPv6, say)
/// costs O(log n) per port of a flood, not O(n).
fn live(list: &[Member], port: PortId, now: Millis) -> bool {
    list.binary_search_by_key(&port, |m| m.port)
        .is_ok_and(|i| list[i].until > now)
}

/// Puts `port` in `list` (kept sorted by port) until `until`, never
/// shortening a later stay unless `shorten` (which adds no one).
fn stay(list: &mut Vec<Member>, port: PortId, until: Millis, shorten: bool) {
    match list.binary_search_by_key(&port, |m| m.port) {
        Ok(i) if shorten => list[i].until = list[i].until.min(until),
        Ok(i) => list[i].until = list[i].until.max(until),
        Err(i) if !shorten => list.insert(i, Member { port, until }),
        Err(_) => {}
    }
}

/// A query the tick sends out of one port: general (`None`) or about a group.
type PendingQuery = (PortId, Option<Group>);

/// The snooping table and querier state of one network.
#[derive(Debug, Default, Clone)]
pub struct Snooping {
    /// What the table heard from frames, kept for the other datapath
    /// threads (`None` with one thread).
    journal: Option<Vec<(PortId, Heard)>>,
    groups: HashMap<Group, Vec<Member>>,
    routers: Vec<Member>,
    newcomers: Vec<Member>,
    /// Ports added since the last tick, not yet asked.
    unasked: Vec<PortId>,
    /// Group-specific queries for the next tick (after leaves).
    pending: Vec<PendingQuery>,
    /// When the next periodic general query is due (set at the first tick).
    next_general: Option<Millis>,
    /// Groups the full table could not record are flooded until then.
    overflow_until: Millis,
    /// Joins refused because the table was full.
    pub overflows: u64,
}

impl Snooping {
    /// An empty table; with `journaling`, what it hears from frames is also
    /// kept for [`take_journal`](Self::take_journal) (several datapath
    /// threads: each tells the others).
    pub fn new(journaling: bool) -> Self {
        Snooping {
            journal: journaling.then(Vec::new),
            ..Snooping::default()
        }
    }

    /// Applies what `port` said (a report, a leave, a query) and, when
    /// journaling, keeps it for the other threads.
    fn record(&mut self, port: PortId, heard: Heard, querier: bool, now: Millis) {
        self.apply(port, heard, querier, now);
        if let Some(journal) = self.journal.as_mut() {
            if journal.len() < MAX_JOURNAL {
                journal.push((port, heard));
            }
        }
    }

    /// Applies what `port` said, heard here or by another datapath thread.
    pub fn apply(&mut self, port: PortId, heard: Heard, querier: bool, now: Millis) {
        match heard {
            Heard::Joined(group) => self.join(port, group, now),
            Heard::Left(group) => self.leave(port, group, querier, now),
            Heard::Query => self.heard_query(port, now),
        }
    }

    /// What the table heard from frames since the last call, for the other
    /// datapath threads (empty unless journaling).
    pub fn take_journal(&mut self) -> impl Iterator<Item = (PortId, Heard)> + '_ {
        self.journal.iter_mut().flat_map(|j| j.drain(..))
    }

    /// Whether floods are narrowed: somebody keeps the memberships fresh — yardd (`querier`, a network with a gateway) or a
    /// querier heard on a port.
    pub fn is_active(&self, querier: bool, now: Millis) -> bool {
        querier || self.routers.iter().any(|r| r.until > now)
    }

    /// Number of groups with at least one member.
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// Every group with its members (by port id; stays that ended but were
    /// not yet aged out included), in no order.
    pub fn groups(&self) -> impl Iterator<Item = (Group, &[Member])> + '_ {
        self.groups.iter().map(|(g, m)| (*g, m.as_slice()))
    }

    /// The ports a query came from, with how long they stay router ports.
    pub fn routers(&self) -> &[Member] {
        &self.routers
    }

    /// The live members of `group`, by port id.
    pub fn members(&self, group: Group, now: Millis) -> impl Iterator<Item = PortId> + '_ {
        self.groups
            .get(&group)
            .into_iter()
            .flatten()
            .filter(move |m| m.until > now)
            .map(|m| m.port)
    }

    /// Records that `port` listens to `group` (a report).
    pub fn join(&mut self, port: PortId, group: Group, now: Millis) {
        if !group.is_snooped() {
            return;
        }
        let until = Millis(now.0 + MEMBERSHIP_MS);
        if let Some(members) = self.groups.get_mut(&group) {
            stay(members, port, until, false);
        } else if self.groups.len() < MAX_GROUPS {
            self.groups.insert(group, vec![Member { port, until }]);
        } else {
            self.overflow_until = until;
            self.overflows += 1;
        }
    }

    /// Records that `port` left `group` (a leave, or a v3/MLDv2 record that
    /// includes no source): its membership ends in [`LAST_MEMBER_MS`] unless
    /// a report renews it; with `querier`, the port is asked about the group
    /// at the next tick.
    pub fn leave(&mut self, port: PortId, group: Group, querier: bool, now: Millis) {
        let Some(members) = self.groups.get_mut(&group) else {
            return;
        };
        if members.binary_search_by_key(&port, |m| m.port).is_err() {
            return;
        }
        stay(members, port, Millis(now.0 + LAST_MEMBER_MS), true);
        if querier && self.pending.len() < MAX_PENDING_QUERIES {
            self.pending.push((port, Some(group)));
        }
    }

    /// Records a query heard on `port`: a multicast router lives behind it.
    pub fn heard_query(&mut self, port: PortId, now: Millis) {
        stay(&mut self.routers, port, Millis(now.0 + ROUTER_MS), false);
    }

    /// A port joined the network: it gets every multicast frame until it has
    /// been asked and had time to answer.
    pub fn port_added(&mut self, port: PortId) {
        if !self.unasked.contains(&port) {
            self.unasked.push(port);
        }
    }

    /// A port left the network: it leaves every list.
    pub fn remove_port(&mut self, port: PortId) {
        self.groups.retain(|_, members| {
            members.retain(|m| m.port != port);
            !members.is_empty()
        });
        self.routers.retain(|m| m.port != port);
        self.newcomers.retain(|m| m.port != port);
        self.unasked.retain(|p| *p != port);
        self.pending.retain(|(p, _)| *p != port);
    }

    /// Reads a multicast frame from `in_port` (its VLAN tag already
    /// removed): learns from IGMP and MLD messages, and says where the frame
    /// may go. `querier`: yardd queries this network.
    pub fn observe(
        &mut self,
        in_port: PortId,
        frame: &[u8],
        querier: bool,
        now: Millis,
    ) -> FloodScope {
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return FloodScope::All;
        };
        let dst = eth.dst();
        let scope = match eth.ethertype() {
            ethertype::IPV4 if dst[..3] == [0x01, 0x00, 0x5e] => {
                self.observe_ipv4(in_port, eth.payload(), querier, now)
            }
            ethertype::IPV6 if dst[..2] == [0x33, 0x33] => {
                self.observe_ipv6(in_port, eth.payload(), querier, now)
            }
            _ => FloodScope::All,
        };
        if scope == FloodScope::All || !self.is_active(querier, now) {
            return FloodScope::All;
        }
        scope
    }

    fn observe_ipv4(
        &mut self,
        in_port: PortId,
        packet: &[u8],
        querier: bool,
        now: Millis,
    ) -> FloodScope {
        let Ok(ip) = Ipv4Packet::new_checked(packet) else {
            return FloodScope::All;
        };
        if ip.protocol() == protocol::IGMP && !ip.is_fragment() {
            if let Ok(igmp) = IgmpPacket::new_checked(ip.payload()) {
                if let Some(scope) = self.observe_igmp(in_port, &igmp, querier, now) {
                    return scope;
                }
            }
        }
        Group::V4(ip.dst()).data_scope()
    }

    /// Learns from an IGMP message; `None` for a type snooping does not
    /// read (the packet is then forwarded as data to its group).
    fn observe_igmp(
        &mut self,
        in_port: PortId,
        igmp: &IgmpPacket<&[u8]>,
        querier: bool,
        now: Millis,
    ) -> Option<FloodScope> {
        let kind = igmp.msg_type();
        if kind == igmp::msg_type::QUERY {
            self.record(in_port, Heard::Query, querier, now);
            return Some(FloodScope::All);
        }
        let is_report = matches!(
            kind,
            igmp::msg_type::V1_REPORT
                | igmp::msg_type::V2_REPORT
                | igmp::msg_type::V2_LEAVE
                | igmp::msg_type::V3_REPORT
        );
        if !is_report {
            return None;
        }
        if igmp.verify_checksum() {
            match kind {
                igmp::msg_type::V1_REPORT | igmp::msg_type::V2_REPORT => self.record(
                    in_port,
                    Heard::Joined(Group::V4(igmp.group())),
                    querier,
                    now,
                ),
                igmp::msg_type::V2_LEAVE => {
                    self.record(in_port, Heard::Left(Group::V4(igmp.group())), querier, now)
                }
                _ => self.observe_records(
                    in_port,
                    igmp.records(),
                    |a| Group::V4(Ipv4Addr::from(a)),
                    querier,
                    now,
                ),
            }
        }
        Some(FloodScope::Routers)
    }

    fn observe_ipv6(
        &mut self,
        in_port: PortId,
        packet: &[u8],
        querier: bool,
        now: Millis,
    ) -> FloodScope {
        let Ok(ip) = Ipv6Packet::new_checked(packet) else {
            return FloodScope::All;
        };
        if let Some((protocol::ICMPV6, icmp)) = mld::upper_layer(ip.next_header(), ip.payload()) {
            if let Ok(message) = MldPacket::new_checked(icmp) {
                let scope = self.observe_mld(in_port, &message, ip.addresses(), querier, now);
                if let Some(scope) = scope {
                    return scope;
                }
            }
        }
        Group::V6(ip.dst()).data_scope()
    }

    /// Learns from an MLD message; `None` for any other ICMPv6 message.
    fn observe_mld(
        &mut self,
        in_port: PortId,
        message: &MldPacket<&[u8]>,
        addresses: &[u8],
        querier: bool,
        now: Millis,
    ) -> Option<FloodScope> {
        let kind = message.msg_type();
        if message.code() != 0 {
            return None;
        }
        match kind {
            mld::msg_type::QUERY => {
                self.record(in_port, Heard::Query, querier, now);
                return Some(FloodScope::All);
            }
            mld::msg_type::V1_REPORT | mld::msg_type::V1_DONE | mld::msg_type::V2_REPORT => {}
            _ => return None,
        }
        if message.verify_checksum(addresses) {
            match kind {
                mld::msg_type::V1_REPORT => self.record(
                    in_port,
                    Heard::Joined(Group::V6(message.group())),
                    querier,
                    now,
                ),
                mld::msg_type::V1_DONE => self.record(
                    in_port,
                    Heard::Left(Group::V6(message.group())),
                    querier,
                    now,
                ),
                _ => self.observe_records(
                    in_port,
                    message.records(),
                    |a| Group::V6(Ipv6Addr::from(a)),
                    querier,
                    now,
                ),
            }
        }
        Some(FloodScope::Routers)
    }

    /// Learns what each group record of an IGMPv3 or MLDv2 report says
    /// (`group` makes a record's `A`-byte address a [`Group`]); a record
    /// that says nothing of the group as a whole is passed over.
    fn observe_records<const A: usize>(
        &mut self,
        in_port: PortId,
        records: GroupRecords<'_, A>,
        group: fn([u8; A]) -> Group,
        querier: bool,
        now: Millis,
    ) {
        for record in records {
            let heard = match record.listens() {
                Some(true) => Heard::Joined(group(record.group)),
                Some(false) => Heard::Left(group(record.group)),
                None => continue,
            };
            self.record(in_port, heard, querier, now);
        }
    }

    /// Where a frame of `scope` may go, resolved once per frame (one group
    /// lookup) for [`Reach::includes`] on each port.
    pub fn reach(&self, scope: FloodScope, now: Millis) -> Reach<'_> {
        let members = match scope {
            FloodScope::All => return Reach::all(),
            FloodScope::Routers => Some(&[][..]),
            FloodScope::Group(group) => match self.groups.get(&group) {
                Some(members) => Some(members.as_slice()),
                // A group the full table could not record: flood it.
                None if self.overflow_until > now => return Reach::all(),
                None => Some(&[][..]),
            },
        };
        // A report is for routers only: a new port is treated as a possible
        // listener of every group, not as a router.
        let (newcomers, unasked) = match scope {
            FloodScope::Routers => (&[][..], &[][..]),
            _ => (self.newcomers.as_slice(), self.unasked.as_slice()),
        };
        Reach {
            members,
            routers: &self.routers,
            newcomers,
            unasked,
            now,
        }
    }

    /// Ages the table and plans the tick's queries into `out`: general
    /// queries (short response time) for ports added since the last tick and
    /// group-specific ones after leaves. Plans nothing without `querier`.
    /// True when the periodic general query to every access port is due
    /// (then it is planned for [`QUERY_INTERVAL_MS`] later).
    fn tick(&mut self, querier: bool, out: &mut Vec<PlannedQuery>, now: Millis) -> bool {
        self.groups.retain(|_, members| {
            members.retain(|m| m.until > now);
            !members.is_empty()
        });
        self.routers.retain(|m| m.until > now);
        self.newcomers.retain(|m| m.until > now);
        let newcomer_until = Millis(now.0 + NEWCOMER_MS);
        for port in self.unasked.drain(..) {
            stay(&mut self.newcomers, port, newcomer_until, false);
            if querier {
                out.push(PlannedQuery::short(port, None));
            }
        }
        for (port, group) in self.pending.drain(..) {
            if querier {
                out.push(PlannedQuery::short(port, group));
            }
        }
        let next = *self
            .next_general
            .get_or_insert(Millis(now.0 + QUERY_INTERVAL_MS));
        if querier && now >= next {
            self.next_general = Some(Millis(now.0 + QUERY_INTERVAL_MS));
            return true;
        }
        false
    }
}

/// Where one flooded frame may go: [`Snooping::reach`] resolved its scope.
#[derive(Debug, Clone, Copy)]
pub struct Reach<'a> {
    /// The group's members (empty for reports); `None`: every port.
    members: Option<&'a [Member]>,
    routers: &'a [Member],
    newcomers: &'a [Member],
    unasked: &'a [PortId],
    now: Millis,
}

impl Reach<'_> {
    fn all() -> Self {
        Reach {
            members: None,
            routers: &[],
            newcomers: &[],
            unasked: &[],
            now: Millis(0),
        }
    }

    /// Whether the frame goes out of `port`; `static_router` says whether
    /// the port is a trunk or a tunnel ([`is_static_router`]), asked only
    /// when the frame is not for every port.
    #[inline]
    pub fn includes(&self, port: PortId, static_router: impl FnOnce() -> bool) -> bool {
        let Some(members) = self.members else {
            return true;
        };
        live(members, port, self.now)
            || live(self.routers, port, self.now)
            || live(self.newcomers, port, self.now)
            || self.unasked.contains(&port)
            || static_router()
    }
}

/// Whether a port always counts as a multicast router port: a trunk or a
/// tunnel leads to another switch, whose listeners yardd does not see.
pub fn is_static_router(slot: &PortSlot) -> bool {
    slot.tunnel_mtu.is_some() || matches!(slot.attachment, Attachment::Trunk(_))
}

/// One entry of the multicast table as the bridge lists it, with its
/// network and port named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MdbRecord {
    /// The network's name.
    pub net: String,
    /// The port's name.
    pub port: String,
    /// The group; `None` for a router port (it gets every group).
    pub group: Option<Group>,
    /// Seconds until it expires unless renewed; `None` for a trunk or
    /// tunnel, a router port for as long as it exists.
    pub expires_secs: Option<u64>,
}

impl Bridge {
    /// The multicast table of network `net`, or of every network: the
    /// router ports, then each group's live members, by network, group and
    /// port.
    pub fn mdb_entries(
        &self,
        net: Option<&str>,
        now: Millis,
    ) -> Result<Vec<MdbRecord>, super::BridgeError> {
        if let Some(name) = net {
            self.net_id(name)?;
        }
        let name_of = |port: PortId| self.port(port).map(|p| p.name.clone()).unwrap_or_default();
        let secs = |until: Millis| Some(until.since(now).div_ceil(1000));
        let mut out = Vec::new();
        for network in self
            .networks()
            .filter(|n| net.is_none_or(|name| n.name == name))
        {
            let snooping = &network.multicast;
            for (group, members) in snooping.groups() {
                for m in members.iter().filter(|m| m.until > now) {
                    out.push(MdbRecord {
                        net: network.name.clone(),
                        port: name_of(m.port),
                        group: Some(group),
                        expires_secs: secs(m.until),
                    });
                }
            }
            for m in snooping.routers().iter().filter(|m| m.until > now) {
                out.push(MdbRecord {
                    net: network.name.clone(),
                    port: name_of(m.port),
                    group: None,
                    expires_secs: secs(m.until),
                });
            }
            for &port in &network.members {
                if self.port(port).is_some_and(is_static_router) {
                    out.push(MdbRecord {
                        net: network.name.clone(),
                        port: name_of(port),
                        group: None,
                        expires_secs: None,
                    });
                }
            }
        }
        out.sort_by(|a, b| (&a.net, a.group, &a.port).cmp(&(&b.net, b.group, &b.port)));
        Ok(out)
    }

    /// The flood scope of a multicast frame from `in_port` in network `net`,
    /// learning from it if it is an IGMP or MLD message.
    pub(super) fn snoop(
        &mut self,
        in_port: PortId,
        net: NetId,
        frame: &Frame,
        now: Millis,
    ) -> FloodScope {
        let Some(network) = self.network_mut(net) else {
            return FloodScope::All;
        };
        let querier = network.gateway_mac.is_some();
        let scope = network
            .multicast
            .observe(in_port, frame.data(), querier, now);
        if self.announcing {
            let generation = self.port(in_port).map_or(0, |p| p.generation);
            if let Some(network) = self.networks[usize::from(net.0)].as_mut() {
                let news = network
                    .multicast
                    .take_journal()
                    .map(|(port, heard)| MembershipNews {
                        net,
                        port,
                        generation,
                        heard,
                    });
                let room = MAX_NEWS.saturating_sub(self.multicast_news.len());
                self.multicast_news.extend(news.take(room));
            }
        }
        scope
    }

    /// What [`snoop`](Self::snoop) would answer for `frame`, heard by a
    /// copy of the network's table: the table itself hears nothing (a
    /// trace's dry run).
    pub(super) fn snoop_dry(
        &self,
        in_port: PortId,
        net: NetId,
        frame: &Frame,
        now: Millis,
    ) -> FloodScope {
        let Some(network) = self.network(net) else {
            return FloodScope::All;
        };
        let querier = network.gateway_mac.is_some();
        let mut copy = network.multicast.clone();
        copy.observe(in_port, frame.data(), querier, now)
    }

    /// Takes what this thread's snooping heard since the last call, for the
    /// other threads.
    pub fn drain_multicast_news(&mut self) -> std::vec::Drain<'_, MembershipNews> {
        self.multicast_news.drain(..)
    }

    /// Applies what another thread's snooping heard, unless its port has
    /// gone (or is not in the network) since. Only the querying thread
    /// ([`Bridge::share_learning`]) asks a port after a leave.
    pub fn hear_multicast(&mut self, news: MembershipNews, now: Millis) {
        let current = self.port(news.port).is_some_and(|p| {
            p.generation == news.generation && attached_nets(&p.attachment).any(|n| n == news.net)
        });
        let sends_queries = self.sends_queries;
        if let (true, Some(network)) = (current, self.network_mut(news.net)) {
            let querier = network.gateway_mac.is_some() && sends_queries;
            network.multicast.apply(news.port, news.heard, querier, now);
        }
    }
}
