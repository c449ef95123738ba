//! Sockets for tunnel ports: a raw IPv4 socket for GRE (protocol 47) and the
//! socket options a tunnel needs, plus the path MTU toward a remote host.
//!
//! Contract: sockets are non-blocking and close-on-exec, in the current
//! thread's namespace. The raw socket lets the kernel write the outer IPv4
//! header (no `IP_HDRINCL`), so the host stack fragments an oversized outer
//! packet instead of refusing it; both kinds of socket are set to
//! `IP_PMTUDISC_DONT` for the same reason (a tunnel carries non-DF inner
//! packets larger than its overlay MTU; DF ones never reach the socket).

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::last_error;

/// IP protocol number of GRE.
const IPPROTO_GRE: libc::c_int = 47;

fn set_int_opt(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
    what: &str,
) -> io::Result<()> {
    // SAFETY: `value` is a live c_int and we pass its exact size; the kernel
    // only reads it during the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            &value as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(last_error(what.to_string()));
    }
    Ok(())
}

/// Lets the host stack fragment outer packets (no DF on them).
pub fn allow_fragmentation(fd: BorrowedFd<'_>) -> io::Result<()> {
    set_int_opt(
        fd,
        libc::IPPROTO_IP,
        libc::IP_MTU_DISCOVER,
        libc::IP_PMTUDISC_DONT,
        "IP_MTU_DISCOVER",
    )
}

/// A raw IPv4 socket for GRE, bound to `local` when given. Needs
/// CAP_NET_RAW.
pub fn open_gre_socket(local: Option<Ipv4Addr>) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the result is checked below.
    let raw = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            IPPROTO_GRE,
        )
    };
    if raw < 0 {
        return Err(last_error("raw GRE socket (needs CAP_NET_RAW)".to_string()));
    }
    // SAFETY: `raw` is a fresh descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    allow_fragmentation(fd.as_fd_borrowed())?;
    let _ = set_int_opt(
        fd.as_fd_borrowed(),
        libc::SOL_SOCKET,
        libc::SO_RCVBUFFORCE,
        4 << 20,
        "SO_RCVBUFFORCE",
    );
    let _ = set_int_opt(
        fd.as_fd_borrowed(),
        libc::SOL_SOCKET,
        libc::SO_SNDBUFFORCE,
        4 << 20,
        "SO_SNDBUFFORCE",
    );
    if let Some(addr) = local {
        let sa = sockaddr_in(SocketAddrV4::new(addr, 0));
        // SAFETY: `sa` is a valid sockaddr_in that lives for the call, and we
        // pass its exact size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &sa as *const libc::sockaddr_in as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(last_error(format!("bind raw GRE socket to {addr}")));
        }
    }
    Ok(fd)
}

pub(super) fn sockaddr_in(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(addr.ip().octets()),
        },
        sin_zero: [0; 8],
    }
}

/// Sends `buf` (a GRE header and its payload) to `remote` on the raw socket.
pub fn send_gre(fd: BorrowedFd<'_>, buf: &[u8], remote: Ipv4Addr) -> io::Result<usize> {
    let sa = sockaddr_in(SocketAddrV4::new(remote, 0));
    // SAFETY: `buf` and `sa` are valid for the whole call and their exact
    // lengths are passed.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            buf.as_ptr() as *const libc::c_void,
            buf.len(),
            libc::MSG_DONTWAIT,
            &sa as *const libc::sockaddr_in as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// A GRE-in-UDP socket bound to `local`, non-blocking, fragmenting.
pub fn open_udp_tunnel_socket(local: SocketAddrV4) -> io::Result<UdpSocket> {
    let socket = UdpSocket::bind(local)?;
    socket.set_nonblocking(true)?;
    allow_fragmentation(socket.as_fd_borrowed())?;
    let _ = set_int_opt(
        socket.as_fd_borrowed(),
        libc::SOL_SOCKET,
        libc::SO_RCVBUFFORCE,
        4 << 20,
        "SO_RCVBUFFORCE",
    );
    let _ = set_int_opt(
        socket.as_fd_borrowed(),
        libc::SOL_SOCKET,
        libc::SO_SNDBUFFORCE,
        4 << 20,
        "SO_SNDBUFFORCE",
    );
    Ok(socket)
}

/// The MTU of the route toward `remote` (what the host stack would use for
/// an unfragmented packet), from a connected UDP socket's `IP_MTU`.
pub fn path_mtu(remote: Ipv4Addr) -> io::Result<u32> {
    let probe = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    probe.connect((remote, 9))?;
    let mut mtu: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `mtu` and `len` are live for the call; the kernel writes at most
    // `len` bytes into `mtu` and updates `len`.
    let rc = unsafe {
        libc::getsockopt(
            probe.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU,
            &mut mtu as *mut libc::c_int as *mut libc::c_void,
            &mut len,
        )
    };
    if rc < 0 {
        return Err(last_error(format!("IP_MTU toward {remote}")));
    }
    Ok(mtu as u32)
}

/// Borrowing helper for the fd types used here.
trait AsFdBorrowed {
    fn as_fd_borrowed(&self) -> BorrowedFd<'_>;
}

impl<T: std::os::fd::AsFd> AsFdBorrowed for T {
    fn as_fd_borrowed(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_mtu_of_loopback_is_its_mtu_capped_at_the_ip_maximum() {
        // Loopback exists in every namespace; its MTU (65536) exceeds what an
        // IPv4 packet can be, and IP_MTU reports the 65535 an IP packet can use.
        assert_eq!(path_mtu(Ipv4Addr::LOCALHOST).unwrap(), 65535);
    }
}
