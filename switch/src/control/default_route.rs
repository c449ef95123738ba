//! Moving a namespace's default route to another of its ports, when the
//! port that carried it is removed (as Docker's `network disconnect` does).
//!
//! Which port carries the route is decided by
//! [`Config::default_route_holder`](crate::control::config::Config::default_route_holder);
//! this module only installs it, over netlink inside the namespace, on the
//! control thread (through the namespace helper when yardd is rootless,
//! [`crate::control::netns_helper`]). A failure changes nothing else: the port stays up, only
//! without the route, and the daemon's log says how to add it by hand.

use std::net::Ipv4Addr;

use yard_ctl::api::PortKind;

use crate::control::config::Config;
use crate::control::netns_helper::{self, HelperError, NetnsTask};
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
    /// The namespace helper could not set it (rootless yardd).
    #[error("port {port}: cannot move the default route to it: {error}")]
    Helper {
        /// The port that should carry the route.
        port: String,
        /// What failed.
        error: HelperError,
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

/// Makes `ifname` in the current thread's namespace carry the default route
/// via `gateway` (what [`install`] runs there, directly or through the
/// namespace helper).
pub fn set_here(ifname: &str, gateway: Ipv4Addr) -> Result<(), NetconfError> {
    configure_link(&LinkConfig {
        ifname,
        mac: None,
        mtu: None,
        txqlen: None,
        addr: None,
        default_gateway: Some(gateway),
    })
}

/// Makes `ifname` in `netns` (yardd's own namespace for `None`) carry the
/// default route via `gateway`, replacing the one in force if any.
pub fn install(
    port: &str,
    netns: Option<&str>,
    ifname: &str,
    gateway: Ipv4Addr,
) -> Result<(), RouteError> {
    let netlink = |error| RouteError::Netlink {
        port: port.to_string(),
        error,
    };
    let Some(ns) = netns else {
        return set_here(ifname, gateway).map_err(netlink);
    };
    let ns = NetnsRef::parse(ns);
    if netns_helper::needed() {
        let task = NetnsTask::DefaultRoute {
            ifname: ifname.to_string(),
            gateway,
        };
        return netns_helper::run(&ns, task)
            .map(drop)
            .map_err(|error| RouteError::Helper {
                port: port.to_string(),
                error,
            });
    }
    let ifname = ifname.to_string();
    run_in_netns(&ns, move || set_here(&ifname, gateway))
        .map_err(|error| RouteError::Netns {
            port: port.to_string(),
            error,
        })?
        .map_err(netlink)
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
