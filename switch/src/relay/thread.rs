//! The relay thread: a `mio` poll loop that owns every host socket of the
//! host uplink, made in yardd's own network namespace as any program's.
//!
//! Contract: TCP is [`super::tcp`]'s (one host stream per connection); a
//! UDP flow (container source, destination) gets one
//! non-blocking UDP socket connected to the destination; an ICMP echo flow
//! (container, destination, identifier) one unprivileged ping socket. The
//! first packet opens the socket and the home thread hears its local and
//! remote address ([`FromRelay::Opened`]); what a socket reads goes back as
//! a packet from the destination to the container. A flow's socket closes
//! when the home thread says its conntrack entry went ([`ToRelay::Close`]),
//! or, should that message be lost to a full queue, after [`IDLE_BACKSTOP`]
//! without traffic. At most [`MAX_FLOWS`] sockets are open; past that a new
//! flow's packets are dropped and counted. Nothing here blocks: a full
//! queue to the home thread drops the packet (its sender retransmits, as
//! after any loss on a network). Published ports' listening sockets are
//! [`super::published`]'s; what they accept or read enters here too.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use yard_nat::flow::{FlowKey, Proto};
use yard_wire::offload::Offload;

use super::flows::{self, Request};
use super::published::{self, Listeners, Ready};
use super::tcp::TcpRelay;
use super::{FromRelay, Listening, ToRelay, BUFFER};
use crate::sys;

/// The relay's waker token.
pub(super) const WAKER: Token = Token(usize::MAX);
/// The most host sockets open at once.
pub const MAX_FLOWS: usize = 16_384;
/// A socket idle this long is closed even if no close arrived.
pub const IDLE_BACKSTOP: Duration = Duration::from_secs(3600);
/// Datagrams read from one socket per readiness before others are served.
const READ_BATCH: usize = 64;
/// Messages from the home thread handled per round.
const INBOX_BATCH: usize = 256;

/// The relay's counters, shared with whoever reports them.
#[derive(Debug, Default)]
pub struct RelayCounters {
    /// Host sockets opened.
    pub opened: AtomicU64,
    /// Flows refused: [`MAX_FLOWS`] sockets were open.
    pub flows_full: AtomicU64,
    /// A socket could not be made or connected.
    pub socket_errors: AtomicU64,
    /// ICMP echo flows that could not have a ping socket (the group is not
    /// in `net.ipv4.ping_group_range`).
    pub icmp_unavailable: AtomicU64,
    /// Packets for the home thread dropped on a full queue or pool.
    pub home_busy: AtomicU64,
    /// Packets the relay does not carry (fragments, other ICMP).
    pub unsupported: AtomicU64,
    /// TCP connections whose host connect failed (answered with RST).
    pub tcp_refused: AtomicU64,
    /// TCP connections refused: [`super::tcp::MAX_CONNECTIONS`] were open.
    pub tcp_full: AtomicU64,
    /// TCP connections open now.
    pub tcp_open: AtomicU64,
    /// Connections accepted on published TCP ports.
    pub published_tcp: AtomicU64,
    /// Datagrams read on published UDP ports.
    pub published_udp: AtomicU64,
}

impl RelayCounters {
    /// The counters by the names `conntrack stats` shows.
    pub fn by_name(&self) -> [(&'static str, u64); 11] {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("relay-sockets-opened", get(&self.opened)),
            ("relay-flows-full", get(&self.flows_full)),
            ("relay-socket-errors", get(&self.socket_errors)),
            ("relay-icmp-unavailable", get(&self.icmp_unavailable)),
            ("relay-home-busy", get(&self.home_busy)),
            ("relay-unsupported", get(&self.unsupported)),
            ("relay-tcp-refused", get(&self.tcp_refused)),
            ("relay-tcp-full", get(&self.tcp_full)),
            ("relay-tcp-open", get(&self.tcp_open)),
            ("relay-published-tcp", get(&self.published_tcp)),
            ("relay-published-udp", get(&self.published_udp)),
        ]
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// One host socket.
struct Flow {
    key: FlowKey,
    socket: UdpSocket,
    last_used: Instant,
}

/// The relay thread's state; [`HostRelay::run`] is its loop.
pub struct HostRelay {
    poll: Poll,
    inbox: Receiver<ToRelay>,
    orders: Receiver<Listening>,
    listeners: Listeners,
    /// Where the buffers of packets from the home thread go back.
    spent: Sender<Vec<u8>>,
    outbox: Sender<FromRelay>,
    /// Empty buffers for packets to the home thread.
    pool: Receiver<Vec<u8>>,
    /// The way back into `pool` for a buffer the relay did not send.
    repool: Sender<Vec<u8>>,
    home_waker: Arc<Waker>,
    flows: HashMap<FlowKey, Token>,
    sockets: HashMap<Token, Flow>,
    next_token: usize,
    tcp: TcpRelay,
    counters: Arc<RelayCounters>,
    /// A packet went to the home thread since the last wake.
    wake_home: bool,
}

impl HostRelay {
    pub(super) fn new(
        poll: Poll,
        (inbox, orders): (Receiver<ToRelay>, Receiver<Listening>),
        spent: Sender<Vec<u8>>,
        outbox: Sender<FromRelay>,
        (pool, repool): (Receiver<Vec<u8>>, Sender<Vec<u8>>),
        home_waker: Arc<Waker>,
    ) -> HostRelay {
        HostRelay {
            poll,
            inbox,
            orders,
            listeners: Listeners::default(),
            spent,
            outbox,
            tcp: TcpRelay::new(pool.clone()),
            pool,
            repool,
            home_waker,
            flows: HashMap::new(),
            sockets: HashMap::new(),
            next_token: 0,
            counters: Arc::new(RelayCounters::default()),
            wake_home: false,
        }
    }

    /// The counters, to report while the thread runs.
    pub fn counters(&self) -> Arc<RelayCounters> {
        self.counters.clone()
    }

    /// Runs until the home thread's end of the link is gone.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        let mut next_sweep = Instant::now() + Duration::from_secs(60);
        let mut again = false;
        loop {
            let timeout = if again {
                Duration::ZERO
            } else {
                let tcp = self.tcp.poll_delay().unwrap_or(Duration::from_secs(1));
                tcp.min(Duration::from_secs(1))
            };
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for event in events.iter() {
                let token = event.token();
                if token == WAKER {
                    continue;
                }
                if let Some(ready) = self.listeners.ready(token) {
                    match ready {
                        Ready::Tcp(_) => self.accept(token),
                        Ready::Udp(..) => self.serve_published_udp(token),
                    }
                } else if self.tcp.owns(token) {
                    let readable = event.is_readable() || event.is_read_closed();
                    let writable =
                        event.is_writable() || event.is_write_closed() || event.is_error();
                    self.tcp
                        .host_ready(self.poll.registry(), token, readable, writable);
                } else {
                    self.serve_socket(token);
                }
            }
            self.serve_orders();
            again = match self.serve_inbox() {
                Some(more) => more,
                None => return Ok(()),
            };
            self.serve_tcp();
            if std::mem::take(&mut self.wake_home) {
                let _ = self.home_waker.wake();
            }
            if Instant::now() >= next_sweep {
                self.close_idle();
                next_sweep = Instant::now() + Duration::from_secs(60);
            }
        }
    }

    /// Handles what the home thread sent; `None` when it is gone, else
    /// whether more is waiting.
    fn serve_inbox(&mut self) -> Option<bool> {
        for _ in 0..INBOX_BATCH {
            match self.inbox.try_recv() {
                Ok(ToRelay::Packet { buf, len }) => {
                    self.relay_out(&buf[..len.min(buf.len())]);
                    let _ = self.spent.try_send(buf);
                }
                Ok(ToRelay::Close(key)) if key.proto == Proto::Tcp => {
                    self.tcp.close(self.poll.registry(), &key)
                }
                Ok(ToRelay::Close(key)) => self.close(&key),
                Err(TryRecvError::Empty) => return Some(false),
                Err(TryRecvError::Disconnected) => return None,
            }
        }
        Some(true)
    }

    /// Carries out the control plane's orders about listening sockets.
    fn serve_orders(&mut self) {
        while let Ok(order) = self.orders.try_recv() {
            let registry = self.poll.registry();
            match order {
                Listening::Start(sockets) => {
                    let rule = sockets.rule;
                    let next = &mut self.next_token;
                    let mut token = || take_token(next);
                    if let Err(error) = self.listeners.add(registry, sockets, &mut token) {
                        tracing::warn!(rule = rule.0, %error, "cannot serve a published port");
                        self.listeners.remove(registry, rule);
                    }
                }
                Listening::Stop(rule) => self.listeners.remove(registry, rule),
                Listening::StopAll => self.listeners.clear(registry),
            }
        }
    }

    /// Accepts the connections waiting on published TCP port `token`.
    fn accept(&mut self, token: Token) {
        loop {
            let Some(Ready::Tcp(listener)) = self.listeners.ready(token) else {
                return;
            };
            let stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // Out of file descriptors, say: the client waits in the
                    // backlog, and the next readiness tries again.
                    tracing::debug!(error = %e, "accept on a published port failed");
                    bump(&self.counters.socket_errors);
                    return;
                }
            };
            let Some(ends) = published::ends(&stream) else {
                continue;
            };
            bump(&self.counters.published_tcp);
            let token = take_token(&mut self.next_token);
            self.tcp.accepted(self.poll.registry(), stream, ends, token);
        }
    }

    /// Reads the datagrams waiting on published UDP port `token` and sends
    /// each on as a packet from its sender to the address it reached.
    fn serve_published_udp(&mut self, token: Token) {
        for _ in 0..READ_BATCH {
            let Some(Ready::Udp(socket, port)) = self.listeners.ready(token) else {
                return;
            };
            let Ok(mut buf) = self.pool.try_recv() else {
                bump(&self.counters.home_busy);
                return;
            };
            buf.resize(BUFFER, 0);
            let (n, peer, local) = match sys::recv_to(socket, &mut buf[flows::UDP_PAYLOAD_AT..]) {
                Ok(got) => got,
                Err(_) => {
                    // WouldBlock, or an error queued by an earlier answer:
                    // either way nothing to carry now.
                    self.spent_own(buf);
                    return;
                }
            };
            let to = SocketAddrV4::new(local, port);
            bump(&self.counters.published_udp);
            match flows::build_udp(&mut buf, peer, to, n) {
                Some(len) => self.send_home(FromRelay::Packet {
                    buf,
                    len,
                    offload: Offload::NONE,
                }),
                None => self.spent_own(buf),
            }
        }
    }

    /// Sends a container's packet out through its flow's socket.
    fn relay_out(&mut self, ip: &[u8]) {
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
                let HostRelay {
                    tcp,
                    poll,
                    next_token,
                    ..
                } = self;
                let mut token = || take_token(next_token);
                tcp.segment(poll.registry(), key, ip, syn, &mut token);
                return;
            }
            Request::Unsupported => return bump(&self.counters.unsupported),
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
            bump(&self.counters.flows_full);
            return None;
        }
        let remote = SocketAddrV4::new(key.dst, key.dport);
        let opened = match key.proto {
            Proto::Udp => open_udp(remote),
            Proto::Icmp => match sys::ping_socket() {
                Ok(std_socket) => connect(UdpSocket::from_std(std_socket), key.dst, 0),
                Err(_) => {
                    bump(&self.counters.icmp_unavailable);
                    return None;
                }
            },
            Proto::Tcp => return None,
        };
        let Ok((mut socket, local)) = opened else {
            bump(&self.counters.socket_errors);
            return None;
        };
        let token = take_token(&mut self.next_token);
        if self
            .poll
            .registry()
            .register(&mut socket, token, Interest::READABLE)
            .is_err()
        {
            bump(&self.counters.socket_errors);
            return None;
        }
        bump(&self.counters.opened);
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
        self.send_home(FromRelay::Opened { key, local, remote });
        Some(token)
    }

    /// Runs the TCP relay and sends what it made to the home thread.
    fn serve_tcp(&mut self) {
        self.tcp.poll(self.poll.registry());
        let packets: Vec<(Vec<u8>, usize)> = self.tcp.take_packets().collect();
        for (mut buf, len) in packets {
            let offload = self.tcp.offload_for(&mut buf[..len]);
            self.send_home(FromRelay::Packet { buf, len, offload });
        }
        let events = self.tcp.take_events();
        for (key, local, remote) in events.opened {
            self.send_home(FromRelay::Opened { key, local, remote });
        }
        self.counters
            .tcp_refused
            .fetch_add(events.refused, Ordering::Relaxed);
        self.counters
            .tcp_full
            .fetch_add(events.full, Ordering::Relaxed);
        self.counters
            .tcp_open
            .store(self.tcp.len() as u64, Ordering::Relaxed);
    }

    /// Reads what a socket received and sends it to its container.
    fn serve_socket(&mut self, token: Token) {
        for _ in 0..READ_BATCH {
            let Some(flow) = self.sockets.get(&token) else {
                return;
            };
            let Ok(mut buf) = self.pool.try_recv() else {
                bump(&self.counters.home_busy);
                // Unread datagrams wait in the socket; the next wake-up
                // (a returned buffer comes with the home thread's next
                // packet or tick) reads them.
                return;
            };
            buf.resize(BUFFER, 0);
            let key = flow.key;
            let at = match key.proto {
                Proto::Icmp => flows::ICMP_AT,
                _ => flows::UDP_PAYLOAD_AT,
            };
            let n = match flow.socket.recv(&mut buf[at..]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.spent_own(buf);
                    return;
                }
                Err(e) => {
                    // The destination said no port (ICMP port unreachable
                    // to the host socket): the container hears it too.
                    let refused =
                        e.kind() == io::ErrorKind::ConnectionRefused && key.proto == Proto::Udp;
                    match refused
                        .then(|| flows::build_port_unreachable(&mut buf, &key))
                        .flatten()
                    {
                        Some(len) => self.send_home(FromRelay::Packet {
                            buf,
                            len,
                            offload: Offload::NONE,
                        }),
                        None => self.spent_own(buf),
                    }
                    continue;
                }
            };
            let to = SocketAddrV4::new(key.src, key.sport);
            let built = match key.proto {
                Proto::Icmp => flows::build_echo_reply(&mut buf, key.dst, key.src, key.sport, n),
                _ => flows::build_udp(&mut buf, SocketAddrV4::new(key.dst, key.dport), to, n),
            };
            if let Some(flow) = self.sockets.get_mut(&token) {
                flow.last_used = Instant::now();
            }
            match built {
                Some(len) => self.send_home(FromRelay::Packet {
                    buf,
                    len,
                    offload: Offload::NONE,
                }),
                None => self.spent_own(buf),
            }
        }
    }

    /// Puts one of the relay's own buffers back in its pool.
    fn spent_own(&self, buf: Vec<u8>) {
        // The pool's queue holds every buffer there is: it has room.
        let _ = self.repool.try_send(buf);
    }

    fn send_home(&mut self, message: FromRelay) {
        match self.outbox.try_send(message) {
            Ok(()) => self.wake_home = true,
            Err(refused) => {
                bump(&self.counters.home_busy);
                // The buffer stays in the pool.
                if let FromRelay::Packet { buf, .. } = refused.into_inner() {
                    self.spent_own(buf);
                }
            }
        }
    }

    fn close(&mut self, key: &FlowKey) {
        if let Some(token) = self.flows.remove(key) {
            if let Some(mut flow) = self.sockets.remove(&token) {
                let _ = self.poll.registry().deregister(&mut flow.socket);
            }
        }
    }

    fn close_idle(&mut self) {
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
}

/// The next token for a host socket (below the waker's).
fn take_token(next: &mut usize) -> Token {
    let token = Token(*next);
    *next = (*next + 1) % (usize::MAX / 2);
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
