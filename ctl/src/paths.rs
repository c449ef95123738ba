//! Where the control socket and the state directory live by default.
//!
//! Root uses `/run/switchyard/yardd.sock` and `/var/lib/switchyard`; anyone else
//! uses `$XDG_RUNTIME_DIR/switchyard/yardd.sock` and
//! `$XDG_STATE_HOME/switchyard` (falling back to `~/.local/state/switchyard`).
//! `YARD_SOCKET` overrides the socket for both yardd and yardctl.

use std::env;
use std::path::PathBuf;

/// The environment variable that names the control socket.
pub const SOCKET_ENV: &str = "YARD_SOCKET";

fn is_root() -> bool {
    // The effective uid decides what yardd may do; /proc avoids an unsafe call.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// The socket path: `YARD_SOCKET` if set, else the default for this user.
pub fn default_socket() -> PathBuf {
    if let Some(path) = env::var_os(SOCKET_ENV).filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    if is_root() {
        return PathBuf::from("/run/switchyard/yardd.sock");
    }
    let runtime = env::var_os("XDG_RUNTIME_DIR")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(env::temp_dir);
    runtime.join("switchyard").join("yardd.sock")
}

/// The state directory for this user.
pub fn default_state_dir() -> PathBuf {
    if is_root() {
        return PathBuf::from("/var/lib/switchyard");
    }
    if let Some(state) = env::var_os("XDG_STATE_HOME").filter(|p| !p.is_empty()) {
        return PathBuf::from(state).join("switchyard");
    }
    let home = env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(env::temp_dir);
    home.join(".local").join("state").join("switchyard")
}
