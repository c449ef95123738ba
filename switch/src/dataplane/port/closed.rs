//! A port whose device is gone: what stands in the bridge for a container
//! whose namespace went away, until the port is removed.
//!
//! Contract: a [`ClosedPort`] holds no file descriptor, never receives, and
//! refuses every frame with [`io::ErrorKind::NotConnected`], which the
//! bridge counts as the drop reason `port-down` on the port. So traffic to
//! a vanished container is dropped where the user can see why (`port
//! stats`), its learned MAC keeps pointing at it instead of flooding, and
//! the port's counters stay readable.

use std::io;
use std::os::fd::RawFd;

use super::Port;
use crate::dataplane::frame::Frame;

/// A port with no device behind it.
#[derive(Debug, Default, Clone, Copy)]
pub struct ClosedPort;

impl Port for ClosedPort {
    fn recv(&mut self, _frame: &mut Frame) -> io::Result<bool> {
        Ok(false)
    }

    fn send(&mut self, _frame: &mut Frame) -> io::Result<()> {
        Err(io::ErrorKind::NotConnected.into())
    }

    fn raw_fd(&self) -> Option<RawFd> {
        None
    }

    fn is_gone(&self) -> bool {
        true
    }

    fn share(&self) -> io::Result<Box<dyn Port>> {
        Ok(Box::new(ClosedPort))
    }
}
