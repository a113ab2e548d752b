"""Shared by the Kinesis bench scripts: free ports, a moto_server, and the
ids of a generated input and what a run lost or duplicated of them."""
import os, re, socket, subprocess, time, urllib.request

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
