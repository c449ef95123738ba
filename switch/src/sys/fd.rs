//! Raw fd I/O and socket options: `read(2)`/`write(2)` on non-blocking fds,
//! `SO_PEERCRED`, and an integer `setsockopt` used by the other `sys` modules.
//!
//! Contract: never blocks by itself (the fds are non-blocking), never retries
//! except on `EINTR`, and reports `EAGAIN` as [`std::io::ErrorKind::WouldBlock`].

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};

/// Reads one frame (or up to `buf.len()` bytes) from `fd` with `read(2)`.
///
/// Returns [`io::ErrorKind::WouldBlock`] when nothing is queued on a
/// non-blocking fd; retries on `EINTR`.
pub fn read_fd(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is a valid, writable region of `buf.len()` bytes for the
        // whole call, and `fd` is a live descriptor borrowed for the call.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Writes `buf` to `fd` with one `write(2)` (one frame on a TAP or packet socket).
///
/// Returns [`io::ErrorKind::WouldBlock`] when the fd's queue is full; retries on
/// `EINTR`.
pub fn write_fd(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is a valid, readable region of `buf.len()` bytes for the
        // whole call, and `fd` is a live descriptor borrowed for the call.
        let n = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// The credentials (`pid`, `uid`, `gid`) of the process at the other end of a
/// connected Unix stream socket, as the kernel recorded them at `connect(2)`.
pub fn peer_credentials(fd: BorrowedFd<'_>) -> io::Result<(i32, u32, u32)> {
    let cred = getsockopt(&fd, PeerCredentials)?;
    Ok((cred.pid(), cred.uid(), cred.gid()))
}

/// `setsockopt(fd, level, name, &value, sizeof(int))`.
pub(super) fn set_int_sockopt(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    set_sockopt(fd, level, name, &value)
}

/// `setsockopt` with a plain-old-data option value `T`.
pub(super) fn set_sockopt<T: Copy>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `value` points to a live `T` of exactly `size_of::<T>()` bytes, which
    // the kernel only reads; `fd` is a live descriptor borrowed for the call. The
    // callers pass the C option type matching `level`/`name`.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn read_write_and_would_block() {
        let (a, b) = UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 16];
        let err = read_fd(b.as_fd(), &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(write_fd(a.as_fd(), b"frame").unwrap(), 5);
        assert_eq!(read_fd(b.as_fd(), &mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"frame");
    }

    #[test]
    fn peer_credentials_are_ours() {
        let (a, _b) = UnixStream::pair().unwrap();
        let (pid, uid, gid) = peer_credentials(a.as_fd()).unwrap();
        assert_eq!(pid as u32, std::process::id());
        assert_eq!(uid, nix::unistd::geteuid().as_raw());
        assert_eq!(gid, nix::unistd::getegid().as_raw());
    }
}
