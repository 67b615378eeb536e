#!/usr/bin/env python3
"""Throughput through the broker's Kafka listener with confluent-kafka (librdkafka), shaped
like bench-harness's max-rate-1p-1kb workload: 1 KiB values, acks=all (durable), idempotence
on, batch.size 64 KiB, linger 1 ms, at most 5 requests in flight per connection.

  kafka_perf.py BOOTSTRAP TOPIC PARTITIONS COUNT [COMPRESSION]
  env: BATCH (batch.size, default 65536), LINGER (linger.ms, default 1), BROKER_PID (then the
  broker's CPU seconds per GB of values are reported for each phase, from /proc)

Creates TOPIC, produces COUNT records (round-robin over PARTITIONS when > 1), then consumes
them all from the beginning with one consumer. Prints one JSON line: records/s and MB/s of
each phase (MB = 10^6 bytes of values).
"""
import json
import os
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

bootstrap, topic, partitions, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
compression = sys.argv[5] if len(sys.argv) > 5 else "none"
value = bytes(range(256)) * 4  # 1 KiB
batch_bytes = int(os.environ.get("BATCH", 65536))
linger_ms = int(os.environ.get("LINGER", 1))
broker_pid = os.environ.get("BROKER_PID")


def broker_cpu_s():
    if not broker_pid:
        return 0.0
    with open("/proc/%s/stat" % broker_pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

admin = AdminClient({"bootstrap.servers": bootstrap})
for _, f in admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)]).items():
    f.result(30)

p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
              "batch.size": batch_bytes, "linger.ms": linger_ms, "max.in.flight.requests.per.connection": 5,
              "compression.type": compression, "queue.buffering.max.messages": 1000000,
              "queue.buffering.max.kbytes": 1048576})
errors = []


def cb(err, _msg):
    if err is not None:
        errors.append(str(err))


cpu0 = broker_cpu_s()
t0 = time.perf_counter()
for i in range(count):
    while True:
        try:
            p.produce(topic, value=value, partition=i % partitions, on_delivery=cb)
            break
        except BufferError:
            p.poll(0.01)
p.flush(120)
produce_s = time.perf_counter() - t0
produce_cpu = broker_cpu_s() - cpu0

c = Consumer({"bootstrap.servers": bootstrap, "group.id": topic + "-perf",
              "enable.auto.commit": False, "fetch.max.bytes": 52428800,
              "max.partition.fetch.bytes": 8388608})
c.assign([TopicPartition(topic, i, 0) for i in range(partitions)])
got = 0
cpu0 = broker_cpu_s()
t0 = time.perf_counter()
while got < count and time.perf_counter() - t0 < 120:
    for m in c.consume(num_messages=10000, timeout=1.0):
        if m.error() is None:
            got += 1
consume_s = time.perf_counter() - t0
consume_cpu = broker_cpu_s() - cpu0
c.close()

mb = count * len(value) / 1e6
print(json.dumps({
    "records": count, "partitions": partitions, "compression": compression,
    "batch_bytes": batch_bytes, "linger_ms": linger_ms,
    "delivery_errors": len(errors), "consumed": got,
    "produce_records_per_s": round(count / produce_s), "produce_mb_per_s": round(mb / produce_s, 1),
    "consume_records_per_s": round(got / consume_s), "consume_mb_per_s": round(got * len(value) / 1e6 / consume_s, 1),
    "broker_cpu_s_per_gb_in": round(produce_cpu / (mb / 1000), 2) if broker_pid else None,
    "broker_cpu_s_per_gb_out": round(consume_cpu / (mb / 1000), 2) if broker_pid else None,
}))
