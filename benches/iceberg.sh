#!/usr/bin/env bash
# Benchmark: single-core convert to an Iceberg table against Hive-style
# Parquet (issue 23's bar: within 10%), same schema (schemas/events.toml:
# hour(ts) + event_type partitions), same input, one core, interleaved;
# DuckDB on one thread as the peer (one output file: less work than
# either). The Iceberg run includes creating the table (SQL catalog on a
# SQLite file) and its one commit. Prints medians and the median of
# per-run ratios. usage: benches/iceberg.sh [RECORDS=200000] [RUNS=5]
set -euo pipefail
cd "$(dirname "$0")/.."
RECORDS=${1:-200000}
RUNS=${2:-5}
source benches/setup.sh
cat "$INPUT" > /dev/null
err=$(mktemp)
lh() { # extra convert args → seconds
  rm -rf "$OUT/ice"
  taskset -c 0 .venv/bin/python tests/py/peak_rss.py "$BIN" convert --jobs 1 --progress off --schema schemas/events.toml "$@" "$INPUT" 2>"$err" >/dev/null
  grep -q "rows written" "$err" || { cat "$err" >&2; exit 1; }
  sed -n 's/^elapsed_s=//p' "$err"
}
hive=() ice=() duck=()
for i in $(seq "$RUNS"); do
  hive+=("$(lh --out "$OUT/ice/hive")")
  ice+=("$(lh --format iceberg --catalog sql --catalog-uri "$OUT/ice/catalog.db" --warehouse "$OUT/ice/warehouse" --database lake --errors "$OUT/ice/errors")")
  rm -rf "$OUT/duckdb"
  duck+=("$(taskset -c 0 .venv/bin/python benches/duckdb_peer.py "$INPUT" "$OUT/duckdb" | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["seconds"])')")
  echo "run $i: hive ${hive[-1]}s iceberg ${ice[-1]}s duckdb ${duck[-1]}s" >&2
done
rm -f "$err"
.venv/bin/python - "${hive[*]}" "${ice[*]}" "${duck[*]}" <<'PY'
import statistics as st, sys
h, i, d = ([float(x) for x in a.split()] for a in sys.argv[1:4])
print(f"median seconds: hive {st.median(h):.3f}, iceberg {st.median(i):.3f}, DuckDB {st.median(d):.3f}")
print(f"iceberg / hive (median of per-run ratios): {st.median([b / a for a, b in zip(h, i)]):.3f}x (bar <= 1.10)")
print(f"DuckDB / lakehose iceberg: {st.median([c / b for b, c in zip(i, d)]):.2f}x; DuckDB / hive: {st.median([c / a for a, c in zip(h, d)]):.2f}x")
PY
