//! The OS layer: every `unsafe` call of the daemon — TAP devices and their
//! io_uring batches ([`TapRing`]), tunnel datagrams sent together
//! ([`SendBatch`]), AF_PACKET
//! sockets and their receive rings ([`RxRing`]), interface ioctls, raw fd I/O, namespace ownership
//! ([`nsowner`]), which namespace a port is in ([`nsidentity`]), capabilities ([`privilege`]), the datapath's seccomp
//! filter ([`seccomp`]), passing fds between processes ([`fdpass`]) and
//! how busy the CPUs are ([`cpu_pressure`], [`thread_cpu`]) —
//! behind safe functions, plus
//! network namespaces ([`netns`]) and interface configuration over
//! rtnetlink ([`netconf`]), which need no `unsafe` but are just as much the
//! kernel's side of yardd.
//!
//! How the OS layer fits the rest of yardd: `docs/ARCHITECTURE.md`.
//!
//! Contract: each function here returns an owned, non-blocking, close-on-exec fd
//! (or a plain value) and an [`std::io::Error`] that names the interface it was
//! about. Nothing here enters a namespace: every function works in the *current
//! thread's* network namespace, so callers that need another namespace wrap the
//! call in [`crate::sys::netns::run_in_netns`]. No other module of this crate may
//! contain `unsafe`; every block here carries a `// SAFETY:` comment.
//!
//! Abbreviations: *vnet header* is the 10-byte `struct virtio_net_hdr` (flags,
//! GSO type, header length, GSO size, checksum start and offset) that the kernel
//! puts before every frame on a TAP opened with `IFF_VNET_HDR` and on an AF_PACKET
//! socket with `PACKET_VNET_HDR`; *GSO* is generic segmentation offload.

pub mod cpu_pressure;
mod fd;
pub mod fdpass;
mod host_socket;
mod iface;
pub mod netconf;
pub mod netns;
pub mod notify;
pub mod nsidentity;
pub mod nsowner;
mod packet;
mod packet_ring;
pub mod privilege;
pub mod seccomp;
mod send_batch;
mod tap;
#[cfg(test)]
pub(crate) mod testutil;
pub mod thread_cpu;
mod tunnel;
mod uring;

pub use fd::{peer_credentials, read_fd, write_fd};
pub use host_socket::{
    ping_socket, raise_open_files_limit, recv_to, report_local_address, reset_on_close, send_from,
};
pub use iface::{interface_mac, interface_mtu};
pub use packet::{
    open_packet_socket, open_packet_socket_with_rx_ring, recv_packet, AuxBuffer, RecvBatch, VlanTag,
};
pub use packet_ring::{RingSlot, RxRing, RING_BYTES};
pub use send_batch::{SendBatch, SEND_SLOTS, SEND_SLOT_LEN};
pub use tap::{adopt_tap, open_tap, set_persist, TapOpened};
pub use tunnel::{open_gre_socket, open_udp_tunnel_socket, path_mtu, send_gre};
pub use uring::{
    RingUnavailable, TapRing, MAX_READS as RING_MAX_READS, TX_SLOT_LEN as RING_TX_SLOT_LEN,
};

/// Length of the virtio-net header both TAP (`IFF_VNET_HDR`) and AF_PACKET
/// (`PACKET_VNET_HDR`) fds carry before each frame.
pub const VNET_HDR_LEN: usize = yard_wire::vnet::HEADER_LEN;

use std::io;

/// Copies `name` into a NUL-terminated `IFNAMSIZ` buffer, rejecting names
/// [`yard_ctl::ifname::check_ifname`] refuses (the kernel would refuse or
/// truncate most of them).
fn ifname_buf(name: &str) -> io::Result<[libc::c_char; libc::IFNAMSIZ]> {
    use yard_ctl::ifname::IfNameError;
    let invalid = |message: String| io::Error::new(io::ErrorKind::InvalidInput, message);
    match yard_ctl::ifname::check_ifname(name) {
        Ok(()) => {}
        Err(IfNameError::Empty | IfNameError::TooLong) => {
            return Err(invalid(format!(
                "interface name {name:?} must be 1 to {} bytes long",
                libc::IFNAMSIZ - 1
            )))
        }
        Err(IfNameError::Separator(_)) => {
            return Err(invalid(format!(
                "interface name {name:?} contains NUL, '/', ':' or whitespace"
            )))
        }
        Err(e) => return Err(invalid(format!("interface name {name:?}: {e}"))),
    }
    let mut buf = [0 as libc::c_char; libc::IFNAMSIZ];
    for (dst, &src) in buf.iter_mut().zip(name.as_bytes()) {
        *dst = src as libc::c_char;
    }
    Ok(buf)
}

/// An I/O error with the thing it concerns, which keeps the OS error code
/// ([`os_error_code`]) for callers that explain particular ones.
#[derive(Debug)]
struct InContext {
    what: String,
    source: io::Error,
}

impl std::fmt::Display for InContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.what, self.source)
    }
}

impl std::error::Error for InContext {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Prefixes an I/O error with the thing it concerns, keeping its kind and
/// its OS error code.
fn context(err: io::Error, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        err.kind(),
        InContext {
            what: what.to_string(),
            source: err,
        },
    )
}

/// The OS error code (`errno`) of `err`, also through the context this
/// module adds to the errors it returns.
pub fn os_error_code(err: &io::Error) -> Option<i32> {
    err.raw_os_error().or_else(|| {
        err.get_ref()?
            .downcast_ref::<InContext>()
            .and_then(|c| os_error_code(&c.source))
    })
}

/// Returns the last OS error prefixed with `what`.
fn last_error(what: impl std::fmt::Display) -> io::Error {
    context(io::Error::last_os_error(), what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_in_context_keep_their_os_error_code() {
        let err = context(
            io::Error::from_raw_os_error(libc::ENODEV),
            "eth9: SIOCGIFMTU",
        );
        assert_eq!(os_error_code(&err), Some(libc::ENODEV));
        assert!(err.to_string().starts_with("eth9: SIOCGIFMTU: "), "{err}");
        let twice = context(err, "port p1");
        assert_eq!(os_error_code(&twice), Some(libc::ENODEV));
        assert_eq!(os_error_code(&io::Error::other("no code")), None);
    }

    #[test]
    fn ifname_validation() {
        assert!(ifname_buf("eth0").is_ok());
        assert!(ifname_buf("abcdefghijklmno").is_ok());
        assert!(ifname_buf("abcdefghijklmnop").is_err());
        assert!(ifname_buf("").is_err());
        assert!(ifname_buf("a/b").is_err());
        assert!(ifname_buf("a b").is_err());
        assert!(ifname_buf("a\0b").is_err());
        let buf = ifname_buf("tap1").unwrap();
        assert_eq!(buf[..5], [b't' as _, b'a' as _, b'p' as _, b'1' as _, 0]);
    }
}
