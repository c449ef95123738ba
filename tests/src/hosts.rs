//! Multi-host labs: several "hosts", each a network namespace running its own
//! yardd, joined by a veth underlay, with containers behind each.
//!
//! ```text
//!  container ns ── TAP ── yardd in host ns h1 ── veth ── host ns h2 (yardd) ── TAP ── container ns
//!                         192.168.50.1                   192.168.50.2
//! ```
//!
//! - [`Host`]: a namespace with a yardd started inside it by `ip netns exec NS
//!   yardd --socket ... --state-dir ...`. Its socket, state directory and log
//!   live in a private [`Daemon`] directory (the `Daemon` is never started
//!   itself; it lends its paths, its bounded `yardctl` helpers and its log
//!   printing). `Drop` stops yardd by the pid spawned (SIGTERM, then SIGKILL),
//!   then removes the host's containers and its namespace, and prints the log
//!   when the test is failing. Containers attach as TAPs ([`Host::tap`]) or
//!   through a veth pair whose yardd end lives in the host's namespace
//!   ([`Host::veth`], an AF_PACKET port).
//! - [`connect`]: the underlay, a veth pair between two host namespaces. Host
//!   number `i` has the address `192.168.50.i` on every underlay link, in the
//!   point-to-point form (`ip addr add A peer B/32`), so a full mesh of veths
//!   needs no bridge and no routing daemon. The interface in host `i` toward
//!   host `j` is named `u<j>`. Addresses exist only inside the namespaces.
//! - Free helpers ([`ping`], [`tcp_transfer`], [`context`]) that work on
//!   containers of any host and describe every host's state on failure.
//!
//! Everything stays inside what the test made: its own namespaces, links and
//! processes, every command bounded in time.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::Ipv4Addr;
use std::ops::Deref;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::bins::bins;
use crate::cmd::{describe, end_child, in_ns, poll, run, run_ok, stdout, timed};
use crate::daemon::{default_uplink_none, Daemon, READY_TIMEOUT, STOP_TIMEOUT};
use crate::lab::{add_tap, sha256, socat_transfer, Container};
use crate::netns::{Netns, NetnsEtc, Veth};

/// The first three octets of every underlay address.
pub const UNDERLAY_PREFIX: [u8; 3] = [192, 168, 50];

/// The underlay address of host number `index`: `192.168.50.<index>`.
pub fn underlay_ip(index: u8) -> Ipv4Addr {
    let [a, b, c] = UNDERLAY_PREFIX;
    Ipv4Addr::new(a, b, c, index)
}

/// The underlay interface name in a host toward host number `peer`.
pub fn underlay_ifname(peer: u8) -> String {
    format!("u{peer}")
}

/// A namespace with its own yardd, and the containers attached to it.
#[derive(Debug)]
pub struct Host {
    index: u8,
    child: Option<Child>,
    /// Paths, `yardctl` helpers and log of this host's yardd (never started
    /// by itself; see the module doc). Dropped before the namespaces.
    daemon: Daemon,
    containers: Vec<Netns>,
    /// Underlay veths made by [`connect`] and containers' veths made by
    /// [`Host::veth`]; deleting a namespace removes them anyway, this only
    /// covers a panic before both ends were moved.
    links: Vec<Veth>,
    /// Files bound over the namespace's `/etc` for yardd ([`Host::new_with_etc`]).
    etc: Option<NetnsEtc>,
    ns: Netns,
}

impl Deref for Host {
    type Target = Daemon;
    fn deref(&self) -> &Daemon {
        &self.daemon
    }
}

impl Host {
    /// Creates host number `index` (1..=254): a fresh namespace (IPv6 off,
    /// `lo` up) with yardd running inside it, ready to answer `status`.
    pub fn new(index: u8) -> Host {
        Host::new_with(index, &[])
    }

    /// Like [`Host::new`], with `args` appended to yardd's command line.
    pub fn new_with(index: u8, args: &[&str]) -> Host {
        Host::new_with_etc(index, args, &[])
    }

    /// Like [`Host::new_with`], with `files` (name, content) bound over the
    /// namespace's `/etc` for yardd (e.g. its `resolv.conf`; see
    /// [`NetnsEtc`]), written before yardd starts.
    pub fn new_with_etc(index: u8, args: &[&str], files: &[(&str, &str)]) -> Host {
        assert!(
            (1..=254).contains(&index),
            "host index {index} out of range"
        );
        let ns = Netns::new();
        ns.disable_ipv6();
        let mut host = Host {
            index,
            child: None,
            daemon: Daemon::unstarted_with(args),
            containers: Vec::new(),
            links: Vec::new(),
            etc: None,
            ns,
        };
        if !files.is_empty() {
            host.etc = Some(NetnsEtc::new(host.ns(), files));
        }
        host.start();
        host
    }

    /// This host's number; its underlay address is `192.168.50.<index>`.
    pub fn index(&self) -> u8 {
        self.index
    }

    /// The host namespace's name.
    pub fn ns(&self) -> &str {
        self.ns.name()
    }

    /// The underlay address.
    pub fn ip(&self) -> Ipv4Addr {
        underlay_ip(self.index)
    }

    /// The pid of this host's yardd.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The log file (the one [`Daemon::log_tail`] reads).
    pub fn log_path(&self) -> std::path::PathBuf {
        self.daemon.dir().join("yardd.log")
    }

    fn start(&mut self) {
        let log_path = self.log_path();
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("open the yardd log");
        let _ = writeln!(
            log,
            "=== harness: yardd of host {} in netns {} ===",
            self.index,
            self.ns()
        );
        let err = log.try_clone().expect("clone the log handle");
        let level = std::env::var("YARD_TEST_LOG").unwrap_or_else(|_| "info".into());
        // `ip netns exec` enters the namespace and execs yardd: the pid we
        // get is yardd's own, so stopping it by pid stops the daemon.
        let child = Command::new("ip")
            .args(["netns", "exec", self.ns.name()])
            .arg(&bins().yardd)
            .arg("--socket")
            .arg(self.daemon.socket())
            .arg("--state-dir")
            .arg(self.daemon.state_dir())
            .arg("--log")
            .arg(level)
            .args(default_uplink_none(self.daemon.args()))
            .args(self.daemon.args())
            .env_remove("YARD_SOCKET")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn yardd in {}: {e}", self.ns()));
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                panic!(
                    "yardd of host {} exited during start-up: {status}\n{}",
                    self.index,
                    self.daemon.log_tail()
                );
            }
            let out = self.daemon.ctl(&["status"]);
            if out.status.success() {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "yardd of host {} did not answer `status` within {READY_TIMEOUT:?}\n{}\n{}",
                    self.index,
                    describe("yardctl status", &out),
                    self.daemon.log_tail()
                );
            }
            sleep(Duration::from_millis(100));
        }
    }

    /// Whether this host's yardd is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Stops yardd (SIGTERM, by its pid) and starts it again on the same
    /// state, in the same namespace; waits until it answers `status`.
    pub fn restart(&mut self) {
        self.stop();
        self.start();
    }

    /// Stops yardd by its pid: SIGTERM, then SIGKILL after [`STOP_TIMEOUT`].
    fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            end_child(child, STOP_TIMEOUT);
        }
    }

    /// Creates a namespace owned by this host (IPv6 off) for a container.
    pub fn netns(&mut self) -> String {
        let ns = Netns::new();
        ns.disable_ipv6();
        let name = ns.name().to_string();
        self.containers.push(ns);
        name
    }

    /// A container attached to this host's yardd as a TAP port: `yardctl
    /// port add PORT --net NET --tap --netns <new ns> --ip CIDR [extra...]`.
    pub fn tap(&mut self, port: &str, net: &str, cidr: &str, extra: &[&str]) -> Container {
        let ns = self.netns();
        add_tap(&self.daemon, ns, port, net, cidr, extra)
    }

    /// A container attached to this host's yardd through a veth pair (an
    /// AF_PACKET port): [`crate::lab::add_veth`] with the yardd end in the
    /// host's namespace.
    pub fn veth(&mut self, port: &str, net: &str, cidr: &str) -> Container {
        let ns = self.netns();
        let (veth, container) = crate::lab::add_veth(
            &self.daemon,
            Some(self.ns.name()),
            ns,
            port,
            net,
            cidr,
            None,
        );
        self.links.push(veth);
        container
    }

    /// A tunnel port toward `peer`: `yardctl port add PORT --net NET <kind>
    /// --remote <peer's underlay address> [extra...]`, where `kind` is
    /// `--gre` or `--gre-udp`.
    pub fn tunnel(&self, port: &str, net: &str, kind: &str, peer: &Host, extra: &[&str]) {
        let remote = peer.ip().to_string();
        let mut args = vec!["port", "add", port, "--net", net, kind, "--remote", &remote];
        args.extend_from_slice(extra);
        self.ctl_ok(&args);
    }

    /// Runs `args` inside the host namespace.
    pub fn exec(&self, args: &[&str]) -> Output {
        in_ns(self.ns(), args)
    }

    /// `yardctl --json net inspect NET`'s `overlay_mtu`.
    pub fn overlay_mtu(&self, net: &str) -> Option<u64> {
        let info = self.ctl_json(&["net", "inspect", net]);
        // Tolerate either a single object or a one-element array.
        let info = if info.is_array() {
            info[0].clone()
        } else {
            info
        };
        info["overlay_mtu"].as_u64()
    }

    /// Describes this host for a failure message: port stats and the log tail.
    pub fn describe(&self) -> String {
        let stats = self.ctl(&["port", "stats"]);
        format!(
            "=== host {} (netns {}, yardd pid {:?}) ===\n--- yardctl port stats ---\n{}\n{}",
            self.index,
            self.ns(),
            self.pid(),
            stdout(&stats).trim_end(),
            self.log_tail()
        )
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "=== host {} (netns {}): yardd log follows unless already shown ===",
                self.index,
                self.ns()
            );
        }
        // yardd first, so it lets go of its TAPs before their namespaces go;
        // then the daemon guard (prints the log on panic), containers, links
        // and the host namespace, in field order.
        self.stop();
    }
}

/// Joins hosts `a` and `b` with an underlay veth: `u<b>` in `a` and `u<a>` in
/// `b`, up, each with its host's underlay address and a /32 route to the
/// other (`ip addr add A peer B`).
pub fn connect(a: &mut Host, b: &Host) {
    let veth = link((a.ns(), a.index), (b.ns(), b.index));
    a.links.push(veth);
}

/// Joins namespace `a.0`, host number `a.1`, and `b.0`, number `b.1`, with
/// an underlay veth as [`connect`] does (`u<b>` in `a`, `u<a>` in `b`,
/// point-to-point `192.168.50.<n>` addresses); returns the veth's guard.
pub fn link(a: (&str, u8), b: (&str, u8)) -> Veth {
    let veth = Veth::new();
    let (end_a, end_b) = (veth.host().to_string(), veth.peer().to_string());
    for (end, (ns, index), peer) in [(&end_a, a, b.1), (&end_b, b, a.1)] {
        let ifname = underlay_ifname(peer);
        let (local, remote) = (underlay_ip(index), underlay_ip(peer));
        run_ok(&["ip", "link", "set", end, "netns", ns]);
        run_ok(&["ip", "-n", ns, "link", "set", end, "name", &ifname]);
        run_ok(&[
            "ip",
            "-n",
            ns,
            "addr",
            "add",
            &local.to_string(),
            "peer",
            &format!("{remote}/32"),
            "dev",
            &ifname,
        ]);
        run_ok(&["ip", "-n", ns, "link", "set", &ifname, "up"]);
    }
    veth
}

/// Creates hosts `1..=n` and joins every pair (a full mesh underlay).
pub fn mesh(n: u8) -> Vec<Host> {
    mesh_with(n, &[])
}

/// Like [`mesh`], each yardd started with `args`.
pub fn mesh_with(n: u8, args: &[&str]) -> Vec<Host> {
    let mut hosts: Vec<Host> = (1..=n).map(|i| Host::new_with(i, args)).collect();
    for i in 0..hosts.len() {
        for j in i + 1..hosts.len() {
            let (left, right) = hosts.split_at_mut(j);
            connect(&mut left[i], &right[0]);
        }
    }
    hosts
}

/// Every host's state, for a failure message.
pub fn context(hosts: &[&Host]) -> String {
    hosts
        .iter()
        .map(|h| h.describe())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs ping from `from` to `to`, bounded: at most `count` echo requests,
/// `deadline` seconds in all, 1 s per reply, 0.2 s apart. Not `-q`: the
/// per-packet lines show ICMP errors and duplicates.
pub fn ping(from: &Container, to: Ipv4Addr, count: u32, deadline: u32, extra: &[&str]) -> Output {
    let (count, deadline, to) = (count.to_string(), deadline.to_string(), to.to_string());
    let mut args = vec![
        "ping", "-n", "-c", &count, "-W", "1", "-w", &deadline, "-i", "0.2",
    ];
    args.extend_from_slice(extra);
    args.push(&to);
    from.exec(&args)
}

/// Asserts `from` gets replies from `to` (3 requests, up to 10 s; ping exits
/// 0 once it has one reply, so an early loss while ARP settles is tolerated)
/// and that no reply came twice.
pub fn ping_ok(hosts: &[&Host], from: &Container, to: Ipv4Addr, extra: &[&str]) -> String {
    let out = ping(from, to, 3, 10, extra);
    let text = stdout(&out);
    if !out.status.success() || text.contains("DUP!") {
        panic!(
            "{} ({}) -> {to}: ping failed or saw duplicates:\n{}\n{}",
            from.port,
            from.ns,
            describe(&format!("ip netns exec {} ping {to}", from.ns), &out),
            context(hosts)
        );
    }
    text
}

/// Asserts `from` gets no reply at all from `to` (3 requests, 4 s): ping must
/// exit 1 ("no reply"), not 2 (a local error), so a broken test cannot pass.
pub fn ping_fails(hosts: &[&Host], from: &Container, to: Ipv4Addr) {
    let out = ping(from, to, 3, 4, &[]);
    if out.status.code() != Some(1) {
        panic!(
            "{} ({}) was expected to get no reply from {to} (ping exit 1):\n{}\n{}",
            from.port,
            from.ns,
            describe(&format!("ip netns exec {} ping {to}", from.ns), &out),
            context(hosts)
        );
    }
}

/// Makes a file of `mib` MiB of random bytes.
pub fn random_file(path: &Path, mib: u32) {
    run_ok(&[
        "dd",
        "if=/dev/urandom",
        &format!("of={}", path.display()),
        "bs=1M",
        &format!("count={mib}"),
        "status=none",
    ]);
}

/// Sends `file` from `from` to `to` over TCP with socat (both bounded by
/// `secs`) and waits until the receiver has written all of it to `out`;
/// panics with both sides' output and every host's state if either fails.
pub fn tcp_transfer(
    hosts: &[&Host],
    from: &Container,
    to: &Container,
    file: &Path,
    out: &Path,
    port: u16,
    secs: u32,
) {
    if let Err(failure) = socat_transfer(from, to, file, out, port, secs) {
        panic!("{failure}\n{}", context(hosts));
    }
}

/// Sends a `mib` MiB random file from `from` to `to` and asserts it arrived
/// whole (length and sha256).
pub fn transfer_checked(
    hosts: &[&Host],
    from: &Container,
    to: &Container,
    dir: &Path,
    mib: u32,
    port: u16,
) {
    let source = dir.join(format!("source-{port}.bin"));
    let received = dir.join(format!("received-{port}.bin"));
    random_file(&source, mib);
    let want = sha256(&source);
    tcp_transfer(hosts, from, to, &source, &received, port, 300);
    let len = std::fs::metadata(&received).map(|m| m.len()).unwrap_or(0);
    assert_eq!(
        len,
        u64::from(mib) * 1024 * 1024,
        "{} -> {}: received {len} bytes\n{}",
        from.port,
        to.port,
        context(hosts)
    );
    assert_eq!(
        sha256(&received),
        want,
        "{} -> {}: the data arrived altered",
        from.port,
        to.port
    );
    let _ = std::fs::remove_file(&source);
    let _ = std::fs::remove_file(&received);
}

/// A bounded `tcpdump -w` running in a namespace, stopped by its pid on
/// `Drop` if it has not finished.
#[derive(Debug)]
pub struct Tcpdump {
    child: Option<Child>,
    stderr_path: std::path::PathBuf,
    /// The pcap file it writes.
    pub file: std::path::PathBuf,
}

impl Tcpdump {
    /// Starts `tcpdump -i IFACE -n -U -w FILE [-c COUNT] FILTER` inside `ns`,
    /// stopped after `secs` seconds at the latest, and waits (at most 10 s)
    /// until it listens. `dir` holds the pcap and tcpdump's stderr.
    pub fn start(
        ns: &str,
        iface: &str,
        filter: &str,
        count: Option<u32>,
        secs: u32,
        dir: &Path,
        name: &str,
    ) -> Tcpdump {
        let file = dir.join(format!("{name}.pcap"));
        let stderr_path = dir.join(format!("{name}.tcpdump.err"));
        let err = std::fs::File::create(&stderr_path).expect("create tcpdump's stderr file");
        let mut cmd = timed(secs, "ip");
        // `-Z root`: tcpdump would otherwise drop to its own user before
        // opening the file, which lives in the test's private (0700) dir.
        // `--immediate-mode`: packets the filter took are read at once, not
        // left in a ring block that a stop would discard.
        cmd.args([
            "netns",
            "exec",
            ns,
            "tcpdump",
            "-Z",
            "root",
            "--immediate-mode",
        ])
        .args(["-i", iface, "-n", "-U", "-w"])
        .arg(&file);
        if let Some(count) = count {
            cmd.args(["-c", &count.to_string()]);
        }
        cmd.arg(filter)
            .stdout(Stdio::null())
            .stderr(Stdio::from(err));
        let child = cmd.spawn().expect("spawn tcpdump");
        let mut dump = Tcpdump {
            child: Some(child),
            stderr_path,
            file,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&dump.stderr_path).unwrap_or_default();
            if text.contains("listening on") {
                return dump;
            }
            let exited = dump
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() >= deadline {
                panic!("tcpdump in {ns} on {iface} did not start ({exited:?}):\n{text}");
            }
            sleep(Duration::from_millis(50));
        }
    }

    /// Waits for tcpdump to exit (its count reached, or its time bound) and
    /// returns its stderr.
    pub fn finish(mut self) -> String {
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Waits (at most `within`) until the pcap holds at least `at_least`
    /// frames matching `display_filter` (all frames if `None`), as tshark
    /// reads it; returns whether it did. Ends early when tcpdump has exited
    /// (its count reached, or its time bound): the file is then complete.
    /// Sending is not capturing: a frame that has crossed the interface may
    /// still be on its way into the file, so wait for it before stopping.
    pub fn wait_frames(
        &mut self,
        within: Duration,
        display_filter: Option<&str>,
        at_least: usize,
    ) -> bool {
        let mut enough = false;
        poll(within, Duration::from_millis(200), || {
            let exited = self
                .child
                .as_mut()
                .is_none_or(|c| !matches!(c.try_wait(), Ok(None)));
            enough = pcap_count(&self.file, display_filter) >= at_least;
            enough || exited
        });
        enough
    }

    /// Stops tcpdump (SIGTERM by pid, after a short grace for the last
    /// packets; it flushes the file) and returns its stderr. Not a wait for
    /// frames still on their way: see [`Tcpdump::wait_frames`].
    pub fn stop(mut self) -> String {
        sleep(Duration::from_millis(300));
        self.terminate();
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    fn terminate(&mut self) {
        if let Some(child) = self.child.take() {
            // `timeout` passes the SIGTERM on to tcpdump.
            end_child(child, Duration::from_secs(5));
        }
    }
}

impl Drop for Tcpdump {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// How many frames of a pcap that may still be being written match
/// `display_filter` (all frames if `None`); 0 while tshark cannot read it.
/// A record cut short at the end of the file is not counted.
pub fn pcap_count(file: &Path, display_filter: Option<&str>) -> usize {
    let file = file.to_string_lossy();
    let mut args = vec!["tshark", "-n", "-r", &file];
    if let Some(filter) = display_filter {
        args.extend(["-Y", filter]);
    }
    args.extend(["-T", "fields", "-e", "frame.number"]);
    let out = run(&args);
    stdout(&out)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

/// `tshark -r FILE [-Y FILTER] -T fields -E separator=; -e F...`: one line
/// per frame, the fields separated by `;` (a field with several values, e.g.
/// outer and inner `ip.src`, lists them comma-separated).
pub fn tshark_fields(file: &Path, display_filter: Option<&str>, fields: &[&str]) -> Vec<String> {
    let file = file.to_string_lossy();
    let mut args = vec!["tshark", "-n", "-r", &file];
    if let Some(filter) = display_filter {
        args.extend(["-Y", filter]);
    }
    args.extend(["-T", "fields", "-E", "separator=;"]);
    for field in fields {
        args.extend(["-e", field]);
    }
    let out = run_ok(&args);
    stdout(&out)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(String::from)
        .collect()
}
