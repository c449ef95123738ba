//! Reading a fuzz input as a sequence of small decisions and frames, so
//! that the targets which take several frames can be driven by one byte
//! string. Running out of bytes is the end of the input, never an error.
//!
//! The `gateway` and `pipeline` targets read the same records
//! ([`Input::record`]): a control byte whose bits 2–5 mean the same in
//! both ([`control`]; bits 0–1 pick where the frame arrives, which each
//! target names), an optional virtio-net header and a frame; and both
//! "fix up" a frame the same way ([`fix_up`]).

use yard_wire::ethernet::{ethertype, EthernetFrame};
use yard_wire::ipv4::Ipv4Packet;
use yard_wire::offload::Offload;
use yard_wire::vnet;

/// The control-byte bits the `gateway` and `pipeline` targets share (each
/// re-exports them in its own `control` module, beside its bits 0–1).
pub mod control {
    /// Fix up the destination MAC and the IPv4 header checksum.
    pub const FIX_UP: u8 = 1 << 2;
    /// Shift of the two clock bits.
    pub const CLOCK_SHIFT: u8 = 3;
    /// A virtio-net header follows.
    pub const OFFLOAD: u8 = 1 << 5;
}

/// One record of a `gateway` or `pipeline` input.
pub(crate) struct Record<'a> {
    /// The control byte.
    pub(crate) bits: u8,
    /// The frame's offload header, [`Offload::NONE`] without one.
    pub(crate) offload: Offload,
    /// The frame.
    pub(crate) frame: &'a [u8],
}

impl Record<'_> {
    /// Which of the four clock steps (0–3) comes before the frame; each
    /// target says how far a step moves its clock.
    pub(crate) fn clock_step(&self) -> u8 {
        (self.bits >> control::CLOCK_SHIFT) & 0b11
    }

    /// Whether the frame is to be fixed up ([`fix_up`]) before it is fed.
    pub(crate) fn fix_up(&self) -> bool {
        self.bits & control::FIX_UP != 0
    }
}

/// A cursor over a fuzz input.
pub(crate) struct Input<'a> {
    rest: &'a [u8],
}

impl<'a> Input<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Input { rest: data }
    }

    /// The next byte, if any.
    pub(crate) fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.rest.split_first()?;
        self.rest = rest;
        Some(b)
    }

    /// The next big-endian `u16`, if two bytes are left.
    pub(crate) fn u16(&mut self) -> Option<u16> {
        let hi = self.byte()?;
        let lo = self.byte()?;
        Some(u16::from_be_bytes([hi, lo]))
    }

    /// The next `n` bytes, or all that is left when fewer.
    pub(crate) fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.rest.split_at(n.min(self.rest.len()));
        self.rest = rest;
        head
    }

    /// Exactly the next `N` bytes, if that many are left.
    pub(crate) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let head = self.rest.get(..N)?;
        self.rest = &self.rest[N..];
        head.try_into().ok()
    }

    /// A frame: a 16-bit length, then that many bytes (fewer at the end).
    pub(crate) fn frame(&mut self) -> Option<&'a [u8]> {
        let len = self.u16()?;
        Some(self.take(usize::from(len)))
    }

    /// The next whole record: control byte, the offload header when
    /// [`control::OFFLOAD`] asks for one, then a frame. `None` when the
    /// input ends before that, which ends the run.
    pub(crate) fn record(&mut self) -> Option<Record<'a>> {
        let bits = self.byte()?;
        let offload = if bits & control::OFFLOAD != 0 {
            Offload::from_header(&self.array::<{ vnet::HEADER_LEN }>()?)
        } else {
            Offload::NONE
        };
        let frame = self.frame()?;
        Some(Record {
            bits,
            offload,
            frame,
        })
    }
}

/// Points the frame at `mac` and makes a well-formed IPv4 header's
/// checksum right (untagged frames only), so the fuzzer reaches past the
/// first checks of the code under test.
pub(crate) fn fix_up(frame: &mut [u8], mac: [u8; 6]) {
    let Ok(mut eth) = EthernetFrame::new_checked(&mut *frame) else {
        return;
    };
    eth.set_dst(mac);
    if eth.ethertype() != ethertype::IPV4 {
        return;
    }
    if let Ok(mut ip) = Ipv4Packet::new_checked(eth.payload_mut()) {
        ip.fill_checksum();
    }
}

/// Writes a frame as [`Input::frame`] reads it (seeds).
pub(crate) fn put_frame(out: &mut Vec<u8>, frame: &[u8]) {
    let len = u16::try_from(frame.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&frame[..usize::from(len)]);
}

/// Writes a record as [`Input::record`] reads it (seeds): `offload` goes
/// in only with `Some`, and then `control` must have [`control::OFFLOAD`].
pub(crate) fn put_record(out: &mut Vec<u8>, control: u8, offload: Option<Offload>, frame: &[u8]) {
    out.push(control);
    if let Some(offload) = offload {
        out.extend_from_slice(&offload.to_header());
    }
    put_frame(out, frame);
}
