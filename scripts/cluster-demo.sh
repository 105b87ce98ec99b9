#!/usr/bin/env bash
# A two-region deployment on this machine, in cluster mode (docs/SCALING.md):
#   region us: a 3-node NATS JetStream cluster and two foryou replicas
#   region sg: a 1-node JetStream cluster holding the approved backup (mirrors)
#   region eu: a 1-node JetStream cluster the policy does not approve
# Loads the KuaiRec demo world through replica 1, shows a feed from each
# replica, where the streams live, and the commands to try; then stops
# everything it started, by PID.
#
#   scripts/cluster-demo.sh [--keep]   # --keep: leave it running until Ctrl-C
#
# Exits non-zero as soon as something does not hold (CI runs it: ctest
# ClusterDemoScript). Uses build/release/foryou unless FORYOU is set; needs
# nats-server (scripts/install-deps.sh).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FORYOU=${FORYOU:-$ROOT/build/release/foryou}
KEEP=${1:-}
DIR=$(mktemp -d "${TMPDIR:-/tmp}/foryou-cluster-XXXXXX")
PIDS=()
cleanup() {
  local rc=$?
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  python3 "$ROOT/scripts/nats_topology.py" stop "$DIR/nats" || true
  if [ "$rc" -eq 0 ]; then rm -rf "$DIR"; else echo "logs kept in $DIR" >&2; fi
}
trap cleanup EXIT
trap 'exit 0' INT TERM
if [ -t 1 ]; then say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }; else say() { printf '\n== %s\n' "$*"; }; fi
fail() { echo "FAILED: $*" >&2; exit 1; }
sha() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
command -v nats-server >/dev/null || fail "nats-server is not installed: run scripts/install-deps.sh"

say "NATS JetStream: us (3 servers), sg (1), eu (1), joined by gateways"
python3 "$ROOT/scripts/nats_topology.py" start "$DIR/nats" us:3 sg:1 eu:1 > "$DIR/topology.json"
US_URLS=$(python3 -c "import json,sys; print(','.join(json.load(open(sys.argv[1]))['regions']['us']))" "$DIR/topology.json")
echo "us: $US_URLS"

say "policy and keys in $DIR"
"$FORYOU" keygen > "$DIR/us.region-key"
cat "$ROOT/scripts/policy-us-sg.toml" > "$DIR/policy.toml"
cat >> "$DIR/policy.toml" <<EOF2

[[regions]]
name = "eu"
jurisdiction = "EU"
operator = "Another Operator"
primary_for = ["EU"]

[[principals]]
name = "us-feed-service"
key_sha256 = "$(sha us-service-secret)"
role = "service"
read = ["US"]
write = ["US"]

[[principals]]
name = "us-admin"
key_sha256 = "$(sha us-admin-secret)"
role = "admin"
read = ["US"]
write = ["US"]
EOF2

start() {  # name args... ; sets PORT
  local name=$1
  shift
  "$FORYOU" serve --listen 127.0.0.1:0 --data-dir "$DIR/$name" --policy "$DIR/policy.toml" --region us \
    --region-key-file "$DIR/us.region-key" --cluster "$US_URLS" --log-level warn "$@" > "$DIR/$name.out" 2> "$DIR/$name.err" &
  PIDS+=($!)
  local pid=$!
  for _ in $(seq 1 600); do
    PORT=$(sed -n 's|^listening on http://127.0.0.1:\([0-9]*\)$|\1|p' "$DIR/$name.out" 2>/dev/null || true)
    [ -n "$PORT" ] && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$DIR/$name.err" >&2; fail "$name did not start"; }
    sleep 0.1
  done
  fail "$name did not print its address"
}

say "replica 1 of us, loading the demo world into the region's log"
start replica1 --demo
P1=$PORT
say "replica 2 of us joins from the log"
start replica2
P2=$PORT
echo "replica 1: http://127.0.0.1:$P1    replica 2: http://127.0.0.1:$P2"

AUTH=(-H "Authorization: Bearer us-service-secret" -H "X-Foryou-Jurisdiction: US")
feed() { curl -sf "${AUTH[@]}" "http://127.0.0.1:$1/v1/feed?user_id=$2&n=$3"; }
say "the same user's feed from each replica"
F1=$(feed "$P1" u14 3) || fail "feed from replica 1"
F2=$(feed "$P2" u14 3) || fail "feed from replica 2"
python3 - "$F1" "$F2" <<'PY'
import json, sys
a, b = (json.loads(x) for x in sys.argv[1:3])
for name, f in (("replica 1", a), ("replica 2", b)):
    print(f"{name}: " + ", ".join(f"{i['video_id']} ({i['score']:.4f})" for i in f["items"]))
ia, ib = [i["video_id"] for i in a["items"]], [i["video_id"] for i in b["items"]]
if ia != ib:
    sys.exit("the replicas disagree")
PY

say "a like through replica 2, then replica 1's next feed for that user"
curl -sf "${AUTH[@]}" -H 'Content-Type: application/json' -X POST "http://127.0.0.1:$P2/v1/events" \
  -d '{"events":[{"user_id":"demo-new-user","video_id":"v1305","type":"like"}]}' >/dev/null || fail "like"
sleep 0.2
feed "$P1" demo-new-user 3 | python3 -c "import json,sys; print('replica 1: ' + ', '.join(i['video_id'] + ' (' + '; '.join(i['reasons'][:1]) + ')' for i in json.load(sys.stdin)['items']))"

say "each replica serves the console; its region view says it is a cluster replica"
# Read whole, then searched: `curl | grep -q` under pipefail fails whenever
# grep stops reading before curl has written the page (curl exits 23).
console_page=$(curl -sf "http://127.0.0.1:$P2/console/") || fail "the console of replica 2 (no page)"
grep -q '<title>foryou console</title>' <<<"$console_page" || fail "the console of replica 2 (not the console)"
curl -sf -H "Authorization: Bearer us-admin-secret" "http://127.0.0.1:$P2/v1/region" | python3 -c "
import json, sys
r = json.load(sys.stdin)
if not r['cluster'] or r['region']['name'] != 'us':
    sys.exit('replica 2 does not report itself as a replica of us: ' + json.dumps(r)[:300])
print(f\"replica 2: region {r['region']['name']}, cluster mode, log applied to record {r['log']['last_seq']} \"
      f\"({r['log']['followed_records']} written by the other replica)\")
" || fail "region view of replica 2"

say "where the data lives (JetStream streams, from the us cluster)"
python3 - "$ROOT" "$DIR/topology.json" <<'PY'
import json, sys
sys.path.insert(0, sys.argv[1] + "/tests")
import nats_mini
topo = json.load(open(sys.argv[2]))
js = nats_mini.Nats(topo["regions"]["us"][0])
names = js.js("STREAM.NAMES").get("streams") or []
for n in sorted(names):
    i = js.js("STREAM.INFO." + n)
    src = f"  mirror of {i['mirror']['name']}" if i.get("mirror") else ""
    print(f"  {n:28s} cluster {i['cluster']['name']:3s} replicas {i['config']['num_replicas']}  "
          f"{i['state']['messages']:6d} messages{src}")
bad = [n for n in names if js.js("STREAM.INFO." + n)["cluster"]["name"] == "eu"]
if bad:
    sys.exit(f"streams in eu: {bad}")
print("  eu holds no stream of region us")
PY

if [ "$KEEP" = "--keep" ]; then
  cat <<EOF2

Try, while it runs:
  the console of each replica: http://127.0.0.1:$P1/console/ and http://127.0.0.1:$P2/console/
      (sign in with us-admin-secret or us-service-secret, users of US)
  curl -H 'Authorization: Bearer us-service-secret' -H 'X-Foryou-Jurisdiction: US' 'http://127.0.0.1:$P1/v1/feed?user_id=u14&n=5'
  curl -H 'Authorization: Bearer us-service-secret' -H 'X-Foryou-Jurisdiction: US' 'http://127.0.0.1:$P2/v1/feed?user_id=u14&n=5'
  curl -H 'Authorization: Bearer us-admin-secret' 'http://127.0.0.1:$P2/metrics' | grep -E 'applied_sequence|followed'
  # one more replica:
  $FORYOU serve --listen 127.0.0.1:0 --data-dir $DIR/replica3 --policy $DIR/policy.toml --region us \\
      --region-key-file $DIR/us.region-key --cluster $US_URLS
  # nats-server PIDs and stores: $DIR/topology.json
EOF2
else
  echo; echo "Run it with --keep to try these yourself: the URLs, the policy and the commands to add a replica."
fi

if [ "$KEEP" = "--keep" ]; then
  say "running; Ctrl-C stops everything"
  while true; do sleep 1; done
fi
say "stopping everything it started"
