//! Tunnel ports: Ethernet over GRE (raw IPv4) or GRE-in-UDP to one remote
//! host, over a socket shared by every tunnel with the same local endpoint.
//!
//! Sending happens here: the GRE header is written into the frame's headroom
//! and the packet queued in the port's [`sys::SendBatch`] (a copy of up to
//! 2 KiB), which [`Port::flush`] hands to the socket with one `sendmmsg(2)`
//! per round; a larger packet is sent at once, after the queued ones, so a
//! tunnel's packets keep their order (and their GRE sequence numbers). A
//! GRE-in-UDP tunnel sends each run of equal-sized packets (a segmented
//! TCP frame's) as one UDP GSO message within that `sendmmsg`; where the
//! kernel refuses UDP GSO, the tunnel logs it once and sends datagram by
//! datagram. Raw GRE has no GSO in the kernel. Receiving does not: the
//! shared socket is read by the datapath's [`crate::dataplane::overlay`], which
//! demultiplexes by remote address and key to the right tunnel port — so
//! [`Port::recv`] of a tunnel port never yields a frame.
//!
//! On the way in, a tunnel clamps the MSS of TCP SYNs to what fits its
//! overlay MTU. The far side receives plain packets, so a tunnel takes no
//! offloads ([`Port::accepts_gso`] and [`Port::accepts_partial_csum`] are
//! false): the bridge segments GSO frames and completes partial checksums in
//! software ([`crate::dataplane::offload`]) before they get here. A partial checksum
//! that arrives anyway is completed here too.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use yard_nat::flow::Proto;
use yard_tunnel::{encap_gre, GreOptions};
use yard_wire::checksum::L4Checksum;
use yard_wire::ethernet::{self, ethertype, EthernetFrame};
use yard_wire::ipv4::Ipv4Packet;
use yard_wire::tcp::TcpPacket;

use super::Port;
use crate::dataplane::frame::Frame;
use crate::dataplane::offload;
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
    /// The last GRE sequence number sent, shared by every handle on the
    /// tunnel so threads sending through it never repeat one.
    last_seq: Arc<AtomicU32>,
    /// Packets sent this round, for [`Port::flush`]; each tagged with its
    /// inner frame's length.
    batch: sys::SendBatch,
    /// Packets the socket refused at a flush since the last
    /// [`Port::take_drops`]: (frames, inner bytes).
    refused: (u64, u64),
}

impl TunnelPort {
    /// A tunnel over `socket`.
    pub fn new(socket: Arc<TunnelSocket>, params: TunnelParams) -> Self {
        let batch = send_batch_for(&socket);
        TunnelPort {
            socket,
            params,
            last_seq: Arc::new(AtomicU32::new(0)),
            batch,
            refused: (0, 0),
        }
    }

    /// Sends one packet straight to the remote.
    fn send_now(&self, packet: &[u8]) -> io::Result<()> {
        match &*self.socket {
            TunnelSocket::Gre(fd) => sys::send_gre(fd.as_fd(), packet, *self.params.remote.ip())?,
            TunnelSocket::Udp(socket) => socket.send_to(packet, self.params.remote)?,
        };
        Ok(())
    }

    /// Sends the queued packets with one `sendmmsg(2)` (as few as the
    /// socket takes), counting the refused ones for [`Port::take_drops`].
    fn flush_batch(&mut self) {
        let refused = &mut self.refused;
        let fd = match &*self.socket {
            TunnelSocket::Gre(fd) => fd.as_fd(),
            TunnelSocket::Udp(socket) => socket.as_fd(),
        };
        let gso_refused = self
            .batch
            .flush(fd, Some(self.params.remote), |_, inner_len| {
                refused.0 += 1;
                refused.1 += u64::from(inner_len);
            });
        if let Some(error) = gso_refused {
            tracing::warn!(
                remote = %self.params.remote,
                %error,
                "the kernel refuses UDP GSO; this GRE-in-UDP tunnel now sends one datagram each"
            );
        }
    }
}

/// A send batch for `socket`: UDP GSO on for GRE-in-UDP.
fn send_batch_for(socket: &TunnelSocket) -> sys::SendBatch {
    let mut batch = sys::SendBatch::new();
    batch.set_udp_gso(matches!(socket, TunnelSocket::Udp(_)));
    batch
}

/// Clamps the MSS option of an IPv4 TCP SYN to `max`.
fn clamp_syn_mss(frame: &mut Frame, max: u16) {
    let data = frame.data_mut();
    let is_ipv4 =
        EthernetFrame::new_checked(&*data).is_ok_and(|eth| eth.ethertype() == ethertype::IPV4);
    if !is_ipv4 {
        return;
    }
    let Ok(mut ip) = Ipv4Packet::new_checked(&mut data[ethernet::HEADER_LEN..]) else {
        return;
    };
    if ip.protocol() != Proto::Tcp.ip_protocol() || ip.is_later_fragment() {
        return;
    }
    if let Ok(mut tcp) = TcpPacket::new_checked(ip.payload_mut()) {
        if tcp.flags().syn() {
            tcp.clamp_mss(max, L4Checksum::Full);
        }
    }
}

impl Port for TunnelPort {
    fn describe_send(&self) -> Option<String> {
        let p = &self.params;
        let key = p.key.map_or(String::new(), |k| format!(" with key {k}"));
        let how = match *self.socket {
            TunnelSocket::Gre(_) => format!("GRE to {}{key}", p.remote.ip()),
            TunnelSocket::Udp(_) => format!("GRE-in-UDP to {}{key}", p.remote),
        };
        Some(format!(
            "encapsulated in {how} (overlay MTU {}; a TCP SYN's MSS clamped to fit)",
            p.overlay_mtu
        ))
    }

    fn recv(&mut self, _frame: &mut Frame) -> io::Result<bool> {
        Ok(false)
    }

    fn prepare(&self, frame: &mut Frame) -> io::Result<()> {
        offload::complete_checksum(frame)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        // IPv4 (20) + TCP (20) headers come off the overlay MTU.
        clamp_syn_mss(
            frame,
            self.params.overlay_mtu.saturating_sub(40).min(65_535) as u16,
        );
        Ok(())
    }

    fn send(&mut self, frame: &mut Frame) -> io::Result<()> {
        let sequence = self.params.seq.then(|| {
            self.last_seq
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_add(1)
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
        if self.batch.queue(packet, len as u32) {
            return Ok(());
        }
        self.flush_batch();
        if self.batch.queue(packet, len as u32) {
            return Ok(());
        }
        self.send_now(packet)
    }

    fn has_queued(&self) -> bool {
        self.batch.queued() > 0
    }

    fn flush(&mut self) {
        self.flush_batch();
    }

    /// Packets the socket refused at a flush leave the sent counters and
    /// count as `tx-error` drops.
    fn take_drops(&mut self, counters: &mut super::PortCounters) {
        let (frames, bytes) = std::mem::take(&mut self.refused);
        counters.tx_packets = counters.tx_packets.saturating_sub(frames);
        counters.tx_bytes = counters.tx_bytes.saturating_sub(bytes);
        counters.drops[crate::dataplane::verdict::DropReason::TxError.index()] += frames;
    }

    fn raw_fd(&self) -> Option<RawFd> {
        None
    }

    fn share(&self) -> io::Result<Box<dyn Port>> {
        Ok(Box::new(TunnelPort {
            socket: self.socket.clone(),
            params: self.params,
            last_seq: self.last_seq.clone(),
            batch: send_batch_for(&self.socket),
            refused: (0, 0),
        }))
    }

    fn accepts_gso(&self) -> bool {
        false
    }

    fn accepts_partial_csum(&self) -> bool {
        false
    }
}

/// The remote of a GRE tunnel as a socket address (raw GRE has no port).
pub fn gre_remote(ip: Ipv4Addr) -> SocketAddrV4 {
    SocketAddrV4::new(ip, 0)
}
