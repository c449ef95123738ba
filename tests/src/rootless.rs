//! Rootless labs: yardd and yardctl run as an ordinary user the test creates.
//!
//! - [`TunOpen`]: `/dev/net/tun` at mode 0666 (as distributions ship it)
//!   while any guard of this process lives; the mode it had is restored
//!   when the last one drops.
//! - [`TestUser`]: a user made with `useradd -m` under a unique name
//!   (`ys<pid>-<n>`), with copies of `yardd` and `yardctl` in its home (so
//!   it can run them wherever the build tree lives). `Drop` removes the user,
//!   its home and its private runtime directory `/tmp/switchyard-UID`.
//! - [`UserDaemon`]: yardd started as that user through `setpriv` (which
//!   `exec`s, so the pid is yardd's), optionally inside a host namespace
//!   (`ip netns exec`), with only `HOME` and `PATH` in its environment
//!   unless told otherwise. Its `yardctl` helpers run as the same user.
//!   `Drop` stops yardd by that pid and prints its log when the test is
//!   failing.
//!
//! Every command is bounded by `timeout(1)`; processes are ended by the pid
//! the harness spawned.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use crate::bins::bins;
use crate::cmd::{describe, end_child, output, poll, run, run_ok, timed};
use crate::daemon::{CTL_TIMEOUT_SECS, READY_TIMEOUT, STOP_TIMEOUT};
use crate::netns::unique_name;

/// The tools a rootless lab needs besides `ip`.
pub const TOOLS: [&str; 8] = [
    "setpriv", "useradd", "userdel", "unshare", "nsenter", "ping", "socat", "timeout",
];

/// `/dev/net/tun`'s mode before the first [`TunOpen`] of this process, and
/// how many guards live.
static TUN: Mutex<(usize, u32)> = Mutex::new((0, 0));

const TUN_PATH: &str = "/dev/net/tun";

/// `/dev/net/tun` open to every user while this lives.
#[derive(Debug)]
pub struct TunOpen(());

impl TunOpen {
    /// Sets `/dev/net/tun` to 0666 (the first guard remembers the mode).
    pub fn new() -> TunOpen {
        let mut tun = TUN.lock().unwrap_or_else(|p| p.into_inner());
        if tun.0 == 0 {
            let mode = std::fs::metadata(TUN_PATH)
                .expect("stat /dev/net/tun")
                .permissions()
                .mode()
                & 0o7777;
            std::fs::set_permissions(TUN_PATH, std::fs::Permissions::from_mode(0o666))
                .expect("chmod 0666 /dev/net/tun");
            tun.1 = mode;
        }
        tun.0 += 1;
        TunOpen(())
    }
}

impl Default for TunOpen {
    fn default() -> Self {
        TunOpen::new()
    }
}

impl Drop for TunOpen {
    fn drop(&mut self) {
        let mut tun = TUN.lock().unwrap_or_else(|p| p.into_inner());
        tun.0 -= 1;
        if tun.0 == 0 {
            let _ = std::fs::set_permissions(TUN_PATH, std::fs::Permissions::from_mode(tun.1));
        }
    }
}

/// An ordinary user made for one test.
#[derive(Debug)]
pub struct TestUser {
    name: String,
    uid: u32,
    gid: u32,
    home: PathBuf,
    yardd: PathBuf,
    yardctl: PathBuf,
}

impl TestUser {
    /// Creates the user with a home directory and copies the binaries in.
    pub fn new() -> TestUser {
        let name = unique_name("ys");
        run_ok(&["useradd", "-m", "-s", "/bin/sh", &name]);
        let id = |flag: &str| -> u32 {
            let out = run_ok(&["id", flag, &name]);
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .expect("a numeric id")
        };
        let (uid, gid) = (id("-u"), id("-g"));
        let home = PathBuf::from(
            String::from_utf8_lossy(&run_ok(&["sh", "-c", &format!("echo ~{name}")]).stdout).trim(),
        );
        let user = TestUser {
            name,
            uid,
            gid,
            yardd: home.join("yardd"),
            yardctl: home.join("yardctl"),
            home,
        };
        std::fs::copy(&bins().yardd, &user.yardd).expect("copy yardd");
        std::fs::copy(&bins().yardctl, &user.yardctl).expect("copy yardctl");
        user
    }

    /// The user's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its uid.
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// Its uid and its own group's gid.
    pub fn ids(&self) -> (u32, u32) {
        (self.uid, self.gid)
    }

    /// Its home directory.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Its copy of yardd.
    pub fn yardd(&self) -> &Path {
        &self.yardd
    }

    /// Its copy of yardctl.
    pub fn yardctl(&self) -> &Path {
        &self.yardctl
    }

    /// Makes `path` (made by root) the user's.
    pub fn give(&self, path: &Path) {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid)).expect("chown to the user");
    }

    /// A command that runs `program` as this user, bounded by `secs`, with
    /// only `HOME`, `PATH` and `env` in its environment; inside host
    /// namespace `netns` when given.
    pub fn command(
        &self,
        secs: u32,
        netns: Option<&str>,
        env: &[(&str, &str)],
        program: &Path,
    ) -> Command {
        let mut cmd = timed(secs, "setpriv");
        if let Some(ns) = netns {
            cmd = timed(secs, "ip");
            cmd.args(["netns", "exec", ns, "setpriv"]);
        }
        cmd.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .args(["--clear-groups", "--", "env", "-i"])
            .arg(format!("HOME={}", self.home.display()))
            .arg("PATH=/usr/sbin:/usr/bin:/sbin:/bin");
        for (key, value) in env {
            cmd.arg(format!("{key}={value}"));
        }
        cmd.arg(program);
        cmd
    }

    /// Runs `args` (program first, looked up on `PATH`) as this user.
    pub fn run(&self, args: &[&str]) -> Output {
        let (program, rest) = args.split_first().expect("a command");
        output(
            self.command(CTL_TIMEOUT_SECS, None, &[], Path::new(program))
                .args(rest),
        )
    }
}

impl Default for TestUser {
    fn default() -> Self {
        TestUser::new()
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = run(&["userdel", "-r", "-f", &self.name]);
        let _ = std::fs::remove_dir_all(format!("/tmp/switchyard-{}", self.uid));
    }
}

/// yardd as a [`TestUser`].
#[derive(Debug)]
pub struct UserDaemon<'u> {
    user: &'u TestUser,
    child: Option<Child>,
    /// The host namespace it runs in, if not the test's.
    netns: Option<String>,
    /// Its socket and state directory's parent, or `None` for yardd's
    /// defaults (yardctl then finds the socket by the same rule).
    dir: Option<PathBuf>,
    /// A command yardd runs under (e.g. `unshare -r`).
    wrapper: Vec<String>,
    log: PathBuf,
    _tmp: tempfile::TempDir,
}

impl<'u> UserDaemon<'u> {
    /// Starts yardd as `user` with its default socket and state directory
    /// and no `XDG_RUNTIME_DIR`.
    pub fn start_default(user: &'u TestUser) -> UserDaemon<'u> {
        UserDaemon::start(user, None, None, &[])
    }

    /// Like [`UserDaemon::start_default`], yardd run under `wrapper`
    /// (program and arguments, e.g. `["unshare", "-r"]`, which must `exec`
    /// yardd).
    pub fn start_wrapped(user: &'u TestUser, wrapper: &[&str]) -> UserDaemon<'u> {
        UserDaemon::start(user, None, None, wrapper)
    }

    /// Starts yardd as `user` inside host namespace `netns`, with its socket
    /// and state under `<home>/<label>`.
    pub fn start_in(user: &'u TestUser, netns: &str, label: &str) -> UserDaemon<'u> {
        let dir = user.home().join(label);
        std::fs::create_dir(&dir).expect("a directory for yardd");
        user.give(&dir);
        UserDaemon::start(user, Some(netns), Some(dir), &[])
    }

    fn start(
        user: &'u TestUser,
        netns: Option<&str>,
        dir: Option<PathBuf>,
        wrapper: &[&str],
    ) -> UserDaemon<'u> {
        let tmp = tempfile::Builder::new()
            .prefix("yard-rootless-")
            .tempdir()
            .expect("a temp dir for the log");
        let mut daemon = UserDaemon {
            user,
            child: None,
            netns: netns.map(str::to_string),
            dir,
            wrapper: wrapper.iter().map(|w| w.to_string()).collect(),
            log: tmp.path().join("yardd.log"),
            _tmp: tmp,
        };
        daemon.spawn();
        daemon
    }

    /// Starts yardd (again) and waits until it answers `status`.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "yardd is already running");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the log");
        let user = self.user;
        let mut cmd = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = user.command(3600, self.netns.as_deref(), &[], Path::new(program));
                cmd.args(args).arg(&user.yardd);
                cmd
            }
            None => user.command(3600, self.netns.as_deref(), &[], &user.yardd),
        };
        // No host uplink: a lab's containers never reach the real network.
        cmd.args(["--default-uplink", "none"]);
        if let Some(dir) = &self.dir {
            cmd.arg("--socket")
                .arg(dir.join("yardd.sock"))
                .arg("--state-dir")
                .arg(dir.join("state"));
        }
        cmd.stdout(file.try_clone().expect("clone the log"))
            .stderr(file);
        self.child = Some(cmd.spawn().expect("start yardd as the test user"));
        let ready = poll(READY_TIMEOUT, Duration::from_millis(100), || {
            self.ctl(&["status"]).status.success()
        });
        if !ready {
            let status = self.child.as_mut().and_then(|c| c.try_wait().ok());
            panic!(
                "rootless yardd did not answer within {READY_TIMEOUT:?} ({status:?})\n{}",
                self.log_text()
            );
        }
    }

    /// Stops yardd (SIGTERM by its pid, as a user would).
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            end_child(child, STOP_TIMEOUT);
        }
    }

    /// The user it runs as.
    pub fn user(&self) -> &TestUser {
        self.user
    }

    /// yardd's pid.
    pub fn pid(&self) -> u32 {
        child_of_timeout(self.child.as_ref().expect("yardd started"))
    }

    /// Everything yardd logged.
    pub fn log_text(&self) -> String {
        format!(
            "--- rootless yardd log ---\n{}\n--- end ---",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        )
    }

    fn socket_args(&self) -> Vec<OsString> {
        match &self.dir {
            Some(dir) => vec!["--socket".into(), dir.join("yardd.sock").into()],
            None => Vec::new(),
        }
    }

    /// A `yardctl` command as the user against this yardd, bounded by `secs`.
    pub fn ctl_command(&self, secs: u32, args: &[&str]) -> Command {
        let mut cmd = self.user.command(secs, None, &[], &self.user.yardctl);
        cmd.args(self.socket_args()).args(args);
        cmd
    }

    /// Runs `yardctl ARGS` as the user.
    pub fn ctl(&self, args: &[&str]) -> Output {
        output(&mut self.ctl_command(CTL_TIMEOUT_SECS, args))
    }

    /// Runs `yardctl ARGS` and panics with its output and the log unless
    /// it succeeds.
    pub fn ctl_ok(&self, args: &[&str]) -> Output {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "yardctl failed:\n{}\n{}",
            describe(&format!("yardctl {}", args.join(" ")), &out),
            self.log_text()
        );
        out
    }

    /// `yardctl --json ARGS` parsed.
    pub fn ctl_json(&self, args: &[&str]) -> serde_json::Value {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let out = self.ctl_ok(&full);
        serde_json::from_slice(&out.stdout).expect("yardctl --json output")
    }

    /// Starts `yardctl run ARGS` in the background with stdin and stdout
    /// piped; bounded by `secs`.
    pub fn spawn_run(&self, secs: u32, args: &[&str]) -> Child {
        let mut full = vec!["run"];
        full.extend_from_slice(args);
        self.ctl_command(secs, &full)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start yardctl run")
    }

    /// The ports, by name, each as `port ls --json` lists it (`state`,
    /// `reason`, …).
    pub fn port_states(&self) -> Vec<(String, serde_json::Value)> {
        let ports = self.ctl_json(&["port", "ls"]);
        ports
            .as_array()
            .expect("a port list")
            .iter()
            .map(|p| (p["name"].as_str().unwrap_or("").to_string(), p.clone()))
            .collect()
    }

    /// Waits until port `name` exists and is up.
    pub fn wait_port_up(&self, name: &str) {
        let up = poll(Duration::from_secs(20), Duration::from_millis(100), || {
            self.port_states()
                .iter()
                .any(|(n, port)| n == name && crate::lab::port_is_up(&port["state"]))
        });
        assert!(
            up,
            "port {name} not up: {:?}\n{}",
            self.port_states(),
            self.log_text()
        );
    }
}

impl Drop for UserDaemon<'_> {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("{}", self.log_text());
        }
    }
}

/// The pid of what `timeout` runs for `child` (a [`crate::cmd::timed`]
/// command whose program `exec`s the real one, as `setpriv`, `env` and
/// `ip netns exec` do).
pub fn child_of_timeout(child: &Child) -> u32 {
    let timeout_pid = child.id();
    let children = || {
        std::fs::read_to_string(format!("/proc/{timeout_pid}/task/{timeout_pid}/children"))
            .unwrap_or_default()
    };
    poll(Duration::from_secs(10), Duration::from_millis(20), || {
        !children().trim().is_empty()
    });
    children()
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no process under timeout {timeout_pid}"))
}

/// Waits for `child` (bounded by its `timeout`) and returns its output.
pub fn finish(child: Child) -> Output {
    child.wait_with_output().expect("wait for yardctl run")
}
