//! The control plane's errors: [`ControlError`] (why a request was refused
//! or only partly done — its message is the reply `yardctl` prints),
//! [`SocketError`] (the control socket could not be set up) and
//! [`AccessError`] (a client may not use it), plus [`Object`], the named
//! thing an error is about. Every message names the object and the way out.

// Variant fields are not documented one by one: each is the object its
// variant's `#[error]` message names, and that message is their doc.
#![allow(missing_docs)]

use std::io;
use std::path::PathBuf;

use yard_ctl::MacAddr;

use crate::control::attach::AttachError;
use crate::control::config::ConfigError;
use crate::control::nat_api::ConntrackRequestError;
use crate::control::state::StateError;
use crate::dataplane::threads::DatapathError;

/// A named network, port or uplink, shown as "network web", "port c1" or
/// "uplink up0".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum Object {
    /// A network.
    #[error("network {0}")]
    Network(String),
    /// A port.
    #[error("port {0}")]
    Port(String),
    /// The uplink.
    #[error("uplink {0}")]
    Uplink(String),
}

impl Object {
    /// `network`, `port` or `uplink`.
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Network(_) => "network",
            Object::Port(_) => "port",
            Object::Uplink(_) => "uplink",
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        match self {
            Object::Network(name) | Object::Port(name) | Object::Uplink(name) => name,
        }
    }
}

/// What a request removed before saving the state failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Removed {
    /// A port.
    #[error("port {0}")]
    Port(String),
    /// The uplink.
    #[error("uplink {0}")]
    Uplink(String),
    /// A published port.
    #[error("the published port")]
    Publish,
}

/// Why a request was refused, or what went wrong after it took effect.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The configuration refused the change.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The datapath refused it.
    #[error(transparent)]
    Datapath(#[from] DatapathError),
    /// The port's or uplink's device could not be attached.
    #[error(transparent)]
    Attach(#[from] AttachError),
    /// A trace request's frame could not be made.
    #[error(transparent)]
    Trace(#[from] crate::control::trace::TraceFrameError),
    /// A conntrack filter or setting is not valid.
    #[error(transparent)]
    Conntrack(#[from] ConntrackRequestError),
    /// The state file could not be written.
    #[error(transparent)]
    State(#[from] StateError),
    /// A published port's host socket could not be bound (host uplink).
    #[error(transparent)]
    PublishListen(#[from] crate::relay::published::BindError),
    /// The state file could not be written, so the change was undone.
    #[error("{0} — nothing was changed")]
    NotSaved(StateError),
    /// Something was removed (it cannot come back), but the state file
    /// could not be written.
    #[error("{removed} was removed, but {error}")]
    RemovedNotSaved {
        /// What was removed.
        removed: Removed,
        /// Why saving failed.
        error: StateError,
    },
    /// A configured network could not be restored at start.
    #[error("network {net}: {error}")]
    RestoreNetwork {
        net: String,
        /// Why the datapath refused it.
        error: DatapathError,
    },
    /// A port's or the uplink's device could not be attached.
    #[error(
        "{error} — fix it, then `yardctl {} rm {}` and add it again",
        .object.kind(), .object.name()
    )]
    NotAttached {
        /// The port or uplink.
        object: Object,
        /// Why (boxed: it is the largest error here, and rare).
        error: Box<AttachError>,
    },
    /// No port of that name.
    #[error("port {0} not found: `yardctl port ls` lists the ports")]
    NoPort(String),
    /// No uplink of that name.
    #[error("uplink {0} not found: `yardctl uplink ls` lists it")]
    NoUplink(String),
    /// The port is configured but not attached.
    #[error("port {0} is down: see `yardctl port ls`")]
    PortDown(String),
    /// The network is connected to another; `net rm` needs it disconnected.
    #[error("network {net} is connected ({a} <-> {b}): `yardctl net disconnect {a} {b}` first")]
    NetworkConnected {
        net: String,
        /// One side of the connection.
        a: String,
        /// The other side.
        b: String,
    },
    /// `net disconnect` of networks that are not connected.
    #[error(
        "networks {a} and {b} are not connected: `yardctl net inspect {a}` shows its connections"
    )]
    NotConnected {
        /// One network.
        a: String,
        b: String,
    },
    /// A static FDB entry for a group or all-zero MAC.
    #[error("MAC {0} is a group or zero address: a static entry needs a unicast address")]
    GroupMac(MacAddr),
    /// A static FDB entry on a network the port is not on.
    #[error("port {port} is not on network {net}: `yardctl port ls` shows each port's networks")]
    NotOnNetwork { port: String, net: String },
    /// `fdb del` found nothing.
    #[error("no FDB entry for {mac} in network {net}: `yardctl fdb show --net {net}` lists them")]
    NoFdbEntry { net: String, mac: MacAddr },
    /// A capture request reached the request handler (it is served by the
    /// connection).
    #[error("capture is served by the connection, not here")]
    CaptureNotHere,
}

/// Why the control socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// Its directory could not be created.
    #[error("cannot create socket directory {}: {error}", .dir.display())]
    CreateDir {
        dir: PathBuf,
        /// What failed.
        error: io::Error,
    },
    /// A running yardd answers on it.
    #[error(
        "another yardd is already listening on {} — stop it first, or start this one with --socket OTHER",
        .0.display()
    )]
    InUse(PathBuf),
    /// A stale socket could not be removed.
    #[error("cannot remove stale socket {}: {error}", .path.display())]
    RemoveStale {
        path: PathBuf,
        /// What failed.
        error: io::Error,
    },
    /// `bind` failed.
    #[error("cannot listen on {}: {error}", .path.display())]
    Listen {
        path: PathBuf,
        /// What failed.
        error: io::Error,
    },
    /// Its mode could not be set.
    #[error("cannot set mode 0660 on {}: {error}", .path.display())]
    Mode {
        path: PathBuf,
        /// What failed.
        error: io::Error,
    },
    /// It could not be given to the group.
    #[error("cannot give {} to group {gid}: {error}", .path.display())]
    Group {
        path: PathBuf,
        gid: u32,
        /// What failed.
        error: io::Error,
    },
}

/// Why a client may not use the control socket.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The peer's credentials could not be read.
    #[error("SO_PEERCRED: {0}")]
    PeerCredentials(io::Error),
    /// The peer is not root, yardd's user or in the configured group.
    #[error(
        "permission denied: process {pid} (uid {uid}) is not root, yardd's uid {own_uid}{} — run yardctl as one of those",
        .group.map(|g| format!(" or in group {g}")).unwrap_or_default()
    )]
    Denied {
        /// The peer's process.
        pid: i32,
        /// The peer's user.
        uid: u32,
        /// yardd's user.
        own_uid: u32,
        /// The group allowed besides.
        group: Option<u32>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The messages users see, word for word.
    #[test]
    fn messages_name_the_objects_and_the_way_out() {
        let state = || StateError::Io {
            path: "/var/lib/switchyard/state.json".into(),
            source: io::Error::from_raw_os_error(libc::EACCES),
        };
        let cases: Vec<(ControlError, &str)> = vec![
            (
                ControlError::NotSaved(state()),
                "state file /var/lib/switchyard/state.json: Permission denied (os error 13) — nothing was changed",
            ),
            (
                ControlError::RemovedNotSaved {
                    removed: Removed::Port("c1".into()),
                    error: state(),
                },
                "port c1 was removed, but state file /var/lib/switchyard/state.json: Permission denied (os error 13)",
            ),
            (
                ControlError::RemovedNotSaved {
                    removed: Removed::Publish,
                    error: state(),
                },
                "the published port was removed, but state file /var/lib/switchyard/state.json: Permission denied (os error 13)",
            ),
            (
                ControlError::NotAttached {
                    object: Object::Uplink("up0".into()),
                    error: Box::new(AttachError::NoInterface {
                        port: "up0".into(),
                        iface: "eth9".into(),
                    }),
                },
                "port up0: interface eth9 not found in yardd's network namespace: check `ip link show eth9` — fix it, then `yardctl uplink rm up0` and add it again",
            ),
            (
                ControlError::Attach(AttachError::CreateTap {
                    owner: Object::Port("c1".into()),
                    netns: Some("c1".into()),
                    ifname: "eth0".into(),
                    error: io::Error::from_raw_os_error(libc::EBUSY),
                }),
                "port c1 in netns c1: cannot create TAP eth0: Device or resource busy (os error 16)",
            ),
            (
                ControlError::NetworkConnected {
                    net: "web".into(),
                    a: "web".into(),
                    b: "db".into(),
                },
                "network web is connected (web <-> db): `yardctl net disconnect web db` first",
            ),
            (
                ControlError::NoFdbEntry {
                    net: "n".into(),
                    mac: MacAddr([2, 0, 0, 0, 0, 1]),
                },
                "no FDB entry for 02:00:00:00:00:01 in network n: `yardctl fdb show --net n` lists them",
            ),
        ];
        for (error, message) in cases {
            assert_eq!(error.to_string(), message);
        }
        let denied = AccessError::Denied {
            pid: 42,
            uid: 1000,
            own_uid: 0,
            group: Some(990),
        };
        assert_eq!(
            denied.to_string(),
            "permission denied: process 42 (uid 1000) is not root, yardd's uid 0 or in group 990 — run yardctl as one of those"
        );
        assert_eq!(
            SocketError::InUse("/run/switchyard/yardd.sock".into()).to_string(),
            "another yardd is already listening on /run/switchyard/yardd.sock — stop it first, or start this one with --socket OTHER"
        );
    }
}
