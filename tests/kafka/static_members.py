#!/usr/bin/env python3
"""Static group members (KIP-345, group.instance.id) with real clients, for the Kafka
listener's static-membership test.

  static_members.py BOOTSTRAP TOPIC GROUP
      confluent-kafka consumers s-1 and s-2 join GROUP on TOPIC; s-1 closes (a static member
      sends no LeaveGroup) and a new s-1 starts; then kafka-python describes the group; then
      a second s-2 starts while the first still runs (the first must be fenced); then a
      kafka-python consumer kp-1 joins and an admin removes it by instance id. Prints
      {"first", "restarted", "restart_s", "revokes_of_s2", "instances", "fenced",
       "second_s2", "removed"}.
"""
import json
import sys
import time

from confluent_kafka import Consumer, KafkaException
from kafka import KafkaAdminClient, KafkaConsumer

bootstrap, topic, group = sys.argv[1], sys.argv[2], sys.argv[3]
events = {"revoked": {}, "assigned": {}}


def consumer(instance):
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "group.instance.id": instance,
        "session.timeout.ms": 30000,
        "heartbeat.interval.ms": 500,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    })

    def on_assign(_, parts):
        events["assigned"].setdefault(instance, []).append(sorted(p.partition for p in parts))

    def on_revoke(_, parts):
        events["revoked"][instance] = events["revoked"].get(instance, 0) + 1

    c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
    return c


def assignment(c):
    return sorted(p.partition for p in c.assignment())


def poll_until(consumers, done, seconds):
    """Polls every consumer until done() or the time is up; returns the errors seen."""
    errors = []
    deadline = time.time() + seconds
    while time.time() < deadline and not done():
        for c in consumers:
            try:
                m = c.poll(0.05)
                if m is not None and m.error():
                    errors.append((m.error().code(), m.error().fatal()))
            except KafkaException as e:
                errors.append((e.args[0].code(), e.args[0].fatal()))
    return errors


s1, s2 = consumer("s-1"), consumer("s-2")
# Both hold partitions (a consumer that joined late would otherwise rebalance later).
poll_until([s1, s2], lambda: len(assignment(s1)) > 0 and len(assignment(s2)) > 0
           and len(assignment(s1) + assignment(s2)) == 4, 60)
poll_until([s1, s2], lambda: False, 1)
first = {"s-1": assignment(s1), "s-2": assignment(s2)}
revokes_before = events["revoked"].get("s-2", 0)

# s-1 restarts: closed (no LeaveGroup for a static member) and started again.
s1.close()
started = time.time()
s1 = consumer("s-1")
poll_until([s1, s2], lambda: len(assignment(s1)) > 0, 30)
restart_s = time.time() - started
# A moment more for a rebalance to show, if one were started.
poll_until([s1, s2], lambda: False, 3)
restarted = {"s-1": assignment(s1), "s-2": assignment(s2)}
revokes_of_s2 = events["revoked"].get("s-2", 0) - revokes_before

admin = KafkaAdminClient(bootstrap_servers=bootstrap)
described = admin.describe_groups([group])[group]
instances = sorted(str(m.get("group_instance_id")) for m in described["members"])

# A second s-2 while the first runs: the first is fenced (a fatal error).
s2b = consumer("s-2")
fenced = []
poll_until([s2b], lambda: len(assignment(s2b)) > 0, 30)
for _ in range(100):
    fenced += poll_until([s2], lambda: False, 0.1)
    if fenced:
        break
second_s2 = assignment(s2b)
for c in (s1, s2b):
    c.close()
try:
    s2.close()
except KafkaException:
    pass

# kafka-python: a static member removed by an admin by its instance id.
kp = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group + "-kp",
                   group_instance_id="kp-1", enable_auto_commit=False)
deadline = time.time() + 60
while not kp.assignment() and time.time() < deadline:
    kp.poll(timeout_ms=200)
from kafka.admin import MemberToRemove  # noqa: E402 (only needed here)
removed = admin.remove_group_members(group + "-kp", [MemberToRemove(group_instance_id="kp-1")])
removed = {str(getattr(k, "group_instance_id", k)): getattr(v, "__name__", str(v))
           for k, v in removed.items()}
admin.close()

print(json.dumps({
    "first": first,
    "restarted": restarted,
    "restart_s": restart_s,
    "revokes_of_s2": revokes_of_s2,
    "instances": instances,
    "fenced": fenced,
    "second_s2": second_s2,
    "removed": removed,
}))
