#!/usr/bin/env python3
"""Reads every Parquet file under LAKE with pyarrow and with DuckDB and
compares the rows with the NDJSON input, column by column (a key missing in
the JSON is null; a map reads back as its list of key/value pairs).

usage: same_rows.py INPUT LAKE ID_COLUMN
Prints JSON: {"rows": n, "pyarrow_mismatches": [...], "duckdb_mismatches": [...],
"encodings": {column path: [encodings]}}.
"""
import glob, json, os, sys

import duckdb
import pyarrow.parquet as pq

src, lake, id_col = sys.argv[1:4]
want = {}
with open(src) as f:
    for line in f:
        r = json.loads(line)
        want[r[id_col]] = r
files = sorted(glob.glob(os.path.join(lake, "**", "*.parquet"), recursive=True))


def norm(v):
    # DuckDB gives maps as {key: [...], value: [...]} or dicts; pyarrow as [(k, v)]
    if isinstance(v, dict) and set(v) == {"key", "value"} and isinstance(v["key"], list):
        return {k: x for k, x in zip(v["key"], v["value"])}
    if isinstance(v, list) and v and all(isinstance(x, tuple) and len(x) == 2 for x in v):
        return {k: x for k, x in v}
    if isinstance(v, dict):
        return {k: norm(x) for k, x in v.items()}
    if isinstance(v, list):
        return [norm(x) for x in v]
    return v


def compare(rows, columns):
    bad, seen = [], set()
    for r in rows:
        i = r[id_col]
        seen.add(i)
        for c in columns:
            got, exp = norm(r[c]), want[i].get(c)
            if isinstance(exp, dict) and got == []:
                got = {}  # an empty map: no pairs
            if isinstance(exp, dict) and isinstance(got, dict):
                # struct fields missing in the JSON read back as null
                exp = {k: exp.get(k) for k in got} if set(exp) <= set(got) else exp
            if got != exp:
                bad.append({"id": i, "column": c, "got": got, "want": exp})
    bad += [{"id": i, "missing": True} for i in want if i not in seen]
    return bad[:20]


rows, encodings = [], {}
for f in files:
    t = pq.read_table(f)
    rows += t.to_pylist()
    md = pq.ParquetFile(f).metadata
    for g in range(md.num_row_groups):
        for c in range(md.num_columns):
            col = md.row_group(g).column(c)
            encodings.setdefault(col.path_in_schema, set()).update(col.encodings)
columns = [c for c in pq.read_schema(files[0]).names]
con = duckdb.connect()
rel = con.sql(f"select * from read_parquet({json.dumps(files)})")
duck = [dict(zip(rel.columns, r)) for r in rel.fetchall()]
print(json.dumps({
    "rows": len(rows),
    "pyarrow_mismatches": compare(rows, columns),
    "duckdb_mismatches": compare(duck, columns),
    "encodings": {k: sorted(v) for k, v in encodings.items()},
}, default=str))
