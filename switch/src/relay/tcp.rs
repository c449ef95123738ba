//! The relay's TCP: each container connection is ended in a smoltcp socket
//! and carried on through a non-blocking host `TcpStream`.
//!
//! Contract. smoltcp runs one IP-medium interface in any-IP mode with a
//! default route through its own address, so it answers for every
//! destination. A container's SYN for a new flow starts a host `connect`
//! to the same destination and is held; when the connect succeeds a
//! listening socket for (destination, port) is made and the SYN fed to it,
//! so the container's handshake completes only once the host's did; when
//! it fails the SYN is fed with no socket listening and smoltcp answers it
//! with RST (the container sees `ECONNREFUSED`). Data moves without a copy
//! of our own: from the smoltcp receive buffer straight into the host
//! socket, from the host socket straight into the smoltcp send buffer. Each
//! buffer is bounded ([`FROM_CONTAINER_BUFFER`], [`TO_CONTAINER_BUFFER`]);
//! a side whose peer's buffer is full is not read, so the container's
//! window closes or the host socket's receive queue fills. A FIN from the container becomes
//! `shutdown(SHUT_WR)`; end of file from the host becomes a FIN; a reset on
//! either side resets the other. At most [`MAX_CONNECTIONS`] connections
//! at once; more are refused with RST.
//!
//! A published port's connection runs the other way
//! ([`TcpRelay::accepted`]): the host stream is already connected, and a
//! smoltcp socket connects from the client's address and port to the host
//! address and port it reached; the gateway translates that to the
//! container. Its key is the tuple of the container's answers as they come
//! back (host address → client), its MSS the one of the container's
//! SYN-ACK, raised the same way. It gives up when the container does not
//! answer within [`PUBLISHED_CONNECT_TIMEOUT`] (the client is reset). Its
//! segments carry TCP timestamps from the monotonic clock, so a client
//! that comes back from the same port is taken by the container's
//! TIME_WAIT at once (RFC 6191) instead of after a retransmission.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, SocketAddrV4};
use std::time::Instant as StdInstant;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use smoltcp::iface::{
    Config, Interface, PollIngressSingleResult, PollResult, SocketHandle, SocketSet,
};
use smoltcp::phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::socket::tcp::{self, State};
use smoltcp::time::{Duration as SmolDuration, Instant};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpListenEndpoint, Ipv4Address};
use yard_nat::flow::FlowKey;

use super::flows::HEADROOM;
use super::frames::Frames;
use yard_wire::checksum::{self, L4Checksum};
use yard_wire::ip::protocol;
use yard_wire::ipv4::Ipv4Packet;
use yard_wire::offload::Offload;
use yard_wire::tcp::TcpPacket;
use yard_wire::vnet;

/// A connection's buffer of what the container sent, not yet written to
/// the host socket.
pub const FROM_CONTAINER_BUFFER: usize = 256 * 1024;
/// A connection's buffer of what the host socket gave, not yet
/// acknowledged by the container. Larger: with 256 or 512 KiB one stream
/// into a published port moved 7–9 Gbit/s, with 1 MiB 9–14.5 at less of
/// yardd's CPU (docs/PERFORMANCE.md).
pub const TO_CONTAINER_BUFFER: usize = 1024 * 1024;
/// The most closed smoltcp sockets kept for reuse (each holds its two
/// buffers).
const PARKED: usize = 16;
/// The most TCP connections relayed at once.
pub const MAX_CONNECTIONS: usize = 4096;
/// How long a published connection waits for the container's SYN-ACK.
pub const PUBLISHED_CONNECT_TIMEOUT: SmolDuration = SmolDuration::from_secs(30);
/// The relay interface's own address: the gateway of its default route.
const RELAY_ADDR: Ipv4Address = Ipv4Address::new(169, 254, 255, 254);

/// What a pass over the connections asks the relay to do.
#[derive(Debug, Default)]
pub struct TcpEvents {
    /// Host sockets connected: (flow, local, remote), for conntrack.
    pub opened: Vec<(FlowKey, SocketAddrV4, SocketAddrV4)>,
    /// Host connects refused or failed (answered with RST).
    pub refused: u64,
    /// New connections refused: [`MAX_CONNECTIONS`] were open.
    pub full: u64,
}

/// The device between smoltcp and the relay, made for each call into
/// smoltcp: packets from containers wait in `rx`; what smoltcp sends is
/// written straight into a frame from `frames` and queued there, in the
/// offload state its connection's MSS (`mss`) asks for.
struct Link<'a> {
    rx: &'a mut VecDeque<Vec<u8>>,
    /// Emptied rx buffers, to copy the next packets into: the link
    /// allocates only while traffic grows.
    spare: &'a mut Vec<Vec<u8>>,
    frames: &'a mut Frames,
    mss: &'a HashMap<FlowKey, u16>,
}

/// The [`Link`] of relay `$relay` (its queues) and `$frames`, for one call
/// into smoltcp; a macro, as it borrows fields smoltcp's other arguments
/// (the interface, the sockets) sit beside.
macro_rules! link {
    ($relay:ident, $frames:expr) => {
        Link {
            rx: &mut $relay.rx,
            spare: &mut $relay.spare,
            frames: $frames,
            mss: &$relay.mss,
        }
    };
}

/// The most emptied rx buffers kept.
const SPARE_RX: usize = 256;

/// A packet smoltcp reads; its buffer goes back to the link's spares.
struct RxToken<'a> {
    packet: Vec<u8>,
    spare: &'a mut Vec<Vec<u8>>,
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let r = f(&self.packet);
        if self.spare.len() < SPARE_RX {
            self.spare.push(self.packet);
        }
        r
    }
}

/// Room for a packet smoltcp sends: a frame, queued once written.
struct TxToken<'a> {
    frames: &'a mut Frames,
    mss: &'a HashMap<FlowKey, u16>,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        // `transmit` and `receive` hand out a token only when a frame is
        // free; should none be, the packet is built in a new one.
        let mut frame = self.frames.take().unwrap_or_default();
        let end = (HEADROOM + len).min(frame.build_buf().len());
        let r = f(&mut frame.build_buf()[HEADROOM..end]);
        if frame.set_built(end) {
            let offload = offload_for(self.mss, frame.data_mut());
            frame.offload = offload;
            self.frames.queue(frame);
        } else {
            self.frames.give_back(frame);
        }
        r
    }
}

impl phy::Device for Link<'_> {
    type RxToken<'b>
        = RxToken<'b>
    where
        Self: 'b;
    type TxToken<'b>
        = TxToken<'b>
    where
        Self: 'b;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        if !self.frames.has_room() {
            // Every frame is queued for the home thread: smoltcp reads
            // (and answers) later.
            return None;
        }
        let packet = self.rx.pop_front()?;
        Some((
            RxToken {
                packet,
                spare: self.spare,
            },
            TxToken {
                frames: self.frames,
                mss: self.mss,
            },
        ))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        if !self.frames.has_room() {
            // Every frame is queued for the home thread: smoltcp sends later.
            return None;
        }
        Some(TxToken {
            frames: self.frames,
            mss: self.mss,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = 65_535;
        // The gateway checked the IPv4 header; a TAP's TSO segments carry
        // a partial TCP checksum the device was to finish, so smoltcp
        // verifies none. Nor does it sum the TCP segments it sends: they
        // leave with a partial checksum ([`offload_for`]) that the
        // container's TAP (or the switch, for another port) finishes.
        let mut sums = ChecksumCapabilities::default();
        sums.ipv4 = Checksum::Tx;
        sums.tcp = Checksum::None;
        caps.checksum = sums;
        caps
    }
}

/// One relayed connection.
struct Conn {
    stream: TcpStream,
    token: Token,
    /// The smoltcp socket, once the host connect succeeded.
    socket: Option<SocketHandle>,
    /// The container's SYN while the host connect is under way.
    held_syn: Option<Vec<u8>>,
    /// The host socket has data to read (edge-triggered: until WouldBlock).
    host_readable: bool,
    /// The host socket can take data.
    host_writable: bool,
    /// The host sent end of file (and the container was sent a FIN).
    host_eof: bool,
    /// The container's FIN was passed on with `shutdown(SHUT_WR)`.
    host_shut: bool,
    /// A published port's connection still waiting for the container's
    /// SYN-ACK (its connect timeout is on until then).
    connecting: bool,
    /// A published connection's host addresses (local, client), reported
    /// once the container answered.
    ends: Option<(SocketAddrV4, SocketAddrV4)>,
}

/// The MSS smoltcp is told a container has, so it sends segments as large
/// as an IPv4 packet allows; the relay hands them on as TSO frames cut to
/// the container's own MSS ([`TcpRelay::offload_for`]). smoltcp fills a
/// segment with that much payload whatever its options, so the largest TCP
/// header (60 bytes) is left room for: with timestamps a segment of 65495
/// would not fit an IPv4 packet.
const RELAY_MSS: u16 = 65_535 - 20 - 60;

/// The relay's TCP side. See the module documentation.
pub struct TcpRelay {
    iface: Interface,
    /// Packets from containers waiting for smoltcp.
    rx: VecDeque<Vec<u8>>,
    /// Emptied rx buffers.
    spare: Vec<Vec<u8>>,
    sockets: SocketSet<'static>,
    conns: HashMap<FlowKey, Conn>,
    tokens: HashMap<Token, FlowKey>,
    epoch: StdInstant,
    events: TcpEvents,
    /// Sockets of removed connections, taken out after the next poll.
    closing: Vec<SocketHandle>,
    /// Closed sockets kept for the next connections (at most [`PARKED`]):
    /// a new socket's buffers are half a megabyte to zero.
    parked: Vec<SocketHandle>,
    /// Each connection's own MSS, as the container's SYN said.
    mss: HashMap<FlowKey, u16>,
    /// Tests: the next [`TcpRelay::poll`] panics, as a bug would.
    #[cfg(test)]
    pub(super) fail_next_poll: bool,
}

impl Default for TcpRelay {
    fn default() -> Self {
        Self::new()
    }
}

impl TcpRelay {
    /// A relay with no connection.
    pub fn new() -> TcpRelay {
        let (mut rx, mut spare, mut frames) = (VecDeque::new(), Vec::new(), Frames::default());
        let mss = HashMap::new();
        let mut link = Link {
            rx: &mut rx,
            spare: &mut spare,
            frames: &mut frames,
            mss: &mss,
        };
        let epoch = StdInstant::now();
        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = u64::from(std::process::id())
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
        let mut iface = Interface::new(config, &mut link, Instant::from_millis(0));
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(RELAY_ADDR), 32));
        });
        let _ = iface.routes_mut().add_default_ipv4_route(RELAY_ADDR);
        iface.set_any_ip(true);
        TcpRelay {
            iface,
            rx,
            spare,
            sockets: SocketSet::new(Vec::new()),
            conns: HashMap::new(),
            tokens: HashMap::new(),
            epoch,
            events: TcpEvents::default(),
            closing: Vec::new(),
            parked: Vec::new(),
            mss,
            #[cfg(test)]
            fail_next_poll: false,
        }
    }

    fn now(&self) -> Instant {
        Instant::from_millis(self.epoch.elapsed().as_millis() as i64)
    }

    /// The number of connections.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Whether a [`TcpRelay::poll`] would find nothing to do: no
    /// connection, no segment waiting for smoltcp, no socket still to
    /// retire and nothing to report.
    pub fn is_idle(&self) -> bool {
        self.conns.is_empty()
            && self.rx.is_empty()
            && self.closing.is_empty()
            && self.events.opened.is_empty()
            && self.events.refused == 0
            && self.events.full == 0
    }

    /// Whether `token` is one of this relay's host sockets.
    pub fn owns(&self, token: Token) -> bool {
        self.tokens.contains_key(&token)
    }

    /// A container's TCP segment `ip` (an IPv4 packet) of flow `key`; `syn`
    /// when it opens a connection (SYN without ACK). `token` is the one to
    /// register a new host socket with (taken only when it is used).
    /// Returns that token when the segment started a host `connect`: the
    /// caller asks at once whether it completed ([`TcpRelay::host_ready`]
    /// with neither readiness), since a connect to a near host often has
    /// by the time it returns.
    pub fn segment(
        &mut self,
        registry: &Registry,
        key: FlowKey,
        ip: &[u8],
        syn: bool,
        token: &mut dyn FnMut() -> Token,
    ) -> Option<Token> {
        if let Some(conn) = self.conns.get(&key) {
            if conn.socket.is_some() {
                let connecting = conn.connecting;
                self.feed(ip);
                if connecting && !self.mss.contains_key(&key) && is_syn(ip) {
                    // The container's SYN-ACK to a published connection.
                    if let Some(fed) = self.rx.back_mut() {
                        let mss = raise_mss(fed);
                        self.mss.insert(key, mss);
                    }
                }
            }
            // Else a retransmitted SYN while the host connect is under
            // way: the held one is answered when it completes.
            return None;
        }
        if !syn {
            // A segment of no connection: smoltcp answers it with RST.
            self.feed(ip);
            return None;
        }
        if self.conns.len() >= MAX_CONNECTIONS {
            self.events.full += 1;
            self.feed(ip);
            return None;
        }
        let remote = SocketAddr::from((key.dst, key.dport));
        let Ok(mut stream) = TcpStream::connect(remote) else {
            self.events.refused += 1;
            self.feed(ip);
            return None;
        };
        let token = token();
        if registry
            .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
            .is_err()
        {
            self.events.refused += 1;
            self.feed(ip);
            return None;
        }
        let mut held = self.spare.pop().unwrap_or_default();
        held.clear();
        held.extend_from_slice(ip);
        self.tokens.insert(token, key);
        self.conns.insert(
            key,
            Conn {
                stream,
                token,
                socket: None,
                held_syn: Some(held),
                host_readable: false,
                host_writable: false,
                host_eof: false,
                host_shut: false,
                connecting: false,
                ends: None,
            },
        );
        Some(token)
    }

    /// A client's connection `stream`, accepted on a published port's host
    /// socket: relays it to the container through a smoltcp socket that
    /// connects from the client's address and port (`peer`) to the host
    /// address and port it reached (`local`). `token` is the one to
    /// register the stream with. A connection over [`MAX_CONNECTIONS`] or
    /// one that cannot be set up is reset.
    pub fn accepted(
        &mut self,
        registry: &Registry,
        mut stream: TcpStream,
        (local, peer): (SocketAddrV4, SocketAddrV4),
        token: Token,
    ) {
        // The tuple of the container's answers after the gateway's
        // translation back: from the host address to the client.
        let key = FlowKey {
            proto: yard_nat::flow::Proto::Tcp,
            src: *local.ip(),
            sport: local.port(),
            dst: *peer.ip(),
            dport: peer.port(),
        };
        let refuse = |stream: &TcpStream| {
            let _ = crate::sys::reset_on_close(stream);
        };
        if self.conns.len() >= MAX_CONNECTIONS || self.conns.contains_key(&key) {
            self.events.full += 1;
            return refuse(&stream);
        }
        if registry
            .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
            .is_err()
        {
            self.events.refused += 1;
            return refuse(&stream);
        }
        let handle = self.socket();
        let socket = self.sockets.get_mut::<tcp::Socket>(handle);
        socket.set_timeout(Some(PUBLISHED_CONNECT_TIMEOUT));
        // A client that reuses its port soon meets the container's
        // TIME_WAIT of its last connection, which takes a new SYN only when
        // its sequence number or timestamp is newer; smoltcp's sequence
        // numbers are random, so send timestamps that always grow.
        socket.set_tsval_generator(Some(monotonic_ms));
        let remote = (IpAddress::Ipv4(*local.ip()), local.port());
        let from = IpListenEndpoint {
            addr: Some(IpAddress::Ipv4(*peer.ip())),
            port: peer.port(),
        };
        if socket.connect(self.iface.context(), remote, from).is_err() {
            self.events.refused += 1;
            self.parked.push(handle);
            let _ = registry.deregister(&mut stream);
            return refuse(&stream);
        }
        self.tokens.insert(token, key);
        // Reported to conntrack once the container answered ([`pump`]):
        // the entry is made by the first packet, which smoltcp has not
        // sent yet.
        self.conns.insert(
            key,
            Conn {
                stream,
                token,
                socket: Some(handle),
                held_syn: None,
                host_readable: false,
                host_writable: false,
                host_eof: false,
                host_shut: false,
                connecting: true,
                ends: Some((local, peer)),
            },
        );
    }

    /// Queues `ip` for smoltcp.
    fn feed(&mut self, ip: &[u8]) {
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(ip);
        self.rx.push_back(buf);
    }

    /// The host socket `token` is ready; a packet this makes at once (the
    /// SYN-ACK of a connect that completed) goes into `frames`.
    pub fn host_ready(
        &mut self,
        token: Token,
        (readable, writable): (bool, bool),
        frames: &mut Frames,
    ) {
        let Some(&key) = self.tokens.get(&token) else {
            return;
        };
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        conn.host_readable |= readable;
        conn.host_writable |= writable;
        if conn.socket.is_some() {
            return;
        }
        // The connect's outcome: a peer address once it is done, else an
        // error if it failed (one system call in the usual case, two
        // otherwise).
        let failed = match conn.stream.peer_addr() {
            Ok(_) => None,
            Err(e) if e.kind() == io::ErrorKind::NotConnected => match conn.stream.take_error() {
                Ok(Some(e)) | Err(e) => Some(e),
                // Still on its way: a later readiness tells.
                Ok(None) => return,
            },
            Err(e) => Some(e),
        };
        let held = conn.held_syn.take();
        if let Some(error) = failed {
            tracing::debug!(flow = ?key, %error, "host connect failed");
            self.events.refused += 1;
            self.remove(&key);
            if let Some(syn) = held {
                // No socket listens: smoltcp answers with RST.
                self.rx.push_back(syn);
            }
            return;
        }
        let handle = self.socket();
        let endpoint = IpListenEndpoint {
            addr: Some(IpAddress::Ipv4(key.dst)),
            port: key.dport,
        };
        if self
            .sockets
            .get_mut::<tcp::Socket>(handle)
            .listen(endpoint)
            .is_err()
        {
            self.parked.push(handle);
            self.events.refused += 1;
            self.remove(&key);
            return;
        }
        tracing::debug!(flow = ?key, "host connect done");
        if let Some(conn) = self.conns.get_mut(&key) {
            conn.socket = Some(handle);
            if let Ok(SocketAddr::V4(local)) = conn.stream.local_addr() {
                let remote = SocketAddrV4::new(key.dst, key.dport);
                self.events.opened.push((key, local, remote));
            }
        }
        if let Some(mut syn) = held {
            // The container's MSS is what its TSO frames are cut to;
            // smoltcp is told a larger one, so it sends whole ones.
            let mss = raise_mss(&mut syn);
            self.mss.insert(key, mss);
            // Taken in at once (first in the queue, alone), while this
            // socket is the only one listening on (destination, port) that
            // has no peer yet; its answer goes with the next poll.
            self.rx.push_front(syn);
            let now = self.now();
            let mut link = link!(self, frames);
            self.iface
                .poll_ingress_single(now, &mut link, &mut self.sockets);
        }
    }

    /// Closes flow `key` (its conntrack entry went): RST to the container
    /// if it was still open.
    pub fn close(&mut self, key: &FlowKey) {
        if let Some(handle) = self.conns.get(key).and_then(|c| c.socket) {
            self.sockets.get_mut::<tcp::Socket>(handle).abort();
        }
        self.remove(key);
    }

    fn remove(&mut self, key: &FlowKey) {
        self.mss.remove(key);
        if let Some(conn) = self.conns.remove(key) {
            // Closing the stream (its only fd) takes it out of the poll
            // set: no `epoll_ctl` of its own. An event of it still in this
            // round's batch finds no token.
            self.tokens.remove(&conn.token);
            if let Some(handle) = conn.socket {
                // A socket aborted above still has its RST to send: it is
                // removed after the next poll sent it.
                self.closing.push(handle);
            }
        }
    }

    /// A socket for a new connection: a parked one, else a new one.
    fn socket(&mut self) -> SocketHandle {
        let Some(handle) = self.parked.pop() else {
            return self.sockets.add(new_socket());
        };
        // What a connection may have set; `listen` and `connect` reset the
        // rest (state, buffers, timers).
        let socket = self.sockets.get_mut::<tcp::Socket>(handle);
        socket.set_timeout(None);
        socket.set_tsval_generator(None);
        handle
    }

    /// The socket of a removed connection, once its last segment (a RST)
    /// went: parked for the next connection when it is closed and inert
    /// (no peer left: it takes no segment and sends none), else dropped.
    /// One in TIME-WAIT is forgotten at once, as a dropped one would be
    /// (else it would take a new connection's segments between the same
    /// addresses): `listen` resets it without a segment and `abort` closes
    /// it again.
    fn retire(&mut self, handle: SocketHandle) {
        let socket = self.sockets.get_mut::<tcp::Socket>(handle);
        if socket.state() == State::TimeWait && socket.listen(1).is_ok() {
            socket.abort();
        }
        let inert = socket.state() == State::Closed && socket.remote_endpoint().is_none();
        if inert && self.parked.len() < PARKED {
            self.parked.push(handle);
        } else {
            self.sockets.remove(handle);
        }
    }

    /// Runs smoltcp and moves data both ways until nothing moves, or until
    /// every frame is queued; the packets for containers are queued in
    /// `frames`. Each pass takes in every segment from containers, then
    /// moves data between the sockets, then lets smoltcp send: so the ACK
    /// of a segment leaves with the data the host had ready (a published
    /// connection's first bytes with the ACK of the container's SYN-ACK:
    /// one segment, not two).
    pub fn poll(&mut self, frames: &mut Frames) {
        #[cfg(test)]
        if std::mem::take(&mut self.fail_next_poll) {
            panic!("a bug in the TCP relay, made by a test");
        }
        self.iface.poll_maintenance(self.now());
        for _ in 0..8 {
            let now = self.now();
            let mut link = link!(self, &mut *frames);
            while self
                .iface
                .poll_ingress_single(now, &mut link, &mut self.sockets)
                != PollIngressSingleResult::None
            {}
            let moved = self.pump();
            let mut link = link!(self, &mut *frames);
            while self.iface.poll_egress(now, &mut link, &mut self.sockets) != PollResult::None {}
            for handle in std::mem::take(&mut self.closing) {
                self.retire(handle);
            }
            if !moved || !frames.has_room() {
                break;
            }
        }
    }

    /// When smoltcp next needs [`TcpRelay::poll`] (retransmissions, delayed
    /// ACKs), from now.
    pub fn poll_delay(&mut self) -> Option<std::time::Duration> {
        let now = self.now();
        self.iface
            .poll_delay(now, &self.sockets)
            .map(|d| std::time::Duration::from_micros(d.total_micros()))
    }

    /// Moves data between every connection's two sockets; true when any
    /// moved (smoltcp then has something to send).
    fn pump(&mut self) -> bool {
        let mut moved = false;
        let mut done = Vec::new();
        for (key, conn) in &mut self.conns {
            let Some(handle) = conn.socket else {
                continue;
            };
            let socket = self.sockets.get_mut::<tcp::Socket>(handle);
            if conn.connecting && !matches!(socket.state(), State::SynSent | State::Closed) {
                // A published connection the container answered: its
                // conntrack entry exists now.
                if let Some((local, peer)) = conn.ends.take() {
                    self.events.opened.push((*key, local, peer));
                }
            }
            match pump_one(conn, socket) {
                Pumped::Moved => moved = true,
                Pumped::Idle => {}
                Pumped::Done => {
                    tracing::debug!(flow = ?key, state = %socket.state(), "relayed TCP connection done");
                    done.push(*key)
                }
            }
        }
        for key in done {
            self.remove(&key);
        }
        moved
    }

    /// The events of the passes since the last call.
    pub fn take_events(&mut self) -> TcpEvents {
        std::mem::take(&mut self.events)
    }
}

/// The offload state of `buf`, a packet smoltcp made (an IPv4 packet
/// after [`HEADROOM`] bytes): a TCP segment gets a partial checksum
/// (the pseudo-header's sum, which the device or the switch finishes
/// — smoltcp sums none, see the device's capabilities), and one whose
/// payload exceeds its connection's MSS becomes a TSO frame of that
/// MSS; anything else (complete checksums) stays as it is.
fn offload_for(mss: &HashMap<FlowKey, u16>, buf: &mut [u8]) -> Offload {
    let Some(ip_bytes) = buf.get_mut(HEADROOM..) else {
        return Offload::NONE;
    };
    let Ok(ip) = Ipv4Packet::new_checked(&*ip_bytes) else {
        return Offload::NONE;
    };
    let (src, dst, ip_len) = (ip.src(), ip.dst(), ip.header_len());
    let l4_len = usize::from(ip.total_len()).saturating_sub(ip_len);
    if ip.protocol() != protocol::TCP {
        return Offload::NONE;
    }
    let Ok(mut tcp) = TcpPacket::new_checked(&mut ip_bytes[ip_len..]) else {
        return Offload::NONE;
    };
    let key = FlowKey {
        proto: yard_nat::flow::Proto::Tcp,
        src: dst,
        sport: tcp.dst_port(),
        dst: src,
        dport: tcp.src_port(),
    };
    let header = tcp.header_len();
    tcp.set_checksum(checksum::pseudo_header_sum(
        src,
        dst,
        protocol::TCP,
        l4_len as u16,
    ));
    let csum_start = (HEADROOM + ip_len) as u16;
    let partial = Offload {
        flags: vnet::F_NEEDS_CSUM,
        gso_type: vnet::GSO_NONE,
        hdr_len: csum_start + header as u16,
        gso_size: 0,
        csum_start,
        csum_offset: yard_wire::tcp::CHECKSUM_OFFSET as u16,
    };
    let Some(&mss) = mss.get(&key) else {
        return partial;
    };
    // The MSS counts no options (RFC 6691): each segment's payload is
    // what is left of it after this segment's options (timestamps).
    let options = header.saturating_sub(yard_wire::tcp::HEADER_LEN);
    let mss = mss.saturating_sub(options as u16).max(1);
    if l4_len.saturating_sub(header) <= usize::from(mss) {
        return partial;
    }
    Offload {
        gso_type: vnet::GSO_TCPV4,
        gso_size: mss,
        ..partial
    }
}

/// A smoltcp socket as the relay uses them: [`FROM_CONTAINER_BUFFER`] to
/// receive, [`TO_CONTAINER_BUFFER`] to send,
/// no Nagle, ACKs delayed by at most 1 ms.
fn new_socket() -> tcp::Socket<'static> {
    let mut socket = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0u8; FROM_CONTAINER_BUFFER]),
        tcp::SocketBuffer::new(vec![0u8; TO_CONTAINER_BUFFER]),
    );
    socket.set_nagle_enabled(false);
    socket.set_ack_delay(Some(SmolDuration::from_millis(1)));
    socket
}

/// The TCP timestamps of published connections: milliseconds of the
/// monotonic clock, which grows across yardd restarts too.
fn monotonic_ms() -> u32 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        (t.tv_sec() as u64)
            .wrapping_mul(1000)
            .wrapping_add(t.tv_nsec() as u64 / 1_000_000) as u32
    })
}

/// Whether the TCP segment in the IPv4 packet `ip` has SYN set.
fn is_syn(ip: &[u8]) -> bool {
    Ipv4Packet::new_checked(ip)
        .ok()
        .and_then(|p| {
            TcpPacket::new_checked(p.payload())
                .ok()
                .map(|t| t.flags().syn())
        })
        .unwrap_or(false)
}

/// Sets the MSS option of the SYN `ip` (an IPv4 packet) to [`RELAY_MSS`];
/// returns the container's own (536, TCP's default, when it gave none).
fn raise_mss(ip: &mut [u8]) -> u16 {
    const DEFAULT_MSS: u16 = 536;
    let Ok(packet) = Ipv4Packet::new_checked(&mut *ip) else {
        return DEFAULT_MSS;
    };
    let at = packet.header_len();
    let Some(l4) = ip.get_mut(at..) else {
        return DEFAULT_MSS;
    };
    let Ok(mut tcp) = TcpPacket::new_checked(l4) else {
        return DEFAULT_MSS;
    };
    // smoltcp verifies no checksum: the field may stay as it is.
    tcp.set_mss(RELAY_MSS, L4Checksum::Partial)
        .unwrap_or(DEFAULT_MSS)
}

enum Pumped {
    Moved,
    Idle,
    Done,
}

/// Moves what can move between one connection's host stream and smoltcp
/// socket.
fn pump_one(conn: &mut Conn, socket: &mut tcp::Socket<'_>) -> Pumped {
    let mut moved = false;
    if conn.connecting && socket.state() != State::SynSent {
        // The container answered: from now on conntrack's timeouts rule.
        conn.connecting = false;
        socket.set_timeout(None);
    }
    // Container → host, as far as the host socket takes it.
    while conn.host_writable && socket.can_recv() {
        let stream = &mut conn.stream;
        let wrote = socket.recv(|buf| match stream.write(buf) {
            Ok(n) => (n, Ok(n)),
            Err(e) => (0, Err(e)),
        });
        match wrote {
            Ok(Ok(0)) => break,
            Ok(Ok(_)) => moved = true,
            Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => conn.host_writable = false,
            Ok(Err(_)) | Err(_) => {
                // The host reset the connection: so does the container's.
                socket.abort();
                return Pumped::Done;
            }
        }
    }
    // The container's FIN, once everything before it went to the host.
    let fin_in = matches!(
        socket.state(),
        State::CloseWait | State::LastAck | State::Closing | State::TimeWait
    );
    if fin_in && !socket.can_recv() && !conn.host_shut {
        let _ = conn.stream.shutdown(Shutdown::Write);
        conn.host_shut = true;
        moved = true;
    }
    // Host → container, as far as the smoltcp send buffer takes it.
    while conn.host_readable && !conn.host_eof && socket.can_send() {
        let stream = &mut conn.stream;
        let read = socket.send(|buf| match stream.read(buf) {
            Ok(n) => (n, Ok(n)),
            Err(e) => (0, Err(e)),
        });
        match read {
            Ok(Ok(0)) => {
                conn.host_eof = true;
                socket.close();
                moved = true;
            }
            Ok(Ok(_)) => moved = true,
            Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => conn.host_readable = false,
            Ok(Err(_)) | Err(_) => {
                socket.abort();
                return Pumped::Done;
            }
        }
    }
    match socket.state() {
        // Both sides are done.
        State::Closed | State::TimeWait if conn.host_shut => Pumped::Done,
        // Closed before the container's FIN: it reset the connection (or
        // smoltcp gave up on it), so the host's peer gets a RST too.
        State::Closed => {
            let _ = crate::sys::reset_on_close(&conn.stream);
            Pumped::Done
        }
        _ if moved => Pumped::Moved,
        _ => Pumped::Idle,
    }
}

#[cfg(test)]
mod tests {
    //! The relay's TCP against real host sockets on loopback (no root, no
    //! traffic beyond 127.0.0.1): what the container would see, as the
    //! packets the relay makes.

    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, TcpListener};
    use std::time::Duration;

    use etherparse::PacketBuilder;
    use mio::{Events, Poll};
    use yard_nat::flow::Proto;
    use yard_wire::ipv4::Ipv4Packet;
    use yard_wire::tcp::TcpPacket;

    use super::*;

    const C: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 2);
    const HOST: Ipv4Addr = Ipv4Addr::LOCALHOST;
    const SPORT: u16 = 40000;

    /// A segment the relay sent to the container: flags, seq, ack, payload.
    #[derive(Debug)]
    struct Seen {
        syn: bool,
        ack: bool,
        fin: bool,
        rst: bool,
        seq: u32,
        ack_num: u32,
        payload: Vec<u8>,
        /// The TSO segment size the relay gave it, if it is a TSO frame.
        gso_size: Option<u16>,
    }

    struct Rig {
        relay: TcpRelay,
        poll: Poll,
        events: Events,
        next: usize,
        port: u16,
        frames: Frames,
    }

    impl Rig {
        fn new(port: u16) -> Rig {
            Rig {
                relay: TcpRelay::new(),
                poll: Poll::new().unwrap(),
                events: Events::with_capacity(64),
                next: 0,
                port,
                frames: Frames::default(),
            }
        }

        fn key(&self) -> FlowKey {
            FlowKey {
                proto: Proto::Tcp,
                src: C,
                sport: SPORT,
                dst: HOST,
                dport: self.port,
            }
        }

        /// The container sends a segment.
        fn send(&mut self, syn: bool, fin: bool, seq: u32, ack: Option<u32>, payload: &[u8]) {
            let b = PacketBuilder::ipv4(C.octets(), HOST.octets(), 64)
                .tcp(SPORT, self.port, seq, 64000);
            let b = if syn {
                b.options(&[etherparse::TcpOptionElement::MaximumSegmentSize(1460)])
                    .unwrap()
                    .syn()
            } else {
                b
            };
            let b = if fin { b.fin() } else { b };
            let b = match ack {
                Some(a) => b.ack(a),
                None => b,
            };
            let mut ip = Vec::new();
            b.write(&mut ip, payload).unwrap();
            let key = self.key();
            let next = &mut self.next;
            let mut token = || {
                *next += 1;
                Token(*next)
            };
            self.relay.segment(
                self.poll.registry(),
                key,
                &ip,
                syn && ack.is_none(),
                &mut token,
            );
        }

        /// The container opens a connection to `listener` (seq 1000) and
        /// acknowledges the SYN-ACK; the host's end of it.
        fn establish(&mut self, listener: &TcpListener) -> std::net::TcpStream {
            self.establish_with_isn(listener).0
        }

        /// [`Rig::establish`], and the relay's initial sequence number.
        fn establish_with_isn(&mut self, listener: &TcpListener) -> (std::net::TcpStream, u32) {
            self.send(true, false, 1000, None, b"");
            let seen = self.run(25);
            let isn = seen.iter().find(|s| s.syn && s.ack).unwrap().seq;
            let (server, _) = listener.accept().unwrap();
            self.send(false, false, 1001, Some(isn + 1), b"");
            self.run(5);
            (server, isn)
        }

        /// Runs the relay for `rounds` rounds of at most 20 ms; the packets
        /// it sent (with their headroom), whatever their addresses.
        fn run_raw(&mut self, rounds: usize) -> Vec<Vec<u8>> {
            self.run_raw_with_offload(rounds)
                .into_iter()
                .map(|(b, _)| b)
                .collect()
        }

        /// [`Rig::run_raw`] with each packet's offload state.
        fn run_raw_with_offload(&mut self, rounds: usize) -> Vec<(Vec<u8>, Offload)> {
            let mut sent = Vec::new();
            for _ in 0..rounds {
                self.poll
                    .poll(&mut self.events, Some(Duration::from_millis(20)))
                    .unwrap();
                for e in self.events.iter() {
                    let readable = e.is_readable() || e.is_read_closed();
                    let writable = e.is_writable() || e.is_write_closed() || e.is_error();
                    self.relay
                        .host_ready(e.token(), (readable, writable), &mut self.frames);
                }
                self.relay.poll(&mut self.frames);
                while let Some(frame) = self.frames.oldest() {
                    sent.push((frame.data().to_vec(), frame.offload));
                    self.frames.give_back(frame);
                }
            }
            sent
        }

        /// Runs the relay for `rounds` rounds of at most 20 ms; what it
        /// sent the container, each segment's checksum checked.
        fn run(&mut self, rounds: usize) -> Vec<Seen> {
            let mut seen = Vec::new();
            for (mut buf, mut offload) in self.run_raw_with_offload(rounds) {
                let gso_size = offload.is_gso().then_some(offload.gso_size);
                // Every segment leaves with a partial checksum that,
                // finished as a device would, is right.
                assert!(offload.needs_csum(), "{offload:?}");
                if !offload.is_gso() {
                    yard_wire::offload::complete_checksum(&mut buf, &mut offload).unwrap();
                }
                let ip = Ipv4Packet::new_checked(&buf[HEADROOM..]).unwrap();
                assert_eq!((ip.src(), ip.dst()), (HOST, C));
                let t = TcpPacket::new_checked(ip.payload()).unwrap();
                if !offload.is_gso() {
                    assert!(t.verify_checksum(HOST, C), "a bad TCP checksum");
                }
                let f = t.flags();
                seen.push(Seen {
                    syn: f.syn(),
                    ack: f.ack(),
                    fin: f.fin(),
                    rst: f.rst(),
                    seq: t.seq(),
                    ack_num: t.ack(),
                    payload: t.payload().to_vec(),
                    gso_size,
                });
            }
            seen
        }
    }

    #[test]
    fn a_refused_host_connect_answers_the_syn_with_rst() {
        let port = {
            let l = TcpListener::bind((HOST, 0)).unwrap();
            l.local_addr().unwrap().port()
        };
        let mut rig = Rig::new(port);
        rig.send(true, false, 1000, None, b"");
        let seen = rig.run(50);
        assert!(
            seen.iter().any(|s| s.rst && s.ack && s.ack_num == 1001),
            "{seen:?}"
        );
        assert!(!seen.iter().any(|s| s.syn), "{seen:?}");
        assert_eq!(rig.relay.take_events().refused, 1);
        assert!(rig.relay.is_empty());
    }

    #[test]
    fn data_and_half_close_pass_both_ways() {
        let listener = TcpListener::bind((HOST, 0)).unwrap();
        let mut rig = Rig::new(listener.local_addr().unwrap().port());
        rig.send(true, false, 1000, None, b"");
        let seen = rig.run(25);
        let syn_ack = seen
            .iter()
            .find(|s| s.syn && s.ack)
            .unwrap_or_else(|| panic!("no SYN-ACK: {seen:?}"));
        assert_eq!(syn_ack.ack_num, 1001);
        let isn = syn_ack.seq;
        assert_eq!(rig.relay.take_events().opened.len(), 1);
        let (mut server, _) = listener.accept().unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();

        // Data and the container's FIN: the host side reads it all, then
        // end of file (shutdown(SHUT_WR)).
        rig.send(false, false, 1001, Some(isn + 1), b"");
        rig.send(false, true, 1001, Some(isn + 1), b"hello");
        rig.run(10);
        let mut got = Vec::new();
        server.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"hello");

        // The connection is half open: the host still answers, then ends.
        server.write_all(b"world").unwrap();
        drop(server);
        let seen = rig.run(25);
        let data: Vec<u8> = seen.iter().flat_map(|s| s.payload.clone()).collect();
        assert_eq!(data, b"world", "{seen:?}");
        assert!(seen.iter().any(|s| s.fin), "{seen:?}");
    }

    #[test]
    fn a_closed_connections_socket_serves_the_next_connection() {
        let listener = TcpListener::bind((HOST, 0)).unwrap();
        let mut rig = Rig::new(listener.local_addr().unwrap().port());
        // The container closes first, then the host (smoltcp ends in
        // CLOSED), then the other way round (it ends in TIME-WAIT), then
        // the first way again.
        for (round, container_first) in [true, false, true].into_iter().enumerate() {
            let (mut server, isn) = rig.establish_with_isn(&listener);
            server
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            if container_first {
                rig.send(false, true, 1001, Some(isn + 1), b"hello");
                rig.run(10);
                let mut got = Vec::new();
                server.read_to_end(&mut got).unwrap();
                assert_eq!(got, b"hello", "round {round}");
            }
            // The host closes; the container acknowledges its FIN (with
            // its own when it had not sent one yet).
            drop(server);
            let seen = rig.run(25);
            let fin = seen
                .iter()
                .find(|s| s.fin)
                .unwrap_or_else(|| panic!("round {round}: no FIN: {seen:?}"));
            if container_first {
                rig.send(false, false, 1007, Some(fin.seq + 1), b"");
            } else {
                rig.send(false, true, 1001, Some(fin.seq + 1), b"");
            }
            rig.run(5);
            assert!(rig.relay.is_empty(), "round {round}: still open");
            // The socket is closed and inert: kept, and taken by the next
            // connection rather than a new one.
            assert_eq!(rig.relay.parked.len(), 1, "round {round}");
            assert_eq!(rig.relay.sockets.iter().count(), 1, "round {round}");
            let socket = rig.relay.sockets.get::<tcp::Socket>(rig.relay.parked[0]);
            assert_eq!(socket.state(), State::Closed, "round {round}");
            // It sends nothing more.
            assert!(rig.run(3).is_empty(), "round {round}");
        }
    }

    #[test]
    fn a_reset_from_the_container_resets_the_host_connection() {
        let listener = TcpListener::bind((HOST, 0)).unwrap();
        let mut rig = Rig::new(listener.local_addr().unwrap().port());
        let mut server = rig.establish(&listener);
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        // RST (etherparse: the rst flag through the raw builder).
        let mut ip = Vec::new();
        PacketBuilder::ipv4(C.octets(), HOST.octets(), 64)
            .tcp(SPORT, rig.port, 1001, 0)
            .rst()
            .write(&mut ip, b"")
            .unwrap();
        let key = rig.key();
        rig.relay
            .segment(rig.poll.registry(), key, &ip, false, &mut || Token(999));
        rig.run(5);
        assert!(rig.relay.is_empty());
        let mut buf = [0u8; 8];
        let err = server.read(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");
    }

    #[test]
    fn data_for_the_container_leaves_as_tso_frames_of_its_mss() {
        let listener = TcpListener::bind((HOST, 0)).unwrap();
        let mut rig = Rig::new(listener.local_addr().unwrap().port());
        let mut server = rig.establish(&listener);
        server.write_all(&[7u8; 20_000]).unwrap();
        let seen = rig.run(10);
        let data: usize = seen.iter().map(|s| s.payload.len()).sum();
        assert_eq!(data, 20_000, "{seen:?}");
        // Larger than the container's MSS only as TSO frames of that MSS.
        assert!(seen.iter().any(|s| s.payload.len() > 1460), "{seen:?}");
        for s in &seen {
            let tso = s.payload.len() > 1460;
            assert_eq!(s.gso_size, tso.then_some(1460), "{s:?}");
        }
    }

    #[test]
    fn a_published_connection_opens_with_timestamps_acks_with_data_and_cuts_tso_frames() {
        // The host side: a client connected to a "published" listener.
        let listener = TcpListener::bind((HOST, 0)).unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, peer) = listener.accept().unwrap();
        accepted.set_nonblocking(true).unwrap();
        let stream = TcpStream::from_std(accepted);
        let ends = super::super::published::ends(&stream, peer).unwrap();
        let (local, peer) = ends;
        let mut rig = Rig::new(local.port());
        rig.relay
            .accepted(rig.poll.registry(), stream, ends, Token(7));

        // The relay opens towards the container: a SYN from the client's
        // address and port to the address it reached, with a timestamp.
        // Its host end is not reported before the container answers: the
        // SYN makes the conntrack entry it is reported to.
        let syn = rig.run_raw(5);
        assert!(rig.relay.take_events().opened.is_empty());
        let first = syn.first().expect("a SYN");
        let ip = Ipv4Packet::new_checked(&first[HEADROOM..]).unwrap();
        assert_eq!((ip.src(), ip.dst()), (*peer.ip(), *local.ip()));
        let t = TcpPacket::new_checked(ip.payload()).unwrap();
        assert!(t.flags().syn() && !t.flags().ack());
        assert_eq!((t.src_port(), t.dst_port()), (peer.port(), local.port()));
        let isn = t.seq();
        let tsval = timestamp_of(t.options()).expect("a timestamp option");

        // The client speaks first (as the connections/s benchmark does).
        client.write_all(b"x").unwrap();
        rig.run_raw(2);

        // The container answers (SYN-ACK, MSS 1460, timestamps), from the
        // address the client reached, as the gateway hands it back.
        let mut ip = Vec::new();
        PacketBuilder::ipv4(local.ip().octets(), peer.ip().octets(), 64)
            .tcp(local.port(), peer.port(), 5000, 64000)
            .options(&[
                etherparse::TcpOptionElement::MaximumSegmentSize(1460),
                etherparse::TcpOptionElement::Timestamp(1, tsval),
            ])
            .unwrap()
            .syn()
            .ack(isn.wrapping_add(1))
            .write(&mut ip, b"")
            .unwrap();
        let key = FlowKey {
            proto: Proto::Tcp,
            src: *local.ip(),
            sport: local.port(),
            dst: *peer.ip(),
            dport: peer.port(),
        };
        rig.relay
            .segment(rig.poll.registry(), key, &ip, false, &mut || Token(8));
        // One segment answers it: the ACK, with the client's byte.
        let answer = rig.run_raw(5);
        let segments: Vec<(bool, Vec<u8>)> = answer
            .iter()
            .map(|buf| {
                let ip = Ipv4Packet::new_checked(&buf[HEADROOM..]).unwrap();
                let t = TcpPacket::new_checked(ip.payload()).unwrap();
                (t.flags().ack(), t.payload().to_vec())
            })
            .collect();
        assert_eq!(segments, vec![(true, b"x".to_vec())]);
        let opened = rig.relay.take_events().opened;
        assert_eq!(opened, vec![(key, local, peer)]);

        // The client's data reaches the container as TSO frames whose
        // segments leave room for the 12 bytes of timestamps: 1448.
        client.write_all(&[7u8; 20_000]).unwrap();
        let mut data = 0;
        let mut sizes = Vec::new();
        for (buf, offload) in rig.run_raw_with_offload(10) {
            let gso = offload.is_gso().then_some(offload.gso_size);
            let ip = Ipv4Packet::new_checked(&buf[HEADROOM..]).unwrap();
            let t = TcpPacket::new_checked(ip.payload()).unwrap();
            data += t.payload().len();
            sizes.push((t.payload().len(), gso));
        }
        assert_eq!(data, 20_000, "{sizes:?}");
        assert!(sizes.iter().any(|&(n, _)| n > 1448), "{sizes:?}");
        for (n, gso) in sizes {
            assert_eq!(gso, (n > 1448).then_some(1448), "{n}");
        }
    }

    /// The TSval of a TCP timestamp option in `options`.
    fn timestamp_of(options: &[u8]) -> Option<u32> {
        let mut i = 0;
        while i < options.len() {
            match options[i] {
                0 => return None,
                1 => i += 1,
                8 if i + 10 <= options.len() => {
                    return Some(u32::from_be_bytes(options[i + 2..i + 6].try_into().ok()?))
                }
                _ => i += usize::from(*options.get(i + 1)?).max(2),
            }
        }
        None
    }
}
