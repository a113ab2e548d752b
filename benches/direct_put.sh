#!/usr/bin/env bash
# Benchmark: durable Firehose Direct PUT into the front door, on loopback.
# CLIENTS (16) clients send PutRecordBatch calls of 500 records of ~1 KB as
# fast as they are answered, for SECONDS (10); each answer comes after the
# records are fsynced in the write-ahead log (group commit), while the same
# process converts the log to Parquet. The same clients then run against a
# minimal non-durable sink (reads the body, answers at once): the ceiling.
# Runs interleave; prints medians of records/s and latency percentiles.
# usage: benches/direct_put.sh [RUNS=3] [SECONDS=10] [CLIENTS=16]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}; SECONDS_=${2:-10}; CLIENTS=${3:-16}
cargo build --release --quiet
cargo build --release --quiet --example direct_put_load
LOAD=target/release/examples/direct_put_load
OUT=bench-out; mkdir -p "$OUT"
port() { .venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
field() { .venv/bin/python -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
dr=(); dp50=(); dp99=(); sr=(); sp50=(); sp99=(); rss=()
for i in $(seq "$RUNS"); do
  dir=$(mktemp -d); p=$(port)
  sed -e "s|listen = \"127.0.0.1:4573\"|listen = \"127.0.0.1:$p\"|" -e "s|schema = \"../schemas/events.toml\"|schema = \"$PWD/schemas/events.toml\"|" -e "s|^dir = \"wal\"|dir = \"wal\"\nmax_log_size = \"${LOG_SIZE:-4GiB}\"|" examples/direct-put.toml > "$dir/door.toml"
  .venv/bin/python tests/py/peak_rss.py target/release/lakehose run --config "$dir/door.toml" 2> "$dir/stderr" &
  wrapper=$!
  wait_port "$p"
  r=$("$LOAD" --endpoint "http://127.0.0.1:$p/" --clients "$CLIENTS" --seconds "$SECONDS_")
  pkill -TERM -f "^target/release/lakehose run --config $dir/door.toml" || true; wait $wrapper || true
  dr+=("$(echo "$r" | field records_per_s)"); dp50+=("$(echo "$r" | field p50_ms)"); dp99+=("$(echo "$r" | field p99_ms)")
  rss+=("$(sed -n 's/^peak_rss_kib=//p' "$dir/stderr")")
  rows=$(grep -o '[0-9]* rows written' "$dir/stderr" | tail -1 || true)
  echo "run $i: durable $(echo "$r" | field records_per_s | cut -d. -f1) records/s (p50 $(echo "$r" | field p50_ms) ms, p99 $(echo "$r" | field p99_ms) ms, failed $(echo "$r" | field failed)); $rows" >&2
  rm -rf "$dir"
  s=$(port); "$LOAD" --sink "$s" & sink=$!
  wait_port "$s"
  r=$("$LOAD" --endpoint "http://127.0.0.1:$s/" --clients "$CLIENTS" --seconds "$SECONDS_")
  kill $sink; wait $sink 2>/dev/null || true
  sr+=("$(echo "$r" | field records_per_s)"); sp50+=("$(echo "$r" | field p50_ms)"); sp99+=("$(echo "$r" | field p99_ms)")
  echo "run $i: sink $(echo "$r" | field records_per_s | cut -d. -f1) records/s" >&2
done
m() { printf '%s\n' "$@" | median; }
{
  echo "| endpoint ($CLIENTS clients, batches of 500 x 1 KB, median of $RUNS x ${SECONDS_}s) | records/s | p50 ms | p99 ms | peak RSS MiB |"
  echo "|---|---|---|---|---|"
  printf '| lakehose front door, durable (fsync group commit), converting meanwhile | %.0f | %.1f | %.1f | %.0f |\n' "$(m "${dr[@]}")" "$(m "${dp50[@]}")" "$(m "${dp99[@]}")" "$(echo "$(m "${rss[@]}") / 1024" | bc -l)"
  printf '| minimal non-durable sink (the ceiling) | %.0f | %.1f | %.1f | |\n' "$(m "${sr[@]}")" "$(m "${sp50[@]}")" "$(m "${sp99[@]}")"
} | tee "$OUT/direct_put.md"
