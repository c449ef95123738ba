//! `yardd`: the Switchyard daemon.
//!
//! Starts the datapath thread, restores the persisted configuration (or creates
//! the default network `yard0` on a first start), and serves the control
//! socket until SIGTERM or SIGINT, when it removes the socket and exits; the
//! configuration stays in the state directory for the next start.
//!
//! Once the socket is bound, before any other thread starts, yardd keeps
//! only the capabilities it uses (`sys::privilege`) and sets `no_new_privs`;
//! each datapath thread then installs its seccomp allowlist (`sys::seccomp`)
//! before it handles a frame, unless `--no-seccomp`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use nix::sys::signal::{SigSet, Signal};
use yard_ctl::api::DEFAULT_PORT_MAC_LIMIT;
use yard_ctl::paths;
use yard_switch::control::config::Config;
use yard_switch::control::server::limits::{self, ServeLimits};
use yard_switch::control::state;
use yard_switch::control::{self, Control, ControlOptions};
use yard_switch::dataplane::threads::Datapath;
use yard_switch::sys::{privilege, seccomp};

/// Switchyard's userspace switch daemon.
#[derive(Parser, Debug)]
#[command(name = "yardd", version, about)]
struct Args {
    /// Control socket [default: /run/switchyard/yardd.sock as root,
    /// $XDG_RUNTIME_DIR/switchyard/yardd.sock otherwise]
    #[arg(long, env = paths::SOCKET_ENV)]
    socket: Option<PathBuf>,
    /// State directory [default: /var/lib/switchyard as root,
    /// $XDG_STATE_HOME/switchyard otherwise]
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Log level: error, warn, info, debug or trace (or a tracing filter)
    #[arg(long, default_value = "info")]
    log: String,
    /// Also serve members of this group (name or gid) on the control socket
    #[arg(long)]
    group: Option<String>,
    /// Datapath threads, 1 to 64: each reads its share of the ports, and
    /// the first also serves the gateway, uplink and tunnels (see the
    /// README's "Threads" section for when more than one helps)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    threads: u16,
    /// Control connections served at once; one more is refused with an
    /// error line until another closes
    #[arg(long, default_value_t = limits::DEFAULT_MAX_CONNECTIONS as u16,
          value_parser = clap::value_parser!(u16).range(1..=4096))]
    control_max_connections: u16,
    /// Seconds a control connection may take to send a complete request
    /// (from connecting, or from its previous reply) before it is closed;
    /// a capture stream is exempt while it streams
    #[arg(long, default_value_t = limits::DEFAULT_IDLE_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    control_idle_timeout: u64,
    /// Run the datapath threads without their seccomp filter (by default
    /// each allows only the system calls the datapath makes, and any other
    /// kills yardd, logged by the kernel with the call's number)
    #[arg(long, conflicts_with = "seccomp_log")]
    no_seccomp: bool,
    /// Let a datapath thread make a system call outside its seccomp filter
    /// and have the kernel log it (dmesg: type=1326 ... syscall=N) instead
    /// of killing yardd: for finding what a new code path needs
    #[arg(long)]
    seccomp_log: bool,
    /// The uplink of a first start (no state yet): `host` relays the
    /// default network's flows through yardd's own host sockets (`uplink
    /// add --iface` or `--tap` replaces it later); `none` starts with no
    /// uplink
    #[arg(long, value_enum, default_value_t = DefaultUplink::Host)]
    default_uplink: DefaultUplink,
}

/// `--default-uplink`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DefaultUplink {
    /// `uplink add host --host`.
    Host,
    /// No uplink.
    None,
}

fn resolve_group(group: &str) -> Result<u32> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(group) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => bail!("group {group} not found: give an existing group name or a numeric gid"),
        Err(e) => bail!("cannot look up group {group}: {e}"),
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("yardd: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log).map_err(|e| {
        anyhow!(
            "--log {}: {e}: use error, warn, info, debug or trace",
            args.log
        )
    })?;
    // Colour only on a terminal: logs redirected to a file stay plain text.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let socket = args.socket.unwrap_or_else(paths::default_socket);
    let state_dir = args.state_dir.unwrap_or_else(paths::default_state_dir);
    let group = args.group.as_deref().map(resolve_group).transpose()?;

    // Block the stop signals before any thread starts, so every thread inherits
    // the mask and only the signal thread below receives them.
    let mut stop_signals = SigSet::empty();
    stop_signals.add(Signal::SIGTERM);
    stop_signals.add(Signal::SIGINT);
    stop_signals
        .thread_block()
        .context("cannot block SIGTERM/SIGINT")?;

    // Before anything is read or attached: a second yardd on the same state
    // would fight the first over its devices and its file.
    let _state_lock = state::lock(&state_dir)?;
    let (config, first_start) = match state::load(&state_dir)? {
        Some(config) => (config, false),
        None => (
            Config::initial(args.default_uplink == DefaultUplink::Host),
            true,
        ),
    };
    let listener = control::bind_socket(&socket, group)?;

    // Setup that needs more than the kept capabilities is done (the socket
    // is bound and chowned, the state directory locked and read). No other
    // thread exists yet, so every thread started below — datapath, control,
    // the short-lived ones that enter namespaces — inherits the reduced sets,
    // and restoring the state below already runs with them.
    let kept = privilege::drop_privileges(&privilege::Capability::KEPT)?;
    tracing::info!(
        capabilities = ?kept.effective_names(),
        no_new_privs = true,
        "dropped every other capability"
    );

    let (mut datapaths, handle) = Datapath::new(DEFAULT_PORT_MAC_LIMIT, usize::from(args.threads))
        .context("cannot start the datapath")?;
    // The host uplink's relay: its own thread, outside the datapath's
    // seccomp filter (it creates, connects and closes sockets), one fd per
    // relayed flow.
    match yard_switch::sys::raise_open_files_limit() {
        Ok(limit) => tracing::debug!(limit, "open files limit"),
        Err(error) => tracing::warn!(%error, "cannot raise the open files limit"),
    }
    let relay = datapaths[0]
        .start_host_relay()
        .context("cannot start the host uplink's relay")?;
    std::thread::Builder::new()
        .name("yardd-relay".into())
        .spawn(move || {
            if let Err(error) = relay.run() {
                tracing::error!(%error, "the host uplink's relay stopped");
            }
        })
        .context("cannot start the relay thread")?;
    let seccomp = match (args.no_seccomp, args.seccomp_log) {
        (true, _) => None,
        (false, false) => Some(seccomp::Violation::Kill),
        (false, true) => Some(seccomp::Violation::Log),
    };
    // Whichever datapath thread ends first ends the daemon.
    let (ended_tx, ended) = crossbeam_channel::bounded(datapaths.len());
    let (filtered_tx, filtered) = crossbeam_channel::bounded(datapaths.len());
    for (i, datapath) in datapaths.into_iter().enumerate() {
        let ended_tx = ended_tx.clone();
        let filtered_tx = filtered_tx.clone();
        std::thread::Builder::new()
            .name(format!("yardd-datapath-{i}"))
            .spawn(move || {
                // Before the first frame: from here on the thread only
                // polls, reads, writes, sends and receives.
                if let Some(on_violation) = seccomp {
                    let installed = seccomp::install(
                        seccomp::DATAPATH_SYSCALLS,
                        seccomp::DATAPATH_REFUSED,
                        on_violation,
                    );
                    let failed = installed.is_err();
                    let _ = filtered_tx.send((i, installed));
                    if failed {
                        return;
                    }
                }
                let result =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| datapath.run()));
                let _ = ended_tx.send((i, result));
            })
            .context("cannot start a datapath thread")?;
    }
    if let Some(on_violation) = seccomp {
        for _ in 0..args.threads {
            let (i, installed) = filtered
                .recv()
                .context("a datapath thread ended before its seccomp filter was installed")?;
            installed.with_context(|| {
                format!("datapath thread {i}: cannot install its seccomp filter (start yardd with --no-seccomp to run without it)")
            })?;
        }
        tracing::info!(
            threads = args.threads,
            syscalls = seccomp::DATAPATH_SYSCALLS.len(),
            ?on_violation,
            "seccomp filter on the datapath threads"
        );
    } else {
        tracing::warn!("datapath threads run without a seccomp filter (--no-seccomp)");
    }

    let options = ControlOptions {
        socket: socket.clone(),
        state_dir: state_dir.clone(),
        group,
    };
    // These messages already name their causes: keep them as one line
    // rather than let `{:#}` repeat the causes after them.
    let control = Control::restore(config, handle, options).map_err(|e| anyhow!("{e}"))?;
    if first_start {
        control
            .persist()
            .map_err(|e| anyhow!("{e}"))
            .context("cannot write the initial state: check that the state directory is writable or pass --state-dir")?;
    }
    let control = Arc::new(Mutex::new(control));
    tracing::info!(socket = %socket.display(), state_dir = %state_dir.display(), "yardd ready");

    let serve_limits = ServeLimits {
        max_connections: usize::from(args.control_max_connections),
        idle_timeout: std::time::Duration::from_secs(args.control_idle_timeout),
    };
    let socket_for_signal = socket.clone();
    std::thread::Builder::new()
        .name("yardd-signals".into())
        .spawn(move || {
            let signal = stop_signals.wait();
            tracing::info!(?signal, "stopping");
            let _ = std::fs::remove_file(&socket_for_signal);
            // The TAPs outlive the process (carrier off); the next start
            // re-adopts them from the configuration in the state directory.
            std::process::exit(0);
        })
        .context("cannot start the signal thread")?;

    let watched = control.clone();
    std::thread::Builder::new()
        .name("yardd-netns".into())
        .spawn(move || control::watch_namespaces(watched))
        .context("cannot start the namespace watcher")?;

    std::thread::Builder::new()
        .name("yardd-control".into())
        .spawn(move || control::serve(listener, control, group, serve_limits))
        .context("cannot start the control thread")?;

    match ended.recv() {
        Ok((i, Ok(Ok(())))) => bail!("datapath thread {i} stopped"),
        Ok((i, Ok(Err(e)))) => bail!("datapath thread {i} failed: {e}"),
        Ok((i, Err(_))) => bail!("datapath thread {i} panicked"),
        Err(_) => bail!("the datapath threads are gone"),
    }
}
