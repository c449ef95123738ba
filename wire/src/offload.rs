//! A frame's offload state — the one type every part of Switchyard uses for
//! it — and finishing a partial checksum in software.
//!
//! TAPs (with `TUNSETOFFLOAD`) and AF_PACKET ports (with `PACKET_VNET_HDR`)
//! hand over frames whose checksum is left for later (`NEEDS_CSUM`: the L4
//! checksum field holds the pseudo-header sum) and frames that are one large
//! TCP or UDP send to be cut into `gso_size` pieces (GSO). [`Offload`] is what
//! the frame's virtio-net header said about it. It travels with the frame's
//! bytes wherever they go — through the bridge, through the gateway, into
//! the gateway's queue of frames waiting for ARP and out again — so nothing
//! downstream has to guess it back from the bytes; a port whose device cannot
//! take it gets the frame finished in software ([`complete_checksum`] here,
//! [`crate::gso::segment`] for GSO).
//!
//! Contract: plain data and pure functions over caller-owned bytes — no I/O,
//! no allocation, no panic on any input. [`L4Checksum`] (in
//! [`crate::checksum`]) is how one L4 checksum field is held; a frame's
//! offload state gives it with [`Offload::l4_checksum`].

use crate::checksum::{ones_sum, L4Checksum};
use crate::udp;
use crate::vnet::{self, VnetHeader};

/// A frame's offload state, field for field what its virtio-net header
/// said (so a frame passed on to another device leaves with the header it
/// came with, flags this crate does not interpret included). The default,
/// [`Offload::NONE`], is a plain frame with complete checksums.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Offload {
    /// `VIRTIO_NET_HDR_F_*` flags ([`vnet::F_NEEDS_CSUM`]).
    pub flags: u8,
    /// `VIRTIO_NET_HDR_GSO_*` type ([`vnet::GSO_TCPV4`] and the others),
    /// with [`vnet::GSO_ECN`] or-ed in.
    pub gso_type: u8,
    /// Length of the headers before the GSO payload (a hint: Linux puts the
    /// length of the linear part of its buffer here; see [`crate::gso`]).
    pub hdr_len: u16,
    /// Payload bytes per segment of a GSO frame.
    pub gso_size: u16,
    /// Where the partial checksum's sum starts, from the Ethernet header.
    pub csum_start: u16,
    /// Where the checksum field is, from `csum_start`.
    pub csum_offset: u16,
}

impl Offload {
    /// A plain frame: complete checksums, no segmentation.
    pub const NONE: Offload = Offload {
        flags: 0,
        gso_type: vnet::GSO_NONE,
        hdr_len: 0,
        gso_size: 0,
        csum_start: 0,
        csum_offset: 0,
    };

    /// Reads a frame's offload state from its virtio-net header.
    pub fn parse<T: AsRef<[u8]>>(header: &VnetHeader<T>) -> Offload {
        Offload {
            flags: header.flags(),
            gso_type: header.gso_type(),
            hdr_len: header.hdr_len(),
            gso_size: header.gso_size(),
            csum_start: header.csum_start(),
            csum_offset: header.csum_offset(),
        }
    }

    /// Writes the offload state into a virtio-net header.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, header: &mut VnetHeader<T>) {
        header.set_flags(self.flags);
        header.set_gso_type(self.gso_type);
        header.set_hdr_len(self.hdr_len);
        header.set_gso_size(self.gso_size);
        header.set_csum_start(self.csum_start);
        header.set_csum_offset(self.csum_offset);
    }

    /// Reads the state from the bytes of a virtio-net header.
    pub fn from_header(bytes: &[u8; vnet::HEADER_LEN]) -> Offload {
        match VnetHeader::new_checked(&bytes[..]) {
            Ok(header) => Offload::parse(&header),
            // Unreachable: the array is exactly a header long.
            Err(_) => Offload::NONE,
        }
    }

    /// The bytes of the virtio-net header that carries this state.
    pub fn to_header(&self) -> [u8; vnet::HEADER_LEN] {
        let mut bytes = [0u8; vnet::HEADER_LEN];
        if let Ok(mut header) = VnetHeader::new_checked(&mut bytes[..]) {
            self.emit(&mut header);
        }
        bytes
    }

    /// True for a GSO frame: it may exceed the MTU, and is cut into
    /// segments by whoever sends it on the wire.
    pub fn is_gso(&self) -> bool {
        self.gso_type != vnet::GSO_NONE
    }

    /// The GSO type without the [`vnet::GSO_ECN`] flag.
    pub fn gso_kind(&self) -> u8 {
        self.gso_type & !vnet::GSO_ECN
    }

    /// True when the L4 checksum is partial (`NEEDS_CSUM`).
    pub fn needs_csum(&self) -> bool {
        self.flags & vnet::F_NEEDS_CSUM != 0
    }

    /// How the frame's L4 checksum field is held, for rewrites: partial
    /// with `NEEDS_CSUM`, and for a UDP segmentation (USO) frame, whose field
    /// is the pseudo-header sum its segments' checksums are finished from.
    pub fn l4_checksum(&self) -> L4Checksum {
        if self.needs_csum() || (self.is_gso() && self.gso_kind() == vnet::GSO_UDP_L4) {
            L4Checksum::Partial
        } else {
            L4Checksum::Full
        }
    }

    /// Moves the offsets that count from the start of the Ethernet header by
    /// `delta` bytes, for a VLAN tag pushed (positive) or popped (negative)
    /// in front of the payload. Offsets the state does not use are left as
    /// they are; results are clamped to `0..=u16::MAX`.
    pub fn shift(&mut self, delta: i32) {
        let move_by = |v: u16| (i32::from(v) + delta).clamp(0, i32::from(u16::MAX)) as u16;
        if self.needs_csum() {
            self.csum_start = move_by(self.csum_start);
        }
        if self.is_gso() {
            self.hdr_len = move_by(self.hdr_len);
        }
    }
}

/// Why a frame's offloads could not be done in software. Every error is
/// found before anything is written or handed out, so a caller never sends
/// half a frame; the frame is dropped and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OffloadError {
    /// `csum_start`/`csum_offset` point outside the frame.
    #[error("partial checksum field at {start}+{offset} lies outside the {len}-byte frame: the sender's virtio-net header is wrong")]
    ChecksumOutsideFrame {
        /// `csum_start`.
        start: u16,
        /// `csum_offset`.
        offset: u16,
        /// Frame length.
        len: usize,
    },
    /// A GSO type that is not segmented in software (or one not matching the
    /// packet, such as UFO over IPv6).
    #[error("GSO type {0:#x} cannot be segmented in software for this packet: turn that offload off on the sending device")]
    UnsupportedGsoType(u8),
    /// A GSO frame with `gso_size` 0 (or, for UFO, under 8).
    #[error("GSO size {0} is too small to cut the frame into segments")]
    GsoSizeTooSmall(u16),
    /// The Ethernet, IP or L4 headers are cut short or inconsistent.
    #[error("malformed {0} header in a GSO frame")]
    Malformed(&'static str),
    /// The packet is not the protocol the GSO type says.
    #[error("GSO type {gso_type:#x} on a packet with IP protocol {protocol}")]
    ProtocolMismatch {
        /// The virtio-net GSO type (ECN bit cleared).
        gso_type: u8,
        /// The IP (next-header) protocol found.
        protocol: u8,
    },
    /// `hdr_len` is shorter than the headers or longer than the frame.
    #[error("virtio-net hdr_len {declared} does not cover the {actual} bytes of headers or runs past the frame")]
    HeaderLength {
        /// `hdr_len` from the virtio-net header.
        declared: u16,
        /// Length of the parsed headers (Ethernet to L4).
        actual: usize,
    },
    /// `NEEDS_CSUM` is set but `csum_start` is not where the L4 header is.
    #[error("csum_start {declared} is not the L4 header's offset {actual}")]
    ChecksumStart {
        /// `csum_start` from the virtio-net header.
        declared: u16,
        /// Offset of the parsed L4 header.
        actual: usize,
    },
    /// The caller's buffer cannot hold a segment or fragment (a sink whose
    /// buffer is smaller than the frame it cuts).
    #[error("a {need}-byte segment does not fit the sink's {have}-byte buffer")]
    SinkTooSmall {
        /// Bytes the largest piece needs.
        need: usize,
        /// Bytes the sink's buffer has.
        have: usize,
    },
}

/// Completes a partial L4 checksum (`NEEDS_CSUM`) in `frame` (an Ethernet
/// frame) and clears the flag: sums the frame from `csum_start` to its end
/// (the field holds the pseudo-header sum already) and stores the complement
/// at `csum_start + csum_offset`. A UDP checksum (`csum_offset` 6) that
/// computes to 0 is sent as `0xffff`, since 0 means "no checksum". A frame
/// without the flag is left as it is; on an error neither is changed.
///
/// Meant for frames that are not GSO; a GSO frame goes through
/// [`crate::gso::segment`], which finishes every segment's checksum.
pub fn complete_checksum(frame: &mut [u8], offload: &mut Offload) -> Result<(), OffloadError> {
    if !offload.needs_csum() {
        return Ok(());
    }
    let (start, offset) = (offload.csum_start, offload.csum_offset);
    let field = usize::from(start) + usize::from(offset);
    if field + 2 > frame.len() {
        return Err(OffloadError::ChecksumOutsideFrame {
            start,
            offset,
            len: frame.len(),
        });
    }
    let mut check = !ones_sum(&frame[usize::from(start)..]);
    if usize::from(offset) == udp::CHECKSUM_OFFSET && check == 0 {
        check = 0xffff;
    }
    // The field is wherever the sender's virtio-net header puts it, for
    // any protocol: no header view applies, so it is written here.
    frame[field..field + 2].copy_from_slice(&check.to_be_bytes());
    offload.flags &= !vnet::F_NEEDS_CSUM;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_emit_are_inverse() {
        let offload = Offload {
            flags: vnet::F_NEEDS_CSUM,
            gso_type: vnet::GSO_TCPV4 | vnet::GSO_ECN,
            hdr_len: 54,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        let mut bytes = [0u8; vnet::HEADER_LEN];
        offload.emit(&mut VnetHeader::new_checked(&mut bytes[..]).unwrap());
        assert_eq!(bytes, [1, 0x81, 54, 0, 0xa8, 5, 34, 0, 16, 0]);
        let back = Offload::parse(&VnetHeader::new_checked(&bytes[..]).unwrap());
        assert_eq!(back, offload);
        assert_eq!(offload.to_header(), bytes);
        assert_eq!(Offload::from_header(&bytes), offload);
        assert_eq!(Offload::default(), Offload::NONE);
    }

    #[test]
    fn the_l4_checksum_mode_follows_needs_csum_and_uso() {
        assert_eq!(Offload::NONE.l4_checksum(), L4Checksum::Full);
        let partial = Offload {
            flags: vnet::F_NEEDS_CSUM,
            ..Offload::NONE
        };
        assert_eq!(partial.l4_checksum(), L4Checksum::Partial);
        let uso = Offload {
            gso_type: vnet::GSO_UDP_L4,
            ..Offload::NONE
        };
        assert_eq!(uso.l4_checksum(), L4Checksum::Partial);
        let tso = Offload {
            gso_type: vnet::GSO_TCPV4,
            ..Offload::NONE
        };
        assert_eq!(tso.l4_checksum(), L4Checksum::Full);
    }

    #[test]
    fn shift_moves_only_the_offsets_in_use() {
        let mut o = Offload {
            flags: vnet::F_NEEDS_CSUM,
            csum_start: 34,
            hdr_len: 54,
            ..Offload::NONE
        };
        o.shift(4);
        assert_eq!(
            (o.csum_start, o.hdr_len),
            (38, 54),
            "not GSO: hdr_len unused"
        );
        o.gso_type = vnet::GSO_TCPV4;
        o.shift(-4);
        assert_eq!((o.csum_start, o.hdr_len), (34, 50));
        o.shift(-100);
        assert_eq!((o.csum_start, o.hdr_len), (0, 0), "clamped");
    }
}
