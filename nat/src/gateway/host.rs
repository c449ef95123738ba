//! The host uplink: the gateway's side of the socket relay.
//!
//! Contract: with a host uplink set, every destination outside the
//! networks' subnets routes to [`Side::Host`]. A new flow from a network
//! with masquerade (not `--internal`) is tracked like any other, with the
//! container's tuple untranslated and ingress `[Net(n), Host]`; its packets
//! leave [`Gateway::handle`] as `Action::Send { side: Side::Host, .. }`
//! (the IPv4 packet after the Ethernet header). What the relay sends back
//! comes in through [`Gateway::handle_from_host`] and rides that entry. The
//! relay starts a connection only for a client of a published port's host
//! listening socket: its packet (client → the host address and port it
//! reached) hits the rule and is tracked with ingress `[Host, Net(m)]`, a
//! client on the host's loopback taking the network's `--host-loopback`
//! (or gateway) address as its source. The relay names a flow by the
//! tuple of the packets it gets from the gateway (a container's flow after
//! any translation; for a published connection, its reply direction after
//! translation) and reports each flow's host socket
//! ([`Gateway::set_host_end`]), which `conntrack ls` shows; the flows whose
//! entry has gone (expired, flushed, removed) are handed back by
//! [`Gateway::closed_host_flows`] so the relay closes their sockets.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::{Action, Gateway, GatewayDrop, Side};
use crate::conntrack::Entry;
use crate::flow::{FlowKey, Proto};
use yard_wire::ethernet::{ethertype, EthernetFrame};
use yard_wire::offload::Offload;

impl Gateway {
    /// Makes yardd's own host sockets the way out (`true`), or stops it:
    /// then every relayed connection is removed.
    pub fn set_host_uplink(&mut self, on: bool) {
        self.host_uplink = on;
        if !on {
            let host = Side::Host.ingress();
            self.ct.remove_where(|e| e.ingress.contains(&host));
        }
    }

    /// Makes the gateway's address on each network answer DNS (UDP and TCP
    /// port 53) with a host uplink, by relaying to `resolver` (yardd's own
    /// resolver); `None` stops it.
    pub fn set_dns_forward(&mut self, resolver: Option<Ipv4Addr>) {
        self.dns_forward = resolver;
    }

    /// Where a new flow `key` from `side` goes when it is a DNS query to
    /// the gateway's address on its network that the host resolver
    /// answers: with a host uplink and a resolver, from a network that is
    /// not `--internal`, UDP or TCP to port 53.
    pub(super) fn dns_forward_of(&self, side: Side, key: &FlowKey) -> Option<(Ipv4Addr, u16)> {
        let resolver = self.dns_forward.filter(|_| self.host_uplink)?;
        let Side::Net(id) = side else {
            return None;
        };
        let net = self.nets.iter().find(|n| n.id == id)?;
        let dns = key.dport == 53 && matches!(key.proto, Proto::Udp | Proto::Tcp);
        (dns && !net.internal && key.dst == net.gateway).then_some((resolver, 53))
    }

    /// Whether the host uplink is set.
    pub fn has_host_uplink(&self) -> bool {
        self.host_uplink
    }

    /// Handles an IPv4 packet from the relay: `frame` holds it after an
    /// Ethernet header's room ([`yard_wire::ethernet::HEADER_LEN`] bytes,
    /// their content ignored), in the offload state `offload` (complete
    /// checksums, or a TSO frame with a partial one). It must ride a
    /// relayed connection, or start a published one.
    pub fn handle_from_host(&mut self, frame: &mut [u8], offload: Offload, now_ms: u64) -> Action {
        // The relay leaves the Ethernet header to the gateway: the way out
        // writes the MACs, this the type.
        match EthernetFrame::new_checked(&mut *frame) {
            Ok(mut eth) => eth.set_ethertype(ethertype::IPV4),
            Err(_) => return self.count_drop(GatewayDrop::Malformed),
        }
        let action = self.handle_ipv4(Side::Host, frame, offload, now_ms);
        if let Action::Drop(reason) = action {
            self.counters.drops[reason.index()] += 1;
        }
        action
    }

    fn count_drop(&mut self, reason: GatewayDrop) -> Action {
        self.counters.drops[reason.index()] += 1;
        Action::Drop(reason)
    }

    /// Counts a packet for the relay that found its queue full.
    pub fn count_host_relay_busy(&mut self) {
        self.counters.drops[GatewayDrop::HostRelayBusy.index()] += 1;
    }

    /// Records the host socket of the relayed flow `key` — the flow as the
    /// relay sees it: the tuple of the packets the gateway hands it (the
    /// entry's reply tuple reversed for a container's flow, its original
    /// tuple reversed for a published connection) — its local and remote
    /// address. Returns false when the flow's entry is gone already: then
    /// its socket should be closed.
    pub fn set_host_end(
        &mut self,
        key: FlowKey,
        local: SocketAddrV4,
        remote: SocketAddrV4,
    ) -> bool {
        if !self.is_tracked(&key) {
            return false;
        }
        self.host_ends.insert(key, (local, remote));
        true
    }

    /// The host socket of the relayed connection `e`, if the relay
    /// reported one: (local, remote).
    pub fn host_end(&self, e: &Entry) -> Option<(SocketAddrV4, SocketAddrV4)> {
        self.host_ends
            .get(&e.reply.reversed())
            .or_else(|| self.host_ends.get(&e.original.reversed()))
            .copied()
    }

    /// The relayed flows whose conntrack entry has gone since the last
    /// call: the relay closes their sockets. Allocates; call it from the
    /// periodic tick.
    pub fn closed_host_flows(&mut self) -> Vec<FlowKey> {
        let gone: Vec<FlowKey> = self
            .host_ends
            .keys()
            .filter(|k| !self.is_tracked(k))
            .copied()
            .collect();
        for k in &gone {
            self.host_ends.remove(k);
        }
        gone
    }

    /// Whether the relayed flow `key` (as the relay sees it) has an entry
    /// in the table — one whose reply tuple (a container's flow) or
    /// original tuple (a published connection) is its reverse, expired or
    /// not: expiry removes it on the tick.
    fn is_tracked(&self, key: &FlowKey) -> bool {
        self.ct.lookup(0, &key.reversed(), 0).is_some()
    }
}
