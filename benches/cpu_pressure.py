#!/usr/bin/env python3
"""How much of each short period some task waited for a CPU, machine-wide:
the `some` total of /proc/pressure/cpu (PSI), read every PERIOD seconds
(default 0.01, yardd's busy-polling period), one line per period:
`<unix time> <percent of the period stalled>`. Runs until interrupted.

yardd stops busy polling for periods 10 % stalled or more
(docs/ARCHITECTURE.md, Threads); run this beside a workload to see where
it falls:

    python3 benches/cpu_pressure.py > /tmp/psi.log &
    ... the workload ...
    kill %1

Read-only: it only reads /proc/pressure/cpu. It is one more task that
wakes every period, so it adds a little pressure of its own (about 1 % at
10 ms on a 2-vCPU machine)."""
import os
import sys
import time


def stalled_us(fd):
    line = os.pread(fd, 256, 0).split(b"\n")[0]
    return int(line.split(b"total=")[1])


def main():
    period = float(sys.argv[1]) if len(sys.argv) > 1 else 0.01
    try:
        fd = os.open("/proc/pressure/cpu", os.O_RDONLY)
        last, at = stalled_us(fd), time.monotonic()
    except OSError as e:
        sys.exit(f"cpu_pressure: /proc/pressure/cpu: {e} (a kernel without PSI, or booted with psi=0)")
    try:
        while True:
            time.sleep(period)
            now_us, now = stalled_us(fd), time.monotonic()
            print(f"{time.time():.3f} {100 * (now_us - last) / 1e6 / (now - at):.1f}", flush=True)
            last, at = now_us, now
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
