#!/usr/bin/env bash
# Cluster mode beside embedded mode, same machine, same run (docs/SCALING.md):
# durable ingest (POST /v1/events, 20-event batches) and feed throughput and
# latency (GET /v1/feed, random demo users) under wrk, for one embedded
# server, one cluster replica, and two cluster replicas (load split across
# both), all under the same policy with encryption at rest; then replica lag
# (write answered by one replica -> applied by the other).
#
#   scripts/cluster-bench.sh [SECONDS_PER_PHASE]     # default 5
#   SPLIT=1 scripts/cluster-bench.sh 5               # us primary for US and CA:
#       records split by jurisdiction (docs/SCALING.md); the load is US users
#
# Prints a table and one JSON line (last line). Writes nothing in the
# repository. Needs wrk and nats-server (Debian packages). Absolute numbers
# drift 2x on a shared machine: compare the rows of one run.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FORYOU=${FORYOU:-$ROOT/build/release/foryou}
SECS=${1:-5}
DIR=$(mktemp -d "${TMPDIR:-/tmp}/foryou-cluster-bench-XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  python3 "$ROOT/scripts/nats_topology.py" stop "$DIR/nats" || true
  rm -rf "$DIR"
}
trap cleanup EXIT
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
sha() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
"$FORYOU" keygen > "$DIR/us.key"
RIGHTS='"US"'
FEED_J=US
if [ "${SPLIT:-0}" = 1 ]; then
  RIGHTS='"US", "CA"'
  FEED_J=CA   # --demo gives its users the first of us's jurisdictions
  sed -e 's/^primary_for = \["US"\]/primary_for = ["US", "CA"]/' -e 's/^backup_for = \["US"\]/backup_for = ["US", "CA"]/' \
    "$ROOT/scripts/policy-us-sg.toml" > "$DIR/policy.toml"
  grep -q '"CA"' "$DIR/policy.toml" || { echo "SPLIT=1: could not add CA to the policy" >&2; exit 1; }
else
  cat "$ROOT/scripts/policy-us-sg.toml" > "$DIR/policy.toml"
fi
cat >> "$DIR/policy.toml" <<EOF2

[[principals]]
name = "svc"
key_sha256 = "$(sha bench-service-secret)"
role = "service"
read = [$RIGHTS]
write = [$RIGHTS]

[[principals]]
name = "adm"
key_sha256 = "$(sha bench-admin-secret)"
role = "admin"
read = [$RIGHTS]
write = [$RIGHTS]
EOF2

start() {  # name args... ; sets PORT
  local name=$1
  shift
  "$FORYOU" serve --listen 127.0.0.1:0 --data-dir "$DIR/$name" --policy "$DIR/policy.toml" --region us \
    --region-key-file "$DIR/us.key" --log-level warn "$@" > "$DIR/$name.out" 2> "$DIR/$name.err" &
  PIDS+=($!)
  for _ in $(seq 1 1200); do
    PORT=$(sed -n 's|^listening on http://127.0.0.1:\([0-9]*\)$|\1|p' "$DIR/$name.out" 2>/dev/null || true)
    [ -n "$PORT" ] && return 0
    sleep 0.1
  done
  cat "$DIR/$name.err" >&2
  exit 1
}

# wrk scripts: random demo users for feeds; 20-event batches of real videos.
VIDEOS=$(python3 -c "import sys; ids=sorted({l.split(',')[1] for l in open(sys.argv[1]) if l.count(',')==2})[:400]; print(','.join(f'\"v{i}\"' for i in ids))" "$ROOT/demo/kuairec/random.txt")
cat > "$DIR/feed.lua" <<EOF2
wrk.headers["Authorization"] = "Bearer bench-service-secret"
wrk.headers["X-Foryou-Jurisdiction"] = "$FEED_J"
request = function() return wrk.format("GET", "/v1/feed?user_id=u" .. math.random(0, 1410) .. "&n=20") end
EOF2
cat > "$DIR/ingest.lua" <<EOF2
wrk.headers["Authorization"] = "Bearer bench-service-secret"
wrk.headers["X-Foryou-Jurisdiction"] = "US"
wrk.headers["Content-Type"] = "application/json"
local videos = {$VIDEOS}
request = function()
  local ev = {}
  for i = 1, 20 do
    ev[i] = string.format('{"user_id":"bench%d","video_id":"%s","type":"play","watch_ratio":0.%d}',
      math.random(0, 20000), videos[math.random(1, #videos)], math.random(1, 9))
  end
  return wrk.format("POST", "/v1/events", nil, '{"events":[' .. table.concat(ev, ",") .. ']}')
end
EOF2

# wrk's summary as "requests/s p50_ms p99_ms non2xx"
run_wrk() {  # script port [conns]
  local out
  out=$(wrk -t2 -c"${3:-8}" -d"${SECS}s" --latency -s "$DIR/$1" "http://127.0.0.1:$2" 2>&1)
  python3 - "$out" <<'PY'
import re, sys
t = sys.argv[1]
def ms(label):
    m = re.search(r"^\s*" + label + r"%\s+([\d.]+)(us|ms|s)", t, re.M)
    if not m: return float("nan")
    v = float(m.group(1)); return v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
print(f"{rps:.0f} {ms('50'):.2f} {ms('99'):.2f} {bad.group(1) if bad else 0}")
PY
}

declare -A R
echo "bench: embedded mode (demo world, encrypted, policy)" >&2
start embedded --demo
R[emb_feed]=$(run_wrk feed.lua "$PORT")
R[emb_ingest]=$(run_wrk ingest.lua "$PORT")
kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true

echo "bench: NATS JetStream us:3 sg:1" >&2
python3 "$ROOT/scripts/nats_topology.py" start "$DIR/nats" us:3 sg:1 > "$DIR/topology.json"
URLS=$(python3 -c "import json,sys; print(','.join(json.load(open(sys.argv[1]))['regions']['us']))" "$DIR/topology.json")
echo "bench: cluster mode, one replica" >&2
start c1 --demo --cluster "$URLS"
P1=$PORT
R[c1_feed]=$(run_wrk feed.lua "$P1")
R[c1_ingest]=$(run_wrk ingest.lua "$P1")
echo "bench: cluster mode, two replicas (load split)" >&2
start c2 --cluster "$URLS"
P2=$PORT
run_wrk feed.lua "$P1" 4 > "$DIR/f1" & W=$!; run_wrk feed.lua "$P2" 4 > "$DIR/f2"; wait "$W"
R[c2_feed]=$(python3 -c "import sys; a=open(sys.argv[1]).read().split(); b=open(sys.argv[2]).read().split(); print(f'{float(a[0])+float(b[0]):.0f} {max(float(a[1]),float(b[1])):.2f} {max(float(a[2]),float(b[2])):.2f} {int(a[3])+int(b[3])}')" "$DIR/f1" "$DIR/f2")
run_wrk ingest.lua "$P1" 4 > "$DIR/i1" & W=$!; run_wrk ingest.lua "$P2" 4 > "$DIR/i2"; wait "$W"
R[c2_ingest]=$(python3 -c "import sys; a=open(sys.argv[1]).read().split(); b=open(sys.argv[2]).read().split(); print(f'{float(a[0])+float(b[0]):.0f} {max(float(a[1]),float(b[1])):.2f} {max(float(a[2]),float(b[2])):.2f} {int(a[3])+int(b[3])}')" "$DIR/i1" "$DIR/i2")
# Writes that lost the race for their record number to the other replica
# and ran again (optimistic concurrency on the shared log).
CONFLICTS=$(python3 - "$P1" "$P2" <<'PY'
import http.client, re, sys
n = 0
for p in sys.argv[1:3]:
    c = http.client.HTTPConnection("127.0.0.1", int(p))
    c.request("GET", "/metrics", headers={"Authorization": "Bearer bench-admin-secret"})
    m = re.search(r"^foryou_cluster_write_conflicts_total (\S+)$", c.getresponse().read().decode(), re.M)
    n += int(float(m.group(1))) if m else 0
print(n)
PY
)

echo "bench: replica lag (300 writes alternating between the replicas)" >&2
LAG=$(python3 - "$P1" "$P2" <<'PY'
import http.client, json, re, sys, time
ports = [int(p) for p in sys.argv[1:3]]
conns = [http.client.HTTPConnection("127.0.0.1", p) for p in ports]
H = {"Authorization": "Bearer bench-admin-secret", "X-Foryou-Jurisdiction": "US", "Content-Type": "application/json"}
def seq(c):
    c.request("GET", "/metrics", headers=H); t = c.getresponse().read().decode()
    return int(float(re.search(r"^foryou_applied_sequence (\S+)$", t, re.M).group(1)))
lags = []
for i in range(300):
    w, o = conns[i % 2], conns[1 - i % 2]
    body = json.dumps({"events": [{"user_id": f"lag{i % 50}", "video_id": "v2517", "type": "like"}]})
    w.request("POST", "/v1/events", body=body, headers=H); w.getresponse().read()
    s = seq(w); t0 = time.perf_counter()
    while seq(o) < s: pass
    lags.append((time.perf_counter() - t0) * 1000)
lags.sort()
print(f"{lags[len(lags)//2]:.2f} {lags[int(len(lags)*0.99)-1]:.2f}")
PY
)

printf '\n%-34s %10s %9s %9s %7s\n' "phase (same run, this machine)" "req/s" "p50 ms" "p99 ms" "non-2xx"
for k in emb_feed c1_feed c2_feed emb_ingest c1_ingest c2_ingest; do
  read -r rps p50 p99 bad <<< "${R[$k]}"
  printf '%-34s %10s %9s %9s %7s\n' "$k" "$rps" "$p50" "$p99" "$bad"
done
read -r lag50 lag99 <<< "$LAG"
echo "replica lag (ack on one -> applied on the other, polled /metrics): p50 ${lag50} ms, p99 ${lag99} ms"
echo "c2_ingest: ${CONFLICTS} writes lost the race for their record number and ran again"
python3 - "$(declare -p R)" "$LAG" "$CONFLICTS" <<'PY'
import json, re, sys
pairs = dict(re.findall(r'\[(\w+)\]="([^"]*)"', sys.argv[1]))
out = {}
for k, v in pairs.items():
    rps, p50, p99, bad = v.split()
    unit = "events" if "ingest" in k else "feeds"
    out[k] = {"requests_per_s": float(rps), f"{unit}_per_s": float(rps) * (20 if unit == "events" else 1),
              "p50_ms": float(p50), "p99_ms": float(p99), "non_2xx": int(bad)}
lag = sys.argv[2].split()
out["replica_lag_ms"] = {"p50": float(lag[0]), "p99": float(lag[1])}
out["c2_conflicts"] = int(sys.argv[3])
print(json.dumps(out))
PY
