#!/usr/bin/env bash
# Makes sure PostgreSQL's server binaries (initdb, pg_ctl, postgres) are
# installed, from Debian's `postgresql` package, for the SQL tests and
# benchmarks, and Debian's `openssl` (tests/sql_tls.rs makes its
# certificates with it). Idempotent: does nothing when /usr/lib/postgresql/*/bin
# has them and openssl is there. Prints the bin directory. Needs root (or
# sudo) only to install.
set -euo pipefail

find_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    if [[ -x "$d/initdb" && -x "$d/pg_ctl" && -x "$d/postgres" ]]; then
      echo "$d"
      return 0
    fi
  done
  return 1
}

if bin="$(find_bin)" && command -v openssl >/dev/null; then
  echo "$bin"
  exit 0
fi

echo "postgres.sh: installing Debian's postgresql package" >&2
sudo=""
if [[ "$(id -u)" != 0 ]]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >&2
$sudo apt-get install -y -qq --no-install-recommends postgresql openssl >&2
# Debian's package creates and starts a cluster; the tests start their own.
if command -v pg_lsclusters >/dev/null; then
  pg_lsclusters -h 2>/dev/null | while read -r ver name _; do
    $sudo pg_ctlcluster "$ver" "$name" stop >&2 || true
  done
fi
find_bin || { echo "postgres.sh: initdb not found after installing postgresql" >&2; exit 1; }
