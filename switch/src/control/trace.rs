//! `trace` requests, the control plane's part: the frame to trace — built
//! from a packet description with `yard-wire`'s views, or decoded from the
//! hex of a captured frame — and the reply built from the datapath's
//! [`Trace`]. Which MACs a description gets by default is the server's
//! business (it knows the ports); this module only builds bytes.

use std::net::Ipv4Addr;

use yard_ctl::api::{PacketSpec, TraceOutcome, TraceProto, TraceReport, TraceStep, SPEC_SYNTAX};
use yard_ctl::MacAddr;
use yard_wire::arp::ArpFrame;
use yard_wire::ethernet::{self, ethertype};
use yard_wire::icmp::{self, IcmpPacket};
use yard_wire::ip::protocol;
use yard_wire::ipv4::{self, Ipv4Packet, Ipv4Repr};
use yard_wire::tcp::{TcpFlags, TcpPacket};
use yard_wire::udp::{self, UdpPacket};

use crate::dataplane::trace::{Outcome, Trace};

/// TCP header length of a traced segment (no options).
const TCP_HEADER_LEN: usize = 20;
/// The shortest Ethernet frame (without FCS): shorter frames are padded.
const MIN_FRAME: usize = 60;

/// Why a trace request's frame could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceFrameError {
    /// A `--pcap` frame's hex does not decode.
    #[error("the frame to trace is not hex: {0}")]
    BadHex(&'static str),
    /// `--size` too small for the headers.
    #[error("--size {size} is smaller than the {need} bytes of the packet's headers: give at least {need}")]
    TooSmall {
        /// The size given.
        size: u16,
        /// The headers' length.
        need: usize,
    },
    /// A MAC the description left out that yardd cannot tell either.
    #[error("trace: {0}")]
    NoMac(String),
    /// The description is not one yardd can build.
    #[error("cannot build the packet: {0}; write {SPEC_SYNTAX}")]
    Unbuildable(String),
}

/// The bytes of `hex`, two digits each.
pub fn decode_hex(hex: &str) -> Result<Vec<u8>, TraceFrameError> {
    if hex.len() % 2 != 0 {
        return Err(TraceFrameError::BadHex("an odd number of digits"));
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|d| u8::from_str_radix(d, 16).ok())
                .ok_or(TraceFrameError::BadHex(
                    "a character that is not a hex digit",
                ))
        })
        .collect()
}

/// The Ethernet frame `spec` describes, from `src_mac` to `dst_mac`.
pub fn build_frame(
    spec: &PacketSpec,
    src_mac: MacAddr,
    dst_mac: MacAddr,
) -> Result<Vec<u8>, TraceFrameError> {
    let mut frame = match spec.proto {
        TraceProto::Arp => {
            let mut f = vec![0u8; MIN_FRAME];
            let request = ArpFrame {
                eth_dst: dst_mac.0,
                ..ArpFrame::request(src_mac.0, spec.src, spec.dst)
            };
            request
                .emit(&mut f)
                .map_err(|e| TraceFrameError::Unbuildable(e.to_string()))?;
            f
        }
        _ => ipv4_frame(spec, src_mac, dst_mac)?,
    };
    if let Some(vid) = spec.vlan {
        let tag = [0x81, 0x00, (vid >> 8) as u8, vid as u8];
        frame.splice(12..12, tag);
    }
    if frame.len() < MIN_FRAME {
        frame.resize(MIN_FRAME, 0);
    }
    Ok(frame)
}

fn ipv4_frame(
    spec: &PacketSpec,
    src_mac: MacAddr,
    dst_mac: MacAddr,
) -> Result<Vec<u8>, TraceFrameError> {
    let (proto, l4_header) = match spec.proto {
        TraceProto::Tcp => (protocol::TCP, TCP_HEADER_LEN),
        TraceProto::Udp => (protocol::UDP, udp::HEADER_LEN),
        _ => (protocol::ICMP, icmp::HEADER_LEN),
    };
    let need = ipv4::HEADER_LEN + l4_header;
    let total = match spec.size {
        Some(size) if usize::from(size) < need => {
            return Err(TraceFrameError::TooSmall { size, need })
        }
        Some(size) => usize::from(size),
        None => need,
    };
    let mut frame = vec![0u8; ethernet::HEADER_LEN + total];
    frame[0..6].copy_from_slice(&dst_mac.0);
    frame[6..12].copy_from_slice(&src_mac.0);
    frame[12..14].copy_from_slice(&ethertype::IPV4.to_be_bytes());
    let repr = Ipv4Repr {
        src: spec.src,
        dst: spec.dst,
        protocol: proto,
        payload_len: total - ipv4::HEADER_LEN,
        ttl: 64,
        ident: 1,
        dont_frag: spec.dont_fragment,
        tos: 0,
    };
    let mut ip = Ipv4Packet::new_unchecked(&mut frame[ethernet::HEADER_LEN..]);
    repr.emit(&mut ip)
        .map_err(|e| TraceFrameError::Unbuildable(e.to_string()))?;
    let (src, dst) = (spec.src, spec.dst);
    let l4 = ip.payload_mut();
    match spec.proto {
        TraceProto::Tcp => {
            let mut tcp = TcpPacket::new_unchecked(&mut *l4);
            tcp.set_src_port(spec.sport);
            tcp.set_dst_port(spec.dport);
            tcp.set_seq(1);
            tcp.set_ack(if spec.tcp_flags.iter().any(|f| f == "ack") {
                1
            } else {
                0
            });
            tcp.set_flags(tcp_flags(&spec.tcp_flags));
            tcp.set_data_offset(5);
            tcp.set_window(64_240);
            tcp.fill_checksum(src, dst);
        }
        TraceProto::Udp => {
            let len = l4.len() as u16;
            let mut udp = UdpPacket::new_unchecked(&mut *l4);
            udp.set_src_port(spec.sport);
            udp.set_dst_port(spec.dport);
            udp.set_length(len);
            udp.fill_checksum(src, dst);
        }
        _ => {
            let mut echo = IcmpPacket::new_unchecked(&mut *l4);
            echo.set_msg_type(icmp::ECHO_REQUEST);
            echo.set_code(0);
            echo.set_echo_ident(0x7472);
            echo.set_echo_seq(1);
            echo.fill_checksum();
        }
    }
    Ok(frame)
}

/// The TCP flags named (none: SYN).
fn tcp_flags(names: &[String]) -> TcpFlags {
    let mut flags = TcpFlags::empty();
    for name in names {
        let bit = match name.as_str() {
            "syn" => TcpFlags::SYN,
            "ack" => TcpFlags::ACK,
            "fin" => TcpFlags::FIN,
            "rst" => TcpFlags::RST,
            _ => TcpFlags::PSH,
        };
        flags = TcpFlags(flags.0 | bit.0);
    }
    if names.is_empty() {
        TcpFlags::SYN
    } else {
        flags
    }
}

/// The reply to a trace.
pub fn report(trace: Trace) -> TraceReport {
    TraceReport {
        steps: trace
            .steps
            .into_iter()
            .map(|s| TraceStep {
                stage: s.stage.as_str().to_string(),
                words: s.words,
            })
            .collect(),
        outcome: match trace.outcome {
            Outcome::Leaves(ports) => TraceOutcome::Leaves { ports },
            Outcome::Dropped { reason, counted_on } => TraceOutcome::Dropped {
                reason: reason.to_string(),
                counted_on,
            },
            Outcome::Kept(words) => TraceOutcome::Kept { words },
            Outcome::Undecided => TraceOutcome::Kept {
                words: "no decision was recorded".into(),
            },
        },
    }
}

/// Whether `addr` is `cidr`'s own address: the port holding a traced
/// packet's destination.
pub fn holds(cidr: Option<yard_ctl::Ipv4Cidr>, addr: Ipv4Addr) -> bool {
    cidr.is_some_and(|c| c.addr == addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(words: &str) -> PacketSpec {
        PacketSpec::parse(&[words]).unwrap()
    }

    const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

    #[test]
    fn a_described_tcp_syn_is_a_well_formed_frame_of_the_asked_size() {
        let mut s = spec("tcp 10.0.0.2:40000 > 10.0.0.3:80 syn df");
        s.size = Some(100);
        let f = build_frame(&s, A, B).unwrap();
        assert_eq!(f.len(), 14 + 100);
        assert_eq!((&f[0..6], &f[6..12]), (&B.0[..], &A.0[..]));
        let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
        assert!(ip.verify_checksum() && ip.dont_frag());
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!((tcp.src_port(), tcp.dst_port()), (40000, 80));
        assert_eq!(tcp.flags(), TcpFlags::SYN);
        assert_eq!(tcp.header_len(), 20);
        assert!(tcp.verify_checksum(ip.src(), ip.dst()));
    }

    #[test]
    fn echo_udp_arp_and_a_vlan_tag() {
        let f = build_frame(&spec("icmp 10.0.0.2 > 10.0.0.3"), A, B).unwrap();
        assert_eq!(f.len(), 60, "padded to the shortest frame");
        let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
        let echo = IcmpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(echo.msg_type(), icmp::ECHO_REQUEST);
        assert!(echo.verify_checksum());

        let f = build_frame(&spec("udp 10.0.0.2:5000 > 10.0.0.3:53"), A, B).unwrap();
        let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
        let udp = UdpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(
            (udp.src_port(), udp.dst_port(), udp.length()),
            (5000, 53, 8)
        );

        let f = build_frame(&spec("arp 10.0.0.2 > 10.0.0.1"), A, MacAddr::BROADCAST).unwrap();
        let arp = yard_wire::arp::ArpPacket::new_checked(&f[14..]).unwrap();
        assert_eq!(arp.target_proto(), Ipv4Addr::new(10, 0, 0, 1));

        let mut s = spec("icmp 10.0.0.2 > 10.0.0.3");
        s.vlan = Some(5);
        let f = build_frame(&s, A, B).unwrap();
        assert_eq!(&f[12..16], &[0x81, 0x00, 0x00, 0x05]);
    }

    #[test]
    fn a_size_below_the_headers_and_bad_hex_are_refused() {
        let mut s = spec("tcp 10.0.0.2:1 > 10.0.0.3:2");
        s.size = Some(30);
        assert_eq!(
            build_frame(&s, A, B),
            Err(TraceFrameError::TooSmall { size: 30, need: 40 })
        );
        assert_eq!(
            decode_hex("abc").unwrap_err().to_string(),
            "the frame to trace is not hex: an odd number of digits"
        );
        assert!(decode_hex("zz").is_err());
        assert_eq!(decode_hex("00ff").unwrap(), [0, 255]);
    }
}
