//! ICMP errors in transit and fragments.

use super::*;
use yard_wire::icmp::IcmpErrorKind;

#[test]
fn frag_needed_from_a_router_reaches_the_snat_client() {
    let mut gw = lab();
    let c = (C1, 40000);
    let s = (S, 80);
    let sent = tcp(C1_MAC, GW1_MAC, c, s, 64, Tcp::Syn, (100, 0), b"");
    let (_, out) = run(&mut gw, NET1, sent.clone(), 0);
    let stats = gw.conntrack().stats();
    // A router beyond R says the translated packet was too big.
    let router = Ipv4Addr::new(203, 0, 113, 254);
    let kind = IcmpErrorKind::FragmentationNeeded { next_hop_mtu: 1400 };
    let err = icmp_error(R_MAC, U_MAC, router, 0x5151, 62, kind, &out);
    let (a, got) = run(&mut gw, Side::Uplink, err, 1);
    assert_eq!(
        a,
        Action::Send {
            side: NET1,
            len: got.len()
        }
    );
    // The quote is the packet as C1 sent it (with the TTL it left with);
    // the router's address is kept.
    let want = icmp_error(
        GW1_MAC,
        C1_MAC,
        router,
        0x5151,
        61,
        kind,
        &with_ttl(sent, 63),
    );
    assert_eq!(got, want);
    assert_checksums(&got);
    // Never creates or refreshes an entry.
    assert_eq!(gw.conntrack().stats(), stats);
    let e = gw.conntrack().iter(1).next().unwrap().1;
    assert_eq!(e.counters[1].packets, 0);
    assert!(!e.seen_reply);
}

#[test]
fn port_unreachable_from_a_dnat_server_reaches_the_outside_client() {
    let mut gw = lab();
    gw.add_publish(rule(3, Proto::Udp, 5353, C1, 53)).unwrap();
    let q = udp(R_MAC, U_MAC, (S, 5000), (U, 5353), 60, b"query");
    let (_, delivered) = run(&mut gw, Side::Uplink, q.clone(), 0);
    assert_eq!(
        delivered,
        udp(GW1_MAC, C1_MAC, (S, 5000), (C1, 53), 59, b"query")
    );
    let kind = IcmpErrorKind::DestUnreachable(3);
    let err = icmp_error(C1_MAC, GW1_MAC, C1, 0x0101, 64, kind, &delivered);
    let (a, got) = run(&mut gw, NET1, err, 1);
    assert_eq!(
        a,
        Action::Send {
            side: Side::Uplink,
            len: got.len()
        }
    );
    // From the address the client talked to, quoting what it sent.
    let want = icmp_error(U_MAC, R_MAC, U, 0x0101, 63, kind, &with_ttl(q, 59));
    assert_eq!(got, want);
    assert_checksums(&got);
}

#[test]
fn untracked_icmp_error_is_dropped() {
    let mut gw = lab();
    let about = udp(U_MAC, R_MAC, (U, 1), (S, 2), 64, b"x");
    let err = icmp_error(
        R_MAC,
        U_MAC,
        R,
        1,
        64,
        IcmpErrorKind::DestUnreachable(3),
        &about,
    );
    assert_eq!(
        run(&mut gw, Side::Uplink, err, 0).0,
        Action::Drop(GatewayDrop::UntrackedIcmpError)
    );
    assert!(gw.conntrack().is_empty());
}

#[test]
fn icmp_errors_with_a_bad_checksum_are_dropped() {
    // RFC 5508 REQ-3 (the error's own checksum) and REQ-3a (the checksum of
    // the IP header it quotes).
    let mut gw = lab();
    let sent = c1_syn(100);
    let (_, out) = run(&mut gw, NET1, sent, 0);
    let router = Ipv4Addr::new(203, 0, 113, 254);
    let kind = IcmpErrorKind::FragmentationNeeded { next_hop_mtu: 1400 };
    let good = icmp_error(R_MAC, U_MAC, router, 0x5151, 62, kind, &out);
    // The ICMP checksum field, right after the 20-byte outer IP header.
    let mut bad_icmp = good.clone();
    bad_icmp[14 + 20 + 2] ^= 0x01;
    // The quoted header's TTL, changed without its checksum (the ICMP
    // checksum made right again, so only the quote's is wrong).
    let mut bad_quote = good.clone();
    let quote_ttl = 14 + 20 + 8 + 8;
    bad_quote[quote_ttl] ^= 0x01;
    let icmp = 14 + 20;
    bad_quote[icmp + 2..icmp + 4].copy_from_slice(&[0, 0]);
    let sum = yard_wire::checksum::checksum(&bad_quote[icmp..]);
    bad_quote[icmp + 2..icmp + 4].copy_from_slice(&sum.to_be_bytes());
    for (what, err) in [("ICMP", bad_icmp), ("quoted IP header", bad_quote)] {
        assert_eq!(
            run(&mut gw, Side::Uplink, err, 1).0,
            Action::Drop(GatewayDrop::Malformed),
            "an error with a bad {what} checksum went on"
        );
    }
    assert_eq!(gw.counters().drop_count(GatewayDrop::Malformed), 2);
    let (a, _) = run(&mut gw, Side::Uplink, good, 1);
    assert_sent(a, NET1);
}

/// Splits a UDP frame into two fragments: `first` L4 bytes (a multiple of
/// 8) and the rest, with IP id `id`.
fn split(f: &[u8], first: usize, id: u16) -> (Vec<u8>, Vec<u8>) {
    let mut a = f[..14 + 20 + first].to_vec();
    let mut ip = Ipv4Packet::new_unchecked(&mut a[14..]);
    ip.set_total_len((20 + first) as u16);
    ip.set_ident(id);
    ip.set_flags_frag(false, true, 0);
    ip.fill_checksum();
    let mut b = f[..14 + 20].to_vec();
    b.extend_from_slice(&f[14 + 20 + first..]);
    let mut ip = Ipv4Packet::new_unchecked(&mut b[14..]);
    ip.set_total_len((f.len() - 14 - first) as u16);
    ip.set_ident(id);
    ip.set_flags_frag(false, false, first as u16);
    ip.fill_checksum();
    (a, b)
}

fn datagram() -> (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) {
    let payload: Vec<u8> = (0..100u8).collect();
    let sent = udp(C1_MAC, GW1_MAC, (C1, 6000), (S, 9000), 64, &payload);
    let want = udp(U_MAC, R_MAC, (U, 6000), (S, 9000), 63, &payload);
    let (s1, s2) = split(&sent, 48, 0x4242);
    let (w1, w2) = split(&want, 48, 0x4242);
    (s1, s2, w1, w2)
}

#[test]
fn fragments_in_order_through_snat() {
    let mut gw = lab();
    let (s1, s2, w1, w2) = datagram();
    let (a, out) = run(&mut gw, NET1, s1, 0);
    assert_eq!(
        a,
        Action::Send {
            side: Side::Uplink,
            len: out.len()
        }
    );
    assert_eq!(out, w1);
    let (a, out) = run(&mut gw, NET1, s2, 1);
    assert_eq!(
        a,
        Action::Send {
            side: Side::Uplink,
            len: out.len()
        }
    );
    assert_eq!(out, w2);
    assert!(outbox(&mut gw).is_empty());
    assert_eq!(gw.conntrack().len(), 1);
}

#[test]
fn fragments_out_of_order_through_snat() {
    let mut gw = lab();
    let (s1, s2, w1, w2) = datagram();
    assert_eq!(run(&mut gw, NET1, s2, 0).0, Action::Consumed);
    assert!(outbox(&mut gw).is_empty());
    let (_, out) = run(&mut gw, NET1, s1, 1);
    assert_eq!(out, w1);
    assert_eq!(outbox(&mut gw), vec![(Side::Uplink, w2)]);
    assert_eq!(gw.counters().forwarded, 2);
}
