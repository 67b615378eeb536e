# One Kafka consumer reads both partitions of a 2-partition topic on a 2-shard broker (one
# partition per shard, so its fetches span both shards); a producer writes one record every
# 100 ms, alternating partitions. Prints the produce -> receipt delay per partition.
import sys, time, threading
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
boot = sys.argv[1]; TOPIC = "xs"
a = AdminClient({"bootstrap.servers": boot})
a.create_topics([NewTopic(TOPIC, num_partitions=2, replication_factor=1)])[TOPIC].result()
lat = {0: [], 1: []}; stop = False
def run():
    c = Consumer({"bootstrap.servers": boot, "group.id": "xs", "enable.auto.commit": False,
                  "fetch.wait.max.ms": 500})
    c.assign([TopicPartition(TOPIC, 0, 0), TopicPartition(TOPIC, 1, 0)])
    while not stop:
        m = c.poll(0.2)
        if m is not None and not m.error():
            lat[m.partition()].append(time.time() - float(m.value()))
    c.close()
t = threading.Thread(target=run); t.start()
time.sleep(3)
p = Producer({"bootstrap.servers": boot, "linger.ms": 0})
for i in range(60):
    p.produce(TOPIC, value=str(time.time()).encode(), partition=i % 2); p.flush(); time.sleep(0.1)
time.sleep(1.5); stop = True; t.join()
for part in (0, 1):
    l = sorted(lat[part])
    print(f"partition {part}: received {len(l)} p50 {l[len(l)//2]*1e3:.1f} ms max {l[-1]*1e3:.1f} ms")
