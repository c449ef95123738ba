//! Frames: one pooled buffer per frame, with headroom in front of the Ethernet
//! header and the frame's offload state ([`Offload`]) beside it.
//!
//! A port reads a frame so that its virtio-net header lands just before the
//! Ethernet header ([`Frame::recv_buf`], [`Frame::set_received`], which reads
//! the header into [`Frame::offload`]) and writes it back the same way
//! ([`Frame::wire`]): no copy on either side. The headroom
//! lets the egress path push a VLAN tag (and, later, outer tunnel headers) by
//! moving the start of the frame left instead of copying it. Buffers are
//! allocated once, when the datapath starts; nothing here allocates per frame.

use yard_wire::ethernet::{self, ethertype, EthernetFrame};
use yard_wire::offload::Offload;
use yard_wire::vlan::{self, VlanPacket, TAG_LEN as VLAN_TAG_LEN};
use yard_wire::vnet::HEADER_LEN as VNET_HDR_LEN;

/// Bytes kept free before the Ethernet header: virtio-net header, a VLAN tag and
/// room for outer headers.
pub const HEADROOM: usize = 128;

/// The largest Ethernet frame (without virtio-net header) a buffer holds: a
/// 64 KiB GSO frame plus its headers.
pub const MAX_FRAME_LEN: usize = 65_536 + 64;

/// One frame in a pooled buffer.
pub struct Frame {
    buf: Box<[u8]>,
    start: usize,
    len: usize,
    /// The frame's offload state: what the virtio-net header it came with
    /// said, kept with the bytes wherever the frame goes.
    pub offload: Offload,
}

impl Default for Frame {
    fn default() -> Self {
        Self::new()
    }
}

impl Frame {
    /// Allocates one buffer. Done when a pool is built, never per frame.
    pub fn new() -> Self {
        Frame {
            buf: vec![0u8; HEADROOM + MAX_FRAME_LEN].into_boxed_slice(),
            start: HEADROOM,
            len: 0,
            offload: Offload::NONE,
        }
    }

    /// The Ethernet frame.
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }

    /// The Ethernet frame, writable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.start + self.len]
    }

    /// The Ethernet frame, writable, beside its offload state (to finish an
    /// offload in place).
    pub fn data_and_offload_mut(&mut self) -> (&mut [u8], &mut Offload) {
        (
            &mut self.buf[self.start..self.start + self.len],
            &mut self.offload,
        )
    }

    /// Length of the Ethernet frame.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the frame holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The whole buffer, headroom included (tunnel ports read outer packets
    /// into it and write outer headers in front of the frame).
    pub fn raw_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// Where the frame starts in [`raw_mut`](Self::raw_mut)'s buffer.
    pub fn start(&self) -> usize {
        self.start
    }

    /// Makes `raw[start..start + len]` the frame, with no offloads. `false`
    /// (frame unchanged) when the range leaves no room for a virtio-net
    /// header and a VLAN tag in front or runs past the buffer.
    pub fn set_range(&mut self, start: usize, len: usize) -> bool {
        if start < VNET_HDR_LEN + VLAN_TAG_LEN || start + len > self.buf.len() {
            return false;
        }
        self.start = start;
        self.len = len;
        self.offload = Offload::NONE;
        true
    }

    /// Where a frame is built in place (a segment, a fragment, an ICMP
    /// error): the whole buffer after the headroom, [`MAX_FRAME_LEN`]
    /// bytes. [`set_built`](Self::set_built) then makes its start the frame.
    pub fn build_buf(&mut self) -> &mut [u8] {
        &mut self.buf[HEADROOM..]
    }

    /// Makes the first `len` bytes of [`build_buf`](Self::build_buf) the
    /// frame, with no offloads. `false` (frame unchanged) when `len` is
    /// longer than the buffer.
    pub fn set_built(&mut self, len: usize) -> bool {
        self.set_range(HEADROOM, len)
    }

    /// Shortens the frame to `len` bytes (no-op when it is not longer).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// The buffer a port reads into: virtio-net header, then the frame.
    pub fn recv_buf(&mut self) -> &mut [u8] {
        &mut self.buf[HEADROOM - VNET_HDR_LEN..]
    }

    /// Records that `n` bytes (header and frame) were read into
    /// [`recv_buf`](Self::recv_buf). Returns false when `n` is shorter than the
    /// virtio-net header.
    pub fn set_received(&mut self, n: usize) -> bool {
        if n < VNET_HDR_LEN {
            self.len = 0;
            return false;
        }
        let mut header = [0u8; VNET_HDR_LEN];
        header.copy_from_slice(&self.buf[HEADROOM - VNET_HDR_LEN..HEADROOM]);
        self.offload = Offload::from_header(&header);
        self.start = HEADROOM;
        self.len = n - VNET_HDR_LEN;
        true
    }

    /// Fills the frame from bytes (tests, benches and in-memory ports).
    pub fn fill(&mut self, offload: Offload, bytes: &[u8]) {
        let len = bytes.len().min(MAX_FRAME_LEN);
        self.start = HEADROOM;
        self.len = len;
        self.offload = offload;
        self.buf[HEADROOM..HEADROOM + len].copy_from_slice(&bytes[..len]);
    }

    /// The bytes a port writes: the virtio-net header, then the frame.
    pub fn wire(&mut self) -> &[u8] {
        let hdr_start = self.start - VNET_HDR_LEN;
        self.buf[hdr_start..self.start].copy_from_slice(&self.offload.to_header());
        &self.buf[hdr_start..self.start + self.len]
    }

    /// The EtherType after the MAC addresses (the TPID when tagged).
    pub fn outer_ethertype(&self) -> Option<u16> {
        EthernetFrame::new_checked(self.data())
            .ok()
            .map(|eth| eth.ethertype())
    }

    /// Pushes an 802.1Q tag with `vid` after the MAC addresses, using headroom.
    pub fn push_vlan(&mut self, vid: u16) {
        debug_assert!(self.start >= VNET_HDR_LEN + VLAN_TAG_LEN);
        self.push_tag(ethertype::VLAN, vid & vlan::MAX_VID);
    }

    /// Pushes a tag with protocol identifier `tpid` (0x8100 or 0x88a8) and the
    /// whole `tci` (priority, drop-eligible bit and VLAN id) after the MAC
    /// addresses, using headroom: the frame as it was on the wire before a
    /// receiving kernel took the tag out. Returns false, leaving the frame as
    /// it is, when the frame is shorter than two MAC addresses or no headroom
    /// is left.
    pub fn push_vlan_tci(&mut self, tpid: u16, tci: u16) -> bool {
        if self.len < 12 || self.start < VNET_HDR_LEN + VLAN_TAG_LEN {
            return false;
        }
        self.push_tag(tpid, tci);
        true
    }

    /// Moves the MAC addresses `VLAN_TAG_LEN` bytes into the headroom and
    /// writes the tag between them and the EtherType that was there.
    fn push_tag(&mut self, tpid: u16, tci: u16) {
        let new_start = self.start - VLAN_TAG_LEN;
        self.buf.copy_within(self.start..self.start + 12, new_start);
        self.start = new_start;
        self.len += VLAN_TAG_LEN;
        self.offload.shift(VLAN_TAG_LEN as i32);
        let data = self.data_mut();
        EthernetFrame::new_unchecked(&mut *data).set_ethertype(tpid);
        VlanPacket::new_unchecked(&mut data[ethernet::HEADER_LEN..]).set_tci(tci);
    }

    /// True when the outer EtherType is an 802.1Q or 802.1ad tag.
    pub fn is_tagged(&self) -> bool {
        self.outer_ethertype().is_some_and(ethertype::is_vlan_tag)
    }

    /// Pops the outer 802.1Q tag and returns its VLAN id; `None` (and the frame
    /// unchanged) when the frame is not tagged or too short.
    pub fn pop_vlan(&mut self) -> Option<u16> {
        if self.outer_ethertype() != Some(ethertype::VLAN) {
            return None;
        }
        let vid = VlanPacket::new_checked(&self.data()[ethernet::HEADER_LEN..])
            .ok()?
            .vid();
        self.buf
            .copy_within(self.start..self.start + 12, self.start + VLAN_TAG_LEN);
        self.start += VLAN_TAG_LEN;
        self.len -= VLAN_TAG_LEN;
        self.offload.shift(-(VLAN_TAG_LEN as i32));
        Some(vid)
    }
}

#[cfg(test)]
mod tests {
    use yard_wire::vnet::F_NEEDS_CSUM;

    use super::*;

    fn frame_with(bytes: &[u8]) -> Frame {
        let mut f = Frame::new();
        f.fill(Offload::NONE, bytes);
        f
    }

    #[test]
    fn vlan_push_then_pop_restores_the_frame() {
        let original: Vec<u8> = (0..64u8).collect();
        let mut f = frame_with(&original);
        f.offload.flags = F_NEEDS_CSUM;
        f.offload.csum_start = 34;
        f.push_vlan(100);
        assert_eq!(f.len(), 68);
        assert_eq!(&f.data()[12..16], &[0x81, 0x00, 0x00, 100]);
        assert_eq!(&f.data()[..12], &original[..12]);
        assert_eq!(&f.data()[16..], &original[12..]);
        assert_eq!(f.offload.csum_start, 38);
        assert_eq!(f.pop_vlan(), Some(100));
        assert_eq!(f.data(), &original[..]);
        assert_eq!(f.offload.csum_start, 34);
        assert_eq!(f.pop_vlan(), None, "untagged frame stays as it is");
    }

    #[test]
    fn push_vlan_tci_keeps_priority_and_tpid_and_shifts_offsets() {
        let original: Vec<u8> = (0..64u8).collect();
        let mut f = frame_with(&original);
        f.offload = Offload {
            flags: F_NEEDS_CSUM,
            gso_type: 1,
            hdr_len: 54,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        assert!(f.push_vlan_tci(ethertype::VLAN, (5 << 13) | (1 << 12) | 10));
        assert_eq!(f.len(), 68);
        assert_eq!(&f.data()[..12], &original[..12]);
        assert_eq!(&f.data()[12..16], &[0x81, 0x00, 0xb0, 10]);
        assert_eq!(&f.data()[16..], &original[12..]);
        assert_eq!((f.offload.csum_start, f.offload.hdr_len), (38, 58));
        // The bridge reads the VID only, and pops back to the original frame.
        assert_eq!(f.pop_vlan(), Some(10));
        assert_eq!(f.data(), &original[..]);

        assert!(f.push_vlan_tci(0x88a8, 20));
        assert_eq!(f.outer_ethertype(), Some(0x88a8));
        assert_eq!(&f.data()[14..16], &[0, 20]);
        assert_eq!(f.pop_vlan(), None, "802.1ad is not popped as 802.1Q");

        let mut short = frame_with(&[0xff; 11]);
        assert!(!short.push_vlan_tci(ethertype::VLAN, 10));
        assert_eq!(short.data(), &[0xff; 11]);
    }

    #[test]
    fn wire_puts_the_vnet_header_in_front() {
        let mut f = frame_with(&[0xaa; 20]);
        f.offload = Offload {
            flags: 1,
            gso_type: 1,
            hdr_len: 54,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        let wire = f.wire().to_vec();
        assert_eq!(wire.len(), VNET_HDR_LEN + 20);
        let mut g = Frame::new();
        g.recv_buf()[..wire.len()].copy_from_slice(&wire);
        assert!(g.set_received(wire.len()));
        assert_eq!(g.offload, f.offload);
        assert_eq!(g.data(), f.data());
        assert!(!g.set_received(3));
    }
}
