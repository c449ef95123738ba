//! Which mode yardd runs in, and where its control socket and state live by
//! default.
//!
//! The mode ([`DaemonMode`]) is decided by the effective uid and the user
//! namespace: uid 0 in the initial user namespace (whose `/proc/self/uid_map`
//! is the full identity map `0 0 4294967295`) is [`DaemonMode::Root`]; any
//! other uid is [`DaemonMode::Rootless`]; uid 0 in another user namespace
//! (`unshare -r`) is [`DaemonMode::UserNamespace`], which has root's powers
//! only over that namespace's own objects and therefore takes the rootless
//! defaults.
//!
//! Root uses `/run/switchyard/yardd.sock` and `/var/lib/switchyard`. The
//! rootless modes use `$XDG_RUNTIME_DIR/switchyard/yardd.sock` and
//! `$XDG_STATE_HOME/switchyard` (else `~/.local/state/switchyard`). With no
//! `XDG_RUNTIME_DIR`, the socket goes into a private per-user directory
//! `$TMPDIR/switchyard-UID` (else `/tmp/switchyard-UID`, UID as the host
//! sees it), which [`ensure_private_dir`] creates with mode 0700 and checks
//! is this user's and closed to group and others — never a directory
//! shared between users. `YARD_SOCKET` overrides the socket for yardd and
//! yardctl alike.
//!
//! Contract: [`choose_socket`] and [`choose_state_dir`] are pure (the mode
//! and the environment are arguments); [`default_socket`] and
//! [`default_state_dir`] read this process's. Nothing here creates a file
//! except [`ensure_private_dir`] (yardd's); clients only
//! [`check_private_dir`] before they trust a socket in the fallback
//! directory.

use std::env;
use std::ffi::OsString;
use std::fs::DirBuilder;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub use crate::api::DaemonMode;

/// The environment variable that names the control socket.
pub const SOCKET_ENV: &str = "YARD_SOCKET";

/// One line of `/proc/PID/uid_map`: `inside outside count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    /// The first id inside the namespace.
    pub inside: u32,
    /// The id it stands for in the parent namespace.
    pub outside: u32,
    /// How many consecutive ids the line maps.
    pub count: u32,
}

/// Parses the text of a `uid_map` (or `gid_map`); `None` when a line is not
/// three decimal numbers.
pub fn parse_id_map(text: &str) -> Option<Vec<IdRange>> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let mut fields = line.split_whitespace().map(|f| f.parse::<u32>().ok());
            let range = IdRange {
                inside: fields.next()??,
                outside: fields.next()??,
                count: fields.next()??,
            };
            fields.next().is_none().then_some(range)
        })
        .collect()
}

/// Whether `map` is the initial user namespace's: the full identity map.
pub fn is_initial_user_namespace(map: &[IdRange]) -> bool {
    map == [IdRange {
        inside: 0,
        outside: 0,
        count: u32::MAX,
    }]
}

/// The id `inside` stands for one namespace up, if `map` maps it.
pub fn outside_id(map: &[IdRange], inside: u32) -> Option<u32> {
    map.iter().find_map(|r| {
        let offset = inside.checked_sub(r.inside)?;
        (offset < r.count).then(|| r.outside + offset)
    })
}

/// The mode for effective uid `euid` given this namespace's uid map.
pub fn mode_of(euid: u32, uid_map: &[IdRange]) -> DaemonMode {
    if euid != 0 {
        DaemonMode::Rootless { uid: euid }
    } else if is_initial_user_namespace(uid_map) {
        DaemonMode::Root
    } else {
        DaemonMode::UserNamespace {
            outer_uid: outside_id(uid_map, 0),
        }
    }
}

/// The effective uid of this process, from `/proc/self/status` (no unsafe
/// call needed).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// This process's mode. An unreadable `/proc` counts as rootless: the
/// defaults that never touch root's directories.
pub fn current_mode() -> DaemonMode {
    let Some(euid) = effective_uid() else {
        return DaemonMode::Rootless { uid: u32::MAX };
    };
    let map = std::fs::read_to_string("/proc/self/uid_map")
        .ok()
        .and_then(|text| parse_id_map(&text))
        .unwrap_or_default();
    mode_of(euid, &map)
}

/// The environment the default paths are chosen from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathEnv {
    /// `YARD_SOCKET`.
    pub socket: Option<OsString>,
    /// `XDG_RUNTIME_DIR`.
    pub runtime_dir: Option<OsString>,
    /// `XDG_STATE_HOME`.
    pub state_home: Option<OsString>,
    /// `HOME`.
    pub home: Option<OsString>,
    /// `TMPDIR`.
    pub tmp_dir: Option<OsString>,
}

impl PathEnv {
    /// This process's environment (empty values count as unset).
    pub fn current() -> Self {
        let var = |name: &str| env::var_os(name).filter(|v| !v.is_empty());
        PathEnv {
            socket: var(SOCKET_ENV),
            runtime_dir: var("XDG_RUNTIME_DIR"),
            state_home: var("XDG_STATE_HOME"),
            home: var("HOME"),
            tmp_dir: var("TMPDIR"),
        }
    }
}

/// The uid that names a rootless user's private directory: the host's
/// view of it where known.
fn private_uid(mode: DaemonMode) -> u32 {
    match mode {
        DaemonMode::Root => 0,
        DaemonMode::Rootless { uid } => uid,
        DaemonMode::UserNamespace { outer_uid } => outer_uid.unwrap_or(0),
    }
}

/// The directory the socket goes into when `XDG_RUNTIME_DIR` is unset:
/// `$TMPDIR/switchyard-UID` (else `/tmp/switchyard-UID`).
pub fn private_runtime_dir(mode: DaemonMode, env: &PathEnv) -> PathBuf {
    let tmp = env
        .tmp_dir
        .as_ref()
        .map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    tmp.join(format!("switchyard-{}", private_uid(mode)))
}

/// The socket path for `mode` and `env`.
pub fn choose_socket(mode: DaemonMode, env: &PathEnv) -> PathBuf {
    if let Some(path) = &env.socket {
        return PathBuf::from(path);
    }
    if mode == DaemonMode::Root {
        return PathBuf::from("/run/switchyard/yardd.sock");
    }
    match &env.runtime_dir {
        Some(runtime) => PathBuf::from(runtime).join("switchyard"),
        None => private_runtime_dir(mode, env),
    }
    .join("yardd.sock")
}

/// The state directory for `mode` and `env`.
pub fn choose_state_dir(mode: DaemonMode, env: &PathEnv) -> PathBuf {
    if mode == DaemonMode::Root {
        return PathBuf::from("/var/lib/switchyard");
    }
    if let Some(state) = &env.state_home {
        return PathBuf::from(state).join("switchyard");
    }
    match &env.home {
        Some(home) => PathBuf::from(home).join(".local").join("state"),
        // No home at all: the private runtime directory is still this
        // user's alone.
        None => private_runtime_dir(mode, env).join("state"),
    }
    .join("switchyard")
}

/// The socket path: `YARD_SOCKET` if set, else the default for this mode.
pub fn default_socket() -> PathBuf {
    choose_socket(current_mode(), &PathEnv::current())
}

/// The state directory for this mode.
pub fn default_state_dir() -> PathBuf {
    choose_state_dir(current_mode(), &PathEnv::current())
}

/// Why a private directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PrivateDirError {
    /// It could not be created or inspected.
    #[error("cannot create or inspect {}: {error}", .dir.display())]
    Io {
        /// The directory.
        dir: PathBuf,
        /// What failed.
        error: io::Error,
    },
    /// It is not a directory, or another user's.
    #[error("{} exists but is not a directory of uid {uid} (it is {what}): another user may have made it to catch your socket; remove it, or set XDG_RUNTIME_DIR (or --socket) to a directory of your own", .dir.display())]
    NotOurs {
        /// The directory.
        dir: PathBuf,
        /// This process's uid.
        uid: u32,
        /// What it is instead.
        what: String,
    },
    /// Group or others may use it.
    #[error("{} is open to group or others (mode {mode:o}): run `chmod 700 {}`, or set XDG_RUNTIME_DIR", .dir.display(), .dir.display())]
    Open {
        /// The directory.
        dir: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// Creates `dir` with mode 0700 if it is missing, and checks that it is a
/// directory (not a symlink) owned by `uid` that group and others cannot
/// use.
pub fn ensure_private_dir(dir: &Path, uid: u32) -> Result<(), PrivateDirError> {
    let io_error = |error| PrivateDirError::Io {
        dir: dir.to_path_buf(),
        error,
    };
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_error(e)),
    }
    check_private_dir(dir, uid)
}

/// Checks, without creating anything, that `dir` is a directory (not a
/// symlink) owned by `uid` that group and others cannot use: what a client
/// asks before it trusts a socket there.
pub fn check_private_dir(dir: &Path, uid: u32) -> Result<(), PrivateDirError> {
    let io_error = |error| PrivateDirError::Io {
        dir: dir.to_path_buf(),
        error,
    };
    let meta = std::fs::symlink_metadata(dir).map_err(io_error)?;
    if !meta.is_dir() || meta.uid() != uid {
        let what = if meta.file_type().is_symlink() {
            "a symbolic link".to_string()
        } else if !meta.is_dir() {
            "not a directory".to_string()
        } else {
            format!("owned by uid {}", meta.uid())
        };
        return Err(PrivateDirError::NotOurs {
            dir: dir.to_path_buf(),
            uid,
            what,
        });
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(PrivateDirError::Open {
            dir: dir.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// The directory of `socket` that must be private before yardd binds there
/// or yardctl trusts what listens there: the per-user fallback directory
/// when `socket` is in it, else `None` (an explicit path, root's, or under
/// `XDG_RUNTIME_DIR`, which the session manager made private).
pub fn private_dir_of(socket: &Path, mode: DaemonMode, env: &PathEnv) -> Option<PathBuf> {
    let dir = private_runtime_dir(mode, env);
    (env.socket.is_none() && env.runtime_dir.is_none() && mode != DaemonMode::Root)
        .then_some(dir)
        .filter(|dir| socket.starts_with(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> PathEnv {
        let get = |key: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| OsString::from(v))
        };
        PathEnv {
            socket: get("YARD_SOCKET"),
            runtime_dir: get("XDG_RUNTIME_DIR"),
            state_home: get("XDG_STATE_HOME"),
            home: get("HOME"),
            tmp_dir: get("TMPDIR"),
        }
    }

    #[test]
    fn uid_maps_parse_and_tell_the_initial_namespace() {
        let initial = parse_id_map("         0          0 4294967295\n").unwrap();
        assert!(is_initial_user_namespace(&initial));
        assert_eq!(mode_of(0, &initial), DaemonMode::Root);
        assert_eq!(mode_of(1000, &initial), DaemonMode::Rootless { uid: 1000 });

        // `unshare -r` as uid 1000: root inside, 1000 outside.
        let unshared = parse_id_map("         0       1000          1\n").unwrap();
        assert!(!is_initial_user_namespace(&unshared));
        assert_eq!(
            mode_of(0, &unshared),
            DaemonMode::UserNamespace {
                outer_uid: Some(1000)
            }
        );
        // newuidmap's usual shape: 0 -> 1000, 1.. -> 100000...
        let ranged = parse_id_map("0 1000 1\n1 100000 65536\n").unwrap();
        assert_eq!(outside_id(&ranged, 0), Some(1000));
        assert_eq!(outside_id(&ranged, 5), Some(100_004));
        assert_eq!(outside_id(&ranged, 65537), None);
        // An identity map of fewer ids is not the initial namespace.
        let partial = parse_id_map("0 0 65536").unwrap();
        assert!(!is_initial_user_namespace(&partial));
        assert_eq!(
            mode_of(0, &partial),
            DaemonMode::UserNamespace { outer_uid: Some(0) }
        );
        // An empty map (a namespace nobody mapped yet) is not initial either.
        assert!(!is_initial_user_namespace(&parse_id_map("").unwrap()));

        assert_eq!(parse_id_map("0 0"), None);
        assert_eq!(parse_id_map("0 0 1 2"), None);
        assert_eq!(parse_id_map("a 0 1"), None);
    }

    #[test]
    fn root_uses_the_system_directories() {
        let e = env(&[("XDG_RUNTIME_DIR", "/run/user/0"), ("HOME", "/root")]);
        assert_eq!(
            choose_socket(DaemonMode::Root, &e),
            Path::new("/run/switchyard/yardd.sock")
        );
        assert_eq!(
            choose_state_dir(DaemonMode::Root, &e),
            Path::new("/var/lib/switchyard")
        );
    }

    #[test]
    fn rootless_modes_use_the_xdg_directories() {
        let e = env(&[
            ("XDG_RUNTIME_DIR", "/run/user/1000"),
            ("XDG_STATE_HOME", "/home/u/.st"),
            ("HOME", "/home/u"),
        ]);
        for mode in [
            DaemonMode::Rootless { uid: 1000 },
            DaemonMode::UserNamespace {
                outer_uid: Some(1000),
            },
        ] {
            assert_eq!(
                choose_socket(mode, &e),
                Path::new("/run/user/1000/switchyard/yardd.sock")
            );
            assert_eq!(
                choose_state_dir(mode, &e),
                Path::new("/home/u/.st/switchyard")
            );
        }
        let home_only = env(&[("HOME", "/home/u")]);
        assert_eq!(
            choose_state_dir(DaemonMode::Rootless { uid: 1000 }, &home_only),
            Path::new("/home/u/.local/state/switchyard")
        );
    }

    #[test]
    fn without_a_runtime_dir_the_socket_is_in_a_per_user_directory() {
        let e = env(&[("HOME", "/home/u")]);
        let socket = choose_socket(DaemonMode::Rootless { uid: 1000 }, &e);
        assert_eq!(socket, Path::new("/tmp/switchyard-1000/yardd.sock"));
        assert_eq!(
            private_dir_of(&socket, DaemonMode::Rootless { uid: 1000 }, &e),
            Some(PathBuf::from("/tmp/switchyard-1000"))
        );
        // Inside `unshare -r` the directory is named by the host's uid.
        let userns = DaemonMode::UserNamespace {
            outer_uid: Some(1000),
        };
        assert_eq!(
            choose_socket(userns, &env(&[("TMPDIR", "/var/tmp")])),
            Path::new("/var/tmp/switchyard-1000/yardd.sock")
        );
        // YARD_SOCKET wins, and is the user's own business.
        let explicit = env(&[("YARD_SOCKET", "/tmp/x.sock")]);
        let socket = choose_socket(DaemonMode::Rootless { uid: 1000 }, &explicit);
        assert_eq!(socket, Path::new("/tmp/x.sock"));
        assert_eq!(
            private_dir_of(&socket, DaemonMode::Rootless { uid: 1000 }, &explicit),
            None
        );
    }

    #[test]
    fn a_private_dir_is_created_0700_and_checked() {
        let base = std::env::temp_dir().join(format!("yard-paths-{}", std::process::id()));
        std::fs::create_dir_all(&base).unwrap();
        let uid = std::fs::metadata(&base).unwrap().uid();
        let dir = base.join("private");
        // A client only checks: nothing is created.
        assert!(matches!(
            check_private_dir(&dir, uid),
            Err(PrivateDirError::Io { .. })
        ));
        assert!(!dir.exists());
        ensure_private_dir(&dir, uid).unwrap();
        check_private_dir(&dir, uid).unwrap();
        let meta = std::fs::metadata(&dir).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        // Again: it exists and is fine.
        ensure_private_dir(&dir, uid).unwrap();

        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = ensure_private_dir(&dir, uid).unwrap_err();
        assert!(
            matches!(err, PrivateDirError::Open { mode: 0o755, .. }),
            "{err}"
        );

        let err = ensure_private_dir(&dir, uid.wrapping_add(1)).unwrap_err();
        assert!(matches!(err, PrivateDirError::NotOurs { .. }), "{err}");
        assert!(err.to_string().contains("another user may have made it"));

        let link = base.join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        let err = ensure_private_dir(&link, uid).unwrap_err();
        assert!(err.to_string().contains("a symbolic link"), "{err}");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
