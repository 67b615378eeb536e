#!/usr/bin/env python3
"""CreatePartitions through confluent-kafka's and kafka-python's admin clients, for the Kafka
listener's topic-growth test.

  grow.py BOOTSTRAP TOPIC
      grows TOPIC to 4 partitions with confluent-kafka's AdminClient, then to 6 with
      kafka-python's KafkaAdminClient, asks for 6 again, produces one record to partition 5
      with a confluent-kafka producer, and prints
      {"confluent": error or null, "python": error or null, "again": error name,
       "partitions": count seen by the producer's metadata, "delivered": partition}.
"""
import json
import sys

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewPartitions
from kafka import KafkaAdminClient
from kafka.admin import NewPartitions as PyNewPartitions
from kafka.errors import KafkaError

bootstrap, topic = sys.argv[1], sys.argv[2]
out = {}

admin = AdminClient({"bootstrap.servers": bootstrap})
futures = admin.create_partitions([NewPartitions(topic, 4)], request_timeout=30)
try:
    futures[topic].result(timeout=30)
    out["confluent"] = None
except Exception as e:  # noqa: BLE001 - reported to the test
    out["confluent"] = str(e)

py = KafkaAdminClient(bootstrap_servers=bootstrap)
try:
    py.create_partitions({topic: PyNewPartitions(6)})
    out["python"] = None
except KafkaError as e:
    out["python"] = type(e).__name__
try:
    py.create_partitions({topic: PyNewPartitions(6)})
    out["again"] = "NONE"
except KafkaError as e:
    out["again"] = type(e).__name__

producer = Producer({"bootstrap.servers": bootstrap})
md = producer.list_topics(topic, timeout=30)
out["partitions"] = len(md.topics[topic].partitions)
delivered = {}


def report(err, msg):
    delivered["partition"] = None if err else msg.partition()
    delivered["error"] = str(err) if err else None


producer.produce(topic, value=b"grown", partition=5, on_delivery=report)
producer.flush(30)
out["delivered"] = delivered.get("partition")
out["delivery_error"] = delivered.get("error")
print(json.dumps(out))
