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

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
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
}

impl RelayCounters {
    /// The counters by the names `conntrack stats` shows.
    pub fn by_name(&self) -> [(&'static str, u64); 10] {
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
            self.tcp
                .host_ready(token, (readable, writable), &mut self.frames);
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
        self.tcp.poll(&mut self.frames);
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
        self.tcp.poll_delay()
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
            return self.tcp.close(key);
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
            self.tcp.accepted(&self.registry, stream, ends, token);
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
                let next = &mut self.next_token;
                let mut token = || take_token(next);
                let connecting = self.tcp.segment(&self.registry, key, ip, syn, &mut token);
                if let Some(token) = connecting {
                    // Done already, often: answer the SYN in this round
                    // rather than after the next poll.
                    let frames = &mut self.frames;
                    self.tcp.host_ready(token, (false, false), frames);
                }
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
