# Sourced by the test scripts: ends a process they started.

# stop_process PID [TENTHS]: SIGTERM, up to TENTHS tenths of a second (default 50) for the process to end, then
# SIGKILL; reaps it. Does nothing for an empty or finished PID.
stop_process() {
    local pid=$1 tenths=${2:-50} i
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < tenths; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
}
