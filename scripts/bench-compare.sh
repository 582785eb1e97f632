#!/usr/bin/env bash
# Compares Corvid, Mosquitto, rumqttd and the null relay with corvid-bench: the same scenarios against each, in
# alternation (A B C D, A B C D, ...), three rounds by default, then a table of medians and ratios vs Mosquitto.
# Servers whose binary is missing are skipped with a message. Loopback only.
#
#   scripts/bench-compare.sh                                  # every scenario, 3 rounds
#   scripts/bench-compare.sh --scenarios fanin,latency --rounds 5 --markdown /tmp/table.md
#
# Every other argument goes to `corvid-bench compare` (see `corvid-bench compare --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"

echo "== building corvid-bench (release)"
cargo build --release -p corvid-bench
if [ -z "${CORVID_BIN:-}" ]; then
  echo "== building corvid (release)"
  cargo build --release -p corvid-server || echo "== corvid does not build: it will be skipped if no binary exists"
fi
exec "$target_dir/release/corvid-bench" compare "$@"
