//! Routing and the policy for new connections: which published port a
//! packet hits (DNAT), where its destination routes, whether that pair of
//! sides may talk, and whether the source is masqueraded (SNAT).
//!
//! Contract: decides from configuration only; the one state change is the
//! conntrack insert of an allowed connection. Slow path (once per
//! connection): may walk every rule. Routing ([`Gateway::route`]) is also on
//! the fast path and does not allocate.

use std::net::Ipv4Addr;

use super::forward::Xlate;
use super::{cidr, in_subnet, Gateway, GatewayDrop, Side};
use crate::conntrack::{ConntrackError, Dir, NewConn, Packet, RuleId};
use crate::flow::FlowKey;
use yard_wire::icmp::IcmpErrorKind;
use yard_wire::tcp::TcpFlags;

impl Gateway {
    /// Where `dst` goes: (side, next hop). A network's subnet first, then
    /// the uplink's subnet, then the uplink's gateway.
    pub(super) fn route(&self, dst: Ipv4Addr) -> Option<(Side, Ipv4Addr)> {
        if let Some(n) = self.nets.iter().find(|n| in_subnet(dst, n.subnet)) {
            return Some((Side::Net(n.id), dst));
        }
        let u = self.uplink.as_ref()?;
        if in_subnet(dst, u.addr) {
            Some((Side::Uplink, dst))
        } else {
            u.gateway.map(|g| (Side::Uplink, g))
        }
    }

    /// Whether `addr` is one of the gateway's addresses.
    pub(super) fn is_our_addr(&self, addr: Ipv4Addr) -> bool {
        self.uplink_addr() == Some(addr) || self.nets.iter().any(|n| n.gateway == addr)
    }

    /// Whether the gateway answers for `addr` on `side`: from a network, any
    /// of its addresses; from the uplink, the uplink address.
    pub(super) fn is_local(&self, side: Side, addr: Ipv4Addr) -> bool {
        match side {
            Side::Net(_) => self.is_our_addr(addr),
            Side::Uplink => self.uplink_addr() == Some(addr),
        }
    }

    /// Limited, multicast or a served subnet's directed broadcast.
    pub(super) fn is_broadcast(&self, addr: Ipv4Addr) -> bool {
        addr.is_broadcast()
            || addr.is_multicast()
            || self
                .nets
                .iter()
                .any(|n| cidr(n.subnet).is_directed_broadcast(addr))
    }

    /// The published port `key` hits: (rule, DNAT target endpoint).
    fn published(&self, key: &FlowKey) -> Option<(RuleId, (Ipv4Addr, u16))> {
        self.rules.iter().find_map(|r| {
            let (lo, hi) = r.host_ports;
            let hit = r.proto == key.proto
                && self.host_addr_of(r) == Some(key.dst)
                && (lo..=hi).contains(&key.dport);
            hit.then(|| (r.id, (r.target, r.target_ports.0 + (key.dport - lo))))
        })
    }

    /// Whether `key` comes from a published port's target: a packet of the
    /// reply side of a published connection.
    fn sent_by_published_target(&self, key: &FlowKey) -> bool {
        self.rules.iter().any(|r| {
            r.proto == key.proto
                && r.target == key.src
                && (r.target_ports.0..=r.target_ports.1).contains(&key.sport)
        })
    }

    fn net_flags(&self, id: u16) -> (bool, bool) {
        self.nets
            .iter()
            .find(|n| n.id == id)
            .map_or((false, false), |n| (n.internal, n.masquerade))
    }

    /// Decides a new connection from its first packet `ip` (pre-translation
    /// key `key`) that arrived on `side`, and tracks it when allowed.
    /// Returns the translation of this first packet.
    pub(super) fn new_connection(
        &mut self,
        side: Side,
        ip: &[u8],
        key: FlowKey,
        pkt: &Packet,
        now: u64,
    ) -> Result<Xlate, GatewayDrop> {
        let rule = self.published(&key);
        if rule.is_none() && self.is_our_addr(key.dst) {
            return Err(GatewayDrop::NotForGateway);
        }
        // A TCP connection picked up mid-stream (no SYN: the table was lost)
        // from a published port's target is the reply side of a published
        // connection: masqueraded as a new outgoing one it would leave from
        // the wrong port and draw a RST. Its client's next segment picks it
        // up the right way round.
        let picks_up = pkt.tcp.is_some_and(|t| !t.flags.contains(TcpFlags::SYN));
        if picks_up && matches!(side, Side::Net(_)) && self.sent_by_published_target(&key) {
            return Err(GatewayDrop::InvalidTcp);
        }
        let dst = rule.map_or(key.dst, |(_, (a, _))| a);
        let Some((out, _)) = self.route(dst) else {
            if let Side::Net(_) = side {
                self.send_icmp_error(IcmpErrorKind::DestUnreachable(0), ip, false, now);
            }
            return Err(GatewayDrop::NoRoute);
        };
        let snat = match (side, out) {
            (Side::Uplink, Side::Uplink) => return Err(GatewayDrop::NoRoute),
            (Side::Uplink, Side::Net(m)) => {
                if rule.is_none() {
                    return Err(GatewayDrop::NotPublished);
                }
                if self.net_flags(m).0 {
                    return Err(GatewayDrop::Internal);
                }
                None
            }
            (Side::Net(n), Side::Uplink) => {
                let (internal, masquerade) = self.net_flags(n);
                if internal {
                    return Err(GatewayDrop::Internal);
                }
                masquerade.then(|| self.uplink_addr()).flatten()
            }
            (Side::Net(n), Side::Net(m)) => {
                if rule.is_some() {
                    // Hairpin: masquerade so the reply comes back through
                    // the gateway to be un-DNATed.
                    self.uplink_addr()
                        .or_else(|| self.side_addr(Side::Net(m)).map(|s| s.0))
                } else if n == m || self.connected.contains(&(n.min(m), n.max(m))) {
                    None
                } else {
                    return Err(GatewayDrop::NetworksNotConnected);
                }
            }
        };
        let conn = NewConn {
            zone: 0,
            original: key,
            snat,
            dnat: rule.map(|(_, t)| t),
            rule: rule.map(|(id, _)| id),
            port: None,
        };
        let h = self.ct.insert(conn, pkt, now).map_err(insert_refused)?;
        let e = self.ct.get(h).ok_or(GatewayDrop::ConntrackStale)?;
        Ok(Xlate::of(e, Dir::Original))
    }
}

/// Why a conntrack insert was refused, as a drop reason: each way it fails
/// is counted apart.
pub(super) fn insert_refused(e: ConntrackError) -> GatewayDrop {
    match e {
        ConntrackError::NotSyn { .. } => GatewayDrop::InvalidTcp,
        // Taking an external port fails only when the range is used up.
        ConntrackError::Mapping(_) => GatewayDrop::NoSnatPort,
        ConntrackError::Full => GatewayDrop::ConntrackFull,
        ConntrackError::Exists { .. } => GatewayDrop::ConntrackExists,
        ConntrackError::Clash { .. } => GatewayDrop::ConntrackClash,
        ConntrackError::Stale => GatewayDrop::ConntrackStale,
    }
}
