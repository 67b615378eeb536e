# Slow O_DSYNC writes of two fio jobs (lat_lat.1.log, lat_lat.2.log from --write_lat_log,
# --log_avg_msec=0): how many of job a's slow writes completed within 1 ms of one of job b's.
def load(f):
    return [(int(l.split(',')[0]), int(l.split(',')[1])) for l in open(f)]
a = load('lat_lat.1.log')
b = load('lat_lat.2.log')
for thr in (1_000_000, 2_000_000, 5_000_000):
    sa = [t for t, l in a if l > thr]
    sb = set()
    for t, l in b:
        if l > thr:
            sb.update((t - 1, t, t + 1))
    print('>%.0f ms: a %d b %d, a slow with b slow within 1 ms: %d'
          % (thr / 1e6, len(sa), sum(1 for t, l in b if l > thr), sum(1 for t in sa if t in sb)))
print('writes', len(a), len(b), 'max ms', max(l for _, l in a) / 1e6, max(l for _, l in b) / 1e6)
