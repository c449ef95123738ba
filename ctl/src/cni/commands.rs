//! ADD, DEL, CHECK, STATUS and GC: what each asks of yardd, through
//! [`crate::client::Client`].
//!
//! Contract: ADD either completes (network created if missing, port,
//! published ports) or undoes what it did, the delegated IPAM allocation
//! included; DEL succeeds when the port, the namespace or the network is
//! already gone, and removes the published ports whose target is the port;
//! nothing here is remembered between calls: the port's name is derived
//! from the container id and interface name ([`Env::port_name`]).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::config::{Env, NetConf, PORT_PREFIX};
use super::delegate;
use super::error::CniError;
use super::result::CniResult;
use crate::api::{
    NetworkInfo, Payload, PortInfo, PortKind, PortSpec, PortState, PublishSpec, Reply, Request,
};
use crate::client::Client;
use crate::engine::{unexpected, Yard};
use crate::Ipv4Cidr;

fn require_netns(env: &Env) -> Result<&str, CniError> {
    let netns = env.netns.as_deref().unwrap_or_default();
    if !Path::new(netns).exists() {
        return Err(CniError::NoNamespace(netns.to_string()));
    }
    Ok(netns)
}

/// ADD: attaches the container and returns the result.
pub fn add(env: &Env, conf: &NetConf, raw: &[u8]) -> Result<CniResult, CniError> {
    let netns = require_netns(env)?;
    let mut yard = Yard::connect(&conf.socket())?;
    let ipam = match conf.ipam_type() {
        Some(plugin) => {
            let result = delegate::run(env, plugin, "ADD", raw)?;
            let Some((result, addr)) = result.and_then(|r| r.first_ipv4().map(|a| (r, a))) else {
                let _ = delegate::run(env, plugin, "DEL", raw);
                return Err(CniError::Ipam {
                    plugin: plugin.to_string(),
                    why: "returned no IPv4 address: give it an IPv4 subnet".into(),
                });
            };
            Some((result, addr))
        }
        None => None,
    };
    let attached = attach(env, conf, &mut yard, netns, ipam.as_ref().map(|(_, a)| *a));
    let (info, gateway) = match attached {
        Ok(done) => done,
        Err(e) => {
            if let Some(plugin) = conf.ipam_type() {
                let _ = delegate::run(env, plugin, "DEL", raw);
            }
            return Err(e);
        }
    };
    let ip = match &info.spec.kind {
        PortKind::Tap { ip, .. } => *ip,
        _ => None,
    };
    let mut dns = conf.dns.clone().unwrap_or_default();
    if dns.is_empty() {
        if let Some((from_ipam, _)) = &ipam {
            dns = from_ipam.dns.clone();
        }
    }
    Ok(
        CniResult::attachment(&env.ifname, info.mac, netns, ip, gateway, dns)
            .for_version(&conf.cni_version),
    )
}

/// The network (created on first use), the port, the published ports; on
/// failure the port is removed again.
fn attach(
    env: &Env,
    conf: &NetConf,
    yard: &mut Yard,
    netns: &str,
    ipam: Option<(Ipv4Cidr, Option<Ipv4Addr>)>,
) -> Result<(PortInfo, Option<Ipv4Addr>), CniError> {
    let network = ensure_network(yard, conf, ipam)?;
    let name = env.port_name();
    let spec = PortSpec {
        name: name.clone(),
        kind: PortKind::Tap {
            net: network.spec.name.clone(),
            netns: Some(netns.to_string()),
            ifname: env.ifname.clone(),
            ip: ipam.map(|(addr, _)| addr),
            mac: None,
            mtu: None,
            port_security: true,
            allowed_addresses: Vec::new(),
            default_route: conf.is_default_gateway.unwrap_or(false),
            // The runtime's DEL removes the port; if the container's
            // namespace goes first (or while yardd is down), yardd does.
            auto_remove: true,
        },
    };
    let info = match yard.call(&format!("add port {name}"), Request::PortAdd(spec))? {
        Payload::Port(info) => info,
        other => return Err(unexpected("port add", &other).into()),
    };
    if let Err(e) = publish(conf, yard, &name) {
        let _ = yard.remove_port(&name);
        return Err(e);
    }
    Ok((info, network.spec.gateway))
}

/// Publishes the `portMappings` capability's ports to port `name`.
fn publish(conf: &NetConf, yard: &mut Yard, name: &str) -> Result<(), CniError> {
    for mapping in &conf.runtime_config.port_mappings {
        if mapping.host_port == 0 || mapping.container_port == 0 {
            return Err(CniError::Config(format!(
                "portMappings: port 0 in {mapping:?}: give hostPort and containerPort"
            )));
        }
        let spec = PublishSpec {
            host_ip: mapping.host_addr()?,
            host_ports: (mapping.host_port, mapping.host_port),
            target: name.to_string(),
            target_ports: (mapping.container_port, mapping.container_port),
            proto: mapping.transport()?,
        };
        yard.call(&format!("publish {spec}"), Request::PublishAdd(spec))?;
    }
    Ok(())
}

/// The yardd network of `conf`, created when missing.
fn ensure_network(
    yard: &mut Yard,
    conf: &NetConf,
    ipam: Option<(Ipv4Cidr, Option<Ipv4Addr>)>,
) -> Result<NetworkInfo, CniError> {
    let name = conf.network();
    let find = |nets: Vec<NetworkInfo>| nets.into_iter().find(|n| n.spec.name == name);
    let existing = match find(yard.networks()?) {
        Some(net) => net,
        None => {
            let spec = conf.network_spec(ipam);
            match yard.call(&format!("create network {name}"), Request::NetCreate(spec)) {
                Ok(Payload::Network(net)) => return Ok(net),
                Ok(other) => return Err(unexpected("net create", &other).into()),
                // Another ADD may have created it meanwhile.
                Err(e) => find(yard.networks()?).ok_or(e)?,
            }
        }
    };
    if let (Some(want), Some(have)) = (conf.subnet, existing.spec.subnet) {
        if want.network() != have {
            return Err(CniError::Config(format!(
                "subnet {want} differs from network {name}'s {have} in yardd: fix the \
                 configuration's subnet, or name another network"
            )));
        }
    }
    Ok(existing)
}

/// DEL: removes the port and its published ports, and releases a delegated
/// address. Succeeds when any of them is already gone.
pub fn del(env: &Env, conf: &NetConf, raw: &[u8]) -> Result<(), CniError> {
    let mut yard = Yard::connect(&conf.socket())?;
    yard.remove_port(&env.port_name())?;
    if let Some(plugin) = conf.ipam_type() {
        delegate::run(env, plugin, "DEL", raw)?;
    }
    Ok(())
}

/// CHECK: the port exists, is up, in the namespace, with the address of
/// `prevResult`.
pub fn check(env: &Env, conf: &NetConf, raw: &[u8]) -> Result<(), CniError> {
    if conf.cni_version.starts_with("0.3.") {
        return Err(CniError::Version(format!(
            "{} for CHECK (CHECK came with 0.4.0)",
            conf.cni_version
        )));
    }
    let prev: CniResult = match &conf.prev_result {
        Some(value) => serde_json::from_value(value.clone())
            .map_err(|e| CniError::Config(format!("prevResult does not parse: {e}")))?,
        None => {
            return Err(CniError::Config(
                "CHECK needs prevResult: the runtime passes ADD's result".into(),
            ))
        }
    };
    let netns = require_netns(env)?;
    let mut yard = Yard::connect(&conf.socket())?;
    let name = env.port_name();
    let Some(port) = yard.port(&name)? else {
        return Err(CniError::Check(format!(
            "port {name} is not in yardd at {}: the attachment is gone; remove and re-add \
             the container's network",
            conf.socket().display()
        )));
    };
    if let PortState::Down(reason) = &port.state {
        return Err(CniError::Check(format!("port {name} is down: {reason}")));
    }
    let (ip, in_netns) = match &port.spec.kind {
        PortKind::Tap { ip, netns, .. } => (*ip, netns.as_deref()),
        _ => (None, None),
    };
    if in_netns != Some(netns) {
        return Err(CniError::Check(format!(
            "port {name} is in namespace {}, not {netns}",
            in_netns.unwrap_or("of yardd")
        )));
    }
    let want = prev.first_ipv4().map(|(a, _)| a);
    if want.is_some() && want != ip {
        return Err(CniError::Check(format!(
            "port {name} has address {}, prevResult says {}",
            ip.map_or("none".to_string(), |a| a.to_string()),
            want.map_or("none".to_string(), |a| a.to_string())
        )));
    }
    if let Some(plugin) = conf.ipam_type() {
        delegate::run(env, plugin, "CHECK", raw)?;
    }
    Ok(())
}

/// STATUS: yardd answers on its socket.
pub fn status(conf: &NetConf) -> Result<(), CniError> {
    let socket: PathBuf = conf.socket();
    let not_available = |detail: String| CniError::NotAvailable {
        socket: socket.clone(),
        detail,
    };
    let mut client = Client::connect(&socket).map_err(|e| not_available(e.to_string()))?;
    match client.call(&Request::Status) {
        Ok(Reply::Ok(_)) => Ok(()),
        Ok(Reply::Error(e)) => Err(not_available(e.message)),
        Err(e) => Err(not_available(e.to_string())),
    }
}

/// GC: removes this plugin's ports on the network that the runtime no
/// longer lists in `cni.dev/valid-attachments`.
pub fn gc(conf: &NetConf) -> Result<(), CniError> {
    let keep: Vec<String> = conf
        .valid_attachments
        .iter()
        .flatten()
        .map(|a| {
            Env {
                command: super::config::Command::Gc,
                container_id: a.container_id.clone(),
                netns: None,
                ifname: a.ifname.clone(),
                path: Vec::new(),
            }
            .port_name()
        })
        .collect();
    let mut yard = Yard::connect(&conf.socket())?;
    let stale: Vec<String> = yard
        .ports()?
        .into_iter()
        .filter(|p| p.spec.name.starts_with(PORT_PREFIX))
        .filter(|p| p.spec.nets() == [conf.network()])
        .filter(|p| !keep.contains(&p.spec.name))
        .map(|p| p.spec.name)
        .collect();
    for name in stale {
        yard.remove_port(&name)?;
    }
    Ok(())
}
