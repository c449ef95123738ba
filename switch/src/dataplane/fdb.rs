//! The forwarding database of one network: which port each MAC address lives
//! behind.
//!
//! Learned entries age out after the network's aging time without traffic;
//! static entries (`fdb add`) never age and are never moved by learning. Each
//! port may own at most [`Fdb::port_limit`] learned entries, so one port cannot
//! fill the table. Keys are attacker-chosen source addresses, so the map uses
//! std's keyed SipHash. Time is passed in as [`Millis`], so tests drive the clock.
//!
//! With several datapath threads (`yardd --threads`) each thread keeps its
//! own table. A thread learns from the frames it receives and tells the others
//! ([`Learned::is_news`]); they record the address with
//! [`Fdb::learn_from_peer`]. While the address keeps sending, its thread tells
//! them again every third of the aging time, so their copies age out only
//! when the address goes quiet.

use std::collections::HashMap;

use yard_ctl::MacAddr;

use crate::dataplane::clock::Millis;
use crate::dataplane::port::PortId;

/// One entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdbSlot {
    /// The port the address lives behind.
    pub port: PortId,
    /// When a frame from the address was last seen (learned entries).
    pub last_seen: Millis,
    /// Added by the user; never aged or moved.
    pub is_static: bool,
    /// Learned by another datapath thread, which receives the address's
    /// frames and reports it in `fdb show`.
    pub from_peer: bool,
    /// When the other datapath threads were last told of this entry.
    pub announced: Millis,
}

/// What learning a source address did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// A new entry.
    New,
    /// The entry was already there; its age was reset.
    Refreshed,
    /// As `Refreshed`, and a third of the aging time has passed since the
    /// other datapath threads last heard of it: tell them again.
    Reconfirmed,
    /// The address moved here from another port.
    Moved {
        /// The port it lived behind before.
        from: PortId,
    },
    /// Not learned: the port holds its limit of learned entries.
    LimitReached,
    /// Not learned: a static entry pins the address to another port.
    PinnedElsewhere,
}

impl Learned {
    /// True when the other datapath threads should hear of the entry.
    pub fn is_news(self) -> bool {
        matches!(
            self,
            Learned::New | Learned::Moved { .. } | Learned::Reconfirmed
        )
    }
}

/// The MAC table of one network.
#[derive(Debug)]
pub struct Fdb {
    entries: HashMap<MacAddr, FdbSlot>,
    learned_per_port: HashMap<PortId, u32>,
    aging_ms: u64,
    port_limit: u32,
    /// Times a learned address moved between ports.
    pub mac_moves: u64,
    /// Addresses not learned because their port was at its limit.
    pub limit_hits: u64,
}

impl Fdb {
    /// An empty table with the given aging time and per-port limit.
    pub fn new(aging_secs: u64, port_limit: u32) -> Self {
        Fdb {
            entries: HashMap::new(),
            learned_per_port: HashMap::new(),
            aging_ms: aging_secs.saturating_mul(1000),
            port_limit,
            mac_moves: 0,
            limit_hits: 0,
        }
    }

    /// The per-port limit on learned entries.
    pub fn port_limit(&self) -> u32 {
        self.port_limit
    }

    /// Changes the aging time; existing entries are judged by the new one.
    pub fn set_aging(&mut self, aging_secs: u64) {
        self.aging_ms = aging_secs.saturating_mul(1000);
    }

    fn is_live(&self, slot: &FdbSlot, now: Millis) -> bool {
        slot.is_static || now.since(slot.last_seen) < self.aging_ms
    }

    fn learned_count(&mut self, port: PortId) -> &mut u32 {
        self.learned_per_port.entry(port).or_insert(0)
    }

    /// Records that a frame from `mac` arrived on `port` at `now`.
    pub fn learn(&mut self, mac: MacAddr, port: PortId, now: Millis) -> Learned {
        // Fast path: a known address on its usual port. One lookup, no insert.
        if let Some(slot) = self.entries.get_mut(&mac) {
            if slot.is_static {
                return if slot.port == port {
                    Learned::Refreshed
                } else {
                    Learned::PinnedElsewhere
                };
            }
            if slot.port == port {
                slot.last_seen = now;
                slot.from_peer = false;
                if now.since(slot.announced) >= self.aging_ms / 3 {
                    slot.announced = now;
                    return Learned::Reconfirmed;
                }
                return Learned::Refreshed;
            }
        }
        let previous = self.entries.get(&mac).map(|slot| slot.port);
        if *self.learned_count(port) >= self.port_limit {
            self.limit_hits += 1;
            return Learned::LimitReached;
        }
        self.insert_learned(mac, port, now, false);
        match previous {
            Some(from) => {
                *self.learned_count(from) -= 1;
                self.mac_moves += 1;
                Learned::Moved { from }
            }
            None => Learned::New,
        }
    }

    /// Records what another datapath thread learned: `mac` lives behind
    /// `port`. The peer enforced the port's limit and counted any move; a
    /// static entry here wins.
    pub fn learn_from_peer(&mut self, mac: MacAddr, port: PortId, now: Millis) {
        let previous = self.entries.get(&mac).copied();
        match previous {
            Some(slot) if slot.is_static => return,
            Some(slot) => *self.learned_count(slot.port) -= 1,
            None => {}
        }
        self.insert_learned(mac, port, now, true);
    }

    /// Inserts (or replaces) a learned entry and counts it for its port; the
    /// caller uncounts a replaced one.
    fn insert_learned(&mut self, mac: MacAddr, port: PortId, now: Millis, from_peer: bool) {
        *self.learned_count(port) += 1;
        let slot = FdbSlot {
            port,
            last_seen: now,
            is_static: false,
            from_peer,
            announced: now,
        };
        self.entries.insert(mac, slot);
    }

    /// The port `mac` lives behind, if known and not aged out.
    pub fn lookup(&self, mac: &MacAddr, now: Millis) -> Option<PortId> {
        self.entries
            .get(mac)
            .filter(|slot| self.is_live(slot, now))
            .map(|slot| slot.port)
    }

    /// Adds or replaces a static entry.
    pub fn add_static(&mut self, mac: MacAddr, port: PortId) {
        self.remove(&mac);
        self.entries.insert(
            mac,
            FdbSlot {
                port,
                last_seen: Millis(0),
                is_static: true,
                from_peer: false,
                announced: Millis(0),
            },
        );
    }

    /// Removes an entry; returns whether there was one.
    pub fn remove(&mut self, mac: &MacAddr) -> bool {
        match self.entries.remove(mac) {
            Some(slot) => {
                if !slot.is_static {
                    *self.learned_count(slot.port) -= 1;
                }
                true
            }
            None => false,
        }
    }

    /// Removes the learned entry of `mac` when it points at a port other
    /// than `port` (the address has become `port`'s own); a static entry
    /// stays. Returns whether one was removed.
    pub fn unlearn_elsewhere(&mut self, mac: &MacAddr, port: PortId) -> bool {
        let elsewhere = self
            .entries
            .get(mac)
            .is_some_and(|slot| !slot.is_static && slot.port != port);
        elsewhere && self.remove(mac)
    }

    /// Removes every learned entry; static ones stay.
    pub fn flush_learned(&mut self) {
        self.entries.retain(|_, slot| slot.is_static);
        self.learned_per_port.clear();
    }

    /// Removes every entry, static or learned, that points at `port`.
    pub fn remove_port(&mut self, port: PortId) {
        self.entries.retain(|_, slot| slot.port != port);
        self.learned_per_port.remove(&port);
    }

    /// Drops learned entries older than the aging time; returns how many.
    pub fn expire(&mut self, now: Millis) -> usize {
        let aging_ms = self.aging_ms;
        let mut expired = Vec::new();
        for (mac, slot) in &self.entries {
            if !slot.is_static && now.since(slot.last_seen) >= aging_ms {
                expired.push(*mac);
            }
        }
        for mac in &expired {
            self.remove(mac);
        }
        expired.len()
    }

    /// Live entries, for display.
    pub fn entries(&self, now: Millis) -> impl Iterator<Item = (&MacAddr, &FdbSlot)> + '_ {
        self.entries
            .iter()
            .filter(move |(_, slot)| self.is_live(slot, now))
    }

    /// Number of live entries.
    pub fn len(&self, now: Millis) -> usize {
        self.entries(now).count()
    }

    /// Live entries this thread reports: those it learned itself, and the
    /// static ones when `with_static` (every thread holds those).
    pub fn own_entries(
        &self,
        now: Millis,
        with_static: bool,
    ) -> impl Iterator<Item = (&MacAddr, &FdbSlot)> + '_ {
        self.entries(now)
            .filter(move |(_, slot)| !slot.from_peer && (with_static || !slot.is_static))
    }

    /// Learned entries owned by `port`.
    pub fn learned_on(&self, port: PortId) -> u32 {
        self.learned_per_port.get(&port).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(n: u8) -> MacAddr {
        MacAddr([0x02, 0, 0, 0, 0, n])
    }
    const P1: PortId = PortId(1);
    const P2: PortId = PortId(2);

    #[test]
    fn learns_refreshes_and_ages() {
        let mut fdb = Fdb::new(300, 4096);
        assert_eq!(fdb.learn(mac(1), P1, Millis(0)), Learned::New);
        assert_eq!(fdb.lookup(&mac(1), Millis(299_999)), Some(P1));
        assert_eq!(fdb.learn(mac(1), P1, Millis(200_000)), Learned::Reconfirmed);
        assert_eq!(fdb.lookup(&mac(1), Millis(499_999)), Some(P1));
        assert_eq!(fdb.lookup(&mac(1), Millis(500_000)), None, "aged out");
        assert_eq!(fdb.expire(Millis(500_000)), 1);
        assert_eq!(fdb.learned_on(P1), 0);
    }

    #[test]
    fn moves_are_counted_and_ownership_follows() {
        let mut fdb = Fdb::new(300, 4096);
        fdb.learn(mac(1), P1, Millis(0));
        assert_eq!(
            fdb.learn(mac(1), P2, Millis(1)),
            Learned::Moved { from: P1 }
        );
        assert_eq!(fdb.mac_moves, 1);
        assert_eq!(fdb.learned_on(P1), 0);
        assert_eq!(fdb.learned_on(P2), 1);
        assert_eq!(fdb.lookup(&mac(1), Millis(2)), Some(P2));
    }

    #[test]
    fn per_port_limit_stops_one_port_filling_the_table() {
        let mut fdb = Fdb::new(300, 2);
        assert_eq!(fdb.learn(mac(1), P1, Millis(0)), Learned::New);
        assert_eq!(fdb.learn(mac(2), P1, Millis(0)), Learned::New);
        assert_eq!(fdb.learn(mac(3), P1, Millis(0)), Learned::LimitReached);
        assert_eq!(fdb.limit_hits, 1);
        assert_eq!(
            fdb.learn(mac(3), P2, Millis(0)),
            Learned::New,
            "other ports unaffected"
        );
        fdb.remove(&mac(1));
        assert_eq!(
            fdb.learn(mac(4), P1, Millis(0)),
            Learned::New,
            "room again after removal"
        );
    }

    #[test]
    fn static_entries_never_age_or_move() {
        let mut fdb = Fdb::new(1, 4096);
        fdb.add_static(mac(9), P1);
        assert_eq!(fdb.learn(mac(9), P2, Millis(5)), Learned::PinnedElsewhere);
        assert_eq!(fdb.lookup(&mac(9), Millis(10_000_000)), Some(P1));
        assert_eq!(fdb.expire(Millis(10_000_000)), 0);
        fdb.learn(mac(1), P2, Millis(0));
        fdb.flush_learned();
        assert_eq!(fdb.lookup(&mac(1), Millis(0)), None);
        assert_eq!(
            fdb.lookup(&mac(9), Millis(0)),
            Some(P1),
            "flush keeps static entries"
        );
        assert!(fdb.remove(&mac(9)));
        assert_eq!(fdb.lookup(&mac(9), Millis(0)), None);
    }

    #[test]
    fn peers_hear_of_news_and_again_while_the_address_is_live() {
        let mut fdb = Fdb::new(300, 4096);
        assert!(fdb.learn(mac(1), P1, Millis(0)).is_news(), "new");
        assert_eq!(fdb.learn(mac(1), P1, Millis(99_999)), Learned::Refreshed);
        assert!(!Learned::Refreshed.is_news());
        assert_eq!(
            fdb.learn(mac(1), P1, Millis(100_000)),
            Learned::Reconfirmed,
            "a third of the aging time after the last announcement"
        );
        assert_eq!(fdb.learn(mac(1), P1, Millis(100_001)), Learned::Refreshed);
        assert!(fdb.learn(mac(1), P2, Millis(100_002)).is_news(), "moved");
    }

    #[test]
    fn entries_from_peers_forward_age_and_are_not_reported() {
        let mut fdb = Fdb::new(300, 1);
        fdb.learn(mac(1), P1, Millis(0));
        fdb.learn_from_peer(mac(2), P1, Millis(0));
        assert_eq!(fdb.lookup(&mac(2), Millis(1)), Some(P1), "beyond the limit");
        assert_eq!(fdb.mac_moves, 0);
        fdb.learn_from_peer(mac(1), P2, Millis(10));
        assert_eq!(
            fdb.lookup(&mac(1), Millis(11)),
            Some(P2),
            "moved by the peer"
        );
        assert_eq!(fdb.mac_moves, 0, "the peer counted the move");
        fdb.add_static(mac(9), P1);
        fdb.learn_from_peer(mac(9), P2, Millis(12));
        assert_eq!(fdb.lookup(&mac(9), Millis(13)), Some(P1), "static wins");
        let own: Vec<_> = fdb.own_entries(Millis(13), false).collect();
        assert!(own.is_empty(), "learned by peers or static: {own:?}");
        assert_eq!(fdb.own_entries(Millis(13), true).count(), 1);
        assert_eq!(fdb.expire(Millis(300_011)), 2, "peer entries age too");
        assert_eq!(fdb.learned_on(P1), 0);
        assert_eq!(fdb.learned_on(P2), 0);
    }

    #[test]
    fn removing_a_port_forgets_its_addresses() {
        let mut fdb = Fdb::new(300, 4096);
        fdb.learn(mac(1), P1, Millis(0));
        fdb.add_static(mac(2), P1);
        fdb.learn(mac(3), P2, Millis(0));
        fdb.remove_port(P1);
        assert_eq!(fdb.len(Millis(0)), 1);
        assert_eq!(fdb.lookup(&mac(3), Millis(0)), Some(P2));
    }
}
