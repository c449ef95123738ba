//! The thread side of the control thread's commands: one method of
//! [`Datapath`] per command, run on the datapath thread between two batches
//! (slow path), returning the command's own answer. The
//! [`DatapathHandle`](super::DatapathHandle) method of the same name sends
//! it to the threads it concerns and merges their answers.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use mio::unix::SourceFd;
use mio::{Interest, Token};
use yard_ctl::api::{
    ConntrackEntry, ConntrackFilter, ConntrackSettings, ConntrackStats, FdbEntry, NetworkSpec,
    PortStats,
};
use yard_ctl::MacAddr;
use yard_nat::conntrack::RuleId;
use yard_nat::gateway::{PublishRule, UplinkConfig};

use super::{
    Datapath, DatapathError, Membership, NetFigures, TunnelBinding, Uplink, TUNNEL_BASE, UPLINK,
};
use crate::control::nat_api;
use crate::dataplane::capture::CaptureTap;
use crate::dataplane::port::{Port, PortCounters};

impl Datapath {
    // ---- L2: every thread ----------------------------------------------

    pub(super) fn add_network(&mut self, spec: &NetworkSpec) -> Result<(), DatapathError> {
        let id = self.bridge.add_network(spec)?;
        if let Some(config) = nat_api::net_config(id.0, spec) {
            self.bridge.set_gateway_mac(id, Some(MacAddr(config.mac)));
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
    /// its fd (the others only send through their handles on it).
    pub(super) fn add_port(
        &mut self,
        name: String,
        port: Box<dyn Port>,
        membership: Membership,
        mtu: u32,
        reads: bool,
        tunnel: Option<TunnelBinding>,
    ) -> Result<(), DatapathError> {
        let attachment = match &membership {
            Membership::Access(net) => self.bridge.access(net)?,
            Membership::Trunk(nets) => self.bridge.trunk(nets)?,
        };
        let fd = port.raw_fd().filter(|_| reads);
        let id = self.bridge.add_port(&name, port, attachment, mtu)?;
        if let Some(fd) = fd {
            if let Err(e) = self.register(fd, id) {
                let _ = self.bridge.remove_port(&name);
                tracing::error!(port = %name, error = %e, "cannot poll port");
                return Err(DatapathError::Gateway(format!(
                    "cannot poll port {name}: {e}"
                )));
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
                    return Err(DatapathError::Gateway(format!(
                        "cannot poll tunnel {name}: {e}"
                    )));
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

    pub(super) fn fdb_add(
        &mut self,
        net: &str,
        mac: MacAddr,
        port: &str,
    ) -> Result<(), DatapathError> {
        self.bridge.fdb_add(net, mac, port)?;
        Ok(())
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
    ) -> Result<Vec<PortStats>, DatapathError> {
        Ok(self.bridge.port_stats(name)?)
    }

    /// The entries this thread reports (see
    /// [`Bridge::share_learning`](crate::dataplane::bridge::Bridge::share_learning)).
    pub(super) fn fdb(&mut self, net: Option<&str>) -> Result<Vec<FdbEntry>, DatapathError> {
        let now = self.now();
        Ok(self.bridge.fdb_entries(net, now)?)
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
            self.poll
                .registry()
                .register(&mut SourceFd(&fd), UPLINK, Interest::READABLE)
                .map_err(|e| DatapathError::Gateway(format!("cannot poll uplink {name}: {e}")))?;
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

    pub(super) fn remove_uplink(&mut self) -> Result<(), DatapathError> {
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
        self.gateway
            .add_publish(rule)
            .map_err(|e| DatapathError::Gateway(e.to_string()))
    }

    pub(super) fn remove_publish(&mut self, id: RuleId) -> Result<usize, DatapathError> {
        Ok(self.gateway.remove_publish(id))
    }

    pub(super) fn forget_address(&mut self, addr: Ipv4Addr) -> Result<usize, DatapathError> {
        Ok(self.gateway.forget_address(addr))
    }

    pub(super) fn conntrack(
        &mut self,
        filter: &ConntrackFilter,
    ) -> Result<Vec<ConntrackEntry>, DatapathError> {
        let now = self.now();
        let filter = nat_api::filter_of(filter).map_err(DatapathError::Gateway)?;
        Ok(self
            .gateway
            .conntrack()
            .iter(now.0)
            .filter(|(_, e)| filter.matches(e))
            .map(|(_, e)| nat_api::entry_info(e, now.0))
            .collect())
    }

    pub(super) fn conntrack_flush(
        &mut self,
        filter: &ConntrackFilter,
    ) -> Result<u64, DatapathError> {
        let filter = nat_api::filter_of(filter).map_err(DatapathError::Gateway)?;
        Ok(self.gateway.conntrack_mut().flush(&filter) as u64)
    }

    pub(super) fn conntrack_stats(&mut self) -> Result<ConntrackStats, DatapathError> {
        Ok(nat_api::stats(&self.gateway))
    }

    pub(super) fn set_conntrack(
        &mut self,
        settings: &ConntrackSettings,
    ) -> Result<ConntrackSettings, DatapathError> {
        let ct = self.gateway.conntrack_mut();
        let mut timeouts = ct.config().timeouts;
        nat_api::apply_timeouts(&mut timeouts, &settings.timeouts)
            .map_err(DatapathError::Gateway)?;
        if let Some(max) = settings.max_entries {
            if max == 0 || max > 16 * 1024 * 1024 {
                return Err(DatapathError::Gateway(format!(
                    "conntrack limit {max} is out of range: use 1 to 16777216"
                )));
            }
            ct.set_max_entries(max as usize);
        }
        ct.set_timeouts(timeouts);
        Ok(nat_api::settings(
            ct.config().max_entries,
            &ct.config().timeouts,
        ))
    }

    pub(super) fn uplink_stats(&mut self) -> Result<Option<PortStats>, DatapathError> {
        Ok(self.uplink.as_ref().map(|u| PortStats {
            name: u.name.clone(),
            rx_packets: u.counters.rx_packets,
            rx_bytes: u.counters.rx_bytes,
            tx_packets: u.counters.tx_packets,
            tx_bytes: u.counters.tx_bytes,
            drops: u
                .counters
                .drops_by_name()
                .map(|(r, n)| (r.to_string(), n))
                .collect(),
        }))
    }

    pub(super) fn tunnel_drops(&mut self) -> Result<BTreeMap<String, u64>, DatapathError> {
        Ok(self
            .overlay
            .drops
            .iter()
            .map(|(r, n)| (r.to_string(), *n))
            .collect())
    }
}
