//! In-process ports for pipeline tests and benchmarks: frames are queued into
//! and collected from shared buffers instead of a device.

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};

use super::Port;
use yard_wire::offload::Offload;

use crate::dataplane::frame::Frame;

/// Frames waiting to be received and frames the switch sent.
#[derive(Default)]
pub struct MemoryQueues {
    /// Frames the port will hand to the switch, oldest first.
    pub inbound: VecDeque<(Offload, Vec<u8>)>,
    /// Frames the switch sent out of the port, oldest first.
    pub outbound: Vec<(Offload, Vec<u8>)>,
}

/// A port backed by [`MemoryQueues`]; clone the handle to inspect it.
pub struct MemoryPort {
    queues: Arc<Mutex<MemoryQueues>>,
    /// When false, sent frames are counted but not kept (benchmarks).
    keep_sent: bool,
    sent: u64,
}

impl MemoryPort {
    /// A port and the handle to its queues.
    pub fn new() -> (Self, Arc<Mutex<MemoryQueues>>) {
        let queues = Arc::new(Mutex::new(MemoryQueues::default()));
        (
            MemoryPort {
                queues: queues.clone(),
                keep_sent: true,
                sent: 0,
            },
            queues,
        )
    }

    /// A port that only counts what it sends: no allocation per frame.
    pub fn discarding() -> Self {
        let (mut port, _) = Self::new();
        port.keep_sent = false;
        port
    }

    /// Frames sent so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }
}

fn lock(queues: &Mutex<MemoryQueues>) -> std::sync::MutexGuard<'_, MemoryQueues> {
    queues
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Port for MemoryPort {
    fn recv(&mut self, frame: &mut Frame) -> io::Result<bool> {
        match lock(&self.queues).inbound.pop_front() {
            Some((vnet, bytes)) => {
                frame.fill(vnet, &bytes);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn send(&mut self, frame: &mut Frame) -> io::Result<()> {
        self.sent += 1;
        if self.keep_sent {
            lock(&self.queues)
                .outbound
                .push((frame.offload, frame.data().to_vec()));
        }
        Ok(())
    }

    fn raw_fd(&self) -> Option<RawFd> {
        None
    }

    fn share(&self) -> io::Result<Box<dyn Port>> {
        Ok(Box::new(MemoryPort {
            queues: self.queues.clone(),
            keep_sent: self.keep_sent,
            sent: 0,
        }))
    }
}
