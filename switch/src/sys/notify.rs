//! systemd's readiness protocol (`sd_notify(3)`): when yardd runs under a
//! `Type=notify` unit, systemd sets `NOTIFY_SOCKET` and waits for a
//! `READY=1` datagram on it before it counts the service as started.
//!
//! Contract: [`ready`] sends one datagram to the socket `NOTIFY_SOCKET`
//! names — a path, or an abstract name written with a leading `@` — and
//! does nothing without the variable. No `unsafe`: std's datagram socket
//! and its Linux abstract-address support do it.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The variable systemd sets for a `Type=notify` service.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Tells systemd (if it is listening) that yardd is ready, with a status
/// line for `systemctl status`; `Ok(false)` when nothing listens.
pub fn ready(status: &str) -> io::Result<bool> {
    let Some(target) = std::env::var_os(NOTIFY_SOCKET).filter(|t| !t.is_empty()) else {
        return Ok(false);
    };
    let target = target.to_string_lossy().into_owned();
    let addr = match target.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
        None => SocketAddr::from_pathname(&target)?,
    };
    let message = format!(
        "READY=1\nSTATUS={}\nMAINPID={}\n",
        status.replace('\n', " "),
        std::process::id()
    );
    UnixDatagram::unbound()?.send_to_addr(message.as_bytes(), &addr)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One test changes the variable, so the cases run in order.
    #[test]
    fn ready_goes_to_a_path_or_an_abstract_socket_and_nowhere_without_one() {
        std::env::remove_var(NOTIFY_SOCKET);
        assert!(!ready("x").unwrap(), "no NOTIFY_SOCKET: nothing sent");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        std::env::set_var(NOTIFY_SOCKET, &path);
        assert!(ready("serving 2 networks\nand more").unwrap());
        let mut buf = [0u8; 256];
        let n = listener.recv(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(text.starts_with("READY=1\n"), "{text}");
        assert!(
            text.contains("STATUS=serving 2 networks and more\n"),
            "{text}"
        );
        assert!(text.contains(&format!("MAINPID={}\n", std::process::id())));

        let name = format!("yard-notify-test-{}", std::process::id());
        let abstract_addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&abstract_addr).unwrap();
        std::env::set_var(NOTIFY_SOCKET, format!("@{name}"));
        assert!(ready("up").unwrap());
        let n = listener.recv(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"READY=1\n"));
        std::env::remove_var(NOTIFY_SOCKET);
    }
}
