//! The host uplink relay's socket calls that the standard library lacks:
//! unprivileged ICMP echo ("ping") sockets — `socket(AF_INET, SOCK_DGRAM,
//! IPPROTO_ICMP)`, which Linux allows a process whose group is in
//! `net.ipv4.ping_group_range`; the kernel chooses the echo identifier
//! (the socket's port) and fills the ICMP checksum on send — and a TCP
//! socket that resets its connection when closed (`SO_LINGER` 0), the
//! datagrams of a published UDP port's socket bound to every address
//! (`IP_PKTINFO`: which local address a datagram reached, and the same
//! address as the source of the answer) — and the open files limit they
//! count against.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};

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

/// Makes the UDP socket `socket` report the local address each datagram
/// reached ([`recv_to`]).
pub fn report_local_address(socket: &impl AsFd) -> io::Result<()> {
    setsockopt(socket, sockopt::Ipv4PacketInfo, &true).map_err(io::Error::from)
}

/// Room for one `IP_PKTINFO` control message, aligned for `cmsghdr`.
#[repr(C, align(8))]
struct PktinfoSpace([u8; 64]);

/// Receives one datagram from the non-blocking UDP socket `socket` (made
/// with [`report_local_address`]) into `buf`: its length, its sender, and
/// the local address it was sent to (`0.0.0.0` if the kernel did not say).
pub fn recv_to(
    socket: &impl AsRawFd,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddrV4, Ipv4Addr)> {
    // SAFETY: all-zero is a valid sockaddr_in and msghdr (null pointers,
    // zero lengths), filled in below before use.
    let mut from: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut control = PktinfoSpace([0; 64]);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut from as *mut libc::sockaddr_in).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = control.0.len();
    // SAFETY: every pointer in `msg` points at live, writable memory of the
    // length given beside it (`from`, `buf` through `iov`, `control`), all
    // outliving the call; the kernel writes at most those lengths.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let peer = SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(from.sin_addr.s_addr)),
        u16::from_be(from.sin_port),
    );
    let mut local = Ipv4Addr::UNSPECIFIED;
    // SAFETY: `msg` is the header recvmsg filled in; CMSG_FIRSTHDR and
    // CMSG_NXTHDR stay within `msg_control[..msg_controllen]`, and a
    // control message of type IP_PKTINFO carries an in_pktinfo, read
    // unaligned.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::IPPROTO_IP && (*cmsg).cmsg_type == libc::IP_PKTINFO {
                let info: libc::in_pktinfo = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                local = Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr));
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n as usize, peer, local))
}

/// Sends `data` from the UDP socket `socket` to `to` with `from` as its
/// source address (one of the host's: the address the peer's datagram
/// reached), whatever address the socket is bound to.
pub fn send_from(
    socket: &impl AsRawFd,
    data: &[u8],
    from: Ipv4Addr,
    to: SocketAddrV4,
) -> io::Result<usize> {
    let mut dest = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: to.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*to.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let mut control = PktinfoSpace([0; 64]);
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: all-zero is a valid msghdr, filled in below before use.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut dest as *mut libc::sockaddr_in).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !from.is_unspecified() {
        // SAFETY: CMSG_SPACE of an in_pktinfo (32 bytes) fits `control`
        // (64); CMSG_FIRSTHDR of a header whose control buffer is that
        // long is its start, and CMSG_DATA lies within it.
        unsafe {
            let space = libc::CMSG_SPACE(std::mem::size_of::<libc::in_pktinfo>() as u32);
            msg.msg_control = control.0.as_mut_ptr().cast();
            msg.msg_controllen = space as usize;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::IPPROTO_IP;
            (*cmsg).cmsg_type = libc::IP_PKTINFO;
            (*cmsg).cmsg_len =
                libc::CMSG_LEN(std::mem::size_of::<libc::in_pktinfo>() as u32) as usize;
            let info = libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from(from).to_be(),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            };
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast(), info);
        }
    }
    // SAFETY: every pointer in `msg` points at live memory of the length
    // given beside it (`dest`, `data` through `iov`, `control`), all
    // outliving the call; the kernel only reads them.
    let n = unsafe { libc::sendmsg(socket.as_raw_fd(), &msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
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
    fn a_datagram_to_a_wildcard_socket_is_answered_from_the_address_it_reached() {
        let server = UdpSocket::bind("0.0.0.0:0").unwrap();
        report_local_address(&server).unwrap();
        let port = server.local_addr().unwrap().port();
        // 127.0.0.2 is a loopback address too: the answer must come from
        // it, not from the 127.0.0.1 the kernel would pick.
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.connect(("127.0.0.2", port)).unwrap();
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        client.send(b"ping").unwrap();
        let mut buf = [0u8; 16];
        let (n, peer, local) = loop {
            match recv_to(&server, &mut buf) {
                Ok(got) => break got,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(&buf[..n], b"ping");
        assert_eq!(std::net::SocketAddr::V4(peer), client.local_addr().unwrap());
        assert_eq!(local, Ipv4Addr::new(127, 0, 0, 2));
        send_from(&server, b"pong", local, peer).unwrap();
        // A connected socket takes only datagrams from 127.0.0.2:port.
        let n = client.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"pong");
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
