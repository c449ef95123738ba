//! Published ports on the host uplink: the host sockets that listen for
//! them, bound by the control plane ([`bind`], so a port in use is refused
//! at `publish add`) and served by the relay on the home datapath thread
//! ([`Listeners`]).
//!
//! Contract. A rule's sockets are one TCP listener or one UDP socket per
//! host port, bound to its host address (every address when it has none),
//! non-blocking. A TCP connection accepted on one becomes a relayed
//! connection that the relay opens towards the container from the client's
//! own address and port, to the address and port the client reached
//! ([`super::tcp::TcpRelay::accepted`]): the gateway's publish rule
//! translates it to the container, so the container sees the real client.
//! A UDP datagram becomes a packet from its sender to the local address it
//! reached (`IP_PKTINFO`); a container's answer — a packet from that
//! address and port, which [`Listeners::udp_socket_for`] recognises — is
//! sent from the same socket with that source address. The sockets close
//! when the rule goes, when the host uplink goes, or when yardd stops.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use mio::net::{TcpListener, UdpSocket};
use mio::{Interest, Registry, Token};
use yard_nat::conntrack::RuleId;
use yard_nat::flow::Proto;

use crate::sys;

/// A published rule's host sockets, bound and not yet served.
#[derive(Debug)]
pub struct HostSockets {
    /// The rule they belong to.
    pub rule: RuleId,
    /// One per host port.
    sockets: Vec<Bound>,
}

#[derive(Debug)]
enum Bound {
    Tcp(std::net::TcpListener),
    Udp(std::net::UdpSocket, SocketAddrV4),
}

/// Why a published port's host socket could not be made.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on the host's {proto} port {addr}: {source}{hint}")]
pub struct BindError {
    /// `tcp` or `udp`.
    pub proto: &'static str,
    /// The address and port.
    pub addr: SocketAddrV4,
    /// What the kernel said.
    #[source]
    pub source: io::Error,
    hint: &'static str,
}

/// Binds the host sockets of rule `rule`: `proto` on `addr` (every address
/// when `None`) for each port of `ports`. All or none.
pub fn bind(
    rule: RuleId,
    proto: Proto,
    addr: Option<Ipv4Addr>,
    ports: (u16, u16),
) -> Result<HostSockets, BindError> {
    let ip = addr.unwrap_or(Ipv4Addr::UNSPECIFIED);
    let mut sockets = Vec::new();
    for port in ports.0..=ports.1 {
        let at = SocketAddrV4::new(ip, port);
        let bound = match proto {
            Proto::Tcp => std::net::TcpListener::bind(at)
                .and_then(|l| l.set_nonblocking(true).map(|()| Bound::Tcp(l))),
            _ => std::net::UdpSocket::bind(at).and_then(|s| {
                s.set_nonblocking(true)?;
                sys::report_local_address(&s)?;
                Ok(Bound::Udp(s, at))
            }),
        };
        match bound {
            Ok(b) => sockets.push(b),
            Err(source) => {
                return Err(BindError {
                    proto: proto.as_str(),
                    addr: at,
                    hint: hint(&source),
                    source,
                })
            }
        }
    }
    Ok(HostSockets { rule, sockets })
}

/// What a user can do about a failed bind.
fn hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EADDRINUSE) => {
            " (another program listens on it: stop it or publish another host port)"
        }
        Some(libc::EACCES) => {
            " (a port below net.ipv4.ip_unprivileged_port_start needs \
             CAP_NET_BIND_SERVICE: run yardd as root or publish a port at or above it, \
             e.g. 8080)"
        }
        Some(libc::EADDRNOTAVAIL) => {
            " (no interface of the host has that address: give one of its addresses, or none)"
        }
        _ => "",
    }
}

/// A listening socket the relay serves.
enum Listener {
    Tcp(TcpListener),
    Udp(UdpSocket, SocketAddrV4),
}

/// What a listening socket that became readable has for the relay.
pub enum Ready<'a> {
    /// A TCP listener: accept from it.
    Tcp(&'a TcpListener),
    /// A UDP socket and the port it is bound to: read datagrams from it.
    Udp(&'a UdpSocket, u16),
}

/// The relay's listening sockets, by token and by rule.
#[derive(Default)]
pub struct Listeners {
    by_token: HashMap<Token, (RuleId, Listener)>,
}

impl Listeners {
    /// Serves `sockets`, each registered with a token from `token`.
    pub fn add(
        &mut self,
        registry: &Registry,
        sockets: HostSockets,
        token: &mut dyn FnMut() -> Token,
    ) -> io::Result<()> {
        for bound in sockets.sockets {
            let t = token();
            let mut listener = match bound {
                Bound::Tcp(l) => Listener::Tcp(TcpListener::from_std(l)),
                Bound::Udp(s, at) => Listener::Udp(UdpSocket::from_std(s), at),
            };
            match &mut listener {
                Listener::Tcp(l) => registry.register(l, t, Interest::READABLE)?,
                Listener::Udp(s, _) => registry.register(s, t, Interest::READABLE)?,
            }
            self.by_token.insert(t, (sockets.rule, listener));
        }
        Ok(())
    }

    /// Closes rule `rule`'s sockets.
    pub fn remove(&mut self, registry: &Registry, rule: RuleId) {
        self.by_token.retain(|_, (r, listener)| {
            if *r != rule {
                return true;
            }
            let _ = match listener {
                Listener::Tcp(l) => registry.deregister(l),
                Listener::Udp(s, _) => registry.deregister(s),
            };
            false
        });
    }

    /// Closes every socket (the host uplink went).
    pub fn clear(&mut self, registry: &Registry) {
        let rules: Vec<RuleId> = self.by_token.values().map(|(r, _)| *r).collect();
        for rule in rules {
            self.remove(registry, rule);
        }
    }

    /// The listening socket `token`, if it is one.
    pub fn ready(&self, token: Token) -> Option<Ready<'_>> {
        self.by_token.get(&token).map(|(_, l)| match l {
            Listener::Tcp(l) => Ready::Tcp(l),
            Listener::Udp(s, at) => Ready::Udp(s, at.port()),
        })
    }

    /// The published UDP socket a container's answer from `from` leaves
    /// by: the one bound to that port on that address or on every address.
    pub fn udp_socket_for(&self, from: SocketAddrV4) -> Option<&UdpSocket> {
        self.by_token.values().find_map(|(_, l)| match l {
            Listener::Udp(s, at)
                if at.port() == from.port()
                    && (at.ip().is_unspecified() || at.ip() == from.ip()) =>
            {
                Some(s)
            }
            _ => None,
        })
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.by_token.is_empty()
    }
}

/// The local and peer address of a connection `accept` gave with its
/// peer's address `peer`, IPv4 only.
pub fn ends(
    stream: &mio::net::TcpStream,
    peer: SocketAddr,
) -> Option<(SocketAddrV4, SocketAddrV4)> {
    match (stream.local_addr().ok()?, peer) {
        (SocketAddr::V4(local), SocketAddr::V4(peer)) => Some((local, peer)),
        _ => None,
    }
}
