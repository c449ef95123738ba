//! Conntrack unit and property tests: state machine, timers, limit,
//! removal, NAT tuples.

use std::net::Ipv4Addr;

use proptest::prelude::*;

use super::tcp::{Invalid, TcpSegment, TcpState};
use super::*;
use crate::flow::{FlowKey, Proto};
use crate::mapping::Mapping;
use yard_wire::tcp::TcpFlags;

const SEC: u64 = 1000;
const INSIDE: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 2);
const SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);
const EXT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

fn ct() -> Conntrack {
    Conntrack::with_mapping(Config::default(), Mapping::with_seed(42))
}

fn key(proto: Proto, sport: u16, dport: u16) -> FlowKey {
    FlowKey {
        proto,
        src: INSIDE,
        sport,
        dst: SERVER,
        dport,
    }
}

fn seg(flags: TcpFlags, seq: u32, ack: u32, len: u32) -> Packet {
    Packet::tcp(
        40 + len,
        TcpSegment {
            flags,
            seq,
            ack,
            window: 65535,
            payload_len: len,
            wscale: None,
        },
    )
}

const SYN: TcpFlags = TcpFlags::SYN;
const ACK: TcpFlags = TcpFlags::ACK;
const FIN: TcpFlags = TcpFlags::FIN;
const RST: TcpFlags = TcpFlags::RST;

/// A new entry for a SYN from the inside port `sport` to port 80 with
/// sequence number `isn`, at `now`.
fn syn_sent(t: &mut Conntrack, sport: u16, isn: u32, now: u64) -> Handle {
    t.insert(
        NewConn::new(key(Proto::Tcp, sport, 80)),
        &seg(SYN, isn, 0, 0),
        now,
    )
    .unwrap()
}

/// Client ISN 1000, server ISN 5000; returns the handle after the handshake.
fn established(t: &mut Conntrack, now: u64) -> Handle {
    let h = syn_sent(t, 40000, 1000, now);
    assert_eq!(t.get(h).unwrap().tcp_state(), Some(TcpState::SynSent));
    let r = t
        .touch(h, Dir::Reply, &seg(SYN | ACK, 5000, 1001, 0), now)
        .unwrap();
    assert_eq!(r.tcp_state, Some(TcpState::SynRecv));
    let r = t
        .touch(h, Dir::Original, &seg(ACK, 1001, 5001, 0), now)
        .unwrap();
    assert_eq!(r.tcp_state, Some(TcpState::Established));
    h
}

fn state(t: &Conntrack, h: Handle) -> TcpState {
    t.get(h).unwrap().tcp_state().unwrap()
}

#[test]
fn handshake_and_close_initiated_by_original() {
    let mut t = ct();
    let to = Timeouts::default();
    let h = established(&mut t, 0);
    let e = t.get(h).unwrap();
    assert!(e.assured && e.seen_reply);
    assert_eq!(e.remaining(0), to.tcp_established);
    assert_eq!(e.counters[0].packets, 2);
    assert_eq!(e.counters[1].packets, 1);
    t.touch(h, Dir::Original, &seg(ACK, 1001, 5001, 100), 1)
        .unwrap();
    t.touch(h, Dir::Original, &seg(FIN | ACK, 1101, 5001, 0), 2)
        .unwrap();
    assert_eq!(state(&t, h), TcpState::FinWait);
    assert_eq!(t.get(h).unwrap().remaining(2), to.tcp_fin_wait);
    // The server ACKs the FIN.
    t.touch(h, Dir::Reply, &seg(ACK, 5001, 1102, 0), 3).unwrap();
    assert_eq!(state(&t, h), TcpState::CloseWait);
    assert_eq!(t.get(h).unwrap().remaining(3), to.tcp_close_wait);
    // Half-closed: the server may still send data.
    t.touch(h, Dir::Reply, &seg(ACK, 5001, 1102, 500), 4)
        .unwrap();
    assert_eq!(state(&t, h), TcpState::CloseWait);
    t.touch(h, Dir::Reply, &seg(FIN | ACK, 5501, 1102, 0), 5)
        .unwrap();
    assert_eq!(state(&t, h), TcpState::LastAck);
    assert_eq!(t.get(h).unwrap().remaining(5), to.tcp_last_ack);
    t.touch(h, Dir::Original, &seg(ACK, 1102, 5502, 0), 6)
        .unwrap();
    assert_eq!(state(&t, h), TcpState::TimeWait);
    assert_eq!(t.get(h).unwrap().remaining(6), to.tcp_time_wait);
    t.check_invariants();
}

#[test]
fn fin_from_reply_side_first() {
    let mut t = ct();
    let h = established(&mut t, 0);
    t.touch(h, Dir::Reply, &seg(FIN | ACK, 5001, 1001, 0), 1)
        .unwrap();
    assert_eq!(state(&t, h), TcpState::FinWait);
    // An ACK from the FIN sender itself does not ack its own FIN.
    t.touch(h, Dir::Reply, &seg(ACK, 5002, 1001, 0), 1).unwrap();
    assert_eq!(state(&t, h), TcpState::FinWait);
    t.touch(h, Dir::Original, &seg(ACK, 1001, 5002, 0), 2)
        .unwrap();
    assert_eq!(state(&t, h), TcpState::CloseWait);
    t.touch(h, Dir::Original, &seg(FIN | ACK, 1001, 5002, 0), 3)
        .unwrap();
    assert_eq!(state(&t, h), TcpState::LastAck);
    t.touch(h, Dir::Reply, &seg(ACK, 5002, 1002, 0), 4).unwrap();
    assert_eq!(state(&t, h), TcpState::TimeWait);
}

#[test]
fn simultaneous_close() {
    let mut t = ct();
    let h = established(&mut t, 0);
    t.touch(h, Dir::Original, &seg(FIN | ACK, 1001, 5001, 0), 1)
        .unwrap();
    t.touch(h, Dir::Reply, &seg(FIN | ACK, 5001, 1001, 0), 1)
        .unwrap();
    assert_eq!(state(&t, h), TcpState::LastAck);
    t.touch(h, Dir::Original, &seg(ACK, 1002, 5002, 0), 2)
        .unwrap();
    assert_eq!(state(&t, h), TcpState::TimeWait);
}

#[test]
fn simultaneous_open() {
    let mut t = ct();
    let h = syn_sent(&mut t, 40000, 1000, 0);
    // The peer's own SYN crosses ours.
    let r = t.touch(h, Dir::Reply, &seg(SYN, 5000, 0, 0), 1).unwrap();
    assert_eq!(r.tcp_state, Some(TcpState::SynRecv));
    assert!(!t.get(h).unwrap().assured);
    // Both answer with SYN/ACK.
    t.touch(h, Dir::Original, &seg(SYN | ACK, 1000, 5001, 0), 2)
        .unwrap();
    t.touch(h, Dir::Reply, &seg(SYN | ACK, 5000, 1001, 0), 2)
        .unwrap();
    assert_eq!(state(&t, h), TcpState::SynRecv);
    t.touch(h, Dir::Reply, &seg(ACK, 5001, 1001, 0), 3).unwrap();
    assert_eq!(state(&t, h), TcpState::Established);
    assert!(t.get(h).unwrap().assured);
    t.check_invariants();
}

#[test]
fn rst_in_window_closes() {
    let mut t = ct();
    let h = established(&mut t, 0);
    let r = t.touch(h, Dir::Reply, &seg(RST, 5001, 0, 0), 10).unwrap();
    assert_eq!(r.invalid, None);
    assert_eq!(state(&t, h), TcpState::Close);
    assert_eq!(
        t.get(h).unwrap().remaining(10),
        Timeouts::default().tcp_close
    );
    // CLOSE expires after 10 s.
    assert_eq!(t.expire(10 + 10 * SEC - 1), 0);
    assert_eq!(t.expire(10 * SEC + 1000), 1);
    assert!(t.get(h).is_none());
    assert_eq!(t.stats().expired, 1);
}

#[test]
fn rst_far_out_of_window_is_ignored() {
    let mut t = ct();
    let h = established(&mut t, 0);
    let r = t
        .touch(h, Dir::Reply, &seg(RST, 5001 + 0x4000_0000, 0, 0), 10)
        .unwrap();
    assert_eq!(r.invalid, Some(Invalid::RstOutOfWindow));
    assert_eq!(r.tcp_state, Some(TcpState::Established));
    assert_eq!(state(&t, h), TcpState::Established);
    // Not refreshed by the invalid packet.
    assert_eq!(
        t.get(h).unwrap().expires_at,
        Timeouts::default().tcp_established
    );
    // Counted all the same.
    assert_eq!(t.get(h).unwrap().counters[1].packets, 2);
    // In window but not exact: accepted (simple check, see tcp module doc).
    t.touch(h, Dir::Original, &seg(RST, 1001 + 3000, 0, 0), 11)
        .unwrap();
    assert_eq!(state(&t, h), TcpState::Close);
}

#[test]
fn rst_answering_a_syn_must_ack_it() {
    let mut t = ct();
    let h = syn_sent(&mut t, 40000, 1000, 0);
    let r = t
        .touch(h, Dir::Reply, &seg(RST | ACK, 0, 77, 0), 1)
        .unwrap();
    assert_eq!(r.invalid, Some(Invalid::RstOutOfWindow));
    assert_eq!(state(&t, h), TcpState::SynSent);
    t.touch(h, Dir::Reply, &seg(RST | ACK, 0, 1001, 0), 1)
        .unwrap();
    assert_eq!(state(&t, h), TcpState::Close);
}

#[test]
fn invalid_segments_leave_state_alone() {
    let mut t = ct();
    let h = syn_sent(&mut t, 40000, 1000, 0);
    let r = t
        .touch(h, Dir::Original, &seg(ACK, 1001, 0, 0), 5 * SEC)
        .unwrap();
    assert_eq!(r.invalid, Some(Invalid::UnexpectedInState));
    let r = t
        .touch(h, Dir::Original, &seg(FIN, 1001, 0, 0), 5 * SEC)
        .unwrap();
    assert_eq!(r.invalid, Some(Invalid::UnexpectedInState));
    assert_eq!(state(&t, h), TcpState::SynSent);
    assert_eq!(
        t.get(h).unwrap().expires_at,
        Timeouts::default().tcp_syn_sent
    );
    // A retransmitted SYN refreshes.
    t.touch(h, Dir::Original, &seg(SYN, 1000, 0, 0), 5 * SEC)
        .unwrap();
    assert_eq!(
        t.get(h).unwrap().expires_at,
        5 * SEC + Timeouts::default().tcp_syn_sent
    );
}

#[test]
fn tcp_starts_with_a_syn_or_is_picked_up_by_a_bare_ack() {
    let mut t = ct();
    for first in [
        seg(FIN | ACK, 1, 1, 0),
        seg(RST, 1, 0, 0),
        seg(SYN | ACK, 1, 1, 0),
        Packet::other(60),
    ] {
        let err = t
            .insert(NewConn::new(key(Proto::Tcp, 1, 80)), &first, 0)
            .unwrap_err();
        assert!(matches!(err, ConntrackError::NotSyn { .. }), "{first:?}");
    }
    assert_eq!(t.stats().refused, 4);
    assert!(t.is_empty());

    // A bare ACK (with data) picks a connection up mid-stream, as after a
    // restart: ESTABLISHED, but not assured and on SYN_SENT's short timer
    // until the other side answers.
    let h = t
        .insert(
            NewConn::new(key(Proto::Tcp, 1, 80)),
            &seg(ACK, 1_000, 9_000, 100),
            0,
        )
        .unwrap();
    let e = t.get(h).unwrap();
    assert_eq!(e.tcp_state(), Some(TcpState::Established));
    assert!(!e.assured);
    assert_eq!(e.expires_at, Timeouts::default().tcp_syn_sent);
    t.touch(h, Dir::Reply, &seg(ACK, 9_000, 1_100, 0), SEC)
        .unwrap();
    let e = t.get(h).unwrap();
    assert!(e.assured);
    assert_eq!(e.expires_at, SEC + Timeouts::default().tcp_established);
    // Its close is tracked as usual.
    t.touch(h, Dir::Original, &seg(FIN | ACK, 1_100, 9_000, 0), SEC)
        .unwrap();
    t.touch(h, Dir::Reply, &seg(ACK, 9_000, 1_101, 0), SEC)
        .unwrap();
    assert_eq!(state(&t, h), TcpState::CloseWait);
}

#[test]
fn a_picked_up_connection_accepts_a_rst_from_the_side_not_heard_yet() {
    // The server no longer knows the connection: its RST, with numbers
    // the tracker never saw, ends the entry.
    let mut t = ct();
    let h = t
        .insert(
            NewConn::new(key(Proto::Tcp, 1, 80)),
            &seg(ACK, 1_000, 9_000, 0),
            0,
        )
        .unwrap();
    let r = t.touch(h, Dir::Reply, &seg(RST, 9_000, 0, 0), 1).unwrap();
    assert_eq!(r.invalid, None);
    assert_eq!(state(&t, h), TcpState::Close);
}

#[test]
fn time_wait_expires_and_syn_reopens() {
    let mut t = ct();
    let h = established(&mut t, 0);
    t.touch(h, Dir::Original, &seg(FIN | ACK, 1001, 5001, 0), 0)
        .unwrap();
    t.touch(h, Dir::Reply, &seg(FIN | ACK, 5001, 1002, 0), 0)
        .unwrap();
    t.touch(h, Dir::Original, &seg(ACK, 1002, 5002, 0), 0)
        .unwrap();
    assert_eq!(state(&t, h), TcpState::TimeWait);
    // Port reuse: a new SYN in TIME_WAIT reopens the same entry.
    t.touch(h, Dir::Original, &seg(SYN, 90000, 0, 0), 1)
        .unwrap();
    assert_eq!(state(&t, h), TcpState::SynSent);
    t.touch(h, Dir::Reply, &seg(SYN | ACK, 7000, 90001, 0), 1)
        .unwrap();
    t.touch(h, Dir::Original, &seg(ACK, 90001, 7001, 0), 1)
        .unwrap();
    t.touch(h, Dir::Reply, &seg(FIN | ACK, 7001, 90001, 0), 2)
        .unwrap();
    t.touch(h, Dir::Original, &seg(FIN | ACK, 90001, 7002, 0), 2)
        .unwrap();
    t.touch(h, Dir::Reply, &seg(ACK, 7002, 90002, 0), 2)
        .unwrap();
    assert_eq!(state(&t, h), TcpState::TimeWait);
    // TIME_WAIT runs out: the entry went from a 5-day bucket to a 240 s one.
    let tw = Timeouts::default().tcp_time_wait;
    assert!(t
        .lookup(0, &key(Proto::Tcp, 40000, 80), 2 + tw - 1)
        .is_some());
    assert!(t.lookup(0, &key(Proto::Tcp, 40000, 80), 2 + tw).is_none());
    assert_eq!(t.expire(2 + tw - 1), 0);
    assert_eq!(t.expire(2 + tw + SEC), 1);
    assert!(t.is_empty());
}

#[test]
fn udp_timeouts_with_injected_clock() {
    let mut t = ct();
    let k = key(Proto::Udp, 5353, 53);
    let h = t.insert(NewConn::new(k), &Packet::other(60), 0).unwrap();
    let e = t.get(h).unwrap();
    assert_eq!((e.state_name(), e.remaining(0)), ("UNREPLIED", 120 * SEC));
    // Still there just before 2 min, gone at 2 min.
    assert!(t.lookup(0, &k, 120 * SEC - 1).is_some());
    assert!(t.lookup(0, &k, 120 * SEC).is_none());
    // A reply before that moves it to the 5 min timer.
    let (h2, dir) = t.lookup(0, &k.reversed(), 60 * SEC).unwrap();
    assert_eq!((h2, dir), (h, Dir::Reply));
    t.touch(h, Dir::Reply, &Packet::other(100), 60 * SEC)
        .unwrap();
    let e = t.get(h).unwrap();
    assert_eq!(e.state_name(), "REPLIED");
    assert!(e.assured);
    assert_eq!(e.expires_at, 360 * SEC);
    assert_eq!(t.expire(359 * SEC), 0);
    assert_eq!(t.expire(360 * SEC), 1);
    assert_eq!(t.stats().expired, 1);
}

#[test]
fn icmp_echo_timeout_and_identifier_mapping() {
    let mut t = ct();
    let k = key(Proto::Icmp, 77, 77);
    let mut c = NewConn::new(k);
    c.snat = Some(EXT);
    let h = t.insert(c, &Packet::other(84), 0).unwrap();
    let e = t.get(h).unwrap();
    assert_eq!(e.remaining(0), 60 * SEC);
    assert_eq!(e.nat.snat, Some((EXT, 77)));
    assert_eq!(e.reply.sport, 77);
    assert_eq!(e.reply.dport, 77);
    assert_eq!(e.reply.dst, EXT);
    // A second host using the same identifier gets another one, in both "ports".
    let mut k2 = k;
    k2.src = Ipv4Addr::new(172, 30, 0, 3);
    let mut c2 = NewConn::new(k2);
    c2.snat = Some(EXT);
    let h2 = t.insert(c2, &Packet::other(84), 0).unwrap();
    let r2 = t.get(h2).unwrap().reply;
    assert_ne!(r2.dport, 77);
    assert_eq!(r2.sport, r2.dport);
    assert_eq!(t.expire(60 * SEC), 2);
    assert!(t.mapping().is_empty());
}

#[test]
fn lookup_does_not_refresh_touch_does() {
    let mut t = ct();
    let k = key(Proto::Udp, 1000, 53);
    let h = t.insert(NewConn::new(k), &Packet::other(60), 0).unwrap();
    for now in [10 * SEC, 100 * SEC] {
        assert!(t.lookup(0, &k, now).is_some());
    }
    let e = t.get(h).unwrap();
    assert_eq!(e.expires_at, 120 * SEC);
    assert_eq!(e.counters[0].packets, 1);
    let (_, touch) = t
        .lookup_touch(0, &k, &Packet::other(60), 100 * SEC)
        .unwrap();
    assert_eq!(touch.dir, Dir::Original);
    assert_eq!(t.get(h).unwrap().expires_at, 220 * SEC);
    assert_eq!(t.get(h).unwrap().counters[0].bytes, 120);
}

#[test]
fn snat_and_dnat_tuples_found_from_both_sides() {
    let mut t = ct();
    // Masquerade: inside → outside.
    let k = key(Proto::Tcp, 40000, 443);
    let mut c = NewConn::new(k);
    c.snat = Some(EXT);
    let h = t.insert(c, &seg(SYN, 1, 0, 0), 0).unwrap();
    let e = t.get(h).unwrap();
    let want_reply = FlowKey {
        proto: Proto::Tcp,
        src: SERVER,
        sport: 443,
        dst: EXT,
        dport: 40000,
    };
    assert_eq!(e.reply, want_reply);
    assert_eq!(t.lookup(0, &k, 0), Some((h, Dir::Original)));
    assert_eq!(t.lookup(0, &want_reply, 0), Some((h, Dir::Reply)));
    // The untranslated reverse is not a key of the entry.
    assert_eq!(t.lookup(0, &k.reversed(), 0), None);
    // Other zones are separate.
    assert_eq!(t.lookup(1, &k, 0), None);

    // Published port: outside client → EXT:8080 → inside 172.30.0.5:80.
    let client = FlowKey {
        proto: Proto::Tcp,
        src: SERVER,
        sport: 50000,
        dst: EXT,
        dport: 8080,
    };
    let mut c = NewConn::new(client);
    c.dnat = Some((Ipv4Addr::new(172, 30, 0, 5), 80));
    c.rule = Some(RuleId(3));
    let h2 = t.insert(c, &seg(SYN, 1, 0, 0), 0).unwrap();
    let e = t.get(h2).unwrap();
    assert_eq!(e.inside, Ipv4Addr::new(172, 30, 0, 5));
    assert_eq!(e.reply.src, Ipv4Addr::new(172, 30, 0, 5));
    assert_eq!(e.reply.sport, 80);
    assert_eq!(e.reply.dst, SERVER);
    assert_eq!(t.lookup(0, &e.reply.clone(), 0), Some((h2, Dir::Reply)));
    // Inserting the same original again is refused.
    let err = t
        .insert(NewConn::new(client), &seg(SYN, 1, 0, 0), 0)
        .unwrap_err();
    assert!(matches!(err, ConntrackError::Exists { .. }));
    t.check_invariants();
}

#[test]
fn eim_same_external_port_for_two_destinations() {
    let mut t = ct();
    let mut ports = Vec::new();
    for dst in [SERVER, Ipv4Addr::new(192, 0, 2, 1)] {
        let mut c = NewConn::new(FlowKey {
            dst,
            ..key(Proto::Udp, 5000, 3478)
        });
        c.snat = Some(EXT);
        let h = t.insert(c, &Packet::other(60), 0).unwrap();
        ports.push(t.get(h).unwrap().nat.snat.unwrap().1);
    }
    assert_eq!(ports[0], ports[1]);
    assert_eq!(ports[0], 5000, "port preserved");
    let mk = MappingKey {
        proto: Proto::Udp,
        inside_addr: INSIDE,
        inside_port: 5000,
        external: EXT,
    };
    assert_eq!(t.mapping().get(&mk), Some((5000, 2)));
    // The mapping lives while any entry uses it.
    t.remove_where(|e| e.original.dst == SERVER);
    assert_eq!(t.mapping().get(&mk), Some((5000, 1)));
    t.flush(&Filter::default());
    assert_eq!(t.mapping().get(&mk), None);
}

#[test]
fn published_port_is_never_masqueraded_to() {
    let mut t = ct();
    t.reserve_port(Proto::Tcp, EXT, 40000).unwrap();
    let mut c = NewConn::new(key(Proto::Tcp, 40000, 80));
    c.snat = Some(EXT);
    let h = t.insert(c, &seg(SYN, 1, 0, 0), 0).unwrap();
    let p = t.get(h).unwrap().nat.snat.unwrap().1;
    assert_ne!(p, 40000);
    assert_eq!(p % 2, 0);
    assert!(t.reserve_port(Proto::Tcp, EXT, p).is_err());
    t.unreserve_port(Proto::Tcp, EXT, 40000).unwrap();
}

#[test]
fn limit_evicts_unreplied_first_then_oldest() {
    let mut t = Conntrack::with_mapping(
        Config {
            max_entries: 3,
            ..Config::default()
        },
        Mapping::with_seed(1),
    );
    let udp = |p| key(Proto::Udp, p, 53);
    let a = t
        .insert(NewConn::new(udp(1)), &Packet::other(1), 0)
        .unwrap();
    let b = t
        .insert(NewConn::new(udp(2)), &Packet::other(1), 1)
        .unwrap();
    let c = t
        .insert(NewConn::new(udp(3)), &Packet::other(1), 2)
        .unwrap();
    // b and c get replies (assured); a stays unreplied though it is refreshed.
    t.touch(c, Dir::Reply, &Packet::other(1), 3).unwrap();
    t.touch(b, Dir::Reply, &Packet::other(1), 4).unwrap();
    t.touch(a, Dir::Original, &Packet::other(1), 5).unwrap();
    let d = t
        .insert(NewConn::new(udp(4)), &Packet::other(1), 6)
        .unwrap();
    assert!(t.get(a).is_none(), "unreplied evicted first");
    assert_eq!(t.stats().evicted_unreplied, 1);
    let e = t
        .insert(NewConn::new(udp(5)), &Packet::other(1), 7)
        .unwrap();
    assert!(t.get(d).is_none(), "then the next unreplied");
    assert_eq!(t.stats().evicted_unreplied, 2);
    t.touch(e, Dir::Reply, &Packet::other(1), 8).unwrap();
    // All assured: the oldest-assured (c, replied first) goes.
    t.insert(NewConn::new(udp(6)), &Packet::other(1), 9)
        .unwrap();
    assert!(t.get(c).is_none());
    assert!(t.get(b).is_some() && t.get(e).is_some());
    let s = t.stats();
    assert_eq!(
        (s.entries, s.inserted, s.evicted_unreplied, s.evicted_other),
        (3, 6, 2, 1)
    );
    t.check_invariants();
    // Lowering the limit evicts at once.
    t.set_max_entries(1);
    assert_eq!(t.len(), 1);
    t.set_max_entries(0);
    assert!(matches!(
        t.insert(NewConn::new(udp(9)), &Packet::other(1), 9),
        Err(ConntrackError::Full)
    ));
}

#[test]
fn removal_by_rule_inside_address_and_port() {
    let mut t = ct();
    let other = Ipv4Addr::new(172, 30, 0, 99);
    let mut n = 0u16;
    let mut add = |t: &mut Conntrack, src: Ipv4Addr, proto, rule, port| {
        n += 1;
        let mut c = NewConn::new(FlowKey {
            src,
            ..key(proto, 1000 + n, 53)
        });
        c.snat = Some(EXT);
        c.rule = rule;
        c.port = port;
        let first = if proto == Proto::Tcp {
            seg(SYN, 1, 0, 0)
        } else {
            Packet::other(10)
        };
        t.insert(c, &first, 0).unwrap()
    };
    add(&mut t, INSIDE, Proto::Udp, None, Some(PortId(1)));
    add(&mut t, INSIDE, Proto::Tcp, None, Some(PortId(1)));
    add(&mut t, other, Proto::Udp, Some(RuleId(7)), Some(PortId(2)));
    add(&mut t, other, Proto::Tcp, Some(RuleId(8)), Some(PortId(2)));
    assert_eq!(t.remove_by_rule(RuleId(7)), 1);
    assert_eq!(t.remove_by_rule(RuleId(7)), 0);
    assert_eq!(t.remove_by_inside_addr(INSIDE), 2, "UDP included");
    assert_eq!(t.len(), 1);
    assert_eq!(t.mapping().len(), 1);
    assert_eq!(t.remove_by_port(PortId(2)), 1);
    assert!(t.is_empty() && t.mapping().is_empty());
    assert_eq!(t.stats().removed, 4);
    // A recreated container at the same address starts clean.
    add(&mut t, INSIDE, Proto::Udp, None, Some(PortId(3)));
    t.check_invariants();
}

#[test]
fn flush_filters() {
    let mut t = ct();
    t.insert(NewConn::new(key(Proto::Udp, 1, 53)), &Packet::other(1), 0)
        .unwrap();
    t.insert(NewConn::new(key(Proto::Tcp, 2, 80)), &seg(SYN, 1, 0, 0), 0)
        .unwrap();
    let mut z = NewConn::new(key(Proto::Udp, 3, 123));
    z.zone = 4;
    t.insert(z, &Packet::other(1), 0).unwrap();
    let f = |proto, addr, port, zone| Filter {
        proto,
        addr,
        port,
        zone,
    };
    assert_eq!(
        t.flush(&f(None, Some(Ipv4Addr::new(9, 9, 9, 9)), None, None)),
        0
    );
    assert_eq!(t.flush(&f(None, None, Some(80), None)), 1);
    assert_eq!(t.flush(&f(None, None, None, Some(4))), 1);
    assert_eq!(
        t.flush(&f(Some(Proto::Udp), Some(SERVER), Some(53), None)),
        1
    );
    assert!(t.is_empty());
}

#[test]
fn listing_shows_tuples_state_nat_timer_counters() {
    let mut t = ct();
    let mut c = NewConn::new(key(Proto::Udp, 1, 53));
    c.snat = Some(EXT);
    t.insert(c, &Packet::other(70), 0).unwrap();
    let h = established(&mut t, 0);
    t.touch(h, Dir::Reply, &seg(ACK, 5001, 1001, 1000), SEC)
        .unwrap();
    let mut rows: Vec<String> = t
        .iter(2 * SEC)
        .map(|(_, e)| {
            format!(
                "{} | {} | {} | {:?} | {}s | {}/{} {}/{}",
                e.original,
                e.reply,
                e.state_name(),
                e.nat.snat,
                e.remaining(2 * SEC) / SEC,
                e.counters[0].packets,
                e.counters[0].bytes,
                e.counters[1].packets,
                e.counters[1].bytes,
            )
        })
        .collect();
    rows.sort();
    assert_eq!(rows.len(), 2);
    assert!(rows[0].contains("ESTABLISHED"), "{rows:?}");
    assert!(rows[0].contains("2/80 2/1080"), "{rows:?}");
    assert!(rows[1].contains("UNREPLIED"));
    assert!(rows[1].contains("198.51.100.1"));
    assert!(rows[1].contains("| 118s |"), "{rows:?}");
    // Expired entries are not listed even before the sweep.
    assert_eq!(t.iter(200 * SEC).count(), 1);
}

#[test]
fn expiry_is_bounded_per_call_and_lazy_on_lookup() {
    let mut t = Conntrack::with_mapping(
        Config {
            expire_budget: 100,
            ..Config::default()
        },
        Mapping::with_seed(1),
    );
    for p in 0..250u16 {
        t.insert(NewConn::new(key(Proto::Udp, p, 53)), &Packet::other(1), 0)
            .unwrap();
    }
    let now = 121 * SEC;
    assert!(t.lookup(0, &key(Proto::Udp, 0, 53), now).is_none());
    assert_eq!(t.expire(now), 100);
    assert_eq!(t.expire(now), 100);
    assert_eq!(t.expire(now), 50);
    assert!(t.is_empty());
    // Re-creating a flow whose entry expired but was not swept works.
    t.insert(NewConn::new(key(Proto::Udp, 1, 53)), &Packet::other(1), now)
        .unwrap();
    t.insert(NewConn::new(key(Proto::Udp, 2, 53)), &Packet::other(1), now)
        .unwrap();
    let later = now + 200 * SEC;
    t.insert(
        NewConn::new(key(Proto::Udp, 1, 53)),
        &Packet::other(1),
        later,
    )
    .unwrap();
    assert_eq!(t.stats().expired, 251);
    assert_eq!(t.len(), 2);
    t.check_invariants();
}

#[test]
fn long_timers_outlive_the_wheel_span_and_idle_gaps_are_skipped() {
    let mut t = ct();
    let h = established(&mut t, 0);
    // Sweep every 10 min for 3 hours: the 5-day entry is re-filed, never expired.
    let mut now = 0;
    while now < 3 * 3600 * SEC {
        now += 600 * SEC;
        assert_eq!(t.expire(now), 0);
        t.check_invariants();
    }
    assert!(t.get(h).is_some());
    // One sweep after a 5-day idle gap: removed in one call.
    let end = Timeouts::default().tcp_established;
    assert_eq!(t.expire(end + SEC), 1);
    assert!(t.is_empty());
}

#[test]
fn clash_on_reply_tuple_is_refused_and_releases_port() {
    let mut t = ct();
    // An inbound flow to EXT:4000 (DNATed, but its port not reserved)
    // holds what would be the masqueraded flow's reply tuple.
    let mut squatter = NewConn::new(FlowKey {
        proto: Proto::Udp,
        src: SERVER,
        sport: 53,
        dst: EXT,
        dport: 4000,
    });
    squatter.dnat = Some((Ipv4Addr::new(172, 30, 0, 50), 4000));
    t.insert(squatter, &Packet::other(1), 0).unwrap();
    let mut c = NewConn::new(key(Proto::Udp, 4000, 53));
    c.snat = Some(EXT);
    let err = t.insert(c, &Packet::other(1), 0).unwrap_err();
    assert!(matches!(err, ConntrackError::Clash { .. }));
    assert!(t.mapping().is_empty());
    t.check_invariants();
}

#[derive(Debug, Clone)]
enum Op {
    Insert { host: u8, sport: u16, snat: bool },
    Reply { pick: usize },
    Remove { pick: usize },
    Advance { secs: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..6, 0u16..6, any::<bool>()).prop_map(|(host, sport, snat)| Op::Insert { host, sport, snat }),
        2 => any::<usize>().prop_map(|pick| Op::Reply { pick }),
        1 => any::<usize>().prop_map(|pick| Op::Remove { pick }),
        2 => (0u64..200).prop_map(|secs| Op::Advance { secs }),
    ]
}

proptest! {
    /// After any sequence of inserts, replies, removals and sweeps with a
    /// small limit: the index, lists, wheel and mapping refcounts agree,
    /// lookups by either direction find the same entry, and no two live
    /// mappings share an external port.
    #[test]
    fn table_invariants(ops in proptest::collection::vec(op(), 1..200)) {
        let mut t = Conntrack::with_mapping(
            Config { max_entries: 12, expire_budget: 5, ..Config::default() },
            Mapping::with_seed(5),
        );
        let mut now = 1_000_000u64;
        for o in ops {
            match o {
                Op::Insert { host, sport, snat } => {
                    let mut c = NewConn::new(FlowKey {
                        src: Ipv4Addr::new(172, 30, 0, host),
                        ..key(Proto::Udp, 1000 + sport, 53)
                    });
                    if snat { c.snat = Some(EXT); }
                    let _ = t.insert(c, &Packet::other(1), now);
                }
                Op::Reply { pick } => {
                    let hs: Vec<Handle> = t.iter(now).map(|(h, _)| h).collect();
                    if !hs.is_empty() {
                        t.touch(hs[pick % hs.len()], Dir::Reply, &Packet::other(1), now).unwrap();
                    }
                }
                Op::Remove { pick } => {
                    let hs: Vec<Handle> = t.iter(now).map(|(h, _)| h).collect();
                    if !hs.is_empty() {
                        prop_assert!(t.remove(hs[pick % hs.len()]));
                    }
                }
                Op::Advance { secs } => {
                    now += secs * SEC;
                    t.expire(now);
                }
            }
            t.check_invariants();
            prop_assert!(t.len() <= 12);
            for (h, e) in t.iter(now) {
                prop_assert_eq!(t.lookup(e.zone, &e.original, now), Some((h, Dir::Original)));
                prop_assert_eq!(t.lookup(e.zone, &e.reply, now), Some((h, Dir::Reply)));
            }
            let mut ext = std::collections::HashSet::new();
            for m in t.mapping().iter() {
                prop_assert!(ext.insert((m.key.proto, m.key.external, m.external_port)));
            }
        }
    }
}

/// A restarted inside host reuses the 4-tuple of an ESTABLISHED entry
/// (client ISN 1000, server ISN 5000 before): its new SYN (ISN 777000)
/// passes and leaves the state alone.
fn new_syn_on_established(t: &mut Conntrack) -> Handle {
    let h = established(t, 0);
    let r = t
        .touch(h, Dir::Original, &seg(SYN, 777_000, 0, 0), SEC)
        .unwrap();
    assert_eq!(r.invalid, None, "the new SYN is forwarded");
    assert_eq!(state(t, h), TcpState::Established);
    h
}

#[test]
fn a_new_syn_on_an_open_tuple_starts_over_when_the_peer_accepts_it() {
    let mut t = ct();
    let h = new_syn_on_established(&mut t);
    // A SYN/ACK that does not answer it is still invalid.
    let r = t
        .touch(h, Dir::Reply, &seg(SYN | ACK, 9000, 1001, 0), SEC)
        .unwrap();
    assert_eq!(r.invalid, Some(Invalid::UnexpectedInState));
    // The peer had forgotten the old connection and accepts the new one.
    t.touch(h, Dir::Reply, &seg(SYN | ACK, 9000, 777_001, 0), SEC)
        .unwrap();
    assert_eq!(state(&t, h), TcpState::SynRecv);
    t.touch(h, Dir::Original, &seg(ACK, 777_001, 9001, 0), SEC)
        .unwrap();
    assert_eq!(state(&t, h), TcpState::Established);
    // The new connection's numbers are the ones tracked now: its FIN and
    // the peer's ACK of it move on as usual.
    t.touch(h, Dir::Original, &seg(FIN | ACK, 777_001, 9001, 0), SEC)
        .unwrap();
    t.touch(h, Dir::Reply, &seg(ACK, 9001, 777_002, 0), SEC)
        .unwrap();
    assert_eq!(state(&t, h), TcpState::CloseWait);
}

#[test]
fn a_new_syn_on_an_open_tuple_refused_by_the_peer_closes_and_reopens() {
    let mut t = ct();
    let h = new_syn_on_established(&mut t);
    // Port closed at the peer: RST/ACK acknowledging the SYN, sequence 0
    // (far from the old connection's numbers).
    t.touch(h, Dir::Reply, &seg(RST | ACK, 0, 777_001, 0), SEC)
        .unwrap();
    assert_eq!(state(&t, h), TcpState::Close);
    t.touch(h, Dir::Original, &seg(SYN, 777_000, 0, 0), 2 * SEC)
        .unwrap();
    assert_eq!(state(&t, h), TcpState::SynSent);
}

#[test]
fn a_new_syn_on_an_open_tuple_meets_a_challenge_ack_then_reopens() {
    let mut t = ct();
    let h = new_syn_on_established(&mut t);
    // The peer still has the old connection: a challenge ACK (RFC 5961)
    // with its own numbers, which passes as part of the old connection.
    let r = t
        .touch(h, Dir::Reply, &seg(ACK, 5001, 1001, 0), SEC)
        .unwrap();
    assert_eq!(r.invalid, None);
    // The new host knows no such connection and resets it with the
    // challenge's ACK number as sequence: in window, the entry closes.
    t.touch(h, Dir::Original, &seg(RST, 1001, 0, 0), SEC)
        .unwrap();
    assert_eq!(state(&t, h), TcpState::Close);
    t.touch(h, Dir::Original, &seg(SYN, 777_000, 0, 0), 2 * SEC)
        .unwrap();
    assert_eq!(state(&t, h), TcpState::SynSent);
}

#[test]
fn a_challenge_ack_in_syn_sent_passes_and_the_rst_answering_it_closes() {
    // The container that had the old connection on this 4-tuple is gone,
    // and its entries with it; the peer still holds that connection.
    let mut t = ct();
    let h = syn_sent(&mut t, 45000, 777_000, 0);
    // The peer's challenge ACK carries the old connection's numbers.
    let r = t
        .touch(h, Dir::Reply, &seg(ACK, 5_001, 1_001, 0), 1)
        .unwrap();
    assert_eq!(r.invalid, None, "the challenge ACK reaches the new host");
    assert_eq!(state(&t, h), TcpState::SynSent);
    // A RST with any other sequence number is still out of window.
    let r = t
        .touch(h, Dir::Original, &seg(RST, 1_000, 0, 0), 1)
        .unwrap();
    assert_eq!(r.invalid, Some(Invalid::RstOutOfWindow));
    // The new host's RST, with the challenge's ACK number, ends the peer's
    // old connection and the entry.
    let r = t
        .touch(h, Dir::Original, &seg(RST, 1_001, 0, 0), 1)
        .unwrap();
    assert_eq!(r.invalid, None);
    assert_eq!(state(&t, h), TcpState::Close);
    // The SYN's retransmission opens the connection.
    t.touch(h, Dir::Original, &seg(SYN, 777_000, 0, 0), 1000)
        .unwrap();
    t.touch(h, Dir::Reply, &seg(SYN | ACK, 9_000, 777_001, 0), 1001)
        .unwrap();
    t.touch(h, Dir::Original, &seg(ACK, 777_001, 9_001, 0), 1002)
        .unwrap();
    assert_eq!(state(&t, h), TcpState::Established);
}
