#!/usr/bin/env bash
# Writes docker/fed/: a development PKI (`mimi init`) and one configuration per provider for
# the compose federation (a.example, b.example, c.example on 172.28.0.11-13, and the
# conformance suite's side suite.example on 172.28.0.20). Files are owned by the image's
# user (uid 10001); the admin token is in docker/fed/admin-token.
set -euo pipefail
cd "$(dirname "$0")"
MIMI=${MIMI:-../target/debug/mimi}
OUT=fed
rm -rf "$OUT"
"$MIMI" init --domain a.example --domain b.example --domain c.example --domain suite.example --out "$OUT" >/dev/null 2>&1
TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "$TOKEN" >"$OUT/admin-token"
declare -A IP=([a.example]=172.28.0.11 [b.example]=172.28.0.12 [c.example]=172.28.0.13 [suite.example]=172.28.0.20)
for d in a.example b.example c.example suite.example; do
    cp "$OUT/ca.pem" "$OUT/$d/ca.pem"
    {
        cat <<CFG
# The $d gateway in the compose federation (docker/compose.yaml).
domain = "$d"

[listen]
quic = "0.0.0.0:4433"
https = "0.0.0.0:4433"
admin = "127.0.0.1:9090"
client_api = "0.0.0.0:8080"

[tls]
cert = "cert.pem"
key = "key.pem"
ca = "ca.pem"

[storage]
path = "/var/lib/mimi/$d.redb"

[client_api]
# The client API listens on the container network: no open registration; users are
# registered with the admin token (mimi load --token, mimi client register --token).
open_registration = false
admin_token = "$TOKEN"

[log]
level = "warn"
CFG
        for p in a.example b.example c.example suite.example; do
            [[ $p == "$d" ]] && continue
            printf '\n[[peers]]\ndomain = "%s"\nquic = "%s:4433"\nhttps = "%s:4433"\nasset_domains = ["%s"]\n' "$p" "${IP[$p]}" "${IP[$p]}" "$p"
        done
    } >"$OUT/$d/config.toml"
    rm -rf "$OUT/$d/data"
    chown -R 10001:10001 "$OUT/$d"
done
echo "[docker] federation configuration in docker/$OUT" >&2
