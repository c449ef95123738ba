//! Interface queries by name in the current thread's network namespace: index,
//! MTU and MAC, through `ioctl`s on a throwaway datagram socket.
//!
//! Contract: read-only; the socket is created per call in the calling thread's
//! netns, so the answer is about *that* namespace's interface (unlike
//! `/sys/class/net`, which shows the namespace sysfs was mounted in).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::{ifname_buf, last_error};

/// A zeroed `ifreq` carrying `name`.
pub(super) fn ifreq_for(name: &str) -> io::Result<libc::ifreq> {
    let ifr_name = ifname_buf(name)?;
    // SAFETY: `ifreq` is a C struct of integers, arrays and a union of such (plus
    // one raw pointer, for which all-zero is null); all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    ifr.ifr_name = ifr_name;
    Ok(ifr)
}

/// Issues the interface `ioctl` `request` on a fresh `AF_INET` datagram socket.
fn ifreq_ioctl(name: &str, request: libc::Ioctl, what: &str) -> io::Result<libc::ifreq> {
    let mut ifr = ifreq_for(name)?;
    // SAFETY: plain socket(2) call; the returned descriptor is checked below.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(last_error(format!("{name}: socket for {what}")));
    }
    // SAFETY: `raw` is a freshly created descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: `request` is an interface ioctl that reads the name from and writes
    // its answer into the `ifreq` we pass, which lives for the whole call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), request, &mut ifr as *mut libc::ifreq) };
    if rc < 0 {
        return Err(last_error(format!("{name}: {what}")));
    }
    Ok(ifr)
}

/// The MTU of interface `ifname` in the current network namespace.
pub fn interface_mtu(ifname: &str) -> io::Result<u32> {
    let ifr = ifreq_ioctl(ifname, libc::SIOCGIFMTU, "SIOCGIFMTU")?;
    // SAFETY: SIOCGIFMTU succeeded, so the kernel filled the `ifru_mtu` member.
    let mtu = unsafe { ifr.ifr_ifru.ifru_mtu };
    Ok(mtu as u32)
}

/// The MAC address of Ethernet interface `ifname` in the current network namespace.
pub fn interface_mac(ifname: &str) -> io::Result<[u8; 6]> {
    let ifr = ifreq_ioctl(ifname, libc::SIOCGIFHWADDR, "SIOCGIFHWADDR")?;
    // SAFETY: SIOCGIFHWADDR succeeded, so the kernel filled the `ifru_hwaddr` member.
    let hw = unsafe { ifr.ifr_ifru.ifru_hwaddr };
    if hw.sa_family != libc::ARPHRD_ETHER {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{ifname}: not an Ethernet interface (hardware type {})",
                hw.sa_family
            ),
        ));
    }
    let mut mac = [0u8; 6];
    for (dst, &src) in mac.iter_mut().zip(&hw.sa_data) {
        *dst = src as u8;
    }
    Ok(mac)
}

/// The interface index of `ifname` in the current network namespace.
pub(super) fn interface_index(ifname: &str) -> io::Result<libc::c_int> {
    ifname_buf(ifname)?;
    match nix::net::if_::if_nametoindex(ifname) {
        Ok(index) => Ok(index as libc::c_int),
        Err(errno) => Err(io::Error::new(
            io::Error::from(errno).kind(),
            format!("{ifname}: no such interface ({errno})"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_queries() {
        assert_eq!(interface_mtu("lo").unwrap(), 65536);
        assert_eq!(interface_index("lo").unwrap(), 1);
        // Loopback has hardware type ARPHRD_LOOPBACK, not Ethernet.
        assert!(interface_mac("lo").is_err());
    }

    #[test]
    fn missing_interface_is_named() {
        let err = interface_mtu("ys-missing0").unwrap_err();
        assert!(err.to_string().contains("ys-missing0"), "{err}");
        let err = interface_index("ys-missing0").unwrap_err();
        assert!(err.to_string().contains("ys-missing0"), "{err}");
    }
}
