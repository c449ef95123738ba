//! The dry run ([`Gateway::trace`]): the copy's verdict and rewrite, and
//! nothing changed on the gateway itself.

use super::*;
use crate::conntrack::Dir;

#[test]
fn a_traced_syn_shows_the_snat_it_would_get_and_tracks_nothing() {
    let gw = lab();
    let f = tcp(
        C1_MAC,
        GW1_MAC,
        (C1, 40000),
        (S, 80),
        64,
        Tcp::Syn,
        (100, 0),
        b"",
    );
    let t = gw.trace(NET1, &f, Offload::NONE, 0);
    assert_sent(t.action, Side::Uplink);
    assert_eq!(
        t.frame,
        tcp(
            U_MAC,
            R_MAC,
            (U, 40000),
            (S, 80),
            63,
            Tcp::Syn,
            (100, 0),
            b""
        )
    );
    let facts = t.ipv4.unwrap();
    assert!(facts.source_fits);
    assert!(facts.established.is_none());
    let made = facts.created.expect("the copy made an entry");
    assert_eq!(made.nat.snat, Some((U, 40000)));
    assert_eq!(facts.route, Some((Side::Uplink, R)));
    // The gateway itself: no entry, no counter, nothing queued.
    assert!(gw.conntrack().is_empty());
    assert_eq!(gw.counters(), lab().counters());
    let mut gw = gw;
    assert!(gw.next_outbox().is_none());

    // And the real packet reaches the very same verdict and bytes.
    let (a, out) = run(&mut gw, NET1, f, 0);
    assert_eq!((a, out), (t.action, t.frame));
}

#[test]
fn a_traced_reply_rides_the_entry_without_touching_it() {
    let mut gw = lab();
    let f = tcp(
        C1_MAC,
        GW1_MAC,
        (C1, 40000),
        (S, 80),
        64,
        Tcp::Syn,
        (100, 0),
        b"",
    );
    run(&mut gw, NET1, f, 0);
    let reply = tcp(
        R_MAC,
        U_MAC,
        (S, 80),
        (U, 40000),
        60,
        Tcp::SynAck,
        (900, 101),
        b"",
    );
    let before = gw
        .conntrack()
        .iter(1)
        .map(|(_, e)| e.clone())
        .next()
        .unwrap();
    let t = gw.trace(Side::Uplink, &reply, Offload::NONE, 1);
    assert_sent(t.action, NET1);
    let (entry, dir) = t.ipv4.unwrap().established.unwrap();
    assert_eq!(dir, Dir::Reply);
    assert_eq!(entry.original, before.original);
    let after = gw
        .conntrack()
        .iter(1)
        .map(|(_, e)| e.clone())
        .next()
        .unwrap();
    assert_eq!(after.state_name(), before.state_name());
    assert_eq!(after.counters, before.counters);
}

#[test]
fn a_trace_to_an_unknown_next_hop_says_it_would_ask_by_arp() {
    let gw = bare_lab();
    let f = udp(C1_MAC, GW1_MAC, (C1, 5000), (S, 53), 64, b"q");
    let t = gw.trace(NET1, &f, Offload::NONE, 0);
    assert_eq!(t.action, Action::Consumed);
    assert!(t.held_for_arp);
    assert_eq!(t.made.len(), 1, "one ARP request for R");
    let mut gw = gw;
    assert!(gw.next_outbox().is_none());
}
