//! AF_PACKET sockets on existing interfaces (a veth's host end, a physical NIC).
//!
//! Contract: the socket sees every frame of exactly one interface (bound to its
//! index before it can receive anything else), carries a vnet header before each
//! frame in both directions (`PACKET_VNET_HDR`: GSO frames and partial checksums
//! from a veth with offloads arrive described, not broken), never reads back the
//! frames it sent itself (`PACKET_IGNORE_OUTGOING`), holds the interface
//! promiscuous for its lifetime, and transmits without the qdisc
//! (`PACKET_QDISC_BYPASS`). Every error names the interface.

use std::io;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};

use super::fd::{set_int_sockopt, set_sockopt};
use super::iface::interface_index;
use super::{context, last_error};

/// Socket buffer size asked for in each direction: room for a burst of a few
/// hundred full-size (or a few dozen 64 KB GSO) frames while the datapath is busy.
const SOCKET_BUFFER_BYTES: libc::c_int = 4 << 20;

/// Opens a non-blocking, close-on-exec AF_PACKET `SOCK_RAW` socket bound to
/// interface `ifname` (all protocols), with `PACKET_VNET_HDR`,
/// `PACKET_IGNORE_OUTGOING`, promiscuous membership, `PACKET_QDISC_BYPASS` and a
/// few MB of receive and send buffer (forced past the sysctl limits when root).
pub fn open_packet_socket(ifname: &str) -> io::Result<OwnedFd> {
    let what = format!("packet socket on {ifname}");
    let ifindex = interface_index(ifname).map_err(|e| context(e, &what))?;

    // Protocol 0: the socket receives nothing until `bind` below names both the
    // interface and ETH_P_ALL, so no frame of another interface slips in.
    // SAFETY: plain socket(2) call; the returned descriptor is checked below.
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if raw < 0 {
        return Err(last_error(format!("{what}: socket(AF_PACKET)")));
    }
    // SAFETY: `raw` is a freshly created descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    let fd = sock.as_fd();
    let opt = |level, name, value, label: &str| {
        set_int_sockopt(fd, level, name, value).map_err(|e| context(e, format!("{what}: {label}")))
    };

    opt(
        libc::SOL_PACKET,
        libc::PACKET_VNET_HDR,
        1,
        "PACKET_VNET_HDR",
    )?;
    opt(
        libc::SOL_PACKET,
        libc::PACKET_IGNORE_OUTGOING,
        1,
        "PACKET_IGNORE_OUTGOING",
    )?;
    opt(
        libc::SOL_PACKET,
        libc::PACKET_QDISC_BYPASS,
        1,
        "PACKET_QDISC_BYPASS",
    )?;
    let root = nix::unistd::geteuid().is_root();
    for (forced, plain, label) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, "SO_RCVBUF"),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, "SO_SNDBUF"),
    ] {
        // FORCE needs CAP_NET_ADMIN (root in a user namespace is not enough), so
        // fall back to the plain option, which the kernel caps at the sysctl limit.
        if !(root && set_int_sockopt(fd, libc::SOL_SOCKET, forced, SOCKET_BUFFER_BYTES).is_ok()) {
            opt(libc::SOL_SOCKET, plain, SOCKET_BUFFER_BYTES, label)?;
        }
    }

    let addr = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as libc::c_ushort,
        sll_protocol: (libc::ETH_P_ALL as u16).to_be(),
        sll_ifindex: ifindex,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    };
    // SAFETY: `addr` is a fully initialized `sockaddr_ll` that lives for the call,
    // and the length passed is its exact size.
    let rc = unsafe {
        libc::bind(
            raw,
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(last_error(format!("{what}: bind")));
    }

    let mreq = libc::packet_mreq {
        mr_ifindex: ifindex,
        mr_type: libc::PACKET_MR_PROMISC as libc::c_ushort,
        mr_alen: 0,
        mr_address: [0; 8],
    };
    set_sockopt(fd, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mreq)
        .map_err(|e| context(e, format!("{what}: PACKET_ADD_MEMBERSHIP promiscuous")))?;
    Ok(sock)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::netns::run_in_netns;
    use crate::sys::testutil::{ip, is_root, read_until, test_frame_with_vnet_hdr, Netns, Veth};
    use crate::sys::{write_fd, VNET_HDR_LEN};

    fn carries(marker: &'static [u8]) -> impl FnMut(&[u8]) -> bool {
        move |f| f.len() > VNET_HDR_LEN + 14 && f[VNET_HDR_LEN + 14..].starts_with(marker)
    }

    #[test]
    fn veth_frames_cross_and_own_sends_are_not_read_back() {
        // Privileged: creates a veth pair with one end moved into a fresh netns.
        // The frames are of a local-experimental EtherType on that veth only.
        if !is_root() {
            eprintln!("skipping veth_frames_cross_and_own_sends_are_not_read_back: needs root");
            return;
        }
        let ns = Netns::new();
        let veth = Veth::new();
        ip(&["link", "set", &veth.peer, "netns", ns.name()]);
        ip(&["link", "set", &veth.host, "up"]);
        ip(&["-n", ns.name(), "link", "set", &veth.peer, "up"]);

        let host = open_packet_socket(&veth.host).unwrap();
        let peer_name = veth.peer.clone();
        let inside = run_in_netns(&ns.netns_ref(), move || open_packet_socket(&peer_name))
            .unwrap()
            .unwrap();

        // Host end → netns end.
        let out: &'static [u8] = b"switchyard host->ns";
        let frame = test_frame_with_vnet_hdr([0x02, 0, 0, 0, 0, 1], out);
        assert_eq!(write_fd(host.as_fd(), &frame).unwrap(), frame.len());
        let got = read_until(inside.as_fd(), Duration::from_secs(3), carries(out))
            .expect("frame sent on the host end did not arrive in the netns");
        assert_eq!(got[VNET_HDR_LEN..], frame[VNET_HDR_LEN..]);

        // Netns end → host end.
        let back: &'static [u8] = b"switchyard ns->host";
        let frame = test_frame_with_vnet_hdr([0x02, 0, 0, 0, 0, 2], back);
        assert_eq!(write_fd(inside.as_fd(), &frame).unwrap(), frame.len());
        let got = read_until(host.as_fd(), Duration::from_secs(3), carries(back))
            .expect("frame sent in the netns did not arrive on the host end");
        assert_eq!(got[VNET_HDR_LEN..], frame[VNET_HDR_LEN..]);

        // Neither socket reads back what it sent itself. Both frames have crossed
        // the veth already, so a looped-back copy would be queued by now.
        assert!(read_until(host.as_fd(), Duration::from_millis(200), carries(out)).is_none());
        assert!(read_until(inside.as_fd(), Duration::from_millis(200), carries(back)).is_none());

        // PACKET_IGNORE_OUTGOING proper: frames the namespace's own stack sends out
        // of the veth (here the ARP request of a ping) reach the host end's socket
        // but are not shown to the socket on the sending end.
        ip(&[
            "-n",
            ns.name(),
            "addr",
            "add",
            "10.80.0.2/24",
            "dev",
            &veth.peer,
        ]);
        let _ = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                ns.name(),
                "ping",
                "-c1",
                "-W1",
                "10.80.0.1",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        let is_arp_for_gateway = |f: &[u8]| {
            f.len() >= VNET_HDR_LEN + 42
                && f[VNET_HDR_LEN + 12..VNET_HDR_LEN + 14] == [0x08, 0x06]
                && f[VNET_HDR_LEN + 14 + 24..VNET_HDR_LEN + 14 + 28] == [10, 80, 0, 1]
        };
        read_until(host.as_fd(), Duration::from_secs(3), is_arp_for_gateway)
            .expect("the namespace's ARP request did not reach the host end");
        assert!(
            read_until(
                inside.as_fd(),
                Duration::from_millis(200),
                is_arp_for_gateway
            )
            .is_none(),
            "the socket on the sending end saw an outgoing frame"
        );
    }

    #[test]
    fn missing_interface_is_named() {
        let err = open_packet_socket("ys-nosuch0").unwrap_err();
        assert!(err.to_string().contains("ys-nosuch0"), "{err}");
    }
}
