//! [`ArgError`]: why a command line that clap accepted cannot be sent, in words
//! that name the offending option and what to write instead.
//!
//! Contract: only data and messages; deciding what is wrong is the business of
//! [`super::Command::to_request`].

use std::net::Ipv4Addr;

use super::{Command, ConntrackCommand, NetCommand, PortCommand, PublishCommand, UplinkCommand};
use crate::api::{PublishParseError, RuleError};
use crate::types::{Ipv4Cidr, MacAddr};

/// A command line that parsed but asks for something impossible.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    /// A `trace` packet description that does not read.
    #[error(transparent)]
    Spec(#[from] crate::api::SpecError),
    /// A `trace --pcap` file that holds no frame to trace.
    #[error("cannot trace the first frame of {}: {why}", path.display())]
    Pcap {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        why: String,
    },
    /// `yardctl run` sends several requests around a process of its own
    /// ([`crate::container`]); [`crate::cli::run`] handles it before asking
    /// for one request.
    #[error("`yardctl run` is not one request")]
    NotOneRequest,
    /// A name argument is empty.
    #[error("{what} name must not be empty")]
    EmptyName {
        /// What the name names ("network", "port", …).
        what: &'static str,
    },
    /// A value is out of its allowed range.
    #[error("{option} {value} is out of range: {expected}")]
    OutOfRange {
        /// The option, e.g. `--vlan`.
        option: &'static str,
        /// The value given.
        value: u64,
        /// The allowed range, in words.
        expected: String,
    },
    /// `--gateway` without `--subnet`.
    #[error("--gateway needs --subnet: a gateway address only exists inside a subnet")]
    GatewayWithoutSubnet,
    /// The gateway is not a host address of the subnet.
    #[error("gateway {gateway} is not a host address in subnet {subnet}: {why}")]
    GatewayOutsideSubnet {
        /// The gateway given.
        gateway: Ipv4Addr,
        /// The subnet given.
        subnet: Ipv4Cidr,
        /// Why not, and what would do.
        why: String,
    },
    /// The subnet has host bits set.
    #[error("subnet {given} has host bits set: did you mean {network}?")]
    SubnetHostBits {
        /// The prefix given.
        given: Ipv4Cidr,
        /// The same prefix with the host bits cleared.
        network: Ipv4Cidr,
    },
    /// An `--ip-range` that is not part of the network's subnet.
    #[error("--ip-range {range} is not inside --subnet {subnet}: give a part of the subnet, e.g. {subnet} itself or a longer prefix within it")]
    RangeOutsideSubnet {
        /// The range given.
        range: Ipv4Cidr,
        /// The network's subnet.
        subnet: Ipv4Cidr,
    },
    /// No port kind, or two at once.
    #[error("{0}")]
    PortKind(&'static str),
    /// Two port kinds at once, at least one of them a tunnel.
    #[error("{option} and {other} are different port kinds: {why}")]
    TwoKinds {
        /// The first kind's option.
        option: &'static str,
        /// The second kind's option.
        other: &'static str,
        /// How they differ, and what to do.
        why: &'static str,
    },
    /// A tunnel option without `--gre` or `--gre-udp`.
    #[error(
        "{option} only applies to tunnel ports: add --gre (GRE in IPv4) or --gre-udp \
         (GRE in UDP), with --net NET and --remote IP"
    )]
    TunnelOnly {
        /// The option given.
        option: &'static str,
    },
    /// A tunnel endpoint that cannot be used.
    #[error("{option} {given} is not a usable tunnel endpoint: {why}")]
    BadEndpoint {
        /// `--remote` or `--local`.
        option: &'static str,
        /// The endpoint given.
        given: String,
        /// Why not, and what would do.
        why: String,
    },
    /// Two options that contradict each other.
    #[error("{option} and {other} cannot be given together: {why}")]
    Contradicts {
        /// The first option.
        option: &'static str,
        /// The other option.
        other: &'static str,
        /// Why, and what to do.
        why: &'static str,
    },
    /// An option that does not belong to the chosen port kind.
    #[error("{option} does not apply to {kind} ports: {hint}")]
    NotForKind {
        /// The option given.
        option: &'static str,
        /// The port kind chosen.
        kind: &'static str,
        /// What to do instead.
        hint: &'static str,
    },
    /// A required option is missing for the chosen port kind.
    #[error("{kind} ports need {option}")]
    Missing {
        /// The port kind chosen.
        kind: &'static str,
        /// The option missing, with its value placeholder.
        option: &'static str,
    },
    /// A network is listed twice in `--nets`.
    #[error("--nets lists network {0} twice")]
    DuplicateNet(String),
    /// Not a usable Linux interface name.
    #[error("{option} '{name}' is not an interface name: {why}")]
    BadIfname {
        /// The option given.
        option: &'static str,
        /// The name given.
        name: String,
        /// What is wrong with it.
        why: crate::ifname::IfNameError,
    },
    /// A MAC that cannot belong to a port or an FDB entry.
    #[error(
        "{mac} is a {what} address: {context} must be a unicast address such as 02:42:ac:11:00:02"
    )]
    NotUnicast {
        /// The address given.
        mac: MacAddr,
        /// "multicast", "broadcast" or "all-zero".
        what: &'static str,
        /// Where it was given.
        context: &'static str,
    },
    /// An option that only means something on a network with a subnet.
    #[error("{option} needs --subnet: {why}")]
    NeedsSubnet {
        /// The option given.
        option: &'static str,
        /// Why it needs one.
        why: &'static str,
    },
    /// Two options that contradict each other or make one of them moot.
    #[error("{option} and {other} do not go together: {why}")]
    Conflict {
        /// The first option.
        option: &'static str,
        /// The second option.
        other: &'static str,
        /// Why, and what to drop.
        why: &'static str,
    },
    /// `net connect` or `net disconnect` names one network twice.
    #[error("network {0} is named twice: give two different networks")]
    SameNetwork(String),
    /// No uplink kind, or two at once.
    #[error("{0}")]
    UplinkKind(&'static str),
    /// An option that does not belong to the chosen uplink kind.
    #[error("{option} does not apply to {kind} uplinks: {hint}")]
    NotForUplink {
        /// The option given.
        option: &'static str,
        /// The uplink kind chosen.
        kind: &'static str,
        /// What to do instead.
        hint: &'static str,
    },
    /// The uplink's `--ip` is not a usable host address.
    #[error("--ip {ip} is not a host address: {why}")]
    UplinkAddress {
        /// The address given.
        ip: Ipv4Cidr,
        /// Why not, and what would do.
        why: String,
    },
    /// The uplink's `--gateway` cannot be reached directly from its `--ip`.
    #[error("--gateway {gateway} is not a neighbour of --ip {ip}: {why}")]
    UplinkGateway {
        /// The gateway given.
        gateway: Ipv4Addr,
        /// The uplink address given.
        ip: Ipv4Cidr,
        /// Why not, and what would do.
        why: String,
    },
    /// A `publish add` specification that does not parse.
    #[error(transparent)]
    Publish(#[from] PublishParseError),
    /// A `publish rm` argument that is neither a rule nor a host part.
    #[error(
        "'{spec}' names no published port: {reason}; give the rule as `yardctl publish ls` \
         shows it, or its host part [HOSTIP:]HOSTPORT[/tcp|/udp], e.g. 8080/tcp"
    )]
    PublishHost {
        /// The text given.
        spec: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A `--timeout` that is not `NAME=SECONDS`.
    #[error("--timeout '{given}' {why}: write NAME=SECONDS, e.g. tcp-established=86400")]
    BadTimeout {
        /// The text given.
        given: String,
        /// What is wrong.
        why: &'static str,
    },
    /// A rule that makes no sense by itself.
    #[error(transparent)]
    Rule(RuleError),
    /// The same timeout is set twice.
    #[error("--timeout sets {0} twice: give each timeout once")]
    DuplicateTimeout(String),
}

impl ArgError {
    /// The subcommand whose `--help` explains the mistake, e.g. `port add`.
    pub fn help_topic(&self, command: &Command) -> &'static str {
        match command {
            Command::Status { .. } => "status",
            Command::Net(NetCommand::Create(_)) => "net create",
            Command::Net(_) => "net",
            Command::Port(PortCommand::Add(_)) => "port add",
            Command::Port(_) => "port",
            Command::Fdb(_) => "fdb",
            Command::Mdb(_) => "mdb show",
            Command::Uplink(UplinkCommand::Add(_)) => "uplink add",
            Command::Uplink(_) => "uplink",
            Command::Publish(PublishCommand::Add { .. }) => "publish add",
            Command::Publish(PublishCommand::Rm { .. }) => "publish rm",
            Command::Publish(_) => "publish",
            Command::Conntrack(ConntrackCommand::Set(_)) => "conntrack set",
            Command::Conntrack(_) => "conntrack",
            Command::Link(_) => "link",
            Command::Rule(_) => "rule add",
            Command::Capture(_) => "capture",
            Command::Trace(_) => "trace",
            Command::Topology { .. } => "topology",
            Command::Events => "events",
            Command::Run(_) => "run",
        }
    }
}
