//! The CPU time of yardd's own long-lived threads, for the metrics: each
//! registers itself by a label when it starts ([`register`]), and
//! [`cpu_seconds`] reads what the kernel accounts to each
//! (`/proc/self/task/TID/stat`, user and system time). A poll-loop thread
//! uses CPU only while it works, so this is its busy time.

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
    use super::*;

    #[test]
    fn a_registered_thread_that_works_reports_cpu_time() {
        std::thread::spawn(|| {
            register("test-busy");
            let start = std::time::Instant::now();
            let mut x = 0u64;
            while start.elapsed() < std::time::Duration::from_millis(300) {
                x = x.wrapping_mul(31).wrapping_add(7);
            }
            std::hint::black_box(x);
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
    fn stat_fields_are_found_after_an_awkward_name() {
        let stat = "42 (a) b (c)) S 1 2 3 4 5 6 7 8 9 10 250 31 0 0 20 0";
        assert_eq!(ticks(stat), Some(281));
    }
}
