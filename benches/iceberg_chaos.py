#!/usr/bin/env python3
"""Iceberg commit bench with kill -9 chaos (issue 23's bar; not run in CI).

INSTANCES `lakehose run` processes share a SHARDS-shard stream on moto_server
through leases and write one Iceberg table (SQL catalog on a SQLite file)
while a producer writes for the run's length; every few seconds a random
instance is killed with SIGKILL and restarted. Each instance's /metrics is
scraped every second for its commits and commit conflicts (a killed
instance's last scrape counts). At the end the instances drain and stop,
and the table is read with pyiceberg: every good id exactly once, every bad
one once in the error prefix. Prints commits per minute (the table's
snapshots over the run's minutes), conflicts retried, lost and duplicated.

usage: benches/iceberg_chaos.py [--kills 20] [--records 60000] [--instances 4] [--shards 16]
       [--interval 10s] [--seed 1]   (uses .venv, and $LAKEHOSE_BIN or target/release/lakehose)
"""
import argparse, json, os, random, re, signal, subprocess, sys, tempfile, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rig import PY, ROOT, free_port, generated_ids, lost_and_duplicated, start_moto


def scrape(port):
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1).read().decode()
    except Exception:
        return None
    get = lambda name: float(re.search(rf"^lakehose_{name} (\S+)$", text, re.M).group(1))
    return get("iceberg_commits_total"), get("iceberg_commit_conflicts_total")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--records", type=int, default=60000)
    ap.add_argument("--instances", type=int, default=4)
    ap.add_argument("--shards", type=int, default=16)
    ap.add_argument("--interval", default="10s")
    ap.add_argument("--pause", type=float, default=0.1, help="producer pause between batches of 100")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    binary = os.environ.get("LAKEHOSE_BIN", os.path.join(ROOT, "target/release/lakehose"))
    moto, ep = start_moto()
    procs = []
    try:
        import boto3
        boto3.client("kinesis", endpoint_url=ep, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t").create_stream(StreamName="ice", ShardCount=a.shards)
        d = tempfile.mkdtemp(prefix="lakehose-iceberg-")
        data = os.path.join(d, "in.ndjson")
        subprocess.run([PY, os.path.join(ROOT, "scripts/gen_clickstream.py"), data, "--records", str(a.records), "--bad-every", "97", "--seed", str(a.seed)], check=True)
        ports = [free_port() for _ in range(a.instances)]

        def config(i):
            cfg = os.path.join(d, f"l{i}.toml")
            open(cfg, "w").write(f"""
[source]
kind = "kinesis"
stream = "ice"
endpoint = "{ep}"
poll_interval = "200ms"
[lease]
table = "ice-leases"
failover = "3s"
worker_id = "w{i}"
[table]
schema = "{ROOT}/schemas/events.toml"
format = "iceberg"
[catalog]
kind = "sql"
uri = "iceberg/catalog.db"
warehouse = "iceberg/warehouse"
database = "lake"
[sink]
errors = "errors"
[buffer]
max_age = "{a.interval}"
[metrics]
listen = "127.0.0.1:{ports[i]}"
""")
            return cfg

        cfgs = [config(i) for i in range(a.instances)]
        env = dict(os.environ, AWS_ACCESS_KEY_ID="t", AWS_SECRET_ACCESS_KEY="t", AWS_REGION="us-east-1", LAKEHOSE_LOG="warn")
        log = open(os.path.join(d, "daemons.log"), "ab")
        start = lambda i: subprocess.Popen([binary, "run", "--config", cfgs[i]], env=env, stdout=subprocess.DEVNULL, stderr=log)
        procs = [start(i) for i in range(a.instances)]
        last = [(0.0, 0.0)] * a.instances  # this incarnation's last scrape
        done = [0.0, 0.0]  # killed incarnations' totals

        def poll():
            for i, p in enumerate(ports):
                s = scrape(p)
                if s:
                    last[i] = s

        producer = subprocess.Popen([PY, os.path.join(ROOT, "tests/py/kinesis_put.py"), data, "--stream", "ice", "--endpoint", ep, "--batch", "100", "--pause", str(a.pause)], stdout=subprocess.DEVNULL)
        t0 = time.time()
        kills = 0
        while producer.poll() is None or kills < a.kills:
            for _ in range(rnd.randint(2, 8)):
                time.sleep(1)
                poll()
            if kills < a.kills:
                i = rnd.randrange(a.instances)
                procs[i].send_signal(signal.SIGKILL); procs[i].wait()
                done[0] += last[i][0]; done[1] += last[i][1]
                last[i] = (0.0, 0.0)
                procs[i] = start(i)
                kills += 1
        producer.wait()
        check = [PY, os.path.join(ROOT, "tests/py/check_iceberg.py"), "--catalog", os.path.join(d, "iceberg/catalog.db"),
                 "--warehouse", "file://" + os.path.join(d, "iceberg/warehouse"), "--table", "lake.events"]
        os.makedirs(os.path.join(d, "no-lake"), exist_ok=True)
        errs = [PY, os.path.join(ROOT, "tests/py/check_lake.py"), "--lake", os.path.join(d, "no-lake"), "--errors", os.path.join(d, "errors")]
        ids, bad, want = generated_ids(data)
        deadline = time.time() + 300
        while True:
            poll()
            f = json.loads(subprocess.run(check, capture_output=True, check=True).stdout)
            if len(f["ids"]) >= len(want) or time.time() > deadline:
                break
            time.sleep(2)
        poll()
        minutes = (time.time() - t0) / 60
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(timeout=60)
        f = json.loads(subprocess.run(check, capture_output=True, check=True).stdout)
        e = json.loads(subprocess.run(errs, capture_output=True, check=True).stdout)
        got, err_ids = f["ids"], [x["id"] for x in e["errors"]]
        lost, dup = lost_and_duplicated(want, bad, got, err_ids)
        commits = done[0] + sum(c for c, _ in last)
        conflicts = done[1] + sum(c for _, c in last)
        res = {"records": len(ids), "instances": a.instances, "shards": a.shards, "kills": kills, "interval": a.interval,
               "minutes": round(minutes, 2), "snapshots": len(f["snapshots"]), "commits_per_minute": round(len(f["snapshots"]) / minutes, 1),
               "commits_scraped": commits, "conflicts_retried": conflicts, "data_files": f["files"],
               "lost": len(lost), "duplicated": dup, "wrong_rows": len(set(got) - set(want)), "dir": d}
        print(json.dumps(res))
        return 0 if not lost and not dup and not res["wrong_rows"] else 1
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        moto.kill()


if __name__ == "__main__":
    sys.exit(main())
