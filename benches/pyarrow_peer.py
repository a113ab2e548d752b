#!/usr/bin/env python3
"""The peer: pyarrow.json.read_json with an explicit schema, then
pyarrow.parquet.write_table(compression='snappy'). Same input as lakehose.

usage: pyarrow_peer.py INPUT OUTDIR [partitioned]
Prints seconds in all, seconds writing, and peak RSS KiB as JSON.

With `partitioned`, the peer writes the layout lakehose writes for
schemas/events.toml (dt=/hr=/event_type= Hive directories, one file per
partition) the fastest way found for pyarrow: derive dt and hr with
pc.strftime, sort by the partition keys, then dataset.write_dataset with
whole row groups (without min_rows_per_group it writes one tiny row group per
input block and partition, and takes ~7x longer).
"""
import json, os, resource, sys, time
import pyarrow as pa, pyarrow.json as pj, pyarrow.parquet as pq, pyarrow.compute as pc, pyarrow.dataset as ds

s = pa.string()
schema = pa.schema([
    ("event_id", s), ("timestamp", pa.timestamp("ms", tz="UTC")), ("event_type", s), ("user_id", pa.int64()),
    ("session_id", s),
    ("page", pa.struct([("url", s), ("referrer", s), ("title", s)])),
    ("device", pa.struct([("os", s), ("os_version", s), ("model", s)])),
    ("geo", pa.struct([("country", s), ("city", s), ("lat", pa.float64()), ("lon", pa.float64())])),
    # pyarrow's JSON reader cannot build a map column; the same keys as a struct
    ("properties", pa.struct([("campaign", s), ("ab_test", s), ("locale", s)])),
    ("tags", pa.list_(s)), ("duration_ms", pa.int32()), ("revenue", pa.float64()), ("is_bot", pa.bool_()),
])

t0 = time.perf_counter()
table = pj.read_json(sys.argv[1], parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"))
t1 = time.perf_counter()
os.makedirs(sys.argv[2], exist_ok=True)
if sys.argv[3:] == ["partitioned"]:
    ts = table.column("timestamp")
    keyed = table.append_column("dt", pc.strftime(ts, format="%Y-%m-%d")).append_column("hr", pc.strftime(ts, format="%H"))
    keyed = keyed.sort_by([("dt", "ascending"), ("hr", "ascending"), ("event_type", "ascending")])
    ds.write_dataset(keyed, sys.argv[2], format="parquet",
                     partitioning=ds.partitioning(pa.schema([("dt", s), ("hr", s), ("event_type", s)]), flavor="hive"),
                     file_options=ds.ParquetFileFormat().make_write_options(compression="snappy"),
                     max_partitions=100_000, min_rows_per_group=1 << 20, max_rows_per_group=1 << 20,
                     existing_data_behavior="overwrite_or_ignore")
else:
    pq.write_table(table, os.path.join(sys.argv[2], "out.snappy.parquet"), compression="snappy")
t2 = time.perf_counter()
print(json.dumps({"seconds": t2 - t0, "write_seconds": t2 - t1, "rows": table.num_rows,
                  "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
