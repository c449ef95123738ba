//! Ports for QEMU's socket networking: a VM's NIC as `-netdev stream` (a
//! Unix stream socket yardd listens on, [`stream::QemuStreamPort`]) or
//! `-netdev dgram` (a Unix datagram or loopback UDP socket yardd binds,
//! [`dgram::QemuDgramPort`]). Neither needs any privilege.
//!
//! Contract: QEMU carries plain Ethernet frames over these sockets, with no
//! virtio-net header, so such a port takes neither GSO frames nor partial
//! checksums (the bridge segments and completes them in software first) and
//! every frame it hands in has no offloads. A port stays in the datapath
//! whether or not a VM is there: while none is, what is sent to it is
//! refused with [`std::io::ErrorKind::NotConnected`], which the bridge counts
//! as `port-down`. What the control plane shows of the VM's side — connected
//! or waiting, and why — is in the port's [`LinkStatus`], written only when
//! that changes (never per frame).

pub mod dgram;
pub mod framing;
pub mod stream;

use std::sync::{Mutex, MutexGuard};

/// The longest frame QEMU sends or takes on a stream: it closes the
/// connection when the length before a frame is larger.
pub const MAX_QEMU_FRAME: usize = 69_632;

/// Whether a VM is on a QEMU port, as the control plane reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkState {
    /// A VM is connected (stream) or has sent (datagram) and is answered.
    pub up: bool,
    /// Who is connected, or why none is and what yardd waits for.
    pub detail: String,
}

/// A QEMU port's [`LinkState`], shared by the port's handles on the
/// datapath threads and the control plane.
#[derive(Debug)]
pub struct LinkStatus {
    state: Mutex<LinkState>,
}

impl LinkStatus {
    /// No VM yet: `detail` says what yardd waits for.
    pub fn waiting(detail: String) -> Self {
        LinkStatus {
            state: Mutex::new(LinkState { up: false, detail }),
        }
    }

    /// The state now.
    pub fn get(&self) -> LinkState {
        self.lock().clone()
    }

    /// Records a change (slow path: a VM came or went).
    pub fn set(&self, up: bool, detail: String) {
        *self.lock() = LinkState { up, detail };
    }

    fn lock(&self) -> MutexGuard<'_, LinkState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}
