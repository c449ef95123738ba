//! The L3 gateway's commands — `uplink`, `publish`, `conntrack` — and their
//! mapping onto API [`Request`]s.
//!
//! Contract: as for the rest of [`super`], mapping is pure and checks locally
//! what needs no daemon: which options go with which uplink kind, that the
//! uplink's address is a host address and its gateway a neighbour on the same
//! subnet, that a published port parses, that timeouts are `NAME=SECONDS`.
//! Timeout names and whether a publish target exists are left to yardd.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use clap::{Args, Subcommand};

use super::{check_ifname, check_name, ArgError};
use crate::api::{
    ConntrackFilter, ConntrackQuery, ConntrackSettings, PublishSpec, Request, Transport,
    UplinkKind, UplinkSpec,
};
use crate::types::Ipv4Cidr;

/// `yardctl uplink …`.
#[derive(Debug, Subcommand)]
pub enum UplinkCommand {
    /// Add the uplink: an existing interface (--iface) or a new TAP (--tap).
    Add(UplinkAddArgs),
    /// List uplinks.
    Ls,
    /// Remove an uplink (connections through it are forgotten).
    Rm {
        /// Uplink name.
        name: String,
    },
}

/// `yardctl uplink add NAME (--iface DEV | --tap [--netns NS] [--ifname IF])
/// --ip CIDR [--gateway IP]` or `yardctl uplink add NAME --host`.
#[derive(Debug, Args)]
pub struct UplinkAddArgs {
    /// Uplink name.
    pub name: String,
    /// Attach an existing interface in yardd's namespace (e.g. a veth end);
    /// the kernel must not use it itself.
    #[arg(long, value_name = "DEV")]
    pub iface: Option<String>,
    /// Create a TAP device (optionally inside --netns); address its far side yourself.
    #[arg(long)]
    pub tap: bool,
    /// Relay the containers' flows through yardd's own host sockets: they
    /// leave with the host's addresses and routes (no --ip, no interface).
    #[arg(long)]
    pub host: bool,
    /// Network namespace for the TAP: a name under /run/netns or a path.
    #[arg(long, value_name = "NS")]
    pub netns: Option<String>,
    /// Interface name of the TAP [default: eth0].
    #[arg(long, value_name = "IF")]
    pub ifname: Option<String>,
    /// The uplink's own address with its prefix, e.g. 192.168.1.10/24
    /// (--iface and --tap).
    #[arg(long, value_name = "CIDR")]
    pub ip: Option<Ipv4Cidr>,
    /// Next hop for destinations outside --ip's subnet; must lie inside it.
    #[arg(long, value_name = "IP")]
    pub gateway: Option<Ipv4Addr>,
}

/// `yardctl publish …`.
#[derive(Debug, Subcommand)]
pub enum PublishCommand {
    /// Publish a port range, like `docker run -p`.
    #[command(after_help = "Examples:\n  \
        yardctl publish add 8080:c1:80            host port 8080 on the uplink to c1's port 80 (tcp)\n  \
        yardctl publish add 5353:10.1.0.2:53/udp  to an address instead of a port name\n  \
        yardctl publish add 192.168.1.10:9000-9002:c1:7000-7002")]
    Add {
        /// The rule, `[HOSTIP:]HOSTPORT[-END]:TARGET:PORT[-END][/tcp|/udp]`.
        #[arg(
            value_name = "SPEC",
            help = "[HOSTIP:]HOSTPORT[-END]:TARGET:PORT[-END][/tcp|/udp]; TARGET is a port \
                    name or an IPv4 address; HOSTIP 0.0.0.0 means the uplink's address"
        )]
        spec: String,
    },
    /// List published ports.
    Ls,
    /// Unpublish: give the rule, or just its host part `[HOSTIP:]HOSTPORT[/tcp|/udp]`.
    #[command(about = "Unpublish: give the rule, or just its host part \
                       [HOSTIP:]HOSTPORT[/tcp|/udp]")]
    Rm {
        /// A rule as `publish ls` shows it, or its host part, e.g. 8080 or 8080/udp.
        #[arg(value_name = "SPEC")]
        spec: String,
    },
}

/// `yardctl conntrack …`.
#[derive(Debug, Subcommand)]
pub enum ConntrackCommand {
    /// List tracked connections.
    Ls(ConntrackFilterArgs),
    /// Remove tracked connections (all, or those matching the filters).
    Flush(ConntrackFilterArgs),
    /// Show the table size and the conntrack and gateway counters.
    Stats,
    /// Change the table limit and timeouts; prints the settings in force.
    Set(ConntrackSetArgs),
}

/// Which entries `conntrack ls` and `conntrack flush` apply to; no filter
/// means all.
#[derive(Debug, Args)]
pub struct ConntrackFilterArgs {
    /// Only this protocol.
    #[arg(long, value_name = "PROTO", value_parser = ["tcp", "udp", "icmp"])]
    pub proto: Option<String>,
    /// Only entries with this address in either direction.
    #[arg(long, value_name = "IP")]
    pub addr: Option<Ipv4Addr>,
    /// Only entries with this port (ICMP: echo id) in either direction.
    #[arg(long, value_name = "N")]
    pub port: Option<u16>,
}

/// `yardctl conntrack set [--max-entries N] [--timeout NAME=SECONDS]...
/// [--snat-share PERCENT]`.
#[derive(Debug, Args)]
pub struct ConntrackSetArgs {
    /// Most entries the table holds; beyond it unreplied ones are evicted first.
    #[arg(long, value_name = "N")]
    pub max_entries: Option<u64>,
    /// A timeout in seconds, e.g. tcp-established=86400 or udp-unreplied=300 (values below the RFC minimums or above 30 days are refused); repeatable.
    #[arg(long = "timeout", value_name = "NAME=SECONDS")]
    pub timeouts: Vec<String>,
    /// Most of each masquerade port range one container (inside address) may hold, in percent (1-100, e.g. 25 or 25%); past it its oldest unanswered flow makes room [default: 25].
    #[arg(long, value_name = "PERCENT", value_parser = parse_percent)]
    pub snat_share: Option<u8>,
}

/// `--snat-share`: a whole percentage 1–100, with or without `%`.
fn parse_percent(given: &str) -> Result<u8, String> {
    let digits = given.strip_suffix('%').unwrap_or(given);
    match digits.parse::<u8>() {
        Ok(p @ 1..=100) => Ok(p),
        _ => Err(format!(
            "'{given}' is not a percentage from 1 to 100 (e.g. 25 or 25%)"
        )),
    }
}

impl UplinkCommand {
    /// The request this command line asks of yardd.
    pub fn to_request(&self) -> Result<Request, ArgError> {
        match self {
            UplinkCommand::Add(args) => Ok(Request::UplinkAdd(args.to_spec()?)),
            UplinkCommand::Ls => Ok(Request::UplinkLs),
            UplinkCommand::Rm { name } => {
                check_name("uplink", name)?;
                Ok(Request::UplinkRm { name: name.clone() })
            }
        }
    }
}

impl UplinkAddArgs {
    /// The uplink these arguments describe.
    pub fn to_spec(&self) -> Result<UplinkSpec, ArgError> {
        check_name("uplink", &self.name)?;
        let kinds = [self.iface.is_some(), self.tap, self.host];
        if kinds.iter().filter(|&&k| k).count() > 1 {
            return Err(ArgError::UplinkKind(
                "--iface, --tap and --host are different uplink kinds: --iface DEV attaches an \
                 interface that already exists, --tap creates a new TAP device, --host relays \
                 through yardd's own host sockets",
            ));
        }
        if self.host {
            return self.host_spec();
        }
        let kind = match (&self.iface, self.tap) {
            (Some(iface), false) => {
                const HINT: &str = "it configures the TAP yardd creates; an existing \
                                    interface keeps its own namespace and name";
                for (option, given) in [
                    ("--netns", self.netns.is_some()),
                    ("--ifname", self.ifname.is_some()),
                ] {
                    if given {
                        return Err(ArgError::NotForUplink {
                            option,
                            kind: "iface",
                            hint: HINT,
                        });
                    }
                }
                check_ifname("--iface", iface)?;
                UplinkKind::Iface {
                    iface: iface.clone(),
                }
            }
            (None, true) => {
                let ifname = self.ifname.clone().unwrap_or_else(|| "eth0".to_string());
                check_ifname("--ifname", &ifname)?;
                UplinkKind::Tap {
                    netns: self.netns.clone(),
                    ifname,
                }
            }
            _ => {
                return Err(ArgError::UplinkKind(
                    "say how to attach the uplink: --iface DEV (an existing interface, e.g. \
                     a veth end), --tap (a new TAP device, optionally in --netns NS) or --host \
                     (yardd's own host sockets)",
                ))
            }
        };
        let Some(ip) = self.ip else {
            return Err(ArgError::UplinkKind(
                "--iface and --tap uplinks need --ip CIDR: the uplink's own address on its \
                 outside network, e.g. --ip 192.168.1.10/24",
            ));
        };
        check_uplink_address(ip)?;
        if let Some(gateway) = self.gateway {
            check_uplink_gateway(gateway, ip)?;
        }
        Ok(UplinkSpec {
            name: self.name.clone(),
            kind,
            ip: Some(ip),
            gateway: self.gateway,
        })
    }

    /// `--host`: none of the options that address or name an interface.
    fn host_spec(&self) -> Result<UplinkSpec, ArgError> {
        const HINT: &str = "a host uplink uses yardd's own sockets, addresses and routes";
        for (option, given) in [
            ("--netns", self.netns.is_some()),
            ("--ifname", self.ifname.is_some()),
            ("--ip", self.ip.is_some()),
            ("--gateway", self.gateway.is_some()),
        ] {
            if given {
                return Err(ArgError::NotForUplink {
                    option,
                    kind: "host",
                    hint: HINT,
                });
            }
        }
        Ok(UplinkSpec {
            name: self.name.clone(),
            kind: UplinkKind::Host,
            ip: None,
            gateway: None,
        })
    }
}

/// The uplink's address must be one a host can have.
fn check_uplink_address(ip: Ipv4Cidr) -> Result<(), ArgError> {
    let bad = |why: String| Err(ArgError::UplinkAddress { ip, why });
    let addr = ip.addr;
    if addr.is_unspecified() || addr.is_loopback() || addr.is_multicast() || addr.is_broadcast() {
        return bad("give the address the uplink has on its outside network".into());
    }
    // /31 and /32 have no network or broadcast address to avoid (RFC 3021).
    if ip.prefix <= 30 {
        let suggestion = format!("{}/{}", ip.first_host(), ip.prefix);
        if addr == ip.network().addr {
            return bad(format!(
                "it is the network address of {}; give the uplink's own address, e.g. {suggestion}",
                ip.network()
            ));
        }
        if addr == ip.broadcast() {
            return bad(format!(
                "it is the broadcast address of {}; give the uplink's own address, e.g. {suggestion}",
                ip.network()
            ));
        }
    }
    Ok(())
}

/// The gateway is the next hop: a host on the uplink's own subnet, not the
/// uplink itself.
fn check_uplink_gateway(gateway: Ipv4Addr, ip: Ipv4Cidr) -> Result<(), ArgError> {
    let bad = |why: String| Err(ArgError::UplinkGateway { gateway, ip, why });
    let subnet = ip.network();
    if !subnet.contains(gateway) {
        return bad(format!(
            "it lies outside {subnet}; the next hop must be on the uplink's own subnet \
             (or widen --ip's prefix)"
        ));
    }
    if gateway == ip.addr {
        return bad("it is the uplink's own address; give the router's address".into());
    }
    if ip.prefix <= 30 && gateway == subnet.addr {
        return bad(format!("it is the network address of {subnet}"));
    }
    if ip.prefix <= 30 && gateway == subnet.broadcast() {
        return bad(format!("it is the broadcast address of {subnet}"));
    }
    Ok(())
}

impl PublishCommand {
    /// The request this command line asks of yardd.
    pub fn to_request(&self) -> Result<Request, ArgError> {
        match self {
            PublishCommand::Add { spec } => {
                let spec: PublishSpec = spec.parse()?;
                Ok(Request::PublishAdd(any_host_means_uplink(spec)))
            }
            PublishCommand::Ls => Ok(Request::PublishLs),
            PublishCommand::Rm { spec } => Ok(Request::PublishRm(any_host_means_uplink(
                publish_rm_spec(spec)?,
            ))),
        }
    }
}

/// Docker's `0.0.0.0:8080:…` means "every host address"; here that is the
/// uplink's address, which the API spells `None`.
fn any_host_means_uplink(mut spec: PublishSpec) -> PublishSpec {
    if spec.host_ip == Some(Ipv4Addr::UNSPECIFIED) {
        spec.host_ip = None;
    }
    spec
}

/// `publish rm`'s argument: a whole rule, or only its host part, which yardd
/// matches on host address, first host port and protocol.
pub fn publish_rm_spec(text: &str) -> Result<PublishSpec, ArgError> {
    let bad = |reason| ArgError::PublishHost {
        spec: text.to_string(),
        reason,
    };
    let (body, proto) = match text.rsplit_once('/') {
        Some((body, "tcp")) => (body, Transport::Tcp),
        Some((body, "udp")) => (body, Transport::Udp),
        Some(_) => return Err(bad("the protocol must be tcp or udp")),
        None => (text, Transport::Tcp),
    };
    let parts: Vec<&str> = body.split(':').collect();
    let (host_ip, ports) = match parts.as_slice() {
        // A whole rule: parse it as `publish add` would.
        [_, _, _] | [_, _, _, _] => return Ok(text.parse()?),
        [ports] => (None, *ports),
        [ip, ports] => {
            let ip: Ipv4Addr = ip
                .parse()
                .map_err(|_| bad("the host address is not IPv4"))?;
            (Some(ip), *ports)
        }
        _ => return Err(bad("wrong number of ':'-separated parts")),
    };
    let (first, last) = ports.split_once('-').unwrap_or((ports, ports));
    let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p != 0);
    let host_ports = match (port(first), port(last)) {
        (Some(a), Some(b)) if a <= b => (a, b),
        _ => return Err(bad("a host port must be 1-65535 (a range ascending)")),
    };
    Ok(PublishSpec {
        host_ip,
        host_ports,
        target: String::new(),
        target_ports: host_ports,
        proto,
    })
}

impl ConntrackCommand {
    /// The request this command line asks of yardd.
    pub fn to_request(&self) -> Result<Request, ArgError> {
        match self {
            ConntrackCommand::Ls(filter) => Ok(Request::ConntrackLs(ConntrackQuery {
                filter: filter.to_filter(),
                ..ConntrackQuery::default()
            })),
            ConntrackCommand::Flush(filter) => Ok(Request::ConntrackFlush(filter.to_filter())),
            ConntrackCommand::Stats => Ok(Request::ConntrackStats),
            ConntrackCommand::Set(args) => Ok(Request::ConntrackSet(args.to_settings()?)),
        }
    }
}

impl ConntrackFilterArgs {
    /// The filter these arguments describe (clap has already checked `--proto`).
    pub fn to_filter(&self) -> ConntrackFilter {
        ConntrackFilter {
            proto: self.proto.clone(),
            addr: self.addr,
            port: self.port,
        }
    }
}

impl ConntrackSetArgs {
    /// The settings these arguments change; none at all asks for the
    /// settings in force.
    pub fn to_settings(&self) -> Result<ConntrackSettings, ArgError> {
        if self.max_entries == Some(0) {
            return Err(ArgError::OutOfRange {
                option: "--max-entries",
                value: 0,
                expected: "the table must hold at least 1 entry".into(),
            });
        }
        let mut timeouts = BTreeMap::new();
        for given in &self.timeouts {
            let bad = |why| ArgError::BadTimeout {
                given: given.clone(),
                why,
            };
            let (name, secs) = given.split_once('=').ok_or_else(|| bad("has no '='"))?;
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                return Err(bad(
                    "does not start with a timeout name such as tcp-syn-sent",
                ));
            }
            let secs: u64 = secs
                .parse()
                .map_err(|_| bad("does not end with a whole number of seconds"))?;
            if secs == 0 {
                return Err(bad("sets 0 seconds, which would expire entries at once"));
            }
            if timeouts.insert(name.to_string(), secs).is_some() {
                return Err(ArgError::DuplicateTimeout(name.to_string()));
            }
        }
        Ok(ConntrackSettings {
            max_entries: self.max_entries,
            timeouts,
            snat_share_percent: self.snat_share,
        })
    }
}

#[cfg(test)]
mod tests;
