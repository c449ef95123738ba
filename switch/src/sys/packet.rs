//! AF_PACKET sockets on existing interfaces (a veth's host end, a physical NIC).
//!
//! Contract: the socket sees every frame of exactly one interface (bound to its
//! index before it can receive anything else), carries a vnet header before each
//! frame in both directions (`PACKET_VNET_HDR`: GSO frames and partial checksums
//! from a veth with offloads arrive described, not broken), never reads back the
//! frames it sent itself (`PACKET_IGNORE_OUTGOING`), holds the interface
//! promiscuous for its lifetime, and transmits without the qdisc
//! (`PACKET_QDISC_BYPASS`). Every error names the interface.
//!
//! VLAN tags: the kernel takes the outer 802.1Q/802.1ad tag out of every
//! received frame before a packet socket sees it (`skb_vlan_untag` in the
//! receive path, and veth may carry the tag beside the data from the start), so
//! the socket also asks for `PACKET_AUXDATA` and [`recv_packet`] (one frame) or
//! [`RecvBatch`] (a batch, one `recvmmsg(2)`) returns the tag that was removed. Whoever reads must put it back (see
//! [`crate::dataplane::frame::Frame::push_vlan_tci`]) or tagged frames look untagged. On
//! transmit, a tag in the data goes out as it is.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::fd::{set_int_sockopt, set_sockopt};
use super::iface::interface_index;
use super::packet_ring::RxRing;
use super::{context, last_error};

/// Socket buffer size asked for in each direction: room for a burst of a few
/// hundred full-size (or a few dozen 64 KB GSO) frames while the datapath is busy.
const SOCKET_BUFFER_BYTES: libc::c_int = 4 << 20;

/// Opens a non-blocking, close-on-exec AF_PACKET `SOCK_RAW` socket bound to
/// interface `ifname` (all protocols), with `PACKET_VNET_HDR`,
/// `PACKET_AUXDATA` (read frames with [`recv_packet`] to get their VLAN tag),
/// `PACKET_IGNORE_OUTGOING`, promiscuous membership, `PACKET_QDISC_BYPASS` and a
/// few MB of receive and send buffer (forced past the sysctl limits when root).
pub fn open_packet_socket(ifname: &str) -> io::Result<OwnedFd> {
    open(ifname, |_| ()).map(|(sock, ())| sock)
}

/// [`open_packet_socket`] with a receive ring ([`RxRing`]) set up before the
/// socket is bound, so that every frame it receives goes through the ring.
/// The socket is returned whether or not the kernel took the ring; beside it
/// the ring, or the reason it refused it (then the socket is read with
/// `recvmsg(2)`/`recvmmsg(2)` as [`open_packet_socket`]'s is).
pub fn open_packet_socket_with_rx_ring(ifname: &str) -> io::Result<(OwnedFd, io::Result<RxRing>)> {
    open(ifname, |fd| {
        RxRing::setup(fd)
            .map_err(|e| context(e, format!("receive ring of packet socket on {ifname}")))
    })
}

/// Opens the socket as [`open_packet_socket`] says, running `before_bind`
/// on it once its options are set and before it is bound.
fn open<R>(
    ifname: &str,
    before_bind: impl FnOnce(BorrowedFd<'_>) -> R,
) -> io::Result<(OwnedFd, R)> {
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
    opt(libc::SOL_PACKET, libc::PACKET_AUXDATA, 1, "PACKET_AUXDATA")?;
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

    let extra = before_bind(fd);

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
    Ok((sock, extra))
}

/// A VLAN tag the kernel removed from a received frame, as `PACKET_AUXDATA`
/// reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VlanTag {
    /// Tag protocol identifier: 0x8100 (802.1Q) or 0x88a8 (802.1ad).
    pub tpid: u16,
    /// Tag control information: priority (3 bits), drop eligible (1 bit) and
    /// VLAN id (12 bits), as on the wire.
    pub tci: u16,
}

/// Bytes of control buffer one `struct tpacket_auxdata` message needs.
// SAFETY: `CMSG_SPACE` only does arithmetic on its argument.
const AUX_CMSG_SPACE: usize =
    unsafe { libc::CMSG_SPACE(size_of::<libc::tpacket_auxdata>() as libc::c_uint) } as usize;

/// Bytes a complete `PACKET_AUXDATA` message occupies (header and payload).
// SAFETY: `CMSG_LEN` only does arithmetic on its argument.
const AUX_CMSG_LEN: usize =
    unsafe { libc::CMSG_LEN(size_of::<libc::tpacket_auxdata>() as libc::c_uint) } as usize;

// The buffer below is aligned for a `cmsghdr`, as the CMSG macros require, and
// holds a whole message.
const _: () = assert!(std::mem::align_of::<libc::cmsghdr>() <= 8);
const _: () = assert!(AUX_CMSG_SPACE >= AUX_CMSG_LEN);

/// The control-message buffer [`recv_packet`] hands to `recvmsg(2)`: room for
/// exactly one `PACKET_AUXDATA` message. A port keeps one for its lifetime, so
/// reading a frame allocates nothing.
#[repr(C, align(8))]
pub struct AuxBuffer {
    bytes: [u8; AUX_CMSG_SPACE],
}

impl AuxBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        AuxBuffer {
            bytes: [0; AUX_CMSG_SPACE],
        }
    }
}

impl Default for AuxBuffer {
    fn default() -> Self {
        Self::new()
    }
}

/// Reads one frame (vnet header included) from a packet socket made by
/// [`open_packet_socket`] into `buf` with `recvmsg(2)`, and returns its length
/// and the VLAN tag the kernel removed from it, if it had one.
///
/// Returns [`io::ErrorKind::WouldBlock`] when nothing is queued; retries on
/// `EINTR`. Allocates nothing: the control message lands in `aux`.
pub fn recv_packet(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    aux: &mut AuxBuffer,
) -> io::Result<(usize, Option<VlanTag>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    loop {
        // SAFETY: all-zero is a valid `msghdr` (null pointers, zero lengths); the
        // fields that matter are set right below.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = aux.bytes.as_mut_ptr().cast();
        msg.msg_controllen = AUX_CMSG_SPACE as _;
        // SAFETY: `msg` points to one iovec covering `buf` (valid and writable for
        // `buf.len()` bytes) and to `aux.bytes` (writable for `msg_controllen`
        // bytes, aligned for `cmsghdr`); all of them outlive the call, and `fd` is
        // a live descriptor borrowed for the call.
        let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, 0) };
        if n >= 0 {
            return Ok((n as usize, stripped_tag(&msg)));
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// The VLAN tag in the `PACKET_AUXDATA` message of a `msghdr` that
/// `recvmsg(2)` has just filled, if the frame had one.
// The length fields are `size_t` with glibc but `socklen_t` with musl.
#[allow(clippy::unnecessary_cast)]
fn stripped_tag(msg: &libc::msghdr) -> Option<VlanTag> {
    let control = msg.msg_control as usize;
    let filled = msg.msg_controllen as usize;
    // SAFETY: `msg` is the header `recvmsg` filled: `msg_control` points to a
    // live buffer of at least `msg_controllen` bytes, which is all the macro
    // looks at.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(msg) };
    while !cmsg.is_null() {
        // SAFETY: CMSG_FIRSTHDR/CMSG_NXTHDR only return a header that lies
        // inside the control buffer; the buffer is aligned for `cmsghdr`.
        let hdr = unsafe { &*cmsg };
        let len = hdr.cmsg_len as usize;
        let fits = cmsg as usize + len <= control + filled;
        if hdr.cmsg_level == libc::SOL_PACKET
            && hdr.cmsg_type == libc::PACKET_AUXDATA
            && len >= AUX_CMSG_LEN
            && fits
        {
            // SAFETY: the message is a whole `tpacket_auxdata` (length checked
            // above, within the filled part of the buffer) that the kernel wrote
            // right after the header; it is read unaligned, by value.
            let data = unsafe {
                libc::CMSG_DATA(cmsg)
                    .cast::<libc::tpacket_auxdata>()
                    .read_unaligned()
            };
            return tag_from_aux(data.tp_status, data.tp_vlan_tci, data.tp_vlan_tpid);
        }
        // SAFETY: as for CMSG_FIRSTHDR; `cmsg` is a header of this buffer.
        cmsg = unsafe { libc::CMSG_NXTHDR(msg, cmsg) };
    }
    None
}

/// Decodes the VLAN fields of a `tpacket_auxdata`. Kernels that predate
/// `TP_STATUS_VLAN_TPID_VALID` only strip 802.1Q tags, hence the default.
pub(super) fn tag_from_aux(status: u32, tci: u16, tpid: u16) -> Option<VlanTag> {
    if status & libc::TP_STATUS_VLAN_VALID == 0 {
        return None;
    }
    let tpid = if status & libc::TP_STATUS_VLAN_TPID_VALID != 0 && tpid != 0 {
        tpid
    } else {
        libc::ETH_P_8021Q as u16
    };
    Some(VlanTag { tpid, tci })
}

/// The message headers, iovecs and control buffers of one `recvmmsg(2)` call
/// on a packet socket, allocated once (a port keeps one for its lifetime) so
/// that reading a batch allocates nothing. [`RecvBatch::recv`] reads up to
/// [`RecvBatch::capacity`] frames into the caller's buffers;
/// [`RecvBatch::received`] then tells each one's length and stripped VLAN tag.
pub struct RecvBatch {
    msgs: Box<[libc::mmsghdr]>,
    iovs: Box<[libc::iovec]>,
    aux: Box<[AuxBuffer]>,
    /// How many headers the last successful [`RecvBatch::recv`] filled.
    filled: usize,
}

// SAFETY: the raw pointers in `msgs` and `iovs` are set at the start of every
// `recv` (which takes `&mut self`) and point either into buffers borrowed only
// for that call, never touched again, or into `self.iovs` and `self.aux`, heap
// slices this struct owns and that move with it. Nothing is shared with
// another value, so moving the struct to another thread is sound.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    /// Room for `capacity` messages per call (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let msgs = (0..capacity)
            .map(|_| {
                // SAFETY: all-zero is a valid `mmsghdr` (null pointers, zero
                // lengths); `recv` sets the fields that matter before every call.
                unsafe { std::mem::zeroed::<libc::mmsghdr>() }
            })
            .collect();
        RecvBatch {
            msgs,
            iovs: (0..capacity)
                .map(|_| libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                })
                .collect(),
            aux: (0..capacity).map(|_| AuxBuffer::new()).collect(),
            filled: 0,
        }
    }

    /// The most frames one [`recv`](Self::recv) reads.
    pub fn capacity(&self) -> usize {
        self.msgs.len()
    }

    /// Reads up to [`capacity`](Self::capacity) frames (vnet header included)
    /// from a packet socket made by [`open_packet_socket`] with one
    /// `recvmmsg(2)` (`MSG_DONTWAIT`): frame `i` lands in the `i`th buffer of
    /// `bufs`. Returns how many were read; see [`received`](Self::received)
    /// for each one's length and tag.
    ///
    /// Returns [`io::ErrorKind::WouldBlock`] when nothing is queued; retries on
    /// `EINTR`. An error met after some frames were read is left for the next
    /// call, as `recvmmsg` does.
    pub fn recv<'a>(
        &mut self,
        fd: BorrowedFd<'_>,
        bufs: impl IntoIterator<Item = &'a mut [u8]>,
    ) -> io::Result<usize> {
        self.filled = 0;
        let mut count = 0;
        for (iov, buf) in self.iovs.iter_mut().zip(bufs) {
            iov.iov_base = buf.as_mut_ptr().cast();
            iov.iov_len = buf.len();
            count += 1;
        }
        if count == 0 {
            return Ok(0);
        }
        loop {
            for ((msg, iov), aux) in self
                .msgs
                .iter_mut()
                .zip(self.iovs.iter_mut())
                .zip(self.aux.iter_mut())
                .take(count)
            {
                msg.msg_hdr.msg_iov = iov;
                msg.msg_hdr.msg_iovlen = 1;
                msg.msg_hdr.msg_control = aux.bytes.as_mut_ptr().cast();
                // The kernel shrinks this to what it wrote: reset every call.
                msg.msg_hdr.msg_controllen = AUX_CMSG_SPACE as _;
                msg.msg_hdr.msg_flags = 0;
                msg.msg_len = 0;
            }
            // SAFETY: the first `count` headers each point to one iovec of
            // `self.iovs` covering a distinct buffer borrowed mutably from
            // `bufs` (writable for its length; the borrows are `'a`, which
            // outlives this call) and to a distinct `AuxBuffer` of `self.aux`
            // (writable for `msg_controllen` bytes, aligned for `cmsghdr`);
            // `count` does not exceed the length of `self.msgs`; `fd` is a live
            // descriptor borrowed for the call; a null timeout is allowed.
            let n = unsafe {
                libc::recvmmsg(
                    fd.as_raw_fd(),
                    self.msgs.as_mut_ptr(),
                    count as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if n >= 0 {
                self.filled = n as usize;
                return Ok(self.filled);
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }

    /// Length (vnet header included) and stripped VLAN tag of frame `i` of the
    /// last [`recv`](Self::recv); `None` past the frames it read.
    pub fn received(&self, i: usize) -> Option<(usize, Option<VlanTag>)> {
        // `stripped_tag` reads only `msg_control`, which still points into
        // `self.aux` (a heap slice: moving `self` does not move it), not the
        // iovecs, whose buffers were borrowed for the `recv` call alone.
        let msg = self.msgs[..self.filled].get(i)?;
        Some((msg.msg_len as usize, stripped_tag(&msg.msg_hdr)))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::sys::netns::run_in_netns;
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
        let veth = Veth::into_netns(&ns);

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

    /// `frame` (vnet header first) with a `tpid`/`tci` tag inserted after the
    /// MAC addresses.
    fn tagged(frame: &[u8], tpid: u16, tci: u16) -> Vec<u8> {
        let eth = VNET_HDR_LEN;
        let mut out = frame[..eth + 12].to_vec();
        out.extend_from_slice(&tpid.to_be_bytes());
        out.extend_from_slice(&tci.to_be_bytes());
        out.extend_from_slice(&frame[eth + 12..]);
        out
    }

    /// Reads with [`recv_packet`] until a frame carrying `marker` arrives.
    fn recv_tagged(
        fd: BorrowedFd<'_>,
        marker: &[u8],
        aux: &mut AuxBuffer,
    ) -> Option<(Vec<u8>, Option<VlanTag>)> {
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        let mut buf = vec![0u8; 65536 + 64];
        while std::time::Instant::now() < deadline {
            match recv_packet(fd, &mut buf, aux) {
                Ok((n, tag)) if buf[..n].windows(marker.len()).any(|w| w == marker) => {
                    return Some((buf[..n].to_vec(), tag));
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("recv_packet: {e}"),
            }
        }
        None
    }

    #[test]
    fn aux_status_decodes_to_the_stripped_tag() {
        use libc::{TP_STATUS_USER, TP_STATUS_VLAN_TPID_VALID, TP_STATUS_VLAN_VALID};
        assert_eq!(tag_from_aux(TP_STATUS_USER, 0, 0), None);
        assert_eq!(
            tag_from_aux(TP_STATUS_USER, 0xa00a, 0x8100),
            None,
            "fields without VLAN_VALID are ignored"
        );
        let all = TP_STATUS_USER | TP_STATUS_VLAN_VALID | TP_STATUS_VLAN_TPID_VALID;
        assert_eq!(
            tag_from_aux(all, 0x6014, 0x88a8),
            Some(VlanTag {
                tpid: 0x88a8,
                tci: 0x6014
            })
        );
        // A priority tag (VID 0) is still a tag.
        assert_eq!(
            tag_from_aux(all, 0, 0x8100),
            Some(VlanTag {
                tpid: 0x8100,
                tci: 0
            })
        );
        // No TPID reported: the kernel only stripped 802.1Q then.
        assert_eq!(
            tag_from_aux(TP_STATUS_VLAN_VALID, 10, 0),
            Some(VlanTag {
                tpid: 0x8100,
                tci: 10
            })
        );
    }

    #[test]
    fn stripped_vlan_tags_are_reported_and_tags_are_sent_as_written() {
        // Privileged: a veth pair with one end in a fresh netns; frames of a
        // local-experimental EtherType on that veth only.
        if !is_root() {
            eprintln!(
                "skipping stripped_vlan_tags_are_reported_and_tags_are_sent_as_written: needs root"
            );
            return;
        }
        let ns = Netns::new();
        let veth = Veth::into_netns(&ns);
        let host = open_packet_socket(&veth.host).unwrap();
        let peer_name = veth.peer.clone();
        let inside = run_in_netns(&ns.netns_ref(), move || open_packet_socket(&peer_name))
            .unwrap()
            .unwrap();
        let mut aux = AuxBuffer::new();

        // 802.1Q with priority 5 and VID 10, written into the netns end: the host
        // end reads the frame without its tag, and the tag (PCP included) beside it.
        let marker: &[u8] = b"switchyard dot1q";
        let plain = test_frame_with_vnet_hdr([0x02, 0, 0, 0, 0, 3], marker);
        let wire = tagged(&plain, 0x8100, (5 << 13) | 10);
        assert_eq!(write_fd(inside.as_fd(), &wire).unwrap(), wire.len());
        let (got, tag) = recv_tagged(host.as_fd(), marker, &mut aux)
            .expect("tagged frame did not reach the host end");
        assert_eq!(
            tag,
            Some(VlanTag {
                tpid: 0x8100,
                tci: (5 << 13) | 10
            })
        );
        assert_eq!(got[VNET_HDR_LEN..], plain[VNET_HDR_LEN..]);

        // 802.1ad outer tag over an 802.1Q inner one: only the outer is stripped.
        let marker: &[u8] = b"switchyard qinq";
        let plain = test_frame_with_vnet_hdr([0x02, 0, 0, 0, 0, 3], marker);
        let inner = tagged(&plain, 0x8100, 30);
        let wire = tagged(&inner, 0x88a8, (3 << 13) | 20);
        assert_eq!(write_fd(inside.as_fd(), &wire).unwrap(), wire.len());
        let (got, tag) = recv_tagged(host.as_fd(), marker, &mut aux)
            .expect("802.1ad frame did not reach the host end");
        assert_eq!(
            tag,
            Some(VlanTag {
                tpid: 0x88a8,
                tci: (3 << 13) | 20
            })
        );
        assert_eq!(got[VNET_HDR_LEN..], inner[VNET_HDR_LEN..]);

        // Untagged: no tag reported, with the same buffer reused.
        let marker: &[u8] = b"switchyard plain";
        let plain = test_frame_with_vnet_hdr([0x02, 0, 0, 0, 0, 3], marker);
        assert_eq!(write_fd(inside.as_fd(), &plain).unwrap(), plain.len());
        let (got, tag) = recv_tagged(host.as_fd(), marker, &mut aux)
            .expect("untagged frame did not reach the host end");
        assert_eq!(tag, None);
        assert_eq!(got, plain);

        // Transmit: a tag written in the data leaves tagged (the far end's kernel
        // strips it and reports it, which it only does for a frame that had one).
        let marker: &[u8] = b"switchyard tx tag";
        let plain = test_frame_with_vnet_hdr([0x02, 0, 0, 0, 0, 4], marker);
        let wire = tagged(&plain, 0x8100, 20);
        assert_eq!(write_fd(host.as_fd(), &wire).unwrap(), wire.len());
        let (got, tag) = recv_tagged(inside.as_fd(), marker, &mut aux)
            .expect("tagged frame sent on the host end did not arrive in the netns");
        assert_eq!(
            tag,
            Some(VlanTag {
                tpid: 0x8100,
                tci: 20
            })
        );
        assert_eq!(got[VNET_HDR_LEN..], plain[VNET_HDR_LEN..]);
    }

    #[test]
    fn missing_interface_is_named() {
        let err = open_packet_socket("ys-nosuch0").unwrap_err();
        assert!(err.to_string().contains("ys-nosuch0"), "{err}");
    }
}
