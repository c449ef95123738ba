//! The control thread's handle on the datapath threads. It sends each
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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::Sender;
use mio::Waker;
use yard_ctl::api::{FdbEntry, PortStats};

use super::mesh::HOME;
use super::{Answer, Command, NetFigures, Op};
use crate::dataplane::bridge::BridgeError;

/// One datapath thread's command queue.
#[derive(Clone)]
pub(super) struct ThreadHandle {
    pub(super) commands: Sender<Command>,
    pub(super) waker: Arc<Waker>,
}

impl ThreadHandle {
    fn call(&self, op: Op) -> Result<Answer, DatapathError> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        self.commands
            .send(Command { op, reply })
            .map_err(|_| DatapathError::Gone)?;
        self.waker.wake().map_err(DatapathError::Wake)?;
        match answer.recv_timeout(Duration::from_secs(10)) {
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
    /// Also serialises calls: every thread applies commands in one order.
    placement: Arc<Mutex<Placement>>,
}

/// Why a command did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    /// The bridge refused it.
    #[error(transparent)]
    Refused(#[from] BridgeError),
    /// The gateway refused it.
    #[error("{0}")]
    Gateway(String),
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

    fn placement(&self) -> std::sync::MutexGuard<'_, Placement> {
        self.placement
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends `op` to the threads it concerns and waits for their answer.
    pub fn call(&self, op: Op) -> Result<Answer, DatapathError> {
        let mut placement = self.placement();
        if self.threads.len() == 1 {
            if let Op::AddPort { name, .. } = &op {
                placement.reader.insert(name.clone(), HOME);
            }
            let removed = match &op {
                Op::RemovePort(name) => Some(name.clone()),
                _ => None,
            };
            let answer = self.threads[HOME].call(op)?;
            if let Some(name) = removed {
                placement.reader.remove(&name);
            }
            return Ok(answer);
        }
        match op {
            Op::AddNetwork(spec) => self.all(|| Op::AddNetwork(spec.clone())),
            Op::RemoveNetwork(name) => self.all(|| Op::RemoveNetwork(name.clone())),
            Op::AddPort {
                name,
                port,
                membership,
                mtu,
                tunnel,
                ..
            } => {
                // Tunnels receive through sockets the home thread reads.
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
                            port: name.clone(),
                            error,
                        })?)
                    });
                }
                let (mut port, mut tunnel) = (Some(port), tunnel);
                for (thread, handle) in handles.into_iter().enumerate() {
                    let Some(device) = handle.or_else(|| port.take()) else {
                        continue;
                    };
                    let op = Op::AddPort {
                        name: name.clone(),
                        port: device,
                        membership: membership.clone(),
                        mtu,
                        reads: thread == reader,
                        tunnel: if thread == HOME { tunnel.take() } else { None },
                    };
                    if let Err(e) = self.threads[thread].call(op) {
                        for earlier in &self.threads[..thread] {
                            let _ = earlier.call(Op::RemovePort(name.clone()));
                        }
                        return Err(e);
                    }
                }
                placement.reader.insert(name, reader);
                placement.load[reader] += 1;
                Ok(Answer::Done)
            }
            Op::RemovePort(name) => {
                let answer = self.all(|| Op::RemovePort(name.clone()))?;
                if let Some(reader) = placement.reader.remove(&name) {
                    placement.load[reader] -= 1;
                }
                Ok(answer)
            }
            Op::FdbAdd { net, mac, port } => self.all(|| Op::FdbAdd {
                net: net.clone(),
                mac,
                port: port.clone(),
            }),
            Op::FdbDel { net, mac } => {
                let answers = self.each(|| Op::FdbDel {
                    net: net.clone(),
                    mac,
                })?;
                let found = answers.iter().any(|a| matches!(a, Answer::Done));
                Ok(if found {
                    Answer::Done
                } else {
                    Answer::NotFound
                })
            }
            Op::FdbFlush(net) => self.all(|| Op::FdbFlush(net.clone())),
            Op::Capture { port, tap } => self.all(|| Op::Capture {
                port: port.clone(),
                tap: tap.clone(),
            }),
            Op::PortStats(name) => {
                let answers = self.each(|| Op::PortStats(name.clone()))?;
                Ok(Answer::PortStats(sum_port_stats(answers)))
            }
            Op::Fdb(net) => {
                let answers = self.each(|| Op::Fdb(net.clone()))?;
                Ok(Answer::Fdb(join_fdb(answers)))
            }
            Op::NetFigures => Ok(Answer::NetFigures(sum_figures(
                self.each(|| Op::NetFigures)?,
            ))),
            Op::Shutdown => self.all(|| Op::Shutdown),
            home_only => self.threads[HOME].call(home_only),
        }
    }

    /// Sends an op to every thread in order; their answers. Every bridge holds
    /// the same networks and ports, so when one refuses, the first does, and
    /// nothing has changed anywhere.
    fn each(&self, mut make: impl FnMut() -> Op) -> Result<Vec<Answer>, DatapathError> {
        self.threads.iter().map(|t| t.call(make())).collect()
    }

    /// As [`each`](Self::each); the home thread's answer.
    fn all(&self, make: impl FnMut() -> Op) -> Result<Answer, DatapathError> {
        let mut answers = self.each(make)?;
        Ok(answers.swap_remove(HOME))
    }
}

/// Each thread's counters of the same ports, added up.
fn sum_port_stats(answers: Vec<Answer>) -> Vec<PortStats> {
    let mut total: Vec<PortStats> = Vec::new();
    for answer in answers {
        let Answer::PortStats(stats) = answer else {
            continue;
        };
        for stat in stats {
            match total.iter_mut().find(|t| t.name == stat.name) {
                Some(t) => {
                    t.rx_packets += stat.rx_packets;
                    t.rx_bytes += stat.rx_bytes;
                    t.tx_packets += stat.tx_packets;
                    t.tx_bytes += stat.tx_bytes;
                    for (reason, n) in stat.drops {
                        *t.drops.entry(reason).or_insert(0) += n;
                    }
                }
                None => total.push(stat),
            }
        }
    }
    total
}

/// The threads' FDB listings as one: an address two threads report (it
/// moved between them a moment ago) appears once, as last seen.
fn join_fdb(answers: Vec<Answer>) -> Vec<FdbEntry> {
    let mut all: Vec<FdbEntry> = answers
        .into_iter()
        .flat_map(|a| match a {
            Answer::Fdb(entries) => entries,
            _ => Vec::new(),
        })
        .collect();
    all.sort_by(|a, b| (&a.net, a.mac, a.age_secs).cmp(&(&b.net, b.mac, b.age_secs)));
    all.dedup_by(|later, kept| later.net == kept.net && later.mac == kept.mac);
    all.sort_by(|a, b| (&a.net, &a.port, a.mac).cmp(&(&b.net, &b.port, b.mac)));
    all
}

/// Each thread's figures of the same networks, added up.
fn sum_figures(answers: Vec<Answer>) -> Vec<NetFigures> {
    let mut total: Vec<NetFigures> = Vec::new();
    for answer in answers {
        let Answer::NetFigures(figures) = answer else {
            continue;
        };
        for fig in figures {
            match total.iter_mut().find(|t| t.name == fig.name) {
                Some(t) => {
                    t.fdb_entries += fig.fdb_entries;
                    t.mac_moves += fig.mac_moves;
                }
                None => total.push(fig),
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use yard_ctl::MacAddr;

    fn entry(mac: u8, port: &str, age: u64) -> FdbEntry {
        FdbEntry {
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
            Answer::Fdb(vec![entry(1, "b", 5), entry(2, "a", 0)]),
            Answer::Fdb(vec![entry(1, "c", 1), entry(3, "a", 2)]),
        ]);
        assert_eq!(
            joined,
            vec![entry(2, "a", 0), entry(3, "a", 2), entry(1, "c", 1)]
        );
    }

    #[test]
    fn counters_of_one_port_add_up() {
        let stats = |rx, drops: &[(&str, u64)]| PortStats {
            name: "p".into(),
            rx_packets: rx,
            rx_bytes: rx * 100,
            tx_packets: 1,
            tx_bytes: 100,
            drops: drops.iter().map(|(r, n)| (r.to_string(), *n)).collect(),
        };
        let total = sum_port_stats(vec![
            Answer::PortStats(vec![stats(3, &[("too-big", 1)])]),
            Answer::PortStats(vec![stats(0, &[("too-big", 2), ("tx-error", 1)])]),
        ]);
        assert_eq!(
            total,
            vec![PortStats {
                name: "p".into(),
                rx_packets: 3,
                rx_bytes: 300,
                tx_packets: 2,
                tx_bytes: 200,
                drops: [("too-big".to_string(), 3), ("tx-error".to_string(), 1)].into(),
            }]
        );
    }
}
