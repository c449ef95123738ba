//! Connection tracking: one table of connections, each with both directions'
//! tuples, the NAT applied, the protocol state, counters and an expiry.
//!
//! Contract: the table works on [`FlowKey`]s and small per-packet summaries
//! ([`Packet`]), never on packet bytes; time is a monotonic millisecond
//! counter the caller passes in; nothing here does I/O, reads a clock or
//! spawns a thread. It owns the SNAT [`Mapping`](crate::mapping::Mapping) so that every entry that
//! dies — expired, evicted, removed or flushed — releases its mapping
//! reference, and a mapping can never outlive or leak from its entries.
//!
//! Terms: *original* is the direction of the packet that created the entry,
//! as its sender sent it (before translation); *reply* is the other
//! direction as the peer will send it (after translation). *Assured* means a
//! reply was seen (UDP, ICMP) or the TCP handshake completed; entries not yet
//! assured are "unreplied" for eviction. *Zone* separates overlapping address
//! spaces (one per network). *Ingress* is where a direction's packets come
//! in (a network or the uplink, as the caller numbers them): the table
//! records it per direction, the caller checks it.
//!
//! Layout and cost:
//! - Entries live in a slab (`Vec` of slots with a free list and a generation
//!   per slot, so a [`Handle`] to a dead entry is detected). A keyed
//!   (SipHash, std `RandomState`: keys are attacker-chosen) hash map sends
//!   each direction's (zone, key) to its slot: two index entries per
//!   connection, so a lookup from either side is one hash probe.
//! - Expiry: a timer wheel of 4096 one-second buckets; each entry sits in
//!   exactly one bucket (with a back-pointer, so removal is O(1)). A touch
//!   that extends the expiry does not move the entry; when its bucket comes
//!   due the entry is re-filed if still alive, so an active connection costs
//!   one re-file per timeout period, not one per packet. A touch that
//!   shortens the expiry (e.g. into TIME_WAIT) moves it at once. Expiries
//!   beyond the wheel's span (68 min) are parked at the far end and re-filed
//!   then. [`Conntrack::expire`] processes due buckets with a work budget
//!   per call (default 1024 entries), so no call scans the whole table;
//!   lookups treat an expired entry as absent even before it is swept
//!   (lazy expiry), so a late sweep never resurrects a connection.
//! - Limit (early drop, as Linux's `early_drop`): at `max_entries` an insert
//!   evicts the oldest unreplied entry rather than refusing the new one, or
//!   if none is left, the oldest assured one (by the time it became
//!   assured). Two intrusive lists (unreplied, assured) make this O(1).
//! - Fair SNAT: the [`Mapping`](crate::mapping::Mapping) holds each inside
//!   address to its share of a port pool. When a source is at its share, or
//!   the pool is full, the insert first reclaims an unanswered mapping — the
//!   source's oldest, or the pool's oldest — by removing the entry that
//!   holds it, and only then refuses. Candidates are the entries with SNAT
//!   that have seen no reply (UDP and ICMP never answered, TCP `SYN_SENT`
//!   or picked up mid-stream) whose mapping no other entry shares: an
//!   answered mapping is never taken. Two more intrusive lists per entry,
//!   one per (pool, source) and one per pool, keep them in age order; a
//!   reclaim looks at a bounded number of them (see `table/reclaim.rs`).
//! - Removal by predicate, flush and listing walk the slab: they are control
//!   operations, O(table). Listing goes a bounded page at a time
//!   ([`Conntrack::page`]).
//!
//! ICMP errors must never create or refresh entries: use
//! [`Conntrack::lookup`] (no side effects) for the flow an error quotes and
//! [`Conntrack::touch`] only for packets of the flow itself.

mod listing;
mod table;
pub mod tcp;
mod timeouts;
mod wheel;

#[cfg(test)]
mod fairness_tests;
#[cfg(test)]
mod tests;

use std::net::Ipv4Addr;

pub use listing::{position, Page, Position};
pub use table::{Conntrack, Iter};
pub use timeouts::Timeouts;

use crate::flow::{FlowKey, Proto};
use crate::mapping::{MappingError, MappingKey};
use tcp::{Invalid, TcpSegment, TcpState, TcpTracker};

/// A conntrack zone (one per network): the same tuple in two zones is two
/// connections.
pub type Zone = u16;

/// Direction of a packet relative to the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    /// Same direction as the packet that created the entry.
    Original,
    /// The answering direction.
    Reply,
}

impl Dir {
    /// 0 for original, 1 for reply (index into per-direction arrays).
    pub fn index(self) -> usize {
        match self {
            Dir::Original => 0,
            Dir::Reply => 1,
        }
    }

    /// The opposite direction.
    pub fn other(self) -> Dir {
        match self {
            Dir::Original => Dir::Reply,
            Dir::Reply => Dir::Original,
        }
    }
}

/// Identifier of a published-port (DNAT) rule, as the control plane numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId(pub u32);

/// Identifier of an inside switch port (a container's interface).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortId(pub u32);

/// Where a direction's packets enter, as the caller numbers its ways in
/// (the gateway: a network's index, or the uplink). Conntrack only records
/// it on the entry ([`Entry::ingress`]); the caller compares it with where a
/// packet came from before it lets the packet ride the entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Ingress(pub u32);

/// The translation recorded on an entry. Original-direction packets get
/// their source rewritten to `snat` and their destination to `dnat`; reply
/// packets get the inverse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Nat {
    /// The (address, port) the original source became (masquerade).
    pub snat: Option<(Ipv4Addr, u16)>,
    /// The (address, port) the original destination became (published port).
    pub dnat: Option<(Ipv4Addr, u16)>,
}

/// What a new connection needs: its first packet's key and the translation
/// the rules chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewConn {
    /// Zone (network) of the connection.
    pub zone: Zone,
    /// The first packet's key, as its sender sent it.
    pub original: FlowKey,
    /// Masquerade to this external address; the port comes from the
    /// [`Mapping`](crate::mapping::Mapping) (endpoint-independent).
    pub snat: Option<Ipv4Addr>,
    /// Rewrite the destination to this inside (address, port). For ICMP only
    /// the address is used.
    pub dnat: Option<(Ipv4Addr, u16)>,
    /// The published-port rule that chose `dnat`, if any.
    pub rule: Option<RuleId>,
    /// The inside switch port the connection belongs to, if known.
    pub port: Option<PortId>,
    /// Where each direction's packets enter, indexed by [`Dir::index`]:
    /// the first packet's way in, and the way the reply will come in.
    pub ingress: [Ingress; 2],
}

impl NewConn {
    /// A connection with no translation in zone 0, both directions entering
    /// at `Ingress(0)`.
    pub fn new(original: FlowKey) -> NewConn {
        NewConn {
            zone: 0,
            original,
            snat: None,
            dnat: None,
            rule: None,
            port: None,
            ingress: [Ingress::default(); 2],
        }
    }
}

/// The per-packet summary conntrack needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Packet {
    /// IP total length, for the byte counters.
    pub bytes: u32,
    /// TCP header summary; required for TCP flows, ignored otherwise.
    pub tcp: Option<TcpSegment>,
}

impl Packet {
    /// A UDP or ICMP packet of `bytes` bytes.
    pub fn other(bytes: u32) -> Packet {
        Packet { bytes, tcp: None }
    }

    /// A TCP segment of `bytes` bytes.
    pub fn tcp(bytes: u32, seg: TcpSegment) -> Packet {
        Packet {
            bytes,
            tcp: Some(seg),
        }
    }
}

/// Protocol-specific state of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtoState {
    /// TCP with its state machine.
    Tcp(TcpTracker),
    /// UDP (state is just whether a reply was seen).
    Udp,
    /// ICMP echo.
    Icmp,
}

/// Per-direction counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Packets seen in this direction, fragments included.
    pub packets: u64,
    /// Bytes (IP total length).
    pub bytes: u64,
}

/// Intrusive bookkeeping of the table (lists and wheel), private to it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Links {
    pub(crate) prev: u32,
    pub(crate) next: u32,
    /// Absolute wheel tick the entry is filed at; `u64::MAX` when not filed.
    pub(crate) wheel_tick: u64,
    /// Position inside its wheel bucket.
    pub(crate) wheel_pos: u32,
    /// Neighbours in its source's and its pool's lists of reclaimable
    /// (SNAT, unanswered) entries, indexed by the table's chain numbers.
    pub(crate) reclaim: [Chain; 2],
    /// Listed in the reclaim lists: has a mapping and has seen no reply.
    pub(crate) reclaimable: bool,
}

/// Previous and next slot in one intrusive list.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Chain {
    pub(crate) prev: u32,
    pub(crate) next: u32,
}

/// One tracked connection.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The zone the connection lives in: tuples only clash within a zone.
    pub zone: Zone,
    /// Original direction, as its sender sent it (before translation).
    pub original: FlowKey,
    /// Reply direction, as the peer will send it (after translation).
    pub reply: FlowKey,
    /// The translation applied.
    pub nat: Nat,
    /// Protocol state.
    pub state: ProtoState,
    /// Monotonic ms at which the entry expires unless refreshed.
    pub expires_at: u64,
    /// Monotonic ms of creation.
    pub created_at: u64,
    /// Counters, indexed by [`Dir::index`].
    pub counters: [Counters; 2],
    /// A reply-direction packet was seen.
    pub seen_reply: bool,
    /// Assured: replied (UDP/ICMP) or handshake completed (TCP). Assured
    /// entries are evicted only after all unreplied ones.
    pub assured: bool,
    /// The published-port rule the entry depends on.
    pub rule: Option<RuleId>,
    /// The inside switch port the entry depends on.
    pub port: Option<PortId>,
    /// The inside address the entry depends on: the DNAT target if any,
    /// otherwise the original source.
    pub inside: Ipv4Addr,
    /// Where each direction's packets enter ([`NewConn::ingress`]), indexed
    /// by [`Dir::index`]. A packet that matches a direction's tuple but
    /// came in another way does not belong to the connection.
    pub ingress: [Ingress; 2],
    pub(crate) snat_key: Option<MappingKey>,
    pub(crate) links: Links,
}

impl Entry {
    /// The connection's protocol (both directions share it).
    pub fn proto(&self) -> Proto {
        self.original.proto
    }

    /// The state name as `conntrack ls` shows it: the TCP state, or for UDP
    /// and ICMP `UNREPLIED` / `REPLIED`.
    pub fn state_name(&self) -> &'static str {
        match self.state {
            ProtoState::Tcp(t) => t.state().as_str(),
            _ if self.seen_reply => "REPLIED",
            _ => "UNREPLIED",
        }
    }

    /// The TCP state, for TCP entries.
    pub fn tcp_state(&self) -> Option<TcpState> {
        match self.state {
            ProtoState::Tcp(t) => Some(t.state()),
            _ => None,
        }
    }

    /// Milliseconds until expiry at `now` (0 if due).
    pub fn remaining(&self, now: u64) -> u64 {
        self.expires_at.saturating_sub(now)
    }

    /// Whether the entry is expired at `now`.
    pub fn is_expired(&self, now: u64) -> bool {
        self.expires_at <= now
    }

    fn timeout(&self, t: &Timeouts) -> u64 {
        match self.state {
            // Picked up mid-stream and not answered yet: it may be a stray
            // ACK of a connection long gone, so it gets SYN_SENT's time.
            ProtoState::Tcp(tr) if tr.state() == TcpState::Established && !self.seen_reply => {
                t.tcp_syn_sent
            }
            ProtoState::Tcp(tr) => t.tcp(tr.state()),
            ProtoState::Udp if self.seen_reply => t.udp_replied,
            ProtoState::Udp => t.udp_unreplied,
            ProtoState::Icmp => t.icmp,
        }
    }
}

/// A reference to an entry, valid until the entry dies (then lookups by it
/// return `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Handle {
    slot: u32,
    gen: u32,
}

/// What [`Conntrack::touch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Touch {
    /// The packet's direction.
    pub dir: Dir,
    /// The TCP state after the packet (TCP only).
    pub tcp_state: Option<TcpState>,
    /// Set when the TCP tracker rejected the packet: state and timer were
    /// left alone (counters still count it). The caller decides whether to
    /// forward it.
    pub invalid: Option<Invalid>,
}

/// Table counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Live entries (including expired ones not yet swept).
    pub entries: usize,
    /// Entries ever inserted.
    pub inserted: u64,
    /// Unreplied entries evicted at the limit.
    pub evicted_unreplied: u64,
    /// Assured entries evicted at the limit (no unreplied one was left).
    pub evicted_other: u64,
    /// Entries removed because their timer ran out.
    pub expired: u64,
    /// Entries removed by predicate or flush.
    pub removed: u64,
    /// Inserts refused (existing key, clash, not a SYN, no port, limit 0).
    pub refused: u64,
    /// Unanswered mappings taken back from a source at its SNAT share, for
    /// that source's new flow.
    pub snat_share_reclaimed: u64,
    /// Unanswered mappings taken back because a port pool was full, for
    /// any source's new flow.
    pub snat_pool_reclaimed: u64,
    /// New flows refused: the source held its share and none of it was
    /// reclaimable.
    pub snat_share_exhausted: u64,
    /// New flows refused: the pool was full and none of it was reclaimable.
    pub snat_pool_exhausted: u64,
}

/// Selects entries for [`Conntrack::flush`]; `None` fields match anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Filter {
    /// Only this zone.
    pub zone: Option<Zone>,
    /// Only this protocol.
    pub proto: Option<Proto>,
    /// Only entries with this address in either tuple (either end).
    pub addr: Option<Ipv4Addr>,
    /// Only entries with this port in either tuple (either end).
    pub port: Option<u16>,
}

impl Filter {
    /// Whether `e` is selected.
    pub fn matches(&self, e: &Entry) -> bool {
        let keys = [e.original, e.reply];
        self.zone.is_none_or(|z| z == e.zone)
            && self.proto.is_none_or(|p| p == e.proto())
            && self
                .addr
                .is_none_or(|a| keys.iter().any(|k| k.src == a || k.dst == a))
            && self
                .port
                .is_none_or(|p| keys.iter().any(|k| k.sport == p || k.dport == p))
    }
}

/// Table configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Hard limit on entries (default 262144).
    pub max_entries: usize,
    /// Idle timeouts.
    pub timeouts: Timeouts,
    /// Most entries [`Conntrack::expire`] examines per call (default 1024).
    pub expire_budget: usize,
    /// The SNAT share: the percentage of each port pool one inside address
    /// may hold (1–100, default
    /// [`DEFAULT_SNAT_SHARE_PERCENT`](crate::mapping::DEFAULT_SNAT_SHARE_PERCENT)).
    pub snat_share_percent: u8,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_entries: 262_144,
            timeouts: Timeouts::default(),
            expire_budget: 1024,
            snat_share_percent: crate::mapping::DEFAULT_SNAT_SHARE_PERCENT,
        }
    }
}

/// Why an insert or touch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConntrackError {
    /// The original key is already tracked (look it up instead).
    #[error("{key} is already tracked in zone {zone}")]
    Exists {
        /// The zone that already tracks it.
        zone: Zone,
        /// The connection's original-direction tuple.
        key: FlowKey,
    },
    /// The reply key the translation produces belongs to another entry.
    #[error(
        "reply tuple {reply} of {original} clashes with an existing connection in zone {zone}"
    )]
    Clash {
        /// The zone the clash is in.
        zone: Zone,
        /// The new original key.
        original: FlowKey,
        /// The clashing reply key.
        reply: FlowKey,
    },
    /// A TCP flow must start with a SYN, or a bare ACK that picks it up
    /// mid-stream (and a TCP packet must carry its segment).
    #[error("{key}: TCP connection does not start with a SYN (or a bare ACK); not tracked")]
    NotSyn {
        /// The connection's original-direction tuple.
        key: FlowKey,
    },
    /// The table limit is 0.
    #[error("conntrack table limit is 0 — raise max_entries")]
    Full,
    /// No external port for the masquerade.
    #[error(transparent)]
    Mapping(#[from] MappingError),
    /// The handle's entry is gone (expired, evicted or removed).
    #[error("conntrack entry is gone (expired, evicted or removed)")]
    Stale,
}
