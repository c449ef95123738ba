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
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (key, value) = l.rsplit_once(' ').expect("a sample line");
            (key.to_string(), value.parse().expect("a number"))
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
    // A routed flow, for conntrack's states.
    lab.ctl_ok(&["net", "create", "m2", "--subnet", "10.98.0.0/24"]);
    lab.ctl_ok(&["net", "connect", "m", "m2"]);
    let c3 = lab.tap("c3", "m2", "10.98.0.2/24", &[]);
    lab.ping_ok(&c1, c3.ip);

    // yardd's own multicast queries may still go out: the scrape is
    // bracketed by two listings, and its counters lie between them.
    let before: Vec<PortStats> = lab.ctl_parse(&["port", "stats"]);
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

    // The values are yardctl's: each lies between the listings taken just
    // before and just after the scrape.
    let values = samples(&text);
    let after: Vec<PortStats> = lab.ctl_parse(&["port", "stats"]);
    let counters = |s: &PortStats| [s.rx_packets, s.rx_bytes, s.tx_packets, s.tx_bytes];
    for port in ["c1", "c2"] {
        let find = |list: &[PortStats]| counters(list.iter().find(|s| s.name == port).unwrap());
        let (low, high) = (find(&before), find(&after));
        let at = |name: &str| values[&format!("{name}{{port=\"{port}\"}}")] as u64;
        let scraped = [
            at("switchyard_port_receive_packets_total"),
            at("switchyard_port_receive_bytes_total"),
            at("switchyard_port_transmit_packets_total"),
            at("switchyard_port_transmit_bytes_total"),
        ];
        for i in 0..4 {
            assert!(
                (low[i]..=high[i]).contains(&scraped[i]),
                "{port}: scraped {scraped:?}, yardctl before {low:?}, after {high:?}"
            );
        }
        assert!(low[0] > 0, "{port} saw no traffic");
    }
    let net = lab.ctl_json(&["net", "inspect", "m"]);
    assert_eq!(
        values["switchyard_network_fdb_entries{network=\"m\"}"] as u64,
        net["fdb_entries"].as_u64().unwrap()
    );
    let ct = lab.ctl_json(&["conntrack", "stats"]);
    assert_eq!(
        values["switchyard_conntrack_entries_limit"] as u64,
        ct["max_entries"].as_u64().unwrap()
    );
    assert_eq!(
        values["switchyard_gateway_events_total{event=\"echo-replies\"}"] as u64,
        ct["counters"]["gw_echo_replies"].as_u64().unwrap()
    );
    // Connections by state, as `conntrack stats` counts them.
    let by_state = ct["by_state"].as_object().cloned().unwrap_or_default();
    assert!(!by_state.is_empty(), "no connection tracked: {ct}");
    for (state, n) in by_state {
        let state = state.to_ascii_uppercase();
        assert_eq!(
            values[&format!("switchyard_conntrack_entries_by_state{{state=\"{state}\"}}")] as u64,
            n.as_u64().unwrap(),
            "{state}"
        );
    }
    // The datapath thread's CPU time (a few pings may take less
    // than the kernel's 10 ms tick: only its presence is certain).
    let key = "switchyard_thread_cpu_seconds_total{thread=\"datapath-0\"}";
    assert!(
        values.get(key).is_some_and(|&s| s >= 0.0),
        "no {key} in:\n{text}"
    );

    let rules = lab.ctl_json(&["rule", "ls", "m"]);
    let hits = rules[0]["hits"].as_u64().unwrap();
    assert!(hits > 0, "the rule decided c1's ping: {rules:#}");
    assert_eq!(
        values["switchyard_rule_hits_total{network=\"m\",position=\"1\",action=\"allow\"}"] as u64,
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
