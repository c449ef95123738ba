//! Rootless lab: yardd, its networks and its containers as an ordinary user
//! the test creates (and removes), with `/dev/net/tun` at 0666 as
//! distributions ship it.
//!
//! - yardd as that user picks the rootless defaults (a private
//!   `/tmp/switchyard-UID` without `XDG_RUNTIME_DIR`, the state under
//!   `~/.local/state`) and says `rootless (uid N)`; two `yardctl run`
//!   containers on one network ping each other and the gateway, standard
//!   input and output and exit codes pass through, and their ports are gone
//!   once they exit.
//! - A namespace the user made with `unshare -r -n`, attached with `--netns
//!   /proc/PID/ns/net`, talks to a `yardctl run` container; its port goes
//!   down when the namespace's last process exits (no ghost), and yardd's
//!   own namespace is refused with a message that says why.
//! - Restarted, yardd re-adopts the TAP it left in that namespace; removing
//!   the port that carries the namespace's default route hands the route to
//!   its other port.
//! - yardd started inside `unshare -r` (uid 0 there) says it is rootless
//!   and uses the rootless defaults.
//! - `yardctl run` as root, against a root yardd, works the same.
//! - A fallback directory `/tmp/switchyard-UID` someone else made is
//!   refused by yardd and yardctl alike.
//! - Two rootless yardds in two "host" namespaces, joined by GRE-in-UDP: a
//!   container on each pings the other and 50 MiB cross, checked by sha256.
//! - A rootless yardd in a "host" namespace with the host uplink: a `yardctl
//!   run` container reaches an "outside" namespace's servers through
//!   yardd's own sockets (200 MiB of TCP both ways checked by sha256, UDP,
//!   ICMP echo through ping sockets, DNS at the gateway answered by the
//!   outside's server, a refused connect), and a published port there
//!   serves the outside with the client's own address.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Output};
use std::time::Duration;

use yard_tests::cmd::{describe, end_child, poll};
use yard_tests::hosts::{link, random_file, underlay_ip};
use yard_tests::lab::sha256;
use yard_tests::netns::Netns;
use yard_tests::require;
use yard_tests::rootless::{child_of_timeout, finish, TestUser, TunOpen, UserDaemon, TOOLS};

/// Bound on one `yardctl run` of these tests, in seconds.
const RUN_SECS: u32 = 90;

fn assert_exit(out: &Output, code: i32, what: &str, daemon: &UserDaemon<'_>) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}:\n{}\n{}",
        describe("yardctl run", out),
        daemon.log_text()
    );
}

fn tell(child: &mut Child, line: &str) {
    let stdin = child.stdin.as_mut().expect("piped stdin");
    stdin
        .write_all(format!("{line}\n").as_bytes())
        .expect("write to the container's stdin");
    stdin.flush().expect("flush the container's stdin");
}

/// Reads `child`'s stdout until a line equal to `marker` (or its end);
/// returns what was read.
fn read_until(child: &mut Child, marker: &str) -> String {
    let stdout = child.stdout.as_mut().expect("piped stdout");
    let mut reader = BufReader::new(stdout);
    let mut text = String::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return text,
            Ok(_) => {
                text.push_str(&line);
                if line.trim_end() == marker {
                    return text;
                }
            }
        }
    }
}

#[test]
fn run_containers_on_one_network_ping_each_other_and_the_gateway() {
    if !require(&TOOLS) {
        return;
    }
    let _tun = TunOpen::new();
    let user = TestUser::new();
    let daemon = UserDaemon::start_default(&user);

    // The rootless defaults, found by yardctl by the same rule.
    let status = daemon.ctl_json(&["status"]);
    assert_eq!(
        status["mode"],
        serde_json::json!({"kind": "rootless", "uid": user.uid()})
    );
    let runtime = format!("/tmp/switchyard-{}", user.uid());
    assert_eq!(status["socket"], format!("{runtime}/yardd.sock"));
    assert_eq!(
        status["state_dir"],
        format!("{}/.local/state/switchyard", user.home().display())
    );
    let meta = std::fs::symlink_metadata(&runtime).expect("the private runtime dir");
    assert_eq!(meta.uid(), user.uid());
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    let text = String::from_utf8_lossy(&daemon.ctl_ok(&["status"]).stdout).into_owned();
    assert!(
        text.contains(&format!("mode:         rootless (uid {})\n", user.uid())),
        "{text}"
    );

    // Two containers that wait for lines on stdin, so each is there while
    // the other pings it.
    let mut a = daemon.spawn_run(
        RUN_SECS,
        &[
            "--name",
            "a",
            "--ip",
            "172.30.0.10/16",
            "--",
            "sh",
            "-c",
            "read go && ping -c2 -W2 172.30.0.11 && ping -c2 -W2 172.30.0.1 && echo \"a got $go\"",
        ],
    );
    let mut b = daemon.spawn_run(
        RUN_SECS,
        &[
            "--ip",
            "172.30.0.11/16",
            "--",
            "sh",
            "-c",
            "read go && ping -c2 -W2 172.30.0.10 && echo 'b pinged a' && read done && exit 3",
        ],
    );
    daemon.wait_port_up("a");
    let up = poll(Duration::from_secs(20), Duration::from_millis(100), || {
        daemon.port_states().len() == 2
    });
    assert!(
        up,
        "the second container's port: {:?}",
        daemon.port_states()
    );
    let generated = daemon
        .port_states()
        .into_iter()
        .map(|(name, _)| name)
        .find(|name| name != "a")
        .expect("the generated port name");
    assert!(generated.starts_with("run-"), "{generated}");
    daemon.wait_port_up(&generated);

    tell(&mut b, "go");
    let b_said = read_until(&mut b, "b pinged a");
    assert!(
        b_said.ends_with("b pinged a\n"),
        "b pings a:\n{b_said}\n{}",
        daemon.log_text()
    );
    tell(&mut a, "hello");
    let out_a = finish(a);
    assert_exit(&out_a, 0, "a pings b and the gateway", &daemon);
    assert!(
        String::from_utf8_lossy(&out_a.stdout).contains("a got hello\n"),
        "stdin and stdout pass through:\n{}",
        describe("yardctl run (a)", &out_a)
    );
    tell(&mut b, "done");
    let out_b = finish(b);
    assert_exit(&out_b, 3, "b exits 3", &daemon);

    // Both ports went with their commands.
    let gone = poll(Duration::from_secs(10), Duration::from_millis(100), || {
        daemon.port_states().is_empty()
    });
    assert!(gone, "ports left after exit: {:?}", daemon.port_states());

    // A command killed by a signal: 128 + the signal, port gone too.
    let killed = finish(daemon.spawn_run(RUN_SECS, &["--", "sh", "-c", "kill -TERM $$"]));
    assert_exit(&killed, 143, "a command killed by SIGTERM", &daemon);
    let missing = finish(daemon.spawn_run(RUN_SECS, &["--", "/nonexistent/cmd"]));
    assert_exit(&missing, 127, "a command that cannot be run", &daemon);
    assert!(
        daemon.port_states().is_empty(),
        "{:?}",
        daemon.port_states()
    );

    // SIGTERM to yardctl reaches the command, and the port is removed.
    let waiting = daemon.spawn_run(RUN_SECS, &["--name", "w", "--", "sleep", "60"]);
    daemon.wait_port_up("w");
    // `timeout` passes the SIGTERM on to yardctl, which passes it on.
    let timeout_pid = waiting.id() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(timeout_pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("signal yardctl run");
    let out = finish(waiting);
    assert_exit(&out, 143, "sleep ended by the forwarded SIGTERM", &daemon);
    assert!(
        daemon.port_states().is_empty(),
        "{:?}",
        daemon.port_states()
    );

    // yardctl killed outright: the command dies with it (no orphan), and
    // yardd removes its port (added with --auto-remove) with the namespace.
    let orphan = daemon.spawn_run(RUN_SECS, &["--name", "k", "--", "sleep", "60"]);
    daemon.wait_port_up("k");
    let yardctl = child_of_timeout(&orphan);
    let sleeper: u32 = std::fs::read_to_string(format!("/proc/{yardctl}/task/{yardctl}/children"))
        .expect("yardctl's child")
        .trim()
        .parse()
        .expect("one child");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(yardctl as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill yardctl run");
    let _ = finish(orphan);
    let gone = poll(Duration::from_secs(10), Duration::from_millis(100), || {
        !Path::new(&format!("/proc/{sleeper}")).exists()
    });
    assert!(gone, "the command outlived yardctl");
    let removed = poll(Duration::from_secs(15), Duration::from_millis(200), || {
        !daemon.port_states().iter().any(|(name, _)| name == "k")
    });
    assert!(removed, "{:?}\n{}", daemon.port_states(), daemon.log_text());
}

#[test]
fn a_namespace_the_user_made_talks_to_a_run_container() {
    if !require(&TOOLS) {
        return;
    }
    let _tun = TunOpen::new();
    let user = TestUser::new();
    let mut daemon = UserDaemon::start_default(&user);

    // The user's own namespace, as `unshare -r -n` makes it (unshare execs
    // sleep, so timeout's child is the namespace's process).
    let holder = user
        .command(RUN_SECS, None, &[], std::path::Path::new("unshare"))
        .args(["-r", "-n", "sleep", "80"])
        .spawn()
        .expect("unshare -r -n");
    let pid = child_of_timeout(&holder);
    // The namespace exists once its uid map is written.
    let mapped = poll(Duration::from_secs(10), Duration::from_millis(50), || {
        std::fs::read_to_string(format!("/proc/{pid}/uid_map"))
            .is_ok_and(|m| m.split_whitespace().nth(1) == Some(&user.uid().to_string()))
    });
    assert!(mapped, "unshare -r did not map the user");
    let netns = format!("/proc/{pid}/ns/net");
    daemon.ctl_ok(&[
        "port",
        "add",
        "mine",
        "--net",
        "yard0",
        "--tap",
        "--netns",
        &netns,
        "--ip",
        "172.30.0.20/16",
    ]);
    daemon.wait_port_up("mine");

    let out = finish(daemon.spawn_run(
        RUN_SECS,
        &[
            "--ip",
            "172.30.0.21/16",
            "--",
            "ping",
            "-c2",
            "-W2",
            "172.30.0.20",
        ],
    ));
    assert_exit(
        &out,
        0,
        "a run container pings the user's namespace",
        &daemon,
    );

    // Restarted, yardd re-adopts the TAP it left in the namespace (through
    // its helper again) and the port carries traffic as before.
    let ifindex = || {
        let out = yard_tests::cmd::run_ok(&[
            "nsenter",
            "-t",
            &pid.to_string(),
            "-n",
            "ip",
            "-j",
            "link",
            "show",
            "eth0",
        ]);
        let links: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j");
        links[0]["ifindex"].as_u64().expect("an ifindex")
    };
    let before = ifindex();
    daemon.stop();
    // Persistent: the container keeps its interface while yardd is down.
    assert_eq!(ifindex(), before);
    daemon.spawn();
    daemon.wait_port_up("mine");
    assert_eq!(ifindex(), before, "the same TAP, re-adopted");
    let out = finish(daemon.spawn_run(
        RUN_SECS,
        &[
            "--ip",
            "172.30.0.22/16",
            "--",
            "ping",
            "-c2",
            "-W2",
            "172.30.0.20",
        ],
    ));
    assert_exit(&out, 0, "the re-adopted port carries traffic", &daemon);
    assert!(
        !daemon.log_text().contains("could not be re-attached"),
        "{}",
        daemon.log_text()
    );

    // yardd's own namespace is not the user's to give it.
    let own = format!("/proc/{}/ns/net", daemon.pid());
    let refused = daemon.ctl(&[
        "port", "add", "host", "--net", "yard0", "--tap", "--netns", &own,
    ]);
    assert!(
        !refused.status.success(),
        "{}",
        describe("port add host", &refused)
    );
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains(
            "it belongs to yardd's own user namespace, where a rootless yardd has no privilege"
        ),
        "{message}"
    );

    // A second port in the namespace; removing the first hands the
    // default route to it (through the helper as well).
    daemon.ctl_ok(&[
        "port",
        "add",
        "mine2",
        "--net",
        "yard0",
        "--tap",
        "--netns",
        &netns,
        "--ifname",
        "eth1",
        "--ip",
        "172.30.0.23/16",
    ]);
    daemon.ctl_ok(&["port", "rm", "mine"]);
    let default_route = || {
        let out = yard_tests::cmd::run_ok(&[
            "nsenter",
            "-t",
            &pid.to_string(),
            "-n",
            "ip",
            "route",
            "show",
            "default",
        ]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // Bounded wait: the old TAP goes when the datapath has closed it.
    let handed = poll(Duration::from_secs(5), Duration::from_millis(100), || {
        default_route() == "default via 172.30.0.1 dev eth1"
    });
    assert!(
        handed,
        "default route: {:?}\n{}",
        default_route(),
        daemon.log_text()
    );

    // The namespace goes with its process: the port goes down, as with
    // root (yardd holds no fd that would keep a ghost of it).
    end_child(holder, Duration::from_secs(5));
    let down = poll(Duration::from_secs(15), Duration::from_millis(200), || {
        daemon.port_states().iter().any(|(name, state)| {
            name == "mine2"
                && state
                    .get("reason")
                    .and_then(|r| r.as_str())
                    .is_some_and(|r| r.starts_with("namespace gone"))
        })
    });
    assert!(
        down,
        "port not down: {:?}\n{}",
        daemon.port_states(),
        daemon.log_text()
    );
    daemon.ctl_ok(&["port", "rm", "mine2"]);
}

#[test]
fn two_rootless_yardds_joined_by_gre_in_udp() {
    if !require(&TOOLS) {
        return;
    }
    let _tun = TunOpen::new();
    let user = TestUser::new();
    let (host_a, host_b) = (Netns::new(), Netns::new());
    for ns in [&host_a, &host_b] {
        ns.disable_ipv6();
    }
    let _underlay = link((host_a.name(), 1), (host_b.name(), 2));
    let a = UserDaemon::start_in(&user, host_a.name(), "a");
    let b = UserDaemon::start_in(&user, host_b.name(), "b");
    for (daemon, peer) in [(&a, 2), (&b, 1)] {
        daemon.ctl_ok(&["net", "create", "ov", "--subnet", "172.32.0.0/16"]);
        daemon.ctl_ok(&[
            "port",
            "add",
            "tun",
            "--net",
            "ov",
            "--gre-udp",
            "--remote",
            &underlay_ip(peer).to_string(),
        ]);
    }

    let send = user.home().join("send.bin");
    let recv = user.home().join("recv.bin");
    random_file(&send, 50);
    user.give(&send);
    let receive = format!(
        "socat -u TCP-LISTEN:5001,reuseaddr CREATE:{} && ping -c2 -W2 172.32.0.2",
        recv.display()
    );
    let receiver = b.spawn_run(
        RUN_SECS,
        &[
            "--net",
            "ov",
            "--name",
            "rb",
            "--ip",
            "172.32.0.3/16",
            "--",
            "sh",
            "-c",
            &receive,
        ],
    );
    b.wait_port_up("rb");
    let transmit = format!(
        "ping -c2 -W2 172.32.0.3 && socat -u OPEN:{} TCP:172.32.0.3:5001,retry=50,interval=0.2 && read done",
        send.display()
    );
    let mut sender = a.spawn_run(
        RUN_SECS,
        &[
            "--net",
            "ov",
            "--name",
            "ra",
            "--ip",
            "172.32.0.2/16",
            "--",
            "sh",
            "-c",
            &transmit,
        ],
    );
    let received = finish(receiver);
    assert_exit(&received, 0, "b receives 50 MiB, then pings a", &b);
    tell(&mut sender, "done");
    let sent = finish(sender);
    assert_exit(&sent, 0, "a pings b and sends 50 MiB", &a);
    assert_eq!(
        std::fs::metadata(&recv).expect("the received file").len(),
        50 << 20
    );
    assert_eq!(sha256(&recv), sha256(&send), "the 50 MiB arrived changed");
    let mode = a.ctl_json(&["status"])["mode"].clone();
    assert_eq!(
        mode,
        serde_json::json!({"kind": "rootless", "uid": user.uid()})
    );
}

#[test]
fn uid_0_in_a_user_namespace_knows_it_is_rootless() {
    if !require(&TOOLS) {
        return;
    }
    let user = TestUser::new();
    // `unshare -r`: yardd is uid 0, but only inside a namespace mapping it
    // to the user. It takes the rootless defaults, which the user's yardctl
    // (outside that namespace) finds by the same rule.
    let daemon = UserDaemon::start_wrapped(&user, &["unshare", "-r"]);
    let status = daemon.ctl_json(&["status"]);
    assert_eq!(
        status["mode"],
        serde_json::json!({"kind": "user-namespace", "outer_uid": user.uid()}),
        "{status}"
    );
    assert_eq!(
        status["socket"],
        format!("/tmp/switchyard-{}/yardd.sock", user.uid())
    );
    assert_eq!(
        status["state_dir"],
        format!("{}/.local/state/switchyard", user.home().display())
    );
    let text = String::from_utf8_lossy(&daemon.ctl_ok(&["status"]).stdout).into_owned();
    assert!(
        text.contains(&format!(
            "mode:         rootless (user namespace, host uid {})\n",
            user.uid()
        )),
        "{text}"
    );
}

#[test]
fn yardctl_run_works_as_root_too() {
    if !require(&[]) {
        return;
    }
    let daemon = yard_tests::Daemon::start_new();
    let out = yard_tests::cmd::output(&mut daemon.ctl_command(&[
        "run",
        "--name",
        "r1",
        "--",
        "sh",
        "-c",
        "ping -c2 -W2 172.30.0.1 && exit 5",
    ]));
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}\n{}",
        describe("yardctl run as root", &out),
        daemon.log_tail()
    );
    let ports = daemon.ctl_json(&["port", "ls"]);
    assert_eq!(ports, serde_json::json!([]), "the port is gone after exit");
}

#[test]
fn a_fallback_directory_another_user_made_is_refused() {
    if !require(&TOOLS) {
        return;
    }
    let user = TestUser::new();
    // Someone else got there first (root here, standing in for any other
    // user): yardd must not put its socket there, nor yardctl trust one.
    let trap = format!("/tmp/switchyard-{}", user.uid());
    std::fs::create_dir(&trap).expect("the trap directory");
    std::fs::set_permissions(&trap, std::fs::Permissions::from_mode(0o777))
        .expect("chmod the trap");
    let yardd = yard_tests::cmd::output(&mut user.command(30, None, &[], user.yardd()));
    assert!(!yardd.status.success(), "{}", describe("yardd", &yardd));
    let said = String::from_utf8_lossy(&yardd.stderr);
    assert!(
        said.contains(&format!(
            "{trap} exists but is not a directory of uid {} (it is owned by uid 0): another user may have made it"
        , user.uid())),
        "{said}"
    );
    let ctl = user.run(&[&user.yardctl().display().to_string(), "status"]);
    assert!(
        !ctl.status.success(),
        "{}",
        describe("yardctl status", &ctl)
    );
    let said = String::from_utf8_lossy(&ctl.stderr);
    assert!(said.contains("will not talk to"), "{said}");
    assert!(!Path::new(&format!("{trap}/yardd.sock")).exists());
}

#[test]
fn a_rootless_host_uplink_relays_and_publishes() {
    if !require(&TOOLS) || !require(&["sha256sum", "sysctl"]) {
        return;
    }
    let _tun = TunOpen::new();
    let user = TestUser::new();
    let (host, outside) = (Netns::new(), Netns::new());
    for ns in [&host, &outside] {
        ns.disable_ipv6();
    }
    // host 10.99.0.1 ── veth ── outside 10.99.0.2 (underlay addresses 1, 2).
    let _link = link((host.name(), 1), (outside.name(), 2));
    let (host_ip, outside_ip) = (underlay_ip(1), underlay_ip(2));
    // yardd's group may make ping sockets in the host namespace.
    let gid = user.ids().1;
    yard_tests::cmd::in_ns_ok(
        host.name(),
        &[
            "sysctl",
            "-qw",
            &format!("net.ipv4.ping_group_range={gid} {gid}"),
        ],
    );
    // yardd's resolver is the outside's DNS server.
    let _etc = yard_tests::netns::NetnsEtc::new(
        host.name(),
        &[("resolv.conf", &format!("nameserver {outside_ip}\n"))],
    );
    let daemon = UserDaemon::start_in(&user, host.name(), "h");
    daemon.ctl_ok(&["uplink", "add", "host0", "--host"]);

    // The outside's servers: 200 MiB to send, a sink that hashes what it
    // gets, a UDP echo, a DNS server.
    let dir = tempfile::Builder::new()
        .prefix("yard-rootless-up-")
        .tempdir()
        .expect("a temp dir");
    let outgoing = dir.path().join("outgoing.bin");
    random_file(&outgoing, 200);
    let serve = yard_tests::cmd::timed(RUN_SECS, "ip")
        .args(["netns", "exec", outside.name(), "socat", "-u"])
        .arg(format!("OPEN:{}", outgoing.display()))
        .arg("TCP-LISTEN:7001,reuseaddr")
        .spawn()
        .expect("socat server");
    let sink_file = dir.path().join("sink.bin");
    let sink = yard_tests::cmd::timed(RUN_SECS, "ip")
        .args(["netns", "exec", outside.name(), "socat", "-u"])
        .arg("TCP-LISTEN:7002,reuseaddr")
        .arg(format!("CREATE:{}", sink_file.display()))
        .spawn()
        .expect("socat sink");
    let echo = yard_tests::cmd::timed(RUN_SECS, "ip")
        .args(["netns", "exec", outside.name(), "socat"])
        .args(["UDP-RECVFROM:7003,fork", "PIPE"])
        .spawn()
        .expect("socat echo");
    let dns = yard_tests::cmd::timed(RUN_SECS, "ip")
        .args(["netns", "exec", outside.name(), "python3", "-c"])
        .arg(yard_tests::dns::SERVER)
        .arg(outside_ip.to_string())
        .spawn()
        .expect("DNS server");
    for port in [7001, 7002, 53] {
        yard_tests::lab::wait_listening(outside.name(), port);
    }
    let dns_client = user.home().join("dns_client.py");
    std::fs::write(&dns_client, yard_tests::dns::CLIENT).expect("the DNS client");
    user.give(&dns_client);
    let received = user.home().join("received.bin");
    // Nothing listens on 7999: the container's connect is refused.
    let script = format!(
        "set -e; socat -u TCP:{outside_ip}:7001 CREATE:{received} && \
         socat -u OPEN:{sent} TCP:{outside_ip}:7002 && \
         test \"$(echo relayed | socat -T3 - UDP4:{outside_ip}:7003)\" = relayed && \
         ping -c2 -W2 {outside_ip} >/dev/null && \
         python3 {dns_client} 172.30.0.1 | grep -q 'udp 10.1.2.3 172.30.0.1 53' && \
         if socat - TCP:{outside_ip}:7999 </dev/null 2>{refused}; then exit 9; fi && \
         grep -q 'Connection refused' {refused} && echo all-relayed",
        dns_client = dns_client.display(),
        refused = user.home().join("refused.txt").display(),
        received = received.display(),
        sent = {
            let copy = user.home().join("outgoing.bin");
            std::fs::copy(&outgoing, &copy).expect("copy for the user");
            user.give(&copy);
            copy.display().to_string()
        },
    );
    let run = daemon.spawn_run(
        RUN_SECS,
        &[
            "--name",
            "c",
            "--ip",
            "172.30.0.10/16",
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    let out = finish(run);
    assert_exit(
        &out,
        0,
        "TCP both ways, UDP, ping, DNS and a refusal through the host uplink",
        &daemon,
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("all-relayed"));
    assert_eq!(
        sha256(&received),
        sha256(&outgoing),
        "the download arrived changed"
    );
    for child in [serve, sink, echo, dns] {
        end_child(child, Duration::from_secs(5));
    }
    assert_eq!(
        sha256(&sink_file),
        sha256(&outgoing),
        "the upload arrived changed"
    );

    // A published port, bound by the unprivileged yardd in its namespace:
    // the container sees the outside client's own address.
    daemon.ctl_ok(&["publish", "add", "8080:172.30.0.11:80/tcp"]);
    let web = daemon.spawn_run(
        RUN_SECS,
        &[
            "--name",
            "web",
            "--ip",
            "172.30.0.11/16",
            "--",
            "socat",
            "TCP-LISTEN:80,reuseaddr",
            "SYSTEM:echo $SOCAT_PEERADDR",
        ],
    );
    daemon.wait_port_up("web");
    let asked = poll(Duration::from_secs(20), Duration::from_millis(200), || {
        let out = yard_tests::cmd::output(
            yard_tests::cmd::timed(10, "ip")
                .args(["netns", "exec", outside.name(), "socat", "-T5", "-"])
                .arg(format!("TCP:{host_ip}:8080")),
        );
        String::from_utf8_lossy(&out.stdout).trim() == outside_ip.to_string()
    });
    assert!(
        asked,
        "the published port did not answer with the client's address\n{}",
        daemon.log_text()
    );
    let served = finish(web);
    assert_exit(&served, 0, "the published port's server", &daemon);
}
