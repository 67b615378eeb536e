"""Consumers long-polling idle partitions must not hold up one whose partition has data.

usage: idle_long_polls.py BOOTSTRAP IDLE_CONSUMERS
Each idle consumer reads its own empty partition with a 10 s fetch wait and the default
50 MiB fetch.max.bytes; then one record at a time goes to partition 0, whose consumer
reports how long each took to arrive. Prints "max_ms <n>" (the slowest of 20 records).
"""
import sys
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

boot, idle = sys.argv[1], int(sys.argv[2])
admin = AdminClient({"bootstrap.servers": boot})
admin.create_topics([NewTopic("polls", num_partitions=idle + 1, replication_factor=1)])["polls"].result()
stop = threading.Event()


def idle_consumer(partition):
    c = Consumer({"bootstrap.servers": boot, "group.id": f"idle{partition}", "fetch.wait.max.ms": 10000})
    c.assign([TopicPartition("polls", partition, 0)])
    while not stop.is_set():
        c.poll(0.2)
    c.close()


threads = [threading.Thread(target=idle_consumer, args=(p,)) for p in range(1, idle + 1)]
for t in threads:
    t.start()
reader = Consumer({"bootstrap.servers": boot, "group.id": "reader", "fetch.wait.max.ms": 100})
reader.assign([TopicPartition("polls", 0, 0)])
time.sleep(3)  # every idle consumer is in its long-poll
producer = Producer({"bootstrap.servers": boot, "linger.ms": 0})
slowest = 0.0
for i in range(20):
    sent = time.time()
    producer.produce("polls", value=str(i).encode(), partition=0)
    producer.flush()
    while True:
        m = reader.poll(0.05)
        if m is not None and not m.error():
            break
        if time.time() - sent > 60:
            sys.exit(f"record {i} never arrived")
    slowest = max(slowest, time.time() - sent)
stop.set()
for t in threads:
    t.join()
reader.close()
print(f"max_ms {slowest * 1000:.0f}")
