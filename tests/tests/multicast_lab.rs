//! Multicast snooping labs: IPv6 Neighbor Discovery between containers
//! still works (link-local and global ping), an IPv4 group joined by one
//! container reaches it and not a container that did not join, and the
//! Neighbor Discovery and MLD chatter of 200 idle IPv6 containers coming up
//! does not reach a settled container of the same network (flood fan-out is
//! bounded) while a network beside them keeps working; and a broadcast
//! storm from one container is held to the flood limit, counted, and leaves
//! another network working.
//!
//! Unlike the other labs these containers keep IPv6 on: its DAD, MLD
//! reports and router solicitations are what the tests are about. Needs
//! root; without it each test prints why and returns.

use std::io::Write;
use std::process::Stdio;
use std::thread::sleep;
use std::time::{Duration, Instant};

use yard_tests::cmd::{describe, in_ns_ok, poll, stdout, timed};
use yard_tests::lab::add_tap;
use yard_tests::{require, Container, Lab, Netns};

/// How long a port just added keeps getting every multicast frame (its
/// query goes out within a second, hosts have a second to answer, one more
/// to spare), and a little more.
const SETTLE: Duration = Duration::from_secs(4);

/// A TAP container with IPv6 left on; its namespace guard goes into `keep`,
/// which the caller declares before the lab so the daemon goes first.
fn ipv6_tap(lab: &Lab, keep: &mut Vec<Netns>, port: &str, net: &str, cidr: &str) -> Container {
    let ns = Netns::new();
    let name = ns.name().to_string();
    keep.push(ns);
    add_tap(lab, name, port, net, cidr, &[])
}

/// Waits (at most 15 s) until no IPv6 address of the container is still
/// tentative (duplicate address detection done).
fn wait_dad(c: &Container) {
    let done = poll(Duration::from_secs(15), Duration::from_millis(100), || {
        let out = in_ns_ok(
            &c.ns,
            &["ip", "-6", "addr", "show", "dev", &c.ifname, "tentative"],
        );
        stdout(&out).trim().is_empty()
    });
    assert!(
        done,
        "{}: IPv6 addresses still tentative after 15 s",
        c.port
    );
}

/// The container's link-local IPv6 address.
fn link_local(c: &Container) -> String {
    let out = in_ns_ok(
        &c.ns,
        &[
            "ip", "-j", "-6", "addr", "show", "dev", &c.ifname, "scope", "link",
        ],
    );
    let addrs: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j output");
    addrs[0]["addr_info"][0]["local"]
        .as_str()
        .unwrap_or_else(|| panic!("{} has no link-local address: {addrs:#}", c.port))
        .to_string()
}

fn ping6_ok(lab: &Lab, from: &Container, to: &str) {
    let out = from.exec(&[
        "ping", "-6", "-n", "-q", "-c", "2", "-i", "0.2", "-W", "1", "-w", "10", to,
    ]);
    assert!(
        out.status.success(),
        "{} could not ping {to}:\n{}\n{}",
        from.port,
        describe(&format!("ping -6 {to}"), &out),
        lab.log_tail()
    );
}

#[test]
fn ipv6_neighbor_discovery_between_containers_still_works() {
    if !require(&["ping"]) {
        return;
    }
    let mut keep = Vec::new();
    let lab = Lab::new();
    lab.ctl_ok(&["net", "create", "v6", "--subnet", "10.91.0.0/24"]);
    let a = ipv6_tap(&lab, &mut keep, "a", "v6", "10.91.0.2/24");
    let b = ipv6_tap(&lab, &mut keep, "b", "v6", "10.91.0.3/24");
    wait_dad(&a);
    wait_dad(&b);
    // Past the window in which new ports get every group: from here on an
    // NS reaches b only because b reported its solicited-node group.
    sleep(SETTLE);
    let b_link = format!("{}%{}", link_local(&b), a.ifname);
    ping6_ok(&lab, &a, &b_link);
    // Addresses added later (with DAD): their groups are joined then.
    in_ns_ok(
        &a.ns,
        &["ip", "addr", "add", "fd91::2/64", "dev", &a.ifname],
    );
    in_ns_ok(
        &b.ns,
        &["ip", "addr", "add", "fd91::3/64", "dev", &b.ifname],
    );
    wait_dad(&a);
    wait_dad(&b);
    ping6_ok(&lab, &a, "fd91::3");
    ping6_ok(&lab, &b, "fd91::2");
    // IPv4 ARP (broadcast) is untouched.
    lab.ping_ok(&a, b.ip);
}

/// Receives UDP datagrams to `group` port 5000 in `c` (joining the group)
/// for at most `secs`, appending them to `path`.
fn group_receiver(
    c: &Container,
    group: &str,
    path: &std::path::Path,
    secs: u32,
) -> std::process::Child {
    let listen = format!(
        "UDP4-RECV:5000,ip-add-membership={group}:{},reuseaddr",
        c.ifname
    );
    let sink = format!("OPEN:{},creat,append", path.display());
    timed(secs, "ip")
        .args(["netns", "exec", &c.ns, "socat", "-u", &listen, &sink])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn socat")
}

/// Sends one UDP datagram with `text` from `from` to socat address `target`.
fn send_datagram(from: &Container, target: &str, text: &str) {
    let mut send = timed(5, "ip")
        .args(["netns", "exec", &from.ns, "socat", "-u", "STDIN", target])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn socat sender");
    let mut stdin = send.stdin.take().expect("socat's stdin");
    stdin.write_all(text.as_bytes()).expect("write to socat");
    drop(stdin);
    let out = send.wait_with_output().expect("wait for socat");
    assert!(
        out.status.success(),
        "{}",
        describe(&format!("socat to {target}"), &out)
    );
}

#[test]
fn an_ipv4_group_reaches_the_container_that_joined_and_not_the_others() {
    if !require(&["socat"]) {
        return;
    }
    let mut lab = Lab::new();
    lab.ctl_ok(&["net", "create", "grp", "--subnet", "10.92.0.0/24"]);
    let sender = lab.tap("s", "grp", "10.92.0.2/24", &[]);
    let member = lab.tap("m", "grp", "10.92.0.3/24", &[]);
    let _other = lab.tap("o", "grp", "10.92.0.4/24", &[]);
    sleep(SETTLE);
    let dir = tempfile::tempdir().unwrap();
    let got = dir.path().join("member.txt");
    let receiver = group_receiver(&member, "239.9.2.3", &got, 30);
    // socat joins when it starts: the IGMP report goes out at once.
    sleep(Duration::from_secs(1));
    // The table says who listens: m, not o.
    let mdb = lab.ctl_json(&["mdb", "show", "--net", "grp"]);
    let listeners: Vec<&str> = mdb
        .as_array()
        .expect("mdb show --json prints an array")
        .iter()
        .filter(|e| e["group"] == "239.9.2.3")
        .filter_map(|e| e["port"].as_str())
        .collect();
    assert_eq!(listeners, vec!["m"], "mdb show: {mdb:#}");
    let before = lab.stats("o").tx_packets;
    let target = "UDP4-DATAGRAM:239.9.2.3:5000,ip-multicast-ttl=1";
    let sent = 20;
    for i in 0..sent {
        send_datagram(&sender, target, &format!("datagram {i}\n"));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let count = |p: &std::path::Path| {
        std::fs::read_to_string(p)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    while count(&got) < sent && Instant::now() < deadline {
        sleep(Duration::from_millis(100));
    }
    yard_tests::cmd::end_child(receiver, Duration::from_secs(2));
    let after = lab.stats("o").tx_packets;
    assert_eq!(
        count(&got),
        sent,
        "the member got every datagram to its group"
    );
    // The non-member's port sent it none of them (before snooping it got
    // all 20: multicast flooded to every port).
    assert!(
        after - before < 5,
        "the non-member's port sent it {} frames while 20 datagrams went to a group it did not join",
        after - before
    );
    // A link-local group (224.0.0.251, mDNS's) still reaches everyone.
    let before = lab.stats("o").tx_packets;
    send_datagram(&sender, "UDP4-DATAGRAM:224.0.0.251:5353", "hello\n");
    let reached = poll(Duration::from_secs(5), Duration::from_millis(100), || {
        lab.stats("o").tx_packets > before
    });
    assert!(
        reached,
        "a datagram to 224.0.0.251 did not reach the other container"
    );
}

#[test]
fn idle_ipv6_containers_coming_up_do_not_flood_every_port() {
    if !require(&["ping"]) {
        return;
    }
    const IDLE: usize = 200;
    let mut keep = Vec::new();
    let mut lab = Lab::new();
    lab.ctl_ok(&["net", "create", "idle", "--subnet", "10.93.0.0/22"]);
    lab.ctl_ok(&["net", "create", "busy", "--subnet", "10.94.0.0/24"]);
    let pa = lab.tap("pa", "busy", "10.94.0.2/24", &[]);
    let pb = lab.tap("pb", "busy", "10.94.0.3/24", &[]);
    let observer = ipv6_tap(&lab, &mut keep, "watch", "idle", "10.93.3.250/22");
    wait_dad(&observer);
    sleep(SETTLE);
    lab.ping_ok(&pa, pb.ip);
    let before = lab.stats("watch").tx_packets;
    let started = Instant::now();
    for i in 0..IDLE {
        let cidr = format!("10.93.{}.{}/22", i / 250, i % 250 + 2);
        ipv6_tap(&lab, &mut keep, &format!("i{i}"), "idle", &cidr);
    }
    let setup = started.elapsed();
    // Each new container takes its link-local address: MLD reports, a DAD
    // NS, router solicitations — 5 or more multicast frames each. Wait until
    // the last one has done DAD.
    let last = Container {
        port: format!("i{}", IDLE - 1),
        ns: keep.last().unwrap().name().to_string(),
        ifname: "eth0".into(),
        ip: "10.93.0.201".parse().unwrap(),
    };
    wait_dad(&last);
    sleep(Duration::from_secs(2));
    let after = lab.stats("watch").tx_packets;
    let rx_idle: u64 = (0..IDLE)
        .map(|i| lab.stats(&format!("i{i}")).rx_packets)
        .sum();
    println!(
        "{IDLE} idle IPv6 TAPs up in {setup:?}; they sent {rx_idle} frames; the settled observer was sent {} of them",
        after - before
    );
    assert!(
        rx_idle >= 3 * IDLE as u64,
        "the idle containers sent only {rx_idle} frames: is IPv6 on in them?"
    );
    // Before snooping the observer got every one of those multicast frames
    // (over 1000); now only what is for it, or for every port.
    assert!(
        after - before < IDLE as u64 / 2,
        "the observer's port sent it {} frames while {IDLE} idle containers came up",
        after - before
    );
    // The network beside them works.
    lab.ping_ok(&pa, pb.ip);
}

/// Sends at most `count` broadcast frames (EtherType 0x88b5) out of eth0 as
/// fast as it can, for at most `secs` seconds; prints how many it sent.
const BROADCAST_STORM: &str = r#"
import socket, sys, time
count, secs = int(sys.argv[1]), float(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
mac = bytes.fromhex(open("/sys/class/net/eth0/address").read().strip().replace(":", ""))
frame = b"\xff" * 6 + mac + b"\x88\xb5" + b"storm" * 10
end = time.time() + secs
sent = 0
while sent < count and time.time() < end:
    try:
        s.send(frame)
        sent += 1
    except OSError:
        time.sleep(0.001)
print(sent)
"#;

#[test]
fn a_broadcast_storm_is_held_to_the_flood_limit() {
    if !require(&["python3", "ping"]) {
        return;
    }
    const PORTS: usize = 50;
    // yardd's flood limit per port: FloodLimit::DEFAULT.
    const PER_SEC: f64 = 50_000.0;
    const BURST: f64 = 50_000.0;
    let mut lab = Lab::new();
    lab.ctl_ok(&["net", "create", "storm", "--subnet", "10.95.0.0/24"]);
    lab.ctl_ok(&["net", "create", "calm", "--subnet", "10.96.0.0/24"]);
    let pa = lab.tap("pa", "calm", "10.96.0.2/24", &[]);
    let pb = lab.tap("pb", "calm", "10.96.0.3/24", &[]);
    let flooder = lab.tap("fl", "storm", "10.95.0.2/24", &[]);
    for i in 0..PORTS - 1 {
        lab.tap(
            &format!("s{i}"),
            "storm",
            &format!("10.95.0.{}/24", i + 10),
            &[],
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("storm.py");
    std::fs::write(&script, BROADCAST_STORM).unwrap();
    let before = lab.stats("s0").tx_packets;
    let started = Instant::now();
    let out = in_ns_ok(
        &flooder.ns,
        &["python3", &script.to_string_lossy(), "200000", "5"],
    );
    let elapsed = started.elapsed().as_secs_f64();
    let sent: u64 = stdout(&out).trim().parse().unwrap_or(0);
    // Let yardd drain what is still queued.
    sleep(Duration::from_millis(500));
    let elapsed = elapsed + 0.5;
    let got = lab.stats("s0").tx_packets - before;
    let fl = lab.stats("fl");
    let limited = fl.drops.get("flood-limit").copied().unwrap_or(0);
    let bound = (BURST + PER_SEC * elapsed) / (PORTS - 1) as f64;
    println!(
        "storm: {sent} broadcasts sent, yardd read {}, {limited} over the limit; a bystander got {got} (limit allows {bound:.0} in {elapsed:.1} s)",
        fl.rx_packets
    );
    assert!(
        limited > 0,
        "no flood-limit drops on the flooding port: {fl:?}"
    );
    assert!(
        (got as f64) <= bound + 10.0,
        "a bystander was sent {got} of the storm's broadcasts, more than the flood limit allows ({bound:.0})"
    );
    // The other network works, and so does the storm's own network once
    // the storm is over (the bucket refills).
    lab.ping_ok(&pa, pb.ip);
    sleep(Duration::from_secs(1));
    lab.ping_ok(&flooder, "10.95.0.10".parse().unwrap());
}

#[test]
fn after_a_restart_neighbor_discovery_finds_every_container_again() {
    if !require(&["ping"]) {
        return;
    }
    let mut keep = Vec::new();
    let mut lab = Lab::new();
    lab.ctl_ok(&["net", "create", "v6r", "--subnet", "10.97.0.0/24"]);
    let a = ipv6_tap(&lab, &mut keep, "a", "v6r", "10.97.0.2/24");
    let b = ipv6_tap(&lab, &mut keep, "b", "v6r", "10.97.0.3/24");
    wait_dad(&a);
    wait_dad(&b);
    sleep(SETTLE);
    ping6_ok(&lab, &a, &format!("{}%{}", link_local(&b), a.ifname));
    // A new yardd knows no memberships: it asks each port it brings back,
    // and b's answer (or, for a TAP made again, its DAD) makes b's
    // solicited-node group known again before a needs it.
    lab.stop(nix::sys::signal::Signal::SIGTERM);
    lab.start();
    lab.wait_ports_up(Duration::from_secs(15));
    wait_dad(&a);
    wait_dad(&b);
    sleep(SETTLE);
    // a must ask for b again: nothing cached.
    in_ns_ok(&a.ns, &["ip", "-6", "neigh", "flush", "dev", &a.ifname]);
    ping6_ok(&lab, &a, &format!("{}%{}", link_local(&b), a.ifname));
    let mdb = lab.ctl_json(&["mdb", "show", "--net", "v6r"]);
    let ports: Vec<&str> = mdb
        .as_array()
        .expect("mdb show --json prints an array")
        .iter()
        .filter(|e| {
            e["group"]
                .as_str()
                .is_some_and(|g| g.starts_with("ff02::1:ff"))
        })
        .filter_map(|e| e["port"].as_str())
        .collect();
    assert!(
        ports.contains(&"a") && ports.contains(&"b"),
        "both solicited-node groups known after the restart: {mdb:#}"
    );
}
