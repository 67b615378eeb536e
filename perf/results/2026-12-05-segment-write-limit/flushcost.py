# Flush latency vs bytes written (issued) since the previous flush was issued.
import sys, re, collections
rx = re.compile(r'\s(\d+\.\d+):\s+block:block_rq_(issue|complete): \S+ (\S+) (\d+ )?\(\) (\d+) \+ (\d+)')
fq = collections.deque(); since = 0; buckets = collections.defaultdict(list)
for line in sys.stdin:
    m = rx.search(line)
    if not m: continue
    t, ev, rwbs, n = float(m.group(1)), m.group(2), m.group(3), int(m.group(6))
    if rwbs == 'FF':
        if ev == 'issue': fq.append((t, since)); since = 0
        elif fq:
            t0, b = fq.popleft(); lat = (t - t0) * 1e3
            k = 0 if b == 0 else min(7, (b * 512).bit_length() - 12)  # log2 buckets from 4 KiB
            buckets[k].append(lat)
    elif ev == 'issue' and 'W' in rwbs:
        since += n
for k in sorted(buckets):
    v = sorted(buckets[k]); q = lambda p: v[min(len(v)-1, int(p*len(v)))]
    lo = 0 if k == 0 else 4096 << (k - 1)
    print(f"bytes since last flush >= {lo//1024:6} KiB: n={len(v):5} p50={q(.5):.2f} p99={q(.99):.2f} max={v[-1]:.2f} ms")
