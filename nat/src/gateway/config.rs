//! Configuration of the gateway: networks, the uplink, connected network
//! pairs and published ports, and the clean-up each change implies.
//!
//! Contract: control-plane operations, O(table) at worst, may allocate. A
//! change never leaves state behind that would misroute later packets:
//! removing a network forgets its neighbours, held frames and connections;
//! removing a publish rule unreserves its host ports and removes exactly the
//! connections it created; changing the uplink address moves the published
//! ports' reservations and flushes the connections through the old one.

use std::net::Ipv4Addr;

use super::{in_subnet, Gateway, GatewayError, NetConfig, PublishRule, Side, UplinkConfig};
use crate::conntrack::{Entry, RuleId};
use crate::flow::Proto;

impl Gateway {
    /// Adds a network, or replaces the one with the same id. When its
    /// subnet, gateway address or MAC changes, its neighbours and held
    /// frames are forgotten.
    pub fn set_network(&mut self, cfg: NetConfig) {
        match self.nets.iter_mut().find(|n| n.id == cfg.id) {
            Some(n) => {
                let moved = n.subnet != cfg.subnet || n.gateway != cfg.gateway || n.mac != cfg.mac;
                *n = cfg;
                if moved {
                    self.neighbours.forget_side(Side::Net(n.id));
                }
            }
            None => self.nets.push(cfg),
        }
    }

    /// Removes a network: forgets its neighbours and held frames, its
    /// connected pairs and every connection with an endpoint in its subnet.
    pub fn remove_network(&mut self, id: u16) {
        let Some(pos) = self.nets.iter().position(|n| n.id == id) else {
            return;
        };
        let net = self.nets.remove(pos);
        self.firewall.retain(|(net, _)| *net != id);
        self.neighbours.forget_side(Side::Net(id));
        self.connected.retain(|&(a, b)| a != id && b != id);
        self.ct
            .remove_where(|e| endpoints(e).any(|a| in_subnet(a, net.subnet)));
    }

    /// Sets (`Some`) or removes (`None`) the uplink. When the uplink goes
    /// away or its address changes, the connections through it are flushed
    /// (their masquerade address is gone) and the published ports on the
    /// uplink address are reserved on the new address.
    pub fn set_uplink(&mut self, cfg: Option<UplinkConfig>) {
        let old = self.uplink.take();
        let old_addr = old.as_ref().map(|u| u.addr.0);
        let new_addr = cfg.as_ref().map(|u| u.addr.0);
        let same_link = match (&old, &cfg) {
            (Some(o), Some(n)) => o.addr == n.addr && o.mac == n.mac,
            _ => false,
        };
        if !same_link {
            self.neighbours.forget_side(Side::Uplink);
        }
        if old_addr != new_addr {
            let uplink_rules: Vec<PublishRule> = self
                .rules
                .iter()
                .filter(|r| r.host_addr.is_none())
                .copied()
                .collect();
            for r in &uplink_rules {
                if let Some(a) = old_addr {
                    self.unreserve_rule(r, a);
                }
            }
            self.uplink = None;
            // Everything whose endpoint is not inside a network went through
            // the old uplink (including everything masqueraded to it).
            let nets: Vec<(Ipv4Addr, u8)> = self.nets.iter().map(|n| n.subnet).collect();
            self.ct
                .remove_where(|e| endpoints(e).any(|a| !nets.iter().any(|&s| in_subnet(a, s))));
            if let Some(a) = new_addr {
                for r in &uplink_rules {
                    // Nothing is masqueraded to a new address yet, so this
                    // only fails on a conflict with an explicit rule on it.
                    let _ = self.reserve_rule(r, a);
                }
            }
        }
        self.uplink = cfg;
    }

    /// Allows routing between networks `a` and `b` (no NAT).
    pub fn connect(&mut self, a: u16, b: u16) {
        self.connected.insert((a.min(b), a.max(b)));
    }

    /// Stops routing between networks `a` and `b` and removes the
    /// untranslated connections between them (published-port connections
    /// stay: those are reachable from every network).
    pub fn disconnect(&mut self, a: u16, b: u16) {
        if !self.connected.remove(&(a.min(b), a.max(b))) {
            return;
        }
        let subnet = |id: u16| self.nets.iter().find(|n| n.id == id).map(|n| n.subnet);
        let (Some(sa), Some(sb)) = (subnet(a), subnet(b)) else {
            return;
        };
        self.ct.remove_where(|e| {
            let (s, d) = (e.original.src, e.original.dst);
            e.nat.dnat.is_none()
                && e.nat.snat.is_none()
                && ((in_subnet(s, sa) && in_subnet(d, sb))
                    || (in_subnet(s, sb) && in_subnet(d, sa)))
        });
    }

    /// Publishes a port range: reserves the host ports so masquerade never
    /// hands them out. A rule on the uplink address (`host_addr: None`) made
    /// while there is no uplink is reserved when the uplink is set.
    pub fn add_publish(&mut self, rule: PublishRule) -> Result<(), GatewayError> {
        let id = rule.id.0;
        let invalid = |reason| Err(GatewayError::InvalidRule { id, reason });
        if rule.proto == Proto::Icmp {
            return invalid("only TCP and UDP ports can be published");
        }
        let (lo, hi) = rule.host_ports;
        let (tlo, thi) = rule.target_ports;
        if lo > hi || tlo > thi {
            return invalid("a port range's first port is above its last");
        }
        if hi - lo != thi - tlo {
            return invalid("host and container port ranges differ in length");
        }
        if self.rules.iter().any(|r| r.id == rule.id) {
            return Err(GatewayError::RuleExists(id));
        }
        let addr = self.host_addr_of(&rule);
        for r in &self.rules {
            let same_addr = match (addr, self.host_addr_of(r)) {
                (Some(a), Some(b)) => a == b,
                _ => r.host_addr == rule.host_addr,
            };
            let (rlo, rhi) = r.host_ports;
            if r.proto == rule.proto && same_addr && rlo <= hi && lo <= rhi {
                return Err(GatewayError::AlreadyPublished {
                    id,
                    proto: rule.proto.as_str(),
                    addr: addr.unwrap_or(Ipv4Addr::UNSPECIFIED),
                    port: lo.max(rlo),
                    by: r.id.0,
                });
            }
        }
        if let Some(a) = addr {
            self.reserve_rule(&rule, a)?;
        }
        self.rules.push(rule);
        Ok(())
    }

    /// Unpublishes rule `id`: unreserves its host ports and removes exactly
    /// the connections it created. Returns how many; 0 for an unknown rule.
    pub fn remove_publish(&mut self, id: RuleId) -> usize {
        let Some(pos) = self.rules.iter().position(|r| r.id == id) else {
            return 0;
        };
        let rule = self.rules.remove(pos);
        if let Some(a) = self.host_addr_of(&rule) {
            self.unreserve_rule(&rule, a);
        }
        self.ct.remove_by_rule(id)
    }

    /// A container address went away: removes the connections that depend
    /// on it (as DNAT target or as original source, every protocol) and its
    /// neighbour entry, so a successor at the same address starts afresh.
    /// Returns the number of connections removed.
    pub fn forget_address(&mut self, addr: Ipv4Addr) -> usize {
        self.neighbours.forget_addr(addr);
        self.ct.remove_by_inside_addr(addr)
    }

    /// The address a rule listens on now (`None`: uplink address, no uplink).
    pub(super) fn host_addr_of(&self, rule: &PublishRule) -> Option<Ipv4Addr> {
        rule.host_addr.or_else(|| self.uplink_addr())
    }

    fn reserve_rule(&mut self, rule: &PublishRule, addr: Ipv4Addr) -> Result<(), GatewayError> {
        let (lo, hi) = rule.host_ports;
        for port in lo..=hi {
            if let Err(source) = self.ct.reserve_port(rule.proto, addr, port) {
                for undo in lo..port {
                    let _ = self.ct.unreserve_port(rule.proto, addr, undo);
                }
                return Err(GatewayError::PortTaken {
                    id: rule.id.0,
                    source,
                });
            }
        }
        Ok(())
    }

    fn unreserve_rule(&mut self, rule: &PublishRule, addr: Ipv4Addr) {
        let (lo, hi) = rule.host_ports;
        for port in lo..=hi {
            let _ = self.ct.unreserve_port(rule.proto, addr, port);
        }
    }
}

/// Every address an entry names.
fn endpoints(e: &Entry) -> impl Iterator<Item = Ipv4Addr> {
    [e.original.src, e.original.dst, e.reply.src, e.reply.dst].into_iter()
}
