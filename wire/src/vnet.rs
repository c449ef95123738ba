//! The virtio-net header (`struct virtio_net_hdr`): the 10 bytes a TAP opened
//! with `IFF_VNET_HDR` and an AF_PACKET socket with `PACKET_VNET_HDR` put
//! before every frame, saying what the frame's offloads are.
//!
//! Contract: [`VnetHeader`] is a typed view over those 10 bytes (fields
//! little-endian, as the kernel uses them on the little-endian machines
//! Switchyard runs on); what the fields mean for the frame is
//! [`crate::offload::Offload`], which [`Offload::parse`] reads from the view
//! and [`Offload::emit`] writes back. No allocation, no panics once
//! [`VnetHeader::new_checked`] accepted the buffer.
//!
//! The constants are the virtio specification's values (section 5.1.6,
//! "Device Operation"): flags ([`F_NEEDS_CSUM`]) and GSO types
//! ([`GSO_TCPV4`] and the others). Abbreviations: GSO, generic segmentation
//! offload; TSO, its TCP case; UFO, UDP fragmentation offload; USO, UDP
//! segmentation offload; ECN, explicit congestion notification.
//!
//! [`Offload::parse`]: crate::offload::Offload::parse
//! [`Offload::emit`]: crate::offload::Offload::emit

/// Length of the header (without the `num_buffers` field of mergeable
/// receive buffers, which neither TAP nor AF_PACKET uses here).
pub const HEADER_LEN: usize = 10;

/// Flag: the L4 checksum is partial — the field at `csum_start +
/// csum_offset` holds the pseudo-header sum, and whoever sends the frame sums
/// the bytes from `csum_start` to its end into it (`VIRTIO_NET_HDR_F_NEEDS_CSUM`).
pub const F_NEEDS_CSUM: u8 = 1;

/// GSO type: none, a plain frame (`VIRTIO_NET_HDR_GSO_NONE`).
pub const GSO_NONE: u8 = 0;
/// GSO type: TCP over IPv4 (TSO4).
pub const GSO_TCPV4: u8 = 1;
/// GSO type: one UDP datagram over IPv4, to be cut into IP fragments
/// (legacy UFO).
pub const GSO_UDP: u8 = 3;
/// GSO type: TCP over IPv6 (TSO6).
pub const GSO_TCPV6: u8 = 4;
/// GSO type: many UDP datagrams of `gso_size` bytes, one per segment (USO,
/// `VIRTIO_NET_HDR_GSO_UDP_L4`).
pub const GSO_UDP_L4: u8 = 5;
/// GSO flag, or-ed into the type: the TCP sender uses ECN (CWR goes on the
/// first segment only).
pub const GSO_ECN: u8 = 0x80;

/// Byte offsets of the fields.
mod field {
    use core::ops::Range;

    pub(super) const FLAGS: usize = 0;
    pub(super) const GSO_TYPE: usize = 1;
    pub(super) const HDR_LEN: Range<usize> = 2..4;
    pub(super) const GSO_SIZE: Range<usize> = 4..6;
    pub(super) const CSUM_START: Range<usize> = 6..8;
    pub(super) const CSUM_OFFSET: Range<usize> = 8..10;
}

/// Why a buffer is not a virtio-net header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VnetError {
    /// Fewer than [`HEADER_LEN`] bytes.
    #[error("virtio-net header cut short: {0} of {HEADER_LEN} bytes — the device must carry the 10-byte header (IFF_VNET_HDR / PACKET_VNET_HDR)")]
    Truncated(usize),
}

/// A typed view over a virtio-net header. Setters need `T: AsMut<[u8]>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VnetHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VnetHeader<T> {
    /// The view over `buffer`, which holds at least [`HEADER_LEN`] bytes.
    pub fn new_checked(buffer: T) -> Result<Self, VnetError> {
        let len = buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(VnetError::Truncated(len));
        }
        Ok(VnetHeader { buffer })
    }

    /// The buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn u16_at(&self, at: core::ops::Range<usize>) -> u16 {
        let b = &self.buffer.as_ref()[at];
        u16::from_le_bytes([b[0], b[1]])
    }

    /// `VIRTIO_NET_HDR_F_*` flags ([`F_NEEDS_CSUM`]).
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// `VIRTIO_NET_HDR_GSO_*` type, with [`GSO_ECN`] or-ed in.
    pub fn gso_type(&self) -> u8 {
        self.buffer.as_ref()[field::GSO_TYPE]
    }

    /// Length of the headers before the GSO payload (a hint: Linux puts the
    /// length of the linear part of its buffer here).
    pub fn hdr_len(&self) -> u16 {
        self.u16_at(field::HDR_LEN)
    }

    /// Payload bytes per segment.
    pub fn gso_size(&self) -> u16 {
        self.u16_at(field::GSO_SIZE)
    }

    /// Where the partial checksum's sum starts, from the Ethernet header.
    pub fn csum_start(&self) -> u16 {
        self.u16_at(field::CSUM_START)
    }

    /// Where the checksum field is, from `csum_start`.
    pub fn csum_offset(&self) -> u16 {
        self.u16_at(field::CSUM_OFFSET)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VnetHeader<T> {
    fn set_u16_at(&mut self, at: core::ops::Range<usize>, value: u16) {
        self.buffer.as_mut()[at].copy_from_slice(&value.to_le_bytes());
    }

    /// Sets the flags.
    pub fn set_flags(&mut self, value: u8) {
        self.buffer.as_mut()[field::FLAGS] = value;
    }

    /// Sets the GSO type.
    pub fn set_gso_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::GSO_TYPE] = value;
    }

    /// Sets the header length.
    pub fn set_hdr_len(&mut self, value: u16) {
        self.set_u16_at(field::HDR_LEN, value);
    }

    /// Sets the segment size.
    pub fn set_gso_size(&mut self, value: u16) {
        self.set_u16_at(field::GSO_SIZE, value);
    }

    /// Sets where the partial checksum's sum starts.
    pub fn set_csum_start(&mut self, value: u16) {
        self.set_u16_at(field::CSUM_START, value);
    }

    /// Sets where the checksum field is, from `csum_start`.
    pub fn set_csum_offset(&mut self, value: u16) {
        self.set_u16_at(field::CSUM_OFFSET, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_little_endian_at_their_offsets() {
        let bytes = [1, 0x81, 54, 0, 0xa8, 5, 34, 0, 16, 0];
        let h = VnetHeader::new_checked(&bytes[..]).unwrap();
        assert_eq!(
            (h.flags(), h.gso_type()),
            (F_NEEDS_CSUM, GSO_TCPV4 | GSO_ECN)
        );
        assert_eq!((h.hdr_len(), h.gso_size()), (54, 1448));
        assert_eq!((h.csum_start(), h.csum_offset()), (34, 16));

        let mut out = [0u8; HEADER_LEN];
        let mut w = VnetHeader::new_checked(&mut out[..]).unwrap();
        w.set_flags(h.flags());
        w.set_gso_type(h.gso_type());
        w.set_hdr_len(h.hdr_len());
        w.set_gso_size(h.gso_size());
        w.set_csum_start(h.csum_start());
        w.set_csum_offset(h.csum_offset());
        assert_eq!(out, bytes);
    }

    #[test]
    fn a_short_buffer_is_refused() {
        assert_eq!(
            VnetHeader::new_checked(&[0u8; 9][..]),
            Err(VnetError::Truncated(9))
        );
    }
}
