//! Moving a namespace's default route to another of its ports, when the
//! port that carried it is removed (as Docker's `network disconnect` does).
//!
//! Which port carries the route is decided by
//! [`Config::default_route_holder`](crate::control::config::Config::default_route_holder);
//! this module only installs it, over netlink inside the namespace, on the
//! control thread. A failure changes nothing else: the port stays up, only
//! without the route, and the daemon's log says how to add it by hand.

use std::net::Ipv4Addr;

use yard_ctl::api::PortKind;

use crate::control::config::Config;
use crate::sys::netconf::{configure_link, LinkConfig, NetconfError};
use crate::sys::netns::{run_in_netns, NetnsError, NetnsRef};

/// Why the default route could not be moved to a port.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// The namespace could not be entered.
    #[error("port {port}: cannot move the default route to it: {error}")]
    Netns {
        /// The port that should carry the route.
        port: String,
        /// What failed (it names the namespace).
        error: NetnsError,
    },
    /// Netlink refused the route.
    #[error("port {port}: cannot move the default route to it: {error}; add it by hand with `ip route replace default via GATEWAY dev IFNAME` in the container")]
    Netlink {
        /// The port that should carry the route.
        port: String,
        /// What failed (it names the interface).
        error: NetconfError,
    },
}

/// Makes `ifname` in `netns` (yardd's own namespace for `None`) carry the
/// default route via `gateway`, replacing the one in force if any.
pub fn install(
    port: &str,
    netns: Option<&str>,
    ifname: &str,
    gateway: Ipv4Addr,
) -> Result<(), RouteError> {
    let ifname = ifname.to_string();
    let set = move || {
        configure_link(&LinkConfig {
            ifname: &ifname,
            mac: None,
            mtu: None,
            txqlen: None,
            addr: None,
            default_gateway: Some(gateway),
        })
    };
    let result = match netns {
        Some(ns) => run_in_netns(&NetnsRef::parse(ns), set).map_err(|error| RouteError::Netns {
            port: port.to_string(),
            error,
        })?,
        None => set(),
    };
    result.map_err(|error| RouteError::Netlink {
        port: port.to_string(),
        error,
    })
}

/// The namespace whose default route port `name` carries, if it carries
/// one (asked before the port is removed).
pub fn carried_by(config: &Config, name: &str) -> Option<Option<String>> {
    let Some(PortKind::Tap { netns, .. }) = config.port(name).map(|p| &p.kind) else {
        return None;
    };
    let (holder, _) = config.default_route_holder(netns)?;
    (holder.name == name).then(|| netns.clone())
}

/// After the port carrying `netns`'s default route was removed from
/// `config`: installs the route on the port that holds it now, if any and
/// if `is_up` says it is attached. A failure is logged, not returned: the
/// removal it follows has happened either way.
pub fn hand_over(config: &Config, netns: &Option<String>, is_up: impl Fn(&str) -> bool) {
    let Some((spec, gateway)) = config.default_route_holder(netns) else {
        return;
    };
    let PortKind::Tap { ifname, .. } = &spec.kind else {
        return;
    };
    if !is_up(&spec.name) {
        return;
    }
    if let Err(error) = install(&spec.name, netns.as_deref(), ifname, gateway) {
        tracing::warn!(%error, "default route not handed over");
    }
}
