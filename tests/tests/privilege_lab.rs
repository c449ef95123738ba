//! Least-privilege labs: the control socket's bounds (connections at once,
//! idle time), the capabilities yardd keeps after setup, and which network
//! namespaces a client that is not root may attach into.
//!
//! Needs root; without it each test prints why and returns.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use yard_tests::cmd::{command_line, describe, end_child, output, poll, run, timed};
use yard_tests::{require, Lab};

/// A connection to yardd's socket with bounded reads and writes.
fn connect(lab: &Lab) -> UnixStream {
    lab.connect(Duration::from_secs(15))
}

fn status_line() -> Vec<u8> {
    format!(
        "{{\"api_version\":{},\"request\":{{\"cmd\":\"status\"}}}}\n",
        yard_ctl::API_VERSION
    )
    .into_bytes()
}

/// Whether `stream` was closed by yardd: a read returns end of stream.
fn closed_by_yardd(stream: &mut UnixStream) -> bool {
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).is_ok()
}

#[test]
fn connections_beyond_the_limit_are_refused_and_status_still_answers() {
    if !require(&[]) {
        return;
    }
    const LIMIT: usize = 8;
    let lab = Lab::with_args(&["--control-max-connections", "8"]);

    // LIMIT clients that connect and say nothing hold every slot.
    let mut idle: Vec<UnixStream> = (0..LIMIT).map(|_| connect(&lab)).collect();
    // Each is being served: a request on the last one is answered.
    let last = idle.last_mut().unwrap();
    last.write_all(&status_line()).unwrap();
    let reply = lab.reply_line(last);
    assert_eq!(
        reply["ok"]["type"], "status",
        "status on a held slot: {reply}"
    );

    // One more is refused at once, with a line that names the limit.
    let mut extra = connect(&lab);
    let reply = lab.reply_line(&extra);
    let message = reply["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("8 control connections") && message.contains("refused"),
        "connection {} of a limit of {LIMIT}: expected a refusal naming the limit, got {reply}\n{}",
        LIMIT + 1,
        lab.log_tail()
    );
    assert!(
        closed_by_yardd(&mut extra),
        "the refused connection stays open"
    );

    // Once one client goes, yardd answers status again; the daemon is fine.
    drop(idle.pop());
    let answered = poll(Duration::from_secs(10), Duration::from_millis(100), || {
        lab.ctl(&["status"]).status.success()
    });
    assert!(
        answered,
        "no status after a slot was freed\n{}",
        lab.log_tail()
    );
    drop(idle);
    // Every slot comes back when the clients go.
    let all_back = poll(Duration::from_secs(10), Duration::from_millis(100), || {
        let held: Vec<UnixStream> = (0..LIMIT).map(|_| connect(&lab)).collect();
        let mut probe = held.last().unwrap().try_clone().unwrap();
        probe.write_all(&status_line()).is_ok() && lab.reply_line(&probe)["ok"]["type"] == "status"
    });
    assert!(all_back, "slots were not given back\n{}", lab.log_tail());
}

#[test]
fn a_connection_without_a_complete_request_is_closed_after_the_idle_timeout() {
    if !require(&[]) {
        return;
    }
    let lab = Lab::with_args(&["--control-idle-timeout", "2"]);

    // A request trickled in a byte a second never completes: yardd closes
    // the connection with an error line once the timeout has passed since
    // the connection opened, not since the last byte.
    let mut slow = connect(&lab);
    let started = Instant::now();
    let mut reply = String::new();
    let mut reader = BufReader::new(slow.try_clone().unwrap());
    let trickle = std::thread::spawn(move || {
        for byte in b"{\"api_version\":" {
            if slow.write_all(&[*byte]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    reader
        .read_line(&mut reply)
        .unwrap_or_else(|e| panic!("no line from yardd: {e}\n{}", lab.log_tail()));
    let waited = started.elapsed();
    let reply: serde_json::Value = serde_json::from_str(&reply).expect("a JSON line");
    let message = reply["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("no complete request within 2 s"),
        "trickled request: expected the idle-timeout error line, got {reply}"
    );
    assert!(
        waited < Duration::from_secs(10),
        "closed only after {waited:?} though the request was never complete"
    );
    let mut rest = Vec::new();
    assert!(
        reader.read_to_end(&mut rest).is_ok(),
        "the connection stayed open after the idle-timeout line"
    );
    trickle.join().unwrap();

    // A client that sends requests in time keeps its connection across
    // several timeouts' worth of requests.
    let mut busy = connect(&lab);
    for _ in 0..5 {
        busy.write_all(&status_line()).unwrap();
        let reply = lab.reply_line(&busy);
        assert_eq!(reply["ok"]["type"], "status", "status: {reply}");
        std::thread::sleep(Duration::from_millis(1000));
    }
    lab.ctl_ok(&["status"]);
}

/// A uid and gid that no account on this machine has: the test's client.
/// Unused numeric ids leave nothing to clean up (no passwd or group entry).
fn unused_id() -> u32 {
    (0..4000)
        .map(|k| 61000 + (std::process::id() + k) % 4000)
        .find(|&id| {
            let uid = nix::unistd::Uid::from_raw(id);
            let gid = nix::unistd::Gid::from_raw(id);
            matches!(nix::unistd::User::from_uid(uid), Ok(None))
                && matches!(nix::unistd::Group::from_gid(gid), Ok(None))
        })
        .expect("a free uid/gid between 61000 and 65000")
}

/// A network namespace the client's user owns: `unshare -r -n sleep 60` run
/// as that user. Drop ends the process (by pid), and the namespace with it.
struct UserNetns {
    child: Option<Child>,
}

impl UserNetns {
    fn new(id: u32) -> UserNetns {
        let child = Command::new("setpriv")
            .arg(format!("--reuid={id}"))
            .arg(format!("--regid={id}"))
            .arg("--clear-groups")
            .args(["unshare", "-r", "-n", "sleep", "60"])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn unshare -r -n as the client");
        let ns = UserNetns { child: Some(child) };
        let pid = ns.pid();
        // setpriv and unshare exec in the same process: it is ready once
        // it runs sleep, inside its own user and network namespaces.
        let ready = poll(Duration::from_secs(10), Duration::from_millis(50), || {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
        });
        assert!(ready, "unshare -r -n did not start as uid {id}");
        ns
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn path(&self) -> String {
        format!("/proc/{}/ns/net", self.pid())
    }
}

impl Drop for UserNetns {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            end_child(child, Duration::from_secs(2));
        }
    }
}

/// Runs yardctl against `lab` as uid and gid `id`.
fn ctl_as(lab: &Lab, id: u32, args: &[&str]) -> std::process::Output {
    let mut cmd = timed(30, "setpriv");
    cmd.arg(format!("--reuid={id}"))
        .arg(format!("--regid={id}"))
        .arg("--clear-groups")
        .arg(&yard_tests::bins::bins().yardctl)
        .arg("--socket")
        .arg(lab.socket())
        .args(args)
        .env_remove("YARD_SOCKET");
    let out = output(&mut cmd);
    eprintln!("{}", describe(&command_line(&cmd), &out));
    out
}

#[test]
fn a_capture_stream_outlives_the_idle_timeout() {
    if !require(&["ping"]) {
        return;
    }
    let mut lab = Lab::with_args(&["--control-idle-timeout", "1"]);
    let c1 = lab.tap("c1", "yard0", "172.30.8.1/16", &[]);
    let c2 = lab.tap("c2", "yard0", "172.30.8.2/16", &[]);
    lab.ping_ok(&c1, c2.ip);
    let file = lab.dir().join("c1.pcap");
    let mut child = lab
        .ctl_command(&["capture", "c1", "-c", "4", "-w", &file.to_string_lossy()])
        .spawn()
        .expect("spawn yardctl capture");
    // Nothing crosses c1 for three idle timeouts: the stream, whose
    // request is in, stays open.
    std::thread::sleep(Duration::from_secs(3));
    let deadline = Instant::now() + Duration::from_secs(30);
    while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
        let _ = lab.ping(&c1, c2.ip, 2, 3, &[]);
    }
    let done = child.wait_with_output().expect("wait for capture");
    assert!(
        done.status.success(),
        "a capture idle for longer than the idle timeout was cut off:\n{}\n{}",
        describe("yardctl capture c1 -c 4", &done),
        lab.log_tail()
    );
    // 24-byte pcap header plus four records.
    let len = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    assert!(len > 24 + 4 * 16, "capture file holds {len} bytes");
}

#[test]
fn a_group_member_attaches_only_into_namespaces_it_owns() {
    if !require(&["setpriv", "unshare", "nsenter"]) {
        return;
    }
    let id = unused_id();
    let mut lab = Lab::with_args(&["--group", &id.to_string()]);
    // Let the client reach the socket's directory; the socket (0660, our
    // group) and yardd decide.
    std::fs::set_permissions(lab.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let status = ctl_as(&lab, id, &["status"]);
    assert!(status.status.success(), "the --group member is not served");

    // The host's namespace (yardd's own): named through this test's pid,
    // through pid 1, or by leaving --netns out. A unique interface name
    // shows whether anything was created there.
    let ifname = format!("ypv{}", std::process::id() % 100_000);
    let host = format!("/proc/{}/ns/net", std::process::id());
    for (what, netns) in [
        ("this test's namespace", Some(host.as_str())),
        ("pid 1's namespace", Some("/proc/1/ns/net")),
        ("no --netns", None),
    ] {
        let mut args = vec![
            "port",
            "add",
            "h1",
            "--net",
            "yard0",
            "--tap",
            "--ifname",
            &ifname,
            "--ip",
            "172.30.9.9/16",
        ];
        if let Some(ns) = netns {
            args.extend(["--netns", ns]);
        }
        let out = ctl_as(&lab, id, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{what}: a --group member attached a TAP into the host's namespace\n{}",
            lab.log_tail()
        );
        if netns != Some("/proc/1/ns/net") {
            // pid 1's namespace file may not even open for yardd here; it
            // is refused either way.
            assert!(
                err.contains("may not attach into yardd's own network namespace"),
                "{what}: refusal does not say why: {err}"
            );
        }
        assert!(
            !run(&["ip", "link", "show", &ifname]).status.success(),
            "{what}: TAP {ifname} appeared in the host's namespace"
        );
    }
    assert!(
        lab.ctl_json(&["port", "ls"])
            .as_array()
            .is_some_and(|ports| ports.is_empty()),
        "refused ports were configured"
    );

    // A namespace root made (`ip netns add`) belongs to root, not the client.
    let roots = lab.netns();
    let out = ctl_as(
        &lab,
        id,
        &[
            "port", "add", "r1", "--net", "yard0", "--tap", "--netns", &roots,
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(&format!("belongs to uid 0, not to uid {id}")),
        "a namespace root owns: {err}"
    );

    // One the client made itself is its own: the TAP is created there and
    // configured, as for root.
    let mine = UserNetns::new(id);
    let out = ctl_as(
        &lab,
        id,
        &[
            "port",
            "add",
            "u1",
            "--net",
            "yard0",
            "--tap",
            "--netns",
            &mine.path(),
            "--ip",
            "172.30.9.10/16",
        ],
    );
    assert!(
        out.status.success(),
        "the client's own namespace was refused\n{}",
        lab.log_tail()
    );
    let pid = mine.pid().to_string();
    let inside =
        output(timed(20, "nsenter").args(["-t", &pid, "-n", "ip", "-o", "addr", "show", "eth0"]));
    assert!(
        String::from_utf8_lossy(&inside.stdout).contains("172.30.9.10/16"),
        "no configured eth0 in the client's namespace: {}",
        describe("nsenter ip addr show eth0", &inside)
    );
    // Root is unrestricted.
    lab.ctl_ok(&[
        "port", "add", "r1", "--net", "yard0", "--tap", "--netns", &roots,
    ]);
}

/// A capability mask from a `Cap*:` line of /proc/PID/task/TID/status.
fn status_field(status: &str, field: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {field} in {status}"))
}

#[test]
fn every_yardd_thread_keeps_only_the_capabilities_it_uses() {
    if !require(&["ping"]) {
        return;
    }
    let mut lab = Lab::with_args(&["--threads", "2"]);
    // The kept set is enough for what yardd does after setup: a TAP in a
    // namespace (CAP_NET_ADMIN, CAP_SYS_ADMIN), a veth through AF_PACKET
    // (CAP_NET_RAW), traffic between them.
    let c1 = lab.tap("c1", "yard0", "172.30.6.1/16", &[]);
    let c2 = lab.veth("c2", "yard0", "172.30.6.2/16");
    lab.ping_ok(&c1, c2.ip);

    // CAP_NET_BIND_SERVICE 10, CAP_NET_ADMIN 12, CAP_NET_RAW 13,
    // CAP_SYS_PTRACE 19, CAP_SYS_ADMIN 21.
    let kept = format!(
        "{:016x}",
        (1u64 << 10) | (1 << 12) | (1 << 13) | (1 << 19) | (1 << 21)
    );
    let pid = lab.pid().unwrap();
    let tasks: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|t| t.unwrap().path())
        .collect();
    assert!(tasks.len() >= 4, "yardd has only {} threads", tasks.len());
    for task in tasks {
        let Ok(status) = std::fs::read_to_string(task.join("status")) else {
            continue; // a short-lived thread that has gone
        };
        let name = status_field(&status, "Name:");
        for (field, want) in [
            ("CapEff:", kept.as_str()),
            ("CapPrm:", kept.as_str()),
            ("CapBnd:", kept.as_str()),
            ("CapInh:", "0000000000000000"),
            ("CapAmb:", "0000000000000000"),
            ("NoNewPrivs:", "1"),
        ] {
            assert_eq!(
                status_field(&status, field),
                want,
                "thread {name} ({}): {field}",
                task.display()
            );
        }
    }
    let log = lab.log_text();
    assert!(
        log.contains("dropped every other capability")
            && log
                .contains(r#"["CAP_NET_BIND_SERVICE", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SYS_PTRACE", "CAP_SYS_ADMIN"]"#),
        "the log does not name the kept capabilities:\n{}",
        lab.log_tail()
    );
}

/// `Seccomp:` of every thread of `pid`, by thread name (2 is filtered).
fn seccomp_modes(pid: u32) -> Vec<(String, String)> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.unwrap().path().join("status")).ok())
        .map(|s| (status_field(&s, "Name:"), status_field(&s, "Seccomp:")))
        .collect()
}

#[test]
fn datapath_threads_run_under_the_seccomp_filter_unless_told_not_to() {
    if !require(&["ping"]) {
        return;
    }
    for (args, filtered) in [
        (&["--threads", "2"][..], true),
        (&["--no-seccomp"][..], false),
    ] {
        let mut lab = Lab::with_args(args);
        // Traffic and commands (port add and remove reach the datapath
        // threads) run through the filtered threads without killing yardd.
        let c1 = lab.tap("c1", "yard0", "172.30.7.1/16", &[]);
        let c2 = lab.veth("c2", "yard0", "172.30.7.2/16");
        lab.ping_ok(&c1, c2.ip);
        lab.ctl_ok(&["port", "stats"]);
        lab.ctl_ok(&["port", "rm", "c2"]);
        let modes = seccomp_modes(lab.pid().unwrap());
        let datapath: Vec<_> = modes
            .iter()
            .filter(|(name, _)| name.starts_with("yardd-datapath"))
            .collect();
        assert!(!datapath.is_empty(), "no datapath thread in {modes:?}");
        for (name, mode) in &datapath {
            assert_eq!(
                mode == "2",
                filtered,
                "{args:?}: thread {name} has Seccomp: {mode}"
            );
        }
        // The control thread enters namespaces and opens files: unfiltered.
        assert!(
            modes
                .iter()
                .any(|(name, mode)| name == "yardd-control" && mode == "0"),
            "{args:?}: {modes:?}"
        );
        assert!(lab.is_running(), "yardd died\n{}", lab.log_tail());
    }
}
