//! Control-plane labs: the control socket's mode and access check,
//! error replies to bad request lines, `YARD_SOCKET`, the static FDB commands,
//! and error messages that name what is missing.
//!
//! Needs root; without it each test prints why and returns.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

use yard_ctl::MacAddr;
use yard_tests::cmd::{describe, in_ns_ok, output, run, run_ok, stdout, timed};
use yard_tests::{require, Lab};

/// Sends one raw line and returns the reply line, parsed.
fn raw_request(lab: &Lab, line: &[u8]) -> serde_json::Value {
    let mut stream = lab.connect(Duration::from_secs(10));
    // yardd may stop reading an oversized line early; what counts is its reply.
    let _ = stream.write_all(line);
    let _ = stream.write_all(b"\n");
    lab.reply_line(&stream)
}

fn assert_error_reply(lab: &Lab, what: &str, reply: &serde_json::Value) {
    assert!(
        reply["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}: expected {{\"error\":{{\"message\":...}}}}, got {reply}\n{}",
        lab.log_tail()
    );
}

#[test]
fn control_socket_is_0660_and_survives_bad_requests() {
    if !require(&[]) {
        return;
    }
    let mut lab = Lab::new();
    let mode = std::fs::metadata(lab.socket())
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(mode, 0o660, "control socket mode is {mode:o}");

    let good = request_line(r#"{"cmd":"status"}"#);
    let reply = raw_request(&lab, &good);
    assert_eq!(reply["ok"]["type"], "status", "status reply: {reply}");

    let mut oversized = format!(
        r#"{{"api_version":{},"request":{{"cmd":"status","pad":""#,
        yard_ctl::API_VERSION
    )
    .into_bytes();
    oversized.resize(70 * 1024, b'a');
    oversized.extend_from_slice(br#""}}"#);
    let unknown = request_line(r#"{"cmd":"frobnicate"}"#);
    let bad: [(&str, &[u8]); 4] = [
        ("malformed line", b"{this is not json"),
        ("unknown cmd", &unknown),
        (
            "other API version",
            br#"{"api_version":999,"request":{"cmd":"status"}}"#,
        ),
        ("line over 64 KiB", &oversized),
    ];
    for (what, line) in bad {
        let reply = raw_request(&lab, line);
        assert_error_reply(&lab, what, &reply);
        assert!(
            lab.is_running(),
            "yardd died after a {what}\n{}",
            lab.log_tail()
        );
        let reply = raw_request(&lab, &good);
        assert_eq!(
            reply["ok"]["type"], "status",
            "status after a {what}: {reply}"
        );
    }

    // yardctl honours YARD_SOCKET when --socket is not given.
    let out = output(
        timed(30, &yard_tests::bins::bins().yardctl)
            .args(["--json", "status"])
            .env("YARD_SOCKET", lab.socket()),
    );
    assert!(
        out.status.success(),
        "{}",
        describe("YARD_SOCKET=... yardctl --json status", &out)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    assert_eq!(
        status["pid"],
        lab.pid().unwrap(),
        "status via YARD_SOCKET: {status}"
    );
    assert_eq!(status["socket"], lab.socket().to_string_lossy().as_ref());
}

/// Runs `socat` as a client of the control socket, as `uid`, sending a status
/// request; returns (exit success, stdout).
fn socat_client(lab: &Lab, uid: Option<u32>) -> (bool, String) {
    let target = format!("UNIX-CONNECT:{}", lab.socket().display());
    let mut cmd = match uid {
        Some(uid) => {
            let mut c = timed(20, "setpriv");
            c.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={uid}"))
                .arg("--clear-groups")
                .arg("socat");
            c
        }
        None => timed(20, "socat"),
    };
    cmd.args(["-t", "3", "-", &target])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn socat");
    let mut stdin = child.stdin.take().unwrap();
    let mut line = request_line(r#"{"cmd":"status"}"#);
    line.push(b'\n');
    let _ = stdin.write_all(&line);
    drop(stdin);
    let out = child.wait_with_output().expect("wait for socat");
    (out.status.success(), stdout(&out))
}

#[test]
fn client_of_another_uid_gets_no_service() {
    if !require(&["socat", "setpriv"]) {
        return;
    }
    let lab = Lab::new();
    // Let anyone reach the socket's directory; the socket itself decides.
    std::fs::set_permissions(lab.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();

    // The client works at all: root is served.
    let (ok, reply) = socat_client(&lab, None);
    assert!(
        ok && reply.contains("\"ok\""),
        "root was not served: {reply}"
    );

    let nobody = 65534;
    let (_, reply) = socat_client(&lab, Some(nobody));
    assert!(
        !reply.contains("\"ok\"") && !reply.contains("\"pid\""),
        "uid {nobody} was served through a 0660 socket: {reply}"
    );

    // Even if the file mode lets it connect, yardd checks the peer's
    // credentials and refuses.
    std::fs::set_permissions(lab.socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let (_, reply) = socat_client(&lab, Some(nobody));
    assert!(
        !reply.contains("\"ok\"") && !reply.contains("\"pid\""),
        "uid {nobody} was served once it could connect (no SO_PEERCRED check?): {reply}"
    );
    lab.ctl_ok(&["status"]);
}

#[test]
fn static_fdb_entry_survives_flush_and_is_deleted_by_fdb_del() {
    if !require(&["ping"]) {
        return;
    }
    let mut lab = Lab::new();
    let c1 = lab.tap("c1", "yard0", "172.30.5.1/16", &[]);
    let c2 = lab.tap("c2", "yard0", "172.30.5.2/16", &[]);
    // Each container knows the other's MAC for good: no ARP at all, so no
    // neighbour re-check (a unicast ARP probe about 5 s after the ping)
    // can relearn an address between the flush and the listing below. The
    // ping's own frames still teach the switch both MACs.
    for (from, to) in [(&c1, &c2), (&c2, &c1)] {
        let (ip, mac) = (to.ip.to_string(), to.mac().to_string());
        in_ns_ok(
            &from.ns,
            &[
                "ip",
                "neigh",
                "replace",
                &ip,
                "lladdr",
                &mac,
                "dev",
                &from.ifname,
                "nud",
                "permanent",
            ],
        );
    }
    lab.ping_ok(&c1, c2.ip);
    let static_mac: MacAddr = "02:aa:bb:cc:dd:01".parse().unwrap();
    lab.ctl_ok(&["fdb", "add", "yard0", "02:aa:bb:cc:dd:01", "c1"]);

    let fdb = lab.fdb(None);
    let entry = fdb
        .iter()
        .find(|e| e.mac == static_mac)
        .unwrap_or_else(|| panic!("static entry missing: {fdb:#?}"));
    assert!(
        entry.is_static && entry.port == "c1" && entry.net == "yard0",
        "{entry:?}"
    );
    assert_eq!(entry.age_secs, None, "a static entry has no age: {entry:?}");
    let (c1_mac, c2_mac) = (c1.mac(), c2.mac());
    assert!(
        fdb.iter().any(|e| e.mac == c1_mac && !e.is_static),
        "c1 not learned before the flush: {fdb:#?}"
    );

    lab.ctl_ok(&["fdb", "flush"]);
    let fdb = lab.fdb(None);
    assert!(
        fdb.iter()
            .any(|e| e.mac == static_mac && e.is_static && e.port == "c1"),
        "the static entry did not survive fdb flush: {fdb:#?}"
    );
    assert!(
        fdb.iter().all(|e| e.mac != c1_mac && e.mac != c2_mac),
        "learned entries survived fdb flush: {fdb:#?}"
    );

    // Traffic still flows (relearned) and the static entry stays put.
    lab.ping_ok(&c2, c1.ip);
    lab.ctl_ok(&["fdb", "del", "yard0", "02:aa:bb:cc:dd:01"]);
    let fdb = lab.fdb(None);
    assert!(
        fdb.iter().all(|e| e.mac != static_mac),
        "fdb del left it: {fdb:#?}"
    );
    assert!(
        fdb.iter().any(|e| e.mac == c1_mac && e.port == "c1"),
        "c1 not relearned after the flush: {fdb:#?}"
    );
}

#[test]
fn errors_name_the_missing_thing_and_change_nothing() {
    if !require(&[]) {
        return;
    }
    let mut lab = Lab::new();
    let missing_ns = format!("yt-nosuch-{}", std::process::id());
    let err = lab.ctl_err(&[
        "port",
        "add",
        "p1",
        "--net",
        "yard0",
        "--tap",
        "--netns",
        &missing_ns,
    ]);
    assert!(
        err.contains(&missing_ns) && err.contains("ip netns add"),
        "the error should name netns {missing_ns} and say `ip netns add`: {err}"
    );

    let ns = lab.netns();
    let err = lab.ctl_err(&[
        "port",
        "add",
        "p2",
        "--net",
        "nosuchnet",
        "--tap",
        "--netns",
        &ns,
    ]);
    assert!(err.contains("nosuchnet"), "should name the network: {err}");

    // An interface that does not exist, for an --iface port and a trunk.
    lab.ctl_ok(&["net", "create", "ten", "--vlan", "10"]);
    for args in [
        &["port", "add", "p3", "--net", "ten", "--iface", "yt-nosuch0"][..],
        &[
            "port",
            "add",
            "p4",
            "--trunk",
            "--iface",
            "yt-nosuch0",
            "--nets",
            "ten",
        ],
    ] {
        let err = lab.ctl_err(args);
        assert!(
            err.contains("yt-nosuch0") && err.contains("ip link show yt-nosuch0"),
            "`yardctl {}` should name the interface and the way to look: {err}",
            args.join(" ")
        );
    }

    for args in [
        &["net", "inspect", "nosuchnet"][..],
        &["net", "rm", "nosuchnet"],
        &["fdb", "show", "--net", "nosuchnet"],
        &["fdb", "flush", "--net", "nosuchnet"],
    ] {
        let err = lab.ctl_err(args);
        assert!(
            err.contains("nosuchnet"),
            "`{}` should name the network: {err}",
            args.join(" ")
        );
    }
    for args in [
        &["port", "rm", "nosuchport"][..],
        &["port", "stats", "nosuchport"],
        &["fdb", "add", "yard0", "02:00:00:00:00:99", "nosuchport"],
        &["capture", "nosuchport", "-c", "1"],
    ] {
        let err = lab.ctl_err(args);
        assert!(
            err.contains("nosuchport"),
            "`{}` should name the port: {err}",
            args.join(" ")
        );
    }

    // Nothing was half-created: no port, no TAP left in the namespace.
    let ports = lab.ctl_json(&["port", "ls"]);
    assert_eq!(
        ports,
        serde_json::json!([]),
        "failed adds left ports behind"
    );
    let links = run(&["ip", "-n", &ns, "-o", "link", "show"]);
    let links = stdout(&links);
    assert_eq!(
        links.lines().count(),
        1,
        "a failed port add left an interface in {ns}:\n{links}"
    );
    assert_eq!(lab.fdb(None).len(), 0, "failed fdb add left an entry");
}

/// A request line for this build's API version.
fn request_line(request: &str) -> Vec<u8> {
    format!(
        r#"{{"api_version":{},"request":{request}}}"#,
        yard_ctl::API_VERSION
    )
    .into_bytes()
}

#[test]
fn status_wait_answers_once_a_starting_yardd_is_up() {
    if !require(&[]) {
        return;
    }
    let mut daemon = yard_tests::Daemon::unstarted();
    // Without --wait, a yardd that is not up yet is an error at once.
    let early = yard_tests::cmd::output(&mut daemon.ctl_command(&["status"]));
    assert!(!early.status.success());
    let waiting = daemon
        .ctl_command(&["status", "--wait", "30"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start yardctl status --wait");
    std::thread::sleep(std::time::Duration::from_millis(500));
    daemon.start();
    let out = waiting.wait_with_output().expect("wait for yardctl");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("api version"),
        "{}",
        yard_tests::cmd::describe("yardctl status --wait 30", &out)
    );
}

#[test]
fn topology_draws_what_yardd_has() {
    if !require(&["dot"]) {
        return;
    }
    let mut lab = Lab::new();
    lab.ctl_ok(&[
        "net",
        "create",
        "front",
        "--subnet",
        "10.95.0.0/24",
        "--no-icc",
    ]);
    lab.ctl_ok(&["net", "create", "back", "--subnet", "10.96.0.0/24"]);
    lab.ctl_ok(&["net", "connect", "front", "back"]);
    lab.tap("w1", "front", "10.95.0.2/24", &[]);
    lab.tap("w2", "front", "10.95.0.3/24", &[]);
    lab.tap("d1", "back", "10.96.0.2/24", &[]);
    lab.ctl_ok(&["link", "add", "w1", "w2", "--ports", "443"]);

    let text = String::from_utf8_lossy(&lab.ctl_ok(&["topology"]).stdout).into_owned();
    for line in [
        "front (10.95.0.0/24, gw 10.95.0.1, no icc)",
        "  routes to network back",
        "link w1 -> w2 (443/tcp)",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?}:\n{text}");
    }
    assert!(text.contains("  d1: tap eth0 in "), "{text}");

    // The graph is one Graphviz renders.
    let graph = lab.ctl_ok(&["topology", "--dot"]).stdout;
    let mut dot = std::process::Command::new("dot")
        .arg("-Tsvg")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run dot");
    std::io::Write::write_all(dot.stdin.as_mut().unwrap(), &graph).unwrap();
    drop(dot.stdin.take());
    let svg = dot.wait_with_output().unwrap();
    let picture = String::from_utf8_lossy(&svg.stdout);
    assert!(
        svg.status.success() && picture.contains("<svg") && picture.contains("link 443/tcp"),
        "{}",
        yard_tests::cmd::describe("dot -Tsvg", &svg)
    );
    for name in ["front", "back", "w1", "w2", "d1"] {
        assert!(picture.contains(name), "{name} is not in the picture");
    }

    let json = lab.ctl_json(&["topology"]);
    assert_eq!(json["ports"].as_array().map(Vec::len), Some(3), "{json:#}");
    assert_eq!(json["links"][0]["b"], "w2", "{json:#}");
}

#[test]
fn events_stream_what_changes_in_order_including_a_port_going_down() {
    if !require(&[]) {
        return;
    }
    use std::io::BufRead;
    let lab = Lab::new();
    let mut watcher = lab
        .ctl_command(&["--json", "events"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start yardctl events");
    // The stream's lines, read on a thread so that a missing event fails
    // the test by a timeout instead of hanging it.
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = watcher.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // yardctl events is subscribed once a change made now reaches it:
    // probe with throwaway networks until one is seen, then drain.
    let mut subscribed = false;
    for i in 0..50 {
        let probe = format!("probe{i}");
        lab.ctl_ok(&["net", "create", &probe]);
        lab.ctl_ok(&["net", "rm", &probe]);
        if rx
            .recv_timeout(std::time::Duration::from_millis(200))
            .is_ok()
        {
            subscribed = true;
            break;
        }
    }
    assert!(subscribed, "yardctl events saw none of 50 changes");
    while rx
        .recv_timeout(std::time::Duration::from_millis(300))
        .is_ok()
    {}

    lab.ctl_ok(&["net", "create", "ev", "--subnet", "10.98.0.0/24"]);
    let ns = yard_tests::Netns::new();
    yard_tests::lab::add_tap(&lab, ns.name().to_string(), "e1", "ev", "10.98.0.2/24", &[]);
    run_ok(&["ip", "netns", "del", ns.name()]);
    let mut expected = vec![
        ("network-added", "ev", None),
        ("port-added", "e1", None),
        ("port-down", "e1", Some("namespace gone")),
    ];
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while seen.len() < expected.len() && std::time::Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(std::time::Duration::from_millis(200)) {
            seen.push(serde_json::from_str::<serde_json::Value>(&line).expect("a JSON event"));
        }
    }
    lab.ctl_ok(&["rule", "add", "ev", "--to", "169.254.169.254", "deny"]);
    lab.ctl_ok(&["rule", "rm", "ev", "1"]);
    lab.ctl_ok(&["port", "rm", "e1"]);
    lab.ctl_ok(&["net", "rm", "ev"]);
    expected.push(("rule-added", "ev from any to 169.254.169.254/32 deny", None));
    expected.push(("rule-removed", "ev rule 1", None));
    expected.push(("port-removed", "e1", None));
    expected.push(("network-removed", "ev", None));
    while seen.len() < expected.len() && std::time::Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(std::time::Duration::from_millis(200)) {
            seen.push(serde_json::from_str::<serde_json::Value>(&line).expect("a JSON event"));
        }
    }
    yard_tests::cmd::end_child(watcher, std::time::Duration::from_secs(2));
    let got: Vec<(String, String, Option<String>)> = seen
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["object"].as_str().unwrap().to_string(),
                e["detail"].as_str().map(str::to_string),
            )
        })
        .collect();
    let want: Vec<(String, String, Option<String>)> = expected
        .iter()
        .map(|(k, o, d)| (k.to_string(), o.to_string(), d.map(str::to_string)))
        .collect();
    assert_eq!(got, want, "{seen:#?}");
    // Requests carry the requesting uid (root here); the watcher's own
    // change does not; every event has a UTC time.
    assert_eq!(seen[0]["user"], 0);
    assert!(seen[2].get("user").is_none(), "{:#}", seen[2]);
    assert!(seen
        .iter()
        .all(|e| e["time"].as_str().is_some_and(|t| t.ends_with('Z'))));
}
