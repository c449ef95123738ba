//! VLAN trunk labs over AF_PACKET: 802.1Q-tagged frames on a veth attached as a
//! trunk reach the network of their VLAN id and come back tagged; a tag the
//! switch does not carry, or no tag at all, is dropped and counted; and a
//! tagged frame sent by a container on a veth access port is dropped as
//! `tagged-on-access-port` instead of being switched as if untagged.
//!
//! The kernel takes the tag out of a received frame before any packet socket
//! sees it (and reports it in `PACKET_AUXDATA`); `ethtool -K rxvlan off` does
//! not change that on veth. So the far-side host here, a stdlib-only Python
//! program on an AF_PACKET socket ([`VLAN_HOST_PY`]), learns each frame's VLAN
//! id from `PACKET_AUXDATA` through `recvmsg`, as yardd does.
//!
//! Needs root and python3; without them each test prints why and returns. All
//! traffic stays in the lab's namespaces; every Python process stops by itself
//! (a stop file, or its time limit) and runs under `timeout`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use yard_ctl::api::PortStats;
use yard_ctl::MacAddr;
use yard_tests::cmd::{in_ns_ok, run_ok, timed};
use yard_tests::{require, Lab, Veth};

/// A far-side host on an AF_PACKET socket. Subcommands:
///
/// - `respond DEV SECS STOPFILE READYFILE MAC VID=IP...`: answers ARP requests
///   and ICMP echo requests for IP arriving with VID, tagged with the same VID,
///   from MAC; logs one line per frame; stops after SECS or once STOPFILE exists.
/// - `send DEV SRCMAC VID|none MARKER`: sends one broadcast frame of EtherType
///   0x88b5 carrying MARKER, tagged with VID or untagged.
/// - `listen DEV SECS STOPFILE READYFILE`: logs every received frame.
///
/// Log lines: `rx vid=<n|none> type=<hex> src=<mac> ...`, then for ARP
/// `arp who-has=<ip>`, for ICMP `icmp-echo dst=<ip>`, and `answered` or
/// `ignored`; for other frames `payload=<text>`.
const VLAN_HOST_PY: &str = r#"
import os, select, socket, struct, sys, time

SOL_PACKET = 263
PACKET_AUXDATA = 8
PACKET_OUTGOING = 4
TP_STATUS_VLAN_VALID = 1 << 4
ETH_P_ALL = 3


def open_socket(dev):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((dev, 0))
    s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    return s


def receive(s, timeout):
    """One received frame as (untagged frame, vid or None), or None."""
    ready, _, _ = select.select([s], [], [], timeout)
    if not ready:
        return None
    data, ancillary, _flags, addr = s.recvmsg(65535, socket.CMSG_SPACE(20))
    if addr[2] == PACKET_OUTGOING:
        return None
    vid = None
    for level, kind, cdata in ancillary:
        if level == SOL_PACKET and kind == PACKET_AUXDATA and len(cdata) >= 20:
            status, _, _, _, _, tci, _tpid = struct.unpack("IIIHHHH", cdata[:20])
            if status & TP_STATUS_VLAN_VALID:
                vid = tci & 0xFFF
    # A kernel that left the tag in the data.
    if vid is None and len(data) >= 18 and data[12:14] == b"\x81\x00":
        vid = struct.unpack("!H", data[14:16])[0] & 0xFFF
        data = data[:12] + data[16:]
    return data, vid


def mac_bytes(text):
    return bytes(int(x, 16) for x in text.split(":"))


def mac_text(raw):
    return ":".join("%02x" % b for b in raw)


def ip_text(raw):
    return socket.inet_ntoa(raw)


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return (~total) & 0xFFFF


def ethernet(dst, src, vid, ethertype, payload):
    tag = b"" if vid is None else struct.pack("!HH", 0x8100, vid)
    frame = dst + src + tag + struct.pack("!H", ethertype) + payload
    return frame + b"\0" * max(0, 60 + len(tag) - len(frame))


def log(out, text):
    out.write(text + "\n")
    out.flush()


def should_stop(deadline, stopfile):
    return time.time() >= deadline or os.path.exists(stopfile)


def respond(dev, secs, stopfile, readyfile, mac, pairs):
    mine = {}
    for pair in pairs:
        vid, ip = pair.split("=")
        mine[int(vid)] = socket.inet_aton(ip)
    s = open_socket(dev)
    open(readyfile, "w").close()
    deadline = time.time() + secs
    out = sys.stdout
    while not should_stop(deadline, stopfile):
        got = receive(s, 0.1)
        if got is None:
            continue
        frame, vid = got
        if len(frame) < 14:
            continue
        ethertype = struct.unpack("!H", frame[12:14])[0]
        line = "rx vid=%s type=%04x src=%s" % (
            "none" if vid is None else vid, ethertype, mac_text(frame[6:12]))
        ours = mine.get(vid)
        body = frame[14:]
        if ethertype == 0x0806 and len(body) >= 28 and body[6:8] == b"\x00\x01":
            target = body[24:28]
            line += " arp who-has=%s" % ip_text(target)
            if ours is not None and target == ours:
                arp = body[0:6] + b"\x00\x02" + mac + ours + body[8:14]
                s.send(ethernet(frame[6:12], mac, vid, 0x0806, arp))
                line += " answered"
            else:
                line += " ignored"
        elif ethertype == 0x0800 and len(body) >= 28 and body[9] == 1:
            ihl = (body[0] & 0x0F) * 4
            total = struct.unpack("!H", body[2:4])[0]
            packet = body[:total]
            icmp = packet[ihl:]
            if len(icmp) >= 8 and icmp[0] == 8:
                line += " icmp-echo dst=%s" % ip_text(packet[16:20])
                if ours is not None and packet[16:20] == ours:
                    reply = b"\x00\x00\x00\x00" + icmp[4:]
                    reply = reply[:2] + struct.pack("!H", checksum(reply)) + reply[4:]
                    header = bytearray(packet[:ihl])
                    header[8] = 64
                    header[12:16], header[16:20] = packet[16:20], packet[12:16]
                    header[10:12] = b"\0\0"
                    header[10:12] = struct.pack("!H", checksum(bytes(header)))
                    s.send(ethernet(frame[6:12], mac, vid, 0x0800, bytes(header) + reply))
                    line += " answered"
                else:
                    line += " ignored"
        log(out, line)


def send(dev, src, vid, marker):
    s = open_socket(dev)
    tag = None if vid == "none" else int(vid)
    s.send(ethernet(b"\xff" * 6, src, tag, 0x88B5, marker.encode()))


def listen(dev, secs, stopfile, readyfile):
    s = open_socket(dev)
    open(readyfile, "w").close()
    deadline = time.time() + secs
    while not should_stop(deadline, stopfile):
        got = receive(s, 0.1)
        if got is None:
            continue
        frame, vid = got
        if len(frame) < 14:
            continue
        payload = frame[14:].rstrip(b"\0").decode("ascii", "replace")
        log(sys.stdout, "rx vid=%s type=%s src=%s payload=%s" % (
            "none" if vid is None else vid, frame[12:14].hex(),
            mac_text(frame[6:12]), payload))


command = sys.argv[1]
if command == "respond":
    respond(sys.argv[2], float(sys.argv[3]), sys.argv[4], sys.argv[5],
            mac_bytes(sys.argv[6]), sys.argv[7:])
elif command == "send":
    send(sys.argv[2], mac_bytes(sys.argv[3]), sys.argv[4], sys.argv[5])
elif command == "listen":
    listen(sys.argv[2], float(sys.argv[3]), sys.argv[4], sys.argv[5])
else:
    sys.exit("unknown command " + command)
"#;

/// The far-side host's MAC, the same on both VLANs.
const FAR_MAC: &str = "02:00:00:00:0a:09";

/// The longest a background Python process may live, in seconds.
const PY_LIFETIME_SECS: u32 = 90;

/// Writes [`VLAN_HOST_PY`] into `dir` and returns its path.
fn write_script(dir: &Path) -> PathBuf {
    let path = dir.join("vlan_host.py");
    std::fs::write(&path, VLAN_HOST_PY).expect("write the Python far-side host");
    path
}

/// A background Python process in a namespace, logging to a file; stopped on
/// drop (stop file, then SIGTERM to the `timeout` it runs under, by pid).
struct PyProcess {
    child: Option<Child>,
    log: PathBuf,
    stopfile: PathBuf,
}

impl PyProcess {
    /// Runs `python3 SCRIPT <command> DEV PY_LIFETIME_SECS STOP READY args...`
    /// in `ns` and waits (at most 10 s) until it has its socket open.
    fn start(ns: &str, script: &Path, dir: &Path, tag: &str, command: &str, args: &[&str]) -> Self {
        let log = dir.join(format!("{tag}.log"));
        let stopfile = dir.join(format!("{tag}.stop"));
        let readyfile = dir.join(format!("{tag}.ready"));
        let secs = PY_LIFETIME_SECS.to_string();
        let mut cmd = timed(PY_LIFETIME_SECS + 5, "ip");
        cmd.args(["netns", "exec", ns, "python3"])
            .arg(script)
            .arg(command)
            .arg(args[0])
            .arg(&secs)
            .arg(&stopfile)
            .arg(&readyfile)
            .args(&args[1..])
            .stdout(Stdio::from(File::create(&log).expect("create the log")))
            .stderr(Stdio::from(
                File::options()
                    .append(true)
                    .open(&log)
                    .expect("open the log"),
            ));
        let mut child = cmd.spawn().expect("spawn python3");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !readyfile.exists() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "python3 {command} exited early ({status}):\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "python3 {command} not ready after 10 s"
            );
            sleep(Duration::from_millis(20));
        }
        PyProcess {
            child: Some(child),
            log,
            stopfile,
        }
    }

    /// Asks the process to stop, waits for it (bounded) and returns its log.
    fn finish(mut self) -> String {
        self.stop();
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = File::create(&self.stopfile);
        let deadline = Instant::now() + Duration::from_secs(3);
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            sleep(Duration::from_millis(20));
        }
        if matches!(child.try_wait(), Ok(None)) {
            // `timeout` passes SIGTERM on to python3.
            if let Ok(pid) = i32::try_from(child.id()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
            let _ = child.wait();
        }
    }
}

impl Drop for PyProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends one broadcast frame (EtherType 0x88b5, payload `marker`) from `ns`
/// out of `dev`, tagged with `vid` (`"none"`: untagged).
fn send_frame(ns: &str, script: &Path, dev: &str, src: &str, vid: &str, marker: &str) {
    let script = script.to_string_lossy();
    in_ns_ok(ns, &["python3", &script, "send", dev, src, vid, marker]);
}

/// The drop count of `reason` in `stats`.
fn drops(stats: &PortStats, reason: &str) -> u64 {
    stats.drops.get(reason).copied().unwrap_or(0)
}

/// Polls the port's stats until `reason` reaches `want` (at most 5 s), then
/// returns them.
fn wait_drops(lab: &Lab, port: &str, reason: &str, want: u64) -> PortStats {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stats = lab.stats(port);
        if drops(&stats, reason) >= want || Instant::now() >= deadline {
            return stats;
        }
        sleep(Duration::from_millis(50));
    }
}

#[test]
fn trunk_carries_tagged_frames_of_both_vlans_and_drops_the_rest() {
    if !require(&["ping", "python3"]) {
        return;
    }
    // Declared before the lab so it outlives the daemon's packet socket; the
    // lab's namespace takes the pair with it, and this delete then finds nothing.
    let veth = Veth::new();
    let mut lab = Lab::new();
    lab.ctl_ok(&[
        "net",
        "create",
        "ten",
        "--vlan",
        "10",
        "--subnet",
        "10.71.0.0/24",
    ]);
    lab.ctl_ok(&[
        "net",
        "create",
        "twenty",
        "--vlan",
        "20",
        "--subnet",
        "10.72.0.0/24",
    ]);
    let c10 = lab.tap("c10", "ten", "10.71.0.2/24", &[]);
    let c20 = lab.tap("c20", "twenty", "10.72.0.2/24", &[]);

    // The far side ("switch2"): the veth's peer end in its own namespace.
    let switch2 = lab.netns();
    let (host, peer) = (veth.host().to_string(), veth.peer().to_string());
    run_ok(&["ip", "link", "set", &peer, "netns", &switch2]);
    run_ok(&["ip", "-n", &switch2, "link", "set", &peer, "up"]);
    run_ok(&[
        "sysctl",
        "-qw",
        &format!("net.ipv6.conf.{host}.disable_ipv6=1"),
    ]);
    run_ok(&["ip", "link", "set", &host, "up"]);
    lab.ctl_ok(&[
        "port",
        "add",
        "t",
        "--trunk",
        "--iface",
        &host,
        "--nets",
        "ten,twenty",
    ]);
    lab.wait_ports_up(Duration::from_secs(10));

    let script = write_script(lab.dir());
    let responder = PyProcess::start(
        &switch2,
        &script,
        lab.dir(),
        "responder",
        "respond",
        &[&peer, FAR_MAC, "10=10.71.0.9", "20=10.72.0.9"],
    );

    // Each container reaches the far host in its own VLAN.
    lab.ping_ok(&c10, "10.71.0.9".parse().unwrap());
    lab.ping_ok(&c20, "10.72.0.9".parse().unwrap());
    // ten's container asks for twenty's address directly on its link: the
    // request leaves on VLAN 10 only, where nobody has that address.
    in_ns_ok(
        &c10.ns,
        &["ip", "route", "add", "10.72.0.9/32", "dev", &c10.ifname],
    );
    lab.ping_fails(&c10, "10.72.0.9".parse().unwrap(), &[]);

    let stats = lab.stats("t");
    let log = responder.finish();
    let lines: Vec<&str> = log.lines().collect();
    let (mac10, mac20) = (c10.mac().to_string(), c20.mac().to_string());
    let seen = |needle: &[&str]| lines.iter().any(|l| needle.iter().all(|n| l.contains(n)));
    for (want, what) in [
        (
            vec!["vid=10 ", &mac10, "who-has=10.71.0.9 answered"],
            "ARP for 10.71.0.9 on VLAN 10",
        ),
        (
            vec!["vid=10 ", &mac10, "icmp-echo dst=10.71.0.9 answered"],
            "ping of 10.71.0.9 on VLAN 10",
        ),
        (
            vec!["vid=20 ", &mac20, "who-has=10.72.0.9 answered"],
            "ARP for 10.72.0.9 on VLAN 20",
        ),
        (
            vec!["vid=20 ", &mac20, "icmp-echo dst=10.72.0.9 answered"],
            "ping of 10.72.0.9 on VLAN 20",
        ),
        (
            vec!["vid=10 ", &mac10, "who-has=10.72.0.9 ignored"],
            "ARP for 10.72.0.9 on VLAN 10",
        ),
    ] {
        assert!(
            seen(&want),
            "the far host did not see the {what}:\n{log}\n{stats:?}"
        );
    }
    for line in &lines {
        assert!(
            !line.contains("vid=none"),
            "the trunk sent an untagged frame: {line}\n{log}"
        );
        let src_ok = (line.contains("vid=10 ") && line.contains(&mac10))
            || (line.contains("vid=20 ") && line.contains(&mac20));
        assert!(src_ok, "a frame left on the wrong VLAN: {line}\n{log}");
    }

    // Tagged replies were read as tagged: nothing dropped as untagged, nothing
    // at all in fact, and the far host is learned in both networks on `t`.
    assert_eq!(
        drops(&stats, "untagged-on-trunk"),
        0,
        "tagged replies were taken for untagged ones: {stats:?}"
    );
    assert!(stats.drops.values().all(|&n| n == 0), "{stats:?}");
    assert!(stats.rx_packets >= 6 && stats.tx_packets >= 6, "{stats:?}");
    let far: MacAddr = FAR_MAC.parse().unwrap();
    for net in ["ten", "twenty"] {
        let fdb = lab.fdb(Some(net));
        assert!(
            fdb.iter().any(|e| e.mac == far && e.port == "t"),
            "{FAR_MAC} is not learned on t in {net}: {fdb:#?}"
        );
    }

    // The far side sends a VLAN the trunk does not carry, then an untagged
    // frame: each is dropped once, for its own reason.
    send_frame(&switch2, &script, &peer, FAR_MAC, "30", "vid thirty");
    let stats = wait_drops(&lab, "t", "vlan-not-allowed", 1);
    assert_eq!(drops(&stats, "vlan-not-allowed"), 1, "{stats:?}");
    assert_eq!(drops(&stats, "untagged-on-trunk"), 0, "{stats:?}");
    send_frame(&switch2, &script, &peer, FAR_MAC, "none", "untagged");
    let stats = wait_drops(&lab, "t", "untagged-on-trunk", 1);
    assert_eq!(drops(&stats, "untagged-on-trunk"), 1, "{stats:?}");
    assert_eq!(drops(&stats, "vlan-not-allowed"), 1, "{stats:?}");
}

#[test]
fn tagged_frame_from_a_veth_container_is_dropped_on_its_access_port() {
    if !require(&["python3"]) {
        return;
    }
    let mut lab = Lab::new();
    lab.ctl_ok(&[
        "net",
        "create",
        "ten",
        "--vlan",
        "10",
        "--subnet",
        "10.73.0.0/24",
    ]);
    lab.ctl_ok(&[
        "net",
        "create",
        "twenty",
        "--vlan",
        "20",
        "--subnet",
        "10.74.0.0/24",
    ]);
    let sender = lab.veth("va", "ten", "10.73.0.5/24");
    let same_net = lab.tap("c10", "ten", "10.73.0.2/24", &[]);
    let other_net = lab.tap("c20", "twenty", "10.74.0.2/24", &[]);
    lab.wait_ports_up(Duration::from_secs(10));

    let script = write_script(lab.dir());
    let listeners: Vec<(PyProcess, &str)> = [(&same_net, "c10"), (&other_net, "c20")]
        .into_iter()
        .map(|(c, tag)| {
            let p = PyProcess::start(&c.ns, &script, lab.dir(), tag, "listen", &[&c.ifname]);
            (p, tag)
        })
        .collect();

    let src = sender.mac().to_string();
    let before = lab.stats("va");
    // Tagged with its own network's VLAN id, and with the other network's.
    send_frame(&sender.ns, &script, "eth0", &src, "10", "hop ten");
    send_frame(&sender.ns, &script, "eth0", &src, "20", "hop twenty");
    let stats = wait_drops(
        &lab,
        "va",
        "tagged-on-access-port",
        drops(&before, "tagged-on-access-port") + 2,
    );
    assert_eq!(
        drops(&stats, "tagged-on-access-port") - drops(&before, "tagged-on-access-port"),
        2,
        "both tagged frames should be dropped on the access port: {stats:?}"
    );
    // Control: an untagged frame from the same container is switched, so the
    // listener would have seen the tagged ones had they passed.
    send_frame(&sender.ns, &script, "eth0", &src, "none", "plain frame");
    let deadline = Instant::now() + Duration::from_secs(5);
    let plain_seen = |log: &std::path::Path| {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .contains("payload=plain frame")
    };
    while !plain_seen(&listeners[0].0.log) && Instant::now() < deadline {
        sleep(Duration::from_millis(50));
    }

    for (listener, tag) in listeners {
        let log = listener.finish();
        assert!(
            !log.contains("payload=hop"),
            "{tag} received a tagged frame sent on access port va:\n{log}"
        );
        if tag == "c10" {
            assert!(
                log.lines()
                    .any(|l| l.contains("vid=none") && l.contains("payload=plain frame")),
                "{tag} did not receive the untagged control frame:\n{log}"
            );
        } else {
            assert!(
                !log.contains("payload=plain frame"),
                "{tag} on another network received va's frame:\n{log}"
            );
        }
    }
    let stats = lab.stats("va");
    assert_eq!(
        drops(&stats, "tagged-on-access-port") - drops(&before, "tagged-on-access-port"),
        2,
        "{stats:?}"
    );
    assert_eq!(stats.rx_packets - before.rx_packets, 3, "{stats:?}");
}
