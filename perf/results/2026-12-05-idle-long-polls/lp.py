# N consumers long-poll their own idle partitions; one producer writes to partition 0 every
# 100 ms; consumer 0's delay from produce to receipt shows whether others' long polls hold it.
import sys, time, threading
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
N = int(sys.argv[1]); boot = sys.argv[2]; TOPIC = f"lp{N}"
a = AdminClient({"bootstrap.servers": boot})
a.create_topics([NewTopic(TOPIC, num_partitions=N, replication_factor=1)])[TOPIC].result()
lat = []; stop = False
def run(i):
    c = Consumer({"bootstrap.servers": boot, "group.id": f"g{i}", "enable.auto.commit": False})
    c.assign([TopicPartition(TOPIC, i, 0)])
    while not stop:
        m = c.poll(0.2)
        if m is not None and not m.error() and i == 0:
            lat.append(time.time() - float(m.value()))
    c.close()
ts = [threading.Thread(target=run, args=(i,)) for i in range(N)]
[t.start() for t in ts]
time.sleep(3)
p = Producer({"bootstrap.servers": boot, "linger.ms": 0})
for _ in range(50):
    p.produce(TOPIC, value=str(time.time()).encode(), partition=0); p.flush(); time.sleep(0.1)
time.sleep(1); stop = True
[t.join() for t in ts]
lat.sort()
print(f"N={N} received {len(lat)} p50 {lat[len(lat)//2]*1e3:.1f} ms max {lat[-1]*1e3:.1f} ms")
