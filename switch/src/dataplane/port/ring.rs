//! TAP I/O in batches through io_uring ([`sys::TapRing`]), and the choice
//! between it and plain `read(2)`/`write(2)` (`yardd --io`).
//!
//! Contract: a [`RingTap`] reads a TAP's waiting frames with one system call
//! per batch, straight into the caller's frames, and keeps them in arrival
//! order. How many reads a batch posts adapts: twice what the last batch
//! got (at least [`MIN_READ_AHEAD`], at most what the caller has room
//! for), so a lone frame (a ping-pong's) costs one system call with one
//! read that finds nothing, and a busy TAP fills whole batches. Frames
//! sent are copied into the ring's slots and written together on
//! [`RingTap::flush`], which the datapath calls for every port with queued
//! frames before it sleeps; a frame larger than a slot (a GSO or jumbo
//! frame) is written at once, after whatever was queued before it, so the
//! order of a port's frames never changes. A write the TAP refuses at a flush
//! is taken back out of the port's sent counters and counted as a drop
//! ([`RingTap::take_drops`]).
//!
//! When io_uring cannot be used ([`sys::RingUnavailable`]), or a ring fails
//! later, the port goes on with plain I/O, and one log line (per yardd)
//! says why.

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use crate::dataplane::frame::Frame;
use crate::dataplane::port::PortCounters;
use crate::dataplane::verdict::DropReason;
use crate::sys;

/// How TAP ports move frames (`yardd --io`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TapIo {
    /// Batches through io_uring where the kernel allows it, else plain.
    Uring,
    /// One `read(2)` or `write(2)` per frame.
    Plain,
}

/// The mode TAP ports opened from now on use: [`TapIo::Uring`] unless
/// [`set_tap_io`] said otherwise.
static TAP_IO: AtomicU8 = AtomicU8::new(0);
/// The fallback to plain I/O was logged at warn level once already.
static FALLBACK_LOGGED: AtomicBool = AtomicBool::new(false);

/// Sets how TAP ports opened from now on move frames (yardd calls it once,
/// at start, from `--io`).
pub fn set_tap_io(mode: TapIo) {
    TAP_IO.store(
        match mode {
            TapIo::Uring => 0,
            TapIo::Plain => 1,
        },
        Ordering::Relaxed,
    );
}

/// How TAP ports opened now move frames.
pub fn tap_io() -> TapIo {
    match TAP_IO.load(Ordering::Relaxed) {
        0 => TapIo::Uring,
        _ => TapIo::Plain,
    }
}

/// Logs why a TAP uses plain I/O: at warn level the first time in this
/// yardd, at debug level after that (every port would say the same).
pub fn log_fallback(reason: &dyn std::fmt::Display) {
    if FALLBACK_LOGGED.swap(true, Ordering::Relaxed) {
        tracing::debug!(%reason, "TAP port uses plain read/write");
    } else {
        tracing::warn!(%reason, "TAP ports use plain read/write instead of io_uring batches (yardd --io plain says so without this line)");
    }
}

/// A TAP's io_uring, the read-ahead it adapts and the writes that failed at
/// a flush.
pub struct RingTap {
    ring: sys::TapRing,
    /// Reads the next batch posts.
    read_ahead: usize,
    /// Writes refused at a flush since the last [`take_drops`](Self::take_drops):
    /// (frames, their bytes without vnet header), by drop reason.
    refused: [(u64, u64); 2],
}

/// The fewest reads a batch posts: one for the frame that woke the port and
/// one that finds the queue empty, which the edge-triggered poll needs to
/// be sure it is. Each further read that finds nothing adds to the cost and
/// latency of every lone frame; with 4, a ping-pong's round trip took
/// 1.5 µs longer and a 64-byte flood a tenth more CPU per frame
/// (docs/PERFORMANCE.md).
pub const MIN_READ_AHEAD: usize = 2;

/// Index into [`RingTap::refused`].
const QUEUE_FULL: usize = 0;
const TX_ERROR: usize = 1;

impl RingTap {
    /// A ring for the TAP `fd`, or why there cannot be one.
    pub fn new(fd: BorrowedFd<'_>) -> Result<RingTap, sys::RingUnavailable> {
        Ok(RingTap {
            ring: sys::TapRing::new(fd)?,
            read_ahead: MIN_READ_AHEAD,
            refused: [(0, 0); 2],
        })
    }

    /// Fills `frames[..n]` with the TAP's waiting frames in arrival order
    /// and returns `n`, as [`super::Port::recv_batch`]. A read shorter than
    /// the vnet header carries no frame and is skipped. An `Err` from the
    /// ring itself (not from a read) means the ring is broken: the caller
    /// goes on without it.
    pub fn recv_batch(
        &mut self,
        fd: BorrowedFd<'_>,
        frames: &mut [Frame],
    ) -> Result<(usize, io::Result<()>), io::Error> {
        let mut kept = 0;
        while kept < frames.len() {
            let first = kept;
            let want = self
                .read_ahead
                .min(frames.len() - first)
                .min(sys::RING_MAX_READS);
            let posted = self.ring.read_batch(
                fd,
                frames[first..first + want].iter_mut().map(Frame::recv_buf),
            )?;
            let mut got = 0;
            let mut failed = None;
            for i in 0..posted {
                match self.ring.read_result(i) {
                    Ok(n) => {
                        got += 1;
                        if frames[first + i].set_received(n) {
                            frames.swap(kept, first + i);
                            kept += 1;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        failed.get_or_insert(e);
                    }
                }
            }
            self.read_ahead = (2 * got).clamp(MIN_READ_AHEAD, sys::RING_MAX_READS);
            if let Some(e) = failed {
                return Ok((kept, Err(e)));
            }
            // Some read found nothing: the queue is empty (or was, a moment
            // ago; the next wake-up says when it is not).
            if got < posted {
                break;
            }
        }
        Ok((kept, Ok(())))
    }

    /// Queues `frame` for the next [`flush`](Self::flush), or writes it at
    /// once (after the queued ones) when it is larger than a slot. An `Err`
    /// of the outer result means the ring is broken and `frame` was not
    /// sent: the caller sends it without the ring.
    pub fn send(
        &mut self,
        fd: BorrowedFd<'_>,
        frame: &mut Frame,
    ) -> Result<io::Result<()>, io::Error> {
        let wire = frame.wire();
        if self.ring.queue_write(wire) {
            return Ok(Ok(()));
        }
        self.flush(fd)?;
        if self.ring.queue_write(wire) {
            return Ok(Ok(()));
        }
        Ok(write_plain(fd, wire))
    }

    /// True while frames wait for [`flush`](Self::flush).
    pub fn has_queued(&self) -> bool {
        self.ring.queued() > 0
    }

    /// Writes the queued frames in one system call (one queued frame is
    /// written with plain `write(2)`, which costs less). An `Err` means the
    /// ring is broken; the frames it held are lost and counted as
    /// `tx-error` drops.
    pub fn flush(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        let queued = self.ring.queued();
        let refused = &mut self.refused;
        let mut refuse = |e: io::Error, len: usize| {
            let reason = if e.kind() == io::ErrorKind::WouldBlock {
                QUEUE_FULL
            } else {
                TX_ERROR
            };
            refused[reason].0 += 1;
            refused[reason].1 += len.saturating_sub(sys::VNET_HDR_LEN) as u64;
        };
        let result = self.ring.flush_writes(fd, &mut refuse);
        if result.is_err() {
            // Every queued frame is lost with the ring.
            refused[TX_ERROR].0 += queued as u64;
        }
        result
    }

    /// Takes the writes refused at flushes out of `counters`' sent frames
    /// and counts them as drops (`tx-queue-full` when the TAP's queue was
    /// full, else `tx-error`).
    pub fn take_drops(&mut self, counters: &mut PortCounters) {
        for (index, reason) in [
            (QUEUE_FULL, DropReason::TxQueueFull),
            (TX_ERROR, DropReason::TxError),
        ] {
            let (frames, bytes) = std::mem::take(&mut self.refused[index]);
            counters.tx_packets = counters.tx_packets.saturating_sub(frames);
            counters.tx_bytes = counters.tx_bytes.saturating_sub(bytes);
            counters.drops[reason.index()] += frames;
        }
    }
}

/// One `write(2)` of a whole frame, retried when interrupted.
pub fn write_plain(fd: BorrowedFd<'_>, wire: &[u8]) -> io::Result<()> {
    loop {
        match sys::write_fd(fd, wire) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::sys::netns::run_in_netns;
    use crate::sys::testutil::{is_root, tap_in_netns, udp_out_of_tap};

    /// Reads until nothing is left, for at most `within`.
    fn drain(ring: &mut RingTap, fd: BorrowedFd<'_>, frames: &mut [Frame], within: Duration) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let (n, result) = ring.recv_batch(fd, frames).unwrap();
            result.unwrap();
            if n == 0 {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Calls `recv_batch` until a call returns frames (for at most 5 s) and
    /// returns how many.
    fn next_wake_up(ring: &mut RingTap, fd: BorrowedFd<'_>, frames: &mut [Frame]) -> usize {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let (n, result) = ring.recv_batch(fd, frames).unwrap();
            result.unwrap();
            if n > 0 {
                return n;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("no frame came within 5 s");
    }

    #[test]
    fn a_batch_posts_twice_what_the_last_got_from_two_and_reads_every_waiting_frame() {
        // Privileged: a namespace with a TAP; UDP to a test subnet inside it.
        if !is_root() {
            eprintln!("skipping a_batch_posts_twice_what_the_last_got_from_two_and_reads_every_waiting_frame: needs root");
            return;
        }
        let (ns, tap) = tap_in_netns("yrra0", 2);
        let mut ring = RingTap::new(tap.as_fd()).expect("io_uring on a TAP");
        let mut frames: Vec<Frame> = (0..64).map(|_| Frame::new()).collect();
        assert_eq!(ring.read_ahead, MIN_READ_AHEAD);
        // No IPv6 on the TAP from now on, so only our datagrams come; what
        // the link sent on coming up (DAD, MLD) is read first.
        run_in_netns(&ns.netns_ref(), || {
            std::fs::write("/proc/sys/net/ipv6/conf/yrra0/disable_ipv6", "1")
        })
        .unwrap()
        .unwrap();
        drain(
            &mut ring,
            tap.as_fd(),
            &mut frames,
            Duration::from_millis(300),
        );
        // Five frames wait: the first batch's two reads both get one, so a
        // batch of four follows in the same call (three get one), and the
        // next starts from twice those three.
        udp_out_of_tap(&ns, 2, 5);
        let n = next_wake_up(&mut ring, tap.as_fd(), &mut frames);
        assert_eq!(n, 5, "one call read all five waiting frames");
        assert_eq!(ring.read_ahead, 6);
        // A batch that finds nothing starts over from the fewest; a lone
        // frame then leaves two reads for the next.
        assert_eq!(ring.recv_batch(tap.as_fd(), &mut frames).unwrap().0, 0);
        assert_eq!(ring.read_ahead, MIN_READ_AHEAD);
        udp_out_of_tap(&ns, 2, 1);
        let n = next_wake_up(&mut ring, tap.as_fd(), &mut frames);
        assert_eq!(n, 1, "one frame sent, one read");
        assert_eq!(ring.read_ahead, 2);
    }
}
