#!/usr/bin/env python3
"""DeleteGroups and OffsetDelete through kafka-python's KafkaAdminClient, for the Kafka
listener's group-deletion test.

  delete_groups.py BOOTSTRAP TOPIC
      commits offsets of TOPIC's partitions 0 and 1 for groups "gone" and "partly" (simple
      consumers, no membership), joins group "live" with a consumer subscribed to TOPIC and
      commits for it too; then deletes groups ["gone", "live", "nobody"], deletes the offset
      of partition 0 for "partly" and for "live", and prints
      {"deleted": {group: error name}, "partly": {partition: error name},
       "live_offsets": {partition: error name}, "left": {group: {partition: offset}}}.
"""
import json
import sys
import time

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

bootstrap, topic = sys.argv[1], sys.argv[2]
tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]


def commit(consumer):
    consumer.commit({tp: OffsetAndMetadata(7 + tp.partition, "", -1) for tp in tps})


for group in ["gone", "partly"]:
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    c.assign(tps)
    commit(c)
    c.close()

live = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id="live",
                     enable_auto_commit=False)
deadline = time.time() + 60
while len(live.assignment()) < 2 and time.time() < deadline:
    live.poll(timeout_ms=200)
if len(live.assignment()) < 2:
    sys.exit("no assignment in 60 s")
commit(live)

admin = KafkaAdminClient(bootstrap_servers=bootstrap)


def name(err):
    """An error (a string, an error class or instance, None) as Kafka's name, NONE for none."""
    if isinstance(err, str):
        return "NONE" if err in ("OK", "NoError") else err
    if err is None or getattr(err, "errno", 0) == 0:
        return "NONE"
    return err.__name__ if isinstance(err, type) else type(err).__name__


def per_partition(result):
    return {str(tp.partition): name(err) for tp, err in result.items()}


deleted = admin.delete_groups(["gone", "live", "nobody"])
deleted = dict(deleted.items() if isinstance(deleted, dict) else deleted)
deleted = {g: name(err) for g, err in deleted.items()}
partly = per_partition(admin.delete_group_offsets("partly", [TopicPartition(topic, 0)]))
live_offsets = per_partition(admin.delete_group_offsets("live", [TopicPartition(topic, 0)]))
left = {}
for group in ["gone", "partly", "live"]:
    offsets = admin.list_group_offsets({group: None})
    offsets = offsets.get(group, offsets) if isinstance(offsets, dict) else offsets
    left[group] = {str(tp.partition): om.offset for tp, om in offsets.items() if om.offset >= 0}
admin.close()
live.close()
print(json.dumps({"deleted": deleted, "partly": partly, "live_offsets": live_offsets,
                  "left": left}))
