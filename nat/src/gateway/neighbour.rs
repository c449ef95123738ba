//! The gateway's neighbour (ARP) cache and the packets waiting for a
//! neighbour to be resolved, per [`Side`].
//!
//! Contract: owns (side, IPv4) → MAC entries with an expiry, and per next
//! hop a bounded queue of whole Ethernet frames waiting for its MAC, each
//! with its offload state ([`Held`]: a waiting GSO frame or partial checksum
//! leaves as it came, nothing is finished or guessed back). It never
//! builds or sends frames itself: the gateway asks it what to (re)send and
//! what to release. An entry in use is refreshed before it expires (see
//! [`Neighbours::lookup_in_use`]), so a long flow never stalls while its
//! next hop is resolved again. Keys are attacker-chosen (any host can send ARP), so the
//! maps use std's keyed `RandomState`, and both the cache and the queues are
//! bounded.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::net::Ipv4Addr;

use yard_wire::offload::Offload;

use super::Side;

/// An entry not refreshed by ARP for this long is forgotten.
pub(super) const NEIGHBOUR_TTL_MS: u64 = 60_000;
/// An entry in use this close to expiry is asked for again (an ARP
/// request) while it keeps being used, as Linux probes a stale neighbour.
pub(super) const NEIGHBOUR_REFRESH_MS: u64 = 15_000;
/// Most frames held per unresolved next hop.
pub(super) const MAX_HELD_PER_HOP: usize = 8;
/// Most next hops being resolved at once.
pub(super) const MAX_PENDING_HOPS: usize = 256;
/// Interval between ARP requests for one next hop.
pub(super) const ARP_RETRY_MS: u64 = 1_000;
/// ARP requests sent after the first before giving up.
pub(super) const ARP_RETRIES: u8 = 3;
/// Most cached neighbours (all sides); learning beyond it is refused.
const MAX_NEIGHBOURS: usize = 65_536;

#[derive(Debug, Clone, Copy)]
struct Neighbour {
    mac: [u8; 6],
    expires_at: u64,
    /// When a refresh request was last sent for this entry.
    refreshed_at: Option<u64>,
}

/// A frame waiting for its next hop's MAC: the whole Ethernet frame (source
/// MAC already set) and its offload state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Held {
    /// The frame.
    pub(super) bytes: Vec<u8>,
    /// What its virtio-net header said, kept for when it leaves.
    pub(super) offload: Offload,
}

#[derive(Debug, Clone)]
struct Pending {
    frames: Vec<Held>,
    /// ARP requests sent so far.
    requests: u8,
    last_request: u64,
}

/// Result of [`Neighbours::hold`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hold {
    /// Queued; `new_hop` when this next hop was not being resolved yet (the
    /// caller sends the first ARP request).
    Queued {
        /// First frame for this next hop.
        new_hop: bool,
    },
    /// Over a bound; the frame was not kept.
    Full,
}

/// What [`Neighbours::due`] found.
#[derive(Debug, Default)]
pub(super) struct Due {
    /// Next hops to send another ARP request to.
    pub(super) retry: Vec<(Side, Ipv4Addr)>,
    /// Next hops given up on, with the frames that waited for them.
    pub(super) failed: Vec<(Side, Ipv4Addr, Vec<Held>)>,
}

/// Neighbour cache and resolution queues.
#[derive(Debug, Clone)]
pub(super) struct Neighbours {
    cache: HashMap<(Side, Ipv4Addr), Neighbour, RandomState>,
    pending: HashMap<(Side, Ipv4Addr), Pending, RandomState>,
}

impl Neighbours {
    pub(super) fn new() -> Neighbours {
        Neighbours {
            cache: HashMap::with_capacity_and_hasher(256, RandomState::new()),
            pending: HashMap::with_capacity_and_hasher(16, RandomState::new()),
        }
    }

    /// The MAC of `ip` on `side`, if known and fresh.
    #[cfg(test)]
    pub(super) fn lookup(&self, side: Side, ip: Ipv4Addr, now: u64) -> Option<[u8; 6]> {
        self.cache
            .get(&(side, ip))
            .filter(|n| n.expires_at > now)
            .map(|n| n.mac)
    }

    /// The MAC of `ip` on `side` if known and fresh, for a packet about to
    /// be sent to `ip`; with it, true when the entry nears expiry and it is time to ask for it
    /// again (at most once per ARP retry interval). The entry stays in use
    /// until it expires; an answer renews it.
    pub(super) fn lookup_in_use(
        &mut self,
        side: Side,
        ip: Ipv4Addr,
        now: u64,
    ) -> Option<([u8; 6], bool)> {
        let n = self
            .cache
            .get_mut(&(side, ip))
            .filter(|n| n.expires_at > now)?;
        let near_expiry = n.expires_at - now <= NEIGHBOUR_REFRESH_MS;
        let asked_lately = n.refreshed_at.is_some_and(|t| now < t + ARP_RETRY_MS);
        let refresh = near_expiry && !asked_lately;
        if refresh {
            n.refreshed_at = Some(now);
        }
        Some((n.mac, refresh))
    }

    /// Whether `ip` on `side` has a cache entry (fresh or not).
    pub(super) fn is_known(&self, side: Side, ip: Ipv4Addr) -> bool {
        self.cache.contains_key(&(side, ip))
    }

    /// Records `ip` at `mac` on `side`; returns the frames that were waiting
    /// for it (their destination MAC still to be filled in).
    pub(super) fn learn(&mut self, side: Side, ip: Ipv4Addr, mac: [u8; 6], now: u64) -> Vec<Held> {
        let expires_at = now + NEIGHBOUR_TTL_MS;
        if self.cache.len() < MAX_NEIGHBOURS || self.cache.contains_key(&(side, ip)) {
            let entry = Neighbour {
                mac,
                expires_at,
                refreshed_at: None,
            };
            self.cache.insert((side, ip), entry);
        }
        self.pending
            .remove(&(side, ip))
            .map(|p| p.frames)
            .unwrap_or_default()
    }

    /// Queues a copy of `frame`, with its offload state, for next hop `ip`
    /// on `side`.
    pub(super) fn hold(
        &mut self,
        side: Side,
        ip: Ipv4Addr,
        frame: &[u8],
        offload: Offload,
        now: u64,
    ) -> Hold {
        let held = || Held {
            bytes: frame.to_vec(),
            offload,
        };
        if let Some(p) = self.pending.get_mut(&(side, ip)) {
            if p.frames.len() >= MAX_HELD_PER_HOP {
                return Hold::Full;
            }
            p.frames.push(held());
            return Hold::Queued { new_hop: false };
        }
        if self.pending.len() >= MAX_PENDING_HOPS {
            return Hold::Full;
        }
        self.pending.insert(
            (side, ip),
            Pending {
                frames: vec![held()],
                requests: 1,
                last_request: now,
            },
        );
        Hold::Queued { new_hop: true }
    }

    /// Next hops due for another ARP request and those given up on, sorted
    /// (so the outbox order does not depend on hashing). Forgets stale cache
    /// entries on the way.
    pub(super) fn due(&mut self, now: u64) -> Due {
        self.cache.retain(|_, n| n.expires_at > now);
        let mut due = Due::default();
        let mut failed = Vec::new();
        for (&hop, p) in self.pending.iter_mut() {
            if now < p.last_request + ARP_RETRY_MS {
                continue;
            }
            if p.requests <= ARP_RETRIES {
                p.requests += 1;
                p.last_request = now;
                due.retry.push(hop);
            } else {
                failed.push(hop);
            }
        }
        failed.sort();
        for hop in failed {
            if let Some(p) = self.pending.remove(&hop) {
                due.failed.push((hop.0, hop.1, p.frames));
            }
        }
        due.retry.sort();
        due
    }

    /// Forgets everything about `side`.
    pub(super) fn forget_side(&mut self, side: Side) {
        self.cache.retain(|k, _| k.0 != side);
        self.pending.retain(|k, _| k.0 != side);
    }

    /// Forgets `ip` on every side; returns whether anything was known.
    pub(super) fn forget_addr(&mut self, ip: Ipv4Addr) -> bool {
        let before = self.cache.len() + self.pending.len();
        self.cache.retain(|k, _| k.1 != ip);
        self.pending.retain(|k, _| k.1 != ip);
        before != self.cache.len() + self.pending.len()
    }

    /// Number of next hops being resolved.
    #[cfg(test)]
    pub(super) fn pending_hops(&self) -> usize {
        self.pending.len()
    }
}
