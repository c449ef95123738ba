//! Command line → request mapping: what each command sends, and that invalid
//! combinations are refused before anything is sent.

use super::*;
use clap::error::ErrorKind;

pub(super) fn parse(line: &str) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("yardctl").chain(line.split_whitespace()))
}

pub(super) fn request(line: &str) -> Result<Request, ArgError> {
    parse(line)
        .unwrap_or_else(|e| panic!("`{line}` did not parse: {e}"))
        .command
        .to_request()
}

pub(super) fn ok(line: &str) -> Request {
    request(line).unwrap_or_else(|e| panic!("`{line}` was refused: {e}"))
}

pub(super) fn refused(line: &str) -> String {
    match request(line) {
        Ok(req) => panic!("`{line}` was accepted as {req:?}"),
        Err(e) => e.to_string(),
    }
}

pub(super) fn cidr(s: &str) -> Ipv4Cidr {
    s.parse().unwrap()
}

#[test]
fn tap_port_in_a_namespace() {
    assert_eq!(
        ok("port add c1 --net yard0 --tap --netns c1 --ip 172.30.0.2/16"),
        Request::PortAdd(PortSpec {
            name: "c1".into(),
            kind: PortKind::Tap {
                net: "yard0".into(),
                netns: Some("c1".into()),
                ifname: "eth0".into(),
                ip: Some(cidr("172.30.0.2/16")),
                mac: None,
                mtu: None,
                port_security: true,
                allowed_addresses: Vec::new(),
                default_route: false,
                auto_remove: false,
            },
        })
    );
}

#[test]
fn tap_port_with_every_option() {
    assert_eq!(
        ok(
            "port add vm1 --tap --net lab --netns /proc/77/ns/net --ifname ens3 \
            --ip 10.0.0.5/24 --mac 02:00:00:00:00:05 --mtu 9000"
        ),
        Request::PortAdd(PortSpec {
            name: "vm1".into(),
            kind: PortKind::Tap {
                net: "lab".into(),
                netns: Some("/proc/77/ns/net".into()),
                ifname: "ens3".into(),
                ip: Some(cidr("10.0.0.5/24")),
                mac: Some("02:00:00:00:00:05".parse().unwrap()),
                mtu: Some(9000),
                port_security: true,
                allowed_addresses: Vec::new(),
                default_route: false,
                auto_remove: false,
            },
        })
    );
}

#[test]
fn iface_and_trunk_ports() {
    assert_eq!(
        ok("port add up0 --net yard0 --iface veth-up0"),
        Request::PortAdd(PortSpec {
            name: "up0".into(),
            kind: PortKind::Iface {
                net: "yard0".into(),
                iface: "veth-up0".into(),
            },
        })
    );
    let trunk = PortSpec {
        name: "t0".into(),
        kind: PortKind::Trunk {
            iface: "eth1".into(),
            nets: vec!["red".into(), "blue".into()],
        },
    };
    assert_eq!(
        ok("port add t0 --trunk --iface eth1 --nets red,blue"),
        Request::PortAdd(trunk.clone())
    );
    assert_eq!(
        ok("port add t0 --trunk --iface eth1 --nets red --nets blue"),
        Request::PortAdd(trunk)
    );
}

#[test]
fn invalid_port_combinations_are_refused() {
    for (line, expect) in [
        ("port add p --net n", "say how to attach the port"),
        (
            "port add p --net n --tap --iface e0",
            "--tap and --iface are different",
        ),
        (
            "port add p --tap --trunk --iface e0 --nets a",
            "--tap and --trunk",
        ),
        ("port add p --trunk --nets a,b", "trunk ports need --iface"),
        ("port add p --tap", "tap ports need --net"),
        ("port add p --iface e0", "iface ports need --net"),
        (
            "port add p --net n --iface e0 --nets a,b",
            "--nets does not apply to iface",
        ),
        (
            "port add p --net n --tap --nets a,b",
            "--nets does not apply to tap",
        ),
        (
            "port add p --net n --iface e0 --netns x",
            "--netns does not apply to iface",
        ),
        (
            "port add p --net n --iface e0 --mtu 1400",
            "--mtu does not apply to iface",
        ),
        (
            "port add p --trunk --iface e0 --nets a --ip 1.2.3.4/8",
            "--ip does not apply to trunk",
        ),
        (
            "port add p --trunk --iface e0 --net a",
            "--net does not apply to trunk",
        ),
        ("port add p --trunk --iface e0", "trunk ports need --nets"),
        (
            "port add p --trunk --iface e0 --nets a,b,a",
            "lists network a twice",
        ),
        (
            "port add p --trunk --iface e0 --nets a,,b",
            "network name must not be empty",
        ),
        (
            "port add p --net n --tap --mtu 67",
            "--mtu 67 is out of range",
        ),
        (
            "port add p --net n --tap --mtu 65001",
            "--mtu 65001 is out of range",
        ),
        (
            "port add p --net n --tap --ifname averyveryverylongname",
            "at most 15 bytes",
        ),
        (
            "port add p --net n --tap --ifname a/b",
            "may not contain '/'",
        ),
        ("port add p --net n --iface ..", "reserved"),
        (
            "port add p --net n --tap --mac 01:00:5e:00:00:01",
            "multicast address",
        ),
        (
            "port add p --net n --tap --mac 00:00:00:00:00:00",
            "all-zero address",
        ),
    ] {
        let message = refused(line);
        assert!(message.contains(expect), "`{line}`: {message}");
    }
}

#[test]
fn net_create_defaults_and_options() {
    assert_eq!(
        ok("net create web"),
        Request::NetCreate(NetworkSpec::new("web"))
    );
    let mut spec = NetworkSpec::new("lab");
    spec.subnet = Some(cidr("10.10.0.0/24"));
    spec.gateway = Some(Ipv4Addr::new(10, 10, 0, 254));
    spec.icc = false;
    spec.vlan = Some(100);
    spec.aging_secs = 60;
    spec.mtu = 9000;
    assert_eq!(
        ok(
            "net create lab --subnet 10.10.0.0/24 --gateway 10.10.0.254 --no-icc \
            --vlan 100 --aging 60 --mtu 9000"
        ),
        Request::NetCreate(spec)
    );
}

#[test]
fn invalid_networks_are_refused() {
    for (line, expect) in [
        ("net create n --vlan 0", "--vlan 0 is out of range"),
        ("net create n --vlan 4095", "--vlan 4095 is out of range"),
        ("net create n --mtu 67", "--mtu 67 is out of range"),
        ("net create n --mtu 65001", "--mtu 65001"),
        (
            "net create n --gateway 10.0.0.1",
            "--gateway needs --subnet",
        ),
        (
            "net create n --subnet 10.0.0.0/24 --gateway 10.0.1.1",
            "gateway 10.0.1.1 is not a host address in subnet 10.0.0.0/24: it lies outside; \
             the default would be 10.0.0.1",
        ),
        (
            "net create n --subnet 10.0.0.0/24 --gateway 10.0.0.0",
            "network address",
        ),
        (
            "net create n --subnet 10.0.0.0/24 --gateway 10.0.0.255",
            "broadcast address",
        ),
        (
            "net create n --subnet 10.0.0.5/24",
            "did you mean 10.0.0.0/24?",
        ),
    ] {
        let message = refused(line);
        assert!(message.contains(expect), "`{line}`: {message}");
    }
    // A /31 has no network or broadcast address to avoid.
    ok("net create p2p --subnet 10.0.0.0/31 --gateway 10.0.0.0");
}

#[test]
fn net_create_routing_options() {
    let plain = NetworkSpec::new("web");
    assert!(plain.masquerade && !plain.internal);
    let mut spec = NetworkSpec::new("db");
    spec.subnet = Some(cidr("10.2.0.0/24"));
    spec.internal = true;
    assert_eq!(
        ok("net create db --subnet 10.2.0.0/24 --internal"),
        Request::NetCreate(spec)
    );
    let mut spec = NetworkSpec::new("routed");
    spec.subnet = Some(cidr("10.3.0.0/24"));
    spec.masquerade = false;
    assert_eq!(
        ok("net create routed --no-masquerade --subnet 10.3.0.0/24"),
        Request::NetCreate(spec)
    );
    for (line, expect) in [
        (
            "net create n --internal",
            "--internal needs --subnet: only a network with a subnet is routed",
        ),
        (
            "net create n --no-masquerade",
            "--no-masquerade needs --subnet",
        ),
        (
            "net create n --subnet 10.0.0.0/24 --internal --no-masquerade",
            "--internal and --no-masquerade do not go together",
        ),
    ] {
        let message = refused(line);
        assert!(message.contains(expect), "`{line}`: {message}");
    }
}

#[test]
fn net_connect_and_disconnect() {
    assert_eq!(
        ok("net connect web db"),
        Request::NetConnect {
            a: "web".into(),
            b: "db".into(),
        }
    );
    assert_eq!(
        ok("net disconnect web db"),
        Request::NetDisconnect {
            a: "web".into(),
            b: "db".into(),
        }
    );
    assert_eq!(
        refused("net connect web web"),
        "network web is named twice: give two different networks"
    );
    assert!(refused("net disconnect db db").contains("named twice"));
    assert!(parse("net connect web").is_err());
}

#[test]
fn simple_commands_map_one_to_one() {
    let mac: MacAddr = "02:42:ac:11:00:02".parse().unwrap();
    for (line, want) in [
        ("status", Request::Status),
        ("net ls", Request::NetLs),
        (
            "net inspect web",
            Request::NetInspect { name: "web".into() },
        ),
        ("net rm web", Request::NetRm { name: "web".into() }),
        ("port ls", Request::PortLs),
        ("port rm c1", Request::PortRm { name: "c1".into() }),
        ("port stats", Request::PortStats { name: None }),
        (
            "port stats c1",
            Request::PortStats {
                name: Some("c1".into()),
            },
        ),
        ("fdb show", Request::FdbShow { net: None }),
        ("mdb show", Request::MdbShow { net: None }),
        (
            "mdb show --net web",
            Request::MdbShow {
                net: Some("web".into()),
            },
        ),
        (
            "fdb show --net web",
            Request::FdbShow {
                net: Some("web".into()),
            },
        ),
        (
            "fdb add web 02:42:ac:11:00:02 c1",
            Request::FdbAdd {
                net: "web".into(),
                mac,
                port: "c1".into(),
            },
        ),
        (
            "fdb del web 02:42:AC:11:00:02",
            Request::FdbDel {
                net: "web".into(),
                mac,
            },
        ),
        ("fdb flush", Request::FdbFlush { net: None }),
        (
            "fdb flush --net web",
            Request::FdbFlush {
                net: Some("web".into()),
            },
        ),
        (
            "capture c1",
            Request::Capture {
                port: "c1".into(),
                count: None,
            },
        ),
        (
            "capture c1 -w /tmp/c1.pcap -c 10",
            Request::Capture {
                port: "c1".into(),
                count: Some(10),
            },
        ),
    ] {
        assert_eq!(ok(line), want, "`{line}`");
    }
    assert!(refused("fdb add web ff:ff:ff:ff:ff:ff c1").contains("broadcast address"));
    assert!(refused("capture c1 -c 0").contains("at least 1 frame"));
}

#[test]
fn global_flags_go_before_or_after_the_command() {
    let cli = parse("--json --socket /tmp/y.sock net ls").unwrap();
    assert!(cli.json);
    assert_eq!(cli.socket, PathBuf::from("/tmp/y.sock"));
    let cli = parse("net ls --json --socket /tmp/z.sock").unwrap();
    assert!(cli.json);
    assert_eq!(cli.socket, PathBuf::from("/tmp/z.sock"));
    assert!(!parse("status").unwrap().json);
}

#[test]
fn capture_output_dash_means_stdout() {
    let output = |line: &str| match parse(line).unwrap().command {
        Command::Capture(args) => args.output_file().map(|p| p.to_path_buf()),
        other => panic!("{other:?}"),
    };
    assert_eq!(output("capture c1"), None);
    assert_eq!(output("capture c1 -w -"), None);
    assert_eq!(
        output("capture c1 -w x.pcap"),
        Some(PathBuf::from("x.pcap"))
    );
}

#[test]
fn malformed_values_are_clap_usage_errors() {
    for line in [
        "net create n --subnet 10.0.0.0",
        "net create n --gateway nope",
        "net create n --vlan 70000",
        "port add p --net n --tap --mac 02:00",
        "port add p --net n --tap --ip 10.0.0.1/33",
        "fdb add web not-a-mac c1",
        "uplink add up0 --iface eth1 --ip 10.0.0.2",
        "conntrack ls --proto sctp",
        "conntrack flush --port 70000",
        "conntrack ls --addr 10.0.0",
        "conntrack set --max-entries -1",
        "publish add",
        "net",
        "bogus",
        "capture",
    ] {
        let err = parse(line).expect_err(line);
        assert_ne!(err.kind(), ErrorKind::DisplayHelp, "`{line}`");
        assert_eq!(err.exit_code(), 2, "`{line}`: {err}");
    }
}

#[test]
fn the_clap_definition_is_consistent() {
    use clap::CommandFactory;
    Cli::command().debug_assert();
}

#[test]
fn port_security_options_of_a_tap() {
    let Request::PortAdd(spec) = ok("port add r1 --net yard0 --tap --ip 172.30.0.2/16 \
         --allowed-address 10.8.0.0/24 --allowed-address 172.30.0.9 \
         --allowed-address 02:42:ac:1e:00:09")
    else {
        panic!("not a port add");
    };
    let PortKind::Tap {
        port_security,
        allowed_addresses,
        ..
    } = spec.kind
    else {
        panic!("not a TAP: {spec:?}");
    };
    assert!(port_security);
    let text: Vec<String> = allowed_addresses.iter().map(|a| a.to_string()).collect();
    assert_eq!(
        text,
        ["10.8.0.0/24", "172.30.0.9/32", "02:42:ac:1e:00:09"],
        "in the order given, a bare address as a /32"
    );

    let Request::PortAdd(spec) = ok("port add r2 --net yard0 --tap --no-port-security") else {
        panic!("not a port add");
    };
    assert!(matches!(
        spec.kind,
        PortKind::Tap {
            port_security: false,
            ..
        }
    ));

    for (line, expected) in [
        (
            "port add r3 --net yard0 --tap --no-port-security --allowed-address 10.8.0.1",
            "--allowed-address and --no-port-security cannot be given together",
        ),
        (
            "port add r4 --net yard0 --iface veth0 --no-port-security",
            "--no-port-security does not apply to iface",
        ),
        (
            "port add r5 --net yard0 --gre --remote 192.168.50.2 --allowed-address 10.8.0.1",
            "--allowed-address does not apply to gre",
        ),
    ] {
        let message = refused(line);
        assert!(message.contains(expected), "`{line}`: {message}");
    }
    let bad = parse("port add r6 --net yard0 --tap --allowed-address 01:00:5e:00:00:01");
    assert!(bad.is_err(), "a group MAC is not an allowed source");
}

#[test]
fn ip_range_and_default_route_options() {
    let mut spec = NetworkSpec::new("pods");
    spec.subnet = Some(cidr("10.88.0.0/16"));
    spec.ip_range = Some(cidr("10.88.5.0/24"));
    assert_eq!(
        ok("net create pods --subnet 10.88.0.0/16 --ip-range 10.88.5.0/24"),
        Request::NetCreate(spec)
    );
    for (line, expect) in [
        (
            "net create n --ip-range 10.0.0.0/24",
            "--ip-range needs --subnet",
        ),
        (
            "net create n --subnet 10.0.0.0/24 --ip-range 10.0.1.0/25",
            "--ip-range 10.0.1.0/25 is not inside --subnet 10.0.0.0/24",
        ),
        (
            "net create n --subnet 10.0.0.0/24 --ip-range 10.0.0.0/23",
            "is not inside --subnet",
        ),
        (
            "port add p --iface veth0 --net n --default-route",
            "--default-route",
        ),
        (
            "port add p --gre --remote 192.168.50.2 --net n --auto-remove",
            "--auto-remove does not apply to gre",
        ),
    ] {
        let message = refused(line);
        assert!(message.contains(expect), "`{line}`: {message}");
    }
    match ok("port add c1b --tap --net b --netns c1 --ifname eth1 --default-route") {
        Request::PortAdd(PortSpec {
            kind:
                PortKind::Tap {
                    default_route,
                    ip,
                    ifname,
                    ..
                },
            ..
        }) => assert!(default_route && ip.is_none() && ifname == "eth1"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        ok("port add c1c --tap --net b --netns c1 --auto-remove"),
        Request::PortAdd(PortSpec { kind, .. }) if kind.auto_removes()
    ));
}

#[test]
fn veth_ports_take_a_peer_and_no_namespace() {
    let Request::PortAdd(spec) = ok("port add e1 --net n --veth yd1 --peer yc1 --ip 10.0.0.2/24")
    else {
        panic!("not a port add");
    };
    assert!(matches!(
        &spec.kind,
        PortKind::Veth { net, ifname, peer, port_security: true, .. }
            if net == "n" && ifname == "yd1" && peer == "yc1"
    ));
    assert_eq!(spec.kind.address(), Some(cidr("10.0.0.2/24")));
    assert!(
        parse("port add e1 --net n --veth yd1").is_err(),
        "--peer is needed"
    );
    for (line, expected) in [
        (
            "port add e1 --net n --veth yd1 --peer yc1 --tap",
            "--veth and --tap",
        ),
        (
            "port add e1 --net n --veth yd1 --peer yc1 --netns c1",
            "--netns does not apply to veth",
        ),
        ("port add e1 --veth yd1 --peer yc1", "--net NET"),
    ] {
        let message = refused(line);
        assert!(message.contains(expected), "`{line}`: {message}");
    }
}

#[test]
fn qemu_stream_and_dgram_ports() {
    assert_eq!(
        ok("port add vm1 --net yard0 --qemu-stream /run/user/1000/vm1.sock"),
        Request::PortAdd(PortSpec {
            name: "vm1".into(),
            kind: PortKind::QemuStream {
                net: "yard0".into(),
                path: "/run/user/1000/vm1.sock".into(),
            },
        })
    );
    // A relative path is made absolute here: yardd runs elsewhere.
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(
        ok("port add vm1 --net yard0 --qemu-stream vm1.sock"),
        Request::PortAdd(PortSpec {
            name: "vm1".into(),
            kind: PortKind::QemuStream {
                net: "yard0".into(),
                path: cwd.join("vm1.sock").display().to_string(),
            },
        })
    );
    assert_eq!(
        ok("port add vm2 --net lab --qemu-dgram 127.0.0.1:5555"),
        Request::PortAdd(PortSpec {
            name: "vm2".into(),
            kind: PortKind::QemuDgram {
                net: "lab".into(),
                addr: QemuDgramAddr::Udp("127.0.0.1:5555".parse().unwrap()),
            },
        })
    );
    assert_eq!(
        ok("port add vm3 --net lab --qemu-dgram /tmp/vm3.sock"),
        Request::PortAdd(PortSpec {
            name: "vm3".into(),
            kind: PortKind::QemuDgram {
                net: "lab".into(),
                addr: QemuDgramAddr::Unix("/tmp/vm3.sock".into()),
            },
        })
    );
}

#[test]
fn invalid_qemu_ports_are_refused() {
    let both = refused("port add vm --net n --qemu-stream /a.sock --qemu-dgram /b.sock");
    assert!(both.contains("--qemu-stream and --qemu-dgram"), "{both}");
    let tap = refused("port add vm --net n --qemu-stream /a.sock --tap");
    assert!(tap.contains("--qemu-stream and --tap"), "{tap}");
    let ip = refused("port add vm --net n --qemu-stream /a.sock --ip 10.0.0.2/24");
    assert!(
        ip.contains("--ip") && ip.contains("configures its NIC"),
        "{ip}"
    );
    let remote = refused("port add vm --net n --qemu-dgram /a.sock --remote 10.0.0.1");
    assert!(remote.contains("--remote"), "{remote}");
    let no_net = refused("port add vm --qemu-stream /a.sock");
    assert!(no_net.contains("--net"), "{no_net}");
    // Off loopback, or neither a path nor IP:PORT: a usage error.
    for addr in ["10.0.0.1:5555", "127.0.0.1:0", "vm.sock"] {
        let line = format!("port add vm --net n --qemu-dgram {addr}");
        let err = parse(&line).expect_err(&line);
        assert_eq!(err.kind(), ErrorKind::ValueValidation, "{line}: {err}");
    }
}

#[test]
fn run_takes_everything_after_its_options_as_the_command() {
    let cli = parse("run --net web --ip 10.1.0.5/24 --name c9 -- ping -c1 -W2 10.1.0.1").unwrap();
    let Command::Run(run) = &cli.command else {
        panic!("not run: {:?}", cli.command)
    };
    let spec = run.to_spec().unwrap();
    assert_eq!(spec.net, "web");
    assert_eq!(spec.ip, Some(cidr("10.1.0.5/24")));
    assert_eq!(spec.name.as_deref(), Some("c9"));
    assert_eq!(spec.command, ["ping", "-c1", "-W2", "10.1.0.1"]);
    // Not one request: `cli::run` runs it itself.
    assert_eq!(cli.command.to_request(), Err(ArgError::NotOneRequest));

    // The defaults, and a command whose own options come without `--`.
    let cli = parse("run sh -c true").unwrap();
    let Command::Run(run) = &cli.command else {
        panic!("not run")
    };
    let spec = run.to_spec().unwrap();
    assert_eq!(
        (spec.net.as_str(), spec.ip, spec.name),
        ("yard0", None, None)
    );
    assert_eq!(spec.command, ["sh", "-c", "true"]);

    let err = parse("run --net web").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
}
