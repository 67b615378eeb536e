#!/usr/bin/env python3
"""DeleteRecords through confluent-kafka's and kafka-python's admin clients, for the Kafka
listener's record-deletion test.

  delete_records.py BOOTSTRAP TOPIC
      produces 20 records to each of TOPIC's partitions 0 and 1 (acks=all), deletes the
      records of partition 0 before offset 5 with confluent-kafka's AdminClient and those
      of partition 1 before offset 12 with kafka-python's KafkaAdminClient, asks
      confluent-kafka for partition 0 past its end, reads partition 0 from the beginning
      with a confluent-kafka consumer, and prints
      {"confluent": low watermark, "python": low watermark, "past_end": error name,
       "watermarks": [low, high] of partition 0, "first_read": offset of the first record}.
"""
import json
import sys

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from kafka import KafkaAdminClient
from kafka.structs import TopicPartition as PyTopicPartition

bootstrap, topic = sys.argv[1], sys.argv[2]
out = {}

producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
for partition in (0, 1):
    for i in range(20):
        producer.produce(topic, value=b"v%d" % i, partition=partition)
assert producer.flush(30) == 0, "records left unsent"

admin = AdminClient({"bootstrap.servers": bootstrap})
futures = admin.delete_records([TopicPartition(topic, 0, 5)], request_timeout=30)
out["confluent"] = futures[TopicPartition(topic, 0)].result(timeout=30).low_watermark
futures = admin.delete_records([TopicPartition(topic, 0, 99)], request_timeout=30)
try:
    futures[TopicPartition(topic, 0)].result(timeout=30)
    out["past_end"] = "NONE"
except Exception as e:  # noqa: BLE001 - KafkaException carrying the broker's error
    out["past_end"] = e.args[0].name() if e.args and hasattr(e.args[0], "name") else str(e)

py = KafkaAdminClient(bootstrap_servers=bootstrap)
answer = py.delete_records({PyTopicPartition(topic, 1): 12}, timeout_ms=30000)
(meta,) = answer.values()
out["python"] = meta["low_watermark"] if isinstance(meta, dict) else meta.low_watermark
py.close()

consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "deleted-records-reader",
                     "enable.auto.commit": False})
out["watermarks"] = list(consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=30))
consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
first = None
for _ in range(100):
    msg = consumer.poll(0.5)
    if msg is not None and msg.error() is None:
        first = msg.offset()
        break
consumer.close()
out["first_read"] = first
print(json.dumps(out))
