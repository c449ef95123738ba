//! Firewall rule labs (`yardctl rule add NET … allow|deny`): a real yardd,
//! containers in namespaces. A deny stops new TCP connections and pings
//! and counts hits and `rule-deny` drops; replies of an allowed connection
//! pass a deny for their direction; rule order decides; switched traffic
//! on one network with one and with two datapath threads (the two ports
//! read by different threads); routed traffic between two networks
//! (judged by the rules of the network it comes from) and to the outside (the
//! DOCKER-USER-style "no container may reach 169.254.169.254", `--to
//! outside`, and a published port's replies under a deny of the outside);
//! rules survive a restart; bad input is refused and changes nothing.
//!
//! Needs root; without it each test prints why and returns (fails under
//! CI=true, see [`require`]).

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;
use yard_tests::nat::{self, tcp_ask, tcp_peer_server, NatLab, OUTSIDE_IP, UPLINK_IP};
use yard_tests::{require, Container, Lab};

const TOOLS: &[&str] = &["ping", "socat", "ss"];

/// `rule ls NET --json`: the rules in order.
fn rules(lab: &Lab, net: &str) -> Vec<Value> {
    lab.ctl_json(&["rule", "ls", net])
        .as_array()
        .expect("rule ls --json is an array")
        .clone()
}

/// The hits of rule `position` of `net`.
fn hits(lab: &Lab, net: &str, position: u64) -> u64 {
    rules(lab, net)
        .iter()
        .find(|r| r["position"] == position)
        .and_then(|r| r["hits"].as_u64())
        .unwrap_or_else(|| panic!("no rule {position} with hits in {:#?}", rules(lab, net)))
}

fn rule_deny_drops(lab: &Lab, port: &str) -> u64 {
    lab.stats(port).drops.get("rule-deny").copied().unwrap_or(0)
}

/// Asserts a TCP connection from `from` to `to:port` is answered.
fn connects(from: &Container, to: std::net::Ipv4Addr, port: u16, lab: &Lab) {
    let out = tcp_ask(&from.ns, to, port, None);
    assert!(
        out.status.success() && nat::Peer::parse(&yard_tests::cmd::stdout(&out)).is_some(),
        "{} could not connect to {to}:{port}\n{}\n{}",
        from.port,
        yard_tests::cmd::describe("socat", &out),
        lab.log_tail()
    );
}

/// Asserts a TCP connection from `from` to `to:port` gets no answer.
fn cannot_connect(from: &Container, to: std::net::Ipv4Addr, port: u16) {
    let out = tcp_ask(&from.ns, to, port, None);
    assert!(
        nat::Peer::parse(&yard_tests::cmd::stdout(&out)).is_none(),
        "{} reached {to}:{port} although a rule denies it",
        from.port
    );
}

/// Two containers on network `fw`; A may open connections to B, B may
/// not open any to A; then a deny for A's web port put first wins over the
/// allow; removing it opens it again.
fn switched_rules(lab: &mut Lab) {
    lab.ctl_ok(&["net", "create", "fw", "--subnet", "10.70.0.0/24"]);
    let a = lab.tap("fwa", "fw", "10.70.0.2/24", &[]);
    let b = lab.tap("fwb", "fw", "10.70.0.3/24", &[]);
    let _on_a = tcp_peer_server(&a.ns, None, 80);
    let _on_b = tcp_peer_server(&b.ns, None, 80);
    // Without rules both ways work.
    connects(&b, a.ip, 80, lab);
    lab.ping_ok(&b, a.ip);

    lab.ctl_ok(&["rule", "add", "fw", "--from", "fwa", "--to", "fwb", "allow"]);
    lab.ctl_ok(&["rule", "add", "fw", "--from", "fwb", "--to", "fwa", "deny"]);
    // A opens to B: the replies (B to A) pass the deny.
    connects(&a, b.ip, 80, lab);
    lab.ping_ok(&a, b.ip);
    // B cannot open to A, over TCP or ICMP.
    let drops_before = rule_deny_drops(lab, "fwb");
    cannot_connect(&b, a.ip, 80);
    lab.ping_fails(&b, a.ip, &[]);
    assert!(hits(lab, "fw", 1) >= 2, "{:#?}", rules(lab, "fw"));
    assert!(hits(lab, "fw", 2) >= 2, "{:#?}", rules(lab, "fw"));
    assert!(
        rule_deny_drops(lab, "fwb") > drops_before,
        "no rule-deny drops counted on fwb: {:?}",
        lab.stats("fwb")
    );

    // Order matters: a deny of A's TCP to B:80 put first wins over the allow.
    lab.ctl_ok(&[
        "rule",
        "add",
        "fw",
        "--from",
        "fwa",
        "--to",
        "fwb",
        "--proto",
        "tcp",
        "--dport",
        "80",
        "deny",
        "--position",
        "1",
    ]);
    let listed = rules(lab, "fw");
    assert_eq!(listed.len(), 3, "{listed:#?}");
    assert_eq!(listed[0]["action"], "deny");
    assert_eq!(listed[0]["hits"], 0, "a new rule starts at 0: {listed:#?}");
    assert_eq!(listed[1]["action"], "allow");
    cannot_connect(&a, b.ip, 80);
    lab.ping_ok(&a, b.ip);
    assert!(hits(lab, "fw", 1) >= 1, "{:#?}", rules(lab, "fw"));
    lab.ctl_ok(&["rule", "rm", "fw", "1"]);
    connects(&a, b.ip, 80, lab);
    assert_eq!(rules(lab, "fw").len(), 2);
}

#[test]
fn rules_judge_new_switched_connections_and_let_replies_through() {
    if !require(TOOLS) {
        return;
    }
    let mut lab = Lab::new();
    switched_rules(&mut lab);
}

#[test]
fn rules_hold_when_two_threads_read_the_two_directions() {
    if !require(TOOLS) {
        return;
    }
    let mut lab = Lab::with_args(&["--threads", "2"]);
    switched_rules(&mut lab);
    let ports = lab.ctl_json(&["port", "ls"]);
    let thread_of = |name: &str| {
        ports
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == name))
            .map(|p| p["thread"].clone())
            .unwrap_or(Value::Null)
    };
    assert_ne!(
        thread_of("fwa"),
        thread_of("fwb"),
        "the two ports should be read by different threads: {ports:#}"
    );
}

#[test]
fn rules_judge_routed_connections_to_the_outside() {
    if !require(TOOLS) {
        return;
    }
    let mut lab = NatLab::new();
    // The outside also holds the cloud metadata address.
    lab.add_outside_address(std::net::Ipv4Addr::new(169, 254, 169, 254));
    let metadata: std::net::Ipv4Addr = "169.254.169.254".parse().unwrap();
    let c1 = lab.tap("c1", "web", "172.31.0.2/16", &[]);
    let _outside_web = tcp_peer_server(&lab.outside, None, 80);
    connects(&c1, metadata, 80, &lab);
    lab.ping_ok(&c1, metadata);

    // DOCKER-USER style: no container of web may reach 169.254.169.254.
    lab.ctl_ok(&["rule", "add", "web", "--to", "169.254.169.254", "deny"]);
    cannot_connect(&c1, metadata, 80);
    lab.ping_fails(&c1, metadata, &[]);
    connects(&c1, OUTSIDE_IP, 80, &lab);
    assert!(hits(&lab, "web", 1) >= 2, "{:#?}", rules(&lab, "web"));
    let stats = lab.ctl_json(&["conntrack", "stats"]);
    assert!(
        stats["counters"]["gw_rule_deny"].as_u64() > Some(0),
        "conntrack stats counts no gw-rule-deny: {stats:#}"
    );

    // Nothing may leave for the outside but TCP to the outside host's
    // port 80; a published port's replies still ride their entry.
    lab.ctl_ok(&["rule", "rm", "web", "1"]);
    lab.ctl_ok(&["rule", "add", "web", "--to", "outside", "deny"]);
    lab.ctl_ok(&[
        "rule",
        "add",
        "web",
        "--to",
        &format!("{OUTSIDE_IP}/32"),
        "--proto",
        "tcp",
        "--dport",
        "80",
        "allow",
        "--position",
        "1",
    ]);
    connects(&c1, OUTSIDE_IP, 80, &lab);
    lab.ping_fails(&c1, OUTSIDE_IP, &[]);
    cannot_connect(&c1, metadata, 80);
    let _c1_web = tcp_peer_server(&c1.ns, None, 8000);
    lab.ctl_ok(&["publish", "add", "8080:c1:8000"]);
    let peer = lab.tcp_ask_ok(&lab.outside, UPLINK_IP, 8080, None);
    assert_eq!(peer.addr, OUTSIDE_IP, "c1 sees the outside client");
    assert!(hits(&lab, "web", 2) >= 2, "{:#?}", rules(&lab, "web"));
}

#[test]
fn rules_judge_connections_routed_between_networks_where_they_come_from() {
    if !require(TOOLS) {
        return;
    }
    let mut lab = Lab::new();
    lab.ctl_ok(&["net", "create", "ra", "--subnet", "10.73.0.0/24"]);
    lab.ctl_ok(&["net", "create", "rb", "--subnet", "10.74.0.0/24"]);
    lab.ctl_ok(&["net", "connect", "ra", "rb"]);
    let a = lab.tap("na", "ra", "10.73.0.2/24", &[]);
    let b = lab.tap("nb", "rb", "10.74.0.2/24", &[]);
    let _on_a = tcp_peer_server(&a.ns, None, 80);
    let _on_b = tcp_peer_server(&b.ns, None, 80);
    connects(&b, a.ip, 80, &lab);

    // rb's hosts may not open connections to na; na's to nb ride their
    // entries both ways.
    lab.ctl_ok(&["rule", "add", "rb", "--from", "nb", "--to", "na", "deny"]);
    connects(&a, b.ip, 80, &lab);
    lab.ping_ok(&a, b.ip);
    cannot_connect(&b, a.ip, 80);
    lab.ping_fails(&b, a.ip, &[]);
    assert!(hits(&lab, "rb", 1) >= 2, "{:#?}", rules(&lab, "rb"));
    let stats = lab.ctl_json(&["conntrack", "stats"]);
    assert!(
        stats["counters"]["gw_rule_deny"].as_u64() >= Some(2),
        "{stats:#}"
    );
    // A connection is judged by the rules of the network it comes from:
    // rb's rules do not judge what na opens.
    lab.ctl_ok(&[
        "rule",
        "add",
        "rb",
        "--from",
        "na",
        "deny",
        "--position",
        "1",
    ]);
    connects(&a, b.ip, 80, &lab);
    assert_eq!(hits(&lab, "rb", 1), 0, "{:#?}", rules(&lab, "rb"));
}

#[test]
fn rules_survive_a_restart() {
    if !require(TOOLS) {
        return;
    }
    let mut lab = Lab::new();
    lab.ctl_ok(&["net", "create", "fw", "--subnet", "10.71.0.0/24"]);
    let a = lab.tap("ra", "fw", "10.71.0.2/24", &[]);
    let b = lab.tap("rb", "fw", "10.71.0.3/24", &[]);
    lab.ctl_ok(&["rule", "add", "fw", "--from", "rb", "--to", "ra", "deny"]);
    lab.ctl_ok(&[
        "rule", "add", "fw", "--proto", "udp", "--dport", "53", "deny",
    ]);
    let before: Vec<Value> = rules(&lab, "fw");
    let status = lab.stop(Signal::SIGTERM);
    assert!(status.success(), "yardd did not stop cleanly: {status}");
    lab.start();
    lab.wait_ports_up(Duration::from_secs(15));
    let after = rules(&lab, "fw");
    let without_hits = |rs: &[Value]| -> Vec<Value> {
        rs.iter()
            .map(|r| {
                let mut r = r.clone();
                r.as_object_mut().unwrap().remove("hits");
                r
            })
            .collect()
    };
    assert_eq!(without_hits(&after), without_hits(&before));
    lab.ping_ok(&a, b.ip);
    lab.ping_fails(&b, a.ip, &[]);
    assert!(hits(&lab, "fw", 1) >= 1, "{after:#?}");
}

#[test]
fn bad_rules_are_refused_and_change_nothing() {
    if !require(&[]) {
        return;
    }
    let mut lab = Lab::new();
    lab.ctl_ok(&["net", "create", "fw", "--subnet", "10.72.0.0/24"]);
    lab.tap("ba", "fw", "10.72.0.2/24", &[]);
    lab.ctl_ok(&["rule", "add", "fw", "--to", "ba", "deny"]);
    let state_before = std::fs::read_to_string(lab.state_file()).unwrap();
    let before = rules(&lab, "fw");
    for (args, says) in [
        (&["rule", "add", "nope", "deny"][..], "net ls"),
        (
            &["rule", "add", "fw", "--from", "ghost", "deny"][..],
            "port ls",
        ),
        (
            &["rule", "add", "fw", "--to", "10.0.0.0/33", "deny"][..],
            "CIDR",
        ),
        (
            &[
                "rule", "add", "fw", "--proto", "icmp", "--dport", "80", "deny",
            ][..],
            "--proto tcp",
        ),
        (
            &["rule", "add", "fw", "--dport", "80", "deny"][..],
            "--proto tcp",
        ),
        (
            &["rule", "add", "fw", "--from", "outside", "deny"][..],
            "destination only",
        ),
        (
            &["rule", "add", "fw", "deny", "--position", "3"][..],
            "position 1 to 2",
        ),
        (
            &["rule", "add", "fw", "deny", "--position", "0"][..],
            "from 1",
        ),
        (&["rule", "add", "fw", "maybe"][..], "allow or deny"),
        (&["rule", "rm", "fw", "2"][..], "rule ls fw"),
        (&["rule", "rm", "nope", "1"][..], "net ls"),
        (&["rule", "ls", "nope"][..], "net ls"),
    ] {
        let err = lab.ctl_err(args);
        assert!(
            err.contains(says),
            "yardctl {args:?}: {err:?} should say {says:?}"
        );
    }
    assert_eq!(rules(&lab, "fw"), before);
    assert_eq!(
        std::fs::read_to_string(lab.state_file()).unwrap(),
        state_before
    );
}
