import sys, time, json
# Probe: librdkafka Produce pipelining with and without idempotence (see README.md).
# Usage: inflight_probe.py BOOTSTRAP TOPIC ACKS IDEMPOTENCE(0|1)
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
bs=sys.argv[1]; topic=sys.argv[2]; acks=sys.argv[3]; idem=sys.argv[4]=="1"
a=AdminClient({"bootstrap.servers":bs}); [f.result() for f in a.create_topics([NewTopic(topic,1,1)]).values()]
stats=[]
p=Producer({"bootstrap.servers":bs,"acks":acks,"enable.idempotence":idem,"batch.size":65536,"linger.ms":1,"max.in.flight.requests.per.connection":5,"statistics.interval.ms":1000,"stats_cb":lambda s: stats.append(json.loads(s))})
v=bytes(1024); n=100000
t0=time.perf_counter()
for i in range(n):
    while True:
        try: p.produce(topic,value=v,partition=0); break
        except BufferError: p.poll(0.01)
    if i % 1000 == 0: p.poll(0)
p.flush(60); dt=time.perf_counter()-t0
b=[x for x in stats[-1]["brokers"].values() if x["nodeid"]==0][0]
t=stats[-1]["topics"][topic]
print(acks, idem, round(n/dt), "rtt p50 us", b["rtt"]["p50"], "outbuf", b["outbuf_cnt"], "batchsize avg", t["batchsize"]["avg"], "batchcnt avg", t["batchcnt"]["avg"], "int_latency p50", b["int_latency"]["p50"])
