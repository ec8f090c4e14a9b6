#!/usr/bin/env bash
# Run the SQLite test suite with the machine's wall clock moved, so a test
# that depends on today's date fails now rather than on some later day.
#
#   scripts/test-shifted.sh DAYS [pytest args...]        # the clock DAYS days ahead (may be negative)
#   SHIFT_TO=2028-02-29T09:00:00Z scripts/test-shifted.sh 0 [...]   # the clock at that instant
#
# The shift comes from tests/clockshift/clockshift.c, an LD_PRELOAD library
# built here that moves only reads of the wall clock (not sleeps or timed
# waits), for pytest and every process it starts: node processes, the CLI,
# the TLS library's certificate checks. The whole SQLite suite runs under it;
# PostgreSQL's server keeps the real clock, so its cases are not part of
# this run (the suite's PostgreSQL cases take their instants from the test's
# clock, not the server's).
set -euo pipefail
cd "$(dirname "$0")/.."

days=${1:?usage: scripts/test-shifted.sh DAYS [pytest args...]}
shift
if ! command -v cc >/dev/null 2>&1 || [ ! -e /usr/include/dlfcn.h ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "a C compiler and libc headers are needed (Debian: gcc libc6-dev)" >&2; exit 1
  fi
  echo "installing gcc and libc6-dev from Debian packages..." >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libc6-dev >&2
fi
lib=.venv/clockshift.so
if [ ! -e "$lib" ] || [ tests/clockshift/clockshift.c -nt "$lib" ]; then
  cc -shared -fPIC -O2 -Wall -Werror -o "$lib" tests/clockshift/clockshift.c -ldl
fi

now=$(date +%s)
if [ -n "${SHIFT_TO:-}" ]; then
  target=$(date -d "$SHIFT_TO" +%s)
else
  target=$((now + days * 86400))
fi
export CLOCKSHIFT_SECONDS=$((target - now))
export LD_PRELOAD="$PWD/$lib${LD_PRELOAD:+:$LD_PRELOAD}"
echo "shifted test run: the wall clock reads $(date -u +%Y-%m-%dT%H:%M:%SZ) (real: $(env -u LD_PRELOAD date -u +%Y-%m-%dT%H:%M:%SZ))"
if [ "$(date +%s)" -lt $((target - 5)) ] || [ "$(date +%s)" -gt $((target + 60)) ]; then
  echo "the clock shift did not take effect" >&2; exit 1
fi
exec .venv/bin/pytest -p no:cacheprovider -k "not postgresql" "$@"
