#!/usr/bin/env bash
# CI smoke run of the load generator: every corvid-bench scenario once, at a tiny size (well under a second of
# load each, a handful of connections), against the null relay, Mosquitto (if installed) and Corvid.
# Fails if any scenario reports an error, or loss or duplicates at QoS 1/2.
# That includes tls-handshake (certificates made at launch), ws-throughput (Mosquitto's `protocol websockets`) and
# idle-100k at 2,000 connections; the relay speaks plain TCP only, so the TLS and WebSocket ones are skipped for it.
#
# Corvid: the script builds it (`cargo build --release -p corvid-server`) unless CORVID_BIN names a binary. If it
# does not build or does not start, that fails the script while BENCH_SMOKE_REQUIRE_CORVID=1 (the default); with
# BENCH_SMOKE_REQUIRE_CORVID=0 it is reported and skipped.
#
# corvid-bench is built in the debug profile: after `cargo test --workspace` that build is nearly free, and tiny
# runs need no speed. Everything listens and connects on 127.0.0.1 only; every run is bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."

require_corvid="${BENCH_SMOKE_REQUIRE_CORVID:-1}"
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
smoke=(--size smoke --drain-timeout 5)
status=0

echo "== building corvid-bench (debug)"
cargo build -p corvid-bench
bench="$target_dir/debug/corvid-bench"

# Runs every scenario against a server the tool launches; returns corvid-bench's status
# (0 pass, 1 a scenario failed, 3 the server did not start).
smoke_run() {
  local rc=0
  echo "== smoke: every scenario against $1"
  timeout 900 "$bench" run all "${smoke[@]}" --launch "$@" || rc=$?
  return "$rc"
}

smoke_run relay || status=1

if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || [ -x /usr/local/sbin/mosquitto ]; then
  smoke_run mosquitto || status=1
else
  echo "== mosquitto is not installed: skipped (apt-get install mosquitto to include it)"
fi

corvid_problem=""
corvid_bin="${CORVID_BIN:-}"
if [ -z "$corvid_bin" ]; then
  corvid_bin="$target_dir/release/corvid"
  echo "== building corvid (cargo build --release -p corvid-server)"
  if ! cargo build --release -p corvid-server; then
    corvid_problem="does not build"
  fi
fi
if [ -z "$corvid_problem" ]; then
  if [ ! -x "$corvid_bin" ]; then
    corvid_problem="has no binary at $corvid_bin"
  else
    rc=0
    smoke_run corvid --corvid-bin "$corvid_bin" || rc=$?
    case "$rc" in
      0) ;;
      3) corvid_problem="did not start" ;;
      *) status=1 ;;
    esac
  fi
fi
if [ -n "$corvid_problem" ]; then
  if [ "$require_corvid" = "1" ]; then
    echo "FAIL: corvid $corvid_problem (BENCH_SMOKE_REQUIRE_CORVID=1; set it to 0 to skip Corvid)"
    status=1
  else
    echo "== corvid $corvid_problem: skipped (BENCH_SMOKE_REQUIRE_CORVID=0)"
  fi
fi

if [ "$status" = 0 ]; then
  echo "bench smoke: PASS"
else
  echo "bench smoke: FAIL"
fi
exit "$status"
