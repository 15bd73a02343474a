#!/usr/bin/env bash
# Real third-party peers on loopback for the bridge end-to-end tests: Synapse (PyPI
# matrix-synapse) with the gateway's application service registered, Prosody (Debian) with a
# component for the gateway and a MUC, and a Python venv with the test clients (matrix-nio,
# slixmpp). Idempotent; nothing listens outside 127.0.0.1.
#
#   scripts/peers.sh install | start | stop | status | env
#
# Ports and secrets are test values, overridable through the environment (printed by `env`).
set -euo pipefail
cd "$(dirname "$0")/.."

PEERS_DIR=${PEERS_DIR:-$PWD/target/peers}
HS_PORT=${MIMI_PEERS_HS_PORT:-18008}
AS_PORT=${MIMI_PEERS_AS_PORT:-19009}
C2S_PORT=${MIMI_PEERS_C2S_PORT:-15222}
COMP_PORT=${MIMI_PEERS_COMP_PORT:-15347}
AS_TOKEN=as_token_mimi_test_0123456789
HS_TOKEN=hs_token_mimi_test_0123456789
COMP_SECRET=mimi_component_secret
SYNAPSE_VERSION=1.163.2
TOOLS="matrix-nio==0.26.0 slixmpp==1.17.0"

log() { printf '[peers] %s\n' "$*" >&2; }

wait_port() { # host port seconds
    local deadline=$((SECONDS + $3))
    until (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; do
        ((SECONDS < deadline)) || { log "port $1:$2 not open after $3 s"; return 1; }
        sleep 0.1
    done
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

install() {
    mkdir -p "$PEERS_DIR"
    if ! command -v prosody >/dev/null; then
        log "installing prosody (Debian)"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prosody >/dev/null
    fi
    local venv=$PEERS_DIR/venv-synapse
    if [[ "$(cat "$venv/.stamp" 2>/dev/null)" != "$SYNAPSE_VERSION" ]]; then
        log "installing matrix-synapse $SYNAPSE_VERSION (PyPI)"
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q "matrix-synapse==$SYNAPSE_VERSION"
        echo "$SYNAPSE_VERSION" >"$venv/.stamp"
    fi
    venv=$PEERS_DIR/venv-tools
    if [[ "$(cat "$venv/.stamp" 2>/dev/null)" != "$TOOLS" ]]; then
        log "installing the test clients: $TOOLS (PyPI)"
        rm -rf "$venv"
        python3 -m venv "$venv"
        # shellcheck disable=SC2086
        "$venv/bin/pip" install -q $TOOLS
        echo "$TOOLS" >"$venv/.stamp"
    fi
}

configure() {
    local s=$PEERS_DIR/synapse p=$PEERS_DIR/prosody
    mkdir -p "$s/data" "$p/data" "$p/certs"
    cat >"$s/homeserver.yaml" <<EOF
# Synapse for loopback interop tests (NOT for production).
server_name: "matrix.test"
public_baseurl: "http://127.0.0.1:$HS_PORT/"
pid_file: "$s/data/homeserver.pid"
listeners:
  - port: $HS_PORT
    bind_addresses: ["127.0.0.1"]
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client]
        compress: false
database:
  name: sqlite3
  args:
    database: "$s/data/homeserver.db"
log_config: "$s/log.config"
media_store_path: "$s/data/media_store"
signing_key_path: "$s/data/matrix.test.signing.key"
report_stats: false
macaroon_secret_key: "test_macaroon_secret_not_secret"
form_secret: "test_form_secret_not_secret"
registration_shared_secret: "test_registration_shared_secret"
enable_registration: true
enable_registration_without_verification: true
bcrypt_rounds: 4
federation_domain_whitelist: []
trusted_key_servers: []
suppress_key_server_warning: true
presence:
  enabled: false
url_preview_enabled: false
app_service_config_files:
  - "$s/appservice-mimi.yaml"
rc_message: {per_second: 1000, burst_count: 1000}
rc_registration: {per_second: 1000, burst_count: 1000}
rc_login:
  address: {per_second: 1000, burst_count: 1000}
  account: {per_second: 1000, burst_count: 1000}
  failed_attempts: {per_second: 1000, burst_count: 1000}
rc_joins:
  local: {per_second: 1000, burst_count: 1000}
  remote: {per_second: 1000, burst_count: 1000}
rc_invites:
  per_room: {per_second: 1000, burst_count: 1000}
  per_user: {per_second: 1000, burst_count: 1000}
  per_issuer: {per_second: 1000, burst_count: 1000}
rc_room_creation: {per_second: 1000, burst_count: 1000}
rc_admin_redaction: {per_second: 1000, burst_count: 1000}
EOF
    cat >"$s/log.config" <<EOF
version: 1
formatters:
  precise:
    format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(message)s'
handlers:
  file:
    class: logging.FileHandler
    formatter: precise
    filename: $s/data/homeserver.log
    encoding: utf8
root:
  level: WARNING
  handlers: [file]
disable_existing_loggers: false
EOF
    # The same registration `mimi bridge matrix registration` prints for the test gateway.
    cat >"$s/appservice-mimi.yaml" <<EOF
id: mimi-gateway
url: "http://127.0.0.1:$AS_PORT"
as_token: "$AS_TOKEN"
hs_token: "$HS_TOKEN"
sender_localpart: mimi_bot
rate_limited: false
receive_ephemeral: true
de.sorunome.msc2409.push_ephemeral: true
namespaces:
  users:
    - exclusive: true
      regex: '@mimi_.*:matrix\\.test'
  aliases:
    - exclusive: true
      regex: '#mimi_.*:matrix\\.test'
  rooms: []
EOF
    cat >"$p/prosody.cfg.lua" <<EOF
-- Prosody for loopback interop tests (NOT for production).
run_as_root = true
pidfile = "$p/prosody.pid"
data_path = "$p/data"
log = { warn = "$p/prosody.log" }
admins = { }
interfaces = { "127.0.0.1" }
c2s_ports = { $C2S_PORT }
c2s_direct_tls_ports = { }
component_interfaces = { "127.0.0.1" }
component_ports = { $COMP_PORT }
certificates = "$p/certs"
modules_enabled = { "disco"; "roster"; "saslauth"; "ping"; "posix"; }
modules_disabled = { "s2s" }
authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
limits = { }
VirtualHost "xmpp.test"
Component "mimi.xmpp.test"
  component_secret = "$COMP_SECRET"
Component "conference.xmpp.test" "muc"
  modules_enabled = { "muc_mam" }   -- XEP-0359 stanza-ids in groupchat (what replies and reactions reference)
  restrict_room_creation = false
  muc_room_locking = false
  muc_room_default_public = true
  muc_room_default_persistent = false
EOF
}

alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

start() {
    install
    configure
    local s=$PEERS_DIR/synapse p=$PEERS_DIR/prosody
    if alive "$s/data/homeserver.pid"; then
        log "synapse already running"
    else
        port_free "$HS_PORT" || { log "port $HS_PORT is taken by something else"; exit 1; }
        "$PEERS_DIR/venv-synapse/bin/python" -m synapse.app.homeserver -c "$s/homeserver.yaml" --generate-keys >/dev/null
        "$PEERS_DIR/venv-synapse/bin/python" -m synapse.app.homeserver -c "$s/homeserver.yaml" --daemonize
        local deadline=$((SECONDS + 60))
        until curl -sf "http://127.0.0.1:$HS_PORT/health" >/dev/null; do
            ((SECONDS < deadline)) || { log "synapse not healthy; see $s/data/homeserver.log"; exit 1; }
            sleep 0.1
        done
        log "synapse ready on 127.0.0.1:$HS_PORT"
    fi
    if alive "$p/prosody.pid"; then
        log "prosody already running"
    else
        port_free "$C2S_PORT" || { log "port $C2S_PORT is taken by something else"; exit 1; }
        prosody --config "$p/prosody.cfg.lua" -F >"$p/prosody.out" 2>&1 &
        echo $! >"$p/prosody.pid"
        wait_port 127.0.0.1 "$C2S_PORT" 30
        wait_port 127.0.0.1 "$COMP_PORT" 30
        log "prosody ready on 127.0.0.1:$C2S_PORT (component port $COMP_PORT)"
    fi
    for u in dave erin frank; do
        prosodyctl --config "$p/prosody.cfg.lua" register "$u" xmpp.test "${u}pw" >/dev/null 2>&1
    done
}

stop_pid() { # pidfile name
    alive "$1" || { rm -f "$1"; return 0; }
    local pid; pid=$(cat "$1")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$1"
    log "$2 stopped"
}

stop() {
    stop_pid "$PEERS_DIR/synapse/data/homeserver.pid" synapse
    stop_pid "$PEERS_DIR/prosody/prosody.pid" prosody
}

status() {
    for f in "$PEERS_DIR/synapse/data/homeserver.pid:synapse" "$PEERS_DIR/prosody/prosody.pid:prosody"; do
        if alive "${f%%:*}"; then echo "${f##*:} up"; else echo "${f##*:} down"; fi
    done
}

env_() {
    cat <<EOF
export MIMI_PEERS_DIR=$PEERS_DIR
export MIMI_PEERS_HS_PORT=$HS_PORT
export MIMI_PEERS_AS_PORT=$AS_PORT
export MIMI_PEERS_C2S_PORT=$C2S_PORT
export MIMI_PEERS_COMP_PORT=$COMP_PORT
export MIMI_PEERS_PYTHON=$PEERS_DIR/venv-tools/bin/python
EOF
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    status) status ;;
    env) env_ ;;
    *) echo "usage: $0 install|start|stop|status|env" >&2; exit 2 ;;
esac
