#!/bin/bash
# usage: abrun.sh <outroot> <rounds> <extra harness args> -- sides...
out=$1; rounds=$2; extra=$3; shift 3
mkdir -p $out
for r in $(seq 1 $rounds); do for side in "$@"; do d=$out/$side-$r; rm -rf $d $d-out
G1=$(awk '/^cpu1 /{print $9}' /proc/stat)
/work/main/target/release/bench-harness run /work/main/bench-harness/workloads/fixed-rate-16p-1kb.toml --spawn --server-bin /tmp/broker-$side --spawn-dir $d --shards 1 --server-cpus 1 --client-cpus 0 --duration 14 --warmup 3 --no-progress $extra --out $d-out > $d.log 2>&1
G2=$(awk '/^cpu1 /{print $9}' /proc/stat)
python3 - $d-out $((G2-G1)) <<'PY'
import json,sys,glob
j=json.load(open(glob.glob(sys.argv[1]+'/*.json')[0])); e=j['end_to_end_latency']; p=j['publish_latency']
st={s['stage']:s for s in j['server_stages']}; w=st['write_dsync']
print('%-22s e2e %5d %6d %6d pub99 %6d wdsync %4d %5d %5d n=%5d cpu/GB %.2f cores %.2f steal1 %sms' % (sys.argv[1].split('/')[-1][:-4], e['p50_us'], e['p99_us'], e['p99_9_us'], p['p99_us'], w['p50_us'], w['p99_us'], w['p999_us'], w['count'], j['cpu']['server']['cpu_s_per_gb_produced'], j['cpu']['server']['cores_busy'], int(sys.argv[2])*10), flush=True)
PY
rm -rf $d
done; done
