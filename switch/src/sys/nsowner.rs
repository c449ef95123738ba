//! Who owns a network namespace: its identity and the uid that owns the user
//! namespace it belongs to (`NS_GET_NSTYPE`, `NS_GET_USERNS`,
//! `NS_GET_OWNER_UID` on the namespace file, see ioctl_ns(2)).
//!
//! Contract: everything is read from one open fd of the namespace file, so
//! the identity and the owner describe the same namespace; nothing here
//! enters a namespace or keeps an fd once it returns, except
//! [`user_namespace_of`], which hands the caller the owning user
//! namespace's fd (for the namespace helper, which enters it).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use crate::sys::netns::{NetnsError, NetnsRef};

/// A network namespace as the kernel knows it, and who owns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetnsOwner {
    /// The namespace's identity: (device, inode) of its nsfs file.
    pub id: (u64, u64),
    /// The uid (in yardd's user namespace) that owns the user namespace
    /// this network namespace belongs to; 0 for the host's.
    pub owner_uid: u32,
}

/// The identity of yardd's own network namespace (that of its main thread).
pub fn own_netns_id() -> io::Result<(u64, u64)> {
    let meta = std::fs::metadata("/proc/self/ns/net")?;
    Ok((meta.dev(), meta.ino()))
}

/// Opens `ns` and reads its identity and owner from that one fd.
pub fn netns_owner(ns: &NetnsRef) -> Result<NetnsOwner, NetnsError> {
    let file = ns.open()?;
    owner_of(&file).map_err(|source| match source.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOTTY) => NetnsError::NotANetns {
            ns: ns.to_string(),
            path: ns.path().to_path_buf(),
        },
        _ => NetnsError::Owner {
            ns: ns.to_string(),
            path: ns.path().to_path_buf(),
            source,
        },
    })
}

/// The user namespace that owns the network namespace open as `netns`
/// (`NS_GET_USERNS`); `EINVAL` when `netns` is not a network namespace.
pub fn user_namespace_of(netns: &impl AsRawFd) -> io::Result<OwnedFd> {
    // SAFETY: NS_GET_NSTYPE takes no argument and only reads the fd, which
    // the caller keeps open for the call.
    let nstype = unsafe { libc::ioctl(netns.as_raw_fd(), libc::NS_GET_NSTYPE) };
    if nstype < 0 {
        return Err(io::Error::last_os_error());
    }
    if nstype != libc::CLONE_NEWNET {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: NS_GET_USERNS takes no argument and returns a new fd (or -1);
    // the caller keeps `netns` open for the call.
    let userns = unsafe { libc::ioctl(netns.as_raw_fd(), libc::NS_GET_USERNS) };
    if userns < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned `userns` as a new fd that nothing
    // else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(userns) })
}

/// Whether the user namespace open as `userns` is this process's own.
pub fn is_own_user_namespace(userns: &OwnedFd) -> io::Result<bool> {
    let ours = std::fs::metadata("/proc/self/ns/user")?;
    let theirs = File::from(userns.try_clone()?).metadata()?;
    Ok((ours.dev(), ours.ino()) == (theirs.dev(), theirs.ino()))
}

fn owner_of(file: &File) -> io::Result<NetnsOwner> {
    let userns = user_namespace_of(file)?;
    let mut uid: libc::uid_t = 0;
    // SAFETY: NS_GET_OWNER_UID writes one uid_t through the pointer, which
    // points to `uid`, live for the call; `userns` is open.
    let rc = unsafe {
        libc::ioctl(
            userns.as_raw_fd(),
            libc::NS_GET_OWNER_UID,
            &mut uid as *mut libc::uid_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let meta = file.metadata()?;
    Ok(NetnsOwner {
        id: (meta.dev(), meta.ino()),
        owner_uid: uid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::testutil::{is_root, Netns};

    #[test]
    fn the_host_namespace_is_ours_and_owned_by_root() {
        if !is_root() {
            eprintln!("skipping the_host_namespace_is_ours_and_owned_by_root: needs root");
            return;
        }
        let ours = netns_owner(&NetnsRef::parse("/proc/self/ns/net")).unwrap();
        assert_eq!(ours.id, own_netns_id().unwrap());
        assert_eq!(ours.owner_uid, 0);
        // A namespace made by `ip netns add` (root, host user namespace) is
        // another namespace, still owned by root.
        let ns = Netns::new();
        let made = netns_owner(&ns.netns_ref()).unwrap();
        assert_ne!(made.id, ours.id);
        assert_eq!(made.owner_uid, 0);
    }

    #[test]
    fn a_file_that_is_not_a_network_namespace_is_refused() {
        for path in ["/proc/self/ns/uts", "/proc/version"] {
            let err = netns_owner(&NetnsRef::parse(path)).unwrap_err();
            assert!(
                matches!(err, NetnsError::NotANetns { .. }),
                "{path}: {err:?}"
            );
        }
    }
}
