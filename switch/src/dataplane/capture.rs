//! Packet capture: copies of the frames entering and leaving a port, handed to
//! the control thread that streams them to `yardctl capture` as pcap.
//!
//! Copying allocates, so a port pays for it only while a capture is attached.
//! The datapath never blocks on a slow reader: when the queue is full the copy
//! is skipped and counted; when the reader is gone the tap is removed.

use std::time::SystemTime;

use crossbeam_channel::{Sender, TrySendError};

/// Frames a capture may have queued before further copies are skipped.
pub const CAPTURE_QUEUE: usize = 4096;

/// One captured frame.
pub struct CapturedFrame {
    /// When it passed.
    pub when: SystemTime,
    /// The Ethernet frame as it was received or sent.
    pub bytes: Vec<u8>,
}

/// The datapath's end of one capture.
pub struct CaptureTap {
    sender: Sender<CapturedFrame>,
    /// Copies skipped because the reader was behind.
    pub skipped: u64,
}

/// Another tap into the same capture (for another datapath thread), with
/// its own skip count.
impl Clone for CaptureTap {
    fn clone(&self) -> Self {
        CaptureTap::new(self.sender.clone())
    }
}

impl CaptureTap {
    /// A tap that sends into `sender` (create it bounded, [`CAPTURE_QUEUE`]).
    pub fn new(sender: Sender<CapturedFrame>) -> Self {
        CaptureTap { sender, skipped: 0 }
    }

    /// Offers a copy of `bytes`; returns false when the reader has gone and the
    /// tap should be removed.
    pub fn offer(&mut self, bytes: &[u8]) -> bool {
        let frame = CapturedFrame {
            when: SystemTime::now(),
            bytes: bytes.to_vec(),
        };
        match self.sender.try_send(frame) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.skipped += 1;
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

/// Offers `bytes` to every tap in `taps`, removing those whose reader has gone.
pub fn offer_all(taps: &mut Vec<CaptureTap>, bytes: &[u8]) {
    taps.retain_mut(|tap| tap.offer(bytes));
}
