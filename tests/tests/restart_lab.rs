//! Restart labs: yardd restores networks and ports from its state
//! file after SIGTERM and after SIGKILL, and the containers talk again without
//! anything being re-added; a corrupt state file stops yardd with a message
//! naming it, and is left in place. A container keeps its interface while
//! yardd is down (no carrier) and after it, with every address it added
//! itself; an interface of that name that is not yardd's TAP is refused and
//! left alone; `port rm` and a failed `port add` leave no TAP behind.
//!
//! Needs root; without it each test prints why and returns.

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;
use yard_tests::cmd::{in_ns, in_ns_ok, stdout};
use yard_tests::{require, Container, Lab};

/// The configuration part of `net ls` (live counters left out), sorted.
fn net_config(lab: &Lab) -> Vec<Value> {
    let nets = lab.ctl_json(&["net", "ls"]);
    let mut nets: Vec<Value> = nets
        .as_array()
        .expect("net ls --json is an array")
        .iter()
        .map(|n| {
            let mut ports: Vec<String> = n["ports"]
                .as_array()
                .map(|p| {
                    p.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            ports.sort();
            serde_json::json!({
                "name": n["name"], "subnet": n["subnet"], "gateway": n["gateway"],
                "icc": n["icc"], "vlan": n["vlan"], "aging_secs": n["aging_secs"],
                "mtu": n["mtu"], "ports": ports,
            })
        })
        .collect();
    nets.sort_by_key(|n| n["name"].to_string());
    nets
}

/// The configuration part of `port ls` (state left out), sorted.
fn port_config(lab: &Lab) -> Vec<Value> {
    let ports = lab.ctl_json(&["port", "ls"]);
    let mut ports: Vec<Value> = ports
        .as_array()
        .expect("port ls --json is an array")
        .iter()
        .map(|p| {
            serde_json::json!({
                "name": p["name"], "kind": p["kind"], "net": p["net"], "netns": p["netns"],
                "ifname": p["ifname"], "ip": p["ip"], "mac": p["mac"], "mtu": p["mtu"],
            })
        })
        .collect();
    ports.sort_by_key(|p| p["name"].to_string());
    ports
}

fn restart_restores_everything(signal: Signal) {
    let mut lab = Lab::new();
    lab.ctl_ok(&[
        "net",
        "create",
        "keep",
        "--subnet",
        "10.65.0.0/24",
        "--aging",
        "120",
        "--mtu",
        "1400",
    ]);
    let c1 = lab.tap(
        "c1",
        "yard0",
        "172.30.4.1/16",
        &["--mac", "02:00:00:aa:00:01"],
    );
    let c2 = lab.tap("c2", "yard0", "172.30.4.2/16", &[]);
    let k1 = lab.tap("k1", "keep", "10.65.0.2/24", &[]);
    let k2 = lab.tap("k2", "keep", "10.65.0.3/24", &[]);
    lab.ping_ok(&c1, c2.ip);
    lab.ping_ok(&k1, k2.ip);
    let (nets_before, ports_before) = (net_config(&lab), port_config(&lab));
    assert_eq!(nets_before.len(), 2, "{nets_before:#?}");
    assert_eq!(ports_before.len(), 4, "{ports_before:#?}");
    let c2_mac = c2.mac();

    let old_pid = lab.pid();
    let status = lab.stop(signal);
    if signal == Signal::SIGTERM {
        assert!(
            status.success(),
            "yardd did not exit cleanly on SIGTERM: {status}\n{}",
            lab.log_tail()
        );
    }
    lab.start();
    assert_ne!(lab.pid(), old_pid);

    lab.wait_ports_up(Duration::from_secs(15));
    assert_eq!(
        net_config(&lab),
        nets_before,
        "networks changed across the restart"
    );
    assert_eq!(
        port_config(&lab),
        ports_before,
        "ports changed across the restart"
    );
    assert_eq!(
        c1.mac().to_string(),
        "02:00:00:aa:00:01",
        "--mac not restored"
    );
    assert_eq!(c2.mac(), c2_mac, "c2's MAC changed across the restart");
    assert_eq!(k1.mtu(), 1400, "k1 lost its network's MTU");

    lab.ping_ok(&c1, c2.ip);
    lab.ping_ok(&c2, c1.ip);
    lab.ping_ok(&k2, k1.ip);
}

#[test]
fn restart_after_sigterm_restores_networks_and_ports() {
    if !require(&["ping"]) {
        return;
    }
    restart_restores_everything(Signal::SIGTERM);
}

#[test]
fn restart_after_sigkill_restores_networks_and_ports() {
    if !require(&["ping"]) {
        return;
    }
    restart_restores_everything(Signal::SIGKILL);
}

#[test]
fn corrupt_state_file_stops_yardd_with_its_name_and_is_kept() {
    if !require(&[]) {
        return;
    }
    let mut lab = Lab::new();
    lab.ctl_ok(&["net", "create", "saved", "--subnet", "10.67.0.0/24"]);
    lab.stop(Signal::SIGTERM);
    let state = lab.state_file();
    assert!(state.is_file(), "yardd did not write {}", state.display());

    for garbage in ["{ this is not json", r#"{"networks": 42, "ports": "x"}"#] {
        std::fs::write(&state, garbage).unwrap();
        let log_before = lab.log_text().len();
        let status = lab.run_until_exit(Duration::from_secs(10));
        let log = lab.log_text()[log_before..].to_string();
        assert!(
            !status.success(),
            "yardd started on a corrupt state file ({garbage}): {status}\n{log}"
        );
        assert!(
            log.contains(&state.to_string_lossy().into_owned()),
            "yardd's error does not name {}:\n{log}",
            state.display()
        );
        assert_eq!(
            std::fs::read_to_string(&state).unwrap(),
            garbage,
            "the corrupt state file was changed or removed"
        );
    }
}

#[test]
fn a_second_yardd_on_the_same_state_directory_is_refused_naming_the_first() {
    if !require(&[]) {
        return;
    }
    let lab = Lab::new();
    lab.ctl_ok(&["net", "create", "mine", "--subnet", "10.68.0.0/24"]);
    let first = lab.pid().expect("the first yardd runs");
    let other_socket = lab.dir().join("second.sock");
    let second = yard_tests::cmd::output(
        yard_tests::cmd::timed(10, &yard_tests::bins::bins().yardd)
            .arg("--socket")
            .arg(&other_socket)
            .arg("--state-dir")
            .arg(lab.state_dir())
            .env_remove("YARD_SOCKET")
            .env("NO_COLOR", "1"),
    );
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        !second.status.success(),
        "a second yardd started on {}: {stderr}",
        lab.state_dir().display()
    );
    assert!(
        stderr.contains(&format!(
            "state directory {} is in use by another yardd (pid {first})",
            lab.state_dir().display()
        )),
        "the refusal does not name the directory and the first yardd's pid: {stderr}"
    );
    assert!(!other_socket.exists(), "the refused yardd bound its socket");
    // The first one goes on, its configuration untouched.
    let nets = lab.ctl_json(&["net", "ls"]);
    assert!(
        nets.as_array().unwrap().iter().any(|n| n["name"] == "mine"),
        "{nets}"
    );
}

/// `ip -j addr show IF` inside the container, or `None` when the interface
/// does not exist.
fn link_of(c: &Container) -> Option<Value> {
    let out = in_ns(&c.ns, &["ip", "-j", "-d", "addr", "show", "dev", &c.ifname]);
    if !out.status.success() {
        return None;
    }
    let links: Value = serde_json::from_str(&stdout(&out)).expect("ip -j prints JSON");
    Some(links[0].clone())
}

/// The addresses on the container's interface, as `ADDR/LEN`.
fn addresses(link: &Value) -> Vec<String> {
    link["addr_info"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| format!("{}/{}", x["local"].as_str().unwrap_or("?"), x["prefixlen"]))
                .collect()
        })
        .unwrap_or_default()
}

fn has_flag(link: &Value, flag: &str) -> bool {
    link["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == flag))
}

fn restart_keeps_the_interface_and_its_addresses(signal: Signal) {
    let mut lab = Lab::new();
    let c1 = lab.tap("c1", "yard0", "172.30.6.1/16", &[]);
    let c2 = lab.tap("c2", "yard0", "172.30.6.2/16", &[]);
    // What the container adds itself: IPv6 (off in lab namespaces until
    // now) with an address of its own, and a second IPv4 address.
    in_ns_ok(
        &c1.ns,
        &[
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.disable_ipv6=0",
            "net.ipv6.conf.eth0.disable_ipv6=0",
        ],
    );
    in_ns_ok(
        &c1.ns,
        &[
            "ip",
            "-6",
            "addr",
            "add",
            "fd00:6::1/64",
            "dev",
            "eth0",
            "nodad",
        ],
    );
    in_ns_ok(
        &c1.ns,
        &["ip", "addr", "add", "10.66.6.1/24", "dev", "eth0"],
    );
    lab.ping_ok(&c1, c2.ip);
    let before = link_of(&c1).expect("c1 has eth0");
    let own = ["fd00:6::1/64", "10.66.6.1/24", "172.30.6.1/16"];
    for addr in own {
        assert!(
            addresses(&before).iter().any(|a| a == addr),
            "{addr} missing: {before:#}"
        );
    }

    lab.stop(signal);
    // While yardd is down the container keeps eth0 — the same device, its
    // addresses — without carrier.
    let down =
        link_of(&c1).unwrap_or_else(|| panic!("c1's eth0 is gone while yardd is down ({signal})"));
    assert_eq!(down["ifindex"], before["ifindex"], "{down:#}");
    assert!(
        has_flag(&down, "NO-CARRIER"),
        "carrier should be off: {down:#}"
    );
    for addr in own {
        assert!(
            addresses(&down).iter().any(|a| a == addr),
            "{addr} lost while down: {down:#}"
        );
    }

    lab.start();
    lab.wait_ports_up(Duration::from_secs(15));
    let after = link_of(&c1).expect("c1 has eth0 after the restart");
    assert_eq!(
        after["ifindex"], before["ifindex"],
        "yardd made a new eth0 instead of re-adopting it: {after:#}"
    );
    assert!(!has_flag(&after, "NO-CARRIER"), "{after:#}");
    assert!(has_flag(&after, "UP"), "{after:#}");
    for addr in own {
        assert!(
            addresses(&after).iter().any(|a| a == addr),
            "{addr} lost across the restart ({signal}): {after:#}"
        );
    }
    assert_eq!(after["address"], before["address"], "the MAC changed");
    assert_eq!(after["mtu"], before["mtu"], "the MTU changed");
    lab.ping_ok(&c1, c2.ip);
    lab.ping_ok(&c2, c1.ip);

    // `port rm` deletes the interface, persistent as it is.
    lab.ctl_ok(&["port", "rm", "c1"]);
    assert_eq!(link_of(&c1), None, "port rm left c1's eth0 behind");
    lab.ctl_ok(&["port", "rm", "c2"]);
    assert_eq!(link_of(&c2), None, "port rm left c2's eth0 behind");
}

#[test]
fn restart_after_sigterm_keeps_the_containers_interface_and_own_addresses() {
    if !require(&["ping", "sysctl"]) {
        return;
    }
    restart_keeps_the_interface_and_its_addresses(Signal::SIGTERM);
}

#[test]
fn restart_after_sigkill_keeps_the_containers_interface_and_own_addresses() {
    if !require(&["ping", "sysctl"]) {
        return;
    }
    restart_keeps_the_interface_and_its_addresses(Signal::SIGKILL);
}

/// The state and reason `port ls` shows for `port`.
/// Port `port` as `port ls --json` lists it (`state`, `reason`, …).
fn port_state(lab: &Lab, port: &str) -> Value {
    let ports = lab.ctl_json(&["port", "ls"]);
    ports
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == port))
        .unwrap_or_else(|| panic!("{port} not in {ports:#}"))
        .clone()
}

#[test]
fn restart_refuses_an_interface_that_is_not_its_tap_and_leaves_it_alone() {
    if !require(&[]) {
        return;
    }
    let mut lab = Lab::new();
    let other = lab.tap("d1", "yard0", "172.30.7.1/16", &[]);
    let foreign = lab.tap("f1", "yard0", "172.30.7.2/16", &[]);
    lab.stop(Signal::SIGTERM);
    // While yardd is down its TAPs are replaced by another kind of device (a
    // bridge: it exists in every kernel) and by a TAP someone else made,
    // under the same names.
    in_ns_ok(&other.ns, &["ip", "link", "del", "eth0"]);
    in_ns_ok(&other.ns, &["ip", "link", "add", "eth0", "type", "bridge"]);
    in_ns_ok(&foreign.ns, &["ip", "link", "del", "eth0"]);
    in_ns_ok(
        &foreign.ns,
        &["ip", "tuntap", "add", "dev", "eth0", "mode", "tap"],
    );
    let kind = |c: &Container| link_of(c).map(|l| l["linkinfo"]["info_kind"].clone());
    lab.start();

    let state = port_state(&lab, "d1");
    let reason = state["reason"].to_string();
    assert!(
        reason.contains("interface eth0 exists and is not a TAP (kind bridge)"),
        "{state:#}"
    );
    let state = port_state(&lab, "f1");
    let reason = state["reason"].to_string();
    assert!(
        reason.contains("TAP eth0 exists but was not made by yardd for this port"),
        "{state:#}"
    );
    assert_eq!(kind(&other), Some(Value::from("bridge")));
    assert_eq!(kind(&foreign), Some(Value::from("tun")));

    // Removing the ports leaves the devices that were never yardd's.
    lab.ctl_ok(&["port", "rm", "d1"]);
    lab.ctl_ok(&["port", "rm", "f1"]);
    assert_eq!(kind(&other), Some(Value::from("bridge")));
    assert_eq!(kind(&foreign), Some(Value::from("tun")));
}

#[test]
fn a_port_add_that_cannot_be_saved_leaves_no_tap_behind() {
    if !require(&[]) {
        return;
    }
    let mut lab = Lab::new();
    let ns = lab.netns();
    // A directory where yardd writes its temporary state file: the save fails.
    let blocker = lab.state_dir().join(".state.json.tmp");
    std::fs::create_dir_all(&blocker).unwrap();
    let args = [
        "port",
        "add",
        "c1",
        "--net",
        "yard0",
        "--tap",
        "--netns",
        &ns,
        "--ip",
        "172.30.8.1/16",
    ];
    let err = lab.ctl_err(&args);
    assert!(err.contains("state"), "{err}");
    let links = stdout(&in_ns_ok(&ns, &["ip", "-o", "link", "show"]));
    assert!(
        !links.contains("eth0"),
        "the failed add left a TAP: {links}"
    );
    std::fs::remove_dir(&blocker).unwrap();
    lab.ctl_ok(&args);
}

#[test]
fn a_namespace_deleted_while_yardd_is_down_leaves_its_port_down_and_removable() {
    if !require(&["ping"]) {
        return;
    }
    let mut lab = Lab::new();
    let gone = lab.tap("g1", "yard0", "172.30.9.1/16", &[]);
    let c2 = lab.tap("c2", "yard0", "172.30.9.2/16", &[]);
    let c3 = lab.tap("c3", "yard0", "172.30.9.3/16", &[]);
    lab.stop(Signal::SIGKILL);
    // The container goes away while yardd is down, its persistent TAP with it.
    yard_tests::cmd::run_ok(&["ip", "netns", "del", &gone.ns]);
    lab.start();
    let state = port_state(&lab, "g1");
    assert!(
        state["reason"].to_string().contains(&gone.ns),
        "the reason should name the namespace: {state:#}"
    );
    // The others came back, and talk.
    lab.ping_ok(&c2, c3.ip);
    lab.ctl_ok(&["port", "rm", "g1"]);
    lab.ping_ok(&c3, c2.ip);
}

#[test]
fn an_uplink_tap_survives_a_restart_and_uplink_rm_deletes_it() {
    if !require(&[]) {
        return;
    }
    let mut lab = Lab::new();
    let ns = lab.netns();
    lab.ctl_ok(&[
        "uplink",
        "add",
        "up0",
        "--tap",
        "--netns",
        &ns,
        "--ifname",
        "up0",
        "--ip",
        "192.168.77.2/24",
    ]);
    // The far side is the user's: an address yardd knows nothing of.
    in_ns_ok(&ns, &["ip", "addr", "add", "192.168.77.1/24", "dev", "up0"]);
    let outside = Container {
        port: "up0".into(),
        ns: ns.clone(),
        ifname: "up0".into(),
        ip: "192.168.77.1".parse().unwrap(),
    };
    let before = link_of(&outside).expect("the uplink TAP exists");
    lab.stop(Signal::SIGTERM);
    let down = link_of(&outside).expect("the uplink TAP is kept while yardd is down");
    assert!(has_flag(&down, "NO-CARRIER"), "{down:#}");
    lab.start();
    let uplinks = lab.ctl_json(&["uplink", "ls"]);
    assert!(
        yard_tests::lab::port_is_up(&uplinks[0]["state"]),
        "{uplinks:#}"
    );
    let after = link_of(&outside).expect("the uplink TAP after the restart");
    assert_eq!(after["ifindex"], before["ifindex"], "{after:#}");
    assert!(
        addresses(&after).iter().any(|a| a == "192.168.77.1/24"),
        "the far side's address was lost: {after:#}"
    );
    lab.ctl_ok(&["uplink", "rm", "up0"]);
    assert_eq!(link_of(&outside), None, "uplink rm left the TAP behind");
}
