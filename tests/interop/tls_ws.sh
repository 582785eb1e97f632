# shellcheck shell=bash
# Interoperability over TLS and WebSocket: mosquitto_pub / mosquitto_sub with --cafile (and --cert / --key against
# a listener that requires client certificates), and paho-mqtt with transport="websockets" (test_paho_ws.py).
#
# Sourced by run.sh, which calls tw_run_all and reads TW_PASSED / TW_FAILED. It starts a second broker of its own
# with a generated configuration (tcp, tls, tls with client_ca, tls with optional client certificates, tls 1.2 only,
# ws and wss listeners on free
# loopback ports) and certificates made with openssl. Every client is bounded in time.

TW_PASSED=0
TW_FAILED=0
TW_SKIPPED=0
TW_FAILED_NAMES=()
TW_PID=""
TW_PROC_TIMEOUT=${TW_PROC_TIMEOUT:-20}

tw_log() { echo "interop/tls_ws: $*" >&2; }

tw_stop() {
    stop_process "$TW_PID"
    TW_PID=""
}

# Certificates: a server CA and a server certificate for localhost / 127.0.0.1, a client CA with a client
# certificate CN=device-1, and a rogue CA with a client certificate of the same name.
tw_make_certs() {
    local d=$1
    (
        set -e
        cd "$d"
        ec() { openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "$@" 2>/dev/null; }
        ca() { ec -x509 -days 2 -keyout "$1.key" -out "$1.crt" -subj "/CN=$2" -addext basicConstraints=critical,CA:TRUE; }
        leaf() {
            ec -keyout "$1.key" -out "$1.csr" -subj "/CN=$3"
            printf '%s\n' "$4" >"$1.ext"
            openssl x509 -req -days 2 -in "$1.csr" -CA "$2.crt" -CAkey "$2.key" -CAcreateserial -out "$1.crt" \
                -extfile "$1.ext" 2>/dev/null
        }
        ca ca "Interop CA"
        leaf server ca localhost "subjectAltName=DNS:localhost,IP:127.0.0.1"
        ca client-ca "Interop Client CA"
        leaf client client-ca device-1 "extendedKeyUsage=clientAuth"
        ca rogue-ca "Rogue CA"
        leaf rogue rogue-ca device-1 "extendedKeyUsage=clientAuth"
    )
}

tw_wait_port() {
    local port=$1 deadline=$((SECONDS + 30))
    until timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null; do
        kill -0 "$TW_PID" 2>/dev/null || return 1
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

tw_start_broker() {
    local d=$1
    TW_TCP=$(free_port)
    TW_TLS=$(free_port)
    TW_MTLS=$(free_port)
    TW_OTLS=$(free_port)
    TW_TLS12=$(free_port)
    TW_WS=$(free_port)
    TW_WSS=$(free_port)
    case $BROKER in
    corvid)
        local bin=${CORVID_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/corvid}
        cat >"$d/corvid.toml" <<CONF
allow_anonymous = true
sys_interval = 0

[[listener]]
type = "tcp"
bind = "127.0.0.1:$TW_TCP"

[[listener]]
type = "tls"
bind = "127.0.0.1:$TW_TLS"
cert = "server.crt"
key = "server.key"

[[listener]]
type = "tls"
bind = "127.0.0.1:$TW_MTLS"
cert = "server.crt"
key = "server.key"
client_ca = "client-ca.crt"

[[listener]]
type = "tls"
bind = "127.0.0.1:$TW_OTLS"
cert = "server.crt"
key = "server.key"
client_ca = "client-ca.crt"
require_certificate = false

[[listener]]
type = "tls"
bind = "127.0.0.1:$TW_TLS12"
cert = "server.crt"
key = "server.key"
tls_versions = ["1.2"]

[[listener]]
type = "ws"
bind = "127.0.0.1:$TW_WS"
path = "/mqtt"

[[listener]]
type = "wss"
bind = "127.0.0.1:$TW_WSS"
cert = "server.crt"
key = "server.key"
CONF
        mkdir -p "$d/data"
        "$bin" --config "$d/corvid.toml" --data-dir "$d/data" >"$d/broker.log" 2>&1 &
        TW_PID=$!
        TW_WEBSOCKETS=1
        ;;
    mosquitto)
        local bin
        bin=$(mosquitto_bin) || return 1
        # Mosquitto started as root reads its files as the mosquitto user: throw-away test keys, readable.
        chmod 755 "$d"
        chmod 644 "$d"/*.crt "$d"/*.key
        # Debian's Mosquitto may be built without WebSocket support: TLS only.
        cat >"$d/mosquitto.conf" <<CONF
per_listener_settings false
allow_anonymous true
persistence false
log_dest stdout
listener $TW_TCP 127.0.0.1
listener $TW_TLS 127.0.0.1
certfile $d/server.crt
keyfile $d/server.key
listener $TW_MTLS 127.0.0.1
certfile $d/server.crt
keyfile $d/server.key
cafile $d/client-ca.crt
require_certificate true
listener $TW_OTLS 127.0.0.1
certfile $d/server.crt
keyfile $d/server.key
cafile $d/client-ca.crt
require_certificate false
listener $TW_TLS12 127.0.0.1
certfile $d/server.crt
keyfile $d/server.key
tls_version tlsv1.2
CONF
        "$bin" -c "$d/mosquitto.conf" >"$d/broker.log" 2>&1 &
        TW_PID=$!
        TW_WEBSOCKETS=0
        ;;
    esac
    local port
    for port in "$TW_TCP" "$TW_TLS" "$TW_MTLS" "$TW_OTLS" "$TW_TLS12"; do
        tw_wait_port "$port" || return 1
    done
    if ((TW_WEBSOCKETS)); then
        tw_wait_port "$TW_WS" || return 1
        tw_wait_port "$TW_WSS" || return 1
    fi
}

# tw_case NAME FUNCTION: runs one test in a subshell and counts it.
tw_case() {
    local name=$1
    shift
    if (set -euo pipefail; "$@"); then
        TW_PASSED=$((TW_PASSED + 1))
        echo "ok   tls_ws: $name"
    else
        TW_FAILED=$((TW_FAILED + 1))
        TW_FAILED_NAMES+=("tls_ws: $name")
        echo "FAIL tls_ws: $name"
    fi
}

tw_uid() { head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# tw_roundtrip SUB_PORT SUB_OPTS PUB_PORT PUB_OPTS VERSION: mosquitto_sub receives what mosquitto_pub sends.
tw_roundtrip() {
    local sub_port=$1 sub_opts=$2 pub_port=$3 pub_opts=$4 version=$5
    local topic="interop/tls/$(tw_uid)" out
    out=$(mktemp)
    # shellcheck disable=SC2086
    timeout "$TW_PROC_TIMEOUT" mosquitto_sub -h localhost -p "$sub_port" $sub_opts -V "$version" -t "$topic/#" \
        -q 1 -C 2 -W 15 -v >"$out" &
    local sub=$!
    sleep 0.7
    # shellcheck disable=SC2086
    timeout "$TW_PROC_TIMEOUT" mosquitto_pub -h localhost -p "$pub_port" $pub_opts -V "$version" -t "$topic/a" \
        -q 1 -m "hello over TLS"
    # shellcheck disable=SC2086
    timeout "$TW_PROC_TIMEOUT" mosquitto_pub -h localhost -p "$pub_port" $pub_opts -V "$version" -t "$topic/b" \
        -q 0 -m "second"
    wait "$sub"
    local got
    got=$(cat "$out")
    rm -f "$out"
    local expected="$topic/a hello over TLS
$topic/b second"
    if [[ $got != "$expected" ]]; then
        echo "expected:"$'\n'"$expected"$'\n'"got:"$'\n'"$got" >&2
        return 1
    fi
}

# tw_refused PORT OPTS: mosquitto_pub must fail (handshake refused).
tw_refused() {
    local port=$1 opts=$2
    # shellcheck disable=SC2086
    if timeout "$TW_PROC_TIMEOUT" mosquitto_pub -h localhost -p "$port" $opts -t interop/refused -m x 2>/dev/null; then
        echo "mosquitto_pub $opts on port $port was accepted" >&2
        return 1
    fi
}

tw_tests() {
    local d=$1
    local ca="--cafile $d/ca.crt"
    local client="--cafile $d/ca.crt --cert $d/client.crt --key $d/client.key"
    local rogue="--cafile $d/ca.crt --cert $d/rogue.crt --key $d/rogue.key"
    local v
    for v in mqttv311 mqttv5; do
        tw_case "TLS publish and subscribe with --cafile ($v)" tw_roundtrip "$TW_TLS" "$ca" "$TW_TLS" "$ca" "$v"
    done
    tw_case "TCP publisher, TLS subscriber" tw_roundtrip "$TW_TLS" "$ca" "$TW_TCP" "" mqttv311
    tw_case "TLS publisher, TCP subscriber" tw_roundtrip "$TW_TCP" "" "$TW_TLS" "$ca" mqttv5
    tw_case "a server certificate from an unknown CA is refused by the client" \
        tw_refused "$TW_TLS" "--cafile $d/client-ca.crt"
    tw_case "client certificate (--cert --key) on a listener with client_ca" \
        tw_roundtrip "$TW_MTLS" "$client" "$TW_MTLS" "$client" mqttv311
    tw_case "no client certificate on a listener with client_ca is refused" tw_refused "$TW_MTLS" "$ca"
    tw_case "a client certificate from another CA is refused" tw_refused "$TW_MTLS" "$rogue"
    tw_case "with and without a client certificate on a listener where it is optional" \
        tw_roundtrip "$TW_OTLS" "$ca" "$TW_OTLS" "$client" mqttv5
    if [[ $BROKER == mosquitto ]]; then
        # Mosquitto with require_certificate false does not ask for a certificate, so it checks none.
        TW_SKIPPED=$((TW_SKIPPED + 1))
    else
        tw_case "a client certificate from another CA is refused where certificates are optional" \
            tw_refused "$TW_OTLS" "$rogue"
    fi
    tw_case "TLS 1.2 on a 1.2-only listener" \
        tw_roundtrip "$TW_TLS12" "$ca --tls-version tlsv1.2" "$TW_TLS12" "$ca --tls-version tlsv1.2" mqttv311
    if [[ $BROKER == mosquitto ]]; then
        # Mosquitto's tls_version is a minimum version: a 1.3 client is accepted there.
        TW_SKIPPED=$((TW_SKIPPED + 1))
    else
        tw_case "TLS 1.3 client on a 1.2-only listener is refused" tw_refused "$TW_TLS12" "$ca --tls-version tlsv1.3"
    fi
    tw_junk_case() {
        # Plain MQTT CONNECT bytes on the TLS port, and a silent socket; then TLS still works.
        exec 5<>"/dev/tcp/127.0.0.1/$TW_TLS"
        printf '\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00' >&5
        exec 6<>"/dev/tcp/127.0.0.1/$TW_TLS"
        tw_roundtrip "$TW_TLS" "$ca" "$TW_TLS" "$ca" mqttv311
        exec 5>&- 6>&-
    }
    tw_case "plain TCP on the TLS port does not disturb TLS clients" tw_junk_case

    if ((TW_WEBSOCKETS)); then
        echo "=== paho-mqtt over WebSocket (ws and wss) ==="
        local rc=0
        WS_PORT=$TW_WS WSS_PORT=$TW_WSS TCP_PORT=$TW_TCP CA_FILE=$d/ca.crt PYTHONDONTWRITEBYTECODE=1 \
            timeout 120 python3 -m pytest -p no:cacheprovider -q -rfEsx --junitxml="$d/junit_ws.xml" \
            "$HERE/test_paho_ws.py" || rc=$?
        local p=0 f=0 s=0
        if [[ -s $d/junit_ws.xml ]]; then
            read -r p f s < <(junit_counts "$d/junit_ws.xml")
        fi
        if ((rc != 0 && f == 0)); then
            f=1
        fi
        TW_PASSED=$((TW_PASSED + p))
        TW_FAILED=$((TW_FAILED + f))
        TW_SKIPPED=$((TW_SKIPPED + s))
        ((f == 0)) || TW_FAILED_NAMES+=("tls_ws: test_paho_ws.py ($f failed)")
    else
        tw_log "$BROKER has no WebSocket listener here: paho WebSocket tests skipped"
        TW_SKIPPED=$((TW_SKIPPED + 1))
    fi
}

tw_run_all() {
    echo "=== TLS and WebSocket: mosquitto clients $(openssl version | cut -d' ' -f1-2), paho-mqtt ==="
    local d
    d=$(mktemp -d "${TMPDIR:-/tmp}/corvid-tls-ws.XXXXXX")
    trap 'tw_stop; cleanup' EXIT
    if ! command -v openssl >/dev/null 2>&1; then
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null || true
    fi
    if ! tw_make_certs "$d"; then
        tw_log "certificate generation with openssl failed"
        TW_FAILED=1
        TW_FAILED_NAMES+=("tls_ws: setup (openssl)")
        return 0
    fi
    if ! tw_start_broker "$d"; then
        tw_log "the TLS/WebSocket broker did not start"
        tail -n 30 "$d/broker.log" >&2 || true
        tw_stop
        TW_FAILED=1
        TW_FAILED_NAMES+=("tls_ws: setup (broker start)")
        return 0
    fi
    tw_log "$BROKER listening: tcp $TW_TCP, tls $TW_TLS, mtls $TW_MTLS, tls1.2 $TW_TLS12, ws $TW_WS, wss $TW_WSS"
    tw_tests "$d"
    if ((TW_FAILED)); then
        echo "----- last lines of the TLS/WebSocket broker log -----"
        tail -n 30 "$d/broker.log" || true
    fi
    tw_stop
    rm -rf "$d"
}
