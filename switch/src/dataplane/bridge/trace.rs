//! The bridge's part of `yardctl trace` after the decision: where a frame
//! the bridge decided on, or one the gateway sends into a network, would
//! go and whether it would fit — described, not done.
//!
//! Contract: `&self` only, so nothing is sent, counted or charged. The
//! checks are the ones delivery makes ([`Bridge::flood_targets`],
//! [`egress_fit`], the flood budget), so a trace and a real frame agree.

use super::{egress_fit, Attachment, Bridge, EgressFit, NetId};
use crate::dataplane::clock::Millis;
use crate::dataplane::frame::Frame;
use crate::dataplane::port::PortId;
use crate::dataplane::trace::{Stage, Trace, Tracer};
use crate::dataplane::verdict::{DropReason, Verdict};
use yard_ctl::MacAddr;
use yard_wire::ethernet;

impl Bridge {
    /// Describes delivering `frame` from `in_port` in network `net` as
    /// [`decide_with`](Self::decide_with) decided (`verdict`), right after it.
    pub fn trace_delivery(
        &self,
        in_port: PortId,
        net: NetId,
        verdict: Verdict,
        frame: &Frame,
        now: Millis,
        trace: &mut Trace,
    ) {
        match verdict {
            Verdict::Forward(out) => self.trace_egress(out, net, frame, trace),
            Verdict::Drop(reason) => trace.dropped(reason, self.port_name(in_port)),
            // The caller follows the frame into the gateway.
            Verdict::Gateway => {}
            Verdict::Flood => {
                let mut targets = Vec::new();
                let blocked =
                    self.flood_targets(in_port, net, frame, self.flood_scope, now, &mut targets);
                self.trace_flood(Some(in_port), net, frame, &targets, blocked, now, trace);
            }
        }
    }

    /// Describes the gateway sending `frame` into network `net`
    /// ([`inject`](Self::inject)): to the port its destination MAC is
    /// known behind, else to every port of the network.
    pub fn trace_inject(&self, net: NetId, frame: &Frame, now: Millis, trace: &mut Trace) {
        let Some(network) = self.network(net) else {
            return;
        };
        let Some(dst) = frame.data().get(..6) else {
            return;
        };
        let dst = MacAddr([dst[0], dst[1], dst[2], dst[3], dst[4], dst[5]]);
        let known = (!dst.is_multicast())
            .then(|| network.fdb.lookup(&dst, now))
            .flatten();
        match known {
            Some(out) => {
                trace.note(Stage::Fdb, || {
                    format!(
                        "{dst} is behind port {} of network {} (FDB hit)",
                        self.port_name(out),
                        network.name
                    )
                });
                self.trace_egress(out, net, frame, trace);
            }
            None => {
                trace.note(Stage::Fdb, || {
                    format!(
                        "{dst} is not in the FDB of network {}: flooded",
                        network.name
                    )
                });
                let targets = network.members.clone();
                self.trace_flood(None, net, frame, &targets, false, now, trace);
            }
        }
    }

    /// Describes a flood to `targets` (`from`: the in-port, charged for
    /// it; `None` for the gateway's frames, which are not limited).
    #[allow(clippy::too_many_arguments)]
    fn trace_flood(
        &self,
        from: Option<PortId>,
        net: NetId,
        frame: &Frame,
        targets: &[PortId],
        blocked: bool,
        now: Millis,
        trace: &mut Trace,
    ) {
        let names: Vec<&str> = targets.iter().map(|&p| self.port_name(p)).collect();
        trace.note(Stage::Flood, || match names.len() {
            0 => "no port to flood to".to_string(),
            n => format!("flooded to {n} port(s): {}", names.join(", ")),
        });
        let in_name = from.map_or("", |p| self.port_name(p));
        if blocked {
            trace.note(Stage::Isolation, || {
                format!(
                    "network {} is --no-icc: isolated ports {in_name} may not reach are left out",
                    self.net_name(net)
                )
            });
            if targets.is_empty() {
                trace.dropped(DropReason::IccDisabled, in_name);
                return;
            }
        }
        if let Some(in_port) = from {
            if !self.flood_would_pass(in_port, targets.len(), now) {
                trace.note(Stage::Flood, || {
                    format!("port {in_name} is over its flood limit: the whole flood is dropped")
                });
                trace.dropped(DropReason::FloodLimit, in_name);
                return;
            }
        }
        if targets.is_empty() {
            trace.goes_nowhere();
        }
        for &out in targets {
            self.trace_egress(out, net, frame, trace);
        }
    }

    /// Describes `frame` leaving by port `out` of network `net`: its MTU,
    /// a trunk's VLAN tag, a tunnel's encapsulation.
    fn trace_egress(&self, out: PortId, net: NetId, frame: &Frame, trace: &mut Trace) {
        let Some(slot) = self.port(out) else {
            return;
        };
        if slot.port.is_gone() {
            trace.note(Stage::Egress, || {
                format!("port {} is down (its device is gone): refused", slot.name)
            });
            trace.dropped(DropReason::PortDown, &slot.name);
            return;
        }
        let payload = frame.len().saturating_sub(ethernet::HEADER_LEN);
        match egress_fit(slot, frame) {
            EgressFit::Fits => {}
            EgressFit::TooBig => {
                trace.note(Stage::Mtu, || {
                    format!(
                        "{payload} bytes of payload exceed port {}'s MTU {}",
                        slot.name, slot.mtu
                    )
                });
                trace.dropped(DropReason::TooBig, &slot.name);
                return;
            }
            EgressFit::TooBigForTunnel(mtu) => {
                trace.note(Stage::Mtu, || {
                    format!(
                        "{payload} bytes with don't-fragment exceed tunnel {}'s overlay MTU \
                         {mtu}: the sender gets ICMP fragmentation-needed (MTU {mtu})",
                        slot.name
                    )
                });
                trace.dropped(DropReason::TooBig, &slot.name);
                return;
            }
        }
        if frame.offload.is_gso() && !(slot.port.accepts_gso() && slot.port.accepts_partial_csum())
        {
            trace.note(Stage::Egress, || {
                format!("a GSO frame: cut into segments for port {}", slot.name)
            });
        }
        if matches!(slot.attachment, Attachment::Trunk(_)) {
            let vlan = self.network(net).and_then(|n| n.vlan).unwrap_or(0);
            trace.note(Stage::Vlan, || {
                format!("tagged with VLAN {vlan} on trunk {}", slot.name)
            });
        }
        if let Some(words) = slot.port.describe_send() {
            trace.note(Stage::Tunnel, || format!("port {}: {words}", slot.name));
        }
        trace.note(Stage::Egress, || format!("leaves by port {}", slot.name));
        trace.leaves(slot.name.clone());
    }
}
