#!/usr/bin/env python3
"""Kafka source throughput (issue 24's bar; not run in CI).

A tansu broker (in memory) holds a PARTITIONS-partition topic of RECORDS
JSON records of about 1 KB (schemas/events.toml's columns; uncompressed).
Then, interleaved, RUNS times each:
  - librdkafka (confluent-kafka, the C client) reads every record from the
    beginning (partitions assigned, read_committed): what the broker can
    hand one consumer;
  - `lakehose run` (pinned to one core with taskset) reads the topic into a
    local Parquet lake (leases on moto); timed from the first record read
    (startup and lease taking excluded; the records counted before that
    sample are left out of the rate) until lakehose_incoming_records_total
    reaches RECORDS and then, after SIGTERM, every buffer is written and
    the process has exited.
Prints MB/s of record bytes for each, medians, and lakehose/librdkafka.

usage: benches/kafka_throughput.py [--records 200000] [--partitions 4] [--runs 3]
       (uses .venv, and $LAKEHOSE_BIN or target/release/lakehose)
"""
import argparse, json, os, re, shutil, statistics, subprocess, sys, tempfile, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rig import PY, ROOT, free_port, start_moto, start_tansu

PRODUCE = r"""
import json, random, sys
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
b, n, parts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
admin = AdminClient({"bootstrap.servers": b})
[f.result(30) for f in admin.create_topics([NewTopic("tp", num_partitions=parts, replication_factor=1)]).values()]
p = Producer({"bootstrap.servers": b, "linger.ms": 20, "batch.size": 1000000, "queue.buffering.max.messages": 1000000})
rnd = random.Random(7)
total = 0
for i in range(n):
    rec = {"event_id": f"e-{i:08d}-{rnd.getrandbits(32):08x}", "timestamp": f"2026-11-21T{i % 24:02d}:{i % 60:02d}:00Z", "event_type": rnd.choice(["click", "view", "purchase"]),
           "user_id": rnd.getrandbits(40), "session_id": f"s-{rnd.getrandbits(64):016x}",
           "page": {"url": f"https://shop.example.com/p/{rnd.getrandbits(24)}", "referrer": "https://www.example.org/search?q=shoes", "title": "Product page"},
           "device": {"os": "ios", "os_version": "17.2", "model": "iPhone15,2"},
           "geo": {"country": "DE", "city": "Berlin", "lat": 52.52, "lon": 13.405},
           "properties": {f"prop_{k}": f"value-{rnd.getrandbits(48):012x}" for k in range(18)},
           "tags": ["a", "b", "c"]}
    v = json.dumps(rec).encode()
    total += len(v)
    while True:
        try:
            p.produce("tp", value=v, partition=i % parts)
            break
        except BufferError:
            p.poll(0.1)
    if i % 10000 == 0:
        p.poll(0)
p.flush(120)
print(total)
"""

CONSUME = r"""
import sys, time
from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING
b, n = sys.argv[1], int(sys.argv[2])
c = Consumer({"bootstrap.servers": b, "group.id": "peer", "enable.auto.commit": False, "isolation.level": "read_committed"})
parts = c.list_topics("tp", timeout=30).topics["tp"].partitions
t0 = time.time()
c.assign([TopicPartition("tp", p, OFFSET_BEGINNING) for p in parts])
got = 0
while got < n:
    for m in c.consume(10000, 5):
        if not m.error():
            got += 1
print(time.time() - t0)
"""


def scrape(port):
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1).read().decode()
        return float(re.search(r"^lakehose_incoming_records_total (\S+)$", text, re.M).group(1))
    except Exception:
        return 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    binary = os.environ.get("LAKEHOSE_BIN", os.path.join(ROOT, "target/release/lakehose"))
    moto, ep = start_moto()
    broker, bootstrap = start_tansu()
    try:
        t = time.time()
        total = int(subprocess.run([PY, "-c", PRODUCE, bootstrap, str(a.records), str(a.partitions)], capture_output=True, check=True).stdout)
        produce_s = time.time() - t
        mb = total / 1e6
        peer, ours = [], []
        env = dict(os.environ, AWS_ACCESS_KEY_ID="t", AWS_SECRET_ACCESS_KEY="t", AWS_REGION="us-east-1", LAKEHOSE_LOG="warn")
        for run in range(a.runs):
            secs = float(subprocess.run(["taskset", "-c", "1", PY, "-c", CONSUME, bootstrap, str(a.records)], capture_output=True, check=True).stdout)
            peer.append(mb / secs)
            d = tempfile.mkdtemp(prefix="lakehose-kafka-tp-")
            port = free_port()
            cfg = os.path.join(d, "l.toml")
            open(cfg, "w").write(f"""
[source]
kind = "kafka"
[kafka]
bootstrap_servers = "{bootstrap}"
topics = ["tp"]
group_id = ""
[lease]
table = "tp-leases-{run}"
endpoint = "{ep}"
[table]
schema = "{ROOT}/schemas/events.toml"
[sink]
url = "lake"
errors = "errors"
[metrics]
listen = "127.0.0.1:{port}"
""")
            t0 = time.time()
            p = subprocess.Popen(["taskset", "-c", "1", binary, "run", "--config", cfg], env=env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "log"), "wb"))
            first = None
            while (n := scrape(port)) < a.records:
                if p.poll() is not None:
                    raise RuntimeError(f"lakehose exited: {open(os.path.join(d, 'log')).read()[-2000:]}")
                if n > 0 and first is None:
                    first = (time.time(), n)
                time.sleep(0.02)
            # SIGTERM writes every open buffer: the time includes the last Parquet files
            p.terminate(); p.wait(120)
            t1 = time.time()
            t_first, n_first = first or (t0, 0)
            ours.append(mb * (a.records - n_first) / a.records / (t1 - t_first))
            startup = t_first - t0
            shutil.rmtree(d, ignore_errors=True)
            print(json.dumps({"run": run, "librdkafka_mb_s": round(peer[-1], 1), "lakehose_mb_s": round(ours[-1], 1), "lakehose_startup_s": round(startup, 1)}), file=sys.stderr)
        res = {"records": a.records, "mb": round(mb, 1), "avg_record_bytes": round(total / a.records), "partitions": a.partitions, "produce_s": round(produce_s, 1),
               "librdkafka_mb_s": round(statistics.median(peer), 1), "lakehose_one_core_mb_s": round(statistics.median(ours), 1),
               "lakehose_over_librdkafka": round(statistics.median(o / p for o, p in zip(ours, peer)), 2)}
        print(json.dumps(res))
    finally:
        broker.kill()
        moto.kill()


if __name__ == "__main__":
    sys.exit(main())
