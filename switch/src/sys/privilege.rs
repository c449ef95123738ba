//! Least privilege: dropping the capabilities yardd does not use and setting
//! `no_new_privs`.
//!
//! Contract: [`drop_privileges`] acts on the calling thread (capabilities
//! are per thread on Linux), so yardd calls it on its main thread before it
//! starts any other; every thread started afterwards inherits the reduced
//! sets. It clears the bounding set of everything else first (that needs
//! `CAP_SETPCAP`, which it then gives up; without it the bounding set stays
//! and `no_new_privs` makes it moot), then the ambient set, then sets
//! effective, permitted and inheritable to the kept capabilities (inheritable
//! empty), then `PR_SET_NO_NEW_PRIVS`. A process that lacks some kept
//! capability (yardd not run as root) keeps only what it has; nothing here
//! adds a capability.

use std::fmt;
use std::io;

/// A Linux capability yardd may keep, by its number in `linux/capability.h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// Published ports below 1024 on the host uplink (host listening
    /// sockets), as `docker run -p 80:80` expects.
    NetBindService = 10,
    /// TAP creation (`TUNSETIFF`), interface ioctls, rtnetlink changes,
    /// `SO_RCVBUFFORCE`/`SO_SNDBUFFORCE`.
    NetAdmin = 12,
    /// AF_PACKET sockets (`--iface`, `--trunk`, uplinks) and the raw GRE socket.
    NetRaw = 13,
    /// Opening `/proc/PID/ns/net` of a process yardd may not otherwise
    /// inspect (another uid's, or a non-dumpable one).
    SysPtrace = 19,
    /// `setns(CLONE_NEWNET)` into a container's namespace.
    SysAdmin = 21,
}

impl Capability {
    /// Every capability yardd keeps after setup, and why (see the variants).
    pub const KEPT: [Capability; 5] = [
        Capability::NetBindService,
        Capability::NetAdmin,
        Capability::NetRaw,
        Capability::SysPtrace,
        Capability::SysAdmin,
    ];

    fn bit(self) -> u64 {
        1u64 << (self as u32)
    }

    /// The name `capabilities(7)` gives it.
    pub fn name(self) -> &'static str {
        match self {
            Capability::NetBindService => "CAP_NET_BIND_SERVICE",
            Capability::NetAdmin => "CAP_NET_ADMIN",
            Capability::NetRaw => "CAP_NET_RAW",
            Capability::SysPtrace => "CAP_SYS_PTRACE",
            Capability::SysAdmin => "CAP_SYS_ADMIN",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The calling thread's capability sets, as bit masks (bit N is capability N).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapSets {
    /// What the thread may use now.
    pub effective: u64,
    /// What it may make effective.
    pub permitted: u64,
    /// What survives an execve (without file capabilities).
    pub inheritable: u64,
    /// The bounding set: the most any execve could give.
    pub bounding: u64,
}

impl CapSets {
    /// The kept capabilities that are effective, by name.
    pub fn effective_names(&self) -> Vec<&'static str> {
        Capability::KEPT
            .iter()
            .filter(|c| self.effective & c.bit() != 0)
            .map(|c| c.name())
            .collect()
    }
}

/// Why privileges could not be reduced.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// A capability could not be removed from the bounding set.
    #[error("cannot drop capability {cap} from the bounding set: {source} (yardd had CAP_SETPCAP, so the kernel refused it: check for a security module that forbids it)")]
    Bounding {
        /// The capability's number.
        cap: u32,
        /// What the kernel said.
        source: io::Error,
    },
    /// `capget`/`capset` or a `prctl` failed.
    #[error(
        "cannot {what}: {source} (yardd stops rather than run with more privilege than it needs)"
    )]
    Call {
        /// What was being done.
        what: &'static str,
        /// What the kernel said.
        source: io::Error,
    },
}

const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// `CAP_SETPCAP`, which dropping from the bounding set needs.
const SETPCAP: u32 = 8;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn capget() -> io::Result<[CapData; 2]> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget reads the header and writes two CapData records (the
    // layout of version 3), both live for the call; pid 0 is this thread.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut header as *mut CapHeader,
            data.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(data)
}

fn capset(effective: u64, permitted: u64, inheritable: u64) -> io::Result<()> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let split = |mask: u64| (mask as u32, (mask >> 32) as u32);
    let (e0, e1) = split(effective);
    let (p0, p1) = split(permitted);
    let (i0, i1) = split(inheritable);
    let data = [
        CapData {
            effective: e0,
            permitted: p0,
            inheritable: i0,
        },
        CapData {
            effective: e1,
            permitted: p1,
            inheritable: i1,
        },
    ];
    // SAFETY: capset reads the header and two CapData records (version 3
    // layout), both live for the call; pid 0 is this thread.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn prctl(option: libc::c_int, arg: libc::c_ulong) -> io::Result<libc::c_int> {
    // SAFETY: the prctl options used here (PR_CAPBSET_READ/DROP,
    // PR_CAP_AMBIENT, PR_SET/GET_NO_NEW_PRIVS) take integer arguments only.
    let rc = unsafe { libc::prctl(option, arg, 0 as libc::c_ulong, 0 as libc::c_ulong, 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}

/// The highest capability number this kernel knows (`PR_CAPBSET_READ`
/// answers `EINVAL` past it).
fn last_cap() -> u32 {
    (0..64)
        .take_while(|&cap| prctl(libc::PR_CAPBSET_READ, cap).is_ok())
        .last()
        .map_or(0, |c| c as u32)
}

/// The calling thread's capability sets.
pub fn current() -> io::Result<CapSets> {
    let data = capget()?;
    let join = |lo: u32, hi: u32| u64::from(lo) | (u64::from(hi) << 32);
    let mut bounding = 0u64;
    for cap in 0..=last_cap() {
        if prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(cap))? == 1 {
            bounding |= 1 << cap;
        }
    }
    Ok(CapSets {
        effective: join(data[0].effective, data[1].effective),
        permitted: join(data[0].permitted, data[1].permitted),
        inheritable: join(data[0].inheritable, data[1].inheritable),
        bounding,
    })
}

/// Whether `no_new_privs` is set on the calling thread.
pub fn no_new_privs() -> io::Result<bool> {
    Ok(prctl(libc::PR_GET_NO_NEW_PRIVS, 0)? == 1)
}

/// Keeps only `keep` (of what the thread has) in every capability set of
/// the calling thread and sets `no_new_privs`; returns the sets in force.
pub fn drop_privileges(keep: &[Capability]) -> Result<CapSets, PrivilegeError> {
    let call = |what: &'static str| move |source: io::Error| PrivilegeError::Call { what, source };
    let keep_mask = keep.iter().fold(0u64, |m, c| m | c.bit());
    let before = current().map_err(call("read the capability sets"))?;
    // Without CAP_SETPCAP (yardd not run as root) the bounding set cannot
    // be changed; no_new_privs below keeps an execve from using it anyway.
    let may_drop_bounding = before.effective & (1 << SETPCAP) != 0;
    for cap in 0..=last_cap() {
        let bit = 1u64 << cap;
        if may_drop_bounding && keep_mask & bit == 0 && before.bounding & bit != 0 {
            prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap))
                .map_err(|source| PrivilegeError::Bounding { cap, source })?;
        }
    }
    prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
    )
    .map_err(call("clear the ambient capabilities"))?;
    let permitted = before.permitted & keep_mask;
    capset(before.effective & permitted, permitted, 0)
        .map_err(call("set the capability sets (capset)"))?;
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1).map_err(call("set no_new_privs"))?;
    current().map_err(call("read the capability sets"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::testutil::is_root;

    #[test]
    fn a_thread_that_drops_keeps_exactly_the_kept_set() {
        if !is_root() {
            eprintln!("skipping a_thread_that_drops_keeps_exactly_the_kept_set: needs root");
            return;
        }
        // On a thread of its own: capabilities are per thread, and the
        // other tests of this process must keep theirs.
        let (sets, nnp, child_sets) = std::thread::spawn(|| {
            let sets = drop_privileges(&[Capability::NetAdmin, Capability::NetRaw]).unwrap();
            let nnp = no_new_privs().unwrap();
            // A thread started afterwards inherits the reduced sets.
            let child_sets = std::thread::spawn(|| current().unwrap()).join().unwrap();
            (sets, nnp, child_sets)
        })
        .join()
        .unwrap();
        let kept = Capability::NetAdmin.bit() | Capability::NetRaw.bit();
        assert_eq!(sets.effective, kept);
        assert_eq!(sets.permitted, kept);
        assert_eq!(sets.inheritable, 0);
        assert_eq!(sets.bounding, kept);
        assert!(nnp, "no_new_privs not set");
        assert_eq!(child_sets, sets);
        assert_eq!(sets.effective_names(), ["CAP_NET_ADMIN", "CAP_NET_RAW"]);
        // This thread was not touched.
        assert_ne!(current().unwrap().effective, kept);
    }
}
