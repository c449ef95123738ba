//! The host uplink (`uplink add NAME --host`): yardd runs inside a "host"
//! namespace the test makes, and the containers' flows to the outside
//! leave through yardd's own host sockets there. The outside is one more
//! namespace joined to the host namespace by a veth (host 10.77.0.1/24,
//! outside 10.77.0.2/24), whose servers stand for the Internet. Nothing
//! reaches any network but these namespaces': yardd's sockets live in the
//! host namespace, and every destination is an address the test assigned.
//!
//! ```text
//!  container ns ── TAP ── yardd (host ns, 10.77.0.1) ── veth ── outside ns (10.77.0.2)
//!  172.30.0.2/16 on yard0                 host sockets          socat servers
//! ```
//!
//! Published ports listen in the host namespace: an outside client, a
//! client on the host's loopback and another container (hairpin) each
//! reach a container's server, which names the address it saw. A network's
//! `--host-loopback` address reaches a server bound to the host namespace's
//! 127.0.0.1.
//!
//! Needs root; without it each test prints why and returns.

use std::process::{Child, Stdio};
use std::time::Duration;

use yard_tests::cmd::{describe, end_child, in_ns_ok, output, poll, run_ok, stdout, timed};
use yard_tests::hosts::Host;
use yard_tests::netns::{Netns, Veth};
use yard_tests::{require, Container};

/// The host namespace's address on the link to the outside.
const HOST_IP: &str = "10.77.0.1";
/// The outside namespace's address.
const OUTSIDE_IP: &str = "10.77.0.2";
/// The UDP echo server's port in the outside namespace.
const UDP_ECHO_PORT: u16 = 7777;
/// The size of the TCP transfers, in MiB.
const TRANSFER_MIB: u32 = 200;
/// TCP connections open at once through the relay (the issue's figure).
const CONCURRENT: usize = 2000;

/// The host (yardd in its namespace, with a host uplink), the outside
/// namespace joined to it, and a container on yard0.
struct HostLab {
    host: Host,
    outside: Netns,
    _link: Veth,
    container: Container,
}

impl HostLab {
    fn new() -> HostLab {
        HostLab::with_host(Host::new(1))
    }

    /// The lab with yardd's `/etc/resolv.conf` naming the outside as its
    /// resolver.
    fn with_outside_resolver() -> HostLab {
        let resolv = format!("nameserver {OUTSIDE_IP}\n");
        HostLab::with_host(Host::new_with_etc(1, &[], &[("resolv.conf", &resolv)]))
    }

    /// The lab on a first start of yardd with its default uplink: no
    /// `uplink add` at all.
    fn out_of_the_box() -> HostLab {
        HostLab::build(Host::new_with(1, &["--default-uplink", "host"]), false)
    }

    fn with_host(host: Host) -> HostLab {
        HostLab::build(host, true)
    }

    fn build(mut host: Host, add_uplink: bool) -> HostLab {
        let outside = Netns::new();
        outside.disable_ipv6();
        let link = Veth::new();
        for (end, ns, cidr) in [
            (link.host(), host.ns(), format!("{HOST_IP}/24")),
            (link.peer(), outside.name(), format!("{OUTSIDE_IP}/24")),
        ] {
            run_ok(&["ip", "link", "set", end, "netns", ns]);
            run_ok(&["ip", "-n", ns, "addr", "add", &cidr, "dev", end]);
            run_ok(&["ip", "-n", ns, "link", "set", end, "up"]);
        }
        if add_uplink {
            host.ctl_ok(&["uplink", "add", "host0", "--host"]);
        }
        let container = host.tap("c1", "yard0", "172.30.0.2/16", &[]);
        HostLab {
            host,
            outside,
            _link: link,
            container,
        }
    }

    /// Sets `net.ipv4.ping_group_range` in the host namespace, where
    /// yardd's ping sockets are made.
    fn ping_group_range(&self, range: &str) {
        in_ns_ok(
            self.host.ns(),
            &[
                "sysctl",
                "-qw",
                &format!("net.ipv4.ping_group_range={range}"),
            ],
        );
    }

    fn conntrack(&self) -> Vec<serde_json::Value> {
        let listing = self.host.ctl_json(&["conntrack", "ls"]);
        listing["entries"]
            .as_array()
            .or_else(|| listing.as_array())
            .cloned()
            .unwrap_or_default()
    }

    /// Conntrack's listing and counters and yardd's log, for a failure.
    fn describe(&self) -> String {
        let ls = self.host.ctl(&["conntrack", "ls"]);
        let stats = self.host.ctl(&["conntrack", "stats"]);
        format!(
            "{}\n{}\n{}",
            describe("yardctl conntrack ls", &ls),
            describe("yardctl conntrack stats", &stats),
            self.host.log_tail()
        )
    }

    fn counter(&self, name: &str) -> u64 {
        let stats = self.host.ctl_json(&["conntrack", "stats"]);
        stats["counters"][name.replace('-', "_")]
            .as_u64()
            .unwrap_or(0)
    }
}

/// A server running in a namespace, ended by its pid on drop.
struct Server(Option<Child>);

impl Server {
    /// `socat` with `args` in `ns`, bounded by 120 s.
    fn socat(ns: &str, args: &[&str]) -> Server {
        let child = timed(120, "ip")
            .args(["netns", "exec", ns, "socat"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn socat");
        Server(Some(child))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = self.0.take() {
            end_child(child, Duration::from_secs(5));
        }
    }
}

/// Sends `message` from the container to the outside's UDP echo server and
/// returns what came back (empty if nothing did within 3 s).
fn udp_echo(container: &Container, message: &str) -> String {
    let target = format!("UDP4:{OUTSIDE_IP}:{UDP_ECHO_PORT}");
    let script = format!("echo {message} | socat -T3 - {target}");
    let out = output(timed(10, "ip").args(["netns", "exec", &container.ns, "sh", "-c", &script]));
    stdout(&out).trim().to_string()
}

#[test]
fn udp_reaches_the_outside_through_a_host_socket_listed_with_both_ends() {
    if !require(&["socat"]) {
        return;
    }
    let lab = HostLab::new();
    let uplinks = stdout(&lab.host.ctl_ok(&["uplink", "ls"]));
    assert!(
        uplinks.contains("host0") && uplinks.contains("host"),
        "{uplinks}"
    );
    let listen = format!("UDP4-RECVFROM:{UDP_ECHO_PORT},bind={OUTSIDE_IP},fork");
    let _echo = Server::socat(lab.outside.name(), &[&listen, "EXEC:cat"]);
    // The server may need a moment to bind: try a few times, bounded.
    let mut answer = String::new();
    let answered = poll(Duration::from_secs(15), Duration::from_millis(200), || {
        answer = udp_echo(&lab.container, "hello-through-the-host");
        answer == "hello-through-the-host"
    });
    assert!(
        answered,
        "no UDP echo through the host uplink (got {answer:?})\n{}",
        lab.describe()
    );
    // One conntrack entry: the container's tuple, untranslated, and the
    // host socket's two ends (the host namespace's address toward the
    // outside, and the server).
    let entries = lab.conntrack();
    let relayed: Vec<&serde_json::Value> = entries
        .iter()
        .filter(|e| e["proto"] == "udp" && e["original"]["dport"] == UDP_ECHO_PORT)
        .collect();
    assert!(!relayed.is_empty(), "no relayed UDP entry: {entries:?}");
    let e = relayed[0];
    assert_eq!(e["original"]["src"], "172.30.0.2", "{e}");
    assert_eq!(e["original"]["dst"], OUTSIDE_IP, "{e}");
    assert!(e["snat"].is_null(), "{e}");
    let host_end = e["host"].as_str().unwrap_or_default();
    assert!(
        host_end.starts_with(&format!("{HOST_IP}:"))
            && host_end.ends_with(&format!("->{OUTSIDE_IP}:{UDP_ECHO_PORT}")),
        "{e}"
    );
    let table = stdout(&lab.host.ctl_ok(&["conntrack", "ls"]));
    assert!(table.contains(&format!("host {host_end}")), "{table}");
    assert!(lab.counter("relay-sockets-opened") >= 1);
    // Flushed, the flow's socket is closed and a new datagram opens a new one.
    lab.host.ctl_ok(&["conntrack", "flush"]);
    let answered = poll(Duration::from_secs(15), Duration::from_millis(200), || {
        udp_echo(&lab.container, "again") == "again"
    });
    assert!(
        answered,
        "no UDP echo after a flush\n{}",
        lab.host.log_tail()
    );
    // Nothing listens on the next port: the outside's port unreachable
    // reaches the host socket, and the container hears it too.
    let script = format!(
        "echo x | socat -t3 -T3 - UDP4:{OUTSIDE_IP}:{}",
        UDP_ECHO_PORT + 1
    );
    let out = container_sh(&lab.container, 10, &script);
    let err = yard_tests::cmd::stderr(&out);
    assert!(
        !out.status.success() && err.contains("Connection refused"),
        "{}\n{}",
        describe("UDP to a closed port", &out),
        lab.describe()
    );
}

#[test]
fn icmp_echo_goes_through_ping_sockets_where_the_group_range_allows() {
    if !require(&["socat"]) {
        return;
    }
    let lab = HostLab::new();
    lab.ping_group_range("0 2147483647");
    let ping = |count: &str| {
        lab.container
            .exec(&["ping", "-c", count, "-W", "2", "-i", "0.2", OUTSIDE_IP])
    };
    let out = ping("3");
    assert!(
        out.status.success(),
        "{}\n{}",
        describe("ping through the host uplink", &out),
        lab.host.log_tail()
    );
    let entries = lab.conntrack();
    assert!(
        entries
            .iter()
            .any(|e| e["proto"] == "icmp" && e["original"]["dst"] == OUTSIDE_IP),
        "no relayed ICMP entry: {entries:?}"
    );

    // Where the range leaves yardd's group out, no echo goes and the
    // reason is counted.
    lab.host.ctl_ok(&["conntrack", "flush"]);
    lab.ping_group_range("1 0");
    let before = lab.counter("relay-icmp-unavailable");
    let out = ping("1");
    assert!(!out.status.success(), "{}", describe("ping", &out));
    assert!(lab.counter("relay-icmp-unavailable") > before);
}

#[test]
fn internal_networks_are_not_relayed() {
    if !require(&["socat"]) {
        return;
    }
    let mut lab = HostLab::new();
    lab.host.ctl_ok(&[
        "net",
        "create",
        "inner",
        "--subnet",
        "10.88.0.0/24",
        "--internal",
    ]);
    let inner = lab.host.tap("i1", "inner", "10.88.0.2/24", &[]);
    let listen = format!("UDP4-RECVFROM:{UDP_ECHO_PORT},bind={OUTSIDE_IP},fork");
    let _echo = Server::socat(lab.outside.name(), &[&listen, "EXEC:cat"]);
    // The yard0 container gets through (the server is up) ...
    assert!(poll(
        Duration::from_secs(15),
        Duration::from_millis(200),
        || { udp_echo(&lab.container, "open") == "open" }
    ));
    // ... the internal one does not, and the refusal is counted.
    assert_eq!(udp_echo(&inner, "closed"), "");
    assert!(lab.counter("gw-internal-network") >= 1);
}

/// A temporary directory for the transfers' files.
fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("yard-hostup-")
        .tempdir()
        .expect("a temporary directory")
}

/// Runs `script` in the container's namespace with `sh -c`, bounded by
/// `secs`.
fn container_sh(container: &Container, secs: u32, script: &str) -> std::process::Output {
    output(timed(secs, "ip").args(["netns", "exec", &container.ns, "sh", "-c", script]))
}

/// Waits (at most 10 s) until something listens on TCP `port` in `ns`.
fn wait_listening(ns: &str, port: u16) {
    yard_tests::lab::wait_listening(ns, port);
}

#[test]
fn tcp_carries_data_both_ways_whole() {
    if !require(&["socat", "sha256sum"]) {
        return;
    }
    transfer_both_ways(&HostLab::new(), TRANSFER_MIB);
}

#[test]
fn tcp_is_relayed_when_another_datapath_thread_reads_the_container() {
    if !require(&["socat", "sha256sum"]) {
        return;
    }
    // With two threads the container's port is read by the second (the
    // first counts as loaded by the gateway), which hands the gateway's
    // frames to the first; the relay's answers come back through the first.
    let lab = HostLab::with_host(Host::new_with(1, &["--threads", "2"]));
    transfer_both_ways(&lab, 20);
}

/// Sends a `mib` MiB file from the container to the outside and back over
/// TCP through the relay, each checked by sha256, and finds the first
/// connection in `conntrack ls` with both its ends.
fn transfer_both_ways(lab: &HostLab, mib: u32) {
    let dir = scratch();
    let source = dir.path().join("source.bin");
    yard_tests::hosts::random_file(&source, mib);
    let want = yard_tests::lab::sha256(&source);

    // Container → outside.
    let received = dir.path().join("at-outside.bin");
    let sink = format!("OPEN:{},creat,trunc", received.display());
    let server = Server::socat(
        lab.outside.name(),
        &[
            "-u",
            &format!("TCP-LISTEN:9000,bind={OUTSIDE_IP},reuseaddr"),
            &sink,
        ],
    );
    wait_listening(lab.outside.name(), 9000);
    let sent = container_sh(
        &lab.container,
        120,
        &format!("socat -u FILE:{} TCP:{OUTSIDE_IP}:9000", source.display()),
    );
    assert!(
        sent.status.success(),
        "{}\n{}",
        describe("socat to the outside", &sent),
        lab.describe()
    );
    let done = poll(Duration::from_secs(30), Duration::from_millis(200), || {
        std::fs::metadata(&received).is_ok_and(|m| m.len() == u64::from(mib) << 20)
    });
    assert!(
        done,
        "the outside did not receive it all\n{}",
        lab.describe()
    );
    assert_eq!(
        yard_tests::lab::sha256(&received),
        want,
        "altered on the way out"
    );
    drop(server);
    // Listed with both ends: the container's tuple and the host socket's.
    let entries = lab.conntrack();
    let relayed = entries
        .iter()
        .find(|e| e["proto"] == "tcp" && e["original"]["dport"] == 9000)
        .unwrap_or_else(|| panic!("no relayed TCP entry: {entries:?}"));
    assert_eq!(relayed["original"]["src"], "172.30.0.2", "{relayed}");
    let host_end = relayed["host"].as_str().unwrap_or_default();
    assert!(
        host_end.starts_with(&format!("{HOST_IP}:"))
            && host_end.ends_with(&format!("->{OUTSIDE_IP}:9000")),
        "{relayed}"
    );

    // Outside → container.
    let fetched = dir.path().join("at-container.bin");
    let listen = format!("TCP-LISTEN:9001,bind={OUTSIDE_IP},reuseaddr");
    let _server = Server::socat(
        lab.outside.name(),
        &["-u", &format!("FILE:{}", source.display()), &listen],
    );
    wait_listening(lab.outside.name(), 9001);
    let got = container_sh(
        &lab.container,
        120,
        &format!(
            "socat -u TCP:{OUTSIDE_IP}:9001 OPEN:{},creat,trunc",
            fetched.display()
        ),
    );
    assert!(
        got.status.success(),
        "{}\n{}",
        describe("socat from the outside", &got),
        lab.describe()
    );
    let len = std::fs::metadata(&fetched).map(|m| m.len()).unwrap_or(0);
    assert_eq!(len, u64::from(mib) << 20, "{}", lab.describe());
    assert_eq!(
        yard_tests::lab::sha256(&fetched),
        want,
        "altered on the way in"
    );
}

#[test]
fn tcp_half_close_and_refusal_reach_the_other_side() {
    if !require(&["socat"]) {
        return;
    }
    let lab = HostLab::new();
    // The server answers only once it has read to end of file: the
    // container's FIN must reach it as a shutdown, and the answer must
    // still come back over the half-open connection.
    let listen = format!("TCP-LISTEN:9002,bind={OUTSIDE_IP},reuseaddr");
    let _server = Server::socat(lab.outside.name(), &[&listen, "SYSTEM:wc -c"]);
    wait_listening(lab.outside.name(), 9002);
    let out = container_sh(
        &lab.container,
        30,
        &format!("printf 1234567 | socat -t10 - TCP:{OUTSIDE_IP}:9002"),
    );
    assert!(
        out.status.success() && stdout(&out).trim() == "7",
        "{}\n{}",
        describe("half-close through the host uplink", &out),
        lab.describe()
    );
    // Nothing listens on 9999: the host's connect is refused, and so is
    // the container's.
    let out = container_sh(
        &lab.container,
        30,
        &format!("socat - TCP:{OUTSIDE_IP}:9999 </dev/null"),
    );
    let err = yard_tests::cmd::stderr(&out);
    assert!(
        !out.status.success() && err.contains("Connection refused"),
        "{}\n{}",
        describe("connect to a closed port", &out),
        lab.describe()
    );
    assert!(lab.counter("relay-tcp-refused") >= 1);
    // The connection is listed with both ends while it lived; the open
    // count is back to zero once both are done.
    assert!(poll(
        Duration::from_secs(10),
        Duration::from_millis(200),
        || { lab.counter("relay-tcp-open") == 0 }
    ));
}

#[test]
fn many_concurrent_tcp_connections_are_relayed() {
    if !require(&["socat", "python3"]) {
        return;
    }
    let lab = HostLab::new();
    let server = format!(
        r#"
import asyncio
async def echo(r, w):
    data = await r.read(100)
    w.write(data)
    await w.drain()
    w.close()
async def main():
    s = await asyncio.start_server(echo, "{OUTSIDE_IP}", 9003, backlog=1024)
    async with s:
        await asyncio.sleep(120)
asyncio.run(main())
"#
    );
    let child = timed(130, "ip")
        .args([
            "netns",
            "exec",
            lab.outside.name(),
            "python3",
            "-c",
            &server,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the python server");
    let _server = Server(Some(child));
    wait_listening(lab.outside.name(), 9003);
    // Every connection is open before any sends: all are relayed at once.
    let client = format!(
        r#"
import asyncio
async def talk(i, conn):
    r, w = conn
    msg = ("c%d" % i).encode()
    w.write(msg)
    await w.drain()
    got = await r.read(100)
    w.close()
    return got == msg
async def main():
    conns = await asyncio.wait_for(asyncio.gather(
        *(asyncio.open_connection("{OUTSIDE_IP}", 9003) for _ in range({CONCURRENT}))), 60)
    results = await asyncio.wait_for(
        asyncio.gather(*(talk(i, c) for i, c in enumerate(conns)), return_exceptions=True), 60)
    print(sum(1 for r in results if r is True))
asyncio.run(main())
"#
    );
    let out = output(timed(90, "ip").args([
        "netns",
        "exec",
        &lab.container.ns,
        "python3",
        "-c",
        &client,
    ]));
    assert_eq!(
        stdout(&out).trim(),
        CONCURRENT.to_string(),
        "{}\n{}",
        describe("concurrent connections", &out),
        lab.describe()
    );
}

#[test]
fn the_gateway_answers_dns_through_the_hosts_resolver() {
    if !require(&["socat", "python3"]) {
        return;
    }
    let lab = HostLab::with_outside_resolver();
    let child = timed(120, "ip")
        .args([
            "netns",
            "exec",
            lab.outside.name(),
            "python3",
            "-c",
            yard_tests::dns::SERVER,
            OUTSIDE_IP,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the DNS server");
    let _server = Server(Some(child));
    wait_listening(lab.outside.name(), 53);
    let mut answer = String::new();
    let answered = poll(Duration::from_secs(15), Duration::from_millis(300), || {
        let out = output(timed(15, "ip").args([
            "netns",
            "exec",
            &lab.container.ns,
            "python3",
            "-c",
            yard_tests::dns::CLIENT,
            "172.30.0.1",
        ]));
        answer = format!("{}{}", stdout(&out), yard_tests::cmd::stderr(&out));
        out.status.success()
    });
    assert!(
        answered,
        "no DNS answer from the gateway: {answer}\n{}",
        lab.describe()
    );
    // Answered by the outside's server, from the gateway's address.
    assert!(
        answer.contains("udp 10.1.2.3 172.30.0.1 53") && answer.contains("tcp 10.1.2.3"),
        "{answer}"
    );
    // Tracked as a translation to the resolver, relayed by a host socket.
    let entries = lab.conntrack();
    assert!(
        entries.iter().any(|e| e["proto"] == "udp"
            && e["original"]["dst"] == "172.30.0.1"
            && e["dnat"] == format!("{OUTSIDE_IP}:53")
            && e["host"]
                .as_str()
                .is_some_and(|h| h.ends_with(&format!("->{OUTSIDE_IP}:53")))),
        "{entries:?}"
    );
}

#[test]
fn yard0_reaches_the_outside_out_of_the_box_until_an_interface_uplink_replaces_it() {
    if !require(&["socat"]) {
        return;
    }
    let lab = HostLab::out_of_the_box();
    let uplinks = stdout(&lab.host.ctl_ok(&["uplink", "ls"]));
    assert!(
        uplinks
            .lines()
            .any(|l| l.starts_with("host ") && l.contains(" host ")),
        "{uplinks}"
    );
    let listen = format!("UDP4-RECVFROM:{UDP_ECHO_PORT},bind={OUTSIDE_IP},fork");
    let _echo = Server::socat(lab.outside.name(), &[&listen, "EXEC:cat"]);
    assert!(
        poll(Duration::from_secs(15), Duration::from_millis(200), || {
            udp_echo(&lab.container, "first-start") == "first-start"
        }),
        "no UDP echo through the default uplink\n{}",
        lab.describe()
    );
    // The host uplink is in the state: a restarted yardd has it again.
    let mut lab = lab;
    lab.host.restart();
    assert!(
        poll(Duration::from_secs(15), Duration::from_millis(200), || {
            udp_echo(&lab.container, "after-restart") == "after-restart"
        }),
        "no UDP echo through the host uplink after a restart\n{}",
        lab.describe()
    );
    // Kernel-level forwarding where the user asks for it: an --iface
    // uplink replaces the host uplink (a veth pair inside the host
    // namespace, its far end unaddressed: nothing is reached through it).
    let ns = lab.host.ns();
    in_ns_ok(
        ns,
        &[
            "ip", "link", "add", "upa", "type", "veth", "peer", "name", "upb",
        ],
    );
    in_ns_ok(ns, &["ip", "link", "set", "upa", "up"]);
    in_ns_ok(ns, &["ip", "link", "set", "upb", "up"]);
    lab.host.ctl_ok(&[
        "uplink",
        "add",
        "up0",
        "--iface",
        "upa",
        "--ip",
        "10.66.0.2/24",
    ]);
    let uplinks = stdout(&lab.host.ctl_ok(&["uplink", "ls"]));
    assert!(
        !uplinks.lines().any(|l| l.starts_with("host ")) && uplinks.contains("up0"),
        "{uplinks}"
    );
    assert_eq!(udp_echo(&lab.container, "replaced"), "");
    // And a second host uplink beside it is refused: one at a time.
    let err = lab.host.ctl_err(&["uplink", "add", "h2", "--host"]);
    assert!(err.contains("one uplink"), "{err}");
}

/// Runs `script` in namespace `ns` with `sh -c`, bounded by `secs`.
fn ns_sh(ns: &str, secs: u32, script: &str) -> std::process::Output {
    output(timed(secs, "ip").args(["netns", "exec", ns, "sh", "-c", script]))
}

/// A server in `container` on `proto` port 80 that answers each client
/// with the address it saw the client come from.
fn peer_address_server(container: &Container, proto: &str) -> Server {
    let listen = match proto {
        "tcp" => "TCP-LISTEN:80,reuseaddr,fork".to_string(),
        _ => "UDP-RECVFROM:80,fork".to_string(),
    };
    Server::socat(&container.ns, &[&listen, "SYSTEM:echo $SOCAT_PEERADDR"])
}

/// What a TCP (`tcp`) or UDP client in `ns` hears from `addr:port`.
fn ask(ns: &str, proto: &str, addr: &str, port: u16) -> std::process::Output {
    let script = match proto {
        "tcp" => format!("socat -T5 - TCP:{addr}:{port} </dev/null"),
        // UDP promises nothing: a datagram that meets a server still
        // starting (or between socat's forks) is lost, so ask up to three
        // times, as a UDP client would.
        _ => format!(
            "for i in 1 2 3; do r=$(echo hello | socat -T2 - UDP4:{addr}:{port}); \
             if [ -n \"$r\" ]; then echo \"$r\"; exit 0; fi; done; exit 1"
        ),
    };
    ns_sh(ns, 20, &script)
}

#[test]
fn published_ports_listen_on_the_host_and_show_the_clients_own_address() {
    if !require(&["socat"]) {
        return;
    }
    let mut lab = HostLab::new();
    let _tcp = peer_address_server(&lab.container, "tcp");
    let _udp = peer_address_server(&lab.container, "udp");
    wait_listening(&lab.container.ns, 80);
    lab.host.ctl_ok(&["publish", "add", "8080:c1:80/tcp"]);
    lab.host.ctl_ok(&["publish", "add", "8081:c1:80/udp"]);
    let listing = lab.host.ctl_json(&["publish", "ls"]);
    assert!(
        listing.to_string().contains("\"up\""),
        "published ports not up: {listing}"
    );

    // From the outside, through the host's own address: the container sees
    // the client itself, over TCP and UDP.
    for proto in ["tcp", "udp"] {
        let port = if proto == "tcp" { 8080 } else { 8081 };
        let out = ask(lab.outside.name(), proto, HOST_IP, port);
        assert_eq!(
            stdout(&out).trim(),
            OUTSIDE_IP,
            "{}\n{}",
            describe(&format!("{proto} client in the outside"), &out),
            lab.describe()
        );
    }
    let entries = lab.conntrack();
    assert!(
        entries
            .iter()
            .any(|e| e.to_string().contains(OUTSIDE_IP) && e.to_string().contains("8080")),
        "no published connection listed: {entries:?}"
    );

    // From the host's loopback: the client comes from the gateway address
    // (127.0.0.1 would be the container's own).
    let out = ask(lab.host.ns(), "tcp", "127.0.0.1", 8080);
    assert_eq!(
        stdout(&out).trim(),
        "172.30.0.1",
        "{}",
        describe("loopback client", &out)
    );

    // Hairpin: another container reaches the published port through the
    // host's address and is seen as coming from the host.
    let c2 = lab.host.tap("c2", "yard0", "172.30.0.3/16", &[]);
    for proto in ["tcp", "udp"] {
        let port = if proto == "tcp" { 8080 } else { 8081 };
        let out = ask(&c2.ns, proto, HOST_IP, port);
        assert_eq!(
            stdout(&out).trim(),
            HOST_IP,
            "{}\n{}",
            describe(&format!("hairpin {proto} from c2"), &out),
            lab.describe()
        );
    }

    // Bulk data both ways through the published port, checked by sha256:
    // into the container (the relay's TSO frames) and out of it.
    let dir = scratch();
    let file = dir.path().join("bulk.bin");
    yard_tests::hosts::random_file(&file, 50);
    let want = yard_tests::lab::sha256(&file);
    let _hash = Server::socat(
        &lab.container.ns,
        &["TCP-LISTEN:82,reuseaddr", "SYSTEM:sha256sum"],
    );
    let serve = format!("OPEN:{}", file.display());
    let _download = Server::socat(
        &lab.container.ns,
        &["-u", &serve, "TCP-LISTEN:83,reuseaddr"],
    );
    wait_listening(&lab.container.ns, 82);
    wait_listening(&lab.container.ns, 83);
    lab.host
        .ctl_ok(&["publish", "add", "8082-8083:c1:82-83/tcp"]);
    let up = ns_sh(
        lab.outside.name(),
        60,
        &format!("socat -t30 - TCP:{HOST_IP}:8082 <{}", file.display()),
    );
    assert!(
        stdout(&up).starts_with(&want),
        "{}\n{}",
        describe("50 MiB into the container", &up),
        lab.describe()
    );
    let down = ns_sh(
        lab.outside.name(),
        60,
        &format!("socat -u TCP:{HOST_IP}:8083 - | sha256sum"),
    );
    assert!(
        stdout(&down).starts_with(&want),
        "{}\n{}",
        describe("50 MiB out of the container", &down),
        lab.describe()
    );

    // Unpublished: the host socket closes, the client is refused.
    lab.host.ctl_ok(&["publish", "rm", "8080:c1:80/tcp"]);
    assert!(
        poll(Duration::from_secs(5), Duration::from_millis(100), || {
            !ask(lab.outside.name(), "tcp", HOST_IP, 8080)
                .status
                .success()
        }),
        "port 8080 still answers after publish rm"
    );
}

#[test]
fn a_published_port_the_host_already_uses_is_refused_and_nothing_is_kept() {
    if !require(&["socat"]) {
        return;
    }
    let lab = HostLab::new();
    let listen = "TCP-LISTEN:9090,reuseaddr".to_string();
    let _other = Server::socat(lab.host.ns(), &[&listen, "SYSTEM:echo other"]);
    wait_listening(lab.host.ns(), 9090);
    let out = lab.host.ctl(&["publish", "add", "9090:c1:80/tcp"]);
    let err = yard_tests::cmd::stderr(&out);
    assert!(
        !out.status.success() && err.contains("9090") && err.contains("another program listens"),
        "{}",
        describe("publish add on a port in use", &out)
    );
    let listing = lab.host.ctl_json(&["publish", "ls"]);
    assert_eq!(listing.as_array().map(Vec::len), Some(0), "{listing}");
}

#[test]
fn the_host_loopback_address_reaches_a_service_on_the_hosts_loopback() {
    if !require(&["socat"]) {
        return;
    }
    let mut lab = HostLab::new();
    let listen = "TCP-LISTEN:5432,bind=127.0.0.1,reuseaddr,fork".to_string();
    let _db = Server::socat(lab.host.ns(), &[&listen, "SYSTEM:echo from-the-host"]);
    wait_listening(lab.host.ns(), 5432);

    // An address inside the subnet could be a container's: refused.
    let out = lab.host.ctl(&[
        "net",
        "create",
        "lb",
        "--subnet",
        "10.88.0.0/24",
        "--host-loopback",
        "10.88.0.9",
    ]);
    assert!(
        !out.status.success()
            && yard_tests::cmd::stderr(&out).contains("inside the network's subnet"),
        "{}",
        describe("--host-loopback inside the subnet", &out)
    );
    lab.host.ctl_ok(&[
        "net",
        "create",
        "lb",
        "--subnet",
        "10.88.0.0/24",
        "--host-loopback",
        "169.254.1.2",
    ]);
    let c2 = lab.host.tap("c2", "lb", "10.88.0.2/24", &[]);
    let out = ask(&c2.ns, "tcp", "169.254.1.2", 5432);
    assert_eq!(
        stdout(&out).trim(),
        "from-the-host",
        "{}\n{}",
        describe("the host's loopback through --host-loopback", &out),
        lab.describe()
    );
    // Off by default: yard0's container cannot reach the host's loopback.
    let out = ask(&lab.container.ns, "tcp", "169.254.1.2", 5432);
    assert!(
        !stdout(&out).contains("from-the-host"),
        "{}",
        describe("yard0", &out)
    );
    // Kept across a restart.
    lab.host.restart();
    let out = ask(&c2.ns, "tcp", "169.254.1.2", 5432);
    assert_eq!(
        stdout(&out).trim(),
        "from-the-host",
        "{}",
        describe("after restart", &out)
    );
}
