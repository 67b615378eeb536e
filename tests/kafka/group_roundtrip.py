#!/usr/bin/env python3
"""Kafka-client round trip against the broker's Kafka listener (issue 22).

Usage: group_roundtrip.py CLIENT BOOTSTRAP TOPIC COUNT
  CLIENT: confluent (librdkafka) or kafka-python.

1. Creates TOPIC (4 partitions) through the admin api.
2. Produces COUNT keyed records (key k<i>, value v<i>) with acks=all and idempotence on.
3. Phase 1: a consumer group of 2 (two consumers, one thread each) reads until about half
   the records are consumed, committing synchronously after every poll (so a rebalance
   never revokes uncommitted records), then both close.
4. Phase 2: two new consumers in the same group resume from the committed offsets and read
   the rest.
Prints one JSON line: produced, delivery errors, records seen per phase, duplicates, missing.
Exits non-zero on any failure.
"""
import json
import sys
import threading
import time

CLIENT, BOOTSTRAP, TOPIC, COUNT = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
GROUP = TOPIC + "-group"
PARTITIONS = 4
DEADLINE_S = 240


def create_topic():
    if CLIENT == "confluent":
        from confluent_kafka.admin import AdminClient, NewTopic
        admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
        for _, f in admin.create_topics([NewTopic(TOPIC, num_partitions=PARTITIONS, replication_factor=1)]).items():
            f.result(30)
    else:
        from kafka.admin import KafkaAdminClient, NewTopic
        admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP)
        admin.create_topics([NewTopic(TOPIC, num_partitions=PARTITIONS, replication_factor=1)])
        admin.close()


def produce():
    errors = []
    if CLIENT == "confluent":
        from confluent_kafka import Producer
        p = Producer({"bootstrap.servers": BOOTSTRAP, "acks": "all", "enable.idempotence": True,
                      "linger.ms": 5})

        def cb(err, _msg):
            if err is not None:
                errors.append(str(err))
        for i in range(COUNT):
            while True:
                try:
                    p.produce(TOPIC, key=b"k%d" % i, value=b"v%d" % i, on_delivery=cb)
                    break
                except BufferError:
                    p.poll(0.1)
            p.poll(0)
        left = p.flush(60)
        if left:
            errors.append("%d records not delivered" % left)
    else:
        from kafka import KafkaProducer
        p = KafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", enable_idempotence=True,
                          linger_ms=5)
        futures = [p.send(TOPIC, key=b"k%d" % i, value=b"v%d" % i) for i in range(COUNT)]
        p.flush(60)
        for f in futures:
            try:
                f.get(30)
            except Exception as e:  # noqa: BLE001 - reported, not swallowed
                errors.append(repr(e))
        p.close()
    return errors


class Seen:
    def __init__(self):
        self.lock = threading.Lock()
        self.values = {}
        self.duplicates = 0
        self.total = 0

    def add(self, value):
        with self.lock:
            self.total += 1
            if value in self.values:
                self.duplicates += 1
            self.values[value] = True


def consume_phase(seen, stop_at, phase_seen):
    errors = []
    counts = [0, 0]

    def run(me):
        try:
            if CLIENT == "confluent":
                from confluent_kafka import Consumer
                c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": GROUP,
                              "auto.offset.reset": "earliest", "enable.auto.commit": False,
                              "session.timeout.ms": 10000})
                c.subscribe([TOPIC])
                end = time.time() + DEADLINE_S
                while seen.total < stop_at and time.time() < end:
                    msgs = c.consume(num_messages=500, timeout=0.5)
                    good = [m for m in msgs if m.error() is None]
                    for m in good:
                        seen.add(m.value())
                        phase_seen.add(m.value())
                        counts[me] += 1
                    if good:
                        c.commit(asynchronous=False)
                c.close()
            else:
                from kafka import KafkaConsumer
                c = KafkaConsumer(TOPIC, bootstrap_servers=BOOTSTRAP, group_id=GROUP,
                                  auto_offset_reset="earliest", enable_auto_commit=False,
                                  session_timeout_ms=10000)
                end = time.time() + DEADLINE_S
                while seen.total < stop_at and time.time() < end:
                    batches = c.poll(timeout_ms=500, max_records=500)
                    got = False
                    for records in batches.values():
                        for r in records:
                            seen.add(r.value)
                            phase_seen.add(r.value)
                            counts[me] += 1
                            got = True
                    if got:
                        c.commit()
                c.close()
        except Exception as e:  # noqa: BLE001 - reported, not swallowed
            errors.append(repr(e))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors, counts


def main():
    create_topic()
    t0 = time.time()
    delivery_errors = produce()
    produce_s = time.time() - t0
    seen = Seen()
    phase1, phase2 = Seen(), Seen()
    errors1, counts1 = consume_phase(seen, COUNT // 2, phase1)
    # Phase 2 reads to the end, then a little longer to catch anything delivered twice.
    errors2, counts2 = consume_phase(seen, COUNT, phase2)
    expected = {b"v%d" % i for i in range(COUNT)}
    missing = len(expected - set(seen.values))
    unexpected = len(set(seen.values) - expected)
    out = {"client": CLIENT, "produced": COUNT, "produce_s": round(produce_s, 2),
           "delivery_errors": delivery_errors[:5], "phase1": phase1.total, "phase2": phase2.total,
           "per_consumer": [counts1, counts2],
           "duplicates": seen.duplicates, "missing": missing, "unexpected": unexpected,
           "consumer_errors": (errors1 + errors2)[:5]}
    print(json.dumps(out))
    ok = (not delivery_errors and not errors1 and not errors2 and seen.duplicates == 0
          and missing == 0 and unexpected == 0 and phase1.total > 0 and phase2.total > 0)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
