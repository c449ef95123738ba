//! Installing yardd like a system tool: the systemd units in `dist/` pass
//! `systemd-analyze verify` (with the built binaries in `ExecStart`), yardd
//! tells a `Type=notify` manager it is ready once its socket answers, and
//! the man pages and shell completions generated from the clap definitions
//! (`cargo run -p yard-switch --example gen-docs`) render with `man -l` and
//! parse with `bash -n`.
//!
//! Needs `systemd-analyze` and `man` (under `CI=true` missing ones fail).

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use yard_tests::bins::{bins, workspace_root};
use yard_tests::cmd::{describe, end_child, output, stderr, stdout, timed};
use yard_tests::require;

/// `unit` from `dist/` with its `/usr/local/bin/` binaries replaced by the
/// built ones, written into `dir`.
fn unit_for_test(unit: &str, dir: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(workspace_root().join("dist").join(unit))
        .unwrap_or_else(|e| panic!("read dist/{unit}: {e}"));
    let built = bins().yardd.parent().unwrap().display().to_string();
    let path = dir.join(unit);
    std::fs::write(&path, text.replace("/usr/local/bin", &built)).unwrap();
    path
}

#[test]
fn the_systemd_units_verify() {
    if !require(&["systemd-analyze"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let units = ["yardd.service", "yard-docker.service"].map(|u| unit_for_test(u, dir.path()));
    let out = output(
        timed(60, "systemd-analyze")
            .args(["verify", "--man=no"])
            .args(&units),
    );
    // verify exits 0 on some mistakes (an unknown Type= is "ignored"), so
    // nothing may be said about our units either.
    let said = stderr(&out);
    let about_ours: Vec<&str> = said
        .lines()
        .filter(|l| l.contains("yardd") || l.contains("yard-docker"))
        .collect();
    assert!(
        out.status.success() && about_ours.is_empty(),
        "{}",
        describe("systemd-analyze verify", &out)
    );
}

#[test]
fn yardd_tells_a_notify_manager_it_is_ready_once_its_socket_answers() {
    if !require(&[]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let socket = dir.path().join("yardd.sock");
    let log = std::fs::File::create(dir.path().join("yardd.log")).unwrap();
    let child = Command::new(&bins().yardd)
        .arg("--socket")
        .arg(&socket)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .args(["--default-uplink", "none"])
        .env("NOTIFY_SOCKET", &notify_path)
        .env_remove("YARD_SOCKET")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start yardd");
    let pid = child.id();
    let mut buf = [0u8; 512];
    let received = notify.recv(&mut buf);
    // Ready means serving: the status request is answered right away.
    let status = output(
        timed(10, bins().yardctl.display().to_string())
            .arg("--socket")
            .arg(&socket)
            .arg("status"),
    );
    end_child(child, Duration::from_secs(5));
    let log = std::fs::read_to_string(dir.path().join("yardd.log")).unwrap_or_default();
    let n = received.unwrap_or_else(|e| panic!("no READY=1 within 20 s ({e}):\n{log}"));
    let message = String::from_utf8_lossy(&buf[..n]);
    assert!(message.starts_with("READY=1\n"), "{message}");
    assert!(message.contains(&format!("MAINPID={pid}\n")), "{message}");
    assert!(
        status.status.success(),
        "{}",
        describe("yardctl status", &status)
    );
}

#[test]
fn man_pages_and_completions_are_generated_from_the_command_lines() {
    if !require(&["man", "bash"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = output(
        timed(900, &cargo)
            .current_dir(workspace_root())
            .args([
                "run",
                "-q",
                "-p",
                "yard-switch",
                "--example",
                "gen-docs",
                "--",
            ])
            .arg(dir.path()),
    );
    assert!(out.status.success(), "{}", describe("gen-docs", &out));
    let files: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    for page in [
        "yardd.8",
        "yard-docker.8",
        "yardctl.1",
        "yardctl-port.1",
        "yardctl-link.1",
    ] {
        let path = dir.path().join("man").join(page);
        assert!(
            files.contains(&path.display().to_string()),
            "{page} not written: {files:?}"
        );
        let rendered = output(timed(30, "man").env("MANWIDTH", "80").arg("-l").arg(&path));
        // man overstrikes bold text ("N\x08N") when its output is not a terminal.
        let text: String = {
            let raw = stdout(&rendered);
            let mut plain = String::with_capacity(raw.len());
            for c in raw.chars() {
                if c == '\x08' {
                    plain.pop();
                } else {
                    plain.push(c);
                }
            }
            plain
        };
        assert!(
            rendered.status.success() && text.contains("NAME") && text.contains("SYNOPSIS"),
            "{}",
            describe(&format!("man -l {page}"), &rendered)
        );
    }
    let yardctl = std::fs::read_to_string(dir.path().join("man/yardctl-port-add.1")).unwrap();
    assert!(
        yardctl.contains("qemu") && yardctl.contains("veth"),
        "port's page lacks its kinds"
    );
    for script in ["yardd.bash", "yardctl.bash", "yard-docker.bash"] {
        let path = dir.path().join("completions").join(script);
        let parsed = output(timed(30, "bash").arg("-n").arg(&path));
        assert!(
            parsed.status.success(),
            "{}",
            describe(&format!("bash -n {script}"), &parsed)
        );
    }
}
