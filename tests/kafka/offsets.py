#!/usr/bin/env python3
"""A group's committed offset through a Kafka client (confluent-kafka), for the test that
Kafka groups and native groups share committed offsets (issue 22).

  offsets.py commit BOOTSTRAP GROUP TOPIC PARTITION OFFSET   commits (outside any generation)
  offsets.py committed BOOTSTRAP GROUP TOPIC PARTITION       prints {"offset"} (-1001 = none)
"""
import json
import sys

from confluent_kafka import Consumer, TopicPartition

mode, bootstrap, group, topic, partition = sys.argv[1:6]
c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
tp = TopicPartition(topic, int(partition))
if mode == "commit":
    tp.offset = int(sys.argv[6])
    result = c.commit(offsets=[tp], asynchronous=False)
    if result[0].error is not None:
        sys.exit("commit failed: %s" % result[0].error)
    print(json.dumps({"offset": tp.offset}))
else:
    got = c.committed([tp], timeout=30)[0]
    if got.error is not None:
        sys.exit("committed failed: %s" % got.error)
    print(json.dumps({"offset": got.offset}))
c.close()
