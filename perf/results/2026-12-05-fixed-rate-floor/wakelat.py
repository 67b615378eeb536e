# Wake-up latency per thread name: sched_wakeup(pid) -> sched_switch next_pid=pid.
# usage: perf script -F cpu,time,event,trace | python3 wakelat.py
import sys, re, collections
wk = re.compile(r'\s(\d+\.\d+):\s+sched:sched_wakeup:\s+comm=(.*?) pid=(\d+) .*target_cpu=(\d+)')
sw = re.compile(r'\s(\d+\.\d+):\s+sched:sched_switch:\s+prev_comm=(.*?) prev_pid=(\d+) .*?==> next_comm=(.*?) next_pid=(\d+)')
pending = {}; lat = collections.defaultdict(list); who = collections.defaultdict(collections.Counter)
running = {}
for line in sys.stdin:
    m = wk.search(line)
    if m:
        pending[m.group(3)] = (float(m.group(1)), m.group(2)); continue
    m = sw.search(line)
    if m:
        t = float(m.group(1)); pid = m.group(5)
        cpu = line.split(']')[0].strip('[ ')
        running[cpu] = m.group(4)
        if pid in pending:
            t0, comm = pending.pop(pid)
            d = (t - t0) * 1e6
            name = re.sub(r'\d+', 'N', comm)
            lat[name].append(d)
            if d > 300: who[name][re.sub(r'\d+', 'N', m.group(2))] += 1
for name, v in sorted(lat.items(), key=lambda kv: -len(kv[1])):
    v.sort(); n = len(v)
    if n < 50: continue
    q = lambda p: v[min(n - 1, int(p * n))]
    print(f"{name:20s} n={n:6d} p50={q(.5):7.1f} p99={q(.99):7.1f} p99.9={q(.999):7.1f} max={v[-1]:8.1f} us  >300us preempted-by {dict(who[name].most_common(4))}")
