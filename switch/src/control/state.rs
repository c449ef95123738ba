//! The state file: the [`Config`] persisted as `state.json` in the state
//! directory after every change (write a temporary file, fsync, rename, fsync
//! the directory), so a crash leaves either the old or the new state, never a
//! torn one. A state file that cannot be read or parsed is an error that names
//! the file; yardd never silently starts from scratch over it.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

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
    /// The file is not a state file yardd can use.
    #[error("state file {path} is corrupt: {reason} — fix or move the file away (yardd then starts with the default network)")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
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
    fn save_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_none());
        let config = Config::initial();
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
        let mut config = Config::initial();
        config.networks.push(config.networks[0].clone());
        save(dir.path(), &config).unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("already exists"), "{err}");
    }
}
