//! The success results: ADD's (and CHECK's `prevResult`) [`CniResult`], and
//! VERSION's [`VersionResult`].
//!
//! One model serves every supported version; the only difference on the
//! wire is that results before 1.0.0 carry `"version": "4"` in each IP
//! configuration, which [`CniResult::for_version`] adds.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::config::Dns;
use crate::{Ipv4Cidr, MacAddr};

/// An interface the plugin created or uses.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Interface {
    /// Its name (inside the sandbox for the container's).
    pub name: String,
    /// Its MAC address.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// The namespace path, for an interface inside the container.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
}

/// An address given to an interface.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IpConfig {
    /// `"4"` in results before 1.0.0; absent from 1.0.0 on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Address with prefix length.
    pub address: String,
    /// The gateway of its subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

impl IpConfig {
    /// The address as IPv4, if it is one.
    pub fn ipv4(&self) -> Option<Ipv4Cidr> {
        self.address.parse().ok()
    }

    /// The gateway as IPv4, if there is one.
    pub fn gateway_v4(&self) -> Option<Ipv4Addr> {
        self.gateway.as_deref()?.parse().ok()
    }
}

/// A route the container got.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Route {
    /// Destination prefix.
    pub dst: String,
    /// Next hop; absent for the interface's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
}

/// What ADD returns: the container's interface, its address and routes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CniResult {
    /// The version of the request.
    pub cni_version: String,
    /// Interfaces (here: the container's one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    /// Its addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    /// Its routes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// DNS settings.
    #[serde(default, skip_serializing_if = "Dns::is_empty")]
    pub dns: Dns,
}

impl CniResult {
    /// The result for an attachment: interface `ifname` with `mac` in the
    /// namespace `sandbox`, `ip` on a subnet whose gateway is `gateway` (the
    /// default route goes there).
    pub fn attachment(
        ifname: &str,
        mac: Option<MacAddr>,
        sandbox: &str,
        ip: Option<Ipv4Cidr>,
        gateway: Option<Ipv4Addr>,
        dns: Dns,
    ) -> CniResult {
        let ips = ip
            .map(|ip| IpConfig {
                version: None,
                address: ip.to_string(),
                gateway: gateway.map(|g| g.to_string()),
                interface: Some(0),
            })
            .into_iter()
            .collect();
        let routes = ip
            .and(gateway)
            .map(|gw| Route {
                dst: "0.0.0.0/0".into(),
                gw: Some(gw.to_string()),
            })
            .into_iter()
            .collect();
        CniResult {
            cni_version: String::new(),
            interfaces: vec![Interface {
                name: ifname.to_string(),
                mac: mac.map(|m| m.to_string()).unwrap_or_default(),
                sandbox: sandbox.to_string(),
            }],
            ips,
            routes,
            dns,
        }
    }

    /// This result as version `cni_version` writes it.
    pub fn for_version(mut self, cni_version: &str) -> CniResult {
        let before_1 = cni_version.starts_with("0.");
        for ip in &mut self.ips {
            ip.version = before_1.then(|| "4".to_string());
        }
        self.cni_version = cni_version.to_string();
        self
    }

    /// The first IPv4 address with its gateway (an IPAM plugin's answer).
    pub fn first_ipv4(&self) -> Option<(Ipv4Cidr, Option<Ipv4Addr>)> {
        self.ips
            .iter()
            .find_map(|ip| ip.ipv4().map(|a| (a, ip.gateway_v4())))
    }
}

/// What VERSION returns.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct VersionResult {
    /// The version of the request (or the newest supported).
    pub cni_version: String,
    /// Every version this plugin speaks.
    pub supported_versions: Vec<String>,
}
