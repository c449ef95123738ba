//! Restart labs: yardd restores networks and ports from its state
//! file after SIGTERM and after SIGKILL, and the containers talk again without
//! anything being re-added; a corrupt state file stops yardd with a message
//! naming it, and is left in place.
//!
//! Needs root; without it each test prints why and returns.

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;
use yard_tests::{require, Lab};

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
