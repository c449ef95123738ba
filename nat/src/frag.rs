//! Fragment translation cache: later fragments of an IPv4 datagram carry no
//! transport header, so they must get the translation decided from the
//! first fragment.
//!
//! Contract: keyed by (source, destination, protocol, IP identification) as
//! the fragments arrive. [`FragCache::first`] records the translation chosen
//! for the first fragment (offset 0) and hands back any later fragments that
//! arrived before it; [`FragCache::later`] answers a non-first fragment with
//! the recorded translation, or holds a copy of it until the first arrives.
//! Pure: no I/O, no clock (time is passed in), no reassembly — it never
//! parses or rewrites the bytes it holds, it only stores and returns them.
//!
//! Bounds: at most `max_datagrams` keys (the oldest is evicted to make
//! room), at most `max_held_bytes` bytes and `max_held_per_datagram`
//! fragments held; a fragment over a bound is dropped (counted), never
//! stored. Every key lives `timeout` ms from its first fragment, not
//! refreshed (like reassembly timers, RFC 791); since the lifetime is fixed,
//! insertion order is expiry order and a FIFO queue gives O(1) amortized
//! expiry. Held fragments of an expired or evicted key are discarded.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;

/// The identity of a fragmented datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FragKey {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// IP protocol field.
    pub proto: u8,
    /// IP identification field.
    pub id: u16,
}

/// Bounds and timeout of a [`FragCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragConfig {
    /// Most datagrams tracked at once (default 1024).
    pub max_datagrams: usize,
    /// Most bytes of early fragments held in total (default 256 KiB).
    pub max_held_bytes: usize,
    /// Most early fragments held per datagram (default 64).
    pub max_held_per_datagram: usize,
    /// Lifetime of a datagram's entry in ms (default 30 s, Linux `ipfrag_time`).
    pub timeout: u64,
}

impl Default for FragConfig {
    fn default() -> Self {
        FragConfig {
            max_datagrams: 1024,
            max_held_bytes: 256 * 1024,
            max_held_per_datagram: 64,
            timeout: 30_000,
        }
    }
}

/// Why a fragment was not held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FragDrop {
    /// Holding it would exceed `max_held_bytes`.
    BytesLimit,
    /// Its datagram already holds `max_held_per_datagram` fragments.
    CountLimit,
}

/// What to do with a non-first fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Later<T> {
    /// Apply this translation (recorded from the first fragment).
    Translate(T),
    /// A copy is held; it comes back from [`FragCache::first`].
    Held,
    /// Not held (over a bound): drop it.
    Dropped(FragDrop),
}

/// What the fragment cache holds now and has done so far (`conntrack
/// stats` shows them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FragStats {
    /// Datagrams currently tracked.
    pub datagrams: usize,
    /// Bytes currently held.
    pub held_bytes: usize,
    /// Fragments held so far.
    pub held: u64,
    /// Held fragments handed back by [`FragCache::first`].
    pub released: u64,
    /// Fragments dropped over the byte bound.
    pub dropped_bytes: u64,
    /// Fragments dropped over the per-datagram count bound.
    pub dropped_count: u64,
    /// Datagrams removed by timeout.
    pub expired: u64,
    /// Datagrams evicted to make room.
    pub evicted: u64,
    /// Held fragments discarded with an expired or evicted datagram.
    pub discarded: u64,
}

#[derive(Debug, Clone)]
struct Datagram<T> {
    translation: Option<T>,
    held: Vec<Vec<u8>>,
    created: u64,
}

/// The cache; `T` is the caller's translation type (copied out per fragment).
#[derive(Debug, Clone)]
pub struct FragCache<T> {
    config: FragConfig,
    map: HashMap<FragKey, Datagram<T>, RandomState>,
    /// Keys in creation (= expiry) order; exactly one per map entry.
    order: VecDeque<FragKey>,
    held_bytes: usize,
    stats: FragStats,
}

impl<T: Copy> FragCache<T> {
    /// An empty cache.
    pub fn new(config: FragConfig) -> FragCache<T> {
        FragCache {
            config,
            map: HashMap::default(),
            order: VecDeque::new(),
            held_bytes: 0,
            stats: FragStats::default(),
        }
    }

    /// What the cache holds now, and its counters so far.
    pub fn stats(&self) -> FragStats {
        FragStats {
            datagrams: self.map.len(),
            held_bytes: self.held_bytes,
            ..self.stats
        }
    }

    /// Remove datagrams older than the timeout; returns how many. Each call
    /// costs O(1) plus O(1) per removed datagram. [`FragCache::first`] and
    /// [`FragCache::later`] call it themselves.
    pub fn expire(&mut self, now: u64) -> usize {
        let mut n = 0;
        while let Some(k) = self.order.front() {
            let created = self.map[k].created;
            if created + self.config.timeout > now {
                break;
            }
            self.pop_front();
            self.stats.expired += 1;
            n += 1;
        }
        n
    }

    fn pop_front(&mut self) {
        if let Some(k) = self.order.pop_front() {
            if let Some(d) = self.map.remove(&k) {
                self.stats.discarded += d.held.len() as u64;
                self.held_bytes -= d.held.iter().map(Vec::len).sum::<usize>();
            }
        }
    }

    fn entry(&mut self, key: FragKey, now: u64) -> &mut Datagram<T> {
        if !self.map.contains_key(&key) {
            while self.map.len() >= self.config.max_datagrams.max(1) {
                self.pop_front();
                self.stats.evicted += 1;
            }
            self.order.push_back(key);
            self.map.insert(
                key,
                Datagram {
                    translation: None,
                    held: Vec::new(),
                    created: now,
                },
            );
        }
        self.map.get_mut(&key).expect("just inserted")
    }

    /// Record the translation decided from the first fragment of `key` and
    /// return the fragments that arrived before it, in arrival order, to be
    /// translated the same way. A repeated first fragment keeps the first
    /// recorded translation.
    pub fn first(&mut self, key: FragKey, translation: T, now: u64) -> Vec<Vec<u8>> {
        self.expire(now);
        let d = self.entry(key, now);
        if d.translation.is_none() {
            d.translation = Some(translation);
        }
        let released = std::mem::take(&mut d.held);
        self.held_bytes -= released.iter().map(Vec::len).sum::<usize>();
        self.stats.released += released.len() as u64;
        released
    }

    /// A non-first fragment of `key`: its translation if known, otherwise a
    /// copy of `fragment` is held (within the bounds) until the first fragment.
    pub fn later(&mut self, key: FragKey, fragment: &[u8], now: u64) -> Later<T> {
        self.expire(now);
        if let Some(t) = self.map.get(&key).and_then(|d| d.translation) {
            return Later::Translate(t);
        }
        if self.held_bytes + fragment.len() > self.config.max_held_bytes {
            self.stats.dropped_bytes += 1;
            return Later::Dropped(FragDrop::BytesLimit);
        }
        let max_per = self.config.max_held_per_datagram;
        let d = self.entry(key, now);
        if d.held.len() >= max_per {
            self.stats.dropped_count += 1;
            return Later::Dropped(FragDrop::CountLimit);
        }
        d.held.push(fragment.to_vec());
        self.held_bytes += fragment.len();
        self.stats.held += 1;
        Later::Held
    }

    /// The recorded translation of `key`, if any (no side effects).
    pub fn translation(&self, key: &FragKey, now: u64) -> Option<T> {
        self.map
            .get(key)
            .filter(|d| d.created + self.config.timeout > now)
            .and_then(|d| d.translation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u16) -> FragKey {
        FragKey {
            src: Ipv4Addr::new(172, 30, 0, 2),
            dst: Ipv4Addr::new(1, 1, 1, 1),
            proto: 17,
            id,
        }
    }

    #[test]
    fn first_then_later_gets_translation() {
        let mut c = FragCache::<u32>::new(FragConfig::default());
        assert!(c.first(key(1), 7, 0).is_empty());
        assert_eq!(c.later(key(1), b"abc", 10), Later::Translate(7));
        assert_eq!(c.later(key(2), b"abc", 10), Later::Held);
        assert_eq!(c.translation(&key(1), 10), Some(7));
        assert_eq!(c.stats().held_bytes, 3);
    }

    #[test]
    fn out_of_order_fragments_are_released_by_the_first() {
        let mut c = FragCache::<u32>::new(FragConfig::default());
        assert_eq!(c.later(key(1), b"second", 0), Later::Held);
        assert_eq!(c.later(key(1), b"third", 1), Later::Held);
        assert_eq!(c.stats().held_bytes, 11);
        let rel = c.first(key(1), 9, 2);
        assert_eq!(rel, vec![b"second".to_vec(), b"third".to_vec()]);
        let s = c.stats();
        assert_eq!(
            (s.held_bytes, s.released, s.held, s.datagrams),
            (0, 2, 2, 1)
        );
        // Later fragments after the first: translated directly.
        assert_eq!(c.later(key(1), b"fourth", 3), Later::Translate(9));
        // A repeated first keeps the first decision and releases nothing.
        assert!(c.first(key(1), 10, 4).is_empty());
        assert_eq!(c.later(key(1), b"x", 5), Later::Translate(9));
    }

    #[test]
    fn byte_and_count_bounds() {
        let cfg = FragConfig {
            max_held_bytes: 10,
            max_held_per_datagram: 2,
            ..FragConfig::default()
        };
        let mut c = FragCache::<u8>::new(cfg);
        assert_eq!(c.later(key(1), b"1234", 0), Later::Held);
        assert_eq!(c.later(key(1), b"1234", 0), Later::Held);
        assert_eq!(
            c.later(key(1), b"1", 0),
            Later::Dropped(FragDrop::CountLimit)
        );
        assert_eq!(
            c.later(key(2), b"12345", 0),
            Later::Dropped(FragDrop::BytesLimit)
        );
        assert_eq!(c.later(key(2), b"12", 0), Later::Held);
        let s = c.stats();
        assert_eq!((s.held_bytes, s.dropped_count, s.dropped_bytes), (10, 1, 1));
        // Releasing frees the byte budget.
        assert_eq!(c.first(key(1), 1, 0).len(), 2);
        assert_eq!(c.later(key(3), b"12345678", 0), Later::Held);
    }

    #[test]
    fn datagram_limit_evicts_oldest() {
        let cfg = FragConfig {
            max_datagrams: 2,
            ..FragConfig::default()
        };
        let mut c = FragCache::<u8>::new(cfg);
        assert_eq!(c.later(key(1), b"aa", 0), Later::Held);
        c.first(key(2), 2, 1);
        c.first(key(3), 3, 2);
        let s = c.stats();
        assert_eq!(
            (s.datagrams, s.evicted, s.discarded, s.held_bytes),
            (2, 1, 1, 0)
        );
        assert_eq!(c.translation(&key(1), 2), None);
        assert_eq!(c.translation(&key(2), 2), Some(2));
    }

    #[test]
    fn timeout_discards_held_and_forgets_translation() {
        let mut c = FragCache::<u8>::new(FragConfig::default());
        assert_eq!(c.later(key(1), b"early", 0), Later::Held);
        c.first(key(2), 2, 1000);
        assert_eq!(c.expire(29_999), 0);
        assert_eq!(c.expire(30_000), 1);
        let s = c.stats();
        assert_eq!(
            (s.datagrams, s.expired, s.discarded, s.held_bytes),
            (1, 1, 1, 0)
        );
        // The first fragment of the expired datagram now finds nothing held.
        assert!(c.first(key(1), 1, 30_500).is_empty());
        // key(2) lives until 31 000, and is not refreshed by use.
        assert_eq!(c.later(key(2), b"x", 30_999), Later::Translate(2));
        assert_eq!(c.later(key(2), b"x", 31_000), Later::Held);
    }
}
