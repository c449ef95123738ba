//! The host uplink relay's socket calls that the standard library lacks:
//! unprivileged ICMP echo ("ping") sockets — `socket(AF_INET, SOCK_DGRAM,
//! IPPROTO_ICMP)`, which Linux allows a process whose group is in
//! `net.ipv4.ping_group_range`; the kernel chooses the echo identifier
//! (the socket's port) and fills the ICMP checksum on send — and a TCP
//! socket that resets its connection when closed (`SO_LINGER` 0) — and the
//! open files limit they count against.

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

/// Raises the soft limit on open files to the hard one, so the relay's
/// host sockets (one per relayed flow) are not cut at the usual soft limit
/// of 1024 while the hard one allows more. Returns the limit now in force.
pub fn raise_open_files_limit() -> io::Result<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(io::Error::from)?;
    }
    Ok(hard.max(soft))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::resource::{getrlimit, setrlimit, Resource};

    #[test]
    fn the_soft_open_files_limit_is_raised_to_the_hard_one() {
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        let lower = hard.min(1024).saturating_sub(1).max(64);
        setrlimit(Resource::RLIMIT_NOFILE, lower, hard).unwrap();
        assert_eq!(raise_open_files_limit().unwrap(), hard);
        assert_eq!(getrlimit(Resource::RLIMIT_NOFILE).unwrap(), (hard, hard));
    }

    #[test]
    fn a_ping_socket_is_a_datagram_socket_or_refused_with_eacces() {
        // Whether it opens depends on net.ipv4.ping_group_range here.
        match ping_socket() {
            Ok(s) => assert!(s.local_addr().is_ok()),
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EACCES), "{e}"),
        }
    }
}
