"""Shared by the Kinesis bench scripts: free ports and a moto_server."""
import os, socket, subprocess, time, urllib.request

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
