#!/usr/bin/env python3
"""ListGroups and DescribeGroups through kafka-python's KafkaAdminClient while a consumer is
in a group, for the Kafka listener's group-admin test (issue 22).

  groups.py BOOTSTRAP TOPIC GROUP OTHER_GROUP...
      joins GROUP with a kafka-python consumer (client id "groups-test") subscribed to
      TOPIC, waits for its assignment, then prints
      {"assignment", "listed", "stable", "described"}: list_groups(), list_groups with
      states_filter ["Stable"], describe_groups([GROUP, OTHER_GROUP...]) with each
      member's subscription topics and assigned partitions decoded by kafka-python.
"""
import json
import sys
import time

from kafka import KafkaAdminClient, KafkaConsumer

bootstrap, topic, group, others = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]

consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                         client_id="groups-test", enable_auto_commit=False)
deadline = time.time() + 60
while not consumer.assignment() and time.time() < deadline:
    consumer.poll(timeout_ms=200)
if not consumer.assignment():
    sys.exit("no assignment in 60 s")

admin = KafkaAdminClient(bootstrap_servers=bootstrap)


def listed(groups):
    return sorted([g["group_id"], g["protocol_type"], g.get("group_state")] for g in groups)


def field(x, name):
    return x[name] if isinstance(x, dict) else getattr(x, name)


def member(m):
    meta, assignment = m["member_metadata"], m["member_assignment"]
    return {
        "member_id": m["member_id"],
        "client_id": m["client_id"],
        "client_host": m["client_host"],
        "topics": sorted(field(meta, "topics")) if meta else None,
        "partitions": sorted(p for t in field(assignment, "assigned_partitions")
                             for p in field(t, "partitions")) if assignment else None,
    }


described = admin.describe_groups([group] + others)
out = {
    "assignment": sorted(p.partition for p in consumer.assignment()),
    "listed": listed(admin.list_groups()),
    "stable": listed(admin.list_groups(states_filter=["Stable"])),
    "described": {
        gid: {"error": d["error"], "state": d["group_state"],
              "protocol_type": d["protocol_type"], "protocol": d["protocol_data"],
              "members": [member(m) for m in d["members"]]}
        for gid, d in described.items()
    },
}
admin.close()
consumer.close()
print(json.dumps(out))
