//! The datapath's clock: milliseconds since the thread started, passed into
//! everything that ages (FDB entries, conntrack, ARP), so tests drive time
//! by hand and nothing on the per-frame path reads the system clock itself.

/// Milliseconds on the datapath's monotonic clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Millis(pub u64);

impl Millis {
    /// Milliseconds elapsed from `earlier` to `self` (0 if `earlier` is later).
    pub fn since(self, earlier: Millis) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}
