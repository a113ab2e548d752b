#!/usr/bin/env bash
# Benchmark: the cost of schema rules (issue 22's bar: five rules within
# 10% of the same schema without them, one core). Runs interleaved in one
# loop: lakehose convert with benches/schemas/events-one-partition.toml
# (no rules), with benches/schemas/events-rules.toml (the same plus five
# rules: an allowed list, a pattern, min/max, a length, a not_null), and
# DuckDB on one thread as the peer. Prints medians and the median of
# per-run ratios. usage: benches/rules.sh [RECORDS=200000] [RUNS=7]
set -euo pipefail
cd "$(dirname "$0")/.."
RECORDS=${1:-200000}
RUNS=${2:-7}
source benches/setup.sh
cat "$INPUT" > /dev/null
err=$(mktemp)
lh() { # schema → seconds
  rm -rf "$OUT/rules"
  taskset -c 0 .venv/bin/python tests/py/peak_rss.py "$BIN" convert --jobs 1 --progress off --schema "$1" --out "$OUT/rules/lake" "$INPUT" 2>"$err" >/dev/null
  grep -q " 0 errors" "$err" || { cat "$err" >&2; exit 1; }
  sed -n 's/^elapsed_s=//p' "$err"
}
plain=() rules=() duck=()
for i in $(seq "$RUNS"); do
  plain+=("$(lh benches/schemas/events-one-partition.toml)")
  rules+=("$(lh benches/schemas/events-rules.toml)")
  rm -rf "$OUT/duckdb"
  duck+=("$(taskset -c 0 .venv/bin/python benches/duckdb_peer.py "$INPUT" "$OUT/duckdb" | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["seconds"])')")
  echo "run $i: plain ${plain[-1]}s rules ${rules[-1]}s duckdb ${duck[-1]}s" >&2
done
rm -f "$err"
.venv/bin/python - "${plain[*]}" "${rules[*]}" "${duck[*]}" <<'PY'
import statistics as st, sys
p, r, d = ([float(x) for x in a.split()] for a in sys.argv[1:4])
print(f"median seconds: no rules {st.median(p):.3f}, five rules {st.median(r):.3f}, DuckDB {st.median(d):.3f}")
print(f"rules cost (median of per-run rules/plain): {st.median([b / a for a, b in zip(p, r)]):.3f}x (bar <= 1.10)")
print(f"DuckDB / lakehose with rules: {st.median([c / b for b, c in zip(r, d)]):.2f}x")
PY
