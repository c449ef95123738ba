//! The thread side of the control thread's commands: one method of
//! [`Datapath`] per command, run on the datapath thread between two batches
//! (slow path), returning the command's own answer. The
//! [`DatapathHandle`](super::DatapathHandle) method of the same name sends
//! it to the threads it concerns and merges their answers.
//!
//! Answers are the data plane's own types — [`PortReport`]s, [`FdbRecord`]s,
//! [`NetFigures`], [`GatewayFigures`], a [`ConntrackSnapshot`] — never the
//! control API's: `crate::control` builds its replies from them, so the API
//! can change without touching the datapath.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};

use mio::unix::SourceFd;
use mio::{Interest, Token};
use yard_ctl::api::NetworkSpec;
use yard_ctl::MacAddr;
use yard_nat::conntrack::{Config as ConntrackConfig, Entry, Filter, Position, RuleId, Stats};
use yard_nat::gateway::{GatewayCounters, NetConfig, PublishRule, UplinkConfig};
use yard_nat::rules as firewall;

use super::{Datapath, DatapathError, Membership, TunnelBinding, Uplink, TUNNEL_BASE, UPLINK};
use crate::dataplane::bridge::links::NamedLink;
use crate::dataplane::bridge::multicast::MdbRecord;
use crate::dataplane::bridge::security::PortSecurity;
use crate::dataplane::bridge::FdbRecord;
use crate::dataplane::capture::CaptureTap;
use crate::dataplane::port::{Port, PortCounters, PortReport};
use crate::relay::published::HostSockets;
use crate::relay::Listening;

/// Per-network figures for `net ls` and `net inspect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetFigures {
    /// The network's name.
    pub name: String,
    /// Live FDB entries this thread reports.
    pub fdb_entries: usize,
    /// Times an address moved to another port so far.
    pub mac_moves: u64,
}

/// The gateway's and its connection table's figures, from the home thread.
#[derive(Debug, Clone)]
pub struct GatewayFigures {
    /// The connection table's counters.
    pub conntrack: Stats,
    /// The table's limit in force.
    pub max_entries: usize,
    /// Live SNAT port mappings.
    pub snat_mappings: usize,
    /// The SNAT share in force (percent of each port range per source).
    pub snat_share_percent: u8,
    /// Heap the table uses.
    pub table_bytes: usize,
    /// The gateway's own counters.
    pub gateway: GatewayCounters,
    /// The host uplink relay's counters by name (`relay-…`).
    pub relay: Vec<(&'static str, u64)>,
    /// Live entries by state name.
    pub by_state: BTreeMap<&'static str, u64>,
}

/// The connections a filter selected, as they were at `now_ms`.
#[derive(Debug, Clone)]
pub struct ConntrackSnapshot {
    /// The datapath clock when the copy was taken: entries' timers count
    /// from it.
    pub now_ms: u64,
    /// The connections, in listing order (network, then original tuple).
    pub entries: Vec<Entry>,
    /// For each entry, its host socket (local, remote) if the host
    /// uplink relays it.
    pub host_ends: Vec<Option<(SocketAddrV4, SocketAddrV4)>>,
    /// Where the next page starts; `None` when this was the last.
    pub next: Option<Position>,
}

impl Datapath {
    // ---- L2: every thread ----------------------------------------------

    /// Adds network `spec` to the bridge and, when it has a subnet, its
    /// side of the gateway (`gateway`, whose `id` is set here to the
    /// bridge's).
    pub(super) fn add_network(
        &mut self,
        spec: &NetworkSpec,
        gateway: Option<NetConfig>,
    ) -> Result<(), DatapathError> {
        let id = self.bridge.add_network(spec)?;
        if let Some(mut config) = gateway {
            config.id = id.0;
            self.bridge.set_gateway_mac(id, Some(MacAddr(config.mac)));
            self.bridge.set_gateway_ip(id, Some(config.gateway));
            self.gateway.set_network(config);
        }
        Ok(())
    }

    pub(super) fn remove_network(&mut self, name: &str) -> Result<(), DatapathError> {
        let id = self.bridge.net_id(name)?;
        self.bridge.remove_network(name)?;
        self.gateway.remove_network(id.0);
        Ok(())
    }

    /// Adds a port to this thread's bridge; `reads` when this thread polls
    /// its fd (the others only send through their handles on it). Its port
    /// security is in force before its first frame is read.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn add_port(
        &mut self,
        name: String,
        port: Box<dyn Port>,
        membership: Membership,
        mtu: u32,
        reads: bool,
        tunnel: Option<TunnelBinding>,
        security: Option<PortSecurity>,
    ) -> Result<(), DatapathError> {
        let attachment = match &membership {
            Membership::Access(net) => self.bridge.access(net)?,
            Membership::Trunk(nets) => self.bridge.trunk(nets)?,
        };
        let fd = port.raw_fd().filter(|_| reads);
        let id = self.bridge.add_port(&name, port, attachment, mtu)?;
        if security.is_some() {
            self.bridge.set_port_security(id, security);
        }
        if let Some(fd) = fd {
            if let Err(e) = self.register(fd, id) {
                let _ = self.bridge.remove_port(&name);
                tracing::error!(port = %name, error = %e, "cannot poll port");
                return Err(DatapathError::Poll {
                    what: "port",
                    name,
                    error: e,
                });
            }
            // Frames may already be queued: edge-triggered polling would
            // not report them, so serve the port once now.
            self.pending.push(id);
        }
        if let Some(binding) = tunnel {
            self.bridge.set_tunnel(id, binding.overlay_mtu);
            let fd = binding.socket.raw_fd();
            if let Some(index) = self
                .overlay
                .add(binding.socket, binding.remote, binding.key, id)
            {
                let token = Token(TUNNEL_BASE - index);
                if let Err(e) =
                    self.poll
                        .registry()
                        .register(&mut SourceFd(&fd), token, Interest::READABLE)
                {
                    let _ = self.bridge.remove_port(&name);
                    self.overlay.remove_port(id);
                    return Err(DatapathError::Poll {
                        what: "tunnel",
                        name,
                        error: e,
                    });
                }
                self.tunnels_again.push(index);
            }
        }
        Ok(())
    }

    pub(super) fn remove_port(&mut self, name: &str) -> Result<(), DatapathError> {
        let (id, slot) = self.bridge.remove_port(name)?;
        if let Some(fd) = slot.port.raw_fd() {
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        }
        self.pending.retain(|p| *p != id);
        if let Some(fd) = self.overlay.remove_port(id) {
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        }
        drop(slot);
        Ok(())
    }

    /// Replaces port `name`'s device with a closed one
    /// ([`Bridge::close_port`](crate::dataplane::bridge::Bridge::close_port))
    /// and lets go of the device.
    pub(super) fn close_port(&mut self, name: &str) -> Result<(), DatapathError> {
        let device = self.bridge.close_port(name)?;
        if let Some(fd) = device.raw_fd() {
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        }
        drop(device);
        Ok(())
    }

    pub(super) fn fdb_add(
        &mut self,
        net: &str,
        mac: MacAddr,
        port: &str,
    ) -> Result<(), DatapathError> {
        self.bridge.fdb_add(net, mac, port)?;
        Ok(())
    }

    pub(super) fn set_links(
        &mut self,
        net: &str,
        links: &[NamedLink],
    ) -> Result<(), DatapathError> {
        self.bridge.set_links(net, links)?;
        Ok(())
    }

    /// Network `net`'s firewall rules, for its bridge and its gateway.
    pub(super) fn set_rules(
        &mut self,
        net: &str,
        rules: &[firewall::Rule],
    ) -> Result<(), DatapathError> {
        self.bridge.set_rules(net, rules.to_vec())?;
        let id = self.bridge.net_id(net)?;
        self.gateway.set_rules(id.0, rules.to_vec());
        Ok(())
    }

    /// Network `net`'s rules with the connections each decided on this
    /// thread: switched (its bridge) and routed (its gateway; only the home
    /// thread's routes).
    pub(super) fn rule_hits(
        &mut self,
        net: &str,
    ) -> Result<Vec<(firewall::RuleId, u64)>, DatapathError> {
        let mut hits = self.bridge.rule_hits(net)?;
        let id = self.bridge.net_id(net)?;
        for (rule, routed) in self.gateway.rule_hits(id.0) {
            if let Some(entry) = hits.iter_mut().find(|(r, _)| *r == rule) {
                entry.1 += routed;
            }
        }
        Ok(hits)
    }

    /// False when this thread's FDB had no such entry.
    pub(super) fn fdb_del(&mut self, net: &str, mac: MacAddr) -> Result<bool, DatapathError> {
        Ok(self.bridge.fdb_del(net, &mac)?)
    }

    pub(super) fn fdb_flush(&mut self, net: Option<&str>) -> Result<(), DatapathError> {
        self.bridge.fdb_flush(net)?;
        Ok(())
    }

    pub(super) fn add_capture(&mut self, port: &str, tap: CaptureTap) -> Result<(), DatapathError> {
        self.bridge.add_capture(port, tap)?;
        Ok(())
    }

    pub(super) fn port_stats(
        &mut self,
        name: Option<&str>,
    ) -> Result<Vec<PortReport>, DatapathError> {
        Ok(self.bridge.port_reports(name)?)
    }

    /// The entries this thread reports (see
    /// [`Bridge::share_learning`](crate::dataplane::bridge::Bridge::share_learning)).
    pub(super) fn fdb(&mut self, net: Option<&str>) -> Result<Vec<FdbRecord>, DatapathError> {
        let now = self.now();
        Ok(self.bridge.fdb_entries(net, now)?)
    }

    /// This thread's multicast table.
    pub(super) fn mdb(&mut self, net: Option<&str>) -> Result<Vec<MdbRecord>, DatapathError> {
        let now = self.now();
        Ok(self.bridge.mdb_entries(net, now)?)
    }

    pub(super) fn net_figures(&mut self) -> Result<Vec<NetFigures>, DatapathError> {
        let now = self.now();
        Ok(self
            .bridge
            .networks()
            .map(|n| NetFigures {
                name: n.name.clone(),
                fdb_entries: self.bridge.reported_fdb_len(n, now),
                mac_moves: n.fdb.mac_moves,
            })
            .collect())
    }

    /// Ends the loop once this command has answered.
    pub(super) fn shutdown(&mut self) -> Result<(), DatapathError> {
        self.stopping = true;
        Ok(())
    }

    // ---- L3: the home thread -------------------------------------------

    pub(super) fn set_uplink(
        &mut self,
        name: String,
        port: Box<dyn Port>,
        config: UplinkConfig,
        mtu: u32,
    ) -> Result<(), DatapathError> {
        if let Some(fd) = port.raw_fd() {
            let registered =
                self.poll
                    .registry()
                    .register(&mut SourceFd(&fd), UPLINK, Interest::READABLE);
            if let Err(error) = registered {
                return Err(DatapathError::Poll {
                    what: "uplink",
                    name,
                    error,
                });
            }
        }
        self.gateway.set_uplink(Some(config));
        self.uplink = Some(Uplink {
            name,
            port,
            mtu,
            counters: PortCounters::default(),
        });
        self.uplink_again = true;
        Ok(())
    }

    pub(super) fn set_host_uplink(
        &mut self,
        resolver: Option<Ipv4Addr>,
    ) -> Result<(), DatapathError> {
        self.gateway.set_host_uplink(true);
        self.gateway.set_dns_forward(resolver);
        Ok(())
    }

    pub(super) fn remove_uplink(&mut self) -> Result<(), DatapathError> {
        if self.gateway.has_host_uplink() {
            if let Some(relay) = self.relay.as_mut() {
                relay.listening(Listening::StopAll);
            }
        }
        self.gateway.set_host_uplink(false);
        self.gateway.set_dns_forward(None);
        if let Some(uplink) = self.uplink.take() {
            if let Some(fd) = uplink.port.raw_fd() {
                let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
            }
        }
        self.gateway.set_uplink(None);
        Ok(())
    }

    pub(super) fn connect(&mut self, a: &str, b: &str) -> Result<(), DatapathError> {
        let (a, b) = (self.bridge.net_id(a)?, self.bridge.net_id(b)?);
        self.gateway.connect(a.0, b.0);
        Ok(())
    }

    pub(super) fn disconnect(&mut self, a: &str, b: &str) -> Result<(), DatapathError> {
        let (a, b) = (self.bridge.net_id(a)?, self.bridge.net_id(b)?);
        self.gateway.disconnect(a.0, b.0);
        Ok(())
    }

    pub(super) fn add_publish(&mut self, rule: PublishRule) -> Result<(), DatapathError> {
        Ok(self.gateway.add_publish(rule)?)
    }

    pub(super) fn listen_publish(&mut self, sockets: HostSockets) -> Result<(), DatapathError> {
        match self.relay.as_mut() {
            Some(relay) => {
                relay.listening(Listening::Start(sockets));
                Ok(())
            }
            None => Err(DatapathError::NoHostRelay),
        }
    }

    pub(super) fn unlisten_publish(&mut self, id: RuleId) -> Result<(), DatapathError> {
        if let Some(relay) = self.relay.as_mut() {
            relay.listening(Listening::Stop(id));
        }
        Ok(())
    }

    pub(super) fn remove_publish(&mut self, id: RuleId) -> Result<usize, DatapathError> {
        Ok(self.gateway.remove_publish(id))
    }

    pub(super) fn forget_address(&mut self, addr: Ipv4Addr) -> Result<usize, DatapathError> {
        Ok(self.gateway.forget_address(addr))
    }

    pub(super) fn conntrack(
        &mut self,
        filter: Filter,
        after: Option<Position>,
        limit: usize,
    ) -> Result<ConntrackSnapshot, DatapathError> {
        let now = self.now();
        let page = self.gateway.conntrack().page(&filter, after, limit, now.0);
        let host_ends = page
            .entries
            .iter()
            .map(|e| self.gateway.host_end(e))
            .collect();
        Ok(ConntrackSnapshot {
            now_ms: now.0,
            host_ends,
            entries: page.entries,
            next: page.next,
        })
    }

    pub(super) fn conntrack_flush(&mut self, filter: Filter) -> Result<usize, DatapathError> {
        Ok(self.gateway.conntrack_mut().flush(&filter))
    }

    pub(super) fn conntrack_stats(&mut self) -> Result<GatewayFigures, DatapathError> {
        let now = self.now();
        let ct = self.gateway.conntrack();
        // One walk of the table (a control-plane request, not per frame).
        let mut by_state = BTreeMap::new();
        for (_, e) in ct.iter(now.0) {
            *by_state.entry(e.state_name()).or_insert(0) += 1;
        }
        Ok(GatewayFigures {
            by_state,
            conntrack: ct.stats(),
            max_entries: ct.config().max_entries,
            snat_mappings: ct.mapping().len(),
            snat_share_percent: ct.config().snat_share_percent,
            table_bytes: ct.heap_bytes(),
            gateway: self.gateway.counters().clone(),
            relay: self
                .relay
                .as_ref()
                .map(|r| r.counters().by_name().to_vec())
                .unwrap_or_default(),
        })
    }

    /// Applies `edit`'s limit, timeouts and SNAT share to the connection
    /// table (a lower limit evicts at once; a lower share takes no mapping
    /// away); the configuration now in force.
    pub(super) fn set_conntrack(
        &mut self,
        edit: impl FnOnce(&mut ConntrackConfig),
    ) -> Result<ConntrackConfig, DatapathError> {
        let ct = self.gateway.conntrack_mut();
        let mut config = *ct.config();
        edit(&mut config);
        ct.set_max_entries(config.max_entries);
        ct.set_timeouts(config.timeouts);
        ct.set_snat_share_percent(config.snat_share_percent);
        Ok(*ct.config())
    }

    pub(super) fn uplink_stats(&mut self) -> Result<Option<PortReport>, DatapathError> {
        Ok(self.uplink.as_ref().map(|u| PortReport {
            name: u.name.clone(),
            counters: u.counters.clone(),
        }))
    }

    /// Tunnel packets dropped before they reached a tunnel port, by reason.
    pub(super) fn tunnel_drops(&mut self) -> Result<BTreeMap<&'static str, u64>, DatapathError> {
        Ok(self.overlay.drops.clone())
    }

    /// What software GRO made of the segments tunnels received.
    pub(super) fn tunnel_gro(&mut self) -> Result<yard_ctl::api::TunnelGro, DatapathError> {
        let merged = self.overlay.merged;
        Ok(yard_ctl::api::TunnelGro {
            frames: merged.frames,
            segments: merged.segments,
        })
    }
}
