//! The host uplink's relay: the containers' flows to the outside carried
//! through yardd's own host sockets (see `docs/ARCHITECTURE.md`, "The host
//! uplink").
//!
//! - [`flows`]: pure — what a packet asks of the host, and the packets that
//!   carry the answers back;
//! - [`thread`]: the relay thread, which owns every host socket;
//! - [`published`]: published ports' listening host sockets;
//! - this module: the link between the home datapath thread and the relay
//!   thread ([`link`]), two bounded queues used only with
//!   `try_send`/`try_recv`, whose packet buffers go back and forth so none
//!   is allocated per packet once the pool is made, and an unbounded one
//!   for the rare orders about listening sockets, which must not be lost.

pub mod flows;
pub mod published;
pub mod tcp;
pub mod thread;

use std::io;
use std::net::SocketAddrV4;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use mio::{Poll, Waker};
use yard_nat::conntrack::RuleId;
use yard_nat::flow::FlowKey;
use yard_wire::offload::Offload;

pub use thread::HostRelay;

/// Packets (and closes) that may wait for the relay thread.
const TO_RELAY: usize = 1024;
/// Packets (and reports) that may wait for the home thread.
const TO_HOME: usize = 1024;
/// Packet buffers in each direction's pool: as many as the queues hold, so
/// a burst (a thousand SYNs) waits rather than drops.
const POOL: usize = 1024;
/// A pool buffer's first capacity; each grows to the largest packet it
/// carried (at most [`BUFFER`]) and keeps that, so the pools' memory
/// follows the traffic: at most 2 × [`POOL`] × [`BUFFER`] (128 MiB).
const FIRST_CAPACITY: usize = 2048;
/// The size of a packet buffer: the largest IPv4 packet and its headroom.
pub const BUFFER: usize = 65_536 + flows::HEADROOM;

/// What the home thread tells the relay.
pub enum ToRelay {
    /// A container's IPv4 packet for the host (in `buf[..len]`).
    Packet {
        /// The buffer, from the home side's pool.
        buf: Vec<u8>,
        /// The packet's length.
        len: usize,
    },
    /// The flow's conntrack entry went: close its socket.
    Close(FlowKey),
}

/// Orders about published ports' listening sockets.
pub enum Listening {
    /// Serve these (a rule published, or the host uplink set).
    Start(published::HostSockets),
    /// Close rule's sockets (unpublished).
    Stop(RuleId),
    /// Close them all (the host uplink went).
    StopAll,
}

/// What the relay tells the home thread.
pub enum FromRelay {
    /// A packet for a container: `buf[..len]`, an IPv4 packet after
    /// [`flows::HEADROOM`] bytes, with its offload state (a TCP segment
    /// larger than the container's MSS is a TSO frame with a partial
    /// checksum; everything else is [`Offload::NONE`]).
    Packet {
        /// The buffer, from the relay side's pool.
        buf: Vec<u8>,
        /// The length in use.
        len: usize,
        /// Its offload state, offsets counted from the buffer's start.
        offload: Offload,
    },
    /// The flow's host socket is open: its local and remote address.
    Opened {
        /// The flow (the container's tuple).
        key: FlowKey,
        /// The socket's local address.
        local: SocketAddrV4,
        /// The socket's remote address.
        remote: SocketAddrV4,
    },
}

/// The home thread's end of the link.
pub struct RelayLink {
    to_relay: Sender<ToRelay>,
    /// Empty buffers for packets to the relay (it sends them back).
    spares: Receiver<Vec<u8>>,
    from_relay: Receiver<FromRelay>,
    /// Where buffers of packets from the relay go back.
    returns: Sender<Vec<u8>>,
    relay_waker: Arc<Waker>,
    /// Something was sent since the last wake.
    unwoken: bool,
    listening: Sender<Listening>,
}

impl RelayLink {
    /// Hands the IPv4 packet `ip` to the relay; false when its queue or
    /// its pool is empty (the packet is dropped, the caller counts it).
    pub fn send_packet(&mut self, ip: &[u8]) -> bool {
        let Ok(mut buf) = self.spares.try_recv() else {
            return false;
        };
        buf.clear();
        buf.extend_from_slice(ip);
        let len = ip.len();
        match self.to_relay.try_send(ToRelay::Packet { buf, len }) {
            Ok(()) => {
                self.unwoken = true;
                true
            }
            Err(_) => false,
        }
    }

    /// Tells the relay to close `key`'s socket (dropped when the queue is
    /// full: the relay's own idle check closes it later).
    pub fn close(&mut self, key: FlowKey) {
        if self.to_relay.try_send(ToRelay::Close(key)).is_ok() {
            self.unwoken = true;
        }
    }

    /// Gives the relay an order about listening sockets, and wakes it.
    pub fn listening(&mut self, order: Listening) {
        // Unbounded: fails only when the relay thread is gone.
        let _ = self.listening.send(order);
        let _ = self.relay_waker.wake();
    }

    /// Wakes the relay thread if anything was sent since the last call.
    pub fn wake(&mut self) {
        if std::mem::take(&mut self.unwoken) {
            let _ = self.relay_waker.wake();
        }
    }

    /// The next thing the relay sent, if any.
    pub fn next(&self) -> Option<FromRelay> {
        self.from_relay.try_recv().ok()
    }

    /// Gives a packet buffer back to the relay.
    pub fn give_back(&self, buf: Vec<u8>) {
        let _ = self.returns.try_send(buf);
    }
}

/// Makes the link between the home thread (woken by `home_waker`) and a new
/// relay thread, which [`HostRelay::run`] runs.
pub fn link(home_waker: Arc<Waker>) -> io::Result<(RelayLink, HostRelay)> {
    let poll = Poll::new()?;
    let relay_waker = Arc::new(Waker::new(poll.registry(), thread::WAKER)?);
    let (to_relay, relay_rx) = crossbeam_channel::bounded(TO_RELAY);
    let (relay_tx, from_relay) = crossbeam_channel::bounded(TO_HOME);
    let (spares_tx, spares) = crossbeam_channel::bounded(POOL);
    let (returns, relay_pool) = crossbeam_channel::bounded(POOL);
    for _ in 0..POOL {
        let _ = spares_tx.try_send(Vec::with_capacity(FIRST_CAPACITY));
        let _ = returns.try_send(Vec::with_capacity(FIRST_CAPACITY));
    }
    let repool = returns.clone();
    let (listening, orders) = crossbeam_channel::unbounded();
    let home = RelayLink {
        to_relay,
        spares,
        from_relay,
        returns,
        relay_waker,
        unwoken: false,
        listening,
    };
    let relay = HostRelay::new(
        poll,
        (relay_rx, orders),
        spares_tx,
        relay_tx,
        (relay_pool, repool),
        home_waker,
    );
    Ok((home, relay))
}
