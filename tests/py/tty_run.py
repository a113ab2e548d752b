#!/usr/bin/env python3
"""Runs a command with its stderr on a pseudo-terminal (as a person at a
terminal would) and prints JSON: {"code": exit code, "tty": what it wrote}.

usage: tty_run.py CMD [ARGS...]
"""
import json, os, pty, subprocess, sys

master, slave = pty.openpty()
p = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave)
os.close(slave)
out = b""
while True:
    try:
        chunk = os.read(master, 65536)
    except OSError:  # the other side closed
        break
    if not chunk:
        break
    out += chunk
print(json.dumps({"code": p.wait(), "tty": out.decode("utf-8", "replace")}))
