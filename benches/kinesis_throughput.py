#!/usr/bin/env python3
"""Kinesis read throughput on moto_server: lakehose against a plain boto3 reader.

Preloads an 8-shard stream with seeded ~600-byte clickstream records (one
producer thread: moto loses records under concurrent PutRecords), then times
(1) a boto3 loop doing nothing but GetRecords over all 8 shards — the
emulator's own read ceiling — and (2) one `lakehose run` instance from
TRIM_HORIZON until its /metrics show every record delivered. Prints MB/s of
each and the ratio. The issue's bar is 8 shards × 1 MB/s = 8 MB/s.

usage: benches/kinesis_throughput.py [--records 40000] [--runs 3]
       (uses .venv, and $LAKEHOSE_BIN or target/release/lakehose)
"""
import argparse, json, os, socket, statistics, subprocess, sys, tempfile, time, urllib.request
import boto3

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rig import PY, ROOT, free_port, start_moto


def metric(port, name):
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except Exception:
        return 0.0
    for l in body.splitlines():
        if l.startswith(name + " "):
            return float(l.split()[1])
    return 0.0


def boto_read_all(k, stream, n):
    shards = [s["ShardId"] for s in k.list_shards(StreamName=stream)["Shards"]]
    its = {s: k.get_shard_iterator(StreamName=stream, ShardId=s, ShardIteratorType="TRIM_HORIZON")["ShardIterator"] for s in shards}
    got = 0
    nbytes = 0
    t0 = time.time()
    while got < n:
        for s, it in list(its.items()):
            r = k.get_records(ShardIterator=it, Limit=10000)
            got += len(r["Records"])
            nbytes += sum(len(x["Data"]) for x in r["Records"])
            its[s] = r["NextShardIterator"]
    return time.time() - t0, nbytes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=40000)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    binary = os.path.abspath(os.environ.get("LAKEHOSE_BIN", os.path.join(ROOT, "target/release/lakehose")))
    moto, ep = start_moto()
    try:
        k = boto3.client("kinesis", endpoint_url=ep, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")
        k.create_stream(StreamName="tp", ShardCount=8)
        d = tempfile.mkdtemp(prefix="lakehose-tp-")
        data = os.path.join(d, "in.ndjson")
        subprocess.run([PY, os.path.join(ROOT, "scripts/gen_clickstream.py"), data, "--records", str(a.records), "--seed", "1"], check=True)
        size = os.path.getsize(data)
        t0 = time.time()
        subprocess.run([PY, os.path.join(ROOT, "tests/py/kinesis_put.py"), data, "--stream", "tp", "--endpoint", ep, "--batch", "500"], check=True, stdout=subprocess.DEVNULL)
        put_s = time.time() - t0
        peer, ours = [], []
        for run in range(a.runs):
            secs, nbytes = boto_read_all(k, "tp", a.records)
            peer.append(nbytes / secs / 1e6)
            mport = free_port()
            cfg = os.path.join(d, f"l{run}.toml")
            open(cfg, "w").write(f"""
[source]
kind = "kinesis"
stream = "tp"
endpoint = "{ep}"
[lease]
table = "tp-leases-{run}"
failover = "10s"
[table]
schema = "{ROOT}/schemas/events.toml"
[sink]
url = "lake{run}"
errors = "errors{run}"
[buffer]
max_age = "2s"
[metrics]
listen = "127.0.0.1:{mport}"
""")
            env = dict(os.environ, AWS_ACCESS_KEY_ID="t", AWS_SECRET_ACCESS_KEY="t", AWS_REGION="us-east-1", LAKEHOSE_LOG="warn")
            t0 = time.time()
            p = subprocess.Popen([binary, "run", "--config", cfg], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=d)
            # time from start to every record read (and decoded); the last flush follows at max_age
            first = None
            while metric(mport, "lakehose_incoming_records_total") < a.records:
                if first is None and metric(mport, "lakehose_incoming_records_total") > 0:
                    first = time.time()
                time.sleep(0.05)
            secs = time.time() - (first or t0)
            ours.append(size / secs / 1e6)
            p.terminate(); p.wait()
        res = {"records": a.records, "input_mb": round(size / 1e6, 1), "producer_mb_s": round(size / put_s / 1e6, 2),
               "boto3_reader_mb_s": [round(x, 2) for x in peer], "lakehose_mb_s": [round(x, 2) for x in ours],
               "median_ratio_lakehose_over_boto3": round(statistics.median(ours) / statistics.median(peer), 2),
               "bar_mb_s": 8.0}
        print(json.dumps(res))
    finally:
        moto.kill()


if __name__ == "__main__":
    sys.exit(main())
