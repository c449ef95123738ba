//! Rendering of the L3 gateway's payloads, for people and for `--json`, and
//! the v2 network fields.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde_json::json;

use super::*;
use crate::api::{
    ConntrackFilter, ConntrackPage, ConntrackQuery, NetworkInfo, NetworkSpec, Payload, Request,
    UplinkSpec,
};
use crate::cli::output::{render_human, render_json};

fn human(request: &Request, payload: &Payload) -> String {
    let mut out = Vec::new();
    render_human(request, payload, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn iface_uplink() -> UplinkInfo {
    UplinkInfo {
        spec: UplinkSpec {
            name: "up0".into(),
            kind: UplinkKind::Iface {
                iface: "veth-up".into(),
            },
            ip: Some("192.168.1.10/24".parse().unwrap()),
            gateway: Some(Ipv4Addr::new(192, 168, 1, 1)),
        },
        mac: Some("02:00:00:00:00:10".parse().unwrap()),
        mtu: 1500,
        state: PortState::Up,
    }
}

fn tap_uplink() -> UplinkInfo {
    UplinkInfo {
        spec: UplinkSpec {
            name: "up1".into(),
            kind: UplinkKind::Tap {
                netns: Some("outside".into()),
                ifname: "eth0".into(),
            },
            ip: Some("10.99.0.2/30".parse().unwrap()),
            gateway: None,
        },
        mac: None,
        mtu: 1500,
        state: PortState::Down("netns outside not found — `ip netns add outside`".into()),
    }
}

fn web_rule() -> PublishInfo {
    let spec: PublishSpec = "8080:c1:80".parse().unwrap();
    PublishInfo {
        rule: spec.to_string(),
        spec,
        target_ip: Some(Ipv4Addr::new(10, 1, 0, 2)),
        state: PortState::Up,
    }
}

fn dns_rule() -> PublishInfo {
    let spec: PublishSpec = "192.168.1.10:5353-5354:10.1.0.3:53-54/udp".parse().unwrap();
    PublishInfo {
        rule: spec.to_string(),
        spec,
        target_ip: None,
        state: PortState::Down("10.1.0.3 is on no network with a subnet".into()),
    }
}

fn tuple(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Tuple {
    Tuple {
        src: src.into(),
        sport,
        dst: dst.into(),
        dport,
    }
}

fn snat_entry() -> ConntrackEntry {
    ConntrackEntry {
        proto: "tcp".into(),
        original: tuple([10, 1, 0, 2], 40000, [93, 184, 216, 34], 443),
        reply: tuple([93, 184, 216, 34], 443, [192, 168, 1, 10], 40000),
        state: "established".into(),
        snat: Some("192.168.1.10:40000".into()),
        dnat: None,
        host: None,
        timeout_secs: 431_999,
        assured: true,
        packets_original: 12,
        bytes_original: 1400,
        packets_reply: 10,
        bytes_reply: 9000,
    }
}

fn icmp_entry() -> ConntrackEntry {
    ConntrackEntry {
        proto: "icmp".into(),
        original: tuple([10, 1, 0, 2], 7, [1, 1, 1, 1], 7),
        reply: tuple([1, 1, 1, 1], 7, [10, 1, 0, 2], 7),
        state: "unreplied".into(),
        snat: None,
        dnat: None,
        host: None,
        timeout_secs: 30,
        assured: false,
        packets_original: 1,
        bytes_original: 84,
        packets_reply: 0,
        bytes_reply: 0,
    }
}

#[test]
fn uplink_ls_table() {
    let text = human(
        &Request::UplinkLs,
        &Payload::Uplinks(vec![iface_uplink(), tap_uplink()]),
    );
    assert_eq!(
        text,
        "NAME   KIND    IFACE/NETNS    IP                GATEWAY       MAC                 MTU    STATE\n\
         up0    iface   veth-up        192.168.1.10/24   192.168.1.1   02:00:00:00:00:10   1500   up\n\
         up1    tap     eth0@outside   10.99.0.2/30      -             -                   1500   \
         down: netns outside not found — `ip netns add outside`\n"
    );
    assert_eq!(
        human(&Request::UplinkLs, &Payload::Uplinks(vec![])),
        "NAME   KIND   IFACE/NETNS   IP   GATEWAY   MAC   MTU   STATE\n"
    );
}

#[test]
fn uplink_mutations() {
    assert_eq!(
        human(
            &Request::UplinkAdd(iface_uplink().spec),
            &Payload::Uplink(iface_uplink())
        ),
        "uplink up0 added (iface veth-up, 192.168.1.10/24, gateway 192.168.1.1, \
         mac 02:00:00:00:00:10, mtu 1500)\n"
    );
    assert_eq!(
        human(
            &Request::UplinkAdd(tap_uplink().spec),
            &Payload::Uplink(tap_uplink())
        ),
        "uplink up1 added (tap eth0 in netns outside, 10.99.0.2/30, mtu 1500), but it is down: \
         netns outside not found — `ip netns add outside`\n"
    );
    assert_eq!(
        human(&Request::UplinkAdd(tap_uplink().spec), &Payload::Done),
        "uplink up1 added\n"
    );
    assert_eq!(
        human(&Request::UplinkRm { name: "up0".into() }, &Payload::Done),
        "uplink up0 removed\n"
    );
}

#[test]
fn publish_ls_table() {
    let text = human(
        &Request::PublishLs,
        &Payload::Publishes(vec![web_rule(), dns_rule()]),
    );
    assert_eq!(
        text,
        "RULE                                        PROTO   HOST                     \
         TARGET           TARGET-IP   STATE\n\
         8080:c1:80/tcp                              tcp     8080                     \
         c1:80            10.1.0.2    up\n\
         192.168.1.10:5353-5354:10.1.0.3:53-54/udp   udp     192.168.1.10:5353-5354   \
         10.1.0.3:53-54   -           down: 10.1.0.3 is on no network with a subnet\n"
    );
}

#[test]
fn publish_mutations() {
    let add = |info: PublishInfo| {
        human(
            &Request::PublishAdd(info.spec.clone()),
            &Payload::Publish(info),
        )
    };
    assert_eq!(
        add(web_rule()),
        "published 8080:c1:80/tcp (c1 is 10.1.0.2)\n"
    );
    assert_eq!(
        add(dns_rule()),
        "published 192.168.1.10:5353-5354:10.1.0.3:53-54/udp, but it is down: \
         10.1.0.3 is on no network with a subnet\n"
    );
    let mut by_address = web_rule();
    by_address.spec.target = "10.1.0.2".into();
    by_address.rule = by_address.spec.to_string();
    assert_eq!(add(by_address), "published 8080:10.1.0.2:80/tcp\n");
    assert_eq!(
        human(&Request::PublishAdd(web_rule().spec), &Payload::Done),
        "published 8080:c1:80/tcp\n"
    );

    let rm = |spec: PublishSpec| human(&Request::PublishRm(spec), &Payload::Done);
    assert_eq!(rm(web_rule().spec), "unpublished 8080:c1:80/tcp\n");
    let host_only = crate::cli::args::nat::publish_rm_spec("192.168.1.10:5353/udp").unwrap();
    assert_eq!(rm(host_only), "unpublished 192.168.1.10:5353/udp\n");
    let host_only = crate::cli::args::nat::publish_rm_spec("8080").unwrap();
    assert_eq!(rm(host_only), "unpublished 8080/tcp\n");
}

#[test]
fn conntrack_ls_table_like_conntrack_l() {
    let text = human(
        &Request::ConntrackLs(ConntrackQuery::default()),
        &Payload::Conntrack(ConntrackPage {
            entries: vec![snat_entry(), icmp_entry()],
            next: None,
        }),
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let col = |name: &str| lines[0].find(name).unwrap();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["PROTO", "STATE", "ORIGINAL", "REPLY", "NAT", "TIMEOUT", "PKTS", "BYTES"]
    );
    assert!(lines[1]
        .starts_with("tcp     established [assured]   10.1.0.2:40000 -> 93.184.216.34:443   "));
    assert_eq!(
        lines[1].find("93.184.216.34:443 -> 192.168.1.10:40000"),
        Some(col("REPLY"))
    );
    assert_eq!(lines[1].find("snat 192.168.1.10:40000"), Some(col("NAT")));
    assert_eq!(lines[1].find("4d 23h59m59s"), Some(col("TIMEOUT")));
    assert_eq!(lines[1].find("12/10"), Some(col("PKTS")));
    assert!(lines[1].ends_with("1400/9000"), "{}", lines[1]);
    assert!(lines[2].starts_with("icmp    unreplied"));
    assert_eq!(
        lines[2].find("10.1.0.2 -> 1.1.1.1 id 7"),
        Some(col("ORIGINAL"))
    );
    assert_eq!(
        lines[2].find("1.1.1.1 -> 10.1.0.2 id 7"),
        Some(col("REPLY"))
    );
    assert_eq!(lines[2].find("- "), Some(col("NAT")));
    assert_eq!(lines[2].find("30s "), Some(col("TIMEOUT")));
    assert_eq!(lines[2].find("1/0 "), Some(col("PKTS")));
    assert!(lines[2].ends_with(" 84/0"), "{}", lines[2]);

    let mut both = snat_entry();
    both.dnat = Some("10.1.0.5:80".into());
    assert_eq!(nat_text(&both), "snat 192.168.1.10:40000, dnat 10.1.0.5:80");

    let mut relayed = snat_entry();
    relayed.snat = None;
    relayed.host = Some("10.9.0.2:51000->198.51.100.7:53".into());
    assert_eq!(nat_text(&relayed), "host 10.9.0.2:51000->198.51.100.7:53");
}

#[test]
fn conntrack_flush_stats_and_settings() {
    let flush = |n| {
        human(
            &Request::ConntrackFlush(ConntrackFilter::default()),
            &Payload::Flushed { removed: n },
        )
    };
    assert_eq!(flush(0), "0 entries removed\n");
    assert_eq!(flush(1), "1 entry removed\n");
    assert_eq!(flush(42), "42 entries removed\n");

    let mut counters = BTreeMap::new();
    counters.insert("inserted".to_string(), 120);
    counters.insert("evicted-unreplied".to_string(), 3);
    counters.insert("drop-no-uplink".to_string(), 0);
    let stats = ConntrackStats {
        entries: 17,
        max_entries: 262_144,
        counters,
        snat_share_percent: None,
        by_state: BTreeMap::from([
            ("ESTABLISHED".to_string(), 15),
            ("TIME_WAIT".to_string(), 2),
        ]),
    };
    assert_eq!(
        human(&Request::ConntrackStats, &Payload::ConntrackStats(stats)),
        "entries:           17\n\
         max entries:       262144\n\
         by state:          ESTABLISHED=15 TIME_WAIT=2\n\
         drop-no-uplink:    0\n\
         evicted-unreplied: 3\n\
         inserted:          120\n"
    );

    let mut timeouts = BTreeMap::new();
    timeouts.insert("tcp-established".to_string(), 432_000);
    timeouts.insert("icmp".to_string(), 30);
    let settings = ConntrackSettings {
        max_entries: Some(65_536),
        timeouts,
        snat_share_percent: None,
    };
    assert_eq!(
        human(
            &Request::ConntrackSet(ConntrackSettings::default()),
            &Payload::ConntrackSettings(settings)
        ),
        "max entries:     65536\n\
         icmp:            30s\n\
         tcp-established: 432000s\n"
    );
}

#[test]
fn the_snat_share_is_shown_with_stats_and_settings() {
    let stats = ConntrackStats {
        entries: 1,
        max_entries: 10,
        counters: BTreeMap::from([("snat-share-reclaimed".to_string(), 7)]),
        snat_share_percent: Some(25),
        by_state: BTreeMap::new(),
    };
    assert_eq!(
        human(
            &Request::ConntrackStats,
            &Payload::ConntrackStats(stats.clone())
        ),
        "entries:              1\n\
         max entries:          10\n\
         snat share:           25% of each port range per container\n\
         snat-share-reclaimed: 7\n"
    );
    assert_eq!(
        render_json(&Payload::ConntrackStats(stats))["snat_share_percent"],
        json!(25)
    );
    let settings = ConntrackSettings {
        max_entries: Some(10),
        timeouts: BTreeMap::new(),
        snat_share_percent: Some(40),
    };
    assert_eq!(
        human(
            &Request::ConntrackSet(ConntrackSettings::default()),
            &Payload::ConntrackSettings(settings)
        ),
        "max entries: 10\n\
         snat share:  40% of each port range per container\n"
    );
}

#[test]
fn json_is_the_payload_data() {
    assert_eq!(
        render_json(&Payload::Flushed { removed: 3 }),
        json!({ "removed": 3 })
    );
    let uplinks = render_json(&Payload::Uplinks(vec![iface_uplink()]));
    assert_eq!(uplinks[0]["name"], "up0");
    assert_eq!(uplinks[0]["kind"], "iface");
    assert_eq!(uplinks[0]["iface"], "veth-up");
    assert_eq!(uplinks[0]["ip"], "192.168.1.10/24");
    let back: Vec<UplinkInfo> = serde_json::from_value(uplinks).unwrap();
    assert_eq!(back, vec![iface_uplink()]);

    let rule = render_json(&Payload::Publish(dns_rule()));
    assert_eq!(rule["rule"], "192.168.1.10:5353-5354:10.1.0.3:53-54/udp");
    assert_eq!(rule["proto"], "udp");
    assert_eq!(rule["target_ip"], json!(null));
    let back: PublishInfo = serde_json::from_value(rule).unwrap();
    assert_eq!(back, dns_rule());

    let entries = render_json(&Payload::Conntrack(ConntrackPage {
        entries: vec![snat_entry()],
        next: None,
    }));
    assert_eq!(entries[0]["original"]["src"], "10.1.0.2");
    assert_eq!(entries[0]["snat"], "192.168.1.10:40000");
    assert_eq!(entries[0]["bytes_reply"], 9000);
    assert_eq!(
        render_json(&Payload::ConntrackStats(ConntrackStats::default())),
        json!({ "entries": 0, "max_entries": 0, "counters": {} })
    );
    assert_eq!(
        render_json(&Payload::ConntrackSettings(ConntrackSettings::default())),
        json!({ "max_entries": null, "timeouts": {} })
    );
}

fn routed(name: &str) -> NetworkInfo {
    let mut spec = NetworkSpec::new(name);
    spec.subnet = Some("10.2.0.0/24".parse().unwrap());
    NetworkInfo {
        spec,
        ports: vec![],
        fdb_entries: 0,
        mac_moves: 0,
        connected: vec!["web".into(), "db".into()],
        overlay_mtu: None,
    }
}

#[test]
fn networks_show_routing() {
    let mut internal = routed("db");
    internal.spec.internal = true;
    let mut no_nat = routed("lab");
    no_nat.spec.masquerade = false;
    no_nat.connected.clear();
    let mut l2 = routed("l2");
    l2.spec.subnet = None;
    l2.connected.clear();
    let table = human(
        &Request::NetLs,
        &Payload::Networks(vec![
            routed("app"),
            internal.clone(),
            no_nat.clone(),
            l2.clone(),
        ]),
    );
    let nat: Vec<&str> = table
        .lines()
        .map(|line| &line[table.find("NAT").unwrap()..])
        .map(|rest| rest.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(nat, ["NAT", "on", "internal", "off", "-"]);

    let inspect = human(
        &Request::NetInspect { name: "db".into() },
        &Payload::Network(internal.clone()),
    );
    assert!(
        inspect.contains(
            "\ninternal:      yes\nmasquerade:    on\nhost loopback: -\nconnected:     web,db\n"
        ),
        "{inspect}"
    );
    let inspect = human(
        &Request::NetInspect { name: "l2".into() },
        &Payload::Network(l2.clone()),
    );
    assert!(
        inspect.contains(
            "\ninternal:      no\nmasquerade:    -\nhost loopback: -\nconnected:     -\n"
        ),
        "{inspect}"
    );

    let created = |n: &NetworkInfo| {
        human(
            &Request::NetCreate(n.spec.clone()),
            &Payload::Network(n.clone()),
        )
    };
    assert_eq!(
        created(&internal),
        "network db created (subnet 10.2.0.0/24, internal, mtu 1500)\n"
    );
    assert_eq!(
        created(&no_nat),
        "network lab created (subnet 10.2.0.0/24, no masquerade, mtu 1500)\n"
    );
    let json = render_json(&Payload::Network(internal));
    assert_eq!(json["internal"], true);
    assert_eq!(json["masquerade"], true);
    assert_eq!(json["connected"], json!(["web", "db"]));
}

#[test]
fn connect_and_disconnect_confirm() {
    let (a, b) = ("web".to_string(), "db".to_string());
    assert_eq!(
        human(
            &Request::NetConnect {
                a: a.clone(),
                b: b.clone()
            },
            &Payload::Done
        ),
        "networks web and db connected\n"
    );
    assert_eq!(
        human(&Request::NetDisconnect { a, b }, &Payload::Done),
        "networks web and db disconnected\n"
    );
}
