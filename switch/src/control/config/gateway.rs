//! Checks for the L3 part of the configuration: the uplink, routing between
//! networks (`net connect`) and published ports. Like the rest of
//! [`super`], a check runs before anything is changed and its error names
//! the object and the way out.

use std::net::Ipv4Addr;

use yard_ctl::api::{PortKind, PublishSpec, UplinkKind, UplinkSpec};

use super::{check_ifname, is_host_of, Config, ConfigError};

impl Config {
    /// Checks a new uplink: one at a time, an address of its own that no
    /// network's subnet contains, a gateway inside its subnet, an interface
    /// no port uses.
    pub fn check_new_uplink(&self, spec: &UplinkSpec) -> Result<(), ConfigError> {
        let name = &spec.name;
        // A host uplink gives way to an --iface or --tap one (the control
        // plane removes it first); two at once never.
        let replaces_host = |existing: &UplinkSpec| {
            existing.kind == UplinkKind::Host && spec.kind != UplinkKind::Host
        };
        if let Some(existing) = self.uplink.as_ref().filter(|e| !replaces_host(e)) {
            return Err(ConfigError::OneUplink {
                uplink: name.clone(),
                existing: existing.name.clone(),
            });
        }
        if self.port(name).is_some() {
            return Err(ConfigError::UplinkNameTaken(name.clone()));
        }
        match (&spec.kind, spec.ip) {
            (UplinkKind::Host, None) => {}
            (UplinkKind::Host, Some(_)) | (_, None) => {
                return Err(ConfigError::UplinkAddressKind {
                    uplink: name.clone(),
                })
            }
            (_, Some(ip)) => self.check_uplink_address(name, ip, spec.gateway)?,
        }
        match &spec.kind {
            UplinkKind::Iface { iface } => {
                check_ifname(name, iface)?;
                let taken = self.ports.iter().find(|p| {
                    matches!(&p.kind, PortKind::Iface { iface: i, .. } | PortKind::Trunk { iface: i, .. } if i == iface)
                });
                if let Some(port) = taken {
                    return Err(ConfigError::UplinkIfaceTaken {
                        uplink: name.clone(),
                        iface: iface.clone(),
                        by: port.name.clone(),
                    });
                }
            }
            UplinkKind::Tap { ifname, .. } => check_ifname(name, ifname)?,
            UplinkKind::Host => {}
        }
        Ok(())
    }

    /// An `--iface` or `--tap` uplink's address: a host of a subnet no
    /// network's overlaps, and a gateway inside that subnet.
    fn check_uplink_address(
        &self,
        name: &str,
        ip: yard_ctl::Ipv4Cidr,
        gateway: Option<Ipv4Addr>,
    ) -> Result<(), ConfigError> {
        let name = name.to_string();
        let subnet = ip.network();
        if ip.prefix > 30 || !is_host_of(&subnet, ip.addr) {
            return Err(ConfigError::UplinkAddress { uplink: name, ip });
        }
        if let Some(net) = self
            .networks
            .iter()
            .find(|n| n.subnet.is_some_and(|s| s.overlaps(&subnet)))
        {
            return Err(ConfigError::UplinkOverlaps {
                uplink: name,
                subnet,
                net: net.name.clone(),
            });
        }
        if let Some(gateway) = gateway {
            if !is_host_of(&subnet, gateway) || gateway == ip.addr {
                return Err(ConfigError::UplinkGateway {
                    uplink: name,
                    gateway,
                    subnet,
                });
            }
        }
        Ok(())
    }

    /// Checks that networks `a` and `b` may be connected.
    pub fn check_connect(&self, a: &str, b: &str) -> Result<(), ConfigError> {
        for net in [a, b] {
            if self.existing_network(net)?.subnet.is_none() {
                return Err(ConfigError::NoSubnet(net.to_string()));
            }
        }
        if a == b {
            return Err(ConfigError::SelfConnect(a.to_string()));
        }
        if self.is_connected(a, b) {
            return Err(ConfigError::AlreadyConnected {
                a: a.to_string(),
                b: b.to_string(),
            });
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
            Err(_) => match self.port(target).map(|p| p.kind.address()) {
                Some(Some(ip)) => ip.addr,
                Some(None) => return Err(ConfigError::TargetWithoutAddress(target.to_string())),
                None => return Err(ConfigError::UnknownTarget(target.to_string())),
            },
        };
        if !self
            .networks
            .iter()
            .any(|n| n.subnet.is_some_and(|s| is_host_of(&s, addr)))
        {
            return Err(ConfigError::TargetOutside(addr));
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
            return Err(ConfigError::PublishOverlaps {
                rule: spec.clone(),
                other: other.clone(),
            });
        }
        if let Some(host) = spec.host_ip {
            let ours = self
                .uplink
                .as_ref()
                .and_then(|u| u.ip)
                .is_some_and(|ip| ip.addr == host)
                || self.networks.iter().any(|n| n.gateway == Some(host));
            if !ours {
                return Err(ConfigError::NotOurAddress {
                    rule: spec.clone(),
                    host,
                });
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
            .ok_or(ConfigError::NoPublish {
                host: spec.host_ip,
                port: spec.host_ports.0,
                proto: spec.proto,
            })
    }
}

#[cfg(test)]
mod tests {
    use yard_ctl::api::{NetworkSpec, PortSpec, Transport};

    use super::*;

    fn config() -> Config {
        let mut config = Config::initial(false);
        let mut web = NetworkSpec::new("web");
        web.subnet = Some("172.31.0.0/16".parse().unwrap());
        let web = config.check_new_network(&web).unwrap();
        config.networks.push(web);
        config.ports.push(PortSpec {
            name: "c1".into(),
            kind: PortKind::tap("web", Some("c1"), Some("172.31.0.2/16".parse().unwrap())),
        });
        config
    }

    fn uplink(ip: &str, gw: Option<&str>) -> UplinkSpec {
        UplinkSpec {
            name: "up0".into(),
            kind: UplinkKind::Iface {
                iface: "veth-up".into(),
            },
            ip: Some(ip.parse().unwrap()),
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
            .to_string();
        assert!(err.contains("overlaps network web"), "{err}");
        let err = config
            .check_new_uplink(&uplink("10.1.0.2/24", Some("10.2.0.1")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("another host address"), "{err}");
        config.uplink = Some(uplink("10.1.0.2/24", Some("10.1.0.1")));
        let err = config
            .check_new_uplink(&uplink("10.9.0.2/24", None))
            .unwrap_err()
            .to_string();
        assert!(err.contains("one uplink"), "{err}");
    }

    #[test]
    fn a_host_uplink_has_no_address_and_the_others_need_one() {
        let config = config();
        let host = UplinkSpec {
            kind: UplinkKind::Host,
            ip: None,
            gateway: None,
            ..uplink("10.1.0.2/24", None)
        };
        config.check_new_uplink(&host).unwrap();
        for spec in [
            UplinkSpec {
                ip: Some("10.1.0.2/24".parse().unwrap()),
                ..host.clone()
            },
            UplinkSpec {
                ip: None,
                ..uplink("10.1.0.2/24", None)
            },
        ] {
            let err = config.check_new_uplink(&spec).unwrap_err().to_string();
            assert!(err.contains("a --host uplink has none"), "{err}");
        }
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
            .to_string()
            .contains("overlap"));
        let udp: PublishSpec = "8080:c1:80/udp".parse().unwrap();
        config.check_new_publish(&udp).unwrap();
        let nowhere: PublishSpec = "9000:10.200.0.1:80".parse().unwrap();
        assert!(config
            .check_new_publish(&nowhere)
            .unwrap_err()
            .to_string()
            .contains("no network"));
        let missing: PublishSpec = "9001:ghost:80".parse().unwrap();
        assert!(config
            .check_new_publish(&missing)
            .unwrap_err()
            .to_string()
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
            .to_string()
            .contains("already"));
        assert!(config.check_connect("web", "nope").is_err());
    }
}
