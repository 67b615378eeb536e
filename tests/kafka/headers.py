#!/usr/bin/env python3
"""Kafka record headers with repeated keys and null values through a Kafka client, for the
header-fidelity tests of the Kafka listener (issue 22). Records are JSON:
{"key": hex|null, "value": hex|null, "headers": [[key, hex|null], ...]}.

  headers.py produce BOOTSTRAP TOPIC PARTITION COMPRESSION RECORDS_JSON
      produces the records with confluent-kafka (acks=all, idempotent, in one batch);
      prints {"offsets": [...]}
  headers.py read CLIENT BOOTSTRAP TOPIC PARTITION OFFSET COUNT
      reads COUNT records from OFFSET with CLIENT (confluent | kafka-python);
      prints [{"offset", "key", "value", "headers"}, ...]
"""
import json
import sys


def unhex(v):
    return None if v is None else bytes.fromhex(v)


def tohex(v):
    return None if v is None else bytes(v).hex()


def produce(bootstrap, topic, partition, compression, records):
    from confluent_kafka import Producer
    offsets = []

    def cb(err, msg):
        if err is not None:
            sys.exit("delivery error: %s" % err)
        offsets.append(msg.offset())
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                  "compression.type": compression, "linger.ms": 100})
    for r in records:
        p.produce(topic, key=unhex(r["key"]), value=unhex(r["value"]), partition=partition,
                  headers=[(k, unhex(v)) for k, v in r["headers"]], on_delivery=cb)
    if p.flush(30) != 0:
        sys.exit("not delivered in 30 s")
    print(json.dumps({"offsets": sorted(offsets)}))


def read_confluent(bootstrap, topic, partition, offset, count):
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "headers",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, partition, offset)])
    out = []
    for _ in range(60):
        m = c.poll(1.0)
        if m is None:
            continue
        if m.error():
            sys.exit("consume error: %s" % m.error())
        out.append({"offset": m.offset(), "key": tohex(m.key()), "value": tohex(m.value()),
                    "headers": [[k, tohex(v)] for k, v in (m.headers() or [])]})
        if len(out) == count:
            c.close()
            return out
    sys.exit("read %d of %d records in 60 s" % (len(out), count))


def read_kafka_python(bootstrap, topic, partition, offset, count):
    from kafka import KafkaConsumer, TopicPartition
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                      consumer_timeout_ms=60000)
    tp = TopicPartition(topic, partition)
    c.assign([tp])
    c.seek(tp, offset)
    out = []
    for m in c:
        out.append({"offset": m.offset, "key": tohex(m.key), "value": tohex(m.value),
                    "headers": [[k, tohex(v)] for k, v in (m.headers or [])]})
        if len(out) == count:
            c.close()
            return out
    sys.exit("read %d of %d records in 60 s" % (len(out), count))


mode = sys.argv[1]
if mode == "produce":
    produce(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], json.loads(sys.argv[6]))
else:
    client, bootstrap, topic = sys.argv[2], sys.argv[3], sys.argv[4]
    partition, offset, count = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
    read = read_confluent if client == "confluent" else read_kafka_python
    print(json.dumps(read(bootstrap, topic, partition, offset, count)))
