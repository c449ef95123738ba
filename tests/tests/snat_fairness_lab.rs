//! Fair SNAT against the real yardd: one container that opens a flood of
//! one-way flows from distinct source ports cannot starve its neighbours of
//! masquerade ports. The flooder is held to its share of each port range,
//! its unanswered mappings are reclaimed for its own new flows, and a
//! neighbour's new UDP and TCP connections work right after the burst. The
//! share is a setting of `conntrack set`, shown by `conntrack stats` and
//! kept across a restart.
//!
//! The shape is `yard_tests::nat`'s (outside 10.1.0.1 ─ uplink 10.1.0.2 ─
//! network web 172.31.0.0/16). The burst goes to 10.1.9.9, an address behind
//! the outside namespace, which does not forward: every flow of the burst
//! stays unanswered, as SYNs to a silent port or UDP to a dead service do.
//! Needs root, hping3, python3 and socat; without them the test prints why
//! and returns.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use yard_ctl::api::{ConntrackEntry, ConntrackSettings, ConntrackStats};
use yard_tests::cmd::{describe, in_ns, in_ns_ok, poll, stdout};
use yard_tests::nat::{tcp_peer_server, udp_peer_server, NatLab, OUTSIDE_IP};
use yard_tests::{require, Lab};

const FLOODER_CIDR: &str = "172.31.0.2/16";
const FLOODER_IP: Ipv4Addr = Ipv4Addr::new(172, 31, 0, 2);
const NEIGHBOUR_CIDR: &str = "172.31.0.3/16";

/// An address routed to the outside namespace, which drops it (it does not
/// forward): nothing ever answers a flow to it.
const SILENT: &str = "10.1.9.9";

/// Packets in each burst: more than the 64,512 ports of the high range.
const BURST: &str = "70000";

/// One hping3 burst from `ns` to [`SILENT`]: `BURST` packets, each from the
/// next source port (hping3 increments it per packet), bounded by time.
fn burst(lab: &NatLab, ns: &str, mode: &[&str]) {
    let mut args = vec![
        "timeout", "90", "hping3", "-q", "-c", BURST, "-i", "u10", "-s", "1024", "-p", "9",
    ];
    args.extend_from_slice(mode);
    args.push(SILENT);
    let started = Instant::now();
    let out = in_ns(ns, &args);
    println!("burst {mode:?}: {:?}", started.elapsed());
    // hping3 exits 1 when nothing answered, which is the point here.
    if !matches!(out.status.code(), Some(0 | 1)) {
        panic!(
            "the burst did not run:\n{}\n{}",
            describe(&args.join(" "), &out),
            lab.context()
        );
    }
}

/// Waits until no new connection has been inserted for a second: what the
/// flooder's TAP queue still held has reached the table.
fn settle(lab: &NatLab) {
    let inserted = || {
        let stats: ConntrackStats = lab.ctl_parse(&["conntrack", "stats"]);
        stats.counters.get("inserted").copied().unwrap_or(0)
    };
    let mut last = inserted();
    let settled = poll(Duration::from_secs(30), Duration::from_millis(1000), || {
        let now = inserted();
        std::mem::replace(&mut last, now) == now
    });
    assert!(settled, "new connections kept arriving for 30 s");
}

#[test]
fn a_flooding_container_leaves_snat_ports_for_its_neighbours() {
    if !require(&["hping3", "python3", "socat"]) {
        return;
    }
    let mut lab = NatLab::new();
    let flooder = lab.tap("c1", "web", FLOODER_CIDR, &[]);
    let neighbour = lab.tap("c2", "web", NEIGHBOUR_CIDR, &[]);
    in_ns_ok(
        &flooder.ns,
        &["ip", "link", "set", "eth0", "txqueuelen", "20000"],
    );
    let _udp = udp_peer_server(&lab.outside, Some(OUTSIDE_IP), 9000);
    let _tcp = tcp_peer_server(&lab.outside, Some(OUTSIDE_IP), 8001);

    // The flooder's own answered flow, from a port the burst will also use:
    // reclaim takes unanswered mappings only, so this one stays.
    let kept = lab.udp_ask_ok(&flooder.ns, OUTSIDE_IP, 9000, Some(40000));

    burst(&lab, &flooder.ns, &["--udp"]);
    burst(&lab, &flooder.ns, &["-S"]);
    settle(&lab);

    let counters = |lab: &NatLab| {
        let stats: ConntrackStats = lab.ctl_parse(&["conntrack", "stats"]);
        stats.counters
    };
    let c = counters(&lab);
    println!(
        "after the bursts: {} mappings, {} inserted, {} reclaimed at the share",
        c["snat-mappings"], c["inserted"], c["snat-share-reclaimed"]
    );

    // Right after the bursts, a neighbour's new flows get ports.
    lab.udp_ask_ok(&neighbour.ns, OUTSIDE_IP, 9000, None);
    lab.tcp_ask_ok(&neighbour.ns, OUTSIDE_IP, 8001, None);

    // The flooder holds no more than its share of each range.
    let settings: ConntrackSettings = lab.ctl_parse(&["conntrack", "set"]);
    let percent = u64::from(
        settings
            .snat_share_percent
            .expect("conntrack set shows the SNAT share in force"),
    );
    let (high_share, low_share) = (64_512 * percent / 100, 1_023 * percent / 100);
    let stats: ConntrackStats = lab.ctl_parse(&["conntrack", "stats"]);
    let flooded: Vec<ConntrackEntry> =
        lab.conntrack(&["--addr", &FLOODER_IP.to_string(), "--proto", "udp"]);
    let snat_port =
        |e: &ConntrackEntry| -> Option<u16> { e.snat.as_deref()?.rsplit_once(':')?.1.parse().ok() };
    // Mappings, not entries: its answered port also has a burst entry.
    let ports: BTreeSet<u16> = flooded.iter().filter_map(snat_port).collect();
    let high = ports.iter().filter(|&&p| p >= 1024).count() as u64;
    let low = ports.len() as u64 - high;
    assert!(
        high <= high_share && low <= low_share,
        "the flooder holds {high} high and {low} low UDP ports, over its share \
         ({high_share}, {low_share}): {stats:#?}"
    );
    // It got there by reusing its own unanswered mappings, counted.
    assert!(
        stats.counters.get("snat-share-reclaimed").copied() > Some(0),
        "no reclaim counted: {stats:#?}"
    );
    // Its answered flow from port 40000 was not taken.
    let still = flooded.iter().any(|e| {
        e.original.sport == 40000 && e.original.dst == OUTSIDE_IP && snat_port(e) == Some(kept.port)
    });
    assert!(
        still,
        "the flooder's answered flow from port 40000 (seen outside as {kept}) was reclaimed"
    );
}

#[test]
fn the_snat_share_is_set_shown_and_kept_across_a_restart() {
    if !require(&[]) {
        return;
    }
    let mut lab = Lab::new();
    let shown: ConntrackSettings = lab.ctl_parse(&["conntrack", "set"]);
    assert_eq!(
        shown.snat_share_percent,
        Some(25),
        "the default: {shown:#?}"
    );
    let set: ConntrackSettings = lab.ctl_parse(&["conntrack", "set", "--snat-share", "10%"]);
    assert_eq!(set.snat_share_percent, Some(10), "{set:#?}");
    let err = lab.ctl_err(&["conntrack", "set", "--snat-share", "0"]);
    assert!(err.contains("percentage from 1 to 100"), "{err}");

    let status = lab.daemon.stop(Signal::SIGTERM);
    assert!(status.success(), "yardd exited with {status}");
    lab.daemon.start();
    let stats: ConntrackStats = lab.ctl_parse(&["conntrack", "stats"]);
    assert_eq!(stats.snat_share_percent, Some(10), "{stats:#?}");
    let text = stdout(&lab.ctl_ok(&["conntrack", "stats"]));
    assert!(
        text.contains("snat share:") && text.contains("10% of each port range per container"),
        "{text}"
    );
}
