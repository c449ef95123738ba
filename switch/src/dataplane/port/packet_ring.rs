//! Packet-socket (veth, NIC) ports read through a receive ring
//! ([`sys::RxRing`]), and the choice between it and `recvmmsg(2)`
//! (`yardd --packet-io`).
//!
//! Contract: [`recv_ring_batch`] fills the caller's frames from the ring's
//! filled slots in arrival order, copying each frame (virtio-net header
//! first) out of its slot into a pool [`Frame`] — one `memcpy` of the frame
//! per frame, which `recvmmsg` does too (from the socket buffer) but inside
//! a system call — and hands each slot back at once, so the ring never holds
//! a frame the datapath has. A frame too large for a slot (GSO, jumbo) is
//! read whole from the socket with `recvmsg(2)`, straight into the frame, in
//! its place in the order; one the kernel could neither place whole nor
//! copy (the socket's receive buffer was full) is skipped, as the kernel
//! drops it on the `recvmmsg` path for the same reason. The VLAN tag the kernel took out is put back,
//! as on the `recvmmsg` path. Sends are the same on both paths.
//!
//! When the kernel refuses the ring, the port reads with `recvmmsg` and one
//! log line (per yardd) says why.

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use super::fd::recv_packet_batch;
use crate::dataplane::frame::Frame;
use crate::sys::{self, RingSlot};

/// How packet-socket ports receive frames (`yardd --packet-io`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PacketIo {
    /// Through a receive ring the kernel fills (`PACKET_RX_RING`) where it
    /// allows one, else plain.
    Ring,
    /// With `recvmmsg(2)`, a batch per call.
    Plain,
}

/// The mode packet ports opened from now on use: [`PacketIo::Plain`] unless
/// [`set_packet_io`] said otherwise.
static PACKET_IO: AtomicU8 = AtomicU8::new(1);
/// The fallback to plain reads was logged at warn level once already.
static FALLBACK_LOGGED: AtomicBool = AtomicBool::new(false);

/// Sets how packet ports opened from now on receive (yardd calls it once,
/// at start, from `--packet-io`).
pub fn set_packet_io(mode: PacketIo) {
    PACKET_IO.store(
        match mode {
            PacketIo::Ring => 0,
            PacketIo::Plain => 1,
        },
        Ordering::Relaxed,
    );
}

/// How packet ports opened now receive.
pub fn packet_io() -> PacketIo {
    match PACKET_IO.load(Ordering::Relaxed) {
        0 => PacketIo::Ring,
        _ => PacketIo::Plain,
    }
}

/// Logs why a packet port reads with `recvmmsg`: at warn level the first
/// time in this yardd, at debug level after that (every port would say the
/// same).
pub fn log_fallback(reason: &dyn std::fmt::Display) {
    if FALLBACK_LOGGED.swap(true, Ordering::Relaxed) {
        tracing::debug!(%reason, "packet port reads with recvmmsg");
    } else {
        tracing::warn!(%reason, "packet (veth) ports read with recvmmsg instead of a receive ring (yardd --packet-io plain says so without this line)");
    }
}

/// Fills `frames[..n]` from `ring` (and, for frames too large for a slot,
/// from the socket `fd` it belongs to, with `copies`: one `recvmmsg` for
/// each run of them) and returns `n`. A frame shorter than a virtio-net header, or one
/// the kernel could not copy whole, is skipped. An error reading a large frame comes back beside the
/// frames read before it.
pub fn recv_ring_batch(
    fd: BorrowedFd<'_>,
    ring: &mut sys::RxRing,
    copies: &mut sys::RecvBatch,
    frames: &mut [Frame],
) -> (usize, io::Result<()>) {
    let mut kept = 0;
    while kept < frames.len() {
        let Some(slot) = ring.next() else {
            break;
        };
        let frame = &mut frames[kept];
        let (received, tag) = match slot {
            RingSlot::Whole(bytes, tag) => {
                frame.recv_buf()[..bytes.len()].copy_from_slice(bytes);
                (bytes.len(), tag)
            }
            RingSlot::Copied => {
                // This and the large frames right after it wait whole on
                // the socket, in order: one recvmmsg reads them all.
                let room = (frames.len() - kept).min(copies.capacity());
                let run = 1
                    + (1..room)
                        .take_while(|&k| matches!(ring.ahead(k), Some(RingSlot::Copied)))
                        .count();
                let (read, result) = recv_packet_batch(fd, copies, &mut frames[kept..kept + run]);
                for _ in 0..run {
                    ring.release();
                }
                kept += read;
                if let Err(e) = result {
                    return (kept, Err(e));
                }
                continue;
            }
            RingSlot::Lost(_) => (0, None),
        };
        ring.release();
        if !frame.set_received(received) {
            continue;
        }
        if let Some(tag) = tag {
            // As on the recvmmsg path: a frame too short for MAC addresses
            // is left as it is, and the bridge drops it as malformed.
            frame.push_vlan_tci(tag.tpid, tag.tci);
        }
        kept += 1;
    }
    (kept, Ok(()))
}
