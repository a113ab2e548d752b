#!/usr/bin/env python3
"""Reads an Iceberg table written by lakehose with pyiceberg (its SQL
catalog on the SQLite file) and prints facts as JSON.

usage: check_iceberg.py (--catalog FILE --warehouse URL | --glue ENDPOINT) --table NS.NAME
         [--hive LAKE] [--after ISO] [--id-column event_id]

facts: ids (sorted, with duplicates), schema (full field name -> id), spec
(["hour(ts)->ts_hour", ...]), snapshots (summaries, oldest first), files
(data files the scan plans) and, with --after, files_after (planned for
ts >= ISO); with --hive, mismatches: rows that differ from the Hive-style
lake's rows read by pyarrow (timestamps compared as instants).
"""
import argparse, datetime, glob, json, os

import pyarrow.parquet as pq
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.expressions import GreaterThanOrEqual

ap = argparse.ArgumentParser()
ap.add_argument("--catalog")
ap.add_argument("--warehouse")
ap.add_argument("--glue", help="Glue (and S3) endpoint: pyiceberg's Glue catalog instead of the SQL one")
ap.add_argument("--table", required=True)
ap.add_argument("--name", default="default")
ap.add_argument("--hive")
ap.add_argument("--after")
ap.add_argument("--id-column", default="event_id")
a = ap.parse_args()

if a.glue:
    from pyiceberg.catalog.glue import GlueCatalog
    keys = {"access-key-id": "test", "secret-access-key": "test", "region": "us-east-1"}
    props = {f"{svc}.{k}": v for svc in ("glue", "s3") for k, v in keys.items()}
    cat = GlueCatalog("glue", **props, **{"glue.endpoint": a.glue, "s3.endpoint": a.glue})
else:
    cat = SqlCatalog(a.name, uri=f"sqlite:///{os.path.abspath(a.catalog)}", warehouse=a.warehouse)
t = cat.load_table(a.table)
schema = t.schema()
out = {
    "spec": [f"{f.transform}({schema.find_column_name(f.source_id)})->{f.name}" for f in t.spec().fields],
    "snapshots": [dict(s.summary.additional_properties) for s in t.snapshots()],
}
out["schema"] = {schema.find_column_name(i): i for i in range(1, schema.highest_field_id + 1) if schema.find_column_name(i)}
out["required"] = [f.name for f in schema.fields if f.required]
tab = t.scan().to_arrow()
rows = tab.to_pylist()
out["ids"] = sorted(r[a.id_column] for r in rows)
out["ts_type"] = str(tab.schema.field("ts").type) if "ts" in tab.schema.names else None
out["files"] = len(list(t.scan().plan_files()))
if "ts" in tab.schema.names:
    from pyiceberg.expressions import IsNull
    out["null_ts_rows"] = sorted(r[a.id_column] for r in rows if r["ts"] is None)
    out["null_ts_scan"] = sorted(r[a.id_column] for r in t.scan(row_filter=IsNull("ts")).to_arrow().to_pylist())
if a.after == "median":
    ts = sorted(r["ts"] for r in rows if r["ts"] is not None)
    a.after = ts[len(ts) // 2].isoformat()
    out["want_after"] = sum(1 for x in ts if x.isoformat() >= a.after)
if a.after:
    out["files_after"] = len(list(t.scan(row_filter=GreaterThanOrEqual("ts", a.after)).plan_files()))
    out["rows_after"] = t.scan(row_filter=GreaterThanOrEqual("ts", a.after)).to_arrow().num_rows
out["columns"] = {c: [r[a.id_column] for r in rows if r.get(c) is not None] for c in tab.schema.names}


def norm(v):
    # a `timestamp` (not timestamptz) column reads back naive: its values are UTC
    if isinstance(v, datetime.datetime) and v.tzinfo is None:
        return v.replace(tzinfo=datetime.timezone.utc)
    if isinstance(v, list) and v and all(isinstance(x, tuple) and len(x) == 2 for x in v):
        return {k: norm(x) for k, x in v}
    if isinstance(v, dict):
        return {k: norm(x) for k, x in v.items()}
    if isinstance(v, list):
        return [norm(x) for x in v]
    return v


if a.hive:
    want = {}
    for f in sorted(glob.glob(os.path.join(a.hive, "**", "*.parquet"), recursive=True)):
        for r in pq.read_table(f, partitioning=None).to_pylist():
            want[r[a.id_column]] = r
    bad = []
    for r in rows:
        w = want.get(r[a.id_column])
        if w is None:
            bad.append({"id": r[a.id_column], "not_in_hive": True})
            continue
        for c, v in r.items():
            if norm(v) != norm(w.get(c)):
                bad.append({"id": r[a.id_column], "column": c, "iceberg": repr(v), "hive": repr(w.get(c))})
    out["mismatches"] = bad[:20]
    out["hive_rows"] = len(want)
print(json.dumps(out, default=str))
