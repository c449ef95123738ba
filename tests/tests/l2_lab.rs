//! L2 switching labs: containers on TAP and veth ports reach each
//! other, MACs are learned on the right ports, TCP bulk transfers arrive intact
//! with the kernel's offloads on, jumbo frames pass and oversized ones do not,
//! capture writes pcap, and no kernel bridge is involved anywhere.
//!
//! Needs root; without it each test prints why and returns.

use std::collections::BTreeSet;
use std::fs::File;
use std::time::{Duration, Instant};

use yard_tests::cmd::{describe, in_ns_ok, output, run_ok, stdout};
use yard_tests::lab::sha256;
use yard_tests::{require, Container, Lab};

/// The four-container lab: three TAP containers and one veth
/// container on the default network yard0.
fn four_containers(lab: &mut Lab) -> Vec<Container> {
    vec![
        lab.tap("c1", "yard0", "172.30.0.11/16", &[]),
        lab.tap("c2", "yard0", "172.30.0.12/16", &[]),
        lab.tap("c3", "yard0", "172.30.0.13/16", &[]),
        lab.veth("vc", "yard0", "172.30.0.14/16"),
    ]
}

fn bridge_names(ns: Option<&str>) -> BTreeSet<String> {
    let mut args = vec!["ip"];
    if let Some(ns) = ns {
        args.extend(["-n", ns]);
    }
    args.extend(["-d", "-j", "link", "show", "type", "bridge"]);
    let out = run_ok(&args);
    let text = stdout(&out);
    if text.trim().is_empty() {
        return BTreeSet::new();
    }
    let links: serde_json::Value = serde_json::from_str(&text).expect("ip -j output");
    links
        .as_array()
        .expect("ip -j prints an array")
        .iter()
        .filter_map(|l| l["ifname"].as_str().map(String::from))
        .collect()
}

#[test]
fn every_container_pings_every_other_and_is_learned_on_its_port() {
    if !require(&["ping"]) {
        return;
    }
    let mut lab = Lab::new();
    let all = four_containers(&mut lab);

    // What yardd configured inside a TAP container: address, link up, lo up,
    // default route via the network's gateway.
    let c1 = &all[0];
    let addrs = in_ns_ok(&c1.ns, &["ip", "-j", "addr", "show", "eth0"]);
    let addrs: serde_json::Value = serde_json::from_slice(&addrs.stdout).unwrap();
    let has_addr = addrs[0]["addr_info"].as_array().is_some_and(|a| {
        a.iter()
            .any(|i| i["local"] == "172.30.0.11" && i["prefixlen"] == 16)
    });
    assert!(
        has_addr,
        "eth0 in {} lacks 172.30.0.11/16: {addrs:#}",
        c1.ns
    );
    assert!(
        addrs[0]["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "UP")),
        "eth0 in {} is not up: {addrs:#}",
        c1.ns
    );
    let lo = in_ns_ok(&c1.ns, &["ip", "-j", "link", "show", "lo"]);
    assert!(stdout(&lo).contains("\"UP\""), "lo is not up in {}", c1.ns);
    let route = in_ns_ok(&c1.ns, &["ip", "-j", "route", "show", "default"]);
    let route: serde_json::Value = serde_json::from_slice(&route.stdout).unwrap();
    assert_eq!(
        route[0]["gateway"], "172.30.0.1",
        "default route in {} is not via yard0's gateway: {route:#}",
        c1.ns
    );

    for from in &all {
        for to in &all {
            if from.port != to.port {
                lab.ping_ok(from, to.ip);
            }
        }
    }

    let fdb = lab.fdb(Some("yard0"));
    for c in &all {
        let mac = c.mac();
        let entry = fdb.iter().find(|e| e.mac == mac).unwrap_or_else(|| {
            panic!(
                "{}'s MAC {mac} is not in `fdb show --net yard0`: {fdb:#?}",
                c.port
            )
        });
        assert_eq!(
            entry.port, c.port,
            "{mac} learned on the wrong port: {fdb:#?}"
        );
        assert_eq!(entry.net, "yard0");
        assert!(
            !entry.is_static,
            "a learned entry shows as static: {entry:?}"
        );
    }
    assert!(
        fdb.iter().all(|e| e.net == "yard0"),
        "fdb show --net yard0 lists other networks: {fdb:#?}"
    );

    // port ls describes each port as configured, and up.
    let ports = lab.ctl_json(&["port", "ls"]);
    let ports = ports.as_array().expect("port ls --json is an array");
    assert_eq!(ports.len(), 4, "port ls: {ports:#?}");
    for c in &all {
        let p = ports
            .iter()
            .find(|p| p["name"] == c.port.as_str())
            .unwrap_or_else(|| panic!("port {} missing from port ls: {ports:#?}", c.port));
        assert_eq!(p["net"], "yard0", "{p}");
        assert!(yard_tests::lab::port_is_up(&p["state"]), "port not up: {p}");
        if c.port == "vc" {
            assert_eq!(p["kind"], "iface", "{p}");
        } else {
            assert_eq!(p["kind"], "tap", "{p}");
            assert_eq!(p["netns"], c.ns.as_str(), "{p}");
            assert_eq!(p["ifname"], "eth0", "{p}");
            assert_eq!(p["mac"], c.mac().to_string().as_str(), "{p}");
            assert_eq!(p["mtu"], 1500, "{p}");
            assert_eq!(p["ip"], format!("{}/16", c.ip).as_str(), "{p}");
        }
    }

    // Each port passed frames both ways, and counted them.
    let stats = lab.all_stats();
    for c in &all {
        let s = stats
            .iter()
            .find(|s| s.name == c.port)
            .unwrap_or_else(|| panic!("no stats for {}: {stats:#?}", c.port));
        // 3 peers x 2 echo requests at least, in each direction.
        assert!(s.rx_packets >= 6 && s.tx_packets >= 6, "{s:?}");
        assert!(s.rx_bytes >= 6 * 98 && s.tx_bytes >= 6 * 98, "{s:?}");
    }
}

#[test]
fn tcp_200mb_transfers_arrive_intact_over_tap_and_veth_with_offloads_on() {
    if !require(&["socat", "sha256sum", "ss", "ethtool", "dd"]) {
        return;
    }
    let mut lab = Lab::new();
    let t1 = lab.tap("t1", "yard0", "172.30.1.1/16", &[]);
    let t2 = lab.tap("t2", "yard0", "172.30.1.2/16", &[]);
    let vc = lab.veth("tv", "yard0", "172.30.1.3/16");

    // The veth keeps the kernel's defaults: segmentation and checksum offload
    // on. Nobody runs `ethtool -K`; the switch must cope.
    let features = stdout(&in_ns_ok(&vc.ns, &["ethtool", "-k", "eth0"]));
    for feature in ["tcp-segmentation-offload: on", "tx-checksumming: on"] {
        assert!(
            features.contains(feature),
            "precondition: veth should have {feature}:\n{features}"
        );
    }

    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("source.bin");
    run_ok(&[
        "dd",
        "if=/dev/urandom",
        &format!("of={}", source.display()),
        "bs=1M",
        "count=200",
        "status=none",
    ]);
    assert_eq!(std::fs::metadata(&source).unwrap().len(), 200 * 1024 * 1024);
    let want = sha256(&source);

    for (i, (from, to)) in [(&t1, &t2), (&t1, &vc), (&vc, &t2)].into_iter().enumerate() {
        let received = dir.path().join(format!("received-{i}.bin"));
        lab.tcp_transfer(from, to, &source, &received, 5001 + i as u16, 240);
        let len = std::fs::metadata(&received).map(|m| m.len()).unwrap_or(0);
        assert_eq!(
            len,
            200 * 1024 * 1024,
            "{} -> {}: received {len} bytes",
            from.port,
            to.port
        );
        assert_eq!(
            sha256(&received),
            want,
            "{} -> {}: the received file differs from the one sent",
            from.port,
            to.port
        );
        std::fs::remove_file(&received).unwrap();
    }
}

#[test]
fn capture_writes_pcap_to_a_file_and_to_stdout() {
    if !require(&["ping", "tshark"]) {
        return;
    }
    let mut lab = Lab::new();
    let c1 = lab.tap("c1", "yard0", "172.30.2.1/16", &[]);
    let c2 = lab.tap("c2", "yard0", "172.30.2.2/16", &[]);
    lab.ping_ok(&c1, c2.ip);

    let file = lab.dir().join("c1.pcap");
    let to_file = lab.ctl_command(&["capture", "c1", "-c", "10", "-w", &file.to_string_lossy()]);
    let piped = lab.dir().join("c1-stdout.pcap");
    let mut to_stdout = lab.ctl_command(&["capture", "c1", "-c", "10"]);
    to_stdout.stdout(File::create(&piped).unwrap());

    for (what, mut cmd, path) in [("-w FILE", to_file, file), ("stdout", to_stdout, piped)] {
        let mut child = cmd.spawn().expect("spawn yardctl capture");
        // Keep c1 pinging c2 until the capture has its 10 frames (bounded).
        let deadline = Instant::now() + Duration::from_secs(30);
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            let _ = lab.ping(&c1, c2.ip, 4, 3, &[]);
        }
        let done = child.wait_with_output().expect("wait for capture");
        assert!(
            done.status.success(),
            "capture ({what}) did not finish with 10 frames:\n{}\n{}",
            describe("yardctl capture c1 -c 10", &done),
            lab.log_tail()
        );
        let tshark = output(
            yard_tests::cmd::timed(60, "tshark")
                .args(["-n", "-r"])
                .arg(&path)
                .args(["-T", "fields", "-e", "frame.len", "-e", "icmp.type"]),
        );
        assert!(
            tshark.status.success(),
            "tshark cannot read the capture ({what}):\n{}",
            describe("tshark -r", &tshark)
        );
        let text = stdout(&tshark);
        let frames: Vec<&str> = text.lines().collect();
        assert_eq!(
            frames.len(),
            10,
            "capture ({what}) holds {} frames:\n{text}",
            frames.len()
        );
        let icmp_types: BTreeSet<&str> = frames
            .iter()
            .filter_map(|l| l.split('\t').nth(1))
            .filter(|t| !t.is_empty())
            .collect();
        assert!(
            icmp_types.contains("8") && icmp_types.contains("0"),
            "capture ({what}) lacks ICMP echo requests and replies (types {icmp_types:?}):\n{text}"
        );
    }
}

#[test]
fn no_bridge_device_exists_in_any_namespace_or_on_the_host() {
    if !require(&["ping"]) {
        return;
    }
    let host_before = bridge_names(None);
    let mut lab = Lab::new();
    let b1 = lab.tap("b1", "yard0", "172.30.3.1/16", &[]);
    let b2 = lab.tap("b2", "yard0", "172.30.3.2/16", &[]);
    let bv = lab.veth("bv", "yard0", "172.30.3.3/16");
    lab.ping_ok(&b1, b2.ip);
    lab.ping_ok(&bv, b1.ip);

    for ns in lab.namespaces() {
        let bridges = bridge_names(Some(&ns));
        assert!(
            bridges.is_empty(),
            "bridge device(s) {bridges:?} in namespace {ns}"
        );
    }
    let host_after = bridge_names(None);
    let new: Vec<_> = host_after.difference(&host_before).collect();
    assert!(new.is_empty(), "new bridge device(s) on the host: {new:?}");
}

#[test]
fn jumbo_frames_pass_and_frames_above_the_port_mtu_do_not() {
    if !require(&["ping"]) {
        return;
    }
    let mut lab = Lab::new();
    lab.ctl_ok(&[
        "net",
        "create",
        "jumbo",
        "--subnet",
        "10.66.0.0/24",
        "--mtu",
        "9000",
    ]);
    let j1 = lab.tap("j1", "jumbo", "10.66.0.2/24", &[]);
    let j2 = lab.tap("j2", "jumbo", "10.66.0.3/24", &[]);
    let j3 = lab.tap("j3", "jumbo", "10.66.0.4/24", &["--mtu", "1500"]);
    assert_eq!(j1.mtu(), 9000, "a port takes its network's MTU");
    assert_eq!(j2.mtu(), 9000);
    assert_eq!(j3.mtu(), 1500, "--mtu overrides the network's MTU");

    // 8972 bytes of ICMP payload + 28 of headers = a 9000-byte IP packet.
    lab.ping_ok_with(&j1, j2.ip, &["-M", "do", "-s", "8972"]);
    lab.ping_ok_with(&j2, j1.ip, &["-M", "do", "-s", "8972"]);

    let drops_before: u64 = lab.all_stats().iter().flat_map(|s| s.drops.values()).sum();

    // Egress: a 9000-byte packet towards a port whose MTU is 1500.
    lab.ping_ok_with(&j1, j3.ip, &["-s", "1000"]);
    lab.ping_fails(&j1, j3.ip, &["-M", "do", "-s", "8972"]);

    // Ingress: the container raises its interface MTU above the port's.
    in_ns_ok(&j1.ns, &["ip", "link", "set", "eth0", "mtu", "9200"]);
    lab.ping_fails(&j1, j2.ip, &["-M", "do", "-s", "9100"]);
    lab.ping_ok_with(&j1, j2.ip, &["-M", "do", "-s", "8972"]);

    let drops_after: u64 = lab.all_stats().iter().flat_map(|s| s.drops.values()).sum();
    assert!(
        drops_after > drops_before,
        "oversized frames were not counted as drops (before {drops_before}, after {drops_after}):\n{:#?}",
        lab.all_stats()
    );
}
