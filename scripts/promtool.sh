#!/usr/bin/env bash
# Print the path of a promtool binary, fetching one if none is installed.
#
# promtool checks deploy/prometheus/alerts.yml (its rules and unit tests) and
# the dashboard's queries (tests/test_metrics.py). It ships in Debian's
# `prometheus` package; rather than install the whole server, the package is
# downloaded and only its promtool kept, under .venv/promtool/.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v promtool >/dev/null 2>&1; then
  command -v promtool
  exit 0
fi
kept=.venv/promtool/usr/bin/promtool
if [ -x "$kept" ]; then
  echo "$PWD/$kept"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if ! (cd "$work" && apt-get download prometheus >/dev/null 2>&1); then
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  (cd "$work" && apt-get download prometheus >&2)
fi
mkdir -p .venv/promtool
dpkg-deb --fsys-tarfile "$work"/prometheus_*.deb | tar -x -C .venv/promtool ./usr/bin/promtool
"$kept" --version >/dev/null
echo "$PWD/$kept"
