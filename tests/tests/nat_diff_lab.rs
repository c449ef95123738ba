//! Differential NAT lab: one scenario through a Linux router (kernel bridge +
//! iptables MASQUERADE/DNAT, all inside a router namespace the test made) and
//! through yardd, comparing what the outside host and the containers see.
//!
//! Both shapes are the same from the endpoints' point of view:
//!
//! ```text
//!  outside 10.1.0.1/24 ── router 10.1.0.2/24 ── 172.31.0.0/16 ─┬─ c1 172.31.0.2
//!                                                              └─ c2 172.31.0.3
//! ```
//!
//! The Linux router is a namespace with `br0` (172.31.0.1/16) bridging the two
//! containers' veths, a veth `wan` toward the outside, `ip_forward=1`,
//! `MASQUERADE` for the subnet out of `wan`, and DNAT of 8080/tcp and 5353/udp
//! to c1 (plus a MASQUERADE of DNATed traffic that stays on the subnet, for
//! hairpin). yardd's shape is `yard_tests::nat::NatLab` with two TAP
//! containers and the same two published ports. Nothing touches the host's
//! iptables or interfaces. Needs root; without it the test prints why and
//! returns.

use std::net::Ipv4Addr;

use yard_tests::cmd::{describe, in_ns, in_ns_ok, run_ok, stdout};
use yard_tests::nat::{
    ping, tcp_ask, tcp_peer_server, udp_ask, udp_peer_server, NatLab, Peer, OUTSIDE_IP, UPLINK_IP,
    WEB_GATEWAY,
};
use yard_tests::{require, Netns, Veth};

const C2_IP: Ipv4Addr = Ipv4Addr::new(172, 31, 0, 3);

/// Fixed client ports, free in every namespace, to see whether NAT keeps them.
const SNAT_TCP_SPORT: u16 = 40001;
const SNAT_UDP_SPORT: u16 = 40002;
const DNAT_TCP_SPORT: u16 = 40003;
const DNAT_UDP_SPORT: u16 = 40004;

/// The namespaces of one shape, by role.
struct Shape {
    c1: String,
    c2: String,
    outside: String,
}

/// What the endpoints saw; `None` where a request got no answer.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    /// The outside TCP server's view of c1 (client port fixed).
    snat_tcp: Option<Peer>,
    /// The outside UDP server's view of c1 (client port fixed).
    snat_udp: Option<Peer>,
    /// c1's TCP server's view of the outside client through 8080.
    dnat_tcp: Option<Peer>,
    /// c1's UDP server's view of the outside client through 5353.
    dnat_udp: Option<Peer>,
    /// c1's TCP server's view of c2 coming through 10.1.0.2:8080.
    hairpin_tcp: Option<Peer>,
    /// c1 gets echo replies from the outside host.
    ping_out: bool,
    /// The outside host gets echo replies from the router's address.
    ping_router: bool,
    /// Raw outputs, for failure messages.
    transcript: String,
}

/// Runs the scenario on `shape`: peer-reporting servers outside and in c1,
/// then each request once.
fn observe(shape: &Shape) -> Seen {
    let _out_tcp = tcp_peer_server(&shape.outside, Some(OUTSIDE_IP), 8000);
    let _out_udp = udp_peer_server(&shape.outside, Some(OUTSIDE_IP), 9000);
    let _c1_tcp = tcp_peer_server(&shape.c1, None, 80);
    let _c1_udp = udp_peer_server(&shape.c1, None, 53);
    let mut transcript = String::new();
    let mut ask = |what: &str, out: std::process::Output| {
        transcript.push_str(&describe(what, &out));
        transcript.push('\n');
        Peer::parse(&stdout(&out)).filter(|_| out.status.success())
    };
    let snat_tcp = ask(
        "c1: socat - TCP:10.1.0.1:8000,sourceport=40001",
        tcp_ask(&shape.c1, OUTSIDE_IP, 8000, Some(SNAT_TCP_SPORT)),
    );
    let snat_udp = ask(
        "c1: socat - UDP:10.1.0.1:9000,sourceport=40002",
        udp_ask(&shape.c1, OUTSIDE_IP, 9000, Some(SNAT_UDP_SPORT)),
    );
    let dnat_tcp = ask(
        "outside: socat - TCP:10.1.0.2:8080,sourceport=40003",
        tcp_ask(&shape.outside, UPLINK_IP, 8080, Some(DNAT_TCP_SPORT)),
    );
    let dnat_udp = ask(
        "outside: socat - UDP:10.1.0.2:5353,sourceport=40004",
        udp_ask(&shape.outside, UPLINK_IP, 5353, Some(DNAT_UDP_SPORT)),
    );
    let hairpin_tcp = ask(
        "c2: socat - TCP:10.1.0.2:8080",
        tcp_ask(&shape.c2, UPLINK_IP, 8080, None),
    );
    let out = ping(&shape.c1, OUTSIDE_IP, 2, 10, &[]);
    transcript.push_str(&describe("c1: ping 10.1.0.1", &out));
    let ping_out = out.status.success();
    let out = ping(&shape.outside, UPLINK_IP, 2, 10, &[]);
    transcript.push_str(&describe("outside: ping 10.1.0.2", &out));
    let ping_router = out.status.success();
    Seen {
        snat_tcp,
        snat_udp,
        dnat_tcp,
        dnat_udp,
        hairpin_tcp,
        ping_out,
        ping_router,
        transcript,
    }
}

/// A Linux router namespace with its containers and outside host.
/// Veths first: dropped before the namespaces (deleting a namespace removes
/// the veth ends inside it anyway).
struct LinuxRouter {
    _veths: Vec<Veth>,
    router: Netns,
    c1: Netns,
    c2: Netns,
    outside: Netns,
}

fn quiet_netns() -> Netns {
    let ns = Netns::new();
    ns.disable_ipv6();
    ns
}

/// A veth pair with one end named `a_name` in `a` and the other `b_name` in `b`.
fn veth_between(a: &str, a_name: &str, b: &str, b_name: &str) -> Veth {
    let veth = Veth::new();
    for (end, ns, name) in [(veth.host(), a, a_name), (veth.peer(), b, b_name)] {
        run_ok(&["ip", "link", "set", end, "netns", ns]);
        run_ok(&["ip", "-n", ns, "link", "set", end, "name", name]);
    }
    veth
}

fn ip(ns: &str, args: &[&str]) {
    let mut full = vec!["ip", "-n", ns];
    full.extend_from_slice(args);
    run_ok(&full);
}

impl LinuxRouter {
    fn new() -> LinuxRouter {
        let (router, c1, c2, outside) =
            (quiet_netns(), quiet_netns(), quiet_netns(), quiet_netns());
        let r = router.name().to_string();
        in_ns_ok(
            &r,
            &[
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
                // Hairpin is routed out of the interface it came in on: no
                // redirect may teach c2 to bypass the router.
                "net.ipv4.conf.all.send_redirects=0",
                "net.ipv4.conf.default.send_redirects=0",
            ],
        );
        ip(&r, &["link", "add", "br0", "type", "bridge"]);
        ip(&r, &["addr", "add", "172.31.0.1/16", "dev", "br0"]);
        ip(&r, &["link", "set", "br0", "up"]);
        let mut veths = Vec::new();
        for (c, name, cidr) in [(&c1, "c1", "172.31.0.2/16"), (&c2, "c2", "172.31.0.3/16")] {
            veths.push(veth_between(&r, name, c.name(), "eth0"));
            ip(&r, &["link", "set", name, "master", "br0"]);
            ip(&r, &["link", "set", name, "up"]);
            ip(c.name(), &["addr", "add", cidr, "dev", "eth0"]);
            ip(c.name(), &["link", "set", "eth0", "up"]);
            ip(
                c.name(),
                &["route", "add", "default", "via", &WEB_GATEWAY.to_string()],
            );
        }
        veths.push(veth_between(&r, "wan", outside.name(), "eth0"));
        ip(&r, &["addr", "add", "10.1.0.2/24", "dev", "wan"]);
        ip(&r, &["link", "set", "wan", "up"]);
        ip(
            outside.name(),
            &["addr", "add", "10.1.0.1/24", "dev", "eth0"],
        );
        ip(outside.name(), &["link", "set", "eth0", "up"]);
        let nat = |rule: &[&str]| {
            let mut full = vec!["iptables", "-w", "5", "-t", "nat", "-A"];
            full.extend_from_slice(rule);
            in_ns_ok(&r, &full);
        };
        // Masquerade, as Docker does for docker0's subnet.
        nat(&[
            "POSTROUTING",
            "-s",
            "172.31.0.0/16",
            "-o",
            "wan",
            "-j",
            "MASQUERADE",
        ]);
        // Published ports, as `docker run -p 8080:80 -p 5353:53/udp` would.
        for (proto, port, to) in [
            ("tcp", "8080", "172.31.0.2:80"),
            ("udp", "5353", "172.31.0.2:53"),
        ] {
            nat(&[
                "PREROUTING",
                "-d",
                "10.1.0.2",
                "-p",
                proto,
                "--dport",
                port,
                "-j",
                "DNAT",
                "--to-destination",
                to,
            ]);
        }
        // Hairpin: DNATed traffic that goes back into the subnet is
        // masqueraded, so c1's reply returns through the router to be
        // un-DNATed (otherwise c1 answers c2 directly and c2 drops it).
        nat(&[
            "POSTROUTING",
            "-s",
            "172.31.0.0/16",
            "-d",
            "172.31.0.0/16",
            "-m",
            "conntrack",
            "--ctstate",
            "DNAT",
            "-j",
            "MASQUERADE",
        ]);
        LinuxRouter {
            _veths: veths,
            router,
            c1,
            c2,
            outside,
        }
    }

    fn shape(&self) -> Shape {
        Shape {
            c1: self.c1.name().to_string(),
            c2: self.c2.name().to_string(),
            outside: self.outside.name().to_string(),
        }
    }

    /// The router's NAT rules with their counters, for failure messages.
    fn rules(&self) -> String {
        let out = in_ns(
            self.router.name(),
            &["iptables", "-w", "5", "-t", "nat", "-L", "-n", "-v"],
        );
        format!(
            "--- iptables -t nat -L -n -v (router) ---\n{}",
            stdout(&out)
        )
    }

    /// A conntrack sysctl of the router namespace, in seconds.
    fn timeout(&self, name: &str) -> Option<u64> {
        let out = in_ns(
            self.router.name(),
            &["cat", &format!("/proc/sys/net/netfilter/{name}")],
        );
        stdout(&out).trim().parse().ok()
    }
}

#[test]
fn yardd_and_linux_nat_look_the_same_from_both_ends() {
    if !require(&["socat", "ping", "iptables", "python3"]) {
        return;
    }

    // --- Linux: bridge + iptables, inside the router namespace. ---
    let linux = LinuxRouter::new();
    let kernel = observe(&linux.shape());
    let linux_context = || format!("{}\n{}", kernel.transcript, linux.rules());

    // --- yardd: the same shape. ---
    let mut lab = NatLab::new();
    let c1 = lab.tap("c1", "web", "172.31.0.2/16", &[]);
    let c2 = lab.tap("c2", "web", "172.31.0.3/16", &[]);
    lab.ctl_ok(&["publish", "add", "8080:c1:80/tcp"]);
    lab.ctl_ok(&["publish", "add", "5353:c1:53/udp"]);
    let yard_shape = Shape {
        c1: c1.ns.clone(),
        c2: c2.ns.clone(),
        outside: lab.outside.clone(),
    };
    let yard = observe(&yard_shape);
    let yard_context = || format!("{}\n{}", yard.transcript, lab.context());

    // Each side against what a masquerading router must do, then against
    // each other, so a failure says which side broke.
    let expect = [
        (
            "outbound TCP leaves as the router's address, client port kept",
            kernel.snat_tcp,
            yard.snat_tcp,
            Peer {
                addr: UPLINK_IP,
                port: SNAT_TCP_SPORT,
            },
        ),
        (
            "outbound UDP leaves as the router's address, client port kept",
            kernel.snat_udp,
            yard.snat_udp,
            Peer {
                addr: UPLINK_IP,
                port: SNAT_UDP_SPORT,
            },
        ),
        (
            "the published TCP service sees the real outside client",
            kernel.dnat_tcp,
            yard.dnat_tcp,
            Peer {
                addr: OUTSIDE_IP,
                port: DNAT_TCP_SPORT,
            },
        ),
        (
            "the published UDP service sees the real outside client",
            kernel.dnat_udp,
            yard.dnat_udp,
            Peer {
                addr: OUTSIDE_IP,
                port: DNAT_UDP_SPORT,
            },
        ),
    ];
    for (what, k, y, want) in expect {
        assert_eq!(k, Some(want), "Linux: {what}\n{}", linux_context());
        assert_eq!(y, Some(want), "yardd: {what}\n{}", yard_context());
    }
    assert!(
        kernel.ping_out,
        "Linux: c1 cannot ping the outside\n{}",
        linux_context()
    );
    assert!(
        yard.ping_out,
        "yardd: c1 cannot ping the outside\n{}",
        yard_context()
    );
    assert!(
        kernel.ping_router,
        "Linux: the outside cannot ping 10.1.0.2\n{}",
        linux_context()
    );
    assert!(
        yard.ping_router,
        "yardd: the outside cannot ping 10.1.0.2\n{}",
        yard_context()
    );

    // Hairpin works in both. The source c1 sees differs on purpose: Linux's
    // MASQUERADE picks the address of the interface the packet leaves by
    // (br0, 172.31.0.1); yardd masquerades hairpin traffic with the uplink
    // address, the address c2 asked for, as a home router's NAT loopback does.
    let kh = kernel
        .hairpin_tcp
        .unwrap_or_else(|| panic!("Linux: hairpin from c2 failed\n{}", linux_context()));
    let yh = yard
        .hairpin_tcp
        .unwrap_or_else(|| panic!("yardd: hairpin from c2 failed\n{}", yard_context()));
    assert_eq!(
        kh.addr,
        WEB_GATEWAY,
        "Linux hairpin source\n{}",
        linux_context()
    );
    assert_eq!(
        yh.addr,
        UPLINK_IP,
        "yardd hairpin source\n{}",
        yard_context()
    );
    assert_ne!(kh.addr, C2_IP, "hairpin must be masqueraded");
    assert_ne!(yh.addr, C2_IP, "hairpin must be masqueraded");

    // Timeouts differ on purpose: Linux's defaults are below what the NAT
    // RFCs require of a NAT (an unreplied UDP mapping lasts 30 s there; RFC
    // 4787 REQ-5 wants at least 2 min; TCP TIME_WAIT and other transitory
    // states last 120 s there; RFC 5382 REQ-5 wants at least 4 min), so
    // yardd keeps such entries longer. Established TCP (5 days) is the same.
    let settings = lab.ctl_json(&["conntrack", "set"]);
    let ours = |name: &str| {
        settings["timeouts"][name.replace('-', "_")]
            .as_u64()
            .unwrap_or_else(|| panic!("no {name} in `conntrack set`: {settings:#}"))
    };
    assert!(ours("udp-unreplied") >= 120, "{settings:#}");
    assert!(ours("tcp-time-wait") >= 240, "{settings:#}");
    assert!(ours("tcp-syn-sent") >= 240, "{settings:#}");
    assert!(ours("icmp") >= 60, "{settings:#}");
    if let (Some(udp), Some(est)) = (
        linux.timeout("nf_conntrack_udp_timeout"),
        linux.timeout("nf_conntrack_tcp_timeout_established"),
    ) {
        assert!(
            ours("udp-unreplied") >= udp,
            "yardd's unreplied UDP timeout is shorter than Linux's {udp} s: {settings:#}"
        );
        assert_eq!(
            ours("tcp-established"),
            est,
            "established TCP lasts as long as on Linux: {settings:#}"
        );
    }
}
