//! How TAP ports move frames: io_uring batches (`yardd --io uring`, the
//! default) and one `read(2)`/`write(2)` per frame (`--io plain`, and the
//! fallback when io_uring cannot be set up).
//!
//! 1. Frames of every size from 60 to 9014 bytes (IP packets of 46 to 9000
//!    bytes on a network with MTU 9000) cross two TAP ports both ways, each
//!    checked byte for byte: a UDP echo client in one container sends one
//!    datagram of each size, an echo server in the other sends it back.
//!    Small frames leave yardd through the ring's slots, larger ones (above
//!    2 KiB) are written directly; both sizes and the boundary are covered.
//!    Run once with each `--io` mode; the ring mode must really hold a ring
//!    per port and the plain mode none.
//!    The same through a veth port (AF_PACKET, whose small frames leave in
//!    `sendmmsg` batches) to a TAP port, once with the veth port reading
//!    through its receive ring (`yardd --packet-io ring`: small frames from
//!    ring slots, larger ones with `recvmmsg`) and once with `recvmmsg`
//!    only (`--packet-io plain`, the default).
//! 2. A refused `io_uring_setup` (strace injects `ENOSYS` into the running
//!    yardd, as on a kernel without io_uring) makes the port yardd adds
//!    meanwhile fall back: yardd logs one warning saying why, the port holds
//!    no ring and still forwards; a port added after the injection ends
//!    gets its ring. The same for a veth port's receive ring
//!    (`--packet-io ring`; strace makes its `PACKET_RX_RING` fail with
//!    `ENOMEM`): the port reads with `recvmmsg` and forwards.
//!
//! The 1 GiB sha256-checked transfers through TAP and veth ports, GSO frames
//! included, are in `offload_lab.rs`, in both modes.
//!
//! Every loop is bounded; namespaces, yardd and strace are removed by their
//! guards, also when a test fails. Needs root; without it each test prints
//! why and returns (under `CI=true` it fails).

use std::process::{Child, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use yard_tests::cmd::{describe, output, timed};
use yard_tests::{require, Container, Lab};

/// UDP port of the echo server.
const ECHO_PORT: u16 = 7007;
/// Bound on the echo server's and the client's lives, in seconds.
const ECHO_SECS: u32 = 120;
/// The largest IP packet: the jumbo network's MTU.
const JUMBO_MTU: u32 = 9000;

/// Echoes every datagram back to its sender; ends after 10 s without one.
const ECHO_SERVER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, 10, 2)  # IP_MTU_DISCOVER = IP_PMTUDISC_DO
s.bind((sys.argv[1], int(sys.argv[2])))
s.settimeout(10)
print("listening", flush=True)
try:
    while True:
        data, peer = s.recvfrom(65535)
        s.sendto(data, peer)
except socket.timeout:
    pass
"#;

/// Sends one datagram of each payload size from argv[3] to argv[4]
/// (inclusive), each with content of its own, and checks the echo; up to 20
/// tries a size (ARP, a lost datagram). Prints `ok N` or what went wrong.
const ECHO_CLIENT: &str = r#"
import socket, sys
server = (sys.argv[1], int(sys.argv[2]))
first, last = int(sys.argv[3]), int(sys.argv[4])
pattern = bytes(range(251)) * 40
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, 10, 2)  # IP_MTU_DISCOVER = IP_PMTUDISC_DO
s.settimeout(0.2)
checked = 0
for n in range(first, last + 1):
    payload = pattern[n % 251:n % 251 + n]
    for attempt in range(20):
        s.sendto(payload, server)
        try:
            while True:
                echo, _ = s.recvfrom(65535)
                if len(echo) == n and echo == payload:
                    break
                if len(echo) == n:
                    print(f"size {n}: echo differs", flush=True)
                    sys.exit(1)
                # an echo of an earlier try of another size: skip it
        except socket.timeout:
            continue
        break
    else:
        print(f"size {n}: no echo after 20 tries", flush=True)
        sys.exit(1)
    checked += 1
print(f"ok {checked}", flush=True)
"#;

/// UDP, IPv4 and Ethernet headers around a payload.
const HEADERS: u32 = 8 + 20 + 14;

/// The echo server in `to`, guarded: killed (by the pid spawned) on drop.
struct EchoServer(Child);

impl EchoServer {
    fn start(to: &Container) -> EchoServer {
        let mut child = timed(ECHO_SECS, "ip")
            .args(["netns", "exec", &to.ns, "python3", "-c", ECHO_SERVER])
            .arg(to.ip.to_string())
            .arg(ECHO_PORT.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the echo server");
        // It prints once it is bound.
        let mut line = String::new();
        let stdout = child.stdout.as_mut().expect("echo server stdout");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .expect("read the echo server's first line");
        assert_eq!(line.trim(), "listening", "the echo server did not start");
        EchoServer(child)
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Echoes one datagram of every frame size from 60 to 9014 bytes from
/// `from` off `to` and back, and checks each.
fn every_frame_size_echoes_intact(lab: &Lab, from: &Container, to: &Container) {
    let _server = EchoServer::start(to);
    let (first, last) = (60 - HEADERS, JUMBO_MTU + 14 - HEADERS);
    let out = output(
        timed(ECHO_SECS, "ip")
            .args(["netns", "exec", &from.ns, "python3", "-c", ECHO_CLIENT])
            .arg(to.ip.to_string())
            .arg(ECHO_PORT.to_string())
            .arg(first.to_string())
            .arg(last.to_string()),
    );
    let expected = format!("ok {}", last - first + 1);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == expected,
        "frames of every size from 60 to {} bytes did not all cross {} <-> {} intact:\n{}\n{}\n{}",
        JUMBO_MTU + 14,
        from.port,
        to.port,
        describe("udp echo client", &out),
        lab.stats_text(),
        lab.log_tail()
    );
    for port in [&from.port, &to.port] {
        let stats = lab.stats(port);
        assert!(
            stats.drops.is_empty(),
            "port {port} dropped frames: {stats:?}"
        );
    }
}

/// Two containers on a network with MTU 9000, in a yardd with `args`.
fn jumbo_lab(args: &[&str]) -> (Lab, Container, Container) {
    let mut lab = Lab::with_args(args);
    lab.ctl_ok(&[
        "net",
        "create",
        "jumbo",
        "--subnet",
        "10.67.0.0/24",
        "--mtu",
        &JUMBO_MTU.to_string(),
    ]);
    let j1 = lab.tap("j1", "jumbo", "10.67.0.2/24", &[]);
    let j2 = lab.tap("j2", "jumbo", "10.67.0.3/24", &[]);
    assert_eq!(j1.mtu(), u64::from(JUMBO_MTU));
    (lab, j1, j2)
}

#[test]
fn frames_of_every_size_up_to_jumbo_cross_tap_ports_batched_through_io_uring() {
    if !require(&["python3"]) {
        return;
    }
    let (lab, j1, j2) = jumbo_lab(&[]);
    assert_eq!(
        lab.io_uring_count(),
        2,
        "each TAP port should batch through a ring of its own:\n{}",
        lab.log_tail()
    );
    every_frame_size_echoes_intact(&lab, &j1, &j2);
}

#[test]
fn frames_of_every_size_up_to_jumbo_cross_tap_ports_with_plain_io() {
    if !require(&["python3"]) {
        return;
    }
    let (lab, j1, j2) = jumbo_lab(&["--io", "plain"]);
    assert_eq!(lab.io_uring_count(), 0, "--io plain holds no ring");
    assert!(
        !lab.log_text().contains("instead of io_uring"),
        "--io plain is no fallback to warn about:\n{}",
        lab.log_tail()
    );
    every_frame_size_echoes_intact(&lab, &j1, &j2);
}

#[test]
fn frames_of_every_size_up_to_jumbo_cross_a_veth_port_read_through_its_ring() {
    if !require(&["python3"]) {
        return;
    }
    // The veth port sends frames of up to 2 KiB with one sendmmsg per
    // round and larger ones directly; it receives through its ring
    // (`--packet-io ring`), frames of up to 1972 bytes from the ring's
    // slots and larger ones with recvmmsg; the TAP on the other side
    // batches through its io_uring.
    let (mut lab, j1, _j2) = jumbo_lab(&["--packet-io", "ring"]);
    let v1 = lab.veth_with_mtu("v1", "jumbo", "10.67.0.4/24", Some(JUMBO_MTU));
    assert_eq!(v1.mtu(), u64::from(JUMBO_MTU));
    assert_eq!(
        lab.packet_ring_count(),
        1,
        "the veth port should read through a receive ring:\n{}",
        lab.log_tail()
    );
    every_frame_size_echoes_intact(&lab, &v1, &j1);
}

#[test]
fn frames_of_every_size_up_to_jumbo_cross_a_veth_port_read_with_recvmmsg() {
    if !require(&["python3"]) {
        return;
    }
    // The default, `--packet-io plain`.
    let (mut lab, j1, _j2) = jumbo_lab(&[]);
    let v1 = lab.veth_with_mtu("v1", "jumbo", "10.67.0.4/24", Some(JUMBO_MTU));
    assert_eq!(lab.packet_ring_count(), 0, "--packet-io plain maps no ring");
    assert!(
        !lab.log_text().contains("instead of a receive ring"),
        "--packet-io plain is no fallback to warn about:\n{}",
        lab.log_tail()
    );
    every_frame_size_echoes_intact(&lab, &v1, &j1);
}

/// strace attached to every thread of a running yardd, making the system
/// call `syscall` fail as `inject` says (strace's `-e inject=` syntax);
/// detached (by killing the pid spawned) on drop, which leaves yardd
/// running as it was.
struct Injected(Child);

impl Injected {
    fn attach(pid: u32, syscall: &str, inject: &str) -> Injected {
        let child = timed(ECHO_SECS, "strace")
            .args(["-f", "-qq", "-o", "/dev/null"])
            .args(["-e", &format!("trace={syscall}")])
            .args(["-e", &format!("inject={syscall}:{inject}"), "-p"])
            .arg(pid.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn strace");
        let guard = Injected(child);
        // Attached once every thread of yardd has a tracer.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !every_thread_traced(pid) {
            assert!(
                Instant::now() < deadline,
                "strace did not attach to yardd within 10 s"
            );
            sleep(Duration::from_millis(50));
        }
        guard
    }

    fn detach(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}

impl Drop for Injected {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            self.stop();
        }
    }
}

/// Whether every thread of `pid` is being traced.
fn every_thread_traced(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.filter_map(Result::ok).all(|task| {
        std::fs::read_to_string(task.path().join("status")).is_ok_and(|status| {
            status
                .lines()
                .any(|l| l.starts_with("TracerPid:") && l.split_whitespace().nth(1) != Some("0"))
        })
    })
}

#[test]
fn a_refused_io_uring_setup_is_logged_and_the_tap_port_forwards_with_plain_io() {
    if !require(&["strace", "ping"]) {
        return;
    }
    let mut lab = Lab::new();
    let pid = lab.pid().expect("yardd runs");
    let tracer = Injected::attach(pid, "io_uring_setup", "error=ENOSYS");
    let plain = lab.tap("t1", "yard0", "172.30.9.1/16", &[]);
    tracer.detach();
    let log = lab.log_text();
    let warning = log
        .lines()
        .find(|l| l.contains("TAP ports use plain read/write instead of io_uring"))
        .unwrap_or_else(|| panic!("no fallback warning:\n{}", lab.log_tail()));
    assert!(
        warning.contains("WARN")
            && warning.contains("io_uring_setup failed")
            && warning.contains("Function not implemented"),
        "the warning should say io_uring_setup failed and why: {warning}"
    );
    assert_eq!(lab.io_uring_count(), 0, "the port fell back: no ring");

    // Injection over: the next port batches, and both forward.
    let batched = lab.tap("t2", "yard0", "172.30.9.2/16", &[]);
    assert_eq!(lab.io_uring_count(), 1, "{}", lab.log_tail());
    lab.ping_ok(&plain, batched.ip);
    lab.ping_ok(&batched, plain.ip);
    // Larger than a ring slot (2 KiB): written directly by t2, plainly by t1.
    lab.ping_ok_with(&plain, batched.ip, &["-s", "3000"]);
    for port in ["t1", "t2"] {
        let stats = lab.stats(port);
        assert!(
            stats.tx_packets >= 3 && stats.drops.is_empty(),
            "{port}: {stats:?}"
        );
    }
    assert_eq!(
        lab.log_text().matches("instead of io_uring").count(),
        1,
        "one warning per yardd:\n{}",
        lab.log_tail()
    );
}

#[test]
fn a_refused_receive_ring_is_logged_and_the_veth_port_forwards_with_recvmmsg() {
    if !require(&["strace", "ping"]) {
        return;
    }
    let mut lab = Lab::with_args(&["--packet-io", "ring"]);
    let tap = lab.tap("t1", "yard0", "172.30.11.1/16", &[]);
    let pid = lab.pid().expect("yardd runs");
    // The control thread that serves `port add` makes two setsockopt calls
    // on its connection (timeouts), then the packet socket's: vnet header,
    // auxdata, ignore outgoing, qdisc bypass, two buffer sizes,
    // PACKET_VERSION, PACKET_COPY_THRESH and, 11th, PACKET_RX_RING, which
    // fails here with ENOMEM as when the kernel cannot find the ring's pages.
    // The warning must name PACKET_RX_RING: were the order to change, the
    // test fails on that, not silently.
    let tracer = Injected::attach(pid, "setsockopt", "error=ENOMEM:when=11");
    let plain = lab.veth("v1", "yard0", "172.30.11.2/16");
    tracer.detach();
    let log = lab.log_text();
    let warning = log
        .lines()
        .find(|l| l.contains("instead of a receive ring"))
        .unwrap_or_else(|| panic!("no fallback warning:\n{}", lab.log_tail()));
    assert!(
        warning.contains("WARN")
            && warning.contains("PACKET_RX_RING")
            && warning.contains("Cannot allocate memory"),
        "the warning should say PACKET_RX_RING failed and why: {warning}"
    );
    assert_eq!(lab.packet_ring_count(), 0, "the port fell back: no ring");

    // Injection over: the next veth port gets its ring, and all forward.
    let ringed = lab.veth("v2", "yard0", "172.30.11.3/16");
    assert_eq!(lab.packet_ring_count(), 1, "{}", lab.log_tail());
    lab.ping_ok(&plain, ringed.ip);
    lab.ping_ok(&ringed, tap.ip);
    // Larger than a ring slot: read whole through the copy on v2, with
    // recvmmsg on v1.
    lab.ping_ok_with(&plain, ringed.ip, &["-s", "3000"]);
    for port in ["v1", "v2"] {
        let stats = lab.stats(port);
        assert!(
            stats.rx_packets >= 3 && stats.drops.is_empty(),
            "{port}: {stats:?}"
        );
    }
    assert_eq!(
        lab.log_text().matches("instead of a receive ring").count(),
        1,
        "one warning per yardd:\n{}",
        lab.log_tail()
    );
}
