//! yardd's command line: the arguments `bin/yardd.rs` runs with, in the
//! library so that the man page and shell completions are generated from
//! the very definitions yardd parses (`examples/gen-docs.rs`).

use std::path::PathBuf;

use clap::Parser;
use yard_ctl::paths;

use crate::control::server::limits;
use crate::dataplane::port::packet_ring::PacketIo;
use crate::dataplane::port::ring::TapIo;

/// Switchyard's userspace switch daemon.
#[derive(Parser, Debug)]
#[command(name = "yardd", version, about)]
pub struct Args {
    /// Control socket [default: /run/switchyard/yardd.sock as root,
    /// $XDG_RUNTIME_DIR/switchyard/yardd.sock otherwise, or a private
    /// /tmp/switchyard-UID/yardd.sock without XDG_RUNTIME_DIR]
    #[arg(long, env = paths::SOCKET_ENV)]
    pub socket: Option<PathBuf>,
    /// State directory [default: /var/lib/switchyard as root,
    /// $XDG_STATE_HOME/switchyard (else ~/.local/state/switchyard) otherwise;
    /// uid 0 inside a user namespace counts as otherwise]
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Log level: error, warn, info, debug or trace (or a tracing filter)
    #[arg(long, default_value = "info")]
    pub log: String,
    /// Log lines as text, or as one JSON object each (for log collectors)
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Also serve members of this group (name or gid) on the control socket
    #[arg(long)]
    pub group: Option<String>,
    /// Datapath threads, 1 to 64: each reads its share of the ports, and
    /// the first also serves the gateway, uplink and tunnels (see the
    /// README's "Threads" section for when more than one helps)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub threads: u16,
    /// Run the datapath threads on these CPUs only, e.g. `1` or `2,3` or
    /// `2-5`: thread i on the i-th CPU of the list, round robin. By default
    /// the scheduler places them; pinned, a thread stays where it is
    /// instead of being moved onto the CPU of a container that woke it
    #[arg(long, value_name = "LIST", value_parser = parse_cpu_list)]
    pub datapath_cpus: Option<CpuList>,
    /// Control connections served at once; one more is refused with an
    /// error line until another closes
    #[arg(long, default_value_t = limits::DEFAULT_MAX_CONNECTIONS as u16,
          value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub control_max_connections: u16,
    /// Seconds a control connection may take to send a complete request
    /// (from connecting, or from its previous reply) before it is closed;
    /// a capture stream is exempt while it streams
    #[arg(long, default_value_t = limits::DEFAULT_IDLE_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub control_idle_timeout: u64,
    /// How TAP ports move frames: `uring` reads a batch of frames with one
    /// system call and writes a round's frames with one more (io_uring),
    /// falling back to `plain` — with one log line saying why — where the
    /// kernel, a seccomp filter or kernel.io_uring_disabled refuses it;
    /// `plain` makes one read(2) or write(2) per frame
    #[arg(long, value_enum, default_value_t = TapIo::Uring)]
    pub io: TapIo,
    /// How packet-socket ports (existing interfaces such as veths) receive
    /// frames: `plain` reads a batch per recvmmsg(2); `ring` reads them
    /// from a receive ring the kernel fills (PACKET_RX_RING, 2 MiB per
    /// port; frames larger than a ring slot, such as GSO frames, with
    /// recvmmsg) — less CPU per small frame, but no faster for TCP —
    /// falling back to `plain`, with one log
    /// line saying why, where the kernel refuses the ring
    #[arg(long, value_enum, default_value_t = PacketIo::Plain)]
    pub packet_io: PacketIo,
    /// The most microseconds a datapath thread keeps polling its ports
    /// without sleeping after a round that moved frames, 0 to 1000 (0:
    /// never). The window adapts: it grows to cover the gaps of a
    /// conversation whose packets follow each other closely (a ping-pong,
    /// connections opened one after another), which then cost no wake-up
    /// of a sleeping thread, and shrinks to nothing for traffic that comes
    /// at longer intervals; an idle yardd sleeps, and no thread polls
    /// while other tasks wait for a CPU (a flood's senders and receivers)
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub busy_poll_us: u32,
    /// Run the datapath threads without their seccomp filter (by default
    /// each allows only the system calls the datapath makes, and any other
    /// kills yardd, logged by the kernel with the call's number)
    #[arg(long, conflicts_with = "seccomp_log")]
    pub no_seccomp: bool,
    /// Let a datapath thread make a system call outside its seccomp filter
    /// and have the kernel log it (dmesg: type=1326 ... syscall=N) instead
    /// of killing yardd: for finding what a new code path needs
    #[arg(long)]
    pub seccomp_log: bool,
    /// The uplink of a first start (no state yet): `host` relays the
    /// default network's flows through yardd's own host sockets (`uplink
    /// add --iface` or `--tap` replaces it later); `none` starts with no
    /// uplink
    #[arg(long, value_enum, default_value_t = DefaultUplink::Host)]
    pub default_uplink: DefaultUplink,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics (off by
    /// default), e.g. 127.0.0.1:9464
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<std::net::SocketAddr>,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line: time, level, message and fields.
    Json,
}

/// `--default-uplink`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DefaultUplink {
    /// `uplink add host --host`.
    Host,
    /// No uplink.
    None,
}

/// `--datapath-cpus`: CPU numbers, in the order given, none twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

impl CpuList {
    /// The CPU of datapath thread `thread`: the list round robin.
    pub fn for_thread(&self, thread: usize) -> usize {
        self.0[thread % self.0.len()]
    }
}

/// Parses `1`, `2,3`, `2-5` or `0,2-3`.
fn parse_cpu_list(text: &str) -> Result<CpuList, String> {
    let number = |n: &str| -> Result<usize, String> {
        let cpu: usize = n
            .trim()
            .parse()
            .map_err(|_| format!("`{n}` is not a CPU number (a list is like 1 or 2,3 or 2-5)"))?;
        // The highest a CPU set holds (the kernel's `CPU_SETSIZE` - 1).
        let highest = nix::sched::CpuSet::count() - 1;
        if cpu > highest {
            return Err(format!("CPU {cpu} is past the highest, {highest}"));
        }
        Ok(cpu)
    };
    let mut cpus = Vec::new();
    for item in text.split(',') {
        let (first, last) = match item.split_once('-') {
            Some((first, last)) => (number(first)?, number(last)?),
            None => {
                let cpu = number(item)?;
                (cpu, cpu)
            }
        };
        if first > last {
            return Err(format!("`{item}` is an empty range: write it low-high"));
        }
        for cpu in first..=last {
            if cpus.contains(&cpu) {
                return Err(format!("CPU {cpu} is listed twice"));
            }
            cpus.push(cpu);
        }
    }
    Ok(CpuList(cpus))
}

#[cfg(test)]
mod cpu_list_tests {
    use super::*;

    #[test]
    fn cpus_ranges_and_lists_parse_in_order() {
        assert_eq!(parse_cpu_list("1"), Ok(CpuList(vec![1])));
        assert_eq!(parse_cpu_list("3,1"), Ok(CpuList(vec![3, 1])));
        assert_eq!(parse_cpu_list("0,2-4"), Ok(CpuList(vec![0, 2, 3, 4])));
        let list = parse_cpu_list("2-3").unwrap();
        assert_eq!(
            (0..3).map(|t| list.for_thread(t)).collect::<Vec<_>>(),
            [2, 3, 2]
        );
    }

    #[test]
    fn a_bad_list_says_what_is_wrong() {
        for (text, says) in [
            ("", "is not a CPU number"),
            ("one", "`one` is not a CPU number"),
            ("1,,2", "is not a CPU number"),
            ("4-2", "empty range"),
            ("1,0-2", "CPU 1 is listed twice"),
            ("1024", "past the highest"),
            ("-1", "is not a CPU number"),
        ] {
            let error = parse_cpu_list(text).unwrap_err();
            assert!(error.contains(says), "{text:?}: {error}");
        }
    }
}
