//! The switched connections a network's rules allowed, so their replies
//! pass: a bounded table of flow keys with idle expiry, one per network in
//! each bridge.
//!
//! Contract: pure (time passed in, in milliseconds). A flow is found from
//! either direction's key ([`FlowTable::touch`]). The table never grows
//! past the capacity it was made with, so once made it never allocates: a
//! full table records no more flows (the caller judges their replies as
//! new connections) until idle ones expire. Idle timeouts follow
//! conntrack's [`Timeouts`]: TCP's established timeout until a FIN or RST
//! is seen, then its close timeout; UDP's replied timeout; ICMP's.
//!
//! With several datapath threads a flow allowed on one thread is announced
//! to the others; [`FlowTable::touch`] says when a live flow is due to be
//! announced again (every [`REANNOUNCE_MS`]), since a full queue drops
//! announcements.

use std::collections::HashMap;

use crate::conntrack::Timeouts;
use crate::flow::{FlowKey, Proto};

/// How often a live flow is announced to the other threads again.
pub const REANNOUNCE_MS: u64 = 1000;

#[derive(Debug, Clone, Copy)]
struct Tracked {
    last_seen: u64,
    idle_timeout: u64,
    announced: u64,
}

/// A bounded table of allowed flows.
#[derive(Debug, Clone)]
pub struct FlowTable {
    flows: HashMap<FlowKey, Tracked>,
    capacity: usize,
    timeouts: Timeouts,
}

impl FlowTable {
    /// An empty table for at most `capacity` flows, allocated now: room
    /// for twice as many, so that once expired flows have left their
    /// tombstones the map is rehashed in place rather than grown.
    pub fn new(capacity: usize, timeouts: Timeouts) -> FlowTable {
        FlowTable {
            flows: HashMap::with_capacity(capacity.saturating_mul(2)),
            capacity,
            timeouts,
        }
    }

    /// Number of flows tracked.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// No flows tracked.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    fn idle_timeout(&self, proto: Proto, closing: bool) -> u64 {
        match proto {
            Proto::Tcp if closing => self.timeouts.tcp_close,
            Proto::Tcp => self.timeouts.tcp_established,
            Proto::Udp => self.timeouts.udp_replied,
            Proto::Icmp => self.timeouts.icmp,
        }
    }

    /// A packet of flow `key` (either direction; `closing`: a TCP FIN or
    /// RST): `None` when the flow is not tracked, else whether it is due to
    /// be announced again. Refreshes the flow.
    pub fn touch(&mut self, key: &FlowKey, closing: bool, now: u64) -> Option<bool> {
        let closing_timeout = self.idle_timeout(key.proto, true);
        let tracked = match self.flows.get_mut(key) {
            Some(t) => t,
            None => self.flows.get_mut(&key.reversed())?,
        };
        tracked.last_seen = now;
        if closing {
            tracked.idle_timeout = closing_timeout;
        }
        let due = now.saturating_sub(tracked.announced) >= REANNOUNCE_MS;
        if due {
            tracked.announced = now;
        }
        Some(due)
    }

    /// Whether flow `key` (either direction) is tracked; changes nothing.
    pub fn contains(&self, key: &FlowKey) -> bool {
        self.flows.contains_key(key) || self.flows.contains_key(&key.reversed())
    }

    /// Records an allowed flow (this thread's, or one another thread
    /// announced); false when the table is full.
    pub fn insert(&mut self, key: FlowKey, now: u64) -> bool {
        if self.touch(&key, false, now).is_some() {
            return true;
        }
        if self.flows.len() >= self.capacity {
            return false;
        }
        let idle_timeout = self.idle_timeout(key.proto, false);
        self.flows.insert(
            key,
            Tracked {
                last_seen: now,
                idle_timeout,
                announced: now,
            },
        );
        true
    }

    /// Forgets flows idle longer than their timeout.
    pub fn expire(&mut self, now: u64) {
        self.flows
            .retain(|_, t| now.saturating_sub(t.last_seen) < t.idle_timeout);
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn key(proto: Proto, sport: u16) -> FlowKey {
        FlowKey {
            proto,
            src: Ipv4Addr::new(10, 0, 0, 2),
            sport,
            dst: Ipv4Addr::new(10, 0, 0, 3),
            dport: 80,
        }
    }

    #[test]
    fn a_flow_is_found_from_both_directions() {
        let mut table = FlowTable::new(4, Timeouts::default());
        let k = key(Proto::Tcp, 40000);
        assert_eq!(table.touch(&k, false, 0), None);
        assert!(table.insert(k, 0));
        assert_eq!(table.touch(&k.reversed(), false, 10), Some(false));
        assert!(table.contains(&k.reversed()));
        assert_eq!(
            table.touch(&k, false, REANNOUNCE_MS + 10),
            Some(true),
            "due to be announced again"
        );
        assert_eq!(table.touch(&k, false, REANNOUNCE_MS + 20), Some(false));
    }

    #[test]
    fn the_table_is_bounded() {
        let mut table = FlowTable::new(2, Timeouts::default());
        assert!(table.insert(key(Proto::Udp, 1), 0));
        assert!(table.insert(key(Proto::Udp, 2), 0));
        assert!(!table.insert(key(Proto::Udp, 3), 0));
        assert!(
            table.insert(key(Proto::Udp, 2), 1),
            "a tracked flow is refreshed"
        );
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn idle_flows_expire_by_protocol_and_tcp_closes_sooner() {
        let t = Timeouts::default();
        let mut table = FlowTable::new(8, t);
        let (tcp, closed, udp, icmp) = (
            key(Proto::Tcp, 1),
            key(Proto::Tcp, 2),
            key(Proto::Udp, 3),
            key(Proto::Icmp, 4),
        );
        for k in [tcp, closed, udp, icmp] {
            table.insert(k, 0);
        }
        table.touch(&closed.reversed(), true, 0);
        table.expire(t.tcp_close);
        assert!(!table.contains(&closed), "a closed TCP flow goes first");
        table.expire(t.icmp);
        assert!(!table.contains(&icmp) && table.contains(&udp));
        table.expire(t.udp_replied);
        assert!(!table.contains(&udp) && table.contains(&tcp));
        table.expire(t.tcp_established);
        assert!(table.is_empty());
    }
}
