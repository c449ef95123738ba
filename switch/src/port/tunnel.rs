//! Tunnel ports: Ethernet over GRE (raw IPv4) or GRE-in-UDP to one remote
//! host, over a socket shared by every tunnel with the same local endpoint.
//!
//! Sending happens here: the GRE header is written into the frame's headroom
//! and the result handed to the socket (no copy). Receiving does not: the
//! shared socket is read by the datapath's [`crate::overlay`], which
//! demultiplexes by remote address and key to the right tunnel port — so
//! [`Port::recv`] of a tunnel port never yields a frame.
//!
//! On the way in, a tunnel clamps the MSS of TCP SYNs to what fits its
//! overlay MTU, and completes a partial (offloaded) checksum, since the far
//! side receives plain packets. A GSO frame cannot be segmented here yet: it
//! is refused with `ErrorKind::Unsupported` and counted.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use yard_nat::checksum::{self, L4Checksum};
use yard_nat::wire::{Ipv4Packet, TcpPacket};
use yard_tunnel::{encap_gre, GreOptions};

use super::Port;
use crate::frame::{Frame, ETH_HEADER_LEN, VNET_F_NEEDS_CSUM};
use crate::sys;

/// A socket tunnels share.
pub enum TunnelSocket {
    /// Raw IPv4, protocol 47.
    Gre(OwnedFd),
    /// GRE-in-UDP.
    Udp(UdpSocket),
}

impl TunnelSocket {
    /// The fd to poll.
    pub fn raw_fd(&self) -> RawFd {
        match self {
            TunnelSocket::Gre(fd) => fd.as_raw_fd(),
            TunnelSocket::Udp(s) => s.as_raw_fd(),
        }
    }
}

/// Where and how a tunnel port sends.
#[derive(Debug, Clone, Copy)]
pub struct TunnelParams {
    /// The remote host (and UDP port for GRE-in-UDP).
    pub remote: SocketAddrV4,
    /// GRE key.
    pub key: Option<u32>,
    /// Send GRE checksums.
    pub csum: bool,
    /// Send sequence numbers.
    pub seq: bool,
    /// The largest inner IP packet that crosses without outer fragmentation.
    pub overlay_mtu: u32,
}

/// One tunnel.
pub struct TunnelPort {
    socket: Arc<TunnelSocket>,
    params: TunnelParams,
    next_seq: u32,
}

impl TunnelPort {
    /// A tunnel over `socket`.
    pub fn new(socket: Arc<TunnelSocket>, params: TunnelParams) -> Self {
        TunnelPort {
            socket,
            params,
            next_seq: 0,
        }
    }
}

/// Completes a partial L4 checksum: sums from `csum_start` to the end and
/// stores the result at `csum_start + csum_offset`.
fn complete_checksum(frame: &mut Frame) -> io::Result<()> {
    let start = usize::from(frame.vnet.csum_start);
    let field = start + usize::from(frame.vnet.csum_offset);
    let data = frame.data_mut();
    if field + 2 > data.len() || start > data.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "partial checksum outside the frame",
        ));
    }
    let sum = checksum::ones_sum(&data[start..]);
    let folded = !sum;
    data[field..field + 2].copy_from_slice(&folded.to_be_bytes());
    frame.vnet.flags &= !VNET_F_NEEDS_CSUM;
    Ok(())
}

/// Clamps the MSS option of an IPv4 TCP SYN to `max`.
fn clamp_syn_mss(frame: &mut Frame, max: u16) {
    let data = frame.data_mut();
    if data.len() < ETH_HEADER_LEN || data[12..14] != [0x08, 0x00] {
        return;
    }
    let Ok(mut ip) = Ipv4Packet::new_checked(&mut data[ETH_HEADER_LEN..]) else {
        return;
    };
    if ip.protocol() != 6 || ip.is_later_fragment() {
        return;
    }
    if let Ok(mut tcp) = TcpPacket::new_checked(ip.payload_mut()) {
        if tcp.flags().syn() {
            tcp.clamp_mss(max, L4Checksum::Full);
        }
    }
}

impl Port for TunnelPort {
    fn recv(&mut self, _frame: &mut Frame) -> io::Result<bool> {
        Ok(false)
    }

    fn send(&mut self, frame: &mut Frame) -> io::Result<()> {
        if frame.vnet.is_gso() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "GSO frame into a tunnel",
            ));
        }
        if frame.vnet.flags & VNET_F_NEEDS_CSUM != 0 {
            complete_checksum(frame)?;
        }
        // IPv4 (20) + TCP (20) headers come off the overlay MTU.
        clamp_syn_mss(
            frame,
            self.params.overlay_mtu.saturating_sub(40).min(65_535) as u16,
        );
        let sequence = self.params.seq.then(|| {
            self.next_seq = self.next_seq.wrapping_add(1);
            self.next_seq
        });
        let options = GreOptions {
            key: self.params.key,
            checksum: self.params.csum,
            sequence,
        };
        let (start, len) = (frame.start(), frame.len());
        let outer_start = encap_gre(frame.raw_mut(), start, len, options)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let packet = &frame.raw_mut()[outer_start..start + len];
        match &*self.socket {
            TunnelSocket::Gre(fd) => sys::send_gre(fd.as_fd(), packet, *self.params.remote.ip())?,
            TunnelSocket::Udp(socket) => socket.send_to(packet, self.params.remote)?,
        };
        Ok(())
    }

    fn raw_fd(&self) -> Option<RawFd> {
        None
    }
}

/// The remote of a GRE tunnel as a socket address (raw GRE has no port).
pub fn gre_remote(ip: Ipv4Addr) -> SocketAddrV4 {
    SocketAddrV4::new(ip, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::VnetHeader;

    #[test]
    fn partial_checksums_are_completed() {
        // An IPv4/UDP frame whose UDP checksum field holds the pseudo-header
        // sum, as a veth with tx offload hands it over.
        let payload = [1u8, 2, 3, 4, 5];
        let builder = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(1000, 2000);
        let mut bytes = Vec::new();
        builder.write(&mut bytes, &payload).unwrap();
        let correct = u16::from_be_bytes([bytes[40], bytes[41]]);
        let pseudo = checksum::pseudo_header_sum(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            17,
            (8 + payload.len()) as u16,
        );
        bytes[40..42].copy_from_slice(&pseudo.to_be_bytes());
        let mut frame = Frame::new();
        let vnet = VnetHeader {
            flags: VNET_F_NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 6,
            ..VnetHeader::default()
        };
        frame.fill(vnet, &bytes);
        complete_checksum(&mut frame).unwrap();
        assert_eq!(
            u16::from_be_bytes([frame.data()[40], frame.data()[41]]),
            correct
        );
        assert_eq!(frame.vnet.flags & VNET_F_NEEDS_CSUM, 0);
    }
}
