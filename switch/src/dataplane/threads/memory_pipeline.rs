//! The whole datapath of one thread, driven by hand on in-memory ports: the
//! entry point of the pipeline fuzz target and of tests that want the real
//! bridge → router → gateway path without sockets, a poll loop or threads
//! (compiled with the `fuzzing` feature).
//!
//! Contract: a [`MemoryPipeline`] owns one home [`Datapath`] (bridge,
//! gateway, uplink) and never runs its poll loop. Configuration goes through
//! the same thread-side command methods the control plane's
//! [`DatapathHandle`](super::DatapathHandle) runs; frames go in with
//! [`receive`](MemoryPipeline::receive) or
//! [`receive_uplink`](MemoryPipeline::receive_uplink), which serve the port
//! exactly as a readiness event would (one batch through the bridge, the
//! gateway's frames through the router, the outbox flushed); what left a
//! port comes back from [`take_sent`](MemoryPipeline::take_sent). Time is
//! the datapath's own clock, which starts at 0 when the pipeline is made
//! and jumps on with [`advance`](MemoryPipeline::advance), so a short run
//! sees the same milliseconds every time; SNAT ports come from a fixed
//! seed.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use yard_ctl::api::NetworkSpec;
use yard_nat::conntrack::{Conntrack, RuleId};
use yard_nat::gateway::{NetConfig, PublishRule, UplinkConfig};
use yard_nat::mapping::Mapping;
use yard_wire::offload::Offload;

use super::{Datapath, DatapathError, Membership};
use crate::dataplane::port::memory::{MemoryPort, MemoryQueues};
use crate::dataplane::port::PortReport;

/// One datapath thread's pipeline on in-memory ports, served by the caller.
pub struct MemoryPipeline {
    datapath: Datapath,
    /// Keeps the command channel open; the pipeline sends no commands.
    _handle: super::DatapathHandle,
    /// Each port's name and queues, in the order they were added.
    ports: Vec<(String, Arc<Mutex<MemoryQueues>>)>,
    uplink: Option<Arc<Mutex<MemoryQueues>>>,
}

impl MemoryPipeline {
    /// The uplink's name in [`take_sent`](Self::take_sent).
    pub const UPLINK: &'static str = "uplink";

    /// A pipeline with no networks or ports; `port_mac_limit` as
    /// `yardd --port-mac-limit`. Its gateway allocates SNAT ports from a
    /// fixed seed, unlike yardd's.
    ///
    /// # Errors
    /// When the (unused) poll instance cannot be created.
    pub fn new(port_mac_limit: u32) -> io::Result<MemoryPipeline> {
        let (mut datapaths, handle) = Datapath::new(port_mac_limit, 1)?;
        let mut datapath = datapaths.remove(0);
        // SNAT ports from a fixed seed, so a run repeats exactly.
        let config = *datapath.gateway.conntrack().config();
        *datapath.gateway.conntrack_mut() = Conntrack::with_mapping(config, Mapping::with_seed(1));
        Ok(MemoryPipeline {
            datapath,
            _handle: handle,
            ports: Vec::new(),
            uplink: None,
        })
    }

    /// Adds a network as `net add` does; `gateway` is its side of the
    /// gateway (see `control::nat_api::net_config`).
    ///
    /// # Errors
    /// The bridge's refusal (a duplicate name or VLAN, say).
    pub fn add_network(
        &mut self,
        spec: &NetworkSpec,
        gateway: Option<NetConfig>,
    ) -> Result<(), DatapathError> {
        self.datapath.add_network(spec, gateway)
    }

    /// Adds an in-memory port `name`, whose sent frames collect until
    /// [`MemoryPipeline::take_sent`].
    ///
    /// # Errors
    /// The bridge's refusal (an unknown network, a duplicate name).
    pub fn add_port(
        &mut self,
        name: &str,
        membership: Membership,
        mtu: u32,
    ) -> Result<(), DatapathError> {
        let (port, queues) = MemoryPort::new();
        self.datapath.add_port(
            name.to_string(),
            Box::new(port),
            membership,
            mtu,
            true,
            None,
            None,
        )?;
        self.ports.push((name.to_string(), queues));
        Ok(())
    }

    /// Sets an in-memory uplink, named [`UPLINK`](MemoryPipeline::UPLINK)
    /// in [`take_sent`](MemoryPipeline::take_sent), with the gateway side
    /// `config`.
    ///
    /// # Errors
    /// None in practice (a memory port has no fd to poll); the signature is
    /// the command's.
    pub fn set_uplink(&mut self, config: UplinkConfig, mtu: u32) -> Result<(), DatapathError> {
        let (port, queues) = MemoryPort::new();
        self.datapath
            .set_uplink(Self::UPLINK.to_string(), Box::new(port), config, mtu)?;
        self.uplink = Some(queues);
        Ok(())
    }

    /// Allows routing between networks `a` and `b` (`net connect`).
    ///
    /// # Errors
    /// An unknown network.
    pub fn connect(&mut self, a: &str, b: &str) -> Result<(), DatapathError> {
        self.datapath.connect(a, b)
    }

    /// Publishes a port range (`publish add`).
    ///
    /// # Errors
    /// The gateway's refusal (a duplicate id or an overlapping range).
    pub fn add_publish(&mut self, rule: PublishRule) -> Result<(), DatapathError> {
        self.datapath.add_publish(rule)
    }

    /// Removes a published port range; returns the connections it closed.
    ///
    /// # Errors
    /// The command's.
    pub fn remove_publish(&mut self, id: RuleId) -> Result<usize, DatapathError> {
        self.datapath.remove_publish(id)
    }

    /// Queues `frame` (with offload state `offload`) on port `name` and
    /// serves the port once, as when its fd becomes readable: the batch goes
    /// through the bridge, frames for the gateway through the router, and
    /// the gateway's outbox is flushed. An unknown port does nothing.
    pub fn receive(&mut self, name: &str, offload: Offload, frame: &[u8]) {
        let Some((_, queues)) = self.ports.iter().find(|(n, _)| n == name) else {
            return;
        };
        lock(queues).inbound.push_back((offload, frame.to_vec()));
        if let Ok(id) = self.datapath.bridge.port_id(name) {
            self.datapath.serve_port(id);
        }
    }

    /// Queues `frame` on the uplink and serves it once; nothing happens
    /// without an uplink.
    pub fn receive_uplink(&mut self, offload: Offload, frame: &[u8]) {
        let Some(queues) = self.uplink.clone() else {
            return;
        };
        lock(&queues).inbound.push_back((offload, frame.to_vec()));
        self.datapath.serve_uplink();
    }

    /// Moves the datapath's clock on by `ms` and does the periodic work of
    /// the poll loop: FDB aging, the gateway's timers (conntrack expiry,
    /// ARP retries), the outbox.
    pub fn advance(&mut self, ms: u64) {
        let dp = &mut self.datapath;
        if let Some(earlier) = dp.epoch.checked_sub(Duration::from_millis(ms)) {
            dp.epoch = earlier;
        }
        let now = dp.now();
        dp.bridge.expire(now);
        dp.gateway.tick(now.0);
        dp.flush_outbox(now);
    }

    /// Every port's counters (the uplink's last, when there is one), as
    /// `port stats` sees them.
    pub fn port_stats(&mut self) -> Vec<PortReport> {
        let mut reports = self.datapath.bridge.port_reports(None).unwrap_or_default();
        if let Ok(Some(uplink)) = self.datapath.uplink_stats() {
            reports.push(uplink);
        }
        reports
    }

    /// The frames sent out of port `name` (or [`UPLINK`](Self::UPLINK))
    /// since the last call, oldest first; none for an unknown name.
    pub fn take_sent(&mut self, name: &str) -> Vec<(Offload, Vec<u8>)> {
        let queues = if name == Self::UPLINK {
            self.uplink.as_ref()
        } else {
            self.ports.iter().find(|(n, _)| n == name).map(|(_, q)| q)
        };
        queues.map_or_else(Vec::new, |q| std::mem::take(&mut lock(q).outbound))
    }
}

fn lock(queues: &Mutex<MemoryQueues>) -> std::sync::MutexGuard<'_, MemoryQueues> {
    queues
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use yard_wire::arp::{ArpFrame, ArpOp, ArpPacket};
    use yard_wire::ethernet::EthernetFrame;

    use super::*;
    use crate::control::nat_api::net_config;

    /// The gateway answers an ARP request through the real bridge and
    /// router, and the bridge floods it to the other port too.
    #[test]
    fn an_arp_request_is_flooded_and_answered() {
        let mut pipeline = MemoryPipeline::new(4096).unwrap();
        let mut spec = NetworkSpec::new("n");
        spec.subnet = Some("10.9.0.0/24".parse().unwrap());
        pipeline.add_network(&spec, net_config(&spec)).unwrap();
        for port in ["a", "b"] {
            pipeline
                .add_port(port, Membership::Access("n".into()), 1500)
                .unwrap();
        }
        let a_mac = [0x02, 0, 0, 0, 0, 0x0a];
        let a_ip = Ipv4Addr::new(10, 9, 0, 2);
        let mut request = vec![0u8; 60];
        ArpFrame::request(a_mac, a_ip, Ipv4Addr::new(10, 9, 0, 1))
            .emit(&mut request)
            .unwrap();
        pipeline.receive("a", Offload::NONE, &request);

        assert_eq!(pipeline.take_sent("b").len(), 1, "flooded to b");
        let to_a = pipeline.take_sent("a");
        assert_eq!(to_a.len(), 1, "answered on a");
        let eth = EthernetFrame::new_checked(&to_a[0].1[..]).unwrap();
        let reply = ArpPacket::new_checked(eth.payload()).unwrap();
        assert_eq!(reply.op(), ArpOp::Reply);
        assert_eq!(reply.target_hw(), a_mac);
        assert_eq!(reply.target_proto(), a_ip);
        assert!(pipeline
            .port_stats()
            .iter()
            .all(|r| r.counters.drops.iter().all(|&d| d == 0)));
    }
}
