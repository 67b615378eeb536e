import time,sys
end=time.perf_counter()+float(sys.argv[1]); last=time.perf_counter(); gaps=[]
while True:
    t=time.perf_counter()
    if t-last>0.0005: gaps.append((t, (t-last)*1e3))
    last=t
    if t>end: break
tot=sum(g[1] for g in gaps)
print('gaps>0.5ms', len(gaps), 'total ms %.1f'%tot, 'max %.1f'%max([g[1] for g in gaps]+[0]))
big=[g for g in gaps if g[1]>3]
print('gaps>3ms', len(big), ['%.3f:%.1f'%(g[0]%10,g[1]) for g in big[:20]])
