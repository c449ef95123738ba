//! Network namespaces: naming one the way a user does, and running code inside it.
//!
//! Contract: [`run_in_netns`] never changes the namespace of the calling thread —
//! it spawns a short-lived thread, enters the target namespace there
//! (`setns(CLONE_NEWNET)`), runs the closure and returns its result; the thread
//! ends with it, so no thread of the daemon is ever left in a foreign namespace.
//! Only the network namespace is entered; mount, user and other namespaces stay
//! the daemon's. Fds created inside (a TAP, a netlink or packet socket) keep
//! belonging to the namespace they were created in after the thread exits.

use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sched::{setns, CloneFlags};

/// Where `ip netns add NAME` bind-mounts named network namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// A reference to a network namespace as the user wrote it: a name under
/// `/run/netns` (`c1`) or a path (`/proc/1234/ns/net`, `/run/netns/c1`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NetnsRef {
    /// Exactly what the user wrote, for messages.
    written: String,
    /// The file to open: the path as written, or `/run/netns/<name>`.
    path: PathBuf,
}

impl NetnsRef {
    /// Interprets `s`: anything containing a `/` is a path, anything else is the
    /// name of a namespace under [`NETNS_RUN_DIR`].
    pub fn parse(s: &str) -> NetnsRef {
        let path = if s.contains('/') {
            PathBuf::from(s)
        } else {
            Path::new(NETNS_RUN_DIR).join(s)
        };
        NetnsRef {
            written: s.to_owned(),
            path,
        }
    }

    /// The namespace file that is opened and passed to `setns`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The name under [`NETNS_RUN_DIR`], if the user gave a name rather than a path.
    pub fn name(&self) -> Option<&str> {
        (!self.written.contains('/')).then_some(self.written.as_str())
    }

    /// Opens the namespace file, with errors that name the namespace (and,
    /// for a missing named one, how to create it).
    pub fn open(&self) -> Result<File, NetnsError> {
        File::open(&self.path).map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                NetnsError::NotFound {
                    ns: self.to_string(),
                    path: self.path.clone(),
                    hint: match self.name() {
                        Some(name) => format!(" — create it with `ip netns add {name}`"),
                        None => String::new(),
                    },
                }
            } else {
                NetnsError::Open {
                    ns: self.to_string(),
                    path: self.path.clone(),
                    source,
                }
            }
        })
    }
}

impl fmt::Display for NetnsRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written)
    }
}

/// Why a network namespace could not be entered.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The namespace file does not exist.
    #[error("netns {ns} not found ({path}){hint}", path = .path.display())]
    NotFound {
        /// The namespace as the user wrote it.
        ns: String,
        /// The file that was looked for.
        path: PathBuf,
        /// How to create it, when the user gave a name.
        hint: String,
    },
    /// The file exists but is not a network namespace (`setns` said `EINVAL`).
    #[error("netns {ns}: {path} is not a network namespace", path = .path.display())]
    NotANetns {
        /// The namespace as the user wrote it.
        ns: String,
        /// The file that was opened.
        path: PathBuf,
    },
    /// Opening the namespace file failed for another reason.
    #[error("netns {ns}: cannot open {path}: {source}", path = .path.display())]
    Open {
        /// The namespace as the user wrote it.
        ns: String,
        /// The file that was opened.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// `setns` failed for another reason (typically `EPERM`: not privileged).
    #[error("netns {ns}: cannot enter {path}: {source}", path = .path.display())]
    Enter {
        /// The namespace as the user wrote it.
        ns: String,
        /// The file that was opened.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The namespace's owner could not be read (`NS_GET_USERNS`,
    /// `NS_GET_OWNER_UID`).
    #[error("netns {ns}: cannot read who owns {path}: {source}", path = .path.display())]
    Owner {
        /// The namespace as the user wrote it.
        ns: String,
        /// The file that was opened.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The helper thread could not be spawned.
    #[error("netns {ns}: cannot spawn a thread to enter it: {source}")]
    Spawn {
        /// The namespace as the user wrote it.
        ns: String,
        /// The underlying error.
        source: io::Error,
    },
}

/// Runs `f` on a short-lived thread that has entered the network namespace `ns`
/// and returns its result.
///
/// A TAP belongs to the namespace it was opened in, and netlink, packet and
/// ioctl sockets opened inside `f` talk to that namespace. If `f` panics, the
/// panic is resumed on the calling thread.
pub fn run_in_netns<T: Send + 'static>(
    ns: &NetnsRef,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, NetnsError> {
    // Open on the caller's thread: the path is resolved in the daemon's mount
    // namespace either way, and errors are reported before a thread exists.
    let file = ns.open()?;

    let ns_for_thread = ns.clone();
    let handle = std::thread::Builder::new()
        .name(format!("netns-{ns}"))
        .spawn(move || -> Result<T, NetnsError> {
            setns(&file, CloneFlags::CLONE_NEWNET).map_err(|errno| match errno {
                Errno::EINVAL => NetnsError::NotANetns {
                    ns: ns_for_thread.to_string(),
                    path: ns_for_thread.path.clone(),
                },
                other => NetnsError::Enter {
                    ns: ns_for_thread.to_string(),
                    path: ns_for_thread.path.clone(),
                    source: other.into(),
                },
            })?;
            drop(file);
            Ok(f())
        })
        .map_err(|source| NetnsError::Spawn {
            ns: ns.to_string(),
            source,
        })?;
    match handle.join() {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::testutil::{is_root, Netns};

    #[test]
    fn parse_names_and_paths() {
        let named = NetnsRef::parse("c1");
        assert_eq!(named.path(), Path::new("/run/netns/c1"));
        assert_eq!(named.to_string(), "c1");
        assert_eq!(named.name(), Some("c1"));

        let proc_path = NetnsRef::parse("/proc/1234/ns/net");
        assert_eq!(proc_path.path(), Path::new("/proc/1234/ns/net"));
        assert_eq!(proc_path.to_string(), "/proc/1234/ns/net");
        assert_eq!(proc_path.name(), None);

        let run_path = NetnsRef::parse("/run/netns/c1");
        assert_eq!(run_path.path(), Path::new("/run/netns/c1"));
        assert_eq!(run_path.to_string(), "/run/netns/c1");
    }

    #[test]
    fn missing_named_netns_says_how_to_create_it() {
        let name = format!("ys-{}-missing", std::process::id());
        let err = run_in_netns(&NetnsRef::parse(&name), || ()).unwrap_err();
        assert!(matches!(err, NetnsError::NotFound { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "netns {name} not found (/run/netns/{name}) — create it with `ip netns add {name}`"
            )
        );

        let err = run_in_netns(&NetnsRef::parse("/nonexistent/ns/net"), || ()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "netns /nonexistent/ns/net not found (/nonexistent/ns/net)"
        );
    }

    #[test]
    fn non_netns_file_is_rejected() {
        // Privileged: setns needs CAP_SYS_ADMIN before it looks at the file type.
        if !is_root() {
            eprintln!("skipping non_netns_file_is_rejected: needs root");
            return;
        }
        for path in ["/proc/self/ns/uts", "/proc/version"] {
            let err = run_in_netns(&NetnsRef::parse(path), || ()).unwrap_err();
            assert!(
                matches!(err, NetnsError::NotANetns { .. }),
                "{path}: {err:?}"
            );
            assert_eq!(
                err.to_string(),
                format!("netns {path}: {path} is not a network namespace")
            );
        }
    }

    #[test]
    fn closure_runs_inside_the_namespace() {
        // Privileged: creates a network namespace.
        if !is_root() {
            eprintln!("skipping closure_runs_inside_the_namespace: needs root");
            return;
        }
        let ns = Netns::new();
        let ours = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
        let inside = run_in_netns(&ns.netns_ref(), || {
            std::fs::read_link("/proc/thread-self/ns/net").unwrap()
        })
        .unwrap();
        let expected = run_in_netns(&NetnsRef::parse(ns.name()), || {
            std::fs::read_link("/proc/thread-self/ns/net").unwrap()
        })
        .unwrap();
        assert_ne!(inside, ours);
        assert_eq!(inside, expected);
        // The calling thread never moved.
        assert_eq!(
            std::fs::read_link("/proc/thread-self/ns/net").unwrap(),
            ours
        );
        // A panic inside is the caller's panic.
        let caught = std::panic::catch_unwind(|| {
            let _ = run_in_netns(&ns.netns_ref(), || panic!("boom inside"));
        });
        assert!(caught.is_err());
    }
}
