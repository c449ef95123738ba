//! Attaching ports: turning a [`PortSpec`] into a live [`Port`] (slow path,
//! on the control thread).
//!
//! A TAP is created inside its namespace on a short-lived thread that entered
//! it, then configured there over netlink as a Docker endpoint is: MAC, MTU,
//! address, link and `lo` up, default route via the network's gateway. An
//! existing interface is opened through AF_PACKET. Nothing here runs per frame.
//! What fails is an [`AttachError`] naming the port (or uplink) and the
//! device.
//!
//! TAPs are persistent and outlive yardd ([`crate::control::adopt`]): `port
//! add` creates a new one ([`TapMode::Create`]); restoring the saved
//! configuration re-adopts yardd's own TAP where it is still there
//! ([`TapMode::CreateOrAdopt`]) and re-applies only what yardd owns (MAC, MTU,
//! up, its address and default route where missing).

use yard_ctl::api::{NetworkSpec, PortKind, PortSpec, UplinkKind, UplinkSpec};
use yard_ctl::MacAddr;

use crate::control::adopt::{self, open_owned_tap, AdoptError, KeptTap, TapMode};
use crate::control::config::{default_mac, Config};
use crate::control::Object;
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
use crate::sys::netconf::{configure_link, configure_link_keeping, LinkConfig, NetconfError};
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
    /// The namespace could not be entered.
    #[error("{owner}: {error}")]
    Netns {
        /// The port or uplink.
        owner: Object,
        /// What failed (it names the namespace).
        error: NetnsError,
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
            port_security,
            allowed_addresses,
            ..
        } => {
            let network: &NetworkSpec =
                config.network(net).ok_or_else(|| AttachError::NoNetwork {
                    port: name.clone(),
                    net: net.clone(),
                })?;
            let mac = mac.unwrap_or_else(|| default_mac(name, ip.as_ref()));
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
            let security = port_security
                .then(|| PortSecurity::new(mac, ip.map(|c| c.addr), allowed_addresses));
            Ok(Attached {
                port: Box::new(FdPort::new(fd)),
                membership: Membership::Access(net.clone()),
                mtu,
                mac: Some(mac),
                tunnel: None,
                kept: Some(kept),
                security,
            })
        }
        PortKind::Iface { net, iface } => {
            attach_iface(name, iface, Membership::Access(net.clone()))
        }
        PortKind::Gre { .. } | PortKind::GreUdp { .. } => Err(AttachError::Tunnel(name.clone())),
        PortKind::Trunk { iface, nets } => {
            attach_iface(name, iface, Membership::Trunk(nets.clone()))
        }
    }
}

/// An existing interface, read through AF_PACKET.
fn attach_iface(name: &str, iface: &str, membership: Membership) -> Result<Attached, AttachError> {
    let (fd, mtu) = open_iface(name, iface)?;
    Ok(Attached {
        port: Box::new(FdPort::packet(fd)),
        membership,
        mtu,
        mac: None,
        tunnel: None,
        kept: None,
        security: None,
    })
}

/// How yardd configures a TAP it creates (what `None` leaves alone).
struct TapSetup {
    mac: Option<[u8; 6]>,
    mtu: Option<u32>,
    addr: Option<(Ipv4Addr, u8)>,
    gateway: Option<Ipv4Addr>,
}

/// What failed inside the namespace while creating a TAP.
enum TapFailure {
    Create(std::io::Error),
    Configure(NetconfError),
    Adopt(AdoptError),
}

/// Creates TAP `ifname` in `netns` (or yardd's own namespace), or with
/// [`TapMode::CreateOrAdopt`] re-adopts yardd's TAP of that name, and
/// configures it: a new TAP fully, then made persistent; an adopted one
/// with what is on it kept. `owner` is the port or uplink it is for.
fn create_tap(
    owner: Object,
    netns: Option<&str>,
    ifname: &str,
    setup: TapSetup,
    mode: TapMode,
) -> Result<(OwnedFd, KeptTap), AttachError> {
    let ifname_owned = ifname.to_string();
    let owner_in = owner.clone();
    let create = move || -> Result<(OwnedFd, KeptTap), TapFailure> {
        let (fd, opened) =
            open_owned_tap(&owner_in, &ifname_owned, mode).map_err(|error| match error {
                AdoptError::Io(error) => TapFailure::Create(error),
                other => TapFailure::Adopt(other),
            })?;
        let link = LinkConfig {
            ifname: &ifname_owned,
            mac: setup.mac,
            mtu: setup.mtu,
            txqlen: Some(crate::sys::netconf::TAP_TXQLEN),
            addr: setup.addr,
            default_gateway: setup.gateway,
        };
        let kept = match opened {
            TapOpened::Created => {
                configure_link(&link).map_err(TapFailure::Configure)?;
                adopt::keep(&owner_in, &ifname_owned, &fd).map_err(TapFailure::Adopt)?
            }
            TapOpened::Adopted => {
                configure_link_keeping(&link).map_err(TapFailure::Configure)?;
                adopt::kept(&ifname_owned, &fd).map_err(TapFailure::Create)?
            }
        };
        Ok((fd, kept))
    };
    let created = match netns {
        Some(ns) => match run_in_netns(&NetnsRef::parse(ns), create) {
            Ok(created) => created,
            Err(error) => return Err(AttachError::Netns { owner, error }),
        },
        None => create(),
    };
    let netns = netns.map(str::to_string);
    created.map_err(|failure| match failure {
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
    })
}

fn open_iface(name: &str, iface: &str) -> Result<(std::os::fd::OwnedFd, u32), AttachError> {
    let hint = |error: std::io::Error| {
        if error.kind() == std::io::ErrorKind::NotFound
            || error.raw_os_error() == Some(libc::ENODEV)
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
    let fd = sys::open_packet_socket(iface).map_err(hint)?;
    Ok((fd, mtu))
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
            let (fd, mtu) = open_iface(name, iface)?;
            let mac = sys::interface_mac(iface).map_err(|error| AttachError::UplinkMac {
                uplink: name.clone(),
                iface: iface.clone(),
                error,
            })?;
            Ok(AttachedUplink {
                port: Box::new(FdPort::packet(fd)),
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
