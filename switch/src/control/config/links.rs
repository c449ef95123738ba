//! The checks a link must pass: two different access ports of one network
//! that isolates its ports (`--no-icc`), not linked already (in either
//! order).

use yard_ctl::api::{LinkSpec, PortKind};

use super::{Config, ConfigError};
use crate::dataplane::bridge::links::NamedLink;

impl Config {
    /// The network a new link's ports share, or why it is refused.
    pub fn check_new_link(&self, link: &LinkSpec) -> Result<String, ConfigError> {
        if link.a == link.b {
            return Err(ConfigError::LinkToItself(link.a.clone()));
        }
        let net_of = |name: &str| -> Result<String, ConfigError> {
            let port = self
                .port(name)
                .ok_or_else(|| ConfigError::LinkNoPort(name.to_string()))?;
            match &port.kind {
                PortKind::Tap { net, .. }
                | PortKind::Veth { net, .. }
                | PortKind::Iface { net, .. } => Ok(net.clone()),
                _ => Err(ConfigError::LinkNotAccess(name.to_string())),
            }
        };
        let (net_a, net_b) = (net_of(&link.a)?, net_of(&link.b)?);
        if net_a != net_b {
            return Err(ConfigError::LinkAcrossNetworks {
                a: link.a.clone(),
                b: link.b.clone(),
                net_a,
                net_b,
            });
        }
        if self.network(&net_a).is_some_and(|n| n.icc) {
            return Err(ConfigError::LinkOnIccNetwork {
                a: link.a.clone(),
                b: link.b.clone(),
                net: net_a,
            });
        }
        if self.link_between(&link.a, &link.b).is_some() {
            return Err(ConfigError::LinkExists {
                a: link.a.clone(),
                b: link.b.clone(),
            });
        }
        Ok(net_a)
    }

    /// The link between `a` and `b`, in either order.
    pub fn link_between(&self, a: &str, b: &str) -> Option<&LinkSpec> {
        self.links
            .iter()
            .find(|l| (l.a == a && l.b == b) || (l.a == b && l.b == a))
    }

    /// The network of a configured link (its first port's).
    pub fn link_net(&self, link: &LinkSpec) -> Option<String> {
        self.port(&link.a).map(|p| p.nets()[0].to_string())
    }

    /// Network `net`'s links as the datapath takes them.
    pub fn datapath_links(&self, net: &str) -> Vec<NamedLink> {
        self.links
            .iter()
            .filter(|l| self.link_net(l).as_deref() == Some(net))
            .map(|l| NamedLink {
                a: l.a.clone(),
                b: l.b.clone(),
                ports: l.ports.iter().map(|p| p.ip_proto_port()).collect(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use yard_ctl::api::{NetworkSpec, PortSpec};

    use super::*;

    fn config() -> Config {
        let mut config = Config::default();
        for (name, icc) in [("iso", false), ("open", true)] {
            let mut net = NetworkSpec::new(name);
            net.icc = icc;
            config.networks.push(net);
        }
        for (port, net) in [("a", "iso"), ("b", "iso"), ("c", "open"), ("d", "open")] {
            config.ports.push(PortSpec {
                name: port.into(),
                kind: PortKind::tap(net, Some(port), None),
            });
        }
        config
    }

    fn link(a: &str, b: &str) -> LinkSpec {
        LinkSpec {
            a: a.into(),
            b: b.into(),
            ports: Vec::new(),
        }
    }

    #[test]
    fn links_join_two_ports_of_one_isolated_network_once() {
        let mut config = config();
        assert_eq!(config.check_new_link(&link("a", "b")), Ok("iso".into()));
        config.links.push(link("a", "b"));
        assert_eq!(
            config.check_new_link(&link("b", "a")),
            Err(ConfigError::LinkExists {
                a: "b".into(),
                b: "a".into()
            })
        );
        assert_eq!(config.datapath_links("iso").len(), 1);
        assert!(config.datapath_links("open").is_empty());
    }

    #[test]
    fn links_that_make_no_sense_are_refused() {
        let config = config();
        assert!(matches!(
            config.check_new_link(&link("a", "a")),
            Err(ConfigError::LinkToItself(_))
        ));
        assert!(matches!(
            config.check_new_link(&link("a", "zz")),
            Err(ConfigError::LinkNoPort(p)) if p == "zz"
        ));
        assert!(matches!(
            config.check_new_link(&link("a", "c")),
            Err(ConfigError::LinkAcrossNetworks { .. })
        ));
        let on_icc = config.check_new_link(&link("c", "d")).unwrap_err();
        assert!(
            on_icc.to_string().contains("reach each other already"),
            "{on_icc}"
        );
    }
}
