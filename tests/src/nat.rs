//! Helpers for the L3 gateway labs: an "outside" namespace behind
//! yardd's uplink, background servers that report who connected to them, and
//! bounded socat/ping clients.
//!
//! The shape every NAT lab shares, all inside namespaces the test made:
//!
//! ```text
//!  outside ns            host ns (yardd)                  container ns
//!  eth0 10.1.0.1/24 ── veth ── uplink up0 10.1.0.2/24     c1 172.31.0.2/16
//!                              network web 172.31.0.0/16 ─ gateway 172.31.0.1
//! ```
//!
//! The veth's host end carries no address: yardd owns it through AF_PACKET and
//! answers ARP for 10.1.0.2 itself. Servers run under `timeout(1)` and are
//! stopped by the pid the harness spawned ([`Background`]'s `Drop`), never by
//! name. Every client is bounded in time.

use std::fs::File;
use std::io::Write;
use std::net::Ipv4Addr;
use std::ops::{Deref, DerefMut};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use yard_ctl::api::ConntrackEntry;

use crate::cmd::{describe, end_child, in_ns, output, poll, run_ok, stdout, timed};
use crate::lab::{Container, Lab};
use crate::netns::Veth;

/// The outside host's address (the far end of the uplink veth).
pub const OUTSIDE_IP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
/// The uplink's address, with its prefix.
pub const UPLINK_CIDR: &str = "10.1.0.2/24";
/// The uplink's address.
pub const UPLINK_IP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
/// The `web` network's subnet.
pub const WEB_SUBNET: &str = "172.31.0.0/16";
/// The `web` network's gateway (its first host).
pub const WEB_GATEWAY: Ipv4Addr = Ipv4Addr::new(172, 31, 0, 1);

/// Upper bound on any server a lab starts, in seconds.
pub const SERVER_SECS: u32 = 120;

/// A [`Lab`] with an outside namespace behind the uplink `up0` and the
/// network `web` (172.31.0.0/16, masquerade on).
#[derive(Debug)]
pub struct NatLab {
    /// The lab. Declared first: the daemon and namespaces go before the veth.
    pub lab: Lab,
    /// The outside namespace (10.1.0.1/24 on `eth0`).
    pub outside: String,
    /// The uplink veth's end in yardd's namespace.
    pub uplink_iface: String,
    _uplink: Veth,
}

impl Deref for NatLab {
    type Target = Lab;
    fn deref(&self) -> &Lab {
        &self.lab
    }
}

impl DerefMut for NatLab {
    fn deref_mut(&mut self) -> &mut Lab {
        &mut self.lab
    }
}

impl NatLab {
    /// Checks SNAT from a container the way an engine runs commands in it:
    /// `exec(args)` runs `args` there and returns what it printed. A client
    /// in the container connects to a server outside, which must see the
    /// uplink's address.
    pub fn assert_outside_sees_the_uplink(&self, exec: impl FnOnce(&[&str]) -> String) {
        let _server = tcp_peer_server(&self.outside, None, 7000);
        let outside = OUTSIDE_IP.to_string();
        let seen = exec(&["timeout", "10", "nc", &outside, "7000"]);
        assert!(
            seen.trim().starts_with(&format!("{UPLINK_IP}:")),
            "the outside saw {seen}, not the uplink's address"
        );
    }

    /// Gives the outside namespace `addr` too (a /32 on its link), e.g. the
    /// cloud metadata address 169.254.169.254.
    pub fn add_outside_address(&self, addr: Ipv4Addr) {
        run_ok(&[
            "ip",
            "-n",
            &self.outside,
            "addr",
            "add",
            &format!("{addr}/32"),
            "dev",
            "eth0",
        ]);
    }

    /// The peer a published web server in a container saw when the outside
    /// fetched `url` (busybox httpd's `/cgi-bin/peer`, see
    /// [`crate::image`]), trying for up to 15 s while the server starts;
    /// `None` when it never answered.
    pub fn web_peer_from_outside(&self, url: &str) -> Option<Ipv4Addr> {
        let mut answer = String::new();
        let answered = poll(Duration::from_secs(15), Duration::from_millis(200), || {
            let out = output(timed(15, "ip").args([
                "netns",
                "exec",
                &self.outside,
                "curl",
                "-s",
                "--max-time",
                "5",
                url,
            ]));
            answer = stdout(&out).trim().to_string();
            out.status.success() && !answer.is_empty()
        });
        answered
            .then(|| crate::image::remote_addr(&answer))
            .flatten()
    }

    /// Starts yardd, makes the outside namespace and its veth, adds the uplink
    /// `up0` on the veth's host end and creates the network `web`.
    pub fn new() -> NatLab {
        NatLab::with_args(&[])
    }

    /// Like [`NatLab::new`], with extra yardd arguments (see
    /// [`Daemon::start_new_with`](crate::Daemon::start_new_with)).
    pub fn with_args(args: &[&str]) -> NatLab {
        let mut lab = Lab::with_args(args);
        let outside = lab.netns();
        let veth = Veth::new();
        let (host, peer) = (veth.host().to_string(), veth.peer().to_string());
        run_ok(&["ip", "link", "set", &peer, "netns", &outside]);
        run_ok(&["ip", "-n", &outside, "link", "set", &peer, "name", "eth0"]);
        run_ok(&[
            "ip",
            "-n",
            &outside,
            "addr",
            "add",
            &format!("{OUTSIDE_IP}/24"),
            "dev",
            "eth0",
        ]);
        run_ok(&["ip", "-n", &outside, "link", "set", "eth0", "up"]);
        // The host end is yardd's alone: no IPv6 chatter from the host kernel.
        run_ok(&[
            "sysctl",
            "-qw",
            &format!("net.ipv6.conf.{host}.disable_ipv6=1"),
        ]);
        run_ok(&["ip", "link", "set", &host, "up"]);
        lab.ctl_ok(&[
            "uplink",
            "add",
            "up0",
            "--iface",
            &host,
            "--ip",
            UPLINK_CIDR,
            "--gateway",
            &OUTSIDE_IP.to_string(),
        ]);
        lab.ctl_ok(&["net", "create", "web", "--subnet", WEB_SUBNET]);
        NatLab {
            lab,
            outside,
            uplink_iface: host,
            _uplink: veth,
        }
    }

    /// The outside namespace seen as a container (its `eth0` has
    /// [`OUTSIDE_IP`]), for the transfer helpers.
    pub fn outside_container(&self) -> Container {
        Container {
            port: "outside".into(),
            ns: self.outside.clone(),
            ifname: "eth0".into(),
            ip: OUTSIDE_IP,
        }
    }

    /// `yardctl --json conntrack ls [filter...]`.
    pub fn conntrack(&self, filter: &[&str]) -> Vec<ConntrackEntry> {
        let mut args = vec!["conntrack", "ls"];
        args.extend_from_slice(filter);
        self.ctl_parse(&args)
    }

    /// What a failure message shows besides the command: conntrack, port
    /// counters, gateway counters and the yardd log.
    pub fn context(&self) -> String {
        let ct = self.ctl(&["conntrack", "ls"]);
        let stats = self.ctl(&["conntrack", "stats"]);
        let ports = self.ctl(&["port", "stats"]);
        // Per-namespace UDP counters: a datagram dropped for a bad checksum
        // shows as InCsumErrors there and nowhere else.
        let mut snmp = String::new();
        for ns in self.namespaces() {
            let out = in_ns(&ns, &["cat", "/proc/net/snmp"]);
            for line in stdout(&out).lines().filter(|l| l.starts_with("Udp:")) {
                snmp.push_str(&format!("{ns}: {line}\n"));
            }
        }
        format!(
            "--- yardctl conntrack ls ---\n{}\n--- yardctl conntrack stats ---\n{}\n\
             --- yardctl port stats ---\n{}\n--- UDP counters per namespace ---\n{}{}",
            stdout(&ct).trim_end(),
            stdout(&stats).trim_end(),
            stdout(&ports).trim_end(),
            snmp,
            self.log_tail()
        )
    }

    /// Panics with `what`, the command's output and [`NatLab::context`].
    pub fn fail(&self, what: &str, line: &str, out: &Output) -> ! {
        panic!("{what}\n{}\n{}", describe(line, out), self.context())
    }

    /// Asserts that ping from `ns` to `to` gets replies (2 within 10 s).
    pub fn ping_ns_ok(&self, ns: &str, to: Ipv4Addr) {
        let out = ping(ns, to, 2, 10, &[]);
        if !out.status.success() {
            self.fail(
                &format!("ping from {ns} to {to} got no reply"),
                &format!("ip netns exec {ns} ping -c 2 {to}"),
                &out,
            );
        }
    }

    /// Asserts that ping from `ns` to `to` gets no reply at all (exit 1, not
    /// 2: a local error such as "no route" would make the check meaningless).
    pub fn ping_ns_fails(&self, ns: &str, to: Ipv4Addr) {
        let out = ping(ns, to, 3, 4, &[]);
        if out.status.code() != Some(1) {
            self.fail(
                &format!("ping from {ns} to {to} was expected to get no reply (exit 1)"),
                &format!("ip netns exec {ns} ping -c 3 {to}"),
                &out,
            );
        }
    }

    /// Asks the peer-reporting TCP server at `ip:port` from `ns` (see
    /// [`tcp_ask`]) and returns its answer; panics with context if there is none.
    pub fn tcp_ask_ok(&self, ns: &str, ip: Ipv4Addr, port: u16, sport: Option<u16>) -> Peer {
        let out = tcp_ask(ns, ip, port, sport);
        self.peer_of("TCP", ns, ip, port, &out)
    }

    /// Like [`NatLab::tcp_ask_ok`] over UDP (see [`udp_ask`]).
    pub fn udp_ask_ok(&self, ns: &str, ip: Ipv4Addr, port: u16, sport: Option<u16>) -> Peer {
        let out = udp_ask(ns, ip, port, sport);
        self.peer_of("UDP", ns, ip, port, &out)
    }

    fn peer_of(&self, proto: &str, ns: &str, ip: Ipv4Addr, port: u16, out: &Output) -> Peer {
        match Peer::parse(&stdout(out)) {
            Some(peer) if out.status.success() => peer,
            _ => self.fail(
                &format!("{proto} request from {ns} to {ip}:{port} got no peer-address answer"),
                &format!("ip netns exec {ns} socat ... {proto}:{ip}:{port}"),
                out,
            ),
        }
    }
}

impl Default for NatLab {
    fn default() -> Self {
        NatLab::new()
    }
}

/// The address and port a server saw its client come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Source address as the server saw it.
    pub addr: Ipv4Addr,
    /// Source port as the server saw it.
    pub port: u16,
}

impl Peer {
    /// Parses the first `ADDR:PORT` line of a peer-reporting server's answer.
    pub fn parse(text: &str) -> Option<Peer> {
        let line = text.lines().find(|l| !l.trim().is_empty())?;
        let (addr, port) = line.trim().rsplit_once(':')?;
        Some(Peer {
            addr: addr.parse().ok()?,
            port: port.parse().ok()?,
        })
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.addr, self.port)
    }
}

/// Runs ping from namespace `ns`: at most `count` requests and `deadline`
/// seconds, 1 s per reply, numeric output.
pub fn ping(ns: &str, to: Ipv4Addr, count: u32, deadline: u32, extra: &[&str]) -> Output {
    let (count, deadline, to) = (count.to_string(), deadline.to_string(), to.to_string());
    let mut args = vec![
        "ping", "-n", "-c", &count, "-W", "1", "-w", &deadline, "-i", "0.2",
    ];
    args.extend_from_slice(extra);
    args.push(&to);
    in_ns(ns, &args)
}

/// A process running in the background inside a namespace, under
/// `timeout(1)`, with stdout and stderr in files. `Drop` stops it by the pid
/// spawned (SIGTERM, which `timeout` passes on; SIGKILL after 5 s).
#[derive(Debug)]
pub struct Background {
    child: Option<Child>,
    what: String,
    out: PathBuf,
    err: PathBuf,
    _dir: TempDir,
}

impl Background {
    /// Spawns `args` in `ns`, bounded by `secs`.
    pub fn spawn(ns: &str, secs: u32, args: &[&str]) -> Background {
        let dir = tempfile::Builder::new()
            .prefix("yard-nat-bg-")
            .tempdir()
            .expect("temp dir for a background process");
        let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
        let mut cmd = timed(secs, "ip");
        cmd.args(["netns", "exec", ns])
            .args(args)
            .stdout(Stdio::from(File::create(&out).expect("stdout file")))
            .stderr(Stdio::from(File::create(&err).expect("stderr file")));
        let what = format!("ip netns exec {ns} {}", args.join(" "));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn `{what}`: {e}"));
        Background {
            child: Some(child),
            what,
            out,
            err,
            _dir: dir,
        }
    }

    /// What it has written to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// What it has written to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// The command line and its output so far, for a failure message.
    pub fn describe(&self) -> String {
        format!(
            "$ {} (background)\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.what,
            self.stdout().trim_end(),
            self.stderr().trim_end()
        )
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Polls (every 100 ms, at most `within`) until `ok(stdout)` holds;
    /// returns whether it did.
    pub fn wait_stdout(&self, within: Duration, ok: impl Fn(&str) -> bool) -> bool {
        poll(within, Duration::from_millis(100), || ok(&self.stdout()))
    }

    /// Like [`Background::wait_stdout`] for stderr.
    pub fn wait_stderr(&self, within: Duration, ok: impl Fn(&str) -> bool) -> bool {
        poll(within, Duration::from_millis(100), || ok(&self.stderr()))
    }

    /// Stops it now (see the type's docs).
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            end_child(child, Duration::from_secs(5));
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What the peer-reporting servers run for each client: print the client's
/// address and port as the server sees them.
const ECHO_PEER: &str = "SYSTEM:echo \"$SOCAT_PEERADDR:$SOCAT_PEERPORT\"";

fn bind_opt(bind: Option<Ipv4Addr>) -> String {
    bind.map(|ip| format!(",bind={ip}")).unwrap_or_default()
}

/// Starts a TCP server on `port` in `ns` (on `bind`, or every address) that
/// answers each connection with the client's `ADDR:PORT` as it sees them,
/// and waits until it listens.
pub fn tcp_peer_server(ns: &str, bind: Option<Ipv4Addr>, port: u16) -> Background {
    let listen = format!("TCP-LISTEN:{port},reuseaddr,fork{}", bind_opt(bind));
    // -t 5: after the client's half-close, give the forked shell time to answer.
    let server = Background::spawn(ns, SERVER_SECS, &["socat", "-t", "5", &listen, ECHO_PEER]);
    crate::lab::wait_listening(ns, port);
    server
}

/// The UDP peer-reporting server: answers each datagram with the sender's
/// `ADDR:PORT`, from the socket the datagram came to. (A small python loop
/// rather than socat's `UDP-RECVFROM,fork`, whose forked answerers proved
/// unreliable under load here.)
const UDP_ECHO_PEER: &str = "import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
while True:
    data, peer = s.recvfrom(65535)
    s.sendto(('%s:%d\\n' % peer).encode(), peer)
";

/// Starts a UDP server on `port` in `ns` (on `bind`, or every address) that
/// answers each datagram with the sender's `ADDR:PORT` as it sees them, and
/// waits until it is bound. Needs `python3`.
pub fn udp_peer_server(ns: &str, bind: Option<Ipv4Addr>, port: u16) -> Background {
    let addr = bind.unwrap_or(Ipv4Addr::UNSPECIFIED).to_string();
    let server = Background::spawn(
        ns,
        SERVER_SECS,
        &["python3", "-c", UDP_ECHO_PEER, &addr, &port.to_string()],
    );
    wait_udp_bound(ns, port);
    server
}

/// Starts a UDP sink on `port` in `ns` that writes every datagram it gets
/// to its stdout, and waits until it is bound.
pub fn udp_sink(ns: &str, port: u16) -> Background {
    let listen = format!("UDP-RECV:{port}");
    let server = Background::spawn(ns, SERVER_SECS, &["socat", "-u", &listen, "STDOUT"]);
    wait_udp_bound(ns, port);
    server
}

/// Waits (at most 10 s) until a UDP socket is bound to `port` inside `ns`.
pub fn wait_udp_bound(ns: &str, port: u16) {
    let filter = format!("sport = :{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = in_ns(ns, &["ss", "-Hlun", &filter]);
        if out.status.success() && !stdout(&out).trim().is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "nothing is bound to UDP port {port} in {ns} after 10 s"
        );
        sleep(Duration::from_millis(50));
    }
}

/// Connects from `ns` to `ip:port` over TCP (from source port `sport` if
/// given), sends nothing, and returns what the server answered (bounded: 15 s).
pub fn tcp_ask(ns: &str, ip: Ipv4Addr, port: u16, sport: Option<u16>) -> Output {
    let sport = sport
        .map(|p| format!(",sourceport={p}"))
        .unwrap_or_default();
    let target = format!("TCP:{ip}:{port},connect-timeout=5{sport}");
    output(timed(15, "ip").args(["netns", "exec", ns, "socat", "-t", "5", "-", &target]))
}

/// How long [`udp_ask`] waits for an answer, in seconds. The answer may
/// wait for ARP on both sides of the gateway and for the server's turn on a
/// loaded machine; the wait ends as soon as it is in.
pub const UDP_ANSWER_SECS: u32 = 10;

/// Sends one datagram from `ns` to `ip:port` (from source port `sport` if
/// given) and returns what came back: the first answer line as soon as it is
/// complete, or what socat reported if it ended first (e.g. "Connection
/// refused" for a port unreachable), within [`UDP_ANSWER_SECS`].
///
/// socat would sit out its whole `-t` wait after an answer (UDP has no end)
/// and then exit 0; it is stopped once the answer's line is in, and the
/// output then carries that exit status 0.
pub fn udp_ask(ns: &str, ip: Ipv4Addr, port: u16, sport: Option<u16>) -> Output {
    let sport = sport
        .map(|p| format!(",sourceport={p}"))
        .unwrap_or_default();
    let target = format!("UDP:{ip}:{port}{sport}");
    let dir = tempfile::Builder::new()
        .prefix("yard-nat-ask-")
        .tempdir()
        .expect("temp dir for a UDP client");
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let wait = UDP_ANSWER_SECS.to_string();
    let mut cmd = timed(UDP_ANSWER_SECS + 5, "ip");
    cmd.args(["netns", "exec", ns, "socat", "-t", &wait, "-", &target])
        .stdin(Stdio::piped())
        .stdout(Stdio::from(File::create(&out).expect("stdout file")))
        .stderr(Stdio::from(File::create(&err).expect("stderr file")));
    let mut child = cmd.spawn().expect("spawn socat");
    {
        let mut stdin = child.stdin.take().expect("piped stdin");
        let _ = stdin.write_all(b"hello\n");
    }
    let read = |path: &PathBuf| std::fs::read(path).unwrap_or_default();
    // Bounded: timeout(1) ends socat after UDP_ANSWER_SECS + 5 s at most.
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => panic!("cannot wait for socat in {ns}: {e}"),
        }
        if read(&out).contains(&b'\n') {
            end_child(child, Duration::from_secs(5));
            break ExitStatus::from_raw(0);
        }
        sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: read(&out),
        stderr: read(&err),
    }
}
