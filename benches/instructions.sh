#!/usr/bin/env bash
# Instruction count of `lakehose convert` on a file (callgrind): repeatable on
# a noisy machine, unlike seconds. usage: [SCHEMA=toml] benches/instructions.sh FILE [BINARY]
# The default binary is the profiling build (release code with line tables,
# so callgrind_annotate can name source lines).
set -euo pipefail
cd "$(dirname "$0")/.."
FILE=$1; BIN=${2:-target/profiling/lakehose}
[ "$BIN" != target/profiling/lakehose ] || cargo build --profile profiling --quiet
out=$(mktemp -d)
valgrind --tool=callgrind --callgrind-out-file="$out/cg" "$BIN" convert --schema ${SCHEMA:-schemas/events.toml} --out "$out/lake" "$FILE" 2>&1 \
  | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
rm -rf "$out"
