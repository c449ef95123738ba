//! Flood limit (storm control): how many flooded copies one port's frames
//! may cost per second.
//!
//! A flooded frame — broadcast, a multicast frame for many listeners,
//! unknown unicast — is sent once per port of its network, so its cost
//! grows with the network: one container broadcasting on a network of 200
//! ports makes yardd write 200 frames for each of its own, and with one
//! datapath loop serving every network in turn, a single flooding port
//! delayed a ping on another network from 0.2 ms to over 100 ms. Each port
//! therefore has a token bucket counted in copies, not frames: a flood of
//! `n` copies takes `n` tokens or, when fewer are left, is dropped whole
//! and counted as `flood-limit` on the port it came from. Frames to one
//! port (known unicast) never touch the bucket, and neither do frames the
//! gateway sends.
//!
//! Contract: [`FloodBudget::take`] is a few integer operations, with no
//! allocation or clock read (time comes in as [`Millis`]). A bridge without
//! a [`FloodLimit`] (tests, benches) never limits; the daemon sets
//! [`FloodLimit::DEFAULT`].

use super::Bridge;
use crate::dataplane::clock::Millis;
use crate::dataplane::port::PortId;

/// How many flooded copies a port may cause: `per_sec` on average, up to
/// `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FloodLimit {
    /// Copies per second a port earns.
    pub per_sec: u64,
    /// Copies a port may spend at once (and save up to).
    pub burst: u64,
}

impl FloodLimit {
    /// yardd's limit: 50,000 copies a second — on a network of 1,000 ports
    /// fifty broadcasts a second per port, on a network of ten 5,500 —
    /// far above what ARP, DHCP or mDNS need, and little enough that one
    /// port's storm leaves the loop time for every other port.
    pub const DEFAULT: FloodLimit = FloodLimit {
        per_sec: 50_000,
        burst: 50_000,
    };
}

/// One port's bucket of flood copies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FloodBudget {
    tokens: u64,
    refilled: Option<Millis>,
}

impl FloodBudget {
    /// Takes `copies` tokens if there are that many, after adding what
    /// `limit` earned since the last call (a new bucket starts full).
    /// False: the flood must be dropped.
    pub fn take(&mut self, copies: u64, limit: FloodLimit, now: Millis) -> bool {
        let earned = match self.refilled {
            None => limit.burst,
            Some(last) => now.since(last).saturating_mul(limit.per_sec) / 1000,
        };
        if earned > 0 || self.refilled.is_none() {
            self.tokens = self.tokens.saturating_add(earned).min(limit.burst);
            self.refilled = Some(now);
        }
        if self.tokens < copies {
            return false;
        }
        self.tokens -= copies;
        true
    }
}

impl Bridge {
    /// Limits every port's floods to `limit` (`None`: no limit).
    pub fn limit_floods(&mut self, limit: Option<FloodLimit>) {
        self.flood_limit = limit;
    }

    /// Whether a flood of `copies` from `port` would stay within the
    /// port's limit now, without charging it (a trace's dry run).
    pub(super) fn flood_would_pass(&self, port: PortId, copies: usize, now: Millis) -> bool {
        let (Some(limit), Some(slot)) = (self.flood_limit, self.port(port)) else {
            return true;
        };
        let mut budget = slot.flood_budget;
        budget.take(copies as u64, limit, now)
    }

    /// Whether a flood of `copies` from `port` stays within the port's
    /// limit (it is then charged for them).
    pub(super) fn flood_allowed(&mut self, port: PortId, copies: usize, now: Millis) -> bool {
        let Some(limit) = self.flood_limit else {
            return true;
        };
        match self.port_mut(port) {
            Some(slot) => slot.flood_budget.take(copies as u64, limit, now),
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::frame::Frame;
    use crate::dataplane::port::memory::MemoryPort;
    use crate::dataplane::verdict::DropReason;
    use yard_ctl::api::NetworkSpec;
    use yard_wire::offload::Offload;

    const LIMIT: FloodLimit = FloodLimit {
        per_sec: 1_000,
        burst: 500,
    };

    #[test]
    fn a_bucket_starts_full_spends_and_refills_at_its_rate() {
        let mut b = FloodBudget::default();
        let t0 = Millis(10_000);
        assert!(b.take(300, LIMIT, t0));
        assert!(b.take(200, LIMIT, t0));
        assert!(!b.take(1, LIMIT, t0), "burst spent");
        // 100 ms earn 100 copies: one flood of 100, not one of 101.
        let t1 = Millis(10_100);
        assert!(!b.take(101, LIMIT, t1));
        assert!(b.take(100, LIMIT, t1));
        // A long pause saves up no more than the burst.
        let t2 = Millis(100_000);
        assert!(!b.take(501, LIMIT, t2));
        assert!(b.take(500, LIMIT, t2));
    }

    #[test]
    fn sub_token_intervals_are_not_lost() {
        // At 1,000 per second, 1 ms earns exactly one copy; calls closer
        // together than that earn nothing but do not reset the clock.
        let mut b = FloodBudget::default();
        assert!(b.take(500, LIMIT, Millis(0)));
        for ms in 1..=10 {
            assert!(b.take(1, LIMIT, Millis(ms)), "{ms} ms");
        }
        assert!(!b.take(1, LIMIT, Millis(10)));
        let slow = FloodLimit {
            per_sec: 100,
            burst: 10,
        };
        let mut b = FloodBudget::default();
        assert!(b.take(10, slow, Millis(0)));
        // 5 ms at a time earn 0.5 copies each: they add up to 1 per 10 ms
        // only if the clock is not reset on an empty refill.
        assert!(!b.take(1, slow, Millis(5)));
        assert!(b.take(1, slow, Millis(10)));
    }

    fn frame(dst: [u8; 6], src: u8) -> Frame {
        let mut bytes = dst.to_vec();
        bytes.extend_from_slice(&[0x02, 0, 0, 0, 0, src, 0x88, 0xb5]);
        bytes.extend_from_slice(&[0; 46]);
        let mut f = Frame::new();
        f.fill(Offload::NONE, &bytes);
        f
    }

    #[test]
    fn a_port_over_its_flood_limit_has_its_floods_dropped_and_counted() {
        let mut bridge = Bridge::new(4096);
        bridge.limit_floods(Some(FloodLimit {
            per_sec: 1_000,
            burst: 4,
        }));
        bridge.add_network(&NetworkSpec::new("n")).unwrap();
        let mut sent = Vec::new();
        let mut ids = Vec::new();
        for name in ["a", "b", "c"] {
            let (port, queues) = MemoryPort::new();
            let attachment = bridge.access("n").unwrap();
            ids.push(
                bridge
                    .add_port(name, Box::new(port), attachment, 1500)
                    .unwrap(),
            );
            sent.push(queues);
        }
        let count = |i: usize| sent[i].lock().unwrap().outbound.len();
        let t0 = Millis(5_000);
        // Two copies per broadcast: two fit in a burst of 4, the third not.
        for _ in 0..3 {
            bridge.process(ids[0], &mut frame([0xff; 6], 1), t0);
        }
        assert_eq!((count(1), count(2)), (2, 2));
        let drops = |bridge: &Bridge, i: usize| {
            bridge.port(ids[i]).unwrap().counters.drops[DropReason::FloodLimit.index()]
        };
        assert_eq!(drops(&bridge, 0), 1);
        // Frames to one known port cost nothing: b learned, a to b passes.
        bridge.process(ids[1], &mut frame([0x02, 0, 0, 0, 0, 1], 2), t0);
        bridge.process(ids[0], &mut frame([0x02, 0, 0, 0, 0, 2], 1), t0);
        assert_eq!(count(1), 3);
        // Another port's budget is its own.
        bridge.process(ids[2], &mut frame([0xff; 6], 3), t0);
        assert_eq!(count(0), 2, "a got b's unicast reply and c's broadcast");
        // Two milliseconds later a has earned two copies: one broadcast.
        bridge.process(ids[0], &mut frame([0xff; 6], 1), Millis(5_002));
        // (b also got c's broadcast.)
        assert_eq!((count(1), count(2), drops(&bridge, 0)), (5, 3, 1));
    }
}
