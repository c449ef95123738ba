//! The expiry timer wheel's bucket storage (see the `conntrack` module doc
//! for the design). It stores slot numbers only; the table keeps each
//! entry's back-pointer (`Links::wheel_tick`, `Links::wheel_pos`) and fixes
//! the one that [`Wheel::remove`] moves.

/// Wheel resolution in milliseconds.
pub(crate) const TICK_MS: u64 = 1000;
/// Number of buckets: the wheel spans `SLOTS * TICK_MS` (68 min).
pub(crate) const SLOTS: u64 = 4096;

#[derive(Debug, Clone)]
pub(crate) struct Wheel {
    buckets: Vec<Vec<u32>>,
    /// Bit `b` set when bucket `b` is non-empty, so a sweep skips idle
    /// stretches in O(SLOTS / 64) instead of visiting every tick.
    occupied: [u64; (SLOTS / 64) as usize],
    /// The next tick to process: every tick before it has been swept.
    pub(crate) next_tick: u64,
}

impl Wheel {
    pub(crate) fn new() -> Wheel {
        Wheel {
            buckets: (0..SLOTS).map(|_| Vec::new()).collect(),
            occupied: [0; (SLOTS / 64) as usize],
            next_tick: 0,
        }
    }

    /// The tick to file an expiry at: its own tick (rounded up, so an entry
    /// is never examined before it is due), clamped to the wheel's window
    /// `[next_tick, next_tick + SLOTS - 1]` so buckets never alias.
    pub(crate) fn target(&self, expires_at: u64) -> u64 {
        expires_at
            .div_ceil(TICK_MS)
            .clamp(self.next_tick, self.next_tick + SLOTS - 1)
    }

    /// File `slot` at `tick`; returns its position in the bucket.
    pub(crate) fn push(&mut self, slot: u32, tick: u64) -> u32 {
        let i = (tick % SLOTS) as usize;
        self.occupied[i / 64] |= 1 << (i % 64);
        let b = &mut self.buckets[i];
        b.push(slot);
        (b.len() - 1) as u32
    }

    /// Unfile the slot at `pos` of `tick`'s bucket. Returns the slot that was
    /// moved into `pos` to fill the hole, if any: its back-pointer must be
    /// set to `pos`.
    pub(crate) fn remove(&mut self, tick: u64, pos: u32) -> Option<u32> {
        let i = (tick % SLOTS) as usize;
        let b = &mut self.buckets[i];
        b.swap_remove(pos as usize);
        if b.is_empty() {
            self.occupied[i / 64] &= !(1 << (i % 64));
        }
        b.get(pos as usize).copied()
    }

    /// The first tick at or after `from` (within one revolution) whose
    /// bucket is non-empty.
    pub(crate) fn next_occupied(&self, from: u64) -> Option<u64> {
        let start = (from % SLOTS) as usize;
        let words = self.occupied.len();
        for step in 0..=words {
            let w = (start / 64 + step) % words;
            let mut bits = self.occupied[w];
            if step == 0 {
                bits &= u64::MAX << (start % 64);
            } else if step == words {
                // Wrapped back to the first word: only bits before `start`.
                bits &= !(u64::MAX << (start % 64));
            }
            if bits != 0 {
                let b = (w * 64 + bits.trailing_zeros() as usize) as u64;
                let dist = (b + SLOTS - start as u64) % SLOTS;
                return Some(from + dist);
            }
        }
        None
    }

    /// The last slot in `tick`'s bucket.
    pub(crate) fn last(&self, tick: u64) -> Option<u32> {
        self.buckets[(tick % SLOTS) as usize].last().copied()
    }

    /// Heap bytes held by the buckets (for memory accounting).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<Vec<u32>>()
            + self.buckets.iter().map(|b| b.capacity() * 4).sum::<usize>()
    }
}

#[cfg(test)]
impl Wheel {
    /// The slot at `pos` of `tick`'s bucket (invariant checks).
    pub(crate) fn remove_probe(&self, tick: u64, pos: u32) -> Option<u32> {
        self.buckets[(tick % SLOTS) as usize]
            .get(pos as usize)
            .copied()
    }
}
