//! What the runtime hands the plugin: the `CNI_*` environment ([`Env`]) and
//! the network configuration on stdin ([`NetConf`]).
//!
//! Keys mirror the reference `bridge` plugin where the meaning is the same
//! (`mtu`, `ipMasq`, `isGateway`, `isDefaultGateway`, `hairpinMode`, `vlan`,
//! `portIsolation`, `ipam`, `dns`); the yardd-specific ones are `socket`
//! (yardd's control socket), `network` (the yardd network, by default the
//! configuration's `name`), `subnet`, `gateway` and `ipRange` (used when the
//! network is created on first use). Unknown keys are ignored, as the spec
//! asks, so runtimes may add their own. Parsing never touches the system.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::error::CniError;
use super::SUPPORTED_VERSIONS;
use crate::api::{NetworkSpec, Transport, DEFAULT_MTU};
use crate::Ipv4Cidr;

/// The command the runtime asks for (`CNI_COMMAND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Attach the container.
    Add,
    /// Detach it (idempotent).
    Del,
    /// Verify the attachment.
    Check,
    /// Report the supported versions.
    Version,
    /// Spec 1.1: is the plugin ready for ADD?
    Status,
    /// Spec 1.1: remove attachments the runtime no longer knows.
    Gc,
}

/// The `CNI_*` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    /// `CNI_COMMAND`.
    pub command: Command,
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS`: the namespace's path (may be empty on DEL).
    pub netns: Option<String>,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_PATH`: where delegated plugins are looked for.
    pub path: Vec<PathBuf>,
}

impl Env {
    /// Reads the parameters through `var` (the process environment, or a
    /// map in tests). ADD, DEL and CHECK need the container id and
    /// interface name; ADD and CHECK also the namespace.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Env, CniError> {
        let get = |name: &str| var(name).filter(|v| !v.is_empty());
        let command = match get("CNI_COMMAND").as_deref() {
            Some("ADD") => Command::Add,
            Some("DEL") => Command::Del,
            Some("CHECK") => Command::Check,
            Some("VERSION") => Command::Version,
            Some("STATUS") => Command::Status,
            Some("GC") => Command::Gc,
            Some(_) => {
                return Err(CniError::Environment {
                    var: "CNI_COMMAND",
                    why: "is not one of ADD, DEL, CHECK, VERSION, STATUS, GC",
                })
            }
            None => {
                return Err(CniError::Environment {
                    var: "CNI_COMMAND",
                    why: "is not set",
                })
            }
        };
        let per_container = matches!(command, Command::Add | Command::Del | Command::Check);
        let required = |name: &'static str| -> Result<String, CniError> {
            match get(name) {
                Some(v) => Ok(v),
                None if per_container => Err(CniError::Environment {
                    var: name,
                    why: "is not set",
                }),
                None => Ok(String::new()),
            }
        };
        let container_id = required("CNI_CONTAINERID")?;
        let ifname = required("CNI_IFNAME")?;
        let netns = get("CNI_NETNS");
        if matches!(command, Command::Add | Command::Check) && netns.is_none() {
            return Err(CniError::Environment {
                var: "CNI_NETNS",
                why: "is not set",
            });
        }
        if per_container && crate::ifname::check_ifname(&ifname).is_err() {
            return Err(CniError::Environment {
                var: "CNI_IFNAME",
                why: "is not a valid interface name (1-15 characters, no '/', ':' or spaces)",
            });
        }
        if per_container
            && !container_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(CniError::Environment {
                var: "CNI_CONTAINERID",
                why: "has characters other than letters, digits, '-', '_' and '.'",
            });
        }
        let path = get("CNI_PATH")
            .map(|p| {
                p.split(':')
                    .filter(|d| !d.is_empty())
                    .map(PathBuf::from)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Env {
            command,
            container_id,
            netns,
            ifname,
            path,
        })
    }

    /// The yardd port of this attachment: `cni-`, the first 16 characters
    /// of the container id, `-`, the interface name. The same for ADD, CHECK
    /// and DEL, so nothing needs remembering between them.
    pub fn port_name(&self) -> String {
        let id: String = self.container_id.chars().take(16).collect();
        format!("{PORT_PREFIX}{id}-{}", self.ifname)
    }
}

/// The prefix of every port this plugin creates (GC only ever removes those).
pub const PORT_PREFIX: &str = "cni-";

/// One published port from the `portMappings` capability.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    /// The port on the host (the uplink's address unless `host_ip`).
    pub host_port: u16,
    /// The port inside the container.
    pub container_port: u16,
    /// `tcp` (default) or `udp`.
    #[serde(default)]
    pub protocol: Option<String>,
    /// The host address; empty or absent for the uplink's.
    #[serde(default, rename = "hostIP")]
    pub host_ip: Option<String>,
}

impl PortMapping {
    /// The transport, or the error naming the unsupported protocol.
    pub fn transport(&self) -> Result<Transport, CniError> {
        match self
            .protocol
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("") | Some("tcp") => Ok(Transport::Tcp),
            Some("udp") => Ok(Transport::Udp),
            Some(other) => Err(CniError::Unsupported {
                field: "portMappings",
                why: format!("protocol {other} cannot be published: use tcp or udp"),
            }),
        }
    }

    /// The host address, if one is given.
    pub fn host_addr(&self) -> Result<Option<Ipv4Addr>, CniError> {
        match self.host_ip.as_deref() {
            None | Some("") | Some("0.0.0.0") => Ok(None),
            Some(ip) => ip.parse().map(Some).map_err(|_| CniError::Unsupported {
                field: "portMappings",
                why: format!("hostIP {ip} is not an IPv4 address: yardd publishes on IPv4"),
            }),
        }
    }
}

/// Capabilities the runtime filled in.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeConfig {
    /// `-p HOST:CONTAINER` of the container.
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
}

/// DNS settings, as the spec's result carries them.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Dns {
    /// Name servers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// The local domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Search domains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// Resolver options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    /// Nothing set.
    pub fn is_empty(&self) -> bool {
        *self == Dns::default()
    }
}

/// An attachment the runtime still knows (GC's `cni.dev/valid-attachments`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    /// The container id.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// Its interface.
    pub ifname: String,
}

/// The network configuration on stdin (one plugin of a list, with `name`
/// and `cniVersion` filled in by the runtime).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    /// The spec version the runtime speaks.
    pub cni_version: String,
    /// The network's name in the runtime (podman's `--network NAME`).
    #[serde(default)]
    pub name: String,
    /// yardd's control socket; default as `yardctl`'s.
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// The yardd network; default: `name`.
    #[serde(default)]
    pub network: Option<String>,
    /// Subnet of a network created on first use.
    #[serde(default)]
    pub subnet: Option<Ipv4Cidr>,
    /// Gateway of a network created on first use.
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
    /// Docker's `--ip-range` of a network created on first use.
    #[serde(default)]
    pub ip_range: Option<Ipv4Cidr>,
    /// MTU of a network created on first use.
    #[serde(default)]
    pub mtu: Option<u32>,
    /// Masquerade traffic leaving through the uplink (bridge: default off).
    #[serde(default)]
    pub ip_masq: Option<bool>,
    /// The network's gateway answers for the containers (always so in yardd).
    #[serde(default)]
    pub is_gateway: Option<bool>,
    /// This attachment carries the container's default route even when it
    /// is not the container's first.
    #[serde(default)]
    pub is_default_gateway: Option<bool>,
    /// Containers reach published ports of their own network (yardd always
    /// hairpins; `false` is refused).
    #[serde(default)]
    pub hairpin_mode: Option<bool>,
    /// 802.1Q VLAN id of a network created on first use.
    #[serde(default)]
    pub vlan: Option<u16>,
    /// Containers of the network cannot reach each other (`--no-icc`).
    #[serde(default)]
    pub port_isolation: Option<bool>,
    /// The delegated IPAM plugin's section (`type` names the binary).
    #[serde(default)]
    pub ipam: Option<serde_json::Value>,
    /// DNS settings to return.
    #[serde(default)]
    pub dns: Option<Dns>,
    /// Capabilities filled in by the runtime.
    #[serde(default)]
    pub runtime_config: RuntimeConfig,
    /// The result of ADD (CHECK and DEL get it).
    #[serde(default)]
    pub prev_result: Option<serde_json::Value>,
    /// GC: the attachments to keep.
    #[serde(default, rename = "cni.dev/valid-attachments")]
    pub valid_attachments: Option<Vec<Attachment>>,
}

impl NetConf {
    /// Parses stdin: not JSON is a decoding failure (6), JSON of the wrong
    /// shape an invalid configuration (7), an unknown `cniVersion` an
    /// incompatible version (1), a bridge option yardd cannot honour an
    /// unsupported field (2).
    pub fn parse(bytes: &[u8]) -> Result<NetConf, CniError> {
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(CniError::NotJson)?;
        let conf: NetConf =
            serde_json::from_value(value).map_err(|e| CniError::Config(e.to_string()))?;
        conf.check_version()?;
        conf.check_options()?;
        Ok(conf)
    }

    fn check_version(&self) -> Result<(), CniError> {
        if SUPPORTED_VERSIONS.contains(&self.cni_version.as_str()) {
            Ok(())
        } else {
            Err(CniError::Version(self.cni_version.clone()))
        }
    }

    fn check_options(&self) -> Result<(), CniError> {
        if self.is_gateway == Some(false) {
            return Err(CniError::Unsupported {
                field: "isGateway",
                why: "a yardd network with a subnet always has its gateway; remove isGateway \
                      or set it to true"
                    .into(),
            });
        }
        if self.hairpin_mode == Some(false) {
            return Err(CniError::Unsupported {
                field: "hairpinMode",
                why: "yardd always lets containers reach published ports of their own \
                      network; remove hairpinMode or set it to true"
                    .into(),
            });
        }
        if let Some(ipam) = &self.ipam {
            if ipam
                .get("type")
                .and_then(|t| t.as_str())
                .is_none_or(str::is_empty)
            {
                return Err(CniError::Config(
                    "ipam has no \"type\": name the IPAM plugin (e.g. \"host-local\"), or \
                     remove the ipam section to let yardd give addresses"
                        .into(),
                ));
            }
        }
        if self.network().is_empty() {
            return Err(CniError::Config(
                "neither \"network\" nor \"name\" is set: name the yardd network".into(),
            ));
        }
        Ok(())
    }

    /// The yardd network name.
    pub fn network(&self) -> &str {
        self.network.as_deref().unwrap_or(&self.name)
    }

    /// The socket to use.
    pub fn socket(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(crate::paths::default_socket)
    }

    /// The IPAM plugin's name, when addresses are delegated.
    pub fn ipam_type(&self) -> Option<&str> {
        self.ipam.as_ref()?.get("type")?.as_str()
    }

    /// The network to create on first use; `subnet` and `gateway` come from
    /// the configuration, or from what the IPAM plugin gave (`from_ipam`).
    pub fn network_spec(&self, from_ipam: Option<(Ipv4Cidr, Option<Ipv4Addr>)>) -> NetworkSpec {
        let mut spec = NetworkSpec::new(self.network());
        spec.subnet = self
            .subnet
            .map(|s| s.network())
            .or(from_ipam.map(|(a, _)| a.network()));
        spec.gateway = self.gateway.or(from_ipam.and_then(|(_, gw)| gw));
        spec.ip_range = self.ip_range;
        spec.mtu = self.mtu.unwrap_or(DEFAULT_MTU);
        spec.masquerade = self.ip_masq.unwrap_or(false);
        spec.vlan = self.vlan;
        spec.icc = !self.port_isolation.unwrap_or(false);
        spec
    }
}
