//! Conntrack control labs against the real yardd: `conntrack ls` on a table
//! too large for one reply arrives whole, a page at a time, with its filters
//! applied by yardd; `conntrack set` on a state directory that cannot be
//! written is refused and leaves the running table as it was; a timeout
//! too large to hold (once wrapped to zero) is refused by yardctl and by
//! yardd, and new flows are still tracked.
//!
//! Needs root; without it each test prints why and returns.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use yard_ctl::api::{ConntrackEntry, ConntrackStats, MAX_CONNTRACK_PAGE};
use yard_tests::bins::bins;
use yard_tests::cmd::{
    command_line, describe, in_ns, in_ns_ok, output, poll, run, run_ok, stderr, timed,
};
use yard_tests::{require, Daemon, Lab};

/// Destination ports per source port and round: 64,512 source ports × 5
/// > the table's default limit of 262,144.
const DPORTS: u16 = 5;

/// Sends one UDP datagram from every source port 1024–65535 of namespace
/// `ns` to each of `DPORTS` ports of `to` from `first_dport` on: a round of
/// more flows than the table holds. Paced lightly so the container's TAP
/// queue overflows less; bounded by its count and by `timeout`.
fn udp_flows(ns: &str, to: Ipv4Addr, first_dport: u16) {
    let script = format!(
        "import socket, time\n\
         for p in range(1024, 65536):\n\
         \x20   s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         \x20   s.bind(('', p))\n\
         \x20   for d in range({first_dport}, {first_dport} + {DPORTS}):\n\
         \x20       s.sendto(b'x', ('{to}', d))\n\
         \x20   s.close()\n\
         \x20   if p % 64 == 0:\n\
         \x20       time.sleep(0.002)\n"
    );
    let out = in_ns(ns, &["timeout", "120", "python3", "-c", &script]);
    assert!(out.status.success(), "sender in {ns}: {}", stderr(&out));
}

/// `yardctl --json conntrack ls FILTER…`. A full table is ~100 MB of JSON,
/// which a debug build on a busy machine takes longer than the harness's
/// usual bound to list: bounded at four minutes instead.
fn conntrack_ls(lab: &Lab, filter: &[&str]) -> Vec<ConntrackEntry> {
    let mut cmd = timed(240, &bins().yardctl);
    cmd.arg("--socket")
        .arg(lab.socket())
        .args(["--json", "conntrack", "ls"])
        .args(filter);
    let out = output(&mut cmd);
    assert!(
        out.status.success(),
        "{}",
        describe(&command_line(&cmd), &out)
    );
    serde_json::from_slice(&out.stdout).expect("conntrack ls --json prints entries")
}

#[test]
fn conntrack_ls_lists_a_full_table_whole_and_filters_in_yardd() {
    if !require(&["python3"]) {
        return;
    }
    let mut lab = Lab::new();
    lab.ctl_ok(&["net", "create", "a", "--subnet", "10.63.0.0/24"]);
    lab.ctl_ok(&["net", "create", "b", "--subnet", "10.64.0.0/24"]);
    lab.ctl_ok(&["net", "connect", "a", "b"]);
    // Nothing expires while the table fills and is listed.
    lab.ctl_ok(&["conntrack", "set", "--timeout", "udp-unreplied=600"]);
    let client = lab.tap("c1", "a", "10.63.0.2/24", &[]);
    let server = lab.tap("s1", "b", "10.64.0.2/24", &[]);
    lab.ping_ok(&client, server.ip);
    in_ns_ok(
        &client.ns,
        &["ip", "link", "set", "eth0", "txqueuelen", "20000"],
    );
    // A busy machine drops some datagrams at the TAP queue: another round,
    // to other ports, fills what the first left.
    let mut stats: ConntrackStats = lab.ctl_parse(&["conntrack", "stats"]);
    for round in 0..4 {
        if stats.entries == stats.max_entries {
            break;
        }
        udp_flows(&client.ns, server.ip, 1000 + round * DPORTS);
        stats = lab.ctl_parse(&["conntrack", "stats"]);
    }
    assert_eq!(
        stats.entries, stats.max_entries,
        "the table did not fill: {stats:#?}"
    );
    // Datagrams still queued at the TAP would replace entries mid-listing.
    let inserted = |lab: &Lab| {
        let stats: ConntrackStats = lab.ctl_parse(&["conntrack", "stats"]);
        stats.counters["inserted"]
    };
    let mut last = inserted(&lab);
    let settled = poll(Duration::from_secs(30), Duration::from_millis(500), || {
        let now = inserted(&lab);
        std::mem::replace(&mut last, now) == now
    });
    assert!(settled, "new connections kept arriving for 30 s");
    // In one reply this listing is larger than yardctl accepts (64 MiB);
    // it comes a page at a time.
    let listed = conntrack_ls(&lab, &[]);
    assert_eq!(listed.len() as u64, stats.entries, "listed vs stats");
    assert!(listed.len() > 10 * MAX_CONNTRACK_PAGE as usize);
    // Every entry once: no page repeated or skipped.
    let unique: BTreeSet<_> = listed
        .iter()
        .map(|e| (e.proto.clone(), e.original.sport, e.original.dport))
        .collect();
    assert_eq!(unique.len(), listed.len(), "an entry was listed twice");

    // Filters are applied by yardd: a filtered listing is one small page.
    let some_port = listed[listed.len() / 2].original.sport;
    let one_port = conntrack_ls(
        &lab,
        &[
            "--proto",
            "udp",
            "--addr",
            &client.ip.to_string(),
            "--port",
            &some_port.to_string(),
        ],
    );
    let expected = listed
        .iter()
        .filter(|e| e.original.sport == some_port)
        .count();
    // A source port sends to DPORTS ports in each of the (up to four)
    // rounds that filled the table.
    assert!((1..=4 * DPORTS as usize).contains(&expected), "{expected}");
    assert_eq!(one_port.len(), expected, "{one_port:#?}");
    assert!(one_port.iter().all(|e| e.original.sport == some_port));
}

/// A small tmpfs over a daemon's state directory, unmounted on drop (lazily:
/// yardd still holds its lock file there).
struct SmallStateDir(PathBuf);

impl SmallStateDir {
    fn mount(dir: &Path) -> SmallStateDir {
        run_ok(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            "size=256k",
            "yard-lab-state",
            dir.to_str().unwrap(),
        ]);
        SmallStateDir(dir.to_path_buf())
    }

    /// Fills the file system, so no state file can be written.
    fn fill(&self) {
        // dd stops with "No space left on device"; that is the point.
        let _ = run(&[
            "dd",
            "if=/dev/zero",
            &format!("of={}", self.filler().display()),
            "bs=4k",
        ]);
    }

    fn drain(&self) {
        std::fs::remove_file(self.filler()).expect("remove the filler file");
    }

    fn filler(&self) -> PathBuf {
        self.0.join("filler")
    }
}

impl Drop for SmallStateDir {
    fn drop(&mut self) {
        let _ = run(&["umount", "-l", self.0.to_str().unwrap()]);
    }
}

fn max_entries(daemon: &Daemon) -> u64 {
    daemon
        .ctl_parse::<ConntrackStats>(&["conntrack", "stats"])
        .max_entries
}

#[test]
fn conntrack_set_that_cannot_be_saved_changes_nothing() {
    if !require(&["mount", "dd"]) {
        return;
    }
    let mut daemon = Daemon::unstarted();
    let state = SmallStateDir::mount(daemon.state_dir());
    daemon.start();
    let before = max_entries(&daemon);

    state.fill();
    let message = daemon.ctl_err(&["conntrack", "set", "--max-entries", "1000"]);
    assert!(
        message.contains("nothing was changed"),
        "conntrack set on a full state directory: {message}"
    );
    assert_eq!(
        max_entries(&daemon),
        before,
        "a refused conntrack set changed the running limit"
    );

    // Once the state can be written, the same change is applied and kept.
    state.drain();
    daemon.ctl_ok(&["conntrack", "set", "--max-entries", "1000"]);
    assert_eq!(max_entries(&daemon), 1000);
    let saved = std::fs::read_to_string(daemon.state_file()).unwrap();
    assert!(saved.contains("1000"), "state file: {saved}");
}

/// The running timeouts, as `conntrack set` with no change reports them.
fn timeouts(daemon: &Daemon) -> serde_json::Value {
    daemon.ctl_json(&["conntrack", "set"])["timeouts"].clone()
}

#[test]
fn an_overflowing_timeout_is_refused_by_yardctl_and_yardd_and_changes_nothing() {
    if !require(&["python3"]) {
        return;
    }
    let mut lab = Lab::new();
    lab.ctl_ok(&["net", "create", "a", "--subnet", "10.65.0.0/24"]);
    lab.ctl_ok(&["net", "create", "b", "--subnet", "10.66.0.0/24"]);
    lab.ctl_ok(&["net", "connect", "a", "b"]);
    let before = timeouts(&lab);

    // The value that once wrapped to zero, so every new UDP flow expired at once.
    let huge = "udp-unreplied=18446744073709551615";
    let message = lab.ctl_err(&["conntrack", "set", "--timeout", huge]);
    assert!(message.contains("udp-unreplied"), "yardctl: {message}");
    // A client that skips yardctl's checks is refused by yardd itself.
    let stream = lab.connect(Duration::from_secs(10));
    let request = format!(
        "{{\"api_version\":{},\"request\":{{\"cmd\":\"conntrack-set\",\"max_entries\":null,\
         \"timeouts\":{{\"udp-unreplied\":18446744073709551615}}}}}}\n",
        yard_ctl::api::API_VERSION
    );
    std::io::Write::write_all(&mut &stream, request.as_bytes()).expect("send the request");
    let reply = lab.reply_line(&stream);
    let error = reply["error"].to_string();
    assert!(
        reply.get("error").is_some() && error.contains("udp-unreplied"),
        "yardd accepted an overflowing timeout: {reply}"
    );
    assert_eq!(
        timeouts(&lab),
        before,
        "a refused timeout changed the table"
    );

    // A new UDP flow is tracked, not expired at once.
    let client = lab.tap("c1", "a", "10.65.0.2/24", &[]);
    let server = lab.tap("s1", "b", "10.66.0.2/24", &[]);
    lab.ping_ok(&client, server.ip);
    let send = "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); \
                s.bind(('', 4242)); s.sendto(b'x', ('10.66.0.2', 9))";
    in_ns_ok(&client.ns, &["timeout", "10", "python3", "-c", send]);
    std::thread::sleep(Duration::from_secs(2));
    let flows = conntrack_ls(&lab, &["--proto", "udp", "--port", "4242"]);
    assert_eq!(
        flows.len(),
        1,
        "the new UDP flow is not tracked: {flows:#?}"
    );
}
