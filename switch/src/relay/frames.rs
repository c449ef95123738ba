//! The frames the relay builds its packets for containers in.
//!
//! Contract. The relay writes each packet it makes — a segment smoltcp
//! sends, a datagram a host socket read — straight into a datapath
//! [`Frame`]'s buffer (its IPv4 packet after an Ethernet header's room,
//! [`super::flows::HEADROOM`] bytes), and queues the frame; the home
//! thread takes the queued frames in order ([`Frames::oldest`]), runs each
//! through the gateway in place and gives it back ([`Frames::give_back`]).
//! So no packet is copied between the relay and the TAP. Frames are made
//! only while traffic grows, at most [`MOST`]; when every one is queued or
//! in use, [`Frames::take`] says no and the relay makes its packets later
//! (smoltcp holds its segments, a host socket keeps its datagrams).

use std::collections::VecDeque;

use crate::dataplane::frame::Frame;

/// The most frames the relay has: 256 × 64 KiB, about 16 MiB at most,
/// made only as traffic needs them.
pub const MOST: usize = 256;

/// The relay's frames: spare ones and queued ones.
pub struct Frames {
    spare: Vec<Frame>,
    queued: VecDeque<Frame>,
    made: usize,
}

impl Default for Frames {
    fn default() -> Self {
        Frames {
            spare: Vec::with_capacity(MOST),
            queued: VecDeque::with_capacity(MOST),
            made: 0,
        }
    }
}

impl Frames {
    /// Whether [`Frames::take`] would give a frame.
    pub fn has_room(&self) -> bool {
        !self.spare.is_empty() || self.made < MOST
    }

    /// A frame to build a packet in: a spare one, or a new one while fewer
    /// than [`MOST`] were made.
    pub fn take(&mut self) -> Option<Frame> {
        if let Some(frame) = self.spare.pop() {
            return Some(frame);
        }
        if self.made >= MOST {
            return None;
        }
        self.made += 1;
        Some(Frame::new())
    }

    /// Queues a built frame for the home thread.
    pub fn queue(&mut self, frame: Frame) {
        self.queued.push_back(frame);
    }

    /// Takes back a frame that was not queued.
    pub fn give_back(&mut self, frame: Frame) {
        self.spare.push(frame);
    }

    /// The oldest queued frame.
    pub fn oldest(&mut self) -> Option<Frame> {
        self.queued.pop_front()
    }

    /// Whether a frame is queued.
    pub fn any_queued(&self) -> bool {
        !self.queued.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_made_up_to_the_bound_then_reused_in_queue_order() {
        let mut frames = Frames::default();
        let mut taken = Vec::new();
        while let Some(f) = frames.take() {
            taken.push(f);
        }
        assert_eq!(taken.len(), MOST);
        assert!(!frames.has_room());
        for (i, mut f) in taken.into_iter().enumerate() {
            f.fill(yard_wire::offload::Offload::NONE, &[i as u8; 20]);
            frames.queue(f);
        }
        let first = frames.oldest().unwrap();
        assert_eq!(first.data()[0], 0);
        frames.give_back(first);
        assert!(frames.has_room());
        assert_eq!(frames.oldest().unwrap().data()[0], 1);
        assert!(frames.take().is_some());
        assert!(frames.take().is_none());
    }
}
