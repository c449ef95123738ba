//! Fair SNAT unit and property tests: a source held to its share, its own
//! unanswered mappings reclaimed first, a full pool reclaiming anyone's
//! oldest unanswered mapping, answered mappings never taken, and early drop
//! at the table limit.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use proptest::prelude::*;

use super::tcp::{TcpSegment, TcpState};
use super::*;
use crate::flow::{FlowKey, Proto};
use crate::mapping::{Mapping, MappingError, MappingKey};
use yard_wire::tcp::TcpFlags;

const SEC: u64 = 1000;
const FLOODER: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 2);
const NEIGHBOUR: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 3);
const SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);
const EXT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The high range's share at 1 %: 64,512 / 100.
const HIGH_SHARE: u16 = 645;

/// A table whose sources may hold `percent` % of each pool.
fn table(percent: u8) -> Conntrack {
    Conntrack::with_mapping(
        Config {
            snat_share_percent: percent,
            ..Config::default()
        },
        Mapping::with_seed(42),
    )
}

fn flow(proto: Proto, src: Ipv4Addr, sport: u16, dport: u16) -> NewConn {
    let mut c = NewConn::new(FlowKey {
        proto,
        src,
        sport,
        dst: SERVER,
        dport,
    });
    c.snat = Some(EXT);
    c
}

fn syn() -> Packet {
    Packet::tcp(
        40,
        TcpSegment {
            flags: TcpFlags::SYN,
            seq: 1000,
            window: 65535,
            ..TcpSegment::default()
        },
    )
}

fn udp(t: &mut Conntrack, src: Ipv4Addr, sport: u16, now: u64) -> Result<Handle, ConntrackError> {
    t.insert(flow(Proto::Udp, src, sport, 53), &Packet::other(60), now)
}

fn held(t: &Conntrack, src: Ipv4Addr, sport: u16) -> u32 {
    let key = MappingKey {
        proto: Proto::Udp,
        inside_addr: src,
        inside_port: sport,
        external: EXT,
    };
    t.mapping().source_count(key.pool(), src)
}

#[test]
fn a_source_at_its_share_reclaims_its_own_oldest_unanswered_mapping() {
    let mut t = table(1);
    let hs: Vec<Handle> = (0..HIGH_SHARE)
        .map(|i| udp(&mut t, FLOODER, 10_000 + i, u64::from(i)).unwrap())
        .collect();
    assert_eq!(held(&t, FLOODER, 10_000), u32::from(HIGH_SHARE));
    // One more: its own oldest goes, not a neighbour's.
    let n = udp(&mut t, NEIGHBOUR, 10_000, 1000).unwrap();
    let more = udp(&mut t, FLOODER, 20_000, 1001).unwrap();
    assert!(t.get(hs[0]).is_none(), "the flooder's oldest was reclaimed");
    assert!(t.get(hs[1]).is_some() && t.get(more).is_some() && t.get(n).is_some());
    assert_eq!(held(&t, FLOODER, 10_000), u32::from(HIGH_SHARE));
    let s = t.stats();
    assert_eq!(
        (s.snat_share_reclaimed, s.snat_share_exhausted, s.refused),
        (1, 0, 0)
    );
    // The next goes in age order.
    udp(&mut t, FLOODER, 20_001, 1002).unwrap();
    assert!(t.get(hs[1]).is_none() && t.get(hs[2]).is_some());
    t.check_invariants();
}

#[test]
fn an_answered_mapping_is_never_reclaimed_and_the_flow_is_refused_instead() {
    let mut t = table(1);
    let hs: Vec<Handle> = (0..HIGH_SHARE)
        .map(|i| udp(&mut t, FLOODER, 10_000 + i, 0).unwrap())
        .collect();
    for &h in &hs {
        t.touch(h, Dir::Reply, &Packet::other(60), 1).unwrap();
    }
    let err = udp(&mut t, FLOODER, 20_000, 2).unwrap_err();
    assert!(
        matches!(
            err,
            ConntrackError::Mapping(MappingError::ShareExhausted {
                share: 645,
                inside_addr: FLOODER,
                ..
            })
        ),
        "{err:?}"
    );
    assert!(hs.iter().all(|&h| t.get(h).is_some()), "nothing was taken");
    let s = t.stats();
    assert_eq!(
        (s.snat_share_reclaimed, s.snat_share_exhausted, s.refused),
        (0, 1, 1)
    );
    // A neighbour still gets a port.
    udp(&mut t, NEIGHBOUR, 20_000, 2).unwrap();
    t.check_invariants();
}

#[test]
fn tcp_reclaim_takes_syn_sent_and_leaves_established() {
    let mut t = table(1);
    let seg = |flags, seq, ack| {
        Packet::tcp(
            40,
            TcpSegment {
                flags,
                seq,
                ack,
                window: 65535,
                ..TcpSegment::default()
            },
        )
    };
    // The oldest half are established, the newest half only sent a SYN.
    let mut hs = Vec::new();
    for i in 0..HIGH_SHARE {
        let h = t
            .insert(flow(Proto::Tcp, FLOODER, 10_000 + i, 80), &syn(), 0)
            .unwrap();
        if i < HIGH_SHARE / 2 {
            t.touch(
                h,
                Dir::Reply,
                &seg(TcpFlags::SYN | TcpFlags::ACK, 5000, 1001),
                0,
            )
            .unwrap();
            t.touch(h, Dir::Original, &seg(TcpFlags::ACK, 1001, 5001), 0)
                .unwrap();
            assert_eq!(t.get(h).unwrap().tcp_state(), Some(TcpState::Established));
        }
        hs.push(h);
    }
    let h = t
        .insert(flow(Proto::Tcp, FLOODER, 30_000, 80), &syn(), SEC)
        .unwrap();
    let first_syn_sent = usize::from(HIGH_SHARE / 2);
    assert!(
        t.get(hs[first_syn_sent]).is_none(),
        "oldest SYN_SENT reclaimed"
    );
    assert!(hs[..first_syn_sent].iter().all(|&h| t.get(h).is_some()));
    assert_eq!(t.get(h).unwrap().tcp_state(), Some(TcpState::SynSent));
    // A SYN/ACK alone (SYN_RECV, not yet established) is an answer too.
    for &h in &hs[first_syn_sent + 1..] {
        t.touch(
            h,
            Dir::Reply,
            &seg(TcpFlags::SYN | TcpFlags::ACK, 5000, 1001),
            SEC,
        )
        .unwrap();
    }
    t.touch(
        h,
        Dir::Reply,
        &seg(TcpFlags::SYN | TcpFlags::ACK, 5000, 1001),
        SEC,
    )
    .unwrap();
    assert!(t
        .insert(flow(Proto::Tcp, FLOODER, 30_001, 80), &syn(), SEC)
        .is_err());
    assert_eq!(t.stats().snat_share_exhausted, 1);
    t.check_invariants();
}

#[test]
fn a_mapping_shared_with_another_flow_is_skipped() {
    let mut t = table(1);
    // The oldest mapping is used by two flows (one port, two peers), the
    // second by an unanswered flow and an answered one.
    udp(&mut t, FLOODER, 10_000, 0).unwrap();
    t.insert(flow(Proto::Udp, FLOODER, 10_000, 54), &Packet::other(60), 0)
        .unwrap();
    udp(&mut t, FLOODER, 10_001, 0).unwrap();
    let answered = t
        .insert(flow(Proto::Udp, FLOODER, 10_001, 54), &Packet::other(60), 0)
        .unwrap();
    t.touch(answered, Dir::Reply, &Packet::other(60), 0)
        .unwrap();
    for i in 2..HIGH_SHARE {
        udp(&mut t, FLOODER, 10_000 + i, 0).unwrap();
    }
    udp(&mut t, FLOODER, 20_000, SEC).unwrap();
    let ports =
        |t: &Conntrack| -> HashSet<u16> { t.iter(SEC).map(|(_, e)| e.original.sport).collect() };
    let left = ports(&t);
    assert!(left.contains(&10_000) && left.contains(&10_001));
    assert!(
        !left.contains(&10_002),
        "the oldest mapping held alone went"
    );
    assert_eq!(t.stats().snat_share_reclaimed, 1);
    t.check_invariants();
}

#[test]
fn a_full_pool_reclaims_the_oldest_unanswered_mapping_of_anyone() {
    // Everyone may hold the whole range: the pool runs out before a share.
    let mut t = table(100);
    // The low range (1-1023), filled by the flooder.
    let hs: Vec<Handle> = (1..=1023u16)
        .map(|p| udp(&mut t, FLOODER, p, u64::from(p)).unwrap())
        .collect();
    t.touch(hs[0], Dir::Reply, &Packet::other(60), 2000)
        .unwrap();
    // The neighbour's low-port flow takes the oldest unanswered: port 2's.
    let n = udp(&mut t, NEIGHBOUR, 500, 3000).unwrap();
    assert!(t.get(hs[0]).is_some(), "the answered one stays");
    assert!(t.get(hs[1]).is_none());
    assert_eq!(t.get(n).unwrap().nat.snat, Some((EXT, 2)));
    let s = t.stats();
    assert_eq!((s.snat_pool_reclaimed, s.snat_pool_exhausted), (1, 0));
    // With everything answered, the pool is exhausted and says so.
    let live: Vec<Handle> = t.iter(3000).map(|(h, _)| h).collect();
    for h in live {
        t.touch(h, Dir::Reply, &Packet::other(60), 3000).unwrap();
    }
    let err = udp(&mut t, NEIGHBOUR, 501, 3000).unwrap_err();
    assert!(
        matches!(
            err,
            ConntrackError::Mapping(MappingError::Exhausted {
                lo: 1,
                hi: 1023,
                ..
            })
        ),
        "{err:?}"
    );
    assert_eq!(t.stats().snat_pool_exhausted, 1);
    t.check_invariants();
}

#[test]
fn early_drop_at_the_limit_evicts_the_oldest_unanswered_and_frees_its_port() {
    let mut t = Conntrack::with_mapping(
        Config {
            max_entries: 4,
            ..Config::default()
        },
        Mapping::with_seed(1),
    );
    let answered = udp(&mut t, NEIGHBOUR, 40_000, 0).unwrap();
    t.touch(answered, Dir::Reply, &Packet::other(60), 0)
        .unwrap();
    let flood: Vec<Handle> = (0..3)
        .map(|i| udp(&mut t, FLOODER, 10_000 + i, 1 + u64::from(i)).unwrap())
        .collect();
    // Full: a new flow goes in and the oldest unanswered goes out.
    let newcomer = udp(&mut t, NEIGHBOUR, 40_001, 10).unwrap();
    assert!(t.get(flood[0]).is_none());
    assert!(t.get(answered).is_some() && t.get(newcomer).is_some());
    assert_eq!(t.stats().evicted_unreplied, 1);
    assert_eq!(held(&t, FLOODER, 10_000), 2, "its port was released");
    assert_eq!(t.mapping().len(), 4);
    t.check_invariants();
}

#[test]
fn lowering_the_share_keeps_what_is_held_and_refuses_past_it() {
    let mut t = table(2);
    for i in 0..1000 {
        udp(&mut t, FLOODER, 10_000 + i, 0).unwrap();
    }
    t.set_snat_share_percent(1);
    assert_eq!(t.config().snat_share_percent, 1);
    assert_eq!(t.len(), 1000, "nothing removed by the change");
    // Above its share, it gets no new mapping and loses none.
    assert!(udp(&mut t, FLOODER, 20_000, SEC).is_err());
    let s = t.stats();
    assert_eq!(
        (t.len(), s.snat_share_reclaimed, s.snat_share_exhausted),
        (1000, 0, 1)
    );
    // Back at its share (its flows ended), its own oldest pays again.
    let oldest: Vec<Handle> = t.iter(SEC).map(|(h, _)| h).take(1000 - 645).collect();
    for h in oldest {
        t.remove(h);
    }
    udp(&mut t, FLOODER, 20_000, SEC).unwrap();
    assert_eq!((t.len(), t.stats().snat_share_reclaimed), (645, 1));
    t.check_invariants();
}

#[derive(Debug, Clone)]
enum Op {
    Insert { host: u8, sport: u16, peer: bool },
    Reply { pick: usize },
    Advance { secs: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..3, 1u16..40, any::<bool>())
            .prop_map(|(host, sport, peer)| Op::Insert { host, sport, peer }),
        2 => any::<usize>().prop_map(|pick| Op::Reply { pick }),
        1 => (0u64..90).prop_map(|secs| Op::Advance { secs }),
    ]
}

proptest! {
    /// Low ports (1–1023) at a 1 % share (10 per source) with a few
    /// sources: no source ever holds more than its share, an answered
    /// entry never disappears on an insert, the reclaim lists stay exact,
    /// and no two mappings share an external port.
    #[test]
    fn shares_hold_and_answered_entries_survive(ops in proptest::collection::vec(op(), 1..300)) {
        let mut t = table(1);
        let mut now = 1_000_000u64;
        for o in ops {
            match o {
                Op::Insert { host, sport, peer } => {
                    let answered: Vec<Handle> = t
                        .iter(now)
                        .filter(|(_, e)| e.seen_reply)
                        .map(|(h, _)| h)
                        .collect();
                    let src = Ipv4Addr::new(172, 30, 0, 2 + host);
                    let dport = if peer { 53 } else { 54 };
                    let _ = t.insert(flow(Proto::Udp, src, sport, dport), &Packet::other(1), now);
                    for h in answered {
                        prop_assert!(t.get(h).is_some(), "an answered entry was taken");
                    }
                    for host in 0..3 {
                        let src = Ipv4Addr::new(172, 30, 0, 2 + host);
                        prop_assert!(held(&t, src, 1) <= 10);
                    }
                }
                Op::Reply { pick } => {
                    let hs: Vec<Handle> = t.iter(now).map(|(h, _)| h).collect();
                    if !hs.is_empty() {
                        t.touch(hs[pick % hs.len()], Dir::Reply, &Packet::other(1), now).unwrap();
                    }
                }
                Op::Advance { secs } => {
                    now += secs * SEC;
                    t.expire(now);
                }
            }
            t.check_invariants();
            let mut ext = HashSet::new();
            for m in t.mapping().iter() {
                prop_assert!(ext.insert((m.key.proto, m.key.external, m.external_port)));
            }
        }
    }
}
