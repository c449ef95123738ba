//! The `trace` request of the control server: the frame to trace (a
//! description gets the MACs its container would use: the in-port's as
//! source; as destination the port holding the destination address on the
//! in-port's network, else the network's gateway, broadcast for ARP), then
//! the home datapath thread's dry run ([`crate::dataplane::trace`]).
//! A frame from the uplink (`--in` naming it) is addressed to the uplink's
//! MAC. Changes nothing, so it publishes no event and saves no state.

use yard_ctl::api::{Payload, TracePacket, TraceProto, TraceRequest};
use yard_ctl::MacAddr;

use super::{Control, Outcome};
use crate::control::nat_api;
use crate::control::trace::{self, TraceFrameError};
use crate::control::ControlError;

impl Control {
    pub(super) fn trace(&mut self, request: TraceRequest) -> Outcome {
        let uplink_mac = self.uplink_mac(&request.in_port);
        if uplink_mac.is_none() {
            self.known_port(&request.in_port)?;
        }
        let frame = match &request.packet {
            TracePacket::Frame { hex } => trace::decode_hex(hex)?,
            TracePacket::Spec(spec) if uplink_mac.is_some() => {
                // From the outside: to the uplink's own MAC, from a MAC
                // the gateway does not look at (it learns neighbours from
                // ARP only).
                let src_mac = spec
                    .src_mac
                    .unwrap_or(MacAddr::local_from_seed(b"trace/outside"));
                let dst_mac = spec.dst_mac.or(uplink_mac).unwrap_or(MacAddr::BROADCAST);
                trace::build_frame(spec, src_mac, dst_mac)?
            }
            TracePacket::Spec(spec) => {
                let src_mac = match spec.src_mac {
                    Some(mac) => mac,
                    None => self.live_mac(&request.in_port).ok_or_else(|| {
                        TraceFrameError::NoMac(format!(
                            "port {} has no MAC of its own (a tunnel, trunk or port that is \
                             down): give --src-mac",
                            request.in_port
                        ))
                    })?,
                };
                let dst_mac = match (spec.dst_mac, spec.proto) {
                    (Some(mac), _) => mac,
                    (None, TraceProto::Arp) => MacAddr::BROADCAST,
                    (None, _) => self.mac_toward(&request.in_port, spec.dst)?,
                };
                trace::build_frame(spec, src_mac, dst_mac)?
            }
        };
        let report = self.datapath.trace(&request.in_port, frame)?;
        Ok(Payload::Trace(trace::report(report)))
    }

    /// The MAC of the uplink, when `name` is the uplink's and it is up
    /// with an interface of its own (`--iface`, `--tap`).
    fn uplink_mac(&self, name: &str) -> Option<MacAddr> {
        let named = self.config.uplink.as_ref().is_some_and(|u| u.name == name);
        named
            .then(|| self.uplink.as_ref().and_then(|u| u.mac))
            .flatten()
    }

    /// The MAC in force of port `name`, if it is up and has one.
    fn live_mac(&self, name: &str) -> Option<MacAddr> {
        self.live.get(name).and_then(|p| p.mac)
    }

    /// The MAC a container on port `in_port` sends a packet for `dst` to:
    /// the port holding `dst` on its network, else the network's gateway.
    fn mac_toward(&self, in_port: &str, dst: std::net::Ipv4Addr) -> Result<MacAddr, ControlError> {
        let net = self
            .config
            .port(in_port)
            .and_then(|p| p.nets().first().map(|n| n.to_string()))
            .unwrap_or_default();
        let holder = self
            .config
            .ports
            .iter()
            .find(|p| p.nets().contains(&net.as_str()) && trace::holds(p.kind.address(), dst));
        if let Some(mac) = holder.and_then(|p| self.live_mac(&p.name)) {
            return Ok(mac);
        }
        match self.config.network(&net) {
            Some(spec) if spec.subnet.is_some() => Ok(nat_api::gateway_mac(&net)),
            _ => Err(TraceFrameError::NoMac(format!(
                "no port of network {net} has {dst} and the network has no gateway: give --dst-mac"
            ))
            .into()),
        }
    }
}
