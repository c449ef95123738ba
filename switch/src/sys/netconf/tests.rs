//! Tests of the rtnetlink layer: message layout and reply parsing without
//! privileges, configuration of real TAPs in throwaway namespaces with them.
use super::*;
use crate::sys::netns::run_in_netns;
use crate::sys::testutil::{ip_json, is_root, Netns};
use crate::sys::{interface_mtu, open_tap};

#[test]
fn message_layout() {
    let mut msg = Message::new(libc::RTM_NEWADDR, libc::NLM_F_CREATE as u16);
    msg.push(&ifaddrmsg(7, 16));
    msg.attr(libc::IFA_LOCAL, &[172, 30, 0, 2]);
    msg.attr(libc::IFLA_IFNAME, b"eth0\0"); // 9 bytes: padded to 12
    let bytes = msg.finish(42);
    assert_eq!(bytes.len(), 16 + 8 + 8 + 12);
    assert_eq!(u32::from_ne_bytes(bytes[0..4].try_into().unwrap()), 44);
    assert_eq!(u16::from_ne_bytes([bytes[4], bytes[5]]), libc::RTM_NEWADDR);
    let flags = u16::from_ne_bytes([bytes[6], bytes[7]]) as libc::c_int;
    assert_eq!(
        flags,
        libc::NLM_F_REQUEST | libc::NLM_F_ACK | libc::NLM_F_CREATE
    );
    assert_eq!(u32::from_ne_bytes(bytes[8..12].try_into().unwrap()), 42);
    assert_eq!(bytes[16], libc::AF_INET as u8);
    assert_eq!(bytes[17], 16);
    assert_eq!(u32::from_ne_bytes(bytes[20..24].try_into().unwrap()), 7);
    let parsed: Vec<_> = attrs(&bytes[24..]).collect();
    assert_eq!(
        parsed,
        vec![
            (libc::IFA_LOCAL, &[172u8, 30, 0, 2][..]),
            (libc::IFLA_IFNAME, &b"eth0\0"[..])
        ]
    );
    // A truncated attribute ends the iteration instead of panicking.
    assert_eq!(attrs(&[8, 0, 1, 0, 1]).count(), 0);
}

/// One attribute, padded, as the kernel lays it out.
fn attr_bytes(kind: u16, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&((RTATTR_HDR_LEN + data.len()) as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(data);
    out.resize(align4(out.len()), 0);
    out
}

#[test]
fn link_facts_are_read_from_nested_link_info() {
    let mut tun_data = attr_bytes(IFLA_TUN_TYPE, &[libc::IFF_TAP as u8]);
    tun_data.extend(attr_bytes(IFLA_TUN_PI, &[0]));
    tun_data.extend(attr_bytes(IFLA_TUN_VNET_HDR, &[1]));
    tun_data.extend(attr_bytes(IFLA_TUN_PERSIST, &[1]));
    tun_data.extend(attr_bytes(IFLA_TUN_MULTI_QUEUE, &[0]));
    tun_data.extend(attr_bytes(IFLA_TUN_NUM_QUEUES, &0u32.to_ne_bytes()));
    tun_data.extend(attr_bytes(IFLA_TUN_GROUP, &100u32.to_ne_bytes()));
    let mut info = attr_bytes(IFLA_INFO_KIND, b"tun\0");
    // The kernel sets NLA_F_NESTED on nested attributes.
    info.extend(attr_bytes(IFLA_INFO_DATA | 0x8000, &tun_data));
    let mut data = attr_bytes(libc::IFLA_MTU, &1500u32.to_ne_bytes());
    data.extend(attr_bytes(IFLA_IFALIAS, b"switchyard port c1\0"));
    data.extend(attr_bytes(IFLA_LINKINFO | 0x8000, &info));
    let facts = parse_link_facts(0, &data);
    assert_eq!(
        facts,
        LinkFacts {
            kind: Some("tun".into()),
            alias: Some("switchyard port c1".into()),
            tun: Some(TunFacts {
                tap: true,
                pi: false,
                vnet_hdr: true,
                persist: true,
                multi_queue: false,
                owner: None,
                group: Some(100),
                queues: Some(0),
            }),
            carrier: false,
        }
    );
    // A veth has a kind but no TUN settings; `lo` has neither.
    let veth = attr_bytes(IFLA_LINKINFO, &attr_bytes(IFLA_INFO_KIND, b"veth\0"));
    let facts = parse_link_facts(libc::IFF_LOWER_UP as u32, &veth);
    assert_eq!(facts.kind.as_deref(), Some("veth"));
    assert_eq!(facts.tun, None);
    assert!(facts.carrier);
    assert_eq!(parse_link_facts(0, &[]), LinkFacts::default());
}

#[test]
fn configuring_again_keeps_what_the_namespace_added() {
    // Privileged: creates a network namespace and a TAP inside it.
    if !is_root() {
        eprintln!("skipping configuring_again_keeps_what_the_namespace_added: needs root");
        return;
    }
    let ns = Netns::new();
    let cfg = |mtu| LinkConfig {
        ifname: "ysk0",
        mac: Some([0x02, 0x59, 0x53, 0, 0, 9]),
        mtu: Some(mtu),
        txqlen: None,
        addr: Some(("10.77.5.2".parse().unwrap(), 24)),
        default_gateway: Some("10.77.5.1".parse().unwrap()),
    };
    let tap = run_in_netns(&ns.netns_ref(), move || {
        let tap = open_tap("ysk0").unwrap();
        configure_link(&cfg(1500)).unwrap();
        set_alias("ysk0", "switchyard port k").unwrap();
        tap
    })
    .unwrap();
    // What the container adds itself: another address, its own default
    // route (a different gateway).
    crate::sys::testutil::ip(&[
        "-n",
        ns.name(),
        "addr",
        "add",
        "10.77.6.9/24",
        "dev",
        "ysk0",
    ]);
    crate::sys::testutil::ip(&[
        "-n",
        ns.name(),
        "route",
        "replace",
        "default",
        "via",
        "10.77.6.1",
    ]);
    let facts = run_in_netns(&ns.netns_ref(), move || {
        configure_link_keeping(&cfg(1400)).unwrap();
        // Twice: nothing to add the second time, and no error.
        configure_link_keeping(&cfg(1400)).unwrap();
        link_facts("ysk0").unwrap().unwrap()
    })
    .unwrap();
    assert_eq!(facts.kind.as_deref(), Some("tun"));
    assert_eq!(facts.alias.as_deref(), Some("switchyard port k"));
    let tun = facts.tun.expect("TUN settings");
    assert!(
        tun.tap && tun.vnet_hdr && !tun.pi && !tun.persist,
        "{tun:?}"
    );
    assert!(facts.carrier, "an fd is attached");
    assert_eq!(
        run_in_netns(&ns.netns_ref(), || link_facts("nope0").unwrap()).unwrap(),
        None
    );

    let link = &ip_json(ns.name(), &["addr", "show", "ysk0"])[0];
    assert_eq!(link["mtu"], 1400, "the MTU is yardd's: {link}");
    assert!(link["flags"].to_string().contains("\"UP\""), "{link}");
    let v4: Vec<_> = link["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["family"] == "inet")
        .map(|a| a["local"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(v4, ["10.77.5.2", "10.77.6.9"], "{link}");
    let routes = ip_json(ns.name(), &["route", "show", "default"]);
    assert_eq!(routes.as_array().unwrap().len(), 1, "{routes}");
    assert_eq!(
        routes[0]["gateway"], "10.77.6.1",
        "the namespace's own route is kept"
    );
    drop(tap);
}

#[test]
fn errors_name_interface_and_request() {
    let err = NetconfError::Netlink {
        ifname: "eth0".into(),
        op: "RTM_NEWADDR 172.30.0.2/16".into(),
        errno: Errno::EEXIST,
    };
    assert_eq!(
        err.to_string(),
        "eth0: netlink RTM_NEWADDR 172.30.0.2/16: File exists"
    );
}

#[test]
fn configure_tap_in_netns() {
    // Privileged: creates a network namespace and a TAP inside it.
    if !is_root() {
        eprintln!("skipping configure_tap_in_netns: needs root");
        return;
    }
    let ns = Netns::new();
    let mac = [0x02, 0x59, 0x53, 0x00, 0x00, 0x02];
    let (tap, mtu, reported_mac) = run_in_netns(&ns.netns_ref(), move || {
        let tap = open_tap("yst0").unwrap();
        let cfg = LinkConfig {
            ifname: "yst0",
            mac: Some(mac),
            mtu: Some(9000),
            txqlen: Some(TAP_TXQLEN),
            addr: Some(("10.77.0.2".parse().unwrap(), 24)),
            default_gateway: Some("10.77.0.1".parse().unwrap()),
        };
        configure_link(&cfg).unwrap();
        // Replace semantics: configuring again succeeds and changes nothing.
        configure_link(&cfg).unwrap();
        (
            tap,
            interface_mtu("yst0").unwrap(),
            link_mac("yst0").unwrap(),
        )
    })
    .unwrap();
    assert_eq!(mtu, 9000);
    assert_eq!(reported_mac, mac);
    let shown = std::process::Command::new("ip")
        .args(["-n", ns.name(), "link", "show", "yst0"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains(&format!("qlen {TAP_TXQLEN}")), "{shown}");

    let links = ip_json(ns.name(), &["link", "show"]);
    let link = |name: &str| {
        links
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["ifname"] == name)
            .unwrap_or_else(|| panic!("{name} missing in {links}"))
            .clone()
    };
    let yst0 = link("yst0");
    assert_eq!(yst0["mtu"], 9000);
    assert_eq!(yst0["address"], "02:59:53:00:00:02");
    let has_up = |l: &serde_json::Value| l["flags"].as_array().unwrap().iter().any(|f| f == "UP");
    assert!(has_up(&yst0), "{yst0}");
    assert!(has_up(&link("lo")), "{links}");

    let addrs = ip_json(ns.name(), &["addr", "show", "dev", "yst0"]);
    let v4: Vec<_> = addrs[0]["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["family"] == "inet")
        .collect();
    assert_eq!(v4.len(), 1, "{addrs}");
    assert_eq!(v4[0]["local"], "10.77.0.2");
    assert_eq!(v4[0]["prefixlen"], 24);

    let routes = ip_json(ns.name(), &["route", "show"]);
    let default: Vec<_> = routes
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["dst"] == "default")
        .collect();
    assert_eq!(default.len(), 1, "{routes}");
    assert_eq!(default[0]["gateway"], "10.77.0.1");
    assert_eq!(default[0]["dev"], "yst0");
    drop(tap);
}

#[test]
fn missing_interface_and_kernel_errors_are_named() {
    // Privileged: creates a network namespace.
    if !is_root() {
        eprintln!("skipping missing_interface_and_kernel_errors_are_named: needs root");
        return;
    }
    let ns = Netns::new();
    let (missing, mac, unreachable) = run_in_netns(&ns.netns_ref(), || {
        let missing = link_mac("nope0").unwrap_err();
        let tap = open_tap("yst1").unwrap();
        let mac = link_mac("yst1").unwrap();
        // A gateway outside every connected subnet is refused by the kernel.
        let unreachable = configure_link(&LinkConfig {
            ifname: "yst1",
            mac: None,
            mtu: None,
            txqlen: None,
            addr: Some(("10.79.0.2".parse().unwrap(), 24)),
            default_gateway: Some("192.0.2.1".parse().unwrap()),
        })
        .unwrap_err();
        drop(tap);
        (missing, mac, unreachable)
    })
    .unwrap();
    assert_eq!(
        missing.to_string(),
        "nope0: no such interface in this network namespace"
    );
    assert_ne!(mac, [0; 6]);
    assert!(
        unreachable
            .to_string()
            .starts_with("yst1: netlink RTM_NEWROUTE default via 192.0.2.1: "),
        "{unreachable}"
    );
}

#[test]
fn a_veth_pair_is_created_with_the_peers_mac_and_deleted_whole() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let ns = Netns::new();
    let pair = VethPair {
        host: "ysvh0",
        peer: "ysvp0",
        peer_mac: [0x02, 0x42, 0x0a, 0x58, 0x00, 0x07],
        mtu: 1400,
    };
    let (host, peer) = run_in_netns(&ns.netns_ref(), move || {
        create_veth(&pair).unwrap();
        // Both names are taken now: a second pair is refused.
        let again = create_veth(&pair).unwrap_err();
        assert!(
            matches!(
                again,
                NetconfError::Netlink {
                    errno: Errno::EEXIST,
                    ..
                }
            ),
            "{again}"
        );
        set_link_up("ysvh0").unwrap();
        (
            link_facts("ysvh0").unwrap().unwrap(),
            link_facts("ysvp0").unwrap().unwrap(),
        )
    })
    .unwrap();
    assert_eq!(host.kind.as_deref(), Some("veth"));
    assert_eq!(peer.kind.as_deref(), Some("veth"));
    let links = ip_json(ns.name(), &["link", "show", "ysvp0"]);
    assert_eq!(links[0]["address"], "02:42:0a:58:00:07");
    assert_eq!(links[0]["mtu"], 1400);
    assert_eq!(
        ip_json(ns.name(), &["link", "show", "ysvh0"])[0]["mtu"],
        1400
    );

    let (deleted, again, left) = run_in_netns(&ns.netns_ref(), || {
        (
            delete_link("ysvh0").unwrap(),
            delete_link("ysvh0").unwrap(),
            link_facts("ysvp0").unwrap(),
        )
    })
    .unwrap();
    assert!(deleted && !again, "deleted once, then not there");
    assert_eq!(left, None, "the peer goes with its pair");
}
