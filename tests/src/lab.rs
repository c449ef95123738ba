//! A lab: one [`Daemon`] plus the containers attached to it.
//!
//! A container is a network namespace made by the test, attached to the switch
//! either as a TAP port that yardd creates inside it (`yardctl port add --tap
//! --netns`), or through a veth pair whose host end yardd reads with AF_PACKET
//! (`yardctl port add --iface`). IPv6 is off inside the containers so the only
//! frames are the ones the test sends. All traffic stays between the lab's own
//! namespaces; every generator is bounded in count and time.
//!
//! [`Lab`] drops its daemon before its namespaces and veths, so yardd lets go of
//! the TAPs before the namespaces go away.

use std::net::Ipv4Addr;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::process::{Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use yard_ctl::api::{FdbEntry, PortStats};
use yard_ctl::{Ipv4Cidr, MacAddr};

use crate::cmd::{describe, have, in_ns, output, run_ok, stdout, timed};
use crate::daemon::Daemon;
use crate::netns::{Netns, Veth};

/// The message a lab test prints when it cannot run here.
pub const SKIP_NOT_ROOT: &str = "skipped: needs root (CI runs as root)";

/// Checks that a lab test can run: root, `ip`, and the given `tools` on PATH.
/// Returns `false` after printing why when it cannot. Under `CI=true` a lab
/// test must not skip silently, so this panics instead.
pub fn require(tools: &[&str]) -> bool {
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push(SKIP_NOT_ROOT.to_string());
    }
    for tool in std::iter::once(&"ip").chain(tools) {
        if !have(tool) {
            missing.push(format!("skipped: `{tool}` is not installed"));
        }
    }
    if missing.is_empty() {
        return true;
    }
    let why = missing.join("; ");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("lab test cannot run under CI=true: {why}");
    }
    println!("{why}");
    false
}

/// Adds a TAP port in namespace `ns` to `daemon`'s switch: `yardctl port add
/// PORT --net NET --tap --netns NS --ip CIDR [extra...]`.
pub fn add_tap(
    daemon: &Daemon,
    ns: String,
    port: &str,
    net: &str,
    cidr: &str,
    extra: &[&str],
) -> Container {
    let mut args = vec![
        "port", "add", port, "--net", net, "--tap", "--netns", &ns, "--ip", cidr,
    ];
    args.extend_from_slice(extra);
    daemon.ctl_ok(&args);
    let ifname = extra
        .iter()
        .position(|a| *a == "--ifname")
        .map(|i| extra[i + 1].to_string())
        .unwrap_or_else(|| "eth0".into());
    Container {
        port: port.into(),
        ns,
        ifname,
        ip: addr_of(cidr),
    }
}

/// Adds a veth port to `daemon`'s switch: a new pair whose peer end goes
/// into namespace `ns` as `eth0` with address `cidr`, and whose other end
/// stays where yardd runs (`daemon_ns`, or the test's own namespace when
/// `None`), up, and is attached with `yardctl port add PORT --net NET
/// --iface <end>`. Both ends take `mtu` first when given. Offloads stay at
/// the kernel's defaults (TSO and checksum offload on). Returns the pair's
/// guard with the container.
pub fn add_veth(
    daemon: &Daemon,
    daemon_ns: Option<&str>,
    ns: String,
    port: &str,
    net: &str,
    cidr: &str,
    mtu: Option<u32>,
) -> (Veth, Container) {
    let veth = Veth::new();
    let (host, peer) = (veth.host().to_string(), veth.peer().to_string());
    if let Some(mtu) = mtu {
        let mtu = mtu.to_string();
        run_ok(&["ip", "link", "set", "dev", &host, "mtu", &mtu]);
        run_ok(&["ip", "link", "set", "dev", &peer, "mtu", &mtu]);
    }
    run_ok(&["ip", "link", "set", &peer, "netns", &ns]);
    run_ok(&["ip", "-n", &ns, "link", "set", &peer, "name", "eth0"]);
    run_ok(&["ip", "-n", &ns, "addr", "add", cidr, "dev", "eth0"]);
    run_ok(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
    // The host end carries only the container's frames: no host IPv6 chatter.
    let no_ipv6 = format!("net.ipv6.conf.{host}.disable_ipv6=1");
    match daemon_ns {
        Some(daemon_ns) => {
            run_ok(&["ip", "link", "set", &host, "netns", daemon_ns]);
            crate::cmd::in_ns_ok(daemon_ns, &["sysctl", "-qw", &no_ipv6]);
            run_ok(&["ip", "-n", daemon_ns, "link", "set", &host, "up"]);
        }
        None => {
            run_ok(&["sysctl", "-qw", &no_ipv6]);
            run_ok(&["ip", "link", "set", &host, "up"]);
        }
    }
    daemon.ctl_ok(&["port", "add", port, "--net", net, "--iface", &host]);
    let container = Container {
        port: port.into(),
        ns,
        ifname: "eth0".into(),
        ip: addr_of(cidr),
    };
    (veth, container)
}

/// A namespace attached to the switch, as a test sees it.
#[derive(Debug, Clone)]
pub struct Container {
    /// The switch port's name.
    pub port: String,
    /// The network namespace's name.
    pub ns: String,
    /// The interface inside the namespace.
    pub ifname: String,
    /// Its IPv4 address.
    pub ip: Ipv4Addr,
}

impl Container {
    /// Runs `args` inside the container.
    pub fn exec(&self, args: &[&str]) -> Output {
        in_ns(&self.ns, args)
    }

    /// The MAC address of the container's interface, read inside it.
    pub fn mac(&self) -> MacAddr {
        let out = crate::cmd::in_ns_ok(&self.ns, &["ip", "-j", "link", "show", &self.ifname]);
        let links: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j output");
        links[0]["address"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no MAC in `ip -j link show`: {links}"))
    }

    /// The MTU of the container's interface, read inside it.
    pub fn mtu(&self) -> u64 {
        let out = crate::cmd::in_ns_ok(&self.ns, &["ip", "-j", "link", "show", &self.ifname]);
        let links: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j output");
        links[0]["mtu"]
            .as_u64()
            .unwrap_or_else(|| panic!("no MTU in `ip -j link show`: {links}"))
    }
}

/// A daemon with the namespaces and veths a test made for it.
#[derive(Debug)]
pub struct Lab {
    /// The daemon. Declared first: dropped before the namespaces.
    pub daemon: Daemon,
    namespaces: Vec<Netns>,
    veths: Vec<Veth>,
}

impl Deref for Lab {
    type Target = Daemon;
    fn deref(&self) -> &Daemon {
        &self.daemon
    }
}

impl DerefMut for Lab {
    fn deref_mut(&mut self) -> &mut Daemon {
        &mut self.daemon
    }
}

/// The address part of `a.b.c.d/len`.
pub fn addr_of(cidr: &str) -> Ipv4Addr {
    cidr.parse::<Ipv4Cidr>()
        .unwrap_or_else(|e| panic!("{e}"))
        .addr
}

impl Lab {
    /// Starts a daemon on a fresh state directory.
    pub fn new() -> Lab {
        Lab::with_args(&[])
    }

    /// Like [`Lab::new`], with extra yardd arguments (see
    /// [`Daemon::start_new_with`]).
    pub fn with_args(args: &[&str]) -> Lab {
        Lab {
            daemon: Daemon::start_new_with(args),
            namespaces: Vec::new(),
            veths: Vec::new(),
        }
    }

    /// Creates a namespace owned by the lab (IPv6 off) and returns its name.
    pub fn netns(&mut self) -> String {
        let ns = Netns::new();
        ns.disable_ipv6();
        let name = ns.name().to_string();
        self.namespaces.push(ns);
        name
    }

    /// Names of the namespaces this lab made.
    pub fn namespaces(&self) -> Vec<String> {
        self.namespaces
            .iter()
            .map(|n| n.name().to_string())
            .collect()
    }

    /// A container attached as a TAP port: `yardctl port add PORT --net NET
    /// --tap --netns <new ns> --ip CIDR [extra...]`.
    pub fn tap(&mut self, port: &str, net: &str, cidr: &str, extra: &[&str]) -> Container {
        let ns = self.netns();
        add_tap(&self.daemon, ns, port, net, cidr, extra)
    }

    /// A container attached through a veth pair: the peer end is moved into a
    /// new namespace as `eth0` with address `cidr`; the host end is brought up
    /// and attached with `yardctl port add PORT --net NET --iface <host end>`.
    /// Offloads stay at the kernel's defaults (TSO and checksum offload on).
    pub fn veth(&mut self, port: &str, net: &str, cidr: &str) -> Container {
        self.veth_with_mtu(port, net, cidr, None)
    }

    /// Like [`Lab::veth`], with both ends' MTU set to `mtu` first (a
    /// container on a jumbo network).
    pub fn veth_with_mtu(
        &mut self,
        port: &str,
        net: &str,
        cidr: &str,
        mtu: Option<u32>,
    ) -> Container {
        let ns = self.netns();
        let (veth, container) = add_veth(&self.daemon, None, ns, port, net, cidr, mtu);
        self.veths.push(veth);
        container
    }

    /// Runs ping from `from` to `to` with extra arguments, bounded: at most
    /// `count` echo requests, at most `deadline` seconds, 1 s per reply.
    pub fn ping(
        &self,
        from: &Container,
        to: Ipv4Addr,
        count: u32,
        deadline: u32,
        extra: &[&str],
    ) -> Output {
        let (count, deadline, to) = (count.to_string(), deadline.to_string(), to.to_string());
        let mut args = vec![
            "ping", "-n", "-q", "-c", &count, "-W", "1", "-w", &deadline, "-i", "0.2",
        ];
        args.extend_from_slice(extra);
        args.push(&to);
        from.exec(&args)
    }

    /// Asserts `from` gets echo replies from `to` (2 replies within 10 s).
    pub fn ping_ok(&self, from: &Container, to: Ipv4Addr) {
        self.ping_ok_with(from, to, &[]);
    }

    /// Like [`Lab::ping_ok`] with extra ping arguments (e.g. `-s 8972 -M do`).
    pub fn ping_ok_with(&self, from: &Container, to: Ipv4Addr, extra: &[&str]) {
        let out = self.ping(from, to, 2, 10, extra);
        if !out.status.success() {
            panic!(
                "{} ({}) could not ping {to}:\n{}\n{}\n{}",
                from.port,
                from.ns,
                describe(&format!("ip netns exec {} ping ... {to}", from.ns), &out),
                self.stats_text(),
                self.log_tail()
            );
        }
    }

    /// Asserts `from` gets no echo reply at all from `to` (3 requests, 4 s).
    /// Ping must exit 1 ("no reply"), not 2 (a local error such as no route),
    /// so the assertion cannot pass because the test itself is broken.
    pub fn ping_fails(&self, from: &Container, to: Ipv4Addr, extra: &[&str]) {
        let out = self.ping(from, to, 3, 4, extra);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{} ({}) was expected to get no reply from {to} (ping exit 1):\n{}\n{}",
            from.port,
            from.ns,
            describe(&format!("ip netns exec {} ping ... {to}", from.ns), &out),
            self.stats_text()
        );
    }

    /// `yardctl --json port stats` for every port.
    pub fn all_stats(&self) -> Vec<PortStats> {
        self.ctl_parse(&["port", "stats"])
    }

    /// `yardctl --json port stats NAME`.
    pub fn stats(&self, port: &str) -> PortStats {
        let mut all: Vec<PortStats> = self.ctl_parse(&["port", "stats", port]);
        assert_eq!(all.len(), 1, "port stats {port} returned {all:?}");
        all.remove(0)
    }

    /// `yardctl port stats` as text, for failure messages.
    pub fn stats_text(&self) -> String {
        let out = self.ctl(&["port", "stats"]);
        format!("--- yardctl port stats ---\n{}", stdout(&out).trim_end())
    }

    /// `yardctl --json fdb show [--net NET]`.
    pub fn fdb(&self, net: Option<&str>) -> Vec<FdbEntry> {
        match net {
            Some(net) => self.ctl_parse(&["fdb", "show", "--net", net]),
            None => self.ctl_parse(&["fdb", "show"]),
        }
    }

    /// Sends `file` from `from` to `to` over TCP with socat and waits until the
    /// receiver has written all of it to `out` (bounded by `secs`).
    pub fn tcp_transfer(
        &self,
        from: &Container,
        to: &Container,
        file: &Path,
        out: &Path,
        port: u16,
        secs: u32,
    ) {
        if let Err(failure) = socat_transfer(from, to, file, out, port, secs) {
            panic!("{failure}\n{}\n{}", self.stats_text(), self.log_tail());
        }
    }

    /// Polls `yardctl port ls` until every port is `up` (bounded by `within`).
    pub fn wait_ports_up(&self, within: Duration) -> serde_json::Value {
        let deadline = Instant::now() + within;
        loop {
            let ports = self.ctl_json(&["port", "ls"]);
            let all_up = ports
                .as_array()
                .is_some_and(|a| a.iter().all(|p| port_is_up(&p["state"])));
            if all_up {
                return ports;
            }
            if Instant::now() >= deadline {
                panic!(
                    "ports not all up after {within:?}:\n{ports:#}\n{}",
                    self.log_tail()
                );
            }
            sleep(Duration::from_millis(200));
        }
    }
}

impl Default for Lab {
    fn default() -> Self {
        Lab::new()
    }
}

/// Whether a port's (uplink's, published port's) `state` field says it is
/// up: `"up"`; a `"down"` one has its `reason` beside it.
pub fn port_is_up(state: &serde_json::Value) -> bool {
    state == "up"
}

/// Waits (at most 10 s) until something listens on TCP `port` inside `ns`.
pub fn wait_listening(ns: &str, port: u16) {
    let filter = format!("sport = :{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = in_ns(ns, &["ss", "-Hltn", &filter]);
        if out.status.success() && !stdout(&out).trim().is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "nothing listens on port {port} in {ns} after 10 s"
        );
        sleep(Duration::from_millis(50));
    }
}

/// Sends `file` from `from` to `to` over TCP with socat (both ends bounded
/// by `secs`) and waits until the receiver has written all of it to `out`.
/// On failure, what both sides printed.
pub fn socat_transfer(
    from: &Container,
    to: &Container,
    file: &Path,
    out: &Path,
    port: u16,
    secs: u32,
) -> Result<(), String> {
    let listen = format!("TCP-LISTEN:{port},reuseaddr");
    let sink = format!("OPEN:{},creat,trunc", out.display());
    let receiver = timed(secs, "ip")
        .args(["netns", "exec", &to.ns, "socat", "-u", &listen, &sink])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the socat receiver");
    wait_listening(&to.ns, port);
    let source = format!("FILE:{}", file.display());
    let target = format!("TCP:{}:{port}", to.ip);
    let sent = output(
        timed(secs, "ip").args(["netns", "exec", &from.ns, "socat", "-u", &source, &target]),
    );
    let received = receiver.wait_with_output().expect("wait for the receiver");
    if sent.status.success() && received.status.success() {
        return Ok(());
    }
    Err(format!(
        "TCP transfer {} -> {} failed:\n{}\n{}",
        from.port,
        to.port,
        describe("socat sender", &sent),
        describe("socat receiver", &received),
    ))
}

/// The sha256 of a file, via `sha256sum`.
pub fn sha256(path: &Path) -> String {
    let out = run_ok(&["sha256sum", &path.to_string_lossy()]);
    stdout(&out)
        .split_whitespace()
        .next()
        .expect("sha256sum output")
        .to_string()
}
