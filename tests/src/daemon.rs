//! A `yardd` guard: a daemon on a private socket and state directory.
//!
//! [`Daemon::start_new`] spawns yardd with `--socket <tmp>/yardd.sock
//! --state-dir <tmp>/state`, appends its stdout and stderr to `<tmp>/yardd.log`,
//! and waits (at most [`READY_TIMEOUT`]) until `yardctl status` answers.
//! [`Daemon::stop`] and [`Daemon::start`] restart it on the same state directory.
//! [`Daemon::start_new_with`] adds command-line arguments (e.g. `--threads 2`)
//! that every start of that daemon passes again. yardd starts with
//! `--default-uplink none` unless those arguments say otherwise.
//! `Drop` stops the process it spawned, by pid (SIGTERM, then SIGKILL), and
//! prints the log when the test is failing.

use std::cell::Cell;
use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::bins::bins;
use crate::cmd::{command_line, describe, end_child, output, timed};

/// How long yardd may take to answer `status` after it is spawned.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long yardd may take to exit after SIGTERM before it gets SIGKILL.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Bound on one yardctl invocation, in seconds.
pub const CTL_TIMEOUT_SECS: u32 = 30;

/// Lines of the yardd log shown in a failure message.
const LOG_TAIL_LINES: usize = 150;

/// `--default-uplink none` unless `args` choose: a lab's yardd starts with
/// no uplink, as before the host uplink existed, so nothing a test sends
/// can leave through yardd's own sockets unless the test asks for it.
pub fn default_uplink_none(args: &[OsString]) -> Vec<OsString> {
    if args.iter().any(|a| a == "--default-uplink") {
        Vec::new()
    } else {
        vec!["--default-uplink".into(), "none".into()]
    }
}

/// A running (or stopped) yardd with its own socket and state directory.
#[derive(Debug)]
pub struct Daemon {
    child: Option<Child>,
    starts: u32,
    /// Extra yardd arguments, passed on every start.
    args: Vec<OsString>,
    /// Set once a failure message has included the log, so `Drop` does not
    /// print it a second time.
    log_shown: Cell<bool>,
    socket: PathBuf,
    state_dir: PathBuf,
    log: PathBuf,
    // Last: removed after the process is gone.
    dir: TempDir,
}

impl Daemon {
    /// Creates the private directory and starts yardd in it.
    pub fn start_new() -> Daemon {
        Daemon::start_new_with(&[])
    }

    /// Like [`Daemon::start_new`], with `args` appended to yardd's command
    /// line on this and every later start.
    pub fn start_new_with(args: &[&str]) -> Daemon {
        let mut daemon = Daemon::unstarted_with(args);
        daemon.start();
        daemon
    }

    /// Creates the private directory (socket, state, log) without starting
    /// yardd, e.g. to seed a state file first.
    pub fn unstarted() -> Daemon {
        Daemon::unstarted_with(&[])
    }

    /// Like [`Daemon::unstarted`], with `args` for every start.
    pub fn unstarted_with(args: &[&str]) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("yard-lab-")
            .tempdir()
            .expect("create a temp dir for yardd");
        let state_dir = dir.path().join("state");
        std::fs::create_dir(&state_dir).expect("create the state dir");
        Daemon {
            child: None,
            starts: 0,
            args: args.iter().map(OsString::from).collect(),
            log_shown: Cell::new(false),
            socket: dir.path().join("yardd.sock"),
            state_dir,
            log: dir.path().join("yardd.log"),
            dir,
        }
    }

    /// The extra arguments yardd gets on every start.
    pub fn args(&self) -> &[OsString] {
        &self.args
    }

    /// The private directory holding socket, state and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The control socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// A raw connection to the control socket (for tests that speak the
    /// line protocol themselves) whose reads and writes give up after
    /// `timeout`, so a daemon that stops answering fails the test instead
    /// of hanging it.
    pub fn connect(&self, timeout: Duration) -> UnixStream {
        let stream = UnixStream::connect(&self.socket)
            .unwrap_or_else(|e| panic!("connect to yardd: {e}\n{}", self.log_tail()));
        stream
            .set_read_timeout(Some(timeout))
            .expect("a timeout on the control connection");
        stream
            .set_write_timeout(Some(timeout))
            .expect("a timeout on the control connection");
        stream
    }

    /// Reads one reply line from `stream`, parsed as JSON; panics with the
    /// log's tail when no line comes or it is not JSON.
    pub fn reply_line(&self, stream: &UnixStream) -> serde_json::Value {
        let mut reply = String::new();
        BufReader::new(stream)
            .read_line(&mut reply)
            .unwrap_or_else(|e| panic!("no reply line from yardd: {e}\n{}", self.log_tail()));
        serde_json::from_str(&reply).unwrap_or_else(|e| {
            panic!(
                "yardd's reply is not a JSON line ({e}): {reply:?}\n{}",
                self.log_tail()
            )
        })
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The state file, `<state-dir>/state.json`.
    pub fn state_file(&self) -> PathBuf {
        self.state_dir.join("state.json")
    }

    /// The pid of the running yardd.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// How many io_uring instances the running yardd holds (its fds that
    /// are `anon_inode:[io_uring]`): one per TAP port handle batching its
    /// I/O (`yardd --io uring`), none with `--io plain` or after a fallback.
    pub fn io_uring_count(&self) -> usize {
        let pid = self.pid().expect("yardd is not running");
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap_or_else(|e| panic!("cannot list /proc/{pid}/fd: {e}"));
        fds.filter_map(Result::ok)
            .filter_map(|fd| std::fs::read_link(fd.path()).ok())
            .filter(|target| target.as_os_str() == "anon_inode:[io_uring]")
            .count()
    }

    /// How many packet-socket receive rings the running yardd has mapped
    /// (its shared mappings of a `socket:[...]`): one per packet (veth) port
    /// reading through a ring (`yardd --packet-io ring`), none with
    /// `--packet-io plain` or after a fallback.
    pub fn packet_ring_count(&self) -> usize {
        let pid = self.pid().expect("yardd is not running");
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
            .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/maps: {e}"));
        maps.lines()
            .filter(|line| {
                let mut fields = line.split_whitespace();
                let shared = fields.nth(1).is_some_and(|perms| perms.ends_with('s'));
                shared && fields.last().is_some_and(|f| f.starts_with("socket:["))
            })
            .count()
    }

    /// Whether the spawned yardd is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Everything yardd has logged so far, over all its starts.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last lines of the log, framed for a failure message.
    pub fn log_tail(&self) -> String {
        self.log_shown.set(true);
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(LOG_TAIL_LINES);
        format!(
            "--- yardd log ({}, last {} lines) ---\n{}\n--- end of yardd log ---",
            self.log.display(),
            lines.len() - from,
            lines[from..].join("\n")
        )
    }

    /// Spawns yardd on this directory without waiting for it to be ready.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "yardd is already running");
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the yardd log");
        let _ = writeln!(log, "=== harness: yardd start #{} ===", self.starts);
        let err = log.try_clone().expect("clone the log handle");
        let level = std::env::var("YARD_TEST_LOG").unwrap_or_else(|_| "info".into());
        let child = Command::new(&bins().yardd)
            .arg("--socket")
            .arg(&self.socket)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .arg("--log")
            .arg(level)
            .args(default_uplink_none(&self.args))
            .args(&self.args)
            .env_remove("YARD_SOCKET")
            // The log is a file: no terminal colour codes in it.
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", bins().yardd.display()));
        self.child = Some(child);
    }

    /// Spawns yardd and waits until it answers `status`; panics with the log
    /// if it exits or does not answer within [`READY_TIMEOUT`].
    pub fn start(&mut self) {
        self.spawn();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                panic!(
                    "yardd exited during start-up: {status}\n{}",
                    self.log_tail()
                );
            }
            let out = self.ctl(&["status"]);
            if out.status.success() {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "yardd did not answer `status` within {READY_TIMEOUT:?}\n{}\n{}",
                    describe("yardctl status", &out),
                    self.log_tail()
                );
            }
            sleep(Duration::from_millis(100));
        }
    }

    /// Spawns yardd and waits for it to exit on its own (e.g. refusing a
    /// corrupt state file); panics if it is still running after `within`.
    pub fn run_until_exit(&mut self, within: Duration) -> ExitStatus {
        self.spawn();
        let deadline = Instant::now() + within;
        loop {
            let child = self.child.as_mut().expect("spawned");
            if let Some(status) = child.try_wait().expect("wait for yardd") {
                self.child = None;
                return status;
            }
            if Instant::now() >= deadline {
                self.kill_now();
                panic!(
                    "yardd was expected to exit but still ran after {within:?}\n{}",
                    self.log_tail()
                );
            }
            sleep(Duration::from_millis(50));
        }
    }

    /// Sends `signal` to yardd (by the pid spawned) and waits for it to exit;
    /// sends SIGKILL if it has not exited after [`STOP_TIMEOUT`].
    pub fn stop(&mut self, signal: Signal) -> ExitStatus {
        let mut child = self.child.take().expect("yardd is not running");
        // Reaped already (it exited): its pid may be another process's now.
        if let Some(status) = child.try_wait().expect("wait for yardd") {
            return status;
        }
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits in i32"));
        let _ = kill(pid, signal);
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("wait for yardd") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "yardd ignored {signal:?} for {STOP_TIMEOUT:?} and was killed\n{}",
                    self.log_tail()
                );
            }
            sleep(Duration::from_millis(50));
        }
    }

    fn kill_now(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A `yardctl --socket <ours>` command, bounded by [`CTL_TIMEOUT_SECS`].
    pub fn ctl_command(&self, args: &[&str]) -> Command {
        let mut cmd = timed(CTL_TIMEOUT_SECS, &bins().yardctl);
        cmd.arg("--socket").arg(&self.socket).args(args);
        cmd.env_remove("YARD_SOCKET");
        cmd
    }

    /// Runs yardctl with `args` and returns what it did.
    pub fn ctl(&self, args: &[&str]) -> Output {
        output(&mut self.ctl_command(args))
    }

    /// Runs yardctl with `args`; panics with its output and the yardd log
    /// unless it succeeds.
    pub fn ctl_ok(&self, args: &[&str]) -> Output {
        let mut cmd = self.ctl_command(args);
        let out = output(&mut cmd);
        if !out.status.success() {
            panic!(
                "yardctl failed:\n{}\n{}",
                describe(&command_line(&cmd), &out),
                self.log_tail()
            );
        }
        out
    }

    /// Runs yardctl with `args`, asserts it fails with a message on stderr,
    /// and returns that message.
    pub fn ctl_err(&self, args: &[&str]) -> String {
        let mut cmd = self.ctl_command(args);
        let out = output(&mut cmd);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        if out.status.success() || out.status.code() == Some(crate::cmd::TIMED_OUT) {
            panic!(
                "yardctl was expected to fail (non-zero exit, message on stderr):\n{}\n{}",
                describe(&command_line(&cmd), &out),
                self.log_tail()
            );
        }
        assert!(
            !err.trim().is_empty(),
            "yardctl failed without a message on stderr:\n{}",
            describe(&command_line(&cmd), &out)
        );
        err
    }

    /// Runs `yardctl --json <args>` and parses its stdout; panics with the
    /// output and the log if it fails or is not JSON.
    pub fn ctl_json(&self, args: &[&str]) -> serde_json::Value {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let out = self.ctl_ok(&full);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "`yardctl --json {}` did not print JSON ({e}):\n{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// The names of the configured ports, as `port ls` lists them.
    pub fn port_names(&self) -> Vec<String> {
        self.ctl_json(&["port", "ls"])
            .as_array()
            .expect("port ls --json is an array")
            .iter()
            .map(|p| p["name"].as_str().expect("a port has a name").to_string())
            .collect()
    }

    /// Like [`Daemon::ctl_json`], deserialised into `T` (e.g. the API types
    /// of `yard_ctl::api`).
    pub fn ctl_parse<T: serde::de::DeserializeOwned>(&self, args: &[&str]) -> T {
        let value = self.ctl_json(args);
        serde_json::from_value(value.clone()).unwrap_or_else(|e| {
            panic!(
                "`yardctl --json {}` printed JSON of an unexpected shape ({e}):\n{value:#}",
                args.join(" ")
            )
        })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            end_child(child, Duration::from_secs(5));
        }
        if std::thread::panicking() && !self.log_shown.get() {
            eprintln!("{}", self.log_tail());
        }
    }
}
