#!/usr/bin/env python3
"""Switchyard lab benchmark: yardd against the Linux kernel bridge, in one run.

For every selected *path* the script builds the same topology -- two network
namespaces c1 (client, 10.88.0.1/24) and c2 (server, 10.88.0.2/24) joined by
the switch under test -- and runs through it:

  * iperf3 TCP, 1 stream and 4 streams (receiver goodput, Gbit/s)
  * iperf3 UDP, 64-byte payloads, unlimited rate (receiver packets/s)
  * sockperf UDP ping-pong (round trip p50 / p99, microseconds), with
    /dev/cpu_dma_latency held at 0 for the duration
  * the CPU use of yardd during the TCP 1-stream runs (percent of one core)

and prints one table with the ratios yardd/bridge. See benches/README.md.

Paths are small classes with setup()/teardown(); adding a peer (OVS, VDE,
NAT, ...) means adding one class to PATHS. Everything is created in
namespaces named with a per-run prefix and removed again in a finally block,
on Ctrl-C and on SIGTERM; only processes this script started are signalled,
by PID.

Python 3 standard library only; run as root.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIENT_IP = "10.88.0.1"
SERVER_IP = "10.88.0.2"
PREFIX_LEN = 24
IPERF_PORT = 5201
SOCKPERF_PORT = 11111
UDP_LEN = 64
# Extra seconds every bounded command gets on top of its test duration.
SLACK = 20


def log(msg):
    print(f"[lab_bench] {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    """A path could not be set up or a measurement failed."""


# --------------------------------------------------------------------------
# Resource tracking: everything created is registered here and released in
# reverse order, exactly once, whatever happens.
# --------------------------------------------------------------------------


class Resources:
    def __init__(self):
        self.procs = []  # (label, Popen)
        self.netns = []  # names
        self.dirs = []  # temp dirs
        self.files = []  # open file objects (logs)

    def add_proc(self, label, proc):
        self.procs.append((label, proc))
        return proc

    def stop_proc(self, proc, grace=5.0):
        """Stop one process we started: SIGTERM by PID, then SIGKILL."""
        if proc.poll() is not None:
            return
        try:
            os.kill(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                log(f"warning: pid {proc.pid} did not exit after SIGKILL")

    def release_proc(self, proc):
        self.stop_proc(proc)
        self.procs = [(lbl, p) for (lbl, p) in self.procs if p is not proc]

    def add_netns(self, name):
        run(["ip", "netns", "add", name])
        self.netns.append(name)
        run(["ip", "-n", name, "link", "set", "lo", "up"])
        return name

    def release_netns(self, name):
        if name in self.netns:
            self.netns.remove(name)
            run(["ip", "netns", "del", name], check=False)

    def cleanup(self):
        for _label, proc in reversed(self.procs):
            self.stop_proc(proc)
        self.procs = []
        for name in reversed(self.netns):
            run(["ip", "netns", "del", name], check=False)
        self.netns = []
        for f in self.files:
            try:
                f.close()
            except OSError:
                pass
        self.files = []
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)
        self.dirs = []


RES = Resources()


def run(cmd, check=True, timeout=60, capture=True):
    """Run a command to completion; raise BenchError on failure when check.

    Unlike subprocess.run, an interrupt (Ctrl-C, SIGTERM) or a timeout stops
    the child with SIGTERM first, which coreutils `timeout` forwards to the
    command it wraps, so no grandchild is left running."""
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.PIPE if capture else None,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        RES.stop_proc(proc)
        proc.communicate()
        if check:
            raise BenchError(f"timed out: {' '.join(cmd)}")
        return None
    except BaseException:
        RES.stop_proc(proc)
        raise
    cp = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    if check and cp.returncode != 0:
        err = (cp.stderr or "").strip() or (cp.stdout or "").strip()
        raise BenchError(f"failed ({cp.returncode}): {' '.join(cmd)}: {err}")
    return cp


def nsexec(ns, cmd):
    return ["ip", "netns", "exec", ns] + cmd


def bounded(seconds, cmd):
    """Wrap cmd in coreutils timeout (TERM, then KILL 5 s later)."""
    return ["timeout", "-k", "5", str(int(seconds)), *cmd]


# --------------------------------------------------------------------------
# yardd handling
# --------------------------------------------------------------------------


class Yardd:
    """One yardd process in its own namespace, with its own socket/state dir."""

    def __init__(self, opts, ns):
        self.opts = opts
        self.ns = ns
        self.dir = tempfile.mkdtemp(prefix="lab_bench_yardd.")
        RES.dirs.append(self.dir)
        self.socket = os.path.join(self.dir, "yardd.sock")
        self.state = os.path.join(self.dir, "state")
        os.mkdir(self.state)
        self.log_path = os.path.join(self.dir, "yardd.log")
        self.proc = None

    def start(self):
        logf = open(self.log_path, "w")
        RES.files.append(logf)
        # `ip netns exec` execs yardd, so the PID is yardd's own.
        cmd = nsexec(
            self.ns,
            [
                self.opts.yardd,
                "--socket",
                self.socket,
                "--state-dir",
                self.state,
                "--log",
                self.opts.yardd_log,
            ],
        )
        self.proc = RES.add_proc(
            "yardd",
            subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, env=dict(os.environ, NO_COLOR="1")),
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"yardd exited with {self.proc.returncode}: {self.log_tail()}")
            if os.path.exists(self.socket):
                cp = run(self.ctl_cmd(["status"]), check=False, timeout=10)
                if cp is not None and cp.returncode == 0:
                    return
            time.sleep(0.2)
        raise BenchError(f"yardd did not answer on {self.socket} within 15 s: {self.log_tail()}")

    def ctl_cmd(self, args):
        return [self.opts.yardctl, "--socket", self.socket, *args]

    def ctl(self, *args):
        return run(self.ctl_cmd(list(args)), timeout=30)

    def pid(self):
        return self.proc.pid if self.proc else None

    def stop(self):
        if self.proc is not None:
            RES.release_proc(self.proc)
            self.proc = None

    def log_tail(self, n=15):
        try:
            with open(self.log_path, errors="replace") as f:
                lines = f.read().splitlines()
            return " | ".join(lines[-n:])
        except OSError:
            return ""


# --------------------------------------------------------------------------
# Paths: each builds c1 <-> switch <-> c2 and tears it down again.
# --------------------------------------------------------------------------


class Path:
    """A way of joining the client namespace c1 to the server namespace c2.

    Subclasses implement build(); they create namespaces with self.netns()
    so teardown removes them. After setup(), self.client_ns and
    self.server_ns hold the namespace names and the server listens on
    SERVER_IP; switch_pid() names the switch process for CPU sampling
    (None for kernel paths).
    """

    name = "?"
    needs_yardd = False
    description = ""

    def __init__(self, opts, prefix, tag):
        self.opts = opts
        self.prefix = prefix  # per-run, e.g. lb1234
        self.tag = tag  # per-path letter, keeps names unique within a run
        self.client_ns = None
        self.server_ns = None
        self.my_netns = []

    def ns_name(self, role):
        return f"{self.prefix}{self.tag}{role}"

    def netns(self, role):
        name = RES.add_netns(self.ns_name(role))
        self.my_netns.append(name)
        return name

    def setup(self):
        self.client_ns = self.netns("c1")
        self.server_ns = self.netns("c2")
        self.build()
        wait_reachable(self.client_ns, SERVER_IP)

    def build(self):
        raise NotImplementedError

    def switch_pid(self):
        return None

    def switch_stats(self):
        """Counters worth keeping in the JSON after the runs (or None)."""
        return None

    def teardown(self):
        self.stop_switch()
        for name in reversed(self.my_netns):
            RES.release_netns(name)
        self.my_netns = []

    def stop_switch(self):
        pass

    # helpers -----------------------------------------------------------
    @staticmethod
    def config_container_if(ns, ifname, ip):
        run(["ip", "-n", ns, "addr", "add", f"{ip}/{PREFIX_LEN}", "dev", ifname])
        run(["ip", "-n", ns, "link", "set", ifname, "up"])

    def veth_into(self, host_ns, host_if, container_ns, ip):
        """veth pair: host_if in host_ns (up, no address), eth0 in container_ns."""
        run(["ip", "-n", host_ns, "link", "add", host_if, "type", "veth",
             "peer", "name", "eth0", "netns", container_ns])
        run(["ip", "-n", host_ns, "link", "set", host_if, "up"])
        self.config_container_if(container_ns, "eth0", ip)


class BridgeVeth(Path):
    name = "bridge-veth"
    description = "Linux bridge in its own namespace, two veth pairs"

    def build(self):
        br = self.netns("br")
        run(["ip", "-n", br, "link", "add", "br0", "type", "bridge",
             "stp_state", "0", "forward_delay", "0"])
        run(["ip", "-n", br, "link", "set", "br0", "up"])
        for i, (ns, ip) in enumerate([(self.client_ns, CLIENT_IP), (self.server_ns, SERVER_IP)], 1):
            port = f"{self.prefix}v{i}"
            self.veth_into(br, port, ns, ip)
            run(["ip", "-n", br, "link", "set", port, "master", "br0"])


class YarddPath(Path):
    """Common part of the yardd paths: a yardd in a dedicated namespace and
    a plain L2 network (no subnet, so no gateway address competes with
    10.88.0.1)."""

    needs_yardd = True
    net = "lbnet"

    def build(self):
        self.yns = self.netns("y")
        self.yardd = Yardd(self.opts, self.yns)
        self.yardd.start()
        self.yardd.ctl("net", "create", self.net)
        self.attach()

    def attach(self):
        raise NotImplementedError

    def switch_pid(self):
        return self.yardd.pid()

    def switch_stats(self):
        cp = run(self.yardd.ctl_cmd(["--json", "port", "stats"]), check=False, timeout=30)
        if cp is None or cp.returncode != 0:
            return None
        try:
            return json.loads(cp.stdout)
        except ValueError:
            return cp.stdout

    def stop_switch(self):
        y = getattr(self, "yardd", None)
        if y is not None:
            if y.proc is not None and y.proc.poll() is not None:
                log(f"{self.name}: yardd had exited with {y.proc.returncode}: {y.log_tail()}")
            y.stop()


class YarddTap(YarddPath):
    name = "yardd-tap"
    description = "yardd, TAP ports created by yardd inside c1/c2"

    def attach(self):
        for i, (ns, ip) in enumerate([(self.client_ns, CLIENT_IP), (self.server_ns, SERVER_IP)], 1):
            self.yardd.ctl("port", "add", f"c{i}", "--net", self.net, "--tap",
                           "--netns", ns, "--ifname", "eth0",
                           "--ip", f"{ip}/{PREFIX_LEN}")


class YarddVeth(YarddPath):
    name = "yardd-veth"
    description = "yardd, veth host ends in yardd's namespace via AF_PACKET"

    def attach(self):
        for i, (ns, ip) in enumerate([(self.client_ns, CLIENT_IP), (self.server_ns, SERVER_IP)], 1):
            host_if = f"{self.prefix}v{i}"
            self.veth_into(self.yns, host_if, ns, ip)
            self.yardd.ctl("port", "add", f"v{i}", "--net", self.net, "--iface", host_if)


# Order matters: the first is the baseline the ratios are taken against.
PATHS = [BridgeVeth, YarddTap, YarddVeth]
BASELINE = "bridge-veth"


def wait_reachable(ns, ip, tries=20):
    for _ in range(tries):
        cp = run(nsexec(ns, ["ping", "-c", "1", "-W", "1", ip]), check=False, timeout=10)
        if cp is not None and cp.returncode == 0:
            return
        time.sleep(0.25)
    raise BenchError(f"{ip} not reachable from {ns} (ping)")


# --------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid):
    """utime + stime of a process (all threads), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    # comm may contain spaces/parens: split after the last ')'.
    fields = data[data.rindex(")") + 2:].split()
    # fields[0] is state (field 3); utime is field 14, stime field 15.
    return int(fields[11]) + int(fields[12])


class IperfServer:
    def __init__(self, ns, lifetime):
        self.proc = RES.add_proc(
            "iperf3-server",
            subprocess.Popen(
                bounded(lifetime, nsexec(ns, ["iperf3", "-s", "-B", SERVER_IP,
                                              "-p", str(IPERF_PORT)])),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                stdin=subprocess.DEVNULL),
        )
        self.ns = ns
        time.sleep(0.3)
        # wait until it listens
        for _ in range(50):
            if self.proc.poll() is not None:
                raise BenchError("iperf3 server exited")
            cp = run(nsexec(ns, ["ss", "-Htln", f"sport = :{IPERF_PORT}"]), check=False)
            if cp is not None and cp.stdout.strip():
                return
            time.sleep(0.1)
        raise BenchError("iperf3 server did not start listening")

    def stop(self):
        RES.release_proc(self.proc)


def iperf_client(ns, args, duration):
    cmd = bounded(duration + SLACK,
                  nsexec(ns, ["iperf3", "-c", SERVER_IP, "-p", str(IPERF_PORT), "-J",
                              "-t", str(duration), *args]))
    cp = run(cmd, check=False, timeout=duration + SLACK + 10)
    if cp is None:
        raise BenchError("iperf3 client timed out")
    try:
        data = json.loads(cp.stdout)
    except ValueError:
        raise BenchError(f"iperf3 gave no JSON (rc {cp.returncode}): {cp.stderr.strip()[:300]}")
    if "error" in data:
        raise BenchError(f"iperf3: {data['error']}")
    if cp.returncode != 0:
        raise BenchError(f"iperf3 rc {cp.returncode}")
    return data


def tcp_gbps(data):
    s = data["end"]["sum_received"]
    return s["bits_per_second"] / 1e9


def udp_rx_pps(data):
    """Receiver packets/s. iperf3's `packets` in the receiver sum counts
    datagrams by sequence number (including lost ones), so received =
    packets - lost_packets."""
    s = data["end"]["sum_received"]
    received = s["packets"] - s["lost_packets"]
    return received / s["seconds"], {
        "packets": s["packets"], "lost_packets": s["lost_packets"],
        "received": received, "seconds": s["seconds"], "bytes": s["bytes"],
    }


class DmaLatency:
    """Hold /dev/cpu_dma_latency at 0 while the context is open."""

    def __enter__(self):
        self.fd = None
        try:
            self.fd = os.open("/dev/cpu_dma_latency", os.O_WRONLY)
            os.write(self.fd, struct.pack("i", 0))
        except OSError as e:
            log(f"note: cannot hold /dev/cpu_dma_latency at 0 ({e}); latency includes CPU wake-ups")
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        return False

    @property
    def held(self):
        return self.fd is not None


PCT_RE = re.compile(r"percentile\s+([0-9.]+)\s*=\s*([0-9.]+)")


def sockperf_once(client_ns, server_ns, duration):
    srv = RES.add_proc(
        "sockperf-server",
        subprocess.Popen(
            bounded(duration + 2 * SLACK,
                    nsexec(server_ns, ["sockperf", "sr", "-i", SERVER_IP, "-p", str(SOCKPERF_PORT)])),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL),
    )
    try:
        time.sleep(0.5)
        if srv.poll() is not None:
            raise BenchError("sockperf server exited")
        cmd = bounded(duration + SLACK,
                      nsexec(client_ns, ["sockperf", "ping-pong", "-i", SERVER_IP,
                                         "-p", str(SOCKPERF_PORT), "-t", str(duration),
                                         "--full-rtt"]))
        cp = run(cmd, check=False, timeout=duration + SLACK + 10)
        if cp is None:
            raise BenchError("sockperf timed out")
        out = (cp.stdout or "") + (cp.stderr or "")
        pct = {float(a): float(b) for a, b in PCT_RE.findall(out)}
        if 50.0 not in pct or 99.0 not in pct:
            raise BenchError(f"sockperf output without percentiles (rc {cp.returncode}): {out.strip()[-300:]}")
        return pct[50.0], pct[99.0]
    finally:
        RES.release_proc(srv)


def link_counters(ns, ifname="eth0"):
    """Kernel counters of a container interface (drops before the switch
    show up here, e.g. a full TAP queue as tx_dropped)."""
    cp = run(["ip", "-n", ns, "-s", "-j", "link", "show", ifname], check=False, timeout=10)
    if cp is None or cp.returncode != 0:
        return None
    try:
        return json.loads(cp.stdout)[0].get("stats64")
    except (ValueError, IndexError, AttributeError):
        return None


def udp_snmp(ns):
    """The Udp counters of a namespace (/proc/net/snmp): InErrors and
    RcvbufErrors count datagrams that reached the receiver's host but not
    its socket."""
    cp = run(nsexec(ns, ["cat", "/proc/net/snmp"]), check=False, timeout=10)
    if cp is None or cp.returncode != 0:
        return None
    rows = [line.split()[1:] for line in cp.stdout.splitlines() if line.startswith("Udp:")]
    if len(rows) < 2:
        return None
    return dict(zip(rows[0], (int(v) for v in rows[1])))


def median(xs):
    return statistics.median(xs) if xs else None


def measure(path, opts):
    """Run every workload through an already set-up path; returns a dict."""
    T, R = opts.time, opts.repeats
    res = {"path": path.name, "description": path.description, "errors": [],
           "loadavg_before": loadavg()}
    cns, sns = path.client_ns, path.server_ns
    # lifetime bound for the iperf3 server: all iperf3 runs plus slack
    server = IperfServer(sns, lifetime=3 * R * (T + SLACK) + 60)
    try:
        # TCP, 1 stream, with switch CPU sampling
        pid = path.switch_pid()
        runs, cpu_ticks_total, wall_total = [], 0, 0.0
        for i in range(R):
            try:
                t0 = time.monotonic()
                c0 = cpu_ticks(pid) if pid else None
                data = iperf_client(cns, [], T)
                c1 = cpu_ticks(pid) if pid else None
                t1 = time.monotonic()
                runs.append(tcp_gbps(data))
                if pid:
                    cpu_ticks_total += c1 - c0
                    wall_total += t1 - t0
                log(f"{path.name}: TCP1 run {i + 1}/{R}: {runs[-1]:.2f} Gbit/s")
            except (BenchError, OSError) as e:
                res["errors"].append(f"tcp1: {e}")
                log(f"{path.name}: TCP1 run {i + 1}: {e}")
        res["tcp1_gbps_runs"] = runs
        res["tcp1_gbps"] = median(runs)
        if pid and wall_total > 0:
            res["switch_cpu_pct"] = 100.0 * cpu_ticks_total / CLK_TCK / wall_total
            res["switch_cpu_wall_s"] = wall_total
        else:
            res["switch_cpu_pct"] = None

        runs = []
        for i in range(R):
            try:
                runs.append(tcp_gbps(iperf_client(cns, ["-P", "4"], T)))
                log(f"{path.name}: TCP4 run {i + 1}/{R}: {runs[-1]:.2f} Gbit/s")
            except BenchError as e:
                res["errors"].append(f"tcp4: {e}")
                log(f"{path.name}: TCP4 run {i + 1}: {e}")
        res["tcp4_gbps_runs"] = runs
        res["tcp4_gbps"] = median(runs)

        runs, raw = [], []
        for i in range(R):
            try:
                pps, detail = udp_rx_pps(iperf_client(cns, ["-u", "-l", str(UDP_LEN), "-b", "0"], T))
                runs.append(pps / 1e3)
                raw.append(detail)
                log(f"{path.name}: UDP64 run {i + 1}/{R}: {runs[-1]:.0f} kpps "
                    f"(lost {detail['lost_packets']} of {detail['packets']})")
            except BenchError as e:
                res["errors"].append(f"udp64: {e}")
                log(f"{path.name}: UDP64 run {i + 1}: {e}")
        res["udp64_kpps_runs"] = runs
        res["udp64_raw"] = raw
        res["udp64_kpps"] = median(runs)
    finally:
        server.stop()

    res["rtt_p50_us"] = res["rtt_p99_us"] = None
    res["rtt_p50_us_runs"], res["rtt_p99_us_runs"] = [], []
    if opts.sockperf:
        with DmaLatency() as dma:
            res["dma_latency_held"] = dma.held
            for i in range(R):
                try:
                    p50, p99 = sockperf_once(cns, sns, T)
                    res["rtt_p50_us_runs"].append(p50)
                    res["rtt_p99_us_runs"].append(p99)
                    log(f"{path.name}: RTT run {i + 1}/{R}: p50 {p50:.1f} us, p99 {p99:.1f} us")
                except BenchError as e:
                    res["errors"].append(f"rtt: {e}")
                    log(f"{path.name}: RTT run {i + 1}: {e}")
        res["rtt_p50_us"] = median(res["rtt_p50_us_runs"])
        res["rtt_p99_us"] = median(res["rtt_p99_us_runs"])
    res["link_counters"] = {"client_eth0": link_counters(cns), "server_eth0": link_counters(sns)}
    res["server_udp_snmp"] = udp_snmp(sns)
    return res


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return None


def machine_info():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "loadavg_at_start": loadavg(),
    }


def tool_version(cmd):
    cp = run(cmd, check=False, timeout=10)
    if cp is None:
        return None
    out = ((cp.stdout or "") + (cp.stderr or "")).strip().splitlines()
    return out[0].strip() if out else None


def fmt(x, spec):
    return "n/a" if x is None else format(x, spec)


def print_report(results, machine, opts, notes):
    m = machine
    print()
    print(f"machine: {m['nproc']} CPUs, {m['cpu_model']}, kernel {m['kernel']}, {m['date']}, "
          f"load average at start {m['loadavg_at_start']}")
    print(f"method: iperf3 -t {opts.time} s, sockperf ping-pong -t {opts.time} s, "
          f"median of {opts.repeats}; receiver side; client, server and switch share the CPUs")
    print()
    hdr = f"{'path':<13}{'TCP1 Gbit/s':>12}{'TCP4 Gbit/s':>13}{'UDP64 kpps':>12}{'RTT p50/p99 us':>17}{'yardd CPU%':>12}"
    print(hdr)
    for r in results:
        if r.get("failed"):
            msg = r["failed"] if len(r["failed"]) <= 300 else r["failed"][:300] + "..."
            print(f"{r['path']:<13}  FAILED: {msg}")
            continue
        rtt = "n/a" if r["rtt_p50_us"] is None else f"{r['rtt_p50_us']:.1f}/{r['rtt_p99_us']:.1f}"
        cpu = r.get("switch_cpu_pct")
        cpu_s = "kernel" if r.get("kernel") else fmt(cpu, ".0f")
        print(f"{r['path']:<13}{fmt(r['tcp1_gbps'], '.2f'):>12}{fmt(r['tcp4_gbps'], '.2f'):>13}"
              f"{fmt(r['udp64_kpps'], '.0f'):>12}{rtt:>17}{cpu_s:>12}")
    base = next((r for r in results if r["path"] == BASELINE and not r.get("failed")), None)
    if base is not None:
        for r in results:
            if r is base or r.get("failed"):
                continue

            def ratio(key):
                a, b = r.get(key), base.get(key)
                return "n/a" if a is None or not b else f"{a / b:.2f}x"

            print(f"ratio {r['path']}/{BASELINE}: TCP1 {ratio('tcp1_gbps')}  TCP4 {ratio('tcp4_gbps')}  "
                  f"UDP64 {ratio('udp64_kpps')}  RTT p50 {ratio('rtt_p50_us')}  "
                  f"RTT p99 {ratio('rtt_p99_us')}")
    for r in results:
        for e in r.get("errors", []):
            notes.append(f"{r['path']}: {e}")
    if notes:
        print()
        for n in notes:
            print(f"note: {n}")


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Lab benchmark: the same iperf3/sockperf workload through yardd and the kernel bridge.")
    names = [c.name for c in PATHS]
    p.add_argument("--paths", default=",".join(names),
                   help=f"comma-separated paths to run (default: all: {','.join(names)})")
    p.add_argument("--time", "-t", type=int, default=None, help="seconds per run (default 10; 3 with --quick)")
    p.add_argument("--repeats", "-r", type=int, default=None, help="runs per measurement, median reported (default 3; 1 with --quick)")
    p.add_argument("--quick", action="store_true", help="smoke test: 3 s runs, 1 repeat")
    p.add_argument("--json", metavar="FILE", help="write all raw numbers to FILE")
    p.add_argument("--no-build", action="store_true", help="do not run cargo build first")
    p.add_argument("--yardd", default=os.path.join(REPO, "target/release/yardd"))
    p.add_argument("--yardctl", default=os.path.join(REPO, "target/release/yardctl"))
    p.add_argument("--yardd-log", default="warn", help="yardd --log level (default warn)")
    p.add_argument("--no-latency", action="store_true", help="skip the sockperf runs")
    opts = p.parse_args(argv)
    if opts.time is None:
        opts.time = 3 if opts.quick else 10
    if opts.repeats is None:
        opts.repeats = 1 if opts.quick else 3
    if opts.time < 1 or opts.repeats < 1:
        p.error("--time and --repeats must be >= 1")
    wanted = [s.strip() for s in opts.paths.split(",") if s.strip()]
    unknown = [w for w in wanted if w not in names]
    if unknown or not wanted:
        p.error(f"unknown path(s) {unknown}; known: {', '.join(names)}")
    opts.path_classes = [c for c in PATHS if c.name in wanted]
    return opts


def on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv):
    opts = parse_args(argv)
    if os.geteuid() != 0:
        print("lab_bench.py must run as root (it creates network namespaces)", file=sys.stderr)
        return 2
    for tool in ["ip", "iperf3", "timeout", "ping", "ss"]:
        if shutil.which(tool) is None:
            print(f"missing tool: {tool} (apt-get install -y --no-install-recommends iperf3 iproute2 iputils-ping)",
                  file=sys.stderr)
            return 2
    notes = []
    opts.sockperf = not opts.no_latency and shutil.which("sockperf") is not None
    if not opts.no_latency and not opts.sockperf:
        notes.append("sockperf not installed, RTT not measured: apt-get install -y --no-install-recommends sockperf")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    results = []
    machine = machine_info()
    try:
        load1 = float((machine["loadavg_at_start"] or "0").split()[0])
    except ValueError:
        load1 = 0.0
    if load1 > 0.5 * (machine["nproc"] or 1):
        notes.append(f"load average {load1:.2f} at start on {machine['nproc']} CPUs: other work "
                     f"competes with the benchmark; figures are lower and noisier than on an idle machine")
    prefix = f"lb{os.getpid()}"
    try:
        yardd_error = None
        if any(c.needs_yardd for c in opts.path_classes):
            if not opts.no_build:
                log("cargo build --release --bins -p yard-switch -p yard-ctl")
                cp = run(["cargo", "build", "--release", "--bins", "-p", "yard-switch", "-p", "yard-ctl"],
                         check=False, timeout=1800, capture=False)
                if cp is None or cp.returncode != 0:
                    yardd_error = "cargo build failed"
            for b in (opts.yardd, opts.yardctl):
                if yardd_error is None and not os.access(b, os.X_OK):
                    yardd_error = f"{b} not found or not executable"
        for idx, cls in enumerate(opts.path_classes):
            if cls.needs_yardd and yardd_error:
                results.append({"path": cls.name, "failed": yardd_error})
                continue
            path = cls(opts, prefix, chr(ord("a") + idx))
            log(f"{path.name}: setting up ({path.description})")
            try:
                path.setup()
                r = measure(path, opts)
                r["kernel"] = not cls.needs_yardd
                r["switch_stats"] = path.switch_stats()
                results.append(r)
            except BenchError as e:
                log(f"{path.name}: FAILED: {e}")
                results.append({"path": cls.name, "failed": str(e)})
            finally:
                path.teardown()
    except KeyboardInterrupt as e:
        log(f"interrupted ({e or 'Ctrl-C'}); cleaning up")
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        RES.cleanup()
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        RES.cleanup()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    print_report(results, machine, opts, notes)
    if opts.json:
        doc = {
            "machine": machine,
            "tools": {
                "iperf3": tool_version(["iperf3", "--version"]),
                "sockperf": tool_version(["sockperf", "--version"]) if opts.sockperf else None,
            },
            "method": {"time_s": opts.time, "repeats": opts.repeats, "udp_len": UDP_LEN,
                       "baseline": BASELINE},
            "results": results,
        }
        with open(opts.json, "w") as f:
            json.dump(doc, f, indent=2)
        log(f"wrote {opts.json}")
    return 0 if all(not r.get("failed") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
