//! `yardd --metrics`: after traffic, a scrape of `/metrics` over HTTP
//! passes `promtool check metrics` (Debian's prometheus package), and its
//! values are those `yardctl port stats`, `net ls`, `conntrack stats` and
//! `rule ls` report.
//!
//! Needs root, `promtool` and `curl` (under `CI=true` missing ones fail).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Stdio};

use yard_ctl::api::PortStats;
use yard_tests::cmd::{describe, output, stdout, timed};
use yard_tests::{require, Lab};

/// A free loopback port for the scrape (bound and released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The samples of the exposition text: `name{labels}` → value.
fn samples(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (key, value) = l.rsplit_once(' ').expect("a sample line");
            (key.to_string(), value.parse().expect("an integer value"))
        })
        .collect()
}

#[test]
fn a_scrape_passes_promtool_and_agrees_with_yardctl() {
    if !require(&["promtool", "curl", "ping"]) {
        return;
    }
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut lab = Lab::with_args(&["--metrics", &addr]);
    lab.ctl_ok(&["net", "create", "m", "--subnet", "10.97.0.0/24"]);
    let c1 = lab.tap("c1", "m", "10.97.0.2/24", &[]);
    let c2 = lab.tap("c2", "m", "10.97.0.3/24", &[]);
    lab.ctl_ok(&[
        "rule", "add", "m", "--from", "c1", "--proto", "icmp", "allow",
    ]);
    lab.ping_ok(&c1, c2.ip);
    lab.ping_ok(&c2, "10.97.0.1".parse().unwrap());

    let url = format!("http://{addr}/metrics");
    let scraped = output(timed(15, "curl").args(["-sf", "--max-time", "10", &url]));
    assert!(
        scraped.status.success(),
        "{}",
        describe(&format!("curl {url}"), &scraped)
    );
    let text = stdout(&scraped).to_string();

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success() && checked.stdout.is_empty() && checked.stderr.is_empty(),
        "{}\n{text}",
        describe("promtool check metrics", &checked)
    );

    // The values are yardctl's. Traffic has stopped, so a later listing
    // agrees with the scrape.
    let values = samples(&text);
    let stats: Vec<PortStats> = lab.ctl_parse(&["port", "stats"]);
    for port in ["c1", "c2"] {
        let s = stats.iter().find(|s| s.name == port).unwrap();
        let at = |name: &str| values[&format!("{name}{{port=\"{port}\"}}")];
        assert_eq!(
            (
                at("switchyard_port_receive_packets_total"),
                at("switchyard_port_receive_bytes_total"),
                at("switchyard_port_transmit_packets_total"),
                at("switchyard_port_transmit_bytes_total"),
            ),
            (s.rx_packets, s.rx_bytes, s.tx_packets, s.tx_bytes),
            "{port}"
        );
        assert!(s.rx_packets > 0, "{port} saw no traffic");
    }
    let net = lab.ctl_json(&["net", "inspect", "m"]);
    assert_eq!(
        values["switchyard_network_fdb_entries{network=\"m\"}"],
        net["fdb_entries"].as_u64().unwrap()
    );
    let ct = lab.ctl_json(&["conntrack", "stats"]);
    assert_eq!(
        values["switchyard_conntrack_entries_limit"],
        ct["max_entries"].as_u64().unwrap()
    );
    assert_eq!(
        values["switchyard_gateway_events_total{event=\"echo-replies\"}"],
        ct["counters"]["gw-echo-replies"].as_u64().unwrap()
    );

    let rules = lab.ctl_json(&["rule", "ls", "m"]);
    let hits = rules[0]["hits"].as_u64().unwrap();
    assert!(hits > 0, "the rule decided c1's ping: {rules:#}");
    assert_eq!(
        values["switchyard_rule_hits_total{network=\"m\",position=\"1\",action=\"allow\"}"],
        hits
    );

    // Anything but /metrics is a 404 that says where they are.
    let other = output(timed(15, "curl").args([
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("http://{addr}/"),
    ]));
    assert_eq!(stdout(&other).trim(), "404");
}
