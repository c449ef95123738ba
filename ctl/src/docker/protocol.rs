//! The libnetwork remote network driver protocol: the JSON bodies dockerd
//! POSTs to `/NetworkDriver.*` and what it expects back. Field names are
//! Docker's (Go-style capitals). Only what the driver reads or answers is
//! modelled; unknown fields are ignored, as dockerd adds some over versions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `NetworkDriver.CreateNetwork`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateNetwork {
    /// Docker's network id (64 hex digits).
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// Generic options (`com.docker.network.generic`: `-o KEY=VALUE`) and
    /// Docker's own flags (`com.docker.network.internal`, …).
    #[serde(default)]
    pub options: BTreeMap<String, Value>,
    /// The IPv4 pools Docker's IPAM gave the network.
    #[serde(default, rename = "IPv4Data")]
    pub ipv4_data: Vec<IpamData>,
}

/// One address pool of a network.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpamData {
    /// The subnet, e.g. `172.18.0.0/16`.
    pub pool: String,
    /// The gateway with the pool's prefix, e.g. `172.18.0.1/16`.
    #[serde(default)]
    pub gateway: String,
}

/// `DeleteNetwork`.
#[derive(Debug, Deserialize)]
pub struct NetworkRef {
    /// Docker's network id.
    #[serde(rename = "NetworkID")]
    pub network_id: String,
}

/// `DeleteEndpoint`, `RevokeExternalConnectivity`.
#[derive(Debug, Deserialize)]
pub struct EndpointRef {
    /// Docker's endpoint id.
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
}

/// `CreateEndpoint`.
#[derive(Debug, Deserialize)]
pub struct CreateEndpoint {
    /// Docker's network id.
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// Docker's endpoint id.
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    /// The addresses Docker's IPAM gave the endpoint.
    #[serde(rename = "Interface")]
    pub interface: Option<EndpointInterface>,
}

/// An endpoint's addresses, as Docker gives them and as the driver answers.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointInterface {
    /// `A.B.C.D/N`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub address: String,
    /// Unused (no IPv6 yet).
    #[serde(
        default,
        rename = "AddressIPv6",
        skip_serializing_if = "String::is_empty"
    )]
    pub address_ipv6: String,
    /// `aa:bb:cc:dd:ee:ff`, or empty for the driver to choose.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac_address: String,
}

/// `Join`.
#[derive(Debug, Deserialize)]
pub struct Join {
    /// Docker's network id.
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// Docker's endpoint id.
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
}

/// `Join`'s answer: the interface for dockerd to move into the sandbox.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Joined {
    /// The interface's name now and the prefix dockerd names it with.
    pub interface_name: InterfaceName,
    /// The default gateway, or empty for none (an internal network).
    pub gateway: String,
}

/// Where dockerd finds the interface and how it names it in the sandbox.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InterfaceName {
    /// The interface in the driver's (the host's) namespace.
    pub src_name: String,
    /// dockerd appends a number: `eth` → `eth0`, `eth1`, …
    pub dst_prefix: String,
}

/// `ProgramExternalConnectivity`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProgramExternal {
    /// Docker's endpoint id.
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    /// `com.docker.network.portmap` carries `docker run -p`.
    #[serde(default)]
    pub options: BTreeMap<String, Value>,
}

/// One `-p` mapping (`com.docker.network.portmap`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PortBinding {
    /// IP protocol number: 6 TCP, 17 UDP.
    pub proto: u8,
    /// The container port.
    pub port: u16,
    /// The host address, or empty for every address.
    #[serde(default, rename = "HostIP")]
    pub host_ip: String,
    /// The first host port.
    pub host_port: u16,
    /// The last host port of a range; 0 for a single port.
    #[serde(default)]
    pub host_port_end: u16,
}

/// The option key of `docker run -p` mappings.
pub const PORTMAP: &str = "com.docker.network.portmap";
/// The option key of `-o KEY=VALUE` options.
pub const GENERIC: &str = "com.docker.network.generic";
/// `docker network create --internal`.
pub const INTERNAL: &str = "com.docker.network.internal";
