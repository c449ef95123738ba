//! A seccomp allowlist for the datapath threads: after setup they only
//! poll, read, write, send, receive and manage their memory, so every other
//! system call is refused.
//!
//! Contract: [`install`] puts a classic-BPF filter on the *calling thread*
//! only (no `SECCOMP_FILTER_FLAG_TSYNC`), so the control thread and the
//! short-lived threads that enter namespaces keep every system call. The
//! filter checks the architecture first (a system call of another ABI is
//! refused: the numbers would mean something else), then allows exactly
//! [`DATAPATH_SYSCALLS`]; anything else kills the whole process
//! ([`Violation::Kill`]: the call traps (`SECCOMP_RET_TRAP`) into a `SIGSYS`
//! handler that writes one line naming the call's number to stderr, then
//! yardd dies by `SIGSYS` as with `SECCOMP_RET_KILL_PROCESS`, which the
//! kernel only reports when an audit daemon runs) or, with
//! [`Violation::Log`], is allowed and logged by the kernel (`dmesg`:
//! `type=1326 ... syscall=N`), to find what a new code path needs. The
//! filter needs `no_new_privs` or `CAP_SYS_ADMIN`; yardd has both.

use std::io;

/// What happens when a datapath thread makes a system call outside the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// Say which call on stderr and kill the process by `SIGSYS`.
    Kill,
    /// Allow it and have the kernel log it (`SECCOMP_RET_LOG`).
    Log,
}

/// The system calls a datapath thread makes once it runs, and why.
pub const DATAPATH_SYSCALLS: &[libc::c_long] = &[
    // The per-frame path, most frequent first (the filter tests in order):
    // TAP read/write, AF_PACKET and tunnel batches, the poll loop.
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_recvmmsg,
    libc::SYS_sendmmsg,
    libc::SYS_recvmsg,
    libc::SYS_sendmsg,
    libc::SYS_recvfrom,
    libc::SYS_sendto,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_pwait2,
    // TAP batches through io_uring (`sys::uring`): submitting and waiting
    // only; rings are set up on the control thread.
    libc::SYS_io_uring_enter,
    // Commands between batches: registering and dropping port fds (mio),
    // waking other threads, channels and locks, clocks and timers.
    libc::SYS_epoll_ctl,
    libc::SYS_close,
    libc::SYS_fcntl,
    libc::SYS_futex,
    libc::SYS_sched_yield,
    libc::SYS_clock_gettime,
    // Busy polling checks whether other tasks wait for a CPU: the CPU's
    // pressure file, opened before the filter, or the thread's preemptions.
    libc::SYS_pread64,
    libc::SYS_getrusage,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_ppoll,
    libc::SYS_getsockopt,
    libc::SYS_setsockopt,
    libc::SYS_ioctl,
    libc::SYS_dup3,
    // A QEMU stream port accepts its VM's connection on the datapath thread.
    libc::SYS_accept4,
    // The allocator, and what a thread does when it ends or panics.
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_madvise,
    libc::SYS_mprotect,
    libc::SYS_brk,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_getrandom,
    libc::SYS_gettid,
    libc::SYS_getpid,
    libc::SYS_tgkill,
    libc::SYS_restart_syscall,
    libc::SYS_exit,
    libc::SYS_exit_group,
    // Older spellings the C library may still use on x86_64.
    #[cfg(target_arch = "x86_64")]
    libc::SYS_epoll_wait,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_poll,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_dup,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_dup2,
];

/// What the home datapath thread may call besides: the host uplink's relay
/// runs there and makes, connects, binds and shuts down its host sockets
/// (accepting and socket options are on the list already).
pub const HOST_RELAY_SYSCALLS: &[libc::c_long] = &[
    libc::SYS_socket,
    libc::SYS_connect,
    libc::SYS_bind,
    libc::SYS_shutdown,
    libc::SYS_getsockname,
    libc::SYS_getpeername,
];

/// The list a datapath thread installs: [`DATAPATH_SYSCALLS`], and on the
/// home thread (`home`) [`HOST_RELAY_SYSCALLS`] after them.
pub fn datapath_syscalls(home: bool) -> Vec<libc::c_long> {
    let mut calls = DATAPATH_SYSCALLS.to_vec();
    if home {
        calls.extend_from_slice(HOST_RELAY_SYSCALLS);
    }
    calls
}

/// Calls that fail with `EACCES` on a datapath thread instead of stopping
/// yardd: the C library probes a file on its own and copes when it cannot
/// — glibc's malloc reads `/proc/sys/vm/overcommit_memory` the first time a
/// thread's heap shrinks (seen with a full conntrack table) — but a thread
/// that only moves frames has no file to open.
pub const DATAPATH_REFUSED: &[libc::c_long] = &[
    libc::SYS_openat,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_open,
];

/// The architecture of the system calls the filter allows (`AUDIT_ARCH_*`).
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;

/// x86_64's x32 ABI marks its system call numbers with this bit.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// Offsets into `struct seccomp_data`.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// The filter program: check the architecture, then allow each of
/// `allowed` in turn, fail each of `refused` with `EACCES`, else
/// `on_violation`.
pub fn program(
    allowed: &[libc::c_long],
    refused: &[libc::c_long],
    on_violation: Violation,
) -> Vec<libc::sock_filter> {
    let deny = match on_violation {
        Violation::Kill => libc::SECCOMP_RET_TRAP,
        Violation::Log => libc::SECCOMP_RET_LOG,
    };
    let kill = libc::SECCOMP_RET_KILL_PROCESS;
    let ld_w_abs = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let jeq_k = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
    let jge_k = libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K;
    let ret_k = libc::BPF_RET | libc::BPF_K;
    let mut prog = vec![
        stmt(ld_w_abs, DATA_ARCH),
        jump(jeq_k, AUDIT_ARCH, 1, 0),
        stmt(ret_k, kill),
        stmt(ld_w_abs, DATA_NR),
        // An x32 number is another ABI's call under the same arch value.
        jump(jge_k, X32_SYSCALL_BIT, 0, 1),
        stmt(ret_k, kill),
    ];
    for &nr in allowed {
        prog.push(jump(jeq_k, nr as u32, 0, 1));
        prog.push(stmt(ret_k, libc::SECCOMP_RET_ALLOW));
    }
    for &nr in refused {
        prog.push(jump(jeq_k, nr as u32, 0, 1));
        prog.push(stmt(
            ret_k,
            libc::SECCOMP_RET_ERRNO | (libc::EACCES as u32 & libc::SECCOMP_RET_DATA),
        ));
    }
    prog.push(stmt(ret_k, deny));
    prog
}

/// Installs the filter allowing `allowed` and refusing `refused` on the
/// calling thread; other threads are not affected.
pub fn install(
    allowed: &[libc::c_long],
    refused: &[libc::c_long],
    on_violation: Violation,
) -> io::Result<()> {
    if on_violation == Violation::Kill {
        install_sigsys_handler()?;
    }
    install_program(&program(allowed, refused, on_violation))
}

/// Offset of `si_syscall` in a `SIGSYS` siginfo on 64-bit Linux: after
/// `si_signo`, `si_errno`, `si_code` (padded to 16) and `si_call_addr`.
const SI_SYSCALL_OFFSET: usize = 24;

/// Writes "yardd: ... system call N ..." to stderr and ends the process by
/// `SIGSYS` (the handler was reset to the default on entry).
extern "C" fn on_sigsys(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for a SA_SIGINFO handler;
    // for a seccomp trap its `_sigsys` member holds the call's number at
    // this offset.
    let nr = unsafe {
        info.cast::<u8>()
            .add(SI_SYSCALL_OFFSET)
            .cast::<i32>()
            .read()
    };
    let mut line = [0u8; 256];
    let mut len = 0;
    let mut put = |bytes: &[u8]| {
        for &b in bytes {
            if len < line.len() {
                line[len] = b;
                len += 1;
            }
        }
    };
    put(b"yardd: a datapath thread made system call ");
    let mut digits = [0u8; 10];
    let mut n = nr.unsigned_abs();
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    put(&digits[i..]);
    put(b", which its seccomp filter does not allow: stopping. Run yardd with --seccomp-log to find every such call (dmesg), or --no-seccomp, and report it.\n");
    // SAFETY: write, getpid, gettid and tgkill are async-signal-safe and on
    // the datapath's list; `line[..len]` is initialised.
    unsafe {
        libc::write(2, line.as_ptr().cast(), len);
        libc::syscall(
            libc::SYS_tgkill,
            libc::getpid(),
            libc::syscall(libc::SYS_gettid),
            libc::SIGSYS,
        );
    }
}

/// Installs [`on_sigsys`] for `SIGSYS` (once per process; signal handlers
/// are process-wide), reset to the default when it runs.
fn install_sigsys_handler() -> io::Result<()> {
    static INSTALLED: std::sync::OnceLock<Result<(), i32>> = std::sync::OnceLock::new();
    let result = INSTALLED.get_or_init(|| {
        // SAFETY: a zeroed sigaction is a valid starting value; the handler
        // has the SA_SIGINFO signature and only async-signal-safe calls.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigsys as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_RESETHAND | libc::SA_NODEFER;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(libc::SIGSYS, &action, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error().raw_os_error().unwrap_or(0));
            }
        }
        Ok(())
    });
    result.map_err(io::Error::from_raw_os_error)
}

/// Installs `prog` on the calling thread (no allocation: safe after fork).
fn install_program(prog: &[libc::sock_filter]) -> io::Result<()> {
    let fprog = libc::sock_fprog {
        len: u16::try_from(prog.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "seccomp filter too long"))?,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fprog` points to `prog`, a valid array of `len` instructions
    // that outlives the call (the kernel copies the program); flags 0 apply
    // the filter to this thread only.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0 as libc::c_ulong,
            &fprog as *const libc::sock_fprog,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` in a child process on a thread with the filter, so a kill
    /// ends only the child; returns how the child ended.
    fn in_filtered_child(on_violation: Violation, f: fn()) -> (nix::sys::wait::WaitStatus, String) {
        in_child_with(&datapath_syscalls(false), on_violation, f)
    }

    /// [`in_filtered_child`] with the list `allowed`.
    fn in_child_with(
        allowed: &[libc::c_long],
        on_violation: Violation,
        f: fn(),
    ) -> (nix::sys::wait::WaitStatus, String) {
        use nix::unistd::{fork, ForkResult};
        use std::io::Read;
        // Built before the fork: the child must not allocate.
        let prog = program(allowed, DATAPATH_REFUSED, on_violation);
        if on_violation == Violation::Kill {
            install_sigsys_handler().unwrap();
        }
        let (read_end, write_end) = nix::unistd::pipe().unwrap();
        // SAFETY: the child only installs the filter, calls `f` (plain system
        // calls, no allocation or lock another thread could hold) and exits.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Child => {
                // SAFETY: dup2 onto stderr in the child; both fds are open.
                unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&write_end), 2) };
                let code = match install_program(&prog) {
                    Ok(()) => {
                        f();
                        0
                    }
                    Err(_) => 3,
                };
                // SAFETY: ends the child without running the parent's
                // atexit handlers or test harness state.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => {
                drop(write_end);
                let status = nix::sys::wait::waitpid(child, None).expect("waitpid");
                let mut said = String::new();
                let _ = std::fs::File::from(read_end).read_to_string(&mut said);
                (status, said)
            }
        }
    }

    #[test]
    fn allowed_calls_pass_and_others_kill_the_process() {
        use nix::sys::signal::Signal;
        use nix::sys::wait::WaitStatus;
        // Reading the time and writing are on the list.
        let fine = in_filtered_child(Violation::Kill, || {
            let _ = std::time::Instant::now();
            let _ = nix::unistd::write(std::io::stderr(), b"");
        });
        assert!(matches!(fine.0, WaitStatus::Exited(_, 0)), "{fine:?}");
        // Opening a file fails with EACCES (the C library may try).
        let (refused, _) = in_filtered_child(Violation::Kill, || {
            let denied = std::fs::File::open("/proc/self/status")
                .is_err_and(|e| e.raw_os_error() == Some(libc::EACCES));
            // SAFETY: ends the child with the test's verdict.
            unsafe { libc::_exit(if denied { 0 } else { 5 }) }
        });
        assert!(matches!(refused, WaitStatus::Exited(_, 0)), "{refused:?}");
        // Making a socket is not on either list: a line names the call,
        // then SIGSYS.
        let (killed, said) = in_filtered_child(Violation::Kill, || {
            let _ = std::net::UdpSocket::bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        });
        assert!(
            matches!(killed, WaitStatus::Signaled(_, Signal::SIGSYS, _)),
            "{killed:?}"
        );
        assert!(
            said.starts_with(&format!(
                "yardd: a datapath thread made system call {}, which its seccomp filter does not allow: stopping.",
                libc::SYS_socket
            )),
            "{said:?}"
        );
        // In log mode it is allowed (and logged by the kernel).
        let (logged, _) = in_filtered_child(Violation::Log, || {
            let _ = std::net::UdpSocket::bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        });
        assert!(matches!(logged, WaitStatus::Exited(_, 0)), "{logged:?}");
    }

    /// `shutdown(2)` on a socket, as the relay does on a host stream.
    fn shutdown_write(socket: &std::net::UdpSocket) -> i32 {
        // SAFETY: shutdown on a socket this test owns.
        unsafe { libc::shutdown(std::os::fd::AsRawFd::as_raw_fd(socket), libc::SHUT_WR) }
    }

    #[test]
    fn the_home_thread_may_make_connect_and_close_host_sockets() {
        use nix::sys::wait::WaitStatus;
        let (made, said) = in_child_with(&datapath_syscalls(true), Violation::Kill, || {
            // A TCP connect (refused or not: the calls are made).
            let _ = std::net::TcpStream::connect(("127.0.0.1", 1));
            let udp = std::net::UdpSocket::bind(("127.0.0.1", 0)).unwrap();
            udp.connect(("127.0.0.1", 9)).unwrap();
            let _ = udp.local_addr().unwrap();
            let _ = udp.peer_addr().unwrap();
            let _ = shutdown_write(&udp);
        });
        assert!(
            matches!(made, WaitStatus::Exited(_, 0)),
            "{made:?} {said:?}"
        );
    }

    #[test]
    fn the_program_checks_the_architecture_first() {
        let prog = program(&[libc::SYS_read], &[], Violation::Kill);
        assert_eq!(prog[0].k, DATA_ARCH);
        assert_eq!(prog[1].k, AUDIT_ARCH);
        assert_eq!(prog[2].k, libc::SECCOMP_RET_KILL_PROCESS);
        assert_eq!(prog.len(), 6 + 2 + 1);
        assert_eq!(prog.last().unwrap().k, libc::SECCOMP_RET_TRAP);
    }
}
