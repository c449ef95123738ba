//! The versioned control API: one JSON request and one JSON reply per line over
//! yardd's Unix stream socket.
//!
//! A request is an [`Envelope`]: `{"api_version":22,"request":{"cmd":"net-ls"}}`.
//! A reply is a [`Reply`]: `{"ok":{...}}` or `{"error":{"message":"..."}}`.
//! `capture` is the one request that does not end with its reply: after an `ok`
//! line carrying [`Payload::CaptureStarted`], the connection carries a pcap
//! stream (see [`crate::pcap`]) until the count is reached or the client closes.
//!
//! Bump [`API_VERSION`] with every change to these types; yardd refuses a request
//! of another version and yardctl refuses a reply of another version, each with a
//! message saying which binaries to match.

mod event;
mod link;
pub mod names;
mod rule;
mod trace;
pub use event::{Event, EventKind};
pub use link::{LinkInfo, LinkPort, LinkSpec};
pub use rule::{
    check_rule, PortRange, RuleAction, RuleError, RuleInfo, RulePeer, RuleProto, RuleSpec,
};
pub use trace::{
    PacketSpec, SpecError, TraceOutcome, TracePacket, TraceProto, TraceReport, TraceRequest,
    TraceStep, MAX_TRACE_FRAME, SPEC_SYNTAX,
};

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};

use serde::{Deserialize, Serialize};

use crate::types::{AllowedAddress, Ipv4Cidr, MacAddr};

/// The version of the types in this module.
pub const API_VERSION: u32 = 22;

/// The longest request line yardd reads; longer ones get an error reply.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// The most connections one `conntrack ls` reply carries (about 3 MB of
/// JSON); yardctl asks for the next page until none is left.
pub const MAX_CONNTRACK_PAGE: u32 = 8192;

/// Default MAC aging time of a network, as the Linux bridge and Docker use.
pub const DEFAULT_AGING_SECS: u64 = 300;

/// Default per-port limit on learned MAC addresses.
pub const DEFAULT_PORT_MAC_LIMIT: u32 = 4096;

/// Default MTU of a network and of the ports created on it.
pub const DEFAULT_MTU: u32 = 1500;

/// The largest MTU a port may have: a frame must fit in one 64 KiB buffer.
pub const MAX_MTU: u32 = 65_000;

/// The network yardd creates when it starts with no state: Docker's `docker0`.
pub const DEFAULT_NETWORK: &str = "yard0";

/// The name of the host uplink yardd starts with when it has no state
/// (`yardd --default-uplink host`, the default).
pub const DEFAULT_UPLINK: &str = "host";

/// The subnet of [`DEFAULT_NETWORK`].
pub const DEFAULT_SUBNET: &str = "172.30.0.0/16";

/// One request line: the client's API version and what it asks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Envelope {
    /// The client's [`API_VERSION`].
    pub api_version: u32,
    /// What is asked.
    pub request: Request,
}

/// Everything a client can ask of yardd.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Request {
    /// Daemon version, uptime, paths, counts.
    Status,
    /// Create a network.
    NetCreate(NetworkSpec),
    /// List networks.
    NetLs,
    /// One network in detail.
    NetInspect {
        /// Network name.
        name: String,
    },
    /// Remove a network that no port uses.
    NetRm {
        /// Network name.
        name: String,
    },
    /// Create or attach a port.
    PortAdd(PortSpec),
    /// List ports.
    PortLs,
    /// Detach and remove a port (a TAP yardd created is destroyed with it).
    PortRm {
        /// Port name.
        name: String,
    },
    /// Counters of one port, or of all.
    PortStats {
        /// Port name; `None` for every port.
        name: Option<String>,
    },
    /// Forwarding database entries.
    FdbShow {
        /// Only this network.
        net: Option<String>,
    },
    /// Add a static entry: never aged, never moved by learning.
    FdbAdd {
        /// Network name.
        net: String,
        /// The MAC address.
        mac: MacAddr,
        /// The port frames to `mac` leave through.
        port: String,
    },
    /// Delete an entry, static or learned.
    FdbDel {
        /// Network name.
        net: String,
        /// The MAC address.
        mac: MacAddr,
    },
    /// Delete learned entries (static ones stay).
    FdbFlush {
        /// Only this network.
        net: Option<String>,
    },
    /// The multicast snooping table: which ports listen to which group,
    /// and the multicast router ports.
    MdbShow {
        /// Only this network.
        net: Option<String>,
    },
    /// Allow routing between two networks (they are isolated by default).
    NetConnect {
        /// One network.
        a: String,
        /// The other.
        b: String,
    },
    /// Isolate two connected networks again.
    NetDisconnect {
        /// One network.
        a: String,
        /// The other.
        b: String,
    },
    /// Add the uplink: the outside-facing interface with its own address.
    UplinkAdd(UplinkSpec),
    /// List uplinks.
    UplinkLs,
    /// Remove the uplink (connections through it are forgotten).
    UplinkRm {
        /// Uplink name.
        name: String,
    },
    /// Publish a port range (`docker run -p`).
    PublishAdd(PublishSpec),
    /// List published ports.
    PublishLs,
    /// Unpublish: the rule whose host address, first host port and protocol
    /// match `spec`'s; its connections are forgotten.
    PublishRm(PublishSpec),
    /// Let two ports of a `--no-icc` network reach each other.
    LinkAdd(LinkSpec),
    /// Remove the link between two ports (either order).
    LinkRm {
        /// One port.
        a: String,
        /// The other.
        b: String,
    },
    /// List links.
    LinkLs,
    /// Add a firewall rule to a network's list.
    RuleAdd {
        /// The rule.
        rule: RuleSpec,
        /// Where it goes, from 1 (the rule there and after move down);
        /// `None` appends it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        position: Option<usize>,
    },
    /// Remove the rule at `position` of network `net`'s list.
    RuleRm {
        /// The network.
        net: String,
        /// Its position, from 1.
        position: usize,
    },
    /// List the rules of one network, or of all.
    RuleLs {
        /// The network; `None` for all.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        net: Option<String>,
    },
    /// Stream events (what changes) on this connection until the client
    /// closes it.
    Events,
    /// Connection tracking entries, one page at a time.
    ConntrackLs(ConntrackQuery),
    /// Remove matching connection tracking entries.
    ConntrackFlush(ConntrackFilter),
    /// Connection tracking and gateway counters.
    ConntrackStats,
    /// Change the table limit and timeouts; replies with the settings in force.
    ConntrackSet(ConntrackSettings),
    /// What the pipeline would do with one frame, without doing it.
    Trace(TraceRequest),
    /// Stream the frames in and out of a port as pcap.
    Capture {
        /// Port name.
        port: String,
        /// Stop after this many frames; `None` runs until the client closes.
        count: Option<u64>,
    },
}

/// A network: an L2 broadcast domain with its own MAC table, optionally with an
/// IPv4 subnet and gateway address.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NetworkSpec {
    /// Unique name.
    pub name: String,
    /// IPv4 subnet; `None` makes a plain L2 network.
    pub subnet: Option<Ipv4Cidr>,
    /// Gateway address inside `subnet`; defaults to its first host address.
    pub gateway: Option<Ipv4Addr>,
    /// Inter-container communication: `false` isolates the ports from each
    /// other (Docker's `icc=false`).
    pub icc: bool,
    /// 802.1Q VLAN id this network's frames carry on trunk ports (1–4094).
    pub vlan: Option<u16>,
    /// Seconds a learned MAC address lives without traffic.
    pub aging_secs: u64,
    /// Default MTU of ports created on this network.
    pub mtu: u32,
    /// Never routed to or from the uplink (Docker's `--internal`).
    #[serde(default)]
    pub internal: bool,
    /// Traffic leaving through the uplink takes the uplink's address (SNAT);
    /// on by default for networks with a subnet.
    #[serde(default = "yes")]
    pub masquerade: bool,
    /// The part of `subnet` yardd gives addresses from to ports added
    /// without one (Docker's `--ip-range`); `None` uses the whole subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<Ipv4Cidr>,
    /// The address that stands for the host's own loopback on this network
    /// (pasta's `--map-host-loopback`, slirp4netns' 10.0.2.2): with the host
    /// uplink, a container's flow to it reaches 127.0.0.1 on the host.
    /// `None` (the default): off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_loopback: Option<Ipv4Addr>,
}

fn yes() -> bool {
    true
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl NetworkSpec {
    /// A network with Docker's defaults: icc on, 300 s aging, MTU 1500.
    pub fn new(name: impl Into<String>) -> Self {
        NetworkSpec {
            name: name.into(),
            subnet: None,
            gateway: None,
            icc: true,
            vlan: None,
            aging_secs: DEFAULT_AGING_SECS,
            mtu: DEFAULT_MTU,
            internal: false,
            masquerade: true,
            ip_range: None,
            host_loopback: None,
        }
    }
}

/// How a port is attached.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum PortKind {
    /// A TAP device yardd creates, optionally inside a network namespace, and
    /// configures as a container's interface.
    Tap {
        /// Network name.
        net: String,
        /// Namespace: a name under /run/netns or a path such as
        /// /proc/PID/ns/net; `None` for yardd's own namespace.
        netns: Option<String>,
        /// Interface name inside the namespace.
        ifname: String,
        /// Address to configure, with its prefix length. `None` on a network
        /// with a subnet asks yardd for the next free address, which is then
        /// kept here (and in the state file) as if it had been given.
        ip: Option<Ipv4Cidr>,
        /// MAC address; `None` derives one (Docker's 02:42 + IPv4 address, or
        /// a stable local one from the port name). Omitted in [`PortInfo`],
        /// whose own `mac` is the address in force.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mac: Option<MacAddr>,
        /// MTU; `None` takes the network's. Omitted in [`PortInfo`], whose own
        /// `mtu` is the MTU in force.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mtu: Option<u32>,
        /// Port security: the container may send only from its MAC, and
        /// IPv4 and ARP only from its `ip` (plus `allowed_addresses`); no
        /// port may claim the network's gateway address. On unless the port
        /// was added with `--no-port-security` (also for ports of a state
        /// file written before the field existed).
        #[serde(default = "yes")]
        port_security: bool,
        /// Sources the port may use besides its own MAC and `ip`
        /// (`--allowed-address`), checked only with `port_security`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        allowed_addresses: Vec<AllowedAddress>,
        /// This port carries its namespace's default route, taking it from
        /// the port that had it. Without it only a namespace's first port
        /// with an address gets the default route.
        #[serde(default, skip_serializing_if = "is_false")]
        default_route: bool,
        /// The port is removed, not turned down, when its namespace goes
        /// away (or is gone when yardd restarts): the lifecycle of a port
        /// a container engine manages through yard-cni (`--auto-remove`).
        #[serde(default, skip_serializing_if = "is_false")]
        auto_remove: bool,
    },
    /// A veth pair yardd creates in its own namespace for a container
    /// engine that moves the interface into the container itself (Docker's
    /// network drivers hand over an interface by name): yardd reads and
    /// writes `ifname` through AF_PACKET and gives `peer` the container's
    /// MAC and the MTU; the engine moves, renames, addresses and brings up
    /// `peer`. yardd configures no address; `ip` is the address the engine
    /// gives the container, for port security, the gateway and address
    /// conflicts. `port rm` deletes the pair; when the container's namespace
    /// goes, the kernel deletes it and the port is down.
    Veth {
        /// Network name.
        net: String,
        /// yardd's end, in yardd's namespace.
        ifname: String,
        /// The end handed over, created in yardd's namespace.
        peer: String,
        /// The container's address, with its prefix length.
        ip: Option<Ipv4Cidr>,
        /// The peer's MAC; `None` derives one as for a TAP.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mac: Option<MacAddr>,
        /// MTU of both ends; `None` takes the network's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mtu: Option<u32>,
        /// Port security, as for a TAP.
        #[serde(default = "yes")]
        port_security: bool,
        /// Sources allowed besides the MAC and `ip`, as for a TAP.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        allowed_addresses: Vec<AllowedAddress>,
    },
    /// An existing interface (e.g. a veth host end) read through AF_PACKET.
    Iface {
        /// Network name.
        net: String,
        /// Interface name in yardd's namespace.
        iface: String,
    },
    /// Ethernet over GRE to another host (RFC 2784/2890), carried in raw
    /// IPv4 (protocol 47; needs CAP_NET_RAW), as Linux `gretap` and Open
    /// vSwitch `gre` ports do.
    Gre {
        /// Network name.
        net: String,
        /// The other host's underlay address.
        remote: Ipv4Addr,
        /// This host's underlay address; `None` lets the kernel choose.
        local: Option<Ipv4Addr>,
        /// GRE key; tunnels between the same hosts are told apart by it.
        key: Option<u32>,
        /// Send the GRE checksum.
        #[serde(default)]
        csum: bool,
        /// Send sequence numbers.
        #[serde(default)]
        seq: bool,
    },
    /// GRE-in-UDP (RFC 8086): needs no privilege and crosses NAT.
    GreUdp {
        /// Network name.
        net: String,
        /// The other host's address and port (default 4754).
        remote: SocketAddrV4,
        /// The local address and port to listen on (default 0.0.0.0:4754).
        local: Option<SocketAddrV4>,
        /// GRE key.
        key: Option<u32>,
        /// Send the GRE checksum.
        #[serde(default)]
        csum: bool,
        /// Send sequence numbers.
        #[serde(default)]
        seq: bool,
    },
    /// An existing interface carrying several networks as 802.1Q VLANs.
    Trunk {
        /// Interface name in yardd's namespace.
        iface: String,
        /// Networks carried; each must have a VLAN id.
        nets: Vec<String>,
    },
    /// A QEMU VM's `-netdev stream`: yardd listens on a Unix stream socket
    /// at `path` (mode 0600, yardd's user) and QEMU connects to it; each
    /// frame is preceded by its 4-byte big-endian length. One VM at a time.
    QemuStream {
        /// Network name.
        net: String,
        /// The socket's absolute path.
        path: String,
    },
    /// A QEMU VM's `-netdev dgram`: yardd binds `addr`, QEMU sends to it,
    /// one frame per datagram, and yardd sends to the latest sender.
    QemuDgram {
        /// Network name.
        net: String,
        /// Where yardd binds.
        addr: QemuDgramAddr,
    },
}

/// Where a `qemu-dgram` port binds: a Unix datagram socket or a UDP port on
/// loopback. Written `/abs/path` or `IP:PORT` (IP in 127.0.0.0/8).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum QemuDgramAddr {
    /// A Unix datagram socket at this absolute path.
    Unix(String),
    /// A UDP port on a loopback address.
    Udp(SocketAddrV4),
}

impl std::fmt::Display for QemuDgramAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QemuDgramAddr::Unix(path) => f.write_str(path),
            QemuDgramAddr::Udp(addr) => write!(f, "{addr}"),
        }
    }
}

impl std::str::FromStr for QemuDgramAddr {
    type Err = String;

    /// A path (it contains a `/`) or a loopback `IP:PORT`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains('/') {
            return Ok(QemuDgramAddr::Unix(s.to_string()));
        }
        let addr: SocketAddrV4 = s.parse().map_err(|_| {
            format!(
                "`{s}` is neither a socket path (it has no `/`) nor IP:PORT: \
                 give e.g. /run/user/1000/vm1.sock or 127.0.0.1:5555"
            )
        })?;
        if !addr.ip().is_loopback() || addr.port() == 0 {
            return Err(format!(
                "{addr}: a qemu-dgram UDP address must be a loopback address (127.0.0.0/8) \
                 with a port other than 0 — anything on another address could send frames \
                 into the network"
            ));
        }
        Ok(QemuDgramAddr::Udp(addr))
    }
}

/// The GRE header settings of a tunnel port, which GRE and GRE-in-UDP
/// ports share. Read from a [`PortKind`]; not itself part of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GreSettings {
    /// GRE key; `None` sends none.
    pub key: Option<u32>,
    /// Send the GRE checksum.
    pub csum: bool,
    /// Send sequence numbers.
    pub seq: bool,
}

impl PortKind {
    /// A TAP named `eth0` on `net` in `netns` with address `ip`, and what
    /// `yardctl port add` leaves unset otherwise: a derived MAC, the
    /// network's MTU, port security on and no further allowed addresses.
    pub fn tap(net: &str, netns: Option<&str>, ip: Option<Ipv4Cidr>) -> PortKind {
        PortKind::Tap {
            net: net.into(),
            netns: netns.map(str::to_string),
            ifname: "eth0".into(),
            ip,
            mac: None,
            mtu: None,
            port_security: true,
            allowed_addresses: Vec::new(),
            default_route: false,
            auto_remove: false,
        }
    }

    /// The container's address of a TAP or veth port.
    pub fn address(&self) -> Option<Ipv4Cidr> {
        match self {
            PortKind::Tap { ip, .. } | PortKind::Veth { ip, .. } => *ip,
            _ => None,
        }
    }

    /// A TAP's or veth's port security: whether it is on, and the extra
    /// allowed sources; `None` for kinds it does not apply to.
    pub fn security(&self) -> Option<(bool, &[AllowedAddress])> {
        match self {
            PortKind::Tap {
                port_security,
                allowed_addresses,
                ..
            }
            | PortKind::Veth {
                port_security,
                allowed_addresses,
                ..
            } => Some((*port_security, allowed_addresses)),
            _ => None,
        }
    }

    /// Whether the port goes with its namespace instead of turning down.
    pub fn auto_removes(&self) -> bool {
        matches!(
            self,
            PortKind::Tap {
                auto_remove: true,
                ..
            }
        )
    }

    /// The GRE settings of a GRE or GRE-in-UDP port; `None` for a port
    /// that is not a tunnel.
    pub fn gre_settings(&self) -> Option<GreSettings> {
        match self {
            PortKind::Gre { key, csum, seq, .. } | PortKind::GreUdp { key, csum, seq, .. } => {
                Some(GreSettings {
                    key: *key,
                    csum: *csum,
                    seq: *seq,
                })
            }
            PortKind::Tap { .. }
            | PortKind::Veth { .. }
            | PortKind::Iface { .. }
            | PortKind::Trunk { .. }
            | PortKind::QemuStream { .. }
            | PortKind::QemuDgram { .. } => None,
        }
    }
}

/// A port to create.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PortSpec {
    /// Unique name.
    pub name: String,
    /// How it is attached.
    #[serde(flatten)]
    pub kind: PortKind,
}

impl PortSpec {
    /// The networks this port belongs to.
    pub fn nets(&self) -> Vec<&str> {
        match &self.kind {
            PortKind::Tap { net, .. }
            | PortKind::Veth { net, .. }
            | PortKind::Iface { net, .. }
            | PortKind::Gre { net, .. }
            | PortKind::GreUdp { net, .. }
            | PortKind::QemuStream { net, .. }
            | PortKind::QemuDgram { net, .. } => vec![net.as_str()],
            PortKind::Trunk { nets, .. } => nets.iter().map(String::as_str).collect(),
        }
    }
}

/// A reply line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub enum Reply {
    /// The request succeeded.
    Ok(Payload),
    /// The request failed; nothing was changed.
    Error(ApiError),
}

/// Why a request failed, in words that name the object and the way out.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ApiError {
    /// The message for the user.
    pub message: String,
}

/// What a successful request returns.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", content = "data", rename_all = "kebab-case")]
pub enum Payload {
    /// Nothing to return.
    Done,
    /// Reply to `status`.
    Status(StatusInfo),
    /// Reply to `net create` and `net inspect`.
    Network(NetworkInfo),
    /// Reply to `net ls`.
    Networks(Vec<NetworkInfo>),
    /// Reply to `port add`.
    Port(PortInfo),
    /// Reply to `port ls`.
    Ports(Vec<PortInfo>),
    /// Reply to `port stats`.
    PortStats(Vec<PortStats>),
    /// Reply to `fdb show`.
    Fdb(Vec<FdbEntry>),
    /// Reply to `mdb show`.
    Mdb(Vec<MdbEntry>),
    /// Reply to `uplink add`.
    Uplink(UplinkInfo),
    /// Reply to `uplink ls`.
    Uplinks(Vec<UplinkInfo>),
    /// Reply to `publish add`.
    Publish(PublishInfo),
    /// Reply to `publish ls`.
    Publishes(Vec<PublishInfo>),
    /// Reply to `link add`.
    Link(LinkInfo),
    /// Reply to `link ls`.
    Links(Vec<LinkInfo>),
    /// Reply to `rule add`.
    Rule(RuleInfo),
    /// Reply to `rule ls`.
    Rules(Vec<RuleInfo>),
    /// Reply to `events`: one [`Event`] per line follows on this connection.
    EventsStarted,
    /// Reply to `conntrack ls`: one page.
    Conntrack(ConntrackPage),
    /// Reply to `conntrack flush`: how many entries were removed.
    Flushed {
        /// Entries removed.
        removed: u64,
    },
    /// Reply to `conntrack stats`.
    ConntrackStats(ConntrackStats),
    /// Reply to `conntrack set`.
    ConntrackSettings(ConntrackSettings),
    /// Reply to `trace`.
    Trace(TraceReport),
    /// Reply to `capture`: a pcap stream follows on this connection.
    CaptureStarted {
        /// Port name.
        port: String,
    },
}

/// The daemon at a glance.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatusInfo {
    /// yardd's package version.
    pub version: String,
    /// yardd's [`API_VERSION`].
    pub api_version: u32,
    /// yardd's process id.
    pub pid: u32,
    /// Seconds since yardd started.
    pub uptime_secs: u64,
    /// The control socket path.
    pub socket: String,
    /// The state directory.
    pub state_dir: String,
    /// Number of networks.
    pub networks: usize,
    /// Number of ports.
    pub ports: usize,
    /// Tunnel packets dropped before reaching a tunnel port, by reason
    /// (`bad-checksum`, `bad-version`, `unknown-flags`, `truncated`,
    /// `not-ethernet`, `unknown-tunnel`, …).
    #[serde(default, with = "names::snake_keys")]
    pub tunnel_drops: BTreeMap<String, u64>,
    /// What software GRO made of the TCP segments tunnels received.
    #[serde(default)]
    pub tunnel_gro: TunnelGro,
    /// Datapath threads (`yardd --threads`).
    #[serde(default = "one")]
    pub datapath_threads: u32,
    /// Whether yardd runs as root or rootless.
    pub mode: DaemonMode,
}

/// Software GRO on tunnel receives: consecutive TCP segments of one flow
/// merged into one GSO frame before they cross the bridge.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TunnelGro {
    /// GSO frames made by merging two or more received segments.
    pub frames: u64,
    /// The received segments that went into them.
    pub segments: u64,
}

/// How much privilege yardd runs with (see [`crate::paths`]).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum DaemonMode {
    /// uid 0 in the initial user namespace.
    Root,
    /// An ordinary user.
    Rootless {
        /// yardd's uid.
        uid: u32,
    },
    /// uid 0 inside a user namespace (`unshare -r`): root there, an
    /// ordinary user to the host.
    UserNamespace {
        /// The host uid yardd's uid 0 stands for, when mapped.
        outer_uid: Option<u32>,
    },
}

impl std::fmt::Display for DaemonMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DaemonMode::Root => f.write_str("root"),
            DaemonMode::Rootless { uid } => write!(f, "rootless (uid {uid})"),
            DaemonMode::UserNamespace {
                outer_uid: Some(uid),
            } => {
                write!(f, "rootless (user namespace, host uid {uid})")
            }
            DaemonMode::UserNamespace { outer_uid: None } => {
                f.write_str("rootless (user namespace)")
            }
        }
    }
}

fn one() -> u32 {
    1
}

/// A network with its live figures.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NetworkInfo {
    /// The network as it was asked for (its fields inline in JSON).
    #[serde(flatten)]
    pub spec: NetworkSpec,
    /// Names of the ports on it.
    pub ports: Vec<String>,
    /// Learned plus static MAC entries.
    pub fdb_entries: usize,
    /// Times a learned MAC moved to another port.
    pub mac_moves: u64,
    /// Networks this one may route to (`net connect`).
    #[serde(default)]
    pub connected: Vec<String>,
    /// The largest MTU a frame may have to cross every tunnel of the
    /// network; `None` when it has no tunnel ports.
    #[serde(default)]
    pub overlay_mtu: Option<u32>,
}

/// A port as configured and as it is now.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PortInfo {
    /// The configuration. A TAP's requested `mac` and `mtu` are left out
    /// (`None`): the fields below carry the values in force, under the same
    /// names, so each key appears once.
    #[serde(flatten)]
    pub spec: PortSpec,
    /// The MAC address of the container-side interface, where yardd knows it.
    pub mac: Option<MacAddr>,
    /// The MTU in force.
    pub mtu: u32,
    /// `up`, or why the port is not attached (e.g. its namespace is gone):
    /// `"state": "up"` or `"state": "down", "reason": "…"` inline.
    #[serde(flatten)]
    pub state: PortState,
    /// The datapath thread that reads the port, when yardd runs more than
    /// one (`yardd --threads`); `null` otherwise.
    #[serde(default)]
    pub thread: Option<u32>,
}

/// Whether a port is passing frames.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "state", content = "reason", rename_all = "kebab-case")]
pub enum PortState {
    /// Attached and forwarding.
    Up,
    /// Configured but not attached; the reason says why and what to do.
    Down(String),
}

/// Counters of one port.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PortStats {
    /// Port name.
    pub name: String,
    /// Frames received from the port.
    pub rx_packets: u64,
    /// Bytes received (Ethernet frames, no virtio-net header).
    pub rx_bytes: u64,
    /// Frames sent to the port.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Frames dropped, by reason (see `yard_switch::verdict::DropReason`).
    #[serde(with = "names::snake_keys")]
    pub drops: BTreeMap<String, u64>,
}

/// One forwarding-database entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FdbEntry {
    /// Network name.
    pub net: String,
    /// The MAC address.
    pub mac: MacAddr,
    /// The port it lives behind.
    pub port: String,
    /// `true` for entries added with `fdb add`.
    #[serde(rename = "static")]
    pub is_static: bool,
    /// Seconds since the address was last seen; `None` for static entries.
    pub age_secs: Option<u64>,
}

/// One entry of the multicast snooping table: a port listening to a group,
/// or a multicast router port, which gets every group.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MdbEntry {
    /// Network name.
    pub net: String,
    /// The port.
    pub port: String,
    /// The group it reported (an IPv4 or IPv6 multicast address); `None`
    /// for a router port: a query came from it, or it is a trunk or tunnel.
    pub group: Option<std::net::IpAddr>,
    /// Seconds until the entry expires unless renewed; `None` for a trunk
    /// or tunnel, a router port for as long as it exists.
    pub expires_secs: Option<u64>,
}

/// How an uplink is attached.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum UplinkKind {
    /// An existing interface in yardd's namespace (e.g. a veth end), through
    /// AF_PACKET. yardd answers ARP for the uplink address with the
    /// interface's MAC; the kernel must not use the interface itself.
    Iface {
        /// Interface name.
        iface: String,
    },
    /// A TAP yardd creates (optionally inside a namespace) and brings up;
    /// the far side's address is configured by the user.
    Tap {
        /// Namespace, as for ports.
        netns: Option<String>,
        /// Interface name.
        ifname: String,
    },
    /// yardd's own network namespace: the containers' flows to addresses
    /// outside every switch network are relayed through host sockets, so
    /// they leave with the host's addresses and routes. No interface and no
    /// address of its own.
    Host,
}

/// The outside-facing interface.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UplinkSpec {
    /// Unique name.
    pub name: String,
    /// How it is attached.
    #[serde(flatten)]
    pub kind: UplinkKind,
    /// The uplink's own address, with its prefix length; `None` for a
    /// [`UplinkKind::Host`] uplink, which has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<Ipv4Cidr>,
    /// Next hop for destinations outside `ip`'s subnet.
    pub gateway: Option<Ipv4Addr>,
}

/// An uplink as configured and as it is now.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UplinkInfo {
    /// The uplink as it was asked for (its fields inline in JSON).
    #[serde(flatten)]
    pub spec: UplinkSpec,
    /// The MAC yardd uses on it.
    pub mac: Option<MacAddr>,
    /// The MTU in force.
    pub mtu: u32,
    /// Whether it is attached (`state`, and `reason` when down, inline).
    #[serde(flatten)]
    pub state: PortState,
}

/// TCP or UDP.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// TCP, shown and written as `tcp`.
    Tcp,
    /// UDP, shown and written as `udp`.
    Udp,
}

/// A published port range: `[HOSTIP:]HOSTPORT[-END]:TARGET:PORT[-END][/tcp|/udp]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PublishSpec {
    /// The host address it listens on; `None` for the uplink's address.
    pub host_ip: Option<Ipv4Addr>,
    /// First and last host port.
    pub host_ports: (u16, u16),
    /// A port name (its `--ip`) or an IPv4 address.
    pub target: String,
    /// First and last target port.
    pub target_ports: (u16, u16),
    /// Protocol (default TCP).
    pub proto: Transport,
}

impl std::fmt::Display for PublishSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let range = |(a, b): (u16, u16)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        };
        if let Some(ip) = self.host_ip {
            write!(f, "{ip}:")?;
        }
        let proto = match self.proto {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        };
        write!(
            f,
            "{}:{}:{}/{proto}",
            range(self.host_ports),
            self.target,
            range(self.target_ports)
        )
    }
}

/// Why a publish specification does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{spec}' is not a published port: {reason}; expected [HOSTIP:]HOSTPORT[-END]:TARGET:PORT[-END][/tcp|/udp], e.g. 8080:c1:80/tcp")]
pub struct PublishParseError {
    /// The text given.
    pub spec: String,
    /// What is wrong.
    pub reason: String,
}

impl std::str::FromStr for PublishSpec {
    type Err = PublishParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| PublishParseError {
            spec: s.to_string(),
            reason: reason.to_string(),
        };
        let (body, proto) = match s.rsplit_once('/') {
            Some((body, "tcp")) => (body, Transport::Tcp),
            Some((body, "udp")) => (body, Transport::Udp),
            Some(_) => return Err(err("the protocol must be tcp or udp")),
            None => (s, Transport::Tcp),
        };
        let parts: Vec<&str> = body.split(':').collect();
        let (host_ip, host, target, port) = match parts.as_slice() {
            [host, target, port] => (None, *host, *target, *port),
            [ip, host, target, port] => {
                let ip: Ipv4Addr = ip
                    .parse()
                    .map_err(|_| err("the host address is not IPv4"))?;
                (Some(ip), *host, *target, *port)
            }
            _ => return Err(err("wrong number of ':'-separated parts")),
        };
        let range = |text: &str| -> Result<(u16, u16), PublishParseError> {
            let (a, b) = text.split_once('-').unwrap_or((text, text));
            let a: u16 = a
                .parse()
                .map_err(|_| err("a port is not a number from 1 to 65535"))?;
            let b: u16 = b
                .parse()
                .map_err(|_| err("a port is not a number from 1 to 65535"))?;
            if a == 0 || b < a {
                return Err(err("a port range must be 1-65535 and ascending"));
            }
            Ok((a, b))
        };
        let host_ports = range(host)?;
        let target_ports = range(port)?;
        if host_ports.1 - host_ports.0 != target_ports.1 - target_ports.0 {
            return Err(err("the host and target ranges differ in length"));
        }
        if target.is_empty() {
            return Err(err("the target is empty"));
        }
        Ok(PublishSpec {
            host_ip,
            host_ports,
            target: target.to_string(),
            target_ports,
            proto,
        })
    }
}

/// A published port with what it resolves to now.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PublishInfo {
    /// The rule as it was asked for (its fields inline in JSON).
    #[serde(flatten)]
    pub spec: PublishSpec,
    /// The rule in its canonical text form.
    pub rule: String,
    /// The target's address now, if it resolves.
    pub target_ip: Option<Ipv4Addr>,
    /// `up`, or why connections cannot reach the target (`state`, and
    /// `reason` when down, inline).
    #[serde(flatten)]
    pub state: PortState,
}

/// Which conntrack entries a command applies to; empty fields match all.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConntrackFilter {
    /// `tcp`, `udp` or `icmp`.
    pub proto: Option<String>,
    /// Any address of the entry's tuples.
    pub addr: Option<Ipv4Addr>,
    /// Any port of the entry's tuples.
    pub port: Option<u16>,
}

/// What `conntrack ls` asks for: the entries a filter selects, a page at a
/// time, in a stable order (network, then original tuple).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConntrackQuery {
    /// Which entries.
    #[serde(flatten)]
    pub filter: ConntrackFilter,
    /// Continue after this entry: the previous page's `next`; `None` starts
    /// at the beginning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<ConntrackCursor>,
    /// At most this many entries; `None` or more than
    /// [`MAX_CONNTRACK_PAGE`] gets [`MAX_CONNTRACK_PAGE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// A place in the `conntrack ls` order: the last entry of a page.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConntrackCursor {
    /// The entry's network (yardd's internal number for it).
    pub zone: u16,
    /// `tcp`, `udp` or `icmp`.
    pub proto: String,
    /// The entry's original tuple.
    pub original: Tuple,
}

/// One page of `conntrack ls`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ConntrackPage {
    /// The entries, in listing order.
    pub entries: Vec<ConntrackEntry>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<ConntrackCursor>,
}

/// One direction of a connection.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Tuple {
    /// Source address.
    pub src: Ipv4Addr,
    /// Source port (ICMP: echo identifier).
    pub sport: u16,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Destination port (ICMP: echo identifier).
    pub dport: u16,
}

/// A tracked connection.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConntrackEntry {
    /// `tcp`, `udp` or `icmp`.
    pub proto: String,
    /// The first packet's direction, as it arrived.
    pub original: Tuple,
    /// The reply direction, as it arrives.
    pub reply: Tuple,
    /// Protocol state (TCP state name; `unreplied`/`replied` otherwise).
    pub state: String,
    /// Source translation: `address:port` the original source became.
    pub snat: Option<String>,
    /// Destination translation: `address:port` the original destination became.
    pub dnat: Option<String>,
    /// A flow relayed by the host uplink: its host socket's local and
    /// remote address, `LOCAL->REMOTE` (`None` for every other entry, and
    /// until the relay has opened the socket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Seconds until the entry expires without traffic.
    pub timeout_secs: u64,
    /// A reply was seen (or the handshake completed).
    pub assured: bool,
    /// Original-direction packets.
    pub packets_original: u64,
    /// Original-direction bytes.
    pub bytes_original: u64,
    /// Reply-direction packets.
    pub packets_reply: u64,
    /// Reply-direction bytes.
    pub bytes_reply: u64,
}

/// Connection tracking and gateway counters.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ConntrackStats {
    /// Live entries.
    pub entries: u64,
    /// The table limit.
    pub max_entries: u64,
    /// Counters by name (inserted, expired, evicted-unreplied, the fair
    /// SNAT reclaims and refusals, …, and the gateway's drops by reason).
    #[serde(with = "names::snake_keys")]
    pub counters: BTreeMap<String, u64>,
    /// The SNAT share in force: the percentage of each external port range
    /// one inside address may hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snat_share_percent: Option<u8>,
    /// Live entries by state, as `conntrack ls` names them
    /// (`ESTABLISHED`, `TIME_WAIT`, …, `UNREPLIED`, `REPLIED`).
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        with = "names::state_keys"
    )]
    pub by_state: BTreeMap<String, u64>,
}

/// Table limit, timeouts (seconds) by name — `tcp-syn-sent`,
/// `tcp-established`, …, `udp-unreplied`, `udp-replied`, `icmp` — and the
/// SNAT share.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConntrackSettings {
    /// Table limit; `None` leaves it.
    pub max_entries: Option<u64>,
    /// Timeouts to change; in a reply, all of them.
    #[serde(with = "names::snake_keys")]
    pub timeouts: BTreeMap<String, u64>,
    /// The SNAT share: the percentage (1–100) of each external port range
    /// (per protocol and uplink address) one inside address may hold;
    /// `None` leaves it. In a reply, the share in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snat_share_percent: Option<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_port_specs_round_trip_as_json() {
        for kind in [
            PortKind::QemuStream {
                net: "yard0".into(),
                path: "/run/vm1.sock".into(),
            },
            PortKind::QemuDgram {
                net: "yard0".into(),
                addr: QemuDgramAddr::Unix("/run/vm2.sock".into()),
            },
            PortKind::QemuDgram {
                net: "yard0".into(),
                addr: QemuDgramAddr::Udp("127.0.0.1:5555".parse().unwrap()),
            },
        ] {
            let spec = PortSpec {
                name: "vm".into(),
                kind,
            };
            let json = serde_json::to_string(&spec).unwrap();
            assert_eq!(
                serde_json::from_str::<PortSpec>(&json).unwrap(),
                spec,
                "{json}"
            );
        }
        let json = r#"{"name":"vm","kind":"qemu-dgram","net":"n","addr":{"udp":"127.0.0.1:9"}}"#;
        assert!(serde_json::from_str::<PortSpec>(json).is_ok());
    }

    #[test]
    fn qemu_dgram_addresses_are_paths_or_loopback_udp() {
        assert_eq!(
            "/run/vm.sock".parse::<QemuDgramAddr>().unwrap(),
            QemuDgramAddr::Unix("/run/vm.sock".into())
        );
        assert_eq!(
            "127.1.2.3:5555"
                .parse::<QemuDgramAddr>()
                .unwrap()
                .to_string(),
            "127.1.2.3:5555"
        );
        for bad in ["10.0.0.1:5555", "127.0.0.1:0", "vm.sock", "127.0.0.1"] {
            assert!(bad.parse::<QemuDgramAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn publish_specs_parse_like_docker() {
        let p: PublishSpec = "8080:c1:80".parse().unwrap();
        assert_eq!(
            (
                p.host_ip,
                p.host_ports,
                p.target.as_str(),
                p.target_ports,
                p.proto
            ),
            (None, (8080, 8080), "c1", (80, 80), Transport::Tcp)
        );
        let p: PublishSpec = "10.1.0.2:5000-5002:172.31.0.2:6000-6002/udp"
            .parse()
            .unwrap();
        assert_eq!(p.host_ip, Some(Ipv4Addr::new(10, 1, 0, 2)));
        assert_eq!(
            (p.host_ports, p.target_ports, p.proto),
            ((5000, 5002), (6000, 6002), Transport::Udp)
        );
        assert_eq!(p.to_string(), "10.1.0.2:5000-5002:172.31.0.2:6000-6002/udp");
        for bad in [
            "80",
            "8080:c1:80/sctp",
            "0:c1:80",
            "8080-8081:c1:80",
            "x:c1:80",
            "1.2.3:8080:c1:80",
            "8080::80",
        ] {
            assert!(bad.parse::<PublishSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_host_uplink_has_no_address_on_the_wire() {
        let spec = UplinkSpec {
            name: "host".into(),
            kind: UplinkKind::Host,
            ip: None,
            gateway: None,
        };
        let line = serde_json::to_string(&spec).unwrap();
        assert_eq!(line, r#"{"name":"host","kind":"host","gateway":null}"#);
        assert_eq!(serde_json::from_str::<UplinkSpec>(&line).unwrap(), spec);
        // A state file of API 10 (every uplink with an address) still reads.
        let old =
            r#"{"name":"up0","kind":"iface","iface":"eth1","ip":"10.0.0.2/24","gateway":null}"#;
        let read: UplinkSpec = serde_json::from_str(old).unwrap();
        assert_eq!(read.ip, Some("10.0.0.2/24".parse().unwrap()));
    }

    #[test]
    fn request_wire_form_is_stable() {
        let env = Envelope {
            api_version: API_VERSION,
            request: Request::NetInspect {
                name: "yard0".into(),
            },
        };
        let line = serde_json::to_string(&env).unwrap();
        let expected = format!(
            r#"{{"api_version":{API_VERSION},"request":{{"cmd":"net-inspect","name":"yard0"}}}}"#
        );
        assert_eq!(line, expected);
        assert_eq!(serde_json::from_str::<Envelope>(&line).unwrap(), env);
    }

    #[test]
    fn port_spec_flattens_its_kind() {
        let spec = PortSpec {
            name: "c1".into(),
            kind: PortKind::Iface {
                net: "yard0".into(),
                iface: "veth-c1".into(),
            },
        };
        let value = serde_json::to_value(&spec).unwrap();
        assert_eq!(value["kind"], "iface");
        assert_eq!(value["iface"], "veth-c1");
        assert_eq!(serde_json::from_value::<PortSpec>(value).unwrap(), spec);
    }

    #[test]
    fn port_info_names_each_key_once() {
        let info = PortInfo {
            spec: PortSpec {
                name: "c1".into(),
                kind: PortKind::tap("yard0", Some("c1"), None),
            },
            mac: Some(MacAddr([2, 0x42, 0xac, 0x1e, 0, 2])),
            mtu: 1500,
            state: PortState::Up,
            thread: None,
        };
        let line = serde_json::to_string(&info).unwrap();
        assert_eq!(line.matches("\"mac\"").count(), 1, "{line}");
        assert_eq!(line.matches("\"mtu\"").count(), 1, "{line}");
        assert_eq!(serde_json::from_str::<PortInfo>(&line).unwrap(), info);
    }

    #[test]
    fn replies_round_trip() {
        for reply in [
            Reply::Ok(Payload::Done),
            Reply::Error(ApiError {
                message: "network x not found".into(),
            }),
            Reply::Ok(Payload::PortStats(vec![PortStats::default()])),
        ] {
            let line = serde_json::to_string(&reply).unwrap();
            assert_eq!(serde_json::from_str::<Reply>(&line).unwrap(), reply);
        }
    }

    #[test]
    fn a_tap_spec_without_port_security_fields_is_secured() {
        // What a state file written by an older yardd holds for a TAP.
        let old = r#"{"name":"c1","kind":"tap","net":"yard0","netns":"c1","ifname":"eth0","ip":"172.30.0.2/16"}"#;
        let spec: PortSpec = serde_json::from_str(old).unwrap();
        match spec.kind {
            PortKind::Tap {
                port_security,
                allowed_addresses,
                ..
            } => {
                assert!(port_security, "an old TAP with --ip gets port security");
                assert!(allowed_addresses.is_empty());
            }
            other => panic!("not a TAP: {other:?}"),
        }
    }
}
