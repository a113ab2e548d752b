#!/usr/bin/env python3
"""Kill -9 chaos run for the Kinesis source (issue 3's bar; not run in CI).

Three `lakehose run` instances share a 4-shard stream on moto_server while
one producer writes; every few hundred milliseconds a random instance is
killed with SIGKILL and restarted. After KILLS kills the producer finishes,
the instances drain and stop, and the lake is read back with pyarrow and
DuckDB: every good event id must be there exactly once, every bad one
exactly once in the error prefix, every record once in the raw backup.

usage: benches/kinesis_chaos.py [--kills 20] [--records 20000] [--instances 3] [--seed 1]
       (uses .venv, and $LAKEHOSE_BIN or target/debug/lakehose)
"""
import argparse, json, os, random, signal, socket, subprocess, sys, tempfile, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rig import PY, ROOT, free_port, generated_ids, lost_and_duplicated, start_moto


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--records", type=int, default=20000)
    ap.add_argument("--instances", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    binary = os.environ.get("LAKEHOSE_BIN", os.path.join(ROOT, "target/debug/lakehose"))
    moto, ep = start_moto()
    procs = []
    try:
        import boto3
        boto3.client("kinesis", endpoint_url=ep, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t").create_stream(StreamName="chaos", ShardCount=4)
        d = tempfile.mkdtemp(prefix="lakehose-chaos-")
        data = os.path.join(d, "in.ndjson")
        subprocess.run([PY, os.path.join(ROOT, "scripts/gen_clickstream.py"), data, "--records", str(a.records), "--bad-every", "97", "--seed", str(a.seed)], check=True)
        cfg = os.path.join(d, "l.toml")
        open(cfg, "w").write(f"""
[source]
kind = "kinesis"
stream = "chaos"
endpoint = "{ep}"
poll_interval = "200ms"
[lease]
table = "chaos-leases"
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
        start = lambda: subprocess.Popen([binary, "run", "--config", cfg], env=env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "daemons.log"), "ab"))
        procs = [start() for _ in range(a.instances)]
        producer = subprocess.Popen([PY, os.path.join(ROOT, "tests/py/kinesis_put.py"), data, "--stream", "chaos", "--endpoint", ep, "--batch", "50", "--pause", "0.05"], stdout=subprocess.DEVNULL)
        t0 = time.time()
        for k in range(a.kills):
            time.sleep(rnd.uniform(0.2, 1.5))
            i = rnd.randrange(len(procs))
            procs[i].send_signal(signal.SIGKILL); procs[i].wait()
            procs[i] = start()
        producer.wait()
        # drain: wait until the lake stops growing, then stop everyone cleanly
        check = [PY, os.path.join(ROOT, "tests/py/check_lake.py"), "--lake", os.path.join(d, "lake"), "--errors", os.path.join(d, "errors"), "--raw", os.path.join(d, "raw")]
        ids, bad, want = generated_ids(data)
        deadline = time.time() + 300
        while True:
            f = json.loads(subprocess.run(check, capture_output=True, check=True).stdout)
            if len(f["ids"]) >= len(want) and len(f["errors"]) >= len(bad) or time.time() > deadline:
                break
            time.sleep(1)
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(timeout=60)
        f = json.loads(subprocess.run(check, capture_output=True, check=True).stdout)
        got = f["ids"]
        err_ids = [e["id"] for e in f["errors"]]
        lost, dup = lost_and_duplicated(want, bad, got, err_ids)
        raw_ok = f["raw_ids"] == sorted(ids)
        res = {"records": len(ids), "kills": a.kills, "instances": a.instances, "lost": len(lost), "duplicated": dup,
               "wrong_rows": len(set(got) - set(want)), "raw_backup_exact": raw_ok, "duckdb_rows": f.get("duckdb_rows"),
               "seconds": round(time.time() - t0, 1), "dir": d}
        print(json.dumps(res))
        return 0 if not lost and not dup and raw_ok and not res["wrong_rows"] else 1
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        moto.kill()


if __name__ == "__main__":
    sys.exit(main())
