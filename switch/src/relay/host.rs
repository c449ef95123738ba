//! The relay's host sockets, on the home datapath thread: every socket
//! of the host uplink, made in yardd's own network namespace as any
//! program's, polled by the home thread's own `mio` loop.
//!
//! Contract: TCP is [`super::tcp`]'s (one host stream per connection); a
//! UDP flow (container source, destination) gets one non-blocking UDP
//! socket connected to the destination; an ICMP echo flow (container,
//! destination, identifier) one unprivileged ping socket. The first packet
//! opens the socket and the home thread hears its local and remote address
//! ([`HostRelay::take_opened`]); what a socket reads goes back as a packet
//! from the destination to the container, built in a frame of
//! [`super::frames`] that the home thread runs through the gateway
//! ([`HostRelay::next_frame`]). A flow's socket closes when its conntrack
//! entry goes ([`HostRelay::close`]), or after [`IDLE_BACKSTOP`] without
//! traffic. At most [`MAX_FLOWS`] sockets are open; past that a new flow's
//! packets are dropped and counted. Nothing here blocks: a socket that
//! still has something to read when its batch ends, or when every frame is
//! queued, is served again in the home thread's next round
//! ([`HostRelay::wants_again`]). Published ports' listening sockets are
//! [`super::published`]'s; what they accept or read enters here too.
//!
//! The host sockets poll as tokens of their own range ([`HostRelay::owns`])
//! in the home thread's `mio` registry, whose clone the relay keeps.
//!
//! A panic in the TCP relay — a bug of ours or of smoltcp's, which a
//! container reaches with the segments it sends — is contained: every
//! relayed TCP connection is dropped (the host streams close; a container's
//! next segment of one is answered with RST), a new TCP relay takes over,
//! and the switch, the NAT and the relay's UDP and ICMP go on
//! (`relay-tcp-restarts` in `conntrack stats`, and an error in the log).

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};
use yard_nat::flow::{FlowKey, Proto};

use super::flows::{self, Request};
use super::frames::Frames;
use super::published::{self, Listeners, Ready};
use super::tcp::TcpRelay;
use super::Listening;
use crate::dataplane::frame::Frame;
use crate::sys;

/// The most host sockets open at once.
pub const MAX_FLOWS: usize = 16_384;
/// A socket idle this long is closed even if no close arrived.
pub const IDLE_BACKSTOP: Duration = Duration::from_secs(3600);
/// How often idle sockets are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// Datagrams read from one socket per readiness before others are served.
const READ_BATCH: usize = 64;
/// The first of the host sockets' tokens; they stay below
/// [`LAST_TOKEN`], far from the ports' (their ids) and the home thread's
/// own (at the top of the range).
const FIRST_TOKEN: usize = 1 << 32;
const LAST_TOKEN: usize = 1 << 62;

/// The relay's counters.
#[derive(Debug, Default, Clone)]
pub struct RelayCounters {
    /// Host sockets opened.
    pub opened: u64,
    /// Flows refused: [`MAX_FLOWS`] sockets were open.
    pub flows_full: u64,
    /// A socket could not be made or connected.
    pub socket_errors: u64,
    /// ICMP echo flows that could not have a ping socket (the group is not
    /// in `net.ipv4.ping_group_range`).
    pub icmp_unavailable: u64,
    /// Packets the relay does not carry (fragments, other ICMP).
    pub unsupported: u64,
    /// TCP connections whose host connect failed (answered with RST).
    pub tcp_refused: u64,
    /// TCP connections refused: [`super::tcp::MAX_CONNECTIONS`] were open.
    pub tcp_full: u64,
    /// TCP connections open now.
    pub tcp_open: u64,
    /// Connections accepted on published TCP ports.
    pub published_tcp: u64,
    /// Datagrams read on published UDP ports.
    pub published_udp: u64,
    /// Times the TCP relay failed (a bug) and was started again, dropping
    /// its connections.
    pub tcp_restarts: u64,
}

impl RelayCounters {
    /// The counters by the names `conntrack stats` shows.
    pub fn by_name(&self) -> [(&'static str, u64); 11] {
        [
            ("relay-sockets-opened", self.opened),
            ("relay-flows-full", self.flows_full),
            ("relay-socket-errors", self.socket_errors),
            ("relay-icmp-unavailable", self.icmp_unavailable),
            ("relay-unsupported", self.unsupported),
            ("relay-tcp-refused", self.tcp_refused),
            ("relay-tcp-full", self.tcp_full),
            ("relay-tcp-open", self.tcp_open),
            ("relay-published-tcp", self.published_tcp),
            ("relay-published-udp", self.published_udp),
            ("relay-tcp-restarts", self.tcp_restarts),
        ]
    }
}

/// One host socket.
struct Flow {
    key: FlowKey,
    socket: UdpSocket,
    last_used: Instant,
}

/// The relay's state, driven by the home datapath thread.
pub struct HostRelay {
    registry: Registry,
    listeners: Listeners,
    frames: Frames,
    flows: HashMap<FlowKey, Token>,
    sockets: HashMap<Token, Flow>,
    next_token: usize,
    tcp: TcpRelay,
    counters: RelayCounters,
    /// Host sockets opened since the home thread last asked: (flow,
    /// local, remote).
    opened: Vec<(FlowKey, SocketAddrV4, SocketAddrV4)>,
    /// Sockets to serve again in the next round (a full batch, or no
    /// frame left to read into).
    again: Vec<Token>,
    /// smoltcp stopped for want of a frame: run it again next round.
    tcp_starved: bool,
    next_sweep: Instant,
}

impl HostRelay {
    /// A relay whose sockets poll in `registry` (a clone of the home
    /// thread's).
    pub fn new(registry: Registry) -> HostRelay {
        HostRelay {
            registry,
            listeners: Listeners::default(),
            frames: Frames::default(),
            flows: HashMap::new(),
            sockets: HashMap::new(),
            next_token: FIRST_TOKEN,
            tcp: TcpRelay::new(),
            counters: RelayCounters::default(),
            opened: Vec::new(),
            again: Vec::new(),
            tcp_starved: false,
            next_sweep: Instant::now() + SWEEP_EVERY,
        }
    }

    /// The counters.
    pub fn counters(&self) -> &RelayCounters {
        &self.counters
    }

    /// Whether `token` is one of the relay's host sockets'.
    pub fn owns(token: Token) -> bool {
        (FIRST_TOKEN..LAST_TOKEN).contains(&token.0)
    }

    /// Serves host socket `token`, ready to read or write.
    pub fn ready(&mut self, token: Token, readable: bool, writable: bool) {
        if let Some(ready) = self.listeners.ready(token) {
            match ready {
                Ready::Tcp(_) => self.accept(token),
                Ready::Udp(..) => self.serve_published_udp(token),
            }
        } else if self.tcp.owns(token) {
            self.guarded(|tcp, _, frames| tcp.host_ready(token, (readable, writable), frames));
        } else {
            self.serve_socket(token);
        }
    }

    /// Runs the TCP relay and serves again the sockets that asked to be;
    /// what that made for containers is in [`HostRelay::next_frame`].
    pub fn run(&mut self) {
        for token in std::mem::take(&mut self.again) {
            self.ready(token, true, false);
        }
        if self.tcp.is_idle() {
            // The home thread calls this every round: without TCP to
            // relay, smoltcp is not run.
            self.tcp_starved = false;
            return;
        }
        self.guarded(|tcp, _, frames| tcp.poll(frames));
        self.tcp_starved = !self.frames.has_room();
        let events = self.tcp.take_events();
        self.opened.extend(events.opened);
        self.counters.tcp_refused += events.refused;
        self.counters.tcp_full += events.full;
        self.counters.tcp_open = self.tcp.len() as u64;
    }

    /// Whether the relay has more to do at once: the home thread should
    /// not sleep.
    pub fn wants_again(&self) -> bool {
        !self.again.is_empty() || self.tcp_starved || self.frames.any_queued()
    }

    /// When the TCP relay next needs [`HostRelay::run`] (retransmissions,
    /// delayed ACKs), from now.
    pub fn poll_delay(&mut self) -> Option<Duration> {
        if self.tcp.is_idle() {
            return None;
        }
        self.guarded(|tcp, _, _| tcp.poll_delay()).flatten()
    }

    /// The oldest packet for a container: an IPv4 packet after an Ethernet
    /// header's room ([`flows::HEADROOM`]), with its offload state (a TCP
    /// segment longer than the container's MSS is a TSO frame with a
    /// partial checksum). Give it back with [`HostRelay::give_back`].
    pub fn next_frame(&mut self) -> Option<Frame> {
        self.frames.oldest()
    }

    /// Takes back a frame [`HostRelay::next_frame`] gave.
    pub fn give_back(&mut self, frame: Frame) {
        self.frames.give_back(frame);
    }

    /// The host sockets opened since the last call: (flow, local, remote).
    pub fn take_opened(&mut self) -> std::vec::Drain<'_, (FlowKey, SocketAddrV4, SocketAddrV4)> {
        self.opened.drain(..)
    }

    /// Closes flow `key`'s socket (its conntrack entry went).
    pub fn close(&mut self, key: &FlowKey) {
        if key.proto == Proto::Tcp {
            self.guarded(|tcp, _, _| tcp.close(key));
            return;
        }
        if let Some(token) = self.flows.remove(key) {
            if let Some(mut flow) = self.sockets.remove(&token) {
                let _ = self.registry.deregister(&mut flow.socket);
            }
        }
    }

    /// Closes the sockets idle for [`IDLE_BACKSTOP`], once a minute.
    pub fn sweep(&mut self) {
        if Instant::now() < self.next_sweep {
            return;
        }
        self.next_sweep = Instant::now() + SWEEP_EVERY;
        let idle: Vec<FlowKey> = self
            .sockets
            .values()
            .filter(|f| f.last_used.elapsed() > IDLE_BACKSTOP)
            .map(|f| f.key)
            .collect();
        for key in idle {
            self.close(&key);
        }
    }

    /// Carries out the control plane's order about listening sockets.
    pub fn listening(&mut self, order: Listening) {
        match order {
            Listening::Start(sockets) => {
                let rule = sockets.rule;
                let next = &mut self.next_token;
                let mut token = || take_token(next);
                if let Err(error) = self.listeners.add(&self.registry, sockets, &mut token) {
                    tracing::warn!(rule = rule.0, %error, "cannot serve a published port");
                    self.listeners.remove(&self.registry, rule);
                }
            }
            Listening::Stop(rule) => self.listeners.remove(&self.registry, rule),
            Listening::StopAll => self.listeners.clear(&self.registry),
        }
    }

    /// Accepts the connections waiting on published TCP port `token`.
    fn accept(&mut self, token: Token) {
        loop {
            let Some(Ready::Tcp(listener)) = self.listeners.ready(token) else {
                return;
            };
            let (stream, peer) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // Out of file descriptors, say: the client waits in the
                    // backlog, and the next readiness tries again.
                    tracing::debug!(error = %e, "accept on a published port failed");
                    self.counters.socket_errors += 1;
                    return;
                }
            };
            let Some(ends) = published::ends(&stream, peer) else {
                continue;
            };
            self.counters.published_tcp += 1;
            let token = take_token(&mut self.next_token);
            self.guarded(|tcp, registry, _| tcp.accepted(registry, stream, ends, token));
        }
    }

    /// A frame to read a datagram into, or `None` (and `token` served
    /// again next round) when every frame is queued.
    fn frame_for(&mut self, token: Token) -> Option<Frame> {
        let frame = self.frames.take();
        if frame.is_none() && !self.again.contains(&token) {
            self.again.push(token);
        }
        frame
    }

    /// Queues `frame` with the packet built in its first `len` bytes, or
    /// takes it back when nothing was built.
    fn queue_built(&mut self, mut frame: Frame, built: Option<usize>) {
        match built {
            Some(len) if frame.set_built(len) => self.frames.queue(frame),
            _ => self.frames.give_back(frame),
        }
    }

    /// After a full batch from `token`: serve it again next round, since
    /// edge-triggered polling will not say that more is waiting.
    fn again_after(&mut self, token: Token) {
        if !self.again.contains(&token) {
            self.again.push(token);
        }
    }

    /// Reads the datagrams waiting on published UDP port `token` and sends
    /// each on as a packet from its sender to the address it reached.
    fn serve_published_udp(&mut self, token: Token) {
        for _ in 0..READ_BATCH {
            let Some(mut frame) = self.frame_for(token) else {
                return;
            };
            let Some(Ready::Udp(socket, port)) = self.listeners.ready(token) else {
                return self.frames.give_back(frame);
            };
            let buf = frame.build_buf();
            let (n, peer, local) = match sys::recv_to(socket, &mut buf[flows::UDP_PAYLOAD_AT..]) {
                Ok(got) => got,
                Err(_) => {
                    // WouldBlock, or an error queued by an earlier answer:
                    // either way nothing to carry now.
                    return self.frames.give_back(frame);
                }
            };
            let to = SocketAddrV4::new(local, port);
            self.counters.published_udp += 1;
            let built = flows::build_udp(buf, peer, to, n);
            self.queue_built(frame, built);
        }
        self.again_after(token);
    }

    /// Sends a container's IPv4 packet `ip` out through its flow's socket.
    pub fn from_container(&mut self, ip: &[u8]) {
        let (key, data) = match flows::parse(ip) {
            Request::Udp { key, payload } => {
                // An answer to a published UDP port's client leaves by the
                // socket the client reached, from the address it reached.
                let from = SocketAddrV4::new(key.src, key.sport);
                if let Some(socket) = self.listeners.udp_socket_for(from) {
                    let to = SocketAddrV4::new(key.dst, key.dport);
                    let _ = sys::send_from(socket, payload, key.src, to);
                    return;
                }
                (key, payload)
            }
            Request::Echo { key, message } => (key, message),
            Request::Tcp { key, syn } => {
                let mut next = self.next_token;
                self.guarded(|tcp, registry, frames| {
                    let mut token = || take_token(&mut next);
                    if let Some(token) = tcp.segment(registry, key, ip, syn, &mut token) {
                        // Done already, often: answer the SYN in this round
                        // rather than after the next poll.
                        tcp.host_ready(token, (false, false), frames);
                    }
                });
                self.next_token = next;
                return;
            }
            Request::Unsupported => {
                self.counters.unsupported += 1;
                return;
            }
        };
        let Some(token) = self.flow(key) else {
            return;
        };
        if let Some(flow) = self.sockets.get_mut(&token) {
            flow.last_used = Instant::now();
            // A full socket buffer drops the datagram, as a full link would.
            let _ = flow.socket.send(data);
        }
    }

    /// The socket of flow `key`, opened on its first packet.
    fn flow(&mut self, key: FlowKey) -> Option<Token> {
        if let Some(&token) = self.flows.get(&key) {
            return Some(token);
        }
        if self.sockets.len() >= MAX_FLOWS {
            self.counters.flows_full += 1;
            return None;
        }
        let remote = SocketAddrV4::new(key.dst, key.dport);
        let opened = match key.proto {
            Proto::Udp => open_udp(remote),
            Proto::Icmp => match sys::ping_socket() {
                Ok(std_socket) => connect(UdpSocket::from_std(std_socket), key.dst, 0),
                Err(_) => {
                    self.counters.icmp_unavailable += 1;
                    return None;
                }
            },
            Proto::Tcp => return None,
        };
        let Ok((mut socket, local)) = opened else {
            self.counters.socket_errors += 1;
            return None;
        };
        let token = take_token(&mut self.next_token);
        if self
            .registry
            .register(&mut socket, token, Interest::READABLE)
            .is_err()
        {
            self.counters.socket_errors += 1;
            return None;
        }
        self.counters.opened += 1;
        self.flows.insert(key, token);
        self.sockets.insert(
            token,
            Flow {
                key,
                socket,
                last_used: Instant::now(),
            },
        );
        let remote = SocketAddrV4::new(
            key.dst,
            if key.proto == Proto::Icmp {
                0
            } else {
                key.dport
            },
        );
        self.opened.push((key, local, remote));
        Some(token)
    }

    /// Reads what a flow's socket received and sends it to its container.
    fn serve_socket(&mut self, token: Token) {
        for _ in 0..READ_BATCH {
            let Some(key) = self.sockets.get(&token).map(|f| f.key) else {
                return;
            };
            let Some(mut frame) = self.frame_for(token) else {
                return;
            };
            let at = match key.proto {
                Proto::Icmp => flows::ICMP_AT,
                _ => flows::UDP_PAYLOAD_AT,
            };
            let Some(flow) = self.sockets.get_mut(&token) else {
                return self.frames.give_back(frame);
            };
            let buf = frame.build_buf();
            let n = match flow.socket.recv(&mut buf[at..]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return self.frames.give_back(frame);
                }
                Err(e) => {
                    // The destination said no port (ICMP port unreachable
                    // to the host socket): the container hears it too.
                    let refused =
                        e.kind() == io::ErrorKind::ConnectionRefused && key.proto == Proto::Udp;
                    let built = refused
                        .then(|| flows::build_port_unreachable(buf, &key))
                        .flatten();
                    self.queue_built(frame, built);
                    continue;
                }
            };
            flow.last_used = Instant::now();
            let to = SocketAddrV4::new(key.src, key.sport);
            let built = match key.proto {
                Proto::Icmp => flows::build_echo_reply(buf, key.dst, key.src, key.sport, n),
                _ => flows::build_udp(buf, SocketAddrV4::new(key.dst, key.dport), to, n),
            };
            self.queue_built(frame, built);
        }
        self.again_after(token);
    }

    /// Runs `f` on the TCP relay (with the registry and the frames) and
    /// returns what it returned; should it panic, the TCP relay and every
    /// connection it held are dropped and a new one takes over (see the
    /// module documentation), and the result is `None`.
    fn guarded<R>(
        &mut self,
        f: impl FnOnce(&mut TcpRelay, &Registry, &mut Frames) -> R,
    ) -> Option<R> {
        let (tcp, registry, frames) = (&mut self.tcp, &self.registry, &mut self.frames);
        // Unwind safety: nothing `f` may have left half-changed is used
        // after a panic — the TCP relay is replaced whole, and a frame it
        // held is simply not given back to the pool.
        match panic::catch_unwind(AssertUnwindSafe(|| f(tcp, registry, frames))) {
            Ok(result) => Some(result),
            Err(_) => {
                self.counters.tcp_restarts += 1;
                tracing::error!(
                    connections = self.tcp.len(),
                    "the host uplink's TCP relay failed (a bug, please report it with the panic message above): its connections are dropped and a new relay takes over"
                );
                self.tcp = TcpRelay::new();
                self.counters.tcp_open = 0;
                None
            }
        }
    }
}

/// The next token for a host socket, within the relay's range.
fn take_token(next: &mut usize) -> Token {
    let token = Token(*next);
    *next += 1;
    if *next >= LAST_TOKEN {
        *next = FIRST_TOKEN;
    }
    token
}

/// A non-blocking UDP socket connected to `remote`, and its local address.
fn open_udp(remote: SocketAddrV4) -> io::Result<(UdpSocket, SocketAddrV4)> {
    let socket = UdpSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))?;
    connect(socket, *remote.ip(), remote.port())
}

/// Connects `socket` to (`addr`, `port`); returns it with its local address.
fn connect(socket: UdpSocket, addr: Ipv4Addr, port: u16) -> io::Result<(UdpSocket, SocketAddrV4)> {
    socket.connect(SocketAddr::from((addr, port)))?;
    match socket.local_addr()? {
        SocketAddr::V4(local) => Ok((socket, local)),
        SocketAddr::V6(_) => Err(io::Error::other("an IPv4 socket with an IPv6 address")),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::net::TcpListener;
    use std::time::Duration;

    use etherparse::PacketBuilder;
    use mio::{Events, Poll};

    use super::*;

    /// A container's SYN from 10.9.0.2:`sport` to 127.0.0.1:`port`.
    fn syn(sport: u16, port: u16) -> Vec<u8> {
        let mut ip = Vec::new();
        PacketBuilder::ipv4([10, 9, 0, 2], [127, 0, 0, 1], 64)
            .tcp(sport, port, 1000, 64000)
            .syn()
            .write(&mut ip, b"")
            .unwrap();
        ip
    }

    /// Serves the relay's host sockets and runs it for a few rounds.
    fn rounds(relay: &mut HostRelay, poll: &mut Poll) {
        let mut events = Events::with_capacity(64);
        for _ in 0..5 {
            poll.poll(&mut events, Some(Duration::from_millis(20)))
                .unwrap();
            for e in events.iter() {
                relay.ready(e.token(), e.is_readable(), e.is_writable());
            }
            relay.run();
            while let Some(frame) = relay.next_frame() {
                relay.give_back(frame);
            }
        }
    }

    #[test]
    fn a_panic_in_the_tcp_relay_drops_its_connections_and_a_new_relay_serves_the_next() {
        let mut poll = Poll::new().unwrap();
        let mut relay = HostRelay::new(poll.registry().try_clone().unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        relay.from_container(&syn(40_000, port));
        rounds(&mut relay, &mut poll);
        assert_eq!(relay.counters().tcp_open, 1);
        let (mut host_end, _) = listener.accept().unwrap();

        relay.tcp.fail_next_poll = true;
        relay.run();
        assert_eq!(relay.counters().tcp_restarts, 1);
        assert_eq!(relay.counters().tcp_open, 0);
        // The host's end of the dropped connection is closed.
        host_end
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(host_end.read(&mut [0u8; 16]).unwrap(), 0);

        relay.from_container(&syn(40_001, port));
        rounds(&mut relay, &mut poll);
        assert_eq!(relay.counters().tcp_open, 1, "the new relay serves");
        assert!(listener.accept().is_ok());
    }
}
