//! The snooping table and the flood decision: what IGMP and MLD messages
//! do to the table, and where each kind of multicast frame may go. The
//! frame builders are shared with the datapath threads' pipeline tests.

use std::net::{Ipv4Addr, Ipv6Addr};

use yard_wire::checksum;
use yard_wire::igmp::{msg_type as igmp_type, record_type};
use yard_wire::ipv4::{Ipv4Packet, Ipv4Repr};
use yard_wire::mld::{self, msg_type as mld_type, HOP_BY_HOP_ROUTER_ALERT};

use super::*;

const T0: Millis = Millis(1_000);

fn ports(n: u32) -> Vec<PortId> {
    (0..n).map(PortId).collect()
}

fn after(ms: u64) -> Millis {
    Millis(T0.0 + ms)
}

// ---- frame builders (also used by the datapath threads' tests) ---------

/// The solicited-node group of `addr` (RFC 4291 §2.7.1): where Neighbor
/// Discovery asks for it.
pub(crate) fn solicited_node(addr: Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15],
    ])
}

/// A link-local address for host `n`.
pub(crate) fn host6(n: u8) -> Ipv6Addr {
    Ipv6Addr::new(0xfe80, 0, 0, 0, 0x0200, 0, 0, 0x1000 + u16::from(n))
}

/// An Ethernet frame carrying `icmp` (an ICMPv6 message whose checksum is
/// filled here) from `src` to `dst`, behind a hop-by-hop Router Alert when
/// `router_alert` (as MLD messages are).
fn icmpv6_frame(
    src_mac: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    router_alert: bool,
    mut icmp: Vec<u8>,
) -> Vec<u8> {
    let mut addresses = src.octets().to_vec();
    addresses.extend_from_slice(&dst.octets());
    let len = icmp.len() as u16;
    let pseudo = checksum::add(checksum::ones_sum(&addresses), checksum::add(len, 58));
    icmp[2..4].fill(0);
    let check = !checksum::add(pseudo, checksum::ones_sum(&icmp));
    icmp[2..4].copy_from_slice(&check.to_be_bytes());
    let mut f = mld::multicast_mac(dst).to_vec();
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&0x86ddu16.to_be_bytes());
    let extension = if router_alert { 8 } else { 0 };
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&((extension + icmp.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[if router_alert { 0 } else { 58 }, 255]);
    f.extend_from_slice(&addresses);
    if router_alert {
        f.extend_from_slice(&HOP_BY_HOP_ROUTER_ALERT);
    }
    f.extend_from_slice(&icmp);
    f
}

/// An MLDv2 report from `src` with `records` (type, group, source count).
pub(crate) fn mld_v2_report(
    src_mac: [u8; 6],
    src: Ipv6Addr,
    records: &[(u8, Ipv6Addr, u16)],
) -> Vec<u8> {
    let mut icmp = vec![mld_type::V2_REPORT, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&(records.len() as u16).to_be_bytes());
    for (kind, group, sources) in records {
        icmp.extend_from_slice(&[*kind, 0]);
        icmp.extend_from_slice(&sources.to_be_bytes());
        icmp.extend_from_slice(&group.octets());
        for s in 0..*sources {
            icmp.extend_from_slice(&host6(s as u8).octets());
        }
    }
    let all_routers = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x16);
    icmpv6_frame(src_mac, src, all_routers, true, icmp)
}

/// An MLDv2 report from `src` joining `groups`, as a host sends it when it
/// takes an address (exclude mode, no sources).
pub(crate) fn mld_join(src_mac: [u8; 6], src: Ipv6Addr, groups: &[Ipv6Addr]) -> Vec<u8> {
    let records: Vec<_> = groups
        .iter()
        .map(|g| (record_type::CHANGE_TO_EXCLUDE, *g, 0))
        .collect();
    mld_v2_report(src_mac, src, &records)
}

/// An MLDv1 report (`V1_REPORT`, to the group) or done (`V1_DONE`, to
/// all routers) about `group`.
fn mld_v1(src_mac: [u8; 6], src: Ipv6Addr, kind: u8, group: Ipv6Addr) -> Vec<u8> {
    let mut icmp = vec![kind, 0, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&group.octets());
    let dst = if kind == mld_type::V1_DONE {
        Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2)
    } else {
        group
    };
    icmpv6_frame(src_mac, src, dst, true, icmp)
}

/// A general MLDv1 query from `src`, as another querier sends it.
fn mld_query(src_mac: [u8; 6], src: Ipv6Addr) -> Vec<u8> {
    let mut icmp = vec![mld_type::QUERY, 0, 0, 0, 0x27, 0x10, 0, 0];
    icmp.extend_from_slice(&Ipv6Addr::UNSPECIFIED.octets());
    icmpv6_frame(
        src_mac,
        src,
        Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
        true,
        icmp,
    )
}

/// A Neighbor Solicitation from `src` for `target`, to its solicited-node
/// group (no Router Alert: it is not MLD).
pub(crate) fn neighbor_solicitation(src_mac: [u8; 6], src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let mut icmp = vec![135, 0, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&target.octets());
    icmpv6_frame(src_mac, src, solicited_node(target), false, icmp)
}

/// An IPv4 packet of `protocol` with `payload` in an Ethernet frame to
/// `dst`'s multicast MAC.
fn ipv4_frame(
    src_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = yard_wire::igmp::multicast_mac(dst).to_vec();
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let mut ip = vec![0u8; 20];
    let repr = Ipv4Repr {
        src,
        dst,
        protocol,
        payload_len: payload.len(),
        ttl: 1,
        ident: 0,
        dont_frag: false,
        tos: 0,
    };
    repr.emit(&mut Ipv4Packet::new_unchecked(&mut ip[..]))
        .unwrap();
    f.extend_from_slice(&ip);
    f.extend_from_slice(payload);
    f
}

/// An IGMPv1/v2 message of `kind` about `group` (a report goes to the
/// group, a leave to all routers).
pub(crate) fn igmp_v2(src_mac: [u8; 6], src: Ipv4Addr, kind: u8, group: Ipv4Addr) -> Vec<u8> {
    let mut igmp = vec![kind, 0, 0, 0];
    igmp.extend_from_slice(&group.octets());
    let check = checksum::checksum(&igmp);
    igmp[2..4].copy_from_slice(&check.to_be_bytes());
    let dst = if kind == igmp_type::V2_LEAVE {
        Ipv4Addr::new(224, 0, 0, 2)
    } else {
        group
    };
    ipv4_frame(src_mac, src, dst, 2, &igmp)
}

/// An IGMPv3 report with `records` (type, group, source count), to
/// 224.0.0.22.
fn igmp_v3_report(src_mac: [u8; 6], src: Ipv4Addr, records: &[(u8, Ipv4Addr, u16)]) -> Vec<u8> {
    let mut igmp = vec![igmp_type::V3_REPORT, 0, 0, 0, 0, 0];
    igmp.extend_from_slice(&(records.len() as u16).to_be_bytes());
    for (kind, group, sources) in records {
        igmp.extend_from_slice(&[*kind, 0]);
        igmp.extend_from_slice(&sources.to_be_bytes());
        igmp.extend_from_slice(&group.octets());
        for s in 0..*sources {
            igmp.extend_from_slice(&[10, 0, 0, s as u8]);
        }
    }
    let check = checksum::checksum(&igmp);
    igmp[2..4].copy_from_slice(&check.to_be_bytes());
    ipv4_frame(src_mac, src, Ipv4Addr::new(224, 0, 0, 22), 2, &igmp)
}

/// A UDP datagram from `src` to group `dst`.
pub(crate) fn udp_to_group(src_mac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    // Ports 5000 → 5001, length 12, no checksum, 4 bytes of data.
    let udp = [0x13, 0x88, 0x13, 0x89, 0, 12, 0, 0, b'p', b'i', b'n', b'g'];
    ipv4_frame(src_mac, src, dst, 17, &udp)
}

fn mac(n: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, n]
}

fn v4(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, n)
}

// ---- the table and the flood decision ----------------------------------

/// A table whose ports have all been asked and settled, as after the first
/// ticks: no port is a newcomer any more.
fn settled(ports: &[PortId]) -> Snooping {
    let mut s = Snooping::new(true);
    for &p in ports {
        s.port_added(p);
    }
    let mut planned = Vec::new();
    s.tick(true, &mut planned, T0);
    assert_eq!(planned.len(), ports.len(), "each new port is asked once");
    s.tick(true, &mut planned, after(NEWCOMER_MS));
    s
}

/// The ports among `all` (but `from`) that a frame of `scope` reaches.
fn reached(
    s: &Snooping,
    scope: FloodScope,
    from: PortId,
    all: &[PortId],
    now: Millis,
) -> Vec<PortId> {
    let reach = s.reach(scope, now);
    all.iter()
        .copied()
        .filter(|&p| p != from && reach.includes(p, || false))
        .collect()
}

#[test]
fn a_solicited_node_ns_reaches_only_the_ports_that_joined_its_group() {
    let p = ports(4);
    let mut s = settled(&p);
    let target = host6(2);
    let now = after(3_000);
    // Host 2 takes its address: it joins the address's solicited-node group.
    let join = mld_join(mac(2), Ipv6Addr::UNSPECIFIED, &[solicited_node(target)]);
    let scope = s.observe(p[2], &join, true, now);
    assert_eq!(scope, FloodScope::Routers, "a report goes to routers only");
    assert!(
        reached(&s, scope, p[2], &p, now).is_empty(),
        "no router yet"
    );
    // Host 1 resolves it: the NS goes to port 2 alone.
    let ns = neighbor_solicitation(mac(1), host6(1), target);
    let scope = s.observe(p[1], &ns, true, now);
    assert_eq!(scope, FloodScope::Group(Group::V6(solicited_node(target))));
    assert_eq!(reached(&s, scope, p[1], &p, now), vec![p[2]]);
    assert_eq!(
        s.members(Group::V6(solicited_node(target)), now)
            .collect::<Vec<_>>(),
        vec![p[2]]
    );
    // An NS for an address nobody holds (DAD of a new one) reaches nobody.
    let dad = neighbor_solicitation(mac(3), Ipv6Addr::UNSPECIFIED, host6(9));
    let scope = s.observe(p[3], &dad, true, now);
    assert!(reached(&s, scope, p[3], &p, now).is_empty());
    // The membership lasts MEMBERSHIP_MS without a report.
    let late = Millis(now.0 + MEMBERSHIP_MS);
    let scope = s.observe(p[1], &ns, true, late);
    assert!(reached(&s, scope, p[1], &p, late).is_empty(), "expired");
}

#[test]
fn all_nodes_link_local_groups_broadcast_and_other_multicast_flood() {
    let p = ports(3);
    let mut s = settled(&p);
    let now = after(3_000);
    let mut ra = vec![134, 0, 0, 0, 64, 0, 0, 0];
    ra.extend_from_slice(&[0; 8]);
    let all_nodes = icmpv6_frame(
        mac(1),
        host6(1),
        Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
        false,
        ra,
    );
    let mdns4 = udp_to_group(mac(1), v4(1), Ipv4Addr::new(224, 0, 0, 251));
    let mut broadcast = vec![0xff; 6];
    broadcast.extend_from_slice(&mac(1));
    broadcast.extend_from_slice(&[0x08, 0x06]);
    broadcast.extend_from_slice(&[0; 28]);
    let mut lldp = vec![0x01, 0x80, 0xc2, 0, 0, 0x0e];
    lldp.extend_from_slice(&mac(1));
    lldp.extend_from_slice(&[0x88, 0xcc, 0, 0]);
    let garbage_v6 = {
        let mut f = vec![0x33, 0x33, 0, 0, 0, 5];
        f.extend_from_slice(&mac(1));
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0]);
        f
    };
    for (what, frame) in [
        ("IPv6 all-nodes (a router advertisement)", &all_nodes),
        ("IPv4 link-local group (mDNS)", &mdns4),
        ("broadcast (ARP)", &broadcast),
        ("non-IP multicast (LLDP)", &lldp),
        ("a malformed IPv6 multicast frame", &garbage_v6),
    ] {
        let scope = s.observe(p[1], frame, true, now);
        assert_eq!(scope, FloodScope::All, "{what}");
        assert_eq!(
            reached(&s, scope, p[1], &p, now),
            vec![p[0], p[2]],
            "{what}"
        );
    }
}

#[test]
fn an_ipv4_group_reaches_its_members_and_a_leave_ends_membership() {
    let p = ports(4);
    let mut s = settled(&p);
    let group = Ipv4Addr::new(239, 1, 2, 3);
    let now = after(3_000);
    let data = udp_to_group(mac(1), v4(1), group);
    let scope = s.observe(p[1], &data, true, now);
    assert!(
        reached(&s, scope, p[1], &p, now).is_empty(),
        "nobody joined yet"
    );
    assert_eq!(
        s.observe(
            p[2],
            &igmp_v2(mac(2), v4(2), igmp_type::V2_REPORT, group),
            true,
            now
        ),
        FloodScope::Routers
    );
    let v3 = igmp_v3_report(mac(3), v4(3), &[(record_type::CHANGE_TO_EXCLUDE, group, 0)]);
    assert_eq!(s.observe(p[3], &v3, true, now), FloodScope::Routers);
    let scope = s.observe(p[1], &data, true, now);
    assert_eq!(reached(&s, scope, p[1], &p, now), vec![p[2], p[3]]);
    // Port 2 leaves (v2), port 3 leaves (v3: include, no sources): each is
    // asked about the group at the next tick, and is out LAST_MEMBER_MS
    // later unless it answers.
    let leave = igmp_v2(mac(2), v4(2), igmp_type::V2_LEAVE, group);
    assert_eq!(s.observe(p[2], &leave, true, now), FloodScope::Routers);
    let v3_leave = igmp_v3_report(mac(3), v4(3), &[(record_type::CHANGE_TO_INCLUDE, group, 0)]);
    s.observe(p[3], &v3_leave, true, now);
    let mut planned = Vec::new();
    s.tick(true, &mut planned, Millis(now.0 + 500));
    assert_eq!(
        planned,
        vec![
            PlannedQuery::short(p[2], Some(Group::V4(group))),
            PlannedQuery::short(p[3], Some(Group::V4(group))),
        ]
    );
    // Port 3 answers the group-specific query; port 2 stays silent.
    let v3_again = igmp_v3_report(mac(3), v4(3), &[(record_type::MODE_IS_EXCLUDE, group, 0)]);
    s.observe(p[3], &v3_again, true, Millis(now.0 + 1_000));
    let later = Millis(now.0 + LAST_MEMBER_MS);
    let scope = s.observe(p[1], &data, true, later);
    assert_eq!(reached(&s, scope, p[1], &p, later), vec![p[3]]);
}

#[test]
fn mldv1_reports_and_dones_count_too() {
    let p = ports(3);
    let mut s = settled(&p);
    let group = Ipv6Addr::new(0xff05, 0, 0, 0, 0, 0, 0, 0x1234);
    let now = after(3_000);
    s.observe(
        p[2],
        &mld_v1(mac(2), host6(2), mld_type::V1_REPORT, group),
        true,
        now,
    );
    assert_eq!(
        s.members(Group::V6(group), now).collect::<Vec<_>>(),
        vec![p[2]]
    );
    s.observe(
        p[2],
        &mld_v1(mac(2), host6(2), mld_type::V1_DONE, group),
        true,
        now,
    );
    let later = Millis(now.0 + LAST_MEMBER_MS);
    assert_eq!(s.members(Group::V6(group), later).count(), 0);
}

#[test]
fn a_report_with_a_bad_checksum_is_not_learned() {
    let p = ports(3);
    let mut s = settled(&p);
    let now = after(3_000);
    let group = solicited_node(host6(2));
    let mut join = mld_join(mac(2), host6(2), &[group]);
    *join.last_mut().unwrap() ^= 0xff;
    assert_eq!(s.observe(p[2], &join, true, now), FloodScope::Routers);
    assert_eq!(s.members(Group::V6(group), now).count(), 0);
    let mut report = igmp_v2(
        mac(2),
        v4(2),
        igmp_type::V2_REPORT,
        Ipv4Addr::new(239, 0, 0, 9),
    );
    *report.last_mut().unwrap() ^= 0xff;
    s.observe(p[2], &report, true, now);
    assert_eq!(s.group_count(), 0);
}

#[test]
fn without_a_querier_everything_floods_until_one_is_heard() {
    let p = ports(4);
    let mut s = Snooping::new(true);
    p.iter().for_each(|&x| s.port_added(x));
    let mut planned = Vec::new();
    s.tick(false, &mut planned, T0);
    assert!(planned.is_empty(), "no querier: nobody is asked");
    let now = after(3_000);
    let target = host6(2);
    let join = mld_join(mac(2), host6(2), &[solicited_node(target)]);
    assert_eq!(
        s.observe(p[2], &join, false, now),
        FloodScope::All,
        "reports flood too"
    );
    let ns = neighbor_solicitation(mac(1), host6(1), target);
    let scope = s.observe(p[1], &ns, false, now);
    assert_eq!(reached(&s, scope, p[1], &p, now), vec![p[0], p[2], p[3]]);
    // A querier on port 0: from now on floods are narrowed, and port 0,
    // a router port, gets every group.
    let query = mld_query(mac(9), host6(9));
    assert_eq!(
        s.observe(p[0], &query, false, now),
        FloodScope::All,
        "queries reach every host"
    );
    let scope = s.observe(p[1], &ns, false, now);
    assert_eq!(reached(&s, scope, p[1], &p, now), vec![p[0], p[2]]);
    // The querier goes quiet: after ROUTER_MS everything floods again.
    let late = Millis(now.0 + ROUTER_MS);
    let scope = s.observe(p[1], &ns, false, late);
    assert_eq!(scope, FloodScope::All);
}

#[test]
fn a_new_port_gets_every_group_until_it_was_asked_and_could_answer() {
    let p = ports(3);
    let mut s = settled(&p[..2]);
    let now = after(3_000);
    s.port_added(p[2]);
    let ns = neighbor_solicitation(mac(1), host6(1), host6(7));
    let scope = s.observe(p[1], &ns, true, now);
    assert_eq!(
        reached(&s, scope, p[1], &p, now),
        vec![p[2]],
        "not asked yet"
    );
    // Others' reports are still for routers only.
    let report = mld_join(mac(1), host6(1), &[solicited_node(host6(1))]);
    let scope = s.observe(p[1], &report, true, now);
    assert!(reached(&s, scope, p[1], &p, now).is_empty());
    let mut planned = Vec::new();
    s.tick(true, &mut planned, now);
    assert_eq!(planned, vec![PlannedQuery::short(p[2], None)]);
    assert!(reached(&s, scope, p[1], &p, now).is_empty());
    let scope = s.observe(p[1], &ns, true, now);
    assert_eq!(
        reached(&s, scope, p[1], &p, now),
        vec![p[2]],
        "still answering"
    );
    let settled_at = Millis(now.0 + NEWCOMER_MS);
    assert!(reached(&s, scope, p[1], &p, settled_at).is_empty());
}

#[test]
fn static_routers_get_every_group_and_removed_ports_leave_every_list() {
    let p = ports(3);
    let mut s = settled(&p);
    let now = after(3_000);
    let group = Ipv4Addr::new(239, 9, 9, 9);
    s.observe(
        p[2],
        &igmp_v2(mac(2), v4(2), igmp_type::V2_REPORT, group),
        true,
        now,
    );
    s.observe(p[0], &mld_query(mac(9), host6(9)), true, now);
    let data = udp_to_group(mac(1), v4(1), group);
    let scope = s.observe(p[1], &data, true, now);
    let reach = s.reach(scope, now);
    assert!(reach.includes(p[0], || false), "a query came from port 0");
    assert!(reach.includes(p[2], || false), "port 2 joined");
    assert!(reach.includes(PortId(7), || true), "a trunk or tunnel");
    assert!(!reach.includes(PortId(7), || false));
    s.remove_port(p[2]);
    s.remove_port(p[0]);
    assert_eq!(s.group_count(), 0);
    let scope = s.observe(p[1], &data, true, now);
    assert!(reached(&s, scope, p[1], &p, now).is_empty());
}

#[test]
fn a_full_table_floods_the_groups_it_could_not_record() {
    let p = ports(3);
    let mut s = settled(&p);
    let now = after(3_000);
    for i in 0..MAX_GROUPS {
        let group = Ipv6Addr::new(0xff05, 0, 0, 0, 0, 0, (i >> 16) as u16, i as u16);
        s.join(p[2], Group::V6(group), now);
    }
    assert_eq!(s.group_count(), MAX_GROUPS);
    let extra = Ipv4Addr::new(239, 0, 0, 1);
    s.observe(
        p[2],
        &igmp_v2(mac(2), v4(2), igmp_type::V2_REPORT, extra),
        true,
        now,
    );
    assert_eq!((s.group_count(), s.overflows), (MAX_GROUPS, 1));
    let scope = s.observe(p[1], &udp_to_group(mac(1), v4(1), extra), true, now);
    assert_eq!(
        reached(&s, scope, p[1], &p, now),
        vec![p[0], p[2]],
        "flooded"
    );
    // A recorded group is still narrowed.
    let known = Ipv6Addr::new(0xff05, 0, 0, 0, 0, 0, 0, 3);
    let scope = s.reach(FloodScope::Group(Group::V6(known)), now);
    assert!(scope.includes(p[2], || false) && !scope.includes(p[0], || false));
}

#[test]
fn the_querier_asks_every_access_port_each_query_interval() {
    let p = ports(2);
    let mut s = settled(&p);
    let mut planned = Vec::new();
    assert!(!s.tick(true, &mut planned, after(QUERY_INTERVAL_MS - 2_000)));
    assert!(s.tick(true, &mut planned, after(QUERY_INTERVAL_MS)));
    assert!(!s.tick(true, &mut planned, after(QUERY_INTERVAL_MS + 1_000)));
    assert!(s.tick(true, &mut planned, after(2 * QUERY_INTERVAL_MS)));
    assert!(
        planned.is_empty(),
        "the periodic query is the bridge's to plan"
    );
    // Without a querier nothing is due.
    let mut quiet = settled(&p);
    assert!(!quiet.tick(false, &mut planned, after(10 * QUERY_INTERVAL_MS)));
}

#[test]
fn a_journaling_table_keeps_what_it_heard_for_the_other_threads() {
    let p = ports(3);
    let mut s = Snooping::new(true);
    let now = after(3_000);
    let group = solicited_node(host6(2));
    s.observe(p[2], &mld_join(mac(2), host6(2), &[group]), true, now);
    s.observe(p[0], &mld_query(mac(9), host6(9)), true, now);
    let heard: Vec<_> = s.take_journal().collect();
    assert_eq!(
        heard,
        vec![
            (p[2], Heard::Joined(Group::V6(group))),
            (p[0], Heard::Query)
        ]
    );
    assert_eq!(s.take_journal().count(), 0, "taken once");
    // Another thread's table applies it, and does not pass it on again.
    let mut other = Snooping::new(true);
    for (port, what) in heard {
        other.apply(port, what, false, now);
    }
    assert_eq!(
        other.members(Group::V6(group), now).collect::<Vec<_>>(),
        vec![p[2]]
    );
    assert!(other.is_active(false, now), "a querier was heard");
    assert_eq!(other.take_journal().count(), 0);
    // One datapath thread: nothing is kept.
    let mut single = Snooping::new(false);
    single.observe(p[2], &mld_join(mac(2), host6(2), &[group]), true, now);
    assert_eq!(single.take_journal().count(), 0);
}

#[test]
fn members_stay_sorted_so_each_port_is_found_by_binary_search() {
    let mut s = settled(&ports(4));
    let group = Group::V4(Ipv4Addr::new(239, 5, 5, 5));
    let now = after(3_000);
    for port in [9, 3, 7, 1, 3, 12] {
        s.join(PortId(port), group, now);
    }
    let members: Vec<_> = s.members(group, now).map(|p| p.0).collect();
    assert_eq!(members, vec![1, 3, 7, 9, 12], "sorted, each once");
    let reach = s.reach(FloodScope::Group(group), now);
    for port in 0..14 {
        let expected = members.contains(&port);
        assert_eq!(
            reach.includes(PortId(port), || false),
            expected,
            "port {port}"
        );
    }
    // A leave shortens one stay and keeps the order.
    s.leave(PortId(7), group, false, now);
    let later = Millis(now.0 + LAST_MEMBER_MS);
    let members: Vec<_> = s.members(group, later).map(|p| p.0).collect();
    assert_eq!(members, vec![1, 3, 9, 12]);
}

#[test]
fn the_bridge_lists_members_and_router_ports_by_name() {
    use crate::dataplane::port::memory::MemoryPort;
    use yard_ctl::api::NetworkSpec;
    use yard_ctl::MacAddr;
    use yard_wire::offload::Offload;

    let mut bridge = Bridge::new(4096);
    let mut spec = NetworkSpec::new("n");
    spec.vlan = Some(7);
    let net = bridge.add_network(&spec).unwrap();
    bridge.set_gateway_mac(net, Some(MacAddr(mac(0xfe))));
    let mut add = |name: &str, trunk: bool| {
        let attachment = if trunk {
            bridge.trunk(&["n"]).unwrap()
        } else {
            bridge.access("n").unwrap()
        };
        let (port, _) = MemoryPort::new();
        bridge
            .add_port(name, Box::new(port), attachment, 1500)
            .unwrap()
    };
    let (a, b, _t) = (add("a", false), add("b", false), add("t", true));
    let mut frame = Frame::new();
    let group = solicited_node(host6(2));
    frame.fill(Offload::NONE, &mld_join(mac(2), host6(2), &[group]));
    bridge.process(b, &mut frame, T0);
    frame.fill(Offload::NONE, &mld_query(mac(1), host6(1)));
    bridge.process(a, &mut frame, T0);
    let listed: Vec<_> = bridge
        .mdb_entries(None, after(10_000))
        .unwrap()
        .into_iter()
        .map(|r| (r.port, r.group, r.expires_secs))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("a".to_string(), None, Some(245)),
            ("t".to_string(), None, None),
            ("b".to_string(), Some(Group::V6(group)), Some(250)),
        ]
    );
    assert_eq!(bridge.mdb_entries(Some("n"), T0).unwrap().len(), 3);
    assert!(bridge.mdb_entries(Some("nope"), T0).is_err());
}
