//! [`ConfigError`]: why the configuration refused a change. Every variant
//! carries the names of the objects involved, and every message names them
//! and says what to do instead; the messages are what `yardctl` prints.

// Variant fields are not documented one by one: each is the object its
// variant's `#[error]` message names, and that message is their doc.
#![allow(missing_docs)]

use std::net::Ipv4Addr;

use yard_ctl::api::{PublishSpec, Transport, MAX_MTU};
use yard_ctl::ifname::{IfNameError, MAX_IFNAME_LEN};
use yard_ctl::{Ipv4Cidr, MacAddr};

use super::{MAX_NAME_LEN, MIN_MTU};
use crate::control::Object;

/// Why a change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    // ---- names ----------------------------------------------------------
    /// A network or port name with characters or a length yardd refuses.
    #[error(
        "{} name '{}' is not valid: use 1 to {} letters, digits, '-', '_' or '.', not starting with '-' or '.'",
        .0.kind(), .0.name(), MAX_NAME_LEN
    )]
    BadName(Object),
    /// An interface name the kernel would refuse (see
    /// [`yard_ctl::ifname`]); `port` is the port's (or uplink's) name.
    #[error(
        "port {port}: interface name '{ifname}' is not valid: use 1 to {} characters without '/', ':' or spaces",
        MAX_IFNAME_LEN
    )]
    BadIfname {
        /// The port or uplink.
        port: String,
        /// The name given.
        ifname: String,
        /// What is wrong with it.
        error: IfNameError,
    },
    /// An MTU outside [`MIN_MTU`] to [`MAX_MTU`].
    #[error("{object}: MTU {mtu} is out of range: use {} to {}", MIN_MTU, MAX_MTU)]
    BadMtu {
        /// The network or port.
        object: Object,
        /// The MTU given.
        mtu: u32,
    },

    // ---- networks -------------------------------------------------------
    /// No network of that name.
    #[error("network {0} not found: `yardctl net ls` lists the networks")]
    NoNetwork(String),
    /// A network of that name exists.
    #[error(
        "network {0} already exists: choose another name or remove it with `yardctl net rm {0}`"
    )]
    NetworkExists(String),
    /// An aging time outside 1 to 1000000 s.
    #[error("network {net}: aging time {secs} s is out of range: use 1 to 1000000 seconds")]
    BadAging {
        net: String,
        /// The aging time given.
        secs: u64,
    },
    /// A VLAN id outside 1 to 4094.
    #[error("network {net}: VLAN id {vlan} is out of range: use 1 to 4094")]
    BadVlan {
        net: String,
        /// The id given.
        vlan: u16,
    },
    /// Another network has the VLAN id.
    #[error(
        "network {net}: VLAN id {vlan} is already used by network {by}: choose another --vlan"
    )]
    VlanTaken {
        net: String,
        /// The id given.
        vlan: u16,
        /// The network that has it.
        by: String,
    },
    /// `--gateway` on a network without a subnet.
    #[error("network {0}: --gateway needs --subnet (a network without a subnet is plain L2)")]
    GatewayWithoutSubnet(String),
    /// A subnet with too few host addresses.
    #[error("network {net}: subnet {subnet} is too small: use a prefix of /30 or shorter")]
    SubnetTooSmall {
        net: String,
        /// The subnet given.
        subnet: Ipv4Cidr,
    },
    /// The subnet overlaps another network's.
    #[error(
        "network {net}: subnet {subnet} overlaps {other_subnet} of network {other}: choose a --subnet that does not overlap"
    )]
    SubnetOverlaps {
        net: String,
        subnet: Ipv4Cidr,
        /// The network it overlaps.
        other: String,
        /// That network's subnet.
        other_subnet: Ipv4Cidr,
    },
    /// The subnet overlaps the uplink's.
    #[error(
        "network {net}: subnet {subnet} overlaps the uplink {uplink}'s {uplink_subnet}: the inside and the outside must not share addresses"
    )]
    SubnetOverlapsUplink {
        net: String,
        subnet: Ipv4Cidr,
        uplink: String,
        /// The uplink's subnet.
        uplink_subnet: Ipv4Cidr,
    },
    /// The gateway address is not a host of the subnet.
    #[error("network {net}: gateway {gateway} is not a host address of {subnet}")]
    GatewayOutsideSubnet {
        net: String,
        /// The gateway address given.
        gateway: Ipv4Addr,
        /// The network's subnet.
        subnet: Ipv4Cidr,
    },
    /// Ports still use the network.
    #[error(
        "network {net} is in use by port(s) {}: remove them first with `yardctl port rm NAME`",
        .ports.join(", ")
    )]
    NetworkInUse {
        net: String,
        /// The ports on it.
        ports: Vec<String>,
    },
    /// The network cannot route: it has no subnet.
    #[error("network {0} has no subnet, so nothing routes to it: create it with --subnet")]
    NoSubnet(String),
    /// `net connect A A`.
    #[error("network {0} cannot be connected to itself")]
    SelfConnect(String),
    /// The two networks are connected already.
    #[error("networks {a} and {b} are already connected")]
    AlreadyConnected {
        /// One network.
        a: String,
        b: String,
    },

    // ---- ports ----------------------------------------------------------
    /// A QEMU socket path yardd cannot bind.
    #[error("port {port}: QEMU socket path '{path}' {why}")]
    QemuPath {
        port: String,
        path: String,
        why: &'static str,
    },
    /// A QEMU socket address another QEMU port already has.
    #[error("port {port}: {socket} is port {by}'s socket already: choose another, or remove {by} with `yardctl port rm {by}`")]
    QemuSocketTaken {
        port: String,
        socket: String,
        by: String,
    },
    /// A QEMU datagram UDP address off loopback or with port 0.
    #[error("port {port}: {addr}: a qemu-dgram UDP address must be on loopback (127.0.0.0/8) with a port other than 0")]
    QemuUdpNotLoopback {
        port: String,
        addr: std::net::SocketAddrV4,
    },
    /// A port of that name exists.
    #[error(
        "port {0} already exists: choose another name or remove it with `yardctl port rm {0}`"
    )]
    PortExists(String),
    /// The port names a network that does not exist.
    #[error(
        "port {port}: network {net} not found: create it with `yardctl net create {net}` or see `yardctl net ls`"
    )]
    PortNetworkMissing {
        port: String,
        /// The network it names.
        net: String,
    },
    /// A group or all-zero MAC for a port.
    #[error("port {port}: MAC {mac} is a group or zero address: use a unicast address")]
    GroupMac {
        port: String,
        /// The MAC given.
        mac: MacAddr,
    },
    /// Another TAP port has the same interface in the same namespace.
    #[error(
        "port {port}: interface {ifname} in netns {} is already port {by}",
        .netns.as_deref().unwrap_or("(yardd's own)")
    )]
    TapTaken {
        port: String,
        /// The interface name.
        ifname: String,
        /// The namespace; `None` for yardd's own.
        netns: Option<String>,
        /// The port that has it.
        by: String,
    },
    /// The address is not a host of the network's subnet (or has another
    /// prefix length).
    #[error(
        "port {port}: address {ip} is not a host address of network {net} ({subnet}): use an address inside it with /{}",
        .subnet.prefix
    )]
    AddressOutside {
        port: String,
        /// The address given.
        ip: Ipv4Cidr,
        net: String,
        subnet: Ipv4Cidr,
    },
    /// The address is the network's gateway.
    #[error("port {port}: {addr} is the gateway of network {net}")]
    AddressIsGateway {
        port: String,
        /// The address given.
        addr: Ipv4Addr,
        net: String,
    },
    /// Another port on the network has the address.
    #[error("port {port}: address {addr} is already used by port {by} on network {net}: choose another, or omit --ip to get the next free one")]
    AddressTaken {
        port: String,
        /// The address given.
        addr: Ipv4Addr,
        /// The port that has it.
        by: String,
        net: String,
    },
    /// Every address the network gives out is in use.
    #[error("port {port}: network {net} has no free address left in {range}: remove a port, or create a network with a larger --subnet or --ip-range")]
    NoFreeAddress {
        port: String,
        net: String,
        /// Where addresses are given from (the --ip-range, else the subnet).
        range: Ipv4Cidr,
    },
    /// `--ip-range` on a network without a subnet.
    #[error("network {0}: --ip-range needs a --subnet to be part of")]
    RangeWithoutSubnet(String),
    /// `--ip-range` not inside the subnet.
    #[error(
        "network {net}: --ip-range {range} is not inside its subnet {subnet}: give a part of it"
    )]
    RangeOutsideSubnet {
        net: String,
        /// The range given.
        range: Ipv4Cidr,
        subnet: Ipv4Cidr,
    },
    /// A `--host-loopback` address the network cannot use.
    #[error("network {net}: --host-loopback {addr} {why}")]
    HostLoopback {
        net: String,
        addr: Ipv4Addr,
        why: &'static str,
    },
    /// A GRE-in-UDP remote with port 0.
    #[error("port {0}: remote port 0 is not valid: omit it for 4754")]
    RemotePortZero(String),
    /// A tunnel remote that is not a unicast address.
    #[error("port {port}: remote {remote} is not a unicast address")]
    RemoteNotUnicast {
        port: String,
        /// The remote given.
        remote: Ipv4Addr,
    },
    /// Another tunnel of the same local endpoint has the same remote and
    /// key: received packets would have two homes.
    #[error(
        "port {port}: tunnel port {by} already reaches {remote} with {}: give this one another --key",
        key_name(.key)
    )]
    TunnelTaken {
        port: String,
        /// The tunnel that has the remote and key.
        by: String,
        remote: Ipv4Addr,
        key: Option<u32>,
    },
    /// Another port has the interface.
    #[error("port {port}: interface {iface} is already attached as port {by}")]
    IfaceTaken {
        port: String,
        iface: String,
        /// The port that has it.
        by: String,
    },
    /// A link from a port to itself.
    #[error("link {0} - {0}: a port reaches itself already; name two ports")]
    LinkToItself(String),
    /// A link naming a port that does not exist.
    #[error("link: no port {0}: see `yardctl port ls`")]
    LinkNoPort(String),
    /// A link naming a trunk or tunnel.
    #[error("link: port {0} is a trunk or tunnel, which no isolation applies to; link access ports (TAP, veth, iface)")]
    LinkNotAccess(String),
    /// A link between ports of two networks.
    #[error("link {a} - {b}: {a} is on {net_a} and {b} on {net_b}; a link joins two ports of one network (to route between networks, `yardctl net connect`)")]
    LinkAcrossNetworks {
        a: String,
        b: String,
        net_a: String,
        net_b: String,
    },
    /// A link on a network whose ports reach each other anyway.
    #[error("link {a} - {b}: network {net} has icc on, so its ports reach each other already; links open --no-icc networks")]
    LinkOnIccNetwork { a: String, b: String, net: String },
    /// The two ports are linked already.
    #[error("link {a} - {b}: the two ports are linked already; `yardctl link rm {a} {b}` first to change it")]
    LinkExists { a: String, b: String },
    /// No link between the two ports.
    #[error("link {a} - {b}: there is no such link (see `yardctl link ls`)")]
    NoLink { a: String, b: String },
    /// A rule that makes no sense by itself.
    #[error("rule: {0}")]
    Rule(yard_ctl::api::RuleError),
    /// A rule naming a port that does not exist.
    #[error("rule: no port {0}: see `yardctl port ls`, or give a CIDR")]
    RuleNoPort(String),
    /// A rule naming a port without an address.
    #[error(
        "rule: port {0} has no IPv4 address to match; give the port one (--ip) or give a CIDR"
    )]
    RulePortWithoutAddress(String),
    /// A position past the end of the list.
    #[error("rule: position {position} is past the end of network {net}'s list: a new rule goes at position 1 to {}; leave --position out to append", count + 1)]
    RulePosition {
        net: String,
        position: usize,
        count: usize,
    },
    /// No rule at that position.
    #[error("network {net} has no rule {position} (it has {count}): see `yardctl rule ls {net}`")]
    NoRule {
        net: String,
        position: usize,
        count: usize,
    },
    /// A veth whose two ends have one name.
    #[error(
        "port {port}: the veth's ends cannot both be named {ifname}: give --peer another name"
    )]
    VethSameNames { port: String, ifname: String },
    /// A trunk without `--nets`.
    #[error("port {0}: a trunk needs --nets NET1,NET2")]
    TrunkWithoutNets(String),
    /// A trunk member network without a VLAN id.
    #[error(
        "port {port}: network {net} has no VLAN id, so a trunk cannot carry it: create it with `--vlan ID`"
    )]
    TrunkNetWithoutVlan {
        /// The trunk port.
        port: String,
        net: String,
    },

    // ---- the uplink -----------------------------------------------------
    /// There is an uplink already.
    #[error(
        "uplink {uplink}: yardd has one uplink, {existing} — remove it first with `yardctl uplink rm {existing}`"
    )]
    OneUplink {
        /// The new uplink.
        uplink: String,
        /// The one there is.
        existing: String,
    },
    /// A port has the uplink's name.
    #[error("uplink {0}: a port already has that name")]
    UplinkNameTaken(String),
    /// The uplink's address leaves no room for a gateway.
    #[error(
        "uplink {uplink}: {ip} is not a host address with room for a gateway: use e.g. 10.1.0.2/24"
    )]
    UplinkAddress {
        uplink: String,
        /// The address given.
        ip: Ipv4Cidr,
    },
    /// An `--iface`/`--tap` uplink without an address, or a host uplink
    /// with one.
    #[error(
        "uplink {uplink}: --iface and --tap uplinks need --ip (their own address outside); a \
         --host uplink has none (it uses the host's addresses)"
    )]
    UplinkAddressKind { uplink: String },
    /// The uplink's subnet overlaps a network's.
    #[error(
        "uplink {uplink}: {subnet} overlaps network {net}'s subnet: the outside must be a different subnet"
    )]
    UplinkOverlaps {
        uplink: String,
        subnet: Ipv4Cidr,
        net: String,
    },
    /// The uplink's gateway is not another host of its subnet.
    #[error("uplink {uplink}: gateway {gateway} must be another host address of {subnet}")]
    UplinkGateway {
        uplink: String,
        /// The gateway given.
        gateway: Ipv4Addr,
        /// The uplink's subnet.
        subnet: Ipv4Cidr,
    },
    /// A port has the uplink's interface.
    #[error("uplink {uplink}: interface {iface} is already port {by}")]
    UplinkIfaceTaken {
        uplink: String,
        iface: String,
        /// The port that has it.
        by: String,
    },

    // ---- published ports ------------------------------------------------
    /// The target port has no address yardd configured.
    #[error("port {0} has no address yardd knows: publish to its IP address instead")]
    TargetWithoutAddress(String),
    /// The target is neither a port nor an address.
    #[error(
        "publish target {0} is neither a port nor an IPv4 address: `yardctl port ls` lists the ports"
    )]
    UnknownTarget(String),
    /// The target address is in no network.
    #[error("publish target {0} is in no network's subnet: publish to a container address")]
    TargetOutside(Ipv4Addr),
    /// The host ports overlap another rule's.
    #[error(
        "publish {rule}: its host ports overlap {other}: remove that with `yardctl publish rm {other}` or pick other ports"
    )]
    PublishOverlaps {
        /// The new rule.
        rule: PublishSpec,
        /// The rule it overlaps.
        other: PublishSpec,
    },
    /// The host address is not one of yardd's.
    #[error("publish {rule}: {host} is not an address of yardd (the uplink's or a gateway's)")]
    NotOurAddress {
        /// The new rule.
        rule: PublishSpec,
        /// The host address given.
        host: Ipv4Addr,
    },
    /// `publish rm` names no rule.
    #[error(
        "no published port {}{port}/{}: `yardctl publish ls` lists them",
        .host.map(|ip| format!("{ip}:")).unwrap_or_default(),
        transport_name(*.proto)
    )]
    NoPublish {
        /// The host address, if the rule has one.
        host: Option<Ipv4Addr>,
        /// The first host port.
        port: u16,
        proto: Transport,
    },
}

fn key_name(key: &Option<u32>) -> String {
    key.map(|k| format!("key {k}"))
        .unwrap_or_else(|| "no key".into())
}

fn transport_name(proto: Transport) -> &'static str {
    match proto {
        Transport::Tcp => "tcp",
        Transport::Udp => "udp",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The messages users see, word for word.
    #[test]
    fn messages_name_the_objects_and_the_way_out() {
        let cases: Vec<(ConfigError, &str)> = vec![
            (
                ConfigError::BadName(Object::Port("a b".into())),
                "port name 'a b' is not valid: use 1 to 64 letters, digits, '-', '_' or '.', not starting with '-' or '.'",
            ),
            (
                ConfigError::BadMtu {
                    object: Object::Network("web".into()),
                    mtu: 9,
                },
                "network web: MTU 9 is out of range: use 68 to 65000",
            ),
            (
                ConfigError::BadIfname {
                    port: "c1".into(),
                    ifname: "a/b".into(),
                    error: IfNameError::Separator('/'),
                },
                "port c1: interface name 'a/b' is not valid: use 1 to 15 characters without '/', ':' or spaces",
            ),
            (
                ConfigError::NetworkExists("web".into()),
                "network web already exists: choose another name or remove it with `yardctl net rm web`",
            ),
            (
                ConfigError::SubnetOverlaps {
                    net: "clash".into(),
                    subnet: "172.30.128.0/17".parse().unwrap(),
                    other: "yard0".into(),
                    other_subnet: "172.30.0.0/16".parse().unwrap(),
                },
                "network clash: subnet 172.30.128.0/17 overlaps 172.30.0.0/16 of network yard0: choose a --subnet that does not overlap",
            ),
            (
                ConfigError::NetworkInUse {
                    net: "web".into(),
                    ports: vec!["c1".into(), "c2".into()],
                },
                "network web is in use by port(s) c1, c2: remove them first with `yardctl port rm NAME`",
            ),
            (
                ConfigError::TapTaken {
                    port: "c2".into(),
                    ifname: "eth0".into(),
                    netns: None,
                    by: "c1".into(),
                },
                "port c2: interface eth0 in netns (yardd's own) is already port c1",
            ),
            (
                ConfigError::AddressOutside {
                    port: "c3".into(),
                    ip: "10.62.0.2/24".parse().unwrap(),
                    net: "web".into(),
                    subnet: "10.61.0.0/24".parse().unwrap(),
                },
                "port c3: address 10.62.0.2/24 is not a host address of network web (10.61.0.0/24): use an address inside it with /24",
            ),
            (
                ConfigError::TunnelTaken {
                    port: "t2".into(),
                    by: "t1".into(),
                    remote: Ipv4Addr::new(192, 0, 2, 1),
                    key: None,
                },
                "port t2: tunnel port t1 already reaches 192.0.2.1 with no key: give this one another --key",
            ),
            (
                ConfigError::TunnelTaken {
                    port: "t2".into(),
                    by: "t1".into(),
                    remote: Ipv4Addr::new(192, 0, 2, 1),
                    key: Some(7),
                },
                "port t2: tunnel port t1 already reaches 192.0.2.1 with key 7: give this one another --key",
            ),
            (
                ConfigError::OneUplink {
                    uplink: "up1".into(),
                    existing: "up0".into(),
                },
                "uplink up1: yardd has one uplink, up0 — remove it first with `yardctl uplink rm up0`",
            ),
            (
                ConfigError::NoPublish {
                    host: Some(Ipv4Addr::new(10, 1, 0, 2)),
                    port: 8080,
                    proto: Transport::Udp,
                },
                "no published port 10.1.0.2:8080/udp: `yardctl publish ls` lists them",
            ),
            (
                ConfigError::NoPublish {
                    host: None,
                    port: 8080,
                    proto: Transport::Tcp,
                },
                "no published port 8080/tcp: `yardctl publish ls` lists them",
            ),
        ];
        for (error, message) in cases {
            assert_eq!(error.to_string(), message);
        }
    }
}
