# Sums the shard thread's off-CPU time from `perf script` of sched:sched_switch on its CPU.
# usage: perf script -i sw.data | python3 offcpu.py [shard-comm-prefix]
# The shard's blocking-pool threads (syncfs) share its name: the shard is the thread of that
# name that switched most often (two passes over the input).
import sys, re, collections
pfx = sys.argv[1] if len(sys.argv) > 1 else "shard-"
lines = sys.stdin.readlines()
rx0 = re.compile(r'prev_comm=(.*?) prev_pid=(\d+) ')
counts = collections.Counter(m.group(2) for m in map(rx0.search, lines) if m and m.group(1).startswith(pfx))
shard_pid = counts.most_common(1)[0][0] if counts else None
rx = re.compile(r'\s(\d+\.\d+):\s+sched:sched_switch:\s+prev_comm=(.*?) prev_pid=(\d+) .*?prev_state=(\S+) ==> next_comm=(.*?) next_pid=(\d+)')
off_at = None; off_state = None; ran = collections.Counter(); last_t = None; cur = None
by_state = collections.Counter(); gaps = []; runner_time = collections.Counter()
for line in lines:
    m = rx.search(line)
    if not m: continue
    t = float(m.group(1)); prev, st, nxt = m.group(2), m.group(4), m.group(5)
    prev_is, next_is = m.group(3) == shard_pid, m.group(6) == shard_pid
    if cur is not None and last_t is not None and off_at is not None:
        ran[re.sub(r'\d+', 'N', cur)] += t - last_t
    last_t = t; cur = nxt
    if prev_is:
        off_at = t; off_state = st; ran = collections.Counter()
    if next_is and off_at is not None:
        d = t - off_at
        by_state[off_state] += d
        gaps.append((d, off_state, dict(ran)))
        if off_state.startswith('R'):
            for k, v in ran.items(): runner_time[k] += v
        off_at = None
print("off-CPU by prev_state (ms):", {k: round(v*1e3, 1) for k, v in by_state.items()})
print("while preempted (R), who ran (ms):", {k: round(v*1e3, 1) for k, v in runner_time.most_common(12)})
gaps.sort(key=lambda g: -g[0])
for d, st, r in gaps[:15]:
    print(f"gap {d*1e3:.2f} ms state {st} ran {[(k, round(v*1e3,2)) for k, v in sorted(r.items(), key=lambda kv:-kv[1])[:4]]}")
