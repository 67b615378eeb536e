import re,sys
last={}; gaps=[]
lines=open(sys.argv[1]).read().splitlines()
for i,l in enumerate(lines):
    m=re.search(r'\[(\d+)\] \S+ (\d+\.\d+): (\w+):',l)
    if not m: continue
    c=m.group(1); t=float(m.group(2))
    if c in last and t-last[c][0]>0.005: gaps.append((c,last[c][0],t,last[c][1],i))
    last[c]=(t,i)
print(len(gaps),'gaps >5ms')
for c,a,b,i0,i1 in gaps[:6]:
    print('CPU',c,'gap %.1f ms from %.6f'%((b-a)*1e3,a))
    print('  before:',lines[i0][:160]); print('  after :',lines[i1][:160])
    other=[l for l in lines[i0:i1] if '[%03d]'%(1-int(c)) in l]
    print('  other cpu events in gap:',len(other)); 
    for l in other[:3]+other[-3:]: print('    ',l[:170])
