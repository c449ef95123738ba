//! `trace`: what yardd's pipeline would do with one frame, decision by
//! decision, without doing it.
//!
//! The frame is described (a [`PacketSpec`], parsed from `yardctl trace`'s
//! words `PROTO SRC[:PORT] > DST[:PORT] [FLAGS]` by [`PacketSpec::parse`])
//! or given whole (the first frame of a capture, as hex). yardd fills in
//! what a description leaves out: the MACs the container itself would use.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::types::MacAddr;

/// The syntax of a packet description, for error messages and help.
pub const SPEC_SYNTAX: &str = "PROTO SRC[:PORT] > DST[:PORT] [FLAGS], e.g. \
     'icmp 172.30.0.2 > 172.30.0.3', 'tcp 172.30.0.2:40000 > 10.1.0.1:80 syn', \
     'udp 172.30.0.2:5000 > 172.30.0.3:53' or 'arp 172.30.0.2 > 172.30.0.1'";

/// The largest frame a trace request carries: as hex it must fit a
/// request line ([`super::MAX_REQUEST_BYTES`]) with room to spare.
pub const MAX_TRACE_FRAME: usize = (super::MAX_REQUEST_BYTES - 1024) / 2;

/// What to trace.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TraceRequest {
    /// The port the frame arrives on, or the uplink's name.
    pub in_port: String,
    /// The frame.
    pub packet: TracePacket,
}

/// A frame to trace: described, or whole.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum TracePacket {
    /// A described packet; yardd builds the frame.
    Spec(PacketSpec),
    /// A whole Ethernet frame, as hex (`--pcap`).
    Frame {
        /// The frame's bytes, two hex digits each.
        hex: String,
    },
}

/// The protocol of a described packet.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum TraceProto {
    /// ICMP echo request.
    Icmp,
    /// TCP, with [`PacketSpec::tcp_flags`].
    Tcp,
    /// UDP.
    Udp,
    /// ARP request: who has DST, tell SRC.
    Arp,
}

/// A described packet (see [`PacketSpec::parse`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PacketSpec {
    /// The protocol.
    pub proto: TraceProto,
    /// Source address.
    pub src: Ipv4Addr,
    /// Source port (TCP, UDP); 0 when not given.
    pub sport: u16,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Destination port (TCP, UDP); 0 when not given.
    pub dport: u16,
    /// TCP flags by name (`syn`, `ack`, `fin`, `rst`, `psh`); a TCP
    /// packet without any is a SYN.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tcp_flags: Vec<String>,
    /// Set don't-fragment (the `df` flag).
    #[serde(default)]
    pub dont_fragment: bool,
    /// Source MAC; `None`: the in-port's MAC (from the uplink: a made-up
    /// outside MAC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_mac: Option<MacAddr>,
    /// Destination MAC; `None`: the port that has DST on the network, else
    /// the gateway's (broadcast for ARP; from the uplink, the uplink's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_mac: Option<MacAddr>,
    /// An 802.1Q tag to put on the frame (as a trunk's far side would).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    /// The IP packet's total length in bytes (padded with zeroes); `None`:
    /// the headers alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u16>,
}

/// Why a packet description was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    /// The words do not have the shape of a description.
    #[error("cannot read the packet '{words}': {why}; write {SPEC_SYNTAX}")]
    Shape {
        /// The words as given.
        words: String,
        /// What is wrong.
        why: String,
    },
}

impl PacketSpec {
    /// Reads `PROTO SRC[:PORT] > DST[:PORT] [FLAGS]` (the words may also
    /// come as one string). FLAGS: TCP's `syn`, `ack`, `fin`, `rst`,
    /// `psh`, and `df` for don't-fragment.
    pub fn parse<S: AsRef<str>>(words: &[S]) -> Result<PacketSpec, SpecError> {
        let joined = words
            .iter()
            .map(|w| w.as_ref())
            .collect::<Vec<_>>()
            .join(" ");
        let refuse = |why: String| SpecError::Shape {
            words: joined.clone(),
            why,
        };
        let spaced = joined.replace('>', " > ");
        let tokens: Vec<&str> = spaced.split_whitespace().collect();
        let [proto, src, arrow, dst, flags @ ..] = tokens.as_slice() else {
            return Err(refuse(
                "it needs a protocol, a source, '>' and a destination".into(),
            ));
        };
        if *arrow != ">" {
            return Err(refuse(format!(
                "expected '>' after the source, found '{arrow}'"
            )));
        }
        let proto = match proto.to_ascii_lowercase().as_str() {
            "icmp" => TraceProto::Icmp,
            "tcp" => TraceProto::Tcp,
            "udp" => TraceProto::Udp,
            "arp" => TraceProto::Arp,
            other => {
                return Err(refuse(format!(
                    "unknown protocol '{other}' (use icmp, tcp, udp or arp)"
                )))
            }
        };
        let with_ports = matches!(proto, TraceProto::Tcp | TraceProto::Udp);
        let endpoint = |s: &str| -> Result<(Ipv4Addr, u16), SpecError> {
            let (addr, port) = match s.split_once(':') {
                Some((a, p)) if with_ports => {
                    let port = p
                        .parse::<u16>()
                        .map_err(|_| refuse(format!("'{p}' is not a port number")))?;
                    (a, port)
                }
                Some(_) => return Err(refuse(format!("'{s}': only tcp and udp have ports"))),
                None if with_ports => {
                    return Err(refuse(format!("'{s}' needs a port: ADDRESS:PORT")))
                }
                None => (s, 0),
            };
            let addr = addr
                .parse::<Ipv4Addr>()
                .map_err(|_| refuse(format!("'{addr}' is not an IPv4 address")))?;
            Ok((addr, port))
        };
        let (src, sport) = endpoint(src)?;
        let (dst, dport) = endpoint(dst)?;
        let mut spec = PacketSpec {
            proto,
            src,
            sport,
            dst,
            dport,
            tcp_flags: Vec::new(),
            dont_fragment: false,
            src_mac: None,
            dst_mac: None,
            vlan: None,
            size: None,
        };
        for flag in flags {
            let flag = flag.to_ascii_lowercase();
            match flag.as_str() {
                "df" => spec.dont_fragment = true,
                "syn" | "ack" | "fin" | "rst" | "psh" if proto == TraceProto::Tcp => {
                    spec.tcp_flags.push(flag)
                }
                _ => {
                    return Err(refuse(format!(
                        "unknown flag '{flag}' (tcp: syn, ack, fin, rst, psh; any: df)"
                    )))
                }
            }
        }
        Ok(spec)
    }
}

/// The trace's answer: each decision in words, and where the frame ends.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TraceReport {
    /// The decisions in pipeline order.
    pub steps: Vec<TraceStep>,
    /// Where the frame ends.
    pub outcome: TraceOutcome,
}

/// One decision.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TraceStep {
    /// Where it is taken: `ingress`, `vlan`, `mtu`, `port-security`,
    /// `learning`, `multicast`, `fdb`, `isolation`, `flood`, `gateway`,
    /// `route`, `conntrack`, `nat`, `arp`, `fragmentation`, `tunnel`,
    /// `egress`.
    pub stage: String,
    /// What was decided and why.
    pub words: String,
}

/// Where a traced frame ends.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum TraceOutcome {
    /// It leaves by these ports (`uplink NAME` for the uplink, `host` for
    /// the host uplink); none when a flood finds no other port.
    Leaves {
        /// The ports.
        ports: Vec<String>,
    },
    /// It is dropped, counted as `reason` — the name `port stats` (or for
    /// the gateway's `gw-…` reasons `conntrack stats`) shows — on
    /// `counted_on`.
    Dropped {
        /// The counter's name.
        reason: String,
        /// The port, `uplink NAME` or `gateway`.
        counted_on: String,
    },
    /// The gateway keeps it (answers it, or holds it for ARP).
    Kept {
        /// How.
        words: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tcp_description_reads_with_ports_and_flags() {
        let spec =
            PacketSpec::parse(&["tcp", "172.30.0.2:40000", ">", "10.1.0.1:80", "syn"]).unwrap();
        assert_eq!(spec.proto, TraceProto::Tcp);
        assert_eq!(
            (spec.src, spec.sport),
            ("172.30.0.2".parse().unwrap(), 40000)
        );
        assert_eq!((spec.dst, spec.dport), ("10.1.0.1".parse().unwrap(), 80));
        assert_eq!(spec.tcp_flags, ["syn"]);
    }

    #[test]
    fn one_string_without_spaces_around_the_arrow_reads_too() {
        let spec = PacketSpec::parse(&["icmp 172.30.0.2>172.30.0.3 df"]).unwrap();
        assert_eq!(spec.proto, TraceProto::Icmp);
        assert!(spec.dont_fragment);
    }

    #[test]
    fn bad_descriptions_say_what_is_wrong_and_show_the_syntax() {
        for (words, part) in [
            ("tcp 172.30.0.2 > 10.1.0.1:80", "needs a port"),
            ("icmp 172.30.0.2 10.1.0.1", "needs a protocol"),
            ("sctp 1.2.3.4 > 1.2.3.5", "unknown protocol 'sctp'"),
            ("icmp 1.2.3 > 1.2.3.5", "not an IPv4 address"),
            ("udp 1.2.3.4:1 > 1.2.3.5:2 syn", "unknown flag 'syn'"),
        ] {
            let e = PacketSpec::parse(&[words]).unwrap_err().to_string();
            assert!(e.contains(part), "{words}: {e}");
            assert!(e.contains("e.g. 'icmp 172.30.0.2 > 172.30.0.3'"), "{e}");
        }
    }
}
