#!/usr/bin/env bash
# Real-browser test of MQTT over WebSocket: headless Chromium opens the page of the axum example
# (crates/corvid/examples/axum_websocket.rs); its MQTT.js client subscribes over WebSocket; mosquitto_pub publishes
# over TCP and the page must show the message; the page publishes and mosquitto_sub must receive it.
#
#   bash tests/browser/run.sh
#
# Installs Debian's chromium and mosquitto-clients if missing. Everything listens on 127.0.0.1 and every wait
# is bounded. Ends with "N passed, M failed"; exits non-zero on failure. SCREENSHOT=file.png keeps a screenshot.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
STARTUP_TIMEOUT=60

log() { echo "browser: $*" >&2; }

SUDO=""
if [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/corvid-browser.XXXXXX")
EXAMPLE_PID=""
# shellcheck source=tests/stop_process.sh
source "$ROOT/tests/stop_process.sh"

cleanup() {
    stop_process "$EXAMPLE_PID" 30
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

setup_failed() {
    log "$*"
    if [[ -s $WORK/example.log ]]; then
        echo "----- example log -----"
        tail -n 30 "$WORK/example.log"
    fi
    echo "0 passed, 1 failed"
    exit 1
}

pkgs=()
command -v chromium >/dev/null 2>&1 || pkgs+=(chromium)
command -v mosquitto_pub >/dev/null 2>&1 || pkgs+=(mosquitto-clients)
command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
if ((${#pkgs[@]})); then
    log "installing ${pkgs[*]}"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null ||
        setup_failed "apt-get install ${pkgs[*]} failed"
fi
log "$(chromium --version 2>/dev/null || echo 'chromium: unknown version')"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

log "building the axum_websocket example"
(cd "$ROOT" && cargo build -p corvid --features axum --example axum_websocket) >&2 ||
    setup_failed "cargo build --example axum_websocket failed"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/examples/axum_websocket"
[[ -x $BIN ]] || setup_failed "example binary $BIN not found"

HTTP_PORT=$(free_port)
TCP_PORT=$(free_port)
"$BIN" "127.0.0.1:$HTTP_PORT" "127.0.0.1:$TCP_PORT" >"$WORK/example.log" 2>&1 &
EXAMPLE_PID=$!
deadline=$((SECONDS + STARTUP_TIMEOUT))
for port in "$HTTP_PORT" "$TCP_PORT"; do
    until timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null; do
        kill -0 "$EXAMPLE_PID" 2>/dev/null || setup_failed "the example exited during startup"
        ((SECONDS < deadline)) || setup_failed "the example did not listen on 127.0.0.1:$port within ${STARTUP_TIMEOUT} s"
        sleep 0.1
    done
done
log "example listening: HTTP 127.0.0.1:$HTTP_PORT, MQTT TCP 127.0.0.1:$TCP_PORT"

rc=0
timeout 120 node "$HERE/drive.js" "http://127.0.0.1:$HTTP_PORT/" "$TCP_PORT" "${SCREENSHOT:-}" || rc=$?
if ((rc != 0)); then
    echo "----- example log -----"
    tail -n 30 "$WORK/example.log"
    if ((rc == 124)); then
        echo "0 passed, 1 failed"
    fi
fi
exit "$rc"
