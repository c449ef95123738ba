//! Multi-threaded datapath labs (`yardd --threads 2`): what a user sees must
//! not change when ports are spread over two datapath threads. Containers on
//! either thread reach each other over TAP and veth ports with bulk TCP
//! arriving intact; each MAC is learned once, on its port, however many
//! threads saw it; learned unicast is not flooded to a third port; the
//! gateway, SNAT and published ports (owned by thread 0) serve containers on
//! both threads; ports removed and added again keep forwarding, also after a
//! restart; a veth port read through its receive ring (`--packet-io ring`)
//! by one thread is sent to by the other; `--threads 0` or a
//! non-number is a usage error; and `--datapath-cpus` pins each thread to
//! its CPU, refusing a CPU yardd may not use.
//!
//! Placement is determined (and `port ls` shows it): the least loaded thread
//! reads a new port, and thread 0 starts one ahead for the gateway, so a
//! test's first port lands on thread 1, its second on thread 0, its third on
//! thread 1, and so on: the first two ports of each test are read by
//! different threads. Tunnels are always read by thread 0, which owns their
//! sockets.
//!
//! Needs root; without it each test prints why and returns.

use std::collections::BTreeMap;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use yard_ctl::api::PortStats;
use yard_ctl::MacAddr;
use yard_tests::cmd::{describe, stdout};
use yard_tests::hosts::{
    mesh_with, ping_ok, random_file, transfer_checked, tshark_fields, Host, Tcpdump,
};
use yard_tests::lab::sha256;
use yard_tests::nat::{tcp_peer_server, NatLab, OUTSIDE_IP, UPLINK_IP, WEB_GATEWAY};
use yard_tests::{require, Container, Daemon, Lab};

/// The yardd arguments every test here runs with.
const TWO_THREADS: &[&str] = &["--threads", "2"];

/// Asserts `yardctl --json status` reports two datapath threads, and that
/// the process runs two (`yardd-datapath-<i>` in `/proc/<pid>/task`).
fn assert_two_threads(daemon: &Daemon) {
    let status = daemon.ctl_json(&["status"]);
    assert_eq!(
        status["datapath_threads"], 2,
        "yardd --threads 2 does not report two datapath threads: {status:#}"
    );
    let pid = daemon.pid().expect("yardd is running");
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("read /proc/<pid>/task");
    let mut names: Vec<String> = tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .collect();
    names.sort();
    let datapath = names
        .iter()
        .filter(|n| n.starts_with("yardd-datapath"))
        .count();
    assert_eq!(
        datapath, 2,
        "yardd --threads 2 runs {datapath} datapath threads: {names:?}"
    );
    // `port ls` says which thread reads each port; with two or more ports
    // both threads read some.
    let ports = daemon.ctl_json(&["port", "ls"]);
    let mut readers: Vec<u64> = ports
        .as_array()
        .expect("port ls --json is a list")
        .iter()
        .map(|p| p["thread"].as_u64().expect("every port names its thread"))
        .collect();
    readers.sort();
    readers.dedup();
    if ports.as_array().is_some_and(|p| p.len() >= 2) {
        assert_eq!(readers, vec![0, 1], "ports are not spread: {ports:#}");
    }
}

/// Asserts every container gets echo replies from every other.
fn ping_all_pairs(lab: &Lab, containers: &[&Container]) {
    for from in containers {
        for to in containers {
            if from.port != to.port {
                lab.ping_ok(from, to.ip);
            }
        }
    }
}

/// Asserts that `fdb show --net NET` lists each container's MAC exactly once,
/// on the container's own port, and no (network, MAC) pair twice.
fn assert_learned_once(lab: &Lab, net: &str, containers: &[&Container]) {
    let fdb = lab.fdb(Some(net));
    let mut seen: BTreeMap<(String, MacAddr), usize> = BTreeMap::new();
    for e in &fdb {
        *seen.entry((e.net.clone(), e.mac)).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "fdb show lists these (net, MAC) pairs more than once: {twice:?}\n{fdb:#?}"
    );
    for c in containers {
        let mac = c.mac();
        let entries: Vec<_> = fdb.iter().filter(|e| e.mac == mac).collect();
        assert_eq!(
            entries.len(),
            1,
            "{}'s MAC {mac} should be listed exactly once: {fdb:#?}",
            c.port
        );
        assert_eq!(
            entries[0].port, c.port,
            "{mac} learned on the wrong port: {fdb:#?}"
        );
        assert!(!entries[0].is_static, "learned entry shows as static");
    }
}

/// Polls `fdb show --net NET` (at most 5 s) until every container's MAC is
/// listed on its port.
fn wait_learned(lab: &Lab, net: &str, containers: &[&Container]) {
    let macs: Vec<(MacAddr, &str)> = containers
        .iter()
        .map(|c| (c.mac(), c.port.as_str()))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let fdb = lab.fdb(Some(net));
        let all = macs
            .iter()
            .all(|(mac, port)| fdb.iter().any(|e| e.mac == *mac && e.port == *port));
        if all {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not every MAC of {macs:?} was learned on its port within 5 s: {fdb:#?}"
        );
        sleep(Duration::from_millis(100));
    }
}

/// The counters of `port` in a `port stats` listing.
fn stats_of<'a>(all: &'a [PortStats], port: &str) -> &'a PortStats {
    all.iter()
        .find(|s| s.name == port)
        .unwrap_or_else(|| panic!("no stats for {port}: {all:#?}"))
}

/// Runs `count` pings from `from` to `to`, `interval` seconds apart, and
/// asserts every one was answered exactly once (no loss, no duplicates:
/// two threads must not both deliver a frame).
fn ping_all_answered(lab: &Lab, from: &Container, to: &Container, count: u32, interval: &str) {
    // Lab::ping passes `-i 0.2` first; ping takes the last `-i` given.
    let out = lab.ping(from, to.ip, count, 20, &["-i", interval]);
    let text = stdout(&out);
    let want = format!("{count} packets transmitted, {count} received");
    if !out.status.success() || !text.contains(&want) || text.contains("duplicates") {
        panic!(
            "{} -> {}: expected {count} replies, no loss and no duplicates:\n{}\n{}",
            from.port,
            to.port,
            describe(&format!("ip netns exec {} ping {}", from.ns, to.ip), &out),
            lab.log_tail()
        );
    }
}

/// Sends `source` from `from` to `to` over TCP and asserts the copy is intact.
fn transfer_intact(lab: &Lab, from: &Container, to: &Container, source: &Path, port: u16) {
    let received = source.with_file_name(format!("received-{}-{}.bin", from.port, to.port));
    lab.tcp_transfer(from, to, source, &received, port, 240);
    assert_eq!(
        sha256(&received),
        sha256(source),
        "{} -> {}: the received file differs from the one sent ({} of {} bytes)",
        from.port,
        to.port,
        std::fs::metadata(&received).map(|m| m.len()).unwrap_or(0),
        std::fs::metadata(source).map(|m| m.len()).unwrap_or(0),
    );
    std::fs::remove_file(&received).expect("remove the received copy");
}

#[test]
fn l2_pings_transfers_fdb_and_counters_are_right_across_two_threads() {
    if !require(&["ping", "socat", "sha256sum", "ss", "dd"]) {
        return;
    }
    let mut lab = Lab::with_args(TWO_THREADS);
    assert_two_threads(&lab);
    let t1 = lab.tap("t1", "yard0", "172.30.4.1/16", &[]);
    let t2 = lab.tap("t2", "yard0", "172.30.4.2/16", &[]);
    let t3 = lab.tap("t3", "yard0", "172.30.4.3/16", &[]);
    let tv = lab.veth("tv", "yard0", "172.30.4.4/16");
    let all = [&t1, &t2, &t3, &tv];

    // Counters: 20 echo requests t1 -> t2, and their replies, are counted on
    // both ports in both directions. Measured before the other pairs talk:
    // about 5 s after a first exchange, a container's kernel re-checks the
    // neighbour it answered with a unicast ARP probe (DELAY, then PROBE), and
    // such a probe between t1 or t2 and t3 or tv inside the window would
    // count on t1 or t2 without reaching the other.
    let before = lab.all_stats();
    ping_all_answered(&lab, &t1, &t2, 20, "0.05");
    let after = lab.all_stats();
    let delta = |port: &str| {
        let (b, a) = (stats_of(&before, port), stats_of(&after, port));
        (
            a.rx_packets - b.rx_packets,
            a.tx_packets - b.tx_packets,
            a.rx_bytes - b.rx_bytes,
            a.tx_bytes - b.tx_bytes,
        )
    };
    for port in ["t1", "t2"] {
        let (rx, tx, rx_bytes, tx_bytes) = delta(port);
        assert!(
            rx >= 20 && tx >= 20 && rx_bytes >= 20 * 98 && tx_bytes >= 20 * 98,
            "{port} did not count 20 echoes each way (rx {rx} pkts/{rx_bytes} B, \
             tx {tx} pkts/{tx_bytes} B)\nbefore: {before:#?}\nafter: {after:#?}"
        );
    }
    // Every frame one of them sent in that window was delivered to the other
    // (known unicast to it, or broadcast to all): the sender's rx is covered
    // by the receiver's tx, in both directions.
    let (t1_rx, t1_tx, ..) = delta("t1");
    let (t2_rx, t2_tx, ..) = delta("t2");
    assert!(
        t2_tx >= t1_rx && t1_tx >= t2_rx,
        "t1 rx {t1_rx} tx {t1_tx}, t2 rx {t2_rx} tx {t2_tx}: frames were lost between \
         the threads\nbefore: {before:#?}\nafter: {after:#?}"
    );

    ping_all_pairs(&lab, &all);
    assert_learned_once(&lab, "yard0", &all);

    // Bulk TCP, TAP -> TAP and veth -> TAP, with the kernel's offloads on.
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("source.bin");
    random_file(&source, 100);
    let before = lab.all_stats();
    transfer_intact(&lab, &t1, &t2, &source, 5101);
    transfer_intact(&lab, &tv, &t3, &source, 5102);
    let after = lab.all_stats();
    let size = 100 * 1024 * 1024;
    for (port, rx_side) in [("t1", true), ("t2", false), ("tv", true), ("t3", false)] {
        let (b, a) = (stats_of(&before, port), stats_of(&after, port));
        let (bytes, what) = if rx_side {
            (a.rx_bytes - b.rx_bytes, "rx_bytes")
        } else {
            (a.tx_bytes - b.tx_bytes, "tx_bytes")
        };
        assert!(
            bytes >= size,
            "{port}'s {what} grew by {bytes}, less than the {size} bytes transferred\n\
             before: {before:#?}\nafter: {after:#?}"
        );
    }

    assert_learned_once(&lab, "yard0", &all);
    assert_two_threads(&lab);
}

#[test]
fn a_veth_port_read_through_its_ring_is_sent_to_by_the_other_thread() {
    if !require(&["ping", "socat", "sha256sum", "ss", "dd"]) {
        return;
    }
    // `--packet-io ring`: the thread that reads the veth port (thread 0,
    // the second port's) maps its receive ring; the other thread sends to
    // it through a duplicate of the socket, which has no ring of its own.
    let mut lab = Lab::with_args(&["--threads", "2", "--packet-io", "ring"]);
    assert_two_threads(&lab);
    let tap = lab.tap("rt", "yard0", "172.30.14.1/16", &[]);
    let veth = lab.veth("rv", "yard0", "172.30.14.2/16");
    assert_eq!(lab.packet_ring_count(), 1, "{}", lab.log_tail());
    ping_all_pairs(&lab, &[&tap, &veth]);

    // Bulk TCP both ways, GSO frames through the ring's copies one way and
    // the other thread's sends the other.
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("source.bin");
    random_file(&source, 100);
    transfer_intact(&lab, &veth, &tap, &source, 5141);
    transfer_intact(&lab, &tap, &veth, &source, 5142);
    assert_learned_once(&lab, "yard0", &[&tap, &veth]);
    assert_two_threads(&lab);
}

#[test]
fn learned_unicast_between_two_ports_is_not_flooded_to_a_third() {
    if !require(&["ping", "tcpdump", "tshark", "socat", "ss", "dd"]) {
        return;
    }
    let mut lab = Lab::with_args(TWO_THREADS);
    let c1 = lab.tap("c1", "yard0", "172.30.5.1/16", &[]);
    let c2 = lab.tap("c2", "yard0", "172.30.5.2/16", &[]);
    let c3 = lab.tap("c3", "yard0", "172.30.5.3/16", &[]);
    let (m1, m2, m3) = (c1.mac(), c2.mac(), c3.mac());

    // Learn c1 and c2 (each on the thread that owns it, announced to the
    // other), then make sure the other thread has taken the announcements
    // in: a thread queues what it learned at the end of the loop turn that
    // learned it, and takes in its peers' news at the start of every turn,
    // before the commands it answers at the end of that turn. Both MACs were
    // announced before `wait_learned` listed them, so a further command
    // that every thread answers (one more `fdb show`) is answered only after
    // each thread has heard them. (A fixed pause here raced a loaded CPU.)
    lab.ping_ok(&c1, c2.ip);
    lab.ping_ok(&c2, c1.ip);
    wait_learned(&lab, "yard0", &[&c1, &c2]);
    lab.fdb(Some("yard0"));

    // Everything yardd delivers to c3 from now on (c3 itself stays silent).
    let mut dump = Tcpdump::start(
        &c3.ns,
        "eth0",
        &format!("not ether src {m3}"),
        None,
        90,
        lab.dir(),
        "c3",
    );
    let before = lab.stats("c3");
    ping_all_answered(&lab, &c1, &c2, 100, "0.01");
    ping_all_answered(&lab, &c2, &c1, 100, "0.01");
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("source.bin");
    random_file(&source, 10);
    transfer_intact(&lab, &c1, &c2, &source, 5201);
    transfer_intact(&lab, &c2, &c1, &source, 5202);
    let after = lab.stats("c3");
    // What yardd counted as sent to c3 may still be on its way into the
    // capture: wait (bounded) until it holds that many frames, then stop.
    let tx = after.tx_packets - before.tx_packets;
    dump.wait_frames(
        Duration::from_secs(10),
        None,
        usize::try_from(tx).unwrap_or(usize::MAX),
    );
    let dump_err = dump.stop();
    let file = lab.dir().join("c3.pcap");

    let frames = tshark_fields(&file, None, &["eth.src", "eth.dst"]);
    let (m1, m2) = (m1.to_string(), m2.to_string());
    let leaked: Vec<&String> = frames
        .iter()
        .filter(|f| {
            let (src, dst) = f.split_once(';').unwrap_or((f, ""));
            let is_pair = |a: &str| a == m1 || a == m2;
            is_pair(src) && is_pair(dst)
        })
        .collect();
    assert!(
        leaked.is_empty(),
        "c3 received {} unicast frames between c1 and c2 after both were learned \
         (first: {:?}); pcap {}\n{dump_err}\n{}",
        leaked.len(),
        &leaked[..leaked.len().min(5)],
        file.display(),
        lab.log_tail()
    );
    let not_broadcast: Vec<&String> = frames
        .iter()
        .filter(|f| {
            let dst = f.split_once(';').map(|(_, d)| d).unwrap_or("");
            // Group bit: the low bit of the first octet.
            let group = u8::from_str_radix(dst.get(..2).unwrap_or("00"), 16).unwrap_or(0) & 1;
            group == 0 && dst != m3.to_string()
        })
        .collect();
    assert!(
        not_broadcast.is_empty(),
        "c3 received unicast frames for other ports: {not_broadcast:?}; pcap {}",
        file.display()
    );
    assert!(
        tx <= frames.len() as u64,
        "yardd counted {tx} frames sent to c3 but c3 saw only {} (all broadcast): \
         the rest went somewhere else\nbefore: {before:?}\nafter: {after:?}",
        frames.len()
    );
}

/// The web network's containers for the NAT test: three TAP ports, so both
/// threads own at least one.
const WEB: [(&str, &str); 3] = [
    ("c1", "172.31.0.2/16"),
    ("c2", "172.31.0.3/16"),
    ("c3", "172.31.0.4/16"),
];

#[test]
fn gateway_snat_and_published_ports_serve_containers_on_both_threads() {
    if !require(&["ping", "socat", "ss", "sha256sum", "dd"]) {
        return;
    }
    let mut lab = NatLab::with_args(TWO_THREADS);
    assert_two_threads(&lab);
    let containers: Vec<Container> = WEB
        .iter()
        .map(|(port, cidr)| lab.tap(port, "web", cidr, &[]))
        .collect();

    let _outside_server = tcp_peer_server(&lab.outside, Some(OUTSIDE_IP), 8001);
    let mut servers = Vec::new();
    for (i, c) in containers.iter().enumerate() {
        lab.ping_ok(c, WEB_GATEWAY);
        lab.ping_ok(c, OUTSIDE_IP);
        let snat = lab.tcp_ask_ok(&c.ns, OUTSIDE_IP, 8001, None);
        assert_eq!(
            snat.addr, UPLINK_IP,
            "{}'s TCP seen outside as {snat}",
            c.port
        );

        let public = 8081 + i as u16;
        lab.ctl_ok(&["publish", "add", &format!("{public}:{}:80/tcp", c.port)]);
        servers.push(tcp_peer_server(&c.ns, None, 80));
        let dnat = lab.tcp_ask_ok(&lab.outside, UPLINK_IP, public, None);
        assert_eq!(
            dnat.addr, OUTSIDE_IP,
            "{} saw the client of published port {public} as {dnat}",
            c.port
        );
    }

    // One conntrack entry per flow, whichever thread the container is on.
    let ct = lab.conntrack(&["--proto", "tcp"]);
    for (i, c) in containers.iter().enumerate() {
        let out: Vec<_> = ct
            .iter()
            .filter(|e| e.original.src == c.ip && e.original.dport == 8001)
            .collect();
        assert_eq!(out.len(), 1, "{}'s SNAT flow: {ct:#?}", c.port);
        let snat = out[0].snat.as_deref().unwrap_or("");
        assert!(
            snat.starts_with(&format!("{UPLINK_IP}:")),
            "{}'s flow is not SNATed to the uplink: {:#?}",
            c.port,
            out[0]
        );
        let public = 8081 + i as u16;
        let inbound: Vec<_> = ct
            .iter()
            .filter(|e| e.original.dst == UPLINK_IP && e.original.dport == public)
            .collect();
        assert_eq!(inbound.len(), 1, "published {public}: {ct:#?}");
        assert_eq!(
            inbound[0].dnat.as_deref(),
            Some(format!("{}:80", c.ip).as_str()),
            "{:#?}",
            inbound[0]
        );
    }

    // Bulk SNAT from every container: the gateway hand-off holds under load.
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("source.bin");
    random_file(&source, 20);
    let outside = Container {
        port: "outside".into(),
        ns: lab.outside.clone(),
        ifname: "eth0".into(),
        ip: OUTSIDE_IP,
    };
    for (i, c) in containers.iter().enumerate() {
        transfer_intact(&lab, c, &outside, &source, 5301 + i as u16);
    }
}

#[test]
fn ports_removed_and_added_again_keep_forwarding_and_survive_a_restart() {
    if !require(&["ping"]) {
        return;
    }
    let mut lab = Lab::with_args(TWO_THREADS);
    let p1 = lab.tap("p1", "yard0", "172.30.6.1/16", &[]);
    let mut p2 = lab.tap("p2", "yard0", "172.30.6.2/16", &[]);
    let p3 = lab.tap("p3", "yard0", "172.30.6.3/16", &[]);
    let mut pv = lab.veth("pv", "yard0", "172.30.6.4/16");
    for to in [&p2, &p3, &pv] {
        lab.ping_ok(&p1, to.ip);
    }

    for round in 0..3 {
        let old_macs = [p2.mac(), pv.mac()];
        lab.ctl_ok(&["port", "rm", "p2"]);
        lab.ctl_ok(&["port", "rm", "pv"]);
        // The ports that stay keep forwarding while the others are gone.
        ping_all_answered(&lab, &p1, &p3, 5, "0.05");
        ping_all_answered(&lab, &p3, &p1, 5, "0.05");
        let fdb = lab.fdb(None);
        assert!(
            fdb.iter()
                .all(|e| e.port != "p2" && e.port != "pv" && !old_macs.contains(&e.mac)),
            "round {round}: removed ports still have FDB entries: {fdb:#?}"
        );

        // Added again, in new namespaces (new MACs), with the same addresses.
        p2 = lab.tap("p2", "yard0", "172.30.6.2/16", &[]);
        pv = lab.veth("pv", "yard0", "172.30.6.4/16");
        // The new containers speak first: their ARP requests replace the
        // old MACs in the others' neighbour caches.
        for from in [&p2, &pv] {
            for to in [&p1, &p3] {
                lab.ping_ok(from, to.ip);
            }
        }
        lab.ping_ok(&p2, pv.ip);
        for from in [&p1, &p3] {
            ping_all_answered(&lab, from, &p2, 5, "0.05");
            ping_all_answered(&lab, from, &pv, 5, "0.05");
        }
        assert_learned_once(&lab, "yard0", &[&p1, &p2, &p3, &pv]);
    }

    // The daemon comes back with its arguments: still two threads, still
    // forwarding between every pair.
    let status = lab.stop(Signal::SIGTERM);
    assert!(status.success(), "yardd exited with {status} on SIGTERM");
    lab.start();
    lab.wait_ports_up(Duration::from_secs(10));
    assert_two_threads(&lab);
    let all = [&p1, &p2, &p3, &pv];
    ping_all_pairs(&lab, &all);
    assert_learned_once(&lab, "yard0", &all);
}

/// `--threads` takes a positive number; anything else is a usage error (exit
/// 2) naming the option, not an unknown-argument error. `--threads 1` starts
/// and says so, so the refusals are about the value, not the option.
#[test]
fn gre_between_two_hosts_carries_frames_sent_and_received_by_other_threads() {
    if !require(&["ping", "socat", "sha256sum", "ss", "dd"]) {
        return;
    }
    // Per host: the tunnel (read by thread 0), then two containers, read by
    // thread 1: they send into the tunnel from thread 1, and what the tunnel
    // brings them thread 0 writes into their TAPs.
    let mut hosts = mesh_with(2, TWO_THREADS);
    for (i, host) in hosts.iter().enumerate() {
        host.ctl_ok(&["net", "create", "ov", "--subnet", "172.33.0.0/16"]);
        let peer = &hosts[1 - i];
        host.tunnel(
            &format!("t{}", peer.index()),
            "ov",
            "--gre",
            peer,
            &["--key", "7"],
        );
    }
    let mut containers = Vec::new();
    for host in hosts.iter_mut() {
        for n in 0..2 {
            let name = format!("h{}c{n}", host.index());
            let cidr = format!("172.33.{}.{}/16", host.index(), 10 + n);
            containers.push(host.tap(&name, "ov", &cidr, &[]));
        }
    }
    for host in &hosts {
        let ports = host.ctl_json(&["port", "ls"]);
        for port in ports.as_array().expect("port ls --json is a list") {
            let want = if port["kind"] == "gre" { 0 } else { 1 };
            assert_eq!(port["thread"], want, "{ports:#}");
        }
    }
    let all: Vec<&Host> = hosts.iter().collect();
    for from in &containers {
        for to in &containers {
            if from.port != to.port {
                ping_ok(&all, from, to.ip, &[]);
            }
        }
    }
    let dir = tempfile::tempdir().expect("temp dir");
    transfer_checked(&all, &containers[0], &containers[3], dir.path(), 50, 5301);
    transfer_checked(&all, &containers[2], &containers[1], dir.path(), 50, 5302);
}

#[test]
fn threads_zero_or_not_a_number_is_a_usage_error() {
    if !require(&[]) {
        return;
    }
    let one = Daemon::start_new_with(&["--threads", "1"]);
    let status = one.ctl_json(&["status"]);
    assert_eq!(
        status["datapath_threads"], 1,
        "yardd --threads 1: {status:#}"
    );
    drop(one);

    for value in ["0", "two"] {
        let log = refused_at_start(&["--threads", value], 2);
        assert!(
            log.contains("--threads") && !log.contains("unexpected argument"),
            "yardd --threads {value}: the message does not name --threads as an \
             option with a bad value:\n{log}"
        );
    }
}

/// Runs yardd with `args` and asserts it exits with `code` before making
/// its control socket; returns what it logged.
fn refused_at_start(args: &[&str], code: i32) -> String {
    let mut daemon = Daemon::unstarted_with(args);
    let status = daemon.run_until_exit(Duration::from_secs(10));
    let log = daemon.log_text();
    assert_eq!(status.code(), Some(code), "yardd {args:?}: {status}\n{log}");
    assert!(
        !daemon.socket().exists(),
        "yardd {args:?} created its control socket"
    );
    log
}

/// The CPUs `/proc/<pid>/task/<tid>/status` allows each `yardd-datapath-*`
/// thread of `pid`, by thread id (the name is cut to 15 bytes there).
fn datapath_cpus_allowed(pid: u32) -> BTreeMap<String, String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("read /proc/<pid>/task");
    tasks
        .filter_map(|task| {
            let path = task.ok()?.path();
            let name = std::fs::read_to_string(path.join("comm")).ok()?;
            let name = name.trim().to_string();
            if !name.starts_with("yardd-datapath") {
                return None;
            }
            let status = std::fs::read_to_string(path.join("status")).ok()?;
            let allowed = status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?
                .trim()
                .to_string();
            Some((path.file_name()?.to_string_lossy().into_owned(), allowed))
        })
        .collect()
}

#[test]
fn datapath_cpus_pin_each_thread_and_a_cpu_yardd_may_not_use_is_refused() {
    if !require(&[]) {
        return;
    }
    // Both threads on CPU 0, round robin over a one-CPU list; the control
    // thread is left to the scheduler.
    let daemon = Daemon::start_new_with(&["--threads", "2", "--datapath-cpus", "0"]);
    let pid = daemon.pid().expect("yardd is running");
    let pinned = datapath_cpus_allowed(pid);
    assert_eq!(pinned.len(), 2, "two datapath threads: {pinned:?}");
    for (thread, allowed) in &pinned {
        assert_eq!(allowed, "0", "{thread} is not pinned to CPU 0: {pinned:?}");
    }
    assert!(
        daemon.log_text().contains("datapath thread pinned"),
        "no log line says the threads were pinned:\n{}",
        daemon.log_text()
    );
    drop(daemon);

    // CPU 1023 is no machine's here: refused before anything starts.
    let log = refused_at_start(&["--datapath-cpus", "0,1023"], 1);
    assert!(
        log.contains("--datapath-cpus") && log.contains("may not run on CPU 1023"),
        "the message does not say which CPU is refused:\n{log}"
    );

    // Not a list at all: a usage error naming the option.
    let log = refused_at_start(&["--datapath-cpus", "4-2"], 2);
    assert!(
        log.contains("--datapath-cpus") && log.contains("empty range"),
        "{log}"
    );
}
