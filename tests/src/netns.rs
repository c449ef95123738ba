//! Network namespace and veth guards with short unique names.
//!
//! Names are `yt<pid>-<n>` for namespaces and `yh<pid>-<n>` / `yp<pid>-<n>` for
//! the two ends of a veth pair: unique per test process, at most 15 bytes (the
//! kernel's interface name limit), and recognisable, so [`sweep_stale`] can
//! remove what a killed earlier run left behind without touching anything else.
//! `Drop` removes the object; it never panics.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

use crate::cmd::{run, run_ok};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh `<prefix><pid>-<n>` name for this process.
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!("{prefix}{}-{n}", std::process::id());
    assert!(name.len() <= 15, "name {name} is longer than IFNAMSIZ-1");
    name
}

/// The pid in a harness-made name `yX<pid>-<n>`, if `name` is one.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name
        .strip_prefix("yt")
        .or_else(|| name.strip_prefix("yh"))
        .or_else(|| name.strip_prefix("yp"))?;
    let (pid, n) = rest.split_once('-')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

fn is_stale(name: &str) -> bool {
    owner_pid(name).is_some_and(|pid| {
        pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
    })
}

/// Removes namespaces and veths that an earlier, killed test process made.
/// Only names of the harness's own form whose process is gone are touched.
pub fn sweep_stale() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let list = run(&["ip", "netns", "list"]);
        for line in String::from_utf8_lossy(&list.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            if is_stale(name) {
                let _ = run(&["ip", "netns", "del", name]);
            }
        }
        let links = run(&["ip", "-o", "link", "show", "type", "veth"]);
        for line in String::from_utf8_lossy(&links.stdout).lines() {
            // "12: yh123-4@if11: <...>"
            let name = line
                .split(": ")
                .nth(1)
                .and_then(|n| n.split('@').next())
                .unwrap_or("");
            if is_stale(name) {
                let _ = run(&["ip", "link", "del", name]);
            }
        }
    });
}

/// A network namespace under /run/netns, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a uniquely named namespace with `lo` up.
    pub fn new() -> Netns {
        sweep_stale();
        let name = unique_name("yt");
        run_ok(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        run_ok(&["ip", "-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// The namespace name (as `ip netns` and `yardctl --netns` take it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Turns IPv6 off for every interface in the namespace, so the only
    /// traffic is what the test sends (no DAD, router or MLD chatter).
    pub fn disable_ipv6(&self) {
        run_ok(&[
            "ip",
            "netns",
            "exec",
            &self.name,
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ]);
    }
}

impl Default for Netns {
    fn default() -> Self {
        Netns::new()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A veth pair in the host namespace, deleted on drop (deleting either end
/// removes both, wherever the peer has been moved).
#[derive(Debug)]
pub struct Veth {
    host: String,
    peer: String,
}

impl Veth {
    /// Creates a pair `yh<pid>-<n>` (host end) / `yp<pid>-<n>` (peer end).
    pub fn new() -> Veth {
        sweep_stale();
        let host = unique_name("yh");
        let peer = format!("yp{}", &host[2..]);
        run_ok(&[
            "ip", "link", "add", &host, "type", "veth", "peer", "name", &peer,
        ]);
        Veth { host, peer }
    }

    /// The end that stays in the host namespace.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The other end's original name (until it is renamed inside a namespace).
    pub fn peer(&self) -> &str {
        &self.peer
    }
}

impl Default for Veth {
    fn default() -> Self {
        Veth::new()
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        // The host end may already be gone (its peer's namespace was deleted).
        let _ = Command::new("ip")
            .args(["link", "del", &self.host])
            .output();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_in_ifnamsiz_and_parse_back() {
        let name = unique_name("yh");
        assert!(name.len() <= 15);
        assert_eq!(owner_pid(&name), Some(std::process::id()));
        assert!(!is_stale(&name), "our own names are never stale");
        assert_eq!(owner_pid("yt4194303-77"), Some(4_194_303));
        assert_eq!(owner_pid("eth0"), None);
        assert_eq!(owner_pid("yt12-"), None);
        assert_eq!(owner_pid("ytabc-1"), None);
    }
}

/// Files that `ip netns exec NAME` binds over `/etc/FILE` for what it runs
/// in namespace NAME (iproute2 takes them from `/etc/netns/NAME/FILE`),
/// e.g. a `resolv.conf`. The directory is removed on drop (and
/// `/etc/netns` when left empty); its name is the namespace's, which is
/// unique to the test.
#[derive(Debug)]
pub struct NetnsEtc {
    dir: std::path::PathBuf,
}

impl NetnsEtc {
    /// Writes `files` (name, content) for namespace `ns`.
    pub fn new(ns: &str, files: &[(&str, &str)]) -> NetnsEtc {
        let dir = std::path::Path::new("/etc/netns").join(ns);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let etc = NetnsEtc { dir };
        for (name, content) in files {
            let path = etc.dir.join(name);
            std::fs::write(&path, content)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        }
        etc
    }
}

impl Drop for NetnsEtc {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        // `/etc/netns` itself too, when this made it and nothing else is
        // in it (removing a directory that is not empty fails).
        if let Some(parent) = self.dir.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
}
