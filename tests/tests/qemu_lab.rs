//! QEMU VMs on a network: a guest whose NIC is a `--qemu-stream` port and one
//! whose NIC is a `--qemu-dgram` port (loopback UDP) each ping a container
//! (a TAP port in a namespace) on the same network and move 4 MiB to it and
//! 4 MiB back, checked by sha256, with yardd on two datapath threads (the
//! container's port and the stream VM's are read by different ones). Then
//! the stream VM goes away (the port waits, frames to it count as
//! `port-down`), yardd restarts and listens again, and `port rm` removes the
//! socket file. And without privilege: a user the test creates (and
//! deletes) runs yardd and two VMs, one on a stream port and one on a Unix
//! datagram port, which ping each other, and a `yardctl run` container of
//! that user pings both.
//!
//! The guests ([`yard_tests::guest`]) run under TCG with Debian's kernel,
//! cached under the target directory after the first run, and a busybox
//! initramfs; they report on their serial console, which the test reads.
//!
//! Needs root, `qemu-system-x86_64`, a static `/bin/busybox`, `socat`,
//! `apt-get`, `dpkg-deb`, `useradd` and `setpriv`; without them the test
//! prints why and returns (under `CI=true` it fails).

use std::io::Write;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use yard_tests::cmd::{describe, output, poll, stdout, timed};
use yard_tests::guest::{Guest, GuestKit};
use yard_tests::lab::{addr_of, port_is_up, sha256};
use yard_tests::rootless::{finish, TestUser, TunOpen, UserDaemon};
use yard_tests::{require, Container, Lab};

/// Bytes moved each way.
const TRANSFER_BYTES: usize = 4 * 1024 * 1024;

/// The guest kit, its kernel cached under the target directory.
fn guest_kit() -> GuestKit {
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("qemu-lab-kernel");
    GuestKit::build(&cache, TRANSFER_BYTES)
}

// ---- helpers ----------------------------------------------------------

/// A UDP port on loopback that nothing was bound to a moment ago.
fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Port `name`'s entry of `port ls`.
fn port_entry(lab: &Lab, name: &str) -> serde_json::Value {
    let ports = lab.ctl_json(&["port", "ls"]);
    ports
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == name).cloned())
        .unwrap_or_else(|| panic!("port {name} not in `port ls`: {ports:#}"))
}

/// Waits (at most `within`) until port `name` is up (`true`) or down.
fn wait_port(lab: &Lab, name: &str, up: bool, within: Duration) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let reached = poll(within, Duration::from_millis(200), || {
        last = port_entry(lab, name);
        port_is_up(&last["state"]) == up
    });
    assert!(
        reached,
        "port {name} not {} after {within:?}: {last:#}\n{}",
        if up { "up" } else { "down" },
        lab.log_tail()
    );
    last
}

/// A socat receiver in `c`'s namespace writing TCP port `port` to `out`.
fn receiver(c: &Container, port: u16, out: &Path) -> Child {
    let listen = format!("TCP-LISTEN:{port},reuseaddr");
    let sink = format!("OPEN:{},creat,trunc", out.display());
    let child = timed(240, "ip")
        .args(["netns", "exec", &c.ns, "socat", "-u", &listen, &sink])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn socat");
    yard_tests::lab::wait_listening(&c.ns, port);
    child
}

/// Sends `file` from `c` to `to:port` (retried while the guest's listener
/// is not up yet, bounded).
fn send_from(c: &Container, file: &Path, to: Ipv4Addr, port: u16) {
    let source = format!("FILE:{}", file.display());
    let target = format!("TCP:{to}:{port}");
    let mut last = None;
    for _ in 0..10 {
        let out = output(
            timed(120, "ip").args(["netns", "exec", &c.ns, "socat", "-u", &source, &target]),
        );
        if out.status.success() {
            return;
        }
        last = Some(out);
        std::thread::sleep(Duration::from_secs(1));
    }
    panic!(
        "cannot send to {to}:{port}:\n{}",
        describe("socat", &last.unwrap())
    );
}

fn counter(stats: &serde_json::Value, field: &str) -> u64 {
    stats[field].as_u64().unwrap_or(0)
}

/// `port stats NAME` as JSON (one entry).
fn stats_of(lab: &Lab, name: &str) -> serde_json::Value {
    lab.ctl_json(&["port", "stats", name])[0].clone()
}

#[test]
fn vms_on_stream_and_dgram_ports_ping_a_container_and_move_data_both_ways() {
    if !require(&[
        "qemu-system-x86_64",
        "busybox",
        "socat",
        "apt-get",
        "apt-cache",
        "dpkg-deb",
        "ss",
    ]) {
        return;
    }
    let kit = guest_kit();
    // Two datapath threads: a QEMU port read by one is sent to by the other.
    let mut lab = Lab::with_args(&["--threads", "2"]);
    let c1 = lab.tap("c1", "yard0", "172.30.0.11/16", &[]);
    let stream_path = lab.dir().join("vm-s.sock");
    let stream_text = stream_path.display().to_string();
    let yard_udp = free_udp_port();
    let vm_udp = free_udp_port();
    let dgram_addr = format!("127.0.0.1:{yard_udp}");
    lab.ctl_ok(&[
        "port",
        "add",
        "vm-s",
        "--net",
        "yard0",
        "--qemu-stream",
        &stream_text,
    ]);
    lab.ctl_ok(&[
        "port",
        "add",
        "vm-d",
        "--net",
        "yard0",
        "--qemu-dgram",
        &dgram_addr,
    ]);

    // Before any VM: both ports down, saying what they wait for; the
    // socket file is yardd's alone.
    let waiting = wait_port(&lab, "vm-s", false, Duration::from_secs(1));
    assert!(
        waiting["reason"]
            .as_str()
            .is_some_and(|r| r.contains("waiting for QEMU to connect")),
        "{waiting:#}"
    );
    let mode = std::fs::metadata(&stream_path).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    wait_port(&lab, "vm-d", false, Duration::from_secs(1));
    let thread = |port: &str| port_entry(&lab, port)["thread"].clone();
    assert_ne!(
        thread("c1"),
        thread("vm-s"),
        "c1 and vm-s on one thread: the cross-thread send is not tested"
    );

    // The container's receivers for what the guests send.
    let from_s = lab.dir().join("from-vm-s");
    let from_d = lab.dir().join("from-vm-d");
    let rx_s = receiver(&c1, 5000, &from_s);
    let rx_d = receiver(&c1, 5002, &from_d);

    let (ip_s, ip_d) = ("172.30.0.50/16", "172.30.0.51/16");
    let stream_netdev = format!("stream,id=n0,server=off,addr.type=unix,addr.path={stream_text}");
    let dgram_netdev = format!(
        "dgram,id=n0,local.type=inet,local.host=127.0.0.1,local.port={vm_udp},\
         remote.type=inet,remote.host=127.0.0.1,remote.port={yard_udp}"
    );
    let mut vm_s = Guest::boot(
        "vm-s",
        &kit,
        &stream_netdev,
        "52:54:00:00:00:50",
        ip_s,
        c1.ip,
        (5000, 5001),
    );
    let mut vm_d = Guest::boot(
        "vm-d",
        &kit,
        &dgram_netdev,
        "52:54:00:00:00:51",
        ip_d,
        c1.ip,
        (5002, 5003),
    );

    // QEMU connects at once: the stream port is up before the guest boots.
    let up = wait_port(&lab, "vm-s", true, Duration::from_secs(30));
    assert_eq!(up["kind"], "qemu-stream", "{up:#}");

    for vm in [&mut vm_s, &mut vm_d] {
        let mac = vm.wait_for(&lab, "YARD-UP", Duration::from_secs(120));
        assert!(mac.starts_with("52:54:00:00:00:5"), "{mac}");
        vm.wait_for(&lab, "YARD-PING-OK", Duration::from_secs(60));
    }
    // The dgram port is up once its VM sent something.
    let up = wait_port(&lab, "vm-d", true, Duration::from_secs(5));
    assert_eq!(up["kind"], "qemu-dgram", "{up:#}");
    // And the container reaches both guests.
    lab.ping_ok(&c1, addr_of(ip_s));
    lab.ping_ok(&c1, addr_of(ip_d));

    // Guest → container, 4 MiB each, checked by sha256.
    for (vm, rx, file) in [(&mut vm_s, rx_s, &from_s), (&mut vm_d, rx_d, &from_d)] {
        let sent_sha = vm.wait_for(&lab, "YARD-OUT-SHA", Duration::from_secs(60));
        vm.wait_for(&lab, "YARD-SENT", Duration::from_secs(120));
        let received = rx.wait_with_output().unwrap();
        assert!(
            received.status.success(),
            "{}",
            describe("socat receiver", &received)
        );
        assert_eq!(
            std::fs::metadata(file).unwrap().len(),
            TRANSFER_BYTES as u64,
            "{} sent {TRANSFER_BYTES} bytes",
            vm.name
        );
        assert_eq!(sha256(file), sent_sha, "what {} sent", vm.name);
    }

    // Container → guest.
    let data = lab.dir().join("to-vms");
    let mut bytes = vec![0u8; TRANSFER_BYTES];
    let mut seed = 0x2545_f491_u32;
    for b in bytes.iter_mut() {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        *b = seed as u8;
    }
    std::fs::File::create(&data)
        .unwrap()
        .write_all(&bytes)
        .unwrap();
    let data_sha = sha256(&data);
    for (vm, ip, port) in [(&mut vm_s, ip_s, 5001), (&mut vm_d, ip_d, 5003)] {
        vm.wait_for(&lab, "YARD-LISTENING", Duration::from_secs(60));
        send_from(&c1, &data, addr_of(ip), port);
        let got = vm.wait_for(&lab, "YARD-IN-SHA", Duration::from_secs(150));
        assert_eq!(got, data_sha, "what {} received", vm.name);
    }
    for name in ["vm-s", "vm-d"] {
        let stats = stats_of(&lab, name);
        assert!(
            counter(&stats, "rx_packets") > 1000 && counter(&stats, "tx_packets") > 1000,
            "{name}: {stats:#}"
        );
    }

    // The stream VM goes: the port stays, waiting, and frames to it are
    // dropped as port-down (the container still knows the VM's MAC).
    vm_s.stop();
    let down = wait_port(&lab, "vm-s", false, Duration::from_secs(10));
    assert!(
        down["reason"]
            .as_str()
            .is_some_and(|r| r.contains("QEMU closed the connection")),
        "{down:#}"
    );
    let before = stats_of(&lab, "vm-s")["drops"]["port_down"]
        .as_u64()
        .unwrap_or(0);
    let _ = lab.ping(&c1, addr_of(ip_s), 3, 3, &[]);
    let after = stats_of(&lab, "vm-s")["drops"]["port_down"]
        .as_u64()
        .unwrap_or(0);
    assert!(after > before, "port-down {before} -> {after}");
    drop(vm_d);

    // Restarted, yardd listens at the same path again (the stale socket
    // file replaced), and takes a connection.
    lab.daemon.stop(nix::sys::signal::Signal::SIGTERM);
    lab.daemon.start();
    wait_port(&lab, "vm-s", false, Duration::from_secs(5));
    // The datagram port is bound again too: waiting, not failed.
    let vm_d = wait_port(&lab, "vm-d", false, Duration::from_secs(5));
    assert!(
        vm_d["reason"]
            .as_str()
            .is_some_and(|r| r.contains("waiting for QEMU to send")),
        "{vm_d:#}"
    );
    let client = UnixStream::connect(&stream_path).expect("connect after restart");
    wait_port(&lab, "vm-s", true, Duration::from_secs(10));
    drop(client);
    wait_port(&lab, "vm-s", false, Duration::from_secs(10));

    // port rm removes the socket file.
    lab.ctl_ok(&["port", "rm", "vm-s"]);
    assert!(!stream_path.exists(), "the socket file outlived port rm");
}

#[test]
fn a_qemu_socket_path_held_by_something_else_is_refused_and_left_alone() {
    if !require(&[]) {
        return;
    }
    let lab = Lab::new();
    let file = lab.dir().join("not-a-socket");
    std::fs::write(&file, b"keep me").unwrap();
    let err = lab.ctl_err(&[
        "port",
        "add",
        "vm",
        "--net",
        "yard0",
        "--qemu-stream",
        &file.display().to_string(),
    ]);
    assert!(err.contains("exists and is not a socket"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");

    let live = lab.dir().join("live.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&live).unwrap();
    let err = lab.ctl_err(&[
        "port",
        "add",
        "vm",
        "--net",
        "yard0",
        "--qemu-stream",
        &live.display().to_string(),
    ]);
    assert!(err.contains("is in use"), "{err}");
    assert!(live.exists());

    // A stale one (bound, then closed) is replaced.
    let stale = lab.dir().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    lab.ctl_ok(&[
        "port",
        "add",
        "vm",
        "--net",
        "yard0",
        "--qemu-stream",
        &stale.display().to_string(),
    ]);
    UnixStream::connect(&stale).expect("yardd listens at the replaced path");
}

#[test]
fn an_ordinary_users_yardd_puts_two_vms_on_one_network_without_privilege() {
    if !require(&[
        "qemu-system-x86_64",
        "busybox",
        "apt-get",
        "apt-cache",
        "dpkg-deb",
        "useradd",
        "setpriv",
    ]) {
        return;
    }
    let kit = guest_kit();
    let user = TestUser::new();
    let dir = user.home().join("vms");
    std::fs::create_dir(&dir).unwrap();
    user.give(&dir);
    // The user's own copy of the guest.
    let user_kit = kit.copied_for(&dir, user.ids());

    let yardd = UserDaemon::start_default(&user);
    yardd.ctl_ok(&["net", "create", "lab", "--subnet", "10.77.0.0/24"]);
    let stream_path = dir.join("vm1.sock");
    let dgram_path = dir.join("vm2.sock");
    let stream_text = stream_path.display().to_string();
    let dgram_text = dgram_path.display().to_string();
    yardd.ctl_ok(&[
        "port",
        "add",
        "vm1",
        "--net",
        "lab",
        "--qemu-stream",
        &stream_text,
    ]);
    yardd.ctl_ok(&[
        "port",
        "add",
        "vm2",
        "--net",
        "lab",
        "--qemu-dgram",
        &dgram_text,
    ]);
    // The socket files are the user's, and only the user's.
    for path in [&stream_path, &dgram_path] {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::symlink_metadata(path).unwrap();
        assert_eq!(
            (meta.uid(), meta.mode() & 0o777),
            (user.uid(), 0o600),
            "{}",
            path.display()
        );
    }

    let (ip1, ip2) = ("10.77.0.50/24", "10.77.0.51/24");
    let stream_netdev = format!("stream,id=n0,server=off,addr.type=unix,addr.path={stream_text}");
    let dgram_netdev = format!(
        "dgram,id=n0,local.type=unix,local.path={},remote.type=unix,remote.path={dgram_text}",
        dir.join("vm2-qemu.sock").display()
    );
    let mut vm1 = Guest::boot_as(
        "vm1",
        &user_kit,
        &stream_netdev,
        ("52:54:00:00:01:50", ip1),
        addr_of(ip2),
        "yard.ping-only",
        Some(user.ids()),
    );
    let mut vm2 = Guest::boot_as(
        "vm2",
        &user_kit,
        &dgram_netdev,
        ("52:54:00:00:01:51", ip2),
        addr_of(ip1),
        "yard.ping-only",
        Some(user.ids()),
    );
    let context = || {
        format!(
            "{}\n{}",
            stdout(&yardd.ctl(&["port", "stats"])),
            yardd.log_text()
        )
    };
    for vm in [&mut vm1, &mut vm2] {
        vm.wait_for_with("YARD-UP", Duration::from_secs(120), &context);
        vm.wait_for_with("YARD-PING-OK", Duration::from_secs(60), &context);
    }
    let ports = yardd.ctl_json(&["port", "ls"]);
    for port in ports.as_array().unwrap() {
        assert!(port_is_up(&port["state"]), "{ports:#}");
    }
    let stats = yardd.ctl_json(&["port", "stats"]);
    for port in stats.as_array().unwrap() {
        assert!(counter(port, "rx_packets") >= 3, "{stats:#}");
    }
    // A container of the same user (`yardctl run`) on the network pings
    // both VMs.
    let _tun = TunOpen::new();
    let ping = |vm: &str| {
        finish(yardd.spawn_run(
            120,
            &[
                "--net",
                "lab",
                "--ip",
                "10.77.0.60/24",
                "--",
                "ping",
                "-c",
                "2",
                "-W",
                "2",
                "-w",
                "20",
                vm,
            ],
        ))
    };
    for vm in [addr_of(ip1), addr_of(ip2)] {
        let out = ping(&vm.to_string());
        assert!(
            out.status.success(),
            "{}",
            describe(&format!("yardctl run -- ping {vm}"), &out)
        );
    }
    drop(vm1);
    drop(vm2);
    // `port rm` as the user removes the user's socket files.
    yardd.ctl_ok(&["port", "rm", "vm1"]);
    yardd.ctl_ok(&["port", "rm", "vm2"]);
    assert!(!stream_path.exists() && !dgram_path.exists());
}

#[test]
fn a_stream_peer_that_breaks_the_framing_is_dropped_and_counted() {
    if !require(&[]) {
        return;
    }
    let lab = Lab::new();
    let path = lab.dir().join("vm.sock");
    lab.ctl_ok(&[
        "port",
        "add",
        "vm",
        "--net",
        "yard0",
        "--qemu-stream",
        &path.display().to_string(),
    ]);
    let mut client = UnixStream::connect(&path).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    wait_port(&lab, "vm", true, Duration::from_secs(10));
    // One well-formed frame (a broadcast of a local experimental
    // EtherType), then a length above QEMU's limit of 69,632.
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&[0x52, 0x54, 0, 0, 0, 0x99, 0x88, 0xb5]);
    frame.resize(60, 0);
    let mut bytes = (frame.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(&frame);
    bytes.extend_from_slice(&69_633u32.to_be_bytes());
    client.write_all(&bytes).unwrap();
    let down = wait_port(&lab, "vm", false, Duration::from_secs(10));
    assert!(
        down["reason"]
            .as_str()
            .is_some_and(|r| r.contains("69633") && r.contains("waiting for QEMU")),
        "{down:#}"
    );
    let stats = stats_of(&lab, "vm");
    assert_eq!(counter(&stats, "rx_packets"), 1, "{stats:#}");
    assert_eq!(stats["drops"]["oversize_frame"], 1, "{stats:#}");
    // yardd closed its end.
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut client, &mut rest).unwrap();
    assert!(rest.is_empty());
}
