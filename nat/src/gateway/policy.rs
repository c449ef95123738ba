//! Routing and the policy for new connections: whether a source may come
//! from the side it came from (uRPF), which published port a packet hits
//! (DNAT), where its destination routes, whether that pair of sides may
//! talk (`--internal`, `net connect`, `--no-icc`), and whether the source is
//! masqueraded (SNAT), then the network's firewall rules (`firewall`).
//!
//! Contract: decides from configuration only; the state changes are the
//! conntrack insert of an allowed connection, which records the side each
//! direction comes in from, and the hit of the firewall rule that decided. Slow path (once per connection): may walk every
//! rule. Routing ([`Gateway::route`]) and the source check
//! ([`Gateway::source_fits`]) are also on the fast path and do not
//! allocate.

use std::net::Ipv4Addr;

use super::forward::Xlate;
use super::{cidr, in_subnet, Gateway, GatewayDrop, Side};
use crate::conntrack::{ConntrackError, Dir, NewConn, Packet, RuleId};
use crate::flow::FlowKey;
use crate::rules::RuleAction;
use yard_wire::icmp::IcmpErrorKind;
use yard_wire::tcp::TcpFlags;

impl Gateway {
    /// Where `dst` goes: (side, next hop). A network's subnet first, then
    /// the uplink's subnet, then the uplink's gateway.
    pub(super) fn route(&self, dst: Ipv4Addr) -> Option<(Side, Ipv4Addr)> {
        if let Some(n) = self.nets.iter().find(|n| in_subnet(dst, n.subnet)) {
            return Some((Side::Net(n.id), dst));
        }
        if self.host_uplink {
            return Some((Side::Host, dst));
        }
        let u = self.uplink.as_ref()?;
        if in_subnet(dst, u.addr) {
            Some((Side::Uplink, dst))
        } else {
            u.gateway.map(|g| (Side::Uplink, g))
        }
    }

    /// Whether `src` may be the source of a packet that came from `side`
    /// (unicast reverse-path filtering, RFC 3704 strict mode for the
    /// networks). From a network: a host address of its subnet (not its
    /// network or directed broadcast address) other than the gateway's.
    /// From the uplink: anything but the gateway's own addresses and the
    /// networks' subnets, which are only ever behind the networks. From
    /// either: never a martian (0.0.0.0/8, 127.0.0.0/8, multicast, the
    /// limited broadcast).
    pub(super) fn source_fits(&self, side: Side, src: Ipv4Addr) -> bool {
        // The relay's replies from the host's resolver may come from its
        // loopback (127.0.0.53); they only ever ride an entry.
        let loopback = src.is_loopback() && side != Side::Host;
        let martian = src.octets()[0] == 0 || loopback || src.is_multicast() || src.is_broadcast();
        if martian {
            return false;
        }
        match side {
            Side::Net(id) => self.nets.iter().find(|n| n.id == id).is_some_and(|n| {
                let subnet = cidr(n.subnet);
                let network = subnet.prefix() < 31 && src == subnet.network().addr();
                subnet.contains(src)
                    && src != n.gateway
                    && !network
                    && !subnet.is_directed_broadcast(src)
            }),
            Side::Uplink | Side::Host => {
                !self.is_our_addr(src) && !self.nets.iter().any(|n| in_subnet(src, n.subnet))
            }
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
            Side::Host => false,
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

    /// The published port `key`, arriving on `side`, hits: (rule, DNAT
    /// target endpoint). From the relay (the host uplink's listening
    /// sockets), a rule without an address listens on every address of
    /// the host.
    pub(super) fn published(&self, side: Side, key: &FlowKey) -> Option<(RuleId, (Ipv4Addr, u16))> {
        self.rules.iter().find_map(|r| {
            let (lo, hi) = r.host_ports;
            let addr_hits = match side {
                Side::Host => r.host_addr.is_none_or(|a| a == key.dst),
                _ => self.host_addr_of(r) == Some(key.dst),
            };
            let hit = r.proto == key.proto && addr_hits && (lo..=hi).contains(&key.dport);
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

    /// The host-loopback translation of a new flow `key` from `side`: with
    /// the host uplink, a flow from a network to its `--host-loopback`
    /// address goes to the same port on the host's 127.0.0.1.
    pub(super) fn host_loopback_of(&self, side: Side, key: &FlowKey) -> Option<(Ipv4Addr, u16)> {
        let Side::Net(id) = side else {
            return None;
        };
        let net = self.nets.iter().find(|n| n.id == id)?;
        let hit = self.host_uplink && net.host_loopback == Some(key.dst);
        hit.then_some((Ipv4Addr::LOCALHOST, key.dport))
    }

    /// The source a published connection from the host's loopback takes on
    /// network `id`: its `--host-loopback` address, else its gateway's.
    fn loopback_client_source(&self, id: u16) -> Option<Ipv4Addr> {
        let net = self.nets.iter().find(|n| n.id == id)?;
        Some(net.host_loopback.unwrap_or(net.gateway))
    }

    /// Whether network `id`'s hosts may reach each other through the
    /// gateway (not `--no-icc`).
    fn icc(&self, id: u16) -> bool {
        self.nets.iter().find(|n| n.id == id).is_none_or(|n| n.icc)
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
        // What the gateway's own addresses answer for: DNS first, then the
        // host's loopback; neither is a published port's connection.
        let dns = self
            .dns_forward_of(side, &key)
            .or_else(|| self.host_loopback_of(side, &key));
        let rule = self.published(side, &key).or(dns.map(|to| (RuleId(0), to)));
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
            // The relay starts only published connections (a client of a
            // host listening socket), into a network.
            (Side::Host, Side::Net(m)) => {
                if rule.is_none() {
                    return Err(GatewayDrop::NotPublished);
                }
                if self.net_flags(m).0 {
                    return Err(GatewayDrop::Internal);
                }
                // A client on the host's own loopback cannot be a source
                // in the network (127.0.0.1 is the container's own).
                if key.src.is_loopback() {
                    self.loopback_client_source(m)
                } else {
                    None
                }
            }
            (Side::Host, _) => return Err(GatewayDrop::NotPublished),
            (Side::Uplink, Side::Uplink | Side::Host) => return Err(GatewayDrop::NoRoute),
            (Side::Net(n), Side::Host) => {
                // Relayed through the host's own sockets, which is what
                // masquerade means there; the tuple stays the container's.
                let (internal, masquerade) = self.net_flags(n);
                if internal {
                    return Err(GatewayDrop::Internal);
                }
                // Never the host's own loopback (unless through the
                // network's --host-loopback address) nor an address no
                // host has — but the gateway's DNS goes to the host's
                // resolver, wherever.
                if dns.is_none() && (!masquerade || !is_relayable(dst)) {
                    return Err(GatewayDrop::NoRoute);
                }
                None
            }
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
                // Two hosts of one --no-icc network: refused whether the
                // way is a route via the gateway or a published port. A
                // host that reaches its own published port talks to itself.
                if n == m && !self.icc(n) && dst != key.src {
                    return Err(GatewayDrop::Icc);
                }
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
        let reached = FlowKey {
            dst,
            dport: rule.map_or(key.dport, |(_, (_, port))| port),
            ..key
        };
        let to_dns = dns.is_some();
        let judged = if to_dns { key } else { reached };
        if self.judge_new(side, out, judged, to_dns) == RuleAction::Deny {
            return Err(GatewayDrop::RuleDeny);
        }
        let conn = NewConn {
            zone: 0,
            original: key,
            snat,
            dnat: rule.map(|(_, t)| t),
            rule: rule.map(|(id, _)| id).filter(|_| dns.is_none()),
            port: None,
            // The reply comes in from where the (translated) destination
            // is: the side this packet goes out to.
            ingress: [side.ingress(), out.ingress()],
        };
        let h = self.ct.insert(conn, pkt, now).map_err(insert_refused)?;
        let e = self.ct.get(h).ok_or(GatewayDrop::ConntrackStale)?;
        Ok(Xlate::of(e, Dir::Original))
    }
}

/// Whether the host relay may open a socket to `dst`: not loopback,
/// 0.0.0.0/8, multicast or broadcast.
fn is_relayable(dst: Ipv4Addr) -> bool {
    !(dst.octets()[0] == 0 || dst.is_loopback() || dst.is_multicast() || dst.is_broadcast())
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
