#!/usr/bin/env python3
"""Kill -9 loop for the front door (issue 20's durability bar; not run in CI).

`lakehose run` serves Direct PUT with a local write-ahead log; CLIENTS
boto3 clients send PutRecordBatch calls while the process is killed with
SIGKILL at a random moment and restarted, RUNS times. Then it drains and
stops, and the lake is read back with pyarrow and DuckDB: every record
acknowledged (answered 200 with a RecordId) must be there exactly once;
records whose answer never came may be missing or there once, never twice.

usage: benches/door_chaos.py [--runs 20] [--clients 8] [--seed 1]
       (uses .venv, and $LAKEHOSE_BIN or target/release/lakehose)
"""
import argparse, json, os, random, signal, subprocess, sys, tempfile, time, collections

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rig import PY, ROOT, free_port

KEY, SECRET = "AKIDLOCALONLY", "local-only-secret-do-not-use-elsewhere"


def wait_port(port):
    import socket
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} never opened")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    binary = os.environ.get("LAKEHOSE_BIN", os.path.join(ROOT, "target/release/lakehose"))
    d = tempfile.mkdtemp(prefix="lakehose-door-chaos-")
    port = free_port()
    cfg = os.path.join(d, "door.toml")
    text = open(os.path.join(ROOT, "examples/direct-put.toml")).read()
    text = text.replace('listen = "127.0.0.1:4573"', f'listen = "127.0.0.1:{port}"').replace('schema = "../schemas/events.toml"', f'schema = "{ROOT}/schemas/events.toml"').replace('max_age = "5s"', 'max_age = "1s"')
    open(cfg, "w").write(text)
    acked, unsure = [], []
    client = os.path.join(ROOT, "tests/py/firehose_client.py")
    endpoint = f"http://127.0.0.1:{port}"
    for run in range(a.runs):
        p = subprocess.Popen([binary, "run", "--config", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(port)
        load = subprocess.Popen([PY, client, endpoint, KEY, SECRET, "load", str(a.clients), "60", f"r{run}"], stdout=subprocess.PIPE)
        time.sleep(1.0 + rnd.random() * 2.0)  # boto3 starts in ~1 s; then kill under load
        p.send_signal(signal.SIGKILL)
        p.wait()
        r = json.loads(load.communicate()[0])
        acked += r["acked"]
        unsure += r["unsure"]
        print(f"run {run + 1}: {len(r['acked'])} acknowledged, {len(r['unsure'])} unanswered", file=sys.stderr)
    p = subprocess.Popen([binary, "run", "--config", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    time.sleep(4)
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=60)
    facts = json.loads(subprocess.run([PY, os.path.join(ROOT, "tests/py/check_lake.py"), "--lake", os.path.join(d, "lake")], check=True, capture_output=True).stdout)
    seen = collections.Counter(facts["ids"])
    lost = [i for i in acked if i not in seen]
    twice = [i for i, n in seen.items() if n > 1]
    extra = set(seen) - set(acked)
    stray = extra - set(unsure)
    print(json.dumps({"runs": a.runs, "acknowledged": len(acked), "unanswered": len(unsure), "rows": sum(seen.values()),
                      "lost_acknowledged": len(lost), "duplicated": len(twice), "unanswered_that_landed": len(extra), "stray": len(stray)}))
    ok = not lost and not twice and not stray
    if ok:
        subprocess.run(["rm", "-rf", d])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
