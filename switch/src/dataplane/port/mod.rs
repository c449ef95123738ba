//! Ports: where frames enter and leave the switch.
//!
//! A [`Port`] moves whole frames, each with its virtio-net header, between a
//! device and a [`Frame`]. It knows nothing of networks or MAC tables; the
//! [`crate::dataplane::bridge`] decides where frames go. Kinds: [`fd::FdPort`] (a TAP yardd
//! created, or an existing interface through AF_PACKET — both carry a
//! virtio-net header before each frame) and [`memory::MemoryPort`] (in-process
//! queues, for tests and benchmarks), [`qemu`] (the sockets of QEMU's
//! `-netdev stream` and `-netdev dgram`); [`closed::ClosedPort`] stands in
//! for a device that is gone.

pub mod closed;
pub mod fd;
pub mod memory;
pub mod packet_ring;
pub mod qemu;
pub mod ring;
pub mod tunnel;

use std::io;
use std::os::fd::RawFd;

use crate::dataplane::frame::Frame;
use crate::dataplane::verdict::DropReason;

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

    /// Reads up to `frames.len()` frames into `frames[..n]` and returns `n`,
    /// stopping early when none is waiting. An error other than "nothing
    /// waiting" comes back beside the frames read before it, which are kept.
    ///
    /// The default calls [`recv`](Self::recv) once per frame; a port whose
    /// device can hand over a batch in one system call overrides it.
    fn recv_batch(&mut self, frames: &mut [Frame]) -> (usize, io::Result<()>) {
        recv_each(self, frames)
    }

    /// Makes the changes the port applies to every frame it sends (a
    /// tunnel completes checksums and clamps the TCP MSS), so that captures,
    /// taken just before [`send`](Self::send), show the frame as it leaves.
    /// The bridge calls it before each send; an error drops the frame.
    fn prepare(&self, _frame: &mut Frame) -> io::Result<()> {
        Ok(())
    }

    /// Writes one frame, or queues it for [`flush`](Self::flush) (a port
    /// that batches its writes). `Err(WouldBlock)` when the device queue is
    /// full.
    fn send(&mut self, frame: &mut Frame) -> io::Result<()>;

    /// True for a port whose device is gone: it refuses every frame
    /// (`port-down`). Lets a trace say so without sending.
    fn is_gone(&self) -> bool {
        false
    }

    /// What the port does to a frame on its way out besides sending it, in
    /// words (`yardctl trace`): a tunnel's encapsulation and MSS clamp.
    /// `None` for a port that sends frames as they are.
    fn describe_send(&self) -> Option<String> {
        None
    }

    /// True while frames [`send`](Self::send) queued wait for
    /// [`flush`](Self::flush).
    fn has_queued(&self) -> bool {
        false
    }

    /// Hands the device the frames [`send`](Self::send) queued. The
    /// datapath calls it for every port that [`has_queued`](Self::has_queued)
    /// before it sleeps, then [`take_drops`](Self::take_drops), which
    /// reports the frames the device refused.
    fn flush(&mut self) {}

    /// The file descriptor to poll for readability, if the port has one.
    fn raw_fd(&self) -> Option<RawFd>;

    /// Another handle on the same device, for a second datapath thread to
    /// send through (`yardd --threads`). Only the port's own thread reads.
    fn share(&self) -> io::Result<Box<dyn Port>>;

    /// Adds to `counters` the drops the port itself decided since the last
    /// call (a QEMU stream closed for an oversize frame; a queued frame the
    /// device refused at [`flush`](Self::flush), which also leaves the sent
    /// counters), and forgets them. The bridge calls it after each batch and
    /// each flush; most ports decide none.
    fn take_drops(&mut self, _counters: &mut PortCounters) {}

    /// True when the device takes GSO frames (virtio-net `gso_type` set) and
    /// segments them itself. When false the bridge hands it only segments cut
    /// in software ([`crate::dataplane::offload::segment`]).
    fn accepts_gso(&self) -> bool {
        true
    }

    /// True when the device takes frames with a partial checksum (virtio-net
    /// `NEEDS_CSUM`) and completes it. When false the bridge completes it
    /// first ([`crate::dataplane::offload::complete_checksum`]).
    fn accepts_partial_csum(&self) -> bool {
        true
    }
}

/// [`Port::recv_batch`] done with one [`Port::recv`] per frame: the default,
/// and what an overriding port falls back to for devices it cannot batch.
pub fn recv_each<P: Port + ?Sized>(port: &mut P, frames: &mut [Frame]) -> (usize, io::Result<()>) {
    let mut n = 0;
    while n < frames.len() {
        match port.recv(&mut frames[n]) {
            Ok(true) => n += 1,
            Ok(false) => break,
            Err(e) => return (n, Err(e)),
        }
    }
    (n, Ok(()))
}

/// Traffic counters of one port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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

    /// The drops as `(reason, count)` pairs, zeroes left out.
    pub fn drops_by_name(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|r| (r.as_str(), self.drops[r.index()]))
            .filter(|(_, n)| *n > 0)
    }

    /// Adds `other`'s counts to these (another datapath thread's counters of
    /// the same port).
    pub fn add(&mut self, other: &PortCounters) {
        self.rx_packets += other.rx_packets;
        self.rx_bytes += other.rx_bytes;
        self.tx_packets += other.tx_packets;
        self.tx_bytes += other.tx_bytes;
        for (total, n) in self.drops.iter_mut().zip(other.drops) {
            *total += n;
        }
    }
}

/// A port's counters under its name, as the datapath reports them to the
/// control plane (which turns them into the API's `PortStats`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortReport {
    /// The port's name.
    pub name: String,
    /// Its counters.
    pub counters: PortCounters,
}
