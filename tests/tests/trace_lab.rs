//! `yardctl trace` labs: each decision kind of the real datapath, traced
//! on a running yardd — FDB hit and flood, port security, VLAN, isolation
//! and links, the gateway's route, conntrack (new and established) with the
//! SNAT rewrite, a published port's DNAT, the MTU (fragmentation and
//! fragmentation-needed), GRE encapsulation, a captured frame — each
//! asserting the words and that nothing changed afterwards (FDB, conntrack,
//! port and gateway counters), and for each verdict that the same frame
//! sent for real meets the same fate.
//!
//! Needs root; without it each test prints why and returns.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use yard_ctl::api::{ConntrackEntry, PortStats, TraceOutcome, TraceReport};
use yard_tests::hosts::{mesh, ping_ok as host_ping_ok};
use yard_tests::nat::WEB_GATEWAY;
use yard_tests::nat::{
    tcp_peer_server, udp_peer_server, Background, NatLab, OUTSIDE_IP, UPLINK_IP,
};
use yard_tests::{require, Container, Lab};

/// Runs `yardctl --json trace ARGS`.
fn trace(lab: &Lab, args: &[&str]) -> TraceReport {
    let mut full = vec!["trace"];
    full.extend_from_slice(args);
    lab.ctl_parse(&full)
}

/// The trace as text: one `stage: words` line per step.
fn text(report: &TraceReport) -> String {
    report
        .steps
        .iter()
        .map(|s| format!("{}: {}\n", s.stage, s.words))
        .collect()
}

/// Asserts that the trace has a step at `stage` whose words contain `part`.
#[track_caller]
fn assert_step(report: &TraceReport, stage: &str, part: &str) {
    assert!(
        report
            .steps
            .iter()
            .any(|s| s.stage == stage && s.words.contains(part)),
        "no {stage} step saying '{part}' in the trace:\n{}{:?}",
        text(report),
        report.outcome
    );
}

#[track_caller]
fn assert_leaves(report: &TraceReport, ports: &[&str]) {
    match &report.outcome {
        TraceOutcome::Leaves { ports: got } => {
            let mut got: Vec<&str> = got.iter().map(String::as_str).collect();
            got.sort();
            let mut want = ports.to_vec();
            want.sort();
            assert_eq!(got, want, "trace:\n{}", text(report));
        }
        other => panic!(
            "expected it to leave by {ports:?}, got {other:?}:\n{}",
            text(report)
        ),
    }
}

#[track_caller]
fn assert_dropped(report: &TraceReport, reason: &str, on: &str) {
    match &report.outcome {
        TraceOutcome::Dropped {
            reason: r,
            counted_on,
        } if r == reason && counted_on == on => {}
        other => panic!(
            "expected a drop as {reason} on {on}, got {other:?}:\n{}",
            text(report)
        ),
    }
}

/// What a frame sent for real would change: learned addresses, tracked
/// connections, port counters, the gateway's counters.
#[derive(Debug, PartialEq)]
struct Snapshot {
    fdb: Vec<(String, String, String)>,
    conntrack: Vec<(String, String, String, u64, u64)>,
    ports: Vec<(String, u64, u64, BTreeMap<String, u64>)>,
    gateway: serde_json::Value,
    /// Every firewall rule with its hits.
    rules: serde_json::Value,
}

fn snapshot(lab: &Lab) -> Snapshot {
    let fdb = lab
        .fdb(None)
        .into_iter()
        .map(|e| (e.net, e.mac.to_string(), e.port))
        .collect();
    let entries: Vec<ConntrackEntry> = lab.ctl_parse(&["conntrack", "ls"]);
    let conntrack = entries
        .into_iter()
        .map(|e| {
            (
                format!("{:?}", e.original),
                format!("{:?}", e.reply),
                e.state,
                e.packets_original,
                e.packets_reply,
            )
        })
        .collect();
    let stats: Vec<PortStats> = lab.all_stats();
    let ports = stats
        .into_iter()
        .map(|s| (s.name, s.rx_packets, s.tx_packets, s.drops))
        .collect();
    let mut gateway = lab.ctl_json(&["conntrack", "stats"]);
    // The table's heap figure is not a change a frame makes.
    if let Some(map) = gateway.as_object_mut() {
        map.remove("table_bytes");
    }
    Snapshot {
        fdb,
        conntrack,
        ports,
        gateway,
        rules: lab.ctl_json(&["rule", "ls"]),
    }
}

/// The drop counter `reason` of port `port`.
fn drops(lab: &Lab, port: &str, reason: &str) -> u64 {
    lab.stats(port).drops.get(reason).copied().unwrap_or(0)
}

/// A MAC's hex digits without colons.
fn hex(mac: &str) -> String {
    mac.replace(':', "")
}

fn hex_bytes(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Sends the Ethernet frame `hex` out of the container's interface as it
/// is, through a packet socket.
fn send_raw(from: &Container, hex: &str) {
    let script = format!(
        "import socket; s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); \
         s.bind(('{}', 0)); s.send(bytes.fromhex('{hex}'))",
        from.ifname
    );
    let out = from.exec(&["python3", "-c", &script]);
    assert!(out.status.success(), "sending a raw frame failed: {out:?}");
}

#[test]
fn fdb_hit_flood_and_port_security_are_traced_without_learning_or_counting() {
    if !require(&["ping", "ip"]) {
        return;
    }
    let mut lab = Lab::new();
    lab.ctl_ok(&["net", "create", "tr", "--subnet", "10.71.0.0/24"]);
    let a1 = lab.tap("a1", "tr", "10.71.0.2/24", &[]);
    let a2 = lab.tap("a2", "tr", "10.71.0.3/24", &[]);
    let _a3 = lab.tap("a3", "tr", "10.71.0.4/24", &[]);
    lab.ping_ok(&a1, a2.ip);
    let before = snapshot(&lab);

    // A known destination: one FDB hit, out of a2 alone.
    let hit = trace(&lab, &["--in", "a1", "icmp 10.71.0.2 > 10.71.0.3"]);
    assert_step(&hit, "vlan", "untagged on access port a1: network tr");
    assert_step(&hit, "port-security", "secured port");
    assert_step(&hit, "learning", "known behind this port already");
    assert_step(&hit, "fdb", "is behind port a2 (FDB hit)");
    assert_leaves(&hit, &["a2"]);

    // An unknown destination MAC: flooded to every other port.
    let flood = trace(
        &lab,
        &[
            "--in",
            "a1",
            "--dst-mac",
            "02:00:00:00:71:99",
            "icmp 10.71.0.2 > 10.71.0.9",
        ],
    );
    assert_step(
        &flood,
        "fdb",
        "02:00:00:00:71:99 is not in the FDB of network tr: flooded",
    );
    assert_step(&flood, "flood", "flooded to 2 port(s): a2, a3");
    assert_leaves(&flood, &["a2", "a3"]);

    // Port security: another source address is refused as spoofed-ip,
    // another source MAC as spoofed-mac.
    let spoof_ip = trace(&lab, &["--in", "a1", "icmp 10.71.0.99 > 10.71.0.3"]);
    assert_step(&spoof_ip, "port-security", "refused (spoofed-ip)");
    assert_dropped(&spoof_ip, "spoofed-ip", "a1");
    let spoof_mac = trace(
        &lab,
        &[
            "--in",
            "a1",
            "--src-mac",
            "02:00:00:00:71:98",
            "icmp 10.71.0.2 > 10.71.0.3",
        ],
    );
    assert_dropped(&spoof_mac, "spoofed-mac", "a1");

    // The gateway answers an echo request itself, back out of a1.
    let echo = trace(&lab, &["--in", "a1", "icmp 10.71.0.2 > 10.71.0.1"]);
    assert_step(
        &echo,
        "gateway",
        "the gateway answers it itself: icmp 10.71.0.1 -> 10.71.0.2",
    );
    assert_step(&echo, "egress", "leaves by port a1");
    assert!(
        matches!(&echo.outcome, TraceOutcome::Kept { words } if words.starts_with("answered by the gateway")),
        "{:?}\n{}",
        echo.outcome,
        text(&echo)
    );

    // Nothing learned (not even the spoofed MAC), counted or sent.
    assert_eq!(snapshot(&lab), before, "a trace changed the switch");

    // The same spoofed packet sent for real meets the same fate.
    let was = drops(&lab, "a1", "spoofed-ip");
    lab.ping_ok(&a1, "10.71.0.1".parse().unwrap());
    a1.exec(&["ip", "addr", "add", "10.71.0.99/24", "dev", "eth0"]);
    lab.ping_fails(&a1, a2.ip, &["-I", "10.71.0.99"]);
    assert!(
        drops(&lab, "a1", "spoofed-ip") > was,
        "the real spoofed ping was not dropped as spoofed-ip: {:?}",
        lab.stats("a1")
    );
}

#[test]
fn a_tagged_frame_on_an_access_port_is_traced_as_the_real_one_is_dropped() {
    if !require(&["ping", "python3"]) {
        return;
    }
    let mut lab = Lab::new();
    lab.ctl_ok(&["net", "create", "tv", "--subnet", "10.72.0.0/24"]);
    let v1 = lab.tap("v1", "tv", "10.72.0.2/24", &[]);
    let v2 = lab.tap("v2", "tv", "10.72.0.3/24", &[]);
    lab.ping_ok(&v1, v2.ip);
    let before = snapshot(&lab);
    let tagged = trace(
        &lab,
        &["--in", "v1", "--vlan", "5", "icmp 10.72.0.2 > 10.72.0.3"],
    );
    assert_step(
        &tagged,
        "vlan",
        "a VLAN-tagged frame on an access port is refused",
    );
    assert_dropped(&tagged, "tagged-on-access-port", "v1");
    assert_eq!(snapshot(&lab), before, "a trace changed the switch");

    // For real: the container sends a tagged frame (through a packet
    // socket: the kernel here may have no 802.1Q module).
    let was = drops(&lab, "v1", "tagged-on-access-port");
    let frame = format!(
        "{}{}8100000508004500001c000100004001{}",
        hex(&v2.mac().to_string()),
        hex(&v1.mac().to_string()),
        "0".repeat(60)
    );
    send_raw(&v1, &frame);
    assert!(
        drops(&lab, "v1", "tagged-on-access-port") > was,
        "the real tagged frames were not dropped as tagged-on-access-port: {:?}",
        lab.stats("v1")
    );
}

#[test]
fn isolation_drops_and_a_link_allows_as_traced() {
    if !require(&["ping", "ip"]) {
        return;
    }
    let mut lab = Lab::new();
    lab.ctl_ok(&[
        "net",
        "create",
        "ti",
        "--subnet",
        "10.74.0.0/24",
        "--no-icc",
    ]);
    let q1 = lab.tap("q1", "ti", "10.74.0.2/24", &[]);
    let q2 = lab.tap("q2", "ti", "10.74.0.3/24", &[]);
    // Both learned by their ARP requests, neither reaches the other.
    lab.ping_fails(&q1, q2.ip, &[]);
    lab.ping_fails(&q2, q1.ip, &[]);
    let before = snapshot(&lab);
    let refused = trace(&lab, &["--in", "q1", "icmp 10.74.0.2 > 10.74.0.3"]);
    assert_step(
        &refused,
        "isolation",
        "network ti is --no-icc and no link allows q1 to q2",
    );
    assert_dropped(&refused, "icc-disabled", "q1");
    assert_eq!(snapshot(&lab), before, "a trace changed the switch");

    lab.ctl_ok(&["link", "add", "q1", "q2"]);
    let allowed = trace(&lab, &["--in", "q1", "icmp 10.74.0.2 > 10.74.0.3"]);
    assert_step(
        &allowed,
        "isolation",
        "network ti is --no-icc, but a link allows q1 to q2",
    );
    assert_leaves(&allowed, &["q2"]);
    // And for real the link lets the ping through.
    lab.ping_ok(&q1, q2.ip);
}

#[test]
fn firewall_rules_are_traced_without_a_hit_and_real_frames_meet_the_same_rules() {
    if !require(&["ping"]) {
        return;
    }
    let mut lab = Lab::new();
    lab.ctl_ok(&["net", "create", "tr", "--subnet", "10.75.0.0/24"]);
    lab.ctl_ok(&["net", "create", "tr2", "--subnet", "10.76.0.0/24"]);
    lab.ctl_ok(&["net", "connect", "tr", "tr2"]);
    let r1 = lab.tap("r1", "tr", "10.75.0.2/24", &[]);
    let r2 = lab.tap("r2", "tr", "10.75.0.3/24", &[]);
    let r3 = lab.tap("r3", "tr2", "10.76.0.2/24", &[]);
    // Learned both ways before any rule.
    lab.ping_ok(&r1, r2.ip);
    lab.ping_ok(&r1, r3.ip);
    lab.ctl_ok(&[
        "rule", "add", "tr", "--from", "r1", "--to", "r2", "--proto", "icmp", "deny",
    ]);
    lab.ctl_ok(&[
        "rule",
        "add",
        "tr",
        "--to",
        "10.76.0.0/24",
        "--proto",
        "icmp",
        "deny",
    ]);

    let before = snapshot(&lab);
    let switched = trace(&lab, &["--in", "r1", "icmp 10.75.0.2 > 10.75.0.3"]);
    assert_step(&switched, "rules", "rule #1 of network tr denies it");
    assert_dropped(&switched, "rule-deny", "r1");
    let routed = trace(&lab, &["--in", "r1", "icmp 10.75.0.2 > 10.76.0.2"]);
    assert_step(&routed, "rules", "a new connection: rule #2 denies it");
    assert_dropped(&routed, "gw-rule-deny", "gateway");
    // The other way no rule matches: allowed by default.
    let back = trace(&lab, &["--in", "r2", "icmp 10.75.0.3 > 10.75.0.2"]);
    assert_step(&back, "rules", "no rule matches: allowed");
    assert_leaves(&back, &["r1"]);
    assert_eq!(
        snapshot(&lab),
        before,
        "a trace changed the switch or a rule's hits"
    );

    // For real: the same rules stop the same frames, and count them.
    lab.ping_fails(&r1, r2.ip, &[]);
    assert!(drops(&lab, "r1", "rule-deny") > 0);
    lab.ping_fails(&r1, r3.ip, &[]);
    let rules = lab.ctl_json(&["rule", "ls", "tr"]);
    assert!(
        rules[0]["hits"].as_u64() > Some(0) && rules[1]["hits"].as_u64() > Some(0),
        "{rules:#}"
    );
}

#[test]
fn a_new_connection_through_the_gateway_shows_its_snat_and_a_real_one_gets_it() {
    if !require(&["ping", "socat"]) {
        return;
    }
    let mut nat = NatLab::new();
    let c1 = nat.tap("c1", "web", "172.31.0.2/16", &[]);
    // The gateway knows the outside's MAC once it has talked to it.
    nat.ping_ns_ok(&c1.ns, OUTSIDE_IP);
    let before = snapshot(&nat);
    let t = trace(
        &nat,
        &["--in", "c1", "udp 172.31.0.2:40000 > 10.1.0.1:7001"],
    );
    assert_step(&t, "fdb", "is the gateway of network web: to the gateway");
    assert_step(
        &t,
        "gateway",
        "source 172.31.0.2 belongs on network web (reverse-path check)",
    );
    assert_step(&t, "route", "routed to uplink up0");
    assert_step(
        &t,
        "conntrack",
        "new connection, would be tracked as original udp 172.31.0.2:40000 -> 10.1.0.1:7001, \
         reply udp 10.1.0.1:7001 -> 10.1.0.2:40000",
    );
    assert_step(
        &t,
        "nat",
        "rewritten: udp 172.31.0.2:40000 -> 10.1.0.1:7001 becomes udp 10.1.0.2:40000 -> 10.1.0.1:7001",
    );
    assert_leaves(&t, &["uplink up0"]);
    assert_eq!(
        snapshot(&nat),
        before,
        "a trace made a connection or counted"
    );

    // For real: the outside sees the traced source, and conntrack holds
    // the traced tuples.
    let _server = udp_peer_server(&nat.outside, None, 7001);
    let peer = nat.udp_ask_ok(&c1.ns, OUTSIDE_IP, 7001, Some(40000));
    assert_eq!((peer.addr, peer.port), (UPLINK_IP, 40000));
    let entries = nat.conntrack(&["--proto", "udp"]);
    assert!(
        entries
            .iter()
            .any(|e| format!("{:?}", e.reply).contains("40000")),
        "no entry with the traced reply tuple: {entries:#?}"
    );

    // Now the same flow rides that entry, which the trace does not touch.
    let before = snapshot(&nat);
    let t = trace(
        &nat,
        &["--in", "c1", "udp 172.31.0.2:40000 > 10.1.0.1:7001"],
    );
    assert_step(
        &t,
        "conntrack",
        "rides an established connection (original direction, REPLIED)",
    );
    assert_step(&t, "nat", "becomes udp 10.1.0.2:40000 -> 10.1.0.1:7001");
    assert_leaves(&t, &["uplink up0"]);
    assert_eq!(snapshot(&nat), before, "a trace touched the connection");
}

#[test]
fn a_published_port_is_traced_with_its_dnat_from_inside_and_outside() {
    if !require(&["ping", "socat"]) {
        return;
    }
    let mut nat = NatLab::new();
    let c1 = nat.tap("c1", "web", "172.31.0.2/16", &[]);
    let c2 = nat.tap("c2", "web", "172.31.0.3/16", &[]);
    nat.ctl_ok(&["publish", "add", "8080:c2:80/tcp"]);
    nat.ping_ok(&c1, c2.ip);
    let before = snapshot(&nat);
    // The gateway has not met c2 yet: it would ask for it first.
    let t = trace(
        &nat,
        &["--in", "c1", "tcp 172.31.0.2:40001 > 10.1.0.2:8080 syn"],
    );
    assert_step(&t, "arp", "would resolve 172.31.0.3 by ARP, not known yet");
    assert_eq!(
        t.outcome,
        TraceOutcome::Kept {
            words: "held by the gateway until 172.31.0.3 answers ARP".into()
        }
    );
    assert_eq!(snapshot(&nat), before, "a trace changed the switch");

    // Once c2 has talked to its gateway, the way is known.
    nat.ping_ok(&c2, WEB_GATEWAY);
    let before = snapshot(&nat);
    let t = trace(
        &nat,
        &["--in", "c1", "tcp 172.31.0.2:40001 > 10.1.0.2:8080 syn"],
    );
    assert_step(&t, "nat", "destination becomes 172.31.0.3:80");
    assert_step(&t, "route", "routed to network web");
    assert_step(&t, "nat", "becomes tcp 10.1.0.2:");
    assert_step(&t, "fdb", "is behind port c2 of network web (FDB hit)");
    assert_leaves(&t, &["c2"]);
    assert_eq!(snapshot(&nat), before, "a trace changed the switch");

    // From the outside, through the uplink: DNAT alone, the client kept.
    let t = trace(
        &nat,
        &["--in", "up0", "tcp 10.1.0.1:50000 > 10.1.0.2:8080 syn"],
    );
    assert_step(&t, "ingress", "enters by uplink up0");
    assert_step(&t, "gateway", "source 10.1.0.1 belongs on uplink up0");
    assert_step(
        &t,
        "conntrack",
        "new connection, would be tracked as original tcp 10.1.0.1:50000 -> 10.1.0.2:8080, \
         reply tcp 172.31.0.3:80 -> 10.1.0.1:50000",
    );
    assert_step(
        &t,
        "nat",
        "rewritten: tcp 10.1.0.1:50000 -> 10.1.0.2:8080 becomes tcp 10.1.0.1:50000 -> 172.31.0.3:80",
    );
    assert_leaves(&t, &["c2"]);
    assert_eq!(snapshot(&nat), before, "a trace changed the switch");

    // For real: the service in c2 sees the client as traced.
    let _server = tcp_peer_server(&c2.ns, None, 80);
    let peer = nat.tcp_ask_ok(&nat.outside, UPLINK_IP, 8080, Some(50000));
    assert_eq!((peer.addr, peer.port), (OUTSIDE_IP, 50000));
}

#[test]
fn mtu_fragmentation_and_fragmentation_needed_are_traced_as_they_happen() {
    if !require(&["ping"]) {
        return;
    }
    let mut nat = NatLab::new();
    nat.ctl_ok(&[
        "net",
        "create",
        "small",
        "--subnet",
        "10.75.0.0/24",
        "--mtu",
        "1280",
    ]);
    nat.ctl_ok(&["net", "connect", "web", "small"]);
    let c1 = nat.tap("c1", "web", "172.31.0.2/16", &[]);
    let s1 = nat.tap("s1", "small", "10.75.0.2/24", &[]);
    nat.ping_ok(&c1, s1.ip);
    let before = snapshot(&nat);

    let cut = trace(
        &nat,
        &[
            "--in",
            "c1",
            "--size",
            "1400",
            "udp 172.31.0.2:5000 > 10.75.0.2:5000",
        ],
    );
    assert_step(
        &cut,
        "fragmentation",
        "1400 bytes exceed MTU 1280 of network small",
    );
    assert_step(&cut, "fragmentation", "cut into 2 IP fragments");
    assert_leaves(&cut, &["s1"]);

    let refused = trace(
        &nat,
        &[
            "--in",
            "c1",
            "--size",
            "1400",
            "udp 172.31.0.2:5000 > 10.75.0.2:5000 df",
        ],
    );
    assert_step(
        &refused,
        "mtu",
        "the sender gets ICMP fragmentation-needed (MTU 1280)",
    );
    assert_dropped(&refused, "too-big", "nowhere (an ICMP error is the answer)");

    let ingress = trace(
        &nat,
        &[
            "--in",
            "c1",
            "--size",
            "1600",
            "udp 172.31.0.2:5000 > 10.75.0.2:5000",
        ],
    );
    assert_dropped(&ingress, "too-big", "c1");
    assert_eq!(snapshot(&nat), before, "a trace changed the switch");

    // For real: a DF ping of that size hears fragmentation-needed with the
    // traced MTU.
    let out = c1.exec(&[
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        "-M",
        "do",
        "-s",
        "1372",
        "10.75.0.2",
    ]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("mtu = 1280"),
        "the real DF ping did not hear fragmentation-needed for MTU 1280: {said}"
    );
}

#[test]
fn a_frame_for_the_far_host_is_traced_into_the_gre_tunnel() {
    if !require(&["ping"]) {
        return;
    }
    let mut hosts = mesh(2);
    for host in &hosts {
        host.ctl_ok(&["net", "create", "ov", "--subnet", "172.32.0.0/16"]);
    }
    hosts[0].tunnel("t2", "ov", "--gre", &hosts[1], &["--key", "42"]);
    hosts[1].tunnel("t1", "ov", "--gre", &hosts[0], &["--key", "42"]);
    let c1 = hosts[0].tap("c1", "ov", "172.32.0.2/16", &[]);
    let c2 = hosts[1].tap("c2", "ov", "172.32.0.3/16", &[]);
    host_ping_ok(&hosts.iter().collect::<Vec<_>>(), &c1, c2.ip, &[]);
    let c2_mac = c2.mac().to_string();
    let t: TraceReport = hosts[0].ctl_parse(&[
        "trace",
        "--in",
        "c1",
        "--dst-mac",
        &c2_mac,
        "icmp 172.32.0.2 > 172.32.0.3",
    ]);
    assert_step(&t, "fdb", "is behind port t2 (FDB hit)");
    let far = hosts[1].ip().to_string();
    assert_step(
        &t,
        "tunnel",
        &format!("port t2: encapsulated in GRE to {far} with key 42"),
    );
    assert_leaves(&t, &["t2"]);
}

#[test]
fn the_first_frame_of_a_capture_is_traced_like_its_description() {
    if !require(&["ping"]) {
        return;
    }
    let mut lab = Lab::new();
    lab.ctl_ok(&["net", "create", "tp", "--subnet", "10.76.0.0/24"]);
    let p1 = lab.tap("p1", "tp", "10.76.0.2/24", &[]);
    let p2 = lab.tap("p2", "tp", "10.76.0.3/24", &[]);
    lab.ping_ok(&p1, p2.ip);
    let file = lab.dir().join("p1.pcap");
    let file_arg = file.to_string_lossy().to_string();
    // Capture the first frame p1 sends (an echo request: p1 knows p2's MAC).
    let mut child = lab
        .ctl_command(&["capture", "p1", "-w", &file_arg, "-c", "1"])
        .spawn()
        .expect("spawn yardctl capture");
    let deadline = Instant::now() + Duration::from_secs(30);
    while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
        let _ = lab.ping(&p1, p2.ip, 1, 2, &[]);
    }
    let capture = child.wait_with_output().expect("wait for capture");
    assert!(capture.status.success(), "capture failed: {capture:?}");
    // The capture's first frame is p1's echo request, or (if the capture
    // started between request and reply) p2's reply: trace it from the
    // port that sent it.
    let bytes = std::fs::read(&file).expect("the capture file");
    let frame = yard_ctl::pcap::first_frame(&bytes).expect("a frame in the capture");
    let p1_sent = hex(&p1.mac().to_string()) == hex_bytes(&frame[6..12]);
    let (from, to) = if p1_sent { ("p1", "p2") } else { ("p2", "p1") };
    let before = snapshot(&lab);
    let t = trace(&lab, &["--in", from, "--pcap", &file_arg]);
    assert_step(&t, "ingress", &format!("enters by port {from}"));
    assert_step(&t, "fdb", &format!("is behind port {to} (FDB hit)"));
    assert_leaves(&t, &[to]);
    assert_eq!(snapshot(&lab), before, "a trace changed the switch");
}

#[test]
fn bad_trace_requests_say_what_to_write() {
    if !require(&[]) {
        return;
    }
    let mut lab = Lab::new();
    lab.ctl_ok(&["net", "create", "tb", "--subnet", "10.77.0.0/24"]);
    lab.tap("b1", "tb", "10.77.0.2/24", &[]);
    let err = lab.ctl_err(&["trace", "--in", "b1", "tcp 10.77.0.2 > 10.77.0.3:80"]);
    assert!(
        err.contains("'10.77.0.2' needs a port")
            && err.contains("e.g. 'icmp 172.30.0.2 > 172.30.0.3'"),
        "{err}"
    );
    let err = lab.ctl_err(&["trace", "--in", "nope", "icmp 10.77.0.2 > 10.77.0.3"]);
    assert!(err.contains("port nope not found"), "{err}");
    let err = lab.ctl_err(&["trace", "--in", "b1", "--pcap", "/nonexistent/x.pcap"]);
    assert!(
        err.contains("cannot trace the first frame of /nonexistent/x.pcap"),
        "{err}"
    );
}

#[test]
fn with_two_datapath_threads_the_home_thread_traces_what_every_thread_learned() {
    if !require(&["ping"]) {
        return;
    }
    let mut lab = Lab::with_args(&["--threads", "2"]);
    lab.ctl_ok(&["net", "create", "tt", "--subnet", "10.78.0.0/24"]);
    let t1 = lab.tap("t1", "tt", "10.78.0.2/24", &[]);
    let t2 = lab.tap("t2", "tt", "10.78.0.3/24", &[]);
    let t3 = lab.tap("t3", "tt", "10.78.0.4/24", &[]);
    // Ports are spread over the threads: some are read by the other one.
    let ports = lab.ctl_json(&["port", "ls"]);
    let threads: std::collections::BTreeSet<String> = ports
        .as_array()
        .expect("port ls --json is an array")
        .iter()
        .map(|p| p["thread"].to_string())
        .collect();
    assert!(threads.len() > 1, "all ports on one thread: {ports:#}");
    lab.ping_ok(&t1, t2.ip);
    lab.ping_ok(&t3, t2.ip);
    let before = snapshot(&lab);
    for (from, src) in [("t1", t1.ip), ("t3", t3.ip)] {
        let t = trace(&lab, &["--in", from, &format!("icmp {src} > {}", t2.ip)]);
        assert_step(&t, "fdb", "is behind port t2 (FDB hit)");
        assert_leaves(&t, &["t2"]);
    }
    assert_eq!(snapshot(&lab), before, "a trace changed the switch");
}

#[test]
fn a_frame_tcpdump_captured_in_the_container_is_traced_from_its_port() {
    if !require(&["ping", "tcpdump"]) {
        return;
    }
    let mut lab = Lab::new();
    lab.ctl_ok(&["net", "create", "td", "--subnet", "10.79.0.0/24"]);
    let d1 = lab.tap("d1", "td", "10.79.0.2/24", &[]);
    let d2 = lab.tap("d2", "td", "10.79.0.3/24", &[]);
    lab.ping_ok(&d1, d2.ip);
    let file = lab.dir().join("d1-tcpdump.pcap");
    let file_arg = file.to_string_lossy().to_string();
    // The first echo request d1 sends, as its own kernel sees it leave.
    let mut tcpdump = Background::spawn(
        &d1.ns,
        60,
        &[
            "tcpdump",
            "-i",
            "eth0",
            "-U",
            "-c",
            "1",
            "-w",
            &file_arg,
            "icmp[icmptype] == 8",
        ],
    );
    assert!(
        tcpdump.wait_stderr(Duration::from_secs(20), |e| e.contains("listening on")),
        "tcpdump did not start: {}",
        tcpdump.describe()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while tcpdump.running() && Instant::now() < deadline {
        let _ = lab.ping(&d1, d2.ip, 1, 2, &[]);
    }
    assert!(
        !tcpdump.running(),
        "tcpdump caught no echo request: {}",
        tcpdump.describe()
    );
    let before = snapshot(&lab);
    let t = trace(&lab, &["--in", "d1", "--pcap", &file_arg]);
    assert_step(&t, "ingress", "icmp 10.79.0.2 -> 10.79.0.3");
    assert_step(&t, "fdb", "is behind port d2 (FDB hit)");
    assert_leaves(&t, &["d2"]);
    assert_eq!(snapshot(&lab), before, "a trace changed the switch");
}
