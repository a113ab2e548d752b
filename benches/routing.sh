#!/usr/bin/env bash
# Benchmark: routing one stream to two tables (issue 22's bar: two routed
# tables cost no more than 10% over one table on the same input). One
# core, runs interleaved: `lakehose run` with the stdin source over the
# seeded clickstream into one table (benches/schemas/events-one-partition.toml),
# and the same input routed by event_type into two tables of that schema
# (purchases, and the rest), and DuckDB on one thread writing the single
# table as the peer. Prints medians and the median of per-run ratios.
# usage: benches/routing.sh [RECORDS=200000] [RUNS=7]
set -euo pipefail
cd "$(dirname "$0")/.."
RECORDS=${1:-200000}
RUNS=${2:-7}
source benches/setup.sh
W="$PWD/$OUT/routing"
mkdir -p "$W"
SCHEMA="$PWD/benches/schemas/events-one-partition.toml"
sed 's/^table = .*/table = "purchases"/' "$SCHEMA" > "$W/purchases.toml"
cat > "$W/one.toml" <<CFG
[source]
kind = "stdin"
[table]
schema = "$SCHEMA"
[sink]
url = "out/one"
errors = "out/one-errors"
CFG
cat > "$W/two.toml" <<CFG
[source]
kind = "stdin"
[sink]
errors = "out/unrouted"
[routing]
column = "event_type"
[[tables]]
schema = "$W/purchases.toml"
url = "out/purchases"
errors = "out/purchases-errors"
values = ["purchase", "refund"]
[[tables]]
schema = "$SCHEMA"
url = "out/events"
errors = "out/events-errors"
default = true
CFG
cat "$INPUT" > /dev/null
lh() { # config → seconds (wall, from exec to exit)
  rm -rf "$W/out"
  local t0 t1
  t0=$(date +%s.%N)
  taskset -c 0 "$BIN" run --config "$W/$1.toml" < "$INPUT" > /dev/null 2>&1
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc
}
one=() two=() duck=()
for i in $(seq "$RUNS"); do
  one+=("$(lh one)")
  two+=("$(lh two)")
  rm -rf "$OUT/duckdb"
  duck+=("$(taskset -c 0 .venv/bin/python benches/duckdb_peer.py "$INPUT" "$OUT/duckdb" | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["seconds"])')")
  echo "run $i: one table ${one[-1]}s, two routed ${two[-1]}s, duckdb ${duck[-1]}s" >&2
done
rows=$(.venv/bin/python -c "import pyarrow.dataset as ds; print(sum(ds.dataset('$W/out/' + t, format='parquet').count_rows() for t in ['purchases', 'events']))")
[ "$rows" = "$RECORDS" ] || { echo "two tables hold $rows rows, want $RECORDS" >&2; exit 1; }
.venv/bin/python - "${one[*]}" "${two[*]}" "${duck[*]}" <<'PY'
import statistics as st, sys
o, t, d = ([float(x) for x in a.split()] for a in sys.argv[1:4])
print(f"median seconds: one table {st.median(o):.3f}, two routed tables {st.median(t):.3f}, DuckDB {st.median(d):.3f}")
print(f"routing cost (median of per-run two/one): {st.median([b / a for a, b in zip(o, t)]):.3f}x (bar <= 1.10)")
print(f"DuckDB / lakehose two tables: {st.median([c / b for b, c in zip(t, d)]):.2f}x")
PY
