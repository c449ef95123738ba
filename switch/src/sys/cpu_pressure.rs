//! How long tasks have waited for a CPU, machine-wide: the kernel's
//! pressure stall information (PSI) for the CPU, `/proc/pressure/cpu`,
//! whose `some` line counts (`total=`, in microseconds since boot) the
//! time during which at least one runnable task was waiting for a CPU.
//!
//! Contract: [`CpuPressure::open`] opens the file once — before a datapath
//! thread's seccomp filter, which refuses opening files — and is `None`
//! where the kernel has no PSI (built without `CONFIG_PSI`, or booted with
//! `psi=0`). [`CpuPressure::stalled`] re-reads it with one `pread` into a
//! buffer on the stack: no allocation.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::Duration;

/// Where the kernel reports the CPU's pressure.
const PATH: &str = "/proc/pressure/cpu";

/// `/proc/pressure/cpu`, open. See the module documentation.
#[derive(Debug)]
pub struct CpuPressure {
    file: File,
}

impl CpuPressure {
    /// Opens the CPU's pressure file; `None` where the kernel has no PSI.
    pub fn open() -> Option<CpuPressure> {
        let pressure = CpuPressure {
            file: File::open(PATH).ok()?,
        };
        pressure.stalled()?;
        Some(pressure)
    }

    /// How long, since boot, at least one task has waited for a CPU.
    pub fn stalled(&self) -> Option<Duration> {
        let mut text = [0u8; 256];
        let n = self.file.read_at(&mut text, 0).ok()?;
        some_total(&text[..n])
    }
}

/// The `total=` of the `some` line of a pressure file.
fn some_total(text: &[u8]) -> Option<Duration> {
    let line = text
        .split(|&b| b == b'\n')
        .find(|l| l.starts_with(b"some "))?;
    let at = line.windows(6).position(|w| w == b"total=")? + 6;
    let digits = &line[at..];
    let end = digits
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    let micros = std::str::from_utf8(&digits[..end]).ok()?.parse().ok()?;
    Some(Duration::from_micros(micros))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::testutil::spin_for;
    use crate::sys::thread_cpu::pin_to;

    #[test]
    fn the_some_total_is_read_and_the_full_line_is_not() {
        let text = b"some avg10=1.50 avg60=0.20 avg300=0.05 total=7840465330\n\
                     full avg10=0.00 avg60=0.00 avg300=0.00 total=99\n";
        assert_eq!(some_total(text), Some(Duration::from_micros(7_840_465_330)));
        assert_eq!(some_total(b"full avg10=0.00 total=99\n"), None);
        assert_eq!(some_total(b"some avg10=0.00\n"), None);
    }

    #[test]
    fn two_threads_competing_for_one_cpu_show_as_pressure() {
        let Some(pressure) = CpuPressure::open() else {
            // Only a kernel without PSI may leave it out.
            assert!(
                std::fs::read_to_string(PATH).is_err(),
                "{PATH} reads but was not parsed"
            );
            eprintln!("skipping: this kernel has no PSI");
            return;
        };
        let before = pressure.stalled().unwrap();
        let cpu = nix::sched::sched_getcpu().unwrap();
        let spinners: Vec<_> = (0..2)
            .map(|_| {
                std::thread::spawn(move || {
                    pin_to(cpu).unwrap();
                    spin_for(Duration::from_millis(300));
                })
            })
            .collect();
        for spinner in spinners {
            spinner.join().unwrap();
        }
        let waited = pressure.stalled().unwrap() - before;
        // One of the two waits while the other runs: most of 300 ms.
        assert!(waited >= Duration::from_millis(100), "{waited:?}");
    }
}
