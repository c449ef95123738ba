//! What the datapath threads of `yardd --threads N` pass each other, over
//! bounded queues used only with `try_send`/`try_recv` (crossbeam's array
//! channels: lock-free while nobody blocks on them, and nobody does):
//!
//! - announcements: what one thread's bridge learned ([`Announcement`]), to
//!   every other thread;
//! - membership news: what one thread's multicast snooping heard on its
//!   ports ([`MembershipNews`]: reports, leaves, queries), to every other
//!   thread, so each thread's table lists every port's groups;
//! - flows: the connections one thread's firewall rules allowed
//!   ([`FlowNews`]), to every other thread, sent before the frame that
//!   opened them goes on (each bridge holds its [`FlowLink`]);
//! - handoffs: frames for the L3 gateway, from the thread that received them
//!   to thread [`HOME`], which owns the gateway, the uplink and the tunnel
//!   sockets;
//! - spares: empty frames going back to the thread that handed a frame over.
//!   A handoff swaps the received frame for one of its thread's spares, so
//!   nothing is copied or allocated per frame.
//!
//! A full queue drops. A lost announcement is repeated while its address is
//! live (see [`crate::dataplane::fdb`]); meanwhile the address's frames are flooded,
//! which is correct. A lost flow is announced again a second later while it carries
//! packets, and a thread about to deny a flow first takes in what it was
//! told. A lost membership is heard again with the port's
//! answer to the next general query (at most 125 s). A lost handoff counts as `gateway-busy` on the port it
//! came from, like a full transmit queue.

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use mio::Waker;

use crate::dataplane::bridge::multicast::MembershipNews;
use crate::dataplane::bridge::rules::{FlowLink, FlowNews};
use crate::dataplane::bridge::{Announcement, NetId};
use crate::dataplane::frame::Frame;

/// The thread that owns the gateway, the uplink and the tunnel sockets.
pub const HOME: usize = 0;

/// Announcements a thread may have waiting before more are dropped.
const ANNOUNCEMENT_QUEUE: usize = 4096;

/// Frames for the gateway that may be waiting for thread [`HOME`].
const HANDOFF_QUEUE: usize = 1024;

/// Spare frames per thread other than [`HOME`]: how many of its frames may be
/// with the gateway at once (64 KiB each).
const SPARE_FRAMES: usize = 128;

/// A frame for the gateway, and the thread its frame buffer goes back to.
pub struct Handoff {
    /// The thread that received it.
    pub from: usize,
    /// The network it arrived in.
    pub net: NetId,
    /// The frame, as the bridge leaves it for the gateway.
    pub frame: Frame,
}

struct Queue<T> {
    tx: Sender<T>,
    rx: Receiver<T>,
}

impl<T> Queue<T> {
    fn bounded(capacity: usize) -> Self {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        Queue { tx, rx }
    }
}

/// The queues and wakers of every datapath thread.
pub struct Mesh {
    wakers: Vec<Arc<Waker>>,
    announcements: Vec<Queue<Announcement>>,
    memberships: Vec<Queue<MembershipNews>>,
    flows: Vec<Queue<FlowNews>>,
    handoffs: Queue<Handoff>,
    spares: Vec<Queue<Frame>>,
}

impl Mesh {
    /// The mesh of as many threads as `wakers`, thread `i` woken by
    /// `wakers[i]`. With one thread it holds no frames.
    pub fn new(wakers: Vec<Arc<Waker>>) -> Mesh {
        let threads = wakers.len();
        let spares: Vec<Queue<Frame>> = (0..threads)
            .map(|thread| {
                let count = if thread == HOME { 0 } else { SPARE_FRAMES };
                let queue = Queue::bounded(count.max(1));
                for _ in 0..count {
                    let _ = queue.tx.try_send(Frame::new());
                }
                queue
            })
            .collect();
        Mesh {
            announcements: (0..threads)
                .map(|_| Queue::bounded(ANNOUNCEMENT_QUEUE))
                .collect(),
            memberships: (0..threads)
                .map(|_| Queue::bounded(ANNOUNCEMENT_QUEUE))
                .collect(),
            flows: (0..threads)
                .map(|_| Queue::bounded(ANNOUNCEMENT_QUEUE))
                .collect(),
            handoffs: Queue::bounded(if threads > 1 { HANDOFF_QUEUE } else { 1 }),
            spares,
            wakers,
        }
    }

    /// Number of datapath threads.
    pub fn threads(&self) -> usize {
        self.wakers.len()
    }

    /// Thread `thread`'s end of the flow announcements, for its bridge.
    pub fn flow_link(&self, thread: usize) -> FlowLink {
        let others = self
            .flows
            .iter()
            .enumerate()
            .filter(|(t, _)| *t != thread)
            .map(|(_, q)| q.tx.clone())
            .collect();
        FlowLink::new(others, self.flows[thread].rx.clone())
    }

    /// Tells every thread but `from` what `from` learned.
    pub fn announce(&self, from: usize, news: Announcement) {
        for (thread, queue) in self.announcements.iter().enumerate() {
            if thread != from {
                let _ = queue.tx.try_send(news);
            }
        }
    }

    /// What the other threads told `thread`, at most one queue's worth.
    pub fn heard(&self, thread: usize) -> impl Iterator<Item = Announcement> + '_ {
        self.announcements[thread]
            .rx
            .try_iter()
            .take(ANNOUNCEMENT_QUEUE)
    }

    /// Tells every thread but `from` what `from`'s multicast snooping heard.
    pub fn announce_membership(&self, from: usize, news: MembershipNews) {
        for (thread, queue) in self.memberships.iter().enumerate() {
            if thread != from {
                let _ = queue.tx.try_send(news);
            }
        }
    }

    /// What the other threads' snooping told `thread`, at most one queue's
    /// worth.
    pub fn heard_memberships(&self, thread: usize) -> impl Iterator<Item = MembershipNews> + '_ {
        self.memberships[thread]
            .rx
            .try_iter()
            .take(ANNOUNCEMENT_QUEUE)
    }

    /// Hands `frame`, received by thread `from` in network `net`, to the
    /// gateway's thread, leaving a spare frame in its place. False when no
    /// spare or no room was left: the frame stays where it was.
    pub fn hand_over(&self, from: usize, net: NetId, frame: &mut Frame) -> bool {
        let Ok(mut spare) = self.spares[from].rx.try_recv() else {
            return false;
        };
        std::mem::swap(frame, &mut spare);
        let handoff = Handoff {
            from,
            net,
            frame: spare,
        };
        match self.handoffs.tx.try_send(handoff) {
            Ok(()) => true,
            Err(full) => {
                let mut handoff = full.into_inner();
                std::mem::swap(frame, &mut handoff.frame);
                let _ = self.spares[from].tx.try_send(handoff.frame);
                false
            }
        }
    }

    /// The next frame handed to the gateway's thread.
    pub fn next_handoff(&self) -> Option<Handoff> {
        self.handoffs.rx.try_recv().ok()
    }

    /// Returns a handed-over frame's buffer to its thread's spares.
    pub fn give_back(&self, handoff: Handoff) {
        let _ = self.spares[handoff.from].tx.try_send(handoff.frame);
    }

    /// Wakes `thread` from its poll.
    pub fn wake(&self, thread: usize) {
        if let Err(e) = self.wakers[thread].wake() {
            tracing::warn!(thread, error = %e, "cannot wake a datapath thread");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Poll, Token};
    use yard_ctl::MacAddr;

    use crate::dataplane::port::PortId;
    use yard_wire::offload::Offload;

    fn mesh(threads: usize) -> (Vec<Poll>, Mesh) {
        let polls: Vec<Poll> = (0..threads).map(|_| Poll::new().unwrap()).collect();
        let wakers = polls
            .iter()
            .map(|p| Arc::new(Waker::new(p.registry(), Token(0)).unwrap()))
            .collect();
        (polls, Mesh::new(wakers))
    }

    #[test]
    fn announcements_reach_every_other_thread() {
        let (_polls, mesh) = mesh(3);
        let news = Announcement {
            net: NetId(0),
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            port: PortId(4),
            generation: 7,
        };
        mesh.announce(1, news);
        assert_eq!(mesh.heard(0).collect::<Vec<_>>(), vec![news]);
        assert_eq!(mesh.heard(1).count(), 0, "not back to the sender");
        assert_eq!(mesh.heard(2).collect::<Vec<_>>(), vec![news]);
        assert_eq!(mesh.heard(2).count(), 0, "heard once");
    }

    #[test]
    fn a_handoff_swaps_frames_and_its_buffer_comes_back() {
        let (_polls, mesh) = mesh(2);
        let mut frame = Frame::new();
        frame.fill(Offload::NONE, &[0xab; 60]);
        assert!(mesh.hand_over(1, NetId(3), &mut frame));
        assert_ne!(frame.data(), &[0xab; 60][..], "a spare took its place");
        let handoff = mesh.next_handoff().expect("the frame reached home");
        assert_eq!((handoff.from, handoff.net), (1, NetId(3)));
        assert_eq!(handoff.frame.data(), &[0xab; 60][..]);
        mesh.give_back(handoff);
        assert!(mesh.next_handoff().is_none());
        // Every spare handed over and none given back: the next one fails
        // and leaves the frame in place.
        let mut held = Vec::new();
        for _ in 0..SPARE_FRAMES {
            assert!(mesh.hand_over(1, NetId(3), &mut frame));
            held.push(mesh.next_handoff().unwrap());
        }
        frame.fill(Offload::NONE, &[0xcd; 60]);
        assert!(!mesh.hand_over(1, NetId(3), &mut frame), "no spare left");
        assert_eq!(frame.data(), &[0xcd; 60][..], "the frame stays");
        held.into_iter().for_each(|h| mesh.give_back(h));
        assert!(mesh.hand_over(1, NetId(3), &mut frame), "spares are back");
    }
}
