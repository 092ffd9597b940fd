#!/bin/sh
# PostgreSQL as the scale-out profile runs it: a cluster made on first start, loopback only.
set -eu
bin=/usr/lib/postgresql/15/bin
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  case "${ASSAY_DB_PASSWORD:-}" in
    "" | *[!A-Za-z0-9._~-]*)
      echo "assay-postgres: set ASSAY_DB_PASSWORD to letters, digits and ._~- (it goes into URLs)" >&2
      exit 2 ;;
  esac
  "$bin/initdb" -D "$PGDATA" -U postgres -E UTF8 --locale=C.UTF-8 \
    --auth-local=peer --auth-host=scram-sha-256 >/dev/null
  printf "CREATE ROLE assay LOGIN PASSWORD '%s'\nCREATE DATABASE assay OWNER assay\n" \
    "$ASSAY_DB_PASSWORD" \
    | "$bin/postgres" --single -D "$PGDATA" postgres >/dev/null
  echo "assay-postgres: created the cluster in $PGDATA, role and database assay" >&2
fi
exec "$bin/postgres" -D "$PGDATA" -c listen_addresses=127.0.0.1 -c port="$POSTGRES_PORT" \
  -c unix_socket_directories=/tmp
