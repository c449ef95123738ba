//! Attaching ports: turning a [`PortSpec`] into a live [`Port`] (slow path,
//! on the control thread).
//!
//! A TAP is created inside its namespace on a short-lived thread that entered
//! it, then configured there over netlink as a Docker endpoint is: MAC, MTU,
//! address, link and `lo` up, default route via the network's gateway. An
//! existing interface is opened through AF_PACKET. Nothing here runs per frame.

use yard_ctl::api::{NetworkSpec, PortKind, PortSpec, UplinkKind, UplinkSpec};
use yard_ctl::MacAddr;

use crate::config::{default_mac, Config};
use crate::datapath::Membership;
use crate::netconf::{configure_link, LinkConfig};
use crate::netns::{run_in_netns, NetnsRef};
use crate::port::fd::FdPort;
use crate::port::Port;
use crate::sys;

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
}

/// Creates or opens the device of `spec`. The caller has validated `spec`
/// against `config`.
pub fn attach(spec: &PortSpec, config: &Config) -> Result<Attached, String> {
    let name = &spec.name;
    match &spec.kind {
        PortKind::Tap {
            net,
            netns,
            ifname,
            ip,
            mac,
            mtu,
        } => {
            let network: &NetworkSpec = config
                .network(net)
                .ok_or_else(|| format!("port {name}: network {net} not found"))?;
            let mac = mac.unwrap_or_else(|| default_mac(name, ip.as_ref()));
            let mtu = mtu.unwrap_or(network.mtu);
            // A default route only makes sense when the container has an address
            // in the network's subnet.
            let gateway = ip.and(network.gateway);
            let addr = ip.map(|c| (c.addr, c.prefix));
            let ifname_owned = ifname.clone();
            let create = move || -> Result<std::os::fd::OwnedFd, String> {
                let fd = sys::open_tap(&ifname_owned)
                    .map_err(|e| format!("cannot create TAP {ifname_owned}: {e}"))?;
                configure_link(&LinkConfig {
                    ifname: &ifname_owned,
                    mac: Some(mac.0),
                    mtu: Some(mtu),
                    addr,
                    default_gateway: gateway,
                })
                .map_err(|e| format!("cannot configure {e}"))?;
                Ok(fd)
            };
            let fd = match netns {
                Some(ns) => {
                    let ns = NetnsRef::parse(ns);
                    run_in_netns(&ns, create).map_err(|e| format!("port {name}: {e}"))?
                }
                None => create(),
            }
            .map_err(|e| {
                let place = netns
                    .as_deref()
                    .map(|ns| format!(" in netns {ns}"))
                    .unwrap_or_default();
                format!("port {name}{place}: {e}")
            })?;
            Ok(Attached {
                port: Box::new(FdPort::new(fd)),
                membership: Membership::Access(net.clone()),
                mtu,
                mac: Some(mac),
            })
        }
        PortKind::Iface { net, iface } => {
            let (fd, mtu) = open_iface(name, iface)?;
            Ok(Attached {
                port: Box::new(FdPort::packet(fd)),
                membership: Membership::Access(net.clone()),
                mtu,
                mac: None,
            })
        }
        PortKind::Trunk { iface, nets } => {
            let (fd, mtu) = open_iface(name, iface)?;
            Ok(Attached {
                port: Box::new(FdPort::packet(fd)),
                membership: Membership::Trunk(nets.clone()),
                mtu,
                mac: None,
            })
        }
    }
}

fn open_iface(name: &str, iface: &str) -> Result<(std::os::fd::OwnedFd, u32), String> {
    let hint = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENODEV) {
            format!("port {name}: interface {iface} not found in yardd's network namespace: check `ip link show {iface}`")
        } else {
            format!("port {name}: cannot attach interface {iface}: {e}")
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
}

/// Opens the uplink's device: an existing interface through AF_PACKET (yardd
/// uses the interface's own MAC), or a TAP yardd creates and brings up
/// (optionally in a namespace; yardd's side gets a stable MAC from the
/// uplink's name, the far side is the user's to address).
pub fn attach_uplink(spec: &UplinkSpec) -> Result<AttachedUplink, String> {
    let name = &spec.name;
    match &spec.kind {
        UplinkKind::Iface { iface } => {
            let (fd, mtu) = open_iface(name, iface)?;
            let mac = sys::interface_mac(iface)
                .map_err(|e| format!("uplink {name}: cannot read the MAC of {iface}: {e}"))?;
            Ok(AttachedUplink {
                port: Box::new(FdPort::packet(fd)),
                mac: MacAddr(mac),
                mtu,
            })
        }
        UplinkKind::Tap { netns, ifname } => {
            let ifname_owned = ifname.clone();
            let create = move || -> Result<std::os::fd::OwnedFd, String> {
                let fd = sys::open_tap(&ifname_owned)
                    .map_err(|e| format!("cannot create TAP {ifname_owned}: {e}"))?;
                configure_link(&LinkConfig {
                    ifname: &ifname_owned,
                    mac: None,
                    mtu: None,
                    addr: None,
                    default_gateway: None,
                })
                .map_err(|e| format!("cannot configure {e}"))?;
                Ok(fd)
            };
            let fd = match netns {
                Some(ns) => run_in_netns(&NetnsRef::parse(ns), create)
                    .map_err(|e| format!("uplink {name}: {e}"))?,
                None => create(),
            }
            .map_err(|e| format!("uplink {name}: {e}"))?;
            Ok(AttachedUplink {
                port: Box::new(FdPort::new(fd)),
                mac: MacAddr::local_from_seed(format!("uplink/{name}").as_bytes()),
                mtu: yard_ctl::api::DEFAULT_MTU,
            })
        }
    }
}
