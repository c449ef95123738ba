//! Interface configuration over rtnetlink in the current thread's network
//! namespace: MAC, MTU, IPv4 address, link state, default route, alias,
//! veth pairs and link deletion — what `ip link/addr/route` would do,
//! without shelling out to `ip` — and what an existing interface is
//! ([`link_facts`]: its kind, alias and TUN settings).
//!
//! Contract: every function opens its own `NETLINK_ROUTE` socket on the calling
//! thread, so it configures *that thread's* namespace; to configure a container,
//! call it inside [`crate::sys::netns::run_in_netns`]. Every request asks for an
//! acknowledgement and the kernel's error comes back as a [`NetconfError`] that
//! names the interface and the request ("eth0: netlink RTM_NEWADDR
//! 172.30.0.2/16: File exists"). Configuration is idempotent: addresses and the
//! default route are added with replace semantics ([`configure_link`]) or only
//! where missing ([`configure_link_keeping`]), so running it twice succeeds.
//!
//! Netlink approach: a small rtnetlink message builder of our own — `nlmsghdr`
//! followed by a fixed `ifinfomsg`/`ifaddrmsg`/`rtmsg` header and aligned
//! `rtattr`s — rather than `netlink-packet-route`, whose API changes between
//! versions. Five request kinds with a handful of attributes each do not justify
//! that dependency, and the byte layout is spelled out here next to its use.
//! Sockets are created with safe `nix` calls, so this module has no `unsafe`.
//!
//! Abbreviations: `nlmsghdr` is the netlink message header; `rtattr` a
//! type-length-value attribute; `ifi`/`ifa`/`rtm` the link/address/route headers.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{
    bind, recv, send, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol,
    SockType,
};
use yard_ctl::ifname::IfNameError;

/// What to configure on one interface. `None` fields are left as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkConfig<'a> {
    /// The interface, in the current network namespace.
    pub ifname: &'a str,
    /// MAC address to set.
    pub mac: Option<[u8; 6]>,
    /// MTU to set.
    pub mtu: Option<u32>,
    /// Transmit queue length (`IFLA_TXQLEN`) to set. On a TAP this is the
    /// queue of frames the container sent that yardd has not read yet.
    pub txqlen: Option<u32>,
    /// IPv4 address and prefix length to add (replacing an identical one).
    pub addr: Option<(Ipv4Addr, u8)>,
    /// Gateway of the default route to add through this interface (replacing an
    /// existing default route).
    pub default_gateway: Option<Ipv4Addr>,
}

/// Why configuring an interface failed.
#[derive(Debug, thiserror::Error)]
pub enum NetconfError {
    /// The netlink socket could not be opened or used.
    #[error("netlink socket: {}", .0.desc())]
    Socket(Errno),
    /// The interface does not exist in this network namespace.
    #[error("{ifname}: no such interface in this network namespace")]
    NoSuchInterface {
        /// The interface asked for.
        ifname: String,
    },
    /// The kernel refused a request.
    #[error("{ifname}: netlink {op}: {}", .errno.desc())]
    Netlink {
        /// The interface concerned.
        ifname: String,
        /// The request, e.g. `RTM_NEWADDR 172.30.0.2/16`.
        op: String,
        /// The kernel's error.
        errno: Errno,
    },
    /// The kernel's reply could not be parsed.
    #[error("{ifname}: netlink {op}: malformed reply ({detail})")]
    Malformed {
        /// The interface concerned.
        ifname: String,
        /// The request.
        op: String,
        /// What was wrong with the reply.
        detail: &'static str,
    },
    /// The configuration itself is invalid.
    #[error("{ifname}: {detail}")]
    Invalid {
        /// The interface concerned.
        ifname: String,
        /// What is wrong.
        detail: String,
    },
    /// The interface has no 6-byte hardware address (not Ethernet-like).
    #[error("{ifname}: has no Ethernet MAC address")]
    NoMac {
        /// The interface concerned.
        ifname: String,
    },
}

/// Configures `cfg.ifname` in the current thread's network namespace: sets its
/// MAC and MTU, brings it and `lo` up, adds the address (replace semantics) and
/// the default route via the gateway (replacing an existing default route).
pub fn configure_link(cfg: &LinkConfig<'_>) -> Result<(), NetconfError> {
    configure(cfg, Existing::Replace)
}

/// Configures an interface that yardd takes over again with what is on it
/// kept: MAC, MTU, transmit queue and the up state are set as
/// [`configure_link`] sets them, but the address and the default route are
/// added only when missing (an identical address, or any default route of
/// the same metric, is left as it is), and nothing else on the interface —
/// addresses, routes, IPv6 — is touched.
pub fn configure_link_keeping(cfg: &LinkConfig<'_>) -> Result<(), NetconfError> {
    configure(cfg, Existing::Keep)
}

/// What an address or default route that exists already means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Existing {
    /// Replace it with ours.
    Replace,
    /// Keep it: ours is added only when nothing is there (`NLM_F_EXCL`, and
    /// `EEXIST` is success).
    Keep,
}

impl Existing {
    /// The `NLM_F_*` flags of an add request.
    fn flags(self) -> u16 {
        let how = match self {
            Existing::Replace => libc::NLM_F_REPLACE,
            Existing::Keep => libc::NLM_F_EXCL,
        };
        (libc::NLM_F_CREATE | how) as u16
    }

    /// Whether an add request's result is success.
    fn accept(self, result: Result<Vec<Reply>, NetconfError>) -> Result<(), NetconfError> {
        match result {
            Err(NetconfError::Netlink {
                errno: Errno::EEXIST,
                ..
            }) if self == Existing::Keep => Ok(()),
            other => other.map(drop),
        }
    }
}

fn configure(cfg: &LinkConfig<'_>, existing: Existing) -> Result<(), NetconfError> {
    let ifname = cfg.ifname;
    if let Some((_, prefix)) = cfg.addr {
        if prefix > 32 {
            return Err(NetconfError::Invalid {
                ifname: ifname.to_owned(),
                detail: format!("IPv4 prefix length /{prefix} is longer than 32"),
            });
        }
    }
    let mut nl = RtNetlink::open()?;
    let index = nl.get_link(ifname)?.index;

    if let Some(mac) = cfg.mac {
        let mut msg = Message::new(libc::RTM_NEWLINK, 0);
        msg.push(&ifinfomsg(index, 0, 0));
        msg.attr(libc::IFLA_ADDRESS, &mac);
        nl.request(
            msg,
            ifname,
            &format!("RTM_NEWLINK address {}", fmt_mac(&mac)),
        )?;
    }
    if let Some(mtu) = cfg.mtu {
        let mut msg = Message::new(libc::RTM_NEWLINK, 0);
        msg.push(&ifinfomsg(index, 0, 0));
        msg.attr(libc::IFLA_MTU, &mtu.to_ne_bytes());
        nl.request(msg, ifname, &format!("RTM_NEWLINK mtu {mtu}"))?;
    }
    if let Some(txqlen) = cfg.txqlen {
        let mut msg = Message::new(libc::RTM_NEWLINK, 0);
        msg.push(&ifinfomsg(index, 0, 0));
        msg.attr(IFLA_TXQLEN, &txqlen.to_ne_bytes());
        nl.request(msg, ifname, &format!("RTM_NEWLINK txqlen {txqlen}"))?;
    }
    nl.set_up(index, ifname)?;
    let lo = nl.get_link("lo")?.index;
    nl.set_up(lo, "lo")?;

    if let Some((addr, prefix)) = cfg.addr {
        let mut msg = Message::new(libc::RTM_NEWADDR, existing.flags());
        msg.push(&ifaddrmsg(index, prefix));
        msg.attr(libc::IFA_LOCAL, &addr.octets());
        msg.attr(libc::IFA_ADDRESS, &addr.octets());
        existing.accept(nl.request(msg, ifname, &format!("RTM_NEWADDR {addr}/{prefix}")))?;
    }
    if let Some(gateway) = cfg.default_gateway {
        let mut msg = Message::new(libc::RTM_NEWROUTE, existing.flags());
        msg.push(&rtmsg_default_v4());
        msg.attr(libc::RTA_GATEWAY, &gateway.octets());
        msg.attr(libc::RTA_OIF, &index.to_ne_bytes());
        existing.accept(nl.request(msg, ifname, &format!("RTM_NEWROUTE default via {gateway}")))?;
    }
    Ok(())
}

/// The transmit queue length of the TAPs yardd creates: room for bursts
/// from the container while the datapath is busy (the kernel's default is
/// 1000 frames).
pub const TAP_TXQLEN: u32 = 4096;

/// `IFLA_TXQLEN` from `linux/if_link.h`.
const IFLA_TXQLEN: u16 = 13;

/// The current MAC address of `ifname` in the current thread's network namespace.
pub fn link_mac(ifname: &str) -> Result<[u8; 6], NetconfError> {
    RtNetlink::open()?
        .get_link(ifname)?
        .mac
        .ok_or_else(|| NetconfError::NoMac {
            ifname: ifname.to_owned(),
        })
}

/// What the kernel says about an existing interface, for deciding whether
/// yardd may take it over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkFacts {
    /// The link kind (`IFLA_INFO_KIND`: `tun` for TUN and TAP devices,
    /// `veth`, `dummy`...); `None` for a device without one, such as `lo`.
    pub kind: Option<String>,
    /// The interface alias (`IFLA_IFALIAS`, `ip link set IF alias TEXT`).
    pub alias: Option<String>,
    /// For a TUN/TAP device, its settings.
    pub tun: Option<TunFacts>,
    /// Whether the link has carrier (`IFF_LOWER_UP`): for a TAP, whether an
    /// fd is attached.
    pub carrier: bool,
}

/// The settings of a TUN/TAP device (`IFLA_INFO_DATA` of kind `tun`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TunFacts {
    /// A TAP (Ethernet frames), not a TUN (IP packets).
    pub tap: bool,
    /// Frames carry the 4-byte packet-information prefix (no `IFF_NO_PI`).
    pub pi: bool,
    /// Frames carry a virtio-net header (`IFF_VNET_HDR`).
    pub vnet_hdr: bool,
    /// The device outlives its fds (`TUNSETPERSIST`).
    pub persist: bool,
    /// Several queues (`IFF_MULTI_QUEUE`).
    pub multi_queue: bool,
    /// The uid allowed to attach (`TUNSETOWNER`), when one is set.
    pub owner: Option<u32>,
    /// The gid allowed to attach (`TUNSETGROUP`), when one is set.
    pub group: Option<u32>,
    /// How many fds are attached, when the kernel says.
    pub queues: Option<u32>,
}

/// What the kernel says about `ifname` in the current thread's network
/// namespace; `Ok(None)` when there is no such interface.
pub fn link_facts(ifname: &str) -> Result<Option<LinkFacts>, NetconfError> {
    match RtNetlink::open()?.get_link(ifname) {
        Ok(info) => Ok(Some(info.facts)),
        Err(NetconfError::NoSuchInterface { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Sets the alias of `ifname` (`ip link set IF alias TEXT`), which yardd uses
/// to mark the TAPs it made.
pub fn set_alias(ifname: &str, alias: &str) -> Result<(), NetconfError> {
    let mut nl = RtNetlink::open()?;
    let index = nl.get_link(ifname)?.index;
    let mut msg = Message::new(libc::RTM_NEWLINK, 0);
    msg.push(&ifinfomsg(index, 0, 0));
    msg.attr(IFLA_IFALIAS, alias.as_bytes());
    nl.request(msg, ifname, &format!("RTM_NEWLINK alias {alias:?}"))
        .map(drop)
}

/// A veth pair to create in the current thread's network namespace: yardd
/// keeps `host`; `peer` is for a container engine to move into a
/// container, so it gets the container's MAC. Both get `mtu`; neither is
/// brought up here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VethPair<'a> {
    /// The end yardd reads and writes.
    pub host: &'a str,
    /// The end handed over.
    pub peer: &'a str,
    /// The peer's MAC address.
    pub peer_mac: [u8; 6],
    /// MTU of both ends.
    pub mtu: u32,
}

/// Creates `pair` (`ip link add HOST mtu M type veth peer name PEER address
/// MAC mtu M`); fails with `EEXIST` when either name is taken.
pub fn create_veth(pair: &VethPair<'_>) -> Result<(), NetconfError> {
    for name in [pair.host, pair.peer] {
        check_name(name)?;
    }
    let mtu = pair.mtu.to_ne_bytes();
    // VETH_INFO_PEER carries the peer's own ifinfomsg and attributes.
    let mut peer = Attrs::default();
    peer.push(&ifinfomsg(0, 0, 0));
    peer.attr(libc::IFLA_IFNAME, &nul_terminated(pair.peer));
    peer.attr(libc::IFLA_ADDRESS, &pair.peer_mac);
    peer.attr(libc::IFLA_MTU, &mtu);
    let mut data = Attrs::default();
    data.attr(VETH_INFO_PEER, &peer.0);
    let mut info = Attrs::default();
    info.attr(IFLA_INFO_KIND, b"veth");
    info.attr(IFLA_INFO_DATA, &data.0);

    let flags = (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
    let mut msg = Message::new(libc::RTM_NEWLINK, flags);
    msg.push(&ifinfomsg(0, 0, 0));
    msg.attr(libc::IFLA_IFNAME, &nul_terminated(pair.host));
    msg.attr(libc::IFLA_MTU, &mtu);
    msg.attr(IFLA_LINKINFO, &info.0);
    RtNetlink::open()?
        .request(
            msg,
            pair.host,
            &format!("RTM_NEWLINK type veth peer {}", pair.peer),
        )
        .map(drop)
}

/// Brings `ifname` administratively up (and nothing else).
pub fn set_link_up(ifname: &str) -> Result<(), NetconfError> {
    let mut nl = RtNetlink::open()?;
    let index = nl.get_link(ifname)?.index;
    nl.set_up(index, ifname)
}

/// Deletes `ifname` (`ip link del`); a veth takes its peer with it.
/// `Ok(false)` when there is no such interface.
pub fn delete_link(ifname: &str) -> Result<bool, NetconfError> {
    let mut nl = RtNetlink::open()?;
    let index = match nl.get_link(ifname) {
        Ok(info) => info.index,
        Err(NetconfError::NoSuchInterface { .. }) => return Ok(false),
        Err(e) => return Err(e),
    };
    let mut msg = Message::new(libc::RTM_DELLINK, 0);
    msg.push(&ifinfomsg(index, 0, 0));
    match nl.request(msg, ifname, "RTM_DELLINK") {
        Ok(_) => Ok(true),
        Err(NetconfError::Netlink {
            errno: Errno::ENODEV,
            ..
        }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `VETH_INFO_PEER` from `linux/veth.h`.
const VETH_INFO_PEER: u16 = 1;

/// `name` with its terminating NUL, as `IFLA_IFNAME` carries it.
fn nul_terminated(name: &str) -> Vec<u8> {
    let mut bytes = name.as_bytes().to_vec();
    bytes.push(0);
    bytes
}

/// `IFLA_IFALIAS`, `IFLA_LINKINFO` and the nested `IFLA_INFO_*` and
/// `IFLA_TUN_*` attributes, from `linux/if_link.h` (the libc crate lacks
/// the `IFLA_TUN_*` ones).
const IFLA_IFALIAS: u16 = 20;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_TUN_OWNER: u16 = 1;
const IFLA_TUN_GROUP: u16 = 2;
const IFLA_TUN_TYPE: u16 = 3;
const IFLA_TUN_PI: u16 = 4;
const IFLA_TUN_VNET_HDR: u16 = 5;
const IFLA_TUN_PERSIST: u16 = 6;
const IFLA_TUN_MULTI_QUEUE: u16 = 7;
const IFLA_TUN_NUM_QUEUES: u16 = 8;
/// The attribute type without the `NLA_F_NESTED`/`NLA_F_NET_BYTEORDER` bits.
const NLA_TYPE_MASK: u16 = 0x3fff;

/// A NUL-terminated (or not) netlink string attribute.
fn attr_string(value: &[u8]) -> String {
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end]).into_owned()
}

/// The [`LinkFacts`] in the attributes of an `RTM_NEWLINK` reply (after the
/// `ifinfomsg`), given its `ifi_flags`.
fn parse_link_facts(ifi_flags: u32, data: &[u8]) -> LinkFacts {
    let mut facts = LinkFacts {
        carrier: ifi_flags & libc::IFF_LOWER_UP as u32 != 0,
        ..LinkFacts::default()
    };
    for (kind, value) in attrs(data) {
        match kind & NLA_TYPE_MASK {
            IFLA_IFALIAS => facts.alias = Some(attr_string(value)).filter(|a| !a.is_empty()),
            IFLA_LINKINFO => {
                for (kind, value) in attrs(value) {
                    match kind & NLA_TYPE_MASK {
                        IFLA_INFO_KIND => facts.kind = Some(attr_string(value)),
                        IFLA_INFO_DATA => facts.tun = Some(parse_tun_facts(value)),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if facts.kind.as_deref() != Some("tun") {
        facts.tun = None;
    }
    facts
}

/// The `IFLA_TUN_*` attributes of a `tun` link.
fn parse_tun_facts(data: &[u8]) -> TunFacts {
    let mut tun = TunFacts::default();
    let u32_of = |v: &[u8]| <[u8; 4]>::try_from(v).ok().map(u32::from_ne_bytes);
    let flag = |v: &[u8]| v.first().is_some_and(|&b| b != 0);
    for (kind, value) in attrs(data) {
        match kind & NLA_TYPE_MASK {
            IFLA_TUN_OWNER => tun.owner = u32_of(value),
            IFLA_TUN_GROUP => tun.group = u32_of(value),
            IFLA_TUN_TYPE => {
                tun.tap = value.first().map(|&t| libc::c_int::from(t)) == Some(libc::IFF_TAP)
            }
            IFLA_TUN_PI => tun.pi = flag(value),
            IFLA_TUN_VNET_HDR => tun.vnet_hdr = flag(value),
            IFLA_TUN_PERSIST => tun.persist = flag(value),
            IFLA_TUN_MULTI_QUEUE => tun.multi_queue = flag(value),
            IFLA_TUN_NUM_QUEUES => tun.queues = u32_of(value),
            _ => {}
        }
    }
    tun
}

fn fmt_mac(mac: &[u8; 6]) -> String {
    let parts: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
    parts.join(":")
}

// ---- wire format ---------------------------------------------------------

/// `sizeof(struct nlmsghdr)`: len u32, type u16, flags u16, seq u32, pid u32.
const NLMSG_HDR_LEN: usize = 16;
/// `sizeof(struct ifinfomsg)`: family u8, pad u8, type u16, index i32, flags u32, change u32.
const IFINFOMSG_LEN: usize = 16;
/// `sizeof(struct rtattr)`: len u16, type u16.
const RTATTR_HDR_LEN: usize = 4;
/// Receive buffer: one reply to a single-link request fits with room to spare.
const RECV_BUF_LEN: usize = 64 * 1024;

/// Netlink messages and attributes are padded to 4 bytes.
const fn align4(len: usize) -> usize {
    (len + 3) & !3
}

/// A netlink request being built: header, fixed part, attributes.
struct Message {
    buf: Vec<u8>,
}

impl Message {
    /// A request of type `kind` with `NLM_F_REQUEST | NLM_F_ACK | extra_flags`;
    /// length and sequence number are filled in when sent.
    fn new(kind: u16, extra_flags: u16) -> Message {
        let flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16 | extra_flags;
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set in `finish`
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // sequence, set in `finish`
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it
        Message { buf }
    }

    /// Appends the fixed family header (a multiple of 4 bytes long).
    fn push(&mut self, fixed: &[u8]) {
        debug_assert_eq!(fixed.len() % 4, 0);
        self.buf.extend_from_slice(fixed);
    }

    /// Appends one attribute, padded.
    fn attr(&mut self, kind: u16, data: &[u8]) {
        put_attr(&mut self.buf, kind, data);
    }

    /// The finished bytes with length and sequence number set.
    fn finish(mut self, seq: u32) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }
}

/// The payload of a nested attribute being built: a fixed header where the
/// kernel wants one, then aligned attributes.
#[derive(Default)]
struct Attrs(Vec<u8>);

impl Attrs {
    fn push(&mut self, fixed: &[u8]) {
        debug_assert_eq!(fixed.len() % 4, 0);
        self.0.extend_from_slice(fixed);
    }

    fn attr(&mut self, kind: u16, data: &[u8]) {
        put_attr(&mut self.0, kind, data);
    }
}

/// Appends one `rtattr` (header, `data`, padding) to `buf`.
fn put_attr(buf: &mut Vec<u8>, kind: u16, data: &[u8]) {
    let len = (RTATTR_HDR_LEN + data.len()) as u16;
    buf.extend_from_slice(&len.to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(data);
    buf.resize(align4(buf.len()), 0);
}

/// `struct ifinfomsg` for link `index` (0: look up by `IFLA_IFNAME`).
fn ifinfomsg(index: u32, flags: u32, change: u32) -> [u8; IFINFOMSG_LEN] {
    let mut m = [0u8; IFINFOMSG_LEN];
    m[0] = libc::AF_UNSPEC as u8;
    m[4..8].copy_from_slice(&index.to_ne_bytes());
    m[8..12].copy_from_slice(&flags.to_ne_bytes());
    m[12..16].copy_from_slice(&change.to_ne_bytes());
    m
}

/// `struct ifaddrmsg` for an IPv4 address of universe scope on link `index`.
fn ifaddrmsg(index: u32, prefix: u8) -> [u8; 8] {
    let mut m = [0u8; 8];
    m[0] = libc::AF_INET as u8;
    m[1] = prefix;
    // m[2]: flags 0; m[3]: scope RT_SCOPE_UNIVERSE (0).
    m[3] = libc::RT_SCOPE_UNIVERSE;
    m[4..8].copy_from_slice(&index.to_ne_bytes());
    m
}

/// `struct rtmsg` for the IPv4 default route (0.0.0.0/0) in the main table,
/// as `ip route add` makes it.
fn rtmsg_default_v4() -> [u8; 12] {
    [
        libc::AF_INET as u8,
        0, // dst_len: default route
        0, // src_len
        0, // tos
        libc::RT_TABLE_MAIN,
        libc::RTPROT_BOOT,
        libc::RT_SCOPE_UNIVERSE,
        libc::RTN_UNICAST,
        0,
        0,
        0,
        0, // flags
    ]
}

/// Iterates the `(type, payload)` attributes in `data`; stops at the first
/// malformed one.
fn attrs(mut data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if data.len() < RTATTR_HDR_LEN {
            return None;
        }
        let len = u16::from_ne_bytes([data[0], data[1]]) as usize;
        let kind = u16::from_ne_bytes([data[2], data[3]]);
        if len < RTATTR_HDR_LEN || len > data.len() {
            return None;
        }
        let payload = &data[RTATTR_HDR_LEN..len];
        data = &data[align4(len).min(data.len())..];
        Some((kind, payload))
    })
}

/// Refuses a name the kernel would refuse, saying why.
fn check_name(ifname: &str) -> Result<(), NetconfError> {
    yard_ctl::ifname::check_ifname(ifname).map_err(|e| {
        let detail = match e {
            IfNameError::Empty | IfNameError::TooLong => format!(
                "not a valid interface name (1 to {} bytes)",
                libc::IFNAMSIZ - 1
            ),
            other => format!("not a valid interface name: {other}"),
        };
        NetconfError::Invalid {
            ifname: ifname.to_owned(),
            detail,
        }
    })
}

/// One reply message: its type and the bytes after the `nlmsghdr`.
struct Reply {
    kind: u16,
    payload: Vec<u8>,
}

/// What `RTM_GETLINK` tells us about a link.
struct LinkInfo {
    index: u32,
    mac: Option<[u8; 6]>,
    facts: LinkFacts,
}

/// A `NETLINK_ROUTE` socket in the current thread's network namespace.
struct RtNetlink {
    fd: OwnedFd,
    seq: u32,
}

impl RtNetlink {
    fn open() -> Result<RtNetlink, NetconfError> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )
        .map_err(NetconfError::Socket)?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0)).map_err(NetconfError::Socket)?;
        Ok(RtNetlink { fd, seq: 0 })
    }

    /// Sends `msg` and collects the replies up to the kernel's acknowledgement;
    /// a negative acknowledgement becomes [`NetconfError::Netlink`].
    fn request(
        &mut self,
        msg: Message,
        ifname: &str,
        op: &str,
    ) -> Result<Vec<Reply>, NetconfError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let bytes = msg.finish(seq);
        let netlink_err = |errno: Errno| NetconfError::Netlink {
            ifname: ifname.to_owned(),
            op: op.to_owned(),
            errno,
        };
        let malformed = |detail| NetconfError::Malformed {
            ifname: ifname.to_owned(),
            op: op.to_owned(),
            detail,
        };
        let sent = send(self.fd.as_raw_fd(), &bytes, MsgFlags::empty()).map_err(netlink_err)?;
        if sent != bytes.len() {
            return Err(malformed("short send"));
        }

        let mut replies = Vec::new();
        let mut buf = vec![0u8; RECV_BUF_LEN];
        loop {
            let n = loop {
                match recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                    Err(Errno::EINTR) => continue,
                    other => break other.map_err(netlink_err)?,
                }
            };
            let mut data = &buf[..n];
            while !data.is_empty() {
                if data.len() < NLMSG_HDR_LEN {
                    return Err(malformed("truncated header"));
                }
                let len = u32::from_ne_bytes(data[0..4].try_into().unwrap()) as usize;
                let kind = u16::from_ne_bytes([data[4], data[5]]);
                let msg_seq = u32::from_ne_bytes(data[8..12].try_into().unwrap());
                if len < NLMSG_HDR_LEN || len > data.len() {
                    return Err(malformed("bad message length"));
                }
                let payload = &data[NLMSG_HDR_LEN..len];
                data = &data[align4(len).min(data.len())..];
                if msg_seq != seq {
                    continue; // a stale reply to an earlier request
                }
                match kind as libc::c_int {
                    libc::NLMSG_ERROR => {
                        if payload.len() < 4 {
                            return Err(malformed("truncated error"));
                        }
                        let code = i32::from_ne_bytes(payload[0..4].try_into().unwrap());
                        return if code == 0 {
                            Ok(replies)
                        } else {
                            Err(netlink_err(Errno::from_raw(-code)))
                        };
                    }
                    libc::NLMSG_DONE | libc::NLMSG_NOOP => {}
                    _ => replies.push(Reply {
                        kind,
                        payload: payload.to_vec(),
                    }),
                }
            }
        }
    }

    /// Looks `ifname` up by name.
    fn get_link(&mut self, ifname: &str) -> Result<LinkInfo, NetconfError> {
        check_name(ifname)?;
        let mut msg = Message::new(libc::RTM_GETLINK, 0);
        msg.push(&ifinfomsg(0, 0, 0));
        msg.attr(libc::IFLA_IFNAME, &nul_terminated(ifname));
        let replies = match self.request(msg, ifname, "RTM_GETLINK") {
            Err(NetconfError::Netlink {
                errno: Errno::ENODEV,
                ..
            }) => {
                return Err(NetconfError::NoSuchInterface {
                    ifname: ifname.to_owned(),
                })
            }
            other => other?,
        };
        let reply = replies
            .iter()
            .find(|r| r.kind == libc::RTM_NEWLINK)
            .ok_or_else(|| NetconfError::Malformed {
                ifname: ifname.to_owned(),
                op: "RTM_GETLINK".to_owned(),
                detail: "no RTM_NEWLINK in the reply",
            })?;
        if reply.payload.len() < IFINFOMSG_LEN {
            return Err(NetconfError::Malformed {
                ifname: ifname.to_owned(),
                op: "RTM_GETLINK".to_owned(),
                detail: "truncated ifinfomsg",
            });
        }
        let index = u32::from_ne_bytes(reply.payload[4..8].try_into().unwrap());
        let flags = u32::from_ne_bytes(reply.payload[8..12].try_into().unwrap());
        let mac = attrs(&reply.payload[IFINFOMSG_LEN..])
            .find(|&(kind, _)| kind == libc::IFLA_ADDRESS)
            .and_then(|(_, value)| <[u8; 6]>::try_from(value).ok());
        let facts = parse_link_facts(flags, &reply.payload[IFINFOMSG_LEN..]);
        Ok(LinkInfo { index, mac, facts })
    }

    /// Brings link `index` administratively up.
    fn set_up(&mut self, index: u32, ifname: &str) -> Result<(), NetconfError> {
        let up = libc::IFF_UP as u32;
        let mut msg = Message::new(libc::RTM_NEWLINK, 0);
        msg.push(&ifinfomsg(index, up, up));
        self.request(msg, ifname, "RTM_NEWLINK up").map(drop)
    }
}

#[cfg(test)]
mod tests;
