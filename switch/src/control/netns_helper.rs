//! The namespace helper: how a yardd without `CAP_SYS_ADMIN` (rootless)
//! still does its work inside a network namespace the user owns.
//!
//! A privileged yardd enters a namespace on a short-lived thread
//! ([`crate::sys::netns::run_in_netns`]). A rootless one cannot: to be
//! allowed into a network namespace made by `unshare -r -n` it must first
//! enter the user namespace that owns it, and the kernel lets only a
//! single-threaded process change its user namespace — yardd has a thread
//! per datapath, connection and watcher. So yardd runs itself again
//! (`/proc/self/exe` [`HELPER_ARG`], which `main` checks before anything
//! starts a thread) as a helper process per task, gives it the namespace's
//! fd over a `SOCK_SEQPACKET` socket on its stdin ([`crate::sys::fdpass`]),
//! and the helper enters the owning user namespace (`NS_GET_USERNS`; skipped
//! when it is yardd's own) and the network namespace, runs the
//! [`NetnsTask`] — the same code the privileged path runs on its thread —
//! and sends back the outcome and, for a TAP, the TAP's fd. Then it exits.
//!
//! Contract: [`needed`] says whether a task goes through the helper (yardd
//! lacks `CAP_SYS_ADMIN`); [`run`] runs one task and returns within
//! [`HELPER_TIMEOUT`] (the helper is killed, by its pid, past it). The
//! helper keeps no fd once it has exited, so yardd's only hold on the
//! namespace is the TAP fd, exactly as on the privileged path (no ghost:
//! the namespace watcher sees the namespace go when its last process does).
//! Failures come back as the same message the privileged path would give.

use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sched::{setns, CloneFlags};
use nix::sys::socket::{setsockopt, sockopt::ReceiveTimeout};
use nix::sys::time::TimeVal;
use serde::{Deserialize, Serialize};

use crate::control::adopt::{self, TapMode};
use crate::control::attach::{self, TapSetup};
use crate::control::default_route;
use crate::control::Object;
use crate::sys::fdpass::{recv_with_fds, send_with_fds, seqpacket_pair};
use crate::sys::netns::{NetnsError, NetnsRef};
use crate::sys::nsowner::{is_own_user_namespace, user_namespace_of};
use crate::sys::privilege::{self, Capability};

/// The hidden first argument that makes yardd run as the helper.
pub const HELPER_ARG: &str = "__netns-helper";

/// How long a helper may take before it is killed.
pub const HELPER_TIMEOUT: Duration = Duration::from_secs(20);

/// The largest request or reply message.
const MAX_MESSAGE: usize = 16 * 1024;

/// What is done inside the namespace.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum NetnsTask {
    /// Create (or with [`TapMode::CreateOrAdopt`] re-adopt) TAP `ifname`
    /// for `owner` and configure it; the TAP's fd comes back.
    Tap {
        /// The port or uplink.
        owner: Object,
        /// The interface.
        ifname: String,
        /// What to configure on it.
        setup: TapSetup,
        /// Whether yardd's TAP left from before may be re-adopted.
        mode: TapMode,
    },
    /// Make `ifname` carry the default route via `gateway`.
    DefaultRoute {
        /// The interface.
        ifname: String,
        /// The gateway.
        gateway: Ipv4Addr,
    },
    /// Delete `owner`'s persistent TAP `ifname` that no fd holds.
    DestroyLeftTap {
        /// The port or uplink.
        owner: Object,
        /// The interface.
        ifname: String,
    },
}

/// What a task did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskDone {
    /// The TAP is made (or re-adopted: `true`); its fd came with the reply.
    Tap {
        /// Whether an existing TAP was re-adopted.
        adopted: bool,
    },
    /// The route is in place.
    Route,
    /// Whether there was a TAP to delete.
    Destroyed(bool),
}

/// One request to the helper: the namespace as the user wrote it (for
/// messages; the namespace itself comes as an fd) and the task.
#[derive(Debug, Serialize, Deserialize)]
struct HelperRequest {
    netns: String,
    task: NetnsTask,
}

/// Why the helper could not do a task; the message is the one to show.
#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    /// The namespace could not be opened (in yardd).
    #[error("{0}")]
    Netns(#[from] NetnsError),
    /// The helper process could not be started or talked to.
    #[error("netns {netns}: the namespace helper ({HELPER_ARG}) failed: {detail}")]
    Process {
        /// The namespace as written.
        netns: String,
        /// What went wrong.
        detail: String,
    },
    /// The helper could not enter the namespace.
    #[error("{0}")]
    Enter(String),
    /// The task failed in the namespace: the message the privileged path
    /// gives for the same failure.
    #[error("{0}")]
    Task(String),
}

/// Whether work inside other network namespaces goes through the helper:
/// yardd lacks `CAP_SYS_ADMIN`, without which no thread of it may enter
/// one.
pub fn needed() -> bool {
    let admin = 1u64 << (Capability::SysAdmin as u32);
    privilege::current().map_or(true, |sets| sets.effective & admin == 0)
}

/// Runs `task` inside `ns` through a helper process; the outcome and, for
/// a TAP, its fd.
pub fn run(ns: &NetnsRef, task: NetnsTask) -> Result<(TaskDone, Option<OwnedFd>), HelperError> {
    let netns = ns.to_string();
    let process = |detail: String| HelperError::Process {
        netns: netns.clone(),
        detail,
    };
    let file = ns.open()?;
    let (ours, theirs) = seqpacket_pair().map_err(|e| process(format!("socketpair: {e}")))?;
    let mut child = Command::new("/proc/self/exe")
        .arg(HELPER_ARG)
        .stdin(Stdio::from(theirs))
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| process(format!("cannot start it: {e}")))?;
    let result = exchange(&ours, &file, &netns, task).map_err(process);
    if result.is_err() {
        // Stuck or broken: it is ours, by its pid.
        let _ = child.kill();
    }
    let status = child.wait();
    let (reply, fds) = result?;
    match reply {
        Some(Reply::Done(done)) => {
            let fd = fds.into_iter().next();
            if matches!(done, TaskDone::Tap { .. }) && fd.is_none() {
                return Err(process("it made the TAP but sent no fd".into()));
            }
            Ok((done, fd))
        }
        Some(Reply::CannotEnter(message)) => Err(HelperError::Enter(message)),
        Some(Reply::Failed(message)) => Err(HelperError::Task(message)),
        None => Err(process(format!("it ended without an answer ({status:?})"))),
    }
}

/// The helper's answer: what the task did, or why it failed.
#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    Done(TaskDone),
    CannotEnter(String),
    Failed(String),
}

/// Sends the request with the namespace's fd and reads the reply.
fn exchange(
    socket: &OwnedFd,
    netns_file: &std::fs::File,
    netns: &str,
    task: NetnsTask,
) -> Result<(Option<Reply>, Vec<OwnedFd>), String> {
    let request = HelperRequest {
        netns: netns.to_string(),
        task,
    };
    let bytes = serde_json::to_vec(&request).map_err(|e| e.to_string())?;
    send_with_fds(socket.as_fd(), &bytes, &[netns_file.as_fd()])
        .map_err(|e| format!("cannot send it the request: {e}"))?;
    let timeout = TimeVal::new(HELPER_TIMEOUT.as_secs() as _, 0);
    setsockopt(socket, ReceiveTimeout, &timeout).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; MAX_MESSAGE];
    let (n, fds) = recv_with_fds(socket.as_fd(), &mut buf)
        .map_err(|e| format!("no reply within {HELPER_TIMEOUT:?}: {e}"))?;
    if n == 0 {
        // It died before answering: `run` reports its exit status.
        return Ok((None, fds));
    }
    let reply = serde_json::from_slice(&buf[..n]).map_err(|e| format!("bad reply: {e}"))?;
    Ok((Some(reply), fds))
}

/// The helper process: reads one request from the socket on stdin, enters
/// the namespaces, runs the task, replies, and returns the exit status.
/// yardd's `main` calls it first thing, while the process has one thread.
pub fn helper_main() -> i32 {
    let socket = match std::io::stdin().as_fd().try_clone_to_owned() {
        Ok(socket) => socket,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "yardd {HELPER_ARG}: no socket on stdin: {e}"
            );
            return 2;
        }
    };
    let mut buf = vec![0u8; MAX_MESSAGE];
    let received = recv_with_fds(socket.as_fd(), &mut buf)
        .ok()
        .and_then(|(n, mut fds)| {
            let request = serde_json::from_slice::<HelperRequest>(&buf[..n]).ok()?;
            (fds.len() == 1).then(|| (request, fds.remove(0)))
        });
    let Some((request, netns_file)) = received else {
        let _ = writeln!(
            std::io::stderr(),
            "yardd {HELPER_ARG}: internal to yardd, not for use by hand"
        );
        return 2;
    };
    let (reply, fd) = match enter(&request.netns, netns_file) {
        Ok(()) => run_here(request.task, &request.netns),
        Err(message) => (Reply::CannotEnter(message), None),
    };
    let Ok(bytes) = serde_json::to_vec(&reply) else {
        return 1;
    };
    let fds: Vec<_> = fd.iter().map(|fd| fd.as_fd()).collect();
    match send_with_fds(socket.as_fd(), &bytes, &fds) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

/// Enters the user namespace owning `netns_file` (unless it is ours), then
/// the network namespace.
fn enter(netns: &str, netns_file: OwnedFd) -> Result<(), String> {
    let userns = user_namespace_of(&netns_file)
        .map_err(|e| format!("netns {netns}: cannot find the user namespace that owns it: {e}"))?;
    let own = is_own_user_namespace(&userns)
        .map_err(|e| format!("netns {netns}: cannot compare user namespaces: {e}"))?;
    if !own {
        setns(&userns, CloneFlags::CLONE_NEWUSER).map_err(|e| {
            format!(
                "netns {netns}: cannot enter the user namespace that owns it ({}): a rootless yardd \
                 attaches only into network namespaces whose user namespace its own user made \
                 (`unshare -r -n`, rootless podman) — or run yardd as root",
                e.desc()
            )
        })?;
    }
    setns(&netns_file, CloneFlags::CLONE_NEWNET).map_err(|e| {
        if own {
            format!(
                "netns {netns}: cannot enter it ({}): it belongs to yardd's own user namespace, \
                 where a rootless yardd has no privilege; give it a namespace made by your user \
                 (`unshare -r -n`, then --netns /proc/PID/ns/net), or run yardd as root",
                e.desc()
            )
        } else {
            format!("netns {netns}: cannot enter it: {}", e.desc())
        }
    })?;
    Ok(())
}

/// Runs `task` in the current namespace (the helper's, once entered).
fn run_here(task: NetnsTask, netns: &str) -> (Reply, Option<OwnedFd>) {
    match task {
        NetnsTask::Tap {
            owner,
            ifname,
            setup,
            mode,
        } => match attach::create_tap_here(&owner, &ifname, &setup, mode) {
            Ok((fd, adopted)) => (Reply::Done(TaskDone::Tap { adopted }), Some(fd)),
            Err(failure) => {
                let error = attach::tap_error(owner, Some(netns.to_string()), &ifname, failure);
                (Reply::Failed(error.to_string()), None)
            }
        },
        NetnsTask::DefaultRoute { ifname, gateway } => {
            let reply = match default_route::set_here(&ifname, gateway) {
                Ok(()) => Reply::Done(TaskDone::Route),
                Err(e) => Reply::Failed(e.to_string()),
            };
            (reply, None)
        }
        NetnsTask::DestroyLeftTap { owner, ifname } => {
            let reply = match adopt::destroy_left_tap_here(&owner, &ifname) {
                Ok(destroyed) => Reply::Done(TaskDone::Destroyed(destroyed)),
                Err(e) => Reply::Failed(e.to_string()),
            };
            (reply, None)
        }
    }
}
