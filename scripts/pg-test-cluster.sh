#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the test suite, on a loopback port.
#
#   scripts/pg-test-cluster.sh start   # prints: export TRANSFER_TEST_PG=postgresql://...
#   scripts/pg-test-cluster.sh stop
#
# Installs PostgreSQL's server from Debian packages when it is missing (as
# root). PostgreSQL refuses to run as root, so when we are root the cluster
# belongs to an unprivileged user (pgtest), created if needed. The cluster
# trades durability for speed (fsync off) unless PGTEST_DURABLE=1: it holds
# test data only.
set -euo pipefail

STATE=${PGTEST_STATE:-/tmp/hocba-pgtest}
PORT=${PGTEST_PORT:-54329}
RUN_AS=${PGTEST_USER:-pgtest}
# Tests trade durability for speed; benchmarks (PGTEST_DURABLE=1) keep it.
if [ "${PGTEST_DURABLE:-0}" = 1 ]; then
  DURABILITY=""
else
  DURABILITY="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
fi

find_bin() {
  local d
  if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
    dirname "$(command -v pg_ctl)"; return 0
  fi
  for d in /usr/lib/postgresql/*/bin; do
    if [ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ]; then echo "$d"; return 0; fi
  done
  return 1
}

as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u "$RUN_AS" -- "$@"
  else
    "$@"
  fi
}

start() {
  local bin
  if ! bin=$(find_bin); then
    if [ "$(id -u)" != 0 ]; then
      echo "PostgreSQL server binaries not found; install the postgresql package" >&2; exit 1
    fi
    echo "installing PostgreSQL server from Debian packages..." >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
    bin=$(find_bin)
  fi
  if [ "$(id -u)" = 0 ] && ! id "$RUN_AS" >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin "$RUN_AS"
  fi
  if [ -f "$STATE/data/postmaster.pid" ]; then
    stop >&2 || true
  fi
  rm -rf "$STATE"
  mkdir -p "$STATE"
  [ "$(id -u)" = 0 ] && chown "$RUN_AS" "$STATE"
  as_owner "$bin/initdb" -D "$STATE/data" -U postgres --auth=trust -E UTF8 --no-locale >"$STATE/initdb.log" 2>&1 \
    || { cat "$STATE/initdb.log" >&2; exit 1; }
  as_owner "$bin/pg_ctl" -D "$STATE/data" -l "$STATE/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $STATE $DURABILITY -c max_connections=300" \
    start >&2 || { cat "$STATE/server.log" >&2; exit 1; }
  echo "$bin" > "$STATE/bin"
  echo "export TRANSFER_TEST_PG=postgresql://postgres@127.0.0.1:$PORT/postgres"
}

stop() {
  [ -d "$STATE/data" ] || return 0
  local bin
  bin=$(cat "$STATE/bin" 2>/dev/null || find_bin)
  as_owner "$bin/pg_ctl" -D "$STATE/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$STATE"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
