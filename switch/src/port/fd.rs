//! A port over a file descriptor that carries a virtio-net header before each
//! frame: a TAP opened with `IFF_VNET_HDR`, or an AF_PACKET socket with
//! `PACKET_VNET_HDR`. One `read`/`write` moves one frame.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use super::Port;
use crate::frame::Frame;
use crate::sys;

/// A TAP device or AF_PACKET socket.
pub struct FdPort {
    fd: OwnedFd,
}

impl FdPort {
    /// Wraps a non-blocking fd that frames its packets with a virtio-net header.
    pub fn new(fd: OwnedFd) -> Self {
        FdPort { fd }
    }
}

impl Port for FdPort {
    fn recv(&mut self, frame: &mut Frame) -> io::Result<bool> {
        loop {
            match sys::read_fd(self.fd.as_fd(), frame.recv_buf()) {
                Ok(n) => {
                    if frame.set_received(n) {
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
}
