#!/usr/bin/env python3
"""HTTP gateway throughput: produce (POST JSON arrays, keep-alive) and SSE delivery.

Starts the release broker with --http on ephemeral ports, creates a topic, then
 1. produce: THREADS keep-alive connections each POST arrays of BATCH records
    ({"key": ..., "value": {"i": n, "pad": "<PAD bytes>"}}) for SECONDS, acks=written;
 2. sse: one `GET /topics/t/stream?from=earliest` reads every record back as Server-Sent
    Events and is timed until the last one arrives.
Prints one JSON line per phase. Standard library only.

usage: python3 http_bench.py [BROKER_BINARY] (default target/release/broker)
"""
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

BROKER = sys.argv[1] if len(sys.argv) > 1 else "target/release/broker"
THREADS, BATCH, PAD, SECONDS = 4, 100, 100, 10


def main():
    tmp = tempfile.mkdtemp(prefix="http-bench-")
    ready = os.path.join(tmp, "ready")
    broker = subprocess.Popen(
        [BROKER, "--data-dir", os.path.join(tmp, "data"), "--listen", "127.0.0.1:0",
         "--shard-port-base", "0", "--shards", "2", "--metrics", "off",
         "--http", "127.0.0.1:0", "--ready-file", ready],
        stderr=open(os.path.join(tmp, "log"), "w"))
    try:
        for _ in range(600):
            if os.path.exists(ready):
                break
            time.sleep(0.05)
        host, port = json.load(open(ready))["http"].split(":")
        port = int(port)

        def conn():
            return http.client.HTTPConnection(host, port, timeout=60)

        c = conn()
        c.request("POST", "/topics", json.dumps({"name": "t", "partitions": 4}))
        assert c.getresponse().status == 201

        pad = "x" * PAD
        sent = [0] * THREADS
        stop = time.time() + SECONDS

        def producer(n):
            c = conn()
            i = 0
            while time.time() < stop:
                body = json.dumps([{"key": f"k{n}-{i + j}", "value": {"i": i + j, "pad": pad}}
                                   for j in range(BATCH)])
                c.request("POST", "/topics/t/records?acks=written", body,
                          {"content-type": "application/json"})
                r = c.getresponse()
                r.read()
                assert r.status == 200, r.status
                i += BATCH
            sent[n] = i

        started = time.time()
        ts = [threading.Thread(target=producer, args=(n,)) for n in range(THREADS)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        elapsed = time.time() - started
        total = sum(sent)
        record_bytes = len(json.dumps({"key": "k0-000000", "value": {"i": 0, "pad": pad}}))
        print(json.dumps({"phase": "produce", "connections": THREADS, "records_per_request": BATCH,
                          "records": total, "seconds": round(elapsed, 2),
                          "records_per_s": round(total / elapsed),
                          "json_mb_per_s": round(total * record_bytes / elapsed / 1e6, 2)}))

        c = conn()
        started = time.time()
        c.request("GET", "/topics/t/stream?from=earliest")
        r = c.getresponse()
        got = 0
        received = 0
        while got < total:
            line = r.fp.readline()
            received += len(line)
            if line.startswith(b"event: record"):
                got += 1
        elapsed = time.time() - started
        print(json.dumps({"phase": "sse", "records": got, "seconds": round(elapsed, 2),
                          "records_per_s": round(got / elapsed),
                          "event_mb_per_s": round(received / elapsed / 1e6, 2)}))
    finally:
        broker.terminate()
        broker.wait()


if __name__ == "__main__":
    main()
