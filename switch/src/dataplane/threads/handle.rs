//! The control thread's handle on the datapath threads: one method per
//! command, whose return type is the command's answer. Each method sends the
//! command to the threads it concerns and merges their answers, so the
//! control plane sees one switch whatever `yardd --threads` says:
//!
//! - networks, ports, static FDB entries and captures go to every thread, in
//!   the same order (one call at a time), so every thread's bridge numbers
//!   networks and ports alike;
//! - a new port is read by one thread, the least loaded; every other thread
//!   gets a handle it only sends through ([`crate::dataplane::port::Port::share`]);
//! - the gateway, uplink, conntrack and tunnel drops live on thread
//!   [`HOME`] alone;
//! - counters are summed and FDB listings joined: each thread reports the
//!   addresses it learned itself.
//!
//! A command travels as a [`Command`]: a closure that runs the thread-side
//! function on the thread's [`Datapath`] and sends its typed result back on a
//! channel made for that one call, so no answer can come back as the wrong
//! type.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crossbeam_channel::Sender;
use mio::Waker;
use yard_ctl::api::NetworkSpec;
use yard_ctl::MacAddr;
use yard_nat::conntrack::{Config as ConntrackConfig, Filter, Position, RuleId};
use yard_nat::gateway::{GatewayError, NetConfig, PublishRule, UplinkConfig};
use yard_nat::rules as firewall;

use super::mesh::HOME;
use super::{ConntrackSnapshot, Datapath, GatewayFigures, Membership, NetFigures, TunnelBinding};
use crate::dataplane::bridge::links::NamedLink;
use crate::dataplane::bridge::multicast::MdbRecord;
use crate::dataplane::bridge::security::PortSecurity;
use crate::dataplane::bridge::{BridgeError, FdbRecord};
use crate::dataplane::capture::CaptureTap;
use crate::dataplane::port::{Port, PortReport};
use crate::dataplane::trace::Trace;
use crate::relay::published::HostSockets;

/// A command as it travels to a datapath thread: run between two batches on
/// the thread's [`Datapath`]; it sends its own answer.
pub(super) type Command = Box<dyn FnOnce(&mut Datapath) + Send>;

/// How long the control thread waits for a datapath thread to answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// One datapath thread's command queue.
#[derive(Clone)]
pub(super) struct ThreadHandle {
    pub(super) commands: Sender<Command>,
    pub(super) waker: Arc<Waker>,
}

impl ThreadHandle {
    /// Runs `command` on this thread and waits for its answer.
    fn call<T, F>(&self, command: F) -> Result<T, DatapathError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Datapath) -> Result<T, DatapathError> + Send + 'static,
    {
        let (reply, answer) = crossbeam_channel::bounded(1);
        let job: Command = Box::new(move |datapath| {
            let _ = reply.send(command(datapath));
        });
        self.commands.send(job).map_err(|_| DatapathError::Gone)?;
        self.waker.wake().map_err(DatapathError::Wake)?;
        match answer.recv_timeout(ANSWER_WITHIN) {
            Ok(result) => result,
            Err(_) => Err(DatapathError::Gone),
        }
    }
}

/// Which thread reads which port.
struct Placement {
    reader: HashMap<String, usize>,
    /// Ports each thread reads; [`HOME`] starts at one for the gateway,
    /// uplink and tunnels it serves as well.
    load: Vec<usize>,
}

impl Placement {
    fn least_loaded(&self) -> usize {
        (0..self.load.len())
            .min_by_key(|&thread| self.load[thread])
            .unwrap_or(HOME)
    }
}

/// The control thread's handle on the datapath.
#[derive(Clone)]
pub struct DatapathHandle {
    threads: Vec<ThreadHandle>,
    /// Also serialises commands: every method holds it for its whole call,
    /// so every thread applies commands in one order.
    placement: Arc<Mutex<Placement>>,
}

/// Why a command did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    /// The bridge refused it.
    #[error(transparent)]
    Refused(#[from] BridgeError),
    /// The gateway refused a published port rule.
    #[error(transparent)]
    Publish(#[from] GatewayError),
    /// A port's (or the uplink's, or a tunnel's) fd could not be added to
    /// the thread's poll set.
    #[error("cannot poll {what} {name}: {error}")]
    Poll {
        /// `port`, `tunnel` or `uplink`.
        what: &'static str,
        /// Its name.
        name: String,
        /// What failed.
        error: std::io::Error,
    },
    /// A port could not be given to every datapath thread.
    #[error(
        "cannot share port {port} between the datapath threads: {error} (start yardd with --threads 1 to avoid sharing)"
    )]
    Share {
        /// Port name.
        port: String,
        /// What failed.
        error: std::io::Error,
    },
    /// The datapath thread is not running.
    #[error("the datapath thread is not answering (see yardd's log)")]
    Gone,
    /// The waker failed.
    #[error("cannot wake the datapath thread: {0}")]
    Wake(std::io::Error),
    /// The host uplink's relay was never started (a datapath made
    /// for tests only).
    #[error("this yardd has no host uplink relay")]
    NoHostRelay,
}

impl DatapathHandle {
    pub(super) fn new(threads: Vec<ThreadHandle>) -> Self {
        let mut load = vec![0; threads.len()];
        if load.len() > 1 {
            load[HOME] = 1;
        }
        DatapathHandle {
            threads,
            placement: Arc::new(Mutex::new(Placement {
                reader: HashMap::new(),
                load,
            })),
        }
    }

    /// Number of datapath threads.
    pub fn threads(&self) -> usize {
        self.threads.len()
    }

    /// The thread that reads port `name`, if it exists.
    pub fn reader_of(&self, name: &str) -> Option<usize> {
        self.placement().reader.get(name).copied()
    }

    /// Takes the lock that orders commands (and guards the placement).
    fn placement(&self) -> MutexGuard<'_, Placement> {
        self.placement
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `command` on every thread in order; their answers. Every bridge
    /// holds the same networks and ports, so when one refuses, the first
    /// does, and nothing has changed anywhere. `_order` is the held
    /// [`placement`](Self::placement) lock.
    fn each<T, F>(&self, _order: &Placement, command: F) -> Result<Vec<T>, DatapathError>
    where
        T: Send + 'static,
        F: Fn(&mut Datapath) -> Result<T, DatapathError> + Clone + Send + 'static,
    {
        self.threads
            .iter()
            .map(|thread| thread.call(command.clone()))
            .collect()
    }

    /// As [`each`](Self::each), for commands whose answers are all alike:
    /// the home thread's answer.
    fn all<T, F>(&self, order: &Placement, command: F) -> Result<T, DatapathError>
    where
        T: Send + 'static,
        F: Fn(&mut Datapath) -> Result<T, DatapathError> + Clone + Send + 'static,
    {
        let mut answers = self.each(order, command)?;
        Ok(answers.swap_remove(HOME))
    }

    /// Runs `command` on the home thread alone (the gateway's commands).
    fn home<T, F>(&self, _order: &Placement, command: F) -> Result<T, DatapathError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Datapath) -> Result<T, DatapathError> + Send + 'static,
    {
        self.threads[HOME].call(command)
    }

    // ---- L2: networks, ports, FDB, captures ---------------------------

    /// Adds a network and, when it has a subnet, its side of the gateway
    /// (`gateway`; its `id` is filled in with the bridge's).
    pub fn add_network(
        &self,
        spec: NetworkSpec,
        gateway: Option<NetConfig>,
    ) -> Result<(), DatapathError> {
        let order = self.placement();
        self.all(&order, move |dp| dp.add_network(&spec, gateway.clone()))
    }

    /// Removes a network that has no ports.
    pub fn remove_network(&self, name: &str) -> Result<(), DatapathError> {
        let order = self.placement();
        let name = name.to_string();
        self.all(&order, move |dp| dp.remove_network(&name))
    }

    /// Starts forwarding port `name`'s frames: the least loaded thread reads
    /// it (the home thread for a tunnel, whose packets arrive on sockets it
    /// reads), every other thread gets a handle to send through. With
    /// `security`, its frames are checked by port security from the first.
    pub fn add_port(
        &self,
        name: &str,
        port: Box<dyn Port>,
        membership: Membership,
        mtu: u32,
        tunnel: Option<TunnelBinding>,
        security: Option<PortSecurity>,
    ) -> Result<(), DatapathError> {
        let mut placement = self.placement();
        let reader = if tunnel.is_some() {
            HOME
        } else {
            placement.least_loaded()
        };
        let mut handles = Vec::with_capacity(self.threads.len());
        for thread in 0..self.threads.len() {
            handles.push(if thread == reader {
                None
            } else {
                Some(port.share().map_err(|error| DatapathError::Share {
                    port: name.to_string(),
                    error,
                })?)
            });
        }
        let (mut port, mut tunnel) = (Some(port), tunnel);
        for (thread, handle) in handles.into_iter().enumerate() {
            let Some(device) = handle.or_else(|| port.take()) else {
                continue;
            };
            let (owned, membership) = (name.to_string(), membership.clone());
            let reads = thread == reader;
            let tunnel = if thread == HOME { tunnel.take() } else { None };
            let security = security.clone();
            let added = self.threads[thread].call(move |dp| {
                dp.add_port(owned, device, membership, mtu, reads, tunnel, security)
            });
            if let Err(e) = added {
                for earlier in &self.threads[..thread] {
                    let owned = name.to_string();
                    let _ = earlier.call(move |dp| dp.remove_port(&owned));
                }
                return Err(e);
            }
        }
        placement.reader.insert(name.to_string(), reader);
        placement.load[reader] += 1;
        Ok(())
    }

    /// Stops forwarding port `name` and closes it on every thread.
    pub fn remove_port(&self, name: &str) -> Result<(), DatapathError> {
        let mut placement = self.placement();
        let owned = name.to_string();
        self.all(&placement, move |dp| dp.remove_port(&owned))?;
        if let Some(reader) = placement.reader.remove(name) {
            placement.load[reader] -= 1;
        }
        Ok(())
    }

    /// Closes port `name`'s device on every thread; the port stays, and
    /// what is sent to it is dropped as `port-down` (its device is gone).
    pub fn close_port(&self, name: &str) -> Result<(), DatapathError> {
        let placement = self.placement();
        let owned = name.to_string();
        self.all(&placement, move |dp| dp.close_port(&owned))
    }

    /// Adds a static FDB entry: `mac` lives behind `port` in network `net`.
    pub fn fdb_add(&self, net: &str, mac: MacAddr, port: &str) -> Result<(), DatapathError> {
        let order = self.placement();
        let (net, port) = (net.to_string(), port.to_string());
        self.all(&order, move |dp| dp.fdb_add(&net, mac, &port))
    }

    /// Replaces network `net`'s links (`(a, b, ports)` by port name) on
    /// every thread.
    pub fn set_links(&self, net: &str, links: Vec<NamedLink>) -> Result<(), DatapathError> {
        let order = self.placement();
        let net = net.to_string();
        self.all(&order, move |dp| dp.set_links(&net, &links))
    }

    /// Replaces network `net`'s firewall rules on every thread (bridges
    /// and gateway).
    pub fn set_rules(&self, net: &str, rules: Vec<firewall::Rule>) -> Result<(), DatapathError> {
        let order = self.placement();
        let net = net.to_string();
        self.all(&order, move |dp| dp.set_rules(&net, &rules))
    }

    /// The hits of network `net`'s rules by rule id: every thread's summed.
    pub fn rule_hits(&self, net: &str) -> Result<Vec<(firewall::RuleId, u64)>, DatapathError> {
        let order = self.placement();
        let net = net.to_string();
        let answers = self.each(&order, move |dp| dp.rule_hits(&net))?;
        let mut total: Vec<(firewall::RuleId, u64)> = Vec::new();
        for (rule, hits) in answers.into_iter().flatten() {
            match total.iter_mut().find(|(r, _)| *r == rule) {
                Some(entry) => entry.1 += hits,
                None => total.push((rule, hits)),
            }
        }
        Ok(total)
    }

    /// Deletes an FDB entry; false when no thread had it.
    pub fn fdb_del(&self, net: &str, mac: MacAddr) -> Result<bool, DatapathError> {
        let order = self.placement();
        let net = net.to_string();
        let found = self.each(&order, move |dp| dp.fdb_del(&net, mac))?;
        Ok(found.into_iter().any(|f| f))
    }

    /// Deletes the learned entries of network `net`, or of every network.
    pub fn fdb_flush(&self, net: Option<&str>) -> Result<(), DatapathError> {
        let order = self.placement();
        let net = net.map(str::to_string);
        self.all(&order, move |dp| dp.fdb_flush(net.as_deref()))
    }

    /// Attaches a capture to port `port` on every thread (each sends out of
    /// it, one reads it).
    pub fn capture(&self, port: &str, tap: CaptureTap) -> Result<(), DatapathError> {
        let order = self.placement();
        let port = port.to_string();
        self.all(&order, move |dp| dp.add_capture(&port, tap.clone()))
    }

    /// The counters of port `name`, or of every port: each thread's summed.
    pub fn port_stats(&self, name: Option<&str>) -> Result<Vec<PortReport>, DatapathError> {
        let order = self.placement();
        let name = name.map(str::to_string);
        let answers = self.each(&order, move |dp| dp.port_stats(name.as_deref()))?;
        Ok(sum_port_stats(answers))
    }

    /// The FDB of network `net`, or of every network: each thread's joined.
    pub fn fdb(&self, net: Option<&str>) -> Result<Vec<FdbRecord>, DatapathError> {
        let order = self.placement();
        let net = net.map(str::to_string);
        let answers = self.each(&order, move |dp| dp.fdb(net.as_deref()))?;
        Ok(join_fdb(answers))
    }

    /// The multicast table of network `net`, or of every network: the home
    /// thread's, which hears what every thread's ports reported.
    pub fn mdb(&self, net: Option<&str>) -> Result<Vec<MdbRecord>, DatapathError> {
        let order = self.placement();
        let net = net.map(str::to_string);
        self.home(&order, move |dp| dp.mdb(net.as_deref()))
    }

    /// Per-network figures: each thread's summed.
    pub fn net_figures(&self) -> Result<Vec<NetFigures>, DatapathError> {
        let order = self.placement();
        let answers = self.each(&order, |dp| dp.net_figures())?;
        Ok(sum_figures(answers))
    }

    /// Stops every thread's loop after this command.
    pub fn shutdown(&self) -> Result<(), DatapathError> {
        let order = self.placement();
        self.all(&order, |dp| dp.shutdown())
    }

    // ---- L3: the gateway, on the home thread --------------------------

    /// Attaches the uplink.
    pub fn set_uplink(
        &self,
        name: &str,
        port: Box<dyn Port>,
        config: UplinkConfig,
        mtu: u32,
    ) -> Result<(), DatapathError> {
        let order = self.placement();
        let name = name.to_string();
        self.home(&order, move |dp| dp.set_uplink(name, port, config, mtu))
    }

    /// Makes yardd's own host sockets the uplink: the gateway routes the
    /// outside to the relay, and answers DNS by relaying to `resolver`.
    pub fn set_host_uplink(&self, resolver: Option<Ipv4Addr>) -> Result<(), DatapathError> {
        let order = self.placement();
        self.home(&order, move |dp| dp.set_host_uplink(resolver))
    }

    /// Detaches the uplink (of any kind).
    pub fn remove_uplink(&self) -> Result<(), DatapathError> {
        let order = self.placement();
        self.home(&order, |dp| dp.remove_uplink())
    }

    /// Allows routing between networks `a` and `b`.
    pub fn connect(&self, a: &str, b: &str) -> Result<(), DatapathError> {
        let order = self.placement();
        let (a, b) = (a.to_string(), b.to_string());
        self.home(&order, move |dp| dp.connect(&a, &b))
    }

    /// Forbids routing between networks `a` and `b` again.
    pub fn disconnect(&self, a: &str, b: &str) -> Result<(), DatapathError> {
        let order = self.placement();
        let (a, b) = (a.to_string(), b.to_string());
        self.home(&order, move |dp| dp.disconnect(&a, &b))
    }

    /// Adds a published port rule.
    pub fn add_publish(&self, rule: PublishRule) -> Result<(), DatapathError> {
        let order = self.placement();
        self.home(&order, move |dp| dp.add_publish(rule))
    }

    /// Has the host uplink's relay serve a published rule's host sockets.
    pub fn listen_publish(&self, sockets: HostSockets) -> Result<(), DatapathError> {
        let order = self.placement();
        self.home(&order, move |dp| dp.listen_publish(sockets))
    }

    /// Has the relay close a published rule's host sockets.
    pub fn unlisten_publish(&self, id: RuleId) -> Result<(), DatapathError> {
        let order = self.placement();
        self.home(&order, move |dp| dp.unlisten_publish(id))
    }

    /// Removes a published port rule and its connections; how many
    /// connections went with it.
    pub fn remove_publish(&self, id: RuleId) -> Result<usize, DatapathError> {
        let order = self.placement();
        self.home(&order, move |dp| dp.remove_publish(id))
    }

    /// A container address went away: forgets its connections; how many.
    pub fn forget_address(&self, addr: Ipv4Addr) -> Result<usize, DatapathError> {
        let order = self.placement();
        self.home(&order, move |dp| dp.forget_address(addr))
    }

    /// A copy of up to `limit` of the connections `filter` selects, after
    /// `after` in listing order (see `yard_nat::conntrack::Conntrack::page`).
    pub fn conntrack(
        &self,
        filter: Filter,
        after: Option<Position>,
        limit: usize,
    ) -> Result<ConntrackSnapshot, DatapathError> {
        let order = self.placement();
        self.home(&order, move |dp| dp.conntrack(filter, after, limit))
    }

    /// Removes the connections `filter` selects; how many.
    pub fn conntrack_flush(&self, filter: Filter) -> Result<usize, DatapathError> {
        let order = self.placement();
        self.home(&order, move |dp| dp.conntrack_flush(filter))
    }

    /// What the pipeline would do with `frame`, an Ethernet frame arriving
    /// on port `in_port`, decision by decision; nothing changes (see
    /// [`crate::dataplane::trace`]). Runs on the home thread.
    pub fn trace(&self, in_port: &str, frame: Vec<u8>) -> Result<Trace, DatapathError> {
        let order = self.placement();
        let in_port = in_port.to_string();
        self.home(&order, move |dp| dp.trace(&in_port, &frame))
    }

    /// Conntrack and gateway counters.
    pub fn conntrack_stats(&self) -> Result<GatewayFigures, DatapathError> {
        let order = self.placement();
        self.home(&order, |dp| dp.conntrack_stats())
    }

    /// Changes the conntrack limit and timeouts: `edit` gets the
    /// configuration in force and changes it (a lower limit evicts at
    /// once). The configuration now in force.
    pub fn set_conntrack(
        &self,
        edit: impl FnOnce(&mut ConntrackConfig) + Send + 'static,
    ) -> Result<ConntrackConfig, DatapathError> {
        let order = self.placement();
        self.home(&order, move |dp| dp.set_conntrack(edit))
    }

    /// The uplink's counters, when there is an uplink.
    pub fn uplink_stats(&self) -> Result<Option<PortReport>, DatapathError> {
        let order = self.placement();
        self.home(&order, |dp| dp.uplink_stats())
    }

    /// Tunnel packets dropped before they reached a tunnel port, by reason.
    pub fn tunnel_drops(&self) -> Result<BTreeMap<&'static str, u64>, DatapathError> {
        let order = self.placement();
        self.home(&order, |dp| dp.tunnel_drops())
    }

    /// What software GRO made of the segments tunnels received.
    pub fn tunnel_gro(&self) -> Result<yard_ctl::api::TunnelGro, DatapathError> {
        let order = self.placement();
        self.home(&order, |dp| dp.tunnel_gro())
    }
}

/// Each thread's counters of the same ports, added up.
fn sum_port_stats(answers: Vec<Vec<PortReport>>) -> Vec<PortReport> {
    let mut total: Vec<PortReport> = Vec::new();
    for report in answers.into_iter().flatten() {
        match total.iter_mut().find(|t| t.name == report.name) {
            Some(t) => t.counters.add(&report.counters),
            None => total.push(report),
        }
    }
    total
}

/// The threads' FDB listings as one: an address two threads report (it
/// moved between them a moment ago) appears once, as last seen.
fn join_fdb(answers: Vec<Vec<FdbRecord>>) -> Vec<FdbRecord> {
    let mut all: Vec<FdbRecord> = answers.into_iter().flatten().collect();
    all.sort_by(|a, b| (&a.net, a.mac, a.age_secs).cmp(&(&b.net, b.mac, b.age_secs)));
    all.dedup_by(|later, kept| later.net == kept.net && later.mac == kept.mac);
    all.sort_by(|a, b| (&a.net, &a.port, a.mac).cmp(&(&b.net, &b.port, b.mac)));
    all
}

/// Each thread's figures of the same networks, added up.
fn sum_figures(answers: Vec<Vec<NetFigures>>) -> Vec<NetFigures> {
    let mut total: Vec<NetFigures> = Vec::new();
    for fig in answers.into_iter().flatten() {
        match total.iter_mut().find(|t| t.name == fig.name) {
            Some(t) => {
                t.fdb_entries += fig.fdb_entries;
                t.mac_moves += fig.mac_moves;
            }
            None => total.push(fig),
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::port::PortCounters;
    use crate::dataplane::verdict::DropReason;

    fn entry(mac: u8, port: &str, age: u64) -> FdbRecord {
        FdbRecord {
            net: "n".into(),
            mac: MacAddr([2, 0, 0, 0, 0, mac]),
            port: port.into(),
            is_static: false,
            age_secs: Some(age),
        }
    }

    #[test]
    fn fdb_listings_join_with_one_entry_per_address() {
        let joined = join_fdb(vec![
            vec![entry(1, "b", 5), entry(2, "a", 0)],
            vec![entry(1, "c", 1), entry(3, "a", 2)],
        ]);
        assert_eq!(
            joined,
            vec![entry(2, "a", 0), entry(3, "a", 2), entry(1, "c", 1)]
        );
    }

    #[test]
    fn counters_of_one_port_add_up() {
        let stats = |rx, drops: &[(DropReason, u64)]| {
            let mut counters = PortCounters {
                rx_packets: rx,
                rx_bytes: rx * 100,
                tx_packets: 1,
                tx_bytes: 100,
                ..PortCounters::default()
            };
            for &(reason, n) in drops {
                counters.drops[reason.index()] = n;
            }
            PortReport {
                name: "p".into(),
                counters,
            }
        };
        let total = sum_port_stats(vec![
            vec![stats(3, &[(DropReason::TooBig, 1)])],
            vec![stats(
                0,
                &[(DropReason::TooBig, 2), (DropReason::TxError, 1)],
            )],
        ]);
        let mut expected = PortCounters {
            rx_packets: 3,
            rx_bytes: 300,
            tx_packets: 2,
            tx_bytes: 200,
            ..PortCounters::default()
        };
        expected.drops[DropReason::TooBig.index()] = 3;
        expected.drops[DropReason::TxError.index()] = 1;
        assert_eq!(
            total,
            vec![PortReport {
                name: "p".into(),
                counters: expected,
            }]
        );
    }
}
