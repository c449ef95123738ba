use super::*;

fn tap(name: &str, net: &str, netns: &str, ip: Option<&str>) -> PortSpec {
    let mut kind = PortKind::tap(net, Some(netns), ip.map(|s| s.parse().unwrap()));
    if let PortKind::Tap { ifname, .. } = &mut kind {
        *ifname = format!("e{name}");
    }
    PortSpec {
        name: name.into(),
        kind,
    }
}

fn network(name: &str, subnet: &str, range: Option<&str>) -> NetworkSpec {
    let mut spec = NetworkSpec::new(name);
    spec.subnet = Some(subnet.parse().unwrap());
    spec.ip_range = range.map(|r| r.parse().unwrap());
    spec
}

fn config_with(nets: &[NetworkSpec]) -> Config {
    let mut config = Config::default();
    for net in nets {
        let checked = config.check_new_network(net).unwrap();
        config.networks.push(checked);
    }
    config
}

/// Adds `spec` as the server does: address first, then the checks.
fn add(config: &mut Config, spec: PortSpec) -> Result<Ipv4Cidr, ConfigError> {
    let spec = config.with_address(spec)?;
    config.check_new_port(&spec)?;
    let ip = match &spec.kind {
        PortKind::Tap { ip: Some(ip), .. } => *ip,
        other => panic!("no address given: {other:?}"),
    };
    config.ports.push(spec);
    Ok(ip)
}

#[test]
fn addresses_skip_network_gateway_and_taken_ones() {
    let mut config = config_with(&[network("web", "10.61.0.0/29", None)]);
    // .0 is the network, .1 the gateway; .3 is taken by hand.
    add(&mut config, tap("fixed", "web", "n0", Some("10.61.0.3/29"))).unwrap();
    let got: Vec<String> = (1..=4)
        .map(|i| add(&mut config, tap(&format!("c{i}"), "web", "n", None)).unwrap())
        .map(|ip| ip.to_string())
        .collect();
    assert_eq!(
        got,
        [
            "10.61.0.2/29",
            "10.61.0.4/29",
            "10.61.0.5/29",
            "10.61.0.6/29"
        ]
    );
    // .7 is the broadcast address: nothing is left.
    let err = add(&mut config, tap("c5", "web", "n", None)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "port c5: network web has no free address left in 10.61.0.0/29: remove a port, \
         or create a network with a larger --subnet or --ip-range"
    );
    // Removing a port frees its address for the next one.
    config.ports.retain(|p| p.name != "c2");
    assert_eq!(
        add(&mut config, tap("c6", "web", "n", None))
            .unwrap()
            .to_string(),
        "10.61.0.4/29"
    );
}

#[test]
fn a_requested_address_in_use_names_its_holder() {
    let mut config = config_with(&[network("web", "10.61.0.0/24", None)]);
    add(&mut config, tap("c1", "web", "n1", None)).unwrap();
    let err = add(&mut config, tap("c2", "web", "n2", Some("10.61.0.2/24"))).unwrap_err();
    assert!(
        err.to_string()
            .contains("address 10.61.0.2 is already used by port c1 on network web"),
        "{err}"
    );
}

#[test]
fn ip_range_limits_allocation() {
    let mut config = config_with(&[network("pods", "10.88.0.0/16", Some("10.88.5.0/30"))]);
    let got: Vec<String> = (1..=4)
        .map(|i| add(&mut config, tap(&format!("c{i}"), "pods", "n", None)).unwrap())
        .map(|ip| ip.to_string())
        .collect();
    // The range's own first and last addresses are hosts of the subnet.
    assert_eq!(
        got,
        [
            "10.88.5.0/16",
            "10.88.5.1/16",
            "10.88.5.2/16",
            "10.88.5.3/16"
        ]
    );
    assert!(matches!(
        add(&mut config, tap("c5", "pods", "n", None)),
        Err(ConfigError::NoFreeAddress { .. })
    ));
    // A range holding the gateway skips it.
    let mut config = config_with(&[network("gw", "10.89.0.0/24", Some("10.89.0.0/30"))]);
    assert_eq!(
        add(&mut config, tap("c1", "gw", "n", None))
            .unwrap()
            .to_string(),
        "10.89.0.2/24"
    );
}

#[test]
fn ip_ranges_are_checked_against_the_subnet() {
    let config = Config::default();
    let err = config
        .check_new_network(&network("n", "10.0.0.0/24", Some("10.0.1.0/25")))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "network n: --ip-range 10.0.1.0/25 is not inside its subnet 10.0.0.0/24: give a part of it"
    );
    assert!(config
        .check_new_network(&network("n", "10.0.0.0/24", Some("10.0.0.0/16")))
        .is_err());
    let mut plain = NetworkSpec::new("l2");
    plain.ip_range = Some("10.0.0.0/24".parse().unwrap());
    assert_eq!(
        config.check_new_network(&plain).unwrap_err(),
        ConfigError::RangeWithoutSubnet("l2".into())
    );
    let spec = config
        .check_new_network(&network("n", "10.0.0.0/24", Some("10.0.0.77/26")))
        .unwrap();
    assert_eq!(spec.ip_range.unwrap().to_string(), "10.0.0.64/26");
}

#[test]
fn l2_networks_and_other_kinds_get_no_address() {
    let mut config = Config::default();
    config.networks.push(NetworkSpec::new("l2"));
    let spec = tap("c1", "l2", "n", None);
    assert_eq!(config.with_address(spec.clone()).unwrap(), spec);
}

#[test]
fn one_default_route_per_namespace() {
    let mut config = config_with(&[
        network("a", "10.1.0.0/24", None),
        network("b", "10.2.0.0/24", None),
        network("c", "10.3.0.0/24", None),
    ]);
    let holder = |config: &Config| {
        config
            .default_route_holder(&Some("ns".into()))
            .map(|(p, gw)| format!("{} via {gw}", p.name))
    };
    let first = config.with_address(tap("a1", "a", "ns", None)).unwrap();
    assert!(config.takes_default_route(&first));
    config.ports.push(first);
    assert_eq!(holder(&config).unwrap(), "a1 via 10.1.0.1");
    // A second port leaves the route where it is.
    let second = config.with_address(tap("b1", "b", "ns", None)).unwrap();
    assert!(!config.takes_default_route(&second));
    config.ports.push(second);
    assert_eq!(holder(&config).unwrap(), "a1 via 10.1.0.1");
    // Another namespace is not affected.
    let other = config.with_address(tap("a2", "a", "other", None)).unwrap();
    assert!(config.takes_default_route(&other));
    config.ports.push(other);
    // --default-route moves it.
    let mut third = config.with_address(tap("c1", "c", "ns", None)).unwrap();
    if let PortKind::Tap { default_route, .. } = &mut third.kind {
        *default_route = true;
    }
    assert!(config.takes_default_route(&third));
    config.ports.push(third);
    config.claim_default_route("c1");
    assert_eq!(holder(&config).unwrap(), "c1 via 10.3.0.1");
    // Removing the holder hands the route to the first remaining port.
    config.ports.retain(|p| p.name != "c1");
    assert_eq!(holder(&config).unwrap(), "a1 via 10.1.0.1");
    config.ports.retain(|p| p.name != "a1");
    assert_eq!(holder(&config).unwrap(), "b1 via 10.2.0.1");
    config.ports.retain(|p| p.name != "b1");
    assert_eq!(holder(&config), None);
}
