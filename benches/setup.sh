# Sourced by the bench scripts (after `cd` to the repo and setting
# RECORDS): the Python venv with pyarrow and DuckDB, the release binary
# (BIN overrides it), and the seeded clickstream input of RECORDS events.
# Sets OUT (bench-out/), BIN and INPUT.
OUT=bench-out
mkdir -p "$OUT"
if ! .venv/bin/python -c "import pyarrow, duckdb" 2>/dev/null; then
  python3 -m venv .venv && .venv/bin/pip install --quiet -r requirements-test.txt
fi
BIN=${BIN:-target/release/lakehose}
[ "$BIN" != target/release/lakehose ] || cargo build --release --quiet
INPUT="$OUT/clickstream-$RECORDS.ndjson"
[ -f "$INPUT" ] || .venv/bin/python scripts/gen_clickstream.py "$INPUT" --records "$RECORDS" --seed 20261121 --hours 24
