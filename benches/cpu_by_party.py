#!/usr/bin/env python3
"""Who uses the CPUs during a lab_bench iperf3 run: the sender, the receiver,
the switch, or nobody.

Run it beside `lab_bench.py` with runs of 10 s or more (`--time 12`). For
each `iperf3 -c` process it sees start, it waits 3 s (the stream's start),
then measures over 5 s the CPU time of each party, in CPUs (1.0 = one CPU
busy the whole window), and prints one JSON line:

- `sender`: the iperf3 client; `receiver`: the iperf3 server;
- `switch`: yardd, ovs-vswitchd or VDE (every thread);
- `ksoftirqd`, `other`: everything else that ran;
- `idle_cpus`: the machine's idle time (idle + iowait);
- `softirq_cpus`: the time spent in softirq, whoever it ran for.

A task's CPU is `utime + stime` from /proc/PID/stat. With the kernel's
tick-based accounting (no `CONFIG_IRQ_TIME_ACCOUNTING`) softirq work done
on a task's way out of a system call, such as a bridge forwarding the
sender's segments, is charged to that task: so the kernel's paths show
their forwarding in the sender's figure, and yardd's show it in `switch`.
Divide a party's CPUs by the run's throughput (from lab_bench's JSON) for
its CPU-seconds per GB or per packet.

    python3 benches/cpu_by_party.py /tmp/parties.json > /tmp/parties.log &
    python3 benches/lab_bench.py --time 12 --repeats 1 --metrics tcp1 ...
    wait   # it stops by itself 60 s after the last iperf3

Read-only: it reads /proc and signals nothing. It scans /proc twice a
second while it waits, and stops after 60 s without any iperf3 process or
after --max-seconds (default 3600)."""
import argparse
import json
import os
import time

HZ = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1
WARMUP_S = 3.0
WINDOW_S = 5.0
QUIET_S = 60.0


def tasks():
    """pid -> (comm, argv, utime + stime in ticks) for every process."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
            with open(f"/proc/{name}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except OSError:
            continue  # gone meanwhile
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out[int(name)] = (comm, argv, int(fields[11]) + int(fields[12]))
    return out


def party(comm, argv):
    if comm == "iperf3":
        return "sender" if "-c" in argv else "receiver"
    if comm.startswith(("yardd", "ovs-vswitchd", "vde")):
        return "switch"
    if comm.startswith("ksoftirqd"):
        return "ksoftirqd"
    return "other"


def machine():
    """(all, idle + iowait, softirq) ticks of /proc/stat's `cpu` line."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v[:8]), v[3] + v[4], v[6]


def measure():
    before, (all0, idle0, soft0), t0 = tasks(), machine(), time.monotonic()
    time.sleep(WINDOW_S)
    after, (all1, idle1, soft1), t1 = tasks(), machine(), time.monotonic()
    cpus = {}
    for pid, (comm, argv, ticks) in after.items():
        if pid in before and before[pid][0] == comm and ticks > before[pid][2]:
            who = party(comm, argv)
            cpus[who] = cpus.get(who, 0.0) + (ticks - before[pid][2]) / HZ / (t1 - t0)
    ticks = max(all1 - all0, 1)
    cpus["idle_cpus"] = (idle1 - idle0) / ticks * NCPU
    cpus["softirq_cpus"] = (soft1 - soft0) / ticks * NCPU
    cpus["at"] = time.strftime("%H:%M:%S")
    return cpus


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="JSON file for every window's figures, written at the end")
    p.add_argument("--max-seconds", type=float, default=3600.0)
    opts = p.parse_args()
    start = last_seen = time.monotonic()
    seen, windows = set(), []
    while time.monotonic() - last_seen < QUIET_S and time.monotonic() - start < opts.max_seconds:
        now = tasks()
        if any(comm == "iperf3" for comm, _, _ in now.values()):
            last_seen = time.monotonic()
        new = [pid for pid, (comm, argv, _) in now.items()
               if comm == "iperf3" and "-c" in argv and pid not in seen]
        if not new:
            time.sleep(0.5)
            continue
        seen.update(new)
        time.sleep(WARMUP_S)
        window = measure()
        windows.append(window)
        print(json.dumps(window), flush=True)
    with open(opts.out, "w") as f:
        json.dump(windows, f, indent=1)


if __name__ == "__main__":
    main()
