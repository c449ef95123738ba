//! Classifying an IPv4 packet for connection tracking: which flow it belongs
//! to, whether it is a fragment, and its TCP flags.
//!
//! Contract: reads only, through `yard_wire`'s checked views; never
//! allocates, never panics on any input (the property test feeds random
//! bytes). See [`flow_of`]. Bytes that are not a packet give
//! [`FlowError::Wire`]; a well-formed packet the tracker has no flow for
//! (another protocol, an ICMP type it does not follow, an error quoting
//! something untrackable) gives one of the other [`FlowError`] variants.

use std::net::Ipv4Addr;

use crate::flow::{FlowKey, Proto};
use yard_wire::icmp::IcmpPacket;
use yard_wire::ip::protocol;
use yard_wire::ipv4::Ipv4Packet;
use yard_wire::tcp::{TcpFlags, TcpPacket};
use yard_wire::udp::UdpPacket;
use yard_wire::WireError;

/// Why a packet has no flow the connection tracker can follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    /// The bytes are not a well-formed packet (or quote).
    #[error(transparent)]
    Wire(#[from] WireError),
    /// An IP protocol the gateway does not track or translate.
    #[error("IP protocol {0} is not TCP, UDP or ICMP")]
    UntrackedProtocol(u8),
    /// An ICMP message that is neither an echo nor a translated error.
    #[error("ICMP type {icmp_type} code {code} is not tracked")]
    UntrackedIcmp {
        /// ICMP type.
        icmp_type: u8,
        /// ICMP code.
        code: u8,
    },
    /// An ICMP error quotes a packet whose flow cannot be known: a non-first
    /// fragment, or an ICMP message other than an echo.
    #[error("ICMP error quotes {0}")]
    UntrackableQuote(&'static str),
}

/// Fragment identity and position. Fragments of one datagram share
/// `(src, dst, protocol, ident)` (RFC 791).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FragmentInfo {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// IP protocol.
    pub protocol: u8,
    /// IP identification.
    pub ident: u16,
    /// Offset of this fragment's data in the datagram, in bytes.
    pub offset: u16,
    /// More fragments follow.
    pub more: bool,
}

/// What [`flow_of`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketFlow {
    /// A TCP, UDP or ICMP echo packet, whole or a first fragment (its L4
    /// header is present).
    Transport {
        /// The packet's own flow key (ICMP echo: both ports are the
        /// identifier).
        key: FlowKey,
        /// TCP flags; empty for UDP and ICMP.
        tcp_flags: TcpFlags,
        /// `Some` for a first fragment (MF set, offset 0): the caller should
        /// remember `key` for the datagram's later fragments.
        fragment: Option<FragmentInfo>,
    },
    /// An ICMP error (destination unreachable, time exceeded, parameter
    /// problem) about a packet of flow `quoted`.
    IcmpError {
        /// The quoted packet's flow key, as that packet travelled: the
        /// error itself travels the opposite way, so conntrack finds its
        /// connection under `quoted` (the error is about a packet of that
        /// direction), and [`PacketFlow::key`] reports `quoted.reversed()`.
        quoted: FlowKey,
        /// ICMP type (3, 11 or 12).
        icmp_type: u8,
        /// ICMP code.
        code: u8,
        /// `Some` if the error message itself is a first fragment.
        fragment: Option<FragmentInfo>,
    },
    /// A fragment other than the first: no L4 header, so no ports. Look the
    /// datagram up in a fragment cache filled from its first fragment.
    LaterFragment(FragmentInfo),
}

impl PacketFlow {
    /// The key of the direction this packet travels, when known without a
    /// fragment cache: a transport packet's key, an ICMP error's
    /// `quoted.reversed()`, `None` for a later fragment.
    pub fn key(&self) -> Option<FlowKey> {
        match self {
            PacketFlow::Transport { key, .. } => Some(*key),
            PacketFlow::IcmpError { quoted, .. } => Some(quoted.reversed()),
            PacketFlow::LaterFragment(_) => None,
        }
    }

    /// Fragment information, if the packet is a fragment.
    pub fn fragment(&self) -> Option<FragmentInfo> {
        match self {
            PacketFlow::Transport { fragment, .. } | PacketFlow::IcmpError { fragment, .. } => {
                *fragment
            }
            PacketFlow::LaterFragment(f) => Some(*f),
        }
    }

    /// TCP flags (empty unless a TCP packet with its header).
    pub fn tcp_flags(&self) -> TcpFlags {
        match self {
            PacketFlow::Transport { tcp_flags, .. } => *tcp_flags,
            _ => TcpFlags::empty(),
        }
    }
}

fn fragment_info<T: AsRef<[u8]>>(ip: &Ipv4Packet<T>) -> FragmentInfo {
    FragmentInfo {
        src: ip.src(),
        dst: ip.dst(),
        protocol: ip.protocol(),
        ident: ip.ident(),
        offset: ip.frag_offset(),
        more: ip.more_frags(),
    }
}

/// Classifies the IPv4 packet `ip` (starting at the IP header; bytes after
/// the total length are ignored).
///
/// - TCP, UDP and ICMP echo request/reply → [`PacketFlow::Transport`]. A
///   first fragment must hold the whole L4 header (TCP: 20 bytes + options;
///   UDP and ICMP: 8), else [`FlowError::Wire`] ([`WireError::Truncated`]).
/// - ICMP destination unreachable, time exceeded, parameter problem →
///   [`PacketFlow::IcmpError`] with the quoted packet's key. The quote must
///   hold the quoted IP header and 8 bytes of its L4 header, and be a TCP or
///   UDP packet or an ICMP echo; a quoted later fragment is
///   [`FlowError::UntrackableQuote`].
/// - A non-first fragment of any protocol → [`PacketFlow::LaterFragment`].
/// - Other protocols → [`FlowError::UntrackedProtocol`]; other ICMP types →
///   [`FlowError::UntrackedIcmp`].
pub fn flow_of(ip: &[u8]) -> Result<PacketFlow, FlowError> {
    let ip = Ipv4Packet::new_checked(ip)?;
    if ip.is_later_fragment() {
        return Ok(PacketFlow::LaterFragment(fragment_info(&ip)));
    }
    let fragment = ip.more_frags().then(|| fragment_info(&ip));
    let (src, dst) = (ip.src(), ip.dst());
    match ip.protocol() {
        protocol::TCP => {
            let tcp = TcpPacket::new_checked(ip.payload())?;
            Ok(PacketFlow::Transport {
                key: FlowKey {
                    proto: Proto::Tcp,
                    src,
                    sport: tcp.src_port(),
                    dst,
                    dport: tcp.dst_port(),
                },
                tcp_flags: tcp.flags(),
                fragment,
            })
        }
        protocol::UDP => {
            let udp = UdpPacket::new_checked(ip.payload())?;
            Ok(PacketFlow::Transport {
                key: FlowKey {
                    proto: Proto::Udp,
                    src,
                    sport: udp.src_port(),
                    dst,
                    dport: udp.dst_port(),
                },
                tcp_flags: TcpFlags::empty(),
                fragment,
            })
        }
        protocol::ICMP => {
            let icmp = IcmpPacket::new_checked(ip.payload())?;
            if icmp.is_echo() {
                let id = icmp.echo_ident();
                return Ok(PacketFlow::Transport {
                    key: FlowKey {
                        proto: Proto::Icmp,
                        src,
                        sport: id,
                        dst,
                        dport: id,
                    },
                    tcp_flags: TcpFlags::empty(),
                    fragment,
                });
            }
            match icmp.quoted() {
                Some(quote) => Ok(PacketFlow::IcmpError {
                    quoted: quoted_flow(quote)?.0,
                    icmp_type: icmp.msg_type(),
                    code: icmp.code(),
                    fragment,
                }),
                None => Err(FlowError::UntrackedIcmp {
                    icmp_type: icmp.msg_type(),
                    code: icmp.code(),
                }),
            }
        }
        p => Err(FlowError::UntrackedProtocol(p)),
    }
}

/// Bytes of the quoted L4 header an ICMP error must carry (RFC 792).
pub(crate) const QUOTED_L4_LEN: usize = 8;

/// The flow key of the packet an ICMP error quotes, and the quoted IP
/// header's length. Shared with the rewriter so both accept the same quotes.
pub(crate) fn quoted_flow(quote: &[u8]) -> Result<(FlowKey, usize), FlowError> {
    let q = Ipv4Packet::new_quoted(quote)?;
    if q.is_later_fragment() {
        return Err(FlowError::UntrackableQuote("a non-first fragment"));
    }
    let l4 = q.payload();
    if l4.len() < QUOTED_L4_LEN {
        return Err(WireError::Truncated {
            what: "quoted L4 header",
            need: QUOTED_L4_LEN,
            have: l4.len(),
        }
        .into());
    }
    // The 8 quoted bytes hold the ports (or the echo identifier); the views
    // are unchecked because a quote may stop before the rest of the header.
    let (proto, sport, dport) = match q.protocol() {
        protocol::TCP => {
            let tcp = TcpPacket::new_unchecked(l4);
            (Proto::Tcp, tcp.src_port(), tcp.dst_port())
        }
        protocol::UDP => {
            let udp = UdpPacket::new_unchecked(l4);
            (Proto::Udp, udp.src_port(), udp.dst_port())
        }
        protocol::ICMP => {
            let echo = IcmpPacket::new_unchecked(l4);
            if !echo.is_echo() {
                return Err(FlowError::UntrackableQuote(
                    "an ICMP message other than an echo",
                ));
            }
            (Proto::Icmp, echo.echo_ident(), echo.echo_ident())
        }
        p => return Err(FlowError::UntrackedProtocol(p)),
    };
    Ok((
        FlowKey {
            proto,
            src: q.src(),
            sport,
            dst: q.dst(),
            dport,
        },
        q.header_len(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use yard_wire::icmp::{build_icmp_error, IcmpErrorKind};

    const A: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 2);
    const B: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 9);

    fn build(b: etherparse::PacketBuilderStep<etherparse::TcpHeader>, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

    #[test]
    fn tcp_syn() {
        let v = build(
            etherparse::PacketBuilder::ipv4(A.octets(), B.octets(), 64)
                .tcp(40000, 80, 1, 1000)
                .syn(),
            &[],
        );
        let f = flow_of(&v).unwrap();
        assert_eq!(
            f.key(),
            Some(FlowKey {
                proto: Proto::Tcp,
                src: A,
                sport: 40000,
                dst: B,
                dport: 80
            })
        );
        assert!(f.tcp_flags().syn() && !f.tcp_flags().ack());
        assert_eq!(f.fragment(), None);
    }

    #[test]
    fn udp_and_echo() {
        let b = etherparse::PacketBuilder::ipv4(A.octets(), B.octets(), 64).udp(5000, 53);
        let mut v = Vec::new();
        b.write(&mut v, b"q").unwrap();
        let f = flow_of(&v).unwrap();
        assert_eq!(f.key().unwrap().proto, Proto::Udp);
        assert_eq!((f.key().unwrap().sport, f.key().unwrap().dport), (5000, 53));

        let b =
            etherparse::PacketBuilder::ipv4(B.octets(), A.octets(), 64).icmpv4_echo_reply(77, 1);
        let mut v = Vec::new();
        b.write(&mut v, b"ping").unwrap();
        assert_eq!(
            flow_of(&v).unwrap().key(),
            Some(FlowKey {
                proto: Proto::Icmp,
                src: B,
                sport: 77,
                dst: A,
                dport: 77
            })
        );
    }

    #[test]
    fn fragments() {
        let b = etherparse::PacketBuilder::ipv4(A.octets(), B.octets(), 64).udp(5000, 53);
        let mut v = Vec::new();
        b.write(&mut v, &[0; 32]).unwrap();
        let mut ip = Ipv4Packet::new_checked(&mut v[..]).unwrap();
        ip.set_ident(0xbeef);
        ip.set_flags_frag(false, true, 0);
        let f = flow_of(&v).unwrap();
        let frag = f.fragment().unwrap();
        assert!(frag.more && frag.offset == 0 && frag.ident == 0xbeef);
        assert_eq!(f.key().unwrap().dport, 53);

        Ipv4Packet::new_checked(&mut v[..])
            .unwrap()
            .set_flags_frag(false, false, 16);
        let f = flow_of(&v).unwrap();
        assert_eq!(
            f,
            PacketFlow::LaterFragment(FragmentInfo {
                src: A,
                dst: B,
                protocol: 17,
                ident: 0xbeef,
                offset: 16,
                more: false,
            })
        );
        assert_eq!(f.key(), None);
    }

    #[test]
    fn icmp_error_reports_quoted_flow() {
        let b = etherparse::PacketBuilder::ipv4(A.octets(), B.octets(), 1).udp(33000, 33434);
        let mut orig = Vec::new();
        b.write(&mut orig, &[0; 20]).unwrap();
        let mut out = [0u8; 200];
        let router = Ipv4Addr::new(192, 0, 2, 1);
        let n =
            build_icmp_error(&mut out, router, 1, IcmpErrorKind::TimeExceeded(0), &orig).unwrap();
        let quoted = FlowKey {
            proto: Proto::Udp,
            src: A,
            sport: 33000,
            dst: B,
            dport: 33434,
        };
        assert_eq!(
            flow_of(&out[..n]).unwrap(),
            PacketFlow::IcmpError {
                quoted,
                icmp_type: 11,
                code: 0,
                fragment: None
            }
        );
        assert_eq!(flow_of(&out[..n]).unwrap().key(), Some(quoted.reversed()));
        // Quote cut below 8 bytes of L4 header.
        let mut short = out[..20 + 8 + 20 + 4].to_vec();
        Ipv4Packet::new_unchecked(&mut short[..]).set_total_len(52);
        assert!(matches!(
            flow_of(&short),
            Err(FlowError::Wire(WireError::Truncated { .. }))
        ));
    }

    #[test]
    fn untracked() {
        let b = etherparse::PacketBuilder::ipv4(A.octets(), B.octets(), 64).udp(1, 2);
        let mut v = Vec::new();
        b.write(&mut v, &[]).unwrap();
        v[9] = 47;
        assert_eq!(flow_of(&v), Err(FlowError::UntrackedProtocol(47)));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(mut data in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = flow_of(&data);
            // Make the outer header plausible so the deeper parsers get exercised.
            if data.len() >= 20 {
                data[0] = 0x45;
                let len = data.len() as u16;
                data[2..4].copy_from_slice(&len.to_be_bytes());
                data[6] &= 0x20;
                data[7] = 0;
                data[9] = [1, 6, 17][usize::from(data[9]) % 3];
                let _ = flow_of(&data);
            }
        }
    }
}
