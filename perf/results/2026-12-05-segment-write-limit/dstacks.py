# Blocked (D) time of each thread by kernel stack, from perf script (with callchains) of sched_switch.
import sys, re, collections
ev = re.compile(r'\s(\d+\.\d+):\s+sched:sched_switch:\s+prev_comm=(.*?) prev_pid=(\d+) .*?prev_state=(\S+) ==> next_comm=(.*?) next_pid=(\d+)')
blocks = []  # (t, pid, comm, state, stack)
cur = None; stack = []
def flush():
    if cur: blocks.append(cur + (tuple(stack),))
for line in sys.stdin:
    m = ev.search(line)
    if m:
        flush(); stack = []
        cur = (float(m.group(1)), m.group(3), m.group(2), m.group(4), m.group(6))
        continue
    s = line.strip()
    if s and cur is not None:
        parts = s.split()
        if len(parts) >= 2: stack.append(parts[1].split('+')[0])
flush()
out_at = {}; tot = collections.Counter(); mx = collections.Counter()
for t, pid, comm, st, nxt, stk in blocks:
    if nxt in out_at:
        t0, c0, st0, stk0 = out_at.pop(nxt)
        if st0.startswith('D'):
            key = (re.sub(r'\d+', 'N', c0), ' < '.join([f for f in stk0 if not f.startswith(('__schedule','schedule','__traceiter','__probestub'))][:int(sys.argv[1]) if len(sys.argv)>1 else 6]))
            tot[key] += t - t0; mx[key] = max(mx[key], t - t0)
    out_at[pid] = (t, comm, st, stk)
for k, v in tot.most_common(12):
    print(f"{v*1e3:8.1f} ms (max {mx[k]*1e3:.2f}) {k[0]}: {k[1]}")
