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
//!
//! Run as `yardd __netns-helper` (by yardd itself, never by hand), the
//! binary is the single-threaded namespace helper of a rootless yardd
//! (`control::netns_helper`) and does nothing else.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use nix::sys::signal::{SigSet, Signal};
use yard_ctl::api::DEFAULT_PORT_MAC_LIMIT;
use yard_ctl::paths;
use yard_switch::cli::{Args, DefaultUplink, LogFormat};
use yard_switch::control::config::Config;
use yard_switch::control::metrics;
use yard_switch::control::netns_helper;
use yard_switch::control::server::limits::ServeLimits;
use yard_switch::control::state;
use yard_switch::control::{self, Control, ControlOptions};
use yard_switch::dataplane::threads::Datapath;
use yard_switch::sys::{notify, privilege, seccomp};

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
    // The namespace helper (`control::netns_helper`) must decide before
    // anything could start a thread: only a single-threaded process may
    // enter a user namespace.
    if std::env::args_os().nth(1).as_deref() == Some(std::ffi::OsStr::new(netns_helper::HELPER_ARG))
    {
        std::process::exit(netns_helper::helper_main());
    }
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
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        // Colour only on a terminal: logs redirected to a file stay plain text.
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().init(),
    }

    // Root's directories only for real root: uid 0 inside a user namespace
    // (`unshare -r`) takes the rootless defaults.
    let mode = paths::current_mode();
    let env = paths::PathEnv::current();
    let socket = args
        .socket
        .unwrap_or_else(|| paths::choose_socket(mode, &env));
    let state_dir = args
        .state_dir
        .unwrap_or_else(|| paths::choose_state_dir(mode, &env));
    if let Some(dir) = paths::private_dir_of(&socket, mode, &env) {
        paths::ensure_private_dir(&dir, nix::unistd::geteuid().as_raw())?;
    }
    let group = args.group.as_deref().map(resolve_group).transpose()?;

    // Pinned datapath threads: every CPU named must be one yardd may use.
    if let Some(list) = &args.datapath_cpus {
        let allowed = yard_switch::sys::thread_cpu::allowed_cpus()
            .context("cannot read the CPUs yardd may run on")?;
        if let Some(cpu) = list.0.iter().find(|cpu| !allowed.contains(cpu)) {
            bail!(
                "--datapath-cpus: yardd may not run on CPU {cpu}; it may run on {allowed:?} (taskset, cgroup cpusets and offline CPUs limit them)"
            );
        }
    }

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
    // Bound now, while a low port is still allowed; served once the
    // control plane is up.
    let metrics = match args.metrics {
        Some(addr) => Some(std::net::TcpListener::bind(addr).with_context(|| {
            format!("cannot listen for --metrics on {addr}: choose a free address and port")
        })?),
        None => None,
    };

    // Setup that needs more than the kept capabilities is done (the socket
    // is bound and chowned, the state directory locked and read). No other
    // thread exists yet, so every thread started below — datapath, control,
    // the short-lived ones that enter namespaces — inherits the reduced sets,
    // and restoring the state below already runs with them.
    let kept = privilege::drop_privileges(&privilege::Capability::KEPT)?;
    tracing::info!(
        %mode,
        capabilities = ?kept.effective_names(),
        no_new_privs = true,
        "dropped every other capability"
    );

    yard_switch::dataplane::port::ring::set_tap_io(args.io);
    yard_switch::dataplane::port::packet_ring::set_packet_io(args.packet_io);
    let (mut datapaths, handle) = Datapath::new(DEFAULT_PORT_MAC_LIMIT, usize::from(args.threads))
        .context("cannot start the datapath")?;
    // The host uplink's relay runs on the home datapath thread: one fd per
    // relayed flow.
    match yard_switch::sys::raise_open_files_limit() {
        Ok(limit) => tracing::debug!(limit, "open files limit"),
        Err(error) => tracing::warn!(%error, "cannot raise the open files limit"),
    }
    for datapath in &mut datapaths {
        datapath.set_busy_poll(std::time::Duration::from_micros(u64::from(
            args.busy_poll_us,
        )));
    }
    datapaths[0]
        .start_host_relay()
        .context("cannot start the host uplink's relay")?;
    // A datapath thread's panic is logged without a backtrace: its seccomp
    // filter refuses the files a backtrace is read from, and would kill
    // yardd over a panic the relay contains (`HostRelay`). Other threads
    // keep the default report.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| match std::thread::current().name() {
        Some(name) if name.starts_with("yardd-datapath") => {
            tracing::error!(thread = name, "panic: {info}")
        }
        _ => report(info),
    }));
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
        let pinned = args.datapath_cpus.as_ref().map(|list| list.for_thread(i));
        std::thread::Builder::new()
            .name(format!("yardd-datapath-{i}"))
            .spawn(move || {
                yard_switch::sys::thread_cpu::register(format!("datapath-{i}"));
                if let Some(cpu) = pinned {
                    match yard_switch::sys::thread_cpu::pin_to(cpu) {
                        Ok(()) => tracing::info!(thread = i, cpu, "datapath thread pinned"),
                        Err(error) => tracing::warn!(thread = i, cpu, %error, "cannot pin a datapath thread: the scheduler places it"),
                    }
                }
                // Before the first frame: from here on the thread only
                // polls, reads, writes, sends and receives.
                if let Some(on_violation) = seccomp {
                    let installed = seccomp::install(
                        &seccomp::datapath_syscalls(i == 0),
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
            syscalls = seccomp::datapath_syscalls(true).len(),
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
        mode,
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
    if let Some(listener) = metrics {
        let addr = listener
            .local_addr()
            .context("the metrics listener's address")?;
        let scraped = control.clone();
        std::thread::Builder::new()
            .name("yardd-metrics".into())
            .spawn(move || metrics::serve(listener, scraped))
            .context("cannot start the metrics thread")?;
        tracing::info!(%addr, "serving Prometheus metrics at /metrics");
    }
    tracing::info!(socket = %socket.display(), state_dir = %state_dir.display(), "yardd ready");
    // Under a Type=notify systemd unit: started once the socket answers.
    if let Err(error) = notify::ready(&format!("serving {}", socket.display())) {
        tracing::warn!(%error, "cannot tell systemd yardd is ready (NOTIFY_SOCKET)");
    }

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
