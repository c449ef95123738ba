//! A dry run of [`Gateway::handle`] for `yardctl trace`: what the gateway
//! would do with a frame, and why, without doing it.
//!
//! Contract: [`Gateway::trace`] takes `&self`, so nothing of the gateway
//! changes — no connection is made or refreshed, no neighbour learned, no
//! counter bumped, nothing queued. The verdict is not re-derived: the frame
//! goes through the real [`Gateway::handle`] of a copy of the gateway (its
//! connection table, SNAT mapping with its random state, neighbours,
//! fragment cache and counters), with an ICMP error rate limit of its own
//! so the limit shared with the bridges is not spent; the facts around it
//! (the source check, the published port hit, the route, the entry the
//! packet rides and the one the copy made) are read with the same functions
//! `handle` calls. Slow path: the copy costs time and memory in proportion
//! to the connection table, once per trace.

use std::net::Ipv4Addr;
use std::sync::Arc;

use super::forward::ETH;
use super::{Action, Gateway, IcmpErrors, OutFrame, Side};
use crate::classify::{flow_of, PacketFlow};
use crate::conntrack::{Dir, Entry, RuleId};
use crate::flow::FlowKey;
use crate::rules::RuleMatch;
use yard_wire::ipv4::Ipv4Packet;
use yard_wire::offload::Offload;

/// What the gateway would do with one frame ([`Gateway::trace`]).
#[derive(Debug, Clone)]
pub struct GatewayTrace {
    /// What `handle` decided, on the copy.
    pub action: Action,
    /// The frame as `handle` left it: for [`Action::Send`] the packet as it
    /// would leave (translated, TTL lowered, MACs rewritten), `len` bytes.
    pub frame: Vec<u8>,
    /// What the copy queued besides: ARP requests, ICMP errors, frames
    /// released by an ARP reply.
    pub made: Vec<OutFrame>,
    /// For an IPv4 packet, the facts behind the decision.
    pub ipv4: Option<Ipv4Facts>,
    /// The frame was held for ARP resolution of its next hop (the copy's
    /// `held_for_arp` counter rose).
    pub held_for_arp: bool,
}

/// The facts behind the gateway's decision for an IPv4 packet.
#[derive(Debug, Clone)]
pub struct Ipv4Facts {
    /// The packet's source address.
    pub src: Ipv4Addr,
    /// Its destination address, as it arrived.
    pub dst: Ipv4Addr,
    /// Whether the source belongs on the side it came from (uRPF).
    pub source_fits: bool,
    /// The flow as it arrived (TCP, UDP, ICMP echo), if it is one.
    pub key: Option<FlowKey>,
    /// The published port it hits: the rule and its target.
    pub published: Option<(RuleId, Ipv4Addr, u16)>,
    /// Where its destination (the published target, if any) routes:
    /// (side, next hop).
    pub route: Option<(Side, Ipv4Addr)>,
    /// The tracked connection it rides, as it was before, and the
    /// direction the packet has in it.
    pub established: Option<(Entry, Dir)>,
    /// The connection the copy made for it.
    pub created: Option<Entry>,
    /// The firewall rule that decides it, when it is a new connection a
    /// rule matches (none: allowed by default).
    pub rule: Option<RuleMatch>,
}

impl Gateway {
    /// What [`Gateway::handle`] would do with `frame` arriving on `side`
    /// (see the module documentation); nothing of `self` changes.
    pub fn trace(&self, side: Side, frame: &[u8], offload: Offload, now_ms: u64) -> GatewayTrace {
        let mut copy = self.clone();
        copy.icmp_errors = Arc::new(IcmpErrors::new());
        copy.outbox.clear();
        let mut bytes = frame.to_vec();
        let action = copy.handle(side, &mut bytes, offload, now_ms);
        if let Action::Send { len, .. } = action {
            bytes.truncate(len);
        }
        let ipv4 = self.ipv4_facts(&copy, side, frame, now_ms);
        GatewayTrace {
            action,
            frame: bytes,
            made: copy.outbox.drain(..).collect(),
            ipv4,
            held_for_arp: copy.counters.held_for_arp > self.counters.held_for_arp,
        }
    }

    fn ipv4_facts(&self, copy: &Gateway, side: Side, frame: &[u8], now: u64) -> Option<Ipv4Facts> {
        let ip = Ipv4Packet::new_checked(frame.get(ETH..)?).ok()?;
        let (src, dst) = (ip.src(), ip.dst());
        let key = match flow_of(ip.as_bytes()) {
            Ok(PacketFlow::Transport { key, .. }) => Some(key),
            _ => None,
        };
        let published = key
            .and_then(|k| self.published(side, &k))
            .map(|(rule, (addr, port))| (rule, addr, port));
        let route = self.route(published.map_or(dst, |(_, addr, _)| addr));
        let established = key.and_then(|k| {
            let (h, dir) = self.ct.lookup(0, &k, now)?;
            Some((self.ct.get(h)?.clone(), dir))
        });
        let created = match (&established, key) {
            (None, Some(k)) => copy
                .ct
                .lookup(0, &k, now)
                .and_then(|(h, _)| copy.ct.get(h).cloned()),
            _ => None,
        };
        // As `new_connection` judges it: the key with the destination it
        // reaches, or as sent for what the gateway's own address answers.
        let rule = match (&established, key, route) {
            (None, Some(k), Some((out, _))) => {
                let own = self.dns_forward_of(side, &k).is_some()
                    || self.host_loopback_of(side, &k).is_some();
                let judged = match published {
                    Some((_, addr, port)) if !own => FlowKey {
                        dst: addr,
                        dport: port,
                        ..k
                    },
                    _ => k,
                };
                self.rule_for(side, out, judged, own)
            }
            _ => None,
        };
        Some(Ipv4Facts {
            rule,
            src,
            dst,
            source_fits: self.source_fits(side, src),
            key,
            published,
            route,
            established,
            created,
        })
    }
}
