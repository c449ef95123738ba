//! Address management and several networks per container, with the real
//! yardd in real namespaces: ports added without `--ip` get the next free
//! address of the network (inside `--ip-range`), keep it across a restart
//! and give it back on `port rm`; a namespace with ports on several networks
//! has exactly one default route, which `--default-route` moves and which
//! passes to a remaining port when its holder is removed.
//!
//! Needs root; without it each test prints why and returns.

use std::net::Ipv4Addr;

use nix::sys::signal::Signal;
use yard_tests::cmd::in_ns_ok;
use yard_tests::{require, Container, Lab};

/// `port add` without `--ip`; returns the container and the address yardd
/// gave, read from the reply.
fn tap_without_ip(lab: &Lab, ns: &str, port: &str, net: &str, extra: &[&str]) -> Container {
    let mut args = vec!["port", "add", port, "--tap", "--net", net, "--netns", ns];
    args.extend_from_slice(extra);
    let reply = lab.ctl_json(&args);
    let ip = reply["ip"]
        .as_str()
        .unwrap_or_else(|| panic!("port add {port} replied without an address: {reply:#}"));
    let ifname = reply["ifname"].as_str().expect("a TAP has an ifname");
    Container {
        port: port.into(),
        ns: ns.into(),
        ifname: ifname.into(),
        ip: ip
            .split('/')
            .next()
            .unwrap()
            .parse()
            .expect("an IPv4 address"),
    }
}

/// The address of each port, as `port ls --json` lists it.
fn listed_ip(lab: &Lab, port: &str) -> Option<String> {
    let ports = lab.ctl_json(&["port", "ls"]);
    ports
        .as_array()
        .expect("port ls --json is an array")
        .iter()
        .find(|p| p["name"] == port)
        .unwrap_or_else(|| panic!("port {port} not listed: {ports:#}"))["ip"]
        .as_str()
        .map(str::to_string)
}

/// The IPv4 addresses configured on `ifname` inside `ns`.
fn addresses_in(ns: &str, ifname: &str) -> Vec<String> {
    let out = in_ns_ok(ns, &["ip", "-j", "-4", "addr", "show", "dev", ifname]);
    let links: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j output");
    links[0]["addr_info"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| format!("{}/{}", i["local"].as_str().unwrap(), i["prefixlen"]))
                .collect()
        })
        .unwrap_or_default()
}

/// The default routes inside `ns`, as "GATEWAY dev IFNAME".
fn default_routes(ns: &str) -> Vec<String> {
    let out = in_ns_ok(ns, &["ip", "-j", "-4", "route", "show", "default"]);
    let routes: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j output");
    routes
        .as_array()
        .expect("ip -j route is an array")
        .iter()
        .map(|r| {
            format!(
                "{} dev {}",
                r["gateway"].as_str().unwrap_or("-"),
                r["dev"].as_str().unwrap_or("-")
            )
        })
        .collect()
}

#[test]
fn ports_without_ip_get_free_addresses_kept_across_restart_and_released() {
    if !require(&["ping", "ip"]) {
        return;
    }
    let mut lab = Lab::new();
    lab.ctl_ok(&[
        "net",
        "create",
        "pool",
        "--subnet",
        "10.71.0.0/24",
        "--ip-range",
        "10.71.0.0/29",
    ]);
    let (ns1, ns2, ns3) = (lab.netns(), lab.netns(), lab.netns());
    // .0 is the subnet's network address and .1 its gateway: never given.
    let c1 = tap_without_ip(&lab, &ns1, "c1", "pool", &[]);
    let c2 = tap_without_ip(&lab, &ns2, "c2", "pool", &[]);
    assert_eq!(
        (c1.ip, c2.ip),
        (Ipv4Addr::new(10, 71, 0, 2), Ipv4Addr::new(10, 71, 0, 3))
    );
    assert_eq!(addresses_in(&ns1, "eth0"), ["10.71.0.2/24"]);
    assert_eq!(listed_ip(&lab, "c2").as_deref(), Some("10.71.0.3/24"));
    lab.ping_ok(&c1, c2.ip);
    lab.ping_ok(&c1, Ipv4Addr::new(10, 71, 0, 1));

    // A requested address in use is refused, naming the port holding it.
    let err = lab.ctl_err(&[
        "port",
        "add",
        "c3",
        "--tap",
        "--net",
        "pool",
        "--netns",
        &ns3,
        "--ip",
        "10.71.0.3/24",
    ]);
    assert!(
        err.contains("10.71.0.3 is already used by port c2"),
        "{err}"
    );

    // The addresses survive a restart as they were given.
    lab.stop(Signal::SIGTERM);
    lab.start();
    lab.wait_ports_up(std::time::Duration::from_secs(15));
    assert_eq!(listed_ip(&lab, "c1").as_deref(), Some("10.71.0.2/24"));
    assert_eq!(listed_ip(&lab, "c2").as_deref(), Some("10.71.0.3/24"));
    let c3 = tap_without_ip(&lab, &ns3, "c3", "pool", &[]);
    assert_eq!(c3.ip, Ipv4Addr::new(10, 71, 0, 4));
    lab.ping_ok(&c3, c1.ip);

    // `port rm` gives the address back.
    lab.ctl_ok(&["port", "rm", "c1"]);
    let c4 = tap_without_ip(&lab, &ns1, "c4", "pool", &[]);
    assert_eq!(c4.ip, Ipv4Addr::new(10, 71, 0, 2));
    lab.ping_ok(&c4, c2.ip);
    // The range .0-.7 less .0 (the subnet's address), .1 (the gateway) and
    // the three in use leaves .5, .6 and .7 (a host of the /24): a fourth
    // is refused, saying so.
    for port in ["c5", "c6", "c7"] {
        let ns = lab.netns();
        tap_without_ip(&lab, &ns, port, "pool", &[]);
    }
    let ns = lab.netns();
    let err = lab.ctl_err(&[
        "port", "add", "c8", "--tap", "--net", "pool", "--netns", &ns,
    ]);
    assert!(
        err.contains("network pool has no free address left in 10.71.0.0/29"),
        "{err}"
    );
}

#[test]
fn one_namespace_on_several_networks_keeps_one_default_route() {
    if !require(&["ping", "ip"]) {
        return;
    }
    let mut lab = Lab::new();
    for (net, subnet) in [
        ("front", "10.73.0.0/24"),
        ("back", "10.74.0.0/24"),
        ("admin", "10.75.0.0/24"),
    ] {
        lab.ctl_ok(&["net", "create", net, "--subnet", subnet]);
    }
    let ns = lab.netns();
    let front = tap_without_ip(&lab, &ns, "app-front", "front", &[]);
    let back = tap_without_ip(&lab, &ns, "app-back", "back", &["--ifname", "eth1"]);
    assert_eq!(addresses_in(&ns, "eth1"), ["10.74.0.2/24"]);
    // The second network's port leaves the first one's default route alone.
    assert_eq!(default_routes(&ns), ["10.73.0.1 dev eth0"]);

    // The container reaches a peer on each network through its own interface.
    let peer_front = lab.tap("peer-front", "front", "10.73.0.9/24", &[]);
    let peer_back = lab.tap("peer-back", "back", "10.74.0.9/24", &[]);
    lab.ping_ok(&front, peer_front.ip);
    lab.ping_ok(&back, peer_back.ip);
    lab.ping_ok(&peer_back, back.ip);

    // --default-route moves it.
    tap_without_ip(
        &lab,
        &ns,
        "app-admin",
        "admin",
        &["--ifname", "eth2", "--default-route"],
    );
    assert_eq!(default_routes(&ns), ["10.75.0.1 dev eth2"]);
    // A restart re-creates the three TAPs and leaves the route where it was.
    lab.stop(Signal::SIGTERM);
    lab.start();
    lab.wait_ports_up(std::time::Duration::from_secs(15));
    assert_eq!(default_routes(&ns), ["10.75.0.1 dev eth2"]);
    lab.ping_ok(&back, peer_back.ip);
    // Removing its holder hands it to the first remaining port...
    lab.ctl_ok(&["port", "rm", "app-admin"]);
    assert_eq!(default_routes(&ns), ["10.73.0.1 dev eth0"]);
    // ...and removing that one to the next.
    lab.ctl_ok(&["port", "rm", "app-front"]);
    assert_eq!(default_routes(&ns), ["10.74.0.1 dev eth1"]);
    lab.ping_ok(&back, peer_back.ip);
}
