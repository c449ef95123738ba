//! Which network namespace a path names, and whether anyone but yardd still
//! holds it.
//!
//! Contract: a [`NetnsIdentity`] is what yardd remembers of the namespace a
//! port was put in: the namespace's own identity (the device and inode of its
//! nsfs file) and, when the user named it as `/proc/PID/ns/net`, that
//! process's start time, because a PID is reused once its process has exited.
//! [`recheck`] says whether a path still names that same namespace, without
//! entering it. [`held_elsewhere`] says whether any process other than yardd
//! is in the namespace or a bind mount (`ip netns add`, a runtime's netns
//! file) pins it — the namespace is alive for someone besides the TAP fd yardd
//! holds, which alone would keep it (and a ghost of the container) alive.
//! Nothing here writes anything; the checks read `/proc` and are meant for
//! the control plane (about a millisecond for a few hundred processes).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::sys::netns::{NetnsError, NetnsRef};

/// The namespace a port was put in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetnsIdentity {
    /// Device of the namespace's nsfs inode.
    pub dev: u64,
    /// The nsfs inode: what `ip netns identify` and `net:[N]` show.
    pub ino: u64,
    /// For a `/proc/PID/ns/net` path: the process it named then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessStamp>,
}

/// A process, told apart from a later one with the same PID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessStamp {
    /// The PID.
    pub pid: u32,
    /// Its start time, in clock ticks after boot (`/proc/PID/stat` field 22).
    pub start_ticks: u64,
}

/// What a path names now, compared with a recorded identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recheck {
    /// The same namespace (and, for `/proc/PID`, the same process).
    Same,
    /// Nothing: the name or the process is gone.
    Gone,
    /// Something else: another namespace under the name, or another process
    /// with the PID.
    Replaced,
}

/// The PID of a `/proc/PID/...` path.
fn proc_pid(path: &Path) -> Option<u32> {
    let mut parts = path.components().skip(1);
    let proc_dir = parts.next()?.as_os_str();
    if proc_dir != "proc" {
        return None;
    }
    parts.next()?.as_os_str().to_str()?.parse().ok()
}

/// The start time of process `pid`, if it exists.
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces:
    // fields are counted after its closing parenthesis (field 3 onward).
    let after = stat.get(stat.rfind(')')? + 1..)?;
    after.split_whitespace().nth(19)?.parse().ok()
}

/// The identity of the namespace `ns` names now.
pub fn identify(ns: &NetnsRef) -> Result<NetnsIdentity, NetnsError> {
    let pid = proc_pid(ns.path());
    let before = pid.and_then(start_ticks);
    let file = ns.open()?;
    let meta = file.metadata().map_err(|source| NetnsError::Open {
        ns: ns.to_string(),
        path: ns.path().to_path_buf(),
        source,
    })?;
    // A process that exited between the two reads leaves no stamp: its
    // namespace is then known by its inode alone.
    let process = match (pid, before) {
        (Some(pid), Some(start)) if start_ticks(pid) == Some(start) => Some(ProcessStamp {
            pid,
            start_ticks: start,
        }),
        _ => None,
    };
    Ok(NetnsIdentity {
        dev: meta.dev(),
        ino: meta.ino(),
        process,
    })
}

/// Whether `ns` still names the namespace `recorded` describes.
pub fn recheck(ns: &NetnsRef, recorded: &NetnsIdentity) -> Recheck {
    if let Some(p) = recorded.process {
        match start_ticks(p.pid) {
            None => return Recheck::Gone,
            Some(start) if start != p.start_ticks => return Recheck::Replaced,
            Some(_) => {}
        }
    }
    match fs::metadata(ns.path()) {
        Ok(meta) if (meta.dev(), meta.ino()) == (recorded.dev, recorded.ino) => Recheck::Same,
        Ok(_) => Recheck::Replaced,
        Err(_) => Recheck::Gone,
    }
}

/// Whether a process other than yardd is in the namespace `id`, or a mount
/// pins it.
pub fn held_elsewhere(id: &NetnsIdentity) -> bool {
    mounted(id.ino) || entered_by_another_process(id)
}

/// Whether an nsfs mount of namespace `ino` exists in yardd's mount
/// namespace (`ip netns add` bind-mounts one under /run/netns).
fn mounted(ino: u64) -> bool {
    let Ok(mounts) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let root = format!("net:[{ino}]");
    mounts.lines().any(|line| {
        // Field 4 is the mount's root within its file system; the type
        // follows the " - " separator.
        let mut fields = line.split(' ');
        fields.nth(3) == Some(root.as_str()) && line.contains(" - nsfs ")
    })
}

/// Whether any process but this one has namespace `id` as its network
/// namespace.
fn entered_by_another_process(id: &NetnsIdentity) -> bool {
    let me = std::process::id();
    let Ok(entries) = fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            return false;
        };
        pid != me
            && fs::metadata(entry.path().join("ns/net"))
                .is_ok_and(|m| (m.dev(), m.ino()) == (id.dev, id.ino))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::testutil::{is_root, Netns};

    #[test]
    fn proc_paths_name_their_pid() {
        assert_eq!(proc_pid(Path::new("/proc/1234/ns/net")), Some(1234));
        assert_eq!(proc_pid(Path::new("/proc/self/ns/net")), None);
        assert_eq!(proc_pid(Path::new("/run/netns/c1")), None);
    }

    #[test]
    fn our_own_namespace_is_identified_with_our_start_time() {
        let me = std::process::id();
        let ns = NetnsRef::parse(&format!("/proc/{me}/ns/net"));
        let id = identify(&ns).unwrap();
        assert_eq!(id.process.map(|p| p.pid), Some(me));
        assert_eq!(recheck(&ns, &id), Recheck::Same);

        let later = ProcessStamp {
            pid: me,
            start_ticks: id.process.unwrap().start_ticks + 1,
        };
        let reused = NetnsIdentity {
            process: Some(later),
            ..id
        };
        assert_eq!(recheck(&ns, &reused), Recheck::Replaced);
        let other_ns = NetnsIdentity {
            ino: id.ino + 1,
            ..id
        };
        assert_eq!(recheck(&ns, &other_ns), Recheck::Replaced);
    }

    #[test]
    fn a_named_namespace_is_held_by_its_mount_until_deleted() {
        if !is_root() {
            eprintln!("skipping: needs root to make a namespace");
            return;
        }
        let ns = Netns::new();
        let named = NetnsRef::parse(ns.name());
        let id = identify(&named).unwrap();
        assert_eq!(id.process, None);
        assert_eq!(recheck(&named, &id), Recheck::Same);
        assert!(held_elsewhere(&id), "the bind mount holds it");
        // Keep it alive by an fd only, as a TAP would, and delete the name.
        let fd = named.open().unwrap();
        drop(ns);
        assert_eq!(recheck(&named, &id), Recheck::Gone);
        assert!(!held_elsewhere(&id), "only our fd holds it now");
        drop(fd);
    }
}
