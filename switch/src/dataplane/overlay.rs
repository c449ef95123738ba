//! The receiving half of tunnels: the sockets tunnel ports share, and the
//! demultiplexing of what arrives on them to tunnel ports by remote address
//! and GRE key (so two networks between the same hosts stay apart).
//!
//! A raw GRE socket sees every GRE packet the host receives, and a
//! GRE-in-UDP socket every datagram to its port; a packet whose (remote,
//! key) matches no tunnel is dropped and counted, as are packets the
//! decapsulation refuses (by [`DecapError`] reason). The outer packet is
//! read into the frame buffer far enough in that the inner frame keeps
//! headroom; the inner frame is then used in place.
//!
//! The datapath merges consecutive inner TCP segments of one flow into one
//! GSO frame before forwarding them (software GRO, see
//! [`crate::dataplane::offload::merge_start`]); the overlay counts the
//! merges ([`Overlay::merged`], `yardctl status`).

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::sync::Arc;

use yard_tunnel::{decap_gre, decap_ipv4, DecapError, MAX_IPV4_ENCAP_HEADROOM};

use crate::dataplane::frame::{Frame, HEADROOM};
use crate::dataplane::port::tunnel::TunnelSocket;
use crate::dataplane::port::PortId;
use crate::sys;

/// Where outer packets are read into the frame buffer: the largest outer
/// header then ends at [`HEADROOM`], so the inner frame starts no earlier.
const RECV_OFFSET: usize = HEADROOM - MAX_IPV4_ENCAP_HEADROOM;

/// One shared socket and the tunnels behind it.
struct Endpoint {
    socket: Arc<TunnelSocket>,
    routes: HashMap<(Ipv4Addr, Option<u32>), PortId>,
}

/// Every tunnel endpoint of the datapath.
#[derive(Default)]
pub struct Overlay {
    endpoints: Vec<Option<Endpoint>>,
    /// Packets dropped before reaching a tunnel port, by reason.
    pub drops: BTreeMap<&'static str, u64>,
    /// Received segments merged into GSO frames (software GRO).
    pub merged: MergeCounts,
}

/// What software GRO made of the received tunnel packets.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MergeCounts {
    /// GSO frames made by merging two or more segments.
    pub frames: u64,
    /// The segments that went into them.
    pub segments: u64,
}

impl Overlay {
    /// Routes packets from `remote` with `key` on `socket` to `port`.
    /// Returns the endpoint's index when the socket is new here and must be
    /// polled.
    pub fn add(
        &mut self,
        socket: Arc<TunnelSocket>,
        remote: Ipv4Addr,
        key: Option<u32>,
        port: PortId,
    ) -> Option<usize> {
        if let Some(index) = self
            .endpoints
            .iter()
            .position(|e| e.as_ref().is_some_and(|e| Arc::ptr_eq(&e.socket, &socket)))
        {
            if let Some(endpoint) = self.endpoints[index].as_mut() {
                endpoint.routes.insert((remote, key), port);
            }
            return None;
        }
        let mut routes = HashMap::new();
        routes.insert((remote, key), port);
        let endpoint = Endpoint { socket, routes };
        let index = match self.endpoints.iter().position(Option::is_none) {
            Some(free) => {
                self.endpoints[free] = Some(endpoint);
                free
            }
            None => {
                self.endpoints.push(Some(endpoint));
                self.endpoints.len() - 1
            }
        };
        Some(index)
    }

    /// Forgets `port`; returns the fd of an endpoint left without tunnels, to
    /// stop polling (the socket closes when the last handle goes).
    pub fn remove_port(&mut self, port: PortId) -> Option<std::os::fd::RawFd> {
        for slot in &mut self.endpoints {
            let Some(endpoint) = slot.as_mut() else {
                continue;
            };
            endpoint.routes.retain(|_, p| *p != port);
            if endpoint.routes.is_empty() {
                let fd = endpoint.socket.raw_fd();
                *slot = None;
                return Some(fd);
            }
        }
        None
    }

    /// Counts a merge of `segments` received segments (one: no merge).
    pub fn count_merge(&mut self, segments: u16) {
        if segments > 1 {
            self.merged.frames += 1;
            self.merged.segments += u64::from(segments);
        }
    }

    fn count(&mut self, reason: &'static str) {
        *self.drops.entry(reason).or_insert(0) += 1;
    }

    /// Reads one packet from endpoint `index` into `frame`. `Ok(None)` when
    /// nothing is waiting; `Ok(Some(None))` for a packet that was dropped;
    /// `Ok(Some(Some(port)))` when `frame` now holds the inner frame of
    /// tunnel port `port`.
    pub fn receive(
        &mut self,
        index: usize,
        frame: &mut Frame,
    ) -> io::Result<Option<Option<PortId>>> {
        let Some(endpoint) = self.endpoints.get(index).and_then(Option::as_ref) else {
            return Ok(None);
        };
        let socket = endpoint.socket.clone();
        let buf = &mut frame.raw_mut()[RECV_OFFSET..];
        let decapped = match &*socket {
            TunnelSocket::Gre(fd) => {
                let n = match sys::read_fd(fd.as_fd(), buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                    Err(e) => return Err(e),
                };
                decap_ipv4(&buf[..n]).map(|d| (d.src, d.gre))
            }
            TunnelSocket::Udp(udp) => {
                let (n, from) = match udp.recv_from(buf) {
                    Ok(r) => r,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                    Err(e) => return Err(e),
                };
                let std::net::SocketAddr::V4(from) = from else {
                    self.count("not-ipv4");
                    return Ok(Some(None));
                };
                decap_gre(&buf[..n]).map(|d| (*from.ip(), d))
            }
        };
        let (remote, gre) = match decapped {
            Ok(d) => d,
            Err(e) => {
                self.count(decap_reason(e));
                return Ok(Some(None));
            }
        };
        let port = self
            .endpoints
            .get(index)
            .and_then(Option::as_ref)
            .and_then(|e| e.routes.get(&(remote, gre.options.key)).copied());
        let Some(port) = port else {
            self.count("unknown-tunnel");
            return Ok(Some(None));
        };
        if !frame.set_range(RECV_OFFSET + gre.inner_offset, gre.inner_len) {
            self.count("truncated");
            return Ok(Some(None));
        }
        Ok(Some(Some(port)))
    }
}

fn decap_reason(e: DecapError) -> &'static str {
    e.as_str()
}
