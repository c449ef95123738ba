//! `uplink`, `publish` and `conntrack` command lines → requests, and the
//! combinations refused before anything is sent.

use super::*;
use crate::cli::args::tests::{cidr, ok, parse, refused};

fn refused_with(cases: &[(&str, &str)]) {
    for (line, expect) in cases {
        let message = refused(line);
        assert!(message.contains(expect), "`{line}`: {message}");
    }
}

#[test]
fn uplink_on_an_existing_interface() {
    assert_eq!(
        ok("uplink add up0 --iface veth-up --ip 192.168.1.10/24 --gateway 192.168.1.1"),
        Request::UplinkAdd(UplinkSpec {
            name: "up0".into(),
            kind: UplinkKind::Iface {
                iface: "veth-up".into(),
            },
            ip: Some(cidr("192.168.1.10/24")),
            gateway: Some(Ipv4Addr::new(192, 168, 1, 1)),
        })
    );
}

#[test]
fn uplink_on_a_tap() {
    assert_eq!(
        ok("uplink add up0 --tap --ip 10.99.0.2/30"),
        Request::UplinkAdd(UplinkSpec {
            name: "up0".into(),
            kind: UplinkKind::Tap {
                netns: None,
                ifname: "eth0".into(),
            },
            ip: Some(cidr("10.99.0.2/30")),
            gateway: None,
        })
    );
    assert_eq!(
        ok("uplink add up1 --tap --netns outside --ifname wan0 --ip 10.99.0.2/30 --gateway 10.99.0.1"),
        Request::UplinkAdd(UplinkSpec {
            name: "up1".into(),
            kind: UplinkKind::Tap {
                netns: Some("outside".into()),
                ifname: "wan0".into(),
            },
            ip: Some(cidr("10.99.0.2/30")),
            gateway: Some(Ipv4Addr::new(10, 99, 0, 1)),
        })
    );
    // A point-to-point /31 has no network or broadcast address (RFC 3021).
    ok("uplink add p2p --tap --ip 10.0.0.0/31 --gateway 10.0.0.1");
}

#[test]
fn uplink_through_host_sockets() {
    assert_eq!(
        ok("uplink add host0 --host"),
        Request::UplinkAdd(UplinkSpec {
            name: "host0".into(),
            kind: UplinkKind::Host,
            ip: None,
            gateway: None,
        })
    );
    refused_with(&[
        (
            "uplink add u --host --ip 10.0.0.2/24",
            "--ip does not apply to host uplinks",
        ),
        (
            "uplink add u --host --gateway 10.0.0.1",
            "--gateway does not apply to host uplinks",
        ),
        (
            "uplink add u --host --netns x",
            "--netns does not apply to host uplinks",
        ),
        (
            "uplink add u --host --tap",
            "--iface, --tap and --host are different uplink kinds",
        ),
        (
            "uplink add u --tap",
            "--iface and --tap uplinks need --ip CIDR",
        ),
    ]);
}

#[test]
fn uplink_rm_and_ls() {
    assert_eq!(ok("uplink ls"), Request::UplinkLs);
    assert_eq!(
        ok("uplink rm up0"),
        Request::UplinkRm { name: "up0".into() }
    );
}

#[test]
fn invalid_uplinks_are_refused() {
    refused_with(&[
        (
            "uplink add u --ip 10.0.0.2/24",
            "say how to attach the uplink: --iface DEV",
        ),
        (
            "uplink add u --iface e0 --tap --ip 10.0.0.2/24",
            "--iface, --tap and --host are different uplink kinds",
        ),
        (
            "uplink add u --iface e0 --netns x --ip 10.0.0.2/24",
            "--netns does not apply to iface uplinks",
        ),
        (
            "uplink add u --iface e0 --ifname eth0 --ip 10.0.0.2/24",
            "--ifname does not apply to iface uplinks",
        ),
        (
            "uplink add u --tap --ifname averyveryverylongname --ip 10.0.0.2/24",
            "at most 15 bytes",
        ),
        (
            "uplink add u --iface a:b --ip 10.0.0.2/24",
            "may not contain '/', ':'",
        ),
        (
            "uplink add u --tap --ip 10.0.0.2/24 --gateway 10.0.1.1",
            "--gateway 10.0.1.1 is not a neighbour of --ip 10.0.0.2/24: it lies outside \
             10.0.0.0/24; the next hop must be on the uplink's own subnet",
        ),
        (
            "uplink add u --tap --ip 10.0.0.2/24 --gateway 10.0.0.2",
            "it is the uplink's own address",
        ),
        (
            "uplink add u --tap --ip 10.0.0.2/24 --gateway 10.0.0.0",
            "network address of 10.0.0.0/24",
        ),
        (
            "uplink add u --tap --ip 10.0.0.2/24 --gateway 10.0.0.255",
            "broadcast address of 10.0.0.0/24",
        ),
        (
            "uplink add u --tap --ip 10.0.0.2/32 --gateway 10.0.0.1",
            "lies outside 10.0.0.2/32",
        ),
        (
            "uplink add u --tap --ip 10.0.0.0/24",
            "--ip 10.0.0.0/24 is not a host address: it is the network address of \
             10.0.0.0/24; give the uplink's own address, e.g. 10.0.0.1/24",
        ),
        ("uplink add u --tap --ip 10.0.0.255/24", "broadcast address"),
        ("uplink add u --tap --ip 127.0.0.1/8", "not a host address"),
        ("uplink add u --tap --ip 224.0.0.1/4", "not a host address"),
    ]);
}

#[test]
fn publish_add_takes_docker_specs() {
    assert_eq!(
        ok("publish add 8080:c1:80/tcp"),
        Request::PublishAdd(PublishSpec {
            host_ip: None,
            host_ports: (8080, 8080),
            target: "c1".into(),
            target_ports: (80, 80),
            proto: Transport::Tcp,
        })
    );
    assert_eq!(
        ok("publish add 192.168.1.10:5000-5002:10.1.0.2:6000-6002/udp"),
        Request::PublishAdd(PublishSpec {
            host_ip: Some(Ipv4Addr::new(192, 168, 1, 10)),
            host_ports: (5000, 5002),
            target: "10.1.0.2".into(),
            target_ports: (6000, 6002),
            proto: Transport::Udp,
        })
    );
    // Docker's "every address" is the uplink's address here.
    assert_eq!(
        ok("publish add 0.0.0.0:8080:c1:80"),
        ok("publish add 8080:c1:80")
    );
    assert_eq!(ok("publish ls"), Request::PublishLs);
}

#[test]
fn invalid_publish_specs_are_refused() {
    refused_with(&[
        ("publish add 8080", "'8080' is not a published port"),
        ("publish add 8080:c1:80/sctp", "tcp or udp"),
        ("publish add 8080-8081:c1:80", "differ in length"),
        ("publish add 0:c1:80", "1-65535"),
        ("publish add 8080::80", "the target is empty"),
        ("publish add 1.2.3:8080:c1:80", "not IPv4"),
        ("publish add x:c1:80", "e.g. 8080:c1:80/tcp"),
    ]);
}

#[test]
fn publish_rm_takes_a_rule_or_its_host_part() {
    let full = PublishSpec {
        host_ip: None,
        host_ports: (8080, 8080),
        target: "c1".into(),
        target_ports: (80, 80),
        proto: Transport::Tcp,
    };
    assert_eq!(
        ok("publish rm 8080:c1:80/tcp"),
        Request::PublishRm(full.clone())
    );
    let host_only = |host_ip, port, proto| PublishSpec {
        host_ip,
        host_ports: (port, port),
        target: String::new(),
        target_ports: (port, port),
        proto,
    };
    for (line, want) in [
        ("publish rm 8080", host_only(None, 8080, Transport::Tcp)),
        ("publish rm 8080/tcp", host_only(None, 8080, Transport::Tcp)),
        ("publish rm 5353/udp", host_only(None, 5353, Transport::Udp)),
        (
            "publish rm 192.168.1.10:8080/udp",
            host_only(Some(Ipv4Addr::new(192, 168, 1, 10)), 8080, Transport::Udp),
        ),
        (
            "publish rm 0.0.0.0:8080",
            host_only(None, 8080, Transport::Tcp),
        ),
    ] {
        assert_eq!(ok(line), Request::PublishRm(want), "`{line}`");
    }
    assert_eq!(
        ok("publish rm 9000-9002"),
        Request::PublishRm(PublishSpec {
            host_ports: (9000, 9002),
            target_ports: (9000, 9002),
            ..host_only(None, 0, Transport::Tcp)
        })
    );
    refused_with(&[
        ("publish rm 8080/sctp", "the protocol must be tcp or udp"),
        ("publish rm http", "a host port must be 1-65535"),
        ("publish rm 0", "a host port must be 1-65535"),
        ("publish rm 9002-9000", "a host port must be 1-65535"),
        ("publish rm host:8080", "the host address is not IPv4"),
        (
            "publish rm 8080/bogus",
            "or its host part [HOSTIP:]HOSTPORT[/tcp|/udp], e.g. 8080/tcp",
        ),
        (
            "publish rm 1:2:3:4:5",
            "wrong number of ':'-separated parts",
        ),
        ("publish rm 8080::80", "the target is empty"),
    ]);
}

#[test]
fn conntrack_filters() {
    assert_eq!(
        ok("conntrack ls"),
        Request::ConntrackLs(ConntrackQuery::default())
    );
    let filter = ConntrackFilter {
        proto: Some("udp".into()),
        addr: Some(Ipv4Addr::new(10, 1, 0, 2)),
        port: Some(53),
    };
    assert_eq!(
        ok("conntrack ls --proto udp --addr 10.1.0.2 --port 53"),
        Request::ConntrackLs(ConntrackQuery {
            filter: filter.clone(),
            ..ConntrackQuery::default()
        })
    );
    assert_eq!(
        ok("conntrack flush --proto udp --addr 10.1.0.2 --port 53"),
        Request::ConntrackFlush(filter)
    );
    assert_eq!(
        ok("conntrack flush"),
        Request::ConntrackFlush(ConntrackFilter::default())
    );
    assert_eq!(
        ok("conntrack ls --proto icmp"),
        Request::ConntrackLs(ConntrackQuery {
            filter: ConntrackFilter {
                proto: Some("icmp".into()),
                ..ConntrackFilter::default()
            },
            ..ConntrackQuery::default()
        })
    );
    assert_eq!(ok("conntrack stats"), Request::ConntrackStats);
}

#[test]
fn conntrack_set() {
    assert_eq!(
        ok("conntrack set"),
        Request::ConntrackSet(ConntrackSettings::default())
    );
    let mut timeouts = BTreeMap::new();
    timeouts.insert("tcp-established".to_string(), 3600);
    timeouts.insert("udp-unreplied".to_string(), 30);
    assert_eq!(
        ok(
            "conntrack set --max-entries 65536 --timeout tcp-established=3600 \
            --timeout udp-unreplied=30"
        ),
        Request::ConntrackSet(ConntrackSettings {
            max_entries: Some(65536),
            timeouts,
            snat_share_percent: None,
        })
    );
    for bad in ["0", "101", "x", "25.5%"] {
        let err = parse(&format!("conntrack set --snat-share {bad}")).unwrap_err();
        assert!(
            err.to_string().contains("not a percentage from 1 to 100"),
            "{bad}: {err}"
        );
    }
    for line in [
        "conntrack set --snat-share 10",
        "conntrack set --snat-share 10%",
    ] {
        assert_eq!(
            ok(line),
            Request::ConntrackSet(ConntrackSettings {
                snat_share_percent: Some(10),
                ..ConntrackSettings::default()
            })
        );
    }
    refused_with(&[
        ("conntrack set --max-entries 0", "at least 1 entry"),
        (
            "conntrack set --timeout tcp-established",
            "--timeout 'tcp-established' has no '=': write NAME=SECONDS",
        ),
        ("conntrack set --timeout =30", "timeout name"),
        ("conntrack set --timeout TCP=30", "timeout name"),
        ("conntrack set --timeout icmp=", "whole number of seconds"),
        ("conntrack set --timeout icmp=1m", "whole number of seconds"),
        ("conntrack set --timeout icmp=0", "expire entries at once"),
        (
            "conntrack set --timeout icmp=30 --timeout icmp=60",
            "--timeout sets icmp twice",
        ),
    ]);
}

#[test]
fn usage_errors_point_at_the_subcommand_help() {
    let topic = |line: &str| {
        let cli = parse(line).unwrap();
        let err = cli.command.to_request().unwrap_err();
        err.help_topic(&cli.command)
    };
    assert_eq!(topic("uplink add u --ip 10.0.0.2/24"), "uplink add");
    assert_eq!(topic("publish add 80"), "publish add");
    assert_eq!(topic("publish rm x"), "publish rm");
    assert_eq!(topic("conntrack set --timeout x"), "conntrack set");
    assert_eq!(topic("net connect a a"), "net");
    assert_eq!(topic("net create n --internal"), "net create");
}
