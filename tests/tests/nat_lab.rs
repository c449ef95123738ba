//! L3 gateway labs against the real yardd: the gateway address
//! answers ping and routes; traffic to the outside leaves with the uplink's
//! address (SNAT) and its replies come back; published ports reach their
//! container with the client's real address (DNAT), also from a container on
//! the same network (hairpin); TTL and port-unreachable ICMP errors are
//! translated back; a stale UDP entry does not outlive its container;
//! `--internal` and `net connect` decide what routes; everything comes back
//! after a restart; `conntrack flush` and `publish rm` remove what they say.
//!
//! Each test builds the shape described in `yard_tests::nat` (outside
//! namespace 10.1.0.1 ─ uplink 10.1.0.2 ─ network web 172.31.0.0/16) in its own
//! namespaces. Needs root; without it each test prints why and returns.

use std::net::Ipv4Addr;
use std::time::Duration;

use nix::sys::signal::Signal;
use yard_ctl::api::ConntrackEntry;
use yard_tests::cmd::{describe, in_ns, in_ns_ok, stderr, stdout};
use yard_tests::nat::{
    ping, tcp_ask, tcp_peer_server, udp_ask, udp_peer_server, udp_sink, Background, NatLab, Peer,
    OUTSIDE_IP, SERVER_SECS, UPLINK_IP, WEB_GATEWAY,
};
use yard_tests::require;

const C1_CIDR: &str = "172.31.0.2/16";
const C1_IP: Ipv4Addr = Ipv4Addr::new(172, 31, 0, 2);
const C2_CIDR: &str = "172.31.0.3/16";
const C2_IP: Ipv4Addr = Ipv4Addr::new(172, 31, 0, 3);

fn entries_text(entries: &[ConntrackEntry]) -> String {
    format!("{entries:#?}")
}

/// The entry whose original tuple came from `src` to `dst:dport` over `proto`.
fn find_entry<'a>(
    entries: &'a [ConntrackEntry],
    proto: &str,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    dport: Option<u16>,
) -> Option<&'a ConntrackEntry> {
    entries.iter().find(|e| {
        e.proto == proto
            && e.original.src == src
            && e.original.dst == dst
            && dport.is_none_or(|p| e.original.dport == p)
    })
}

#[test]
fn gateway_answers_ping_and_is_the_default_route() {
    if !require(&["ping"]) {
        return;
    }
    let mut lab = NatLab::new();
    let c1 = lab.tap("c1", "web", C1_CIDR, &[]);
    lab.ping_ok(&c1, WEB_GATEWAY);

    let route = in_ns_ok(&c1.ns, &["ip", "route"]);
    let route = stdout(&route);
    assert!(
        route
            .lines()
            .any(|l| l.starts_with(&format!("default via {WEB_GATEWAY} "))),
        "`ip route` in {} has no default route via {WEB_GATEWAY}:\n{route}",
        c1.ns
    );

    // The gateway's echo replies are answered by yardd, not tracked.
    let ct = lab.conntrack(&["--addr", &WEB_GATEWAY.to_string()]);
    assert!(
        ct.is_empty(),
        "pings to the gateway itself created conntrack entries:\n{}",
        entries_text(&ct)
    );
    // The uplink address answers ping from the outside, as a host would.
    lab.ping_ns_ok(&lab.outside, UPLINK_IP);
}

#[test]
fn outbound_tcp_udp_and_icmp_leave_with_the_uplink_address() {
    if !require(&["ping", "socat", "curl", "python3"]) {
        return;
    }
    let mut lab = NatLab::new();
    let c1 = lab.tap("c1", "web", C1_CIDR, &[]);

    // HTTP with curl against python's server, whose access log names the client.
    let docroot = tempfile::tempdir().expect("temp dir");
    std::fs::write(docroot.path().join("index.html"), "outside says hi\n").unwrap();
    let dir = docroot.path().to_string_lossy().into_owned();
    let http = Background::spawn(
        &lab.outside,
        SERVER_SECS,
        &[
            "python3",
            "-u",
            "-m",
            "http.server",
            "8000",
            "--bind",
            &OUTSIDE_IP.to_string(),
            "--directory",
            &dir,
        ],
    );
    yard_tests::lab::wait_listening(&lab.outside, 8000);
    let url = format!("http://{OUTSIDE_IP}:8000/");
    let got = in_ns(&c1.ns, &["curl", "-sS", "--max-time", "10", &url]);
    if !got.status.success() || stdout(&got) != "outside says hi\n" {
        lab.fail(
            &format!("curl from c1 did not fetch the page\n{}", http.describe()),
            &format!("ip netns exec {} curl {url}", c1.ns),
            &got,
        );
    }
    let logged = http.wait_stderr(Duration::from_secs(5), |log| {
        log.lines()
            .any(|l| l.starts_with(&format!("{UPLINK_IP} ")) && l.contains("\"GET / HTTP"))
    });
    assert!(
        logged,
        "python's access log does not show the GET from {UPLINK_IP} (SNAT):\n{}",
        http.describe()
    );

    // TCP and UDP with socat servers that print the peer they see.
    let _tcp = tcp_peer_server(&lab.outside, Some(OUTSIDE_IP), 8001);
    let _udp = udp_peer_server(&lab.outside, Some(OUTSIDE_IP), 9000);
    let tcp = lab.tcp_ask_ok(&c1.ns, OUTSIDE_IP, 8001, None);
    assert_eq!(tcp.addr, UPLINK_IP, "TCP peer seen outside: {tcp}");
    let udp = lab.udp_ask_ok(&c1.ns, OUTSIDE_IP, 9000, None);
    assert_eq!(udp.addr, UPLINK_IP, "UDP peer seen outside: {udp}");

    // ICMP echo through the gateway.
    lab.ping_ok(&c1, OUTSIDE_IP);

    let ct = lab.conntrack(&[]);
    let all = entries_text(&ct);
    for (proto, dport, seen_port) in [
        ("tcp", Some(8001), Some(tcp.port)),
        ("udp", Some(9000), Some(udp.port)),
        ("icmp", None, None),
    ] {
        let e = find_entry(&ct, proto, C1_IP, OUTSIDE_IP, dport).unwrap_or_else(|| {
            panic!("no {proto} entry from {C1_IP} to {OUTSIDE_IP} in conntrack ls:\n{all}")
        });
        let snat = e.snat.as_deref().unwrap_or_else(|| {
            panic!("the {proto} entry has no SNAT:\n{e:#?}\n{}", lab.log_tail())
        });
        let (addr, port) = snat
            .rsplit_once(':')
            .unwrap_or_else(|| panic!("snat {snat:?} is not ADDR:PORT: {e:#?}"));
        assert_eq!(addr, UPLINK_IP.to_string(), "{proto} entry: {e:#?}");
        if let Some(seen) = seen_port {
            assert_eq!(
                port,
                seen.to_string(),
                "the {proto} entry's SNAT port is not the port the server saw: {e:#?}"
            );
        }
        // The reply direction comes back to the uplink address.
        assert_eq!(e.reply.src, OUTSIDE_IP, "{proto} entry: {e:#?}");
        assert_eq!(e.reply.dst, UPLINK_IP, "{proto} entry: {e:#?}");
        assert!(
            e.dnat.is_none(),
            "outbound {proto} entry has a DNAT: {e:#?}"
        );
        assert!(!e.state.is_empty(), "{proto} entry without a state: {e:#?}");
        assert!(
            e.packets_original >= 1 && e.packets_reply >= 1,
            "{proto} entry did not count both directions: {e:#?}"
        );
        assert!(
            e.bytes_original > 0 && e.bytes_reply > 0,
            "{proto} entry without bytes: {e:#?}"
        );
        assert!(e.assured, "a replied {proto} entry is not assured: {e:#?}");
    }
    // The proto filter narrows the listing.
    let only_udp = lab.conntrack(&["--proto", "udp"]);
    assert!(
        !only_udp.is_empty() && only_udp.iter().all(|e| e.proto == "udp"),
        "conntrack ls --proto udp: {}",
        entries_text(&only_udp)
    );
    // The uplink's counters are listed with the ports, and on their own.
    let all = lab.ctl_json(&["port", "stats"]);
    let up0 = all
        .as_array()
        .and_then(|ports| ports.iter().find(|p| p["name"] == "up0"))
        .unwrap_or_else(|| panic!("port stats does not list the uplink: {all:#}"));
    assert!(
        up0["tx_packets"].as_u64() >= Some(3) && up0["rx_packets"].as_u64() >= Some(3),
        "the uplink did not count the traffic that crossed it: {up0:#}"
    );
    let only = lab.ctl_json(&["port", "stats", "up0"]);
    assert_eq!(only.as_array().map(Vec::len), Some(1), "{only:#}");
}

/// Publishes 8080/tcp and 5353/udp to c1's 80 and 53 with peer-reporting
/// servers there; returns the servers.
fn publish_c1(lab: &NatLab, c1_ns: &str) -> (Background, Background) {
    lab.ctl_ok(&["publish", "add", "8080:c1:80/tcp"]);
    lab.ctl_ok(&["publish", "add", "5353:c1:53/udp"]);
    (
        tcp_peer_server(c1_ns, None, 80),
        udp_peer_server(c1_ns, None, 53),
    )
}

#[test]
fn published_ports_reach_the_container_with_the_real_client_address() {
    if !require(&["socat", "python3"]) {
        return;
    }
    let mut lab = NatLab::new();
    let c1 = lab.tap("c1", "web", C1_CIDR, &[]);
    let _servers = publish_c1(&lab, &c1.ns);

    let published = lab.ctl_json(&["publish", "ls"]);
    let rules = published.as_array().expect("publish ls --json is an array");
    assert_eq!(rules.len(), 2, "publish ls: {published:#}");
    for rule in rules {
        assert_eq!(
            rule["target_ip"],
            C1_IP.to_string().as_str(),
            "{published:#}"
        );
        assert!(
            yard_tests::lab::port_is_up(&rule["state"]),
            "rule not up: {published:#}"
        );
    }

    // UDP first: nothing has talked to c1 yet, so this datagram waits in the
    // gateway for c1's ARP reply; it must still arrive intact (a DNS query to
    // a fresh container gets no retransmission for a second or more).
    let udp = lab.udp_ask_ok(&lab.outside, UPLINK_IP, 5353, Some(41001));
    assert_eq!(
        udp,
        Peer {
            addr: OUTSIDE_IP,
            port: 41001
        },
        "c1's UDP server must see the outside client itself (and its answer came back)"
    );
    let tcp = lab.tcp_ask_ok(&lab.outside, UPLINK_IP, 8080, Some(41000));
    assert_eq!(
        tcp,
        Peer {
            addr: OUTSIDE_IP,
            port: 41000
        },
        "c1's TCP server must see the outside client itself"
    );

    let ct = lab.conntrack(&[]);
    for (proto, port) in [("tcp", 8080), ("udp", 5353)] {
        let e = find_entry(&ct, proto, OUTSIDE_IP, UPLINK_IP, Some(port)).unwrap_or_else(|| {
            panic!(
                "no {proto} entry for the published port {port}:\n{}",
                entries_text(&ct)
            )
        });
        let target = if proto == "tcp" { 80 } else { 53 };
        assert_eq!(
            e.dnat.as_deref(),
            Some(format!("{C1_IP}:{target}").as_str()),
            "{e:#?}"
        );
        assert!(e.snat.is_none(), "inbound entry has an SNAT: {e:#?}");
        assert_eq!((e.reply.src, e.reply.sport), (C1_IP, target), "{e:#?}");
        assert_eq!(e.reply.dst, OUTSIDE_IP, "{e:#?}");
    }

    // A port nobody published stays closed.
    let out = tcp_ask(&lab.outside, UPLINK_IP, 8081, None);
    assert!(
        !out.status.success() && Peer::parse(&stdout(&out)).is_none(),
        "an unpublished port answered:\n{}",
        describe("socat - TCP:10.1.0.2:8081", &out)
    );
}

#[test]
fn hairpin_a_container_reaches_a_published_port_through_the_uplink_address() {
    if !require(&["socat", "python3"]) {
        return;
    }
    let mut lab = NatLab::new();
    let c1 = lab.tap("c1", "web", C1_CIDR, &[]);
    let c2 = lab.tap("c2", "web", C2_CIDR, &[]);
    let _servers = publish_c1(&lab, &c1.ns);

    let tcp = lab.tcp_ask_ok(&c2.ns, UPLINK_IP, 8080, None);
    // yardd masquerades hairpin traffic so c1's reply returns through the
    // gateway to be un-DNATed; c1 therefore sees the uplink address.
    assert_eq!(
        tcp.addr, UPLINK_IP,
        "c1 saw the hairpin TCP client as {tcp}"
    );
    let udp = lab.udp_ask_ok(&c2.ns, UPLINK_IP, 5353, None);
    assert_eq!(
        udp.addr, UPLINK_IP,
        "c1 saw the hairpin UDP client as {udp}"
    );

    let ct = lab.conntrack(&["--proto", "tcp"]);
    let e = find_entry(&ct, "tcp", C2_IP, UPLINK_IP, Some(8080))
        .unwrap_or_else(|| panic!("no hairpin TCP entry:\n{}", entries_text(&ct)));
    assert_eq!(e.dnat.as_deref(), Some("172.31.0.2:80"), "{e:#?}");
    assert!(e.snat.is_some(), "hairpin entry without SNAT: {e:#?}");
}

#[test]
fn ttl_exceeded_comes_from_the_gateway_and_traceroute_shows_both_hops() {
    if !require(&["ping", "traceroute"]) {
        return;
    }
    let mut lab = NatLab::new();
    let c1 = lab.tap("c1", "web", C1_CIDR, &[]);

    let out = ping(&c1.ns, OUTSIDE_IP, 1, 5, &["-t", "1"]);
    let text = stdout(&out);
    if !text.contains(&format!("From {WEB_GATEWAY} ")) || !text.contains("Time to live exceeded") {
        lab.fail(
            "ping -t 1 through the gateway did not get 'Time to live exceeded' from 172.31.0.1",
            &format!("ip netns exec {} ping -n -t 1 {OUTSIDE_IP}", c1.ns),
            &out,
        );
    }

    // UDP probes: TTL 1 dies at the gateway, TTL 2 reaches the outside host,
    // whose port unreachable must be translated back to c1. One probe per
    // hop, so each may wait 5 s for its answer: the TTL 2 probe is the first
    // packet toward the outside, held in the gateway until ARP resolves.
    let out = in_ns(
        &c1.ns,
        &[
            "traceroute",
            "-n",
            "-q",
            "1",
            "-w",
            "5",
            "-m",
            "4",
            &OUTSIDE_IP.to_string(),
        ],
    );
    let text = stdout(&out);
    let hops: Vec<Vec<&str>> = text
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    let hop = |n: usize| hops.get(n).and_then(|h| h.get(1)).copied();
    if !out.status.success()
        || hop(0) != Some(&WEB_GATEWAY.to_string())
        || hop(1) != Some(&OUTSIDE_IP.to_string())
        || hops.len() != 2
    {
        lab.fail(
            "traceroute did not show exactly the gateway then the outside host",
            &format!("ip netns exec {} traceroute -n -q 1 {OUTSIDE_IP}", c1.ns),
            &out,
        );
    }
}

#[test]
fn stale_udp_entry_follows_a_recreated_container() {
    if !require(&["socat", "seq", "sh"]) {
        return;
    }
    let mut lab = NatLab::new();
    let c1 = lab.tap("c1", "web", C1_CIDR, &[]);
    lab.ctl_ok(&["publish", "add", "7000:c1:7000/udp"]);
    let mut old = udp_sink(&c1.ns, 7000);

    // One datagram every 100 ms for at least 60 s (stopped when the test
    // ends), always from the same source port, so every datagram belongs to
    // the same conntrack entry. UDP-SENDTO is unconnected: an ICMP error
    // while c1 is away does not stop it. The stream outlasts both waits
    // below, however slowly the machine gets through the steps between.
    let loop_script = "for i in $(seq 1 600); do echo dgram-$i; sleep 0.1; done";
    let target = format!("UDP-SENDTO:{UPLINK_IP}:7000,sourceport=42000");
    let sender = Background::spawn(
        &lab.outside,
        SERVER_SECS,
        &["sh", "-c", &format!("{loop_script} | socat -u - {target}")],
    );
    if !old.wait_stdout(Duration::from_secs(15), |s| s.contains("dgram-")) {
        panic!(
            "the first c1 got no datagram through 7000/udp within 15 s\n{}\n{}\n{}",
            old.describe(),
            sender.describe(),
            lab.context()
        );
    }
    let ct = lab.conntrack(&["--proto", "udp", "--port", "7000"]);
    assert_eq!(
        ct.len(),
        1,
        "one entry for the stream: {}",
        entries_text(&ct)
    );

    lab.ctl_ok(&["port", "rm", "c1"]);
    old.stop();
    let c1 = lab.tap("c1", "web", C1_CIDR, &[]);
    let new = udp_sink(&c1.ns, 7000);
    let arrived = new.wait_stdout(Duration::from_secs(15), |s| s.contains("dgram-"));
    let mut sender = sender;
    let still_sending = sender.running();
    if !arrived {
        panic!(
            "the recreated c1 got no datagram within 15 s (sender still running: \
             {still_sending}); a stale entry keeps the stream away from it\n{}\n{}\n{}",
            new.describe(),
            sender.describe(),
            lab.context()
        );
    }
    assert!(
        still_sending,
        "the sender finished before the check: the test proves nothing"
    );
}

#[test]
fn internal_networks_stay_inside_and_networks_route_only_when_connected() {
    if !require(&["ping", "socat"]) {
        return;
    }
    let mut lab = NatLab::new();
    lab.ctl_ok(&[
        "net",
        "create",
        "vault",
        "--subnet",
        "172.29.0.0/16",
        "--internal",
    ]);
    lab.ctl_ok(&["net", "create", "db", "--subnet", "172.28.0.0/16"]);
    let c1 = lab.tap("c1", "web", C1_CIDR, &[]);
    let v1 = lab.tap("v1", "vault", "172.29.0.2/16", &[]);
    let d1 = lab.tap("d1", "db", "172.28.0.2/16", &[]);

    // Internal: its own gateway answers, the outside does not, and the
    // gateway says so (ICMP administratively prohibited, RFC 5508 REQ-8):
    // ping reports the packet filtered, and a TCP connect fails at once
    // with "No route to host" instead of timing out.
    lab.ping_ok(&v1, Ipv4Addr::new(172, 29, 0, 1));
    lab.ping_fails(&v1, OUTSIDE_IP, &[]);
    let out = ping(&v1.ns, OUTSIDE_IP, 1, 3, &[]);
    assert!(
        stdout(&out).contains("From 172.29.0.1 icmp_seq=1 Packet filtered"),
        "the internal network's gateway did not answer 'administratively prohibited':\n{}\n{}",
        describe("ping -c 1 10.1.0.1", &out),
        lab.context()
    );
    let _tcp = tcp_peer_server(&lab.outside, Some(OUTSIDE_IP), 8001);
    let out = tcp_ask(&v1.ns, OUTSIDE_IP, 8001, None);
    assert!(
        Peer::parse(&stdout(&out)).is_none() && stderr(&out).contains("No route to host"),
        "the internal network reached the outside over TCP, or was not told it may not:\n{}",
        describe("socat - TCP:10.1.0.1:8001", &out)
    );
    // ... while web, masquerading, does.
    lab.ping_ok(&c1, OUTSIDE_IP);

    // Not connected: no route between web and db.
    lab.ping_fails(&c1, d1.ip, &[]);
    lab.ping_fails(&d1, c1.ip, &[]);

    lab.ctl_ok(&["net", "connect", "web", "db"]);
    let web = lab.ctl_json(&["net", "inspect", "web"]);
    assert!(
        web["connected"]
            .as_array()
            .is_some_and(|c| c.iter().any(|n| n == "db")),
        "net inspect web does not list db as connected: {web:#}"
    );
    lab.ping_ok(&c1, d1.ip);
    lab.ping_ok(&d1, c1.ip);
    // No NAT between connected networks: d1 sees c1's own address.
    let _d1_server = tcp_peer_server(&d1.ns, None, 8002);
    let peer = lab.tcp_ask_ok(&c1.ns, d1.ip, 8002, Some(43000));
    assert_eq!(
        peer,
        Peer {
            addr: C1_IP,
            port: 43000
        },
        "routing between connected networks must not translate"
    );

    lab.ctl_ok(&["net", "disconnect", "web", "db"]);
    lab.ping_fails(&c1, d1.ip, &[]);
    lab.ping_fails(&d1, c1.ip, &[]);
    let out = tcp_ask(&c1.ns, d1.ip, 8002, None);
    assert!(
        Peer::parse(&stdout(&out)).is_none(),
        "a new TCP connection crossed disconnected networks:\n{}",
        describe("socat - TCP:172.28.0.2:8002", &out)
    );
}

#[test]
fn udp_to_a_closed_outside_port_gets_port_unreachable_back() {
    if !require(&["socat", "tcpdump"]) {
        return;
    }
    let mut lab = NatLab::new();
    let c1 = lab.tap("c1", "web", C1_CIDR, &[]);

    // Capture in c1 what comes back: ICMP only, bounded in count and time.
    let capture = Background::spawn(
        &c1.ns,
        20,
        &["tcpdump", "-n", "-l", "-v", "-c", "1", "-i", "eth0", "icmp"],
    );
    // tcpdump prints "listening on" once the capture is armed.
    let armed = capture.wait_stderr(Duration::from_secs(10), |e| e.contains("listening on"));
    assert!(armed, "tcpdump did not start:\n{}", capture.describe());

    // A connected UDP socket reports the port unreachable as ECONNREFUSED.
    let out = udp_ask(&c1.ns, OUTSIDE_IP, 9999, Some(44000));
    let err = stderr(&out);
    if out.status.success() || !err.contains("Connection refused") {
        lab.fail(
            &format!(
                "UDP to the closed port {OUTSIDE_IP}:9999 did not end in 'Connection refused'\n{}",
                capture.describe()
            ),
            &format!("ip netns exec {} socat - UDP:{OUTSIDE_IP}:9999", c1.ns),
            &out,
        );
    }
    // "IP ... 10.1.0.1 > 172.31.0.2: ICMP 10.1.0.1 udp port 9999 unreachable,
    //  ... IP ... 172.31.0.2.44000 > 10.1.0.1.9999: UDP"
    // tcpdump -v prints the quoted datagram on lines of its own, which may
    // arrive after the first: wait for the whole report, not its first line.
    let addressed_and_quoted = |text: &str| {
        text.contains(&format!("{OUTSIDE_IP} > {C1_IP}: ICMP"))
            && text.contains("udp port 9999 unreachable")
            && text.contains(&format!("{C1_IP}.44000 > {OUTSIDE_IP}.9999"))
    };
    let seen = capture.wait_stdout(Duration::from_secs(5), addressed_and_quoted);
    assert!(
        seen,
        "the ICMP error reaching c1 is not addressed to it or does not quote its \
         own datagram:\n{}\n{}",
        capture.describe(),
        lab.context()
    );
}

#[test]
fn uplink_publishes_and_connections_survive_a_restart() {
    if !require(&["socat", "ping"]) {
        return;
    }
    let mut lab = NatLab::new();
    lab.ctl_ok(&["net", "create", "db", "--subnet", "172.28.0.0/16"]);
    lab.ctl_ok(&["net", "connect", "web", "db"]);
    let c1 = lab.tap("c1", "web", C1_CIDR, &[]);
    let d1 = lab.tap("d1", "db", "172.28.0.2/16", &[]);
    lab.ctl_ok(&["publish", "add", "8080:c1:80/tcp"]);
    let uplinks_before = lab.ctl_json(&["uplink", "ls"]);
    let publishes_before = lab.ctl_json(&["publish", "ls"]);

    let status = lab.daemon.stop(Signal::SIGTERM);
    assert!(status.success(), "yardd exited with {status} on SIGTERM");
    lab.daemon.start();
    lab.wait_ports_up(Duration::from_secs(10));

    let uplinks = lab.ctl_json(&["uplink", "ls"]);
    assert_eq!(
        uplinks, uplinks_before,
        "uplink ls changed across the restart"
    );
    assert!(
        uplinks[0]["name"] == "up0" && yard_tests::lab::port_is_up(&uplinks[0]["state"]),
        "the uplink is not back up: {uplinks:#}"
    );
    let publishes = lab.ctl_json(&["publish", "ls"]);
    assert_eq!(
        publishes, publishes_before,
        "publish ls changed across the restart"
    );
    let web = lab.ctl_json(&["net", "inspect", "web"]);
    assert!(
        web["connected"]
            .as_array()
            .is_some_and(|c| c.iter().any(|n| n == "db")),
        "web is no longer connected to db after the restart: {web:#}"
    );

    let _outside = tcp_peer_server(&lab.outside, Some(OUTSIDE_IP), 8001);
    let _c1_server = tcp_peer_server(&c1.ns, None, 80);
    let snat = lab.tcp_ask_ok(&c1.ns, OUTSIDE_IP, 8001, None);
    assert_eq!(snat.addr, UPLINK_IP, "SNAT after the restart: {snat}");
    let dnat = lab.tcp_ask_ok(&lab.outside, UPLINK_IP, 8080, None);
    assert_eq!(dnat.addr, OUTSIDE_IP, "DNAT after the restart: {dnat}");
    lab.ping_ok(&c1, d1.ip);
    lab.ping_ok(&c1, OUTSIDE_IP);
}

#[test]
fn conntrack_flush_and_publish_rm_remove_exactly_their_entries() {
    if !require(&["socat", "python3"]) {
        return;
    }
    let mut lab = NatLab::new();
    let c1 = lab.tap("c1", "web", C1_CIDR, &[]);
    let _servers = publish_c1(&lab, &c1.ns);
    let _outside = udp_peer_server(&lab.outside, Some(OUTSIDE_IP), 9000);

    let make_flows = |lab: &NatLab| {
        lab.tcp_ask_ok(&lab.outside, UPLINK_IP, 8080, None);
        lab.udp_ask_ok(&lab.outside, UPLINK_IP, 5353, None);
        lab.udp_ask_ok(&c1.ns, OUTSIDE_IP, 9000, None);
    };
    let is_published_tcp = |e: &ConntrackEntry| {
        e.proto == "tcp" && e.original.dst == UPLINK_IP && e.original.dport == 8080
    };
    make_flows(&lab);
    let before = lab.conntrack(&[]);
    assert_eq!(
        before.iter().filter(|e| is_published_tcp(e)).count(),
        1,
        "{}",
        entries_text(&before)
    );
    assert!(before.len() >= 3, "{}", entries_text(&before));

    lab.ctl_ok(&["publish", "rm", "8080"]);
    let after = lab.conntrack(&[]);
    let expected: Vec<&ConntrackEntry> = before.iter().filter(|e| !is_published_tcp(e)).collect();
    let key = |e: &ConntrackEntry| (e.proto.clone(), e.original, e.reply);
    let mut want: Vec<_> = expected.iter().map(|e| key(e)).collect();
    let mut got: Vec<_> = after.iter().map(key).collect();
    want.sort_by_key(|k| format!("{k:?}"));
    got.sort_by_key(|k| format!("{k:?}"));
    assert_eq!(
        got,
        want,
        "publish rm 8080 must remove exactly its own entries\nbefore:\n{}\nafter:\n{}",
        entries_text(&before),
        entries_text(&after)
    );
    let rules = lab.ctl_json(&["publish", "ls"]);
    assert!(
        rules
            .as_array()
            .is_some_and(|r| r.len() == 1 && r[0]["proto"] == "udp"),
        "publish ls after rm 8080: {rules:#}"
    );
    let out = tcp_ask(&lab.outside, UPLINK_IP, 8080, None);
    assert!(
        Peer::parse(&stdout(&out)).is_none(),
        "8080 still reaches c1 after publish rm:\n{}",
        describe("socat - TCP:10.1.0.2:8080", &out)
    );

    // A filtered flush removes only what matches.
    let flushed = lab.ctl_json(&["conntrack", "flush", "--proto", "udp", "--port", "5353"]);
    let left = lab.conntrack(&[]);
    assert!(
        left.iter()
            .all(|e| !(e.proto == "udp" && e.original.dport == 5353))
            && left
                .iter()
                .any(|e| e.proto == "udp" && e.original.dport == 9000),
        "flush --proto udp --port 5353 ({flushed}) left:\n{}",
        entries_text(&left)
    );

    lab.ctl_ok(&["conntrack", "flush"]);
    let empty = lab.conntrack(&[]);
    assert!(
        empty.is_empty(),
        "conntrack flush left entries:\n{}",
        entries_text(&empty)
    );
    let stats = lab.ctl_json(&["conntrack", "stats"]);
    assert_eq!(
        stats["entries"], 0,
        "conntrack stats after flush: {stats:#}"
    );

    // Flushing does not break anything: new flows are tracked afresh.
    lab.udp_ask_ok(&lab.outside, UPLINK_IP, 5353, None);
    lab.udp_ask_ok(&c1.ns, OUTSIDE_IP, 9000, None);
    assert!(
        lab.conntrack(&[]).len() >= 2,
        "no entries after new flows:\n{}",
        lab.context()
    );
}

#[test]
fn an_uplink_with_a_smaller_mtu_sends_frag_needed_fragments_and_tcp_adapts() {
    if !require(&["ping", "socat", "sha256sum", "ss", "dd"]) {
        return;
    }
    // The uplink (and the outside) at 1400, the network at 1500, as on a
    // cloud VM whose interface has a smaller MTU than Docker's bridge.
    let mut lab = NatLab::new();
    let iface = lab.uplink_iface.clone();
    yard_tests::cmd::run_ok(&["ip", "link", "set", &iface, "mtu", "1400"]);
    in_ns_ok(&lab.outside, &["ip", "link", "set", "eth0", "mtu", "1400"]);
    lab.ctl_ok(&["uplink", "rm", "up0"]);
    lab.ctl_ok(&[
        "uplink",
        "add",
        "up0",
        "--iface",
        &iface,
        "--ip",
        &format!("{UPLINK_IP}/24"),
        "--gateway",
        &OUTSIDE_IP.to_string(),
    ]);
    let c1 = lab.tap("c1", "web", C1_CIDR, &[]);
    lab.ping_ok(&c1, OUTSIDE_IP);

    // First (before c1 learns the path MTU from the check below): packets
    // without DF too big for the uplink are cut into IP fragments
    // (RFC 4787 REQ-13a), not dropped: a 1478-byte ping (fits c1's 1500,
    // not the uplink's 1400), and a 3028-byte one that c1 itself sends in
    // fragments of up to 1500 bytes, which the gateway cuts again.
    for size in ["1450", "3000"] {
        let out = ping(&c1.ns, OUTSIDE_IP, 2, 10, &["-M", "dont", "-s", size]);
        if !out.status.success() {
            lab.fail(
                &format!("a {size}-byte ping without DF did not cross the 1400-byte uplink"),
                &format!(
                    "ip netns exec {} ping -M dont -s {size} {OUTSIDE_IP}",
                    c1.ns
                ),
                &out,
            );
        }
    }
    let stats: yard_ctl::api::ConntrackStats = lab.ctl_parse(&["conntrack", "stats"]);
    let fragmented = stats.counters.get("gw-fragmented").copied().unwrap_or(0);
    assert!(
        fragmented >= 6,
        "2 x 1 + 2 x 2 packets should have been cut for the uplink, {fragmented} were:\n{}",
        lab.context()
    );

    // A DF packet too big for the uplink: c1 hears fragmentation-needed with
    // the uplink's MTU (RFC 1191, RFC 4787 REQ-13), not silence.
    let out = ping(&c1.ns, OUTSIDE_IP, 2, 6, &["-M", "do", "-s", "1472"]);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        text.contains("mtu = 1400"),
        "a 1500-byte DF ping through a 1400-byte uplink got no \
         fragmentation-needed with mtu 1400:\n{text}\n{}",
        lab.context()
    );

    // Bulk TCP from c1 (offloads on: 64 KB frames) arrives intact: the
    // gateway cuts its segments for the uplink.
    let dir = tempfile::tempdir().expect("temp dir");
    let (sent, got) = (dir.path().join("sent"), dir.path().join("got"));
    yard_tests::hosts::random_file(&sent, 20);
    lab.tcp_transfer(&c1, &lab.outside_container(), &sent, &got, 7001, 60);
    assert_eq!(
        yard_tests::lab::sha256(&got),
        yard_tests::lab::sha256(&sent),
        "20 MiB from c1 through a 1400-byte uplink did not arrive intact:\n{}",
        lab.context()
    );
}

#[test]
fn a_recreated_container_reusing_a_source_port_connects_again() {
    if !require(&["socat", "sh", "sleep"]) {
        return;
    }
    let mut lab = NatLab::new();
    let c1 = lab.tap("c1", "web", C1_CIDR, &[]);
    // A server that names the peer, then keeps the connection open for as
    // long as the client does.
    let _server = Background::spawn(
        &lab.outside,
        SERVER_SECS,
        &[
            "socat",
            "-t",
            "5",
            &format!("TCP-LISTEN:8006,bind={OUTSIDE_IP},reuseaddr,fork"),
            "SYSTEM:echo \"$SOCAT_PEERADDR:$SOCAT_PEERPORT\"; exec cat",
        ],
    );
    yard_tests::lab::wait_listening(&lab.outside, 8006);

    // c1 holds a connection from port 45000 open...
    let target = format!("TCP:{OUTSIDE_IP}:8006,sourceport=45000");
    let mut old = Background::spawn(
        &c1.ns,
        60,
        &["sh", "-c", &format!("sleep 45 | socat -t 5 - {target}")],
    );
    let connected = old.wait_stdout(Duration::from_secs(10), |s| s.contains(":45000"));
    assert!(
        connected,
        "the first connection did not open:\n{}\n{}",
        old.describe(),
        lab.context()
    );
    let ct = lab.conntrack(&["--proto", "tcp", "--port", "8006"]);
    assert!(
        ct.len() == 1 && ct[0].state == "ESTABLISHED",
        "one ESTABLISHED entry for it: {}",
        entries_text(&ct)
    );

    // ...when it goes away without a word (its port removed first, so no
    // FIN or RST leaves) and a new c1 comes with the same address. The
    // gateway forgets the old container's connections when it sees the new
    // MAC; the server still holds the old connection.
    lab.ctl_ok(&["port", "rm", "c1"]);
    old.stop();
    let c1 = lab.tap("c1", "web", C1_CIDR, &[]);

    // A new connection from the same port gets through: the server answers
    // its SYN with a challenge ACK (RFC 5961), c1 resets the old connection
    // with a RST, and the SYN's retransmission opens the new one. Before,
    // the gateway dropped the challenge ACK as invalid in SYN_SENT, and the
    // port stayed unusable for as long as the server kept the connection.
    let peer = lab.tcp_ask_ok(&c1.ns, OUTSIDE_IP, 8006, Some(45000));
    assert_eq!(
        peer.to_string(),
        format!("{UPLINK_IP}:45000"),
        "same mapping"
    );
    let gw = lab.ctl_parse::<yard_ctl::api::ConntrackStats>(&["conntrack", "stats"]);
    assert_eq!(
        gw.counters.get("gw-invalid-tcp").copied(),
        Some(0),
        "no segment of the exchange was dropped as invalid:\n{}",
        lab.context()
    );
}

#[test]
fn open_connections_through_snat_and_dnat_go_on_after_a_restart() {
    if !require(&["socat", "sh", "sleep"]) {
        return;
    }
    let mut lab = NatLab::new();
    let c1 = lab.tap("c1", "web", C1_CIDR, &[]);
    lab.ctl_ok(&["publish", "add", "8008:c1:8008/tcp"]);
    // Echo servers: outside for SNAT, in c1 for DNAT.
    let echo = |ns: &str, listen: String| {
        Background::spawn(ns, SERVER_SECS, &["socat", &listen, "EXEC:cat"])
    };
    let _outside = echo(
        &lab.outside,
        format!("TCP-LISTEN:8007,bind={OUTSIDE_IP},reuseaddr,fork"),
    );
    let _inside = echo(&c1.ns, "TCP-LISTEN:8008,reuseaddr,fork".to_string());
    yard_tests::lab::wait_listening(&lab.outside, 8007);
    yard_tests::lab::wait_listening(&c1.ns, 8008);

    // Each client sends one line, then a second once the flag file exists.
    let dir = tempfile::tempdir().expect("temp dir");
    let flag = dir.path().join("go");
    let client = |ns: &str, target: String| {
        let script = format!(
            "(echo before; while [ ! -e {} ]; do sleep 0.1; done; echo after; sleep 5) \
             | socat -t 5 - {target}",
            flag.display()
        );
        Background::spawn(ns, 60, &["sh", "-c", &script])
    };
    let clients = [
        ("SNAT", client(&c1.ns, format!("TCP:{OUTSIDE_IP}:8007"))),
        (
            "DNAT",
            client(&lab.outside, format!("TCP:{UPLINK_IP}:8008")),
        ),
    ];
    for (what, c) in &clients {
        let echoed = c.wait_stdout(Duration::from_secs(10), |s| s.contains("before"));
        assert!(
            echoed,
            "the {what} connection did not open:\n{}\n{}",
            c.describe(),
            lab.context()
        );
    }

    // yardd restarts: its TAPs and its connection table go and come back
    // empty; the connections stay open at both ends.
    let status = lab.daemon.stop(Signal::SIGTERM);
    assert!(status.success(), "yardd exited with {status} on SIGTERM");
    lab.daemon.start();
    lab.wait_ports_up(Duration::from_secs(10));
    std::fs::write(&flag, b"").expect("write the flag file");

    // Each client's next segment picks its connection up again (mid-stream,
    // through the same mapping or published port), and the echo comes back.
    for (what, c) in &clients {
        let echoed = c.wait_stdout(Duration::from_secs(30), |s| s.contains("after"));
        assert!(
            echoed,
            "the {what} connection did not survive the restart:\n{}\n{}",
            c.describe(),
            lab.context()
        );
    }
    let ct = lab.conntrack(&["--proto", "tcp"]);
    assert!(
        ct.len() == 2 && ct.iter().all(|e| e.state == "ESTABLISHED" && e.assured),
        "two assured ESTABLISHED entries, picked up: {}",
        entries_text(&ct)
    );
}
