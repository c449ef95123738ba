//! The one way ICMP errors are made: a rate limit shared by everything that
//! makes them (the gateway and the L2 bridge of every datapath thread), and
//! the frame they are written into.
//!
//! Contract: [`IcmpErrors`] is a token bucket for ICMP errors (RFC 1812
//! §4.3.2.8: rate-limit them), as Linux's `icmp_msgs_per_sec` and
//! `icmp_msgs_burst` defaults: 1000 per second, bursts of 50. It is shared
//! (`Arc`) between the gateway and the bridges, which run on different
//! threads, so it is lock-free: one atomic word for the bucket, one for the
//! count of errors it refused. A flood of packets that each earn an error
//! (to an internal network, past a full table, too big for a tunnel) cannot
//! make Switchyard send as many packets back. Building an error writes an
//! Ethernet frame into a caller's buffer (a scratch frame on the datapath):
//! no allocation. The ICMP message itself comes from
//! [`yard_wire::icmp::build_icmp_error`].

use std::sync::atomic::{AtomicU64, Ordering};

use yard_wire::ethernet::{self, ethertype, EthernetFrame};
use yard_wire::icmp::{IcmpErrorKind, IcmpErrorRepr};
use yard_wire::ipv4::Ipv4Packet;
use yard_wire::WireError;

/// Most errors sent back to back.
const BURST: u64 = 50;
/// One more error may be sent per this many milliseconds: 1000 per second.
const MS_PER_TOKEN: u64 = 1;
/// The bucket word: the time of the last refill (milliseconds) above
/// [`TOKEN_BITS`] bits of tokens left.
const TOKEN_BITS: u32 = 8;
const TOKEN_MASK: u64 = (1 << TOKEN_BITS) - 1;
/// Times past this (about 2 million years of datapath uptime) are taken as
/// this, so they fit the bucket word.
const MAX_MS: u64 = u64::MAX >> TOKEN_BITS;

/// Why no ICMP error was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IcmpRefused {
    /// More errors were due than the rate limit allows: this one is not
    /// sent (counted in [`IcmpErrors::limited`]).
    #[error("ICMP error not sent: over the rate limit of 1000 per second in bursts of 50")]
    Limited,
    /// The packet may not be answered with an error (RFC 1812 §4.3.2.7: an
    /// error, a later fragment, a broadcast…), or is malformed.
    #[error("ICMP error not sent: {0}")]
    NotAllowed(#[from] WireError),
}

/// The rate limit and builder of ICMP errors. See the module documentation.
#[derive(Debug)]
pub struct IcmpErrors {
    /// Last refill time and tokens left, packed (see [`TOKEN_BITS`]).
    bucket: AtomicU64,
    /// Errors refused by the limit so far.
    limited: AtomicU64,
}

impl Default for IcmpErrors {
    fn default() -> Self {
        Self::new()
    }
}

impl IcmpErrors {
    /// A full bucket (a burst may go at once), nothing refused yet.
    pub fn new() -> IcmpErrors {
        IcmpErrors {
            bucket: AtomicU64::new(BURST),
            limited: AtomicU64::new(0),
        }
    }

    /// Takes a token for one error at `now_ms` (the datapath clock, shared by
    /// every caller); false, and counted, when none is left.
    pub fn admit(&self, now_ms: u64) -> bool {
        let now_ms = now_ms.min(MAX_MS);
        let mut word = self.bucket.load(Ordering::Relaxed);
        loop {
            let (mut refilled_at, mut tokens) = (word >> TOKEN_BITS, word & TOKEN_MASK);
            let earned = now_ms.saturating_sub(refilled_at) / MS_PER_TOKEN;
            if earned > 0 {
                tokens = (tokens + earned).min(BURST);
                refilled_at = now_ms;
            }
            let granted = tokens > 0;
            let left = tokens - u64::from(granted);
            let next = (refilled_at << TOKEN_BITS) | left;
            match self.bucket.compare_exchange_weak(
                word,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    if !granted {
                        self.limited.fetch_add(1, Ordering::Relaxed);
                    }
                    return granted;
                }
                Err(current) => word = current,
            }
        }
    }

    /// How many errors the limit has refused so far (`gw-icmp-errors-limited`).
    pub fn limited(&self) -> u64 {
        self.limited.load(Ordering::Relaxed)
    }

    /// Writes into `out` an Ethernet frame carrying `error` about `original`
    /// (an IPv4 packet), to the original's source; returns its length. The MAC addresses are left zero (the
    /// sender fills them in when it knows the next hop); the EtherType is
    /// IPv4. Takes no token: callers [`admit`](Self::admit) first.
    pub fn write(
        out: &mut [u8],
        error: IcmpErrorRepr,
        original: &[u8],
    ) -> Result<usize, WireError> {
        let Some((header, ip)) = out.split_at_mut_checked(ethernet::HEADER_LEN) else {
            return Err(WireError::BufferTooSmall {
                need: ethernet::HEADER_LEN,
                have: out.len(),
            });
        };
        let n = error.emit(ip, original)?;
        header.fill(0);
        EthernetFrame::new_unchecked(header).set_ethertype(ethertype::IPV4);
        Ok(ethernet::HEADER_LEN + n)
    }

    /// The error a device on the path would send about `frame` (an untagged
    /// Ethernet frame carrying IPv4) if it were the packet's destination:
    /// back to the sender's MAC from the destination's, from the packet's
    /// destination address, with the packet's identification. Written into
    /// `out` if the rate limit allows it at `now_ms`; returns its length.
    /// What the L2 bridge answers a packet too big for a tunnel with.
    pub fn reply_as_destination(
        &self,
        now_ms: u64,
        out: &mut [u8],
        frame: &[u8],
        kind: IcmpErrorKind,
    ) -> Result<usize, IcmpRefused> {
        let eth = EthernetFrame::new_checked(frame)?;
        let (to_mac, from_mac) = (eth.src(), eth.dst());
        let original = &frame[ethernet::HEADER_LEN..];
        let ip = Ipv4Packet::new_checked(original)?;
        let (from, ident) = (ip.dst(), ip.ident());
        if !self.admit(now_ms) {
            return Err(IcmpRefused::Limited);
        }
        let error = IcmpErrorRepr {
            src: from,
            ident,
            kind,
        };
        let n = Self::write(out, error, original)?;
        let mut reply = EthernetFrame::new_unchecked(&mut out[..n]);
        reply.set_dst(to_mac);
        reply.set_src(from_mac);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    use super::*;
    use yard_wire::icmp::{self, build_icmp_error};

    #[test]
    fn a_burst_of_50_then_one_per_millisecond() {
        let errors = IcmpErrors::new();
        assert_eq!((0..60).filter(|_| errors.admit(0)).count(), 50);
        assert_eq!(errors.limited(), 10);
        assert_eq!(
            (0..20).filter(|_| errors.admit(10)).count(),
            10,
            "10 ms earned 10"
        );
        assert!(!errors.admit(10));
        assert_eq!(
            (0..100).filter(|_| errors.admit(10_000)).count(),
            50,
            "capped at the burst"
        );
        assert_eq!(errors.limited(), 10 + 10 + 1 + 50);
        assert!(
            !errors.admit(5),
            "a clock behind the last refill earns nothing"
        );
    }

    #[test]
    fn threads_sharing_the_limit_get_one_burst_between_them() {
        let errors = Arc::new(IcmpErrors::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let errors = errors.clone();
                std::thread::spawn(move || (0..100).filter(|_| errors.admit(7)).count())
            })
            .collect();
        let granted: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(granted, 50);
        assert_eq!(errors.limited(), 350);
    }

    /// An Ethernet frame from MAC 1 to MAC 2 carrying a UDP packet from
    /// 10.0.0.1 to 10.0.0.2, identification 0x1234.
    fn udp_frame() -> Vec<u8> {
        let mut ip = etherparse::Ipv4Header::new(
            0,
            64,
            etherparse::IpNumber::UDP,
            [10, 0, 0, 1],
            [10, 0, 0, 2],
        )
        .unwrap();
        ip.identification = 0x1234;
        let mut bytes = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ip(etherparse::IpHeaders::Ipv4(ip, Default::default()))
            .udp(1000, 2000)
            .write(&mut bytes, &[7; 100])
            .unwrap();
        bytes
    }

    #[test]
    fn a_reply_as_destination_is_the_error_the_destination_would_send() {
        let errors = IcmpErrors::new();
        let frame = udp_frame();
        let kind = IcmpErrorKind::FragmentationNeeded { next_hop_mtu: 1400 };
        let mut out = [0u8; 14 + icmp::MAX_ERROR_LEN];
        let n = errors
            .reply_as_destination(3, &mut out, &frame, kind)
            .unwrap();
        let mut want = vec![0u8; 14 + icmp::MAX_ERROR_LEN];
        let m = build_icmp_error(
            &mut want[14..],
            Ipv4Addr::new(10, 0, 0, 2),
            0x1234,
            kind,
            &frame[14..],
        )
        .unwrap();
        want[..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        want[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        want[12..14].copy_from_slice(&[0x08, 0x00]);
        want.truncate(14 + m);
        assert_eq!(&out[..n], &want[..]);
    }

    #[test]
    fn a_reply_over_the_limit_or_about_an_error_is_refused() {
        let errors = IcmpErrors::new();
        let frame = udp_frame();
        let kind = IcmpErrorKind::FragmentationNeeded { next_hop_mtu: 1400 };
        let mut out = [0u8; 14 + icmp::MAX_ERROR_LEN];
        let n = errors
            .reply_as_destination(0, &mut out, &frame, kind)
            .unwrap();
        // An error about the error just built: not allowed.
        let error = out[..n].to_vec();
        assert!(matches!(
            errors.reply_as_destination(0, &mut out, &error, kind),
            Err(IcmpRefused::NotAllowed(_))
        ));
        assert!(matches!(
            errors.reply_as_destination(0, &mut out, &frame[..20], kind),
            Err(IcmpRefused::NotAllowed(_))
        ));
        while errors.admit(0) {}
        assert_eq!(
            errors.reply_as_destination(0, &mut out, &frame, kind),
            Err(IcmpRefused::Limited)
        );
        assert_eq!(errors.limited(), 2);
    }
}
