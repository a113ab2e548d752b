#!/usr/bin/env python3
"""The strongest peer: DuckDB on one thread (DUCKDB_THREADS=n for more), read_json with explicit
columns (the same types lakehose writes: properties a MAP, revenue a
DECIMAL, ts a TIMESTAMP WITH TIME ZONE), then COPY … TO Parquet (snappy).
Same input as lakehose.

usage: duckdb_peer.py INPUT OUTDIR [partitioned]
Prints seconds in all and peak RSS KiB as JSON. With `partitioned`, DuckDB
writes the dt=/hr=/event_type= layout of schemas/events.toml
(PARTITION_BY), else one file.
"""
import json, os, resource, sys, time
import duckdb

cols = {
    "event_id": "VARCHAR", "timestamp": "TIMESTAMPTZ", "event_type": "VARCHAR", "user_id": "BIGINT",
    "session_id": "VARCHAR",
    "page": "STRUCT(url VARCHAR, referrer VARCHAR, title VARCHAR)",
    "device": "STRUCT(os VARCHAR, os_version VARCHAR, model VARCHAR)",
    "geo": "STRUCT(country VARCHAR, city VARCHAR, lat DOUBLE, lon DOUBLE)",
    "properties": "MAP(VARCHAR, VARCHAR)",
    "tags": "VARCHAR[]", "duration_ms": "INTEGER", "revenue": "DECIMAL(10,2)", "is_bot": "BOOLEAN",
}
con = duckdb.connect()
con.execute(f"SET threads = {int(os.environ.get('DUCKDB_THREADS', '1'))}")
con.execute("SET TimeZone = 'UTC'")
os.makedirs(sys.argv[2], exist_ok=True)
src = f"read_json('{sys.argv[1]}', format='newline_delimited', columns={json.dumps(cols)})"
t0 = time.perf_counter()
if sys.argv[3:] == ["partitioned"]:
    con.execute(f"""COPY (SELECT * EXCLUDE (timestamp), timestamp AS ts, strftime(timestamp, '%Y-%m-%d') AS dt, strftime(timestamp, '%H') AS hr FROM {src})
                    TO '{sys.argv[2]}' (FORMAT parquet, COMPRESSION snappy, PARTITION_BY (dt, hr, event_type), OVERWRITE_OR_IGNORE)""")
else:
    con.execute(f"COPY (SELECT * FROM {src}) TO '{os.path.join(sys.argv[2], 'out.snappy.parquet')}' (FORMAT parquet, COMPRESSION snappy)")
t1 = time.perf_counter()
print(json.dumps({"seconds": t1 - t0, "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
