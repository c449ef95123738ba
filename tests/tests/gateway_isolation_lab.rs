//! Gateway isolation labs against the real yardd: a container cannot send
//! through the gateway with another network's source address (the gateway
//! drops it as `gw-bad-source`, so an `--internal` container gets no way
//! out and no reply), the outside cannot pose as an inside address to a
//! published port, and two containers of a `--no-icc` network cannot
//! reach each other by routing through the gateway (`gw-icc`), while a
//! network with icc on still can.
//!
//! The exfiltration lab builds the shape described in `yard_tests::nat`
//! (outside namespace 10.1.0.1 ─ uplink 10.1.0.2 ─ network web
//! 172.31.0.0/16) plus an internal network. Forged packets are written with
//! a raw socket from python's standard library. Needs root; without it each
//! test prints why and returns.

use std::net::Ipv4Addr;
use std::time::Duration;

use yard_ctl::api::{ConntrackEntry, ConntrackStats};
use yard_tests::cmd::{describe, in_ns, in_ns_ok};
use yard_tests::lab::Container;
use yard_tests::nat::{Background, NatLab, OUTSIDE_IP, SERVER_SECS};
use yard_tests::{require, Lab};

/// The outside's UDP server: prints every datagram's payload and sender,
/// and answers each with `reply` to its sender.
const OUTSIDE_SERVER: &str = "import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('0.0.0.0', int(sys.argv[1])))
while True:
    data, peer = s.recvfrom(65535)
    print('%s from %s:%d' % (data.decode(errors='replace'), peer[0], peer[1]), flush=True)
    s.sendto(b'reply', peer)
";

/// A UDP listener that prints whatever reaches it, with its sender.
const LISTENER: &str = "import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
while True:
    data, peer = s.recvfrom(65535)
    print('%s from %s:%d' % (data.decode(errors='replace'), peer[0], peer[1]), flush=True)
";

/// Writes `count` UDP datagrams from SRC:SPORT to DST:DPORT with payload
/// PAYLOAD-i through a raw socket (the kernel fills in the IP checksum and
/// length; the UDP checksum is left 0, which IPv4 allows): the source is
/// whatever the caller says, as an attacker's would be.
const FORGE_UDP: &str = "import socket, struct, sys, time
src, sport, dst, dport, payload, count = sys.argv[1:7]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
for i in range(int(count)):
    data = ('%s-%d' % (payload, i)).encode()
    udp = struct.pack('!HHHH', int(sport), int(dport), 8 + len(data), 0) + data
    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    s.sendto(ip + udp, (dst, 0))
    time.sleep(0.05)
";

/// Sends `count` ordinary UDP datagrams from `from` to `to:port`, from
/// source port `sport`, with payload PAYLOAD-i.
const SEND_UDP: &str = "import socket, sys, time
dst, dport, sport, payload, count = sys.argv[1:6]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('0.0.0.0', int(sport)))
for i in range(int(count)):
    s.sendto(('%s-%d' % (payload, i)).encode(), (dst, int(dport)))
    time.sleep(0.05)
";

fn run_python(ns: &str, script: &str, args: &[&str]) {
    let mut argv = vec!["timeout", "20", "python3", "-c", script];
    argv.extend_from_slice(args);
    in_ns_ok(ns, &argv);
}

/// A gateway counter from `yardctl conntrack stats`.
fn gateway_counter(lab: &Lab, name: &str) -> u64 {
    let stats: ConntrackStats = lab.ctl_parse(&["conntrack", "stats"]);
    stats.counters.get(name).copied().unwrap_or(0)
}

/// A background python listener in `c`'s namespace on `port`.
fn listen(c: &Container, port: u16) -> Background {
    let bg = Background::spawn(
        &c.ns,
        SERVER_SECS,
        &[
            "python3",
            "-u",
            "-c",
            LISTENER,
            &c.ip.to_string(),
            &port.to_string(),
        ],
    );
    yard_tests::nat::wait_udp_bound(&c.ns, port);
    bg
}

#[test]
fn a_spoofed_source_cannot_exfiltrate_from_an_internal_network() {
    if !require(&["python3", "ss"]) {
        return;
    }
    let mut lab = NatLab::new();
    lab.ctl_ok(&[
        "net",
        "create",
        "secret",
        "--subnet",
        "10.77.0.0/24",
        "--internal",
    ]);
    let x = lab.tap("x", "secret", "10.77.0.2/24", &[]);
    // A is a veth port, which yardd does not configure: no per-port address
    // check stands in front of the gateway, so the gateway's own source
    // check is what this test exercises.
    let a = lab.veth("a", "web", "172.31.0.2/16");
    in_ns_ok(
        &a.ns,
        &["ip", "route", "add", "default", "via", "172.31.0.1"],
    );

    let server = Background::spawn(
        &lab.outside,
        SERVER_SECS,
        &["python3", "-u", "-c", OUTSIDE_SERVER, "9999"],
    );
    yard_tests::nat::wait_udp_bound(&lab.outside, 9999);
    // X listens where the outside's answer to the forged datagrams would
    // land: its own address and the forged source port.
    let x_inbox = listen(&x, 5353);

    // The way out works for A's own address: the control.
    run_python(
        &a.ns,
        SEND_UDP,
        &[&OUTSIDE_IP.to_string(), "9999", "4000", "control", "3"],
    );
    let control_arrived =
        server.wait_stdout(Duration::from_secs(5), |out| out.contains("control-"));
    assert!(
        control_arrived,
        "A's own datagrams did not reach the outside:\n{}\n{}",
        server.describe(),
        lab.context()
    );

    // A forges X's address.
    let before = gateway_counter(&lab, "gw-bad-source");
    run_python(
        &a.ns,
        FORGE_UDP,
        &[
            &x.ip.to_string(),
            "5353",
            &OUTSIDE_IP.to_string(),
            "9999",
            "exfil",
            "10",
        ],
    );
    // Nothing reaches the outside (given the time the control took and
    // more), and nothing comes back to X...
    let leaked = server.wait_stdout(Duration::from_secs(3), |out| out.contains("exfil"));
    assert!(
        !leaked,
        "datagrams with X's forged source reached the outside:\n{}\n{}",
        server.describe(),
        lab.context()
    );
    assert!(
        x_inbox.stdout().trim().is_empty(),
        "X received an answer to datagrams it never sent:\n{}\n{}",
        x_inbox.describe(),
        lab.context()
    );
    // ...because the gateway dropped every forged datagram, and counted it.
    let dropped = gateway_counter(&lab, "gw-bad-source") - before;
    assert!(
        dropped >= 10,
        "gw-bad-source counted {dropped} of the 10 forged datagrams:\n{}",
        lab.context()
    );
    let tracked = lab.conntrack(&["--addr", &x.ip.to_string()]);
    assert!(
        tracked.is_empty(),
        "connections were tracked for X's forged address: {tracked:#?}"
    );
    // X itself still has no way out (it is internal), as before.
    let out = in_ns(
        &x.ns,
        &[
            "ping",
            "-n",
            "-c",
            "2",
            "-W",
            "1",
            "-w",
            "3",
            &OUTSIDE_IP.to_string(),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "X reached the outside:\n{}",
        describe("ping from x", &out)
    );
}

#[test]
fn the_outside_cannot_pose_as_an_inside_address() {
    if !require(&["python3", "ss"]) {
        return;
    }
    let mut lab = NatLab::new();
    let c1 = lab.tap("c1", "web", "172.31.0.2/16", &[]);
    lab.ctl_ok(&["publish", "add", "5353:c1:5353/udp"]);
    let inbox = listen(&c1, 5353);
    let uplink = yard_tests::nat::UPLINK_IP.to_string();
    // The control: the outside's own datagram reaches the published port.
    run_python(
        &lab.outside,
        SEND_UDP,
        &[&uplink, "5353", "4000", "real", "2"],
    );
    let arrived = inbox.wait_stdout(Duration::from_secs(5), |out| {
        out.contains(&format!("real-0 from {OUTSIDE_IP}:4000"))
    });
    assert!(
        arrived,
        "the outside could not reach the published port:\n{}\n{}",
        inbox.describe(),
        lab.context()
    );
    // The outside forges the source of c1's neighbour on web.
    let before = gateway_counter(&lab, "gw-bad-source");
    run_python(
        &lab.outside,
        FORGE_UDP,
        &["172.31.0.3", "4001", &uplink, "5353", "forged", "5"],
    );
    let leaked = inbox.wait_stdout(Duration::from_secs(3), |out| out.contains("forged"));
    assert!(
        !leaked,
        "a datagram from the uplink posing as 172.31.0.3 reached c1:\n{}\n{}",
        inbox.describe(),
        lab.context()
    );
    let dropped = gateway_counter(&lab, "gw-bad-source") - before;
    assert!(
        dropped >= 5,
        "gw-bad-source counted {dropped} of the 5 forged datagrams:\n{}",
        lab.context()
    );
}

/// Routes `to` through the network's gateway in `c`'s namespace, as a
/// container can do without any privilege beyond its own namespace.
fn route_via_gateway(c: &Container, to: Ipv4Addr, gateway: &str) {
    in_ns_ok(
        &c.ns,
        &["ip", "route", "add", &format!("{to}/32"), "via", gateway],
    );
}

#[test]
fn no_icc_cannot_be_bypassed_by_routing_through_the_gateway() {
    if !require(&["ping", "python3", "ss"]) {
        return;
    }
    let mut lab = Lab::new();
    lab.ctl_ok(&[
        "net",
        "create",
        "quiet",
        "--subnet",
        "10.78.0.0/24",
        "--no-icc",
    ]);
    let q1 = lab.tap("q1", "quiet", "10.78.0.2/24", &[]);
    let q2 = lab.tap("q2", "quiet", "10.78.0.3/24", &[]);
    // The control: on a network with icc on, the same routes work, so a
    // refusal below is the icc check and not a path that never worked.
    lab.ctl_ok(&["net", "create", "chatty", "--subnet", "10.79.0.0/24"]);
    let c1 = lab.tap("c1", "chatty", "10.79.0.2/24", &[]);
    let c2 = lab.tap("c2", "chatty", "10.79.0.3/24", &[]);
    route_via_gateway(&c1, c2.ip, "10.79.0.1");
    route_via_gateway(&c2, c1.ip, "10.79.0.1");
    lab.ping_ok(&c1, c2.ip);
    lab.ping_ok(&c2, c1.ip);

    // Switched, they are kept apart already.
    lab.ping_fails(&q1, q2.ip, &[]);
    // Routed through the gateway, both ways, they must be too.
    route_via_gateway(&q1, q2.ip, "10.78.0.1");
    route_via_gateway(&q2, q1.ip, "10.78.0.1");
    // Each way and each protocol is refused by the gateway, and counted.
    let refusals = |lab: &Lab, what: &str, before: u64| {
        let now = gateway_counter(lab, "gw-icc");
        assert!(
            now > before,
            "{what}: gw-icc did not count it:\n{}",
            describe("yardctl conntrack stats", &lab.ctl(&["conntrack", "stats"]))
        );
        now
    };
    let mut count = gateway_counter(&lab, "gw-icc");
    lab.ping_fails(&q1, q2.ip, &[]);
    count = refusals(&lab, "ping q1 -> q2", count);
    lab.ping_fails(&q2, q1.ip, &[]);
    count = refusals(&lab, "ping q2 -> q1", count);
    let q2_inbox = listen(&q2, 7000);
    let q1_inbox = listen(&q1, 7000);
    run_python(
        &q1.ns,
        SEND_UDP,
        &[&q2.ip.to_string(), "7000", "4001", "from-q1", "5"],
    );
    count = refusals(&lab, "UDP q1 -> q2", count);
    run_python(
        &q2.ns,
        SEND_UDP,
        &[&q1.ip.to_string(), "7000", "4002", "from-q2", "5"],
    );
    refusals(&lab, "UDP q2 -> q1", count);
    std::thread::sleep(Duration::from_secs(1));
    for (inbox, who) in [(&q2_inbox, "q2"), (&q1_inbox, "q1")] {
        assert!(
            inbox.stdout().trim().is_empty(),
            "{who} received datagrams routed through the gateway on a --no-icc network:\n{}",
            inbox.describe()
        );
    }
    let tracked: Vec<ConntrackEntry> =
        lab.ctl_parse(&["conntrack", "ls", "--addr", &q1.ip.to_string()]);
    assert!(
        tracked.is_empty(),
        "connections were tracked between the --no-icc network's hosts: {tracked:#?}"
    );
}
