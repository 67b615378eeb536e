#!/usr/bin/env python3
"""A Kafka consumer group whose id is not a topic-like name (spaces, a colon, a slash,
quotes, a backslash: Kafka takes any string) joins, reads, commits, is listed and described.

  any_group_id.py BOOTSTRAP TOPIC GROUP COUNT
Produces COUNT records to partition 0 of TOPIC (which must exist), reads them in group
GROUP with confluent-kafka, commits, then lists and describes the group with kafka-python's
admin client. Prints {"read", "committed", "listed", "described_state"}.
"""
import json
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from kafka.admin import KafkaAdminClient

bootstrap, topic, group, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
p = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
for i in range(count):
    p.produce(topic, value=b"v%d" % i, partition=0)
if p.flush(30) != 0:
    sys.exit("produce did not finish")
c = Consumer({
    "bootstrap.servers": bootstrap,
    "group.id": group,
    "auto.offset.reset": "earliest",
    "enable.auto.commit": False,
})
c.subscribe([topic])
read = 0
deadline = time.time() + 60
while read < count and time.time() < deadline:
    m = c.poll(1.0)
    if m is None:
        continue
    if m.error():
        sys.exit("consume failed: %s" % m.error())
    read += 1
c.commit(asynchronous=False)
committed = c.committed([TopicPartition(topic, 0)], timeout=30)[0].offset
admin = KafkaAdminClient(bootstrap_servers=bootstrap)
listed = any(g["group_id"] == group for g in admin.list_groups())
described = admin.describe_groups([group])[group]
c.close()
admin.close()
print(json.dumps({
    "read": read,
    "committed": committed,
    "listed": listed,
    "described_state": described["group_state"],
}))
