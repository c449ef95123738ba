//! Rendering of every payload, for people and for `--json`.

use std::collections::BTreeMap;

use super::*;
use crate::api::{NetworkSpec, PortSpec};

fn human(request: &Request, payload: &Payload) -> String {
    let mut out = Vec::new();
    render_human(request, payload, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn web() -> NetworkInfo {
    let mut spec = NetworkSpec::new("web");
    spec.subnet = Some("10.1.0.0/24".parse().unwrap());
    spec.gateway = Some("10.1.0.1".parse().unwrap());
    NetworkInfo {
        spec,
        ports: vec!["c1".into(), "c2".into()],
        fdb_entries: 3,
        mac_moves: 0,
        connected: vec![],
        overlay_mtu: None,
    }
}

fn l2() -> NetworkInfo {
    let mut spec = NetworkSpec::new("lab");
    spec.icc = false;
    spec.vlan = Some(100);
    spec.mtu = 9000;
    NetworkInfo {
        spec,
        ports: vec![],
        fdb_entries: 0,
        mac_moves: 2,
        connected: vec![],
        overlay_mtu: None,
    }
}

fn tap_port() -> PortInfo {
    PortInfo {
        spec: PortSpec {
            name: "c1".into(),
            kind: PortKind::tap("web", Some("c1"), Some("10.1.0.2/24".parse().unwrap())),
        },
        mac: Some("02:00:00:00:00:02".parse().unwrap()),
        mtu: 1500,
        state: PortState::Up,
        thread: None,
    }
}

fn trunk_port() -> PortInfo {
    PortInfo {
        spec: PortSpec {
            name: "t0".into(),
            kind: PortKind::Trunk {
                iface: "eth1".into(),
                nets: vec!["red".into(), "blue".into()],
            },
        },
        mac: None,
        mtu: 1500,
        state: PortState::Down("eth1 not found — create it or `yardctl port rm t0`".into()),
        thread: None,
    }
}

fn gre_port() -> PortInfo {
    PortInfo {
        spec: PortSpec {
            name: "tB".into(),
            kind: PortKind::Gre {
                net: "web".into(),
                remote: "192.168.50.2".parse().unwrap(),
                local: None,
                key: Some(42),
                csum: false,
                seq: false,
            },
        },
        mac: None,
        mtu: 1458,
        state: PortState::Up,
        thread: None,
    }
}

fn gre_udp_port() -> PortInfo {
    PortInfo {
        spec: PortSpec {
            name: "tU".into(),
            kind: PortKind::GreUdp {
                net: "lab".into(),
                remote: "198.51.100.7:4754".parse().unwrap(),
                local: Some("10.0.0.1:4800".parse().unwrap()),
                key: None,
                csum: true,
                seq: true,
            },
        },
        mac: None,
        mtu: 1430,
        state: PortState::Down("cannot bind 10.0.0.1:4800: address in use".into()),
        thread: None,
    }
}

#[test]
fn net_ls_table() {
    let text = human(&Request::NetLs, &Payload::Networks(vec![web(), l2()]));
    assert_eq!(
        text,
        "NAME   SUBNET        GATEWAY    NAT   VLAN   ICC   MTU    PORTS\n\
         web    10.1.0.0/24   10.1.0.1   on    -      on    1500   2\n\
         lab    -             -          -     100    off   9000   0\n"
    );
}

#[test]
fn port_ls_table() {
    let text = human(
        &Request::PortLs,
        &Payload::Ports(vec![tap_port(), trunk_port()]),
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "KIND",
            "NETWORK(S)",
            "NETNS",
            "IFNAME",
            "IP",
            "MAC",
            "MTU",
            "STATE"
        ]
    );
    let tap: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        tap,
        [
            "c1",
            "tap",
            "web",
            "c1",
            "eth0",
            "10.1.0.2/24",
            "02:00:00:00:00:02",
            "1500",
            "up"
        ]
    );
    assert!(lines[2].starts_with("t0 "));
    assert!(lines[2].contains(" trunk "));
    assert!(lines[2].contains(" red,blue "));
    assert!(lines[2].ends_with("down: eth1 not found — create it or `yardctl port rm t0`"));
    // Every column starts where its header does.
    let col = |name: &str| lines[0].find(name).unwrap();
    assert_eq!(lines[1].find("10.1.0.2/24"), Some(col("IP")));
    assert_eq!(lines[2].find("down:"), Some(col("STATE")));
}

#[test]
fn port_stats_table_lists_drop_reasons() {
    let mut drops = BTreeMap::new();
    drops.insert("no-route".to_string(), 4);
    drops.insert("icc-denied".to_string(), 1);
    drops.insert("zero".to_string(), 0);
    let stats = vec![
        PortStats {
            name: "c1".into(),
            rx_packets: 10,
            rx_bytes: 1200,
            tx_packets: 8,
            tx_bytes: 900,
            drops,
        },
        PortStats {
            name: "c2".into(),
            ..PortStats::default()
        },
    ];
    let text = human(
        &Request::PortStats { name: None },
        &Payload::PortStats(stats),
    );
    assert_eq!(
        text,
        "NAME   RX-PKTS   RX-BYTES   TX-PKTS   TX-BYTES   DROPS\n\
         c1     10        1200       8         900        icc-denied=1,no-route=4\n\
         c2     0         0          0         0          -\n"
    );
}

#[test]
fn fdb_table() {
    let entries = vec![
        FdbEntry {
            net: "web".into(),
            mac: "02:00:00:00:00:02".parse().unwrap(),
            port: "c1".into(),
            is_static: false,
            age_secs: Some(12),
        },
        FdbEntry {
            net: "web".into(),
            mac: "02:00:00:00:00:09".parse().unwrap(),
            port: "up0".into(),
            is_static: true,
            age_secs: None,
        },
    ];
    let text = human(&Request::FdbShow { net: None }, &Payload::Fdb(entries));
    assert_eq!(
        text,
        "NETWORK   MAC                 PORT   TYPE      AGE\n\
         web       02:00:00:00:00:02   c1     learned   12s\n\
         web       02:00:00:00:00:09   up0    static    -\n"
    );
}

#[test]
fn inspect_and_status_are_key_value_lines() {
    let text = human(
        &Request::NetInspect { name: "web".into() },
        &Payload::Network(web()),
    );
    assert!(
        text.starts_with("name:          web\nsubnet:        10.1.0.0/24\n"),
        "{text}"
    );
    assert!(text.contains("\nports:         c1,c2\n"), "{text}");
    assert!(text.ends_with("mac moves:     0\n"), "{text}");

    let status = StatusInfo {
        version: "0.1.0".into(),
        api_version: 1,
        pid: 4242,
        uptime_secs: 3723,
        socket: "/run/switchyard/yardd.sock".into(),
        state_dir: "/var/lib/switchyard".into(),
        networks: 1,
        ports: 0,
        tunnel_gro: crate::api::TunnelGro {
            frames: 2,
            segments: 90,
        },
        tunnel_drops: [
            ("bad-checksum".to_string(), 3),
            ("unknown-tunnel".to_string(), 1),
        ]
        .into_iter()
        .collect(),
        datapath_threads: 2,
        mode: crate::api::DaemonMode::Rootless { uid: 1000 },
    };
    let text = human(&Request::Status, &Payload::Status(status.clone()));
    assert!(
        text.contains("mode:         rootless (uid 1000)\n"),
        "{text}"
    );
    assert!(text.contains("threads:      2\n"), "{text}");
    assert!(
        text.contains("tunnel drops: bad-checksum=3 unknown-tunnel=1\n"),
        "{text}"
    );
    assert!(
        text.contains("tunnel GRO:   90 segments merged into 2 frames\n"),
        "{text}"
    );
    assert!(text.contains("uptime:       1h02m03s\n"), "{text}");
    assert!(
        text.contains("socket:       /run/switchyard/yardd.sock\n"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 12);
    let json = crate::cli::output::render_json(&Payload::Status(status));
    assert_eq!(
        json["mode"],
        serde_json::json!({"kind": "rootless", "uid": 1000})
    );
    assert_eq!(
        json["tunnel_gro"],
        serde_json::json!({"frames": 2, "segments": 90})
    );
    for (mode, shown) in [
        (crate::api::DaemonMode::Root, "root"),
        (
            crate::api::DaemonMode::UserNamespace { outer_uid: None },
            "rootless (user namespace)",
        ),
    ] {
        assert_eq!(mode.to_string(), shown);
    }
}

#[test]
fn mutations_print_one_short_line() {
    let created = human(&Request::NetCreate(web().spec), &Payload::Network(web()));
    assert_eq!(
        created,
        "network web created (subnet 10.1.0.0/24, gateway 10.1.0.1, mtu 1500)\n"
    );
    assert_eq!(
        human(&Request::NetCreate(l2().spec), &Payload::Network(l2())),
        "network lab created (L2 only, vlan 100, mtu 9000)\n"
    );
    assert_eq!(
        human(&Request::NetRm { name: "web".into() }, &Payload::Done),
        "network web removed\n"
    );
    assert_eq!(
        human(
            &Request::PortAdd(tap_port().spec),
            &Payload::Port(tap_port())
        ),
        "port c1 added (tap, eth0 in netns c1, 10.1.0.2/24, mac 02:00:00:00:00:02, mtu 1500)\n"
    );
    let down = human(
        &Request::PortAdd(trunk_port().spec),
        &Payload::Port(trunk_port()),
    );
    assert!(
        down.starts_with("port t0 added (trunk, mtu 1500), but it is down: eth1"),
        "{down}"
    );
    assert_eq!(
        human(&Request::PortRm { name: "c1".into() }, &Payload::Done),
        "port c1 removed\n"
    );
    assert_eq!(
        human(&Request::FdbFlush { net: None }, &Payload::Done),
        "learned entries flushed from every network\n"
    );
}

#[test]
fn json_is_the_payload_data() {
    assert_eq!(render_json(&Payload::Done), json!({ "ok": true }));
    let ports = render_json(&Payload::Ports(vec![tap_port()]));
    assert_eq!(ports[0]["name"], "c1");
    assert_eq!(ports[0]["kind"], "tap");
    assert_eq!(ports[0]["netns"], "c1");
    // One level: `state`, and a down port's `reason` beside it.
    assert_eq!(ports[0]["state"], "up");
    assert!(ports[0].get("reason").is_none(), "{ports:#}");
    let back: Vec<PortInfo> = serde_json::from_value(ports).unwrap();
    assert_eq!(back, vec![tap_port()]);
    let mut down = tap_port();
    down.state = PortState::Down("namespace gone".into());
    let ports = render_json(&Payload::Ports(vec![down.clone()]));
    assert_eq!(
        (&ports[0]["state"], &ports[0]["reason"]),
        (&json!("down"), &json!("namespace gone"))
    );
    let back: Vec<PortInfo> = serde_json::from_value(ports).unwrap();
    assert_eq!(back, vec![down]);
    let net = render_json(&Payload::Network(web()));
    assert_eq!(net["subnet"], "10.1.0.0/24");
    assert_eq!(net["ports"], json!(["c1", "c2"]));
    let nets = render_json(&Payload::Networks(vec![]));
    assert_eq!(nets, json!([]));
}

#[test]
fn durations() {
    assert_eq!(format_duration(0), "0s");
    assert_eq!(format_duration(59), "59s");
    assert_eq!(format_duration(61), "1m01s");
    assert_eq!(format_duration(3600), "1h00m00s");
    assert_eq!(format_duration(90_061), "1d 01h01m01s");
}

#[test]
fn port_ls_shows_tunnels_in_their_own_column() {
    let text = human(
        &Request::PortLs,
        &Payload::Ports(vec![tap_port(), gre_port(), gre_udp_port()]),
    );
    assert_eq!(
        text,
        "NAME   KIND      NETWORK(S)   NETNS   IFNAME   IP            MAC                 MTU    \
         TUNNEL                                                  STATE\n\
         c1     tap       web          c1      eth0     10.1.0.2/24   02:00:00:00:00:02   1500   \
         -                                                       up\n\
         tB     gre       web          -       -        -             -                   1458   \
         remote 192.168.50.2 key 42                              up\n\
         tU     gre-udp   lab          -       -        -             -                   1430   \
         remote 198.51.100.7:4754 local 10.0.0.1:4800 csum seq   \
         down: cannot bind 10.0.0.1:4800: address in use\n"
    );
    // Without tunnels, the table keeps its usual columns.
    let plain = human(&Request::PortLs, &Payload::Ports(vec![tap_port()]));
    assert!(!plain.contains("TUNNEL"), "{plain}");
}

#[test]
fn port_ls_shows_the_reading_thread_when_yardd_runs_several() {
    let mut c1 = tap_port();
    c1.thread = Some(1);
    let mut t0 = trunk_port();
    t0.thread = None;
    let text = human(&Request::PortLs, &Payload::Ports(vec![c1, t0]));
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0][8..], ["THREAD", "STATE"], "{text}");
    assert_eq!(lines[1][8..], ["1", "up"], "{text}");
    assert_eq!(lines[2][8], "-", "a port no thread reads: {text}");
    let json = render_json(&Payload::Ports(vec![tap_port()]));
    assert_eq!(json[0]["thread"], json!(null));
}

#[test]
fn adding_a_tunnel_names_its_far_end_and_overlay_mtu() {
    assert_eq!(
        human(
            &Request::PortAdd(gre_port().spec),
            &Payload::Port(gre_port())
        ),
        "port tB added (gre to 192.168.50.2, key 42, overlay mtu 1458)\n"
    );
    assert_eq!(
        human(
            &Request::PortAdd(gre_udp_port().spec),
            &Payload::Port(gre_udp_port())
        ),
        "port tU added (gre-udp to 198.51.100.7:4754, from 10.0.0.1:4800, csum, seq, \
         overlay mtu 1430), but it is down: cannot bind 10.0.0.1:4800: address in use\n"
    );
}

#[test]
fn net_inspect_shows_the_overlay_mtu() {
    let text = human(
        &Request::NetInspect { name: "web".into() },
        &Payload::Network(web()),
    );
    assert!(
        text.contains("\nmtu:           1500\noverlay mtu:   -\n"),
        "{text}"
    );
    let mut tunnelled = web();
    tunnelled.overlay_mtu = Some(1458);
    let text = human(
        &Request::NetInspect { name: "web".into() },
        &Payload::Network(tunnelled.clone()),
    );
    assert!(text.contains("\noverlay mtu:   1458\n"), "{text}");
    assert_eq!(
        render_json(&Payload::Network(tunnelled))["overlay_mtu"],
        1458
    );
}

#[test]
fn tunnel_json_is_the_api_form() {
    let ports = render_json(&Payload::Ports(vec![gre_port(), gre_udp_port()]));
    assert_eq!(ports[0]["kind"], "gre");
    assert_eq!(ports[0]["remote"], "192.168.50.2");
    assert_eq!(ports[0]["key"], 42);
    assert_eq!(ports[1]["kind"], "gre-udp");
    assert_eq!(ports[1]["remote"], "198.51.100.7:4754");
    assert_eq!(ports[1]["local"], "10.0.0.1:4800");
    let back: Vec<PortInfo> = serde_json::from_value(ports).unwrap();
    assert_eq!(back, vec![gre_port(), gre_udp_port()]);
}

#[test]
fn port_ls_shows_port_security_when_a_tap_differs_from_the_default() {
    let mut open = tap_port();
    open.spec.name = "c2".into();
    if let PortKind::Tap { port_security, .. } = &mut open.spec.kind {
        *port_security = false;
    }
    let mut router = tap_port();
    router.spec.name = "r1".into();
    if let PortKind::Tap {
        allowed_addresses, ..
    } = &mut router.spec.kind
    {
        *allowed_addresses = vec![
            "10.8.0.0/24".parse().unwrap(),
            "02:42:0a:08:00:01".parse().unwrap(),
        ];
    }
    let text = human(
        &Request::PortLs,
        &Payload::Ports(vec![tap_port(), open.clone(), router.clone(), trunk_port()]),
    );
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let column = rows[0]
        .iter()
        .position(|h| *h == "SECURITY")
        .unwrap_or_else(|| panic!("no SECURITY column: {text}"));
    let cells: Vec<&str> = rows[1..].iter().map(|r| r[column]).collect();
    assert_eq!(
        cells,
        ["on", "off", "on", "-"],
        "the router's cell goes on with its addresses: {text}"
    );
    assert!(text.contains("on +10.8.0.0/24,02:42:0a:08:00:01"), "{text}");

    let added = human(&Request::PortAdd(open.spec.clone()), &Payload::Port(open));
    assert!(added.contains(", port security off)"), "{added}");
    let added = human(
        &Request::PortAdd(router.spec.clone()),
        &Payload::Port(router),
    );
    assert!(
        added.contains(", also allowed 10.8.0.0/24 02:42:0a:08:00:01)"),
        "{added}"
    );
}

#[test]
fn mdb_table_lists_groups_and_router_ports() {
    let entries = vec![
        MdbEntry {
            net: "web".into(),
            port: "c1".into(),
            group: Some("239.1.2.3".parse().unwrap()),
            expires_secs: Some(259),
        },
        MdbEntry {
            net: "web".into(),
            port: "c2".into(),
            group: Some("ff02::1:ff00:2".parse().unwrap()),
            expires_secs: Some(3),
        },
        MdbEntry {
            net: "web".into(),
            port: "t0".into(),
            group: None,
            expires_secs: None,
        },
    ];
    let text = human(
        &Request::MdbShow { net: None },
        &Payload::Mdb(entries.clone()),
    );
    assert_eq!(
        text,
        "NETWORK   GROUP            PORT   EXPIRES\n\
         web       239.1.2.3        c1     259s\n\
         web       ff02::1:ff00:2   c2     3s\n\
         web       * (router)       t0     -\n"
    );
    let json = render_json(&Payload::Mdb(entries));
    assert_eq!(json[0]["group"], "239.1.2.3");
    assert_eq!(json[2]["group"], serde_json::Value::Null);
    assert_eq!(json[1]["expires_secs"], 3);
}

#[test]
fn qemu_ports_show_their_socket_and_why_they_wait() {
    let stream = PortInfo {
        spec: PortSpec {
            name: "vm1".into(),
            kind: PortKind::QemuStream {
                net: "web".into(),
                path: "/run/vm1.sock".into(),
            },
        },
        mac: None,
        mtu: 1500,
        state: PortState::Down(
            "no VM connected yet; waiting for QEMU to connect to /run/vm1.sock".into(),
        ),
        thread: None,
    };
    let dgram = PortInfo {
        spec: PortSpec {
            name: "vm2".into(),
            kind: PortKind::QemuDgram {
                net: "web".into(),
                addr: crate::api::QemuDgramAddr::Udp("127.0.0.1:5555".parse().unwrap()),
            },
        },
        mac: None,
        mtu: 1500,
        state: PortState::Up,
        thread: None,
    };
    let text = human(
        &Request::PortLs,
        &Payload::Ports(vec![stream.clone(), dgram]),
    );
    let vm1 = text.lines().find(|l| l.starts_with("vm1")).unwrap();
    assert!(
        vm1.contains("qemu-stream")
            && vm1.contains("/run/vm1.sock")
            && vm1.contains("waiting for QEMU"),
        "{text}"
    );
    let vm2 = text.lines().find(|l| l.starts_with("vm2")).unwrap();
    assert!(
        vm2.contains("qemu-dgram") && vm2.contains("127.0.0.1:5555") && vm2.ends_with("up"),
        "{text}"
    );
    let added = human(
        &Request::PortAdd(stream.spec.clone()),
        &Payload::Port(stream),
    );
    assert!(
        added.contains("qemu-stream, /run/vm1.sock, mtu 1500"),
        "{added}"
    );
}
