"""Where a shard's long on-CPU runs go: reads `perf script` output of a recording with
sched:sched_switch and cpu-clock samples (with call graphs) on the shard's CPU, finds the
shard thread's runs longer than 1.5 ms (switch-in to switch-out), and counts the samples
inside them by first broker frame and by leaf frames.

    perf record -C 1 -e sched:sched_switch -e cpu-clock -c 250000 --call-graph dwarf,8192 \
        -o mix.data -- sleep 2
    perf script -i mix.data -F comm,tid,time,event,trace,ip,sym > mix.txt
    python3 long_runs.py mix.txt
"""
import re,collections,sys
ev=[];cur=None
for line in open(sys.argv[1]):
    m=re.match(r'^(\S.*?)\s+(\d+)\s+([\d.]+):\s+(\S+):\s*(.*)$',line)
    if m:
        cur={'comm':m.group(1).strip(),'tid':int(m.group(2)),'t':float(m.group(3)),'ev':m.group(4),'tr':m.group(5),'st':[]};ev.append(cur);continue
    if cur and line.strip():
        p=line.strip().split(None,1)
        if len(p)>1: cur['st'].append(p[1])
# shard intervals
shard=None;runs=[];on=None
for e in ev:
    if e['ev']=='sched:sched_switch':
        nm=re.search(r'next_comm=(.*?) next_pid=(\d+)',e['tr']);pm=re.search(r'prev_pid=(\d+)',e['tr'])
        if nm.group(1).startswith('shard-0-1') and on is None: on=(e['t'],int(nm.group(2)))
        elif on and int(pm.group(1))==on[1]:
            runs.append((on[0],e['t']));on=None
long=[r for r in runs if r[1]-r[0]>0.0015]
print(len(runs),'runs',len(long),'>1.5ms', sum(r[1]-r[0] for r in runs))
for r in long: print(round(r[0],4), round((r[1]-r[0])*1000,2))
agg=collections.Counter();leaf=collections.Counter();tot=0
for e in ev:
    if e['ev']!='cpu-clock': continue
    if any(a<=e['t']<=b for a,b in long):
        tot+=1
        fr=[f for f in e['st'] if 'broker::' in f]
        agg[fr[0][:130] if fr else ('?'+(e['st'][-3][:60] if len(e['st'])>2 else ''))]+=1
        k=[f for f in e['st'] if not f.startswith('[unknown]')][:4]
        leaf[' < '.join(x[:40] for x in k)]+=1
print(tot,'samples in long runs')
for k,v in agg.most_common(25): print(v,k)
print()
for k,v in leaf.most_common(25): print(v,k)
