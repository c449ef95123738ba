//! The configuration yardd keeps and persists: networks and ports as the user
//! asked for them, and the rules a change must pass before it is applied.
//!
//! Validation happens here, before anything is created, so a refused request
//! changes nothing. Every error names the object and the way out.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
mod gateway;

use yard_ctl::api::{ConntrackSettings, PublishSpec, UplinkSpec};
use yard_ctl::api::{NetworkSpec, PortKind, PortSpec, DEFAULT_NETWORK, DEFAULT_SUBNET, MAX_MTU};
use yard_ctl::ifname::MAX_IFNAME_LEN;
use yard_ctl::{Ipv4Cidr, MacAddr};

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
    /// The networks.
    pub networks: Vec<NetworkSpec>,
    /// The ports.
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

/// Why a change was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ConfigError(pub String);

pub(crate) fn refuse<T>(message: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(message.into()))
}

fn check_name(what: &str, name: &str) -> Result<(), ConfigError> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if name.is_empty() || name.len() > MAX_NAME_LEN || !ok_chars || name.starts_with(['-', '.']) {
        return refuse(format!(
            "{what} name '{name}' is not valid: use 1 to {MAX_NAME_LEN} letters, digits, '-', '_' or '.', not starting with '-' or '.'"
        ));
    }
    Ok(())
}

fn check_mtu(what: &str, mtu: u32) -> Result<(), ConfigError> {
    if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
        return refuse(format!(
            "{what}: MTU {mtu} is out of range: use {MIN_MTU} to {MAX_MTU}"
        ));
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
        }
    }
}

impl Config {
    /// The configuration of a first start: the default network `yard0`,
    /// 172.30.0.0/16 with gateway 172.30.0.1 (Docker's `docker0`).
    pub fn initial() -> Config {
        let mut yard0 = NetworkSpec::new(DEFAULT_NETWORK);
        let subnet: Ipv4Cidr = DEFAULT_SUBNET.parse().expect("the default subnet parses");
        yard0.subnet = Some(subnet);
        yard0.gateway = Some(subnet.first_host());
        Config {
            networks: vec![yard0],
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

    /// Checks a new network and returns it completed: subnet normalized to its
    /// network address, gateway defaulted to the first host address.
    pub fn check_new_network(&self, spec: &NetworkSpec) -> Result<NetworkSpec, ConfigError> {
        let mut spec = spec.clone();
        check_name("network", &spec.name)?;
        if self.network(&spec.name).is_some() {
            return refuse(format!(
                "network {} already exists: choose another name or remove it with `yardctl net rm {}`",
                spec.name, spec.name
            ));
        }
        check_mtu(&format!("network {}", spec.name), spec.mtu)?;
        if spec.aging_secs == 0 || spec.aging_secs > 1_000_000 {
            return refuse(format!(
                "network {}: aging time {} s is out of range: use 1 to 1000000 seconds",
                spec.name, spec.aging_secs
            ));
        }
        if let Some(vlan) = spec.vlan {
            if !(1..=4094).contains(&vlan) {
                return refuse(format!(
                    "network {}: VLAN id {vlan} is out of range: use 1 to 4094",
                    spec.name
                ));
            }
            if let Some(other) = self.networks.iter().find(|n| n.vlan == Some(vlan)) {
                return refuse(format!(
                    "network {}: VLAN id {vlan} is already used by network {}: choose another --vlan",
                    spec.name, other.name
                ));
            }
        }
        match spec.subnet {
            None => {
                if spec.gateway.is_some() {
                    return refuse(format!(
                        "network {}: --gateway needs --subnet (a network without a subnet is plain L2)",
                        spec.name
                    ));
                }
            }
            Some(subnet) => {
                if subnet.prefix > 30 {
                    return refuse(format!(
                        "network {}: subnet {subnet} is too small: use a prefix of /30 or shorter",
                        spec.name
                    ));
                }
                let subnet = subnet.network();
                if let Some(other) = self
                    .networks
                    .iter()
                    .find(|n| n.subnet.is_some_and(|s| s.overlaps(&subnet)))
                {
                    return refuse(format!(
                        "network {}: subnet {subnet} overlaps {} of network {}: choose a --subnet that does not overlap",
                        spec.name,
                        other.subnet.map(|s| s.to_string()).unwrap_or_default(),
                        other.name
                    ));
                }
                if let Some(uplink) = self
                    .uplink
                    .as_ref()
                    .filter(|u| u.ip.network().overlaps(&subnet))
                {
                    return refuse(format!(
                        "network {}: subnet {subnet} overlaps the uplink {}'s {}: the inside and the outside must not share addresses",
                        spec.name,
                        uplink.name,
                        uplink.ip.network()
                    ));
                }
                let gateway = spec.gateway.unwrap_or_else(|| subnet.first_host());
                if !is_host_of(&subnet, gateway) {
                    return refuse(format!(
                        "network {}: gateway {gateway} is not a host address of {subnet}",
                        spec.name
                    ));
                }
                spec.subnet = Some(subnet);
                spec.gateway = Some(gateway);
            }
        }
        Ok(spec)
    }

    /// Checks that network `name` may be removed.
    pub fn check_remove_network(&self, name: &str) -> Result<(), ConfigError> {
        if self.network(name).is_none() {
            return refuse(format!(
                "network {name} not found: `yardctl net ls` lists the networks"
            ));
        }
        let users: Vec<&str> = self
            .ports
            .iter()
            .filter(|p| p.nets().contains(&name))
            .map(|p| p.name.as_str())
            .collect();
        if !users.is_empty() {
            return refuse(format!(
                "network {name} is in use by port(s) {}: remove them first with `yardctl port rm NAME`",
                users.join(", ")
            ));
        }
        Ok(())
    }

    /// Checks a new port against the configuration.
    pub fn check_new_port(&self, spec: &PortSpec) -> Result<(), ConfigError> {
        check_name("port", &spec.name)?;
        let name = &spec.name;
        if self.port(name).is_some() {
            return refuse(format!(
                "port {name} already exists: choose another name or remove it with `yardctl port rm {name}`"
            ));
        }
        for net in spec.nets() {
            if self.network(net).is_none() {
                return refuse(format!(
                    "port {name}: network {net} not found: create it with `yardctl net create {net}` or see `yardctl net ls`"
                ));
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
            } => {
                check_ifname(name, ifname)?;
                if let Some(mtu) = mtu {
                    check_mtu(&format!("port {name}"), *mtu)?;
                }
                if let Some(mac) = mac {
                    if !mac.is_valid_source() {
                        return refuse(format!(
                            "port {name}: MAC {mac} is a group or zero address: use a unicast address"
                        ));
                    }
                }
                if let Some(other) = self.ports.iter().find(|p| {
                    matches!(&p.kind, PortKind::Tap { netns: n, ifname: i, .. } if n == netns && i == ifname)
                }) {
                    return refuse(format!(
                        "port {name}: interface {ifname} in netns {} is already port {}",
                        netns.as_deref().unwrap_or("(yardd's own)"),
                        other.name
                    ));
                }
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
                    return refuse(format!(
                        "port {name}: remote port 0 is not valid: omit it for 4754"
                    ));
                }
                self.check_tunnel(
                    name,
                    *remote.ip(),
                    key,
                    |k| matches!(k, PortKind::GreUdp { local: l, .. } if l == local),
                )?;
            }
            PortKind::Trunk { iface, nets } => {
                check_ifname(name, iface)?;
                self.check_iface_free(name, iface)?;
                if nets.is_empty() {
                    return refuse(format!("port {name}: a trunk needs --nets NET1,NET2"));
                }
                for net in nets {
                    if self.network(net).is_some_and(|n| n.vlan.is_none()) {
                        return refuse(format!(
                            "port {name}: network {net} has no VLAN id, so a trunk cannot carry it: create it with `--vlan ID`"
                        ));
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
                return refuse(format!(
                    "port {name}: address {ip} is not a host address of network {net} ({subnet}): use an address inside it with /{}",
                    subnet.prefix
                ));
            }
            if network.gateway == Some(ip.addr) {
                return refuse(format!(
                    "port {name}: {} is the gateway of network {net}",
                    ip.addr
                ));
            }
        }
        let taken = self.ports.iter().find(|p| {
            matches!(&p.kind, PortKind::Tap { net: n, ip: Some(other), .. } if n == net && other.addr == ip.addr)
        });
        if let Some(other) = taken {
            return refuse(format!(
                "port {name}: address {} is already used by port {} on network {net}",
                ip.addr, other.name
            ));
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
            return refuse(format!(
                "port {name}: remote {remote} is not a unicast address"
            ));
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
            return refuse(format!(
                "port {name}: tunnel port {} already reaches {remote} with {}: give this one another --key",
                other.name,
                key.map(|k| format!("key {k}")).unwrap_or_else(|| "no key".into())
            ));
        }
        Ok(())
    }

    fn check_iface_free(&self, name: &str, iface: &str) -> Result<(), ConfigError> {
        let taken = self.ports.iter().find(|p| {
            matches!(&p.kind, PortKind::Iface { iface: i, .. } | PortKind::Trunk { iface: i, .. } if i == iface)
        });
        if let Some(other) = taken {
            return refuse(format!(
                "port {name}: interface {iface} is already attached as port {}",
                other.name
            ));
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
    if yard_ctl::ifname::check_ifname(ifname).is_err() {
        return refuse(format!(
            "port {port}: interface name '{ifname}' is not valid: use 1 to {MAX_IFNAME_LEN} characters without '/', ':' or spaces"
        ));
    }
    Ok(())
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
            kind: PortKind::Tap {
                net: net.into(),
                netns: Some(name.into()),
                ifname: "eth0".into(),
                ip: ip.map(|s| s.parse().unwrap()),
                mac: None,
                mtu: None,
            },
        }
    }

    fn with_web() -> Config {
        let mut config = Config::initial();
        let mut web = NetworkSpec::new("web");
        web.subnet = Some("10.61.0.9/24".parse().unwrap());
        let web = config.check_new_network(&web).unwrap();
        config.networks.push(web);
        config
    }

    #[test]
    fn initial_config_is_docker0_like() {
        let config = Config::initial();
        let yard0 = config.network("yard0").unwrap();
        assert_eq!(yard0.subnet.unwrap().to_string(), "172.30.0.0/16");
        assert_eq!(yard0.gateway.unwrap(), Ipv4Addr::new(172, 30, 0, 1));
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
        let err = config.check_new_network(&clash).unwrap_err().0;
        assert!(
            err.contains("overlaps 172.30.0.0/16 of network yard0"),
            "{err}"
        );
        let mut gw = NetworkSpec::new("gw");
        gw.gateway = Some(Ipv4Addr::new(10, 0, 0, 1));
        assert!(config
            .check_new_network(&gw)
            .unwrap_err()
            .0
            .contains("needs --subnet"));
        gw.subnet = Some("10.70.0.0/24".parse().unwrap());
        assert!(config
            .check_new_network(&gw)
            .unwrap_err()
            .0
            .contains("not a host address"));
        assert!(config
            .check_new_network(&NetworkSpec::new("web"))
            .unwrap_err()
            .0
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
            .0;
        assert!(dup.contains("already used by port c1"), "{dup}");
        let outside = config
            .check_new_port(&tap("c3", "web", Some("10.62.0.2/24")))
            .unwrap_err()
            .0;
        assert!(
            outside.contains("not a host address of network web"),
            "{outside}"
        );
        let gateway = config
            .check_new_port(&tap("c4", "web", Some("10.61.0.1/24")))
            .unwrap_err()
            .0;
        assert!(gateway.contains("gateway"), "{gateway}");
        let missing = config
            .check_new_port(&tap("c5", "nope", None))
            .unwrap_err()
            .0;
        assert!(missing.contains("network nope not found"), "{missing}");
        assert!(config
            .check_remove_network("web")
            .unwrap_err()
            .0
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
            .0
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
