//! Batched TAP I/O through io_uring: many reads in one system call, and the
//! writes of a whole round in one more.
//!
//! Contract: a [`TapRing`] belongs to one TAP fd, which the caller passes to
//! every call (the ring never keeps it). **Nothing is left with the kernel
//! when a method returns**: every read and write is submitted with
//! `RWF_NOWAIT`, so the kernel does it during the submitting call or answers
//! `EAGAIN` — it never parks a request to finish later — and the method
//! waits for every completion it submitted before it returns. That is what
//! makes it sound to read straight into the caller's buffers (no copy on
//! receive) and to reuse them as soon as the call is over. Writes are queued
//! by copying the frame into one of [`TX_SLOTS`] slots of [`TX_SLOT_LEN`]
//! bytes owned by the ring (a larger frame is the caller's to write
//! directly) and leave in submission order on the next
//! [`flush_writes`](TapRing::flush_writes). Reads of one batch execute in
//! submission order, so their results in slot order are the TAP's frames in
//! arrival order.
//!
//! [`TapRing::new`] checks what the batching relies on — io_uring itself
//! (absent from old kernels, refused by a seccomp filter or by
//! `kernel.io_uring_disabled`), the read and write operations, and
//! `RWF_NOWAIT` on this fd (a zero-length read, which takes no frame) — and
//! its error says which was missing, for the caller to fall back to plain
//! `read(2)`/`write(2)`. Nothing here allocates after `new`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use io_uring::{opcode, register, types, IoUring};

/// Reads one [`TapRing::read_batch`] submits at most.
pub const MAX_READS: usize = 32;
/// Writes queued at most before the caller must flush.
pub const TX_SLOTS: usize = 32;
/// The largest write (virtio-net header and frame) that is queued; a larger
/// one (a GSO frame, a jumbo frame) costs one system call for many bytes
/// anyway, and the caller writes it directly after a flush.
pub const TX_SLOT_LEN: usize = 2048;

/// Submission queue size: a full batch of reads, or every queued write.
const RING_ENTRIES: u32 = (if MAX_READS > TX_SLOTS {
    MAX_READS
} else {
    TX_SLOTS
}) as u32;

/// `user_data` of a write: its slot with this bit set; a read is its index.
const WRITE_BIT: u64 = 1 << 32;

/// Why io_uring cannot batch a TAP's I/O here; the plain path is used instead.
#[derive(Debug, thiserror::Error)]
pub enum RingUnavailable {
    /// `io_uring_setup` failed.
    #[error("io_uring_setup failed ({0}): the kernel lacks io_uring, or a seccomp filter or kernel.io_uring_disabled refuses it")]
    Setup(io::Error),
    /// The kernel's io_uring lacks an operation the batching uses.
    #[error("the kernel's io_uring lacks {0} (Linux 5.6 or later has it)")]
    Missing(&'static str),
    /// A read with `RWF_NOWAIT` was refused on this fd.
    #[error("the TAP refuses non-blocking io_uring reads ({0})")]
    NoWait(io::Error),
}

/// One TAP's io_uring, with its queued writes.
pub struct TapRing {
    ring: IoUring,
    /// What each read of the last [`read_batch`](Self::read_batch) got: a
    /// length, or a negated errno.
    reads: [i32; MAX_READS],
    /// Queued writes, slot `i` at `i * TX_SLOT_LEN`.
    tx: Box<[u8]>,
    tx_lens: [u32; TX_SLOTS],
    /// What each write of the last flush got: 0, or a negated errno.
    tx_results: [i32; TX_SLOTS],
    queued: usize,
    /// A wait for completions failed: the kernel may not have taken every
    /// queued entry, and none may be submitted any more.
    broken: bool,
}

impl TapRing {
    /// Sets up a ring for the TAP `fd` (non-blocking, vnet header on), or
    /// says why it cannot batch on this kernel.
    pub fn new(fd: BorrowedFd<'_>) -> Result<TapRing, RingUnavailable> {
        let ring = IoUring::builder()
            // Submit every entry even when one fails to start: an entry
            // left in the queue would point at a buffer the caller reuses.
            .setup_submit_all()
            .setup_cqsize(2 * RING_ENTRIES)
            .build(RING_ENTRIES)
            .map_err(RingUnavailable::Setup)?;
        let mut probe = register::Probe::new();
        ring.submitter()
            .register_probe(&mut probe)
            .map_err(|_| RingUnavailable::Missing("IORING_REGISTER_PROBE"))?;
        if !probe.is_supported(opcode::Read::CODE) {
            return Err(RingUnavailable::Missing("IORING_OP_READ"));
        }
        if !probe.is_supported(opcode::Write::CODE) {
            return Err(RingUnavailable::Missing("IORING_OP_WRITE"));
        }
        let mut ring = TapRing {
            ring,
            reads: [0; MAX_READS],
            tx: vec![0u8; TX_SLOTS * TX_SLOT_LEN].into_boxed_slice(),
            tx_lens: [0; TX_SLOTS],
            tx_results: [0; TX_SLOTS],
            queued: 0,
            broken: false,
        };
        // A zero-length read returns 0 without taking a frame off the
        // TAP's queue; it still goes through the RWF_NOWAIT check.
        let mut nothing = [0u8; 0];
        let got = ring
            .read_batch(fd, std::iter::once(&mut nothing[..]))
            .map_err(RingUnavailable::NoWait)?;
        match ring.read_result(0) {
            Ok(0) if got == 1 => Ok(ring),
            Ok(n) => Err(RingUnavailable::NoWait(io::Error::other(format!(
                "a zero-length read returned {n}"
            )))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(ring),
            Err(e) => Err(RingUnavailable::NoWait(e)),
        }
    }

    /// Reads into each of `bufs` (at most [`MAX_READS`]) with one system
    /// call and returns how many reads were made; [`read_result`]
    /// (Self::read_result) then tells what each got. Every read is over
    /// when this returns.
    pub fn read_batch<'a>(
        &mut self,
        fd: BorrowedFd<'_>,
        bufs: impl Iterator<Item = &'a mut [u8]>,
    ) -> io::Result<usize> {
        self.check_usable()?;
        let mut posted = 0;
        {
            let mut sq = self.ring.submission();
            for buf in bufs.take(MAX_READS) {
                let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
                let read = opcode::Read::new(types::Fd(fd.as_raw_fd()), buf.as_mut_ptr(), len)
                    .rw_flags(libc::RWF_NOWAIT)
                    .build()
                    .user_data(posted as u64);
                // SAFETY: the entry points at `buf`, which the caller lends us
                // for this call; `settle` below waits for this entry's
                // completion before we return, and RWF_NOWAIT keeps the kernel
                // from holding it past the submitting call. The queue has room:
                // it holds RING_ENTRIES >= MAX_READS and is empty between calls.
                if unsafe { sq.push(&read) }.is_err() {
                    break;
                }
                posted += 1;
            }
        }
        self.settle(posted)?;
        Ok(posted)
    }

    /// What read `i` of the last [`read_batch`](Self::read_batch) got: the
    /// bytes read, or its error (`WouldBlock`: nothing was waiting).
    pub fn read_result(&self, i: usize) -> io::Result<usize> {
        match self.reads.get(i) {
            Some(&n) if n >= 0 => Ok(n as usize),
            Some(&n) => Err(io::Error::from_raw_os_error(-n)),
            None => Err(io::Error::from(io::ErrorKind::InvalidInput)),
        }
    }

    /// Copies `bytes` (virtio-net header and frame) into a free slot, to be
    /// written on the next [`flush_writes`](Self::flush_writes). False when
    /// it is longer than [`TX_SLOT_LEN`] or every slot is taken: flush, and
    /// write it directly or queue it again.
    pub fn queue_write(&mut self, bytes: &[u8]) -> bool {
        if bytes.len() > TX_SLOT_LEN || self.queued == TX_SLOTS {
            return false;
        }
        let at = self.queued * TX_SLOT_LEN;
        self.tx[at..at + bytes.len()].copy_from_slice(bytes);
        self.tx_lens[self.queued] = bytes.len() as u32;
        self.queued += 1;
        true
    }

    /// Writes queued and not yet flushed.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Writes every queued frame to `fd`, in the order queued, with one
    /// system call (`io_uring_enter`, or `write(2)` for a single frame),
    /// and frees the slots. `failed` hears of each write the
    /// TAP refused: its error and its length.
    pub fn flush_writes(
        &mut self,
        fd: BorrowedFd<'_>,
        mut failed: impl FnMut(io::Error, usize),
    ) -> io::Result<()> {
        let queued = std::mem::take(&mut self.queued);
        if queued == 0 {
            return Ok(());
        }
        self.check_usable()?;
        if queued == 1 {
            // One frame (a ping, an ACK): a plain write(2) costs less than
            // an io_uring_enter.
            let len = self.tx_lens[0] as usize;
            loop {
                match super::write_fd(fd, &self.tx[..len]) {
                    Ok(_) => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        failed(e, len);
                        return Ok(());
                    }
                }
            }
        }
        {
            let mut sq = self.ring.submission();
            for slot in 0..queued {
                let ptr = self.tx[slot * TX_SLOT_LEN..].as_ptr();
                let write = opcode::Write::new(types::Fd(fd.as_raw_fd()), ptr, self.tx_lens[slot])
                    .rw_flags(libc::RWF_NOWAIT)
                    .build()
                    .user_data(WRITE_BIT | slot as u64);
                // SAFETY: the entry points into `self.tx`, which lives as long
                // as the ring and is not touched until `settle` below has seen
                // this entry complete; RWF_NOWAIT keeps the kernel from
                // holding it past the submitting call. The queue has room: it
                // holds RING_ENTRIES >= TX_SLOTS and is empty between calls.
                let pushed = unsafe { sq.push(&write) };
                debug_assert!(pushed.is_ok(), "submission queue full");
            }
        }
        self.settle(queued)?;
        for slot in 0..queued {
            let result = self.tx_results[slot];
            if result < 0 {
                failed(
                    io::Error::from_raw_os_error(-result),
                    self.tx_lens[slot] as usize,
                );
            }
        }
        Ok(())
    }

    /// Fails once the ring is broken (see [`settle`](Self::settle)).
    fn check_usable(&self) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::other(
                "the TAP's io_uring failed earlier and is no longer used",
            ));
        }
        Ok(())
    }

    /// Submits what is queued and waits until `expected` completions are
    /// in, keeping each result where its `user_data` says: a read's in
    /// `reads`, a write's (negated errno, else 0) in `tx_results`.
    ///
    /// An error other than an interrupted wait breaks the ring for good:
    /// the kernel may not have taken every entry, so nothing is submitted
    /// again and every later call fails (the caller falls back to plain
    /// I/O).
    fn settle(&mut self, expected: usize) -> io::Result<()> {
        self.check_usable()?;
        let mut seen = 0;
        loop {
            for cqe in self.ring.completion() {
                let data = cqe.user_data();
                let index = (data & !WRITE_BIT) as usize;
                if data & WRITE_BIT != 0 {
                    if let Some(result) = self.tx_results.get_mut(index) {
                        *result = cqe.result().min(0);
                    }
                } else if let Some(read) = self.reads.get_mut(index) {
                    *read = cqe.result();
                }
                seen += 1;
            }
            if seen >= expected {
                return Ok(());
            }
            match self.ring.submit_and_wait(expected - seen) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.broken = true;
                    return Err(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;
    use std::time::Duration;

    use super::*;
    use crate::sys::netns::run_in_netns;
    use crate::sys::testutil::{
        is_root, read_until, tap_in_netns, test_frame_with_vnet_hdr, udp_out_of_tap,
    };
    use crate::sys::{open_packet_socket, VNET_HDR_LEN};

    #[test]
    fn one_batch_reads_the_queued_frames_in_order_and_an_empty_tap_would_block() {
        // Privileged: a namespace with a TAP; UDP to a test subnet inside it.
        if !is_root() {
            eprintln!("skipping one_batch_reads_the_queued_frames_in_order_and_an_empty_tap_would_block: needs root");
            return;
        }
        let (ns, tap) = tap_in_netns("ysur0", 1);
        let mut ring = TapRing::new(tap.as_fd()).expect("io_uring on a TAP");
        let mut bufs: Vec<Vec<u8>> = (0..8).map(|_| vec![0u8; 4096]).collect();
        // Whatever the link sent on coming up (IPv6 DAD, MLD) is read first.
        while ring
            .read_batch(tap.as_fd(), bufs.iter_mut().map(|b| &mut b[..]))
            .unwrap()
            > 0
            && ring.read_result(0).is_ok()
        {}

        udp_out_of_tap(&ns, 1, 5);
        let udp_payload = |buf: &[u8], n: usize| -> Option<u8> {
            let eth = &buf[VNET_HDR_LEN..n];
            (eth.len() >= 62 && eth[12..14] == [8, 0] && eth[23] == 17).then(|| eth[42])
        };
        let mut seen = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while seen.len() < 5 && std::time::Instant::now() < deadline {
            let posted = ring
                .read_batch(tap.as_fd(), bufs.iter_mut().map(|b| &mut b[..]))
                .unwrap();
            assert_eq!(posted, 8);
            for (i, buf) in bufs.iter().enumerate() {
                match ring.read_result(i) {
                    Ok(n) => seen.extend(udp_payload(buf, n)),
                    Err(e) => assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}"),
                }
            }
        }
        assert_eq!(seen, vec![0, 1, 2, 3, 4], "every datagram once, in order");
        ring.read_batch(tap.as_fd(), bufs.iter_mut().map(|b| &mut b[..]))
            .unwrap();
        for i in 0..8 {
            let e = ring.read_result(i).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}");
        }
    }

    #[test]
    fn queued_writes_leave_in_order_on_flush_and_oversize_ones_are_refused() {
        // Privileged: a namespace with a TAP and a packet socket on it.
        if !is_root() {
            eprintln!("skipping queued_writes_leave_in_order_on_flush_and_oversize_ones_are_refused: needs root");
            return;
        }
        let (ns, tap) = tap_in_netns("ysur1", 2);
        let sniffer =
            run_in_netns(&ns.netns_ref(), || open_packet_socket("ysur1").unwrap()).unwrap();
        let mut ring = TapRing::new(tap.as_fd()).unwrap();
        let markers: Vec<Vec<u8>> = (0..TX_SLOTS)
            .map(|k| format!("ring write {k:03}").into_bytes())
            .collect();
        for marker in &markers {
            let frame = test_frame_with_vnet_hdr([0x02, 0, 0, 0, 0, 0x42], marker);
            assert!(ring.queue_write(&frame));
        }
        assert_eq!(ring.queued(), TX_SLOTS);
        assert!(!ring.queue_write(&[0u8; 60]), "every slot is taken");
        assert!(!ring.queue_write(&vec![0u8; TX_SLOT_LEN + 1]));
        let mut failures = 0;
        ring.flush_writes(tap.as_fd(), |_, _| failures += 1)
            .unwrap();
        assert_eq!((failures, ring.queued()), (0, 0));
        for marker in &markers {
            read_until(sniffer.as_fd(), Duration::from_secs(3), |f| {
                f.windows(marker.len()).any(|w| w == &marker[..])
            })
            .unwrap_or_else(|| panic!("{} never arrived", String::from_utf8_lossy(marker)));
        }
        // A frame shorter than the vnet header is refused by the TAP and
        // reported with its length.
        assert!(ring.queue_write(&[0u8; 4]));
        let mut refused = Vec::new();
        ring.flush_writes(tap.as_fd(), |e, len| refused.push((e.kind(), len)))
            .unwrap();
        assert_eq!(refused, vec![(io::ErrorKind::InvalidInput, 4)]);
    }
}
