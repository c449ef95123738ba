use std::collections::HashMap;

use serde_json::json;

use super::config::PortMapping;
use super::result::CniResult;
use super::*;
use crate::api::Transport;

fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

fn add_env(netns: &str) -> Vec<(&'static str, &str)> {
    vec![
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "0123456789abcdef0123"),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/nonexistent"),
    ]
}

fn run_with(pairs: &[(&str, &str)], stdin: &str) -> Outcome {
    run(vars(pairs), &mut stdin.as_bytes())
}

fn error_code(outcome: &Outcome) -> (u64, String) {
    assert_eq!(outcome.exit, 1, "{outcome:?}");
    let out = outcome.stdout.as_ref().expect("an error object on stdout");
    (
        out["code"].as_u64().expect("a code"),
        out["msg"].as_str().expect("a msg").to_string(),
    )
}

#[test]
fn version_lists_the_supported_versions() {
    let out = run_with(&[("CNI_COMMAND", "VERSION")], r#"{"cniVersion":"0.4.0"}"#);
    assert_eq!(out.exit, 0);
    assert_eq!(
        out.stdout.unwrap(),
        json!({"cniVersion": "0.4.0",
               "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]})
    );
    // With no stdin the newest version answers.
    let out = run_with(&[("CNI_COMMAND", "VERSION")], "");
    assert_eq!(out.stdout.unwrap()["cniVersion"], "1.1.0");
}

#[test]
fn environment_errors_are_code_4() {
    let (code, msg) = error_code(&run_with(&[], "{}"));
    assert_eq!(code, 4);
    assert!(msg.contains("CNI_COMMAND is not set"), "{msg}");
    let mut env = add_env("/proc/self/ns/net");
    env.retain(|(k, _)| *k != "CNI_NETNS");
    let (code, msg) = error_code(&run_with(&env, r#"{"cniVersion":"1.0.0","name":"n"}"#));
    assert_eq!(code, 4);
    assert!(msg.contains("CNI_NETNS is not set"), "{msg}");
    let mut env = add_env("/proc/self/ns/net");
    env.push(("CNI_IFNAME", "a/b"));
    let env: Vec<_> = env
        .into_iter()
        .filter(|(k, v)| *k != "CNI_IFNAME" || *v == "a/b")
        .collect();
    assert_eq!(error_code(&run_with(&env, "{}")).0, 4);
}

#[test]
fn configuration_errors_carry_the_spec_codes() {
    let env = add_env("/proc/self/ns/net");
    let cases = [
        ("{not json", 6, "not JSON"),
        (
            r#"{"cniVersion":"9.9.9","name":"n"}"#,
            1,
            "CNI version 9.9.9 is not supported",
        ),
        (r#"{"name":"n"}"#, 7, "cniVersion"),
        (
            r#"{"cniVersion":"1.0.0","name":"n","mtu":"big"}"#,
            7,
            "invalid",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","subnet":"10.0.0.0/33"}"#,
            7,
            "invalid",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","isGateway":false}"#,
            2,
            "isGateway",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","hairpinMode":false}"#,
            2,
            "hairpinMode",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","ipam":{}}"#,
            7,
            "ipam has no \"type\"",
        ),
        (r#"{"cniVersion":"1.0.0"}"#, 7, "name the yardd network"),
    ];
    for (stdin, want, text) in cases {
        let (code, msg) = error_code(&run_with(&env, stdin));
        assert_eq!(code, want, "{stdin}: {msg}");
        assert!(msg.contains(text), "{stdin}: {msg}");
    }
    // The error object speaks the request's version when it is a known one.
    let out = run_with(
        &env,
        r#"{"cniVersion":"0.4.0","name":"n","isGateway":false}"#,
    );
    assert_eq!(out.stdout.unwrap()["cniVersion"], "0.4.0");
}

#[test]
fn a_missing_namespace_is_code_3_and_no_yardd_is_code_11() {
    let env = add_env("/run/netns/yard-cni-test-does-not-exist");
    let (code, msg) = error_code(&run_with(&env, r#"{"cniVersion":"1.0.0","name":"n"}"#));
    assert_eq!(code, 3, "{msg}");
    assert!(
        msg.contains("/run/netns/yard-cni-test-does-not-exist"),
        "{msg}"
    );

    let dir = std::env::temp_dir().join(format!("yard-cni-unit-{}", std::process::id()));
    let socket = dir.join("absent.sock");
    let conf = json!({"cniVersion": "1.0.0", "name": "n", "socket": socket}).to_string();
    let (code, msg) = error_code(&run_with(&add_env("/proc/self/ns/net"), &conf));
    assert_eq!(code, 11, "{msg}");
    assert!(
        msg.contains(&format!("yardd is not reachable at {}", socket.display())),
        "{msg}"
    );
    // STATUS says the plugin is not available, with spec 1.1's code.
    let (code, _) = error_code(&run_with(&[("CNI_COMMAND", "STATUS")], &conf));
    assert_eq!(code, 50);
}

#[test]
fn configuration_maps_to_a_network_like_the_bridge_plugin() {
    let conf = NetConf::parse(
        json!({
            "cniVersion": "1.0.0", "name": "podnet", "type": "yard-cni",
            "subnet": "10.89.0.0/24", "gateway": "10.89.0.254", "mtu": 1400,
            "ipMasq": true, "vlan": 7, "portIsolation": true, "isDefaultGateway": true,
            "runtimeConfig": {"portMappings": [
                {"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": ""},
                {"hostPort": 5353, "containerPort": 53, "protocol": "udp"}
            ]},
            "someRuntimeKey": {"ignored": true}
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(conf.network(), "podnet");
    let spec = conf.network_spec(None);
    assert_eq!(spec.subnet.unwrap().to_string(), "10.89.0.0/24");
    assert_eq!(spec.gateway.unwrap().to_string(), "10.89.0.254");
    assert_eq!(
        (spec.mtu, spec.masquerade, spec.vlan, spec.icc),
        (1400, true, Some(7), false)
    );
    let maps = &conf.runtime_config.port_mappings;
    assert_eq!(maps.len(), 2);
    assert_eq!(maps[0].transport().unwrap(), Transport::Tcp);
    assert_eq!(maps[0].host_addr().unwrap(), None);
    assert_eq!(maps[1].transport().unwrap(), Transport::Udp);
    let sctp = PortMapping {
        host_port: 1,
        container_port: 1,
        protocol: Some("sctp".into()),
        host_ip: None,
    };
    assert!(sctp.transport().is_err());
    // Without a subnet, an IPAM plugin's address decides it; ipMasq is off
    // by default, as in the bridge plugin.
    let conf = NetConf::parse(br#"{"cniVersion":"1.0.0","name":"n","network":"yard0"}"#).unwrap();
    assert_eq!(conf.network(), "yard0");
    let spec = conf.network_spec(Some((
        "10.90.0.7/16".parse().unwrap(),
        Some("10.90.0.1".parse().unwrap()),
    )));
    assert_eq!(spec.subnet.unwrap().to_string(), "10.90.0.0/16");
    assert!(!spec.masquerade && spec.icc);
}

#[test]
fn port_names_are_stable_and_valid() {
    let env = config::Env::from_vars(vars(&add_env("/proc/self/ns/net"))).unwrap();
    assert_eq!(env.port_name(), "cni-0123456789abcdef-eth0");
}

#[test]
fn results_follow_the_requested_version() {
    let result = CniResult::attachment(
        "eth0",
        Some("02:42:0a:59:00:02".parse().unwrap()),
        "/run/netns/c1",
        Some("10.89.0.2/24".parse().unwrap()),
        Some("10.89.0.1".parse().unwrap()),
        config::Dns::default(),
    );
    let v1 = serde_json::to_value(result.clone().for_version("1.0.0")).unwrap();
    assert_eq!(
        v1,
        json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "mac": "02:42:0a:59:00:02", "sandbox": "/run/netns/c1"}],
            "ips": [{"address": "10.89.0.2/24", "gateway": "10.89.0.1", "interface": 0}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.89.0.1"}]
        })
    );
    let v04 = serde_json::to_value(result.for_version("0.4.0")).unwrap();
    assert_eq!(v04["ips"][0]["version"], "4");
    assert_eq!(v04["cniVersion"], "0.4.0");
    // A result read back (prevResult) gives its first IPv4 address.
    let back: CniResult = serde_json::from_value(v04).unwrap();
    assert_eq!(back.first_ipv4().unwrap().0.to_string(), "10.89.0.2/24");
}
