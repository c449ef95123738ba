//! The L3 gateway: what sits behind each network's gateway address and the
//! uplink's address — ARP, ICMP echo, routing between networks and the
//! uplink, connection tracking, SNAT (masquerade) and DNAT (published ports).
//!
//! Pure, like the rest of the crate: the switch hands it an Ethernet frame
//! that arrived on a [`Side`] (a network, for frames to the gateway MAC and
//! broadcast ARP; or the uplink), its offload state and the time; the gateway
//! rewrites the frame in place and says where it goes ([`Action`]). Frames it
//! makes besides (ARP requests, ICMP errors, packets released after ARP
//! resolution, these with the offload state they came with) wait in an outbox
//! the switch drains with [`Gateway::next_outbox`].
//!
//! Fast path and slow path: a packet of a tracked connection to a resolved
//! neighbour is one conntrack lookup, an in-place rewrite with incremental
//! checksums, a TTL decrement and an Ethernet header rewrite — no allocation.
//! New connections (rule walk, port allocation, insert), ARP resolution, ICMP
//! errors and fragments before their first fragment take the slow path and
//! may allocate.
//!
//! Isolation: every IPv4 packet's source is checked against the side it
//! came from before anything else looks at it (unicast reverse-path
//! filtering, uRPF): from a network it must be a host address of that
//! network's subnet other than the gateway's; from the uplink it must not
//! be one of the gateway's addresses or lie in a network's subnet; from
//! anywhere it must not be 0.0.0.0/8, loopback, multicast or the limited
//! broadcast (`gw-bad-source`). Each conntrack entry records the side each
//! direction comes in from, and a packet rides an entry only in the
//! direction of the side it came from and only out to the side the other
//! direction comes from (`gw-wrong-side`). On a `--no-icc` network the
//! gateway routes nothing from one of its hosts to another, hairpin
//! through a published port included (`gw-icc`); a host reaching itself
//! through its own published port is not two hosts and is let through.
//!
//! Terms: *side* is where a frame comes from or goes to (a network or the
//! uplink); *next hop* is the address whose MAC a frame is sent to (the
//! destination itself, or the uplink's gateway); *hairpin* is a container
//! reaching a published port through the host address. All connections live
//! in conntrack zone 0: network subnets and the uplink subnet do not
//! overlap, and a connection's directions are told apart by their tuples
//! and the sides recorded on the entry.

mod config;
mod firewall;
mod forward;
mod host;
mod icmp_errors;
mod neighbour;
mod policy;
mod trace;

#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use crate::conntrack::{self, Conntrack, Ingress, RuleId};
use crate::flow::{FlowKey, Proto};
use crate::frag::{FragCache, FragConfig};
use crate::mapping::MappingError;
use crate::rules::RuleSet;
use yard_wire::cidr::Ipv4Cidr;
use yard_wire::icmp::IcmpErrorKind;
use yard_wire::offload::Offload;

pub use icmp_errors::{IcmpErrors, IcmpRefused};
pub use trace::{GatewayTrace, Ipv4Facts};

use forward::Xlate;
use neighbour::Neighbours;

/// Where a frame comes from or goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    /// A network, by the switch's network index.
    Net(u16),
    /// The uplink.
    Uplink,
    /// yardd's own host sockets: the relay of a host uplink
    /// ([`Gateway::set_host_uplink`]). Packets to it are IPv4 packets for
    /// the relay; packets from it come in through
    /// [`Gateway::handle_from_host`].
    Host,
}

impl Side {
    /// The side as conntrack records a direction's way in: a network by
    /// its index, the uplink above every index.
    fn ingress(self) -> Ingress {
        match self {
            Side::Net(id) => Ingress(u32::from(id)),
            Side::Uplink => Ingress(u32::MAX),
            Side::Host => Ingress(u32::MAX - 1),
        }
    }
}

/// A network the gateway serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// The switch's index of the network.
    pub id: u16,
    /// Subnet address and prefix length.
    pub subnet: (Ipv4Addr, u8),
    /// The gateway's address in the subnet.
    pub gateway: Ipv4Addr,
    /// The gateway's MAC address in this network.
    pub mac: [u8; 6],
    /// Masquerade traffic leaving through the uplink.
    pub masquerade: bool,
    /// Never route to or from the uplink (`--internal`).
    pub internal: bool,
    /// Whether the network's hosts may reach each other through the
    /// gateway; false (`--no-icc`) refuses routing from one of its hosts
    /// to another, as the bridge refuses switching between its ports.
    pub icc: bool,
    /// The address that stands for the host's loopback on this network
    /// (`--host-loopback`): with the host uplink, a flow to it is relayed
    /// to 127.0.0.1, and a published connection from the host's loopback
    /// comes from it. `None`: off (the gateway's address stands in for
    /// such a client).
    pub host_loopback: Option<Ipv4Addr>,
}

/// The uplink: the outside-facing interface with its own address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UplinkConfig {
    /// Address and prefix length.
    pub addr: (Ipv4Addr, u8),
    /// The uplink's MAC address.
    pub mac: [u8; 6],
    /// Next hop for destinations outside the uplink's subnet.
    pub gateway: Option<Ipv4Addr>,
}

/// A published port range (`publish add`): connections to the host address
/// and a port in `host_ports` go to `target` at the same offset in
/// `target_ports`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishRule {
    /// The rule's id; conntrack entries it created carry it.
    pub id: RuleId,
    /// TCP or UDP.
    pub proto: Proto,
    /// The host address it listens on; `None` for the uplink address (with
    /// the host uplink: every address of the host).
    pub host_addr: Option<Ipv4Addr>,
    /// First and last host port.
    pub host_ports: (u16, u16),
    /// The container's address.
    pub target: Ipv4Addr,
    /// First and last container port (same length as `host_ports`).
    pub target_ports: (u16, u16),
}

/// What to do with the frame after [`Gateway::handle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send the (rewritten) frame, now `len` bytes long, to `side`.
    Send {
        /// The network or uplink the frame leaves on.
        side: Side,
        /// The frame's length now (an ARP reply is shorter than a padded
        /// request, for example).
        len: usize,
    },
    /// The gateway kept or answered the frame through the outbox (held for
    /// ARP resolution, an ICMP error was sent instead, an ARP reply learned).
    Consumed,
    /// Dropped; count it.
    Drop(GatewayDrop),
}

/// Why the gateway dropped a frame. `as_str` names are what `port stats`
/// and `conntrack stats` show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GatewayDrop {
    /// Not a well-formed Ethernet/ARP/IPv4 packet, or a bad IP header checksum.
    Malformed,
    /// Neither ARP nor IPv4.
    UnsupportedEthertype,
    /// An IP protocol the gateway does not route (only TCP, UDP, ICMP).
    UnsupportedProtocol,
    /// Addressed to the gateway but not something it answers.
    NotForGateway,
    /// No route to the destination (an ICMP unreachable was sent when allowed).
    NoRoute,
    /// An `--internal` network may not reach the uplink.
    Internal,
    /// Routing between these two networks is not allowed (`net connect`).
    NetworksNotConnected,
    /// From the uplink, matching no connection and no published port.
    NotPublished,
    /// The connection table refused a new entry: its limit is 0 (a table
    /// at its limit evicts an entry instead).
    ConntrackFull,
    /// SNAT ports exhausted.
    NoSnatPort,
    /// A TCP segment that does not fit the connection's state (e.g. not a
    /// SYN for a new connection, or an out-of-window RST).
    InvalidTcp,
    /// An ICMP error matching no connection.
    UntrackedIcmpError,
    /// A later fragment dropped by the fragment cache's bounds.
    FragmentDropped,
    /// Too many packets already waiting for ARP resolution.
    ArpQueueFull,
    /// The connection table refused a new entry because its original tuple
    /// is tracked already (the lookup before it found none: a table that
    /// contradicts itself).
    ConntrackExists,
    /// The connection table refused a new entry because the reply tuple its
    /// translation gives belongs to another connection (for example a
    /// published port's target that already talks to the same peer from
    /// the same port on a connection of its own).
    ConntrackClash,
    /// The connection's entry went (expired, evicted or removed) between
    /// finding or making it and reading its translation.
    ConntrackStale,
    /// The source address does not belong on the side the packet came
    /// from (reverse-path check): from a network, not a host of its subnet
    /// or the gateway's own address; from the uplink, an address of the
    /// gateway or inside a network's subnet; from anywhere, 0.0.0.0/8,
    /// loopback, multicast or the limited broadcast.
    BadSource,
    /// The packet matches a tracked connection (or is an ICMP error
    /// quoting one) but came in from, or would leave to, a side that
    /// connection's direction does not use: a packet of one network never
    /// rides another network's connection.
    WrongSide,
    /// Routing between two hosts of one `--no-icc` network.
    Icc,
    /// A packet for the host uplink's relay found its queue full.
    HostRelayBusy,
    /// A new connection a firewall rule denies (`rule add … deny`).
    RuleDeny,
}

impl GatewayDrop {
    /// The counter name.
    pub fn as_str(self) -> &'static str {
        match self {
            GatewayDrop::Malformed => "gw-malformed",
            GatewayDrop::UnsupportedEthertype => "gw-unsupported-ethertype",
            GatewayDrop::UnsupportedProtocol => "gw-unsupported-protocol",
            GatewayDrop::NotForGateway => "gw-not-for-gateway",
            GatewayDrop::NoRoute => "gw-no-route",
            GatewayDrop::Internal => "gw-internal-network",
            GatewayDrop::NetworksNotConnected => "gw-networks-not-connected",
            GatewayDrop::NotPublished => "gw-not-published",
            GatewayDrop::ConntrackFull => "gw-conntrack-full",
            GatewayDrop::NoSnatPort => "gw-no-snat-port",
            GatewayDrop::InvalidTcp => "gw-invalid-tcp",
            GatewayDrop::UntrackedIcmpError => "gw-untracked-icmp-error",
            GatewayDrop::FragmentDropped => "gw-fragment-dropped",
            GatewayDrop::ArpQueueFull => "gw-arp-queue-full",
            GatewayDrop::ConntrackExists => "gw-conntrack-exists",
            GatewayDrop::ConntrackClash => "gw-conntrack-clash",
            GatewayDrop::ConntrackStale => "gw-conntrack-stale",
            GatewayDrop::BadSource => "gw-bad-source",
            GatewayDrop::WrongSide => "gw-wrong-side",
            GatewayDrop::Icc => "gw-icc",
            GatewayDrop::HostRelayBusy => "gw-host-relay-busy",
            GatewayDrop::RuleDeny => "gw-rule-deny",
        }
    }
}

impl GatewayDrop {
    /// Every reason, in counter order.
    pub const ALL: [GatewayDrop; 22] = [
        GatewayDrop::Malformed,
        GatewayDrop::UnsupportedEthertype,
        GatewayDrop::UnsupportedProtocol,
        GatewayDrop::NotForGateway,
        GatewayDrop::NoRoute,
        GatewayDrop::Internal,
        GatewayDrop::NetworksNotConnected,
        GatewayDrop::NotPublished,
        GatewayDrop::ConntrackFull,
        GatewayDrop::NoSnatPort,
        GatewayDrop::InvalidTcp,
        GatewayDrop::UntrackedIcmpError,
        GatewayDrop::FragmentDropped,
        GatewayDrop::ArpQueueFull,
        GatewayDrop::ConntrackExists,
        GatewayDrop::ConntrackClash,
        GatewayDrop::ConntrackStale,
        GatewayDrop::BadSource,
        GatewayDrop::WrongSide,
        GatewayDrop::Icc,
        GatewayDrop::HostRelayBusy,
        GatewayDrop::RuleDeny,
    ];

    /// Number of reasons (length of [`GatewayCounters::drops`]).
    pub const COUNT: usize = Self::ALL.len();

    /// Index into [`GatewayCounters::drops`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A frame the gateway made or released, for the switch to send (see
/// [`Gateway::next_outbox`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutFrame {
    /// Where it goes.
    pub side: Side,
    /// The whole Ethernet frame.
    pub bytes: Vec<u8>,
    /// Its offload state: [`Offload::NONE`] for a frame the gateway made,
    /// the frame's own for one released after waiting for ARP (a GSO frame
    /// is still one, a partial checksum still partial).
    pub offload: Offload,
}

impl OutFrame {
    /// A frame the gateway made itself: plain, complete checksums.
    fn made(side: Side, bytes: Vec<u8>) -> OutFrame {
        OutFrame {
            side,
            bytes,
            offload: Offload::NONE,
        }
    }
}

/// Why a configuration change was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GatewayError {
    /// A rule with this id exists already.
    #[error("publish rule {0}: a rule with this id exists — remove it first or pick another id")]
    RuleExists(u32),
    /// The rule itself is inconsistent.
    #[error("publish rule {id}: {reason}")]
    InvalidRule {
        /// The rule's id.
        id: u32,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Another rule already publishes one of the host ports.
    #[error(
        "publish rule {id}: {proto} port {port} on {addr} is already published by rule {by} — \
         remove that rule or pick another host port"
    )]
    AlreadyPublished {
        /// The refused rule's id.
        id: u32,
        /// Protocol name.
        proto: &'static str,
        /// Host address.
        addr: Ipv4Addr,
        /// The first conflicting host port.
        port: u16,
        /// The rule that holds it.
        by: u32,
    },
    /// A host port could not be reserved (masquerade holds it).
    #[error("publish rule {id}: {source}")]
    PortTaken {
        /// The refused rule's id.
        id: u32,
        /// Why the mapping refused the reservation.
        source: MappingError,
    },
}

/// The gateway's counters (besides conntrack's own, see [`Conntrack::stats`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayCounters {
    /// Dropped frames by reason, indexed by [`GatewayDrop::index`].
    pub drops: [u64; GatewayDrop::COUNT],
    /// ARP requests sent (first tries and retries).
    pub arp_requests_sent: u64,
    /// ARP replies sent for the gateway's addresses.
    pub arp_replies_sent: u64,
    /// ICMP echo replies sent.
    pub echo_replies: u64,
    /// ICMP errors the gateway generated (time exceeded, unreachable).
    pub icmp_errors_sent: u64,
    /// ICMP errors not generated because more were due than the rate limit
    /// allows (1000 per second in bursts of 50, as Linux): the gateway's and
    /// those of the bridges sharing its limit ([`IcmpErrors`]).
    pub icmp_errors_limited: u64,
    /// Frames held waiting for ARP resolution.
    pub held_for_arp: u64,
    /// Held frames discarded because their next hop never answered ARP.
    pub arp_timeouts: u64,
    /// Frames routed onward (directly or released from the ARP queue).
    pub forwarded: u64,
    /// Packets without don't-fragment cut into IP fragments to fit the MTU
    /// of their way out.
    pub fragmented: u64,
}

impl Default for GatewayCounters {
    fn default() -> Self {
        GatewayCounters {
            drops: [0; GatewayDrop::COUNT],
            arp_requests_sent: 0,
            arp_replies_sent: 0,
            echo_replies: 0,
            icmp_errors_sent: 0,
            icmp_errors_limited: 0,
            held_for_arp: 0,
            arp_timeouts: 0,
            forwarded: 0,
            fragmented: 0,
        }
    }
}

impl GatewayCounters {
    /// Drop counters with their names ([`GatewayDrop::as_str`]).
    pub fn drops_by_name(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        GatewayDrop::ALL
            .iter()
            .map(|d| (d.as_str(), self.drops[d.index()]))
    }

    /// The drop counter of one reason.
    pub fn drop_count(&self, reason: GatewayDrop) -> u64 {
        self.drops[reason.index()]
    }
}

/// The L3 gateway. See the module documentation.
#[derive(Debug, Clone)]
pub struct Gateway {
    ct: Conntrack,
    nets: Vec<NetConfig>,
    uplink: Option<UplinkConfig>,
    /// A host uplink: destinations outside every network go to
    /// [`Side::Host`].
    host_uplink: bool,
    /// The host socket ends of relayed flows, by original tuple, as the
    /// relay reported them: (local, remote).
    host_ends: HashMap<FlowKey, (SocketAddrV4, SocketAddrV4)>,
    /// The resolver DNS queries to a gateway address go to, with a host
    /// uplink.
    dns_forward: Option<Ipv4Addr>,
    /// Pairs of connected networks, smaller id first.
    connected: BTreeSet<(u16, u16)>,
    rules: Vec<PublishRule>,
    /// Each network's firewall rules, by network id ([`Gateway::set_rules`]).
    firewall: Vec<(u16, RuleSet)>,
    neighbours: Neighbours,
    /// Translation of a fragmented datagram, keyed by its first fragment.
    frags: FragCache<Xlate>,
    outbox: VecDeque<OutFrame>,
    counters: GatewayCounters,
    /// IP identification of the next ICMP error.
    icmp_ident: u16,
    /// The rate limit of ICMP errors, shared with the switch's bridges.
    icmp_errors: Arc<IcmpErrors>,
}

impl Gateway {
    /// A gateway with no network, no uplink and an empty connection table.
    pub fn new(conntrack: conntrack::Config) -> Gateway {
        Gateway {
            ct: Conntrack::new(conntrack),
            nets: Vec::new(),
            uplink: None,
            host_uplink: false,
            host_ends: HashMap::new(),
            dns_forward: None,
            connected: BTreeSet::new(),
            rules: Vec::new(),
            firewall: Vec::new(),
            neighbours: Neighbours::new(),
            frags: FragCache::new(FragConfig::default()),
            outbox: VecDeque::with_capacity(64),
            counters: GatewayCounters::default(),
            icmp_ident: 0,
            icmp_errors: Arc::new(IcmpErrors::new()),
        }
    }

    /// Makes the gateway's ICMP errors count against `limit`, a rate limit
    /// shared with whatever else makes ICMP errors (the switch's bridges),
    /// so together they send no more than one limit allows.
    pub fn share_icmp_errors(&mut self, limit: Arc<IcmpErrors>) {
        self.icmp_errors = limit;
    }

    /// The oldest frame the gateway made or released (ARP requests, ICMP
    /// errors, packets held for ARP, fragments held for their first): a
    /// whole Ethernet frame with its offload state and the side to send it
    /// to. Frames the caller causes while sending these (such as
    /// [`Gateway::refuse_too_big`]) join the end of the same queue.
    pub fn next_outbox(&mut self) -> Option<OutFrame> {
        self.outbox.pop_front()
    }

    /// Counts a packet the switch cut into IP fragments to fit its way out
    /// (RFC 4787 REQ-13a).
    pub fn count_fragmented(&mut self) {
        self.counters.fragmented += 1;
    }

    /// The connection table.
    pub fn conntrack(&self) -> &Conntrack {
        &self.ct
    }

    /// The connection table, for flushes and limits.
    pub fn conntrack_mut(&mut self) -> &mut Conntrack {
        &mut self.ct
    }

    /// The counters. `icmp_errors_limited` is that of the shared rate limit
    /// ([`Gateway::share_icmp_errors`]): errors the bridges did not send
    /// count too.
    pub fn counters(&self) -> GatewayCounters {
        GatewayCounters {
            icmp_errors_limited: self.icmp_errors.limited(),
            ..self.counters.clone()
        }
    }

    /// The uplink's address, if there is an uplink.
    pub fn uplink_addr(&self) -> Option<Ipv4Addr> {
        self.uplink.as_ref().map(|u| u.addr.0)
    }

    /// The switch cannot send `ip`, an IPv4 packet the gateway forwarded
    /// (as it left the gateway), because it is larger than the MTU of the
    /// side it goes out of and may not be fragmented: its sender gets ICMP
    /// fragmentation-needed with `mtu` as the next-hop MTU (RFC 1191), from
    /// the gateway's address toward it, through the outbox.
    pub fn refuse_too_big(&mut self, ip: &[u8], mtu: u32, now_ms: u64) {
        let kind = IcmpErrorKind::FragmentationNeeded {
            next_hop_mtu: mtu.min(65_535) as u16,
        };
        self.send_icmp_error(kind, ip, true, now_ms);
    }

    /// Periodic work, about once a second: conntrack and fragment expiry,
    /// neighbour expiry, ARP retries and timeouts (held frames of a next hop
    /// that never answered are discarded and the sender of the first gets
    /// an ICMP host unreachable).
    pub fn tick(&mut self, now_ms: u64) {
        self.ct.expire(now_ms);
        self.frags.expire(now_ms);
        self.arp_tick(now_ms);
    }
}

/// `subnet` (address, prefix length) as a prefix; a length over 32 is read
/// as 32, one address, as it always has been.
fn cidr((addr, prefix): (Ipv4Addr, u8)) -> Ipv4Cidr {
    Ipv4Cidr::new(addr, prefix).unwrap_or(Ipv4Cidr::host(addr))
}

/// Whether `addr` is inside `subnet` (address, prefix length).
fn in_subnet(addr: Ipv4Addr, subnet: (Ipv4Addr, u8)) -> bool {
    cidr(subnet).contains(addr)
}
