//! Port lifecycle labs against the real yardd: what a port whose namespace
//! is gone looks like to the user.
//!
//! Needs root; without it each test prints why and returns.

use nix::sys::signal::Signal;
use yard_ctl::api::PortStats;
use yard_tests::cmd::run_ok;
use yard_tests::lab::add_tap;
use yard_tests::{require, Lab, Netns};

#[test]
fn a_port_whose_namespace_is_gone_is_down_and_still_has_stats() {
    if !require(&[]) {
        return;
    }
    let mut lab = Lab::new();
    lab.ctl_ok(&["net", "create", "life", "--subnet", "10.68.0.0/24"]);
    let ns = Netns::new();
    add_tap(
        &lab,
        ns.name().to_string(),
        "gone1",
        "life",
        "10.68.0.2/24",
        &[],
    );

    // The namespace goes away while yardd is stopped; on start the port
    // cannot be re-created and is down.
    lab.stop(Signal::SIGTERM);
    run_ok(&["ip", "netns", "del", ns.name()]);
    lab.start();
    let ports = lab.ctl_json(&["port", "ls"]);
    let port = ports
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "gone1")
        .unwrap_or_else(|| panic!("port ls lost the port: {ports:#}"));
    assert_ne!(port["state"], "up", "{port:#}");

    // `port stats NAME` answers for it like `port stats` does: zeroes.
    let one: Vec<PortStats> = lab.ctl_parse(&["port", "stats", "gone1"]);
    assert_eq!(one.len(), 1, "{one:#?}");
    assert_eq!((one[0].name.as_str(), one[0].rx_packets), ("gone1", 0));
    let all: Vec<PortStats> = lab.ctl_parse(&["port", "stats"]);
    assert!(all.iter().any(|s| s.name == "gone1"), "{all:#?}");
}
