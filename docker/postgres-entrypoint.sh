#!/bin/sh
# Initializes the data directory on first start (database `mimi`), then runs PostgreSQL in
# the foreground. MIMI_PG_NET: the network allowed in (trust authentication; development).
set -eu
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
DATA=/var/lib/postgresql/data
if [ ! -f "$DATA/PG_VERSION" ]; then
    "$BIN/initdb" -D "$DATA" -A trust -U postgres >/dev/null
    echo "host all all ${MIMI_PG_NET:-172.29.0.0/24} trust" >>"$DATA/pg_hba.conf"
    "$BIN/pg_ctl" -D "$DATA" -w -o "-c listen_addresses=127.0.0.1" start >/dev/null
    "$BIN/createdb" -h 127.0.0.1 mimi
    "$BIN/pg_ctl" -D "$DATA" -w stop >/dev/null
fi
exec "$BIN/postgres" -D "$DATA" -c listen_addresses='*' -c max_connections=200
