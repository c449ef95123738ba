"""Where the connection loop's Python processes are woken and how long
each waits to run: reads `perf script -F comm,tid,cpu,time,event,trace` of
`perf record -a -e sched:sched_wakeup -e sched:sched_switch`."""
import re, sys, collections, statistics
wk = re.compile(r'\s*(\S+)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+): sched:sched_wakeup: comm=(\S+) pid=(\d+) prio=\d+ target_cpu=(\d+)')
sw = re.compile(r'\s*(\S+)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+): sched:sched_switch: prev_comm=(\S+) prev_pid=(\d+) prev_prio=\d+ prev_state=(\S+) ==> next_comm=(\S+) next_pid=(\d+)')
running = {}  # cpu -> (comm, pid)
pending = {}  # pid -> (t, target, what was running on target, waker comm, waker cpu)
delays = collections.defaultdict(list)
placed = collections.Counter()
preempt = collections.Counter()
for line in open(sys.argv[1]):
    m = wk.match(line)
    if m:
        wcomm, wtid, wcpu, t, comm, pid, tgt = m.groups()
        if comm.startswith('python3'):
            cur = running.get(int(tgt), ('?', 0))[0]
            pending[int(pid)] = (float(t), int(tgt), cur, wcomm, int(wcpu))
        continue
    m = sw.match(line)
    if m:
        _, _, cpu, t, pcomm, ppid, pstate, ncomm, npid = m.groups()
        cpu = int(cpu); t = float(t)
        running[cpu] = (ncomm, int(npid))
        if pcomm.startswith('yardd') and pstate in ('R', 'R+'):
            preempt['yardd preempted by ' + ncomm.split('/')[0]] += 1
        if int(npid) in pending:
            t0, tgt, cur, wcomm, wcpu = pending.pop(int(npid))
            busy = 'idle' if cur.startswith('swapper') else ('yardd' if cur.startswith('yardd') else 'python' if cur.startswith('python') else cur)
            if wcomm.startswith('swapper'):
                # the wake-up was queued to an idle CPU, which performed it itself
                key = 'wake-up queued to an idle CPU'
            else:
                kind = 'onto the waker\'s own CPU' if tgt == wcpu else 'onto the other CPU'
                key = f'woken by {wcomm.split("/")[0][:14]} {kind}, where {busy} was running'
            placed[key] += 1
            delays[key].append((t - t0) * 1e6)
n = sum(placed.values())
for k, v in placed.most_common(12):
    d = delays[k]
    print(f'{v/n*100:5.1f}% {k}: wake->run median {statistics.median(d):.1f} us, p90 {sorted(d)[int(len(d)*.9)]:.1f}')
print(dict(preempt))
