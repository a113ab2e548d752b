#!/usr/bin/env python3
"""Runs a command and prints, on stderr, its wall time from start to exit
(`elapsed_s=`, without this interpreter's own start-up) and then its peak
resident set size in KiB (`peak_rss_kib=`, the last line).

usage: peak_rss.py CMD [ARG…]   (exit code is the command's)
"""
import resource, subprocess, sys, time

t0 = time.perf_counter()
rc = subprocess.call(sys.argv[1:])
elapsed = time.perf_counter() - t0
print(f"elapsed_s={elapsed:.6f}", file=sys.stderr)
print(f"peak_rss_kib={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}", file=sys.stderr)
sys.exit(rc)
