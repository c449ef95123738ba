//! A port over a file descriptor that carries a virtio-net header before each
//! frame: a TAP opened with `IFF_VNET_HDR`, or an AF_PACKET socket with
//! `PACKET_VNET_HDR`. One write moves one frame.
//!
//! A TAP hands over frames exactly as the container sent them, VLAN tags
//! included. It is read and written in batches through io_uring
//! ([`super::ring`]: one system call for many reads, one for the writes of
//! a round, handed over by [`Port::flush`]) unless `yardd --io plain` or the
//! kernel says otherwise; then, or once a ring fails, with `read(2)` and
//! `write(2)`, one frame per call. A packet socket sees frames after the kernel took their
//! outer VLAN tag out; it is read with `recvmmsg(2)` (a whole batch per
//! call, straight into the frames' buffers) and `PACKET_AUXDATA`, or, with
//! `yardd --packet-io ring` where the kernel allows, through a receive ring
//! the kernel fills ([`super::packet_ring`]: no system call per batch, one
//! copy out of the ring per frame); each frame's tag is put back in front of the EtherType, so the bridge judges the frame
//! as it was on the wire (a tagged frame on an access port is dropped, on a
//! trunk it selects the network). On transmit a tag in the data leaves as it
//! is on both flavours. A packet socket's small frames (up to 2 KiB) wait in
//! the port and leave with one `sendmmsg(2)` per round ([`Port::flush`]); a
//! larger one is sent at once after them. Nothing here allocates per frame:
//! the message headers and control-message buffers live in the port.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use super::packet_ring::{self, PacketIo};
use super::ring::{self, RingTap, TapIo};
use super::{Port, PortCounters};
use crate::dataplane::frame::Frame;
use crate::dataplane::threads::BATCH;
use crate::dataplane::verdict::DropReason;
use crate::sys;

/// How frames are read from the descriptor.
enum Flavour {
    /// A TAP: tags are in the data.
    Tap,
    /// A TAP read and written through its io_uring.
    RingTap(Box<RingTap>),
    /// An AF_PACKET socket: the kernel reports stripped tags in control data,
    /// which lands in these buffers (one frame, or a batch of [`BATCH`]);
    /// small frames sent wait in a [`sys::SendBatch`] for [`Port::flush`].
    Packet(sys::AuxBuffer, Box<sys::RecvBatch>, Box<PacketSends>),
    /// An AF_PACKET socket read through its receive ring
    /// ([`packet_ring`]); frames too large for a slot are read from the
    /// socket with `recvmmsg(2)` through the batch. Sends as
    /// [`Flavour::Packet`].
    PacketRing(Box<sys::RxRing>, Box<sys::RecvBatch>, Box<PacketSends>),
}

/// A packet socket's queued sends, and those the socket refused at a flush
/// since the last [`Port::take_drops`]: (frames, bytes) for
/// `tx-queue-full` and for `tx-error`.
struct PacketSends {
    batch: sys::SendBatch,
    refused: [(u64, u64); 2],
}

impl PacketSends {
    fn new() -> Self {
        PacketSends {
            batch: sys::SendBatch::new(),
            refused: [(0, 0); 2],
        }
    }

    /// Sends the queued frames with one `sendmmsg(2)` (as few as the socket
    /// takes), counting the refused ones.
    fn flush(&mut self, fd: BorrowedFd<'_>) {
        let refused = &mut self.refused;
        self.batch.flush(fd, None, |e, len| {
            let kind = usize::from(e.kind() != io::ErrorKind::WouldBlock);
            refused[kind].0 += 1;
            refused[kind].1 += u64::from(len);
        });
    }
}

/// A TAP device or AF_PACKET socket.
pub struct FdPort {
    fd: OwnedFd,
    flavour: Flavour,
}

impl FdPort {
    /// Wraps a non-blocking TAP fd (from [`sys::open_tap`]) that frames its
    /// packets with a virtio-net header and keeps VLAN tags in the data;
    /// with an io_uring of its own when [`ring::tap_io`] allows and the
    /// kernel can ([`ring::log_fallback`] says why not).
    pub fn new(fd: OwnedFd) -> Self {
        let flavour = match ring::tap_io() {
            TapIo::Plain => Flavour::Tap,
            TapIo::Uring => match RingTap::new(fd.as_fd()) {
                Ok(ring) => Flavour::RingTap(Box::new(ring)),
                Err(reason) => {
                    ring::log_fallback(&reason);
                    Flavour::Tap
                }
            },
        };
        FdPort { fd, flavour }
    }

    /// True when the port batches its I/O through io_uring.
    pub fn batches_through_ring(&self) -> bool {
        matches!(self.flavour, Flavour::RingTap(_))
    }

    /// Goes on without the ring after it failed with `error`, and says so.
    fn drop_ring(&mut self, error: &io::Error) {
        tracing::warn!(%error, "a TAP port's io_uring failed; it goes on with plain read/write");
        self.flavour = Flavour::Tap;
    }

    /// Wraps a non-blocking AF_PACKET socket from [`sys::open_packet_socket`]
    /// (virtio-net header and `PACKET_AUXDATA` on): received frames get back
    /// the VLAN tag the kernel removed.
    pub fn packet(fd: OwnedFd) -> Self {
        FdPort {
            fd,
            flavour: Flavour::Packet(
                sys::AuxBuffer::new(),
                Box::new(sys::RecvBatch::new(BATCH)),
                Box::new(PacketSends::new()),
            ),
        }
    }

    /// Opens an AF_PACKET socket on interface `ifname` and wraps it: read
    /// through a receive ring when [`packet_ring::packet_io`] allows and the
    /// kernel takes one, else with `recvmmsg(2)` as [`FdPort::packet`].
    pub fn open_packet(ifname: &str) -> io::Result<Self> {
        match packet_ring::packet_io() {
            PacketIo::Plain => Ok(FdPort::packet(sys::open_packet_socket(ifname)?)),
            PacketIo::Ring => {
                let (fd, ring) = sys::open_packet_socket_with_rx_ring(ifname)?;
                Ok(FdPort::packet_with_ring(fd, ring))
            }
        }
    }

    /// Wraps a packet socket from [`sys::open_packet_socket_with_rx_ring`]
    /// with its receive ring, or, when the kernel refused the ring, as
    /// [`FdPort::packet`] after logging why ([`packet_ring::log_fallback`]).
    pub fn packet_with_ring(fd: OwnedFd, ring: io::Result<sys::RxRing>) -> Self {
        match ring {
            Ok(ring) => FdPort {
                fd,
                flavour: Flavour::PacketRing(
                    Box::new(ring),
                    Box::new(sys::RecvBatch::new(BATCH)),
                    Box::new(PacketSends::new()),
                ),
            },
            Err(reason) => {
                packet_ring::log_fallback(&reason);
                FdPort::packet(fd)
            }
        }
    }

    /// True when the port receives through a packet socket's receive ring.
    pub fn receives_through_ring(&self) -> bool {
        matches!(self.flavour, Flavour::PacketRing(..))
    }
}

impl Port for FdPort {
    fn recv(&mut self, frame: &mut Frame) -> io::Result<bool> {
        let fd = self.fd.as_fd();
        loop {
            let read = match &mut self.flavour {
                Flavour::Tap | Flavour::RingTap(_) => {
                    sys::read_fd(fd, frame.recv_buf()).map(|n| (n, None))
                }
                Flavour::Packet(aux, ..) => sys::recv_packet(fd, frame.recv_buf(), aux),
                Flavour::PacketRing(ring, copies, _) => {
                    let (n, result) =
                        packet_ring::recv_ring_batch(fd, ring, copies, std::slice::from_mut(frame));
                    result?;
                    return Ok(n == 1);
                }
            };
            match read {
                Ok((n, tag)) => {
                    if frame.set_received(n) {
                        if let Some(tag) = tag {
                            // A frame too short to hold MAC addresses is left
                            // as it is; the bridge drops it as malformed.
                            frame.push_vlan_tci(tag.tpid, tag.tci);
                        }
                        return Ok(true);
                    }
                    // A read shorter than the header carries no frame: skip it.
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// A packet socket reads the whole batch with `recvmmsg(2)`, a TAP with
    /// a ring with one io_uring batch at a time; a plain TAP reads one frame
    /// per `read(2)`, as [`Port::recv_batch`] does by default.
    fn recv_batch(&mut self, frames: &mut [Frame]) -> (usize, io::Result<()>) {
        match &mut self.flavour {
            Flavour::Packet(_, batch, _) => recv_packet_batch(self.fd.as_fd(), batch, frames),
            Flavour::PacketRing(ring, copies, _) => {
                packet_ring::recv_ring_batch(self.fd.as_fd(), ring, copies, frames)
            }
            Flavour::RingTap(ring) => match ring.recv_batch(self.fd.as_fd(), frames) {
                Ok(received) => received,
                Err(e) => {
                    self.drop_ring(&e);
                    super::recv_each(self, frames)
                }
            },
            Flavour::Tap => super::recv_each(self, frames),
        }
    }

    fn send(&mut self, frame: &mut Frame) -> io::Result<()> {
        match &mut self.flavour {
            Flavour::RingTap(ring) => match ring.send(self.fd.as_fd(), frame) {
                Ok(sent) => return sent,
                Err(e) => self.drop_ring(&e),
            },
            Flavour::Packet(_, _, sends) | Flavour::PacketRing(_, _, sends) => {
                let len = frame.len() as u32;
                if sends.batch.queue(frame.wire(), len) {
                    return Ok(());
                }
                // Larger than a slot (a GSO frame), or the slots are full:
                // what was queued leaves first.
                sends.flush(self.fd.as_fd());
                if sends.batch.queue(frame.wire(), len) {
                    return Ok(());
                }
            }
            Flavour::Tap => {}
        }
        ring::write_plain(self.fd.as_fd(), frame.wire())
    }

    fn has_queued(&self) -> bool {
        match &self.flavour {
            Flavour::RingTap(ring) => ring.has_queued(),
            Flavour::Packet(_, _, sends) | Flavour::PacketRing(_, _, sends) => {
                sends.batch.queued() > 0
            }
            Flavour::Tap => false,
        }
    }

    fn flush(&mut self) {
        match &mut self.flavour {
            Flavour::RingTap(ring) => {
                if let Err(e) = ring.flush(self.fd.as_fd()) {
                    self.drop_ring(&e);
                }
            }
            Flavour::Packet(_, _, sends) | Flavour::PacketRing(_, _, sends) => {
                sends.flush(self.fd.as_fd())
            }
            Flavour::Tap => {}
        }
    }

    fn take_drops(&mut self, counters: &mut PortCounters) {
        match &mut self.flavour {
            Flavour::RingTap(ring) => ring.take_drops(counters),
            Flavour::Packet(_, _, sends) | Flavour::PacketRing(_, _, sends) => {
                for (index, reason) in [DropReason::TxQueueFull, DropReason::TxError]
                    .into_iter()
                    .enumerate()
                {
                    let (frames, bytes) = std::mem::take(&mut sends.refused[index]);
                    counters.tx_packets = counters.tx_packets.saturating_sub(frames);
                    counters.tx_bytes = counters.tx_bytes.saturating_sub(bytes);
                    counters.drops[reason.index()] += frames;
                }
            }
            Flavour::Tap => {}
        }
    }

    fn raw_fd(&self) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
    }

    /// A duplicate descriptor: one `write` or `sendto` moves one whole frame,
    /// so threads sending through their own duplicates never interleave.
    fn share(&self) -> io::Result<Box<dyn Port>> {
        let fd = self.fd.try_clone()?;
        Ok(Box::new(match self.flavour {
            Flavour::Tap | Flavour::RingTap(_) => FdPort::new(fd),
            // Only the port's own thread reads, so a sharing one needs no ring.
            Flavour::Packet(..) | Flavour::PacketRing(..) => FdPort::packet(fd),
        }))
    }
}

/// Fills `frames` from a packet socket, one `recvmmsg(2)` per
/// [`sys::RecvBatch::capacity`] frames, with the same per-frame rules as
/// [`FdPort::recv`]: a message shorter than the vnet header is skipped (the
/// frames after it move up, so `frames[..n]` stays in arrival order) and each
/// frame gets back the VLAN tag the kernel removed. Frames read before an
/// error are kept and returned with it.
pub(super) fn recv_packet_batch(
    fd: BorrowedFd<'_>,
    batch: &mut sys::RecvBatch,
    frames: &mut [Frame],
) -> (usize, io::Result<()>) {
    let mut kept = 0;
    while kept < frames.len() {
        let first = kept;
        let want = (frames.len() - first).min(batch.capacity());
        let bufs = frames[first..first + want].iter_mut().map(Frame::recv_buf);
        let got = match batch.recv(fd, bufs) {
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return (kept, Err(e)),
        };
        for i in 0..got {
            let Some((len, tag)) = batch.received(i) else {
                break;
            };
            let frame = &mut frames[first + i];
            if !frame.set_received(len) {
                continue;
            }
            if let Some(tag) = tag {
                // As in `recv`: a frame too short for MAC addresses is left as
                // it is, and the bridge drops it as malformed.
                frame.push_vlan_tci(tag.tpid, tag.tci);
            }
            frames.swap(kept, first + i);
            kept += 1;
        }
        // A short batch means the queue is empty; a full one with skipped
        // messages leaves slots to fill, and more may be queued.
        if got < want {
            break;
        }
    }
    (kept, Ok(()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixDatagram;
    use std::time::Duration;

    use super::*;
    use crate::sys::netns::run_in_netns;
    use crate::sys::testutil::{is_root, Netns, Veth};
    use crate::sys::{write_fd, VNET_HDR_LEN};
    use yard_wire::offload::Offload;
    use yard_wire::vnet::F_NEEDS_CSUM;

    /// A veth pair with one end in `ns`, both ends at MTU `mtu`.
    fn veth_with_mtu(ns: &Netns, mtu: &str) -> Veth {
        let veth = Veth::into_netns(ns);
        crate::sys::testutil::ip(&["link", "set", "dev", &veth.host, "mtu", mtu]);
        crate::sys::testutil::ip(&[
            "-n",
            ns.name(),
            "link",
            "set",
            "dev",
            &veth.peer,
            "mtu",
            mtu,
        ]);
        veth
    }

    /// A broadcast UDP/IPv4 frame from `src` carrying `marker`, vnet header
    /// (`vnet`) in front.
    fn udp_frame(src: [u8; 6], marker: &[u8], vnet: Offload) -> Vec<u8> {
        let mut out = vnet.to_header().to_vec();
        etherparse::PacketBuilder::ethernet2(src, [0xff; 6])
            .ipv4([10, 81, 0, 2], [10, 81, 0, 255], 64)
            .udp(4000, 4001)
            .write(&mut out, marker)
            .unwrap();
        out
    }

    /// `frame` (vnet header first) with a `tpid`/`tci` tag after the MACs.
    fn tagged(frame: &[u8], tpid: u16, tci: u16) -> Vec<u8> {
        let mac_end = VNET_HDR_LEN + 12;
        let mut out = frame[..mac_end].to_vec();
        out.extend_from_slice(&tpid.to_be_bytes());
        out.extend_from_slice(&tci.to_be_bytes());
        out.extend_from_slice(&frame[mac_end..]);
        out
    }

    fn carries(frame: &Frame, marker: &[u8]) -> bool {
        frame.data().windows(marker.len()).any(|w| w == marker)
    }

    #[test]
    fn one_recv_batch_reads_every_queued_frame_in_order_with_tags_restored() {
        reads_every_queued_frame_in_order_with_tags_restored(
            "one_recv_batch_reads_every_queued_frame_in_order_with_tags_restored",
            |iface| FdPort::packet(sys::open_packet_socket(iface).unwrap()),
        );
    }

    #[test]
    fn the_receive_ring_reads_every_queued_frame_in_order_with_tags_restored() {
        reads_every_queued_frame_in_order_with_tags_restored(
            "the_receive_ring_reads_every_queued_frame_in_order_with_tags_restored",
            |iface| {
                let (fd, ring) = sys::open_packet_socket_with_rx_ring(iface).unwrap();
                let port = FdPort::packet_with_ring(fd, ring);
                assert!(port.receives_through_ring(), "the kernel refused the ring");
                port
            },
        );
    }

    #[test]
    fn a_port_whose_ring_is_refused_reads_with_recvmmsg() {
        // A datagram socket pair stands in for a packet socket: the kernel
        // refuses PACKET_* options on it, as an old kernel or a filter would.
        let (sender, receiver) = UnixDatagram::pair().unwrap();
        let receiver = OwnedFd::from(receiver);
        let refused = sys::RxRing::setup(receiver.as_fd());
        let reason = refused.as_ref().err().expect("a ring on a unix socket");
        assert!(reason.to_string().contains("PACKET_VERSION"), "{reason}");
        let mut port = FdPort::packet_with_ring(receiver, refused);
        assert!(!port.receives_through_ring());
        let mut msg = Offload::NONE.to_header().to_vec();
        msg.extend_from_slice(&[0xff; 12]);
        msg.extend_from_slice(&[0x88, 0xb5, 7]);
        sender.send(&msg).unwrap();
        let mut frames: Vec<Frame> = (0..BATCH).map(|_| Frame::new()).collect();
        let (n, result) = port.recv_batch(&mut frames);
        result.unwrap();
        assert_eq!(n, 1);
        assert_eq!(frames[0].data(), &msg[VNET_HDR_LEN..]);
    }

    /// Frames written into a veth's far end, small, tagged, with a partial
    /// checksum and one larger than a ring slot, come out of a port made by
    /// `open` on the near end in order, byte for byte, in as few batches.
    fn reads_every_queued_frame_in_order_with_tags_restored(
        name: &str,
        open: impl FnOnce(&str) -> FdPort,
    ) {
        // Privileged: a veth pair with one end moved into a fresh netns; UDP
        // frames to an otherwise unused test subnet on that veth only.
        if !is_root() {
            eprintln!("skipping {name}: needs root");
            return;
        }
        let ns = Netns::new();
        // Room for a frame larger than a ring slot, without GSO.
        let veth = veth_with_mtu(&ns, "9000");
        let mut port = open(&veth.host);
        let peer_name = veth.peer.clone();
        let inside = run_in_netns(&ns.netns_ref(), move || sys::open_packet_socket(&peer_name))
            .unwrap()
            .unwrap();
        let mut frames: Vec<Frame> = (0..BATCH).map(|_| Frame::new()).collect();
        // Whatever the link sent on coming up (IPv6 DAD, MLD) is read first.
        while port.recv_batch(&mut frames).0 > 0 {}

        let src = [0x02, 0, 0, 0, 0, 5];
        let plain = Offload::NONE;
        // A partial checksum: the far end's vnet header says so, which shows
        // the header was read from each message and not just skipped.
        let partial = Offload {
            flags: F_NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 6,
            ..Offload::NONE
        };
        let dot1q = (5 << 13) | 10;
        let sent: Vec<(&[u8], Vec<u8>)> = vec![
            (b"batch one", udp_frame(src, b"batch one", plain)),
            (
                b"batch two",
                tagged(&udp_frame(src, b"batch two", plain), 0x8100, dot1q),
            ),
            (b"batch three", udp_frame(src, b"batch three", partial)),
            (
                b"batch four",
                tagged(&udp_frame(src, b"batch four", plain), 0x88a8, 20),
            ),
            (b"batch five", udp_frame(src, b"batch five", plain)),
            (b"batch jumbo", {
                let mut marker = b"batch jumbo".to_vec();
                marker.resize(8000, 0x5a);
                udp_frame(src, &marker, plain)
            }),
            (b"batch six", udp_frame(src, b"batch six", plain)),
        ];
        for (_, wire) in &sent {
            assert_eq!(write_fd(inside.as_fd(), wire).unwrap(), wire.len());
        }

        // veth hands frames to the receive backlog, which normally runs
        // before `write` returns; on a busy machine ksoftirqd may run it
        // later. So read batches until every frame is in (bounded), keeping
        // the frames of ours each call returned.
        let expected: Vec<&[u8]> = sent.iter().map(|(m, _)| *m).collect();
        let mut ours: Vec<Frame> = Vec::new();
        let mut largest_batch = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while ours.len() < sent.len() && std::time::Instant::now() < deadline {
            let (n, result) = port.recv_batch(&mut frames);
            result.unwrap();
            let before = ours.len();
            for f in &frames[..n] {
                if sent.iter().any(|(m, _)| carries(f, m)) {
                    let mut copy = Frame::new();
                    copy.fill(f.offload, f.data());
                    ours.push(copy);
                }
            }
            largest_batch = largest_batch.max(ours.len() - before);
            if n == 0 {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let order: Vec<&[u8]> = ours
            .iter()
            .map(|f| sent.iter().find(|(m, _)| carries(f, m)).unwrap().0)
            .collect();
        assert_eq!(order, expected, "every frame, in order");
        // Written before the first read, they wait in the socket together
        // (all, or those ksoftirqd delivered at once): one call reads more
        // than one.
        assert!(largest_batch > 1, "recv_batch returned one frame per call");
        // The kernel stripped the tags; the port put them back, so each frame
        // is byte for byte what was written after its vnet header.
        for (frame, (_, wire)) in ours.iter().zip(&sent) {
            assert_eq!(frame.data(), &wire[VNET_HDR_LEN..]);
        }
        assert_eq!(ours[0].offload, plain);
        assert_eq!(ours[1].outer_ethertype(), Some(0x8100));
        assert_eq!(ours[2].offload, partial);
        assert_eq!(ours[3].outer_ethertype(), Some(0x88a8));
        assert_eq!(port.recv_batch(&mut frames).0, 0, "nothing left behind");
    }

    #[test]
    fn a_packet_socket_sends_queued_and_large_frames_in_the_order_sent() {
        // Privileged: a veth pair with one end moved into a fresh netns;
        // broadcast frames of a local experimental EtherType on that veth only.
        if !is_root() {
            eprintln!("skipping a_packet_socket_sends_queued_and_large_frames_in_the_order_sent: needs root");
            return;
        }
        let ns = Netns::new();
        // Room for a frame larger than a send slot, without GSO.
        let veth = veth_with_mtu(&ns, "4000");
        let mut port = FdPort::packet(sys::open_packet_socket(&veth.host).unwrap());
        let peer_name = veth.peer.clone();
        let inside = run_in_netns(&ns.netns_ref(), move || sys::open_packet_socket(&peer_name))
            .unwrap()
            .unwrap();
        // Small frames wait for the flush; a 3000-byte one (larger than a
        // send slot) makes the queued ones leave first.
        let sizes = [60usize, 61, 100, 500, 1514, 3000, 64, 2000];
        for (k, &size) in sizes.iter().enumerate() {
            let mut bytes = vec![0xffu8; 6];
            bytes.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x77]);
            bytes.extend_from_slice(&[0x88, 0xb5, k as u8]);
            bytes.resize(size, k as u8);
            let mut frame = Frame::new();
            frame.fill(Offload::NONE, &bytes);
            port.send(&mut frame).unwrap();
        }
        assert!(
            port.has_queued(),
            "the last small frames wait for the flush"
        );
        port.flush();
        assert!(!port.has_queued());
        let mut counters = crate::dataplane::port::PortCounters::default();
        port.take_drops(&mut counters);
        assert_eq!(counters, Default::default(), "nothing refused");

        let mut seen = Vec::new();
        let mut buf = vec![0u8; 70_000];
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while seen.len() < sizes.len() && std::time::Instant::now() < deadline {
            match sys::read_fd(inside.as_fd(), &mut buf) {
                Ok(n) => {
                    let eth = &buf[VNET_HDR_LEN..n];
                    if eth.len() >= 15 && eth[12..14] == [0x88, 0xb5] {
                        seen.push((eth[14] as usize, eth.len()));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => panic!("{e}"),
            }
        }
        let expected: Vec<(usize, usize)> = sizes.iter().copied().enumerate().collect();
        assert_eq!(seen, expected, "every frame once, whole, in the order sent");
    }

    #[test]
    fn messages_shorter_than_the_vnet_header_are_skipped_and_the_batch_still_fills() {
        // recvmmsg on a datagram socket pair stands in for a packet socket (no
        // tags, no root): it can carry the short messages a packet socket
        // should never deliver but the port must survive.
        let (sender, receiver) = UnixDatagram::pair().unwrap();
        let mut port = FdPort::packet(OwnedFd::from(receiver));
        let short = [3usize, 10, 17];
        let total = 40u8;
        for k in 0..total {
            if short.contains(&usize::from(k)) {
                sender.send(&[0xee; VNET_HDR_LEN - 1]).unwrap();
                continue;
            }
            let vnet = Offload {
                gso_size: u16::from(k),
                ..Offload::NONE
            };
            let mut msg = vnet.to_header().to_vec();
            msg.extend_from_slice(&[0xff; 12]);
            msg.extend_from_slice(&[0x88, 0xb5, k]);
            sender.send(&msg).unwrap();
        }
        let valid: Vec<u8> = (0..total)
            .filter(|k| !short.contains(&usize::from(*k)))
            .collect();

        let mut frames: Vec<Frame> = (0..BATCH).map(|_| Frame::new()).collect();
        let mut seen = Vec::new();
        // Three of the first BATCH messages are skipped: a second recvmmsg
        // fills their slots, so the caller sees a full batch and reads again.
        let (n, result) = port.recv_batch(&mut frames);
        result.unwrap();
        assert_eq!(n, BATCH);
        for frame in &frames[..n] {
            assert_eq!(frame.len(), 15);
            assert_eq!(frame.offload.gso_size, u16::from(frame.data()[14]));
            seen.push(frame.data()[14]);
        }
        let (n, result) = port.recv_batch(&mut frames);
        result.unwrap();
        assert_eq!(n, valid.len() - BATCH);
        seen.extend(frames[..n].iter().map(|f| f.data()[14]));
        assert_eq!(seen, valid, "every full-size message once, in order");
        assert_eq!(port.recv_batch(&mut frames).0, 0);
    }
}
