#!/usr/bin/env bash
# Writes docker/cluster-fed/: a development PKI (`mimi init`) and the configurations of the
# cluster compose file (docker/cluster.yaml): a.example as three nodes a1-a3 on one
# PostgreSQL (172.29.0.5), and b.example, a single gateway whose peer entry lists every node
# of a.example. Files are owned by the image's user (uid 10001); the admin token is in
# docker/cluster-fed/admin-token.
set -euo pipefail
cd "$(dirname "$0")"
MIMI=${MIMI:-../target/debug/mimi}
OUT=cluster-fed
FAILOVER_MS=${MIMI_FAILOVER_MS:-6000}
rm -rf "$OUT"
"$MIMI" init --domain a.example --domain b.example --out "$OUT" >/dev/null 2>&1
TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "$TOKEN" >"$OUT/admin-token"
common() { # domain
    cat <<CFG
domain = "$1"

[listen]
quic = "0.0.0.0:4433"
https = "0.0.0.0:4433"
admin = "127.0.0.1:9090"
client_api = "0.0.0.0:8080"

[tls]
cert = "cert.pem"
key = "key.pem"
ca = "ca.pem"

[client_api]
open_registration = false
admin_token = "$TOKEN"

[log]
level = "warn"
CFG
}
for n in 1 2 3; do
    d=$OUT/a$n
    mkdir -p "$d"
    cp "$OUT/ca.pem" "$OUT/a.example/cert.pem" "$OUT/a.example/key.pem" "$d/"
    {
        echo "# Node a$n of a.example in the cluster compose file (docker/cluster.yaml)."
        common a.example
        cat <<CFG

[storage]
backend = "postgres"
url = "postgres://postgres@172.29.0.5:5432/mimi"
# Asset files: a volume shared by every node.
path = "/var/lib/mimi/a.example"

[cluster]
node = "a$n"
advertise_https = "172.29.0.1$n:4433"
advertise_quic = "172.29.0.1$n:4433"
failover_ms = $FAILOVER_MS

[[peers]]
domain = "b.example"
quic = "172.29.0.21:4433"
https = "172.29.0.21:4433"
asset_domains = ["b.example"]
CFG
    } >"$d/config.toml"
done
d=$OUT/b
mkdir -p "$d"
cp "$OUT/ca.pem" "$OUT/b.example/cert.pem" "$OUT/b.example/key.pem" "$d/"
{
    echo "# b.example in the cluster compose file: it reaches a.example at any of its nodes."
    common b.example
    cat <<CFG

[storage]
path = "/var/lib/mimi/b.example.redb"

[[peers]]
domain = "a.example"
quic = "172.29.0.11:4433"
https = "172.29.0.11:4433"
asset_domains = ["a.example"]
addresses = [
    { quic = "172.29.0.12:4433", https = "172.29.0.12:4433" },
    { quic = "172.29.0.13:4433", https = "172.29.0.13:4433" },
]
CFG
} >"$d/config.toml"
rm -rf "$OUT/a.example" "$OUT/b.example"
chown -R 10001:10001 "$OUT"
echo "[docker] cluster configuration in docker/$OUT" >&2
