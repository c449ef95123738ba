//! TAP devices: create a TAP through `/dev/net/tun` in the current thread's
//! network namespace, or re-attach to one that exists, and hand back its fd.
//!
//! Contract: [`open_tap`] makes a *new* TAP (`IFF_TUN_EXCL`; an existing
//! device of the same name, TAP or not, is an
//! [`std::io::ErrorKind::AlreadyExists`] error); [`adopt_tap`] attaches to an
//! existing one with the same flags, and says whether it did
//! ([`TapOpened`]). Either way the fd carries a 10-byte vnet header before
//! every frame in both directions (`IFF_VNET_HDR`, `TUNSETVNETHDRSZ`), and
//! offloads are on (`TUNSETOFFLOAD` with checksum, TSO4/6 with ECN and, when
//! the kernel has them (6.2+), USO4/6): what the container sends may come out
//! of the fd as one GSO frame of up to 64 KB with a partial checksum, which
//! the switch passes on with its virtio-net header or segments in software
//! ([`crate::dataplane::offload`]) for a port that cannot take it. Frames
//! written to the fd may be GSO frames whatever the offloads.
//!
//! Lifetime: a TAP lives as long as its fd unless it is made persistent
//! ([`set_persist`]); a persistent TAP outlives every fd (with no fd the
//! kernel shows it NO-CARRIER and drops what the namespace sends) until
//! persistence is cleared and the last fd closes, or its namespace goes away.
//! Nothing here decides whether a device may be adopted: the caller checks
//! that first (the kernel refuses only a non-TAP, other flags, or a TAP
//! another fd holds).

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use super::iface::ifreq_for;
use super::{context, last_error, VNET_HDR_LEN};

// `TUN_F_*` from <linux/if_tun.h>; the libc crate does not carry them.
const TUN_F_CSUM: libc::c_ulong = 0x01;
const TUN_F_TSO4: libc::c_ulong = 0x02;
const TUN_F_TSO6: libc::c_ulong = 0x04;
const TUN_F_TSO_ECN: libc::c_ulong = 0x08;
const TUN_F_USO4: libc::c_ulong = 0x20;
const TUN_F_USO6: libc::c_ulong = 0x40;

/// Offloads every TAP gets: partial checksums and TCP segmentation (with
/// ECN's CWR on the first segment, which [`crate::dataplane::offload::segment`] keeps).
pub const TAP_OFFLOADS: libc::c_ulong = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;

/// UDP segmentation, added when the kernel knows it (Linux 6.2 and later;
/// older kernels refuse the whole request with `EINVAL`).
pub const TAP_OFFLOADS_USO: libc::c_ulong = TUN_F_USO4 | TUN_F_USO6;

/// Opens `/dev/net/tun` and creates TAP `name` in the current thread's network
/// namespace, non-blocking and close-on-exec, with `IFF_TAP | IFF_NO_PI |
/// IFF_VNET_HDR`, a 10-byte vnet header and offloads on (`TAP_OFFLOADS`,
/// plus `TAP_OFFLOADS_USO` when the kernel accepts them). The TAP is not
/// persistent: it goes away with the last fd unless [`set_persist`] says
/// otherwise.
///
/// Fails with [`io::ErrorKind::AlreadyExists`] if an interface called `name`
/// exists already: a TAP must never silently attach to an existing device.
pub fn open_tap(name: &str) -> io::Result<OwnedFd> {
    let what = format!("tap {name}");
    let flags = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR | libc::IFF_TUN_EXCL;
    let fd = set_iff(name, flags, |err| {
        if err.raw_os_error() == Some(libc::EBUSY) {
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{what}: an interface named {name} already exists in this network namespace"
                ),
            )
        } else {
            context(err, format!("{what}: TUNSETIFF"))
        }
    })?;
    set_vnet_and_offloads(&fd, &what)?;
    Ok(fd)
}

/// How [`adopt_tap`] got its fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapOpened {
    /// The persistent TAP existed and the fd is now attached to it: its
    /// addresses, routes and link settings are as the namespace left them.
    Adopted,
    /// There was no persistent TAP of that name (it vanished since the
    /// caller looked), so a new, non-persistent one was made.
    Created,
}

/// Attaches to the existing TAP `name` in the current thread's network
/// namespace with the flags [`open_tap`] uses, then sets the vnet header
/// size and offloads again (the fd is new; the device keeps its MAC, MTU,
/// addresses and up state). The caller must have checked that the device is
/// one it may take: the kernel refuses only a device that is not a TAP or
/// has other flags (`InvalidInput`), or a TAP another fd is attached to
/// (`ResourceBusy`).
pub fn adopt_tap(name: &str) -> io::Result<(OwnedFd, TapOpened)> {
    let what = format!("tap {name}");
    let flags = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR;
    let fd = set_iff(name, flags, |err| {
        match err.raw_os_error() {
        Some(libc::EINVAL) => io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what}: the interface is not a TAP with yardd's flags (the kernel refused TUNSETIFF: {err})"),
        ),
        Some(libc::EBUSY) => io::Error::new(
            io::ErrorKind::ResourceBusy,
            format!("{what}: another process has the TAP open"),
        ),
        _ => context(err, format!("{what}: TUNSETIFF")),
    }
    })?;
    let opened = if tap_flags(&fd, &what)? & libc::IFF_PERSIST != 0 {
        TapOpened::Adopted
    } else {
        TapOpened::Created
    };
    set_vnet_and_offloads(&fd, &what)?;
    Ok((fd, opened))
}

/// Makes the TAP behind `fd` persistent (it outlives every fd) or not (it
/// goes away when the last fd closes). `name` is for the error.
pub fn set_persist(fd: &OwnedFd, name: &str, persist: bool) -> io::Result<()> {
    let value = libc::c_ulong::from(persist);
    // SAFETY: TUNSETPERSIST takes its flag by value as the ioctl argument (no
    // pointer); `fd` is an open /dev/net/tun fd (the kernel checks it is
    // attached).
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETPERSIST, value) };
    if rc < 0 {
        return Err(last_error(format!("tap {name}: TUNSETPERSIST {persist}")));
    }
    Ok(())
}

/// The `IFF_*` flags of the TAP behind `fd` (`TUNGETIFF`), `IFF_PERSIST`
/// among them.
fn tap_flags(fd: &OwnedFd, what: &str) -> io::Result<libc::c_int> {
    // SAFETY: `ifreq` is a C struct of integers, arrays and a union of such
    // (plus one raw pointer, for which all-zero is null); all-zero is valid.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    // SAFETY: TUNGETIFF writes the name and flags into the `ifreq` we pass,
    // which is live for the whole call; `fd` is an attached TAP fd.
    let rc = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNGETIFF,
            &mut ifr as *mut libc::ifreq,
        )
    };
    if rc < 0 {
        return Err(last_error(format!("{what}: TUNGETIFF")));
    }
    // SAFETY: TUNGETIFF succeeded, so the kernel filled `ifru_flags`.
    let flags = unsafe { ifr.ifr_ifru.ifru_flags };
    // The kernel's flags are a 16-bit field; IFF_PERSIST (0x800) fits.
    Ok(libc::c_int::from(flags as u16))
}

/// Opens `/dev/net/tun` (non-blocking, close-on-exec) and issues
/// `TUNSETIFF` for `name` with `flags`; a refused `TUNSETIFF` is turned into
/// the caller's error by `refused`.
fn set_iff(
    name: &str,
    flags: libc::c_int,
    refused: impl FnOnce(io::Error) -> io::Error,
) -> io::Result<OwnedFd> {
    let what = format!("tap {name}");
    let mut ifr = ifreq_for(name).map_err(|e| context(e, &what))?;
    // std opens with O_CLOEXEC always; O_NONBLOCK is ours.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/net/tun")
        .map_err(|e| tun_open_error(e, &what))?;
    let fd = OwnedFd::from(file);
    ifr.ifr_ifru.ifru_flags = flags as libc::c_short;
    // SAFETY: TUNSETIFF reads (and updates the name in) the `ifreq` we pass, which
    // is live and initialized for the whole call; `fd` is an open /dev/net/tun.
    let rc = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNSETIFF,
            &mut ifr as *mut libc::ifreq,
        )
    };
    if rc < 0 {
        return Err(refused(io::Error::last_os_error()));
    }
    Ok(fd)
}

/// The error for a failed open of `/dev/net/tun`: a permission error says
/// what to change, as it is what a rootless yardd meets on a machine whose
/// `/dev/net/tun` is 0600.
fn tun_open_error(err: io::Error, what: &str) -> io::Error {
    if err.kind() == io::ErrorKind::PermissionDenied {
        return io::Error::new(
            err.kind(),
            format!(
                "{what}: cannot open /dev/net/tun ({err}): a TAP made without root needs /dev/net/tun \
                 open to every user (mode 0666, as distributions ship it); this machine's is not — \
                 as root, run `chmod 0666 /dev/net/tun` (or a udev rule: KERNEL==\"tun\", MODE=\"0666\")"
            ),
        );
    }
    context(err, format!("{what}: open /dev/net/tun"))
}

/// Sets the vnet header size and the offloads on a freshly attached TAP fd.
fn set_vnet_and_offloads(fd: &OwnedFd, what: &str) -> io::Result<()> {
    let hdr_len = VNET_HDR_LEN as libc::c_int;
    // SAFETY: TUNSETVNETHDRSZ reads one `int` through the pointer, which points to
    // a live local; `fd` is an attached TAP fd.
    let rc = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNSETVNETHDRSZ,
            &hdr_len as *const libc::c_int,
        )
    };
    if rc < 0 {
        return Err(last_error(format!(
            "{what}: TUNSETVNETHDRSZ {VNET_HDR_LEN}"
        )));
    }

    let set_offload = |flags: libc::c_ulong| {
        // SAFETY: TUNSETOFFLOAD takes its flags by value as the ioctl argument
        // (no pointer); `fd` is an attached TAP fd.
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETOFFLOAD, flags) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    match set_offload(TAP_OFFLOADS | TAP_OFFLOADS_USO) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => set_offload(TAP_OFFLOADS)
            .map_err(|e| context(e, format!("{what}: TUNSETOFFLOAD {TAP_OFFLOADS:#x}")))?,
        Err(e) => {
            return Err(context(
                e,
                format!(
                    "{what}: TUNSETOFFLOAD {:#x}",
                    TAP_OFFLOADS | TAP_OFFLOADS_USO
                ),
            ))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsFd, AsRawFd};
    use std::process::Command;
    use std::time::Duration;

    use super::*;
    use crate::sys::netconf::{configure_link, link_mac, LinkConfig};

    #[test]
    fn a_closed_dev_net_tun_says_how_to_open_it() {
        let err = tun_open_error(io::Error::from_raw_os_error(libc::EACCES), "tap eth0");
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        let text = err.to_string();
        assert!(
            text.starts_with("tap eth0: cannot open /dev/net/tun (Permission denied (os error 13)): a TAP made without root needs /dev/net/tun open to every user (mode 0666"),
            "{text}"
        );
        assert!(text.contains("`chmod 0666 /dev/net/tun`"), "{text}");
        let other = tun_open_error(io::Error::from_raw_os_error(libc::ENOENT), "tap eth0");
        assert!(other
            .to_string()
            .starts_with("tap eth0: open /dev/net/tun: "));
    }
    use crate::sys::netns::run_in_netns;
    use crate::sys::open_packet_socket;
    use crate::sys::testutil::{is_root, read_until, test_frame_with_vnet_hdr, Netns};
    use crate::sys::write_fd;

    #[test]
    fn duplicate_tap_name_is_refused() {
        // Privileged: creates a network namespace and TAPs inside it.
        if !is_root() {
            eprintln!("skipping duplicate_tap_name_is_refused: needs root");
            return;
        }
        let ns = Netns::new();
        run_in_netns(&ns.netns_ref(), || {
            let first = open_tap("ysdup0").unwrap();
            let err = open_tap("ysdup0").unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
            assert!(err.to_string().contains("ysdup0"), "{err}");
            // Not even a non-TAP device may be taken over.
            let err = open_tap("lo").unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
            // The name is free again once the first TAP's fd is closed.
            drop(first);
            open_tap("ysdup0").unwrap();
            // Names the kernel would truncate are refused up front.
            let err = open_tap("ys-much-too-long-name").unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        })
        .unwrap();
    }

    #[test]
    fn a_persistent_tap_outlives_its_fd_and_is_adopted_again() {
        // Privileged: creates a network namespace and TAPs inside it.
        if !is_root() {
            eprintln!("skipping a_persistent_tap_outlives_its_fd_and_is_adopted_again: needs root");
            return;
        }
        let ns = Netns::new();
        let link =
            || crate::sys::testutil::ip_json(ns.name(), &["addr", "show", "ysp0"])[0].clone();
        run_in_netns(&ns.netns_ref(), || {
            let fd = open_tap("ysp0").unwrap();
            configure_link(&LinkConfig {
                ifname: "ysp0",
                mac: None,
                mtu: Some(1400),
                txqlen: None,
                addr: Some(("10.78.9.2".parse().unwrap(), 24)),
                default_gateway: None,
            })
            .unwrap();
            set_persist(&fd, "ysp0", true).unwrap();
        })
        .unwrap();
        // No fd any more: the TAP is still there, without carrier, as it was.
        let before = link();
        assert!(
            before["flags"].to_string().contains("NO-CARRIER"),
            "{before}"
        );
        assert_eq!(before["mtu"], 1400, "{before}");
        assert_eq!(before["addr_info"][0]["local"], "10.78.9.2", "{before}");

        let (fd, opened, busy, not_tap) = run_in_netns(&ns.netns_ref(), || {
            let (fd, opened) = adopt_tap("ysp0").unwrap();
            // A second fd on a single-queue TAP is refused.
            let busy = adopt_tap("ysp0").unwrap_err();
            // `lo` is no TAP.
            let not_tap = adopt_tap("lo").unwrap_err();
            (fd, opened, busy, not_tap)
        })
        .unwrap();
        assert_eq!(opened, TapOpened::Adopted);
        assert_eq!(busy.kind(), io::ErrorKind::ResourceBusy, "{busy}");
        assert_eq!(not_tap.kind(), io::ErrorKind::InvalidInput, "{not_tap}");
        let after = link();
        assert_eq!(after["ifindex"], before["ifindex"], "not the same device");
        assert_eq!(after["address"], before["address"], "{after}");
        assert_eq!(after["mtu"], 1400, "{after}");
        assert_eq!(after["addr_info"], before["addr_info"], "{after}");
        assert!(
            !after["flags"].to_string().contains("NO-CARRIER"),
            "{after}"
        );

        // Persistence cleared: the TAP goes with its last fd.
        set_persist(&fd, "ysp0", false).unwrap();
        drop(fd);
        run_in_netns(&ns.netns_ref(), || {
            assert!(crate::sys::interface_mtu("ysp0").is_err());
            // Adopting a name that does not exist makes a new, non-persistent TAP.
            let (fd, opened) = adopt_tap("ysp1").unwrap();
            assert_eq!(opened, TapOpened::Created);
            drop(fd);
            assert!(crate::sys::interface_mtu("ysp1").is_err());
        })
        .unwrap();
    }

    #[test]
    fn tap_frames_flow_both_ways_with_vnet_header() {
        // Privileged: creates a network namespace, a TAP in it, and pings inside it.
        if !is_root() {
            eprintln!("skipping tap_frames_flow_both_ways_with_vnet_header: needs root");
            return;
        }
        let ns = Netns::new();
        let (tap, sniffer, tap_mac) = run_in_netns(&ns.netns_ref(), || {
            let tap = open_tap("ystap0").unwrap();
            configure_link(&LinkConfig {
                ifname: "ystap0",
                mac: None,
                mtu: None,
                txqlen: None,
                addr: Some(("10.78.0.2".parse().unwrap(), 24)),
                default_gateway: None,
            })
            .unwrap();
            let sniffer = open_packet_socket("ystap0").unwrap();
            (tap, sniffer, link_mac("ystap0").unwrap())
        })
        .unwrap();

        // Userspace → kernel: a frame written to the TAP fd arrives on the device.
        let marker = b"switchyard tap->ns";
        let written = test_frame_with_vnet_hdr([0x02, 0, 0, 0, 0, 0x99], marker);
        assert_eq!(write_fd(tap.as_fd(), &written).unwrap(), written.len());
        let seen = read_until(sniffer.as_fd(), Duration::from_secs(3), |f| {
            f.len() > VNET_HDR_LEN + 14 && f[VNET_HDR_LEN + 14..].starts_with(marker)
        })
        .expect("frame written to the TAP fd did not appear in the namespace");
        assert_eq!(seen[VNET_HDR_LEN..], written[VNET_HDR_LEN..]);

        // Kernel → userspace: the namespace's ARP request for a neighbour comes
        // out of the TAP fd after a vnet header with no GSO.
        let status = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns.name(),
                "ping",
                "-c1",
                "-W1",
                "10.78.0.1",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(!status.success(), "nobody should answer 10.78.0.1");
        let arp = read_until(tap.as_fd(), Duration::from_secs(3), |f| {
            f.len() >= VNET_HDR_LEN + 42 && f[VNET_HDR_LEN + 12..VNET_HDR_LEN + 14] == [0x08, 0x06]
        })
        .expect("no ARP request read from the TAP fd");
        let (vnet, eth) = arp.split_at(VNET_HDR_LEN);
        assert_eq!(
            vnet[1], 0,
            "gso_type must be VIRTIO_NET_HDR_GSO_NONE: {vnet:?}"
        );
        assert_eq!(eth[0..6], [0xff; 6], "ARP request is broadcast");
        assert_eq!(eth[6..12], tap_mac);
        let arp_body = &eth[14..42];
        assert_eq!(arp_body[6..8], [0, 1], "ARP opcode request");
        assert_eq!(arp_body[8..14], tap_mac, "sender MAC");
        assert_eq!(arp_body[14..18], [10, 78, 0, 2], "sender IP");
        assert_eq!(arp_body[24..28], [10, 78, 0, 1], "target IP");
    }

    #[test]
    fn tap_hands_over_partial_checksums_and_udp_gso_frames() {
        // Privileged: creates a network namespace, a TAP in it, and sends UDP
        // from inside it.
        if !is_root() {
            eprintln!("skipping tap_hands_over_partial_checksums_and_udp_gso_frames: needs root");
            return;
        }
        let ns = Netns::new();
        let tap = run_in_netns(&ns.netns_ref(), || {
            let tap = open_tap("ystap1").unwrap();
            configure_link(&LinkConfig {
                ifname: "ystap1",
                mac: None,
                mtu: None,
                txqlen: None,
                addr: Some(("10.78.1.2".parse().unwrap(), 24)),
                default_gateway: None,
            })
            .unwrap();
            tap
        })
        .unwrap();
        crate::sys::testutil::ip(&[
            "-n",
            ns.name(),
            "neigh",
            "add",
            "10.78.1.1",
            "lladdr",
            "02:00:00:00:00:99",
            "dev",
            "ystap1",
        ]);
        run_in_netns(&ns.netns_ref(), || {
            let socket = std::net::UdpSocket::bind("10.78.1.2:0").unwrap();
            socket.send_to(&[7u8; 100], "10.78.1.1:9").unwrap();
            let segment: libc::c_int = 1000;
            // SAFETY: UDP_SEGMENT reads one `int` through the pointer, which
            // points to a live local of the length passed; the fd is an open
            // UDP socket.
            let rc = unsafe {
                libc::setsockopt(
                    socket.as_raw_fd(),
                    libc::SOL_UDP,
                    libc::UDP_SEGMENT,
                    &segment as *const libc::c_int as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            assert_eq!(rc, 0, "UDP_SEGMENT: {}", io::Error::last_os_error());
            socket.send_to(&[8u8; 3000], "10.78.1.1:10").unwrap();
        })
        .unwrap();
        let udp_to = |port: u8| {
            move |f: &[u8]| {
                let eth = &f[VNET_HDR_LEN..];
                eth.len() >= 42
                    && eth[12..14] == [8, 0]
                    && eth[23] == 17
                    && eth[36..38] == [0, port]
            }
        };
        let small = read_until(tap.as_fd(), Duration::from_secs(3), udp_to(9))
            .expect("no UDP datagram read from the TAP fd");
        let vnet =
            yard_wire::offload::Offload::from_header(small[..VNET_HDR_LEN].try_into().unwrap());
        assert_eq!(vnet.flags, yard_wire::vnet::F_NEEDS_CSUM, "{vnet:?}");
        assert_eq!((vnet.csum_start, vnet.csum_offset), (34, 6), "{vnet:?}");
        let big = read_until(tap.as_fd(), Duration::from_secs(3), udp_to(10))
            .expect("no UDP GSO datagram read from the TAP fd");
        let vnet =
            yard_wire::offload::Offload::from_header(big[..VNET_HDR_LEN].try_into().unwrap());
        if vnet.gso_type == 0 {
            eprintln!("kernel without TAP USO: UDP GSO came out segmented ({vnet:?})");
        } else {
            assert_eq!(vnet.gso_type, yard_wire::vnet::GSO_UDP_L4, "{vnet:?}");
            assert_eq!(vnet.gso_size, 1000, "{vnet:?}");
            assert_eq!(big.len(), VNET_HDR_LEN + 42 + 3000);
        }
    }
}
