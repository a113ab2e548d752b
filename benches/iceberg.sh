#!/usr/bin/env bash
# Benchmark: single-core convert to an Iceberg table against Hive-style
# Parquet (issue 23's bar: within 10%), same schema, same input, one core,
# interleaved; DuckDB on one thread as the peer (one output file). The
# Iceberg run includes creating the table (SQL catalog on a SQLite file)
# and its commits. SCHEMA picks the partitioning: benches/schemas/
# events-day.toml (day(ts), a few files: the per-byte cost) by default,
# schemas/events.toml (hour(ts) + event_type: hundreds of small files, the
# per-file cost of manifests). Prints medians and the median of per-run
# ratios. usage: [SCHEMA=...] [DEST=dir] benches/iceberg.sh [RECORDS=200000] [RUNS=5]
set -euo pipefail
cd "$(dirname "$0")/.."
RECORDS=${1:-200000}
RUNS=${2:-5}
SCHEMA=${SCHEMA:-benches/schemas/events-day.toml}
# where the outputs go (DEST=/dev/shm/lh keeps disk writeback out of the timings)
DEST=${DEST:-bench-out}
source benches/setup.sh
cat "$INPUT" > /dev/null
err=$(mktemp)
lh() { # extra convert args → seconds
  rm -rf "$DEST/ice"
  taskset -c 0 .venv/bin/python tests/py/peak_rss.py "$BIN" convert --jobs 1 --progress off --schema "$SCHEMA" "$@" "$INPUT" 2>"$err" >/dev/null
  grep -q "rows written" "$err" || { cat "$err" >&2; exit 1; }
  sed -n 's/^elapsed_s=//p' "$err"
}
hive=() ice=() duck=()
for i in $(seq "$RUNS"); do
  hive+=("$(lh --out "$DEST/ice/hive")")
  ice+=("$(lh --format iceberg --catalog sql --catalog-uri "$DEST/ice/catalog.db" --warehouse "$DEST/ice/warehouse" --database lake --errors "$DEST/ice/errors")")
  rm -rf "$DEST/duckdb"
  duck+=("$(taskset -c 0 .venv/bin/python benches/duckdb_peer.py "$INPUT" "$DEST/duckdb" | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["seconds"])')")
  files=$(find "$DEST/ice/warehouse" -name '*.parquet' | wc -l)
  echo "run $i: hive ${hive[-1]}s iceberg ${ice[-1]}s duckdb ${duck[-1]}s ($files data files)" >&2
done
rm -f "$err"
.venv/bin/python - "${hive[*]}" "${ice[*]}" "${duck[*]}" <<'PY'
import statistics as st, sys
h, i, d = ([float(x) for x in a.split()] for a in sys.argv[1:4])
print(f"median seconds: hive {st.median(h):.3f}, iceberg {st.median(i):.3f}, DuckDB {st.median(d):.3f}")
print(f"iceberg / hive (median of per-run ratios): {st.median([b / a for a, b in zip(h, i)]):.3f}x (bar <= 1.10)")
print(f"DuckDB / lakehose iceberg: {st.median([c / b for b, c in zip(i, d)]):.2f}x; DuckDB / hive: {st.median([c / a for a, c in zip(h, d)]):.2f}x")
PY
