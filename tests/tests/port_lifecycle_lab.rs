//! Port lifecycle labs against the real yardd: a port follows its
//! container's namespace — when the namespace's last process exits the port
//! turns down and nothing answers at the old address (yardd's TAP fd must
//! not keep a ghost of the container alive); after a restart a port is
//! re-created only in the namespace it was put in, never in another that a
//! reused PID now names; and a port that is down still has stats.
//!
//! Needs root; without it each test prints why and returns.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use yard_ctl::api::PortStats;
use yard_tests::cmd::{end_child, poll, run, run_ok};
use yard_tests::lab::add_tap;
use yard_tests::{require, Lab, Netns};

/// A process alone in a new network namespace (`unshare -n sleep`), known
/// only by its PID: no name under /run/netns holds the namespace. Ended on
/// drop.
struct Sleeper(Option<Child>);

impl Sleeper {
    fn start() -> Sleeper {
        let child = Command::new("unshare")
            .args(["-n", "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("start unshare -n sleep");
        let sleeper = Sleeper(Some(child));
        // Until unshare has made the new namespace, /proc/PID/ns/net is
        // ours (the host's): a port added there would land beside eth0.
        let ours = std::fs::read_link("/proc/self/ns/net").expect("our netns");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::fs::read_link(sleeper.netns()).ok().as_ref() == Some(&ours) {
            assert!(
                std::time::Instant::now() < deadline,
                "unshare -n did not make a namespace within 10 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        sleeper
    }

    fn pid(&self) -> u32 {
        self.0.as_ref().unwrap().id()
    }

    fn netns(&self) -> String {
        format!("/proc/{}/ns/net", self.pid())
    }

    /// Runs `args` in the process's network namespace.
    fn exec(&self, args: &[&str]) -> std::process::Output {
        let pid = self.pid().to_string();
        let mut full = vec!["nsenter", "-t", &pid, "-n"];
        full.extend_from_slice(args);
        run(&full)
    }

    fn end(&mut self) {
        if let Some(child) = self.0.take() {
            end_child(child, Duration::from_secs(2));
        }
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        self.end();
    }
}

/// Port `name` as `port ls --json` lists it (`state`, `reason`, …).
fn port_state(lab: &Lab, name: &str) -> serde_json::Value {
    let ports = lab.ctl_json(&["port", "ls"]);
    ports
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("port ls lost {name}: {ports:#}"))
        .clone()
}

#[test]
fn a_container_that_exits_leaves_no_ghost_answering_at_its_address() {
    if !require(&["ping", "unshare", "nsenter"]) {
        return;
    }
    let mut lab = Lab::new();
    lab.ctl_ok(&["net", "create", "ghost", "--subnet", "10.69.0.0/24"]);
    let peer = lab.tap("peer", "ghost", "10.69.0.3/24", &[]);
    let mut sleeper = Sleeper::start();
    lab.ctl_ok(&[
        "port",
        "add",
        "c1",
        "--net",
        "ghost",
        "--tap",
        "--netns",
        &sleeper.netns(),
        "--ip",
        "10.69.0.2/24",
    ]);
    let old = "10.69.0.2".parse().unwrap();
    lab.ping_ok(&peer, old);

    // The container's last process exits: only yardd's TAP fd would still
    // hold its namespace.
    sleeper.end();
    let down = poll(Duration::from_secs(5), Duration::from_millis(100), || {
        port_state(&lab, "c1")["state"] != "up"
    });
    let state = port_state(&lab, "c1");
    assert!(
        down,
        "the port stayed up after its namespace's last process exited: {state}"
    );
    assert!(
        state.to_string().contains("namespace gone"),
        "the reason does not say the namespace is gone: {state}"
    );
    // Nothing answers at the old address any more, and the port's counters
    // say why what was sent to it went nowhere.
    lab.ping_fails(&peer, old, &[]);
    let stats = lab.stats("c1");
    assert!(
        stats.drops.get("port-down").copied().unwrap_or(0) > 0,
        "frames to the vanished container were not counted as port-down: {stats:?}"
    );
    // And the port is still there to remove.
    lab.ctl_ok(&["port", "rm", "c1"]);
}

#[test]
fn after_a_restart_a_port_never_lands_in_the_namespace_of_a_reused_pid() {
    if !require(&["unshare", "nsenter"]) {
        return;
    }
    let mut lab = Lab::new();
    lab.ctl_ok(&["net", "create", "reuse", "--subnet", "10.70.0.0/24"]);
    let mut first = Sleeper::start();
    let pid = first.pid();
    lab.ctl_ok(&[
        "port",
        "add",
        "c1",
        "--net",
        "reuse",
        "--tap",
        "--netns",
        &first.netns(),
        "--ip",
        "10.70.0.2/24",
    ]);
    lab.stop(Signal::SIGTERM);
    first.end();

    // Another process, in another namespace, gets the same PID.
    let mut second = None;
    for _ in 0..20 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string())
            .expect("write ns_last_pid");
        let candidate = Sleeper::start();
        if candidate.pid() == pid {
            second = Some(candidate);
            break;
        }
    }
    let second = second.expect("no process got the reused PID in 20 tries");

    lab.start();
    let state = port_state(&lab, "c1");
    assert_ne!(
        state["state"], "up",
        "the port came up in another process's namespace: {state}"
    );
    assert!(
        state.to_string().contains("namespace replaced"),
        "the reason does not say the namespace was replaced: {state}"
    );
    let link = second.exec(&["ip", "link", "show", "eth0"]);
    assert!(
        !link.status.success(),
        "yardd created eth0 in the namespace of the process that reused PID {pid}:\n{}",
        String::from_utf8_lossy(&link.stdout)
    );
    let addrs = second.exec(&["ip", "-4", "addr"]);
    assert!(!String::from_utf8_lossy(&addrs.stdout).contains("10.70.0.2"));
}

#[test]
fn a_port_whose_namespace_is_gone_is_down_and_still_has_stats() {
    if !require(&[]) {
        return;
    }
    let mut lab = Lab::new();
    lab.ctl_ok(&["net", "create", "life", "--subnet", "10.68.0.0/24"]);
    let ns = Netns::new();
    add_tap(
        &lab,
        ns.name().to_string(),
        "gone1",
        "life",
        "10.68.0.2/24",
        &[],
    );

    // The namespace goes away while yardd is stopped; on start the port
    // cannot be re-created and is down.
    lab.stop(Signal::SIGTERM);
    run_ok(&["ip", "netns", "del", ns.name()]);
    lab.start();
    let ports = lab.ctl_json(&["port", "ls"]);
    let port = ports
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "gone1")
        .unwrap_or_else(|| panic!("port ls lost the port: {ports:#}"));
    assert_ne!(port["state"], "up", "{port:#}");

    // `port stats NAME` answers for it like `port stats` does: zeroes.
    let one: Vec<PortStats> = lab.ctl_parse(&["port", "stats", "gone1"]);
    assert_eq!(one.len(), 1, "{one:#?}");
    assert_eq!((one[0].name.as_str(), one[0].rx_packets), ("gone1", 0));
    let all: Vec<PortStats> = lab.ctl_parse(&["port", "stats"]);
    assert!(all.iter().any(|s| s.name == "gone1"), "{all:#?}");
}

#[test]
fn an_auto_remove_port_goes_with_its_namespace_and_frees_its_address() {
    if !require(&["unshare", "nsenter"]) {
        return;
    }
    let mut lab = Lab::new();
    lab.ctl_ok(&["net", "create", "engine", "--subnet", "10.71.0.0/24"]);
    let mut running = Sleeper::start();
    let add = |name: &str, sleeper: &Sleeper| {
        lab.ctl_json(&[
            "port",
            "add",
            name,
            "--net",
            "engine",
            "--tap",
            "--netns",
            &sleeper.netns(),
            "--auto-remove",
        ])
    };
    let first = add("e1", &running);
    assert_eq!(first["ip"], "10.71.0.2/24", "{first:#}");

    // The container's last process exits: the port is removed, not down,
    // and its address is free for the next container.
    running.end();
    let gone = poll(Duration::from_secs(5), Duration::from_millis(100), || {
        !lab.port_names().contains(&"e1".to_string())
    });
    assert!(
        gone,
        "an --auto-remove port outlived its namespace: {:#}",
        lab.ctl_json(&["port", "ls"])
    );
    let mut next = Sleeper::start();
    let second = add("e2", &next);
    assert_eq!(second["ip"], "10.71.0.2/24", "{second:#}");

    // Its namespace goes while yardd is stopped: on start the port is
    // removed from the configuration instead of coming back down.
    lab.stop(Signal::SIGTERM);
    next.end();
    lab.start();
    assert!(
        !lab.port_names().contains(&"e2".to_string()),
        "an --auto-remove port whose namespace is gone came back after a restart"
    );
    let saved = std::fs::read_to_string(lab.state_file()).expect("read the state file");
    assert!(
        !saved.contains("\"e2\""),
        "the removal was not saved:\n{saved}"
    );
}
