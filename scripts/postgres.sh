#!/usr/bin/env bash
# Makes a PostgreSQL server available to the tests and exports its admin URL as
# BROKERGATE_TEST_POSTGRES_URL. Sourced by .ci/run (and by anyone who wants the PostgreSQL
# tests on a machine without a server):
#
#   source scripts/postgres.sh
#
# 1. BROKERGATE_TEST_POSTGRES_URL already set, or a server at 127.0.0.1:5432 with trust auth
#    for `postgres`: that one is used.
# 2. Otherwise Debian's `postgresql` package is installed when missing, a throwaway cluster is
#    made with initdb in a temp dir (owned by the `postgres` user: initdb refuses root) and
#    started on 127.0.0.1:55432; it is stopped and removed when the sourcing shell exits.
# Each test makes its own database on that server and drops it.

bg_pg_default_url="postgres://postgres@127.0.0.1:5432/postgres"

bg_pg_reachable() { # $1: host, $2: port
  pg_isready -q -h "$1" -p "$2" -U postgres -t 3 >/dev/null 2>&1 &&
    psql -h "$1" -p "$2" -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1
}

bg_pg_bin() { # the newest installed server's bin directory
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1
}

bg_pg_start_own() {
  local sudo="" bin dir
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if [ -z "$(bg_pg_bin)" ]; then
    echo "scripts/postgres.sh: installing postgresql (no server found)" >&2
    $sudo apt-get update -qq
    # RUNLEVEL=1: install without starting the package's own cluster.
    RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null
  fi
  bin="$(bg_pg_bin)"
  [ -n "$bin" ] || { echo "scripts/postgres.sh: no PostgreSQL server binaries" >&2; return 1; }
  dir="$(mktemp -d /tmp/brokergate-pg.XXXXXX)"
  chmod 755 "$dir"
  local as=()
  [ "$(id -u)" -eq 0 ] && { chown postgres: "$dir"; as=(runuser -u postgres --); }
  "${as[@]}" "$bin/initdb" -A trust -U postgres -D "$dir/data" >/dev/null
  "${as[@]}" "$bin/pg_ctl" -s -w -t 30 -D "$dir/data" -l "$dir/log" \
    -o "-c listen_addresses=127.0.0.1 -p 55432 -k $dir -c max_connections=300 -c fsync=off" start
  BG_PG_OWN_DIR="$dir"
  BG_PG_OWN_STOP="${as[*]} $bin/pg_ctl -s -D $dir/data -m immediate stop"
  trap 'eval "$BG_PG_OWN_STOP" || true; rm -rf "$BG_PG_OWN_DIR"' EXIT
  BROKERGATE_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:55432/postgres"
}

if [ -z "${BROKERGATE_TEST_POSTGRES_URL:-}" ]; then
  command -v pg_isready >/dev/null 2>&1 || bg_pg_start_own
  if [ -z "${BROKERGATE_TEST_POSTGRES_URL:-}" ]; then
    if bg_pg_reachable 127.0.0.1 5432; then
      BROKERGATE_TEST_POSTGRES_URL="$bg_pg_default_url"
    else
      bg_pg_start_own
    fi
  fi
fi
export BROKERGATE_TEST_POSTGRES_URL
echo "scripts/postgres.sh: tests use ${BROKERGATE_TEST_POSTGRES_URL}" >&2
