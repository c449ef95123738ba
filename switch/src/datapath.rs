//! The datapath thread: a `mio` poll loop over every port's fd that drains each
//! ready port in batches through the [`Bridge`], and applies the control
//! thread's [`Command`]s between batches.
//!
//! The datapath owns the bridge — ports, networks, FDBs — so the per-frame path
//! takes no lock. Control talks to it only through a channel plus a
//! [`mio::Waker`]; every command carries a reply channel so the control thread
//! knows when it took effect. Readiness is edge-triggered: a port is read until
//! it has nothing more, at most [`BATCH`] frames at a time; a port that still
//! had frames after a batch is served again in the next round before the loop
//! sleeps, so one busy port cannot starve the others.

use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use yard_ctl::api::{FdbEntry, NetworkSpec, PortStats};
use yard_ctl::MacAddr;

use crate::bridge::{Bridge, BridgeError};
use crate::capture::CaptureTap;
use crate::fdb::Millis;
use crate::frame::Frame;
use crate::port::{Port, PortId};

/// Frames read from one port before the loop moves to the next.
pub const BATCH: usize = 32;

/// How often learned FDB entries are aged out.
const EXPIRE_EVERY: Duration = Duration::from_secs(1);

const WAKER: Token = Token(usize::MAX);

/// How a port joins networks, by name.
#[derive(Debug, Clone)]
pub enum Membership {
    /// One network, untagged.
    Access(String),
    /// Several networks, each tagged with its VLAN id.
    Trunk(Vec<String>),
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
}

/// A command with its reply channel.
pub struct Command {
    /// What to do.
    pub op: Op,
    /// Where the result goes.
    pub reply: Sender<Result<Answer, BridgeError>>,
}

/// The control thread's handle on the datapath.
#[derive(Clone)]
pub struct DatapathHandle {
    commands: Sender<Command>,
    waker: std::sync::Arc<Waker>,
}

impl DatapathHandle {
    /// Sends `op` and waits for the datapath's answer.
    pub fn call(&self, op: Op) -> Result<Answer, DatapathError> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        self.commands
            .send(Command { op, reply })
            .map_err(|_| DatapathError::Gone)?;
        self.waker.wake().map_err(DatapathError::Wake)?;
        match answer.recv_timeout(Duration::from_secs(10)) {
            Ok(result) => result.map_err(DatapathError::Refused),
            Err(_) => Err(DatapathError::Gone),
        }
    }
}

/// Why a command did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    /// The bridge refused it.
    #[error(transparent)]
    Refused(#[from] BridgeError),
    /// The datapath thread is not running.
    #[error("the datapath thread is not answering (see yardd's log)")]
    Gone,
    /// The waker failed.
    #[error("cannot wake the datapath thread: {0}")]
    Wake(io::Error),
}

/// The datapath: poll loop, bridge and frame pool.
pub struct Datapath {
    poll: Poll,
    bridge: Bridge,
    commands: Receiver<Command>,
    pool: Vec<Frame>,
    pending: Vec<PortId>,
    epoch: Instant,
}

impl Datapath {
    /// Creates the datapath and the handle the control thread uses.
    pub fn new(port_mac_limit: u32) -> io::Result<(Datapath, DatapathHandle)> {
        let poll = Poll::new()?;
        let waker = std::sync::Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (tx, rx) = crossbeam_channel::unbounded();
        let datapath = Datapath {
            poll,
            bridge: Bridge::new(port_mac_limit),
            commands: rx,
            pool: (0..BATCH).map(|_| Frame::new()).collect(),
            pending: Vec::with_capacity(64),
            epoch: Instant::now(),
        };
        Ok((
            datapath,
            DatapathHandle {
                commands: tx,
                waker,
            },
        ))
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
            let timeout = if self.pending.is_empty() {
                next_expiry.saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            ready.clear();
            ready.append(&mut self.pending);
            for event in events.iter() {
                if event.token() == WAKER {
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
            if !self.apply_commands() {
                return Ok(());
            }
            if Instant::now() >= next_expiry {
                let now = self.now();
                self.bridge.expire(now);
                next_expiry = Instant::now() + EXPIRE_EVERY;
            }
        }
    }

    /// Reads one batch from a port and forwards it.
    fn serve_port(&mut self, id: PortId) {
        let now = self.now();
        let (n, result) = self.bridge.receive(id, &mut self.pool);
        for frame in &mut self.pool[..n] {
            self.bridge.process(id, frame, now);
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

    fn apply(&mut self, op: Op) -> Result<Answer, BridgeError> {
        let now = self.now();
        match op {
            Op::AddNetwork(spec) => self.bridge.add_network(&spec).map(|_| Answer::Done),
            Op::RemoveNetwork(name) => self.bridge.remove_network(&name).map(|_| Answer::Done),
            Op::AddPort {
                name,
                port,
                membership,
                mtu,
            } => {
                let attachment = match &membership {
                    Membership::Access(net) => self.bridge.access(net)?,
                    Membership::Trunk(nets) => self.bridge.trunk(nets)?,
                };
                let fd = port.raw_fd();
                let id = self.bridge.add_port(&name, port, attachment, mtu)?;
                if let Some(fd) = fd {
                    if let Err(e) = self.register(fd, id) {
                        let _ = self.bridge.remove_port(&name);
                        tracing::error!(port = %name, error = %e, "cannot poll port");
                        return Err(BridgeError::NoPort(name));
                    }
                    // Frames may already be queued: edge-triggered polling would
                    // not report them, so serve the port once now.
                    self.pending.push(id);
                }
                Ok(Answer::Done)
            }
            Op::RemovePort(name) => {
                let (id, slot) = self.bridge.remove_port(&name)?;
                if let Some(fd) = slot.port.raw_fd() {
                    let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
                }
                self.pending.retain(|p| *p != id);
                drop(slot);
                Ok(Answer::Done)
            }
            Op::FdbAdd { net, mac, port } => {
                self.bridge.fdb_add(&net, mac, &port).map(|_| Answer::Done)
            }
            Op::FdbDel { net, mac } => self.bridge.fdb_del(&net, &mac).map(|found| {
                if found {
                    Answer::Done
                } else {
                    Answer::NotFound
                }
            }),
            Op::FdbFlush(net) => self.bridge.fdb_flush(net.as_deref()).map(|_| Answer::Done),
            Op::Capture { port, tap } => self.bridge.add_capture(&port, tap).map(|_| Answer::Done),
            Op::PortStats(name) => self
                .bridge
                .port_stats(name.as_deref())
                .map(Answer::PortStats),
            Op::Fdb(net) => self
                .bridge
                .fdb_entries(net.as_deref(), now)
                .map(Answer::Fdb),
            Op::NetFigures => Ok(Answer::NetFigures(
                self.bridge
                    .networks()
                    .map(|n| NetFigures {
                        name: n.name.clone(),
                        fdb_entries: n.fdb.len(now),
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
