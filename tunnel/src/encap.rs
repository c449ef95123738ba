//! Encapsulation: write outer headers into the headroom in front of an inner
//! Ethernet frame.
//!
//! Contract: the inner frame sits at `buf[inner_start..inner_start + inner_len]`
//! and is neither read (except by the optional GRE checksum) nor moved; the
//! headers are written into `buf[new_start..inner_start]` and the function
//! returns `new_start`, so the packet to send is
//! `buf[new_start..inner_start + inner_len]`. Nothing else in `buf` is touched.
//! No allocation, no panics: bad bounds come back as an [`EncapError`].
//!
//! Fast path: both functions are a handful of stores, plus one pass over the
//! frame when the GRE checksum is on (it covers the payload, RFC 2784).
//!
//! The outer IPv4 header is what [`Ipv4Outer`] says, emitted through
//! `yard_wire`'s [`Ipv4Repr`]; the GRE header through its [`GreOptions`].

use core::net::Ipv4Addr;

use yard_wire::gre::{GreOptions, GrePacket};
use yard_wire::ipv4::{self, Ipv4Packet, Ipv4Repr};
use yard_wire::WireError;

use crate::{ETHERTYPE_TEB, IP_PROTOCOL_GRE};

/// How the outer IPv4 header of an encapsulated packet is filled in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv4Outer {
    /// Local tunnel endpoint.
    pub src: Ipv4Addr,
    /// Remote tunnel endpoint.
    pub dst: Ipv4Addr,
    /// Identification, from the caller's per-tunnel counter. (With
    /// `IP_HDRINCL`, Linux replaces an identification of 0 with its own.)
    pub ident: u16,
    /// Time to live; [`DEFAULT_TTL`](crate::DEFAULT_TTL) (64) as Linux and OVS.
    pub ttl: u8,
    /// Set DF, as OVS does by default (`options:df_default=true`), so an
    /// oversized packet is refused by the underlay rather than fragmented.
    pub dont_fragment: bool,
}

impl Ipv4Outer {
    /// Outer header from `src` to `dst` as OVS sends it: TTL 64, DF set,
    /// identification 0 (set [`ident`](Self::ident) from a counter).
    #[inline]
    pub const fn new(src: Ipv4Addr, dst: Ipv4Addr) -> Self {
        Self {
            src,
            dst,
            ident: 0,
            ttl: crate::DEFAULT_TTL,
            dont_fragment: true,
        }
    }

    /// The header to emit in front of a GRE packet of `payload_len` bytes:
    /// protocol 47, DSCP and ECN 0, no options.
    #[inline]
    pub const fn repr(&self, payload_len: usize) -> Ipv4Repr {
        Ipv4Repr {
            src: self.src,
            dst: self.dst,
            protocol: IP_PROTOCOL_GRE,
            payload_len,
            ttl: self.ttl,
            ident: self.ident,
            dont_frag: self.dont_fragment,
            tos: 0,
        }
    }
}

/// Why a frame could not be encapsulated. These are bugs or configuration
/// errors of the caller (too little headroom, an overlay MTU above what the
/// underlay carries), not properties of received traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum EncapError {
    /// `inner_start + inner_len` lies outside the buffer.
    #[error(
        "GRE encap: inner frame {start}+{len} lies outside the {buf_len}-byte buffer — \
         pass the frame's real offset and length"
    )]
    OutOfBounds {
        /// The inner frame's offset.
        start: usize,
        /// The inner frame's length.
        len: usize,
        /// The buffer's length.
        buf_len: usize,
    },
    /// Not enough headroom in front of the inner frame for the outer headers.
    #[error(
        "GRE encap needs {needed} bytes of headroom before the inner frame but has {available} — \
         allocate frames with at least MAX_IPV4_ENCAP_HEADROOM (36) bytes of headroom"
    )]
    Headroom {
        /// Bytes of headers to write.
        needed: usize,
        /// Bytes in front of the inner frame.
        available: usize,
    },
    /// The outer IPv4 packet would exceed 65535 bytes.
    #[error(
        "GRE encap: outer IPv4 packet would be {total_len} bytes, over the IPv4 limit of 65535 — \
         segment the frame first or lower the overlay MTU"
    )]
    TooLong {
        /// The total length the packet would have.
        total_len: usize,
    },
}

impl EncapError {
    /// A short stable name, for per-reason counters.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::OutOfBounds { .. } => "out-of-bounds",
            Self::Headroom { .. } => "no-headroom",
            Self::TooLong { .. } => "too-long",
        }
    }
}

/// Checks the frame's bounds and headroom; returns where the headers start
/// and where the frame ends.
fn place(
    buf_len: usize,
    inner_start: usize,
    inner_len: usize,
    headers_len: usize,
) -> Result<(usize, usize), EncapError> {
    let end = inner_start
        .checked_add(inner_len)
        .filter(|end| *end <= buf_len)
        .ok_or(EncapError::OutOfBounds {
            start: inner_start,
            len: inner_len,
            buf_len,
        })?;
    let start = inner_start
        .checked_sub(headers_len)
        .ok_or(EncapError::Headroom {
            needed: headers_len,
            available: inner_start,
        })?;
    Ok((start, end))
}

/// Writes the GRE header for an Ethernet payload (protocol 0x6558) with
/// `options` in front of the inner frame, computing the checksum if asked, and
/// returns the GRE header's offset. For GRE-in-UDP (RFC 8086): send
/// `buf[returned..inner_start + inner_len]` as the payload of a UDP datagram to
/// port [`GRE_IN_UDP_PORT`](crate::GRE_IN_UDP_PORT); the socket adds UDP and IP.
///
/// Needs `options.header_len()` (4–16) bytes of headroom.
///
/// # Errors
/// [`EncapError::OutOfBounds`] or [`EncapError::Headroom`]; `buf` is then
/// unchanged.
pub fn encap_gre(
    buf: &mut [u8],
    inner_start: usize,
    inner_len: usize,
    options: GreOptions,
) -> Result<usize, EncapError> {
    let (start, end) = place(buf.len(), inner_start, inner_len, options.header_len())?;
    write_gre(&mut buf[start..end], options);
    Ok(start)
}

/// Writes the GRE header into the start of `packet` (header + payload).
fn write_gre(packet: &mut [u8], options: GreOptions) {
    let mut gre = GrePacket::new_unchecked(packet);
    options.emit(&mut gre, ETHERTYPE_TEB);
    gre.fill_checksum();
}

/// Writes an outer IPv4 header (protocol 47, no options) and a GRE header
/// with `options` in front of the inner frame and returns the IPv4 header's
/// offset: `buf[returned..inner_start + inner_len]` is a complete IPv4 packet
/// for a raw socket with `IP_HDRINCL`. The IPv4 header is complete — total
/// length, identification, DF, TTL and header checksum included — so it is
/// correct on the wire even where the kernel does not fill fields in.
///
/// Needs 20 + `options.header_len()` (24–36) bytes of headroom.
///
/// # Errors
/// [`EncapError::OutOfBounds`], [`EncapError::Headroom`] or
/// [`EncapError::TooLong`]; `buf` is then unchanged.
pub fn encap_ipv4(
    buf: &mut [u8],
    inner_start: usize,
    inner_len: usize,
    outer: Ipv4Outer,
    options: GreOptions,
) -> Result<usize, EncapError> {
    let gre_len = options.header_len();
    let headers_len = ipv4::HEADER_LEN + gre_len;
    let (start, end) = place(buf.len(), inner_start, inner_len, headers_len)?;
    let packet = &mut buf[start..end];
    let (ip_header, gre_packet) = packet.split_at_mut(ipv4::HEADER_LEN);
    // The IPv4 header first: it is the step that can refuse (too long), and
    // it writes nothing when it does.
    outer
        .repr(gre_packet.len())
        .emit(&mut Ipv4Packet::new_unchecked(ip_header))
        .map_err(|e| match e {
            WireError::TooLong { total_len } => EncapError::TooLong { total_len },
            // `place` left exactly HEADER_LEN bytes for the header.
            _ => EncapError::Headroom {
                needed: headers_len,
                available: inner_start,
            },
        })?;
    write_gre(gre_packet, options);
    Ok(start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv4Addr;

    fn outer() -> Ipv4Outer {
        Ipv4Outer::new(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2))
    }

    #[test]
    fn out_of_bounds() {
        let mut buf = [0u8; 64];
        let err = encap_gre(&mut buf, 40, 30, GreOptions::NONE).unwrap_err();
        assert_eq!(
            err,
            EncapError::OutOfBounds {
                start: 40,
                len: 30,
                buf_len: 64
            }
        );
        assert_eq!(err.as_str(), "out-of-bounds");
        let err = encap_ipv4(&mut buf, usize::MAX, 2, outer(), GreOptions::NONE).unwrap_err();
        assert_eq!(err.as_str(), "out-of-bounds");
        assert_eq!(buf, [0u8; 64]);
    }

    #[test]
    fn headroom() {
        let mut buf = [0u8; 64];
        let err = encap_ipv4(&mut buf, 27, 20, outer(), GreOptions::with_key(1)).unwrap_err();
        assert_eq!(
            err,
            EncapError::Headroom {
                needed: 28,
                available: 27
            }
        );
        assert_eq!(buf, [0u8; 64]);
        assert_eq!(err.as_str(), "no-headroom");
        assert!(err.to_string().contains("headroom"));
        let options = GreOptions {
            key: Some(1),
            checksum: true,
            sequence: Some(2),
        };
        assert!(encap_gre(&mut buf, 15, 20, options).is_err());
        assert_eq!(encap_gre(&mut buf, 16, 20, options), Ok(0));
        // Exactly enough headroom for the largest IPv4 encapsulation.
        assert_eq!(encap_ipv4(&mut buf, 36, 28, outer(), options), Ok(0));
    }

    #[test]
    fn too_long() {
        let mut buf = vec![0u8; 36 + 65_535];
        let err = encap_ipv4(&mut buf, 36, 65_535 - 24 + 1, outer(), GreOptions::NONE);
        assert_eq!(err, Err(EncapError::TooLong { total_len: 65_536 }));
        assert_eq!(err.unwrap_err().as_str(), "too-long");
        assert_eq!(
            encap_ipv4(&mut buf, 36, 65_535 - 24, outer(), GreOptions::NONE),
            Ok(12)
        );
    }
}
