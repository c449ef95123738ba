//! Isolation labs: `--no-icc` networks keep their containers apart,
//! separate networks (with subnets, and plain L2 ones sharing an address range)
//! do not leak into each other, a network in use cannot be removed, and
//! overlapping subnets are refused.
//!
//! Needs root; without it each test prints why and returns.

use yard_tests::{require, Lab};

fn network_names(lab: &Lab) -> Vec<String> {
    let nets = lab.ctl_json(&["net", "ls"]);
    let mut names: Vec<String> = nets
        .as_array()
        .expect("net ls --json is an array")
        .iter()
        .map(|n| {
            n["name"]
                .as_str()
                .expect("a network has a name")
                .to_string()
        })
        .collect();
    names.sort();
    names
}

#[test]
fn no_icc_network_keeps_its_containers_apart_and_counts_the_drops() {
    if !require(&["ping"]) {
        return;
    }
    let mut lab = Lab::new();
    lab.ctl_ok(&[
        "net",
        "create",
        "quiet",
        "--subnet",
        "10.60.0.0/24",
        "--no-icc",
    ]);
    let inspect = lab.ctl_json(&["net", "inspect", "quiet"]);
    assert_eq!(inspect["icc"], false, "net inspect quiet: {inspect:#}");
    let q1 = lab.tap("q1", "quiet", "10.60.0.2/24", &[]);
    let q2 = lab.tap("q2", "quiet", "10.60.0.3/24", &[]);

    lab.ping_fails(&q1, q2.ip, &[]);
    lab.ping_fails(&q2, q1.ip, &[]);

    // The frames reached the switch and were dropped there, and counted.
    let (s1, s2) = (lab.stats("q1"), lab.stats("q2"));
    assert!(
        s1.rx_packets > 0 && s2.rx_packets > 0,
        "no frames reached yardd: {s1:?} {s2:?}"
    );
    let drops: u64 = s1.drops.values().chain(s2.drops.values()).sum();
    assert!(
        drops > 0,
        "no drops counted on a --no-icc network: {s1:?} {s2:?}"
    );
}

#[test]
fn separate_networks_do_not_reach_each_other() {
    if !require(&["ping"]) {
        return;
    }
    let mut lab = Lab::new();
    lab.ctl_ok(&["net", "create", "a", "--subnet", "10.61.0.0/24"]);
    lab.ctl_ok(&["net", "create", "b", "--subnet", "10.62.0.0/24"]);
    let a1 = lab.tap("a1", "a", "10.61.0.2/24", &[]);
    let a2 = lab.tap("a2", "a", "10.61.0.3/24", &[]);
    let b1 = lab.tap("b1", "b", "10.62.0.2/24", &[]);
    let b2 = lab.tap("b2", "b", "10.62.0.3/24", &[]);
    // Within a network they do reach each other...
    lab.ping_ok(&a1, a2.ip);
    lab.ping_ok(&b1, b2.ip);
    // ...across networks they do not, in either direction.
    lab.ping_fails(&a1, b1.ip, &[]);
    lab.ping_fails(&b2, a2.ip, &[]);

    // Pure L2 isolation: two networks without subnets whose containers share
    // one /16, so only the switch keeps them apart.
    lab.ctl_ok(&["net", "create", "l2a"]);
    lab.ctl_ok(&["net", "create", "l2b"]);
    let x1 = lab.tap("x1", "l2a", "10.64.0.2/16", &[]);
    let x2 = lab.tap("x2", "l2a", "10.64.0.3/16", &[]);
    let y1 = lab.tap("y1", "l2b", "10.64.0.4/16", &[]);
    lab.ping_ok(&x1, x2.ip);
    lab.ping_fails(&x1, y1.ip, &[]);
    lab.ping_fails(&y1, x2.ip, &[]);

    // Learning is per network: l2b never saw l2a's MACs.
    let (x1_mac, x2_mac) = (x1.mac(), x2.mac());
    let l2b = lab.fdb(Some("l2b"));
    assert!(
        l2b.iter()
            .all(|e| e.mac != x1_mac && e.mac != x2_mac && e.net == "l2b"),
        "l2a's MACs leaked into l2b's FDB: {l2b:#?}"
    );
    let l2a = lab.fdb(Some("l2a"));
    assert!(
        l2a.iter().any(|e| e.mac == x1_mac && e.port == "x1"),
        "x1 not learned on l2a: {l2a:#?}"
    );
}

#[test]
fn network_in_use_cannot_be_removed_and_overlapping_subnets_are_refused() {
    if !require(&[]) {
        return;
    }
    let mut lab = Lab::new();
    lab.ctl_ok(&["net", "create", "busynet", "--subnet", "10.61.0.0/24"]);
    lab.tap("busyport", "busynet", "10.61.0.2/24", &[]);

    let err = lab.ctl_err(&["net", "rm", "busynet"]);
    assert!(
        err.contains("busyport") || err.contains("busynet"),
        "the refusal should name the network or the port using it: {err}"
    );
    assert!(network_names(&lab).contains(&"busynet".to_string()));

    lab.ctl_ok(&["port", "rm", "busyport"]);
    lab.ctl_ok(&["net", "rm", "busynet"]);
    assert!(!network_names(&lab).contains(&"busynet".to_string()));
    lab.ctl_err(&["net", "inspect", "busynet"]);

    lab.ctl_ok(&["net", "create", "o1", "--subnet", "10.70.0.0/24"]);
    for (name, subnet) in [
        ("o2", "10.70.0.128/25"),  // inside o1
        ("o3", "10.0.0.0/8"),      // contains o1
        ("o4", "172.30.200.0/24"), // inside yard0
        ("o5", "10.70.0.0/24"),    // equal to o1
    ] {
        let err = lab.ctl_err(&["net", "create", name, "--subnet", subnet]);
        assert!(
            err.contains("o1") || err.contains("yard0") || err.contains("overlap"),
            "refusing {subnet} should say what it overlaps: {err}"
        );
    }
    // Adjacent, not overlapping: accepted.
    lab.ctl_ok(&["net", "create", "o6", "--subnet", "10.70.1.0/24"]);
    assert_eq!(network_names(&lab), ["o1", "o6", "yard0"]);
}
