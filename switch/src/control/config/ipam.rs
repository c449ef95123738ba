//! Address management (IPAM) and the default route of a namespace with
//! several ports.
//!
//! A TAP added without an address on a network with a subnet gets the lowest
//! free host address of the network's `ip_range` (or of its whole subnet):
//! never the subnet's network or broadcast address, never the gateway, never
//! an address another port of the network holds. The address is written into
//! the port's spec, so it is persisted with it and kept across restarts, and
//! it is free again once the port is removed: the configuration is the only
//! record of what is in use, there is no separate lease table to drift.
//!
//! Of the ports in one namespace that have an address on a network with a
//! gateway, exactly one carries the default route: the last one added with
//! `default_route`, else the first. Nothing here touches the kernel; the
//! callers install the route this module names.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use yard_ctl::api::{NetworkSpec, PortKind, PortSpec};
use yard_ctl::Ipv4Cidr;

use super::{is_host_of, Config, ConfigError};

impl Config {
    /// `spec` completed with an address: a TAP without `ip` on a network
    /// with a subnet gets the next free one; any other spec is returned as
    /// it is (the usual checks still follow).
    pub fn with_address(&self, mut spec: PortSpec) -> Result<PortSpec, ConfigError> {
        let PortKind::Tap { net, ip, .. } = &mut spec.kind else {
            return Ok(spec);
        };
        if ip.is_some() {
            return Ok(spec);
        }
        let Some(network) = self.network(net) else {
            return Ok(spec);
        };
        let Some(subnet) = network.subnet else {
            return Ok(spec);
        };
        let range = network.ip_range.unwrap_or(subnet);
        let taken = self.addresses_in_use(net);
        let free = hosts(&range)
            .filter(|a| is_host_of(&subnet, *a))
            .filter(|a| network.gateway != Some(*a))
            .find(|a| !taken.contains(a));
        match free {
            Some(addr) => {
                *ip = Some(Ipv4Cidr {
                    addr,
                    prefix: subnet.prefix,
                });
                Ok(spec)
            }
            None => Err(ConfigError::NoFreeAddress {
                port: spec.name.clone(),
                net: net.clone(),
                range,
            }),
        }
    }

    /// The addresses ports of network `net` hold.
    fn addresses_in_use(&self, net: &str) -> HashSet<Ipv4Addr> {
        self.ports
            .iter()
            .filter(|p| p.nets() == [net])
            .filter_map(|p| p.kind.address().map(|ip| ip.addr))
            .collect()
    }

    /// Checks a new network's `ip_range` against its (normalized) subnet and
    /// returns it normalized to its network address.
    pub(super) fn check_ip_range(
        &self,
        spec: &NetworkSpec,
    ) -> Result<Option<Ipv4Cidr>, ConfigError> {
        let Some(range) = spec.ip_range else {
            return Ok(None);
        };
        let Some(subnet) = spec.subnet else {
            return Err(ConfigError::RangeWithoutSubnet(spec.name.clone()));
        };
        let range = range.network();
        if range.prefix < subnet.prefix || !subnet.contains(range.addr) {
            return Err(ConfigError::RangeOutsideSubnet {
                net: spec.name.clone(),
                range,
                subnet,
            });
        }
        Ok(Some(range))
    }

    /// Checks a new network's `--host-loopback` address: a network with a
    /// subnet, an address a host may have, and either the gateway's or one
    /// outside every network's subnet (one inside could be a container's).
    pub(super) fn check_host_loopback(&self, spec: &NetworkSpec) -> Result<(), ConfigError> {
        let Some(addr) = spec.host_loopback else {
            return Ok(());
        };
        let error = |why: &'static str| ConfigError::HostLoopback {
            net: spec.name.clone(),
            addr,
            why,
        };
        let Some(subnet) = spec.subnet else {
            return Err(error(
                "needs a subnet: only a routed network reaches the host; add --subnet CIDR",
            ));
        };
        let martian = addr.octets()[0] == 0
            || addr.is_loopback()
            || addr.is_multicast()
            || addr.is_broadcast();
        if martian {
            return Err(error(
                "is not an address a host can have; use the gateway's address or one \
                 such as 169.254.1.2",
            ));
        }
        if subnet.contains(addr) && Some(addr) != spec.gateway {
            return Err(error(
                "is inside the network's subnet, where a container may have it; use the \
                 gateway's address or one outside the subnet such as 169.254.1.2",
            ));
        }
        let elsewhere = self
            .networks
            .iter()
            .filter(|n| n.name != spec.name)
            .any(|n| n.subnet.is_some_and(|s| s.contains(addr)));
        if elsewhere {
            return Err(error(
                "is inside another network's subnet; use one outside every network's \
                 subnet such as 169.254.1.2",
            ));
        }
        Ok(())
    }

    /// The gateway `spec` routes through when it carries the default route
    /// of its namespace: a TAP with an address on a network with a gateway.
    fn route_gateway(&self, spec: &PortSpec) -> Option<Ipv4Addr> {
        match &spec.kind {
            PortKind::Tap {
                net, ip: Some(_), ..
            } => self.network(net)?.gateway,
            _ => None,
        }
    }

    /// Whether `spec`, being attached now, installs its namespace's default
    /// route: it asked for it, or no port already configured in its
    /// namespace has one to offer. Ports are attached in configuration
    /// order, so on a restore the holder's route is the one left in force.
    pub fn takes_default_route(&self, spec: &PortSpec) -> bool {
        let PortKind::Tap {
            netns,
            default_route,
            ..
        } = &spec.kind
        else {
            return false;
        };
        if self.route_gateway(spec).is_none() {
            return false;
        }
        *default_route
            || !self
                .route_candidates(netns)
                .any(|(p, _)| p.name != spec.name)
    }

    /// The ports of namespace `netns` that could carry its default route,
    /// in configuration order, with their gateway.
    fn route_candidates<'a>(
        &'a self,
        netns: &'a Option<String>,
    ) -> impl Iterator<Item = (&'a PortSpec, Ipv4Addr)> + 'a {
        self.ports.iter().filter_map(move |p| match &p.kind {
            PortKind::Tap { netns: n, .. } if n == netns => self.route_gateway(p).map(|gw| (p, gw)),
            _ => None,
        })
    }

    /// The port carrying the default route of namespace `netns`, with its
    /// gateway: the last one added with `default_route`, else the first
    /// that has an address on a network with a gateway.
    pub fn default_route_holder<'a>(
        &'a self,
        netns: &'a Option<String>,
    ) -> Option<(&'a PortSpec, Ipv4Addr)> {
        let flagged = self
            .route_candidates(netns)
            .filter(|(p, _)| {
                matches!(
                    p.kind,
                    PortKind::Tap {
                        default_route: true,
                        ..
                    }
                )
            })
            .last();
        flagged.or_else(|| self.route_candidates(netns).next())
    }

    /// Records that port `name` took its namespace's default route: no other
    /// port of the namespace keeps the `default_route` flag.
    pub fn claim_default_route(&mut self, name: &str) {
        let Some(PortKind::Tap { netns, .. }) = self.port(name).map(|p| p.kind.clone()) else {
            return;
        };
        for port in &mut self.ports {
            if let PortKind::Tap {
                netns: n,
                default_route,
                ..
            } = &mut port.kind
            {
                if *n == netns && port.name != name {
                    *default_route = false;
                }
            }
        }
    }
}

/// Every address of `range`, in order (its network and broadcast addresses
/// included: they are only excluded when they are the subnet's).
fn hosts(range: &Ipv4Cidr) -> impl Iterator<Item = Ipv4Addr> {
    let first = u32::from(range.network().addr);
    let last = u32::from(range.broadcast());
    (first..=last).map(Ipv4Addr::from)
}

#[cfg(test)]
mod tests;
