//! Checks for the L3 part of the configuration: the uplink, routing between
//! networks (`net connect`) and published ports. Like the rest of
//! [`super`], a check runs before anything is changed and its error names
//! the object and the way out.

use std::net::Ipv4Addr;

use yard_ctl::api::{PortKind, PublishSpec, UplinkKind, UplinkSpec};

use super::{check_ifname, is_host_of, refuse, Config, ConfigError};

impl Config {
    /// Checks a new uplink: one at a time, an address of its own that no
    /// network's subnet contains, a gateway inside its subnet, an interface
    /// no port uses.
    pub fn check_new_uplink(&self, spec: &UplinkSpec) -> Result<(), ConfigError> {
        let name = &spec.name;
        if let Some(existing) = &self.uplink {
            return refuse(format!(
                "uplink {}: yardd has one uplink, {} — remove it first with `yardctl uplink rm {}`",
                name, existing.name, existing.name
            ));
        }
        if self.port(name).is_some() {
            return refuse(format!("uplink {name}: a port already has that name"));
        }
        let subnet = spec.ip.network();
        if spec.ip.prefix > 30 || !is_host_of(&subnet, spec.ip.addr) {
            return refuse(format!(
                "uplink {name}: {} is not a host address with room for a gateway: use e.g. 10.1.0.2/24",
                spec.ip
            ));
        }
        if let Some(net) = self
            .networks
            .iter()
            .find(|n| n.subnet.is_some_and(|s| s.overlaps(&subnet)))
        {
            return refuse(format!(
                "uplink {name}: {subnet} overlaps network {}'s subnet: the outside must be a different subnet",
                net.name
            ));
        }
        if let Some(gw) = spec.gateway {
            if !is_host_of(&subnet, gw) || gw == spec.ip.addr {
                return refuse(format!(
                    "uplink {name}: gateway {gw} must be another host address of {subnet}"
                ));
            }
        }
        match &spec.kind {
            UplinkKind::Iface { iface } => {
                check_ifname(name, iface)?;
                let taken = self.ports.iter().find(|p| {
                    matches!(&p.kind, PortKind::Iface { iface: i, .. } | PortKind::Trunk { iface: i, .. } if i == iface)
                });
                if let Some(port) = taken {
                    return refuse(format!(
                        "uplink {name}: interface {iface} is already port {}",
                        port.name
                    ));
                }
            }
            UplinkKind::Tap { ifname, .. } => check_ifname(name, ifname)?,
        }
        Ok(())
    }

    /// Checks that networks `a` and `b` may be connected.
    pub fn check_connect(&self, a: &str, b: &str) -> Result<(), ConfigError> {
        for net in [a, b] {
            match self.network(net) {
                None => {
                    return refuse(format!(
                        "network {net} not found: `yardctl net ls` lists the networks"
                    ))
                }
                Some(n) if n.subnet.is_none() => {
                    return refuse(format!(
                    "network {net} has no subnet, so nothing routes to it: create it with --subnet"
                ))
                }
                Some(_) => {}
            }
        }
        if a == b {
            return refuse(format!("network {a} cannot be connected to itself"));
        }
        if self.is_connected(a, b) {
            return refuse(format!("networks {a} and {b} are already connected"));
        }
        Ok(())
    }

    /// True when `a` and `b` are connected.
    pub fn is_connected(&self, a: &str, b: &str) -> bool {
        self.connections
            .iter()
            .any(|(x, y)| (x == a && y == b) || (x == b && y == a))
    }

    /// The address a publish target (a port name or an address) stands for,
    /// and the network whose subnet holds it.
    pub fn resolve_target(&self, target: &str) -> Result<Ipv4Addr, ConfigError> {
        let addr = match target.parse::<Ipv4Addr>() {
            Ok(addr) => addr,
            Err(_) => match self.port(target).map(|p| &p.kind) {
                Some(PortKind::Tap { ip: Some(ip), .. }) => ip.addr,
                Some(_) => {
                    return refuse(format!(
                        "port {target} has no address yardd knows: publish to its IP address instead"
                    ))
                }
                None => {
                    return refuse(format!(
                        "publish target {target} is neither a port nor an IPv4 address: `yardctl port ls` lists the ports"
                    ))
                }
            },
        };
        if !self
            .networks
            .iter()
            .any(|n| n.subnet.is_some_and(|s| is_host_of(&s, addr)))
        {
            return refuse(format!(
                "publish target {addr} is in no network's subnet: publish to a container address"
            ));
        }
        Ok(addr)
    }

    /// Checks a new published port: its host ports are free for its protocol
    /// and host address, and its target resolves.
    pub fn check_new_publish(&self, spec: &PublishSpec) -> Result<(), ConfigError> {
        let overlaps = |other: &PublishSpec| {
            other.proto == spec.proto
                && (other.host_ip == spec.host_ip
                    || other.host_ip.is_none()
                    || spec.host_ip.is_none())
                && other.host_ports.0 <= spec.host_ports.1
                && spec.host_ports.0 <= other.host_ports.1
        };
        if let Some(other) = self.publish.iter().find(|p| overlaps(p)) {
            return refuse(format!(
                "publish {spec}: its host ports overlap {other}: remove that with `yardctl publish rm {other}` or pick other ports"
            ));
        }
        if let Some(host) = spec.host_ip {
            let ours = self.uplink.as_ref().is_some_and(|u| u.ip.addr == host)
                || self.networks.iter().any(|n| n.gateway == Some(host));
            if !ours {
                return refuse(format!(
                    "publish {spec}: {host} is not an address of yardd (the uplink's or a gateway's)"
                ));
            }
        }
        self.resolve_target(&spec.target)?;
        Ok(())
    }

    /// The configured rule a `publish rm` names: same host address, first
    /// host port and protocol.
    pub fn find_publish(&self, spec: &PublishSpec) -> Result<usize, ConfigError> {
        self.publish
            .iter()
            .position(|p| {
                p.host_ip == spec.host_ip
                    && p.host_ports.0 == spec.host_ports.0
                    && p.proto == spec.proto
            })
            .ok_or_else(|| {
                ConfigError(format!(
                    "no published port {}{}/{}: `yardctl publish ls` lists them",
                    spec.host_ip.map(|ip| format!("{ip}:")).unwrap_or_default(),
                    spec.host_ports.0,
                    match spec.proto {
                        yard_ctl::api::Transport::Tcp => "tcp",
                        yard_ctl::api::Transport::Udp => "udp",
                    }
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use yard_ctl::api::{NetworkSpec, PortSpec, Transport};

    use super::*;

    fn config() -> Config {
        let mut config = Config::initial();
        let mut web = NetworkSpec::new("web");
        web.subnet = Some("172.31.0.0/16".parse().unwrap());
        let web = config.check_new_network(&web).unwrap();
        config.networks.push(web);
        config.ports.push(PortSpec {
            name: "c1".into(),
            kind: PortKind::Tap {
                net: "web".into(),
                netns: Some("c1".into()),
                ifname: "eth0".into(),
                ip: Some("172.31.0.2/16".parse().unwrap()),
                mac: None,
                mtu: None,
            },
        });
        config
    }

    fn uplink(ip: &str, gw: Option<&str>) -> UplinkSpec {
        UplinkSpec {
            name: "up0".into(),
            kind: UplinkKind::Iface {
                iface: "veth-up".into(),
            },
            ip: ip.parse().unwrap(),
            gateway: gw.map(|g| g.parse().unwrap()),
        }
    }

    #[test]
    fn uplink_checks() {
        let mut config = config();
        config
            .check_new_uplink(&uplink("10.1.0.2/24", Some("10.1.0.1")))
            .unwrap();
        let err = config
            .check_new_uplink(&uplink("172.31.5.2/24", None))
            .unwrap_err()
            .0;
        assert!(err.contains("overlaps network web"), "{err}");
        let err = config
            .check_new_uplink(&uplink("10.1.0.2/24", Some("10.2.0.1")))
            .unwrap_err()
            .0;
        assert!(err.contains("another host address"), "{err}");
        config.uplink = Some(uplink("10.1.0.2/24", Some("10.1.0.1")));
        let err = config
            .check_new_uplink(&uplink("10.9.0.2/24", None))
            .unwrap_err()
            .0;
        assert!(err.contains("one uplink"), "{err}");
    }

    #[test]
    fn publish_checks() {
        let mut config = config();
        let rule: PublishSpec = "8080:c1:80".parse().unwrap();
        config.check_new_publish(&rule).unwrap();
        assert_eq!(
            config.resolve_target("c1").unwrap(),
            Ipv4Addr::new(172, 31, 0, 2)
        );
        config.publish.push(rule);
        let clash: PublishSpec = "8000-8090:172.31.0.3:8000-8090".parse().unwrap();
        assert!(config
            .check_new_publish(&clash)
            .unwrap_err()
            .0
            .contains("overlap"));
        let udp: PublishSpec = "8080:c1:80/udp".parse().unwrap();
        config.check_new_publish(&udp).unwrap();
        let nowhere: PublishSpec = "9000:10.200.0.1:80".parse().unwrap();
        assert!(config
            .check_new_publish(&nowhere)
            .unwrap_err()
            .0
            .contains("no network"));
        let missing: PublishSpec = "9001:ghost:80".parse().unwrap();
        assert!(config
            .check_new_publish(&missing)
            .unwrap_err()
            .0
            .contains("neither a port"));
        let by_host = PublishSpec {
            host_ip: None,
            host_ports: (8080, 8080),
            target: String::new(),
            target_ports: (8080, 8080),
            proto: Transport::Tcp,
        };
        assert_eq!(config.find_publish(&by_host).unwrap(), 0);
    }

    #[test]
    fn connect_checks() {
        let mut config = config();
        config.check_connect("web", "yard0").unwrap();
        config.connections.push(("web".into(), "yard0".into()));
        assert!(config.is_connected("yard0", "web"));
        assert!(config
            .check_connect("yard0", "web")
            .unwrap_err()
            .0
            .contains("already"));
        assert!(config.check_connect("web", "nope").is_err());
    }
}
