//! The checks a QEMU socket port must pass before yardd binds its socket:
//! an absolute path that fits a Unix socket address, or a loopback UDP
//! address, and not the socket of another QEMU port.
//!
//! Whether the path is free on disk (nothing there, a stale socket, or a
//! live one) is judged when the socket is bound ([`crate::control::qemu`]).

use yard_ctl::api::{PortKind, PortSpec, QemuDgramAddr};

use super::ConfigError;

/// The longest path a Unix socket address holds (`sun_path` less its NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// Where a QEMU port's socket is, as text; `None` for other kinds.
fn socket_of(kind: &PortKind) -> Option<String> {
    match kind {
        PortKind::QemuStream { path, .. } => Some(path.clone()),
        PortKind::QemuDgram { addr, .. } => Some(addr.to_string()),
        _ => None,
    }
}

fn check_path(port: &str, path: &str) -> Result<(), ConfigError> {
    let why = if !path.starts_with('/') {
        Some("is not absolute: give the full path (yardd and QEMU run in other directories)")
    } else if path.len() > MAX_SOCKET_PATH {
        Some("is longer than the 107 bytes a Unix socket address holds: choose a shorter path")
    } else if path.contains('\0') {
        Some("contains a NUL byte")
    } else if path.ends_with('/') {
        Some("names a directory: give the socket's file name")
    } else {
        None
    };
    match why {
        Some(why) => Err(ConfigError::QemuPath {
            port: port.to_string(),
            path: path.to_string(),
            why,
        }),
        None => Ok(()),
    }
}

/// Checks the socket of QEMU port `port` (of `kind`) against the ports
/// there are.
pub fn check_socket(port: &str, kind: &PortKind, ports: &[PortSpec]) -> Result<(), ConfigError> {
    match kind {
        PortKind::QemuStream { path, .. }
        | PortKind::QemuDgram {
            addr: QemuDgramAddr::Unix(path),
            ..
        } => check_path(port, path)?,
        PortKind::QemuDgram {
            addr: QemuDgramAddr::Udp(addr),
            ..
        } => {
            if !addr.ip().is_loopback() || addr.port() == 0 {
                return Err(ConfigError::QemuUdpNotLoopback {
                    port: port.to_string(),
                    addr: *addr,
                });
            }
        }
        _ => return Ok(()),
    }
    let socket = socket_of(kind);
    if let Some(other) = ports.iter().find(|p| socket_of(&p.kind) == socket) {
        return Err(ConfigError::QemuSocketTaken {
            port: port.to_string(),
            socket: socket.unwrap_or_default(),
            by: other.name.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(name: &str, path: &str) -> PortSpec {
        PortSpec {
            name: name.into(),
            kind: PortKind::QemuStream {
                net: "yard0".into(),
                path: path.into(),
            },
        }
    }

    #[test]
    fn paths_must_be_absolute_short_and_unused() {
        let vm1 = stream("vm1", "/run/vm1.sock");
        assert!(check_socket("vm1", &vm1.kind, &[]).is_ok());
        let relative = stream("vm2", "vm2.sock");
        assert!(matches!(
            check_socket("vm2", &relative.kind, &[]),
            Err(ConfigError::QemuPath { .. })
        ));
        let long = stream("vm2", &format!("/{}", "a".repeat(MAX_SOCKET_PATH)));
        assert!(matches!(
            check_socket("vm2", &long.kind, &[]),
            Err(ConfigError::QemuPath { .. })
        ));
        let again = stream("vm2", "/run/vm1.sock");
        let err = check_socket("vm2", &again.kind, &[vm1]).unwrap_err();
        assert!(err.to_string().contains("port vm1's socket"), "{err}");
    }

    #[test]
    fn udp_must_be_on_loopback() {
        let kind = |addr: &str| PortKind::QemuDgram {
            net: "yard0".into(),
            addr: QemuDgramAddr::Udp(addr.parse().unwrap()),
        };
        assert!(check_socket("vm", &kind("127.0.0.1:5555"), &[]).is_ok());
        assert!(matches!(
            check_socket("vm", &kind("10.0.0.1:5555"), &[]),
            Err(ConfigError::QemuUdpNotLoopback { .. })
        ));
    }
}
