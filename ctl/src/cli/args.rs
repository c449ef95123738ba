//! The `yardctl` command line: the clap definitions and their mapping onto API
//! [`Request`]s.
//!
//! Contract: [`Command::to_request`] is pure (but for `trace --pcap FILE`,
//! which reads the capture's first frame into the request). It turns parsed arguments into
//! exactly one request, or an [`ArgError`] that names the offending option and
//! what to write instead. It checks locally whatever can be checked without the
//! daemon (VLAN ids, MTUs, which options go with which port kind, that a
//! gateway lies in its subnet); yardd validates everything again, so these
//! checks only make mistakes cheaper, they are not what keeps yardd safe.
//!
//! The L2 commands (networks, ports, FDB, capture, trace) live here, with the
//! tunnel ports' options checked and mapped in [`tunnel`], the QEMU socket
//! ports' in `qemu`; the L3 gateway's
//! (uplinks, published ports, conntrack) in [`nat`]; [`ArgError`] in its own
//! module.

mod error;
pub mod nat;
mod qemu;
pub mod tunnel;

use std::net::Ipv4Addr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use error::ArgError;
pub use nat::{
    ConntrackCommand, ConntrackFilterArgs, ConntrackSetArgs, PublishCommand, UplinkAddArgs,
    UplinkCommand,
};
pub use tunnel::{Endpoint, GRE_UDP_PORT};

use crate::api::{
    self, LinkPort, LinkSpec, NetworkSpec, PacketSpec, PortKind, PortRange, PortSpec,
    QemuDgramAddr, Request, RuleAction, RulePeer, RuleProto, RuleSpec, TracePacket, TraceRequest,
};
use crate::paths;
use crate::types::{AllowedAddress, Ipv4Cidr, MacAddr};

/// Why an `--iface` or `--trunk` port may not have the options that configure a TAP.
const EXISTING_IFACE_HINT: &str = "it configures the TAP yardd creates; an existing interface \
                                   keeps its own namespace, name, address, MAC and MTU";

/// `yardctl [--socket PATH] [--json] COMMAND`.
#[derive(Debug, Parser)]
#[command(
    name = "yardctl",
    version,
    about = "Configure Switchyard's yardd: networks, ports, forwarding database, uplinks, \
             published ports, connection tracking, capture; run commands in containers",
    after_help = "The socket defaults to $YARD_SOCKET, else /run/switchyard/yardd.sock \
                  for root and $XDG_RUNTIME_DIR/switchyard/yardd.sock for others \
                  (uid 0 in a user namespace included; /tmp/switchyard-UID/yardd.sock \
                  without XDG_RUNTIME_DIR)."
)]
pub struct Cli {
    /// yardd's control socket.
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        default_value_os_t = paths::default_socket(),
        display_order = 100
    )]
    pub socket: PathBuf,
    /// Print the reply as JSON on stdout instead of a table.
    #[arg(long, global = true, display_order = 101)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show yardd's version, uptime, paths and object counts.
    Status {
        /// Wait up to SECONDS for yardd to answer (it may be starting)
        /// instead of failing at once.
        #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
        wait: Option<u64>,
    },
    /// Manage networks (L2 domains, optionally with a subnet and gateway).
    #[command(subcommand)]
    Net(NetCommand),
    /// Manage ports (TAPs, existing interfaces, VLAN trunks, GRE tunnels).
    #[command(subcommand)]
    Port(PortCommand),
    /// Inspect and edit the forwarding database (MAC table).
    #[command(subcommand)]
    Fdb(FdbCommand),
    /// Inspect the multicast snooping table (like `bridge mdb`).
    #[command(subcommand)]
    Mdb(MdbCommand),
    /// Manage the uplink: the outside-facing interface the gateway routes through.
    #[command(subcommand)]
    Uplink(UplinkCommand),
    /// Publish ports: forward a host port range to a port's address (`docker run -p`).
    #[command(subcommand)]
    Publish(PublishCommand),
    /// Inspect and tune connection tracking (like `conntrack -L`, `-F`, `-S`).
    #[command(subcommand)]
    Conntrack(ConntrackCommand),
    /// Let two ports of a --no-icc network reach each other (Docker's --link under icc=false).
    #[command(subcommand)]
    Link(LinkCommand),
    /// Firewall rules of a network: first match wins, default allow; replies of allowed connections pass.
    #[command(subcommand)]
    Rule(RuleCommand),
    /// Write the frames in and out of a port as pcap (to a file or stdout).
    Capture(CaptureArgs),
    /// Show what the switch would do with one frame, decision by decision,
    /// without doing it: nothing is learned, tracked, counted or sent.
    Trace(TraceArgs),
    /// Stream what changes — networks, ports (up, down and why), uplinks, published ports, links — until interrupted.
    Events,
    /// Show what is connected to what: networks, ports, uplinks, routing and links.
    Topology {
        /// Print a Graphviz graph instead (`yardctl topology --dot | dot -Tsvg > net.svg`).
        #[arg(long)]
        dot: bool,
    },
    /// Run a command in a new user and network namespace attached to a
    /// network (a lab container with no image, and no root needed); its
    /// exit code is yardctl's, and its port is removed when it exits.
    Run(RunArgs),
}

/// `yardctl run [--net NET] [--ip CIDR] [--name NAME] -- CMD [ARGS…]`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Network to attach to.
    #[arg(long, value_name = "NET", default_value = api::DEFAULT_NETWORK)]
    pub net: String,
    /// Address with prefix length (default: the network's next free one).
    #[arg(long, value_name = "CIDR")]
    pub ip: Option<Ipv4Cidr>,
    /// Port name (default: run-PID, PID the container's first process).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// The command and its arguments (after `--`).
    #[arg(
        value_name = "CMD",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<std::ffi::OsString>,
}

impl RunArgs {
    /// What to run, checked like `port add` checks its names.
    pub fn to_spec(&self) -> Result<crate::container::RunSpec, ArgError> {
        check_name("network", &self.net)?;
        if let Some(name) = &self.name {
            check_name("port", name)?;
        }
        Ok(crate::container::RunSpec {
            net: self.net.clone(),
            ip: self.ip,
            name: self.name.clone(),
            command: self.command.clone(),
        })
    }
}

/// `yardctl rule …`.
#[derive(Debug, Subcommand)]
pub enum RuleCommand {
    /// Add a rule for new connections in a network (switched, and routed through its gateway).
    Add {
        /// The network.
        net: String,
        /// Where connections come from: a port name (its address) or a CIDR; any when left out.
        #[arg(long, value_name = "PORT|CIDR")]
        from: Option<RulePeer>,
        /// Where they go: a port name, a CIDR, or `outside` (out through the gateway to the uplink).
        #[arg(long, value_name = "PORT|CIDR|outside")]
        to: Option<RulePeer>,
        /// The protocol; any when left out.
        #[arg(long, value_name = "tcp|udp|icmp")]
        proto: Option<RuleProto>,
        /// Destination port or range (needs --proto tcp or udp).
        #[arg(long, value_name = "N[-M]")]
        dport: Option<PortRange>,
        /// allow or deny.
        #[arg(value_name = "allow|deny")]
        action: RuleAction,
        /// Insert at this position, from 1 (default: append).
        #[arg(long, value_name = "N")]
        position: Option<usize>,
    },
    /// List rules with their hits (one network, or all).
    Ls {
        /// The network; all when left out.
        net: Option<String>,
    },
    /// Remove the rule at a position (see `rule ls`).
    Rm {
        /// The network.
        net: String,
        /// Its position, from 1.
        position: usize,
    },
}

impl RuleCommand {
    fn to_request(&self) -> Result<Request, ArgError> {
        match self {
            RuleCommand::Add {
                net,
                from,
                to,
                proto,
                dport,
                action,
                position,
            } => {
                check_name("network", net)?;
                if *position == Some(0) {
                    return Err(ArgError::OutOfRange {
                        option: "--position",
                        value: 0,
                        expected: "positions count from 1 (the first rule)".into(),
                    });
                }
                let rule = RuleSpec {
                    net: net.clone(),
                    from: from.clone(),
                    to: to.clone(),
                    proto: *proto,
                    dport: *dport,
                    action: *action,
                };
                api::check_rule(&rule).map_err(ArgError::Rule)?;
                Ok(Request::RuleAdd {
                    rule,
                    position: *position,
                })
            }
            RuleCommand::Ls { net } => {
                if let Some(net) = net {
                    check_name("network", net)?;
                }
                Ok(Request::RuleLs { net: net.clone() })
            }
            RuleCommand::Rm { net, position } => {
                check_name("network", net)?;
                Ok(Request::RuleRm {
                    net: net.clone(),
                    position: *position,
                })
            }
        }
    }
}

/// `yardctl link …`.
#[derive(Debug, Subcommand)]
pub enum LinkCommand {
    /// Let port A reach port B (on --ports, or everything both ways); replies come back.
    Add {
        /// The port that may reach B.
        a: String,
        /// The port A reaches.
        b: String,
        /// Only these ports of B, e.g. 3306/tcp,53/udp (TCP when no protocol is given).
        #[arg(long, value_name = "PORT[/PROTO],…", value_delimiter = ',')]
        ports: Vec<LinkPort>,
    },
    /// List links.
    Ls,
    /// Remove the link between two ports (either order).
    Rm {
        /// One port.
        a: String,
        /// The other.
        b: String,
    },
}

/// `yardctl net …`.
#[derive(Debug, Subcommand)]
pub enum NetCommand {
    /// Create a network.
    Create(NetCreateArgs),
    /// List networks.
    Ls,
    /// Show one network in detail.
    Inspect {
        /// Network name.
        name: String,
    },
    /// Remove a network no port uses.
    Rm {
        /// Network name.
        name: String,
    },
    /// Allow routing between two networks (networks are isolated by default).
    Connect {
        /// One network.
        net1: String,
        /// The other network.
        net2: String,
    },
    /// Isolate two connected networks again.
    Disconnect {
        /// One network.
        net1: String,
        /// The other network.
        net2: String,
    },
}

/// `yardctl net create NAME …`.
#[derive(Debug, Args)]
pub struct NetCreateArgs {
    /// Network name.
    pub name: String,
    /// IPv4 subnet, e.g. 10.10.0.0/24; without it the network is L2 only.
    #[arg(long, value_name = "CIDR")]
    pub subnet: Option<Ipv4Cidr>,
    /// Gateway address inside the subnet (default: its first host address).
    #[arg(long, value_name = "IP")]
    pub gateway: Option<Ipv4Addr>,
    /// Isolate the ports from each other (Docker's icc=false).
    #[arg(long)]
    pub no_icc: bool,
    /// 802.1Q VLAN id (1-4094) the network's frames carry on trunk ports.
    #[arg(long, value_name = "ID")]
    pub vlan: Option<u16>,
    /// Seconds a learned MAC address lives without traffic.
    #[arg(long, value_name = "SECONDS", default_value_t = api::DEFAULT_AGING_SECS)]
    pub aging: u64,
    /// Default MTU of the ports created on this network.
    #[arg(long, value_name = "N", default_value_t = api::DEFAULT_MTU)]
    pub mtu: u32,
    /// Never route to or from the uplink (Docker's --internal); needs --subnet.
    #[arg(long)]
    pub internal: bool,
    /// Route to the uplink without taking its address (no SNAT); needs --subnet.
    #[arg(long)]
    pub no_masquerade: bool,
    /// Give ports added without --ip addresses from this part of the subnet only (Docker's --ip-range).
    #[arg(long, value_name = "CIDR")]
    pub ip_range: Option<Ipv4Cidr>,
    /// An address that stands for the host's own loopback (127.0.0.1) on
    /// this network, with the host uplink: the gateway's address, or one
    /// outside the subnet such as 169.254.1.2 (off by default).
    #[arg(long, value_name = "IP")]
    pub host_loopback: Option<Ipv4Addr>,
}

/// `yardctl port …`.
#[derive(Debug, Subcommand)]
pub enum PortCommand {
    /// Create a TAP port, attach an existing interface or VLAN trunk, open a
    /// GRE tunnel to another host, or a socket for a QEMU VM's NIC.
    Add(Box<PortAddArgs>),
    /// List ports.
    Ls,
    /// Detach and remove a port.
    Rm {
        /// Port name.
        name: String,
    },
    /// Show packet, byte and drop counters.
    Stats {
        /// Only this port.
        name: Option<String>,
    },
}

/// `yardctl port add NAME …`: exactly one of `--tap`, `--iface DEV`,
/// `--trunk --iface DEV`, `--gre --remote IP`, `--gre-udp --remote IP[:PORT]`,
/// `--qemu-stream PATH` or `--qemu-dgram ADDR`.
#[derive(Debug, Args)]
pub struct PortAddArgs {
    /// Port name.
    pub name: String,
    /// The network the port joins (for --tap, --iface, --gre and --gre-udp).
    #[arg(long, value_name = "NET")]
    pub net: Option<String>,
    /// Create a TAP device (optionally inside --netns) as the container's interface.
    #[arg(long)]
    pub tap: bool,
    /// Attach an existing interface in yardd's namespace (e.g. a veth host end).
    #[arg(long, value_name = "DEV")]
    pub iface: Option<String>,
    /// Carry several networks over --iface as 802.1Q VLANs.
    #[arg(long)]
    pub trunk: bool,
    /// Create a veth pair in yardd's namespace, yardd's end named DEV, whose --peer end a container engine moves into the container itself (--ip is then the address the engine gives it; yardd configures none).
    #[arg(long, value_name = "DEV", requires = "peer")]
    pub veth: Option<String>,
    /// The name of the --veth pair's end to hand over.
    #[arg(long, value_name = "PEER", requires = "veth")]
    pub peer: Option<String>,
    /// Networks a --trunk port carries, comma-separated; each needs a VLAN id.
    #[arg(long, value_name = "NET1,NET2", value_delimiter = ',')]
    pub nets: Vec<String>,
    /// Network namespace for the TAP: a name under /run/netns or a path.
    #[arg(long, value_name = "NS")]
    pub netns: Option<String>,
    /// Interface name of the TAP inside its namespace [default: eth0].
    #[arg(long, value_name = "IF")]
    pub ifname: Option<String>,
    /// Address to configure on the TAP, with its prefix, e.g. 172.30.0.2/16 (default: the network's next free address).
    #[arg(long, value_name = "CIDR")]
    pub ip: Option<Ipv4Cidr>,
    /// Give this port its namespace's default route, taking it from the port that has it (default: only the namespace's first port gets one).
    #[arg(long)]
    pub default_route: bool,
    /// Remove the port, instead of turning it down, when its namespace goes away (the container's last process exits) or is gone when yardd restarts: for ports an engine or script manages per container.
    #[arg(long)]
    pub auto_remove: bool,
    /// MAC address of the TAP (default: 02:42 and the IPv4 address, as Docker does; without an address (an L2 network), a stable one from the port name).
    #[arg(long, value_name = "MAC")]
    pub mac: Option<MacAddr>,
    /// MTU of the TAP (default: the network's).
    #[arg(long, value_name = "N")]
    pub mtu: Option<u32>,
    /// Port security (on by default) lets a TAP send only from its MAC and --ip; this adds another source: an IPv4 address or prefix (a router's subnet, a VM's second address) or a MAC. Repeatable.
    #[arg(long = "allowed-address", value_name = "CIDR|MAC")]
    pub allowed_addresses: Vec<AllowedAddress>,
    /// Turn port security off for this TAP: it may then send from any MAC and IPv4 address (it still cannot claim the gateway's address).
    #[arg(long)]
    pub no_port_security: bool,
    /// A tunnel to --remote carrying Ethernet over GRE in raw IPv4 (protocol 47; yardd needs CAP_NET_RAW), like Linux gretap.
    #[arg(long)]
    pub gre: bool,
    /// A tunnel to --remote carrying GRE in UDP (RFC 8086): no privilege needed, crosses NAT.
    #[arg(long)]
    pub gre_udp: bool,
    /// The tunnel's other end (an address, and for `--gre-udp` optionally a port).
    #[arg(
        long,
        value_name = "IP[:PORT]",
        help = "The tunnel's other end: IP for --gre, IP[:PORT] for --gre-udp [default port: 4754]"
    )]
    pub remote: Option<Endpoint>,
    /// This host's tunnel address (and for `--gre-udp` optionally a port).
    #[arg(
        long,
        value_name = "IP[:PORT]",
        help = "This host's tunnel address: IP for --gre [default: the kernel chooses], IP[:PORT] for --gre-udp [default: 0.0.0.0:4754]"
    )]
    pub local: Option<Endpoint>,
    /// GRE key; tunnels between the same two hosts are told apart by it.
    #[arg(long, value_name = "N")]
    pub key: Option<u32>,
    /// Send GRE checksums.
    #[arg(long)]
    pub csum: bool,
    /// Send GRE sequence numbers.
    #[arg(long)]
    pub seq: bool,
    /// A QEMU VM's NIC: yardd listens on a Unix stream socket at PATH, which QEMU connects to with `-netdev stream,server=off,addr.type=unix,addr.path=PATH`.
    #[arg(long, value_name = "PATH")]
    pub qemu_stream: Option<String>,
    /// A QEMU VM's NIC over datagrams: yardd binds ADDR (a Unix socket path, or IP:PORT on loopback), which QEMU's `-netdev dgram` sends to.
    #[arg(long, value_name = "PATH|IP:PORT")]
    pub qemu_dgram: Option<QemuDgramAddr>,
}

/// `yardctl fdb …`.
#[derive(Debug, Subcommand)]
pub enum FdbCommand {
    /// List forwarding-database entries.
    Show {
        /// Only this network.
        #[arg(long, value_name = "NET")]
        net: Option<String>,
    },
    /// Add a static entry (never aged, never moved by learning).
    Add {
        /// Network name.
        net: String,
        /// MAC address.
        mac: MacAddr,
        /// The port frames to MAC leave through.
        port: String,
    },
    /// Delete an entry, static or learned.
    Del {
        /// Network name.
        net: String,
        /// MAC address.
        mac: MacAddr,
    },
    /// Delete learned entries (static ones stay).
    Flush {
        /// Only this network.
        #[arg(long, value_name = "NET")]
        net: Option<String>,
    },
}

/// `yardctl mdb …`.
#[derive(Debug, Subcommand)]
pub enum MdbCommand {
    /// List which ports listen to which multicast group, and the router
    /// ports (which get every group).
    Show {
        /// Only this network.
        #[arg(long, value_name = "NET")]
        net: Option<String>,
    },
}

/// `yardctl capture PORT [-w FILE] [-c COUNT]`.
#[derive(Debug, Args)]
pub struct CaptureArgs {
    /// Port name.
    pub port: String,
    /// Write the pcap stream to FILE instead of stdout ("-" means stdout).
    #[arg(short = 'w', value_name = "FILE")]
    pub write: Option<PathBuf>,
    /// Stop after COUNT frames.
    #[arg(short = 'c', value_name = "COUNT")]
    pub count: Option<u64>,
}

/// `yardctl trace --in PORT 'PROTO SRC[:PORT] > DST[:PORT] [FLAGS]'` or
/// `yardctl trace --in PORT --pcap FILE`.
#[derive(Debug, Args)]
#[command(
    after_help = "Quote the packet, or the shell reads '>' as a redirection:\n  \
    yardctl trace --in c1 'icmp 172.30.0.2 > 172.30.0.3'\n  \
    yardctl trace --in c1 'tcp 172.30.0.2:40000 > 10.1.0.1:80 syn'\n  \
    yardctl trace --in c1 --size 1400 'udp 172.30.0.2:5000 > 10.1.0.1:53 df'\n  \
    yardctl trace --in c1 --pcap first.pcap"
)]
pub struct TraceArgs {
    /// The port the frame arrives on, or the uplink (by its name).
    #[arg(long = "in", value_name = "PORT")]
    pub in_port: String,
    /// The packet: PROTO SRC[:PORT] > DST[:PORT] [FLAGS], PROTO one of
    /// icmp (echo request), tcp, udp, arp; FLAGS tcp's syn, ack, fin, rst,
    /// psh (none: a SYN) and df (don't fragment).
    #[arg(value_name = "PACKET", num_args = 1.., required_unless_present = "pcap", conflicts_with = "pcap")]
    pub packet: Vec<String>,
    /// Trace the first frame of this capture (pcap, as `yardctl capture -w` or
    /// `tcpdump -w` write it) instead.
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// Source MAC (default: the in-port's).
    #[arg(long, value_name = "MAC", conflicts_with = "pcap")]
    pub src_mac: Option<MacAddr>,
    /// Destination MAC (default: the port with the destination address on
    /// the network, else the gateway's; broadcast for arp).
    #[arg(long, value_name = "MAC", conflicts_with = "pcap")]
    pub dst_mac: Option<MacAddr>,
    /// Put an 802.1Q tag with this VLAN id on the frame (as a trunk's far side sends).
    #[arg(long, value_name = "ID", value_parser = clap::value_parser!(u16).range(1..=4094), conflicts_with = "pcap")]
    pub vlan: Option<u16>,
    /// The IP packet's total length in bytes, for MTU questions (default: headers only).
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u16).range(28..), conflicts_with = "pcap")]
    pub size: Option<u16>,
}

impl TraceArgs {
    fn to_request(&self) -> Result<Request, ArgError> {
        check_name("port", &self.in_port)?;
        let packet = match &self.pcap {
            Some(path) => {
                let bytes = std::fs::read(path).map_err(|e| ArgError::Pcap {
                    path: path.clone(),
                    why: e.to_string(),
                })?;
                let frame = crate::pcap::first_frame(&bytes).map_err(|e| ArgError::Pcap {
                    path: path.clone(),
                    why: e.to_string(),
                })?;
                if frame.len() > api::MAX_TRACE_FRAME {
                    return Err(ArgError::Pcap {
                        path: path.clone(),
                        why: format!(
                            "its first frame has {} bytes, more than the {} a trace request \
                             carries: capture with a smaller MTU or without GRO",
                            frame.len(),
                            api::MAX_TRACE_FRAME
                        ),
                    });
                }
                TracePacket::Frame {
                    hex: frame.iter().map(|b| format!("{b:02x}")).collect(),
                }
            }
            None => {
                let mut spec = PacketSpec::parse(&self.packet)?;
                spec.src_mac = self.src_mac;
                spec.dst_mac = self.dst_mac;
                spec.vlan = self.vlan;
                spec.size = self.size;
                TracePacket::Spec(spec)
            }
        };
        Ok(Request::Trace(TraceRequest {
            in_port: self.in_port.clone(),
            packet,
        }))
    }
}

impl CaptureArgs {
    /// The file to write, or `None` for stdout (no `-w`, or `-w -`).
    pub fn output_file(&self) -> Option<&std::path::Path> {
        self.write.as_deref().filter(|p| p.as_os_str() != "-")
    }
}

impl Command {
    /// The request this command line asks of yardd.
    pub fn to_request(&self) -> Result<Request, ArgError> {
        match self {
            Command::Status { .. } => Ok(Request::Status),
            Command::Net(net) => net.to_request(),
            Command::Port(port) => port.to_request(),
            Command::Fdb(fdb) => fdb.to_request(),
            Command::Mdb(MdbCommand::Show { net }) => {
                if let Some(net) = net {
                    check_name("network", net)?;
                }
                Ok(Request::MdbShow { net: net.clone() })
            }
            Command::Uplink(uplink) => uplink.to_request(),
            Command::Run(_) | Command::Topology { .. } => Err(ArgError::NotOneRequest),
            Command::Events => Ok(Request::Events),
            Command::Publish(publish) => publish.to_request(),
            Command::Conntrack(conntrack) => conntrack.to_request(),
            Command::Link(LinkCommand::Add { a, b, ports }) => {
                check_name("port", a)?;
                check_name("port", b)?;
                Ok(Request::LinkAdd(LinkSpec {
                    a: a.clone(),
                    b: b.clone(),
                    ports: ports.clone(),
                }))
            }
            Command::Link(LinkCommand::Ls) => Ok(Request::LinkLs),
            Command::Rule(rule) => rule.to_request(),
            Command::Link(LinkCommand::Rm { a, b }) => {
                check_name("port", a)?;
                check_name("port", b)?;
                Ok(Request::LinkRm {
                    a: a.clone(),
                    b: b.clone(),
                })
            }
            Command::Trace(args) => args.to_request(),
            Command::Capture(args) => {
                check_name("port", &args.port)?;
                if args.count == Some(0) {
                    return Err(ArgError::OutOfRange {
                        option: "-c",
                        value: 0,
                        expected:
                            "give at least 1 frame, or leave -c out to capture until interrupted"
                                .into(),
                    });
                }
                Ok(Request::Capture {
                    port: args.port.clone(),
                    count: args.count,
                })
            }
        }
    }
}

impl NetCommand {
    fn to_request(&self) -> Result<Request, ArgError> {
        match self {
            NetCommand::Create(args) => Ok(Request::NetCreate(args.to_spec()?)),
            NetCommand::Ls => Ok(Request::NetLs),
            NetCommand::Inspect { name } => {
                check_name("network", name)?;
                Ok(Request::NetInspect { name: name.clone() })
            }
            NetCommand::Rm { name } => {
                check_name("network", name)?;
                Ok(Request::NetRm { name: name.clone() })
            }
            NetCommand::Connect { net1, net2 } => {
                let (a, b) = network_pair(net1, net2)?;
                Ok(Request::NetConnect { a, b })
            }
            NetCommand::Disconnect { net1, net2 } => {
                let (a, b) = network_pair(net1, net2)?;
                Ok(Request::NetDisconnect { a, b })
            }
        }
    }
}

impl NetCreateArgs {
    /// The network these arguments describe.
    pub fn to_spec(&self) -> Result<NetworkSpec, ArgError> {
        check_name("network", &self.name)?;
        if let Some(vlan) = self.vlan {
            if !(1..=4094).contains(&vlan) {
                return Err(ArgError::OutOfRange {
                    option: "--vlan",
                    value: vlan.into(),
                    expected: "802.1Q VLAN ids run from 1 to 4094".into(),
                });
            }
        }
        check_mtu(self.mtu)?;
        if let Some(subnet) = self.subnet {
            if subnet.network() != subnet {
                return Err(ArgError::SubnetHostBits {
                    given: subnet,
                    network: subnet.network(),
                });
            }
        }
        if let Some(gateway) = self.gateway {
            let subnet = self.subnet.ok_or(ArgError::GatewayWithoutSubnet)?;
            check_gateway(gateway, subnet)?;
        }
        self.check_routing()?;
        if let Some(range) = self.ip_range {
            let subnet = self.subnet.ok_or(ArgError::NeedsSubnet {
                option: "--ip-range",
                why: "addresses are given from the network's subnet; add --subnet CIDR",
            })?;
            if range.network() != range {
                return Err(ArgError::SubnetHostBits {
                    given: range,
                    network: range.network(),
                });
            }
            if range.prefix < subnet.prefix || !subnet.contains(range.addr) {
                return Err(ArgError::RangeOutsideSubnet { range, subnet });
            }
        }
        let mut spec = NetworkSpec::new(self.name.clone());
        spec.subnet = self.subnet;
        spec.gateway = self.gateway;
        spec.icc = !self.no_icc;
        spec.vlan = self.vlan;
        spec.aging_secs = self.aging;
        spec.mtu = self.mtu;
        spec.internal = self.internal;
        spec.masquerade = !self.no_masquerade;
        spec.ip_range = self.ip_range;
        spec.host_loopback = self.host_loopback;
        Ok(spec)
    }

    /// `--internal` and `--no-masquerade` decide how the gateway routes, and
    /// only a network with a subnet is routed at all.
    fn check_routing(&self) -> Result<(), ArgError> {
        if self.internal && self.no_masquerade {
            return Err(ArgError::Conflict {
                option: "--internal",
                other: "--no-masquerade",
                why: "an internal network never reaches the uplink, so nothing of it is \
                      masqueraded; drop --no-masquerade",
            });
        }
        if self.subnet.is_none() {
            if self.internal {
                return Err(ArgError::NeedsSubnet {
                    option: "--internal",
                    why: "only a network with a subnet is routed; without one it is L2 only \
                          and never reaches the uplink anyway",
                });
            }
            if self.no_masquerade {
                return Err(ArgError::NeedsSubnet {
                    option: "--no-masquerade",
                    why: "masquerading applies to routed traffic, and only a network with \
                          a subnet is routed",
                });
            }
        }
        Ok(())
    }
}

/// The two distinct networks of `net connect` and `net disconnect`.
fn network_pair(net1: &str, net2: &str) -> Result<(String, String), ArgError> {
    check_name("network", net1)?;
    check_name("network", net2)?;
    if net1 == net2 {
        return Err(ArgError::SameNetwork(net1.to_string()));
    }
    Ok((net1.to_string(), net2.to_string()))
}

impl PortCommand {
    fn to_request(&self) -> Result<Request, ArgError> {
        match self {
            PortCommand::Add(args) => Ok(Request::PortAdd(args.to_spec()?)),
            PortCommand::Ls => Ok(Request::PortLs),
            PortCommand::Rm { name } => {
                check_name("port", name)?;
                Ok(Request::PortRm { name: name.clone() })
            }
            PortCommand::Stats { name } => {
                if let Some(name) = name {
                    check_name("port", name)?;
                }
                Ok(Request::PortStats { name: name.clone() })
            }
        }
    }
}

impl PortAddArgs {
    /// The port these arguments describe.
    pub fn to_spec(&self) -> Result<PortSpec, ArgError> {
        check_name("port", &self.name)?;
        if let Some(kind) = self.qemu()? {
            return Ok(PortSpec {
                name: self.name.clone(),
                kind,
            });
        }
        if let Some(kind) = self.tunnel()? {
            return Ok(PortSpec {
                name: self.name.clone(),
                kind,
            });
        }
        if let Some(ifname) = &self.veth {
            return Ok(PortSpec {
                name: self.name.clone(),
                kind: self.veth_kind(ifname)?,
            });
        }
        let kind = match (self.tap, self.trunk, &self.iface) {
            (true, true, _) => {
                return Err(ArgError::PortKind(
                    "--tap and --trunk are different port kinds: a TAP joins one network, \
                     a trunk carries several over an existing interface (--trunk --iface DEV)",
                ))
            }
            (true, false, Some(_)) => {
                return Err(ArgError::PortKind(
                    "--tap and --iface are different port kinds: --tap creates a new TAP \
                     device, --iface DEV attaches an interface that already exists",
                ))
            }
            (true, false, None) => self.tap_kind()?,
            (false, true, Some(iface)) => self.trunk_kind(iface)?,
            (false, true, None) => {
                return Err(ArgError::Missing {
                    kind: "trunk",
                    option: "--iface DEV (the interface carrying the VLANs)",
                })
            }
            (false, false, Some(iface)) => self.iface_kind(iface)?,
            (false, false, None) => {
                if let Some(option) = self.first_tunnel_option() {
                    return Err(ArgError::TunnelOnly { option });
                }
                return Err(ArgError::PortKind(
                    "say how to attach the port: --tap (a new TAP device), --iface DEV \
                     (an existing interface), --trunk --iface DEV (a VLAN trunk), \
                     --gre / --gre-udp --remote IP (a tunnel to another host), or \
                     --qemu-stream PATH / --qemu-dgram ADDR (a QEMU VM's NIC)",
                ));
            }
        };
        Ok(PortSpec {
            name: self.name.clone(),
            kind,
        })
    }

    /// The tunnel port asked for with `--gre` or `--gre-udp`, `None` if
    /// neither was given; a tunnel is refused with any other port kind.
    fn tunnel(&self) -> Result<Option<PortKind>, ArgError> {
        let option = match (self.gre, self.gre_udp) {
            (false, false) => return Ok(None),
            (true, true) => {
                return Err(ArgError::TwoKinds {
                    option: "--gre",
                    other: "--gre-udp",
                    why: "--gre carries GRE in raw IPv4 (protocol 47, needs CAP_NET_RAW), \
                          --gre-udp wraps it in UDP (no privilege, crosses NAT); pick one",
                })
            }
            (true, false) => "--gre",
            (false, true) => "--gre-udp",
        };
        let other = if self.tap {
            Some((
                "--tap",
                "--tap creates a local TAP device, a tunnel carries --net NET to another \
                 host; add them as two ports",
            ))
        } else if self.trunk {
            Some((
                "--trunk",
                "a trunk carries several networks over a local interface, a tunnel carries \
                 one network (--net NET) to another host",
            ))
        } else if self.iface.is_some() {
            Some((
                "--iface",
                "--iface DEV attaches a local interface, a tunnel has none: yardd sends to \
                 --remote through the host's own routing",
            ))
        } else {
            None
        };
        if let Some((other, why)) = other {
            return Err(ArgError::TwoKinds { option, other, why });
        }
        self.tunnel_kind(self.gre_udp).map(Some)
    }

    fn tap_kind(&self) -> Result<PortKind, ArgError> {
        self.reject_tunnel_options("tap")?;
        if !self.nets.is_empty() {
            return Err(ArgError::NotForKind {
                option: "--nets",
                kind: "tap",
                hint: "a TAP joins one network: use --net NET (--nets is for --trunk ports)",
            });
        }
        let net = self.required_net("tap")?;
        let ifname = self.ifname.clone().unwrap_or_else(|| "eth0".to_string());
        check_ifname("--ifname", &ifname)?;
        self.check_interface_options()?;
        Ok(PortKind::Tap {
            net,
            netns: self.netns.clone(),
            ifname,
            ip: self.ip,
            mac: self.mac,
            mtu: self.mtu,
            port_security: !self.no_port_security,
            allowed_addresses: self.allowed_addresses.clone(),
            default_route: self.default_route,
            auto_remove: self.auto_remove,
        })
    }

    /// The options of the interface yardd makes for a container (TAP or
    /// veth): its MAC, MTU and port security.
    fn check_interface_options(&self) -> Result<(), ArgError> {
        if let Some(mac) = self.mac {
            check_unicast(mac, "a port's MAC")?;
        }
        if let Some(mtu) = self.mtu {
            check_mtu(mtu)?;
        }
        if self.no_port_security && !self.allowed_addresses.is_empty() {
            return Err(ArgError::Contradicts {
                option: "--allowed-address",
                other: "--no-port-security",
                why: "--allowed-address widens what port security lets through and \
                      --no-port-security turns it off; give one of them",
            });
        }
        Ok(())
    }

    fn veth_kind(&self, ifname: &str) -> Result<PortKind, ArgError> {
        let other = [
            ("--tap", self.tap),
            ("--trunk", self.trunk),
            ("--iface", self.iface.is_some()),
        ];
        if let Some((other, _)) = other.iter().find(|(_, given)| *given) {
            return Err(ArgError::TwoKinds {
                option: "--veth",
                other,
                why: "--veth creates a veth pair whose --peer end an engine moves into a \
                      container; add other devices as other ports",
            });
        }
        self.reject_tunnel_options("veth")?;
        let given = [
            ("--netns", self.netns.is_some()),
            ("--ifname", self.ifname.is_some()),
            ("--default-route", self.default_route),
            ("--auto-remove", self.auto_remove),
            ("--nets", !self.nets.is_empty()),
        ];
        if let Some((option, _)) = given.iter().find(|(_, present)| *present) {
            return Err(ArgError::NotForKind {
                option,
                kind: "veth",
                hint: "both ends are made in yardd's namespace and the engine moves --peer \
                       into the container, configuring it itself",
            });
        }
        let net = self.required_net("veth")?;
        check_ifname("--veth", ifname)?;
        let peer = self.peer.clone().unwrap_or_default();
        check_ifname("--peer", &peer)?;
        self.check_interface_options()?;
        Ok(PortKind::Veth {
            net,
            ifname: ifname.to_string(),
            peer,
            ip: self.ip,
            mac: self.mac,
            mtu: self.mtu,
            port_security: !self.no_port_security,
            allowed_addresses: self.allowed_addresses.clone(),
        })
    }

    fn iface_kind(&self, iface: &str) -> Result<PortKind, ArgError> {
        if !self.nets.is_empty() {
            return Err(ArgError::NotForKind {
                option: "--nets",
                kind: "iface",
                hint: "an --iface port joins one network (--net NET); \
                       add --trunk to carry several networks as VLANs",
            });
        }
        self.reject_tunnel_options("iface")?;
        self.reject_tap_options("iface", EXISTING_IFACE_HINT)?;
        let net = self.required_net("iface")?;
        check_ifname("--iface", iface)?;
        Ok(PortKind::Iface {
            net,
            iface: iface.to_string(),
        })
    }

    fn trunk_kind(&self, iface: &str) -> Result<PortKind, ArgError> {
        if self.net.is_some() {
            return Err(ArgError::NotForKind {
                option: "--net",
                kind: "trunk",
                hint: "a trunk carries several networks: list them with --nets NET1,NET2",
            });
        }
        self.reject_tunnel_options("trunk")?;
        self.reject_tap_options("trunk", EXISTING_IFACE_HINT)?;
        check_ifname("--iface", iface)?;
        if self.nets.is_empty() {
            return Err(ArgError::Missing {
                kind: "trunk",
                option: "--nets NET1,NET2 (the networks it carries, each with a VLAN id)",
            });
        }
        let mut nets: Vec<String> = Vec::with_capacity(self.nets.len());
        for net in &self.nets {
            check_name("network", net)?;
            if nets.contains(net) {
                return Err(ArgError::DuplicateNet(net.clone()));
            }
            nets.push(net.clone());
        }
        Ok(PortKind::Trunk {
            iface: iface.to_string(),
            nets,
        })
    }

    fn required_net(&self, kind: &'static str) -> Result<String, ArgError> {
        let net = self.net.clone().ok_or(ArgError::Missing {
            kind,
            option: "--net NET (the network the port joins)",
        })?;
        check_name("network", &net)?;
        Ok(net)
    }

    /// Options that configure the TAP yardd creates make no sense for an
    /// interface that already exists, nor for a tunnel; `hint` says why.
    fn reject_tap_options(&self, kind: &'static str, hint: &'static str) -> Result<(), ArgError> {
        let given = [
            ("--netns", self.netns.is_some()),
            ("--ifname", self.ifname.is_some()),
            ("--ip", self.ip.is_some()),
            ("--mac", self.mac.is_some()),
            ("--mtu", self.mtu.is_some()),
            ("--allowed-address", !self.allowed_addresses.is_empty()),
            ("--no-port-security", self.no_port_security),
            ("--default-route", self.default_route),
            ("--auto-remove", self.auto_remove),
        ];
        match given.iter().find(|(_, present)| *present) {
            Some((option, _)) => Err(ArgError::NotForKind { option, kind, hint }),
            None => Ok(()),
        }
    }
}

impl FdbCommand {
    fn to_request(&self) -> Result<Request, ArgError> {
        match self {
            FdbCommand::Show { net } => {
                if let Some(net) = net {
                    check_name("network", net)?;
                }
                Ok(Request::FdbShow { net: net.clone() })
            }
            FdbCommand::Add { net, mac, port } => {
                check_name("network", net)?;
                check_name("port", port)?;
                check_unicast(*mac, "a static entry's MAC")?;
                Ok(Request::FdbAdd {
                    net: net.clone(),
                    mac: *mac,
                    port: port.clone(),
                })
            }
            FdbCommand::Del { net, mac } => {
                check_name("network", net)?;
                Ok(Request::FdbDel {
                    net: net.clone(),
                    mac: *mac,
                })
            }
            FdbCommand::Flush { net } => {
                if let Some(net) = net {
                    check_name("network", net)?;
                }
                Ok(Request::FdbFlush { net: net.clone() })
            }
        }
    }
}

fn check_name(what: &'static str, name: &str) -> Result<(), ArgError> {
    if name.is_empty() {
        return Err(ArgError::EmptyName { what });
    }
    Ok(())
}

fn check_mtu(mtu: u32) -> Result<(), ArgError> {
    if !(68..=api::MAX_MTU).contains(&mtu) {
        return Err(ArgError::OutOfRange {
            option: "--mtu",
            value: mtu.into(),
            expected: format!("an MTU runs from 68 (the IPv4 minimum) to {}", api::MAX_MTU),
        });
    }
    Ok(())
}

fn check_gateway(gateway: Ipv4Addr, subnet: Ipv4Cidr) -> Result<(), ArgError> {
    let outside = |why: String| ArgError::GatewayOutsideSubnet {
        gateway,
        subnet,
        why,
    };
    if !subnet.contains(gateway) {
        return Err(outside(format!(
            "it lies outside; the default would be {}",
            subnet.first_host()
        )));
    }
    // /31 and /32 have no network or broadcast address to avoid (RFC 3021).
    if subnet.prefix <= 30 {
        if gateway == subnet.network().addr {
            return Err(outside(format!(
                "it is the network address; the default would be {}",
                subnet.first_host()
            )));
        }
        if gateway == subnet.broadcast() {
            return Err(outside(format!(
                "it is the broadcast address; the default would be {}",
                subnet.first_host()
            )));
        }
    }
    Ok(())
}

/// [`crate::ifname::check_ifname`], naming the option the name came from.
fn check_ifname(option: &'static str, name: &str) -> Result<(), ArgError> {
    crate::ifname::check_ifname(name).map_err(|why| ArgError::BadIfname {
        option,
        name: name.to_string(),
        why,
    })
}

fn check_unicast(mac: MacAddr, context: &'static str) -> Result<(), ArgError> {
    let what = if mac.is_broadcast() {
        "broadcast"
    } else if mac.is_multicast() {
        "multicast"
    } else if mac.0 == [0; 6] {
        "all-zero"
    } else {
        return Ok(());
    };
    Err(ArgError::NotUnicast { mac, what, context })
}

#[cfg(test)]
mod tests;
