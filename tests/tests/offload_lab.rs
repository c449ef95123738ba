//! Correctness under speed: a 1 GiB TCP transfer on every
//! path through yardd with the kernel's offloads on, checked end to end.
//!
//! TAPs run with `TUNSETOFFLOAD` (checksum, TSO4/TSO6, USO), so a TCP sender in
//! a TAP container hands yardd 64 KB GSO frames with partial checksums; veth
//! ports pass such frames through AF_PACKET with `PACKET_VNET_HDR`; the NAT
//! gateway rewrites their headers in place; a port that cannot take them (a
//! GRE tunnel) gets them segmented in software (`switch/src/dataplane/offload.rs`). Each
//! test sends the same 1 GiB random file with socat and compares the sha256
//! of what arrived with the source's:
//!
//! 1. TAP → TAP on the default network `yard0`, with the TAPs' I/O batched
//!    through io_uring (the default) and, again with veth → TAP, with
//!    `yardd --io plain --packet-io plain` (the veth port read with
//!    `recvmmsg`);
//! 2. TAP → veth container and veth → TAP (the veth keeps its offloads on;
//!    the TAP batches through io_uring, the veth port reads through its
//!    receive ring, `--packet-io ring`, GSO frames with `recvmmsg`);
//! 3. SNAT: a TAP container behind the masquerade → a server outside;
//! 4. DNAT: an outside client → a published port → a TAP container;
//! 5. GRE: TAP → tunnel → other host → TAP, and → a veth container on the
//!    other host (software segmentation on the way out; on the way in,
//!    software GRO merges the segments back into GSO frames, which the TAP
//!    and the veth's packet socket take whole).
//!
//! After each transfer no port of any yardd involved may have counted a
//! `bad-offload` drop, and the sending port (TAP or veth) must really have
//! handed yardd GSO frames (yardd's average received frame on it is far above
//! the MTU), so the test cannot pass with offloads silently off. Where the
//! sender is the outside (DNAT), the receiving TAP must have been sent GSO
//! frames instead; across GRE, the tunnel must have sent MTU-sized segments,
//! the receiving host must have merged them (`yardctl status`, `tunnel
//! GRO`) and handed the TAP and the veth frames far above the MTU.
//!
//! The source file is made once and shared by the tests running at the same
//! time (`head -c` from `/dev/urandom` into a private temp directory): each
//! test holds it while it runs, and the last one to finish — or fail —
//! removes it. Every received file is checked and deleted at once. Each transfer prints its time (see `--nocapture`).
//!
//! Hashes come from python's `hashlib` (OpenSSL, with the CPU's SHA
//! extensions) rather than `yard_tests::lab::sha256` (coreutils `sha256sum`,
//! no SHA extensions): on the 2-core CI-sized machine `sha256sum` takes 8-15 s
//! per GiB against 2-3 s, and this file hashes seven of them. On a mismatch
//! `cmp` names the first differing byte, which tells which segment broke.
//!
//! GRE moves 1 GiB too: measured here at 38-67 s for 1 GiB (15-27 MiB/s,
//! sharing 2 loaded cores with another transfer; the other paths take 4-25 s),
//! inside the budget of about 120 s a path may take, so it needs no smaller
//! file. The whole file ran in 1-2.5 minutes on this 2-core machine.
//!
//! Needs root; without it each test prints why and returns.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use yard_ctl::api::{PortStats, StatusInfo};
use yard_tests::cmd::{describe, in_ns_ok, output, stdout, timed};
use yard_tests::hosts::{self, mesh, Host};
use yard_tests::nat::{NatLab, OUTSIDE_IP, UPLINK_IP};
use yard_tests::{require, Container, Lab};

/// The size of the transfers, in MiB.
const SIZE_MIB: u64 = 1024;
/// The bound on each transfer (sender and receiver), in seconds.
const TRANSFER_SECS: u32 = 300;
/// The drop reason yardd counts when it cannot finish or segment a frame.
const BAD_OFFLOAD: &str = "bad-offload";
/// yardd's average received frame from a sending port must exceed this many
/// bytes: a full-sized plain frame is 1514 bytes, GSO frames run up to 64 KB.
const GSO_EVIDENCE_BYTES: u64 = 4 * 1514;

/// The random file every transfer sends.
#[derive(Debug)]
struct Source {
    /// Owns the file: dropping it removes the directory.
    _dir: TempDir,
    path: PathBuf,
    sha256: String,
}

/// The source file while some test holds it; its `TempDir` removes it when
/// the last holder lets go (on a panic too).
static SOURCE: Mutex<Weak<Source>> = Mutex::new(Weak::new());

/// The source file: [`SIZE_MIB`] MiB of random bytes, made when no running
/// test holds one. Hold the result for the whole test.
fn source() -> Arc<Source> {
    let mut slot = SOURCE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(source) = slot.upgrade() {
        return source;
    }
    let source = Arc::new({
        let dir = tempfile::Builder::new()
            .prefix("yard-offload-")
            .tempdir()
            .expect("temp dir for the source file");
        let path = dir.path().join("source.bin");
        let started = Instant::now();
        let out = output(
            timed(120, "head")
                .args(["-c", &format!("{SIZE_MIB}M"), "/dev/urandom"])
                .stdout(Stdio::from(File::create(&path).expect("create the source"))),
        );
        assert!(
            out.status.success(),
            "cannot make the source file:\n{}",
            describe(&format!("head -c {SIZE_MIB}M /dev/urandom"), &out)
        );
        assert_eq!(len_of(&path), SIZE_MIB << 20, "{} is short", path.display());
        let sha256 = sha256(&path);
        println!(
            "offload_lab: source {SIZE_MIB} MiB made and hashed in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Source {
            _dir: dir,
            path,
            sha256,
        }
    });
    *slot = Arc::downgrade(&source);
    source
}

/// Prints the sha256 of the file named by `argv[1]`, read 1 MiB at a time.
const SHA256_PY: &str = "import hashlib, sys
h = hashlib.sha256()
with open(sys.argv[1], 'rb') as f:
    while True:
        chunk = f.read(1 << 20)
        if not chunk:
            break
        h.update(chunk)
print(h.hexdigest())
";

/// The sha256 of a file, in hex (see the module doc for why not `sha256sum`).
fn sha256(path: &Path) -> String {
    let out = output(timed(120, "python3").args(["-c", SHA256_PY]).arg(path));
    let hex = stdout(&out).trim().to_string();
    assert!(
        out.status.success() && hex.len() == 64,
        "cannot hash {}:\n{}",
        path.display(),
        describe("python3 -c <sha256 of a file>", &out)
    );
    hex
}

/// Where `received` first differs from the source, as `cmp` says it.
fn first_difference(received: &Path) -> String {
    let out = output(timed(120, "cmp").arg(&source().path).arg(received));
    describe("cmp <source> <received>", &out)
}

fn len_of(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Checks that `received` is the source (length, then sha256) and deletes it;
/// `context` describes the daemons for a failure message.
fn check_received(what: &str, received: &Path, context: impl Fn() -> String) {
    let source = source();
    let len = len_of(received);
    if len != SIZE_MIB << 20 {
        panic!(
            "{what}: received {len} bytes of {}\n{}\n{}",
            SIZE_MIB << 20,
            first_difference(received),
            context()
        );
    }
    let got = sha256(received);
    if got != source.sha256 {
        panic!(
            "{what}: the data arrived altered (sha256 {got}, sent {})\n{}\n{}",
            source.sha256,
            first_difference(received),
            context()
        );
    }
    std::fs::remove_file(received).expect("remove the received file");
}

/// Asserts that no port in `stats` counted a `bad-offload` drop.
fn no_bad_offload(what: &str, stats: &[PortStats], context: impl Fn() -> String) {
    let bad: Vec<_> = stats
        .iter()
        .filter(|s| s.drops.get(BAD_OFFLOAD).copied().unwrap_or(0) > 0)
        .collect();
    if !bad.is_empty() {
        panic!(
            "{what}: `{BAD_OFFLOAD}` drops on {:?}:\n{bad:#?}\n{}",
            bad.iter().map(|s| &s.name).collect::<Vec<_>>(),
            context()
        );
    }
}

/// Asserts that the port `port` handed yardd GSO frames: it sent (yardd
/// received) at least the file's bytes, at an average frame size no plain
/// frame reaches. Returns the figures, for the report.
fn gso_seen(what: &str, stats: &[PortStats], port: &str, context: impl Fn() -> String) -> String {
    let s = stats
        .iter()
        .find(|s| s.name == port)
        .unwrap_or_else(|| panic!("{what}: no stats for port {port}: {stats:#?}"));
    let average = s.rx_bytes / s.rx_packets.max(1);
    if s.rx_bytes < SIZE_MIB << 20 || average <= GSO_EVIDENCE_BYTES {
        panic!(
            "{what}: port {port} received {} bytes in {} frames (average {average} bytes): \
             expected at least {} bytes in GSO frames averaging over {GSO_EVIDENCE_BYTES}\n\
             {s:#?}\n{}",
            s.rx_bytes,
            s.rx_packets,
            SIZE_MIB << 20,
            context()
        );
    }
    format!(
        "{port} sent yardd {} frames, {average} bytes on average",
        s.rx_packets
    )
}

/// Port stats and the log of a single-daemon lab, for a failure message.
fn lab_context(lab: &Lab) -> String {
    let stats = lab.ctl(&["port", "stats"]);
    format!(
        "--- yardctl port stats ---\n{}\n{}",
        stdout(&stats).trim_end(),
        lab.log_tail()
    )
}

/// Sends the source from `from` to `to` inside `lab` and checks everything:
/// the data, `bad-offload` drops, and GSO frames from `from` if it is a port
/// of `lab` (`sender_is_port`; the NAT lab's outside is not). Prints the time
/// taken. `context` describes the lab for a failure message.
fn checked_transfer(
    lab: &Lab,
    from: &Container,
    to: &Container,
    port: u16,
    sender_is_port: bool,
    context: &dyn Fn() -> String,
) {
    let what = format!("{} -> {} ({}:{port})", from.port, to.port, to.ip);
    let dir = tempfile::tempdir().expect("temp dir");
    let received = dir.path().join("received.bin");
    let started = Instant::now();
    lab.tcp_transfer(from, to, &source().path, &received, port, TRANSFER_SECS);
    let took = started.elapsed();
    check_received(&what, &received, context);
    let stats = lab.all_stats();
    no_bad_offload(&what, &stats, context);
    let gso = if sender_is_port {
        gso_seen(&what, &stats, &from.port, context)
    } else {
        format!("{} is not a port", from.port)
    };
    report(&what, took, &gso);
}

/// Prints how long a transfer took, with the sender's frame figures.
fn report(what: &str, took: Duration, gso: &str) {
    let secs = took.as_secs_f64();
    println!(
        "offload_lab: {what}: {SIZE_MIB} MiB in {secs:.1} s ({:.0} MiB/s); {gso}",
        SIZE_MIB as f64 / secs
    );
}

#[test]
fn tap_to_tap_moves_1gib_intact() {
    if !require(&["socat", "python3", "cmp", "ss", "head"]) {
        return;
    }
    let _source = source();
    let mut lab = Lab::new();
    let t1 = lab.tap("t1", "yard0", "172.30.7.1/16", &[]);
    let t2 = lab.tap("t2", "yard0", "172.30.7.2/16", &[]);
    // The default: both TAPs batch their I/O through an io_uring each.
    assert_eq!(lab.io_uring_count(), 2, "{}", lab.log_tail());
    lab.ping_ok(&t1, t2.ip);
    checked_transfer(&lab, &t1, &t2, 6001, true, &|| lab_context(&lab));
}

#[test]
fn tap_to_tap_and_veth_to_tap_move_1gib_intact_with_plain_io() {
    if !require(&["socat", "python3", "cmp", "ss", "head"]) {
        return;
    }
    let _source = source();
    // One read(2) or write(2) per frame: the path of `--io plain` and of
    // every fallback from io_uring gives the same bytes.
    // The veth port reads with recvmmsg (`--packet-io plain`), as every
    // fallback from its receive ring does.
    let mut lab = Lab::with_args(&["--io", "plain", "--packet-io", "plain"]);
    let t1 = lab.tap("t1", "yard0", "172.30.10.1/16", &[]);
    let t2 = lab.tap("t2", "yard0", "172.30.10.2/16", &[]);
    let veth = lab.veth("v1", "yard0", "172.30.10.3/16");
    assert_eq!(lab.io_uring_count(), 0, "--io plain holds no ring");
    assert_eq!(lab.packet_ring_count(), 0, "--packet-io plain maps no ring");
    lab.ping_ok(&t1, t2.ip);
    lab.ping_ok(&veth, t2.ip);
    checked_transfer(&lab, &t1, &t2, 6008, true, &|| lab_context(&lab));
    checked_transfer(&lab, &veth, &t2, 6009, true, &|| lab_context(&lab));
}

#[test]
fn tap_to_veth_and_veth_to_tap_move_1gib_intact_with_the_veth_offloads_on() {
    if !require(&["socat", "python3", "cmp", "ss", "head", "ethtool"]) {
        return;
    }
    let _source = source();
    // The veth port reads through a receive ring (`--packet-io ring`), its
    // GSO frames (larger than a slot) with recvmmsg.
    let mut lab = Lab::with_args(&["--packet-io", "ring"]);
    let tap = lab.tap("t1", "yard0", "172.30.8.1/16", &[]);
    let veth = lab.veth("v1", "yard0", "172.30.8.2/16");
    assert_eq!(lab.packet_ring_count(), 1, "{}", lab.log_tail());

    // Nobody runs `ethtool -K` in the veth container: it sends TSO frames with
    // partial checksums, and yardd must take them as they are.
    let features = stdout(&in_ns_ok(&veth.ns, &["ethtool", "-k", "eth0"]));
    for feature in ["tcp-segmentation-offload: on", "tx-checksumming: on"] {
        assert!(
            features.lines().any(|l| l.trim() == feature),
            "precondition: the veth container's eth0 should have {feature}:\n{features}"
        );
    }
    lab.ping_ok(&tap, veth.ip);
    checked_transfer(&lab, &tap, &veth, 6002, true, &|| lab_context(&lab));
    checked_transfer(&lab, &veth, &tap, 6003, true, &|| lab_context(&lab));
}

#[test]
fn snat_from_a_tap_container_to_the_outside_moves_1gib_intact() {
    if !require(&["socat", "python3", "cmp", "ss", "head"]) {
        return;
    }
    let _source = source();
    let mut lab = NatLab::new();
    let c1 = lab.tap("c1", "web", "172.31.0.2/16", &[]);
    let out = lab.outside_container();
    // The outside has no route to 172.31.0.0/16: only SNAT lets this work.
    lab.ping_ok(&c1, OUTSIDE_IP);
    checked_transfer(&lab, &c1, &out, 6004, true, &|| lab.context());
}

#[test]
fn dnat_from_the_outside_to_a_published_tap_container_moves_1gib_intact() {
    if !require(&["socat", "python3", "cmp", "ss", "head"]) {
        return;
    }
    let _source = source();
    let mut lab = NatLab::new();
    let c1 = lab.tap("c1", "web", "172.31.0.2/16", &[]);
    lab.ctl_ok(&["publish", "add", "6005:c1:6005/tcp"]);
    let out = lab.outside_container();
    // The receiver listens in c1's namespace; the sender connects to the
    // uplink address, where 6005 is published to c1's 6005.
    let published = Container {
        port: "c1 (published)".into(),
        ip: UPLINK_IP,
        ..c1.clone()
    };
    lab.ping_ns_ok(&lab.outside, UPLINK_IP);
    checked_transfer(&lab, &out, &published, 6005, false, &|| lab.context());
    // The outside's veth handed the uplink GSO frames (the uplink's counters
    // are not among the port stats); the gateway rewrote them in place and
    // passed them to c1's TAP whole: c1 was sent the file in frames far
    // larger than the MTU.
    let c1_stats = lab.stats("c1");
    let average = c1_stats.tx_bytes / c1_stats.tx_packets.max(1);
    assert!(
        c1_stats.tx_bytes >= SIZE_MIB << 20 && average > GSO_EVIDENCE_BYTES,
        "c1 was sent {} bytes in {} frames (average {average}): expected the file \
         in GSO frames averaging over {GSO_EVIDENCE_BYTES} bytes\n{c1_stats:?}\n{}",
        c1_stats.tx_bytes,
        c1_stats.tx_packets,
        lab.context()
    );
    println!(
        "offload_lab: DNAT: yardd sent c1 {} frames, {average} bytes on average",
        c1_stats.tx_packets
    );
}

#[test]
fn gre_from_a_tap_to_a_tap_and_a_veth_on_another_host_moves_1gib_intact_merged_on_arrival() {
    if !require(&["socat", "python3", "cmp", "ss", "head"]) {
        return;
    }
    let _source = source();
    let mut hosts = mesh(2);
    for host in &hosts {
        host.ctl_ok(&["net", "create", "ov", "--subnet", "172.32.0.0/16"]);
    }
    hosts[0].tunnel("t2", "ov", "--gre", &hosts[1], &["--key", "42"]);
    hosts[1].tunnel("t1", "ov", "--gre", &hosts[0], &["--key", "42"]);
    let c1 = hosts[0].tap("c1", "ov", "172.32.0.2/16", &[]);
    let c2 = hosts[1].tap("c2", "ov", "172.32.0.3/16", &[]);
    // A veth container at the overlay MTU, like the TAPs (yardd gives them
    // the overlay MTU itself).
    let c3 = hosts[1].veth("c3", "ov", "172.32.0.4/16");
    in_ns_ok(&c3.ns, &["ip", "link", "set", "eth0", "mtu", "1458"]);
    let all: Vec<&Host> = hosts.iter().collect();
    hosts::ping_ok(&all, &c1, c2.ip, &[]);
    hosts::ping_ok(&all, &c1, c3.ip, &[]);
    let context = || hosts::context(&all);

    for (to, port) in [(&c2, 6006), (&c3, 6007)] {
        let what = format!("c1 (host 1) -> GRE -> {} (host 2)", to.port);
        let dir = tempfile::tempdir().expect("temp dir");
        let received = dir.path().join("received.bin");
        let started = Instant::now();
        hosts::tcp_transfer(
            &all,
            &c1,
            to,
            &source().path,
            &received,
            port,
            TRANSFER_SECS,
        );
        let took = started.elapsed();
        check_received(&what, &received, context);
        for host in &all {
            let stats: Vec<PortStats> = host.ctl_parse(&["port", "stats"]);
            no_bad_offload(&format!("{what}, host {}", host.index()), &stats, context);
        }
        // The receiving port got the merged GSO frames whole (a TAP and an
        // AF_PACKET socket both take them): yardd sent it frames far above
        // the overlay MTU on average.
        let stats: Vec<PortStats> = hosts[1].ctl_parse(&["port", "stats", &to.port]);
        let delivered = &stats[0];
        let average = delivered.tx_bytes / delivered.tx_packets.max(1);
        assert!(
            delivered.tx_bytes >= SIZE_MIB << 20 && average > GSO_EVIDENCE_BYTES,
            "{what}: yardd on host 2 sent {} {} bytes in {} frames ({average} on average): \
             expected at least {} bytes in merged frames averaging over {GSO_EVIDENCE_BYTES}\n{}",
            to.port,
            delivered.tx_bytes,
            delivered.tx_packets,
            SIZE_MIB << 20,
            context()
        );
        report(
            &what,
            took,
            &format!(
                "host 2 sent {} {} frames, {average} bytes on average",
                to.port, delivered.tx_packets
            ),
        );
    }

    // The sending side: c1 handed yardd GSO frames, and the tunnel, which
    // cannot take them, sent segments that fit the overlay MTU (1458): at
    // least one frame per 1458 bytes of both files.
    let stats: Vec<PortStats> = hosts[0].ctl_parse(&["port", "stats"]);
    println!(
        "offload_lab: GRE sender: {}",
        gso_seen("c1 -> GRE", &stats, "c1", context)
    );
    let tunnel = stats
        .iter()
        .find(|s| s.name == "t2")
        .unwrap_or_else(|| panic!("no stats for the tunnel t2: {stats:#?}"));
    let at_least = 2 * (SIZE_MIB << 20) / 1458;
    assert!(
        tunnel.tx_packets >= at_least && tunnel.tx_bytes >= 2 * (SIZE_MIB << 20),
        "the tunnel t2 sent {} frames, {} bytes; two segmented {SIZE_MIB} MiB transfers \
         need at least {at_least} frames\n{}",
        tunnel.tx_packets,
        tunnel.tx_bytes,
        context()
    );
    // The receiving side merged what arrived: software GRO counted it.
    let status: StatusInfo = hosts[1].ctl_parse(&["status"]);
    let gro = status.tunnel_gro;
    assert!(
        gro.frames > 0 && gro.segments >= 2 * gro.frames,
        "host 2 merged no received segments: {gro:?}\n{}",
        context()
    );
    println!(
        "offload_lab: GRE receiver merged {} segments into {} frames ({:.1} per frame); \
         t2 sent {} segments",
        gro.segments,
        gro.frames,
        gro.segments as f64 / gro.frames as f64,
        tunnel.tx_packets
    );
}
