//! The configuration yardd keeps and persists: networks and ports as the user
//! asked for them, and the rules a change must pass before it is applied.
//!
//! Validation happens here, before anything is created, so a refused request
//! changes nothing. Every error is a [`ConfigError`] that carries the names
//! of the objects involved; its message names them and the way out.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
mod error;
mod gateway;
mod ipam;
mod links;
mod qemu;
mod rules;

pub use error::ConfigError;
pub use rules::ConfiguredRule;

use yard_ctl::api::{
    ConntrackSettings, LinkSpec, PublishSpec, UplinkKind, UplinkSpec, DEFAULT_UPLINK,
};
use yard_ctl::api::{NetworkSpec, PortKind, PortSpec, DEFAULT_NETWORK, DEFAULT_SUBNET, MAX_MTU};
use yard_ctl::{Ipv4Cidr, MacAddr};

use crate::control::Object;
use crate::sys::nsidentity::NetnsIdentity;

/// Version of the state file format.
pub const STATE_FORMAT: u32 = 1;

/// Smallest MTU accepted (IPv4's minimum).
pub const MIN_MTU: u32 = 68;

/// Longest name of a network or port.
pub const MAX_NAME_LEN: usize = 64;

/// Networks and ports, in the order they were created.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Config {
    /// [`STATE_FORMAT`] of the file this came from.
    pub format: u32,
    /// Networks, in the order they were created (restored in that order).
    pub networks: Vec<NetworkSpec>,
    /// Ports, in the order they were added (re-attached in that order).
    pub ports: Vec<PortSpec>,
    /// Static FDB entries (`fdb add`), restored after the ports.
    #[serde(default)]
    pub static_fdb: Vec<StaticFdb>,
    /// The uplink, if any.
    #[serde(default)]
    pub uplink: Option<UplinkSpec>,
    /// Published ports.
    #[serde(default)]
    pub publish: Vec<PublishSpec>,
    /// Pairs of networks allowed to route to each other.
    #[serde(default)]
    pub connections: Vec<(String, String)>,
    /// Conntrack limit and timeouts the user changed.
    #[serde(default)]
    pub conntrack: ConntrackSettings,
    /// Links between ports of `--no-icc` networks (`link add`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<LinkSpec>,
    /// Firewall rules (`rule add`), each network's in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<ConfiguredRule>,
    /// The namespace each TAP port with `--netns` was put in, by port name:
    /// a port is re-created only in that same namespace.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub namespaces: BTreeMap<String, NetnsIdentity>,
}

/// A static FDB entry as persisted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StaticFdb {
    /// Network name.
    pub net: String,
    /// The address.
    pub mac: MacAddr,
    /// Port name.
    pub port: String,
}

/// Checks the MAC and MTU asked for a container's interface (TAP or veth).
fn check_interface(name: &str, mac: Option<MacAddr>, mtu: Option<u32>) -> Result<(), ConfigError> {
    if let Some(mtu) = mtu {
        check_mtu(|| Object::Port(name.to_string()), mtu)?;
    }
    match mac {
        Some(mac) if !mac.is_valid_source() => Err(ConfigError::GroupMac {
            port: name.to_string(),
            mac,
        }),
        _ => Ok(()),
    }
}

/// Checks the name of a new network or port.
fn check_name(object: Object) -> Result<(), ConfigError> {
    let name = object.name();
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if name.is_empty() || name.len() > MAX_NAME_LEN || !ok_chars || name.starts_with(['-', '.']) {
        return Err(ConfigError::BadName(object));
    }
    Ok(())
}

fn check_mtu(object: impl FnOnce() -> Object, mtu: u32) -> Result<(), ConfigError> {
    if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
        return Err(ConfigError::BadMtu {
            object: object(),
            mtu,
        });
    }
    Ok(())
}

impl Default for Config {
    fn default() -> Self {
        Config {
            format: STATE_FORMAT,
            networks: Vec::new(),
            ports: Vec::new(),
            static_fdb: Vec::new(),
            uplink: None,
            publish: Vec::new(),
            connections: Vec::new(),
            conntrack: ConntrackSettings::default(),
            links: Vec::new(),
            rules: Vec::new(),
            namespaces: BTreeMap::new(),
        }
    }
}

impl Config {
    /// The configuration of a first start: the default network `yard0`,
    /// 172.30.0.0/16 with gateway 172.30.0.1 (Docker's `docker0`), and with
    /// `host_uplink` the host uplink `host` (yardd's own sockets), so yard0
    /// reaches what the host reaches.
    pub fn initial(host_uplink: bool) -> Config {
        let mut yard0 = NetworkSpec::new(DEFAULT_NETWORK);
        let subnet: Ipv4Cidr = DEFAULT_SUBNET.parse().expect("the default subnet parses");
        yard0.subnet = Some(subnet);
        yard0.gateway = Some(subnet.first_host());
        let uplink = host_uplink.then(|| UplinkSpec {
            name: DEFAULT_UPLINK.to_string(),
            kind: UplinkKind::Host,
            ip: None,
            gateway: None,
        });
        Config {
            networks: vec![yard0],
            uplink,
            ..Config::default()
        }
    }

    /// The network called `name`.
    pub fn network(&self, name: &str) -> Option<&NetworkSpec> {
        self.networks.iter().find(|n| n.name == name)
    }

    /// The port called `name`.
    pub fn port(&self, name: &str) -> Option<&PortSpec> {
        self.ports.iter().find(|p| p.name == name)
    }

    /// The network called `name`, or the error that says it does not exist.
    pub fn existing_network(&self, name: &str) -> Result<&NetworkSpec, ConfigError> {
        self.network(name)
            .ok_or_else(|| ConfigError::NoNetwork(name.to_string()))
    }

    /// Checks a new network and returns it completed: subnet normalized to its
    /// network address, gateway defaulted to the first host address.
    pub fn check_new_network(&self, spec: &NetworkSpec) -> Result<NetworkSpec, ConfigError> {
        let mut spec = spec.clone();
        let net = || spec.name.clone();
        check_name(Object::Network(net()))?;
        if self.network(&spec.name).is_some() {
            return Err(ConfigError::NetworkExists(net()));
        }
        check_mtu(|| Object::Network(net()), spec.mtu)?;
        if spec.aging_secs == 0 || spec.aging_secs > 1_000_000 {
            return Err(ConfigError::BadAging {
                net: net(),
                secs: spec.aging_secs,
            });
        }
        if let Some(vlan) = spec.vlan {
            if !(1..=4094).contains(&vlan) {
                return Err(ConfigError::BadVlan { net: net(), vlan });
            }
            if let Some(other) = self.networks.iter().find(|n| n.vlan == Some(vlan)) {
                return Err(ConfigError::VlanTaken {
                    net: net(),
                    vlan,
                    by: other.name.clone(),
                });
            }
        }
        match spec.subnet {
            None => {
                if spec.gateway.is_some() {
                    return Err(ConfigError::GatewayWithoutSubnet(net()));
                }
            }
            Some(subnet) => {
                if subnet.prefix > 30 {
                    return Err(ConfigError::SubnetTooSmall { net: net(), subnet });
                }
                let subnet = subnet.network();
                let overlapping = self.networks.iter().find_map(|n| {
                    n.subnet
                        .filter(|s| s.overlaps(&subnet))
                        .map(|s| (n.name.clone(), s))
                });
                if let Some((other, other_subnet)) = overlapping {
                    return Err(ConfigError::SubnetOverlaps {
                        net: net(),
                        subnet,
                        other,
                        other_subnet,
                    });
                }
                let uplink_subnet = self
                    .uplink
                    .as_ref()
                    .and_then(|u| Some((u, u.ip?.network())));
                if let Some((uplink, uplink_subnet)) =
                    uplink_subnet.filter(|(_, s)| s.overlaps(&subnet))
                {
                    return Err(ConfigError::SubnetOverlapsUplink {
                        net: net(),
                        subnet,
                        uplink: uplink.name.clone(),
                        uplink_subnet,
                    });
                }
                let gateway = spec.gateway.unwrap_or_else(|| subnet.first_host());
                if !is_host_of(&subnet, gateway) {
                    return Err(ConfigError::GatewayOutsideSubnet {
                        net: net(),
                        gateway,
                        subnet,
                    });
                }
                spec.subnet = Some(subnet);
                spec.gateway = Some(gateway);
            }
        }
        spec.ip_range = self.check_ip_range(&spec)?;
        self.check_host_loopback(&spec)?;
        Ok(spec)
    }

    /// Checks that network `name` may be removed.
    pub fn check_remove_network(&self, name: &str) -> Result<(), ConfigError> {
        self.existing_network(name)?;
        let users: Vec<String> = self
            .ports
            .iter()
            .filter(|p| p.nets().contains(&name))
            .map(|p| p.name.clone())
            .collect();
        if !users.is_empty() {
            return Err(ConfigError::NetworkInUse {
                net: name.to_string(),
                ports: users,
            });
        }
        Ok(())
    }

    /// Checks a new port against the configuration.
    pub fn check_new_port(&self, spec: &PortSpec) -> Result<(), ConfigError> {
        check_name(Object::Port(spec.name.clone()))?;
        let name = &spec.name;
        if self.port(name).is_some() {
            return Err(ConfigError::PortExists(name.clone()));
        }
        for net in spec.nets() {
            if self.network(net).is_none() {
                return Err(ConfigError::PortNetworkMissing {
                    port: name.clone(),
                    net: net.to_string(),
                });
            }
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
                check_ifname(name, ifname)?;
                check_interface(name, *mac, *mtu)?;
                if let Some(other) = self.ports.iter().find(|p| {
                    matches!(&p.kind, PortKind::Tap { netns: n, ifname: i, .. } if n == netns && i == ifname)
                }) {
                    return Err(ConfigError::TapTaken {
                        port: name.clone(),
                        ifname: ifname.clone(),
                        netns: netns.clone(),
                        by: other.name.clone(),
                    });
                }
                if let Some(ip) = ip {
                    self.check_port_ip(name, net, ip)?;
                }
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
                check_ifname(name, ifname)?;
                check_ifname(name, peer)?;
                if ifname == peer {
                    return Err(ConfigError::VethSameNames {
                        port: name.clone(),
                        ifname: ifname.clone(),
                    });
                }
                self.check_iface_free(name, ifname)?;
                self.check_iface_free(name, peer)?;
                check_interface(name, *mac, *mtu)?;
                if let Some(ip) = ip {
                    self.check_port_ip(name, net, ip)?;
                }
            }
            PortKind::Iface { iface, .. } => {
                check_ifname(name, iface)?;
                self.check_iface_free(name, iface)?;
            }
            PortKind::Gre {
                remote, local, key, ..
            } => {
                self.check_tunnel(
                    name,
                    *remote,
                    key,
                    |k| matches!(k, PortKind::Gre { local: l, .. } if l == local),
                )?;
            }
            PortKind::GreUdp {
                remote, local, key, ..
            } => {
                if remote.port() == 0 {
                    return Err(ConfigError::RemotePortZero(name.clone()));
                }
                self.check_tunnel(
                    name,
                    *remote.ip(),
                    key,
                    |k| matches!(k, PortKind::GreUdp { local: l, .. } if l == local),
                )?;
            }
            PortKind::QemuStream { .. } | PortKind::QemuDgram { .. } => {
                qemu::check_socket(name, &spec.kind, &self.ports)?;
            }
            PortKind::Trunk { iface, nets } => {
                check_ifname(name, iface)?;
                self.check_iface_free(name, iface)?;
                if nets.is_empty() {
                    return Err(ConfigError::TrunkWithoutNets(name.clone()));
                }
                for net in nets {
                    if self.network(net).is_some_and(|n| n.vlan.is_none()) {
                        return Err(ConfigError::TrunkNetWithoutVlan {
                            port: name.clone(),
                            net: net.clone(),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    fn check_port_ip(&self, name: &str, net: &str, ip: &Ipv4Cidr) -> Result<(), ConfigError> {
        let Some(network) = self.network(net) else {
            return Ok(());
        };
        if let Some(subnet) = network.subnet {
            if !is_host_of(&subnet, ip.addr) || ip.prefix != subnet.prefix {
                return Err(ConfigError::AddressOutside {
                    port: name.to_string(),
                    ip: *ip,
                    net: net.to_string(),
                    subnet,
                });
            }
            if network.gateway == Some(ip.addr) {
                return Err(ConfigError::AddressIsGateway {
                    port: name.to_string(),
                    addr: ip.addr,
                    net: net.to_string(),
                });
            }
        }
        let taken = self.ports.iter().find(|p| {
            p.nets() == [net] && p.kind.address().is_some_and(|other| other.addr == ip.addr)
        });
        if let Some(other) = taken {
            return Err(ConfigError::AddressTaken {
                port: name.to_string(),
                addr: ip.addr,
                by: other.name.clone(),
                net: net.to_string(),
            });
        }
        Ok(())
    }

    /// A tunnel's remote must be a unicast address, and its (remote, key)
    /// unique among tunnels sharing its local endpoint, so received packets
    /// have exactly one home.
    fn check_tunnel(
        &self,
        name: &str,
        remote: Ipv4Addr,
        key: &Option<u32>,
        same_endpoint: impl Fn(&PortKind) -> bool,
    ) -> Result<(), ConfigError> {
        if remote.is_unspecified() || remote.is_multicast() || remote.is_broadcast() {
            return Err(ConfigError::RemoteNotUnicast {
                port: name.to_string(),
                remote,
            });
        }
        let clash = self.ports.iter().find(|p| {
            same_endpoint(&p.kind)
                && match &p.kind {
                    PortKind::Gre {
                        remote: r, key: k, ..
                    } => *r == remote && k == key,
                    PortKind::GreUdp {
                        remote: r, key: k, ..
                    } => *r.ip() == remote && k == key,
                    _ => false,
                }
        });
        if let Some(other) = clash {
            return Err(ConfigError::TunnelTaken {
                port: name.to_string(),
                by: other.name.clone(),
                remote,
                key: *key,
            });
        }
        Ok(())
    }

    fn check_iface_free(&self, name: &str, iface: &str) -> Result<(), ConfigError> {
        let taken = self.ports.iter().find(|p| match &p.kind {
            PortKind::Iface { iface: i, .. } | PortKind::Trunk { iface: i, .. } => i == iface,
            PortKind::Veth { ifname, peer, .. } => ifname == iface || peer == iface,
            _ => false,
        });
        if let Some(other) = taken {
            return Err(ConfigError::IfaceTaken {
                port: name.to_string(),
                iface: iface.to_string(),
                by: other.name.clone(),
            });
        }
        Ok(())
    }

    /// Checks the whole configuration, as loaded from a state file.
    pub fn check_all(&self) -> Result<(), ConfigError> {
        let mut rebuilt = Config::default();
        for net in &self.networks {
            let checked = rebuilt.check_new_network(net)?;
            rebuilt.networks.push(checked);
        }
        for port in &self.ports {
            rebuilt.check_new_port(port)?;
            rebuilt.ports.push(port.clone());
        }
        if let Some(uplink) = &self.uplink {
            rebuilt.check_new_uplink(uplink)?;
            rebuilt.uplink = Some(uplink.clone());
        }
        for (a, b) in &self.connections {
            rebuilt.check_connect(a, b)?;
            rebuilt.connections.push((a.clone(), b.clone()));
        }
        for rule in &self.publish {
            rebuilt.check_new_publish(rule)?;
            rebuilt.publish.push(rule.clone());
        }
        Ok(())
    }
}

/// Checks the interface name `ifname` of port (or uplink) `port` by
/// [`yard_ctl::ifname::check_ifname`].
pub(crate) fn check_ifname(port: &str, ifname: &str) -> Result<(), ConfigError> {
    yard_ctl::ifname::check_ifname(ifname).map_err(|error| ConfigError::BadIfname {
        port: port.to_string(),
        ifname: ifname.to_string(),
        error,
    })
}

pub(crate) fn is_host_of(subnet: &Ipv4Cidr, ip: Ipv4Addr) -> bool {
    subnet.contains(ip) && ip != subnet.network().addr && ip != subnet.broadcast()
}

/// The MAC of a TAP the user gave none: Docker's scheme (02:42 and the IPv4
/// address) when it has an address, else a stable one derived from its name.
pub fn default_mac(port_name: &str, ip: Option<&Ipv4Cidr>) -> MacAddr {
    match ip {
        Some(ip) => {
            let a = ip.addr.octets();
            MacAddr([0x02, 0x42, a[0], a[1], a[2], a[3]])
        }
        None => MacAddr::local_from_seed(port_name.as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tap(name: &str, net: &str, ip: Option<&str>) -> PortSpec {
        PortSpec {
            name: name.into(),
            kind: PortKind::tap(net, Some(name), ip.map(|s| s.parse().unwrap())),
        }
    }

    fn with_web() -> Config {
        let mut config = Config::initial(false);
        let mut web = NetworkSpec::new("web");
        web.subnet = Some("10.61.0.9/24".parse().unwrap());
        let web = config.check_new_network(&web).unwrap();
        config.networks.push(web);
        config
    }

    #[test]
    fn initial_config_is_docker0_like() {
        let config = Config::initial(false);
        let yard0 = config.network("yard0").unwrap();
        assert_eq!(yard0.subnet.unwrap().to_string(), "172.30.0.0/16");
        assert_eq!(yard0.gateway.unwrap(), Ipv4Addr::new(172, 30, 0, 1));
        assert_eq!(config.uplink, None);
        config.check_all().unwrap();
        let config = Config::initial(true);
        let uplink = config.uplink.as_ref().unwrap();
        assert_eq!(
            (uplink.name.as_str(), &uplink.kind),
            ("host", &UplinkKind::Host)
        );
        config.check_all().unwrap();
    }

    #[test]
    fn new_networks_are_normalized_and_overlaps_refused() {
        let config = with_web();
        let web = config.network("web").unwrap();
        assert_eq!(web.subnet.unwrap().to_string(), "10.61.0.0/24");
        assert_eq!(web.gateway.unwrap(), Ipv4Addr::new(10, 61, 0, 1));
        let mut clash = NetworkSpec::new("clash");
        clash.subnet = Some("172.30.128.0/17".parse().unwrap());
        let err = config.check_new_network(&clash).unwrap_err().to_string();
        assert!(
            err.contains("overlaps 172.30.0.0/16 of network yard0"),
            "{err}"
        );
        let mut gw = NetworkSpec::new("gw");
        gw.gateway = Some(Ipv4Addr::new(10, 0, 0, 1));
        assert!(config
            .check_new_network(&gw)
            .unwrap_err()
            .to_string()
            .contains("needs --subnet"));
        gw.subnet = Some("10.70.0.0/24".parse().unwrap());
        assert!(config
            .check_new_network(&gw)
            .unwrap_err()
            .to_string()
            .contains("not a host address"));
        assert!(config
            .check_new_network(&NetworkSpec::new("web"))
            .unwrap_err()
            .to_string()
            .contains("already exists"));
        assert!(config
            .check_new_network(&NetworkSpec::new("bad name"))
            .is_err());
        let mut vlan = NetworkSpec::new("v");
        vlan.vlan = Some(4095);
        assert!(config.check_new_network(&vlan).is_err());
    }

    #[test]
    fn ports_are_checked_against_their_network() {
        let mut config = with_web();
        config
            .check_new_port(&tap("c1", "web", Some("10.61.0.2/24")))
            .unwrap();
        config.ports.push(tap("c1", "web", Some("10.61.0.2/24")));
        let dup = config
            .check_new_port(&tap("c2", "web", Some("10.61.0.2/24")))
            .unwrap_err()
            .to_string();
        assert!(dup.contains("already used by port c1"), "{dup}");
        let outside = config
            .check_new_port(&tap("c3", "web", Some("10.62.0.2/24")))
            .unwrap_err()
            .to_string();
        assert!(
            outside.contains("not a host address of network web"),
            "{outside}"
        );
        let gateway = config
            .check_new_port(&tap("c4", "web", Some("10.61.0.1/24")))
            .unwrap_err()
            .to_string();
        assert!(gateway.contains("gateway"), "{gateway}");
        let missing = config
            .check_new_port(&tap("c5", "nope", None))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("network nope not found"), "{missing}");
        assert!(config
            .check_remove_network("web")
            .unwrap_err()
            .to_string()
            .contains("in use by port(s) c1"));
        config.check_remove_network("yard0").unwrap();
    }

    #[test]
    fn trunks_need_vlan_networks() {
        let config = with_web();
        let trunk = PortSpec {
            name: "t".into(),
            kind: PortKind::Trunk {
                iface: "veth0".into(),
                nets: vec!["web".into()],
            },
        };
        assert!(config
            .check_new_port(&trunk)
            .unwrap_err()
            .to_string()
            .contains("has no VLAN id"));
    }

    #[test]
    fn default_mac_follows_docker() {
        let ip: Ipv4Cidr = "172.30.0.2/16".parse().unwrap();
        assert_eq!(
            default_mac("c1", Some(&ip)).to_string(),
            "02:42:ac:1e:00:02"
        );
        assert!(default_mac("c1", None).is_valid_source());
    }
}
