//! GRE tunnel labs: several "hosts" (namespaces, each with its own
//! yardd) joined by a veth underlay, containers behind each, Ethernet carried
//! between the hosts over GRE (raw IPv4 protocol 47) or GRE-in-UDP (RFC 8086).
//!
//! What is checked end to end: cross-host ping and TCP transfers (sha256 of
//! what arrived), isolation of two networks by GRE key between the same two
//! hosts, the overlay MTU (the figure `net inspect` reports, the TAPs' MTU,
//! DF pings at and over the limit, ICMP fragmentation-needed, outer
//! fragmentation of non-DF packets, MSS clamping), split horizon in a full
//! mesh (one copy of each broadcast, no loop), GRE-in-UDP (sent with UDP
//! GSO, no fallback), and what the underlay carries as decoded by tshark.
//!
//! Needs root; without it each test prints why and returns.

use std::thread::sleep;
use std::time::Duration;

use yard_tests::cmd::{describe, in_ns_ok, stdout};
use yard_tests::hosts::{
    context, mesh, ping, ping_fails, ping_ok, transfer_checked, tshark_fields, underlay_ifname,
    Host, Tcpdump,
};
use yard_tests::{require, Container};

/// The overlay network's name on every host.
const NET: &str = "ov";
/// Its subnet; the gateway is 172.32.0.1 on every host.
const SUBNET: &str = "172.32.0.0/16";
/// The GRE key of the main network.
const KEY: &str = "42";
/// The size of the big transfers, in MiB.
const BIG_MIB: u32 = 200;

/// Two hosts joined by one underlay link, network [`NET`] on both with a
/// tunnel of `kind` (`--gre` or `--gre-udp`) and key [`KEY`] toward the other,
/// and a container on each: c1 (172.32.0.2, host 1) and c2 (172.32.0.3, host 2).
fn two_hosts(kind: &str) -> (Vec<Host>, Container, Container) {
    two_hosts_with(kind, &[])
}

/// [`two_hosts`] with extra `port add` arguments for both containers.
fn two_hosts_with(kind: &str, tap_extra: &[&str]) -> (Vec<Host>, Container, Container) {
    let mut hosts = mesh(2);
    for host in &hosts {
        host.ctl_ok(&["net", "create", NET, "--subnet", SUBNET]);
    }
    hosts[0].tunnel("t2", NET, kind, &hosts[1], &["--key", KEY]);
    hosts[1].tunnel("t1", NET, kind, &hosts[0], &["--key", KEY]);
    let c1 = hosts[0].tap("c1", NET, "172.32.0.2/16", tap_extra);
    let c2 = hosts[1].tap("c2", NET, "172.32.0.3/16", tap_extra);
    (hosts, c1, c2)
}

fn refs(hosts: &[Host]) -> Vec<&Host> {
    hosts.iter().collect()
}

/// A GRE key as tshark prints it (`0x0000002a`) or in decimal.
fn parse_key(text: &str) -> Option<u32> {
    let text = text.trim();
    match text.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

#[test]
fn containers_on_two_hosts_ping_and_move_200mb_over_gre() {
    if !require(&["ping", "socat", "sha256sum", "ss", "dd"]) {
        return;
    }
    let (hosts, c1, c2) = two_hosts("--gre");
    let all = refs(&hosts);

    // Both TAPs took the overlay MTU: 1500 - 20 (IPv4) - 4 (GRE) - 4 (key)
    // - 14 (inner Ethernet).
    for (host, c) in [(&hosts[0], &c1), (&hosts[1], &c2)] {
        assert_eq!(host.overlay_mtu(NET), Some(1458), "host {}", host.index());
        assert_eq!(c.mtu(), 1458, "{}'s TAP MTU", c.port);
    }

    ping_ok(&all, &c1, c2.ip, &[]);
    ping_ok(&all, &c2, c1.ip, &[]);

    // Each container's MAC is learned behind the tunnel on the other host.
    for (host, tunnel, remote) in [(&hosts[0], "t2", &c2), (&hosts[1], "t1", &c1)] {
        let fdb: Vec<yard_ctl::api::FdbEntry> = host.ctl_parse(&["fdb", "show", "--net", NET]);
        let mac = remote.mac();
        let entry = fdb.iter().find(|e| e.mac == mac).unwrap_or_else(|| {
            panic!(
                "host {}: {}'s MAC {mac} not learned: {fdb:#?}",
                host.index(),
                remote.port
            )
        });
        assert_eq!(entry.port, tunnel, "host {}: {fdb:#?}", host.index());
    }

    let dir = tempfile::tempdir().expect("temp dir");
    transfer_checked(&all, &c1, &c2, dir.path(), BIG_MIB, 5001);

    // The tunnel ports carried it: at least 200 MiB / 1458 frames each way
    // is far too strict with offloads off the wire, so count bytes instead.
    let stats: Vec<yard_ctl::api::PortStats> = hosts[0].ctl_parse(&["port", "stats", "t2"]);
    let t2 = &stats[0];
    assert!(
        t2.tx_bytes >= u64::from(BIG_MIB) * 1024 * 1024,
        "t2 sent only {} bytes for a {BIG_MIB} MiB transfer: {t2:?}",
        t2.tx_bytes
    );
    assert!(t2.rx_packets > 0, "t2 received nothing (ACKs): {t2:?}");
}

#[test]
fn two_networks_with_different_keys_between_the_same_hosts_stay_isolated() {
    if !require(&["ping"]) {
        return;
    }
    let mut hosts = mesh(2);
    // L2-only networks, so both can use the very same addresses: if keys
    // did not separate them, a red container would reach (or be answered
    // by) the blue one with the same address.
    for host in &hosts {
        host.ctl_ok(&["net", "create", "red"]);
        host.ctl_ok(&["net", "create", "blue"]);
    }
    hosts[0].tunnel("red2", "red", "--gre", &hosts[1], &["--key", "42"]);
    hosts[0].tunnel("blue2", "blue", "--gre", &hosts[1], &["--key", "43"]);
    hosts[1].tunnel("red1", "red", "--gre", &hosts[0], &["--key", "42"]);
    hosts[1].tunnel("blue1", "blue", "--gre", &hosts[0], &["--key", "43"]);
    let (h1, h2) = hosts.split_at_mut(1);
    let (h1, h2) = (&mut h1[0], &mut h2[0]);
    let red_a = h1.tap("ra", "red", "10.60.0.2/24", &["--mac", "02:00:00:00:0a:02"]);
    let blue_a = h1.tap(
        "ba",
        "blue",
        "10.60.0.2/24",
        &["--mac", "02:00:00:00:0b:02"],
    );
    let red_b = h2.tap("rb", "red", "10.60.0.3/24", &["--mac", "02:00:00:00:0a:03"]);
    let blue_b = h2.tap(
        "bb",
        "blue",
        "10.60.0.3/24",
        &["--mac", "02:00:00:00:0b:03"],
    );
    // An address only on blue, and one only on red.
    let blue_only = h2.tap(
        "bo",
        "blue",
        "10.60.0.4/24",
        &["--mac", "02:00:00:00:0b:04"],
    );
    let red_only = h1.tap("ro", "red", "10.60.0.5/24", &["--mac", "02:00:00:00:0a:05"]);
    let all = [&*h1, &*h2];

    let before_blue: Vec<yard_ctl::api::PortStats> = h2.ctl_parse(&["port", "stats", "bb"]);
    ping_ok(&all, &red_a, red_b.ip, &[]);
    let after_blue: Vec<yard_ctl::api::PortStats> = h2.ctl_parse(&["port", "stats", "bb"]);
    // Red's frames never reached blue's container with the same address.
    assert_eq!(
        before_blue[0].tx_packets,
        after_blue[0].tx_packets,
        "red traffic reached blue's bb: {before_blue:?} -> {after_blue:?}\n{}",
        context(&all)
    );
    ping_ok(&all, &blue_a, blue_b.ip, &[]);

    // Each side resolved 10.60.0.3 to its own network's container.
    for (from, want) in [(&red_a, &red_b), (&blue_a, &blue_b)] {
        let neigh = stdout(&in_ns_ok(
            &from.ns,
            &["ip", "neigh", "show", "10.60.0.3", "dev", "eth0"],
        ));
        let mac = want.mac().to_string();
        assert!(
            neigh.to_lowercase().contains(&mac.to_lowercase()),
            "{} resolved 10.60.0.3 to the wrong MAC (want {mac}, {}):\n{neigh}",
            from.port,
            want.port
        );
    }

    // Neither network reaches an address that exists only on the other.
    ping_fails(&all, &red_a, blue_only.ip);
    ping_fails(&all, &blue_only, red_only.ip);
    ping_ok(&all, &red_only, red_b.ip, &[]);
    ping_ok(&all, &blue_only, blue_a.ip, &[]);

    // Each key's frames arrived on its own tunnel port, and no container
    // learned a MAC of the other network.
    let stats: Vec<yard_ctl::api::PortStats> = h2.ctl_parse(&["port", "stats"]);
    let rx = |name: &str| {
        stats
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.rx_packets)
            .unwrap_or_else(|| panic!("no stats for {name}: {stats:#?}"))
    };
    assert!(rx("red1") > 0 && rx("blue1") > 0, "{stats:#?}");
    for (c, foreign) in [
        (&red_a, "02:00:00:00:0b:"),
        (&red_only, "02:00:00:00:0b:"),
        (&blue_a, "02:00:00:00:0a:"),
        (&blue_only, "02:00:00:00:0a:"),
    ] {
        let neigh = stdout(&in_ns_ok(&c.ns, &["ip", "neigh", "show"]));
        assert!(
            !neigh.contains(foreign),
            "{} learned a MAC of the other network:\n{neigh}",
            c.port
        );
    }
}

#[test]
fn overlay_mtu_follows_the_gre_options_and_df_pings_fit_at_the_limit() {
    if !require(&["ping"]) {
        return;
    }
    let (mut hosts, c1, c2) = two_hosts("--gre");

    // The figure per header option, on networks of their own.
    for (net, subnet, extra, want) in [
        ("np", "172.33.0.0/16", &[][..], 1462),
        (
            "nx",
            "172.34.0.0/16",
            &["--key", "9", "--csum", "--seq"][..],
            1450,
        ),
    ] {
        for host in &hosts {
            host.ctl_ok(&["net", "create", net, "--subnet", subnet]);
        }
        hosts[0].tunnel(&format!("{net}2"), net, "--gre", &hosts[1], extra);
        hosts[1].tunnel(&format!("{net}1"), net, "--gre", &hosts[0], extra);
        for host in &hosts {
            assert_eq!(host.overlay_mtu(net), Some(want), "{net} {extra:?}");
        }
    }
    for host in &hosts {
        assert_eq!(host.overlay_mtu(NET), Some(1458), "key 42");
    }
    assert_eq!((c1.mtu(), c2.mtu()), (1458, 1458));

    // key + csum + seq carries traffic too, at its own DF limit (1450 - 28).
    let x1 = hosts[0].tap("x1", "nx", "172.34.0.2/16", &[]);
    let x2 = hosts[1].tap("x2", "nx", "172.34.0.3/16", &[]);
    let all = refs(&hosts);
    assert_eq!((x1.mtu(), x2.mtu()), (1450, 1450));
    ping_ok(&all, &x1, x2.ip, &["-M", "do", "-s", "1422"]);
    ping_ok(&all, &x2, x1.ip, &["-M", "do", "-s", "1422"]);

    // DF at the limit: 1430 + 8 (ICMP) + 20 (IP) = 1458, both ways.
    ping_ok(&all, &c1, c2.ip, &["-M", "do", "-s", "1430"]);
    ping_ok(&all, &c2, c1.ip, &["-M", "do", "-s", "1430"]);
}

/// Two hosts whose containers' ports were created with `--mtu 1500`, above
/// the overlay's 1458 (a user's explicit choice; by default a TAP on a
/// tunnel network gets the overlay MTU). A container raising its own MTU
/// past its port's is not this: the port drops what exceeds its MTU, as a
/// veth would.
fn two_hosts_at_mtu_1500(kind: &str) -> (Vec<Host>, Container, Container) {
    let (hosts, c1, c2) = two_hosts_with(kind, &["--mtu", "1500"]);
    for c in [&c1, &c2] {
        assert_eq!(c.mtu(), 1500);
    }
    (hosts, c1, c2)
}

#[test]
fn df_packet_over_the_overlay_mtu_gets_frag_needed_not_a_black_hole() {
    if !require(&["ping"]) {
        return;
    }
    let (hosts, c1, c2) = two_hosts_at_mtu_1500("--gre");
    let all = refs(&hosts);
    ping_ok(&all, &c1, c2.ip, &[]);

    // DF and too big for the tunnel: the sender hears ICMP
    // fragmentation-needed with the overlay MTU instead of losing the packet
    // silently.
    let out = ping(&c1, c2.ip, 3, 6, &["-M", "do", "-s", "1472"]);
    let text = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains("Frag needed") && text.contains("mtu = 1458"),
        "a DF ping of 1500 bytes from a container at MTU 1500 got no \
         fragmentation-needed with mtu 1458 (a black hole):\n{}\n{}",
        describe(
            &format!("ip netns exec {} ping -M do -s 1472 {}", c1.ns, c2.ip),
            &out
        ),
        context(&all)
    );
    let route = stdout(&in_ns_ok(
        &c1.ns,
        &["ip", "route", "get", &c2.ip.to_string()],
    ));
    assert!(
        route.contains("mtu 1458"),
        "c1's kernel did not learn the path MTU 1458: {route}"
    );
    // Having learned it, c1 fits its packets again.
    ping_ok(&all, &c1, c2.ip, &["-M", "do", "-s", "1430"]);
}

#[test]
fn non_df_packet_over_the_overlay_mtu_is_carried_in_outer_fragments() {
    if !require(&["ping", "tcpdump", "tshark"]) {
        return;
    }
    let (hosts, c1, c2) = two_hosts_at_mtu_1500("--gre");
    let all = refs(&hosts);
    let dir = tempfile::tempdir().expect("temp dir");
    ping_ok(&all, &c1, c2.ip, &[]);

    // 3000 bytes without DF: c1 sends 1500-byte IP fragments, each too big
    // for the tunnel, so the underlay must carry them as outer fragments.
    let mut frags = Tcpdump::start(
        hosts[0].ns(),
        &underlay_ifname(2),
        "ip proto 47 and (ip[6:2] & 0x3fff != 0)",
        None,
        30,
        dir.path(),
        "outer-frags",
    );
    let out = ping(&c1, c2.ip, 3, 10, &["-M", "dont", "-s", "3000"]);
    // The replies came back through the tunnel, but tcpdump may not have
    // written their fragments yet: wait for them (bounded), then stop.
    frags.wait_frames(Duration::from_secs(10), None, 4);
    let dump_err = frags.stop();
    let outer = tshark_fields(
        &dir.path().join("outer-frags.pcap"),
        None,
        &["ip.src", "ip.flags.mf", "ip.frag_offset"],
    );
    assert!(
        out.status.success(),
        "a 3000-byte non-DF ping across the tunnel got no reply:\n{}\n\
         outer fragments on host 1's underlay: {outer:#?}\n{}",
        describe(
            &format!("ip netns exec {} ping -M dont -s 3000 {}", c1.ns, c2.ip),
            &out
        ),
        context(&all)
    );
    assert!(
        outer.len() >= 4,
        "expected outer GRE fragments both ways on the underlay, saw {}:\n{outer:#?}\n{dump_err}",
        outer.len()
    );
}

#[test]
fn tcp_from_containers_at_mtu_1500_gets_its_mss_clamped_and_arrives() {
    if !require(&["socat", "sha256sum", "ss", "dd", "tcpdump", "tshark"]) {
        return;
    }
    let (hosts, c1, c2) = two_hosts_at_mtu_1500("--gre");
    let all = refs(&hosts);
    let dir = tempfile::tempdir().expect("temp dir");

    // c2 connects to c1 with MSS 1460 (its MTU 1500); the SYN that reaches
    // c1 must carry at most 1458 - 40 = 1418.
    let mut syns = Tcpdump::start(
        &c1.ns,
        "eth0",
        "tcp port 5002 and tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn",
        Some(1),
        60,
        dir.path(),
        "syn",
    );
    transfer_checked(&all, &c2, &c1, dir.path(), 50, 5002);
    syns.wait_frames(Duration::from_secs(10), None, 1);
    let dump_err = syns.stop();
    let mss = tshark_fields(&dir.path().join("syn.pcap"), None, &["tcp.options.mss_val"]);
    let mss: Vec<u32> = mss.iter().filter_map(|m| m.trim().parse().ok()).collect();
    assert_eq!(
        mss.len(),
        1,
        "expected one SYN captured in c1: {mss:?}\n{dump_err}"
    );
    assert!(
        mss[0] <= 1418,
        "the SYN from c2 (MTU 1500) arrived with MSS {} > 1418 = 1458 - 40: not clamped",
        mss[0]
    );
    // The other direction too, with c1 the client.
    transfer_checked(&all, &c1, &c2, dir.path(), 50, 5004);
}

#[test]
fn full_mesh_of_three_hosts_pings_everywhere_and_floods_each_broadcast_once() {
    if !require(&["ping", "arping", "tcpdump", "tshark"]) {
        return;
    }
    let mut hosts = mesh(3);
    for host in &hosts {
        host.ctl_ok(&["net", "create", NET, "--subnet", SUBNET]);
    }
    for i in 0..3 {
        for j in 0..3 {
            if i != j {
                let name = format!("t{}", j + 1);
                hosts[i].tunnel(&name, NET, "--gre", &hosts[j], &["--key", KEY]);
            }
        }
    }
    let containers: Vec<Container> = (0..3)
        .map(|i| {
            hosts[i].tap(
                &format!("c{}", i + 1),
                NET,
                &format!("172.32.0.{}/16", i + 2),
                &[],
            )
        })
        .collect();
    let all = refs(&hosts);

    for from in &containers {
        for to in &containers {
            if from.port != to.port {
                ping_ok(&all, from, to.ip, &[]);
            }
        }
    }

    // Broadcasts from c1: three ARP requests (arping -b keeps broadcasting)
    // and three broadcast echo requests. Each must reach c2 and c3 once.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut dumps: Vec<Tcpdump> = containers[1..]
        .iter()
        .map(|c| {
            Tcpdump::start(
                &c.ns,
                "eth0",
                "ether broadcast",
                None,
                30,
                dir.path(),
                &c.port,
            )
        })
        .collect();
    let c1 = &containers[0];
    let target = containers[2].ip.to_string();
    let arp = c1.exec(&["arping", "-b", "-c", "3", "-w", "6", "-I", "eth0", &target]);
    let bcast = c1.exec(&[
        "ping",
        "-n",
        "-b",
        "-c",
        "3",
        "-i",
        "0.3",
        "-W",
        "1",
        "172.32.255.255",
    ]);
    // Each copy must reach c2 and c3 through the tunnels and be written by
    // their tcpdump: wait (bounded) until both captures hold the three ARP
    // requests and the three echo requests, then give any extra copy (a
    // loop) a second to show up before stopping.
    let arp_filter = format!("arp.opcode == 1 && arp.dst.proto_ipv4 == {target}");
    let echo_filter = "icmp.type == 8 && ip.dst == 172.32.255.255";
    for dump in &mut dumps {
        dump.wait_frames(Duration::from_secs(15), Some(&arp_filter), 3);
        dump.wait_frames(Duration::from_secs(15), Some(echo_filter), 3);
    }
    sleep(Duration::from_secs(1));
    for dump in dumps {
        dump.stop();
    }
    assert!(
        stdout(&arp).contains("Received"),
        "{}",
        describe("arping", &arp)
    );
    for c in &containers[1..] {
        let file = dir.path().join(format!("{}.pcap", c.port));
        let arps = tshark_fields(&file, Some(&arp_filter), &["arp.src.proto_ipv4"]);
        assert_eq!(
            arps.len(),
            3,
            "{} saw {} copies of c1's 3 broadcast ARP requests (a loop or a lost flood):\n{arps:#?}\n{}",
            c.port,
            arps.len(),
            context(&all)
        );
        let echoes = tshark_fields(&file, Some(echo_filter), &["icmp.seq"]);
        let mut seqs = echoes.clone();
        seqs.sort();
        seqs.dedup();
        assert_eq!(
            (echoes.len(), seqs.len()),
            (3, 3),
            "{} saw broadcast echo requests {echoes:?}: each of 3 must arrive exactly once\n{}",
            c.port,
            describe("ping -b", &bcast)
        );
    }

    // No frame keeps circulating: with the mesh idle, the tunnel counters
    // stay where they are and small.
    let totals = |hosts: &[Host]| -> u64 {
        hosts
            .iter()
            .flat_map(|h| h.ctl_parse::<Vec<yard_ctl::api::PortStats>>(&["port", "stats"]))
            .filter(|s| s.name.starts_with('t'))
            .map(|s| s.rx_packets + s.tx_packets)
            .sum()
    };
    sleep(Duration::from_secs(1));
    let first = totals(&hosts);
    sleep(Duration::from_secs(2));
    let second = totals(&hosts);
    assert!(
        second - first <= 4 && second < 1000,
        "tunnel counters kept moving on an idle mesh ({first} -> {second}): a forwarding loop\n{}",
        context(&all)
    );
    let _ = &mut hosts;
}

#[test]
fn gre_in_udp_carries_ping_and_a_checked_transfer() {
    if !require(&[
        "ping",
        "socat",
        "sha256sum",
        "ss",
        "dd",
        "tcpdump",
        "tshark",
    ]) {
        return;
    }
    let (hosts, c1, c2) = two_hosts("--gre-udp");
    let all = refs(&hosts);
    let dir = tempfile::tempdir().expect("temp dir");

    // 8 bytes of UDP header less than raw GRE.
    assert_eq!(hosts[0].overlay_mtu(NET), Some(1450));
    assert_eq!(c1.mtu(), 1450);
    assert_eq!(c2.mtu(), 1450);

    let mut udp = Tcpdump::start(
        hosts[0].ns(),
        &underlay_ifname(2),
        "udp port 4754",
        Some(4),
        30,
        dir.path(),
        "udp",
    );
    ping_ok(&all, &c1, c2.ip, &[]);
    // Until tcpdump has written its 4 frames (it then exits), bounded.
    udp.wait_frames(Duration::from_secs(10), None, 4);
    let dump_err = udp.stop();
    let frames = tshark_fields(
        &dir.path().join("udp.pcap"),
        None,
        &["udp.dstport", "gre.key", "gre.proto"],
    );
    assert!(
        !frames.is_empty(),
        "no UDP 4754 on the underlay while pinging:\n{dump_err}"
    );
    for line in &frames {
        let fields: Vec<&str> = line.split(';').collect();
        assert_eq!(fields[0], "4754", "{line}");
        // tshark decodes UDP 4754 as GRE only when it knows the port.
        if !fields[1].is_empty() {
            assert_eq!(parse_key(fields[1]), Some(42), "{line}");
        }
    }
    ping_ok(&all, &c2, c1.ip, &["-M", "do", "-s", "1422"]);
    transfer_checked(&all, &c1, &c2, dir.path(), BIG_MIB, 5003);
    // The segments crossed as UDP GSO runs (Linux >= 4.18 has UDP GSO): no
    // yardd fell back to one datagram each.
    for host in &hosts {
        let log = std::fs::read_to_string(host.log_path()).unwrap_or_default();
        assert!(
            !log.contains("refuses UDP GSO"),
            "host {} fell back from UDP GSO:\n{log}",
            host.index()
        );
    }
}

#[test]
fn the_underlay_decodes_in_tshark_as_gre_key_42_carrying_ethernet() {
    if !require(&["ping", "tcpdump", "tshark"]) {
        return;
    }
    let (hosts, c1, c2) = two_hosts("--gre");
    let all = refs(&hosts);
    let dir = tempfile::tempdir().expect("temp dir");
    // Settle ARP first, so the capture holds the echoes.
    ping_ok(&all, &c1, c2.ip, &[]);
    let mut dump = Tcpdump::start(
        hosts[0].ns(),
        &underlay_ifname(2),
        "ip proto 47",
        Some(6),
        30,
        dir.path(),
        "gre",
    );
    ping_ok(&all, &c1, c2.ip, &[]);
    // The echoes crossed the underlay before ping returned, but may not be
    // in the file yet: wait (bounded) for the ones checked below.
    dump.wait_frames(Duration::from_secs(10), Some("icmp"), 4);
    let dump_err = dump.stop();
    let lines = tshark_fields(
        &dir.path().join("gre.pcap"),
        Some("icmp"),
        &[
            "ip.proto",
            "gre.key",
            "gre.proto",
            "eth.type",
            "ip.src",
            "ip.dst",
            "icmp.type",
        ],
    );
    assert!(
        lines.len() >= 4,
        "expected at least 2 echo requests and 2 replies in GRE, got:\n{lines:#?}\n{dump_err}"
    );
    let (c1_ip, c2_ip) = (c1.ip.to_string(), c2.ip.to_string());
    let (mut requests, mut replies) = (0, 0);
    for line in &lines {
        let f: Vec<&str> = line.split(';').collect();
        assert_eq!(f.len(), 7, "{line}");
        // Outer then inner values, comma-separated.
        assert!(f[0].starts_with("47"), "outer protocol is not GRE: {line}");
        assert_eq!(parse_key(f[1]), Some(42), "GRE key: {line}");
        assert_eq!(f[2], "0x6558", "GRE protocol is not TEB (Ethernet): {line}");
        assert_eq!(
            f[3], "0x0800,0x0800",
            "outer and inner Ethernet types: {line}"
        );
        let src: Vec<&str> = f[4].split(',').collect();
        let dst: Vec<&str> = f[5].split(',').collect();
        assert_eq!(src.len(), 2, "{line}");
        match (src[1], dst[1], f[6]) {
            (s, d, "8") if s == c1_ip && d == c2_ip => {
                assert_eq!((src[0], dst[0]), ("192.168.50.1", "192.168.50.2"), "{line}");
                requests += 1;
            }
            (s, d, "0") if s == c2_ip && d == c1_ip => {
                assert_eq!((src[0], dst[0]), ("192.168.50.2", "192.168.50.1"), "{line}");
                replies += 1;
            }
            _ => panic!("unexpected inner packet: {line}"),
        }
    }
    assert!(
        requests >= 2 && replies >= 2,
        "requests {requests}, replies {replies}:\n{lines:#?}"
    );
}

#[test]
fn malformed_and_unknown_gre_packets_are_dropped_and_counted_by_reason() {
    if !require(&["ping", "python3"]) {
        return;
    }
    let (hosts, c1, c2) = two_hosts("--gre");
    let all = refs(&hosts);
    ping_ok(&all, &c1, c2.ip, &[]);
    // From host 2's namespace, raw GRE packets to host 1: one with a key no
    // tunnel uses, one of GRE version 1, one too short to be GRE, one with
    // a checksum that does not match. Each is sent 3 times.
    let target = hosts[0].ip().to_string();
    let script = format!(
        r#"
import socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 47)
eth = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x09" + b"\x08\x06" + b"\x00" * 28
unknown_key = struct.pack("!HHI", 0x2000, 0x6558, 99) + eth
version_1 = struct.pack("!HH", 0x0001, 0x6558) + eth
short = b"\x20"
bad_csum = struct.pack("!HHHH", 0x8000, 0x6558, 0x1234, 0) + eth
for _ in range(3):
    for p in (unknown_key, version_1, short, bad_csum):
        s.sendto(p, ("{target}", 0))
"#
    );
    let out = hosts[1].exec(&["timeout", "10", "python3", "-c", &script]);
    assert!(
        out.status.success(),
        "{}",
        describe("python3 raw GRE sender", &out)
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let status = hosts[0].ctl_json(&["status"]);
        let drops = &status["tunnel_drops"];
        // JSON keys are snake_case: `bad-checksum` travels as `bad_checksum`.
        let count = |reason: &str| drops[reason.replace('-', "_")].as_u64().unwrap_or(0);
        if count("unknown-tunnel") >= 3
            && count("bad-version") >= 3
            && count("truncated") >= 3
            && count("bad-checksum") >= 3
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "tunnel drops by reason not counted as expected: {drops}\n{}",
            context(&all)
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // The tunnel still carries traffic.
    ping_ok(&all, &c1, c2.ip, &[]);
}
