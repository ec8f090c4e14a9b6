#!/usr/bin/env bash
# The standard benchmark set (`make bench`): starts a throwaway PostgreSQL
# cluster with durability on (fsync, synchronous commit), runs bench.run, and
# stops the cluster whatever happened. Extra arguments go to bench.run.
set -euo pipefail
cd "$(dirname "$0")/.."

export PGTEST_STATE=${PGTEST_STATE:-/tmp/hocba-pgbench} PGTEST_PORT=${PGTEST_PORT:-54339} PGTEST_DURABLE=1
eval "$(scripts/pg-test-cluster.sh start)"
trap 'scripts/pg-test-cluster.sh stop' EXIT
export TRANSFER_BENCH_PG=$TRANSFER_TEST_PG
unset TRANSFER_TEST_PG
echo "PostgreSQL benchmark cluster: $TRANSFER_BENCH_PG"
.venv/bin/python -m bench.run "$@"
