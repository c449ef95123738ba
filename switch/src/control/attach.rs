//! Attaching ports: turning a [`PortSpec`] into a live [`Port`] (slow path,
//! on the control thread).
//!
//! A TAP is created inside its namespace on a short-lived thread that entered
//! it (through the namespace helper process instead when yardd is rootless,
//! [`netns_helper`]), then configured there over netlink as a Docker endpoint is: MAC, MTU,
//! address, link and `lo` up, default route via the network's gateway. An
//! existing interface is opened through AF_PACKET. Nothing here runs per frame.
//! What fails is an [`AttachError`] naming the port (or uplink) and the
//! device. A QEMU port's socket is bound by [`crate::control::qemu`].
//!
//! TAPs are persistent and outlive yardd ([`crate::control::adopt`]): `port
//! add` creates a new one ([`TapMode::Create`]); restoring the saved
//! configuration re-adopts yardd's own TAP where it is still there
//! ([`TapMode::CreateOrAdopt`]) and re-applies only what yardd owns (MAC, MTU,
//! up, its address and default route where missing).

use yard_ctl::api::{NetworkSpec, PortKind, PortSpec, UplinkKind, UplinkSpec};
use yard_ctl::{Ipv4Cidr, MacAddr};

use crate::control::adopt::{self, open_owned_tap, AdoptError, KeptTap, TapMode};
use crate::control::config::{default_mac, Config};
use crate::control::netns_helper::{self, HelperError, NetnsTask};
use crate::control::qemu::{self, QemuLink, QemuSocketError};
use crate::control::Object;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Weak};

use yard_tunnel::{overlay_mtu, Carrier, GreOptions, GRE_IN_UDP_PORT};

use crate::dataplane::bridge::security::PortSecurity;
use crate::dataplane::port::fd::FdPort;
use crate::dataplane::port::tunnel::{TunnelParams, TunnelPort, TunnelSocket};
use crate::dataplane::port::Port;
use crate::dataplane::threads::{Membership, TunnelBinding};
use crate::sys;
use crate::sys::netconf::{
    self, configure_link, configure_link_keeping, LinkConfig, NetconfError, VethPair,
};
use crate::sys::netns::{run_in_netns, NetnsError, NetnsRef};
use crate::sys::TapOpened;

/// Why a port's or the uplink's device could not be attached.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// The socket a tunnel sends and receives through could not be opened.
    #[error("port {port}: cannot open the tunnel socket: {error}")]
    TunnelSocket {
        /// The tunnel port.
        port: String,
        /// What failed.
        error: std::io::Error,
    },
    /// The port's network is not configured (the caller validates first, so
    /// this is a bug).
    #[error("port {port}: network {net} not found")]
    NoNetwork {
        /// The port.
        port: String,
        /// Its network.
        net: String,
    },
    /// A tunnel spec reached the device code (a bug).
    #[error("port {0}: tunnel ports are attached above")]
    Tunnel(String),
    /// The TAP could not be created.
    #[error("{owner}{}: cannot create TAP {ifname}: {error}", in_netns(.netns))]
    CreateTap {
        /// The port or uplink.
        owner: Object,
        /// The namespace it was created in; `None` for yardd's own.
        netns: Option<String>,
        /// The interface name.
        ifname: String,
        /// What failed.
        error: std::io::Error,
    },
    /// The new TAP could not be configured over netlink.
    #[error("{owner}{}: cannot configure {error}", in_netns(.netns))]
    ConfigureTap {
        /// The port or uplink.
        owner: Object,
        /// The namespace; `None` for yardd's own.
        netns: Option<String>,
        /// What failed (it names the interface).
        error: NetconfError,
    },
    /// An interface of the TAP's name exists and is not a TAP yardd may
    /// re-adopt, or the new TAP could not be made persistent.
    #[error("{owner}{}: {error}", in_netns(.netns))]
    Adopt {
        /// The port or uplink.
        owner: Object,
        /// The namespace; `None` for yardd's own.
        netns: Option<String>,
        /// What was found or what failed (it names the interface); boxed,
        /// as it is large and rare.
        error: Box<AdoptError>,
    },
    /// The namespace helper could not enter the namespace or make the TAP
    /// (rootless yardd).
    #[error("{}", helper_message(.owner, .error))]
    Helper {
        /// The port or uplink.
        owner: Object,
        /// What failed.
        error: HelperError,
    },
    /// The namespace could not be entered.
    #[error("{owner}: {error}")]
    Netns {
        /// The port or uplink.
        owner: Object,
        /// What failed (it names the namespace).
        error: NetnsError,
    },
    /// A veth port's pair could not be created or brought up.
    #[error("port {port}: cannot create the veth pair {ifname}/{peer}: {error}")]
    Veth {
        /// The port.
        port: String,
        /// yardd's end.
        ifname: String,
        /// The end to hand over.
        peer: String,
        /// What failed (it names the interface); boxed, as it is large
        /// and rare.
        error: Box<NetconfError>,
    },
    /// A veth port's own end is gone: its peer's namespace went away (the
    /// kernel deletes the pair with it), or someone deleted it.
    #[error("port {port}: veth {ifname} is gone (the container it was handed to has gone): `yardctl port rm {port}`, or add it again")]
    VethGone {
        /// The port.
        port: String,
        /// yardd's end.
        ifname: String,
    },
    /// The interface does not exist in yardd's namespace.
    #[error(
        "port {port}: interface {iface} not found in yardd's network namespace: check `ip link show {iface}`"
    )]
    NoInterface {
        /// The port (or uplink).
        port: String,
        /// The interface.
        iface: String,
    },
    /// The interface could not be opened or asked for its MTU.
    #[error("port {port}: cannot attach interface {iface}: {error}")]
    Interface {
        /// The port (or uplink).
        port: String,
        /// The interface.
        iface: String,
        /// What failed.
        error: std::io::Error,
    },
    /// A QEMU port's socket could not be set up.
    #[error("port {port}: {error}")]
    Qemu {
        /// The port.
        port: String,
        /// What was wrong (it names the path or address).
        error: QemuSocketError,
    },
    /// A host uplink has no device to attach.
    #[error("uplink {uplink} uses yardd's own host sockets: it has no device to attach")]
    NoDevice {
        /// The uplink.
        uplink: String,
    },
    /// The uplink interface's MAC could not be read.
    #[error("uplink {uplink}: cannot read the MAC of {iface}: {error}")]
    UplinkMac {
        /// The uplink.
        uplink: String,
        /// Its interface.
        iface: String,
        /// What failed.
        error: std::io::Error,
    },
}

/// A helper's failure as the privileged path would word it: a failed TAP
/// comes with its whole message (the helper words it with
/// [`tap_error`]), anything else gets the owner in front.
fn helper_message(owner: &Object, error: &HelperError) -> String {
    match error {
        HelperError::Task(message) => message.clone(),
        other => format!("{owner}: {other}"),
    }
}

/// " in netns NS", or nothing for yardd's own namespace.
fn in_netns(netns: &Option<String>) -> String {
    netns
        .as_deref()
        .map(|ns| format!(" in netns {ns}"))
        .unwrap_or_default()
}

/// A port ready to hand to the datapath.
pub struct Attached {
    /// The device.
    pub port: Box<dyn Port>,
    /// Its networks, by name.
    pub membership: Membership,
    /// The MTU in force.
    pub mtu: u32,
    /// The container-side MAC, when yardd set it.
    pub mac: Option<MacAddr>,
    /// For a tunnel: how the datapath finds it for received packets.
    pub tunnel: Option<TunnelBinding>,
    /// For a TAP: the control plane's fd on it, which `port rm` destroys it
    /// through (it outlives yardd otherwise).
    pub kept: Option<KeptTap>,
    /// What the port may send from, when it has port security.
    pub security: Option<PortSecurity>,
    /// For a QEMU port: its status and socket file.
    pub qemu: Option<QemuLink>,
}

/// Which local endpoint a tunnel's socket serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum EndpointKey {
    Gre(Option<Ipv4Addr>),
    Udp(SocketAddrV4),
}

/// The tunnel sockets in use, so tunnels with the same local endpoint share
/// one (a second bind to 0.0.0.0:4754 would fail, and one raw GRE socket
/// already sees every GRE packet).
#[derive(Default)]
pub struct TunnelSockets {
    sockets: HashMap<EndpointKey, Weak<TunnelSocket>>,
}

impl TunnelSockets {
    fn get(&mut self, key: EndpointKey) -> std::io::Result<Arc<TunnelSocket>> {
        if let Some(socket) = self.sockets.get(&key).and_then(Weak::upgrade) {
            return Ok(socket);
        }
        let socket = Arc::new(match key {
            EndpointKey::Gre(local) => TunnelSocket::Gre(sys::open_gre_socket(local)?),
            EndpointKey::Udp(local) => TunnelSocket::Udp(sys::open_udp_tunnel_socket(local)?),
        });
        self.sockets.retain(|_, weak| weak.strong_count() > 0);
        self.sockets.insert(key, Arc::downgrade(&socket));
        Ok(socket)
    }
}

/// The overlay MTU of a tunnel to `remote`: the path MTU toward it (1500
/// when the route cannot be asked) less the encapsulation.
pub fn tunnel_overlay_mtu(remote: Ipv4Addr, carrier: Carrier, options: &GreOptions) -> u32 {
    let underlay = sys::path_mtu(remote).unwrap_or(yard_ctl::api::DEFAULT_MTU);
    overlay_mtu(underlay, carrier, options)
}

/// The carrier, endpoint, remote and options of a tunnel port spec.
fn tunnel_shape(kind: &PortKind) -> Option<(Carrier, EndpointKey, SocketAddrV4, GreOptions, bool)> {
    let (carrier, endpoint, remote) = match kind {
        PortKind::Gre { remote, local, .. } => (
            Carrier::Ipv4,
            EndpointKey::Gre(*local),
            SocketAddrV4::new(*remote, 0),
        ),
        PortKind::GreUdp { remote, local, .. } => (
            Carrier::UdpIpv4,
            EndpointKey::Udp(
                local.unwrap_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, GRE_IN_UDP_PORT)),
            ),
            *remote,
        ),
        _ => return None,
    };
    let gre = kind.gre_settings()?;
    let options = GreOptions {
        key: gre.key,
        checksum: gre.csum,
        sequence: gre.seq.then_some(0),
    };
    Some((carrier, endpoint, remote, options, gre.seq))
}

/// The overlay MTU a tunnel port spec will have (for `net inspect` and the
/// default MTU of TAPs on its network).
pub fn spec_overlay_mtu(kind: &PortKind) -> Option<u32> {
    let (carrier, _, remote, options, _) = tunnel_shape(kind)?;
    Some(tunnel_overlay_mtu(*remote.ip(), carrier, &options))
}

/// Creates or opens the device of `spec`. The caller has validated `spec`
/// against `config`. A TAP without `--mtu` on a network that spans tunnels
/// gets `overlay_mtu` when that is below the network's MTU; `mode` says
/// whether yardd's TAP left from before may be re-adopted.
pub fn attach(
    spec: &PortSpec,
    config: &Config,
    tunnels: &mut TunnelSockets,
    overlay_mtu: Option<u32>,
    mode: TapMode,
) -> Result<Attached, AttachError> {
    let name = &spec.name;
    if let Some((carrier, endpoint, remote, options, seq)) = tunnel_shape(&spec.kind) {
        let socket = tunnels
            .get(endpoint)
            .map_err(|error| AttachError::TunnelSocket {
                port: name.clone(),
                error,
            })?;
        let mtu = tunnel_overlay_mtu(*remote.ip(), carrier, &options);
        let net = spec.nets()[0].to_string();
        let params = TunnelParams {
            remote,
            key: options.key,
            csum: options.checksum,
            seq,
            overlay_mtu: mtu,
        };
        return Ok(Attached {
            port: Box::new(TunnelPort::new(socket.clone(), params)),
            membership: Membership::Access(net),
            mtu,
            mac: None,
            tunnel: Some(TunnelBinding {
                socket,
                remote: *remote.ip(),
                key: options.key,
                overlay_mtu: mtu,
            }),
            kept: None,
            security: None,
            qemu: None,
        });
    }
    match &spec.kind {
        PortKind::Tap {
            net,
            netns,
            ifname,
            ip,
            mac,
            mtu,
            ..
        } => {
            let (network, mac) = interface_identity(name, config, net, ip.as_ref(), *mac)?;
            let mtu =
                mtu.unwrap_or_else(|| overlay_mtu.map_or(network.mtu, |o| o.min(network.mtu)));
            // A default route only makes sense when the container has an address
            // in the network's subnet.
            // Only one port of a namespace carries its default route.
            let gateway = ip
                .and(network.gateway)
                .filter(|_| config.takes_default_route(spec));
            let addr = ip.map(|c| (c.addr, c.prefix));
            let setup = TapSetup {
                mac: Some(mac.0),
                mtu: Some(mtu),
                addr,
                gateway,
            };
            let (fd, kept) = create_tap(
                Object::Port(name.clone()),
                netns.as_deref(),
                ifname,
                setup,
                mode,
            )?;
            Ok(Attached {
                port: Box::new(FdPort::new(fd)),
                membership: Membership::Access(net.clone()),
                mtu,
                mac: Some(mac),
                tunnel: None,
                kept: Some(kept),
                security: interface_security(&spec.kind, mac),
                qemu: None,
            })
        }
        PortKind::Veth {
            net,
            ifname,
            peer,
            ip,
            mac,
            mtu,
            ..
        } => {
            let (network, mac) = interface_identity(name, config, net, ip.as_ref(), *mac)?;
            let mtu = mtu.unwrap_or(network.mtu);
            let pair = VethPair {
                host: ifname,
                peer,
                peer_mac: mac.0,
                mtu,
            };
            attach_veth(name, &pair, mode)?;
            let mut attached = attach_iface(name, ifname, Membership::Access(net.clone()))?;
            attached.mac = Some(mac);
            attached.security = interface_security(&spec.kind, mac);
            Ok(attached)
        }
        PortKind::Iface { net, iface } => {
            attach_iface(name, iface, Membership::Access(net.clone()))
        }
        PortKind::Gre { .. } | PortKind::GreUdp { .. } => Err(AttachError::Tunnel(name.clone())),
        PortKind::Trunk { iface, nets } => {
            attach_iface(name, iface, Membership::Trunk(nets.clone()))
        }
        PortKind::QemuStream { net, path } => {
            attach_qemu(name, net, config, qemu::attach_stream(path))
        }
        PortKind::QemuDgram { net, addr } => {
            attach_qemu(name, net, config, qemu::attach_dgram(addr))
        }
    }
}

/// The network and MAC of a container's interface (a TAP or a veth): the
/// MAC given, or Docker's scheme from the address.
fn interface_identity<'c>(
    name: &str,
    config: &'c Config,
    net: &str,
    ip: Option<&Ipv4Cidr>,
    mac: Option<MacAddr>,
) -> Result<(&'c NetworkSpec, MacAddr), AttachError> {
    let network = config.network(net).ok_or_else(|| AttachError::NoNetwork {
        port: name.to_string(),
        net: net.to_string(),
    })?;
    Ok((network, mac.unwrap_or_else(|| default_mac(name, ip))))
}

/// A TAP's or veth's port security, when it has it on.
fn interface_security(kind: &PortKind, mac: MacAddr) -> Option<PortSecurity> {
    let (on, allowed) = kind.security()?;
    on.then(|| PortSecurity::new(mac, kind.address().map(|c| c.addr), allowed))
}

/// Creates a veth port's pair ([`TapMode::Create`]: both names must be
/// free) and brings yardd's end up with IPv6 off on it (the host has no
/// business on the container's segment); restoring
/// ([`TapMode::CreateOrAdopt`]) finds yardd's end still there, or the port
/// is down: a pair is never re-made for a container that has its peer no
/// more.
fn attach_veth(name: &str, pair: &VethPair<'_>, mode: TapMode) -> Result<(), AttachError> {
    let failed = |error| AttachError::Veth {
        port: name.to_string(),
        ifname: pair.host.to_string(),
        peer: pair.peer.to_string(),
        error: Box::new(error),
    };
    match mode {
        TapMode::Create => netconf::create_veth(pair).map_err(failed)?,
        TapMode::CreateOrAdopt => match netconf::link_facts(pair.host).map_err(failed)? {
            Some(facts) if facts.kind.as_deref() == Some("veth") => {}
            _ => {
                return Err(AttachError::VethGone {
                    port: name.to_string(),
                    ifname: pair.host.to_string(),
                })
            }
        },
    }
    let sysctl = format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", pair.host);
    if let Err(error) = std::fs::write(&sysctl, "1") {
        tracing::debug!(port = %name, %error, "IPv6 stays on on the veth's own end");
    }
    netconf::set_link_up(pair.host).map_err(failed)
}

/// Deletes a veth port's pair, if it is still there.
pub fn destroy_veth(name: &str, ifname: &str) {
    if let Err(error) = netconf::delete_link(ifname) {
        tracing::warn!(port = %name, %error, "the veth pair could not be deleted");
    }
}

/// A QEMU port on `net`, whose socket `bound` is: its MTU is the network's.
fn attach_qemu(
    name: &str,
    net: &str,
    config: &Config,
    bound: Result<(Box<dyn Port>, QemuLink), QemuSocketError>,
) -> Result<Attached, AttachError> {
    let network = config.network(net).ok_or_else(|| AttachError::NoNetwork {
        port: name.to_string(),
        net: net.to_string(),
    })?;
    let (port, link) = bound.map_err(|error| AttachError::Qemu {
        port: name.to_string(),
        error,
    })?;
    Ok(Attached {
        port,
        membership: Membership::Access(net.to_string()),
        mtu: network.mtu,
        mac: None,
        tunnel: None,
        kept: None,
        security: None,
        qemu: Some(link),
    })
}

/// An existing interface, read through AF_PACKET.
fn attach_iface(name: &str, iface: &str, membership: Membership) -> Result<Attached, AttachError> {
    let (port, mtu) = open_iface(name, iface)?;
    Ok(Attached {
        port: Box::new(port),
        membership,
        mtu,
        mac: None,
        tunnel: None,
        kept: None,
        security: None,
        qemu: None,
    })
}

/// How yardd configures a TAP it creates (what `None` leaves alone).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct TapSetup {
    mac: Option<[u8; 6]>,
    mtu: Option<u32>,
    addr: Option<(Ipv4Addr, u8)>,
    gateway: Option<Ipv4Addr>,
}

/// What failed inside the namespace while creating a TAP.
pub enum TapFailure {
    /// The TAP could not be created or opened.
    Create(std::io::Error),
    /// It could not be configured.
    Configure(NetconfError),
    /// The existing interface may not be adopted, or the new TAP not made
    /// persistent.
    Adopt(AdoptError),
}

/// Creates TAP `ifname` in the current thread's namespace, or with
/// [`TapMode::CreateOrAdopt`] re-adopts yardd's TAP of that name, and
/// configures it: a new TAP fully, then made persistent; an adopted one
/// with what is on it kept. Returns its fd and whether it was adopted.
/// The same code runs on a thread that entered the namespace (privileged)
/// and in the namespace helper (rootless).
pub fn create_tap_here(
    owner: &Object,
    ifname: &str,
    setup: &TapSetup,
    mode: TapMode,
) -> Result<(OwnedFd, bool), TapFailure> {
    let (fd, opened) = open_owned_tap(owner, ifname, mode).map_err(|error| match error {
        AdoptError::Io(error) => TapFailure::Create(error),
        other => TapFailure::Adopt(other),
    })?;
    let link = LinkConfig {
        ifname,
        mac: setup.mac,
        mtu: setup.mtu,
        txqlen: Some(crate::sys::netconf::TAP_TXQLEN),
        addr: setup.addr,
        default_gateway: setup.gateway,
    };
    match opened {
        TapOpened::Created => {
            configure_link(&link).map_err(TapFailure::Configure)?;
            adopt::mark_persistent(owner, ifname, &fd).map_err(TapFailure::Adopt)?;
        }
        TapOpened::Adopted => configure_link_keeping(&link).map_err(TapFailure::Configure)?,
    }
    Ok((fd, opened == TapOpened::Adopted))
}

/// The error for `failure` of `owner`'s TAP `ifname` in `netns`.
pub fn tap_error(
    owner: Object,
    netns: Option<String>,
    ifname: &str,
    failure: TapFailure,
) -> AttachError {
    match failure {
        TapFailure::Create(error) => AttachError::CreateTap {
            owner,
            netns,
            ifname: ifname.to_string(),
            error,
        },
        TapFailure::Configure(error) => AttachError::ConfigureTap {
            owner,
            netns,
            error,
        },
        TapFailure::Adopt(error) => AttachError::Adopt {
            owner,
            netns,
            error: Box::new(error),
        },
    }
}

/// Creates (or re-adopts) and configures TAP `ifname` in `netns` (or
/// yardd's own namespace) for `owner`, on a thread that enters the
/// namespace — or, for a yardd without the privilege to enter it, through
/// the namespace helper ([`netns_helper`]) — and returns its fd with the
/// control plane's [`KeptTap`] on it.
fn create_tap(
    owner: Object,
    netns: Option<&str>,
    ifname: &str,
    setup: TapSetup,
    mode: TapMode,
) -> Result<(OwnedFd, KeptTap), AttachError> {
    let created = match netns {
        None => create_tap_here(&owner, ifname, &setup, mode).map(|(fd, _)| fd),
        Some(ns) if netns_helper::needed() => {
            let task = NetnsTask::Tap {
                owner: owner.clone(),
                ifname: ifname.to_string(),
                setup,
                mode,
            };
            return match netns_helper::run(&NetnsRef::parse(ns), task) {
                Ok((_, Some(fd))) => {
                    let kept =
                        adopt::kept(ifname, &fd).map_err(|error| AttachError::CreateTap {
                            owner,
                            netns: Some(ns.to_string()),
                            ifname: ifname.to_string(),
                            error,
                        })?;
                    Ok((fd, kept))
                }
                Ok((_, None)) => unreachable!("netns_helper::run checks a TAP came with its fd"),
                Err(error) => Err(AttachError::Helper { owner, error }),
            };
        }
        Some(ns) => {
            let (owner_in, ifname_in) = (owner.clone(), ifname.to_string());
            let create =
                move || create_tap_here(&owner_in, &ifname_in, &setup, mode).map(|(fd, _)| fd);
            match run_in_netns(&NetnsRef::parse(ns), create) {
                Ok(created) => created,
                Err(error) => return Err(AttachError::Netns { owner, error }),
            }
        }
    };
    let netns = netns.map(str::to_string);
    let fd = created.map_err(|failure| tap_error(owner.clone(), netns.clone(), ifname, failure))?;
    let kept = adopt::kept(ifname, &fd)
        .map_err(|error| tap_error(owner, netns, ifname, TapFailure::Create(error)))?;
    Ok((fd, kept))
}

fn open_iface(name: &str, iface: &str) -> Result<(FdPort, u32), AttachError> {
    let hint = |error: std::io::Error| {
        if error.kind() == std::io::ErrorKind::NotFound
            || sys::os_error_code(&error) == Some(libc::ENODEV)
        {
            AttachError::NoInterface {
                port: name.to_string(),
                iface: iface.to_string(),
            }
        } else {
            AttachError::Interface {
                port: name.to_string(),
                iface: iface.to_string(),
                error,
            }
        }
    };
    let mtu = sys::interface_mtu(iface).map_err(hint)?;
    let port = FdPort::open_packet(iface).map_err(hint)?;
    Ok((port, mtu))
}

/// An uplink ready to hand to the datapath.
pub struct AttachedUplink {
    /// The device.
    pub port: Box<dyn Port>,
    /// The MAC yardd answers ARP with on it.
    pub mac: MacAddr,
    /// Its MTU.
    pub mtu: u32,
    /// For a TAP: the control plane's fd on it, which `uplink rm` destroys
    /// it through (it outlives yardd otherwise).
    pub kept: Option<KeptTap>,
}

/// Opens the uplink's device: an existing interface through AF_PACKET (yardd
/// uses the interface's own MAC), or a TAP yardd creates and brings up
/// (optionally in a namespace; yardd's side gets a stable MAC from the
/// uplink's name, the far side is the user's to address). `mode` says
/// whether yardd's TAP left from before may be re-adopted.
pub fn attach_uplink(spec: &UplinkSpec, mode: TapMode) -> Result<AttachedUplink, AttachError> {
    let name = &spec.name;
    match &spec.kind {
        UplinkKind::Iface { iface } => {
            let (port, mtu) = open_iface(name, iface)?;
            let mac = sys::interface_mac(iface).map_err(|error| AttachError::UplinkMac {
                uplink: name.clone(),
                iface: iface.clone(),
                error,
            })?;
            Ok(AttachedUplink {
                port: Box::new(port),
                mac: MacAddr(mac),
                mtu,
                kept: None,
            })
        }
        UplinkKind::Host => Err(AttachError::NoDevice {
            uplink: name.clone(),
        }),
        UplinkKind::Tap { netns, ifname } => {
            let setup = TapSetup {
                mac: None,
                mtu: None,
                addr: None,
                gateway: None,
            };
            let (fd, kept) = create_tap(
                Object::Uplink(name.clone()),
                netns.as_deref(),
                ifname,
                setup,
                mode,
            )?;
            Ok(AttachedUplink {
                port: Box::new(FdPort::new(fd)),
                mac: MacAddr::local_from_seed(format!("uplink/{name}").as_bytes()),
                mtu: yard_ctl::api::DEFAULT_MTU,
                kept: Some(kept),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_helpers_failure_reads_as_the_privileged_paths() {
        let owner = Object::Port("c1".into());
        // The helper words a failed TAP with `tap_error`, owner included.
        let relayed = tap_error(
            owner.clone(),
            Some("/proc/42/ns/net".into()),
            "eth0",
            TapFailure::Create(std::io::Error::from_raw_os_error(libc::EBUSY)),
        )
        .to_string();
        assert_eq!(
            relayed,
            "port c1 in netns /proc/42/ns/net: cannot create TAP eth0: Device or resource busy (os error 16)"
        );
        let task = AttachError::Helper {
            owner: owner.clone(),
            error: HelperError::Task(relayed.clone()),
        };
        assert_eq!(task.to_string(), relayed);
        // Failing to enter names the owner in front, once.
        let enter = AttachError::Helper {
            owner,
            error: HelperError::Enter("netns /proc/42/ns/net: cannot enter it: EPERM".into()),
        };
        assert_eq!(
            enter.to_string(),
            "port c1: netns /proc/42/ns/net: cannot enter it: EPERM"
        );
    }
}
