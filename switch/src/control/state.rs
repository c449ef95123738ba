//! The state file: the [`Config`] persisted as `state.json` in the state
//! directory after every change (write a temporary file, fsync, rename, fsync
//! the directory), so a crash leaves either the old or the new state, never a
//! torn one. A state file that cannot be read or parsed is an error that names
//! the file; yardd never silently starts from scratch over it. One yardd at a
//! time owns a state directory: it holds an exclusive lock on
//! [`LOCK_FILE`] there for as long as it runs ([`lock`]).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::control::config::{Config, STATE_FORMAT};

/// The file name inside the state directory.
pub const STATE_FILE: &str = "state.json";

/// Why the state could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("state file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// Another yardd holds the state directory's lock: two daemons on one
    /// state would overwrite each other's configuration and attach the same
    /// devices.
    #[error("state directory {dir} is in use by another yardd{pid}: stop it, or start this one with its own --state-dir (and --socket)", pid = match pid { Some(p) => format!(" (pid {p})"), None => String::new() })]
    InUse {
        /// The state directory.
        dir: PathBuf,
        /// The holder's pid, as it wrote it into the lock file.
        pid: Option<u32>,
    },
    /// The file is not a state file yardd can use.
    #[error("state file {path} is corrupt: {reason} — fix or move the file away (yardd then starts with the default network)")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The lock file in the state directory: yardd holds an exclusive `flock`
/// on it while it runs, and writes its pid into it for the error another
/// yardd then gives.
pub const LOCK_FILE: &str = "yardd.lock";

/// The state directory, held for one yardd: dropping it (or the process
/// ending, even by `kill -9`) releases it.
#[derive(Debug)]
pub struct StateLock {
    _lock: Flock<File>,
}

/// Takes the state directory `dir` for this process, creating it if need
/// be; refused with [`StateError::InUse`] while another yardd holds it.
pub fn lock(dir: &Path) -> Result<StateLock, StateError> {
    let path = dir.join(LOCK_FILE);
    let io = |source| StateError::Io {
        path: path.clone(),
        source,
    };
    fs::create_dir_all(dir).map_err(io)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(io)?;
    let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((mut file, Errno::EWOULDBLOCK)) => {
            let mut text = String::new();
            let pid = file
                .read_to_string(&mut text)
                .ok()
                .and_then(|_| text.trim().parse().ok());
            return Err(StateError::InUse {
                dir: dir.to_path_buf(),
                pid,
            });
        }
        Err((_, errno)) => return Err(io(errno.into())),
    };
    // The pid is only for the other yardd's message: a full disk must not
    // stop this one from starting.
    let _ = lock
        .set_len(0)
        .and_then(|()| writeln!(&*lock, "{}", std::process::id()));
    Ok(StateLock { _lock: lock })
}

/// The state file's path in `dir`.
pub fn state_path(dir: &Path) -> PathBuf {
    dir.join(STATE_FILE)
}

/// Loads the configuration; `Ok(None)` when there is no state file yet.
pub fn load(dir: &Path) -> Result<Option<Config>, StateError> {
    let path = state_path(dir);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StateError::Io { path, source }),
    };
    let corrupt = |reason: String| StateError::Corrupt {
        path: path.clone(),
        reason,
    };
    let config: Config = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
    if config.format != STATE_FORMAT {
        return Err(corrupt(format!(
            "format {} is not the {STATE_FORMAT} this yardd reads",
            config.format
        )));
    }
    config.check_all().map_err(|e| corrupt(e.to_string()))?;
    Ok(Some(config))
}

/// Saves the configuration atomically.
pub fn save(dir: &Path, config: &Config) -> Result<(), StateError> {
    let path = state_path(dir);
    let io = |source| StateError::Io {
        path: path.clone(),
        source,
    };
    fs::create_dir_all(dir).map_err(io)?;
    let tmp = dir.join(format!(".{STATE_FILE}.tmp"));
    let mut text = serde_json::to_string_pretty(config).expect("configuration serializes");
    text.push('\n');
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    fs::rename(&tmp, &path).map_err(io)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_yardd_is_refused_the_state_directory_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock(dir.path()).unwrap();
        // flock conflicts between open file descriptions, so a second open
        // in this process stands for a second yardd.
        let err = lock(dir.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "state directory {} is in use by another yardd (pid {}): stop it, or start this one with its own --state-dir (and --socket)",
                dir.path().display(),
                std::process::id()
            )
        );
        drop(first);
        let _again = lock(dir.path()).unwrap();
    }

    #[test]
    fn save_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_none());
        let config = Config::initial(false);
        save(dir.path(), &config).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(config));
        assert!(!dir.path().join(".state.json.tmp").exists());
    }

    #[test]
    fn corrupt_state_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(state_path(dir.path()), "{ not json").unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("state.json is corrupt"), "{err}");
        assert_eq!(
            fs::read_to_string(state_path(dir.path())).unwrap(),
            "{ not json",
            "left in place"
        );
    }

    #[test]
    fn invalid_content_is_corrupt_too() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::initial(false);
        config.networks.push(config.networks[0].clone());
        save(dir.path(), &config).unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("already exists"), "{err}");
    }
}
