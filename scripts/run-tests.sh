#!/usr/bin/env bash
# Run the whole test suite on SQLite and PostgreSQL.
#
# Starts a throwaway PostgreSQL cluster on a loopback port (installing the
# server from Debian packages if needed), runs pytest with every
# database-backed test on both engines, and stops the cluster at the end,
# whatever happened.
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(scripts/pg-test-cluster.sh start)"
trap 'scripts/pg-test-cluster.sh stop' EXIT
export TRANSFER_TEST_PG
# promtool checks the shipped alert rules and dashboard (tests/test_metrics.py); they skip without it.
if [ -z "${PROMTOOL:-}" ]; then
  PROMTOOL=$(scripts/promtool.sh) || { echo "promtool unavailable: its checks will be skipped" >&2; PROMTOOL=""; }
fi
export PROMTOOL
echo "PostgreSQL test cluster: $TRANSFER_TEST_PG"
.venv/bin/pytest --require-postgres "$@"
