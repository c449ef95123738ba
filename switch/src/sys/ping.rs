//! Unprivileged ICMP echo ("ping") sockets: `socket(AF_INET, SOCK_DGRAM,
//! IPPROTO_ICMP)`, which Linux allows a process whose group is in
//! `net.ipv4.ping_group_range`. The kernel chooses the echo identifier
//! (the socket's port) and fills the ICMP checksum on send.

use std::io;
use std::net::UdpSocket;

use nix::sys::socket::{socket, AddressFamily, SockFlag, SockProtocol, SockType};

/// A non-blocking, close-on-exec ping socket, as a datagram socket (send
/// and receive whole ICMP messages after `connect`). Fails with `EACCES`
/// where `net.ipv4.ping_group_range` leaves yardd's group out.
pub fn ping_socket() -> io::Result<UdpSocket> {
    let fd = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        SockProtocol::Icmp,
    )
    .map_err(io::Error::from)?;
    Ok(UdpSocket::from(fd))
}
