#!/usr/bin/env bash
# Start a private PostgreSQL for the tests on 127.0.0.1 and print its URL.
#
#   eval "$(bash scripts/start-postgres.sh)"   # exports NEWSLETTER_TEST_PG_URL
#   bash scripts/start-postgres.sh stop
#
# The cluster lives in $NEWSLETTER_PG_DIR (default /tmp/newsletter-pg), owned by the `postgres`
# OS user (initdb refuses to run as root), listening only on 127.0.0.1:$NEWSLETTER_PG_PORT
# (default 54329) with trust authentication for local test use. Starting twice is harmless.
set -euo pipefail
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
DIR=${NEWSLETTER_PG_DIR:-/tmp/newsletter-pg}
PORT=${NEWSLETTER_PG_PORT:-54329}
DB=newsletter_test
URL="postgresql://postgres@127.0.0.1:${PORT}/${DB}"

if [ -z "$PGBIN" ] || [ ! -x "$PGBIN/initdb" ]; then
  echo "PostgreSQL server binaries not found; run: make system-deps" >&2
  exit 1
fi

as_postgres() {
  if [ "$(id -un)" = postgres ]; then "$@"
  elif [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"
  else "$@"   # a non-root user runs the cluster as itself
  fi
}

if [ "${1:-start}" = stop ]; then
  [ -f "$DIR/data/postmaster.pid" ] && as_postgres "$PGBIN/pg_ctl" -D "$DIR/data" -m fast -w stop >&2
  exit 0
fi

mkdir -p "$DIR"
[ "$(id -u)" -eq 0 ] && chown postgres:postgres "$DIR"
if [ ! -f "$DIR/data/PG_VERSION" ]; then
  as_postgres "$PGBIN/initdb" -D "$DIR/data" -U postgres -A trust -E UTF8 --no-locale >/dev/null
fi
if ! as_postgres "$PGBIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; then
  # A server killed with its session leaves its pid file; if that pid is reused by another
  # process, postgres would refuse to start. Nothing is running here, so the file is stale.
  rm -f "$DIR/data/postmaster.pid"
  as_postgres "$PGBIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 30 \
    -o "-h 127.0.0.1 -p $PORT -k $DIR -c fsync=off -c synchronous_commit=off -c max_connections=200" \
    start >&2
fi
if ! as_postgres "$PGBIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname='$DB'" | grep -q 1; then
  as_postgres "$PGBIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres "$DB"
fi
echo "export NEWSLETTER_TEST_PG_URL=$URL"
