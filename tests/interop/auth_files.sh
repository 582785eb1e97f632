# shellcheck shell=bash
# Interoperability of password files with Mosquitto's own tools, both ways:
#
#   A. a password file made by `mosquitto_passwd` ($7$ and legacy $6$ hashes), with an ACL file, used by the broker
#      under test ($BROKER): mosquitto_pub / mosquitto_sub log in, wrong passwords and anonymous clients are
#      refused, the ACL filters, and a user added with `mosquitto_passwd -b` logs in after SIGHUP;
#   B. a password file made by `corvid passwd` used by a real Mosquitto broker (/usr/sbin/mosquitto).
#
# Sourced by run.sh, which calls af_run_all and reads AF_PASSED / AF_FAILED / AF_SKIPPED. Each broker listens on a
# free port of 127.0.0.1; every client is bounded in time.

AF_PASSED=0
AF_FAILED=0
AF_SKIPPED=0
AF_FAILED_NAMES=()
AF_PID=""
AF_PORT=""
AF_PROC_TIMEOUT=${AF_PROC_TIMEOUT:-20}

af_log() { echo "interop/auth_files: $*" >&2; }

af_stop() {
    stop_process "$AF_PID"
    AF_PID=""
}

# The corvid binary (built by run.sh when the broker under test is corvid), if there is one.
af_corvid_bin() {
    local bin=${CORVID_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/corvid}
    [[ -x $bin ]] && echo "$bin"
}

# Mosquitto started as root reads its files as the mosquitto user: give it the (0600) files, as a deployment would.
af_give_to_mosquitto() {
    if [[ $(id -u) -eq 0 ]] && id mosquitto >/dev/null 2>&1; then
        chown mosquitto: "$@"
    fi
}

# af_start KIND DIR: starts corvid or mosquitto on a free port with DIR/passwd and DIR/acl; sets AF_PORT, AF_PID.
af_start() {
    local kind=$1 d=$2
    AF_PORT=$(free_port)
    case $kind in
    corvid)
        local bin
        bin=$(af_corvid_bin) || return 1
        cat >"$d/corvid.toml" <<CONF
allow_anonymous = false
password_file = "passwd"
acl_file = "acl"
sys_interval = 0

[storage]
engine = "memory"

[[listener]]
type = "tcp"
bind = "127.0.0.1:$AF_PORT"
CONF
        "$bin" --config "$d/corvid.toml" >"$d/broker.log" 2>&1 &
        AF_PID=$!
        ;;
    mosquitto)
        local bin
        bin=$(mosquitto_bin) || return 1
        chmod 755 "$d"
        af_give_to_mosquitto "$d/passwd" "$d/acl"
        cat >"$d/mosquitto.conf" <<CONF
listener $AF_PORT 127.0.0.1
allow_anonymous false
password_file $d/passwd
acl_file $d/acl
persistence false
log_dest stdout
CONF
        "$bin" -c "$d/mosquitto.conf" >"$d/broker.log" 2>&1 &
        AF_PID=$!
        ;;
    esac
    local deadline=$((SECONDS + 30))
    until timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$AF_PORT" 2>/dev/null; do
        kill -0 "$AF_PID" 2>/dev/null || return 1
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

# af_case NAME FUNCTION ARGS...: runs one test in a subshell and counts it.
af_case() {
    local name=$1
    shift
    if (set -euo pipefail; "$@"); then
        AF_PASSED=$((AF_PASSED + 1))
        echo "ok   auth_files: $name"
    else
        AF_FAILED=$((AF_FAILED + 1))
        AF_FAILED_NAMES+=("auth_files: $name")
        echo "FAIL auth_files: $name"
    fi
}

af_pub() { timeout "$AF_PROC_TIMEOUT" mosquitto_pub -h 127.0.0.1 -p "$AF_PORT" "$@"; }

# af_login USER PASSWORD VERSION: a QoS 1 publication with these credentials succeeds.
af_login() {
    af_pub -u "$1" -P "$2" -V "$3" -q 1 -t "interop/login" -m x ||
        { echo "login of $1 ($3) refused" >&2; return 1; }
}

# af_refused EXPECTED_STATUS ARGS...: mosquitto_pub is refused; its exit status is the CONNACK code.
af_refused() {
    local expected=$1 rc=0
    shift
    af_pub "$@" -t interop/refused -m x 2>/dev/null || rc=$?
    if ((rc != expected)); then
        echo "mosquitto_pub $* exited with $rc, expected $expected (the CONNACK code)" >&2
        return 1
    fi
}

# Mosquitto 2.0 answers a wrong password or an unknown user with "not authorized" (5 / 0x87); Corvid with the
# more precise "bad user name or password" (4 / 0x86). Anonymous clients get 5 / 0x87 from both.
af_bad_password_codes() {
    if [[ $1 == mosquitto ]]; then echo "5 135"; else echo "4 134"; fi
}

af_test_logins() {
    local v
    for v in mqttv311 mqttv5; do
        af_login alice 's3cret pw' "$v"
        af_login bob pw2 "$v"
    done
}

af_test_refusals() {
    local v311 v5
    read -r v311 v5 < <(af_bad_password_codes "$1")
    af_refused "$v311" -V mqttv311 -u alice -P wrong
    af_refused "$v5" -V mqttv5 -u alice -P wrong
    af_refused "$v311" -V mqttv311 -u nobody -P 's3cret pw'
    af_refused "$v5" -V mqttv5 -u bob -P 's3cret pw'
    af_refused 5 -V mqttv311
    af_refused 135 -V mqttv5
}

# bob may read interop/#, alice may write it: bob's subscriber gets alice's message, not bob's own (denied) one,
# nor one on a topic alice may not write.
af_test_acl() {
    local out
    out=$(mktemp)
    timeout "$AF_PROC_TIMEOUT" mosquitto_sub -h 127.0.0.1 -p "$AF_PORT" -u bob -P pw2 -V mqttv5 -q 1 \
        -t 'interop/#' -t 'other/#' -d -F 'MSG %t %p' -C 1 -W 15 >"$out" 2>&1 &
    local sub=$!
    local i
    for ((i = 0; i < 100; i++)); do
        grep -q '^Subscribed' "$out" && break
        sleep 0.05
    done
    local denied
    denied=$(af_pub -u bob -P pw2 -V mqttv5 -q 1 -t interop/acl -m "from bob" 2>&1 || true)
    af_pub -u alice -P 's3cret pw' -V mqttv5 -q 1 -t other/acl -m "not allowed" 2>/dev/null || true
    af_pub -u alice -P 's3cret pw' -V mqttv5 -q 1 -t interop/acl -m "from alice"
    wait "$sub" || { cat "$out" >&2; return 1; }
    local got
    got=$(sed -n 's/^MSG //p' "$out")
    rm -f "$out"
    if [[ $got != "interop/acl from alice" ]]; then
        echo "bob's subscriber got: $got" >&2
        return 1
    fi
    if [[ $denied != *"Not authorized"* ]]; then
        echo "bob's denied QoS 1 publication was not refused with 0x87: $denied" >&2
        return 1
    fi
}

# A user added with mosquitto_passwd logs in once the broker got SIGHUP.
af_test_reload() {
    local d=$1
    af_refused "$(af_bad_password_codes "$2" | cut -d' ' -f1)" -V mqttv311 -u carol -P c4rol
    mosquitto_passwd -b "$d/passwd" carol c4rol
    af_give_to_mosquitto "$d/passwd"
    kill -HUP "$AF_PID"
    local i
    for ((i = 0; i < 50; i++)); do
        af_pub -u carol -P c4rol -V mqttv5 -q 1 -t interop/login -m x 2>/dev/null && return 0
        sleep 0.1
    done
    echo "carol not accepted within 5 s of SIGHUP" >&2
    return 1
}

# B: files from `corvid passwd`, used by Mosquitto.
af_test_corvid_passwd_in_mosquitto() {
    local v
    for v in mqttv311 mqttv5; do
        af_login dave 'd4ve pw' "$v"
        af_login erin 3rin "$v"
        af_login frank fr4nk "$v"
    done
    af_refused 5 -V mqttv311 -u dave -P wrong
    af_refused 135 -V mqttv5 -u erin -P wrong
}

af_test_corvid_passwd_delete() {
    local bin=$1 d=$2
    "$bin" passwd -D "$d/passwd" erin
    af_give_to_mosquitto "$d/passwd"
    kill -HUP "$AF_PID"
    local i
    for ((i = 0; i < 50; i++)); do
        af_refused 5 -V mqttv311 -u erin -P 3rin 2>/dev/null && { af_login dave 'd4ve pw' mqttv311; return 0; }
        sleep 0.1
    done
    echo "erin still accepted 5 s after SIGHUP" >&2
    return 1
}

af_run_all() {
    echo "=== password and ACL files: mosquitto_passwd $(dpkg-query -W -f '${Version}' mosquitto 2>/dev/null || true) ==="
    trap 'af_stop; tw_stop; cleanup' EXIT
    local d
    d=$(mktemp -d "${TMPDIR:-/tmp}/corvid-auth.XXXXXX")
    chmod 755 "$d" # Mosquitto started as root runs as the mosquitto user

    # A: mosquitto_passwd's file in the broker under test.
    mosquitto_passwd -c -b "$d/passwd" alice 's3cret pw'
    mosquitto_passwd -H sha512 -b "$d/passwd" bob pw2
    printf '%s\n' 'user alice' 'topic readwrite interop/#' '' 'user bob' 'topic read interop/#' 'topic read other/#' \
        '' 'pattern write interop/login' >"$d/acl"
    if af_start "$BROKER" "$d"; then
        af_log "$BROKER listening on 127.0.0.1:$AF_PORT with a file from mosquitto_passwd"
        af_case "mosquitto_passwd \$7\$ and \$6\$ hashes log in ($BROKER)" af_test_logins
        af_case "wrong password, unknown user and anonymous refused with the CONNACK code" \
            af_test_refusals "$BROKER"
        af_case "ACL: read and write rules with mosquitto_sub / mosquitto_pub" af_test_acl
        af_case "a user added by mosquitto_passwd logs in after SIGHUP" af_test_reload "$d" "$BROKER"
    else
        af_log "the $BROKER broker did not start"
        tail -n 20 "$d/broker.log" >&2 || true
        AF_FAILED=$((AF_FAILED + 1))
        AF_FAILED_NAMES+=("auth_files: setup ($BROKER with mosquitto_passwd's file)")
    fi
    ((AF_FAILED == 0)) || { echo "----- $BROKER log -----"; tail -n 30 "$d/broker.log" || true; }
    af_stop

    # B: corvid passwd's file in Mosquitto.
    local bin
    if ! bin=$(af_corvid_bin); then
        af_log "no corvid binary: corvid passwd -> mosquitto skipped"
        AF_SKIPPED=$((AF_SKIPPED + 2))
    else
        local e="$d/b"
        mkdir -p "$e"
        local made=0
        {
            "$bin" passwd -c -b "$e/passwd" dave 'd4ve pw' &&
                "$bin" passwd -H sha512 -b "$e/passwd" erin 3rin &&
                printf 'fr4nk\n' | "$bin" passwd "$e/passwd" frank &&
                printf 'pattern readwrite interop/#\n' >"$e/acl"
        } || made=1
        if ((made != 0)); then
            AF_FAILED=$((AF_FAILED + 1))
            AF_FAILED_NAMES+=("auth_files: corvid passwd")
        elif af_start mosquitto "$e"; then
            af_log "mosquitto listening on 127.0.0.1:$AF_PORT with a file from corvid passwd"
            af_case "corvid passwd's \$7\$ and \$6\$ hashes log in to Mosquitto" af_test_corvid_passwd_in_mosquitto
            af_case "a user deleted by corvid passwd is refused by Mosquitto after SIGHUP" \
                af_test_corvid_passwd_delete "$bin" "$e"
        else
            af_log "mosquitto did not start"
            tail -n 20 "$e/broker.log" >&2 || true
            AF_FAILED=$((AF_FAILED + 1))
            AF_FAILED_NAMES+=("auth_files: setup (mosquitto with corvid passwd's file)")
        fi
        ((AF_FAILED == 0)) || { echo "----- mosquitto log -----"; tail -n 30 "$e/broker.log" || true; }
        af_stop
    fi
    rm -rf "$d"
}
