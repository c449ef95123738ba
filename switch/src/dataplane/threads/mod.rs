//! The datapath threads: each a `mio` poll loop over the fds of the ports it
//! reads, draining each ready port in batches through its [`Bridge`], and
//! applying the control thread's [`Command`]s between batches.
//!
//! Each thread owns its bridge — ports, networks, FDBs — so the per-frame path
//! takes no lock. Control talks to the threads only through channels plus a
//! [`mio::Waker`] each ([`DatapathHandle`]); every command carries a reply
//! channel so the control thread knows when it took effect. Readiness is
//! edge-triggered: a port is read until it has nothing more, at most [`BATCH`]
//! frames at a time; a port that still had frames after a batch is served
//! again in the next round before the loop sleeps, so one busy port cannot
//! starve the others.
//!
//! With `yardd --threads N` there are N such threads. Each reads its share of
//! the ports and sends to any port through its own handle on it; thread
//! `mesh::HOME` also owns the gateway, the uplink and the tunnel sockets.
//! Threads tell each other what they learn, and hand frames for the gateway
//! to the home thread, through the lock-free queues of `mesh`.

mod handle;
mod mesh;
mod router;
#[cfg(test)]
mod tests;

pub use handle::{DatapathError, DatapathHandle};

use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use yard_ctl::api::{FdbEntry, NetworkSpec, PortStats};
use yard_ctl::MacAddr;

use std::net::Ipv4Addr;

use yard_ctl::api::{ConntrackEntry, ConntrackFilter, ConntrackSettings, ConntrackStats};
use yard_nat::conntrack::RuleId;
use yard_nat::gateway::{Gateway, IcmpErrors, PublishRule, Side, UplinkConfig};

use crate::control::nat_api;
use crate::dataplane::bridge::{Bridge, NetId};
use crate::dataplane::capture::CaptureTap;
use crate::dataplane::clock::Millis;
use crate::dataplane::frame::Frame;
use crate::dataplane::overlay::Overlay;
use crate::dataplane::port::tunnel::TunnelSocket;
use crate::dataplane::port::{Port, PortCounters, PortId};
use crate::dataplane::verdict::DropReason;
use mesh::Mesh;
use router::Router;

/// Frames read from one port before the loop moves to the next.
pub const BATCH: usize = 32;

/// How often learned FDB entries are aged out.
const EXPIRE_EVERY: Duration = Duration::from_secs(1);

const WAKER: Token = Token(usize::MAX);
const UPLINK: Token = Token(usize::MAX - 1);
/// Tunnel endpoint `i` polls as `Token(TUNNEL_BASE - i)`.
const TUNNEL_BASE: usize = usize::MAX - 2;

/// How a port joins networks, by name.
#[derive(Debug, Clone)]
pub enum Membership {
    /// One network, untagged.
    Access(String),
    /// Several networks, each tagged with its VLAN id.
    Trunk(Vec<String>),
}

/// What the datapath needs to deliver a tunnel's received packets to it.
pub struct TunnelBinding {
    /// The socket it shares with other tunnels of the same local endpoint.
    pub socket: Arc<TunnelSocket>,
    /// The remote host.
    pub remote: Ipv4Addr,
    /// The GRE key.
    pub key: Option<u32>,
    /// Its overlay MTU.
    pub overlay_mtu: u32,
}

/// Per-network figures for `net ls` and `net inspect`.
#[derive(Debug, Clone)]
pub struct NetFigures {
    /// Network name.
    pub name: String,
    /// Live FDB entries.
    pub fdb_entries: usize,
    /// MAC moves so far.
    pub mac_moves: u64,
}

/// What the control thread asks of the datapath.
pub enum Op {
    /// Add a network.
    AddNetwork(NetworkSpec),
    /// Remove a network without ports.
    RemoveNetwork(String),
    /// Start forwarding a port's frames.
    AddPort {
        /// Port name.
        name: String,
        /// The device.
        port: Box<dyn Port>,
        /// Its networks.
        membership: Membership,
        /// Its MTU.
        mtu: u32,
        /// This thread reads the port (polls its fd); other threads only
        /// send through their handles on it.
        reads: bool,
        /// For a tunnel port: how its received packets find it.
        tunnel: Option<TunnelBinding>,
    },
    /// Stop forwarding and close a port.
    RemovePort(String),
    /// Add a static FDB entry.
    FdbAdd {
        /// Network.
        net: String,
        /// Address.
        mac: MacAddr,
        /// Port.
        port: String,
    },
    /// Delete an FDB entry.
    FdbDel {
        /// Network.
        net: String,
        /// Address.
        mac: MacAddr,
    },
    /// Delete learned entries.
    FdbFlush(Option<String>),
    /// Attach a capture to a port.
    Capture {
        /// Port.
        port: String,
        /// Where copies go.
        tap: CaptureTap,
    },
    /// Read counters.
    PortStats(Option<String>),
    /// Read the FDB.
    Fdb(Option<String>),
    /// Read per-network figures.
    NetFigures,
    /// Attach the uplink.
    SetUplink {
        /// Uplink name.
        name: String,
        /// The device.
        port: Box<dyn Port>,
        /// Its address, MAC and next hop.
        config: UplinkConfig,
        /// The interface's MTU.
        mtu: u32,
    },
    /// Detach the uplink.
    RemoveUplink,
    /// Allow routing between two networks.
    Connect(String, String),
    /// Forbid it again.
    Disconnect(String, String),
    /// Add a published port rule.
    PublishAdd(PublishRule),
    /// Remove a published port rule and its connections.
    PublishRemove(RuleId),
    /// A container address went away: forget its connections.
    ForgetAddress(Ipv4Addr),
    /// List connections.
    ConntrackLs(ConntrackFilter),
    /// Remove connections.
    ConntrackFlush(ConntrackFilter),
    /// Conntrack and gateway counters.
    ConntrackStats,
    /// Change the conntrack limit and timeouts.
    ConntrackSet(ConntrackSettings),
    /// Uplink counters.
    UplinkStats,
    /// Tunnel packets dropped before demultiplexing, by reason.
    TunnelDrops,
    /// Stop the loop.
    Shutdown,
}

/// What the datapath answers.
#[derive(Debug)]
pub enum Answer {
    /// Done.
    Done,
    /// `fdb del` found nothing to delete.
    NotFound,
    /// Counters.
    PortStats(Vec<PortStats>),
    /// FDB entries.
    Fdb(Vec<FdbEntry>),
    /// Network figures.
    NetFigures(Vec<NetFigures>),
    /// Connections.
    Conntrack(Vec<ConntrackEntry>),
    /// How many entries were removed.
    Removed(u64),
    /// Counters.
    ConntrackStats(ConntrackStats),
    /// Settings in force.
    ConntrackSettings(ConntrackSettings),
    /// Uplink counters, if there is an uplink.
    UplinkStats(Option<yard_ctl::api::PortStats>),
    /// Tunnel drops by reason.
    TunnelDrops(std::collections::BTreeMap<String, u64>),
}

/// A command with its reply channel.
pub struct Command {
    /// What to do.
    pub op: Op,
    /// Where the result goes.
    pub reply: Sender<Result<Answer, DatapathError>>,
}

/// The uplink port: outside the bridge, talking only to the gateway.
struct Uplink {
    name: String,
    port: Box<dyn Port>,
    mtu: u32,
    counters: PortCounters,
}

/// One datapath thread: poll loop, bridge, gateway and frame pool.
pub struct Datapath {
    /// This thread's index; [`mesh::HOME`] serves the gateway.
    thread: usize,
    mesh: Arc<Mesh>,
    /// Frames were handed to the home thread in this round: wake it.
    wake_home: bool,
    /// The home thread left handed-over frames waiting: serve them again.
    handoffs_again: bool,
    poll: Poll,
    bridge: Bridge,
    gateway: Gateway,
    uplink: Option<Uplink>,
    overlay: Overlay,
    /// Tunnel endpoints that had a full batch: serve them again.
    tunnels_again: Vec<usize>,
    /// The uplink had a full batch: serve it again before sleeping.
    uplink_again: bool,
    /// Builds frames the gateway makes (ARP requests, ICMP errors).
    scratch: Frame,
    /// Builds the IP fragments of a routed packet too big for its way out.
    pieces: Frame,
    commands: Receiver<Command>,
    pool: Vec<Frame>,
    pending: Vec<PortId>,
    epoch: Instant,
}

impl Datapath {
    /// Creates `threads` datapath threads (at least one) and the handle the
    /// control thread uses; run each with [`run`](Self::run) on a thread of
    /// its own.
    pub fn new(port_mac_limit: u32, threads: usize) -> io::Result<(Vec<Datapath>, DatapathHandle)> {
        let threads = threads.max(1);
        let mut polls = Vec::with_capacity(threads);
        let mut wakers = Vec::with_capacity(threads);
        for _ in 0..threads {
            let poll = Poll::new()?;
            wakers.push(Arc::new(Waker::new(poll.registry(), WAKER)?));
            polls.push(poll);
        }
        let mesh = Arc::new(Mesh::new(wakers.clone()));
        let epoch = Instant::now();
        // One ICMP error rate limit for the gateway and every bridge.
        let icmp_errors = Arc::new(IcmpErrors::new());
        let mut datapaths = Vec::with_capacity(threads);
        let mut handles = Vec::with_capacity(threads);
        for (thread, (poll, waker)) in polls.into_iter().zip(wakers).enumerate() {
            let (tx, rx) = crossbeam_channel::unbounded();
            let mut bridge = Bridge::new(port_mac_limit);
            bridge.share_icmp_errors(icmp_errors.clone());
            if threads > 1 {
                bridge.share_learning(thread == mesh::HOME);
            }
            let mut gateway = Gateway::new(yard_nat::conntrack::Config::default());
            gateway.share_icmp_errors(icmp_errors.clone());
            datapaths.push(Datapath {
                thread,
                mesh: mesh.clone(),
                wake_home: false,
                handoffs_again: false,
                poll,
                bridge,
                gateway,
                uplink: None,
                overlay: Overlay::default(),
                tunnels_again: Vec::new(),
                uplink_again: false,
                scratch: Frame::new(),
                pieces: Frame::new(),
                commands: rx,
                pool: (0..BATCH).map(|_| Frame::new()).collect(),
                pending: Vec::with_capacity(64),
                epoch,
            });
            handles.push(handle::ThreadHandle {
                commands: tx,
                waker,
            });
        }
        Ok((datapaths, DatapathHandle::new(handles)))
    }

    fn now(&self) -> Millis {
        Millis(self.epoch.elapsed().as_millis() as u64)
    }

    /// Runs until [`Op::Shutdown`] or until every handle is dropped.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        let mut next_expiry = Instant::now() + EXPIRE_EVERY;
        let mut ready: Vec<PortId> = Vec::with_capacity(256);
        loop {
            let idle = self.pending.is_empty()
                && !self.uplink_again
                && self.tunnels_again.is_empty()
                && !self.handoffs_again;
            let timeout = if idle {
                next_expiry.saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let shared = self.mesh.threads() > 1;
            if shared {
                self.hear_peers();
                if self.thread == mesh::HOME {
                    self.serve_handoffs();
                }
            }
            ready.clear();
            ready.append(&mut self.pending);
            for event in events.iter() {
                if event.token() == WAKER {
                    continue;
                }
                if event.token() == UPLINK {
                    self.serve_uplink();
                    continue;
                }
                if event.token().0 > TUNNEL_BASE - 4096 {
                    self.serve_tunnel_endpoint(TUNNEL_BASE - event.token().0);
                    continue;
                }
                let id = PortId(event.token().0 as u32);
                if !ready.contains(&id) {
                    ready.push(id);
                }
            }
            for &id in &ready {
                self.serve_port(id);
            }
            if std::mem::take(&mut self.uplink_again) {
                self.serve_uplink();
            }
            for index in std::mem::take(&mut self.tunnels_again) {
                self.serve_tunnel_endpoint(index);
            }
            if shared {
                self.tell_peers();
            }
            if !self.apply_commands() {
                return Ok(());
            }
            if Instant::now() >= next_expiry {
                let now = self.now();
                self.bridge.expire(now);
                if self.thread == mesh::HOME {
                    self.gateway.tick(now.0);
                }
                self.flush_outbox(now);
                next_expiry = Instant::now() + EXPIRE_EVERY;
            }
        }
    }

    /// Reads one batch from a port and forwards it.
    fn serve_port(&mut self, id: PortId) {
        let now = self.now();
        let (n, result) = self.bridge.receive(id, &mut self.pool);
        for slot in 0..n {
            if let Some(net) = self.bridge.process(id, &mut self.pool[slot], now) {
                self.pool_to_gateway(id, net, slot, now);
            }
        }
        if n > 0 {
            self.flush_outbox(now);
        }
        match result {
            Ok(()) if n == BATCH => self.pending.push(id),
            Ok(()) => {}
            Err(e) => {
                // A port whose device vanished (e.g. its namespace was deleted)
                // reports an error on every read; take it out of the poll set so
                // it cannot spin the loop, and leave it for `port rm`.
                let name = self
                    .bridge
                    .port(id)
                    .map(|p| p.name.clone())
                    .unwrap_or_default();
                tracing::warn!(port = %name, error = %e, "port read failed; port stops forwarding");
                if let Some(fd) = self.bridge.port(id).and_then(|p| p.port.raw_fd()) {
                    let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
                }
            }
        }
    }

    /// Gives `self.pool[slot]`, which arrived on `in_port` in network `net`,
    /// to the gateway: at once on the home thread, else handed over to it.
    fn pool_to_gateway(&mut self, in_port: PortId, net: NetId, slot: usize, now: Millis) {
        let frame = &mut self.pool[slot];
        if self.thread == mesh::HOME {
            let mut router = Router {
                gateway: &mut self.gateway,
                bridge: &mut self.bridge,
                uplink: &mut self.uplink,
                pieces: &mut self.pieces,
            };
            router.route(Side::Net(net.0), frame, now);
        } else if self.mesh.hand_over(self.thread, net, frame) {
            self.wake_home = true;
        } else {
            self.bridge.count_drop(in_port, DropReason::GatewayBusy);
        }
    }

    /// Applies what the other threads learned.
    fn hear_peers(&mut self) {
        let now = self.now();
        for news in self.mesh.heard(self.thread) {
            self.bridge.learn_from_peer(news, now);
        }
    }

    /// Tells the other threads what this one learned, and wakes the home
    /// thread if frames were handed to it.
    fn tell_peers(&mut self) {
        for news in self.bridge.drain_announcements() {
            self.mesh.announce(self.thread, news);
        }
        if std::mem::take(&mut self.wake_home) {
            self.mesh.wake(mesh::HOME);
        }
    }

    /// On the home thread: runs frames other threads handed over through the
    /// gateway, a few batches at a time.
    fn serve_handoffs(&mut self) {
        const MOST: usize = 4 * BATCH;
        let now = self.now();
        let mut served = 0;
        while served < MOST {
            let Some(mut handoff) = self.mesh.next_handoff() else {
                break;
            };
            let mut router = Router {
                gateway: &mut self.gateway,
                bridge: &mut self.bridge,
                uplink: &mut self.uplink,
                pieces: &mut self.pieces,
            };
            router.route(Side::Net(handoff.net.0), &mut handoff.frame, now);
            self.mesh.give_back(handoff);
            served += 1;
        }
        if served > 0 {
            self.flush_outbox(now);
        }
        self.handoffs_again = served == MOST;
    }

    /// Reads one batch from the uplink and hands it to the gateway.
    fn serve_uplink(&mut self) {
        let now = self.now();
        let Some(uplink) = self.uplink.as_mut() else {
            return;
        };
        let (n, result) = uplink.port.recv_batch(&mut self.pool);
        let failed = result.err();
        for i in 0..n {
            let frame = &mut self.pool[i];
            if let Some(uplink) = self.uplink.as_mut() {
                uplink.counters.rx_packets += 1;
                uplink.counters.rx_bytes += frame.len() as u64;
            }
            let mut router = Router {
                gateway: &mut self.gateway,
                bridge: &mut self.bridge,
                uplink: &mut self.uplink,
                pieces: &mut self.pieces,
            };
            router.route(Side::Uplink, frame, now);
        }
        self.flush_outbox(now);
        // More may be waiting: edge-triggered polling will not say so again.
        self.uplink_again = n == BATCH;
        if let Some(e) = failed {
            tracing::warn!(error = %e, "uplink read failed; the uplink stops forwarding");
            if let Some(fd) = self.uplink.as_ref().and_then(|u| u.port.raw_fd()) {
                let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
            }
        }
    }

    /// Reads one batch from a tunnel endpoint and forwards each inner frame
    /// from the tunnel port it belongs to.
    fn serve_tunnel_endpoint(&mut self, index: usize) {
        let now = self.now();
        let mut read = 0;
        while read < BATCH {
            let frame = &mut self.pool[0];
            match self.overlay.receive(index, frame) {
                Ok(None) => break,
                Ok(Some(None)) => read += 1,
                Ok(Some(Some(port))) => {
                    read += 1;
                    if let Some(net) = self.bridge.process(port, frame, now) {
                        self.pool_to_gateway(port, net, 0, now);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "tunnel socket read failed");
                    break;
                }
            }
        }
        self.flush_outbox(now);
        if read == BATCH {
            self.tunnels_again.push(index);
        }
    }

    /// Sends the frames the gateway made (slow path: ARP, ICMP errors,
    /// packets released after ARP resolution).
    fn flush_outbox(&mut self, now: Millis) {
        let Datapath {
            gateway,
            bridge,
            uplink,
            scratch,
            pieces,
            ..
        } = self;
        let mut router = Router {
            gateway,
            bridge,
            uplink,
            pieces,
        };
        while let Some(out) = router.gateway.next_outbox() {
            // A frame that waited for ARP comes back with its offload state:
            // it is sent, segmented or fragmented like any routed frame.
            scratch.fill(out.offload, &out.bytes);
            router.send(out.side, scratch, now);
        }
    }

    /// Applies queued commands; false when told to shut down.
    fn apply_commands(&mut self) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(Command {
                    op: Op::Shutdown,
                    reply,
                }) => {
                    let _ = reply.send(Ok(Answer::Done));
                    return false;
                }
                Ok(Command { op, reply }) => {
                    let _ = reply.send(self.apply(op));
                }
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn apply(&mut self, op: Op) -> Result<Answer, DatapathError> {
        let now = self.now();
        match op {
            Op::AddNetwork(spec) => {
                let id = self.bridge.add_network(&spec)?;
                if let Some(config) = nat_api::net_config(id.0, &spec) {
                    self.bridge
                        .set_gateway_mac(id, Some(yard_ctl::MacAddr(config.mac)));
                    self.gateway.set_network(config);
                }
                Ok(Answer::Done)
            }
            Op::RemoveNetwork(name) => {
                let id = self.bridge.net_id(&name)?;
                self.bridge.remove_network(&name)?;
                self.gateway.remove_network(id.0);
                Ok(Answer::Done)
            }
            Op::AddPort {
                name,
                port,
                membership,
                mtu,
                reads,
                tunnel,
            } => {
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
                    if let Some(index) =
                        self.overlay
                            .add(binding.socket, binding.remote, binding.key, id)
                    {
                        let token = Token(TUNNEL_BASE - index);
                        if let Err(e) = self.poll.registry().register(
                            &mut SourceFd(&fd),
                            token,
                            Interest::READABLE,
                        ) {
                            let _ = self.bridge.remove_port(&name);
                            self.overlay.remove_port(id);
                            return Err(DatapathError::Gateway(format!(
                                "cannot poll tunnel {name}: {e}"
                            )));
                        }
                        self.tunnels_again.push(index);
                    }
                }
                Ok(Answer::Done)
            }
            Op::RemovePort(name) => {
                let (id, slot) = self.bridge.remove_port(&name)?;
                if let Some(fd) = slot.port.raw_fd() {
                    let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
                }
                self.pending.retain(|p| *p != id);
                if let Some(fd) = self.overlay.remove_port(id) {
                    let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
                }
                drop(slot);
                Ok(Answer::Done)
            }
            Op::FdbAdd { net, mac, port } => {
                self.bridge.fdb_add(&net, mac, &port)?;
                Ok(Answer::Done)
            }
            Op::FdbDel { net, mac } => {
                let found = self.bridge.fdb_del(&net, &mac)?;
                Ok(if found {
                    Answer::Done
                } else {
                    Answer::NotFound
                })
            }
            Op::FdbFlush(net) => {
                self.bridge.fdb_flush(net.as_deref())?;
                Ok(Answer::Done)
            }
            Op::Capture { port, tap } => {
                self.bridge.add_capture(&port, tap)?;
                Ok(Answer::Done)
            }
            Op::PortStats(name) => Ok(Answer::PortStats(self.bridge.port_stats(name.as_deref())?)),
            Op::Fdb(net) => Ok(Answer::Fdb(self.bridge.fdb_entries(net.as_deref(), now)?)),
            Op::SetUplink {
                name,
                port,
                config,
                mtu,
            } => {
                if let Some(fd) = port.raw_fd() {
                    self.poll
                        .registry()
                        .register(&mut SourceFd(&fd), UPLINK, Interest::READABLE)
                        .map_err(|e| {
                            DatapathError::Gateway(format!("cannot poll uplink {name}: {e}"))
                        })?;
                }
                self.gateway.set_uplink(Some(config));
                self.uplink = Some(Uplink {
                    name,
                    port,
                    mtu,
                    counters: PortCounters::default(),
                });
                self.uplink_again = true;
                Ok(Answer::Done)
            }
            Op::RemoveUplink => {
                if let Some(uplink) = self.uplink.take() {
                    if let Some(fd) = uplink.port.raw_fd() {
                        let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
                    }
                }
                self.gateway.set_uplink(None);
                Ok(Answer::Done)
            }
            Op::Connect(a, b) => {
                let (a, b) = (self.bridge.net_id(&a)?, self.bridge.net_id(&b)?);
                self.gateway.connect(a.0, b.0);
                Ok(Answer::Done)
            }
            Op::Disconnect(a, b) => {
                let (a, b) = (self.bridge.net_id(&a)?, self.bridge.net_id(&b)?);
                self.gateway.disconnect(a.0, b.0);
                Ok(Answer::Done)
            }
            Op::PublishAdd(rule) => {
                self.gateway
                    .add_publish(rule)
                    .map_err(|e| DatapathError::Gateway(e.to_string()))?;
                Ok(Answer::Done)
            }
            Op::PublishRemove(id) => Ok(Answer::Removed(self.gateway.remove_publish(id) as u64)),
            Op::ForgetAddress(addr) => {
                Ok(Answer::Removed(self.gateway.forget_address(addr) as u64))
            }
            Op::ConntrackLs(filter) => {
                let filter = nat_api::filter_of(&filter).map_err(DatapathError::Gateway)?;
                let entries = self
                    .gateway
                    .conntrack()
                    .iter(now.0)
                    .filter(|(_, e)| filter.matches(e))
                    .map(|(_, e)| nat_api::entry_info(e, now.0))
                    .collect();
                Ok(Answer::Conntrack(entries))
            }
            Op::ConntrackFlush(filter) => {
                let filter = nat_api::filter_of(&filter).map_err(DatapathError::Gateway)?;
                Ok(Answer::Removed(
                    self.gateway.conntrack_mut().flush(&filter) as u64
                ))
            }
            Op::ConntrackStats => Ok(Answer::ConntrackStats(nat_api::stats(&self.gateway))),
            Op::ConntrackSet(settings) => {
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
                Ok(Answer::ConntrackSettings(nat_api::settings(
                    ct.config().max_entries,
                    &ct.config().timeouts,
                )))
            }
            Op::TunnelDrops => Ok(Answer::TunnelDrops(
                self.overlay
                    .drops
                    .iter()
                    .map(|(r, n)| (r.to_string(), *n))
                    .collect(),
            )),
            Op::UplinkStats => Ok(Answer::UplinkStats(self.uplink.as_ref().map(|u| {
                yard_ctl::api::PortStats {
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
                }
            }))),
            Op::NetFigures => Ok(Answer::NetFigures(
                self.bridge
                    .networks()
                    .map(|n| NetFigures {
                        name: n.name.clone(),
                        fdb_entries: self.bridge.reported_fdb_len(n, now),
                        mac_moves: n.fdb.mac_moves,
                    })
                    .collect(),
            )),
            Op::Shutdown => Ok(Answer::Done),
        }
    }

    fn register(&self, fd: RawFd, id: PortId) -> io::Result<()> {
        self.poll
            .registry()
            .register(&mut SourceFd(&fd), Token(id.index()), Interest::READABLE)
    }
}
