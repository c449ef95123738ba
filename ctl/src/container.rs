//! `yardctl run`: a command in a new user and network namespace attached to
//! a network — a lab container with no image and no root.
//!
//! How: yardctl starts itself again (`/proc/self/exe` [`CHILD_ARG`]) as the
//! container's first process, which — single-threaded, as `unshare` of a
//! user namespace requires — unshares a user and a network namespace, maps
//! uid and gid 0 inside to the caller's uid and gid (one id each, as
//! `unshare -r` does), says it is ready over a socket it inherited and waits.
//! yardctl then adds a TAP port into `/proc/CHILD/ns/net` through yardd
//! (which, rootless, makes it through its namespace helper), tells the child
//! to go, and the child `exec`s the command. Standard input, output, error
//! and the terminal are the child's from the start; the command's exit code
//! becomes yardctl's (128 + N when a signal N killed it). When the command
//! has exited yardctl removes the port. SIGINT, SIGTERM, SIGHUP and SIGQUIT
//! sent to yardctl are passed to the child, and the port is still removed
//! once it has gone.
//!
//! Contract: [`run`] returns the exit status; when yardctl itself fails
//! (yardd unreachable, port refused) it prints `yardctl: …` and returns
//! [`EXIT_RUN_FAILED`] with the child stopped and no port left behind.
//! yardctl signals only the child it started, by its pid, and only while
//! that child is unreaped (so never a reused pid). If yardctl itself is
//! killed (SIGKILL), the command is killed too (its parent-death signal),
//! and its port, which yardctl could not remove, goes down with its
//! namespace.

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sched::{unshare, CloneFlags};
use nix::sys::prctl::set_pdeathsig;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::socket::{
    recv, send, setsockopt, socketpair, sockopt::ReceiveTimeout, AddressFamily, MsgFlags, SockFlag,
    SockType,
};
use nix::sys::time::TimeVal;
use nix::sys::wait::{waitid, Id, WaitPidFlag};
use nix::unistd::{getgid, getppid, getuid, Pid};

use crate::api::{PortKind, PortSpec, Reply, Request};
use crate::client::Client;
use crate::types::Ipv4Cidr;

/// The hidden first argument that makes yardctl the container's first
/// process.
pub const CHILD_ARG: &str = "__run-child";

/// The environment variable that tells the child its socket's fd.
const SOCKET_FD_ENV: &str = "YARD_RUN_SOCKET_FD";

/// Exit status when `yardctl run` itself failed (Docker's choice for
/// `docker run`).
pub const EXIT_RUN_FAILED: u8 = 125;

/// Exit status of the child when the command cannot be run.
const EXIT_CANNOT_EXEC: i32 = 127;

/// How long the child may take to make its namespaces.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The signals yardctl passes on to the command.
const FORWARDED: [Signal; 4] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

/// What `yardctl run` was asked.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The network.
    pub net: String,
    /// The address, or `None` for the next free one.
    pub ip: Option<Ipv4Cidr>,
    /// The port's name, or `None` for `run-PID`.
    pub name: Option<String>,
    /// The command and its arguments.
    pub command: Vec<OsString>,
}

/// The name of a port made for child `pid` when none was given.
pub fn generated_name(pid: u32) -> String {
    format!("run-{pid}")
}

/// The exit status yardctl passes on for a command that ended with `code`
/// or was killed by `signal`.
pub fn exit_status_of(code: Option<i32>, signal: Option<i32>) -> u8 {
    match (code, signal) {
        (Some(code), _) => (code & 0xff) as u8,
        (None, Some(signal)) => (128 + signal).clamp(0, 255) as u8,
        (None, None) => EXIT_RUN_FAILED,
    }
}

/// The child, shared with the signal thread until it has exited.
struct Running {
    pid: Pid,
    exited: bool,
    /// The last stop signal passed on to the child, if any.
    forwarded: Option<Signal>,
}

/// Runs `spec` against yardd at `socket`; returns the exit status.
pub fn run(socket: &Path, spec: &RunSpec, stderr: &mut dyn Write) -> u8 {
    match start_and_wait(socket, spec, stderr) {
        Ok(status) => status,
        Err(message) => {
            let _ = writeln!(stderr, "yardctl: {message}");
            EXIT_RUN_FAILED
        }
    }
}

fn start_and_wait(socket: &Path, spec: &RunSpec, stderr: &mut dyn Write) -> Result<u8, String> {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::empty(),
    )
    .map_err(|e| format!("socketpair: {e}"))?;
    // Only the child's end is inherited.
    fcntl(ours.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
        .map_err(|e| format!("fcntl: {e}"))?;
    let child = Command::new("/proc/self/exe")
        .arg(CHILD_ARG)
        .arg("--")
        .args(&spec.command)
        .env(SOCKET_FD_ENV, theirs.as_raw_fd().to_string())
        .spawn()
        .map_err(|e| format!("cannot start the container process: {e}"));
    drop(theirs);
    let mut child = child?;
    // Blocked only now, as the child inherits the mask (and so would the
    // command): from here on the signal thread alone receives them. One
    // that comes before ends yardctl, the child then sees its socket close
    // and ends too, and no port exists yet.
    let mut signals = SigSet::empty();
    for signal in FORWARDED {
        signals.add(signal);
    }
    if let Err(e) = signals.thread_block() {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("cannot block signals: {e}"));
    }
    let pid = Pid::from_raw(child.id() as i32);
    let running = Arc::new(Mutex::new(Running {
        pid,
        exited: false,
        forwarded: None,
    }));
    let forwarded = running.clone();
    std::thread::Builder::new()
        .name("yardctl-signals".into())
        .spawn(move || loop {
            let Ok(signal) = signals.wait() else { return };
            let mut running = forwarded.lock().unwrap_or_else(|p| p.into_inner());
            if !running.exited {
                running.forwarded = Some(signal);
                let _ = kill(running.pid, signal);
            }
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;

    let name = spec
        .name
        .clone()
        .unwrap_or_else(|| generated_name(child.id()));
    let attached = wait_ready(&ours).and_then(|()| add_port(socket, spec, &name, child.id()));
    let added = attached.is_ok();
    let started = attached.and_then(|()| {
        send(ours.as_raw_fd(), b"go", MsgFlags::empty())
            .map(drop)
            .map_err(|e| format!("the container process went away before its command started: {e}"))
    });
    if started.is_err() {
        stop(&running);
    }
    let status = wait_child(&mut child, &running);
    if added {
        if let Err(message) = remove_port(socket, &name) {
            let _ = writeln!(stderr, "yardctl: {message}");
        }
    }
    let status = status?;
    // A stop signal passed on while the container was being set up ended
    // it before its command ran (whether the child died of it or went away
    // as it arrived and was then stopped): the run ended by that signal,
    // as it would have a moment later.
    if started.is_err() {
        let forwarded = running.lock().unwrap_or_else(|p| p.into_inner()).forwarded;
        let died_of = status
            .signal()
            .and_then(|n| FORWARDED.iter().copied().find(|s| *s as i32 == n));
        if let Some(signal) = died_of.or(forwarded) {
            return Ok(exit_status_of(None, Some(signal as i32)));
        }
    }
    started?;
    Ok(exit_status_of(status.code(), status.signal()))
}

/// Waits for the child's "ready" (its namespaces exist).
fn wait_ready(socket: &OwnedFd) -> Result<(), String> {
    let timeout = TimeVal::new(READY_TIMEOUT.as_secs() as _, 0);
    setsockopt(socket, ReceiveTimeout, &timeout).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 256];
    let n = recv(socket.as_fd().as_raw_fd(), &mut buf, MsgFlags::empty())
        .map_err(|e| format!("the container process did not get ready: {e}"))?;
    match &buf[..n] {
        b"ready" => Ok(()),
        b"" => Err("the container process ended before it was ready".into()),
        why => Err(String::from_utf8_lossy(why).into_owned()),
    }
}

fn call(socket: &Path, request: &Request) -> Result<(), String> {
    let mut client = Client::connect(socket).map_err(|e| e.to_string())?;
    match client.call(request) {
        Ok(Reply::Ok(_)) => Ok(()),
        Ok(Reply::Error(e)) => Err(e.message),
        Err(e) => Err(e.to_string()),
    }
}

fn add_port(socket: &Path, spec: &RunSpec, name: &str, pid: u32) -> Result<(), String> {
    let netns = format!("/proc/{pid}/ns/net");
    let mut kind = PortKind::tap(&spec.net, Some(&netns), spec.ip);
    // Should yardctl itself be killed outright, the command dies with it
    // and yardd removes the port when its namespace goes.
    if let PortKind::Tap { auto_remove, .. } = &mut kind {
        *auto_remove = true;
    }
    let request = Request::PortAdd(PortSpec {
        name: name.to_string(),
        kind,
    });
    call(socket, &request)
}

fn remove_port(socket: &Path, name: &str) -> Result<(), String> {
    call(
        socket,
        &Request::PortRm {
            name: name.to_string(),
        },
    )
    .map_err(|e| {
        format!("cannot remove port {name}: {e} — remove it with `yardctl port rm {name}`")
    })
}

/// Kills the child (it never started the command).
fn stop(running: &Mutex<Running>) {
    let running = running.lock().unwrap_or_else(|p| p.into_inner());
    if !running.exited {
        let _ = kill(running.pid, Signal::SIGKILL);
    }
}

/// Waits until the child has exited, marks it so no signal is sent to its
/// pid any more, then reaps it.
fn wait_child(
    child: &mut Child,
    running: &Mutex<Running>,
) -> Result<std::process::ExitStatus, String> {
    let pid = Pid::from_raw(child.id() as i32);
    loop {
        // WNOWAIT: the child stays a zombie, its pid not reusable, until
        // `exited` is set below.
        match waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
            Ok(_) => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("cannot wait for the container process: {e}")),
        }
    }
    running.lock().unwrap_or_else(|p| p.into_inner()).exited = true;
    child
        .wait()
        .map_err(|e| format!("cannot wait for the container process: {e}"))
}

/// The container's first process: `yardctl __run-child -- CMD ARGS…`.
/// Returns only when it fails (otherwise it becomes CMD).
pub fn child_main(args: &[OsString]) -> i32 {
    let command = match args {
        [dashes, rest @ ..] if dashes == "--" && !rest.is_empty() => rest,
        _ => {
            eprintln!("yardctl {CHILD_ARG}: internal to `yardctl run`, not for use by hand");
            return EXIT_CANNOT_EXEC;
        }
    };
    let Some(socket) = std::env::var(SOCKET_FD_ENV)
        .ok()
        .and_then(|fd| fd.parse::<RawFd>().ok())
    else {
        eprintln!("yardctl {CHILD_ARG}: internal to `yardctl run`, not for use by hand");
        return EXIT_CANNOT_EXEC;
    };
    std::env::remove_var(SOCKET_FD_ENV);
    let report = |message: String| {
        let _ = send(socket, message.as_bytes(), MsgFlags::empty());
    };
    if let Err(message) = make_namespaces() {
        report(message);
        return EXIT_CANNOT_EXEC;
    }
    report("ready".into());
    let mut go = [0u8; 8];
    match recv(socket, &mut go, MsgFlags::empty()) {
        Ok(2) if &go[..2] == b"go" => {}
        _ => return EXIT_CANNOT_EXEC,
    }
    let _ = nix::unistd::close(socket);
    let error = Command::new(&command[0]).args(&command[1..]).exec();
    eprintln!(
        "yardctl run: cannot run {}: {error}",
        command[0].to_string_lossy()
    );
    EXIT_CANNOT_EXEC
}

/// Unshares a user and a network namespace and maps 0 inside to the
/// caller's uid and gid.
fn make_namespaces() -> Result<(), String> {
    let (uid, gid, parent) = (getuid(), getgid(), getppid());
    unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET).map_err(|e| {
        format!(
            "cannot create a user and network namespace ({}): check that user namespaces are enabled \
             (sysctl user.max_user_namespaces > 0; on Debian/Ubuntu kernel.unprivileged_userns_clone=1, \
             on Ubuntu 24.04+ the AppArmor restriction kernel.apparmor_restrict_unprivileged_userns=0)",
            e.desc()
        )
    })?;
    let write = |file: &str, text: String| {
        std::fs::write(format!("/proc/self/{file}"), text)
            .map_err(|e| format!("cannot write /proc/self/{file}: {e}"))
    };
    write("setgroups", "deny".into())?;
    write("uid_map", format!("0 {uid} 1"))?;
    write("gid_map", format!("0 {gid} 1"))?;
    // After the new credentials (which clear it): the command dies with
    // yardctl. A yardctl already gone leaves no one to attach the port.
    set_pdeathsig(Signal::SIGKILL)
        .map_err(|e| format!("cannot set the parent-death signal: {e}"))?;
    if getppid() != parent {
        return Err("yardctl ended before the container was ready".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_pass_through_and_signals_add_128() {
        assert_eq!(exit_status_of(Some(0), None), 0);
        assert_eq!(exit_status_of(Some(3), None), 3);
        assert_eq!(exit_status_of(Some(255), None), 255);
        assert_eq!(exit_status_of(None, Some(2)), 130);
        assert_eq!(exit_status_of(None, Some(15)), 143);
        assert_eq!(exit_status_of(None, None), EXIT_RUN_FAILED);
    }

    #[test]
    fn ports_are_named_after_the_child() {
        assert_eq!(generated_name(4242), "run-4242");
    }
}
