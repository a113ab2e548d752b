#!/usr/bin/env python3
"""Writes an input of huge lines into PATH (a FIFO the test made, so no
disk holds it) and prints what a reader must find, as JSON.

usage: huge_lines.py PATH single|many

single: a good record, one 2 GiB line, a good record.
many:   1000 lines of 5 MiB, with a good record after every 100th.
Good records are {"event_id":"good-N",...}; every huge line starts
{"event_id":"huge-N","pad":"xxxx… and ends "} (a valid record, only too long).
"""
import json, sys

path, kind = sys.argv[1], sys.argv[2]
good = lambda i: b'{"event_id":"good-%d","timestamp":"2026-12-06T10:00:00Z","event_type":"view"}\n' % i
chunk = memoryview(b"x" * (8 << 20))


def huge(out, i, size):
    head = b'{"event_id":"huge-%d","pad":"' % i
    tail = b'"}\n'
    out.write(head)
    left = size - len(head) - len(tail) + 1  # the newline is not part of the line
    while left > 0:
        n = min(left, len(chunk))
        out.write(chunk[:n])
        left -= n
    out.write(tail)


facts = {"good": [], "huge": {}}
with open(path, "wb", buffering=0) as out:
    if kind == "single":
        out.write(good(0))
        huge(out, 0, 2 << 30)
        out.write(good(1))
        facts["good"] = ["good-0", "good-1"]
        facts["huge"]["huge-0"] = 2 << 30
    else:
        line = None
        for i in range(1000):
            huge(out, i, 5 << 20)
            facts["huge"][f"huge-{i}"] = 5 << 20
            if i % 100 == 99:
                out.write(good(i))
                facts["good"].append(f"good-{i}")
print(json.dumps(facts))
