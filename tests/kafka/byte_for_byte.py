#!/usr/bin/env python3
"""One record through a Kafka client (confluent-kafka / librdkafka), for the byte-for-byte
tests between the native protocol and the Kafka listener (issue 22).

  byte_for_byte.py read BOOTSTRAP TOPIC PARTITION OFFSET
      reads the record at OFFSET; prints {"key","value","headers","timestamp"} (hex bytes)
  byte_for_byte.py write BOOTSTRAP TOPIC PARTITION KEY_HEX VALUE_HEX TIMESTAMP_MS H=HEX...
      produces one record (acks=all) and prints {"offset"}
"""
import json
import sys

from confluent_kafka import Consumer, Producer, TopicPartition

mode, bootstrap, topic, partition = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

if mode == "read":
    offset = int(sys.argv[5])
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "byte-for-byte",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, partition, offset)])
    for _ in range(60):
        m = c.poll(1.0)
        if m is None:
            continue
        if m.error():
            sys.exit("consume error: %s" % m.error())
        if m.offset() != offset:
            continue
        print(json.dumps({
            "key": m.key().hex() if m.key() is not None else None,
            "value": m.value().hex() if m.value() is not None else None,
            "headers": [[k, v.hex() if v is not None else None] for k, v in (m.headers() or [])],
            "timestamp": m.timestamp()[1],
        }))
        c.close()
        sys.exit(0)
    sys.exit("record not read in 60 s")
else:
    key, value, ts = bytes.fromhex(sys.argv[5]), bytes.fromhex(sys.argv[6]), int(sys.argv[7])
    headers = [(h.split("=", 1)[0], bytes.fromhex(h.split("=", 1)[1])) for h in sys.argv[8:]]
    out = {}

    def cb(err, msg):
        if err is not None:
            sys.exit("delivery error: %s" % err)
        out["offset"] = msg.offset()
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    p.produce(topic, key=key, value=value, partition=partition, timestamp=ts, headers=headers,
              on_delivery=cb)
    if p.flush(30) != 0:
        sys.exit("not delivered in 30 s")
    print(json.dumps(out))
