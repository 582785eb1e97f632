# shellcheck shell=bash
# Interoperability tests driven by the Eclipse Mosquitto command line clients
# (mosquitto_pub / mosquitto_sub) against the broker at $BROKER_HOST:$BROKER_PORT.
#
# Sourced by run.sh, which calls mc_run_all and reads MC_PASSED / MC_FAILED.
# It can also be run on its own against an already running broker:
#   BROKER_HOST=127.0.0.1 BROKER_PORT=1883 bash tests/interop/mosquitto_clients.sh
#
# Every test runs in its own subshell with `set -euo pipefail`, uses its own
# random topic prefix and client ids, and every client process is bounded in
# time by both `timeout` and mosquitto_sub's own -W option.

MC_VERSIONS=(mqttv31 mqttv311 mqttv5)
MC_PASSED=0
MC_FAILED=0
MC_FAILED_NAMES=()
# Upper bound for any single client process, in seconds.
MC_PROC_TIMEOUT=${MC_PROC_TIMEOUT:-20}

mc_uid() {
    head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n'
}

mc_fail() {
    echo "assertion failed: $*" >&2
    exit 1
}

# mc_expect_eq WHAT EXPECTED ACTUAL
mc_expect_eq() {
    if [[ "$2" != "$3" ]]; then
        {
            echo "assertion failed: $1"
            echo "--- expected"
            printf '%s\n' "$2"
            echo "--- actual"
            printf '%s\n' "$3"
        } >&2
        exit 1
    fi
}

mc_pub() {
    timeout "$MC_PROC_TIMEOUT" mosquitto_pub -h "$BROKER_HOST" -p "$BROKER_PORT" "$@"
}

# mc_sub_start OUTFILE MOSQUITTO_SUB_ARGS...
# Starts a debug-mode subscriber in the background, waits until its SUBACK has
# arrived (so later publications cannot race the subscription) and leaves its
# pid in MC_SUB_PID. Received messages are printed with the format
# "MSG q=<qos> r=<retain> <topic> <payload>", so they can be told apart from
# the debug lines; stdout is line buffered so the log can be watched live.
mc_sub_start() {
    local out=$1
    shift
    timeout "$MC_PROC_TIMEOUT" stdbuf -oL mosquitto_sub -h "$BROKER_HOST" -p "$BROKER_PORT" \
        -d -F 'MSG q=%q r=%r %t %p' -W $((MC_PROC_TIMEOUT - 2)) "$@" >"$out" 2>&1 &
    MC_SUB_PID=$!
    mc_wait_for_line "$out" '^Subscribed \(mid' 5 ||
        { cat "$out" >&2; mc_fail "subscriber got no SUBACK within 5 s"; }
}

# mc_wait_for_line FILE REGEX SECONDS: polls FILE until a line matches.
mc_wait_for_line() {
    local file=$1 re=$2 tries=$(($3 * 20))
    while ((tries-- > 0)); do
        if grep -qE -- "$re" "$file" 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    return 1
}

# mc_sub_finish PID: waits for a subscriber started with -C to exit on its own.
mc_sub_finish() {
    local rc=0
    wait "$1" || rc=$?
    if ((rc != 0)); then
        echo "subscriber exited with status $rc (124 = killed by timeout, 27 = -W expired)" >&2
        return 1
    fi
}

# mc_messages FILE: the "MSG ..." lines of a subscriber log, prefix stripped.
mc_messages() {
    sed -n 's/^MSG //p' "$1"
}

# --- A1: QoS 0/1/2 publish -> subscribe, exact payloads and delivered QoS ----
mc_test_qos() {
    local ver=$1 qos=$2 p
    p="interop/$(mc_uid)"
    local out="$MC_CASE_DIR/sub.log"
    local payloads=("hello qos$qos" "second message, with  spaces" "utf-8: héllo wörld ✓" "")
    mc_sub_start "$out" -V "$ver" -q "$qos" -t "$p/data" -C "${#payloads[@]}"
    grep -qE "Subscribed \(mid: [0-9]+\): $qos\$" "$out" ||
        { cat "$out" >&2; mc_fail "SUBACK did not grant QoS $qos"; }
    local m
    for m in "${payloads[@]}"; do
        if [[ -z $m ]]; then
            mc_pub -V "$ver" -q "$qos" -t "$p/data" -n
        else
            mc_pub -V "$ver" -q "$qos" -t "$p/data" -m "$m"
        fi
    done
    mc_sub_finish "$MC_SUB_PID" || { cat "$out" >&2; exit 1; }
    local expected="" sep=""
    for m in "${payloads[@]}"; do
        expected+="${sep}q=$qos r=0 $p/data $m"
        sep=$'\n'
    done
    mc_expect_eq "messages received at QoS $qos ($ver)" "$expected" "$(mc_messages "$out")"
}

# --- A2: retained messages: delivered to new subscribers, cleared by empty --
mc_test_retained() {
    local ver=$1 p
    p="interop/$(mc_uid)"
    local t="$p/state"
    mc_pub -V "$ver" -q 1 -r -t "$t" -m "retained on $ver"

    # A brand new subscriber gets the retained message at once; -v prints the topic.
    local got
    got=$(timeout "$MC_PROC_TIMEOUT" mosquitto_sub -h "$BROKER_HOST" -p "$BROKER_PORT" \
        -V "$ver" -q 1 -t "$t" -v -C 1 -W 5)
    mc_expect_eq "retained message shown with -v" "$t retained on $ver" "$got"

    # The retain flag is set on the copy sent because of the subscription.
    local out="$MC_CASE_DIR/flag.log"
    mc_sub_start "$out" -V "$ver" -q 1 -t "$t" -C 1
    mc_sub_finish "$MC_SUB_PID" || { cat "$out" >&2; exit 1; }
    mc_expect_eq "retained copy carries the retain flag" "q=1 r=1 $t retained on $ver" "$(mc_messages "$out")"

    # An empty retained payload clears it: a new subscriber's first message is
    # then a live one published after its SUBACK, not the old retained one.
    mc_pub -V "$ver" -q 1 -r -t "$t" -n
    out="$MC_CASE_DIR/cleared.log"
    mc_sub_start "$out" -V "$ver" -q 1 -t "$t" -C 1
    mc_pub -V "$ver" -q 1 -t "$t" -m "live after clear"
    mc_sub_finish "$MC_SUB_PID" || { cat "$out" >&2; exit 1; }
    mc_expect_eq "no retained message after clearing" "q=1 r=0 $t live after clear" "$(mc_messages "$out")"
}

# --- A3: will message published when a client dies without DISCONNECT ------
mc_test_will() {
    local ver=$1 p
    p="interop/$(mc_uid)"
    local watch="$MC_CASE_DIR/watch.log" victim_log="$MC_CASE_DIR/victim.log"
    mc_sub_start "$watch" -V "$ver" -q 1 -t "$p/will" -C 1

    # The victim: a subscriber carrying a will, killed with SIGKILL once connected.
    timeout "$MC_PROC_TIMEOUT" stdbuf -oL mosquitto_sub -h "$BROKER_HOST" -p "$BROKER_PORT" -d \
        -V "$ver" -i "w$(mc_uid)" -t "$p/victim" -W $((MC_PROC_TIMEOUT - 2)) \
        --will-topic "$p/will" --will-payload "victim on $ver is gone" --will-qos 1 \
        >"$victim_log" 2>&1 &
    local wrapper=$!
    mc_wait_for_line "$victim_log" '^Subscribed \(mid' 5 ||
        { cat "$victim_log" >&2; mc_fail "will client did not connect"; }
    local victim
    victim=$(pgrep -P "$wrapper" -x mosquitto_sub) || mc_fail "cannot find the will client's pid"
    kill -KILL "$victim"
    wait "$wrapper" 2>/dev/null || true

    mc_sub_finish "$MC_SUB_PID" || { cat "$watch" >&2; exit 1; }
    mc_expect_eq "will message delivered" "q=1 r=0 $p/will victim on $ver is gone" "$(mc_messages "$watch")"
}

# --- A4: a clean DISCONNECT discards the will -------------------------------
mc_test_will_not_sent_on_disconnect() {
    local ver=$1 p
    p="interop/$(mc_uid)"
    local watch="$MC_CASE_DIR/watch.log"
    mc_sub_start "$watch" -V "$ver" -q 1 -t "$p/will" -t "$p/marker" -C 1
    # mosquitto_pub disconnects cleanly after publishing.
    mc_pub -V "$ver" -q 1 -t "$p/other" -m x \
        --will-topic "$p/will" --will-payload "must not be sent" --will-qos 1
    mc_pub -V "$ver" -q 1 -t "$p/marker" -m "marker"
    mc_sub_finish "$MC_SUB_PID" || { cat "$watch" >&2; exit 1; }
    mc_expect_eq "only the marker arrives" "q=1 r=0 $p/marker marker" "$(mc_messages "$watch")"
}

# --- A5: wildcards + and # ---------------------------------------------------
mc_test_wildcards() {
    local ver=$1 p
    p="interop/$(mc_uid)"
    local plus="$MC_CASE_DIR/plus.log" hash="$MC_CASE_DIR/hash.log"
    # Topic published (in this order), and whether "$p/+/temp" / "$p/#" match it:
    #   $p                 +: no   #: yes (a trailing "#" also matches the parent level)
    #   $p/a/temp          +: yes  #: yes
    #   $p/a/hum           +: no   #: yes
    #   $p/b/temp          +: yes  #: yes
    #   $p/a/b/temp        +: no   #: yes ("+" is exactly one level)
    #   $p//temp           +: yes  #: yes (an empty level is a level)
    #   ${p}x/a/temp       +: no   #: no
    #   $p/end/temp        +: yes  #: yes (last one: both subscribers stop here)
    mc_sub_start "$plus" -V "$ver" -q 1 -t "$p/+/temp" -C 4
    local plus_pid=$MC_SUB_PID
    mc_sub_start "$hash" -V "$ver" -q 1 -t "$p/#" -C 7
    local hash_pid=$MC_SUB_PID
    local t
    for t in "$p" "$p/a/temp" "$p/a/hum" "$p/b/temp" "$p/a/b/temp" "$p//temp" "${p}x/a/temp" "$p/end/temp"; do
        mc_pub -V "$ver" -q 1 -t "$t" -m "to $t"
    done
    mc_sub_finish "$plus_pid" || { cat "$plus" >&2; exit 1; }
    mc_sub_finish "$hash_pid" || { cat "$hash" >&2; exit 1; }
    local exp_plus="" exp_hash="" sep=""
    for t in "$p/a/temp" "$p/b/temp" "$p//temp" "$p/end/temp"; do
        exp_plus+="${sep}q=1 r=0 $t to $t"
        sep=$'\n'
    done
    sep=""
    for t in "$p" "$p/a/temp" "$p/a/hum" "$p/b/temp" "$p/a/b/temp" "$p//temp" "$p/end/temp"; do
        exp_hash+="${sep}q=1 r=0 $t to $t"
        sep=$'\n'
    done
    mc_expect_eq "single-level wildcard $p/+/temp" "$exp_plus" "$(mc_messages "$plus")"
    mc_expect_eq "multi-level wildcard $p/#" "$exp_hash" "$(mc_messages "$hash")"
}

# mc_case NAME FUNCTION ARGS...: runs one test in an isolated subshell.
mc_case() {
    local name=$1
    shift
    MC_CASE_DIR="$MC_TMP/$name"
    mkdir -p "$MC_CASE_DIR"
    (
        set -euo pipefail
        # Stop any client this test left behind (by pid; `timeout` forwards TERM).
        trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
        "$@"
    ) >"$MC_CASE_DIR/output.log" 2>&1 &
    if wait $!; then
        MC_PASSED=$((MC_PASSED + 1))
        echo "PASS mosquitto_clients::$name"
    else
        MC_FAILED=$((MC_FAILED + 1))
        MC_FAILED_NAMES+=("mosquitto_clients::$name")
        echo "FAIL mosquitto_clients::$name"
        sed 's/^/    | /' "$MC_CASE_DIR/output.log"
    fi
}

mc_run_all() {
    : "${BROKER_HOST:?BROKER_HOST must be set}" "${BROKER_PORT:?BROKER_PORT must be set}"
    MC_TMP=$(mktemp -d "${TMPDIR:-/tmp}/corvid-interop-mc.XXXXXX")
    local ver qos
    for ver in "${MC_VERSIONS[@]}"; do
        for qos in 0 1 2; do
            mc_case "qos${qos}_${ver}" mc_test_qos "$ver" "$qos"
        done
        mc_case "retained_${ver}" mc_test_retained "$ver"
        mc_case "will_${ver}" mc_test_will "$ver"
        mc_case "will_not_sent_on_disconnect_${ver}" mc_test_will_not_sent_on_disconnect "$ver"
        mc_case "wildcards_${ver}" mc_test_wildcards "$ver"
    done
    rm -rf "$MC_TMP"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    mc_run_all
    echo "$MC_PASSED passed, $MC_FAILED failed"
    ((MC_FAILED == 0))
fi
