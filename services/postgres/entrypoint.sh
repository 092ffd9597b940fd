#!/bin/sh
# PostgreSQL as the scale-out profile runs it: a cluster made on first start, the password of
# role assay set from ASSAY_DB_PASSWORD on every start, loopback only.
set -eu
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
case "${ASSAY_DB_PASSWORD:-}" in
  "" | *[!A-Za-z0-9._~-]*)
    echo "assay-postgres: set ASSAY_DB_PASSWORD to letters, digits and ._~- (it goes into URLs)" >&2
    exit 2 ;;
esac

single() {  # SQL on standard input, in single-user mode; fails on any ERROR
  out=$("$bin/postgres" --single -D "$1" postgres 2>&1) || { echo "$out" >&2; exit 1; }
  if printf '%s\n' "$out" | grep -q 'ERROR:'; then echo "$out" >&2; exit 1; fi
}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  # Made aside and moved into place once complete: an interrupted first start starts over.
  rm -rf "$PGDATA.new"
  "$bin/initdb" -D "$PGDATA.new" -U postgres -E UTF8 --locale=C.UTF-8 \
    --auth-local=peer --auth-host=scram-sha-256 >/dev/null
  printf "CREATE ROLE assay LOGIN\nCREATE DATABASE assay OWNER assay\n" | single "$PGDATA.new"
  mv "$PGDATA.new" "$PGDATA"
  echo "assay-postgres: created the cluster in $PGDATA, role and database assay" >&2
fi
printf "ALTER ROLE assay PASSWORD '%s'\n" "$ASSAY_DB_PASSWORD" | single "$PGDATA"
exec "$bin/postgres" -D "$PGDATA" -c listen_addresses=127.0.0.1 -c port="$POSTGRES_PORT" \
  -c unix_socket_directories=/tmp
