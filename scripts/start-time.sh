#!/usr/bin/env bash
# How long `foryou serve` takes to start on an existing store: from exec until
# it listens (the snapshot loaded, the log's tail replayed, the HTTP server
# up), then a clean stop. Alternates the binaries given, ROUNDS times each,
# so that binaries compared share the hour (absolute times drift 2x from
# hour to hour on this shared machine: compare within one run).
#
#   scripts/start-time.sh DATA_DIR ROUNDS BINARY... [-- SERVE_ARGS...]
#
# Example, a 1M-user store under a policy with encryption at rest made by
# scripts/encrypted-store.sh (docs/PERFORMANCE.md, "Restart under encryption
# at rest"):
#   scripts/start-time.sh /tmp/r1m/store 3 build/release/foryou /tmp/foryou-old -- \
#       --policy /tmp/r1m/policy.toml --region us --region-key-file /tmp/r1m/us.key
#
# Prints one line per start: the binary, the seconds to listening, and the
# start's own account of its parts (keys, snapshot read, snapshot decode).
# The stop after each start writes no new snapshot (nothing changed), so every
# start loads the same one. Writes nothing in the repository.
set -euo pipefail
[ $# -ge 3 ] || { sed -n 2,20p "$0" >&2; exit 2; }
DATA_DIR=$1 ROUNDS=$2
shift 2
BINS=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do BINS+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
LOG=$(mktemp -d "${TMPDIR:-/tmp}/foryou-start-XXXXXX")
trap 'rm -rf "$LOG"' EXIT
for ((r = 1; r <= ROUNDS; r++)); do
  for bin in "${BINS[@]}"; do
    t0=$(date +%s.%N)
    "$bin" serve --data-dir "$DATA_DIR" --listen 127.0.0.1:0 "$@" > "$LOG/out" 2> "$LOG/err" &
    pid=$!
    until grep -q "listening on" "$LOG/out" 2> /dev/null; do
      kill -0 "$pid" 2> /dev/null || { echo "start-time: $bin exited:" >&2; tail -5 "$LOG/err" >&2; exit 1; }
      sleep 0.02
    done
    t1=$(date +%s.%N)
    kill -INT "$pid"
    wait "$pid" || true
    parts=$(grep -o 'user keys loaded in [0-9.]* s\|read and verified in [0-9.]* s, decoded in [0-9.]* s\|then [0-9]* replayed' \
            "$LOG/err" | paste -sd ';' -)
    printf '%s\tround %d\t%.2f s to listening\t%s\n' "$bin" "$r" "$(echo "$t1 - $t0" | bc)" "$parts"
  done
done
