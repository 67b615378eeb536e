#!/usr/bin/env python3
"""DescribeLogDirs through kafka-python's admin client, for the Kafka listener's log-dir test.

  log_dirs.py BOOTSTRAP TOPIC
      asks for every topic's log dirs, then for TOPIC's partition 1 only, and prints
      {"all": {"log_dir", "topics": {name: {partition: size}}, "total", "usable"},
       "one": {name: {partition: size}}}.
"""
import json
import sys

from kafka import KafkaAdminClient

bootstrap, topic = sys.argv[1], sys.argv[2]
admin = KafkaAdminClient(bootstrap_servers=bootstrap)


def sizes(log_dir):
    return {t["name"]: {str(p["partition_index"]): p["partition_size"] for p in t["partitions"]}
            for t in log_dir["topics"]}


def first_dir(answer):
    # kafka-python: one entry per broker, each with its log dirs.
    (broker,) = answer
    (log_dir,) = broker["log_dirs"]
    assert log_dir["error_code"] == 0, log_dir
    return log_dir


every = first_dir(admin.describe_log_dirs())
one = first_dir(admin.describe_log_dirs({topic: [1]}))
print(json.dumps({
    "all": {"log_dir": every["log_dir"], "topics": sizes(every),
            "total": every["total_bytes"], "usable": every["usable_bytes"]},
    "one": sizes(one),
}, default=str))
admin.close()
