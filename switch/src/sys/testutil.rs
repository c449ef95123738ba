//! Test helpers for the privileged tests of `sys`, `netns` and `netconf`:
//! uniquely named network namespaces and veth pairs that are removed on drop
//! (also when the test panics), `ip` invocations, and frame reads with a deadline.
//!
//! Contract: tests only; names are unique per process and per call
//! (`ys-<pid>-<n>` for namespaces, `ysv<pid%10000><n>…` for interfaces), so tests
//! may run in parallel. Shelling out to `ip` is fine here; the daemon may not.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::sys::netconf::{configure_link, LinkConfig};
use crate::sys::netns::{run_in_netns, NetnsRef};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A number unique within this test process.
pub(crate) fn unique() -> usize {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// Whether the tests run with root's privileges (the privileged tests skip, and
/// say so, otherwise).
pub(crate) fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Runs `ip ARGS`, panicking with its stderr on failure; returns stdout.
pub(crate) fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("ip output is UTF-8")
}

/// `ip -n NS -j ARGS`, parsed as JSON.
pub(crate) fn ip_json(ns: &str, args: &[&str]) -> serde_json::Value {
    let mut full = vec!["-n", ns, "-j"];
    full.extend_from_slice(args);
    serde_json::from_str(&ip(&full)).expect("ip -j prints JSON")
}

/// A network namespace created with `ip netns add` and deleted on drop.
pub(crate) struct Netns {
    name: String,
}

impl Netns {
    /// Creates `ys-<pid>-<n>`.
    pub(crate) fn new() -> Netns {
        let name = format!("ys-{}-{}", std::process::id(), unique());
        ip(&["netns", "add", &name]);
        Netns { name }
    }

    /// The namespace's name under /run/netns.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The namespace as a [`NetnsRef`].
    pub(crate) fn netns_ref(&self) -> NetnsRef {
        NetnsRef::parse(&self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A veth pair created in the current namespace and deleted on drop (deleting
/// one end deletes both; if the peer moved into a namespace that is gone
/// already, the pair is gone with it and the delete fails harmlessly).
pub(crate) struct Veth {
    /// The end that stays where it was created.
    pub(crate) host: String,
    /// The other end.
    pub(crate) peer: String,
}

impl Veth {
    /// Creates `ysv<pid%10000><n>a` / `…b`.
    pub(crate) fn new() -> Veth {
        let base = format!("ysv{}{}", std::process::id() % 10000, unique());
        let (host, peer) = (format!("{base}a"), format!("{base}b"));
        assert!(host.len() <= 15, "{host} too long for an interface name");
        ip(&["link", "add", &host, "type", "veth", "peer", "name", &peer]);
        Veth { host, peer }
    }

    /// Creates a pair, moves its peer end into `ns` and sets both ends up.
    pub(crate) fn into_netns(ns: &Netns) -> Veth {
        let veth = Veth::new();
        ip(&["link", "set", &veth.peer, "netns", ns.name()]);
        ip(&["link", "set", &veth.host, "up"]);
        ip(&["-n", ns.name(), "link", "set", &veth.peer, "up"]);
        veth
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// A TAP `name` with 10.79.`subnet`.2/24 in a fresh namespace, and a
/// neighbour entry for .1 so the namespace sends to it without ARP.
pub(crate) fn tap_in_netns(name: &'static str, subnet: u8) -> (Netns, OwnedFd) {
    let ns = Netns::new();
    let tap = run_in_netns(&ns.netns_ref(), move || {
        let tap = super::open_tap(name).unwrap();
        configure_link(&LinkConfig {
            ifname: name,
            mac: None,
            mtu: None,
            txqlen: None,
            addr: Some((std::net::Ipv4Addr::new(10, 79, subnet, 2), 24)),
            default_gateway: None,
        })
        .unwrap();
        tap
    })
    .unwrap();
    let peer = format!("10.79.{subnet}.1");
    ip(&[
        "-n",
        ns.name(),
        "neigh",
        "add",
        &peer,
        "lladdr",
        "02:00:00:00:00:99",
        "dev",
        name,
    ]);
    (ns, tap)
}

/// Sends `count` datagrams of 20 bytes each (`[k; 20]` for k = 0, 1, …)
/// from 10.79.`subnet`.2 to 10.79.`subnet`.1 port 9 inside `ns`, the
/// namespace of [`tap_in_netns`]: each leaves as one frame on its TAP.
pub(crate) fn udp_out_of_tap(ns: &Netns, subnet: u8, count: u8) {
    run_in_netns(&ns.netns_ref(), move || {
        let socket = std::net::UdpSocket::bind(format!("10.79.{subnet}.2:0")).unwrap();
        for k in 0..count {
            socket
                .send_to(&[k; 20], format!("10.79.{subnet}.1:9"))
                .unwrap();
        }
    })
    .unwrap()
}

/// Reads frames from a non-blocking `fd` until `want` accepts one (returning it)
/// or `timeout` passes (returning `None`). Frames `want` rejects are discarded.
pub(crate) fn read_until(
    fd: BorrowedFd<'_>,
    timeout: Duration,
    mut want: impl FnMut(&[u8]) -> bool,
) -> Option<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 65536 + 64];
    loop {
        match super::read_fd(fd, &mut buf) {
            Ok(n) if want(&buf[..n]) => return Some(buf[..n].to_vec()),
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// An Ethernet frame of the local-experimental EtherType 0x88b5, broadcast,
/// carrying `marker`, padded to the 60-byte minimum, with a zeroed vnet header
/// in front.
pub(crate) fn test_frame_with_vnet_hdr(src: [u8; 6], marker: &[u8]) -> Vec<u8> {
    let mut frame = vec![0u8; super::VNET_HDR_LEN];
    frame.extend_from_slice(&[0xff; 6]);
    frame.extend_from_slice(&src);
    frame.extend_from_slice(&[0x88, 0xb5]);
    frame.extend_from_slice(marker);
    while frame.len() < super::VNET_HDR_LEN + 60 {
        frame.push(0);
    }
    frame
}

/// Keeps the calling thread on its CPU, never blocking, for `time`.
pub(crate) fn spin_for(time: Duration) {
    let start = Instant::now();
    let mut x = 0u64;
    while start.elapsed() < time {
        x = x.wrapping_mul(31).wrapping_add(7);
    }
    std::hint::black_box(x);
}
