#!/bin/sh
# Redis as the scale-out profile runs it: loopback (and a socket in /tmp for the healthcheck),
# a password, no persistence.
set -eu
case "${ASSAY_REDIS_PASSWORD:-}" in
  "" | *[!A-Za-z0-9._~-]*)
    echo "assay-redis: set ASSAY_REDIS_PASSWORD to letters, digits and ._~- (it goes into URLs)" >&2
    exit 2 ;;
esac
exec redis-server - --bind 127.0.0.1 --port "$REDIS_PORT" --protected-mode yes \
  --unixsocket /tmp/redis.sock --unixsocketperm 700 --save '' --appendonly no <<CONF
requirepass $ASSAY_REDIS_PASSWORD
CONF
