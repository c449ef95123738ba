//! The host uplink relay's socket calls that the standard library lacks:
//! unprivileged ICMP echo ("ping") sockets — `socket(AF_INET, SOCK_DGRAM,
//! IPPROTO_ICMP)`, which Linux allows a process whose group is in
//! `net.ipv4.ping_group_range`; the kernel chooses the echo identifier
//! (the socket's port) and fills the ICMP checksum on send — and a TCP
//! socket that resets its connection when closed (`SO_LINGER` 0).

use std::io;
use std::net::UdpSocket;
use std::os::fd::AsFd;

use nix::sys::socket::{
    setsockopt, socket, sockopt, AddressFamily, SockFlag, SockProtocol, SockType,
};

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

/// Makes closing `socket` (a TCP socket) reset its connection (RST) instead
/// of ending it with FIN: `SO_LINGER` on with a zero timeout.
pub fn reset_on_close(socket: &impl AsFd) -> io::Result<()> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    setsockopt(socket, sockopt::Linger, &linger).map_err(io::Error::from)
}
