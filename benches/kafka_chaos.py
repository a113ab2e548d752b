#!/usr/bin/env python3
"""Kill -9 chaos run for the Kafka source (issue 24's bar; not run in CI).

INSTANCES `lakehose run` processes share a PARTITIONS-partition topic on a
tansu broker (leases in moto's DynamoDB) while a librdkafka producer writes
(zstd); every 0.5–3 s a random instance is killed with SIGKILL and
restarted. After KILLS kills and the producer's end, the instances drain
and stop, and the lake is read back with pyarrow and DuckDB: every good id
exactly once, every bad one exactly once in the error prefix, every record
once in the raw backup.

usage: benches/kafka_chaos.py [--kills 25] [--records 30000] [--instances 3] [--partitions 8] [--seed 1]
       (uses .venv, and $LAKEHOSE_BIN or target/release/lakehose)
"""
import argparse, json, os, random, signal, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rig import PY, ROOT, drain_and_check, start_moto, start_tansu


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=25)
    ap.add_argument("--records", type=int, default=30000)
    ap.add_argument("--instances", type=int, default=3)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    binary = os.environ.get("LAKEHOSE_BIN", os.path.join(ROOT, "target/release/lakehose"))
    moto, ep = start_moto()
    broker, bootstrap = start_tansu()
    procs = []
    try:
        d = tempfile.mkdtemp(prefix="lakehose-kafka-chaos-")
        data = os.path.join(d, "in.ndjson")
        subprocess.run([PY, os.path.join(ROOT, "scripts/gen_clickstream.py"), data, "--records", str(a.records), "--bad-every", "97", "--seed", str(a.seed)], check=True)
        put = os.path.join(ROOT, "tests/py/kafka_put.py")
        empty = os.path.join(d, "empty.ndjson")
        open(empty, "w").close()
        subprocess.run([PY, put, empty, "--bootstrap", bootstrap, "--topic", "chaos", "--create", str(a.partitions)], check=True, stdout=subprocess.DEVNULL)
        cfg = os.path.join(d, "l.toml")
        open(cfg, "w").write(f"""
[source]
kind = "kafka"
[kafka]
bootstrap_servers = "{bootstrap}"
topics = ["chaos"]
poll_interval = "200ms"
request_timeout = "5s"
[lease]
table = "chaos-leases"
endpoint = "{ep}"
failover = "2s"
[table]
schema = "{ROOT}/schemas/events.toml"
[sink]
url = "lake"
raw_backup = "raw"
errors = "errors"
[buffer]
max_records = 300
max_age = "1s"
""")
        env = dict(os.environ, AWS_ACCESS_KEY_ID="t", AWS_SECRET_ACCESS_KEY="t", AWS_REGION="us-east-1", LAKEHOSE_LOG="warn")
        log = open(os.path.join(d, "daemons.log"), "ab")
        start = lambda: subprocess.Popen([binary, "run", "--config", cfg], env=env, stdout=subprocess.DEVNULL, stderr=log)
        procs = [start() for _ in range(a.instances)]
        producer = subprocess.Popen([PY, put, data, "--bootstrap", bootstrap, "--topic", "chaos", "--batch", "100", "--pause", "0.05", "--compression", "zstd"], stdout=subprocess.DEVNULL)
        t0 = time.time()
        kills = 0
        while kills < a.kills or producer.poll() is None:
            time.sleep(rnd.uniform(0.5, 3.0))
            if kills < a.kills:
                i = rnd.randrange(len(procs))
                procs[i].send_signal(signal.SIGKILL); procs[i].wait()
                procs[i] = start()
                kills += 1
        producer.wait()
        facts, ok = drain_and_check(d, data, procs)
        res = {**facts, "kills": kills, "instances": a.instances, "partitions": a.partitions, "seconds": round(time.time() - t0, 1), "dir": d}
        print(json.dumps(res))
        return 0 if ok else 1
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        broker.kill()
        moto.kill()


if __name__ == "__main__":
    sys.exit(main())
