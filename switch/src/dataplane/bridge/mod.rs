//! The L2 bridge: networks, the ports attached to them, and the per-frame
//! pipeline that learns, looks up and delivers.
//!
//! ```text
//!  port rx ─► ingress ─────────► learn src, ─┬─► Forward(port) ─► egress ─► port tx
//!             (VLAN → network,   look up dst │   Flood           (VLAN tag,
//!              source checks)                └─► Drop(reason)      MTU check)
//! ```
//!
//! Fast path and slow path: every frame takes the same short path — one FDB
//! lookup to learn the source, one to find the destination, a send per egress
//! port. Nothing on it allocates, locks or logs; the flood list is a reused
//! buffer. A multicast flood reaches only the ports [`multicast`] snooping
//! says listen to its group. On a network with firewall rules, an IPv4
//! frame forwarded or flooded is first admitted by [`rules`] (a flow table
//! lookup; a new flow is judged). Only an attached capture copies frames.
//! Drops are counted on the port they are charged to, by [`DropReason`].
//!
//! The bridge owns its [`Port`]s, so the same code runs with real devices in
//! the daemon and with [`crate::dataplane::port::memory::MemoryPort`]s in tests.
//!
//! With several datapath threads each has its own bridge: the same networks
//! and ports (every thread can send out of every port), its own FDBs. What
//! one thread learns it lists as [`Announcement`]s for the others
//! ([`Bridge::share_learning`]); the flows its rules allow it sends them at
//! once ([`Bridge::share_flows`]).

pub mod links;
pub mod multicast;
pub mod rules;
pub mod security;
pub mod storm;
#[cfg(test)]
mod tests;
mod trace;

use std::sync::Arc;

use yard_ctl::api::{NetworkSpec, MAX_MTU};
use yard_ctl::MacAddr;
use yard_nat::gateway::IcmpErrors;
use yard_wire::ethernet::{self, ethertype};
use yard_wire::icmp::IcmpErrorKind;

use crate::dataplane::capture::{self, CaptureTap};
use crate::dataplane::clock::Millis;
use crate::dataplane::fdb::Fdb;
use crate::dataplane::frame::Frame;
use crate::dataplane::offload;
use crate::dataplane::port::closed::ClosedPort;
use crate::dataplane::port::{Port, PortCounters, PortId, PortReport};
use crate::dataplane::trace::{Forwarding, Stage, Tracer};
use crate::dataplane::verdict::{DropReason, Verdict};
use links::{Link, Links, NamedLink};
use multicast::{FloodScope, MembershipNews, PlannedQuery, Snooping};
use rules::{Admission, FlowLink, FlowNews, NetRules};
use security::{Ingress, NetGuard, PortSecurity};
use storm::{FloodBudget, FloodLimit};

/// Index of a network in the bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NetId(pub u16);

/// One L2 broadcast domain.
pub struct Network {
    /// The network's name.
    pub name: String,
    /// False isolates access ports from each other (`--no-icc`).
    pub icc: bool,
    /// VLAN id on trunk ports.
    pub vlan: Option<u16>,
    /// The MAC table.
    pub fdb: Fdb,
    /// The gateway's MAC in this network, when it has a gateway: frames to
    /// it, and broadcast ARP, go to the L3 gateway too.
    pub gateway_mac: Option<MacAddr>,
    /// The network's MTU (its ports may be created with other MTUs).
    pub mtu: u32,
    /// Port security's view of the network: the gateway's address and the
    /// MACs its secured ports own.
    pub guard: NetGuard,
    /// Which ports listen to which multicast group (IGMP/MLD snooping).
    pub multicast: Snooping,
    /// Pairs of isolated ports that may reach each other (`link add`).
    pub links: Links,
    /// Firewall rules and the switched flows they allowed (`rule add`).
    pub rules: NetRules,
    members: Vec<PortId>,
}

/// How a port joins networks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attachment {
    /// Untagged frames of one network.
    Access(NetId),
    /// Tagged frames of several networks: `(vlan id, network)`.
    Trunk(Vec<(u16, NetId)>),
}

/// A port in the bridge's table.
pub struct PortSlot {
    /// The port's name.
    pub name: String,
    /// The device.
    pub port: Box<dyn Port>,
    /// Its networks.
    pub attachment: Attachment,
    /// Largest payload (frame minus Ethernet header) it takes.
    pub mtu: u32,
    /// Traffic and drop counters.
    pub counters: PortCounters,
    /// Attached captures.
    pub captures: Vec<CaptureTap>,
    /// For a tunnel port, its overlay MTU: larger DF packets get ICMP
    /// fragmentation-needed back, larger non-DF ones are carried (the host
    /// stack fragments the outer packet). Tunnel ports also keep split
    /// horizon: what arrives on one tunnel is never flooded to another.
    pub tunnel_mtu: Option<u32>,
    /// Which port of this name this is: every bridge of a daemon numbers
    /// ports in the same order, so an [`Announcement`] about a port that has
    /// since been removed cannot land on a new port with its id.
    pub generation: u64,
    /// What the port may send from, when it has port security.
    pub security: Option<PortSecurity>,
    /// What is left of the flooded copies its frames may cost ([`storm`]).
    pub flood_budget: FloodBudget,
    /// A frame was sent through it since the last
    /// [`Bridge::flush_ports`], which hands the device what the port queued
    /// ([`Port::flush`]).
    pub awaits_flush: bool,
}

/// What one datapath thread learned, for the others: `mac` lives behind
/// `port` in network `net`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Announcement {
    /// The network.
    pub net: NetId,
    /// The address.
    pub mac: MacAddr,
    /// The port.
    pub port: PortId,
    /// The port's [`PortSlot::generation`].
    pub generation: u64,
}

/// One FDB entry as the bridge lists it, with its network and port named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdbRecord {
    /// The network's name.
    pub net: String,
    /// The address.
    pub mac: MacAddr,
    /// The name of the port it lives behind.
    pub port: String,
    /// Added by `fdb add`, not learned: never ages out or moves.
    pub is_static: bool,
    /// Seconds since a learned entry was last seen; `None` for a static one.
    pub age_secs: Option<u64>,
}

/// Why a bridge operation was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BridgeError {
    /// No network of that name.
    #[error("network {0} not found")]
    NoNetwork(String),
    /// No port of that name.
    #[error("port {0} not found")]
    NoPort(String),
    /// The port is not on that network.
    #[error("port {port} is not attached to network {net}")]
    NotMember {
        /// Port name.
        port: String,
        /// Network name.
        net: String,
    },
    /// The network has ports.
    #[error("network {0} still has ports")]
    InUse(String),
    /// A trunk member without a VLAN id.
    #[error("network {0} has no VLAN id, so a trunk cannot carry it")]
    NoVlan(String),
    /// Too many networks or ports.
    #[error("too many {0}")]
    Full(&'static str),
}

/// The networks, their ports and the forwarding pipeline.
pub struct Bridge {
    networks: Vec<Option<Network>>,
    ports: Vec<Option<PortSlot>>,
    port_mac_limit: u32,
    flood_scratch: Vec<PortId>,
    /// Where the bridge builds the ICMP fragmentation-needed it answers a
    /// packet too big for a tunnel with: allocated once, with the bridge;
    /// out of its slot while in use.
    reply_scratch: Option<Frame>,
    /// The rate limit of ICMP errors (shared with the gateway).
    icmp_errors: Arc<IcmpErrors>,
    /// Where GSO frames are cut into segments for ports that take no
    /// offloads: allocated once, with the bridge; out of its slot while in
    /// use.
    offload_scratch: Option<Frame>,
    /// Ports added so far: the next port's generation.
    ports_added: u64,
    /// Whether learning is listed in `announcements` for other threads.
    announcing: bool,
    announcements: Vec<Announcement>,
    /// Whether `fdb show` answers include static entries (one thread's do).
    reports_static: bool,
    /// What this thread's multicast snooping heard, for the other threads.
    multicast_news: Vec<MembershipNews>,
    /// Whether this bridge sends the multicast queries of networks with a
    /// gateway (with several threads, only one does).
    sends_queries: bool,
    /// Where [`decide`](Self::decide) leaves a multicast frame's flood
    /// scope for [`deliver`](Self::deliver).
    flood_scope: FloodScope,
    /// The multicast querier's work list, reused every tick.
    planned_queries: Vec<PlannedQuery>,
    /// How many flooded copies a port's frames may cost; `None`: no limit.
    flood_limit: Option<FloodLimit>,
    /// The other threads' bridges, for the flows rules allowed
    /// ([`rules`]); `None` with one datapath thread.
    flow_link: Option<FlowLink>,
    /// Ports sent through since the last [`flush_ports`](Self::flush_ports)
    /// (each once: [`PortSlot::awaits_flush`]).
    queued_ports: Vec<PortId>,
}

impl Bridge {
    /// An empty bridge; each port may learn at most `port_mac_limit` addresses
    /// per network.
    pub fn new(port_mac_limit: u32) -> Self {
        Bridge {
            networks: Vec::new(),
            ports: Vec::new(),
            port_mac_limit,
            flood_scratch: Vec::new(),
            reply_scratch: Some(Frame::new()),
            icmp_errors: Arc::new(IcmpErrors::new()),
            offload_scratch: Some(Frame::new()),
            ports_added: 0,
            announcing: false,
            announcements: Vec::with_capacity(256),
            reports_static: true,
            multicast_news: Vec::new(),
            queued_ports: Vec::with_capacity(64),
            sends_queries: true,
            flood_scope: FloodScope::All,
            planned_queries: Vec::new(),
            flood_limit: None,
            flow_link: None,
        }
    }

    /// Makes this bridge one of several datapath threads' bridges: what it
    /// learns is listed for [`drain_announcements`](Self::drain_announcements),
    /// and its `fdb show` answer has only the entries it learned itself, plus
    /// the static ones when `reports_static` (one thread reports them).
    /// Likewise what its multicast snooping hears (reports, leaves,
    /// queries) is listed for
    /// [`drain_multicast_news`](Self::drain_multicast_news); the bridge that
    /// reports static entries also sends the multicast queries.
    pub fn share_learning(&mut self, reports_static: bool) {
        self.announcing = true;
        self.reports_static = reports_static;
        self.sends_queries = reports_static;
    }

    /// Makes this bridge announce the flows its networks' rules allow to
    /// the other threads' bridges, and hear theirs, over `link`.
    pub fn share_flows(&mut self, link: FlowLink) {
        self.flow_link = Some(link);
    }

    /// Records the flows other threads' rules allowed.
    pub fn hear_flows(&mut self, now: Millis) {
        let Bridge {
            flow_link,
            networks,
            ..
        } = self;
        for news in rules::heard(flow_link.as_ref()) {
            if let Some(Some(network)) = networks.get_mut(news.net.0 as usize) {
                network.rules.hear(news.key, now);
            }
        }
    }

    /// Replaces network `net`'s firewall rules (hits follow rule ids).
    pub fn set_rules(
        &mut self,
        net: &str,
        rules: Vec<yard_nat::rules::Rule>,
    ) -> Result<(), BridgeError> {
        let id = self.net_id(net)?;
        if let Some(network) = self.network_mut(id) {
            network.rules.set(rules);
        }
        Ok(())
    }

    /// Each of network `net`'s rules with the switched connections it
    /// decided on this bridge.
    pub fn rule_hits(&self, net: &str) -> Result<Vec<(yard_nat::rules::RuleId, u64)>, BridgeError> {
        let id = self.net_id(net)?;
        Ok(self
            .network(id)
            .map(|n| n.rules.hits().collect())
            .unwrap_or_default())
    }

    /// Takes what was learned since the last call.
    pub fn drain_announcements(&mut self) -> std::vec::Drain<'_, Announcement> {
        self.announcements.drain(..)
    }

    /// Records what another thread learned, unless its port has gone (or is
    /// not in the network) since.
    pub fn learn_from_peer(&mut self, news: Announcement, now: Millis) {
        let current = self.port(news.port).is_some_and(|p| {
            p.generation == news.generation && attached_nets(&p.attachment).any(|n| n == news.net)
        });
        if let (true, Some(network)) = (current, self.network_mut(news.net)) {
            network.fdb.learn_from_peer(news.mac, news.port, now);
        }
    }

    // ---- configuration (slow path) -------------------------------------

    /// Adds a network.
    pub fn add_network(&mut self, spec: &NetworkSpec) -> Result<NetId, BridgeError> {
        let network = Network {
            name: spec.name.clone(),
            icc: spec.icc,
            vlan: spec.vlan,
            fdb: Fdb::new(spec.aging_secs, self.port_mac_limit),
            gateway_mac: None,
            mtu: spec.mtu,
            guard: NetGuard::default(),
            multicast: Snooping::new(self.announcing),
            links: Links::default(),
            rules: NetRules::default(),
            members: Vec::new(),
        };
        let index = match self.networks.iter().position(Option::is_none) {
            Some(free) => free,
            None => {
                self.networks.push(None);
                self.networks.len() - 1
            }
        };
        let id = u16::try_from(index).map_err(|_| BridgeError::Full("networks"))?;
        self.networks[index] = Some(network);
        Ok(NetId(id))
    }

    /// Removes a network that has no ports.
    pub fn remove_network(&mut self, name: &str) -> Result<(), BridgeError> {
        let id = self.net_id(name)?;
        let slot = &mut self.networks[usize::from(id.0)];
        if slot.as_ref().is_some_and(|n| !n.members.is_empty()) {
            return Err(BridgeError::InUse(name.to_string()));
        }
        *slot = None;
        Ok(())
    }

    /// Sets (or clears) the gateway MAC of a network.
    pub fn set_gateway_mac(&mut self, id: NetId, mac: Option<MacAddr>) {
        if let Some(network) = self.network_mut(id) {
            network.gateway_mac = mac;
        }
    }

    /// Sets (or clears) the gateway address of a network, which no port
    /// may then claim (port security's `gateway-claim`).
    pub fn set_gateway_ip(&mut self, id: NetId, ip: Option<std::net::Ipv4Addr>) {
        if let Some(network) = self.network_mut(id) {
            network.guard.gateway_ip = ip;
        }
    }

    /// The id of the network called `name`.
    pub fn net_id(&self, name: &str) -> Result<NetId, BridgeError> {
        index_named(&self.networks, name, |n| &n.name)
            .map(|i| NetId(i as u16))
            .ok_or_else(|| BridgeError::NoNetwork(name.to_string()))
    }

    /// The network with this id.
    pub fn network(&self, id: NetId) -> Option<&Network> {
        self.networks
            .get(usize::from(id.0))
            .and_then(Option::as_ref)
    }

    fn network_mut(&mut self, id: NetId) -> Option<&mut Network> {
        self.networks
            .get_mut(usize::from(id.0))
            .and_then(Option::as_mut)
    }

    /// Networks in table order.
    pub fn networks(&self) -> impl Iterator<Item = &Network> {
        self.networks.iter().flatten()
    }

    /// Live FDB entries of `network` this bridge reports (see
    /// [`share_learning`](Self::share_learning)).
    pub fn reported_fdb_len(&self, network: &Network, now: Millis) -> usize {
        network.fdb.own_entries(now, self.reports_static).count()
    }

    /// Builds an access attachment to network `net`.
    pub fn access(&self, net: &str) -> Result<Attachment, BridgeError> {
        Ok(Attachment::Access(self.net_id(net)?))
    }

    /// Builds a trunk attachment carrying `nets`, each by its VLAN id.
    pub fn trunk<S: AsRef<str>>(&self, nets: &[S]) -> Result<Attachment, BridgeError> {
        let mut members = Vec::with_capacity(nets.len());
        for name in nets {
            let id = self.net_id(name.as_ref())?;
            let vlan = self
                .network(id)
                .and_then(|n| n.vlan)
                .ok_or_else(|| BridgeError::NoVlan(name.as_ref().to_string()))?;
            members.push((vlan, id));
        }
        Ok(Attachment::Trunk(members))
    }

    /// Adds a port; from now on its frames are forwarded.
    pub fn add_port(
        &mut self,
        name: &str,
        port: Box<dyn Port>,
        attachment: Attachment,
        mtu: u32,
    ) -> Result<PortId, BridgeError> {
        let index = match self.ports.iter().position(Option::is_none) {
            Some(free) => free,
            None => {
                self.ports.push(None);
                self.ports.len() - 1
            }
        };
        let id = PortId(u32::try_from(index).map_err(|_| BridgeError::Full("ports"))?);
        for net in attached_nets(&attachment) {
            match self.network_mut(net) {
                Some(network) => {
                    network.members.push(id);
                    network.multicast.port_added(id);
                }
                None => return Err(BridgeError::NoNetwork(format!("#{}", net.0))),
            }
        }
        self.ports[index] = Some(PortSlot {
            name: name.to_string(),
            port,
            attachment,
            mtu,
            counters: PortCounters::default(),
            captures: Vec::new(),
            tunnel_mtu: None,
            generation: self.ports_added,
            security: None,
            flood_budget: FloodBudget::default(),
            awaits_flush: false,
        });
        self.ports_added += 1;
        Ok(id)
    }

    /// Removes a port, its FDB entries and its captures; returns it so the
    /// caller can deregister its fd before it is closed.
    pub fn remove_port(&mut self, name: &str) -> Result<(PortId, PortSlot), BridgeError> {
        let id = self.port_id(name)?;
        let slot = self.ports[id.index()]
            .take()
            .ok_or_else(|| BridgeError::NoPort(name.into()))?;
        for net in attached_nets(&slot.attachment) {
            if let Some(network) = self.network_mut(net) {
                network.members.retain(|p| *p != id);
                network.fdb.remove_port(id);
                network.guard.disown(id);
                network.multicast.remove_port(id);
                network.links.forget(id);
            }
        }
        Ok((id, slot))
    }

    /// Closes port `name`'s device: the port stays, with its counters and
    /// learned addresses, but a [`ClosedPort`] takes the device's place, so
    /// what is sent to it is dropped as `port-down`. The device is returned
    /// for the caller to deregister and drop.
    pub fn close_port(&mut self, name: &str) -> Result<Box<dyn Port>, BridgeError> {
        let id = self.port_id(name)?;
        let slot = self
            .port_mut(id)
            .ok_or_else(|| BridgeError::NoPort(name.into()))?;
        Ok(std::mem::replace(&mut slot.port, Box::new(ClosedPort)))
    }

    /// Gives a port port security (`Some`) or takes it away (`None`). The
    /// MACs it may use become its own in its networks: learned entries of
    /// them on other ports are forgotten, and no other port may send from
    /// them from now on.
    pub fn set_port_security(&mut self, id: PortId, security: Option<PortSecurity>) {
        let Some(slot) = self.port_mut(id) else {
            return;
        };
        let macs: Vec<MacAddr> = security.as_ref().map_or(Vec::new(), |s| s.macs().to_vec());
        slot.security = security;
        let nets: Vec<NetId> = attached_nets(&slot.attachment).collect();
        for net in nets {
            if let Some(network) = self.network_mut(net) {
                network.guard.disown(id);
                network.guard.own(id, &macs);
                for mac in &macs {
                    network.fdb.unlearn_elsewhere(mac, id);
                }
            }
        }
    }

    /// Marks a port as a tunnel with this overlay MTU.
    pub fn set_tunnel(&mut self, id: PortId, overlay_mtu: u32) {
        if let Some(slot) = self.port_mut(id) {
            slot.tunnel_mtu = Some(overlay_mtu);
        }
    }

    /// Makes the bridge's ICMP errors (fragmentation-needed for a tunnel)
    /// count against `limit`, the rate limit the gateway and the other
    /// threads' bridges share.
    pub fn share_icmp_errors(&mut self, limit: Arc<IcmpErrors>) {
        self.icmp_errors = limit;
    }

    /// The id of the port called `name`.
    pub fn port_id(&self, name: &str) -> Result<PortId, BridgeError> {
        index_named(&self.ports, name, |p| &p.name)
            .map(|i| PortId(i as u32))
            .ok_or_else(|| BridgeError::NoPort(name.to_string()))
    }

    /// The port with this id.
    pub fn port(&self, id: PortId) -> Option<&PortSlot> {
        self.ports.get(id.index()).and_then(Option::as_ref)
    }

    /// The port with this id, writable.
    pub fn port_mut(&mut self, id: PortId) -> Option<&mut PortSlot> {
        self.ports.get_mut(id.index()).and_then(Option::as_mut)
    }

    /// Ports in table order.
    pub fn ports(&self) -> impl Iterator<Item = (PortId, &PortSlot)> {
        self.ports
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_ref().map(|p| (PortId(i as u32), p)))
    }

    /// Adds a static FDB entry: frames to `mac` on `net` leave through `port`.
    pub fn fdb_add(&mut self, net: &str, mac: MacAddr, port: &str) -> Result<(), BridgeError> {
        let net_id = self.net_id(net)?;
        let port_id = self.port_id(port)?;
        let member = self
            .port(port_id)
            .is_some_and(|p| attached_nets(&p.attachment).any(|n| n == net_id));
        if !member {
            return Err(BridgeError::NotMember {
                port: port.into(),
                net: net.into(),
            });
        }
        if let Some(network) = self.network_mut(net_id) {
            network.fdb.add_static(mac, port_id);
        }
        Ok(())
    }

    /// Replaces network `net`'s links, named by port. A link naming a port this bridge does
    /// not have (one that is down) is left out until it is set again.
    pub fn set_links(&mut self, net: &str, links: &[NamedLink]) -> Result<(), BridgeError> {
        let net_id = self.net_id(net)?;
        let mut resolved = Vec::with_capacity(links.len());
        for link in links {
            if let (Ok(a), Ok(b)) = (self.port_id(&link.a), self.port_id(&link.b)) {
                resolved.push(Link {
                    a,
                    b,
                    ports: link.ports.clone(),
                });
            }
        }
        if let Some(network) = self.network_mut(net_id) {
            network.links.set(resolved);
        }
        Ok(())
    }

    /// Deletes an FDB entry; false when there was none.
    pub fn fdb_del(&mut self, net: &str, mac: &MacAddr) -> Result<bool, BridgeError> {
        let id = self.net_id(net)?;
        Ok(self.network_mut(id).is_some_and(|n| n.fdb.remove(mac)))
    }

    /// Deletes learned entries of one network, or of all.
    pub fn fdb_flush(&mut self, net: Option<&str>) -> Result<(), BridgeError> {
        match net {
            Some(name) => {
                let id = self.net_id(name)?;
                if let Some(network) = self.network_mut(id) {
                    network.fdb.flush_learned();
                }
            }
            None => self
                .networks
                .iter_mut()
                .flatten()
                .for_each(|n| n.fdb.flush_learned()),
        }
        Ok(())
    }

    /// Ages out learned entries in every network, and ages the multicast
    /// tables and sends the multicast queries due.
    pub fn expire(&mut self, now: Millis) -> usize {
        self.multicast_tick(now);
        self.networks
            .iter_mut()
            .flatten()
            .map(|n| {
                n.rules.expire(now);
                n.fdb.expire(now)
            })
            .sum()
    }

    /// The FDB entries this bridge reports (see
    /// [`share_learning`](Self::share_learning)) of network `net`, or of
    /// every network, by network, port and address.
    pub fn fdb_entries(
        &self,
        net: Option<&str>,
        now: Millis,
    ) -> Result<Vec<FdbRecord>, BridgeError> {
        if let Some(name) = net {
            self.net_id(name)?;
        }
        let mut out = Vec::new();
        for network in self
            .networks()
            .filter(|n| net.is_none_or(|name| n.name == name))
        {
            for (mac, slot) in network.fdb.own_entries(now, self.reports_static) {
                out.push(FdbRecord {
                    net: network.name.clone(),
                    mac: *mac,
                    port: self
                        .port(slot.port)
                        .map(|p| p.name.clone())
                        .unwrap_or_default(),
                    is_static: slot.is_static,
                    age_secs: (!slot.is_static).then(|| now.since(slot.last_seen) / 1000),
                });
            }
        }
        out.sort_by(|a, b| (&a.net, &a.port, a.mac).cmp(&(&b.net, &b.port, b.mac)));
        Ok(out)
    }

    /// The counters of port `name`, or of every port in table order.
    pub fn port_reports(&self, name: Option<&str>) -> Result<Vec<PortReport>, BridgeError> {
        if let Some(name) = name {
            self.port_id(name)?;
        }
        Ok(self
            .ports()
            .filter(|(_, p)| name.is_none_or(|n| p.name == n))
            .map(|(_, p)| PortReport {
                name: p.name.clone(),
                counters: p.counters.clone(),
            })
            .collect())
    }

    /// Attaches a capture to a port.
    pub fn add_capture(&mut self, port: &str, tap: CaptureTap) -> Result<(), BridgeError> {
        let id = self.port_id(port)?;
        if let Some(slot) = self.port_mut(id) {
            slot.captures.push(tap);
        }
        Ok(())
    }

    // ---- the per-frame pipeline (fast path) ----------------------------

    /// Receives up to `frames.len()` frames from port `id` into `frames`;
    /// returns how many. A receive error other than "nothing waiting" is
    /// returned after the frames already read are kept.
    pub fn receive(&mut self, id: PortId, frames: &mut [Frame]) -> (usize, std::io::Result<()>) {
        let Some(slot) = self.port_mut(id) else {
            return (0, Ok(()));
        };
        let received = slot.port.recv_batch(frames);
        slot.port.take_drops(&mut slot.counters);
        received
    }

    /// Runs one received frame through the pipeline and sends it on. Returns
    /// the frame's network when the gateway must see it too: it is addressed
    /// to the gateway's MAC, or it is a broadcast ARP in a network with a
    /// gateway (flooded as well). The frame is then as it was received, less
    /// a trunk's VLAN tag.
    pub fn process(&mut self, in_port: PortId, frame: &mut Frame, now: Millis) -> Option<NetId> {
        let slot = self.port_mut(in_port)?;
        slot.counters.rx_packets += 1;
        slot.counters.rx_bytes += frame.len() as u64;
        if !slot.captures.is_empty() {
            capture::offer_all(&mut slot.captures, frame.data());
        }
        match self.decide(in_port, frame, now) {
            Ok((net, Verdict::Gateway)) => Some(net),
            Ok((net, verdict)) => {
                self.deliver(in_port, net, verdict, frame, now);
                self.gateway_hears(net, verdict, frame).then_some(net)
            }
            Err(reason) => {
                self.count_drop(in_port, reason);
                None
            }
        }
    }

    /// Whether the gateway of network `net` must see a frame the bridge
    /// delivered with `verdict` as well: a broadcast ARP in a network with
    /// a gateway.
    pub fn gateway_hears(&self, net: NetId, verdict: Verdict, frame: &Frame) -> bool {
        let arp_broadcast = verdict == Verdict::Flood
            && frame.data()[..6] == MacAddr::BROADCAST.0
            && frame.outer_ethertype() == Some(ethertype::ARP);
        arp_broadcast && self.network(net).is_some_and(|n| n.gateway_mac.is_some())
    }

    /// Sends a frame from the gateway into network `net`: to the port its
    /// destination MAC was learned on, else to every port of the network.
    pub fn inject(&mut self, net: NetId, frame: &mut Frame, now: Millis) {
        if frame.len() < ethernet::HEADER_LEN {
            return;
        }
        let data = frame.data();
        let dst = MacAddr([data[0], data[1], data[2], data[3], data[4], data[5]]);
        let known = if dst.is_multicast() {
            None
        } else {
            self.network(net).and_then(|n| n.fdb.lookup(&dst, now))
        };
        match known {
            Some(out) => self.transmit(out, net, frame, None, now),
            None => {
                let mut targets = std::mem::take(&mut self.flood_scratch);
                targets.clear();
                if let Some(network) = self.network(net) {
                    targets.extend_from_slice(&network.members);
                }
                for &out in &targets {
                    self.transmit(out, net, frame, None, now);
                }
                self.flood_scratch = targets;
            }
        }
    }

    /// Ingress and lookup: assigns the frame its network (popping a trunk's
    /// VLAN tag), learns the source and decides where the frame goes.
    pub fn decide(
        &mut self,
        in_port: PortId,
        frame: &mut Frame,
        now: Millis,
    ) -> Result<(NetId, Verdict), DropReason> {
        self.decide_with(in_port, frame, now, &mut Forwarding)
    }

    /// [`decide`](Self::decide), each decision noted to `tracer`; a dry
    /// run ([`Tracer::DRY_RUN`]) learns nothing and hears no multicast
    /// report (see [`crate::dataplane::trace`]).
    pub fn decide_with<T: Tracer>(
        &mut self,
        in_port: PortId,
        frame: &mut Frame,
        now: Millis,
        tracer: &mut T,
    ) -> Result<(NetId, Verdict), DropReason> {
        self.flood_scope = FloodScope::All;
        if frame.len() < ethernet::HEADER_LEN {
            return Err(DropReason::Malformed);
        }
        let slot = self.port(in_port).ok_or(DropReason::PortDown)?;
        // A tunnel delivers whatever its far side sent, reassembled from outer
        // fragments: its overlay MTU limits what it sends, not what it takes.
        let in_mtu = if slot.tunnel_mtu.is_some() {
            MAX_MTU
        } else {
            slot.mtu
        };
        let net_id = match &slot.attachment {
            Attachment::Access(net) => {
                if frame.is_tagged() {
                    tracer.note(Stage::Vlan, || {
                        "a VLAN-tagged frame on an access port is refused".into()
                    });
                    return Err(DropReason::TaggedOnAccess);
                }
                tracer.note(Stage::Vlan, || {
                    format!(
                        "untagged on access port {}: network {}",
                        slot.name,
                        self.net_name(*net)
                    )
                });
                *net
            }
            Attachment::Trunk(members) => {
                // Trunks speak 802.1Q; a service tag (802.1ad) is not ours.
                if frame.outer_ethertype() == Some(ethertype::QINQ) {
                    tracer.note(Stage::Vlan, || {
                        "an 802.1ad service tag on a trunk is refused".into()
                    });
                    return Err(DropReason::VlanNotAllowed);
                }
                let Some(vid) = frame.pop_vlan() else {
                    tracer.note(Stage::Vlan, || {
                        format!("untagged frame on trunk {} is refused", slot.name)
                    });
                    return Err(DropReason::UntaggedOnTrunk);
                };
                let Some(net) = members.iter().find(|(v, _)| *v == vid).map(|(_, n)| *n) else {
                    tracer.note(Stage::Vlan, || {
                        format!("trunk {} carries no network with VLAN {vid}", slot.name)
                    });
                    return Err(DropReason::VlanNotAllowed);
                };
                tracer.note(Stage::Vlan, || {
                    format!(
                        "VLAN {vid} on trunk {}: network {} (tag removed)",
                        slot.name,
                        self.net_name(net)
                    )
                });
                net
            }
        };
        if !frame.offload.is_gso() && frame.len() > in_mtu as usize + ethernet::HEADER_LEN {
            tracer.note(Stage::Mtu, || {
                format!(
                    "{} bytes of payload exceed port {}'s MTU {in_mtu}",
                    frame.len() - ethernet::HEADER_LEN,
                    slot.name
                )
            });
            return Err(DropReason::TooBig);
        }
        let data = frame.data();
        let dst = MacAddr([data[0], data[1], data[2], data[3], data[4], data[5]]);
        let src = MacAddr([data[6], data[7], data[8], data[9], data[10], data[11]]);
        if !src.is_valid_source() {
            tracer.note(Stage::Ingress, || {
                format!("source MAC {src} is a group or zero address")
            });
            return Err(DropReason::BadSourceMac);
        }
        let slot = self.port(in_port).ok_or(DropReason::PortDown)?;
        let ingress = match (&slot.security, &slot.attachment) {
            (Some(policy), _) => Ingress::Secured(policy),
            (None, Attachment::Trunk(_)) => Ingress::Link,
            (None, Attachment::Access(_)) if slot.tunnel_mtu.is_some() => Ingress::Link,
            (None, Attachment::Access(_)) => Ingress::Open,
        };
        let guard = &self.network(net_id).ok_or(DropReason::PortDown)?.guard;
        let checked = security::check(ingress, guard, in_port, frame.data());
        tracer.note(Stage::PortSecurity, || {
            let kind = match ingress {
                Ingress::Secured(_) => "secured port: its MAC and addresses only",
                Ingress::Open => "port without port security: no gateway address, no owned MAC",
                Ingress::Link => "link to another switch: no owned MAC",
            };
            match checked {
                Ok(()) => format!("{kind} — passes"),
                Err(reason) => format!("{kind} — refused ({})", reason.as_str()),
            }
        });
        checked?;
        let in_isolated = self.is_isolated(in_port, net_id);
        if T::DRY_RUN {
            let network = self.network(net_id).ok_or(DropReason::PortDown)?;
            let known = network.fdb.lookup(&src, now);
            tracer.note(Stage::Learning, || match known {
                Some(p) if p == in_port => format!("{src} is known behind this port already"),
                Some(p) => format!(
                    "{src} would move here from port {} (not learned by a trace)",
                    self.port_name(p)
                ),
                None => format!("{src} would be learned on this port (not learned by a trace)"),
            });
        } else {
            let network = self.network_mut(net_id).ok_or(DropReason::PortDown)?;
            let learned = network.fdb.learn(src, in_port, now);
            if self.announcing && learned.is_news() {
                let generation = self.port(in_port).map_or(0, |p| p.generation);
                self.announcements.push(Announcement {
                    net: net_id,
                    mac: src,
                    port: in_port,
                    generation,
                });
            }
        }
        if dst.is_multicast() {
            self.flood_scope = if T::DRY_RUN {
                self.snoop_dry(in_port, net_id, frame, now)
            } else {
                self.snoop(in_port, net_id, frame, now)
            };
            tracer.note(Stage::Multicast, || match self.flood_scope {
                FloodScope::All => format!("{dst} is a group address: flooded"),
                _ => format!("{dst} is a group address: flooded as multicast snooping narrows it"),
            });
            return Ok((net_id, Verdict::Flood));
        }
        let network = self.network(net_id).ok_or(DropReason::PortDown)?;
        if network.gateway_mac == Some(dst) {
            tracer.note(Stage::Fdb, || {
                format!(
                    "{dst} is the gateway of network {}: to the gateway",
                    network.name
                )
            });
            return Ok((net_id, Verdict::Gateway));
        }
        let verdict = match network.fdb.lookup(&dst, now) {
            None => {
                tracer.note(Stage::Fdb, || {
                    format!(
                        "{dst} is not in the FDB of network {}: flooded",
                        network.name
                    )
                });
                Verdict::Flood
            }
            Some(out) if out == in_port => {
                tracer.note(Stage::Fdb, || {
                    format!("{dst} lives behind the in-port itself")
                });
                Verdict::Drop(DropReason::DestinationIsSource)
            }
            Some(out) => {
                tracer.note(Stage::Fdb, || {
                    format!("{dst} is behind port {} (FDB hit)", self.port_name(out))
                });
                if in_isolated && self.is_isolated(out, net_id) {
                    let linked = network.links.allows(in_port, out, frame.data());
                    tracer.note(Stage::Isolation, || {
                        if linked {
                            format!(
                                "network {} is --no-icc, but a link allows {} to {}",
                                network.name,
                                self.port_name(in_port),
                                self.port_name(out)
                            )
                        } else {
                            format!(
                                "network {} is --no-icc and no link allows {} to {}",
                                network.name,
                                self.port_name(in_port),
                                self.port_name(out)
                            )
                        }
                    });
                    if linked {
                        Verdict::Forward(out)
                    } else {
                        Verdict::Drop(DropReason::IccDisabled)
                    }
                } else {
                    Verdict::Forward(out)
                }
            }
        };
        if matches!(verdict, Verdict::Forward(_) | Verdict::Flood) {
            if T::DRY_RUN {
                self.trace_rules(net_id, frame.data(), tracer)?;
            } else {
                self.apply_rules(net_id, frame.data(), now)?;
            }
        }
        Ok((net_id, verdict))
    }

    /// The name of network `id` ("" when gone).
    fn net_name(&self, id: NetId) -> &str {
        self.network(id).map_or("", |n| n.name.as_str())
    }

    /// The name of port `id` ("" when gone).
    fn port_name(&self, id: PortId) -> &str {
        self.port(id).map_or("", |p| p.name.as_str())
    }

    /// What the network's firewall rules would decide for a traced frame,
    /// without recording a flow or counting a hit.
    fn trace_rules<T: Tracer>(
        &self,
        net: NetId,
        frame: &[u8],
        tracer: &mut T,
    ) -> Result<(), DropReason> {
        let network = self.network(net).ok_or(DropReason::PortDown)?;
        match network.rules.look(frame) {
            rules::Look::NotJudged => Ok(()),
            rules::Look::Tracked => {
                tracer.note(Stage::Rules, || {
                    "a flow the rules allowed already: passes".to_string()
                });
                Ok(())
            }
            rules::Look::New(None) => {
                tracer.note(Stage::Rules, || {
                    "a new flow no rule matches: allowed (the default)".to_string()
                });
                Ok(())
            }
            rules::Look::New(Some(m)) => {
                let deny = m.action == yard_nat::rules::RuleAction::Deny;
                tracer.note(Stage::Rules, || {
                    format!(
                        "a new flow: rule #{} of network {} {}",
                        m.position,
                        network.name,
                        if deny { "denies it" } else { "allows it" }
                    )
                });
                if deny {
                    Err(DropReason::RuleDeny)
                } else {
                    Ok(())
                }
            }
        }
    }

    /// The network's firewall rules on a frame it switches ([`rules`]):
    /// an allowed new flow is announced before the frame goes on; a deny
    /// stands only if the flow is still unknown once the other threads'
    /// announcements are in.
    fn apply_rules(&mut self, net: NetId, frame: &[u8], now: Millis) -> Result<(), DropReason> {
        let network = self.network_mut(net).ok_or(DropReason::PortDown)?;
        match network.rules.admit(frame, now) {
            Admission::Pass => Ok(()),
            Admission::Allowed(key) => {
                rules::announce(self.flow_link.as_ref(), FlowNews { net, key });
                Ok(())
            }
            Admission::Denied(key) => {
                self.hear_flows(now);
                let network = self.network_mut(net).ok_or(DropReason::PortDown)?;
                if network.rules.deny(frame, &key) {
                    Err(DropReason::RuleDeny)
                } else {
                    Ok(())
                }
            }
        }
    }

    /// True when `port` is an access port of a `--no-icc` network: it may
    /// reach only ports that are not isolated.
    fn is_isolated(&self, port: PortId, net: NetId) -> bool {
        let icc = self.network(net).is_none_or(|n| n.icc);
        !icc && matches!(
            self.port(port).map(|p| &p.attachment),
            Some(Attachment::Access(_))
        )
    }

    fn deliver(
        &mut self,
        in_port: PortId,
        net: NetId,
        verdict: Verdict,
        frame: &mut Frame,
        now: Millis,
    ) {
        match verdict {
            Verdict::Forward(out) => self.transmit(out, net, frame, Some(in_port), now),
            Verdict::Drop(reason) => self.count_drop(in_port, reason),
            // The caller hands these to the gateway.
            Verdict::Gateway => {}
            Verdict::Flood => {
                let mut targets = std::mem::take(&mut self.flood_scratch);
                targets.clear();
                let scope = std::mem::replace(&mut self.flood_scope, FloodScope::All);
                let blocked = self.flood_targets(in_port, net, frame, scope, now, &mut targets);
                if targets.is_empty() && blocked {
                    self.count_drop(in_port, DropReason::IccDisabled);
                }
                if !self.flood_allowed(in_port, targets.len(), now) {
                    self.count_drop(in_port, DropReason::FloodLimit);
                    targets.clear();
                }
                for &out in &targets {
                    self.transmit(out, net, frame, Some(in_port), now);
                }
                self.flood_scratch = targets;
            }
        }
    }

    /// The ports a flood of `frame` from `in_port` in network `net` goes
    /// to, into `targets`: every member but the in-port that multicast
    /// snooping's `scope` reaches, split horizon between tunnels, and on a
    /// `--no-icc` network only what isolation and links allow. True when
    /// isolation kept the frame from some port.
    fn flood_targets(
        &self,
        in_port: PortId,
        net: NetId,
        frame: &Frame,
        scope: FloodScope,
        now: Millis,
        targets: &mut Vec<PortId>,
    ) -> bool {
        let in_isolated = self.is_isolated(in_port, net);
        let in_tunnel = self.port(in_port).is_some_and(|p| p.tunnel_mtu.is_some());
        let mut blocked = false;
        let Some(network) = self.network(net) else {
            return false;
        };
        let reach = network.multicast.reach(scope, now);
        for &member in &network.members {
            if member == in_port {
                continue;
            }
            let static_router = || self.port(member).is_some_and(multicast::is_static_router);
            if !reach.includes(member, static_router) {
                continue;
            }
            // Split horizon: a full mesh of tunnels has no loops.
            if in_tunnel && self.port(member).is_some_and(|p| p.tunnel_mtu.is_some()) {
                continue;
            }
            if in_isolated
                && self.is_isolated(member, net)
                && !network.links.allows(in_port, member, frame.data())
            {
                blocked = true;
                continue;
            }
            targets.push(member);
        }
        blocked
    }

    /// Sends a frame out of one port, first doing in software the offloads
    /// the port cannot take (issue 5): a GSO frame is cut into segments, each
    /// sent on its own; a partial checksum is completed. A frame software
    /// cannot handle either is dropped as [`DropReason::BadOffload`].
    fn transmit(
        &mut self,
        out: PortId,
        net: NetId,
        frame: &mut Frame,
        from: Option<PortId>,
        now: Millis,
    ) {
        let Some(port) = self.port(out).map(|slot| &slot.port) else {
            return;
        };
        let (takes_gso, takes_partial) = (port.accepts_gso(), port.accepts_partial_csum());
        let partial = frame.offload.needs_csum();
        if frame.offload.is_gso() && !(takes_gso && takes_partial) {
            let Some(mut scratch) = self.offload_scratch.take() else {
                self.count_drop(out, DropReason::BadOffload);
                return;
            };
            let cut = offload::segment(frame, &mut scratch, |segment| {
                self.transmit_plain(out, net, segment, from, now)
            });
            self.offload_scratch = Some(scratch);
            if cut.is_err() {
                self.count_drop(out, DropReason::BadOffload);
            }
            return;
        }
        if partial && !takes_partial && offload::complete_checksum(frame).is_err() {
            self.count_drop(out, DropReason::BadOffload);
            return;
        }
        self.transmit_plain(out, net, frame, from, now);
    }

    /// Sends a frame whose offloads the port takes: MTU check (with ICMP
    /// fragmentation-needed for a tunnel), the trunk's VLAN tag, the port's
    /// own changes ([`Port::prepare`]), captures and counters. A capture sees
    /// every frame handed to the device, also one it then refuses (as
    /// tcpdump on Linux does).
    fn transmit_plain(
        &mut self,
        out: PortId,
        net: NetId,
        frame: &mut Frame,
        from: Option<PortId>,
        now: Millis,
    ) {
        let vlan = self.network(net).and_then(|n| n.vlan);
        let Some(slot) = self.port_mut(out) else {
            return;
        };
        match egress_fit(slot, frame) {
            EgressFit::Fits => {}
            EgressFit::TooBig => {
                slot.counters.drop_frame(DropReason::TooBig);
                return;
            }
            EgressFit::TooBigForTunnel(overlay_mtu) => {
                slot.counters.drop_frame(DropReason::TooBig);
                if let Some(from) = from {
                    self.refuse_too_big(from, net, frame, overlay_mtu, now);
                }
                return;
            }
        }
        let tagged = matches!(slot.attachment, Attachment::Trunk(_));
        if tagged {
            frame.push_vlan(vlan.unwrap_or(0));
        }
        // Captured before the send, as the frame leaves: once sent, its
        // answer may already be captured by another datapath thread.
        let sent = slot.port.prepare(frame).and_then(|()| {
            if !slot.captures.is_empty() {
                capture::offer_all(&mut slot.captures, frame.data());
            }
            slot.port.send(frame)
        });
        // Once per round, not per frame: the port is asked at the flush
        // whether it queued anything.
        let first_since_flush = sent.is_ok() && !std::mem::replace(&mut slot.awaits_flush, true);
        match sent {
            Ok(()) => {
                slot.counters.tx_packets += 1;
                slot.counters.tx_bytes += frame.len() as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                slot.counters.drop_frame(DropReason::TxQueueFull)
            }
            // A ClosedPort: the device is gone.
            Err(e) if e.kind() == std::io::ErrorKind::NotConnected => {
                slot.counters.drop_frame(DropReason::PortDown)
            }
            Err(_) => slot.counters.drop_frame(DropReason::TxError),
        }
        if tagged {
            frame.pop_vlan();
        }
        if first_since_flush {
            self.queued_ports.push(out);
        }
    }

    /// Hands every port's queued frames to its device ([`Port::flush`]) and
    /// counts what the devices refused. The datapath calls it before it
    /// sleeps.
    pub fn flush_ports(&mut self) {
        while let Some(id) = self.queued_ports.pop() {
            if let Some(slot) = self.port_mut(id) {
                slot.awaits_flush = false;
                if slot.port.has_queued() {
                    slot.port.flush();
                    slot.port.take_drops(&mut slot.counters);
                }
            }
        }
    }

    /// Answers `frame`, a DF packet too big for a tunnel's overlay MTU
    /// `mtu`, with ICMP fragmentation-needed (RFC 1191) out of port `to`,
    /// where it came from, as if from its destination — when the ICMP rate
    /// limit shared with the gateway allows and ICMP may answer it (RFC
    /// 1812: not about errors, fragments, broadcasts…). Built in the
    /// bridge's reply frame: no allocation.
    fn refuse_too_big(&mut self, to: PortId, net: NetId, frame: &Frame, mtu: u32, now: Millis) {
        let Some(mut reply) = self.reply_scratch.take() else {
            return;
        };
        let kind = IcmpErrorKind::FragmentationNeeded {
            next_hop_mtu: mtu.min(65_535) as u16,
        };
        let built =
            self.icmp_errors
                .reply_as_destination(now.0, reply.build_buf(), frame.data(), kind);
        if let Ok(len) = built {
            if reply.set_built(len) {
                self.transmit(to, net, &mut reply, None, now);
            }
        }
        self.reply_scratch = Some(reply);
    }

    /// Counts a drop on `port`.
    pub fn count_drop(&mut self, port: PortId, reason: DropReason) {
        if let Some(slot) = self.port_mut(port) {
            slot.counters.drop_frame(reason);
        }
    }
}

/// Whether a frame may leave by a port as it is ([`egress_fit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EgressFit {
    /// It fits (or is a GSO frame, cut to fit before it gets here).
    Fits,
    /// Larger than the port's MTU: dropped as `too-big`.
    TooBig,
    /// A DF packet larger than a tunnel's overlay MTU (the value): dropped
    /// as `too-big`, its sender told with ICMP fragmentation-needed. A
    /// larger packet without DF is carried; the host fragments the outer
    /// packet.
    TooBigForTunnel(u32),
}

/// Whether `frame` may leave by port `slot`: its MTU, or for a tunnel its
/// overlay MTU and the packet's don't-fragment bit.
fn egress_fit(slot: &PortSlot, frame: &Frame) -> EgressFit {
    if frame.offload.is_gso() {
        return EgressFit::Fits;
    }
    match slot.tunnel_mtu {
        Some(overlay_mtu)
            if frame.len() > overlay_mtu as usize + ethernet::HEADER_LEN
                && yard_wire::fragment::dont_fragment(frame.data()) == Some(true) =>
        {
            EgressFit::TooBigForTunnel(overlay_mtu)
        }
        Some(_) => EgressFit::Fits,
        None if frame.len() > slot.mtu as usize + ethernet::HEADER_LEN => EgressFit::TooBig,
        None => EgressFit::Fits,
    }
}

/// The index of the entry of `table` that `name_of` calls `name`: networks
/// and ports are found by name in their tables (slots of removed ones are
/// `None`) the same way.
fn index_named<T>(table: &[Option<T>], name: &str, name_of: impl Fn(&T) -> &str) -> Option<usize> {
    table
        .iter()
        .position(|slot| slot.as_ref().is_some_and(|t| name_of(t) == name))
}

fn attached_nets(attachment: &Attachment) -> impl Iterator<Item = NetId> + '_ {
    let (single, many) = match attachment {
        Attachment::Access(net) => (Some(*net), &[][..]),
        Attachment::Trunk(members) => (None, members.as_slice()),
    };
    single.into_iter().chain(many.iter().map(|(_, net)| *net))
}
