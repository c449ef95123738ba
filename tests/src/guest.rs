//! QEMU guests for lab tests: a Debian kernel and a busybox initramfs built
//! at test time, booted under TCG (no KVM needed) with a NIC on a socket
//! backend, reporting on their serial console.
//!
//! The kernel comes from the package `linux-image-amd64` depends on,
//! fetched with `apt-get download` and extracted (`dpkg-deb`, never
//! installed) once into a cache directory the test names, so reruns need
//! no network; the initramfs holds `/bin/busybox` (busybox-static), the
//! virtio-net module chain and [`INIT`]. A [`Guest`] is a QEMU process
//! under `timeout(1)`, ended by its pid when dropped; every wait on its
//! console is bounded.

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::cmd::{describe, end_child, output, stdout, timed};
use crate::lab::Lab;

/// The modules virtio-net needs, in load order.
pub const MODULES: [&str; 8] = [
    "virtio_ring",
    "virtio",
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio_pci",
    "failover",
    "net_failover",
    "virtio_net",
];

/// The guest's `/init`: modules, eth0 from the kernel command line
/// (`yard.ip=CIDR`), then ping `yard.peer=IP`; unless `yard.ping-only`,
/// send it BYTES (a multiple of 64 KiB) over TCP to port `yard.send=N`,
/// then receive as many on port `yard.listen=N`. Each step is reported on
/// the console as a `YARD-…` line.
pub const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
for m in MODULES; do
    insmod /lib/modules/$m.ko || echo "YARD-FAIL insmod $m"
done
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        yard.ip=*) IP=${arg#yard.ip=} ;;
        yard.peer=*) PEER=${arg#yard.peer=} ;;
        yard.send=*) SEND=${arg#yard.send=} ;;
        yard.listen=*) LISTEN=${arg#yard.listen=} ;;
        yard.ping-only) PINGONLY=1 ;;
    esac
done
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
ip link set lo up
ip link set eth0 up
ip addr add "$IP" dev eth0
echo "YARD-UP $(cat /sys/class/net/eth0/address)"
if ping -c 3 -w 30 "$PEER" >/tmp/ping 2>&1; then
    echo "YARD-PING-OK"
else
    echo "YARD-PING-FAIL $(cat /tmp/ping)"
fi
[ -n "$PINGONLY" ] && exec sleep 600
dd if=/dev/urandom of=/tmp/out bs=65536 count=BLOCKS 2>/dev/null
echo "YARD-OUT-SHA $(sha256sum /tmp/out | cut -d' ' -f1)"
i=0
until nc "$PEER" "$SEND" < /tmp/out; do
    i=$((i+1)); [ $i -ge 20 ] && break; sleep 1
done
echo "YARD-SENT"
: > /tmp/in
(sleep 300 | nc -l -p "$LISTEN" > /tmp/in) &
sleep 1
echo "YARD-LISTENING"
i=0
while [ "$(wc -c < /tmp/in)" -lt BYTES ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done
echo "YARD-IN-SHA $(sha256sum /tmp/in | cut -d' ' -f1)"
echo "YARD-DONE"
sleep 600
"#;

// ---- the guest kernel and initramfs ------------------------------------

/// A kernel and an initramfs to boot.
pub struct GuestKit {
    /// The kernel image.
    pub vmlinuz: PathBuf,
    /// The initramfs (an uncompressed cpio archive).
    pub initrd: PathBuf,
    /// Holds the initramfs.
    _dir: tempfile::TempDir,
}

/// The kernel image package `linux-image-amd64` depends on, or `None`
/// when apt cannot say (no package lists).
fn kernel_package() -> Option<String> {
    let out = output(timed(60, "apt-cache").args(["depends", "linux-image-amd64"]));
    stdout(&out)
        .lines()
        .find_map(|l| l.trim().strip_prefix("Depends: "))
        .filter(|p| p.starts_with("linux-image-"))
        .map(str::to_string)
}

/// The first entry of `dir` whose name starts with `prefix`.
fn entry_starting(dir: &Path, prefix: &str) -> Option<PathBuf> {
    std::fs::read_dir(dir).ok()?.flatten().find_map(|e| {
        let name = e.file_name();
        name.to_string_lossy().starts_with(prefix).then(|| e.path())
    })
}

/// The extracted kernel under `cache`: `root/boot/vmlinuz-*` and the
/// modules, from the cache or fetched and extracted into it. Once per
/// process (concurrent tests share one extraction).
fn extracted_kernel(cache: &Path) -> PathBuf {
    static EXTRACTED: OnceLock<PathBuf> = OnceLock::new();
    EXTRACTED.get_or_init(|| extract_kernel(cache)).clone()
}

fn extract_kernel(cache: &Path) -> PathBuf {
    let Some(package) = kernel_package() else {
        // Offline: any kernel extracted before will do.
        return std::fs::read_dir(cache)
            .ok()
            .and_then(|entries| {
                entries
                    .flatten()
                    .map(|e| e.path())
                    .find(|p| p.join("done").exists())
            })
            .expect(
                "`apt-cache depends linux-image-amd64` names no linux-image package and no \
                 kernel is cached: run apt-get update",
            );
    };
    let dir = cache.join(&package);
    if dir.join("done").exists() {
        return dir;
    }
    let work = cache.join(format!("{package}.partial"));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(work.join("root")).unwrap();
    let fetched = output(
        timed(300, "apt-get")
            .args(["download", &package])
            .current_dir(&work),
    );
    assert!(
        fetched.status.success(),
        "cannot fetch the guest kernel:\n{}",
        describe(&format!("apt-get download {package}"), &fetched)
    );
    let deb = entry_starting(&work, &package).expect("the downloaded .deb");
    let script = format!(
        "dpkg-deb --fsys-tarfile '{}' | tar -x -C '{}' --wildcards './boot/vmlinuz-*' \
         './lib/modules/*/kernel/drivers/virtio/*' './lib/modules/*/kernel/drivers/net/virtio_net.ko' \
         './lib/modules/*/kernel/drivers/net/net_failover.ko' './lib/modules/*/kernel/net/core/failover.ko'",
        deb.display(),
        work.join("root").display()
    );
    let extracted = output(timed(300, "sh").args(["-c", &script]));
    assert!(
        extracted.status.success(),
        "cannot extract the guest kernel:\n{}",
        describe(&script, &extracted)
    );
    std::fs::remove_file(&deb).unwrap();
    std::fs::File::create(work.join("done")).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&work, &dir).unwrap();
    dir
}

/// Appends entries to a cpio archive in the "newc" format the kernel reads
/// as its initramfs.
struct Cpio {
    out: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.ino += 1;
        let fields = [
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0,
        ];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while self.out.len() % 4 != 0 {
            self.out.push(0);
        }
    }

    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040755, (0, 0), &[]);
    }

    fn file(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.entry(name, 0o100000 | mode, (0, 0), data);
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        self.out
    }
}

impl GuestKit {
    /// The kernel, cached under `cache` (fetched with `apt-get download`
    /// the first time), and a fresh initramfs with `/bin/busybox`, the
    /// virtio-net modules and [`INIT`], which moves `transfer_bytes` each way.
    pub fn build(cache: &Path, transfer_bytes: usize) -> GuestKit {
        guest_kit(cache, transfer_bytes)
    }

    /// The same kernel and initramfs, copied into `dir` and owned by
    /// `user` (uid, gid), for a guest that user runs.
    pub fn copied_for(&self, dir: &Path, (uid, gid): (u32, u32)) -> GuestKit {
        let copy = |from: &Path, name: &str| {
            let to = dir.join(name);
            std::fs::copy(from, &to).unwrap();
            std::os::unix::fs::chown(&to, Some(uid), Some(gid)).unwrap();
            to
        };
        GuestKit {
            vmlinuz: copy(&self.vmlinuz, "vmlinuz"),
            initrd: copy(&self.initrd, "initrd"),
            _dir: tempfile::tempdir().unwrap(),
        }
    }
}

fn guest_kit(cache: &Path, transfer_bytes: usize) -> GuestKit {
    let kernel = extracted_kernel(cache);
    let vmlinuz = entry_starting(&kernel.join("root/boot"), "vmlinuz-").expect("vmlinuz");
    let release =
        entry_starting(&kernel.join("root/lib/modules"), "").expect("the modules directory");
    let module_dir = |sub: &str| release.join("kernel").join(sub);
    let find_module = |m: &str| {
        ["drivers/virtio", "drivers/net", "net/core"]
            .iter()
            .map(|sub| module_dir(sub).join(format!("{m}.ko")))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("module {m} not in {}", release.display()))
    };
    let mut cpio = Cpio {
        out: Vec::new(),
        ino: 0,
    };
    for d in ["bin", "dev", "proc", "sys", "tmp", "lib", "lib/modules"] {
        cpio.dir(d);
    }
    // The console the kernel opens for init's output.
    cpio.entry("dev/console", 0o020600, (5, 1), &[]);
    let busybox = std::fs::read("/bin/busybox")
        .expect("read /bin/busybox: the guest needs a static one (Debian package busybox-static)");
    cpio.file("bin/busybox", 0o755, &busybox);
    let init = INIT
        .replace("MODULES", &MODULES.join(" "))
        .replace("BLOCKS", &(transfer_bytes / 65536).to_string())
        .replace("BYTES", &transfer_bytes.to_string());
    cpio.file("init", 0o755, init.as_bytes());
    for m in MODULES {
        let data = std::fs::read(find_module(m)).unwrap();
        cpio.file(&format!("lib/modules/{m}.ko"), 0o644, &data);
    }
    let dir = tempfile::tempdir().unwrap();
    let initrd = dir.path().join("initrd.cpio");
    std::fs::write(&initrd, cpio.finish()).unwrap();
    GuestKit {
        vmlinuz,
        initrd,
        _dir: dir,
    }
}

// ---- a running guest --------------------------------------------------

/// A QEMU guest a test started: its console as it comes, and the process,
/// ended by its pid when dropped.
pub struct Guest {
    /// The name failure messages call it by.
    pub name: &'static str,
    child: Option<Child>,
    console: Arc<Mutex<String>>,
}

impl Guest {
    /// Boots `kit` with `netdev` as its NIC's backend; the guest takes `ip`,
    /// pings `peer`, sends to `peer:send` and listens on `listen`.
    pub fn boot(
        name: &'static str,
        kit: &GuestKit,
        netdev: &str,
        mac: &str,
        ip: &str,
        peer: Ipv4Addr,
        (send, listen): (u16, u16),
    ) -> Guest {
        let append = format!("yard.send={send} yard.listen={listen}");
        Guest::boot_as(name, kit, netdev, (mac, ip), peer, &append, None)
    }

    /// Boots `kit` as [`Guest::boot`] does, with `append` on the kernel
    /// command line, as `user` (uid and gid) when given.
    pub fn boot_as(
        name: &'static str,
        kit: &GuestKit,
        netdev: &str,
        (mac, ip): (&str, &str),
        peer: Ipv4Addr,
        append: &str,
        user: Option<(u32, u32)>,
    ) -> Guest {
        let append = format!(
            "console=ttyS0 panic=-1 quiet rdinit=/init yard.ip={ip} yard.peer={peer} {append}"
        );
        let device = format!("virtio-net-pci,netdev=n0,mac={mac},romfile=");
        let mut qemu = match user {
            Some(user) => {
                let mut cmd = timed(600, "setpriv");
                cmd.args(as_user(user)).arg("qemu-system-x86_64");
                cmd
            }
            None => timed(600, "qemu-system-x86_64"),
        };
        let mut child = qemu
            .args(["-accel", "tcg", "-m", "256", "-smp", "1"])
            .args(["-nodefaults", "-no-user-config", "-display", "none"])
            .args(["-serial", "stdio", "-no-reboot"])
            .arg("-kernel")
            .arg(&kit.vmlinuz)
            .arg("-initrd")
            .arg(&kit.initrd)
            .args(["-append", &append, "-netdev", netdev, "-device", &device])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start qemu-system-x86_64");
        let console = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let console = console.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let mut text = console.lock().unwrap();
                    text.push_str(&line);
                    text.push('\n');
                }
            });
        }
        Guest {
            name,
            child: Some(child),
            console,
        }
    }

    /// What the guest printed so far.
    pub fn console(&self) -> String {
        self.console.lock().unwrap().clone()
    }

    /// The rest of the console line starting with `tag`, waiting up to
    /// `within` for it; panics with the console (and `lab`'s counters and
    /// log) if it does not come.
    pub fn wait_for(&mut self, lab: &Lab, tag: &str, within: Duration) -> String {
        let context = || {
            format!(
                "{}\n{}",
                stdout(&lab.ctl(&["port", "stats"])),
                lab.log_tail()
            )
        };
        self.wait_for_with(tag, within, &context)
    }

    /// [`Guest::wait_for`] with `context()` in the failure message.
    pub fn wait_for_with(
        &mut self,
        tag: &str,
        within: Duration,
        context: &dyn Fn() -> String,
    ) -> String {
        let deadline = Instant::now() + within;
        loop {
            let found = self.console().lines().find_map(|l| {
                l.trim_end_matches('\r')
                    .strip_prefix(tag)
                    .map(str::to_string)
            });
            if let Some(rest) = found {
                return rest.trim().to_string();
            }
            let exited = self
                .child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
            if exited || Instant::now() >= deadline {
                panic!(
                    "guest {}: no `{tag}` line {}:\n--- console ---\n{}\n{}",
                    self.name,
                    if exited {
                        "before QEMU exited"
                    } else {
                        "in time"
                    },
                    self.console(),
                    context()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Ends QEMU (by the pid this test started).
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            end_child(child, Duration::from_secs(3));
        }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `setpriv` arguments that run a program as `(uid, gid)` with no other
/// groups.
fn as_user((uid, gid): (u32, u32)) -> Vec<String> {
    vec![
        format!("--reuid={uid}"),
        format!("--regid={gid}"),
        "--clear-groups".to_string(),
    ]
}
