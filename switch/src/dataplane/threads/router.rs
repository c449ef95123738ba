//! The way through the gateway on the home thread: a frame for the gateway
//! goes in ([`Router::route`]), and what the gateway routes goes out to a
//! network or the uplink, made to fit the MTU of that way out
//! ([`Router::send`]).
//!
//! Contract: a [`Router`] borrows the gateway, the bridge, the uplink and a
//! scratch frame from the datapath field by field, apart from its frame
//! pool, so a pool frame can be routed in place. Nothing here allocates per
//! frame: IP fragments are built one at a time in the scratch frame.

use std::io;

use yard_nat::gateway::{Action, Gateway, Side};
use yard_wire::ethernet;

use super::Uplink;
use crate::dataplane::bridge::{Bridge, NetId};
use crate::dataplane::clock::Millis;
use crate::dataplane::frame::Frame;
use crate::dataplane::offload;
use crate::dataplane::verdict::DropReason;
use crate::relay::HostRelay;

/// The gateway and the ways out of it, borrowed from a datapath thread.
pub(super) struct Router<'a> {
    pub(super) gateway: &'a mut Gateway,
    pub(super) bridge: &'a mut Bridge,
    pub(super) uplink: &'a mut Option<Uplink>,
    /// The host uplink's relay, when yardd runs one.
    pub(super) relay: &'a mut Option<HostRelay>,
    /// Builds the IP fragments of a packet too big for its way out.
    pub(super) pieces: &'a mut Frame,
}

impl Router<'_> {
    /// Hands a frame that arrived on `side` to the gateway and sends what
    /// it decides.
    pub(super) fn route(&mut self, side: Side, frame: &mut Frame, now: Millis) {
        let offload = frame.offload;
        match self.gateway.handle(side, frame.data_mut(), offload, now.0) {
            Action::Send { side, len } => {
                frame.truncate(len);
                self.send(side, frame, now);
            }
            Action::Consumed | Action::Drop(_) => {}
        }
    }

    /// The MTU of the way out to `side`: the network's, or the uplink
    /// interface's.
    pub(super) fn mtu_of(&self, side: Side) -> Option<u32> {
        match side {
            Side::Net(net) => self.bridge.network(NetId(net)).map(|n| n.mtu),
            Side::Uplink => self.uplink.as_ref().map(|u| u.mtu),
            Side::Host => None,
        }
    }

    /// Sends a frame the gateway routed out of `side`, made to fit the MTU
    /// of that way out as a router would (RFC 1191, RFC 1812 §4.2.2.7,
    /// RFC 4787 REQ-13 and REQ-13a): a TCP GSO frame gets a smaller segment
    /// size; a plain IPv4 packet over the MTU is refused with ICMP
    /// fragmentation-needed to its sender when don't-fragment is set, and
    /// is otherwise cut into IP fragments.
    pub(super) fn send(&mut self, side: Side, frame: &mut Frame, now: Millis) {
        if side == Side::Host {
            // An IPv4 packet for the relay, whatever its size: the host
            // socket sends the payload.
            let ip = frame.data().get(ethernet::HEADER_LEN..).unwrap_or_default();
            match self.relay.as_mut() {
                Some(relay) => relay.from_container(ip),
                None => self.gateway.count_host_relay_busy(),
            }
            return;
        }
        let Some(mtu) = self.mtu_of(side) else {
            return send_to(self.bridge, self.uplink, side, frame, now);
        };
        match way_out_fit(frame, mtu) {
            WayOutFit::Fits => return send_to(self.bridge, self.uplink, side, frame, now),
            WayOutFit::Gso => {
                offload::fit_gso(frame, mtu);
                return send_to(self.bridge, self.uplink, side, frame, now);
            }
            WayOutFit::Refuse => {
                self.gateway
                    .refuse_too_big(&frame.data()[ethernet::HEADER_LEN..], mtu, now.0);
                if let (Side::Uplink, Some(uplink)) = (side, self.uplink.as_mut()) {
                    uplink.counters.drop_frame(DropReason::TooBig);
                }
                return;
            }
            WayOutFit::Fragment => {}
        }
        // The transport checksum covers the whole datagram: finish it
        // before the datagram is cut.
        let Router {
            gateway,
            bridge,
            uplink,
            pieces,
            ..
        } = self;
        let cut = offload::complete_checksum(frame).is_ok()
            && offload::fragment_ipv4(frame, mtu, pieces, |piece| {
                send_to(bridge, uplink, side, piece, now)
            })
            .is_ok();
        if cut {
            gateway.count_fragmented();
        } else {
            // Malformed: the port refuses it as too big, and counts it.
            send_to(bridge, uplink, side, frame, now);
        }
    }
}

/// How a routed frame is made to fit the MTU of its way out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WayOutFit {
    /// It fits, or it is not IPv4 (the port refuses it if too big).
    Fits,
    /// A GSO frame: its segment size is lowered to fit.
    Gso,
    /// Too big with don't-fragment: refused, its sender gets ICMP
    /// fragmentation-needed.
    Refuse,
    /// Too big without don't-fragment: cut into IP fragments.
    Fragment,
}

/// How `frame` is made to fit `mtu` on its way out of the gateway.
pub(super) fn way_out_fit(frame: &Frame, mtu: u32) -> WayOutFit {
    if frame.offload.is_gso() {
        return WayOutFit::Gso;
    }
    let too_big = frame.len() > ethernet::HEADER_LEN + mtu as usize;
    match (too_big, yard_wire::fragment::dont_fragment(frame.data())) {
        (true, Some(true)) => WayOutFit::Refuse,
        (true, Some(false)) => WayOutFit::Fragment,
        _ => WayOutFit::Fits,
    }
}

/// Sends a frame from the gateway to a network or the uplink.
fn send_to(
    bridge: &mut Bridge,
    uplink: &mut Option<Uplink>,
    side: Side,
    frame: &mut Frame,
    now: Millis,
) {
    match side {
        Side::Net(net) => bridge.inject(NetId(net), frame, now),
        // Sent by `Router::send` itself.
        Side::Host => {}
        Side::Uplink => {
            let Some(uplink) = uplink.as_mut() else {
                return;
            };
            match uplink.port.send(frame) {
                Ok(()) => {
                    uplink.counters.tx_packets += 1;
                    uplink.counters.tx_bytes += frame.len() as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    uplink.counters.drop_frame(DropReason::TxQueueFull)
                }
                Err(_) => uplink.counters.drop_frame(DropReason::TxError),
            }
        }
    }
}
