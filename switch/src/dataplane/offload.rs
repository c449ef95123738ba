//! Software offloads on pool [`Frame`]s: the glue between the datapath's
//! frames and `yard-wire`'s pure functions, for ports whose device cannot
//! take a frame's offloads and for packets too big for their way out.
//!
//! TAPs and AF_PACKET ports hand the switch frames with a partial checksum
//! or GSO ([`yard_wire::offload::Offload`], in [`Frame::offload`]). Such
//! frames pass unchanged to ports whose device finishes the job (another
//! TAP, a veth); a port that sends plain packets (a tunnel) gets them
//! finished here first:
//!
//! - [`complete_checksum`] finishes a partial checksum in place
//!   ([`yard_wire::offload::complete_checksum`]);
//! - [`segment`] cuts a GSO frame into plain frames with full checksums
//!   ([`yard_wire::gso::segment`]), [`fit_gso`] lowers a TCP GSO frame's
//!   segment size to an MTU ([`yard_wire::gso::fit_gso`]);
//! - [`fragment_ipv4`] cuts a routed IPv4 packet into fragments that fit an
//!   MTU ([`yard_wire::fragment::fragment_ipv4`]).
//!
//! The other way, for frames that arrive as many plain segments (from a
//! tunnel), [`merge_start`], [`merge_append`] and [`merge_finish`] coalesce
//! consecutive TCP segments of one flow in place into the first one's
//! buffer, making one GSO frame ([`yard_wire::gro::TcpMerge`]; software
//! GRO), which then goes on like any GSO frame from a TAP.
//!
//! Contract: no I/O and no allocation. Each segment or fragment is built
//! directly in a caller-provided scratch frame (allocated once, with the
//! bridge or the datapath thread) — the scratch frame is the
//! [`SegmentSink`] — and handed to the caller's closure before the next one
//! is built over it. Pieces carry no offloads ([`Offload::NONE`]). On an
//! error nothing has been handed out.
//!
//! [`Offload::NONE`]: yard_wire::offload::Offload::NONE

#[cfg(test)]
mod tests;

use yard_wire::fragment::FragmentError;
use yard_wire::gro::TcpMerge;
use yard_wire::gso::SegmentSink;
use yard_wire::offload::OffloadError;

use crate::dataplane::frame::Frame;

/// A [`SegmentSink`] over a scratch frame: a piece is built at the start of
/// its buffer, the frame is set to it (no offloads) and handed to `out`.
struct IntoFrame<'a, F: FnMut(&mut Frame)> {
    scratch: &'a mut Frame,
    out: F,
}

impl<F: FnMut(&mut Frame)> SegmentSink for IntoFrame<'_, F> {
    fn buffer(&mut self) -> &mut [u8] {
        self.scratch.build_buf()
    }

    fn emit(&mut self, len: usize) {
        // `len` never exceeds the buffer: the cutters check before building.
        if self.scratch.set_built(len) {
            (self.out)(self.scratch);
        }
    }
}

/// Cuts `frame` into plain frames, each built in `scratch` and handed to
/// `out` in order; returns how many there were. A GSO frame becomes its
/// segments; a frame that is not GSO is handed out once, its partial
/// checksum (if any) completed. `frame` is not changed.
pub fn segment<F: FnMut(&mut Frame)>(
    frame: &Frame,
    scratch: &mut Frame,
    out: F,
) -> Result<usize, OffloadError> {
    let mut sink = IntoFrame { scratch, out };
    yard_wire::gso::segment(frame.data(), &frame.offload, &mut sink)
}

/// Cuts the IPv4 packet in `frame` into fragments that fit `mtu`, each
/// built in `scratch` and handed to `out` in order; returns how many there
/// were. A packet that fits is handed out once, unchanged.
pub fn fragment_ipv4<F: FnMut(&mut Frame)>(
    frame: &Frame,
    mtu: u32,
    scratch: &mut Frame,
    out: F,
) -> Result<usize, FragmentError> {
    let mut sink = IntoFrame { scratch, out };
    yard_wire::fragment::fragment_ipv4(frame.data(), &frame.offload, mtu, &mut sink)
}

/// Completes a partial L4 checksum (`NEEDS_CSUM`) of `frame` in place and
/// clears the flag; a frame without it is left as it is.
pub fn complete_checksum(frame: &mut Frame) -> Result<(), OffloadError> {
    let (data, offload) = frame.data_and_offload_mut();
    yard_wire::offload::complete_checksum(data, offload)
}

/// Lowers the segment size of a TCP GSO frame whose segments would not fit
/// `mtu`; true when it changed.
pub fn fit_gso(frame: &mut Frame, mtu: u32) -> bool {
    let (data, offload) = frame.data_and_offload_mut();
    yard_wire::gso::fit_gso(data, offload, mtu)
}

/// Starts a receive merge with `frame` as its head, or `None` when it
/// cannot head one ([`TcpMerge::start`]). `frame` is not changed.
pub fn merge_start(frame: &Frame) -> Option<TcpMerge> {
    TcpMerge::start(frame.data(), &frame.offload)
}

/// Appends `segment`'s payload to `head`, the frame `merge` started with,
/// if it continues it ([`TcpMerge::append`]); false, nothing changed, if
/// not. `head`'s length and offloads stay as they were until
/// [`merge_finish`].
pub fn merge_append(head: &mut Frame, merge: &mut TcpMerge, segment: &Frame) -> bool {
    let start = head.start();
    merge.append(
        &mut head.raw_mut()[start..],
        segment.data(),
        &segment.offload,
    )
}

/// Makes `head` the merged frame: one GSO frame with a partial checksum
/// when segments were appended, unchanged when none were.
pub fn merge_finish(head: &mut Frame, merge: &TcpMerge) {
    if merge.segments() < 2 {
        return;
    }
    let start = head.start();
    let offload = merge.finish(&mut head.raw_mut()[start..]);
    if head.set_range(start, merge.len()) {
        head.offload = offload;
    }
}
