//! The connection table proper: slab, keyed index, eviction lists and the
//! timer wheel driving expiry. See the `conntrack` module doc for the design;
//! fair SNAT (shares and reclaim) lives in [`reclaim`].

mod reclaim;

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::Ipv4Addr;

use super::tcp::TcpTracker;
use super::wheel::{Wheel, TICK_MS};
use super::{
    Chain, Config, ConntrackError, Counters, Dir, Entry, Filter, Handle, Links, NewConn, Packet,
    PortId, ProtoState, RuleId, Stats, Timeouts, Touch, Zone,
};
use crate::flow::{FlowKey, Proto};
use crate::mapping::{Mapping, MappingError, MappingKey};

const NIL: u32 = u32::MAX;
const UNFILED: u64 = u64::MAX;

/// (zone, key) as hashed: packed into one `u128` so the keyed hasher runs
/// once over 16 bytes instead of once per field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IndexKey {
    zone: Zone,
    key: FlowKey,
}

impl IndexKey {
    fn packed(&self) -> u128 {
        let k = &self.key;
        u128::from(self.zone)
            | u128::from(k.proto.ip_protocol()) << 16
            | u128::from(u32::from(k.src)) << 24
            | u128::from(k.sport) << 56
            | u128::from(u32::from(k.dst)) << 72
            | u128::from(k.dport) << 104
    }
}

impl Hash for IndexKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u128(self.packed());
    }
}

/// Slot value in the index: slab slot and direction.
fn index_value(slot: u32, dir: Dir) -> u32 {
    slot << 1 | dir.index() as u32
}

#[derive(Debug, Clone)]
struct Slot {
    gen: u32,
    entry: Option<Entry>,
}

/// Head and tail of an intrusive list threaded through `Links::prev/next`.
#[derive(Debug, Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
}

const UNREPLIED: usize = 0;
const ASSURED: usize = 1;

/// Why an entry is removed (for the counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    Expired,
    EvictedUnreplied,
    EvictedOther,
    Removed,
    ReclaimedForShare,
    ReclaimedForPool,
}

/// The connection tracking table. See the module doc for the design.
#[derive(Debug, Clone)]
pub struct Conntrack {
    config: Config,
    slots: Vec<Slot>,
    free: Vec<u32>,
    index: HashMap<IndexKey, u32, RandomState>,
    lists: [List; 2],
    wheel: Wheel,
    mapping: Mapping,
    reclaim: reclaim::Reclaim,
    stats: Stats,
}

impl Default for Conntrack {
    fn default() -> Self {
        Conntrack::new(Config::default())
    }
}

impl Conntrack {
    /// An empty table with its own SNAT [`Mapping`].
    pub fn new(config: Config) -> Conntrack {
        Conntrack::with_mapping(config, Mapping::new())
    }

    /// An empty table using `mapping` for SNAT (e.g. a seeded one in tests).
    pub fn with_mapping(config: Config, mut mapping: Mapping) -> Conntrack {
        mapping.set_share_percent(config.snat_share_percent);
        Conntrack {
            config,
            slots: Vec::new(),
            free: Vec::new(),
            index: HashMap::default(),
            lists: [List {
                head: NIL,
                tail: NIL,
            }; 2],
            wheel: Wheel::new(),
            mapping,
            reclaim: reclaim::Reclaim::default(),
            stats: Stats::default(),
        }
    }

    /// The limit and timeouts in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Replace the timeouts. Running timers keep their expiry until the next
    /// packet of their connection.
    pub fn set_timeouts(&mut self, timeouts: Timeouts) {
        self.config.timeouts = timeouts;
    }

    /// Change the SNAT share (percent of each port pool one inside address
    /// may hold, clamped to 1–100). Mappings already held are kept; a
    /// source above the new share gets no new one until it is back under.
    pub fn set_snat_share_percent(&mut self, percent: u8) {
        self.mapping.set_share_percent(percent);
        self.config.snat_share_percent = self.mapping.share_percent();
    }

    /// Change the limit; if the table is above it, evicts down to it now.
    pub fn set_max_entries(&mut self, max_entries: usize) {
        self.config.max_entries = max_entries;
        while self.len() > max_entries {
            self.evict_one();
        }
    }

    /// Counters (with `entries` filled in).
    pub fn stats(&self) -> Stats {
        Stats {
            entries: self.len(),
            ..self.stats
        }
    }

    /// Number of entries, including expired ones not yet swept.
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Whether the table holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The SNAT mapping table (read-only: the table keeps its refcounts).
    pub fn mapping(&self) -> &Mapping {
        &self.mapping
    }

    /// Reserve an external port for a published port (see [`Mapping::reserve`]).
    pub fn reserve_port(
        &mut self,
        proto: Proto,
        external: Ipv4Addr,
        port: u16,
    ) -> Result<(), MappingError> {
        self.mapping.reserve(proto, external, port)
    }

    /// Undo [`Conntrack::reserve_port`].
    pub fn unreserve_port(
        &mut self,
        proto: Proto,
        external: Ipv4Addr,
        port: u16,
    ) -> Result<(), MappingError> {
        self.mapping.unreserve(proto, external, port)
    }

    fn entry(&self, slot: u32) -> &Entry {
        self.slots[slot as usize]
            .entry
            .as_ref()
            .expect("linked slot holds an entry")
    }

    fn entry_mut(&mut self, slot: u32) -> &mut Entry {
        self.slots[slot as usize]
            .entry
            .as_mut()
            .expect("linked slot holds an entry")
    }

    /// Find the entry a packet with `key` belongs to, and its direction,
    /// without refreshing anything (safe for ICMP errors). Expired entries
    /// are treated as absent.
    pub fn lookup(&self, zone: Zone, key: &FlowKey, now: u64) -> Option<(Handle, Dir)> {
        let v = *self.index.get(&IndexKey { zone, key: *key })?;
        let slot = v >> 1;
        let dir = if v & 1 == 0 {
            Dir::Original
        } else {
            Dir::Reply
        };
        let s = &self.slots[slot as usize];
        let e = s.entry.as_ref()?;
        if e.is_expired(now) {
            return None;
        }
        Some((Handle { slot, gen: s.gen }, dir))
    }

    /// The entry behind a handle, if it is still alive.
    pub fn get(&self, h: Handle) -> Option<&Entry> {
        let s = self.slots.get(h.slot as usize)?;
        if s.gen != h.gen {
            return None;
        }
        s.entry.as_ref()
    }

    /// Account a packet of the connection: counters, protocol state,
    /// assured flag and expiry. Only for packets *of* the flow — never for
    /// ICMP errors quoting it.
    pub fn touch(
        &mut self,
        h: Handle,
        dir: Dir,
        pkt: &Packet,
        now: u64,
    ) -> Result<Touch, ConntrackError> {
        if self.get(h).is_none() {
            return Err(ConntrackError::Stale);
        }
        let timeouts = self.config.timeouts;
        let e = self.entry_mut(h.slot);
        let c = &mut e.counters[dir.index()];
        c.packets += 1;
        c.bytes += u64::from(pkt.bytes);
        let mut invalid = None;
        let mut tcp_state = None;
        let was_assured = e.assured;
        if let ProtoState::Tcp(t) = &mut e.state {
            let seg = pkt.tcp.unwrap_or_default();
            match t.update(dir, &seg) {
                Ok(s) => tcp_state = Some(s),
                Err(i) => invalid = Some(i),
            }
        }
        if invalid.is_none() {
            if dir == Dir::Reply {
                e.seen_reply = true;
            }
            // Established by a handshake means replied; a connection picked
            // up mid-stream is assured only once its other side is heard.
            e.assured |= e.seen_reply
                && match e.state {
                    ProtoState::Tcp(t) => t.state() == super::tcp::TcpState::Established,
                    _ => true,
                };
            e.expires_at = now + e.timeout(&timeouts);
        } else {
            tcp_state = e.tcp_state();
        }
        let (assured, expires_at, filed) = (e.assured, e.expires_at, e.links.wheel_tick);
        if e.seen_reply && e.links.reclaimable {
            // Answered: its mapping is in use and never reclaimed.
            self.reclaim_unlink(h.slot);
        }
        if assured && !was_assured {
            self.unlink(h.slot, UNREPLIED);
            self.link_tail(h.slot, ASSURED);
        }
        // Shortened expiry (e.g. into TIME_WAIT or CLOSE): refile earlier so
        // the sweep removes it on time. Extensions are caught lazily.
        if invalid.is_none() && self.wheel.target(expires_at) < filed {
            self.unfile(h.slot);
            self.file(h.slot);
        }
        Ok(Touch {
            dir,
            tcp_state,
            invalid,
        })
    }

    /// The fast path in one call: [`Conntrack::lookup`] then
    /// [`Conntrack::touch`]. `None` when no live entry matches.
    pub fn lookup_touch(
        &mut self,
        zone: Zone,
        key: &FlowKey,
        pkt: &Packet,
        now: u64,
    ) -> Option<(Handle, Touch)> {
        let (h, dir) = self.lookup(zone, key, now)?;
        let t = self.touch(h, dir, pkt, now).ok()?;
        Some((h, t))
    }

    /// Track a new connection from its first packet (slow path). Allocates
    /// the SNAT port if `conn.snat` is set, records the translation, and
    /// evicts one entry first if the table is at its limit.
    pub fn insert(
        &mut self,
        conn: NewConn,
        first: &Packet,
        now: u64,
    ) -> Result<Handle, ConntrackError> {
        let r = self.try_insert(conn, first, now);
        if r.is_err() {
            self.stats.refused += 1;
        }
        r
    }

    fn try_insert(
        &mut self,
        conn: NewConn,
        first: &Packet,
        now: u64,
    ) -> Result<Handle, ConntrackError> {
        let orig = conn.original;
        let zone = conn.zone;
        let state = match orig.proto {
            Proto::Tcp => {
                let seg = pkt_tcp(first).ok_or(ConntrackError::NotSyn { key: orig })?;
                ProtoState::Tcp(
                    TcpTracker::first(&seg).map_err(|_| ConntrackError::NotSyn { key: orig })?,
                )
            }
            Proto::Udp => ProtoState::Udp,
            Proto::Icmp => ProtoState::Icmp,
        };
        if self.config.max_entries == 0 {
            return Err(ConntrackError::Full);
        }
        self.drop_if_expired(zone, &orig, now);
        if self.index.contains_key(&IndexKey { zone, key: orig }) {
            return Err(ConntrackError::Exists { zone, key: orig });
        }

        // Make room before taking a port: the victim may free one.
        while self.len() >= self.config.max_entries {
            self.evict_one();
        }

        let mut translated = orig;
        let mut nat = super::Nat::default();
        if let Some((addr, port)) = conn.dnat {
            translated.dst = addr;
            if orig.proto != Proto::Icmp {
                translated.dport = port;
            }
            nat.dnat = Some((translated.dst, translated.dport));
        }
        let mut snat_key = None;
        if let Some(external) = conn.snat {
            let key = MappingKey {
                proto: orig.proto,
                inside_addr: orig.src,
                inside_port: orig.sport,
                external,
            };
            let port = self.acquire_fair(key, now)?;
            snat_key = Some(key);
            translated.src = external;
            translated.sport = port;
            if orig.proto == Proto::Icmp {
                // The echo identifier is both "ports".
                translated.dport = port;
            }
            nat.snat = Some((external, port));
        }
        let reply = translated.reversed();
        self.drop_if_expired(zone, &reply, now);
        if reply != orig && self.index.contains_key(&IndexKey { zone, key: reply }) {
            if let Some(k) = snat_key {
                self.mapping.release(k);
            }
            return Err(ConntrackError::Clash {
                zone,
                original: orig,
                reply,
            });
        }

        let inside = conn.dnat.map_or(orig.src, |(a, _)| a);
        let mut entry = Entry {
            zone,
            original: orig,
            reply,
            nat,
            state,
            expires_at: 0,
            created_at: now,
            counters: [Counters::default(); 2],
            seen_reply: false,
            assured: false,
            rule: conn.rule,
            port: conn.port,
            inside,
            ingress: conn.ingress,
            snat_key,
            links: Links {
                prev: NIL,
                next: NIL,
                wheel_tick: UNFILED,
                wheel_pos: 0,
                reclaim: [Chain {
                    prev: NIL,
                    next: NIL,
                }; 2],
                reclaimable: false,
            },
        };
        entry.counters[0] = Counters {
            packets: 1,
            bytes: u64::from(first.bytes),
        };
        entry.expires_at = now + entry.timeout(&self.config.timeouts);

        if self.is_empty() {
            // Nothing is filed: the wheel may jump to the present.
            self.wheel.next_tick = now / TICK_MS;
        }
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize].entry = Some(entry);
                s
            }
            None => {
                self.slots.push(Slot {
                    gen: 0,
                    entry: Some(entry),
                });
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(
            IndexKey { zone, key: orig },
            index_value(slot, Dir::Original),
        );
        if reply != orig {
            self.index
                .insert(IndexKey { zone, key: reply }, index_value(slot, Dir::Reply));
        }
        self.link_tail(slot, UNREPLIED);
        self.file(slot);
        if snat_key.is_some() {
            self.reclaim_link(slot);
        }
        self.stats.inserted += 1;
        Ok(Handle {
            slot,
            gen: self.slots[slot as usize].gen,
        })
    }

    fn drop_if_expired(&mut self, zone: Zone, key: &FlowKey, now: u64) {
        if let Some(&v) = self.index.get(&IndexKey { zone, key: *key }) {
            if self.entry(v >> 1).is_expired(now) {
                self.remove_slot(v >> 1, Reason::Expired);
            }
        }
    }

    /// Sweep due timers: examines at most `config.expire_budget` entries
    /// (empty buckets are skipped through a bitmap), removing the
    /// expired and re-filing the refreshed. Returns how many expired. Call
    /// it regularly (e.g. once per poll-loop iteration); lookups never see
    /// an expired entry whether or not it has been swept.
    pub fn expire(&mut self, now: u64) -> usize {
        let now_tick = now / TICK_MS;
        if self.is_empty() {
            self.wheel.next_tick = self.wheel.next_tick.max(now_tick + 1);
            return 0;
        }
        let mut budget = self.config.expire_budget;
        let mut expired = 0;
        loop {
            match self.wheel.next_occupied(self.wheel.next_tick) {
                Some(t) if t <= now_tick => self.wheel.next_tick = t,
                _ => {
                    // Every bucket up to now is empty.
                    self.wheel.next_tick = now_tick + 1;
                    return expired;
                }
            }
            let tick = self.wheel.next_tick;
            while let Some(slot) = self.wheel.last(tick) {
                if budget == 0 {
                    return expired;
                }
                budget -= 1;
                self.unfile(slot);
                if self.entry(slot).is_expired(now) {
                    self.remove_slot(slot, Reason::Expired);
                    expired += 1;
                } else {
                    self.file(slot);
                }
            }
            self.wheel.next_tick += 1;
        }
    }

    /// Remove every entry `pred` selects; returns how many.
    pub fn remove_where(&mut self, mut pred: impl FnMut(&Entry) -> bool) -> usize {
        let victims: Vec<u32> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.entry.as_ref().is_some_and(&mut pred))
            .map(|(i, _)| i as u32)
            .collect();
        for &slot in &victims {
            self.remove_slot(slot, Reason::Removed);
        }
        victims.len()
    }

    /// Remove the entries created by published-port rule `rule` (call when
    /// the rule is deleted or its target changes).
    pub fn remove_by_rule(&mut self, rule: RuleId) -> usize {
        self.remove_where(|e| e.rule == Some(rule))
    }

    /// Remove the entries depending on inside address `addr` (see
    /// [`Entry::inside`]): call when a container goes away so its successor
    /// at the same address is not black-holed by stale state. All protocols,
    /// all zones.
    pub fn remove_by_inside_addr(&mut self, addr: Ipv4Addr) -> usize {
        self.remove_where(|e| e.inside == addr)
    }

    /// Remove the entries depending on inside switch port `port`.
    pub fn remove_by_port(&mut self, port: PortId) -> usize {
        self.remove_where(|e| e.port == Some(port))
    }

    /// Remove the entries `filter` selects (`conntrack flush`).
    pub fn flush(&mut self, filter: &Filter) -> usize {
        self.remove_where(|e| filter.matches(e))
    }

    /// Remove one entry by handle; `false` if it was already gone.
    pub fn remove(&mut self, h: Handle) -> bool {
        if self.get(h).is_none() {
            return false;
        }
        self.remove_slot(h.slot, Reason::Removed);
        true
    }

    /// Live entries at `now` (for `conntrack ls`), in slab order.
    pub fn iter(&self, now: u64) -> Iter<'_> {
        Iter {
            inner: self.slots.iter().enumerate(),
            now,
        }
    }

    /// Heap bytes the table holds (slab, index, free list, wheel, reclaim
    /// lists' heads), excluding the mapping table. An estimate of
    /// hashbrown's layout: one control byte plus the bucket per capacity
    /// slot.
    pub fn heap_bytes(&self) -> usize {
        let index_bucket = std::mem::size_of::<(IndexKey, u32)>() + 1;
        self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.free.capacity() * 4
            + self.index.capacity() * index_bucket * 8 / 7
            + self.wheel.heap_bytes()
            + self.reclaim.heap_bytes()
    }

    fn evict_one(&mut self) {
        let (slot, reason) = if self.lists[UNREPLIED].head != NIL {
            (self.lists[UNREPLIED].head, Reason::EvictedUnreplied)
        } else if self.lists[ASSURED].head != NIL {
            (self.lists[ASSURED].head, Reason::EvictedOther)
        } else {
            return;
        };
        self.remove_slot(slot, reason);
    }

    fn remove_slot(&mut self, slot: u32, reason: Reason) {
        self.unfile(slot);
        let list = if self.entry(slot).assured {
            ASSURED
        } else {
            UNREPLIED
        };
        self.unlink(slot, list);
        self.reclaim_unlink(slot);
        let s = &mut self.slots[slot as usize];
        let e = s.entry.take().expect("removing a live slot");
        s.gen = s.gen.wrapping_add(1);
        self.index.remove(&IndexKey {
            zone: e.zone,
            key: e.original,
        });
        if e.reply != e.original {
            self.index.remove(&IndexKey {
                zone: e.zone,
                key: e.reply,
            });
        }
        if let Some(k) = e.snat_key {
            self.mapping.release(k);
        }
        self.free.push(slot);
        match reason {
            Reason::Expired => self.stats.expired += 1,
            Reason::EvictedUnreplied => self.stats.evicted_unreplied += 1,
            Reason::EvictedOther => self.stats.evicted_other += 1,
            Reason::Removed => self.stats.removed += 1,
            Reason::ReclaimedForShare => self.stats.snat_share_reclaimed += 1,
            Reason::ReclaimedForPool => self.stats.snat_pool_reclaimed += 1,
        }
    }

    fn file(&mut self, slot: u32) {
        let tick = self.wheel.target(self.entry(slot).expires_at);
        let pos = self.wheel.push(slot, tick);
        let l = &mut self.entry_mut(slot).links;
        l.wheel_tick = tick;
        l.wheel_pos = pos;
    }

    fn unfile(&mut self, slot: u32) {
        let Links {
            wheel_tick,
            wheel_pos,
            ..
        } = self.entry(slot).links;
        if wheel_tick == UNFILED {
            return;
        }
        if let Some(moved) = self.wheel.remove(wheel_tick, wheel_pos) {
            self.entry_mut(moved).links.wheel_pos = wheel_pos;
        }
        self.entry_mut(slot).links.wheel_tick = UNFILED;
    }

    fn link_tail(&mut self, slot: u32, list: usize) {
        let tail = self.lists[list].tail;
        {
            let l = &mut self.entry_mut(slot).links;
            l.prev = tail;
            l.next = NIL;
        }
        if tail == NIL {
            self.lists[list].head = slot;
        } else {
            self.entry_mut(tail).links.next = slot;
        }
        self.lists[list].tail = slot;
    }

    fn unlink(&mut self, slot: u32, list: usize) {
        let Links { prev, next, .. } = self.entry(slot).links;
        if prev == NIL {
            self.lists[list].head = next;
        } else {
            self.entry_mut(prev).links.next = next;
        }
        if next == NIL {
            self.lists[list].tail = prev;
        } else {
            self.entry_mut(next).links.prev = prev;
        }
    }

    /// Check every internal invariant (tests only): index ↔ slab, lists,
    /// wheel back-pointers, mapping refcounts.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        let mut live = 0;
        let mut refs: HashMap<MappingKey, u32> = HashMap::new();
        for (i, s) in self.slots.iter().enumerate() {
            let Some(e) = &s.entry else { continue };
            live += 1;
            let v = self.index[&IndexKey {
                zone: e.zone,
                key: e.original,
            }];
            assert_eq!(v, index_value(i as u32, Dir::Original));
            if e.reply != e.original {
                let v = self.index[&IndexKey {
                    zone: e.zone,
                    key: e.reply,
                }];
                assert_eq!(v, index_value(i as u32, Dir::Reply));
            }
            assert_ne!(e.links.wheel_tick, UNFILED);
            assert_eq!(
                self.wheel
                    .remove_probe(e.links.wheel_tick, e.links.wheel_pos),
                Some(i as u32)
            );
            if let Some(k) = e.snat_key {
                *refs.entry(k).or_default() += 1;
            }
        }
        assert_eq!(live, self.len());
        let index_len: usize = self
            .slots
            .iter()
            .filter_map(|s| s.entry.as_ref())
            .map(|e| if e.reply == e.original { 1 } else { 2 })
            .sum();
        assert_eq!(index_len, self.index.len());
        let mut listed = 0;
        for (l, want_assured) in [(UNREPLIED, false), (ASSURED, true)] {
            let mut cur = self.lists[l].head;
            let mut prev = NIL;
            while cur != NIL {
                let e = self.entry(cur);
                assert_eq!(e.assured, want_assured);
                assert_eq!(e.links.prev, prev);
                prev = cur;
                cur = e.links.next;
                listed += 1;
            }
            assert_eq!(self.lists[l].tail, prev);
        }
        assert_eq!(listed, live);
        assert_eq!(refs.len(), self.mapping.len());
        for (k, n) in refs {
            assert_eq!(self.mapping.get(&k).map(|m| m.1), Some(n));
        }
        self.check_reclaim_invariants();
    }
}

fn pkt_tcp(p: &Packet) -> Option<super::tcp::TcpSegment> {
    p.tcp
}

/// Iterator over live entries, from [`Conntrack::iter`].
#[derive(Debug)]
pub struct Iter<'a> {
    inner: std::iter::Enumerate<std::slice::Iter<'a, Slot>>,
    now: u64,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (Handle, &'a Entry);

    fn next(&mut self) -> Option<Self::Item> {
        for (i, s) in self.inner.by_ref() {
            if let Some(e) = &s.entry {
                if !e.is_expired(self.now) {
                    return Some((
                        Handle {
                            slot: i as u32,
                            gen: s.gen,
                        },
                        e,
                    ));
                }
            }
        }
        None
    }
}
