//! Interface configuration over rtnetlink in the current thread's network
//! namespace: MAC, MTU, IPv4 address, link state, default route — what
//! `ip link/addr/route` would do, without shelling out to `ip`.
//!
//! Contract: every function opens its own `NETLINK_ROUTE` socket on the calling
//! thread, so it configures *that thread's* namespace; to configure a container,
//! call it inside [`crate::sys::netns::run_in_netns`]. Every request asks for an
//! acknowledgement and the kernel's error comes back as a [`NetconfError`] that
//! names the interface and the request ("eth0: netlink RTM_NEWADDR
//! 172.30.0.2/16: File exists"). Configuration is idempotent: addresses and the
//! default route are added with replace semantics, so running it twice succeeds.
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
        let mut msg = Message::new(
            libc::RTM_NEWADDR,
            (libc::NLM_F_CREATE | libc::NLM_F_REPLACE) as u16,
        );
        msg.push(&ifaddrmsg(index, prefix));
        msg.attr(libc::IFA_LOCAL, &addr.octets());
        msg.attr(libc::IFA_ADDRESS, &addr.octets());
        nl.request(msg, ifname, &format!("RTM_NEWADDR {addr}/{prefix}"))?;
    }
    if let Some(gateway) = cfg.default_gateway {
        let mut msg = Message::new(
            libc::RTM_NEWROUTE,
            (libc::NLM_F_CREATE | libc::NLM_F_REPLACE) as u16,
        );
        msg.push(&rtmsg_default_v4());
        msg.attr(libc::RTA_GATEWAY, &gateway.octets());
        msg.attr(libc::RTA_OIF, &index.to_ne_bytes());
        nl.request(msg, ifname, &format!("RTM_NEWROUTE default via {gateway}"))?;
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
        let len = (RTATTR_HDR_LEN + data.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.buf.resize(align4(self.buf.len()), 0);
    }

    /// The finished bytes with length and sequence number set.
    fn finish(mut self, seq: u32) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }
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

/// One reply message: its type and the bytes after the `nlmsghdr`.
struct Reply {
    kind: u16,
    payload: Vec<u8>,
}

/// What `RTM_GETLINK` tells us about a link.
struct LinkInfo {
    index: u32,
    mac: Option<[u8; 6]>,
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
        if let Err(e) = yard_ctl::ifname::check_ifname(ifname) {
            let detail = match e {
                IfNameError::Empty | IfNameError::TooLong => format!(
                    "not a valid interface name (1 to {} bytes)",
                    libc::IFNAMSIZ - 1
                ),
                other => format!("not a valid interface name: {other}"),
            };
            return Err(NetconfError::Invalid {
                ifname: ifname.to_owned(),
                detail,
            });
        }
        let mut msg = Message::new(libc::RTM_GETLINK, 0);
        msg.push(&ifinfomsg(0, 0, 0));
        let mut name = ifname.as_bytes().to_vec();
        name.push(0);
        msg.attr(libc::IFLA_IFNAME, &name);
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
        let mac = attrs(&reply.payload[IFINFOMSG_LEN..])
            .find(|&(kind, _)| kind == libc::IFLA_ADDRESS)
            .and_then(|(_, value)| <[u8; 6]>::try_from(value).ok());
        Ok(LinkInfo { index, mac })
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
mod tests {
    use super::*;
    use crate::sys::netns::run_in_netns;
    use crate::sys::testutil::{ip_json, is_root, Netns};
    use crate::sys::{interface_mtu, open_tap};

    #[test]
    fn message_layout() {
        let mut msg = Message::new(libc::RTM_NEWADDR, libc::NLM_F_CREATE as u16);
        msg.push(&ifaddrmsg(7, 16));
        msg.attr(libc::IFA_LOCAL, &[172, 30, 0, 2]);
        msg.attr(libc::IFLA_IFNAME, b"eth0\0"); // 9 bytes: padded to 12
        let bytes = msg.finish(42);
        assert_eq!(bytes.len(), 16 + 8 + 8 + 12);
        assert_eq!(u32::from_ne_bytes(bytes[0..4].try_into().unwrap()), 44);
        assert_eq!(u16::from_ne_bytes([bytes[4], bytes[5]]), libc::RTM_NEWADDR);
        let flags = u16::from_ne_bytes([bytes[6], bytes[7]]) as libc::c_int;
        assert_eq!(
            flags,
            libc::NLM_F_REQUEST | libc::NLM_F_ACK | libc::NLM_F_CREATE
        );
        assert_eq!(u32::from_ne_bytes(bytes[8..12].try_into().unwrap()), 42);
        assert_eq!(bytes[16], libc::AF_INET as u8);
        assert_eq!(bytes[17], 16);
        assert_eq!(u32::from_ne_bytes(bytes[20..24].try_into().unwrap()), 7);
        let parsed: Vec<_> = attrs(&bytes[24..]).collect();
        assert_eq!(
            parsed,
            vec![
                (libc::IFA_LOCAL, &[172u8, 30, 0, 2][..]),
                (libc::IFLA_IFNAME, &b"eth0\0"[..])
            ]
        );
        // A truncated attribute ends the iteration instead of panicking.
        assert_eq!(attrs(&[8, 0, 1, 0, 1]).count(), 0);
    }

    #[test]
    fn errors_name_interface_and_request() {
        let err = NetconfError::Netlink {
            ifname: "eth0".into(),
            op: "RTM_NEWADDR 172.30.0.2/16".into(),
            errno: Errno::EEXIST,
        };
        assert_eq!(
            err.to_string(),
            "eth0: netlink RTM_NEWADDR 172.30.0.2/16: File exists"
        );
    }

    #[test]
    fn configure_tap_in_netns() {
        // Privileged: creates a network namespace and a TAP inside it.
        if !is_root() {
            eprintln!("skipping configure_tap_in_netns: needs root");
            return;
        }
        let ns = Netns::new();
        let mac = [0x02, 0x59, 0x53, 0x00, 0x00, 0x02];
        let (tap, mtu, reported_mac) = run_in_netns(&ns.netns_ref(), move || {
            let tap = open_tap("yst0").unwrap();
            let cfg = LinkConfig {
                ifname: "yst0",
                mac: Some(mac),
                mtu: Some(9000),
                txqlen: Some(TAP_TXQLEN),
                addr: Some(("10.77.0.2".parse().unwrap(), 24)),
                default_gateway: Some("10.77.0.1".parse().unwrap()),
            };
            configure_link(&cfg).unwrap();
            // Replace semantics: configuring again succeeds and changes nothing.
            configure_link(&cfg).unwrap();
            (
                tap,
                interface_mtu("yst0").unwrap(),
                link_mac("yst0").unwrap(),
            )
        })
        .unwrap();
        assert_eq!(mtu, 9000);
        assert_eq!(reported_mac, mac);
        let shown = std::process::Command::new("ip")
            .args(["-n", ns.name(), "link", "show", "yst0"])
            .output()
            .unwrap();
        let shown = String::from_utf8_lossy(&shown.stdout);
        assert!(shown.contains(&format!("qlen {TAP_TXQLEN}")), "{shown}");

        let links = ip_json(ns.name(), &["link", "show"]);
        let link = |name: &str| {
            links
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["ifname"] == name)
                .unwrap_or_else(|| panic!("{name} missing in {links}"))
                .clone()
        };
        let yst0 = link("yst0");
        assert_eq!(yst0["mtu"], 9000);
        assert_eq!(yst0["address"], "02:59:53:00:00:02");
        let has_up =
            |l: &serde_json::Value| l["flags"].as_array().unwrap().iter().any(|f| f == "UP");
        assert!(has_up(&yst0), "{yst0}");
        assert!(has_up(&link("lo")), "{links}");

        let addrs = ip_json(ns.name(), &["addr", "show", "dev", "yst0"]);
        let v4: Vec<_> = addrs[0]["addr_info"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["family"] == "inet")
            .collect();
        assert_eq!(v4.len(), 1, "{addrs}");
        assert_eq!(v4[0]["local"], "10.77.0.2");
        assert_eq!(v4[0]["prefixlen"], 24);

        let routes = ip_json(ns.name(), &["route", "show"]);
        let default: Vec<_> = routes
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["dst"] == "default")
            .collect();
        assert_eq!(default.len(), 1, "{routes}");
        assert_eq!(default[0]["gateway"], "10.77.0.1");
        assert_eq!(default[0]["dev"], "yst0");
        drop(tap);
    }

    #[test]
    fn missing_interface_and_kernel_errors_are_named() {
        // Privileged: creates a network namespace.
        if !is_root() {
            eprintln!("skipping missing_interface_and_kernel_errors_are_named: needs root");
            return;
        }
        let ns = Netns::new();
        let (missing, mac, unreachable) = run_in_netns(&ns.netns_ref(), || {
            let missing = link_mac("nope0").unwrap_err();
            let tap = open_tap("yst1").unwrap();
            let mac = link_mac("yst1").unwrap();
            // A gateway outside every connected subnet is refused by the kernel.
            let unreachable = configure_link(&LinkConfig {
                ifname: "yst1",
                mac: None,
                mtu: None,
                txqlen: None,
                addr: Some(("10.79.0.2".parse().unwrap(), 24)),
                default_gateway: Some("192.0.2.1".parse().unwrap()),
            })
            .unwrap_err();
            drop(tap);
            (missing, mac, unreachable)
        })
        .unwrap();
        assert_eq!(
            missing.to_string(),
            "nope0: no such interface in this network namespace"
        );
        assert_ne!(mac, [0; 6]);
        assert!(
            unreachable
                .to_string()
                .starts_with("yst1: netlink RTM_NEWROUTE default via 192.0.2.1: "),
            "{unreachable}"
        );
    }
}
