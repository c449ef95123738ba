//! The datapath threads: each a `mio` poll loop over the fds of the ports it
//! reads, draining each ready port in batches through its [`Bridge`], and
//! running the control thread's commands between batches.
//!
//! Each thread owns its bridge — ports, networks, FDBs — so the per-frame path
//! takes no lock. Control talks to the threads only through channels plus a
//! [`mio::Waker`] each, by calling the methods of [`DatapathHandle`]: one per
//! command, whose return type is the command's answer. The control thread
//! waits for that answer, so it knows when the command took effect. Readiness
//! is edge-triggered: a port is read until it has nothing more, at most
//! [`BATCH`] frames at a time; a port that still had frames after a batch is
//! served again in the next round before the loop sleeps, so one busy port
//! cannot starve the others. After a round that moved frames a thread
//! polls for a while before it sleeps, for a window that adapts to the
//! traffic, and not while other tasks wait for a CPU (`busy_poll`).
//!
//! With `yardd --threads N` there are N such threads. Each reads its share of
//! the ports and sends to any port through its own handle on it; thread
//! `mesh::HOME` also owns the gateway, the uplink, the tunnel sockets and
//! the host uplink's relay ([`HostRelay`]), whose host sockets it polls
//! with its ports.
//! Threads tell each other what they learn, and hand frames for the gateway
//! to the home thread, through the lock-free queues of `mesh`.
//!
//! Adding a command takes two functions: the thread side, a method of
//! [`Datapath`] in `commands.rs` that does the work on one thread and returns
//! `Result<Answer, DatapathError>`; and the control side, a method of
//! [`DatapathHandle`] in `handle.rs` that runs it where it belongs — on every
//! thread (`all`, or `each` and a merge of the answers) or on the home thread
//! alone (`home`). Commands travel as closures that send their own typed
//! answer, so there is no request or reply enum to extend.

mod busy_poll;
mod commands;
mod handle;
#[cfg(feature = "fuzzing")]
mod memory_pipeline;
mod mesh;
mod router;
#[cfg(test)]
mod tests;
mod trace;

pub use commands::{ConntrackSnapshot, GatewayFigures, NetFigures};
pub use handle::{DatapathError, DatapathHandle};
#[cfg(feature = "fuzzing")]
pub use memory_pipeline::MemoryPipeline;

use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use std::sync::Arc;

use crossbeam_channel::{Receiver, TryRecvError};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use std::net::Ipv4Addr;

use yard_nat::gateway::{Action, Gateway, IcmpErrors, Side};
use yard_wire::gro::TcpMerge;

use crate::dataplane::bridge::storm::FloodLimit;
use crate::dataplane::bridge::{Bridge, NetId};
use crate::dataplane::clock::Millis;
use crate::dataplane::frame::Frame;
use crate::dataplane::offload;
use crate::dataplane::overlay::Overlay;
use crate::dataplane::port::tunnel::TunnelSocket;
use crate::dataplane::port::{Port, PortCounters, PortId};
use crate::dataplane::verdict::DropReason;
use busy_poll::{BusyPoll, Contention};
use handle::Command;
use mesh::Mesh;
use router::Router;

use crate::relay::HostRelay;
use crate::sys::cpu_pressure::CpuPressure;

/// A [`Router`] over the datapath `$dp`'s gateway and ways out, borrowed
/// field by field so that a frame of its pool can be routed in place.
macro_rules! router {
    ($dp:expr) => {
        Router {
            gateway: &mut $dp.gateway,
            bridge: &mut $dp.bridge,
            uplink: &mut $dp.uplink,
            relay: &mut $dp.relay,
            pieces: &mut $dp.pieces,
        }
    };
}

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
    /// The host uplink's relay, on the home thread.
    relay: Option<HostRelay>,
    overlay: Overlay,
    /// Tunnel endpoints that had a full batch: serve them again.
    tunnels_again: Vec<usize>,
    /// The uplink had a full batch: serve it again before sleeping.
    uplink_again: bool,
    /// The relay had more waiting: serve it again before sleeping.
    relay_again: bool,
    /// Builds frames the gateway makes (ARP requests, ICMP errors).
    scratch: Frame,
    /// Builds the IP fragments of a routed packet too big for its way out.
    pieces: Frame,
    commands: Receiver<Command>,
    /// A shutdown command ran: the loop ends.
    stopping: bool,
    pool: Vec<Frame>,
    pending: Vec<PortId>,
    epoch: Instant,
    /// How long the loop keeps polling without sleeping after a round
    /// that moved frames ([`set_busy_poll`](Self::set_busy_poll)).
    busy_poll: BusyPoll,
    /// A frame arrived in this round: busy polling starts over.
    active: bool,
    /// The machine's CPU pressure, for busy polling (`None`: the kernel
    /// has none; the thread's preemptions stand in).
    pressure: Option<CpuPressure>,
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
            bridge.limit_floods(Some(FloodLimit::DEFAULT));
            if threads > 1 {
                bridge.share_learning(thread == mesh::HOME);
                bridge.share_flows(mesh.flow_link(thread));
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
                relay: None,
                overlay: Overlay::default(),
                tunnels_again: Vec::new(),
                uplink_again: false,
                relay_again: false,
                scratch: Frame::new(),
                pieces: Frame::new(),
                commands: rx,
                stopping: false,
                pool: (0..BATCH).map(|_| Frame::new()).collect(),
                pending: Vec::with_capacity(64),
                epoch,
                busy_poll: BusyPoll::new(Duration::ZERO),
                active: false,
                pressure: CpuPressure::open(),
            });
            handles.push(handle::ThreadHandle {
                commands: tx,
                waker,
            });
        }
        Ok((datapaths, DatapathHandle::new(handles)))
    }

    /// Lets the loop poll for up to `ceiling` after a round that moved
    /// frames, instead of sleeping in `epoll_wait` as soon as nothing is
    /// ready (`yardd --busy-poll-us`): the next frame of a conversation is
    /// then picked up without the wake-up of a sleeping thread, at the
    /// price of a busy CPU meanwhile. The window adapts to the gaps between
    /// busy rounds ([`busy_poll`]): it covers gaps up to `ceiling` and
    /// shrinks to nothing for traffic that comes at longer intervals, and
    /// an idle thread sleeps. Zero turns it off.
    pub fn set_busy_poll(&mut self, ceiling: Duration) {
        self.busy_poll = BusyPoll::new(ceiling);
        if !ceiling.is_zero() && self.pressure.is_none() && self.thread == mesh::HOME {
            tracing::info!(
                "busy polling yields to other tasks only when they preempt a datapath thread: the kernel has no CPU pressure information (/proc/pressure/cpu: built without CONFIG_PSI, or booted with psi=0)"
            );
        }
    }

    /// Whether others wait for a CPU: the machine's CPU pressure where the
    /// kernel has it, else this thread's preemptions.
    fn contention(&self) -> Option<Contention> {
        match &self.pressure {
            Some(pressure) => pressure.stalled().map(Contention::Stalled),
            None => crate::sys::thread_cpu::preemptions().map(Contention::Preempted),
        }
    }

    fn now(&self) -> Millis {
        Millis(self.epoch.elapsed().as_millis() as u64)
    }

    /// Runs until [`DatapathHandle::shutdown`] or until every handle is
    /// dropped.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        let mut next_expiry = Instant::now() + EXPIRE_EVERY;
        let mut ready: Vec<PortId> = Vec::with_capacity(256);
        // When the last poll returned: the start of this round.
        let mut woke = Instant::now();
        loop {
            // What the last round queued leaves before the loop can sleep.
            self.flush_ports();
            let now = Instant::now();
            if std::mem::take(&mut self.active) {
                self.busy_poll.busy_round(woke, now);
            }
            if self.busy_poll.contention_due(now) {
                if let Some(reading) = self.contention() {
                    self.busy_poll.contention(reading, now);
                }
            }
            let idle = self.pending.is_empty()
                && !self.relay_again
                && !self.uplink_again
                && self.tunnels_again.is_empty()
                && !self.handoffs_again;
            let busy = self.busy_poll.polling(now);
            let timeout = if idle && !busy {
                let tick = next_expiry.saturating_duration_since(Instant::now());
                // smoltcp's next timer (a retransmission, a delayed ACK).
                match self.relay.as_mut().and_then(|r| r.poll_delay()) {
                    Some(relay) => tick.min(relay),
                    None => tick,
                }
            } else {
                Duration::ZERO
            };
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            woke = Instant::now();
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
                if HostRelay::owns(event.token()) {
                    if let Some(relay) = self.relay.as_mut() {
                        let readable = event.is_readable() || event.is_read_closed();
                        let writable =
                            event.is_writable() || event.is_write_closed() || event.is_error();
                        relay.ready(event.token(), readable, writable);
                    }
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
            // What the host sockets and this round's packets to the host
            // asked of the relay, and what it made for containers.
            if self.relay.is_some() {
                self.serve_relay();
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
                    if let Some(relay) = self.relay.as_mut() {
                        for key in self.gateway.closed_host_flows() {
                            relay.close(&key);
                        }
                        relay.sweep();
                    }
                }
                self.flush_outbox(now);
                next_expiry = Instant::now() + EXPIRE_EVERY;
            }
        }
    }

    /// Hands the ports' and the uplink's queued frames to their devices
    /// ([`Port::flush`]), once per round, before the loop sleeps.
    fn flush_ports(&mut self) {
        self.bridge.flush_ports();
        if let Some(uplink) = self.uplink.as_mut() {
            if uplink.port.has_queued() {
                uplink.port.flush();
                uplink.port.take_drops(&mut uplink.counters);
            }
        }
    }

    /// Reads one batch from a port and forwards it.
    fn serve_port(&mut self, id: PortId) {
        let now = self.now();
        let (n, result) = self.bridge.receive(id, &mut self.pool);
        self.active |= n > 0;
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
            let mut router = router!(self);
            router.route(Side::Net(net.0), frame, now);
        } else if self.mesh.hand_over(self.thread, net, frame) {
            self.wake_home = true;
        } else {
            self.bridge.count_drop(in_port, DropReason::GatewayBusy);
        }
    }

    /// Applies what the other threads learned, their multicast snooping
    /// heard and their firewall rules allowed.
    fn hear_peers(&mut self) {
        let now = self.now();
        for news in self.mesh.heard(self.thread) {
            self.bridge.learn_from_peer(news, now);
        }
        for news in self.mesh.heard_memberships(self.thread) {
            self.bridge.hear_multicast(news, now);
        }
        self.bridge.hear_flows(now);
    }

    /// Tells the other threads what this one learned and its multicast
    /// snooping heard, and wakes the home
    /// thread if frames were handed to it.
    fn tell_peers(&mut self) {
        for news in self.bridge.drain_announcements() {
            self.mesh.announce(self.thread, news);
        }
        for news in self.bridge.drain_multicast_news() {
            self.mesh.announce_membership(self.thread, news);
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
            let mut router = router!(self);
            router.route(Side::Net(handoff.net.0), &mut handoff.frame, now);
            self.mesh.give_back(handoff);
            served += 1;
        }
        if served > 0 {
            self.flush_outbox(now);
            self.active = true;
        }
        self.handoffs_again = served == MOST;
    }

    /// On the home thread: gives it the host uplink's relay, whose sockets
    /// it polls with its own. Without it a host uplink drops every packet
    /// (`gw-host-relay-busy`).
    pub fn start_host_relay(&mut self) -> io::Result<()> {
        let registry = self.poll.registry().try_clone()?;
        self.relay = Some(HostRelay::new(registry));
        Ok(())
    }

    /// Runs the relay, then what it made: host sockets' reports into
    /// conntrack, packets for containers through the gateway, in place in
    /// the frames the relay built them in.
    fn serve_relay(&mut self) {
        let now = self.now();
        let Some(relay) = self.relay.as_mut() else {
            return;
        };
        relay.run();
        let mut served = false;
        while let Some(mut frame) = self.relay.as_mut().and_then(|r| r.next_frame()) {
            served = true;
            let offload = frame.offload;
            if let Action::Send { side, len } =
                self.gateway
                    .handle_from_host(frame.data_mut(), offload, now.0)
            {
                frame.truncate(len);
                let mut router = router!(self);
                router.send(side, &mut frame, now);
            }
            if let Some(relay) = self.relay.as_mut() {
                relay.give_back(frame);
            }
        }
        // After the packets: a published connection's entry is made by
        // its first one.
        let Some(relay) = self.relay.as_mut() else {
            return;
        };
        let gateway = &mut self.gateway;
        // Allocates only for a flow whose entry went before its socket
        // opened.
        let gone: Vec<_> = relay
            .take_opened()
            .filter(|&(key, local, remote)| !gateway.set_host_end(key, local, remote))
            .map(|(key, ..)| key)
            .collect();
        for key in gone {
            tracing::debug!(flow = ?key, "relayed flow gone before its socket opened");
            relay.close(&key);
        }
        if served {
            self.flush_outbox(now);
            self.active = true;
        }
        self.relay_again = self.relay.as_ref().is_some_and(|r| r.wants_again());
    }

    /// Reads one batch from the uplink and hands it to the gateway.
    fn serve_uplink(&mut self) {
        let now = self.now();
        let Some(uplink) = self.uplink.as_mut() else {
            return;
        };
        let (n, result) = uplink.port.recv_batch(&mut self.pool);
        self.active |= n > 0;
        let failed = result.err();
        for i in 0..n {
            let frame = &mut self.pool[i];
            if let Some(uplink) = self.uplink.as_mut() {
                uplink.counters.rx_packets += 1;
                uplink.counters.rx_bytes += frame.len() as u64;
            }
            let mut router = router!(self);
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
    /// from the tunnel port it belongs to, consecutive TCP segments of one
    /// flow merged into one GSO frame first (software GRO,
    /// [`offload::merge_start`]). The merge's head waits in `pool[0]` while
    /// the next packet is read into `pool[1]`; a packet that does not
    /// continue it sends the head on first, so no flow is reordered, and
    /// the batch's end sends it on: no merge outlives a batch.
    fn serve_tunnel_endpoint(&mut self, index: usize) {
        let now = self.now();
        let mut read = 0;
        let mut held: Option<(PortId, TcpMerge)> = None;
        while read < BATCH {
            let (head, next) = self.pool.split_at_mut(1);
            match self.overlay.receive(index, &mut next[0]) {
                Ok(None) => break,
                Ok(Some(None)) => read += 1,
                Ok(Some(Some(port))) => {
                    read += 1;
                    if let Some((head_port, merge)) = held.as_mut() {
                        if *head_port == port
                            && offload::merge_append(&mut head[0], merge, &next[0])
                        {
                            continue;
                        }
                    }
                    if let Some((head_port, merge)) = held.take() {
                        self.forward_merged(head_port, &merge, now);
                    }
                    match offload::merge_start(&self.pool[1]) {
                        Some(merge) => {
                            self.pool.swap(0, 1);
                            held = Some((port, merge));
                        }
                        None => self.forward_from_tunnel(port, 1, now),
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "tunnel socket read failed");
                    break;
                }
            }
        }
        if let Some((head_port, merge)) = held.take() {
            self.forward_merged(head_port, &merge, now);
        }
        self.flush_outbox(now);
        self.active |= read > 0;
        if read == BATCH {
            self.tunnels_again.push(index);
        }
    }

    /// Finishes the merge headed by `pool[0]`, counts it, and forwards it.
    fn forward_merged(&mut self, port: PortId, merge: &TcpMerge, now: Millis) {
        offload::merge_finish(&mut self.pool[0], merge);
        self.overlay.count_merge(merge.segments());
        self.forward_from_tunnel(port, 0, now);
    }

    /// Forwards `pool[slot]`, an inner frame of tunnel port `port`.
    fn forward_from_tunnel(&mut self, port: PortId, slot: usize, now: Millis) {
        if let Some(net) = self.bridge.process(port, &mut self.pool[slot], now) {
            self.pool_to_gateway(port, net, slot, now);
        }
    }

    /// Sends the frames the gateway made (slow path: ARP, ICMP errors,
    /// packets released after ARP resolution).
    fn flush_outbox(&mut self, now: Millis) {
        let Datapath {
            gateway,
            bridge,
            uplink,
            relay,
            scratch,
            pieces,
            ..
        } = self;
        let mut router = Router {
            gateway,
            bridge,
            uplink,
            relay,
            pieces,
        };
        while let Some(out) = router.gateway.next_outbox() {
            // A frame that waited for ARP comes back with its offload state:
            // it is sent, segmented or fragmented like any routed frame.
            scratch.fill(out.offload, &out.bytes);
            router.send(out.side, scratch, now);
        }
    }

    /// Runs queued commands; false when told to shut down.
    fn apply_commands(&mut self) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(command) => {
                    command(self);
                    if self.stopping {
                        return false;
                    }
                }
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn register(&self, fd: RawFd, id: PortId) -> io::Result<()> {
        self.poll
            .registry()
            .register(&mut SourceFd(&fd), Token(id.index()), Interest::READABLE)
    }
}
