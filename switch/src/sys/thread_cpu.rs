//! The CPU time of yardd's own long-lived threads, for the metrics: each
//! registers itself by a label when it starts ([`register`]), and
//! [`cpu_seconds`] reads what the kernel accounts to each
//! (`/proc/self/task/TID/stat`, user and system time). A poll-loop thread
//! uses CPU only while it works, so this is its busy time.
//! [`preemptions`] is how often the calling thread has been taken off its
//! CPU while it could still run: others wanted that CPU. [`pin_to`] keeps
//! the calling thread on one CPU ([`allowed_cpus`]: the ones it may use).

use std::sync::Mutex;

/// (label, thread id) of every registered thread.
static THREADS: Mutex<Vec<(String, i32)>> = Mutex::new(Vec::new());

/// Registers the calling thread as `label` (e.g. `datapath-0`).
pub fn register(label: impl Into<String>) {
    let tid = nix::unistd::gettid().as_raw();
    let mut threads = THREADS.lock().unwrap_or_else(|p| p.into_inner());
    threads.push((label.into(), tid));
}

/// Each registered thread's CPU time so far, in seconds, by label; a
/// thread that has ended is left out.
pub fn cpu_seconds() -> Vec<(String, f64)> {
    let ticks_per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&t| t > 0)
        .unwrap_or(100) as f64;
    let threads = THREADS.lock().unwrap_or_else(|p| p.into_inner()).clone();
    threads
        .into_iter()
        .filter_map(|(label, tid)| {
            let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
            Some((label, ticks(&stat)? as f64 / ticks_per_second))
        })
        .collect()
}

/// How many times the calling thread has been preempted so far (the
/// kernel's involuntary context switches, `getrusage(RUSAGE_THREAD)`), or
/// `None` if the kernel does not say. One system call, no allocation.
pub fn preemptions() -> Option<u64> {
    use nix::sys::resource::{getrusage, UsageWho};
    let usage = getrusage(UsageWho::RUSAGE_THREAD).ok()?;
    u64::try_from(usage.involuntary_context_switches()).ok()
}

/// The CPUs the calling thread may run on, lowest first.
pub fn allowed_cpus() -> std::io::Result<Vec<usize>> {
    use nix::sched::{sched_getaffinity, CpuSet};
    let set = sched_getaffinity(nix::unistd::Pid::from_raw(0))?;
    Ok((0..CpuSet::count())
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .collect())
}

/// Runs the calling thread on `cpu` only.
pub fn pin_to(cpu: usize) -> std::io::Result<()> {
    use nix::sched::{sched_setaffinity, CpuSet};
    let mut set = CpuSet::new();
    set.set(cpu)?;
    sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)?;
    Ok(())
}

/// utime + stime from a `stat` line (fields 14 and 15, counted after the
/// command name, which may itself hold spaces and parentheses).
fn ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some(user + system)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::sys::testutil::spin_for;

    #[test]
    fn a_registered_thread_that_works_reports_cpu_time() {
        std::thread::spawn(|| {
            register("test-busy");
            spin_for(Duration::from_millis(300));
            let busy = cpu_seconds()
                .into_iter()
                .find(|(l, _)| l == "test-busy")
                .map(|(_, s)| s)
                .unwrap();
            assert!(busy > 0.05, "{busy}");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_thread_that_competes_for_its_cpu_is_preempted() {
        // Two threads that never block, pinned to one CPU, share it only
        // by preempting each other.
        fn pinned_spin(cpu: usize) -> std::thread::JoinHandle<u64> {
            std::thread::spawn(move || {
                pin_to(cpu).unwrap();
                let before = preemptions().expect("getrusage(RUSAGE_THREAD)");
                spin_for(Duration::from_millis(300));
                preemptions().unwrap() - before
            })
        }
        let cpu = nix::sched::sched_getcpu().unwrap();
        let (a, b) = (pinned_spin(cpu), pinned_spin(cpu));
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        assert!(a > 0 && b > 0, "preemptions: {a} and {b}");
    }

    #[test]
    fn a_pinned_thread_runs_on_its_cpu_only() {
        let cpus = allowed_cpus().unwrap();
        assert!(!cpus.is_empty());
        let cpu = *cpus.last().unwrap();
        std::thread::spawn(move || {
            pin_to(cpu).unwrap();
            assert_eq!(allowed_cpus().unwrap(), [cpu]);
            std::thread::yield_now();
            assert_eq!(nix::sched::sched_getcpu().unwrap(), cpu);
        })
        .join()
        .unwrap();
        assert!(
            pin_to(nix::sched::CpuSet::count()).is_err(),
            "past CPU_SETSIZE"
        );
    }

    #[test]
    fn stat_fields_are_found_after_an_awkward_name() {
        let stat = "42 (a) b (c)) S 1 2 3 4 5 6 7 8 9 10 250 31 0 0 20 0";
        assert_eq!(ticks(stat), Some(281));
    }
}
