#!/usr/bin/env python3
"""Reads a lake written by lakehose with independent readers and prints facts as JSON.

usage: check_lake.py --lake URL [--errors URL] [--raw URL] [--endpoint URL] [--id-column event_id]

URLs are directories or s3://bucket/prefix/ (S3 is read with pyarrow only:
DuckDB's httpfs extension needs a download this machine cannot make).
"""
import argparse, base64, glob, gzip, io, json, os, re, sys

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

ID = re.compile(rb"(?:bad-)?[a-z]+-\d{8}-[0-9a-f]{8}")


def fs_and_root(url, endpoint):
    if url.startswith("s3://"):
        fs = pafs.S3FileSystem(endpoint_override=endpoint, access_key="test", secret_key="test", region="us-east-1",
                               scheme="http", allow_bucket_creation=False)
        return fs, url[len("s3://"):].rstrip("/")
    if url.startswith("file://"):
        url = url[len("file://"):]
    return pafs.LocalFileSystem(), os.path.abspath(url).rstrip("/")


def list_files(fs, root, suffix):
    try:
        infos = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    except FileNotFoundError:
        return []
    return sorted(i.path for i in infos if i.type == pafs.FileType.File and i.path.endswith(suffix))


def read_gz_lines(fs, files):
    lines = []
    for f in files:
        with fs.open_input_file(f) as h:
            data = gzip.decompress(h.read())
        lines.extend(l for l in data.split(b"\n") if l)
    return lines


def partition_mismatches(fs, root, files, time_col):
    """Rows whose values disagree with the k=v segments of their file's path."""
    bad = []
    for f in files:
        segs = dict(seg.split("=", 1) for seg in f[len(root) + 1:].split("/")[:-1])
        with fs.open_input_file(f) as h:
            t = pq.read_table(io.BytesIO(h.read()))
        for row in t.to_pylist():
            ts = row[time_col]
            want = {"dt": ts.strftime("%Y-%m-%d"), "hr": ts.strftime("%H")}
            for k, v in segs.items():
                got = want.get(k, None if k not in row else ("__HIVE_DEFAULT_PARTITION__" if row[k] is None else str(row[k])))
                if got != v:
                    bad.append(f"{f}: {k}={v} but row has {got}")
    return bad[:20]


def compare_clickstream(table, input_path):
    """Every good input record (valid JSON object with an event_id) against its row."""
    import datetime, decimal
    rows = {r["event_id"]: r for r in table.to_pylist()}
    mismatches = []
    with open(input_path, "rb") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except Exception:
                continue
            if not isinstance(rec, dict) or str(rec.get("event_id", "")).startswith("bad-"):
                continue
            row = rows.get(rec["event_id"])
            if row is None:
                mismatches.append(f"{rec['event_id']}: no row")
                continue
            ts = datetime.datetime.fromisoformat(rec["timestamp"].replace("Z", "+00:00"))
            want = {
                "ts": ts, "event_type": rec["event_type"], "user_id": rec["user_id"], "session_id": rec["session_id"],
                "page": rec["page"], "device": rec["device"], "geo": rec["geo"],
                "properties": sorted(rec["properties"].items()), "tags": rec["tags"], "duration_ms": rec["duration_ms"],
                "revenue": None if rec["revenue"] is None else decimal.Decimal(str(rec["revenue"])).quantize(decimal.Decimal("0.01")),
                "is_bot": rec["is_bot"],
            }
            got = dict(row)
            got["properties"] = sorted(got["properties"] or [])
            for k, v in want.items():
                if got.get(k) != v:
                    mismatches.append(f"{rec['event_id']}.{k}: want {v!r} got {got.get(k)!r}")
            if len(mismatches) > 20:
                break
    return mismatches


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lake", required=True)
    ap.add_argument("--errors")
    ap.add_argument("--raw")
    ap.add_argument("--endpoint")
    ap.add_argument("--id-column", default="event_id")
    ap.add_argument("--time-column", help="check every row's partition path against this column (dt/hr)")
    ap.add_argument("--compare-clickstream", help="NDJSON input: compare every good record with its row")
    a = ap.parse_args()
    out = {}
    fs, root = fs_and_root(a.lake, a.endpoint)
    files = list_files(fs, root, ".parquet")
    out["parquet_files"] = [f[len(root) + 1:] for f in files]
    if files:
        dataset = ds.dataset(files, filesystem=fs, format="parquet", partitioning=ds.HivePartitioning.discover(), partition_base_dir=root)
        table = dataset.to_table()
        out["pyarrow_rows"] = table.num_rows
        out["ids"] = sorted(table.column(a.id_column).to_pylist())
        out["schema"] = {f.name: str(f.type) for f in table.schema}
        out["nullable"] = {f.name: f.nullable for f in table.schema}
        # physical layout of the first file, as Athena would see it
        with fs.open_input_file(files[0]) as h:
            pf = pq.ParquetFile(io.BytesIO(h.read()))
        md = pf.metadata
        cols = {}
        for i in range(md.num_columns):
            c = md.row_group(0).column(i)
            s = pf.schema.column(i)
            cols[c.path_in_schema] = {
                "physical": c.physical_type,
                "logical": str(s.logical_type),
                "compression": c.compression,
                "has_statistics": c.is_stats_set,
                "encodings": sorted(c.encodings),
            }
        out["columns"] = cols
        out["kv"] = {k.decode(): v.decode() for k, v in (md.metadata or {}).items() if k.decode().startswith("lakehose.")}
        out["row_groups"] = md.num_row_groups
        out["sample"] = json.loads(json.dumps(table.slice(0, 3).to_pylist(), default=str))
        if a.time_column:
            out["partition_mismatches"] = partition_mismatches(fs, root, files, a.time_column)
        if a.compare_clickstream:
            out["value_mismatches"] = compare_clickstream(table, a.compare_clickstream)
        if not a.lake.startswith("s3://"):
            import duckdb
            con = duckdb.connect()
            q = f"read_parquet('{root}/**/*.parquet', hive_partitioning=true)"
            out["duckdb_rows"] = con.execute(f"select count(*) from {q}").fetchone()[0]
            out["duckdb_distinct_ids"] = con.execute(f"select count(distinct {a.id_column}) from {q}").fetchone()[0]
            out["duckdb_types"] = {r[0]: r[1] for r in con.execute(f"describe select * from {q}").fetchall()}
    else:
        out["pyarrow_rows"] = 0
        out["ids"] = []
    if a.errors:
        efs, eroot = fs_and_root(a.errors, a.endpoint)
        efiles = list_files(efs, eroot, ".json.gz")
        out["error_files"] = [f[len(eroot) + 1:] for f in efiles]
        errs = []
        for line in read_gz_lines(efs, efiles):
            e = json.loads(line)
            raw = base64.b64decode(e["rawData"])
            m = ID.search(raw)
            e["id"] = m.group(0).decode() if m else None
            e["rawLength"] = len(raw)
            del e["rawData"]
            errs.append(e)
        out["errors"] = errs
    if a.raw:
        rfs, rroot = fs_and_root(a.raw, a.endpoint)
        lines = read_gz_lines(rfs, list_files(rfs, rroot, ".json.gz"))
        out["raw_lines"] = len(lines)
        # a record a line cannot hold as it is (over the size limit, a
        # newline in it) is wrapped: {"lakehoseRaw": base64, "originalSize", "truncated"}
        unwrap = lambda l: base64.b64decode(json.loads(l)["lakehoseRaw"]) if l.startswith(b'{"lakehoseRaw":') else l
        out["raw_wrapped"] = sum(1 for l in lines if l.startswith(b'{"lakehoseRaw":'))
        out["raw_ids"] = sorted(m.group(0).decode() for m in (ID.search(unwrap(l)) for l in lines) if m)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
