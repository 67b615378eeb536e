import re,sys,collections
f=sys.argv[1]
issue={}; lat=collections.defaultdict(list); sub={}; uring=[]; big=[]; jcommits=[]; flushes=[]
pend_flush=[]
for line in open(f):
    m=re.search(r'\s(\d+\.\d+): (\w+): (.*)',line)
    if not m: continue
    t=float(m.group(1)); ev=m.group(2); rest=m.group(3)
    if ev=='block_rq_issue':
        p=rest.split(); rwbs=p[1]
        if rwbs.startswith('FF'): pend_flush.append(t); continue
        sec=p[4]; issue[(sec)]=(t,rwbs,int(p[6]))
    elif ev=='block_rq_complete':
        p=rest.split(); rwbs=p[1]
        if rwbs.startswith('FF'):
            if pend_flush: s=pend_flush.pop(0); flushes.append((t-s,s)); 
            continue
        sec=p[3]
        if sec in issue:
            s,rw,n=issue.pop(sec); lat[rw].append((t-s,s,n))
    elif ev=='io_uring_submit_req':
        r=re.search(r'req (\w+), user_data (\w+), opcode (\w+)',rest)
        if r.group(3).startswith('WRITE') or r.group(3)=='FSYNC': sub[r.group(1)]=(t,r.group(3))
    elif ev=='io_uring_complete':
        r=re.search(r'req (\w+), user_data (\w+), result (-?\d+)',rest)
        if r.group(1) in sub:
            s,op=sub.pop(r.group(1)); uring.append((t-s,s,op,int(r.group(3))))
    elif ev=='jbd2_run_stats': jcommits.append((t,rest))
def pct(xs,p): xs=sorted(xs); return xs[min(len(xs)-1,int(len(xs)*p))] if xs else 0
for rw,xs in lat.items():
    v=[x[0]*1e6 for x in xs]; print('blk',rw,len(v),'p50 %.0f p99 %.0f p99.9 %.0f max %.0f us'%(pct(v,.5),pct(v,.99),pct(v,.999),max(v)))
v=[x[0]*1e6 for x in flushes]; print('flush',len(v),'p50 %.0f p99 %.0f p99.9 %.0f max %.0f us'%(pct(v,.5),pct(v,.99),pct(v,.999),max(v)))
for op in set(u[2] for u in uring):
    v=[u[0]*1e6 for u in uring if u[2]==op]; print('uring',op,len(v),'p50 %.0f p99 %.0f p99.9 %.0f max %.0f us'%(pct(v,.5),pct(v,.99),pct(v,.999),max(v)))
print('jbd2 commits',len(jcommits))
slow=sorted(uring,reverse=True)[:8]
for s in slow: print('slow uring %.1f ms at %.4f %s %d'%(s[0]*1e3,s[1],s[2],s[3]))
slowf=sorted(flushes,reverse=True)[:5]
for s in slowf: print('slow flush %.1f ms at %.4f'%(s[0]*1e3,s[1]))
for rw,xs in lat.items():
    for s in sorted(xs,reverse=True)[:3]: print('slow blk %s %.1f ms at %.4f n=%d'%(rw,s[0]*1e3,s[1],s[2]))
