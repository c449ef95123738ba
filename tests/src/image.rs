//! A container image with no registry: busybox-static's binary and its
//! applets in a root filesystem tarball that `podman import` and `docker
//! import` take, plus a CGI script (`/www/cgi-bin/peer`) that answers with
//! the client's address as busybox httpd saw it.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::cmd::{run_ok, stdout};

/// The busybox-static binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// Builds the root filesystem under `dir` and returns its tarball's path.
pub fn busybox_tar(dir: &Path) -> PathBuf {
    let rootfs = dir.join("rootfs");
    let bin = rootfs.join("bin");
    for sub in [
        "bin",
        "etc",
        "tmp",
        "proc",
        "sys",
        "dev",
        "root",
        "www/cgi-bin",
    ] {
        fs::create_dir_all(rootfs.join(sub)).expect("rootfs dir");
    }
    fs::copy(BUSYBOX, bin.join("busybox")).expect("copy busybox");
    let list = run_ok(&[BUSYBOX, "--list"]);
    for applet in stdout(&list).lines().filter(|a| *a != "busybox") {
        let _ = symlink("busybox", bin.join(applet));
    }
    let cgi = rootfs.join("www/cgi-bin/peer");
    fs::write(
        &cgi,
        "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho \"$REMOTE_ADDR\"\n",
    )
    .expect("write the CGI script");
    fs::set_permissions(&cgi, fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
    let tar = dir.join("rootfs.tar");
    run_ok(&[
        "tar",
        "-C",
        &rootfs.display().to_string(),
        "-cf",
        &tar.display().to_string(),
        ".",
    ]);
    tar
}

/// The IPv4 address busybox httpd reported in `REMOTE_ADDR` (it listens on
/// IPv6 and shows IPv4 clients as `[::ffff:A.B.C.D]`).
pub fn remote_addr(answer: &str) -> Option<std::net::Ipv4Addr> {
    answer
        .trim()
        .trim_start_matches("[::ffff:")
        .trim_end_matches(']')
        .parse()
        .ok()
}
