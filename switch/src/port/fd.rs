//! A port over a file descriptor that carries a virtio-net header before each
//! frame: a TAP opened with `IFF_VNET_HDR`, or an AF_PACKET socket with
//! `PACKET_VNET_HDR`. One read and one write move one frame.
//!
//! The two flavours differ on receive only. A TAP hands over frames exactly as
//! the container sent them, VLAN tags included, so it is read with `read(2)`.
//! A packet socket sees frames after the kernel took their outer VLAN tag out;
//! it is read with `recvmsg(2)` and `PACKET_AUXDATA`, and the tag is put back
//! in front of the EtherType, so the bridge judges the frame as it was on the
//! wire (a tagged frame on an access port is dropped, on a trunk it selects the
//! network). On transmit a tag in the data leaves as it is on both flavours.
//! Nothing here allocates per frame: the control-message buffer lives in the
//! port.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use super::Port;
use crate::frame::Frame;
use crate::sys;

/// How frames are read from the descriptor.
enum Flavour {
    /// A TAP: tags are in the data.
    Tap,
    /// An AF_PACKET socket: the kernel reports stripped tags in control data,
    /// which lands in this buffer.
    Packet(sys::AuxBuffer),
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
            flavour: Flavour::Packet(sys::AuxBuffer::new()),
        }
    }
}

impl Port for FdPort {
    fn recv(&mut self, frame: &mut Frame) -> io::Result<bool> {
        let fd = self.fd.as_fd();
        loop {
            let read = match &mut self.flavour {
                Flavour::Tap => sys::read_fd(fd, frame.recv_buf()).map(|n| (n, None)),
                Flavour::Packet(aux) => sys::recv_packet(fd, frame.recv_buf(), aux),
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

    fn send(&mut self, frame: &mut Frame) -> io::Result<()> {
        let fd = self.fd.as_fd();
        loop {
            match sys::write_fd(fd, frame.wire()) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
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
            Flavour::Tap => FdPort::new(fd),
            Flavour::Packet(_) => FdPort::packet(fd),
        }))
    }
}
