//! Ports: where frames enter and leave the switch.
//!
//! A [`Port`] moves whole frames, each with its virtio-net header, between a
//! device and a [`Frame`]. It knows nothing of networks or MAC tables; the
//! [`crate::bridge`] decides where frames go. Kinds: [`fd::FdPort`] (a TAP yardd
//! created, or an existing interface through AF_PACKET — both carry a
//! virtio-net header before each frame) and [`memory::MemoryPort`] (in-process
//! queues, for tests and benchmarks).

pub mod fd;
pub mod memory;
pub mod tunnel;

use std::io;
use std::os::fd::RawFd;

use crate::frame::Frame;
pub use crate::sys::Unsent;
use crate::verdict::DropReason;

/// Index of a port in the switch's port table; also its `mio::Token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortId(pub u32);

impl PortId {
    /// As a table index.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A device frames are read from and written to.
pub trait Port: Send {
    /// Reads one frame into `frame`. `Ok(false)` when none is waiting.
    fn recv(&mut self, frame: &mut Frame) -> io::Result<bool>;

    /// Reads up to `frames.len()` frames into `frames`; returns how many. A
    /// read error other than "nothing waiting" is returned after the frames
    /// already read. Ports over sockets read a whole batch with one system
    /// call; the default reads frame by frame with [`recv`](Self::recv).
    fn recv_batch(&mut self, frames: &mut [Frame]) -> (usize, io::Result<()>) {
        let mut n = 0;
        while n < frames.len() {
            match self.recv(&mut frames[n]) {
                Ok(true) => n += 1,
                Ok(false) => break,
                Err(e) => return (n, Err(e)),
            }
        }
        (n, Ok(()))
    }

    /// Sends one frame, or queues a copy of it until [`flush`](Self::flush)
    /// (the frame itself is free again when this returns). `Err(WouldBlock)`
    /// when the device queue is full.
    fn send(&mut self, frame: &mut Frame) -> io::Result<()>;

    /// Hands every queued frame to the device. Returns what could not be
    /// sent: those frames were counted as sent by [`send`](Self::send)'s
    /// caller, who now counts them as dropped. Ports that send at once have
    /// nothing to flush.
    fn flush(&mut self) -> Unsent {
        Unsent::default()
    }

    /// The file descriptor to poll for readability, if the port has one.
    fn raw_fd(&self) -> Option<RawFd>;

    /// True when the device takes GSO frames (virtio-net `gso_type` set) and
    /// segments them itself. When false the bridge hands it only segments cut
    /// in software ([`crate::offload::segment`]).
    fn accepts_gso(&self) -> bool {
        true
    }

    /// True when the device takes frames with a partial checksum (virtio-net
    /// `NEEDS_CSUM`) and completes it. When false the bridge completes it
    /// first ([`crate::offload::complete_checksum`]).
    fn accepts_partial_csum(&self) -> bool {
        true
    }
}

/// Traffic counters of one port.
#[derive(Debug, Clone, Default)]
pub struct PortCounters {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames sent.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Frames dropped, indexed by [`DropReason::index`].
    pub drops: [u64; DropReason::COUNT],
}

impl PortCounters {
    /// Counts one drop.
    pub fn drop_frame(&mut self, reason: DropReason) {
        self.drops[reason.index()] += 1;
    }

    /// Moves frames a [`Port::flush`] could not send from the sent counters
    /// to the drops.
    pub fn unsent(&mut self, unsent: Unsent) {
        let frames = (unsent.queue_full + unsent.errors) as u64;
        self.tx_packets = self.tx_packets.saturating_sub(frames);
        self.tx_bytes = self.tx_bytes.saturating_sub(unsent.bytes);
        self.drops[DropReason::TxQueueFull.index()] += unsent.queue_full as u64;
        self.drops[DropReason::TxError.index()] += unsent.errors as u64;
    }

    /// The drops as `(reason, count)` pairs, zeroes left out.
    pub fn drops_by_name(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|r| (r.as_str(), self.drops[r.index()]))
            .filter(|(_, n)| *n > 0)
    }
}
