#!/usr/bin/env bash
# The demo world under wrk: GET /healthz and GET /v1/feed?n=20 for random demo
# users, same server, same load (2 threads, 8 connections), ROUNDS rounds of
# SECS seconds each, alternating; prints each round and the feed/healthz
# ratio (docs/PERFORMANCE.md, issue 11's first target). Feeds never repeat
# a video to a user, so as a round goes on the demo users' best candidates
# are used up and later feeds score fewer of them: round 1 starts from a
# fresh server (nothing served yet) and is reported on its own. The last
# column is the same feed with explain=true (what the console asks for: each
# item's creator, tags and score components), for its cost.
#
#   scripts/demo-wrk.sh [ROUNDS] [SECS]       # default 3 rounds of 8 s
#
# Needs wrk (scripts/install-deps.sh) and a release build (make build).
# Writes only to a temporary directory; stops the server by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-8}
BIN=${FORYOU_BIN:-build/release/foryou}
command -v wrk >/dev/null || { echo "needs wrk (scripts/install-deps.sh)" >&2; exit 1; }
[ -x "$BIN" ] || { echo "needs $BIN (make build)" >&2; exit 1; }
DIR=$(mktemp -d)
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; rm -rf "$DIR"; }
trap cleanup EXIT
"$BIN" serve --demo --data-dir "$DIR/data" --listen 127.0.0.1:0 > "$DIR/out" 2> "$DIR/err" &
PID=$!
PORT=""
for _ in $(seq 600); do
  PORT=$(sed -n 's/^listening on .*:\([0-9][0-9]*\).*/\1/p' "$DIR/out" | head -1)
  [ -n "$PORT" ] && break
  kill -0 "$PID" 2>/dev/null || { cat "$DIR/err" >&2; exit 1; }
  sleep 0.1
done
[ -n "$PORT" ] || { echo "server did not start" >&2; exit 1; }
cat > "$DIR/feed.lua" <<'EOF'
request = function() return wrk.format("GET", "/v1/feed?user_id=u" .. math.random(0, 1410) .. "&n=20") end
EOF
sed 's/&n=20/\&n=20\&explain=true/' "$DIR/feed.lua" > "$DIR/explain.lua"
rps() { wrk -t2 -c8 -d"${SECS}s" "$@" | awk '/Requests\/sec/ {print $2}'; }
echo "round  healthz/s   feed/s   feed/healthz   explained/s"
for r in $(seq "$ROUNDS"); do
  f=$(rps -s "$DIR/feed.lua" "http://127.0.0.1:$PORT")
  h=$(rps "http://127.0.0.1:$PORT/healthz")
  x=$(rps -s "$DIR/explain.lua" "http://127.0.0.1:$PORT")
  awk -v r="$r" -v h="$h" -v f="$f" -v x="$x" 'BEGIN { printf "%5d %10.0f %8.0f %14.3f %13.0f\n", r, h, f, f / h, x }'
done
