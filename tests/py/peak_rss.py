#!/usr/bin/env python3
"""Runs a command and prints its peak resident set size in KiB on stderr's last line.

usage: peak_rss.py CMD [ARG…]   (exit code is the command's)
"""
import resource, subprocess, sys

rc = subprocess.call(sys.argv[1:])
print(f"peak_rss_kib={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}", file=sys.stderr)
sys.exit(rc)
