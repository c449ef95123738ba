//! Running external commands with a time bound, and describing what they did.
//!
//! Every command a lab runs goes through `timeout(1)`, so a wedged daemon or a
//! lost packet turns into a failed assertion, not a hung CI job. Failures show
//! the command line, its exit status, stdout and stderr.

use std::ffi::OsStr;
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The default bound on a single command, in seconds.
pub const DEFAULT_TIMEOUT_SECS: u32 = 60;

/// Exit status `timeout(1)` reports when it had to stop the command.
pub const TIMED_OUT: i32 = 124;

/// A command that runs `program` under `timeout --kill-after=5 SECS`.
pub fn timed(secs: u32, program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new("timeout");
    cmd.arg("--kill-after=5").arg(secs.to_string()).arg(program);
    cmd.stdin(Stdio::null());
    cmd
}

/// Renders a command line for messages: the program and its arguments.
pub fn command_line(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

/// What a finished command did, for a failure message.
pub fn describe(line: &str, output: &Output) -> String {
    let timed_out = if output.status.code() == Some(TIMED_OUT) {
        " (timed out)"
    } else {
        ""
    };
    format!(
        "$ {line}\nexit: {}{timed_out}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout).trim_end(),
        String::from_utf8_lossy(&output.stderr).trim_end()
    )
}

/// Runs `cmd` to completion and returns its output.
pub fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run `{}`: {e}", command_line(cmd)))
}

/// Runs `args` (program first) under the default timeout.
pub fn run(args: &[&str]) -> Output {
    let (program, rest) = args.split_first().expect("a command");
    output(timed(DEFAULT_TIMEOUT_SECS, program).args(rest))
}

/// Runs `args` and panics with its output unless it succeeds.
pub fn run_ok(args: &[&str]) -> Output {
    let out = run(args);
    assert!(
        out.status.success(),
        "command failed:\n{}",
        describe(&args.join(" "), &out)
    );
    out
}

/// Runs `args` inside network namespace `ns` (`ip netns exec`).
pub fn in_ns(ns: &str, args: &[&str]) -> Output {
    let mut full = vec!["ip", "netns", "exec", ns];
    full.extend_from_slice(args);
    run(&full)
}

/// Runs `args` inside `ns` and panics with its output unless it succeeds.
pub fn in_ns_ok(ns: &str, args: &[&str]) -> Output {
    let mut full = vec!["ip", "netns", "exec", ns];
    full.extend_from_slice(args);
    run_ok(&full)
}

/// True when `program` is found on `PATH`.
pub fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

/// The stdout of a command as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The stderr of a command as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Checks `ok` every `every` until it holds or `within` has passed (a last
/// check at the deadline included); returns whether it held. The bounded
/// wait for a condition, in place of a fixed pause: it costs nothing when
/// the condition already holds.
pub fn poll(within: Duration, every: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if ok() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(every);
    }
}

/// Ends a process this harness started, by its pid: SIGTERM, up to `grace`
/// to exit, then SIGKILL; reaps it either way.
///
/// The pid is signalled only while the child is unreaped (running, or a
/// zombie that still holds its pid): once reaped, by an earlier `try_wait`
/// of the caller's, its pid may already belong to another process.
pub fn end_child(mut child: Child, grace: Duration) {
    if !matches!(child.try_wait(), Ok(None)) {
        return;
    }
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
        sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}
