#!/usr/bin/env bash
# Benchmark: `lakehose convert` against DuckDB (the strongest peer) and
# pyarrow, each on ONE core, same input, runs interleaved in one loop.
# usage: benches/convert_vs_peers.sh [RECORDS=1000000] [RUNS=5]
# SCHEMA=path overrides schemas/events.toml (benches/schemas/events-one-partition.toml
# compares like for like with the peers' single output file); CORE picks the core;
# PEER=partitioned makes the peers write the dt/hr/event_type layout of
# schemas/events.toml instead of one file. BIN=path benchmarks another build.
# Prints medians, MB/s of input, ratios (median of per-run ratios) and peak
# RSS; writes the table to bench-out/convert_vs_peers.md.
set -euo pipefail
cd "$(dirname "$0")/.."
RECORDS=${1:-1000000}
RUNS=${2:-5}
CORE=${CORE:-0}
source benches/setup.sh
BYTES=$(stat -c %s "$INPUT")
cat "$INPUT" > /dev/null   # warm the page cache for all
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
field() { .venv/bin/python -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
lh=(); pa=(); dk=(); lh_rss=0; pa_rss=0; dk_rss=0
err=$(mktemp)
for i in $(seq "$RUNS"); do
  rm -rf "$OUT/lake" "$OUT/pyarrow" "$OUT/duckdb"
  # lakehose: its process's wall time, exec to exit (peak_rss.py times the
  # child); the peers: inside their interpreter (start-up and imports not counted)
  taskset -c "$CORE" .venv/bin/python tests/py/peak_rss.py "$BIN" convert \
        --schema "${SCHEMA:-schemas/events.toml}" --out "$OUT/lake" "$INPUT" 2>"$err" >/dev/null
  lh+=("$(sed -n 's/^elapsed_s=//p' "$err")"); rss=$(sed -n 's/^peak_rss_kib=//p' "$err"); [ "$rss" -gt "$lh_rss" ] && lh_rss=$rss
  r=$(taskset -c "$CORE" .venv/bin/python benches/duckdb_peer.py "$INPUT" "$OUT/duckdb" ${PEER:+"$PEER"})
  dk+=("$(echo "$r" | field seconds)"); rss=$(echo "$r" | field peak_rss_kib); [ "$rss" -gt "$dk_rss" ] && dk_rss=$rss
  r=$(taskset -c "$CORE" .venv/bin/python benches/pyarrow_peer.py "$INPUT" "$OUT/pyarrow" ${PEER:+"$PEER"})
  pa+=("$(echo "$r" | field seconds)"); rss=$(echo "$r" | field peak_rss_kib); [ "$rss" -gt "$pa_rss" ] && pa_rss=$rss
  echo "run $i: lakehose ${lh[-1]}s  duckdb ${dk[-1]}s  pyarrow ${pa[-1]}s" >&2
done
LH=$(printf '%s\n' "${lh[@]}" | median); DK=$(printf '%s\n' "${dk[@]}" | median); PA=$(printf '%s\n' "${pa[@]}" | median)
# each run's three ran back to back, so the median of per-run ratios is
# steadier than the ratio of medians when the machine's speed drifts
ratio() { local -n peer=$1; for i in "${!lh[@]}"; do echo "${peer[$i]} / ${lh[$i]}" | bc -l; done | median; }
RDK=$(ratio dk); RPA=$(ratio pa)
MB=$(echo "$BYTES / 1000000" | bc -l)
{
  echo "| tool (1 core, median of $RUNS) | seconds | MB/s input | peak RSS MiB | lakehose is |"
  echo "|---|---|---|---|---|"
  printf '| lakehose convert | %.2f | %.0f | %.0f | |\n' "$LH" "$(echo "$MB / $LH" | bc -l)" "$(echo "$lh_rss / 1024" | bc -l)"
  printf '| DuckDB read_json + COPY TO parquet%s | %.2f | %.0f | %.0f | %.2fx |\n' "$([ "${PEER:-}" = partitioned ] && echo ' (PARTITION_BY)')" "$DK" "$(echo "$MB / $DK" | bc -l)" "$(echo "$dk_rss / 1024" | bc -l)" "$RDK"
  printf '| pyarrow read_json + %s | %.2f | %.0f | %.0f | %.2fx |\n' "$([ "${PEER:-}" = partitioned ] && echo 'write_dataset' || echo write_table)" "$PA" "$(echo "$MB / $PA" | bc -l)" "$(echo "$pa_rss / 1024" | bc -l)" "$RPA"
  printf '\ninput: %s records, %.0f MB, schema %s; ratios are medians of per-run ratios (peer seconds / lakehose seconds)\n' "$RECORDS" "$MB" "${SCHEMA:-schemas/events.toml}"
} | tee "$OUT/convert_vs_peers.md"
rm -f "$err"
