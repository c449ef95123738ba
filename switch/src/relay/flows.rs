//! The relay's pure part: what a packet from a container asks of the host
//! ([`parse`]), and the packets that carry the host's answers back
//! ([`build_udp`], [`build_echo_reply`]).
//!
//! Contract: no I/O, no clock, no allocation. Every packet is read with
//! `yard-wire` views checked before use; a packet the relay does not carry
//! is [`Request::Unsupported`]. Built packets are complete IPv4 packets
//! (header and transport checksums filled) written after
//! [`HEADROOM`] bytes of room for the Ethernet header the gateway adds.

use std::net::{Ipv4Addr, SocketAddrV4};

use yard_nat::flow::{FlowKey, Proto};
use yard_wire::ethernet;
use yard_wire::icmp::{self, IcmpPacket};
use yard_wire::ip::protocol;
use yard_wire::ipv4::{self, Ipv4Packet, Ipv4Repr};
use yard_wire::tcp::TcpPacket;
use yard_wire::udp::{self, UdpPacket};

/// Room before a built packet's IPv4 header: the Ethernet header.
pub const HEADROOM: usize = ethernet::HEADER_LEN;
/// Where a UDP payload starts in a built packet's buffer.
pub const UDP_PAYLOAD_AT: usize = HEADROOM + ipv4::HEADER_LEN + udp::HEADER_LEN;
/// Where the ICMP message starts in a built packet's buffer.
pub const ICMP_AT: usize = HEADROOM + ipv4::HEADER_LEN;
/// TTL of the packets the relay builds: the host's answers leave it fresh.
pub const TTL: u8 = 64;

/// What a container's packet asks of the relay.
#[derive(Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// A UDP datagram: send `payload` from the flow's socket.
    Udp {
        /// The flow (the container's tuple).
        key: FlowKey,
        /// The datagram's payload.
        payload: &'a [u8],
    },
    /// An ICMP echo request: send `message` (the ICMP header and data)
    /// from the flow's ping socket.
    Echo {
        /// The flow: the echo identifier as both ports.
        key: FlowKey,
        /// The ICMP message as the container sent it.
        message: &'a [u8],
    },
    /// A TCP segment: for the flow's smoltcp socket (the whole packet).
    Tcp {
        /// The flow (the container's tuple).
        key: FlowKey,
        /// A SYN without ACK: it opens a connection.
        syn: bool,
    },
    /// Nothing the relay carries: a later fragment, another ICMP type, a
    /// malformed packet.
    Unsupported,
}

/// What the IPv4 packet `ip` (from the container, as the gateway passed it
/// on) asks of the relay.
pub fn parse(ip: &[u8]) -> Request<'_> {
    let Ok(packet) = Ipv4Packet::new_checked(ip) else {
        return Request::Unsupported;
    };
    if packet.is_fragment() {
        // The relay sends whole datagrams; fragments are not reassembled.
        return Request::Unsupported;
    }
    let (src, dst) = (packet.src(), packet.dst());
    let end = usize::from(packet.total_len()).min(ip.len());
    let Some(payload) = ip.get(packet.header_len()..end) else {
        return Request::Unsupported;
    };
    match packet.protocol() {
        protocol::UDP => {
            let Ok(u) = UdpPacket::new_checked(payload) else {
                return Request::Unsupported;
            };
            let key = FlowKey {
                proto: Proto::Udp,
                src,
                sport: u.src_port(),
                dst,
                dport: u.dst_port(),
            };
            let data_end = usize::from(u.length()).min(payload.len());
            Request::Udp {
                key,
                payload: &payload[udp::HEADER_LEN..data_end],
            }
        }
        protocol::TCP => {
            let Ok(t) = TcpPacket::new_checked(payload) else {
                return Request::Unsupported;
            };
            let flags = t.flags();
            let key = FlowKey {
                proto: Proto::Tcp,
                src,
                sport: t.src_port(),
                dst,
                dport: t.dst_port(),
            };
            Request::Tcp {
                key,
                syn: flags.syn() && !flags.ack(),
            }
        }
        protocol::ICMP => {
            let Ok(m) = IcmpPacket::new_checked(payload) else {
                return Request::Unsupported;
            };
            if m.msg_type() != icmp::ECHO_REQUEST {
                return Request::Unsupported;
            }
            let ident = m.echo_ident();
            let key = FlowKey {
                proto: Proto::Icmp,
                src,
                sport: ident,
                dst,
                dport: ident,
            };
            Request::Echo {
                key,
                message: payload,
            }
        }
        _ => Request::Unsupported,
    }
}

/// Writes the IPv4 and UDP headers of a datagram from `from` to `to`
/// whose `len` payload bytes are in `buf` at [`UDP_PAYLOAD_AT`]. Returns
/// the length of `buf` in use, or `None` when it does not fit.
pub fn build_udp(
    buf: &mut [u8],
    from: SocketAddrV4,
    to: SocketAddrV4,
    len: usize,
) -> Option<usize> {
    let end = UDP_PAYLOAD_AT.checked_add(len)?;
    let udp_len = u16::try_from(udp::HEADER_LEN + len).ok()?;
    let ip = buf.get_mut(HEADROOM..end)?;
    write_ip(ip, *from.ip(), *to.ip(), protocol::UDP)?;
    let mut u = UdpPacket::new_unchecked(&mut ip[ipv4::HEADER_LEN..]);
    u.set_src_port(from.port());
    u.set_dst_port(to.port());
    u.set_length(udp_len);
    u.fill_checksum(*from.ip(), *to.ip());
    Some(end)
}

/// Makes the ICMP echo reply of `len` bytes in `buf` at [`ICMP_AT`] (as a
/// ping socket returned it, with the identifier the kernel chose) a packet
/// from `from` to the container `to`, with the container's identifier
/// `ident` back. Returns the length of `buf` in use, or `None` when the
/// message is not an echo reply or does not fit.
pub fn build_echo_reply(
    buf: &mut [u8],
    from: Ipv4Addr,
    to: Ipv4Addr,
    ident: u16,
    len: usize,
) -> Option<usize> {
    let end = ICMP_AT.checked_add(len)?;
    let ip = buf.get_mut(HEADROOM..end)?;
    {
        let mut m = IcmpPacket::new_checked(&mut ip[ipv4::HEADER_LEN..]).ok()?;
        if m.msg_type() != icmp::ECHO_REPLY {
            return None;
        }
        m.set_echo_ident(ident);
        m.fill_checksum();
    }
    write_ip(ip, from, to, protocol::ICMP)?;
    Some(end)
}

/// Writes into `buf` (after [`HEADROOM`]) the ICMP port unreachable the
/// destination of UDP flow `key` sent the host (the host socket read
/// `ECONNREFUSED`), as the container is to hear it: from the destination,
/// quoting a datagram of the flow. Returns the length of `buf` in use.
pub fn build_port_unreachable(buf: &mut [u8], key: &FlowKey) -> Option<usize> {
    // The quoted datagram's headers (its payload is gone with it).
    let mut quoted = [0u8; UDP_PAYLOAD_AT];
    let from = SocketAddrV4::new(key.src, key.sport);
    let to = SocketAddrV4::new(key.dst, key.dport);
    let end = build_udp(&mut quoted, from, to, 0)?;
    let kind = icmp::IcmpErrorKind::DestUnreachable(icmp::CODE_PORT_UNREACHABLE);
    let out = buf.get_mut(HEADROOM..)?;
    let n = icmp::build_icmp_error(out, key.dst, 0, kind, &quoted[HEADROOM..end]).ok()?;
    Some(HEADROOM + n)
}

/// Writes the IPv4 header of the packet `ip` (header and payload).
fn write_ip(ip: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr, protocol: u8) -> Option<()> {
    let repr = Ipv4Repr {
        src,
        dst,
        protocol,
        payload_len: ip.len().checked_sub(ipv4::HEADER_LEN)?,
        ttl: TTL,
        ident: 0,
        dont_frag: true,
        tos: 0,
    };
    repr.emit(&mut Ipv4Packet::new_unchecked(ip)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    const C: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 2);
    const S: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

    fn ip_udp(payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ipv4(C.octets(), S.octets(), 63)
            .udp(40000, 53)
            .write(&mut v, payload)
            .unwrap();
        v
    }

    #[test]
    fn a_udp_datagram_is_its_flow_and_payload() {
        let p = ip_udp(b"query");
        assert_eq!(
            parse(&p),
            Request::Udp {
                key: FlowKey {
                    proto: Proto::Udp,
                    src: C,
                    sport: 40000,
                    dst: S,
                    dport: 53
                },
                payload: b"query"
            }
        );
    }

    #[test]
    fn an_echo_request_is_its_flow_and_message() {
        let mut v = Vec::new();
        PacketBuilder::ipv4(C.octets(), S.octets(), 63)
            .icmpv4_echo_request(0x1234, 9)
            .write(&mut v, b"abc")
            .unwrap();
        let Request::Echo { key, message } = parse(&v) else {
            panic!("not an echo: {:?}", parse(&v));
        };
        assert_eq!(
            (key.proto, key.sport, key.dport),
            (Proto::Icmp, 0x1234, 0x1234)
        );
        assert_eq!(message.len(), icmp::HEADER_LEN + 3);
    }

    #[test]
    fn a_tcp_segment_is_its_flow_and_whether_it_opens_one() {
        let segment = |syn: bool, ack: bool| {
            let mut v = Vec::new();
            let b = PacketBuilder::ipv4(C.octets(), S.octets(), 63).tcp(40000, 80, 1, 1000);
            let b = if syn { b.syn() } else { b };
            let b = if ack { b.ack(5) } else { b };
            b.write(&mut v, b"").unwrap();
            v
        };
        let key = FlowKey {
            proto: Proto::Tcp,
            src: C,
            sport: 40000,
            dst: S,
            dport: 80,
        };
        assert_eq!(
            parse(&segment(true, false)),
            Request::Tcp { key, syn: true }
        );
        assert_eq!(
            parse(&segment(true, true)),
            Request::Tcp { key, syn: false }
        );
        assert_eq!(
            parse(&segment(false, true)),
            Request::Tcp { key, syn: false }
        );
    }

    #[test]
    fn what_the_relay_does_not_carry_is_unsupported() {
        let mut reply = Vec::new();
        PacketBuilder::ipv4(C.octets(), S.octets(), 63)
            .icmpv4_echo_reply(1, 1)
            .write(&mut reply, b"")
            .unwrap();
        let mut fragment = ip_udp(b"query");
        fragment[6] = 0x20; // more fragments
        for p in [&reply[..], &fragment[..], &[0x45, 0][..]] {
            assert_eq!(parse(p), Request::Unsupported);
        }
    }

    #[test]
    fn a_built_udp_reply_equals_a_fresh_build() {
        let mut buf = vec![0u8; 2048];
        buf[UDP_PAYLOAD_AT..UDP_PAYLOAD_AT + 4].copy_from_slice(b"pong");
        let from = SocketAddrV4::new(S, 53);
        let to = SocketAddrV4::new(C, 40000);
        let end = build_udp(&mut buf, from, to, 4).unwrap();
        let mut expected = Vec::new();
        PacketBuilder::ipv4(S.octets(), C.octets(), TTL)
            .udp(53, 40000)
            .write(&mut expected, b"pong")
            .unwrap();
        // etherparse sets DF and ident 0 as well.
        assert_eq!(&buf[HEADROOM..end], &expected[..]);
        assert_eq!(build_udp(&mut buf, from, to, 4000), None);
    }

    #[test]
    fn a_refused_datagram_becomes_a_port_unreachable_from_its_destination() {
        let key = FlowKey {
            proto: Proto::Udp,
            src: C,
            sport: 40000,
            dst: S,
            dport: 53,
        };
        let mut buf = vec![0u8; 256];
        let end = build_port_unreachable(&mut buf, &key).unwrap();
        let ip = Ipv4Packet::new_checked(&buf[HEADROOM..end]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!((ip.src(), ip.dst(), ip.protocol()), (S, C, protocol::ICMP));
        let m = IcmpPacket::new_checked(ip.payload()).unwrap();
        assert!(m.verify_checksum());
        assert_eq!((m.msg_type(), m.code()), (icmp::DEST_UNREACHABLE, 3));
        let quote = Ipv4Packet::new_quoted(m.data()).unwrap();
        assert_eq!((quote.src(), quote.dst()), (C, S));
        let u = UdpPacket::new_checked(quote.payload()).unwrap();
        assert_eq!((u.src_port(), u.dst_port()), (40000, 53));
    }

    #[test]
    fn an_echo_reply_gets_the_containers_identifier_back() {
        let mut reply = Vec::new();
        PacketBuilder::ipv4(S.octets(), C.octets(), 50)
            .icmpv4_echo_reply(0x9999, 9)
            .write(&mut reply, b"abc")
            .unwrap();
        let message = &reply[ipv4::HEADER_LEN..];
        let mut buf = vec![0u8; 256];
        buf[ICMP_AT..ICMP_AT + message.len()].copy_from_slice(message);
        let end = build_echo_reply(&mut buf, S, C, 0x1234, message.len()).unwrap();
        let mut expected = Vec::new();
        PacketBuilder::ipv4(S.octets(), C.octets(), TTL)
            .icmpv4_echo_reply(0x1234, 9)
            .write(&mut expected, b"abc")
            .unwrap();
        assert_eq!(&buf[HEADROOM..end], &expected[..]);
    }
}
