#!/usr/bin/env bash
# Benchmark: `lakehose convert` against pyarrow on ONE core, same input, same run.
# usage: benches/convert_vs_pyarrow.sh [RECORDS=1000000] [RUNS=5]
# SCHEMA=path overrides schemas/events.toml (e.g. a one-partition variant for a
# like-for-like comparison with pyarrow's single output file); CORE picks the core;
# PEER=partitioned makes pyarrow write the same dt/hr/event_type layout as
# schemas/events.toml (write_dataset) instead of one file (write_table).
# Prints the median seconds of each, MB/s of input per core, the ratio, and
# peak RSS; writes the table to bench-out/convert_vs_pyarrow.md.
set -euo pipefail
cd "$(dirname "$0")/.."
RECORDS=${1:-1000000}
RUNS=${2:-5}
CORE=${CORE:-0}
OUT=bench-out
mkdir -p "$OUT"
if ! .venv/bin/python -c "import pyarrow" 2>/dev/null; then
  python3 -m venv .venv && .venv/bin/pip install --quiet -r requirements-test.txt
fi
BIN=${BIN:-target/release/lakehose}   # BIN=path benchmarks another build
[ "$BIN" != target/release/lakehose ] || cargo build --release --quiet
INPUT="$OUT/clickstream-$RECORDS.ndjson"
[ -f "$INPUT" ] || .venv/bin/python scripts/gen_clickstream.py "$INPUT" --records "$RECORDS" --seed 20261121 --hours 24
BYTES=$(stat -c %s "$INPUT")
cat "$INPUT" > /dev/null   # warm the page cache for both
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
lh=(); pa=(); lhw=(); paw=(); lh_rss=0; pa_rss=0
err=$(mktemp)
for i in $(seq "$RUNS"); do
  rm -rf "$OUT/lake" "$OUT/pyarrow"
  # lakehose: its process's wall time, exec to exit (peak_rss.py times the
  # child, not its own interpreter's start-up); pyarrow: read_json +
  # write_table inside its interpreter (start-up and imports not counted)
  taskset -c "$CORE" .venv/bin/python tests/py/peak_rss.py "$BIN" convert \
        --schema "${SCHEMA:-schemas/events.toml}" --out "$OUT/lake" "$INPUT" 2>"$err" >/dev/null
  rss=$(sed -n 's/^peak_rss_kib=//p' "$err")
  lhw+=("$(sed -n 's/.*encoding files took \([0-9.]*\)s.*/\1/p' "$err")")
  lh+=("$(sed -n 's/^elapsed_s=//p' "$err")"); [ "$rss" -gt "$lh_rss" ] && lh_rss=$rss
  r=$(taskset -c "$CORE" .venv/bin/python benches/pyarrow_peer.py "$INPUT" "$OUT/pyarrow" ${PEER:+"$PEER"})
  pa+=("$(echo "$r" | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["seconds"])')")
  paw+=("$(echo "$r" | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["write_seconds"])')")
  prss=$(echo "$r" | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["peak_rss_kib"])'); [ "$prss" -gt "$pa_rss" ] && pa_rss=$prss
  echo "run $i: lakehose ${lh[-1]}s  pyarrow ${pa[-1]}s" >&2
done
LH=$(printf '%s\n' "${lh[@]}" | median); PA=$(printf '%s\n' "${pa[@]}" | median)
# each run pair ran back to back, so the median of per-pair ratios is steadier
# than the ratio of medians when the machine's speed drifts between runs
RATIOS=$(for i in "${!lh[@]}"; do echo "${pa[$i]} / ${lh[$i]}" | bc -l; done | median)
LHW=$(printf '%s\n' "${lhw[@]}" | median); PAW=$(printf '%s\n' "${paw[@]}" | median)
MB=$(echo "$BYTES / 1000000" | bc -l)
{
  echo "| tool (1 core, median of $RUNS) | seconds | of which writing files | MB/s input | peak RSS MiB |"
  echo "|---|---|---|---|---|"
  printf '| lakehose convert | %.2f | %.2f | %.0f | %.0f |\n' "$LH" "$LHW" "$(echo "$MB / $LH" | bc -l)" "$(echo "$lh_rss / 1024" | bc -l)"
  printf "| pyarrow read_json + %s | %.2f | %.2f | %.0f | %.0f |\n" "$([ "${PEER:-}" = partitioned ] && echo 'write_dataset (same partitions)' || echo write_table)" "$PA" "$PAW" "$(echo "$MB / $PA" | bc -l)" "$(echo "$pa_rss / 1024" | bc -l)"
  printf '\ninput: %s records, %.0f MB, schema %s; lakehose is %.2fx pyarrow (ratio of medians), %.2fx (median of per-run ratios)\n' "$RECORDS" "$MB" "${SCHEMA:-schemas/events.toml}" "$(echo "$PA / $LH" | bc -l)" "$RATIOS"
} | tee "$OUT/convert_vs_pyarrow.md"
rm -f "$err"
