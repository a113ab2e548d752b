#!/usr/bin/env bash
# Benchmark: `lakehose convert` on every core (issue 21's bar), against
# DuckDB on 1 and 2 threads, runs interleaved in one loop.
# usage: benches/backfill.sh [RECORDS=1000000] [RUNS=5]
# Input: the seeded clickstream (~560 MB for 1M records) and a gzip copy
# (gzip -6). Schema: benches/schemas/events-one-partition.toml (one output
# partition, like the peers' single file). Measured per run, each as the
# wall time of its process:
#   lh1     lakehose --jobs 1, plain input
#   lh2     lakehose --jobs 2, plain input
#   lh2raw  lakehose --jobs 2, plain input, with a gzip raw backup
#   lh2gz   lakehose --jobs 2, gzip input
#   dk1/dk2 DuckDB read_json + COPY TO parquet on 1 / 2 threads, plain input
#   dk2gz   DuckDB on 2 threads, gzip input
# Prints medians, MB/s of (uncompressed) input and the ratios of the bar:
# lh1/lh2 (>= 1.8), lh2raw MB/s (>= 250), lh2gz/lh2 (<= 1.25); ratios are
# medians of per-run ratios. Writes bench-out/backfill.md.
set -euo pipefail
cd "$(dirname "$0")/.."
RECORDS=${1:-1000000}
RUNS=${2:-5}
source benches/setup.sh
SCHEMA=benches/schemas/events-one-partition.toml
GZ="$INPUT.gz"
[ -f "$GZ" ] && [ "$GZ" -nt "$INPUT" ] || gzip -6 -c "$INPUT" > "$GZ"
BYTES=$(stat -c %s "$INPUT")
cat "$INPUT" "$GZ" > /dev/null   # warm the page cache for all
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
field() { .venv/bin/python -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
declare -A T
err=$(mktemp)
lh() { # name, args...
  local name=$1; shift
  rm -rf "$OUT/bf"
  .venv/bin/python tests/py/peak_rss.py "$BIN" convert --progress off --schema "$SCHEMA" --out "$OUT/bf/lake" "$@" 2>"$err" >/dev/null
  T[$name]+="$(sed -n 's/^elapsed_s=//p' "$err") "
}
dk() { # name, threads, input
  rm -rf "$OUT/duckdb"
  T[$1]+="$(DUCKDB_THREADS=$2 .venv/bin/python benches/duckdb_peer.py "$3" "$OUT/duckdb" | field seconds) "
}
for i in $(seq "$RUNS"); do
  lh lh1 --jobs 1 "$INPUT"
  lh lh2 --jobs 2 "$INPUT"
  lh lh2raw --jobs 2 --raw-backup "$OUT/bf/raw" "$INPUT"
  lh lh2gz --jobs 2 "$GZ"
  dk dk1 1 "$INPUT"
  dk dk2 2 "$INPUT"
  dk dk2gz 2 "$GZ"
  echo "run $i: $(for k in lh1 lh2 lh2raw lh2gz dk1 dk2 dk2gz; do printf '%s %ss  ' "$k" "$(echo "${T[$k]}" | awk '{print $NF}')"; done)" >&2
done
rm -f "$err"
med() { echo "${T[$1]}" | tr ' ' '\n' | grep . | median; }
# median over runs of (a_i / b_i)
ratio() { paste <(echo "${T[$1]}" | tr ' ' '\n' | grep .) <(echo "${T[$2]}" | tr ' ' '\n' | grep .) | awk '{print $1/$2}' | median; }
MB=$(echo "$BYTES / 1000000" | bc -l)
{
  echo "| run (median of $RUNS, 2 cores) | seconds | MB/s of input |"
  echo "|---|---|---|"
  for k in lh1 lh2 lh2raw lh2gz dk1 dk2 dk2gz; do
    printf '| %s | %.2f | %.0f |\n' "$k" "$(med $k)" "$(echo "$MB / $(med $k)" | bc -l)"
  done
  echo
  printf 'lakehose 2 workers vs 1 (lh1/lh2): %.2fx (bar 1.8x); DuckDB 2 threads vs 1 (dk1/dk2): %.2fx\n' "$(ratio lh1 lh2)" "$(ratio dk1 dk2)"
  printf 'with a gzip raw backup on 2 workers: %.0f MB/s of input (bar 250)\n' "$(echo "$MB / $(med lh2raw)" | bc -l)"
  printf 'gzip input vs plain on 2 workers (lh2gz/lh2): %.2fx (bar <= 1.25); DuckDB (dk2gz/dk2): %.2fx\n' "$(ratio lh2gz lh2)" "$(ratio dk2gz dk2)"
  printf 'lakehose vs DuckDB, both on 2 cores (dk2/lh2): %.2fx; gzip input (dk2gz/lh2gz): %.2fx\n' "$(ratio dk2 lh2)" "$(ratio dk2gz lh2gz)"
  printf '\ninput: %s records, %.0f MB (gzip -6: %.0f MB); schema %s\n' "$RECORDS" "$MB" "$(echo "$(stat -c %s "$GZ") / 1000000" | bc -l)" "$SCHEMA"
} | tee "$OUT/backfill.md"
