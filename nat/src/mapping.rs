//! SNAT port allocation: the mapping table (RFC 4787, RFC 5382, RFC 5508).
//!
//! Owns which external (address, port) each inside endpoint is translated to,
//! and which external ports are reserved for published ports (DNAT rules).
//! It never sees packets, clocks or connections: conntrack acquires a
//! mapping when it creates a translated entry and releases it when the entry
//! dies; the mapping is freed when its reference count drops to zero.
//!
//! Behaviour (the RFC requirement each rule meets):
//! - Endpoint-independent mapping (RFC 4787 REQ-1, RFC 5382 REQ-1, RFC 5508
//!   REQ-2 for ICMP): one inside (proto, address, port) gets the same
//!   external port for every destination while any entry uses it.
//! - No port overloading (RFC 4787 REQ-2 "paired" addressing trivially, and
//!   the absence of overloading it recommends): an external
//!   (proto, address, port) belongs to at most one inside endpoint, or to one
//!   published-port reservation.
//! - Port preservation (RFC 4787 REQ-3 allows it; it helps applications that
//!   expect it): the inside port is kept when free.
//! - Port ranges kept (RFC 4787 REQ-3): inside 0–1023 maps into 1–1023,
//!   1024–65535 into 1024–65535. ICMP echo identifiers use 0–65535.
//! - Parity kept where possible (RFC 4787 REQ-3 RECOMMENDED): an even inside
//!   port gets an even external port unless the range has none left. Not
//!   applied to ICMP identifiers, where parity means nothing.
//!
//! Complexity: each (proto, external address) has a 65536-bit bitmap with a
//! 1024-bit summary of words that still have a free bit. Preservation is one
//! bit test; otherwise the search starts at a pseudo-random word (RFC 6056:
//! hard-to-guess ports) and walks the summary, so a nearly full range costs
//! at most 16 summary words plus a handful of bitmap words, and the worst
//! case is bounded by the 1024 words of the range — never a scan of mappings.
//! Lookups are hash-map operations (keyed SipHash; inside endpoints are
//! attacker-influenced).
//!
//! Fair share: each port range of a (proto, external address) — a *pool*,
//! named by [`PoolKey`] — gives one inside address at most
//! [`Mapping::share_limit`] of its ports (a percentage of the range,
//! [`DEFAULT_SNAT_SHARE_PERCENT`] unless set), so one container cannot take
//! every port. A new mapping past the share is refused with
//! [`MappingError::ShareExhausted`]; the caller (conntrack) may then reclaim
//! one of that source's unanswered mappings and ask again. Counting is one
//! hash-map entry per (pool, inside address) that holds a mapping. The share
//! never takes a port away: lowering it only refuses new mappings until the
//! source is back under it.

use std::collections::hash_map::{Entry as MapEntry, RandomState};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::Ipv4Addr;

use crate::flow::Proto;

/// Errors from the mapping table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// Every external port of the range is in use.
    #[error(
        "{proto} ports {lo}-{hi} on {external} are all in use — add an external address, \
         widen the range, or wait for connections to expire"
    )]
    Exhausted {
        /// Protocol name.
        proto: &'static str,
        /// External address.
        external: Ipv4Addr,
        /// Range low end.
        lo: u16,
        /// Range high end.
        hi: u16,
    },
    /// The inside address already holds its share of the range.
    #[error(
        "{proto} ports {lo}-{hi} on {external}: {inside_addr} already holds its share of {share} \
         ports, none of them unanswered — raise `yardctl conntrack set --snat-share`, or close \
         some of its connections"
    )]
    ShareExhausted {
        /// Protocol name.
        proto: &'static str,
        /// External address.
        external: Ipv4Addr,
        /// The inside address at its share.
        inside_addr: Ipv4Addr,
        /// Its share: the most ports of this range one inside address holds.
        share: u32,
        /// Range low end.
        lo: u16,
        /// Range high end.
        hi: u16,
    },
    /// A published port asked for an external port an inside endpoint holds.
    #[error(
        "{proto} {external}:{port} is in use by masquerade for {inside_addr}:{inside_port} — \
         stop that connection (conntrack flush) or publish another port"
    )]
    InUseBySnat {
        /// Protocol name.
        proto: &'static str,
        /// External address.
        external: Ipv4Addr,
        /// External port.
        port: u16,
        /// The inside address holding it.
        inside_addr: Ipv4Addr,
        /// The inside port holding it.
        inside_port: u16,
    },
    /// The external port is already reserved by a published port.
    #[error("{proto} {external}:{port} is already published — pick another external port")]
    AlreadyReserved {
        /// Protocol name.
        proto: &'static str,
        /// External address.
        external: Ipv4Addr,
        /// External port.
        port: u16,
    },
    /// Unreserve of a port that is not reserved.
    #[error("{proto} {external}:{port} is not a published port")]
    NotReserved {
        /// Protocol name.
        proto: &'static str,
        /// External address.
        external: Ipv4Addr,
        /// External port.
        port: u16,
    },
}

/// An inside endpoint as seen before translation, per external address:
/// the identity a mapping is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MappingKey {
    /// TCP, UDP or ICMP: each has its own port space.
    pub proto: Proto,
    /// Inside address.
    pub inside_addr: Ipv4Addr,
    /// Inside port (ICMP: echo identifier).
    pub inside_port: u16,
    /// The external address the endpoint is masqueraded to.
    pub external: Ipv4Addr,
}

impl MappingKey {
    /// The pool (port range of a protocol and external address) this
    /// endpoint's external port comes from.
    pub fn pool(&self) -> PoolKey {
        PoolKey {
            proto: self.proto,
            external: self.external,
            lo: port_range(self.proto, self.inside_port).0,
        }
    }
}

/// One pool of external ports: a protocol's port range on one external
/// address (TCP and UDP have two, 1–1023 and 1024–65535; ICMP one, 0–65535).
/// Shares and reclaim work per pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolKey {
    /// TCP, UDP or ICMP.
    pub proto: Proto,
    /// The external address.
    pub external: Ipv4Addr,
    /// The range's low end (see [`port_range`]), which names the range.
    pub lo: u16,
}

impl PoolKey {
    /// The range's (low, high) ports, both included.
    pub fn range(&self) -> (u16, u16) {
        port_range(self.proto, self.lo)
    }
}

/// The default SNAT share: one inside address may hold a quarter of each
/// port range (16,128 of the 64,512 high ports). Three containers flooding
/// at once still leave a quarter of the range to everyone else, while one
/// busy client keeps far more concurrent flows than it normally needs.
pub const DEFAULT_SNAT_SHARE_PERCENT: u8 = 25;

/// One live mapping, as listed by [`Mapping::iter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MappingInfo {
    /// The inside endpoint.
    pub key: MappingKey,
    /// The external port it is translated to.
    pub external_port: u16,
    /// How many conntrack entries use it.
    pub refs: u32,
}

/// Who holds an external port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holder {
    Snat {
        inside_addr: Ipv4Addr,
        inside_port: u16,
    },
    Reserved,
}

const WORDS: usize = 65536 / 64;
const SUMMARY: usize = WORDS / 64;
const EVEN_BITS: u64 = 0x5555_5555_5555_5555;

/// The used-port bitmap of one (proto, external address).
#[derive(Debug, Clone)]
struct PortPool {
    used: Box<[u64; WORDS]>,
    /// Bit `w` set when word `w` of `used` has a free bit.
    nonfull: [u64; SUMMARY],
}

impl PortPool {
    fn new() -> PortPool {
        PortPool {
            used: Box::new([0; WORDS]),
            nonfull: [u64::MAX; SUMMARY],
        }
    }

    fn is_used(&self, port: u16) -> bool {
        self.used[usize::from(port) / 64] & (1 << (port % 64)) != 0
    }

    fn set(&mut self, port: u16) {
        let w = usize::from(port) / 64;
        self.used[w] |= 1 << (port % 64);
        if self.used[w] == u64::MAX {
            self.nonfull[w / 64] &= !(1 << (w % 64));
        }
    }

    fn clear(&mut self, port: u16) {
        let w = usize::from(port) / 64;
        self.used[w] &= !(1 << (port % 64));
        self.nonfull[w / 64] |= 1 << (w % 64);
    }

    /// Free bits of word `w` restricted to `lo..=hi` and to `mask`.
    fn free_in_word(&self, w: usize, lo: u16, hi: u16, mask: u64) -> u64 {
        let base = w * 64;
        let mut free = !self.used[w] & mask;
        let (lo, hi) = (usize::from(lo), usize::from(hi));
        if base < lo {
            free &= u64::MAX << (lo - base);
        }
        if base + 63 > hi {
            free &= u64::MAX >> (base + 63 - hi);
        }
        free
    }

    /// Find a free port in `lo..=hi` whose bit is in `mask`, starting at
    /// word `start_w` and wrapping, visiting only non-full words.
    fn find(&self, lo: u16, hi: u16, mask: u64, start_w: usize) -> Option<u16> {
        let (wlo, whi) = (usize::from(lo) / 64, usize::from(hi) / 64);
        let span = whi - wlo + 1;
        let start = wlo + (start_w % span);
        // Two passes over the word index space: [start, whi] then [wlo, start).
        for (a, b) in [(start, whi), (wlo, start.wrapping_sub(1))] {
            if b < a || b == usize::MAX {
                continue;
            }
            let mut w = a;
            while w <= b {
                // Jump over full words using the summary.
                let sw = w / 64;
                let bits = self.nonfull[sw] & (u64::MAX << (w % 64));
                if bits == 0 {
                    w = (sw + 1) * 64;
                    continue;
                }
                w = sw * 64 + bits.trailing_zeros() as usize;
                if w > b {
                    break;
                }
                let free = self.free_in_word(w, lo, hi, mask);
                if free != 0 {
                    return Some((w * 64 + free.trailing_zeros() as usize) as u16);
                }
                w += 1;
            }
        }
        None
    }
}

/// The SNAT mapping table and published-port reservations.
#[derive(Debug, Clone)]
pub struct Mapping {
    by_inside: HashMap<MappingKey, (u16, u32), RandomState>,
    holders: HashMap<(Proto, Ipv4Addr, u16), Holder, RandomState>,
    pools: HashMap<(Proto, Ipv4Addr), PortPool, RandomState>,
    /// Mappings each inside address holds per pool (no entry for zero).
    per_source: HashMap<(PoolKey, Ipv4Addr), u32, RandomState>,
    share_percent: u8,
    rng: u64,
}

impl Default for Mapping {
    fn default() -> Self {
        Mapping::new()
    }
}

/// The external port range an inside port maps into (RFC 4787 REQ-3).
pub fn port_range(proto: Proto, inside_port: u16) -> (u16, u16) {
    match proto {
        Proto::Icmp => (0, u16::MAX),
        _ if inside_port < 1024 => (1, 1023),
        _ => (1024, u16::MAX),
    }
}

impl Mapping {
    /// An empty table; the port search start is seeded from std's random
    /// hasher state so external ports are hard to predict.
    pub fn new() -> Mapping {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(0x5eed);
        Mapping::with_seed(h.finish())
    }

    /// An empty table with a fixed search seed (reproducible tests).
    pub fn with_seed(seed: u64) -> Mapping {
        Mapping {
            by_inside: HashMap::default(),
            holders: HashMap::default(),
            pools: HashMap::default(),
            per_source: HashMap::default(),
            share_percent: DEFAULT_SNAT_SHARE_PERCENT,
            rng: seed | 1,
        }
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64: only spreads the search start, not a security boundary
        // by itself (the bitmap decides availability).
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    /// The share in force, in percent of each range (1–100).
    pub fn share_percent(&self) -> u8 {
        self.share_percent
    }

    /// Set the share (clamped to 1–100; 100 means no per-source limit
    /// below the range itself). Mappings already held are kept.
    pub fn set_share_percent(&mut self, percent: u8) {
        self.share_percent = percent.clamp(1, 100);
    }

    /// The most ports of `pool` one inside address may hold: the share of
    /// the range's size, at least 1.
    pub fn share_limit(&self, pool: PoolKey) -> u32 {
        let (lo, hi) = pool.range();
        let size = u32::from(hi - lo) + 1;
        (size * u32::from(self.share_percent) / 100).max(1)
    }

    /// How many ports of `pool` `inside_addr` holds.
    pub fn source_count(&self, pool: PoolKey, inside_addr: Ipv4Addr) -> u32 {
        self.per_source
            .get(&(pool, inside_addr))
            .copied()
            .unwrap_or(0)
    }

    /// The external port for `key`, taking a reference. Reuses the
    /// endpoint's existing mapping (EIM); otherwise allocates, unless the
    /// inside address already holds its share of the range: the inside
    /// port if free, else a free port of the same range and parity, else of
    /// the same range. Each successful call must be paired with one
    /// [`Mapping::release`].
    pub fn acquire(&mut self, key: MappingKey) -> Result<u16, MappingError> {
        if let Some((port, refs)) = self.by_inside.get_mut(&key) {
            *refs += 1;
            return Ok(*port);
        }
        let (lo, hi) = port_range(key.proto, key.inside_port);
        let pool_key = key.pool();
        let share = self.share_limit(pool_key);
        if self.source_count(pool_key, key.inside_addr) >= share {
            return Err(MappingError::ShareExhausted {
                proto: key.proto.as_str(),
                external: key.external,
                inside_addr: key.inside_addr,
                share,
                lo,
                hi,
            });
        }
        let start = self.next_random() as usize;
        let pool = self
            .pools
            .entry((key.proto, key.external))
            .or_insert_with(PortPool::new);
        let want = key.inside_port;
        let port = if (lo..=hi).contains(&want) && !pool.is_used(want) {
            Some(want)
        } else if key.proto == Proto::Icmp {
            pool.find(lo, hi, u64::MAX, start)
        } else {
            let parity = if want % 2 == 0 { EVEN_BITS } else { !EVEN_BITS };
            pool.find(lo, hi, parity, start)
                .or_else(|| pool.find(lo, hi, u64::MAX, start))
        };
        let Some(port) = port else {
            return Err(MappingError::Exhausted {
                proto: key.proto.as_str(),
                external: key.external,
                lo,
                hi,
            });
        };
        pool.set(port);
        self.holders.insert(
            (key.proto, key.external, port),
            Holder::Snat {
                inside_addr: key.inside_addr,
                inside_port: key.inside_port,
            },
        );
        self.by_inside.insert(key, (port, 1));
        *self
            .per_source
            .entry((pool_key, key.inside_addr))
            .or_insert(0) += 1;
        Ok(port)
    }

    /// Drop one reference taken by [`Mapping::acquire`]; the external port
    /// is freed with the last one. Returns whether the mapping was freed.
    /// Releasing an unknown key is a no-op returning `false`.
    pub fn release(&mut self, key: MappingKey) -> bool {
        let MapEntry::Occupied(mut e) = self.by_inside.entry(key) else {
            return false;
        };
        let (port, refs) = e.get_mut();
        *refs -= 1;
        if *refs > 0 {
            return false;
        }
        let port = *port;
        e.remove();
        self.holders.remove(&(key.proto, key.external, port));
        if let Some(pool) = self.pools.get_mut(&(key.proto, key.external)) {
            pool.clear(port);
        }
        if let MapEntry::Occupied(mut held) = self.per_source.entry((key.pool(), key.inside_addr)) {
            *held.get_mut() -= 1;
            if *held.get() == 0 {
                held.remove();
            }
        }
        true
    }

    /// The current mapping of an inside endpoint, if any: (external port, refs).
    pub fn get(&self, key: &MappingKey) -> Option<(u16, u32)> {
        self.by_inside.get(key).copied()
    }

    /// Reserve an external port for a published port so SNAT never hands it
    /// out. Fails if masquerade holds it or it is already reserved.
    pub fn reserve(
        &mut self,
        proto: Proto,
        external: Ipv4Addr,
        port: u16,
    ) -> Result<(), MappingError> {
        match self.holders.get(&(proto, external, port)) {
            Some(Holder::Reserved) => Err(MappingError::AlreadyReserved {
                proto: proto.as_str(),
                external,
                port,
            }),
            Some(Holder::Snat {
                inside_addr,
                inside_port,
            }) => Err(MappingError::InUseBySnat {
                proto: proto.as_str(),
                external,
                port,
                inside_addr: *inside_addr,
                inside_port: *inside_port,
            }),
            None => {
                self.holders
                    .insert((proto, external, port), Holder::Reserved);
                self.pools
                    .entry((proto, external))
                    .or_insert_with(PortPool::new)
                    .set(port);
                Ok(())
            }
        }
    }

    /// Undo [`Mapping::reserve`].
    pub fn unreserve(
        &mut self,
        proto: Proto,
        external: Ipv4Addr,
        port: u16,
    ) -> Result<(), MappingError> {
        match self.holders.get(&(proto, external, port)) {
            Some(Holder::Reserved) => {
                self.holders.remove(&(proto, external, port));
                if let Some(pool) = self.pools.get_mut(&(proto, external)) {
                    pool.clear(port);
                }
                Ok(())
            }
            _ => Err(MappingError::NotReserved {
                proto: proto.as_str(),
                external,
                port,
            }),
        }
    }

    /// Whether an external port is taken (by a mapping or a reservation).
    pub fn is_taken(&self, proto: Proto, external: Ipv4Addr, port: u16) -> bool {
        self.holders.contains_key(&(proto, external, port))
    }

    /// Number of live mappings.
    pub fn len(&self) -> usize {
        self.by_inside.len()
    }

    /// Whether there are no live mappings.
    pub fn is_empty(&self) -> bool {
        self.by_inside.is_empty()
    }

    /// Live mappings, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = MappingInfo> + '_ {
        self.by_inside
            .iter()
            .map(|(key, &(external_port, refs))| MappingInfo {
                key: *key,
                external_port,
                refs,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const EXT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

    fn key(proto: Proto, last: u8, port: u16) -> MappingKey {
        MappingKey {
            proto,
            inside_addr: Ipv4Addr::new(172, 30, 0, last),
            inside_port: port,
            external: EXT,
        }
    }

    #[test]
    fn endpoint_independent_and_refcounted() {
        let mut m = Mapping::with_seed(1);
        let k = key(Proto::Udp, 2, 40000);
        let p1 = m.acquire(k).unwrap();
        let p2 = m.acquire(k).unwrap();
        assert_eq!(p1, p2);
        assert_eq!(m.get(&k), Some((p1, 2)));
        assert!(!m.release(k));
        assert!(m.release(k));
        assert_eq!(m.get(&k), None);
        assert!(!m.is_taken(Proto::Udp, EXT, p1));
        assert!(!m.release(k));
    }

    #[test]
    fn port_preserved_when_free_and_never_overloaded() {
        let mut m = Mapping::with_seed(1);
        let a = m.acquire(key(Proto::Tcp, 2, 40000)).unwrap();
        assert_eq!(a, 40000);
        let b = m.acquire(key(Proto::Tcp, 3, 40000)).unwrap();
        assert_ne!(b, 40000);
        assert!(b >= 1024);
        assert_eq!(b % 2, 0, "parity kept");
        // Protocols have separate spaces.
        assert_eq!(m.acquire(key(Proto::Udp, 3, 40000)).unwrap(), 40000);
    }

    #[test]
    fn ranges_and_parity_kept() {
        let mut m = Mapping::with_seed(7);
        for i in 0..200u16 {
            let p = m
                .acquire(key(Proto::Udp, (i % 250) as u8, 53 + (i / 250)))
                .unwrap();
            if i == 0 {
                assert_eq!(p, 53);
            }
            assert!((1..=1023).contains(&p), "{p}");
            assert_eq!(p % 2, 1);
        }
        let p = m.acquire(key(Proto::Udp, 9, 0)).unwrap();
        assert!(
            (1..=1023).contains(&p),
            "inside port 0 maps into 1-1023, got {p}"
        );
        for i in 0..100u8 {
            let p = m.acquire(key(Proto::Tcp, i, 50001)).unwrap();
            assert!(p >= 1024);
            assert_eq!(p % 2, 1);
        }
    }

    #[test]
    fn parity_falls_back_when_only_other_parity_left() {
        let mut m = Mapping::with_seed(3);
        // Fill all even low ports with odd-port owners can't happen; take
        // every even low port instead, then ask for an even one.
        for p in (2..=1022u16).step_by(2) {
            m.reserve(Proto::Udp, EXT, p).unwrap();
        }
        let got = m.acquire(key(Proto::Udp, 2, 100)).unwrap();
        assert_eq!(got % 2, 1);
    }

    #[test]
    fn icmp_identifiers_use_the_whole_space() {
        let mut m = Mapping::with_seed(3);
        assert_eq!(m.acquire(key(Proto::Icmp, 2, 0)).unwrap(), 0);
        let other = m.acquire(key(Proto::Icmp, 3, 0)).unwrap();
        assert_ne!(other, 0);
        assert_eq!(m.acquire(key(Proto::Icmp, 4, 7)).unwrap(), 7);
    }

    #[test]
    fn exhaustion_is_a_clear_error() {
        let mut m = Mapping::with_seed(3);
        for i in 0..1023u16 {
            let k = MappingKey {
                inside_addr: Ipv4Addr::from(0x0a00_0000 + u32::from(i)),
                ..key(Proto::Tcp, 0, 22)
            };
            m.acquire(k).unwrap();
        }
        let err = m.acquire(key(Proto::Tcp, 99, 22)).unwrap_err();
        assert!(matches!(
            err,
            MappingError::Exhausted {
                lo: 1,
                hi: 1023,
                ..
            }
        ));
        assert!(err.to_string().contains("all in use"));
        // The high range is unaffected.
        assert_eq!(m.acquire(key(Proto::Tcp, 99, 2222)).unwrap(), 2222);
    }

    #[test]
    fn nearly_full_range_still_allocates() {
        let mut m = Mapping::with_seed(11);
        // Leave exactly one free port in the high range.
        for p in 1024..=65535u16 {
            if p != 60001 {
                m.reserve(Proto::Udp, EXT, p).unwrap();
            }
        }
        assert_eq!(m.acquire(key(Proto::Udp, 2, 5000)).unwrap(), 60001);
        assert!(m.acquire(key(Proto::Udp, 3, 5000)).is_err());
    }

    #[test]
    fn published_ports_are_reserved() {
        let mut m = Mapping::with_seed(5);
        m.reserve(Proto::Tcp, EXT, 8080).unwrap();
        assert!(matches!(
            m.reserve(Proto::Tcp, EXT, 8080),
            Err(MappingError::AlreadyReserved { .. })
        ));
        let p = m.acquire(key(Proto::Tcp, 2, 8080)).unwrap();
        assert_ne!(p, 8080, "SNAT never hands out a published port");
        let err = m.reserve(Proto::Tcp, EXT, p).unwrap_err();
        assert!(matches!(
            err,
            MappingError::InUseBySnat {
                inside_port: 8080,
                ..
            }
        ));
        m.unreserve(Proto::Tcp, EXT, 8080).unwrap();
        assert!(m.unreserve(Proto::Tcp, EXT, 8080).is_err());
        assert_eq!(m.acquire(key(Proto::Tcp, 3, 8080)).unwrap(), 8080);
    }

    #[test]
    fn a_source_holds_at_most_its_share_of_each_range() {
        let mut m = Mapping::with_seed(8);
        m.set_share_percent(1);
        let high = key(Proto::Udp, 2, 1024).pool();
        let low = key(Proto::Udp, 2, 53).pool();
        assert_eq!((m.share_limit(high), m.share_limit(low)), (645, 10));
        assert_eq!(m.share_limit(key(Proto::Icmp, 2, 0).pool()), 655);
        for p in 0..645u16 {
            m.acquire(key(Proto::Udp, 2, 2000 + p)).unwrap();
        }
        assert_eq!(m.source_count(high, Ipv4Addr::new(172, 30, 0, 2)), 645);
        let err = m.acquire(key(Proto::Udp, 2, 5000)).unwrap_err();
        assert_eq!(
            err,
            MappingError::ShareExhausted {
                proto: "udp",
                external: EXT,
                inside_addr: Ipv4Addr::new(172, 30, 0, 2),
                share: 645,
                lo: 1024,
                hi: 65535,
            }
        );
        assert!(err.to_string().contains("--snat-share"), "{err}");
        // A mapping it holds is still shared by its new flows (EIM).
        assert_eq!(m.acquire(key(Proto::Udp, 2, 2000)).unwrap(), 2000);
        // Its other ranges and protocols, and every other source, are not
        // affected.
        assert_eq!(m.acquire(key(Proto::Udp, 2, 53)).unwrap(), 53);
        assert_eq!(m.acquire(key(Proto::Tcp, 2, 5000)).unwrap(), 5000);
        assert_eq!(m.acquire(key(Proto::Udp, 3, 5000)).unwrap(), 5000);
        // Freeing one of its mappings makes room for one more.
        m.release(key(Proto::Udp, 2, 2001));
        assert_eq!(m.acquire(key(Proto::Udp, 2, 5002)).unwrap(), 5002);
        assert!(m.acquire(key(Proto::Udp, 2, 5004)).is_err());
        // The whole range is allowed at 100 %.
        m.set_share_percent(100);
        assert_eq!(m.share_limit(high), 64_512);
        m.set_share_percent(0);
        assert_eq!(m.share_percent(), 1, "clamped");
    }

    proptest! {
        /// No two live mappings (or reservations) share an external
        /// endpoint, EIM holds, and ranges are respected, under any mix of
        /// acquire and release.
        #[test]
        fn no_overloading(ops in proptest::collection::vec((0u8..8, 0u16..4, any::<bool>(), any::<bool>()), 1..300)) {
            let mut m = Mapping::with_seed(99);
            let mut held: Vec<MappingKey> = Vec::new();
            for (host, port_sel, udp, release) in ops {
                let proto = if udp { Proto::Udp } else { Proto::Tcp };
                let port = [80, 1000, 40000, 40001][usize::from(port_sel)];
                let k = key(proto, host, port);
                if release {
                    if let Some(i) = held.iter().position(|h| *h == k) {
                        held.swap_remove(i);
                        m.release(k);
                    }
                } else {
                    let before = m.get(&k).map(|g| g.0);
                    let p = m.acquire(k).unwrap();
                    if let Some(b) = before { prop_assert_eq!(b, p); }
                    let (lo, hi) = port_range(proto, port);
                    prop_assert!((lo..=hi).contains(&p));
                    held.push(k);
                }
                let mut seen = std::collections::HashSet::new();
                for info in m.iter() {
                    prop_assert!(seen.insert((info.key.proto, info.key.external, info.external_port)));
                    let n = held.iter().filter(|h| **h == info.key).count() as u32;
                    prop_assert_eq!(info.refs, n);
                }
                prop_assert_eq!(m.len(), held.iter().collect::<std::collections::HashSet<_>>().len());
                let mut per_source = std::collections::HashMap::new();
                for info in m.iter() {
                    *per_source.entry((info.key.pool(), info.key.inside_addr)).or_insert(0u32) += 1;
                }
                prop_assert_eq!(&per_source, &m.per_source.iter().map(|(k, v)| (*k, *v)).collect());
            }
        }
    }
}
