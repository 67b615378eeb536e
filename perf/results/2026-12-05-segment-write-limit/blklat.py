# Device latency per request type from perf script of block:block_rq_issue/complete.
import sys, re, collections
rx = re.compile(r'\s(\d+\.\d+):\s+block:block_rq_(issue|complete): (\d+,\d+) (\S+) (?:\d+ )?\(\) (\d+) \+ (\d+)')
issued = {}; fq = collections.deque(); lat = collections.defaultdict(list)
for line in sys.stdin:
    m = rx.search(line)
    if not m: continue
    t, ev, dev, rwbs, sector, n = float(m.group(1)), m.group(2), m.group(3), m.group(4), m.group(5), m.group(6)
    key = (rwbs.replace('M','').replace('S',''), sector if rwbs != 'FF' else 'f')
    if rwbs == 'FF':
        if ev == 'issue': fq.append(t)
        elif fq: lat['FF'].append((t - fq.popleft())*1e3)
        continue
    if ev == 'issue': issued[key] = (t, rwbs)
    elif key in issued:
        t0, r = issued.pop(key); lat[r].append((t - t0) * 1e3)
for r, v in sorted(lat.items(), key=lambda kv: -len(kv[1])):
    v.sort(); q = lambda p: v[min(len(v)-1, int(p*len(v)))]
    print(f"{r:5} n={len(v):6} p50={q(.5):.2f} p90={q(.9):.2f} p99={q(.99):.2f} max={v[-1]:.2f} ms")
