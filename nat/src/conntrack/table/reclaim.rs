//! Fair SNAT inside the table: a new flow takes its mapping within its
//! source's share, and when the share or the whole pool has run out, an
//! unanswered mapping is reclaimed for it before it is refused.
//!
//! Contract:
//! - *Reclaimable* entries are the ones with a masquerade mapping that have
//!   seen no reply: UDP and ICMP never answered, TCP in `SYN_SENT` (or
//!   picked up mid-stream and not heard back). Each is in two intrusive
//!   lists in the order it was created: its (pool, source) list and its
//!   pool list ([`PoolKey`]). It leaves both at its first reply, and when it
//!   dies. An entry that has been answered is never reclaimed, so neither
//!   is a mapping any answered entry uses.
//! - A reclaim looks at most [`RECLAIM_SCAN`] entries from the front of
//!   one list. An expired one (not yet swept) is removed as expired. One
//!   whose mapping another entry also uses (the same inside endpoint
//!   talking to several peers) is moved to the back: removing it would not
//!   free the port, and the other user may have been answered. The first
//!   that holds its mapping alone is removed, which frees its port.
//! - The source's own oldest goes first when it is at its share (it pays
//!   for its own flood); the pool's oldest, whoever holds it, when the pool
//!   is full. Only when nothing was reclaimable is the new flow refused,
//!   and each outcome is counted ([`Stats`](super::super::Stats)).
//! - Per packet of an established flow nothing here runs; on a flow's
//!   first reply, [`Conntrack::reclaim_unlink`] (two hash lookups, no
//!   allocation). New flows pay one list append per list.

use std::collections::hash_map::{Entry as MapEntry, RandomState};
use std::collections::HashMap;
use std::net::Ipv4Addr;

use super::{Chain, Conntrack, Links, List, Reason, Slot, NIL};
use crate::mapping::{MappingError, MappingKey, PoolKey};

/// Chain index of the (pool, source) lists in `Links::reclaim`.
const BY_SOURCE: usize = 0;
/// Chain index of the per-pool lists in `Links::reclaim`.
const BY_POOL: usize = 1;

/// Most entries one reclaim looks at before giving up: bounds the new-flow
/// path when the front of a list holds shared mappings.
pub(super) const RECLAIM_SCAN: usize = 32;

const EMPTY: List = List {
    head: NIL,
    tail: NIL,
};

/// The heads and tails of the reclaim lists. A list that empties is
/// dropped, so the maps hold only sources and pools with a reclaimable
/// entry.
#[derive(Debug, Default, Clone)]
pub(super) struct Reclaim {
    by_source: HashMap<(PoolKey, Ipv4Addr), List, RandomState>,
    by_pool: HashMap<PoolKey, List, RandomState>,
}

impl Reclaim {
    /// Heap bytes of the two maps of list heads (hashbrown estimate, as
    /// [`Conntrack::heap_bytes`]).
    pub(super) fn heap_bytes(&self) -> usize {
        let source = std::mem::size_of::<((PoolKey, Ipv4Addr), List)>() + 1;
        let pool = std::mem::size_of::<(PoolKey, List)>() + 1;
        (self.by_source.capacity() * source + self.by_pool.capacity() * pool) * 8 / 7
    }
}

/// Which list a reclaim takes from.
#[derive(Debug, Clone, Copy)]
enum Scope {
    /// The source's own, for its share.
    Source(PoolKey, Ipv4Addr),
    /// Anyone's in the pool, because the pool is full.
    Pool(PoolKey),
}

fn links_mut(slots: &mut [Slot], slot: u32) -> &mut Links {
    &mut slots[slot as usize]
        .entry
        .as_mut()
        .expect("a listed slot holds an entry")
        .links
}

fn push_back(slots: &mut [Slot], list: &mut List, slot: u32, chain: usize) {
    let tail = list.tail;
    links_mut(slots, slot).reclaim[chain] = Chain {
        prev: tail,
        next: NIL,
    };
    if tail == NIL {
        list.head = slot;
    } else {
        links_mut(slots, tail).reclaim[chain].next = slot;
    }
    list.tail = slot;
}

fn unlink(slots: &mut [Slot], list: &mut List, slot: u32, chain: usize) {
    let Chain { prev, next } = links_mut(slots, slot).reclaim[chain];
    if prev == NIL {
        list.head = next;
    } else {
        links_mut(slots, prev).reclaim[chain].next = next;
    }
    if next == NIL {
        list.tail = prev;
    } else {
        links_mut(slots, next).reclaim[chain].prev = prev;
    }
}

impl Conntrack {
    /// List a new entry as reclaimable if it has a mapping and no reply.
    pub(super) fn reclaim_link(&mut self, slot: u32) {
        let e = self.entry(slot);
        let Some(key) = e.snat_key else { return };
        if e.seen_reply || e.links.reclaimable {
            return;
        }
        let pool = key.pool();
        let list = self
            .reclaim
            .by_source
            .entry((pool, key.inside_addr))
            .or_insert(EMPTY);
        push_back(&mut self.slots, list, slot, BY_SOURCE);
        let list = self.reclaim.by_pool.entry(pool).or_insert(EMPTY);
        push_back(&mut self.slots, list, slot, BY_POOL);
        links_mut(&mut self.slots, slot).reclaimable = true;
    }

    /// Take an entry off the reclaim lists (answered, or dying); no-op if
    /// it is not listed.
    pub(super) fn reclaim_unlink(&mut self, slot: u32) {
        let e = self.entry(slot);
        if !e.links.reclaimable {
            return;
        }
        let key = e.snat_key.expect("a reclaimable entry has a mapping");
        let pool = key.pool();
        if let MapEntry::Occupied(mut o) = self.reclaim.by_source.entry((pool, key.inside_addr)) {
            unlink(&mut self.slots, o.get_mut(), slot, BY_SOURCE);
            if o.get().head == NIL {
                o.remove();
            }
        }
        if let MapEntry::Occupied(mut o) = self.reclaim.by_pool.entry(pool) {
            unlink(&mut self.slots, o.get_mut(), slot, BY_POOL);
            if o.get().head == NIL {
                o.remove();
            }
        }
        links_mut(&mut self.slots, slot).reclaimable = false;
    }

    /// [`Mapping::acquire`](crate::mapping::Mapping::acquire) with fair
    /// SNAT: when the source is at its share, reclaim its oldest unanswered
    /// mapping and ask again; when the pool is full, the pool's oldest. Each
    /// at most once, so at most three tries. A source above its share (the
    /// share was lowered) reclaims nothing and is refused until its flows
    /// end. Counts reclaims and refusals.
    pub(super) fn acquire_fair(&mut self, key: MappingKey, now: u64) -> Result<u16, MappingError> {
        let pool = key.pool();
        let mut reclaimed = [false; 2];
        loop {
            let err = match self.mapping.acquire(key) {
                Ok(port) => return Ok(port),
                Err(e) => e,
            };
            let (scope, tried) = match err {
                MappingError::ShareExhausted { share, .. } => {
                    // Above its share (it was lowered): one reclaim would
                    // not make room, so none is made.
                    let over = self.mapping.source_count(pool, key.inside_addr) > share;
                    reclaimed[0] |= over;
                    (Scope::Source(pool, key.inside_addr), &mut reclaimed[0])
                }
                MappingError::Exhausted { .. } => (Scope::Pool(pool), &mut reclaimed[1]),
                _ => return Err(err),
            };
            if *tried || !self.reclaim_one(scope, now) {
                match scope {
                    Scope::Source(..) => self.stats.snat_share_exhausted += 1,
                    Scope::Pool(_) => self.stats.snat_pool_exhausted += 1,
                }
                return Err(err);
            }
            *tried = true;
        }
    }

    /// Free one port of `scope`'s list by removing an unanswered entry that
    /// holds its mapping alone (see the module doc); whether a port was
    /// freed.
    fn reclaim_one(&mut self, scope: Scope, now: u64) -> bool {
        let (chain, reason) = match scope {
            Scope::Source(..) => (BY_SOURCE, Reason::ReclaimedForShare),
            Scope::Pool(_) => (BY_POOL, Reason::ReclaimedForPool),
        };
        for _ in 0..RECLAIM_SCAN {
            let list = match scope {
                Scope::Source(pool, addr) => self.reclaim.by_source.get(&(pool, addr)),
                Scope::Pool(pool) => self.reclaim.by_pool.get(&pool),
            };
            let Some(&List { head: slot, tail }) = list else {
                return false;
            };
            let e = self.entry(slot);
            let key = e.snat_key.expect("a reclaimable entry has a mapping");
            let alone = self.mapping.get(&key).is_some_and(|(_, refs)| refs == 1);
            if e.is_expired(now) {
                self.remove_slot(slot, Reason::Expired);
                if alone {
                    return true;
                }
            } else if alone {
                self.remove_slot(slot, reason);
                return true;
            } else if slot == tail {
                // The only one left, and shared: nothing to free here.
                return false;
            } else {
                let list = match scope {
                    Scope::Source(pool, addr) => self.reclaim.by_source.get_mut(&(pool, addr)),
                    Scope::Pool(pool) => self.reclaim.by_pool.get_mut(&pool),
                }
                .expect("the list was just read");
                unlink(&mut self.slots, list, slot, chain);
                push_back(&mut self.slots, list, slot, chain);
            }
        }
        false
    }

    /// The reclaim lists agree with the entries (tests only): exactly the
    /// entries with a mapping and no reply are listed, each once in its
    /// source's and its pool's list, and no list is empty.
    #[cfg(test)]
    pub(super) fn check_reclaim_invariants(&self) {
        let want = self
            .slots
            .iter()
            .filter_map(|s| s.entry.as_ref())
            .filter(|e| {
                assert_eq!(e.links.reclaimable, e.snat_key.is_some() && !e.seen_reply);
                e.links.reclaimable
            })
            .count();
        let walk = |list: &List, chain: usize, fits: &dyn Fn(&MappingKey) -> bool| {
            assert_ne!(list.head, NIL, "an empty reclaim list is kept");
            let (mut cur, mut prev, mut n) = (list.head, NIL, 0);
            while cur != NIL {
                let e = self.entry(cur);
                assert!(e.links.reclaimable);
                assert!(fits(&e.snat_key.expect("listed with a mapping")));
                assert_eq!(e.links.reclaim[chain].prev, prev);
                prev = cur;
                cur = e.links.reclaim[chain].next;
                n += 1;
            }
            assert_eq!(list.tail, prev);
            n
        };
        let by_source: usize = self
            .reclaim
            .by_source
            .iter()
            .map(|(&(pool, addr), l)| {
                walk(l, BY_SOURCE, &|k| k.pool() == pool && k.inside_addr == addr)
            })
            .sum();
        let by_pool: usize = self
            .reclaim
            .by_pool
            .iter()
            .map(|(&pool, l)| walk(l, BY_POOL, &|k| k.pool() == pool))
            .sum();
        assert_eq!((by_source, by_pool), (want, want));
    }
}
