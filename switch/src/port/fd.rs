//! A port over a file descriptor that carries a virtio-net header before each
//! frame: a TAP opened with `IFF_VNET_HDR`, or an AF_PACKET socket with
//! `PACKET_VNET_HDR`.
//!
//! The two flavours differ on receive only. A TAP hands over frames exactly as
//! the container sent them, VLAN tags included, so it is read with `read(2)`.
//! A packet socket sees frames after the kernel took their outer VLAN tag out;
//! it is read with `recvmsg(2)` and `PACKET_AUXDATA`, and the tag is put back
//! in front of the EtherType, so the bridge judges the frame as it was on the
//! wire (a tagged frame on an access port is dropped, on a trunk it selects the
//! network). On transmit a tag in the data leaves as it is on both flavours.
//!
//! Batching: a TAP is not a socket, so it moves one frame per `read(2)` and
//! `write(2)` (with TSO on its frames are 64 KB, so that is few calls per
//! byte). A packet socket reads a batch with one `recvmmsg(2)` straight into
//! the frames, and queues copies of outgoing frames of up to
//! [`sys::SEND_QUEUE_SLOT`] bytes for one `sendmmsg(2)` per
//! [`Port::flush`]; a larger (GSO) frame is sent on its own, after what is
//! queued, since copying it would cost more than the call it saves.
//! Nothing here allocates per frame: control-message buffers and the send
//! queue live in the port.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use super::{Port, Unsent};
use crate::frame::Frame;
use crate::sys;

/// How frames are read from the descriptor.
enum Flavour {
    /// A TAP: tags are in the data.
    Tap,
    /// An AF_PACKET socket: the kernel reports stripped tags in control data,
    /// which lands in the port's buffers.
    Packet(Box<PacketIo>),
}

/// A packet socket's batch buffers.
struct PacketIo {
    /// Control data of one `recvmsg(2)`.
    aux: sys::AuxBuffer,
    /// Control data of one `recvmmsg(2)` batch.
    aux_batch: sys::AuxBatch,
    /// Length and stripped tag of each frame of a batch.
    got: [(usize, Option<sys::VlanTag>); sys::RECV_BATCH],
    /// Frames waiting for [`Port::flush`].
    queue: sys::SendQueue,
    /// What queue flushes made to free room could not send, reported at
    /// the next [`Port::flush`].
    unsent: Unsent,
}

/// Adds `more` to `total`.
fn add_unsent(total: &mut Unsent, more: Unsent) {
    total.queue_full += more.queue_full;
    total.errors += more.errors;
    total.bytes += more.bytes;
}

/// A TAP device or AF_PACKET socket.
pub struct FdPort {
    fd: OwnedFd,
    flavour: Flavour,
}

impl FdPort {
    /// Wraps a non-blocking TAP fd (from [`sys::open_tap`]) that frames its
    /// packets with a virtio-net header and keeps VLAN tags in the data.
    pub fn new(fd: OwnedFd) -> Self {
        FdPort {
            fd,
            flavour: Flavour::Tap,
        }
    }

    /// Wraps a non-blocking AF_PACKET socket from [`sys::open_packet_socket`]
    /// (virtio-net header and `PACKET_AUXDATA` on): received frames get back
    /// the VLAN tag the kernel removed.
    pub fn packet(fd: OwnedFd) -> Self {
        FdPort {
            fd,
            flavour: Flavour::Packet(Box::new(PacketIo {
                aux: sys::AuxBuffer::new(),
                aux_batch: sys::AuxBatch::new(),
                got: [(0, None); sys::RECV_BATCH],
                queue: sys::SendQueue::new(None),
                unsent: Unsent::default(),
            })),
        }
    }
}

impl Port for FdPort {
    fn recv(&mut self, frame: &mut Frame) -> io::Result<bool> {
        let fd = self.fd.as_fd();
        loop {
            let read = match &mut self.flavour {
                Flavour::Tap => sys::read_fd(fd, frame.recv_buf()).map(|n| (n, None)),
                Flavour::Packet(io) => sys::recv_packet(fd, frame.recv_buf(), &mut io.aux),
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

    fn recv_batch(&mut self, frames: &mut [Frame]) -> (usize, io::Result<()>) {
        let fd = self.fd.as_fd();
        let Flavour::Packet(io) = &mut self.flavour else {
            let mut n = 0;
            while n < frames.len() {
                match self.recv(&mut frames[n]) {
                    Ok(true) => n += 1,
                    Ok(false) => break,
                    Err(e) => return (n, Err(e)),
                }
            }
            return (n, Ok(()));
        };
        let mut n = 0;
        while n < frames.len() {
            let want = (frames.len() - n).min(sys::RECV_BATCH);
            let bufs = frames[n..n + want].iter_mut().map(|f| f.recv_buf());
            let read = match sys::recv_packets(fd, bufs, &mut io.aux_batch, &mut io.got[..want]) {
                Ok(read) => read,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return (n, Err(e)),
            };
            // Keep the frames in order, closing the gaps reads shorter than
            // the header leave (they carry no frame).
            let mut kept = n;
            for i in 0..read {
                let (len, tag) = io.got[i];
                let frame = &mut frames[n + i];
                if !frame.set_received(len) {
                    continue;
                }
                if let Some(tag) = tag {
                    // A frame too short to hold MAC addresses is left as it
                    // is; the bridge drops it as malformed.
                    frame.push_vlan_tci(tag.tpid, tag.tci);
                }
                frames.swap(kept, n + i);
                kept += 1;
            }
            n = kept;
            if read < want {
                // The socket is drained.
                break;
            }
        }
        (n, Ok(()))
    }

    fn send(&mut self, frame: &mut Frame) -> io::Result<()> {
        let fd = self.fd.as_fd();
        if let Flavour::Packet(io) = &mut self.flavour {
            let wire = frame.wire();
            if wire.len() <= sys::SEND_QUEUE_SLOT {
                if io.queue.is_full() {
                    let unsent = io.queue.flush(fd);
                    add_unsent(&mut io.unsent, unsent);
                }
                if io.queue.push(&[wire]) {
                    return Ok(());
                }
            }
            // Too large to copy: what was queued before it leaves first.
            let unsent = io.queue.flush(fd);
            add_unsent(&mut io.unsent, unsent);
        }
        loop {
            match sys::write_fd(fd, frame.wire()) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn flush(&mut self) -> Unsent {
        match &mut self.flavour {
            Flavour::Tap => Unsent::default(),
            Flavour::Packet(io) => {
                let mut unsent = std::mem::take(&mut io.unsent);
                add_unsent(&mut unsent, io.queue.flush(self.fd.as_fd()));
                unsent
            }
        }
    }

    fn raw_fd(&self) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
    }
}
