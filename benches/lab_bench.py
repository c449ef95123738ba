#!/usr/bin/env python3
"""Switchyard lab benchmark: yardd against its peers, in one run.

For every selected *path* the script builds a topology in namespaces of its
own -- L2: two namespaces c1 (client, 10.88.0.1/24) and c2 (server,
10.88.0.2/24) joined by the switch under test (Linux bridge, yardd with TAP or
veth ports and 1 or 2 datapath threads, Open vSwitch userspace, VDE); NAT: a
container behind yardd's (1 or 2 threads) or the kernel's SNAT/DNAT and an
"outside" namespace; GRE: two "hosts" joined by a veth underlay, each with its
switch (yardd or OVS) and a container -- and runs through it what the path's
`metrics` name:

  * iperf3 TCP, 1 stream and 4 streams (receiver goodput, Gbit/s)
  * iperf3 UDP, 64-byte payloads, unlimited rate (receiver packets/s)
  * sockperf UDP ping-pong (round trip p50 / p99, microseconds), with
    /dev/cpu_dma_latency held at 0 for the duration
  * TCP connections per second (a bounded Python client/server pair)
  * the CPU use of the switch processes during the TCP 1-stream runs

and prints one table, every figure with its ratio to the row's reference
(yardd-tap for L2 peers, the kernel NAT for yardd's NAT rows, yardd-gre for
ovs-gre). See benches/README.md.

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
CPS_PORT = 5202
SOCKPERF_PORT = 11111
UDP_LEN = 64
# NAT paths: the container network behind the NAT and the "outside" link.
NAT_SUBNET = "172.31.0.0/16"
NAT_GW = "172.31.0.1"
NAT_CONT_IP = "172.31.0.2"
NAT_CONT_PREFIX = 16
OUT_IP = "10.1.0.1"  # the outside namespace (the NAT's next hop)
WAN_IP = "10.1.0.2"  # the NAT's own address on the outside link
WAN_PREFIX = 24
# GRE paths: the underlay between the two "hosts".
UNDERLAY_A = "192.168.50.1"
UNDERLAY_B = "192.168.50.2"
UNDERLAY_PREFIX = 24
GRE_KEY = 42
# Connections/s: upper bound on connections per run (the run also stops at T s).
CPS_MAX_CONNS = 1_000_000
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
    """One yardd process in its own namespace, with its own socket/state dir,
    running `threads` datapath threads (`--threads N`, passed only when N > 1
    so the 1-thread rows run yardd exactly as before)."""

    def __init__(self, opts, ns, threads=1, extra_args=(), base=False):
        self.opts = opts
        # base: the --yardd-base/--yardctl-base build (an A/B in one run)
        self.yardd_bin = opts.yardd_base if base else opts.yardd
        self.yardctl_bin = opts.yardctl_base if base else opts.yardctl
        self.ns = ns
        self.threads = threads
        self.extra_args = list(extra_args)
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
                self.yardd_bin,
                "--socket",
                self.socket,
                "--state-dir",
                self.state,
                "--log",
                self.opts.yardd_log,
                # No host uplink: nothing leaves through yardd's sockets.
                "--default-uplink",
                "none",
                *(["--threads", str(self.threads)] if self.threads > 1 else []),
                *self.extra_args,
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
        return [self.yardctl_bin, "--socket", self.socket, *args]

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
    """A way of joining a client namespace to a server namespace.

    Subclasses implement build(); they create namespaces with self.netns()
    so teardown removes them. After setup(), self.client_ns and
    self.server_ns hold the namespace names, the server listens on
    self.bind_ip and the client connects to self.connect_ip; switch_pids()
    names the switch processes for CPU sampling (empty for kernel paths).

    kind is "l2", "nat" or "gre"; metrics lists what is measured;
    reference names the path this row's ratios are taken against (None: the
    row is itself a reference); tools lists the commands the path needs (the
    path is skipped with a note when one is missing).
    """

    name = "?"
    needs_yardd = False
    kernel = False
    description = ""
    kind = "l2"
    metrics = ("tcp1", "tcp4", "udp64", "rtt")
    reference = "yardd-tap"
    tools = ()
    install_hint = ""

    def __init__(self, opts, prefix, tag):
        self.opts = opts
        self.prefix = prefix  # per-run, e.g. lb1234
        self.tag = tag  # per-path letter, keeps names unique within a run
        self.client_ns = None
        self.server_ns = None
        self.connect_ip = SERVER_IP
        self.bind_ip = SERVER_IP
        self.my_netns = []

    @classmethod
    def missing_tools(cls):
        """A note naming the missing commands/files, or None."""
        missing = [t for t in cls.tools if (shutil.which(t) is None and not os.path.exists(t))]
        if not missing:
            return None
        hint = f"; install: {cls.install_hint}" if cls.install_hint else ""
        return f"skipped: {', '.join(missing)} not installed{hint}"

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

    def switch_pids(self):
        return []

    def switch_stats(self):
        """Counters worth keeping in the JSON after the runs (or None)."""
        return None

    def teardown(self):
        try:
            self.stop_switch()
        finally:
            for name in reversed(self.my_netns):
                RES.release_netns(name)
            self.my_netns = []

    def stop_switch(self):
        pass

    # helpers -----------------------------------------------------------
    @staticmethod
    def config_container_if(ns, ifname, ip, prefix_len=PREFIX_LEN):
        run(["ip", "-n", ns, "addr", "add", f"{ip}/{prefix_len}", "dev", ifname])
        run(["ip", "-n", ns, "link", "set", ifname, "up"])

    def veth_into(self, host_ns, host_if, container_ns, ip, prefix_len=PREFIX_LEN):
        """veth pair: host_if in host_ns (up, no address), eth0 in container_ns."""
        run(["ip", "-n", host_ns, "link", "add", host_if, "type", "veth",
             "peer", "name", "eth0", "netns", container_ns])
        run(["ip", "-n", host_ns, "link", "set", host_if, "up"])
        self.config_container_if(container_ns, "eth0", ip, prefix_len)


class BridgeVeth(Path):
    name = "bridge-veth"
    kernel = True
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


class YarddSwitch:
    """What every row whose switch is one yardd (`self.yardd`) shares: its
    pid and port stats for the report, stopping it, and the dnat rows'
    published ports."""

    def switch_pids(self):
        y = getattr(self, "yardd", None)
        return [y.pid()] if y is not None and y.pid() else []

    def switch_stats(self):
        return yardd_port_stats(self.yardd)

    def stop_switch(self):
        stop_yardd(self.name, getattr(self, "yardd", None))

    def publish_bench_ports(self):
        """Publishes the iperf3 and connections/s ports to container c1."""
        for port in (IPERF_PORT, CPS_PORT):
            self.yardd.ctl("publish", "add", f"{port}:c1:{port}/tcp")


class YarddPath(YarddSwitch, Path):
    """Common part of the yardd paths: a yardd in a dedicated namespace and
    a plain L2 network (no subnet, so no gateway address competes with
    10.88.0.1)."""

    needs_yardd = True
    net = "lbnet"
    threads = 1  # yardd --threads
    yardd_args = ()  # more yardd arguments

    def build(self):
        self.yns = self.netns("y")
        self.yardd = Yardd(self.opts, self.yns, self.threads, self.yardd_args)
        self.yardd.start()
        self.yardd.ctl("net", "create", self.net)
        self.attach()

    def attach(self):
        raise NotImplementedError


def yardd_port_stats(yardd, what=("port", "stats")):
    cp = run(yardd.ctl_cmd(["--json", *what]), check=False, timeout=30)
    if cp is None or cp.returncode != 0:
        return None
    try:
        return json.loads(cp.stdout)
    except ValueError:
        return cp.stdout


def stop_yardd(path_name, y):
    if y is not None:
        if y.proc is not None and y.proc.poll() is not None:
            log(f"{path_name}: yardd had exited with {y.proc.returncode}: {y.log_tail()}")
        y.stop()


class YarddTap(YarddPath):
    name = "yardd-tap"
    reference = None
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


# The same topologies with two datapath threads, over which yardd spreads
# the two ports (c1/c2; for NAT the uplink and c1): each row shows what a
# second thread buys against the 1-thread row above it.


# The same topologies without the datapath threads' seccomp filter: what the
# filter costs per packet (it is on in every other yardd row).


class YarddTapNoSeccomp(YarddTap):
    name = "yardd-tap-noseccomp"
    reference = "yardd-tap"
    metrics = ("tcp1", "udp64")
    yardd_args = ("--no-seccomp",)
    description = "yardd --no-seccomp, TAP ports created by yardd inside c1/c2"


class YarddVethNoSeccomp(YarddVeth):
    name = "yardd-veth-noseccomp"
    reference = "yardd-veth"
    metrics = ("tcp1", "udp64")
    yardd_args = ("--no-seccomp",)
    description = "yardd --no-seccomp, veth host ends in yardd's namespace via AF_PACKET"


# TAP ports with one read(2)/write(2) per frame (`--io plain`), the path
# every yardd took before io_uring batches: what batching buys.


class YarddTapPlain(YarddTap):
    name = "yardd-tap-plain"
    reference = "yardd-tap"
    yardd_args = ("--io", "plain")
    description = "yardd --io plain, TAP ports created by yardd inside c1/c2"


# veth ports read through a receive ring (`--packet-io ring`) instead of
# one recvmmsg(2) per batch (the default): what the ring buys.


class YarddVethRing(YarddVeth):
    name = "yardd-veth-ring"
    reference = "yardd-veth"
    yardd_args = ("--packet-io", "ring")
    description = "yardd --packet-io ring, veth host ends in yardd's namespace via AF_PACKET"


class YarddTap2t(YarddTap):
    name = "yardd-tap-2t"
    reference = "yardd-tap"
    threads = 2
    description = "yardd --threads 2, TAP ports created by yardd inside c1/c2"


class YarddVeth2t(YarddVeth):
    name = "yardd-veth-2t"
    threads = 2
    description = "yardd --threads 2, veth host ends in yardd's namespace via AF_PACKET"


# --------------------------------------------------------------------------
# Open vSwitch (userspace datapath) and VDE
# --------------------------------------------------------------------------

OVS_SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
OVS_TOOLS = ("ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", OVS_SCHEMA)
OVS_HINT = "apt-get install -y --no-install-recommends openvswitch-switch"


class Ovs:
    """One ovsdb-server + ovs-vswitchd pair with their own run dir; never
    the system service. Both run in the foreground as children of this
    script (ovs-vswitchd inside `ns` through `ip netns exec`, which execs
    it), so they are stopped by their own PIDs."""

    def __init__(self, ns, tso):
        self.ns = ns
        self.tso = tso
        self.dir = tempfile.mkdtemp(prefix="lab_bench_ovs.")
        RES.dirs.append(self.dir)
        self.db_sock = os.path.join(self.dir, "db.sock")
        self.vs_ctl = os.path.join(self.dir, "ovs-vswitchd.ctl")
        self.env = dict(os.environ, OVS_RUNDIR=self.dir, OVS_LOGDIR=self.dir,
                        OVS_DBDIR=self.dir, OVS_SYSCONFDIR=self.dir)
        self.db_proc = None
        self.vs_proc = None

    def _wait_path(self, path, proc, what):
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BenchError(f"{what} exited with {proc.returncode}: {self.log_tail(what)}")
            if os.path.exists(path):
                return
            time.sleep(0.1)
        raise BenchError(f"{what} did not create {path} within 15 s")

    def log_tail(self, what, n=8):
        try:
            with open(os.path.join(self.dir, f"{what}.log"), errors="replace") as f:
                return " | ".join(f.read().splitlines()[-n:])
        except OSError:
            return ""

    def start(self):
        d = self.dir
        run(["ovsdb-tool", "create", os.path.join(d, "conf.db"), OVS_SCHEMA])
        self.db_proc = RES.add_proc("ovsdb-server", subprocess.Popen(
            ["ovsdb-server", os.path.join(d, "conf.db"), f"--remote=punix:{self.db_sock}",
             f"--pidfile={d}/ovsdb-server.pid", f"--unixctl={d}/ovsdb-server.ctl",
             f"--log-file={d}/ovsdb-server.log"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=self.env))
        self._wait_path(self.db_sock, self.db_proc, "ovsdb-server")
        self.vsctl("--no-wait", "init")
        if self.tso:
            self.vsctl("--no-wait", "set", "Open_vSwitch", ".",
                       "other_config:userspace-tso-enable=true")
        self.vs_proc = RES.add_proc("ovs-vswitchd", subprocess.Popen(
            nsexec(self.ns, ["ovs-vswitchd", f"unix:{self.db_sock}",
                             f"--pidfile={d}/ovs-vswitchd.pid", f"--unixctl={self.vs_ctl}",
                             f"--log-file={d}/ovs-vswitchd.log"]),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=self.env))
        self._wait_path(self.vs_ctl, self.vs_proc, "ovs-vswitchd")

    def vsctl(self, *args):
        return run(["ovs-vsctl", f"--db=unix:{self.db_sock}", "--timeout=30", *args],
                   timeout=40)

    def appctl(self, *args):
        return run(["ovs-appctl", "-t", self.vs_ctl, *args], check=False, timeout=20)

    def pids(self):
        return [p.pid for p in (self.vs_proc,) if p is not None and p.poll() is None]

    def stop(self):
        for p in (self.vs_proc, self.db_proc):
            if p is not None:
                if p.poll() is not None:
                    log(f"ovs: pid {p.pid} had exited with {p.returncode}")
                RES.release_proc(p)
        self.vs_proc = self.db_proc = None


class OvsPath(Path):
    tools = OVS_TOOLS
    install_hint = OVS_HINT
    tso = False

    def build(self):
        self.ons = self.netns("o")
        self.ovs = Ovs(self.ons, self.tso)
        self.ovs.start()
        self.ovs.vsctl("add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev")
        self.attach()

    def switch_pids(self):
        o = getattr(self, "ovs", None)
        return o.pids() if o else []

    def switch_stats(self):
        cp = self.ovs.appctl("dpctl/show", "-s")
        return cp.stdout if cp is not None and cp.returncode == 0 else None

    def stop_switch(self):
        o = getattr(self, "ovs", None)
        if o is not None:
            o.stop()


class OvsTapTso(OvsPath):
    name = "ovs-tap-tso"
    tso = True
    description = "OVS 3.x userspace datapath, tap ports moved into c1/c2, userspace-tso-enable=true"

    def attach(self):
        for i, (ns, ip) in enumerate([(self.client_ns, CLIENT_IP), (self.server_ns, SERVER_IP)], 1):
            tap = f"t{i}"
            self.ovs.vsctl("add-port", "br0", tap, "--", "set", "Interface", tap, "type=tap")
            run(["ip", "-n", self.ons, "link", "set", tap, "netns", ns])
            run(["ip", "-n", ns, "link", "set", tap, "name", "eth0"])
            self.config_container_if(ns, "eth0", ip)


class OvsVeth(OvsPath):
    name = "ovs-veth"
    tools = OVS_TOOLS + ("ethtool",)
    description = ("OVS userspace datapath, veth host ends via AF_PACKET, no TSO; "
                   "`ethtool -K eth0 tx off` in c1/c2")

    def attach(self):
        for i, (ns, ip) in enumerate([(self.client_ns, CLIENT_IP), (self.server_ns, SERVER_IP)], 1):
            host_if = f"{self.prefix}v{i}"
            self.veth_into(self.ons, host_if, ns, ip)
            run(nsexec(ns, ["ethtool", "-K", "eth0", "tx", "off"]))
            self.ovs.vsctl("add-port", "br0", host_if)


class Vde(Path):
    name = "vde"
    tools = ("vde_switch", "vde_plug2tap")
    install_hint = "apt-get install -y --no-install-recommends vde2"
    description = "vde_switch + vde_plug2tap (a TAP eth0 in each of c1/c2)"

    def build(self):
        self.dir = tempfile.mkdtemp(prefix="lab_bench_vde.")
        RES.dirs.append(self.dir)
        ctl = os.path.join(self.dir, "sw.ctl")
        # In the foreground vde_switch reads management commands from stdin
        # and quits on EOF: give it a pipe this script never writes to.
        self.procs = [RES.add_proc("vde_switch", subprocess.Popen(
            ["vde_switch", "-s", ctl, "-M", os.path.join(self.dir, "sw.mgmt")],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))]
        deadline = time.monotonic() + 10
        while not os.path.exists(os.path.join(ctl, "ctl")) and time.monotonic() < deadline:
            if self.procs[0].poll() is not None:
                raise BenchError(f"vde_switch exited with {self.procs[0].returncode}")
            time.sleep(0.1)
        for ns, ip in [(self.client_ns, CLIENT_IP), (self.server_ns, SERVER_IP)]:
            p = RES.add_proc("vde_plug2tap", subprocess.Popen(
                nsexec(ns, ["vde_plug2tap", "-s", ctl, "eth0"]),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            self.procs.append(p)
            for _ in range(100):
                if p.poll() is not None:
                    raise BenchError(f"vde_plug2tap exited with {p.returncode}")
                cp = run(["ip", "-n", ns, "link", "show", "eth0"], check=False, timeout=10)
                if cp is not None and cp.returncode == 0:
                    break
                time.sleep(0.1)
            self.config_container_if(ns, "eth0", ip)

    def switch_pids(self):
        return [p.pid for p in getattr(self, "procs", []) if p.poll() is None]

    def stop_switch(self):
        for p in reversed(getattr(self, "procs", [])):
            RES.release_proc(p)
        self.procs = []


# --------------------------------------------------------------------------
# NAT: a container behind the NAT (c1, 172.31.0.2/16) and an "outside"
# namespace (out, 10.1.0.1/24); the NAT owns 10.1.0.2/24 on the outside link.
# snat: client in c1 -> server in out.  dnat: client in out -> the NAT's
# published port 10.1.0.2:5201 (and :5202 for connections/s) -> server in c1.
# --------------------------------------------------------------------------


class NatPath(Path):
    kind = "nat"
    metrics = ("tcp1", "tcp4", "cps")
    direction = "snat"

    def setup(self):
        self.cont_ns = self.netns("c1")
        self.out_ns = self.netns("out")
        self.build()
        if self.direction == "snat":
            self.client_ns, self.server_ns = self.cont_ns, self.out_ns
            self.connect_ip = self.bind_ip = OUT_IP
            wait_reachable(self.cont_ns, OUT_IP)
        else:
            self.client_ns, self.server_ns = self.out_ns, self.cont_ns
            self.connect_ip, self.bind_ip = WAN_IP, NAT_CONT_IP
            wait_reachable(self.out_ns, WAN_IP)
            wait_reachable(self.cont_ns, OUT_IP)


class YarddNat(YarddSwitch, NatPath):
    needs_yardd = True
    net = "web"
    threads = 1  # yardd --threads
    yardd_args = ()  # more yardd arguments

    def build(self):
        self.yns = self.netns("y")
        wan_if = f"{self.prefix}w"
        run(["ip", "-n", self.yns, "link", "add", wan_if, "type", "veth",
             "peer", "name", "eth0", "netns", self.out_ns])
        run(["ip", "-n", self.yns, "link", "set", wan_if, "up"])
        self.config_container_if(self.out_ns, "eth0", OUT_IP, WAN_PREFIX)
        self.yardd = Yardd(self.opts, self.yns, self.threads, self.yardd_args)
        self.yardd.start()
        self.yardd.ctl("net", "create", self.net, "--subnet", NAT_SUBNET)
        self.yardd.ctl("uplink", "add", "up0", "--iface", wan_if,
                       "--ip", f"{WAN_IP}/{WAN_PREFIX}", "--gateway", OUT_IP)
        self.yardd.ctl("port", "add", "c1", "--net", self.net, "--tap", "--netns", self.cont_ns,
                       "--ifname", "eth0", "--ip", f"{NAT_CONT_IP}/{NAT_CONT_PREFIX}")
        if self.direction == "dnat":
            self.publish_bench_ports()


class YarddSnat(YarddNat):
    name = "yardd-snat"
    reference = "kernel-snat"
    description = "yardd SNAT: client in a TAP container (172.31.0.2) -> uplink 10.1.0.2 -> server outside"


class YarddSnat2t(YarddSnat):
    name = "yardd-snat-2t"
    threads = 2
    description = ("yardd --threads 2 SNAT: client in a TAP container (172.31.0.2) -> "
                   "uplink 10.1.0.2 -> server outside")


class YarddDnat(YarddNat):
    name = "yardd-dnat"
    direction = "dnat"
    reference = "kernel-dnat"
    description = "yardd DNAT: outside client -> publish 10.1.0.2:5201 -> server in a TAP container"


class KernelNat(NatPath):
    kernel = True
    reference = None
    tools = ("iptables",)
    install_hint = "apt-get install -y --no-install-recommends iptables"

    def build(self):
        r = self.netns("r")
        self.router_ns = r
        # toward the container: a Linux bridge with the gateway address
        run(["ip", "-n", r, "link", "add", "br0", "type", "bridge",
             "stp_state", "0", "forward_delay", "0"])
        run(["ip", "-n", r, "addr", "add", f"{NAT_GW}/{NAT_CONT_PREFIX}", "dev", "br0"])
        run(["ip", "-n", r, "link", "set", "br0", "up"])
        port = f"{self.prefix}c"
        self.veth_into(r, port, self.cont_ns, NAT_CONT_IP, NAT_CONT_PREFIX)
        run(["ip", "-n", r, "link", "set", port, "master", "br0"])
        run(["ip", "-n", self.cont_ns, "route", "add", "default", "via", NAT_GW])
        # toward the outside
        wan = f"{self.prefix}w"
        run(["ip", "-n", r, "link", "add", wan, "type", "veth", "peer", "name", "eth0",
             "netns", self.out_ns])
        run(["ip", "-n", r, "addr", "add", f"{WAN_IP}/{WAN_PREFIX}", "dev", wan])
        run(["ip", "-n", r, "link", "set", wan, "up"])
        self.config_container_if(self.out_ns, "eth0", OUT_IP, WAN_PREFIX)
        run(["ip", "-n", r, "route", "add", "default", "via", OUT_IP])
        # everything below is inside the router namespace, never the host's
        run(nsexec(r, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]))
        run(nsexec(r, ["iptables", "-t", "nat", "-A", "POSTROUTING", "-s", NAT_SUBNET,
                       "-o", wan, "-j", "MASQUERADE"]))
        for p in (IPERF_PORT, CPS_PORT):
            run(nsexec(r, ["iptables", "-t", "nat", "-A", "PREROUTING", "-i", wan, "-d", WAN_IP,
                           "-p", "tcp", "--dport", str(p), "-j", "DNAT",
                           "--to-destination", f"{NAT_CONT_IP}:{p}"]))

    def switch_stats(self):
        cp = run(nsexec(self.router_ns, ["iptables", "-t", "nat", "-L", "-n", "-v", "-x"]),
                 check=False, timeout=20)
        return cp.stdout if cp is not None and cp.returncode == 0 else None


class KernelSnat(KernelNat):
    name = "kernel-snat"
    description = ("Linux reference: router namespace, bridge toward the container, "
                   "iptables MASQUERADE; client in the container -> server outside")


class KernelDnat(KernelNat):
    name = "kernel-dnat"
    direction = "dnat"
    description = ("Linux reference: router namespace, iptables DNAT 10.1.0.2:5201 -> "
                   "container; outside client -> server in the container")


# --------------------------------------------------------------------------
# The host's own network as the uplink: the relay (slirp4netns, pasta) runs
# in a "host" namespace h whose veth reaches the outside namespace (h
# 10.1.0.2/24 <-> out 10.1.0.1/24, default route via 10.1.0.1). The
# container reaches the outside through h's sockets (snat direction); the
# outside reaches a server in the container through a port published on h's
# 10.1.0.2 (dnat direction). The relays give the container an address of
# their own, so its servers bind every address.
# --------------------------------------------------------------------------


class HostRelayPath(NatPath):
    metrics = ("tcp1", "tcp4", "udp64", "rtt", "cps")
    reference = None
    relay_label = "?"

    def setup(self):
        self.cont_ns = self.netns("c1")
        self.out_ns = self.netns("out")
        self.host_ns = self.netns("h")
        run(["ip", "-n", self.host_ns, "link", "add", "wan", "type", "veth",
             "peer", "name", "eth0", "netns", self.out_ns])
        self.config_container_if(self.host_ns, "wan", WAN_IP, WAN_PREFIX)
        self.config_container_if(self.out_ns, "eth0", OUT_IP, WAN_PREFIX)
        run(["ip", "-n", self.host_ns, "link", "set", "lo", "up"])
        run(["ip", "-n", self.host_ns, "route", "add", "default", "via", OUT_IP])
        # relays answer ICMP echo through ping sockets, which a new namespace
        # allows no group by default
        run(nsexec(self.host_ns, ["sysctl", "-q", "-w", "net.ipv4.ping_group_range=0 2147483647"]))
        self.relay = None
        self.build()
        if self.direction == "snat":
            self.client_ns, self.server_ns = self.cont_ns, self.out_ns
            self.connect_ip = self.bind_ip = OUT_IP
            wait_reachable(self.cont_ns, OUT_IP, tries=40)
        else:
            self.client_ns, self.server_ns = self.out_ns, self.cont_ns
            self.connect_ip, self.bind_ip = WAN_IP, "0.0.0.0"
            wait_reachable(self.out_ns, WAN_IP)

    def start_relay(self, cmd):
        log_path = os.path.join(tempfile.mkdtemp(prefix="lab_bench_relay."), "relay.log")
        RES.dirs.append(os.path.dirname(log_path))
        logf = open(log_path, "w")
        RES.files.append(logf)
        self.relay_log = log_path
        self.relay = RES.add_proc(self.relay_label, subprocess.Popen(
            nsexec(self.host_ns, cmd), stdout=logf, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL))

    def wait_relay(self, ready, what, seconds=15):
        """Polls ready() until it holds; fails naming `what` with the relay's
        log when the relay exits or `seconds` pass first."""
        deadline = time.monotonic() + seconds
        while not ready():
            if self.relay.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"{self.relay_label} did not {what}: {self.relay_log_tail()}")
            time.sleep(0.1)

    def relay_log_tail(self, n=10):
        try:
            with open(self.relay_log) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def switch_pids(self):
        return [self.relay.pid] if self.relay is not None and self.relay.poll() is None else []

    def stop_switch(self):
        if self.relay is not None:
            RES.release_proc(self.relay)
            self.relay = None


class YarddHost(YarddSwitch, HostRelayPath):
    """yardd in the host namespace with its host uplink: the container is a
    TAP port on network `web`; in the dnat direction its ports are published
    on the host's sockets (every address of h)."""
    needs_yardd = True
    relay_label = "yardd"
    net = "web"
    yardd_args = ()  # more yardd arguments

    def build(self):
        self.yardd = Yardd(self.opts, self.host_ns, 1, self.yardd_args)
        self.yardd.start()
        self.yardd.ctl("net", "create", self.net, "--subnet", NAT_SUBNET)
        self.yardd.ctl("uplink", "add", "host", "--host")
        self.yardd.ctl("port", "add", "c1", "--net", self.net, "--tap", "--netns", self.cont_ns,
                       "--ifname", "eth0", "--ip", f"{NAT_CONT_IP}/{NAT_CONT_PREFIX}")
        if self.direction == "dnat":
            self.publish_bench_ports()


class YarddHostDnat(YarddHost):
    name = "yardd-host-dnat"
    direction = "dnat"
    metrics = ("tcp1", "tcp4", "cps")
    reference = "pasta-dnat"
    description = ("yardd host uplink: outside client -> a port published on the host "
                   "namespace's sockets -> server in a TAP container")


class YarddHostSnat(YarddHost):
    name = "yardd-host-snat"
    reference = "pasta-snat"
    description = ("yardd host uplink in a host namespace: client in a TAP container -> "
                   "server outside through yardd's host sockets")


class Slirp4netns(HostRelayPath):
    relay_label = "slirp4netns"
    tools = ("slirp4netns",)
    install_hint = "apt-get install -y --no-install-recommends slirp4netns"

    def build(self):
        api = os.path.join(tempfile.mkdtemp(prefix="lab_bench_slirp."), "api.sock")
        RES.dirs.append(os.path.dirname(api))
        # as RootlessKit and podman run it: MTU 65520, no access to h's loopback
        self.start_relay(["slirp4netns", "--configure", "--mtu=65520", "--disable-host-loopback",
                          "--api-socket", api, "--netns-type=path",
                          f"/run/netns/{self.cont_ns}", "tap0"])
        self.wait_relay(lambda: os.path.exists(api), "start")
        if self.direction == "dnat":
            for port in (IPERF_PORT, CPS_PORT):
                slirp_api(api, {"execute": "add_hostfwd",
                                "arguments": {"proto": "tcp", "host_addr": WAN_IP,
                                              "host_port": port, "guest_port": port}})


def slirp_api(path, request):
    """One request to slirp4netns's API socket; raises on an error reply."""
    import socket as pysocket
    with pysocket.socket(pysocket.AF_UNIX, pysocket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(path)
        sock.sendall(json.dumps(request).encode())
        sock.shutdown(pysocket.SHUT_WR)
        reply = sock.recv(65536).decode()
    if "error" in reply:
        raise BenchError(f"slirp4netns API: {reply.strip()}")


class SlirpSnat(Slirp4netns):
    name = "slirp4netns-snat"
    description = ("slirp4netns (--mtu=65520) in a host namespace: client in the container -> "
                   "server outside through the host's sockets")


class SlirpDnat(Slirp4netns):
    name = "slirp4netns-dnat"
    direction = "dnat"
    metrics = ("tcp1", "tcp4", "cps")
    description = "slirp4netns add_hostfwd 10.1.0.2:5201 -> server in the container"


class Pasta(HostRelayPath):
    relay_label = "pasta"
    tools = ("pasta",)
    install_hint = "apt-get install -y --no-install-recommends passt"

    def build(self):
        ports = ",".join(str(p) for p in (IPERF_PORT, CPS_PORT))
        forward = ["-t", ports] if self.direction == "dnat" else ["-t", "none"]
        # foreground (-f), so the process this script started is the relay;
        # as root, pasta would switch to nobody, who may not enter the
        # container's namespace: --runas keeps it root, like the other rows
        # --no-map-gw: the container's gateway address is the outside server
        # here, not a way to the host's loopback (pasta's default)
        self.start_relay(["pasta", "-f", "--runas", "0:0", "--config-net", "--no-map-gw",
                          *forward, "-u", "none",
                          "-T", "none", "-U", "none", "--netns", f"/run/netns/{self.cont_ns}"])
        def routed():
            cp = run(nsexec(self.cont_ns, ["ip", "-4", "route", "show", "default"]),
                     check=False, timeout=10)
            return cp is not None and bool(cp.stdout.strip())

        self.wait_relay(routed, "configure the container")


class PastaSnat(Pasta):
    name = "pasta-snat"
    description = ("pasta in a host namespace: client in the container -> server outside "
                   "through the host's sockets")


class PastaDnat(Pasta):
    name = "pasta-dnat"
    direction = "dnat"
    metrics = ("tcp1", "tcp4", "cps")
    description = "pasta -t 5201,5202 on the host namespace -> server in the container"


# --------------------------------------------------------------------------
# GRE across two "hosts" hA and hB (namespaces joined by a veth underlay
# 192.168.50.1/24 <-> .2/24), a container on each: c1 (10.88.0.1) on hA,
# c2 (10.88.0.2) on hB, the same L2 network over a GRE tunnel (key 42).
# --------------------------------------------------------------------------


class GrePath(Path):
    kind = "gre"
    metrics = ("tcp1",)
    reference = "yardd-gre"
    underlay_ip_on_veth = True

    def setup(self):
        self.ha = self.netns("hA")
        self.hb = self.netns("hB")
        self.client_ns = self.netns("c1")
        self.server_ns = self.netns("c2")
        run(["ip", "-n", self.ha, "link", "add", "ua", "type", "veth",
             "peer", "name", "ub", "netns", self.hb])
        for ns, dev, ip in [(self.ha, "ua", UNDERLAY_A), (self.hb, "ub", UNDERLAY_B)]:
            if self.underlay_ip_on_veth:
                run(["ip", "-n", ns, "addr", "add", f"{ip}/{UNDERLAY_PREFIX}", "dev", dev])
            run(["ip", "-n", ns, "link", "set", dev, "up"])
        self.build()
        wait_reachable(self.client_ns, SERVER_IP, tries=40)


class YarddGre(GrePath):
    name = "yardd-gre"
    needs_yardd = True
    reference = None
    net = "ov"
    threads = 1  # yardd --threads, on each host
    yardd_args = ()  # more yardd arguments, on each host
    base = False  # run the --yardd-base/--yardctl-base build instead
    tunnel = "--gre"  # or --gre-udp
    description = ("yardd on each of two hosts (namespaces, veth underlay), "
                   "GRE port key 42, a TAP container on each")

    def build(self):
        self.yardds = []
        sides = [(self.ha, "tB", UNDERLAY_B, "c1", self.client_ns, CLIENT_IP),
                 (self.hb, "tA", UNDERLAY_A, "c2", self.server_ns, SERVER_IP)]
        for host, tun, remote, port, cns, ip in sides:
            y = Yardd(self.opts, host, self.threads, self.yardd_args, base=self.base)
            self.yardds.append(y)
            y.start()
            y.ctl("net", "create", self.net)
            # the tunnel first: the TAP then takes the overlay MTU
            y.ctl("port", "add", tun, "--net", self.net, self.tunnel, "--remote", remote,
                  "--key", str(GRE_KEY))
            y.ctl("port", "add", port, "--net", self.net, "--tap", "--netns", cns,
                  "--ifname", "eth0", "--ip", f"{ip}/{PREFIX_LEN}")

    def switch_pids(self):
        return [y.pid() for y in getattr(self, "yardds", []) if y.pid()]

    def switch_stats(self):
        # `status` has the tunnel drops and what software GRO merged
        return [{"ports": yardd_port_stats(y), "status": yardd_port_stats(y, ("status",))}
                for y in self.yardds]

    def stop_switch(self):
        for y in getattr(self, "yardds", []):
            stop_yardd(self.name, y)


class YarddGrePlain(YarddGre):
    name = "yardd-gre-plain"
    reference = "yardd-gre"
    yardd_args = ("--io", "plain")
    description = "yardd --io plain on both hosts, TAP containers, GRE between the hosts"


class YarddGreBase(YarddGre):
    name = "yardd-gre-base"
    reference = "yardd-gre"
    base = True
    description = ("yardd-gre with the binaries given by --yardd-base/--yardctl-base "
                   "(an older build, for a before/after in one run)")


class YarddGreUdp(YarddGre):
    name = "yardd-gre-udp"
    reference = "yardd-gre"
    tunnel = "--gre-udp"
    description = "yardd-gre with GRE-in-UDP (port 4754) between the hosts"


class YarddGreUdpBase(YarddGreUdp):
    name = "yardd-gre-udp-base"
    reference = "yardd-gre-udp"
    base = True
    description = "yardd-gre-udp with the --yardd-base/--yardctl-base build"


class OvsGre(GrePath):
    name = "ovs-gre"
    tools = OVS_TOOLS + ("ethtool", "ovs-appctl")
    install_hint = OVS_HINT
    underlay_ip_on_veth = False  # OVS owns the underlay veth; the IP sits on br-phy
    description = ("OVS userspace on each of two hosts: br-phy (underlay veth, host IP) + "
                   "br-int (gre key 42, container veth; tx off, MTU 1400)")

    def build(self):
        self.ovss = []
        sides = [(self.ha, "ua", UNDERLAY_A, UNDERLAY_B, self.client_ns, CLIENT_IP),
                 (self.hb, "ub", UNDERLAY_B, UNDERLAY_A, self.server_ns, SERVER_IP)]
        for host, uif, local, remote, cns, ip in sides:
            o = Ovs(host, tso=False)
            self.ovss.append(o)
            o.start()
            o.vsctl("add-br", "br-phy", "--", "set", "bridge", "br-phy", "datapath_type=netdev")
            o.vsctl("add-port", "br-phy", uif)
            run(["ip", "-n", host, "addr", "add", f"{local}/{UNDERLAY_PREFIX}", "dev", "br-phy"])
            run(["ip", "-n", host, "link", "set", "br-phy", "up"])
            o.vsctl("add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev")
            o.vsctl("add-port", "br-int", "gre0", "--", "set", "interface", "gre0", "type=gre",
                    f"options:remote_ip={remote}", f"options:key={GRE_KEY}")
            self.veth_into(host, "cv", cns, ip)
            run(nsexec(cns, ["ethtool", "-K", "eth0", "tx", "off"]))
            run(["ip", "-n", cns, "link", "set", "eth0", "mtu", "1400"])
            o.vsctl("add-port", "br-int", "cv")

    def switch_pids(self):
        return [p for o in getattr(self, "ovss", []) for p in o.pids()]

    def switch_stats(self):
        out = {}
        for side, o in zip(("hA", "hB"), self.ovss):
            out[side] = {}
            for cmd in (("ovs/route/show",), ("tnl/arp/show",), ("dpctl/show", "-s")):
                cp = o.appctl(*cmd)
                out[side][cmd[0]] = cp.stdout if cp is not None else None
        return out

    def stop_switch(self):
        for o in reversed(getattr(self, "ovss", [])):
            o.stop()


# Order is the table's order. Ratios: every L2 row (yardd-tap-2t too) against
# yardd-tap, NAT rows (yardd-snat-2t too) against the kernel NAT of the same
# direction, ovs-gre against yardd-gre.
def without_busy_polling(base):
    """`base` with `yardd --busy-poll-us 0` (the `-nopoll` rows): the datapath
    sleeps as soon as nothing is ready instead of polling for an adaptive
    window of up to 50 us after busy rounds (the default). What busy
    polling buys, and the switch CPU it costs."""
    return type(base.__name__ + "NoPoll", (base,), {
        "name": base.name + "-nopoll",
        "reference": base.name,
        "yardd_args": (*base.yardd_args, "--busy-poll-us", "0"),
        "description": f"{base.name} with --busy-poll-us 0 (no busy polling)",
    })


def pinned(base):
    """`base` with its datapath thread pinned to this machine's last CPU
    (`yardd --datapath-cpus N`, the `-pinned` rows): the scheduler cannot
    move it onto the CPU of the container that woke it, so it does not
    stack onto a sender while the other CPU idles."""
    cpu = str(max(os.sched_getaffinity(0)))
    return type(base.__name__ + "Pinned", (base,), {
        "name": base.name + "-pinned",
        "reference": base.name,
        "yardd_args": (*base.yardd_args, "--datapath-cpus", cpu),
        "description": f"{base.name} with --datapath-cpus {cpu} (its datapath thread pinned)",
    })


YarddTapNoPoll = without_busy_polling(YarddTap)
YarddSnatNoPoll = without_busy_polling(YarddSnat)
YarddDnatNoPoll = without_busy_polling(YarddDnat)
YarddHostSnatNoPoll = without_busy_polling(YarddHostSnat)
YarddHostDnatNoPoll = without_busy_polling(YarddHostDnat)
YarddTapPinned = pinned(YarddTap)
YarddSnatPinned = pinned(YarddSnat)
YarddDnatPinned = pinned(YarddDnat)

PATHS = [BridgeVeth, YarddTap, YarddTapPlain, YarddTapNoPoll, YarddTapNoSeccomp, YarddTap2t, YarddVeth, YarddVethRing, YarddVethNoSeccomp, YarddVeth2t, OvsTapTso, OvsVeth, Vde,
         KernelSnat, YarddSnat, YarddSnat2t, KernelDnat, YarddDnat, YarddSnatNoPoll, YarddDnatNoPoll, YarddGre, YarddGrePlain, YarddGreBase, YarddGreUdp, YarddGreUdpBase, OvsGre,
         PastaSnat, SlirpSnat, YarddHostSnat, PastaDnat, SlirpDnat, YarddHostDnat,
         YarddHostSnatNoPoll, YarddHostDnatNoPoll, YarddTapPinned, YarddSnatPinned, YarddDnatPinned]


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
    def __init__(self, ns, lifetime, bind_ip=SERVER_IP):
        self.proc = RES.add_proc(
            "iperf3-server",
            subprocess.Popen(
                bounded(lifetime, nsexec(ns, ["iperf3", "-s", "-B", bind_ip,
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


# The TCP congestion control every iperf3 client asks for (iperf3 -C), from
# --congestion-control; None: the namespace's default, which new namespaces
# take from the machine's net.ipv4.tcp_congestion_control.
CONGESTION_CONTROL = None


def congestion_controls():
    """(the machine's default TCP congestion control, the ones available)."""
    def read(name):
        try:
            with open(f"/proc/sys/net/ipv4/{name}") as f:
                return f.read().split()
        except OSError:
            return []
    default = read("tcp_congestion_control")
    return (default[0] if default else None), read("tcp_available_congestion_control")


def iperf_client(ns, args, duration, ip=SERVER_IP):
    cc = ["-C", CONGESTION_CONTROL] if CONGESTION_CONTROL else []
    cmd = bounded(duration + SLACK,
                  nsexec(ns, ["iperf3", "-c", ip, "-p", str(IPERF_PORT), "-J",
                              "-t", str(duration), *cc, *args]))
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


def tcp_retransmits(data):
    return data["end"].get("sum_sent", {}).get("retransmits")


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


def sockperf_once(client_ns, server_ns, duration, connect_ip=SERVER_IP, bind_ip=SERVER_IP):
    srv = RES.add_proc(
        "sockperf-server",
        subprocess.Popen(
            bounded(duration + 2 * SLACK,
                    nsexec(server_ns, ["sockperf", "sr", "-i", bind_ip, "-p", str(SOCKPERF_PORT)])),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL),
    )
    try:
        time.sleep(0.5)
        if srv.poll() is not None:
            raise BenchError("sockperf server exited")
        cmd = bounded(duration + SLACK,
                      nsexec(client_ns, ["sockperf", "ping-pong", "-i", connect_ip,
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


# Connections per second: a tiny bounded client/server pair run with
# `python3 -c` inside the namespaces. Each connection: connect, send 1 byte,
# the server reads it and closes, the client reads the EOF and closes (so
# TIME_WAIT stays on the server and the client's ports are reusable at once).
# The client also reports where a connection's time goes, as means over the
# connections: `connect_us` (SYN to SYN-ACK: one round trip and the server's
# kernel), `exchange_us` (the byte out to the EOF back: one round trip and the
# server process's accept, read and close) and the rest of each loop
# (`local_us`: the client's own socket, close and Python).
CPS_SERVER = r"""
import socket, sys, time
bind, port, life = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((bind, port))
s.listen(1024)
s.settimeout(0.5)
print("listening", flush=True)
end = time.monotonic() + life
while time.monotonic() < end:
    try:
        c, _ = s.accept()
    except socket.timeout:
        continue
    try:
        c.settimeout(2.0)
        c.recv(1)
    except OSError:
        pass
    c.close()
"""

CPS_CLIENT = r"""
import json, socket, sys, time
ip, port, dur, maxn = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
ok = err = 0
connect_s = exchange_s = 0.0
last = None
t0 = time.monotonic()
end = t0 + dur
while ok < maxn and err < 1000 and time.monotonic() < end:
    s = socket.socket()
    s.settimeout(2.0)
    try:
        a = time.perf_counter()
        s.connect((ip, port))
        b = time.perf_counter()
        s.sendall(b"x")
        s.recv(1)
        connect_s += b - a
        exchange_s += time.perf_counter() - b
        ok += 1
    except OSError as e:
        err += 1
        last = repr(e)
    finally:
        s.close()
el = time.monotonic() - t0
per = 1e6 / ok if ok else 0.0
print(json.dumps({"connections": ok, "errors": err, "seconds": el, "last_error": last,
                  "connect_us": connect_s * per, "exchange_us": exchange_s * per,
                  "local_us": (el - connect_s - exchange_s) * per}))
"""


def cps_once(client_ns, server_ns, connect_ip, bind_ip, duration):
    """Connections/s of one bounded run (at most CPS_MAX_CONNS connections,
    at most `duration` s, stops after 1000 failed connections)."""
    srv = RES.add_proc("cps-server", subprocess.Popen(
        bounded(duration + 2 * SLACK,
                nsexec(server_ns, [sys.executable, "-c", CPS_SERVER, bind_ip, str(CPS_PORT),
                                   str(duration + SLACK)])),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True))
    try:
        line = srv.stdout.readline()  # "listening", or EOF if it died
        if "listening" not in line:
            srv.wait(timeout=10)
            raise BenchError(f"connections/s server did not start (rc {srv.returncode})")
        cmd = bounded(duration + SLACK,
                      nsexec(client_ns, [sys.executable, "-c", CPS_CLIENT, connect_ip,
                                         str(CPS_PORT), str(duration), str(CPS_MAX_CONNS)]))
        cp = run(cmd, check=False, timeout=duration + SLACK + 10)
        if cp is None:
            raise BenchError("connections/s client timed out")
        try:
            data = json.loads(cp.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise BenchError(f"connections/s client gave no result (rc {cp.returncode}): "
                             f"{cp.stderr.strip()[-300:]}")
        if data["connections"] == 0:
            raise BenchError(f"no connection succeeded ({data['errors']} errors, "
                             f"last {data['last_error']})")
        data["cps"] = data["connections"] / data["seconds"]
        return data
    finally:
        RES.release_proc(srv)


def cpu_ticks_all(pids):
    return sum(cpu_ticks(p) for p in pids)


class SwitchCost:
    """What the switch spends per frame during one run: its CPU time and
    (when `perf` is installed) its instructions, over the frames the
    server's interface received meanwhile. Figures that hold on a busy
    machine, where throughput does not: the other work on the CPUs slows
    the switch down but does not make it execute more per frame."""

    def __init__(self, pids, server_ns, seconds):
        self.pids, self.server_ns = pids, server_ns
        self.rx0 = self._rx()
        self.c0 = cpu_ticks_all(pids) if pids else None
        self.perf = None
        if pids and shutil.which("perf"):
            # Bounded: perf stops after `seconds` (the run's length) by itself.
            self.perf = RES.add_proc("perf-stat", subprocess.Popen(
                ["perf", "stat", "-x", ",", "-e", "instructions", "-p", ",".join(map(str, pids)),
                 "--", "sleep", str(seconds)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                text=True))

    def _rx(self):
        c = link_counters(self.server_ns)
        return c["rx"]["packets"] if c else None

    def finish(self):
        out = {}
        rx1 = self._rx()
        frames = rx1 - self.rx0 if rx1 is not None and self.rx0 is not None else None
        out["switch_frames"] = frames
        if self.c0 is not None and frames:
            out["switch_cpu_ns_per_frame"] = (cpu_ticks_all(self.pids) - self.c0) / CLK_TCK * 1e9 / frames
        if self.perf is not None:
            try:
                _, err = self.perf.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                self.perf.kill()
                _, err = self.perf.communicate()
            RES.stop_proc(self.perf)
            for line in (err or "").splitlines():
                fields = line.split(",")
                if len(fields) > 2 and fields[2].startswith("instructions") and fields[0].isdigit():
                    out["switch_instructions"] = int(fields[0])
                    if frames:
                        out["switch_instructions_per_frame"] = int(fields[0]) / frames
        return out


def measure(path, opts):
    """Run the path's workloads through an already set-up path; returns a dict."""
    T, R = opts.time, opts.repeats
    metrics = tuple(m for m in path.metrics if opts.metrics is None or m in opts.metrics)
    res = {"path": path.name, "kind": path.kind, "description": path.description,
           "reference": path.reference, "metrics": list(metrics), "errors": [],
           "loadavg_before": loadavg(), "kernel": path.kernel,
           "client_ns": path.client_ns, "server_ns": path.server_ns,
           "connect_ip": path.connect_ip, "bind_ip": path.bind_ip,
           "yardd_threads": getattr(path, "threads", None)}
    cns, sns, ip = path.client_ns, path.server_ns, path.connect_ip
    for key in ("tcp1_gbps", "tcp4_gbps", "udp64_kpps", "rtt_p50_us", "rtt_p99_us", "cps",
                "switch_cpu_pct"):
        res[key] = None
    n_iperf = sum(1 for m in ("tcp1", "tcp4", "udp64") if m in metrics)
    # lifetime bound for the iperf3 server: all iperf3 runs plus slack
    server = IperfServer(sns, lifetime=n_iperf * R * (T + SLACK) + 60, bind_ip=path.bind_ip)
    try:
        # TCP, 1 stream, with switch CPU sampling
        pids = path.switch_pids()
        res["switch_pids"] = pids
        if "tcp1" in metrics:
            runs, retrans, cpu_ticks_total, wall_total = [], [], 0, 0.0
            for i in range(R):
                try:
                    t0 = time.monotonic()
                    c0 = cpu_ticks_all(pids) if pids else None
                    data = iperf_client(cns, [], T, ip)
                    c1 = cpu_ticks_all(pids) if pids else None
                    t1 = time.monotonic()
                    runs.append(tcp_gbps(data))
                    retrans.append(tcp_retransmits(data))
                    if pids:
                        cpu_ticks_total += c1 - c0
                        wall_total += t1 - t0
                    log(f"{path.name}: TCP1 run {i + 1}/{R}: {runs[-1]:.2f} Gbit/s "
                        f"({retrans[-1]} retransmits)")
                except (BenchError, OSError) as e:
                    res["errors"].append(f"tcp1: {e}")
                    log(f"{path.name}: TCP1 run {i + 1}: {e}")
            res["tcp1_gbps_runs"] = runs
            res["tcp1_retransmits_runs"] = retrans
            res["tcp1_gbps"] = median(runs)
            if pids and wall_total > 0:
                res["switch_cpu_pct"] = 100.0 * cpu_ticks_total / CLK_TCK / wall_total
                res["switch_cpu_wall_s"] = wall_total

        if "tcp4" in metrics:
            runs = []
            for i in range(R):
                try:
                    runs.append(tcp_gbps(iperf_client(cns, ["-P", "4"], T, ip)))
                    log(f"{path.name}: TCP4 run {i + 1}/{R}: {runs[-1]:.2f} Gbit/s")
                except BenchError as e:
                    res["errors"].append(f"tcp4: {e}")
                    log(f"{path.name}: TCP4 run {i + 1}: {e}")
            res["tcp4_gbps_runs"] = runs
            res["tcp4_gbps"] = median(runs)

        if "udp64" in metrics:
            runs, raw = [], []
            for i in range(R):
                try:
                    cost = SwitchCost(pids, sns, T)
                    pps, detail = udp_rx_pps(iperf_client(
                        cns, ["-u", "-l", str(UDP_LEN), "-b", "0"], T, ip))
                    detail.update(cost.finish())
                    runs.append(pps / 1e3)
                    raw.append(detail)
                    log(f"{path.name}: UDP64 run {i + 1}/{R}: {runs[-1]:.0f} kpps "
                        f"(lost {detail['lost_packets']} of {detail['packets']}; switch "
                        f"{fmt(detail.get('switch_cpu_ns_per_frame'), '.0f')} ns CPU, "
                        f"{fmt(detail.get('switch_instructions_per_frame'), '.0f')} instructions "
                        f"per frame)")
                except BenchError as e:
                    res["errors"].append(f"udp64: {e}")
                    log(f"{path.name}: UDP64 run {i + 1}: {e}")
            res["udp64_kpps_runs"] = runs
            res["udp64_raw"] = raw
            res["udp64_kpps"] = median(runs)
            for key in ("switch_cpu_ns_per_frame", "switch_instructions_per_frame"):
                res[f"udp64_{key}"] = median([d[key] for d in raw if d.get(key) is not None])
    finally:
        server.stop()

    if "rtt" in metrics and opts.sockperf:
        res["rtt_p50_us_runs"], res["rtt_p99_us_runs"] = [], []
        pids = path.switch_pids()
        cpu_ticks_total, wall_total = 0, 0.0
        with DmaLatency() as dma:
            res["dma_latency_held"] = dma.held
            for i in range(R):
                try:
                    t0 = time.monotonic()
                    c0 = cpu_ticks_all(pids) if pids else None
                    p50, p99 = sockperf_once(cns, sns, T, ip, path.bind_ip)
                    if pids:
                        cpu_ticks_total += cpu_ticks_all(pids) - c0
                        wall_total += time.monotonic() - t0
                    res["rtt_p50_us_runs"].append(p50)
                    res["rtt_p99_us_runs"].append(p99)
                    log(f"{path.name}: RTT run {i + 1}/{R}: p50 {p50:.1f} us, p99 {p99:.1f} us")
                except BenchError as e:
                    res["errors"].append(f"rtt: {e}")
                    log(f"{path.name}: RTT run {i + 1}: {e}")
        res["rtt_p50_us"] = median(res["rtt_p50_us_runs"])
        res["rtt_p99_us"] = median(res["rtt_p99_us_runs"])
        if pids and wall_total > 0:
            # The switch's CPU while it carries one ping-pong: what busy
            # polling trades for latency.
            res["rtt_switch_cpu_pct"] = 100.0 * cpu_ticks_total / CLK_TCK / wall_total
            res["rtt_switch_cpu_wall_s"] = wall_total

    if "cps" in metrics:
        runs, raw = [], []
        # one connection at a time: a latency-bound loop, so the vCPUs are
        # kept from halting as for the RTT runs
        with DmaLatency() as dma:
            res["cps_dma_latency_held"] = dma.held
            for i in range(R):
                try:
                    c0 = cpu_ticks_all(pids) if pids else None
                    d = cps_once(cns, sns, ip, path.bind_ip, T)
                    if pids and d["connections"]:
                        # The switch's own CPU per connection: a cost that
                        # other load on the machine skews far less than
                        # the rate.
                        ticks = cpu_ticks_all(pids) - c0
                        d["switch_cpu_us_per_conn"] = ticks / CLK_TCK * 1e6 / d["connections"]
                    runs.append(d["cps"])
                    raw.append(d)
                    log(f"{path.name}: conn/s run {i + 1}/{R}: {d['cps']:.0f} "
                        f"({d['connections']} connections, {d['errors']} errors)")
                except BenchError as e:
                    res["errors"].append(f"cps: {e}")
                    log(f"{path.name}: conn/s run {i + 1}: {e}")
        res["cps_runs"] = runs
        res["cps_raw"] = raw
        res["cps"] = median(runs)
        cps_medians(res)

    res["link_counters"] = {"client_eth0": link_counters(cns), "server_eth0": link_counters(sns)}
    if "udp64" in metrics:
        res["server_udp_snmp"] = udp_snmp(sns)
    return res


# --------------------------------------------------------------------------
# Report


def cost_table(results, title, columns):
    """A table of the rows that have the first column's figure: `columns`
    is (heading, result key, format) each."""
    rows = [r for r in results if r.get(columns[0][1]) is not None]
    if not rows:
        return
    print()
    print(title)
    print()
    print("| path | " + " | ".join(h for h, _, _ in columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for r in rows:
        print(f"| {r['path']} | " + " | ".join(fmt(r.get(k), f) for _, k, f in columns) + " |")
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
    default_cc, _ = congestion_controls()
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "tcp_congestion_control": CONGESTION_CONTROL or default_cc,
        "tcp_congestion_control_source": "--congestion-control" if CONGESTION_CONTROL
        else "the machine's default",
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
    """One markdown table: every figure with its ratio to the row's
    reference (L2 rows: yardd-tap; NAT rows: the kernel NAT of the same
    direction; ovs-gre: yardd-gre)."""
    m = machine
    print()
    print(f"machine: {m['nproc']} CPUs, {m['cpu_model']}, kernel {m['kernel']}, {m['date']}, "
          f"load average at start {m['loadavg_at_start']}, at end {loadavg()}; TCP congestion "
          f"control {m.get('tcp_congestion_control')} ({m.get('tcp_congestion_control_source')})")
    print(f"method: iperf3 -t {opts.time} s, sockperf ping-pong -t {opts.time} s, connections/s "
          f"loop {opts.time} s; median of {opts.repeats * opts.rounds} ({opts.rounds} round(s) "
          f"in turn); receiver side; client, server and "
          f"switch share the CPUs. (x.xx) = ratio to the row's reference (`vs` column); for RTT "
          f"below 1 is better, elsewhere above 1 is better")
    print()
    by_name = {r["path"]: r for r in results if not r.get("failed") and not r.get("skipped")}
    cols = [("TCP1 Gbit/s", "tcp1_gbps", ".2f"), ("TCP4 Gbit/s", "tcp4_gbps", ".2f"),
            ("UDP64 kpps", "udp64_kpps", ".0f"), ("RTT p50/p99 us", "rtt_p50_us", ".1f"),
            ("conn/s", "cps", ".0f")]
    print("| path | " + " | ".join(c[0] for c in cols) + " | switch CPU% TCP1/RTT | vs |")
    print("|---" * (len(cols) + 3) + "|")
    for r in results:
        if r.get("failed") or r.get("skipped"):
            msg = r.get("failed") or r.get("skipped")
            msg = msg if len(msg) <= 300 else msg[:300] + "..."
            label = "FAILED: " if r.get("failed") else ""
            print(f"| {r['path']} | {label}{msg} |" + " |" * (len(cols) + 1))
            continue
        ref = by_name.get(r.get("reference")) if r.get("reference") else None
        cells = []
        for _title, key, spec in cols:
            v = r.get(key)
            if v is None:
                cells.append("–")
                continue
            text = format(v, spec)
            if key == "rtt_p50_us":
                text += "/" + fmt(r.get("rtt_p99_us"), spec)
            if ref is not None and ref.get(key):
                text += f" ({v / ref[key]:.2f})"
            cells.append(text)
        cpu = "kernel" if r.get("kernel") else fmt(r.get("switch_cpu_pct"), ".0f")
        if not r.get("kernel") and r.get("rtt_switch_cpu_pct") is not None:
            cpu += "/" + fmt(r.get("rtt_switch_cpu_pct"), ".0f")
        if r.get("reference") is None:
            vs = "reference"
        elif ref is None:
            vs = f"{r['reference']} (not run)"
        else:
            vs = r["reference"]
        print(f"| {r['path']} | " + " | ".join(cells) + f" | {cpu} | {vs} |")
    cost_table(results, "Switch cost per frame during UDP64 (median of the runs; CPU time and "
               "instructions of the switch over the frames the server's interface received):",
               [("CPU ns/frame", "udp64_switch_cpu_ns_per_frame", ".0f"),
                ("instructions/frame", "udp64_switch_instructions_per_frame", ".0f")])
    cost_table(results, "Switch CPU per TCP connection during conn/s (median of the runs; the "
               "switch process's CPU time over the connections made):",
               [("CPU us/connection", "cps_switch_cpu_us_per_conn", ".1f")])
    cost_table(results, "Where a connection's time goes during conn/s (medians of the runs' "
               "means, us): connect = SYN to SYN-ACK; send+EOF = the byte out to the "
               "server's close back; local = the client's socket, close and loop:",
               [("connect", "cps_connect_us", ".1f"), ("send+EOF", "cps_exchange_us", ".1f"),
                ("local", "cps_local_us", ".1f")])
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
    # yardd-gre-base needs the binaries of another build: asked for by name only
    names = [c.name for c in PATHS if not getattr(c, "base", False)]
    p.add_argument("--paths", default=",".join(names),
                   help=f"comma-separated paths to run (default: all: {','.join(names)})")
    p.add_argument("--time", "-t", type=int, default=None, help="seconds per run (default 10; 3 with --quick)")
    p.add_argument("--repeats", "-r", type=int, default=None, help="runs per measurement, median reported (default 3; 1 with --quick)")
    p.add_argument("--quick", action="store_true", help="smoke test: 3 s runs, 1 repeat")
    p.add_argument("--json", metavar="FILE", help="write all raw numbers to FILE")
    p.add_argument("--no-build", action="store_true", help="do not run cargo build first")
    p.add_argument("--yardd", default=os.path.join(REPO, "target/release/yardd"))
    p.add_argument("--yardctl", default=os.path.join(REPO, "target/release/yardctl"))
    p.add_argument("--yardd-base", default=None,
                   help="yardd of another build for the yardd-gre-base row (a before/after in one run)")
    p.add_argument("--yardctl-base", default=None, help="the yardctl of that build")
    p.add_argument("--yardd-log", default="warn", help="yardd --log level (default warn)")
    p.add_argument("--no-latency", action="store_true", help="skip the sockperf runs")
    p.add_argument("--metrics", default=None,
                   help=f"comma-separated workloads to run where a path has them (default: all: "
                        f"{','.join(METRICS)})")
    p.add_argument("--congestion-control", metavar="NAME", default=None,
                   help="TCP congestion control of every iperf3 client (iperf3 -C: cubic, bbr, "
                        "...; default: the machine's net.ipv4.tcp_congestion_control)")
    p.add_argument("--rounds", type=int, default=1,
                   help="run the chosen paths this many times in turn (A B A B ...), each time "
                        "with --repeats runs, and take each path's medians over all its runs: "
                        "on a shared, noisy machine alternation spreads changing load over every "
                        "path alike (default 1)")
    opts = p.parse_args(argv)
    if opts.metrics is not None:
        opts.metrics = [m.strip() for m in opts.metrics.split(",") if m.strip()]
        bad = [m for m in opts.metrics if m not in METRICS]
        if bad or not opts.metrics:
            p.error(f"unknown metric(s) {bad}; known: {', '.join(METRICS)}")
    if opts.rounds < 1:
        p.error("--rounds must be >= 1")
    if opts.congestion_control is not None:
        _, available = congestion_controls()
        if opts.congestion_control not in available:
            p.error(f"--congestion-control {opts.congestion_control}: the kernel offers "
                    f"{', '.join(available) or 'none'} (load tcp_{opts.congestion_control} "
                    f"with modprobe first)")
    if opts.time is None:
        opts.time = 3 if opts.quick else 10
    if opts.repeats is None:
        opts.repeats = 1 if opts.quick else 3
    if opts.time < 1 or opts.repeats < 1:
        p.error("--time and --repeats must be >= 1")
    wanted = [s.strip() for s in opts.paths.split(",") if s.strip()]
    known = [c.name for c in PATHS]
    unknown = [w for w in wanted if w not in known]
    if unknown or not wanted:
        p.error(f"unknown path(s) {unknown}; known: {', '.join(known)}")
    opts.path_classes = [c for c in PATHS if c.name in wanted] * opts.rounds
    if len(opts.path_classes) > 26:
        # Each set-up path names its namespaces with one letter a-z.
        p.error(f"{len(opts.path_classes)} path runs (paths x --rounds); at most 26")
    return opts


# The workloads a path may run (`metrics` of its class).
METRICS = ("tcp1", "tcp4", "udp64", "rtt", "cps")

# Per-run lists merged across --rounds; the figure each one's median gives.
RUN_LISTS = {"tcp1_gbps_runs": "tcp1_gbps", "tcp1_retransmits_runs": None,
             "tcp4_gbps_runs": "tcp4_gbps", "udp64_kpps_runs": "udp64_kpps", "udp64_raw": None,
             "rtt_p50_us_runs": "rtt_p50_us", "rtt_p99_us_runs": "rtt_p99_us",
             "cps_runs": "cps", "cps_raw": None}


def cps_medians(res):
    """The medians over `res["cps_raw"]` of the switch's CPU per connection
    and of where a connection's time went."""
    for key in ("switch_cpu_us_per_conn", "connect_us", "exchange_us", "local_us"):
        xs = [d[key] for d in res["cps_raw"] if d.get(key) is not None]
        if xs:
            res[f"cps_{key}"] = median(xs)


def merge_rounds(results):
    """One result per path: the runs of every round of a path (--rounds)
    joined, its medians taken over all of them, its switch CPU weighted by
    time; each round's own result kept under "rounds"."""
    merged, order = {}, []
    for r in results:
        name = r["path"]
        if name not in merged:
            order.append(name)
            merged[name] = []
        merged[name].append(r)
    out = []
    for name in order:
        rounds = merged[name]
        if len(rounds) == 1:
            out.append(rounds[0])
            continue
        ok = [r for r in rounds if "failed" not in r and "skipped" not in r]
        if not ok:
            out.append(rounds[0])
            continue
        m = dict(ok[-1])
        m["rounds"] = rounds
        m["errors"] = [e for r in ok for e in r.get("errors", [])]
        for runs_key, figure in RUN_LISTS.items():
            if any(runs_key in r for r in ok):
                m[runs_key] = [x for r in ok for x in r.get(runs_key, [])]
                if figure:
                    m[figure] = median(m[runs_key])
        if "cps_raw" in m:
            cps_medians(m)
        for key in ("switch_cpu_ns_per_frame", "switch_instructions_per_frame"):
            if "udp64_raw" in m:
                m[f"udp64_{key}"] = median([d[key] for d in m["udp64_raw"] if d.get(key) is not None])
        for cpu, wall in (("switch_cpu_pct", "switch_cpu_wall_s"),
                          ("rtt_switch_cpu_pct", "rtt_switch_cpu_wall_s")):
            timed = [(r[cpu], r[wall]) for r in ok if r.get(cpu) is not None and r.get(wall)]
            if timed:
                m[cpu] = sum(c * w for c, w in timed) / sum(w for _, w in timed)
                m[wall] = sum(w for _, w in timed)
        out.append(m)
    return out


def on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv):
    global CONGESTION_CONTROL
    opts = parse_args(argv)
    CONGESTION_CONTROL = opts.congestion_control
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
        base_error = None
        for b in (opts.yardd_base, opts.yardctl_base):
            if base_error is None and not (b and os.access(b, os.X_OK)):
                base_error = (f"{b} not found or not executable" if b else
                              "needs --yardd-base and --yardctl-base (the build to compare with)")
        for idx, cls in enumerate(opts.path_classes):
            if cls.needs_yardd and yardd_error:
                results.append({"path": cls.name, "failed": yardd_error})
                continue
            if getattr(cls, "base", False) and base_error:
                results.append({"path": cls.name, "failed": base_error})
                continue
            skip = cls.missing_tools()
            if skip:
                log(f"{cls.name}: {skip}")
                results.append({"path": cls.name, "skipped": skip})
                continue
            path = cls(opts, prefix, chr(ord("a") + idx))
            log(f"{path.name}: setting up ({path.description})")
            try:
                path.setup()
                r = measure(path, opts)
                try:
                    r["switch_stats"] = path.switch_stats()
                except (BenchError, OSError) as e:
                    r["switch_stats"] = f"unavailable: {e}"
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

    results = merge_rounds(results)
    print_report(results, machine, opts, notes)
    if opts.json:
        doc = {
            "machine": machine,
            "tools": {
                "iperf3": tool_version(["iperf3", "--version"]),
                "sockperf": tool_version(["sockperf", "--version"]) if opts.sockperf else None,
                "ovs-vswitchd": tool_version(["ovs-vswitchd", "--version"])
                if shutil.which("ovs-vswitchd") else None,
                "vde_switch": tool_version(["vde_switch", "--version"])
                if shutil.which("vde_switch") else None,
                "iptables": tool_version(["iptables", "--version"])
                if shutil.which("iptables") else None,
                "python": platform.python_version(),
            },
            "method": {"time_s": opts.time, "repeats": opts.repeats, "rounds": opts.rounds,
                       "metrics": opts.metrics, "udp_len": UDP_LEN,
                       "cps_port": CPS_PORT, "cps_max_conns": CPS_MAX_CONNS,
                       "references": {c.name: c.reference for c in PATHS}},
            "loadavg_at_end": loadavg(),
            "results": results,
        }
        with open(opts.json, "w") as f:
            json.dump(doc, f, indent=2)
        log(f"wrote {opts.json}")
    return 0 if all(not r.get("failed") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

