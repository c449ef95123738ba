//! `port add … --gre` and `--gre-udp` command lines → requests, and the
//! combinations refused before anything is sent.

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::api::{PortKind, PortSpec, Request};
use crate::cli::args::tests::{ok, parse, refused};

fn kind(line: &str) -> PortKind {
    match ok(line) {
        Request::PortAdd(PortSpec { kind, .. }) => kind,
        other => panic!("`{line}` gave {other:?}"),
    }
}

fn ip(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
    Ipv4Addr::new(a, b, c, d)
}

#[test]
fn gre_port_with_defaults() {
    assert_eq!(
        ok("port add tB --net web --gre --remote 192.168.50.2"),
        Request::PortAdd(PortSpec {
            name: "tB".into(),
            kind: PortKind::Gre {
                net: "web".into(),
                remote: ip(192, 168, 50, 2),
                local: None,
                key: None,
                csum: false,
                seq: false,
            },
        })
    );
}

#[test]
fn gre_port_with_every_option() {
    assert_eq!(
        kind("port add tB --gre --net web --remote 192.168.50.2 --local 192.168.50.1 --key 42 --csum --seq"),
        PortKind::Gre {
            net: "web".into(),
            remote: ip(192, 168, 50, 2),
            local: Some(ip(192, 168, 50, 1)),
            key: Some(42),
            csum: true,
            seq: true,
        }
    );
    // Key 0 and the largest key are keys like any other; loopback serves a lab.
    assert!(matches!(
        kind("port add t --net n --gre --remote 127.0.0.1 --key 0"),
        PortKind::Gre { key: Some(0), .. }
    ));
    assert!(matches!(
        kind("port add t --net n --gre --remote 10.0.0.2 --key 4294967295"),
        PortKind::Gre {
            key: Some(u32::MAX),
            ..
        }
    ));
}

#[test]
fn gre_udp_ports_default_to_4754() {
    assert_eq!(
        kind("port add tU --net web --gre-udp --remote 198.51.100.7"),
        PortKind::GreUdp {
            net: "web".into(),
            remote: SocketAddrV4::new(ip(198, 51, 100, 7), 4754),
            local: None,
            key: None,
            csum: false,
            seq: false,
        }
    );
    assert_eq!(
        kind(
            "port add tU --net web --gre-udp --remote 198.51.100.7:5000 \
             --local 10.0.0.1 --key 7 --csum --seq"
        ),
        PortKind::GreUdp {
            net: "web".into(),
            remote: SocketAddrV4::new(ip(198, 51, 100, 7), 5000),
            local: Some(SocketAddrV4::new(ip(10, 0, 0, 1), 4754)),
            key: Some(7),
            csum: true,
            seq: true,
        }
    );
    // 0.0.0.0 listens on every address, here on another port than 4754.
    assert!(matches!(
        kind("port add tU --net web --gre-udp --remote 10.0.0.2 --local 0.0.0.0:4800"),
        PortKind::GreUdp {
            local: Some(local),
            ..
        } if local == SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 4800)
    ));
}

#[test]
fn tunnel_kinds_exclude_every_other_kind() {
    for (line, expect) in [
        (
            "port add t --net n --gre --gre-udp --remote 10.0.0.2",
            "--gre and --gre-udp are different port kinds",
        ),
        (
            "port add t --net n --gre --tap --remote 10.0.0.2",
            "--gre and --tap are different port kinds",
        ),
        (
            "port add t --net n --gre-udp --iface eth0 --remote 10.0.0.2",
            "--gre-udp and --iface are different port kinds",
        ),
        (
            "port add t --gre --trunk --iface eth0 --nets a,b --remote 10.0.0.2",
            "--gre and --trunk are different port kinds",
        ),
    ] {
        let message = refused(line);
        assert!(message.contains(expect), "`{line}`: {message}");
    }
}

#[test]
fn tunnel_options_need_a_tunnel() {
    for (line, expect) in [
        (
            "port add p --net n --remote 10.0.0.2",
            "--remote only applies to tunnel ports: add --gre (GRE in IPv4) or --gre-udp",
        ),
        ("port add p --net n --key 1", "--key only applies to tunnel"),
        ("port add p --net n --seq", "--seq only applies to tunnel"),
        (
            "port add p --net n --tap --remote 10.0.0.2",
            "--remote does not apply to tap ports: it configures a GRE tunnel",
        ),
        (
            "port add p --net n --iface e0 --key 5",
            "--key does not apply to iface ports",
        ),
        (
            "port add p --trunk --iface e0 --nets a --csum",
            "--csum does not apply to trunk ports",
        ),
        (
            "port add p --net n --tap --local 10.0.0.1",
            "--local does not apply to tap ports",
        ),
    ] {
        let message = refused(line);
        assert!(message.contains(expect), "`{line}`: {message}");
    }
}

#[test]
fn invalid_tunnels_are_refused() {
    for (line, expect) in [
        ("port add t --gre --remote 10.0.0.2", "gre ports need --net"),
        ("port add t --net n --gre", "gre ports need --remote IP"),
        (
            "port add t --net n --gre-udp",
            "gre-udp ports need --remote IP[:PORT]",
        ),
        (
            "port add t --net n --gre --remote 0.0.0.0",
            "--remote 0.0.0.0 is not a usable tunnel endpoint: it is the unspecified address",
        ),
        (
            "port add t --net n --gre-udp --remote 255.255.255.255",
            "the broadcast address",
        ),
        (
            "port add t --net n --gre --remote 239.1.1.1",
            "--remote 239.1.1.1 is not a usable tunnel endpoint: it is a multicast address",
        ),
        (
            "port add t --net n --gre-udp --remote 224.0.0.1:4754",
            "--remote 224.0.0.1:4754 is not a usable",
        ),
        (
            "port add t --net n --gre --remote 10.0.0.2:4754",
            "--remote 10.0.0.2:4754 is not a usable tunnel endpoint: --gre carries GRE \
             directly in IPv4, which has no ports; drop :4754, or use --gre-udp",
        ),
        (
            "port add t --net n --gre --remote 10.0.0.2 --local 10.0.0.1:99",
            "--local 10.0.0.1:99 is not a usable",
        ),
        (
            "port add t --net n --gre --remote 10.0.0.2 --local 0.0.0.0",
            "leave --local out to let the kernel choose",
        ),
        (
            "port add t --net n --gre-udp --remote 10.0.0.2 --local 224.0.0.5",
            "leave --local out to listen on 0.0.0.0:4754",
        ),
        (
            "port add t --net n --gre --remote 10.0.0.2 --mtu 1400",
            "--mtu does not apply to gre ports: it configures the TAP yardd creates; \
             a tunnel port has no interface of its own",
        ),
        (
            "port add t --net n --gre-udp --remote 10.0.0.2 --netns x",
            "--netns does not apply to gre-udp ports",
        ),
        (
            "port add t --net n --gre --remote 10.0.0.2 --nets a,b",
            "--nets does not apply to gre ports: a tunnel carries one network",
        ),
    ] {
        let message = refused(line);
        assert!(message.contains(expect), "`{line}`: {message}");
    }
}

#[test]
fn malformed_endpoints_and_keys_are_clap_usage_errors() {
    for line in [
        "port add t --net n --gre --remote 10.0.0",
        "port add t --net n --gre --remote host.example",
        "port add t --net n --gre-udp --remote 10.0.0.2:0",
        "port add t --net n --gre-udp --remote 10.0.0.2:70000",
        "port add t --net n --gre-udp --remote 10.0.0.2:",
        "port add t --net n --gre-udp --remote :4754",
        "port add t --net n --gre --remote 10.0.0.2 --key -1",
        "port add t --net n --gre --remote 10.0.0.2 --key 4294967296",
        "port add t --net n --gre --remote 10.0.0.2 --key 0x2a",
    ] {
        let err = parse(line).expect_err(line);
        assert_eq!(err.exit_code(), 2, "`{line}`: {err}");
    }
    let err = parse("port add t --net n --gre --remote 10.0.0.2:x").unwrap_err();
    assert!(
        err.to_string()
            .contains("'x' is not a port from 1 to 65535; expected IP or IP:PORT"),
        "{err}"
    );
}
