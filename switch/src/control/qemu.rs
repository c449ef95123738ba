//! The sockets of QEMU ports (slow path, on the control thread): claiming
//! the path, binding, and the socket file's lifetime.
//!
//! Contract:
//! - A path with nothing there is used. A socket file nobody listens on (a
//!   stale one, e.g. left by a yardd that was killed) is replaced. A live
//!   socket, or anything that is not a socket, is refused with a
//!   [`QemuSocketError`] saying what was found and what to do; nothing is
//!   removed then.
//! - The socket file is made mode 0600: the VM's QEMU must run as yardd's
//!   user (or root). The stream port checks each connection's uid too.
//! - [`QemuLink`] owns the socket file: dropping it (on `port rm`, or when a
//!   `port add` fails after binding) removes the file if it is still the one
//!   yardd made (same device and inode). A yardd that stops leaves it, and
//!   the next one replaces it as stale when it restores the port.
//! - A loopback UDP address is bound as it is; the kernel refuses one in use.

use std::io;
use std::net::UdpSocket;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use yard_ctl::api::QemuDgramAddr;

use crate::dataplane::port::qemu::dgram::{self, DgramSocket, QemuDgramPort};
use crate::dataplane::port::qemu::stream::{self, QemuStreamPort};
use crate::dataplane::port::qemu::LinkStatus;
use crate::dataplane::port::Port;

/// Why a QEMU port's socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum QemuSocketError {
    /// Something that is not a socket is at the path.
    #[error("{path} exists and is not a socket: remove it or choose another path")]
    NotASocket {
        /// The path.
        path: String,
    },
    /// A live socket is at the path.
    #[error(
        "{path} is in use: a process listens on it (another port, another yardd, or a QEMU started as the server): choose another path, or stop that process"
    )]
    InUse {
        /// The path.
        path: String,
    },
    /// The path could not be examined or the stale socket removed.
    #[error("cannot replace {path}: {error}")]
    Replace {
        /// The path.
        path: String,
        /// What failed.
        error: io::Error,
    },
    /// The socket could not be bound or set up.
    #[error("cannot bind {addr}: {error}")]
    Bind {
        /// The path or address.
        addr: String,
        /// What failed.
        error: io::Error,
    },
}

/// The socket file yardd bound; removed when dropped if it is still that
/// file.
#[derive(Debug)]
struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl SocketFile {
    /// The file now at `path`, which yardd just bound: made 0600.
    fn made(path: &Path) -> io::Result<SocketFile> {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        let meta = std::fs::symlink_metadata(path)?;
        Ok(SocketFile {
            path: path.to_path_buf(),
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| m.dev() == self.dev && m.ino() == self.ino);
        if ours {
            if let Err(error) = std::fs::remove_file(&self.path) {
                tracing::warn!(path = %self.path.display(), %error, "cannot remove the QEMU socket");
            }
        }
    }
}

/// What the control plane keeps of a QEMU port: its status, and its socket
/// file (removed when this is dropped).
#[derive(Debug)]
pub struct QemuLink {
    /// Whether a VM is there, as the datapath last found.
    pub status: Arc<LinkStatus>,
    _file: Option<SocketFile>,
}

/// Which kind of socket a path is probed as.
#[derive(Clone, Copy)]
enum Probe {
    Stream,
    Dgram,
}

/// Makes `path` free for yardd's socket: nothing there, or a stale socket
/// (removed). A live socket or another file is refused.
fn claim(path: &str, probe: Probe) -> Result<(), QemuSocketError> {
    let replace = |error| QemuSocketError::Replace {
        path: path.to_string(),
        error,
    };
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(replace(e)),
    };
    if !meta.file_type().is_socket() {
        return Err(QemuSocketError::NotASocket {
            path: path.to_string(),
        });
    }
    let reached = match probe {
        Probe::Stream => UnixStream::connect(path).map(drop),
        Probe::Dgram => UnixDatagram::unbound().and_then(|s| s.connect(path)),
    };
    match reached {
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(%path, "replacing a stale socket");
            std::fs::remove_file(path).map_err(replace)
        }
        // Live, or a socket of the other kind (EPROTOTYPE): someone's.
        _ => Err(QemuSocketError::InUse {
            path: path.to_string(),
        }),
    }
}

fn bind_error(addr: &str) -> impl Fn(io::Error) -> QemuSocketError + '_ {
    move |error| QemuSocketError::Bind {
        addr: addr.to_string(),
        error,
    }
}

/// The port and link of a `-netdev stream` NIC listening at `path`.
pub fn attach_stream(path: &str) -> Result<(Box<dyn Port>, QemuLink), QemuSocketError> {
    claim(path, Probe::Stream)?;
    let failed = bind_error(path);
    let listener = UnixListener::bind(path).map_err(&failed)?;
    // From here on the file is ours, and goes when `file` is dropped.
    let file = SocketFile::made(Path::new(path)).map_err(&failed)?;
    let status = Arc::new(LinkStatus::waiting(stream::waiting_detail(
        path,
        "no VM connected yet",
    )));
    let own_uid = nix::unistd::geteuid().as_raw();
    let port = QemuStreamPort::new(listener, path, own_uid, status.clone()).map_err(&failed)?;
    Ok((
        Box::new(port),
        QemuLink {
            status,
            _file: Some(file),
        },
    ))
}

/// The port and link of a `-netdev dgram` NIC bound at `addr`.
pub fn attach_dgram(addr: &QemuDgramAddr) -> Result<(Box<dyn Port>, QemuLink), QemuSocketError> {
    let local = addr.to_string();
    let failed = bind_error(&local);
    let (socket, file) = match addr {
        QemuDgramAddr::Unix(path) => {
            claim(path, Probe::Dgram)?;
            let socket = UnixDatagram::bind(path).map_err(&failed)?;
            let file = SocketFile::made(Path::new(path)).map_err(&failed)?;
            (DgramSocket::Unix(socket), Some(file))
        }
        QemuDgramAddr::Udp(addr) => (
            DgramSocket::Udp(UdpSocket::bind(addr).map_err(&failed)?),
            None,
        ),
    };
    let status = Arc::new(LinkStatus::waiting(dgram::waiting_detail(
        &local,
        "no datagram from a VM yet",
    )));
    let port = QemuDgramPort::new(socket, &local, status.clone()).map_err(&failed)?;
    Ok((
        Box::new(port),
        QemuLink {
            status,
            _file: file,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(path: &Path) -> String {
        path.display().to_string()
    }

    #[test]
    fn a_free_or_stale_path_is_used_and_its_file_goes_with_the_link() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vm.sock");
        // A stale socket: bound, then closed.
        drop(UnixListener::bind(&path).unwrap());
        let (_port, link) = attach_stream(&text(&path)).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.mode() & 0o777, 0o600);
        UnixStream::connect(&path).expect("listening");
        drop(link);
        assert!(!path.exists(), "the socket file outlived its link");

        let dgram = dir.path().join("vm-d.sock");
        drop(UnixDatagram::bind(&dgram).unwrap());
        let (_port, link) = attach_dgram(&QemuDgramAddr::Unix(text(&dgram))).unwrap();
        UnixDatagram::unbound()
            .unwrap()
            .send_to(b"x", &dgram)
            .expect("bound");
        drop(link);
        assert!(!dgram.exists());
    }

    #[test]
    fn a_live_socket_or_another_file_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("notes");
        std::fs::write(&file, "keep").unwrap();
        let err = attach_stream(&text(&file)).err().unwrap();
        assert!(matches!(err, QemuSocketError::NotASocket { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");

        let live = dir.path().join("live.sock");
        let _listener = UnixListener::bind(&live).unwrap();
        let err = attach_stream(&text(&live)).err().unwrap();
        assert!(matches!(err, QemuSocketError::InUse { .. }), "{err}");
        let err = attach_dgram(&QemuDgramAddr::Unix(text(&live)))
            .err()
            .unwrap();
        assert!(matches!(err, QemuSocketError::InUse { .. }), "{err}");
        UnixStream::connect(&live).expect("still the other listener's");

        let live_dgram = dir.path().join("live-d.sock");
        let _bound = UnixDatagram::bind(&live_dgram).unwrap();
        let err = attach_dgram(&QemuDgramAddr::Unix(text(&live_dgram)))
            .err()
            .unwrap();
        assert!(matches!(err, QemuSocketError::InUse { .. }), "{err}");
    }

    #[test]
    fn a_file_replaced_behind_yardds_back_is_not_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vm.sock");
        let (_port, link) = attach_stream(&text(&path)).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "someone else's").unwrap();
        drop(link);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "someone else's");
    }
}
