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
# zsh and fish run the generated completion scripts (tests/test_completion.py); those tests skip, saying so,
# where a shell is missing (as tests/test_deploy_units.py does without systemd-analyze).
missing=""
for tool in zsh fish; do command -v "$tool" >/dev/null || missing="$missing $tool"; done
if [ -n "$missing" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  { DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing; } >&2 \
    || echo "could not install$missing: their checks will be skipped" >&2
fi
echo "PostgreSQL test cluster: $TRANSFER_TEST_PG"
.venv/bin/pytest --require-postgres "$@"
