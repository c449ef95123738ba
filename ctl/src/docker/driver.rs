//! The driver's answers: each `NetworkDriver.*` call turned into requests
//! to yardd. The driver keeps no state of its own: yardd's network and
//! port names are derived from Docker's ids ([`net_name`], [`port_name`]),
//! so every call finds what an earlier one made, also after either program
//! restarted.
//!
//! Mapping: a Docker network is a yardd network `docker-<12 hex>` made
//! from Docker's IPAM data and options; an endpoint is a veth port
//! `docker-<12 hex>` made at `CreateEndpoint` (Docker's address and MAC;
//! port security on) whose peer `Join` hands to dockerd to move into the
//! sandbox; `-p` mappings are published ports to the port, removed by
//! `RevokeExternalConnectivity` and with the endpoint.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::protocol::{
    CreateEndpoint, CreateNetwork, EndpointInterface, EndpointRef, InterfaceName, Join, Joined,
    NetworkRef, PortBinding, ProgramExternal, GENERIC, INTERNAL, PORTMAP,
};
use crate::api::{NetworkSpec, Payload, PortKind, PortSpec, PublishSpec, Request, Transport};
use crate::engine::{unexpected, Yard, YardError};
use crate::{Ipv4Cidr, MacAddr};

/// Why a call failed; its message is the protocol's `Err`.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// yardd could not be reached or refused.
    #[error("switchyard: {0}")]
    Yard(#[from] YardError),
    /// The request body is not what the call takes.
    #[error("switchyard: {call}: the request is not valid JSON for it: {error}")]
    BadRequest {
        /// The call.
        call: String,
        /// What serde said.
        error: serde_json::Error,
    },
    /// A value Docker (or the user's `-o` option) gave cannot be used.
    #[error("switchyard: {0}")]
    Invalid(String),
    /// A call this driver does not know.
    #[error("switchyard: unknown call {0}")]
    Unknown(String),
}

/// The prefix of yardd's networks and ports for Docker's.
pub const PREFIX: &str = "docker-";

/// yardd's network for Docker network `id`.
pub fn net_name(id: &str) -> String {
    format!("{PREFIX}{}", short(id))
}

/// yardd's port for Docker endpoint `id`.
pub fn port_name(id: &str) -> String {
    format!("{PREFIX}{}", short(id))
}

/// The veth ends of endpoint `id`: yardd's, and the one dockerd moves.
fn veth_names(id: &str) -> (String, String) {
    let id: String = id.chars().take(10).collect();
    (format!("yd-{id}"), format!("yc-{id}"))
}

fn short(id: &str) -> String {
    id.chars().take(12).collect()
}

/// `body` as the request type of `call`.
fn decode<T: DeserializeOwned>(call: &str, body: &[u8]) -> Result<T, DriverError> {
    serde_json::from_slice(body).map_err(|error| DriverError::BadRequest {
        call: call.to_string(),
        error,
    })
}

/// The driver: where yardd listens.
pub struct Driver {
    socket: PathBuf,
}

impl Driver {
    /// A driver speaking to yardd at `socket`.
    pub fn new(socket: PathBuf) -> Driver {
        Driver { socket }
    }

    /// Answers `call` (the URL path without its `/`) with `body`.
    pub fn handle(&self, call: &str, body: &[u8]) -> Result<Value, DriverError> {
        match call {
            "Plugin.Activate" => Ok(json!({"Implements": ["NetworkDriver"]})),
            "NetworkDriver.GetCapabilities" => {
                Ok(json!({"Scope": "local", "ConnectivityScope": "local"}))
            }
            "NetworkDriver.CreateNetwork" => self.create_network(decode(call, body)?),
            "NetworkDriver.DeleteNetwork" => self.delete_network(decode(call, body)?),
            "NetworkDriver.CreateEndpoint" => self.create_endpoint(decode(call, body)?),
            "NetworkDriver.DeleteEndpoint" => self.delete_endpoint(decode(call, body)?),
            "NetworkDriver.EndpointOperInfo" => Ok(json!({"Value": {}})),
            "NetworkDriver.Join" => self.join(decode(call, body)?),
            "NetworkDriver.Leave" => Ok(json!({})),
            "NetworkDriver.ProgramExternalConnectivity" => {
                self.program_external(decode(call, body)?)
            }
            "NetworkDriver.RevokeExternalConnectivity" => self.revoke_external(decode(call, body)?),
            "NetworkDriver.DiscoverNew"
            | "NetworkDriver.DiscoverDelete"
            | "NetworkDriver.AllocateNetwork"
            | "NetworkDriver.FreeNetwork" => Ok(json!({})),
            other => Err(DriverError::Unknown(other.to_string())),
        }
    }

    fn yard(&self) -> Result<Yard, DriverError> {
        Ok(Yard::connect(&self.socket)?)
    }

    fn create_network(&self, req: CreateNetwork) -> Result<Value, DriverError> {
        let spec = network_spec(&req)?;
        let mut yard = self.yard()?;
        let name = spec.name.clone();
        match yard.call(&format!("create network {name}"), Request::NetCreate(spec)) {
            Ok(Payload::Network(_)) => Ok(json!({})),
            Ok(other) => Err(unexpected("net create", &other).into()),
            Err(e) => Err(e.into()),
        }
    }

    fn delete_network(&self, req: NetworkRef) -> Result<Value, DriverError> {
        let name = net_name(&req.network_id);
        let mut yard = self.yard()?;
        if yard.networks()?.iter().any(|n| n.spec.name == name) {
            yard.call(&format!("remove network {name}"), Request::NetRm { name })?;
        }
        Ok(json!({}))
    }

    fn create_endpoint(&self, req: CreateEndpoint) -> Result<Value, DriverError> {
        let given = req.interface.unwrap_or_default();
        let ip: Option<Ipv4Cidr> = match given.address.as_str() {
            "" => None,
            text => Some(text.parse().map_err(|_| {
                DriverError::Invalid(format!("endpoint address {text} is not A.B.C.D/N"))
            })?),
        };
        let mac: Option<MacAddr> = match given.mac_address.as_str() {
            "" => None,
            text => Some(text.parse().map_err(|_| {
                DriverError::Invalid(format!("endpoint MAC {text} is not aa:bb:cc:dd:ee:ff"))
            })?),
        };
        let (ifname, peer) = veth_names(&req.endpoint_id);
        let name = port_name(&req.endpoint_id);
        let spec = PortSpec {
            name: name.clone(),
            kind: PortKind::Veth {
                net: net_name(&req.network_id),
                ifname,
                peer,
                ip,
                mac,
                mtu: None,
                port_security: true,
                allowed_addresses: Vec::new(),
            },
        };
        let mut yard = self.yard()?;
        let info = match yard.call(&format!("add port {name}"), Request::PortAdd(spec))? {
            Payload::Port(info) => info,
            other => return Err(unexpected("port add", &other).into()),
        };
        // Docker takes a MAC from the driver only when it gave none.
        let interface = match (mac, info.mac) {
            (None, Some(chosen)) => EndpointInterface {
                mac_address: chosen.to_string(),
                ..EndpointInterface::default()
            },
            _ => EndpointInterface::default(),
        };
        Ok(json!({ "Interface": interface }))
    }

    fn delete_endpoint(&self, req: EndpointRef) -> Result<Value, DriverError> {
        self.yard()?.remove_port(&port_name(&req.endpoint_id))?;
        Ok(json!({}))
    }

    fn join(&self, req: Join) -> Result<Value, DriverError> {
        let mut yard = self.yard()?;
        let net = net_name(&req.network_id);
        let network = yard
            .networks()?
            .into_iter()
            .find(|n| n.spec.name == net)
            .ok_or_else(|| {
                DriverError::Invalid(format!(
                    "network {net} is not in yardd: remove the Docker network and create it again"
                ))
            })?;
        let (_, peer) = veth_names(&req.endpoint_id);
        let gateway = match (&network.spec.gateway, network.spec.internal) {
            (Some(gw), false) => gw.to_string(),
            _ => String::new(),
        };
        let joined = Joined {
            interface_name: InterfaceName {
                src_name: peer,
                dst_prefix: "eth".to_string(),
            },
            gateway,
        };
        Ok(serde_json::to_value(joined).expect("Joined serializes"))
    }

    fn program_external(&self, req: ProgramExternal) -> Result<Value, DriverError> {
        let Some(map) = req.options.get(PORTMAP) else {
            return Ok(json!({}));
        };
        let bindings: Vec<PortBinding> = serde_json::from_value(map.clone())
            .map_err(|e| DriverError::Invalid(format!("{PORTMAP}: {e}")))?;
        let target = port_name(&req.endpoint_id);
        let mut yard = self.yard()?;
        for binding in bindings {
            let spec = publish_spec(&binding, &target)?;
            if let Err(e) = yard.call(&format!("publish {spec}"), Request::PublishAdd(spec)) {
                let _ = yard.unpublish_port(&target);
                return Err(e.into());
            }
        }
        Ok(json!({}))
    }

    fn revoke_external(&self, req: EndpointRef) -> Result<Value, DriverError> {
        self.yard()?.unpublish_port(&port_name(&req.endpoint_id))?;
        Ok(json!({}))
    }
}

/// yardd's network for a `CreateNetwork`.
fn network_spec(req: &CreateNetwork) -> Result<NetworkSpec, DriverError> {
    let mut spec = NetworkSpec::new(net_name(&req.network_id));
    if let Some(pool) = req.ipv4_data.first() {
        let subnet: Ipv4Cidr = pool
            .pool
            .parse()
            .map_err(|_| DriverError::Invalid(format!("subnet {} is not A.B.C.D/N", pool.pool)))?;
        spec.subnet = Some(subnet.network());
        if !pool.gateway.is_empty() {
            let addr = pool.gateway.split('/').next().unwrap_or_default();
            spec.gateway = Some(addr.parse::<Ipv4Addr>().map_err(|_| {
                DriverError::Invalid(format!("gateway {} is not an IPv4 address", pool.gateway))
            })?);
        }
        spec.masquerade = true;
    }
    if req.ipv4_data.len() > 1 {
        return Err(DriverError::Invalid(
            "a switchyard network has one IPv4 subnet: give docker network create one --subnet"
                .to_string(),
        ));
    }
    spec.internal = req.options.get(INTERNAL).and_then(Value::as_bool) == Some(true);
    let generic = req.options.get(GENERIC).and_then(Value::as_object);
    for (key, value) in generic.into_iter().flatten() {
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        apply_option(&mut spec, key, &text)?;
    }
    if spec.internal {
        spec.masquerade = false;
    }
    Ok(spec)
}

/// One `-o KEY=VALUE` of `docker network create`.
fn apply_option(spec: &mut NetworkSpec, key: &str, value: &str) -> Result<(), DriverError> {
    let flag = |value: &str| match value {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(DriverError::Invalid(format!(
            "-o {key}={other}: say true or false"
        ))),
    };
    match key {
        "com.docker.network.bridge.enable_icc" => spec.icc = flag(value)?,
        "com.docker.network.bridge.enable_ip_masquerade" => spec.masquerade = flag(value)?,
        "com.docker.network.driver.mtu" => {
            spec.mtu = value.parse().map_err(|_| {
                DriverError::Invalid(format!("-o {key}={value}: the MTU is a number"))
            })?
        }
        "switchyard.vlan" => {
            spec.vlan = Some(value.parse().map_err(|_| {
                DriverError::Invalid(format!("-o {key}={value}: a VLAN id is 1-4094"))
            })?)
        }
        // Options of the bridge driver with no meaning here.
        "com.docker.network.bridge.name"
        | "com.docker.network.bridge.enable_ipv6"
        | "com.docker.network.bridge.host_binding_ipv4"
        | "com.docker.network.container_iface_prefix" => {}
        other if other.starts_with("switchyard.") => {
            return Err(DriverError::Invalid(format!(
                "-o {other}: unknown switchyard option; known: switchyard.vlan"
            )))
        }
        _ => {}
    }
    Ok(())
}

/// The published port for one `-p` mapping to port `target`.
fn publish_spec(binding: &PortBinding, target: &str) -> Result<PublishSpec, DriverError> {
    let proto = match binding.proto {
        6 => Transport::Tcp,
        17 => Transport::Udp,
        other => {
            return Err(DriverError::Invalid(format!(
                "-p with protocol {other}: switchyard publishes tcp and udp"
            )))
        }
    };
    let host_ip = match binding.host_ip.as_str() {
        "" | "0.0.0.0" => None,
        text => Some(text.parse::<Ipv4Addr>().map_err(|_| {
            DriverError::Invalid(format!(
                "-p host address {text}: switchyard publishes on IPv4"
            ))
        })?),
    };
    let end = binding.host_port_end.max(binding.host_port);
    let width = end - binding.host_port;
    Ok(PublishSpec {
        host_ip,
        host_ports: (binding.host_port, end),
        target: target.to_string(),
        target_ports: (binding.port, binding.port + width),
        proto,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(body: Value) -> CreateNetwork {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn a_docker_network_becomes_a_yardd_network_with_its_options() {
        let req = create(json!({
            "NetworkID": "f54fb3df5b082304c21c8331e80753eaaaad8f3f3a3a0c7d113b0563afc84c56",
            "Options": {
                "com.docker.network.enable_ipv6": false,
                "com.docker.network.generic": {
                    "com.docker.network.bridge.enable_icc": "false",
                    "com.docker.network.driver.mtu": "1400",
                    "switchyard.vlan": "42"
                }
            },
            "IPv4Data": [{"AddressSpace": "LocalDefault", "Pool": "10.89.0.0/24", "Gateway": "10.89.0.1/24"}],
            "IPv6Data": []
        }));
        let spec = network_spec(&req).unwrap();
        assert_eq!(spec.name, "docker-f54fb3df5b08");
        assert_eq!(spec.subnet, Some("10.89.0.0/24".parse().unwrap()));
        assert_eq!(spec.gateway, Some(Ipv4Addr::new(10, 89, 0, 1)));
        assert!(!spec.icc && spec.masquerade && !spec.internal);
        assert_eq!((spec.mtu, spec.vlan), (1400, Some(42)));

        let internal = create(json!({
            "NetworkID": "ab",
            "Options": {"com.docker.network.internal": true},
            "IPv4Data": [{"Pool": "10.90.0.0/24", "Gateway": "10.90.0.1/24"}]
        }));
        let spec = network_spec(&internal).unwrap();
        assert!(spec.internal && !spec.masquerade, "{spec:?}");

        let no_masquerade = create(json!({
            "NetworkID": "cd",
            "Options": {"com.docker.network.generic": {"com.docker.network.bridge.enable_ip_masquerade": "false"}},
            "IPv4Data": [{"Pool": "10.90.1.0/24", "Gateway": "10.90.1.1/24"}]
        }));
        assert!(!network_spec(&no_masquerade).unwrap().masquerade);
    }

    #[test]
    fn options_it_cannot_honour_are_refused_with_the_way_out() {
        for (key, value, expect) in [
            (
                "com.docker.network.bridge.enable_icc",
                "maybe",
                "say true or false",
            ),
            (
                "com.docker.network.driver.mtu",
                "big",
                "the MTU is a number",
            ),
            ("switchyard.vlan", "x", "a VLAN id is 1-4094"),
            ("switchyard.colour", "red", "known: switchyard.vlan"),
        ] {
            let req = create(json!({
                "NetworkID": "ef",
                "Options": {"com.docker.network.generic": {key: value}},
                "IPv4Data": [{"Pool": "10.90.2.0/24", "Gateway": "10.90.2.1/24"}]
            }));
            let message = network_spec(&req).unwrap_err().to_string();
            assert!(message.contains(expect), "{key}={value}: {message}");
        }
        let two = create(json!({
            "NetworkID": "ef",
            "IPv4Data": [{"Pool": "10.90.3.0/24"}, {"Pool": "10.90.4.0/24"}]
        }));
        assert!(network_spec(&two)
            .unwrap_err()
            .to_string()
            .contains("one --subnet"));
    }

    #[test]
    fn port_bindings_become_published_ports() {
        let binding: PortBinding = serde_json::from_value(json!({
            "Proto": 6, "IP": "", "Port": 80, "HostIP": "", "HostPort": 8080, "HostPortEnd": 8080
        }))
        .unwrap();
        let spec = publish_spec(&binding, "docker-abc").unwrap();
        assert_eq!(spec.to_string(), "8080:docker-abc:80/tcp");
        let range: PortBinding = serde_json::from_value(json!({
            "Proto": 17, "Port": 5000, "HostIP": "10.1.0.2", "HostPort": 6000, "HostPortEnd": 6002
        }))
        .unwrap();
        let spec = publish_spec(&range, "docker-abc").unwrap();
        assert_eq!(
            (spec.host_ip, spec.host_ports, spec.target_ports, spec.proto),
            (
                Some(Ipv4Addr::new(10, 1, 0, 2)),
                (6000, 6002),
                (5000, 5002),
                Transport::Udp
            )
        );
        let sctp: PortBinding = serde_json::from_value(json!({
            "Proto": 132, "Port": 1, "HostPort": 1
        }))
        .unwrap();
        assert!(publish_spec(&sctp, "p").is_err());
    }

    #[test]
    fn calls_that_need_no_yardd_and_bad_requests() {
        let driver = Driver::new(PathBuf::from("/nonexistent/yardd.sock"));
        assert_eq!(
            driver.handle("Plugin.Activate", b"").unwrap(),
            json!({"Implements": ["NetworkDriver"]})
        );
        assert_eq!(
            driver
                .handle("NetworkDriver.GetCapabilities", b"{}")
                .unwrap()["Scope"],
            "local"
        );
        let bad = driver
            .handle("NetworkDriver.CreateNetwork", b"{not json")
            .unwrap_err();
        assert!(bad.to_string().contains("not valid JSON"), "{bad}");
        let unknown = driver.handle("NetworkDriver.Teleport", b"{}").unwrap_err();
        assert!(unknown.to_string().contains("unknown call"), "{unknown}");
        // yardd not running: the message names the socket and the way out.
        let down = driver
            .handle(
                "NetworkDriver.DeleteEndpoint",
                br#"{"NetworkID": "a", "EndpointID": "b"}"#,
            )
            .unwrap_err()
            .to_string();
        assert!(
            down.contains("/nonexistent/yardd.sock") && down.contains("start yardd"),
            "{down}"
        );
    }

    #[test]
    fn names_follow_docker_ids_and_fit_interface_names() {
        let id = "b082cf65dd2c4f1d9c1e8d2f2a2b6e0f0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f";
        assert_eq!(port_name(id), "docker-b082cf65dd2c");
        let (ifname, peer) = veth_names(id);
        assert_eq!(
            (ifname.as_str(), peer.as_str()),
            ("yd-b082cf65dd", "yc-b082cf65dd")
        );
        assert!(ifname.len() < 16 && peer.len() < 16);
    }
}
