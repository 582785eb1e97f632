#!/usr/bin/env bash
# Third-party client interoperability suite for the Corvid MQTT broker.
#
#   bash tests/interop/run.sh                           # build and test Corvid
#   INTEROP_BROKER=mosquitto bash tests/interop/run.sh  # validate the suite against Mosquitto
#
# Optional: CORVID_BIN=/path/to/corvid skips the cargo build and uses that binary.
# The broker listens on 127.0.0.1 only, on a free port; all traffic stays local.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BROKER=${INTEROP_BROKER:-corvid}
export INTEROP_BROKER=$BROKER
STARTUP_TIMEOUT=30
PYTEST_TIMEOUT=150

log() { echo "interop: $*" >&2; }

SUDO=""
if [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
fi

mosquitto_bin() {
    command -v mosquitto 2>/dev/null || { [[ -x /usr/sbin/mosquitto ]] && echo /usr/sbin/mosquitto; }
}

ensure_tools() {
    local pkgs=()
    if ! command -v mosquitto_pub >/dev/null 2>&1 || ! command -v mosquitto_sub >/dev/null 2>&1 ||
        ! mosquitto_bin >/dev/null; then
        pkgs+=(mosquitto-clients mosquitto)
    fi
    command -v pgrep >/dev/null 2>&1 || pkgs+=(procps)
    if ((${#pkgs[@]})); then
        log "installing ${pkgs[*]}"
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
    fi
    local check='import sys, paho.mqtt, pytest; sys.exit(not paho.mqtt.__version__.startswith("2."))'
    if ! python3 -c "$check" 2>/dev/null; then
        log "installing Python packages from requirements.txt"
        export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
        python3 -m pip install -q -r "$HERE/requirements.txt" ||
            python3 -m pip install -q --break-system-packages -r "$HERE/requirements.txt"
        python3 -c "$check"
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/corvid-interop.XXXXXX")
BROKER_PID=""
BROKER_LOG="$WORK/broker.log"

# shellcheck source=tests/stop_process.sh
source "$ROOT/tests/stop_process.sh"

cleanup() {
    stop_process "$BROKER_PID"
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

show_broker_log() {
    if [[ -s $BROKER_LOG ]]; then
        echo "----- last lines of the $BROKER broker log -----"
        tail -n 40 "$BROKER_LOG"
        echo "-----"
    fi
}

setup_failed() {
    log "$*"
    show_broker_log
    echo "0 passed, 1 failed"
    exit 1
}

start_broker() {
    PORT=$(free_port)
    case $BROKER in
    corvid)
        local bin=${CORVID_BIN:-}
        if [[ -z $bin ]]; then
            log "building corvid-server (release)"
            (cd "$ROOT" && cargo build --release -p corvid-server) >&2 ||
                setup_failed "cargo build --release -p corvid-server failed"
            bin="${CARGO_TARGET_DIR:-$ROOT/target}/release/corvid"
        fi
        [[ -x $bin ]] || setup_failed "broker binary $bin not found"
        mkdir -p "$WORK/data"
        "$bin" --bind "127.0.0.1:$PORT" --data-dir "$WORK/data" >"$BROKER_LOG" 2>&1 &
        BROKER_PID=$!
        ;;
    mosquitto)
        local bin
        bin=$(mosquitto_bin) || setup_failed "mosquitto is not installed"
        cat >"$WORK/mosquitto.conf" <<CONF
listener $PORT 127.0.0.1
allow_anonymous true
persistence false
log_dest stdout
CONF
        "$bin" -c "$WORK/mosquitto.conf" >"$BROKER_LOG" 2>&1 &
        BROKER_PID=$!
        ;;
    *)
        setup_failed "unknown INTEROP_BROKER '$BROKER' (expected corvid or mosquitto)"
        ;;
    esac

    local deadline=$((SECONDS + STARTUP_TIMEOUT))
    until timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT" 2>/dev/null; do
        kill -0 "$BROKER_PID" 2>/dev/null || setup_failed "$BROKER exited during startup"
        ((SECONDS < deadline)) || setup_failed "$BROKER did not accept connections on 127.0.0.1:$PORT within ${STARTUP_TIMEOUT} s"
        sleep 0.1
    done
    log "$BROKER is listening on 127.0.0.1:$PORT (pid $BROKER_PID)"
}

# Reads pytest's JUnit XML: prints "passed failed skipped".
junit_counts() {
    python3 - "$1" <<'PY'
import sys
import xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
tests = failed = skipped = 0
for s in suites:
    tests += int(s.get("tests", 0))
    failed += int(s.get("failures", 0)) + int(s.get("errors", 0))
    skipped += int(s.get("skipped", 0))
print(tests - failed - skipped, failed, skipped)
PY
}

ensure_tools
start_broker
export BROKER_HOST=127.0.0.1 BROKER_PORT=$PORT

echo "=== mosquitto_pub / mosquitto_sub $(mosquitto_sub --help 2>/dev/null | sed -n 's/^mosquitto_sub version \([^ ]*\).*/\1/p') ==="
# shellcheck source=tests/interop/mosquitto_clients.sh
source "$HERE/mosquitto_clients.sh"
mc_run_all

echo "=== paho-mqtt $(python3 -c 'import paho.mqtt; print(paho.mqtt.__version__)') ==="
py_rc=0
PYTHONDONTWRITEBYTECODE=1 timeout "$PYTEST_TIMEOUT" python3 -m pytest -p no:cacheprovider -q -rfEsx \
    --junitxml="$WORK/junit.xml" "$HERE/test_paho.py" || py_rc=$?
py_passed=0 py_failed=0 py_skipped=0
if [[ -s $WORK/junit.xml ]]; then
    read -r py_passed py_failed py_skipped < <(junit_counts "$WORK/junit.xml")
fi
if ((py_rc != 0 && py_failed == 0)); then
    log "pytest exited with status $py_rc"
    py_failed=1
fi

# shellcheck source=tests/interop/tls_ws.sh
source "$HERE/tls_ws.sh"
tw_run_all

# shellcheck source=tests/interop/auth_files.sh
source "$HERE/auth_files.sh"
af_run_all

passed=$((MC_PASSED + py_passed + TW_PASSED + AF_PASSED))
failed=$((MC_FAILED + py_failed + TW_FAILED + AF_FAILED))
py_skipped=$((py_skipped + TW_SKIPPED + AF_SKIPPED))
echo "=== summary against $BROKER ==="
if ((MC_FAILED)); then
    printf 'failed: %s\n' "${MC_FAILED_NAMES[@]}"
fi
if ((TW_FAILED)); then
    printf 'failed: %s\n' "${TW_FAILED_NAMES[@]}"
fi
if ((AF_FAILED)); then
    printf 'failed: %s\n' "${AF_FAILED_NAMES[@]}"
fi
if ((failed)); then
    show_broker_log
fi
if ((py_skipped)); then
    echo "($py_skipped skipped or expected to fail, see above)"
fi
echo "$passed passed, $failed failed"
((failed == 0))
