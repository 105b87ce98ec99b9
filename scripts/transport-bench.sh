#!/usr/bin/env bash
# Issue 11's choice of HTTP server, measured: the demo world's feed and
# /healthz behind each event-driven server Debian packages that
# foryou_transport_bench links (bench/transport_bench.cc: Boost.Beast, which
# foryou serve uses, libmicrohttpd, libevent), against the same targets as
# foryou serve (docs/PERFORMANCE.md, "Choosing the HTTP server"):
#   - scripts/demo-wrk.sh ROUNDS SECS: wrk feeds / wrk /healthz, same server;
#   - foryou bench --connections: /healthz and feed p99 next to 10,000 idle
#     keep-alive connections, then 1,000 simultaneous connects.
# `foryou serve` itself is measured first, for reference. Prints one block
# per server; the raw JSON of the connection runs goes to OUT_DIR.
#
#   scripts/transport-bench.sh [ROUNDS] [SECS] [OUT_DIR]   # default 2 6 build/transport-bench
#
# Needs a release build (make build) and wrk (scripts/install-deps.sh).
# About 2.5 minutes per server. Writes only to OUT_DIR and temporary dirs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-2}
SECS=${2:-6}
OUT=${3:-build/transport-bench}
BENCH=build/release/foryou_transport_bench
[ -x "$BENCH" ] && [ -x build/release/foryou ] || { echo "needs build/release/foryou and $BENCH (make build)" >&2; exit 1; }
mkdir -p "$OUT"
summary() {  # name, json
  python3 - "$1" "$2" <<'PY'
import json, sys
name, path = sys.argv[1], sys.argv[2]
j = json.load(open(path))
print(f"  connections: healthz p99 {j['healthz_p99_ms']:.2f} ms before, {j['idle_healthz_p99_ms']:.2f} ms next to "
      f"{j['idle_open']} idle; feed p99 {j['feed_p99_ms']:.2f} / {j['idle_feed_p99_ms']:.2f} ms; burst "
      f"{j['burst_served']}/{j['burst']} served, slowest {j['burst_max_ms']:.0f} ms")
PY
}
run() {  # name, binary, transport
  echo "== $1"
  FORYOU_TRANSPORT=$3 FORYOU_BIN=$2 scripts/demo-wrk.sh "$ROUNDS" "$SECS" | sed 's/^/  /' || echo "  demo-wrk.sh failed"
  FORYOU_TRANSPORT=$3 build/release/foryou bench --connections --json --server-binary "$2" \
    > "$OUT/connections-$1.json" 2> "$OUT/connections-$1.err" || { echo "  connections: failed (see $OUT/connections-$1.err)"; return; }
  summary "$1" "$OUT/connections-$1.json"
}
run "foryou-serve" build/release/foryou ""
for t in beast microhttpd libevent; do
  probe=$(FORYOU_TRANSPORT=$t "$BENCH" serve 2>&1 || true)  # no --data-dir: says what it lacks, and exits
  if grep -q "not built in" <<< "$probe"; then
    echo "== $t: not built (its -dev package was missing when cmake ran)"
    continue
  fi
  run "$t" "$BENCH" "$t"
done
