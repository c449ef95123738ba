//! A packet socket's receive ring (`PACKET_RX_RING`, `TPACKET_V2`) mapped into
//! yardd's memory: the kernel copies each frame the interface receives into a
//! ring slot as it arrives, and yardd reads the slots without a system call.
//!
//! Contract: [`RxRing::setup`] is called on a packet socket that has its
//! virtio-net header on but is not bound yet, so no frame reaches the
//! socket's queue before the ring exists. The ring has [`RING_SLOTS`] slots of
//! [`RING_SLOT_LEN`] bytes ([`RING_BYTES`] per port, fixed whatever the
//! traffic); a slot holds the frame's `tpacket2_hdr`, the virtio-net header
//! and up to 1972 bytes of frame (the frame starts 76 bytes into its slot).
//! A larger frame — a GSO frame, a jumbo frame — is cut short in its slot,
//! and the kernel, asked to with `PACKET_COPY_THRESH`, queues the whole
//! frame on the socket as well (`TP_STATUS_COPY`): [`RingSlot::Copied`]
//! tells the reader to read it from the socket (`recvmsg(2)` or
//! `recvmmsg(2)`, in slot order) before it hands the slot back, which keeps
//! the order. The experiment these figures come from is
//! `docs/perf/2026-12-04-tpacket-experiment.py`. Frames are read in slot order with [`RxRing::next`], and each
//! slot goes back to the kernel with [`RxRing::release`].
//!
//! Why `TPACKET_V2` and not `TPACKET_V3`: a V3 block only reaches user space
//! when it is full or its retire timer fires, which the kernel arms in
//! milliseconds (measured: a lone frame waited 4.6–7.3 ms on this kernel,
//! `CONFIG_HZ=250`), a delay per frame no switch can take; and V3 has no
//! `PACKET_COPY_THRESH`, so every block would have to hold a 64 KB GSO frame.
//! V2 wakes the reader per frame, like the socket queue does.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use super::fd::{set_int_sockopt, set_sockopt};
use super::packet::{tag_from_aux, VlanTag};
use super::{last_error, VNET_HDR_LEN};

/// Bytes per ring slot (`tp_frame_size`): a full-size Ethernet frame with its
/// headers, and a power of two so slots never straddle a block.
pub const RING_SLOT_LEN: usize = 2048;
/// Bytes per ring block (`tp_block_size`): 16 pages, 32 slots.
const RING_BLOCK_LEN: usize = 64 << 10;
/// Slots per ring.
pub const RING_SLOTS: usize = 1024;
/// The memory one ring pins: 2 MiB.
pub const RING_BYTES: usize = RING_SLOTS * RING_SLOT_LEN;
const _: () = assert!(RING_BLOCK_LEN % RING_SLOT_LEN == 0);
const _: () = assert!(RING_BYTES % RING_BLOCK_LEN == 0);
const _: () = assert!(RING_SLOT_LEN % libc::TPACKET_ALIGNMENT == 0);

/// A mapped `TPACKET_V2` receive ring of one packet socket. Unmapped on drop;
/// the socket itself belongs to its owner.
pub struct RxRing {
    base: NonNull<u8>,
    /// The slot [`RxRing::next`] looks at.
    next: usize,
}

// SAFETY: the mapping is owned by this value alone (nothing else holds its
// address), and the kernel's side of the protocol does not care which thread
// reads the slots, so the value may move to another thread.
unsafe impl Send for RxRing {}

/// What the next ring slot holds.
#[derive(Debug, PartialEq, Eq)]
pub enum RingSlot<'a> {
    /// A whole frame: its virtio-net header then the Ethernet frame, and
    /// the VLAN tag the kernel took out of it.
    Whole(&'a [u8], Option<VlanTag>),
    /// The frame was too large for a slot; the whole of it is the next one
    /// waiting on the socket (read it with [`super::recv_packet`] or
    /// [`super::RecvBatch`]).
    Copied,
    /// The frame was too large for a slot and the kernel could not queue a
    /// copy (the socket's receive buffer was full): it is lost. Its length.
    Lost(usize),
}

impl RxRing {
    /// Switches the unbound packet socket `fd` to `TPACKET_V2`, asks for
    /// copies of frames larger than a slot, sets up its receive ring and
    /// maps it. An error leaves the socket usable without a ring (with
    /// `recvmsg`), which is what the caller falls back to.
    pub fn setup(fd: BorrowedFd<'_>) -> io::Result<RxRing> {
        let opt = |name, value, label: &str| {
            set_int_sockopt(fd, libc::SOL_PACKET, name, value).map_err(|e| super::context(e, label))
        };
        opt(
            libc::PACKET_VERSION,
            libc::tpacket_versions::TPACKET_V2 as libc::c_int,
            "PACKET_VERSION TPACKET_V2",
        )?;
        opt(libc::PACKET_COPY_THRESH, 1, "PACKET_COPY_THRESH")?;
        let request = libc::tpacket_req {
            tp_block_size: RING_BLOCK_LEN as u32,
            tp_block_nr: (RING_BYTES / RING_BLOCK_LEN) as u32,
            tp_frame_size: RING_SLOT_LEN as u32,
            tp_frame_nr: RING_SLOTS as u32,
        };
        set_sockopt(fd, libc::SOL_PACKET, libc::PACKET_RX_RING, &request)
            .map_err(|e| super::context(e, "PACKET_RX_RING"))?;
        // SAFETY: a shared read-write mapping of the ring the kernel just
        // set up on `fd`, at an address the kernel picks; the result is
        // checked before use.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                RING_BYTES,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(last_error("mmap of the receive ring"));
        }
        let base = NonNull::new(addr.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap of the receive ring returned null"))?;
        Ok(RxRing { base, next: 0 })
    }

    /// The status word of slot `index` (the first field of its header).
    fn status(&self, index: usize) -> &AtomicU32 {
        // SAFETY: `index < RING_SLOTS`, so the slot lies inside the mapping,
        // which lives as long as `self`; slots start at multiples of
        // RING_SLOT_LEN from a page-aligned base, so the word is aligned; the
        // kernel and this reader only touch it atomically (the kernel with
        // `smp_wmb` before setting it, and it reads it back with `smp_rmb`).
        unsafe { AtomicU32::from_ptr(self.base.as_ptr().add(index * RING_SLOT_LEN).cast()) }
    }

    /// The slot after the last one released, if the kernel has filled it.
    pub fn next(&self) -> Option<RingSlot<'_>> {
        self.ahead(0)
    }

    /// The slot `skip` slots after [`next`](Self::next)'s, if the kernel
    /// has filled it (`None` a whole ring or more ahead). Lets a reader see
    /// how many large frames wait in a row, to read them with one call.
    pub fn ahead(&self, skip: usize) -> Option<RingSlot<'_>> {
        if skip >= RING_SLOTS {
            return None;
        }
        let index = (self.next + skip) % RING_SLOTS;
        let status = self.status(index).load(Ordering::Acquire);
        if status & libc::TP_STATUS_USER == 0 {
            return None;
        }
        // SAFETY: the slot is inside the mapping (see `status`) and aligned
        // for the header; with TP_STATUS_USER set (read with Acquire above)
        // the kernel has finished writing the slot and leaves it alone until
        // `release` hands it back, so reading it is not a race.
        let header = unsafe {
            self.base
                .as_ptr()
                .add(index * RING_SLOT_LEN)
                .cast::<libc::tpacket2_hdr>()
                .read()
        };
        if status & libc::TP_STATUS_COPY != 0 {
            return Some(RingSlot::Copied);
        }
        let mac = usize::from(header.tp_mac);
        let captured = header.tp_snaplen as usize;
        let whole = captured == header.tp_len as usize;
        if !whole || mac < VNET_HDR_LEN || mac + captured > RING_SLOT_LEN {
            return Some(RingSlot::Lost(header.tp_len as usize));
        }
        // SAFETY: `mac - VNET_HDR_LEN .. mac + captured` lies inside this
        // slot (checked just above), which the kernel does not write while
        // it is ours (see above); the slice lives no longer than `&self`,
        // and `release` (which hands the slot back) takes `&mut self`.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                self.base
                    .as_ptr()
                    .add(index * RING_SLOT_LEN + mac - VNET_HDR_LEN),
                VNET_HDR_LEN + captured,
            )
        };
        let tag = tag_from_aux(status, header.tp_vlan_tci, header.tp_vlan_tpid);
        Some(RingSlot::Whole(bytes, tag))
    }

    /// Hands the slot [`next`](Self::next) returned back to the kernel and
    /// moves on to the following one. A slot is handed back only once the
    /// reader is done with it: a slot the kernel cut a large frame short in
    /// after the frame's copy was read from the socket.
    pub fn release(&mut self) {
        self.status(self.next)
            .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        self.next = (self.next + 1) % RING_SLOTS;
    }
}

impl Drop for RxRing {
    fn drop(&mut self) {
        // SAFETY: `base` is the start of a RING_BYTES mapping made in `setup`
        // that nothing else refers to (slices from `next` borrow `self`).
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), RING_BYTES);
        }
    }
}
